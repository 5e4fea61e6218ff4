#!/usr/bin/python3
"""WebSocket test backend for portico's tests (Debian python3-websockets, asyncio).

What it does, by request path (what a test checks through the proxy):
  /echo            echoes every message (text stays text, binary stays binary)
  /push?n=N&ms=T   sends N text messages "push i", one every T ms, reading nothing
  /close?code=C    closes at once with code C (reason "bye")
  /proto           echoes; accepts the subprotocol "chat.v2" when offered
  /count           answers each message with the number of messages received so far
  /http-200        answers the upgrade with a plain HTTP 200 "no websocket" (not a 101)
It accepts permessage-deflate when offered (websockets' default), so negotiation passes
through the proxy. With --tls-cert and --tls-key it speaks TLS (wss://, a backend for
`tls on` upstreams). The first line on stdout is "READY <port>"; stats at GET /stats over plain
HTTP: {"connections", "open", "messages", "closes": [codes seen from clients]}.
"""

import argparse
import asyncio
import http
import json
import ssl
import sys
import urllib.parse

import websockets
import websockets.server

STATS = {"connections": 0, "open": 0, "messages": 0, "closes": []}


async def handler(ws, path):
    STATS["connections"] += 1
    STATS["open"] += 1
    u = urllib.parse.urlsplit(path)
    q = urllib.parse.parse_qs(u.query)
    try:
        if u.path == "/push":
            n = int(q.get("n", ["10"])[0])
            ms = int(q.get("ms", ["100"])[0])
            for i in range(n):
                await ws.send("push %d" % i)
                await asyncio.sleep(ms / 1000.0)
            await ws.close(1000, "done")
            return
        if u.path == "/close":
            await ws.close(int(q.get("code", ["1000"])[0]), "bye")
            return
        count = 0
        async for msg in ws:
            STATS["messages"] += 1
            count += 1
            if u.path == "/count":
                await ws.send(str(count))
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    finally:
        STATS["open"] -= 1
        if ws.close_code is not None:
            STATS["closes"].append(ws.close_code)


async def process_request(path, headers):
    if path == "/stats":
        return http.HTTPStatus.OK, [("Content-Type", "application/json")], \
            json.dumps(STATS).encode()
    if path.startswith("/http-200"):
        return http.HTTPStatus.OK, [("Content-Type", "text/plain")], b"no websocket\n"
    return None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    ctx = None
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
    server = await websockets.server.serve(
        handler, a.host, a.port, process_request=process_request,
        subprotocols=["chat.v2"], max_size=64 * 1024 * 1024, ping_interval=None,
        backlog=4096, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("READY %s %d\n" % (a.host, port))
    sys.stdout.flush()
    await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
