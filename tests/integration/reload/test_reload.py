"""Live reload (SIGHUP, `portico -s reload`) and graceful stop, from outside:
- a reload applies new routes and upstreams; the access log goes on; the generation counts up;
- a bad configuration (syntax, meaning, an address that cannot be bound) is refused with
  file:line:col in the error log and the running one keeps serving;
- 20 reloads in a row under h2load load (HTTP/1.1 and HTTP/2 clients): no failed request, and
  the unchanged upstream's pooled connections carry over (the backend sees no new connection);
- a listening socket that stays is the same socket (inode) after the reload; an added one
  accepts, a removed one refuses; a keep-alive connection on a kept address serves its next
  request from the new configuration;
- health state and outlier ejections carry over: a server found down, or ejected, is not tried
  after the reload;
- a WebSocket tunnel whose route is unchanged runs on; one whose location is gone gets 1001;
- `pid FILE`, `portico -s reload|stop` and their errors;
- SIGTERM lets HTTP/1.1, h2c and HTTP/2-over-TLS downloads in flight complete."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import portico_testlib as lib
import ws_testlib as wsl


def reloaded(p, n, timeout=5.0):
    """Waits for the n-th `reloaded:` or `reload failed` line; returns the log."""
    def done():
        log = p.read(p.error_log)
        k = len(re.findall(r"reloaded: configuration generation|reload failed", log))
        return log if k >= n else None
    return lib.wait_until(done, timeout, what="reload #%d in the error log" % n)


def rewrite(p, conf):
    with open(p.conf_path + ".tmp", "w") as f:
        f.write(conf)
    os.rename(p.conf_path + ".tmp", p.conf_path)


def reload_with(p, conf, n):
    rewrite(p, conf)
    p.signal(signal.SIGHUP)
    return reloaded(p, n)


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


def tried(log, port):
    """The error-log line of a connect() to 127.0.0.1:port that failed, or None."""
    return re.search(r"server 127\.0\.0\.1:%d: connect\(\) failed" % port, log)


def conf_two(tmp_path, port, b, extra_server="", main_extra="", workers=1, up_extra=""):
    body = """upstream app {
    server %s;
    keepalive 32;
    keepalive_requests 1000000;
    connect_timeout 1s;
    %s
}
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
    %s
}
""" % (b.addr, up_extra, port, extra_server)
    return lib.make_conf(tmp_path, body, workers=workers, main_extra=main_extra)


def test_reload_applies_new_routes_and_upstreams(tmp_path, start_backend, start_portico):
    b1, b2 = start_backend("b1"), start_backend("b2")
    port = lib.free_port()
    p = start_portico(conf_two(tmp_path, port, b1), [port])
    assert lib.curl(p.url("/")).body == b"b1"
    log = reload_with(p, conf_two(tmp_path, port, b2, 'location /new { return 200 "new"; }'), 1)
    assert "reloaded: configuration generation 2" in log
    assert lib.curl(p.url("/")).body == b"b2"
    r = lib.curl(p.url("/new"))
    assert (r.status, r.body) == (200, b"new")
    # the access log goes on across the switch
    lib.wait_until(lambda: p.read(p.access_log).count('"GET / HTTP/1.1" 200') >= 2, 5,
                   what="both requests in the access log")
    assert '"GET /new HTTP/1.1" 200' in lib.wait_until(lambda: p.read(p.access_log), 3)


def test_bad_reload_keeps_serving_and_says_where(tmp_path, start_backend, start_portico):
    b1 = start_backend("b1")
    port = lib.free_port()
    good = conf_two(tmp_path, port, b1)
    p = start_portico(good, [port])
    # a syntax error: an unknown directive, at its line and column
    bad = good.replace("location / { proxy_pass app; }",
                       "location / { proxy_pass app; bogus_directive 1; }")
    line = bad.splitlines().index(next(ln for ln in bad.splitlines() if "bogus_directive" in ln))
    col = bad.splitlines()[line].index("bogus_directive") + 1
    log = reload_with(p, bad, 1)
    assert "%s:%d:%d: unknown directive \"bogus_directive\"" % (p.conf_path, line + 1, col) in log
    assert "reload failed: still serving configuration generation 1" in log
    assert lib.curl(p.url("/")).body == b"b1"
    # a meaning error: proxy_pass to an upstream that does not exist
    log = reload_with(p, good.replace("proxy_pass app;", "proxy_pass nowhere;"), 2)
    assert re.search(r"%s:\d+:\d+: .*nowhere" % re.escape(p.conf_path), log), log
    assert lib.curl(p.url("/")).body == b"b1"
    # an address that cannot be bound (taken by another socket): refused, nothing changed
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    tport = taken.getsockname()[1]
    try:
        extra = "server { listen 127.0.0.1:%d; location / { return 200 \"x\"; } }\n" % tport
        log = reload_with(p, good + extra, 3)
        assert log.count("reload failed") == 3
        assert re.search(r"reload: .*127\.0\.0\.1:%d" % tport, log), log
        assert lib.curl(p.url("/")).body == b"b1"
    finally:
        taken.close()
    # and a good one after all that is taken, as generation 2
    log = reload_with(p, good.replace("location / {", "location /ok { return 200 \"ok\"; }\n"
                                      "    location / {"), 4)
    assert "reloaded: configuration generation 2" in log
    assert lib.curl(p.url("/ok")).body == b"ok"


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


@pytest.mark.hard_timeout(90)
def test_twenty_reloads_under_load_fail_nothing_and_keep_the_pool(tmp_path, start_backend,
                                                                 start_portico):
    b1 = start_backend("b1")
    port = lib.free_port()
    conf = conf_two(tmp_path, port, b1, workers=1)
    p = start_portico(conf, [port])
    # eight requests at once open eight pooled connections: as many as the load below ever
    # has in flight (h2load --h1 -c4, and h2load -c2 -m2 over h2c); each takes 1.5 s, so they
    # overlap even when starting the eight curls takes long on a loaded machine
    threads = [threading.Thread(target=lib.curl, args=(p.url("/slow/1500"),)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    before = b1.stats()["connections"]
    assert before == 8, b1.stats()
    out1, out2 = str(tmp_path / "h1.out"), str(tmp_path / "h2.out")
    with open(out1, "w") as f1, open(out2, "w") as f2:
        # the load runs 6 s; the 20 reloads take about 2 s of it
        l1 = h2load(["--h1", "-c", "4", "-D", "6", p.url("/")], f1)
        l2 = h2load(["-c", "2", "-m", "2", "-D", "6", p.url("/")], f2)
        try:
            time.sleep(0.5)
            for i in range(20):
                # the same configuration each time, but one more comment, so the test does not
                # depend on the file being unchanged
                reload_with(p, conf + "# reload %d\n" % i, i + 1)
                time.sleep(0.05)
        finally:
            l1.wait(30)
            l2.wait(30)
    log = p.read(p.error_log)
    assert "reloaded: configuration generation 21" in log
    figures = []
    for name, path in (("h1", out1), ("h2c", out2)):
        (total, done, ok, failed, errored, timeout), (c2, c3, c4, c5), text = h2load_result(path)
        assert done > 100, text
        assert (failed, errored, timeout) == (0, 0, 0), text
        assert (c3, c4, c5) == (0, 0, 0), text
        figures.append("%s: %d requests, %d failed" % (name, done, failed + errored + timeout))
    # pooled connections carried over every reload: not one new connection to the backend
    st = b1.stats()
    print("20 reloads under load: %s; backend connections %d before, %d after" % (
        "; ".join(figures), before, st["connections"]))
    assert st["connections"] == before, st
    assert st["requests"] > 200, st


def test_listeners_added_removed_and_kept(tmp_path, start_backend, start_portico):
    b1, b2 = start_backend("b1"), start_backend("b2")
    pa, pb, pc = lib.free_port(), lib.free_port(), lib.free_port()

    def conf(b, ports):
        return lib.make_conf(tmp_path, """upstream app { server %s; }
