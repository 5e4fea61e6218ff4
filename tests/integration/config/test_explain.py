"""`portico explain -c FILE [-H 'Name: value']... [--from ADDR] 'METHOD URL'`: which listener,
server block and location a request reaches, which upstream and policy, what the backend would
receive, which limits apply; nothing is sent. Checked on every shipped configuration, on the
routing rules, and against what a real backend receives for the same request."""

import glob
import json
import os
import re
import subprocess

import pytest

import portico_testlib as lib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "etc", "*.conf")) +
                 glob.glob(os.path.join(ROOT, "etc", "examples", "*.conf")))


def explain(args, cwd=None):
    p = subprocess.run([lib.PORTICO_BIN, "explain"] + list(args), cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def field(out, name):
    """The value of a top-level `name  value` line of explain's output."""
    m = re.search(r"^%s +(.*)$" % re.escape(name), out, re.M)
    return m.group(1) if m else None


def backend_block(out):
    """The request head under "backend receives", as [(name, value)] plus the request line."""
    lines = out.split("backend receives\n", 1)[1].splitlines()[1:]
    head = []
    for l in lines:
        if not l.startswith("    "):
            break
        head.append(l[4:])
    return head[0], [tuple(h.split(": ", 1)) for h in head[1:]]


@pytest.fixture(scope="module", autouse=True)
def cert():
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen-cert.sh")], cwd=ROOT,
                   check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("conf", CONFIGS, ids=[os.path.relpath(c, ROOT) for c in CONFIGS])
def test_explain_shipped_configs(conf):
    rel = os.path.relpath(conf, ROOT)
    p = subprocess.run([lib.PORTICO_BIN, "-t", "-v", "-c", rel], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    listens = re.findall(r"^listen (\S+?):(\d+)( tls)? ", p.stdout, re.M)
    if not listens:
        # only stream servers (layer 4): nothing for `portico explain`, which explains HTTP
        assert re.search(r"^stream servers ", p.stdout, re.M), p.stdout
        return
    for addr, port, tls in listens:
        url = "%s://localhost:%s/some/path?q=1" % ("https" if tls else "http", port)
        rc, out, err = explain(["-c", rel, "GET " + url, "-H", "User-Agent: t/1"], cwd=ROOT)
        assert rc == 0, (url, out, err)
        # the address on that port (the first, when several share it)
        assert field(out, "listener").startswith(("%s:%s" % (addr, port), "0.0.0.0:" + port,
                                                  "127.0.0.1:" + port, "[::]:" + port)), out
        assert field(out, "server") and field(out, "location") is not None, out
        assert "settings of this location" in out or field(out, "answer"), out
        if field(out, "handler", ) and field(out, "handler").startswith("proxy_pass"):
            line, hs = backend_block(out)
            assert line == "GET /some/path?q=1 HTTP/1.1" or line.startswith(":method"), out
            assert field(out, "upstream"), out


ROUTES = """
upstream api { server 127.0.0.1:%(b)d; server 127.0.0.1:%(dead)d backup; retries 2; }
upstream web { server 127.0.0.1:%(b)d; }
server {
    listen 127.0.0.1:%(port)d;
    server_name api.test;
    trusted_proxies 10.0.0.0/8;
    client_max_body_size 2k;
    location /v1/ { proxy_pass api; tracing on; }
    location /v1/admin/ { proxy_pass api; client_max_body_size 1k; }
    location = /health { return 200 "ok"; }
}
server {
    listen 127.0.0.1:%(port)d default_server;
    server_name *.web.test web.test;
    location / { proxy_pass web; }
}
"""


@pytest.fixture
def routes(tmp_path, start_backend):
    b = start_backend("b1")
    port = lib.free_port()
    body = ROUTES % dict(b=b.port, dead=lib.free_port(), port=port)
    conf = lib.make_conf(tmp_path, body, access_log="off")
    path = tmp_path / "routes.conf"
    path.write_text(conf)
    return str(path), port, b, conf


def lineno(conf, needle):
    return [i + 1 for i, l in enumerate(conf.splitlines()) if needle in l][0]


def test_explain_routing(routes):
    path, port, _, conf = routes
    url = "http://%s:%d%s"
    rc, out, _ = explain(["-c", path, "GET " + url % ("api.test", port, "/v1/admin/users")])
    assert rc == 0, out
    assert field(out, "listener") == "127.0.0.1:%d (%s:%d)" % (
        port, path, lineno(conf, "listen 127.0.0.1")), out
    assert "chosen by server_name api.test" in out, out
    assert field(out, "location") == "/v1/admin/ (%s:%d), for the path /v1/admin/users" % (
        path, lineno(conf, "location /v1/admin/")), out
    assert "(also matches /v1/ (line %d), a shorter prefix)" % lineno(conf, "location /v1/ ") \
        in out, out
    assert field(out, "handler") == "proxy_pass api", out
    assert field(out, "upstream").startswith("upstream api: round_robin over 127.0.0.1:"), out
    # a wildcard name, then no name at all: the default_server
    rc, out, _ = explain(["-c", path, "GET " + url % ("a.web.test", port, "/")])
    assert "chosen by server_name *.web.test (the longest matching wildcard)" in out, out
    rc, out, _ = explain(["-c", path, "GET " + url % ("other.test", port, "/x")])
    assert 'no server_name matches "other.test": the default server of this address ' \
           "(default_server)" in out, out
    # an exact location answered by portico itself, and a path with no location
    rc, out, _ = explain(["-c", path, "GET " + url % ("api.test", port, "/health")])
    assert field(out, "handler") == 'return 200 "ok"' and "nothing is forwarded" in out, out
    rc, out, _ = explain(["-c", path, "GET " + url % ("api.test", port, "/nothing")])
    assert field(out, "answer").startswith("404 from portico"), out
    # dot segments are resolved for matching only
    rc, out, _ = explain(["-c", path, "GET " + url % ("api.test", port, "/x/../v1/a")])
    assert field(out, "location").startswith("/v1/ ") and "for the path /v1/a" in out, out


def test_explain_limits_and_retries(routes):
    path, port, _, _ = routes
    base = "http://api.test:%d/v1/orders" % port
    rc, out, _ = explain(["-c", path, "POST " + base, "-H", "Content-Length: 10"])
    assert "client_max_body_size 2k" in out, out
    assert "POST is not idempotent" in field(out, "retries"), out
    assert "retries 2 on connect_error reset" in out, out
    rc, out, _ = explain(["-c", path, "POST " + base, "-H", "Content-Length: 5000"])
    assert field(out, "answer").startswith("413 from portico"), out
    rc, out, _ = explain(["-c", path, "PUT " + base])
    assert "resent up to 2 times" in field(out, "retries"), out


def test_explain_header_rules(routes):
    path, port, _, _ = routes
    url = "GET http://api.test:%d/v1/x" % port
    # an untrusted client's forwarding headers are dropped, hop-by-hop ones too
    rc, out, _ = explain(["-c", path, url, "-H", "X-Forwarded-For: 6.6.6.6",
                          "-H", "Connection: close, X-Secret", "-H", "X-Secret: 1",
                          "-H", "X-Request-ID: mine"])
    _, hs = backend_block(out)
    names = [n for n, _ in hs]
    assert ("X-Forwarded-For", "192.0.2.1") in hs, hs
    assert "X-Secret" not in names and "Connection" not in names, hs
    assert re.search(r"removed +X-Forwarded-For: 6\.6\.6\.6 +\(dropped: the client is not in "
                     r"trusted_proxies\)", out), out
    assert re.search(r"removed +X-Secret: 1 +\(named in Connection", out), out
    assert dict(hs)["X-Request-ID"] == "x" * 32, hs
    # tracing on in /v1/: a traceparent whose trace-id is the request ID
    assert re.fullmatch(r"00-x{32}-[0-9a-f]{16}-01", dict(hs)["traceparent"]), hs
    # from a trusted proxy: X-Forwarded-For extended, the request ID kept
    rc, out, _ = explain(["-c", path, url, "--from", "10.1.2.3", "-H",
                          "X-Forwarded-For: 6.6.6.6", "-H", "X-Request-ID: mine"])
    _, hs = backend_block(out)
    assert ("X-Forwarded-For", "6.6.6.6, 10.1.2.3") in hs, hs
    assert ("X-Request-ID", "mine") in hs, hs


def test_explain_matches_what_a_backend_receives(routes, start_portico, tmp_path):
    """The explained request head is the one a live request produces (apart from the
    per-request ID and trace, and the client's own headers curl adds)."""
    path, port, b, conf = routes
    url = "http://web.test:%d/headers?a=1" % port
    hs = ["-H", "X-Forwarded-For: 6.6.6.6", "-H", "Keep-Alive: timeout=5",
          "-H", "Accept: text/plain", "-H", "User-Agent: t/1"]
    rc, out, _ = explain(["-c", path, "GET " + url] + hs + ["--from", "127.0.0.1"])
    assert rc == 0, out
    line, explained = backend_block(out)
    assert line == "GET /headers?a=1 HTTP/1.1", out
    p = start_portico(conf, [port])
    r = lib.curl("http://127.0.0.1:%d/headers?a=1" % port, "-H", "Host: web.test:%d" % port,
                 *hs)
    assert r.status == 200, r
    got = json.loads(r.body)["headers"]
    drop = {"x-request-id"}
    assert [(n.lower(), v) for n, v in got if n.lower() not in drop] == \
        [(n.lower(), v) for n, v in explained if n.lower() not in drop], (got, out)


def test_explain_no_listener_and_usage(routes):
    path, port, _, _ = routes
    rc, out, _ = explain(["-c", path, "GET https://api.test:%d/" % port])
    assert rc == 1 and "listener  none: nothing listens on port %d with tls" % port in out, out
    rc, out, err = explain(["-c", path, "GET /no-scheme"])
    assert rc == 2 and "expected 'METHOD http(s)://" in err, err
    rc, out, err = explain(["-c", path])
    assert rc == 2 and "usage: portico explain" in err, err
    rc, out, err = explain(["-c", path, "-H", "no colon", "GET http://a/"])
    assert rc == 2 and "-H takes" in err, err
    # a broken configuration: its errors, exit 1
    bad = os.path.join(os.path.dirname(path), "bad.conf")
    with open(bad, "w") as f:
        f.write("server {\n    listen 127.0.0.1:1\n}\n")
    rc, out, err = explain(["-c", bad, "GET http://a:1/"])
    assert rc == 1 and "bad.conf:2:5: " in err and "test failed" in err, err
    assert out == "", out
