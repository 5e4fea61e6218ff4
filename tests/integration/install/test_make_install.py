"""`make install DESTDIR=...` from the configured source tree (docs/operations.md, "Installing"):

- installs the daemon in sbin, the configuration (portico.conf and portico.conf.default) in
  $(sysconfdir)/portico, portico(8) and portico.conf(5), the systemd unit and the docs;
- the installed configuration checks with the installed binary from / (no path in it is
  relative to the source tree) and serves: its demo answers on its port;
- the installed unit names the installed binary and configuration, and systemd-analyze verifies
  it (with those paths moved under DESTDIR); the template unit portico@.service too, an instance
  of it reading $(sysconfdir)/portico/NAME.conf, with every other setting portico.service's;
- the installed pages render with `man -l`;
- a second install keeps an edited portico.conf and rewrites portico.conf.default; uninstall
  removes every installed file but the edited portico.conf.

The paths are read from the Makefile, with a one-rule makefile added on make's command line.
Skipped when the tree is not configured (no Makefile) or portico is not up to date (make would
rebuild it under the other tests' feet).
"""

import fcntl
import os
import shutil
import subprocess
import tempfile

import pytest

import portico_testlib as lib

ROOT = lib.REPO


def make(*args, **kw):
    """make in the source tree, one at a time: pytest-xdist may run two of these tests at once,
    and both makes would write the same generated files (etc/portico.service)."""
    lock = os.path.join(tempfile.gettempdir(), "portico-test-make-install.lock")
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        return subprocess.run(["make", "-s", "-C", ROOT] + list(args), capture_output=True,
                              text=True, timeout=kw.pop("timeout", 300), **kw)


