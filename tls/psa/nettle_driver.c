/*
 * wsgate's PSA transparent accelerator driver backed by nettle: see nettle_driver.h for what it takes.
 *
 * Rules this file keeps:
 * - an input the driver does not handle (other curves, key sizes, hash algorithms, tag lengths, peer
 *   key encodings, malformed peer points) returns PSA_ERROR_NOT_SUPPORTED, so that mbedTLS's built-in
 *   code runs and returns its own canonical error code: the test suites' expected codes stay its;
 * - secrets (scalars, nonces, shared secrets, key schedules, nettle scratch) live on our stack or in
 *   nettle objects we wipe with mbedtls_platform_zeroize before they are released;
 * - only constant-time primitives on secrets: nettle's ecc code is side-channel silent, tags are
 *   compared with memeql_sec, range checks on secret scalars run over every byte.
 */
#include <mbedtls/build_info.h>

#if defined(WSG_PSA_NETTLE_DRIVER_ENABLED)

#include "nettle_driver.h"

#include <mbedtls/platform_util.h>
#include <psa/crypto.h>

#include <gmp.h>
#include <nettle/bignum.h>
#include <nettle/curve25519.h>
#include <nettle/ecc-curve.h>
#include <nettle/ecc.h>
#include <nettle/ecdsa.h>
#include <nettle/gcm.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(WSG_PSA_SODIUM_X25519)
#include <sodium.h>
#endif

static _Thread_local unsigned long calls[WSG_PSA_NETTLE_OPS];

unsigned long wsg_psa_nettle_calls(enum wsg_psa_nettle_op op)
{
    return (unsigned)op < WSG_PSA_NETTLE_OPS ? calls[op] : 0;
}

/* ---- nettle's scratch memory ---------------------------------------------------------------
 * nettle's high-level ECC calls (ecc_point_mul, ecc_point_mul_g, curve25519_mul, _mul_g) take
 * their scratch from GMP's allocator and hand it back unwiped, and that scratch holds the
 * projective coordinates of a shared secret. So GMP's free and realloc get a wipe: the sizes
 * GMP passes are the block sizes. GMP's defaults are malloc/realloc/free, so blocks allocated
 * before the switch are freed correctly after it; like GMP's own, allocation failure aborts.
 * wsgate uses GMP only through this driver. Installed once, before the driver's first ECC call. */
static void *gmp_alloc_fn(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        abort();
    return p;
}

static void *gmp_realloc_wipe(void *old, size_t old_size, size_t new_size)
{
    void *p = gmp_alloc_fn(new_size);
    memcpy(p, old, old_size < new_size ? old_size : new_size);
    mbedtls_platform_zeroize(old, old_size);
    free(old);
    return p;
}

static void gmp_free_wipe(void *p, size_t size)
{
    if (p != NULL) {
        mbedtls_platform_zeroize(p, size);
        free(p);
    }
}

static pthread_once_t gmp_wipe_once = PTHREAD_ONCE_INIT;

static void gmp_wipe_install(void)
{
    mp_set_memory_functions(gmp_alloc_fn, gmp_realloc_wipe, gmp_free_wipe);
}

static void wipe_nettle_scratch(void)
{
    pthread_once(&gmp_wipe_once, gmp_wipe_install);
}

/* ---- P-256 helpers ------------------------------------------------------------------------- */

#define P256_BYTES 32
#define P256_LIMBS ((256 + GMP_NUMB_BITS - 1) / GMP_NUMB_BITS)
/* Scratch for ecc_ecdsa_sign on P-256 (nettle 3.8.1 asks for 44 limbs; checked at run time). */
#define P256_SIGN_SCRATCH_LIMBS 64

/* The group order n of P-256 (SEC 2), big-endian. */
static const uint8_t p256_order[P256_BYTES] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

static int is_p256_pair(const psa_key_attributes_t *attributes)
{
    return psa_get_key_type(attributes) == PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1) &&
           psa_get_key_bits(attributes) == 256;
}

static int is_x25519_pair(const psa_key_attributes_t *attributes)
{
    return psa_get_key_type(attributes) == PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY) &&
           psa_get_key_bits(attributes) == 255;
}

