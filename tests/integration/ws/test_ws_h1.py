"""WebSocket over HTTP/1.1 (RFC 6455) through portico: real clients (python3-websockets 10.4
and node-ws 8.11) to tests/tools/ws_backend.py, over ws:// and wss:// (portico's TLS
listener), plus raw sockets and raw backends for what real libraries will not do.

What portico guarantees here (src/http/websocket.c, src/net/relay.c):
  - messages of any size and kind, fragmented or not, and control frames pass intact;
  - close codes pass end to end; a FIN is passed on as a FIN (half-close);
  - the handshake's negotiation (subprotocol, extensions) is the backend's;
  - only a backend 101 with the right Sec-WebSocket-Accept makes a tunnel: anything else is an
    ordinary HTTP answer and the connection stays HTTP (no smuggling), a wrong accept is 502;
  - its own checks: 426 for a version other than 13, 400 for a bad key, a POST, HTTP/1.0;
    `websocket off` forwards the request without its Upgrade;
  - frames are tracked: an oversize message gets 1009 (the other side 1001), an unmasked client
    frame 1002; a peer that never reads costs at most PT_RELAY_QUEUE_CAP (128 KiB) per direction;
  - one activity clock for websocket_idle_timeout; a graceful stop says 1001 to both sides;
  - least_conn counts open tunnels; one access log line (101) per tunnel when it closes.
"""

import asyncio
import re
import select
import signal
import socket
import struct
import time

import pytest
import websockets

import portico_testlib as lib
import ws_testlib as wsl

SCHEMES = ["ws", "wss"]
SIZES = [0, 125, 126, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024]


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- echo ---

@pytest.mark.parametrize("scheme", SCHEMES)
def test_h1_h1_ws_echo_sizes(ws_front, scheme):
    """Text and binary messages of 0 B to 16 MiB (websocket_max_message's default, exactly)
    come back intact: the 7-bit, 16-bit and 64-bit length forms, through the frame tracker."""
    f = ws_front()

    async def go():
        seen = []
        async with f.connect("/echo", scheme, compression=None) as ws:
            for n in SIZES:
                b = wsl.pattern(n, seed=n)
                t = wsl.text_pattern(n, seed=n + 1)
                await ws.send(b)
                got_b = await ws.recv()
                await ws.send(t)
                got_t = await ws.recv()
                seen.append((n, isinstance(got_b, bytes), wsl.sha(got_b) == wsl.sha(b),
                             isinstance(got_t, str), wsl.sha(got_t) == wsl.sha(t)))
        return seen

    assert run(go()) == [(n, True, True, True, True) for n in SIZES]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_h1_h1_ws_echo_sizes_node(ws_front, scheme):
    """The same sizes from node-ws, a second client implementation; it closes with 1000."""
    f = ws_front()
    spec = {"url": f.url("/echo", scheme),
            "messages": [{"size": n, "kind": k} for n in SIZES for k in ("binary", "text")]}
    if scheme == "wss":
        spec["ca"] = f.certs.ca  # the certificate names 127.0.0.1 too
    rep = wsl.node_client(spec)
    assert rep["error"] is None, rep
    assert [(r["size"], r["kind"], r["ok"]) for r in rep["results"]] == \
        [(n, k, True) for n in SIZES for k in ("binary", "text")]
    assert rep["close_code"] == 1000


def test_h1_h1_ws_fragmented(ws_front):
    """A message sent as fragments (websockets sends an iterable as continuation frames) is
    echoed whole, text and binary."""
    f = ws_front()

    async def go():
        async with f.connect("/echo", compression=None) as ws:
            parts = [wsl.pattern(n, seed=n) for n in (1, 125, 126, 70000, 0, 3)]
            await ws.send(parts)
            got_b = await ws.recv()
            tparts = ["frag-%d-" % i * 50 for i in range(20)]
            await ws.send(tparts)
            got_t = await ws.recv()
            return got_b == b"".join(parts), got_t == "".join(tparts)

    assert run(go()) == (True, True)


def test_h1_h1_ws_fragments_with_ping_between_raw(ws_front):
    """Raw frames: a text message in two fragments with a ping between them (RFC 6455
    section 5.4 allows control frames inside a fragmented message). The backend's pong comes
    back unmasked with the ping's payload, then the whole message."""
    f = ws_front()
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/echo")
        assert r.status == 101
        c.send(wsl.frame(wsl.OP_TEXT, "frag1-", fin=False) + wsl.frame(wsl.OP_PING, "pp") +
               wsl.frame(wsl.OP_CONT, "frag2", fin=True))
        rd = wsl.FrameReader(c)
        assert rd.read() == (1, wsl.OP_PONG, b"pp", False)
        assert rd.read() == (1, wsl.OP_TEXT, b"frag1-frag2", False)
        c.send(wsl.frame(wsl.OP_CLOSE, wsl.close_payload(1000)))
        fin, op, data, masked = rd.read()
        assert (op, wsl.close_code_of(data), masked) == (wsl.OP_CLOSE, 1000, False)
        assert c.is_closed(5)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_h1_h1_ws_ping_pong(ws_front, scheme):
    """A client ping is answered by the backend's pong with the ping's payload, through
    portico (which answers no ping itself when it proxies)."""
    f = ws_front()

    async def go():
        async with f.connect("/echo", scheme) as ws:
            waiter = await ws.ping(b"portico-ping")
            await asyncio.wait_for(waiter, 5)
            return True

    assert run(go()) is True


