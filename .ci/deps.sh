#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently and quietly when it is already there.
#   .ci/deps.sh build   Debian packages for building + our mbedTLS 3.6 build (under build/deps)
#   .ci/deps.sh run     the above + Node.js and the chat example's npm packages (make run)
#   .ci/deps.sh test    the above + test peers (cmocka, python3-websockets, openssl, pebble, node modules)
#   .ci/deps.sh bench   the above + nginx, haproxy
# mbedTLS: wsgate builds its own from Debian 13's 3.6 source package (tls/mbedtls/build.sh), on
# Debian 12 and 13 alike: Debian 12 ships the end-of-life 2.28, and Debian 13's binary build has
# the debug code and none of the PSA driver that the gateway needs (issue 18).
set -euo pipefail
what=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
deps=$top/build/deps

# mbedTLS from source: patch, bzip2/xz-utils (its tarballs), Debian's python3 with jinja2 and
# jsonschema (its driver-dispatch generator), nettle-dev (the PSA driver's primitives).
need_pkgs=(gcc make pkg-config libev-dev libwslay-dev nettle-dev libhiredis-dev zlib1g-dev patch bzip2 xz-utils python3 python3-jinja2
    python3-jsonschema)
case $what in
run) need_pkgs+=(nodejs) ;;
test) need_pkgs+=(libcmocka-dev python3 python3-websockets openssl nodejs valgrind chromium testssl.sh man-db groff-base prometheus dpkg-dev debhelper lintian haproxy redis-server pebble) ;;
bench) need_pkgs+=(libcmocka-dev nginx-light haproxy openssl) ;;
esac

missing=()
for p in "${need_pkgs[@]}"; do
    # nodejs may come from elsewhere than Debian: a working node + npm is enough.
    if [ "$p" = nodejs ] && command -v node >/dev/null && command -v npm >/dev/null; then continue; fi
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" nodejs "* ]] && ! command -v npm >/dev/null; then
        apt-get install -y -qq --no-install-recommends npm >/dev/null
    fi
fi

# mbedTLS 3.6, built from Debian 13's source package with our configuration and the nettle PSA
# driver (tls/mbedtls/build.sh; cached under build/deps by a hash of its inputs).
"$top/tls/mbedtls/build.sh" "$deps"

# The bench compares our build with mbedTLS as Debian 13 builds it: its binary packages, fetched
# with a private apt configuration (own sources list, lists and cache; the system's apt sources
# are untouched) and unpacked under build/deps/mbedtls-debian.
if [ "$what" = bench ] && [ ! -f "$deps/mbedtls-debian/.ok" ]; then
    echo "deps: fetching Debian 13's mbedTLS binary packages into build/deps/mbedtls-debian (bench)"
    apt_dir=$deps/apt
    rm -rf "$apt_dir" "$deps/mbedtls-debian"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/dl" "$deps/mbedtls-debian"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o "Dir::State::Status=/var/lib/dpkg/status" -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
    apt-get "${apt_opts[@]}" update -qq >/dev/null
    (cd "$apt_dir/dl" && apt-get "${apt_opts[@]}" download -qq \
        libmbedtls-dev libmbedtls21 libmbedcrypto16 libmbedx509-7 >/dev/null)
    for f in "$apt_dir"/dl/*.deb; do dpkg-deb -x "$f" "$deps/mbedtls-debian"; done
    grep -q 'MBEDTLS_VERSION_STRING *"3\.6' "$deps/mbedtls-debian/usr/include/mbedtls/build_info.h"
    touch "$deps/mbedtls-debian/.ok"
fi

if [ "$what" = test ] || [ "$what" = run ]; then
    dirs=(examples/chat)
    [ "$what" = test ] && dirs+=(tests/e2e)
    for d in "${dirs[@]}"; do
        if [ -f "$top/$d/package.json" ] && ! [ "$top/$d/node_modules/.ok" -nt "$top/$d/package-lock.json" ]; then
            echo "deps: npm install in $d"
            (cd "$top/$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules/.ok)
        fi
    done
fi
