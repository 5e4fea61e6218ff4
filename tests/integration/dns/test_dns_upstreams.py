"""`server NAME:PORT resolve` and `server NAME service=S resolve`: names re-resolved while
portico runs, with no reload. Addresses added get traffic while the pools of those that stay are
untouched; addresses removed get no new request while their requests in flight finish; TTLs are
honoured within ttl_min..ttl_max; a name that does not resolve at start is a warning and a 503
until it does; a name that stops resolving keeps its last addresses; SRV records give targets,
ports and backups."""

import concurrent.futures
import os
import socket
import subprocess
import signal
import time

import pytest

import portico_testlib as lib
from dnsutil import a_zone, dns_conf, wait_log


def names(p, n, path="/name"):
    """X-Backend of n sequential requests; every one must succeed."""
    out = []
    for _ in range(n):
        r = lib.curl(p.url(path))
        assert r.rc == 0 and r.status == 200, r
        out.append(r.header("x-backend"))
    return out


def test_dns_address_added_keeps_pools(tmp_path, dns, backends_on_port, start_portico):
    port, (b1, b2, b3) = backends_on_port(3)
    dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2"]))
    pport = lib.free_port()
    p = start_portico(dns_conf(tmp_path, pport, dns, "    server app.test:%d resolve;" % port),
                      [pport])
    assert set(names(p, 6)) == {"b1", "b2"}
    conns = (b1.stats()["connections"], b2.stats()["connections"])
    assert conns == (1, 1), conns  # one pooled connection each, reused
    # a third address appears: it gets traffic, without a reload
    dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2", "127.0.0.3"]))
    wait_log(p, "app.test now resolves to 127.0.0.1:%d, 127.0.0.2:%d, 127.0.0.3:%d"
             % (port, port, port))
    seen = names(p, 9)
    assert set(seen) == {"b1", "b2", "b3"}, seen
    # the addresses that stayed kept their pools: no new connection to them
    assert (b1.stats()["connections"], b2.stats()["connections"]) == conns
    assert b3.stats()["connections"] == 1
    assert "reloaded" not in p.read(p.error_log)


def test_dns_address_removed_inflight_finish(tmp_path, dns, backends_on_port, start_portico):
    port, (b1, b2) = backends_on_port(2)
    dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2"]))
    pport = lib.free_port()
    p = start_portico(dns_conf(tmp_path, pport, dns, "    server app.test:%d resolve;" % port),
                      [pport])
    assert set(names(p, 4)) == {"b1", "b2"}
    # slow requests in flight on both, then 127.0.0.2 goes away
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        slow = [ex.submit(lib.curl, p.url("/slow/3000")) for _ in range(6)]
        assert lib.wait_until(lambda: b2.stats()["active"] >= 2, timeout=5), b2.stats()
        dns.set_zone(a_zone("app.test", ["127.0.0.1"]))
        wait_log(p, "app.test now resolves to 127.0.0.1:%d (was" % port)
        # no new request goes to the removed address
        assert set(names(p, 6)) == {"b1"}
        # and the ones it had finish normally
        res = [f.result() for f in slow]
    assert all(r.rc == 0 and r.status == 200 for r in res), res
    assert {r.header("x-backend") for r in res} == {"b1", "b2"}
    # its pooled connections are closed once idle
    assert lib.wait_until(lambda: b2.stats()["open"] == 0, timeout=5), b2.stats()


def test_dns_ttl_honoured_and_clamped(tmp_path, dns, backends_on_port, start_portico):
    """TTL 2 s is asked every 2 s; TTL 0 no more often than ttl_min (1 s); TTL 3600 no less often
    than ttl_max (3 s)."""
    port, (b1,) = backends_on_port(1)
    zone = {}
    zone.update(a_zone("two.test", ["127.0.0.1"], ttl=2))
    zone.update(a_zone("zero.test", ["127.0.0.1"], ttl=0))
    zone.update(a_zone("hour.test", ["127.0.0.1"], ttl=3600))
    dns.set_zone(zone)
    pport = lib.free_port()
    conf = dns_conf(tmp_path, pport, dns,
                    "    server two.test:%d resolve;\n" % port, resolver_extra="ttl_min=1s "
                    "ttl_max=3s ipv6=off",
                    main_extra="upstream zero { server zero.test:%d resolve; }\n"
                               "upstream hour { server hour.test:%d resolve; }\n" % (port, port))
    start_portico(conf, [pport])
    t0 = time.time()
    time.sleep(7.5)

    def gaps(name):
        ts = [t for t in dns.queries(name) if t >= t0 - 1]
        return ts, [b - a for a, b in zip(ts, ts[1:])]

    ts, g = gaps("two.test")
    assert len(ts) >= 3 and all(1.8 <= x <= 2.9 for x in g), (ts, g)
    ts, g = gaps("zero.test")
    assert len(ts) >= 5 and all(x >= 0.9 for x in g), (ts, g)
    ts, g = gaps("hour.test")
    assert len(ts) >= 2 and all(2.7 <= x <= 3.9 for x in g), (ts, g)
    # AAAA is not asked with ipv6=off
    assert dns.queries("two.test", "AAAA") == []


