/*
 * tls-int.h - private to tls/: the store, a certificate generation, and the few calls tls.c and
 * store.c make into each other. Nothing outside tls/ includes this file.
 */
#ifndef WSG_TLS_INT_H
#define WSG_TLS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include "tls/tls.h"

/* One loaded certificate chain and its key, with the SNI names read from the leaf. */
struct wsg_tls_cert {
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
    char *path; /* the certificate file, or NULL for the generated self-signed pair */
};

/* One SNI map row: a lower-cased name ("a.test" or "*.b.test") and the cert serving it. */
struct wsg_tls_name {
    char *name;
    struct wsg_tls_cert *cert;
};

/* A generation: one server config with everything it points to. Freed by the last reference. */
struct wsg_tls_gen {
    atomic_uint refs;  /* the store's (while current) plus one per connection */
    atomic_uint conns; /* connections on this generation (wsg_tls objects alive) */
    unsigned number;
    struct wsg_tls_gen *prev, *next; /* the store's list of live generations, under st->lock */
    struct wsg_tls_store *st;
    mbedtls_ssl_config conf;      /* every suite, mbedTLS's client-order rule in TLS 1.3 */
    mbedtls_ssl_config conf_fast; /* TLS 1.3 AES-128-GCM only: for clients that offer it */
    int has_fast;                 /* conf_fast is set up (server cipher order) */
    struct wsg_tls_cert *certs;   /* certs[0] is the default */
    size_t ncerts;
    struct wsg_tls_name *names;
    size_t nnames;
};

/* A TLS-ALPN-01 challenge certificate pushed over the admin endpoint (acme.c). Immutable once
 * in the table; a handshake that selected it holds a reference until its wsg_tls is freed, so a
 * DELETE during that handshake frees it only afterwards. */
struct wsg_tls_acme_cert {
    atomic_uint refs;
    char name[256]; /* lower-cased DNS name */
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
};

struct wsg_tls_store {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;     /* thread-safe (MBEDTLS_THREADING_C): shared by all workers */
    mbedtls_ssl_ticket_context ticket; /* per-process keys, when there is no ticket_key_file */
    int tickets;                       /* tickets on (ticket_lifetime != 0 at store_new) */
    uint32_t ticket_lifetime;          /* seconds, as set at store_new */
    struct wsg_ticket_keyset *tkeys;   /* ticket_key_file's keys (tickets.c), under lock; NULL: none */
    pthread_mutex_t lock;
    struct wsg_tls_gen *current; /* the store holds one reference on it */
    unsigned last_number;        /* under lock */
    atomic_uint number;          /* the current generation's number, for lock-free reads */
    atomic_uint live;            /* generations built and not yet freed */
    struct wsg_tls_gen *gens;    /* every live generation, newest first; under lock */
    /* TLS-ALPN-01 challenges (acme.c): written by the admin thread, read by handshakes */
    pthread_mutex_t acme_lock;
    struct wsg_tls_acme_cert *acme[WSG_TLS_ACME_MAX]; /* under acme_lock; nacme used */
    size_t nacme;
    atomic_ulong acme_served, acme_unknown; /* acme-tls/1 handshakes with / without a challenge */
};

/* store.c: a connection's reference on the current generation (never NULL after store_new);
 * counts the connection in g->conns. Only wsg_tls_new calls it. */
struct wsg_tls_gen *wsg_tls_gen_acquire(struct wsg_tls_store *st);
/* store.c: drops a connection's reference (wsg_tls_free); the last reference frees the generation. */
void wsg_tls_gen_release(struct wsg_tls_gen *g);

/* ---- tickets.c: keys from ticket_key_file and the callbacks that use them ---- */
struct wsg_ticket_keyset;
/* Reads the file and imports its keys into PSA. @return the set (one reference), or NULL with err. */
struct wsg_ticket_keyset *wsg_ticket_keyset_load(const char *path, char err[WSG_ERRLEN]);
void wsg_ticket_keyset_unref(struct wsg_ticket_keyset *ks);
size_t wsg_ticket_keyset_count(const struct wsg_ticket_keyset *ks);
/* mbedtls_ssl_ticket_write_t / _parse_t over st->tkeys (p is the store). */
int wsg_ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                     const unsigned char *end, size_t *tlen, uint32_t *lifetime);
int wsg_ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len);

