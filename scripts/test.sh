#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds, and runs every test: the cmocka unit tests (make check),
# then the integration tests (pytest driving the real binary with curl, h2load and raw
# sockets). With PORTICO_HARDENING=1 (what .ci/run sets), then the hardening checks
# (docs/testing.md, "Fuzzing and sanitizers"; about 6 more minutes on 2 cores): each fuzz
# target for FUZZ_SECONDS (default 15, two at a time), a fixed subset of the integration tests
# against an ASan + UBSan build, and the reload, health and multi-worker tests against a TSan
# build (make check-asan and make check-tsan run more). A fuzz target that runs its time without
# a crash counts as one passed test; a sanitizer report counts as a failed one. The last line
# is "N passed, N failed"; the exit status is 0 only if nothing failed.
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

# Hardening (about 6 minutes on 2 cores: fuzzing 13 targets x 15 s two at a time, the ASan
# subset about 1.5, the TSan subset about 0.5, and the three builds, which take the most),
# then the total. Each step's
# own last line is "KIND: N passed, N failed[; R sanitizer report(s)]".
hard() { # adds the counts of a step's last line to passed/failed
    local line p f r
    line=$(grep -E '^[a-z]+: [0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    r=$(grep -oE '[0-9]+ sanitizer report' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    [ -n "$line" ] || f=1   # the step did not get as far as its summary
    passed=$((passed + p)); failed=$((failed + f + r))
}
if [ "${PORTICO_HARDENING:-0}" = 1 ] && [ "${PORTICO_SKIP_HARDENING:-0}" != 1 ]; then
    hard_start=$(date +%s)
    step=$(mktemp)
    if make -j"$(nproc)" -s fuzz-build >"$step" 2>&1; then
        bash tests/fuzz/run.sh -t "${FUZZ_SECONDS:-15}" -j 2 2>&1 | tee "$step"
    else
        tail -20 "$step"; echo "fuzz: 0 passed, 1 failed" | tee "$step"
    fi
    hard "$step"
    if make -j"$(nproc)" -s portico-asan >"$step" 2>&1; then
        # the fuzz regressions, malformed and hostile input, floods, bodies, compression; the
        # memory-saving paths (spliced bodies, a tunnel's record instead of its exchange, h2
        # pages given back when idle)
        PORTICO_TEST_SKIP_SLOW=1 bash scripts/sanitize.sh asan ./portico-asan \
            tests/integration/proxy/test_h1_h1_splice.py tests/integration/ws/test_ws_h1.py \
            tests/integration/h2/test_h2_idle_memory.py \
            tests/integration/proxy/test_h1_h1_fuzz_regressions.py \
            tests/integration/h2/test_h2_fuzz_regressions.py \
            tests/integration/ws/test_ws_fuzz_regressions.py \
            tests/integration/proxy/test_h1_h1_malformed.py \
            tests/integration/proxy/test_h1_h1_security.py \
            tests/integration/proxy/test_h1_h1_bodies.py \
            tests/integration/h2/test_h2_security.py tests/integration/h2/test_h2_rfc9113.py \
            tests/integration/h2/test_h2_floods.py tests/integration/compress/test_compress.py \
            2>&1 | tee "$step"
    else
        tail -20 "$step"; echo "asan: 0 passed, 1 failed" | tee "$step"
    fi
    hard "$step"
    if make -j"$(nproc)" -s portico-tsan >"$step" 2>&1; then
        # where the main loop and the workers meet: reload, health checks, two workers, the
        # metrics page (every worker's counters summed by the one that answers)
        bash scripts/sanitize.sh tsan ./portico-tsan tests/integration/reload \
            tests/integration/health tests/integration/proxy/test_h1_h1_concurrency.py \
            tests/integration/ops/test_ops_metrics.py \
            --deselect tests/integration/reload/test_reload.py::test_reload_keeps_process_settings \
            2>&1 | tee "$step"
    else
        tail -20 "$step"; echo "tsan: 0 passed, 1 failed" | tee "$step"
    fi
    hard "$step"
    rm -f "$step"
    echo "hardening took $(( $(date +%s) - hard_start )) s"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
