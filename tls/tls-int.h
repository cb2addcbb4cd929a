/*
 * tls-int.h - private to tls/: the store, a certificate generation, and the few calls tls.c and
 * store.c make into each other. Nothing outside tls/ includes this file.
 */
#ifndef WSG_TLS_INT_H
#define WSG_TLS_INT_H

#include <pthread.h>
#include <stdatomic.h>

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
};

/* One SNI map row: a lower-cased name ("a.test" or "*.b.test") and the cert serving it. */
struct wsg_tls_name {
    char *name;
    struct wsg_tls_cert *cert;
};

/* A generation: one server config with everything it points to. Freed by the last reference. */
struct wsg_tls_gen {
    atomic_uint refs;
    unsigned number;
    struct wsg_tls_store *st;
    mbedtls_ssl_config conf;
    struct wsg_tls_cert *certs; /* certs[0] is the default */
    size_t ncerts;
    struct wsg_tls_name *names;
    size_t nnames;
};

struct wsg_tls_store {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg; /* thread-safe (MBEDTLS_THREADING_C): shared by all workers */
    mbedtls_ssl_ticket_context ticket;
    int tickets; /* ticket context set up (ticket_lifetime != 0 at store_new) */
    pthread_mutex_t lock;
    struct wsg_tls_gen *current; /* the store holds one reference on it */
    unsigned last_number;        /* under lock */
    atomic_uint number;          /* the current generation's number, for lock-free reads */
    atomic_uint live;            /* generations built and not yet freed */
};

/* store.c: the current generation with a reference taken (never NULL after store_new). */
struct wsg_tls_gen *wsg_tls_gen_acquire(struct wsg_tls_store *st);
/* store.c: drops a reference; the last one frees the generation. */
void wsg_tls_gen_release(struct wsg_tls_gen *g);

/* tls.c: called by the SNI callback with the connection found via mbedtls_ssl_get_user_data_p. */
void wsg_tls_note_sni(struct wsg_tls *t, const unsigned char *name, size_t len);
/* tls.c: called by the ticket-parse wrapper when a ticket was accepted during this thread's
 * current handshake step (see tls.c: resumption tracking). */
void wsg_tls_note_ticket(void);

#endif
