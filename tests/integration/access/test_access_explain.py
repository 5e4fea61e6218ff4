"""portico explain shows the access phase of the location a request reaches: the limits in
effect, which allow / deny rule decides for the --from address (a deny is the answer), the
client-certificate requirement and basic authentication."""

import subprocess

import portico_testlib as lib


def explain(conf, *args):
    p = subprocess.run([lib.PORTICO_BIN, "explain", "-c", str(conf)] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def test_explain_access(tmp_path):
    users = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(users), "alice", "pw"], check=True,
                   capture_output=True)
    port = lib.free_port()
    conf = tmp_path / "p.conf"
    conf.write_text(lib.make_conf(tmp_path, """
limit_req_zone $binary_remote_addr zone=one:64k rate=5r/s;
limit_conn_zone $http_x_tenant zone=tenant:64k;
upstream app { server 127.0.0.1:9; }
server {
    listen 127.0.0.1:%d;
    allow 10.0.0.0/8;
    deny all;
    location / {
        proxy_pass app;
        limit_req zone=one burst=5 nodelay;
        limit_conn tenant 3;
        auth_basic "staff";
        auth_basic_user_file %s;
    }
}
""" % (port, users)))
    rc, out = explain(conf, "--from", "10.1.2.3", "GET http://localhost:%d/x" % port)
    assert rc == 0, out
    assert "limit_req zone=one: rate 5r/s per value of $binary_remote_addr, burst 5, " \
           "nodelay; over it 429" in out, out
    assert "limit_conn tenant: at most 3 requests in flight per value of $http_x_tenant" in out
    assert 'access    let in by "allow 10.0.0.0/8" (' in out, out
    assert 'auth      basic, realm "staff", 1 user(s) of %s' % users in out, out
    rc, out = explain(conf, "--from", "192.0.2.9", "GET http://localhost:%d/x" % port)
    assert rc == 0, out
    assert 'access    refused by "deny all" (' in out, out
    assert "answer    403 from portico" in out, out
    assert "backend receives" not in out, out
