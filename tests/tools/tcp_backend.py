#!/usr/bin/python3
"""A raw TCP (or TLS) test backend for portico's stream servers (tests/integration/stream/).

    tcp_backend.py --port P [--host H] [--name N] [--mode MODE] [--tls CERT KEY]
                   [--bytes N] [--rate BYTES_PER_S]

Prints "READY <host> <port>" on stdout once listening (port 0: the kernel's choice).
Modes, per connection:
  echo       echoes every byte back; at the client's EOF (half-close) it sends what is left
             and shuts its own side (so a relay that does not pass half-close on hangs the test)
  greet      says "hello from NAME\\n" (over TLS: "hello from NAME sni=SERVER_NAME\\n", the
             name the TLS handshake it got carried), then echoes
  hello      says the greeting of `greet` and closes
  halfclose  reads until the client's EOF, then answers "got N bytes\\n" and closes: works only
             if the client's FIN came through while the way back stayed open
  sink       reads and drops everything, never writes
  source     sends --bytes bytes (a repeating pattern) at --rate bytes/s (0: as fast as it can),
             then closes
  refuse     accepts and closes at once
Plain modes run on one selector loop (1 000 connections are fine); --tls runs a thread per
connection. Each accepted connection is logged on stderr ("accept N").
"""

import argparse
import selectors
import socket
import ssl
import sys
import threading
import time

PATTERN = bytes(range(256)) * 64


def pattern(n, off=0):
    """n bytes of the repeating pattern starting at offset off."""
    out = bytearray()
    while len(out) < n:
        i = (off + len(out)) % len(PATTERN)
        out += PATTERN[i:i + n - len(out)]
    return bytes(out)


class Conn:
    def __init__(self, sock, mode, name):
        self.sock = sock
        self.mode = mode
        self.out = bytearray()
        self.got = 0
        self.eof = False
        self.shut = False
        if mode in ("greet", "hello"):
            self.out += ("hello from %s\n" % name).encode()
        if mode == "hello":
            self.eof = True


def serve_plain(ls, args):
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    count = 0

    def update(c):
        ev = 0 if c.eof else selectors.EVENT_READ
        if c.out:
            ev |= selectors.EVENT_WRITE
        if ev == 0:
            if c.mode in ("echo", "greet") and not c.shut:
                c.sock.shutdown(socket.SHUT_WR)
                c.shut = True
            return close(c)
        sel.modify(c.sock, ev, c)

    def close(c):
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    while True:
        for key, ev in sel.select():
            if key.data is None:
                try:
                    s, _ = ls.accept()
                except BlockingIOError:
                    continue
                count += 1
                sys.stderr.write("accept %d\n" % count)
                sys.stderr.flush()
                if args.mode == "refuse":
                    s.close()
                    continue
                if args.mode == "source":
                    threading.Thread(target=source, args=(s, args), daemon=True).start()
                    continue
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c = Conn(s, args.mode, args.name)
                sel.register(s, selectors.EVENT_READ, c)
                if c.out:
                    sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                continue
            c = key.data
            if ev & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    data = None
                except ConnectionResetError:
                    data = b""
                if data is None:
                    pass
                elif not data:
                    c.eof = True
                    if c.mode == "halfclose":
                        c.out += ("got %d bytes\n" % c.got).encode()
                    elif c.mode == "sink":
                        close(c)
                        continue
                else:
                    c.got += len(data)
                    if c.mode in ("echo", "greet"):
                        c.out += data
            if ev & selectors.EVENT_WRITE and c.out:
                try:
                    n = c.sock.send(c.out)
                    del c.out[:n]
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    close(c)
                    continue
            if c.eof and not c.out and c.mode == "halfclose":
                close(c)
                continue
            update(c)


def source(s, args):
    try:
        sent = 0
        start = time.monotonic()
        while sent < args.bytes:
            chunk = pattern(min(16384, args.bytes - sent), sent)
            s.sendall(chunk)
            sent += len(chunk)
            if args.rate > 0:
                ahead = sent / args.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        pass
    finally:
        s.close()


def serve_tls(ls, args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls[0], args.tls[1])
    count = [0]

    def on_sni(sslobj, name, c):
        sslobj.sni_seen = name

    ctx.sni_callback = on_sni

    def one(raw):
        try:
            s = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write("handshake failed: %s\n" % e)
            raw.close()
            return
        try:
            if args.mode in ("greet", "hello"):
                s.sendall(("hello from %s sni=%s\n"
                           % (args.name, getattr(s, "sni_seen", None))).encode())
            if args.mode == "hello":
                return
            while True:
                data = s.recv(65536)
                if not data:
                    break
                if args.mode in ("echo", "greet"):
                    s.sendall(data)
        except (ssl.SSLError, OSError):
            pass
        finally:
            s.close()

    ls.setblocking(True)
    while True:
        raw, _ = ls.accept()
        count[0] += 1
        sys.stderr.write("accept %d\n" % count[0])
        sys.stderr.flush()
        threading.Thread(target=one, args=(raw,), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="b1")
    ap.add_argument("--mode", default="echo",
                    choices=["echo", "greet", "hello", "halfclose", "sink", "source", "refuse"])
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--bytes", type=int, default=1 << 20)
    ap.add_argument("--rate", type=int, default=0)
    args = ap.parse_args()
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.host, args.port))
    ls.listen(4096)
    ls.setblocking(False)
    sys.stdout.write("READY %s %d\n" % (args.host, ls.getsockname()[1]))
    sys.stdout.flush()
    try:
        if args.tls:
            serve_tls(ls, args)
        else:
            serve_plain(ls, args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
