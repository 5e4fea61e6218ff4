#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# 1 MiB responses through one proxy worker: portico (and optionally a second portico build)
# against HAProxy, same backend, same run, interleaved. docs/performance.md "Large bodies".
#
#   bench/large_bodies.sh [MODE] [N]
#     MODE cpu (default): CPU time per response of each proxy (/proc/PID/task/*/schedstat,
#          nanoseconds, before/after exactly N responses), ROUNDS rounds, order alternating
#     MODE strace: syscalls per response (strace -c -f over N responses), one round
#     MODE callgrind: user-space instructions per response (valgrind --tool=callgrind,
#          counters zeroed after a warm-up, N responses), portico builds and HAProxy in turn
#   PORTICO_BIN (default ./portico), PORTICO2_BIN (optional second build, shown as "new"),
#   ROUNDS (3), TLS=1 (h2 over TLS from the client: h2load without --h1, TLS 1.3 AES-256-GCM)
#
# Load: h2load -n N -c 10 on CPU 1 with the nginx backend (sendfile); proxies on CPU 0.
# Needs nginx-light haproxy nghttp2-client strace valgrind openssl (Debian packages).
set -u
MODE=${1:-cpu}; N=${2:-}
[ -n "$N" ] || { [ "$MODE" = callgrind ] && N=100 || N=1000; }
ROUNDS=${ROUNDS:-3}
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${PORTICO_BIN:-./portico}"); BIN2=${PORTICO2_BIN:+$(readlink -f "$PORTICO2_BIN")}
T=$(mktemp -d /tmp/portico-large.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
PY=/usr/bin/python3
free_port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { $PY - "$1" <<'PYEOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close(); sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PYEOF
}
BP=$(free_port)
mkdir -p "$T/www" "$T/tmp"; head -c 1048576 /dev/urandom >"$T/www/1m"; chmod -R a+rX "$T"
USER_LINE=; [ "$(id -u)" -eq 0 ] && USER_LINE="user root;"
cat >"$T/backend.conf" <<E2
$USER_LINE daemon off; worker_processes 1; pid $T/backend.pid; error_log $T/backend.err warn;
events { worker_connections 1000; }
http { access_log off; client_body_temp_path $T/tmp/cb; proxy_temp_path $T/tmp/px;
 fastcgi_temp_path $T/tmp/fc; uwsgi_temp_path $T/tmp/uw; scgi_temp_path $T/tmp/sc;
 sendfile on; tcp_nopush on; keepalive_timeout 300s; keepalive_requests 10000000;
 default_type application/octet-stream;
 server { listen 127.0.0.1:$BP; root $T/www; location / { } } }
E2
taskset -c 1 nginx -c "$T/backend.conf" -p "$T" >"$T/backend.log" 2>&1 & PIDS+=($!)
wait_port "$BP" || { echo "backend did not start"; exit 1; }
if [ -n "${TLS:-}" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/key.pem" \
        -out "$T/cert.pem" -days 2 -subj /CN=localhost 2>/dev/null
    cat "$T/cert.pem" "$T/key.pem" >"$T/haproxy.pem"
    SCHEME=https; H2ARGS=(--tls13-ciphers=TLS_AES_256_GCM_SHA384)
else
    SCHEME=http; H2ARGS=(--h1)
fi
portico_conf() {  # PORT FILE
    local tls=""
    [ -n "${TLS:-}" ] && tls=" tls; tls_certificate $T/cert.pem; tls_certificate_key $T/key.pem; keepalive_requests 1000000000"
    cat >"$2" <<E2
workers 1; access_log off; error_log stderr warn;
upstream b { server 127.0.0.1:$BP; keepalive 64; }
server { listen 127.0.0.1:$1$tls; client_max_body_size 0; location / { proxy_pass b; } }
E2
}
haproxy_conf() {  # PORT FILE
    cat >"$2" <<E2
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$1 ${TLS:+ssl crt $T/haproxy.pem alpn h2,http/1.1}
    default_backend b
backend b
    server s1 127.0.0.1:$BP
E2
}
NAMES=(portico); [ -n "$BIN2" ] && NAMES+=(new); NAMES+=(haproxy)
declare -A PORT CMD PID
for name in "${NAMES[@]}"; do
    PORT[$name]=$(free_port)
    case $name in
        portico) portico_conf "${PORT[$name]}" "$T/$name.conf"; CMD[$name]="$BIN -c $T/$name.conf" ;;
        new) portico_conf "${PORT[$name]}" "$T/$name.conf"; CMD[$name]="$BIN2 -c $T/$name.conf" ;;
        haproxy) haproxy_conf "${PORT[$name]}" "$T/$name.conf"; CMD[$name]="haproxy -db -f $T/$name.conf" ;;
    esac