/* 1 when 1 <= be < n, in time independent of the value (a secret scalar or nonce). */
static int p256_scalar_in_range(const uint8_t be[P256_BYTES])
{
    unsigned borrow = 0, nonzero = 0;
    for (int i = P256_BYTES - 1; i >= 0; i--) {
        unsigned d = (unsigned)be[i] - p256_order[i] - borrow;
        borrow = (d >> 8) & 1;
        nonzero |= be[i];
    }
    /* borrow == 1 exactly when be < n */
    return (int)(borrow & ((nonzero + 0xff) >> 8));
}

static void be_to_limbs(mp_limb_t *limbs, const uint8_t *be, size_t nbytes, size_t nlimbs)
{
    for (size_t i = 0; i < nlimbs; i++) {
        mp_limb_t l = 0;
        for (size_t b = 0; b < sizeof(mp_limb_t); b++) {
            size_t pos = i * sizeof(mp_limb_t) + b; /* byte position from the least significant end */
            if (pos < nbytes)
                l |= (mp_limb_t)be[nbytes - 1 - pos] << (8 * b);
        }
        limbs[i] = l;
    }
}

static void limbs_to_be(uint8_t *be, size_t nbytes, const mp_limb_t *limbs)
{
    for (size_t pos = 0; pos < nbytes; pos++)
        be[nbytes - 1 - pos] = (uint8_t)(limbs[pos / sizeof(mp_limb_t)] >> (8 * (pos % sizeof(mp_limb_t))));
}

/* Loads a P-256 private scalar (the PSA key pair representation: 32 bytes big-endian) into @p s,
 * which the caller has initialised. 0 when the key is not a valid scalar. Not ecc_scalar_set: its
 * range check (mpn_cmp) and mpz normalisation take time that depends on the secret; ours runs over
 * every byte, then the limbs go straight into the scalar (struct ecc_scalar: ecc_size() limbs). */
static int p256_load_scalar(struct ecc_scalar *s, const uint8_t *key_buffer, size_t key_buffer_size)
{
    if (key_buffer_size != P256_BYTES || ecc_size(s->ecc) != P256_LIMBS || !p256_scalar_in_range(key_buffer))
        return 0;
    be_to_limbs(s->p, key_buffer, P256_BYTES, P256_LIMBS);
    return 1;
}

static void p256_scalar_clear(struct ecc_scalar *s)
{
    mbedtls_platform_zeroize(s->p, (size_t)ecc_size(s->ecc) * sizeof(mp_limb_t));
    ecc_scalar_clear(s);
}

static void p256_point_clear(struct ecc_point *p)
{
    mbedtls_platform_zeroize(p->p, (size_t)ecc_size_a(p->ecc) * sizeof(mp_limb_t));
    ecc_point_clear(p);
}

/* ---- key generation and public keys -------------------------------------------------------- */

psa_status_t wsg_nettle_transparent_generate_key(const psa_key_attributes_t *attributes, uint8_t *key_buffer,
                                                 size_t key_buffer_size, size_t *key_buffer_length)
{
    psa_status_t status;

    if (is_x25519_pair(attributes)) {
        if (key_buffer_size < CURVE25519_SIZE)
            return PSA_ERROR_BUFFER_TOO_SMALL;
        status = psa_generate_random(key_buffer, CURVE25519_SIZE);
        if (status != PSA_SUCCESS)
            return status;
        /* RFC 7748 §5 clamping, as mbedTLS's own generation stores it. */
        key_buffer[0] &= 248;
        key_buffer[31] &= 127;
        key_buffer[31] |= 64;
        *key_buffer_length = CURVE25519_SIZE;
        calls[WSG_PSA_NETTLE_GENERATE_KEY]++;
        return PSA_SUCCESS;
    }
    if (is_p256_pair(attributes)) {
        if (key_buffer_size < P256_BYTES)
            return PSA_ERROR_BUFFER_TOO_SMALL;
        /* Rejection sampling as in FIPS 186-5 A.4.2 (and mbedTLS's own): a candidate outside
         * [1, n-1] is drawn again; n is close to 2^256, so a redraw happens with probability 2^-32. */
        do {
            status = psa_generate_random(key_buffer, P256_BYTES);
            if (status != PSA_SUCCESS) {
                mbedtls_platform_zeroize(key_buffer, P256_BYTES);
                return status;
            }
        } while (!p256_scalar_in_range(key_buffer));
        *key_buffer_length = P256_BYTES;
        calls[WSG_PSA_NETTLE_GENERATE_KEY]++;
        return PSA_SUCCESS;
    }
    return PSA_ERROR_NOT_SUPPORTED;
}

