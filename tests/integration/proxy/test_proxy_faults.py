"""Fault injection in HTTP locations (`fault delay`, `fault abort STATUS|reset`, percent=,
`fault_header NAME trusted=CIDR`): the share of requests hit is measured over 2 000 requests,
the delay over many (never tighter than a loaded machine allows: at least the configured
value, the median within a generous bound), and each fault is logged and answered like a real
failure."""

import http.client
import json
import os
import statistics
import time

import pytest

import portico_testlib as lib


def h2_two_requests(port, headers):
    """Two requests on one h2c connection (prior knowledge), the first with headers: what each
    got ("reset CODE" or the status)."""
    import h2.config
    import h2.connection
    import h2.events
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    base = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
    c.send_headers(1, base + headers, end_stream=True)
    c.send_headers(3, base, end_stream=True)
    s.sendall(c.data_to_send())
    got = {}
    try:
        while len(got) < 2:
            d = s.recv(65536)
            if not d:
                break
            for e in c.receive_data(d):
                if isinstance(e, h2.events.StreamReset):
                    got[e.stream_id] = "reset %d" % e.error_code
                elif isinstance(e, h2.events.ResponseReceived):
                    got[e.stream_id] = dict(e.headers)[b":status"].decode()
            s.sendall(c.data_to_send())
    finally:
        s.close()
    return [got.get(1), got.get(3)]


def statuses(port, n, path="/", headers=None):
    """n GETs over keep-alive connections (a new one after a close); status counts (None for a
    request that got no answer)."""
    counts = {}
    conn = None
    for _ in range(n):
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            r.read()
            st = r.status
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (http.client.HTTPException, ConnectionError, OSError):
            st = None
            conn.close()
            conn = None
        counts[st] = counts.get(st, 0) + 1
    if conn is not None:
        conn.close()
    return counts


@pytest.mark.hard_timeout(240)
def test_fault_abort_share_over_2000_requests(make_proxy):
    p = make_proxy(location_extra="fault abort 503 percent=30;", access_log="off")
    counts = statuses(p.port, 2000)
    share = counts.get(503, 0) / 2000.0
    print("fault abort 503 percent=30: %s -> %.1f %%" % (counts, share * 100))
    assert set(counts) <= {200, 503}, counts
    assert abs(share - 0.30) <= 0.05, counts


@pytest.mark.hard_timeout(240)
def test_fault_abort_reset_share(make_proxy):
    p = make_proxy(location_extra="fault abort reset percent=20;")
    counts = statuses(p.port, 2000)
    share = counts.get(None, 0) / 2000.0
    print("fault abort reset percent=20: %s -> %.1f %%" % (counts, share * 100))
    assert set(counts) <= {200, None}, counts
    assert abs(share - 0.20) <= 0.05, counts
    # logged like a backend dying before its answer: 502 in the access log
    log = p.portico.read(p.portico.access_log)
    assert " 502 " in log
    assert "fault abort reset" in p.portico.read(p.portico.error_log)


def test_fault_abort_status_answer_says_where_it_came_from(make_proxy):
    p = make_proxy(location_extra="fault abort 503;")
    st, hdrs, body = lib.get(p.port, "/")
    assert st == 503 and body == b"503 Service Unavailable\n"
    ps = dict((k.lower(), v) for k, v in hdrs).get("proxy-status", "")
    assert 'details="fault abort"' in ps, hdrs
    # the backend never saw it
    assert lib.wait_until(lambda: " 503 " in p.portico.read(p.portico.access_log), timeout=5)


@pytest.mark.hard_timeout(120)
def test_fault_delay_is_at_least_the_value(make_proxy):
    p = make_proxy(location_extra="fault delay 200ms;")
    times = []
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        for _ in range(25):
            t0 = time.monotonic()
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            times.append(time.monotonic() - t0)
            assert r.status == 200
    finally:
        conn.close()
    med = statistics.median(times)
    print("fault delay 200ms: min %.3f median %.3f max %.3f" % (min(times), med, max(times)))
    assert min(times) >= 0.200, times
    assert med <= 0.200 * 1.10 + 0.3, times  # generous: a loaded machine adds its own


