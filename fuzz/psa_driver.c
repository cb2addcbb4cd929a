/*
 * psa_driver.c - libFuzzer target for the nettle PSA driver (tls/psa/), differential: every
 * operation goes through the PSA API (so through the driver, as TLS calls it) and through
 * mbedTLS's own legacy implementation of the same primitive (ecp/ecdh/ecdsa/gcm, which no driver
 * reaches), and the two must agree on success and on every output byte.
 *
 * Input: [op] then operands taken from the front of the rest, zero-padded when short.
 *   op % 4 == 0  X25519: scalar[32] peer[32] (peer: any bytes, low-order and non-canonical
 *                included, as a client's key share can be)
 *   op % 4 == 1  P-256 ECDH: scalar[32], then [mode]: mode & 1 peer = the public key of
 *                scalar2[32] (exported through PSA, checked against ecp_mul), else peer[65] raw
 *   op % 4 == 2  AES-GCM: [klen][nlen][tlen][alen][flip] key nonce aad, plaintext = the rest;
 *                encrypt, then decrypt with one bit flipped at an input-chosen place (or none)
 *   op % 4 == 3  deterministic ECDSA P-256: scalar[32] [hash alg][hash len] hash; the PSA
 *                signature must equal mbedtls_ecdsa_sign_det_ext's and verify
 *
 * Invariants: PSA and mbedTLS's reference accept the same inputs, and give the same shared
 * secrets, public keys, ciphertexts, tags and signatures; a flipped bit fails decryption with
 * PSA_ERROR_INVALID_SIGNATURE and an intact one returns the plaintext.
 */
#include <string.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <psa/crypto.h>

#include "fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    psa_crypto_init();
    return 0;
}

/* Blinding randomness for the legacy calls: any bytes do, the results do not depend on them. */
static int blind_rng(void *ctx, unsigned char *out, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(i * 37 + 11);
    return 0;
}

/* Copies n operand bytes from the input (zeros once it is exhausted). */
static void take(struct fuzz_in *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = fuzz_byte(in);
}

static psa_key_id_t import(psa_key_type_t type, size_t bits, psa_key_usage_t usage, psa_algorithm_t alg,
                           const uint8_t *data, size_t len)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_id_t id = 0;
    psa_set_key_type(&a, type);
    psa_set_key_bits(&a, bits);
    psa_set_key_usage_flags(&a, usage);
    psa_set_key_algorithm(&a, alg);
    if (psa_import_key(&a, data, len, &id) != PSA_SUCCESS)
        return 0;
    return id;
}

/* mbedTLS's legacy ECDH (ecp.c, no PSA): the secret in the PSA byte order of the curve; 0 if
 * it refuses the private key or the peer. */
static int ref_ecdh(mbedtls_ecp_group_id gid, const uint8_t *d, const uint8_t *peer, size_t peer_len,
                    uint8_t out[32])
{
    mbedtls_ecp_keypair kp;
    mbedtls_ecp_point q;
    mbedtls_mpi z;
    int ok = 0;

    mbedtls_ecp_keypair_init(&kp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&z);
    if (mbedtls_ecp_read_key(gid, &kp, d, 32) == 0 &&
        mbedtls_ecp_point_read_binary(&kp.MBEDTLS_PRIVATE(grp), &q, peer, peer_len) == 0 &&
        mbedtls_ecp_check_pubkey(&kp.MBEDTLS_PRIVATE(grp), &q) == 0 &&
        mbedtls_ecdh_compute_shared(&kp.MBEDTLS_PRIVATE(grp), &z, &q, &kp.MBEDTLS_PRIVATE(d), blind_rng,
                                    NULL) == 0)
        ok = (gid == MBEDTLS_ECP_DP_CURVE25519 ? mbedtls_mpi_write_binary_le(&z, out, 32)
                                               : mbedtls_mpi_write_binary(&z, out, 32)) == 0;
    mbedtls_mpi_free(&z);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_keypair_free(&kp);
    return ok;
}

