/*
 * acme.c - TLS-ALPN-01 challenge certificates (RFC 8737) held by the store, and the certificate
 * selection callback that serves them (see tls.h). Owns the parsing and checking of a pushed
 * challenge (PEM certificate + PEM key), the table (a mutex-protected array of at most
 * WSG_TLS_ACME_MAX refcounted entries) and the acme-tls/1 counters.
 *
 * The table is written by the admin thread (PUT, DELETE) and read by worker threads during
 * handshakes. A handshake that selected an entry holds a reference (wsg_tls_note_acme) until its
 * connection is freed: mbedTLS points at the entry's certificate and key until the handshake
 * messages are written, so a DELETE in between must not free them.
 */
#include "tls/tls-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/error.h>
#include <mbedtls/pem.h>
#include <mbedtls/platform_util.h>

/* id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31 (RFC 8737 section 6.1), DER content of the OID */
static const unsigned char oid_acme_id[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f};

#define PEM_CERT_BEGIN "-----BEGIN CERTIFICATE-----"
#define PEM_CERT_END "-----END CERTIFICATE-----"

void wsg_tls_acme_init(struct wsg_tls_store *st)
{
    pthread_mutex_init(&st->acme_lock, NULL);
    st->nacme = 0;
    atomic_init(&st->acme_served, 0);
    atomic_init(&st->acme_unknown, 0);
}

static void entry_free(struct wsg_tls_acme_cert *c)
{
    mbedtls_x509_crt_free(&c->crt);
    mbedtls_pk_free(&c->key);
    free(c);
}

void wsg_tls_acme_unref(struct wsg_tls_acme_cert *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        entry_free(c);
}

void wsg_tls_acme_free(struct wsg_tls_store *st)
{
    for (size_t i = 0; i < st->nacme; i++)
        wsg_tls_acme_unref(st->acme[i]);
    st->nacme = 0;
    pthread_mutex_destroy(&st->acme_lock);
}

/* What the extension callback saw. */
struct ext_seen {
    int acme_id; /* 0 absent, 1 good, -1 not critical, -2 bad value */
    int other_critical;
};

/* Called by mbedTLS for every extension it does not know. The acmeIdentifier's extnValue holds
 * Authorization ::= OCTET STRING (SIZE (32)) (RFC 8737 section 3). Any other critical extension
 * we do not know fails the parse, as it would for mbedTLS itself. */
static int ext_cb(void *p_ctx, mbedtls_x509_crt const *crt, mbedtls_x509_buf const *oid, int critical,
                  const unsigned char *p, const unsigned char *end)
{
    struct ext_seen *s = p_ctx;
    (void)crt;
    if (oid->len == sizeof(oid_acme_id) && memcmp(oid->p, oid_acme_id, sizeof(oid_acme_id)) == 0) {
        if (!critical)
            s->acme_id = -1;
        else if (end - p == 34 && p[0] == 0x04 && p[1] == 32)
            s->acme_id = 1;
        else
            s->acme_id = -2;
        return 0;
    }
    if (critical) {
        s->other_critical = 1;
        return MBEDTLS_ERR_X509_FEATURE_UNAVAILABLE;
    }
    return 0;
}

struct san_find {
    const char *name;
    int found;
};

static int san_match(void *arg, const char *name, size_t len, int is_ip, int from_cn)
{
    struct san_find *f = arg;
    if (!is_ip && !from_cn && strlen(f->name) == len && strncasecmp(f->name, name, len) == 0)
        f->found = 1;
    return 0;
}

/* Counts non-overlapping occurrences of needle in the NUL-terminated text. */
static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + nl, needle))
        n++;
    return n;
}

