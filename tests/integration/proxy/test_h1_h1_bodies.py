"""Request and response bodies through portico, checked by sha256 both ways."""

import os
import socket
import time

import pytest

import portico_testlib as lib
from portico_testlib import MiB, GiB, RawConn

SIZES = [0, 1 * MiB, 100 * MiB]
IDS = ["0B", "1MiB", "100MiB"]


@pytest.fixture
def bigproxy(make_proxy):
    return make_proxy(server_extra="    client_max_body_size 0;\n")


@pytest.fixture
def pattern_file(tmp_path):
    made = []

    def _make(n):
        path = str(tmp_path / ("pattern-%d.bin" % n))
        sha = lib.write_pattern_file(path, n)
        made.append(path)
        return path, sha

    yield _make
    for p in made:
        os.unlink(p)


@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("n", SIZES, ids=IDS)
def test_h1_h1_post_content_length(bigproxy, pattern_file, n):
    path, sha = pattern_file(n)
    r = lib.curl(bigproxy.url("/upload"), "--data-binary", "@" + path,
                 "-H", "Content-Type: application/octet-stream", "-H", "Expect:", timeout=60)
    assert r.rc == 0 and r.status == 200, r
    j = r.json()
    assert j["length"] == n
    assert j["sha256"] == sha
    if n:  # an empty body may be forwarded with CL 0 or none
        assert j["framing"] == "length"


@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("n", SIZES, ids=IDS)
def test_h1_h1_post_chunked(bigproxy, pattern_file, n):
    path, sha = pattern_file(n)
    r = lib.curl(bigproxy.url("/upload"), "--data-binary", "@" + path,
                 "-H", "Transfer-Encoding: chunked", "-H", "Expect:", timeout=60)
    assert r.rc == 0 and r.status == 200, r
    j = r.json()
    assert j["length"] == n
    assert j["sha256"] == sha
    # contract: a chunked request body stays chunked towards the backend
    assert j["framing"] == "chunked", j


@pytest.mark.parametrize("n", [1, 1 * MiB], ids=["1B", "1MiB"])
def test_h1_h1_echo_both_ways(bigproxy, pattern_file, n):
    path, sha = pattern_file(n)
    r = lib.curl(bigproxy.url("/echo"), "--data-binary", "@" + path, "-H", "Expect:")
    assert r.status == 200, r
    assert r.header("X-Body-Sha256") == sha
    assert r.sha256() == sha
    assert r.header("Content-Length") == str(n)


def test_h1_h1_put_raw_chunked_odd_sizes(bigproxy):
    # A chunked body with tiny, odd and large chunks, extensions and a trailer.
    parts = [b"a", b"bc" * 7, os.urandom(70000), b"z" * 4095]
    body = b"".join(parts)
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + \
        b"0\r\nX-Trailer: t\r\n\r\n"
    with RawConn("127.0.0.1", bigproxy.port, timeout=10) as c:
        c.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(wire), 1000):
            c.send(wire[i:i + 1000])
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == body
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == b"b1"


@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("n", SIZES, ids=IDS)
def test_h1_h1_get_content_length(bigproxy, n):
    rc, status, sha, length, hdrs, err = lib.curl_sha256(bigproxy.url("/bytes/%d" % n))
    assert rc == 0, err
    assert status == 200
    assert hdrs.get("content-length") == str(n)
    assert length == n
    assert sha == lib.pattern_sha256(n) == hdrs.get("x-body-sha256")


@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("n", SIZES, ids=IDS)
def test_h1_h1_get_chunked(bigproxy, n):
    rc, status, sha, length, hdrs, err = lib.curl_sha256(bigproxy.url("/chunked/%d" % n))
    assert rc == 0, err
    assert status == 200
    assert hdrs.get("transfer-encoding", "").lower() == "chunked", hdrs
    assert "content-length" not in hdrs
    assert length == n
    assert sha == lib.pattern_sha256(n)


@pytest.mark.hard_timeout(60)
def test_h1_h1_get_close_delimited(bigproxy):
    n = 20 * MiB
    rc, status, sha, length, hdrs, err = lib.curl_sha256(bigproxy.url("/close/%d" % n))
    assert rc == 0, err
    assert status == 200
    assert length == n and sha == lib.pattern_sha256(n)


