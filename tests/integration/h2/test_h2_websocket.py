"""WebSocket over HTTP/2 (RFC 8441) with python-h2, and the built-in websocket_echo handler:
- the HTTP/2 server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL;
- an extended CONNECT with :protocol websocket to a proxied location becomes an RFC 6455
  handshake to an HTTP/1.1 backend (a real python3-websockets server), answered 200, and the
  stream carries the frames both ways, over h2c and TLS;
- several WebSockets share one connection, and one whose client does not read (its window
  closed) does not block the others;
- `websocket off` (or another :protocol) is a 501, a location without a match a 404;
- websocket_echo serves WebSockets itself over HTTP/1.1 (python3-websockets client) and
  HTTP/2 (ping, fragments, 1 MiB, close echoed)."""

import asyncio
import os
import select
import socket
import struct
import subprocess
import sys
import time

import pytest

import portico_testlib as lib
from h2_attacks import connect
from tls_h2_testlib import plain_server, tls_server, upstream, wait_log

WS_BACKEND = os.path.join(lib.TOOLS, "ws_backend.py")


class WsBackend:
    """tests/tools/ws_backend.py (python3-websockets)."""

    def __init__(self):
        self.proc = subprocess.Popen([lib.PYTHON, WS_BACKEND, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        assert line.startswith("READY"), line
        self.port = int(line.split()[2])
        self.addr = "127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def ws_backend():
    b = WsBackend()
    yield b
    b.stop()


def frame(payload, op=1, mask=True, fin=True):
    """A client frame (masked)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        hdr = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        hdr = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse_frames(buf):
    """Server frames (unmasked) at the start of buf: [(opcode, payload)], rest."""
    out = []
    while len(buf) >= 2:
        n = buf[1] & 0x7f
        off = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack(">H", buf[2:4])[0]
            off = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack(">Q", buf[2:10])[0]
            off = 10
        if len(buf) < off + n:
            break
        out.append((buf[0] & 0x0f, bytes(buf[off:off + n])))
        buf = buf[off + n:]
    return out, buf


class H2Ws:
    """A python-h2 client that opens RFC 8441 WebSockets on one connection."""

    def __init__(self, port, tls=False, cafile=None):
        import h2.config
        import h2.connection
        self.sock = connect("127.0.0.1", port, tls=tls, cafile=cafile)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.tls = tls
        self.streams = {}
        self.flush()
        self.pump_until(lambda: self.conn.remote_settings.get(8) == 1, 3)

    def flush(self):
        d = self.conn.data_to_send()
        if d:
            self.sock.sendall(d)

    def pump(self, timeout=0.2, ack=True):
        import h2.events
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(262144)
        except (socket.timeout, TimeoutError):
            return
        if not d:
            raise ConnectionError("closed")
        for e in self.conn.receive_data(d):
            st = self.streams.get(getattr(e, "stream_id", None))
            if isinstance(e, h2.events.ResponseReceived):
                st["status"] = int(dict(e.headers)[b":status"])
                st["headers"] = dict(e.headers)
            elif isinstance(e, h2.events.DataReceived):
                st["buf"] += e.data
                if ack and not st.get("hold"):
                    self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                else:
                    st["unacked"] += e.flow_controlled_length
            elif isinstance(e, h2.events.StreamEnded):
                st["ended"] = True
            elif isinstance(e, h2.events.StreamReset):
                st["reset"] = e.error_code
        self.flush()

    def pump_until(self, cond, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                return False
            self.pump(0.1)
        return True

    def open(self, path, protocol="websocket", extra=()):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = {"buf": bytearray(), "status": None, "unacked": 0}
        self.conn.send_headers(sid, [
            (b":method", b"CONNECT"), (b":protocol", protocol.encode()),
            (b":scheme", b"https" if self.tls else b"http"), (b":path", path.encode()),
            (b":authority", b"localhost"), (b"sec-websocket-version", b"13")] + list(extra),
            end_stream=False)
        self.flush()
        self.pump_until(lambda: self.streams[sid]["status"] is not None
                        or "reset" in self.streams[sid], 5)
        return sid

    def send(self, sid, data):
        while data:
            room = min(self.conn.local_flow_control_window(sid), 16384)
            if room == 0:
                self.pump(0.1)
                continue
            self.conn.send_data(sid, data[:room])
            data = data[room:]
            self.flush()

    def messages(self, sid, count, timeout=5.0):
        st = self.streams[sid]
        got = []

        def have():
            frames, rest = parse_frames(st["buf"])
            return len(frames) >= count
        self.pump_until(have, timeout)
        frames, rest = parse_frames(st["buf"])
        st["buf"] = bytearray(rest) if len(frames) <= count else st["buf"]
        got = frames[:count]
        return got

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def front(start_portico_in, body, port, certs=None):
    return start_portico_in(body, [port], name="fe")


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2_h1_ws_rfc8441_echo(start_portico_in, certs, ws_backend, tls):
    port = lib.free_port()
    if tls:
        cert, key = certs.pair("localhost")
        srv = tls_server(port, cert, key, server_name="localhost")
    else:
        srv = plain_server(port)
    p = start_portico_in(upstream("app", [ws_backend.addr]) + srv, [port], name="fe")
    c = H2Ws(port, tls=tls, cafile=certs.ca if tls else None)
    try:
        assert c.conn.remote_settings.get(8) == 1     # ENABLE_CONNECT_PROTOCOL
        sid = c.open("/echo")
        st = c.streams[sid]
        assert st["status"] == 200, st
        assert b"sec-websocket-accept" not in st["headers"]
        for payload in (b"", b"hello", b"x" * 125, b"y" * 126, os.urandom(70000)):
            c.send(sid, frame(payload, op=2))
            ((op, got),) = c.messages(sid, 1)
            assert op == 2 and got == payload, (len(got), len(payload))
        c.send(sid, frame(struct.pack(">H", 1000), op=8))
        ((op, got),) = c.messages(sid, 1)
        assert op == 8 and got[:2] == struct.pack(">H", 1000)
        assert c.pump_until(lambda: st.get("ended"), 5), "the stream did not end after close"
    finally:
        c.close()
    assert wait_log(p.access_log, r'"GET /echo HTTP/2.0" 200 ')


def test_h2_h1_ws_many_on_one_connection_and_a_blocked_reader(start_portico_in, ws_backend):
    port = lib.free_port()
    start_portico_in(upstream("app", [ws_backend.addr]) + plain_server(port), [port], name="fe")
    c = H2Ws(port)
    try:
        # a tunnel whose client stops reading: the server pushes into a closed window
        blocked = c.open("/push?n=400&ms=0")
        c.streams[blocked]["hold"] = True
        others = [c.open("/echo") for _ in range(5)]
        for sid in others:
            assert c.streams[sid]["status"] == 200
        for round_ in range(3):
            for i, sid in enumerate(others):
                c.send(sid, frame(b"msg %d %d" % (round_, i)))
            for i, sid in enumerate(others):
                ((op, got),) = c.messages(sid, 1, timeout=5)
                assert got == b"msg %d %d" % (round_, i)
        # the blocked one got only what its window let through, and is still open
        assert len(c.streams[blocked]["buf"]) <= 70000
        assert "reset" not in c.streams[blocked]
    finally:
        c.close()


def test_h2_ws_off_and_unknown_protocol_answered(start_portico_in, ws_backend):
    port = lib.free_port()
    body = upstream("app", [ws_backend.addr]) + plain_server(port, locations="""
    location /off/ { proxy_pass app; websocket off; }
    location / { proxy_pass app; }
""")
    start_portico_in(body, [port], name="fe")
    c = H2Ws(port)
    try:
        sid = c.open("/off/echo")
        assert c.streams[sid]["status"] == 501, c.streams[sid]
        sid = c.open("/echo", protocol="connect-udp")
        assert c.streams[sid]["status"] == 501, c.streams[sid]
        ok = c.open("/echo")                              # the connection goes on
        assert c.streams[ok]["status"] == 200
    finally:
        c.close()


# ---- websocket_echo --------------------------------------------------------------------

ECHO = """
    location /ws { websocket_echo; }
"""


def test_ws_echo_handler_h1(start_portico_in):
    import websockets

    port = lib.free_port()
    p = start_portico_in(plain_server(port, locations=ECHO), [port], name="fe")

    async def run():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % port, max_size=None,
                                      compression=None) as ws:
            for m in ["", "hello", b"\x00\x01", "y" * 126, os.urandom(1 << 20)]:
                await ws.send(m)
                assert await ws.recv() == m
            pong = await ws.ping(b"pp")
            await asyncio.wait_for(pong, 2)
            await ws.send(["frag1-", "frag2"])
            assert await ws.recv() == "frag1-frag2"
            await ws.close(4000, "done")
            return ws.close_code

    assert asyncio.run(run()) == 4000       # the close code comes back
    r = lib.curl("http://127.0.0.1:%d/ws" % port)
    assert r.status == 426 and r.header("Sec-WebSocket-Version") == "13"
    assert wait_log(p.access_log, r'"GET /ws HTTP/1.1" 101 ')


def test_ws_echo_handler_h2(start_portico_in):
    port = lib.free_port()
    start_portico_in(plain_server(port, locations=ECHO), [port], name="fe")
    c = H2Ws(port)
    try:
        sid = c.open("/ws")
        assert c.streams[sid]["status"] == 200
        c.send(sid, frame(b"ping!", op=9))
        ((op, got),) = c.messages(sid, 1)
        assert (op, got) == (10, b"ping!")                # a pong
        c.send(sid, frame(b"abc", op=1, fin=False) + frame(b"def", op=0))
        got = c.messages(sid, 2)
        assert [g for _, g in got] == [b"abc", b"def"]
    finally:
        c.close()


def test_ws_max_message_on_echo_is_1009(start_portico_in):
    port = lib.free_port()
    start_portico_in(plain_server(port, locations="""
    location /ws { websocket_echo; websocket_max_message 1k; }
"""), [port], name="fe")
    c = H2Ws(port)
    try:
        sid = c.open("/ws")
        c.send(sid, frame(b"a" * 1024))
        ((op, got),) = c.messages(sid, 1)
        assert op == 1 and len(got) == 1024             # at the limit: through
        c.send(sid, frame(b"a" * 1025))
        ((op, got),) = c.messages(sid, 1)
        assert op == 8 and got[:2] == struct.pack(">H", 1009), (op, got)
    finally:
        c.close()
