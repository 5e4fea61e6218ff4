#!/usr/bin/python3
"""Test HTTP/1.1 backend for portico's integration tests (stdlib only).

What it checks and shows (so a test can assert on it through the proxy):
  * every request is parsed strictly enough to notice bad framing from the
    proxy: the request line, headers, Content-Length or chunked body (chunk
    sizes, CRLFs, trailers).  A framing error is answered 400 and logged on
    stderr, so a proxy that re-frames bodies wrongly fails the test;
  * the received body is hashed (sha256) and counted, and the hash is
    returned, so tests compare what the client sent with what arrived;
  * every response carries X-Backend (the --name), X-Conn-Id (the number of
    the TCP connection it arrived on) and X-Conn-Request (its index on that
    connection), so load balancing and connection reuse are visible;
  * hop-by-hop request headers that should never reach a backend are listed
    in X-Seen-Hop (connection, keep-alive, te, trailer, upgrade,
    proxy-connection, transfer-encoding is reported separately, expect).

Behaviour is chosen by the request path (the query string is ignored):
  /  /name         body NAME
  /echo            body echoed back (buffered, at most 64 MiB), Content-Length,
                   X-Body-Sha256, X-Body-Length, X-Request-Framing
  /upload...       body streamed and hashed, not stored; JSON answer
                   {"length", "sha256", "framing"} + the same X- headers
  /slow-read/MS[/KIB]  takes the body KIB (64) KiB at a time with MS ms between pieces
                   (a backend slower than its client), then JSON {"length"}
  /headers         JSON {"method", "target", "version", "headers": [[n, v]..]}
  /bytes/N         N deterministic bytes (pattern_iter), Content-Length,
                   X-Body-Sha256; streamed, never built in memory
  /chunked/N       same bytes, Transfer-Encoding: chunked, odd chunk sizes
  /close/N         same bytes, close-delimited (no CL, no TE, Connection: close)
  /status/CODE     that status; 204 and 304 with no body, others short text
  /slow/MS         sleeps MS milliseconds, then answers "slow"
  /slow-body/MS    sends the head at once, the 4-byte body after MS ms
  /hang            reads the request and never answers (until the peer closes)
  /no-read         reads the request head only, never the body, never answers
                   (closes after 20 s): a proxy writing the body must time out
  /reset           reads the request and resets the connection (RST)
  /garbage         answers with an invalid status line
  /early-hints     sends "103 Early Hints" (Link header) before the 200
  /hop-response    a 200 carrying hop-by-hop headers the proxy must remove
  /continue        an unsolicited "100 Continue", then the 200 (never to be forwarded)
  /truncated/N     announces Content-Length N, sends N/2 bytes, closes
  /cl-te           a response with both Content-Length and chunked (ambiguous)
  /big-header/N    a 200 with an X-Big response header of N bytes
  /overflow        Content-Length 5 but more bytes follow (a fake second response
                   "X-Backend: injected"); the connection stays open: a proxy
                   that pools it would serve the junk to the next request
  /dup-cl          a response with two different Content-Length values
  /no-reason       "HTTP/1.1 200" with no reason phrase (valid)
  /close-after     answers with Content-Length, then closes without saying so
  /stats           JSON {"connections", "accepted", "requests", "active", "open"}:
                   connections = TCP connections accepted, not counting those
                   whose first request was /stats; open = those of them still
                   open now; requests = requests served (not /stats);
                   accepted/active = all connections, /stats ones included
HEAD is answered with the GET headers and no body.

Modes (command line), for the pooling/retry tests:
  --close-after-each   close every connection after its first response,
                       without a Connection: close header (the proxy's pooled
                       connection dies while idle)
  --drop-reused        the 2nd and later requests on a connection are read and
                       the connection is closed with no response byte (what a
                       retry on a fresh connection must hide)

Start: /usr/bin/python3 tests/tools/backend.py --port P [--name NAME] [--host H]
Prints one line "READY <name> <host> <port>" on stdout when listening
(--port 0 picks a free port, read it from that line).
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

BLOCK = 65536
_BASE = bytes(((i * 131) + (i >> 8) * 7 + 17) & 0xFF for i in range(BLOCK))
_sha_cache = {}
_sha_lock = threading.Lock()


def pattern_block(k):
    """Block k of the deterministic stream: its index, then a fixed pattern."""
    return struct.pack(">Q", k) + _BASE[8:]


def pattern_iter(n):
    """Yield the first n bytes of the deterministic stream, block by block."""
    k = 0
    left = n
    while left > 0:
        b = pattern_block(k)
        if left < BLOCK:
            b = b[:left]
        yield b
        left -= len(b)
        k += 1


def pattern_sha256(n):
    with _sha_lock:
        if n in _sha_cache:
            return _sha_cache[n]
    h = hashlib.sha256()
    for b in pattern_iter(n):
        h.update(b)
    d = h.hexdigest()
    with _sha_lock:
        _sha_cache[n] = d
    return d


# Chunk sizes for /chunked/N: small, odd, and large ones mixed.
CHUNK_SIZES = (1, 7, 4096, 65536, 300, 16387, 2, 32768, 999, 65536, 65536)

HOP = ("connection", "keep-alive", "te", "trailer", "upgrade",
       "proxy-connection", "expect")

REASONS = {100: "Continue", 103: "Early Hints", 200: "OK", 201: "Created",
           204: "No Content", 301: "Moved Permanently", 302: "Found",
           304: "Not Modified", 400: "Bad Request", 404: "Not Found",
           413: "Payload Too Large", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = 0
        self.connections = 0
        self.requests = 0
        self.active = 0
        self.open = 0


class BadRequest(Exception):
    pass


class PeerClosed(Exception):
    pass


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise PeerClosed()
        self.buf += d

    def read_until(self, sep, limit):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise BadRequest("line or head too long")
            start = max(0, len(self.buf) - len(sep) + 1)
            self.fill()

    def read_some(self, maxn):
        if not self.buf:
            self.fill()
        n = min(maxn, len(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class Request:
    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (name, value) as received

    def get(self, name):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def get_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]


def parse_head(raw):
    try:
        text = raw.decode("latin-1")
    except Exception:
        raise BadRequest("undecodable head")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line %r" % lines[0])
    headers = []
    for line in lines[1:]:
        if line == "":
            continue
        if line[0] in " \t":
            raise BadRequest("obs-fold from proxy")
        if ":" not in line:
            raise BadRequest("header without colon %r" % line)
        n, v = line.split(":", 1)
        if n != n.strip() or not n:
            raise BadRequest("bad header name %r" % n)
        headers.append((n, v.strip(" \t")))
    return Request(parts[0], parts[1], parts[2], headers)


def body_framing(req):
    te = req.get_all("transfer-encoding")
    cl = req.get_all("content-length")
    if te and cl:
        raise BadRequest("both Transfer-Encoding and Content-Length from proxy")
    if te:
        codings = ",".join(te).lower().replace(" ", "").split(",")
        if codings[-1] != "chunked":
            raise BadRequest("transfer-encoding without final chunked")
        return "chunked", None
    if cl:
        if len(cl) > 1 or not cl[0].isdigit():
            raise BadRequest("bad content-length %r" % cl)
        return "length", int(cl[0])
    return "none", 0


def body_iter(rd, req, most=262144):
    framing, n = body_framing(req)
    if framing == "length":
        left = n
        while left > 0:
            d = rd.read_some(min(left, most))
            left -= len(d)
            yield d
    elif framing == "chunked":
        while True:
            line = rd.read_until(b"\r\n", 4096)[:-2]
            size_s = line.split(b";", 1)[0].strip()
            try:
                if not size_s or any(c not in b"0123456789abcdefABCDEF" for c in size_s):
                    raise ValueError
                size = int(size_s, 16)
            except ValueError:
                raise BadRequest("bad chunk size %r" % line)
            if size == 0:
                while True:  # trailers
                    t = rd.read_until(b"\r\n", 16384)
                    if t == b"\r\n":
                        return
            left = size
            while left > 0:
                d = rd.read_some(min(left, most))
                left -= len(d)
                yield d
            if rd.read_exact(2) != b"\r\n":
                raise BadRequest("chunk data not followed by CRLF")


class Handler:
    def __init__(self, server, sock, conn_id):
        self.srv = server
        self.sock = sock
        self.rd = Reader(sock)
        self.conn_id = conn_id
        self.nreq = 0
        self.counted = False
        self.proxied = False

    # -- writing ---------------------------------------------------------
    def head(self, req, status, headers, keep):
        reason = REASONS.get(status, "Status")
        out = ["HTTP/1.1 %d %s" % (status, reason),
               "X-Backend: %s" % self.srv.name,
               "X-Conn-Id: %d" % self.conn_id,
               "X-Conn-Request: %d" % self.nreq]
        if req is not None:
            seen = [n.lower() for n, _ in req.headers if n.lower() in HOP]
            if seen:
                out.append("X-Seen-Hop: %s" % ",".join(seen))
        for n, v in headers:
            out.append("%s: %s" % (n, v))
        if not keep:
            out.append("Connection: close")
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")

    def simple(self, req, status, body, keep, ctype="text/plain", extra=()):
        hdrs = [("Content-Type", ctype)]
        if status not in (204, 304) and not (100 <= status < 200):
            hdrs.append(("Content-Length", str(len(body))))
        else:
            body = b""
        hdrs.extend(extra)
        data = self.head(req, status, hdrs, keep)
        if req is None or req.method != "HEAD":
            data += body
        self.sock.sendall(data)

    # -- main loop -------------------------------------------------------
    def run(self):
        try:
            while True:
                try:
                    raw = self.rd.read_until(b"\r\n\r\n", 65536)
                except PeerClosed:
                    return
                self.nreq += 1
                req = parse_head(raw)
                path = req.target.split("?", 1)[0]
                if not self.counted:
                    self.counted = True
                    if path != "/stats":
                        self.proxied = True
                        with self.srv.stats.lock:
                            self.srv.stats.connections += 1
                            self.srv.stats.open += 1
                if path != "/stats":
                    with self.srv.stats.lock:
                        self.srv.stats.requests += 1
                if self.srv.drop_reused and self.nreq > 1:
                    self.drain(req)
                    return
                conn_hdr = (req.get("connection") or "").lower()
                if req.version == "HTTP/1.0":
                    keep = "keep-alive" in conn_hdr
                else:
                    keep = "close" not in conn_hdr
                if self.srv.close_after_each:
                    keep_announced = keep
                    keep = False
                else:
                    keep_announced = keep
                ok = self.dispatch(req, path, keep_announced)
                if not ok or not keep:
                    return
        except BadRequest as e:
            sys.stderr.write("backend %s: bad request: %s\n" % (self.srv.name, e))
            try:
                self.simple(None, 400, b"backend: bad request\n", False)
            except OSError:
                pass
        except (PeerClosed, OSError):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            if self.proxied:
                with self.srv.stats.lock:
                    self.srv.stats.open -= 1

    def drain(self, req):
        for _ in body_iter(self.rd, req):
            pass

    def dispatch(self, req, path, keep):
        """Answer one request; return False if the connection must close."""
        m = req.method
        parts = path.strip("/").split("/")
        p0 = parts[0] if parts else ""
        arg = parts[1] if len(parts) > 1 else ""

        if p0 in ("", "name"):
            self.drain(req)
            self.simple(req, 200, self.srv.name.encode(), keep)
        elif p0 == "echo":
            framing, _ = body_framing(req)
            data = bytearray()
            for d in body_iter(self.rd, req):
                data += d
                if len(data) > 64 * 1024 * 1024:
                    raise BadRequest("echo body over 64 MiB")
            data = bytes(data)
            self.simple(req, 200, data, keep,
                        ctype=req.get("content-type") or "application/octet-stream",
                        extra=[("X-Body-Sha256", hashlib.sha256(data).hexdigest()),
                               ("X-Body-Length", str(len(data))),
                               ("X-Request-Framing", framing)])
        elif p0.startswith("upload"):
            framing, _ = body_framing(req)
            h = hashlib.sha256()
            n = 0
            for d in body_iter(self.rd, req):
                h.update(d)
                n += len(d)
            body = json.dumps({"length": n, "sha256": h.hexdigest(),
                               "framing": framing}).encode()
            self.simple(req, 200, body, keep, ctype="application/json",
                        extra=[("X-Body-Sha256", h.hexdigest()),
                               ("X-Body-Length", str(n)),
                               ("X-Request-Framing", framing)])
        elif p0 == "slow-read":
            # a backend slower than its client: takes KIB KiB of the body, then waits MS ms
            ms = int(arg or "1000")
            size = int(parts[2]) * 1024 if len(parts) > 2 and parts[2] else 65536
            n = piece = 0
            for d in body_iter(self.rd, req, size):
                n += len(d)
                piece += len(d)
                if piece >= size:
                    piece = 0
                    time.sleep(ms / 1000.0)
            self.simple(req, 200, json.dumps({"length": n}).encode(), keep,
                        ctype="application/json")
        elif p0 == "headers":
            self.drain(req)
            body = json.dumps({"method": req.method, "target": req.target,
                               "version": req.version,
                               "headers": [[n, v] for n, v in req.headers]}).encode()
            self.simple(req, 200, body, keep, ctype="application/json")
        elif p0 in ("bytes", "chunked", "close"):
            self.drain(req)
            n = int(arg or "0")
            return self.send_bytes(req, p0, n, keep)
        elif p0 == "status":
            self.drain(req)
            code = int(arg or "200")
            self.simple(req, code, ("status %d\n" % code).encode(), keep)
        elif p0 == "slow":
            self.drain(req)
            time.sleep(int(arg or "1000") / 1000.0)
            self.simple(req, 200, b"slow", keep)
        elif p0 == "slow-body":
            self.drain(req)
            self.sock.sendall(self.head(req, 200, [("Content-Length", "4")], keep))
            time.sleep(int(arg or "1000") / 1000.0)
            if m != "HEAD":
                self.sock.sendall(b"slow")
        elif p0 == "hang":
            self.drain(req)
            self.sock.settimeout(120)
            try:
                while self.sock.recv(65536):
                    pass
            except OSError:
                pass
            return False
        elif p0 == "no-read":
            time.sleep(20)
            return False
        elif p0 == "reset":
            self.drain(req)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
            return False
        elif p0 == "garbage":
            self.drain(req)
            self.sock.sendall(b"HTTP/1.1 2x0 Nonsense\r\nContent-Length: 2\r\n\r\nhi")
            return False
        elif p0 == "early-hints":
            self.drain(req)
            self.sock.sendall(b"HTTP/1.1 103 Early Hints\r\n"
                              b"Link: </style.css>; rel=preload; as=style\r\n\r\n")
            time.sleep(0.05)
            self.simple(req, 200, b"after hints", keep)
        elif p0 == "hop-response":
            self.drain(req)
            self.simple(req, 200, b"hop", keep,
                        extra=[("Connection", "X-Secret, keep-alive" if keep
                                else "X-Secret"),
                               ("X-Secret", "must-be-removed"),
                               ("Keep-Alive", "timeout=5, max=100"),
                               ("Upgrade", "foo/1"),
                               ("Proxy-Connection", "keep-alive"),
                               ("X-Kept", "yes")])
        elif p0 == "continue":
            self.drain(req)
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            time.sleep(0.05)
            self.simple(req, 200, b"after continue", keep)
        elif p0 == "truncated":
            self.drain(req)
            n = int(arg or "1000")
            self.sock.sendall(self.head(req, 200, [("Content-Length", str(n))], True))
            if m != "HEAD":
                self.sock.sendall(b"".join(pattern_iter(n // 2)))
            self.sock.shutdown(socket.SHUT_RDWR)
            return False
        elif p0 == "cl-te":
            self.drain(req)
            self.sock.sendall(self.head(req, 200, [("Content-Length", "5"),
                                                   ("Transfer-Encoding", "chunked")], keep)
                              + b"3\r\nabc\r\n0\r\n\r\n")
        elif p0 == "overflow":
            self.drain(req)
            self.sock.sendall(self.head(req, 200, [("Content-Length", "5")], True) +
                              b"hello" + b"HTTP/1.1 200 OK\r\nX-Backend: injected\r\n"
                              b"Content-Length: 8\r\n\r\ninjected")
        elif p0 == "dup-cl":
            self.drain(req)
            self.sock.sendall(self.head(req, 200, [("Content-Length", "3"),
                                                   ("Content-Length", "5")], keep) + b"abcde")
        elif p0 == "no-reason":
            self.drain(req)
            self.sock.sendall(b"HTTP/1.1 200\r\nX-Backend: %s\r\nContent-Length: 2\r\n\r\nok"
                              % self.srv.name.encode())
        elif p0 == "big-header":
            self.drain(req)
            self.simple(req, 200, b"big", keep, extra=[("X-Big", "h" * int(arg or "100"))])
        elif p0 == "close-after":
            self.drain(req)
            self.simple(req, 200, b"closing", True)
            return False
        elif p0 == "stats":
            self.drain(req)
            s = self.srv.stats
            with s.lock:
                body = json.dumps({"connections": s.connections,
                                   "accepted": s.accepted,
                                   "requests": s.requests,
                                   "active": s.active,
                                   "open": s.open}).encode()
            self.simple(req, 200, body, keep, ctype="application/json")
        else:
            self.drain(req)
            self.simple(req, 404, b"backend: no such path\n", keep)
        return True

    def send_bytes(self, req, kind, n, keep):
        sha = pattern_sha256(n)
        head_only = req.method == "HEAD"
        if kind == "bytes":
            self.sock.sendall(self.head(req, 200, [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(n)), ("X-Body-Sha256", sha)], keep))
            if not head_only:
                for b in pattern_iter(n):
                    self.sock.sendall(b)
            return True
        if kind == "close" or req.version == "HTTP/1.0":
            self.sock.sendall(self.head(req, 200, [
                ("Content-Type", "application/octet-stream"),
                ("X-Body-Sha256", sha)], False))
            if not head_only:
                for b in pattern_iter(n):
                    self.sock.sendall(b)
            self.sock.shutdown(socket.SHUT_WR)
            return False
        # chunked
        self.sock.sendall(self.head(req, 200, [
            ("Content-Type", "application/octet-stream"),
            ("Transfer-Encoding", "chunked"), ("X-Body-Sha256", sha)], keep))
        if head_only:
            return True
        si = 0
        out = []
        outlen = 0
        for b in pattern_iter(n):
            mv = memoryview(b)
            while len(mv):
                sz = min(CHUNK_SIZES[si % len(CHUNK_SIZES)], len(mv))
                si += 1
                out.append(b"%x\r\n" % sz)
                out.append(mv[:sz])
                out.append(b"\r\n")
                outlen += sz
                mv = mv[sz:]
            if outlen >= 262144:
                self.sock.sendall(b"".join(out))
                out = []
                outlen = 0
        out.append(b"0\r\n\r\n")
        self.sock.sendall(b"".join(out))
        return True


class Server:
    def __init__(self, args):
        self.name = args.name
        self.close_after_each = args.close_after_each
        self.drop_reused = args.drop_reused
        self.stats = Stats()
        fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((args.host, args.port))
        self.lsock.listen(1024)
        self.host = args.host
        self.port = self.lsock.getsockname()[1]

    def serve(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                continue
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.stats.lock:
                self.stats.accepted += 1
                self.stats.active += 1
                cid = self.stats.accepted
            t = threading.Thread(target=self.conn_thread, args=(s, cid), daemon=True)
            t.start()

    def conn_thread(self, s, cid):
        try:
            Handler(self, s, cid).run()
        finally:
            with self.stats.lock:
                self.stats.active -= 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="backend")
    ap.add_argument("--close-after-each", action="store_true")
    ap.add_argument("--drop-reused", action="store_true")
    args = ap.parse_args()
    threading.stack_size(512 * 1024)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    signal.signal(signal.SIGINT, lambda *a: os._exit(0))
    srv = Server(args)
    sys.stdout.write("READY %s %s %d\n" % (srv.name, srv.host, srv.port))
    sys.stdout.flush()
    srv.serve()


if __name__ == "__main__":
    main()
