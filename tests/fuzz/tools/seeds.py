#!/usr/bin/python3
"""Builds seed inputs for the fuzz targets from the integration tests' real traffic.

Runs some integration test files with PORTICO_BIN pointing at a wrapper that runs portico
under strace, reads back every byte portico read from a client or a backend socket, and
writes one candidate seed per connection (in each target's input format) into OUT/<target>/.
The generated configurations of those tests become seeds of the `conf` target.

    tests/fuzz/tools/seeds.py OUT [pytest file ...]
    tests/fuzz/tools/seeds.py --parse OUT      (again from the traces of an earlier run)

strace attaches to portico rather than running it, so that the tests' signals reach portico
itself; only the first 4 KiB of each read is traced and the 1 GiB tests are left out
(PORTICO_TEST_SKIP_SLOW), which keeps the traces small. Tests fail more often than usual under
strace (timings): that does not matter here, only the traffic does.

Then keep only the seeds that add coverage to the committed corpus (tests/fuzz/README in
docs/testing.md):

    tests/fuzz/fuzz_h1_request -merge=1 tests/fuzz/corpus/h1_request OUT/h1_request
"""

import glob
import hashlib
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DEFAULT_TESTS = [
    "tests/integration/proxy/test_h1_h1_basic.py",
    "tests/integration/proxy/test_h1_h1_bodies.py",
    "tests/integration/proxy/test_h1_h1_headers.py",
    "tests/integration/proxy/test_h1_h1_edges.py",
    "tests/integration/proxy/test_h1_h1_malformed.py",
    "tests/integration/proxy/test_h1_h1_errors.py",
    "tests/integration/proxy/test_h1_h1_security.py",
    "tests/integration/h2/test_h2_h1_basic.py",
    "tests/integration/h2/test_h2_rfc9113.py",
    "tests/integration/h2/test_h2_security.py",
]
MAX_SEED = 4096
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

CALL = re.compile(r'^(\w+)\((\d+|AF_\w+)(.*)\) += (-?\d+)')
DATA = re.compile(r'^read\(\d+, "((?:\\x[0-9a-f]{2})*)"')


def trace(out_dir, tests):
    wrapper = os.path.join(out_dir, "portico-strace")
    traces = os.path.join(out_dir, "traces")
    os.makedirs(traces, exist_ok=True)
    with open(wrapper, "w") as f:
        # attach to this shell, which then becomes portico (same pid: signals reach it)
        f.write("#!/bin/sh\nstrace -qq -f -ff -o %s/t.$$ -xx -s %d "
                "-e trace=socket,accept4,connect,read,close -p $$ 2>/dev/null &\n"
                "sleep 0.3\nexec %s/portico \"$@\"\n" % (traces, MAX_SEED, REPO))
    os.chmod(wrapper, 0o755)
    env = dict(os.environ, PORTICO_BIN=wrapper, PORTICO_TEST_SKIP_SLOW="1")
    basetemp = os.path.join(out_dir, "pytest")
    subprocess.run(["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "--basetemp", basetemp] + tests, cwd=REPO, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return traces, basetemp


def connections(traces):
    """Yields (kind, bytes) for each socket portico read: kind is client or backend."""
    for path in glob.glob(os.path.join(traces, "t.*")):
        fds = {}
        with open(path, errors="replace") as f:
            for line in f:
                m = CALL.match(line)
                if not m:
                    continue
                call, fd, rest, ret = m.group(1), m.group(2), m.group(3), int(m.group(4))
                if call == "accept4" and ret >= 0:
                    fds[ret] = ["client", bytearray()]
                elif call == "socket" and ret >= 0 and "SOCK_STREAM" in rest:
                    fds[ret] = ["backend", bytearray()]
                elif call == "read" and ret > 0 and int(fd) in fds:
                    d = DATA.match(line)
                    if d and len(fds[int(fd)][1]) < MAX_SEED:
                        fds[int(fd)][1] += bytes.fromhex(d.group(1).replace("\\x", ""))
                elif call == "close" and int(fd) in fds:
                    kind, data = fds.pop(int(fd))
                    if data:
                        yield kind, bytes(data)
        for kind, data in fds.values():
            if data:
                yield kind, bytes(data)


def save(out_dir, target, data):
    d = os.path.join(out_dir, target)
    os.makedirs(d, exist_ok=True)
    data = data[:MAX_SEED]
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def main():
    args = sys.argv[1:]
    parse_only = args[:1] == ["--parse"]
    if parse_only:
        args = args[1:]
    out_dir = os.path.abspath(args[0]) if args else tempfile.mkdtemp()
    tests = args[1:] or DEFAULT_TESTS
    os.makedirs(out_dir, exist_ok=True)
    if parse_only:
        traces, basetemp = os.path.join(out_dir, "traces"), os.path.join(out_dir, "pytest")
    else:
        traces, basetemp = trace(out_dir, tests)
    n = 0
    for kind, data in connections(traces):
        n += 1
        if data[:1] == b"\x16":
            continue  # TLS
        if kind == "backend":
            save(out_dir, "h1_response", b"\x00\x00" + data)
        elif data.startswith(PREFACE):
            save(out_dir, "h2_frontend", b"\x00" + data[len(PREFACE):])
        else:
            save(out_dir, "h1_request", b"\x00" + data)
            save(out_dir, "h1_differential", b"\x00" + data)
    for conf in glob.glob(os.path.join(basetemp, "**", "*.conf"), recursive=True):
        with open(conf, "rb") as f:
            save(out_dir, "conf", f.read())
    print("%d connections read; seeds in %s" % (n, out_dir))


if __name__ == "__main__":
    main()
