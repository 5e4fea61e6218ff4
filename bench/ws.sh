#!/usr/bin/env bash
# WebSocket section of the benchmark: portico vs HAProxy vs nginx (vs h2o when installed) as
# WebSocket reverse proxies, one worker each on PROXY_CPU, in front of one shared echo backend
# (portico's own websocket_echo handler, on LOAD_CPU, so the backend is fast C for everyone).
#   - echo throughput: WS_TUNNELS (50) tunnels, 1 KiB binary messages, WS_WINDOW (16) in
#     flight per tunnel, WS_SECONDS (5) s: messages/s and messages per proxy CPU-second
#     (the proxy's user+system time over the run), medians of ROUNDS (3) interleaved rounds;
#   - idle memory: WS_IDLE_N (9000) idle tunnels through each proxy, each on a fresh process:
#     RSS growth per tunnel (every tunnel costs the proxy two descriptors: 20 000 limit).
# Knobs: PORTICO_BIN, WS_PROXIES ("portico haproxy nginx h2o"), ROUNDS, WS_SECONDS, WS_TUNNELS,
# WS_WINDOW, WS_SIZE, WS_IDLE_N, SKIP_WS_IDLE=1, PROXY_CPU=0 LOAD_CPU=1, KEEP_TMP=1.
# Runs alone (bench/ws.sh) or as the last section of bench/run.sh (SKIP_WS=1 skips it there).
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PY=/usr/bin/python3
lib() { "$PY" "$HERE/benchlib.py" "$@"; }
PORTICO_BIN=${PORTICO_BIN:-$REPO/portico}
WS_PROXIES=${WS_PROXIES:-portico haproxy nginx h2o}
ROUNDS=${ROUNDS:-3}
WS_SECONDS=${WS_SECONDS:-5}
WS_TUNNELS=${WS_TUNNELS:-50}
WS_WINDOW=${WS_WINDOW:-16}
WS_SIZE=${WS_SIZE:-1024}
WS_IDLE_N=${WS_IDLE_N:-9000}
SKIP_WS_IDLE=${SKIP_WS_IDLE:-0}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}
T0=$(date +%s)
log() { printf '# [%3ds] ws: %s\n' $(( $(date +%s) - T0 )) "$*"; }

command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || WS_PROXIES=${WS_PROXIES/haproxy/}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || WS_PROXIES=${WS_PROXIES/nginx/}
if [[ " $WS_PROXIES " == *" h2o "* ]] && ! command -v h2o >/dev/null; then
    log "installing h2o (Debian package) for the comparison"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q h2o >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q h2o >/dev/null 2>&1; } ||
        { log "h2o not installable: left out"; WS_PROXIES=${WS_PROXIES/h2o/}; }
fi
export PATH="$PATH:/usr/sbin:/sbin"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

T=$(mktemp -d /tmp/portico-wsbench.XXXXXX)
. "$HERE/proc.sh"   # STARTED, stop_pid, cleanup at exit

read -r BP PP HP NP OP < <(lib freeports 5)
cat >"$T/backend.conf" <<EOC
workers 1;
error_log $T/backend.err warn;
access_log off;
max_connections 20000;
server { listen 127.0.0.1:$BP; location /ws { websocket_echo; websocket_idle_timeout 1h; } }
EOC
taskset -c "$LOAD_CPU" "$PORTICO_BIN" -c "$T/backend.conf" >"$T/backend.log" 2>&1 &
BPID=$!; STARTED+=("$BPID")
lib waitport "$BP" 10 "$BPID" || { log "backend did not start: $(tail -3 "$T/backend.log")"; exit 1; }

write_conf() {   # NAME PORT FILE
    case $1 in
    portico) cat >"$3" <<EOC ;;
workers 1;
access_log off;
error_log $T/portico.err warn;
max_connections 20000;
upstream b { server 127.0.0.1:$BP; }
server { listen 127.0.0.1:$2; location / { proxy_pass b; websocket_idle_timeout 1h; } }
EOC
    haproxy) cat >"$3" <<EOC ;;
global
    nbthread 1
    maxconn 9800
defaults
    mode http
    maxconn 9800
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:$2
    default_backend b
backend b
    server s1 127.0.0.1:$BP
EOC
    nginx) cat >"$3" <<EOC ;;
daemon off;
master_process on;
worker_processes 1;
pid $T/nginx.pid;
error_log $T/nginx.err warn;
worker_rlimit_nofile 40000;
events { worker_connections 20000; }
http {
    access_log off;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / {
            proxy_pass http://127.0.0.1:$BP;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 1h;
        }
    }
}
EOC
    h2o) cat >"$3" <<EOC ;;
num-threads: 1
max-connections: 20000
user: root
access-log: /dev/null
listen:
  host: 127.0.0.1
  port: $2
proxy.websocket: ON
proxy.websocket.timeout: 3600000
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:$BP/
EOC
    esac
}