def make_var(name):
    r = make("-f", "Makefile", "-f", "-", "print-var", "VAR=" + name,
             input="print-var:\n\t@echo '$($(VAR))'\n", timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def newest_source():
    newest = 0.0
    for top in ("src", "modules"):
        for d, _, fs in os.walk(os.path.join(ROOT, top)):
            for f in fs:
                if f.endswith((".c", ".h")) and f != "modules.h":
                    newest = max(newest, os.path.getmtime(os.path.join(d, f)))
    return newest


@pytest.fixture(scope="module")
def tree():
    if not os.path.exists(os.path.join(ROOT, "portico")):
        pytest.skip("no portico in the source tree: run scripts/build.sh")
    if not os.path.exists(os.path.join(ROOT, "Makefile")):
        pytest.skip("the source tree is not configured (no Makefile): run scripts/build.sh")
    # (`make -q` and `make -n` are no use: automake's config.h rule always looks out of date)
    if newest_source() > os.path.getmtime(os.path.join(ROOT, "portico")):
        pytest.skip("portico is not up to date with its sources: rebuild first "
                    "(make install would relink it while other tests use it)")
    return {v: make_var(v) for v in ("sbindir", "sysconfdir", "mandir", "docdir",
                                      "systemdsystemunitdir")}


def under(dest, path):
    return os.path.join(str(dest), path.lstrip("/"))


@pytest.fixture
def installed(tmp_path, tree):
    dest = tmp_path / "dest"
    r = make("install", "DESTDIR=" + str(dest))
    assert r.returncode == 0, r.stdout + r.stderr
    return dest


@pytest.mark.hard_timeout(300)
def test_make_install_tree(installed, tree):
    files = sorted(os.path.relpath(os.path.join(d, f), str(installed))
                   for d, _, fs in os.walk(str(installed)) for f in fs)
    print("\n".join(files))
    rel = lambda p: p.lstrip("/")  # noqa: E731
    expect = [rel(tree["sbindir"] + "/portico"),
              rel(tree["sysconfdir"] + "/portico/portico.conf"),
              rel(tree["sysconfdir"] + "/portico/portico.conf.default"),
              rel(tree["mandir"] + "/man8/portico.8"),
              rel(tree["mandir"] + "/man5/portico.conf.5"),
              rel(tree["docdir"] + "/configuration.md"),
              rel(tree["docdir"] + "/operations.md"),
              rel(tree["docdir"] + "/examples/api-gateway.conf")]
    if tree["systemdsystemunitdir"]:
        expect.append(rel(tree["systemdsystemunitdir"] + "/portico.service"))
        expect.append(rel(tree["systemdsystemunitdir"] + "/portico@.service"))
    for f in expect:
        assert f in files, (f, files)
    assert os.access(under(installed, tree["sbindir"] + "/portico"), os.X_OK)
    # nothing from a test run or the build leaks into the install
    assert not [f for f in files if "__pycache__" in f or f.endswith((".o", ".a", ".in"))]


@pytest.mark.hard_timeout(300)
def test_installed_config_checks_from_root_and_serves(installed, tree, tmp_path):
    binary = under(installed, tree["sbindir"] + "/portico")
    conf = under(installed, tree["sysconfdir"] + "/portico/portico.conf")
    with open(conf) as f:
        text = f.read()
    # the demo's TLS lines are commented out: no certificate is installed
    assert "#TLS# listen 8443 tls;" in text and "etc/tls/" not in text.replace(
        tree["sysconfdir"] + "/portico/tls/", "")
    with open(conf + ".default") as f:
        assert f.read() == text
    r = subprocess.run([binary, "-t", "-c", conf], cwd="/", capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    # the compiled-in default is the configured path
    r = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=30)
    assert tree["sysconfdir"] + "/portico/portico.conf" in r.stdout
    # it serves: the shipped demo on free ports (its own 8080/9001/9002 may be taken here)
    port, b1, b2 = lib.free_port(), lib.free_port(), lib.free_port()
    text = (text.replace("listen 8080;", "listen 127.0.0.1:%d;" % port)
            .replace("listen [::1]:8080;", "")
            .replace("127.0.0.1:9001", "127.0.0.1:%d" % b1)
            .replace("127.0.0.1:9002", "127.0.0.1:%d" % b2)
            .replace("127.0.0.1:9009", "127.0.0.1:%d" % lib.free_port()))
    mine = tmp_path / "demo.conf"
    mine.write_text(text)
    out = open(str(tmp_path / "demo.out"), "wb")
    p = subprocess.Popen([binary, "-c", str(mine)], cwd="/", stdout=out,
                         stderr=subprocess.STDOUT)
    try:
        assert lib.wait_port("127.0.0.1", port, 5.0, p), open(str(tmp_path / "demo.out")).read()
        st, _, body = lib.raw_request("127.0.0.1", port, "GET", "/healthz")
        assert (st, body) == (200, b"ok\n")
        st, _, body = lib.raw_request("127.0.0.1", port, "GET", "/")
        assert st == 200 and body.startswith(b"hello from backend"), (st, body)
    finally:
        p.terminate()
        assert p.wait(10) == 0
        out.close()


@pytest.mark.hard_timeout(300)
def test_installed_unit_names_installed_paths(installed, tree, tmp_path):
    if not tree["systemdsystemunitdir"]:
        pytest.skip("configured --with-systemdsystemunitdir=no")
    unit = under(installed, tree["systemdsystemunitdir"] + "/portico.service")
    with open(unit) as f:
        text = f.read()
    assert "@" not in text.replace("$MAINPID", "")
    sbin, conf = tree["sbindir"] + "/portico", tree["sysconfdir"] + "/portico/portico.conf"
    assert "\nExecStart=%s -c %s\n" % (sbin, conf) in text
    assert "\nExecStartPre=%s -t -c %s\n" % (sbin, conf) in text
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    moved = tmp_path / "portico.service"
    moved.write_text(text.replace(sbin, under(installed, sbin))
                     .replace(conf, under(installed, conf)))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(moved)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def unit_settings(text):
    """(section, key, value) of each setting of a unit file, in order, comments left out."""
    out, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        out.append((section, key, value))
    return out


@pytest.mark.hard_timeout(300)
def test_installed_template_unit(installed, tree, tmp_path):
    """portico@.service: instance NAME runs `portico -c $(sysconfdir)/portico/NAME.conf`, with its
    own log and runtime directories; every other setting is portico.service's (a change to the one
    and not the other fails here); systemd-analyze verifies an instance of it."""
    if not tree["systemdsystemunitdir"]:
        pytest.skip("configured --with-systemdsystemunitdir=no")
    unitdir = under(installed, tree["systemdsystemunitdir"])
    with open(os.path.join(unitdir, "portico@.service")) as f:
        text = f.read()
    with open(os.path.join(unitdir, "portico.service")) as f:
        single = f.read()
    assert "@" not in text.replace("$MAINPID", "").replace("portico@", "")
    sbin = tree["sbindir"] + "/portico"
    conf = tree["sysconfdir"] + "/portico/%i.conf"
    assert "\nExecStart=%s -c %s\n" % (sbin, conf) in text
    assert "\nExecStartPre=%s -t -c %s\n" % (sbin, conf) in text
    own = {"Description", "ExecStart", "ExecStartPre", "LogsDirectory", "RuntimeDirectory"}
    mine = unit_settings(text)
    assert ("[Service]", "LogsDirectory", "portico/%i") in mine
    assert ("[Service]", "RuntimeDirectory", "portico-%i") in mine
    assert [s for s in mine if s[1] not in own] == \
        [s for s in unit_settings(single) if s[1] not in own]
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    moved = tmp_path / "units"
    moved.mkdir()
    (moved / "portico@.service").write_text(text.replace(sbin, under(installed, sbin)))
    for unit in ("portico@.service", "portico@edge.service"):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(moved / unit)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and not r.stderr.strip(), (unit, r.stderr)
    # the check is real: an instance of a template whose binary is missing fails it
    (moved / "portico@.service").write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(moved / "portico@edge.service")],
                       capture_output=True, text=True, timeout=60)
    if not os.path.exists(sbin):
        assert r.returncode != 0 and "portico@edge.service" in r.stderr, r.stderr


