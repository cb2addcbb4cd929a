/*
 * jws.c - base64url, the ACME account key as a JWK with its RFC 7638 thumbprint, and JWS ES256 in
 * the flattened JSON serialisation (RFC 7515) that every ACME request is (RFC 8555 section 6.2).
 *
 * Signatures use deterministic ECDSA (RFC 6979): the same key and input give the same signature,
 * so a weak random generator cannot leak the account key through its nonces; the generator only
 * blinds the computation.
 */
#include "certs/acme.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <psa/crypto.h>

char *wsg_b64url(const void *data, size_t len)
{
    char *out = malloc(WSG_B64URL_LEN(len) + 1);
    if (out != NULL)
        wsg_b64url_encode(data, len, out);
    return out;
}

static void mbed_err(char err[WSG_ERRLEN], const char *what, int ret)
{
    char text[120];
    mbedtls_strerror(ret, text, sizeof(text));
    snprintf(err, WSG_ERRLEN, "%s: %s", what, text);
}

int wsg_acme_key_init(struct wsg_acme_key *k, char err[WSG_ERRLEN])
{
    memset(k, 0, sizeof(*k));
    mbedtls_pk_init(&k->pk);
    mbedtls_entropy_init(&k->entropy);
    mbedtls_ctr_drbg_init(&k->drbg);
    if (psa_crypto_init() != PSA_SUCCESS) {
        snprintf(err, WSG_ERRLEN, "cannot initialise PSA crypto");
        return -1;
    }
    static const char pers[] = "wsgate-certs acme";
    int ret = mbedtls_ctr_drbg_seed(&k->drbg, mbedtls_entropy_func, &k->entropy, (const unsigned char *)pers,
                                    sizeof(pers) - 1);
    if (ret != 0) {
        mbed_err(err, "seeding the random generator", ret);
        return -1;
    }
    return 0;
}

void wsg_acme_key_free(struct wsg_acme_key *k)
{
    mbedtls_pk_free(&k->pk);
    mbedtls_ctr_drbg_free(&k->drbg);
    mbedtls_entropy_free(&k->entropy);
}

int wsg_jwk_thumbprint(const char *canonical_jwk, char out[WSG_THUMBPRINT_LEN + 1])
{
    unsigned char h[32];
    if (mbedtls_sha256((const unsigned char *)canonical_jwk, strlen(canonical_jwk), h, 0) != 0)
        return -1;
    char *b = wsg_b64url(h, sizeof(h));
    if (b == NULL)
        return -1;
    memcpy(out, b, WSG_THUMBPRINT_LEN + 1);
    free(b);
    return 0;
}

/* Fills jwk and thumbprint from the public point: RFC 7638's member order, no whitespace. */
static int key_loaded(struct wsg_acme_key *k, char err[WSG_ERRLEN])
{
    if (mbedtls_pk_get_type(&k->pk) != MBEDTLS_PK_ECKEY ||
        mbedtls_ecp_keypair_get_group_id(mbedtls_pk_ec(k->pk)) != MBEDTLS_ECP_DP_SECP256R1) {
        snprintf(err, WSG_ERRLEN, "the account key is not an ECDSA P-256 key");
        return -1;
    }
    unsigned char pt[65];
    size_t n;
    int ret =
        mbedtls_ecp_write_public_key(mbedtls_pk_ec(k->pk), MBEDTLS_ECP_PF_UNCOMPRESSED, &n, pt, sizeof(pt));
    if (ret != 0 || n != 65) {
        mbed_err(err, "the account key's public point", ret);
        return -1;
    }
    char *x = wsg_b64url(pt + 1, 32), *y = wsg_b64url(pt + 33, 32);
    int rc = -1;
    if (x != NULL && y != NULL &&
        (size_t)snprintf(k->jwk, sizeof(k->jwk),
                         "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x,
                         y) < sizeof(k->jwk))
        rc = wsg_jwk_thumbprint(k->jwk, k->thumbprint);
    free(x);
    free(y);
    if (rc != 0)
        snprintf(err, WSG_ERRLEN, "out of memory");
    return rc;
}

int wsg_acme_key_generate(struct wsg_acme_key *k, char err[WSG_ERRLEN])
{
    mbedtls_pk_free(&k->pk);
    mbedtls_pk_init(&k->pk);
    int ret = mbedtls_pk_setup(&k->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(k->pk), mbedtls_ctr_drbg_random,
                                  &k->drbg);
    if (ret != 0) {
        mbed_err(err, "generating the account key", ret);
        return -1;
    }
    return key_loaded(k, err);
}

int wsg_acme_key_parse(struct wsg_acme_key *k, const unsigned char *buf, size_t len, char err[WSG_ERRLEN])
{
    mbedtls_pk_free(&k->pk);
    mbedtls_pk_init(&k->pk);
    int ret = mbedtls_pk_parse_key(&k->pk, buf, len, NULL, 0, mbedtls_ctr_drbg_random, &k->drbg);
    if (ret != 0) {
        mbed_err(err, "cannot parse the account key", ret);
        return -1;
    }
    return key_loaded(k, err);
}

