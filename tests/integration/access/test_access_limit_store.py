"""limit_req zones with store=redis://... (docs/access.md#global-limits): a real redis-server
(no persistence) on a free port, started and killed by PID. Two portico instances of two
workers each share one zone and admit the zone's rate in total (within 10 %, counted over a
bounded h2load run, expected computed from the run's own duration); Redis killed mid-run:
store_fail=open limits locally, every request completes, the state change is logged once and
the fallbacks are counted; store_fail=closed refuses; Redis back: logged, shared limiting
again; a script flushed from Redis is sent again (EVAL after NOSCRIPT); a stopped (slow) Redis
is a fallback, not a hang; AUTH with a password that never reaches the log; a reload that
changes the store reconnects; configuration errors from `portico -t`."""

import http.client
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

import portico_testlib as lib
from accessutil import error_log, metric

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None or
                                shutil.which("redis-cli") is None,
                                reason="redis-server / redis-cli not installed "
                                       "(scripts/deps.sh --test)")


class Redis:
    """A redis-server of the test's own on 127.0.0.1:port, stopped by PID (and restartable on
    the same port)."""

    def __init__(self, tmp_path, port=None, extra=()):
        self.dir = str(tmp_path)
        self.port = port or lib.free_port()
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir] + self.extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert lib.wait_port("127.0.0.1", self.port, 10, self.proc), "redis-server did not start"

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cli(self, *args):
        auth = []
        if "--requirepass" in self.extra:
            auth = ["-a", self.extra[self.extra.index("--requirepass") + 1], "--no-auth-warning"]
        return subprocess.run(["redis-cli", "-p", str(self.port)] + auth + list(args),
                              capture_output=True, text=True, timeout=10).stdout


@pytest.fixture
def redis(tmp_path):
    started = []

    def _start(**kw):
        r = Redis(tmp_path, **kw)
        started.append(r)
        return r

    yield _start
    for r in started:
        if r.proc is not None and r.proc.poll() is None and r.proc.pid:
            try:
                os.kill(r.proc.pid, signal.SIGCONT)  # one a test stopped
            except OSError:
                pass
        r.kill()


BACKEND = {}


@pytest.fixture
def backend(start_backend):
    """The one backend: only admitted requests reach it (refusals are portico's)."""
    BACKEND["addr"] = start_backend("b1").addr
    yield


def conf(port, zone_args, workers=2, location="limit_req zone=g burst=1 nodelay;",
         tmpdir=None):
    """A portico proxying / under limit_req zone g, and /metrics."""
    body = """limit_req_zone $binary_remote_addr zone=g:64k %s;
upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; %s }
    location = /metrics { metrics; }
}
""" % (zone_args, BACKEND.get("addr", "127.0.0.1:9"), port, location)
    return lib.make_conf(tmpdir, body, workers=workers, access_log="off")


def start_instances(tmp_path, start_portico, n, zone_args, **kw):
    ps = []
    for i in range(n):
        d = tmp_path / ("p%d" % i)
        d.mkdir()
        port = lib.free_port()
        p = start_portico(conf(port, zone_args, tmpdir=d, **kw), [port], name="p%d" % i)
        p.error_log = str(d / "error.log")  # each instance its own log
        ps.append(p)
    return ps


def wait_up(ps, up=1):
    for p in ps:
        assert lib.wait_until(lambda: metric(p, "portico_limit_req_store_up", zone="g") == up,
                              15), lib.curl(p.url("/metrics")).body[-600:]


def client(p, deadline, out, barrier):
    """One keep-alive HTTP/1.1 client: a request every ~4 ms (at most 250 a second) until
    the deadline; counts statuses and errors (a failed or timed-out request)."""
    barrier.wait()
    conn = None
    while time.monotonic() < deadline:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            out[resp.status] = out.get(resp.status, 0) + 1
        except (OSError, http.client.HTTPException) as e:
            out["errors"] = out.get("errors", 0) + 1
            out.setdefault("what", []).append(repr(e))
            conn = None
        out["end"] = time.monotonic()
        time.sleep(0.004)
    if conn is not None:
        conn.close()


