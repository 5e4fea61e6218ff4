"""Many instances as one service (issue 19, docs/fleet.md): three porticos on 127.0.0.2, .3 and
.4 run one configuration template behind a portico `stream` front on 127.0.0.1 that sends PROXY
protocol v2 and health-checks their /ready; backends come from dnsmasq's SRV records, the
global rate limit from a redis-server (fleetlib.py draws the wiring). What a user checks:

- a TLS session from one instance resumes on the others (shared tls_session_ticket_key files);
  an instance with another key file does a full handshake (the negative control);
- the backend sees the real client (127.0.0.9) behind the L4 tier, in X-Forwarded-For and
  Forwarded, and so do the instances' access logs;
- new connections spread over the three instances, and requests over both SRV backends;
- a global limit of R req/s (limit_req_zone ... store=redis://) admits R +-10 % over a run spread
  over the three; Redis stopped mid-run: store_fail=open limits locally (log line, metric),
  and the global limit comes back with Redis;
- an instance stopped with SIGTERM (shutdown_delay, readiness 503, the front's health check
  marks it DOWN) under load: no request fails at the front's client.

Figures are printed: `/usr/bin/python3 -m pytest -s tests/integration/fleet` shows them (pytest-xdist,
which run.sh uses, keeps them)."""

import os
import re
import signal
import time

import pytest

import portico_testlib as lib
from tls_h2_testlib import s_client

import fleetlib
from fleetlib import ADDRS, CLIENT_ADDR, Load, front_request, instance_get, metric

REQ = b"GET /name HTTP/1.0\r\nHost: localhost\r\n\r\n"


def tls_session(fleet, port, addr, sess, out=True):
    """s_client to addr:port; with out, save the session in sess, else offer it. Returns
    "New" or "Reused"."""
    args = ["-servername", "localhost", "-ign_eof", "-CAfile", fleet.ca,
            "-sess_out" if out else "-sess_in", sess]
    rc, text = s_client(port, args, stdin=REQ, host=addr)
    assert "HTTP/1.1 200" in text, text
    m = re.search(r"^(New|Reused), TLSv1\.[23]", text, re.M)
    assert m, text
    return m.group(1)


@pytest.mark.hard_timeout(60)
def test_fleet_tls_session_resumes_on_another_instance(fleet, tmp_path):
    f = fleet()
    sess = str(tmp_path / "sess.pem")
    first, others = f.instances[0], f.instances[1:]
    assert tls_session(f, f.tls_port, first.addr, sess) == "New"
    results = {i.addr: tls_session(f, f.tls_port, i.addr, sess, out=False) for i in others}
    print("\nsession from %s offered to %s" % (first.addr, results))
    assert set(results.values()) == {"Reused"}, results
    # the negative control: the same template with another key file, on 127.0.0.5
    other = f.start_instance("i5", "127.0.0.5", ticket_keys=[f.key_file("other.key")])
    got = tls_session(f, f.tls_port, other.addr, sess, out=False)
    print("offered to 127.0.0.5 (another ticket key file): %s" % got)
    assert got == "New"
    # and the session was not spoiled: it still resumes on the fleet
    assert tls_session(f, f.tls_port, others[0].addr, sess, out=False) == "Reused"


@pytest.mark.hard_timeout(90)
def test_fleet_tls_through_the_front(fleet, tmp_path):
    """TLS passed through the L4 tier with PROXY v2 (`listen ... tls proxy_protocol`): a
    session made with whichever gateway the front chose resumes on the others the front
    chooses next; the backend sees the real client and https; the front's checks of that
    upstream go to the gateways' plain ops port (health_check ... port=), where a stopping
    gateway's 503 takes it out during shutdown_delay, before its listeners close."""
    missing = fleetlib.have_ready()
    if missing:
        pytest.skip("needs readiness;, shutdown_delay and $instance_name (branch ready); "
                    "portico -t says: %s" % missing)
    f = fleet(shutdown_delay="2s")
    assert f.wait_front_up()
    sess = str(tmp_path / "front.pem")
    req = b"GET /name HTTP/1.0\r\nHost: localhost\r\n\r\n"

    def via_front(out):
        args = ["-servername", "localhost", "-ign_eof", "-CAfile", f.ca,
                "-sess_out" if out else "-sess_in", sess]
        rc, text = s_client(f.front_tls_port, args, stdin=req, host=fleetlib.FRONT_ADDR)
        m = re.search(r"^(New|Reused), TLSv1\.[23]", text, re.M)
        inst = re.search(r"^X-Instance: (\S+)", text, re.M | re.I)
        assert m and inst and "HTTP/1.1 200" in text, text
        return inst.group(1), m.group(1)

    first = via_front(True)
    seen = [via_front(False) for _ in range(5)]
    print("\nTLS through the front: session from %s, then %s" % (first, seen))
    assert first[1] == "New"
    assert all(v == "Reused" for _, v in seen), seen
    assert {i for i, _ in seen} - {first[0]}, seen          # resumed on other gateways
    # the backend sees the client and https
    r = lib.curl("https://localhost:%d/headers" % f.front_tls_port, "--cacert", f.ca,
                 "--resolve", "localhost:%d:127.0.0.1" % f.front_tls_port,
                 "--interface", CLIENT_ADDR)
    assert r.status == 200, r
    import json
    hdrs = {n.lower(): v for n, v in json.loads(r.body)["headers"]}
    assert hdrs.get("x-forwarded-for") == CLIENT_ADDR and \
        hdrs.get("x-forwarded-proto") == "https", hdrs
    # a stop: the ops port's 503 takes it out of fleet_tls while it still serves
    victim = f.instances[2]
    victim.p.signal(signal.SIGTERM)
    down = "server %s:%d in fleet_tls DOWN" % (victim.addr, f.tls_pp_port)
    assert lib.wait_until(lambda: down in f.front_health_log(), timeout=10), \
        f.front_health_log()
    assert victim.p.wait_exit(15) == 0
    log = f.front_health_log()
    assert re.search(r"%s: \d/\d checks failed: status 503" % re.escape(down), log), log
    assert "server %s:%d: connect() failed" % (victim.addr, f.tls_pp_port) not in log, log