def test_h1_h1_ws_ping_pong_node(ws_front):
    f = ws_front()
    rep = wsl.node_client({"url": f.url("/echo"), "ping": True})
    assert (rep["error"], rep["pong"], rep["close_code"]) == (None, True, 1000)


# --------------------------------------------------------------- close ---

@pytest.mark.parametrize("scheme", SCHEMES)
def test_h1_h1_ws_client_close_1000(ws_front, scheme):
    """The client closes with 1000: the backend sees 1000, the client gets 1000 back."""
    f = ws_front()

    async def go():
        ws = await f.connect("/echo", scheme)
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await ws.close(1000, "client bye")
        return ws.close_code, ws.close_reason

    assert run(go()) == (1000, "client bye")
    lib.wait_until(lambda: f.backend.stats()["closes"] == [1000], 5,
                   what="the backend saw close 1000")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_h1_h1_ws_backend_close_code(ws_front, scheme):
    """The backend closes with 4001 (/close?code=4001): the client sees 4001 and "bye"."""
    f = ws_front()

    async def go():
        ws = await f.connect("/close?code=4001", scheme)
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed()
        return ws.close_code, ws.close_reason

    assert run(go()) == (4001, "bye")


def test_h1_h1_ws_half_close(ws_front, raw_ws_backend):
    """TCP half-close is passed on: the client's FIN reaches the backend after the client's
    frame, the backend still sends after it, and the backend's FIN reaches the client."""

    def serve(c, b):
        _, h = c.read_request()
        c.answer_101(h["sec-websocket-key"])
        rd = wsl.FrameReader(c)
        got = []
        try:
            while True:
                got.append(rd.read(10))
        except lib.ConnClosed:
            b.record(("eof", [(op, data) for _, op, data, _ in got]))
        c.send(wsl.frame(wsl.OP_TEXT, "after-fin", mask=False))
        c.sock.shutdown(socket.SHUT_WR)
        b.record(("sent", None))
        c.read_all(5)

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr])
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        c.send(wsl.frame(wsl.OP_TEXT, "hello"))
        c.sock.shutdown(socket.SHUT_WR)
        lib.wait_until(lambda: rb.log, 5, what="the backend saw the client's FIN")
        assert rb.log[0] == ("eof", [(wsl.OP_TEXT, b"hello")])
        assert wsl.FrameReader(c).read() == (1, wsl.OP_TEXT, b"after-fin", False)
        assert c.is_closed(5)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_h1_h1_ws_tls_backend(ws_front, scheme):
    """An upstream with `tls on` (the tunnel's backend side is a TLS client session): 16 MiB
    both ways, a ping, the backend's close code, and the client's 1000 seen by the backend."""
    f = ws_front(backend_tls=True)

    async def go():
        async with f.connect("/echo", scheme, compression=None) as ws:
            big = wsl.pattern(16 * 1024 * 1024, seed=7)
            await ws.send(big)
            ok = await ws.recv() == big
            await asyncio.wait_for(await ws.ping(b"tls"), 5)
        ws = await f.connect("/close?code=4002", scheme)
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed()
        return ok, ws.close_code

    assert run(go()) == (True, 4002)
    lib.wait_until(lambda: sorted(f.backend.stats()["closes"]) == [1000, 4002], 5,
                   what="the backend saw 1000 and its own 4002")


def test_h1_h1_ws_tls_backend_sigterm(ws_front):
    """SIGTERM with a tunnel to a TLS backend: both sides get 1001, portico exits 0."""
    f = ws_front(backend_tls=True, shutdown_timeout="3s")

    async def go():
        ws = await f.connect("/echo", "wss")
        await ws.send("x")
        assert await ws.recv() == "x"
        f.portico.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed()
        return ws.close_code

    assert run(go()) == 1001
    assert f.portico.wait_exit(4) == 0
    lib.wait_until(lambda: f.backend.stats()["closes"] == [1001], 5,
                   what="the TLS backend got 1001")


# ---------------------------------------------------------- negotiation ---

@pytest.mark.parametrize("scheme", SCHEMES)
def test_h1_h1_ws_subprotocol_and_deflate(ws_front, scheme):
    """Sec-WebSocket-Protocol and permessage-deflate are negotiated with the backend end to
    end, and compressed messages (RSV1) pass the frame tracker."""
    f = ws_front()

    async def go():
        async with f.connect("/proto", scheme, subprotocols=["chat.v1", "chat.v2"],
                             compression="deflate") as ws:
            msg = "compressible " * 100000
            await ws.send(msg)
            echo = await ws.recv()
            return ws.subprotocol, [e.name for e in ws.extensions], echo == msg

    assert run(go()) == ("chat.v2", ["permessage-deflate"], True)


