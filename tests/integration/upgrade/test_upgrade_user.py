"""A binary upgrade of a portico that runs as `user` (docs/security.md, "Privileges";
docs/operations.md, "Binary upgrade"): the dropped process cannot start a root process itself,
so its privileged helper starts the new one, which reads its keys (only root can read them),
drops to the user in every thread and starts its own helper, through which it then reloads.
Needs root and the `nobody` user."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import portico_testlib as lib

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

NOBODY = 65534


def status(pid, task=None):
    path = "/proc/%d/status" % pid if task is None else "/proc/%d/task/%s/status" % (pid, task)
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def helper_of(pid):
    def find():
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    st = status(int(d))
                except OSError:
                    continue
                if st.get("PPid") == str(pid) and st.get("Name") == "portico-priv":
                    return int(d)
        return None
    return lib.wait_until(find, 5, what="the privileged helper of pid %d" % pid)


def private_copy(tmp_path, src, name):
    dst = os.path.join(str(tmp_path), name)
    shutil.copyfile(src, dst + ".new")
    os.chmod(dst + ".new", 0o600)
    os.rename(dst + ".new", dst)
    return dst


def served_cert_der(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def file_cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.mark.hard_timeout(90)
def test_upgrade_under_user_starts_root_then_drops_again(tmp_path, start_portico, upgrades,
                                                         certs):
    port = lib.free_port()
    cert = private_copy(tmp_path, certs.localhost, "site.pem")
    key = private_copy(tmp_path, certs.localhost_key, "site.key")
    conf = lib.make_conf(tmp_path, """server {
    listen 127.0.0.1:%d tls;
    server_name localhost;
    tls_certificate %s;
    tls_certificate_key %s;
    location / { return 200 "up\\n"; }
}
""" % (port, cert, key), workers=2, main_extra="user nobody;")
    p = start_portico(conf, [port])
    old_helper = helper_of(p.pid)
    s = upgrades.upgrade(p, p.pid)
    log = p.read(p.error_log)
    assert "privileged helper: started pid %d for a binary upgrade" % s.pid in log, log
    # the new process read the key only root can read, then dropped in every thread
    assert served_cert_der(port) == file_cert_der(certs.localhost)
    for t in [None] + os.listdir("/proc/%d/task" % s.pid):
        st = status(s.pid, t)
        assert [int(x) for x in st["Uid"].split()] == [NOBODY] * 4, (t, st["Uid"])
        assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, (t, st)
    new_helper = helper_of(s.pid)
    assert new_helper != old_helper
    assert [int(x) for x in status(new_helper)["Uid"].split()][:3] == [0, 0, 0]
    assert p.wait_exit(10) == 0
    lib.wait_until(lambda: not os.path.exists("/proc/%d" % old_helper) or
                   status(old_helper).get("State", "").startswith("Z"), 5,
                   what="the old helper gone with its portico")
    # the new process reloads a renewed key through its own helper
    n = log.count("reloaded: configuration generation")
    private_copy(tmp_path, certs.other_localhost, "site.pem")
    private_copy(tmp_path, certs.other_localhost_key, "site.key")
    s.signal(signal.SIGHUP)
    lib.wait_until(lambda: p.read(p.error_log).count("reloaded: configuration generation") > n,
                   10, what="the new process's reload")
    assert "reload failed" not in p.read(p.error_log)
    lib.wait_until(lambda: served_cert_der(port) == file_cert_der(certs.other_localhost), 5,
                   what="the renewed certificate")


def h2load_counts(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    assert m, text
    return [int(x) for x in m.groups()], text


def low_port():
    for port in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024 on 127.0.0.1")


@pytest.mark.hard_timeout(120)
def test_signal_option_upgrade_under_user_keeps_serving(tmp_path, start_portico, upgrades):
    # `portico -s upgrade` (root, reading the pid file the helper wrote in a directory only
    # root may write) while clients keep sending: none fails; the new configuration adds a port
    # below 1024, which the new process (dropped before it reads the handoff) binds through its
    # helper; it writes the pid file through that helper, runs as nobody, and `-s reload` then
    # adds another port below 1024
    port = lib.free_port()
    pid_path = tmp_path / "portico.pid"
    assert os.stat(str(tmp_path)).st_mode & 0o077 == 0  # pytest's: root's alone

    def conf(extra=""):
        return lib.make_conf(tmp_path, """server {
    listen 127.0.0.1:%d;
    location / { return 200 "up\\n"; }
}
%s""" % (port, extra), workers=2, main_extra="user nobody;\npid %s;" % pid_path,
            shutdown_timeout="10s")

    def low_server(low, text):
        return """server {
    listen 127.0.0.1:%d;
    location / { return 200 "%s\\n"; }
}
""" % (low, text)

    def rewrite(text):
        with open(p.conf_path + ".tmp", "w") as f:
            f.write(text)
        os.rename(p.conf_path + ".tmp", p.conf_path)

    p = start_portico(conf(), [port], shutdown_timeout=10)
    lib.wait_until(lambda: pid_path.exists() and pid_path.read_text() == "%d\n" % p.pid, 5,
                   what="the pid file")
    low1 = low_port()
    rewrite(conf(low_server(low1, "low1")))
    out = str(tmp_path / "h2load.out")
    with open(out, "w") as f:
        load = subprocess.Popen(["h2load", "--h1", "-c", "2", "-D", "5", p.url("/")],
                                stdout=f, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.5)
            rc, text = lib.run_portico(["-c", p.conf_path, "-s", "upgrade"])
            assert rc == 0, text
            new = upgrades.wait_upgraded(p, 1, shutdown_timeout=10)
        finally:
            load.wait(40)
    (done, ok, failed, errored, timeout), text = h2load_counts(out)
    assert done > 20 and (failed, errored, timeout) == (0, 0, 0), text
    assert p.wait_exit(15) == 0
    lib.wait_until(lambda: pid_path.read_text() == "%d\n" % new.pid, 5,
                   what="the pid file naming the new process")
    for t in [None] + os.listdir("/proc/%d/task" % new.pid):
        assert [int(x) for x in status(new.pid, t)["Uid"].split()] == [NOBODY] * 4, t
    assert lib.curl(p.url("/")).status == 200
    r = lib.curl("http://127.0.0.1:%d/" % low1)
    assert (r.status, r.body) == (200, b"low1\n")
    # the new process reloads through its helper: another port below 1024, as nobody
    low = low_port()
    n = p.read(p.error_log).count("reloaded: configuration generation")
    rewrite(conf(low_server(low1, "low1") + low_server(low, "low")))
    rc, text = lib.run_portico(["-c", p.conf_path, "-s", "reload"])
    assert rc == 0, text
    lib.wait_until(lambda: p.read(p.error_log).count("reloaded: configuration generation") > n,
                   10, what="the new process's reload")
    assert "reload failed" not in p.read(p.error_log)
    r = lib.curl("http://127.0.0.1:%d/" % low)
    assert (r.status, r.body) == (200, b"low\n")
