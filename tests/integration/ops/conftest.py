"""Fixtures for the operations tests (metrics, status page, admin actions): `certs` (the test
CA and certificates, tests/tools/tls_h2_testlib.py) and `ops`, a portico with a metrics and a
status location in front of test backends.  The common fixtures (start_backend,
start_portico, hard timeouts) come from tests/integration/conftest.py."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_TOOLS = os.path.join(_HERE, "..", "..", "tools")
for _p in (_TOOLS, _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tls_h2_testlib import certs  # noqa: E402,F401

import pytest  # noqa: E402

import opsutil  # noqa: E402


@pytest.fixture
def ops(tmp_path, start_backend, start_portico):
    """ops(n_backends=1, workers=1, status_extra=..., ...) -> opsutil.Ops."""

    def _make(n_backends=1, workers=1, **kw):
        backends = [start_backend("b%d" % (i + 1)) for i in range(n_backends)]
        return opsutil.start(tmp_path, start_portico, backends, workers=workers, **kw)

    return _make
