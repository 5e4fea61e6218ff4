"""Fixtures for these tests, from tests/tools/tls_h2_testlib.py: `certs` (test CA, server
and client certificates, made once per session with openssl), `start_portico_in` (a portico
in its own directory, so two can be chained) and `recording_backend`.  The common fixtures
(start_backend, start_portico, hard timeouts) come from tests/integration/conftest.py."""

import os
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from tls_h2_testlib import certs, recording_backend, start_portico_in  # noqa: E402,F401

import pytest  # noqa: E402

import portico_testlib as lib  # noqa: E402
from h2_attacks import H2Client  # noqa: E402
from tls_h2_testlib import curl_v, plain_server, tls_server, upstream  # noqa: E402


class H2Front:
    """A portico with a TLS listener (ALPN h2, certificate for localhost) and a cleartext
    listener (h2c by prior knowledge or Upgrade), both proxying to backend b1."""

    def __init__(self, portico, backend, tls_port, plain_port, certs):
        self.portico = portico
        self.backend = backend
        self.tls_port = tls_port
        self.plain_port = plain_port
        self.certs = certs

    def tls_url(self, path="/"):
        return "https://localhost:%d%s" % (self.tls_port, path)

    def plain_url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.plain_port, path)

    def tls_args(self):
        return ["--resolve", "localhost:%d:127.0.0.1" % self.tls_port, "--cacert", self.certs.ca]

    def curl_tls(self, path, *args, timeout=20):
        return curl_v(self.tls_url(path), *(self.tls_args() + list(args)), timeout=timeout)

    def curl_plain(self, path, *args, timeout=20):
        return curl_v(self.plain_url(path), *args, timeout=timeout)

    def client(self, tls=True, **kw):
        if tls:
            return H2Client("127.0.0.1", self.tls_port, tls=True, cafile=self.certs.ca,
                            server_hostname="localhost", **kw)
        return H2Client("127.0.0.1", self.plain_port, **kw)


@pytest.fixture
def h2_front(certs, start_backend, start_portico_in):
    def _make(extra="", workers=1, upstream_extra="", shutdown_timeout=2.0,
              read_timeout="10s", backend=None, locations=None):
        b = backend or start_backend("b1")
        tls_port, plain_port = lib.free_port(), lib.free_port()
        cert, key = certs.pair("localhost")
        body = upstream("app", [b.addr], extra=upstream_extra, read_timeout=read_timeout)
        body += tls_server(tls_port, cert, key, server_name="localhost", extra=extra,
                           locations=locations)
        body += plain_server(plain_port, extra=extra, locations=locations)
        p = start_portico_in(body, [tls_port, plain_port], name="fe", workers=workers,
                             shutdown_timeout=shutdown_timeout)
        return H2Front(p, b, tls_port, plain_port, certs)

    return _make
