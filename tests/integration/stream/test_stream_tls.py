"""TLS at layer 4: passthrough routed by the ClientHello's server_name (openssl s_client
-servername against two TLS backends, each answering with its own certificate: the handshake is
theirs), the default route for no or unknown SNI, a ClientHello arriving in pieces, malformed
and slow ClientHellos, other protocols on a preread listener; TLS terminated by portico (no
ALPN) and originated to the servers (`tls on`, verified)."""

import os
import re
import socket
import ssl
import threading
import time

import pytest

import portico_testlib as lib
from streamlib import (closed_within, connect, recv_exact, recv_until, stream, stream_log,
                       upstream, wait_stream_log)
from tls_h2_testlib import s_client


def greeting_via_s_client(port, certs, servername, verify_name=None):
    """s_client -servername NAME (or -noservername) against portico; the backend says hello and
    closes. Returns (rc, output)."""
    args = ["-CAfile", certs.ca, "-ign_eof"]
    if servername is None:
        args.append("-noservername")
    else:
        args += ["-servername", servername]
    if verify_name is not None:
        args += ["-verify_hostname", verify_name, "-verify_return_error"]
    return s_client(port, args, stdin=b"", timeout=15)


@pytest.fixture
def passthrough(certs, start_tcp, start_stream):
    """Three TLS backends (a.example, b.example, and the default: localhost) behind one preread
    listener routed by server_name; each says "hello from NAME sni=WHAT_IT_GOT" and closes."""
    def _make(default=True, extra=""):
        a = start_tcp("A", mode="hello", tls=certs.pair("a.example"))
        b = start_tcp("B", mode="hello", tls=certs.pair("b.example"))
        w = start_tcp("W", mode="hello", tls=certs.pair("wild"))
        d = start_tcp("D", mode="hello", tls=certs.pair("localhost"))
        port = lib.free_port()
        body = (upstream("tls_a", [a.addr]) + upstream("tls_b", [b.addr]) +
                upstream("tls_w", [w.addr]) + upstream("tls_default", [d.addr]) +
                stream("listen 127.0.0.1:%d;\nssl_preread on;\n"
                       "proxy_pass_sni a.example tls_a;\nproxy_pass_sni B.Example tls_b;\n"
                       "proxy_pass_sni *.w.example tls_w;\n%s%s"
                       % (port, "proxy_pass tls_default;\n" if default else "", extra)))
        return start_stream(body, [port]), port
    return _make


def test_stream_tls_passthrough_by_sni(passthrough, certs):
    p, port = passthrough()
    for name, backend in (("a.example", "A"), ("b.example", "B"), ("B.EXAMPLE", "B"),
                          ("x.w.example", "W")):
        rc, out = greeting_via_s_client(port, certs, name, verify_name=name.lower())
        # the certificate is the backend's, verified against the test CA for that name: the
        # handshake happened between s_client and the backend, untouched
        assert "Verify return code: 0 (ok)" in out, out
        assert "hello from %s sni=%s" % (backend, name) in out, out
        m = re.search(r"^subject=(.*)$", out, re.M)
        assert m and ("CN = %s" % ("*.w.example" if backend == "W" else name.lower())) in m.group(1)
    lines = wait_stream_log(p, 4, where=lambda l: l["sni"] != "-")
    assert [l["sni"] for l in lines] == ["a.example", "b.example", "b.example", "x.w.example"]
    assert [l["upstream"] for l in lines] == ["tls_a", "tls_b", "tls_b", "tls_w"]
    assert all(l["proto"] == "TCP" and l["status"] == "200" for l in lines)


def test_stream_tls_passthrough_default_route(passthrough, certs):
    p, port = passthrough()
    rc, out = greeting_via_s_client(port, certs, None, verify_name="localhost")
    assert "hello from D sni=None" in out and "Verify return code: 0 (ok)" in out, out
    rc, out = greeting_via_s_client(port, certs, "unknown.example")
    assert "hello from D sni=unknown.example" in out, out
    rc, out = greeting_via_s_client(port, certs, "w.example")  # "*.w.example" needs a label
    assert "hello from D sni=w.example" in out, out


