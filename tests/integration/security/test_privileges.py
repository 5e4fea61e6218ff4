"""Privileges (docs/security.md, "Privileges"; docs/configuration.md, `user`).

Started as root with `user nobody`, portico binds, opens its logs and reads its keys as root,
then drops to nobody in every thread, with no capability left; its privileged helper keeps uid
0 with at most five capabilities and opens only what the configuration file names, which is
how a reload still reads a renewed key only root can read, binds a port below 1024, and how a
log reopen creates a file in a directory only root may write. Without `user`, root is refused
(`user root;` runs as root on purpose, with a warning); a process bounded like the shipped
systemd unit (uid 0, only CAP_NET_BIND_SERVICE) runs without `user`, and cannot switch users
with it. These tests need root (they skip otherwise) and the `nobody` user."""

import ctypes
import os
import re
import shutil
import signal
import socket
import threading
import ssl
import struct
import subprocess
import tempfile

import pytest

import portico_testlib as lib

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="privilege tests need root")

NOBODY = 65534
# the capabilities the helper may keep: CAP_DAC_OVERRIDE (1), CAP_DAC_READ_SEARCH (2),
# CAP_SETGID (6), CAP_SETUID (7) (for a binary upgrade's new process), CAP_NET_BIND_SERVICE (10)
HELPER_CAPS = (1 << 1) | (1 << 2) | (1 << 6) | (1 << 7) | (1 << 10)
SETPRIV_UNIT = ["setpriv", "--bounding-set", "-all,+net_bind_service", "--inh-caps", "-all"]


def conf(tmp_path, body, user="user nobody;", workers=2, extra=""):
    return lib.make_conf(tmp_path, body, workers=workers,
                         main_extra="\n".join(x for x in (user, extra) if x))


def plain_server(port, text="ok"):
    return """server {
    listen 127.0.0.1:%d;
    location / { return 200 "%s\\n"; }
}
""" % (port, text)


def status(pid, task=None):
    """The fields of /proc/PID/status (or of one of its threads) as a dict of strings."""
    path = "/proc/%d/status" % pid if task is None else "/proc/%d/task/%s/status" % (pid, task)
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def ids(field):
    return [int(x) for x in field.split()]


def helper_of(pid):
    """The pid of portico's privileged helper: its child named portico-priv."""
    def find():
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                st = status(int(d))
            except OSError:
                continue
            if st.get("PPid") == str(pid) and st.get("Name") == "portico-priv":
                return int(d)
        return None
    return lib.wait_until(find, 5, what="portico's privileged helper")


def wait_log(p, text, timeout=5.0):
    """Waits for text in the error log; returns the log."""
    lib.wait_until(lambda: text in p.read(p.error_log), timeout,
                   what="%r in the error log" % text)
    return p.read(p.error_log)


def reloaded(p, n):
    lib.wait_until(lambda: len(re.findall(r"reloaded: configuration generation|reload failed",
                                          p.read(p.error_log))) >= n,
                   10, what="reload #%d" % n)
    log = p.read(p.error_log)
    assert "reload failed" not in log, log
    return log


def private_copy(tmp_path, src, name):
    """A copy of src only root can read: mode 0600 in tmp_path (mode 0700, root's)."""
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


def tls_server(port, cert, key):
    return """server {
    listen 127.0.0.1:%d tls;
    server_name localhost;
    tls_certificate %s;
    tls_certificate_key %s;
    location / { return 200 "tls\\n"; }
}
""" % (port, cert, key)


# ---- the drop -----------------------------------------------------------------------------