psa_status_t wsg_nettle_transparent_export_public_key(const psa_key_attributes_t *attributes,
                                                      const uint8_t *key_buffer, size_t key_buffer_size,
                                                      uint8_t *data, size_t data_size, size_t *data_length)
{
    wipe_nettle_scratch();
    if (is_x25519_pair(attributes)) {
        if (key_buffer_size != CURVE25519_SIZE)
            return PSA_ERROR_NOT_SUPPORTED;
        if (data_size < CURVE25519_SIZE)
            return PSA_ERROR_BUFFER_TOO_SMALL;
        curve25519_mul_g(data, key_buffer);
        *data_length = CURVE25519_SIZE;
        calls[WSG_PSA_NETTLE_EXPORT_PUBLIC_KEY]++;
        return PSA_SUCCESS;
    }
    if (is_p256_pair(attributes)) {
        const struct ecc_curve *curve = nettle_get_secp_256r1();
        struct ecc_scalar s;
        struct ecc_point pub;

        if (data_size < 1 + 2 * P256_BYTES)
            return PSA_ERROR_BUFFER_TOO_SMALL;
        ecc_scalar_init(&s, curve);
        if (!p256_load_scalar(&s, key_buffer, key_buffer_size)) {
            p256_scalar_clear(&s);
            return PSA_ERROR_NOT_SUPPORTED;
        }
        ecc_point_init(&pub, curve);
        ecc_point_mul_g(&pub, &s);
        p256_scalar_clear(&s);
        /* struct ecc_point holds affine x then y, ecc_size() limbs each (what ecc_point_get reads). */
        data[0] = 0x04;
        limbs_to_be(data + 1, P256_BYTES, pub.p);
        limbs_to_be(data + 1 + P256_BYTES, P256_BYTES, pub.p + P256_LIMBS);
        p256_point_clear(&pub);
        *data_length = 1 + 2 * P256_BYTES;
        calls[WSG_PSA_NETTLE_EXPORT_PUBLIC_KEY]++;
        return PSA_SUCCESS;
    }
    return PSA_ERROR_NOT_SUPPORTED;
}

/* ---- key agreement ------------------------------------------------------------------------- */

#if defined(WSG_PSA_SODIUM_X25519)
/* Optional (config: WSG_PSA_SODIUM_X25519, link -lsodium): libsodium's X25519 shared secret is
 * 28,300/s against nettle's 19,900/s on this machine (one core, libsodium 1.0.18, nettle 3.8.1),
 * 15 us less per TLS 1.3 handshake. Key generation stays on nettle, which is faster there
 * (38,900/s against 30,600/s for the base-point multiplication). */
static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ready;

static void sodium_start(void)
{
    sodium_ready = sodium_init() >= 0;
}
#endif

/* out = X25519(k, u) (RFC 7748 §5: the scalar is clamped and u's top bit masked by the library).
 * 0 when the result is all zero, i.e. u is a low-order point. */
static int x25519(uint8_t out[CURVE25519_SIZE], const uint8_t *k, const uint8_t *u)
{
    uint8_t acc = 0;

#if defined(WSG_PSA_SODIUM_X25519)
    pthread_once(&sodium_once, sodium_start);
    if (sodium_ready) /* -1 for a low-order u or an all-zero result */
        return crypto_scalarmult_curve25519(out, k, u) == 0;
#endif
    curve25519_mul(out, k, u);
    for (size_t i = 0; i < CURVE25519_SIZE; i++)
        acc |= out[i];
    return acc != 0;
}

