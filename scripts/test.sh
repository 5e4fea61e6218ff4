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

# What the integration tests assume of the machine, said before they run.
# - ::1 on lo: the tests marked ipv6 (grep -rn "mark.ipv6" tests/integration) listen on and
#   connect to ::1. A container or a machine with IPv6 off may lack it: add it when we can,
#   else those tests skip (pytest says so for each).
if grep -qE '^0{31}1 .* lo$' /proc/net/if_inet6 2>/dev/null; then
    echo "machine: ::1 is configured on lo"
elif [ "$(id -u)" = 0 ] && command -v ip >/dev/null && ip -6 addr add ::1/128 dev lo 2>/dev/null; then
    echo "machine: ::1 was not configured on lo: added it (ip -6 addr add ::1/128 dev lo)"
else
    echo "machine: ::1 is not configured on lo and cannot be added here (IPv6 disabled, or not" \
         "root): the tests marked ipv6 will be skipped"
fi
# - Name resolution: no test depends on how the machine resolves `localhost`. The tests of
#   `server NAME:PORT` (tests/integration/proxy/test_h1_h1_server_names.py) run portico with
#   a private /etc/hosts (unshare --mount and a bind mount: root), and skip without one.
echo "machine: localhost resolves to $(getent ahosts localhost 2>/dev/null | awk '$2 == "STREAM" {print $1}' | tr '\n' ' ')(no test relies on it)"
if unshare --mount true 2>/dev/null; then
    echo "machine: private mount namespaces work: the server-by-name tests use their own /etc/hosts"
else
    echo "machine: cannot create a private mount namespace (unshare --mount needs root): the" \
         "server-by-name tests will be skipped"
fi

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
