"""A fleet of portico instances on one machine (tests/integration/fleet/, docs/fleet.md).

    client (127.0.0.9) --> front: portico `stream` server on 127.0.0.1:F, proxy_protocol v2,
                           health_check http path=/ready against each instance; a second
                           stream server passes TLS through (health_check ... port= on the
                           instances' plain ops port)
                        --> instances: three porticos on 127.0.0.2, .3, .4 (one configuration
                           template, the same ports on each address), `listen ... proxy_protocol`
                           with trusted_proxies 127.0.0.1 (the front), a direct `listen ... tls`
                           with shared tls_session_ticket_key files, backends from DNS SRV
                        --> backends b1, b2 on 127.0.0.1 (tests/tools/backend.py), found through
                           dnsmasq's SRV records _http._tcp.app.fleet.test
    redis-server on a loopback port for the global limit (limit_req_zone ... store=redis://).

Every process is started here and stopped by PID. Directives of the issue-19 branches (`ready`:
instance_name, readiness, liveness, shutdown_delay, $instance_name; `redislimit`: limit_req_zone
store=) are used when the binary accepts them (`portico -t` on a probe configuration); a test
needing one that is missing skips with what `portico -t` said (the unknown directive).
"""

import http.client
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for _d in (os.path.join(HERE, ".."), os.path.join(HERE, "..", "stream"),
           os.path.join(HERE, "..", "..", "tools")):
    if _d not in sys.path:
        sys.path.insert(0, _d)

import portico_testlib as lib  # noqa: E402
from streamlib import Daemon  # noqa: E402
from udplib import Dnsmasq  # noqa: E402

ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
CLIENT_ADDR = "127.0.0.9"      # the real client, behind the L4 tier
FRONT_ADDR = "127.0.0.1"       # the L4 tier; what each instance sees as the TCP peer
HOST = "fleet.test"

_PROBES = {
    "ready": "instance_name probe;\nshutdown_delay 1s;\nserver {\n    listen 127.0.0.1:1;\n"
             "    add_header X-Instance $instance_name;\n"
             "    location = /ready { readiness; }\n    location = /live { liveness; }\n}\n",
    "redis": "limit_req_zone $host zone=g:64k rate=1r/s store=redis://127.0.0.1:1 "
             "store_fail=open store_timeout=20ms;\n"
             "server {\n    listen 127.0.0.1:1;\n    location / { limit_req zone=g; return 200; }\n}\n",
}
_probed = {}


def _probe(what):
    """None when the binary accepts the probe configuration of `what`, else why not (the
    `portico -t` message, which names the directive it does not know)."""
    if what not in _probed:
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(_PROBES[what])
        try:
            rc, out = lib.run_portico(["-t", "-c", f.name])
        finally:
            os.unlink(f.name)
        _probed[what] = None if rc == 0 else " ".join(
            l.split(": ", 1)[-1] for l in out.splitlines() if "test failed" not in l)
    return _probed[what]


def have_ready():
    """None when the binary has the `ready` branch's directives (instance_name, shutdown_delay,
    readiness, liveness, $instance_name), else what `portico -t` says of them."""
    return _probe("ready")


def have_redis_store():
    """None when the binary has the `redislimit` branch's `limit_req_zone ... store=redis://
    store_fail= store_timeout=`, else what `portico -t` says of it."""
    return _probe("redis")


