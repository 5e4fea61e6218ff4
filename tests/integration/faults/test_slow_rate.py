"""Slow-rate limits (client_header_min_rate, client_body_min_rate, send_min_rate): clients
that trickle their head or body, or read the response at a trickle, are cut at about the
configured rate, each with one log line naming the limit, their backend connections are
released, and a normal client beside them is served correctly throughout.

The slow clients come from tests/tools/slow_clients.py (one thread, 500 sockets). The limits
here: 1k/3s for heads and bodies (a client sending 1 byte per second has 3 s of credit, each
byte buys 1 ms), 16k/3s for reading (a reader taking 512 bytes per second). Timeouts are set
far above, so that only the rates can cut."""

import collections
import re
import socket
import struct
import time

import pytest

import portico_testlib as lib
import slow_clients
from faultlib import Steady, fd_count

PERIOD = 3.0
LIMITS = """    client_header_min_rate 1k 3s;
    client_body_min_rate 1k 3s;
    send_min_rate 16k 3s;
    client_header_timeout 120s;
    client_body_timeout 120s;
    send_timeout 120s;
"""
METRICS = "    location /metrics { metrics; }\n"

# how each kind must be cut, and the log line that names its limit
EXPECT = {
    "h1_head": ("408", None, r"client \S+ too slow sending the request head: under "
                             r"client_header_min_rate 1k 3s, answering 408"),
    "h1_body": ("408", None, r"client \S+ too slow sending the request body: under "
                             r"client_body_min_rate 1k 3s, answering 408"),
    "h1_read": ("reset", None, r"client \S+ too slow reading the response: under "
                               r"send_min_rate 16k 3s, resetting"),
    "h2_head": ("rst_stream", "CANCEL", r"h2 client \S+ stream 1: too slow sending the request "
                                        r"head: under client_header_min_rate 1k 3s, resetting"),
    "h2_body": ("408", None, r"h2 client \S+ stream 1: too slow sending the request body: "
                             r"under client_body_min_rate 1k 3s, answering 408"),
    "h2_read": ("rst_stream", "CANCEL", r"h2 client \S+ stream 1: too slow reading the "
                                        r"response \(its window shut\): under send_min_rate 16k "
                                        r"3s, resetting"),
    "h2_conn_read": ("reset", None, r"h2 client \S+ too slow reading: under send_min_rate 16k "
                                    r"3s, resetting"),
}


