#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# First run: installs what is missing, builds, and starts portico in the foreground on
# etc/portico.conf (a load-balancing demo with two built-in backends). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
bash scripts/gen-cert.sh
./portico -t -c etc/portico.conf
cat <<'MSG'

portico is starting on http://127.0.0.1:8080 (and [::1]:8080). Try, from another terminal:

  curl http://127.0.0.1:8080/                # answered by backend A or B, alternating
  for i in 1 2 3 4; do curl -s http://127.0.0.1:8080/; done
  curl -i http://127.0.0.1:8080/healthz      # answered by portico itself
  curl -i http://127.0.0.1:8080/nowhere/     # 502: upstream "offline" has no live server
  curl -i -H 'Host: admin.example' http://127.0.0.1:8080/   # routed by server_name
  curl -k https://localhost:8443/            # TLS (self-signed cert from etc/tls/), HTTP/2 via ALPN
  curl -k --http1.1 https://localhost:8443/  # TLS with HTTP/1.1
  curl --http2-prior-knowledge http://127.0.0.1:8080/   # cleartext HTTP/2 (h2c)
  python3 -m websockets ws://127.0.0.1:8080/ws   # a WebSocket, echoed by backend A or B
                                                  # (/usr/bin/python3, Debian python3-websockets)

Access log lines appear below; Ctrl-C (SIGINT) stops portico gracefully.

MSG
exec ./portico -c etc/portico.conf
