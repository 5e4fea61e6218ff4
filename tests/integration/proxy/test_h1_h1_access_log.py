"""Access log: combined and json formats, periodic flush, SIGUSR1 reopen."""

import json
import os
import re
import signal
import time


import portico_testlib as lib

COMBINED = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) (?P<proto>HTTP/1\.[01])" (?P<status>\d{3}) '
    r'(?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<ua>[^"]*)" request_id=(?P<rid>\S+) '
    r'upstream_addr="(?P<ua_addr>[^"]*)" upstream_status="(?P<us>[^"]*)" '
    r'upstream_connect_time="(?P<uct>[^"]*)" upstream_response_time="(?P<urt>[^"]*)"$')

JSON_KEYS = {"time", "remote_addr", "method", "uri", "protocol", "status", "bytes_sent",
             "request_time", "upstream", "upstream_addr", "host", "user_agent", "referer",
             "request_id", "upstream_status", "upstream_connect_time", "upstream_response_time"}


def lines(path):
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except FileNotFoundError:
        return []


def wait_for(pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_h1_h1_access_log_combined(make_proxy):
    p = make_proxy(access_log="combined")
    assert lib.curl(p.url("/name?x=1"), "-A", "agent/7", "-e", "http://ref.test/").status == 200
    assert lib.curl(p.url("/status/404")).status == 404
    assert lib.curl(p.url("/bytes/1234")).status == 200
    assert p.portico.stop() == 0
    ls = lines(p.portico.access_log)
    assert len(ls) == 3, ls
    ms = [COMBINED.match(l) for l in ls]
    assert all(ms), ls
    m0, m1, m2 = ms
    assert (m0["method"], m0["uri"], m0["proto"], m0["status"]) == ("GET", "/name?x=1", "HTTP/1.1", "200")
    assert m0["ua"] == "agent/7" and m0["referer"] == "http://ref.test/"
    assert int(m0["bytes"]) >= 2  # body bytes (or all bytes) sent
    assert m1["status"] == "404" and m1["referer"] == "-"
    assert int(m2["bytes"]) >= 1234
    # the request ID and one upstream entry per attempt (one attempt each here)
    assert all(re.fullmatch(r"[0-9a-f]{32}", m["rid"]) for m in ms), ls
    assert len({m["rid"] for m in ms}) == 3, ls
    for m in ms:
        assert m["ua_addr"] == p.backend.addr, m.groupdict()
        assert m["us"] == m["status"], m.groupdict()
        assert re.fullmatch(r"\d+\.\d{3}", m["uct"]) and re.fullmatch(r"\d+\.\d{3}", m["urt"])


def test_h1_h1_access_log_json(make_proxy):
    p = make_proxy(access_log="json")
    assert lib.curl(p.url("/name?q=2"), "-A", "agent/8", "-H", "Host: j.test").status == 200
    assert lib.curl(p.url("/status/503")).status == 503
    assert p.portico.stop() == 0
    ls = lines(p.portico.access_log)
    assert len(ls) == 2, ls
    objs = [json.loads(l) for l in ls]
    for o in objs:
        assert JSON_KEYS <= set(o), (JSON_KEYS - set(o), o)
    o = objs[0]
    assert o["remote_addr"] == "127.0.0.1"
    assert o["method"] == "GET" and o["uri"] == "/name?q=2"
    assert o["protocol"] == "HTTP/1.1"
    assert int(o["status"]) == 200
    assert o["upstream"] == "app"
    assert o["upstream_addr"] == p.backend.addr
    assert o["host"] == "j.test"
    assert o["user_agent"] == "agent/8"
    assert float(o["request_time"]) >= 0
    assert int(o["bytes_sent"]) >= 2
    assert int(objs[1]["status"]) == 503
    assert re.fullmatch(r"[0-9a-f]{32}", o["request_id"]), o
    assert o["upstream_status"] == "200" and objs[1]["upstream_status"] == "503", objs
    assert re.fullmatch(r"\d+\.\d{3}", o["upstream_connect_time"]), o
    assert re.fullmatch(r"\d+\.\d{3}", o["upstream_response_time"]), o


def test_h1_h1_access_log_error_answers(tmp_path, start_portico):
    # requests portico answers itself (404 no location, 400) are logged too
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
server {
    listen 127.0.0.1:%d;
    location = /x { return 200 "x"; }
}
""" % port, access_log="json")
    p = start_portico(conf, [port])
    assert lib.curl(p.url("/x")).status == 200
    assert lib.curl(p.url("/nothing")).status == 404
    assert p.stop() == 0
    objs = [json.loads(l) for l in lines(p.access_log)]
    assert [(o["uri"], int(o["status"])) for o in objs] == [("/x", 200), ("/nothing", 404)], objs
    # no server was tried: the upstream lists are "-", as nginx writes them
    for o in objs:
        assert (o["upstream_addr"], o["upstream_status"], o["upstream_connect_time"],
                o["upstream_response_time"]) == ("-", "-", "-", "-"), o
        assert re.fullmatch(r"[0-9a-f]{32}", o["request_id"]), o


def test_h1_h1_access_log_flushed_within_seconds(make_proxy):
    p = make_proxy(access_log="combined")
    assert lib.curl(p.url("/name?flush")).status == 200
    assert wait_for(lambda: any("/name?flush" in l for l in lines(p.portico.access_log)), 3.0), \
        "access log line not flushed within 3 s"


def test_h1_h1_access_log_sigusr1_reopen(make_proxy):
    p = make_proxy(access_log="combined")
    log = p.portico.access_log
    assert lib.curl(p.url("/name?before")).status == 200
    assert wait_for(lambda: any("before" in l for l in lines(log)), 3.0)
    os.rename(log, log + ".1")
    p.portico.signal(signal.SIGUSR1)
    # the reopen happens asynchronously in the workers: wait for the new file
    assert wait_for(lambda: os.path.exists(log), 3.0), "SIGUSR1 did not recreate the log file"
    time.sleep(0.3)
    for i in range(3):
        assert lib.curl(p.url("/name?after%d" % i)).status == 200
    assert p.portico.stop() == 0
    new = lines(log)
    old = lines(log + ".1")
    assert [l for l in new if "after" in l] and len([l for l in new if "after" in l]) == 3, new
    assert any("before" in l for l in old), old
    assert not any("after" in l for l in old), old


def test_h1_h1_access_log_off(make_proxy):
    p = make_proxy(access_log="off")
    assert lib.curl(p.url("/name")).status == 200
    assert p.portico.stop() == 0
    assert lines(p.portico.access_log) == []
    assert "GET /name" not in p.portico.read(p.portico.stdout_path)


def test_h1_h1_access_log_stdout_default(tmp_path, start_backend, start_portico):
    # default: access_log stdout combined
    b = start_backend()
    port = lib.free_port()
    conf = "workers 1;\nshutdown_timeout 2s;\nerror_log %s info;\n\n" % (tmp_path / "error.log") + \
        lib.proxy_conf(port, [b.addr])
    p = start_portico(conf, [port])
    assert lib.curl(p.url("/name?stdout")).status == 200
    assert p.stop() == 0
    out = p.read(p.stdout_path).splitlines()
    assert any(COMBINED.match(l) and "/name?stdout" in l for l in out), out


def test_h1_h1_sigusr1_reopens_error_log(tmp_path, start_portico):
    port = lib.free_port()
    dead = lib.free_port()
    conf = lib.make_conf(tmp_path, lib.proxy_conf(port, ["127.0.0.1:%d" % dead]))
    p = start_portico(conf, [port])
    os.rename(p.error_log, p.error_log + ".1")
    p.signal(signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(p.error_log), 3.0), \
        "SIGUSR1 did not recreate the error log"
    time.sleep(0.3)
    assert lib.curl(p.url("/name")).status == 502
    assert p.stop() == 0
    new = p.read(p.error_log)
    assert 'upstream "app"' in new, new
