"""Bad rule configurations fail `portico -t` with the message at the right file:line:col (the
column of the variable, the regex error, the bad character inside a value), and rules that
cannot mean what they say are warnings that leave the configuration loadable."""

import pytest

import portico_testlib as lib

# the line under test is line 5, starting at column 9
TEMPLATE = """server {
    listen 127.0.0.1:1;
    location / {
        proxy_pass app;
        %s
    }
}
upstream app { server 127.0.0.1:1; }
"""


def check(tmp_path, text):
    path = tmp_path / "t.conf"
    path.write_text(text)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    return str(path), rc, out


LOCATION_ERRORS = {
    "unknown_variable": ('proxy_set_header X-A "v=$nope";', 33, 'unknown variable "$nope"'),
    "unknown_variable_braces": ("proxy_set_header X-A ${nope}x;", 30,
                                'unknown variable "$nope"'),
    "unterminated_braces": ('proxy_set_header X-A "${remote_addr";', 31,
                            'missing "}" after "${"'),
    "response_variable_in_request": (
        "proxy_set_header X-A $status;", 30,
        'variable "$status" is known only once the response arrives: not available in '
        '"proxy_set_header"'),
    "binary_variable_in_text": (
        "add_header X-A $binary_remote_addr;", 24,
        'variable "$binary_remote_addr" holds raw bytes: it can be a key (limit_req_zone), '
        "not part of a text value (use $remote_addr)"),
    "control_character": ('add_header X-A "a\\nb";', 26,
                          "control character (0x0a) in a header value"),
    "bad_header_name": ('add_header "X A" v;', 20, 'invalid header name "X A" in "add_header"'),
    "bad_always": ("add_header X-A v sometimes;", 26,
                   'invalid parameter "sometimes" in "add_header" (only "always")'),
    "bad_regex": ("rewrite ^/(a /x;", 21,
                  'invalid regular expression "^/(a": missing closing parenthesis'),
    "bad_flag": ("rewrite ^/a /b sideways;", 24,
                 'invalid flag "sideways" in "rewrite" (last, break, redirect, permanent)'),
    "group_beyond_regex": ("rewrite ^/(a)/(b)$ /x/$3;", 31,
                           '"$3" in the replacement, but the regex has 2 groups'),
    "replacement_not_a_path": ("rewrite ^/a x;", 21,
                               'invalid replacement "x" in "rewrite": a new path starts with '
                               '"/", a redirect with "http://" or "https://"'),
    "space_in_location": ('return 301 "https://a b";', 30,
                          "space (0x20) in a URI (write it percent-encoded, %20)"),
    "add_host": ("proxy_add_header Host h;", 26,
                 'the request always carries one Host: set it with "proxy_set_header Host '
                 'VALUE" or the upstream\'s "host"'),
    "remove_host": ("proxy_remove_header X-A Host;", 33,
                    'the request always carries one Host: set it with "proxy_set_header Host '
                    'VALUE" or the upstream\'s "host"'),
    "prefix_not_a_path": ("proxy_prefix x;", 22, '"proxy_prefix" must start with "/", not "x"'),
    "prefix_with_query": ("proxy_prefix /a?b;", 24,
                          'invalid character in "proxy_prefix" (a path: no space, control, '
                          "'?' or '#')"),
    "bad_return_status": ("return 99;", 16, 'invalid status "99" in "return" (200-599)'),
    "rewrite_in_main_style_args": ("rewrite ^/a;", 9,
                                   'invalid number of arguments in "rewrite" directive'),
}


@pytest.mark.parametrize("case", sorted(LOCATION_ERRORS))
def test_rules_config_errors(tmp_path, case):
    line, col, msg = LOCATION_ERRORS[case]
    path, rc, out = check(tmp_path, TEMPLATE % line)
    assert rc == 1, out
    first = out.splitlines()[0]
    assert first.startswith("%s:5:%d: " % (path, col)), out
    assert first == "%s:5:%d: %s" % (path, col, msg), out


BLOCK_ERRORS = {
    "bad_regex_location": ("    location ~ ^/(x { return 200; }\n", 3, 20,
                           'invalid regular expression "^/(x": missing closing parenthesis'),
    "bad_modifier": ("    location ~~ /x { return 200; }\n", 3, 14,
                     'invalid location modifier "~~" (=, ^~, ~ or ~*)'),
    "modifier_glued": ("    location ~/x { return 200; }\n", 3, 14,
                       'location path "~/x" must start with "/" (a modifier is a word of its '
                       'own: "location ~ REGEX")'),
    "prefix_in_regex_location": ("    location ~ ^/x { proxy_pass app; proxy_prefix /; }\n", 3,
                                 38, '"proxy_prefix" replaces a location\'s path prefix: a regex '
                                 "location has none (use rewrite)"),
    "prefix_without_proxy_pass": ("    location /x/ { proxy_prefix /; return 200; }\n", 3, 5,
                                  '"proxy_prefix" in location "/x/" without "proxy_pass"'),
    "rules_without_handler": ("    location /x/ { add_header X-A b; }\n", 3, 5,
                              'location "/x/" has no handler (proxy_pass or return)'),
    "duplicate_regex": ("    location ~ ^/x { return 200; }\n    location ~ ^/x { return 200; }\n",
                        4, 16, 'duplicate location "^/x"'),
    "prefix_and_noregex_same": ("    location /x { return 200; }\n"
                                "    location ^~ /x { return 200; }\n",
                                4, 17, 'duplicate location "/x"'),
}