static void fuzz_ecdh(struct fuzz_in *in, int x25519)
{
    const psa_key_type_t type =
        PSA_KEY_TYPE_ECC_KEY_PAIR(x25519 ? PSA_ECC_FAMILY_MONTGOMERY : PSA_ECC_FAMILY_SECP_R1);
    const size_t bits = x25519 ? 255 : 256;
    const mbedtls_ecp_group_id gid = x25519 ? MBEDTLS_ECP_DP_CURVE25519 : MBEDTLS_ECP_DP_SECP256R1;
    uint8_t d[32], peer[65], out[32], ref[32];
    size_t peer_len = x25519 ? 32 : 65, len = 0;

    take(in, d, 32);
    psa_key_id_t k = import(type, bits, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH, d, 32);
    if (k == 0)
        return; /* a P-256 scalar out of range: mbedTLS refuses it at import */
    if (!x25519 && (fuzz_byte(in) & 1)) {
        uint8_t d2[32], refpub[65];
        size_t rlen = 0;
        take(in, d2, 32);
        psa_key_id_t k2 = import(type, bits, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH, d2, 32);
        if (k2 == 0) {
            psa_destroy_key(k);
            return;
        }
        FUZZ_CHECK(psa_export_public_key(k2, peer, sizeof(peer), &len) == PSA_SUCCESS && len == 65);
        psa_destroy_key(k2);
        /* the same public key from mbedTLS's ecp_mul */
        mbedtls_ecp_keypair kp;
        mbedtls_ecp_keypair_init(&kp);
        FUZZ_CHECK(mbedtls_ecp_read_key(gid, &kp, d2, 32) == 0);
        FUZZ_CHECK(mbedtls_ecp_mul(&kp.MBEDTLS_PRIVATE(grp), &kp.MBEDTLS_PRIVATE(Q), &kp.MBEDTLS_PRIVATE(d),
                                   &kp.MBEDTLS_PRIVATE(grp).G, blind_rng, NULL) == 0);
        FUZZ_CHECK(mbedtls_ecp_point_write_binary(&kp.MBEDTLS_PRIVATE(grp), &kp.MBEDTLS_PRIVATE(Q),
                                                  MBEDTLS_ECP_PF_UNCOMPRESSED, &rlen, refpub,
                                                  sizeof(refpub)) == 0);
        mbedtls_ecp_keypair_free(&kp);
        FUZZ_CHECK(rlen == 65 && memcmp(peer, refpub, 65) == 0);
    } else {
        take(in, peer, peer_len);
    }
    psa_status_t st = psa_raw_key_agreement(PSA_ALG_ECDH, k, peer, peer_len, out, sizeof(out), &len);
    int ref_ok = ref_ecdh(gid, d, peer, peer_len, ref);
    if (fuzz_verbose())
        fprintf(stderr, "%s: psa %d ref %d\n", x25519 ? "x25519" : "p256", (int)st, ref_ok);
    FUZZ_CHECK((st == PSA_SUCCESS) == ref_ok);
    if (ref_ok)
        FUZZ_CHECK(len == 32 && memcmp(out, ref, 32) == 0);
    else
        FUZZ_CHECK(st == PSA_ERROR_INVALID_ARGUMENT);
    psa_destroy_key(k);
}

