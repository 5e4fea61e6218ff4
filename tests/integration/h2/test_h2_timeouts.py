"""HTTP/2 stream timeouts: a stream whose client stops sending its body is reset after
client_body_timeout, and the backend connection it held is closed, so a slow h2 client cannot
pin backend connections (an HTTP/1.1 client would get 408 and a closed connection)."""

import time

import pytest

from tls_h2_testlib import wait_log


@pytest.mark.hard_timeout(40)
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_stalled_upload_is_reset_and_backend_freed(h2_front, tls):
    f = h2_front(extra="    client_body_timeout 1s;\n", read_timeout="30s")
    with f.client(tls=tls) as c:
        sid = c.request("POST", "/upload", headers=[("content-length", "100000")],
                        body=b"x" * 1000, end_stream=False)
        # the request reached the backend and holds a connection there
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and f.backend.stats()["open"] < 1:
            time.sleep(0.1)
        assert f.backend.stats()["open"] >= 1
        t0 = time.monotonic()
        assert c.wait(lambda: c.streams[sid].finished, timeout=10), c.streams[sid]
        waited = time.monotonic() - t0
        assert c.streams[sid].reset is not None, c.streams[sid]
        assert 0.5 < waited < 8, waited
        # the backend connection the stalled request held is closed
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and f.backend.stats()["open"] != 0:
            time.sleep(0.1)
        assert f.backend.stats()["open"] == 0, "backend connection still held by the stream"
        # the client connection itself is fine: another stream works
        r = c.get("/name")
        assert r.status == 200, r
    assert wait_log(f.portico.error_log, r"timed out sending the request body", 3)
