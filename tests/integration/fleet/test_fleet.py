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

Figures are printed (`run.sh tests/integration/fleet -s` shows them)."""

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
