"""Fixtures for the access tests: the common ones (tests/integration/conftest.py) and the TLS
helpers of tests/tools/tls_h2_testlib.py (certificates for client-certificate tests)."""

import os
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from tls_h2_testlib import certs  # noqa: E402,F401
