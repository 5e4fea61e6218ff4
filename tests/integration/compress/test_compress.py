"""Response compression (gzip, brotli, zstd) through portico, over HTTP/1.1 and HTTP/2 (h2c)
clients: what the client decodes is what the backend sent, the headers say so (Content-Encoding,
Vary, no Content-Length, weak ETag), the coding follows Accept-Encoding, and every case where
compression must not happen leaves the response untouched."""

import hashlib
import socket
import time
import zlib

import brotli
import pytest
import zstandard

import portico_testlib as lib
from compress_backend import gen_iter, gen_sha256

H2 = ("--http2-prior-knowledge",)
CLIENTS = {"h1": (), "h2": H2}


def decode(coding, data):
    if coding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if coding == "br":
        return brotli.decompress(data)
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    assert coding is None, coding
    return data


def fetch(p, path, ae=None, client="h1", extra=()):
    args = list(CLIENTS[client]) + list(extra)
    if ae is not None:
        args += ["-H", "Accept-Encoding: " + ae]
    r = lib.curl(p.url(path), *args)
    assert r.rc == 0, r
    return r


@pytest.mark.parametrize("client", ["h1", "h2"])
@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("framing", ["cl", "chunked", "close"])
def test_compress_decodes(compress_proxy, client, coding, framing):
    p, b = compress_proxy()
    n = 300000
    r = fetch(p, "/gen?n=%d&framing=%s&h=ETag:%%22v1%%22" % (n, framing), coding, client)
    assert r.status == 200
    assert r.header("content-encoding") == coding
    assert r.header("vary") == "Accept-Encoding"
    assert r.header("content-length") is None, r
    if client == "h1":
        assert r.header("transfer-encoding") == "chunked"
    assert r.header("etag") == 'W/"v1"'
    assert len(r.body) < n / 2, "not compressed: %d bytes" % len(r.body)
    body = decode(coding, r.body)
    assert len(body) == n
    assert hashlib.sha256(body).hexdigest() == gen_sha256("text", n)


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_curl_compressed(compress_proxy, client):
    """curl --compressed offers what it can decode (here: deflate, gzip, br, zstd) and decodes
    it: portico's preference picks zstd."""
    p, _ = compress_proxy()
    r = fetch(p, "/gen?n=100000", None, client, ["--compressed"])
    assert r.header("content-encoding") == "zstd"
    assert hashlib.sha256(r.body).hexdigest() == gen_sha256("text", 100000)


@pytest.mark.parametrize("ae,want", [
    ("gzip", "gzip"),
    ("gzip, deflate, br", "br"),
    ("gzip, deflate, br, zstd", "zstd"),
    ("zstd;q=0.5, gzip;q=0.9", "gzip"),
    ("br;q=0.1, gzip;q=0.2, zstd;q=0", "gzip"),
    ("*", "zstd"),
    ("*, zstd;q=0", "br"),
    ("gzip;q=0", None),
    ("*;q=0", None),
    ("identity", None),
    ("gzip;q=0.5, identity", None),
    ("deflate", None),
    ("", None),
    (None, None),
])
def test_negotiation(compress_proxy, ae, want):
    p, _ = compress_proxy()
    r = fetch(p, "/gen?n=5000", ae)
    assert r.header("content-encoding") == want, r
    assert r.header("vary") == "Accept-Encoding"
    if want is None:
        assert r.header("content-length") == "5000"
    assert hashlib.sha256(decode(want, r.body)).hexdigest() == gen_sha256("text", 5000)


def test_only_enabled_codings(compress_proxy):
    """A location offers the codings it enables; inheritance main -> server -> location."""
    p, _ = compress_proxy(server_extra="    gzip on;\n    zstd on;\n",
                          location_extra="        zstd off;\n")
    assert fetch(p, "/gen?n=5000", "zstd, br, gzip").header("content-encoding") == "gzip"
    assert fetch(p, "/gen?n=5000", "br, zstd").header("content-encoding") is None


def test_off_by_default(compress_proxy):
    p, _ = compress_proxy(server_extra="")
    r = fetch(p, "/gen?n=5000", "gzip, br, zstd")
    assert r.header("content-encoding") is None
    assert r.header("vary") is None
    assert r.header("content-length") == "5000"


