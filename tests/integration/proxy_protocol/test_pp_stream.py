"""PROXY protocol on stream servers: `listen ... proxy_protocol` (the carried address is the
client's in the access log line and for `hash client_ip`), with SNI preread and TLS
termination after the header; and `proxy_protocol v1|v2` to stream upstreams (the server gets
the client's address first, before any byte of the client or a TLS handshake)."""

import re
import socket
import ssl
import time

import pytest

import portico_testlib as lib
import pplib
from pplib import v1, v2, tlv
from streamlib import stream, upstream, stream_log, wait_stream_log


def start(tmp_path, start_stream, port, ups, server_body, stream_extra=""):
    body = ups + stream(server_body, extra=stream_extra)
    return start_stream(body, [port])


def test_stream_accept_v2_split_and_data_in_same_write(tmp_path, start_stream, start_tcp):
    b = start_tcp("E", mode="echo")
    port = lib.free_port()
    p = start(tmp_path, start_stream, port, upstream("echo", [b.addr]),
              "listen 127.0.0.1:%d proxy_protocol;\ntrusted_proxies 127.0.0.1;\n"
              "proxy_pass echo;" % port)
    hdr = v2("198.51.100.77", "127.0.0.1", 40001, port, tlvs=tlv(0x04, b"\0" * 9))
    with pplib.connect(port) as s:
        for c in hdr[:-1]:
            s.sendall(bytes([c]))
            time.sleep(0.005)
        s.sendall(hdr[-1:] + b"hello after the header\n")
        got = b""
        while b"\n" not in got:
            d = s.recv(4096)
            assert d
            got += d
        assert got == b"hello after the header\n"
    lines = wait_stream_log(p, 1)
    assert lines[0]["client"] == "198.51.100.77", lines


def test_stream_accept_v1_before_tls_termination(tmp_path, start_stream, start_tcp, certs):
    b = start_tcp("E", mode="echo")
    port = lib.free_port()
    cert, key = certs.pair("localhost")
    p = start(tmp_path, start_stream, port, upstream("echo", [b.addr]),
              "listen 127.0.0.1:%d tls proxy_protocol;\ntrusted_proxies 127.0.0.0/8;\n"
              "tls_certificate %s;\ntls_certificate_key %s;\nproxy_pass echo;"
              % (port, cert, key))
    raw = pplib.connect(port)
    raw.sendall(v1("192.0.2.5", "127.0.0.1", 7000, port))
    ctx = ssl.create_default_context(cafile=certs.ca)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"ping\n")
        assert s.recv(100) == b"ping\n"
    lines = wait_stream_log(p, 1)
    assert lines[0]["client"] == "192.0.2.5", lines


def test_stream_accept_then_sni_preread(tmp_path, start_stream, start_tcp, certs):
    """The PROXY header, then a ClientHello read by ssl_preread and passed through untouched."""
    a = start_tcp("A", mode="hello", tls=certs.pair("a.example"))
    port = lib.free_port()
    p = start(tmp_path, start_stream, port, upstream("a", [a.addr]),
              "listen 127.0.0.1:%d proxy_protocol;\ntrusted_proxies 127.0.0.1;\n"
              "proxy_pass_sni a.example a;" % port)
    raw = pplib.connect(port)
    raw.sendall(v2("203.0.113.99", "127.0.0.1", 1, port))
    ctx = ssl.create_default_context(cafile=certs.ca)
    with ctx.wrap_socket(raw, server_hostname="a.example") as s:
        assert s.getpeercert()["subject"]
    lines = wait_stream_log(p, 1)
    assert lines[0]["client"] == "203.0.113.99"
    assert lines[0]["sni"] == "a.example"


def test_stream_untrusted_and_malformed(tmp_path, start_stream, start_tcp):
    b = start_tcp("E", mode="echo")
    port = lib.free_port()
    p = start(tmp_path, start_stream, port, upstream("echo", [b.addr]),
              "listen 127.0.0.1:%d proxy_protocol;\ntrusted_proxies 127.0.0.2;\n"
              "proxy_protocol_timeout 500ms;\nproxy_pass echo;" % port)
    with pplib.connect(port) as s:
        s.sendall(v1("1.2.3.4", "127.0.0.1", 1, 2) + b"data")
        assert pplib.closed(s)
    with pplib.connect(port, source="127.0.0.2") as s:
        s.sendall(b"PROXY TCP4 1.2.3.4\r\n")
        assert pplib.closed(s)
    with pplib.connect(port, source="127.0.0.2") as s:
        assert pplib.closed(s)
    lib.wait_until(lambda: len(re.findall(r"PROXY protocol from", pplib.error_log(p))) >= 3,
                   timeout=8, what="three log lines")
    log = pplib.error_log(p)
    assert re.search(r"PROXY protocol from 127\.0\.0\.1:\d+: not in trusted_proxies", log)
    assert re.search(r"PROXY protocol from 127\.0\.0\.2:\d+: v1 fields", log)
    assert re.search(r"PROXY protocol from 127\.0\.0\.2:\d+: no header within", log)
    assert b.accepted() == 0


def test_stream_config_needs_trusted_proxies(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("upstream e { server 127.0.0.1:9; }\nstream {\n    server {\n        listen "
                    "127.0.0.1:%d proxy_protocol;\n        proxy_pass e;\n    }\n}\n"
                    % lib.free_port())
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc != 0
    assert "proxy_protocol: no trusted_proxies for this stream server" in out