int wsg_acme_key_from_d(struct wsg_acme_key *k, const unsigned char d[32], char err[WSG_ERRLEN])
{
    mbedtls_pk_free(&k->pk);
    mbedtls_pk_init(&k->pk);
    int ret = mbedtls_pk_setup(&k->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret = mbedtls_ecp_read_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(k->pk), d, 32);
    if (ret == 0)
        ret = mbedtls_ecp_keypair_calc_public(mbedtls_pk_ec(k->pk), mbedtls_ctr_drbg_random, &k->drbg);
    if (ret != 0) {
        mbed_err(err, "loading the account key", ret);
        return -1;
    }
    return key_loaded(k, err);
}

int wsg_acme_key_pem(struct wsg_acme_key *k, unsigned char *pem, size_t cap)
{
    return mbedtls_pk_write_key_pem(&k->pk, pem, cap) == 0 ? 0 : -1;
}

/* The parts of the key the legacy ECDSA calls want, exported (the keypair's fields are private). */
struct ec_parts {
    mbedtls_ecp_group grp;
    mbedtls_mpi d;
    mbedtls_ecp_point Q;
};

static int ec_export(struct wsg_acme_key *k, struct ec_parts *e)
{
    mbedtls_ecp_group_init(&e->grp);
    mbedtls_mpi_init(&e->d);
    mbedtls_ecp_point_init(&e->Q);
    if (mbedtls_pk_get_type(&k->pk) != MBEDTLS_PK_ECKEY)
        return -1;
    return mbedtls_ecp_export(mbedtls_pk_ec(k->pk), &e->grp, &e->d, &e->Q) == 0 ? 0 : -1;
}

static void ec_free(struct ec_parts *e)
{
    mbedtls_ecp_group_free(&e->grp);
    mbedtls_mpi_free(&e->d);
    mbedtls_ecp_point_free(&e->Q);
}

int wsg_jws_es256_sign(struct wsg_acme_key *k, const void *input, size_t len, unsigned char sig[64])
{
    unsigned char h[32];
    struct ec_parts e;
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    int rc = -1;
    if (ec_export(k, &e) == 0 && mbedtls_sha256(input, len, h, 0) == 0 &&
        mbedtls_ecdsa_sign_det_ext(&e.grp, &r, &s, &e.d, h, sizeof(h), MBEDTLS_MD_SHA256,
                                   mbedtls_ctr_drbg_random, &k->drbg) == 0 &&
        mbedtls_mpi_write_binary(&r, sig, 32) == 0 && mbedtls_mpi_write_binary(&s, sig + 32, 32) == 0)
        rc = 0;
    ec_free(&e);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return rc;
}

int wsg_jws_es256_verify(struct wsg_acme_key *k, const void *input, size_t len, const unsigned char sig[64])
{
    unsigned char h[32];
    struct ec_parts e;
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    int rc = -1;
    if (ec_export(k, &e) == 0 && mbedtls_sha256(input, len, h, 0) == 0 &&
        mbedtls_mpi_read_binary(&r, sig, 32) == 0 && mbedtls_mpi_read_binary(&s, sig + 32, 32) == 0 &&
        mbedtls_ecdsa_verify(&e.grp, h, sizeof(h), &e.Q, &r, &s) == 0)
        rc = 0;
    ec_free(&e);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return rc;
}

char *wsg_jws_acme(struct wsg_acme_key *k, const char *kid, const char *nonce, const char *url,
                   const char *payload)
{
    if (nonce == NULL || !wsg_b64url_chars(nonce, strlen(nonce)) || url == NULL || k->jwk[0] == '\0')
        return NULL;
    char *qurl = wsg_certs_json_quote(url), *qkid = kid != NULL ? wsg_certs_json_quote(kid) : NULL;
    char *header = NULL, *prot = NULL, *pay = NULL, *input = NULL, *sigb = NULL, *out = NULL;
    unsigned char sig[64];
    if (qurl == NULL || (kid != NULL && qkid == NULL))
        goto done;
    if (kid != NULL) {
        if (asprintf(&header, "{\"alg\":\"ES256\",\"kid\":%s,\"nonce\":\"%s\",\"url\":%s}", qkid, nonce,
                     qurl) < 0)
            header = NULL;
    } else if (asprintf(&header, "{\"alg\":\"ES256\",\"jwk\":%s,\"nonce\":\"%s\",\"url\":%s}", k->jwk, nonce,
                        qurl) < 0) {
        header = NULL;
    }
    if (header == NULL || (prot = wsg_b64url(header, strlen(header))) == NULL)
        goto done;
    if (payload == NULL)
        pay = strdup("");
    else
        pay = wsg_b64url(payload, strlen(payload));
    if (pay == NULL || asprintf(&input, "%s.%s", prot, pay) < 0) {
        input = NULL;
        goto done;
    }
    if (wsg_jws_es256_sign(k, input, strlen(input), sig) != 0 ||
        (sigb = wsg_b64url(sig, sizeof(sig))) == NULL)
        goto done;
    if (asprintf(&out, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", prot, pay, sigb) < 0)
        out = NULL;
done:
    free(qurl);
    free(qkid);
    free(header);
    free(prot);
    free(pay);
    free(input);
    free(sigb);
    return out;
}
