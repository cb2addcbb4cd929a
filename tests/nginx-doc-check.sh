#!/usr/bin/env bash
# docs/coming-from-nginx.md cannot drift from the code: its wsgate configuration (the ```conf
# block) passes `wsgate -t` (with a generated certificate in place of the example paths), and
# every setting its mapping table names in the wsgate column is a setting of `wsgate --help`.
#   tests/nginx-doc-check.sh WSGATE WSGATE_CERTS
set -uo pipefail
bin=$1 certs=$2
top=$(cd "$(dirname "$0")/.." && pwd)
doc=$top/docs/coming-from-nginx.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

"$certs" gen --name chat.example.com "$tmp/c.pem" "$tmp/c.key" >/dev/null 2>&1
awk '/^```conf$/ { on = 1; next } /^```$/ { on = 0 } on' "$doc" |
    sed -e "s|/etc/ssl/chat.example.com.pem|$tmp/c.pem|" -e "s|/etc/ssl/chat.example.com.key|$tmp/c.key|" \
        -e "s|^access_log .*|access_log $tmp/access.log|" -e "s|^user .*||" >"$tmp/wsgate.conf"
if [ "$(grep -c . "$tmp/wsgate.conf")" -gt 10 ] && out=$("$bin" -t -c "$tmp/wsgate.conf" 2>&1); then
    pass=$((pass + 1))
else
    echo "nginx-doc: the wsgate configuration of docs/coming-from-nginx.md fails: ${out:-no conf block}"
    fail=$((fail + 1))
fi

settings=$("$bin" --help | awk '/^  --/ { sub(/^  --/, ""); print $1 }')
unknown=()
n=0
# second column of the mapping table: `name value` tokens; the first word must be a setting
while read -r word; do
    n=$((n + 1))
    grep -qx -- "$word" <<<"$settings" || unknown+=("$word")
done < <(awk -F'|' '/^\| `/ { print $3 }' "$doc" | grep -o '`[a-z_]*[ `]' | tr -d '` ' |
    grep -vxE 'route|wsgate|SIGHUP|SIGTERM|' | sort -u)
if [ "$n" -ge 25 ] && [ ${#unknown[@]} -eq 0 ]; then
    pass=$((pass + 1))
else
    echo "nginx-doc: $n names in the table; not settings of this wsgate: ${unknown[*]:-}"
    fail=$((fail + 1))
fi
echo "nginx-doc: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
