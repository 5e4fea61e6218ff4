"""The fleet examples of docs/fleet.md (etc/examples/fleet/) are what they claim:

- each portico configuration (the gateway's portico.conf, the L4 tier's front.conf, the one in
  the Kubernetes ConfigMap) passes `portico -t`, with the certificate, key and ticket-key paths
  pointed at test files and the resolver at a dnsmasq serving the SRV records they name, and
  `portico -t -v` shows the servers those records give;
- promtool accepts prometheus.yml and alerts.yml, and `promtool test rules alerts-test.yml`
  fires what it expects (error ratios, ejected servers, a failed reload, a Redis store down);
- kubernetes.yaml (an example the tests do not run) parses, its probes name the locations of
  its own configuration, and terminationGracePeriodSeconds is above preStop + shutdown_delay
  + shutdown_timeout."""

import os
import re
import shutil
import subprocess

import pytest

import portico_testlib as lib
import fleetlib
from udplib import Dnsmasq

EXAMPLES = os.path.join(lib.REPO, "etc", "examples", "fleet")
CONFS = ["portico.conf", "front.conf", "kubernetes.yaml"]


def config_of(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        text = f.read()
    if name.endswith(".yaml"):
        import yaml
        docs = list(yaml.safe_load_all(text))
        return [d for d in docs if d["kind"] == "ConfigMap"][0]["data"]["portico.conf"]
    return text


def seconds(text, directive):
    m = re.search(r"^\s*%s\s+(\d+)s;" % directive, text, re.M)
    return int(m.group(1)) if m else 0


@pytest.fixture
def srv_dns(tmp_path):
    """dnsmasq answering the SRV names the examples use."""
    names = ["app.service.internal", "app.default.svc.cluster.local"]
    hosts = {"app-1.internal": "10.0.2.7", "app-2.internal": "10.0.2.8"}
    extra = []
    for n in names:
        extra += ["--srv-host=_http._tcp.%s,app-1.internal,8080,10,1" % n,
                  "--srv-host=_http._tcp.%s,app-2.internal,8080,10,1" % n]
    d = Dnsmasq(hosts, str(tmp_path), extra=extra)
    yield d
    d.stop()


@pytest.mark.parametrize("name", CONFS)
def test_fleet_example_config_checks(name, tmp_path, certs, srv_dns):
    text = config_of(name)
    needs = []
    if re.search(r"\b(readiness|liveness|shutdown_delay|instance_name)\b|\$instance_name", text):
        needs.append(fleetlib.have_ready())
    if "store=redis://" in text:
        needs.append(fleetlib.have_redis_store())
    if any(needs):
        pytest.skip("uses a directive this portico lacks: %s" % "; ".join(n for n in needs if n))
    cert, key = certs.pair("localhost")
    for k in ("current.key", "previous.key"):
        (tmp_path / k).write_bytes(os.urandom(80))
    subst = [
        (r"/etc/portico/tls/[\w.-]+\.(pem|crt)", cert),
        (r"/etc/portico/tls/[\w.-]+\.key", key),
        (r"/etc/portico/tickets/", str(tmp_path) + "/"),
        (r"/var/log/portico/[\w./-]+", lambda m: str(tmp_path / os.path.basename(m.group(0)))),
        (r"^(\s*resolver )[\d.]+", lambda m: m.group(1) + srv_dns.addr),
        # (the Redis host is resolved at load by the system's resolver: the cluster's name
        # does not resolve here)
        (r"store=redis://[\w.-]+", "store=redis://127.0.0.1"),
    ]
    for pat, rep in subst:
        text = re.sub(pat, rep, text, flags=re.M)
    conf = tmp_path / ("example-" + name.replace(".yaml", ".conf"))
    conf.write_text(text)
    rc, out = lib.run_portico(["-t", "-v", "-c", str(conf)], timeout=30)
    assert rc == 0, out + "\n" + text
    if "service=http resolve" in text:
        # the servers the SRV records give, with their ports
        assert "server app-1.internal (10.0.2.7:8080)" in out, out
        assert "server app-2.internal (10.0.2.8:8080)" in out, out
        assert "warning" not in out, out


def test_fleet_example_shutdown_timings():
    """The gateway's stop fits the unit's TimeoutStopSec (30 s) and the Kubernetes grace."""
    gw = config_of("portico.conf")
    assert seconds(gw, "shutdown_delay") + seconds(gw, "shutdown_timeout") < 30
    import yaml
    with open(os.path.join(EXAMPLES, "kubernetes.yaml")) as f:
        docs = {d["kind"]: d for d in yaml.safe_load_all(f)}
    conf = docs["ConfigMap"]["data"]["portico.conf"]
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0].endswith("sleep")
    total = int(pre[1]) + seconds(conf, "shutdown_delay") + seconds(conf, "shutdown_timeout")
    assert pod["terminationGracePeriodSeconds"] > total, (pod["terminationGracePeriodSeconds"],
                                                         total)
    # the probes reach the locations the configuration has, on the port it listens on
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, handler in (("readinessProbe", "readiness"), ("livenessProbe", "liveness"),
                           ("startupProbe", "readiness")):
        get = c[probe]["httpGet"]
        assert "listen %d;" % ports[get["port"]] in conf
        assert re.search(r"location = %s\s*\{ %s; \}" % (re.escape(get["path"]), handler),
                         conf), (probe, get)


@pytest.fixture
def promtool():
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return "promtool"


def test_fleet_example_prometheus_config_and_rules(promtool):
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "alerts-test.yml"]):
        r = subprocess.run([promtool] + args, cwd=EXAMPLES, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, (args, r.stdout, r.stderr)


def test_fleet_example_alerts_use_served_metrics(start_portico, start_backend, tmp_path):
    """Every portico_* name alerts.yml uses is one portico serves (a `# TYPE` line of its
    /metrics, with an upstream and a Redis-backed zone configured) and one operations.md
    lists, except those of a branch not in this binary yet."""
    with open(os.path.join(EXAMPLES, "alerts.yml")) as f:
        used = set(re.findall(r"\bportico_[a-z_]+", f.read()))
    assert len(used) >= 4, used
    b = start_backend("b1")
    port = lib.free_port()
    redis = fleetlib.have_redis_store() is None
    zone = ("limit_req_zone $host zone=g:64k rate=10r/s store=redis://127.0.0.1:%d;\n"
            % lib.free_port()) if redis else ""
    body = """%supstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    location / { %sproxy_pass app; }
    location = /metrics { metrics; }
}
""" % (zone, b.addr, port, "limit_req zone=g burst=100;" if redis else "")
    p = start_portico(lib.make_conf(tmp_path, body), [port])
    assert lib.curl(p.url("/")).status == 200
    served = lib.curl(p.url("/metrics")).body.decode()
    docs = ""
    for name in ("operations.md", "access.md"):
        with open(os.path.join(lib.REPO, "docs", name)) as f:
            docs += f.read()
    # (the store metrics are documented with the Redis store, in access.md's "Global limits"
    # section, which its branch writes; until that section exists they are not looked for)
    store_docs = re.search(r"^#+ Global limits", docs, re.M | re.I) is not None
    for m in sorted(used):
        if m.startswith("portico_limit_req_store") and not redis:
            continue
        assert "# TYPE %s " % m in served, (m, served[:3000])
        if m.startswith("portico_limit_req_store") and not store_docs:
            continue
        assert "`%s`" % m in docs, m
