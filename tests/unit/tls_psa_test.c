/*
 * tls_psa_test.c - known answers for the nettle PSA driver (tls/psa/), through the PSA API that
 * mbedTLS's TLS code calls, so that they run the driver the way a handshake or a record does:
 * RFC 7748 X25519, NIST CAVS P-256 ECDH, RFC 6979 deterministic ECDSA P-256 (checked with
 * mbedTLS's own verify, which the driver does not take), NIST CAVP and GCM-spec AES-GCM vectors,
 * and the refusals (tampered tag, low-order and off-curve peers, short buffers). Each test also
 * reads the driver's per-thread counters, so a build where the dispatch does not reach the driver
 * (patch not applied, config line missing) fails here rather than passing on the built-in code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmp.h>
#include <psa/crypto.h>

#include "tls/psa/nettle_driver.h"

/* ---- helpers ---- */

/* Decodes @p hex into a fresh buffer (freed by the caller); its length in @p len. */
static uint8_t *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n + 1);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        b[i] = (uint8_t)v;
    }
    *len = n;
    return b;
}

static psa_key_id_t import(psa_key_type_t type, size_t bits, psa_key_usage_t usage, psa_algorithm_t alg,
                           const char *hex)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_id_t id = 0;
    size_t len;
    uint8_t *data = unhex(hex, &len);

    psa_set_key_type(&a, type);
    psa_set_key_bits(&a, bits);
    psa_set_key_usage_flags(&a, usage);
    psa_set_key_algorithm(&a, alg);
    assert_int_equal(psa_import_key(&a, data, len, &id), PSA_SUCCESS);
    free(data);
    return id;
}

static void assert_hex(const uint8_t *got, size_t got_len, const char *hex)
{
    size_t len;
    uint8_t *want = unhex(hex, &len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, want, len);
    free(want);
}

static unsigned long calls(enum wsg_psa_nettle_op op)
{
    return wsg_psa_nettle_calls(op);
}

#define X25519_PAIR PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY)
#define P256_PAIR PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1)
#define P256_PUBLIC PSA_KEY_TYPE_ECC_PUBLIC_KEY(PSA_ECC_FAMILY_SECP_R1)

/* export_public_key then key agreement with @p peer_hex; both must equal the vector and both
 * must have been the driver's. */
static void agree(psa_key_id_t key, const char *pub_hex, const char *peer_hex, const char *shared_hex)
{
    uint8_t out[PSA_EXPORT_PUBLIC_KEY_MAX_SIZE], *peer;
    size_t out_len = 0, peer_len;
    unsigned long e = calls(WSG_PSA_NETTLE_EXPORT_PUBLIC_KEY), k = calls(WSG_PSA_NETTLE_KEY_AGREEMENT);

    if (pub_hex != NULL) {
        assert_int_equal(psa_export_public_key(key, out, sizeof(out), &out_len), PSA_SUCCESS);
        assert_hex(out, out_len, pub_hex);
        assert_int_equal(calls(WSG_PSA_NETTLE_EXPORT_PUBLIC_KEY), e + 1);
    }
    peer = unhex(peer_hex, &peer_len);
    assert_int_equal(psa_raw_key_agreement(PSA_ALG_ECDH, key, peer, peer_len, out, sizeof(out), &out_len),
                     PSA_SUCCESS);
    free(peer);
    assert_hex(out, out_len, shared_hex);
    assert_int_equal(calls(WSG_PSA_NETTLE_KEY_AGREEMENT), k + 1);
}

static psa_status_t agree_status(psa_key_id_t key, const char *peer_hex)
{
    uint8_t out[66], *peer;
    size_t out_len = 0, peer_len;
    psa_status_t st;

    peer = unhex(peer_hex, &peer_len);
    st = psa_raw_key_agreement(PSA_ALG_ECDH, key, peer, peer_len, out, sizeof(out), &out_len);
    free(peer);
    return st;
}

/* ---- X25519: RFC 7748 ---- */

