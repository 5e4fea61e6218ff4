"""`server NAME:PORT` in an upstream: every address the name resolves to is a server.

These tests do depend on how names resolve, on purpose, so they decide it themselves: portico
runs in a private mount namespace with a test-written file bind-mounted over /etc/hosts
(portico_testlib.private_hosts_prefix; the machine's /etc/hosts is never touched). The
backend listens on one address of the name only, as a backend bound to 127.0.0.1 does when
`localhost` is also ::1 (Debian 12's /etc/hosts): the other address refuses connections, and
every request must still get 200."""

import collections
import json
import socket

import pytest

import portico_testlib as lib

NAME = "testhost.portico"
N = 50

DEBIAN12 = """127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""
IPV4_ONLY = "127.0.0.1\tlocalhost\n"


def hosts_file(tmp_path, text, name):
    """Writes a hosts file and returns the prefix that makes portico read it (or skips, saying
    why, where a private /etc/hosts cannot be had)."""
    path = tmp_path / "hosts"
    path.write_text(text)
    why = lib.private_hosts_usable(str(path), name)
    if why is not None:
        pytest.skip(why)
    return lib.private_hosts_prefix(str(path))


def port_free_on_both():
    """A port that nothing uses on 127.0.0.1 nor on ::1: the backend takes it on one of them,
    and the other must refuse."""
    for _ in range(50):
        port = lib.free_port()
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


def run(tmp_path, start_portico, prefix, server, extra="", workers=2):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream app {
    server %s;
%s}
server { listen 127.0.0.1:%d; location / { proxy_pass app; } }
""" % (server, extra, port), workers=workers, access_log="json")
    return start_portico(conf, [port], wrap=prefix)


def requests(p, n=N):
    """n requests, each on a new connection (so both workers take some): Counter of
    (status, body)."""
    out = collections.Counter()
    for _ in range(n):
        st, _, body = lib.raw_request("127.0.0.1", p.port, "GET", "/name")
        out[(st, body.decode("latin-1"))] += 1
    return out


def upstream_addrs(p):
    """Counter of the address that answered each request: the last entry of upstream_addr,
    which lists every attempt (nginx's form, "a, b")."""
    p.stop()
    lines = [json.loads(l) for l in p.read(p.access_log).splitlines() if l.strip()]
    return collections.Counter(o["upstream_addr"].split(", ")[-1] for o in lines)


@pytest.mark.ipv6
@pytest.mark.parametrize("ejection", ["default", "off"])
@pytest.mark.parametrize("listen_on", ["127.0.0.1", "::1"])
def test_h1_h1_server_name_two_addresses_one_listening(tmp_path, start_backend, start_portico,
                                                       listen_on, ejection):
    # NAME is 127.0.0.1 and ::1; the backend answers on one of them, the other refuses:
    # every request gets 200, from the backend, through its address. With the default the
    # refusing address is ejected after its first refusal; with `outlier_detection off` it
    # keeps taking its round-robin share of first attempts, each retried on the other
    prefix = hosts_file(tmp_path, "127.0.0.1\t%s\n::1\t%s\n" % (NAME, NAME), NAME)
    port = port_free_on_both()
    b = start_backend("b1", host=listen_on, port=port)
    p = run(tmp_path, start_portico, prefix, "%s:%d" % (NAME, port),
            extra="    outlier_detection off;\n" if ejection == "off" else "")
    assert requests(p) == {(200, "b1"): N}, p.logs()
    assert b.stats()["requests"] == N

    other = "[::1]:%d" % port if listen_on == "127.0.0.1" else "127.0.0.1:%d" % port
    good = lib.hostport(listen_on, port)
    log = p.read(p.error_log)
    # the refusing address was tried, and is named as NAME (ADDRESS) in the error log
    failed = log.count('upstream "app" server %s (%s): connect() failed' % (NAME, other))
    if ejection == "default":
        assert failed >= 1, p.logs()
        assert "server %s (%s) in app ejected for " % (NAME, other) in log, p.logs()
    else:
        assert failed >= N // 2 - 5, p.logs()
        assert " ejected for " not in log, p.logs()
    assert "(%s)" % good not in log, p.logs()
    # the access log shows the concrete address that answered
    assert upstream_addrs(p) == {good: N}


@pytest.mark.parametrize("layout", ["debian12", "ipv4_only"])
def test_h1_h1_upstream_server_by_name(tmp_path, start_backend, start_portico, layout):
    # `server localhost:PORT` with the backend on 127.0.0.1, on Debian 12's /etc/hosts
    # (localhost is also ::1) and on one without the IPv6 line. Without ::1 on lo the ::1
    # address fails differently (not configured, not refused), with the same outcome.
    prefix = hosts_file(tmp_path, DEBIAN12 if layout == "debian12" else IPV4_ONLY, "localhost")
    port = port_free_on_both() if lib.have_ipv6_loopback() else lib.free_port()
    start_backend("b1", port=port)
    p = run(tmp_path, start_portico, prefix, "localhost:%d" % port)
    assert requests(p) == {(200, "b1"): N}, p.logs()
    log = p.read(p.error_log)
    if layout == "debian12":
        assert "server localhost ([::1]:%d)" % port in log, p.logs()
    else:
        assert "[::1]" not in log, p.logs()
    assert upstream_addrs(p) == {"127.0.0.1:%d" % port: N}


@pytest.mark.ipv6
def test_h1_h1_server_name_addresses_share_the_line(tmp_path, start_backend, start_portico):
    # both addresses listening: each is a server with the line's full weight, so round robin
    # alternates between them, and a `backup` name stays out while a primary works
    prefix = hosts_file(tmp_path, "127.0.0.1\t%s\n::1\t%s\n" % (NAME, NAME), NAME)
    port = port_free_on_both()
    start_backend("v4", host="127.0.0.1", port=port)
    start_backend("v6", host="::1", port=port)
    spare = start_backend("spare")
    p = run(tmp_path, start_portico, prefix, "%s:%d weight=3" % (NAME, port),
            extra="    server %s backup;\n" % spare.addr, workers=1)
    assert requests(p, 40) == {(200, "v4"): 20, (200, "v6"): 20}, p.logs()
    assert spare.stats()["requests"] == 0
    assert upstream_addrs(p) == {"127.0.0.1:%d" % port: 20, "[::1]:%d" % port: 20}
