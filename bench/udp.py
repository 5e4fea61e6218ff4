#!/usr/bin/python3
"""UDP relay benchmark: portico's `listen ... udp` stream server against a direct path and nginx
`stream` (`listen ... udp`), on 127.0.0.1, one worker each.

    bench/udp.py [--seconds 5] [--sockets 16] [--window 16] [--portico ./portico]
                 [--also NAME=PATH ...]

bench/udp_load.c (built here with cc) is the echo server and the client: --sockets client
sockets (so as many sessions), each keeping --window 64-byte datagrams in flight, for --seconds.
Reported per proxy: echoed datagrams per second (median of --rounds), the proxy's CPU time per
million datagrams relayed (both ways: each echo is two), and, in one more round under
`strace -c -f`, its syscalls per echoed datagram by name. --also runs another portico binary
too (the PT_UDP_BATCH=1 build, to see what recvmmsg/sendmmsg batching does).
Timed figures on a shared machine are noisy; CPU time and syscall counts are the steady ones.
Needs nginx with the stream module (Debian: nginx-light, libnginx-mod-stream) and strace."""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stream import cpu_seconds, strace_counts  # noqa: E402


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def build(d):
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "udp_load.c")
    exe = os.path.join(d, "udp_load")
    subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
    return exe


class Proc:
    def __init__(self, name, argv, pid_of=None):
        self.name = name
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_portico(binary, d, backend, name="portico"):
    port = free_udp_port()
    conf = os.path.join(d, name + ".conf")
    with open(conf, "w") as f:
        f.write("workers 1;\nerror_log %s/%s.err warn;\naccess_log off;\n"
                "upstream echo { server 127.0.0.1:%d; }\n"
                "stream { server { listen 127.0.0.1:%d udp; proxy_pass echo; "
                "proxy_timeout 30s; } }\n" % (d, name, backend, port))
    p = Proc(name, [binary, "-c", conf])
    time.sleep(1.0)
    return p, port


def start_nginx(d, backend):
    mod = "/usr/lib/nginx/modules/ngx_stream_module.so"
    if shutil.which("nginx") is None or not os.path.exists(mod):
        return None, None
    port = free_udp_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("load_module %s;\nworker_processes 1;\ndaemon off;\npid %s/nginx.pid;\n"
                "error_log %s/nginx.err warn;\nevents { worker_connections 10000; }\n"
                "stream { server { listen 127.0.0.1:%d udp; proxy_pass 127.0.0.1:%d; "
                "proxy_timeout 30s; } }\n" % (mod, d, d, port, backend))
    p = Proc("nginx", ["nginx", "-c", conf, "-p", d])
    time.sleep(1.0)
    kids = subprocess.run(["pgrep", "-P", str(p.proc.pid)], stdout=subprocess.PIPE)
    if kids.stdout.split():
        p.pid = int(kids.stdout.split()[0])
    return p, port


def load(exe, port, a):
    r = subprocess.run([exe, "client", str(port), str(a.sockets), str(a.window),
                        str(a.seconds)], stdout=subprocess.PIPE, check=True)
    f = r.stdout.decode().split()
    return int(f[1]), int(f[3]), float(f[5])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--sockets", type=int, default=16)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--portico", default="./portico")
    ap.add_argument("--also", action="append", default=[])
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="udp-bench-")
    exe = build(d)
    eport = free_udp_port()
    echo = Proc("echo", [exe, "echo", str(eport)])
    echo.proc.stdout.readline()
    rows = []
    try:
        sent, got, secs = load(exe, eport, a)
        rows.append(("direct", got / secs, None, None, sent))
        peers = [("portico", lambda: start_portico(a.portico, d, eport))]
        for spec in a.also:
            name, path = spec.split("=", 1)
            peers.append((name, lambda n=name, p=path: start_portico(p, d, eport, n)))
        peers.append(("nginx", lambda: start_nginx(d, eport)))
        for name, start in peers:
            p, port = start()
            if p is None:
                print("%s: not installed, skipped" % name)
                continue
            try:
                rates, cpu_per_m = [], []
                for _ in range(a.rounds):
                    c0 = cpu_seconds(p.pid)
                    sent, got, secs = load(exe, port, a)
                    c1 = cpu_seconds(p.pid)
                    rates.append(got / secs)
                    cpu_per_m.append((c1 - c0) / max(got * 2, 1) * 1e6)
                res = {}

                def run():
                    res["r"] = load(exe, port, a)
                counts = strace_counts(p.pid, run)
                per = {k: v / max(res["r"][1], 1) for k, v in counts.items()}
                rows.append((name, sorted(rates)[len(rates) // 2],
                             sorted(cpu_per_m)[len(cpu_per_m) // 2], per, sent))
            finally:
                p.stop()
    finally:
        echo.stop()
    print("\n%-14s %14s %22s  %s" % ("", "echoes/s", "CPU s per M datagrams",
                                    "syscalls per echo (strace round)"))
    for name, rate, cpu, per, sent in rows:
        sc = ""
        if per:
            top = sorted(per.items(), key=lambda kv: -kv[1])[:5]
            sc = "%.2f (%s)" % (sum(per.values()),
                                ", ".join("%s %.2f" % (k, v) for k, v in top))
        print("%-14s %14.0f %22s  %s" % (name, rate, "%.2f" % cpu if cpu is not None else "",
                                        sc))


if __name__ == "__main__":
    main()
