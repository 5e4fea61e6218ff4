"""systemd's notification protocol (sd_notify(3)), without systemd: each test binds the
AF_UNIX datagram socket a service manager would, names it in portico's $NOTIFY_SOCKET and reads
what portico sends (src/core/notify.c; docs/operations.md, "Running under systemd"):

- READY=1 (with a STATUS=) once the listeners are open and the workers run: the port accepts
  and answers as soon as the datagram arrives, and nothing else came before it;
- RELOADING=1 (with MONOTONIC_USEC=) when a SIGHUP begins a reload, then READY=1 whether the
  new configuration was taken or refused;
- STOPPING=1 when SIGTERM or SIGINT begins the graceful stop, before portico exits 0;
- the datagrams come from portico's own pid (what NotifyAccess=main checks, through the
  SCM_CREDENTIALS the kernel attaches);
- "@name" abstract sockets work as well as paths;
- a start that fails (port in use) sends no READY=1;
- an unreachable socket is logged at warn and changes nothing else.
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest

import portico_testlib as lib

SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)


class Manager:
    """The service manager's end: a datagram socket with SO_PASSCRED, as systemd's."""

    def __init__(self, abstract=False):
        self.dir = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        if abstract:
            name = "portico-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            # a short directory of its own: sun_path holds 107 bytes, pytest's tmp_path may not
            self.dir = tempfile.mkdtemp(prefix="pt-notify-")
            self.env = os.path.join(self.dir, "notify.sock")
            self.sock.bind(self.env)

    def recv(self, timeout=5.0):
        """(assignments dict, sender pid), or (None, None) after timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None, None
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        text = data.decode()
        return dict(line.split("=", 1) for line in text.split("\n") if line), pid

    def close(self):
        self.sock.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def manager(monkeypatch):
    made = []

    def _make(abstract=False):
        m = Manager(abstract)
        made.append(m)
        monkeypatch.setenv("NOTIFY_SOCKET", m.env)
        return m

    yield _make
    for m in made:
        m.close()


def conf_for(tmp_path, port, workers=2):
    return lib.make_conf(tmp_path, """server {
    listen 127.0.0.1:%d;
    location / { return 200 "up\\n"; }
}
""" % port, workers=workers)