server {
%s
    location / { proxy_pass app; }
}
""" % (b.addr, "".join("    listen 127.0.0.1:%d;\n" % x for x in ports)), workers=2)

    p = start_portico(conf(b1, [pa, pb]), [pa, pb])
    inodes = listen_inodes(pa)
    assert len(inodes) == 2, inodes
    idle_b = lib.RawConn("127.0.0.1", pb)
    with lib.RawConn("127.0.0.1", pa) as ka:
        ka.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ka.read_response().body == b"b1"
        idle_b.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle_b.read_response().body == b"b1"
        log = reload_with(p, conf(b2, [pa, pc]), 1)
        assert "listening on 127.0.0.1:%d" % pc in log
        assert "no longer listening on 127.0.0.1:%d" % pb in log
        # the kept address's sockets are the same sockets: never closed and reopened
        assert listen_inodes(pa) == inodes
        # the keep-alive connection on it serves its next request from the new configuration
        ka.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ka.read_response().body == b"b2"
    assert lib.curl("http://127.0.0.1:%d/" % pc).body == b"b2"
    # the removed address refuses, once every worker has switched; its idle connection closed

    def refused():
        s = socket.socket()
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", pb))
            return False
        except ConnectionRefusedError:
            return True
        finally:
            s.close()
    lib.wait_until(refused, 5, what="127.0.0.1:%d refusing connections" % pb)
    assert idle_b.is_closed(3)
    idle_b.close()


def test_health_state_survives_reload(tmp_path, start_backend, start_portico):
    b1 = start_backend("b1")
    dead = lib.free_port()   # nothing listens there
    port = lib.free_port()
    up = "health_check tcp interval=200ms fall=1 rise=1 timeout=500ms;"
    conf = lib.make_conf(tmp_path, """upstream app {
    server %s;
    server 127.0.0.1:%d;
    %s
}
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
}
""" % (b1.addr, dead, up, port), error_level="info")
    p = start_portico(conf, [port])
    lib.wait_until(lambda: re.search(r"server 127\.0\.0\.1:%d in app DOWN" % dead,
                                     p.read(p.error_log)), 5,
                   what="the dead server marked down")
    reload_with(p, conf + "# again\n", 1)
    mark = len(p.read(p.error_log))
    for _ in range(20):
        assert lib.curl(p.url("/")).body == b"b1"
    # not one attempt on the dead server after the reload: it was still known down
    after = p.read(p.error_log)[mark:]
    assert not tried(after, dead), after
    # nor marked down a second time; and once it answers, its checks bring it back
    assert not re.search(r"127\.0\.0\.1:%d in app DOWN" % dead, after), after
    start_backend("b2", port=dead)
    lib.wait_until(lambda: re.search(r"server 127\.0\.0\.1:%d in app UP" % dead,
                                     p.read(p.error_log)[mark:]), 5,
                   what="the server back UP after the reload")
    lib.wait_until(lambda: lib.curl(p.url("/")).body == b"b2", 5, what="b2 answering")


def test_ejected_server_stays_out_across_reload(tmp_path, start_backend, start_portico):
    b1 = start_backend("b1")
    dead = lib.free_port()   # nothing listens there
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """upstream app {
    server %s;
    server 127.0.0.1:%d;
    outlier_detection consecutive=1 on=connect_error base_ejection=60s;
}
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
}
""" % (b1.addr, dead, port), error_level="info")
    p = start_portico(conf, [port])
    # round robin draws the dead server within two requests: refused, retried, ejected
    for _ in range(4):
        assert lib.curl(p.url("/")).body == b"b1"
    lib.wait_until(lambda: re.search(r"server 127\.0\.0\.1:%d in app ejected for 60000ms" % dead,
                                     p.read(p.error_log)), 5, what="the dead server ejected")
    reload_with(p, conf + "# again\n", 1)
    mark = len(p.read(p.error_log))
    for _ in range(20):
        assert lib.curl(p.url("/")).body == b"b1"
    # not one attempt on the dead server after the reload: its ejection carried over
    after = p.read(p.error_log)[mark:]
    assert not tried(after, dead), after
    assert "back in rotation" not in after and "ejected" not in after, after


@pytest.fixture
def ws_backend(tmp_path):
    b = wsl.WsBackend(name="ws1", logdir=str(tmp_path))
    yield b
    b.stop()


def ws_open(port, path):
    c = lib.RawConn("127.0.0.1", port)
    r, _ = wsl.raw_ws_connect(c, path)
    assert r.status == 101, r
    return c


def ws_echo(c, text):
    c.send(wsl.frame(wsl.OP_TEXT, text))
    fin, op, data, _ = wsl.FrameReader(c).read(5)
    return op, data


def test_websocket_tunnels_across_reload(tmp_path, ws_backend, start_portico):
    port = lib.free_port()

    def conf(with_gone):
        gone = "location /gone/ { proxy_pass app2; }" if with_gone else ""
        return lib.make_conf(tmp_path, """upstream app { server %s; }
