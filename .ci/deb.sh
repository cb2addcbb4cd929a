#!/usr/bin/env bash
# Builds the Debian package of wsgate with Debian's own tools and checks it (make deb).
#   .ci/deb.sh
# 1. copies the tracked sources (plus build/deps, the unpacked mbedTLS of Debian 12 machines) to
#    build/deb/wsgate-VERSION/, adds debian/ from the templates in .ci/debian/ (the changelog gets
#    the version from git: 0.1.0+gitDATE.COMMIT), and runs dpkg-buildpackage -b (debhelper 13);
# 2. lintian on the .deb: any error fails (warnings are printed); when lintian is missing the run
#    prints why and goes on (the issue allows that, never silently);
# 3. installs the .deb into a scratch root: an overlay of / (copy-on-write, nothing of the host
#    changes) entered with chroot, where `dpkg -i` runs the real maintainer scripts; then checks
#    the wsgate user, the files and their modes, and runs the installed
#    `wsgate -t -c /etc/wsgate/wsgate.conf` as the packaged unit's ExecStartPre does. Where an
#    overlay cannot be mounted (no CAP_SYS_ADMIN) it says so and checks the extracted files.
# Ends with `deb: N passed, N failed`.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "deb: FAIL: $*"; fail=$((fail + 1)); }
finish() { echo "deb: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

for tool in dpkg-buildpackage dh; do
    command -v "$tool" >/dev/null || { bad "$tool is missing (.ci/deps.sh test installs dpkg-dev, debhelper)"; finish; }
done

date=$(git log -1 --format=%cd --date=format:%Y%m%d)
commit=$(git rev-parse --short=8 HEAD)
version=0.1.0+git$date.$commit
out=$top/build/deb
src=$out/wsgate-$version
rm -rf "$out"
mkdir -p "$src"
git ls-files -z | xargs -0 cp --parents -t "$src"
if [ -d build/deps/mbedtls ]; then
    mkdir -p "$src/build/deps" && cp -a build/deps/mbedtls build/deps/.build-ok "$src/build/deps/" 2>/dev/null
fi
cp -r .ci/debian "$src/debian"
sed -e "s/@VERSION@/$version/" -e "s/@COMMIT@/$(git rev-parse HEAD)/" \
    -e "s/@DATE@/$(git log -1 --format=%cd --date=rfc2822)/" .ci/debian/changelog.in >"$src/debian/changelog"
rm "$src/debian/changelog.in"

t0=$(date +%s)
if (cd "$src" && dpkg-buildpackage -b -us -uc -j2) >"$out/build.log" 2>&1; then ok
else
    tail -30 "$out/build.log"
    bad "dpkg-buildpackage failed (log: build/deb/build.log)"
    finish
fi
deb=$(ls "$out"/wsgate_"$version"_*.deb)
echo "deb: built $(basename "$deb") in $(($(date +%s) - t0)) s ($(du -k "$deb" | cut -f1) KiB)"

# Contents: what the package must hold.
contents=$(dpkg-deb -c "$deb")
for f in ./usr/sbin/wsgate ./usr/bin/wsgate-certs ./etc/wsgate/wsgate.conf ./lib/systemd/system/wsgate.service \
    ./etc/logrotate.d/wsgate ./usr/share/man/man8/wsgate.8.gz ./usr/share/man/man5/wsgate.conf.5.gz \
    ./usr/share/man/man8/wsgate-certs.8.gz ./usr/bin/wsgate-ctl ./usr/share/man/man8/wsgate-ctl.8.gz ./usr/share/doc/wsgate/copyright ./usr/share/doc/wsgate/examples/grafana/wsgate.json; do
    if grep -q " $f\$" <<<"$contents"; then ok; else bad "$f is not in the package"; fi
done
if dpkg-deb -f "$deb" Depends | grep -q 'libev4' && dpkg-deb -f "$deb" Depends | grep -q 'libwslay1'; then ok
else bad "Depends lacks libev4/libwslay1: $(dpkg-deb -f "$deb" Depends)"; fi
if dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles 2>/dev/null | grep -qx /etc/wsgate/wsgate.conf; then ok
else bad "/etc/wsgate/wsgate.conf is not a conffile"; fi

# lintian: no error.
if command -v lintian >/dev/null; then
    t1=$(date +%s)
    lint=$(lintian --tag-display-limit 0 --show-overrides "$deb" 2>&1 | grep -v '^running with root privileges')
    errors=$(grep -c '^E:' <<<"$lint")
    warnings=$(grep -c '^W:' <<<"$lint")
    overridden=$(grep -c '^O:' <<<"$lint")
    [ -n "$lint" ] && sed 's/^/    /' <<<"$lint"
    echo "deb: lintian: $errors errors, $warnings warnings, $overridden overridden (.ci/debian/wsgate.lintian-overrides says why) ($(($(date +%s) - t1)) s)"
    if [ "$errors" -eq 0 ]; then ok; else bad "lintian reports errors"; fi
else
    echo "deb: lintian NOT RUN: lintian is not installed (apt-get install lintian; .ci/deps.sh test installs it)"
fi

# Install into a scratch root.
root=$(mktemp -d)
cleanup() { rm -rf "$root"; }
trap cleanup EXIT
mkdir -p "$root/upper" "$root/work" "$root/merged"
cp "$deb" "$root/wsgate.deb"
cat >"$root/check.sh" <<'SCRIPT'
set -u
r=0
say() { echo "deb: FAIL: $*"; r=1; }
export DEBIAN_FRONTEND=noninteractive
mount -t proc proc /proc 2>/dev/null
getent passwd wsgate >/dev/null && say "a wsgate user exists before the install (not a scratch root?)"
dpkg -i /scratch/wsgate.deb >/scratch/dpkg.log 2>&1 || { cat /scratch/dpkg.log; say "dpkg -i failed"; }
getent passwd wsgate | grep -q ':/nonexistent:/usr/sbin/nologin$' || say "no wsgate system user: $(getent passwd wsgate)"
[ "$(stat -c '%U:%G %a' /etc/wsgate)" = "root:wsgate 750" ] || say "/etc/wsgate is $(stat -c '%U:%G %a' /etc/wsgate)"
[ "$(stat -c '%U:%G %a' /etc/wsgate/wsgate.conf)" = "root:wsgate 640" ] || say "wsgate.conf is $(stat -c '%U:%G %a' /etc/wsgate/wsgate.conf)"
[ -d /var/log/wsgate ] || say "no /var/log/wsgate"
out=$(/usr/sbin/wsgate -t -c /etc/wsgate/wsgate.conf 2>&1) || say "wsgate -t -c /etc/wsgate/wsgate.conf: $out"
echo "deb: installed: $out"
/usr/bin/wsgate-certs --help >/dev/null 2>&1; [ $? -le 1 ] || say "wsgate-certs does not run"
/usr/bin/wsgate-ctl --help >/dev/null 2>&1 || say "wsgate-ctl does not run"
MANWIDTH=80 man wsgate.conf 2>/dev/null | grep -q 'max_connections_per_ip' || say "man wsgate.conf does not show the settings"
dpkg -r wsgate >/scratch/dpkg.log 2>&1 || { cat /scratch/dpkg.log; say "dpkg -r failed"; }
[ ! -e /usr/sbin/wsgate ] || say "/usr/sbin/wsgate left after dpkg -r"
[ -f /etc/wsgate/wsgate.conf ] || say "dpkg -r removed the conffile (only purge should)"
dpkg -P wsgate >/scratch/dpkg.log 2>&1 || { cat /scratch/dpkg.log; say "dpkg -P failed"; }
[ ! -e /etc/wsgate/wsgate.conf ] || say "purge left /etc/wsgate/wsgate.conf"
[ ! -e /var/log/wsgate ] || say "purge left /var/log/wsgate"
umount /proc 2>/dev/null
exit $r
SCRIPT
if unshare -m sh -c "mount -t overlay overlay -o lowerdir=/,upperdir=$root/upper,workdir=$root/work $root/merged" 2>/dev/null; then
    mkdir -p "$root/upper/scratch"
    if unshare -m sh -c "
        mount -t overlay overlay -o lowerdir=/,upperdir=$root/upper,workdir=$root/work $root/merged &&
        mount --bind /dev $root/merged/dev &&
        mount --bind $root $root/merged/scratch &&
        chroot $root/merged /bin/bash /scratch/check.sh"; then ok
    else bad "the package in a scratch root (an overlay of /): see above"; fi
else
    echo "deb: scratch-root install NOT RUN: cannot mount an overlay here (needs CAP_SYS_ADMIN);" \
        "checking the extracted package instead"
    dpkg-deb -x "$deb" "$root/x"
    if out=$("$root/x/usr/sbin/wsgate" -t -c "$root/x/etc/wsgate/wsgate.conf" 2>&1); then ok
    else bad "extracted wsgate -t: $out"; fi
fi
finish
