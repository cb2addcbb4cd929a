#!/usr/bin/env bash
# Checks that README.md's settings reference is what the binary's settings table prints, so the
# documentation cannot drift from the code. `tests/readme-check.sh WSGATE --fix` rewrites it.
set -euo pipefail
bin=$1
top=$(cd "$(dirname "$0")/.." && pwd)
readme=$top/README.md
gen=$("$bin" --help-markdown)
new=$(awk -v gen="$gen" '
    /<!-- BEGIN settings/ { print; print gen; skip = 1; next }
    /<!-- END settings/ { skip = 0 }
    !skip { print }' "$readme")
if [ "${2:-}" = --fix ]; then
    printf '%s\n' "$new" >"$readme"
    exit 0
fi
if ! diff -u "$readme" <(printf '%s\n' "$new") >/dev/null; then
    diff -u "$readme" <(printf '%s\n' "$new") | head -40
    echo "readme: the settings reference is stale: run tests/readme-check.sh $bin --fix"
    echo "readme: 0 passed, 1 failed"
    exit 1
fi
echo "readme: 1 passed, 0 failed"
