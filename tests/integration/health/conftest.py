"""Fixtures for the health tests (tests/integration/health/): active checks and passive
outlier detection.

  start_flaky(name, **kw) -> FlakyBackend   (tests/tools/flaky_backend.py): /health status
      and body, answer status and delay flipped at run time; kill() crashes it
  start_lb(servers, upstream_extra=..., workers=2) -> Portico with upstream `app` made of
      these `server` lines and `location / { proxy_pass app; }`

The parent conftest.py gives start_backend, start_portico and the hard timeouts.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import portico_testlib as lib  # noqa: E402
from flaky_backend import FlakyBackend  # noqa: E402
import hcutil  # noqa: E402


@pytest.fixture
def start_flaky(tmp_path):
    started = []

    def _start(name, **kw):
        b = FlakyBackend(name, logdir=str(tmp_path), **kw)
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()
    for b in started:
        try:
            with open(b.errpath) as f:
                err = f.read()
        except OSError:
            err = ""
        if err:
            print("---- flaky backend %s stderr ----\n%s" % (b.name, err))


@pytest.fixture
def start_lb(tmp_path, start_portico):
    def _start(servers, upstream_extra="", workers=2, name="portico"):
        port = lib.free_port()
        conf = hcutil.hc_conf(tmp_path, port, servers, upstream_extra, workers)
        return start_portico(conf, [port], name=name)

    return _start
