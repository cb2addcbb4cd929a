#!/usr/bin/env bash
# fuzz/run.sh SECONDS "EXTRA_ARGS" TARGET... - runs each libFuzzer target (built by `make fuzz-build`
# under $FUZZ_ROOT, default build/fuzz) for SECONDS on a scratch copy of fuzz/corpus/TARGET with
# the flags of fuzz/TARGET.options, then prints one line per target from libFuzzer's final stats:
# executions, exec/s, edges (cov:), features (ft:), corpus size. A crash, leak or timeout fails
# the run; its reproducer is named, copied to $FUZZ_ROOT/crashes/ and the log is kept.
# New inputs stay in $FUZZ_ROOT/run/TARGET/corpus (merge them into fuzz/corpus/ by hand:
#   build/fuzz/TARGET -merge=1 fuzz/corpus/TARGET build/fuzz/run/TARGET/corpus).
set -uo pipefail
secs=$1
extra=$2
shift 2
root=${FUZZ_ROOT:-build/fuzz}
fail=0
printf '%-15s %12s %9s %7s %7s %8s  %s\n' target execs exec/s edges ft corpus result
for t in "$@"; do
    bin=$root/$t
    run=$root/run/$t
    rm -rf "$run"
    mkdir -p "$run/corpus" "$run/artifacts" "$root/crashes"
    cp -r "fuzz/corpus/$t/." "$run/corpus/" 2>/dev/null || true
    # [libfuzzer] section of the .options file -> -key=value flags (dict relative to fuzz/).
    opts=()
    if [ -f "fuzz/$t.options" ]; then
        while IFS='=' read -r k v; do
            k=$(echo "$k" | tr -d ' ')
            v=$(echo "$v" | sed 's/^ *//;s/ *$//')
            case $k in '' | '['* | '#'*) continue ;; esac
            [ "$k" = dict ] && v=fuzz/$v
            opts+=("-$k=$v")
        done <"fuzz/$t.options"
    fi
    log=$run/fuzz.log
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=25 -artifact_prefix="$run/artifacts/" \
        "${opts[@]}" $extra "$run/corpus" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\)\/\([0-9]*[a-zA-Z]*\).*/\1 (\2)/p')
    result=ok
    if [ $rc -ne 0 ]; then
        fail=1
        repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        result="FAILED (exit $rc), log $log"
        if [ -n "$repro" ]; then
            cp "$repro" "$root/crashes/$t-$(basename "$repro")"
            result="CRASH: reproducer $repro (copy: $root/crashes/$t-$(basename "$repro")), log $log"
        fi
    fi
    printf '%-15s %12s %9s %7s %7s %8s  %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
    if [ $rc -ne 0 ]; then
        grep -E 'ERROR: |SUMMARY|invariant failed|runtime error' "$log" | head -5 | sed 's/^/    /'
    fi
done
exit $fail