def test_stream_tls_passthrough_no_default_closes(passthrough, certs):
    p, port = passthrough(default=False)
    rc, out = greeting_via_s_client(port, certs, "unknown.example")
    assert "hello from" not in out
    line = wait_stream_log(p, 1, where=lambda l: l["sni"] == "unknown.example")[0]
    assert line["status"] == "502" and line["outcome"] == "no_route"
    assert "no route for server_name \"unknown.example\"" in p.read(p.error_log)
    rc, out = greeting_via_s_client(port, certs, "a.example")
    assert "hello from A sni=a.example" in out


def pump_handshake(s, obj, inb, outb, deadline):
    """Drives an ssl.SSLObject's handshake over socket s; returns when done."""
    while time.monotonic() < deadline:
        try:
            obj.do_handshake()
            data = outb.read()
            if data:
                s.sendall(data)
            return
        except ssl.SSLWantReadError:
            data = outb.read()
            if data:
                s.sendall(data)
            s.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            inb.write(chunk)
    raise TimeoutError("handshake")


def test_stream_tls_client_hello_in_pieces(passthrough, certs):
    """A ClientHello that arrives in several reads (here: 3 bytes, 40, the rest, with pauses)
    is routed like one in a single read, and its bytes reach the backend unchanged."""
    p, port = passthrough()
    ctx = ssl.create_default_context(cafile=certs.ca)
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_hostname="a.example")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outb.read()
    s = connect(port)
    for piece in (hello[:3], hello[3:43], hello[43:]):
        s.sendall(piece)
        time.sleep(0.15)
    inb_data = b""
    deadline = time.monotonic() + 10
    # finish the handshake with whatever comes back
    pump_handshake(s, obj, inb, outb, deadline)
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        try:
            data += obj.read(1024)
        except ssl.SSLWantReadError:
            chunk = s.recv(65536)
            if not chunk:
                break
            inb.write(chunk)
    assert data.startswith(b"hello from A sni=a.example"), data
    assert obj.getpeercert()["subject"] == ((("commonName", "a.example"),),)
    s.close()
    del inb_data


def test_stream_tls_bad_and_slow_client_hello(passthrough):
    p, port = passthrough(extra="preread_timeout 1s;\n")
    # a handshake record of length 0: malformed, closed at once, logged
    s = connect(port)
    s.sendall(b"\x16\x03\x01\x00\x00")
    assert closed_within(s, 5)
    s.close()
    # a ServerHello where a ClientHello belongs
    s = connect(port)
    s.sendall(b"\x16\x03\x03\x00\x30\x02\x00\x00\x2c" + b"\x03\x03" + b"\0" * 42)
    assert closed_within(s, 5)
    s.close()
    # the start of a ClientHello and then nothing: closed at preread_timeout, not before
    s = connect(port)
    s.sendall(b"\x16\x03\x01\x02\x00\x01")
    t0 = time.monotonic()
    assert closed_within(s, 6)
    assert time.monotonic() - t0 > 0.7
    s.close()
    # (the harness's connect, checking that portico listens, sends nothing: client_closed)
    lines = wait_stream_log(p, 3, where=lambda l: l["status"] == "400" and
                            l["outcome"] != "client_closed")
    assert [l["outcome"] for l in lines] == ["bad_client_hello", "bad_client_hello",
                                             "preread_timeout"]
    assert all(l["addrs"] == "" or l["addrs"] == "-" for l in lines)
    log = p.read(p.error_log)
    assert "malformed TLS ClientHello" in log
    assert "no complete ClientHello from 127.0.0.1" in log


def test_stream_tls_preread_lets_other_protocols_through(certs, start_tcp, start_stream):
    """Not TLS at all (a client that speaks first in another protocol): the default route."""
    echo = start_tcp("echo", mode="echo")
    port = lib.free_port()
    p = start_stream(upstream("plain", [echo.addr]) +
                     upstream("tls_a", ["127.0.0.1:1"]) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass_sni a.example tls_a;\n"
                            "proxy_pass plain;" % port), [port])
    s = connect(port)
    s.sendall(b"PING not tls\n")
    assert recv_until(s, b"\n") == b"PING not tls\n"
    s.close()


