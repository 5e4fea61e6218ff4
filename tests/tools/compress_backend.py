#!/usr/bin/python3
"""HTTP/1.1 test backend for portico's compression tests (stdlib only).

It serves generated bodies whose every header is chosen by the query string, so a test can
state what the backend answers and check what the client got:

  GET|HEAD /gen?n=N&kind=text|noise&type=MIME&framing=cl|chunked|close&status=CODE
               &h=Name:Value (repeatable)&hold=1
      N bytes of generated content (gen_iter(kind, n)): "text" is prose-like and compresses
      about 4:1, "noise" is hex digits and compresses about 2:1 (so little of a stalled
      stream can hide in socket buffers). Content-Type MIME (default text/html; "none" for no
      Content-Type). Framing: Content-Length (default), chunked, or close-delimited.
      hold=1: the first 16 KiB block is sent, then the response waits until GET /release is
      called (on any connection), then the rest follows: a test can see that the first block
      reached the client, decodable, before the response ended.
  GET /stats    JSON {"body_bytes": body bytes written so far by /gen responses, all of them,
                "responses": /gen responses started}
  GET /release  releases every held response

Every /gen response carries X-Gen-Length (N) so a test can compare lengths after decoding.

Start: /usr/bin/python3 tests/tools/compress_backend.py --port P
Prints "READY <port>" when listening.
"""

import argparse
import hashlib
import json
import random
import socket
import sys
import threading
import urllib.parse

BLOCK = 16384
NBLOCKS = 64  # distinct blocks; the stream repeats only after 1 MiB, beyond every window used

_WORDS = ("gateway proxy stream header body chunk window client server backend upstream "
          "request response compress encoding vary length status timeout buffer worker "
          "connection pool health route location").split()


def _text_block(k):
    r = random.Random(1000 + k)
    out = []
    size = 0
    line = 0
    while size < BLOCK:
        words = " ".join(r.choice(_WORDS) for _ in range(r.randint(6, 14)))
        s = "<p id=\"b%d-l%d\">%s %d.</p>\n" % (k, line, words, r.randint(0, 99999))
        out.append(s)
        size += len(s)
        line += 1
    return "".join(out).encode()[:BLOCK]


def _noise_block(k):
    r = random.Random(5000 + k)
    return r.randbytes(BLOCK // 2).hex().encode()


_BLOCKS = {"text": [_text_block(k) for k in range(NBLOCKS)],
           "noise": [_noise_block(k) for k in range(NBLOCKS)]}


def gen_iter(kind, n):
    """The first n bytes of the generated stream of this kind, block by block."""
    blocks = _BLOCKS[kind]
    k = 0
    while n > 0:
        b = blocks[k % NBLOCKS]
        if n < len(b):
            b = b[:n]
        yield b
        n -= len(b)
        k += 1


def gen_sha256(kind, n):
    h = hashlib.sha256()
    for b in gen_iter(kind, n):
        h.update(b)
    return h.hexdigest()


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.body_bytes = 0
        self.responses = 0
        self.release = threading.Event()


REASONS = {200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
           304: "Not Modified", 404: "Not Found", 500: "Internal Server Error"}


def read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return None, b""
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def serve_conn(sock, st):
    buf = b""
    try:
        while True:
            head, buf = read_head(sock, buf)
            if head is None:
                return
            lines = head.split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs = {}
            for ln in lines[1:]:
                k, v = ln.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
            n = int(hdrs.get("content-length", "0"))
            while len(buf) < n:
                d = sock.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[n:]
            if not respond(sock, st, method, target):
                return
    except OSError:
        return
    finally:
        sock.close()


def send_json(sock, obj):
    body = json.dumps(obj).encode()
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d"
                 b"\r\n\r\n%s" % (len(body), body))
    return True


def respond(sock, st, method, target):
    u = urllib.parse.urlsplit(target)
    q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    if u.path == "/stats":
        with st.lock:
            return send_json(sock, {"body_bytes": st.body_bytes, "responses": st.responses})
    if u.path == "/release":
        st.release.set()
        return send_json(sock, {"released": True})
    if u.path != "/gen":
        sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True
    n = int(q.get("n", ["1000"])[0])
    kind = q.get("kind", ["text"])[0]
    ctype = q.get("type", ["text/html"])[0]
    framing = q.get("framing", ["cl"])[0]
    status = int(q.get("status", ["200"])[0])
    hold = q.get("hold", ["0"])[0] == "1"
    with st.lock:
        st.responses += 1
    no_body = method == "HEAD" or status in (204, 304)
    out = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Other")),
           "X-Gen-Length: %d" % n]
    if ctype != "none":
        out.append("Content-Type: " + ctype)
    for h in q.get("h", []):
        out.append(h)
    if status == 204:
        framing = "none"
    elif framing == "cl" or status == 304:
        out.append("Content-Length: %d" % n)
    elif framing == "chunked":
        out.append("Transfer-Encoding: chunked")
    else:
        out.append("Connection: close")
    sock.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
    if no_body:
        return framing != "close"
    first = True
    for b in gen_iter(kind, n):
        if framing == "chunked":
            sock.sendall(b"%x\r\n%s\r\n" % (len(b), b))
        else:
            sock.sendall(b)
        with st.lock:
            st.body_bytes += len(b)
        if first and hold:
            st.release.wait(30)
        first = False
    if framing == "chunked":
        sock.sendall(b"0\r\n\r\n")
    return framing != "close"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    st = State()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(128)
    print("READY %d" % ls.getsockname()[1], flush=True)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=serve_conn, args=(s, st), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