@pytest.mark.hard_timeout(90)
def test_fleet_ticket_key_rotation_in_two_rounds(fleet, tmp_path):
    """docs/fleet.md's rotation (current.key encrypts, previous.key decrypts): round 1 puts the
    new key in previous.key, round 2 makes it current; each round reaches one gateway first, and
    meanwhile a session from any gateway resumes on any other. The one-step rotation (the new key
    first at once) does not: the negative control."""
    f = fleet()
    k = {n: f.key_file("K%d.key" % n) for n in range(4)}
    i2, i3, i4 = f.instances
    for i in f.instances:
        f.reload_instance(i, [k[1], k[0]])
    sess = str(tmp_path / "s.pem")

    def crosses():
        """For each ordered pair of gateways: does a new session from the first resume on the
        second?"""
        out = {}
        for a in f.instances:
            assert tls_session(f, f.tls_port, a.addr, sess) == "New"
            for b in f.instances:
                if b is not a:
                    out[(a.name, b.name)] = tls_session(f, f.tls_port, b.addr, sess, out=False)
        return out

    steps = []
    for label, keys in (("round 1 (previous.key = the new key)", [k[1], k[2]]),
                        ("round 2 (current.key = the new key, previous.key = the old)",
                         [k[2], k[1]])):
        f.reload_instance(i2, keys)            # one gateway has it, the others not yet
        got = crosses()
        steps.append((label + ", one gateway reloaded", got))
        assert set(got.values()) == {"Reused"}, (label, got)
        for i in (i3, i4):
            f.reload_instance(i, keys)
        got = crosses()
        steps.append((label + ", all reloaded", got))
        assert set(got.values()) == {"Reused"}, (label, got)
    # one step: a new key first on one gateway; its tickets do not open on the others yet
    f.reload_instance(i2, [k[3], k[2]])
    got = crosses()
    steps.append(("one-step rotation (new key first at once), one gateway reloaded", got))
    for label, got in steps:
        print("%s: %s" % (label, ", ".join("%s->%s %s" % (a, b, v)
                                           for (a, b), v in sorted(got.items()))))
    assert got[("i2", "i3")] == "New" and got[("i2", "i4")] == "New", got
    assert got[("i3", "i2")] == "Reused", got


@pytest.mark.hard_timeout(60)
def test_fleet_backend_sees_real_client_through_l4_tier(fleet):
    f = fleet()
    st, hdrs, body = front_request(f, "/headers")
    assert st == 200, (st, body)
    import json
    seen = {n.lower(): v for n, v in json.loads(body)["headers"]}
    print("\nbackend saw X-Forwarded-For=%r Forwarded=%r" % (seen.get("x-forwarded-for"),
                                                           seen.get("forwarded")))
    assert seen.get("x-forwarded-for") == CLIENT_ADDR, seen
    assert seen.get("forwarded", "").startswith("for=%s;" % CLIENT_ADDR), seen
    # the instance that served it logged the client too, not the front
    assert lib.wait_until(lambda: any(l.startswith(CLIENT_ADDR + " ")
                                      for i in f.instances for l in i.access_lines()
                                      if "/headers" in l), timeout=5)
    for i in f.instances:
        assert not [l for l in i.access_lines() if "/headers" in l and
                    not l.startswith(CLIENT_ADDR + " ")], i.access_lines()


