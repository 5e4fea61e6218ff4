#!/usr/bin/python3
"""Helpers for bench/run.sh: process-tree memory/CPU, wrk/strace/callgrind
parsing, a fixed-count keep-alive client, the idle-connection probe and the
final report.  Standard library only; run with /usr/bin/python3.

Usage: benchlib.py COMMAND ARGS...   (see the functions named cmd_*)
"""
import os
import re
import socket
import statistics
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


def cmd_idle(port, pid, n, path='/small'):
    """Memory per idle connection: warm up, read tree RSS, open n keep-alive
    connections each after one complete request, wait, read RSS again.
    Prints: before_kB after_kB bytes_per_conn ok_conns."""
    port, pid, n = int(port), int(pid), int(n)
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
    before = tree_kb(pid, 'VmRSS')
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
    after = tree_kb(pid, 'VmRSS')
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


def cmd_report(path, proxies, workloads):
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
    out.append('%-9s %12s %12s %12s %s' % ('proxy', 'RSS before', 'RSS after',
                                          'bytes/conn', ' conns open/ok'))
    agg = {}
    for p in proxies:
        d = R.get(p, {})
        b, a, per = (med(d.get('idle.before')), med(d.get('idle.after')),
                     med(d.get('idle.per_conn')))
        agg[p] = per
        extra = (d.get('idle.alive') or ['-'])[-1] + '/' + (d.get('idle.ok') or ['-'])[-1]
        out.append('%-9s %12s %12s %12s  %s' % (p, human_kb(b), human_kb(a),
                                               fmt(per, '%.0f'), extra))
    if 'portico' in proxies:
        for peer in proxies:
            if peer != 'portico':
                out.append('  portico/%-8s bytes/conn %s (lower is better)' % (
                    peer, ratio(agg['portico'], agg[peer])))
    # problems
    notes = [(p, k, v) for p in proxies for k in R.get(p, {}) if k == 'problem'
             for v in R[p][k]]
    if notes:
        out.append('')
        out.append('== problems')
        for p, _, v in notes:
            out.append('  %s: %s' % (p, v))
    print('\n'.join(out))


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
