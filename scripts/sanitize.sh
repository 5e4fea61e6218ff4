#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs integration tests against a sanitizer build of portico (make check-asan / check-tsan).
#
#   scripts/sanitize.sh asan BINARY [pytest args]   the whole suite (or the tests given)
#   scripts/sanitize.sh tsan BINARY [pytest args]   the multi-worker and health tests (or ...)
#
# BINARY is portico-asan (ASan + UBSan, every report fatal) or portico-tsan. Sanitizer reports
# go to a directory of their own as well as to portico's stderr, so a report is counted even
# when the test around it passed (a race in a worker that the test did not notice, a leak found
# at exit). The last line is "KIND: N passed, N failed; R sanitizer report(s)"; the exit status
# is 0 only when no test failed and there was no report.
set -u
kind=${1:-}
bin=${2:-}
[ -n "$kind" ] && [ -x "$bin" ] || { echo "usage: $0 asan|tsan BINARY [pytest args]" >&2; exit 2; }
shift 2
cd "$(dirname "$0")/.."
reports=$(mktemp -d "/tmp/portico-$kind.XXXXXX")
wrapper=$reports/portico
case $kind in
asan)
    export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:detect_stack_use_after_return=1:strict_string_checks=1"
    export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
    # the issue's whole suite; PORTICO_TEST_SKIP_SLOW=1 leaves out the 1 GiB streams
    set -- "$@"
    ;;
tsan)
    export TSAN_OPTIONS="log_path=$reports/tsan:halt_on_error=0:exitcode=66:second_deadlock_stack=1:history_size=4:suppressions=$PWD/scripts/tsan.supp"
    # the tests with more than one worker, and those where the main loop and the workers meet:
    # health checks and balancer updates (posted to every worker), reload (a new snapshot
    # switched to by each worker), ticket keys
    [ $# -gt 0 ] || set -- tests/integration/balance tests/integration/health \
        tests/integration/reload tests/integration/h2/test_h2_floods.py \
        tests/integration/h2/test_h2_h1_basic.py tests/integration/h2/test_h2_backend.py \
        tests/integration/proxy/test_h1_h1_concurrency.py \
        tests/integration/proxy/test_h1_h1_lifecycle.py tests/integration/proxy/test_h1_h1_pool.py \
        tests/integration/proxy/test_h1_h1_request_id.py tests/integration/grpc/test_grpc_h2c.py \
        tests/integration/tls/test_tls_frontend.py \
        tests/integration/access/test_access_limit_store.py
    # these count the process's threads, and TSan runs one of its own
    set -- "$@" --deselect \
        tests/integration/reload/test_reload.py::test_reload_keeps_process_settings \
        --deselect tests/integration/proxy/test_h1_h1_lifecycle.py::test_h1_h1_workers_2_both_serve
    ;;
*)
    echo "$0: unknown kind $kind (asan, tsan)" >&2
    exit 2
    ;;
esac
# The tests run PORTICO_BIN; the wrapper execs, so their pid and signals still reach portico.
printf '#!/bin/sh\nexec %s "$@"\n' "$(readlink -f "$bin")" >"$wrapper"
chmod +x "$wrapper"
out=$(mktemp)
if [ $# -gt 0 ]; then
    PORTICO_BIN=$wrapper /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        $(/usr/bin/python3 -c 'import xdist' 2>/dev/null && echo "-n 2") "$@" 2>&1 | tee "$out"
else
    PORTICO_BIN=$wrapper bash tests/integration/run.sh 2>&1 | tee "$out"
fi
summary=$(grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' "$out" | tail -1)
count() { grep -oE "[0-9]+ $1" <<<"$summary" | grep -oE '^[0-9]+' || echo 0; }
pass=$(count passed)
fail=$(( $(count failed) + $(count 'errors?') ))
[ -n "$summary" ] || fail=$((fail + 1))
# A sanitizer build runs several times slower, and a few tests measure time: a test that failed
# runs once more, alone; it counts as failed only if it fails again. Sanitizer reports from the
# first run count whatever the second says.
failed_ids=$(sed -n 's/^\(FAILED\|ERROR\) \([^ ]*\).*/\2/p' "$out" | sort -u)
rm -f "$out"
if [ -n "$summary" ] && [ "$fail" -gt 0 ] && [ -n "$failed_ids" ]; then
    echo "rerunning alone: $failed_ids"
    again=$(mktemp)
    PORTICO_BIN=$wrapper /usr/bin/python3 -m pytest -q -p no:cacheprovider $failed_ids 2>&1 |
        tee "$again"
    summary2=$(grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' "$again" | tail -1)
    rm -f "$again"
    refail=$(( $(grep -oE '[0-9]+ failed' <<<"$summary2" | grep -oE '^[0-9]+' || echo 0) +
               $(grep -oE '[0-9]+ errors?' <<<"$summary2" | grep -oE '^[0-9]+' || echo 0) ))
    [ -n "$summary2" ] || refail=$fail
    echo "$((fail - refail)) of $fail failed test(s) passed when run again alone (timing)"
    pass=$((pass + fail - refail))
    fail=$refail
fi
n=0
for f in "$reports"/asan.* "$reports"/ubsan.* "$reports"/tsan.*; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    echo "---- $f"
    grep -E '^SUMMARY|^WARNING: ThreadSanitizer|runtime error' "$f" | head -5
done
echo "reports kept in $reports"
echo "$kind: $pass passed, $fail failed; $n sanitizer report(s)"
[ "$fail" = 0 ] && [ "$n" = 0 ]
