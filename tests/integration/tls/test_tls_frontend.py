"""TLS termination: certificates by SNI, ALPN, protocol versions, session resumption,
X-Forwarded-Proto, handshake errors and timeouts (tls_* directives, `listen ... tls`)."""

import json
import os
import re

import pytest

import portico_testlib as lib
from portico_testlib import RawConn
from tls_h2_testlib import log_size, peer_subject, s_client, wait_log


def headers_seen(r):
    """The backend's /headers answer -> {lowercase name: [values]}."""
    assert r.status == 200, r
    out = {}
    for n, v in json.loads(r.body)["headers"]:
        out.setdefault(n.lower(), []).append(v)
    return out


# ------------------------------------------------------------- basics ---

def test_tls_h1_curl_cacert(tls_front):
    f = tls_front()
    r, ver = f.curl("/name", "--http1.1")
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r
    assert ver == "1.1"
    # the default curl negotiates by ALPN: h2
    r, ver = f.curl("/name")
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r
    assert ver == "2"


def test_tls_h1_curl_insecure_and_untrusted(tls_front):
    f = tls_front()
    r, _ = f.curl("/name", "-k", cacert=False)
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r
    # the test CA is not in the system store: without --cacert or -k curl must refuse (60)
    r, _ = f.curl("/name", cacert=False)
    assert r.rc == 60 and r.status is None, r


@pytest.mark.parametrize("servername,subject_cn", [
    ("localhost", "localhost"),
    ("a.example", "a.example"),
    ("A.Example", "a.example"),            # lower-cased, then matched like Host
    ("b.example", "b.example"),
    ("x.w.example", "*.w.example"),
    ("deep.x.w.example", "*.w.example"),   # server_name wildcards match as nginx's do
    ("w.example", "localhost"),            # but not the bare suffix: default server
    ("unknown.example", "localhost"),      # unknown name: the default server's certificate
    (None, "localhost"),                   # no SNI at all
])
def test_tls_sni_selects_certificate(tls_front, servername, subject_cn):
    f = tls_front()
    args = ["-servername", servername] if servername else ["-noservername"]
    rc, out = s_client(f.port, args + ["-CAfile", f.certs.ca])
    subj = peer_subject(out)
    assert subj is not None, out
    assert re.search(r"CN ?= ?%s$" % re.escape(subject_cn), subj), (servername, subj, out)
    assert "Verify return code: 0 (ok)" in out, out


@pytest.mark.parametrize("name", ["localhost", "a.example", "b.example", "x.w.example"])
def test_tls_sni_and_host_route_to_server(tls_front, name):
    """curl verifies the certificate against the name it asked for, and the request is
    answered by that server block (location /who)."""
    f = tls_front()
    r, _ = f.curl("/who", "--http1.1", name=name)
    expect = "*.w.example" if name.endswith(".w.example") else name
    assert r.rc == 0 and r.status == 200 and r.body == expect.encode(), r
    r, ver = f.curl("/who", "--http2", name=name)
    assert r.rc == 0 and r.status == 200 and r.body == expect.encode() and ver == "2", r


# --------------------------------------------------------------- ALPN ---

@pytest.mark.parametrize("alpn,expect", [("h2", "h2"), ("http/1.1", "http/1.1"),
                                         ("h2,http/1.1", "h2"), ("http/1.1,h2", "h2")])
def test_tls_alpn_openssl(tls_front, alpn, expect):
    f = tls_front(vhosts=False)
    rc, out = s_client(f.port, ["-servername", "localhost", "-alpn", alpn])
    assert "ALPN protocol: %s" % expect in out, out


def test_tls_alpn_unknown_protocol_falls_back_to_http11(tls_front):
    f = tls_front(vhosts=False)
    rc, out = s_client(f.port, ["-servername", "localhost", "-alpn", "spdy/3", "-ign_eof"],
                       stdin=b"GET /name HTTP/1.0\r\nHost: localhost\r\n\r\n")
    assert "No ALPN negotiated" in out, out
    assert "HTTP/1.1 200" in out, out
    assert "b1" in out.split("HTTP/1.1 200", 1)[1], out


@pytest.mark.parametrize("flag,version", [("--http1.1", "1.1"), ("--http2", "2")])
def test_tls_alpn_curl_versions(tls_front, flag, version):
    f = tls_front(vhosts=False)
    r, ver = f.curl("/name", flag)
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r
    assert ver == version


# ----------------------------------------------------------- versions ---

SECLEVEL0 = ["-cipher", "DEFAULT@SECLEVEL=0"]


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_tls_old_versions_refused(tls_front, flag):
    f = tls_front(vhosts=False)
    start = log_size(f.portico.error_log)
    rc, out = s_client(f.port, [flag, "-servername", "localhost"] + SECLEVEL0)
    assert rc != 0, out
    # the server answered the ClientHello with a protocol_version alert (70)
    assert "alert protocol version" in out, out
    assert wait_log(f.portico.error_log, r"TLS handshake with 127\.0\.0\.1 failed", 3,
                    start), f.portico.logs()
    # TLS 1.2 and 1.3 are offered
    for ok, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        rc, out = s_client(f.port, [ok, "-servername", "localhost"])
        assert re.search(r"^New, %s," % re.escape(name), out, re.M), out


