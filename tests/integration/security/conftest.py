"""Fixtures for the privilege tests: `certs` from tests/tools/tls_h2_testlib.py (test CA and
server certificates, made once per session); the common fixtures (start_portico, hard
timeouts) come from tests/integration/conftest.py."""

import os
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from tls_h2_testlib import certs  # noqa: E402,F401
