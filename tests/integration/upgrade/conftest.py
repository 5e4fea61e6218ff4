"""Fixtures for the binary-upgrade tests (tests/integration/conftest.py has the common ones).

A process started by portico's upgrade is portico's child, and becomes an orphan when the old
process exits. This test process makes itself a child subreaper (prctl), so the orphan is
reparented here and its exit status can be read with waitpid, as the start_portico fixture
does for the first process. `upgrades` tracks them: every successor still running at teardown
gets SIGTERM and must exit 0 within shutdown_timeout + 3 s.
"""

import ctypes
import os
import re
import signal
import time

import pytest

import portico_testlib as lib
from tls_h2_testlib import certs  # noqa: F401

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, Z...), or None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class Successor:
    """A portico started by an upgrade: signalled and waited for by pid."""

    def __init__(self, pid, shutdown_timeout):
        self.pid = pid
        self.shutdown_timeout = shutdown_timeout
        self.exit_code = None

    def alive(self):
        return proc_state(self.pid) not in (None, "Z")

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        """Its exit status once reaped here; None if still running after timeout. An exit this
        process cannot see (reaped by its parent) counts as -1."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == self.pid:
                    self.exit_code = os.waitstatus_to_exitcode(status)
                    return self.exit_code
            except ChildProcessError:
                if proc_state(self.pid) is None:
                    self.exit_code = -1
                    return self.exit_code
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


class Upgrades:
    def __init__(self):
        self.successors = []

    def count(self, p, pattern):
        return len(re.findall(pattern, p.read(p.error_log)))

    def upgrade(self, p, pid, timeout=20.0, shutdown_timeout=2.0):
        """SIGUSR2 to pid (a portico logging to p.error_log); waits for the new process to
        accept; returns it (a Successor)."""
        n = self.count(p, r"upgrade: accepting connections as pid \d+")
        os.kill(pid, signal.SIGUSR2)
        return self.wait_upgraded(p, n + 1, timeout, shutdown_timeout)

    def wait_upgraded(self, p, n, timeout=20.0, shutdown_timeout=2.0):
        """Waits for the n-th 'accepting connections as pid N' line; returns that Successor."""
        def done():
            found = re.findall(r"upgrade: accepting connections as pid (\d+)",
                               p.read(p.error_log))
            return found[n - 1] if len(found) >= n else None
        pid = int(lib.wait_until(done, timeout, what="upgrade #%d done" % n))
        s = Successor(pid, shutdown_timeout)
        self.successors.append(s)
        return s

    def failed(self, p, pid, n, timeout=20.0):
        """SIGUSR2 to pid; waits for the n-th 'upgrade failed' line; returns the log."""
        os.kill(pid, signal.SIGUSR2)
        return self.wait_failed(p, n, timeout)

    def wait_failed(self, p, n, timeout=20.0):
        return lib.wait_until(
            lambda: (lambda log: log if log.count("upgrade failed:") >= n else None)(
                p.read(p.error_log)), timeout, what="upgrade failure #%d logged" % n)


def started_by_upgrade(tmpdir):
    """pids of the running portico processes an upgrade started for this test: their initial
    environment names PORTICO_UPGRADE_FD and their command line this test's directory."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if tmpdir.encode() in cmd and b"PORTICO_UPGRADE_FD=" in env and \
                proc_state(int(d)) not in (None, "Z"):
            out.append(int(d))
    return out


@pytest.fixture
def upgrades(start_portico, tmp_path):
    become_subreaper()
    u = Upgrades()
    yield u
    problems = []
    # one a failed test did not get to track is stopped too, not left running
    known = {s.pid for s in u.successors}
    for pid in started_by_upgrade(str(tmp_path)):
        if pid not in known:
            u.successors.append(Successor(pid, 10.0))
    for s in u.successors:
        if s.exit_code is not None:
            continue
        s.signal(signal.SIGTERM)
        rc = s.wait_exit(s.shutdown_timeout + 3.0)
        if rc is None:
            os.kill(s.pid, signal.SIGKILL)
            s.wait_exit(5)
            problems.append("portico pid %d did not exit within %.1f s of SIGTERM"
                            % (s.pid, s.shutdown_timeout + 3.0))
        elif rc not in (0, -1):
            problems.append("portico pid %d exited %d after SIGTERM (expected 0)" % (s.pid, rc))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
