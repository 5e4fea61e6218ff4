"""A binary upgrade of a portico that runs as `user` (docs/security.md, "Privileges";
docs/operations.md, "Binary upgrade"): the dropped process cannot start a root process itself,
so its privileged helper starts the new one, which reads its keys (only root can read them),
drops to the user in every thread and starts its own helper, through which it then reloads.
Needs root and the `nobody` user."""

import os
import shutil
import signal
import socket
import ssl

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