done
load() {  # PORT COUNT
    taskset -c 1 h2load "${H2ARGS[@]}" -n "$2" -c 10 "$SCHEME://127.0.0.1:$1/1m" 2>&1
}
if [ "$MODE" = callgrind ]; then
    for name in "${NAMES[@]}"; do
        # shellcheck disable=SC2086
        taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$T/cg.$name" ${CMD[$name]} \
            >"$T/vg.$name.log" 2>&1 & vp=$!; PIDS+=($vp)
        wait_port "${PORT[$name]}" || { echo "$name did not start under valgrind"; continue; }
        load "${PORT[$name]}" 30 >/dev/null
        callgrind_control -z "$vp" >/dev/null 2>&1
        ok=$(load "${PORT[$name]}" "$N" | grep -o '[0-9]* succeeded')
        callgrind_control -d "$vp" >/dev/null 2>&1; sleep 0.5
        f=$(ls -t "$T"/cg."$name"* | head -1)
        ir=$(grep -h "^summary:\|^totals:" "$f" | head -1 | awk '{print $2}')
        printf '%-8s instructions per response %8d  (%s of %d)\n' "$name" $((ir / N)) "$ok" "$N"
        kill "$vp"; wait "$vp" 2>/dev/null
    done
    exit 0
fi
for name in "${NAMES[@]}"; do
    # shellcheck disable=SC2086
    taskset -c 0 ${CMD[$name]} >"$T/$name.log" 2>&1 & PID[$name]=$!; PIDS+=($!)
    wait_port "${PORT[$name]}" || { echo "$name did not start"; cat "$T/$name.log"; exit 1; }
done
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f\n", s}'; }
case $MODE in
cpu)
    echo "CPU us per 1 MiB response ($N per run, h2load ${H2ARGS[*]} -c 10), rounds: $ROUNDS"
    for r in $(seq "$ROUNDS"); do
        order=("${NAMES[@]}"); [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "${NAMES[@]}" | tac))
        for name in "${order[@]}"; do
            p=${PID[$name]}; port=${PORT[$name]}
            load "$port" 50 >/dev/null
            a=$(cpu_ns "$p"); t0=$(date +%s.%N)
            ok=$(load "$port" "$N" | grep -o '[0-9]* succeeded')
            b=$(cpu_ns "$p"); t1=$(date +%s.%N)
            $PY -c "import sys; print('round %s %-8s cpu_us/resp %7.1f  wall req/s %6.0f  (%s)' % (sys.argv[1], sys.argv[2], (int(sys.argv[4]) - int(sys.argv[3])) / 1000 / int(sys.argv[5]), int(sys.argv[5]) / (float(sys.argv[7]) - float(sys.argv[6])), sys.argv[8]))" \
                "$r" "$name" "$a" "$b" "$N" "$t0" "$t1" "$ok"
        done
    done ;;
strace)
    for name in "${NAMES[@]}"; do
        p=${PID[$name]}; port=${PORT[$name]}
        load "$port" 50 >/dev/null
        strace -c -f $(ls /proc/"$p"/task | sed 's/^/-p /') -o "$T/strace.$name" 2>/dev/null & sp=$!
        sleep 1
        ok=$(load "$port" "$N" | grep -o '[0-9]* succeeded')
        kill -INT "$sp"; wait "$sp"
        echo "== $name: syscalls per response ($ok of $N)"
        awk -v n="$N" '$NF != "total" && $4 ~ /^[0-9]+$/ {printf "  %-14s %8.2f\n", $NF, $4 / n; t += $4} END {printf "  %-14s %8.2f\n", "total", t / n}' "$T/strace.$name"
    done ;;
*) echo "unknown mode $MODE (cpu, strace, callgrind)"; exit 2 ;;
esac
