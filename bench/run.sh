#!/usr/bin/env bash
# portico benchmark harness: portico vs HAProxy vs nginx as HTTP/1.1 reverse
# proxies in front of one shared nginx backend, all on 127.0.0.1; then (TLS
# section) portico vs HAProxy vs nginx vs nghttpx terminating TLS, h2 and
# HTTP/1.1, in front of the same backend.
# See bench/README.md.  Knobs (env):
#   PORTICO_BIN   portico binary (default <repo>/portico; skipped if missing)
#   PROXIES       which proxies, default "portico haproxy nginx"
#   ROUNDS=3      interleaved wrk rounds (medians are reported)
#   DURATION=5s   wrk duration per run;  WARMUP=1s (first round only)
#   SMALL_CONNS=50  BIG_CONNS=10   wrk connections per workload
#   RATE_CONNS=50 RATE_RPS=1200   latency at one offered load for every proxy (h2load --h1
#                 --rps: RATE_CONNS x RATE_RPS requests a second, 60 000 by default, below
#                 what any of them saturates at here); RATE_CONNS=0 skips it
#   COUNT_N=20000 BIG_COUNT_N=500 fixed-count requests for strace (small, 1 MiB)
#   CG_N=2000 CG_BIG_N=100   requests measured under callgrind (small, 1 MiB)
#   IDLE_N=2000   idle keep-alive connections for the memory test
#   SKIP_CALLGRIND=1 SKIP_STRACE=1 SKIP_IDLE=1 SKIP_WRK=1   skip a phase
#   PROXY_CPU=0 LOAD_CPU=1   CPUs for the proxies / for wrk + backend
#   NO_H2LOAD=1   use the python fixed-count client even if h2load exists
#   COUNT_TIMEOUT=60  seconds allowed for one fixed-count run
#   WAIT_QUIET=N  first wait up to N s for the CPUs to be idle (shared machine)
#   NOISE_MAX=15 NOISE_RETRIES=2 RETRY_BUDGET=60   a wrk run during which other
#                 processes used > NOISE_MAX % CPU is repeated (the least noisy
#                 attempt is kept), spending at most RETRY_BUDGET s in all
#   KEEP_TMP=1    keep the temp dir (configs, logs, raw outputs)
# TLS section (SKIP_IDLE / SKIP_WRK / ROUNDS / WARMUP apply to it too):
#   SKIP_TLS=1    skip the TLS section
#   TLS_PROXIES   default "$PROXIES nghttpx"
#   TLS_DURATION=5s  duration of the h2 and TLS HTTP/1.1 small-body runs
#   H2_CONNS=50 H2_STREAMS=10   h2load -c / -m for h2 small body
#   TLS_H1_CONNS=50             wrk -c for TLS HTTP/1.1 small body
#   H2_BIG_CONNS=10 H2_BIG_DURATION=3s   h2 1 MiB body (h2load -m1); 0 conns: skip
#   TLS_IDLE_N=1000   idle TLS and idle h2 connections for the memory test
# WebSocket section (bench/ws.sh, its knobs there): SKIP_WS=1 skips it
# Layer 4 section (bench/stream.sh, its knobs there): SKIP_STREAM=1 skips it
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PY=/usr/bin/python3
LIB="$HERE/benchlib.py"
lib() { "$PY" "$LIB" "$@"; }

PORTICO_BIN=${PORTICO_BIN:-$REPO/portico}
PROXIES=${PROXIES:-portico haproxy nginx}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
SMALL_CONNS=${SMALL_CONNS:-50}
BIG_CONNS=${BIG_CONNS:-10}
COUNT_N=${COUNT_N:-20000}
BIG_COUNT_N=${BIG_COUNT_N:-500}
CG_N=${CG_N:-2000}
CG_BIG_N=${CG_BIG_N:-100}
IDLE_N=${IDLE_N:-2000}
SKIP_CALLGRIND=${SKIP_CALLGRIND:-0}
SKIP_STRACE=${SKIP_STRACE:-0}
SKIP_IDLE=${SKIP_IDLE:-0}
# idle backend connections kept by portico and nginx (HAProxy's idle pool is unbounded by
# default): with 50 h2 connections x 10 streams, 500 backend requests are in flight at once, and
# a smaller cap closes and reopens most backend connections (6 syscalls each)
POOL=${POOL:-1024}
SKIP_WRK=${SKIP_WRK:-0}
RATE_CONNS=${RATE_CONNS:-50}
RATE_RPS=${RATE_RPS:-1200}
SKIP_TLS=${SKIP_TLS:-0}
TLS_PROXIES=${TLS_PROXIES:-$PROXIES nghttpx}
TLS_DURATION=${TLS_DURATION:-5s}
H2_CONNS=${H2_CONNS:-50}
H2_STREAMS=${H2_STREAMS:-10}
TLS_H1_CONNS=${TLS_H1_CONNS:-50}
H2_BIG_CONNS=${H2_BIG_CONNS:-10}
H2_BIG_DURATION=${H2_BIG_DURATION:-3s}
TLS_IDLE_N=${TLS_IDLE_N:-1000}
KEEP_TMP=${KEEP_TMP:-0}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    PROXY_CPU=${PROXY_CPU:-0}; LOAD_CPU=${LOAD_CPU:-1}
else
    PROXY_CPU=${PROXY_CPU:-0}; LOAD_CPU=${LOAD_CPU:-0}
fi

CPUS=$PROXY_CPU; [ "$LOAD_CPU" != "$PROXY_CPU" ] && CPUS="$PROXY_CPU,$LOAD_CPU"
T0=$(date +%s)
log() { printf '# [%3ds] %s\n' $(( $(date +%s) - T0 )) "$*"; }
die() { log "FATAL: $*"; exit 1; }

# ------------------------------------------------------------------ tools
need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
for pair in wrk:wrk haproxy:haproxy nginx:nginx-light valgrind:valgrind \
            strace:strace taskset:util-linux; do
    have "${pair%%:*}" || need_pkgs+=("${pair#*:}")