def test_h1_h1_ws_subprotocol_and_deflate_node(ws_front):
    f = ws_front()
    rep = wsl.node_client({"url": f.url("/proto"), "protocols": ["chat.v2"], "deflate": True,
                           "messages": [{"size": 200000, "kind": "text"}]})
    assert rep["error"] is None, rep
    assert (rep["protocol"], rep["extensions"].split(";")[0], rep["results"][0]["ok"]) == \
        ("chat.v2", "permessage-deflate", True)


# ----------------------------------------------------- no tunnel without 101 ---

def test_h1_h1_ws_backend_200_stays_http(ws_front):
    """A backend answering the upgrade with a plain 200 (/http-200): the client gets that 200,
    and a request pipelined after the upgrade request on the same connection is parsed by
    portico as HTTP (answered by portico's own `location /local`), not passed to the backend
    as tunnel bytes."""
    f = ws_front()
    with f.raw() as c:
        req, _ = wsl.upgrade_request("/http-200")
        c.send(req + b"GET /local HTTP/1.1\r\nHost: test.local\r\n\r\n")
        r1 = c.read_response(allow_interim=True)
        r2 = c.read_response()
    assert (r1.status, r1.body, r1.header("upgrade")) == (200, b"no websocket\n", None)
    assert (r2.status, r2.body) == (200, b"portico-local")
    assert f.backend.stats()["connections"] == 0


def test_h1_h1_ws_upgrade_to_local_location_stays_http(ws_front):
    """An upgrade request to a location portico answers itself (`return`): Upgrade is dropped,
    the answer is a plain 200, and a pipelined request after it is answered as HTTP too."""
    f = ws_front()
    with f.raw() as c:
        req, _ = wsl.upgrade_request("/local")
        c.send(req + b"GET /local HTTP/1.1\r\nHost: test.local\r\n\r\n")
        r1 = c.read_response(allow_interim=True)
        r2 = c.read_response()
    assert (r1.status, r1.body, r1.header("upgrade")) == (200, b"portico-local", None)
    assert (r2.status, r2.body) == (200, b"portico-local")
    assert f.backend.stats()["connections"] == 0


def test_h1_h1_ws_tunnel_on_pooled_connection(ws_front, raw_ws_backend):
    """An upgrade may go out on a pooled keep-alive backend connection: the backend sees the
    plain GET and then the upgrade on one TCP connection, and the tunnel works."""

    def serve(c, b):
        line, h = c.read_request()
        b.record(line)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
        line, h = c.read_request()
        b.record(line)
        c.answer_101(h["sec-websocket-key"])
        rd = wsl.FrameReader(c)
        _, op, data, _ = rd.read(5)
        c.send(wsl.frame(op, data, mask=False))
        c.read_all(5)

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr])
    assert lib.get(f.plain_port, "/plain")[0:3:2] == (200, b"plain")
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/ws")
        assert r.status == 101
        c.send(wsl.frame(wsl.OP_TEXT, "pooled"))
        assert wsl.FrameReader(c).read() == (1, wsl.OP_TEXT, b"pooled", False)
    assert (rb.accepted, rb.log) == (1, ["GET /plain HTTP/1.1", "GET /ws HTTP/1.1"])


def test_h1_h1_ws_wrong_accept_502(ws_front, raw_ws_backend):
    """A backend 101 with a wrong Sec-WebSocket-Accept: the client gets 502 (never the 101),
    and the error log says why."""

    def serve(c, b):
        _, h = c.read_request()
        b.record(h.get("sec-websocket-key"))
        c.answer_101(h["sec-websocket-key"], accept=wsl.accept_for(wsl.ws_key()))
        c.read_all(5)

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr])
    with f.raw() as c:
        req, key = wsl.upgrade_request("/")
        c.send(req)
        r = c.read_response(allow_interim=True)
    assert r.status == 502
    assert rb.log[0] == key
    lib.wait_until(lambda: re.search(
        r"\[error\].*101 without the right Upgrade, Connection or Sec-WebSocket-Accept",
        f.portico.read(f.portico.error_log)), 5, what="the error log line of the bad accept")


# ------------------------------------------------------------- handshake ---

HANDSHAKE_REJECTED = {  # case: (request, status); keys are fixed so that xdist workers agree
    "version_8": (wsl.upgrade_request("/echo", key=wsl.SAMPLE_KEY, version="8")[0], 426),
    "short_key": (wsl.upgrade_request("/echo", key="abc")[0], 400),
    "key_17_bytes": (wsl.upgrade_request("/echo", key="AAAAAAAAAAAAAAAAAAAAAAA=")[0], 400),
    "post": (wsl.upgrade_request("/echo", key=wsl.SAMPLE_KEY, method="POST",
                                 extra=["Content-Length: 0"])[0], 400),
    "http10": (wsl.upgrade_request("/echo", key=wsl.SAMPLE_KEY, proto="HTTP/1.0")[0], 400),
}


