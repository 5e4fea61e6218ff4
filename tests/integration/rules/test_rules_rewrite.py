"""Paths and redirects through portico with real clients (curl over HTTP/1.1 and HTTP/2,
following redirects with -L): proxy_prefix, rewrite with its flags, captures and argument
rules, return with variables, regex locations with their groups and nginx's precedence, the
HTTP -> HTTPS redirect in one line, and the limits (rewrite cycles, a regex that gives up)."""

import pytest

import portico_testlib as lib
from rulesutil import error_log, follow, get, seen, start
from tls_h2_testlib import plain_server, tls_server, upstream


PREFIX = """
    location / { proxy_pass app; }
    location /api/ { proxy_pass app; proxy_prefix /; proxy_set_header X-Orig $request_uri; }
    location /v1/ { proxy_pass app; proxy_prefix /headers/v2/; }
    location = /exact { proxy_pass app; proxy_prefix /headers; }
"""


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_proxy_prefix(tmp_path, start_backend, start_portico, client):
    p, b = start(tmp_path, start_backend, start_portico, locations=PREFIX)
    # strip: /api/ becomes /
    r = get(p, "/api/headers?x=1&y=%20", client)
    assert r.status == 200, r
    target, h = seen(r)
    assert target == "/headers?x=1&y=%20", target
    assert h["x-orig"] == ["/api/headers?x=1&y=%20"], h
    # replace: the rest of the (normalised) path follows the new prefix, encoded again
    r = get(p, "/v1/a%20b/%7Bc%7D/../d?q", client, "--path-as-is")
    target, h = seen(r)
    assert target == "/headers/v2/a%20b/d?q", target
    r = get(p, "/v1/%25x%3Fy", client)
    target, h = seen(r)
    assert target == "/headers/v2/%25x%3Fy", target  # a decoded % and ? are not re-read
    # an exact location
    r = get(p, "/exact?k=v", client)
    target, h = seen(r)
    assert target == "/headers?k=v", target
    # other locations forward the target as received
    r = get(p, "/headers/x/./y?z", client, "--path-as-is")
    target, h = seen(r)
    assert target == "/headers/x/./y?z", target


