"""Admin actions of the status location: drain and enable a server (a drained server gets no
new request, the requests it has finish; enable brings it back), force a health check, and
the refusals: without `status_write on`, from an address no `allow` rule names, with the
wrong method, for an unknown server."""

import threading

import portico_testlib as lib
import opsutil
from opsutil import STATUS

WRITE = "status_write on; allow 127.0.0.1;"


def backends_of(o, n, path="/"):
    out = []
    for _ in range(n):
        r = lib.curl(o.url(path))
        assert r.status == 200, r
        out.append(r.header("X-Backend"))
    return out


def test_admin_drain_and_enable(ops):
    o = ops(n_backends=2, workers=2, status_extra=WRITE)
    b1, b2 = o.backends
    assert set(backends_of(o, 6)) == {"b1", "b2"}
    before = b1.stats()["requests"]
    r = o.action("app", b1.addr, "drain")
    assert r.status == 200, r
    assert r.json() == {"upstream": "app", "server": b1.addr, "action": "drain",
                        "changed": True, "state": "draining"}
    # again: nothing changes
    assert o.action("app", b1.addr, "drain").json()["changed"] is False
    assert o.server(b1.addr)["state"] == "draining"
    assert o.server(b1.addr)["draining"] is True
    # every new request goes to b2, on both workers; b1 sees none
    assert backends_of(o, 12) == ["b2"] * 12
    assert b1.stats()["requests"] == before
    m = o.metrics()
    assert m.get("portico_upstream_server_state", upstream="app", server=b1.addr,
                 state="draining") == 1
    r = o.action("app", b1.addr, "enable")
    assert r.status == 200 and r.json()["state"] == "up" and r.json()["changed"] is True
    assert "b1" in backends_of(o, 8)
    assert b1.stats()["requests"] > before
    log = o.portico.read(o.portico.error_log)
    assert "server %s in app drained (no new requests) by admin 127.0.0.1" % b1.addr in log
    assert "server %s in app enabled by admin 127.0.0.1" % b1.addr in log


def test_admin_drain_lets_requests_in_flight_finish(ops):
    o = ops(n_backends=2, status_extra=WRITE)
    b1, b2 = o.backends
    assert o.action("app", b2.addr, "drain").status == 200
    result = {}

    def slow():
        result["r"] = lib.curl(o.url("/slow/1500"))

    t = threading.Thread(target=slow)
    t.start()
    lib.wait_until(lambda: o.server(b1.addr)["active"] == 1, what="the slow request on b1")
    # b1 drained while it serves the slow request; b2 back
    assert o.action("app", b2.addr, "enable").status == 200
    assert o.action("app", b1.addr, "drain").status == 200
    assert backends_of(o, 4) == ["b2"] * 4
    t.join(10)
    r = result["r"]
    assert r.status == 200 and r.body == b"slow" and r.header("X-Backend") == "b1"
    assert o.server(b1.addr)["active"] == 0


def test_admin_drained_backup_tier(start_backend, start_portico, tmp_path):
    """With every primary drained the backup takes the requests (no 503)."""
    b1, b2 = start_backend("b1"), start_backend("b2")
    o = opsutil.start(tmp_path, start_portico, [b1, b2], status_extra=WRITE,
                      servers=[b1.addr, "%s backup" % b2.addr])
    assert set(backends_of(o, 4)) == {"b1"}
    assert o.action("app", b1.addr, "drain").status == 200
    assert backends_of(o, 4) == ["b2"] * 4


def test_admin_refused_without_status_write(ops):
    o = ops(status_extra="allow 127.0.0.1;")
    addr = o.backends[0].addr
    r = o.action("app", addr, "drain")
    assert r.status == 403 and "status_write" in r.json()["error"]
    assert o.server(addr)["state"] == "up"
    assert lib.curl(o.url("/")).status == 200


def test_admin_refused_from_a_disallowed_address(ops):
    # an allow list that does not name the client: reading is still allowed (no rule
    # matched), acting is not
    o = ops(status_extra="status_write on; allow 10.0.0.0/8; allow ::1;")
    addr = o.backends[0].addr
    assert lib.curl(o.url(STATUS)).status == 200
    r = o.action("app", addr, "drain")
    assert r.status == 403 and "allow" in r.json()["error"]
    assert o.server(addr)["state"] == "up"


def test_admin_refused_by_deny(ops):
    o = ops(status_extra="status_write on; deny 127.0.0.0/8; allow all;")
    addr = o.backends[0].addr
    assert lib.curl(o.url(STATUS)).status == 403
    assert o.action("app", addr, "drain").status == 403
    # the first matching rule decides
    o2 = ops(status_extra="status_write on; allow 127.0.0.1; deny all;")
    assert o2.action("app", o2.backends[0].addr, "drain").status == 200


def test_admin_allow_all(ops):
    o = ops(status_extra="status_write on; allow all;")
    assert o.action("app", o.backends[0].addr, "drain").status == 200


def test_admin_bad_requests(ops):
    o = ops(status_extra=WRITE)
    addr = o.backends[0].addr
    r = o.action("app", addr, "drain", method="GET")
    assert r.status == 405 and r.header("Allow") == "POST"
    assert o.action("app", "127.0.0.1:1", "drain").status == 404
    assert o.action("nope", addr, "drain").status == 404
    assert o.action("app", addr, "explode").status == 404
    r = lib.curl(o.url(STATUS + "/servers/app"), "-X", "POST")
    assert r.status == 404
    # an IPv6 address in the path is percent-encoded; a plain one may be too
    r = lib.curl(o.url(STATUS + "/servers/app/%s/drain" % addr.replace(":", "%3A")), "-X",
                 "POST")
    assert r.status == 200 and r.json()["state"] == "draining"
    # no health_check in this upstream
    r = o.action("app", addr, "check")
    assert r.status == 409
    assert o.server(addr)["state"] == "draining"


def test_admin_form_post_goes_back_to_the_page(ops):
    o = ops(status_extra=WRITE)
    addr = o.backends[0].addr
    r = o.action("app", addr, "drain", accept="text/html,*/*;q=0.8")
    assert r.status == 303 and r.header("Location") == STATUS
    assert o.server(addr)["state"] == "draining"


def test_admin_check_now(ops):
    """A long interval: the first check would come minutes later; `check` runs one now."""
    o = ops(status_extra=WRITE, upstream_extra="    health_check http interval=600s;")
    addr = o.backends[0].addr
    h = o.server(addr)["health"]
    assert h["passes"] == 0 and h["last"] is None and h["checked_at"] is None
    r = o.action("app", addr, "check")
    assert r.status == 202 and r.json()["action"] == "check"
    h = lib.wait_until(lambda: (lambda h: h if h["passes"] == 1 else None)(
        o.server(addr)["health"]), timeout=5, what="the forced check ran")
    assert h["last"] == "passed" and h["checked_at"] is not None
    r = o.action("app", addr, "check")
    assert r.status == 202
    lib.wait_until(lambda: o.server(addr)["health"]["passes"] == 2, timeout=5,
                   what="a second forced check")
    assert "health check asked for by admin 127.0.0.1" in o.portico.read(o.portico.error_log)
