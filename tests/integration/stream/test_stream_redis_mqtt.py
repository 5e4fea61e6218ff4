"""Real servers behind a stream server: redis-server with redis-cli (SET/GET, 10 000 pipelined
commands through `redis-cli --pipe`, health checks that speak Redis), and mosquitto with
mosquitto_pub / mosquitto_sub (MQTT both ways through portico)."""

import subprocess
import time

import pytest

import portico_testlib as lib
from streamlib import stream, stream_log, upstream, wait_stream_log


def cli(port, *args, stdin=None, timeout=20):
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)] + list(args),
                       input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace").strip()


def test_stream_redis_set_get(redis_server, start_stream):
    r = redis_server()
    port = lib.free_port()
    p = start_stream(upstream("redis", ["127.0.0.1:%d" % r]) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass redis;" % port), [port])
    assert cli(port, "SET", "greeting", "hello through portico") == (0, "OK")
    assert cli(port, "GET", "greeting") == (0, "hello through portico")
    # what portico stored is what redis has (asked directly)
    assert cli(r, "GET", "greeting") == (0, "hello through portico")
    # (the harness's own connect, checking that portico listens, is a line without bytes)
    lines = wait_stream_log(p, 2, where=lambda l: l["received"] != "0")
    for l in lines:
        assert l["proto"] == "TCP" and l["status"] == "200" and l["outcome"] == "closed"
        assert l["upstream"] == "redis" and l["addrs"] == "127.0.0.1:%d" % r
        # every byte one side sent reached the other
        assert l["received"] == l["up_sent"] and l["sent"] == l["up_received"]
        assert int(l["received"]) > 0 and int(l["sent"]) > 0
    # GET's reply: "$21\r\nhello through portico\r\n"
    assert int(lines[1]["sent"]) == len("$21\r\nhello through portico\r\n")


def test_stream_redis_pipe_10000(redis_server, start_stream):
    r = redis_server()
    port = lib.free_port()
    start_stream(upstream("redis", ["127.0.0.1:%d" % r]) +
                 stream("listen 127.0.0.1:%d;\nproxy_pass redis;" % port), [port])
    cmds = []
    for i in range(10000):
        k, v = "key:%05d" % i, "value-%d" % (i * 7)
        cmds.append("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
    rc, out = cli(port, "--pipe", stdin="".join(cmds).encode(), timeout=60)
    assert rc == 0, out
    assert "errors: 0, replies: 10000" in out, out
    assert cli(r, "DBSIZE") == (0, "10000")
    assert cli(port, "GET", "key:09999") == (0, "value-%d" % (9999 * 7))
    assert cli(port, "GET", "key:00042") == (0, "value-294")


def test_stream_redis_health_check_speaks_redis(redis_server, start_tcp, start_stream):
    """health_check tcp "send=PING\\r\\n" expect=+PONG: redis passes, a server that answers
    something else is marked DOWN and gets no connection; a closed port too."""
    r = redis_server()
    impostor = start_tcp("impostor", mode="hello")  # says "hello from impostor", closes
    dead = lib.free_port()
    port = lib.free_port()
    p = start_stream(
        upstream("redis", ["127.0.0.1:%d" % r, impostor.addr, "127.0.0.1:%d" % dead],
                 extra='    health_check tcp "send=PING\\r\\n" expect=+PONG interval=200ms '
                       'timeout=500ms fall=2 rise=2;\n    outlier_detection off;\n') +
        stream("listen 127.0.0.1:%d;\nproxy_pass redis;" % port), [port], workers=2)
    for who in (impostor.addr, "127.0.0.1:%d" % dead):
        lib.wait_until(lambda: "server %s in redis DOWN" % who in p.read(p.error_log),
                       timeout=10, what="%s marked DOWN" % who)
    log = p.read(p.error_log)
    assert "in redis DOWN: 2/2 checks failed: the answer does not contain the expected text" in log
    assert "server 127.0.0.1:%d in redis DOWN" % r not in log
    before = impostor.accepted()
    for i in range(20):
        assert cli(port, "PING") == (0, "PONG")
    lines = wait_stream_log(p, 20, where=lambda l: l["received"] != "0")
    assert all(l["addrs"] == "127.0.0.1:%d" % r for l in lines), lines
    # the impostor saw only the prober's connections
    assert impostor.accepted() - before <= 8


def mqtt_sub(port, topic, count=1, wait=10):
    return subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                             "-C", str(count), "-W", str(wait), "-q", "1", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def mqtt_pub(port, topic, msg, retain=False):
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                           "-m", msg, "-q", "1"] + (["-r"] if retain else []),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)


@pytest.mark.hard_timeout(60)
def test_stream_mqtt_pub_sub(mosquitto, start_stream):
    m = mosquitto()
    port = lib.free_port()
    p = start_stream(upstream("mqtt", ["127.0.0.1:%d" % m]) +
                     stream("listen 127.0.0.1:%d;\nproxy_pass mqtt;\nproxy_timeout 30s;" % port),
                     [port])
    # a retained message published through portico is delivered through portico
    assert mqtt_pub(port, "portico/retained", "kept", retain=True).returncode == 0
    sub = mqtt_sub(port, "portico/retained")
    out, _ = sub.communicate(timeout=15)
    assert sub.returncode == 0 and out.decode().strip() == "portico/retained kept"
    # a live subscription: both clients through portico, the subscriber's connection stays
    # open while the publisher's come and go
    sub = mqtt_sub(port, "portico/live", count=3, wait=20)
    got = b""
    try:
        deadline = time.monotonic() + 15
        sent = 0
        while sub.poll() is None and time.monotonic() < deadline:
            assert mqtt_pub(port, "portico/live", "m%d" % sent).returncode == 0
            sent += 1
            time.sleep(0.2)
        got, _ = sub.communicate(timeout=10)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    lines = got.decode().split("\n")
    assert sub.returncode == 0, got
    assert [l.split()[0] for l in lines if l] == ["portico/live"] * 3
    # the subscriber's session: one long connection, both directions
    assert mqtt_pub(port, "portico/after", "x").returncode == 0
    lines = wait_stream_log(p, 4, where=lambda l: l["received"] != "0")
    assert all(l["status"] == "200" and l["upstream"] == "mqtt" for l in lines)
