"""Fixtures for the PROXY protocol tests (listen ... proxy_protocol; proxy_protocol v1|v2 to
servers):

  start_pp_backend(mode=..., tls=...)  -> PPBackend (tests/tools/pp_backend.py): a server that
                                         reads a PROXY header and says what it carried
  certs                                 (tls_h2_testlib) test CA and certificates

Helpers are in pplib.py (header builders, raw clients, log readers). Every process is started
by the test and stopped by PID at teardown.
"""

import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tls_h2_testlib import certs  # noqa: E402,F401
from pplib import PPBackend  # noqa: E402

# the stream tests' fixtures (start_stream, start_tcp), from their conftest
_spec = importlib.util.spec_from_file_location(
    "stream_conftest", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "stream",
                                    "conftest.py"))
_stream = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_stream)
start_stream = _stream.start_stream
start_tcp = _stream.start_tcp


@pytest.fixture
def start_pp_backend(tmp_path):
    started = []

    def _start(mode="http", tls=None, host="127.0.0.1"):
        b = PPBackend(str(tmp_path), mode=mode, tls=tls, host=host)
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()
