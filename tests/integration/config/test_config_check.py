"""portico -t / -v and config errors reported as file:line:col."""

import os
import re
import subprocess

import pytest

import portico_testlib as lib

GOOD = """workers 1;
error_log stderr notice;
access_log off;
shutdown_timeout 2s;

upstream app {
    server 127.0.0.1:9;
    server 127.0.0.1:10 weight=3 max_conns=10;
    server 127.0.0.1:11 backup;
    server 127.0.0.1:12 down;
    server [::1]:13;
    balance round_robin;
    keepalive 16;
    keepalive_timeout 30s;
    keepalive_requests 100;
    connect_timeout 500ms;
    read_timeout 1m;
    send_timeout 60s;
    protocol http1;
}

server {
    listen 127.0.0.1:%(port)d default_server;
    listen [::1]:%(port)d;
    server_name example.test *.example.test;
    client_header_timeout 10s;
    client_body_timeout 60s;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    send_timeout 60s;
    client_max_body_size 1m;
    client_max_header_size 16k;
    client_max_uri_size 8k;
    client_max_headers 100;
    x_forwarded on;
    forwarded off;
    trusted_proxies 127.0.0.1/32 10.0.0.0/8;
    via on;
    access_log stdout json;

    location = /exact { return 200 "exact"; }
    location /api {
        proxy_pass app;
        client_max_body_size 0;
    }
    location / { proxy_pass app; }   # comment after a directive
}
"""


def write(tmp_path, text, name="t.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def check(tmp_path, text):
    path = write(tmp_path, text)
    rc, out = lib.run_portico(["-t", "-c", path])
    return path, rc, out


def assert_error_at(path, rc, out, line, cols, words=()):
    """rc 1 and a `path:line:col: message` line with col among cols."""
    assert rc == 1, "expected exit 1 from -t, got %d:\n%s" % (rc, out)
    m = re.search(r"^(.*?):(\d+):(\d+): (.+)$", out, re.M)
    assert m, "no `file:line:col: message` in output:\n%s" % out
    assert os.path.basename(m.group(1)) == os.path.basename(path), out
    assert int(m.group(2)) == line, "wrong line, expected %d:\n%s" % (line, out)
    assert int(m.group(3)) in cols, "wrong column, expected one of %r:\n%s" % (cols, out)
    for w in words:
        assert w.lower() in out.lower(), "message should mention %r:\n%s" % (w, out)


def test_config_t_success(tmp_path):
    path, rc, out = check(tmp_path, GOOD % {"port": lib.free_port()})
    assert rc == 0, out
    assert "configuration file %s test is successful" % path in out, out


def test_config_t_does_not_listen(tmp_path):
    port = lib.free_port()
    # -t only checks: nothing stays listening afterwards.
    path, rc, out = check(tmp_path, GOOD % {"port": port})
    assert rc == 0, out
    assert not lib.wait_port("127.0.0.1", port, timeout=0.3)


def test_config_version_flag():
    rc, out = lib.run_portico(["-v"])
    assert rc == 0, out
    assert re.search(r"portico[ /v]*\d+\.\d+", out, re.I), out
    for libname in ("libev", "llhttp"):
        assert libname in out.lower(), "-v should show the %s version:\n%s" % (libname, out)


def test_config_unknown_directive(tmp_path):
    text = "workers 1;\nserver {\n    listen 127.0.0.1:1;\n    frobnicate on;\n}\n"
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, 4, (5,), ["frobnicate"])


def test_config_unknown_directive_main(tmp_path):
    path, rc, out = check(tmp_path, "workers 1;\n\n  bogus_thing 3;\n")
    assert_error_at(path, rc, out, 3, (3,), ["bogus_thing"])


@pytest.mark.parametrize("text,line,cols,word", [
    # proxy_pass belongs in a location
    ("workers 1;\nupstream app { server 127.0.0.1:1; }\nproxy_pass app;\n", 3, (1,), "proxy_pass"),
    # listen belongs in server, not upstream
    ("upstream app {\n    server 127.0.0.1:1;\n    listen 8080;\n}\n", 3, (5,), "listen"),
    # balance belongs in upstream, not server
    ("server {\n    listen 127.0.0.1:1;\n    balance round_robin;\n}\n", 3, (5,), "balance"),
    # workers is main-only
    ("server {\n  listen 127.0.0.1:1;\n  workers 2;\n}\n", 3, (3,), "workers"),
    # location outside server
    ("location / { return 200; }\n", 1, (1,), "location"),
], ids=["proxy_pass_in_main", "listen_in_upstream", "balance_in_server",
        "workers_in_server", "location_in_main"])
def test_config_wrong_context(tmp_path, text, line, cols, word):
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, line, cols, [word])


