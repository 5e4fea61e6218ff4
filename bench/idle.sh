#!/usr/bin/env bash
# Memory per idle connection, portico alone, every kind of client connection: HTTP/1.1, h2c
# (prior knowledge), HTTP/1.1 over TLS, h2 over TLS and WebSocket tunnels. Each kind runs on a
# fresh proxy process: IDLE_N connections (tunnels), each after one request (the WebSocket
# handshake), held open; RSS growth of the proxy / IDLE_N. The backend is a second portico
# (`return 200` for /small, `websocket_echo` for /ws) on LOAD_CPU; the proxy runs on PROXY_CPU.
#
# With MASSIF=1 the proxy runs under valgrind's massif instead, and the heap snapshots taken at
# the two checkpoints (vgdb detailed_snapshot) give a breakdown per connection: by library
# (portico, nghttp2, OpenSSL) and by allocating function. RSS figures are then meaningless
# (valgrind's own memory); MASSIF_N (default 300) connections keep it short.
#
# Knobs: PORTICO_BIN, IDLE_N (2000; WebSocket tunnels at most 9000: two descriptors each),
# KINDS ("h1 h2c h1tls h2tls ws"), MASSIF=1, MASSIF_N, PROXY_CPU=0, LOAD_CPU=1, KEEP_TMP=1,
# EXTRA_CONF (directives added to the proxy's server block).
# Takes about a minute with the defaults (10 000 TLS connections: a few minutes).
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PY=/usr/bin/python3
lib() { "$PY" "$HERE/benchlib.py" "$@"; }
PORTICO_BIN=${PORTICO_BIN:-$REPO/portico}
IDLE_N=${IDLE_N:-2000}
KINDS=${KINDS:-h1 h2c h1tls h2tls ws}
MASSIF=${MASSIF:-0}
MASSIF_N=${MASSIF_N:-300}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}
EXTRA_CONF=${EXTRA_CONF:-}
T0=$(date +%s)
log() { printf '# [%3ds] idle: %s\n' $(( $(date +%s) - T0 )) "$*" >&2; }

[ -x "$PORTICO_BIN" ] || { log "no portico binary at $PORTICO_BIN (build it, or set PORTICO_BIN)"; exit 1; }
[ "$MASSIF" = 1 ] && IDLE_N=$MASSIF_N
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

T=$(mktemp -d /tmp/portico-idle.XXXXXX)
. "$HERE/proc.sh"   # STARTED, stop_pid, cleanup at exit

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$T/key.pem" -out "$T/cert.pem" >"$T/openssl.log" 2>&1 ||
    { log "openssl could not make a certificate"; exit 1; }

read -r BP PP SP < <(lib freeports 3)
cat >"$T/backend.conf" <<EOC
workers 1;
error_log $T/backend.err warn;
access_log off;
max_connections 30000;
server {
    listen 127.0.0.1:$BP;
    keepalive_timeout 1h;
    location /small { return 200 "hello, world\n"; }
    location /ws { websocket_echo; websocket_idle_timeout 1h; }
}
EOC
taskset -c "$LOAD_CPU" "$PORTICO_BIN" -c "$T/backend.conf" >"$T/backend.log" 2>&1 &
BPID=$!; STARTED+=("$BPID")
lib waitport "$BP" 10 "$BPID" || { log "backend did not start: $(tail -3 "$T/backend.log")"; exit 1; }

cat >"$T/portico.conf" <<EOC
workers 1;
access_log off;
error_log $T/portico.err warn;
max_connections 30000;
upstream b { server 127.0.0.1:$BP; keepalive 64; }
server {
    listen 127.0.0.1:$PP;
    listen 127.0.0.1:$SP tls;
    tls_certificate $T/cert.pem;
    tls_certificate_key $T/key.pem;
    keepalive_timeout 1h;
    $EXTRA_CONF
    location / { proxy_pass b; websocket_idle_timeout 1h; }
}
EOC