@pytest.mark.parametrize("case", sorted(HANDSHAKE_REJECTED))
def test_h1_h1_ws_handshake_rejected(ws_front, case):
    """Portico's own handshake checks (RFC 6455 section 4.2.1), answered before any backend
    is asked: 426 with Sec-WebSocket-Version: 13 for another version, 400 otherwise."""
    req, status = HANDSHAKE_REJECTED[case]
    f = ws_front()
    with f.raw() as c:
        c.send(req)
        r = c.read_response(allow_interim=True)
    assert r.status == status
    if status == 426:
        assert r.header("sec-websocket-version") == "13"
    assert f.backend.stats()["connections"] == 0


def test_h1_h1_ws_off_forwards_plain_get(ws_front, raw_ws_backend):
    """`websocket off`: the request reaches the backend as a plain GET, without Upgrade or
    Connection: upgrade (a raw backend records it and answers 426 as a WebSocket server
    would); the client gets that 426 and the connection stays HTTP."""

    def serve(c, b):
        while True:
            line, h = c.read_request()
            b.record((line, h))
            body = b"no upgrade here\n"
            c.send(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr], location_extra="websocket off;")
    with f.raw() as c:
        req, _ = wsl.upgrade_request("/echo")
        c.send(req + b"GET /local HTTP/1.1\r\nHost: test.local\r\n\r\n")
        r1 = c.read_response(allow_interim=True)
        r2 = c.read_response()
    line, h = rb.log[0]
    assert line == "GET /echo HTTP/1.1"
    assert ("upgrade" in h, "upgrade" in h.get("connection", "").lower()) == (False, False)
    assert (r1.status, r1.body, r1.header("upgrade")) == (426, b"no upgrade here\n", None)
    assert (r2.status, r2.body) == (200, b"portico-local")


def test_h1_h1_ws_off_real_server(ws_front):
    """`websocket off` in front of the websockets server: it sees no upgrade and refuses with
    its own 426 (not portico's), no tunnel is made, and its handler never runs."""
    f = ws_front(location_extra="websocket off;")
    with f.raw() as c:
        req, _ = wsl.upgrade_request("/echo")
        c.send(req)
        r = c.read_response(allow_interim=True)
    assert r.status == 426
    assert b"Failed to open a WebSocket connection" in r.body
    assert f.backend.stats()["connections"] == 0


# ------------------------------------------------------------ frame rules ---

def test_h1_h1_ws_max_message_1009(ws_front):
    """websocket_max_message 1k: a message of exactly 1 KiB passes; 1 KiB + 1 (in one frame,
    or in two fragments) gets the client close 1009 and the backend 1001, and the tunnel ends
    as soon as the backend has answered: its handler ends (its TCP connection closed) within
    5 s, not at websocket_fin_timeout (10 s), since portico does not wait for the offender's
    close frame (RFC 6455 section 7.1.7)."""
    f = ws_front(location_extra="websocket_max_message 1k;")

    async def one(parts):
        ws = await f.connect("/echo", compression=None, close_timeout=5)
        await ws.send(b"x" * 1024)
        assert await ws.recv() == b"x" * 1024
        t0 = time.monotonic()
        await ws.send(parts if len(parts) > 1 else parts[0])
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed()
        return ws.close_code, time.monotonic() - t0

    code, took = run(one([b"y" * 1025]))
    assert code == 1009
    assert took < 2.0, "the tunnel lingered %.1f s after the 1009" % took
    code, took = run(one([b"z" * 600, b"z" * 425]))
    assert code == 1009
    assert took < 2.0, "the tunnel lingered %.1f s after the 1009" % took
    lib.wait_until(lambda: f.backend.stats()["closes"] == [1001, 1001], 5,
                   what="the backend got 1001 twice")


def _bad_len64():
    # a 64-bit length with its most significant bit set (section 5.2)
    return bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\0\0\0\0"


CLIENT_VIOLATIONS = {
    "unmasked": lambda: wsl.frame(wsl.OP_TEXT, "naked", mask=False),
    "ping_126_bytes": lambda: wsl.frame(wsl.OP_PING, b"p" * 126),
    "fragmented_ping": lambda: wsl.frame(wsl.OP_PING, b"p", fin=False),
    "continuation_first": lambda: wsl.frame(wsl.OP_CONT, b"c"),
    "text_inside_message": lambda: wsl.frame(wsl.OP_TEXT, b"a", fin=False) +
    wsl.frame(wsl.OP_TEXT, b"b"),
    "reserved_opcode_3": lambda: wsl.frame(3, b"r"),
    "length_msb_set": _bad_len64,
}


@pytest.mark.parametrize("case", sorted(CLIENT_VIOLATIONS))
def test_h1_h1_ws_client_frame_violation_1002(ws_front, case):
    """A client frame against RFC 6455 section 5 (unmasked, control frame over 125 bytes or
    fragmented, a continuation with no message, a new message inside a fragmented one, a
    reserved opcode, a 64-bit length with its top bit set): close 1002 to the client,
    unmasked; the backend gets 1001; the connection ends promptly."""
    f = ws_front()
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/echo")
        assert r.status == 101
        c.send(wsl.frame(wsl.OP_TEXT, "ok"))
        rd = wsl.FrameReader(c)
        assert rd.read() == (1, wsl.OP_TEXT, b"ok", False)
        c.send(CLIENT_VIOLATIONS[case]())
        fin, op, data, masked = rd.read()
        assert (op, wsl.close_code_of(data), masked) == (wsl.OP_CLOSE, 1002, False)
        c.send(wsl.frame(wsl.OP_CLOSE, wsl.close_payload(1002)))
        assert c.is_closed(2)
    lib.wait_until(lambda: f.backend.stats()["closes"] == [1001], 5,
                   what="the backend got 1001")