psa_status_t wsg_nettle_transparent_key_agreement(const psa_key_attributes_t *attributes,
                                                  const uint8_t *key_buffer, size_t key_buffer_size,
                                                  psa_algorithm_t alg, const uint8_t *peer_key,
                                                  size_t peer_key_length, uint8_t *shared_secret,
                                                  size_t shared_secret_size, size_t *shared_secret_length)
{
    if (alg != PSA_ALG_ECDH)
        return PSA_ERROR_NOT_SUPPORTED;
    wipe_nettle_scratch();

    if (is_x25519_pair(attributes)) {
        uint8_t out[CURVE25519_SIZE];

        if (key_buffer_size != CURVE25519_SIZE || peer_key_length != CURVE25519_SIZE)
            return PSA_ERROR_NOT_SUPPORTED;
        if (shared_secret_size < CURVE25519_SIZE)
            return PSA_ERROR_BUFFER_TOO_SMALL;
        calls[WSG_PSA_NETTLE_KEY_AGREEMENT]++;
        if (!x25519(out, key_buffer, peer_key)) {
            /* A low-order peer point (RFC 7748 §6.1's all-zero check). mbedTLS rejects the same
             * points with MBEDTLS_ERR_ECP_INVALID_KEY, i.e. PSA_ERROR_INVALID_ARGUMENT. */
            mbedtls_platform_zeroize(out, sizeof(out));
            return PSA_ERROR_INVALID_ARGUMENT;
        }
        memcpy(shared_secret, out, sizeof(out));
        mbedtls_platform_zeroize(out, sizeof(out));
        *shared_secret_length = CURVE25519_SIZE;
        return PSA_SUCCESS;
    }
    if (is_p256_pair(attributes)) {
        const struct ecc_curve *curve = nettle_get_secp_256r1();
        mp_limb_t x[P256_LIMBS], y[P256_LIMBS];
        mpz_t zx, zy;
        struct ecc_point peer, r;
        struct ecc_scalar s;
        int ok;

        /* Only the uncompressed encoding PSA specifies; anything else is the built-in's to refuse. */
        if (peer_key_length != 1 + 2 * P256_BYTES || peer_key[0] != 0x04)
            return PSA_ERROR_NOT_SUPPORTED;
        if (shared_secret_size < P256_BYTES)
            return PSA_ERROR_BUFFER_TOO_SMALL;
        be_to_limbs(x, peer_key + 1, P256_BYTES, P256_LIMBS);
        be_to_limbs(y, peer_key + 1 + P256_BYTES, P256_BYTES, P256_LIMBS);
        ecc_point_init(&peer, curve);
        /* ecc_point_set checks 0 <= x, y < p and the curve equation (SP 800-56A 5.6.2.3.4
         * partial validation, enough on a prime-order curve). */
        if (!ecc_point_set(&peer, mpz_roinit_n(zx, x, P256_LIMBS), mpz_roinit_n(zy, y, P256_LIMBS))) {
            ecc_point_clear(&peer);
            return PSA_ERROR_NOT_SUPPORTED;
        }
        ecc_scalar_init(&s, curve);
        ok = p256_load_scalar(&s, key_buffer, key_buffer_size);
        if (!ok) {
            p256_scalar_clear(&s);
            ecc_point_clear(&peer);
            return PSA_ERROR_NOT_SUPPORTED;
        }
        ecc_point_init(&r, curve);
        ecc_point_mul(&r, &s, &peer);
        p256_scalar_clear(&s);
        ecc_point_clear(&peer);
        limbs_to_be(shared_secret, P256_BYTES, r.p);
        p256_point_clear(&r);
        *shared_secret_length = P256_BYTES;
        calls[WSG_PSA_NETTLE_KEY_AGREEMENT]++;
        return PSA_SUCCESS;
    }
    return PSA_ERROR_NOT_SUPPORTED;
}

/* ---- ECDSA P-256 ----------------------------------------------------------------------------- */

