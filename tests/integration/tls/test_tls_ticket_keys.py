"""tls_session_ticket_key FILE (nginx's meaning: the first key encrypts, every key decrypts;
48- or 80-byte files), checked with openssl s_client -sess_out / -sess_in:
- two portico instances with the same key file: a session from one resumes on the other
  (TLS 1.3 and 1.2); without the directive each instance has its own in-memory keys and the
  other does a full handshake;
- rotation: a new key first, the old one second: a ticket of the old key still resumes, and
  is renewed as a ticket of the new key; new tickets are the new key's;
- a reload re-reads the files: after the old key is dropped, its tickets no longer resume;
- a file of the wrong size fails `portico -t` at the directive's file:line:col."""

import os
import re
import signal

import pytest

import portico_testlib as lib
from tls_h2_testlib import s_client, tls_server, upstream

REQ = b"GET /who HTTP/1.0\r\nHost: localhost\r\n\r\n"


def key_file(tmp_path, name, size=80):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return path


def instance(start_portico_in, certs, b, name, keys=(), extra=""):
    port = lib.free_port()
    cert, key = certs.pair("localhost")
    main = "".join("tls_session_ticket_key %s;\n" % k for k in keys) + extra
    body = upstream("app", [b.addr]) + tls_server(
        port, cert, key, server_name="localhost",
        locations='    location /who { return 200 "%s"; }\n' % name)
    p = start_portico_in(body, [port], name=name, main_extra=main)
    return p, port


def new_session(port, certs, sess, version):
    rc, out = s_client(port, ["-servername", "localhost", version, "-ign_eof", "-CAfile",
                              certs.ca, "-sess_out", sess], stdin=REQ)
    assert re.search(r"^New, TLSv1\.[23]", out, re.M) and "HTTP/1.1 200" in out, out
    assert os.path.getsize(sess) > 0, out
    return out


def resumed(port, certs, sess, version, out_of=None):
    """Whether the session in sess resumes on port; out_of: a list that gets s_client's
    output."""
    rc, out = s_client(port, ["-servername", "localhost", version, "-ign_eof", "-CAfile",
                              certs.ca, "-sess_in", sess], stdin=REQ)
    assert "HTTP/1.1 200" in out, out
    if out_of is not None:
        out_of.append(out)
    return bool(re.search(r"^Reused, TLSv1\.[23]", out, re.M))


def ticket_key_name(out):
    """The key name of the ticket the session ends with (its first 16 bytes, RFC 5077 section
    4), from s_client's hex dump of it."""
    dump = out.split("TLS session ticket:\n", 1)[1]
    hexes = []
    for line in dump.splitlines()[:2]:
        m = re.match(r"\s*[0-9a-f]{4} - ((?:[0-9a-f]{2}[ -]){1,16})", line)
        assert m, out
        hexes += re.findall(r"[0-9a-f]{2}", m.group(1))
    return bytes.fromhex("".join(hexes[:16]))


def key_name(path):
    """A key file's key name: its first 16 bytes (nginx's format, 48 or 80 bytes)."""
    with open(path, "rb") as f:
        return f.read(16)


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
@pytest.mark.parametrize("size", [80, 48])
def test_shared_key_resumes_on_another_instance(tmp_path, certs, start_backend,
                                                start_portico_in, version, size):
    b = start_backend("b1")
    k = key_file(tmp_path, "k1.key", size)
    a, pa = instance(start_portico_in, certs, b, "a", [k])
    _, pb = instance(start_portico_in, certs, b, "b", [k])
    sess = str(tmp_path / "sess.pem")
    new_session(pa, certs, sess, version)
    assert resumed(pb, certs, sess, version)
    assert resumed(pa, certs, sess, version)


def test_without_shared_keys_instances_do_not_resume_each_other(tmp_path, certs, start_backend,
                                                                start_portico_in):
    b = start_backend("b1")
    _, pa = instance(start_portico_in, certs, b, "a")
    _, pb = instance(start_portico_in, certs, b, "b")
    sess = str(tmp_path / "sess.pem")
    new_session(pa, certs, sess, "-tls1_3")
    assert not resumed(pb, certs, sess, "-tls1_3")
    assert resumed(pa, certs, sess, "-tls1_3")