def test_h1_h1_ws_server_masked_frame_1002(ws_front, raw_ws_backend):
    """A masked frame from the backend (section 5.1: a server must not mask): the backend
    gets close 1002, masked as a client's; the client gets 1001; the tunnel ends promptly."""

    def serve(c, b):
        _, h = c.read_request()
        c.answer_101(h["sec-websocket-key"])
        c.send(wsl.frame(wsl.OP_TEXT, "masked!", mask=True))
        rd = wsl.FrameReader(c)
        try:
            while True:
                b.record(rd.read(5))
        except lib.ConnClosed:
            b.record("eof")

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr])
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        fin, op, data, masked = wsl.FrameReader(c).read()
        assert (op, wsl.close_code_of(data), masked) == (wsl.OP_CLOSE, 1001, False)
        c.send(wsl.frame(wsl.OP_CLOSE, wsl.close_payload(1001)))
        assert c.is_closed(2)
    lib.wait_until(lambda: rb.log and rb.log[-1] == "eof", 5, what="the backend's EOF")
    assert [(op, wsl.close_code_of(d), m) for _, op, d, m in rb.log[:-1]] == \
        [(wsl.OP_CLOSE, 1002, True)]


def test_h1_h1_ws_oversize_header_split_across_reads(ws_front, raw_ws_backend):
    """An oversize frame whose header reaches portico in two reads: its first byte has been
    forwarded already, so the backend's stream is not at a frame boundary and portico must not
    append a close frame there (it would be parsed as the rest of the torn header); the
    client still gets 1009."""

    def serve(c, b):
        _, h = c.read_request()
        c.answer_101(h["sec-websocket-key"])
        c.sock.settimeout(10)
        try:
            while True:
                d = c.sock.recv(65536)
                if not d:
                    break
                b.record(d)
        except OSError:
            pass
        b.record(None)

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr], location_extra="websocket_max_message 1k;")
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        big = wsl.frame(wsl.OP_BINARY, b"q" * 2000)
        c.send(big[:1])
        lib.wait_until(lambda: rb.log, 5, what="the backend got the first header byte")
        c.send(big[1:])
        fin, op, data, masked = wsl.FrameReader(c).read()
        assert (op, wsl.close_code_of(data)) == (wsl.OP_CLOSE, 1009)
        c.send(wsl.frame(wsl.OP_CLOSE, wsl.close_payload(1009)))
        assert c.is_closed(3)
    lib.wait_until(lambda: rb.log and rb.log[-1] is None, 5, what="the backend's EOF")
    assert b"".join(d for d in rb.log if d) == big[:1]


def test_h1_h1_ws_early_bytes_both_ways(ws_front, raw_ws_backend):
    """Bytes that arrive in the same read as a handshake are tunnel bytes: frames the client
    sent right after its request (before the 101) reach the backend, and a frame the backend
    sent in the same write as its 101 reaches the client."""

    def serve(c, b):
        _, h = c.read_request()
        c.send(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                % wsl.accept_for(h["sec-websocket-key"])).encode() +
               wsl.frame(wsl.OP_TEXT, "greeting", mask=False))
        rd = wsl.FrameReader(c)
        b.record([(op, len(d), wsl.sha(d)) for _, op, d, _ in (rd.read(), rd.read())])
        c.read_all(5)

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr])
    big = wsl.pattern(70000)
    with f.raw() as c:
        req, _ = wsl.upgrade_request("/")
        c.send(req + wsl.frame(wsl.OP_TEXT, "early") + wsl.frame(wsl.OP_BINARY, big))
        assert c.read_response(allow_interim=True).status == 101
        assert wsl.FrameReader(c).read() == (1, wsl.OP_TEXT, b"greeting", False)
        lib.wait_until(lambda: rb.log, 5, what="the backend read both early frames")
    assert rb.log[0] == [(wsl.OP_TEXT, 5, wsl.sha(b"early")), (wsl.OP_BINARY, 70000, wsl.sha(big))]


def test_h1_h1_ws_connection_keep_alive_upgrade(ws_front):
    """Connection: keep-alive, Upgrade (what Firefox sends) is a valid handshake."""
    f = ws_front()
    with f.raw() as c:
        req, _ = wsl.upgrade_request("/echo")
        c.send(req.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"))
        assert c.read_response(allow_interim=True).status == 101
        c.send(wsl.frame(wsl.OP_TEXT, "ff"))
        assert wsl.FrameReader(c).read() == (1, wsl.OP_TEXT, b"ff", False)


def test_h1_h1_ws_fin_timeout(ws_front, raw_ws_backend):
    """websocket_fin_timeout 1s: after the client's FIN, a backend that neither answers nor
    closes is given about 1 s, then both connections close."""

    def serve(c, b):
        _, h = c.read_request()
        c.answer_101(h["sec-websocket-key"])
        c.read_all(10)  # up to the FIN
        b.record("eof")
        while not b.stopping.wait(0.1):  # and then nothing: no close frame, no FIN
            pass

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr], location_extra="websocket_fin_timeout 1s;")
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        t0 = time.monotonic()
        c.sock.shutdown(socket.SHUT_WR)
        assert c.is_closed(5)
        took = time.monotonic() - t0
    assert rb.log == ["eof"]
    assert 0.9 <= took <= 2.0, took


