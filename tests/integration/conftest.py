"""Fixtures for portico's integration tests.

  start_backend(name=..., host=..., flags=[...]) -> Backend   (tests/tools/backend.py)
  start_portico(conf, ports=[...], host=..., wrap=[...])
                                                 -> Portico   (the real binary; wrap: a
                                                   command that execs it, e.g. prlimit)
  make_proxy(server_extra=, upstream_extra=, workers=, access_log=,
             backend_flags=, ...)              -> Proxy: one backend "b1" + portico,
                                                   upstream `app`, `location / { proxy_pass app; }`
  proxy                                            make_proxy() with the defaults

Every portico started here is stopped with SIGTERM at teardown and must exit
0 within shutdown_timeout + 3 s; its config and logs are printed (shown by
pytest when the test fails).  Every test has a hard timeout (SIGALRM), 30 s
unless marked @pytest.mark.hard_timeout(SECONDS).
"""

import os
import signal
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import portico_testlib as lib  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "hard_timeout(seconds): per-test hard timeout")
    config.addinivalue_line("markers", "slow: long streaming tests (1 GiB)")
    config.addinivalue_line("markers", "ipv6: needs ::1 on lo (skipped, saying so, without)")


def pytest_sessionstart(session):
    if not os.access(lib.PORTICO_BIN, os.X_OK):
        raise pytest.UsageError("portico binary not found at %s (set PORTICO_BIN)"
                                % lib.PORTICO_BIN)


_summary = {}


def pytest_terminal_summary(terminalreporter):
    st = terminalreporter.stats
    _summary["passed"] = len(st.get("passed", []))
    _summary["failed"] = len(st.get("failed", [])) + len(st.get("error", []))


def pytest_unconfigure(config):
    # STYLE 8: CI recognises a last line "N passed, N failed"
    if not hasattr(config, "workerinput") and _summary:
        sys.stdout.write("%d passed, %d failed\n" % (_summary["passed"], _summary["failed"]))
        sys.stdout.flush()


class HardTimeout(BaseException):
    """Raised by SIGALRM; BaseException so that `except Exception` does not eat it."""


@pytest.fixture(autouse=True)
def _hard_timeout(request):
    m = request.node.get_closest_marker("hard_timeout")
    seconds = int(m.args[0]) if m else 30
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise HardTimeout("test exceeded its hard timeout of %d s" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def _needs_ipv6(request):
    if request.node.get_closest_marker("ipv6") and not lib.have_ipv6_loopback():
        pytest.skip("::1 is not usable on lo: not configured, or IPv6 is off (scripts/test.sh "
                    "adds it when it can: ip -6 addr add ::1/128 dev lo)")


@pytest.fixture
def start_backend(tmp_path):
    started = []

    def _start(name="b1", host="127.0.0.1", flags=(), port=0):
        b = lib.Backend(name=name, host=host, port=port, flags=flags, logdir=str(tmp_path))
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()
    for b in started:
        try:
            with open(b.errpath) as f:
                err = f.read()
        except OSError:
            err = ""
        if err:
            print("---- backend %s stderr ----\n%s" % (b.name, err))


@pytest.fixture
def start_portico(tmp_path):
    started = []

    def _start(conf, ports, host="127.0.0.1", name="portico", shutdown_timeout=2.0,
               wait=True, wrap=(), exe=None):
        p = lib.Portico(tmp_path, conf, ports, host=host, name=name,
                        shutdown_timeout=shutdown_timeout, wait=wait, wrap=wrap, exe=exe)
        started.append(p)
        return p

    yield _start
    problems = []
    for p in started:
        if p.stopped:
            print(p.logs())
            continue
        rc = p.stop()
        print(p.logs())
        if rc is None:
            p.kill()
            problems.append("portico pid %d did not exit within %.1f s of SIGTERM"
                            % (p.pid, p.shutdown_timeout + 3.0))
        elif rc != 0:
            problems.append("portico pid %d exited %d after SIGTERM (expected 0)"
                            % (p.pid, rc))
    if problems:
        pytest.fail("; ".join(problems) + "\n" + "\n".join(p.logs() for p in started),
                    pytrace=False)


class Proxy:
    def __init__(self, portico, backend):
        self.portico = portico
        self.backend = backend
        self.port = portico.port
        self.host = portico.host

    def url(self, path="/"):
        return self.portico.url(path)


@pytest.fixture
def make_proxy(tmp_path, start_backend, start_portico):
    """make_proxy(server_extra=..., upstream_extra=..., ...) -> Proxy with backend b1."""

    def _make(server_extra="", upstream_extra="", location_extra="", workers=1,
              access_log="combined", backend_flags=(), main_extra="", server_opts=""):
        b = start_backend("b1", flags=backend_flags)
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(
            port, ["%s%s" % (b.addr, server_opts)], upstream_extra=upstream_extra,
            server_extra=server_extra, location_extra=location_extra),
            workers=workers, access_log=access_log, main_extra=main_extra)
        return Proxy(start_portico(conf, [port]), b)

    return _make


@pytest.fixture
def proxy(make_proxy):
    return make_proxy()


@pytest.fixture
def blackhole():
    """A listener whose accept queue is full: connects to it hang (SYN dropped)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.2)
    # check that a new connect really hangs
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        hangs = False
    except (socket.timeout, OSError):
        hangs = True
    probe.close()
    if not hangs:
        for s in fillers:
            s.close()
        ls.close()
        pytest.skip("cannot make a hanging connect on this kernel")
    yield port
    for s in fillers:
        s.close()
    ls.close()


# ---- fixtures shared by balance/ and health/ -------------------------------------------------
# start_flaky(name, **kw) -> FlakyBackend (tests/tools/flaky_backend.py), whose health status,
# answer status and delay tests flip at run time; start_lb(servers, upstream_extra=...,
# workers=2, name=...) -> Portico with upstream `app` of these `server` lines and
# `location / { proxy_pass app; }`.

from flaky_backend import FlakyBackend  # noqa: E402


@pytest.fixture
def start_flaky(tmp_path):
    started = []

    def _start(name, **kw):
        b = FlakyBackend(name, logdir=str(tmp_path), **kw)
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()
    for b in started:
        try:
            with open(b.errpath) as f:
                err = f.read()
        except OSError:
            err = ""
        if err:
            print("---- flaky backend %s stderr ----\n%s" % (b.name, err))


@pytest.fixture
def start_lb(tmp_path, start_portico):
    def _start(servers, upstream_extra="", workers=2, name="portico"):
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(port, servers,
                                                      upstream_extra=upstream_extra),
                             workers=workers, access_log="off")
        return start_portico(conf, [port], name=name)

    return _start
