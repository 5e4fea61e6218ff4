"""Stream servers over UDP (`listen ADDR udp;`): `dig` against `dnsmasq` through portico, two
dnsmasq backends balanced round robin, an echo backend under load with loss counted, the session
rules (sticky per client address:port, proxy_responses, proxy_timeout, udp_max_sessions), ICMP
errors, IPv6, and the access log's UDP lines. Every process is started by the test and stopped
by PID."""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import portico_testlib as lib
from streamlib import stream, upstream
from udplib import (Dnsmasq, UdpBackend, dig, start_udp_portico, udp_free_port, udp_log,
                    wait_udp_log)


@pytest.fixture
def backends(tmp_path):
    started = []

    def _start(name, mode="echo", host="127.0.0.1"):
        b = UdpBackend(name, mode=mode, host=host, logdir=str(tmp_path))
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()


@pytest.fixture
def dnsmasq(tmp_path):
    if shutil.which("dnsmasq") is None and not os.path.exists("/usr/sbin/dnsmasq"):
        pytest.skip("dnsmasq not installed (apt-get install dnsmasq-base; scripts/deps.sh --test)")
    if shutil.which("dig") is None:
        pytest.skip("dig not installed (apt-get install dnsutils; scripts/deps.sh --test)")
    started = []

    def _start(hosts):
        d = Dnsmasq(hosts, str(tmp_path))
        started.append(d)
        return d

    yield _start
    for d in started:
        d.stop()


def test_udp_dig_through_portico(tmp_path, start_portico, dnsmasq):
    dns = dnsmasq({"www.example.test": "10.1.2.3", "db.example.test": "10.1.2.4"})
    port = udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("dns", [dns.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass dns;\nproxy_responses 1;\nproxy_timeout 5s;"
        % port), [port])
    assert dig(port, "www.example.test") == ["10.1.2.3"]
    assert dig(port, "db.example.test") == ["10.1.2.4"]
    assert dig(port, "nothing.example.test") == []
    lines = wait_udp_log(p, 3)
    for line in lines:
        # one query, one answer: the session ends when the answer is relayed (proxy_responses 1)
        assert line["proto"] == "UDP" and line["status"] == "200", line
        assert line["outcome"] == "closed", line
        assert line["addrs"] == dns.addr and line["upstream"] == "dns", line
        assert line["dgrams_received"] == "1" and line["dgrams_sent"] == "1", line
        assert line["up_dgrams_sent"] == "1" and line["up_dgrams_received"] == "1", line
        assert int(line["received"]) > 20 and int(line["sent"]) > 20, line
        assert int(line["up_sent"]) == int(line["received"]), line
        assert int(line["up_received"]) == int(line["sent"]), line


