"""`portico -t`: TLS files that cannot be used are config errors at file:line:col, exit 1."""

import os
import re

import pytest

import portico_testlib as lib

CONF = """workers 1;
error_log stderr notice;
access_log off;

upstream app {
    server 127.0.0.1:9;
}

server {
    listen 127.0.0.1:%(port)d tls;
    server_name localhost;
%(cert_lines)s
    location / { proxy_pass app; }
}
"""


def conf_text(port, cert, key):
    lines = []
    if cert is not None:
        lines.append("    tls_certificate %s;" % cert)
    if key is not None:
        lines.append("    tls_certificate_key %s;" % key)
    return CONF % {"port": port, "cert_lines": "\n".join(lines)}


def where(text, word):
    """(line, directive column, argument column) of the first line starting with word."""
    for i, line in enumerate(text.split("\n"), 1):
        s = line.lstrip()
        if s.startswith(word + " ") or s.startswith(word + "{") or s == word + " {":
            col = len(line) - len(s) + 1
            return i, col, col + len(word) + 1
    raise AssertionError("%s not in config" % word)


def check(tmp_path, text):
    path = tmp_path / "tls.conf"
    path.write_text(text)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    return str(path), rc, out


def assert_error(path, rc, out, place, words):
    """Exit 1 and `path:line:col: message` at place (line, col), with all words."""
    assert rc == 1, "expected exit 1 from -t, got %d:\n%s" % (rc, out)
    m = re.search(r"^(.*?):(\d+):(\d+): (.+)$", out, re.M)
    assert m, "no `file:line:col: message` in output:\n%s" % out
    assert os.path.basename(m.group(1)) == os.path.basename(path), out
    assert (int(m.group(2)), int(m.group(3))) == place, (place, out)
    for w in words:
        assert w in m.group(4), (w, out)


def test_tls_config_ok(tmp_path, certs):
    text = conf_text(lib.free_port(), certs.localhost, certs.localhost_key)
    path, rc, out = check(tmp_path, text)
    assert rc == 0, out


def cert_arg(text):
    """Where a server's certificate and key are reported: the tls_certificate argument (the
    pair is loaded there; the message names the file that failed)."""
    line, _, arg = where(text, "tls_certificate")
    return line, arg


def test_tls_config_missing_certificate_file(tmp_path, certs):
    text = conf_text(lib.free_port(), str(tmp_path / "nope.pem"), certs.localhost_key)
    path, rc, out = check(tmp_path, text)
    assert_error(path, rc, out, cert_arg(text), ["tls_certificate", "nope.pem"])


@pytest.mark.parametrize("kind", ["missing", "garbage", "mode000"])
def test_tls_config_unreadable_key(tmp_path, certs, kind):
    if kind == "missing":
        key = str(tmp_path / "nope.key")
    elif kind == "garbage":
        key = certs.garbage_key
    else:
        if os.geteuid() == 0:
            pytest.skip("running as root: a mode 000 file is still readable")
        key = str(tmp_path / "locked.key")
        with open(certs.localhost_key, "rb") as src, open(key, "wb") as dst:
            dst.write(src.read())
        os.chmod(key, 0)
    text = conf_text(lib.free_port(), certs.localhost, key)
    path, rc, out = check(tmp_path, text)
    assert_error(path, rc, out, cert_arg(text), ["tls_certificate_key", os.path.basename(key)])


def test_tls_config_mismatched_key(tmp_path, certs):
    text = conf_text(lib.free_port(), certs.localhost, certs.mismatched_key)
    path, rc, out = check(tmp_path, text)
    assert_error(path, rc, out, cert_arg(text), ["tls_certificate_key", "mismatch"])


@pytest.mark.parametrize("have", ["none", "cert_only", "key_only"])
def test_tls_config_listener_without_certificate(tmp_path, certs, have):
    cert = certs.localhost if have == "cert_only" else None
    key = certs.localhost_key if have == "key_only" else None
    text = conf_text(lib.free_port(), cert, key)
    path, rc, out = check(tmp_path, text)
    # at the server block that lacks them
    line = text.split("\n").index("server {") + 1
    assert_error(path, rc, out, (line, 1), ["tls_certificate"])


def test_tls_config_bad_client_ca_and_verify_without_ca(tmp_path, certs):
    base = conf_text(lib.free_port(), certs.localhost, certs.localhost_key)
    text = base.replace("    location /",
                        "    tls_client_certificate %s;\n    location /"
                        % (tmp_path / "noca.pem"))
    path, rc, out = check(tmp_path, text)
    assert rc == 1 and "tls_client_certificate" in out and re.search(r":\d+:\d+: ", out), out
    text = base.replace("    location /", "    tls_verify_client on;\n    location /")
    path, rc, out = check(tmp_path, text)
    assert rc == 1 and "tls_client_certificate" in out and re.search(r":\d+:\d+: ", out), out


def test_tls_config_running_refuses_bad_key(tmp_path, certs):
    """Not only -t: starting with a mismatched key fails (exit 1) instead of listening."""
    text = conf_text(lib.free_port(), certs.localhost, certs.mismatched_key)
    path = tmp_path / "run.conf"
    path.write_text(text)
    rc, out = lib.run_portico(["-c", str(path)], timeout=10)
    assert rc == 1, (rc, out)
    # the directive's place, then OpenSSL's reason
    assert re.search(r"run\.conf:\d+:\d+: cannot load tls_certificate_key \"[^\"]*mismatched"
                     r"\.key\": .*key values mismatch", out), out
