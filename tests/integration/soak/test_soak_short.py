"""The soak's short mode (tests/soak/soak.py --short; docs/security.md, "Soak"): two rounds of
10 s of mixed load (h2load HTTP/1.1, h2c and h2 over TLS, curl, gRPC, WebSocket) with reloads,
through a portico running as `user nobody`. After each round portico's descriptors must come
back to their count before the load, and its RSS once settled after the second round must be
within 2 MiB of what it was after the first: what a user watching `ps` and `/proc/PID/fd`
would check for a leak. About 30 s. Needs root (portico drops to nobody)."""

import os
import subprocess

import pytest

import portico_testlib as lib

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the soak runs portico as root with "
                                "user nobody")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.mark.hard_timeout(240)
def test_soak_short_descriptors_and_rss_return_after_load(tmp_path):
    out = tmp_path / "soak"
    env = dict(os.environ, PORTICO_BIN=lib.PORTICO_BIN)
    r = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tests", "soak", "soak.py"),
                        "--short", "--out", str(out)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, timeout=220)
    text = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, text
    summary = (out / "summary.txt").read_text()
    # the checks that ran, each passed
    for check in ("every load was served", "descriptors back to the baseline",
                  "RSS after the second round", "every reload taken"):
        assert "PASS  " + check in summary, summary
    assert "FAIL" not in summary, summary
    print("\n" + "\n".join(ln for ln in summary.splitlines()
                           if ln.startswith(("RSS", "descriptors:", "PASS"))))
