"""Fixtures for the reload tests: the common ones (tests/integration/conftest.py) and the test
certificates (tests/tools/tls_h2_testlib.py)."""

from tls_h2_testlib import certs  # noqa: F401