# --------------------------------------------------------- backpressure ---

def _flood_until_stalled(sock, mask=True, cap=512 * 1024 * 1024):
    """Writes 64 KiB binary frames until no byte has gone for 0.5 s (or cap bytes went);
    returns the bytes written."""
    fr = wsl.frame(wsl.OP_BINARY, wsl.pattern(65536), mask=mask)
    sock.setblocking(False)
    sent, last_progress = 0, time.monotonic()
    while sent < cap and time.monotonic() - last_progress < 0.5:
        _, w, _ = select.select([], [sock], [], 0.1)
        if not w:
            continue
        try:
            sent += sock.send(fr[sent % len(fr):])
            last_progress = time.monotonic()
        except BlockingIOError:
            pass
    return sent


def test_h1_h1_ws_client_flood_backend_never_reads(ws_front, raw_ws_backend):
    """A client floods a backend that never reads after its 101: portico stops reading from
    the client once 64 KiB wait for the backend, so the client's writes stall after a few MiB
    of socket buffers, and portico's resident memory stays flat."""

    def serve(c, b):
        _, h = c.read_request()
        c.answer_101(h["sec-websocket-key"])
        b.record("open")
        while not b.stopping.wait(0.1):
            pass

    rb = raw_ws_backend(serve, rcvbuf=16384)
    f = ws_front(servers=[rb.addr])
    c = f.raw()
    try:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        before = wsl.vm_rss_kib(f.portico.pid)
        sent = _flood_until_stalled(c.sock)
        growth = wsl.vm_rss_kib(f.portico.pid) - before
    finally:
        c.close()
    print("client flood: %d bytes written before stalling, portico RSS +%d KiB" % (sent, growth))
    assert sent < 64 * 1024 * 1024, "the client wrote %d bytes without stalling" % sent
    assert growth < 2048, "portico grew by %d KiB" % growth


def test_h1_h1_ws_backend_flood_client_never_reads(ws_front, raw_ws_backend):
    """A backend floods a client that never reads: the backend's writes stall (portico stops
    reading it), and portico's resident memory stays flat."""

    def serve(c, b):
        _, h = c.read_request()
        c.answer_101(h["sec-websocket-key"])
        b.record(_flood_until_stalled(c.sock, mask=False))
        while not b.stopping.wait(0.1):
            pass

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr])
    c = lib.RawConn("127.0.0.1", f.plain_port)
    try:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        req, _ = wsl.upgrade_request("/")
        before = wsl.vm_rss_kib(f.portico.pid)
        c.send(req)
        c.sock.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.sock.recv(1)  # the 101 head only: not one byte of the flood
        assert head.startswith(b"HTTP/1.1 101 ")
        lib.wait_until(lambda: rb.log, 20, what="the backend's writes stalled")
        growth = wsl.vm_rss_kib(f.portico.pid) - before
    finally:
        c.close()
    print("backend flood: %d bytes written before stalling, portico RSS +%d KiB"
          % (rb.log[0], growth))
    assert rb.log[0] < 64 * 1024 * 1024, "the backend wrote %d bytes without stalling" % rb.log[0]
    assert growth < 2048, "portico grew by %d KiB" % growth


# ------------------------------------------------------------- timeouts ---

def test_h1_h1_ws_idle_timeout_one_clock(ws_front):
    """websocket_idle_timeout 1s: a tunnel where only the backend speaks (a push every
    300 ms for 3 s) stays open to the backend's own close; a silent tunnel closes after about
    1 s."""
    f = ws_front(location_extra="websocket_idle_timeout 1s;")

    async def pushed():
        msgs = []
        ws = await f.connect("/push?n=10&ms=300")
        try:
            while True:
                msgs.append(await asyncio.wait_for(ws.recv(), 5))
        except websockets.ConnectionClosed:
            pass
        return msgs, ws.close_code, ws.close_reason

    msgs, code, reason = run(pushed())
    assert (msgs, code, reason) == (["push %d" % i for i in range(10)], 1000, "done")

    async def silent():
        ws = await f.connect("/echo")
        await ws.send("last words")
        assert await ws.recv() == "last words"
        t0 = time.monotonic()
        await asyncio.wait_for(ws.wait_closed(), 5)
        return time.monotonic() - t0, ws.close_code

    took, code = run(silent())
    assert 0.9 <= took <= 2.0, took
    assert code == 1006  # the idle timeout closes the connections: no close frame


