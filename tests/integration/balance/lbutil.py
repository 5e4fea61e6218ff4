"""Helpers for the balance/ tests: configs, request loops, log polling.

The backends are tests/tools/backend.py (fixture start_backend, from the parent
conftest.py) and tests/tools/flaky_backend.py (fixture start_flaky, conftest.py here),
both of which name themselves in X-Backend.
"""

import collections
import threading
import time

import portico_testlib as lib
from flaky_backend import Client, Load  # noqa: F401  (re-exported for the tests)



def dead_port():
    """A loopback port nobody listens on: connecting is refused at once."""
    return lib.free_port()


def names(client, path, n, headers=None):
    """n sequential requests on one keep-alive client: [(status, backend)]."""
    out = []
    for _ in range(n):
        st, be, _ = client.get(path, headers)
        out.append((st, be))
    return out


def spread(url_host, port, path, threads, per_thread, reconnect_every=0):
    """threads × per_thread GETs in parallel, each thread on its own connections (a new one
    every reconnect_every requests, so they land on different workers): [(status, backend)]."""
    out = []
    lock = threading.Lock()

    def run():
        c = Client(url_host, port)
        mine = []
        for i in range(per_thread):
            if reconnect_every and i and i % reconnect_every == 0:
                c.close()
            st, be, _ = c.get(path)
            mine.append((st, be))
        c.close()
        with lock:
            out.extend(mine)

    ts = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


def counts(results):
    return collections.Counter(be for _, be in results)


def statuses(results):
    return collections.Counter(st for st, _ in results)


def log_lines(p, needle):
    return [line for line in p.read(p.error_log).splitlines() if needle in line]


def wait_log(p, needle, count=1, timeout=10.0):
    """Poll portico's error log until `needle` appears count times; monotonic time, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(log_lines(p, needle)) >= count:
            return time.monotonic()
        time.sleep(0.02)
    return None
