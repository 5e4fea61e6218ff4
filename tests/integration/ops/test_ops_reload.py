"""Metrics and admin state across a configuration reload (SIGHUP): counters of the upstreams,
servers and server blocks that stay count on (they are kept per worker by name, not in the
snapshot); the generation, load time and reload counts move; a drained server stays drained;
a new server block's series appear at once; a refused reload is counted."""

import signal
import time

import portico_testlib as lib
import opsutil

WRITE = "status_write on; allow 127.0.0.1;"


def reload(o, body=None, generation=2):
    if body is not None:
        with open(o.portico.conf_path, "w") as f:
            f.write(body)
    o.portico.signal(signal.SIGHUP)
    lib.wait_until(lambda: "configuration generation %d" % generation in
                   o.portico.read(o.portico.error_log), what="reload to generation %d" %
                   generation)


def conf_text(o):
    with open(o.portico.conf_path) as f:
        return f.read()


def app_requests(m, b):
    return m.get("portico_upstream_requests_total", upstream="app", server=b.addr)


def test_reload_keeps_counters_and_counts_reloads(ops):
    o = ops(n_backends=1, workers=2)
    b1 = o.backends[0]
    for _ in range(5):
        assert lib.curl(o.url("/")).status == 200
    m = o.metrics()
    assert m.get("portico_config_generation") == 1
    assert app_requests(m, b1) == 5
    loaded = m.get("portico_config_loaded_timestamp_seconds")
    time.sleep(1.1)                     # the load time has a one-second resolution
    # the same upstream and server, plus a new server block on the same listener
    body = conf_text(o) + ("server {\n    listen 127.0.0.1:%d;\n    server_name new.test;\n"
                           "    location / { proxy_pass app; }\n}\n" % o.port)
    reload(o, body)
    # every worker switched: requests from now run on generation 2
    m = lib.wait_until(lambda: (lambda m: m if m.get("portico_config_generation") == 2
                                else None)(o.metrics()), what="a scrape on generation 2")
    assert m.get("portico_config_reloads_total") == 1
    assert m.get("portico_config_reload_failures_total") == 0
    assert m.get("portico_config_loaded_timestamp_seconds") > loaded
    assert app_requests(m, b1) == 5
    # the new server block has its series (at zero) before any request
    assert m.get("portico_http_requests_total", server_name="new.test", upstream="app",
                 code_class="2xx", protocol="http1") == 0
    for _ in range(3):
        assert lib.curl(o.url("/")).status == 200
    assert lib.curl(o.url("/"), "-H", "Host: new.test").status == 200
    m = o.metrics()
    assert app_requests(m, b1) == 9
    assert m.get("portico_http_requests_total", server_name=opsutil.SERVER_NAME,
                 upstream="app", code_class="2xx", protocol="http1") == 8
    assert m.get("portico_http_requests_total", server_name="new.test", upstream="app",
                 code_class="2xx", protocol="http1") == 1
    rc, out = (0, "") if opsutil.promtool() is None else opsutil.promtool_check(m.text)
    assert rc == 0 and out.strip() == "", out
    d = o.status()
    assert d["generation"] == 2 and d["reloads"] == 1


def test_reload_keeps_a_drained_server_drained(ops):
    o = ops(n_backends=2, status_extra=WRITE,
            upstream_extra="    health_check http interval=600s;")
    b1, b2 = o.backends
    assert o.action("app", b1.addr, "drain").status == 200
    assert o.action("app", b2.addr, "check").status == 202
    lib.wait_until(lambda: o.server(b2.addr)["health"]["passes"] == 1, what="b2 checked")
    before = b1.stats()["requests"]
    reload(o, conf_text(o).replace("connect_timeout 1s", "connect_timeout 2s"))
    lib.wait_until(lambda: o.status()["generation"] == 2, what="status on generation 2")
    s1 = o.server(b1.addr)
    assert s1["state"] == "draining" and s1["draining"] is True
    # what the status page showed of b2's health check is carried over too
    assert o.server(b2.addr)["health"]["passes"] == 1
    for _ in range(6):
        r = lib.curl(o.url("/"))
        assert r.status == 200 and r.header("X-Backend") == "b2"
    assert b1.stats()["requests"] == before
    assert o.action("app", b1.addr, "enable").json()["state"] == "up"


def test_reload_refused_is_counted(ops):
    o = ops()
    good = conf_text(o)
    with open(o.portico.conf_path, "w") as f:
        f.write(good.replace("location / { proxy_pass app; }", "location / { proxy_pass nope; }"))
    o.portico.signal(signal.SIGHUP)
    lib.wait_until(lambda: "reload failed" in o.portico.read(o.portico.error_log),
                   what="the reload refused")
    m = o.metrics()
    assert m.get("portico_config_reload_failures_total") == 1
    assert m.get("portico_config_reloads_total") == 0
    assert m.get("portico_config_generation") == 1
    with open(o.portico.conf_path, "w") as f:
        f.write(good)
