"""Header handling: hop-by-hop removal both ways, X-Forwarded-*, Forwarded, Via."""


import pytest

import portico_testlib as lib

HOP_REQ = ["-H", "Connection: X-Custom-Hop, keep-alive",
           "-H", "X-Custom-Hop: secret",
           "-H", "Keep-Alive: timeout=5",
           "-H", "TE: trailers",
           "-H", "Trailer: X-T",
           "-H", "Upgrade: foo/2",
           "-H", "Proxy-Connection: keep-alive",
           "-H", "X-Normal: kept"]


def backend_headers(url, *args):
    r = lib.curl(url, *args)
    assert r.status == 200, r
    return r, r.json()["headers"]


def values(headers, name):
    return [v for n, v in headers if n.lower() == name.lower()]


def names(headers):
    return {n.lower() for n, _ in headers}


def parse_forwarded(value):
    """'for=1.2.3.4;proto=http, for=...' -> list of dicts (quotes removed)."""
    out = []
    for elem in value.split(","):
        d = {}
        for pair in elem.strip().split(";"):
            if "=" in pair:
                k, v = pair.split("=", 1)
                d[k.strip().lower()] = v.strip().strip('"')
        out.append(d)
    return out


def test_h1_h1_hop_by_hop_request_removed(proxy):
    r, hs = backend_headers(proxy.url("/headers"), *HOP_REQ)
    got = names(hs)
    for n in ("keep-alive", "te", "trailer", "upgrade", "proxy-connection", "x-custom-hop"):
        assert n not in got, "%s reached the backend: %r" % (n, hs)
    # a Connection header towards the backend may only carry portico's own tokens
    for v in values(hs, "connection"):
        assert "x-custom-hop" not in v.lower(), hs
    assert values(hs, "x-normal") == ["kept"]


def test_h1_h1_hop_by_hop_response_removed(proxy):
    r = lib.curl(proxy.url("/hop-response"))
    assert r.status == 200 and r.body == b"hop"
    got = {n.lower() for n, _ in r.headers}
    for n in ("x-secret", "keep-alive", "upgrade", "proxy-connection"):
        assert n not in got, "%s reached the client: %r" % (n, r.headers)
    for v in r.header_all("connection"):
        assert "x-secret" not in v.lower(), r.headers
    assert r.header("X-Kept") == "yes"


def test_h1_h1_forwarding_headers_added(proxy):
    port = proxy.port
    r, hs = backend_headers(proxy.url("/headers"))
    assert values(hs, "x-forwarded-for") == ["127.0.0.1"], hs
    assert values(hs, "x-forwarded-proto") == ["http"], hs
    assert values(hs, "x-forwarded-host") == ["127.0.0.1:%d" % port], hs
    fw = values(hs, "forwarded")
    assert len(fw) == 1, hs
    elems = parse_forwarded(fw[0])
    assert len(elems) == 1, fw
    assert elems[0].get("for") == "127.0.0.1", fw
    assert elems[0].get("proto") == "http", fw
    assert elems[0].get("host") == "127.0.0.1:%d" % port, fw


def test_h1_h1_forwarded_host_is_client_host(proxy):
    r, hs = backend_headers(proxy.url("/headers"), "-H", "Host: app.example.test")
    assert values(hs, "x-forwarded-host") == ["app.example.test"], hs
    assert parse_forwarded(values(hs, "forwarded")[0])[0].get("host") == "app.example.test"


SPOOF = ["-H", "X-Forwarded-For: 6.6.6.6",
         "-H", "X-Forwarded-Proto: https",
         "-H", "X-Forwarded-Host: evil.test",
         "-H", "Forwarded: for=6.6.6.6;proto=https;host=evil.test"]


def test_h1_h1_untrusted_forwarded_dropped(proxy):
    r, hs = backend_headers(proxy.url("/headers"), *SPOOF)
    assert values(hs, "x-forwarded-for") == ["127.0.0.1"], hs
    assert values(hs, "x-forwarded-proto") == ["http"], hs
    assert values(hs, "x-forwarded-host") == ["127.0.0.1:%d" % proxy.port], hs
    fw = values(hs, "forwarded")
    assert len(fw) == 1 and "6.6.6.6" not in fw[0] and "evil" not in fw[0], hs


