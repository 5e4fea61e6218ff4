"""`status;`: the JSON document (fields and values after known traffic), content negotiation,
and the HTML page as headless Chromium (Debian's chromium) renders it."""

import html.parser
import os
import shutil
import subprocess

import pytest

import portico_testlib as lib
import opsutil
from opsutil import STATUS


def test_status_json_after_traffic(ops):
    o = ops(n_backends=2, workers=2, upstream_extra="    health_check http interval=1s;")
    b1, b2 = o.backends
    for _ in range(8):
        assert lib.curl(o.url("/")).status == 200
    lib.wait_until(lambda: all(s["health"]["last"] == "passed"
                               for s in o.status()["upstreams"][0]["servers"]),
                   what="both servers checked")
    d = o.status()
    assert d["version"] == "0.1.0"
    assert d["generation"] == 1 and d["generations_live"] == 1
    assert d["reloads"] == 0 and d["reload_failures"] == 0
    # loaded (to the second), then started (to the millisecond)
    assert d["loaded_at"].endswith("Z") and d["started_at"].endswith("Z")
    assert d["loaded_at"][:19] <= d["started_at"][:19]
    assert [w["name"] for w in d["workers"]] == ["w0", "w1"]
    # the status request's own connection is open; the traffic before it is counted
    assert sum(w["connections"] for w in d["workers"]) == 1
    assert sum(w["http1"] for w in d["workers"]) == 1
    assert sum(w["accepted"] for w in d["workers"]) >= 9
    assert sum(w["requests"] for w in d["workers"]) >= 8
    [up] = d["upstreams"]
    assert up["name"] == "app" and up["balance"] == "round_robin"
    assert up["protocol"] == "http1" and up["health_check"] is True
    assert up["pending"] == 0 and up["retries"] == 0 and up["no_server"] == 0
    servers = {s["address"]: s for s in up["servers"]}
    assert set(servers) == {b1.addr, b2.addr}
    for b in (b1, b2):
        s = servers[b.addr]
        assert s["state"] == "up" and s["draining"] is False and s["ejected"] is False
        assert s["weight"] == 1 and s["backup"] is False and s["max_conns"] == 0
        assert s["active"] == 0 and s["failures"] == 0
        assert s["requests"] == 4                     # round robin over two
        assert s["responses"]["2xx"] == 4
        assert s["connections_opened"] + s["connections_reused"] == 4
        assert s["health"]["last"] == "passed" and s["health"]["reason"] is None
        assert s["health"]["passes"] >= 1 and s["health"]["fails"] == 0
        assert s["health"]["checked_at"].endswith("Z")
        assert s["ejected_until"] is None and s["ejections"] == 0
    # idle pooled connections: what the backends see still open
    assert sum(s["idle"] for s in up["servers"]) >= 1


def test_status_failed_check_and_no_health_check(start_backend, start_portico, tmp_path):
    b = start_backend("b1")
    dead = "127.0.0.1:%d" % lib.free_port()
    port = lib.free_port()
    body = opsutil.body(port, [b.addr, dead],
                        upstream_extra="    health_check http interval=1s fall=1;",
                        extra_blocks="upstream plain { server %s; }\n" % b.addr)
    o = opsutil.Ops(start_portico(lib.make_conf(tmp_path, body, access_log="off"), [port]),
                    [b], port)
    s = lib.wait_until(lambda: (lambda s: s if s["state"] == "down" else None)(o.server(dead)),
                       what="the dead server DOWN")
    assert s["health"]["last"] == "failed"
    assert s["health"]["reason"] == "Connection refused"
    assert s["health"]["fails"] >= 1
    plain = [u for u in o.status()["upstreams"] if u["name"] == "plain"][0]
    assert plain["health_check"] is False and plain["servers"][0]["health"] is None


