#!/usr/bin/env bash
# Runs each cmocka unit-test binary given as an argument and prints one closing line
# "unit: N passed, N failed" (N counted in binaries' tests, as cmocka reports them).
set -u
pass=0 fail=0 bad=()
for bin in "$@"; do
    out=$("$bin" 2>&1); rc=$?
    echo "$out" | grep -E '^\[  (PASSED|FAILED)  \]|^\[==========\]' | sed "s|^|$(basename "$bin"): |"
    p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
    if [ $rc -ne 0 ]; then
        bad+=("$bin")
        [ -z "$f" ] && fail=$((fail + 1))
        echo "$out" | tail -40
    fi
done
echo "unit: $pass passed, $fail failed"
[ ${#bad[@]} -eq 0 ]
