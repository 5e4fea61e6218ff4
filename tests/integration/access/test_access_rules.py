"""allow / deny with nginx's syntax and semantics: rules checked in order, the first match
deciding; a location without rules of its own inherits the server block's (and the server
block main's); 403 whose body says portico refused; each denial logged with the rule's
file:line; HTTP/1.1, HTTP/2 and WebSocket handshakes alike; counted in metrics."""

import re
import socket

import pytest

import portico_testlib as lib
from accessutil import CLIENTS, error_log, get, metric, start

LOCS = """
    allow 10.0.0.0/8;
    deny 127.0.0.1;
    location / { proxy_pass app; }
    location /echo { proxy_pass app; allow 127.0.0.0/24; deny all; }
    location /upload { proxy_pass app; allow ::1; allow fd00::/8; deny all; }
    location /ws { websocket_echo; }
"""


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_access_deny_inherited_and_overridden(tmp_path, start_backend, start_portico, client):
    p, b = start(tmp_path, start_backend, start_portico, locations=LOCS)
    # the server block's rules: 127.0.0.1 does not match 10/8, matches the deny
    r = get(p, "/x", client)
    assert r.status == 403, r
    assert b"portico" in r.body and r.body.startswith(b"403"), r.body
    assert "http_request_denied" in (r.header("proxy-status") or ""), r.headers
    # a location with its own list replaces the server block's: first match allows
    r = get(p, "/echo", client)
    assert r.status == 200, r
    # only IPv6 addresses allowed: an IPv4 client falls through to deny all
    r = get(p, "/upload", client)
    assert r.status == 403, r
    log = error_log(p)
    # the rule that matched, where it was written
    conf = p.read(p.conf_path).splitlines()
    line_server = 1 + next(i for i, l in enumerate(conf) if l.strip() == "deny 127.0.0.1;")
    line_v6 = 1 + next(i for i, l in enumerate(conf) if "location /upload" in l)
    assert re.search(r'client 127\.0\.0\.1: denied by "deny 127\.0\.0\.1" at \S+\.conf:%d'
                     % line_server, log), log
    assert re.search(r'denied by "deny all" at \S+\.conf:%d' % line_v6, log), log
    assert metric(p, "portico_http_requests_denied_total", reason="access") == 2


def test_access_main_level_and_ipv6(tmp_path, start_backend, start_portico):
    if not lib.have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    port6 = lib.free_port("::1")
    port4 = lib.free_port()
    p, b = start(tmp_path, start_backend, start_portico,
                 main="allow ::1;\ndeny all;",
                 listen="listen 127.0.0.1:%d; listen [::1]:%d;" % (port4, port6), port=port4,
                 locations="    location / { proxy_pass app; }\n"
                           "    location /name { proxy_pass app; allow 127.0.0.1; deny all; }\n")
    r = lib.curl("http://[::1]:%d/" % port6)
    assert r.status == 200, r
    r = lib.curl("http://127.0.0.1:%d/" % p.port)
    assert r.status == 403, r
    r = lib.curl("http://[::1]:%d/name" % port6)
    assert r.status == 403, r
    r = lib.curl("http://127.0.0.1:%d/name" % p.port)
    assert r.status == 200, r


def test_access_websocket_handshake_denied(tmp_path, start_backend, start_portico):
    p, b = start(tmp_path, start_backend, start_portico, locations=LOCS)
    with lib.RawConn("127.0.0.1", p.port) as c:
        c.send(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        resp = c.read_response()
    assert resp.status == 403, resp
    assert not resp.has("upgrade"), resp


def h2_websocket_status(port, path):
    """The status an HTTP/2 extended CONNECT (RFC 8441) for a WebSocket gets (h2c)."""
    import h2.config
    import h2.connection
    import h2.events

    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    sent = False
    try:
        while True:
            data = s.recv(65536)
            assert data, "connection closed"
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.RemoteSettingsChanged) and not sent:
                    c.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"),
                                       (":scheme", "http"), (":path", path),
                                       (":authority", "localhost"),
                                       ("sec-websocket-version", "13")])
                    sent = True
                if isinstance(ev, h2.events.ResponseReceived):
                    return int(dict(ev.headers)[b":status"])
            s.sendall(c.data_to_send())
    finally:
        s.close()


def test_access_h2_websocket_denied(tmp_path, start_backend, start_portico):
    p, b = start(tmp_path, start_backend, start_portico, locations=LOCS + """
    location /ws2 { websocket_echo; allow 127.0.0.1; }
""")
    assert h2_websocket_status(p.port, "/ws") == 403
    assert h2_websocket_status(p.port, "/ws2") == 200


def test_access_status_admin_still_needs_allow(tmp_path, start_backend, start_portico):
    """The status page's admin actions keep needing an allow rule that matches (not just no
    deny), now that the rules are everyone's."""
    p, b = start(tmp_path, start_backend, start_portico, locations="""
    location / { proxy_pass app; }
    location /status { status; status_write on; deny 10.0.0.0/8; }
    location /status2 { status; status_write on; allow 127.0.0.1; }
""")
    r = lib.curl(p.url("/status?format=json"))
    assert r.status == 200, r
    r = lib.curl(p.url("/status/servers/app/%s/drain" % b.addr), "-X", "POST",
                 "-H", "Accept: application/json")
    assert r.status == 403 and "allow" in r.json()["error"], r
    r = lib.curl(p.url("/status2/servers/app/%s/drain" % b.addr), "-X", "POST",
                 "-H", "Accept: application/json")
    assert r.status == 200, r


@pytest.mark.parametrize("bad", ["allow 10.0.0.0/33;", "deny foo;", "allow;"])
def test_access_config_errors(tmp_path, bad):
    conf = lib.make_conf(tmp_path, """upstream app { server 127.0.0.1:9; }
server { listen 127.0.0.1:%d; location / { proxy_pass app;
%s
} }
""" % (lib.free_port(), bad))
    path = tmp_path / "t.conf"
    path.write_text(conf)
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc != 0, out
    assert re.search(r"t\.conf:%d" % (conf.splitlines().index(bad) + 1), out), out