done
if [ "$SKIP_TLS" != 1 ]; then
    for pair in h2load:nghttp2-client nghttpx:nghttp2-proxy openssl:openssl; do
        have "${pair%%:*}" || need_pkgs+=("${pair#*:}")
    done
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing missing packages: ${need_pkgs[*]}"
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q "${need_pkgs[@]}" >/dev/null 2>&1 ||
        { $SUDO apt-get update -q >/dev/null 2>&1 &&
          $SUDO apt-get install -y -q "${need_pkgs[@]}" >/dev/null; } ||
        die "apt-get install ${need_pkgs[*]} failed"
fi
export PATH="$PATH:/usr/sbin:/sbin"
[ -x "$PY" ] || die "$PY not found"
HAVE_H2LOAD=0; [ "${NO_H2LOAD:-0}" != 1 ] && command -v h2load >/dev/null 2>&1 && HAVE_H2LOAD=1

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ------------------------------------------------------------------ temp dir, cleanup
T=$(mktemp -d /tmp/portico-bench.XXXXXX)
chmod 755 "$T"
RES="$T/results.tsv"
: >"$RES"
. "$HERE/proc.sh"   # STARTED, stop_pid, cleanup at exit
trap 'log "interrupted"; exit 130' INT TERM

rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; }
problem() { log "PROBLEM $1: $2"; rec "$1" problem "$2"; }

read -r BACKEND_PORT P_portico P_haproxy P_nginx CG_PORT \
        P_tls_portico P_tls_haproxy P_tls_nginx P_tls_nghttpx <<<"$(lib freeports 9)"

# ------------------------------------------------------------------ header
echo "portico benchmark -- $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host: $(uname -sr), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load avg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peers: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2)"
[ "$SKIP_TLS" != 1 ] && echo "TLS peers: $(nghttpx --version 2>/dev/null | head -1); $(h2load --version 2>/dev/null | head -1); $(openssl version 2>/dev/null | cut -d' ' -f1-2)"
if [ -x "$PORTICO_BIN" ]; then
    echo "portico: $PORTICO_BIN ($("$PORTICO_BIN" -v 2>&1 | head -1))"
fi
echo "layout: proxies on CPU $PROXY_CPU; wrk/h2load + backend nginx on CPU $LOAD_CPU; 1 worker each; rounds=$ROUNDS duration=$DURATION"
echo

# ------------------------------------------------------------------ backend
mkdir -p "$T/www" "$T/tmp"
chmod 777 "$T/tmp"
head -c 1048576 /dev/urandom >"$T/www/1m"
chmod -R a+rX "$T/www"
USER_LINE=; [ "$(id -u)" -eq 0 ] && USER_LINE="user root;"
NGX_TMP="client_body_temp_path $T/tmp/cb; proxy_temp_path $T/tmp/px;
    fastcgi_temp_path $T/tmp/fc; uwsgi_temp_path $T/tmp/uw; scgi_temp_path $T/tmp/sc;"

cat >"$T/backend.conf" <<EOF
$USER_LINE
daemon off;
worker_processes 1;
pid $T/backend.pid;
error_log $T/backend.err warn;
worker_rlimit_nofile 20000;
events { worker_connections 10000; }
http {
    access_log off;
    $NGX_TMP
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        root $T/www;
        location = /small { default_type text/plain; return 200 "hello, world\n"; }
        location / { }
    }
}
EOF

log "starting backend nginx on 127.0.0.1:$BACKEND_PORT (CPU $LOAD_CPU), tmp $T"
taskset -c "$LOAD_CPU" nginx -c "$T/backend.conf" -p "$T" >"$T/backend.log" 2>&1 &
BACKEND_PID=$!
STARTED+=("$BACKEND_PID")
lib waitport "$BACKEND_PORT" 10 "$BACKEND_PID" || { cat "$T/backend.log" "$T/backend.err" 2>/dev/null; die "backend did not start"; }

# ------------------------------------------------------------------ proxy configs
write_portico_conf() {  # PORT FILE
    cat >"$2" <<EOF
workers 1;
access_log off;
error_log stderr warn;
upstream b {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive $POOL;
}
server {
    listen 127.0.0.1:$1;
    keepalive_requests 1000000000; # h2load (the rate workload) does not reconnect
    client_max_body_size 0;
    location / { proxy_pass b; }
}
EOF
}

write_haproxy_conf() {  # PORT FILE
    cat >"$2" <<EOF
global
    nbthread 1
    maxconn 8000
    pidfile $T/haproxy-$1.pid
defaults
    mode http
    maxconn 8000
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 75s
frontend fe
    bind 127.0.0.1:$1
    default_backend b
backend b
    server s1 127.0.0.1:$BACKEND_PORT
EOF
}