def test_h1_h1_ws_http_timeouts_do_not_apply(ws_front):
    """A tunnel is timed by websocket_idle_timeout only: with read_timeout and send_timeout
    1s on the upstream, a silent tunnel is still open after 1.5 s and still echoes."""
    f = ws_front(upstream_extra="    read_timeout 1s;\n    send_timeout 1s;")

    async def go():
        async with f.connect("/echo") as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            await asyncio.sleep(1.5)  # the silence under test, not a wait for something
            await ws.send("after")
            return await asyncio.wait_for(ws.recv(), 5)

    assert run(go()) == "after"


# -------------------------------------------------------- graceful stop ---

@pytest.mark.parametrize("scheme", SCHEMES)
def test_h1_h1_ws_sigterm_says_1001(ws_front, scheme):
    """SIGTERM with tunnels open: each client and the backend get close 1001, and portico
    exits 0 well within shutdown_timeout."""
    f = ws_front(shutdown_timeout="3s")

    async def go():
        conns = [await f.connect("/echo", scheme) for _ in range(3)]
        for i, ws in enumerate(conns):
            await ws.send("m%d" % i)
            assert await ws.recv() == "m%d" % i
        t0 = time.monotonic()
        f.portico.signal(signal.SIGTERM)

        async def closed(ws):
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            return ws.close_code

        codes = await asyncio.gather(*(closed(ws) for ws in conns))
        return codes, t0

    codes, t0 = run(go())
    assert codes == [1001, 1001, 1001]
    assert f.portico.wait_exit(3.0) == 0
    assert time.monotonic() - t0 < 3.0
    lib.wait_until(lambda: f.backend.stats()["closes"] == [1001, 1001, 1001], 5,
                   what="the backend got 1001 on each tunnel")


def test_h1_h1_ws_sigterm_after_client_reset(ws_front, raw_ws_backend):
    """SIGTERM while a tunnel's client has reset its connection unnoticed (portico was not
    reading it: the backend never reads, so the client side is held): writing the 1001 to the
    client fails and closes the tunnel inside its goodbye, and portico still exits 0 (it
    used to touch the freed tunnel there and crash)."""

    def serve(c, b):
        _, h = c.read_request()
        c.answer_101(h["sec-websocket-key"])
        while not b.stopping.wait(0.1):
            pass

    rb = raw_ws_backend(serve, rcvbuf=16384)
    f = ws_front(servers=[rb.addr])
    c = f.raw()
    r, _ = wsl.raw_ws_connect(c, "/")
    assert r.status == 101
    assert _flood_until_stalled(c.sock) < 64 * 1024 * 1024
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST
    lib.wait_until(lambda: wsl.established_on(f.plain_port) == 0, 5,
                   what="portico's end of the client connection got the RST")
    f.portico.signal(signal.SIGTERM)
    assert f.portico.wait_exit(5) == 0


def test_h1_h1_ws_sigterm_client_never_answers(ws_front):
    """SIGTERM, and a client that never answers portico's 1001: the tunnel is closed at
    shutdown_timeout (1s) with the warning, portico exits 0, and the tunnel is logged."""
    f = ws_front(shutdown_timeout="1s")
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/echo")
        assert r.status == 101
        t0 = time.monotonic()
        f.portico.signal(signal.SIGTERM)
        fin, op, data, masked = wsl.FrameReader(c).read()
        assert (op, wsl.close_code_of(data)) == (wsl.OP_CLOSE, 1001)
        assert f.portico.wait_exit(5) == 0
        took = time.monotonic() - t0
    assert 0.9 <= took <= 2.0, took
    assert "shutdown_timeout reached with 1 connection(s) open" in \
        f.portico.read(f.portico.error_log)
    assert f.backend.stats()["closes"] == [1001]
    assert re.search(r'"GET /echo HTTP/1.1" 101 ', f.portico.read(f.portico.access_log))


# ------------------------------------------------------------ balancing ---

def test_h1_h1_ws_least_conn_counts_tunnels(ws_front):
    """balance least_conn over two backends: 10 long-lived tunnels opened one after the other
    spread 5/5, because an open tunnel counts as a connection to its server until it
    closes."""
    f = ws_front(n_backends=2, upstream_extra="    balance least_conn;")

    async def go():
        conns = []
        for i in range(10):
            ws = await f.connect("/echo")
            await ws.send("t%d" % i)
            assert await ws.recv() == "t%d" % i
            conns.append(ws)
        open_now = [b.stats()["open"] for b in f.backends]
        for ws in conns:
            await ws.close()
        lib.wait_until(lambda: [b.stats()["open"] for b in f.backends] == [0, 0], 5,
                       what="all tunnels closed at the backends")
        # closed tunnels no longer count: two new ones go one to each server
        again = [await f.connect("/echo") for _ in range(2)]
        open_again = [b.stats()["open"] for b in f.backends]
        for ws in again:
            await ws.close()
        return open_now, open_again

    assert run(go()) == ([5, 5], [1, 1])


# ----------------------------------------------------------------- scale ---

