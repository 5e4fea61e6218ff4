"""Stream connections across a live reload (one whose route is unchanged runs on; one whose
route is gone is closed, logged) and a graceful stop (SIGTERM: no new connection, a transfer in
progress finishes; cut at shutdown_timeout otherwise)."""

import os
import re
import signal
import socket
import ssl
import time

import pytest

import portico_testlib as lib
from streamlib import (closed_within, connect, recv_exact, recv_until, stream, stream_log,
                      upstream, wait_stream_log)

import tcp_backend


def reload_with(p, body, n):
    conf = lib.make_conf(p.tmpdir, body, workers=2, error_level="debug",
                         shutdown_timeout="%dms" % int(p.shutdown_timeout * 1000))
    with open(p.conf_path + ".tmp", "w") as f:
        f.write(conf)
    os.rename(p.conf_path + ".tmp", p.conf_path)
    p.signal(signal.SIGHUP)

    def done():
        log = p.read(p.error_log)
        k = len(re.findall(r"reloaded: configuration generation|reload failed", log))
        return log if k >= n else None
    log = lib.wait_until(done, 10, what="reload #%d in the error log" % n)
    assert "reload failed" not in log, log
    return log


def echo_line(s, text):
    s.sendall(text)
    return recv_until(s, b"\n")


def test_stream_reload_keeps_unchanged_route(start_tcp, start_stream):
    b = start_tcp("b", mode="echo")
    other = start_tcp("other", mode="greet")
    port, port2 = lib.free_port(), lib.free_port()
    body1 = (upstream("app", [b.addr]) +
             stream("listen 127.0.0.1:%d;\nproxy_pass app;\nproxy_timeout 30s;" % port))
    p = start_stream(body1, [port], workers=2)
    s = connect(port)
    assert echo_line(s, b"before\n") == b"before\n"
    # a new stream server, a new upstream, other settings for this one: its route (listen,
    # upstream "app", server b) is unchanged
    body2 = (upstream("app", [b.addr], extra="    retries 2;\n") +
             upstream("other", [other.addr]) +
             stream("listen 127.0.0.1:%d;\nproxy_pass app;\nproxy_timeout 20s;" % port,
                    "listen 127.0.0.1:%d;\nproxy_pass other;" % port2))
    log = reload_with(p, body2, 1)
    assert echo_line(s, b"after one reload\n") == b"after one reload\n"
    assert lib.wait_port("127.0.0.1", port2)
    t = connect(port2)
    assert recv_until(t, b"\n") == b"hello from other\n"
    t.close()
    # and again (the connection moved to the second snapshot: it follows the third)
    reload_with(p, body2 + "# again\n", 2)
    assert echo_line(s, b"after two\n") == b"after two\n"
    assert "is gone after the reload" not in p.read(p.error_log)
    s.close()
    line = wait_stream_log(p, 1, where=lambda l: l["received"] == str(len(
        b"before\nafter one reload\nafter two\n")))[0]
    assert line["outcome"] == "closed" and line["status"] == "200"


def test_stream_reload_closes_gone_route(start_tcp, start_stream):
    b = start_tcp("b", mode="echo")
    b2 = start_tcp("b2", mode="echo")
    port = lib.free_port()
    p = start_stream(upstream("app", [b.addr]) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port], workers=2)
    s = connect(port)
    assert echo_line(s, b"before\n") == b"before\n"
    # upstream "app" no longer holds the server this connection is on
    reload_with(p, upstream("app", [b2.addr]) +
                stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), 1)
    assert closed_within(s, 5)
    s.close()
    assert re.search(r"stream 127\.0\.0\.1:%d: the route of 127\.0\.0\.1:\d+ is gone after the "
                     r"reload" % port, p.read(p.error_log))
    line = wait_stream_log(p, 1, where=lambda l: l["outcome"] == "reload")[0]
    assert line["addrs"] == b.addr
    # new connections go to the new server
    t = connect(port)
    assert echo_line(t, b"new\n") == b"new\n"
    t.close()
    assert lib.wait_until(lambda: b2.accepted() >= 1, 5)