write_nginx_conf() {    # PORT FILE [single]  (single: no master, for valgrind)
    local mp="master_process on;"
    [ "${3:-}" = single ] && mp="master_process off;"
    cat >"$2" <<EOF
$USER_LINE
daemon off;
$mp
worker_processes 1;
pid $T/nginx-$1.pid;
error_log $T/nginx-$1.err warn;
worker_rlimit_nofile 20000;
events { worker_connections 10000; }
http {
    access_log off;
    $NGX_TMP
    upstream b {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive $POOL;
    }
    server {
        listen 127.0.0.1:$1 backlog=4096;
        # h2load (the rate workload) does not reconnect; wrk does
        keepalive_requests 1000000000;
        client_max_body_size 0;
        location / {
            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
}

# TLS section: the same proxies terminating TLS (h2 and HTTP/1.1 by ALPN),
# cert/key in $T/tls (EC P-256, self-signed), same cleartext backend.
# OpenSSL's default TLS 1.3 suite order, offered by h2load (whose own
# default puts AES-128 first) and set in nghttpx, so that every proxy,
# whether it prefers its own order or the client's, picks the same suite
TLS13_SUITES=TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256
write_portico_tls_conf() {  # PORT FILE
    cat >"$2" <<EOF
workers 1;
access_log off;
error_log stderr warn;
upstream b {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive $POOL;
}
server {
    listen 127.0.0.1:$1 tls;
    tls_certificate $T/tls/cert.pem;
    tls_certificate_key $T/tls/key.pem;
    keepalive_requests 1000000000;
    client_max_body_size 0;
    location / { proxy_pass b; }
}
EOF
}

write_haproxy_tls_conf() {  # PORT FILE
    write_haproxy_conf "$1" "$2"
    sed -i "s|^    bind 127.0.0.1:$1\$|    bind 127.0.0.1:$1 ssl crt $T/tls/haproxy.pem alpn h2,http/1.1|" "$2"
    grep -q "ssl crt" "$2" || die "haproxy TLS config: bind line not rewritten"
}

write_nginx_tls_conf() {    # PORT FILE
    write_nginx_conf "$1" "$2"
    # nginx < 1.23.4 leaves TLSv1.3 out of its default ssl_protocols; its
    # keepalive_requests (1000) also ends h2 connections (GOAWAY), and
    # h2load does not reconnect, so it is lifted here (portico's too)
    sed -i -e "s|^        listen 127.0.0.1:$1 backlog=4096;|        listen 127.0.0.1:$1 ssl http2 backlog=4096;\n        ssl_certificate $T/tls/cert.pem;\n        ssl_certificate_key $T/tls/key.pem;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        keepalive_requests 10000000;|" "$2"
    grep -q "ssl http2" "$2" || die "nginx TLS config: listen line not rewritten"
}

# proxy_cmd NAME PORT [single] -> prints nothing, sets CMD array (config written)
proxy_cmd() {
    local name=$1 port=$2 conf="$T/$1-$2.conf"
    case $name in
        portico) write_portico_conf "$port" "$conf"; CMD=("$PORTICO_BIN" -c "$conf") ;;
        haproxy) write_haproxy_conf "$port" "$conf"; CMD=(haproxy -db -f "$conf") ;;
        nginx)   write_nginx_conf "$port" "$conf" "${3:-}"; CMD=(nginx -c "$conf" -p "$T") ;;
        tls-portico) write_portico_tls_conf "$port" "$conf"; CMD=("$PORTICO_BIN" -c "$conf") ;;
        tls-haproxy) write_haproxy_tls_conf "$port" "$conf"; CMD=(haproxy -db -f "$conf") ;;
        tls-nginx)   write_nginx_tls_conf "$port" "$conf"; CMD=(nginx -c "$conf" -p "$T") ;;
        # an empty --conf keeps /etc/nghttpx/nghttpx.conf out; no access log
        # by default; --no-ocsp: no OCSP fetch helper (self-signed cert);
        # TLS 1.3 suites in OpenSSL's order (nghttpx puts AES-128 first)
        tls-nghttpx) : >"$conf"
                 CMD=(nghttpx --conf="$conf" --frontend="127.0.0.1,$port" \
                      --backend="127.0.0.1,$BACKEND_PORT" --workers=1 --no-ocsp \
                      --tls13-ciphers="$TLS13_SUITES" \
                      "$T/tls/key.pem" "$T/tls/cert.pem") ;;
    esac
}

# check_proxy NAME PORT: one small + one 1 MiB request must succeed
check_proxy() {
    "$PY" -B -c '
import sys, socket
sys.path.insert(0, sys.argv[3])
import benchlib as b
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), 5)
s.settimeout(5)
for path, want in (("/small", b"hello, world\n"), ("/1m", open(sys.argv[2], "rb").read()), ("/small", b"hello, world\n")):
    s.sendall(b.request_bytes(port, path))
    # read whole response and compare the body
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d: sys.exit("EOF before response head for " + path)
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    clen = None
    for l in head.split(b"\r\n")[1:]:
        k, _, v = l.partition(b":")
        if k.strip().lower() == b"content-length": clen = int(v)
    if status != 200: sys.exit("status %d for %s" % (status, path))
    if clen is None:
        # chunked: reuse the library reader (body is not compared then)
        b.read_response(s, buf); continue
    while len(rest) < clen:
        d = s.recv(1 << 20)
        if not d: sys.exit("EOF in body for " + path)
        rest += d
    if rest[:clen] != want: sys.exit("wrong body for " + path)
' "$2" "$T/www/1m" "$HERE" 2>&1
}

declare -A PID PORT
start_proxy() {         # NAME
    local name=$1 port
    case $name in
        portico|haproxy|nginx) eval "port=\$P_$name" ;;
        tls-portico|tls-haproxy|tls-nginx|tls-nghttpx) eval "port=\$P_${name/-/_}" ;;
        tls-*) log "unknown proxy '${name#tls-}' in TLS_PROXIES (portico haproxy nginx nghttpx) -- skipped"; return 1 ;;
        *) log "unknown proxy '$name' in PROXIES (portico haproxy nginx) -- skipped"; return 1 ;;
    esac
    if [ "${name#tls-}" = portico ]; then
        if [ ! -x "$PORTICO_BIN" ]; then
            log "portico: binary $PORTICO_BIN not found or not executable -- skipping portico"
            log "         (build it, or set PORTICO_BIN=/path/to/portico)"
            rec "$name" status "skipped: no binary at $PORTICO_BIN"
            return 1
        fi
        proxy_cmd "$name" "$port"
        local tout
        if ! tout=$("$PORTICO_BIN" -t -c "$T/$name-$port.conf" 2>&1); then
            problem "$name" "config test failed: $(echo "$tout" | tr '\n' ' ')"
            rec "$name" status "config test failed"
            return 1
        fi
    else
        proxy_cmd "$name" "$port"
    fi
    taskset -c "$PROXY_CPU" "${CMD[@]}" >"$T/$name.log" 2>&1 &
    PID[$name]=$!
    PORT[$name]=$port
    STARTED+=("${PID[$name]}")
    if ! lib waitport "$port" 10 "${PID[$name]}"; then
        problem "$name" "exited or did not listen on $port within 10s; log: $(tail -c 400 "$T/$name.log" | tr '\n' ' ')"
        rec "$name" status "failed to start"
        stop_pid "${PID[$name]}" 1
        return 1
    fi
    local err
    if [ "${name#tls-}" != "$name" ]; then
        err=$(lib tlscheck "$port" "$T/www/1m" 2>&1)
    else
        err=$(check_proxy "$name" "$port")
    fi
    if [ $? != 0 ]; then
        problem "$name" "sanity check failed: $(echo "$err" | tail -c 400 | tr '\n' ' ')"
        rec "$name" status "failed sanity check"
        stop_pid "${PID[$name]}" 1
        return 1
    fi
    log "$name: pid ${PID[$name]} on 127.0.0.1:$port (CPU $PROXY_CPU), sanity check ok${err:+ ($err)}"
    [ -n "$err" ] && rec "$name" tls.negotiated.h1 "$err"
    return 0
}