/* ---- check.c: loading and judging a pair, shared by the store (which stops at the first
 * problem) and wsg_tls_check_pair (which collects them all). The same files get the same
 * sentences from the gateway and from wsgate-certs. Each returns 0, or -1 with err. ---- */

/* Parses a PEM chain file: "cert.pem: cannot read: No such file or directory",
 * "cert.pem: cannot parse certificate: ...". */
int wsg_tls_load_chain(mbedtls_x509_crt *chain, const char *path, char err[WSG_ERRLEN]);
/* Parses an unencrypted private key file (same style of messages). */
int wsg_tls_load_key(mbedtls_pk_context *key, const char *path, mbedtls_ctr_drbg_context *drbg,
                     char err[WSG_ERRLEN]);
/* "key.pem: private key does not match cert.pem". */
int wsg_tls_key_matches(const mbedtls_x509_crt *leaf, const mbedtls_pk_context *key,
                        mbedtls_ctr_drbg_context *drbg, const char *cert_name, const char *key_name,
                        char err[WSG_ERRLEN]);
/* Validity at now of the certificate at depth in its file (0: the leaf):
 * "cert.pem: certificate expired on 2024-01-01", "... not valid before ...". */
int wsg_tls_cert_validity(const mbedtls_x509_crt *c, int depth, const char *cert_name, time_t now,
                          char err[WSG_ERRLEN]);
/* An X.509 time as seconds since the epoch (UTC). */
time_t wsg_tls_x509_epoch(const mbedtls_x509_time *t);
/* SHA-256 of the certificate's DER as "AB:CD:...:EF" (openssl x509 -fingerprint -sha256). */
void wsg_tls_fingerprint(const mbedtls_x509_crt *crt, char out[96]);
/* The names a leaf serves, in certificate order: subjectAltName DNS names (is_ip 0) and IP
 * addresses (is_ip 1, as text); without any subjectAltName, its CN (from_cn 1). fn returning
 * non-zero stops the walk and is returned. */
typedef int (*wsg_tls_name_fn)(void *arg, const char *name, size_t len, int is_ip, int from_cn);
int wsg_tls_leaf_names(const mbedtls_x509_crt *leaf, wsg_tls_name_fn fn, void *arg);

/* acme.c: the certificate selection callback (mbedtls_ssl_conf_cert_cb): a handshake whose ALPN
 * is acme-tls/1 gets the challenge pushed for its SNI name, or fails (unrecognized_name). */
int wsg_tls_acme_cert_cb(mbedtls_ssl_context *ssl);
/* acme.c: drops a handshake's reference (wsg_tls_free). NULL is fine. */
void wsg_tls_acme_unref(struct wsg_tls_acme_cert *c);
/* acme.c: init and free of the store's table (store_new, store_free). */
void wsg_tls_acme_init(struct wsg_tls_store *st);
void wsg_tls_acme_free(struct wsg_tls_store *st);
/* tls.c: the store of a connection, and the challenge its handshake selected (takes the
 * caller's reference; a previous one, after a HelloRetryRequest, is dropped). */
struct wsg_tls_store *wsg_tls_store_of(const struct wsg_tls *t);
void wsg_tls_note_acme(struct wsg_tls *t, struct wsg_tls_acme_cert *c);

/* tls.c: called by the SNI callback with the connection found via mbedtls_ssl_get_user_data_p. */
void wsg_tls_note_sni(struct wsg_tls *t, const unsigned char *name, size_t len);
/* tls.c: called by the ticket-parse wrapper when a ticket was accepted during this thread's
 * current handshake step (see tls.c: resumption tracking). */
void wsg_tls_note_ticket(void);

#endif
