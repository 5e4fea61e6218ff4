"""health_check ... port=N: checks go to another port of each server's address (a health or
metrics port), without the PROXY protocol header the upstream sends on its traffic port; the
server's state follows what that port answers. (Used by the fleet test's TLS passthrough front:
tests/integration/fleet.)"""

import re

import portico_testlib as lib


def conf(tmp_path, servers, check):
    return lib.make_conf(tmp_path, """upstream app {
%s
    health_check %s;
    connect_timeout 1s;
}
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
}
""" % ("".join("    server %s;\n" % s for s in servers), check, lib.free_port()))


def test_health_port_shown_and_checked(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text(conf(tmp_path, ["127.0.0.1:9"], "http path=/ready port=9145 interval=1s"))
    rc, out = lib.run_portico(["-t", "-v", "-c", str(path)])
    assert rc == 0, out
    assert "health_check http GET /ready on port 9145 every 1s" in out, out
    for bad in ("port=0", "port=65536", "port=x"):
        path.write_text(conf(tmp_path, ["127.0.0.1:9"], "http " + bad))
        rc, out = lib.run_portico(["-t", "-c", str(path)])
        assert rc != 0 and re.search(r"c\.conf:\d+:\d+: invalid port in \"%s\" \(1-65535\)"
                                     % re.escape(bad), out), out


def test_health_port_decides_the_state(tmp_path, start_backend, start_portico):
    """Traffic goes to b1's port; checks to b2's (another backend on another port): b2 answering
    /status/503 makes the server DOWN although its traffic port works, /status/200 UP."""
    b1 = start_backend("b1")
    b2 = start_backend("b2")
    port = lib.free_port()
    text = lib.make_conf(tmp_path, """upstream app {
    server %s;
    proxy_protocol v2;
    health_check http path=/status/503 port=%d interval=200ms fall=2 rise=2;
    connect_timeout 1s;
}
upstream plain { server %s; }
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass plain; }
}
""" % (b1.addr, b2.port, b1.addr, port))
    p = start_portico(text, [port])
    # the checks reached b2 (without a PROXY header, or it would answer 400) and made the
    # server DOWN
    assert lib.wait_until(lambda: "in app DOWN: 2/2 checks failed: status 503" in
                          p.read(p.error_log), timeout=10), p.read(p.error_log)
    assert b2.stats()["requests"] >= 2
    assert b1.stats()["connections"] == 0      # the traffic port was never checked
    assert lib.curl(p.url("/name")).body == b"b1"   # the traffic port itself works