def check_cuts(results, log):
    by = collections.defaultdict(list)
    for r in results:
        by[r.kind].append(r)
    figures = {}
    for kind, rs in by.items():
        how, detail, line = EXPECT[kind]
        uncut = [r for r in rs if r.how is None]
        assert not uncut, "%d %s clients never cut: %r" % (len(uncut), kind, uncut[:3])
        wrong = [r for r in rs if r.how != how or (detail and r.detail != detail)]
        assert not wrong, "%s clients cut the wrong way (want %s %s): %r" % (
            kind, how, detail or "", wrong[:5])
        el = sorted(r.elapsed for r in rs)
        # never before the credit (PERIOD) is spent; bounded after it, with room for a busy
        # machine (a reader first fills the socket buffers, with 500 others doing the same)
        limit = PERIOD + (40 if kind in ("h1_read", "h2_conn_read", "h2_read") else 15)
        assert el[0] >= PERIOD - 0.25, "%s cut too early: %.2f s" % (kind, el[0])
        assert el[-1] <= limit, "%s cut too late: %.2f s (bound %.0f s)" % (kind, el[-1], limit)
        # one info line per cut, naming the limit
        n = len(re.findall(r"\[info\] w\d+: " + line, log))
        assert n == len(rs), "%d log lines for %d %s cuts" % (n, len(rs), kind)
        figures[kind] = (len(rs), el[0], el[len(el) // 2], el[-1])
    print("cut times (count, min, median, max):")
    for kind, f in sorted(figures.items()):
        print("  %-13s %4d  %.2f  %.2f  %.2f s" % ((kind,) + f))
    return figures


def cut_counts(f):
    """portico_slow_clients_closed_total by reason, read from the metrics location."""
    r = lib.curl("http://127.0.0.1:%d/metrics" % f.plain_port)
    assert r.status == 200, r
    counts = {}
    for m in re.finditer(r'^portico_slow_clients_closed_total\{reason="(\w+)"\} (\d+)$',
                         r.body.decode(), re.M):
        counts[m.group(1)] = int(m.group(2))
    return counts


def wait_released(f, pid, fds_before):
    assert lib.wait_until(lambda: f.backend_open() == 0, 20), \
        "backend connections still held: %r" % f.backend.stats()
    assert lib.wait_until(lambda: fd_count(pid) <= fds_before, 20), \
        "portico holds %d descriptors, %d before" % (fd_count(pid), fds_before)


@pytest.mark.hard_timeout(180)
def test_h1_500_slow_clients_cut_at_their_rate_normal_client_served(front):
    f = front(extra=LIMITS + METRICS)
    pid = f.portico.pid
    fds_before = fd_count(pid)
    steady = Steady(f.plain_port, "h1")
    steady.start()
    assert lib.wait_until(lambda: steady.ok >= 2 or steady.failures, 20), "steady client idle"
    ok_before = steady.ok
    results = slow_clients.run([("h1_head", 170), ("h1_body", 170), ("h1_read", 160)],
                               f.plain_port, interval=1.0, read_bytes=512, duration=90)
    ok_during = steady.ok - ok_before
    assert lib.wait_until(lambda: steady.ok >= ok_before + ok_during + 2 or steady.failures, 20)
    steady.stop()
    assert not steady.failures, steady.failures[:5]
    assert ok_during >= 3, "the normal client got %d answers while the slow ones ran" % ok_during
    check_cuts(results, f.log())
    assert cut_counts(f) == {"header": 170, "body": 170, "send": 160}
    wait_released(f, pid, fds_before)


@pytest.mark.hard_timeout(180)
def test_h2_500_slow_clients_cut_at_their_rate_normal_client_served(front):
    f = front(extra=LIMITS + METRICS)
    pid = f.portico.pid
    fds_before = fd_count(pid)
    steady = Steady(f.tls_port, "h2", tls=True, cafile=f.certs.ca)
    steady.start()
    assert lib.wait_until(lambda: steady.ok >= 2 or steady.failures, 20), "steady client idle"
    ok_before = steady.ok
    results = slow_clients.run([("h2_head", 125), ("h2_body", 125), ("h2_read", 125),
                                ("h2_conn_read", 125)],
                               f.plain_port, interval=1.0, read_bytes=512, duration=90)
    ok_during = steady.ok - ok_before
    assert lib.wait_until(lambda: steady.ok >= ok_before + ok_during + 2 or steady.failures, 20)
    steady.stop()
    assert not steady.failures, steady.failures[:5]
    assert ok_during >= 3, "the normal client got %d answers while the slow ones ran" % ok_during
    check_cuts(results, f.log())
    assert cut_counts(f) == {"header": 125, "body": 125, "send": 250}
    wait_released(f, pid, fds_before)


# ---- HTTP/2: one stream cut, the connection's others untouched ----------------------------

@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_slow_body_stream_answered_408_others_continue(front, tls):
    f = front(extra=LIMITS + METRICS)
    with f.h2(tls=tls) as c:
        slow = c.request("POST", "/upload", body=b"x", end_stream=False)
        big = c.request("GET", "/bytes/3000000")
        assert lib.wait_until(lambda: f.backend_open() >= 1, 10)
        t0 = time.monotonic()
        echoed = []
        # one DATA byte a second on the slow stream; meanwhile other streams come and go
        while not c.streams[slow].finished and time.monotonic() - t0 < 20:
            c.conn.send_data(slow, b"y")
            c.flush()
            sid = c.request("POST", "/echo", body=b"z" * 5000)
            r = c.response(sid, timeout=10)
            echoed.append((r.status, bytes(r.data) == b"z" * 5000))
            c.pump(0.8)
        waited = time.monotonic() - t0
        st = c.streams[slow]
        assert st.status == 408 and bytes(st.data) == b"408 Request Timeout\n", st
        # then RST_STREAM(NO_ERROR): the rest of its body is not wanted (RFC 9113 8.1)
        assert c.wait(lambda: st.reset is not None, 5), st
        assert int(st.reset) == 0, st
        assert PERIOD - 0.25 <= waited <= PERIOD + 10, waited
        assert echoed and all(e == (200, True) for e in echoed), echoed
        r = c.response(big, timeout=30)
        assert r.status == 200 and len(r.data) == 3000000, r
        assert c.get("/name").status == 200
    log = f.log()
    assert len(re.findall(r"stream 1: too slow sending the request body: under "
                          r"client_body_min_rate 1k 3s, answering 408", log)) == 1, log
    assert cut_counts(f) == {"header": 0, "body": 1, "send": 0}
    # the upload's backend connection was closed with the cut
    assert lib.wait_until(lambda: f.backend_open() == 0, 10), f.backend.stats()


@pytest.mark.hard_timeout(60)
def test_h2_stream_with_shut_window_reset_others_continue(front):
    """A client that opens one stream's window a trickle at a time (512 bytes a second against
    send_min_rate 16k) has that stream reset; a stream it reads normally on the same
    connection completes, and the connection goes on."""
    import hpack
    from h2_attacks import (DATA, END_HEADERS, END_STREAM, HEADERS, RST_STREAM, RawH2, frame,
                            parse_frames, request_block, settings, window_update)

    f = front(extra=LIMITS + METRICS)
    raw = RawH2("127.0.0.1", f.plain_port)
    dec = hpack.Decoder()
    got, ended, rst, status = {1: 0, 3: 0, 5: 0}, set(), {}, {}
    buf = bytearray()

    def pump(timeout=0.1):
        raw.sock.settimeout(timeout)
        try:
            d = raw.sock.recv(65536)
        except OSError:
            return
        buf.extend(d)
        for t, fl, sid, payload in parse_frames(buf):
            if t == HEADERS:
                status[sid] = int(dict(dec.decode(payload)).get(":status", 0))
            elif t == DATA and sid in got:
                got[sid] += len(payload)
                if sid != 1 and payload:  # the other streams are read as fast as they come
                    raw.send(window_update(sid, len(payload)))
            elif t == RST_STREAM:
                rst[sid] = struct.unpack(">I", payload)[0]
            if t in (HEADERS, DATA) and fl & END_STREAM:
                ended.add(sid)

    try:
        # stream windows of 1024 bytes; the connection's window wide open
        raw.send(settings([(4, 1024)]) + window_update(0, 1 << 30))
        raw.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                       request_block("/bytes/10000000", "slow")))
        raw.send(frame(HEADERS, END_HEADERS | END_STREAM, 3,
                       request_block("/bytes/400000", "slow")))
        t0 = last_tick = time.monotonic()
        while 1 not in rst and time.monotonic() - t0 < 30:
            pump()
            if time.monotonic() - last_tick >= 1.0:  # stream 1: 512 bytes a second
                raw.send(window_update(1, 512))
                last_tick = time.monotonic()
        waited = time.monotonic() - t0
        assert rst.get(1) == 8, (rst, got)  # CANCEL
        assert PERIOD - 0.25 <= waited <= PERIOD + 15, waited
        deadline = time.monotonic() + 20
        while 3 not in ended and time.monotonic() < deadline:
            pump()
        assert status.get(3) == 200 and got[3] == 400000 and 3 in ended and 3 not in rst, \
            (status, got, ended, rst)
        raw.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, request_block("/name", "slow")))
        deadline = time.monotonic() + 10
        while 5 not in ended and time.monotonic() < deadline:
            pump()
        assert status.get(5) == 200 and 5 not in rst, (status, rst)
    finally:
        raw.close()
    assert re.search(r"stream 1: too slow reading the response \(its window shut\): under "
                     r"send_min_rate 16k 3s, resetting", f.log())
    assert cut_counts(f) == {"header": 0, "body": 0, "send": 1}


