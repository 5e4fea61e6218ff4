"""gRPC clients get gRPC errors from portico (grpcio client, tests/tools/grpc_server.py): a call
portico fails itself is answered HTTP 200 with grpc-status and grpc-message in one HEADERS
frame with END_STREAM (trailers-only), as Envoy does, instead of a plain HTTP 502 that grpcio
reports as a metadata error. The codes (docs/operations.md, "reading an error"):

  no server / connect failure      14 UNAVAILABLE
  read_timeout                     4  DEADLINE_EXCEEDED
  max_conns full (overload)        8  RESOURCE_EXHAUSTED
  no location                      12 UNIMPLEMENTED
  anything else (`return 500`)     13 INTERNAL

Each also carries Proxy-Status and X-Request-ID (in the call's trailing metadata)."""

import os
import socket
import threading
import time

import pytest

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
grpc = pytest.importorskip("grpc")
h2 = pytest.importorskip("h2")

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402

import portico_testlib as lib  # noqa: E402
from test_grpc_h2c import SVC, GrpcServer, md  # noqa: E402


@pytest.fixture
def grpc_errors(tmp_path, start_portico):
    """Four listeners, one per way to fail: `dead` (an h2c upstream nobody listens on),
    `slow` (read_timeout 300ms), `limited` (max_conns=1, no queue), `routes` (only
    `location = .../Unary { return 500; }`)."""
    gs = GrpcServer(str(tmp_path))
    ports = dict(dead=lib.free_port(), slow=lib.free_port(), limited=lib.free_port(),
                 routes=lib.free_port())
    dead = lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream dead { server 127.0.0.1:%(dead)d; protocol h2c; connect_timeout 1s; }
upstream slow { server %(gs)s; protocol h2c; read_timeout 300ms; }
upstream limited { server %(gs)s max_conns=1; protocol h2c; read_timeout 10s; }
server { listen 127.0.0.1:%(p_dead)d; location / { proxy_pass dead; } }
server { listen 127.0.0.1:%(p_slow)d; location / { proxy_pass slow; } }
server { listen 127.0.0.1:%(p_limited)d; location / { proxy_pass limited; } }
server { listen 127.0.0.1:%(p_routes)d; location = /portico.test.Echo/Unary { return 500; } }
""" % dict(dead=dead, gs=gs.addr, p_dead=ports["dead"], p_slow=ports["slow"],
           p_limited=ports["limited"], p_routes=ports["routes"]), workers=1)
    p = start_portico(conf, list(ports.values()))
    channels = []

    def channel(name):
        ch = grpc.insecure_channel("127.0.0.1:%d" % ports[name])
        channels.append(ch)
        return ch

    yield p, channel, ports
    for ch in channels:
        ch.close()
    gs.stop()


def failed_call(ch, method, payload=b"x"):
    with pytest.raises(grpc.RpcError) as ei:
        ch.unary_unary(SVC + method)(payload, timeout=10)
    return ei.value


def check_origin(e, error):
    """The call's trailing metadata says where the error came from."""
    tm = md(e.trailing_metadata())
    assert ("error=%s" % error) in tm.get("proxy-status", ""), tm
    assert len(tm.get("x-request-id", "")) == 32, tm


def test_grpc_error_connect_failure_unavailable(grpc_errors):
    p, channel, _ = grpc_errors
    e = failed_call(channel("dead"), "Unary")
    assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
    assert "connection_refused" in e.details(), e.details()
    check_origin(e, "connection_refused")
    # the request ID in the metadata is the one in the error log
    rid = md(e.trailing_metadata())["x-request-id"]
    assert "request_id=%s" % rid in p.read(p.error_log), p.logs()


def test_grpc_error_timeout_deadline_exceeded(grpc_errors):
    _, channel, _ = grpc_errors
    t0 = time.monotonic()
    e = failed_call(channel("slow"), "Sleep", b"2000")
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (e.code(), e.details())
    # portico's read_timeout (300 ms), not the client's deadline (10 s)
    assert time.monotonic() - t0 < 1.5
    assert "http_response_timeout" in e.details(), e.details()
    check_origin(e, "http_response_timeout")


def test_grpc_error_overload_resource_exhausted(grpc_errors):
    _, channel, _ = grpc_errors
    ch = channel("limited")
    holder = []
    t = threading.Thread(target=lambda: holder.append(
        ch.unary_unary(SVC + "Sleep")(b"1500", timeout=10)))
    t.start()
    time.sleep(0.4)  # the first call holds the server's one slot
    e = failed_call(ch, "Unary")
    t.join(10)
    assert holder == [b"slept:1500"]
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())
    check_origin(e, "connection_limit_reached")
    # and the slot is free again
    assert ch.unary_unary(SVC + "Unary")(b"y", timeout=10) == b"unary:y"


def test_grpc_error_no_route_unimplemented_and_internal(grpc_errors):
    _, channel, _ = grpc_errors
    ch = channel("routes")
    e = failed_call(ch, "Nope")
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED, (e.code(), e.details())
    check_origin(e, "destination_not_found")
    e = failed_call(ch, "Unary")
    assert e.code() == grpc.StatusCode.INTERNAL, (e.code(), e.details())
    check_origin(e, "proxy_internal_response")


def test_grpc_error_is_trailers_only(grpc_errors):
    """On the wire: one HEADERS frame with END_STREAM, :status 200, grpc-status; no DATA."""
    _, _, ports = grpc_errors
    s = socket.create_connection(("127.0.0.1", ports["dead"]), timeout=5)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                              header_encoding="utf-8"))
    c.initiate_connection()
    c.send_headers(1, [(":method", "POST"), (":scheme", "http"),
                       (":authority", "127.0.0.1"), (":path", SVC + "Unary"),
                       ("content-type", "application/grpc"), ("te", "trailers")])
    c.send_data(1, b"\x00\x00\x00\x00\x01x", end_stream=True)
    s.sendall(c.data_to_send())
    events = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
            isinstance(ev, h2.events.StreamEnded) for ev in events):
        data = s.recv(65536)
        if not data:
            break
        events += c.receive_data(data)
        s.sendall(c.data_to_send())
    s.close()
    resp = [ev for ev in events if isinstance(ev, h2.events.ResponseReceived)]
    assert len(resp) == 1, events
    assert resp[0].stream_ended is not None, "the HEADERS frame did not end the stream"
    hs = dict(resp[0].headers)
    assert hs[":status"] == "200" and hs["grpc-status"] == "14", hs
    assert hs["content-type"] == "application/grpc", hs
    assert "grpc-message" in hs and "proxy-status" in hs and "x-request-id" in hs, hs
    assert not [ev for ev in events if isinstance(ev, (h2.events.DataReceived,
                                                       h2.events.TrailersReceived))], events


def test_grpc_non_grpc_request_keeps_http_errors(grpc_errors):
    # the same failure without content-type application/grpc is a plain 502
    _, _, ports = grpc_errors
    r = lib.curl("http://127.0.0.1:%d/x" % ports["dead"])
    assert r.status == 502, r
    assert r.header("grpc-status") is None
    assert "error=connection_refused" in r.header("proxy-status"), r.headers
