#!/usr/bin/python3
"""Helpers for bench/run.sh: process-tree memory/CPU, wrk/h2load/strace/
callgrind parsing, a fixed-count keep-alive client, the idle-connection
probes (cleartext, TLS, h2 over TLS, with a minimal HTTP/2 client) and the
final report.  Standard library only; run with /usr/bin/python3.

Usage: benchlib.py COMMAND ARGS...   (see the functions named cmd_*)
"""
import os
import re
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import time


# --------------------------------------------------------------- processes

def tree_pids(root):
    """root and all its descendants (by PPid), from /proc."""
    children = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                st = f.read()
        except OSError:
            continue
        # comm may contain spaces/parens: ppid is the 2nd field after ')'
        ppid = int(st[st.rindex(')') + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [int(root)]
    while todo:
        p = todo.pop()
        if not os.path.exists('/proc/%d' % p):
            continue
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_kb(pid, field):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_kb(root, field):
    return sum(status_kb(p, field) for p in tree_pids(root))


def tree_cpu_ticks(root):
    """(user+sys, sys) clock ticks used so far by the tree."""
    t = st_sys = 0
    for p in tree_pids(root):
        try:
            with open('/proc/%d/stat' % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(')') + 2:].split()
        t += int(fields[11]) + int(fields[12])      # utime + stime
        st_sys += int(fields[12])
    return t, st_sys


def cmd_pids(root):
    print(' '.join(str(p) for p in tree_pids(root)))


def cmd_mem(root, field='VmRSS'):
    print(tree_kb(root, field))


def cmd_clear_hwm(root):
    for p in tree_pids(root):
        try:
            with open('/proc/%d/clear_refs' % p, 'w') as f:
                f.write('5')
        except OSError:
            pass


def cmd_cpu(root):
    """CPU seconds used so far by the tree: user+sys, sys."""
    hz = float(os.sysconf('SC_CLK_TCK'))
    t, st = tree_cpu_ticks(root)
    print('%.3f %.3f' % (t / hz, st / hz))


def pid_alive(pid):
    try:
        with open('/proc/%s/stat' % pid) as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(')') + 2] not in 'ZX'


def cmd_cpustat(cpus):
    """busy and total clock ticks so far of the CPUs (comma list), from
    /proc/stat.
    busy = user + nice + system + steal; irq/softirq time is left out
    because the proxy's own network softirq work lands there (and may not
    be charged to the proxy's stime)."""
    want = set('cpu' + c for c in cpus.split(','))
    busy = total = 0
    with open('/proc/stat') as f:
        for line in f:
            f0 = line.split()
            if f0 and f0[0] in want:
                v = [int(x) for x in f0[1:]] + [0] * 8
                busy += v[0] + v[1] + v[2] + v[7]
                total += sum(v[:8])         # guest time is already in user
    print(busy, total)


def cmd_alive(pid):
    sys.exit(0 if pid_alive(pid) else 1)


# --------------------------------------------------------------- networking

def cmd_freeports(n):
    socks, ports = [], []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(' '.join(map(str, ports)))


def cmd_waitport(port, timeout='10', pid=None):
    """Wait until 127.0.0.1:port accepts; fail early if pid has exited."""
    end = time.time() + float(timeout)
    while time.time() < end:
        if pid and not pid_alive(pid):
            sys.exit(2)
        try:
            socket.create_connection(('127.0.0.1', int(port)), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(1)


def read_response(sock, buf):
    """Read one HTTP/1.1 response with Content-Length (or chunked) from
    sock; buf holds bytes already read.  Returns (status, leftover)."""
    while b'\r\n\r\n' not in buf:
        d = sock.recv(65536)
        if not d:
            raise ConnectionError('EOF in response head')
        buf += d
    head, _, rest = buf.partition(b'\r\n\r\n')
    lines = head.split(b'\r\n')
    status = int(lines[0].split()[1])
    clen, chunked = None, False
    for l in lines[1:]:
        k, _, v = l.partition(b':')
        k = k.strip().lower()
        if k == b'content-length':
            clen = int(v.strip())
        elif k == b'transfer-encoding' and b'chunked' in v.lower():
            chunked = True
    if chunked:
        while True:
            while b'\r\n' not in rest:
                d = sock.recv(65536)
                if not d:
                    raise ConnectionError('EOF in chunk size')
                rest += d
            line, _, rest = rest.partition(b'\r\n')
            size = int(line.split(b';')[0], 16)
            need = size + 2
            while len(rest) < need:
                d = sock.recv(65536)
                if not d:
                    raise ConnectionError('EOF in chunk')
                rest += d
            rest = rest[need:]
            if size == 0:
                return status, rest
    clen = clen or 0
    while len(rest) < clen:
        d = sock.recv(max(65536, clen - len(rest)))
        if not d:
            raise ConnectionError('EOF in body')
        rest += d
    return status, rest[clen:]


def request_bytes(port, path):
    return ('GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nUser-Agent: bench\r\n\r\n'
            % (path, port)).encode()


def cmd_count(port, path, n, conns='10'):
    """Send exactly n keep-alive requests over `conns` connections
    (round-robin, one in flight per connection).  Fallback for h2load."""
    import selectors
    n, conns = int(n), min(int(conns), int(n))
    req = request_bytes(port, path)
    sel = selectors.DefaultSelector()
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    bad = 0
    state = {}
    for i in range(conns):
        s = socket.create_connection(('127.0.0.1', int(port)), 10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state[s] = per[i]
    for s in list(state):
        if state[s] > 0:
            s.sendall(req)
            sel.register(s, selectors.EVENT_READ, b'')
    done = 0
    while done < n:
        for key, _ in sel.select(10):
            s = key.fileobj
            try:
                st, left = read_response(s, b'')
            except (ConnectionError, OSError):
                sys.stderr.write('count: connection failed\n')
                sys.exit(1)
            if st != 200:
                bad += 1
            done += 1
            state[s] -= 1
            if state[s] > 0:
                s.sendall(req)
            else:
                sel.unregister(s)
                s.close()
    print('done %d non200 %d' % (done, bad))


def idle_snap(pid, tag):
    """RSS of the proxy's tree (kB) at an idle-test checkpoint; with IDLE_HOOK set
    (bench/idle.sh MASSIF=1), that command runs first with the tag (before/after) as its
    argument, e.g. to take a heap snapshot of the proxy at the same moment."""
    hook = os.environ.get('IDLE_HOOK')
    if hook:
        subprocess.run([hook, tag], check=False)
    return tree_kb(pid, 'VmRSS')


def raise_nofile(n):
    """room for n client sockets in this process"""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 200
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want, hard))
        except (ValueError, OSError):
            pass


def cmd_idle(port, pid, n, path='/small'):
    """Memory per idle connection: warm up, read tree RSS, open n keep-alive
    connections each after one complete request, wait, read RSS again.
    Prints: before_kB after_kB bytes_per_conn ok_conns."""
    port, pid, n = int(port), int(pid), int(n)
    raise_nofile(n)
    req = request_bytes(port, path)
    # warm-up: a few connections and requests, then closed
    warm = []
    for _ in range(20):
        s = socket.create_connection(('127.0.0.1', port), 5)
        for _ in range(5):
            s.sendall(req)
            read_response(s, b'')
        warm.append(s)
    for s in warm:
        s.close()
    time.sleep(1.0)
    before = idle_snap(pid, 'before')
    conns, ok = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(('127.0.0.1', port), 5)
            s.sendall(req)
            st, _ = read_response(s, b'')
            ok += st == 200
            conns.append(s)
        except OSError as e:
            sys.stderr.write('idle: connection %d failed: %s\n' % (len(conns), e))
            break
    time.sleep(1.5)
    after = idle_snap(pid, 'after')
    # are they still open (proxy did not drop them)?
    alive = 0
    for s in conns:
        s.setblocking(False)
        try:
            d = s.recv(1)
            if d:
                alive += 1      # unexpected bytes, still counts as open
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for s in conns:
        s.close()
    per = (after - before) * 1024.0 / max(1, len(conns))
    print('%d %d %.0f %d %d' % (before, after, per, ok, alive))


# --------------------------------------------------------------- TLS, HTTP/2

def tls_connect(port, alpn, timeout=5):
    """TLS client socket to 127.0.0.1:port offering the ALPN list; no
    certificate verification (the benchmark's cert is self-signed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    s = socket.create_connection(('127.0.0.1', int(port)), timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(s, server_hostname='localhost')


def h2_frame(ftype, flags, sid, payload=b''):
    return (struct.pack('>I', len(payload))[1:] + bytes([ftype, flags]) +
            struct.pack('>I', sid) + payload)


def hpack_lit(index, value):
    """literal header field without indexing, indexed name (< 15), raw
    string (no Huffman, < 127 bytes)"""
    return bytes([index, len(value)]) + value


# first byte of a response header block -> status, for the indexed forms
# (RFC 7541 static table 8..14); every proxy here sends 200 as 0x88
H2_STATIC_STATUS = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400,
                    0x8d: 404, 0x8e: 500}


class H2Conn:
    """Just enough HTTP/2 (RFC 9113) over TLS to send GETs one at a time and
    read the responses: big windows, so no flow control is needed for
    responses below 2 GiB; SETTINGS and PING are acknowledged."""

    def __init__(self, port, timeout=5, tls=True):
        self.port = int(port)
        if tls:
            self.s = tls_connect(port, ['h2'], timeout)
        else:                   # h2c with prior knowledge (RFC 9113 section 3.3)
            self.s = socket.create_connection(('127.0.0.1', self.port), timeout)
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls and self.s.selected_alpn_protocol() != 'h2':
            raise ConnectionError('ALPN: server chose %r, not h2'
                                  % self.s.selected_alpn_protocol())
        self.buf = b''
        self.sid = 1
        # SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 2^31-1
        self.s.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' +
                       h2_frame(4, 0, 0, struct.pack('>HIHI', 2, 0, 4, 0x7fffffff)) +
                       h2_frame(8, 0, 0, struct.pack('>I', 0x7fffffff - 65535)))

    def frame(self):
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], 'big')
                if len(self.buf) >= 9 + n:
                    t, fl = self.buf[3], self.buf[4]
                    sid = int.from_bytes(self.buf[5:9], 'big') & 0x7fffffff
                    pl = self.buf[9:9 + n]
                    self.buf = self.buf[9 + n:]
                    return t, fl, sid, pl
            d = self.s.recv(1 << 20)
            if not d:
                raise ConnectionError('EOF on h2 connection')
            self.buf += d

    def request(self, path):
        """GET path -> (status, body); status -1 if not recognised."""
        sid, self.sid = self.sid, self.sid + 2
        block = (b'\x82\x87' + hpack_lit(4, path.encode()) +
                 hpack_lit(1, b'127.0.0.1:%d' % self.port) +
                 b'\x0f\x2b' + bytes([5]) + b'bench')   # user-agent: static index 58 = 15 + 43
        self.s.sendall(h2_frame(1, 0x5, sid, block))    # END_STREAM|END_HEADERS
        status, body = None, []
        while True:
            t, fl, fsid, pl = self.frame()
            if t == 4 and not fl & 1:               # SETTINGS -> ACK
                self.s.sendall(h2_frame(4, 1, 0))
            elif t == 6 and not fl & 1:             # PING -> ACK
                self.s.sendall(h2_frame(6, 1, 0, pl))
            elif t == 7:
                raise ConnectionError('GOAWAY error %d' % int.from_bytes(pl[4:8], 'big'))
            elif fsid != sid:
                continue
            elif t == 3:
                raise ConnectionError('RST_STREAM error %d' % int.from_bytes(pl[:4], 'big'))
            elif t in (0, 1):
                if fl & 0x8:                        # PADDED
                    pl = pl[1:len(pl) - pl[0]]
                if t == 1:
                    if fl & 0x20:                   # PRIORITY
                        pl = pl[5:]
                    if status is None:
                        # dynamic table size updates (001xxxxx, RFC 7541 section 6.3) may
                        # come first, e.g. from a server whose table is below 4096
                        i = 0
                        while i < len(pl) and pl[i] & 0xe0 == 0x20:
                            i += 1
                            if pl[i - 1] & 0x1f == 0x1f:    # multi-byte integer
                                while i < len(pl) and pl[i] & 0x80:
                                    i += 1
                                i += 1
                        status = H2_STATIC_STATUS.get(pl[i], -1) if i < len(pl) else -1
                else:
                    body.append(pl)
                if fl & 1:                          # END_STREAM
                    return status, b''.join(body)

    def close(self):
        self.s.close()


def cmd_tlscheck(port, file_1m):
    """Sanity check of a TLS listener: HTTP/1.1 (ALPN http/1.1) and h2 (ALPN
    h2), each /small, /1m (compared byte for byte), /small on one
    connection.  Prints the negotiated version/cipher; exits 1 on failure."""
    want = {'/small': b'hello, world\n', '/1m': open(file_1m, 'rb').read()}
    paths = ('/small', '/1m', '/small')
    try:
        s = tls_connect(port, ['http/1.1'])
        if s.selected_alpn_protocol() not in (None, 'http/1.1'):
            sys.exit('HTTP/1.1: ALPN chose %r' % s.selected_alpn_protocol())
        info = '%s %s' % (s.version(), s.cipher()[0])
        for p in paths:
            s.sendall(request_bytes(port, p))
            buf = b''
            while b'\r\n\r\n' not in buf:
                d = s.recv(65536)
                if not d:
                    sys.exit('HTTP/1.1: EOF before response head for ' + p)
                buf += d
            head, _, rest = buf.partition(b'\r\n\r\n')
            st = int(head.split()[1])
            clen = [int(l.split(b':', 1)[1]) for l in head.split(b'\r\n')[1:]
                    if l.lower().startswith(b'content-length:')]
            if st != 200:
                sys.exit('HTTP/1.1: status %d for %s' % (st, p))
            if not clen:
                read_response(s, buf)
                continue
            while len(rest) < clen[0]:
                d = s.recv(1 << 20)
                if not d:
                    sys.exit('HTTP/1.1: EOF in body for ' + p)
                rest += d
            if rest[:clen[0]] != want[p]:
                sys.exit('HTTP/1.1: wrong body for ' + p)
        s.close()
        c = H2Conn(port)
        for p in paths:
            st, body = c.request(p)
            if st != 200:
                sys.exit('h2: status %s for %s' % (st, p))
            if body != want[p]:
                sys.exit('h2: wrong body for %s (%d bytes)' % (p, len(body)))
        c.close()
    except (OSError, ConnectionError, ValueError, IndexError) as e:
        sys.exit('%s: %s' % (type(e).__name__, e))
    print(info)


def cmd_tlsidle(port, pid, n, proto='h1', path='/small'):
    """Like idle, over TLS: proto h1 (ALPN http/1.1) or h2 (ALPN h2, one
    GET on stream 1); or h2c: cleartext HTTP/2 with prior knowledge, one GET
    on stream 1.  Prints: before_kB after_kB bytes_per_conn ok alive."""
    port, pid, n = int(port), int(pid), int(n)
    raise_nofile(n)
    req = request_bytes(port, path)

    def one():
        if proto in ('h2', 'h2c'):
            c = H2Conn(port, tls=proto == 'h2')
            st, _ = c.request(path)
            return c.s, st
        s = tls_connect(port, ['http/1.1'])
        s.sendall(req)
        st, _ = read_response(s, b'')
        return s, st

    warm = []
    for _ in range(20):
        s, _ = one()
        warm.append(s)
    for s in warm:
        s.close()
    time.sleep(1.0)
    before = idle_snap(pid, 'before')
    conns, ok = [], 0
    for _ in range(n):
        try:
            s, st = one()
            ok += st == 200
            conns.append(s)
        except (OSError, ConnectionError) as e:
            sys.stderr.write('tlsidle: connection %d failed: %s\n' % (len(conns), e))
            break
    time.sleep(1.5)
    after = idle_snap(pid, 'after')
    alive = 0
    for s in conns:
        s.setblocking(False)
        try:
            if s.recv(1):
                alive += 1      # e.g. an unread h2 SETTINGS ACK: still open
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            alive += 1
        except OSError:
            pass
    for s in conns:
        s.close()
    per = (after - before) * 1024.0 / max(1, len(conns))
    print('%d %d %.0f %d %d' % (before, after, per, ok, alive))


# --------------------------------------------------------------- parsers

def to_ms(v):
    m = re.match(r'([\d.]+)(us|ms|s|m)$', v)
    if not m:
        return float('nan')
    x, u = float(m.group(1)), m.group(2)
    return x * {'us': 0.001, 'ms': 1.0, 's': 1000.0, 'm': 60000.0}[u]


def cmd_parse_wrk(path):
    """Prints: req_per_s p99_ms requests errors (errors = socket errors +
    non-2xx/3xx)."""
    txt = open(path, errors='replace').read()
    rps = re.search(r'Requests/sec:\s+([\d.]+)', txt)
    p99 = re.search(r'^\s+99%\s+(\S+)', txt, re.M)
    reqs = re.search(r'(\d+) requests in', txt)
    err = 0
    m = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', txt)
    if m:
        err += sum(int(x) for x in m.groups())
    m = re.search(r'Non-2xx or 3xx responses: (\d+)', txt)
    if m:
        err += int(m.group(1))
    print('%s %s %s %d' % (rps.group(1) if rps else 'nan',
                           '%.3f' % to_ms(p99.group(1)) if p99 else 'nan',
                           reqs.group(1) if reqs else '0', err))


def cmd_parse_load(kind, path):
    """wrk or h2load output (kind: wrk | h2load).  Prints: req_per_s p99_ms
    requests errors mean_ms max_ms protocol tls.  errors = socket errors /
    failed requests + 4xx/5xx (wrk: non-2xx/3xx); h2load's p99 comes from
    its --log-file, PATH.log; protocol and tls ('-' if unknown) are what
    h2load reports as negotiated."""
    txt = open(path, errors='replace').read()
    nan = float('nan')
    if kind == 'wrk':
        rps = re.search(r'Requests/sec:\s+([\d.]+)', txt)
        p99 = re.search(r'^\s+99%\s+(\S+)', txt, re.M)
        lat = re.search(r'^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)', txt, re.M)
        reqs = re.search(r'(\d+) requests in', txt)
        err = 0
        m = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', txt)
        if m:
            err += sum(int(x) for x in m.groups())
        m = re.search(r'Non-2xx or 3xx responses: (\d+)', txt)
        if m:
            err += int(m.group(1))
        print('%s %.3f %s %d %.3f %.3f %s %s' % (
            rps.group(1) if rps else 'nan', to_ms(p99.group(1)) if p99 else nan,
            reqs.group(1) if reqs else '0', err,
            to_ms(lat.group(1)) if lat else nan, to_ms(lat.group(3)) if lat else nan,
            'http/1.1', '-'))
        return
    rps = re.search(r'finished in \S+, ([\d.]+) req/s', txt)
    req = re.search(r'requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, '
                    r'(\d+) failed, (\d+) errored, (\d+) timeout', txt)
    codes = re.search(r'status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx', txt)
    lat = re.search(r'time for request:\s+(\S+)\s+(\S+)\s+(\S+)', txt)
    proto = re.search(r'Application protocol: (\S+)', txt)
    tls = [re.search(r, txt) for r in (r'TLS Protocol: (\S+)', r'Cipher: (\S+)',
                                        r'Server Temp Key: (\S+)')]
    err = 0
    if req:
        err += int(req.group(5))
    if codes:
        err += int(codes.group(3)) + int(codes.group(4))
    p99 = nan
    try:
        us = sorted(int(l.split('\t')[2]) for l in open(path + '.log')
                    if l.count('\t') >= 2)
        if us:
            p99 = us[min(len(us) - 1, int(len(us) * 0.99))] / 1000.0
    except (OSError, ValueError):
        pass
    print('%s %.3f %s %d %.3f %.3f %s %s' % (
        rps.group(1) if rps else 'nan', p99, req.group(3) if req else '0', err,
        to_ms(lat.group(3)) if lat else nan, to_ms(lat.group(2)) if lat else nan,
        proto.group(1) if proto else '-',
        '/'.join(m.group(1) for m in tls) if all(tls) else '-'))


def cmd_parse_strace(path):
    """Total syscall count from `strace -c` output (the 'total' line)."""
    for line in open(path, errors='replace'):
        f = line.split()
        if f and f[-1] == 'total':
            # % time, seconds, usecs/call, calls, [errors], total
            nums = [x for x in f[:-1]]
            print(nums[3] if len(nums) >= 4 else nums[-1])
            return
    print('nan')


def cmd_strace_top(path, k='6'):
    """The k most frequent syscalls, as 'name:calls,...'."""
    rows = []
    for line in open(path, errors='replace'):
        f = line.split()
        if len(f) >= 5 and re.match(r'^[\d.]+$', f[0]) and f[-1] != 'total':
            try:
                rows.append((int(f[3]), f[-1]))
            except ValueError:
                pass
    rows.sort(reverse=True)
    print(','.join('%s:%d' % (nm, c) for c, nm in rows[:int(k)]))


def cmd_parse_callgrind(path):
    """Total Ir from a callgrind output file (summary:/totals: line)."""
    tot = None
    for line in open(path, errors='replace'):
        if line.startswith('summary:') or line.startswith('totals:'):
            tot = int(line.split()[1])
    print(tot if tot is not None else 'nan')


# --------------------------------------------------------------- report

def load(path):
    """results file lines: proxy<TAB>key<TAB>value"""
    r = {}
    for line in open(path):
        parts = line.rstrip('\n').split('\t')
        if len(parts) != 3:
            continue
        p, k, v = parts
        r.setdefault(p, {}).setdefault(k, []).append(v)
    return r


def num(v):
    try:
        x = float(v)
        return None if x != x else x
    except (TypeError, ValueError):
        return None


def med(vals):
    xs = [num(v) for v in vals or []]
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec, unit=''):
    return '-' if x is None else (spec % x) + unit


def ratio(a, b):
    if a is None or b is None or b == 0:
        return '-'
    return '%.2fx' % (a / b)


def human_kb(kb):
    if kb is None:
        return '-'
    return '%.1f MiB' % (kb / 1024.0) if kb >= 10240 else '%d KiB' % kb


def tls_report(R, proxies, workloads, out):
    """The TLS section: workloads 'name:desc' with keys name.rps etc. and
    mean/max latency, then memory per idle TLS / h2 connection.  proxies are
    the instances' names, tls-NAME; the tables show NAME."""
    R = dict((p[4:] if p.startswith('tls-') else p, R.get(p, {})) for p in proxies)
    proxies = [p[4:] if p.startswith('tls-') else p for p in proxies]
    status = {p: (R.get(p, {}).get('status') or ['phase skipped'])[-1]
              for p in proxies}
    noisy = []
    out.append('')
    out.append('== TLS section (TLS-terminating proxies, cleartext HTTP/1.1 backend)')
    for key, what in (('tls.negotiated', 'h2, h2load'),
                      ('tls.negotiated.h1', 'HTTP/1.1, OpenSSL client defaults as wrk')):
        neg = {}
        for p in proxies:
            v = [x for x in R.get(p, {}).get(key, []) if x != '-']
            if v:
                neg[p] = v[-1].replace(' ', '/')
        if len(set(neg.values())) == 1:
            out.append('negotiated (%s): %s, every proxy' % (what, list(neg.values())[0]))
        elif neg:
            out.append('negotiated (%s): ' % what + ', '.join('%s %s' % kv for kv in neg.items()))
    for wname, wdesc in workloads:
        out.append('')
        out.append('== %s: %s' % (wname, wdesc))
        out.append('%-9s %9s %9s %9s %9s %10s %6s %6s %10s %5s %6s  %s' % (
            'proxy', 'req/s', 'mean', 'p99', 'max', 'peak RSS', 'CPU0%',
            'other%', 'cpu us/req', 'sys%', 'errors', 'req/s by round'))
        agg = {}
        for p in proxies:
            d = R.get(p, {})
            k = lambda x: d.get(wname + '.' + x)
            if not k('rps'):
                out.append('%-9s %s' % (p, 'not measured (%s)' % status[p]))
                continue
            maxes = [num(v) for v in k('max') or [] if num(v) is not None]
            hwm = [num(v) for v in k('hwm') or [] if num(v) is not None]
            other = med(k('other_pct'))
            if other is not None and other > 10:
                noisy.append('%s/%s %.0f%%' % (wname, p, other))
            errs = sum(int(num(v) or 0) for v in k('errors') or [])
            rounds = ' '.join('%.0f' % num(v) if num(v) is not None else 'x'
                              for v in k('rps'))
            agg[p] = (med(k('rps')), med(k('mean')), med(k('p99')),
                      med(k('cpu_us_per_req')), max(hwm) if hwm else None)
            out.append('%-9s %9s %9s %9s %9s %10s %6s %6s %10s %5s %6d  %s' % (
                p, fmt(agg[p][0], '%.0f'), fmt(agg[p][1], '%.2f', 'ms'),
                fmt(agg[p][2], '%.2f', 'ms'),
                fmt(max(maxes) if maxes else None, '%.0f', 'ms'),
                human_kb(agg[p][4]), fmt(med(k('cpu')), '%.0f'), fmt(other, '%.0f'),
                fmt(agg[p][3], '%.1f'), fmt(med(k('sys_pct')), '%.0f'), errs, rounds))
        if agg.get('portico'):
            for peer in proxies:
                if peer == 'portico':
                    continue
                a, b = agg['portico'], agg.get(peer, (None,) * 5)
                out.append('  portico/%-8s req/s %s (higher is better)   mean %s   p99 %s   '
                           'cpu/req %s   peak RSS %s (lower is better)' % (
                               peer, ratio(a[0], b[0]), ratio(a[1], b[1]),
                               ratio(a[2], b[2]), ratio(a[3], b[3]), ratio(a[4], b[4])))
    if noisy:
        out.append('')
        out.append('!! other processes used the benchmark CPUs during: %s (median other%%).'
                   % ', '.join(noisy))
        out.append('!! req/s and latency there are unreliable; cpu us/req is less affected.')
    out.append('')
    out.append('== memory per idle TLS connection (RSS growth / connections, after one request each)')
    out.append('%-9s %12s %14s %12s %14s' % ('proxy', 'TLS HTTP/1.1', 'conns open/ok',
                                             'h2 over TLS', 'conns open/ok'))
    agg = {}
    for p in proxies:
        d = R.get(p, {})
        row = []
        for pre in ('tlsidle', 'h2idle'):
            per = med(d.get(pre + '.per_conn'))
            row += [fmt(per, '%.0f'), (d.get(pre + '.alive') or ['-'])[-1] + '/' +
                    (d.get(pre + '.ok') or ['-'])[-1]]
            agg[(p, pre)] = per
        out.append('%-9s %12s %14s %12s %14s' % tuple([p] + row))
    if 'portico' in proxies:
        for peer in proxies:
            if peer != 'portico':
                out.append('  portico/%-8s bytes/conn %s (TLS HTTP/1.1), %s (h2 over TLS) '
                           '(lower is better)' % (
                               peer, ratio(agg[('portico', 'tlsidle')], agg[(peer, 'tlsidle')]),
                               ratio(agg[('portico', 'h2idle')], agg[(peer, 'h2idle')])))


def cmd_report(path, proxies, workloads, tls_proxies='', tls_workloads=''):
    R = load(path)
    proxies = proxies.split(',')
    workloads = [w.split(':', 1) for w in workloads.split(',')]
    W = 78
    out = []
    noisy = []
    status = {p: (R.get(p, {}).get('status') or ['phase skipped'])[-1] for p in proxies}
    for wname, wdesc in workloads:
        out.append('')
        out.append('== %s: %s' % (wname, wdesc))
        out.append('%-9s %9s %9s %9s %10s %6s %6s %10s %5s %6s  %s' % (
            'proxy', 'req/s', 'p99', 'p99 max', 'peak RSS', 'CPU0%', 'other%',
            'cpu us/req', 'sys%', 'errors', 'req/s by round'))
        agg = {}
        for p in proxies:
            d = R.get(p, {})
            rps = med(d.get(wname + '.rps'))
            p99 = med(d.get(wname + '.p99'))
            p99s = [num(v) for v in d.get(wname + '.p99', []) if num(v) is not None]
            hwm = [num(v) for v in d.get(wname + '.hwm', []) if num(v) is not None]
            cpu = med(d.get(wname + '.cpu'))
            cpr = med(d.get(wname + '.cpu_us_per_req'))
            sysp = med(d.get(wname + '.sys_pct'))
            other = med(d.get(wname + '.other_pct'))
            if other is not None and other > 10:
                noisy.append('%s/%s %.0f%%' % (wname, p, other))
            errs = sum(int(num(v) or 0) for v in d.get(wname + '.errors', []))
            rounds = ' '.join('%.0f' % num(v) if num(v) is not None else 'x'
                              for v in d.get(wname + '.rps', []))
            agg[p] = (rps, p99, max(hwm) if hwm else None)
            if not d.get(wname + '.rps'):
                out.append('%-9s %s' % (p, 'not measured (%s)' % status[p]))
                continue
            out.append('%-9s %9s %9s %9s %10s %6s %6s %10s %5s %6d  %s' % (
                p, fmt(rps, '%.0f'), fmt(p99, '%.2f', 'ms'),
                fmt(max(p99s) if p99s else None, '%.2f', 'ms'),
                human_kb(agg[p][2]), fmt(cpu, '%.0f'), fmt(other, '%.0f'),
                fmt(cpr, '%.1f'), fmt(sysp, '%.0f'), errs, rounds))
        if 'portico' in proxies and agg.get('portico', (None,))[0] is not None:
            for peer in proxies:
                if peer == 'portico':
                    continue
                a, b = agg['portico'], agg.get(peer, (None, None, None))
                out.append('  portico/%-8s req/s %s (higher is better)   p99 %s   '
                           'peak RSS %s (lower is better)' % (
                               peer, ratio(a[0], b[0]), ratio(a[1], b[1]),
                               ratio(a[2], b[2])))
    if noisy:
        out.append('')
        out.append('!! other processes used the benchmark CPUs during: %s (median other%%).'
                   % ', '.join(noisy))
        out.append('!! req/s and p99 above are unreliable; the cost and memory'
                   ' numbers below are not affected.')
    # cost per request
    out.append('')
    out.append('== cost per request')
    out.append('%-9s %12s %12s %12s %12s  %s' % (
        'proxy', 'syscalls/req', 'syscalls/req', 'instr/req', 'instr/req',
        'top syscalls per request (small)'))
    out.append('%-9s %12s %12s %12s %12s' % ('', '(small)', '(1 MiB)',
                                             '(small)', '(1 MiB)'))
    agg = {}
    for p in proxies:
        d = R.get(p, {})
        sc = med(d.get('syscalls.small'))
        sb = med(d.get('syscalls.big'))
        ir = med(d.get('instr.small'))
        irb = med(d.get('instr.big'))
        agg[p] = (sc, sb, ir, irb)
        top = (d.get('syscalls.small.top') or [''])[-1]
        out.append('%-9s %12s %12s %12s %12s  %s' % (
            p, fmt(sc, '%.2f'), fmt(sb, '%.1f'), fmt(ir, '%.0f'),
            fmt(irb, '%.0f'), top))
    if 'portico' in proxies:
        for peer in proxies:
            if peer != 'portico':
                a, b = agg['portico'], agg[peer]
                out.append('  portico/%-8s syscalls %s, %s (1 MiB)   instr %s, %s (1 MiB)'
                           '   (lower is better)' % (
                               peer, ratio(a[0], b[0]), ratio(a[1], b[1]),
                               ratio(a[2], b[2]), ratio(a[3], b[3])))
    # idle connections
    out.append('')
    out.append('== memory per idle keep-alive connection')
    out.append('%-9s %12s %12s %12s %s %14s %s' % ('proxy', 'RSS before', 'RSS after',
                                                  'bytes/conn', ' conns open/ok', 'h2c bytes/conn',
                                                  ' open/ok'))
    agg, agg2 = {}, {}
    for p in proxies:
        d = R.get(p, {})
        b, a, per = (med(d.get('idle.before')), med(d.get('idle.after')),
                     med(d.get('idle.per_conn')))
        per2 = med(d.get('h2cidle.per_conn'))
        agg[p], agg2[p] = per, per2
        extra = (d.get('idle.alive') or ['-'])[-1] + '/' + (d.get('idle.ok') or ['-'])[-1]
        extra2 = (d.get('h2cidle.alive') or ['-'])[-1] + '/' + (d.get('h2cidle.ok') or ['-'])[-1]
        out.append('%-9s %12s %12s %12s  %-13s %14s  %s' % (
            p, human_kb(b), human_kb(a), fmt(per, '%.0f'), extra, fmt(per2, '%.0f'), extra2))
    if 'portico' in proxies:
        for peer in proxies:
            if peer != 'portico':
                out.append('  portico/%-8s bytes/conn %s, h2c %s (lower is better)' % (
                    peer, ratio(agg['portico'], agg[peer]), ratio(agg2['portico'], agg2[peer])))
    if tls_proxies:
        tls_report(R, tls_proxies.split(','),
                   [w.split(':', 1) for w in tls_workloads.split(',') if w], out)
    # problems (also of proxies that are only in the TLS section)
    allp = proxies + [p for p in tls_proxies.split(',') if p and p not in proxies]
    notes = [(p, k, v) for p in allp for k in R.get(p, {}) if k == 'problem'
             for v in R[p][k]]
    if notes:
        out.append('')
        out.append('== problems')
        for p, _, v in notes:
            out.append('  %s: %s' % (p, v))
    print('\n'.join(out))


# ---------------------------------------------------------------- WebSocket

WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def ws_handshake(port, path=b"/ws"):
    """A WebSocket through the proxy: the socket after its 101 (raises on anything else)."""
    s = socket.create_connection(("127.0.0.1", int(port)), 10)
    s.settimeout(10)
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: " + WS_KEY +
              b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise OSError("closed before the 101")
        buf += d
    if not buf.startswith(b"HTTP/1.1 101"):
        raise OSError("no 101: %r" % buf[:80])
    head, _, rest = buf.partition(b"\r\n\r\n")
    if rest:
        raise OSError("bytes after the 101")
    return s


def cmd_wsload(port, tunnels='50', seconds='5', size='1024', window='16'):
    """Echo throughput: `tunnels` WebSockets, each with `window` messages of `size` bytes in
    flight (masked binary frames out, the echo's unmasked frames counted back by length).
    Prints: messages echoed, seconds, messages/s."""
    import selectors
    n, secs, size, win = int(tunnels), float(seconds), int(size), int(window)
    mask = b"\x01\x02\x03\x04"
    payload = bytes(size)  # zeros masked with a fixed key: the bytes differ, the cost does not
    hdr_out = (bytes([0x82, 0x80 | 126]) + struct.pack("!H", size) if size < 65536
               else bytes([0x82, 0x80 | 127]) + struct.pack("!Q", size)) + mask
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    frame_out = hdr_out + masked
    frame_in_len = size + (4 if size < 65536 else 10)
    batch = frame_out * win
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        s = ws_handshake(port)
        s.setblocking(False)
        st = {"s": s, "pending": 0, "got": 0}
        socks.append(st)
        sel.register(s, selectors.EVENT_READ, st)
    t0 = time.monotonic()
    done = 0
    for st in socks:
        st["s"].setblocking(True)
        st["s"].sendall(batch)
        st["s"].setblocking(False)
        st["pending"] = win
    end = t0 + secs
    while time.monotonic() < end:
        for key, _ in sel.select(0.5):
            st = key.data
            try:
                d = st["s"].recv(1 << 20)
            except BlockingIOError:
                continue
            if not d:
                raise SystemExit("a tunnel closed")
            st["got"] += len(d)
            k = st["got"] // frame_in_len
            if k:
                st["got"] -= k * frame_in_len
                done += k
                st["pending"] -= k
                if st["pending"] <= win // 2:
                    more = win - st["pending"]
                    st["s"].setblocking(True)
                    st["s"].sendall(frame_out * more)
                    st["s"].setblocking(False)
                    st["pending"] += more
    el = time.monotonic() - t0
    for st in socks:
        st["s"].close()
    print(done, "%.3f" % el, "%.0f" % (done / el))


def cmd_wshold(port, pid, n):
    """RSS per idle tunnel: opens n WebSockets through the proxy (in batches), holds them idle,
    and prints: RSS before (KiB), RSS after (KiB), bytes per tunnel, tunnels open."""
    import resource
    n = int(n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
    except (ValueError, OSError):
        pass
    warm = [ws_handshake(port) for _ in range(50)]
    time.sleep(1.0)
    before = idle_snap(int(pid), 'before')
    socks = list(warm)
    for _ in range(n - len(warm)):
        socks.append(ws_handshake(port))
    time.sleep(1.5)
    after = idle_snap(int(pid), 'after')
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            d = s.recv(1)
            alive += d != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    per = (after - before) * 1024 // max(n - len(warm), 1)
    print(before, after, per, alive)
    for s in socks:
        s.close()


# --------------------------------------------------------------- heap breakdown (massif)

# allocator layers skipped when naming who allocated a block
MASSIF_WRAPPERS = re.compile(
    r'^(malloc|calloc|realloc|free|operator new.*|CRYPTO_(malloc|zalloc|realloc|clear_realloc|'
    r'memdup|strdup|strndup)|default_(malloc|calloc|realloc)|nghttp2_mem_(malloc|calloc|realloc)|'
    r'nghttp2_buf_reserve|nghttp2_buf_init2|nghttp2_bufs_init3?|buf_chain_new|'
    r'count_(malloc|calloc|realloc)|pt_xmalloc|pt_xcalloc|pt_xrealloc|'
    r'BUF_MEM_grow(_clean)?|sk_\w+|OPENSSL_sk_\w+|lh_\w+|OPENSSL_LH_\w+)$')


def massif_tree(path):
    """the last snapshot's heap tree of a massif file -> {call path tuple: bytes}, leaves
    only (each block counted once)"""
    lines = open(path, errors='replace').read().split('\n')
    start = max(i for i, l in enumerate(lines) if l.startswith('heap_tree='))
    leaves, stack = {}, []
    for l in lines[start + 1:]:
        m = re.match(r'^( *)n(\d+): (\d+) (.*)$', l)
        if not m:
            if l.startswith('#') or l.startswith('snapshot='):
                break
            continue
        depth, kids, size, what = len(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        f = re.match(r'^0x[0-9A-Fa-f]+: (\S+)', what)
        name = f.group(1) if f else ('(below threshold)' if 'below' in what else what[:40])
        del stack[depth:]
        stack.append(name)
        if kids == 0:
            key = tuple(stack[1:])
            leaves[key] = leaves.get(key, 0) + size
    return leaves


def massif_owner(path):
    """(library, allocating function): the first frame above the allocator wrappers, and the
    library it belongs to, told by its name"""
    fn = '?'
    for fr in path:
        if not MASSIF_WRAPPERS.match(fr):
            fn = fr
            break
    lib = 'other'
    for fr in path:
        if fr.startswith('nghttp2_') or fr.startswith('session_') and fn.startswith('nghttp2'):
            lib = 'nghttp2'
            break
        if re.match(r'^(SSL_|ssl|tls|ossl|OSSL|EVP_|CRYPTO_|BIO_|ssl3_|RECORD_LAYER|dtls|'
                    r'ENGINE|OPENSSL_|ERR_|X509|ASN1|EC_|BN_|RAND_)', fr):
            lib = 'OpenSSL'
            break
        if fr.startswith('pt_') or fr in ('main',):
            lib = 'portico'
            break
    if lib == 'other' and fn.startswith('pt_'):
        lib = 'portico'
    return lib, fn


def cmd_massifdiff(before, after, n, top='14'):
    """heap bytes per connection between two massif snapshots (bench/idle.sh MASSIF=1):
    by library (portico, nghttp2, OpenSSL) and by allocating function"""
    n, top = int(n), int(top)
    a, b = massif_tree(before), massif_tree(after)
    by_lib, by_fn = {}, {}
    for key in set(a) | set(b):
        d = b.get(key, 0) - a.get(key, 0)
        if d == 0:
            continue
        lib, fn = massif_owner(key)
        by_lib[lib] = by_lib.get(lib, 0) + d
        by_fn[(lib, fn)] = by_fn.get((lib, fn), 0) + d
    total = sum(by_lib.values())
    print('  heap per connection (massif, requested bytes + 8 B per block): %.0f B' % (total / n))
    for lib, d in sorted(by_lib.items(), key=lambda x: -x[1]):
        print('    %-8s %8.0f B' % (lib, d / n))
    print('  by allocating function (per connection, largest first):')
    for (lib, fn), d in sorted(by_fn.items(), key=lambda x: -x[1])[:top]:
        if abs(d) / n >= 1:
            print('    %8.0f B  %-8s %s' % (d / n, lib, fn))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    fn = globals().get('cmd_' + sys.argv[1].replace('-', '_'))
    if not fn:
        sys.exit('unknown command ' + sys.argv[1])
    fn(*sys.argv[2:])


if __name__ == '__main__':
    main()
