"""Client certificates per location: `tls_verify_client optional` at the server block, and in a
location `require_client_cert on` (any verified certificate) or
`require_client_cert_subject REGEX` (its RFC 2253 subject must match): 403 that says portico
refused, over HTTP/1.1 and HTTP/2; a server block that never asks for a certificate cannot
require one (configuration error)."""

import re

import pytest

import portico_testlib as lib
from accessutil import metric
from tls_h2_testlib import tls_server, upstream


def front(tmp_path, certs, start_backend, start_portico, locations):
    b = start_backend("b1")
    port = lib.free_port()
    cert, key = certs.pair("localhost")
    body = upstream("app", [b.addr]) + tls_server(
        port, cert, key, server_name="localhost",
        extra="    tls_client_certificate %s;\n    tls_verify_client optional;\n" % certs.ca,
        locations=locations + "    location = /metrics { metrics; }\n")
    p = start_portico(lib.make_conf(tmp_path, body), [port])
    return p, port


def curl(certs, port, path, flag, cert=None):
    args = [flag, "--cacert", certs.ca, "--resolve", "localhost:%d:127.0.0.1" % port]
    if cert == "client":
        args += ["--cert", certs.client, "--key", certs.client_key]
    elif cert == "other":
        args += ["--cert", certs.other_client, "--key", certs.other_client_key]
    r = lib.curl("https://localhost:%d%s" % (port, path), *args)
    assert r.rc == 0, r
    return r


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_require_client_cert_per_location(tmp_path, certs, start_backend, start_portico, flag):
    p, port = front(tmp_path, certs, start_backend, start_portico, """
    location / { proxy_pass app; }
    location /name { proxy_pass app; require_client_cert on; }
    location /echo { proxy_pass app; require_client_cert_subject "^CN=%s,"; }
    location /headers { proxy_pass app; require_client_cert_subject "^CN=nobody,"; }
""" % re.escape(certs.client_cn))
    # the server block asks for a certificate but does not need one
    assert curl(certs, port, "/", flag).status == 200
    # this location needs one
    r = curl(certs, port, "/name", flag)
    assert r.status == 403 and b"portico requires a client certificate" in r.body, r
    assert "http_request_denied" in r.header("proxy-status"), r.headers
    assert curl(certs, port, "/name", flag, "client").status == 200
    # and this one a subject that matches
    assert curl(certs, port, "/echo", flag, "client").status == 200
    r = curl(certs, port, "/echo", flag)
    assert r.status == 403, r
    r = curl(certs, port, "/headers", flag, "client")
    assert r.status == 403 and b"does not accept this client certificate" in r.body, r
    log = p.read(p.error_log)
    assert re.search(r"no verified client certificate \(require_client_cert at \S+\.conf:\d+\)",
                     log), log
    assert re.search(r'client certificate subject "CN=%s,[^"]*" does not match "\^CN=nobody,"'
                     % re.escape(certs.client_cn), log), log
    r = lib.curl("https://localhost:%d/metrics" % port, "--cacert", certs.ca, "--resolve",
                 "localhost:%d:127.0.0.1" % port)
    assert 'portico_http_requests_denied_total{reason="client_cert"} 3' in r.body.decode(), r


def test_require_client_cert_needs_verify(tmp_path, certs):
    cert, key = certs.pair("localhost")
    body = upstream("app", ["127.0.0.1:9"]) + tls_server(
        lib.free_port(), cert, key,
        locations="    location / { proxy_pass app; require_client_cert on; }\n")
    conf = tmp_path / "t.conf"
    conf.write_text(lib.make_conf(tmp_path, body))
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc != 0 and 'without "tls_verify_client on" or "optional"' in out, out
