"""HTTP/2 clients -> portico -> HTTP/1.1 backend: the three ways in (ALPN h2, h2c prior
knowledge, Upgrade: h2c), multiplexing, load, big bodies, h2 -> h1 conversions (chunked
request bodies, joined cookies, trailers) and independent streams."""

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

import portico_testlib as lib
from tls_h2_testlib import plain_server, tls_server, upstream

MiB = 1024 * 1024


def need(tool):
    if not shutil.which(tool):
        pytest.skip("%s (nghttp2-client) not installed" % tool)


def seen_headers(body):
    out = {}
    for n, v in json.loads(body)["headers"]:
        out.setdefault(n.lower(), []).append(v)
    return out


# ------------------------------------------------------- ways into h2 ---

def test_h2_h1_tls_alpn_curl(h2_front):
    f = h2_front()
    r, ver = f.curl_tls("/name", "--http2")
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r
    assert ver == "2"


def test_h2_h1_prior_knowledge_curl(h2_front):
    f = h2_front()
    r, ver = f.curl_plain("/name", "--http2-prior-knowledge")
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r
    assert ver == "2"
    # and a body both ways
    r, ver = f.curl_plain("/echo", "--http2-prior-knowledge", "--data-binary", "hello h2c")
    assert r.status == 200 and r.body == b"hello h2c" and ver == "2", r


def test_h2_h1_upgrade_h2c_curl(h2_front):
    f = h2_front()
    r, ver = f.curl_plain("/name", "--http2")
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r
    assert ver == "2", "curl --http2 http:// was not upgraded to h2c"
    assert [s for s, _ in r.interim] == [101], r.interim
    # a second request on the upgraded connection (curl reuses it for the second URL)
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "--http2", "-o", "/dev/null", "-w",
                        "%{http_version} %{num_connects}\n", f.plain_url("/name"), "--next",
                        "--http2", "-o", "/dev/null", "-w", "%{http_version} %{num_connects}\n",
                        f.plain_url("/bytes/100")], stdout=subprocess.PIPE, timeout=20)
    lines = p.stdout.decode().split("\n")
    assert lines[:2] == ["2 1", "2 0"], lines   # both h2, the second on the same connection


def test_h2_h1_upgrade_h2c_head(h2_front):
    f = h2_front()
    r, ver = f.curl_plain("/bytes/1234", "--http2", "-I")
    assert r.rc == 0 and r.status == 200 and ver == "2", r
    assert r.header("content-length") == "1234", r


def test_h2_h1_upgrade_h2c_connection_closes_with_the_client(h2_front):
    # stream 1 of an upgraded connection ends like any stream, so when the client closes,
    # portico closes too (it used to keep such connections in CLOSE-WAIT for ever, holding a
    # descriptor and the configuration snapshot: found by tests/soak)
    f = h2_front()

    def server_side():
        p = subprocess.run(["ss", "-Htn", "( sport = :%d )" % f.plain_port],
                           stdout=subprocess.PIPE, timeout=10)
        return [l for l in p.stdout.decode().splitlines() if l.strip()]

    for path in ("/name", "/bytes/5000") * 6:  # (it depended on how the client's close came)
        r, ver = f.curl_plain(path, "--http2")
        assert r.status == 200 and ver == "2", r
    lib.wait_until(lambda: not server_side(), 5,
                   what="no connection left on portico's side (%s)" % server_side())


# ------------------------------------------------------- multiplexing ---

NGHTTP_STAT = re.compile(r"^\s*\d+\s+\+\S+\s+\+\S+\s+\S+\s+(\d{3})\s+(\S+)\s+(\S+)\s*$", re.M)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_h1_nghttp_multiplexing(h2_front, tls):
    need("nghttp")
    f = h2_front()
    base = ("https://127.0.0.1:%d" % f.tls_port) if tls else f.plain_url("")
    paths = ["/name", "/bytes/100000", "/slow/300", "/headers", "/bytes/7", "/echo",
             "/status/404", "/chunked/70000"]
    p = subprocess.run(["nghttp", "-n", "-s", "-v", "-t", "20"] + [base + x for x in paths],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=40)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out
    stats = NGHTTP_STAT.findall(out)
    got = sorted((path, int(code)) for code, size, path in stats)
    want = sorted((x, 404 if x.startswith("/status") else 200) for x in paths)
    assert got == want, out
    # one TCP connection, one stream per URI, all concurrent
    assert len(re.findall(r"\] Connected", out)) == 1, out
    ids = sorted(set(int(x) for x in re.findall(r"send HEADERS frame <[^>]*stream_id=(\d+)>",
                                                  out)))
    assert len(ids) == len(paths), out
    # nghttp lists streams by completion: the slow one last, the others did not wait for it
    assert stats[-1][2] == "/slow/300", out
    sizes = dict((path, size) for code, size, path in stats)
    assert sizes["/bytes/100000"] in ("97KB", "97K", "100000"), sizes


