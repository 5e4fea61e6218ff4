"""`readiness;`, `liveness;` and `shutdown_delay` (docs/operations.md, "Behind an orchestrator
or a load balancer"), from outside:
- readiness answers 200 `ready`, liveness 200 `alive`; GET and HEAD only (405 with Allow);
  `Cache-Control: no-store`; the location's allow / deny rules apply;
- with shutdown_delay, after SIGTERM readiness says 503 `not ready: stopping` at once while
  the process goes on serving: a proxied request on a new connection succeeds, liveness is
  200; HTTP/1.1 responses say Connection: close, so a keep-alive client reconnects through its
  balancer after its next response instead of racing the drain's close of idle connections;
  one idle all along is closed by the drain; then it exits 0, with a log line for each phase;
- a second SIGTERM during the delay starts the drain at once (and says so); a reload or an
  upgrade asked for during the delay is refused with a line.
Binary upgrades (readiness says `not ready: upgrading` in the old process) are tested in
tests/integration/upgrade/test_upgrade_readiness.py.  No timing is asserted: every wait polls
with a generous bound, and the delay the serving checks run in is long and cut short by the
second signal."""

import signal

import portico_testlib as lib
import opsutil

PROBES = """
    location = /ready { readiness; }
    location = /alive { liveness; }
    location = /ready-local { readiness; allow 10.9.9.9; deny all; }
"""


def start(tmp_path, start_portico, backends, main_extra="", shutdown="5s", **kw):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, opsutil.body(port, [b.addr for b in backends],
                                                locations=PROBES, **kw),
                         workers=2, access_log="off", main_extra=main_extra,
                         shutdown_timeout=shutdown)
    p = start_portico(conf, [port], shutdown_timeout=float(shutdown.rstrip("s")))
    return p, port


def get(port, path, *args):
    return lib.curl("http://127.0.0.1:%d%s" % (port, path), *args)


def test_probes_answer(tmp_path, start_backend, start_portico):
    b = start_backend("b1")
    p, port = start(tmp_path, start_portico, [b])
    r = get(port, "/ready")
    assert (r.status, r.body) == (200, b"ready\n"), r
    assert r.header("Cache-Control") == "no-store", r
    assert r.header("Content-Type").startswith("text/plain"), r
    r = get(port, "/alive")
    assert (r.status, r.body, r.header("Cache-Control")) == (200, b"alive\n", "no-store"), r
    r = get(port, "/ready", "-I")           # HEAD: the head alone (curl prints it)
    assert r.status == 200 and r.header("Content-Length") == "6", r
    assert not r.body.endswith(b"ready\n"), r
    for path in ("/ready", "/alive"):
        r = get(port, path, "-X", "POST", "-d", "x")
        assert r.status == 405 and r.header("Allow") == "GET, HEAD", r
    # over HTTP/2 too
    r = get(port, "/ready", "--http2-prior-knowledge")
    assert (r.status, r.body) == (200, b"ready\n"), r
    # allow / deny apply: 127.0.0.1 is not 10.9.9.9
    assert get(port, "/ready-local").status == 403


