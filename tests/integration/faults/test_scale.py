"""Many connections at once beside one that works: 1000 concurrent TLS handshakes (h2load), and
10 000 idle HTTP/2 connections with memory bounded per connection. In both an active client
is served correctly throughout; the figures (handshakes per second, RSS per idle connection)
are printed, not asserted against a clock."""

import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import portico_testlib as lib
from faultlib import Steady, fd_count, rss_kib
from h2_attacks import ACK, PING, PREFACE, SETTINGS, frame, parse_frames, settings
from tls_h2_testlib import plain_server, tls_server, upstream


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """CPU seconds of each thread but the main one (the workers), by thread id."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        if int(tid) == pid:
            continue
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


@pytest.mark.hard_timeout(240)
def test_1000_concurrent_tls_handshakes_other_client_served(certs, start_backend,
                                                            start_portico, tmp_path):
    if shutil.which("h2load") is None:
        pytest.skip("h2load (nghttp2-client) is not installed")
    b = start_backend("b1")
    port = lib.free_port()
    cert, key = certs.pair("localhost")
    conf = lib.make_conf(tmp_path, upstream("app", [b.addr]) +
                         tls_server(port, cert, key, server_name="localhost",
                                    extra="    tls_handshake_timeout 60s;\n"),
                         workers=2, access_log="off")
    p = start_portico(conf, [port])
    steady = Steady(port, "h2", tls=True, cafile=certs.ca)
    steady.start()
    assert lib.wait_until(lambda: steady.ok >= 2 or steady.failures, 20), "steady client idle"
    n = 1000
    ok_before, cpu_before, w_before = steady.ok, cpu_seconds(p.pid), thread_cpu(p.pid)
    t0 = time.monotonic()
    r = subprocess.run(["h2load", "-n", str(n), "-c", str(n), "-m", "1", "-t", "1",
                       "https://127.0.0.1:%d/name" % port],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=200)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(p.pid) - cpu_before
    w_after = thread_cpu(p.pid)
    ok_during = steady.ok - ok_before
    steady.stop()
    out = r.stdout.decode("utf-8", "replace")
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed",
                  out)
    assert m and int(m.group(2)) == n, out
    fin = re.search(r"finished in ([\d.]+)(m?s)", out)
    took = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    print("1000 concurrent TLS handshakes (h2load, TLS %s): %.2f s, %.0f handshakes/s; "
          "portico CPU %.2f s over %.2f s wall (%s)" % (
              (re.search(r"TLS Protocol: (\S+)", out) or re.search("()", "")).group(1),
              took, n / took, cpu, wall,
              ", ".join("thread %d %.2f s" % (k, w_after[k] - w_before.get(k, 0))
                        for k in sorted(w_after))))
    # served throughout, and correctly
    assert not steady.failures, steady.failures[:3]
    assert ok_during >= 1, "the other client got no answer while the handshakes ran"
    with open(p.error_log) as f:
        log = f.read()
    assert "[error]" not in log and "[crit]" not in log, log[-2000:]


def raise_nofile(n):
    """This process's soft descriptor limit, raised towards n (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_idle_h2(port, n, tls, certs):
    """n HTTP/2 connections that said hello (preface, SETTINGS, and the ACK of portico's
    SETTINGS once they came) and then nothing."""
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=certs.ca)
        ctx.set_alpn_protocols(["h2"])
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
            assert s.selected_alpn_protocol() == "h2"
        s.sendall(PREFACE + settings())
        socks.append(s)
    for s in socks:
        buf = bytearray()
        acked = False
        while not acked:
            d = s.recv(65536)
            assert d, "portico closed an idle connection during its setup"
            buf += d
            for t, fl, sid, payload in parse_frames(buf):
                if t == SETTINGS and not fl & ACK:
                    s.sendall(settings(ack=True))
                    acked = True
    return socks