@pytest.mark.hard_timeout(90)
def test_h1_h1_ws_1000_concurrent_tunnels(ws_front):
    """1000 tunnels open at once through one worker, each echoing one message: all succeed."""
    n = 1000
    f = ws_front(workers=1, upstream_extra="    connect_timeout 5s;")

    async def go():
        opened = 0
        all_open = asyncio.Event()

        async def one(i):
            nonlocal opened
            async with f.connect("/echo", open_timeout=30, close_timeout=10) as ws:
                await ws.send("msg %d" % i)
                ok = await asyncio.wait_for(ws.recv(), 30) == "msg %d" % i
                opened += 1
                if opened == n:
                    all_open.set()
                await asyncio.wait_for(all_open.wait(), 30)
                return ok

        t0 = time.monotonic()
        res = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
        return res, time.monotonic() - t0

    res, took = run(go())
    bad = [r for r in res if r is not True]
    print("1000 concurrent tunnels: %.2f s" % took)
    assert bad == [], bad[:5]


# ----------------------------------------------------------- access log ---

def test_h1_h1_ws_access_log_one_line_per_tunnel(ws_front):
    """One access log line per tunnel, status 101, written when the tunnel closes (not at
    the 101)."""
    f = ws_front(access_log="combined")
    log = f.portico.access_log

    def lines():
        return [l for l in f.portico.read(log).splitlines() if l.strip()]

    async def go():
        a = await f.connect("/echo?a", compression=None)
        b = await f.connect("/echo?b", compression=None)
        for ws in (a, b):
            await ws.send("x" * 1000)
            await ws.recv()
        # a plain request, logged and flushed after the two 101s were sent
        assert lib.get(f.plain_port, "/local")[0] == 200
        lib.wait_until(lambda: any("/local" in l for l in lines()), 5,
                       what="the /local line in the access log")
        during = [l for l in lines() if "/echo" in l]
        await a.close()
        await b.close()
        return during

    during = run(go())
    assert during == []
    lib.wait_until(lambda: len([l for l in lines() if "/echo" in l]) == 2, 5,
                   what="two tunnel lines")
    ws_lines = [l for l in lines() if "/echo" in l]
    # the bytes are the backend's frames: the 1000-byte echo (4-byte header) and its 4-byte
    # close frame
    assert sorted(re.search(r'"GET (\S+) HTTP/1.1" (\d+) (\d+) ', l).groups()
                  for l in ws_lines) == [("/echo?a", "101", "1008"), ("/echo?b", "101", "1008")]


def test_h1_h1_ws_access_log_fields(ws_front, raw_ws_backend):
    """The line a tunnel leaves when it closes carries what its request and its whole life
    were, although the tunnel keeps only a small record of its exchange (the exchange is freed
    at the 101): status 101, the request line, the bytes the server sent (frame bytes, headers
    included), the tunnel's duration, the request ID the backend was sent, the Host, User-Agent
    and Referer, and the upstream fields (the attempt lasts as long as the tunnel)."""

    def serve(c, b):
        _, h = c.read_request()
        b.record(("rid", h.get("x-request-id")))
        c.answer_101(h["sec-websocket-key"])
        rd = wsl.FrameReader(c)
        assert rd.read()[2] == b"hello"
        c.send(wsl.frame(wsl.OP_TEXT, "x" * 300, mask=False))   # 4 + 300 bytes
        fin, op, data, _ = rd.read()
        assert op == wsl.OP_CLOSE
        c.send(wsl.frame(wsl.OP_CLOSE, data[:2], mask=False))     # 4 bytes
        c.read_all(5)

    rb = raw_ws_backend(serve)
    f = ws_front(servers=[rb.addr], access_log="json")
    log = f.portico.access_log
    with f.raw() as c:
        req, _ = wsl.upgrade_request("/chat/room?x=1", extra=(
            "User-Agent: line-test/1.0", "Referer: http://ref.example/page"))
        c.send(req)
        r = c.read_response(allow_interim=True)
        assert r.status == 101
        c.send(wsl.frame(wsl.OP_TEXT, "hello"))                  # 2 + 4 + 5 bytes
        rd = wsl.FrameReader(c)
        assert rd.read()[2] == b"x" * 300
        time.sleep(1.2)                                           # the tunnel's life
        c.send(wsl.frame(wsl.OP_CLOSE, struct.pack("!H", 1000)))  # 2 + 4 + 2 bytes
        assert rd.read()[1] == wsl.OP_CLOSE
        c.read_all(5)

    def line():
        ls = [l for l in f.portico.read(log).splitlines() if "/chat/room" in l]
        return ls[0] if ls else None

    import json
    rec = json.loads(lib.wait_until(line, 10, what="the tunnel's access log line"))
    rid = [v for k, v in rb.log if k == "rid"]
    assert rid and rid[0]
    assert (rec["method"], rec["uri"], rec["protocol"], rec["status"], rec["bytes_sent"]) == \
        ("GET", "/chat/room?x=1", "HTTP/1.1", 101, 308)
    assert rec["request_time"] >= 1.0
    assert rec["request_id"] == rid[0]
    assert (rec["host"], rec["user_agent"], rec["referer"]) == \
        ("test.local", "line-test/1.0", "http://ref.example/page")
    assert (rec["remote_addr"], rec["upstream"], rec["upstream_addr"]) == \
        ("127.0.0.1", "app", rb.addr)
    assert float(rec["upstream_response_time"]) >= 1.0
    assert float(rec["upstream_connect_time"]) >= 0.0
