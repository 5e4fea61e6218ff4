"""Binary upgrade with a UDP stream server: the new process takes the very UDP sockets (handed
over, not bound again: the clients' address does not change), answers the datagrams that come
after it took over, and the old process ends its sessions and exits (docs/l4.md, UDP)."""

import os
import signal
import socket
import subprocess

import portico_testlib as lib


def udp_inodes(port):
    """Inodes of the UDP sockets bound to 127.0.0.1:port."""
    out = set()
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "0100007F:%04X" % port:
                out.add(fields[9])
    return out


def fd_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(t[len("socket:["):-1])
    return out


def ask(port, data):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(5)
    try:
        c.sendto(data, ("127.0.0.1", port))
        return c.recvfrom(100)[0]
    finally:
        c.close()


def test_udp_sockets_handed_over(tmp_path, start_portico, upgrades):
    tool = os.path.join(lib.TOOLS, "udp_backend.py")
    b = subprocess.Popen([lib.PYTHON, tool, "--mode", "name", "--name", "u"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        bport = int(b.stdout.readline().split()[2])
        port = lib.free_port()
        # a TCP listen on the same port says when portico is up; both are handed over
        conf = lib.make_conf(tmp_path, """upstream app { server 127.0.0.1:%d; }
stream { server { listen 127.0.0.1:%d udp; listen 127.0.0.1:%d; proxy_pass app; } }
""" % (bport, port, port), workers=2, shutdown_timeout="4s")
        p = start_portico(conf, [port], shutdown_timeout=4)
        lib.wait_until(lambda: "listening on 127.0.0.1:%d udp" % port in p.read(p.error_log),
                       timeout=10, what="the UDP listen")
        assert ask(port, b"before") == b"u:before"
        before = udp_inodes(port)
        assert len(before) == 2, before  # one per worker, one SO_REUSEPORT group
        new = upgrades.upgrade(p, p.pid, shutdown_timeout=4)
        assert udp_inodes(port) == before  # the same sockets, none bound again
        assert before <= fd_inodes(new.pid)
        for i in range(5):
            assert ask(port, b"after%d" % i) == b"u:after%d" % i
        # the old process's session ends with it; it exits in time
        assert p.wait_exit(8) == 0
        assert ask(port, b"later") == b"u:later"
        assert "a socket handed over" not in p.read(p.error_log)
    finally:
        b.send_signal(signal.SIGTERM)
        b.wait(5)
