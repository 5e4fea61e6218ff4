#!/usr/bin/python3
"""A server that expects a PROXY protocol header (v1 or v2) at the start of every connection
and says what it got (stdlib only), for portico's tests of `proxy_protocol v1|v2` to servers.

Every connection: the header is read strictly (v1: "PROXY TCP4|TCP6|UNKNOWN ...\\r\\n" of at most
107 bytes; v2: the 12-byte signature, version 2, LOCAL or PROXY, AF_INET/AF_INET6/AF_UNSPEC,
TLVs skipped), one line per header is appended to --log:
    v1 TCP4 127.0.0.3:40000 127.0.0.1:8080        (version, family, source, destination)
    v2 LOCAL                                      (v2 LOCAL; v1 UNKNOWN is "v1 UNKNOWN")
    BAD <why> <first bytes, repr>                 (then the connection is closed)
and then, by --mode:
  http   HTTP/1.1 requests (heads only; a Content-Length body is read and dropped), each
         answered 200 with keep-alive and the body "src=IP:PORT dst=IP:PORT v=N conn=K\\n"
         (K: the connection's number), and X-PP-Src / X-Conn-Id headers
  tcp    "src=IP:PORT dst=IP:PORT v=N\\n" first, then every byte echoed back
  tls    (with --tls CERT KEY) TLS after the header, then like tcp inside it
A connection without a header (a portico health check with no proxy_protocol, a client that
sends HTTP at once) is "BAD". Prints "READY <host> <port>" on stdout once listening.
"""

import argparse
import socket
import ssl
import struct
import sys
import threading

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


def read_header(s):
    """(version, family, src, dst) or raises ValueError(why). Reads only the header's bytes."""
    first = read_exact(s, 1)
    if first == b"P":
        line = first
        while not line.endswith(b"\r\n"):
            if len(line) >= 107:
                raise ValueError("v1 line too long: %r" % line[:40])
            line += read_exact(s, 1)
        f = line[:-2].decode("ascii", "replace").split(" ")
        if f[0] != "PROXY":
            raise ValueError("not PROXY: %r" % line[:40])
        if f[1] == "UNKNOWN":
            return 1, "UNKNOWN", None, None
        if f[1] not in ("TCP4", "TCP6") or len(f) != 6:
            raise ValueError("bad v1 line %r" % line)
        fam = socket.AF_INET if f[1] == "TCP4" else socket.AF_INET6
        socket.inet_pton(fam, f[2])
        socket.inet_pton(fam, f[3])
        return 1, f[1], "%s:%s" % (f[2], f[4]), "%s:%s" % (f[3], f[5])
    head = first + read_exact(s, 15)
    if head[:12] != SIG:
        raise ValueError("no PROXY header: %r" % head)
    vc, fam, ln = head[12], head[13], struct.unpack("!H", head[14:16])[0]
    if vc >> 4 != 2:
        raise ValueError("v2 version %d" % (vc >> 4))
    body = read_exact(s, ln)
    if vc & 0xF == 0:
        return 2, "LOCAL", None, None
    if fam == 0x11:
        sa, da = socket.inet_ntop(socket.AF_INET, body[0:4]), socket.inet_ntop(socket.AF_INET, body[4:8])
        sp, dp = struct.unpack("!HH", body[8:12])
        return 2, "TCP4", "%s:%d" % (sa, sp), "%s:%d" % (da, dp)
    if fam == 0x21:
        sa = socket.inet_ntop(socket.AF_INET6, body[0:16])
        da = socket.inet_ntop(socket.AF_INET6, body[16:32])
        sp, dp = struct.unpack("!HH", body[32:36])
        return 2, "TCP6", "%s:%d" % (sa, sp), "%s:%d" % (da, dp)
    return 2, "UNSPEC", None, None


class Server:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.nconn = 0
        self.tls = None
        if args.tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(args.tls[0], args.tls[1])

    def log(self, line):
        with self.lock:
            with open(self.args.log, "a") as f:
                f.write(line + "\n")

    def handle(self, s):
        with self.lock:
            self.nconn += 1
            k = self.nconn
        try:
            try:
                v, fam, src, dst = read_header(s)
            except (ValueError, EOFError, OSError) as e:
                self.log("BAD %s" % str(e).replace("\n", " "))
                return
            self.log("v%d %s%s" % (v, fam, " %s %s" % (src, dst) if src else ""))
            what = "src=%s dst=%s v=%d" % (src or "-", dst or "-", v)
            if self.args.mode == "http":
                self.http(s, what, k)
                return
            if self.args.mode == "tls":
                s = self.tls.wrap_socket(s, server_side=True)
            s.sendall((what + "\n").encode())
            while True:
                d = s.recv(65536)
                if not d:
                    break
                s.sendall(d)
        except OSError:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def http(self, s, what, k):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            n = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, val = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    n = int(val.strip())
            while len(buf) < n:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[n:]
            body = ("%s conn=%d\n" % (what, k)).encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      b"X-PP-Src: %s\r\nX-Conn-Id: %d\r\n\r\n%s"
                      % (len(body), what.split()[0][4:].encode(), k, body))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("http", "tcp", "tls"), default="http")
    ap.add_argument("--log", required=True)
    ap.add_argument("--tls", nargs=2)
    args = ap.parse_args()
    srv = Server(args)
    ls = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.host, args.port))
    ls.listen(128)
    open(args.log, "a").close()
    print("READY %s %d" % (args.host, ls.getsockname()[1]), flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=srv.handle, args=(c,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