alive() {               # NAME -> 0 if its process is still running
    lib alive "${PID[$1]}"
}

# a proxy that died: record it, drop it from ACTIVE
ACTIVE=()
mark_dead() {           # NAME WHAT
    local rc how
    wait "${PID[$1]}" 2>/dev/null; rc=$?
    if [ "$rc" -gt 128 ]; then how="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
    else how="exit status $rc"; fi
    problem "$1" "process exited ($how) during $2; last log lines: $(tail -c 600 "$T/$1.log" | tr '\n' ' ')"
    rec "$1" status "died during $2"
    drop_active "$1"
}
drop_active() {         # NAME: remove from ACTIVE
    local a=() p
    for p in "${ACTIVE[@]}"; do [ "$p" != "$1" ] && a+=("$p"); done
    ACTIVE=("${a[@]}")
}

# ------------------------------------------------------------------ wait for quiet
# wait_quiet MAXSEC: wait up to MAXSEC seconds until the benchmark CPUs are
# idle (<15 % busy over 2 s), so that other work on a shared machine does not
# skew req/s.  WAIT_QUIET=N does this once before starting.
wait_quiet() {
    local end=$(( $(date +%s) + $1 )) b0 a0 b1 a1 busy
    while :; do
        read -r b0 a0 <<<"$(lib cpustat "$CPUS")"; sleep 2
        read -r b1 a1 <<<"$(lib cpustat "$CPUS")"
        busy=$(( 100 * (b1 - b0) / (a1 - a0 > 0 ? a1 - a0 : 1) ))
        [ "$busy" -lt 15 ] && { log "machine quiet (${busy}% busy)"; return 0; }
        [ "$(date +%s)" -ge "$end" ] && { log "machine still ${busy}% busy after ${1}s, going on"; return 1; }
        log "waiting for a quiet machine: ${busy}% busy"
        sleep 1
    done
}
[ "${WAIT_QUIET:-0}" -gt 0 ] && wait_quiet "$WAIT_QUIET"

# ------------------------------------------------------------------ start proxies
for p in $PROXIES; do
    start_proxy "$p" && ACTIVE+=("$p")
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no proxy could be started"

# ------------------------------------------------------------------ idle connections
if [ "$SKIP_IDLE" != 1 ]; then
    for p in "${ACTIVE[@]}"; do
        log "idle: $IDLE_N keep-alive connections to $p"
        if out=$(lib idle "${PORT[$p]}" "${PID[$p]}" "$IDLE_N" 2>"$T/idle-$p.err"); then
            read -r before after per ok alive_n <<<"$out"
            rec "$p" idle.before "$before"; rec "$p" idle.after "$after"
            rec "$p" idle.per_conn "$per"; rec "$p" idle.ok "$ok"; rec "$p" idle.alive "$alive_n"
            [ "$ok" != "$IDLE_N" ] && problem "$p" "idle test: only $ok of $IDLE_N requests got 200"
            [ "$alive_n" != "$IDLE_N" ] && problem "$p" "idle test: only $alive_n of $IDLE_N connections still open after 1.5s"
        else
            problem "$p" "idle test failed: $(tail -c 300 "$T/idle-$p.err" | tr '\n' ' ')"
        fi
        alive "$p" || { mark_dead "$p" "idle test"; continue; }
        # h2c (prior knowledge) on a fresh process; nginx cannot serve h2c and HTTP/1.1 on
        # one cleartext listener, so it is left out
        [ "$p" = nginx ] && continue
        stop_pid "${PID[$p]}" 5
        start_proxy "$p" || { drop_active "$p"; continue; }
        log "idle: $IDLE_N h2c connections to $p"
        if out=$(lib tlsidle "${PORT[$p]}" "${PID[$p]}" "$IDLE_N" h2c 2>"$T/h2cidle-$p.err"); then
            read -r before after per ok alive_n <<<"$out"
            rec "$p" h2cidle.per_conn "$per"; rec "$p" h2cidle.ok "$ok"; rec "$p" h2cidle.alive "$alive_n"
            [ "$ok" != "$IDLE_N" ] && problem "$p" "h2c idle test: only $ok of $IDLE_N requests got 200"
            [ "$alive_n" != "$IDLE_N" ] && problem "$p" "h2c idle test: only $alive_n of $IDLE_N connections still open after 1.5s"
        else
            problem "$p" "h2c idle test failed: $(tail -c 300 "$T/h2cidle-$p.err" | tr '\n' ' ')"
        fi
        alive "$p" || mark_dead "$p" "h2c idle test"
    done
fi

# ------------------------------------------------------------------ wrk rounds
# workload table (RW): name kind path conns streams duration; kind is wrk
# (cleartext), wrktls (wrk over TLS, HTTP/1.1), h2load (h2 over TLS) or h2rate (cleartext
# HTTP/1.1 at a fixed offered load: what issue 18 compares p99 at)
WORKLOADS=("small wrk /small $SMALL_CONNS 1 $DURATION" "big wrk /1m $BIG_CONNS 1 $DURATION")
WDESC="small:13 B body - wrk -t1 -c$SMALL_CONNS -d$DURATION,big:1 MiB body - wrk -t1 -c$BIG_CONNS -d$DURATION"
if [ "$RATE_CONNS" -gt 0 ]; then
    WORKLOADS+=("rate h2rate /small $RATE_CONNS 1 $DURATION")
    WDESC="$WDESC,rate:13 B body at one offered load for all - h2load --h1 -t1 -c$RATE_CONNS --rps=$RATE_RPS ($((RATE_CONNS * RATE_RPS)) req/s) -D $DURATION; compare p99 and cpu us/req"
