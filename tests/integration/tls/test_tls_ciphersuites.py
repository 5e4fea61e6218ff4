"""`tls_ciphersuites`: TLS 1.3 cipher suites in the server's order (docs/configuration.md,
tls_ciphersuites; docs/tls.md, "Protocols and ciphers"). openssl s_client offers AES-256-GCM
first, as OpenSSL's default order does; the server's order decides."""

import re
import subprocess

import pytest

import portico_testlib as lib

AES128 = "TLS_AES_128_GCM_SHA256"
AES256 = "TLS_AES_256_GCM_SHA384"
CHACHA = "TLS_CHACHA20_POLY1305_SHA256"
CLIENT_ORDER = ":".join((AES256, CHACHA, AES128))


def server(port, certs, name, suites=None, text="a"):
    return """server {
    listen 127.0.0.1:%d tls;
    server_name %s;
    tls_certificate %s;
    tls_certificate_key %s;
%s    location / { return 200 "%s\\n"; }
}
""" % (port, name, certs.localhost, certs.localhost_key,
       "    tls_ciphersuites %s;\n" % suites if suites is not None else "", text)


def negotiated(port, sni="localhost", client=CLIENT_ORDER, version="-tls1_3"):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", sni, version, "-ciphersuites", client],
                       input=b"", capture_output=True, timeout=15)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"^New, (TLSv[0-9.]+), Cipher is (\S+)", out, re.M)
    assert m, out + r.stderr.decode(errors="replace")
    return m.group(1), m.group(2)


def test_default_prefers_aes128_gcm_over_the_clients_order(tmp_path, start_portico, certs):
    port = lib.free_port()
    start_portico(lib.make_conf(tmp_path, server(port, certs, "localhost")), [port])
    assert negotiated(port) == ("TLSv1.3", AES128)
    # a client without AES-128 still gets the next suite of the list
    assert negotiated(port, client=":".join((CHACHA, AES256))) == ("TLSv1.3", AES256)


def test_configured_order_and_per_server_suites(tmp_path, start_portico, certs):
    port = lib.free_port()
    body = (server(port, certs, "localhost", "%s:%s" % (CHACHA, AES256)) +
            server(port, certs, "b.test", AES256, text="b"))
    start_portico(lib.make_conf(tmp_path, body), [port])
    assert negotiated(port) == ("TLSv1.3", CHACHA)
    assert negotiated(port, sni="b.test") == ("TLSv1.3", AES256)
    # a client with none of the server's suites gets a handshake failure, not another suite
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "b.test", "-tls1_3", "-ciphersuites", AES128],
                       input=b"", capture_output=True, timeout=15)
    assert r.returncode != 0
    assert b"Cipher is " + AES128.encode() not in r.stdout


@pytest.mark.parametrize("suites, message", [
    ("FOO", 'unknown TLS 1.3 cipher suite "FOO" in tls_ciphersuites'),
    ("%s:TLS_AES_512_GCM" % AES128, 'unknown TLS 1.3 cipher suite "TLS_AES_512_GCM"'),
    ('""', "tls_ciphersuites is empty, but tls_protocols has TLSv1.3"),
])
def test_invalid_suites_are_configuration_errors(tmp_path, certs, suites, message):
    path = tmp_path / "c.conf"
    path.write_text(lib.make_conf(tmp_path, server(lib.free_port(), certs, "localhost",
                                                   suites)))
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc == 1, out
    assert message in out, out


def test_empty_suites_with_tls12_only_is_allowed(tmp_path, start_portico, certs):
    port = lib.free_port()
    text = server(port, certs, "localhost", '""').replace(
        "    location", "    tls_protocols TLSv1.2;\n    location")
    start_portico(lib.make_conf(tmp_path, text), [port])
    assert negotiated(port, version="-tls1_2", client=AES128)[0] == "TLSv1.2"
