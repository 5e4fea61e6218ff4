#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what building and testing portico needs, with apt, only when something is missing
# (idempotent). Run as root on Debian 12.
set -euo pipefail
pkgs=(build-essential autoconf automake pkg-config libev-dev libnghttp2-dev libssl-dev libpcre2-dev
      node-llhttp libcmocka-dev curl openssl zlib1g-dev libbrotli-dev libzstd-dev
      libc-ares-dev libcrypt-dev libhiredis-dev)
if [ "${1:-}" = "--test" ]; then
    pkgs+=(python3 python3-pytest python3-pytest-xdist python3-h2 python3-grpcio nghttp2-client
           iproute2 python3-websockets node-ws nodejs groff-base man-db python3-brotli
           python3-zstandard redis-server redis-tools mosquitto mosquitto-clients
           prometheus chromium # promtool checks /metrics; chromium loads /status
           apache2-utils whois # htpasswd, mkpasswd make auth_basic files
           dnsmasq-base dnsutils # dig against dnsmasq through UDP stream servers; SRV records
           python3-yaml # the fleet examples' kubernetes.yaml (tests/integration/fleet)
           clang-14 libclang-rt-14-dev) # libFuzzer and the sanitizer runtimes (make fuzz)
    pkgs+=(haproxy) # the PROXY protocol tests put it in front of portico
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        echo "deps: run as root (or install: ${missing[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