def accepts_now(port):
    """One connect attempt, no retry: the port accepts at this very moment."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_then_stopping(tmp_path, start_portico, manager, abstract):
    m = manager(abstract)
    port = lib.free_port()
    p = start_portico(conf_for(tmp_path, port), [port], wait=False)
    msg, pid = m.recv()
    assert msg is not None, "no datagram within 5 s\n" + p.logs()
    # the first message is READY=1, sent by portico itself (what NotifyAccess=main checks)
    assert msg.get("READY") == "1", msg
    assert pid == p.pid, (pid, p.pid)
    assert re.fullmatch(r"portico \S+: 2 worker\(s\), config %s" % re.escape(p.conf_path),
                        msg["STATUS"]), msg
    # ready means ready: the first connect attempt succeeds and the request is answered
    assert accepts_now(port)
    st, _, body = lib.raw_request("127.0.0.1", port, "GET", "/")
    assert (st, body) == (200, b"up\n")
    # nothing more while it runs
    msg, _ = m.recv(timeout=0.3)
    assert msg is None, msg
    p.signal(signal.SIGTERM)
    msg, pid = m.recv()
    assert msg == {"STOPPING": "1", "STATUS": "stopping"}, msg
    assert pid == p.pid
    assert p.wait_exit(5) == 0


def test_notify_reloading_then_ready(tmp_path, start_portico, manager):
    m = manager()
    port = lib.free_port()
    conf = conf_for(tmp_path, port, workers=1)
    p = start_portico(conf, [port])
    msg, _ = m.recv()
    assert msg and msg.get("READY") == "1", msg
    # a reload that is taken: RELOADING=1 with the time systemd wants, then READY=1 once done
    with open(p.conf_path, "w") as f:
        f.write(conf.replace('return 200 "up\\n";', 'return 200 "new\\n";'))
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    p.signal(signal.SIGHUP)
    msg, pid = m.recv()
    assert msg is not None and msg.get("RELOADING") == "1", msg
    assert pid == p.pid
    assert before <= int(msg["MONOTONIC_USEC"]) <= \
        time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000, msg
    msg, _ = m.recv()
    assert msg == {"READY": "1", "STATUS": "configuration generation 2"}, msg
    st, _, body = lib.raw_request("127.0.0.1", port, "GET", "/")
    assert (st, body) == (200, b"new\n")
    # a reload that is refused: READY=1 all the same, the status says so
    with open(p.conf_path, "w") as f:
        f.write(conf.replace("location /", "bogus_directive 1;\n    location /"))
    p.signal(signal.SIGHUP)
    msg, _ = m.recv()
    assert msg is not None and msg.get("RELOADING") == "1", msg
    msg, _ = m.recv()
    assert msg == {"READY": "1",
                   "STATUS": "reload failed: still serving the previous configuration"}, msg
    st, _, body = lib.raw_request("127.0.0.1", port, "GET", "/")
    assert (st, body) == (200, b"new\n")


def test_notify_stopping_on_sigint(tmp_path, start_portico, manager):
    m = manager()
    port = lib.free_port()
    p = start_portico(conf_for(tmp_path, port, workers=1), [port])
    msg, _ = m.recv()
    assert msg and msg.get("READY") == "1", msg
    p.signal(signal.SIGINT)
    msg, _ = m.recv()
    assert msg and msg.get("STOPPING") == "1", msg
    assert p.wait_exit(5) == 0
    # a second stop signal during the drain sends nothing more (and portico is gone anyway)
    msg, _ = m.recv(timeout=0.2)
    assert msg is None, msg


def test_notify_no_ready_when_start_fails(tmp_path, manager):
    m = manager()
    port = lib.free_port()
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", port))
    busy.listen(1)
    conf = tmp_path / "busy.conf"
    conf.write_text(conf_for(tmp_path, port))
    try:
        r = subprocess.run([lib.PORTICO_BIN, "-c", str(conf)], capture_output=True, text=True,
                           timeout=10)
    finally:
        busy.close()
    assert r.returncode == 1
    assert "Address already in use" in (tmp_path / "error.log").read_text()
    msg, _ = m.recv(timeout=0.5)
    assert msg is None, msg


def test_notify_unreachable_socket_is_logged_and_ignored(tmp_path, start_portico, monkeypatch):
    missing = os.path.join(tempfile.gettempdir(), "pt-notify-missing-%d" % os.getpid(), "s")
    monkeypatch.setenv("NOTIFY_SOCKET", missing)
    port = lib.free_port()
    p = start_portico(conf_for(tmp_path, port, workers=1), [port])
    st, _, body = lib.raw_request("127.0.0.1", port, "GET", "/")
    assert (st, body) == (200, b"up\n")
    lib.wait_until(lambda: "cannot notify the service manager (READY=1): NOTIFY_SOCKET %s: "
                           "sendto(): No such file or directory" % missing in p.read(p.error_log),
                   what="the warn line about the unreachable socket")
    assert "[warn] main: cannot notify" in p.read(p.error_log)
    assert p.stop() == 0


def test_without_notify_socket_nothing_is_logged(tmp_path, start_portico, monkeypatch):
    """Without $NOTIFY_SOCKET (not under systemd) notifying is silently skipped."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    port = lib.free_port()
    p = start_portico(conf_for(tmp_path, port, workers=1), [port])
    assert p.stop() == 0
    assert "cannot notify" not in p.read(p.error_log)


def test_notify_stopping_at_the_start_of_shutdown_delay(tmp_path, start_portico, manager):
    """With shutdown_delay, STOPPING=1 goes at the first SIGTERM, while portico still serves
    (systemd then knows the stop has begun); the second SIGTERM, which cuts the delay short,
    sends nothing more."""
    m = manager()
    port = lib.free_port()
    conf = conf_for(tmp_path, port, workers=1).replace(
        "shutdown_timeout", "shutdown_delay 10m;\nshutdown_timeout", 1)
    p = start_portico(conf, [port])
    msg, _ = m.recv()
    assert msg and msg.get("READY") == "1", msg
    p.signal(signal.SIGTERM)
    msg, _ = m.recv()
    assert msg == {"STOPPING": "1", "STATUS": "stopping"}, msg
    st, _, body = lib.raw_request("127.0.0.1", port, "GET", "/")   # still serving
    assert (st, body) == (200, b"up\n")
    assert p.proc.poll() is None
    p.signal(signal.SIGTERM)
    assert p.wait_exit(10) == 0
    msg, _ = m.recv(timeout=0.2)
    assert msg is None, msg
