"""Fault injection in stream servers: `fault delay` (before the connect), `fault abort`
(a reset instead of the server), `fault limit_rate` (the relay's bytes per second) on TCP, and
`fault drop percent=P` on UDP. Shares are measured over 2 000 connections or datagrams (within
5 points), the delay over many connections (at least the value; the median within a generous
bound), and each hit shows in the access log."""

import os
import select
import socket
import statistics
import time

import pytest

import portico_testlib as lib
from streamlib import connect, recv_exact, stream, stream_log, upstream, wait_stream_log
from udplib import UdpBackend, start_udp_portico, udp_free_port, wait_udp_log


@pytest.mark.hard_timeout(120)
def test_tcp_fault_delay(start_tcp, start_stream):
    echo = start_tcp("echo")
    port = lib.free_port()
    start_stream(upstream("u", [echo.addr]) + stream(
        "listen 127.0.0.1:%d;\nproxy_pass u;\nfault delay 200ms;" % port), [port],
        access_log="off")
    times = []
    for i in range(20):
        t0 = time.monotonic()
        s = connect(port)
        try:
            s.sendall(b"ping")
            assert recv_exact(s, 4) == b"ping"
        finally:
            s.close()
        times.append(time.monotonic() - t0)
    med = statistics.median(times)
    print("tcp fault delay 200ms: min %.3f median %.3f" % (min(times), med))
    assert min(times) >= 0.200, times
    assert med <= 0.200 * 1.10 + 0.3, times


@pytest.mark.hard_timeout(300)
def test_tcp_fault_abort_share(start_tcp, start_stream):
    echo = start_tcp("echo")
    port = lib.free_port()
    p = start_stream(upstream("u", [echo.addr]) + stream(
        "listen 127.0.0.1:%d;\nproxy_pass u;\nfault abort percent=25;" % port), [port],
        error_level="info")
    ok = reset = 0
    for i in range(2000):
        s = None
        try:
            s = connect(port)
            s.sendall(b"x")
            d = s.recv(10)
            if d == b"x":
                ok += 1
            else:
                reset += 1
        except (ConnectionResetError, BrokenPipeError):
            reset += 1
        finally:
            if s is not None:
                s.close()
    share = reset / 2000.0
    print("tcp fault abort percent=25: %d ok, %d reset (%.1f %%)" % (ok, reset, share * 100))
    assert abs(share - 0.25) <= 0.05, (ok, reset)
    wait_stream_log(p, reset, timeout=20, where=lambda l: l["outcome"] == "fault_abort")
    lines = wait_stream_log(p, 2000, timeout=20)
    aborted = [l for l in lines if l["outcome"] == "fault_abort"]
    # every reset the client saw is a logged abort; lines past 2000 are the harness's readiness
    # probe connections, which the fault may abort too (one time in four)
    probes = len(lines) - 2000
    assert reset <= len(aborted) <= reset + probes, (reset, len(aborted), probes)
    assert all(l["status"] == "502" for l in aborted)


@pytest.mark.hard_timeout(120)
def test_tcp_fault_limit_rate(start_tcp, start_stream):
    total = 192 * 1024
    src = start_tcp("src", mode="source", extra=["--bytes", str(total)])
    port = lib.free_port()
    start_stream(upstream("u", [src.addr]) + stream(
        "listen 127.0.0.1:%d;\nproxy_pass u;\nfault limit_rate 64k;" % port), [port])
    t0 = time.monotonic()
    s = connect(port)
    try:
        data = recv_exact(s, total, timeout=60)
    finally:
        s.close()
    took = time.monotonic() - t0
    print("tcp fault limit_rate 64k: %d bytes in %.2f s (%.0f B/s)" % (len(data), took,
                                                                     len(data) / took))
    assert len(data) == total
    # the first 16 KiB go at once, the rest at 64 KiB/s: 2.75 s at least
    assert took >= 2.5, took
    assert took <= 20, took


@pytest.mark.hard_timeout(240)
def test_udp_fault_drop_share(tmp_path, start_portico):
    echo = UdpBackend("echo", logdir=str(tmp_path))
    try:
        port = udp_free_port()
        p = start_udp_portico(start_portico, tmp_path, upstream("u", [echo.addr]) + stream(
            "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_timeout 1s;\nfault drop percent=30;"
            % port), [port])
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        c.connect(("127.0.0.1", port))
        sent = received = 0
        try:
            for burst in range(40):  # 2 000 datagrams, 50 at a time: nothing lost but the drops
                for i in range(50):
                    c.send(b"%06d" % sent)
                    sent += 1
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline:
                    r, _, _ = select.select([c], [], [], 0.1)
                    if not r:
                        if received >= sent * 0.5:
                            break
                        continue
                    c.recv(100)
                    received += 1
            deadline = time.monotonic() + 1
            c.setblocking(False)
            while time.monotonic() < deadline:
                try:
                    c.recv(100)
                    received += 1
                except BlockingIOError:
                    time.sleep(0.05)
        finally:
            c.close()
        share = 1 - received / float(sent)
        print("udp fault drop percent=30: sent %d, echoed %d, dropped %.1f %%"
              % (sent, received, share * 100))
        assert abs(share - 0.30) <= 0.05, (sent, received)
        # one session (one client port), its drops counted in its line
        line = wait_udp_log(p, 1, timeout=10)[0]
        assert line["dgrams_received"] == "2000", line
        assert int(line["dropped"]) + int(line["up_dgrams_sent"]) == 2000, line
        assert int(line["up_dgrams_sent"]) == echo.count()
    finally:
        echo.stop()


def test_stream_fault_config(tmp_path):
    def check(body):
        path = os.path.join(str(tmp_path), "f.conf")
        with open(path, "w") as f:
            f.write("error_log stderr notice;\naccess_log off;\n"
                    "upstream app { server 127.0.0.1:9; }\n" + body)
        return lib.run_portico(["-t", "-v", "-c", path])

    for srv, what in [
        ("listen 127.0.0.1:7001; proxy_pass app; fault drop percent=5;",
         "fault drop is for udp listens"),
        ("listen 127.0.0.1:7001 udp; proxy_pass app; fault delay 1s;",
         "fault delay is for TCP listens"),
        ("listen 127.0.0.1:7001; proxy_pass app; fault abort 503;", 'takes "reset", not "503"'),
        ("listen 127.0.0.1:7001 udp; proxy_pass app; fault drop;", "fault drop needs percent=P"),
        ("listen 127.0.0.1:7001; proxy_pass app; fault limit_rate 0;",
         "fault limit_rate needs bytes per second"),
    ]:
        rc, out = check("stream { server { %s } }" % srv)
        assert rc == 1 and what in out, (srv, out)
    rc, out = check("stream { server { listen 127.0.0.1:7001; listen 127.0.0.1:7001 udp; "
                    "proxy_pass app; fault delay 50ms percent=10; fault abort reset percent=1;"
                    " fault limit_rate 1m; fault drop percent=2.5; } }")
    assert rc == 0, out
    for f in ("fault delay 50ms percent=10.00", "fault abort reset percent=1.00",
              "fault limit_rate 1m percent=100.00", "fault drop percent=2.50"):
        assert f in out, out