fi

dur_s() {               # 5s -> 5, 1m -> 60, 500ms -> 1
    case $1 in
        *ms) echo 1 ;;
        *s) echo "${1%s}" ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *) echo "$1" ;;
    esac
}

# run_load KIND NAME PATH CONNS STREAMS DURATION OUTFILE; the load
# generator's CPU s -> OUTFILE.time (h2load's per-request log: OUTFILE.log)
run_load() {
    local TIMEFORMAT='%U %S' kind=$1 port=${PORT[$2]}
    case $kind in
        wrk) { time taskset -c "$LOAD_CPU" wrk -t1 -c"$4" -d"$6" --latency \
                   "http://127.0.0.1:$port$3" >"$7" 2>&1; } 2>"$7.time" ;;
        wrktls) { time taskset -c "$LOAD_CPU" wrk -t1 -c"$4" -d"$6" --latency \
                   "https://127.0.0.1:$port$3" >"$7" 2>&1; } 2>"$7.time" ;;
        h2load) { time taskset -c "$LOAD_CPU" timeout -k 5 $(( $(dur_s "$6") + 30 )) \
                   h2load -t1 -c"$4" -m"$5" -D "$6" --log-file="$7.log" --tls13-ciphers="$TLS13_SUITES" \
                   "https://127.0.0.1:$port$3" >"$7" 2>&1; } 2>"$7.time" ;;
        h2rate) { time taskset -c "$LOAD_CPU" timeout -k 5 $(( $(dur_s "$6") + 30 )) \
                   h2load --h1 -t1 -c"$4" --rps="$RATE_RPS" -D "$6" --log-file="$7.log" \
                   "http://127.0.0.1:$port$3" >"$7" 2>&1; } 2>"$7.time" ;;
    esac
}

# measure NAME WNAME PATH CONNS OUT KIND STREAMS DURATION: one load run with
# CPU/memory accounting.  Sets M (space-separated: rps p99 hwm errs cpu cpr
# sys other reqs) and MX (mean max protocol tls); returns 1 if the proxy died.
measure() {
    local p=$1 wname=$2 wpath=$3 wconns=$4 out=$5 kind=${6:-wrk} wstreams=${7:-1} wdur=${8:-$DURATION}
    local c0 s0 c1 s1 t0 t1 b0 a0 b1 a1 k0 k1 wu ws hwm rps p99 reqs errs cpu cpr sys other _
    local mean max proto tls parser=wrk
    { [ "$kind" = h2load ] || [ "$kind" = h2rate ]; } && parser=h2load
    lib clear-hwm "${PID[$p]}"
    read -r c0 s0 <<<"$(lib cpu "${PID[$p]}")"; t0=$(date +%s.%N)
    read -r b0 a0 <<<"$(lib cpustat "$CPUS")"
    read -r k0 _ <<<"$(lib cpu "$BACKEND_PID")"
    run_load "$kind" "$p" "$wpath" "$wconns" "$wstreams" "$wdur" "$out"
    t1=$(date +%s.%N)
    alive "$p" || return 1
    read -r c1 s1 <<<"$(lib cpu "${PID[$p]}")"
    read -r b1 a1 <<<"$(lib cpustat "$CPUS")"
    read -r k1 _ <<<"$(lib cpu "$BACKEND_PID")"
    read -r wu ws <<<"$(tail -1 "$out.time")"
    hwm=$(lib mem "${PID[$p]}" VmHWM)
    read -r rps p99 reqs errs mean max proto tls <<<"$(lib parse-load "$parser" "$out")"
    # other = CPU time used on the benchmark CPUs by anything but the proxy,
    # the backend and the load generator (noise from other processes), in %
    # of one CPU
    read -r cpu cpr sys other <<<"$("$PY" -c "
hz = $(getconf CLK_TCK); ncpu = len('$CPUS'.split(','))
dc, ds, wall = $c1 - $c0, $s1 - $s0, $t1 - $t0
cpu = 100.0 * dc / wall
cpr = '%.2f' % (1e6 * dc / $reqs) if $reqs else 'nan'
sysp = '%.0f' % (100.0 * ds / dc) if dc > 0 else 'nan'
tick_wall = ($a1 - $a0) / ncpu / hz
ours = dc + ($k1 - $k0) + ${wu:-0} + ${ws:-0}
other = max(0.0, 100.0 * (($b1 - $b0) / hz - ours) / max(tick_wall, 1e-9))
print('%.1f %s %s %.1f' % (cpu, cpr, sysp, other))")"
    M="$rps $p99 $hwm $errs $cpu $cpr $sys $other $reqs"
    MX="$mean $max $proto $tls"
    return 0
}

NOISE_MAX=${NOISE_MAX:-15}
NOISE_RETRIES=${NOISE_RETRIES:-2}
RETRY_BUDGET=${RETRY_BUDGET:-60}
retry_spent=0

