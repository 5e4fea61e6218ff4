"""`readiness;` across a binary upgrade (docs/operations.md, "Behind an orchestrator or a load
balancer"):
- in the old process, from the moment the upgrade begins, readiness answers 503
  `not ready: upgrading`: asked on a keep-alive connection opened before the upgrade (new
  connections go to the new process, which answers `ready`);
- while the new process is starting the old one already says `upgrading`; when the upgrade
  fails it says `ready` again."""

import os
import signal

import portico_testlib as lib
from test_upgrade import copy_binary, replace_with_script, who_conf

PROBE = 'location /who { return 200 "%s"; }\n    location = /ready { readiness; }'


def conf_with_probe(tmp_path, port, who, **kw):
    c = who_conf(tmp_path, port, who, **kw)
    return c.replace('location /who { return 200 "%s"; }' % who, PROBE % who)


def ask(conn, path):
    conn.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    return conn.read_response()


def test_old_process_says_upgrading(tmp_path, start_portico, upgrades):
    port = lib.free_port()
    p = start_portico(conf_with_probe(tmp_path, port, "one", shutdown="10s", access="off"),
                      [port], shutdown_timeout=10)
    early = lib.RawConn("127.0.0.1", port, timeout=10)
    r = ask(early, "/ready")
    assert (r.status, r.body) == (200, b"ready\n"), r
    with open(p.conf_path, "w") as f:
        f.write(conf_with_probe(tmp_path, port, "two", shutdown="10s", access="off"))
    upgrades.upgrade(p, p.pid, shutdown_timeout=10)
    # the connection from before: still the old process, which is on its way out
    r = ask(early, "/ready")
    assert (r.status, r.body) == (503, b"not ready: upgrading\n"), r
    assert r.header("cache-control") == "no-store", r
    # a new connection: the new process, ready
    assert lib.curl(p.url("/who")).body == b"two"
    r = lib.curl(p.url("/ready"))
    assert (r.status, r.body) == (200, b"ready\n"), r
    assert p.wait_exit(15) == 0
    early.close()


def test_upgrading_while_the_new_process_starts_then_ready_when_it_fails(
        tmp_path, start_portico, upgrades):
    port = lib.free_port()
    exe = copy_binary(tmp_path)
    conf = conf_with_probe(tmp_path, port, "one", main_extra="upgrade_timeout 10m;")
    p = start_portico(conf, [port], exe=exe)
    assert lib.curl(p.url("/ready")).status == 200
    # a "new binary" that never says ready, and says where it runs
    child_pid = str(tmp_path / "child.pid")
    replace_with_script(exe, "echo $$ > %s\nexec sleep 600" % child_pid)
    os.kill(p.pid, signal.SIGUSR2)
    lib.wait_until(lambda: os.path.exists(child_pid) and open(child_pid).read().strip(), 10,
                   what="the new process started")
    # the old process still accepts, and tells balancers to move on (set by the main thread
    # just after the fork: polled, not read once)
    def not_ready():
        r = lib.curl(p.url("/ready"))
        return r if r.status != 200 else None
    r = lib.wait_until(not_ready, 10, what="readiness no longer 200")
    assert (r.status, r.body) == (503, b"not ready: upgrading\n"), r
    assert lib.curl(p.url("/who")).body == b"one"
    # the new process dies: the upgrade failed, the old one stays and is ready again
    os.kill(int(open(child_pid).read()), signal.SIGKILL)
    upgrades.wait_failed(p, 1)
    lib.wait_until(lambda: lib.curl(p.url("/ready")).status == 200, 10, what="ready again")
    assert lib.curl(p.url("/ready")).body == b"ready\n"