def test_dns_unresolvable_at_start(tmp_path, dns, backends_on_port, start_portico):
    port, (b1,) = backends_on_port(1)
    pport = lib.free_port()
    conf = dns_conf(tmp_path, pport, dns, "    server app.test:%d resolve;" % port)
    path = tmp_path / "t.conf"
    path.write_text(conf)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc == 0, out
    assert "warning: cannot resolve \"app.test\" (Domain name not found): upstream \"app\" " \
           "has no server for it until it resolves" in out, out
    p = start_portico(conf, [pport])
    assert "warning: cannot resolve \"app.test\"" in p.read(p.stderr_path)
    r = lib.curl(p.url("/name"))
    assert r.status == 503, r
    assert b"no backend address yet" in r.body
    ps = r.header("proxy-status")
    assert "error=destination_unavailable" in ps and "do not resolve" in ps, ps
    assert r.header("retry-after") == "1"
    # once the name resolves, it serves (asked again every second here)
    dns.set_zone(a_zone("app.test", ["127.0.0.1"]))
    assert lib.wait_until(lambda: lib.curl(p.url("/name")).status == 200, timeout=10)
    assert names(p, 3) == ["b1"] * 3
    wait_log(p, "app.test resolves again")


def test_dns_stops_resolving_keeps_last(tmp_path, dns, backends_on_port, start_portico):
    port, (b1, b2) = backends_on_port(2)
    dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2"]))
    pport = lib.free_port()
    p = start_portico(dns_conf(tmp_path, pport, dns, "    server app.test:%d resolve;" % port),
                      [pport])
    assert set(names(p, 4)) == {"b1", "b2"}
    for failure in ({"app.test": {"rcode": "SERVFAIL"}}, {}, {"app.test": {"A": []}}):
        dns.set_zone(failure)
        n = len(dns.queries("app.test"))
        assert lib.wait_until(lambda: len(dns.queries("app.test")) >= n + 2, timeout=10)
        assert set(names(p, 4)) == {"b1", "b2"}, failure
    wait_log(p, "keeping its last 2 addresses")


def test_dns_srv_records(tmp_path, dns, start_backend, start_portico):
    b1 = start_backend("b1")
    b2 = start_backend("b2")
    b3 = start_backend("b3")
    dns.set_zone({
        "_http._tcp.svc.test": {"SRV": [[10, 1, b1.port, "one.test", 1],
                                        [10, 1, b2.port, "two.test", 1],
                                        [20, 1, b3.port, "three.test", 1]]},
        "one.test": {"A": [["127.0.0.1", 1]]},
        "two.test": {"A": [["127.0.0.1", 1]]},
        "three.test": {"A": [["127.0.0.1", 1]]},
    })
    pport = lib.free_port()
    conf = dns_conf(tmp_path, pport, dns, "    server svc.test service=http resolve;")
    p = start_portico(conf, [pport])
    # priority 10: the primaries, with the ports of their records; priority 20: a backup
    assert set(names(p, 6)) == {"b1", "b2"}
    path = tmp_path / "v.conf"
    path.write_text(conf)
    rc, out = lib.run_portico(["-t", "-v", "-c", str(path)])
    assert "server one.test (127.0.0.1:%d) weight=1" % b1.port in out, out
    assert "server three.test (127.0.0.1:%d) weight=1 backup" % b3.port in out, out
    # the backup takes over when the primaries cannot
    b1.stop()
    b2.stop()
    assert set(names(p, 4)) == {"b3"}
    # the service moves: new records, new servers
    b4 = start_backend("b4")
    dns.set_zone({
        "_http._tcp.svc.test": {"SRV": [[5, 1, b4.port, "four.test", 1]]},
        "four.test": {"A": [["127.0.0.1", 1]]},
    })
    wait_log(p, "SRV _http._tcp.svc.test now resolves to 127.0.0.1:%d" % b4.port)
    assert set(names(p, 4)) == {"b4"}


