"""Fixtures for the rule language's tests (headers, Host, rewrite, return, regex locations):
`certs` and `start_portico_in` from tests/tools/tls_h2_testlib.py (a TLS backend, a chain of
two porticos for HTTP/2 backends), plus the common ones from tests/integration/conftest.py."""

import os
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from tls_h2_testlib import certs, recording_backend, start_portico_in  # noqa: E402,F401