@pytest.mark.parametrize("directive,value", [
    ("workers", "many"),
    ("workers", "-1"),
    ("client_max_body_size", "12q"),
    ("keepalive_timeout", "5parsecs"),
    ("client_header_timeout", "abc"),
    ("x_forwarded", "maybe"),
    ("client_max_headers", "1x"),
])
def test_config_bad_value(tmp_path, directive, value):
    # line 2, directive at column 3, value at column 4 + len(directive)
    if directive == "workers":
        text = "# c\n  %s %s;\n" % (directive, value)
    else:
        text = "# c\n  %s %s;\nserver { listen 127.0.0.1:1; location / { return 200; } }\n" % (
            directive, value)
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, 2, (3, 4 + len(directive)), [directive])


def test_config_bad_server_param(tmp_path):
    text = "upstream app {\n    server 127.0.0.1:1 weight=zero;\n}\n"
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, 2, (5, 12, 24), ["weight"])


def test_config_duplicate_upstream(tmp_path):
    text = ("upstream app { server 127.0.0.1:1; }\n"
            "\n"
            "upstream app { server 127.0.0.1:2; }\n")
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, 3, (1, 10), ["app"])


def test_config_proxy_pass_undefined_upstream(tmp_path):
    text = ("upstream app { server 127.0.0.1:1; }\n"
            "server {\n"
            "    listen 127.0.0.1:1;\n"
            "    location / {\n"
            "        proxy_pass nowhere;\n"
            "    }\n"
            "}\n")
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, 5, (9, 20), ["nowhere"])


def test_config_missing_semicolon(tmp_path):
    text = "workers 1\nerror_log stderr;\n"
    path, rc, out = check(tmp_path, text)
    assert rc == 1, out
    assert re.search(r"t\.conf:[12]:\d+: ", out), out


def test_config_unclosed_block(tmp_path):
    text = "server {\n    listen 127.0.0.1:1;\n    location / { return 200;\n}\n"
    path, rc, out = check(tmp_path, text)
    assert rc == 1, out
    assert re.search(r"t\.conf:\d+:\d+: ", out), out


def test_config_missing_file(tmp_path):
    path = str(tmp_path / "does-not-exist.conf")
    rc, out = lib.run_portico(["-t", "-c", path])
    assert rc != 0
    assert "does-not-exist.conf" in out, out


def test_config_error_stops_startup(tmp_path):
    # Without -t a bad config is a startup error: non-zero exit, message, no listener.
    port = lib.free_port()
    text = "server {\n    listen 127.0.0.1:%d;\n    frobnicate on;\n}\n" % port
    path = write(tmp_path, text)
    p = subprocess.run([lib.PORTICO_BIN, "-c", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode != 0, out
    assert re.search(r"t\.conf:3:5: ", out), out


def test_config_listen_port_in_use(tmp_path):
    # A startup error (address in use) is a non-zero exit with a clear message.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        text = ("error_log stderr;\nserver {\n    listen 127.0.0.1:%d;\n"
                "    location / { return 200 \"x\"; }\n}\n" % port)
        path = write(tmp_path, text)
        p = subprocess.run([lib.PORTICO_BIN, "-c", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=10)
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode == 1, out
        assert "[emerg] main: bind() to 127.0.0.1:%d: Address already in use" % port in out, out
    finally:
        s.close()


# ---- `portico -t` catches what cannot work (docs/configuration.md, "Checking a file") ---------

def test_config_missing_semicolon_says_so(tmp_path):
    # before: `directive "listen" does not take a block`, at the listen
    text = "server {\n    listen 127.0.0.1:8080\n    location / { return 200; }\n}\n"
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, 2, (26,), ['missing ";" after "listen 127.0.0.1:8080"'])
    assert "does not take a block" not in out, out
    # the same for any directive followed by another on the next line
    path, rc, out = check(tmp_path, "workers 1\nerror_log stderr;\n")
    assert_error_at(path, rc, out, 1, (10,), ['missing ";" after "workers 1"', "error_log"])


def test_config_arguments_on_several_lines_still_fine(tmp_path):
    text = ("server {\n    listen 127.0.0.1:%d;\n    server_name a.test\n        b.test\n"
            "        c.test;\n    location / { return 200; }\n}\n" % lib.free_port())
    path, rc, out = check(tmp_path, text)
    assert rc == 0, out


@pytest.mark.parametrize("proto", ["h2c", "h2"])
def test_config_health_check_http_on_h2_upstream(tmp_path, proto):
    tls = "    tls on;\n" if proto == "h2" else ""
    text = ("upstream g {\n    server 127.0.0.1:1;\n    protocol %s;\n%s"
            "    health_check http path=/health;\n}\n"
            "server { listen 127.0.0.1:1; location / { proxy_pass g; } }\n" % (proto, tls))
    path, rc, out = check(tmp_path, text)
    line = 5 if proto == "h2" else 4
    assert_error_at(path, rc, out, line, (5,), ["health_check tcp", "protocol %s" % proto])
    # a tcp check is what such servers get
    path, rc, out = check(tmp_path, text.replace("health_check http path=/health",
                                                 "health_check tcp"))
    assert rc == 0, out


def test_config_duplicate_server_in_upstream(tmp_path):
    text = ("upstream app {\n    server 127.0.0.1:9001;\n    server 127.0.0.1:9001 weight=2;\n}\n"
            "server { listen 127.0.0.1:1; location / { proxy_pass app; } }\n")
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, 3, (12,), ['duplicate server "127.0.0.1:9001"'])


