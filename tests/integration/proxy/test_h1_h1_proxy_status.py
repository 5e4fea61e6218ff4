"""Every error says where it came from (RFC 9209 Proxy-Status): each class of answer portico
generates carries `Proxy-Status: NAME; error=TYPE[; details="..."]`, a backend response
relayed after a failed attempt carries error=, received-status= and details, and a response
that went right carries none. NAME is `proxy_name`, by default the host name."""

import re
import socket

import pytest

import portico_testlib as lib

NAME = "edge-7"


def proxy_status(r):
    return r.header("proxy-status") or ""


def parse(ps):
    """'edge-7; error=x; details="y"' -> (name, {param: value})."""
    parts = [p.strip() for p in re.split(r';(?=(?:[^"]*"[^"]*")*[^"]*$)', ps)]
    params = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params[k] = v[1:-1].replace('\\"', '"') if v.startswith('"') else v
    return parts[0], params


@pytest.fixture
def classes(tmp_path, start_backend, start_portico, blackhole):
    """One portico, a server block (by Host NAME.test) per way to fail."""
    b = start_backend("b1")
    dead = lib.free_port()
    port = lib.free_port()
    upstreams = dict(
        ok="server %s;" % b.addr,
        dead="server 127.0.0.1:%d;" % dead,
        hole="server 127.0.0.1:%d; connect_timeout 300ms;" % blackhole,
        slow="server %s; read_timeout 300ms;" % b.addr,
        down="server %s down;" % b.addr,
        one="server %s max_conns=1; read_timeout 5s;" % b.addr,
        mixed="server 127.0.0.1:%d; server %s;" % (dead, b.addr))
    body = "proxy_name %s;\n" % NAME
    for name, servers in upstreams.items():
        body += "upstream %s { %s }\n" % (name, servers)
        body += ("server { listen 127.0.0.1:%d; server_name %s.test; client_max_body_size 100; "
                 "location / { proxy_pass %s; } location = /denied { return 403 \"no\"; } }\n"
                 % (port, name, name))
    conf = lib.make_conf(tmp_path, body)
    return start_portico(conf, [port]), b


def get(p, host, path, *args):
    return lib.curl(p.url(path), "-H", "Host: %s.test" % host, *args)


# (Host, path, expected status, error type, details wanted)
CASES = [
    ("dead", "/name", 502, "connection_refused", "connect() failed: Connection refused"),
    ("hole", "/name", 504, "connection_timeout", "connect() timed out"),
    ("slow", "/hang", 504, "http_response_timeout", "timed out reading the response"),
    ("ok", "/reset", 502, "connection_terminated", None),
    ("ok", "/garbage", 502, "http_protocol_error", "invalid response"),
    ("down", "/name", 503, "destination_unavailable", "no server available"),
    ("ok", "/nowhere/../../x", 400, "http_request_error", None),
    ("ok", "/denied", 403, "proxy_internal_response", None),
]


@pytest.mark.parametrize("host,path,status,error,details", CASES, ids=[c[3] for c in CASES])
def test_h1_h1_proxy_status_each_class(classes, host, path, status, error, details):
    p, _ = classes
    r = get(p, host, path, "--path-as-is")
    assert r.status == status, (r.status, r.headers)
    name, params = parse(proxy_status(r))
    assert name == NAME, proxy_status(r)
    assert params.get("error") == error, proxy_status(r)
    if details is not None:
        assert params.get("details", "").startswith(details), proxy_status(r)
    rid = r.header("x-request-id") or ""
    assert re.fullmatch(r"[0-9a-f]{32}", rid), r.headers
    if status >= 500:
        # the request ID names the same request in the error log
        assert "request_id=%s" % rid in p.read(p.error_log), p.logs()


def test_h1_h1_proxy_status_no_location(tmp_path, start_portico):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, "proxy_name %s;\nserver { listen 127.0.0.1:%d; "
                                   "location = /x { return 200; } }\n" % (NAME, port))
    p = start_portico(conf, [port])
    r = lib.curl(p.url("/nowhere"))
    assert r.status == 404
    assert parse(proxy_status(r)) == (NAME, {"error": "destination_not_found"}), r.headers


def hdr(hs, name):
    return {k.lower(): v for k, v in hs}.get(name, "")


