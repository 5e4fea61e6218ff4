#!/bin/sh
# Run portico's integration tests (pytest from Debian, /usr/bin/python3).
#   tests/integration/run.sh [pytest args...] [tests/integration/AREA ...]
# PORTICO_BIN selects the binary (default: ./portico at the repo root).
# Uses pytest-xdist (-n 2) when python3-pytest-xdist is installed.
# Set PORTICO_TEST_SKIP_SLOW=1 to leave out the 1 GiB streaming tests.
set -u
cd "$(dirname "$0")/../.." || exit 2
PY=/usr/bin/python3
if ! $PY -c 'import pytest' 2>/dev/null; then
    echo "run.sh: python3-pytest is not installed (apt-get install python3-pytest)" >&2
    exit 2
fi
set --  -q -p no:cacheprovider "$@"
if $PY -c 'import xdist' 2>/dev/null; then
    set -- "$@" -n 2
fi
if [ "${PORTICO_TEST_SKIP_SLOW:-0}" = 1 ]; then
    set -- "$@" -m 'not slow'
fi
# paths given (tests/integration/AREA or a file): only those; else the whole suite
for a in "$@"; do
    case $a in tests/*|./tests/*|/*) exec $PY -m pytest "$@" ;; esac
done
$PY -m pytest "$@" tests/integration
exit $?