# run_rounds: ROUNDS interleaved rounds of the workloads in RW over the
# proxies in ACTIVE; a noisy run is repeated (the least noisy attempt is
# kept).  Records NAME WNAME.{rps,p99,hwm,errors,cpu,cpu_us_per_req,sys_pct,
# other_pct} and, for TLS kinds, WNAME.{mean,max} and tls.negotiated.
run_rounds() {
    local r i n w p order wname kind wpath wconns wstreams wdur att out rs
    local best best_x best_other errs_all died
    local rps p99 hwm errs cpu cpr sys other reqs mean max proto tls
    for ((r = 1; r <= ROUNDS; r++)); do
        # rotate the order every round: 1: a b c, 2: b c a, 3: c a b
        order=()
        n=${#ACTIVE[@]}
        for ((i = 0; i < n; i++)); do order+=("${ACTIVE[$(( (i + r - 1) % n ))]}"); done
        for w in "${RW[@]}"; do
            read -r wname kind wpath wconns wstreams wdur <<<"$w"
            for p in "${order[@]}"; do
                # skip proxies that died earlier
                case " ${ACTIVE[*]} " in *" $p "*) ;; *) continue ;; esac
                if [ "$r" = 1 ] && [ -n "$WARMUP" ] && [ "$WARMUP" != 0 ]; then
                    run_load "$kind" "$p" "$wpath" "$wconns" "$wstreams" "$WARMUP" "$T/warm-$p-$wname.txt"
                fi
                best= best_x= best_other= errs_all=0 died=0
                for ((att = 0; att <= NOISE_RETRIES; att++)); do
                    out="$T/$kind-$p-$wname-$r.$att.txt"
                    if ! measure "$p" "$wname" "$wpath" "$wconns" "$out" "$kind" "$wstreams" "$wdur"; then
                        problem "$p" "round $r $wname: $kind said: $(grep -E 'requests in|Socket errors|Non-2xx|unable|^requests:|^status codes:|rror' "$out" | head -5 | tr '\n' ' ')"
                        mark_dead "$p" "$kind $wname round $r"
                        died=1; break
                    fi
                    read -r rps p99 hwm errs cpu cpr sys other reqs <<<"$M"
                    read -r mean max proto tls <<<"$MX"
                    if [ "$kind" = wrk ]; then
                        log "round $r $wname $p: $rps req/s, p99 ${p99}ms, peak RSS ${hwm} kB, CPU ${cpu}%, others on CPU $CPUS ${other}%, errors $errs"
                    else
                        log "round $r $wname $p: $rps req/s, mean ${mean}ms p99 ${p99}ms max ${max}ms, peak RSS ${hwm} kB, CPU ${cpu}%, others on CPU $CPUS ${other}%, errors $errs ($proto)"
                    fi
                    errs_all=$((errs_all + errs))
                    if [ "$errs" != 0 ]; then
                        problem "$p" "round $r $wname: $errs $kind errors: $(grep -E 'Socket errors|Non-2xx|^requests:|^status codes:' "$out" | tr '\n' ' ')"
                    fi
                    if [ "$rps" = nan ]; then
                        problem "$p" "round $r $wname: $kind produced no result: $(tail -c 300 "$out" | tr '\n' ' ')"
                    fi
                    if [ "$kind" = h2load ] && [ "$proto" != h2 ] && [ "$rps" != nan ]; then
                        problem "$p" "round $r $wname: h2load negotiated '$proto', not h2"
                    fi
                    if [ -z "$best" ] || "$PY" -c "import sys; sys.exit(0 if $other < $best_other else 1)"; then
                        best=$M best_x=$MX best_other=$other
                    fi
                    # noisy? wait for quiet and measure again, within budget
                    "$PY" -c "import sys; sys.exit(0 if $other > $NOISE_MAX else 1)" || break
                    [ "$att" -lt "$NOISE_RETRIES" ] || break
                    [ "$retry_spent" -lt "$RETRY_BUDGET" ] || { log "retry budget (${RETRY_BUDGET}s) used up, keeping noisy result"; break; }
                    rs=$(date +%s)
                    log "noisy (${other}% other CPU use), measuring again"
                    wait_quiet 10 >/dev/null
                    retry_spent=$(( retry_spent + $(date +%s) - rs + $(dur_s "$wdur") ))
                done
                [ "$died" = 1 ] && continue
                read -r rps p99 hwm errs cpu cpr sys other reqs <<<"$best"
                rec "$p" "$wname.rps" "$rps"; rec "$p" "$wname.p99" "$p99"
                rec "$p" "$wname.hwm" "$hwm"; rec "$p" "$wname.errors" "$errs_all"
                rec "$p" "$wname.cpu" "$cpu"; rec "$p" "$wname.cpu_us_per_req" "$cpr"
                rec "$p" "$wname.sys_pct" "$sys"; rec "$p" "$wname.other_pct" "$other"
                if [ "$kind" != wrk ]; then
                    read -r mean max proto tls <<<"$best_x"
                    rec "$p" "$wname.mean" "$mean"; rec "$p" "$wname.max" "$max"
                    [ "$tls" != - ] && rec "$p" tls.negotiated "$tls"
                fi
                alive "$p" || mark_dead "$p" "$kind $wname round $r"
            done
        done
    done
}

if [ "$SKIP_WRK" != 1 ]; then
    RW=("${WORKLOADS[@]}")
    run_rounds
fi

# ------------------------------------------------------------------ fixed-count client
# count_run NAME PORT PATH N CONNS OUTFILE -> 0 if all N succeeded
count_run() {
    local url="http://127.0.0.1:$2$3"
    if [ "$HAVE_H2LOAD" = 1 ]; then
        taskset -c "$LOAD_CPU" timeout "${COUNT_TIMEOUT:-60}" h2load --h1 -n "$4" -c "$5" -t 1 "$url" >"$6" 2>&1
        grep -qE "requests: $4 total, $4 started, $4 done, $4 succeeded" "$6"
    else
        taskset -c "$LOAD_CPU" timeout "${COUNT_TIMEOUT:-60}" "$PY" "$LIB" count "$2" "$3" "$4" "$5" >"$6" 2>&1
        grep -q "done $4 non200 0" "$6"
    fi
}