def test_user_drops_every_thread_and_keeps_no_capability(tmp_path, start_portico):
    port = lib.free_port()
    p = start_portico(conf(tmp_path, plain_server(port), workers=2), [port])
    assert lib.curl(p.url("/")).status == 200
    tasks = os.listdir("/proc/%d/task" % p.pid)
    assert len(tasks) >= 3, tasks  # main + 2 workers
    for t in [None] + tasks:
        st = status(p.pid, t)
        assert ids(st["Uid"]) == [NOBODY] * 4, (t, st["Uid"])  # real, effective, saved, fs
        assert ids(st["Gid"]) == [NOBODY] * 4, (t, st["Gid"])
        assert ids(st["Groups"]) == [NOBODY], (t, st["Groups"])
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(st[cap], 16) == 0, (t, cap, st[cap])
    assert "running as user nobody (uid 65534, gid 65534" in p.read(p.error_log)
    # not dumpable: its /proc entries stay root's, so another process running as nobody can
    # neither attach to it nor take its descriptors (the channel to the helper)
    assert os.stat("/proc/%d/fd" % p.pid).st_uid == 0


def test_helper_keeps_root_with_five_capabilities_and_no_socket_of_portico(tmp_path,
                                                                         start_portico):
    port = lib.free_port()
    p = start_portico(conf(tmp_path, plain_server(port)), [port])
    h = helper_of(p.pid)
    st = status(h)
    assert ids(st["Uid"])[:3] == [0, 0, 0], st["Uid"]
    assert int(st["CapEff"], 16) & ~HELPER_CAPS == 0, st["CapEff"]
    assert int(st["CapPrm"], 16) & ~HELPER_CAPS == 0, st["CapPrm"]
    assert int(st["CapBnd"], 16) & ~HELPER_CAPS == 0, st["CapBnd"]
    assert st["NoNewPrivs"] == "1", st
    # none of portico's listening sockets: one socket, its end of the channel
    sockets = [os.readlink("/proc/%d/fd/%s" % (h, fd)) for fd in os.listdir("/proc/%d/fd" % h)]
    assert len([s for s in sockets if s.startswith("socket:")]) == 1, sockets


def test_workers_check_their_own_credentials(tmp_path, start_portico):
    # debug-level proof is not needed: a worker whose credentials were not the dropped ones
    # would exit the process; here every worker serves
    port = lib.free_port()
    p = start_portico(conf(tmp_path, plain_server(port), workers=2), [port])
    for _ in range(8):
        assert lib.curl(p.url("/")).status == 200
    assert p.proc.poll() is None


# ---- refusing root, and root on purpose -------------------------------------------------------

