#!/usr/bin/env bash
# Renders each man page with `man --warnings -l` (every groff warning: -ww) and fails on any warning
# or error, or on a page that renders without its NAME and SEE ALSO sections. wsgate.conf.5 must
# also hold one entry per setting of the table (`wsgate --help` lists them).
#   tests/man-check.sh PAGE...
set -uo pipefail
if ! command -v man >/dev/null || ! command -v groff >/dev/null; then
    echo "man: not checked: man (man-db) or groff (groff-base) is missing; .ci/deps.sh test installs them"
    echo "man: 0 passed, 1 failed"
    exit 1
fi
pass=0 fail=0
for page in "$@"; do
    err=$(mktemp)
    out=$(LC_ALL=C.UTF-8 MANWIDTH=100 MANROFFSEQ='' man --warnings=w -E UTF-8 -l "$page" 2>"$err")
    rc=$?
    problems=$(cat "$err")
    rm -f "$err"
    [ $rc -eq 0 ] || problems+=$'\n'"man exited $rc"
    grep -q '^NAME' <<<"$out" || problems+=$'\n'"no NAME section"
    grep -q '^SEE ALSO' <<<"$out" || problems+=$'\n'"no SEE ALSO section"
    if [[ $page == *wsgate.conf.5 ]] && [ -n "${WSGATE_BIN:-}" ]; then
        want=$("$WSGATE_BIN" --help | grep -c '^  --')
        have=$(grep -c '^\.TP' "$page")
        # the SETTINGS section's entries, plus the one .TP of FILES
        [ "$have" -eq $((want + 1)) ] || problems+=$'\n'"$have .TP entries for $want settings (+1 in FILES)"
    fi
    if [ -n "${problems//$'\n'/}" ]; then
        echo "man: $page:"
        sed 's/^/    /' <<<"$problems"
        fail=$((fail + 1))
    else
        pass=$((pass + 1))
    fi
done
echo "man: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
