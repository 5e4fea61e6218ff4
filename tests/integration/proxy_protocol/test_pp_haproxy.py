"""HAProxy (Debian's haproxy) as the PROXY-speaking load balancer in front of portico:
`send-proxy` (v1) and `send-proxy-v2` to a `listen ... proxy_protocol` HTTP server and to a
stream server; curl binds 127.0.0.3, and that address (not HAProxy's 127.0.0.1) is what the
backend sees in X-Forwarded-For and portico's access log shows."""

import json
import os
import shutil
import signal
import subprocess

import pytest

import portico_testlib as lib
import pplib
from streamlib import stream, upstream, wait_stream_log

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                      else None)


@pytest.fixture
def start_haproxy(tmp_path):
    if HAPROXY is None:
        pytest.skip("haproxy not installed (apt-get install haproxy; scripts/deps.sh --test)")
    started = []

    def _start(front_port, target_port, send):
        conf = tmp_path / ("haproxy-%d.cfg" % front_port)
        conf.write_text("""global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
listen front
    bind 127.0.0.1:%d
    server portico 127.0.0.1:%d %s
""" % (front_port, target_port, send))
        log = open(str(tmp_path / ("haproxy-%d.log" % front_port)), "ab")
        p = subprocess.Popen([HAPROXY, "-db", "-f", str(conf)], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
        started.append((p, log))
        assert lib.wait_port("127.0.0.1", front_port, 10.0, p), "haproxy did not start"
        return p

    yield _start
    for p, log in started:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        log.close()


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_haproxy_in_front_of_http(tmp_path, start_backend, start_portico, start_haproxy, send):
    b = start_backend("b1")
    port, front = lib.free_port(), lib.free_port()
    body = """upstream app { server %s; }
server {
    listen 127.0.0.1:%d proxy_protocol;
    trusted_proxies 127.0.0.1;
    location / { proxy_pass app; }
}
""" % (b.addr, port)
    p = start_portico(lib.make_conf(tmp_path, body), [port])
    start_haproxy(front, port, send)
    r = lib.curl("http://127.0.0.1:%d/headers" % front, "--interface", "127.0.0.3")
    assert r.status == 200, r
    h = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    assert h["x-forwarded-for"] == "127.0.0.3"
    lib.wait_until(lambda: [ln for ln in pplib.access_lines(p) if "/headers" in ln], timeout=8,
                   what="the access log line")
    assert [ln.split()[0] for ln in pplib.access_lines(p) if "/headers" in ln] == ["127.0.0.3"]


def test_haproxy_in_front_of_stream(tmp_path, start_stream, start_tcp, start_haproxy):
    e = start_tcp("E", mode="echo")
    port, front = lib.free_port(), lib.free_port()
    p = start_stream(upstream("echo", [e.addr]) +
                     stream("listen 127.0.0.1:%d proxy_protocol;\ntrusted_proxies 127.0.0.1;\n"
                            "proxy_pass echo;" % port), [port])
    start_haproxy(front, port, "send-proxy-v2")
    with pplib.connect(front, source="127.0.0.3") as s:
        s.sendall(b"through haproxy\n")
        got = b""
        while not got.endswith(b"\n"):
            d = s.recv(100)
            assert d
            got += d
        assert got == b"through haproxy\n"
    # (the port probe that saw haproxy listening went through it too: a line of 127.0.0.1)
    lines = wait_stream_log(p, 1, where=lambda ln: ln["received"] == "16")
    assert [ln["client"] for ln in lines] == ["127.0.0.3"]