@pytest.mark.parametrize("balance", ["round_robin", "hash header:X-Key consistent", "least_conn",
                                     "random_two", "ewma"])
def test_dns_change_under_every_policy(tmp_path, dns, backends_on_port, start_portico, balance):
    """A new server list rebuilds each balancer (round_robin's and hash's tables are made from
    the list): every address gets traffic, nothing fails."""
    port, (b1, b2) = backends_on_port(2)
    dns.set_zone(a_zone("app.test", ["127.0.0.1"]))
    pport = lib.free_port()
    p = start_portico(dns_conf(tmp_path, pport, dns,
                               "    server app.test:%d resolve;\n    balance %s;" %
                               (port, balance), workers=2), [pport])
    assert set(names(p, 3)) == {"b1"}
    dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2"]))
    wait_log(p, "now resolves to 127.0.0.1:%d, 127.0.0.2:%d" % (port, port))
    seen = set()
    for i in range(40):
        r = lib.curl(p.url("/name"), "-H", "X-Key: k%d" % i)
        assert r.status == 200, r
        seen.add(r.header("x-backend"))
    assert seen == {"b1", "b2"}
    dns.set_zone(a_zone("app.test", ["127.0.0.2"]))
    wait_log(p, "now resolves to 127.0.0.2:%d (was" % port)
    for i in range(10):
        r = lib.curl(p.url("/name"), "-H", "X-Key: k%d" % i)
        assert r.status == 200 and r.header("x-backend") == "b2", r


def test_dns_reload_carries_addresses(tmp_path, dns, backends_on_port, start_portico):
    """A reload keeps what the resolver knows (no wait for DNS) and the pools of the addresses."""
    port, (b1, b2) = backends_on_port(2)
    dns.set_zone(a_zone("app.test", ["127.0.0.1"]))
    pport = lib.free_port()
    p = start_portico(dns_conf(tmp_path, pport, dns, "    server app.test:%d resolve;" % port),
                      [pport])
    dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2"]))
    wait_log(p, "now resolves to 127.0.0.1:%d, 127.0.0.2:%d" % (port, port))
    assert set(names(p, 4)) == {"b1", "b2"}
    conns = (b1.stats()["connections"], b2.stats()["connections"])
    p.signal(signal.SIGHUP)
    wait_log(p, "reloaded: configuration generation 2")
    assert set(names(p, 6)) == {"b1", "b2"}
    assert (b1.stats()["connections"], b2.stats()["connections"]) == conns


@pytest.mark.parametrize("line,msg", [
    ("server app.test resolve;", "invalid address \"app.test\" (expected NAME:PORT"),
    ("server 127.0.0.1:80 resolve;", "\"resolve\" needs a host name"),
    ("server app.test:80 service=http;", "service= needs \"resolve\""),
    ("server app.test:80 service=http resolve;", "no port with service="),
    ("server app.test service=http weight=2 resolve;", "no weight= with service="),
    ("server bad..name:80 resolve;", "invalid host name \"bad..name\""),
    ("server app.test:80 resolve;\n    server APP.test:80 resolve;", "duplicate server"),
])
def test_dns_config_errors(tmp_path, line, msg):
    conf = lib.make_conf(tmp_path, "upstream app {\n    %s\n}\nserver {\n    listen 127.0.0.1:%d;"
                         "\n    location / { proxy_pass app; }\n}\n" % (line, lib.free_port()))
    path = tmp_path / "c.conf"
    path.write_text(conf)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc != 0 and msg in out and "c.conf:" in out, out


@pytest.mark.parametrize("resolver,msg", [
    ("resolver bogus;", "invalid resolver address \"bogus\""),
    ("resolver 127.0.0.1:99999;", "invalid port"),
    ("resolver 127.0.0.1 ttl_min=5s ttl_max=1s;", "ttl_min is above ttl_max"),
    ("resolver 127.0.0.1 valid=x;", "invalid time \"x\""),
    ("resolver 127.0.0.1 ipv4=off ipv6=off;", "leave nothing to ask for"),
    ("resolver_timeout never;", "invalid time"),
])
def test_resolver_config_errors(tmp_path, resolver, msg):
    conf = lib.make_conf(tmp_path, "upstream app {\n    server 127.0.0.1:9;\n}\nserver {\n"
                         "    listen 127.0.0.1:%d;\n    location / { proxy_pass app; }\n}\n"
                         % lib.free_port(), main_extra=resolver)
    path = tmp_path / "c.conf"
    path.write_text(conf)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc != 0 and msg in out, out