/* RFC 6979 §3.2 nonce generation (HMAC_DRBG over the signature's hash), for P-256 where
 * qlen = 256 = 8 * rlen, so bits2int(T) is T's first 32 bytes read big-endian. */
union hash_ctx {
    struct sha1_ctx sha1;
    struct sha256_ctx sha256;
    struct sha512_ctx sha512;
};

struct rfc6979 {
    const struct nettle_hash *hash;
    union hash_ctx outer, inner, state;
    uint8_t k[SHA512_DIGEST_SIZE];
    uint8_t v[SHA512_DIGEST_SIZE];
};

static const struct nettle_hash *hash_from_psa(psa_algorithm_t hash_alg)
{
    switch (hash_alg) {
    case PSA_ALG_SHA_1:
        return &nettle_sha1;
    case PSA_ALG_SHA_224:
        return &nettle_sha224;
    case PSA_ALG_SHA_256:
        return &nettle_sha256;
    case PSA_ALG_SHA_384:
        return &nettle_sha384;
    case PSA_ALG_SHA_512:
        return &nettle_sha512;
    default:
        return NULL;
    }
}

/* K = HMAC_K(V || sep || x || h) then V = HMAC_K(V), the two update steps of §3.2 d-g. */
static void rfc6979_update(struct rfc6979 *g, int sep, const uint8_t *x, const uint8_t *h)
{
    size_t len = g->hash->digest_size;
    uint8_t b = (uint8_t)sep;

    hmac_set_key(&g->outer, &g->inner, &g->state, g->hash, len, g->k);
    hmac_update(&g->state, g->hash, len, g->v);
    hmac_update(&g->state, g->hash, 1, &b);
    if (x != NULL) {
        hmac_update(&g->state, g->hash, P256_BYTES, x);
        hmac_update(&g->state, g->hash, P256_BYTES, h);
    }
    hmac_digest(&g->outer, &g->inner, &g->state, g->hash, len, g->k);
    hmac_set_key(&g->outer, &g->inner, &g->state, g->hash, len, g->k);
    hmac_update(&g->state, g->hash, len, g->v);
    hmac_digest(&g->outer, &g->inner, &g->state, g->hash, len, g->v);
}

static void rfc6979_init(struct rfc6979 *g, const struct nettle_hash *hash, const uint8_t x[P256_BYTES],
                         const uint8_t h[P256_BYTES])
{
    g->hash = hash;
    memset(g->v, 0x01, hash->digest_size);
    memset(g->k, 0x00, hash->digest_size);
    rfc6979_update(g, 0x00, x, h);
    rfc6979_update(g, 0x01, x, h);
}

/* §3.2 h: one candidate T of 32 bytes; the HMAC key stays set from the last update. */
static void rfc6979_generate(struct rfc6979 *g, uint8_t t[P256_BYTES])
{
    size_t len = g->hash->digest_size, have = 0;

    while (have < P256_BYTES) {
        size_t n = P256_BYTES - have < len ? P256_BYTES - have : len;
        hmac_update(&g->state, g->hash, len, g->v);
        hmac_digest(&g->outer, &g->inner, &g->state, g->hash, len, g->v);
        memcpy(t + have, g->v, n);
        have += n;
    }
}

/* bits2octets(h1) of §2.3.4 for P-256: the leftmost 256 bits of the hash as an integer, reduced
 * once mod n. The hash is public, so plain comparisons are fine here. */
static void p256_bits2octets(uint8_t out[P256_BYTES], const uint8_t *hash, size_t hash_length)
{
    size_t take = hash_length < P256_BYTES ? hash_length : P256_BYTES;
    int ge = 1;

    memset(out, 0, P256_BYTES);
    memcpy(out + P256_BYTES - take, hash, take);
    for (size_t i = 0; i < P256_BYTES; i++) {
        if (out[i] != p256_order[i]) {
            ge = out[i] > p256_order[i];
            break;
        }
    }
    if (ge) {
        unsigned borrow = 0;
        for (int i = P256_BYTES - 1; i >= 0; i--) {
            unsigned d = (unsigned)out[i] - p256_order[i] - borrow;
            out[i] = (uint8_t)d;
            borrow = (d >> 8) & 1;
        }
    }
}

