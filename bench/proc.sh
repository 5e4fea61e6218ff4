# shellcheck shell=bash
# Sourced by the bench scripts (run.sh, idle.sh, ws.sh) after they make their temp dir $T and
# define log(): every process a script starts goes into STARTED and is stopped by its pid at
# exit, then $T is removed (kept with KEEP_TMP=1).

STARTED=()          # every pid we started, stopped on exit

stop_pid() {        # stop_pid PID [grace-seconds]: TERM, then KILL after the grace (default 5)
    local pid=$1 grace=${2:-5} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    local p
    for p in "${STARTED[@]}"; do stop_pid "$p" 3; done
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
