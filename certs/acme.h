/*
 * acme.h - the ACME client's building blocks (RFC 8555) in wsgate-certs: base64url (RFC 4648
 * section 5, no padding), the account key as a JWK and its thumbprint (RFC 7638), and JWS ES256
 * signing in the flattened JSON serialisation (RFC 7515 section 7.2.2) with ACME's protected header
 * (RFC 8555 section 6.2: alg, nonce, url, and jwk or kid).
 */
#ifndef WSG_CERTS_ACME_H
#define WSG_CERTS_ACME_H

#include <stddef.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "certs/certs.h"
#include "policies/base/b64url.h"

/* ---- jws.c ---- */

/* data as base64url without padding, malloc'd and NUL-terminated; NULL when out of memory.
 * (wsg_b64url_encode and the strict wsg_b64url_decode are policies/base/b64url.h.) */
char *wsg_b64url(const void *data, size_t len);

enum { WSG_JWK_MAX = 160, WSG_THUMBPRINT_LEN = 43 };

/* An ACME account key: ECDSA P-256, with its random generator (for key generation and blinding). */
struct wsg_acme_key {
    mbedtls_pk_context pk;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    char jwk[WSG_JWK_MAX];                   /* {"crv":"P-256","kty":"EC","x":"..","y":".."} */
    char thumbprint[WSG_THUMBPRINT_LEN + 1]; /* base64url(SHA-256(jwk)), RFC 7638 */
};

/* Seeds the generator; the key is empty. @return 0, or -1 with err. Free with wsg_acme_key_free. */
int wsg_acme_key_init(struct wsg_acme_key *k, char err[WSG_ERRLEN]);
void wsg_acme_key_free(struct wsg_acme_key *k);
/* A fresh P-256 key. @return 0, or -1 with err. */
int wsg_acme_key_generate(struct wsg_acme_key *k, char err[WSG_ERRLEN]);
/* A key from PEM or DER (NUL-terminated PEM: len counts the NUL); must be P-256. @return 0 or -1. */
int wsg_acme_key_parse(struct wsg_acme_key *k, const unsigned char *buf, size_t len, char err[WSG_ERRLEN]);
/* A key from its 32-byte private scalar (big-endian), as a JWK's "d" holds it. @return 0 or -1. */
int wsg_acme_key_from_d(struct wsg_acme_key *k, const unsigned char d[32], char err[WSG_ERRLEN]);
/* The key as PEM (SEC1 "EC PRIVATE KEY"). @return 0, or -1 when cap is too small. */
int wsg_acme_key_pem(struct wsg_acme_key *k, unsigned char *pem, size_t cap);

/* base64url(SHA-256(json)): the RFC 7638 thumbprint of a JWK already in canonical form. */
int wsg_jwk_thumbprint(const char *canonical_jwk, char out[WSG_THUMBPRINT_LEN + 1]);

/* ES256 (RFC 7518 section 3.4): SHA-256, ECDSA P-256 with RFC 6979 nonces, R || S, 32 bytes each. */
int wsg_jws_es256_sign(struct wsg_acme_key *k, const void *input, size_t len, unsigned char sig[64]);
/* @return 0 when sig is a valid ES256 signature of input by k, -1 otherwise. */
int wsg_jws_es256_verify(struct wsg_acme_key *k, const void *input, size_t len, const unsigned char sig[64]);

/**
 * One ACME request body: {"protected":..,"payload":..,"signature":..}. The protected header holds
 * alg ES256, the nonce, the url, and kid when kid is not NULL, the key's jwk otherwise (newAccount,
 * revocation by key). payload is the JSON to send, or NULL for POST-as-GET (an empty payload, RFC
 * 8555 section 6.3). nonce must be base64url (section 6.5.1). @return malloc'd JSON, NULL on error.
 */
char *wsg_jws_acme(struct wsg_acme_key *k, const char *kid, const char *nonce, const char *url,
                   const char *payload);

/* ---- https.c: one HTTPS request per connection, the server verified (RFC 8555 section 6.1) ---- */

struct wsg_https {
    mbedtls_x509_crt ca; /* --ca, or the system bundle */
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    int timeout_ms; /* connect, and each send and receive */
};

struct wsg_https_res {
    int status;
    char *body; /* NUL-terminated (the body may hold NULs: len counts them) */
    size_t len;
    char location[1024], nonce[256], retry_after[64], content_type[128]; /* "" when absent */
};

/* Loads the CA bundle (ca_path, or the system's when NULL). @return 0, or -1 with err. */
int wsg_https_init(struct wsg_https *h, const char *ca_path, int timeout_ms, char err[WSG_ERRLEN]);
void wsg_https_free(struct wsg_https *h);
/**
 * Sends METHOD url (with body as ctype when body is not NULL) and reads the whole answer.
 * @return 0 (any status; free res with wsg_https_res_free), or -1 with err.
 */
int wsg_https_request(struct wsg_https *h, const char *method, const char *url, const char *ctype,
                      const char *body, struct wsg_https_res *res, char err[WSG_ERRLEN]);
/* Parses one whole answer (read until the server closed). @return 0, or -1 when malformed. */
int wsg_https_parse(const char *buf, size_t len, int is_head, struct wsg_https_res *res);
void wsg_https_res_free(struct wsg_https_res *res);
/* Splits https://HOST[:PORT]/PATH: host without brackets, "HOST:PORT" to connect to, the path. */
int wsg_https_url(const char *url, char host[256], char hostport[300], const char **path);

/* ---- acme.c: the acme subcommand ---- */

/* The acme subcommand: argv[0] is "acme". @return an exit code (as rotate's). */
int wsg_certs_acme_main(int argc, char **argv, FILE *out, FILE *err);

#endif