def test_rotation_old_key_still_decrypts(tmp_path, certs, start_backend, start_portico_in):
    b = start_backend("b1")
    k1, k2 = key_file(tmp_path, "k1.key"), key_file(tmp_path, "k2.key")
    _, pa = instance(start_portico_in, certs, b, "a", [k1])
    _, pb = instance(start_portico_in, certs, b, "b", [k2, k1])   # rotated: k2 encrypts
    _, pc = instance(start_portico_in, certs, b, "c", [k2])       # k1 dropped
    sess = str(tmp_path / "sess.pem")
    new_session(pa, certs, sess, "-tls1_2")
    assert resumed(pb, certs, sess, "-tls1_2")
    assert not resumed(pc, certs, sess, "-tls1_2")


def test_rotation_new_tickets_use_the_first_key(tmp_path, certs, start_backend,
                                               start_portico_in):
    # TLS 1.2: a ticket is renewed only when the server says so (TLS 1.3 issues one on every
    # handshake), so this shows both which key encrypts and that an old key's ticket is renewed
    b = start_backend("b1")
    k1, k2 = key_file(tmp_path, "k1.key"), key_file(tmp_path, "k2.key")
    _, pa = instance(start_portico_in, certs, b, "a", [k1])
    _, pb = instance(start_portico_in, certs, b, "b", [k2, k1])   # rotated: k2 encrypts
    _, pc = instance(start_portico_in, certs, b, "c", [k2])       # k1 dropped
    # a new session on b: its ticket is k2's, so it resumes where only k2 is left
    fresh = str(tmp_path / "fresh.pem")
    out = new_session(pb, certs, fresh, "-tls1_2")
    assert ticket_key_name(out) == key_name(k2), out
    assert resumed(pc, certs, fresh, "-tls1_2")
    # a k1 ticket resumed on b is renewed as a k2 ticket
    old = str(tmp_path / "old.pem")
    out = new_session(pa, certs, old, "-tls1_2")
    assert ticket_key_name(out) == key_name(k1), out
    outs = []
    assert resumed(pb, certs, old, "-tls1_2", out_of=outs)
    assert ticket_key_name(outs[0]) == key_name(k2), outs[0]


def test_reload_rereads_the_key_files(tmp_path, certs, start_backend, start_portico_in):
    b = start_backend("b1")
    k1, k2 = key_file(tmp_path, "k1.key"), key_file(tmp_path, "k2.key")
    a, pa = instance(start_portico_in, certs, b, "a", [k1])
    sess = str(tmp_path / "sess.pem")
    new_session(pa, certs, sess, "-tls1_2")
    assert resumed(pa, certs, sess, "-tls1_2")
    with open(a.conf_path) as f:
        text = f.read()
    with open(a.conf_path, "w") as f:
        f.write(text.replace("tls_session_ticket_key %s;" % k1,
                             "tls_session_ticket_key %s;" % k2))
    a.signal(signal.SIGHUP)
    lib.wait_until(lambda: "reloaded: configuration generation 2" in a.read(a.error_log), 5,
                   what="the reload")
    assert not resumed(pa, certs, sess, "-tls1_2")


@pytest.mark.parametrize("size", [0, 47, 79, 81])
def test_wrong_size_fails_the_check(tmp_path, certs, size):
    k = key_file(tmp_path, "bad.key", size)
    cert, key = certs.pair("localhost")
    text = ("error_log stderr;\ntls_session_ticket_key %s;\n" % k +
            upstream("app", ["127.0.0.1:1"]) +
            tls_server(lib.free_port(), cert, key, server_name="localhost",
                       locations="    location / { proxy_pass app; }\n"))
    path = tmp_path / "t.conf"
    path.write_text(text)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc == 1, out
    assert re.search(r"t\.conf:2:24: tls_session_ticket_key \"[^\"]*bad\.key\" must be 48 or 80 "
                     r"bytes", out), out