def common_port(hosts):
    """A port free on every one of hosts (the instances listen on the same port each)."""
    for _ in range(50):
        port = lib.free_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            s = socket.socket()
            try:
                s.bind((h, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return port
    raise RuntimeError("no port free on all of %s" % (hosts,))


# The configuration every instance runs: one template, @NAME@ / @ADDR@ / @DIR@ filled in per
# instance (in a real fleet, one file and one address per machine, and the host name as
# instance_name). @READY@ and @LIMIT@ are the issue-19 branches' lines when they exist.
INSTANCE_CONF = """\
workers 1;
error_log @DIR@/error.log info;
access_log @DIR@/access.log combined;
shutdown_timeout 5s;
@READY_MAIN@
@TICKET_KEYS@
resolver 127.0.0.1:@DNS_PORT@ ttl_max=1s ipv6=off;
@LIMIT_ZONE@

upstream app {
    server app.fleet.test service=http resolve;
    connect_timeout 1s;
    read_timeout 5s;
    send_timeout 5s;
}

server {
    listen @ADDR@:@PORT@ proxy_protocol;      # from the L4 tier
    trusted_proxies 127.0.0.1;                # the front, and no one else
    listen @ADDR@:@TLS_PORT@ tls;             # TLS clients (here: openssl s_client, directly)
    listen @ADDR@:@TLS_PP_PORT@ tls proxy_protocol;   # TLS passed through by the front
    server_name fleet.test;
    tls_certificate @CERT@;
    tls_certificate_key @KEY@;
@ADD_HEADER@
    location / { proxy_pass app; }
    location /status/ {                       # the global limit (the backend answers
@LIMIT_REQ@
        proxy_pass app;                       # /status/CODE with CODE); a location without a
    }                                         # handler (`return`) has no access phase
    location = /ready { @READY_HANDLER@ }
    location = /live { @LIVE_HANDLER@ }
    location = /metrics { metrics; }
}

server {
    listen @ADDR@:@OPS_PORT@;                 # probes and metrics, without the PROXY protocol
    location = /ready { @READY_HANDLER@ }
    location = /metrics { metrics; }
}
"""

FRONT_CONF = """\
upstream fleet {
@SERVERS@
    proxy_protocol v2;                        # the instances learn the client's address
    health_check http path=/ready interval=200ms timeout=500ms fall=2 rise=2;
    connect_timeout 1s;
    retries 2;                                # a refused connect goes to another instance
}

upstream fleet_tls {
@TLS_SERVERS@
    proxy_protocol v2;
    # TLS passes through, so the check goes to the gateways' plain ops port (no PROXY header)
    health_check http path=/ready port=@OPS_PORT@ interval=200ms timeout=500ms fall=2 rise=2;
    connect_timeout 1s;
    retries 2;
}

stream {
    server {
        listen 127.0.0.1:@FRONT_PORT@;
        proxy_pass fleet;
    }
    server {
        listen 127.0.0.1:@FRONT_TLS_PORT@;
        proxy_pass fleet_tls;
    }
}
"""


def fill(template, values):
    out = template
    for k, v in values.items():
        out = out.replace("@%s@" % k, str(v))
    leftover = re.findall(r"@[A-Z_]+@", out)
    assert not leftover, leftover
    return out


class Instance:
    def __init__(self, name, addr, portico, port, tls_port, dir):
        self.name, self.addr, self.p = name, addr, portico
        self.port, self.tls_port, self.dir = port, tls_port, dir

    def access_lines(self):
        return [l for l in self.p.read(self.p.access_log).splitlines() if l.strip()]


class Fleet:
    """Built by the `fleet` fixture (conftest.py); .stop() stops everything by PID."""

    def __init__(self, tmpdir, certs, start_backend, rate=None, redis=False,
                 ticket_keys=None, shutdown_delay=None):
        self.procs = []          # Portico objects, stopped at teardown
        self.daemons = []        # Dnsmasq, Daemon
        try:
            self._build(tmpdir, certs, start_backend, rate, redis, ticket_keys, shutdown_delay)
        except BaseException:
            print(self.logs())
            self.stop()
            raise

    def _build(self, tmpdir, certs, start_backend, rate, redis, ticket_keys, shutdown_delay):
        self.tmpdir = str(tmpdir)
        self.ready_missing = have_ready()
        self.ready = self.ready_missing is None
        self.rate = rate
        self.cert, self.key = certs.pair("localhost")
        self.ca = certs.ca
        # backends, found through DNS SRV records
        self.backends = [start_backend("b1"), start_backend("b2")]
        srv = ["--srv-host=_http._tcp.app.fleet.test,%s.fleet.test,%d,10,1" % (b.name, b.port)
               for b in self.backends]
        self.dns = Dnsmasq({"b1.fleet.test": "127.0.0.1", "b2.fleet.test": "127.0.0.1"},
                           self.tmpdir, extra=srv)
        self.daemons.append(self.dns)
        self.redis = None
        if redis:
            self.redis_port = lib.free_port()
            self.start_redis()
        # shared ticket keys: one 80-byte file, the same on every instance
        if ticket_keys is None:
            ticket_keys = [self.key_file("ticket-1.key")]
        self.ticket_keys = ticket_keys
        self.port = common_port(list(ADDRS) + ["127.0.0.5"])
        self.tls_port = common_port(list(ADDRS) + ["127.0.0.5"])
        self.tls_pp_port = common_port(list(ADDRS) + ["127.0.0.5"])
        self.ops_port = common_port(list(ADDRS) + ["127.0.0.5"])
        self.shutdown_delay = shutdown_delay
        self.instances = [self.start_instance("i%d" % (i + 2), addr)
                          for i, addr in enumerate(ADDRS)]
        self.front_port = lib.free_port()
        self.front_tls_port = lib.free_port()
        self.front = self.start_front()

    # -- pieces ----------------------------------------------------------------------------

    def key_file(self, name):
        path = os.path.join(self.tmpdir, name)
        with open(path, "wb") as f:
            f.write(os.urandom(80))
        os.chmod(path, 0o600)
        return path

    def start_redis(self):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (scripts/deps.sh --test)")
        self.redis = Daemon(["redis-server", "--port", str(self.redis_port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                             self.tmpdir, "--protected-mode", "no"],
                            self.redis_port, os.path.join(self.tmpdir, "redis.log"))
        self.daemons.append(self.redis)

    def stop_redis(self):
        self.redis.stop()
        self.daemons.remove(self.redis)
        self.redis = None

    def instance_conf(self, name, addr, dir, ticket_keys=None):
        ready = self.ready
        limit_zone = limit_req = ""
        if self.rate is not None:
            limit_zone = ("limit_req_zone $host zone=global:64k rate=%dr/s "
                          "store=redis://127.0.0.1:%d store_fail=open store_timeout=50ms;"
                          % (self.rate, self.redis_port))
            limit_req = "        limit_req zone=global burst=5 nodelay;"
        return fill(INSTANCE_CONF, {
            "NAME": name, "ADDR": addr, "DIR": dir, "PORT": self.port,
            "TLS_PORT": self.tls_port, "DNS_PORT": self.dns.port,
            "TLS_PP_PORT": self.tls_pp_port, "OPS_PORT": self.ops_port,
            "CERT": self.cert, "KEY": self.key,
            "TICKET_KEYS": "\n".join("tls_session_ticket_key %s;" % k
                                     for k in (ticket_keys or self.ticket_keys)),
            "READY_MAIN": (("instance_name %s;" % name) +
                           ("\nshutdown_delay %s;" % self.shutdown_delay
                            if self.shutdown_delay else "") if ready else ""),
            "ADD_HEADER": "    add_header X-Instance $instance_name;" if ready else "",
            "READY_HANDLER": "readiness;" if ready else 'return 200 "ready\\n";',
            "LIVE_HANDLER": "liveness;" if ready else 'return 200 "alive\\n";',
            "LIMIT_ZONE": limit_zone, "LIMIT_REQ": limit_req,
        })

    def start_instance(self, name, addr, ticket_keys=None):
        d = os.path.join(self.tmpdir, name)
        os.makedirs(d, exist_ok=True)
        conf = self.instance_conf(name, addr, d, ticket_keys)
        p = lib.Portico(d, conf, [self.ops_port, self.port, self.tls_port], host=addr,
                        name=name,
                        shutdown_timeout=8.0)
        self.procs.append(p)
        return Instance(name, addr, p, self.port, self.tls_port, d)

    def reload_instance(self, inst, ticket_keys=None):
        """Rewrite the instance's configuration (its ticket keys) and SIGHUP it; returns once
        it logged the new generation."""
        n = len(re.findall(r"reloaded: configuration generation", inst.p.read(inst.p.error_log)))
        inst.p.write_conf(self.instance_conf(inst.name, inst.addr, inst.dir, ticket_keys))
        inst.p.signal(signal.SIGHUP)
        ok = lib.wait_until(lambda: len(re.findall(
            r"reloaded: configuration generation", inst.p.read(inst.p.error_log))) > n,
            timeout=10)
        assert ok, inst.p.read(inst.p.error_log)[-3000:]

    def start_front(self):
        d = os.path.join(self.tmpdir, "front")
        os.makedirs(d, exist_ok=True)
        body = fill(FRONT_CONF, {
            "SERVERS": "\n".join("    server %s:%d;" % (a, self.port) for a in ADDRS),
            "TLS_SERVERS": "\n".join("    server %s:%d;" % (a, self.tls_pp_port) for a in ADDRS),
            "OPS_PORT": self.ops_port,
            "FRONT_PORT": self.front_port, "FRONT_TLS_PORT": self.front_tls_port})
        conf = lib.make_conf(d, body, workers=1, shutdown_timeout="2s")
        p = lib.Portico(d, conf, [self.front_port, self.front_tls_port], name="front",
                        shutdown_timeout=2.0)
        self.procs.append(p)
        return p

    def wait_front_up(self, timeout=10.0):
        """Until the front's health checks have passed on every instance once (servers start
        UP; this waits for a check of each so that a later DOWN is the check's doing)."""
        return lib.wait_until(lambda: all(self.check_count(a) >= 2 for a in ADDRS),
                              timeout=timeout)

    def check_count(self, addr):
        """Health checks the front counted for one instance (its /metrics is not needed: the
        instance's access log has a line per /ready request)."""
        inst = [i for i in self.instances if i.addr == addr][0]
        return sum(1 for l in inst.access_lines() if '"GET /ready ' in l)

    def front_health_log(self):
        return self.front.read(self.front.error_log)

    def stop(self):
        problems = []
        for p in self.procs:           # all at once: each may wait out its shutdown_delay
            p.signal(signal.SIGTERM)
        for p in reversed(self.procs):
            if p.stopped:
                continue
            rc = p.stop()
            if rc is None:
                p.kill()
                problems.append("portico pid %d did not exit after SIGTERM" % p.pid)
            elif rc != 0:
                problems.append("portico pid %d exited %d after SIGTERM" % (p.pid, rc))
        for d in self.daemons:
            d.stop()
        return problems

    def logs(self):
        return "\n".join(p.logs() for p in self.procs)


# ------------------------------------------------------------------------ clients ---

def instance_get(fleet, inst, path, timeout=10):
    """GET path from one instance directly, on its TLS listener (curl, the test CA)."""
    return lib.curl("https://localhost:%d%s" % (inst.tls_port, path), "--cacert", fleet.ca,
                    "--resolve", "localhost:%d:%s" % (inst.tls_port, inst.addr),
                    timeout=timeout)


def front_request(fleet, path, headers=None, source=CLIENT_ADDR, timeout=5.0):
    """One request on a new connection through the front, from `source`: (status, headers
    dict lower-cased, body)."""
    c = http.client.HTTPConnection(FRONT_ADDR, fleet.front_port, timeout=timeout,
                                   source_address=(source, 0))
    try:
        c.request("GET", path, headers=dict({"Host": HOST}, **(headers or {})))
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


class Load:
    """Keep-alive HTTP/1.1 clients through the front, as a browser or an HTTP library is one:
    each thread holds one connection and sends GET `path` on it, at most `rps` a second
    (None: as fast as answers come). A request that finds its *reused* connection closed
    before any byte of an answer (EOF or reset: the server closed it while idle, RFC 9112
    section 9.3.1, "retrying requests") is sent again once on a new connection, as curl,
    browsers and HTTP libraries do for idempotent requests; that is counted in `retried`, and
    anything else is a failure: an error on a new connection, a connection lost mid-answer, a
    status outside `ok_statuses`."""

    def __init__(self, fleet, path, conns=4, rps=None, ok_statuses=(200,), source=CLIENT_ADDR):
        self.fleet, self.path, self.conns, self.rps = fleet, path, conns, rps
        self.ok_statuses = ok_statuses
        self.source = source
        self.lock = threading.Lock()
        self.statuses = {}
        self.instances = {}
        self.backends = {}
        self.failures = []
        self.retried = 0
        self.retried_kinds = {}  # exception name -> count, of the retried ones
        self.sent = 0
        self.connections = 0
        self.times = []          # (t, status) of each answer, monotonic
        self.max_latency = 0.0   # the slowest answer, seconds (reported, never asserted)
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(conns)]

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(30)
        self.t1 = time.monotonic()
        return self

    def run(self, seconds):
        self.start()
        time.sleep(seconds)
        return self.stop()

    def _connect(self):
        with self.lock:
            self.connections += 1
        c = http.client.HTTPConnection(FRONT_ADDR, self.fleet.front_port, timeout=10,
                                       source_address=(self.source, 0))
        c.connect()
        return c

    def _once(self, c):
        c.request("GET", self.path, headers={"Host": HOST})
        r = c.getresponse()
        r.read()
        return r

    def _record(self, r, started):
        with self.lock:
            self.max_latency = max(self.max_latency, time.monotonic() - started)
            self.sent += 1
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            self.times.append((time.monotonic(), r.status))
            inst = r.getheader("X-Instance")
            if inst:
                self.instances[inst] = self.instances.get(inst, 0) + 1
            b = r.getheader("X-Backend")
            if b:
                self.backends[b] = self.backends.get(b, 0) + 1
            if r.status not in self.ok_statuses:
                self.failures.append("status %d" % r.status)

    def _fail(self, what):
        with self.lock:
            self.sent += 1
            self.failures.append(what)

    def _run(self):
        c = None
        gap = 1.0 / self.rps if self.rps else 0.0
        nxt = time.monotonic()
        while not self._stop.is_set():
            if gap:
                now = time.monotonic()
                if nxt > now:
                    time.sleep(nxt - now)
                nxt = max(nxt + gap, time.monotonic() - gap)
            try:
                if c is None:
                    c = self._connect()
                    reused = False
                else:
                    reused = True
                started = time.monotonic()
                try:
                    r = self._once(c)
                except (http.client.RemoteDisconnected, ConnectionResetError,
                        BrokenPipeError) as e:
                    # nothing of an answer arrived: an idle keep-alive connection the server
                    # (or the front, relaying its close) closed as we sent
                    c.close()
                    c = None
                    if not reused:
                        raise
                    with self.lock:
                        self.retried += 1
                        k = type(e).__name__
                        self.retried_kinds[k] = self.retried_kinds.get(k, 0) + 1
                    c = self._connect()
                    r = self._once(c)
                self._record(r, started)
                if r.will_close:
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException) as e:
                self._fail("%s: %s" % (type(e).__name__, e))
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.05)
        if c is not None:
            c.close()

    def summary(self):
        return ("%d requests on %d connections in %.2f s, statuses %s, instances %s, "
                "retried after an idle close %d %s, slowest answer %.3f s, failed %d%s"
                % (self.sent, self.connections, self.t1 - self.t0, self.statuses,
                   self.instances, self.retried, self.retried_kinds, self.max_latency, len(self.failures),
                   (": " + "; ".join(self.failures[:5])) if self.failures else ""))


def metric(text, name, labels=None):
    """The value of one sample of a Prometheus text page (labels: a dict that must match)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if labels and any(got.get(k) != v for k, v in labels.items()):
            continue
        return float(m.group(3))
    return None