@pytest.mark.hard_timeout(60)
def test_fleet_spreads_over_instances_and_srv_backends(fleet):
    f = fleet()
    n = 30
    backends = {}
    headers = {}
    for k in range(n):
        st, hdrs, body = front_request(f, "/name?k=%d" % k)
        assert st == 200, (st, body)
        backends[body.decode()] = backends.get(body.decode(), 0) + 1
        inst = hdrs.get("x-instance")
        if inst:
            headers[inst] = headers.get(inst, 0) + 1
    def per_instance():
        return {i.name: sum(1 for l in i.access_lines() if "GET /name?k=" in l)
                for i in f.instances}

    # (access log lines are written in batches: wait for all of them)
    lib.wait_until(lambda: sum(per_instance().values()) >= n, timeout=10)
    per_instance = per_instance()
    print("\n%d requests on new connections: per instance (access logs) %s, X-Instance %s, "
          "per backend %s" % (n, per_instance, headers, backends))
    assert sum(per_instance.values()) == n
    assert all(v >= 5 for v in per_instance.values()), per_instance
    assert set(backends) == {"b1", "b2"}, backends
    if f.ready:
        assert headers == per_instance, (headers, per_instance)


# ------------------------------------------------------------ global rate limit (Redis) ---

RATE = 30           # the global limit, requests a second across the three instances
BURST = 5           # limit_req zone=global burst=5 nodelay


def admitted_run(f, seconds, conns=6, rps=30):
    """A paced run through the front on /status/200 (offered: conns * rps a second, spread over
    the instances by the front); returns the Load (statuses 200 and 429 are both answers)."""
    load = Load(f, "/status/200", conns=conns, rps=rps, ok_statuses=(200, 429)).run(seconds)
    assert not load.failures, load.summary()
    return load


def answered_span(load):
    """Seconds from the first answer to the last one."""
    ts = [t for t, _ in load.times]
    return max(ts) - min(ts)


def per_instance_admitted(f, since):
    """{instance: (200s, 429s)} of /status/200 lines in each access log, after `since` lines."""
    out = {}
    for i in f.instances:
        lines = [l for l in i.access_lines()[since.get(i.name, 0):] if "/status/200" in l]
        out[i.name] = (sum(1 for l in lines if '" 200 ' in l),
                       sum(1 for l in lines if '" 429 ' in l))
    return out


def log_marks(f):
    return {i.name: len(i.access_lines()) for i in f.instances}


def wait_logged(f, load):
    """Until every answer of load is in the access logs (written in batches)."""
    total = sum(load.statuses.values())
    lib.wait_until(lambda: sum(sum(v) for v in per_instance_admitted(f, {}).values()) >= total,
                   timeout=10)


@pytest.mark.hard_timeout(120)
def test_fleet_global_rate_limit_in_redis(fleet):
    missing = fleetlib.have_redis_store()
    if missing:
        pytest.skip("needs `limit_req_zone ... store=redis://HOST:PORT store_fail= "
                    "store_timeout=` (branch redislimit); portico -t says: %s" % missing)
    f = fleet(rate=RATE, redis=True)
    assert f.wait_front_up()
    # 1. Redis up: one limit for the fleet
    marks = log_marks(f)
    load = admitted_run(f, 5.0)
    span = answered_span(load)
    ok = load.statuses.get(200, 0)
    expect = RATE * span
    print("\nglobal limit %d r/s, Redis up: %s; admitted %d in %.2f s = %.1f r/s (expected "
          "%.0f +- 10 %%, + burst %d)" % (RATE, load.summary(), ok, span, ok / span, expect,
                                          BURST))
    assert 0.9 * expect <= ok <= 1.1 * expect + BURST, (ok, expect)
    wait_logged(f, load)
    spread = per_instance_admitted(f, marks)
    print("  per instance (200, 429) from the access logs: %s" % spread)
    # the front spread the run over the three (which instance's requests the limit admits is
    # Redis's and the leases' business: the sum is what is limited)
    total = sum(a + r for a, r in spread.values())
    assert all(a + r >= total / 6 for a, r in spread.values()), spread
    # 2. Redis stops in the middle of a run: store_fail=open, each instance limits locally (up
    # to 3 x RATE); 3. it comes back (same port): the global limit again. One run throughout.
    load = Load(f, "/status/200", conns=6, rps=30, ok_statuses=(200, 429)).start()
    time.sleep(1.0)
    t_stop = time.monotonic()
    f.stop_redis()
    time.sleep(3.0)
    t_restart = time.monotonic()
    for i in f.instances:
        text = i.p.read(i.p.error_log)
        assert ('limit_req zone "global": redis 127.0.0.1:%d unreachable (' % f.redis_port
                in text and "limiting locally (store_fail=open)" in text), text[-3000:]
        m = instance_get(f, i, "/metrics")
        up = metric(m.body.decode(), "portico_limit_req_store_up", {"zone": "global"})
        fb = metric(m.body.decode(), "portico_limit_req_store_fallback_total",
                    {"zone": "global"})
        print("  %s with Redis stopped: portico_limit_req_store_up %s, "
              "portico_limit_req_store_fallback_total %s" % (i.name, up, fb))
        assert up == 0 and fb and fb > 0, (up, fb)
    back = "redis 127.0.0.1:%d reachable again" % f.redis_port
    before = {i.name: i.p.read(i.p.error_log).count(back) for i in f.instances}
    f.start_redis()
    # (the load goes on: the reconnection backoff is at most 5 s)
    assert lib.wait_until(lambda: all(i.p.read(i.p.error_log).count(back) > before[i.name]
                                      for i in f.instances), timeout=20), \
        [i.p.read(i.p.error_log)[-2000:] for i in f.instances]
    t_back = time.monotonic()
    time.sleep(4.0)
    load.stop()
    assert not load.failures, load.summary()

    def window(t0, t1):
        return sum(1 for t, st in load.times if t0 < t <= t1 and st == 200), t1 - t0

    ok, span = window(t_stop, t_restart)
    print("one run: %s\n  Redis stopped for %.2f s: admitted %d = %.1f r/s (each instance "
          "limits locally at %d r/s); every instance logged %r %.1f s after Redis restarted"
          % (load.summary(), span, ok, ok / span, RATE, back, t_back - t_restart))
    assert ok / span > 1.5 * RATE, (ok, span)
    assert ok <= 1.1 * 3 * RATE * span + 3 * BURST, (ok, span)
    ok, span = window(t_back, load.t1)
    expect = RATE * span
    print("  Redis back: admitted %d in %.2f s = %.1f r/s (expected %.0f +- 10 %%)"
          % (ok, span, ok / span, expect))
    assert 0.9 * expect <= ok <= 1.1 * expect + BURST, (ok, expect)
    for i in f.instances:
        m = instance_get(f, i, "/metrics")
        assert metric(m.body.decode(), "portico_limit_req_store_up", {"zone": "global"}) == 1


