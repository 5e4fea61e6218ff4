"""A binary upgrade under systemd (Type=notify, NotifyAccess=main), without systemd: the test
binds the datagram socket a service manager would and names it in $NOTIFY_SOCKET
(tests/integration/systemd/test_notify.py does the same for start, reload and stop).

What the unit needs to follow the new process: the old one, still the main process, sends
MAINPID=<new pid> before it can exit; only after that does the new one send READY=1, so each
datagram comes from the process systemd takes as main at that moment (what NotifyAccess=main
checks, through SCM_CREDENTIALS). The old one sends no STOPPING=1: the service is not
stopping."""

import os
import shutil
import signal
import socket
import struct
import tempfile

import pytest

import portico_testlib as lib

SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)


class Manager:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pt-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        self.sock.bind(self.path)

    def recv(self, timeout=10.0):
        """(assignments, sender pid), or (None, None) after timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None, None
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        return dict(l.split("=", 1) for l in data.decode().split("\n") if l), pid

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def manager(monkeypatch):
    m = Manager()
    monkeypatch.setenv("NOTIFY_SOCKET", m.path)
    yield m
    m.close()


def test_upgrade_hands_the_main_pid_to_the_new_process(tmp_path, start_portico, upgrades,
                                                       manager):
    port = lib.free_port()
    p = start_portico(lib.make_conf(tmp_path, """server {
    listen 127.0.0.1:%d;
    location / { return 200 "up"; }
}
""" % port, workers=2), [port])
    msg, pid = manager.recv()
    assert msg and msg.get("READY") == "1" and pid == p.pid, (msg, pid)
    os.kill(p.pid, signal.SIGUSR2)
    msg, pid = manager.recv()
    assert msg == {"STATUS": "upgrading: starting a new process"} and pid == p.pid, (msg, pid)
    msg, pid = manager.recv()
    assert msg is not None and pid == p.pid, (msg, pid)
    new_pid = int(msg["MAINPID"])
    assert msg["STATUS"] == "handed over to pid %d, draining" % new_pid, msg
    msg, pid = manager.recv()
    assert msg is not None and msg.get("READY") == "1" and pid == new_pid, (msg, pid)
    assert msg["STATUS"].endswith("upgraded from pid %d" % p.pid), msg
    new = upgrades.wait_upgraded(p, 1)
    assert new.pid == new_pid
    assert p.wait_exit(5) == 0
    # the old process said nothing more as it left; the new one stops as any main process
    msg, _ = manager.recv(timeout=0.3)
    assert msg is None, msg
    assert lib.curl("http://127.0.0.1:%d/" % port).body == b"up"
    new.signal(signal.SIGTERM)
    msg, pid = manager.recv()
    assert msg == {"STOPPING": "1", "STATUS": "stopping"} and pid == new_pid, (msg, pid)
    assert new.wait_exit(5) == 0


def test_failed_upgrade_keeps_the_main_pid(tmp_path, start_portico, upgrades, manager):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """server {
    listen 127.0.0.1:%d;
    location / { return 200 "up"; }
}
""" % port)
    p = start_portico(conf, [port])
    msg, _ = manager.recv()
    assert msg and msg.get("READY") == "1", msg
    with open(p.conf_path, "w") as f:
        f.write(conf + "nonsense;\n")
    upgrades.failed(p, p.pid, 1)
    msgs = []
    while True:
        msg, pid = manager.recv(timeout=0.5)
        if msg is None:
            break
        assert pid == p.pid, (msg, pid)
        msgs.append(msg)
    assert {"STATUS": "upgrade failed; still serving"} in msgs, msgs
    assert not any("MAINPID" in m or "READY" in m for m in msgs), msgs
