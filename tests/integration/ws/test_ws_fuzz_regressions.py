"""Regressions for what the fuzz targets (tests/fuzz, docs/testing.md) found in WebSocket
tunnels; each case names its target.

fuzz_ws_frames: a client that sends its upgrade request, messages, its close frame and then an
invalid frame in one write to websocket_echo: the invalid frame made portico say goodbye (close
frames both ways), the echo of the client's close frame then completed the closing handshake
inside echo_write(), the relay closed and freed the echo's state, which echo_write() then read
(use after free; under ASan, make check-asan, a crash)."""

import socket
import struct

import portico_testlib as lib


def masked(op, payload, fin=True):
    key = b"\x01\x02\x03\x04"
    head = bytes([(0x80 if fin else 0) | op, 0x80 | len(payload)])
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def test_ws_echo_close_in_same_write_as_request(tmp_path, start_portico):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, "server {\n    listen 127.0.0.1:%d;\n"
                         "    location /echo { websocket_echo; }\n}\n" % port)
    start_portico(conf, [port])
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
              + masked(1, b"hello") + masked(9, b"p") + masked(8, struct.pack(">H", 1000))
              + b"\x00\x00")  # an unmasked continuation: a rule broken after the close
    data = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    c.close()
    assert data.startswith(b"HTTP/1.1 101 "), data[:200]
    frames = data.partition(b"\r\n\r\n")[2]
    # the tracker saw the broken rule before the echo answered: portico's close 1002 (protocol
    # error) is what the client gets; the echo's frames after it are dropped
    assert frames == b"\x88\x02" + struct.pack(">H", 1002), frames
    # portico is still there
    assert lib.curl("http://127.0.0.1:%d/echo" % port).status == 426
