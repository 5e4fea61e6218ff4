"""Retries and request bodies (docs/configuration.md, retries / retry_on / retry_buffer_size):
an idempotent request that may have reached the application is resent to another server
only when its whole body was kept (at most retry_buffer_size). PUT and DELETE with a body
kept in full are resent with that exact body; a body larger than retry_buffer_size, cut by a
reset mid-upload, ends in a prompt 502 with no retry, never a hang."""

import socket
import struct
import threading
import time

import pytest

import portico_testlib as lib
from portico_testlib import RawConn
from tls_h2_testlib import RecordingBackend


class ResetMidUpload:
    """Accepts connections, reads the request head and `after` body bytes, then resets the
    connection (RST): a backend that dies in the middle of an upload."""

    def __init__(self, after=65536):
        self.after = after
        self.accepted = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            s.settimeout(5)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf or \
                        len(buf) - buf.index(b"\r\n\r\n") - 4 < self.after:
                    d = s.recv(65536)
                    if not d:
                        break
                    buf += d
            except OSError:
                pass
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    def stop(self):
        self.sock.close()


@pytest.fixture
def two_tier(tmp_path, start_backend, start_portico):
    """upstream app { server FIRST; server SECOND backup; retry_on reset; ... }: the first
    attempt always goes to FIRST, a retry to SECOND."""

    def _make(first_addr, second_addr, extra=""):
        port = lib.free_port()
        body = lib.proxy_conf(port, [first_addr, second_addr + " backup"],
                              upstream_extra="    retries 2;\n    retry_on reset;\n" + extra)
        return start_portico(lib.make_conf(tmp_path, body), [port])

    return _make


@pytest.mark.hard_timeout(30)
def test_h1_h1_body_over_retry_buffer_reset_mid_upload_is_prompt_502(two_tier, start_backend):
    first = ResetMidUpload(after=64 * 1024)
    second = start_backend("second")
    try:
        p = two_tier(first.addr, second.addr, "    retry_buffer_size 16k;\n")
        size = 1024 * 1024
        c = RawConn("127.0.0.1", p.port, timeout=10)
        c.send(b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)

        def upload():
            try:
                for _ in range(size // 16384):
                    c.sock.sendall(b"u" * 16384)
            except OSError:
                pass     # portico closes (lingering) once it has answered

        t0 = time.monotonic()
        th = threading.Thread(target=upload, daemon=True)
        th.start()
        r = c.read_response("PUT")
        elapsed = time.monotonic() - t0
        c.close()
        th.join(5)
    finally:
        first.stop()
    assert r.status == 502, r
    assert elapsed < 3.0, "502 after %.1f s (read_timeout is 5 s: it hung)" % elapsed
    assert first.accepted == 1
    # the body could not be replayed: nothing was resent to the other server
    st = second.stats()
    assert (st["connections"], st["requests"]) == (0, 0), st
    assert "retrying" not in p.read(p.error_log)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_h1_h1_idempotent_with_body_retried_with_whole_body(two_tier, start_backend, method):
    first = start_backend("first")          # /reset: reads the whole request, then RST
    second = RecordingBackend()
    try:
        p = two_tier(first.addr, second.addr)
        body = bytes(range(256)) * 80      # 20 KiB < retry_buffer_size (64k)
        with RawConn("127.0.0.1", p.port) as c:
            c.send(b"%s /reset HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                   % (method.encode(), len(body)) + body)
            r = c.read_response(method)
        assert (r.status, r.body) == (200, b"ok"), r
        assert first.stats()["connections"] == 1          # the first attempt reached it
        assert len(second.requests) == 1, second.requests
        head, _, got = second.requests[0].partition(b"\r\n\r\n")
        assert head.startswith(b"%s /reset HTTP/1.1" % method.encode()), head
        assert b"\r\ncontent-length: %d" % len(body) in head.lower(), head
        assert got == body       # once, whole, nothing before or after it
    finally:
        second.stop()


def test_h1_h1_post_with_body_not_retried_after_reset(two_tier, start_backend):
    first = start_backend("first")
    second = RecordingBackend()
    try:
        p = two_tier(first.addr, second.addr)
        st, _, _ = lib.raw_request("127.0.0.1", p.port, "POST", "/reset", body=b"x" * 1000)
        assert st == 502
        assert second.requests == []
    finally:
        second.stop()
