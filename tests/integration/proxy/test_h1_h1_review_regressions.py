"""Regressions for bugs found in review (each test failed before its fix):
- a retry after a retry sent the request body twice; the duplicate became the start of a
  smuggled request on the pooled backend connection, answered to the next client;
- a connection hung for ever when the response ended while reading was paused for a body
  the backend would now never take (here: a 503 from the max_pending queue)."""

import os
import socket
import threading
import time

import pytest

import portico_testlib as lib
from portico_testlib import RawConn


class ResettingBackend:
    """Reads a request head and its Content-Length body, then resets the connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", lib.free_port()))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
                head, _, rest = data.partition(b"\r\n\r\n")
                cl = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        cl = int(line.split(b":", 1)[1])
                while len(rest) < cl:
                    d = c.recv(65536)
                    if not d:
                        break
                    rest += d
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            finally:
                c.close()

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


@pytest.fixture
def resetting_backend():
    b = ResettingBackend()
    yield b
    b.close()


def test_h1_h1_double_retry_sends_body_once(tmp_path, start_backend, start_portico,
                                            resetting_backend):
    good = start_backend("good")
    dead = lib.free_port()
    port = lib.free_port()
    body = lib.proxy_conf(port, ["127.0.0.1:%d" % resetting_backend.port,
                                 "127.0.0.1:%d" % dead, good.addr],
                          upstream_extra="    retries 2;\n    retry_on connect_error reset;\n")
    start_portico(lib.make_conf(tmp_path, body), [port])
    src = os.path.join(str(tmp_path), "smuggle.bin")
    with open(src, "wb") as f:
        f.write(b"GET /status/201 HTTP/1.1\r\nHost: smuggled\r\nX-Junk: ")
    # attacker: reset on the first server, refused on the second, answered by the third
    r = lib.curl("http://127.0.0.1:%d/echo" % port, "-H", "Expect:", "-T", src)
    assert r.status == 200, r
    assert r.body == open(src, "rb").read(), "the body must arrive exactly once"
    # victim: must get the answer to its own request, not the smuggled one
    for _ in range(3):
        v = lib.curl("http://127.0.0.1:%d/headers" % port)
        assert v.status == 200 and b'"target": "/headers"' in v.body, v


def test_h1_h1_queue_503_with_body_keeps_connection_usable(tmp_path, start_backend,
                                                           start_portico):
    b = start_backend("b1")
    port = lib.free_port()
    body = lib.proxy_conf(port, [b.addr + " max_conns=1"],
                          upstream_extra="    max_pending 10;\n    queue_timeout 1s;\n",
                          server_extra="    client_body_timeout 3s;\n    keepalive_timeout 5s;\n")
    start_portico(lib.make_conf(tmp_path, body), [port])
    hold = threading.Thread(target=lambda: lib.curl("http://127.0.0.1:%d/slow/6000" % port,
                                                    timeout=15), daemon=True)
    hold.start()
    lib.wait_until(lambda: b.stats()["requests"] >= 1, 10, what="the first request at b1")
    payload = b"z" * 100000  # over the 64 KiB body cap: reading pauses while queued
    with RawConn("127.0.0.1", port, timeout=8) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(payload)
               + payload)
        r1 = c.read_response()
        assert r1.status == 503 and r1.header("Retry-After") == "1", r1
        t0 = time.monotonic()
        c.send(b"GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        r2 = c.read_response()
        # the one server is still held by /slow/6000: queued, then 503 at queue_timeout, on
        # the same connection (the point: the connection is still usable)
        assert r2.status == 503 and r2.header("Retry-After") == "1", r2
        assert time.monotonic() - t0 < 4, "second request on the connection was not answered"
    hold.join(15)