def test_udp_dnsmasq_round_robin(tmp_path, start_portico, dnsmasq):
    a = dnsmasq({"svc.example.test": "10.0.0.1"})
    b = dnsmasq({"svc.example.test": "10.0.0.2"})
    port = udp_free_port()
    start_udp_portico(start_portico, tmp_path, upstream("dns", [a.addr, b.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass dns;\nproxy_responses 1;" % port), [port])
    answers = [tuple(dig(port, "svc.example.test")) for _ in range(8)]
    # each dig comes from a port of its own: a session each, and round robin alternates
    assert set(answers) == {("10.0.0.1",), ("10.0.0.2",)}, answers
    assert answers.count(("10.0.0.1",)) == 4, answers
    for x, y in zip(answers, answers[1:]):
        assert x != y, answers


def test_udp_session_is_sticky_and_replies_come_from_the_listener(tmp_path, start_portico,
                                                                   backends):
    a = backends("a", mode="name")
    b = backends("b", mode="name")
    port = udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [a.addr, b.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_timeout 1s;" % port), [port],
        workers=2)
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(6)]
    try:
        seen = []
        for c in clients:
            c.settimeout(5)
            names = set()
            for i in range(10):
                c.sendto(b"q%d" % i, ("127.0.0.1", port))
                data, frm = c.recvfrom(100)
                # from the address the client sent to, so a connected client socket takes it
                assert frm == ("127.0.0.1", port)
                assert data.endswith(b":q%d" % i)
                names.add(data.split(b":")[0])
            assert len(names) == 1, names  # one server for the session's life
            seen.append(names.pop())
        # two workers (SO_REUSEPORT): each client stays in one session on one worker
        lines = wait_udp_log(p, 6, timeout=10)
        assert sorted(l["dgrams_received"] for l in lines) == ["10"] * 6, lines
        assert all(l["outcome"] == "idle_timeout" for l in lines), lines
        assert set(seen) == {b"a", b"b"}, seen
    finally:
        for c in clients:
            c.close()


def test_udp_echo_under_load(tmp_path, start_portico, backends):
    echo = backends("echo")
    port = udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [echo.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_timeout 2s;" % port), [port],
        workers=2, access_log="off")
    total, clients, window = 20000, 8, 32
    socks = []
    for _ in range(clients):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    sent = received = 0
    outstanding = [0] * clients
    deadline = time.monotonic() + 120
    import select
    try:
        while (sent < total or any(outstanding)) and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                while sent < total and outstanding[i] < window:
                    s.send(b"%08d" % sent + b"x" * 56)
                    sent += 1
                    outstanding[i] += 1
            r, _, _ = select.select(socks, [], [], 0.5)
            if not r:
                # a datagram lost on the way: give up waiting for it
                if sent >= total:
                    break
                outstanding = [0] * clients
                continue
            for s in r:
                i = socks.index(s)
                while True:
                    try:
                        d = s.recv(2048)
                    except BlockingIOError:
                        break
                    if len(d) == 64:
                        received += 1
                        outstanding[i] = max(0, outstanding[i] - 1)
    finally:
        for s in socks:
            s.close()
    loss = (sent - received) / float(sent)
    print("UDP echo: sent %d, received %d, loss %.3f%%" % (sent, received, loss * 100))
    assert sent == total
    assert loss < 0.02, (sent, received)
    assert echo.count() >= received


def test_udp_idle_timeout_ends_a_session(tmp_path, start_portico, backends):
    silent = backends("silent", mode="silent")
    port = udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [silent.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_timeout 1s;" % port), [port])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        c.sendto(b"one", ("127.0.0.1", port))
        c.sendto(b"two", ("127.0.0.1", port))
        line = wait_udp_log(p, 1, timeout=10)[0]
        assert line["outcome"] == "idle_timeout" and line["status"] == "200", line
        assert float(line["time"]) >= 1.0, line
        assert line["dgrams_received"] == "2" and line["dgrams_sent"] == "0", line
        # the same client address later: a new session
        c.sendto(b"three", ("127.0.0.1", port))
        lines = wait_udp_log(p, 2, timeout=10)
        assert lines[1]["dgrams_received"] == "1", lines
    finally:
        c.close()
    assert silent.count() == 3


def test_udp_proxy_responses(tmp_path, start_portico, backends):
    twice = backends("twice", mode="twice")
    p1, p2, p0 = udp_free_port(), udp_free_port(), udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [twice.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_responses 2;" % p2,
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_responses 1;" % p1,
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_responses 0;" % p0,
        extra="    proxy_timeout 30s;\n"), [p1, p2, p0])

    def exchange(port, expect):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(1.0)
        got = []
        try:
            c.sendto(b"ping", ("127.0.0.1", port))
            while True:
                try:
                    got.append(c.recvfrom(100)[0])
                except socket.timeout:
                    break
        finally:
            c.close()
        assert got == [b"ping"] * expect, (port, got)

    exchange(p2, 2)   # both replies, then the session ends (not after proxy_timeout 30s)
    exchange(p1, 1)   # the second reply finds the session over
    exchange(p0, 0)   # no reply expected: the session ends once the datagram is sent on
    lines = wait_udp_log(p, 3, timeout=10)
    by = {l["listen"].rsplit(":", 1)[1]: l for l in lines}
    assert by[str(p2)]["dgrams_sent"] == "2" and by[str(p2)]["outcome"] == "closed", lines
    assert by[str(p1)]["dgrams_sent"] == "1" and by[str(p1)]["outcome"] == "closed", lines
    assert by[str(p0)]["dgrams_sent"] == "0" and by[str(p0)]["up_dgrams_sent"] == "1", lines
    for l in lines:
        assert float(l["time"]) < 10, l
    assert twice.count() == 3


def test_udp_session_limit(tmp_path, start_portico, backends):
    silent = backends("silent", mode="silent")
    port = udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [silent.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_timeout 30s;\nudp_max_sessions 3;"
        % port), [port])
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(6)]
    try:
        for c in clients:
            c.sendto(b"hello", ("127.0.0.1", port))
        lib.wait_until(lambda: silent.count() >= 3, timeout=5, what="3 datagrams")
        lib.wait_until(lambda: "udp_max_sessions (3) reached" in p.read(p.error_log),
                       timeout=5, what="the limit logged")
        assert lib.stays(lambda: silent.count() == 3, 0.5)
        # the sessions there go on; the clients dropped still are
        clients[0].sendto(b"again", ("127.0.0.1", port))
        clients[5].sendto(b"again", ("127.0.0.1", port))
        lib.wait_until(lambda: silent.count() >= 4, timeout=5, what="4 datagrams")
        assert lib.stays(lambda: silent.count() == 4, 0.5)
        log = p.read(p.error_log)
        # logged once (rate-limited), not once per datagram dropped
        assert log.count("udp_max_sessions (3) reached") == 1, log
    finally:
        for c in clients:
            c.close()


