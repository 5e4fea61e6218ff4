"""Helpers for tests/integration/access: a portico with one upstream `app` (backend.py), the
server and location lines a test gives, both client protocols, and the metrics."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import portico_testlib as lib  # noqa: E402

# curl's options per client protocol: HTTP/1.1, and HTTP/2 with prior knowledge (h2c)
CLIENTS = {"h1": ["--http1.1"], "h2": ["--http2-prior-knowledge"]}


def start(tmp_path, start_backend, start_portico, server="", locations=None, main="",
          workers=1, listen=None, port=None):
    """portico on a free port (or the `listen` lines given): `upstream app { server
    <backend.py>; }`, `main` lines before it, one server block with `server` lines and
    `locations` (default: `location / { proxy_pass app; }`) and `location = /metrics`."""
    b = start_backend("b1")
    port = port or lib.free_port()
    if locations is None:
        locations = "    location / { proxy_pass app; }\n"
    body = """%s
upstream app {
    server %s;
    connect_timeout 1s;
    read_timeout 5s;
}
server {
    %s
    server_name localhost;
%s
%s
    location = /metrics { metrics; allow all; }
}
""" % (main, b.addr, listen or "listen 127.0.0.1:%d;" % port, server, locations)
    conf = lib.make_conf(tmp_path, body, workers=workers)
    return start_portico(conf, [port]), b


def get(p, path, client="h1", *args):
    r = lib.curl(p.url(path), *(CLIENTS[client] + list(args)))
    assert r.rc == 0, r
    return r


def metric(p, name, **labels):
    """The value of one sample of /metrics (0 when absent)."""
    r = lib.curl(p.url("/metrics"))
    assert r.status == 200, r
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in r.body.decode().splitlines():
        m = re.match(r'^(\w+)(?:\{([^}]*)\})? (\S+)$', line)
        if m and m.group(1) == name:
            got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
            if got == want:
                return float(m.group(3))
    return 0.0


def error_log(p):
    return p.read(p.error_log)
