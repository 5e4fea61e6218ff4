"""`instance_name`: one name per instance, shown wherever an operator looks: the status page
(JSON "instance", HTML header), `Proxy-Status` (proxy_name's default), `$instance_name` in
header rules, the JSON access log, the error log's start line and
`portico_instance_info{instance_name=...}`.  The default is the host name.  A name with the
characters HTML needs escaped (quote and backslash are refused by the rule, so JSON and
Prometheus label values never need an escape) shows up exactly in each place."""

import json
import socket

import pytest

import portico_testlib as lib
import opsutil
from opsutil import METRICS, STATUS

ODD = "edge <1> & 'x'"          # space, <, >, & and ' : HTML escapes them, the rest need none


def start(tmp_path, start_portico, backends, name=None, servers=None, access_log="json"):
    port = lib.free_port()
    servers = servers or [b.addr for b in backends]
    main = 'instance_name "%s";' % name if name is not None else ""
    body = opsutil.body(port, servers,
                        server_extra='    add_header X-Instance "$instance_name" always;')
    conf = lib.make_conf(tmp_path, body, access_log=access_log, main_extra=main)
    return opsutil.Ops(start_portico(conf, [port]), backends, port)


def test_instance_name_everywhere(tmp_path, start_backend, start_portico):
    b = start_backend("b1")
    o = start(tmp_path, start_portico, [b], name=ODD)
    p = o.portico

    # status JSON: the name as a JSON string
    assert o.status()["instance"] == ODD

    # status HTML: escaped in the header
    r = lib.curl(o.url(STATUS), "-H", "Accept: text/html")
    assert r.status == 200, r
    page = r.body.decode()
    esc = "edge &lt;1&gt; &amp; &#39;x&#39;"
    assert '<h1><span id="instance">%s</span>' % esc in page, page[:600]
    assert ODD not in page

    # $instance_name in a header rule, on a relayed response
    r = lib.curl(o.url("/bytes/10"))
    assert r.status == 200 and r.header("X-Instance") == ODD, r

    # the JSON access log names the instance on every line
    lib.wait_until(lambda: '"status":200' in p.read(p.access_log), 5, what="access log line")
    lines = [json.loads(x) for x in p.read(p.access_log).splitlines() if x.strip()]
    assert lines and all(x["instance"] == ODD for x in lines), lines

    # the error log's start line
    lib.wait_until(lambda: "(instance %s) started with" % ODD in p.read(p.error_log), 10,
                   what="the start line")

    # Prometheus: one info series with the name, and the page still passes promtool
    text = o.metrics_text()
    m = opsutil.parse(text)
    from_info = m.series("portico_instance_info")
    assert len(from_info) == 1, from_info
    labels, value = from_info[0]
    assert labels["instance_name"] == ODD and value == 1 and labels["version"], labels
    assert m.types["portico_instance_info"] == "gauge"
    if opsutil.promtool() is not None:
        rc, out = opsutil.promtool_check(text)
        assert rc == 0, out


def test_proxy_status_names_the_instance(tmp_path, start_backend, start_portico):
    """A 502 from a dead backend says which instance answered: instance_name, as a quoted
    Structured Field string when it is not a token; proxy_name still wins when set."""
    dead = "127.0.0.1:%d" % lib.free_port()
    o = start(tmp_path, start_portico, [], name=ODD, servers=[dead])
    r = lib.curl(o.url("/x"))
    assert r.status == 502, r
    ps = r.header("Proxy-Status")
    assert ps is not None and ps.startswith('"%s"; error=' % ODD), ps
    assert r.header("X-Instance") == ODD  # `always`: on portico's own errors too

    # a token name is written bare
    o.portico.stop()
    tmp2 = tmp_path / "token"
    tmp2.mkdir()
    o2 = start(tmp2, start_portico, [], name="edge-eu1", servers=[dead])
    r = lib.curl(o2.url("/x"))
    assert r.status == 502 and r.header("Proxy-Status").startswith("edge-eu1; error="), r


def test_proxy_name_overrides(tmp_path, start_portico):
    dead = "127.0.0.1:%d" % lib.free_port()
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, opsutil.body(port, [dead]), access_log="off",
                         main_extra="instance_name node-7;\nproxy_name edge;")
    o = opsutil.Ops(start_portico(conf, [port]), [], port)
    r = lib.curl(o.url("/x"))
    assert r.status == 502 and r.header("Proxy-Status").startswith("edge; error="), r
    assert o.status()["instance"] == "node-7"


def test_default_is_the_host_name(tmp_path, start_backend, start_portico):
    host = socket.gethostname()
    if not host or any(c <= " " or c > "~" or c in '"\\' for c in host) or len(host) > 128:
        pytest.skip("host name %r would be rewritten" % host)
    dead = "127.0.0.1:%d" % lib.free_port()
    o = start(tmp_path, start_portico, [], servers=[dead])
    assert o.status()["instance"] == host
    m = o.metrics()
    assert m.series("portico_instance_info")[0][0]["instance_name"] == host
    r = lib.curl(o.url("/x"))
    assert r.status == 502 and r.header("X-Instance") == host, r
    ps = r.header("Proxy-Status")
    assert ps.startswith(host + "; error=") or ps.startswith('"%s"; error=' % host), ps
    lib.wait_until(lambda: "(instance %s) started with" % host
                   in o.portico.read(o.portico.error_log), 10, what="the start line")


@pytest.mark.parametrize("value, message", [
    ('"a\\"b"', "invalid character in instance_name"),
    ('"a\\\\b"', "invalid character in instance_name"),
    ('"a\\nb"', "invalid character in instance_name"),
    ('""', "instance_name must be 1 to 128 characters"),
    ("x" * 129, "instance_name must be 1 to 128 characters"),
])
def test_instance_name_rule(tmp_path, value, message):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, opsutil.body(port, ["127.0.0.1:1"]),
                         main_extra="instance_name %s;" % value)
    path = tmp_path / "bad.conf"
    path.write_text(conf)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc != 0 and message in out, out
