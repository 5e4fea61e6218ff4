"""TLS to backends: `tls on`, tls_verify, tls_trusted_certificate, tls_sni.

The backend is a second portico with a TLS listener (certificate for localhost and
127.0.0.1 from the test CA) in front of backend.py; the front portico listens in clear."""

import json

import pytest

import portico_testlib as lib
from tls_h2_testlib import log_size, plain_server, tls_server, upstream, wait_log


def chain(certs, start_backend, start_portico_in, tls_lines, be_cert="localhost"):
    b = start_backend("b1")
    be_port = lib.free_port()
    cert, key = (certs.pair("localhost") if be_cert == "localhost"
                 else (certs.other_localhost, certs.other_localhost_key))
    be = start_portico_in(upstream("app", [b.addr]) +
                          tls_server(be_port, cert, key, server_name="localhost"),
                          [be_port], name="be")
    fe_port = lib.free_port()
    fe = start_portico_in(upstream("tlsapp", ["127.0.0.1:%d" % be_port], extra=tls_lines) +
                          plain_server(fe_port, locations="    location / { proxy_pass tlsapp; }\n"),
                          [fe_port], name="fe")
    return fe, be, b


@pytest.mark.parametrize("lines", [
    "    tls on;\n    tls_trusted_certificate %(ca)s;\n    tls_sni localhost;\n",
    # no tls_sni: the server address 127.0.0.1 is checked against the IP SAN
    "    tls on;\n    tls_trusted_certificate %(ca)s;\n",
], ids=["sni", "ip"])
def test_tls_upstream_verified(certs, start_backend, start_portico_in, lines):
    fe, be, b = chain(certs, start_backend, start_portico_in, lines % {"ca": certs.ca})
    for _ in range(3):
        r = lib.curl(fe.url("/name"))
        assert r.status == 200 and r.body == b"b1", r
    r = lib.curl(fe.url("/headers"))
    assert r.status == 200, r
    seen = dict((n.lower(), v) for n, v in json.loads(r.body)["headers"])
    # the second portico saw a TLS client: it says https
    assert seen.get("x-forwarded-proto") == "https", seen
    # a bigger body both ways over the TLS connection
    body = bytes(range(256)) * 1024
    st, hdrs, got = lib.raw_request("127.0.0.1", fe.port, "POST", "/echo", body=body,
                                    timeout=10)
    assert st == 200 and got == body


@pytest.mark.parametrize("case", ["wrong_sni", "untrusted_ca", "untrusted_server_cert"])
def test_tls_upstream_verification_failure_502(certs, start_backend, start_portico_in, case):
    if case == "wrong_sni":
        lines = "    tls on;\n    tls_trusted_certificate %s;\n    tls_sni wrong.example;\n" \
            % certs.ca
        be_cert = "localhost"
    elif case == "untrusted_ca":
        lines = "    tls on;\n    tls_trusted_certificate %s;\n    tls_sni localhost;\n" \
            % certs.other_ca
        be_cert = "localhost"
    else:
        lines = "    tls on;\n    tls_trusted_certificate %s;\n    tls_sni localhost;\n" \
            % certs.ca
        be_cert = "other"
    fe, be, b = chain(certs, start_backend, start_portico_in, lines, be_cert)
    start = log_size(fe.error_log)
    r = lib.curl(fe.url("/name"))
    assert r.status == 502, r
    # where the error came from: the TLS handshake with the server
    assert "error=tls_protocol_error" in (r.header("proxy-status") or ""), r.headers
    line = wait_log(fe.error_log, r"certificate verification failed", 3, start)
    assert line, fe.logs()
    want = "hostname mismatch" if case == "wrong_sni" else "unable to get local issuer"
    assert want in line, line
    assert b.stats()["requests"] == 0


def test_tls_upstream_verify_off(certs, start_backend, start_portico_in):
    """tls_verify off: an untrusted certificate and a wrong name are accepted."""
    lines = ("    tls on;\n    tls_verify off;\n    tls_trusted_certificate %s;\n"
             "    tls_sni wrong.example;\n" % certs.other_ca)
    fe, be, b = chain(certs, start_backend, start_portico_in, lines)
    r = lib.curl(fe.url("/name"))
    assert r.status == 200 and r.body == b"b1", r


def test_tls_upstream_plain_to_tls_port_fails(certs, start_backend, start_portico_in):
    """Control: without `tls on` the TLS backend cannot be spoken to (502)."""
    fe, be, b = chain(certs, start_backend, start_portico_in, "")
    r = lib.curl(fe.url("/name"))
    assert r.status == 502, r


class SniRecorder:
    """A TLS HTTP/1.1 backend (Python ssl, certificate for localhost and 127.0.0.1 from the
    test CA) that records the SNI name of each handshake (None: no SNI) and answers 200."""

    def __init__(self, cert, key):
        import socket
        import ssl
        import threading
        self.names = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.sni_callback = lambda sock, name, ctx: self.names.append(name)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            try:
                s.settimeout(5)
                t = self.ctx.wrap_socket(s, server_side=True)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    d = t.recv(4096)
                    if not d:
                        break
                    buf += d
                t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nsni")
                t.close()
            except OSError:
                s.close()

    def stop(self):
        self.sock.close()


@pytest.mark.parametrize("tls_sni,sent", [("localhost", "localhost"), (None, None)],
                         ids=["tls_sni_sent", "ip_literal_no_sni"])
def test_tls_upstream_sni_sent_to_backend(certs, start_portico_in, tls_sni, sent):
    """The name is sent as SNI (tls_sni, else the server's host as written), except an IP
    literal, which sends none (RFC 6066): checked at the backend's handshake."""
    cert, key = certs.pair("localhost")
    rec = SniRecorder(cert, key)
    try:
        lines = "    tls on;\n    tls_trusted_certificate %s;\n" % certs.ca
        if tls_sni:
            lines += "    tls_sni %s;\n" % tls_sni
        fe_port = lib.free_port()
        fe = start_portico_in(upstream("tlsapp", ["127.0.0.1:%d" % rec.port], extra=lines) +
                              plain_server(fe_port,
                                           locations="    location / { proxy_pass tlsapp; }\n"),
                              [fe_port], name="fe")
        r = lib.curl(fe.url("/x"))
        assert r.status == 200 and r.body == b"sni", r
        assert rec.names == [sent], rec.names
    finally:
        rec.stop()


def test_tls_upstream_server_timing_has_tls(certs, start_backend, start_portico_in):
    """Server-Timing over a new TLS connection: connect, then tls, within ttfb."""
    b = start_backend("b1")
    be_port = lib.free_port()
    cert, key = certs.pair("localhost")
    start_portico_in(upstream("app", [b.addr]) +
                     tls_server(be_port, cert, key, server_name="localhost"),
                     [be_port], name="be")
    fe_port = lib.free_port()
    fe = start_portico_in(
        upstream("tlsapp", ["127.0.0.1:%d" % be_port],
                 extra="    tls on;\n    tls_trusted_certificate %s;\n" % certs.ca) +
        plain_server(fe_port, locations="    location / { proxy_pass tlsapp; server_timing on; }\n"),
        [fe_port], name="fe")
    r = lib.curl(fe.url("/name"))
    assert r.status == 200, r
    durs = {}
    for m in r.header("server-timing").split(", "):
        name, _, rest = m.partition(";dur=")
        if rest:
            durs[name] = float(rest)
    assert list(durs) == ["connect", "tls", "ttfb", "total"], r.header("server-timing")
    assert durs["connect"] + durs["tls"] <= durs["ttfb"] + 0.002 <= durs["total"] + 0.004, durs
