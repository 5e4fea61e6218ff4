"""websocket_ping_interval and websocket_close_on_down:
- a client silent for an interval gets a ping from portico; answering (a pong) keeps the tunnel,
  and a client that keeps talking is never pinged;
- a client that does not answer within the next interval is dropped: it and the backend get
  1001, with an info line;
- with websocket_close_on_down on, a server marked DOWN by active health checks ends its
  tunnels with 1001 on both sides; without it (the default) the tunnel runs on."""

import re
import threading
import time

import portico_testlib as lib
import ws_testlib as wsl


def echo_serve(c, b):
    """A raw backend: health checks get 200 or 503 (b.healthy), a WebSocket handshake a 101,
    then it echoes text frames (unmasked) and records the close code it is sent."""
    line, h = c.read_request()
    if "/health" in line:
        st = "200 OK" if getattr(b, "healthy", True) else "503 Service Unavailable"
        c.send("HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % st)
        return
    c.answer_101(h["sec-websocket-key"])
    r = wsl.FrameReader(c)
    while True:
        try:
            fin, op, data, masked = r.read(30)
        except lib.ConnClosed:
            b.record(("eof",))
            return
        if op == wsl.OP_CLOSE:
            b.record(("close", wsl.close_code_of(data)))
            c.send(wsl.frame(wsl.OP_CLOSE, data, mask=False))
            return
        if op == wsl.OP_PONG:
            b.record(("pong",))
            continue
        c.send(wsl.frame(op, data, mask=False))


def closes(b):
    with b.lock:
        return [e[1] for e in b.log if e[0] == "close"]


def test_ping_answered_keeps_the_tunnel(ws_front, raw_ws_backend):
    rb = raw_ws_backend(echo_serve)
    f = ws_front(servers=[rb.addr], location_extra="websocket_ping_interval 300ms;")
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        reader = wsl.FrameReader(c)
        for _ in range(3):
            # silent: a ping comes within two intervals
            t0 = time.monotonic()
            fin, op, data, masked = reader.read(3)
            assert (op, masked) == (wsl.OP_PING, False), (op, data)
            assert time.monotonic() - t0 < 1.5
            c.send(wsl.frame(wsl.OP_PONG, data))
        c.send(wsl.frame(wsl.OP_TEXT, b"still here"))
        assert reader.read(3)[1:3] == (wsl.OP_TEXT, b"still here")
    # the client's pongs went on to the backend (unsolicited pongs are allowed)
    lib.wait_until(lambda: sum(1 for e in rb.log if e[0] == "pong") >= 3, 3,
                   what="the pongs at the backend")


def test_talking_client_is_never_pinged(ws_front, raw_ws_backend):
    rb = raw_ws_backend(echo_serve)
    f = ws_front(servers=[rb.addr], location_extra="websocket_ping_interval 300ms;")
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        reader = wsl.FrameReader(c)
        for i in range(15):
            c.send(wsl.frame(wsl.OP_TEXT, b"m%d" % i))
            fin, op, data, masked = reader.read(3)
            assert (op, data) == (wsl.OP_TEXT, b"m%d" % i), (op, data)
            time.sleep(0.1)


def test_unanswered_ping_drops_the_client(ws_front, raw_ws_backend):
    rb = raw_ws_backend(echo_serve)
    f = ws_front(servers=[rb.addr], location_extra="websocket_ping_interval 300ms;")
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        reader = wsl.FrameReader(c)
        fin, op, data, masked = reader.read(3)
        assert op == wsl.OP_PING
        # no answer: within about one more interval, the goodbye
        fin, op, data, masked = reader.read(3)
        assert (op, wsl.close_code_of(data)) == (wsl.OP_CLOSE, 1001), (op, data)
        assert c.is_closed(3)
    lib.wait_until(lambda: closes(rb) == [1001], 3, what="1001 at the backend")
    assert "did not answer a ping within websocket_ping_interval" in \
        f.portico.read(f.portico.error_log)


def health_conf(on):
    return ("websocket_close_on_down %s;" % ("on" if on else "off"),
            "health_check http path=/health interval=200ms fall=1 rise=1 timeout=500ms;")


def test_close_on_down_ends_tunnels_of_a_down_server(ws_front, raw_ws_backend):
    rb = raw_ws_backend(echo_serve)
    loc, up = health_conf(True)
    f = ws_front(servers=[rb.addr], location_extra=loc, upstream_extra=up)
    conns = []
    for _ in range(3):
        c = f.raw()
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        conns.append(c)
    rb.healthy = False
    for c in conns:
        fin, op, data, masked = wsl.FrameReader(c).read(5)
        assert (op, wsl.close_code_of(data)) == (wsl.OP_CLOSE, 1001), (op, data)
        c.send(wsl.frame(wsl.OP_CLOSE, wsl.close_payload(1001)))
        assert c.is_closed(3)
        c.close()
    lib.wait_until(lambda: closes(rb) == [1001] * 3, 3, what="1001 at the backend, 3 times")
    log = f.portico.read(f.portico.error_log)
    assert log.count("is DOWN, closing with 1001 (websocket_close_on_down)") == 3, log


def test_without_close_on_down_tunnels_outlive_a_down_server(ws_front, raw_ws_backend):
    rb = raw_ws_backend(echo_serve)
    loc, up = health_conf(False)
    f = ws_front(servers=[rb.addr], location_extra=loc, upstream_extra=up)
    with f.raw() as c:
        r, _ = wsl.raw_ws_connect(c, "/")
        assert r.status == 101
        rb.healthy = False
        lib.wait_until(lambda: "DOWN" in f.portico.read(f.portico.error_log), 5,
                       what="the server marked DOWN")
        reader = wsl.FrameReader(c)
        c.send(wsl.frame(wsl.OP_TEXT, b"alive"))
        assert reader.read(3)[1:3] == (wsl.OP_TEXT, b"alive")
        # well past the check that found it down (websocket_close_on_down acts at once), no
        # close reached the backend, and the tunnel still echoes
        assert lib.stays(lambda: closes(rb) == [], 0.5), rb.log
        c.send(wsl.frame(wsl.OP_TEXT, b"still alive"))
        assert reader.read(3)[1:3] == (wsl.OP_TEXT, b"still alive")
    assert "(websocket_close_on_down)" not in f.portico.read(f.portico.error_log)


def test_tunnel_log_line_keeps_the_request_facts(ws_front, raw_ws_backend):
    """A tunnel keeps only a compact copy of its request (memory per idle tunnel); its access
    log line, written when it closes, still has the request line, host, client, User-Agent,
    Referer, request id and upstream."""
    import json

    rb = raw_ws_backend(echo_serve)
    f = ws_front(servers=[rb.addr], access_log="json")
    with f.raw() as c:
        req, _ = wsl.upgrade_request("/room/7?x=1", host="chat.example",
                                     extra=("User-Agent: ua-test/1.0",
                                            "Referer: http://ref.example/page",
                                            "Cookie: " + "k=v; " * 500))
        c.send(req)
        r = c.read_response(allow_interim=True)
        assert r.status == 101
        rid = r.header("x-request-id")
        assert re.fullmatch(r"[0-9a-f]{32}", rid or ""), r.headers
        c.send(wsl.frame(wsl.OP_TEXT, b"hello"))
        assert wsl.FrameReader(c).read(3)[1:3] == (wsl.OP_TEXT, b"hello")
        c.send(wsl.frame(wsl.OP_CLOSE, wsl.close_payload(1000)))
        wsl.FrameReader(c).read(3)
    line = lib.wait_until(lambda: [ln for ln in f.portico.read(f.portico.access_log).splitlines()
                                   if "/room/7" in ln], 5, what="the tunnel's log line")[0]
    e = json.loads(line)
    assert e["uri"] == "/room/7?x=1" and e["method"] == "GET" and e["status"] == 101, e
    assert e["host"] == "chat.example" and e["remote_addr"] == "127.0.0.1", e
    assert e["user_agent"] == "ua-test/1.0" and e["referer"] == "http://ref.example/page", e
    assert rb.addr in json.dumps(e["upstream_addr"]), e
    assert e["request_id"] == rid, e