# ------------------------------------------------------------------ strace
if [ "$SKIP_STRACE" != 1 ]; then
    [ "$HAVE_H2LOAD" = 1 ] && CLIENT="h2load --h1" || CLIENT="python keep-alive client"
    for p in "${ACTIVE[@]}"; do
        for spec in "small /small $COUNT_N" "big /1m $BIG_COUNT_N"; do
            read -r wname wpath n <<<"$spec"
            [ "$n" -gt 0 ] || continue
            alive "$p" || break
            count_run "$p" "${PORT[$p]}" "$wpath" 200 10 "$T/count-warm-$p.txt" || true
            args=()
            pids=$(lib pids "${PID[$p]}")
            for x in $pids; do args+=(-p "$x"); done
            nthreads=0 nprocs=0
            for x in $pids; do
                nprocs=$((nprocs + 1))
                nthreads=$(( nthreads + $(ls /proc/"$x"/task 2>/dev/null | wc -l) ))
            done
            strace -f -c -o "$T/strace-$p-$wname.txt" "${args[@]}" 2>"$T/strace-$p-$wname.err" &
            spid=$!
            STARTED+=("$spid")
            for ((i = 0; i < 50; i++)); do
                # one "Process N attached [with M threads]" line per process
                [ "$(grep -c attached "$T/strace-$p-$wname.err")" -ge "$nprocs" ] && break
                sleep 0.1
            done
            sleep 0.3
            log "strace: $n requests to $p $wpath ($CLIENT, 10 conns), $nthreads threads traced"
            ok=1
            count_run "$p" "${PORT[$p]}" "$wpath" "$n" 10 "$T/count-$p-$wname.txt" || ok=0
            kill -INT "$spid" 2>/dev/null
            wait "$spid" 2>/dev/null
            if [ "$ok" = 0 ]; then
                problem "$p" "fixed-count run ($n x $wpath) did not complete: $(grep -E 'requests:|done|rror' "$T/count-$p-$wname.txt" | head -3 | tr '\n' ' ')"
            else
                total=$(lib parse-strace "$T/strace-$p-$wname.txt")
                per=$("$PY" -c "print('%.3f' % ($total/$n))" 2>/dev/null || echo nan)
                rec "$p" "syscalls.$wname" "$per"
                [ "$wname" = small ] && rec "$p" syscalls.small.top "$(lib strace-top "$T/strace-$p-$wname.txt" 6 |
                    "$PY" -c "import sys; print(','.join('%s %.2f' % (x.split(':')[0], int(x.split(':')[1])/$n) for x in sys.stdin.read().strip().split(',') if x and int(x.split(':')[1]) >= $n/100))")"
                log "strace: $p $wname: $total syscalls / $n requests = $per per request"
            fi
            alive "$p" || { mark_dead "$p" "strace run"; break; }
        done
    done
fi

# main instances are done
for p in "${ACTIVE[@]}"; do stop_pid "${PID[$p]}" 5; done

# ------------------------------------------------------------------ callgrind
# cg_measure NAME VPID WNAME PATH N: zero the counters, send N requests, dump,
# record Ir/N.  Each dump writes a new file "$out.K"; the newest one is ours.
cg_measure() {
    local p=$1 vpid=$2 wname=$3 path=$4 n=$5 f ir per
    callgrind_control -z "$vpid" >/dev/null 2>&1
    log "callgrind: $n requests to $p $path"
    if ! count_run "$p" "$CG_PORT" "$path" "$n" 10 "$T/cg-count-$p-$wname.txt"; then
        problem "$p" "fixed-count run ($n x $path) under callgrind did not complete: $(grep -E 'requests:|done|rror' "$T/cg-count-$p-$wname.txt" | head -3 | tr '\n' ' ')"
        return 1
    fi
    callgrind_control -d "$vpid" >/dev/null 2>&1
    sleep 0.2
    f=$(ls -t "$out".* 2>/dev/null | head -1)
    if [ -z "$f" ] || [ "$f" = "${LAST_DUMP:-}" ]; then
        problem "$p" "callgrind dump not found"
        return 1
    fi
    LAST_DUMP=$f
    ir=$(lib parse-callgrind "$f")
    per=$("$PY" -c "print('%.0f' % ($ir/$n))" 2>/dev/null || echo nan)
    rec "$p" "instr.$wname" "$per"
    log "callgrind: $p $wname: $ir instructions / $n requests = $per per request"
}

if [ "$SKIP_CALLGRIND" != 1 ]; then
    for p in "${ACTIVE[@]}"; do
        [ "$CG_N" -gt 0 ] || break
        command -v callgrind_control >/dev/null || { log "callgrind_control missing, skipping"; break; }
        proxy_cmd "$p" "$CG_PORT" single
        out="$T/cg-$p.out"
        LAST_DUMP=
        taskset -c "$PROXY_CPU" valgrind --tool=callgrind --trace-children=yes \
            --callgrind-out-file="$out" "${CMD[@]}" >"$T/cg-$p.log" 2>&1 &
        vpid=$!
        STARTED+=("$vpid")
        if ! lib waitport "$CG_PORT" 60 "$vpid"; then
            problem "$p" "did not start under valgrind: $(tail -c 400 "$T/cg-$p.log" | tr '\n' ' ')"
            stop_pid "$vpid" 5; continue
        fi
        count_run "$p" "$CG_PORT" /small 200 10 "$T/cg-warm-$p.txt" || true
        [ "$CG_BIG_N" -gt 0 ] && { count_run "$p" "$CG_PORT" /1m 10 10 "$T/cg-warm-big-$p.txt" || true; }
        cg_measure "$p" "$vpid" small /small "$CG_N" &&
            [ "$CG_BIG_N" -gt 0 ] && cg_measure "$p" "$vpid" big /1m "$CG_BIG_N"
        lib alive "$vpid" || problem "$p" "exited under callgrind: $(tail -c 400 "$T/cg-$p.log" | tr '\n' ' ')"
        stop_pid "$vpid" 10
    done
fi