REWRITES = """
    rewrite ^/legacy(/.*)$ $1 last;
    location / { proxy_pass app; proxy_set_header X-Orig $request_uri; proxy_set_header X-Uri $uri; }
    location /old/ { rewrite ^/old/(.*)$ /$1 last; }
    location /b/ { rewrite ^/b/(.*)$ /headers/$1 break; proxy_pass app; }
    location /q/ { rewrite ^/q/(\\w+)$ /headers?new=$1 last; }
    location /d/ { rewrite ^/d/(.*)$ /headers? last; }
    location /chain/ { rewrite ^/chain/(.*)$ /step/$1; rewrite ^/step/(.*)$ /headers/$1; }
    location /r/ { rewrite ^/r/(.*)$ /headers?from=$1 redirect; }
    location /p/ { rewrite ^/p/(.*)$ /headers/$1 permanent; }
    location /ext/ { rewrite ^/ext/(.*)$ https://example.test/$1?; }
    location /nomatch/ { rewrite ^/nomatch/x$ /headers last; }
    location /loop/ { rewrite ^/loop/(.*)$ /loop/$1 last; }
    location /redos/ { rewrite "^/redos/(a+)+$" /headers last; proxy_pass app; }
"""


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_rewrite_internal(tmp_path, start_backend, start_portico, client):
    p, b = start(tmp_path, start_backend, start_portico, locations=REWRITES)
    # last: a new location for the new URI; $request_uri keeps what the client sent
    r = get(p, "/old/headers?z=1", client)
    assert r.status == 200, r
    target, h = seen(r)
    assert target == "/headers?z=1" and h["x-orig"] == ["/old/headers?z=1"], (target, h)
    assert h["x-uri"] == ["/headers"], h
    # break: stays in its location, which proxies the new URI
    r = get(p, "/b/x%20y?k", client)
    target, h = seen(r)
    assert target == "/headers/x%20y?k", target
    # a '?' in the replacement: its arguments, then the request's
    r = get(p, "/q/abc?old=1", client)
    target, h = seen(r)
    assert target == "/headers?new=abc&old=1", target
    r = get(p, "/q/abc", client)
    assert seen(r)[0] == "/headers?new=abc"
    # a trailing '?': the request's arguments are dropped
    r = get(p, "/d/anything?old=1", client)
    assert seen(r)[0] == "/headers", r
    # no flag: the next rewrite sees the new URI, then the location is chosen again
    r = get(p, "/chain/z?a", client)
    target, h = seen(r)
    assert target == "/headers/z?a", target
    # a server-level rewrite runs before any location is chosen
    r = get(p, "/legacy/headers?x", client)
    target, h = seen(r)
    assert target == "/headers?x" and h["x-orig"] == ["/legacy/headers?x"], (target, h)
    # a location whose only rewrite does not match, and no proxy_pass: 404
    r = get(p, "/nomatch/y", client)
    assert r.status == 404, r


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_rewrite_redirects(tmp_path, start_backend, start_portico, client):
    p, b = start(tmp_path, start_backend, start_portico, locations=REWRITES)
    r = get(p, "/r/abc?x=1", client)
    assert r.status == 302 and r.header("location") == "/headers?from=abc&x=1", r
    r = get(p, "/p/abc", client)
    assert r.status == 301 and r.header("location") == "/headers/abc", r
    # an absolute URL is a redirect without a flag; its trailing '?' drops the arguments
    r = get(p, "/ext/a/b?x=1", client)
    assert r.status == 302 and r.header("location") == "https://example.test/a/b", r
    # curl -L follows the redirect to where the backend answers
    r = follow(p, "/r/abc?x=1", client)
    assert r.status == 200, r
    target, h = seen(r)
    assert target == "/headers?from=abc&x=1", target
    r = follow(p, "/p/zzz", client)
    assert r.status == 200 and seen(r)[0] == "/headers/zzz", r


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_rewrite_limits(tmp_path, start_backend, start_portico, client):
    """A rewrite cycle ends after 10 rounds with 500; a regex that backtracks without end gives
    up at its match limit: 500 at once, the worker free for the next request."""
    p, b = start(tmp_path, start_backend, start_portico, locations=REWRITES)
    r = get(p, "/loop/x", client)
    assert r.status == 500, r
    lib.wait_until(lambda: "rewrite cycle" in error_log(p), what="a rewrite cycle warning")
    # each costs PT_RE_MATCH_LIMIT steps, a fraction of a millisecond; without the limit
    # (4 billion steps at most: PCRE2's largest) each would hold the worker for seconds, and
    # these few would outlast the test's hard timeout
    for _ in range(4):
        r = get(p, "/redos/" + "a" * 60 + "b", client)
        assert r.status == 500, r
    log = lib.wait_until(lambda: "gave up" in error_log(p) and error_log(p),
                         what="a match limit warning")
    assert "(match limit exceeded): answering 500" in log, log
    r = get(p, "/headers", client)
    assert r.status == 200, r


