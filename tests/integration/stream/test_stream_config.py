"""`portico -t` on stream configurations: what loads, what `-t -v` shows of a stream server,
and each mistake reported at its file:line:col with what to do."""

import os

import pytest

import portico_testlib as lib


def check(tmp_path, body, name="s.conf"):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write("error_log stderr notice;\naccess_log off;\n" + body)
    return lib.run_portico(["-t", "-v", "-c", path])


UP = "upstream app { server 127.0.0.1:9; }\nupstream other { server 127.0.0.1:10; }\n"


def test_stream_config_good_and_verbose(tmp_path, certs):
    rc, out = check(tmp_path, UP + """
stream {
    proxy_timeout 1m;
    server {
        listen 127.0.0.1:7001;
        proxy_pass app;
        proxy_connect_timeout 2s;
    }
    server {
        listen 127.0.0.1:7002;
        listen [::1]:7002;
        ssl_preread on;
        preread_timeout 5s;
        proxy_pass_sni a.example *.b.example other;
        proxy_pass app;
    }
    server {
        listen 127.0.0.1:7003 tls;
        tls_certificate %s;
        tls_certificate_key %s;
        access_log stderr json;
        proxy_pass app;
    }
}
server { listen 127.0.0.1:7000; location / { proxy_pass app; } }
""" % certs.pair("localhost"))
    assert rc == 0, out
    assert "stream server (" in out
    assert "listen 127.0.0.1:7001" in out and "proxy_timeout 1m, proxy_connect_timeout 2s" in out
    assert "server_name a.example -> other" in out and "server_name *.b.example -> other" in out
    assert "any other (or none) -> app" in out
    assert "ssl_preread: the ClientHello's server_name within 5s" in out
    assert "listen 127.0.0.1:7003 tls" in out and "(no ALPN)" in out
    assert "test is successful" in out


@pytest.mark.parametrize("body,where,what", [
    ("stream { server { listen 127.0.0.1:7001 udp; proxy_pass app; } }", ":5:41:",
     'invalid listen parameter "udp" (tls, proxy_protocol)'),
    ("stream { server { listen 127.0.0.1:7001 proxy_protocol; proxy_pass app; } }", ":5:26:",
     'listen 127.0.0.1:7001 proxy_protocol: no trusted_proxies'),
    ("stream { server { listen 127.0.0.1:7001; proxy_pass nowhere; } }", ":5:53:",
     'proxy_pass to undefined upstream "nowhere"'),
    ("stream { server { listen 127.0.0.1:7001; proxy_pass_sni a.example nowhere; } }",
     ":5:57:", 'proxy_pass_sni "a.example" to undefined upstream "nowhere"'),
    ("stream { server { listen 127.0.0.1:7001; } }", ":5:10:",
     'stream server has no "proxy_pass"'),
    ("stream { server { proxy_pass app; } }", ":5:10:", 'no "listen" directive'),
    ("stream { server { listen 127.0.0.1:7001; proxy_pass app; }\n"
     "  server { listen 127.0.0.1:7001; proxy_pass app; } }", ":6:19:",
     "listen 127.0.0.1:7001 is already used by the stream server at line 5"),
    ("server { listen 127.0.0.1:7001; location / { proxy_pass app; } }\n"
     "stream { server { listen 127.0.0.1:7001; proxy_pass app; } }", ":6:26:",
     "listen 127.0.0.1:7001 is already used by http"),
    ("stream { server { listen 127.0.0.1:7001; ssl_preread off; proxy_pass_sni a.example app; "
     "} }", ":5:10:", '"ssl_preread off" is set in this server'),
    ("stream { server { listen 127.0.0.1:7001; proxy_pass_sni a.*.example app; } }",
     ":5:57:", 'invalid server name "a.*.example"'),
    ("stream { server { listen 127.0.0.1:7001; proxy_pass_sni a.example app; "
     "proxy_pass_sni A.example other; } }", ":5:87:", 'already routed'),
    ("stream { server { listen 127.0.0.1:7001; preread_buffer_size 64k; proxy_pass app; } }",
     ":5:10:", "preread_buffer_size must be between 512 and 16k"),
    ("stream { server { listen 127.0.0.1:7001 tls; proxy_pass app; } }", ":5:10:",
     "needs tls_certificate and tls_certificate_key"),
    ("stream { }\nstream { }", ":6:1:", '"stream" directive is duplicate'),
    ("stream { location / { } }", ":5:10:", 'directive "location" is not allowed in the '
     'stream context'),
    ("stream { server { listen 127.0.0.1:7001; proxy_pass app; client_max_body_size 1m; } }",
     ":5:58:", 'directive "client_max_body_size" is not allowed in the stream server context'),
    ("upstream r { server 127.0.0.1:9; health_check http \"send=PING\"; }", ":5:47:",
     "send= and expect= are for tcp health checks"),
])
def test_stream_config_errors(tmp_path, body, where, what):
    rc, out = check(tmp_path, UP + body)
    assert rc == 1, out
    assert "s.conf" + where in out and what in out, out


def test_stream_config_preread_with_tls_listen(tmp_path, certs):
    rc, out = check(tmp_path, UP + """stream { server {
    listen 127.0.0.1:7001 tls; ssl_preread on; proxy_pass app;
    tls_certificate %s; tls_certificate_key %s; } }
""" % certs.pair("localhost"))
    assert rc == 1 and "s.conf:5:10:" in out, out
    assert "ends TLS here" in out