# ------------------------------------------------------------------ TLS section
# The same proxies plus nghttpx, each terminating TLS (h2 or HTTP/1.1 by
# ALPN) in front of the same cleartext backend; fresh instances named
# tls-NAME (their results and problems are recorded under that name).
TLS_RW=()
TLS_WDESC=
TLS_NAMES=
if [ "$SKIP_TLS" != 1 ]; then
    mkdir -p "$T/tls"
    if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$T/tls/key.pem" -out "$T/tls/cert.pem" -days 2 -subj /CN=localhost \
            -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$T/tls/openssl.log" 2>&1; then
        die "openssl could not make the test certificate: $(tail -c 300 "$T/tls/openssl.log")"
    fi
    cat "$T/tls/cert.pem" "$T/tls/key.pem" >"$T/tls/haproxy.pem"
    chmod -R a+rX "$T/tls"
    log "TLS section: self-signed EC P-256 certificate in $T/tls"

    TLS_RW=("h2 h2load /small $H2_CONNS $H2_STREAMS $TLS_DURATION"
            "h1tls wrktls /small $TLS_H1_CONNS 1 $TLS_DURATION")
    TLS_WDESC="h2:13 B body - h2 over TLS - h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D $TLS_DURATION"
    TLS_WDESC="$TLS_WDESC,h1tls:13 B body - HTTP/1.1 over TLS - wrk -t1 -c$TLS_H1_CONNS -d$TLS_DURATION"
    if [ "$H2_BIG_CONNS" -gt 0 ]; then
        TLS_RW+=("h2big h2load /1m $H2_BIG_CONNS 1 $H2_BIG_DURATION")
        TLS_WDESC="$TLS_WDESC,h2big:1 MiB body - h2 over TLS - h2load -t1 -c$H2_BIG_CONNS -m1 -D $H2_BIG_DURATION"
    fi

    ACTIVE=()
    for p in $TLS_PROXIES; do
        case " $TLS_NAMES " in *" tls-$p "*) continue ;; esac
        TLS_NAMES="$TLS_NAMES tls-$p"
        start_proxy "tls-$p" && ACTIVE+=("tls-$p")
    done
    TLS_NAMES=$(echo $TLS_NAMES | tr ' ' ',')

    # idle TLS / h2 connections, each on a fresh process (memory freed by
    # the first test would otherwise be reused by the second one)
    if [ "$SKIP_IDLE" != 1 ] && [ "$TLS_IDLE_N" -gt 0 ]; then
        for p in "${ACTIVE[@]}"; do
            for spec in "tlsidle h1 TLS HTTP/1.1" "h2idle h2 h2-over-TLS"; do
                read -r key proto what <<<"$spec"
                if [ "$key" = h2idle ]; then
                    stop_pid "${PID[$p]}" 5
                    start_proxy "$p" || { drop_active "$p"; break; }
                fi
                log "idle: $TLS_IDLE_N $what connections to $p"
                if out=$(lib tlsidle "${PORT[$p]}" "${PID[$p]}" "$TLS_IDLE_N" "$proto" 2>"$T/$key-$p.err"); then
                    read -r before after per ok alive_n <<<"$out"
                    rec "$p" "$key.before" "$before"; rec "$p" "$key.after" "$after"
                    rec "$p" "$key.per_conn" "$per"; rec "$p" "$key.ok" "$ok"; rec "$p" "$key.alive" "$alive_n"
                    log "idle: $p $what: $before kB -> $after kB, $per bytes/conn, $ok ok, $alive_n open"
                    [ "$ok" != "$TLS_IDLE_N" ] && problem "$p" "$what idle test: only $ok of $TLS_IDLE_N requests got 200"
                    [ "$alive_n" != "$TLS_IDLE_N" ] && problem "$p" "$what idle test: only $alive_n of $TLS_IDLE_N connections still open after 1.5s"
                else
                    problem "$p" "$what idle test failed: $(tail -c 300 "$T/$key-$p.err" | tr '\n' ' ')"
                fi
                alive "$p" || { mark_dead "$p" "$what idle test"; break; }
            done
        done
        # fresh processes for the load phase (peak RSS not inflated by the
        # memory the idle connections left behind)
        for p in "${ACTIVE[@]}"; do
            stop_pid "${PID[$p]}" 5
            start_proxy "$p" || drop_active "$p"
        done
    fi

    if [ "$SKIP_WRK" != 1 ] && [ ${#ACTIVE[@]} -gt 0 ]; then
        RW=("${TLS_RW[@]}")
        run_rounds
    fi
    for p in "${ACTIVE[@]}"; do stop_pid "${PID[$p]}" 5; done
fi

# ------------------------------------------------------------------ logs
# error-level lines in a proxy's own logs are worth a look (bug reports)
for p in $PROXIES ${TLS_NAMES//,/ }; do
    logs=$(ls "$T/$p.log" "$T/cg-$p.log" 2>/dev/null)
    [ "$p" = nginx ] && logs="$logs $(ls "$T"/nginx-*.err 2>/dev/null | grep -v "/nginx-${PORT[tls-nginx]:-x}\.err\$")"
    [ "$p" = tls-nginx ] && logs="$logs $(ls "$T/nginx-${PORT[$p]:-x}.err" 2>/dev/null)"
    [ -n "${logs// /}" ] || continue
    # nginx/portico [error], HAProxy [ALERT], nghttpx " ERROR (file:line)"
    # (nghttpx's worker logs "IPC socket is closed" FATAL when we stop it)
    bad=$(cat $logs 2>/dev/null | grep -v 'IPC socket is closed' | grep -E '\[(error|crit|alert|emerg)\]|\[ALERT\]| (ERROR|FATAL) \(|[Ss]egmentation|[Aa]ssert|AddressSanitizer|runtime error|Process terminating with default action of signal (4|6|7|8|11) ' || true)
    if [ -n "$bad" ]; then
        problem "$p" "$(echo "$bad" | wc -l) error-level log lines, first: $(echo "$bad" | head -3 | cut -c1-240 | tr '\n' '|')"
    fi
done

# ------------------------------------------------------------------ report
echo
echo "results (medians of $ROUNDS rounds; ratios are portico/peer)"
lib report "$RES" "$(echo $PROXIES | tr ' ' ',')" "$WDESC" "$TLS_NAMES" "$TLS_WDESC"
echo
# WebSocket section (bench/ws.sh): echo throughput and idle-tunnel memory
if [ "${SKIP_WS:-0}" != 1 ]; then
    PORTICO_BIN="$PORTICO_BIN" ROUNDS="$ROUNDS" PROXY_CPU="$PROXY_CPU" LOAD_CPU="$LOAD_CPU" \
        KEEP_TMP="$KEEP_TMP" bash "$HERE/ws.sh" || log "WebSocket section failed"
    echo
fi
# Layer 4 section (bench/stream.sh): TCP relay throughput and small request/response
if [ "${SKIP_STREAM:-0}" != 1 ]; then
    PORTICO_BIN="$PORTICO_BIN" ROUNDS="$ROUNDS" PROXY_CPU="$PROXY_CPU" LOAD_CPU="$LOAD_CPU" \
        bash "$HERE/stream.sh" || log "layer 4 section failed"
    echo
fi
log "done in $(( $(date +%s) - T0 ))s"
exit 0
