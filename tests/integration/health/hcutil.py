"""Helpers for the health/ tests: configs, log polling, shares of traffic.

The servers are tests/tools/flaky_backend.py (fixture start_flaky, conftest.py here), whose
/health answer a test flips at run time, or tests/tools/backend.py for TCP checks.
"""

import collections
import time

import portico_testlib as lib
from flaky_backend import Client, Load  # noqa: F401  (re-exported for the tests)



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


def wait_for(cond, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


def by_backend(results):
    """Load results [(t, status, backend)] -> Counter of backends."""
    return collections.Counter(be for _, _, be in results)


def by_status(results):
    return collections.Counter(st for _, st, _ in results)


def last_from(results, name):
    ts = [t for t, _, be in results if be == name]
    return max(ts) if ts else None


def first_from(results, name, since):
    ts = [t for t, _, be in results if be == name and t >= since]
    return min(ts) if ts else None
