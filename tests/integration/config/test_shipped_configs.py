"""Every configuration shipped in etc/ (the default and the examples) passes `portico -t`,
run from the repository root as the README says. The TLS ones use the self-signed
certificate that scripts/gen-cert.sh creates (made here when missing). The systemd unit
restarts portico after a crash and gives it a descriptor limit."""

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


def unit_settings(path):
    """{(section, key): [values]} of a systemd unit file."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            k, v = line.split("=", 1)
            out.setdefault((section, k.strip()), []).append(v.strip())
    return out


def test_systemd_unit_restarts_on_crash():
    u = unit_settings(os.path.join(ROOT, "etc", "portico.service"))
    # a crash (signal) or a non-zero exit restarts; SIGTERM's clean exit 0 does not
    assert u[("Service", "Restart")] == ["on-failure"]
    restart_sec = u[("Service", "RestartSec")][0]
    assert restart_sec.endswith("s") and 0 < float(restart_sec[:-1]) <= 10, restart_sec
    assert u[("Service", "KillSignal")] == ["SIGTERM"]
    # a crash loop ends in "failed" instead of restarting forever
    assert ("Unit", "StartLimitIntervalSec") in u and ("Unit", "StartLimitBurst") in u
    # enough descriptors for the default max_connections (16384 per worker, 2 per connection)
    assert int(u[("Service", "LimitNOFILE")][0]) >= 65536
