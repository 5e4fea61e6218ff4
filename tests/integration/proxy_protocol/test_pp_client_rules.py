"""The carried address is the one client address every rule reads (pt_exchange_client()):
allow/deny of a status location, and `hash client_ip` (HTTP and stream) keyed by it."""

import json
import re

import portico_testlib as lib
import pplib
from pplib import v1, v2
from streamlib import stream, upstream, wait_stream_log


def test_allow_deny_see_the_carried_address(tmp_path, start_backend, start_portico):
    b = start_backend("b1")
    port = lib.free_port()
    body = """upstream app { server %s; }
server {
    listen 127.0.0.1:%d proxy_protocol;
    trusted_proxies 127.0.0.1;
    location /status { status; allow 203.0.113.0/24; deny all; }
    location / { proxy_pass app; }
}
""" % (b.addr, port)
    start_portico(lib.make_conf(tmp_path, body), [port])

    def status_of(addr):
        with pplib.connect(port) as s:
            s.sendall(v1(addr, "127.0.0.1", 1234, port) +
                      b"GET /status HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n")
            return pplib.read_http(s)[0]

    # the TCP peer is 127.0.0.1 in both cases: only the carried address differs
    assert status_of("203.0.113.5") == 200
    assert status_of("198.51.100.5") == 403


def test_http_hash_client_ip_keyed_by_carried_address(tmp_path, start_backend, start_portico):
    b1, b2 = start_backend("b1"), start_backend("b2")
    port = lib.free_port()
    body = """upstream app { server %s; server %s; balance hash client_ip; }
server {
    listen 127.0.0.1:%d proxy_protocol;
    trusted_proxies 127.0.0.1;
    location / { proxy_pass app; }
}
""" % (b1.addr, b2.addr, port)
    start_portico(lib.make_conf(tmp_path, body), [port])

    def backend_of(addr, sport):
        with pplib.connect(port) as s:
            s.sendall(v2(addr, "127.0.0.1", sport, port) + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            status, hdrs, _ = pplib.read_http(s)
            assert status == 200
            return hdrs["x-backend"]

    seen = {}
    for i in range(16):
        addr = "198.51.100.%d" % (10 + i)
        first = backend_of(addr, 1000 + i)
        assert backend_of(addr, 2000 + i) == first  # another port, another connection
        seen[addr] = first
    # every connection came from 127.0.0.1: keyed by it, all would go to one server
    assert set(seen.values()) == {"b1", "b2"}, seen


def test_stream_hash_client_ip_keyed_by_carried_address(tmp_path, start_stream, start_tcp):
    e1, e2 = start_tcp("E1", mode="greet"), start_tcp("E2", mode="greet")
    port = lib.free_port()
    p = start_stream(upstream("g", [e1.addr, e2.addr], "    balance hash client_ip;\n") +
                     stream("listen 127.0.0.1:%d proxy_protocol;\ntrusted_proxies 127.0.0.1;\n"
                            "proxy_pass g;" % port), [port])
    for i in range(16):
        for _ in range(2):
            with pplib.connect(port) as s:
                s.sendall(v1("192.0.2.%d" % (20 + i), "127.0.0.1", 3000, port))
                assert s.recv(100)
    lines = wait_stream_log(p, 32)
    by_client = {}
    for ln in lines:
        by_client.setdefault(ln["client"], set()).add(ln["addrs"])
    assert len(by_client) == 16, by_client
    assert all(len(v) == 1 for v in by_client.values()), by_client
    assert len(set().union(*by_client.values())) == 2, by_client


def test_remote_addr_variables_are_the_carried_address(tmp_path, start_portico):
    port = lib.free_port()
    body = """server {
    listen 127.0.0.1:%d proxy_protocol;
    trusted_proxies 127.0.0.1;
    location / { return 200 "$remote_addr $remote_port\\n"; }
}
""" % port
    start_portico(lib.make_conf(tmp_path, body), [port])
    with pplib.connect(port) as s:
        s.sendall(v2("2001:db8::9", "::1", 44321, 443) + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = pplib.read_http(s)
    assert (status, body) == (200, b"2001:db8::9 44321\n")
