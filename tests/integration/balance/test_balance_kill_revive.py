"""Servers killed (SIGKILL, as a crash) and revived on the same address under h2load load, with
portico's defaults: the only client errors are requests that were in flight on a server when it
died and cannot be replayed.

- GET load: every request in flight on a dying server had no response byte yet and is
  idempotent, so it is resent to another server (retry_on's default includes `reset`); the
  client sees no error at all, while the error log shows the attempts that died.
- POST load: a POST in flight on a dying server may have been acted on, so it is not resent:
  each of those, and only those, is a client error (502). Each one is matched to its error-log
  line, and every such line falls just after a kill.

A revived server takes requests again without any error. The counts are printed (pytest -s)."""

import calendar
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

import portico_testlib as lib
from lbutil import log_lines

pytestmark = pytest.mark.skipif(shutil.which("h2load") is None, reason="needs h2load")

DURATION = 8.0
# (time after the start of the load, action, server index)
SCRIPT = ((1.5, "kill", 0), (3.0, "revive", 0), (4.5, "kill", 1), (6.0, "revive", 1))
# what a request in flight on a dying server meets, as the error log says it
DIED = ("read failed", "connection closed before the response", "write failed",
        "pooled connection closed before the response", "pooled connection failed, retrying")


def log_time(line):
    """Wall-clock seconds of an error-log line (UTC, millisecond precision)."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z", line)
    y, mo, d, h, mi, s, ms = (int(g) for g in m.groups())
    return calendar.timegm((y, mo, d, h, mi, s)) + ms / 1000.0


def h2load_counts(out):
    """(succeeded, 2xx, 5xx, client errors) from h2load's summary: the errors are its failed
    (any status but 2xx/3xx), errored (stream or connection errors) and timed out requests."""
    req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert req and st, out
    return (int(req.group(3)), int(st.group(1)), int(st.group(4)),
            int(req.group(4)) + int(req.group(5)) + int(req.group(6)))


def run_kill_revive(tmp_path, start_portico, method, upstream_extra=""):
    """Three backends behind default settings; h2load (8 connections x 4 streams, 20 ms
    requests) for DURATION seconds while SCRIPT kills and revives two of them. Returns
    (h2load output, portico, kill wall-clock times, server addresses)."""
    ports = [lib.free_port() for _ in range(3)]
    backends = [lib.Backend(name="S%d" % i, port=p, logdir=str(tmp_path))
                for i, p in enumerate(ports)]
    try:
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(port, [b.addr for b in backends],
                                                      upstream_extra=upstream_extra),
                             workers=2, access_log="off", error_level="debug")
        p = start_portico(conf, [port])
        args = ["h2load", "-c", "8", "-m", "4", "-D", str(int(DURATION))]
        if method == "POST":
            body = tmp_path / "body"
            body.write_bytes(b"order=1")
            args += ["-d", str(body)]
        args.append("http://127.0.0.1:%d/slow/20" % port)
        h = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = []
        reader = threading.Thread(target=lambda: out.append(h.communicate(timeout=60)[0]))
        reader.start()
        t0 = time.monotonic()
        kills = []
        for at, action, i in SCRIPT:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            if action == "kill":
                kills.append(time.time())
                backends[i].proc.kill()
                backends[i].proc.wait(5)
                backends[i].stop()
            else:
                backends[i] = lib.Backend(name="S%d-revived" % i, port=ports[i],
                                          logdir=str(tmp_path))
        reader.join(60)
        # each revived server takes requests again: within the load, or (on a slow machine,
        # where an ejection's backoff can outlast the load's last seconds) within the next
        # seconds of plain requests; bounded
        revived_idx = [i for _, a, i in SCRIPT if a == "revive"]

        def all_revived():
            if all(backends[i].stats()["requests"] > 0 for i in revived_idx):
                return True
            lib.curl("http://127.0.0.1:%d/slow/20" % port, timeout=5)
            return False
        lib.wait_until(all_revived, 20, step=0.05)
        revived = [backends[i].stats()["requests"] for i in revived_idx]
        # h2load leaves requests in flight when its time is up: let portico finish them
        # before the backends stop, or they would fail after the test's last kill
        assert p.stop() == 0
        return out[0].decode("utf-8", "replace"), p, kills, ["127.0.0.1:%d" % x for x in ports], \
            revived
    finally:
        for b in backends:
            b.stop()


def died_lines(p, method):
    return [l for l in p.read(p.error_log).splitlines()
            if any(d in l for d in DIED) and re.search(r"[ (]%s /slow/20" % method, l)]


@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("keepalive", ["default", "0"])
def test_balance_kill_revive_get_no_client_error(tmp_path, start_portico, keepalive):
    # keepalive 0: every request on a new connection, so the one replay of a request whose
    # pooled connection died (which would hide a missing retry) cannot happen
    out, p, kills, addrs, revived = run_kill_revive(
        tmp_path, start_portico, "GET", "" if keepalive == "default" else "    keepalive 0;\n")
    ok, n2xx, n5xx, bad = h2load_counts(out)
    died = died_lines(p, "GET")
    print("GET (keepalive %s): %d requests, %d client errors; %d attempts in flight on a dying "
          "server, all replayed" % (keepalive, ok + bad, bad, len(died)))
    assert bad == 0, out + p.logs()
    assert ok > 1000, out
    # requests were in flight when the servers died, and were resent elsewhere
    assert died, p.logs()
    # each revived server took requests again
    assert all(n > 0 for n in revived), revived


@pytest.mark.hard_timeout(90)
def test_balance_kill_revive_post_only_inflight_errors(tmp_path, start_portico):
    out, p, kills, addrs, revived = run_kill_revive(tmp_path, start_portico, "POST")
    ok, n2xx, n5xx, bad = h2load_counts(out)
    died = died_lines(p, "POST")
    print("POST: %d requests, %d client errors; %d attempts in flight on a dying server, none "
          "replayable" % (ok + bad, bad, len(died)))
    assert ok > 1000, out
    # every client error is a 502 from portico, none a broken stream or connection
    assert bad == n5xx, out
    # exactly the POSTs that died in flight became client errors: one 502 each
    assert n5xx == len(died), (n5xx, died, out)
    assert n5xx > 0, "no POST was in flight at a kill: the test proves nothing\n" + p.logs()
    # at most what was in flight: 8 connections x 4 streams, per kill
    assert n5xx <= 32 * len(kills), n5xx
    # and each of them at a kill, on the killed server
    for line in died:
        t = log_time(line)
        assert any(k - 0.05 <= t <= k + 1.0 for k in kills), (line, kills)
        assert addrs[0] in line or addrs[1] in line, line
    assert all(n > 0 for n in revived), revived