@pytest.mark.parametrize("case", sorted(BLOCK_ERRORS))
def test_rules_config_block_errors(tmp_path, case):
    block, line, col, msg = BLOCK_ERRORS[case]
    text = ("server {\n    listen 127.0.0.1:1;\n%s}\nupstream app { server 127.0.0.1:1; }\n"
            % block)
    path, rc, out = check(tmp_path, text)
    assert rc == 1, out
    assert "%s:%d:%d: %s" % (path, line, col, msg) in out.splitlines(), out


def test_rules_config_context_errors(tmp_path):
    """rewrite and return belong to server and location blocks; proxy_prefix to locations."""
    text = ("rewrite ^/a /b;\nserver {\n    listen 127.0.0.1:1;\n    proxy_prefix /;\n"
            "    return 200;\n}\n")
    path, rc, out = check(tmp_path, text)
    assert rc == 1, out
    lines = out.splitlines()
    assert '%s:1:1: directive "rewrite" is not allowed in the main context' % path in lines, out
    assert '%s:4:5: directive "proxy_prefix" is not allowed in the server context' % path \
        in lines, out


@pytest.mark.parametrize("value,col,msg", [
    ('"a b"', 10, 'invalid host "a b" (a name, an IPv4 address or [IPv6], then an optional '
                  ":PORT)"),
    ("api.test:99999", 10, 'invalid port in host "api.test:99999"'),
    ("[::1", 10, 'invalid host "[::1" (keep, server, or NAME[:PORT])'),
    (":80", 10, 'invalid host ":80"'),
])
def test_rules_config_upstream_host_errors(tmp_path, value, col, msg):
    text = ("upstream app {\n    server 127.0.0.1:1;\n    host %s;\n}\n"
            "server { listen 127.0.0.1:1; location / { proxy_pass app; } }\n" % value)
    path, rc, out = check(tmp_path, text)
    assert rc == 1, out
    assert "%s:3:%d: %s" % (path, col, msg) in out.splitlines(), out


def test_rules_config_managed_fields_warn(tmp_path):
    """nginx configurations set Connection and Upgrade for WebSocket and keep-alive: portico
    does both itself, so these rules are ignored with a warning and the file still loads."""
    text = TEMPLATE % ('proxy_set_header Connection ""; proxy_set_header Upgrade $http_upgrade;'
                       " add_header Content-Length 5;")
    path, rc, out = check(tmp_path, text)
    assert rc == 0, out
    lines = out.splitlines()
    assert ('%s:5:26: warning: "Connection" is managed by portico (framing, connection, '
            'WebSocket upgrade): this "proxy_set_header" is ignored' % path) in lines, out
    assert any(l.startswith("%s:5:58: warning: \"Upgrade\" is managed" % path) for l in lines), \
        out
    assert any(l.startswith("%s:5:92: warning: \"Content-Length\" is managed" % path)
               for l in lines), out
    assert "test is successful" in out, out


def test_rules_config_valid_forms(tmp_path):
    """Every form the reference shows loads; -t -v lists the rules of each location."""
    text = """upstream app {
    server 127.0.0.1:1;
    host server;
}
upstream fixed { server 127.0.0.1:2; host api.internal:8443; }
upstream v6 { server 127.0.0.1:3; host [::1]:8080; }
server {
    listen 127.0.0.1:1;
    proxy_set_header X-Real-IP $remote_addr;
    add_header Strict-Transport-Security "max-age=31536000" always;
    remove_header Server;
    rewrite ^/old(/.*)$ $1 last;
    location / { proxy_pass app; }
    location /api/ { proxy_pass fixed; proxy_prefix /; proxy_hide_header X-Powered-By; }
    location ~* \\.(png|jpg)$ { proxy_pass app; set_header Cache-Control "max-age=60"; }
    location ^~ /static/ { proxy_pass v6; }
    location = /healthz { return 200 "ok\\n"; }
    location /go { return https://example.test$request_uri; }
}
server {
    listen 127.0.0.1:2;
    return 301 https://$host$request_uri;
}
"""
    path, rc, out = check(tmp_path, text)
    assert rc == 0, out
    rc, out = lib.run_portico(["-t", "-v", "-c", path])
    assert rc == 0, out
    assert "    location ~* \\.(png|jpg)$ (%s:15) -> proxy_pass app" % path in out, out
    assert '      rule: set_header Cache-Control "max-age=60"  (%s:15)' % path in out, out
    assert "    location ^~ /static/ (%s:16) -> proxy_pass v6" % path in out, out
    assert "      rule: proxy_prefix /" in out, out
    assert "    location /go (%s:18) -> return 302 https://example.test$request_uri " \
           "(Location)" % path in out, out
    assert "    server rule at line 22 runs before a location is chosen" in out, out
    assert ", host server" in out and ", host api.internal:8443" in out, out