@pytest.mark.parametrize("client", ["h1", "h2"])
@pytest.mark.parametrize("case,path,extra", [
    ("already encoded", "/gen?n=5000&h=Content-Encoding:%20br", ()),
    ("no-transform", "/gen?n=5000&h=Cache-Control:%20public,%20no-transform", ()),
    ("request no-transform", "/gen?n=5000", ("-H", "Cache-Control: no-transform")),
    ("range request", "/gen?n=5000", ("-H", "Range: bytes=0-99")),
    ("206", "/gen?n=5000&status=206&h=Content-Range:%20bytes%200-4999/9000", ()),
    ("type not listed", "/gen?n=5000&type=image/png", ()),
    ("no type", "/gen?n=5000&type=none", ()),
    ("grpc", "/gen?n=5000&type=application/grpc", ()),
    ("under gzip_min_length", "/gen?n=19", ()),
    ("HTTP/1.0", "/gen?n=5000", ("--http1.0",)),
])
def test_never(compress_proxy, client, case, path, extra):
    if case == "HTTP/1.0" and client == "h2":
        pytest.skip("HTTP/1.0 is an h1 case")
    p, _ = compress_proxy()
    r = fetch(p, path, "gzip, br, zstd", client, extra)
    want_ce = "br" if case == "already encoded" else None
    assert r.header("content-encoding") == want_ce, r
    n = int(r.header("x-gen-length"))
    assert len(r.body) == n, "body changed: %d bytes of %d" % (len(r.body), n)
    if case != "HTTP/1.0":  # HTTP/1.0 answers end with the connection; the rest keep the length
        assert r.header("content-length") == str(n)
    # Vary goes with compressible responses only, compressed or not
    compressible = case in ("request no-transform", "range request", "under gzip_min_length",
                            "HTTP/1.0")
    assert r.header("vary") == ("Accept-Encoding" if compressible else None), r


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_never_without_body(compress_proxy, client):
    """HEAD keeps the GET's length and is not compressed (Vary is there, as on the GET); 204
    and 304 pass untouched."""
    p, _ = compress_proxy()
    r = fetch(p, "/gen?n=5000", "gzip", client, ["-I"])
    assert r.status == 200
    assert r.header("content-encoding") is None
    assert r.header("content-length") == "5000"
    assert r.header("vary") == "Accept-Encoding"
    for status in (204, 304):
        r = fetch(p, "/gen?n=5000&status=%d" % status, "gzip", client)
        assert r.status == status
        assert r.header("content-encoding") is None
        assert r.header("vary") is None
        assert r.body == b""


