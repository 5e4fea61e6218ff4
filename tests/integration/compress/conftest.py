"""Compression tests (tests/integration/compress/): a portico with gzip/brotli/zstd in front of
tests/tools/compress_backend.py, whose query string chooses every header of its answer."""

import os
import select
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))

import portico_testlib as lib  # noqa: E402

COMPRESS_BACKEND = os.path.join(lib.TOOLS, "compress_backend.py")


class GenBackend:
    """A tests/tools/compress_backend.py subprocess."""

    def __init__(self, logdir):
        self.errpath = os.path.join(logdir, "compress-backend.err")
        self.err = open(self.errpath, "ab")
        self.proc = subprocess.Popen([lib.PYTHON, COMPRESS_BACKEND, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self.err)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("compress_backend did not start: %r" % line)
        self.port = int(line.split()[1])
        self.addr = "127.0.0.1:%d" % self.port

    def stats(self):
        st, _, body = lib.raw_request("127.0.0.1", self.port, "GET", "/stats")
        assert st == 200
        import json
        return json.loads(body)

    def release(self):
        st, _, _ = lib.raw_request("127.0.0.1", self.port, "GET", "/release")
        assert st == 200

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.err.close()


@pytest.fixture
def gen_backend(tmp_path):
    started = []

    def _start():
        b = GenBackend(str(tmp_path))
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop()


DEFAULT_COMPRESS = """
    gzip on;
    brotli on;
    zstd on;
    gzip_types text/plain application/json;
"""


@pytest.fixture
def compress_proxy(tmp_path, gen_backend, start_portico):
    """compress_proxy(server_extra=DEFAULT_COMPRESS, ...) -> (portico, backend)."""

    def _make(server_extra=DEFAULT_COMPRESS, location_extra="", upstream_extra="",
              workers=1, error_level="info", extra_ports=0):
        b = gen_backend()
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(
            port, [b.addr], upstream_extra=upstream_extra, server_extra=server_extra,
            location_extra=location_extra), workers=workers, error_level=error_level)
        return start_portico(conf, [port]), b

    return _make