@pytest.mark.hard_timeout(120)
def test_fault_delay_percent(make_proxy):
    p = make_proxy(location_extra="fault delay 100ms percent=50;")
    slow = 0
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        for _ in range(100):
            t0 = time.monotonic()
            conn.request("GET", "/")
            conn.getresponse().read()
            if time.monotonic() - t0 >= 0.100:
                slow += 1
    finally:
        conn.close()
    # 50 % of 100: 30 to 75 allows for a slow machine making a fast request slow
    assert 30 <= slow <= 75, slow


def test_fault_header_from_trusted_only(tmp_path, start_backend, start_portico):
    b = start_backend("b1")
    port = lib.free_port()
    body = """upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    location / {
        proxy_pass app;
        fault abort 503;
        fault_header X-Portico-Fault trusted=127.0.0.0/8;
    }
    location /untrusted/ {
        proxy_pass app;
        fault abort 503;
        fault_header X-Portico-Fault trusted=10.0.0.0/8;
    }
}
""" % (b.addr, port)
    p = start_portico(lib.make_conf(tmp_path, body), [port])
    # no header: no fault
    assert lib.get(port, "/")[0] == 200
    # the header from a trusted address: the location's rule, or the fault it names
    assert lib.get(port, "/", {"X-Portico-Fault": "1"})[0] == 503
    assert lib.get(port, "/", {"X-Portico-Fault": "abort=418"})[0] == 418
    t0 = time.monotonic()
    st, _, body = lib.get(port, "/headers", {"X-Portico-Fault": "delay=300ms"})
    assert st == 200 and time.monotonic() - t0 >= 0.3
    # the header is portico's: the backend does not get it
    names = [n.lower() for n, _ in json.loads(body)["headers"]]
    assert "x-portico-fault" not in names, names
    counts = statuses(port, 3, headers={"X-Portico-Fault": "abort=reset"})
    assert counts == {None: 3}, counts
    # over HTTP/2 the stream is reset, and the connection serves the next one
    assert h2_two_requests(port, [("x-portico-fault", "abort=reset")]) == ["reset 2", "200"]
    # from an address the location does not trust: ignored, logged
    st, hdrs, _ = lib.get(port, "/untrusted/", {"X-Portico-Fault": "abort=503"})
    assert st == 404 and "b1" in [v for k, v in hdrs if k.lower() == "x-backend"], hdrs
    assert "which fault_header does not trust" in p.read(p.error_log)


def test_fault_config_errors(tmp_path):
    def check(loc):
        path = os.path.join(str(tmp_path), "f.conf")
        with open(path, "w") as f:
            f.write("error_log stderr notice;\naccess_log off;\n"
                    "upstream app { server 127.0.0.1:9; }\n"
                    "server { listen 127.0.0.1:7001;\n location / {\n%s\n } }\n" % loc)
        return lib.run_portico(["-t", "-c", path])

    for loc, what in [
        ("proxy_pass app; fault abort;", "needs a status or \"reset\""),
        ("proxy_pass app; fault abort 200;", "a status from 400 to 599"),
        ("proxy_pass app; fault delay;", "fault delay needs a time"),
        ("proxy_pass app; fault drop percent=5;", 'unknown fault "drop" here (delay, abort)'),
        ("proxy_pass app; fault delay 1s percent=101;", 'invalid percent "101"'),
        ("proxy_pass app; fault delay 1s percent=5 x;", "invalid fault parameter"),
        ("proxy_pass app; fault delay 1s; fault delay 2s;", "is duplicate"),
        ("proxy_pass app; fault_header X-F;", "fault_header needs trusted=CIDR"),
        ("proxy_pass app; fault_header X-F trusted=nope;", 'invalid address or CIDR "nope"'),
        ("return 200 ok; fault abort 503;", "work in locations with proxy_pass"),
    ]:
        rc, out = check(loc)
        assert rc == 1 and what in out and "f.conf:" in out, (loc, out)
    rc, out = check("proxy_pass app; fault delay 250ms percent=12.5; fault abort 503 "
                    "percent=1; fault_header X-F trusted=127.0.0.1 trusted=::1;")
    assert rc == 0, out
