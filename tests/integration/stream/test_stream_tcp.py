"""TCP relaying behaviour of a stream server: a server killed mid-stream (its client sees the
close, the others go on), connect retries on another server (bounded by `retries`), the idle
timeout on one clock for both directions, half-close passed through, 1 000 concurrent
connections, max_connections and max_conns/backup counting connections, the json log line."""

import json
import os
import socket
import threading
import time

import pytest

import portico_testlib as lib
from streamlib import (closed_within, connect, recv_exact, recv_until, stream, stream_log,
                      upstream, wait_stream_log)


def echo_stream(start_tcp, start_stream, upstream_extra="", server_extra="", n=1, mode="echo",
                workers=1, main_extra="", access_log="combined"):
    backends = [start_tcp("b%d" % i, mode=mode) for i in range(n)]
    port = lib.free_port()
    p = start_stream(upstream("app", [b.addr for b in backends], extra=upstream_extra) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;\n%s" % (port, server_extra)),
                     [port], workers=workers, main_extra=main_extra, access_log=access_log)
    return p, port, backends


def test_stream_backend_killed_mid_stream(start_tcp, start_stream):
    """Two connections on two servers; one server is killed: its client sees the connection
    close, the other connection goes on."""
    p, port, (b0, b1) = echo_stream(start_tcp, start_stream, n=2, mode="greet",
                                    upstream_extra="    outlier_detection off;\n")
    conns = {}
    for _ in range(2):
        s = connect(port)
        hello = recv_until(s, b"\n")
        conns[hello.split()[-1].decode()] = s
    assert set(conns) == {"b0", "b1"}
    for s in conns.values():
        s.sendall(b"before\n")
        assert recv_until(s, b"before\n") == b"before\n"
    b0.kill()
    assert closed_within(conns["b0"], 5)
    for i in range(5):
        conns["b1"].sendall(b"still here %d\n" % i)
        assert recv_until(conns["b1"], b"%d\n" % i) == b"still here %d\n" % i
    conns["b1"].close()
    conns["b0"].close()


def test_stream_connect_retry_on_refusal(start_tcp, start_stream):
    """The first server refuses: the connection goes to the second before any byte was relayed,
    and the client never knows."""
    good = start_tcp("good", mode="greet")
    refusing = "127.0.0.1:%d" % lib.free_port()
    port = lib.free_port()
    p = start_stream(upstream("app", [refusing, good.addr],
                              extra="    outlier_detection off;\n    retries 1;\n") +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port])
    for i in range(6):
        s = connect(port)
        assert recv_until(s, b"\n") == b"hello from good\n"
        s.sendall(b"x%d\n" % i)
        assert recv_until(s, b"\n") == b"x%d\n" % i
        s.close()
    lines = wait_stream_log(p, 6, where=lambda l: l["received"] != "0")
    assert all(l["status"] == "200" for l in lines)
    retried = [l for l in lines if l["addrs"] == "%s, %s" % (refusing, good.addr)]
    assert retried, lines
    assert all(l["ctimes"].startswith("-, ") for l in retried)
    assert "connect() failed: Connection refused" in p.read(p.error_log)


def test_stream_connect_retries_bounded(start_tcp, start_stream):
    """retries 0: a refused connect is not tried elsewhere; the client is closed (502)."""
    good = start_tcp("good", mode="greet")
    refusing = "127.0.0.1:%d" % lib.free_port()
    port = lib.free_port()
    p = start_stream(upstream("app", [refusing, good.addr],
                              extra="    outlier_detection off;\n    retries 0;\n") +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port])
    results = []
    for i in range(4):
        s = connect(port)
        results.append(recv_until(s, b"\n", timeout=3))
        s.close()
    # round-robin: half the connections drew the refusing server and were closed
    assert results.count(b"hello from good\n") == 2 and results.count(b"") == 2, results
    lines = wait_stream_log(p, 2, where=lambda l: l["status"] == "502")
    assert all(l["outcome"] == "connect_failed" and l["addrs"] == refusing for l in lines)


def test_stream_idle_timeout_one_clock(start_tcp, start_stream):
    """proxy_timeout: no byte either way for that long closes; bytes in one direction only
    (a client talking to a server that never answers) keep the connection alive."""
    p, port, _ = echo_stream(start_tcp, start_stream, mode="sink",
                             server_extra="proxy_timeout 1s;")
    quiet = connect(port)
    t0 = time.monotonic()
    assert closed_within(quiet, 5)
    assert time.monotonic() - t0 > 0.8
    talker = connect(port)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:  # over twice the timeout, one way only
        talker.sendall(b"tick\n")
        time.sleep(0.25)
    assert not closed_within(talker, 0.1)
    assert closed_within(talker, 5)  # silent now: closed
    lines = wait_stream_log(p, 2, where=lambda l: l["outcome"] == "idle_timeout")
    assert int(lines[-1]["received"]) >= 40 and lines[-1]["sent"] == "0"
    assert float(lines[-1]["time"]) > 2.5


