"""Binary upgrade (SIGUSR2, `portico -s upgrade`), from outside (docs/operations.md, "Binary
upgrade"):
- under steady h2load load (HTTP/1.1 and HTTP/2 clients) an upgrade fails no request; the new
  process serves the clients that reconnect; the pid file names it; the old process exits 0
  within shutdown_timeout; the listening sockets are the same sockets (inodes) throughout;
- a new binary that fails (exits 1, cannot be executed, a configuration that no longer parses,
  never ready within upgrade_timeout) leaves the old one serving, with a log line saying why;
- a second SIGUSR2 while an upgrade is in progress, or while the previous generation still
  drains, is refused with a log line;
- a keep-alive connection open on the old process finishes its request, says
  Connection: close and is closed, while new connections go to the new process;
- a server found DOWN stays DOWN (and comes back UP when it answers); the configuration
  generation and the reload and upgrade counts go on; TLS sessions resume across the upgrade;
- more or fewer workers in the new process keep every socket of the old one; addresses added
  and removed;
- `portico -s upgrade` signals the pid file's process."""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

import portico_testlib as lib
import ws_testlib as wsl
from tls_h2_testlib import s_client


def listen_inodes(port):
    """Inodes of the sockets listening on 127.0.0.1:port (one per worker: SO_REUSEPORT)."""
    out = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local == "0100007F:%04X" % port:
                out.add(inode)
    return out


def rewrite(path, conf):
    with open(path + ".tmp", "w") as f:
        f.write(conf)
    os.rename(path + ".tmp", path)


def read_pid(path):
    with open(path) as f:
        return int(f.read())


def who_conf(tmp_path, port, who, backend=None, workers=1, main_extra="", access="combined",
             shutdown="2s", extra_listen=()):
    """A server on port whose /who answers `who` (which configuration, so which process,
    answered), with / proxied to backend."""
    up = ("upstream app {\n    server %s;\n    keepalive 32;\n    connect_timeout 1s;\n}\n"
          % backend.addr) if backend else ""
    loc = "    location / { proxy_pass app; }\n" if backend else ""
    body = """%sserver {
    listen 127.0.0.1:%d;
%s    location /who { return 200 "%s"; }
%s}
""" % (up, port, "".join("    listen 127.0.0.1:%d;\n" % x for x in extra_listen), who, loc)
    return lib.make_conf(tmp_path, body, workers=workers, main_extra=main_extra,
                         access_log=access, shutdown_timeout=shutdown)


def h2load(args, out):
    return subprocess.Popen(["h2load"] + args, stdout=out, stderr=subprocess.STDOUT)