psa_status_t wsg_nettle_transparent_sign_hash(const psa_key_attributes_t *attributes,
                                              const uint8_t *key_buffer, size_t key_buffer_size,
                                              psa_algorithm_t alg, const uint8_t *hash, size_t hash_length,
                                              uint8_t *signature, size_t signature_size,
                                              size_t *signature_length)
{
    const struct ecc_curve *curve = nettle_get_secp_256r1();
    mp_limb_t z[P256_LIMBS], k[P256_LIMBS], r[P256_LIMBS], s[P256_LIMBS];
    mp_limb_t scratch[P256_SIGN_SCRATCH_LIMBS];
    uint8_t kb[P256_BYTES], h[P256_BYTES];
    struct rfc6979 *drbg = NULL, drbg_storage;
    psa_status_t status = PSA_SUCCESS;
    int deterministic;

    if (!is_p256_pair(attributes) || !PSA_ALG_IS_ECDSA(alg))
        return PSA_ERROR_NOT_SUPPORTED;
    deterministic = PSA_ALG_ECDSA_IS_DETERMINISTIC(alg);
    if (key_buffer_size != P256_BYTES || hash_length == 0 || hash_length > PSA_HASH_MAX_SIZE ||
        ecc_ecdsa_sign_itch(curve) > P256_SIGN_SCRATCH_LIMBS || !p256_scalar_in_range(key_buffer))
        return PSA_ERROR_NOT_SUPPORTED;
    if (signature_size < 2 * P256_BYTES)
        return PSA_ERROR_BUFFER_TOO_SMALL;
    if (deterministic) {
        const struct nettle_hash *md = hash_from_psa(PSA_ALG_SIGN_GET_HASH(alg));
        if (md == NULL)
            return PSA_ERROR_NOT_SUPPORTED;
        p256_bits2octets(h, hash, hash_length);
        drbg = &drbg_storage;
        rfc6979_init(drbg, md, key_buffer, h);
    }

    be_to_limbs(z, key_buffer, P256_BYTES, P256_LIMBS);
    for (;;) {
        /* The nonce k in [1, n-1]: RFC 6979 §3.2 h.3 or a fresh random draw, rejected and drawn
         * again when out of range (and, per §3.4 and FIPS 186-5, when r or s comes out zero). */
        if (drbg != NULL) {
            rfc6979_generate(drbg, kb);
        } else {
            status = psa_generate_random(kb, sizeof(kb));
            if (status != PSA_SUCCESS)
                break;
        }
        if (p256_scalar_in_range(kb)) {
            int rz = 1, sz = 1;
            be_to_limbs(k, kb, P256_BYTES, P256_LIMBS);
            ecc_ecdsa_sign(curve, z, k, hash_length, hash, r, s, scratch);
            for (size_t i = 0; i < P256_LIMBS; i++) {
                rz &= r[i] == 0;
                sz &= s[i] == 0;
            }
            if (!rz && !sz)
                break;
        }
        if (drbg != NULL)
            rfc6979_update(drbg, 0x00, NULL, NULL);
    }
    if (status == PSA_SUCCESS) {
        limbs_to_be(signature, P256_BYTES, r);
        limbs_to_be(signature + P256_BYTES, P256_BYTES, s);
        *signature_length = 2 * P256_BYTES;
    }
    mbedtls_platform_zeroize(z, sizeof(z));
    mbedtls_platform_zeroize(k, sizeof(k));
    mbedtls_platform_zeroize(kb, sizeof(kb));
    mbedtls_platform_zeroize(scratch, sizeof(scratch));
    if (drbg != NULL)
        mbedtls_platform_zeroize(drbg, sizeof(*drbg));
    calls[WSG_PSA_NETTLE_SIGN_HASH]++;
    return status;
}

/* ---- AES-GCM one-shot AEAD ------------------------------------------------------------------- */

union gcm_any_ctx {
    struct gcm_aes128_ctx a128;
    struct gcm_aes192_ctx a192;
    struct gcm_aes256_ctx a256;
};