@pytest.mark.hard_timeout(300)
def test_installed_man_pages_render(installed, tree):
    if shutil.which("man") is None:
        pytest.skip("man is not installed (Debian package man-db)")
    for page, title in (("man8/portico.8", "PORTICO(8)"),
                        ("man5/portico.conf.5", "PORTICO.CONF(5)")):
        r = subprocess.run(["man", "-P", "cat", "-l", under(installed, tree["mandir"] + "/" +
                                                             page)],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MANWIDTH="80"))
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr
        assert r.stdout.startswith(title), r.stdout[:200]
        for section in ("NAME", "SEE ALSO"):
            assert "\n%s\n" % section in r.stdout
    # every directive heading of the reference is in portico.conf(5)
    r = subprocess.run(["man", "-P", "cat", "-l",
                        under(installed, tree["mandir"] + "/man5/portico.conf.5")],
                       capture_output=True, text=True, timeout=60)
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        headings = [line[4:].strip() for line in f if line.startswith("### ")]
    assert len(headings) > 60
    for h in headings:
        assert h.replace("`", "") in r.stdout, h


@pytest.mark.hard_timeout(300)
def test_reinstall_keeps_edited_config_and_uninstall_cleans(installed, tree):
    conf = under(installed, tree["sysconfdir"] + "/portico/portico.conf")
    with open(conf, "a") as f:
        f.write("# edited by the operator\n")
    r = make("install", "DESTDIR=" + str(installed))
    assert r.returncode == 0, r.stderr
    assert "keeping" in r.stdout
    with open(conf) as f:
        assert f.read().endswith("# edited by the operator\n")
    with open(conf + ".default") as f:
        assert "edited" not in f.read()
    r = make("uninstall", "DESTDIR=" + str(installed))
    assert r.returncode == 0, r.stderr
    left = [os.path.join(d, f) for d, _, fs in os.walk(str(installed)) for f in fs]
    assert left == [conf], left
    # without the edit, uninstall removes portico.conf too
    os.unlink(conf)
    r = make("install", "DESTDIR=" + str(installed))
    assert r.returncode == 0, r.stderr
    r = make("uninstall", "DESTDIR=" + str(installed))
    assert r.returncode == 0, r.stderr
    left = [os.path.join(d, f) for d, _, fs in os.walk(str(installed)) for f in fs]
    assert left == [], left
