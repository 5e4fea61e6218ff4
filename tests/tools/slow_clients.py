#!/usr/bin/python3
"""Many slow clients at once, in one thread (selectors), for the slow-rate tests.

Each client is one TCP connection to portico doing one slow thing, and records when portico
cut it and how:

  h1_head       sends a request head one byte per `interval` (from its first byte)
  h1_body       sends a whole head (POST /upload, Content-Length 1 MB), then the body one byte
                per `interval`
  h1_read       SO_RCVBUF 4 KiB, GET /bytes/N, then reads `read_bytes` per `interval`
  h2_head       h2c (prior knowledge): the 9-byte header of a HEADERS frame, then its header
                block one byte per `interval`
  h2_body       h2c: HEADERS (POST /upload, no END_STREAM), then DATA frames of one byte per
                `interval`; every frame from portico is read at once
  h2_read       h2c: SETTINGS_INITIAL_WINDOW_SIZE 1024 and a large connection window, GET
                /bytes/N, then a stream WINDOW_UPDATE of `read_bytes` per `interval` (the socket
                is read at once: only the stream's window is slow)
  h2_conn_read  h2c: large windows, SO_RCVBUF 4 KiB, GET /bytes/N, then reads `read_bytes` of
                the socket per `interval` (the whole connection is slow)

How a cut shows (`Result.how`):
  "408"         an HTTP/1.1 408 response, or an h2 HEADERS with :status 408 on the stream
  "rst_stream"  RST_STREAM on the stream (its code in `Result.detail`)
  "reset"       the TCP connection was reset (checked with TCP_INFO, so a slow reader notices at
                once, without reading what is still buffered)
  "eof"         the connection was closed
  None          not cut before the run ended

Result.phase is when the slow part began (first head byte, end of the head, request sent), on
time.monotonic(); Result.cut when the cut was seen; Result.elapsed their difference.

Used as a module (run(kinds, port, ...)) by tests/integration/faults/; as a command for trying
by hand: slow_clients.py PORT KIND=N [KIND=N...] [--interval S] [--duration S].
"""

import argparse
import errno
import heapq
import json
import selectors
import socket
import struct
import sys
import time

from h2_attacks import (DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, PREFACE,
                        RST_STREAM, SETTINGS, ACK, ERRORS, frame, parse_frames,
                        request_block, settings, window_update)

TCP_ESTABLISHED = 1
KINDS = ("h1_head", "h1_body", "h1_read", "h2_head", "h2_body", "h2_read", "h2_conn_read")


class Result:
    def __init__(self, kind, n):
        self.kind = kind
        self.n = n
        self.phase = None
        self.cut = None
        self.how = None
        self.detail = None
        self.sent = 0
        self.received = 0
        self.first = None  # when the first byte from portico came
        self.error = None

    @property
    def elapsed(self):
        if self.phase is None or self.cut is None:
            return None
        return self.cut - self.phase

    def as_dict(self):
        return {"kind": self.kind, "n": self.n, "how": self.how, "detail": self.detail,
                "elapsed": self.elapsed, "sent": self.sent, "received": self.received,
                "error": self.error}

    def __repr__(self):
        return "<%s #%d how=%r detail=%r elapsed=%s sent=%d received=%d error=%r>" % (
            self.kind, self.n, self.how, self.detail,
            "%.2f" % self.elapsed if self.elapsed is not None else None, self.sent,
            self.received, self.error)