def test_tls_protocols_13_only_refuses_12(tls_front):
    f = tls_front(extra="    tls_protocols TLSv1.3;\n", vhosts=False)
    rc, out = s_client(f.port, ["-tls1_2", "-servername", "localhost"])
    assert rc != 0 and "alert protocol version" in out, out
    rc, out = s_client(f.port, ["-tls1_3", "-servername", "localhost"])
    assert re.search(r"^New, TLSv1\.3,", out, re.M), out
    r, _ = f.curl("/name", "--tlsv1.2", "--tls-max", "1.2")
    assert r.rc != 0 and r.status is None, r
    r, _ = f.curl("/name", "--tlsv1.3")
    assert r.rc == 0 and r.status == 200, r


def test_tls_protocols_12_only_refuses_13(tls_front):
    f = tls_front(extra="    tls_protocols TLSv1.2;\n", vhosts=False)
    rc, out = s_client(f.port, ["-tls1_3", "-servername", "localhost"])
    assert rc != 0 and "alert protocol version" in out, out
    rc, out = s_client(f.port, ["-tls1_2", "-servername", "localhost"])
    assert re.search(r"^New, TLSv1\.2,", out, re.M), out


# ------------------------------------------------------ X-Forwarded-Proto ---

@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_tls_x_forwarded_proto_https(tls_front, flag):
    f = tls_front(vhosts=False, plain=True)
    r, _ = f.curl("/headers", flag, "-H", "X-Forwarded-Proto: http")
    seen = headers_seen(r)
    assert seen.get("x-forwarded-proto") == ["https"], seen
    # and on the plain listener of the same portico: http
    r = lib.curl("http://127.0.0.1:%d/headers" % f.plain_port)
    seen = headers_seen(r)
    assert seen.get("x-forwarded-proto") == ["http"], seen


# --------------------------------------------------------- resumption ---

REQ = b"GET /who HTTP/1.0\r\nHost: localhost\r\n\r\n"


OFF = "    tls_session_tickets off;\n"
NONE = "    tls_session_tickets off;\n    tls_session_cache 0;\n"


# ticket: the server sends a NewSessionTicket (s_client prints its lifetime hint); with tickets
# off, TLS 1.3 still sends one, naming a session in the server's cache, and TLS 1.2 resumes by
# session ID. reuse: a session is offered (s_client saves one) and resumes, twice.
@pytest.mark.parametrize("extra,version,ticket,reuse", [
    ("", "-tls1_3", True, True),
    ("", "-tls1_2", True, True),
    (OFF, "-tls1_3", True, True),
    (OFF, "-tls1_2", False, True),
    (NONE, "-tls1_3", False, False),
    (NONE, "-tls1_2", False, False),
], ids=["tickets-1.3", "tickets-1.2", "cache-1.3", "cache-1.2", "none-1.3", "none-1.2"])
def test_tls_session_resumption(tls_front, tmp_path, extra, version, ticket, reuse):
    f = tls_front(extra=extra, workers=2, vhosts=False)
    sess = str(tmp_path / "sess.pem")
    common = ["-servername", "localhost", version, "-ign_eof", "-CAfile", f.certs.ca]
    rc, out1 = s_client(f.port, common + ["-sess_out", sess], stdin=REQ)
    assert re.search(r"^New, TLSv1\.[23]", out1, re.M), out1
    assert "HTTP/1.1 200" in out1, out1
    assert ("TLS session ticket lifetime hint" in out1) == ticket, out1
    # nothing resumable offered: s_client saves no session at all
    saved = os.path.exists(sess) and os.path.getsize(sess) > 0
    assert saved == reuse, out1
    for _ in range(2 if reuse else 0):
        rc, out2 = s_client(f.port, common + ["-sess_in", sess], stdin=REQ)
        assert "HTTP/1.1 200" in out2, out2
        assert re.search(r"^Reused, TLSv1\.[23]", out2, re.M), out2


# ---------------------------------------------------- handshake errors ---

def test_tls_plain_http_to_tls_port_closed_and_logged(tls_front):
    f = tls_front(vhosts=False)
    start = log_size(f.portico.error_log)
    with RawConn("127.0.0.1", f.port, timeout=5) as c:
        c.send(b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = c.read_all(timeout=3.0)
        assert c.eof, "portico kept the connection open after a plain HTTP request"
    assert not data.startswith(b"HTTP/"), data
    line = wait_log(f.portico.error_log, r"TLS handshake with 127\.0\.0\.1 failed", 3, start)
    assert line, f.portico.logs()
    r, _ = f.curl("/name")
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r


def test_tls_garbage_bytes_then_port_still_serves(tls_front):
    f = tls_front(vhosts=False)
    for junk in (b"\x16\x03\x01\x00\x05hello", b"\x00" * 64, b"\x16\x03\x03\xff\xff" + b"A" * 300):
        with RawConn("127.0.0.1", f.port, timeout=5) as c:
            c.send(junk)
            c.read_all(timeout=3.0)
            assert c.eof, junk
    r, _ = f.curl("/name", "--http1.1")
    assert r.rc == 0 and r.status == 200, r


def test_tls_handshake_timeout(tls_front):
    f = tls_front(extra="    tls_handshake_timeout 500ms;\n", vhosts=False)
    start = log_size(f.portico.error_log)
    with RawConn("127.0.0.1", f.port, timeout=5) as c:
        assert c.is_closed(3.0), "silent client not dropped after tls_handshake_timeout"
    assert wait_log(f.portico.error_log, r"TLS handshake with 127\.0\.0\.1 timed out", 3,
                    start), f.portico.logs()
    r, _ = f.curl("/name")
    assert r.rc == 0 and r.status == 200, r
