#!/usr/bin/env bash
# tests/e2e/run.sh - the end-to-end suite against a built wsgate.
#   WSGATE_BIN=build/release/wsgate tests/e2e/run.sh [FILE.test.mjs ...]
# Runs node's test runner over *.test.mjs (two files at a time: a 2-core machine), then the
# Python `websockets` check, and ends with one line `e2e: N passed, N failed`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"

export WSGATE_BIN=$(realpath -m "${WSGATE_BIN:-build/release/wsgate}")
if [ ! -x "$WSGATE_BIN" ]; then
    echo "e2e: $WSGATE_BIN is not built"
    echo "e2e: 0 passed, 1 failed"
    exit 1
fi
for d in "$here" "$top/examples/chat"; do
    if [ ! -d "$d/node_modules" ]; then
        echo "e2e: npm install in ${d#"$top"/}"
        (cd "$d" && npm install --no-audit --no-fund --loglevel=error >/dev/null) || exit 1
    fi
done

if [ $# -gt 0 ]; then files=("$@"); else files=("$here"/*.test.mjs); fi
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT

# spec for people on stdout, TAP in a file for the counts
timeout -k 10 300 node --test --test-concurrency=2 --test-timeout=120000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "${files[@]}"
node_rc=$?
node_pass=$(grep -E '^# pass [0-9]+' "$tap" | tail -1 | awk '{print $3}')
node_fail=$(grep -E '^# fail [0-9]+' "$tap" | tail -1 | awk '{print $3}')
node_cancel=$(grep -E '^# cancelled [0-9]+' "$tap" | tail -1 | awk '{print $3}')
node_pass=${node_pass:-0}
node_fail=$(( ${node_fail:-0} + ${node_cancel:-0} ))
if [ "$node_rc" -ne 0 ] && [ "$node_fail" -eq 0 ]; then node_fail=1; fi  # crashed or timed out

py_pass=0 py_fail=0
if [ $# -eq 0 ]; then
    echo "# python websockets"
    py_out=$(timeout -k 5 90 /usr/bin/python3 "$here/55-python-websockets.py" 2>&1)
    py_rc=$?
    echo "$py_out"
    line=$(grep -E '^python: [0-9]+ passed, [0-9]+ failed' <<<"$py_out" | tail -1)
    if [ -n "$line" ]; then
        py_pass=$(awk '{print $2}' <<<"$line")
        py_fail=$(awk '{print $4}' <<<"$line")
    fi
    if [ "$py_rc" -ne 0 ] && [ "$py_fail" -eq 0 ]; then py_fail=1; fi
fi

pass=$((node_pass + py_pass))
fail=$((node_fail + py_fail))
echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
