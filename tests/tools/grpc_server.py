#!/usr/bin/python3
"""gRPC test server for portico's grpc/ integration tests (Debian python3-grpcio).

Generic handlers with identity (bytes) serialisation, so no protoc and no generated code.
Service "portico.test.Echo", h2c on 127.0.0.1:

  Unary(bytes) -> b"unary:" + request
        initial metadata x-initial: yes; trailing metadata x-trailer: unary-done and
        x-trailer-bin (binary) = request sha256
  ServerStream(b"N") -> N messages b"msg-0" .. b"msg-{N-1}"; trailing x-count: N
  ClientStream(stream) -> b"count=K;sha256=HEX" over the concatenated messages;
        trailing x-count: K
  Bidi(stream) -> each message echoed upper-cased, as it arrives; trailing x-bidi: done
  Fail(bytes) -> context.abort(NOT_FOUND, "no such thing: " + request) with trailing
        metadata x-why: missing
  Slow(b"N,MS") -> N messages b"tick-i"; the first at once, then one every MS ms
        (a long-lived stream that is quiet for longer than a proxy's read_timeout);
        trailing x-ticks: N
  Sleep(b"MS") -> sleeps MS ms before anything is sent (not even the response head),
        then b"slept:MS": a server slower than a proxy's read_timeout, or one that holds
        a connection slot (max_conns) for that long

Each call also answers metadata x-peer with the client address it saw (the proxy's
connection), so tests can count connections.

Start: /usr/bin/python3 tests/tools/grpc_server.py [--port P]
Prints "READY grpc 127.0.0.1 PORT" when listening; SIGTERM stops it.
"""

import argparse
import hashlib
import signal
import sys
import time
from concurrent import futures

import grpc

SERVICE = "portico.test.Echo"


def _peer(context):
    return ("x-peer", context.peer())


def unary(request, context):
    context.send_initial_metadata((("x-initial", "yes"), _peer(context)))
    context.set_trailing_metadata((("x-trailer", "unary-done"),
                                   ("x-trailer-bin", hashlib.sha256(request).digest())))
    return b"unary:" + request


def server_stream(request, context):
    n = int(request or b"0")
    context.send_initial_metadata((_peer(context),))
    for i in range(n):
        yield b"msg-%d" % i
    context.set_trailing_metadata((("x-count", str(n)),))


def client_stream(request_iterator, context):
    h = hashlib.sha256()
    k = 0
    for m in request_iterator:
        h.update(m)
        k += 1
    context.set_trailing_metadata((("x-count", str(k)),))
    return b"count=%d;sha256=%s" % (k, h.hexdigest().encode())


def bidi(request_iterator, context):
    context.send_initial_metadata((_peer(context),))
    for m in request_iterator:
        yield m.upper()
    context.set_trailing_metadata((("x-bidi", "done"),))


def fail(request, context):
    context.set_trailing_metadata((("x-why", "missing"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode("utf-8",
                                                                              "replace"))


def slow(request, context):
    n, ms = (int(x) for x in request.split(b","))
    context.send_initial_metadata((_peer(context),))
    for i in range(n):
        if i:
            time.sleep(ms / 1000.0)
        yield b"tick-%d" % i
    context.set_trailing_metadata((("x-ticks", str(n)),))


def sleep(request, context):
    time.sleep(int(request or b"0") / 1000.0)
    return b"slept:" + request


HANDLERS = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Slow": grpc.unary_stream_rpc_method_handler(slow),
    "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32),
                         options=(("grpc.so_reuseport", 0),))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, HANDLERS),))
    port = server.add_insecure_port("127.0.0.1:%d" % a.port)
    server.start()
    signal.signal(signal.SIGTERM, lambda *x: server.stop(0))
    sys.stdout.write("READY grpc 127.0.0.1 %d\n" % port)
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
