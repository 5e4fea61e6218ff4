"""WebSockets to HTTP/2 backends (`protocol h2`): all four client x backend pairs.
- a server that advertises SETTINGS_ENABLE_CONNECT_PROTOCOL gets an extended CONNECT
  (RFC 8441) with :protocol websocket, without the RFC 6455 key or upgrade fields; its 200 is
  the client's 101 (HTTP/1.1 client, python3-websockets) or 200 (HTTP/2 client, python-h2), and
  the stream carries the frames both ways, over h2c and TLS;
- a server that does not advertise it gets the WebSocket over an HTTP/1.1 connection of its
  own (TLS: ALPN http/1.1), with an info line;
- a refused CONNECT (403) reaches the client as 403; a stream reset ends the tunnel; close
  codes pass both ways and the stream is ended; SIGTERM says 1001.
The backend is tests/tools/h2ws_backend.py (python3-h2)."""

import asyncio
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys

import pytest

import portico_testlib as lib
import ws_testlib as wsl

H2WS = os.path.join(lib.TOOLS, "h2ws_backend.py")
sys.path.insert(0, os.path.join(lib.REPO, "tests", "integration", "h2"))


class H2WsBackend:
    def __init__(self, logdir, connect=True, tls=None):
        args = [lib.PYTHON, H2WS, "--port", "0"]
        if not connect:
            args.append("--no-connect")
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.tls = tls
        self.err = open(os.path.join(logdir, "h2ws.err"), "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        assert line.startswith("READY"), line
        self.port = int(line.split()[1])
        self.addr = "127.0.0.1:%d" % self.port

    def stats(self):
        s = socket.create_connection(("127.0.0.1", self.port), 5)
        if self.tls:
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            s = ctx.wrap_socket(s)
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        return json.loads(data.split(b"\r\n\r\n", 1)[1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)
        self.err.close()


@pytest.fixture
def h2ws(tmp_path):
    started = []

    def _start(**kw):
        b = H2WsBackend(str(tmp_path), **kw)
        started.append(b)
        return b
    yield _start
    for b in started:
        b.stop()


def front(ws_front, b, tls=False, certs=None, extra=""):
    up = "protocol h2;\n" if not tls else \
        "protocol h2;\n    tls on;\n    tls_trusted_certificate %s;\n    tls_sni localhost;\n" \
        % certs.ca
    return ws_front(servers=[b.addr], upstream_extra=up + extra)


async def echo_roundtrips(url, sizes, **kw):
    import websockets
    async with websockets.connect(url, max_size=None, ping_interval=None, open_timeout=5,
                                  **kw) as ws:
        for n in sizes:
            text = "t" * n
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 10) == text
            data = os.urandom(n)
            await ws.send(data)
            assert await asyncio.wait_for(ws.recv(), 10) == data
        pong = await ws.ping(b"p")
        await asyncio.wait_for(pong, 5)
        await ws.close(1000, "done")
        return ws.close_code


SIZES = [0, 125, 126, 65536, 1024 * 1024]


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_h1_client_to_h2_backend_extended_connect(ws_front, h2ws, certs, tls):
    b = h2ws(tls=(certs.localhost, certs.localhost_key) if tls else None)
    f = front(ws_front, b, tls, certs)
    assert asyncio.run(echo_roundtrips(f.url("/echo"), SIZES)) == 1000
    st = lib.wait_until(lambda: (lambda s: s if s["closes"] else None)(b.stats()), 5,
                        what="the close at the backend")
    assert (st["h2_ws"], st["h1_ws"]) == (1, 0), st
    assert st["closes"] == [1000], st
    # RFC 8441 section 5: no key, no upgrade fields; the version and the path go
    hdrs = st["connect_headers"]
    assert ":protocol" in hdrs and "sec-websocket-version" in hdrs, hdrs
    for h in ("sec-websocket-key", "upgrade", "connection", "host"):
        assert h not in hdrs, hdrs


def h2_client(port):
    from test_h2_websocket import H2Ws
    return H2Ws(port)


def test_h2_client_to_h2_backend_several_streams(ws_front, h2ws, certs):
    b = h2ws()
    f = front(ws_front, b)
    c = h2_client(f.plain_port)
    from test_h2_websocket import frame as cframe
    try:
        sids = [c.open("/echo") for _ in range(3)]
        for sid in sids:
            assert c.streams[sid]["status"] == 200, c.streams[sid]
        for i, sid in enumerate(sids):
            c.send(sid, cframe(b"hello %d" % i))
        for i, sid in enumerate(sids):
            assert c.messages(sid, 1) == [(1, b"hello %d" % i)]
        big = os.urandom(300000)
        c.send(sids[0], cframe(big, op=2))
        assert c.messages(sids[0], 1, timeout=10) == [(2, big)]
    finally:
        c.close()
    assert b.stats()["h2_ws"] == 3


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_backend_without_extended_connect_gets_http11(ws_front, h2ws, certs, tls):
    b = h2ws(connect=False, tls=(certs.localhost, certs.localhost_key) if tls else None)
    f = front(ws_front, b, tls, certs)
    assert asyncio.run(echo_roundtrips(f.url("/echo"), [10, 70000])) == 1000
    assert asyncio.run(echo_roundtrips(f.url("/echo"), [3])) == 1000
    st = b.stats()
    assert (st["h2_ws"], st["h1_ws"]) == (0, 2), st
    log = f.portico.read(f.portico.error_log)
    assert log.count("no extended CONNECT (RFC 8441) in its SETTINGS") >= 1, log
    # ordinary requests still go over HTTP/2 (one connection: the HTTP/1.1 ones were not pooled)


def test_refused_connect_reaches_the_client(ws_front, h2ws):
    b = h2ws()
    f = front(ws_front, b)
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/refuse")
        assert r.status == 403 and r.body == b"refused", r
        # the connection is still HTTP: a next request is answered
        c.send(b"GET /local HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"portico-local"


def test_backend_reset_ends_the_tunnel(ws_front, h2ws):
    b = h2ws()
    f = front(ws_front, b)
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/reset")
        assert r.status == 101
        assert c.is_closed(5)


def test_backend_close_code_reaches_the_client(ws_front, h2ws):
    b = h2ws()
    f = front(ws_front, b)
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/bye")
        assert r.status == 101
        # a relayed response like any other: it carries the request ID
        assert re.fullmatch(r"[0-9a-f]{32}", r.header("x-request-id") or ""), r.headers
        fin, op, data, masked = wsl.FrameReader(c).read(5)
        assert (op, wsl.close_code_of(data), data[2:], masked) == (wsl.OP_CLOSE, 4001, b"bye",
                                                                   False)
        c.send(wsl.frame(wsl.OP_CLOSE, wsl.close_payload(4001)))
        assert c.is_closed(5)
    lib.wait_until(lambda: b.stats()["closes"] == [4001], 5, what="the answer at the backend")


def test_sigterm_says_1001_over_h2_backend(ws_front, h2ws):
    b = h2ws()
    f = front(ws_front, b)
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/echo")
        assert r.status == 101
        c.send(wsl.frame(wsl.OP_TEXT, b"x"))
        assert wsl.FrameReader(c).read(5)[1:3] == (wsl.OP_TEXT, b"x")
        f.portico.signal(signal.SIGTERM)
        fin, op, data, masked = wsl.FrameReader(c).read(5)
        assert (op, wsl.close_code_of(data)) == (wsl.OP_CLOSE, 1001)
        c.send(wsl.frame(wsl.OP_CLOSE, wsl.close_payload(1001)))
        assert f.portico.wait_exit(5) == 0
    assert 1001 in b.stats()["closes"]
