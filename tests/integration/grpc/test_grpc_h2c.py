"""gRPC through portico (grpcio client, tests/tools/grpc_server.py behind `protocol h2c`):
h2c frontend and TLS frontend (grpc.ssl_channel_credentials with the test CA).  All four call
types, status codes and details, initial and trailing metadata (text and -bin), and a
long-lived stream quieter than the upstream's read_timeout."""

import hashlib
import os
import queue
import select
import signal
import subprocess
import threading
import time

import pytest

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
grpc = pytest.importorskip("grpc")

import portico_testlib as lib  # noqa: E402
from tls_h2_testlib import plain_server, tls_server, upstream  # noqa: E402

SERVER_PY = os.path.join(lib.TOOLS, "grpc_server.py")
SVC = "/portico.test.Echo/"


class GrpcServer:
    def __init__(self, logdir):
        self.err = open(os.path.join(logdir, "grpc-server.err"), "wb")
        self.proc = subprocess.Popen([lib.PYTHON, SERVER_PY, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self.err)
        r, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("grpc_server did not start: %r" % line)
        self.port = int(line.split()[3])
        self.addr = "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        self.err.close()


class Front:
    def __init__(self, portico, plain_port, tls_port, certs, server):
        self.portico = portico
        self.plain_port = plain_port
        self.tls_port = tls_port
        self.certs = certs
        self.server = server
        self.channels = []

    def channel(self, transport):
        if transport == "h2c":
            ch = grpc.insecure_channel("127.0.0.1:%d" % self.plain_port)
        else:
            with open(self.certs.ca, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            ch = grpc.secure_channel("127.0.0.1:%d" % self.tls_port, creds,
                                     options=(("grpc.ssl_target_name_override", "localhost"),))
        self.channels.append(ch)
        return ch


@pytest.fixture
def grpc_front(tmp_path, certs, start_portico_in):
    servers = []

    def _make(read_timeout="1s"):
        gs = GrpcServer(str(tmp_path))
        servers.append(gs)
        plain_port, tls_port = lib.free_port(), lib.free_port()
        cert, key = certs.pair("localhost")
        extra = "    client_max_body_size 0;\n"
        loc = "    location / { proxy_pass grpcapp; }\n"
        body = (upstream("grpcapp", [gs.addr], extra="    protocol h2c;\n",
                         read_timeout=read_timeout)
                + plain_server(plain_port, extra=extra, locations=loc)
                + tls_server(tls_port, cert, key, "localhost", extra=extra, locations=loc))
        p = start_portico_in(body, [plain_port, tls_port], name="fe", workers=2)
        return Front(p, plain_port, tls_port, certs, gs)

    fronts = []
    yield lambda **kw: fronts.append(_make(**kw)) or fronts[-1]
    for f in fronts:
        for ch in f.channels:
            ch.close()
    for s in servers:
        s.stop()


TRANSPORTS = pytest.mark.parametrize("transport", ["h2c", "tls"])


def md(seq):
    return dict(seq or ())


@TRANSPORTS
def test_grpc_unary(grpc_front, transport):
    f = grpc_front()
    ch = f.channel(transport)
    call = ch.unary_unary(SVC + "Unary")
    for payload in (b"hello", b"", os.urandom(1024 * 1024)):
        resp, c = call.with_call(payload, metadata=(("x-client", "t"),), timeout=15)
        assert resp == b"unary:" + payload
        assert c.code() == grpc.StatusCode.OK
        assert md(c.initial_metadata()).get("x-initial") == "yes", c.initial_metadata()
        tm = md(c.trailing_metadata())
        assert tm.get("x-trailer") == "unary-done", tm
        assert tm.get("x-trailer-bin") == hashlib.sha256(payload).digest(), tm


@TRANSPORTS
def test_grpc_server_streaming(grpc_front, transport):
    f = grpc_front()
    it = f.channel(transport).unary_stream(SVC + "ServerStream")(b"25", timeout=15)
    msgs = list(it)
    assert msgs == [b"msg-%d" % i for i in range(25)]
    assert it.code() == grpc.StatusCode.OK
    assert md(it.trailing_metadata()).get("x-count") == "25"


@TRANSPORTS
def test_grpc_client_streaming(grpc_front, transport):
    f = grpc_front()
    parts = [os.urandom(1000 + 7919 * i) for i in range(20)]
    resp, c = f.channel(transport).stream_unary(SVC + "ClientStream").with_call(
        iter(parts), timeout=15)
    assert resp == b"count=20;sha256=%s" % hashlib.sha256(b"".join(parts)).hexdigest().encode()
    assert c.code() == grpc.StatusCode.OK
    assert md(c.trailing_metadata()).get("x-count") == "20"


@TRANSPORTS
def test_grpc_bidi_interleaved(grpc_front, transport):
    """Each reply arrives before the next request is sent: both directions stream."""
    f = grpc_front()
    q = queue.Queue()

    def gen():
        while True:
            m = q.get(timeout=15)
            if m is None:
                return
            yield m

    it = f.channel(transport).stream_stream(SVC + "Bidi")(gen(), timeout=15)
    for i in range(10):
        q.put(b"ping-%d" % i)
        assert next(it) == b"PING-%d" % i
    q.put(None)
    assert list(it) == []
    assert it.code() == grpc.StatusCode.OK
    assert md(it.trailing_metadata()).get("x-bidi") == "done"


@TRANSPORTS
def test_grpc_error_status_and_details(grpc_front, transport):
    f = grpc_front()
    call = f.channel(transport).unary_unary(SVC + "Fail")
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as ei:
            call(b"the-widget", timeout=10)
        e = ei.value
        assert e.code() == grpc.StatusCode.NOT_FOUND, (e.code(), e.details())
        assert e.details() == "no such thing: the-widget"
        assert md(e.trailing_metadata()).get("x-why") == "missing", e.trailing_metadata()
    # the channel still works after errors
    assert f.channel(transport).unary_unary(SVC + "Unary")(b"x", timeout=10) == b"unary:x"


@TRANSPORTS
def test_grpc_unknown_method_unimplemented(grpc_front, transport):
    f = grpc_front()
    with pytest.raises(grpc.RpcError) as ei:
        f.channel(transport).unary_unary(SVC + "Nope")(b"x", timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, ei.value


@pytest.mark.hard_timeout(40)
@TRANSPORTS
def test_grpc_long_lived_stream_not_cut_by_read_timeout(grpc_front, transport):
    """read_timeout 1s on the upstream; the stream is quiet for 1.4 s between messages."""
    f = grpc_front(read_timeout="1s")
    t0 = time.monotonic()
    it = f.channel(transport).unary_stream(SVC + "Slow")(b"3,1400", timeout=20)
    got = []
    for m in it:
        got.append((m, time.monotonic() - t0))
    assert [m for m, _ in got] == [b"tick-0", b"tick-1", b"tick-2"], got
    assert it.code() == grpc.StatusCode.OK, (it.code(), it.details())
    assert md(it.trailing_metadata()).get("x-ticks") == "3"
    assert got[-1][1] >= 2.5


@pytest.mark.hard_timeout(40)
@TRANSPORTS
def test_grpc_concurrent_calls(grpc_front, transport):
    f = grpc_front()
    call = f.channel(transport).unary_unary(SVC + "Unary")
    futs = [call.future(b"n%d" % i, timeout=20) for i in range(100)]
    assert [fu.result() for fu in futs] == [b"unary:n%d" % i for i in range(100)]
    errs = []

    def streamer(i):
        try:
            it = f.channel(transport).unary_stream(SVC + "ServerStream")(b"50", timeout=20)
            if len(list(it)) != 50:
                errs.append(i)
        except grpc.RpcError as e:
            errs.append((i, e.code()))

    ts = [threading.Thread(target=streamer, args=(i,)) for i in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(25)
    assert errs == []