@pytest.mark.hard_timeout(60)
def test_stream_sigterm_lets_transfer_finish(start_tcp, start_stream):
    size = 3 * 1024 * 1024
    src = start_tcp("src", mode="source", extra=["--bytes", str(size), "--rate", "1500000"])
    port = lib.free_port()
    p = start_stream(upstream("app", [src.addr]) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port],
                     shutdown_timeout=15.0)
    s = connect(port, timeout=20)
    first = recv_exact(s, 65536)
    assert len(first) == 65536
    p.signal(signal.SIGTERM)
    # no new connection is taken...
    assert lib.wait_until(lambda: not lib.wait_port("127.0.0.1", port, 0.2), 5,
                          what="the listener closed")
    # ...and the transfer finishes, every byte, then EOF
    rest = recv_exact(s, size - len(first) + 1, timeout=30)
    s.close()
    assert first + rest == tcp_backend.pattern(size)
    assert p.wait_exit(10) == 0
    log = p.read(p.access_log)
    assert re.search(r'"TCP 127\.0\.0\.1:%d" 200 %d \d+ [\d.]+ upstream=app .* outcome=closed'
                     % (port, size), log), log


@pytest.mark.hard_timeout(60)
def test_stream_sigterm_cuts_at_shutdown_timeout(start_tcp, start_stream):
    src = start_tcp("src", mode="source", extra=["--bytes", str(50 * 1024 * 1024),
                                                 "--rate", "1000000"])
    port = lib.free_port()
    p = start_stream(upstream("app", [src.addr]) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port],
                     shutdown_timeout=1.0)
    s = connect(port, timeout=20)
    assert len(recv_exact(s, 16384)) == 16384
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert closed_within(s, 10)
    assert time.monotonic() - t0 > 0.8
    s.close()
    assert p.wait_exit(10) == 0
    assert re.search(r"outcome=stopped", p.read(p.access_log))


def test_stream_reload_during_setup(certs, start_tcp, start_stream):
    """Connections still being set up when a reload comes (a ClientHello half read, a TLS
    handshake half done) are routed by the new configuration when their route is kept."""
    a = start_tcp("A", mode="hello", tls=certs.pair("a.example"))
    echo = start_tcp("E", mode="echo")
    port, tport = lib.free_port(), lib.free_port()
    cert, key = certs.pair("localhost")
    body = (upstream("tls_a", [a.addr]) + upstream("plain", [echo.addr]) +
            stream("listen 127.0.0.1:%d;\nproxy_pass_sni a.example tls_a;" % port,
                   "listen 127.0.0.1:%d tls;\ntls_certificate %s;\ntls_certificate_key %s;\n"
                   "proxy_pass plain;" % (tport, cert, key)))
    p = start_stream(body, [port, tport], workers=2)
    ctx = ssl.create_default_context(cafile=certs.ca)
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_hostname="a.example")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outb.read()
    s = connect(port)
    s.sendall(hello[:20])           # the ClientHello, half of it
    raw = connect(tport)            # a TLS handshake, not begun
    reload_with(p, body + "# changed\n", 1)
    s.sendall(hello[20:])
    # the backend's ServerHello comes back: the connection was routed to tls_a
    assert recv_until(s, b"\x16\x03", timeout=5).startswith(b"\x16\x03")
    s.close()
    with ssl.create_default_context(cafile=certs.ca).wrap_socket(
            raw, server_hostname="localhost") as t:
        t.sendall(b"after the reload\n")
        assert recv_until(t, b"\n") == b"after the reload\n"
    assert "is gone after the reload" not in p.read(p.error_log)
    lines = wait_stream_log(p, 2, where=lambda l: l["received"] != "0")
    assert all(l["status"] == "200" for l in lines), lines
