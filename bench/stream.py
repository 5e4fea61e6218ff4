#!/usr/bin/python3
"""TCP relay benchmark: portico's stream server against a direct connection, HAProxy
`mode tcp` and nginx `stream`, on 127.0.0.1.

    bench/stream.py [--mib 1024] [--rounds 3] [--small 50] [--portico ./portico]

1. Bulk: one connection carries --mib MiB from a Python sender (sendall of 256 KiB buffers) to
   a Python receiver (recv_into 256 KiB), directly and through each proxy (one worker or thread
   each). Reported: throughput (median of --rounds), the proxy's CPU time per GiB (utime+stime
   from /proc), and in one extra round under `strace -c -f` its syscalls per MiB, by name.
2. Small request/response: --small connections each send 100 requests of 64 bytes and wait for
   each 64-byte answer (an echo server), through each proxy: requests per second and syscalls
   per request.

Timed numbers on a shared machine are noisy; CPU time and syscall counts are the steady ones.
Needs haproxy and nginx with the stream module (Debian: haproxy, nginx-light,
libnginx-mod-stream), strace. A missing peer is skipped."""

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


class Proxy:
    def __init__(self, name, argv, port, pid_of=None, env=None):
        self.name = name
        self.port = port
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
    conf = os.path.join(d, "portico.conf")
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
    conf = os.path.join(d, "haproxy.cfg")
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
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("load_module %s;\nworker_processes 1;\ndaemon off;\npid %s/nginx.pid;\n"
                "error_log %s/nginx.err warn;\nevents { worker_connections 10000; }\n"
                "stream { server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; } }\n"
                % (mod, d, d, port, backend))

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", type=int, default=50)
    ap.add_argument("--portico", default=os.path.join(os.path.dirname(__file__), "..",
                                                       "portico"))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    total = args.mib * 1024 * 1024
    d = tempfile.mkdtemp(prefix="pt-stream-bench-")
    sink = Sink()
    echo = Sink(echo=True)
    rows = []
    targets = [("direct", None)]
    for name, start in (("portico", lambda b: start_portico(args.portico, d, b)),
                        ("haproxy", lambda b: start_haproxy(d, b)),
                        ("nginx", lambda b: start_nginx(d, b))):
        if args.only and name not in args.only.split(","):
            continue
        targets.append((name, start))
    for name, start in targets:
        proxies = []
        try:
            if start is None:
                port_bulk, port_small, pid = sink.port, echo.port, None
            else:
                pb = start(sink.port)
                ps = start(echo.port)
                if pb is None or ps is None:
                    print("%s: not available, skipped" % name)
                    continue
                proxies = [pb, ps]
                port_bulk, port_small, pid = pb.port, ps.port, pb.pid
            times, cpus = [], []
            for _ in range(args.rounds):
                sink.done.clear()
                c0 = cpu_seconds(pid) if pid else 0
                s, t0 = bulk(port_bulk, total)
                sink.done.wait(600)
                dt = time.monotonic() - t0
                s.close()
                assert sink.got == total, (name, sink.got)
                times.append(dt)
                cpus.append((cpu_seconds(pid) - c0) if pid else 0)
            times.sort()
            cpus.sort()
            sc = {}
            if pid is not None and shutil.which("strace"):
                def run():
                    sink.done.clear()
                    s, _ = bulk(port_bulk, min(total, 256 * 1024 * 1024))
                    sink.done.wait(600)
                    s.close()
                sc = strace_counts(pid, run)
                sc_mib = min(total, 256 * 1024 * 1024) / (1024 * 1024)
            dt_small, errs = small(port_small, args.small, 100)
            sc_small = {}
            if start is not None and shutil.which("strace"):
                sc_small = strace_counts(proxies[1].pid, lambda: small(port_small, args.small, 100))
            row = {
                "name": name,
                "mib_s": total / (1024 * 1024) / times[len(times) // 2],
                "cpu_gib": cpus[len(cpus) // 2] / (total / (1 << 30)) if pid else 0,
                "sys_mib": sum(sc.values()) / sc_mib if sc else 0,
                "top": ", ".join("%s %.1f" % (k, v / sc_mib) for k, v in
                                 sorted(sc.items(), key=lambda kv: -kv[1])[:4]) if sc else "",
                "rps": args.small * 100 / dt_small,
                "sys_req": sum(sc_small.values()) / (args.small * 100) if sc_small else 0,
                "errors": len(errs),
            }
            rows.append(row)
            print("%-8s %8.0f MiB/s  cpu %.2f s/GiB  %6.1f syscalls/MiB (%s)  small: %7.0f "
                  "req/s %5.2f syscalls/req%s" % (
                      row["name"], row["mib_s"], row["cpu_gib"], row["sys_mib"], row["top"],
                      row["rps"], row["sys_req"],
                      "  ERRORS %d" % row["errors"] if row["errors"] else ""))
            sys.stdout.flush()
        finally:
            for p in proxies:
                p.stop()
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
