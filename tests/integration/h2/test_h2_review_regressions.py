"""Regressions for HTTP/2 bugs found in review (each test failed before its fix):
- Upgrade: h2c followed by bytes that are not HTTP/2 closed the new connection while the
  upgraded request's handler was about to run on it (use after free; its backend response later
  hit a dead stream: "invalid response" in the error log);
- a response that ended before its request body left the bytes portico held unacknowledged,
  shrinking the connection window for good: later uploads on the connection stalled."""

import socket
import threading
import time

import pytest

import portico_testlib as lib
from tls_h2_testlib import plain_server, upstream, wait_log


class EarlyBackend:
    """Answers 200 "ok" right after the request head, never reading the body."""

    def __init__(self, delay=0.5):
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", lib.free_port()))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stop = False
        self.conns = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = c.recv(4096)
                if not d:
                    return
                buf += d
            time.sleep(self.delay)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass

    def close(self):
        self.stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def early_backend():
    b = EarlyBackend()
    yield b
    b.close()


def test_h2c_upgrade_then_garbage_closes_cleanly(h2_front):
    f = h2_front()
    c = socket.create_connection(("127.0.0.1", f.plain_port), timeout=5)
    c.sendall(b"GET /slow/300 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
              b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
              b"GARBAGEGARBAGEGARBAGEGARBAGEGARBAGE")
    data = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
    except ConnectionResetError:
        pass   # closed with the garbage unread: a reset, not a timeout
    c.close()
    assert data.startswith(b"HTTP/1.1 101 "), data[:100]
    # the connection closed on the garbage; the backend (if the request reached it before)
    # answers /slow/300 within 300 ms: through that and past it, nothing is taken for an
    # invalid response
    lib.wait_until(lambda: "Received bad client magic byte string; closing" in
                   open(f.portico.error_log).read(), 5, what="the garbage taken for a bad preface")
    assert lib.stays(lambda: "invalid response" not in open(f.portico.error_log).read(), 0.8), \
        open(f.portico.error_log).read()
    assert f.curl_plain("/name")[0].status == 200


@pytest.fixture
def early_front(start_backend, start_portico_in, early_backend):
    b = start_backend("b1")
    port = lib.free_port()
    body = upstream("app", [b.addr]) + upstream("early", ["127.0.0.1:%d" % early_backend.port])
    body += plain_server(port, extra="    http2_max_concurrent_streams 1;\n"
                                     "    client_max_body_size 0;\n",
                         locations="    location /early/ { proxy_pass early; }\n"
                                   "    location / { proxy_pass app; }\n")
    p = start_portico_in(body, [port], name="fe")
    return p, port


def test_h2_early_response_returns_connection_window(early_front):
    from h2_attacks import H2Client
    p, port = early_front
    with H2Client("127.0.0.1", port) as c:
        big = 20_000_000
        sid = c.send_headers(c.request_headers("PUT", "/early/1",
                                               [("content-length", str(big))]), end_stream=False)
        st = c.streams[sid]
        t0 = time.monotonic()
        while not st.finished and time.monotonic() - t0 < 10:
            c.send_available(sid, b"\0" * 65536)
            c.pump(0.05)
        assert st.finished and st.status == 200, st
        import h2.exceptions
        try:
            c.conn.reset_stream(sid)
            c.flush()
        except h2.exceptions.StreamClosedError:
            pass  # portico ended the stream first: nothing left to reset
        c.pump(0.5)
        sid2 = c.send_headers(c.request_headers("PUT", "/upload",
                                                [("content-length", "200000")]),
                              end_stream=False)
        c.send_body(sid2, b"\0" * 200000, end_stream=True, timeout=8)
        r = c.response(sid2, 8)
        assert r.status == 200 and b'"length": 200000' in bytes(r.data), r
