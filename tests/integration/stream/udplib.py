"""Helpers of the UDP stream tests: tests/tools/udp_backend.py and dnsmasq processes (stopped by
PID), `dig` through portico, free UDP ports, and the access log's UDP lines."""

import os
import re
import select
import signal
import socket
import subprocess
import time

import portico_testlib as lib

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
UDP_BACKEND = os.path.join(_TOOLS, "udp_backend.py")


def udp_free_port(host="127.0.0.1"):
    """A port free for TCP (lib.free_port) and for UDP on host."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        port = lib.free_port(host)
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free UDP port")


class UdpBackend:
    """A tests/tools/udp_backend.py process."""

    def __init__(self, name, mode="echo", host="127.0.0.1", logdir=None):
        self.name = name
        self.errpath = os.path.join(logdir, "udp-%s.err" % name) if logdir else os.devnull
        self.err = open(self.errpath, "ab")
        self.proc = subprocess.Popen([lib.PYTHON, UDP_BACKEND, "--host", host, "--port", "0",
                                      "--name", name, "--mode", mode],
                                     stdout=subprocess.PIPE, stderr=self.err)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("udp backend %s did not start: %r" % (name, line))
        self.port = int(line.split()[2])
        self.addr = lib.hostport(host, self.port)

    def count(self, timeout=5.0):
        """Datagrams it received so far (asks it with SIGUSR1)."""
        before = self._reports()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self._reports()
            if len(now) > len(before):
                return now[-1]
            time.sleep(0.02)
        raise AssertionError("udp backend %s did not report" % self.name)

    def _reports(self):
        try:
            with open(self.errpath) as f:
                return [int(n) for n in re.findall(r"^count (\d+)", f.read(), re.M)]
        except OSError:
            return []

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.err.close()


class Dnsmasq:
    """dnsmasq in the foreground on a loopback port, answering from a hosts file of the test's
    own (no upstream servers, no /etc/hosts), stopped by PID.  extra: more command-line options
    (`--srv-host=...` for SRV records: tests/integration/fleet)."""

    def __init__(self, hosts, tmpdir, extra=()):
        self.port = udp_free_port()
        self.hosts = os.path.join(tmpdir, "hosts-%d" % self.port)
        with open(self.hosts, "w") as f:
            for name, ip in hosts.items():
                f.write("%s %s\n" % (ip, name))
        self.logpath = os.path.join(tmpdir, "dnsmasq-%d.log" % self.port)
        self.log = open(self.logpath, "ab")
        binary = "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else "dnsmasq"
        args = [binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                "--no-hosts", "--addn-hosts=" + self.hosts, "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                "--log-facility=-", "--cache-size=0"] + list(extra)
        if os.geteuid() == 0:
            args.append("--user=root")  # it reads the hosts file in the test's directory
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.addr = "127.0.0.1:%d" % self.port
        # it answers over TCP too: that says it is up
        if not lib.wait_port("127.0.0.1", self.port, 10.0, self.proc):
            self.stop()
            raise RuntimeError("dnsmasq did not start on port %d" % self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def dig(port, name, host="127.0.0.1", tcp=False):
    """The A records dig gets for name through host:port (a list, empty for none)."""
    args = ["dig", "+short", "+tries=1", "+time=5", "-p", str(port), "@" + host, name, "A"]
    if tcp:
        args.insert(1, "+tcp")
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 0 and "timed out" not in out, out
    return [l for l in out.split() if l]


def start_udp_portico(start_portico, tmp_path, body, udp_ports, workers=1,
                      access_log="combined", host="127.0.0.1", main_extra=""):
    """portico with `body`; ready once it says it listens on every UDP port (a UDP socket
    cannot be probed with a connection)."""
    conf = lib.make_conf(tmp_path, body, workers=workers, access_log=access_log,
                         error_level="info", shutdown_timeout="2s", main_extra=main_extra)
    p = start_portico(conf, [], host=host, wait=False)
    want = ["listening on %s udp" % lib.hostport(host, port) for port in udp_ports]
    lib.wait_until(lambda: all(w in p.read(p.error_log) for w in want), timeout=10,
                   what="portico listening on %s" % want)
    return p


UDP_LINE = re.compile(
    r'^(?P<client>\S+) - - \[[^\]]+\] "(?P<proto>UDP) (?P<listen>\S+)" (?P<status>\d+) '
    r'(?P<sent>\d+) (?P<received>\d+) (?P<time>[\d.]+) upstream=(?P<upstream>\S+) '
    r'upstream_addr="(?P<addrs>[^"]*)" upstream_connect_time="(?P<ctimes>[^"]*)" '
    r'upstream_bytes_sent=(?P<up_sent>\d+) upstream_bytes_received=(?P<up_received>\d+) '
    r'sni="-" outcome=(?P<outcome>\S+) datagrams_sent=(?P<dgrams_sent>\d+) '
    r'datagrams_received=(?P<dgrams_received>\d+) '
    r'upstream_datagrams_sent=(?P<up_dgrams_sent>\d+) '
    r'upstream_datagrams_received=(?P<up_dgrams_received>\d+) '
    r'datagrams_dropped=(?P<dropped>\d+)(?P<rest>.*)$')


def udp_log(p):
    out = []
    for line in p.read(p.access_log).splitlines():
        m = UDP_LINE.match(line)
        if m:
            out.append(m.groupdict())
    return out


def wait_udp_log(p, n=1, timeout=6.0):
    """Waits until at least n UDP lines are logged (the log is flushed once a second)."""
    def got():
        lines = udp_log(p)
        return lines if len(lines) >= n else None
    return lib.wait_until(got, timeout=timeout, what="%d UDP access log line(s)" % n)