def test_unknown_length_below_minimum_is_compressed(compress_proxy):
    """gzip_min_length applies when the length is known; a chunked body is compressed."""
    p, _ = compress_proxy()
    r = fetch(p, "/gen?n=10&framing=chunked", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert decode("gzip", r.body) == b"".join(gen_iter("text", 10))


def test_min_length_setting(compress_proxy):
    p, _ = compress_proxy(server_extra="    gzip on;\n    gzip_min_length 4k;\n")
    assert fetch(p, "/gen?n=4095", "gzip").header("content-encoding") is None
    assert fetch(p, "/gen?n=4096", "gzip").header("content-encoding") == "gzip"


def test_types_setting(compress_proxy):
    p, _ = compress_proxy(server_extra="    gzip on;\n    gzip_types application/*;\n")
    assert fetch(p, "/gen?n=5000&type=application/javascript", "gzip").header(
        "content-encoding") == "gzip"
    assert fetch(p, "/gen?n=5000&type=text/css", "gzip").header("content-encoding") is None
    # text/html always, as in nginx
    assert fetch(p, "/gen?n=5000&type=text/html;%20charset=utf-8", "gzip").header(
        "content-encoding") == "gzip"
    p2, _ = compress_proxy(server_extra="    gzip on;\n    gzip_types *;\n")
    assert fetch(p2, "/gen?n=5000&type=image/x-raw", "gzip").header("content-encoding") == "gzip"


@pytest.mark.parametrize("vary,want", [
    ("Origin", "Origin, Accept-Encoding"),
    ("accept-encoding", "accept-encoding"),
    ("Origin,%20Accept-Encoding", "Origin, Accept-Encoding"),
    ("*", "*"),
])
def test_vary_merged(compress_proxy, vary, want):
    p, _ = compress_proxy()
    r = fetch(p, "/gen?n=5000&h=Vary:%20" + vary, "gzip")
    assert r.header("content-encoding") == "gzip"
    assert r.header_all("vary") == [want]


def test_vary_off(compress_proxy):
    p, _ = compress_proxy(server_extra="    gzip on;\n    gzip_vary off;\n")
    r = fetch(p, "/gen?n=5000", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert r.header("vary") is None


@pytest.mark.parametrize("etag,want", [
    ('%22abc%22', 'W/"abc"'),
    ('W/%22abc%22', 'W/"abc"'),
    ('bogus', None),
])
def test_etag_weakened(compress_proxy, etag, want):
    p, _ = compress_proxy()
    r = fetch(p, "/gen?n=5000&h=ETag:%20" + etag + "&h=Accept-Ranges:%20bytes", "br")
    assert r.header("content-encoding") == "br"
    assert r.header("etag") == want
    assert r.header("accept-ranges") is None
    # not compressed: the tag stays as the backend wrote it
    r = fetch(p, "/gen?n=5000&h=ETag:%20" + etag, "identity")
    assert r.header("etag") == etag.replace("%22", '"')


def test_local_answers_not_compressed(compress_proxy, tmp_path):
    """portico's own answers (here a 502: the backend is gone) are not compressed."""
    p, b = compress_proxy(server_extra="    gzip on;\n    gzip_types *;\n    gzip_min_length 0;\n")
    b.stop()
    r = fetch(p, "/gen?n=5000", "gzip")
    assert r.status == 502
    assert r.header("content-encoding") is None
    assert r.body.startswith(b"502")


@pytest.mark.parametrize("client", ["h1", "h2"])
@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_flushes_each_backend_read(compress_proxy, client, coding):
    """A response the backend holds after its first block: that block reaches the client
    decodable before the response ends (each backend read is flushed through the compressor),
    which is what server-sent events and slow pages need."""
    p, b = compress_proxy()
    args = ["curl", "-sS", "-N", "--max-time", "20", "-H", "Accept-Encoding: " + coding] + \
        list(CLIENTS[client]) + [p.url("/gen?n=100000&framing=chunked&hold=1")]
    import subprocess
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    try:
        if coding == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            dec = d.decompress
        elif coding == "br":
            dec = brotli.Decompressor().process
        else:
            dec = zstandard.ZstdDecompressor().decompressobj().decompress
        got = b""
        first = next(gen_iter("text", 16384))
        deadline = time.monotonic() + 10
        while len(got) < len(first):
            assert time.monotonic() < deadline, "first block not decodable before the end"
            chunk = proc.stdout.read1(65536)
            assert chunk, "response ended early"
            got += dec(chunk)
        assert got[:len(first)] == first
        b.release()
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            got += dec(chunk)
        assert hashlib.sha256(got).hexdigest() == gen_sha256("text", 100000)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_h2c_backend(compress_proxy, start_portico, tmp_path):
    """A backend spoken to over HTTP/2 (h2c; here a second portico in front of the generator):
    its DATA goes through the same filter."""
    p1, b = compress_proxy(server_extra="")
    front_port = lib.free_port()
    conf = lib.make_conf(tmp_path, lib.proxy_conf(
        front_port, ["127.0.0.1:%d" % p1.port], upstream_extra="    protocol h2c;\n",
        server_extra="    gzip on;\n    brotli on;\n"))
    front = start_portico(conf, [front_port], name="front")
    for client in ("h1", "h2"):
        r = fetch(front, "/gen?n=200000", "br", client)
        assert r.header("content-encoding") == "br"
        assert hashlib.sha256(decode("br", r.body)).hexdigest() == gen_sha256("text", 200000)


def test_config_errors(tmp_path):
    cases = [
        ("gzip_comp_level 10;", "invalid level \"10\" in \"gzip_comp_level\" (1-9)"),
        ("brotli_comp_level 12;", "(0-11)"),
        ("zstd_comp_level 0;", "(1-19)"),
        ("gzip_types text;", "invalid MIME type \"text\""),
        ("gzip maybe;", "expected on or off"),
        ("gzip_min_length 1x;", "invalid size"),
    ]
    for line, msg in cases:
        conf = lib.make_conf(tmp_path, lib.proxy_conf(lib.free_port(), ["127.0.0.1:9"],
                                                      server_extra="    %s\n" % line))
        path = tmp_path / "c.conf"
        path.write_text(conf)
        rc, out = lib.run_portico(["-t", "-c", str(path)])
        assert rc != 0, line
        assert msg in out, (line, out)
        assert "c.conf:" in out, out  # file:line:col
