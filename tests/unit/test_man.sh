#!/bin/sh
# SPDX-License-Identifier: MIT
# The man pages in man/ (installed by `make install`) cannot drift from the docs or the code:
# - they are exactly what scripts/gen-man.py generates from docs/configuration.md,
#   docs/operations.md and README.md (`make man` regenerates them);
# - groff renders them without a warning, and `man -l` renders them;
# - portico(8) documents, in SYNOPSIS and OPTIONS, every option `portico -h` prints.
# Writes nothing into the source tree (make distcheck's is read-only). One cmocka-style line per
# check, as test_layers.sh, so scripts/test.sh counts them; a missing tool skips its check.
srcdir=${srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=/usr/bin/python3
PORTICO=${PORTICO_BIN:-./portico}
[ -x "$PORTICO" ] || PORTICO="$srcdir/portico"
fail=0
ok() { echo "[       OK ] $1"; }
ko() { echo "[  FAILED  ] $1"; fail=1; }
skip() { echo "[  SKIPPED ] $1"; }
pages="portico.8 portico.conf.5"

if [ -x "$PY" ]; then
    if "$PY" "$srcdir/scripts/gen-man.py" --srcdir "$srcdir" --check; then
        ok "man pages are what the docs generate"
    else
        ko "man pages are what the docs generate (run make man and commit man/)"
    fi
else
    skip "man pages are what the docs generate: no $PY"
fi

if command -v groff >/dev/null 2>&1; then
    for p in $pages; do
        out=$(groff -man -Tutf8 -ww -z "$srcdir/man/$p" 2>&1)
        if [ -z "$out" ]; then ok "groff renders $p without warnings"
        else echo "$out"; ko "groff renders $p without warnings"; fi
    done
else
    skip "groff renders the pages: no groff (apt-get install groff-base)"
fi

if command -v man >/dev/null 2>&1; then
    for p in $pages; do
        out=$(MANWIDTH=80 man -P cat -l "$srcdir/man/$p" 2>&1)
        if printf '%s\n' "$out" | grep -q '^NAME' &&
            printf '%s\n' "$out" | grep -q '^SEE ALSO'; then
            ok "man -l renders $p"
        else
            printf '%s\n' "$out" | head -20
            ko "man -l renders $p"
        fi
    done
else
    skip "man -l renders the pages: no man (apt-get install man-db)"
fi

if [ -x "$PORTICO" ] && command -v groff >/dev/null 2>&1; then
    # the page as plain text: bold and underline overstrikes removed
    text=$(groff -man -Tascii -P-c -P-b -P-u "$srcdir/man/portico.8" 2>/dev/null)
    synopsis=$(printf '%s\n' "$text" | sed -n '/^SYNOPSIS/,/^[A-Z]/p')
    options=$(printf '%s\n' "$text" | sed -n '/^OPTIONS/,/^[A-Z]/p')
    missing=""
    for o in $("$PORTICO" -h | grep -o '^ *-[A-Za-z]' | tr -d ' '); do
        printf '%s\n' "$synopsis" | grep -q -- "\[$o\b" || missing="$missing $o(SYNOPSIS)"
        printf '%s\n' "$options" | grep -q -- "^ *$o\b" || missing="$missing $o(OPTIONS)"
    done
    if [ -z "$missing" ] && [ -n "$("$PORTICO" -h | grep -o '^ *-[A-Za-z]')" ]; then
        ok "portico(8) documents every option of portico -h"
    else
        "$PORTICO" -h
        ko "portico(8) documents every option of portico -h; missing:$missing"
    fi
else
    skip "portico(8) documents every option: no $PORTICO or no groff"
fi
exit $fail
