#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Creates a self-signed certificate for localhost in etc/tls/ (once; kept if it exists), so the
# default config's TLS listener works out of the box: curl -k https://localhost:8443/
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p etc/tls
if [ -s etc/tls/localhost.pem ] && [ -s etc/tls/localhost.key ]; then
    exit 0
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -keyout etc/tls/localhost.key -out etc/tls/localhost.pem -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" 2>/dev/null
chmod 600 etc/tls/localhost.key
echo "gen-cert: created etc/tls/localhost.pem (self-signed, for testing only)"