static void test_x25519_rfc7748(void **state)
{
    (void)state;
    /* §6.1: Alice and Bob. */
    psa_key_id_t alice = import(X25519_PAIR, 255, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH,
                                "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    psa_key_id_t bob = import(X25519_PAIR, 255, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH,
                              "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    agree(alice, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
          "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
          "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    agree(bob, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
          "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
          "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    psa_destroy_key(alice);
    psa_destroy_key(bob);

    /* §5.2: unclamped scalars, and (second) a u-coordinate with its top bit set, which X25519
     * must mask. */
    psa_key_id_t k1 = import(X25519_PAIR, 255, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH,
                             "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    agree(k1, NULL, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
          "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
    psa_destroy_key(k1);
    psa_key_id_t k2 = import(X25519_PAIR, 255, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH,
                             "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
    agree(k2, NULL, "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
          "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
    psa_destroy_key(k2);
}

/* Low-order peer points give an all-zero secret: refused (RFC 7748 §6.1), as mbedTLS refuses them. */
static void test_x25519_bad_peers(void **state)
{
    (void)state;
    psa_key_id_t k = import(X25519_PAIR, 255, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH,
                            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    unsigned long before = calls(WSG_PSA_NETTLE_KEY_AGREEMENT);
    uint8_t out[32], peer[32] = {0};
    size_t out_len;

    assert_int_equal(agree_status(k, "0000000000000000000000000000000000000000000000000000000000000000"),
                     PSA_ERROR_INVALID_ARGUMENT);
    assert_int_equal(agree_status(k, "0100000000000000000000000000000000000000000000000000000000000000"),
                     PSA_ERROR_INVALID_ARGUMENT);
    /* A point of order 8. */
    assert_int_equal(agree_status(k, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
                     PSA_ERROR_INVALID_ARGUMENT);
    assert_int_equal(calls(WSG_PSA_NETTLE_KEY_AGREEMENT), before + 3);
    /* Wrong length: the built-in code refuses it. */
    assert_int_not_equal(agree_status(k, "0900"), PSA_SUCCESS);
    /* A secret buffer too small. */
    peer[0] = 9;
    assert_int_equal(psa_raw_key_agreement(PSA_ALG_ECDH, k, peer, 32, out, 31, &out_len),
                     PSA_ERROR_BUFFER_TOO_SMALL);
    psa_destroy_key(k);
}

/* Generated keys (the TLS 1.3 key share): generation and public key are the driver's, and two
 * parties agree. */
static void test_generate_and_agree(void **state)
{
    (void)state;
    static const struct {
        psa_key_type_t type;
        size_t bits, pub_len;
    } curves[] = {{X25519_PAIR, 255, 32}, {P256_PAIR, 256, 65}};

    for (size_t c = 0; c < sizeof(curves) / sizeof(curves[0]); c++) {
        psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
        psa_key_id_t k1, k2;
        uint8_t p1[65], p2[65], s1[32], s2[32];
        size_t l1, l2, sl1, sl2;
        unsigned long g = calls(WSG_PSA_NETTLE_GENERATE_KEY), e = calls(WSG_PSA_NETTLE_EXPORT_PUBLIC_KEY);

        psa_set_key_type(&a, curves[c].type);
        psa_set_key_bits(&a, curves[c].bits);
        psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE);
        psa_set_key_algorithm(&a, PSA_ALG_ECDH);
        assert_int_equal(psa_generate_key(&a, &k1), PSA_SUCCESS);
        assert_int_equal(psa_generate_key(&a, &k2), PSA_SUCCESS);
        assert_int_equal(calls(WSG_PSA_NETTLE_GENERATE_KEY), g + 2);
        assert_int_equal(psa_export_public_key(k1, p1, sizeof(p1), &l1), PSA_SUCCESS);
        assert_int_equal(psa_export_public_key(k2, p2, sizeof(p2), &l2), PSA_SUCCESS);
        assert_int_equal(calls(WSG_PSA_NETTLE_EXPORT_PUBLIC_KEY), e + 2);
        assert_int_equal(l1, curves[c].pub_len);
        assert_memory_not_equal(p1, p2, l1);
        /* Too small an output buffer. */
        assert_int_equal(psa_export_public_key(k1, p1, l1 - 1, &l1), PSA_ERROR_BUFFER_TOO_SMALL);
        assert_int_equal(psa_export_public_key(k1, p1, sizeof(p1), &l1), PSA_SUCCESS);
        assert_int_equal(psa_raw_key_agreement(PSA_ALG_ECDH, k1, p2, l2, s1, sizeof(s1), &sl1), PSA_SUCCESS);
        assert_int_equal(psa_raw_key_agreement(PSA_ALG_ECDH, k2, p1, l1, s2, sizeof(s2), &sl2), PSA_SUCCESS);
        assert_int_equal(sl1, 32);
        assert_int_equal(sl2, 32);
        assert_memory_equal(s1, s2, 32);
        psa_destroy_key(k1);
        psa_destroy_key(k2);
    }
}

/* ---- P-256 ECDH: NIST CAVS 14.1 KAS ECC CDH primitive, P-256 COUNT = 0 ---- */

#define CAVS_QX "700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287"
#define CAVS_QY "db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac"

static void test_p256_ecdh_cavs(void **state)
{
    (void)state;
    psa_key_id_t k = import(P256_PAIR, 256, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH,
                            "7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534");
    agree(k,
          "04ead218590119e8876b29146ff89ca61770c4edbbf97d38ce385ed281d8a6b230"
          "28af61281fd35e2fa7002523acc85a429cb06ee6648325389f59edfce1405141",
          "04" CAVS_QX CAVS_QY, "46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b");

    /* Off the curve (last bit of y flipped): the driver hands it back, the built-in refuses it. */
    unsigned long before = calls(WSG_PSA_NETTLE_KEY_AGREEMENT);
    assert_int_equal(
        agree_status(k, "04" CAVS_QX "db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ad"),
        PSA_ERROR_INVALID_ARGUMENT);
    /* A coordinate >= p. */
    assert_int_equal(
        agree_status(k, "04ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff" CAVS_QY),
        PSA_ERROR_INVALID_ARGUMENT);
    /* Compressed and truncated encodings. */
    assert_int_not_equal(agree_status(k, "02" CAVS_QX), PSA_SUCCESS);
    assert_int_not_equal(agree_status(k, "04" CAVS_QX), PSA_SUCCESS);
    assert_int_equal(calls(WSG_PSA_NETTLE_KEY_AGREEMENT), before);
    psa_destroy_key(k);
}

/* ---- ECDSA P-256: RFC 6979 A.2.5 (deterministic), then randomized; verify is mbedTLS's ---- */

#define RFC6979_X "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"
#define RFC6979_U                                                                                            \
    "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"                                     \
    "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"

static void sign_verify(psa_key_id_t priv, psa_key_id_t pub, psa_algorithm_t alg, const uint8_t *hash,
                        size_t hash_len, uint8_t sig[64])
{
    size_t sig_len = 0;
    unsigned long s = calls(WSG_PSA_NETTLE_SIGN_HASH);
    uint8_t bad[64];

    assert_int_equal(psa_sign_hash(priv, alg, hash, hash_len, sig, 64, &sig_len), PSA_SUCCESS);
    assert_int_equal(sig_len, 64);
    assert_int_equal(calls(WSG_PSA_NETTLE_SIGN_HASH), s + 1);
    assert_int_equal(psa_verify_hash(pub, alg, hash, hash_len, sig, 64), PSA_SUCCESS);
    memcpy(bad, sig, 64);
    bad[40] ^= 1;
    assert_int_equal(psa_verify_hash(pub, alg, hash, hash_len, bad, 64), PSA_ERROR_INVALID_SIGNATURE);
}

static void test_ecdsa_p256(void **state)
{
    (void)state;
    const psa_algorithm_t det = PSA_ALG_DETERMINISTIC_ECDSA(PSA_ALG_SHA_256);
    const psa_algorithm_t rnd = PSA_ALG_ECDSA(PSA_ALG_SHA_256);
    uint8_t hash[32], sig[64], sig2[64], pubkey[65];
    size_t hash_len, pub_len, sig_len;

    assert_int_equal(
        psa_hash_compute(PSA_ALG_SHA_256, (const uint8_t *)"sample", 6, hash, sizeof(hash), &hash_len),
        PSA_SUCCESS);
    psa_key_id_t d =
        import(P256_PAIR, 256, PSA_KEY_USAGE_SIGN_HASH | PSA_KEY_USAGE_VERIFY_HASH, det, RFC6979_X);
    psa_key_id_t dpub = import(P256_PUBLIC, 256, PSA_KEY_USAGE_VERIFY_HASH, det, RFC6979_U);
    assert_int_equal(psa_export_public_key(d, pubkey, sizeof(pubkey), &pub_len), PSA_SUCCESS);
    assert_hex(pubkey, pub_len, RFC6979_U);

    /* RFC 6979 A.2.5, SHA-256, message "sample": the signature is fixed. */
    sign_verify(d, dpub, det, hash, hash_len, sig);
    assert_hex(sig, 64,
               "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
               "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8");
    /* Short output buffer: refused before any work. */
    assert_int_equal(psa_sign_hash(d, det, hash, hash_len, sig, 63, &sig_len), PSA_ERROR_BUFFER_TOO_SMALL);
    psa_destroy_key(d);
    psa_destroy_key(dpub);

    /* Randomized: two signatures of one hash differ, both verify. */
    psa_key_id_t r =
        import(P256_PAIR, 256, PSA_KEY_USAGE_SIGN_HASH | PSA_KEY_USAGE_VERIFY_HASH, rnd, RFC6979_X);
    psa_key_id_t rpub = import(P256_PUBLIC, 256, PSA_KEY_USAGE_VERIFY_HASH, rnd, RFC6979_U);
    sign_verify(r, rpub, rnd, hash, hash_len, sig);
    sign_verify(r, rpub, rnd, hash, hash_len, sig2);
    assert_memory_not_equal(sig, sig2, 64);
    psa_destroy_key(r);
    psa_destroy_key(rpub);

    /* A generated key, as a server's certificate key would be, verified with its exported key. */
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_id_t g, gpub;
    psa_set_key_type(&a, P256_PAIR);
    psa_set_key_bits(&a, 256);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_SIGN_HASH);
    psa_set_key_algorithm(&a, det);
    assert_int_equal(psa_generate_key(&a, &g), PSA_SUCCESS);
    assert_int_equal(psa_export_public_key(g, pubkey, sizeof(pubkey), &pub_len), PSA_SUCCESS);
    psa_set_key_type(&a, P256_PUBLIC);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_VERIFY_HASH);
    assert_int_equal(psa_import_key(&a, pubkey, pub_len, &gpub), PSA_SUCCESS);
    sign_verify(g, gpub, det, hash, hash_len, sig);
    psa_destroy_key(g);
    psa_destroy_key(gpub);
}

/* ---- AES-GCM ---- */

struct gcm_vector {
    const char *name, *key, *iv, *aad, *pt, *ct, *tag;
};

/* GCM spec (McGrew-Viega) test cases 4 and 16 (96-bit IV, as TLS uses; also in mbedTLS's
 * self-test), and NIST CAVP gcmEncryptExtIV vectors (128-bit IVs, short tags). */
static const struct gcm_vector gcm_vectors[] = {
    {"GCM spec TC4, AES-128", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
     "b16aedf5aa0de657ba637b39",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa05"
     "1ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"GCM spec TC16, AES-256", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
     "b16aedf5aa0de657ba637b39",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
     "c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    {"CAVP AES-128,128,1024,1024,64 #0", "4aec55c7e4bb36c32cb543b57cfba3fc",
     "6669c3022e0820634a95efa2b5578e93",
     "f6ae9b1aaba18acb741c9fc64cfba3841f5127b1cda5cbcd48af5987428daa5782d2676bc3e2ef23936ec29a80d6b5310282b3"
     "9b77181dc680799ac9c8125fc48afd185cba2ca8900bd9a0039787b4f3a6846f3edf5f7b921dec2608fd3df67600ae0aba93"
     "78da0015bd57d66d2999bf751806d1b89214332bac50f721ca9474",
     "4cf1443a5448fd09e09e91b7cc5f8e00f53f0b75a6b17db5ab9a721167de5f7bc5de1fb711accdafb7f3f1bf6b98393e5f09e9"
     "091e26d1340122edc91f7e60f62caa218f1927c8f0032be0752520aa650f6f1ddf40412c96d49dcc2287ee17834504f1dda3"
     "f4a723e2fce064f0b8dae0789ec455922a14488623e3ac10b6e312",
     "720c32b0d454f086af36a32cc7274e2f2fe08db9cf1cefecc14b42b3e5c573aefa7e9e1ee0042eee21104dc3e4d19b01209928"
     "0c5a53e40a0bf662d8295dde743143a28be7305729767a37cbdf08fb3c87667939a8ffe44c96ad272e30b75aafada2963bb9"
     "636f189c37d976ed1c458295fe85ed19662c463d7c8155e9f04115",
     "4b3343b627095f60"},
    {"CAVP AES-256,128,1024,1024,32 #0", "cadef353122cec1fdbc236c0ab195fc4d732655cef444c00b6cba5c61e01c614",
     "d765b5954e5b486885dc78ce6801516e",
     "ba0405745971eaec5d337fd22e0ad287551e7084f1c9c38231d675719e3980356e183a99a3c760ecf7a8ede5e0dac8d2bc13e1"
     "35570ff6e91a854ea3b457263b0e77896fdf7bdf0b53c8276cfd1ea3e8e22450ff2665eacd24e5fb2be89373349fc9e29677"
     "63d43cbd7adc9a376b1b4ab956ddf8b1a56d9385fb7e861bc34df7",
     "a3d5e55fa3110a268cf1414a483adab6d58ec8762a6e6be81269c0369e8840333503bc3688c7be001cdb84d163fa1dfb05f3b0"
     "1ffff31151f1af780c796822e3d564f785964a546bcc2a320d81a2bc61058652a8594ae9b9b0917400e08d4a99fa161376ac"
     "53cba54c92889fd3497e233aff4e12cd85d57375c7c89e92cdf5f5",
     "9b99f984ae26f9cad5b3c8058757a0a5caef0fb86b8ecef0c1bca6b99bc72b0d5345a00ae75e37d4e651008bb733105d2172ed"
     "aaf5bda4ad950a49de55a514e882a470dca7c7bbfddde40d38fef4e1f3864fd7e212bbc0383d0bc29ab2303c8935d49c35d7"
     "d73df2fba0daeb5f37f9ab0d541766da71b33da1018a3f287ba312",
     "c374cd77"},
};

static void test_gcm_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(gcm_vectors) / sizeof(gcm_vectors[0]); i++) {
        const struct gcm_vector *v = &gcm_vectors[i];
        size_t key_len, iv_len, aad_len, pt_len, ct_len, tag_len, out_len;
        uint8_t *key = unhex(v->key, &key_len), *iv = unhex(v->iv, &iv_len), *aad = unhex(v->aad, &aad_len);
        uint8_t *pt = unhex(v->pt, &pt_len), *ct = unhex(v->ct, &ct_len), *tag = unhex(v->tag, &tag_len);
        psa_algorithm_t alg = PSA_ALG_AEAD_WITH_SHORTENED_TAG(PSA_ALG_GCM, tag_len);
        psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
        uint8_t *buf = malloc(pt_len + 16), *ctt = malloc(ct_len + tag_len);
        unsigned long enc = calls(WSG_PSA_NETTLE_AEAD_ENCRYPT), dec = calls(WSG_PSA_NETTLE_AEAD_DECRYPT);
        psa_key_id_t k;

        print_message("%s\n", v->name);
        memcpy(ctt, ct, ct_len);
        memcpy(ctt + ct_len, tag, tag_len);
        psa_set_key_type(&a, PSA_KEY_TYPE_AES);
        psa_set_key_bits(&a, key_len * 8);
        psa_set_key_usage_flags(&a, PSA_KEY_USAGE_ENCRYPT | PSA_KEY_USAGE_DECRYPT);
        psa_set_key_algorithm(&a, alg);
        assert_int_equal(psa_import_key(&a, key, key_len, &k), PSA_SUCCESS);

        assert_int_equal(
            psa_aead_encrypt(k, alg, iv, iv_len, aad, aad_len, pt, pt_len, buf, pt_len + 16, &out_len),
            PSA_SUCCESS);
        assert_int_equal(out_len, ct_len + tag_len);
        assert_memory_equal(buf, ctt, out_len);
        assert_int_equal(
            psa_aead_decrypt(k, alg, iv, iv_len, aad, aad_len, ctt, ct_len + tag_len, buf, pt_len, &out_len),
            PSA_SUCCESS);
        assert_int_equal(out_len, pt_len);
        assert_memory_equal(buf, pt, pt_len);
        assert_int_equal(calls(WSG_PSA_NETTLE_AEAD_ENCRYPT), enc + 1);
        assert_int_equal(calls(WSG_PSA_NETTLE_AEAD_DECRYPT), dec + 1);

        /* A tampered tag, ciphertext or AAD is refused, and no plaintext is released. */
        for (int what = 0; what < 3; what++) {
            uint8_t *p = what == 0 ? ctt + ct_len + tag_len - 1 : what == 1 ? ctt : aad;
            *p ^= 0x80;
            memset(buf, 0xaa, pt_len);
            assert_int_equal(psa_aead_decrypt(k, alg, iv, iv_len, aad, aad_len, ctt, ct_len + tag_len, buf,
                                              pt_len, &out_len),
                             PSA_ERROR_INVALID_SIGNATURE);
            for (size_t j = 0; j < pt_len; j++)
                assert_int_equal(buf[j], 0);
            *p ^= 0x80;
        }
        /* Shorter than a tag; output buffers too small. */
        assert_int_equal(
            psa_aead_decrypt(k, alg, iv, iv_len, aad, aad_len, ctt, tag_len - 1, buf, pt_len, &out_len),
            PSA_ERROR_INVALID_ARGUMENT);
        assert_int_equal(psa_aead_decrypt(k, alg, iv, iv_len, aad, aad_len, ctt, ct_len + tag_len, buf,
                                          pt_len - 1, &out_len),
                         PSA_ERROR_BUFFER_TOO_SMALL);
        assert_int_equal(psa_aead_encrypt(k, alg, iv, iv_len, aad, aad_len, pt, pt_len, buf,
                                          pt_len + tag_len - 1, &out_len),
                         PSA_ERROR_BUFFER_TOO_SMALL);

        /* In place, as TLS records are protected. */
        memcpy(buf, pt, pt_len);
        assert_int_equal(
            psa_aead_encrypt(k, alg, iv, iv_len, aad, aad_len, buf, pt_len, buf, pt_len + 16, &out_len),
            PSA_SUCCESS);
        assert_memory_equal(buf, ctt, ct_len + tag_len);
        assert_int_equal(psa_aead_decrypt(k, alg, iv, iv_len, aad, aad_len, buf, ct_len + tag_len, buf,
                                          pt_len + 16, &out_len),
                         PSA_SUCCESS);
        assert_memory_equal(buf, pt, pt_len);

        psa_destroy_key(k);
        free(key), free(iv), free(aad), free(pt), free(ct), free(tag), free(buf), free(ctt);
    }
}

/* What the driver hands back to the built-in code: other AEADs and other curves still work,
 * without the driver counting them. */
static void test_fallbacks(void **state)
{
    (void)state;
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_id_t k;
    uint8_t key[32] = {1}, nonce[12] = {2}, buf[64], pt[16] = {3};
    size_t len;
    unsigned long enc = calls(WSG_PSA_NETTLE_AEAD_ENCRYPT), gen = calls(WSG_PSA_NETTLE_GENERATE_KEY);

    psa_set_key_type(&a, PSA_KEY_TYPE_CHACHA20);
    psa_set_key_bits(&a, 256);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_ENCRYPT);
    psa_set_key_algorithm(&a, PSA_ALG_CHACHA20_POLY1305);
    assert_int_equal(psa_import_key(&a, key, sizeof(key), &k), PSA_SUCCESS);
    assert_int_equal(psa_aead_encrypt(k, PSA_ALG_CHACHA20_POLY1305, nonce, sizeof(nonce), NULL, 0, pt,
                                      sizeof(pt), buf, sizeof(buf), &len),
                     PSA_SUCCESS);
    assert_int_equal(len, sizeof(pt) + 16);
    psa_destroy_key(k);

    psa_reset_key_attributes(&a);
    psa_set_key_type(&a, PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1));
    psa_set_key_bits(&a, 384);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE);
    psa_set_key_algorithm(&a, PSA_ALG_ECDH);
    assert_int_equal(psa_generate_key(&a, &k), PSA_SUCCESS);
    psa_destroy_key(k);

    assert_int_equal(calls(WSG_PSA_NETTLE_AEAD_ENCRYPT), enc);
    assert_int_equal(calls(WSG_PSA_NETTLE_GENERATE_KEY), gen);
}

