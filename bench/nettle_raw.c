/* nettle_raw: nettle's own speed on this machine for the operations the PSA driver (tls/psa/)
 * hands it: the ceiling of wsgate's handshakes and records, as reference lines for the bench.
 *
 *   nettle_raw [-d SECONDS]
 *
 * One thread; rates are over the thread's CPU time, so other load on the machine changes little.
 * The random source is nettle's Knuth lagged-Fibonacci generator, seeded with a constant: fine for
 * timing, never for keys (the driver draws from mbedTLS's CTR-DRBG).
 *
 * Build: gcc -O2 -o nettle_raw bench/nettle_raw.c -lhogweed -lnettle -lgmp
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nettle/chacha-poly1305.h>
#include <nettle/curve25519.h>
#include <nettle/ecc-curve.h>
#include <nettle/ecc.h>
#include <nettle/ecdsa.h>
#include <nettle/gcm.h>
#include <nettle/knuth-lfib.h>
#include <nettle/version.h>

static double g_seconds = 1.0;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs op(ctx) in batches of 16 until g_seconds of CPU time passed; returns operations/s. */
static double rate(void (*op)(void *), void *ctx)
{
    double t0 = cpu_now(), t;
    unsigned long n = 0;
    do {
        for (int i = 0; i < 16; i++)
            op(ctx);
        n += 16;
        t = cpu_now() - t0;
    } while (t < g_seconds);
    return (double)n / t;
}

/* ---------------------------------------------------------------- public key */
struct pk {
    struct knuth_lfib_ctx rnd;
    struct ecc_scalar key, eph;
    struct ecc_point pub, shared;
    uint8_t x_priv[CURVE25519_SIZE], x_pub[CURVE25519_SIZE], x_out[CURVE25519_SIZE];
    uint8_t digest[32];
};

static void op_ecdsa_sign(void *ctx)
{
    struct pk *p = ctx;
    struct dsa_signature sig;
    dsa_signature_init(&sig);
    ecdsa_sign(&p->key, &p->rnd, (nettle_random_func *)knuth_lfib_random, sizeof p->digest, p->digest, &sig);
    dsa_signature_clear(&sig);
}

static void op_p256_keygen(void *ctx)
{
    struct pk *p = ctx;
    ecc_scalar_random(&p->eph, &p->rnd, (nettle_random_func *)knuth_lfib_random);
    ecc_point_mul_g(&p->shared, &p->eph);
}

static void op_p256_ecdh(void *ctx)
{
    struct pk *p = ctx;
    ecc_point_mul(&p->shared, &p->key, &p->pub);
}

static void op_x25519_keygen(void *ctx)
{
    struct pk *p = ctx;
    knuth_lfib_random(&p->rnd, sizeof p->x_priv, p->x_priv);
    curve25519_mul_g(p->x_out, p->x_priv);
}

static void op_x25519_shared(void *ctx)
{
    struct pk *p = ctx;
    curve25519_mul(p->x_out, p->x_priv, p->x_pub);
}

/* ---------------------------------------------------------------- AEAD, 16 KiB records */
#define REC 16384
struct aead {
    uint8_t key[32], iv[12], in[REC], out[REC], tag[16];
    struct gcm_aes128_ctx g128;
    struct gcm_aes256_ctx g256;
    struct chacha_poly1305_ctx cp;
};

static void op_gcm128(void *ctx)
{
    struct aead *a = ctx;
    gcm_aes128_set_iv(&a->g128, sizeof a->iv, a->iv);
    gcm_aes128_encrypt(&a->g128, REC, a->out, a->in);
    gcm_aes128_digest(&a->g128, sizeof a->tag, a->tag);
}

static void op_gcm256(void *ctx)
{
    struct aead *a = ctx;
    gcm_aes256_set_iv(&a->g256, sizeof a->iv, a->iv);
    gcm_aes256_encrypt(&a->g256, REC, a->out, a->in);
    gcm_aes256_digest(&a->g256, sizeof a->tag, a->tag);
}

static void op_chacha(void *ctx)
{
    struct aead *a = ctx;
    chacha_poly1305_set_nonce(&a->cp, a->iv);
    chacha_poly1305_encrypt(&a->cp, REC, a->out, a->in);
    chacha_poly1305_digest(&a->cp, sizeof a->tag, a->tag);
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "d:")) != -1) {
        if (c == 'd') {
            g_seconds = atof(optarg);
        } else {
            fprintf(stderr, "usage: nettle_raw [-d SECONDS]\n");
            return 64;
        }
    }
    if (g_seconds <= 0)
        g_seconds = 1.0;

    static struct pk p;
    const struct ecc_curve *p256 = nettle_get_secp_256r1();
    knuth_lfib_init(&p.rnd, 4711);
    ecc_scalar_init(&p.key, p256);
    ecc_scalar_init(&p.eph, p256);
    ecc_point_init(&p.pub, p256);
    ecc_point_init(&p.shared, p256);
    ecdsa_generate_keypair(&p.pub, &p.key, &p.rnd, (nettle_random_func *)knuth_lfib_random);
    knuth_lfib_random(&p.rnd, sizeof p.digest, p.digest);
    knuth_lfib_random(&p.rnd, sizeof p.x_priv, p.x_priv);
    curve25519_mul_g(p.x_pub, p.x_priv);

    static struct aead a;
    knuth_lfib_random(&p.rnd, sizeof a.key, a.key);
    knuth_lfib_random(&p.rnd, sizeof a.in, a.in);
    gcm_aes128_set_key(&a.g128, a.key);
    gcm_aes256_set_key(&a.g256, a.key);
    chacha_poly1305_set_key(&a.cp, a.key);

    printf("nettle %d.%d\n", nettle_version_major(), nettle_version_minor());
    printf("%-28s %10.0f /s\n", "ECDSA P-256 sign", rate(op_ecdsa_sign, &p));
    printf("%-28s %10.0f /s\n", "P-256 key generation", rate(op_p256_keygen, &p));
    printf("%-28s %10.0f /s\n", "P-256 ECDH shared secret", rate(op_p256_ecdh, &p));
    printf("%-28s %10.0f /s\n", "X25519 key generation", rate(op_x25519_keygen, &p));
    printf("%-28s %10.0f /s\n", "X25519 shared secret", rate(op_x25519_shared, &p));
    printf("%-28s %10.0f MB/s (16 KiB records, encrypt)\n", "AES-128-GCM", rate(op_gcm128, &a) * REC / 1e6);
    printf("%-28s %10.0f MB/s (16 KiB records, encrypt)\n", "AES-256-GCM", rate(op_gcm256, &a) * REC / 1e6);
    printf("%-28s %10.0f MB/s (16 KiB records, encrypt)\n", "ChaCha20-Poly1305",
           rate(op_chacha, &a) * REC / 1e6);

    ecc_scalar_clear(&p.key);
    ecc_scalar_clear(&p.eph);
    ecc_point_clear(&p.pub);
    ecc_point_clear(&p.shared);
    return 0;
}