def test_h1_h1_proxy_status_client_errors(classes):
    p, _ = classes
    # 413: over client_max_body_size
    r = get(p, "ok", "/echo", "--data-binary", "x" * 200)
    assert r.status == 413
    assert parse(proxy_status(r))[1]["error"] == "http_request_error", r.headers
    # 400: an invalid Host, with the reason as details
    st, hs, _ = lib.raw_request("127.0.0.1", p.port, "GET", "/name", {"Host": "a@b.test"})
    assert st == 400
    ps = hdr(hs, "proxy-status")
    name, params = parse(ps)
    assert name == NAME and params["error"] == "http_request_error", ps
    assert params["details"].startswith("invalid Host"), ps
    # 405: CONNECT is refused by policy
    st, hs, _ = lib.raw_request("127.0.0.1", p.port, "CONNECT", "example.com:443",
                                {"Host": "example.com:443"})
    assert st == 405
    ps = hdr(hs, "proxy-status")
    assert parse(ps)[1]["error"] == "http_request_denied", ps


def test_h1_h1_proxy_status_garbage_without_request(classes):
    # bytes that are not a request at all: still a Proxy-Status
    p, _ = classes
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 400"), head
    assert ("Proxy-Status: %s; error=http_request_error" % NAME) in head, head


def test_h1_h1_proxy_status_connection_limit(classes):
    p, b = classes
    import threading
    first = []
    t = threading.Thread(target=lambda: first.append(get(p, "one", "/slow/800")))
    t.start()
    lib.wait_until(lambda: b.stats()["active"] >= 2, 3.0, what="first request at the backend")
    r = get(p, "one", "/name")
    t.join(10)
    assert first[0].status == 200
    assert r.status == 503, r
    assert parse(proxy_status(r))[1]["error"] == "connection_limit_reached", r.headers
    assert r.header("retry-after") == "1"


def test_h1_h1_proxy_status_relayed_after_failed_attempt(classes):
    # the first server refuses, the second answers: the 200 says an attempt failed
    p, _ = classes
    seen = []
    for _ in range(4):
        r = get(p, "mixed", "/name")
        assert r.status == 200 and r.body == b"b1", r
        seen.append(proxy_status(r))
    failed = [parse(ps)[1] for ps in seen if ps]
    assert failed, seen
    for params in failed:
        assert params["error"] == "connection_refused", seen
        assert params["received-status"] == "200", seen
        assert params["details"] == "1 earlier attempt failed", seen


def test_h1_h1_proxy_status_none_when_all_went_right(classes):
    p, _ = classes
    r = get(p, "ok", "/name")
    assert r.status == 200 and r.header("proxy-status") is None, r.headers
    # a backend's own error is the backend's: portico adds nothing to it
    r = get(p, "ok", "/status/503")
    assert r.status == 503 and r.header("proxy-status") is None, r.headers
    assert r.header("x-request-id") is not None


def test_h1_h1_proxy_status_default_name_is_host_name(tmp_path, start_portico):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, "server { listen 127.0.0.1:%d; location = /x "
                                   "{ return 200; } }\n" % port)
    p = start_portico(conf, [port])
    r = lib.curl(p.url("/nothing"))
    assert r.status == 404
    name, params = parse(proxy_status(r))
    host = socket.gethostname()
    # a token when the host name is one (RFC 8941 sf-token), else a quoted string
    token = re.fullmatch(r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*", host)
    assert name == (host if token else '"%s"' % host), (name, host)
    assert params["error"] == "destination_not_found"


def test_h1_h1_proxy_status_over_h2(classes):
    p, _ = classes
    r = get(p, "dead", "/name", "--http2-prior-knowledge")
    assert r.status == 502
    name, params = parse(proxy_status(r))
    assert (name, params["error"]) == (NAME, "connection_refused"), r.headers


def test_h1_h1_proxy_name_checked(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text('proxy_name "a\\"b";\nserver { listen 127.0.0.1:1; location / '
                   '{ return 200; } }\n')
    rc, out = lib.run_portico(["-t", "-c", str(bad)])
    assert rc == 1 and "invalid character in proxy_name" in out, out


def test_h1_h1_proxy_status_not_for_a_stale_pooled_connection(make_proxy):
    # A pooled connection the server closed while idle is replayed at once on a new one: a
    # routine race, no sign of trouble, so no Proxy-Status; the access log still lists both
    # attempts, as nginx would.
    p = make_proxy(backend_flags=["--drop-reused"], access_log="json")
    statuses = []
    for _ in range(6):
        r = lib.curl(p.url("/name"))
        assert r.status == 200, r
        statuses.append(r.header("proxy-status"))
    assert statuses == [None] * 6, statuses
    assert p.portico.stop() == 0
    import json
    objs = [json.loads(l) for l in p.portico.read(p.portico.access_log).splitlines()]
    assert any(o["upstream_status"] == "502, 200" for o in objs), objs