/* Sets up @p ctx for key and nonce; the tag length in @p tag_length. NOT_SUPPORTED for anything
 * but AES-GCM with a standard tag length (4, 8, 12..16 bytes, SP 800-38D 5.2.1.2) and a non-empty
 * nonce: the built-in code then answers with its own verdict. */
static psa_status_t gcm_setup(union gcm_any_ctx *ctx, const psa_key_attributes_t *attributes,
                              const uint8_t *key, size_t key_size, psa_algorithm_t alg, const uint8_t *nonce,
                              size_t nonce_length, size_t *tag_length)
{
    size_t t;

    if (PSA_ALG_AEAD_WITH_SHORTENED_TAG(alg, 0) != PSA_ALG_AEAD_WITH_SHORTENED_TAG(PSA_ALG_GCM, 0) ||
        psa_get_key_type(attributes) != PSA_KEY_TYPE_AES || nonce_length == 0)
        return PSA_ERROR_NOT_SUPPORTED;
    t = PSA_ALG_AEAD_GET_TAG_LENGTH(alg);
    if (!(t == 4 || t == 8 || (t >= 12 && t <= 16)))
        return PSA_ERROR_NOT_SUPPORTED;
    *tag_length = t;
    switch (key_size) {
    case 16:
        gcm_aes128_set_key(&ctx->a128, key);
        gcm_aes128_set_iv(&ctx->a128, nonce_length, nonce);
        return PSA_SUCCESS;
    case 24:
        gcm_aes192_set_key(&ctx->a192, key);
        gcm_aes192_set_iv(&ctx->a192, nonce_length, nonce);
        return PSA_SUCCESS;
    case 32:
        gcm_aes256_set_key(&ctx->a256, key);
        gcm_aes256_set_iv(&ctx->a256, nonce_length, nonce);
        return PSA_SUCCESS;
    default:
        return PSA_ERROR_NOT_SUPPORTED;
    }
}

/* The GCM context, one per thread, all zero between calls (gcm_wipe restores that).
 * nettle's GHASH key (struct gcm_key) is a table of up to 256 blocks: its C code fills all of it,
 * its PCLMUL code (what runs on x86-64-v2) only the first 2 (nettle 3.8) or 4 (3.10). Wiping the
 * whole 4.3 KB context after every record costs 4,336 instructions per call under callgrind
 * (rep stosb counts per byte) and ~23 ns; so when blocks 16 and 255 of the table are still zero,
 * which they cannot be once the full table was computed (they hold x^4 H and a multiple of H),
 * only the first 16 blocks and the rest of the context are wiped. The context being zero before
 * set_key is what makes the check sound, hence a per-thread context rather than one on the stack. */
static _Thread_local union gcm_any_ctx gcm_ctx;

static void gcm_wipe(union gcm_any_ctx *ctx)
{
    /* key is the first member of every gcm_aes*_ctx (nettle's GCM_CTX) */
    struct gcm_key *key = &ctx->a128.key;
    const size_t nblocks = sizeof(key->h) / sizeof(key->h[0]);
    uint8_t used = 0;

    for (size_t i = 0; i < sizeof(key->h[0]); i++)
        used |= key->h[16].b[i] | key->h[nblocks - 1].b[i];
    if (used) {
        mbedtls_platform_zeroize(ctx, sizeof(*ctx));
        return;
    }
    mbedtls_platform_zeroize(key->h, 16 * sizeof(key->h[0]));
    mbedtls_platform_zeroize((uint8_t *)ctx + sizeof(*key), sizeof(*ctx) - sizeof(*key));
}