def test_status_negotiation(ops):
    o = ops()
    url = o.url(STATUS)
    r = lib.curl(url, "-H", "Accept: application/json")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    assert r.header("Vary") == "Accept" and r.header("Cache-Control") == "no-store"
    r = lib.curl(url, "-H", "Accept: text/html,application/xhtml+xml,*/*;q=0.8")
    assert r.status == 200 and r.header("Content-Type") == "text/html; charset=utf-8"
    assert r.body.startswith(b"<!DOCTYPE html>")
    r = lib.curl(url + "?format=json", "-H", "Accept: text/html")
    assert r.header("Content-Type") == "application/json"
    r = lib.curl(url + "?format=html", "-H", "Accept: application/json")
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    r = lib.curl(url)                                    # curl: Accept: */*
    assert r.header("Content-Type") == "application/json"
    r = lib.curl(url + "/", "--http2-prior-knowledge", "-H", "Accept: application/json")
    assert r.status == 200 and r.json()["upstreams"][0]["name"] == "app"
    r = lib.curl(url, "-X", "DELETE")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"
    r = lib.curl(o.url(STATUS + "/nothing"))
    assert r.status == 404


class _Dom(html.parser.HTMLParser):
    """Elements of the dumped DOM: (tag, attrs, text) with the text inside each element."""

    def __init__(self):
        super().__init__()
        self.stack = []
        self.elements = []

    def handle_starttag(self, tag, attrs):
        e = [tag, dict(attrs), ""]
        self.elements.append(e)
        if tag not in ("meta", "br", "input", "link"):
            self.stack.append(e)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        for e in self.stack:
            e[2] += data

    def find(self, tag=None, **attrs):
        """Elements of tag whose attributes have these values (underscores in names read as
        dashes; `class` matches one of the classes)."""
        out = []
        for e in self.elements:
            if tag is not None and e[0] != tag:
                continue
            ok = True
            for k, v in attrs.items():
                k = k.replace("_", "-")
                have = e[1].get(k)
                if have is None or (v not in have.split() if k == "class" else have != v):
                    ok = False
            if ok:
                out.append(e)
        return out


def chromium_dom(url, tmp_path):
    """The DOM headless Chromium builds for url (--dump-dom), as the tests run it: as root,
    without sandbox, GPU, background networking, component updates or sync, in a fresh
    profile."""
    exe = shutil.which("chromium")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--disable-dev-shm-usage", "--user-data-dir=%s" % profile,
           "--dump-dom", url]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90,
                       env=dict(os.environ, HOME=str(tmp_path)))
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")[-2000:]
    return p.stdout.decode("utf-8", "replace")


@pytest.mark.hard_timeout(150)
def test_status_html_in_headless_chromium(ops, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed (Debian package chromium)")
    o = ops(n_backends=2, workers=2, upstream_extra="    health_check http interval=1s;",
            status_extra="status_write on; allow 127.0.0.1;")
    b1, b2 = o.backends
    for _ in range(4):
        assert lib.curl(o.url("/")).status == 200
    assert o.action("app", b2.addr, "drain").status == 200
    lib.wait_until(lambda: o.server(b1.addr)["health"]["last"] == "passed",
                   what="b1 checked")
    dom = chromium_dom(o.url(STATUS), tmp_path)
    d = _Dom()
    d.feed(dom)
    assert [e[2] for e in d.find("title")] == ["portico status"]
    assert [e[2] for e in d.find("span", id="generation")] == ["1"]
    assert d.find("span", id="loaded-at")[0][2].endswith("Z")
    assert len(d.find("tr", **{"class": "worker"})) == 2
    assert len(d.find("table", data_upstream="app")) == 1
    rows = {e[1]["data-server"]: e for e in d.find("tr", **{"class": "server"})}
    assert set(rows) == {b1.addr, b2.addr}
    states = [e for e in d.find("td") if "state" in e[1].get("class", "").split()]
    assert sorted(e[2] for e in states) == ["draining", "up"]
    assert "state-draining" in [c for e in states for c in e[1]["class"].split()]
    assert "passed at" in rows[b1.addr][2]
    assert d.find("td", **{"class": "requests"})[0][2] in ("2", "3", "4")
    # the client may act: each server has a form (enable for the drained one)
    actions = [e[1]["action"] for e in d.find("form")]
    assert "/_portico/status/servers/app/%s/drain" % b1.addr.replace(":", "%3A") in actions
    assert "/_portico/status/servers/app/%s/enable" % b2.addr.replace(":", "%3A") in actions
    assert "/_portico/status/servers/app/%s/check" % b1.addr.replace(":", "%3A") in actions


def test_status_html_without_write_has_no_forms(ops):
    o = ops()
    r = lib.curl(o.url(STATUS), "-H", "Accept: text/html")
    assert r.status == 200 and b"<form" not in r.body and b"data-upstream=\"app\"" in r.body