def test_stream_tls_termination(certs, start_tcp, start_stream):
    """listen ... tls: portico ends TLS with its certificate and relays cleartext; it offers
    no ALPN (a client asking for h2 gets none) and routes by the handshake's server_name."""
    echo = start_tcp("echo", mode="echo")
    other = start_tcp("other", mode="greet")
    port = lib.free_port()
    cert, key = certs.pair("localhost")
    p = start_stream(upstream("plain", [echo.addr]) + upstream("other", [other.addr]) +
                     stream("listen 127.0.0.1:%d tls;\ntls_certificate %s;\n"
                            "tls_certificate_key %s;\nproxy_pass_sni other.example other;\n"
                            "proxy_pass plain;" % (port, cert, key)), [port])
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() is None
            s.sendall(b"cleartext behind TLS\n")
            assert recv_until(s, b"\n") == b"cleartext behind TLS\n"
    # bulk both ways through the TLS relay (records of every size, reads cut mid-record)
    big = os.urandom(3 * 1024 * 1024 + 7)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            sender = threading.Thread(target=s.sendall, args=(big,))
            sender.start()
            got = recv_exact(s, len(big), timeout=30)
            sender.join()
            assert got == big
    ctx2 = ssl.create_default_context(cafile=certs.ca)
    ctx2.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx2.wrap_socket(raw, server_hostname="other.example") as s:
            assert recv_until(s, b"\n").startswith(b"hello from other")
    lines = wait_stream_log(p, 3, where=lambda l: l["received"] != "0" or l["sent"] != "0")
    assert [l["proto"] for l in lines] == ["TLS", "TLS", "TLS"]
    assert lines[0]["received"] == str(len(b"cleartext behind TLS\n"))
    assert lines[1]["received"] == lines[1]["sent"] == str(len(big))
    assert lines[2]["sni"] == "other.example" and lines[2]["upstream"] == "other"
    # a client that does not speak TLS is closed, logged with 400
    s = connect(port)
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert closed_within(s, 5)
    s.close()
    line = wait_stream_log(p, 1, where=lambda l: l["status"] == "400")[0]
    assert line["outcome"] == "tls_handshake_failed"


def test_stream_tls_origination(certs, start_tcp, start_stream):
    """tls on in the upstream: portico speaks TLS to the server (certificate verified against
    tls_trusted_certificate) and cleartext to the client; an untrusted server certificate is a
    connect failure, retried on the next server."""
    good = start_tcp("T", mode="greet", tls=certs.pair("localhost"))
    untrusted = start_tcp("U", mode="greet", tls=(certs.other_localhost,
                                                  certs.other_localhost_key))
    port = lib.free_port()
    p = start_stream(upstream("secure", [untrusted.addr, good.addr],
                              extra="    tls on;\n    tls_trusted_certificate %s;\n"
                                    "    outlier_detection off;\n" % certs.ca) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass secure;" % port), [port])
    for i in range(3):
        s = connect(port)
        assert recv_until(s, b"\n").startswith(b"hello from T sni=None")
        s.sendall(b"over TLS to the server\n")
        assert recv_until(s, b"server\n") == b"over TLS to the server\n"
        s.close()
    assert "certificate verification failed" in p.read(p.error_log)
    lines = wait_stream_log(p, 3, where=lambda l: l["received"] != "0")
    assert all(l["addrs"].endswith(good.addr) for l in lines), lines
    assert any(l["addrs"] == "%s, %s" % (untrusted.addr, good.addr) for l in lines), lines


def test_stream_tls_peer_without_close_notify(certs, start_tcp, start_stream):
    """A TLS server that hangs up without close_notify (as many do) ends its direction like a
    FIN: the client gets everything it sent, then the end, and the line says closed."""
    bye = start_tcp("bye", mode="hello", tls=certs.pair("localhost"))
    port = lib.free_port()
    p = start_stream(upstream("secure", [bye.addr],
                              extra="    tls on;\n    tls_trusted_certificate %s;\n" % certs.ca) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass secure;" % port), [port])
    s = connect(port)
    assert recv_until(s, b"\n") == b"hello from bye sni=None\n"
    assert closed_within(s, 5)
    s.close()
    line = wait_stream_log(p, 1, where=lambda l: l["sent"] != "0")[0]
    assert line["outcome"] == "closed" and line["status"] == "200", line
