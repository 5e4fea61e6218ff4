#!/usr/bin/python3
"""TCP relay benchmark: portico's stream server against a direct connection, HAProxy
`mode tcp` and nginx `stream`, on 127.0.0.1.

    bench/stream.py [--mib 1024] [--rounds 3] [--small 50] [--requests 100000]
                    [--proxy-cpu 0 --load-cpu 1] [--portico ./portico] [--only portico,...]

(bench/stream.sh runs it with bench/run.sh's knobs.)

1. Bulk: one connection carries --mib MiB from a Python sender (sendall of 256 KiB buffers) to
   a Python receiver (recv_into 256 KiB), directly and through each proxy (one worker or thread
   each). Reported: throughput (median of --rounds, the rounds interleaved across the proxies),
   the proxy's CPU time per GiB (utime+stime from /proc), and in one extra round under
   `strace -c -f` its syscalls per MiB, by name.
2. Small request/response: --small connections of redis-benchmark (SET and GET of 64-byte
   values, --requests each, no pipelining) to a redis-server, directly and through each proxy:
   requests per second (median of the rounds), the proxy's CPU microseconds per request, and
   syscalls per request. Without redis-benchmark: Python threads sending 64-byte echoes.
3. Ratios of portico to each other proxy.

Timed numbers on a shared machine are noisy; CPU time and syscall counts are the steady ones.
--proxy-cpu / --load-cpu pin the proxies and the load (senders, sinks, redis) to one CPU each,
as bench/run.sh does. Needs haproxy and nginx with the stream module (Debian: haproxy,
nginx-light, libnginx-mod-stream), strace, redis-server and redis-tools. A missing peer is
skipped."""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUF = 256 * 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Sink:
    """The receiving end: accepts connections and counts bytes, or echoes (small mode)."""

    def __init__(self, echo=False):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1024)
        self.port = self.ls.getsockname()[1]
        self.echo = echo
        self.done = threading.Event()
        self.got = 0
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        buf = bytearray(BUF)
        n = 0
        try:
            while True:
                k = c.recv_into(buf)
                if k == 0:
                    break
                n += k
                if self.echo:
                    c.sendall(buf[:k])
        except OSError:
            pass
        c.close()
        if not self.echo and n > 0:
            self.got = n
            self.done.set()


def bulk(port, total):
    """Sends total bytes to port; returns seconds until the sink got them all."""
    data = memoryview(bytes(BUF))
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    sent = 0
    while sent < total:
        s.sendall(data)
        sent += BUF
    s.shutdown(socket.SHUT_WR)
    return s, t0