/* The gcm_aes*_{update,encrypt,decrypt,digest} trio share one shape; dispatch on the key size. */
static void gcm_run(union gcm_any_ctx *ctx, size_t key_size, int decrypt, const uint8_t *ad, size_t ad_length,
                    const uint8_t *in, size_t length, uint8_t *out, uint8_t *tag, size_t tag_length)
{
    switch (key_size) {
    case 16:
        gcm_aes128_update(&ctx->a128, ad_length, ad);
        (decrypt ? gcm_aes128_decrypt : gcm_aes128_encrypt)(&ctx->a128, length, out, in);
        gcm_aes128_digest(&ctx->a128, tag_length, tag);
        break;
    case 24:
        gcm_aes192_update(&ctx->a192, ad_length, ad);
        (decrypt ? gcm_aes192_decrypt : gcm_aes192_encrypt)(&ctx->a192, length, out, in);
        gcm_aes192_digest(&ctx->a192, tag_length, tag);
        break;
    default:
        gcm_aes256_update(&ctx->a256, ad_length, ad);
        (decrypt ? gcm_aes256_decrypt : gcm_aes256_encrypt)(&ctx->a256, length, out, in);
        gcm_aes256_digest(&ctx->a256, tag_length, tag);
        break;
    }
}

psa_status_t wsg_nettle_transparent_aead_encrypt(const psa_key_attributes_t *attributes,
                                                 const uint8_t *key_buffer, size_t key_buffer_size,
                                                 psa_algorithm_t alg, const uint8_t *nonce,
                                                 size_t nonce_length, const uint8_t *additional_data,
                                                 size_t additional_data_length, const uint8_t *plaintext,
                                                 size_t plaintext_length, uint8_t *ciphertext,
                                                 size_t ciphertext_size, size_t *ciphertext_length)
{
    union gcm_any_ctx *ctx = &gcm_ctx;
    size_t tag_length;
    psa_status_t status;

    status = gcm_setup(ctx, attributes, key_buffer, key_buffer_size, alg, nonce, nonce_length, &tag_length);
    if (status != PSA_SUCCESS)
        return status;
    if (ciphertext_size < tag_length || ciphertext_size - tag_length < plaintext_length) {
        status = PSA_ERROR_BUFFER_TOO_SMALL;
    } else {
        /* nettle allows in-place operation (ciphertext == plaintext), which TLS records use. */
        gcm_run(ctx, key_buffer_size, 0, additional_data, additional_data_length, plaintext, plaintext_length,
                ciphertext, ciphertext + plaintext_length, tag_length);
        *ciphertext_length = plaintext_length + tag_length;
    }
    gcm_wipe(ctx);
    calls[WSG_PSA_NETTLE_AEAD_ENCRYPT]++;
    return status;
}

psa_status_t wsg_nettle_transparent_aead_decrypt(const psa_key_attributes_t *attributes,
                                                 const uint8_t *key_buffer, size_t key_buffer_size,
                                                 psa_algorithm_t alg, const uint8_t *nonce,
                                                 size_t nonce_length, const uint8_t *additional_data,
                                                 size_t additional_data_length, const uint8_t *ciphertext,
                                                 size_t ciphertext_length, uint8_t *plaintext,
                                                 size_t plaintext_size, size_t *plaintext_length)
{
    union gcm_any_ctx *ctx = &gcm_ctx;
    uint8_t tag[16];
    size_t tag_length, length;
    psa_status_t status;

    status = gcm_setup(ctx, attributes, key_buffer, key_buffer_size, alg, nonce, nonce_length, &tag_length);
    if (status != PSA_SUCCESS)
        return status;
    if (ciphertext_length < tag_length) {
        status = PSA_ERROR_INVALID_ARGUMENT;
    } else if ((length = ciphertext_length - tag_length) > plaintext_size) {
        status = PSA_ERROR_BUFFER_TOO_SMALL;
    } else {
        /* The received tag sits after the ciphertext, outside what an in-place decryption writes. */
        gcm_run(ctx, key_buffer_size, 1, additional_data, additional_data_length, ciphertext, length,
                plaintext, tag, tag_length);
        if (memeql_sec(tag, ciphertext + length, tag_length)) {
            *plaintext_length = length;
        } else {
            mbedtls_platform_zeroize(plaintext, length);
            status = PSA_ERROR_INVALID_SIGNATURE;
        }
    }
    gcm_wipe(ctx);
    mbedtls_platform_zeroize(tag, sizeof(tag));
    calls[WSG_PSA_NETTLE_AEAD_DECRYPT]++;
    return status;
}

#endif /* WSG_PSA_NETTLE_DRIVER_ENABLED */
