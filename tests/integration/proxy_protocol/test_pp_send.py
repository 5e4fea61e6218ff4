"""proxy_protocol v1|v2 in an upstream: portico writes a PROXY header first on every connection
to its servers (tests/tools/pp_backend.py reads it strictly and answers with what it carried).
HTTP connection pooling stays correct: a pooled connection is reused only by the client
connection whose header it sent, so two clients from different source addresses (127.0.0.2 and
127.0.0.3) each reach the server with their own address. Health checks send v2 LOCAL / v1
UNKNOWN. Stream servers send the header before relaying (and before TLS to the server)."""

import re
import ssl

import pytest

import portico_testlib as lib
import pplib
from pplib import v1
from streamlib import stream, upstream


def http_conf(tmp_path, port, b, version, upstream_extra="", listen_extra="",
              server_extra=""):
    body = """upstream app {
    server %s;
    connect_timeout 2s;
    keepalive 8;
    proxy_protocol v%d;
%s}

server {
    listen 127.0.0.1:%d%s;
    server_name _;
%s
    location / {
        proxy_pass app;
    }
}
""" % (b.addr, version, upstream_extra, port, listen_extra, server_extra)
    return lib.make_conf(tmp_path, body)


def get(s, path="/"):
    s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
    status, hdrs, body = pplib.read_http(s)
    assert status == 200, body
    m = re.match(r"src=(\S+) dst=(\S+) v=(\d) conn=(\d+)", body.decode())
    assert m, body
    return m.group(1), m.group(2), int(m.group(3)), int(m.group(4))


@pytest.mark.parametrize("version", [1, 2])
def test_http_two_clients_each_with_their_address(tmp_path, start_portico, start_pp_backend,
                                                  version):
    b = start_pp_backend("http")
    port = lib.free_port()
    start_portico(http_conf(tmp_path, port, b, version), [port])
    a = pplib.connect(port, source="127.0.0.2")
    c = pplib.connect(port, source="127.0.0.3")
    try:
        a_port, c_port = a.getsockname()[1], c.getsockname()[1]
        src, dst, v, conn_a = get(a)
        assert (src, dst, v) == ("127.0.0.2:%d" % a_port, "127.0.0.1:%d" % port, version)
        # the other client, while a's backend connection is idle in the pool: not reused
        src, dst, v, conn_c = get(c)
        assert src == "127.0.0.3:%d" % c_port
        assert conn_c != conn_a
        # each client again: each reuses its own backend connection
        for _ in range(2):
            assert get(a) == ("127.0.0.2:%d" % a_port, "127.0.0.1:%d" % port, version, conn_a)
            assert get(c) == ("127.0.0.3:%d" % c_port, "127.0.0.1:%d" % port, version, conn_c)
    finally:
        a.close()
        c.close()
    # a new connection of the same address (another port) gets a new backend connection
    with pplib.connect(port, source="127.0.0.2") as a2:
        src, _, _, conn = get(a2)
        assert src == "127.0.0.2:%d" % a2.getsockname()[1]
        assert conn not in (conn_a, conn_c)
    fam = "TCP4"
    hdrs = [h for h in b.headers() if not h.startswith(("v1 UNKNOWN", "v2 LOCAL"))]
    assert len(hdrs) == 3, hdrs
    assert all(h.startswith("v%d %s 127.0.0." % (version, fam)) for h in hdrs), hdrs


def test_http_carried_address_passed_on(tmp_path, start_portico, start_pp_backend):
    """PROXY in and out: the server gets the address the load balancer in front sent."""
    b = start_pp_backend("http")
    port = lib.free_port()
    start_portico(http_conf(tmp_path, port, b, 2, listen_extra=" proxy_protocol",
                            server_extra="    trusted_proxies 127.0.0.1;\n"), [port])
    with pplib.connect(port) as s:
        s.sendall(v1("203.0.113.50", "198.51.100.1", 61000, 443))
        assert get(s)[:3] == ("203.0.113.50:61000", "198.51.100.1:443", 2)
    with pplib.connect(port) as s:
        s.sendall(v1("2001:db8::5", "2001:db8::1", 61001, 443))
        assert get(s)[:3] == ("2001:db8::5:61001", "2001:db8::1:443", 2)


@pytest.mark.parametrize("version,want", [(1, "v1 UNKNOWN"), (2, "v2 LOCAL")])
def test_health_checks_send_local(tmp_path, start_portico, start_pp_backend, version, want):
    b = start_pp_backend("http")
    port = lib.free_port()
    start_portico(http_conf(tmp_path, port, b, version,
                            upstream_extra="    health_check http interval=200ms;\n"), [port])
    lib.wait_until(lambda: b.headers().count(want) >= 2, timeout=10,
                   what="two health checks with %s" % want)
    assert not [h for h in b.headers() if h.startswith("BAD")], b.headers()
    with pplib.connect(port, source="127.0.0.3") as s:
        assert get(s)[0].startswith("127.0.0.3:")


def test_h2_upstream_refused(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("upstream app { server 127.0.0.1:9; protocol h2c; proxy_protocol v2; }\n"
                    "server { listen 127.0.0.1:%d; location / { proxy_pass app; } }\n"
                    % lib.free_port())
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc != 0
    assert "proxy_protocol cannot be used with protocol h2c" in out


@pytest.mark.parametrize("version", [1, 2])
def test_stream_sends_header_first(tmp_path, start_stream, start_pp_backend, version):
    b = start_pp_backend("tcp")
    port = lib.free_port()
    start_stream(upstream("pp", [b.addr], "    proxy_protocol v%d;\n" % version) +
                 stream("listen 127.0.0.1:%d;\nproxy_pass pp;" % port), [port])
    with pplib.connect(port, source="127.0.0.3") as s:
        s.sendall(b"ping\n")
        got = b""
        while got.count(b"\n") < 2:
            d = s.recv(4096)
            assert d, got
            got += d
        assert got == b"src=127.0.0.3:%d dst=127.0.0.1:%d v=%d\nping\n" % (
            s.getsockname()[1], port, version)


def test_stream_header_before_tls_to_server(tmp_path, start_stream, start_pp_backend, certs):
    b = start_pp_backend("tls", tls=certs.pair("localhost"))
    port = lib.free_port()
    start_stream(upstream("pp", ["localhost:%d" % b.port],
                          "    proxy_protocol v2;\n    tls on;\n"
                          "    tls_trusted_certificate %s;\n" % certs.ca) +
                 stream("listen 127.0.0.1:%d proxy_protocol;\ntrusted_proxies 127.0.0.1;\n"
                        "proxy_pass pp;" % port), [port])
    with pplib.connect(port) as s:
        s.sendall(v1("192.0.2.77", "192.0.2.1", 1000, 2000) + b"x\n")
        got = b""
        while got.count(b"\n") < 2:
            d = s.recv(4096)
            assert d, got
            got += d
        assert got == b"src=192.0.2.77:1000 dst=192.0.2.1:2000 v=2\nx\n"
