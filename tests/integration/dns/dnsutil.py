"""Helpers of the DNS tests (tests/integration/dns/): zones, the generated configuration, waiting
for a line in portico's error log. A module of its own (not conftest) so that test files of
several areas can run in one session."""

import portico_testlib as lib


def a_zone(name, addrs, ttl=1):
    return {name: {"A": [[a, ttl] for a in addrs]}}


def dns_conf(tmp_path, port, dns, upstream_body, resolver_extra="ttl_max=1s", workers=1,
             location_extra="", main_extra=""):
    conf = """resolver %s %s;
%s
upstream app {
%s
    connect_timeout 1s;
    read_timeout 10s;
}

server {
    listen 127.0.0.1:%d;
    location / {
        proxy_pass app;
%s
    }
}
""" % (dns.addr, resolver_extra, main_extra, upstream_body, port, location_extra)
    return lib.make_conf(tmp_path, conf, workers=workers)


def wait_log(p, text, timeout=10.0):
    assert lib.wait_until(lambda: text in p.read(p.error_log), timeout=timeout), \
        "no %r in the error log" % text