def test_stream_half_close_passed_through(start_tcp, start_stream):
    """The client's FIN reaches the server while the way back stays open: the server answers
    after the client has shut its side."""
    p, port, _ = echo_stream(start_tcp, start_stream, mode="halfclose")
    s = connect(port)
    payload = os.urandom(50000)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    assert recv_until(s, b"\n", timeout=10) == b"got 50000 bytes\n"
    assert closed_within(s, 5)
    s.close()
    # and the other way: the server's FIN, then the client still sends
    p2_lines = wait_stream_log(p, 1, where=lambda l: l["received"] == "50000")
    assert p2_lines[0]["outcome"] == "closed" and p2_lines[0]["sent"] == "16"


def test_stream_half_close_from_server(start_tcp, start_stream):
    """An echo server that gets the client's FIN echoes what is left and sends its own FIN; the
    client reads all of it, then EOF."""
    p, port, _ = echo_stream(start_tcp, start_stream, mode="echo")
    s = connect(port)
    data = os.urandom(200000)
    threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)),
                     daemon=True).start()
    got = recv_exact(s, len(data) + 1, timeout=15)
    assert got == data  # everything, then EOF (not a byte more)
    s.close()


@pytest.mark.hard_timeout(120)
def test_stream_1000_concurrent_connections(start_tcp, start_stream):
    p, port, _ = echo_stream(start_tcp, start_stream, workers=2, access_log="off")
    socks = []
    try:
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(b"connection %04d says hello\n" % i)
        for i, s in enumerate(socks):
            assert recv_until(s, b"\n", timeout=10) == b"connection %04d says hello\n" % i
        # all of them at once, on the way back too
        for i, s in enumerate(socks):
            s.sendall(b"again %04d\n" % i)
        for i, s in enumerate(socks):
            assert recv_until(s, b"\n", timeout=10) == b"again %04d\n" % i
    finally:
        for s in socks:
            s.close()


def test_stream_max_connections_counts_stream_connections(start_tcp, start_stream):
    """max_connections 3: a fourth connection waits in the backlog until one of the three
    relaying connections ends."""
    p, port, _ = echo_stream(start_tcp, start_stream, main_extra="max_connections 3;")
    held = [connect(port) for _ in range(3)]
    for i, s in enumerate(held):
        s.sendall(b"held %d\n" % i)
        assert recv_until(s, b"\n") == b"held %d\n" % i
    waiting = connect(port)  # the kernel accepts it into the backlog
    waiting.sendall(b"waiting\n")
    assert recv_until(waiting, b"\n", timeout=1.0) == b""
    held[0].close()
    assert recv_until(waiting, b"\n", timeout=5.0) == b"waiting\n"
    for s in held[1:] + [waiting]:
        s.close()
    assert "max_connections (3) reached" in p.read(p.error_log)


def test_stream_max_conns_and_backup(start_tcp, start_stream):
    """The upstream's max_conns counts a relayed connection for its whole life; when the only
    primary is full, the backup takes the next one; when it is free again, the primary."""
    primary = start_tcp("primary", mode="greet")
    backup = start_tcp("backup", mode="greet")
    port = lib.free_port()
    p = start_stream(upstream("app", ["%s max_conns=1" % primary.addr,
                                      "%s backup" % backup.addr]) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port])
    wait_stream_log(p, 1)  # the harness's probe connection is over: it counted too
    a = connect(port)
    assert recv_until(a, b"\n") == b"hello from primary\n"
    b = connect(port)
    assert recv_until(b, b"\n") == b"hello from backup\n"
    a.close()
    time.sleep(0.3)
    c = connect(port)
    assert recv_until(c, b"\n") == b"hello from primary\n"
    b.close()
    c.close()


def test_stream_no_usable_server(start_tcp, start_stream):
    """Every server down: the connection is closed at once and logged with 503."""
    port = lib.free_port()
    p = start_stream(upstream("app", ["127.0.0.1:%d down" % lib.free_port()]) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port])
    s = connect(port)
    assert closed_within(s, 5)
    s.close()
    line = wait_stream_log(p, 1, where=lambda l: l["status"] == "503")[0]
    assert line["outcome"] == "no_server"


