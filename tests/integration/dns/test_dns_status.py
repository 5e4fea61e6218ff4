"""The status page, metrics and admin actions with servers from DNS (`server NAME:PORT
resolve`): they show the server list requests use now, not the one the configuration was
loaded with, and a drained address stays drained when the name's answer changes."""

import json

import portico_testlib as lib
from dnsutil import a_zone, wait_log

STATUS = "/_portico/status"


def conf(tmp_path, port, dns, backend_port):
    return lib.make_conf(tmp_path, """resolver %s ttl_max=1s;
upstream app {
    server app.test:%d resolve;
    connect_timeout 1s;
}
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
    location /_portico/metrics { metrics; }
    location /_portico/status { status; status_write on; allow 127.0.0.1; }
}
""" % (dns.addr, backend_port, port), access_log="off")


def servers(p):
    r = lib.curl(p.url(STATUS + "?format=json"))
    assert r.status == 200, r
    [up] = json.loads(r.body)["upstreams"]
    return {s["address"]: s for s in up["servers"]}


def backends_of(p, n):
    out = []
    for _ in range(n):
        r = lib.curl(p.url("/name"))
        assert r.status == 200, r
        out.append(r.header("X-Backend"))
    return out


def test_dns_servers_on_status_page_and_drain_kept(tmp_path, dns, backends_on_port,
                                                   start_portico):
    port, (b1, b2, b3) = backends_on_port(3)
    a1, a2, a3 = ("127.0.0.%d:%d" % (i, port) for i in (1, 2, 3))
    dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2"]))
    pport = lib.free_port()
    p = start_portico(conf(tmp_path, pport, dns, port), [pport])
    lib.wait_until(lambda: set(servers(p)) == {a1, a2}, what="both addresses listed")
    r = lib.curl(p.url(STATUS + "/servers/app/%s/drain" % a2), "-X", "POST")
    assert r.status == 200 and r.json()["state"] == "draining", r
    assert set(backends_of(p, 6)) == {"b1"}
    # the name's answer changes: the drained address stays drained
    dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2", "127.0.0.3"]))
    wait_log(p, "app.test now resolves to")
    s = lib.wait_until(lambda: (lambda s: s if set(s) == {a1, a2, a3} else None)(servers(p)),
                       what="three addresses listed")
    assert s[a2]["state"] == "draining" and s[a1]["state"] == "up" and s[a3]["state"] == "up"
    assert set(backends_of(p, 9)) == {"b1", "b3"}
    m = lib.curl(p.url("/_portico/metrics")).body.decode()
    assert 'portico_upstream_server_state{upstream="app",server="%s",state="draining"} 1' % a2 \
        in m
    assert 'portico_upstream_server_state{upstream="app",server="%s",state="up"} 1' % a3 in m
    r = lib.curl(p.url(STATUS + "/servers/app/%s/enable" % a2), "-X", "POST")
    assert r.status == 200 and r.json()["state"] == "up"
    assert "b2" in backends_of(p, 9)
