"""The health tests (tests/integration/health/) use start_flaky and start_lb from the parent
conftest.py (with start_backend, start_portico and the hard timeouts); this file only puts
hcutil.py on the import path."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
