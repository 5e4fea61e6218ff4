#!/usr/bin/python3
"""The chat backend of etc/examples/websocket-chat.conf: every text message a client sends is
broadcast, prefixed with the sender's name, to every client connected to this process.
Standard library plus Debian's python3-websockets.

    /usr/bin/python3 etc/examples/websocket-chat-backend.py --port 9001

A client may name itself by connecting to /chat?name=NAME; otherwise it is "guest-N".
Prints "READY <port>" when it listens."""

import argparse
import asyncio
import itertools
import sys
import urllib.parse

import websockets

clients = set()
guests = itertools.count(1)


async def handler(ws, path):
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    name = (query.get("name") or ["guest-%d" % next(guests)])[0][:32]
    clients.add(ws)
    websockets.broadcast(clients, "* %s joined" % name)
    try:
        async for msg in ws:
            if isinstance(msg, str):
                websockets.broadcast(clients, "%s: %s" % (name, msg))
    finally:
        clients.discard(ws)
        websockets.broadcast(clients, "* %s left" % name)


async def main(host, port):
    async with websockets.serve(handler, host, port, max_size=64 * 1024) as server:
        port = server.sockets[0].getsockname()[1]
        print("READY %d" % port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    a = ap.parse_args()
    try:
        asyncio.run(main(a.host, a.port))
    except KeyboardInterrupt:
        sys.exit(0)