def test_h1_h1_trusted_forwarded_appended(make_proxy):
    p = make_proxy(server_extra="    trusted_proxies 127.0.0.1/32;\n")
    r, hs = backend_headers(p.url("/headers"), *SPOOF)
    xff = values(hs, "x-forwarded-for")
    assert len(xff) == 1, hs
    assert [x.strip() for x in xff[0].split(",")] == ["6.6.6.6", "127.0.0.1"], hs
    fw = values(hs, "forwarded")
    elems = parse_forwarded(", ".join(fw))
    assert [e.get("for") for e in elems] == ["6.6.6.6", "127.0.0.1"], fw
    assert elems[-1].get("proto") == "http"


def test_h1_h1_trusted_cidr_range(make_proxy):
    p = make_proxy(server_extra="    trusted_proxies 10.0.0.0/8 127.0.0.0/8;\n")
    r, hs = backend_headers(p.url("/headers"), "-H", "X-Forwarded-For: 10.1.2.3")
    assert [x.strip() for x in values(hs, "x-forwarded-for")[0].split(",")] == \
        ["10.1.2.3", "127.0.0.1"], hs


def test_h1_h1_untrusted_other_cidr(make_proxy):
    p = make_proxy(server_extra="    trusted_proxies 10.0.0.0/8;\n")
    r, hs = backend_headers(p.url("/headers"), *SPOOF)
    assert values(hs, "x-forwarded-for") == ["127.0.0.1"], hs


def test_h1_h1_forwarding_headers_off(make_proxy):
    p = make_proxy(server_extra="    x_forwarded off;\n    forwarded off;\n")
    r, hs = backend_headers(p.url("/headers"))
    got = names(hs)
    for n in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"):
        assert n not in got, hs


def test_h1_h1_via_on(make_proxy):
    p = make_proxy(server_extra="    via on;\n")
    r, hs = backend_headers(p.url("/headers"))
    assert values(hs, "via") == ["1.1 portico"], hs


@pytest.mark.parametrize("client,want", [(["--http1.0"], "1.0 portico"),
                                         (["--http2-prior-knowledge"], "2 portico")])
def test_h1_h1_via_names_the_client_version(make_proxy, client, want):
    """Via carries the client's protocol version as RFC 9110 7.6.3 writes it; Forwarded the
    client address and protocol, over either frontend."""
    p = make_proxy(server_extra="    via on;\n")
    r, hs = backend_headers(p.url("/headers"), *client)
    assert values(hs, "via") == [want], hs
    assert values(hs, "forwarded") == ['for=127.0.0.1;proto=http;host="127.0.0.1:%d"' % p.port], hs


def test_h1_h1_via_default_off(proxy):
    r, hs = backend_headers(proxy.url("/headers"))
    assert "via" not in names(hs), hs


def test_h1_h1_main_context_inheritance(tmp_path, start_backend, start_portico):
    # server-level directives given in main are inherited by servers
    b = start_backend()
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
via on;
x_forwarded off;
upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    location / { proxy_pass app; }
}
""" % (b.addr, port))
    start_portico(conf, [port])
    r, hs = backend_headers("http://127.0.0.1:%d/headers" % port)
    assert values(hs, "via") == ["1.1 portico"], hs
    assert "x-forwarded-for" not in names(hs), hs


def test_h1_h1_end_to_end_headers_kept(proxy):
    r, hs = backend_headers(proxy.url("/headers"), "-H", "X-Multi: a", "-H", "X-Multi: b",
                            "-H", "Cookie: a=1", "-H", "Authorization: Bearer t",
                            "-A", "agent/1.0")
    assert values(hs, "x-multi") == ["a", "b"], hs   # two fields stay two fields, in order
    assert values(hs, "cookie") == ["a=1"]
    assert values(hs, "authorization") == ["Bearer t"]
    assert values(hs, "user-agent") == ["agent/1.0"]


@pytest.mark.parametrize("hlen", [199, 200])
def test_h1_h1_forwarded_host_bound(proxy, hlen):
    """Forwarded quotes the Host the client sent, joined with X-Forwarded-Host's copy; a Host of
    200 bytes or more is left out of Forwarded (the quotes stay), not of X-Forwarded-Host."""
    host = "h" * (hlen - 5) + ".test"
    r, hs = backend_headers(proxy.url("/headers"), "-H", "Host: " + host)
    want = host if hlen < 200 else ""
    assert values(hs, "forwarded") == ['for=127.0.0.1;proto=http;host="%s"' % want], hs
    assert values(hs, "x-forwarded-host") == [host], hs
    assert values(hs, "x-forwarded-for") == ["127.0.0.1"], hs
    assert values(hs, "x-forwarded-proto") == ["http"], hs
