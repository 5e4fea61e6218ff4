"""Every configuration shipped in etc/ (the default and the examples) passes `portico -t`,
run from the repository root as the README says. The TLS ones use the self-signed
certificate that scripts/gen-cert.sh creates (made here when missing).

The systemd unit (etc/portico.service.in, whose @sbindir@ and @sysconfdir@ `make` replaces):
restarts portico after a crash and gives it a descriptor limit; is Type=notify, checks the
configuration before starting, reloads with SIGHUP and is sandboxed (docs/operations.md,
"Running under systemd"); and, where systemd is installed, `systemd-analyze verify` accepts it
with the paths filled in and `systemd-analyze security` rates it below 5 ("OK" or better); the
template unit etc/portico@.service.in too, an instance of it reading @sysconfdir@/portico/NAME.conf."""

import glob
import os
import re
import shutil
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


UNIT_IN = os.path.join(ROOT, "etc", "portico.service.in")


def test_systemd_unit_restarts_on_crash():
    u = unit_settings(UNIT_IN)
    # a crash (signal) or a non-zero exit restarts; SIGTERM's clean exit 0 does not
    assert u[("Service", "Restart")] == ["on-failure"]
    restart_sec = u[("Service", "RestartSec")][0]
    assert restart_sec.endswith("s") and 0 < float(restart_sec[:-1]) <= 10, restart_sec
    assert u[("Service", "KillSignal")] == ["SIGTERM"]
    # a crash loop ends in "failed" instead of restarting forever
    assert ("Unit", "StartLimitIntervalSec") in u and ("Unit", "StartLimitBurst") in u
    # enough descriptors for the default max_connections (16384 per worker, 2 per connection)
    assert int(u[("Service", "LimitNOFILE")][0]) >= 65536


def test_systemd_unit_notify_reload_and_commands():
    u = unit_settings(UNIT_IN)
    # portico sends READY=1 / RELOADING=1 / STOPPING=1 itself (tests/integration/systemd/)
    assert u[("Service", "Type")] == ["notify"]
    assert u[("Service", "NotifyAccess")] == ["main"]
    conf = "@sysconfdir@/portico/portico.conf"
    assert u[("Service", "ExecStartPre")] == ["@sbindir@/portico -t -c " + conf]
    assert u[("Service", "ExecStart")] == ["@sbindir@/portico -c " + conf]
    assert u[("Service", "ExecReload")] == ["/bin/kill -HUP $MAINPID"]
    # longer than the default shutdown_timeout (10s), or systemd kills the drain
    assert u[("Service", "TimeoutStopSec")] == ["30"]
    assert ("Unit", "Documentation") in u
    # only the two placeholders `make` substitutes
    with open(UNIT_IN) as f:
        assert set(re.findall(r"@[a-z_]+@", f.read())) == {"@sbindir@", "@sysconfdir@"}


def test_systemd_unit_sandbox():
    u = unit_settings(UNIT_IN)
    svc = {k: v[0] for (sec, k), v in u.items() if sec == "Service"}
    assert svc["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert svc["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("PrivateDevices", "yes"), ("RestrictSUIDSGID", "yes"),
                       ("MemoryDenyWriteExecute", "yes"), ("LogsDirectory", "portico"),
                       ("RuntimeDirectory", "portico")):
        assert svc.get(key) == value, (key, svc.get(key))
    # the notify socket, the journal and the resolver need AF_UNIX and AF_NETLINK
    assert set(svc["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX",
                                                           "AF_NETLINK"}


def filled_unit(tmp_path):
    """The unit as `make` writes it, pointing at this build's portico and a configuration
    directory in tmp_path (systemd-analyze verify checks that ExecStart's binary exists)."""
    confdir = tmp_path / "etc"
    (confdir / "portico").mkdir(parents=True)
    (confdir / "portico" / "portico.conf").write_text("# empty\n")
    with open(UNIT_IN) as f:
        text = f.read()
    text = text.replace("@sbindir@", os.path.dirname(os.path.abspath(lib.PORTICO_BIN)))
    text = text.replace("@sysconfdir@", str(confdir))
    path = tmp_path / "portico.service"
    path.write_text(text)
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_systemd_unit_verifies(tmp_path):
    unit = filled_unit(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), \
        (r.returncode, r.stdout, r.stderr)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_systemd_unit_security_exposure(tmp_path):
    unit = filled_unit(tmp_path)
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                        str(unit)], capture_output=True, text=True, timeout=60)
    if "--offline" in r.stderr and r.returncode != 0:
        pytest.skip("systemd-analyze security has no --offline (systemd < 250)")
    m = re.search(r"Overall exposure level for portico.service: ([0-9.]+)", r.stdout)
    assert m, (r.stdout[-2000:], r.stderr)
    assert float(m.group(1)) < 5.0, r.stdout


TEMPLATE_IN = os.path.join(ROOT, "etc", "portico@.service.in")


def test_systemd_template_unit_reads_the_instance_config():
    """portico@NAME: `portico -c @sysconfdir@/portico/NAME.conf`, checked first; the instance's
    own log and runtime directories (docs/fleet.md)."""
    u = unit_settings(TEMPLATE_IN)
    conf = "@sysconfdir@/portico/%i.conf"
    assert u[("Service", "ExecStartPre")] == ["@sbindir@/portico -t -c " + conf]
    assert u[("Service", "ExecStart")] == ["@sbindir@/portico -c " + conf]
    assert u[("Service", "LogsDirectory")] == ["portico/%i"]
    assert u[("Service", "RuntimeDirectory")] == ["portico-%i"]
    with open(TEMPLATE_IN) as f:
        assert set(re.findall(r"@[a-z_]+@", f.read())) == {"@sbindir@", "@sysconfdir@"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_systemd_template_unit_verifies(tmp_path):
    confdir = tmp_path / "etc"
    (confdir / "portico").mkdir(parents=True)
    (confdir / "portico" / "edge.conf").write_text("# empty\n")
    with open(TEMPLATE_IN) as f:
        text = f.read()
    text = text.replace("@sbindir@", os.path.dirname(os.path.abspath(lib.PORTICO_BIN)))
    text = text.replace("@sysconfdir@", str(confdir))
    (tmp_path / "portico@.service").write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        str(tmp_path / "portico@edge.service")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), \
        (r.returncode, r.stdout, r.stderr)
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                        str(tmp_path / "portico@edge.service")], capture_output=True, text=True,
                       timeout=60)
    if "--offline" in r.stderr and r.returncode != 0:
        return
    m = re.search(r"Overall exposure level for portico@edge.service: ([0-9.]+)", r.stdout)
    assert m, (r.stdout[-2000:], r.stderr)
    assert float(m.group(1)) < 5.0, r.stdout
