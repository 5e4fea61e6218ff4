"""listen ... proxy_protocol on HTTP servers: a PROXY v1/v2 header built here precedes HTTP/1.1,
HTTP/2 (h2c prior knowledge) and TLS (the header, then the ClientHello); the address it carries
is the client's for X-Forwarded-For, Forwarded and the access log. Untrusted peers, malformed
headers, a missing header and a timeout close the connection with a log line naming the peer
and the reason."""

import json
import re
import socket
import ssl

import pytest

import portico_testlib as lib
import pplib
from pplib import v1, v2, tlv


def pp_conf(tmp_path, port, backend, trusted="127.0.0.1", listen_extra="", server_extra="",
            tls=None, main_extra=""):
    tls_lines = ""
    if tls:
        tls_lines = "    tls_certificate %s;\n    tls_certificate_key %s;\n" % tls
    body = """upstream app {
    server %s;
    connect_timeout 2s;
}

server {
    listen 127.0.0.1:%d%s proxy_protocol%s;
    server_name _;
%s%s%s
    location / {
        proxy_pass app;
    }
}
""" % (backend.addr, port, " tls" if tls else "", listen_extra,
       ("    trusted_proxies %s;\n" % trusted) if trusted else "", tls_lines, server_extra)
    return lib.make_conf(tmp_path, body, main_extra=main_extra)


@pytest.fixture
def pp_proxy(tmp_path, start_backend, start_portico):
    def _make(**kw):
        b = start_backend("b1")
        port = lib.free_port()
        p = start_portico(pp_conf(tmp_path, port, b, **kw), [port])
        p.backend = b
        return p

    return _make


def get_headers(s, extra=b""):
    s.sendall(b"GET /headers HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n")
    status, _, body = pplib.read_http(s)
    assert status == 200, body
    return {k.lower(): v for k, v in json.loads(body)["headers"]}


def access_addr(p, n):
    """The client address of the access log's line n (0-based), once written."""
    lines = lib.wait_until(lambda: len(pplib.access_lines(p)) > n and pplib.access_lines(p),
                           timeout=8, what="access log line %d" % n)
    return lines[n].split(" ", 1)[0]


@pytest.mark.parametrize("version", [1, 2])
def test_h1_carried_address_everywhere(pp_proxy, version):
    p = pp_proxy()
    hdr = v1("203.0.113.7", "127.0.0.1", 51000, p.port) if version == 1 else \
        v2("203.0.113.7", "127.0.0.1", 51000, p.port)
    with pplib.connect(p.port) as s:
        s.sendall(hdr)
        h = get_headers(s, b"X-Forwarded-For: 6.6.6.6\r\n")
        # the carried client is not a trusted proxy: its X-Forwarded-For is replaced
        assert h["x-forwarded-for"] == "203.0.113.7"
        assert "for=203.0.113.7" in h["forwarded"]
        # a second request on the same connection: the same client
        assert get_headers(s)["x-forwarded-for"] == "203.0.113.7"
    assert access_addr(p, 0) == "203.0.113.7"
    assert access_addr(p, 1) == "203.0.113.7"


def test_h1_ipv6_carried_and_tlvs_skipped(pp_proxy):
    p = pp_proxy()
    hdr = v2("2001:db8::42", "::1", 443, 8443,
             tlvs=tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x04, b""))
    with pplib.connect(p.port) as s:
        s.sendall(hdr)
        h = get_headers(s)
        assert h["x-forwarded-for"] == "2001:db8::42"
        assert 'for="[2001:db8::42]"' in h["forwarded"]
    assert access_addr(p, 0) == "2001:db8::42"


