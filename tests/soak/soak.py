#!/usr/bin/python3
"""portico soak test: a mixed load for a set time, backends restarted every minute, a reload
every 30 s; portico's RSS and descriptors sampled throughout (docs/security.md, "Soak").

Run through tests/soak/run.sh (`--duration SECONDS`, default 600; `--out DIR`), by hand. Writes
DIR/soak.csv (one sample every --sample seconds) and DIR/summary.txt
(also printed), keeps portico's configuration and logs in DIR, and exits 0 when every check
passes:

  * portico runs to the end and stops with exit 0; no reload fails;
  * RSS plateaus: the peak of the last third of the load is at most --rss-growth percent
    above the peak of the middle third;
  * descriptors return to the baseline (the count before the load, +-2) within --settle
    seconds of the load's end;
  * no status outside 2xx, and 502/503/504 (what a backend restart causes), in the access log;
  * every load was served (some successes of each kind: a run whose clients all failed proves
    nothing).

`--short` (about 30 s; tests/integration/soak/test_soak_short.py runs it in the suite): two
rounds of 10 s of the same load, no backend restart, a reload every 5 s, backend pools idle
after 2 s. After each round the descriptors must come back to the baseline (+-2) within 20 s,
and the RSS once settled after the second round must be at most --rss-slack KiB (2048) above
what it was after the first: the first round warms caches and allocator arenas up, so a second
identical round that keeps memory (a leak per request or connection) shows. A planted leak of
one exchange's box per request (+5.8 MiB) and the old `Upgrade: h2c` descriptor leak both fail
it.

Load (paced, so that a busy 2-core machine can carry it): h2load --h1, h2load h2c and h2load
h2 over TLS in loops of bounded runs; curl GET and POST (HTTP/1.1, HTTP/2 over TLS); gRPC
unary, server-streaming and bidi calls (python3-grpcio, tests/tools/grpc_server.py); WebSocket
sessions over ws:// and wss:// plus long-lived tunnels (python3-websockets,
tests/tools/ws_backend.py). Backends: two tests/tools/backend.py, a gRPC server, a WebSocket
backend, each killed (SIGTERM) and started again on its port once a minute, 15 s apart. Every
30 s portico gets SIGHUP, alternating between two configurations (the second adds a listener
and changes settings), and the load ends on the first.
"""

import argparse
import asyncio
import collections
import json
import os
import re
import select
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TOOLS = os.path.join(REPO, "tests", "tools")
sys.path.insert(0, TOOLS)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import portico_testlib as lib  # noqa: E402
import testcerts  # noqa: E402

PYTHON = "/usr/bin/python3"
PORTICO = os.environ.get("PORTICO_BIN", os.path.join(REPO, "portico"))
SVC = "/portico.test.Echo/"


