"""Regressions for what the fuzz targets (tests/fuzz, docs/testing.md) found on the HTTP/2
paths; each case names its target.

fuzz_h1_request: an Upgrade: h2c request whose HTTP2-Settings nghttp2 refuses (ENABLE_PUSH 4
here) made pt_h2_conn_start send the GOAWAY and close the new connection at once, freeing
stream 1 and the upgraded exchange; the HTTP/1.1 side then ran the location's handler on it
(use after free; under ASan, make check-asan, a crash). The first write of a new HTTP/2
connection now waits for the end of the loop iteration.

fuzz_h1_response: a backend status line with fewer than three digits ("HTTP/1.1 2", which
llhttp 8.1 takes) became ":status: 002" towards HTTP/2 clients, which they reject. Statuses
outside 100-599 now fail the attempt (502)."""

import socket
import threading

import pytest

import portico_testlib as lib


def _read_all(c):
    data = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    return data


@pytest.mark.parametrize("location", ["return", "proxy"])
def test_h2c_upgrade_refused_settings_no_use_after_free(h2_front, location):
    f = h2_front()
    path = b"/name" if location == "proxy" else b"/"
    c = socket.create_connection(("127.0.0.1", f.plain_port), timeout=5)
    # ENABLE_PUSH (id 2) = 0x40000: a PROTOCOL_ERROR in the settings of the upgrade
    c.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
              b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIABAAA\r\n\r\n")
    data = _read_all(c)
    c.close()
    assert data.startswith(b"HTTP/1.1 101 "), data[:100]
    # the 101, then the server's frames, ending in GOAWAY (type 7) with PROTOCOL_ERROR (1)
    frames = data.partition(b"\r\n\r\n")[2]
    types = []
    while len(frames) >= 9:
        n = int.from_bytes(frames[:3], "big")
        types.append((frames[3], frames[9:9 + n]))
        frames = frames[9 + n:]
    goaways = [p for t, p in types if t == 7]
    assert goaways and int.from_bytes(goaways[-1][4:8], "big") == 1, types
    assert f.curl_plain("/name")[0].status == 200


class RawBackend:
    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                s, _ = self.sock.accept()
            except OSError:
                continue
            with s:
                s.settimeout(5)
                try:
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        d = s.recv(4096)
                        if not d:
                            break
                        buf += d
                    s.sendall(self.answer)
                    s.recv(4096)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


@pytest.mark.parametrize("status", [b"2", b"99", b"600", b"999"])
def test_h2_h1_backend_status_out_of_range_502(tmp_path, start_portico, status):
    be = RawBackend(b"HTTP/1.1 " + status + b" X\r\nContent-Length: 2\r\n\r\nok")
    try:
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(
            port, ["127.0.0.1:%d" % be.port], upstream_extra="    retries 0;\n"))
        p = start_portico(conf, [port])
        r = lib.curl("http://127.0.0.1:%d/x" % port, "--http2-prior-knowledge")
        assert r.status == 502, r
        r = lib.curl("http://127.0.0.1:%d/x" % port)
        assert r.status == 502, r
        assert "invalid status code" in p.logs()
    finally:
        be.close()