def test_stream_json_log(start_tcp, start_stream):
    p, port, (b,) = echo_stream(start_tcp, start_stream, access_log="json")
    s = connect(port)
    s.sendall(b"json please\n")
    assert recv_until(s, b"\n") == b"json please\n"
    s.close()

    def line():
        for l in p.read(p.access_log).splitlines():
            d = json.loads(l)
            if d.get("bytes_received"):
                return d
        return None
    d = lib.wait_until(line, timeout=6, what="a json stream line")
    assert d["protocol"] == "TCP" and d["status"] == 200 and d["upstream"] == "app"
    assert d["bytes_received"] == 12 and d["bytes_sent"] == 12
    assert d["upstream_bytes_sent"] == 12 and d["upstream_bytes_received"] == 12
    assert d["upstream_addr"] == b.addr and d["outcome"] == "closed" and d["sni"] == ""
    assert d["listen"] == "127.0.0.1:%d" % port


@pytest.mark.ipv6
def test_stream_ipv6_listen_and_server(start_tcp, start_stream):
    """A stream server on [::1] to a server on [::1]; the log shows both IPv6 addresses."""
    b = start_tcp("v6", mode="echo", host="::1")
    port = lib.free_port("::1")
    p = start_stream(upstream("app", [b.addr]) +
                     stream("listen [::1]:%d;\nproxy_pass app;" % port), [port], host="::1")
    s = connect(port, host="::1")
    s.sendall(b"over six\n")
    assert recv_until(s, b"\n") == b"over six\n"
    s.close()
    line = wait_stream_log(p, 1, where=lambda l: l["received"] != "0")[0]
    assert line["client"] == "::1" and line["listen"] == "[::1]:%d" % port
    assert line["addrs"] == b.addr


def test_stream_hash_client_ip(start_tcp, start_stream):
    """balance hash client_ip: every connection of one client goes to the same server (the key
    a TCP connection has), whatever round-robin would have done."""
    backends = [start_tcp("h%d" % i, mode="greet") for i in range(3)]
    port = lib.free_port()
    p = start_stream(upstream("app", [b.addr for b in backends],
                              extra="    balance hash client_ip;\n") +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port])
    seen = set()
    for _ in range(8):
        s = connect(port)
        seen.add(recv_until(s, b"\n"))
        s.close()
    assert len(seen) == 1, seen


def test_stream_hash_client_ip_spreads_clients(start_tcp, start_stream):
    """balance hash client_ip from 16 client addresses (127.0.0.2..17): each address keeps its
    server over three rounds, and the addresses do not all land on one server (the key is the
    address, not a constant); with `consistent`, stopping one server moves only its clients."""
    backends = [start_tcp("h%d" % i, mode="greet") for i in range(3)]
    port = lib.free_port()
    p = start_stream(upstream("app", [b.addr for b in backends],
                              extra="    balance hash client_ip consistent;\n") +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port])
    sources = ["127.0.0.%d" % i for i in range(2, 18)]

    def round_():
        got = {}
        for src in sources:
            s = connect(port, source=src)
            got[src] = recv_until(s, b"\n").strip()
            s.close()
        return got

    first = round_()
    for _ in range(2):
        assert round_() == first
    assert len(set(first.values())) >= 2, first
    assert all(v.startswith(b"hello from h") for v in first.values()), first
    # one server goes away: its clients move (connect error, retried elsewhere), the others stay
    gone = first[sources[0]]
    backends[int(gone[len(b"hello from h"):])].stop()
    after = round_()
    for src in sources:
        if first[src] == gone:
            assert after[src] != gone and after[src].startswith(b"hello from h"), after
        else:
            assert after[src] == first[src], (src, first[src], after[src])


def test_stream_hash_on_an_http_key_spreads(start_tcp, start_stream):
    """balance hash uri in an upstream a stream server uses: a TCP connection has no URI, so
    its connections spread over the servers by weight (as documented) instead of all going to
    the server of the empty key."""
    backends = [start_tcp("u%d" % i, mode="greet") for i in range(3)]
    port = lib.free_port()
    p = start_stream(upstream("app", [b.addr for b in backends],
                              extra="    balance hash uri;\n") +
                     stream("listen 127.0.0.1:%d;\nproxy_pass app;" % port), [port])
    seen = []
    for _ in range(12):
        s = connect(port)
        seen.append(recv_until(s, b"\n").strip())
        s.close()
    assert all(v.startswith(b"hello from u") for v in seen), seen
    assert len(set(seen)) == 3, seen
