#!/usr/bin/env bash
# tls/mbedtls/test-suites.sh SRC_DIR - mbedTLS's own test suites against our build (issue 18).
#
# SRC_DIR is the patched, configured and built source tree that tls/mbedtls/build.sh leaves in
# build/deps/mbedtls-<key>/src (its libraries contain the nettle PSA driver). The suites chosen
# are those that cover what the driver takes over, plus TLS itself, and fit CI's time (about
# 30 s to build and 15 s to run on this project's 2-core machine; ~11,000 test cases):
#   test_suite_psa_crypto                 ECDSA sign/verify (RFC 6979 vectors), ECDH (RFC 7748,
#                                         NIST), key generation, export_public_key, AEAD vectors
#   test_suite_psa_crypto_generate_key.generated, _op_fail.generated, _not_supported.generated,
#   test_suite_psa_crypto_storage_format.current, test_suite_psa_crypto_ecp
#                                         every key type/algorithm pair, incl. the refusals
#   test_suite_pk, test_suite_x509write   ECDSA signing through pk (PSA-backed EC keys)
#   test_suite_ssl                        TLS 1.2/1.3 handshakes, resumption, key update in memory
#   test_suite_gcm.*, test_suite_ecdsa, test_suite_ecdh
#                                         the built-in code the driver falls back to
# Left out: ssl-opt.sh and compat.sh (need mbedTLS's programs and OpenSSL/GnuTLS peers; run for
# 30+ min), and the suites for algorithms the driver does not touch.
# Prints each suite's result and a last line "mbedtls: N passed, N failed"; exits non-zero on failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
src=$(realpath "${1:?usage: test-suites.sh SRC_DIR}")
[ -f "$src/tests/Makefile" ] && [ -f "$src/library/libmbedcrypto.a" ] ||
    { echo "mbedtls: $src is not a built mbedTLS source tree" >&2; exit 2; }

suites=(
    test_suite_psa_crypto
    test_suite_psa_crypto_generate_key.generated
    test_suite_psa_crypto_op_fail.generated
    test_suite_psa_crypto_not_supported.generated
    test_suite_psa_crypto_storage_format.current
    test_suite_psa_crypto_ecp
    test_suite_pk
    test_suite_x509write
    test_suite_ssl
    test_suite_gcm.aes128_en test_suite_gcm.aes128_de
    test_suite_gcm.aes192_en test_suite_gcm.aes192_de
    test_suite_gcm.aes256_en test_suite_gcm.aes256_de
    test_suite_gcm.misc
    test_suite_ecdsa
    test_suite_ecdh
)

# The same driver header path as the library build; the driver object is already inside
# libmbedcrypto.a, and it needs nettle. GEN_FILES= : the generated sources are in the tarball.
libs="-lhogweed -lnettle -lgmp"
# the optional libsodium X25519 path of the driver (config: WSG_PSA_SODIUM_X25519)
grep -q '^#define WSG_PSA_SODIUM_X25519' "$src/include/mbedtls/mbedtls_config.h" && libs="$libs -lsodium"
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] && jobs=2
t0=$(date +%s)
if ! make -s -C "$src/tests" -j"$jobs" GEN_FILES= CFLAGS="-O2 -I$top/tls/psa" \
    LDFLAGS="$libs" "${suites[@]}" >"$src/tests/wsg-build.log" 2>&1; then
    tail -30 "$src/tests/wsg-build.log"
    echo "mbedtls: 0 passed, ${#suites[@]} failed (the suites did not build)"
    exit 1
fi
t1=$(date +%s)

pass=0 fail=0
for s in "${suites[@]}"; do
    # The suites find their data files (certificates, keys) relative to tests/.
    out=$(cd "$src/tests" && "./$s" 2>&1)
    rc=$?
    last=$(echo "$out" | tail -1)
    if [ $rc -eq 0 ] && echo "$last" | grep -q '^PASSED'; then
        pass=$((pass + 1))
        echo "mbedtls: $s: $last"
    else
        fail=$((fail + 1))
        echo "$out" | grep -E 'FAILED|^  ' | head -40
        echo "mbedtls: $s: FAILED (exit $rc): $last"
    fi
done
echo "mbedtls: suites built in $((t1 - t0)) s, ran in $(($(date +%s) - t1)) s"
echo "mbedtls: $pass passed, $fail failed"
[ $fail -eq 0 ]
