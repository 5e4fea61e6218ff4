"""Fixtures for the WebSocket tests (tests/tools/ws_testlib.py has the helpers):

  start_ws_backend(name)    tests/tools/ws_backend.py (python3-websockets echo backend),
                            stopped at teardown (its stderr is printed)
  raw_ws_backend(serve, rcvbuf=, sndbuf=)
                            a RawWsBackend (a thread per connection running serve), for the
                            misbehaving backends a real server library will not play
  ws_front(servers=None, location_extra=, upstream_extra=, workers=, backend_tls=, ...)
                            a portico with a cleartext listener and a TLS listener
                            (certificate for localhost and 127.0.0.1) in front of upstream
                            `app` (one ws backend started when servers is None), with
                            `location /local { return 200 "portico-local"; }` answered by
                            portico itself and `location / { proxy_pass app; ... }`;
                            backend_tls: the ws backend speaks TLS and `app` has `tls on`
  certs                     the test CA and certificates (session)

The common fixtures (start_portico, the hard per-test timeout, and the check that every portico
exits 0 after SIGTERM) come from tests/integration/conftest.py.
"""

import os
import re
import ssl
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from tls_h2_testlib import certs  # noqa: E402,F401

import pytest  # noqa: E402

import portico_testlib as lib  # noqa: E402
import ws_testlib as wsl  # noqa: E402


@pytest.fixture
def start_ws_backend(tmp_path):
    started = []

    def _start(name="ws1", tls=None):
        b = wsl.WsBackend(name=name, logdir=str(tmp_path), tls=tls)
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()
    for b in started:
        try:
            with open(b.errpath) as f:
                err = f.read()
        except OSError:
            err = ""
        if err:
            print("---- ws backend %s stderr ----\n%s" % (b.name, err))


@pytest.fixture
def raw_ws_backend():
    started = []

    def _start(serve, rcvbuf=None, sndbuf=None):
        b = wsl.RawWsBackend(serve, rcvbuf=rcvbuf, sndbuf=sndbuf)
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()


class WsFront:
    """A portico with a cleartext and a TLS listener in front of upstream `app`."""

    def __init__(self, portico, backends, plain_port, tls_port, certs):
        self.portico = portico
        self.backends = backends
        self.backend = backends[0] if backends else None
        self.plain_port = plain_port
        self.tls_port = tls_port
        self.certs = certs
        self.port = plain_port

    def port_for(self, scheme):
        return self.tls_port if scheme == "wss" else self.plain_port

    def url(self, path="/echo", scheme="ws"):
        return "%s://127.0.0.1:%d%s" % (scheme, self.port_for(scheme), path)

    def ssl_ctx(self, scheme="wss"):
        if scheme != "wss":
            return None
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        return ctx

    def connect(self, path="/echo", scheme="ws", **kw):
        """websockets.connect(...) through portico: no keepalive pings (a silent tunnel stays
        silent), no message size limit unless given."""
        import websockets
        kw.setdefault("ping_interval", None)
        kw.setdefault("max_size", None)
        kw.setdefault("open_timeout", 5)
        kw.setdefault("close_timeout", 5)
        if scheme == "wss":
            kw.setdefault("ssl", self.ssl_ctx())
            kw.setdefault("server_hostname", "localhost")
        return websockets.connect(self.url(path, scheme), **kw)

    def raw(self, timeout=5.0):
        return lib.RawConn("127.0.0.1", self.plain_port, timeout)


@pytest.fixture
def ws_front(tmp_path, certs, start_ws_backend, start_portico):
    def _make(servers=None, location_extra="", upstream_extra="", workers=1,
              shutdown_timeout="2s", main_extra="", access_log="combined", n_backends=1,
              error_level="info", backend_tls=False):
        backends = []
        if servers is None:
            tls = (certs.localhost, certs.localhost_key) if backend_tls else None
            backends = [start_ws_backend("ws%d" % (i + 1), tls=tls) for i in range(n_backends)]
            servers = [b.addr for b in backends]
        if backend_tls:
            upstream_extra += "\n    tls on;\n    tls_trusted_certificate %s;\n" \
                              "    tls_sni localhost;\n" % certs.ca
        plain, tls = lib.free_port(), lib.free_port()
        locations = ('    location /local { return 200 "portico-local"; }\n'
                     "    location / {\n        proxy_pass app;\n        %s\n    }\n"
                     % location_extra)
        # short default timeouts, unless upstream_extra sets them itself
        defaults = "".join("    %s %s;\n" % (k, v) for k, v in
                           (("connect_timeout", "1s"), ("read_timeout", "5s"),
                            ("send_timeout", "5s"))
                           if not re.search(r"\b%s\b" % k, upstream_extra))
        body = "upstream app {\n%s%s%s\n}\n" % (
            "".join("    server %s;\n" % s for s in servers), defaults, upstream_extra)
        body += "server {\n    listen 127.0.0.1:%d;\n    server_name _;\n%s}\n" % (
            plain, locations)
        body += ("server {\n    listen 127.0.0.1:%d tls;\n    server_name localhost;\n"
                 "    tls_certificate %s;\n    tls_certificate_key %s;\n%s}\n"
                 % (tls, certs.localhost, certs.localhost_key, locations))
        conf = lib.make_conf(tmp_path, body, workers=workers, access_log=access_log,
                             shutdown_timeout=shutdown_timeout, main_extra=main_extra,
                             error_level=error_level)
        sd = float(shutdown_timeout.rstrip("s")) if shutdown_timeout.endswith("s") and \
            not shutdown_timeout.endswith("ms") else 2.0
        p = start_portico(conf, [plain, tls], shutdown_timeout=sd)
        return WsFront(p, backends, plain, tls, certs)

    return _make