def h2load_result(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    assert m and codes, text
    return [int(x) for x in m.groups()], [int(x) for x in codes.groups()], text


def log_time(log, pattern):
    """The time (seconds, from the line's timestamp) of the first line matching pattern."""
    m = re.search(r"^\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d+)Z .*%s" % pattern, log, re.M)
    assert m, pattern
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


@pytest.mark.hard_timeout(120)
def test_upgrade_under_load_fails_nothing(tmp_path, start_backend, start_portico, upgrades):
    b1 = start_backend("b1")
    port = lib.free_port()
    pid_path = str(tmp_path / "portico.pid")
    old_log, new_log = str(tmp_path / "old.access"), str(tmp_path / "new.access")

    def conf(access):
        return """workers 2;
error_log %s info;
shutdown_timeout 20s;
pid %s;
access_log %s;
upstream app {
    server %s;
    keepalive 32;
    connect_timeout 1s;
}
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
}
""" % (tmp_path / "error.log", pid_path, access, b1.addr, port)

    p = start_portico(conf(old_log), [port], shutdown_timeout=20)
    lib.wait_until(lambda: os.path.exists(pid_path), 5, what="the pid file")
    inodes = listen_inodes(port)
    assert len(inodes) == 2, inodes
    # the new process logs its requests elsewhere: what it served is visible
    rewrite(p.conf_path, conf(new_log))
    out1, out2 = str(tmp_path / "h1.out"), str(tmp_path / "h2.out")
    with open(out1, "w") as f1, open(out2, "w") as f2:
        l1 = h2load(["--h1", "-c", "4", "-D", "6", p.url("/")], f1)
        l2 = h2load(["-c", "2", "-m", "2", "-D", "6", p.url("/")], f2)
        try:
            time.sleep(1.5)
            t0 = time.monotonic()
            new = upgrades.upgrade(p, p.pid, shutdown_timeout=20)
            switch = time.monotonic() - t0
            # the same sockets, in both processes, while both run
            assert listen_inodes(port) == inodes
        finally:
            l1.wait(40)
            l2.wait(40)
    # the old process is gone within shutdown_timeout (it leaves once its clients have)
    assert p.wait_exit(25) == 0
    log = p.read(p.error_log)
    overlap = log_time(log, r"stopped \(pid %d" % p.pid) - \
        log_time(log, "upgrade: handed over to pid %d" % new.pid)
    assert 0 <= overlap < 20, log
    assert read_pid(pid_path) == new.pid
    assert listen_inodes(port) == inodes
    figures = []
    for name, path in (("h1", out1), ("h2", out2)):
        (total, done, ok, failed, errored, timeout), (c2, c3, c4, c5), text = h2load_result(path)
        assert done > 100, text
        assert (failed, errored, timeout) == (0, 0, 0), text
        assert (c3, c4, c5) == (0, 0, 0), text
        figures.append("%s: %d requests, %d failed" % (name, done, failed))
    # HTTP/1.1 clients were told Connection: close by the old process and reconnected: the new
    # one served them
    served_new = p.read(new_log).count('"GET / HTTP/1.1" 200')
    assert served_new > 50, served_new
    assert lib.curl(p.url("/")).body == b"b1"
    print("\nupgrade under load: %s; new process served %d HTTP/1.1 requests; SIGUSR2 to "
          "accepting %.2f s; old process draining %.2f s after the handover"
          % ("; ".join(figures), served_new, switch, overlap))


def copy_binary(tmp_path):
    """A copy of portico in its own directory: what the test replaces for a new version."""
    d = tmp_path / "sbin"
    d.mkdir()
    exe = str(d / "portico")
    shutil.copy2(lib.PORTICO_BIN, exe)
    return exe


def replace_with_script(exe, body):
    """Puts a shell script at exe (renamed over it, as a package manager does)."""
    with open(exe + ".new", "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(exe + ".new", stat.S_IRWXU)
    os.rename(exe + ".new", exe)


def test_failed_new_binary_leaves_the_old_one_serving(tmp_path, start_portico, upgrades):
    port = lib.free_port()
    exe = copy_binary(tmp_path)
    pid_path = str(tmp_path / "portico.pid")
    conf = who_conf(tmp_path, port, "one", workers=2,
                    main_extra="pid %s;\nupgrade_timeout 1s;" % pid_path)
    p = start_portico(conf, [port], exe=exe)
    lib.wait_until(lambda: os.path.exists(pid_path), 5, what="the pid file")
    inodes = listen_inodes(port)

    def still_serving():
        assert lib.curl(p.url("/who")).body == b"one"
        assert p.proc.poll() is None
        assert read_pid(pid_path) == p.pid
        assert listen_inodes(port) == inodes

    # 1. a "binary" that exits 1
    replace_with_script(exe, "echo 'not starting' >&2\nexit 1")
    log = upgrades.failed(p, p.pid, 1)
    assert re.search(r"upgrade failed: the new process \(pid \d+\) exited with status 1 before "
                     r"it was ready; still serving as pid %d" % p.pid, log), log
    still_serving()
    # 2. nothing there to execute
    os.unlink(exe)
    log = upgrades.failed(p, p.pid, 2)
    assert "upgrade failed: cannot execute %s: No such file or directory" % exe in log, log
    still_serving()
    # 3. the real binary, but the configuration no longer parses: the error, file:line:col
    real = "exec %s \"$@\"" % lib.PORTICO_BIN
    replace_with_script(exe, real)
    bad = conf.replace('location /who {', 'bogus_directive 1;\n    location /who {')
    rewrite(p.conf_path, bad)
    line = bad.splitlines().index("    bogus_directive 1;") + 1
    log = upgrades.failed(p, p.pid, 3)
    assert re.search(r"upgrade failed: the new process \(pid \d+\): %s:%d:5: unknown directive "
                     r"\"bogus_directive\"" % (re.escape(p.conf_path), line), log), log
    still_serving()
    # 4. a new address that cannot be bound (another process has it)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    tport = taken.getsockname()[1]
    try:
        rewrite(p.conf_path, conf.replace("    listen 127.0.0.1:%d;" % port,
                                          "    listen 127.0.0.1:%d;\n    listen 127.0.0.1:%d;"
                                          % (port, tport)))
        log = upgrades.failed(p, p.pid, 4)
        assert re.search(r"upgrade failed: the new process \(pid \d+\): bind\(\) to "
                         r"127\.0\.0\.1:%d: Address already in use" % tport, log), log
        still_serving()
    finally:
        taken.close()
    # 5. a binary that never says ready: killed after upgrade_timeout
    replace_with_script(exe, "exec sleep 30")
    rewrite(p.conf_path, conf)
    log = upgrades.failed(p, p.pid, 5)
    assert re.search(r"upgrade failed: no \"ready\" from the new process \(pid \d+\) within "
                     r"1000ms \(upgrade_timeout\); killed it", log), log
    still_serving()
    # the failed attempts stopped nothing: the next good one goes through
    replace_with_script(exe, real)
    rewrite(p.conf_path, conf.replace('"one"', '"two"'))
    new = upgrades.upgrade(p, p.pid)
    assert "before it: 0 reload(s) (0 failed), 0 upgrade(s) (5 failed)" in p.read(p.error_log)
    assert p.wait_exit(5) == 0
    assert lib.curl(p.url("/who")).body == b"two"
    assert read_pid(pid_path) == new.pid
    assert listen_inodes(port) == inodes


def test_second_upgrade_refused_while_one_is_in_progress(tmp_path, start_portico, upgrades):
    port = lib.free_port()
    exe = copy_binary(tmp_path)
    conf = who_conf(tmp_path, port, "one", shutdown="10s")
    p = start_portico(conf, [port], exe=exe, shutdown_timeout=10)
    # a new binary that takes a second to start: time for a second signal
    replace_with_script(exe, "sleep 1\nexec %s \"$@\"" % lib.PORTICO_BIN)
    os.kill(p.pid, signal.SIGUSR2)
    lib.wait_until(lambda: "upgrade: started" in p.read(p.error_log), 5, what="upgrade started")
    os.kill(p.pid, signal.SIGUSR2)
    lib.wait_until(lambda: re.search(r"upgrade refused: one is in progress \(new process pid "
                                     r"\d+\)", p.read(p.error_log)), 5,
                   what="the second SIGUSR2 refused")
    upgrades.wait_upgraded(p, 1, shutdown_timeout=10)
    # one new process only
    assert p.read(p.error_log).count("upgrade: started") == 1
    assert p.wait_exit(5) == 0
    assert lib.curl(p.url("/who")).body == b"one"


def test_new_process_accepts_nothing_before_go(tmp_path, start_portico, upgrades):
    port = lib.free_port()
    exe = copy_binary(tmp_path)
    p = start_portico(who_conf(tmp_path, port, "one"), [port], exe=exe)
    rewrite(p.conf_path, who_conf(tmp_path, port, "two"))
    replace_with_script(exe, "sleep 0.5\nexec %s \"$@\"" % lib.PORTICO_BIN)
    os.kill(p.pid, signal.SIGUSR2)
    lib.wait_until(lambda: "upgrade: started" in p.read(p.error_log), 5, step=0.002,
                   what="upgrade started")
    # the old process cannot answer "ready" while stopped: the new one must wait, not accept
    os.kill(p.pid, signal.SIGSTOP)
    try:
        lib.wait_until(lambda: "ready, waiting for the previous process" in p.read(p.error_log),
                       10, what="the new process ready")
        c = lib.RawConn("127.0.0.1", port, timeout=10)
        c.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        # nobody accepts it: it waits in the backlog of the shared socket
        c.sock.settimeout(1.0)
        with pytest.raises(socket.timeout):
            c.sock.recv(1)
        c.sock.settimeout(10)
    finally:
        os.kill(p.pid, signal.SIGCONT)
    upgrades.wait_upgraded(p, 1)
    # the connection that waited is served: by the old process if it took it from the backlog
    # before it heard "ready", else by the new one
    r = c.read_response()
    assert r.status == 200 and r.body in (b"one", b"two"), r
    c.close()
    assert p.wait_exit(5) == 0


def test_upgrade_refused_while_previous_drains(tmp_path, start_portico, upgrades):
    port = lib.free_port()
    p = start_portico(who_conf(tmp_path, port, "one", shutdown="10s"), [port],
                      shutdown_timeout=10)
    # a keep-alive connection on the old process, idle: it keeps the old one draining
    ka = lib.RawConn("127.0.0.1", port)
    ka.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ka.read_response().body == b"one"
    rewrite(p.conf_path, who_conf(tmp_path, port, "two", shutdown="10s"))
    new = upgrades.upgrade(p, p.pid, shutdown_timeout=10)
    assert p.proc.poll() is None
    new.signal(signal.SIGUSR2)
    lib.wait_until(lambda: re.search(r"upgrade refused: the previous process \(pid %d\) is "
                                     r"still draining; upgrade again once it has exited"
                                     % p.pid, p.read(p.error_log)), 5,
                   what="an upgrade refused while the previous generation drains")
    # its next request is served by the old process, which then closes it and exits
    ka.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    r = ka.read_response()
    assert (r.body, r.header("connection")) == (b"one", "close"), r
    assert ka.is_closed(3)
    ka.close()
    assert p.wait_exit(5) == 0
    lib.wait_until(lambda: "upgrade: the previous process (pid %d) has exited" % p.pid
                   in p.read(p.error_log), 5, what="the new process saw the old one exit")
    # now it may be upgraded, and the generation goes on
    third = upgrades.upgrade(p, new.pid)
    assert new.wait_exit(5) == 0
    assert "upgrade: configuration generation 3" in p.read(p.error_log)
    assert lib.curl(p.url("/who")).body == b"two"
    assert third.alive()


def test_keepalive_on_old_process_finishes_and_closes(tmp_path, start_backend, start_portico,
                                                      upgrades):
    b1 = start_backend("b1")
    port = lib.free_port()
    p = start_portico(who_conf(tmp_path, port, "one", b1, shutdown="10s", access="off"),
                      [port], shutdown_timeout=10)
    idle = lib.RawConn("127.0.0.1", port)
    idle.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.read_response().body == b"one"
    busy = lib.RawConn("127.0.0.1", port, timeout=10)
    busy.send(b"GET /slow/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
    lib.wait_until(lambda: b1.stats()["active"] >= 1, 5, what="the slow request at the backend")
    rewrite(p.conf_path, who_conf(tmp_path, port, "two", b1, shutdown="10s", access="off"))
    upgrades.upgrade(p, p.pid, shutdown_timeout=10)
    # new connections: the new process
    for _ in range(5):
        assert lib.curl(p.url("/who")).body == b"two"
    # the request in flight on the old process finishes, and its connection closes
    r = busy.read_response()
    assert (r.status, r.body, r.header("connection")) == (200, b"slow", "close"), r
    assert busy.is_closed(3)
    # the idle keep-alive connection's next request: still the old process, then closed
    assert p.proc.poll() is None
    idle.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    r = idle.read_response()
    assert (r.body, r.header("connection")) == (b"one", "close"), r
    assert idle.is_closed(3)
    # with no connection left the old process exits at once, long before shutdown_timeout
    assert p.wait_exit(3) == 0
    busy.close()
    idle.close()


def test_idle_connection_on_old_process_closed_after_half_shutdown_timeout(
        tmp_path, start_portico, upgrades):
    port = lib.free_port()
    p = start_portico(who_conf(tmp_path, port, "one", shutdown="2s"), [port])
    idle = lib.RawConn("127.0.0.1", port)
    idle.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.read_response().body == b"one"
    rewrite(p.conf_path, who_conf(tmp_path, port, "two", shutdown="2s"))
    upgrades.upgrade(p, p.pid)
    # left alone for the first half of shutdown_timeout, then closed as on SIGTERM
    assert not idle.is_closed(0.5)
    assert idle.is_closed(3)
    assert p.wait_exit(3) == 0
    idle.close()
    # the old process's drain left the sockets it handed over alone: the new one serves
    for _ in range(10):
        assert lib.curl(p.url("/who")).body == b"two"


def test_down_server_stays_down_and_comes_back(tmp_path, start_backend, start_portico,
                                               upgrades):
    b1 = start_backend("b1")
    dead = lib.free_port()   # nothing listens there
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """upstream app {
    server %s;
    server 127.0.0.1:%d;
    health_check tcp interval=200ms fall=1 rise=1 timeout=500ms;
}
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
}
""" % (b1.addr, dead, port), error_level="info")
    p = start_portico(conf, [port])
    lib.wait_until(lambda: re.search(r"server 127\.0\.0\.1:%d in app DOWN" % dead,
                                     p.read(p.error_log)), 5, what="the dead server marked down")
    upgrades.upgrade(p, p.pid)
    assert p.wait_exit(5) == 0
    mark = len(p.read(p.error_log))
    for _ in range(20):
        assert lib.curl(p.url("/")).body == b"b1"
    lib.wait_until(lambda: "health checks started" in p.read(p.error_log), 3,
                   what="the new process's health checks")
    # not one request tried on it, and not marked down again over a few check intervals of the
    # new process: it started down
    assert lib.stays(lambda: not re.search(r"server 127\.0\.0\.1:%d: connect\(\) failed|"
                                           r"127\.0\.0\.1:%d in app DOWN" % (dead, dead),
                                           p.read(p.error_log)[mark:]), 0.6), \
        p.read(p.error_log)[mark:]
    # once it answers, the new process's checks bring it back
    start_backend("b2", port=dead)
    lib.wait_until(lambda: re.search(r"server 127\.0\.0\.1:%d in app UP" % dead,
                                     p.read(p.error_log)[mark:]), 5, what="the server UP")


def test_generation_and_counters_carry_over(tmp_path, start_portico, upgrades):
    port = lib.free_port()
    conf = who_conf(tmp_path, port, "one")
    p = start_portico(conf, [port])

    def reloaded(n):
        return lib.wait_until(lambda: len(re.findall(r"reloaded: configuration generation|"
                                                     r"reload failed", p.read(p.error_log)))
                              >= n, 5, what="reload #%d" % n)

    rewrite(p.conf_path, conf + "# again\n")
    p.signal(signal.SIGHUP)
    reloaded(1)
    rewrite(p.conf_path, conf + "bogus;\n")
    p.signal(signal.SIGHUP)
    reloaded(2)
    rewrite(p.conf_path, conf)
    new = upgrades.upgrade(p, p.pid)
    log = p.read(p.error_log)
    assert ("upgrade: configuration generation 3; before it: 1 reload(s) (1 failed), "
            "0 upgrade(s) (0 failed)") in log, log
    assert p.wait_exit(5) == 0
    # the new process goes on counting
    rewrite(p.conf_path, conf + "# and again\n")
    new.signal(signal.SIGHUP)
    reloaded(3)
    assert "reloaded: configuration generation 4" in p.read(p.error_log)
    third = upgrades.upgrade(p, new.pid)
    assert ("upgrade: configuration generation 5; before it: 2 reload(s) (1 failed), "
            "1 upgrade(s) (0 failed)") in p.read(p.error_log)
    assert new.wait_exit(5) == 0
    assert third.alive()


def test_more_or_fewer_workers_keep_every_socket(tmp_path, start_backend, start_portico,
                                                  upgrades):
    b1 = start_backend("b1")
    pa, pb, pc = lib.free_port(), lib.free_port(), lib.free_port()
    p = start_portico(who_conf(tmp_path, pa, "one", b1, workers=2, extra_listen=[pb]), [pa, pb])
    two = listen_inodes(pa)
    assert len(two) == 2, two
    # three workers: the two sockets are kept, a third joins their SO_REUSEPORT group
    rewrite(p.conf_path, who_conf(tmp_path, pa, "two", b1, workers=3, extra_listen=[pc]))
    new = upgrades.upgrade(p, p.pid)
    assert p.wait_exit(5) == 0
    three = listen_inodes(pa)
    assert len(three) == 3 and two < three, (two, three)
    assert new.alive()
    # pb is no longer configured: closed with the old process; pc is new
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", pb), timeout=2).close()
    assert lib.curl("http://127.0.0.1:%d/who" % pc).body == b"two"
    assert "upgrade: 127.0.0.1:%d is no longer listened on: closing its 2 socket(s)" % pb \
        in p.read(p.error_log)
    # one worker: it watches all three sockets; none is closed (their backlogs would go)
    rewrite(p.conf_path, who_conf(tmp_path, pa, "three", b1, workers=1))
    newer = upgrades.upgrade(p, new.pid)
    assert new.wait_exit(5) == 0
    assert listen_inodes(pa) == three
    assert newer.alive()
    # every socket is served: enough connections reach all three (the kernel hashes them)
    bodies = [lib.curl(p.url("/who")).body for _ in range(30)]
    assert bodies == [b"three"] * 30, bodies
    for _ in range(30):
        assert lib.curl(p.url("/")).body == b"b1"


def test_tls_sessions_resume_across_the_upgrade(tmp_path, start_portico, upgrades, certs):
    port = lib.free_port()
    body = """server {
    listen 127.0.0.1:%d tls;
    tls_certificate %s;
    tls_certificate_key %s;
    location / { return 200 "tls"; }
}
""" % (port, certs.localhost, certs.localhost_key)
    p = start_portico(lib.make_conf(tmp_path, body, workers=2), [port])
    sess = str(tmp_path / "sess.pem")
    req = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
    common = ["-servername", "localhost", "-tls1_3", "-ign_eof", "-CAfile", certs.ca]
    rc, out = s_client(port, common + ["-sess_out", sess], stdin=req)
    assert re.search(r"^New, TLSv1\.3", out, re.M) and "HTTP/1.1 200" in out, out
    assert os.path.getsize(sess) > 0
    upgrades.upgrade(p, p.pid)
    assert p.wait_exit(5) == 0
    # the ticket issued by the old process opens a session with the new one
    rc, out = s_client(port, common + ["-sess_in", sess], stdin=req)
    assert "HTTP/1.1 200" in out, out
    assert re.search(r"^Reused, TLSv1\.3", out, re.M), out


def test_signal_option_upgrade(tmp_path, start_portico, upgrades):
    port = lib.free_port()
    pid_path = str(tmp_path / "portico.pid")
    p = start_portico(who_conf(tmp_path, port, "one", main_extra="pid %s;" % pid_path), [port])
    lib.wait_until(lambda: os.path.exists(pid_path), 5, what="the pid file")
    rewrite(p.conf_path, who_conf(tmp_path, port, "two", main_extra="pid %s;" % pid_path))
    rc, out = lib.run_portico(["-c", p.conf_path, "-s", "upgrade"])
    assert rc == 0, out
    new = upgrades.wait_upgraded(p, 1)
    assert p.wait_exit(5) == 0
    assert read_pid(pid_path) == new.pid
    assert lib.curl(p.url("/who")).body == b"two"
    # `-s upgrade` now reaches the new process, through the file it wrote
    rc, out = lib.run_portico(["-c", p.conf_path, "-s", "upgrade"])
    assert rc == 0, out
    third = upgrades.wait_upgraded(p, 2)
    assert new.wait_exit(5) == 0
    assert read_pid(pid_path) == third.pid


def test_upgrade_timeout_directive(tmp_path):
    for value, ok in (("30s", True), ("500ms", False), ("2h", False), ("soon", False)):
        path = str(tmp_path / "t.conf")
        with open(path, "w") as f:
            f.write("upgrade_timeout %s;\nserver { listen 127.0.0.1:1; }\n" % value)
        rc, out = lib.run_portico(["-t", "-c", path])
        assert (rc == 0) == ok, out
        if value in ("500ms", "2h"):
            assert "%s:1:17: upgrade_timeout must be between 1s and 1h" % path in out, out


def test_websocket_on_old_process_runs_then_goes_away_with_1001(tmp_path, start_portico,
                                                               upgrades):
    b = wsl.WsBackend(name="ws1", logdir=str(tmp_path))
    try:
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, """upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
}
""" % (b.addr, port), shutdown_timeout="3s")
        p = start_portico(conf, [port], shutdown_timeout=3)
        c = lib.RawConn("127.0.0.1", port)
        r, _ = wsl.raw_ws_connect(c, "/echo")
        assert r.status == 101, r
        upgrades.upgrade(p, p.pid)
        # the tunnel on the old process runs on through the first half of shutdown_timeout
        c.send(wsl.frame(wsl.OP_TEXT, "after the upgrade"))
        fin, op, data, _ = wsl.FrameReader(c).read(5)
        assert (op, data) == (wsl.OP_TEXT, b"after the upgrade")
        # then it is told the server is going away, as on SIGTERM
        fin, op, data, _ = wsl.FrameReader(c).read(5)
        assert op == wsl.OP_CLOSE and wsl.close_code_of(data) == 1001, (op, data)
        c.close()
        assert p.wait_exit(5) == 0
        # a new tunnel goes to the new process
        c2 = lib.RawConn("127.0.0.1", port)
        r, _ = wsl.raw_ws_connect(c2, "/echo")
        assert r.status == 101, r
        c2.send(wsl.frame(wsl.OP_TEXT, "new"))
        fin, op, data, _ = wsl.FrameReader(c2).read(5)
        assert (op, data) == (wsl.OP_TEXT, b"new")
        c2.close()
    finally:
        b.stop()


def fds_to(pid, path):
    """How many of pid's descriptors are open on path."""
    d = "/proc/%d/fd" % pid
    n = 0
    for fd in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, fd)) == path:
                n += 1
        except OSError:
            pass
    return n


