"""Fixtures for the stream server tests (layer 4: TCP and TLS through portico).

  start_tcp(name, mode=..., tls=(cert, key))   -> TcpBackend (tests/tools/tcp_backend.py)
  redis_server()                               -> port of a redis-server on 127.0.0.1
  mosquitto()                                  -> port of a mosquitto broker on 127.0.0.1
  start_stream(body, ports, ...)               -> Portico running `body` (upstreams and a
                                                  stream block) with the usual preamble
  certs                                        (tls_h2_testlib) test CA and certificates

Helpers (streamlib.py, put on the import path here): upstream()/stream() config snippets,
stream_log() for the access log's stream lines, connect()/recv_until()/closed_within().
Every process here is started by the test and stopped by PID at teardown.
"""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import portico_testlib as lib  # noqa: E402
from tls_h2_testlib import certs  # noqa: E402,F401
from streamlib import Daemon, TcpBackend  # noqa: E402


@pytest.fixture
def start_tcp(tmp_path):
    started = []

    def _start(name, mode="echo", tls=None, extra=(), port=0, host="127.0.0.1"):
        b = TcpBackend(name, mode=mode, tls=tls, extra=extra, port=port, host=host,
                       logdir=str(tmp_path))
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()


@pytest.fixture
def redis_server(tmp_path):
    """redis_server() -> port: a redis-server of its own (no persistence) on 127.0.0.1."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli not installed (apt-get install redis-server "
                    "redis-tools; scripts/deps.sh --test)")
    started = []

    def _start():
        port = lib.free_port()
        d = Daemon(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(tmp_path), "--protected-mode", "no"],
                   port, str(tmp_path / ("redis-%d.log" % port)))
        started.append(d)
        return port

    yield _start
    for d in started:
        d.stop()


@pytest.fixture
def mosquitto(tmp_path):
    """mosquitto() -> port: a mosquitto broker (anonymous, no persistence) on 127.0.0.1."""
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto not installed (apt-get install mosquitto mosquitto-clients; "
                    "scripts/deps.sh --test)")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    started = []

    def _start():
        port = lib.free_port()
        conf = tmp_path / ("mosquitto-%d.conf" % port)
        conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        % port)
        d = Daemon([binary, "-c", str(conf)], port, str(tmp_path / ("mosquitto-%d.log" % port)))
        started.append(d)
        return port

    yield _start
    for d in started:
        d.stop()


@pytest.fixture
def start_stream(tmp_path, start_portico):
    def _start(body, ports, workers=1, access_log="combined", shutdown_timeout=2.0,
               main_extra="", error_level="debug", name="portico", host="127.0.0.1"):
        conf = lib.make_conf(tmp_path, body, workers=workers, access_log=access_log,
                             error_level=error_level,
                             shutdown_timeout="%dms" % int(shutdown_timeout * 1000),
                             main_extra=main_extra)
        return start_portico(conf, ports, shutdown_timeout=shutdown_timeout, name=name,
                             host=host)

    return _start
