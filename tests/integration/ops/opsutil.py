"""Helpers for the operations tests: a portico config with `metrics` and `status` locations,
a Prometheus text-format parser, and the status JSON."""

import json
import re
import shutil
import subprocess

import portico_testlib as lib

METRICS = "/_portico/metrics"
STATUS = "/_portico/status"
SERVER_NAME = "ops.test"


def body(port, servers, upstream_extra="", status_extra="", metrics_extra="",
         server_extra="", locations="", listen_extra="", extra_blocks=""):
    srv = "".join("    server %s;\n" % s for s in servers)
    return """upstream app {
%s    connect_timeout 1s;
    read_timeout 5s;
    send_timeout 5s;
%s
}
%s
server {
    listen 127.0.0.1:%d%s;
    server_name %s other.test;
%s
    location / { proxy_pass app; }
    location %s { metrics; %s }
    location %s { status; %s }
%s
}
""" % (srv, upstream_extra, extra_blocks, port, listen_extra, SERVER_NAME, server_extra,
       METRICS, metrics_extra, STATUS, status_extra, locations)


class Ops:
    def __init__(self, portico, backends, port):
        self.portico = portico
        self.backends = backends
        self.port = port

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def metrics_text(self):
        r = lib.curl(self.url(METRICS))
        assert r.status == 200, r
        assert r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
        return r.body.decode()

    def metrics(self):
        return parse(self.metrics_text())

    def status(self):
        r = lib.curl(self.url(STATUS + "?format=json"))
        assert r.status == 200, r
        assert r.header("Content-Type") == "application/json"
        return json.loads(r.body)

    def server(self, addr, upstream="app"):
        for u in self.status()["upstreams"]:
            if u["name"] == upstream:
                for s in u["servers"]:
                    if s["address"] == addr:
                        return s
        raise KeyError(addr)

    def action(self, upstream, addr, what, method="POST", accept="application/json"):
        path = "%s/servers/%s/%s/%s" % (STATUS, upstream, addr, what)
        return lib.curl(self.url(path), "-X", method, "-H", "Accept: " + accept)


def start(tmp_path, start_portico, backends, workers=1, access_log="off", **kw):
    port = lib.free_port()
    servers = kw.pop("servers", None) or [b.addr for b in backends]
    conf = lib.make_conf(tmp_path, body(port, servers, **kw), workers=workers,
                         access_log=access_log)
    return Ops(start_portico(conf, [port]), backends, port)


_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """Parsed exposition: samples by (name, sorted labels), and the TYPE of each family."""

    def __init__(self, samples, types, text):
        self.samples = samples
        self.types = types
        self.text = text

    def get(self, name, **labels):
        """The value of the one sample of `name` with exactly these labels (None if absent)."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def series(self, name, **match):
        """[(labels dict, value)] of `name` whose labels include `match`."""
        out = []
        for (n, lab), v in self.samples.items():
            d = dict(lab)
            if n == name and all(d.get(k) == v2 for k, v2 in match.items()):
                out.append((d, v))
        return out

    def sum(self, name, **match):
        return sum(v for _, v in self.series(name, **match))


def parse(text):
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        assert m, "not an exposition line: %r" % line
        labels = tuple(sorted((k, v.replace('\\"', '"').replace("\\n", "\n")
                               .replace("\\\\", "\\"))
                              for k, v in _LABEL.findall(m.group(2) or "")))
        key = (m.group(1), labels)
        assert key not in samples, "duplicate series %r" % (key,)
        samples[key] = float(m.group(3))
    return Metrics(samples, types, text)


def promtool():
    return shutil.which("promtool")


def promtool_check(text):
    """(returncode, output) of `promtool check metrics` on text."""
    p = subprocess.run([promtool(), "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace")