/* Worker threads share keys and call the driver at once, as wsgate's workers do: the answers stay
 * the known ones, and each thread's counters count that thread's operations only. */
#define THREADS 4
#define ROUNDS 150

struct thread_job {
    psa_key_id_t x25519, p256, gcm;
    int ok;
};

static void *thread_main(void *arg)
{
    struct thread_job *j = arg;
    size_t bob_len, cavs_len, x_len, z_len, pt_len, ct_len, len;
    uint8_t *bob = unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", &bob_len);
    uint8_t *cavs = unhex("04" CAVS_QX CAVS_QY, &cavs_len);
    uint8_t *x = unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", &x_len);
    uint8_t *z = unhex("46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b", &z_len);
    uint8_t *pt = unhex(gcm_vectors[0].pt, &pt_len), *ct = unhex(gcm_vectors[0].ct, &ct_len);
    size_t iv_len, aad_len;
    uint8_t *iv = unhex(gcm_vectors[0].iv, &iv_len), *aad = unhex(gcm_vectors[0].aad, &aad_len);
    uint8_t out[128];
    unsigned long k0 = wsg_psa_nettle_calls(WSG_PSA_NETTLE_KEY_AGREEMENT);
    unsigned long e0 = wsg_psa_nettle_calls(WSG_PSA_NETTLE_AEAD_ENCRYPT);

    j->ok = 1;
    for (int i = 0; i < ROUNDS && j->ok; i++) {
        j->ok &= psa_raw_key_agreement(PSA_ALG_ECDH, j->x25519, bob, bob_len, out, sizeof(out), &len) ==
                     PSA_SUCCESS &&
                 len == 32 && memcmp(out, x, 32) == 0;
        j->ok &= psa_raw_key_agreement(PSA_ALG_ECDH, j->p256, cavs, cavs_len, out, sizeof(out), &len) ==
                     PSA_SUCCESS &&
                 len == 32 && memcmp(out, z, 32) == 0;
        j->ok &= psa_aead_encrypt(j->gcm, PSA_ALG_GCM, iv, iv_len, aad, aad_len, pt, pt_len, out, sizeof(out),
                                  &len) == PSA_SUCCESS &&
                 len == ct_len + 16 && memcmp(out, ct, ct_len) == 0;
    }
    j->ok &= wsg_psa_nettle_calls(WSG_PSA_NETTLE_KEY_AGREEMENT) - k0 == 2 * ROUNDS;
    j->ok &= wsg_psa_nettle_calls(WSG_PSA_NETTLE_AEAD_ENCRYPT) - e0 == ROUNDS;
    free(bob), free(cavs), free(x), free(z), free(pt), free(ct), free(iv), free(aad);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct thread_job jobs[THREADS];
    pthread_t t[THREADS];
    psa_key_id_t x = import(X25519_PAIR, 255, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH,
                            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    psa_key_id_t p = import(P256_PAIR, 256, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH,
                            "7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534");
    psa_key_id_t g = import(PSA_KEY_TYPE_AES, 128, PSA_KEY_USAGE_ENCRYPT, PSA_ALG_GCM, gcm_vectors[0].key);
    unsigned long mine = calls(WSG_PSA_NETTLE_KEY_AGREEMENT);

    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (struct thread_job){x, p, g, 0};
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_true(jobs[i].ok);
    }
    /* the other threads' operations are not this thread's */
    assert_int_equal(calls(WSG_PSA_NETTLE_KEY_AGREEMENT), mine);
    psa_destroy_key(x);
    psa_destroy_key(p);
    psa_destroy_key(g);
}

