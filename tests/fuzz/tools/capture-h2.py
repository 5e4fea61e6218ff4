#!/usr/bin/python3
"""Captures what real HTTP/2 clients (curl --http2-prior-knowledge, nghttp, h2load) send after
the preface, as seeds of fuzz_h2_frontend: tests/fuzz/tools/capture-h2.py OUT_DIR."""

import hashlib, os, socket, subprocess, sys, threading, time

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8)
port = ls.getsockname()[1]
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
def serve():
    while True:
        s, _ = ls.accept()
        s.settimeout(0.6)
        s.sendall(SETTINGS + ACK)
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d: break
                data += d
        except socket.timeout:
            pass
        s.close()
        if data.startswith(b"PRI"):
            data = data[24:]
        open(os.path.join(out, "capture-" + hashlib.sha1(data).hexdigest()[:12]), "wb").write(b"\x00" + data)
threading.Thread(target=serve, daemon=True).start()
u = "http://127.0.0.1:%d" % port
cmds = [
 ["curl", "-s", "-m", "1", "--http2-prior-knowledge", u + "/p/x"],
 ["curl", "-s", "-m", "1", "--http2-prior-knowledge", "-d", "hello world", u + "/p/post"],
 ["curl", "-s", "-m", "1", "--http2-prior-knowledge", "-I", u + "/"],
 ["curl", "-s", "-m", "1", "--http2-prior-knowledge", "-H", "Cookie: a=b", "-H", "Cookie: c=d", "-H", "X-Long: " + "x"*300, u + "/p/h?q=1"],
 ["curl", "-s", "-m", "1", "--http2-prior-knowledge", "-X", "PUT", "--data-binary", "@/etc/hostname", "-H", "Transfer-Encoding:", u + "/small/x"],
 ["nghttp", "-t", "1", u + "/p/a", u + "/p/b", u + "/204"],
 ["nghttp", "-t", "1", "-d", "/etc/hostname", u + "/p/up"],
 ["h2load", "-n", "4", "-c", "1", "-m", "4", "-T", "1", u + "/p/load"],
]
for c in cmds:
    try: subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3)
    except Exception as e: print(c[0], e)
time.sleep(1)