upstream app2 { server %s; }
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
    %s
}
""" % (ws_backend.addr, ws_backend.addr, port, gone), workers=2)

    p = start_portico(conf(True), [port])
    kept = [ws_open(port, "/echo") for _ in range(3)]
    gone = ws_open(port, "/gone/echo")
    for c in kept + [gone]:
        assert ws_echo(c, "before") == (wsl.OP_TEXT, b"before")
    reload_with(p, conf(False), 1)
    # the tunnel whose location is gone hears 1001
    fin, op, data, masked = wsl.FrameReader(gone).read(5)
    assert op == wsl.OP_CLOSE and wsl.close_code_of(data) == 1001, (op, data)
    gone.close()
    # the others run on, through the reload and another one
    for c in kept:
        assert ws_echo(c, "after") == (wsl.OP_TEXT, b"after")
    reload_with(p, conf(False) + "# again\n", 2)
    for c in kept:
        assert ws_echo(c, "after two") == (wsl.OP_TEXT, b"after two")
        c.close()
    assert "its route is gone after the reload" in p.read(p.error_log)


def test_pid_file_and_signal_option(tmp_path, start_backend, start_portico):
    b1, b2 = start_backend("b1"), start_backend("b2")
    port = lib.free_port()
    pid_path = str(tmp_path / "portico.pid")
    p = start_portico(conf_two(tmp_path, port, b1, main_extra="pid %s;" % pid_path), [port])
    # written once portico is ready, which is a moment after its port accepts
    lib.wait_until(lambda: os.path.exists(pid_path), 5, what="the pid file")
    with open(pid_path) as f:
        assert f.read() == "%d\n" % p.pid
    rewrite(p, conf_two(tmp_path, port, b2, main_extra="pid %s;" % pid_path))
    rc, out = lib.run_portico(["-c", p.conf_path, "-s", "reload"])
    assert rc == 0, out
    reloaded(p, 1)
    assert lib.curl(p.url("/")).body == b"b2"
    # errors: an unknown signal name; a configuration without `pid`
    rc, out = lib.run_portico(["-c", p.conf_path, "-s", "bounce"])
    assert rc == 2 and "unknown signal \"bounce\"" in out, out
    nopid = str(tmp_path / "nopid.conf")
    with open(nopid, "w") as f:
        f.write(conf_two(tmp_path, port, b1))
    rc, out = lib.run_portico(["-c", nopid, "-s", "reload"])
    assert rc == 1 and "no \"pid\" directive" in out, out
    # stop: a graceful stop; the pid file goes with the process
    rc, out = lib.run_portico(["-c", p.conf_path, "-s", "stop"])
    assert rc == 0, out
    assert p.wait_exit(10) == 0
    assert not os.path.exists(pid_path)


def test_reload_keeps_process_settings(tmp_path, start_backend, start_portico):
    b1 = start_backend("b1")
    port = lib.free_port()
    p = start_portico(conf_two(tmp_path, port, b1, workers=2), [port])
    log = reload_with(p, conf_two(tmp_path, port, b1, workers=3), 1)
    assert "reload: workers 3 needs a restart; keeping 2" in log
    assert "reloaded: configuration generation 2" in log
    assert p.proc.poll() is None
    assert p.threads() == 3  # main and the 2 workers it kept
    assert lib.curl(p.url("/")).body == b"b1"


@pytest.mark.hard_timeout(60)
def test_sigterm_lets_downloads_complete(tmp_path, start_backend, start_portico, certs):
    b1 = start_backend("b1")
    port, tport = lib.free_port(), lib.free_port()
    conf = lib.make_conf(tmp_path, """upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    listen 127.0.0.1:%d tls;
    tls_certificate %s;
    tls_certificate_key %s;
    location / { proxy_pass app; }
}
""" % (b1.addr, port, tport, certs.localhost, certs.localhost_key), shutdown_timeout="20s",
        access_log="off", error_level="debug")
    p = start_portico(conf, [port, tport], shutdown_timeout=20)
    n = 60 * lib.MiB
    url = "http://127.0.0.1:%d/bytes/%d" % (port, n)
    turl = "https://localhost:%d/bytes/%d" % (tport, n)
    base = ["curl", "-s", "-o", "/dev/null", "--limit-rate", "20M", "-w",
            "%{http_code} %{size_download} %{http_version}"]
    runs = {
        "h1": base + [url],
        "h2c": base + ["--http2-prior-knowledge", url],
        "h2-tls": base + ["--http2", "--cacert", certs.ca, "--resolve",
                          "localhost:%d:127.0.0.1" % tport, turl],
    }
    procs = {k: subprocess.Popen(v, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, v in runs.items()}
    # SIGTERM once every download is under way
    lib.wait_until(lambda: b1.stats()["requests"] >= 3, 5, what="three downloads started")
    time.sleep(0.5)
    p.signal(signal.SIGTERM)
    for k, proc in procs.items():
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (k, proc.returncode, err)
        code, size, ver = out.decode().split()
        assert (code, int(size)) == ("200", n), (k, out)
        assert ver == ("1.1" if k == "h1" else "2"), (k, ver)
    assert p.wait_exit(10) == 0


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("proto", ["h2c", "h1"])
def test_sigterm_with_a_stalled_download_waits_for_it(tmp_path, start_backend, start_portico,
                                                       proto):
    """SIGTERM while a download is held by its client (curl stopped with SIGSTOP: the HTTP/2
    window or the socket buffers fill, the backend is paused): the worker waits for it (its
    loop is kept by the drain deadline, not by the connections' own watchers), curl then goes
    on and gets the whole body, and portico exits 0 as soon as it is done (not at the
    deadline)."""
    b1 = start_backend("b1")
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """upstream app { server %s; }
server { listen 127.0.0.1:%d; location / { proxy_pass app; } }
""" % (b1.addr, port), shutdown_timeout="20s", access_log="off")
    p = start_portico(conf, [port], shutdown_timeout=20)
    n = 64 * lib.MiB
    out = str(tmp_path / "body")
    args = ["curl", "-s", "--limit-rate", "16M", "-o", out, "-w", "%{http_code} %{size_download}"]
    if proto == "h2c":
        args.append("--http2-prior-knowledge")
    c = subprocess.Popen(args + ["http://127.0.0.1:%d/bytes/%d" % (port, n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lib.wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 0, 10,
                       what="the download under way")
        os.kill(c.pid, signal.SIGSTOP)
        time.sleep(1.0)  # every buffer on the way fills; portico waits on the client
        p.signal(signal.SIGTERM)
        time.sleep(1.5)  # everything else has drained by now
        assert p.proc.poll() is None, "portico left while a download was in flight"
    finally:
        os.kill(c.pid, signal.SIGCONT)
    stdout, stderr = c.communicate(timeout=30)
    assert c.returncode == 0, (c.returncode, stderr)
    assert stdout.decode().split() == ["200", str(n)], stdout
    assert lib.file_sha256(out) == lib.pattern_sha256(n)
    assert p.wait_exit(10) == 0