/* Parses and checks one challenge into c (crt and key initialised). 0, or -1 with err. */
static int parse_challenge(struct wsg_tls_store *st, struct wsg_tls_acme_cert *c, const char *text,
                           size_t len, char err[WSG_ERRLEN])
{
    char why[120];
    if (count_of(text, PEM_CERT_BEGIN) != 1) {
        snprintf(err, WSG_ERRLEN, "expected exactly one PEM certificate followed by its PEM private key");
        return -1;
    }
    mbedtls_pem_context pem;
    mbedtls_pem_init(&pem);
    size_t used = 0;
    int ret = mbedtls_pem_read_buffer(&pem, PEM_CERT_BEGIN, PEM_CERT_END, (const unsigned char *)text, NULL,
                                      0, &used);
    if (ret != 0) {
        mbedtls_strerror(ret, why, sizeof(why));
        snprintf(err, WSG_ERRLEN, "the certificate PEM does not parse: %s", why);
        mbedtls_pem_free(&pem);
        return -1;
    }
    size_t dlen;
    const unsigned char *der = mbedtls_pem_get_buffer(&pem, &dlen);
    struct ext_seen seen = {0, 0};
    ret = mbedtls_x509_crt_parse_der_with_ext_cb(&c->crt, der, dlen, 1, ext_cb, &seen);
    mbedtls_pem_free(&pem);
    if (ret != 0) {
        mbedtls_strerror(ret, why, sizeof(why));
        snprintf(err, WSG_ERRLEN, "the certificate does not parse: %s%s", why,
                 seen.other_critical ? " (an unknown critical extension)" : "");
        return -1;
    }
    if (seen.acme_id == 0) {
        snprintf(err, WSG_ERRLEN,
                 "the certificate lacks the acmeIdentifier extension (1.3.6.1.5.5.7.1.31, "
                 "RFC 8737 section 3)");
        return -1;
    }
    if (seen.acme_id == -1) {
        snprintf(err, WSG_ERRLEN,
                 "the certificate's acmeIdentifier extension is not critical (RFC 8737 "
                 "section 3)");
        return -1;
    }
    if (seen.acme_id == -2) {
        snprintf(err, WSG_ERRLEN,
                 "the certificate's acmeIdentifier extension is not an OCTET STRING of "
                 "32 bytes");
        return -1;
    }
    struct san_find f = {c->name, 0};
    wsg_tls_leaf_names(&c->crt, san_match, &f);
    if (!f.found) {
        snprintf(err, WSG_ERRLEN, "the certificate's subjectAltName does not hold the DNS name %.150s",
                 c->name);
        return -1;
    }
    /* The key: mbedTLS's PEM reader finds the key's own header anywhere in the text. */
    ret = mbedtls_pk_parse_key(&c->key, (const unsigned char *)text, len + 1, NULL, 0,
                               mbedtls_ctr_drbg_random, &st->drbg);
    if (ret != 0) {
        mbedtls_strerror(ret, why, sizeof(why));
        snprintf(err, WSG_ERRLEN, "the private key PEM does not parse: %s", why);
        return -1;
    }
    if (mbedtls_pk_check_pair(&c->crt.pk, &c->key, mbedtls_ctr_drbg_random, &st->drbg) != 0) {
        snprintf(err, WSG_ERRLEN, "the private key does not match the certificate");
        return -1;
    }
    return 0;
}

/* Index of name in the table, or -1; under acme_lock. */
static int find(const struct wsg_tls_store *st, const char *name, size_t len)
{
    for (size_t i = 0; i < st->nacme; i++)
        if (strlen(st->acme[i]->name) == len && strncasecmp(st->acme[i]->name, name, len) == 0)
            return (int)i;
    return -1;
}

int wsg_tls_acme_put(struct wsg_tls_store *st, const char *name, const char *pem, size_t len,
                     char err[WSG_ERRLEN])
{
    size_t nl = strlen(name);
    if (nl == 0 || nl >= sizeof(((struct wsg_tls_acme_cert *)0)->name)) {
        snprintf(err, WSG_ERRLEN, "bad name");
        return -1;
    }
    if (memchr(pem, '\0', len) != NULL) {
        snprintf(err, WSG_ERRLEN, "the body holds a NUL byte: expected PEM text");
        return -1;
    }
    struct wsg_tls_acme_cert *c = calloc(1, sizeof(*c));
    char *text = malloc(len + 1);
    if (c == NULL || text == NULL) {
        free(c);
        free(text);
        snprintf(err, WSG_ERRLEN, "out of memory");
        return -1;
    }
    memcpy(text, pem, len);
    text[len] = '\0';
    atomic_init(&c->refs, 1);
    for (size_t i = 0; i <= nl; i++)
        c->name[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] + 32) : name[i];
    mbedtls_x509_crt_init(&c->crt);
    mbedtls_pk_init(&c->key);
    int rc = parse_challenge(st, c, text, len, err);
    mbedtls_platform_zeroize(text, len);
    free(text);
    if (rc != 0) {
        entry_free(c);
        return -1;
    }
    struct wsg_tls_acme_cert *old = NULL;
    pthread_mutex_lock(&st->acme_lock);
    int i = find(st, c->name, nl);
    if (i >= 0) {
        old = st->acme[i];
        st->acme[i] = c;
        rc = 1;
    } else if (st->nacme < WSG_TLS_ACME_MAX) {
        st->acme[st->nacme++] = c;
    } else {
        rc = -2;
    }
    pthread_mutex_unlock(&st->acme_lock);
    wsg_tls_acme_unref(old);
    if (rc == -2) {
        entry_free(c);
        snprintf(err, WSG_ERRLEN, "already %d tls-alpn-01 challenges held", WSG_TLS_ACME_MAX);
    }
    return rc;
}

