"""Header rules through portico with real clients (curl over HTTP/1.1 and HTTP/2): what the
backend receives (backend.py's /headers echoes it) and what the client gets; variables in
values; nginx's inheritance rule; values that would carry a CR or LF are never sent; the Host
an upstream gets (`host keep | server | NAME`) over HTTP/1.1 and HTTP/2 backends, and the
SNI that follows it toward a TLS backend."""

import pytest

import portico_testlib as lib
from rulesutil import CLIENTS, error_log, get, seen, start
from tls_h2_testlib import plain_server, tls_server, upstream


REQUEST_RULES = """
    location / {
        proxy_pass app;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Scheme $scheme;
        proxy_set_header X-Req-Id $request_id;
        proxy_set_header X-Api-Key "key=$http_x_api_key";
        proxy_set_header X-From-Arg $arg_user;
        proxy_set_header X-Cookie ${cookie_session};
        proxy_set_header X-Uris "$request_method $request_uri $uri $args$is_args";
        proxy_set_header X-Server "$server_name:$server_port $host";
        proxy_set_header User-Agent "portico-test";
        proxy_set_header X-Drop "";
        proxy_add_header X-Multi two;
        proxy_remove_header X-Secret X-Other-Secret;
        proxy_set_header X-Forwarded-For $remote_addr;
    }
"""


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_request_headers(tmp_path, start_backend, start_portico, client):
    p, b = start(tmp_path, start_backend, start_portico, locations=REQUEST_RULES)
    r = get(p, "/headers?user=bob&x=1", client,
            "-H", "X-Api-Key: k1", "-H", "Cookie: a=1; session=s2", "-H", "X-Drop: d",
            "-H", "X-Multi: one", "-H", "X-Secret: s", "-H", "X-Other-Secret: t",
            "-H", "X-Forwarded-For: 10.9.9.9")
    assert r.status == 200, r
    target, h = seen(r)
    assert target == "/headers?user=bob&x=1"
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["x-scheme"] == ["http"]
    # the same request ID the client is told about
    assert h["x-req-id"] == [r.header("x-request-id")] and len(h["x-req-id"][0]) == 32
    assert h["x-api-key"] == ["key=k1"]
    assert h["x-from-arg"] == ["bob"]
    assert h["x-cookie"] == ["s2"]
    assert h["x-uris"] == ["GET /headers?user=bob&x=1 /headers user=bob&x=1?"]
    assert h["x-server"] == ["localhost:%d 127.0.0.1" % p.port]
    # set replaces the client's field, "" removes it, add keeps it, remove drops it
    assert h["user-agent"] == ["portico-test"], h
    assert "x-drop" not in h and "x-secret" not in h and "x-other-secret" not in h, h
    assert h["x-multi"] == ["one", "two"], h
    # portico's own X-Forwarded-For is replaced as well, not sent twice
    assert h["x-forwarded-for"] == ["127.0.0.1"], h


RESPONSE_RULES = """
    location / {
        proxy_pass app;
        add_header X-Frame-Options DENY;
        add_header X-Status "s=$status" always;
        add_header X-Upstream $upstream_addr;
        set_header X-Backend replaced;
        remove_header X-Conn-Id Server;
        proxy_hide_header X-Conn-Request;
    }
    location = /local { return 403 "no\\n"; add_header X-Status "s=$status" always;
                        add_header X-Not-Always yes; remove_header Server; }
    location = /local-ok { return 200 "ok\\n"; add_header X-Ok yes; proxy_hide_header Server; }
"""


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_response_headers(tmp_path, start_backend, start_portico, client):
    p, b = start(tmp_path, start_backend, start_portico, locations=RESPONSE_RULES)
    r = get(p, "/name", client)
    assert r.status == 200 and r.body == b"b1", r
    assert r.header_all("x-frame-options") == ["DENY"]
    assert r.header_all("x-status") == ["s=200"]
    assert r.header_all("x-upstream") == [b.addr]
    # set_header replaced the backend's field; the removed ones are gone
    assert r.header_all("x-backend") == ["replaced"], r.headers
    assert r.header("x-conn-id") is None and r.header("x-conn-request") is None, r.headers
    # a 404 from the backend: add_header and set_header need `always` there (nginx's rule)
    r = get(p, "/status/404", client)
    assert r.status == 404, r
    assert r.header("x-frame-options") is None and r.header("x-upstream") is None, r.headers
    assert r.header_all("x-status") == ["s=404"]
    assert r.header_all("x-backend") == ["b1"], r.headers
    # portico's own answers get the rules too: an error with `always` only, Server removed
    r = get(p, "/local", client)
    assert r.status == 403 and r.body == b"no\n", r
    assert r.header_all("x-status") == ["s=403"] and r.header("x-not-always") is None, r.headers
    assert r.header("server") is None, r.headers
    # proxy_hide_header is about the backend's fields: portico's own Server stays
    r = get(p, "/local-ok", client)
    assert r.status == 200 and r.header("x-ok") == "yes" and r.header("server") == "portico", r