def test_udp_sessions_count_as_connections(tmp_path, start_portico, backends):
    """Each session holds a socket: max_connections bounds them with the TCP connections."""
    silent = backends("silent", mode="silent")
    port = udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [silent.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_timeout 30s;" % port), [port],
        main_extra="max_connections 2;")
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for c in clients:
            c.sendto(b"hello", ("127.0.0.1", port))
        lib.wait_until(lambda: "max_connections (2) reached" in p.read(p.error_log),
                       timeout=5, what="the limit logged")
        assert lib.stays(lambda: silent.count() == 2, 0.5)
    finally:
        for c in clients:
            c.close()


def test_udp_server_unreachable(tmp_path, start_portico, backends):
    echo = backends("echo")
    dead = "127.0.0.1:%d" % udp_free_port()
    port = udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [dead, echo.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_responses 1;" % port), [port])
    got = []
    for i in range(4):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(1.0)
        try:
            c.sendto(b"x%d" % i, ("127.0.0.1", port))
            try:
                got.append(c.recvfrom(100)[0])
            except socket.timeout:
                got.append(None)
        finally:
            c.close()
    # the dead server's port answers with an ICMP port unreachable: that session ends 502
    assert sum(1 for g in got if g is not None) >= 2, got
    lines = wait_udp_log(p, 4, timeout=10)
    failed = [l for l in lines if l["status"] == "502"]
    assert failed and all(l["outcome"] == "connect_failed" and l["addrs"] == dead
                          for l in failed), lines
    assert "server %s: Connection refused" % dead in p.read(p.error_log)


def test_udp_ipv6(tmp_path, start_portico, backends):
    if not lib.have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    echo = backends("echo6", mode="name", host="::1")
    port = udp_free_port("::1")
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [echo.addr]) + stream(
        "listen [::1]:%d udp;\nproxy_pass u;\nproxy_responses 1;" % port), [port], host="::1")
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c.settimeout(5)
    try:
        c.sendto(b"v6", ("::1", port))
        data, frm = c.recvfrom(100)
        assert data == b"echo6:v6" and frm[0] == "::1" and frm[1] == port
    finally:
        c.close()
    line = wait_udp_log(p, 1)[0]
    assert line["client"] == "::1" and line["listen"] == "[::1]:%d" % port, line