# ------------------------------------------------------------------ graceful stop ---

@pytest.mark.hard_timeout(120)
def test_fleet_instance_stopped_under_load_no_failed_request(fleet):
    missing = fleetlib.have_ready()
    if missing:
        pytest.skip("needs readiness;, liveness;, shutdown_delay, instance_name and "
                    "$instance_name (branch ready); portico -t says: %s" % missing)
    f = fleet(shutdown_delay="2s")
    assert f.wait_front_up()
    victim = f.instances[1]
    load = Load(f, "/name", conns=6, rps=40).start()
    time.sleep(1.5)
    t_term = time.monotonic()
    victim.p.signal(signal.SIGTERM)
    # readiness turns 503 at once; liveness stays 200; the listeners still serve
    # (the signal is handled asynchronously: wait for the first 503)
    r = lib.wait_until(lambda: (lambda r: r if r.status == 503 else None)(
        instance_get(f, victim, "/ready")), timeout=5)
    assert r and r.body == b"not ready: stopping\n", r
    r = instance_get(f, victim, "/live")
    assert (r.status, r.body) == (200, b"alive\n"), r
    down = "server %s:%d in fleet DOWN" % (victim.addr, f.port)
    assert lib.wait_until(lambda: down in f.front_health_log(), timeout=10), \
        f.front_health_log()
    t_down = time.monotonic()
    rc = victim.p.wait_exit(15)
    t_exit = time.monotonic()
    assert rc == 0, victim.p.logs()
    time.sleep(1.0)
    load.stop()
    victim_served = load.instances.get(victim.name, 0)
    print("\ngraceful stop of %s under load: %s\n  marked DOWN by the front %.2f s after "
          "SIGTERM (health_check interval 200ms fall=2, shutdown_delay %s); exited %.2f s "
          "after SIGTERM" % (victim.name, load.summary(), t_down - t_term, f.shutdown_delay,
                             t_exit - t_term))
    assert load.failures == [], load.summary()
    # during shutdown_delay each HTTP/1.1 response said Connection: close, so every client left
    # the stopping instance after a response, none had an idle connection closed under it
    assert load.retried == 0, load.summary()
    # the front took it out because /ready said 503, during shutdown_delay: not because its
    # listeners had closed (no connect of the front was refused by it)
    front_log = f.front_health_log()
    assert re.search(r"%s: \d/\d checks failed: status 503" % re.escape(down), front_log), \
        front_log
    assert "server %s:%d: connect() failed" % (victim.addr, f.port) not in front_log, front_log
    assert victim_served > 0 and set(load.instances) == {i.name for i in f.instances}, \
        load.instances
    # after the stop, the other two carry everything
    after = [t for t, _ in load.times if t > t_exit]
    assert len(after) > 20, load.summary()
