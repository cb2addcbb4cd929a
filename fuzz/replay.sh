#!/usr/bin/env bash
# fuzz/replay.sh DIR TARGET... - replays fuzz/corpus/TARGET/ through DIR/replay-TARGET (gcc +
# ASan/UBSan, built by `make fuzz-replay`) and prints "fuzz-replay: N passed, M failed".
set -uo pipefail
dir=$1
shift
pass=0
fail=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in "$@"; do
    if [ ! -d "fuzz/corpus/$t" ]; then
        echo "fuzz-replay: no corpus for $t" >&2
        fail=$((fail + 1))
        continue
    fi
    out=$("$dir/replay-$t" "fuzz/corpus/$t")
    echo "$out"
    p=$(echo "$out" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
    f=$(echo "$out" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
    if [ -z "$p" ]; then
        echo "fuzz-replay: replay-$t did not finish" >&2
        fail=$((fail + 1))
        continue
    fi
    pass=$((pass + p))
    fail=$((fail + f))
done
echo "fuzz-replay: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
