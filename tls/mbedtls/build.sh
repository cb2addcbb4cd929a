#!/usr/bin/env bash
# tls/mbedtls/build.sh DEPS_DIR - wsgate's own build of mbedTLS 3.6 (issue 18).
#
#   1. fetch Debian 13's mbedtls *source* package (kept in DEPS_DIR/mbedtls-src, fetched once)
#      with a private apt configuration: its own sources list, lists and cache; the system's apt
#      sources are untouched;
#   2. unpack it, apply Debian's patches (debian/patches/series), then ours
#      (tls/mbedtls/patches/*.patch, in name order; each says why it exists);
#   3. append tls/mbedtls/config.h to include/mbedtls/mbedtls_config.h;
#   4. regenerate the PSA driver dispatch from its templates (scripts/generate_driver_wrappers.py);
#   5. build the static libraries with mbedTLS's own library/Makefile, Debian's hardening flags
#      and -maes -mpclmul -msse4.1 (x86-64-v2), then compile the PSA driver (tls/psa/*.c) with
#      the same flags into libmbedcrypto.a, so everything that links mbedTLS links the driver;
#   6. install include/ and lib/ into DEPS_DIR/mbedtls-KEY and point DEPS_DIR/mbedtls-current at it.
#
# KEY is a hash of every input (the pinned version, this script, the config, the patches, the
# driver sources), so a change to any of them builds anew and an unchanged tree costs nothing.
# The patched, built source tree stays in DEPS_DIR/mbedtls-KEY/src for mbedTLS's own test suites
# (tls/mbedtls/test-suites.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
deps=$(realpath -m "${1:-$top/build/deps}")
# The version we build and measured; Debian keeps only the current one of each suite on its
# mirror, so when a security update replaces it we take trixie's newest 3.6 and say so.
VERSION=3.6.6-0.1~deb13u1
# Debian 12's hardening flags (dpkg-buildflags with hardening=+all), fixed here so that the
# build does not need dpkg-dev; plus x86-64-v2's AES-NI, PCLMUL and SSE4.1 (every server CPU
# since 2009): AES-GCM 1.29x, SSE4.1 being the part that matters. -O2: -O3 alone made
# AES-GCM 0.8x.
CFLAGS_MB="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -Wdate-time \
-D_FORTIFY_SOURCE=2 -maes -mpclmul -msse4.1"
PY=/usr/bin/python3 # Debian's, with python3-jinja2 and python3-jsonschema

inputs=("$here/build.sh" "$here/config.h")
for f in "$here"/patches/*.patch "$top"/tls/psa/*.[ch]; do [ -f "$f" ] && inputs+=("$f"); done
key=$({
    echo "$VERSION $CFLAGS_MB"
    for f in "${inputs[@]}"; do echo "== ${f#"$top"/}"; cat "$f"; done
} | sha256sum | cut -c1-16)
out=$deps/mbedtls-$key
if [ -f "$out/.ok" ]; then
    ln -sfn "mbedtls-$key" "$deps/mbedtls-current"
    exit 0
fi

# 1. The source package, fetched once per machine.
dl=$deps/mbedtls-src
if ! ls "$dl"/mbedtls_*.dsc >/dev/null 2>&1; then
    echo "mbedtls: fetching Debian 13's mbedtls source package into ${dl#"$top"/}"
    apt_dir=$deps/apt-src
    rm -rf "$apt_dir" "$dl"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dl"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o "Dir::State::Status=/var/lib/dpkg/status" -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
    apt-get "${apt_opts[@]}" update -qq >/dev/null
    if ! (cd "$dl" && apt-get "${apt_opts[@]}" source --download-only -qq "mbedtls=$VERSION" >/dev/null 2>&1); then
        echo "mbedtls: WARNING: $VERSION is no longer on the mirror; taking trixie's current mbedtls"
        (cd "$dl" && apt-get "${apt_opts[@]}" source --download-only -qq mbedtls >/dev/null)
    fi
fi
orig=$(ls "$dl"/mbedtls_*.orig.tar.* | head -1)
debtar=$(ls "$dl"/mbedtls_*.debian.tar.* | head -1)

# 2. Unpack and patch.
echo "mbedtls: building $(basename "$(ls "$dl"/*.dsc | head -1)" .dsc) with our configuration into ${out#"$top"/}"
rm -rf "$out"
mkdir -p "$out/unpack"
tar -xf "$orig" -C "$out/unpack"
mv "$out"/unpack/mbedtls-* "$out/src"
rmdir "$out/unpack"
src=$out/src
tar -xf "$debtar" -C "$src"
if [ -f "$src/debian/patches/series" ]; then
    grep -v '^\s*#' "$src/debian/patches/series" | while read -r p _; do
        [ -n "$p" ] && patch -s -p1 -d "$src" <"$src/debian/patches/$p"
    done
fi
for p in "$here"/patches/*.patch; do
    [ -f "$p" ] || continue
    echo "mbedtls: applying ${p#"$top"/}"
    patch -s -p1 -d "$src" <"$p"
done
grep -q 'MBEDTLS_VERSION_STRING *"3\.6' "$src/include/mbedtls/build_info.h" ||
    { echo "mbedtls: the source package is not mbedTLS 3.6" >&2; exit 1; }

# 3. Configuration.
{
    echo
    echo "/* ---- appended by wsgate's tls/mbedtls/build.sh: tls/mbedtls/config.h ---- */"
    cat "$here/config.h"
} >>"$src/include/mbedtls/mbedtls_config.h"

# 4. Driver dispatch, from the (patched) templates.
(cd "$src" && "$PY" scripts/generate_driver_wrappers.py)

# 5. Libraries, then the driver into libmbedcrypto.a.
cflags="$CFLAGS_MB -I$top/tls/psa"
make -s -C "$src/library" -j"$(nproc)" GEN_FILES= CC="${CC:-gcc}" CFLAGS="$cflags" static >/dev/null
drv=()
for c in "$top"/tls/psa/*.c; do
    [ -f "$c" ] || continue
    o=$src/library/wsg_psa_$(basename "$c" .c).o
    "${CC:-gcc}" $cflags -I"$src/include" -I"$src/library" -c -o "$o" "$c"
    drv+=("$o")
done
[ ${#drv[@]} -eq 0 ] || ar rcs "$src/library/libmbedcrypto.a" "${drv[@]}"

# 6. Install.
mkdir -p "$out/lib"
cp -r "$src/include" "$out/include"
cp "$src"/library/libmbedtls.a "$src"/library/libmbedx509.a "$src"/library/libmbedcrypto.a "$out/lib/"
touch "$out/.ok"
ln -sfn "mbedtls-$key" "$deps/mbedtls-current"
# Builds of older inputs are not needed any more.
for old in "$deps"/mbedtls-????????????????; do
    [ "$old" = "$out" ] || rm -rf "$old"
done
echo "mbedtls: done"