int wsg_tls_acme_delete(struct wsg_tls_store *st, const char *name)
{
    struct wsg_tls_acme_cert *old = NULL;
    pthread_mutex_lock(&st->acme_lock);
    int i = find(st, name, strlen(name));
    if (i >= 0) {
        old = st->acme[i];
        st->acme[i] = st->acme[--st->nacme];
    }
    pthread_mutex_unlock(&st->acme_lock);
    wsg_tls_acme_unref(old);
    return i >= 0 ? 0 : -1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void wsg_tls_acme_list(struct wsg_tls_store *st, void (*fn)(void *arg, const char *name), void *arg)
{
    char names[WSG_TLS_ACME_MAX][256];
    char *sorted[WSG_TLS_ACME_MAX];
    pthread_mutex_lock(&st->acme_lock);
    size_t n = st->nacme;
    for (size_t i = 0; i < n; i++) {
        memcpy(names[i], st->acme[i]->name, sizeof(names[i]));
        sorted[i] = names[i];
    }
    pthread_mutex_unlock(&st->acme_lock);
    qsort(sorted, n, sizeof(sorted[0]), cmp_names);
    for (size_t i = 0; i < n; i++)
        fn(arg, sorted[i]);
}

size_t wsg_tls_acme_count(struct wsg_tls_store *st)
{
    pthread_mutex_lock(&st->acme_lock);
    size_t n = st->nacme;
    pthread_mutex_unlock(&st->acme_lock);
    return n;
}

void wsg_tls_acme_stats(struct wsg_tls_store *st, uint64_t *served, uint64_t *unknown)
{
    *served = atomic_load(&st->acme_served);
    *unknown = atomic_load(&st->acme_unknown);
}

int wsg_tls_acme_cert_cb(mbedtls_ssl_context *ssl)
{
    const char *alpn = mbedtls_ssl_get_alpn_protocol(ssl);
    if (alpn == NULL || strcmp(alpn, WSG_TLS_ACME_ALPN) != 0)
        return 0; /* every other handshake: the SNI callback's choice stands */
    struct wsg_tls *t = mbedtls_ssl_get_user_data_p(ssl);
    if (t == NULL)
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    struct wsg_tls_store *st = wsg_tls_store_of(t);
    size_t len = 0;
    const unsigned char *sni = mbedtls_ssl_get_hs_sni(ssl, &len);
    struct wsg_tls_acme_cert *c = NULL;
    if (sni != NULL && len != 0 && memchr(sni, '\0', len) == NULL) {
        pthread_mutex_lock(&st->acme_lock);
        int i = find(st, (const char *)sni, len);
        if (i >= 0) {
            c = st->acme[i];
            atomic_fetch_add(&c->refs, 1);
        }
        pthread_mutex_unlock(&st->acme_lock);
    }
    if (c == NULL) {
        /* RFC 8737 section 3: nothing to prove for this name. Fail the handshake rather than
         * show the real certificate to a validator that asked for a challenge. */
        atomic_fetch_add(&st->acme_unknown, 1);
        mbedtls_ssl_send_alert_message(ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                       MBEDTLS_SSL_ALERT_MSG_UNRECOGNIZED_NAME);
        return MBEDTLS_ERR_SSL_UNRECOGNIZED_NAME;
    }
    wsg_tls_note_acme(t, c);
    atomic_fetch_add(&st->acme_served, 1);
    mbedtls_ssl_set_hs_own_cert(ssl, NULL, NULL); /* drop what the SNI callback chose */
    return mbedtls_ssl_set_hs_own_cert(ssl, &c->crt, &c->key);
}
