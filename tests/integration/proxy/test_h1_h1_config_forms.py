"""Config forms that change runtime behaviour: listen forms, per-server access_log,
inheritance from main, connect timeout. (An upstream server by host name depends on how the
name resolves: test_h1_h1_server_names.py, with a private /etc/hosts.)"""

import json
import socket
import time

import pytest

import portico_testlib as lib


def test_h1_h1_listen_port_only(tmp_path, start_backend, start_portico):
    # `listen PORT;` listens on all addresses: reachable on 127.0.0.1
    b = start_backend()
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream app { server %s; }
server { listen %d; location / { proxy_pass app; } }
""" % (b.addr, port))
    start_portico(conf, [port])
    assert lib.curl("http://127.0.0.1:%d/name" % port).body == b"b1"


def test_h1_h1_listen_star(tmp_path, start_backend, start_portico):
    b = start_backend()
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream app { server %s; }
server { listen *:%d; location / { proxy_pass app; } }
""" % (b.addr, port))
    start_portico(conf, [port])
    assert lib.curl("http://127.0.0.1:%d/name" % port).body == b"b1"


def test_h1_h1_access_log_per_server(tmp_path, start_backend, start_portico):
    b = start_backend()
    p1, p2 = lib.free_port(), lib.free_port()
    log2 = tmp_path / "server2.json.log"
    conf = lib.make_conf(tmp_path, """
upstream app { server %s; }
server { listen 127.0.0.1:%d; location / { proxy_pass app; } }
server {
    listen 127.0.0.1:%d;
    access_log %s json;
    location / { proxy_pass app; }
}
""" % (b.addr, p1, p2, log2), access_log="off")
    p = start_portico(conf, [p1, p2])
    assert lib.curl("http://127.0.0.1:%d/name?one" % p1).status == 200
    assert lib.curl("http://127.0.0.1:%d/name?two" % p2).status == 200
    assert p.stop() == 0
    lines = [json.loads(l) for l in log2.read_text().splitlines() if l.strip()]
    assert [o["uri"] for o in lines] == ["/name?two"], lines
    # `access_log off` in main: the first server logs nowhere, so no file was ever opened
    assert not (tmp_path / "access.log").exists()


def test_h1_h1_client_max_body_size_from_main(tmp_path, start_backend, start_portico):
    b = start_backend()
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
client_max_body_size 10;
upstream app { server %s; }
server { listen 127.0.0.1:%d; location / { proxy_pass app; } }
""" % (b.addr, port))
    start_portico(conf, [port])
    url = "http://127.0.0.1:%d/upload" % port
    assert lib.curl(url, "--data-binary", "x" * 10).status == 200
    assert lib.curl(url, "--data-binary", "x" * 11).status == 413


def test_h1_h1_backend_connect_timeout_504(tmp_path, start_portico, blackhole):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, lib.proxy_conf(
        port, ["127.0.0.1:%d" % blackhole], upstream_extra="    connect_timeout 500ms;\n"))
    p = start_portico(conf, [port])
    t0 = time.monotonic()
    r = lib.curl(p.url("/name"))
    dt = time.monotonic() - t0
    assert r.status == 504, r
    assert dt < 3.0, dt


@pytest.mark.ipv6
def test_h1_h1_listen_ipv6_any(tmp_path, start_backend, start_portico):
    b = start_backend()
    port = lib.free_port("::1")
    conf = lib.make_conf(tmp_path, """
upstream app { server %s; }
server { listen [::]:%d; location / { proxy_pass app; } }
""" % (b.addr, port))
    start_portico(conf, [port], host="::1")
    assert lib.curl("http://[::1]:%d/name" % port, "-g").body == b"b1"
