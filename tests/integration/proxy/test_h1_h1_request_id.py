"""Request IDs end to end: client -> portico -> backend -> response -> access log -> error log.

- no X-Request-ID from the client: portico makes one (32 lower-case hex digits), sends it to
  the backend, returns it to the client and writes it in the access log and in every
  error-log line about that request;
- an X-Request-ID from a client in trusted_proxies is kept (if it is 1-128 characters of
  [A-Za-z0-9._~:/+=@-]); from anyone else it is replaced, never forwarded twice;
- W3C traceparent passes through untouched; with `tracing on` a request without a valid one
  gets one, whose trace-id is the request ID."""

import collections
import json
import re

import pytest

import portico_testlib as lib

HEX32 = re.compile(r"[0-9a-f]{32}")


def backend_headers(r):
    """The request headers the backend saw (/headers): {lower name: [values]}."""
    seen = collections.defaultdict(list)
    for n, v in json.loads(r.body)["headers"]:
        seen[n.lower()].append(v)
    return seen


def access_lines(p):
    p.stop()
    return [json.loads(l) for l in p.read(p.access_log).splitlines() if l.strip()]


@pytest.fixture
def rid_proxy(tmp_path, start_backend, start_portico):
    def _make(server_extra="", location_extra="", workers=2, servers=None):
        b = start_backend("b1")
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(
            port, servers(b) if servers else [b.addr], server_extra=server_extra,
            location_extra=location_extra), workers=workers, access_log="json")
        return start_portico(conf, [port]), b
    return _make


def test_h1_h1_request_id_generated_end_to_end(rid_proxy):
    dead = lib.free_port()
    p, b = rid_proxy(servers=lambda b: ["127.0.0.1:%d" % dead, b.addr],
                     location_extra="        server_timing off;")
    ids = []
    for _ in range(6):
        r = lib.curl(p.url("/headers"))
        assert r.status == 200, r
        rid = r.header("x-request-id")
        assert HEX32.fullmatch(rid or ""), r.headers
        # the backend got the same ID, once
        assert backend_headers(r)["x-request-id"] == [rid], r.body
        ids.append(rid)
    assert len(set(ids)) == len(ids), ids
    # a request whose first attempt failed: its error-log line names it
    log = p.read(p.error_log)
    failed = re.findall(r"connect\(\) failed: Connection refused \(GET /headers\) "
                        r"request_id=([0-9a-f]{32})", log)
    assert failed and set(failed) <= set(ids), log
    # the access log has every ID
    objs = access_lines(p)
    assert sorted(o["request_id"] for o in objs) == sorted(ids), objs  # two workers: any order
    # and the failed attempt shows in that request's upstream lists
    retried = [o for o in objs if o["request_id"] == failed[0]][0]
    assert retried["upstream_addr"] == "127.0.0.1:%d, %s" % (dead, b.addr), retried
    assert retried["upstream_status"] == "502, 200", retried


def test_h1_h1_request_id_unique_across_workers(rid_proxy):
    p, _ = rid_proxy(workers=2)
    ids = set()
    for _ in range(200):
        st, hs, _ = lib.raw_request("127.0.0.1", p.port, "GET", "/name")
        assert st == 200
        ids.add({k.lower(): v for k, v in hs}["x-request-id"])
    assert len(ids) == 200 and all(HEX32.fullmatch(i) for i in ids)


def test_h1_h1_request_id_from_untrusted_client_replaced(rid_proxy):
    p, _ = rid_proxy()
    r = lib.curl(p.url("/headers"), "-H", "X-Request-ID: client-chosen-1")
    rid = r.header("x-request-id")
    assert HEX32.fullmatch(rid), r.headers
    assert backend_headers(r)["x-request-id"] == [rid], r.body


@pytest.mark.parametrize("value,kept", [
    ("abc-123_ok.x:y/z+w=v@u~t", True),
    ("a" * 128, True),
    ("a" * 129, False),
    ("has space", False),
    ('quo"te', False),
])
def test_h1_h1_request_id_from_trusted_proxy(rid_proxy, value, kept):
    p, _ = rid_proxy(server_extra="    trusted_proxies 127.0.0.1;")
    r = lib.curl(p.url("/headers"), "-H", "X-Request-ID: %s" % value)
    rid = r.header("x-request-id")
    if kept:
        assert rid == value, r.headers
    else:
        assert HEX32.fullmatch(rid), r.headers
    assert backend_headers(r)["x-request-id"] == [rid], r.body
    assert [o["request_id"] for o in access_lines(p)] == [rid]


def test_h1_h1_request_id_backend_own_kept(rid_proxy):
    # a backend that answers with its own X-Request-ID: the response carries one, not two
    p, _ = rid_proxy(server_extra="    trusted_proxies 127.0.0.1;")
    r = lib.curl(p.url("/headers"), "-H", "X-Request-ID: abc")
    assert [v for n, v in r.headers if n.lower() == "x-request-id"] == ["abc"], r.headers


def test_h1_h1_request_id_over_h2(rid_proxy):
    p, _ = rid_proxy()
    r = lib.curl(p.url("/headers"), "--http2-prior-knowledge")
    assert r.status == 200
    rid = r.header("x-request-id")
    assert HEX32.fullmatch(rid) and backend_headers(r)["x-request-id"] == [rid]


TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_h1_h1_traceparent_passes_through(rid_proxy):
    p, _ = rid_proxy()
    r = lib.curl(p.url("/headers"), "-H", "traceparent: %s" % TP, "-H", "tracestate: k=v")
    seen = backend_headers(r)
    assert seen["traceparent"] == [TP] and seen["tracestate"] == ["k=v"], seen
    # tracing off: none is made up
    assert "traceparent" not in backend_headers(lib.curl(p.url("/headers")))


def test_h1_h1_tracing_on_generates_traceparent(rid_proxy):
    p, _ = rid_proxy(location_extra="        tracing on;")
    r = lib.curl(p.url("/headers"))
    seen = backend_headers(r)
    tp = seen["traceparent"]
    assert len(tp) == 1 and re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", tp[0]), seen
    assert tp[0][3:35] == r.header("x-request-id"), (tp, r.headers)
    assert tp[0][36:52] != "0" * 16
    # a valid one is kept as it is
    seen = backend_headers(lib.curl(p.url("/headers"), "-H", "traceparent: %s" % TP,
                                    "-H", "tracestate: k=v"))
    assert seen["traceparent"] == [TP] and seen["tracestate"] == ["k=v"], seen
    # an invalid one starts a new trace, and its tracestate goes with it
    seen = backend_headers(lib.curl(p.url("/headers"), "-H", "traceparent: 00-xyz-01",
                                    "-H", "tracestate: k=v"))
    assert len(seen["traceparent"]) == 1 and seen["traceparent"][0] != "00-xyz-01", seen
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", seen["traceparent"][0])
    assert "tracestate" not in seen, seen
