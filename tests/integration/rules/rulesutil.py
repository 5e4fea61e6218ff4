"""Helpers for tests/integration/rules: a portico with one upstream `app` (backend.py) and the
server/location lines a test gives, the two client protocols, and what the backend saw."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import portico_testlib as lib  # noqa: E402

# curl's options for each client protocol: HTTP/1.1, and HTTP/2 with prior knowledge (h2c)
CLIENTS = {"h1": ["--http1.1"], "h2": ["--http2-prior-knowledge"]}


def start(tmp_path, start_backend, start_portico, server="", locations=None,
          upstream_extra="", workers=1, extra_blocks=""):
    """portico on a free port: `upstream app { server <backend.py>; ... }` and one server block
    holding `server` lines and `locations` (default: `location / { proxy_pass app; }`)."""
    b = start_backend("b1")
    port = lib.free_port()
    if locations is None:
        locations = "    location / { proxy_pass app; }\n"
    body = """upstream app {
    server %s;
    connect_timeout 1s;
    read_timeout 5s;
%s
}
server {
    listen 127.0.0.1:%d;
    server_name localhost;
%s
%s
}
%s""" % (b.addr, upstream_extra, port, server, locations, extra_blocks)
    conf = lib.make_conf(tmp_path, body, workers=workers)
    return start_portico(conf, [port]), b


def get(p, path, client="h1", *args):
    """curl to portico with the client protocol; the result asserted to have completed."""
    r = lib.curl(p.url(path), *(CLIENTS[client] + list(args)))
    assert r.rc == 0, r
    return r


def follow(p, path, client="h1", *args):
    """A redirect followed: curl -L for HTTP/1.1; for h2c by prior knowledge, a second curl on
    the Location (curl 7.88 cannot reuse a prior-knowledge connection, whatever the server)."""
    if client == "h1":
        return get(p, path, client, "-L", *args)
    r = get(p, path, client, *args)
    assert r.status in (301, 302, 303, 307, 308), r
    loc = r.header("location")
    assert loc.startswith("/"), loc
    return get(p, loc, client, *args)


def seen(r):
    """What backend.py's /headers got: (target, {lower-case name: [values]})."""
    j = json.loads(r.body)
    got = {}
    for n, v in j["headers"]:
        got.setdefault(n.lower(), []).append(v)
    return j["target"], got


def error_log(p):
    return p.read(p.error_log)