@pytest.mark.slow
@pytest.mark.hard_timeout(240)
def test_h1_h1_1g_stream_bounded_rss(make_proxy, tmp_path):
    """1 GiB down and 1 GiB up through one worker; portico's peak RSS stays < 64 MiB."""
    p = make_proxy(server_extra="    client_max_body_size 0;\n",
                   upstream_extra="    read_timeout 30s;\n")
    n = GiB
    rc, status, sha, length, hdrs, err = lib.curl_sha256(p.url("/bytes/%d" % n), timeout=120)
    assert rc == 0, err
    assert status == 200 and length == n
    assert sha == lib.pattern_sha256(n)
    hwm_down = p.portico.vm_hwm_kib()

    zero = str(tmp_path / "zero-1g.bin")
    with open(zero, "wb") as f:
        f.truncate(n)  # sparse: costs no disk
    try:
        r = lib.curl(p.url("/upload"), "-T", zero, "-H", "Expect:", timeout=120)
    finally:
        os.unlink(zero)
    assert r.status == 200, r
    import hashlib
    h = hashlib.sha256()
    z = bytes(MiB)
    for _ in range(n // MiB):
        h.update(z)
    assert r.json() == {"length": n, "sha256": h.hexdigest(), "framing": "length"}
    hwm = p.portico.vm_hwm_kib()
    print("portico VmHWM: %d KiB after 1 GiB down, %d KiB after 1 GiB up" % (hwm_down, hwm))
    assert hwm_down < 64 * 1024, "VmHWM %d KiB after 1 GiB download" % hwm_down
    assert hwm < 64 * 1024, "VmHWM %d KiB after 1 GiB upload" % hwm


@pytest.mark.slow
@pytest.mark.hard_timeout(240)
def test_h1_h1_1g_stream_chunked_bounded_rss(make_proxy, tmp_path):
    p = make_proxy(server_extra="    client_max_body_size 0;\n",
                   upstream_extra="    read_timeout 30s;\n")
    n = GiB
    rc, status, sha, length, hdrs, err = lib.curl_sha256(p.url("/chunked/%d" % n), timeout=120)
    assert rc == 0, err
    assert status == 200 and length == n
    assert sha == lib.pattern_sha256(n)
    zero = str(tmp_path / "zero-1g.bin")
    with open(zero, "wb") as f:
        f.truncate(n)
    try:
        r = lib.curl(p.url("/upload"), "-T", zero, "-H", "Expect:",
                     "-H", "Transfer-Encoding: chunked", timeout=120)
    finally:
        os.unlink(zero)
    assert r.status == 200, r
    j = r.json()
    assert j["length"] == n and j["framing"] == "chunked"
    hwm = p.portico.vm_hwm_kib()
    assert hwm < 64 * 1024, "VmHWM %d KiB after 1 GiB chunked down+up" % hwm


@pytest.mark.hard_timeout(60)
def test_h1_h1_slow_reader_backpressure(make_proxy):
    """A client that stops reading a 256 MiB body must not make portico buffer it."""
    p = make_proxy(upstream_extra="    read_timeout 30s;\n",
                   server_extra="    send_timeout 30s;\n")
    n = 256 * MiB
    c = RawConn("127.0.0.1", p.port, timeout=20)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        c.send("GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        time.sleep(3)  # not reading
        hwm_paused = p.portico.vm_hwm_kib()
        r = c.read_response()
    finally:
        c.close()
    assert r.status == 200 and len(r.body) == n
    import hashlib
    assert hashlib.sha256(r.body).hexdigest() == lib.pattern_sha256(n)
    assert hwm_paused < 64 * 1024, "VmHWM %d KiB while the client was not reading" % hwm_paused


@pytest.mark.hard_timeout(60)
def test_h1_h1_upload_200mib_streamed_in_bounded_memory(make_proxy, pattern_file):
    """A 200 MiB upload is streamed, not buffered: it arrives intact and portico's peak RSS
    stays under 64 MiB."""
    p = make_proxy(server_extra="    client_max_body_size 0;\n")
    path, sha = pattern_file(200 * MiB)
    r = lib.curl(p.url("/upload"), "--data-binary", "@" + path, "-H", "Expect:", timeout=50)
    assert r.status == 200, r
    assert r.json()["sha256"] == sha
    assert p.portico.vm_hwm_kib() < 64 * 1024
