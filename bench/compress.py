#!/usr/bin/python3
"""Compression cost in portico, per coding and level: CPU time per MiB of plain body (portico's
user+system time for a long chunked download, minus the same download uncompressed) and the
compressor's memory per response (what the compressor allocated, from portico's debug log),
plus the ratio. Content: tests/tools/compress_backend.py's "text" (HTML-like prose, 1 MiB before
it repeats, so no window sees a repeat).

    bench/compress.py [--bin ./portico] [--mib 64]

Use an optimised build (./configure without --enable-debug); everything runs on 127.0.0.1.
"""

import argparse
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BACKEND = os.path.join(REPO, "tests", "tools", "compress_backend.py")
CLK = os.sysconf("SC_CLK_TCK")

LEVELS = [("identity", None), ("gzip", 1), ("gzip", 6), ("gzip", 9),
          ("br", 0), ("br", 1), ("br", 4), ("br", 6), ("br", 9), ("br", 11),
          ("zstd", 1), ("zstd", 3), ("zstd", 6), ("zstd", 9), ("zstd", 19)]
SLOW = {("br", 9), ("br", 11), ("zstd", 19), ("gzip", 9)}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def run_level(args, backend_port, coding, level, tmp):
    port = free_port()
    directive = {"gzip": "gzip", "br": "brotli", "zstd": "zstd"}.get(coding)
    lines = ""
    if directive:
        lines = "%s on;\n    %s_comp_level %d;\n" % (directive, directive, level)
    log = os.path.join(tmp, "error-%s-%s.log" % (coding, level))
    conf = os.path.join(tmp, "bench.conf")
    with open(conf, "w") as f:
        f.write("workers 1;\nerror_log %s debug;\naccess_log off;\n"
                "upstream b { server 127.0.0.1:%d; }\n"
                "server { listen 127.0.0.1:%d;\n    %s    location / { proxy_pass b; } }\n"
                % (log, backend_port, port, lines))
    p = subprocess.Popen([args.bin, "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        mib = args.mib // 8 if (coding, level) in SLOW else args.mib
        url = "http://127.0.0.1:%d/gen?n=%d&framing=chunked" % (port, mib << 20)
        before = cpu_seconds(p.pid)
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                              "-H", "Accept-Encoding: " + coding, url],
                             stdout=subprocess.PIPE, check=True).stdout
        cpu = cpu_seconds(p.pid) - before
    finally:
        p.terminate()
        p.wait(10)
    mem = None
    with open(log) as f:
        for line in f:
            m = re.search(r"compressor memory (\d+)", line)
            if m:
                mem = int(m.group(1))
    return mib, cpu, int(out), mem


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "portico"))
    ap.add_argument("--mib", type=int, default=64)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ptbench-compress-")
    be = subprocess.Popen([sys.executable, BACKEND, "--port", "0"], stdout=subprocess.PIPE)
    select.select([be.stdout], [], [], 10)
    backend_port = int(be.stdout.readline().split()[1])
    try:
        base = None
        print("%-10s %5s %9s %9s %13s %16s" % ("coding", "level", "MiB", "ratio", "CPU ms/MiB",
                                               "memory/response"))
        for coding, level in LEVELS:
            mib, cpu, size, mem = run_level(args, backend_port, coding, level, tmp)
            per = cpu * 1000 / mib
            if coding == "identity":
                base = per
                print("%-10s %5s %9d %8.1f%% %13.2f %16s   (proxying alone)"
                      % (coding, "-", mib, 100.0 * size / (mib << 20), per, "-"))
                continue
            print("%-10s %5d %9d %8.1f%% %13.2f %13.0f KiB"
                  % (coding, level, mib, 100.0 * size / (mib << 20), per - base,
                     (mem or 0) / 1024))
    finally:
        be.terminate()
        be.wait(5)


if __name__ == "__main__":
    main()
