"""Fixtures for the fault and slow-client tests (tests/integration/faults/).

  front(extra=, upstream_extra=, ...)   a portico with a TLS listener (ALPN h2, http/1.1;
                                        certificate for localhost) and a cleartext one (HTTP/1.1
                                        and h2c), both proxying to backend b1 (`keepalive 0`
                                        unless upstream_extra says otherwise, so that the
                                        backend's count of open connections shows what portico
                                        still holds)
faultlib.py: Steady (a well-behaved client in a thread, checking every answer while the test
misbehaves around it), fd_count(pid), rss_kib(pid).

The common fixtures come from tests/integration/conftest.py, the TLS and h2 helpers from
tests/tools/tls_h2_testlib.py and tests/tools/h2_attacks.py."""

import os
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from tls_h2_testlib import certs, start_portico_in  # noqa: E402,F401

import pytest  # noqa: E402

import portico_testlib as lib  # noqa: E402
from h2_attacks import H2Client  # noqa: E402
from tls_h2_testlib import plain_server, tls_server, upstream  # noqa: E402


class Front:
    def __init__(self, portico, backend, tls_port, plain_port, certs):  # noqa: F811
        self.portico = portico
        self.backend = backend
        self.tls_port = tls_port
        self.plain_port = plain_port
        self.certs = certs

    def h2(self, tls=True, **kw):
        if tls:
            return H2Client("127.0.0.1", self.tls_port, tls=True, cafile=self.certs.ca,
                            server_hostname="localhost", **kw)
        return H2Client("127.0.0.1", self.plain_port, **kw)

    def backend_open(self):
        return self.backend.stats()["open"]

    def log(self):
        with open(self.portico.error_log, "rb") as f:
            return f.read().decode("utf-8", "replace")


@pytest.fixture
def front(certs, start_backend, start_portico_in):
    def _make(extra="", upstream_extra="    keepalive 0;\n", workers=1, read_timeout="60s",
              main_extra="", shutdown_timeout=2.0, backend=None, wrap=None):
        b = backend or start_backend("b1")
        tls_port, plain_port = lib.free_port(), lib.free_port()
        cert, key = certs.pair("localhost")
        body = upstream("app", [b.addr], extra=upstream_extra, read_timeout=read_timeout,
                        send_timeout="60s")
        body += tls_server(tls_port, cert, key, server_name="localhost", extra=extra)
        body += plain_server(plain_port, extra=extra)
        p = start_portico_in(body, [tls_port, plain_port], name="fe", workers=workers,
                             shutdown_timeout=shutdown_timeout, main_extra=main_extra)
        return Front(p, b, tls_port, plain_port, certs)

    return _make
