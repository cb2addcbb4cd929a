#!/usr/bin/env bash
# `make install` into a scratch DESTDIR, twice (PREFIX=/usr as a package does, then the default
# /usr/local): every file where it belongs with its mode, the unit pointing at the installed
# binary and config, the installed `wsgate -t -c .../wsgate.conf` passing, a second install
# leaving an edited wsgate.conf alone; and the example configuration with every commented default
# uncommented still passing `wsgate -t` (its defaults are valid values).
#   tests/install-check.sh FLAVOUR
set -uo pipefail
flavour=${1:-release}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "install: $*"; fail=$((fail + 1)); }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

if ! make --no-print-directory -s FLAVOUR="$flavour" install DESTDIR="$root/pkg" PREFIX=/usr >"$root/log" 2>&1; then
    cat "$root/log"
    bad "make install PREFIX=/usr failed"
else
    while read -r mode path; do
        if [ ! -f "$root/pkg$path" ]; then
            bad "$path not installed"
        elif [ "$(stat -c %a "$root/pkg$path")" != "$mode" ]; then
            bad "$path has mode $(stat -c %a "$root/pkg$path"), not $mode"
        else ok; fi
    done <<'LIST'
755 /usr/sbin/wsgate
755 /usr/bin/wsgate-certs
755 /usr/bin/wsgate-ctl
644 /usr/share/man/man8/wsgate.8
644 /usr/share/man/man8/wsgate-certs.8
644 /usr/share/man/man8/wsgate-ctl.8
644 /usr/share/man/man5/wsgate.conf.5
640 /etc/wsgate/wsgate.conf
644 /lib/systemd/system/wsgate.service
644 /etc/logrotate.d/wsgate
644 /usr/share/doc/wsgate/README.md
644 /usr/share/doc/wsgate/examples/wsgate.conf
LIST
    unit=$root/pkg/lib/systemd/system/wsgate.service
    if grep -q '^ExecStart=/usr/sbin/wsgate -c /etc/wsgate/wsgate.conf$' "$unit" && ! grep -q /usr/local "$unit"; then ok
    else bad "the unit does not run /usr/sbin/wsgate -c /etc/wsgate/wsgate.conf"; fi
    if out=$("$root/pkg/usr/sbin/wsgate" -t -c "$root/pkg/etc/wsgate/wsgate.conf" 2>&1); then ok
    else bad "installed wsgate -t on the installed config: $out"; fi
    echo "# edited" >>"$root/pkg/etc/wsgate/wsgate.conf"
    make --no-print-directory -s FLAVOUR="$flavour" install DESTDIR="$root/pkg" PREFIX=/usr >/dev/null 2>&1
    if tail -1 "$root/pkg/etc/wsgate/wsgate.conf" | grep -q '^# edited$'; then ok
    else bad "a second make install overwrote an edited wsgate.conf"; fi
fi

if make --no-print-directory -s FLAVOUR="$flavour" install DESTDIR="$root/local" >/dev/null 2>&1 &&
    [ -x "$root/local/usr/local/sbin/wsgate" ] && [ -f "$root/local/usr/local/etc/wsgate/wsgate.conf" ] &&
    grep -q '^ExecStart=/usr/local/sbin/wsgate -c /usr/local/etc/wsgate/wsgate.conf$' \
        "$root/local/usr/local/lib/systemd/system/wsgate.service"; then ok
else bad "make install with the default PREFIX /usr/local"; fi

# Every "#NAME VALUE" line of the generated part whose value is not a placeholder, uncommented.
conf=build/$flavour/share/wsgate.conf
awk '!gen && /^[a-z_]+ / { set[$1] = 1 } /^# -----/ { gen = 1 }
    gen && /^#[a-z_]+ / && $2 !~ /[A-Z|]/ && !(substr($1, 2) in set) { sub(/^#/, ""); print; next } { print }' \
    "$conf" >"$root/all-defaults.conf"
n=$(grep -cE '^[a-z_]+ ' "$root/all-defaults.conf")
if out=$("build/$flavour/wsgate" -t -c "$root/all-defaults.conf" 2>&1) && [ "$n" -gt 60 ]; then ok
else bad "the example's $n defaults uncommented do not pass wsgate -t: $out"; fi

echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