def run_to_exit(tmp_path, text, wrap=(), timeout=10):
    path = tmp_path / "run.conf"
    path.write_text(text)
    r = subprocess.run(list(wrap) + [lib.PORTICO_BIN, "-c", str(path)], capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if status(int(d)).get("PPid") == str(pid):
                    out.append(int(d))
            except OSError:
                continue
    return out


def test_root_without_user_runs_as_root_as_before(tmp_path, start_portico):
    # without `user` nothing changes: root in every thread, no helper, reloads as before;
    # one notice says how to drop
    port = lib.free_port()
    p = start_portico(conf(tmp_path, plain_server(port), user=""), [port])
    assert lib.curl(p.url("/")).status == 200
    for t in [None] + os.listdir("/proc/%d/task" % p.pid):
        assert ids(status(p.pid, t)["Uid"]) == [0] * 4, t
    assert children(p.pid) == []
    low = free_low_port()
    p.write_conf(conf(tmp_path, plain_server(port) + plain_server(low, "low"), user=""))
    p.signal(signal.SIGHUP)
    log = reloaded(p, 1)
    assert lib.curl("http://127.0.0.1:%d/" % low).body == b"low\n"
    assert re.search(r"\[notice\] main: running as root: \S+portico\.conf has no \"user\" "
                     r"directive", log), log
    assert "[warn]" not in log and "[error]" not in log, log
    assert children(p.pid) == []


def test_user_root_runs_as_root_with_a_warning(tmp_path, start_portico):
    port = lib.free_port()
    p = start_portico(conf(tmp_path, plain_server(port), user="user root;"), [port])
    assert lib.curl(p.url("/")).status == 200
    assert ids(status(p.pid)["Uid"])[1] == 0
    log = p.read(p.error_log)
    assert re.search(r"\[warn\] main: \S+portico\.conf:\d+:1: \"user root\": running as root "
                     r"on purpose", log), log


def test_bounded_root_like_the_systemd_unit_needs_no_user(tmp_path, start_portico):
    # uid 0 holding only CAP_NET_BIND_SERVICE (CapabilityBoundingSet= in the shipped unit)
    port = lib.free_port()
    p = start_portico(lib.make_conf(tmp_path, plain_server(port)), [port],
                      wrap=SETPRIV_UNIT)
    assert lib.curl(p.url("/")).status == 200
    assert int(status(p.pid)["CapEff"], 16) == 1 << 10
    assert "running as uid 0 with no capability but CAP_NET_BIND_SERVICE" in \
        p.read(p.error_log)


def test_bounded_root_with_setuid_and_setgid_drops_like_the_documented_drop_in(
        tmp_path, start_portico):
    # CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID (docs/operations.md)
    port = lib.free_port()
    p = start_portico(conf(tmp_path, plain_server(port)), [port],
                      wrap=["setpriv", "--bounding-set", "-all,+net_bind_service,+setuid,+setgid",
                            "--inh-caps", "-all"])
    assert lib.curl(p.url("/")).status == 200
    for t in os.listdir("/proc/%d/task" % p.pid):
        st = status(p.pid, t)
        assert ids(st["Uid"]) == [NOBODY] * 4 and int(st["CapEff"], 16) == 0, st
    assert int(status(helper_of(p.pid))["CapEff"], 16) == (1 << 10) | (1 << 7) | (1 << 6)


def test_configuration_writable_by_the_user_is_warned_about(tmp_path):
    # what the file names is what the helper opens: a directory nobody may write to is a hole
    port = lib.free_port()
    # (not under pytest's directories, which are root's alone all the way down)
    open_dir = tempfile.mkdtemp(prefix="pt-open-", dir="/tmp")
    os.chmod(open_dir, 0o1777)
    p = lib.Portico(open_dir, conf(open_dir, plain_server(port)), [port])
    try:
        wait_log(p, "%s (or its directory) is writable by user nobody" % p.conf_path)
        # the logs it names are there too: a link put in their place would point the helper
        # elsewhere on a log reopen
        wait_log(p, "%s holds a file the configuration names and is writable by user nobody"
                 % open_dir)
    finally:
        assert p.stop() == 0
        shutil.rmtree(open_dir)
    # and none where only root may write
    q = lib.Portico(str(tmp_path), conf(tmp_path, plain_server(port)), [port], name="closed")
    try:
        wait_log(q, "running as user nobody")
        assert "writable by user" not in q.read(q.error_log).split("closed.conf")[-1]
    finally:
        assert q.stop() == 0


def test_drop_without_setuid_capability_fails_clearly(tmp_path):
    port = lib.free_port()
    text = "error_log stderr;\nuser nobody;\n" + plain_server(port)
    rc, out = run_to_exit(tmp_path, text, wrap=SETPRIV_UNIT)
    assert rc == 1, out
    assert "cannot switch to user nobody: setgroups(): Operation not permitted (the process " \
           "lacks CAP_SETUID/CAP_SETGID" in out, out
    assert "started" not in out, out


# ---- `portico -t` ------------------------------------------------------------------------------

@pytest.mark.parametrize("line,col,word", [
    ("user no-such-user-pt;", 6, "unknown user \"no-such-user-pt\""),
    ("user nobody no-such-group-pt;", 13, "unknown group \"no-such-group-pt\""),
])
def test_user_unknown_name_fails_the_check(tmp_path, line, col, word):
    path = tmp_path / "t.conf"
    path.write_text("workers 1;\n%s\n%s" % (line, plain_server(lib.free_port())))
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc == 1, out
    assert "%s:2:%d: %s in \"user\"" % (path, col, word) in out, out


def test_user_duplicate_fails_the_check(tmp_path):
    path = tmp_path / "t.conf"
    path.write_text("user nobody;\nuser nobody;\n" + plain_server(lib.free_port()))
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc == 1 and "t.conf:2:1: \"user\" directive is duplicate" in out, out


# ---- after the drop: reloads and log reopens that need root ---------------------------------

@pytest.mark.hard_timeout(60)
def test_reload_reads_renewed_certificate_only_root_can_read(tmp_path, start_portico, certs):
    port = lib.free_port()
    cert = private_copy(tmp_path, certs.localhost, "site.pem")
    key = private_copy(tmp_path, certs.localhost_key, "site.key")
    p = start_portico(conf(tmp_path, tls_server(port, cert, key)), [port])
    assert served_cert_der(port) == file_cert_der(certs.localhost)
    # renewal: new files in place, still root's alone; nobody cannot open them
    private_copy(tmp_path, certs.other_localhost, "site.pem")
    private_copy(tmp_path, certs.other_localhost_key, "site.key")
    p.signal(signal.SIGHUP)
    reloaded(p, 1)
    lib.wait_until(lambda: served_cert_der(port) == file_cert_der(certs.other_localhost), 5,
                   what="the renewed certificate served")


@pytest.mark.hard_timeout(60)
def test_reload_reads_a_new_key_path_the_new_configuration_names(tmp_path, start_portico,
                                                                 certs):
    # a file the configuration did not name at startup: the helper reads the file again first
    port = lib.free_port()
    cert = private_copy(tmp_path, certs.localhost, "old.pem")
    key = private_copy(tmp_path, certs.localhost_key, "old.key")
    p = start_portico(conf(tmp_path, tls_server(port, cert, key)), [port])
    cert2 = private_copy(tmp_path, certs.other_localhost, "new.pem")
    key2 = private_copy(tmp_path, certs.other_localhost_key, "new.key")
    p.write_conf(conf(tmp_path, tls_server(port, cert2, key2)))
    p.signal(signal.SIGHUP)
    reloaded(p, 1)
    lib.wait_until(lambda: served_cert_der(port) == file_cert_der(certs.other_localhost), 5,
                   what="the certificate at the new path served")


@pytest.mark.hard_timeout(60)
def test_reload_reads_ticket_key_files_only_root_can_read(tmp_path, start_portico, certs):
    port = lib.free_port()
    cert = private_copy(tmp_path, certs.localhost, "site.pem")
    key = private_copy(tmp_path, certs.localhost_key, "site.key")
    ticket = tmp_path / "ticket.key"
    ticket.write_bytes(os.urandom(80))
    os.chmod(str(ticket), 0o600)
    p = start_portico(conf(tmp_path, tls_server(port, cert, key),
                           extra="tls_session_ticket_key %s;" % ticket), [port])
    ticket.write_bytes(os.urandom(80))  # rotated
    os.chmod(str(ticket), 0o600)
    p.signal(signal.SIGHUP)
    reloaded(p, 1)  # (without the helper: "cannot open tls_session_ticket_key ...")
    assert served_cert_der(port) == file_cert_der(certs.localhost)


def free_low_port():
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


def tell(p, how, sig):
    """The signal to portico: sent directly, or with `portico -s NAME` (through the pid file
    the helper wrote)."""
    if how == "signal":
        p.signal(sig)
        return
    rc, out = lib.run_portico(["-c", p.conf_path, "-s", how.split()[1]])
    assert rc == 0, out


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("how", ["signal", "-s reload"])
def test_reload_adds_a_port_below_1024(tmp_path, start_portico, how):
    port = lib.free_port()
    pid = "pid %s;" % (tmp_path / "portico.pid")
    p = start_portico(conf(tmp_path, plain_server(port, "one"), extra=pid), [port])
    lib.wait_until(lambda: (tmp_path / "portico.pid").exists(), 5, what="the pid file")
    low = free_low_port()
    p.write_conf(conf(tmp_path, plain_server(port, "one") + plain_server(low, "low"),
                      extra=pid))
    tell(p, how, signal.SIGHUP)
    log = reloaded(p, 1)
    assert "listening on 127.0.0.1:%d" % low in log, log
    r = lib.curl("http://127.0.0.1:%d/" % low)
    assert (r.status, r.body) == (200, b"low\n")
    # the process that serves it is still nobody
    assert ids(status(p.pid)["Uid"])[1] == NOBODY


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("how", ["signal", "-s reopen"])
def test_log_reopen_and_pid_file_in_a_directory_only_root_may_write(tmp_path, start_portico,
                                                                    how):
    port = lib.free_port()
    pid_path = tmp_path / "portico.pid"
    p = start_portico(conf(tmp_path, plain_server(port), extra="pid %s;" % pid_path), [port])
    assert os.stat(str(tmp_path)).st_mode & 0o077 == 0  # pytest's: root's alone
    lib.wait_until(lambda: pid_path.exists() and pid_path.read_text() == "%d\n" % p.pid, 5,
                   what="the pid file")
    assert lib.curl(p.url("/first")).status == 200
    lib.wait_until(lambda: "/first" in p.read(p.access_log), 5, what="the first access line")
    os.rename(p.access_log, p.access_log + ".1")
    os.rename(p.error_log, p.error_log + ".1")
    tell(p, how, signal.SIGUSR1)
    lib.wait_until(lambda: "log files reopened" in p.read(p.error_log), 5,
                   what="a new error log")
    assert lib.curl(p.url("/second")).status == 200
    lib.wait_until(lambda: "/second" in p.read(p.access_log), 5,
                   what="the second access line in a new file")
    assert "/second" not in p.read(p.access_log + ".1")
    assert p.stop() == 0
    assert not pid_path.exists()


def test_reload_keeps_the_running_user(tmp_path, start_portico):
    port = lib.free_port()
    p = start_portico(conf(tmp_path, plain_server(port)), [port])
    p.write_conf(conf(tmp_path, plain_server(port), user="user root;"))
    p.signal(signal.SIGHUP)
    log = reloaded(p, 1)
    assert "reload: user root needs a restart; keeping user nobody" in log, log
    assert ids(status(p.pid)["Uid"])[1] == NOBODY


# ---- the helper against a hostile portico ----------------------------------------------------

# struct priv_req in src/core/priv.c: op, flags, addr_len, addr[128], path[4096]
REQ = struct.Struct("=III128s4096s")
OPEN_READ, OPEN_APPEND, BIND, RESCAN, PID_WRITE = 1, 2, 3, 4, 5
EPERM, EINVAL = 1, 22


def seqpacket_inodes():
    out = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[4] == "0005":  # SOCK_SEQPACKET
                out.add(cols[6])
    return out


def steal_channel(pid):
    """portico's end of the channel to its helper, duplicated into this process (what code
    running inside a taken-over portico could use)."""
    seq = seqpacket_inodes()
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.fullmatch(r"socket:\[(\d+)\]", link)
            if m and m.group(1) in seq:
                got = libc.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
                if got < 0:
                    pytest.skip("pidfd_getfd: errno %d" % ctypes.get_errno())
                return socket.socket(fileno=got)
    finally:
        os.close(pidfd)
    raise AssertionError("no SOCK_SEQPACKET descriptor in portico")


def ask(chan, op, path=b"", addr=b"", flags=0, raw=None):
    chan.send(raw if raw is not None else REQ.pack(op, flags, len(addr), addr, path))
    chan.settimeout(10)
    msg, anc, _, _ = chan.recvmsg(4, socket.CMSG_SPACE(4))
    err = struct.unpack("=i", msg)[0]
    fds = []
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.extend(struct.unpack("=%di" % (len(data) // 4), data))
    return err, fds


def sockaddr_in(port):
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + \
        socket.inet_aton("127.0.0.1") + b"\0" * 8


@pytest.mark.hard_timeout(60)
def test_helper_opens_only_what_the_configuration_names(tmp_path, start_portico, certs):
    port = lib.free_port()
    cert = private_copy(tmp_path, certs.localhost, "site.pem")
    key = private_copy(tmp_path, certs.localhost_key, "site.key")
    secret = private_copy(tmp_path, certs.ca_key, "not-named.key")
    p = start_portico(conf(tmp_path, tls_server(port, cert, key)), [port])
    chan = steal_channel(p.pid)
    try:
        # what the configuration names, in the mode it is used in: granted
        err, fds = ask(chan, OPEN_READ, key.encode())
        assert err == 0 and len(fds) == 1, (err, fds)
        with os.fdopen(fds[0], "rb") as f, open(key, "rb") as g:
            assert f.read() == g.read()
        err, fds = ask(chan, BIND, addr=sockaddr_in(port), flags=1)
        assert err == 0 and len(fds) == 1, (err, fds)
        os.close(fds[0])
        # anything else: refused, and said so in the log
        for op, path in ((OPEN_READ, b"/etc/shadow"), (OPEN_READ, secret.encode()),
                         (OPEN_APPEND, key.encode()), (OPEN_APPEND, b"/etc/passwd"),
                         (PID_WRITE, b"/etc/passwd"), (OPEN_READ, b"../" * 8 + b"etc/shadow")):
            assert ask(chan, op, path) == (EPERM, []), (op, path)
        assert ask(chan, BIND, addr=sockaddr_in(22), flags=1) == (EPERM, [])
        assert ask(chan, BIND, addr=sockaddr_in(port), flags=0xff) == (EPERM, [])
        assert ask(chan, 99, b"x") == (EINVAL, [])
        assert ask(chan, 0, raw=b"short") == (EINVAL, [])
        assert ask(chan, 0, raw=REQ.pack(OPEN_READ, 0, 0, b"", b"\x01" * 4096)) == (EINVAL, [])
        # still serving requests after all that
        err, fds = ask(chan, OPEN_READ, cert.encode())
        assert err == 0 and len(fds) == 1
        os.close(fds[0])
    finally:
        chan.close()
    log = wait_log(p, "privileged helper: refused to open for reading \"/etc/shadow\": "
                      "not named by %s" % p.conf_path)
    assert "refused to open for reading \"%s\"" % secret in log, log
    assert "refused to bind an address" in log, log
    assert "refused a request of 5 bytes" in log, log
    # portico itself serves on
    assert served_cert_der(port) == file_cert_der(certs.localhost)


UPGRADE, EBUSY = 7, 16


def ask_upgrade(chan, sock):
    """PRIV_UPGRADE with sock passed: (error, the new process's pid)."""
    chan.sendmsg([REQ.pack(UPGRADE, 0, 0, b"", b"")],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=i", sock.fileno()))])
    chan.settimeout(10)
    msg, _, _, _ = chan.recvmsg(8, socket.CMSG_SPACE(4))
    return struct.unpack("=ii", msg)


def gone(pid):
    try:
        return status(pid).get("State", "").startswith(("Z", "X"))
    except OSError:
        return True


@pytest.mark.hard_timeout(90)
def test_helper_starts_one_upgrade_at_a_time_and_it_drops_before_reading(tmp_path,
                                                                        start_portico):
    # a taken-over portico asks its helper for binary upgrades: the process started is root
    # only until it has loaded its configuration, and drops to nobody before it reads a byte
    # of what the (hostile) previous process sends; a second one while it runs is refused
    port = lib.free_port()
    p = start_portico(conf(tmp_path, plain_server(port)), [port])
    chan = steal_channel(p.pid)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    other, other_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        err, pid = ask_upgrade(chan, theirs)
        theirs.close()
        assert err == 0 and pid > 0, (err, pid)
        # it waits for the handoff on our socket, as nobody in every thread
        lib.wait_until(lambda: all(ids(status(pid, t)["Uid"]) == [NOBODY] * 4
                                   for t in os.listdir("/proc/%d/task" % pid)), 15,
                       what="the upgrade's process running as nobody before the handoff")
        assert not gone(pid)
        assert ask_upgrade(chan, other_theirs)[0] == EBUSY
        # once it is gone (no handoff came), the next one may start
        ours.close()
        lib.wait_until(lambda: gone(pid), 15, what="the upgrade's process gone")
        err, pid2 = ask_upgrade(chan, other_theirs)
        assert err == 0 and pid2 > 0 and pid2 != pid, (err, pid2)
        other.close()
        lib.wait_until(lambda: gone(pid2), 15, what="the second upgrade's process gone")
    finally:
        for s in (chan, ours, theirs, other, other_theirs):
            s.close()
    log = wait_log(p, "privileged helper: refused to start a binary upgrade: the process of "
                      "the previous one still runs")
    assert lib.curl(p.url("/")).status == 200, log


@pytest.mark.hard_timeout(60)
def test_stream_server_under_user_reload_adds_a_low_port_with_a_root_only_key(tmp_path,
                                                                            start_portico,
                                                                            certs):
    # layer 4 stream servers bind and read their keys like HTTP servers: a reload as nobody
    # adds a TLS stream listener below 1024 whose key only root can read
    port = lib.free_port()
    cert = private_copy(tmp_path, certs.localhost, "stream.pem")
    key = private_copy(tmp_path, certs.localhost_key, "stream.key")
    up = "upstream web { server 127.0.0.1:%d; }\n" % port
    p = start_portico(conf(tmp_path, up + plain_server(port, "via stream")), [port])
    low = free_low_port()
    p.write_conf(conf(tmp_path, up + plain_server(port, "via stream") + """stream {
    server {
        listen 127.0.0.1:%d tls;
        tls_certificate %s;
        tls_certificate_key %s;
        proxy_pass web;
    }
}
""" % (low, cert, key)))
    p.signal(signal.SIGHUP)
    log = reloaded(p, 1)
    assert "listening on 127.0.0.1:%d" % low in log, log
    assert served_cert_der(low) == file_cert_der(certs.localhost)
    r = lib.curl("https://localhost:%d/" % low, "-k", "--resolve",
                 "localhost:%d:127.0.0.1" % low)
    assert (r.status, r.body) == (200, b"via stream\n")
    assert ids(status(p.pid)["Uid"])[1] == NOBODY


def free_low_udp_port():
    for port in range(1023, 900, -1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free UDP port below 1024 on 127.0.0.1")


@pytest.mark.hard_timeout(60)
def test_udp_stream_server_under_user_reload_adds_a_low_port(tmp_path, start_portico):
    # a `listen ... udp` address below 1024 added by a reload as nobody: the privileged helper
    # binds a datagram socket (not a stream one) and datagrams are relayed both ways
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = echo.recvfrom(2048)
            except socket.timeout:
                continue
            echo.sendto(b"echo:" + data, peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        port = lib.free_port()
        up = "upstream udpecho { server 127.0.0.1:%d; }\n" % echo.getsockname()[1]
        p = start_portico(conf(tmp_path, up + plain_server(port, "one")), [port])
        low = free_low_udp_port()
        p.write_conf(conf(tmp_path, up + plain_server(port, "one") + """stream {
    server {
        listen 127.0.0.1:%d udp;
        proxy_pass udpecho;
    }
}
""" % low))
        p.signal(signal.SIGHUP)
        log = reloaded(p, 1)
        assert "privileged helper: refused" not in log, log
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(5)
        try:
            c.sendto(b"ping", ("127.0.0.1", low))
            data, src = c.recvfrom(2048)
        finally:
            c.close()
        assert (data, src) == (b"echo:ping", ("127.0.0.1", low))
        assert ids(status(p.pid)["Uid"])[1] == NOBODY
    finally:
        stop.set()
        t.join(2)
        echo.close()


# ---- symbolic links: root follows only root's -------------------------------------------

def link_owned_by(link, target, uid):
    os.symlink(target, link)
    os.lchown(link, uid, -1)


def root_only_file(tmp_path, name="secret"):
    path = tmp_path / name
    path.write_text("root's secret\n")
    os.chmod(str(path), 0o600)
    return path


@pytest.mark.parametrize("kind", ["error_log", "access_log", "tls_certificate_key"])
def test_start_refuses_a_path_through_a_link_the_user_made(tmp_path, kind, certs):
    """A user-owned link where root opens a file (CVE-2016-1247's attack on nginx's logs):
    portico refuses to start, names the link and its owner, and the target is untouched."""
    secret = root_only_file(tmp_path)
    d = tmp_path / "userdir"
    d.mkdir()
    os.chown(str(d), NOBODY, -1)
    link = d / "file"
    link_owned_by(str(link), str(secret), NOBODY)
    port = lib.free_port()
    body = plain_server(port)
    extra = ""
    if kind == "error_log":
        text = "user nobody;\nworkers 1;\nerror_log %s;\n" % link + body
    elif kind == "access_log":
        text = "user nobody;\nworkers 1;\naccess_log %s combined;\n" % link + body
    else:
        text = "user nobody;\nworkers 1;\n" + tls_server(port, certs.localhost, str(link))
    rc, out = run_to_exit(tmp_path, text)
    assert rc != 0, out
    assert ('symbolic link "file", owned by uid %d, not by root' % NOBODY) in out, out
    assert secret.read_text() == "root's secret\n"


def test_start_follows_links_root_made(tmp_path, start_portico, certs):
    """Root-owned links are followed as before (Let's Encrypt's live/ directory)."""
    live = tmp_path / "live"
    live.mkdir()
    os.symlink(certs.localhost, str(live / "cert.pem"))
    os.symlink(certs.localhost_key, str(live / "key.pem"))
    logs = tmp_path / "logs"
    logs.mkdir()
    real = tmp_path / "real-error.log"
    os.symlink(str(real), str(logs / "error.log"))
    port = lib.free_port()
    text = "error_log %s info;\n" % (logs / "error.log")
    p = start_portico(conf(tmp_path, tls_server(port, str(live / "cert.pem"),
                                                str(live / "key.pem")), extra=text), [port])
    assert served_cert_der(port) == file_cert_der(certs.localhost)
    lib.wait_until(lambda: real.exists() and "started" in real.read_text(), 5,
                   what="the log through the root-owned link")
    assert p.stop() == 0


@pytest.mark.hard_timeout(60)
def test_reopen_refuses_a_log_the_user_replaced_by_a_link(tmp_path, start_portico):
    """The dropped process's log directory is the user's: replacing the log by a link to a
    root-only file before a reopen must not make the helper append to that file."""
    secret = root_only_file(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chown(str(logs), NOBODY, -1)
    log = logs / "access.log"
    port = lib.free_port()
    text = "user nobody;\nworkers 1;\nerror_log %s info;\naccess_log %s combined;\n" % (
        tmp_path / "error.log", log) + plain_server(port)
    p = start_portico(text, [port])
    assert lib.curl(p.url("/first")).status == 200
    lib.wait_until(lambda: log.exists() and "/first" in log.read_text(), 5,
                   what="the first access line")
    os.rename(str(log), str(log) + ".1")
    link_owned_by(str(log), str(secret), NOBODY)
    p.signal(signal.SIGUSR1)
    out = wait_log(p, "not by root")
    assert 'symbolic link "access.log", owned by uid %d' % NOBODY in out, out
    assert lib.curl(p.url("/second")).status == 200
    assert secret.read_text() == "root's secret\n"
    assert p.stop() == 0