def small(port, conns, reqs):
    msg = b"x" * 64
    errors = []

    def one():
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(reqs):
                s.sendall(msg)
                got = 0
                while got < 64:
                    k = len(s.recv(64 - got))
                    if k == 0:
                        raise OSError("closed")
                    got += k
            s.close()
        except OSError as e:
            errors.append(e)

    ts = [threading.Thread(target=one) for _ in range(conns)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.monotonic() - t0, errors


def cpu_seconds(pid):
    """utime + stime of a process and its threads (children excluded)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PIN = []  # taskset prefix for the proxies (--proxy-cpu)


class Proxy:
    def __init__(self, name, argv, port, pid_of=None, env=None):
        self.name = name
        self.port = port
        self.proc = subprocess.Popen(PIN + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env)
        if not wait_port(port):
            self.stop()
            raise RuntimeError("%s did not start" % name)
        self.pid = pid_of() if pid_of else self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_portico(binary, d, backend):
    port = free_port()
    conf = os.path.join(d, "portico-%d.conf" % port)
    with open(conf, "w") as f:
        f.write("workers 1;\nerror_log %s/portico.err warn;\naccess_log off;\n"
                "upstream sink { server 127.0.0.1:%d; }\n"
                "stream { server { listen 127.0.0.1:%d; proxy_pass sink; } }\n"
                % (d, backend, port))
    return Proxy("portico", [binary, "-c", conf], port)


def start_haproxy(d, backend):
    if shutil.which("haproxy") is None:
        return None
    port = free_port()
    conf = os.path.join(d, "haproxy-%d.cfg" % port)
    with open(conf, "w") as f:
        f.write("global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n"
                "  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n"
                "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
                "backend be\n  server s1 127.0.0.1:%d\n" % (port, backend))
    return Proxy("haproxy", ["haproxy", "-f", conf, "-db"], port)


def start_nginx(d, backend):
    mod = "/usr/lib/nginx/modules/ngx_stream_module.so"
    if shutil.which("nginx") is None or not os.path.exists(mod):
        return None
    port = free_port()
    conf = os.path.join(d, "nginx-%d.conf" % port)
    with open(conf, "w") as f:
        f.write("load_module %s;\nworker_processes 1;\ndaemon off;\npid %s/nginx-%d.pid;\n"
                "error_log %s/nginx.err warn;\nevents { worker_connections 10000; }\n"
                "stream { server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; } }\n"
                % (mod, d, port, d, port, backend))

    def worker():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            kids = subprocess.run(["pgrep", "-P", str(p.proc.pid)], stdout=subprocess.PIPE)
            pids = kids.stdout.split()
            if pids:
                return int(pids[0])
            time.sleep(0.05)
        return p.proc.pid
    p = Proxy("nginx", ["nginx", "-c", conf, "-p", d], port)
    p.pid = worker()
    return p


def strace_counts(pid, run):
    """Runs run() under `strace -c -f -p pid`; returns {syscall: calls}."""
    out = tempfile.NamedTemporaryFile(delete=False)
    st = subprocess.Popen(["strace", "-c", "-f", "-o", out.name, "-p", str(pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    run()
    st.send_signal(signal.SIGINT)
    st.wait(20)
    counts = {}
    with open(out.name) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) != "total":
                counts[m.group(2)] = int(m.group(1))
    os.unlink(out.name)
    return counts


class Redis:
    """redis-server on a free port (the load CPU), or None when it is not installed."""

    def __init__(self, cpu):
        self.port = free_port()
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.proc = subprocess.Popen(pin + ["redis-server", "--port", str(self.port),
                                            "--bind", "127.0.0.1", "--save", "",
                                            "--appendonly", "no", "--maxclients", "1000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def redis_bench(port, conns, n, cpu):
    """(seconds, requests, errors) of redis-benchmark SET+GET, 64-byte values."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    t0 = time.monotonic()
    r = subprocess.run(pin + ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c",
                              str(conns), "-n", str(n), "-t", "set,get", "-d", "64", "--csv"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    dt = time.monotonic() - t0
    rows = [l for l in r.stdout.decode().splitlines() if l.startswith('"SET"') or
            l.startswith('"GET"')]
    errors = [] if r.returncode == 0 and len(rows) == 2 else [r.stdout.decode()[-300:]]
    return dt, 2 * n, errors


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else 0


def main():
    global PIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", type=int, default=50)
    ap.add_argument("--requests", type=int, default=100000,
                    help="redis-benchmark -n: requests of each of SET and GET per round")
    ap.add_argument("--proxy-cpu", type=int, default=None)
    ap.add_argument("--load-cpu", type=int, default=None)
    ap.add_argument("--portico", default=os.path.join(os.path.dirname(__file__), "..",
                                                       "portico"))
    ap.add_argument("--only", default="")
    ap.add_argument("--no-strace", action="store_true")
    args = ap.parse_args()
    if args.proxy_cpu is not None:
        PIN = ["taskset", "-c", str(args.proxy_cpu)]
    if args.load_cpu is not None:
        os.sched_setaffinity(0, {args.load_cpu})
    total = args.mib * 1024 * 1024
    d = tempfile.mkdtemp(prefix="pt-stream-bench-")
    sink = Sink()
    echo = Sink(echo=True)
    redis = None
    if shutil.which("redis-server") and shutil.which("redis-benchmark"):
        redis = Redis(args.load_cpu)
    small_backend = redis.port if redis else echo.port
    strace = shutil.which("strace") is not None and not args.no_strace
    print("bulk: %d MiB through one connection; small: %s, %d connections; %d round(s), "
          "interleaved%s" % (args.mib, "redis-benchmark SET+GET 64 B, %d requests each" %
                             args.requests if redis else "Python 64-byte echoes, 100 each",
                             args.small, args.rounds,
                             "; proxies on CPU %d, load on CPU %d" % (args.proxy_cpu,
                                                                       args.load_cpu)
                             if args.proxy_cpu is not None and args.load_cpu is not None
                             else ""))
    sys.stdout.flush()
    starters = [("portico", lambda b: start_portico(args.portico, d, b)),
                ("haproxy", lambda b: start_haproxy(d, b)),
                ("nginx", lambda b: start_nginx(d, b))]
    targets = [{"name": "direct", "bulk": None, "small": None,
                "bulk_port": sink.port, "small_port": small_backend}]
    proxies = []
    try:
        for name, start in starters:
            if args.only and name not in args.only.split(","):
                continue
            pb = start(sink.port)
            ps = start(small_backend) if pb is not None else None
            if pb is None or ps is None:
                print("%s: not available, skipped" % name)
                continue
            proxies += [pb, ps]
            targets.append({"name": name, "bulk": pb, "small": ps, "bulk_port": pb.port,
                            "small_port": ps.port})
        for t in targets:
            t.update(times=[], cpus=[], rps=[], cpu_req=[], errors=0)
        # interleaved rounds: a burst of noise on the shared machine hits every proxy alike
        for _ in range(args.rounds):
            for t in targets:
                pid = t["bulk"].pid if t["bulk"] else None
                sink.done.clear()
                c0 = cpu_seconds(pid) if pid else 0
                s, t0 = bulk(t["bulk_port"], total)
                sink.done.wait(600)
                t["times"].append(time.monotonic() - t0)
                s.close()
                assert sink.got == total, (t["name"], sink.got)
                t["cpus"].append((cpu_seconds(pid) - c0) if pid else 0)
                print("  bulk  %-8s %7.0f MiB/s" % (t["name"], total / 1048576 / t["times"][-1]),
                      flush=True)
        for _ in range(args.rounds):
            for t in targets:
                pid = t["small"].pid if t["small"] else None
                c0 = cpu_seconds(pid) if pid else 0
                if redis:
                    dt, n, errs = redis_bench(t["small_port"], args.small, args.requests,
                                              args.load_cpu)
                else:
                    dt, errs = small(t["small_port"], args.small, 100)
                    n = args.small * 100
                t["rps"].append(n / dt)
                t["cpu_req"].append(((cpu_seconds(pid) - c0) / n * 1e6) if pid else 0)
                t["errors"] += len(errs)
                print("  small %-8s %7.0f req/s" % (t["name"], t["rps"][-1]), flush=True)
        for t in targets:
            t["sc"], t["sc_small"] = {}, {}
            if t["bulk"] is None or not strace:
                continue
            sc_bytes = min(total, 256 * 1024 * 1024)

            def run():
                sink.done.clear()
                s, _ = bulk(t["bulk_port"], sc_bytes)
                sink.done.wait(600)
                s.close()
            t["sc"] = strace_counts(t["bulk"].pid, run)
            t["sc_mib"] = sc_bytes / (1024 * 1024)
            if redis:
                n_sc = min(args.requests, 20000)
                t["sc_small"] = strace_counts(
                    t["small"].pid,
                    lambda: redis_bench(t["small_port"], args.small, n_sc, args.load_cpu))
                t["sc_n"] = 2 * n_sc
            else:
                t["sc_small"] = strace_counts(t["small"].pid,
                                              lambda: small(t["small_port"], args.small, 100))
                t["sc_n"] = args.small * 100
    finally:
        for p in proxies:
            p.stop()
        if redis:
            redis.stop()
    rows = {}
    print("%-8s %9s %9s %10s %9s %9s %9s  %s" % ("", "MiB/s", "CPU s/GiB", "sysc/MiB",
                                                  "req/s", "CPU us/req", "sysc/req",
                                                  "top syscalls per MiB"))
    for t in targets:
        sc, scs = t["sc"], t["sc_small"]
        row = {
            "mib_s": total / (1024 * 1024) / median(t["times"]),
            "cpu_gib": median(t["cpus"]) / (total / (1 << 30)),
            "sys_mib": sum(sc.values()) / t["sc_mib"] if sc else 0,
            "rps": median(t["rps"]),
            "cpu_req": median(t["cpu_req"]),
            "sys_req": sum(scs.values()) / t["sc_n"] if scs else 0,
        }
        rows[t["name"]] = row
        top = ", ".join("%s %.1f" % (k, v / t["sc_mib"]) for k, v in
                        sorted(sc.items(), key=lambda kv: -kv[1])[:4]) if sc else ""
        print("%-8s %9.0f %9.2f %10.1f %9.0f %9.1f %9.2f  %s%s" % (
            t["name"], row["mib_s"], row["cpu_gib"], row["sys_mib"], row["rps"],
            row["cpu_req"], row["sys_req"], top,
            "  ERRORS %d" % t["errors"] if t["errors"] else ""))
    if "portico" in rows:
        p = rows["portico"]
        print("\nportico / other (MiB/s, req/s: above 1 portico is faster; CPU and syscalls: "
              "below 1 portico spends less)")
        for name in ("haproxy", "nginx"):
            if name not in rows:
                continue
            o = rows[name]

            def ratio(k):
                return "%.2f" % (p[k] / o[k]) if o[k] else "-"
            print("vs %-8s MiB/s %s  CPU/GiB %s  syscalls/MiB %s  req/s %s  CPU/req %s  "
                  "syscalls/req %s" % (name, ratio("mib_s"), ratio("cpu_gib"), ratio("sys_mib"),
                                       ratio("rps"), ratio("cpu_req"), ratio("sys_req")))
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