def test_local_and_unknown_keep_the_peer_address(pp_proxy):
    p = pp_proxy()
    for hdr in (v2(None, None, 0, 0, local=True), b"PROXY UNKNOWN\r\n",
                b"PROXY UNKNOWN ::1 ::2 1 2\r\n"):
        with pplib.connect(p.port) as s:
            s.sendall(hdr)
            assert get_headers(s)["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize("version", [1, 2])
def test_header_split_byte_by_byte_then_request_in_the_same_write(pp_proxy, version):
    """Each byte of the header in its own write (TCP_NODELAY, a pause between), then the last
    header byte and the whole request in one write: the request after the header must not be
    lost (nothing after the header is consumed)."""
    import time
    p = pp_proxy()
    hdr = v1("198.51.100.9", "127.0.0.1", 4000, p.port) if version == 1 else \
        v2("198.51.100.9", "127.0.0.1", 4000, p.port, tlvs=tlv(0x04, b"\0" * 20))
    with pplib.connect(p.port) as s:
        for b in hdr[:-1]:
            s.sendall(bytes([b]))
            time.sleep(0.005)
        s.sendall(hdr[-1:] + b"GET /headers HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = pplib.read_http(s)
        assert status == 200
        h = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert h["x-forwarded-for"] == "198.51.100.9"


def test_h2c_prior_knowledge_after_header(pp_proxy):
    h2 = pytest.importorskip("h2.connection")
    import h2.events
    p = pp_proxy()
    with pplib.connect(p.port) as s:
        c = h2.connection.H2Connection()
        c.initiate_connection()
        c.send_headers(1, [(":method", "GET"), (":path", "/headers"), (":scheme", "http"),
                           (":authority", "t")], end_stream=True)
        # header and preface in one write
        s.sendall(v2("192.0.2.200", "127.0.0.1", 1234, p.port) + c.data_to_send())
        body, done = b"", False
        while not done:
            d = s.recv(65536)
            assert d, "closed"
            for e in c.receive_data(d):
                if isinstance(e, h2.events.DataReceived):
                    body += e.data
                    c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                if isinstance(e, h2.events.StreamEnded):
                    done = True
            s.sendall(c.data_to_send())
    h = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert h["x-forwarded-for"] == "192.0.2.200"
    assert access_addr(p, 0) == "192.0.2.200"


@pytest.mark.parametrize("alpn", ["http/1.1", "h2"])
def test_tls_header_precedes_client_hello(pp_proxy, certs, alpn):
    p = pp_proxy(tls=certs.pair("localhost"))
    raw = pplib.connect(p.port)
    raw.sendall(v1("192.0.2.33", "127.0.0.1", 5555, p.port))
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.set_alpn_protocols([alpn])
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == alpn
        if alpn == "http/1.1":
            assert get_headers(s)["x-forwarded-for"] == "192.0.2.33"
        else:
            import h2.connection
            import h2.events
            c = h2.connection.H2Connection()
            c.initiate_connection()
            c.send_headers(1, [(":method", "GET"), (":path", "/headers"), (":scheme", "https"),
                               (":authority", "localhost")], end_stream=True)
            s.sendall(c.data_to_send())
            body, done = b"", False
            while not done:
                d = s.recv(65536)
                assert d
                for e in c.receive_data(d):
                    if isinstance(e, h2.events.DataReceived):
                        body += e.data
                    if isinstance(e, h2.events.StreamEnded):
                        done = True
                s.sendall(c.data_to_send())
            h = {k.lower(): v for k, v in json.loads(body)["headers"]}
            assert h["x-forwarded-for"] == "192.0.2.33"
    assert access_addr(p, 0) == "192.0.2.33"


def refused(p, payload, why, source=None):
    with pplib.connect(p.port, source=source) as s:
        if payload:
            try:
                s.sendall(payload)
            except OSError:
                pass
        assert pplib.closed(s), "not closed"
    lib.wait_until(lambda: re.search(why, pplib.error_log(p)), timeout=8,
                   what="log line %r" % why)


def test_untrusted_peer_closed_with_log(pp_proxy):
    p = pp_proxy(trusted="127.0.0.2")
    refused(p, v1("203.0.113.7", "127.0.0.1", 1, 2) + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            r"PROXY protocol from 127\.0\.0\.1:\d+: not in trusted_proxies; closing")
    assert p.backend.stats()["requests"] == 0
    # 127.0.0.2 is trusted
    with pplib.connect(p.port, source="127.0.0.2") as s:
        s.sendall(v1("203.0.113.8", "127.0.0.1", 1, 2))
        assert get_headers(s)["x-forwarded-for"] == "203.0.113.8"


@pytest.mark.parametrize("payload,why", [
    (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", "no PROXY protocol header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", "bad v1 port"),
    (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 1\r\n", "bad v1 address"),
    (b"PROXY TCP4 " + b"1" * 120, "longer than 107"),
    (pplib.SIG + b"\x21\x11\xff\xff", "longer than 4096"),
    (pplib.SIG + b"\x21\x12\x00\x0c" + b"\0" * 12, "datagram"),
    (pplib.SIG + b"\x31\x11\x00\x0c" + b"\0" * 12, "version"),
])
def test_malformed_header_closed_with_log(pp_proxy, payload, why):
    p = pp_proxy()
    refused(p, payload, r"PROXY protocol from 127\.0\.0\.1:\d+: .*" + re.escape(why))
    assert p.backend.stats()["requests"] == 0


def test_no_header_within_timeout(pp_proxy):
    p = pp_proxy(server_extra="    proxy_protocol_timeout 300ms;\n")
    refused(p, b"", r"PROXY protocol from 127\.0\.0\.1:\d+: no header within "
                    r"proxy_protocol_timeout")
    refused(p, b"PROXY TCP4 1.2", r"header incomplete at proxy_protocol_timeout")
    refused(p, b"PROXY TCP4 1.2", r"header incomplete")


def test_close_mid_header_logged(pp_proxy):
    p = pp_proxy()
    with pplib.connect(p.port) as s:
        s.sendall(pplib.SIG[:5])
    lib.wait_until(lambda: "closed in the middle of the header" in pplib.error_log(p),
                   timeout=8, what="log of a close mid-header")


def test_config_needs_trusted_proxies(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("upstream app { server 127.0.0.1:9; }\nserver {\n    listen 127.0.0.1:%d "
                    "proxy_protocol;\n    location / { proxy_pass app; }\n}\n" % lib.free_port())
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc != 0
    assert "proxy_protocol: no trusted_proxies" in out
    conf.write_text("upstream app { server 127.0.0.1:9; }\nserver {\n    listen 127.0.0.1:%d "
                    "proxy_protocol;\n    trusted_proxies 10.0.0.0/8;\n    location / { "
                    "proxy_pass app; }\n}\nserver {\n    listen 127.0.0.1:%d;\n    location / "
                    "{ proxy_pass app; }\n}\n" % (lib.free_port(), lib.free_port()))
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc == 0, out


def test_header_wait_survives_a_reload(tmp_path, start_backend, start_portico):
    """A connection half-way through its header when a reload comes finishes it under the new
    configuration (the wait moves to the same address's listen of the new snapshot)."""
    import os
    import signal
    b = start_backend("b1")
    port = lib.free_port()
    conf = pp_conf(tmp_path, port, b)
    p = start_portico(conf, [port])
    hdr = v2("192.0.2.44", "127.0.0.1", 4444, port)
    with pplib.connect(port) as s:
        s.sendall(hdr[:10])
        with open(p.conf_path + ".tmp", "w") as f:
            f.write(conf.replace("location / {", "location /x { return 204; }\n    location / {"))
        os.rename(p.conf_path + ".tmp", p.conf_path)
        p.signal(signal.SIGHUP)
        lib.wait_until(lambda: re.search(r"reloaded: configuration generation",
                                         pplib.error_log(p)), timeout=8, what="the reload")
        s.sendall(hdr[10:] + b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        assert pplib.read_http(s)[0] == 204  # the new configuration's location
        assert get_headers(s)["x-forwarded-for"] == "192.0.2.44"
