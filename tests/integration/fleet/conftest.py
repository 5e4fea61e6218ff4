"""Fixtures of the fleet tests (docs/fleet.md): `fleet(...)` builds three portico instances
behind a portico stream front, with dnsmasq, two backends and (optionally) redis-server;
fleetlib.py says how they are wired. Everything is stopped by PID at teardown; every portico
must exit 0 after SIGTERM, and the logs are printed (shown when a test fails)."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tls_h2_testlib import certs  # noqa: E402,F401
import fleetlib  # noqa: E402


@pytest.fixture
def fleet(tmp_path, certs, start_backend):  # noqa: F811
    if shutil.which("dnsmasq") is None and not os.path.exists("/usr/sbin/dnsmasq"):
        pytest.skip("dnsmasq is not installed (Debian dnsmasq-base; scripts/deps.sh --test)")
    built = []

    def _build(**kw):
        f = fleetlib.Fleet(tmp_path, certs, start_backend, **kw)
        built.append(f)
        return f

    yield _build
    problems = []
    for f in built:
        problems += f.stop()
        print(f.logs())
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
