#!/usr/bin/python3
"""An HTTP/2 WebSocket backend (RFC 8441) for portico's tests: standard library plus Debian's
python3-h2, one thread per connection.

It advertises SETTINGS_ENABLE_CONNECT_PROTOCOL (unless --no-connect) and accepts an extended
CONNECT with :protocol websocket by answering 200; the stream's DATA then carries RFC 6455
frames, which it parses (client frames must be masked) and answers:
  /echo       text and binary messages echoed (fragments reassembled), ping -> pong
  /refuse     answered 403 (no WebSocket)
  /reset      the stream is reset (RST_STREAM CANCEL) right after the 200
  /bye        sends close 4001 "bye" at once
A close frame is answered with the same code, then the stream is ended (END_STREAM).
A connection whose first bytes are not the HTTP/2 preface is served as HTTP/1.1: a WebSocket
handshake gets a 101 and the same echo (what portico falls back to with --no-connect), and
GET /stats gets JSON {"h2_ws", "h1_ws", "closes": [codes], "end_stream": n, "connect_headers":
[the header names of the last CONNECT]}. With --tls-cert/--tls-key it speaks TLS, with ALPN h2
and http/1.1. The first line on stdout is "READY <port>"."""

import argparse
import base64
import hashlib
import json
import socket
import ssl
import struct
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LOCK = threading.Lock()
STATS = {"h2_ws": 0, "h1_ws": 0, "closes": [], "end_stream": 0, "connect_headers": []}


class Frames:
    """RFC 6455 frames from a byte stream (masked, as a client's)."""

    def __init__(self):
        self.buf = bytearray()
        self.msg = bytearray()
        self.msg_op = 0
        self.close_sent = False  # our close went first: the peer's close is only the answer

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    break
                n, off = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    break
                n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
            masked = b1 & 0x80
            if len(self.buf) < off + (4 if masked else 0) + n:
                break
            key = self.buf[off:off + 4] if masked else None
            off += 4 if masked else 0
            payload = bytes(self.buf[off:off + n])
            del self.buf[:off + n]
            if key is not None:
                payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            fin, op = b0 >> 7, b0 & 0x0F
            if op >= 8:
                out.append((op, payload))
                continue
            if op != 0:
                self.msg_op = op
                self.msg = bytearray()
            self.msg += payload
            if fin:
                out.append((self.msg_op, bytes(self.msg)))
        return out


def frame(op, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | op, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | op, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | op, 127, n)
    return head + payload


def answers(frames, f=None):
    """(what to send back, the close code seen or None) for parsed frames."""
    out, code = b"", None
    for op, payload in frames:
        if op == 8 and f is not None and f.close_sent:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            continue
        if op in (1, 2):
            out += frame(op, payload)
        elif op == 9:
            out += frame(10, payload)
        elif op == 8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            out += frame(8, payload[:2])
    return out, code


def serve_h2(sock, connect):
    cfg = h2.config.H2Configuration(client_side=False, header_encoding=None)
    conn = h2.connection.H2Connection(cfg)
    if connect:
        # in the first SETTINGS, as servers do (a client decides on it)
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
                            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100})
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    while True:
        data = sock.recv(65536)
        if not data:
            return
        for e in conn.receive_data(data):
            if isinstance(e, h2.events.RequestReceived):
                h = dict(e.headers)
                path = h.get(b":path", b"").decode()
                if h.get(b":method") != b"CONNECT" or h.get(b":protocol") != b"websocket":
                    conn.send_headers(e.stream_id, [(b":status", b"404")], end_stream=True)
                    continue
                with LOCK:
                    STATS["h2_ws"] += 1
                    STATS["connect_headers"] = sorted(k.decode() for k, _ in e.headers)
                if path.startswith("/refuse"):
                    conn.send_headers(e.stream_id, [(b":status", b"403"),
                                                    (b"content-length", b"7")])
                    conn.send_data(e.stream_id, b"refused", end_stream=True)
                    continue
                conn.send_headers(e.stream_id, [(b":status", b"200")])
                if path.startswith("/reset"):
                    conn.reset_stream(e.stream_id, 8)
                    continue
                streams[e.stream_id] = Frames()
                if path.startswith("/bye"):
                    conn.send_data(e.stream_id, frame(8, struct.pack("!H", 4001) + b"bye"))
                    streams[e.stream_id].close_sent = True
            elif isinstance(e, h2.events.DataReceived):
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                f = streams.get(e.stream_id)
                if f is None:
                    continue
                out, code = answers(f.feed(e.data), f)
                if out:
                    send_all(conn, sock, e.stream_id, out)
                if code is not None:
                    with LOCK:
                        STATS["closes"].append(code)
                    conn.end_stream(e.stream_id)
                    streams.pop(e.stream_id, None)
            elif isinstance(e, h2.events.StreamEnded):
                with LOCK:
                    STATS["end_stream"] += 1
                if e.stream_id in streams:
                    streams.pop(e.stream_id)
                    try:
                        conn.end_stream(e.stream_id)
                    except Exception:  # noqa: BLE001 (already closed our side)
                        pass
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def send_all(conn, sock, sid, data):
    while data:
        room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        if room <= 0:
            sock.sendall(conn.data_to_send())
            for e in conn.receive_data(sock.recv(65536)):
                if isinstance(e, h2.events.DataReceived):
                    conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            continue
        conn.send_data(sid, data[:room])
        data = data[room:]


def serve_h1(sock, first):
    buf = first
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, v in
            (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    if lines[0].startswith("GET /stats"):
        with LOCK:
            body = json.dumps(STATS).encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     b"%d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        return
    key = hdrs.get("sec-websocket-key", "").encode()
    acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    with LOCK:
        STATS["h1_ws"] += 1
    f = Frames()
    data = rest
    while True:
        out, code = answers(f.feed(data))
        if out:
            sock.sendall(out)
        if code is not None:
            with LOCK:
                STATS["closes"].append(code)
            return
        data = sock.recv(65536)
        if not data:
            return


def handle(sock, ctx, connect):
    try:
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_side=True)
            if sock.selected_alpn_protocol() == "h2":
                serve_h2(sock, connect)
                return
            serve_h1(sock, b"")
            return
        first = b""
        while len(first) < 3:
            d = sock.recv(65536)
            if not d:
                return
            first += d
        if first.startswith(b"PRI"):
            # hand the bytes read back to h2 through a small wrapper
            serve_h2(Prefixed(sock, first), connect)
        else:
            serve_h1(sock, first)
    except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


class Prefixed:
    """A socket whose first recv() returns bytes already read."""

    def __init__(self, sock, first):
        self.sock, self.first = sock, first

    def recv(self, n):
        if self.first:
            d, self.first = self.first, b""
            return d
        return self.sock.recv(n)

    def sendall(self, d):
        return self.sock.sendall(d)

    def close(self):
        return self.sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--no-connect", action="store_true",
                    help="do not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    ctx = None
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(256)
    print("READY %d" % ls.getsockname()[1], flush=True)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=handle, args=(s, ctx, not a.no_connect), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