def pings_answered(socks):
    ok = 0
    for s in socks:
        s.sendall(frame(PING, 0, 0, b"idle-chk"))
    for s in socks:
        s.settimeout(10)
        buf = bytearray()
        done = False
        while not done:
            d = s.recv(65536)
            if not d:
                break
            buf += d
            for t, fl, sid, payload in parse_frames(buf):
                if t == PING and fl & ACK and payload == b"idle-chk":
                    done = True
        ok += done
    return ok


@pytest.mark.hard_timeout(300)
@pytest.mark.parametrize("tls,n", [(False, 10000), (True, 2000)], ids=["h2c_10000", "tls_2000"])
def test_idle_h2_connections_bounded_memory_active_client_served(certs, start_backend,
                                                                 start_portico, tmp_path, tls,
                                                                 n):
    if raise_nofile(n + 2000) < n + 2000:
        pytest.skip("the descriptor limit of the test process is under %d" % (n + 2000))
    b = start_backend("b1")
    port, plain = lib.free_port(), lib.free_port()
    cert, key = certs.pair("localhost")
    extra = "    keepalive_timeout 600s;\n"
    body = upstream("app", [b.addr])
    body += tls_server(port, cert, key, server_name="localhost", extra=extra)
    body += plain_server(plain, extra=extra)
    conf = lib.make_conf(tmp_path, body, workers=1, access_log="off",
                         main_extra="max_connections %d;" % (n + 1000))
    # portico raises its descriptor limit to the hard limit, which it inherits from here (a
    # hard limit too low for n is raised with prlimit where the test may, or the test skips)
    wrap = []
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < n + 1000:
        want = "--nofile=%d:%d" % (n + 4096, n + 4096)
        if subprocess.run(["prlimit", want, "true"]).returncode != 0:
            pytest.skip("the hard descriptor limit is under %d and cannot be raised" % (n + 1000))
        wrap = ["prlimit", want]
    p = start_portico(conf, [port, plain], wrap=wrap)
    target = port if tls else plain
    steady = Steady(target, "h2", tls=tls, cafile=certs.ca)
    steady.start()
    assert lib.wait_until(lambda: steady.ok >= 20 or steady.failures, 30), "steady client idle"
    fds0, rss0 = fd_count(p.pid), rss_kib(p.pid)
    socks = open_idle_h2(target, n, tls, certs)
    try:
        assert lib.wait_until(lambda: fd_count(p.pid) >= fds0 + n, 30), \
            "portico holds %d descriptors, %d + %d expected" % (fd_count(p.pid), fds0, n)
        ok0 = steady.ok
        time.sleep(1)
        rss1 = rss_kib(p.pid)
        per = (rss1 - rss0) * 1024.0 / n
        print("%d idle %s connections: RSS %d KiB -> %d KiB, %.0f bytes per connection" % (
            n, "h2 (TLS)" if tls else "h2c", rss0, rss1, per))
        # the active client is served beside them, correctly
        assert lib.wait_until(lambda: steady.ok >= ok0 + 20 or steady.failures, 60)
        assert not steady.failures, steady.failures[:3]
        # idle connections are alive and answer (a sample)
        sample = socks[::max(1, n // 200)]
        assert pings_answered(sample) == len(sample)
        # memory per idle connection stays bounded, with no I/O buffer held while idle (one
        # 16 KiB chunk each would show). Measured here: about 14 KB for h2c, nearly all of it
        # nghttp2's session (its 16 KiB frame buffer, HPACK tables), and 38 KB over TLS
        assert per < (52 if tls else 24) * 1024, "%.0f bytes per idle connection" % per
    finally:
        for s in socks:
            s.close()
    steady.stop()
    assert not steady.failures, steady.failures[:3]
    assert lib.wait_until(lambda: fd_count(p.pid) <= fds0, 60), \
        "portico holds %d descriptors after the idle clients left, %d before" % (
            fd_count(p.pid), fds0)