def log(msg):
    sys.stdout.write("[soak %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


class Counts:
    """Thread-safe counters by (category, key)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.defaultdict(collections.Counter)

    def add(self, cat, key, n=1):
        with self.lock:
            self.c[cat][key] += n

    def snapshot(self):
        with self.lock:
            return {k: dict(v) for k, v in self.c.items()}


# ---- backends ----------------------------------------------------------------------------------

class Proc:
    """A backend process on a fixed port, restartable; waits for its READY line."""

    def __init__(self, name, argv, port, outdir):
        self.name, self.argv, self.port, self.outdir = name, argv, port, outdir
        self.proc = None
        self.restarts = 0

    def start(self):
        err = open(os.path.join(self.outdir, "%s.err" % self.name), "ab")
        for attempt in range(50):
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.DEVNULL)
            r, _, _ = select.select([self.proc.stdout], [], [], 15)
            line = self.proc.stdout.readline().decode() if r else ""
            if line.startswith("READY"):
                err.close()
                return
            self.proc.kill()
            self.proc.wait()
            time.sleep(0.2)  # the port still held by the previous one
        err.close()
        raise RuntimeError("%s did not start: %r" % (self.name, line))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self.proc.stdout.close()

    def restart(self):
        self.stop()
        self.start()
        self.restarts += 1


# ---- portico -------------------------------------------------------------------------------

def conf_text(d, ports, be, second, pool_idle="10s"):
    """Configuration A (second=False) or B: B adds a listener and changes a few settings."""
    extra_listen = "    listen 127.0.0.1:%d;\n" % ports["extra"] if second else ""
    return """workers 2;
user nobody;
error_log {d}/error.log info;
access_log {d}/access.log combined;
shutdown_timeout 5s;

upstream app {{
    server 127.0.0.1:{b1};
    server 127.0.0.1:{b2};
    keepalive 16;
    keepalive_timeout {idle};
    connect_timeout 1s;
    read_timeout 10s;
    retries {retries};
}}
upstream grpc {{
    server 127.0.0.1:{grpc};
    protocol h2c;
    keepalive_timeout {idle};
    connect_timeout 1s;
    read_timeout 10s;
}}
upstream ws {{
    server 127.0.0.1:{ws};
    keepalive_timeout {idle};
    connect_timeout 1s;
}}

server {{
    listen 127.0.0.1:{plain};
{extra}    listen 127.0.0.1:{tls} tls;
    server_name localhost _;
    tls_certificate {cert};
    tls_certificate_key {key};
    client_max_body_size 4m;
    keepalive_requests {kreq};
    location /portico.test.Echo/ {{ proxy_pass grpc; }}
    location /ws/ {{ proxy_pass ws; websocket_idle_timeout {wsidle}; }}
    location / {{ proxy_pass app; }}
}}
""".format(d=d, b1=be["b1"], b2=be["b2"], grpc=be["grpc"], ws=be["ws"], plain=ports["plain"],
           tls=ports["tls"], extra=extra_listen, cert=os.path.join(d, "certs", "localhost.pem"),
           key=os.path.join(d, "certs", "localhost.key"), retries=2 if second else 1,
           kreq=500 if second else 1000, wsidle="2m" if second else "1m", idle=pool_idle)


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def sample(pid):
    st = proc_status(pid)
    return (int(st["VmRSS"].split()[0]), len(os.listdir("/proc/%d/fd" % pid)),
            int(st["Threads"]))


# ---- load ----------------------------------------------------------------------------------

H2LOAD_REQ = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored, (\d+) timeout")
H2LOAD_ST = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def h2load_loop(kind, argv_list, counts, stop, period):
    """Runs each argv of argv_list in turn (bounded runs), at most one per period seconds."""
    i = 0
    while not stop.is_set():
        t0 = time.monotonic()
        argv = argv_list[i % len(argv_list)]
        i += 1
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=120)
            out = p.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            counts.add(kind, "run timed out")
            continue
        m = H2LOAD_REQ.search(out)
        s = H2LOAD_ST.search(out)
        counts.add(kind, "runs")
        if m is None or s is None:
            counts.add(kind, "unparsed run (exit %d)" % p.returncode)
        else:
            for name, v in zip(("total", "started", "done", "succeeded", "failed", "errored",
                                "timeout"), m.groups()):
                counts.add(kind, name, int(v))
            for name, v in zip(("2xx", "3xx", "4xx", "5xx"), s.groups()):
                counts.add(kind, name, int(v))
        left = period - (time.monotonic() - t0)
        if left > 0:
            stop.wait(left)


def curl_loop(ports, bodyfile, counts, stop):
    cmds = [
        ("curl h1 GET", ["curl", "-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code}",
                         "http://127.0.0.1:%d/name" % ports["plain"]]),
        ("curl h1 POST 64k", ["curl", "-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code}",
                              "--data-binary", "@" + bodyfile,
                              "http://127.0.0.1:%d/echo" % ports["plain"]]),
        ("curl h2 TLS GET", ["curl", "-s", "-k", "--http2", "-o", "/dev/null", "-m", "10",
                             "-w", "%{http_code}",
                             "https://localhost:%d/bytes/100000" % ports["tls"],
                             "--resolve", "localhost:%d:127.0.0.1" % ports["tls"]]),
        ("curl h2c upgrade GET", ["curl", "-s", "--http2", "-o", "/dev/null", "-m", "10",
                                  "-w", "%{http_code}",
                                  "http://127.0.0.1:%d/chunked/5000" % ports["plain"]]),
    ]
    while not stop.is_set():
        for name, argv in cmds:
            try:
                p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   timeout=20)
                code = p.stdout.decode().strip() or "000"
                counts.add("curl exit codes", "%s: exit %d" % (name, p.returncode))
                counts.add("curl statuses", "%s: %s" % (name, code))
            except subprocess.TimeoutExpired:
                counts.add("curl exit codes", "%s: no exit in 20 s" % name)
        stop.wait(1.0)


def grpc_loop(ports, counts, stop):
    import grpc
    ch = grpc.insecure_channel("127.0.0.1:%d" % ports["plain"])
    unary = ch.unary_unary(SVC + "Unary")
    sstream = ch.unary_stream(SVC + "ServerStream")
    bidi = ch.stream_stream(SVC + "Bidi")
    while not stop.is_set():
        for name, call in (
                ("unary", lambda: unary(b"x" * 200, timeout=5) == b"unary:" + b"x" * 200),
                ("server stream", lambda: list(sstream(b"20", timeout=5)) ==
                 [b"msg-%d" % i for i in range(20)]),
                ("bidi stream", lambda: list(bidi(iter([b"ab"] * 10), timeout=5)) ==
                 [b"AB"] * 10)):
            try:
                ok = call()
                counts.add("grpc", "%s: %s" % (name, "OK" if ok else "wrong answer"))
            except grpc.RpcError as e:
                counts.add("grpc", "%s: %s" % (name, e.code().name))
        stop.wait(0.2)
    ch.close()


def ws_thread(ports, counts, stop, n_long=8):
    import websockets

    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE

    async def session(i):
        secure = i % 2 == 1
        url = ("wss://127.0.0.1:%d/ws/echo" % ports["tls"]) if secure else \
            ("ws://127.0.0.1:%d/ws/echo" % ports["plain"])
        kind = "wss session" if secure else "ws session"
        try:
            async with websockets.connect(url, ssl=tls if secure else None, open_timeout=5,
                                          close_timeout=5, ping_interval=None,
                                          max_size=2 ** 20) as ws:
                for k in range(20):
                    msg = ("m%d-" % k) * (1 + k * 50)
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    if got != msg:
                        counts.add("websocket", "%s: wrong echo" % kind)
                        return
            counts.add("websocket", "%s: OK" % kind)
        except Exception as e:  # noqa: BLE001  (every failure is counted by its kind)
            counts.add("websocket", "%s: %s" % (kind, describe_ws_error(e)))

    async def long_lived(i):
        """A tunnel held open, a message every 5 s, reopened when it ends."""
        while not stop.is_set():
            try:
                async with websockets.connect("ws://127.0.0.1:%d/ws/echo" % ports["plain"],
                                              open_timeout=5, close_timeout=5,
                                              ping_interval=None) as ws:
                    counts.add("websocket", "long-lived: opened")
                    while not stop.is_set():
                        await ws.send("tick")
                        if await asyncio.wait_for(ws.recv(), 5) != "tick":
                            counts.add("websocket", "long-lived: wrong echo")
                        for _ in range(50):
                            if stop.is_set():
                                break
                            await asyncio.sleep(0.1)
                counts.add("websocket", "long-lived: closed by the soak")
            except Exception as e:  # noqa: BLE001
                counts.add("websocket", "long-lived ended: %s" % describe_ws_error(e))
                await asyncio.sleep(1)

    async def main():
        longs = [asyncio.ensure_future(long_lived(i)) for i in range(n_long)]
        i = 0
        while not stop.is_set():
            await session(i)
            i += 1
            await asyncio.sleep(0.2)
        await asyncio.gather(*longs, return_exceptions=True)

    asyncio.run(main())


def describe_ws_error(e):
    code = getattr(e, "code", None)
    if code is None and getattr(e, "rcvd", None) is not None:
        code = e.rcvd.code
    status = getattr(e, "status_code", None)
    if status is not None:
        return "%s %s" % (type(e).__name__, status)
    if code is not None:
        return "%s code %s" % (type(e).__name__, code)
    return type(e).__name__


# ---- the run -------------------------------------------------------------------------------

def dump_descriptors(pid, path):
    """What portico's descriptors are, for a run whose count did not come back: each one's
    target, and the TCP sockets with their peers (ss)."""
    with open(path, "w") as f:
        for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
            try:
                f.write("%s -> %s\n" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd))))
            except OSError:
                pass
        p = subprocess.run(["ss", "-tanpe"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        f.write("\n" + "\n".join(l for l in p.stdout.decode("utf-8", "replace").splitlines()
                                 if "pid=%d," % pid in l) + "\n")


def reloads_seen(error_log):
    try:
        with open(error_log) as f:
            text = f.read()
    except OSError:
        return 0, 0
    return (len(re.findall(r"reloaded: configuration generation", text)),
            len(re.findall(r"reload failed", text)))


def access_statuses(path):
    by = collections.Counter()
    line_re = re.compile(r'"[A-Z]+ (\S+) [^"]*" (\d{3}) ')
    with open(path, errors="replace") as f:
        for line in f:
            m = line_re.search(line)
            if not m:
                by[("unparsed", "-")] += 1
                continue
            target, st = m.groups()
            kind = "grpc" if target.startswith("/portico.test.") else \
                "ws" if target.startswith("/ws/") else "http"
            by[(st, kind)] += 1
    return by


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--short", action="store_true",
                    help="the short mode: two rounds of 10 s of load, no backend restart, a "
                         "reload every 5 s; checks that descriptors return to the baseline "
                         "after each round and RSS after the second round to what it was "
                         "after the first (under a minute; tests/integration/soak runs it)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of load (600; --short: 10 per round)")
    ap.add_argument("--out", help="directory for the CSV, logs and summary (a new one in /tmp)")
    ap.add_argument("--sample", type=float, default=None,
                    help="sampling period, s (2; --short: 0.5)")
    ap.add_argument("--restart-every", type=float, default=None,
                    help="each backend is restarted this often, s (60; --short: 0, never)")
    ap.add_argument("--reload-every", type=float, default=None,
                    help="SIGHUP period, s (30; --short: 5)")
    ap.add_argument("--rss-growth", type=float, default=10.0,
                    help="largest growth of the RSS peak, last third vs middle third, %% (10)")
    ap.add_argument("--rss-slack", type=int, default=2048,
                    help="--short: largest growth of the settled RSS from the first round to "
                         "the second, KiB (2048)")
    ap.add_argument("--loads", default="h1,h2c,h2tls,curl,grpc,ws",
                    help="which loads to run (h1,h2c,h2tls,curl,grpc,ws: all)")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds for descriptors to return to the baseline after the load "
                         "(60; --short: 20)")
    ap.add_argument("--pool-idle", default=None,
                    help="keepalive_timeout of the backend pools (10s; --short: 2s)")
    a = ap.parse_args()
    short = {"duration": 10.0, "sample": 0.5, "restart_every": 0.0, "reload_every": 5.0,
             "settle": 20.0, "pool_idle": "2s"}
    long_ = {"duration": 600.0, "sample": 2.0, "restart_every": 60.0, "reload_every": 30.0,
             "settle": 60.0, "pool_idle": "10s"}
    for k, v in (short if a.short else long_).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def main():
    a = parse_args()
    if os.geteuid() != 0:
        sys.exit("soak: run as root (portico drops to `nobody`; tests/soak/run.sh)")
    for tool in ("h2load", "curl"):
        if subprocess.run(["which", tool], stdout=subprocess.DEVNULL).returncode != 0:
            sys.exit("soak: %s is missing (nghttp2-client, curl)" % tool)
    rounds = 2 if a.short else 1
    d = a.out or tempfile.mkdtemp(prefix="portico-soak-")
    os.makedirs(d, exist_ok=True)
    log("output in %s; %s%.0f s of load" % (d, "two rounds of " if a.short else "",
                                             a.duration))
    testcerts.make(os.path.join(d, "certs"))
    bodyfile = os.path.join(d, "body-64k")
    with open(bodyfile, "wb") as f:
        f.write(os.urandom(65536))
    ports = {"plain": lib.free_port(), "tls": lib.free_port(), "extra": lib.free_port()}
    be = {"b1": lib.free_port(), "b2": lib.free_port(), "grpc": lib.free_port(),
          "ws": lib.free_port()}
    backends = [
        Proc("b1", [PYTHON, os.path.join(TOOLS, "backend.py"), "--port", str(be["b1"]),
                    "--name", "b1"], be["b1"], d),
        Proc("grpc", [PYTHON, os.path.join(TOOLS, "grpc_server.py"), "--port", str(be["grpc"])],
             be["grpc"], d),
        Proc("b2", [PYTHON, os.path.join(TOOLS, "backend.py"), "--port", str(be["b2"]),
                    "--name", "b2"], be["b2"], d),
        Proc("ws", [PYTHON, os.path.join(TOOLS, "ws_backend.py"), "--port", str(be["ws"])],
             be["ws"], d),
    ]
    for b in backends:
        b.start()
    conf_path = os.path.join(d, "portico.conf")
    confs = [conf_text(d, ports, be, False, a.pool_idle),
             conf_text(d, ports, be, True, a.pool_idle)]

    def write_conf(i):
        with open(conf_path + ".tmp", "w") as f:
            f.write(confs[i])
        os.rename(conf_path + ".tmp", conf_path)

    write_conf(0)
    out = open(os.path.join(d, "portico.out"), "wb")
    portico = subprocess.Popen([PORTICO, "-c", conf_path], stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    error_log = os.path.join(d, "error.log")
    for p in (ports["plain"], ports["tls"]):
        if not lib.wait_port("127.0.0.1", p, 10, portico):
            sys.exit("soak: portico did not start; see %s and %s" % (error_log, out.name))
    lib.wait_until(lambda: "started with" in open(error_log).read(), 10, what="portico started")
    time.sleep(2)
    rss0, fds0, thr0 = sample(portico.pid)
    log("portico pid %d: RSS %d KiB, %d descriptors, %d threads (baseline)" %
        (portico.pid, rss0, fds0, thr0))

    counts = Counts()
    csv = open(os.path.join(d, "soak.csv"), "w")
    csv.write("elapsed_s,phase,rss_kib,fds,threads,reloads\n")
    samples = []
    t_start = time.monotonic()
    phase = ["load"]

    def sampler():
        while True:
            if portico.poll() is not None:
                return
            try:
                rss, fds, thr = sample(portico.pid)
            except OSError:
                return
            el = time.monotonic() - t_start
            ok, _ = reloads_seen(error_log)
            samples.append((el, phase[0], rss, fds, thr))
            csv.write("%.1f,%s,%d,%d,%d,%d\n" % (el, phase[0], rss, fds, thr, ok))
            csv.flush()
            if phase[0] == "done":
                return
            time.sleep(a.sample)

    plain = "http://127.0.0.1:%d" % ports["plain"]
    tls = "https://127.0.0.1:%d" % ports["tls"]
    h2 = ["h2load", "-N", "10s"]
    want = set(a.loads.split(","))
    loads = [
        ("h2load --h1 (HTTP/1.1)", [h2 + ["--h1", "-n", "400", "-c", "4", plain + "/",
                                          plain + "/bytes/16384", plain + "/chunked/8192"]]),
        ("h2load h2c", [h2 + ["-n", "400", "-c", "2", "-m", "8", plain + "/",
                              plain + "/bytes/16384"]]),
        ("h2load h2 TLS", [h2 + ["-n", "400", "-c", "2", "-m", "8", tls + "/", tls + "/bytes/4096"],
                           h2 + ["-n", "100", "-c", "2", "-m", "4", "-d", bodyfile,
                                 tls + "/echo"]]),
    ]
    loads = [ld for ld, key in zip(loads, ("h1", "h2c", "h2tls")) if key in want]
    sampler_thread = threading.Thread(target=sampler, daemon=True)
    sampler_thread.start()
    state = {"which": 0, "sent_reloads": 0}

    def run_round():
        """One stretch of load: every load at once for a.duration seconds, with the backend
        restarts and reloads; ends on configuration A, every reload logged."""
        stop = threading.Event()
        threads = []
        for kind, argvs in loads:
            threads.append(threading.Thread(target=h2load_loop,
                                            args=(kind, argvs, counts, stop, 2.0), daemon=True))
        for key, fn, args in (("curl", curl_loop, (ports, bodyfile, counts, stop)),
                              ("grpc", grpc_loop, (ports, counts, stop)),
                              ("ws", ws_thread, (ports, counts, stop))):
            if key in want:
                threads.append(threading.Thread(target=fn, args=args, daemon=True))
        for t in threads:
            t.start()
        t0 = time.monotonic()
        # backend restarts (each once per restart_every, staggered), reloads (every reload_every)
        stagger = a.restart_every / len(backends)
        next_restart = [t0 + stagger * (i + 1) for i in range(len(backends))]
        next_reload = t0 + a.reload_every
        end = t0 + a.duration
        while time.monotonic() < end and portico.poll() is None:
            now = time.monotonic()
            for i, b in enumerate(backends):
                if a.restart_every > 0 and now >= next_restart[i]:
                    b.restart()
                    counts.add("events", "backend %s restarted" % b.name)
                    next_restart[i] += a.restart_every
            if a.reload_every > 0 and now >= next_reload:
                state["which"] ^= 1
                write_conf(state["which"])
                portico.send_signal(signal.SIGHUP)
                state["sent_reloads"] += 1
                counts.add("events", "reload to configuration %s" % "AB"[state["which"]])
                next_reload += a.reload_every
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(60)
        if state["which"] == 1 and portico.poll() is None:
            write_conf(0)
            state["which"] = 0
            portico.send_signal(signal.SIGHUP)
            state["sent_reloads"] += 1
            counts.add("events", "reload to configuration A")
        lib.wait_until(lambda: sum(reloads_seen(error_log)) >= state["sent_reloads"], 20,
                       what="every reload logged")

    def settle():
        """Seconds until the descriptors are back at the baseline (+-2), or None."""
        t0 = time.monotonic()
        while time.monotonic() < t0 + a.settle and portico.poll() is None:
            _, fds, _ = sample(portico.pid)
            if fds <= fds0 + 2:
                return time.monotonic() - t0
            time.sleep(0.5 if a.short else 1)
        return None

    settled = []      # per round: seconds to the baseline, or None
    rss_settled = []  # per round: RSS once settled (after a sampling period more)
    load_end = 0.0
    for r in range(rounds):
        phase[0] = "load" if rounds == 1 else "load%d" % (r + 1)
        run_round()
        log("load ends" if rounds == 1 else "round %d of the load ends" % (r + 1))
        load_end = time.monotonic() - t_start
        phase[0] = "settle" if rounds == 1 else "settle%d" % (r + 1)
        settled.append(settle())
        if settled[-1] is None and portico.poll() is None:
            dump_descriptors(portico.pid, os.path.join(d, "descriptors.txt"))
        time.sleep(a.sample)
        rss_settled.append(sample(portico.pid)[0] if portico.poll() is None else 0)
    settled_at = settled[-1]
    sent_reloads = state["sent_reloads"]
    phase[0] = "done"
    sampler_thread.join(10)
    alive = portico.poll() is None
    rss_end, fds_end, thr_end = sample(portico.pid) if alive else (0, 0, 0)
    if alive:
        portico.send_signal(signal.SIGTERM)
        try:
            rc = portico.wait(20)
        except subprocess.TimeoutExpired:
            portico.kill()
            rc = "did not stop within 20 s"
    else:
        rc = "died during the run with %s" % portico.returncode
    for b in backends:
        b.stop()
    csv.close()

    # ---- summary ----
    snap = counts.snapshot()
    ok_reloads, failed_reloads = reloads_seen(error_log)
    statuses = access_statuses(os.path.join(d, "access.log"))
    load_samples = [s for s in samples if s[1] == "load"]
    third = load_end / 3.0
    mid = [s[2] for s in load_samples if third <= s[0] < 2 * third]
    last = [s[2] for s in load_samples if s[0] >= 2 * third]
    peak_mid, peak_last = (max(mid) if mid else 0), (max(last) if last else 0)
    growth = 100.0 * (peak_last - peak_mid) / peak_mid if peak_mid else float("inf")
    fds_peak = max((s[3] for s in samples), default=0)
    rss_peak = max((s[2] for s in samples), default=0)
    with open(error_log, errors="replace") as f:
        elog = f.read()
    levels = collections.Counter(re.findall(r"Z \[(\w+)\] ", elog))
    error_kinds = collections.Counter()
    for line in elog.splitlines():
        m = re.search(r"\[(error|crit|alert|emerg)\] \S+: (.*)", line)
        if m:
            msg = re.sub(r"request_id=\S+|\(c\d+\)|\(x\d+\)|\d+ms|[0-9a-f]{32}", "", m.group(2))
            msg = re.sub(r"127\.0\.0\.1:\d+", "ADDR", msg)
            msg = re.sub(r"\((GET|POST) [^)]*\)", "(REQ)", msg)
            error_kinds["[%s] %s" % (m.group(1), msg.strip())] += 1
    bad_status = {k: v for k, v in statuses.items()
                  if not (k[0].startswith("2") or k[0] in ("101", "502", "503", "504"))}
    # every load ran and was answered (a soak whose clients all failed would prove nothing)
    served = {kind: snap.get(kind, {}).get("succeeded", 0) for kind, _ in loads}
    if "curl" in want:
        served["curl"] = sum(v for k, v in snap.get("curl statuses", {}).items()
                             if k.endswith(": 200"))
    if "grpc" in want:
        served["grpc"] = sum(v for k, v in snap.get("grpc", {}).items() if k.endswith(": OK"))
    if "ws" in want:
        served["websocket"] = sum(v for k, v in snap.get("websocket", {}).items()
                                  if k.endswith(": OK"))

    checks = [
        ("portico ran to the end and stopped with exit 0", alive and rc == 0,
         "exit %s" % rc),
        ("every load was served", all(v > 0 for v in served.values()),
         ", ".join("%s %d" % kv for kv in sorted(served.items()))),
        ("every reload taken", failed_reloads == 0 and ok_reloads >= sent_reloads,
         "%d sent, %d reloaded, %d failed" % (sent_reloads, ok_reloads, failed_reloads)),
    ]
    if a.short:
        checks += [
            ("descriptors back to the baseline (%d +-2) within %.0f s of each round"
             % (fds0, a.settle), all(x is not None for x in settled),
             ", ".join(("round %d: %.1f s" % (i + 1, x)) if x is not None else
                       "round %d: not back" % (i + 1) for i, x in enumerate(settled))),
            ("RSS after the second round <= after the first + %d KiB" % a.rss_slack,
             0 < rss_settled[1] <= rss_settled[0] + a.rss_slack,
             "baseline %d KiB, after round 1 %d, after round 2 %d (%+d)" % (
                 rss0, rss_settled[0], rss_settled[1], rss_settled[1] - rss_settled[0])),
        ]
    else:
        checks += [
            ("RSS plateaus (peak of the last third <= %.0f%% above the middle third's)"
             % a.rss_growth, growth <= a.rss_growth,
             "middle third %d KiB, last third %d KiB: %+.1f%%" % (peak_mid, peak_last, growth)),
            ("descriptors back to the baseline (%d +-2) within %.0f s" % (fds0, a.settle),
             settled_at is not None,
             "after %.1f s" % settled_at if settled_at is not None else "still %d" % fds_end),
        ]
    checks.append(
        ("no status but 2xx, 101, 502, 503, 504 in the access log", not bad_status,
         ", ".join("%s %s: %d" % (k[0], k[1], v) for k, v in sorted(bad_status.items()))
         or "none"))
    lines = []
    w = lines.append
    w("portico soak%s: %.0f s of load%s (%s), %d sample(s) every %.1f s, output %s"
      % (" (short)" if a.short else "", a.duration * rounds,
         " in %d rounds" % rounds if rounds > 1 else "", time.strftime("%Y-%m-%d %H:%M"),
         len(samples), a.sample, d))
    w("")
    w("events: %s" % ", ".join("%s x%d" % (k, v) for k, v in sorted(snap.get("events",
                                                                          {}).items())))
    w("")
    w("h2load (requests)")
    for kind, _ in loads:
        c = snap.get(kind, {})
        w("  %-24s runs %d: %d total, %d succeeded, %d failed, %d errored, %d timeout; "
          "2xx %d, 3xx %d, 4xx %d, 5xx %d%s" % (
              kind, c.get("runs", 0), c.get("total", 0), c.get("succeeded", 0),
              c.get("failed", 0), c.get("errored", 0), c.get("timeout", 0), c.get("2xx", 0),
              c.get("3xx", 0), c.get("4xx", 0), c.get("5xx", 0),
              "".join("; %s %d" % (k, v) for k, v in c.items()
                      if k.startswith(("unparsed", "run timed")))))
    for cat in ("curl exit codes", "curl statuses", "grpc", "websocket"):
        w("%s" % cat)
        for k, v in sorted(snap.get(cat, {}).items()):
            w("  %-48s %d" % (k, v))
    w("access log statuses (status, kind: count)")
    for k, v in sorted(statuses.items()):
        w("  %s %-5s %d" % (k[0], k[1], v))
    w("error log: %s" % ", ".join("%s %d" % kv for kv in sorted(levels.items())))
    for k, v in error_kinds.most_common(12):
        w("  %6d  %s" % (v, k[:150]))
    w("")
    if a.short:
        w("RSS (KiB): start %d, peak %d, settled after round 1 %d, after round 2 %d, end %d"
          % (rss0, rss_peak, rss_settled[0], rss_settled[1], rss_end))
    else:
        w("RSS (KiB): start %d, peak %d, peak of the middle third %d, of the last third %d "
          "(%+.1f%%), end %d" % (rss0, rss_peak, peak_mid, peak_last, growth, rss_end))
    w("descriptors: baseline %d, peak %d, end %d; threads %d" % (fds0, fds_peak, fds_end,
                                                                 thr_end))
    w("backend restarts: %s" % ", ".join("%s %d" % (b.name, b.restarts) for b in backends))
    w("")
    for name, ok, detail in checks:
        w("%s  %s (%s)" % ("PASS" if ok else "FAIL", name, detail))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(d, "summary.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(d, "counts.json"), "w") as f:
        json.dump({k: v for k, v in snap.items()}, f, indent=1, sort_keys=True)
    sys.stdout.write(text)
    sys.exit(0 if all(ok for _, ok, _ in checks) else 1)


if __name__ == "__main__":
    main()