def test_rules_response_headers_on_502(tmp_path, start_backend, start_portico):
    """An error portico answers itself because the backend is gone: only `always` rules."""
    p, b = start(tmp_path, start_backend, start_portico, locations=RESPONSE_RULES)
    b.stop()
    r = get(p, "/name")
    assert r.status == 502, r
    assert r.header_all("x-status") == ["s=502"], r.headers
    assert r.header("x-frame-options") is None, r.headers
    assert r.header("proxy-status") is not None, r.headers


INHERIT = """
    add_header X-Server-Level 1;
    proxy_set_header X-Server-Req 1;
"""
INHERIT_LOCATIONS = """
    location / { proxy_pass app; }
    location = /headers { proxy_pass app; add_header X-Loc 1; }
"""


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_inheritance(tmp_path, start_backend, start_portico, client):
    """nginx's rule: a level that has rules of a kind replaces its parent's list of that kind;
    request rules and response rules are separate kinds."""
    p, b = start(tmp_path, start_backend, start_portico, server=INHERIT,
                 locations=INHERIT_LOCATIONS)
    r = get(p, "/name", client)
    assert r.header("x-server-level") == "1" and r.header("x-loc") is None, r.headers
    r = get(p, "/headers", client)
    assert r.header("x-loc") == "1" and r.header("x-server-level") is None, r.headers
    # the location has no request rules of its own: the server's apply
    target, h = seen(r)
    assert h.get("x-server-req") == ["1"], h


INJECT = """
    location / {
        proxy_pass app;
        proxy_set_header X-Uri $uri;
        proxy_set_header X-Arg $arg_a;
        add_header X-Uri $uri;
        add_header X-Kept kept;
    }
    location /go/ { return 302 https://example.test$uri; }
"""


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_no_injection_through_variables(tmp_path, start_backend, start_portico, client):
    """$uri is the decoded path: %0d%0a in the request becomes CR LF in the value. Such a
    field is dropped (with a warning naming the rule) rather than sent; in a Location the bytes
    are percent-encoded again; $arg_ values stay encoded as they came."""
    p, b = start(tmp_path, start_backend, start_portico, locations=INJECT)
    r = get(p, "/headers/%0d%0aX-Injected:%20yes?a=x%0d%0ay", client)
    assert r.status == 200, r
    target, h = seen(r)
    assert "x-uri" not in h and "x-injected" not in h, h
    assert h["x-arg"] == ["x%0d%0ay"], h
    assert r.header("x-uri") is None and r.header("x-injected") is None, r.headers
    assert r.header("x-kept") == "kept", r.headers
    log = lib.wait_until(lambda: "control character" in error_log(p) and error_log(p),
                         what="a warning about the dropped field")
    assert "X-Uri at " in log and "the field is not sent" in log, log
    # a clean path is sent as it is
    r = get(p, "/headers/clean", client)
    target, h = seen(r)
    assert h["x-uri"] == ["/headers/clean"] and r.header("x-uri") == "/headers/clean"
    # a redirect built from $uri: the CR LF are percent-encoded in the Location
    r = get(p, "/go/a%0d%0aSet-Cookie:%20x=1", client)
    assert r.status == 302, r
    assert r.header("location") == "https://example.test/go/a%0D%0ASet-Cookie:%20x=1", r.headers
    assert r.header("set-cookie") is None, r.headers


# ---- Host toward the backend ------------------------------------------------------------

HOST_CASES = {
    # upstream line, location lines, expected Host (None: what the client sent)
    "keep": ("", "", None),
    "server": ("    host server;\n", "", "SERVER"),
    "fixed": ("    host api.internal;\n", "", "api.internal"),
    "fixed_port": ("    host api.internal:8443;\n", "", "api.internal:8443"),
    "rule_wins": ("    host api.internal;\n", "        proxy_set_header Host $host;\n",
                  "client.test"),
}


@pytest.mark.parametrize("client", ["h1", "h2"])
@pytest.mark.parametrize("case", sorted(HOST_CASES))
def test_rules_backend_host(tmp_path, start_backend, start_portico, client, case):
    up, loc, want = HOST_CASES[case]
    p, b = start(tmp_path, start_backend, start_portico, upstream_extra=up,
                 locations="    location / {\n        proxy_pass app;\n%s    }\n" % loc)
    r = get(p, "/headers", client, "-H", "Host: client.test:%d" % p.port)
    assert r.status == 200, r
    target, h = seen(r)
    if want is None:
        want = "client.test:%d" % p.port
    elif want == "SERVER":
        want = b.addr  # written as 127.0.0.1:PORT, not the default port: the port is kept
    assert h["host"] == [want], h
    # the client's Host still reaches the backend as X-Forwarded-Host
    assert h["x-forwarded-host"] == ["client.test:%d" % p.port], h


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_h2_backend_host_and_rules(certs, start_backend, start_portico_in, client):
    """An HTTP/2 backend (a second portico on h2c): the same Host (as :authority) and the same
    request rules as toward HTTP/1.1; the response rules apply to its answer."""
    b = start_backend("b1")
    be_port, fe_port = lib.free_port(), lib.free_port()
    start_portico_in(upstream("app", [b.addr]) + plain_server(be_port), [be_port], name="be")
    fe = start_portico_in(
        upstream("h2app", ["127.0.0.1:%d" % be_port],
                 extra="    protocol h2c;\n    host api.internal;\n") +
        plain_server(fe_port, locations="""    location / {
        proxy_pass h2app;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header User-Agent rules;
        proxy_remove_header X-Secret;
        add_header X-Frame-Options DENY;
        remove_header X-Conn-Id;
    }
"""), [fe_port], name="fe")
    r = lib.curl(fe.url("/headers"), "-H", "X-Secret: s", *CLIENTS[client])
    assert r.status == 200, r
    target, h = seen(r)
    assert h["host"] == ["api.internal"], h
    assert h["x-real-ip"] == ["127.0.0.1"] and h["user-agent"] == ["rules"], h
    assert "x-secret" not in h, h
    assert r.header("x-frame-options") == "DENY" and r.header("x-conn-id") is None, r.headers