def test_udp_and_tcp_on_one_port(tmp_path, start_portico, dnsmasq):
    """DNS both ways: a stream server listens on one port with TCP and UDP; dnsmasq serves
    both."""
    dns = dnsmasq({"both.example.test": "10.9.9.9"})
    port = udp_free_port()
    start_udp_portico(start_portico, tmp_path, upstream("dns", [dns.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nlisten 127.0.0.1:%d;\nproxy_pass dns;\nproxy_responses 1;"
        % (port, port)), [port])
    assert dig(port, "both.example.test") == ["10.9.9.9"]
    assert dig(port, "both.example.test", tcp=True) == ["10.9.9.9"]


def test_udp_reload_keeps_sessions(tmp_path, start_portico, backends):
    a = backends("a", mode="name")
    port = udp_free_port()
    body = upstream("u", [a.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_timeout %s;" % (port, "%s"))
    p = start_udp_portico(start_portico, tmp_path, body % "30s", [port])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(5)
    try:
        c.sendto(b"1", ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == b"a:1"
        with open(p.conf_path) as f:
            conf = f.read()
        with open(p.conf_path, "w") as f:
            f.write(conf.replace("proxy_timeout 30s", "proxy_timeout 1s"))
        p.signal(signal.SIGHUP)
        lib.wait_until(lambda: "generation 2" in p.read(p.error_log) or
                       "reloaded" in p.read(p.error_log), timeout=10, what="the reload")
        c.sendto(b"2", ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == b"a:2"
        # the session kept going on the new configuration: its proxy_timeout (1s) ends it
        line = wait_udp_log(p, 1, timeout=10)[0]
        assert line["outcome"] == "idle_timeout" and line["dgrams_received"] == "2", line
    finally:
        c.close()


def test_udp_config_errors(tmp_path, certs):
    def check(body):
        path = os.path.join(str(tmp_path), "u.conf")
        with open(path, "w") as f:
            f.write("error_log stderr notice;\naccess_log off;\n"
                    "upstream app { server 127.0.0.1:9; }\n"
                    "upstream sec { server 127.0.0.1:9; tls on; }\n" + body)
        return lib.run_portico(["-t", "-v", "-c", path])

    rc, out = check("stream { server { listen 127.0.0.1:7001 udp tls; proxy_pass app; } }")
    assert rc == 1 and "u.conf:5:" in out and "DTLS" in out, out
    rc, out = check("stream { server { listen 127.0.0.1:7001 udp; proxy_pass sec; } }")
    assert rc == 1 and '"tls on"' in out, out
    rc, out = check("stream { server { listen 127.0.0.1:7001 udp; "
                    "proxy_pass_sni a.example app; } }")
    assert rc == 1 and 'needs "proxy_pass"' in out, out
    rc, out = check("stream { server { listen 127.0.0.1:7001 udp; proxy_pass app; "
                    "udp_max_sessions 0; } }")
    assert rc == 1 and "udp_max_sessions must be at least 1" in out, out
    rc, out = check("stream { server { listen 127.0.0.1:7001 udp; proxy_pass app; "
                    "proxy_responses x; } }")
    assert rc == 1 and 'invalid number "x" in "proxy_responses"' in out, out
    # the same address twice over UDP is one listen; UDP and TCP of one address are two
    rc, out = check("stream { server { listen 127.0.0.1:7001 udp; proxy_pass app; }\n"
                    "server { listen 127.0.0.1:7001 udp; proxy_pass app; } }")
    assert rc == 1 and "listen 127.0.0.1:7001 udp is already used" in out, out
    rc, out = check("stream { server { listen 127.0.0.1:7001 udp; listen 127.0.0.1:7001; "
                    "proxy_pass app; proxy_responses 1; udp_max_sessions 100; } }")
    assert rc == 0, out
    assert "listen 127.0.0.1:7001 udp listen 127.0.0.1:7001" in out, out
    assert "at most 100 per address and worker" in out and "1 reply per client" in out, out


def test_udp_graceful_stop_ends_sessions(tmp_path, start_portico, backends):
    echo = backends("echo")
    port = udp_free_port()
    p = start_udp_portico(start_portico, tmp_path, upstream("u", [echo.addr]) + stream(
        "listen 127.0.0.1:%d udp;\nproxy_pass u;\nproxy_timeout 10m;" % port), [port])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(5)
    try:
        c.sendto(b"hi", ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == b"hi"
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        # an idle session waits for nothing: the worker ends it and exits, well before the
        # 10m proxy_timeout or the 2s shutdown_timeout
        assert p.wait_exit(10) == 0
        assert time.monotonic() - t0 < 2.0
    finally:
        c.close()
    line = udp_log(p)[0]
    assert line["outcome"] == "stopped" and line["dgrams_sent"] == "1", line