class Client:
    def __init__(self, kind, n, host, port, interval, read_bytes, size):
        self.r = Result(kind, n)
        self.kind = kind
        self.interval = interval
        self.read_bytes = read_bytes
        self.size = size
        self.inbuf = bytearray()
        self.decoder = None
        self.done = False
        self.pending = b""       # the slow part, sent a byte at a time
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if kind in ("h1_read", "h2_conn_read"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s

    # -- start: what goes at once; returns the first wake-up delay ----------------------
    def start(self):
        k = self.kind
        now = time.monotonic()
        if k == "h1_head":
            self.pending = (b"GET /name HTTP/1.1\r\nHost: slow\r\nX-Pad: " + b"a" * 100000)
            return 0.0  # the phase starts with the first byte, at the first tick
        if k == "h1_body":
            self._send(b"POST /upload HTTP/1.1\r\nHost: slow\r\nContent-Length: 1000000\r\n\r\n")
            self.pending = b"x" * 1000000
            self.r.phase = now
            return self.interval
        if k == "h1_read":
            self._send(b"GET /bytes/%d HTTP/1.1\r\nHost: slow\r\n\r\n" % self.size)
            self.r.phase = now
            return self.interval
        # HTTP/2, cleartext with prior knowledge
        if k == "h2_head":
            self._send(PREFACE + settings())
            block = request_block("/name", "slow", extra=[("x-pad", "a" * 8000)])
            hdr = struct.pack(">BHBBI", (len(block) >> 16) & 0xFF, len(block) & 0xFFFF,
                              HEADERS, END_STREAM | END_HEADERS, 1)
            self._send(hdr)
            self.pending = block
            self.r.phase = now
            return self.interval
        if k == "h2_body":
            self._send(PREFACE + settings() + frame(
                HEADERS, END_HEADERS, 1, request_block("/upload", "slow", method="POST")))
            self.r.phase = now
            self.pending = b"x" * 1000000
            return self.interval
        if k == "h2_read":
            self._send(PREFACE + settings([(4, 1024)]) + window_update(0, 1 << 30) +
                       frame(HEADERS, END_HEADERS | END_STREAM, 1,
                             request_block("/bytes/%d" % self.size, "slow")))
            self.r.phase = now
            return self.interval
        if k == "h2_conn_read":
            self._send(PREFACE + settings([(4, (1 << 31) - 1)]) + window_update(0, 1 << 30) +
                       frame(HEADERS, END_HEADERS | END_STREAM, 1,
                             request_block("/bytes/%d" % self.size, "slow")))
            self.r.phase = now
            return self.interval
        raise ValueError(k)

    # -- each tick: one slow step; returns the next delay or None when finished -------------
    def tick(self):
        if self.done:
            return None
        if self.kind not in ("h1_read", "h2_conn_read"):
            self.readable()  # an answer that came with a FIN is read before the FIN is seen
        if self.done or self._tcp_gone():
            return None
        k = self.kind
        if k in ("h1_head", "h1_body"):
            if self.r.phase is None:
                self.r.phase = time.monotonic()
            if self.pending:
                self._send(self.pending[:1])
                self.pending = self.pending[1:]
        elif k == "h2_head":
            if self.pending:
                self._send(self.pending[:1])
                self.pending = self.pending[1:]
        elif k == "h2_body":
            self._send(frame(DATA, 0, 1, b"x"))
        elif k == "h2_read":
            self._send(window_update(1, self.read_bytes))
        elif k in ("h1_read", "h2_conn_read"):
            self._read(self.read_bytes)
        return None if self.done else self.interval

    # -- readable: everything but the slow readers read what comes at once ------------------
    def readable(self):
        if self.done:
            return
        if self.kind in ("h1_read", "h2_conn_read"):
            return  # they read at their own pace, in tick()
        self._read(262144)

    def _read(self, n):
        try:
            self.sock.setblocking(False)
            d = self.sock.recv(n)
        except BlockingIOError:
            return
        except OSError as e:
            self._cut("reset" if e.errno == errno.ECONNRESET else "eof", repr(e))
            return
        if not d:
            self._cut("eof")
            return
        self.r.received += len(d)
        if self.r.first is None:
            self.r.first = time.monotonic()
        if self.kind in ("h1_read", "h2_conn_read"):
            self._tcp_gone()
            return
        if self.kind.startswith("h1"):
            self.inbuf += d
            if b"\r\n\r\n" in self.inbuf:
                line = bytes(self.inbuf.split(b"\r\n", 1)[0])
                parts = line.split(b" ")
                st = parts[1].decode() if len(parts) > 1 else "?"
                self._cut("408" if st == "408" else "status " + st, line.decode("latin-1"))
            return
        self.inbuf += d
        for t, fl, sid, payload in parse_frames(self.inbuf):
            # (h2_head is in the middle of a frame: nothing else may go out)
            if t == SETTINGS and not fl & ACK and self.kind != "h2_head":
                self._send(settings(ack=True))
            elif t == PING and not fl & ACK and self.kind != "h2_head":
                self._send(frame(PING, ACK, 0, payload))
            elif t == RST_STREAM and sid == 1:
                self._cut("rst_stream", ERRORS.get(struct.unpack(">I", payload[:4])[0]))
                return
            elif t == GOAWAY:
                code = struct.unpack(">II", payload[:8])[1] if len(payload) >= 8 else None
                self._cut("eof", "GOAWAY %s" % ERRORS.get(code, code))
                return
            elif t == HEADERS and sid == 1:
                status = self._status(payload, fl)
                if self.kind == "h2_read" and status == 200:
                    continue  # the response it reads slowly
                self._cut("408" if status == 408 else "status %s" % status)
                return

    def _status(self, payload, fl):
        import hpack
        if self.decoder is None:
            self.decoder = hpack.Decoder()
        for n, v in self.decoder.decode(payload):
            if n in (":status", b":status"):
                return int(v)
        return None

    def _send(self, data):
        if self.done:
            return
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(5)
            self.sock.sendall(data)
            self.r.sent += len(data)
        except socket.timeout:
            self.r.error = "send timed out"
        except OSError as e:
            if not self._tcp_gone():
                self._cut("reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "eof",
                          repr(e))

    def _tcp_gone(self):
        """The kernel's view: a reset or a FIN from portico shows here before the reader
        has drained its buffer."""
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return False
        state = info[0]
        if state == TCP_ESTABLISHED:
            return False
        if self.kind not in ("h1_read", "h2_conn_read"):
            self._read(262144)  # the answer that came with the FIN, if any
            if self.done:
                return True
        self._cut("reset" if state == 7 else "eof", "tcp state %d" % state)
        return True

    def _cut(self, how, detail=None):
        if self.done:
            return
        self.done = True
        self.r.cut = time.monotonic()
        self.r.how = how
        self.r.detail = detail

    closed = False

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def run(kinds, port, host="127.0.0.1", interval=1.0, read_bytes=512, size=64 << 20,
        duration=30.0, stop=None, ramp=0.0):
    """Starts the clients (kinds: [(kind, count)]) and runs until every one is cut, `duration`
    seconds pass, or stop() returns true. Returns the list of Results."""
    clients = []
    sel = selectors.DefaultSelector()
    timers = []
    seq = 0
    for kind, count in kinds:
        for i in range(count):
            c = Client(kind, i, host, port, interval, read_bytes, size)
            clients.append(c)
    t_end = time.monotonic() + duration
    for i, c in enumerate(clients):
        delay = c.start()
        c.sock.setblocking(False)
        if c.kind not in ("h1_read", "h2_conn_read"):  # those read at their pace, in tick()
            sel.register(c.sock, selectors.EVENT_READ, c)
        # spread the ticks over one interval, so the clients do not all act at once
        first = time.monotonic() + delay + (interval * i / max(1, len(clients)))
        heapq.heappush(timers, (first, seq, c))
        seq += 1
        if ramp:
            time.sleep(ramp)
    try:
        while time.monotonic() < t_end:
            if all(c.done for c in clients):
                break
            if stop is not None and stop():
                break
            now = time.monotonic()
            wait = max(0.0, min(0.1, (timers[0][0] - now) if timers else 0.1))
            for key, _ in sel.select(wait):
                key.data.readable()
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                _, _, c = heapq.heappop(timers)
                nxt = c.tick()
                if nxt is not None:
                    heapq.heappush(timers, (now + nxt, seq, c))
                    seq += 1
            for c in clients:
                if c.done and not c.closed:
                    try:
                        sel.unregister(c.sock)
                    except (KeyError, ValueError):
                        pass
                    c.close()
    finally:
        for c in clients:
            c.close()
        sel.close()
    return [c.r for c in clients]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("kinds", nargs="+", help="KIND=N, KIND one of %s" % ", ".join(KINDS))
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--read-bytes", type=int, default=512)
    ap.add_argument("--duration", type=float, default=30.0)
    a = ap.parse_args()
    kinds = []
    for k in a.kinds:
        name, _, n = k.partition("=")
        kinds.append((name, int(n or 1)))
    res = run(kinds, a.port, interval=a.interval, read_bytes=a.read_bytes, duration=a.duration)
    json.dump([r.as_dict() for r in res], sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
