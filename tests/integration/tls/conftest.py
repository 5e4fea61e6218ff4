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
from tls_h2_testlib import curl_v, tls_server, upstream  # noqa: E402

VHOSTS = (("localhost", "localhost"), ("a.example", "a.example"), ("b.example", "b.example"),
          ("*.w.example", "wild"))


class TlsFront:
    """A portico with a TLS listener (server blocks localhost [default], a.example,
    b.example, *.w.example, each with its own certificate and `location /who` answering its
    server_name) in front of backend b1; optionally a plain listener too."""

    def __init__(self, portico, backend, port, plain_port, certs):
        self.portico = portico
        self.backend = backend
        self.port = port
        self.plain_port = plain_port
        self.certs = certs

    def url(self, path="/", name="localhost"):
        return "https://%s:%d%s" % (name, self.port, path)

    def curl(self, path="/", *args, name="localhost", cacert=True, timeout=20):
        extra = ["--resolve", "%s:%d:127.0.0.1" % (name, self.port)]
        if cacert:
            extra += ["--cacert", self.certs.ca]
        return curl_v(self.url(path, name), *(extra + list(args)), timeout=timeout)


@pytest.fixture
def tls_front(certs, start_backend, start_portico_in):
    def _make(extra="", workers=1, vhosts=True, plain=False, main_extra="",
              upstream_extra=""):
        b = start_backend("b1")
        port = lib.free_port()
        body = upstream("app", [b.addr], extra=upstream_extra)
        for name, base in (VHOSTS if vhosts else VHOSTS[:1]):
            cert, key = certs.pair(base)
            body += tls_server(port, cert, key, server_name=name, extra=extra,
                               locations='    location /who { return 200 "%s"; }\n'
                                         '    location / { proxy_pass app; }\n' % name)
        ports = [port]
        plain_port = None
        if plain:
            plain_port = lib.free_port()
            body += ("server {\n    listen 127.0.0.1:%d;\n    server_name _;\n"
                     "    location / { proxy_pass app; }\n}\n" % plain_port)
            ports.append(plain_port)
        p = start_portico_in(body, ports, name="fe", workers=workers, main_extra=main_extra)
        return TlsFront(p, b, port, plain_port, certs)

    return _make
