"""The directives of the operations locations, checked with `portico -t`: `metrics`, `status`,
`status_write` and `allow` / `deny` (where they may appear, their arguments, their
defaults), with the `file:line:col` of each error."""

import os

import portico_testlib as lib


def check(tmp_path, locations, name="ops.conf"):
    body = """upstream app { server 127.0.0.1:9; }
server {
    listen 127.0.0.1:%d;
%s
}
""" % (lib.free_port(), locations)
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(lib.make_conf(tmp_path, body, access_log="off"))
    return lib.run_portico(["-t", "-c", path])


def test_config_ops_directives_valid(tmp_path):
    rc, out = check(tmp_path, """
    location /metrics { metrics; allow 127.0.0.1; allow ::1; allow 10.0.0.0/8; deny all; }
    location = /status { status; }
    location /admin/ { status; status_write on; allow 192.168.0.0/16; allow all; }
    location /off { status; status_write off; deny 10.0.0.1; }
""")
    assert rc == 0, out


def test_config_metrics_takes_no_argument(tmp_path):
    rc, out = check(tmp_path, "    location /m { metrics on; }")
    assert rc == 1 and ":9:19: " in out and "metrics" in out, out


def test_config_status_takes_no_argument(tmp_path):
    rc, out = check(tmp_path, "    location /s { status json; }")
    assert rc == 1 and ":9:19: " in out and "status" in out, out


def test_config_one_handler_per_location(tmp_path):
    rc, out = check(tmp_path, "    location /m { proxy_pass app; metrics; }")
    assert rc == 1 and 'location "/m" already has a handler' in out, out
    rc, out = check(tmp_path, "    location /s { metrics; status; }")
    assert rc == 1 and 'location "/s" already has a handler' in out, out


def test_config_status_not_in_a_regex_location(tmp_path):
    # the status page's links and admin actions are paths under the location's path
    rc, out = check(tmp_path, "    location ~ ^/st { status; }")
    assert rc == 1 and ':9:23: "status" needs a prefix or exact location, not a regex one' \
        in out, out
    rc, out = check(tmp_path, "    location ~* ^/metrics$ { metrics; allow 127.0.0.1; }")
    assert rc == 0, out


def test_config_metrics_and_status_only_in_locations(tmp_path):
    rc, out = check(tmp_path, "    metrics;\n    location / { proxy_pass app; }")
    assert rc == 1 and "metrics" in out and ":9:5: " in out, out


def test_config_status_write_values(tmp_path):
    rc, out = check(tmp_path, "    location /s { status; status_write yes; }")
    assert rc == 1 and ':9:40: invalid value "yes" in "status_write": expected on or off' \
        in out, out
    rc, out = check(tmp_path, "    location /s { status; status_write on; status_write off; }")
    assert rc == 1 and '"status_write" directive is duplicate' in out, out


def test_config_status_write_needs_status(tmp_path):
    rc, out = check(tmp_path, "    location /m { metrics; status_write on; }")
    assert rc == 1 and ':9:28: "status_write" is only valid in a location with "status"' \
        in out, out
    rc, out = check(tmp_path, "    location /s { status_write on; status; }")   # any order
    assert rc == 0, out


def test_config_allow_deny_arguments(tmp_path):
    rc, out = check(tmp_path, "    location /s { status; allow 300.1.1.1; }")
    assert rc == 1 and \
        ':9:33: invalid address, CIDR or "all" "300.1.1.1" in "allow"' in out, out
    rc, out = check(tmp_path, "    location /s { status; deny 10.0.0.0/33; }")
    assert rc == 1 and 'invalid address, CIDR or "all" "10.0.0.0/33" in "deny"' in out, out
    rc, out = check(tmp_path, "    location /s { status; allow; }")
    assert rc == 1 and "allow" in out, out
    rc, out = check(tmp_path, "    location /s { status; allow 1.2.3.4 5.6.7.8; }")
    assert rc == 1 and "allow" in out, out


def test_config_allow_deny_everywhere(tmp_path):
    # allow / deny are enforced in every location (the access phase, docs/access.md), at
    # server and main level too: valid anywhere
    rc, out = check(tmp_path, "    location / { proxy_pass app; deny all; }")
    assert rc == 0, out
    rc, out = check(tmp_path, "    allow all;\n    location / { proxy_pass app; }")
    assert rc == 0, out