# ---- time the client is not to blame for -------------------------------------------------

@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("proto", ["h1", "h2c"])
def test_upload_held_up_by_the_backend_is_not_cut(front, proto):
    """A client sending a body as fast as it may, to a backend that takes 1 MiB every 2 s
    (512 KiB/s, under this location's client_body_min_rate 1m 3s): backpressure holds the client
    up (HTTP/1.1: portico stops reading; HTTP/2: the stream's window stays shut), that time is not
    the client's, and the body rate never cuts it. Were the clock running meanwhile, the client
    would be cut after about 6 s. (The stream window is 1 MiB, so that the h2 client's own
    reaction time to each WINDOW_UPDATE stays well within what each window buys it.)"""
    f = front(extra=LIMITS + "    client_max_body_size 0;\n    http2_initial_window_size 1m;\n"
              "    location /slow-read/ { proxy_pass app; client_body_min_rate 1m 3s; }\n")
    body = b"x" * (256 << 20)  # never all sent: more than 12 s of the backend's pace
    window = 4 * PERIOD
    if proto == "h1":
        c = lib.RawConn("127.0.0.1", f.plain_port, timeout=0.5)
        c.sock.setblocking(False)
        head = b"POST /slow-read/2000/1024 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (
            len(body))
        sent = c.sock.send(head) - len(head)

        def not_cut():
            nonlocal sent
            try:
                while True:  # as fast as it may: until the socket is full
                    sent += c.sock.send(body[sent:sent + 262144])
            except BlockingIOError:
                pass
            except OSError:
                return False
            try:
                return c.sock.recv(4096) == b"x"  # neither an answer nor a close
            except BlockingIOError:
                return True
            except OSError:
                return False
        held = lib.stays(not_cut, window, step=0.05)
        c.close()
        assert held, "cut while the backend held the upload up (%d bytes sent)" % sent
    else:
        with f.h2(tls=False) as c:
            sid = c.request("POST", "/slow-read/2000/1024", end_stream=False)
            sent = 0

            def not_cut():
                nonlocal sent
                c.pump(0.02)
                # whatever the window allows, at once: only flow control holds it up
                sent += c.send_available(sid, body[sent:sent + (1 << 20)])
                return not c.streams[sid].finished
            held = lib.stays(not_cut, window, step=0.01)
            assert held, c.streams[sid]
    # the backend did take some of it, at its own pace, and the client was held up
    assert 1 << 20 <= sent < len(body), sent
    assert "too slow" not in f.log()


