#!/bin/sh
# SPDX-License-Identifier: MIT
# The one rule of the layers (docs/architecture.md): a file includes only headers of its own
# layer or of layers below it. core <- net <- upstream <- http | stream <- modules: http and
# stream are siblings (the protocols), neither includes the other. src/core/main.c is the
# composition root and may include anything. Prints one cmocka-style line per layer (so
# scripts/test.sh counts them) and, for each violation, the file, the include and the rule.
cd "$(dirname "$0")/../.." || exit 2

rank() {
    case "$1" in
    core | src/core/*) echo 0 ;;
    net | src/net/*) echo 1 ;;
    upstream | src/upstream/*) echo 2 ;;
    http | src/http/*) echo 3 ;;
    stream | src/stream/*) echo 3 ;;
    modules/*) echo 4 ;;
    *) echo "" ;;
    esac
}

# The layer a file or an include's directory belongs to.
layer_of() {
    case "$1" in
    src/*/*) d=${1#src/}; echo "${d%%/*}" ;;
    modules/*) echo modules ;;
    *) echo "$1" ;;
    esac
}

fail=0
for layer in core net upstream http stream modules; do
    case $layer in
    modules) files=$(ls modules/*.c modules/*.h 2>/dev/null) ;;
    *) files=$(ls src/$layer/*.c src/$layer/*.h 2>/dev/null) ;;
    esac
    bad=0
    for f in $files; do
        [ "$f" = src/core/main.c ] && continue
        own=$(rank "$f")
        for inc in $(sed -n 's/^#include "\([a-z_]*\)\/[^"]*"/\1/p' "$f"); do
            r=$(rank "$inc")
            [ -n "$r" ] || continue
            if [ "$r" -gt "$own" ]; then
                echo "$f includes $(grep -o "#include \"$inc/[^\"]*\"" "$f" | head -1): $inc is above $layer"
                bad=1
            elif [ "$r" -eq "$own" ] && [ "$inc" != "$(layer_of "$f")" ] && [ "$layer" != modules ]; then
                echo "$f includes $(grep -o "#include \"$inc/[^\"]*\"" "$f" | head -1): $inc is beside $layer, not below it"
                bad=1
            fi
        done
    done
    if [ $bad = 0 ]; then
        echo "[       OK ] $layer includes no layer above or beside it"
    else
        echo "[  FAILED  ] $layer includes a layer above or beside it"
        fail=1
    fi
done
exit $fail