def test_shutdown_delay_serves_while_not_ready(tmp_path, start_backend, start_portico):
    b = start_backend("b1")
    p, port = start(tmp_path, start_portico, [b], main_extra="shutdown_delay 10m;")
    assert get(port, "/ready").status == 200
    early = lib.RawConn("127.0.0.1", port, timeout=10)
    early.send(b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\n")
    r = early.read_response()
    assert r.status == 200 and r.header("connection") != "close", r
    idle = lib.RawConn("127.0.0.1", port, timeout=10)
    idle.send(b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.read_response().status == 200

    p.signal(signal.SIGTERM)
    lib.wait_until(lambda: get(port, "/ready").status == 503, 10, what="readiness 503")
    r = get(port, "/ready")
    assert (r.status, r.body, r.header("Cache-Control")) == \
        (503, b"not ready: stopping\n", "no-store"), r
    # still serving, as before: a proxied request on a new connection, HTTP/1.1 and HTTP/2
    r = get(port, "/bytes/100")
    assert r.status == 200 and len(r.body) == 100 and r.header("Connection") == "close", r
    r = get(port, "/bytes/100", "--http2-prior-knowledge")
    assert r.status == 200 and len(r.body) == 100, r
    assert get(port, "/alive").status == 200
    # a keep-alive connection from before the signal gets its next response, which says
    # Connection: close, and is closed after it: the client's next request goes to a new one
    early.send(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
    r = early.read_response()
    assert (r.status, r.body, r.header("connection")) == \
        (503, b"not ready: stopping\n", "close"), r
    assert early.is_closed(10)
    assert p.proc.poll() is None
    log = p.read(p.error_log)
    assert "Terminated: not ready; still serving for shutdown_delay 600000ms, then stopping " \
           "gracefully (shutdown_timeout 5000ms)" in log, log
    assert "stopping gracefully now" not in log
    # neither a reload nor an upgrade starts now
    p.signal(signal.SIGHUP)
    p.signal(signal.SIGUSR2)
    lib.wait_until(lambda: "upgrade refused: this process is stopping" in p.read(p.error_log),
                   10, what="upgrade refused")
    lib.wait_until(lambda: "reload refused: this process is stopping (shutdown_delay)"
                   in p.read(p.error_log), 10, what="reload refused")
    assert get(port, "/bytes/3").status == 200

    # a second SIGTERM: the drain starts at once
    assert not idle.is_closed(0.2)  # idle all along: the delay leaves it alone
    p.signal(signal.SIGTERM)
    assert idle.is_closed(10)    # an idle keep-alive connection is closed by the drain
    assert p.wait_exit(15) == 0
    log = p.read(p.error_log)
    assert "Terminated again during shutdown_delay: stopping gracefully now " \
           "(shutdown_timeout 5000ms)" in log, log
    assert "shutdown_delay over" not in log
    assert log.rstrip().endswith("stopped"), log
    early.close()
    idle.close()


def test_shutdown_delay_ends_by_itself(tmp_path, start_backend, start_portico):
    b = start_backend("b1")
    p, port = start(tmp_path, start_portico, [b], main_extra="shutdown_delay 3s;")
    assert get(port, "/ready").status == 200
    p.signal(signal.SIGTERM)
    # readiness turns as soon as the signal is handled; the answer comes from the delay or, on
    # a very slow machine, not at all once the drain has closed the listeners
    r = lib.wait_until(lambda: (lambda r: r if r.status != 200 else None)(get(port, "/ready")),
                       10, what="readiness no longer 200")
    assert r.status is None or (r.status, r.body) == (503, b"not ready: stopping\n"), r
    assert p.wait_exit(30) == 0
    log = p.read(p.error_log)
    phases = ["Terminated: not ready; still serving for shutdown_delay 3000ms",
              "shutdown_delay over: stopping gracefully (shutdown_timeout 5000ms)",
              "stopped"]
    at = [log.find(x) for x in phases]
    assert all(i >= 0 for i in at) and at == sorted(at), log


def test_without_delay_sigterm_stops_as_before(tmp_path, start_backend, start_portico):
    b = start_backend("b1")
    p, port = start(tmp_path, start_portico, [b])
    assert get(port, "/ready").status == 200
    p.signal(signal.SIGTERM)
    assert p.wait_exit(15) == 0
    log = p.read(p.error_log)
    assert "Terminated: stopping gracefully (shutdown_timeout 5000ms)" in log, log
    assert "shutdown_delay" not in log, log


def test_shutdown_delay_directive(tmp_path):
    port = lib.free_port()
    for value, ok in (("0", True), ("10m", True), ("1500ms", True), ("601s", False),
                      ("1h", False), ("soon", False)):
        path = tmp_path / "d.conf"
        path.write_text(lib.make_conf(tmp_path, opsutil.body(port, ["127.0.0.1:1"]),
                                      main_extra="shutdown_delay %s;" % value))
        rc, out = lib.run_portico(["-t", "-c", str(path)])
        assert (rc == 0) == ok, (value, out)
        if value in ("601s", "1h"):
            assert "shutdown_delay must be at most 10m" in out, out
