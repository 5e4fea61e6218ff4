"""Fixtures for these tests, from tests/tools/tls_h2_testlib.py: `certs` (test CA, server
and client certificates, made once per session with openssl), `start_portico_in` (a portico
in its own directory, so two can be chained) and `recording_backend`.  The common fixtures
(start_backend, start_portico, hard timeouts) come from tests/integration/conftest.py."""

import os
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from tls_h2_testlib import certs, recording_backend, start_portico_in  # noqa: E402,F401
