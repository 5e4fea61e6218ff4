"""Every configuration shipped in etc/ (the default and the examples) passes `portico -t`,
run from the repository root as the README says. The TLS ones use the self-signed
certificate that scripts/gen-cert.sh creates (made here when missing)."""

import glob
import os
import subprocess

import pytest

import portico_testlib as lib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "etc", "*.conf")) +
                 glob.glob(os.path.join(ROOT, "etc", "examples", "*.conf")))


@pytest.fixture(scope="module", autouse=True)
def cert():
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen-cert.sh")], cwd=ROOT,
                   check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("conf", CONFIGS, ids=[os.path.relpath(c, ROOT) for c in CONFIGS])
def test_shipped_config_checks(conf):
    r = subprocess.run([lib.PORTICO_BIN, "-t", "-c", os.path.relpath(conf, ROOT)], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stdout, r.stdout


def test_examples_exist():
    assert len(CONFIGS) >= 4, CONFIGS
