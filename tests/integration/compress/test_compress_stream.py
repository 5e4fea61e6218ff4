"""Compression of long streams: memory stays flat however long the response (the compressor's
window and one output chunk per response, never the body), and a client that stops reading
stops portico reading the backend (backpressure goes through the compressor)."""

import hashlib
import socket
import subprocess
import time
import zlib

import brotli
import h2.config
import h2.connection
import h2.events
import pytest
import zstandard

import portico_testlib as lib
from compress_backend import gen_sha256

MB = 1 << 20


def stream_decode(url, coding, extra=(), timeout=300):
    """Downloads url with Accept-Encoding: coding through curl, decoding as it comes; returns
    (headers, sha256 of the decoded body, decoded length, coded length)."""
    import tempfile
    if coding == "gzip":
        dec = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    elif coding == "br":
        dec = brotli.Decompressor().process
    else:
        dec = zstandard.ZstdDecompressor().decompressobj().decompress
    with tempfile.NamedTemporaryFile(prefix="curlhdr") as hf:
        p = subprocess.Popen(["curl", "-sS", "--max-time", str(timeout), "-D", hf.name,
                              "-H", "Accept-Encoding: " + coding] + list(extra) + [url],
                             stdout=subprocess.PIPE)
        h = hashlib.sha256()
        n = coded = 0
        try:
            while True:
                d = p.stdout.read(MB)
                if not d:
                    break
                coded += len(d)
                out = dec(d)
                h.update(out)
                n += len(out)
            assert p.wait(30) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        _, headers, _ = lib.parse_header_dump(open(hf.name, "rb").read().decode("latin-1"))
    return dict((k.lower(), v) for k, v in headers), h.hexdigest(), n, coded


def warm(p):
    """One small compressed response first, so the baseline includes the worker's chunk pool
    and the compressors' libraries."""
    for c in ("gzip", "br", "zstd"):
        r = lib.curl(p.url("/gen?n=200000"), "-H", "Accept-Encoding: " + c)
        assert r.rc == 0 and r.header("content-encoding") == c


@pytest.mark.hard_timeout(240)
@pytest.mark.parametrize("client,coding", [("h1", "gzip"), ("h2", "br"), ("h1", "zstd")])
def test_100mb_stream_flat_rss(compress_proxy, client, coding):
    p, b = compress_proxy()
    warm(p)
    base = p.vm_hwm_kib()
    n = 100 * MB
    extra = ("--http2-prior-knowledge",) if client == "h2" else ()
    headers, sha, got, coded = stream_decode(p.url("/gen?n=%d&framing=chunked" % n), coding,
                                             extra)
    assert headers.get("content-encoding") == coding
    assert got == n
    assert sha == gen_sha256("text", n)
    assert coded < n / 2
    grew = p.vm_hwm_kib() - base
    print("%s %s: %d MiB -> %.1f MiB coded, peak RSS grew %d KiB"
          % (client, coding, n // MB, coded / MB, grew))
    # a compressor (at most ~2 MiB at the default levels) and a few 16 KiB chunks; buffering
    # the body would be 100 MiB
    assert grew < 16 * 1024, "peak RSS grew by %d KiB during a 100 MiB stream" % grew


@pytest.mark.slow
@pytest.mark.hard_timeout(900)
def test_1gib_stream_flat_rss(compress_proxy):
    p, b = compress_proxy()
    warm(p)
    base = p.vm_hwm_kib()
    n = 1024 * MB
    headers, sha, got, coded = stream_decode(p.url("/gen?n=%d" % n), "zstd", timeout=800)
    assert headers.get("content-encoding") == "zstd"
    assert got == n and sha == gen_sha256("text", n)
    grew = p.vm_hwm_kib() - base
    assert grew < 16 * 1024, "peak RSS grew by %d KiB during a 1 GiB stream" % grew


def wait_backend_stalls(b, deadline=30.0, quiet=1.0):
    """Waits until the backend's body byte count stops moving for `quiet` seconds; returns it."""
    end = time.monotonic() + deadline
    last = b.stats()["body_bytes"]
    since = time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.2)
        now = b.stats()["body_bytes"]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError("the backend never stopped sending (%d bytes so far)" % last)


TOTAL = 512 * MB
# What may be in flight once a client stalls: kernel socket buffers on both sides of portico
# (a few MiB each, ~2 plain bytes per coded byte of this content) and portico's own caps. A
# portico that buffered would take all 512 MiB.
IN_FLIGHT_MAX = 64 * MB


@pytest.mark.hard_timeout(120)
@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_h1_stalled_client_stops_backend(compress_proxy, coding):
    p, b = compress_proxy()
    warm(p)
    base = p.vm_hwm_kib()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(("127.0.0.1", p.port))
    s.sendall(b"GET /gen?n=%d&kind=noise HTTP/1.1\r\nHost: t\r\nAccept-Encoding: %s\r\n\r\n"
              % (TOTAL, coding.encode()))
    got = b""
    while len(got) < 65536:
        d = s.recv(65536)
        assert d
        got += d
    assert b"content-encoding: " + coding.encode() in got.lower()
    # stop reading
    sent = wait_backend_stalls(b)
    grew = p.vm_hwm_kib() - base
    print("backend sent %d MiB of %d before stalling; peak RSS grew %d KiB"
          % (sent // MB, TOTAL // MB, grew))
    assert sent < IN_FLIGHT_MAX
    assert grew < 16 * 1024
    s.close()
    # the worker is fine: the next request is served
    r = lib.curl(p.url("/gen?n=1000"), "-H", "Accept-Encoding: gzip")
    assert r.status == 200 and r.header("content-encoding") == "gzip"


@pytest.mark.hard_timeout(120)
def test_h2_stalled_stream_stops_backend(compress_proxy):
    """An HTTP/2 client that never opens its flow-control window again."""
    p, b = compress_proxy()
    warm(p)
    base = p.vm_hwm_kib()
    s = socket.create_connection(("127.0.0.1", p.port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "t"),
                          (":path", "/gen?n=%d&kind=noise" % TOTAL),
                          ("accept-encoding", "br")], end_stream=True)
    s.sendall(conn.data_to_send())
    data = 0
    status = None
    s.settimeout(5)
    deadline = time.monotonic() + 20
    while data < 60000 and time.monotonic() < deadline:
        d = s.recv(65536)
        assert d
        for ev in conn.receive_data(d):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                data += ev.flow_controlled_length  # never acknowledged: the window closes
        s.sendall(conn.data_to_send())
    assert status is not None and status[b"content-encoding"] == b"br"
    sent = wait_backend_stalls(b)
    grew = p.vm_hwm_kib() - base
    print("backend sent %d MiB of %d before stalling; peak RSS grew %d KiB"
          % (sent // MB, TOTAL // MB, grew))
    assert sent < IN_FLIGHT_MAX
    assert grew < 16 * 1024
    s.close()
