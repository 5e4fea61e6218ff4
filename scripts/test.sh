#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds, and runs every test: the cmocka unit tests (make check),
# then the integration tests (pytest driving the real binary with curl, h2load and raw
# sockets). The last line is "N passed, N failed"; the exit status is 0 only if nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test || exit 1
bash scripts/build.sh --enable-debug || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
bash scripts/gen-cert.sh

unit_pass=0; unit_fail=0
make -j"$(nproc)" -s check >/tmp/portico-unit.$$ 2>&1
unit_rc=$?
for log in tests/unit/test_*.log; do
    [ -f "$log" ] || continue
    p=$(grep -c '^\[       OK \]' "$log" || true)
    f=$(grep -c '^\[  FAILED  \] [a-z_]' "$log" || true)
    unit_pass=$((unit_pass + p)); unit_fail=$((unit_fail + f))
    [ "$f" = 0 ] || grep '^\[  FAILED  \]\|^\[  ERROR   \]' "$log"
done
if [ "$unit_rc" != 0 ] && [ "$unit_fail" = 0 ]; then
    cat /tmp/portico-unit.$$; unit_fail=1   # build or crash: count it
fi
rm -f /tmp/portico-unit.$$
echo "unit: $unit_pass passed, $unit_fail failed"

out=$(mktemp)
bash tests/integration/run.sh 2>&1 | tee "$out"
# pytest's closing line, e.g. "3 failed, 225 passed, 2 skipped, 1 error in 50.1s"
summary=$(grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' "$out" | tail -1)
rm -f "$out"
count() { grep -oE "[0-9]+ $1" <<<"$summary" | grep -oE '^[0-9]+' || echo 0; }
int_pass=$(count passed); int_fail=$(count failed); int_err=$(count 'errors?')
[ -n "$summary" ] || int_err=1   # pytest crashed or collected nothing
passed=$((unit_pass + int_pass)); failed=$((unit_fail + int_fail + int_err))
echo "integration: $int_pass passed, $((int_fail + int_err)) failed"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