@pytest.mark.parametrize("first,second", [("127.0.0.1:%d", "%d"), ("*:%d", "127.0.0.1:%d"),
                                          ("[::1]:%d", "[::]:%d")],
                         ids=["specific_then_any", "any_then_specific", "ipv6"])
def test_config_listen_overlap(tmp_path, first, second):
    port = lib.free_port()
    text = ("server {\n    listen %s;\n    location / { return 200; }\n}\n"
            "server {\n    listen %s;\n    location / { return 200; }\n}\n"
            % (first % port, second % port))
    path, rc, out = check(tmp_path, text)
    assert_error_at(path, rc, out, 6, (12,), ["overlaps", "(line 2)"])
    assert "has no \"listen\"" not in out, out


def test_config_listen_ipv4_and_ipv6_any_do_not_overlap(tmp_path):
    # IPv6 listeners are IPV6_V6ONLY: *:P and [::]:P are two different sockets
    port = lib.free_port()
    text = ("server {\n    listen *:%d;\n    listen [::]:%d;\n    location / { return 200; }\n}\n"
            % (port, port))
    path, rc, out = check(tmp_path, text)
    assert rc == 0, out


def test_config_server_name_twice_on_a_listener_warns(tmp_path):
    port = lib.free_port()
    text = ("server {\n    listen 127.0.0.1:%d;\n    server_name a.test b.test a.test;\n"
            "    location / { return 200; }\n}\n"
            "server {\n    listen 127.0.0.1:%d;\n    server_name   b.test;\n"
            "    location / { return 200; }\n}\n"
            "server {\n    listen 127.0.0.1:%d;\n    location / { return 200; }\n}\n"
            % (port, port, port))
    path, rc, out = check(tmp_path, text)
    assert rc == 0, out  # warnings: it works, just not as written
    assert re.search(r"t\.conf:3:31: warning: server name \"a\.test\" is listed twice", out), out
    assert re.search(r"t\.conf:8:19: warning: server name \"b\.test\" on 127\.0\.0\.1:%d is "
                     r"already defined at line 3" % port, out), out
    assert re.search(r"t\.conf:11:1: warning: server block on 127\.0\.0\.1:%d has no "
                     r"server_name and is not its default_server" % port, out), out
    # the same name on two different addresses is fine
    text2 = ("server { listen 127.0.0.1:%d; server_name a.test; location / { return 200; } }\n"
             "server { listen 127.0.0.1:%d; server_name a.test; location / { return 200; } }\n"
             % (lib.free_port(), lib.free_port()))
    path, rc, out = check(tmp_path, text2)
    assert rc == 0 and "warning" not in out, out


def test_config_t_v_prints_routing_table(tmp_path):
    port = lib.free_port()
    path = write(tmp_path, GOOD % {"port": port})
    rc, out = lib.run_portico(["-t", "-v", "-c", path])
    assert rc == 0, out
    lines = out.splitlines()
    # listener -> server block -> location -> upstream -> servers, in that order
    i_listen = lines.index("listen 127.0.0.1:%d (%s:23)" % (port, path))
    assert lines[i_listen + 1].startswith("  server (%s:22) default: example.test "
                                          "*.example.test" % path), out
    loc = [l for l in lines if l.startswith("    location /api ")]
    assert loc and loc[0].endswith("-> proxy_pass app"), out
    i = lines.index(loc[0])
    assert lines[i + 1] == ("      -> upstream app: round_robin over 127.0.0.1:9, 127.0.0.1:10, "
                            "127.0.0.1:11 (backup), 127.0.0.1:12 (down), [::1]:13"), out
    # effective settings: the location's own and inherited ones
    settings = "\n".join(lines[i + 2:i + 8])
    assert "client_max_body_size 0 (unlimited)" in settings, settings
    assert "trusted_proxies 127.0.0.1/32 10.0.0.0/8" in settings, settings
    assert "client timeouts: header 10s, body 1m, send 1m, keepalive 75s" in settings, settings
    assert any(l.startswith("    location = /exact ") and l.endswith('-> return 200 "exact"')
               for l in lines), out
    # and each upstream once, with its defaults filled in and every server
    assert "  upstream app (%s:6): balance round_robin, protocol http1" % path in lines, out
    assert "    timeouts: connect 500ms, read 1m, send 1m" in lines, out
    assert "    server 127.0.0.1:10 weight=3 max_conns=10" in lines, out
    assert lines[-1] == "portico: configuration file %s test is successful" % path, out