# ---- the directives ----------------------------------------------------------------------

@pytest.mark.hard_timeout(40)
def test_min_rate_off_in_a_location(front):
    """client_body_min_rate is per location: `off` there lets a slow upload go on, while the
    same upload elsewhere on the server is cut."""
    f = front(extra=LIMITS + METRICS +
              "    location /free/ { proxy_pass app; client_body_min_rate off; }\n")
    conns = {}
    for path in ("/upload", "/free/upload"):
        c = lib.RawConn("127.0.0.1", f.plain_port, timeout=0.2)
        c.send("POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" % path)
        conns[path] = c

    def trickle():
        for c in conns.values():
            try:
                c.send(b"x")
            except OSError:
                pass

    def answered(c):
        try:
            c._fill()
        except (socket.timeout, lib.ConnClosed):
            pass
        return b"\r\n\r\n" in c.buf or c.eof

    t0 = time.monotonic()
    while not answered(conns["/upload"]) and time.monotonic() - t0 < 15:
        trickle()
        time.sleep(0.8)
    assert bytes(conns["/upload"].buf).startswith(b"HTTP/1.1 408 "), conns["/upload"].buf
    # the one under `off` outlives it by twice the period, still sending a byte a second
    end = time.monotonic() + 2 * PERIOD
    while time.monotonic() < end:
        assert not answered(conns["/free/upload"]), conns["/free/upload"].buf
        trickle()
        time.sleep(0.8)
    for c in conns.values():
        c.close()
    assert len(re.findall(r"too slow sending the request body", f.log())) == 1
    assert cut_counts(f) == {"header": 0, "body": 1, "send": 0}


def check_conf(tmp_path, line):
    path = tmp_path / "t.conf"
    path.write_text("# c\nserver {\n    listen 127.0.0.1:1;\n    %s\n"
                    "    location / { return 200; }\n}\n" % line)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    return str(path), rc, out


@pytest.mark.parametrize("line", [
    "client_header_min_rate 500 10s;", "client_body_min_rate off;", "send_min_rate 0;",
    "send_min_rate 1m 1s;", "client_body_min_rate 1k 1h;",
])
def test_min_rate_valid_forms(tmp_path, line):
    path, rc, out = check_conf(tmp_path, line)
    assert rc == 0, out


@pytest.mark.parametrize("line,col,words", [
    ("client_body_min_rate fast;", 26, ["invalid rate", "client_body_min_rate"]),
    ("send_min_rate -1;", 19, ["invalid rate"]),
    ("send_min_rate 2g;", 19, ["invalid rate", "at most 1g"]),
    ("client_header_min_rate 1k 0s;", 31, ["invalid period"]),
    ("client_header_min_rate 1k 2h;", 31, ["invalid period"]),
    ("client_body_min_rate 1k soon;", 29, ["invalid period"]),
    ("send_min_rate 1k 1s 1s;", 5, ["send_min_rate"]),
], ids=["word", "negative", "over_1g", "zero_period", "period_over_1h", "period_word",
        "three_args"])
def test_min_rate_bad_values_are_errors_at_their_place(tmp_path, line, col, words):
    path, rc, out = check_conf(tmp_path, line)
    assert rc == 1, out
    m = re.search(r"^(.*?):(\d+):(\d+): (.+)$", out, re.M)
    assert m and m.group(1).endswith("t.conf") and int(m.group(2)) == 4, out
    assert int(m.group(3)) == col, out
    for w in words:
        assert w in m.group(4), out


def test_min_rate_duplicate_is_an_error(tmp_path):
    path, rc, out = check_conf(tmp_path, "send_min_rate 1k; send_min_rate 2k;")
    assert rc == 1 and "duplicate" in out, out
