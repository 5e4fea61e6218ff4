"""Basic authentication (auth_basic, auth_basic_user_file) with real clients: curl -u over
HTTP/1.1 and HTTP/2 against files made by htpasswd -B (bcrypt), openssl passwd -6 (SHA-512
crypt) and mkpasswd -m sha-256 (SHA-256 crypt); 401 with WWW-Authenticate; plaintext and
unknown schemes refused with a warning at load; failures logged without the password;
nginx's choice kept: the Authorization field reaches the backend."""

import json
import re
import subprocess

import pytest

import portico_testlib as lib
from accessutil import CLIENTS, error_log, get, metric, start

USERS = {"alice": "s3cret-a", "bob": "s3cret-b", "carol": "s3cret-c"}


def user_file(tmp_path):
    path = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(path), "alice", USERS["alice"]],
                   check=True, capture_output=True)
    h6 = subprocess.run(["openssl", "passwd", "-6", USERS["bob"]], check=True,
                        capture_output=True, text=True).stdout.strip()
    h5 = subprocess.run(["mkpasswd", "-m", "sha-256", USERS["carol"]], check=True,
                        capture_output=True, text=True).stdout.strip()
    apr1 = subprocess.run(["openssl", "passwd", "-apr1", "x"], check=True,
                          capture_output=True, text=True).stdout.strip()
    with open(path, "a") as f:
        f.write("# comment\n\nbob:%s:Bob B\ncarol:%s\ndave:plaintext-pw\nerin:%s\n"
                % (h6, h5, apr1))
    return path


def conf_locations(path):
    return """
    location / {
        auth_basic "Test \\"Realm\\"";
        auth_basic_user_file %s;
        proxy_pass app;
    }
    location /name { auth_basic off; proxy_pass app; }
""" % path


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_auth_basic(tmp_path, start_backend, start_portico, client):
    path = user_file(tmp_path)
    p, b = start(tmp_path, start_backend, start_portico, locations=conf_locations(path))
    # no credentials: 401 that says where it came from, with the challenge
    r = get(p, "/headers", client)
    assert r.status == 401, r
    assert r.header("www-authenticate") == 'Basic realm="Test \\"Realm\\"", charset="UTF-8"', r
    assert b"portico" in r.body and "http_request_denied" in r.header("proxy-status"), r
    # each scheme, and the same user again (from the worker's cache)
    for user in ("alice", "bob", "carol", "alice", "bob"):
        r = get(p, "/headers", client, "-u", "%s:%s" % (user, USERS[user]))
        assert r.status == 200, (user, r)
        # nginx's behaviour: the backend gets the Authorization field
        seen = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
        assert seen["authorization"].startswith("Basic "), seen
    # wrong password, unknown user, a disabled plaintext or apr1 line, garbage
    for cred in ("alice:badpass-77", "zed:x", "dave:plaintext-pw", "erin:x"):
        r = get(p, "/headers", client, "-u", cred)
        assert r.status == 401, (cred, r)
    r = get(p, "/headers", client, "-H", "Authorization: Basic !!!notbase64")
    assert r.status == 401, r
    r = get(p, "/headers", client, "-H", "Authorization: Bearer abc")
    assert r.status == 401, r
    # auth_basic off in a location
    r = get(p, "/name", client)
    assert r.status == 200, r
    log = error_log(p)
    assert 'failed: wrong password (user "alice")' in log, log
    assert 'failed: unknown user (user "zed")' in log, log
    assert "failed: no credentials" in log
    assert re.search(r"auth_basic at \S+\.conf:\d+", log), log
    # never a password
    for pw in list(USERS.values()) + ["badpass-77", "plaintext-pw"]:
        assert pw not in log, pw
    assert metric(p, "portico_http_requests_denied_total", reason="auth") == 7


def test_auth_basic_behind_limit_req(tmp_path, start_backend, start_portico):
    """Limits run first (nginx's preaccess phase): a client guessing passwords is refused by
    limit_req before any hash is computed."""
    path = user_file(tmp_path)
    p, b = start(tmp_path, start_backend, start_portico,
                 main="limit_req_zone $binary_remote_addr zone=guess:64k rate=1r/m;",
                 locations=conf_locations(path).replace(
                     "proxy_pass app;\n    }", "proxy_pass app;\n        limit_req zone=guess "
                     "burst=1 nodelay;\n    }", 1))
    got = [get(p, "/headers", "h1", "-u", "alice:guess%d" % i).status for i in range(4)]
    assert got == [401, 401, 429, 429], got
    assert metric(p, "portico_http_requests_denied_total", reason="auth") == 2
    # a good password is refused too while the client is over the limit
    assert get(p, "/headers", "h1", "-u", "alice:" + USERS["alice"]).status == 429


def test_auth_basic_load_warnings_and_errors(tmp_path):
    path = user_file(tmp_path)
    body = """upstream app { server 127.0.0.1:9; }
server { listen 127.0.0.1:%d;
%s
}
""" % (lib.free_port(), conf_locations(path))
    conf = tmp_path / "t.conf"
    conf.write_text(lib.make_conf(tmp_path, body))
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc == 0, out
    lines = path.read_text().splitlines()
    dave = 1 + next(i for i, l in enumerate(lines) if l.startswith("dave:"))
    erin = 1 + next(i for i, l in enumerate(lines) if l.startswith("erin:"))
    assert '%s:%d: user "dave" has a plaintext password' % (path, dave) in out, out
    assert '%s:%d: user "erin" has a hash scheme portico does not accept' % (path, erin) in out
    assert "plaintext-pw" not in out, out
    # auth_basic without a user file; a missing file
    conf.write_text(lib.make_conf(tmp_path, body.replace("auth_basic_user_file %s;" % path, "")))
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc != 0 and '"auth_basic" without "auth_basic_user_file"' in out, out
    conf.write_text(lib.make_conf(tmp_path, body.replace(str(path), str(path) + ".none")))
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc != 0 and "cannot read" in out, out