RETURNS = """
    location / { proxy_pass app; }
    location = /whoami { return 200 "$remote_addr $scheme $host $request_method $uri $args\\n"; }
    location ~ ^/users/(\\d+)/(\\w+)$ { return 200 "user $1 tab $2\\n"; }
    location ~* "\\.(png|jpe?g)$" { return 200 "image $1\\n"; }
    location ^~ /static/ { return 200 "static\\n"; }
    location = /moved { return 307 /headers?moved=1; }
    location = /gone { return https://example.test/new; }
    location = /both { return 410; proxy_pass app; }
"""


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_return_and_regex_locations(tmp_path, start_backend, start_portico, client):
    p, b = start(tmp_path, start_backend, start_portico, locations=RETURNS)
    r = get(p, "/whoami?a=1", client)
    assert r.status == 200 and r.body == b"127.0.0.1 http 127.0.0.1 GET /whoami a=1\n", r
    assert r.header("content-type") == "text/plain", r.headers
    r = get(p, "/users/42/profile", client)
    assert r.status == 200 and r.body == b"user 42 tab profile\n", r
    # ~* is caseless; its group is the extension as written
    r = get(p, "/x/logo.PNG", client)
    assert r.body == b"image PNG\n", r
    # ^~ stops the regex search: a .png under /static/ is not an image here
    r = get(p, "/static/logo.png", client)
    assert r.body == b"static\n", r
    r = get(p, "/users/x/profile", client)  # \d+ does not match: the prefix location
    assert r.status == 404 and r.header("x-backend") == "b1", r
    r = follow(p, "/moved", client)
    assert r.status == 200 and seen(r)[0] == "/headers?moved=1", r
    r = get(p, "/gone", client)
    assert r.status == 302 and r.header("location") == "https://example.test/new", r
    # return runs before the handler (the rewrite phase, as in nginx)
    r = get(p, "/both", client)
    assert r.status == 410 and r.header("x-backend") is None, r


def test_rules_regex_location_groups_to_backend(tmp_path, start_backend, start_portico):
    """A regex location's groups in a proxied request's header rules; a rewrite that matches
    afterwards brings its own groups (nginx: the last regex that matched)."""
    p, b = start(tmp_path, start_backend, start_portico, locations="""
    location / { proxy_pass app; }
    location ~ ^/headers/(\\w+)/(.*)$ { proxy_pass app; proxy_set_header X-G "$1|$2"; }
    location ~ ^/h/(\\w+)/ { proxy_pass app; proxy_set_header X-G "$1";
                            rewrite ^/h/\\w+/(.*)$ /headers?rest=$1 break; }
""")
    r = get(p, "/headers/abc/d/e?x")
    target, h = seen(r)
    assert target == "/headers/abc/d/e?x" and h["x-g"] == ["abc|d/e"], (target, h)
    r = get(p, "/h/abc/tail")
    target, h = seen(r)
    assert target == "/headers?rest=tail" and h["x-g"] == ["tail"], (target, h)


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_http_to_https_redirect(certs, start_backend, start_portico_in, client):
    """The HTTP -> HTTPS redirect in one line: a cleartext server block whose only rule is
    `return 301 https://$host$request_uri;` (here with the TLS listener's test port). curl -L
    lands on the TLS server block, which proxies with the path and query intact."""
    b = start_backend("b1")
    plain, tls = lib.free_port(), lib.free_port()
    cert, key = certs.pair("localhost")
    body = upstream("app", [b.addr]) + tls_server(tls, cert, key, server_name="localhost")
    body += """server {
    listen 127.0.0.1:%d;
    server_name localhost;
    return 301 https://$host:%d$request_uri;
}
""" % (plain, tls)
    p = start_portico_in(body, [plain, tls], name="redirect")
    resolve = ["--resolve", "localhost:%d:127.0.0.1" % plain,
               "--resolve", "localhost:%d:127.0.0.1" % tls, "--cacert", certs.ca]
    h2 = ["--http2"] if client == "h2" else ["--http1.1"]
    url = "http://localhost:%d/headers?a=1&b=%%20" % plain
    r = lib.curl(url, *(resolve + (["--http2-prior-knowledge"] if client == "h2" else [])))
    assert r.status == 301, r
    assert r.header("location") == "https://localhost:%d/headers?a=1&b=%%20" % tls, r.headers
    r = lib.curl(url, "-L", *(resolve + h2))
    assert r.status == 200, r
    target, h = seen(r)
    assert target == "/headers?a=1&b=%20" and h["x-forwarded-proto"] == ["https"], (target, h)