PID=
start_proxy() {
    if [ "$MASSIF" = 1 ]; then
        taskset -c "$PROXY_CPU" valgrind --tool=massif --vgdb=yes --threshold=0.01 --depth=40 \
            --massif-out-file="$T/massif.out" "$PORTICO_BIN" -c "$T/portico.conf" \
            >"$T/portico.log" 2>&1 &
    else
        taskset -c "$PROXY_CPU" "$PORTICO_BIN" -c "$T/portico.conf" >"$T/portico.log" 2>&1 &
    fi
    PID=$!; STARTED+=("$PID")
    lib waitport "$PP" 60 "$PID" && lib waitport "$SP" 60 "$PID" ||
        { log "portico did not start: $(tail -3 "$T/portico.log")"; return 1; }
}

# the hook the Python client runs at its two checkpoints (MASSIF=1): a heap snapshot of the
# process that holds the connections (the worker, valgrind follows no fork: workers 1 runs
# in the one process unless portico forks; then the snapshot is of the master)
cat >"$T/hook" <<'EOH'
#!/bin/sh
vgdb --pid="$PORTICO_PID" detailed_snapshot "$SNAPDIR/snap-$1" >/dev/null 2>&1
EOH
chmod +x "$T/hook"

declare -A PER
for kind in $KINDS; do
    start_proxy || continue
    case $kind in
        h1) cmd=(idle "$PP" "$PID" "$IDLE_N") ;;
        h2c) cmd=(tlsidle "$PP" "$PID" "$IDLE_N" h2c) ;;
        h1tls) cmd=(tlsidle "$SP" "$PID" "$IDLE_N" h1) ;;
        h2tls) cmd=(tlsidle "$SP" "$PID" "$IDLE_N" h2) ;;
        # two descriptors per tunnel: RLIMIT_NOFILE (20 000 here) allows 9 000
        ws) cmd=(wshold "$PP" "$PID" "$((IDLE_N > 9000 ? 9000 : IDLE_N))") ;;
        *) log "unknown kind $kind (h1 h2c h1tls h2tls ws)"; stop_pid "$PID"; continue ;;
    esac
    if [ "$MASSIF" = 1 ]; then
        rm -f "$T"/snap-*
        out=$(PORTICO_PID=$PID SNAPDIR=$T IDLE_HOOK=$T/hook taskset -c "$LOAD_CPU" \
              "$PY" "$HERE/benchlib.py" "${cmd[@]}" 2>"$T/$kind.err")
    else
        out=$(taskset -c "$LOAD_CPU" "$PY" "$HERE/benchlib.py" "${cmd[@]}" 2>"$T/$kind.err")
    fi
    rc=$?
    if [ $rc != 0 ]; then
        log "$kind failed: $(tail -c 300 "$T/$kind.err")"
    elif [ "$kind" = ws ]; then
        read -r before after per alive <<<"$out"
        PER[$kind]="$per B ($alive open; $before kB -> $after kB)"
    else
        read -r before after per ok alive <<<"$out"
        PER[$kind]="$per B ($ok ok, $alive open; $before kB -> $after kB)"
    fi
    if [ "$MASSIF" = 1 ] && [ $rc = 0 ]; then
        n=$IDLE_N; [ "$kind" = ws ] && n=$(( (IDLE_N > 9000 ? 9000 : IDLE_N) - 50))
        echo "== $kind: $IDLE_N idle connections under massif"
        lib massifdiff "$T/snap-before" "$T/snap-after" "$n" 16
    fi
    stop_pid "$PID"
done

if [ "$MASSIF" != 1 ]; then
    echo "== RSS per idle connection, $IDLE_N connections, after one request each ($(date -u +%F))"
    for kind in $KINDS; do
        printf '%-6s %s\n' "$kind" "${PER[$kind]:-failed}"
    done
fi
bad=$(grep -E '\[(error|crit|alert|emerg)\]' "$T/portico.err" 2>/dev/null | head -3)
[ -n "$bad" ] && log "portico logged errors: $bad"
exit 0