static void (*gmp_free_at_start)(void *, size_t);

/* nettle's ECC scratch comes from GMP's allocator: after the driver's first ECC operation, GMP's
 * free is the driver's wiping one, not the one the process started with. */
static void test_gmp_scratch_wiped(void **state)
{
    (void)state;
    void (*now)(void *, size_t);
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_id_t k;
    uint8_t pub[32];
    size_t len;

    psa_set_key_type(&a, X25519_PAIR);
    psa_set_key_bits(&a, 255);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE);
    psa_set_key_algorithm(&a, PSA_ALG_ECDH);
    assert_int_equal(psa_generate_key(&a, &k), PSA_SUCCESS);
    assert_int_equal(psa_export_public_key(k, pub, sizeof(pub), &len), PSA_SUCCESS);
    psa_destroy_key(k);
    mp_get_memory_functions(NULL, NULL, &now);
    assert_non_null(gmp_free_at_start);
    assert_ptr_not_equal(now, gmp_free_at_start);
}

static int group_setup(void **state)
{
    (void)state;
    mp_get_memory_functions(NULL, NULL, &gmp_free_at_start);
    return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    mbedtls_psa_crypto_free();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x25519_rfc7748),
        cmocka_unit_test(test_x25519_bad_peers),
        cmocka_unit_test(test_generate_and_agree),
        cmocka_unit_test(test_p256_ecdh_cavs),
        cmocka_unit_test(test_ecdsa_p256),
        cmocka_unit_test(test_gcm_vectors),
        cmocka_unit_test(test_fallbacks),
        cmocka_unit_test(test_gmp_scratch_wiped),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
