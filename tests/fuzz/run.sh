#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs portico's fuzz targets (built by `make fuzz-build`) over their committed corpora.
#
#   tests/fuzz/run.sh [-t SECONDS] [-j N] [TARGET ...]   fuzz each for SECONDS (default 60)
#   tests/fuzz/run.sh -r [TARGET ...]                    replay each corpus once (regressions)
#
# TARGET is a name under tests/fuzz/corpus/ (h1_request, h2_frontend, ...; default: all). Each
# run reads tests/fuzz/corpus/TARGET (read only) and tests/fuzz/dict/ (h1.dict for h1_*,
# h2.dict for h2_*, TARGET.dict otherwise); inputs that add coverage go to
# tests/fuzz/work/TARGET (not committed: copy the good ones into the corpus), crashes to
# tests/fuzz/artifacts/TARGET/. -j runs N targets at once (default 1).
# A target passes when it ran its time (or its corpus) without a crash, leak, timeout or
# sanitizer report. Prints one line per target with executions, exec/s and libFuzzer's edge
# coverage (cov:), then "fuzz: N passed, N failed"; exits non-zero when one failed.
set -u
cd "$(dirname "$0")"
seconds=60
jobs=1
replay=0
while getopts "t:j:r" o; do
    case $o in
    t) seconds=$OPTARG ;;
    j) jobs=$OPTARG ;;
    r) replay=1 ;;
    *) echo "usage: $0 [-t SECONDS] [-j N] [-r] [TARGET ...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(ls corpus))

dict_of() {
    case $1 in
    h1_*) echo dict/h1.dict ;;
    h2_*) echo dict/h2.dict ;;
    *) [ -f "dict/$1.dict" ] && echo "dict/$1.dict" ;;
    esac
}

# one target: writes its summary line to logs/TARGET.sum, its libFuzzer output to logs/TARGET.log
run_one() {
    local t=$1 bin=./fuzz_$1 dict log sum status
    dict=$(dict_of "$t")
    log=logs/$t.log
    sum=logs/$t.sum
    mkdir -p "work/$t" "artifacts/$t" logs
    if [ ! -x "$bin" ]; then
        echo "fuzz_$t: FAILED (not built: make fuzz-build)" >"$sum"
        return
    fi
    local args=(-print_final_stats=1 -timeout=25 -rss_limit_mb=2560 -max_len=8192
                -artifact_prefix="artifacts/$t/" ${dict:+-dict=$dict})
    if [ "$replay" = 1 ]; then
        # every committed input once, the crash regressions among them
        "$bin" "${args[@]}" -runs=0 "corpus/$t" >"$log" 2>&1
    else
        "$bin" "${args[@]}" -max_total_time="$seconds" "work/$t" "corpus/$t" >"$log" 2>&1
    fi
    status=$?
    local execs rate cov ft
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -aoE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    ft=$(grep -aoE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    if [ "$status" = 0 ]; then
        echo "fuzz_$t: passed: ${execs:-?} execs, ${rate:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}," \
             "corpus $(ls "corpus/$t" | wc -l) + $(ls "work/$t" | wc -l) new" >"$sum"
    else
        echo "fuzz_$t: FAILED (exit $status): $(grep -aE '^SUMMARY|==fuzz oracle==|ERROR: libFuzzer' "$log" | head -2 | tr '\n' ' ')" \
             "inputs: $(ls "artifacts/$t" | tr '\n' ' '); log tests/fuzz/$log" >"$sum"
    fi
}

rm -f logs/*.sum
running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait
passed=0
failed=0
for t in "${targets[@]}"; do
    cat "logs/$t.sum"
    if grep -q ': passed' "logs/$t.sum"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