def test_dns_unresolved_explain_and_t_v(tmp_path, dns):
    """`portico explain` and `portico -t -v` on an upstream whose only name does not resolve:
    they say so, and nothing breaks (no server to show or to build a request for)."""
    pport = lib.free_port()
    conf = dns_conf(tmp_path, pport, dns, "    server app.test:8080 resolve;\n"
                                          "    protocol h2c;")
    path = tmp_path / "e.conf"
    path.write_text(conf)
    rc, out = lib.run_portico(["-t", "-v", "-c", str(path)])
    assert rc == 0, out
    assert "resolve app.test:8080: 0 server(s) now" in out, out
    p = subprocess.run([lib.PORTICO_BIN, "explain", "-c", str(path),
                        "GET http://127.0.0.1:%d/x" % pport], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=20)
    out = p.stdout.decode()
    assert p.returncode == 0, out
    assert "no server yet" in out and "app.test (resolve)" in out, out


@pytest.mark.hard_timeout(60)
def test_dns_changes_under_load_no_failed_request(tmp_path, dns, backends_on_port,
                                                  start_portico):
    """Clients keep sending (keep-alive, 2 workers) while an address is added, then another
    removed: every request is answered 200."""
    import http.client
    import threading

    port, (b1, b2) = backends_on_port(2)
    dns.set_zone(a_zone("app.test", ["127.0.0.1"]))
    pport = lib.free_port()
    p = start_portico(dns_conf(tmp_path, pport, dns, "    server app.test:%d resolve;" % port,
                               workers=2), [pport])
    stop = threading.Event()
    results, lock = [], threading.Lock()

    def client():
        c = http.client.HTTPConnection("127.0.0.1", pport, timeout=10)
        n = 0
        while not stop.is_set() or n < 20:
            c.request("GET", "/name")
            r = c.getresponse()
            body = r.read()
            with lock:
                results.append((r.status, body))
            n += 1
        c.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        dns.set_zone(a_zone("app.test", ["127.0.0.1", "127.0.0.2"]))
        wait_log(p, "now resolves to 127.0.0.1:%d, 127.0.0.2:%d" % (port, port))
        time.sleep(0.5)
        dns.set_zone(a_zone("app.test", ["127.0.0.2"]))
        wait_log(p, "now resolves to 127.0.0.2:%d (was" % port)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert results and all(s == 200 for s, _ in results), \
        [r for r in results if r[0] != 200][:5]
    bodies = [b for _, b in results]
    assert b"b1" in bodies and b"b2" in bodies
    assert all(b == b"b2" for b in bodies[-8:]), bodies[-8:]  # after the removal, b2 serves


def test_dns_stream_server_follows_changes(tmp_path, dns, start_portico):
    """A stream server's upstream from DNS: new connections go to the addresses of the latest
    answer, without a reload; a connection relaying to an address that went away runs on."""
    tool = os.path.join(lib.TOOLS, "tcp_backend.py")
    port = lib.free_port()
    procs = []
    try:
        for name, host in (("t1", "127.0.0.1"), ("t2", "127.0.0.2")):
            p = subprocess.Popen([lib.PYTHON, tool, "--mode", "greet", "--name", name, "--host",
                                  host, "--port", str(port)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert p.stdout.readline().startswith(b"READY")
            procs.append(p)
        dns.set_zone(a_zone("tcp.test", ["127.0.0.1"]))
        sport = lib.free_port()
        conf = lib.make_conf(tmp_path, """resolver %s ttl_max=1s;
upstream tcp { server tcp.test:%d resolve; connect_timeout 1s; }
stream { server { listen 127.0.0.1:%d; proxy_pass tcp; } }
""" % (dns.addr, port, sport))
        p = start_portico(conf, [sport])

        def hello():
            s = socket.create_connection(("127.0.0.1", sport), timeout=5)
            return s, s.recv(100)
        old, greeting = hello()
        assert greeting == b"hello from t1\n"
        dns.set_zone(a_zone("tcp.test", ["127.0.0.2"]))
        wait_log(p, "tcp.test now resolves to 127.0.0.2:%d (was" % port)
        for _ in range(3):
            s, greeting = hello()
            assert greeting == b"hello from t2\n"
            s.close()
        old.sendall(b"still here\n")
        assert old.recv(100) == b"still here\n"
        old.close()
    finally:
        for pr in procs:
            pr.kill()
            pr.wait()