def test_no_descriptor_of_the_old_process_leaks_into_the_new_one(tmp_path, start_portico,
                                                                 upgrades):
    port = lib.free_port()
    p = start_portico(who_conf(tmp_path, port, "one", workers=2), [port])
    assert lib.curl(p.url("/who")).body == b"one"
    # log files reopened (dup'ed over the old descriptors) must stay close-on-exec
    p.signal(signal.SIGUSR1)
    lib.wait_until(lambda: "log files reopened" in p.read(p.error_log), 5, what="reopened")
    # a client connection open on the old process while it starts the new one
    with lib.RawConn("127.0.0.1", port) as c:
        c.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"one"
        new = upgrades.upgrade(p, p.pid)
        assert fds_to(new.pid, p.error_log) == 1
        assert fds_to(new.pid, p.access_log) == 1
        sockets = [os.readlink("/proc/%d/fd/%s" % (new.pid, fd))
                   for fd in os.listdir("/proc/%d/fd" % new.pid)]
        inodes = {s[len("socket:["):-1] for s in sockets if s.startswith("socket:[")}
        # its sockets: the two listening ones and its end of the pair to the old process
        assert listen_inodes(port) <= inodes and len(inodes) == 3, (inodes, sockets)


def test_stream_connection_on_old_process_runs_on(tmp_path, start_portico, upgrades):
    """A stream server's connection stays with the old process and relays on (TCP cannot be told
    to go elsewhere) until it ends; a new connection goes to the new process."""
    tool = os.path.join(lib.TOOLS, "tcp_backend.py")
    b = subprocess.Popen([lib.PYTHON, tool, "--mode", "greet", "--name", "e"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        bport = int(b.stdout.readline().split()[2])
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, """upstream app { server 127.0.0.1:%d; }
stream { server { listen 127.0.0.1:%d; proxy_pass app; } }
""" % (bport, port), shutdown_timeout="10s")
        p = start_portico(conf, [port], shutdown_timeout=10)
        old = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert old.recv(100) == b"hello from e\n"
        new_process = upgrades.upgrade(p, p.pid, shutdown_timeout=10)
        for i in range(3):
            old.sendall(b"still relayed %d\n" % i)
            assert old.recv(100) == b"still relayed %d\n" % i
            time.sleep(0.2)
        new = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert new.recv(100) == b"hello from e\n"
        new.sendall(b"new\n")
        assert new.recv(100) == b"new\n"
        new.close()
        assert p.proc.poll() is None  # the old process waits for its connection
        old.close()
        assert p.wait_exit(8) == 0
        assert new_process.pid != p.pid
    finally:
        b.kill()
        b.wait()
