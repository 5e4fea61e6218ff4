#!/usr/bin/env bash
# Layer 4 section of the benchmark: portico's stream server vs HAProxy `mode tcp` vs nginx
# `stream` as TCP relays (one worker each, pinned to PROXY_CPU), and a direct connection, on
# 127.0.0.1 (bench/stream.py does the work):
#   - bulk: STREAM_MIB (1024) MiB through one connection: MiB/s, proxy CPU s/GiB, syscalls/MiB;
#   - small: STREAM_CONNS (50) connections of redis-benchmark (SET and GET, 64-byte values,
#     STREAM_REQUESTS (100000) of each, no pipelining) to one redis-server: req/s, proxy CPU
#     us/request, syscalls/request;
# medians of ROUNDS (3) rounds interleaved across the proxies, then portico's ratios to each.
# Knobs: PORTICO_BIN, STREAM_PROXIES ("portico,haproxy,nginx"), ROUNDS, STREAM_MIB,
# STREAM_CONNS, STREAM_REQUESTS, PROXY_CPU=0 LOAD_CPU=1, SKIP_STRACE=1.
# Runs alone (bench/stream.sh) or as a section of bench/run.sh (SKIP_STREAM=1 skips it there).
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PY=/usr/bin/python3
PORTICO_BIN=${PORTICO_BIN:-$REPO/portico}
STREAM_PROXIES=${STREAM_PROXIES:-portico,haproxy,nginx}
ROUNDS=${ROUNDS:-3}
STREAM_MIB=${STREAM_MIB:-1024}
STREAM_CONNS=${STREAM_CONNS:-50}
STREAM_REQUESTS=${STREAM_REQUESTS:-100000}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_STRACE=${SKIP_STRACE:-0}

echo "== layer 4: TCP relay (bench/stream.sh) =="
for t in haproxy nginx redis-server redis-benchmark strace taskset; do
    command -v "$t" >/dev/null || echo "note: $t not installed (apt-get install haproxy" \
        "nginx-light libnginx-mod-stream redis-server redis-tools strace util-linux)"
done
args=(--mib "$STREAM_MIB" --rounds "$ROUNDS" --small "$STREAM_CONNS"
      --requests "$STREAM_REQUESTS" --portico "$PORTICO_BIN" --only "$STREAM_PROXIES")
if [ "$(nproc)" -ge 2 ]; then
    args+=(--proxy-cpu "$PROXY_CPU" --load-cpu "$LOAD_CPU")
fi
[ "$SKIP_STRACE" = 1 ] && args+=(--no-strace)
exec "$PY" "$HERE/stream.py" "${args[@]}"
