#!/bin/sh
# SPDX-License-Identifier: MIT
# portico soak test (docs/security.md, "Soak"): a mixed load (HTTP/1.1, h2c, h2 over TLS, gRPC,
# WebSocket) through one portico for a set time, backends restarted every minute, a reload
# every 30 s; RSS and descriptors sampled. Run by hand (its --short mode is in the
# integration suite: tests/integration/soak). As root (portico runs
# with `user nobody`), from anywhere:
#   tests/soak/run.sh                        # 10 minutes
#   tests/soak/run.sh --duration 60          # a one-minute smoke run
#   tests/soak/run.sh --duration 600 --out /tmp/soak   # keep soak.csv, summary.txt, logs there
#   tests/soak/run.sh --duration 14400 --sample 10     # four hours (before a release)
#   tests/soak/run.sh --short                # ~30 s: descriptors and RSS back after two rounds
# tests/soak/run.sh -h lists the other options. Exit 0 when every check passes.
# PORTICO_BIN selects the binary (default: ./portico at the repository root).
set -u
cd "$(dirname "$0")/../.." || exit 2
exec /usr/bin/python3 tests/soak/soak.py "$@"
