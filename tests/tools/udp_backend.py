#!/usr/bin/python3
"""A UDP backend for the stream tests: answers each datagram from the address it came from.

  udp_backend.py --port 0 [--host 127.0.0.1] [--name NAME] [--mode echo|name|silent|twice]

echo    sends the datagram back
name    sends back NAME:datagram (which server answered)
silent  answers nothing (counts only)
twice   sends the datagram back twice

Prints "READY <host> <port>" on stdout once bound. Each datagram it receives is counted; on
SIGUSR1 it writes "count N peers P" (datagrams, distinct source addresses) to stderr. Stops on
SIGTERM.
"""

import argparse
import select
import signal
import socket
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default="udp")
    ap.add_argument("--mode", default="echo", choices=["echo", "name", "silent", "twice"])
    a = ap.parse_args()

    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.bind((a.host, a.port))
    s.setblocking(False)
    state = {"count": 0, "peers": set(), "stop": False}

    def report(signum, frame):
        sys.stderr.write("count %d peers %d\n" % (state["count"], len(state["peers"])))
        sys.stderr.flush()

    def stop(signum, frame):
        state["stop"] = True

    signal.signal(signal.SIGUSR1, report)
    signal.signal(signal.SIGTERM, stop)
    print("READY %s %d" % (a.host, s.getsockname()[1]), flush=True)
    prefix = (a.name + ":").encode()
    while not state["stop"]:
        try:
            r, _, _ = select.select([s], [], [], 0.2)
        except InterruptedError:
            continue
        if not r:
            continue
        for _ in range(256):
            try:
                data, peer = s.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            state["count"] += 1
            state["peers"].add(peer)
            try:
                if a.mode == "echo":
                    s.sendto(data, peer)
                elif a.mode == "name":
                    s.sendto(prefix + data, peer)
                elif a.mode == "twice":
                    s.sendto(data, peer)
                    s.sendto(data, peer)
            except OSError:
                pass
    report(0, None)


if __name__ == "__main__":
    main()