@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_h1_h2load(h2_front, tls):
    need("h2load")
    f = h2_front(workers=2)
    url = ("https://127.0.0.1:%d/name" % f.tls_port) if tls else f.plain_url("/name")
    p = subprocess.run(["h2load", "-n", "20000", "-c", "50", "-m", "10", "-T", "30", url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=80)
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert m and s, out
    assert tuple(map(int, m.groups()))[2:] == (20000, 20000, 0, 0), out
    assert tuple(map(int, s.groups())) == (20000, 0, 0, 0), out
    if tls:
        assert re.search(r"Application protocol: h2", out), out
    assert f.backend.stats()["requests"] == 20000


# ------------------------------------------------------------ bodies ---

@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_h1_10mib_upload_download(h2_front, tmp_path, tls):
    f = h2_front(extra="    client_max_body_size 0;\n")
    n = 10 * MiB
    src = str(tmp_path / "up.bin")
    sha = lib.write_pattern_file(src, n)
    if tls:
        url, args = f.tls_url("/upload"), f.tls_args() + ["--http2"]
    else:
        url, args = f.plain_url("/upload"), ["--http2-prior-knowledge"]
    r = lib.curl(url, "--data-binary", "@" + src, "-H",
                 "Content-Type: application/octet-stream", *args, timeout=40)
    assert r.status == 200, r
    j = r.json()
    assert (j["length"], j["sha256"]) == (n, sha), j
    rc, status, got_sha, got_len, hdrs, err = lib.curl_sha256(url.replace("/upload",
                                                                          "/bytes/%d" % n),
                                                              *args, timeout=40)
    assert rc == 0 and status == 200, err
    assert (got_len, got_sha) == (n, lib.pattern_sha256(n))
    assert hdrs.get("content-length") == str(n)


def test_h2_h1_python_client_up_down(h2_front):
    """python-h2 client, flow control on both sides: 3 MiB up (with content-length) and down
    on parallel streams of one connection."""
    f = h2_front(extra="    client_max_body_size 0;\n")
    data = os.urandom(3 * MiB)
    with f.client() as c:
        down = c.request("GET", "/bytes/%d" % (3 * MiB))
        up = c.request("POST", "/upload", headers=[("content-length", str(len(data)))],
                       body=data)
        su, sd = c.response(up, 30), c.response(down, 30)
    assert su.status == 200, su
    assert json.loads(su.data)["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads(su.data)["framing"] == "length"
    assert sd.status == 200 and len(sd.data) == 3 * MiB
    assert hashlib.sha256(sd.data).hexdigest() == lib.pattern_sha256(3 * MiB)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_h1_post_chunked(h2_front, tls):
    """An h2 request body without content-length reaches the h1 backend chunked."""
    f = h2_front()
    data = b"".join(b"piece %d;" % i for i in range(20000))
    with f.client(tls=tls) as c:
        sid = c.request("POST", "/upload", headers=[("content-type", "text/plain")], body=data)
        st = c.response(sid, 20)
    assert st.status == 200, st
    j = json.loads(st.data)
    assert j["framing"] == "chunked", j
    assert (j["length"], j["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_h2_h1_post_empty_body_end_stream_on_data(h2_front):
    """HEADERS without END_STREAM, then an empty DATA with END_STREAM: a complete request."""
    f = h2_front()
    with f.client(tls=False) as c:
        sid = c.request("POST", "/upload", body=b"")
        st = c.response(sid, 10)
    assert st.status == 200, st
    assert json.loads(st.data)["length"] == 0


# ------------------------------------------------------- conversions ---

@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_h1_cookies_joined(h2_front, tls):
    f = h2_front()
    with f.client(tls=tls) as c:
        st = c.get("/headers", headers=[("cookie", "a=1"), ("x-between", "y"),
                                        ("cookie", "b=2")])
    assert st.status == 200, st
    seen = seen_headers(st.data)
    assert seen.get("cookie") == ["a=1; b=2"], seen


def test_h2_h1_host_from_authority(h2_front):
    f = h2_front()
    with f.client(tls=False, authority="example.test:8080") as c:
        st = c.get("/headers")
    seen = seen_headers(st.data)
    assert seen.get("host") == ["example.test:8080"], seen
    assert seen.get("x-forwarded-proto") == ["http"], seen
    assert json.loads(st.data)["version"] == "HTTP/1.1"


def trailer_front(start_portico_in, backend):
    port = lib.free_port()
    p = start_portico_in(upstream("app", [backend.addr]) + plain_server(port), [port],
                         name="fe")
    return p, port


def test_h2_h1_request_trailers(start_portico_in, recording_backend):
    """h2 request trailers are sent to the h1 backend in the chunked body's trailer part."""
    rb = recording_backend()
    p, port = trailer_front(start_portico_in, rb)
    from h2_attacks import H2Client
    with H2Client("127.0.0.1", port) as c:
        sid = c.request("POST", "/t", headers=[("te", "trailers"),
                                               ("content-type", "text/plain")],
                        body=b"hello trailers", end_stream=False)
        c.end_stream(sid, trailers=[("x-checksum", "abc123")])
        st = c.response(sid, 10)
    assert st.status == 200, st
    assert len(rb.requests) == 1, rb.requests
    raw = rb.requests[0]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), raw
    assert b"hello trailers" in body, raw
    assert re.search(rb"\r\n0\r\n(?:[^\r]*\r\n)*x-checksum: ?abc123\r\n(?:[^\r]*\r\n)*\r\n$",
                     body, re.I), raw


def test_h2_h1_response_trailers(start_portico_in, recording_backend):
    """Trailers of a chunked h1 response reach the h2 client as a trailing HEADERS frame."""
    rb = recording_backend(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                           b"Transfer-Encoding: chunked\r\nTrailer: X-Resp-Sum\r\n\r\n"
                           b"5\r\nhello\r\n0\r\nX-Resp-Sum: 42\r\n\r\n")
    p, port = trailer_front(start_portico_in, rb)
    from h2_attacks import H2Client
    with H2Client("127.0.0.1", port) as c:
        st = c.get("/t", headers=[("te", "trailers")])
    assert st.status == 200 and bytes(st.data) == b"hello", st
    assert st.trailers is not None and ("x-resp-sum", "42") in st.trailers, st.trailers


def test_h2_h1_response_trailers_drop_connection_specific_fields(start_portico_in,
                                                                 recording_backend):
    rb = recording_backend(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                           b"Transfer-Encoding: chunked\r\nTrailer: X-Resp-Sum\r\n\r\n"
                           b"5\r\nhello\r\n0\r\nX-Resp-Sum: 42\r\n" + lib.FORBIDDEN_TRAILER_FIELDS +
                           b"X-After: 1\r\n\r\n")
    p, port = trailer_front(start_portico_in, rb)
    from h2_attacks import H2Client
    with H2Client("127.0.0.1", port) as c:
        st = c.get("/t", headers=[("te", "trailers")])
    assert st.status == 200 and bytes(st.data) == b"hello" and st.reset is None, st
    assert st.trailers == [("x-resp-sum", "42"), ("x-after", "1")], st.trailers
    # a strict client (curl and nghttp2 check every field) gets the response, not a reset
    r = lib.curl("http://127.0.0.1:%d/t" % port, "--http2-prior-knowledge")
    assert r.rc == 0 and r.status == 200 and r.body == b"hello", r
    if shutil.which("nghttp"):
        out = subprocess.run(["nghttp", "-v", "http://127.0.0.1:%d/t" % port],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        text = out.stdout.decode(errors="replace")
        assert out.returncode == 0 and "RST_STREAM" not in text, text
        assert "x-resp-sum: 42" in text and "transfer-encoding" not in text.split("hello")[-1]


def test_h2_h1_request_trailers_drop_forbidden_fields(start_portico_in, recording_backend):
    rb = recording_backend()
    p, port = trailer_front(start_portico_in, rb)
    from h2_attacks import H2Client
    with H2Client("127.0.0.1", port) as c:
        sid = c.request("POST", "/t", headers=[("te", "trailers")], body=b"hello trailers",
                        end_stream=False)
        c.end_stream(sid, trailers=[("x-checksum", "abc123"), ("host", "evil.example"),
                                    ("x-forwarded-for", "192.0.2.66"),
                                    ("forwarded", "for=192.0.2.66"), ("x-last", "z")])
        st = c.response(sid, 10)
    assert st.status == 200, st
    assert len(rb.requests) == 1, rb.requests
    body = rb.requests[0].partition(b"\r\n\r\n")[2]
    trailer = body[body.rindex(b"\r\n0\r\n") + 5:]
    assert trailer.lower() == b"x-checksum: abc123\r\nx-last: z\r\n\r\n", body


# ---------------------------------------------------- stream isolation ---

@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_h1_slow_stream_does_not_stall_others(h2_front, tls):
    f = h2_front()
    with f.client(tls=tls) as c:
        slow = c.request("GET", "/slow/3000")
        fast = [c.request("GET", "/name") for _ in range(5)]
        big = c.request("GET", "/bytes/%d" % (2 * MiB))
        c.wait(lambda: all(c.streams[s].finished for s in fast + [big]), 10)
        pending_slow = not c.streams[slow].finished
        st_slow = c.response(slow, 10)
    for s in fast:
        st = c.streams[s]
        assert st.status == 200 and bytes(st.data) == b"b1", st
        assert st.done_seq < st_slow.done_seq, (st, st_slow)
    assert c.streams[big].status == 200 and len(c.streams[big].data) == 2 * MiB
    assert c.streams[big].done_seq < st_slow.done_seq
    assert pending_slow, "the fast streams only finished after the slow one"
    assert st_slow.status == 200 and bytes(st_slow.data) == b"slow", st_slow


def test_h2_h1_stalled_upload_does_not_block_other_streams(h2_front):
    """A stream whose backend does not read (/hang, body held back) keeps its own window
    closed; other streams on the connection still upload and finish."""
    f = h2_front(extra="    client_max_body_size 0;\n", read_timeout="20s")
    with f.client(tls=False) as c:
        stuck = c.request("POST", "/hang", headers=[("content-length", str(4 * MiB))],
                          end_stream=False)
        # push what flow control lets through on the stuck stream (at most its window)
        sent = c.send_available(stuck, b"x" * (4 * MiB))
        assert 0 < sent < 4 * MiB, sent
        data = os.urandom(MiB)
        ok = c.request("POST", "/upload", headers=[("content-length", str(len(data)))],
                       body=data)
        st = c.response(ok, 20)
        assert st.status == 200, st
        assert json.loads(st.data)["sha256"] == hashlib.sha256(data).hexdigest()
        assert not c.streams[stuck].finished


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("mode", ["h1", "h2c", "tls"])
def test_h2_h1_upload_to_slow_reading_backend(certs, start_portico_in, recording_backend,
                                              tmp_path, mode):
    """The backend reads slowly through a small receive buffer, so portico's writes to it
    block and resume on write events.  The h2 client's flow-control window must be
    reopened then too (the body only moves as the backend takes it): the upload finishes.
    h1 is the control."""
    rb = recording_backend(rcvbuf=8192, read_delay=0.002)
    port, tport = lib.free_port(), lib.free_port()
    cert, key = certs.pair("localhost")
    extra = "    client_max_body_size 0;\n"
    start_portico_in(upstream("app", [rb.addr], read_timeout="30s", send_timeout="30s")
                     + plain_server(port, extra=extra)
                     + tls_server(tport, cert, key, "localhost", extra=extra),
                     [port, tport], name="fe")
    n = 3 * MiB
    src = str(tmp_path / "up.bin")
    lib.write_pattern_file(src, n)
    if mode == "tls":
        url = "https://localhost:%d/up" % tport
        args = ["--http2", "--resolve", "localhost:%d:127.0.0.1" % tport, "--cacert", certs.ca]
    else:
        url = "http://127.0.0.1:%d/up" % port
        args = ["--http1.1"] if mode == "h1" else ["--http2-prior-knowledge"]
    r = lib.curl(url, "--data-binary", "@" + src, *args, timeout=30)
    assert r.status == 200 and r.body == b"ok", \
        "upload stalled: %r (backend got %d request(s))" % (r, len(rb.requests))
    assert len(rb.requests) == 1
    head, _, body = rb.requests[0].partition(b"\r\n\r\n")
    assert len(body) == n


@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_h1_upload_repeated_no_flow_control_stall(h2_front, tmp_path, tls):
    """20 fast 10 MiB uploads in a row (curl, one connection each): every one completes.
    A WINDOW_UPDATE that portico queues but does not send (e.g. when the backend takes the
    body on a later write event) leaves the client waiting for window: the upload hangs."""
    f = h2_front(extra="    client_max_body_size 0;\n")
    n = 10 * MiB
    src = str(tmp_path / "up.bin")
    sha = lib.write_pattern_file(src, n)
    if tls:
        url, args = f.tls_url("/upload"), f.tls_args() + ["--http2"]
    else:
        url, args = f.plain_url("/upload"), ["--http2-prior-knowledge"]
    for i in range(20):
        r = lib.curl(url, "--data-binary", "@" + src, "-w", "\n%{size_upload}", *args,
                     timeout=10)
        assert r.status == 200, "upload %d of 20 stalled: %r" % (i + 1, r)
        body, _, uploaded = r.body.rpartition(b"\n")
        j = json.loads(body)
        assert (j["length"], j["sha256"]) == (n, sha), j