static void fuzz_gcm(struct fuzz_in *in)
{
    static const size_t tags[] = {4, 8, 12, 13, 14, 15, 16};
    uint8_t key[32], nonce[32], aad[64], pt[512], ct[512 + 16], ref[512 + 16], back[512];
    size_t klen = 16 + 8 * (fuzz_byte(in) % 3), nlen = 1 + fuzz_byte(in) % 32, tlen = tags[fuzz_byte(in) % 7];
    size_t alen = fuzz_byte(in) % 65, flip = fuzz_byte(in), plen, len = 0;
    psa_algorithm_t alg = PSA_ALG_AEAD_WITH_SHORTENED_TAG(PSA_ALG_GCM, tlen);

    take(in, key, klen);
    take(in, nonce, nlen);
    take(in, aad, alen);
    plen = in->n < sizeof(pt) ? in->n : sizeof(pt);
    take(in, pt, plen);

    psa_key_id_t k =
        import(PSA_KEY_TYPE_AES, klen * 8, PSA_KEY_USAGE_ENCRYPT | PSA_KEY_USAGE_DECRYPT, alg, key, klen);
    FUZZ_CHECK(k != 0);
    FUZZ_CHECK(psa_aead_encrypt(k, alg, nonce, nlen, aad, alen, pt, plen, ct, sizeof(ct), &len) ==
               PSA_SUCCESS);
    FUZZ_CHECK(len == plen + tlen);

    mbedtls_gcm_context g;
    mbedtls_gcm_init(&g);
    FUZZ_CHECK(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, (unsigned)klen * 8) == 0);
    FUZZ_CHECK(mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, plen, nonce, nlen, aad, alen, pt, ref, tlen,
                                         ref + plen) == 0);
    mbedtls_gcm_free(&g);
    FUZZ_CHECK(memcmp(ct, ref, plen + tlen) == 0);

    /* flip == 0: intact; else one bit of the ciphertext or tag */
    if (flip != 0)
        ct[(flip - 1) % (plen + tlen)] ^= (uint8_t)(1u << (flip % 8));
    psa_status_t st =
        psa_aead_decrypt(k, alg, nonce, nlen, aad, alen, ct, plen + tlen, back, sizeof(back), &len);
    if (flip == 0) {
        FUZZ_CHECK(st == PSA_SUCCESS && len == plen && memcmp(back, pt, plen) == 0);
    } else {
        FUZZ_CHECK(st == PSA_ERROR_INVALID_SIGNATURE);
    }
    psa_destroy_key(k);
}

static void fuzz_ecdsa(struct fuzz_in *in)
{
    static const struct {
        psa_algorithm_t psa;
        mbedtls_md_type_t md;
    } hashes[] = {{PSA_ALG_SHA_256, MBEDTLS_MD_SHA256},
                  {PSA_ALG_SHA_384, MBEDTLS_MD_SHA384},
                  {PSA_ALG_SHA_512, MBEDTLS_MD_SHA512},
                  {PSA_ALG_SHA_224, MBEDTLS_MD_SHA224},
                  {PSA_ALG_SHA_1, MBEDTLS_MD_SHA1}};
    uint8_t d[32], hash[64], sig[64], ref[64];
    size_t len = 0;

    take(in, d, 32);
    unsigned h = fuzz_byte(in) % 5;
    psa_algorithm_t alg = PSA_ALG_DETERMINISTIC_ECDSA(hashes[h].psa);
    size_t hlen = PSA_HASH_LENGTH(hashes[h].psa);
    take(in, hash, hlen);

    psa_key_id_t k = import(PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1), 256,
                            PSA_KEY_USAGE_SIGN_HASH | PSA_KEY_USAGE_VERIFY_HASH, alg, d, 32);
    if (k == 0)
        return;
    FUZZ_CHECK(psa_sign_hash(k, alg, hash, hlen, sig, sizeof(sig), &len) == PSA_SUCCESS && len == 64);
    FUZZ_CHECK(psa_verify_hash(k, alg, hash, hlen, sig, 64) == PSA_SUCCESS);
    psa_destroy_key(k);

    mbedtls_ecp_keypair kp;
    mbedtls_mpi r, s;
    mbedtls_ecp_keypair_init(&kp);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    FUZZ_CHECK(mbedtls_ecp_read_key(MBEDTLS_ECP_DP_SECP256R1, &kp, d, 32) == 0);
    FUZZ_CHECK(mbedtls_ecdsa_sign_det_ext(&kp.MBEDTLS_PRIVATE(grp), &r, &s, &kp.MBEDTLS_PRIVATE(d), hash,
                                          hlen, hashes[h].md, blind_rng, NULL) == 0);
    FUZZ_CHECK(mbedtls_mpi_write_binary(&r, ref, 32) == 0 && mbedtls_mpi_write_binary(&s, ref + 32, 32) == 0);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    mbedtls_ecp_keypair_free(&kp);
    FUZZ_CHECK(memcmp(sig, ref, 64) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    if (size == 0)
        return 0;
    switch (fuzz_byte(&in) % 4) {
    case 0:
        fuzz_ecdh(&in, 1);
        break;
    case 1:
        fuzz_ecdh(&in, 0);
        break;
    case 2:
        fuzz_gcm(&in);
        break;
    default:
        fuzz_ecdsa(&in);
        break;
    }
    return 0;
}
