"""Upstreams from DNS (tests/integration/dns/): a local DNS server the test starts
(tests/tools/dns_server.py, UDP on 127.0.0.1, answers from a JSON zone the test rewrites) and
backends on 127.0.0.1, 127.0.0.2, 127.0.0.3 sharing one port, so one `server NAME:PORT resolve`
line can reach each of them by address."""

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)  # dnsutil

import portico_testlib as lib  # noqa: E402

DNS_SERVER = os.path.join(lib.TOOLS, "dns_server.py")


class DnsServer:
    def __init__(self, tmpdir):
        self.zone_path = os.path.join(tmpdir, "zone.json")
        self.log_path = os.path.join(tmpdir, "dns-queries.log")
        self.set_zone({})
        self.err = open(os.path.join(tmpdir, "dns-server.err"), "ab")
        self.proc = subprocess.Popen([lib.PYTHON, DNS_SERVER, "--port", "0", "--zone",
                                      self.zone_path, "--log", self.log_path],
                                     stdout=subprocess.PIPE, stderr=self.err)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("dns_server did not start: %r" % line)
        self.port = int(line.split()[1])
        self.addr = "127.0.0.1:%d" % self.port

    def set_zone(self, zone):
        tmp = self.zone_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(zone, f)
        os.rename(tmp, self.zone_path)

    def queries(self, name, qtype="A"):
        """Times (unix) at which name was asked for, with this type."""
        out = []
        try:
            with open(self.log_path) as f:
                for line in f:
                    t, n, ty = line.split()
                    if n == name.lower() and ty == qtype:
                        out.append(float(t))
        except FileNotFoundError:
            pass
        return out

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


@pytest.fixture
def dns(tmp_path):
    d = DnsServer(str(tmp_path))
    yield d
    d.stop()


@pytest.fixture
def backends_on_port(start_backend):
    """backends_on_port(n) -> (port, [Backend on 127.0.0.1, 127.0.0.2, ...]) all on one port."""

    def _start(n, names=None):
        for _ in range(20):
            port = lib.free_port()
            started = []
            try:
                for i in range(n):
                    started.append(start_backend(names[i] if names else "b%d" % (i + 1),
                                                 host="127.0.0.%d" % (i + 1), port=port))
                return port, started
            except RuntimeError:
                for b in started:
                    b.stop()
                continue
        raise RuntimeError("no port free on 127.0.0.1-%d" % n)

    return _start