def run_all(ps, seconds, during=None, per_instance=2):
    """Bounded clients against every instance at once for `seconds`; `during` runs meanwhile
    (after a third of the run). Returns (admitted, refused, errors, elapsed, details)."""
    n = len(ps) * per_instance
    barrier = threading.Barrier(n + 1)
    outs = [{} for _ in range(n)]
    start = time.monotonic() + 0.2
    deadline = start + seconds
    ts = [threading.Thread(target=client, args=(ps[i // per_instance], deadline, outs[i],
                                                barrier)) for i in range(n)]
    for t in ts:
        t.start()
    barrier.wait()
    start = time.monotonic()
    if during is not None:
        time.sleep(seconds / 3.0)
        during()
    for t in ts:
        t.join(seconds + 120)
    elapsed = max(o.get("end", start) for o in outs) - start
    ok = sum(o.get(200, 0) for o in outs)
    refused = sum(o.get(429, 0) for o in outs)
    errors = sum(o.get("errors", 0) for o in outs) + \
        sum(v for o in outs for k, v in o.items() if isinstance(k, int) and k not in (200, 429))
    per = [sum(outs[i].get(200, 0) for i in range(j * per_instance, (j + 1) * per_instance))
           for j in range(len(ps))]
    return ok, refused, errors, elapsed, (per, outs)


def expected(rate, burst, elapsed):
    """What one shared GCRA limit admits in `elapsed` seconds of saturation: 1 + burst at
    once, then one per 1/rate."""
    return rate * elapsed + burst + 1


RATE = 25


@pytest.mark.hard_timeout(90)
def test_two_instances_share_the_rate(tmp_path, start_portico, redis, backend):
    """2 instances x 2 workers, one zone at 25r/s burst=1 in one Redis: together they admit
    25 per second of the run (+ burst + 1), within 10 %; each alone would admit that much.
    The key lives in Redis with a TTL (memory bounded): gone a little after the run."""
    r = redis()
    ps = start_instances(tmp_path, start_portico, 2,
                         "rate=%dr/s store=redis://127.0.0.1:%d store_timeout=500ms"
                         % (RATE, r.port))
    wait_up(ps)
    keys = []
    ok, refused, errors, took, (per, outs) = run_all(
        ps, 8, during=lambda: keys.extend(r.cli("--scan", "--pattern",
                                                "portico:limit_req:g:*").split()))
    want = expected(RATE, 1, took)
    print("store: 2 instances x 2 workers, rate %dr/s: %d admitted (%s), %d refused in %.2f s; "
          "expected %.1f (%+.1f %%)" % (RATE, ok, per, refused, took, want,
                                      100.0 * (ok - want) / want))
    assert errors == 0, outs
    assert all(n > 0 for n in per) and refused > 0, outs
    assert abs(ok - want) <= 0.10 * want, (ok, want, outs)
    # every decision came from Redis: no fallback
    for p in ps:
        assert metric(p, "portico_limit_req_store_fallback_total", zone="g") == 0
    assert len(keys) == 1, keys
    assert lib.wait_until(lambda: not r.cli("--scan", "--pattern",
                                            "portico:limit_req:g:*").split(), 10)


@pytest.mark.hard_timeout(120)
def test_redis_killed_open_then_back(tmp_path, start_portico, redis, backend):
    """store_fail=open: Redis killed during a run; every request completes (200 or 429, no
    error), the change is logged once, the fallbacks counted, each instance limits locally;
    Redis restarted on its port: "reachable again", and the two share the rate again."""
    r = redis()
    ps = start_instances(tmp_path, start_portico, 2,
                         "rate=%dr/s store=redis://127.0.0.1:%d store_fail=open "
                         "store_timeout=200ms" % (RATE, r.port))
    wait_up(ps)
    ok, refused, errors, took, (per, outs) = run_all(ps, 3, during=r.kill)
    assert errors == 0, outs
    assert all(n > 0 for n in per) and refused > 0, outs
    for p in ps:
        log = error_log(p)
        down = re.findall(r'limit_req zone "g": redis 127\.0\.0\.1:%d unreachable \([^)]*\), '
                          r'limiting locally \(store_fail=open\)' % r.port, log)
        assert len(down) == 1, log[-3000:]
        assert metric(p, "portico_limit_req_store_fallback_total", zone="g") > 0
        assert metric(p, "portico_limit_req_store_up", zone="g") == 0
    # while Redis is down each instance has the whole rate of its own: about twice in total
    ok, refused, errors, took, (per, outs) = run_all(ps, 3)
    want = expected(RATE, 1, took)
    print("store down (open): %d admitted (%s), %.1f for one shared limit" % (ok, per, want))
    assert errors == 0, outs
    assert ok > 1.5 * want, (ok, want)
    r.start()
    for p in ps:
        assert lib.wait_until(lambda: re.search(
            r'limit_req zone "g": redis 127\.0\.0\.1:%d reachable again' % r.port,
            error_log(p)), 20), error_log(p)[-2000:]
    wait_up(ps)
    ok, refused, errors, took, (per, outs) = run_all(ps, 6)
    want = expected(RATE, 1, took)
    print("store back: %d admitted (%s) in %.2f s, expected %.1f (%+.1f %%)"
          % (ok, per, took, want, 100.0 * (ok - want) / want))
    assert errors == 0, outs
    assert abs(ok - want) <= 0.10 * want, (ok, want, outs)
    for p in ps:
        log = error_log(p)
        assert len(re.findall("unreachable", log)) == 1, log[-3000:]
        assert len(re.findall("reachable again", log)) == 1, log[-3000:]


def test_redis_down_closed_refuses(tmp_path, start_portico, redis, backend):
    """store_fail=closed: while Redis is down every request of the zone gets the zone's
    status, at once and with a body that says why; back: admitted again."""
    r = redis()
    port = lib.free_port()
    p = start_portico(conf(port, "rate=100r/s store=redis://127.0.0.1:%d store_fail=closed"
                           % r.port, workers=1, location="limit_req zone=g burst=50 nodelay; "
                           "limit_req_status 503;", tmpdir=tmp_path), [port])
    wait_up([p])
    assert lib.curl(p.url("/")).status == 200
    r.kill()
    assert lib.wait_until(lambda: metric(p, "portico_limit_req_store_up", zone="g") == 0, 10)
    got = [lib.curl(p.url("/")) for _ in range(5)]
    assert [g.status for g in got] == [503] * 5, got
    assert b"store_fail=closed" in got[0].body, got[0].body
    assert re.search(r'limit_req zone "g": redis 127\.0\.0\.1:%d unreachable \([^)]*\), '
                     r'refusing requests \(store_fail=closed\)' % r.port, error_log(p))
    assert metric(p, "portico_limit_req_store_fallback_total", zone="g") >= 5
    r.start()
    assert lib.wait_until(lambda: "reachable again" in error_log(p), 20), error_log(p)[-2000:]
    assert lib.curl(p.url("/")).status == 200


@pytest.mark.hard_timeout(60)
def test_redis_stopped_is_a_fallback_not_a_hang(tmp_path, start_portico, redis, backend):
    """Redis stopped (SIGSTOP: connected, silent): requests are decided by store_fail after
    store_timeout, all complete; after 1 s without an answer the zone says unreachable; on
    SIGCONT it comes back."""
    r = redis()
    port = lib.free_port()
    p = start_portico(conf(port, "rate=1000r/s store=redis://127.0.0.1:%d store_timeout=50ms"
                           % r.port, workers=1, tmpdir=tmp_path), [port])
    wait_up([p])
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        got = [lib.curl(p.url("/"), "-m", "20").status for _ in range(4)]
        assert got == [200] * 4, got
        assert metric(p, "portico_limit_req_store_fallback_total", zone="g") >= 1
        assert lib.wait_until(lambda: re.search(r"unreachable \((no answer within 1s|not "
                                                r"connected within 1s)", error_log(p)), 10), \
            error_log(p)[-2000:]
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    assert lib.wait_until(lambda: "reachable again" in error_log(p), 20), error_log(p)[-2000:]


class SlowRedis:
    """A stand-in for a slow Redis (RESP over TCP, stdlib only): +OK to AUTH and SELECT, a SHA1
    to SCRIPT LOAD, and to EVALSHA the answer {1, 0, 0} (one token granted) only after
    `delay` seconds. Slow but never silent for 1 s: the connection stays up."""

    def __init__(self, delay):
        import socketserver

        self.delay = delay
        self.evals = 0
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while True:
                    cmd = self.read_command()
                    if cmd is None:
                        return
                    name = cmd[0].upper()
                    if name == b"SCRIPT":
                        self.wfile.write(b"$40\r\n" + b"0" * 40 + b"\r\n")
                    elif name in (b"EVALSHA", b"EVAL"):
                        outer.evals += 1
                        time.sleep(outer.delay)
                        self.wfile.write(b"*3\r\n:1\r\n:0\r\n:0\r\n")
                    else:
                        self.wfile.write(b"+OK\r\n")
                    self.wfile.flush()

            def read_command(self):
                line = self.rfile.readline()
                if not line.startswith(b"*"):
                    return None
                args = []
                for _ in range(int(line[1:])):
                    n = int(self.rfile.readline()[1:])
                    args.append(self.rfile.read(n + 2)[:-2])
                return args

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_slow_redis_decided_at_store_timeout(tmp_path, start_portico, backend):
    """Redis answers every script after 0.3 s (slow, never silent): with store_timeout=20ms
    each request is decided by store_fail (counted) instead of waiting for the answer, and the
    zone stays up (no state change logged). Sequential requests, each the first of its key
    (a header key): each asks Redis."""
    fake = SlowRedis(0.3)
    try:
        port = lib.free_port()
        p = start_portico(lib.make_conf(tmp_path, """
limit_req_zone $http_x_key zone=g:64k rate=1r/m store=redis://127.0.0.1:%d store_timeout=20ms;
upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; limit_req zone=g nodelay; }
    location = /metrics { metrics; }
}
""" % (fake.port, BACKEND["addr"], port), workers=1, access_log="off"), [port])
        wait_up([p])
        got = [lib.curl(p.url("/"), "-H", "X-Key: k%d" % i).status for i in range(4)]
        assert got == [200] * 4, got
        assert lib.wait_until(lambda: fake.evals >= 4, 10), fake.evals
        assert metric(p, "portico_limit_req_store_fallback_total", zone="g") == 4
        assert metric(p, "portico_limit_req_store_up", zone="g") == 1
        assert "unreachable" not in error_log(p)
    finally:
        fake.stop()


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_burst_delay_and_retry_after_through_redis(tmp_path, start_portico, redis, backend,
                                                   client):
    """nginx's burst and delay= through Redis, over HTTP/1.1 and HTTP/2 (each request asks
    Redis and resumes on its answer): at 1r/m, burst=2 delay=1, the first goes, the second
    too (within delay=1), the third is delayed (a minute: curl gives up after 2 s), the fourth
    is refused with a Retry-After of about a minute. A second zone (local) in the same
    location refusing while the first one's answer is awaited answers at once."""
    r = redis()
    port = lib.free_port()
    opts = ["--http1.1"] if client == "h1" else ["--http2-prior-knowledge"]
    p = start_portico(lib.make_conf(tmp_path, """
limit_req_zone $http_x_key zone=g:64k rate=1r/m store=redis://127.0.0.1:%d store_timeout=2s;
limit_req_zone $http_x_other zone=l:64k rate=1r/m;
upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; limit_req zone=g burst=2 delay=1; }
    location /name { proxy_pass app; limit_req zone=g nodelay; limit_req zone=l nodelay; }
    location = /metrics { metrics; }
}
""" % (r.port, BACKEND["addr"], port), workers=1, access_log="off"), [port])
    wait_up([p])
    assert lib.curl(p.url("/"), "-H", "X-Key: a", *opts).status == 200
    assert lib.curl(p.url("/"), "-H", "X-Key: a", *opts).status == 200
    slow = lib.curl(p.url("/"), "-H", "X-Key: a", "-m", "2", *opts)
    assert slow.rc == 28, slow  # delayed: curl timed out
    got = lib.curl(p.url("/"), "-H", "X-Key: a", *opts)
    assert got.status == 429, got
    assert 50 <= int(got.header("retry-after")) <= 60, got.headers
    # /name: zone l (local) admits key x once, then refuses while zone g asks Redis
    assert lib.curl(p.url("/name"), "-H", "X-Key: b", "-H", "X-Other: x", *opts).status == 200
    got = lib.curl(p.url("/name"), "-H", "X-Key: c", "-H", "X-Other: x", *opts)
    assert got.status == 429 and "zone=l" in got.header("proxy-status"), got
    assert metric(p, "portico_limit_req_store_fallback_total", zone="g") == 0
    assert lib.curl(p.url("/metrics"), *opts).status == 200


def test_config_error_long_zone_name(tmp_path):
    path = tmp_path / "p.conf"
    path.write_text(lib.make_conf(tmp_path, """
limit_req_zone $binary_remote_addr zone=%s:64k rate=1r/s store=redis://127.0.0.1:6379;
server { listen 127.0.0.1:%d; location / { metrics; limit_req zone=%s; } }
""" % ("z" * 65, lib.free_port(), "z" * 65), workers=1))
    r = subprocess.run([lib.PORTICO_BIN, "-t", "-c", str(path)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode != 0 and "name of at most 64 bytes" in r.stderr, r


def test_script_flushed_is_sent_again(tmp_path, start_portico, redis, backend):
    """SCRIPT FLUSH in Redis: the next EVALSHA gets NOSCRIPT and portico sends the script with
    EVAL; no request falls back."""
    r = redis()
    port = lib.free_port()
    p = start_portico(conf(port, "rate=1r/s store=redis://127.0.0.1:%d/3 store_timeout=1s"
                           % r.port, workers=1, location="limit_req zone=g nodelay;",
                           tmpdir=tmp_path), [port])
    wait_up([p])
    assert r.cli("script", "flush").strip() == "OK"
    assert lib.curl(p.url("/")).status == 200
    assert lib.curl(p.url("/")).status == 429
    assert metric(p, "portico_limit_req_store_fallback_total", zone="g") == 0
    # database 3 of the URL
    assert r.cli("-n", "3", "--scan", "--pattern", "portico:limit_req:g:*").split()
    assert not r.cli("-n", "0", "--scan", "--pattern", "portico:limit_req:g:*").split()


def test_auth_password_never_logged(tmp_path, start_portico, redis, backend):
    r = redis(extra=["--requirepass", "s3cr3t-pw"])
    port = lib.free_port()
    p = start_portico(conf(port, "rate=1r/s store=redis://:s3cr3t-pw@127.0.0.1:%d" % r.port,
                           workers=1, location="limit_req zone=g nodelay;", tmpdir=tmp_path),
                      [port])
    wait_up([p])
    assert lib.curl(p.url("/")).status == 200
    assert lib.curl(p.url("/")).status == 429
    # a wrong password: unreachable, the reason from Redis, the password nowhere
    p.write_conf(conf(port, "rate=1r/s store=redis://:wrong-pw@127.0.0.1:%d" % r.port,
                      workers=1, location="limit_req zone=g nodelay;", tmpdir=tmp_path))
    p.signal(signal.SIGHUP)
    assert lib.wait_until(lambda: re.search(r"unreachable \(AUTH: WRONGPASS", error_log(p)), 10), \
        error_log(p)[-2000:]
    log = error_log(p) + p.read(p.stderr_path)
    assert "s3cr3t-pw" not in log and "wrong-pw" not in log


def test_reload_with_another_store_reconnects(tmp_path, start_portico, redis, backend):
    r1, r2 = redis(), redis()
    port = lib.free_port()
    zone = "rate=1r/m store=redis://127.0.0.1:%d"
    loc = "limit_req zone=g nodelay;"
    p = start_portico(conf(port, zone % r1.port, workers=1, location=loc, tmpdir=tmp_path),
                      [port])
    wait_up([p])
    assert lib.curl(p.url("/")).status == 200
    assert lib.curl(p.url("/")).status == 429
    p.write_conf(conf(port, zone % r2.port, workers=1, location=loc, tmpdir=tmp_path))
    p.signal(signal.SIGHUP)
    # the new store is empty: the key starts again there (until the new connection is up,
    # a request falls back to the new zone's local table: also 200 once)
    assert lib.wait_until(lambda: lib.curl(p.url("/")).status == 200 and
                          r2.cli("--scan", "--pattern", "portico:limit_req:g:*").split(), 10)
    assert lib.curl(p.url("/")).status == 429
    # an unchanged reload keeps the connection and the key
    p.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert lib.curl(p.url("/")).status == 429
    assert metric(p, "portico_limit_req_store_up", zone="g") == 1


@pytest.mark.parametrize("args,message", [
    ("rate=1r/s store=http://127.0.0.1:6379", r"store=: expected redis://HOST:PORT"),
    ("rate=1r/s store=redis://127.0.0.1:0", r'port "0" is not from 1 to 65535'),
    ("rate=1r/s store=redis://127.0.0.1:70000", r'port "70000" is not from 1 to 65535'),
    ("rate=1r/s store=redis://127.0.0.1:6379/16", r'database "16" is not a number from 0 to 15'),
    ("rate=1r/s store=redis://127.0.0.1:6379/x", r'database "x" is not a number'),
    ("rate=1r/s store=redis://:6379", r"needs a host"),
    ("rate=1r/s store=redis://127.0.0.1:6379 scope=worker",
     r"scope=worker and store= together"),
    ("rate=1r/s store_fail=open", r"store_fail= and store_timeout= need store="),
    ("rate=1r/s store=redis://127.0.0.1:6379 store_fail=maybe",
     r"expected store_fail=open or store_fail=closed"),
    ("rate=1r/s store=redis://127.0.0.1:6379 store_timeout=0",
     r"expected store_timeout=TIME from 1ms to 10s"),
    ("rate=1r/s store=redis://no-such-host.invalid:6379", r"cannot resolve redis host"),
])
def test_config_errors(tmp_path, args, message):
    path = tmp_path / "p.conf"
    path.write_text(conf(lib.free_port(), args, workers=1, tmpdir=tmp_path))
    r = subprocess.run([lib.PORTICO_BIN, "-t", "-c", str(path)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode != 0, r
    assert re.search(message, r.stderr), r.stderr


def test_config_error_limit_conn_zone_store(tmp_path):
    path = tmp_path / "p.conf"
    path.write_text(lib.make_conf(tmp_path, """
limit_conn_zone $binary_remote_addr zone=c:64k store=redis://127.0.0.1:6379;
server { listen 127.0.0.1:%d; location / { metrics; limit_conn c 1; } }
""" % lib.free_port(), workers=1))
    r = subprocess.run([lib.PORTICO_BIN, "-t", "-c", str(path)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode != 0, r
    assert re.search(r"p\.conf:\d+:\d+: .*limit_conn_zone.* takes no store.*would stay taken when "
                     r"the instance holding them dies", r.stderr), r.stderr
