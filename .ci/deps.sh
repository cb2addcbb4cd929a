#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently and quietly when it is already there.
#   .ci/deps.sh build   Debian packages for building + our mbedTLS 3.6 build (under build/deps)
#   .ci/deps.sh run     the above + Node.js and the chat example's npm packages (make run)
#   .ci/deps.sh test    the above + test peers (cmocka, python3-websockets, openssl, node modules)
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
need_pkgs=(gcc make pkg-config libev-dev libwslay-dev nettle-dev patch bzip2 xz-utils python3 python3-jinja2
    python3-jsonschema)
case $what in
run) need_pkgs+=(nodejs) ;;
test) need_pkgs+=(libcmocka-dev python3 python3-websockets openssl nodejs valgrind chromium testssl.sh) ;;
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