declare -A PID PORT
start() {   # NAME
    local n=$1 port conf="$T/$1.conf"
    case $n in portico) port=$PP ;; haproxy) port=$HP ;; nginx) port=$NP ;; h2o) port=$OP ;; esac
    write_conf "$n" "$port" "$conf"
    case $n in
        portico) CMD=("$PORTICO_BIN" -c "$conf") ;;
        haproxy) CMD=(haproxy -db -f "$conf") ;;
        nginx) CMD=(nginx -c "$conf" -p "$T") ;;
        h2o) CMD=(h2o -c "$conf") ;;
    esac
    taskset -c "$PROXY_CPU" "${CMD[@]}" >"$T/$n.log" 2>&1 &
    PID[$n]=$!; PORT[$n]=$port; STARTED+=("${PID[$n]}")
    if ! lib waitport "$port" 10 "${PID[$n]}" ||
       ! taskset -c "$LOAD_CPU" "$PY" "$HERE/benchlib.py" wsload "$port" 2 1 "$WS_SIZE" 2 >/dev/null 2>"$T/$n.check"; then
        log "$n: not usable as a WebSocket proxy: $(tail -c 300 "$T/$n.log" "$T/$n.check" | tr '\n' ' ')"
        stop_pid "${PID[$n]}"; unset "PID[$n]"
        return 1
    fi
    return 0
}

cpu_s() { lib cpu "$1" | awk '{ print $1 }'; }   # user+system seconds of the process tree

ACTIVE=()
for n in $WS_PROXIES; do start "$n" && ACTIVE+=("$n"); done
log "proxies: ${ACTIVE[*]}; backend portico websocket_echo on CPU $LOAD_CPU"
declare -A MSGS CPUS
for ((r = 1; r <= ROUNDS; r++)); do
    for n in "${ACTIVE[@]}"; do
        c0=$(cpu_s "${PID[$n]}")
        out=$(taskset -c "$LOAD_CPU" "$PY" "$HERE/benchlib.py" wsload "${PORT[$n]}" "$WS_TUNNELS" \
              "$WS_SECONDS" "$WS_SIZE" "$WS_WINDOW" 2>&1) || { log "$n: load failed: $out"; continue; }
        c1=$(cpu_s "${PID[$n]}")
        read -r done secs rate <<<"$out"
        cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')
        MSGS[$n]+="$rate "; CPUS[$n]+="$(awk -v d="$done" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? d / c : 0) }') "
        log "round $r $n: $rate msg/s, $cpu s of proxy CPU for $done messages"
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }

declare -A IDLE
if [ "$SKIP_WS_IDLE" != 1 ]; then
    for n in "${ACTIVE[@]}"; do
        # a fresh process for the memory figure
        stop_pid "${PID[$n]}"
        start "$n" || continue
        out=$(taskset -c "$LOAD_CPU" "$PY" "$HERE/benchlib.py" wshold "${PORT[$n]}" "${PID[$n]}" \
              "$WS_IDLE_N" 2>&1) || { log "$n: idle test failed: $(echo "$out" | tail -c 300)"; continue; }
        read -r before after per alive <<<"$out"
        IDLE[$n]=$per
        log "idle $n: $before kB -> $after kB for $WS_IDLE_N tunnels: $per B/tunnel, $alive open"
    done
fi

echo
echo "== WebSocket: $WS_TUNNELS tunnels, $WS_SIZE-byte messages, $WS_WINDOW in flight each; medians of $ROUNDS"
printf '%-8s %14s %22s %18s\n' proxy "messages/s" "messages/proxy-CPU-s" "idle B/tunnel"
for n in "${ACTIVE[@]}"; do
    printf '%-8s %14s %22s %18s\n' "$n" "$(echo "${MSGS[$n]:-}" | median)" \
        "$(echo "${CPUS[$n]:-}" | median)" "${IDLE[$n]:--}"
done
p_rate=$(echo "${MSGS[portico]:-}" | median); p_cpu=$(echo "${CPUS[portico]:-}" | median)
for n in "${ACTIVE[@]}"; do
    [ "$n" = portico ] && continue
    r=$(echo "${MSGS[$n]:-}" | median); c=$(echo "${CPUS[$n]:-}" | median)
    printf 'portico/%-8s messages/s %s, per proxy CPU-s %s, idle bytes/tunnel %s (lower is better)\n' "$n" \
        "$(awk -v a="${p_rate:-0}" -v b="${r:-0}" 'BEGIN { print (b > 0 ? sprintf("%.2fx", a / b) : "-") }')" \
        "$(awk -v a="${p_cpu:-0}" -v b="${c:-0}" 'BEGIN { print (b > 0 ? sprintf("%.2fx", a / b) : "-") }')" \
        "$(awk -v a="${IDLE[portico]:-0}" -v b="${IDLE[$n]:-0}" 'BEGIN { print (b > 0 ? sprintf("%.2fx", a / b) : "-") }')"
done
