"""etc/examples/websocket-chat.conf with its backend (etc/examples/websocket-chat-backend.py)
as a user runs them, ports changed: three python3-websockets clients join the room through
portico; what one says reaches all three, over one backend; a client that leaves is announced
to the others."""

import asyncio
import os
import re
import select
import subprocess

import pytest

import portico_testlib as lib

EXAMPLES = os.path.join(lib.REPO, "etc", "examples")


@pytest.fixture
def chat_backend():
    p = subprocess.Popen([lib.PYTHON, os.path.join(EXAMPLES, "websocket-chat-backend.py"),
                          "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    r, _, _ = select.select([p.stdout], [], [], 10)
    line = p.stdout.readline().decode() if r else ""
    assert line.startswith("READY"), (line, p.stderr.read1(4096) if p.poll() else b"")
    yield int(line.split()[1])
    p.terminate()
    p.wait(5)


def example_conf(tmp_path, port, backend_port):
    with open(os.path.join(EXAMPLES, "websocket-chat.conf")) as f:
        text = f.read()
    text = text.replace("listen 8080;", "listen 127.0.0.1:%d;" % port)
    text = text.replace("server 127.0.0.1:9001;", "server 127.0.0.1:%d;" % backend_port)
    text = re.sub(r"access_log stdout combined;",
                  "access_log %s combined;\nerror_log %s info;"
                  % (tmp_path / "access.log", tmp_path / "error.log"), text)
    return text


def test_chat_example_broadcasts_through_portico(tmp_path, chat_backend, start_portico):
    import websockets

    port = lib.free_port()
    p = start_portico(example_conf(tmp_path, port, chat_backend), [port])
    url = "ws://127.0.0.1:%d/chat?name=%%s" % port

    async def recv_until(ws, text):
        seen = []
        while True:
            msg = await asyncio.wait_for(ws.recv(), 5)
            seen.append(msg)
            if msg == text:
                return seen

    async def run():
        a = await websockets.connect(url % "ann", open_timeout=5)
        b = await websockets.connect(url % "bob", open_timeout=5)
        c = await websockets.connect(url % "cy", open_timeout=5)
        # everyone sees cy join, then ann's line
        for ws in (a, b, c):
            await recv_until(ws, "* cy joined")
        await a.send("hello room")
        for ws in (a, b, c):
            await recv_until(ws, "ann: hello room")
        await b.send("hi ann")
        for ws in (a, b, c):
            await recv_until(ws, "bob: hi ann")
        await c.close()
        for ws in (a, b):
            await recv_until(ws, "* cy left")
        await a.close()
        await b.close()

    asyncio.run(run())
    # three tunnels, each logged once when it closed, with status 101
    lib.wait_until(lambda: p.read(p.access_log).count('"GET /chat?name=') == 3, 5,
                   what="three access log lines")
    assert p.read(p.access_log).count('HTTP/1.1" 101 ') == 3
    # the page at / says where to connect
    assert lib.curl(p.url("/")).body.startswith(b"chat: ws://")
