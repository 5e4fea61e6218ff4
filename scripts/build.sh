#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds ./portico: autogen and configure the first time (extra args go to configure), then make.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x configure ] || ./autogen.sh >/dev/null
[ -f Makefile ] || ./configure -q "$@"
make -j"$(nproc)" -s portico