def test_rules_tls_backend_sni_follows_host(certs, start_backend, start_portico_in):
    """`host NAME` also makes the SNI and the name checked in the backend's certificate, so a
    server written as an IP address is reached by name. The backend portico reports the SNI it
    got ($ssl_server_name) and the protocol ($ssl_protocol)."""
    b = start_backend("b1")
    be_port = lib.free_port()
    cert, key = certs.pair("localhost")
    start_portico_in(upstream("app", [b.addr]) + tls_server(
        be_port, cert, key, server_name="localhost",
        locations="""    location / {
        proxy_pass app;
        proxy_set_header X-SNI $ssl_server_name;
        proxy_set_header X-TLS $ssl_protocol;
    }
"""), [be_port], name="be")

    def front(host_line, name):
        port = lib.free_port()
        fe = start_portico_in(
            upstream("tlsapp", ["127.0.0.1:%d" % be_port],
                     extra="    tls on;\n    tls_trusted_certificate %s;\n%s" % (certs.ca,
                                                                                host_line)) +
            plain_server(port, locations="    location / { proxy_pass tlsapp; }\n"),
            [port], name=name)
        return fe

    fe = front("    host localhost;\n", "fe1")
    r = lib.curl(fe.url("/headers"), "-H", "Host: client.test")
    assert r.status == 200, r
    target, h = seen(r)
    assert h["x-sni"] == ["localhost"] and h["x-tls"][0].startswith("TLSv1."), h
    # the backend portico got Host: localhost and forwarded it
    assert h["host"] == ["localhost"], h
    # a name the certificate does not carry: the handshake fails, 502 from the front
    fe2 = front("    host wrong.example;\n", "fe2")
    r = lib.curl(fe2.url("/headers"))
    assert r.status == 502, r


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_one_host_on_the_wire(tmp_path, start_portico, recording_backend, client):
    """The raw request an HTTP/1.1 backend gets: one Host line, first, whatever set it; the
    active health check asks for the upstream's fixed host too."""
    rb = recording_backend()
    port = lib.free_port()
    body = """upstream app {
    server %s;
    host api.internal;
    health_check http path=/hc interval=100ms;
}
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
    location /set/ { proxy_pass app; proxy_set_header Host "set.test"; proxy_add_header X-A 1; }
}
""" % (rb.addr, port)
    p = start_portico(lib.make_conf(tmp_path, body), [port])
    for path, want in (("/x", "api.internal"), ("/set/y", "set.test")):
        r = lib.curl(p.url(path), "-H", "Host: client.test", *CLIENTS[client])
        assert r.status == 200 and r.body == b"ok", r
        raw = [q for q in rb.requests if b" %s HTTP/1.1" % path.encode() in q][-1]
        lines = raw.decode("latin-1").split("\r\n")
        hosts = [l for l in lines if l.lower().startswith("host:")]
        assert hosts == ["Host: %s" % want] and lines[1] == hosts[0], raw
    hc = lib.wait_until(lambda: [q for q in rb.requests if q.startswith(b"GET /hc ")],
                        what="a health check request")
    assert b"\r\nHost: api.internal\r\n" in hc[0], hc[0]


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_rules_response_rules_before_compression(tmp_path, start_backend, start_portico, client):
    """The response rules make the head the compression filter decides on: a Content-Type set
    by a rule chooses whether the body is compressed, and the rules' fields survive it."""
    p, b = start(tmp_path, start_backend, start_portico, locations="""
    location / {
        proxy_pass app;
        gzip on;
        gzip_types application/json;
        set_header Content-Type application/json;
        add_header X-Rule yes;
    }
    location /plain/ { proxy_pass app; proxy_prefix /; gzip on; gzip_types application/json;
                       add_header X-Rule yes; }
""")
    body = "x" * 4000
    for path, compressed in (("/echo", True), ("/plain/echo", False)):
        r = get(p, path, client, "-H", "Accept-Encoding: gzip", "-H", "Content-Type: text/plain",
                "--data-binary", body)
        assert r.status == 200 and r.header("x-rule") == "yes", r
        assert (r.header("content-encoding") == "gzip") == compressed, r.headers
        if compressed:
            assert r.header("content-type") == "application/json", r.headers
