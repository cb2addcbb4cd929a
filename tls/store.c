/*
 * store.c - owns the TLS store (shared DRBG, ticket keys, current generation), certificate
 * generations (server config, chains, keys, SNI map, refcount), certificate loading with
 * readable errors, the SNI callback, and self-signed certificate generation.
 *
 * A generation is immutable once published. wsg_tls_new() takes a reference under the store
 * mutex; reload builds a whole new generation outside the mutex and swaps the pointer under it.
 * The last reference (the store's or a connection's) frees a generation. Published generations
 * sit on a list (under the mutex) until freed, each counting its connections, so that
 * wsg_tls_store_describe_json can say which generations are alive and how many connections
 * hold each. Reading and judging the files is check.c's (shared with wsgate-certs check).
 */
#include "tls/tls-int.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509.h>
#include <psa/crypto.h>

/*
 * TLS 1.3 suites first: mbedTLS 3.6 takes the first suite of the client's list that is in ours, so
 * their order here does not matter; the server's preference is made by offering AES-128-GCM
 * alone to a client that offers it (conf_fast, see tls_setup in tls.c). Then TLS 1.2, AEAD ECDHE
 * only, where the order here is the server's (mbedTLS's TLS 1.2 server follows its own list).
 * AES-128-GCM first: with the nettle PSA driver under mbedTLS it is the fastest AEAD of this build
 * (bench/mbedtls_raw, one core, encrypt+decrypt: 1,082 MB/s with 256 KiB writes and 402 MB/s with
 * 1 KiB writes, against 996 and 379 for AES-256-GCM and 207 and 145 for ChaCha20-Poly1305, which
 * stays on mbedTLS's portable C).
 */
#define TLS12_SUITES                                                                                         \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,        \
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,                                               \
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,        \
        MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
#define TLS13_SUITES_ALL                                                                                     \
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256, MBEDTLS_TLS1_3_AES_256_GCM_SHA384,                                    \
        MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256

static const int suites_all[] = {TLS13_SUITES_ALL, TLS12_SUITES, 0};
static const int suites_fast13[] = {MBEDTLS_TLS1_3_AES_128_GCM_SHA256, TLS12_SUITES, 0};

static const uint16_t groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
};

/* http/1.1 first: the server's order decides (mbedtls_ssl_parse_alpn_ext), so only a client that
 * offers acme-tls/1 without http/1.1 negotiates it (RFC 8737 section 4: the validator offers it
 * alone). Such a handshake is served a pushed challenge or fails (acme.c). */
static const char *alpn[] = {"http/1.1", WSG_TLS_ACME_ALPN, NULL};

#define TLS13_MAX_TICKET_LIFETIME 604800u /* RFC 8446 4.6.1: at most seven days */
#define SELFSIGNED_DAYS 365u

__attribute__((format(printf, 2, 3))) static void fail(char err[WSG_ERRLEN], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, WSG_ERRLEN, fmt, ap);
    va_end(ap);
}

static const char *mbed_text(int ret, char *buf, size_t len)
{
    mbedtls_strerror(ret, buf, len);
    return buf;
}

/* ---- generations ---- */

static void gen_free(struct wsg_tls_gen *g)
{
    struct wsg_tls_store *st = g->st;
    pthread_mutex_lock(&st->lock);
    if (g->prev != NULL)
        g->prev->next = g->next;
    else if (st->gens == g)
        st->gens = g->next;
    if (g->next != NULL)
        g->next->prev = g->prev;
    pthread_mutex_unlock(&st->lock);
    for (size_t i = 0; i < g->nnames; i++)
        free(g->names[i].name);
    free(g->names);
    for (size_t i = 0; i < g->ncerts; i++) {
        mbedtls_x509_crt_free(&g->certs[i].chain);
        mbedtls_pk_free(&g->certs[i].key);
        free(g->certs[i].path);
    }
    free(g->certs);
    mbedtls_ssl_config_free(&g->conf);
    mbedtls_ssl_config_free(&g->conf_fast);
    atomic_fetch_sub(&st->live, 1);
    free(g);
}

/* Drops a reference that is not a connection's (the store's, describe's). */
static void gen_unref(struct wsg_tls_gen *g)
{
    if (g != NULL && atomic_fetch_sub(&g->refs, 1) == 1)
        gen_free(g);
}

/* Makes g current, under the lock; returns the previous one (whose store reference the caller drops). */
static struct wsg_tls_gen *gen_publish(struct wsg_tls_store *st, struct wsg_tls_gen *g)
{
    pthread_mutex_lock(&st->lock);
    struct wsg_tls_gen *old = st->current;
    g->number = ++st->last_number;
    g->next = st->gens;
    if (st->gens != NULL)
        st->gens->prev = g;
    st->gens = g;
    st->current = g;
    atomic_store(&st->number, g->number);
    pthread_mutex_unlock(&st->lock);
    return old;
}

struct wsg_tls_gen *wsg_tls_gen_acquire(struct wsg_tls_store *st)
{
    pthread_mutex_lock(&st->lock);
    struct wsg_tls_gen *g = st->current;
    atomic_fetch_add(&g->refs, 1);
    atomic_fetch_add(&g->conns, 1);
    pthread_mutex_unlock(&st->lock);
    return g;
}

void wsg_tls_gen_release(struct wsg_tls_gen *g)
{
    if (g == NULL)
        return;
    atomic_fetch_sub(&g->conns, 1);
    gen_unref(g);
}

/* ---- SNI map ---- */

static int add_name(struct wsg_tls_gen *g, const unsigned char *s, size_t len, struct wsg_tls_cert *c)
{
    if (len == 0 || memchr(s, '\0', len) != NULL)
        return 0; /* nothing a client could match */
    struct wsg_tls_name *n = realloc(g->names, (g->nnames + 1) * sizeof(*n));
    if (n == NULL)
        return -1;
    g->names = n;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        copy[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : (char)s[i];
    copy[len] = '\0';
    g->names[g->nnames++] = (struct wsg_tls_name){copy, c};
    return 0;
}

struct name_sink {
    struct wsg_tls_gen *g;
    struct wsg_tls_cert *c;
};

static int add_leaf_name(void *arg, const char *name, size_t len, int is_ip, int from_cn)
{
    const struct name_sink *k = arg;
    (void)from_cn;
    if (is_ip)
        return 0; /* SNI carries host names only (RFC 6066 3) */
    return add_name(k->g, (const unsigned char *)name, len, k->c);
}

/* The names the leaf serves (check.c's rules: subjectAltName DNS entries, else the CN). */
static int collect_names(struct wsg_tls_gen *g, struct wsg_tls_cert *c)
{
    struct name_sink k = {g, c};
    return wsg_tls_leaf_names(&c->chain, add_leaf_name, &k);
}

static int name_eq(const char *a, const unsigned char *b, size_t len)
{
    return strlen(a) == len && strncasecmp(a, (const char *)b, len) == 0;
}

/* Exact name first, then a wildcard covering exactly the first label, else the default. */
static struct wsg_tls_cert *sni_lookup(const struct wsg_tls_gen *g, const unsigned char *host, size_t len)
{
    if (memchr(host, '\0', len) != NULL)
        return &g->certs[0];
    for (size_t i = 0; i < g->nnames; i++)
        if (name_eq(g->names[i].name, host, len))
            return g->names[i].cert;
    const unsigned char *dot = memchr(host, '.', len);
    if (dot != NULL && dot != host) {
        size_t rest = len - (size_t)(dot - host); /* ".b.test" */
        for (size_t i = 0; i < g->nnames; i++) {
            const char *n = g->names[i].name;
            if (n[0] == '*' && n[1] == '.' && name_eq(n + 1, dot, rest))
                return g->names[i].cert;
        }
    }
    return &g->certs[0];
}

/* Never fails a handshake over a name: unknown or odd names get the default pair. */
static int sni_cb(void *p, mbedtls_ssl_context *ssl, const unsigned char *host, size_t len)
{
    struct wsg_tls_gen *g = p;
    struct wsg_tls *t = mbedtls_ssl_get_user_data_p(ssl);
    if (t != NULL)
        wsg_tls_note_sni(t, host, len);
    struct wsg_tls_cert *c = sni_lookup(g, host, len);
    return mbedtls_ssl_set_hs_own_cert(ssl, &c->chain, &c->key);
}

/* Ticket parse as mbedTLS does it, plus a note that this handshake accepted a ticket. */
static int ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    int ret = mbedtls_ssl_ticket_parse(p, session, buf, len);
    if (ret == 0)
        wsg_tls_note_ticket();
    return ret;
}

/* ---- loading pairs ---- */

/* The key matches the leaf and every certificate in the file is inside its validity window. */
static int check_pair(struct wsg_tls_store *st, struct wsg_tls_cert *c, const char *cert_name,
                      const char *key_name, char err[WSG_ERRLEN])
{
    if (wsg_tls_key_matches(&c->chain, &c->key, &st->drbg, cert_name, key_name, err) != 0)
        return -1;
    time_t now = time(NULL);
    int depth = 0;
    for (const mbedtls_x509_crt *x = &c->chain; x != NULL && x->raw.p != NULL; x = x->next, depth++)
        if (wsg_tls_cert_validity(x, depth, cert_name, now, err) != 0)
            return -1;
    return 0;
}

static int load_files(struct wsg_tls_store *st, struct wsg_tls_cert *c, const struct wsg_tls_pair *p,
                      char err[WSG_ERRLEN])
{
    if (p->cert_path == NULL || p->key_path == NULL) {
        fail(err, "certificate pair without %s path", p->cert_path == NULL ? "a certificate" : "a key");
        return -1;
    }
    if (wsg_tls_load_chain(&c->chain, p->cert_path, err) != 0 ||
        wsg_tls_load_key(&c->key, p->key_path, &st->drbg, err) != 0)
        return -1;
    if ((c->path = strdup(p->cert_path)) == NULL) {
        fail(err, "TLS generation: out of memory");
        return -1;
    }
    return check_pair(st, c, p->cert_path, p->key_path, err);
}

static int load_generated(struct wsg_tls_store *st, struct wsg_tls_cert *c, const struct wsg_tls_settings *s,
                          char err[WSG_ERRLEN])
{
    static const char *const fallback[] = {"localhost", "127.0.0.1", "::1"};
    const char *const *names = s->ngen_names != 0 ? s->gen_names : fallback;
    size_t nnames = s->ngen_names != 0 ? s->ngen_names : sizeof(fallback) / sizeof(fallback[0]);
    enum { CERT_CAP = 8192, KEY_CAP = 1024 };
    char *cert = malloc(CERT_CAP), *key = malloc(KEY_CAP), text[160];
    int rc = -1, ret;
    if (cert == NULL || key == NULL) {
        fail(err, "self-signed certificate: out of memory");
        goto out;
    }
    if (wsg_tls_gen_selfsigned(names, nnames, SELFSIGNED_DAYS, cert, CERT_CAP, key, KEY_CAP, err) != 0)
        goto out;
    ret = mbedtls_x509_crt_parse(&c->chain, (const unsigned char *)cert, strlen(cert) + 1);
    if (ret != 0) {
        fail(err, "self-signed certificate: cannot parse: %s", mbed_text(ret, text, sizeof(text)));
        goto out;
    }
    ret = mbedtls_pk_parse_key(&c->key, (const unsigned char *)key, strlen(key) + 1, NULL, 0,
                               mbedtls_ctr_drbg_random, &st->drbg);
    if (ret != 0) {
        fail(err, "self-signed key: cannot parse: %s", mbed_text(ret, text, sizeof(text)));
        goto out;
    }
    rc = check_pair(st, c, "self-signed certificate", "self-signed key", err);
out:
    if (key != NULL)
        mbedtls_platform_zeroize(key, KEY_CAP);
    free(cert);
    free(key);
    return rc;
}

static int setup_conf(struct wsg_tls_store *st, struct wsg_tls_gen *g, mbedtls_ssl_config *conf,
                      const int *suites, int file_keys, char err[WSG_ERRLEN])
{
    char text[160];
    int ret = mbedtls_ssl_config_defaults(conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0)
        ret = mbedtls_ssl_conf_alpn_protocols(conf, alpn);
    if (ret == 0)
        ret = mbedtls_ssl_conf_own_cert(conf, &g->certs[0].chain, &g->certs[0].key);
    if (ret != 0) {
        fail(err, "TLS configuration: %s", mbed_text(ret, text, sizeof(text)));
        return -1;
    }
    mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &st->drbg);
    mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_conf_ciphersuites(conf, suites);
    mbedtls_ssl_conf_groups(conf, groups);
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_tls13_key_exchange_modes(conf, MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL |
                                                        MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL);
    mbedtls_ssl_conf_sni(conf, sni_cb, g);
    mbedtls_ssl_conf_cert_cb(conf, wsg_tls_acme_cert_cb);
    if (st->tickets && file_keys)
        mbedtls_ssl_conf_session_tickets_cb(conf, wsg_ticket_write, wsg_ticket_parse, st);
    else if (st->tickets)
        mbedtls_ssl_conf_session_tickets_cb(conf, mbedtls_ssl_ticket_write, ticket_parse, &st->ticket);
    else
        mbedtls_ssl_conf_new_session_tickets(conf, 0);
    return 0;
}

static struct wsg_tls_gen *gen_build(struct wsg_tls_store *st, const struct wsg_tls_settings *s,
                                     char err[WSG_ERRLEN])
{
    struct wsg_tls_gen *g = calloc(1, sizeof(*g));
    size_t n = s->npairs != 0 ? s->npairs : 1;
    if (g == NULL || (g->certs = calloc(n, sizeof(*g->certs))) == NULL) {
        free(g);
        fail(err, "TLS generation: out of memory");
        return NULL;
    }
    atomic_init(&g->refs, 1);
    atomic_init(&g->conns, 0);
    atomic_fetch_add(&st->live, 1);
    g->st = st;
    mbedtls_ssl_config_init(&g->conf);
    mbedtls_ssl_config_init(&g->conf_fast);
    g->ncerts = n;
    for (size_t i = 0; i < n; i++) {
        mbedtls_x509_crt_init(&g->certs[i].chain);
        mbedtls_pk_init(&g->certs[i].key);
    }
    for (size_t i = 0; i < n; i++) {
        int ret = s->npairs != 0 ? load_files(st, &g->certs[i], &s->pairs[i], err)
                                 : load_generated(st, &g->certs[i], s, err);
        if (ret != 0)
            goto fail;
        if (collect_names(g, &g->certs[i]) != 0) {
            fail(err, "TLS generation: out of memory");
            goto fail;
        }
    }
    int server_order = s->cipher_order == WSG_TLS_ORDER_SERVER;
    int file_keys = s->ticket_key_file != NULL && s->ticket_key_file[0] != '\0';
    if (setup_conf(st, g, &g->conf, suites_all, file_keys, err) != 0)
        goto fail;
    if (server_order) {
        if (setup_conf(st, g, &g->conf_fast, suites_fast13, file_keys, err) != 0)
            goto fail;
        g->has_fast = 1;
    }
    return g;
fail:
    gen_free(g);
    return NULL;
}

/* ---- the store ---- */

int wsg_tls_store_new(struct wsg_tls_store **out, const struct wsg_tls_settings *s, char err[WSG_ERRLEN])
{
    static const unsigned char pers[] = "wsgate tls store";
    char text[160];
    *out = NULL;
    psa_status_t ps = psa_crypto_init();
    if (ps != PSA_SUCCESS) {
        fail(err, "PSA crypto initialisation failed (%d)", (int)ps);
        return -1;
    }
    struct wsg_tls_store *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        fail(err, "TLS store: out of memory");
        return -1;
    }
    mbedtls_entropy_init(&st->entropy);
    mbedtls_ctr_drbg_init(&st->drbg);
    mbedtls_ssl_ticket_init(&st->ticket);
    pthread_mutex_init(&st->lock, NULL);
    wsg_tls_acme_init(st);
    atomic_init(&st->live, 0);
    atomic_init(&st->number, 0);
    int ret = mbedtls_ctr_drbg_seed(&st->drbg, mbedtls_entropy_func, &st->entropy, pers, sizeof(pers) - 1);
    if (ret != 0) {
        fail(err, "cannot seed the random generator: %s", mbed_text(ret, text, sizeof(text)));
        goto fail;
    }
    if (s->ticket_lifetime != 0) {
        uint32_t life =
            s->ticket_lifetime < TLS13_MAX_TICKET_LIFETIME ? s->ticket_lifetime : TLS13_MAX_TICKET_LIFETIME;
        ret = mbedtls_ssl_ticket_setup(&st->ticket, mbedtls_ctr_drbg_random, &st->drbg,
                                       MBEDTLS_CIPHER_AES_256_GCM, life);
        if (ret != 0) {
            fail(err, "session tickets: %s", mbed_text(ret, text, sizeof(text)));
            goto fail;
        }
        st->tickets = 1;
        st->ticket_lifetime = life;
        if (s->ticket_key_file != NULL && s->ticket_key_file[0] != '\0' &&
            (st->tkeys = wsg_ticket_keyset_load(s->ticket_key_file, err)) == NULL)
            goto fail;
    }
    struct wsg_tls_gen *g = gen_build(st, s, err);
    if (g == NULL)
        goto fail;
    gen_publish(st, g);
    *out = st;
    return 0;
fail:
    wsg_tls_store_free(st);
    return -1;
}

/* The ticket keys are read again first: a bad key file refuses the reload like a bad certificate.
 * Generations built without a key file keep the store's per-process keys; the last key set
 * loaded stays for the connections of older generations that still use it. */
int wsg_tls_store_reload(struct wsg_tls_store *st, const struct wsg_tls_settings *s, char err[WSG_ERRLEN])
{
    struct wsg_ticket_keyset *ks = NULL;
    if (st->tickets && s->ticket_key_file != NULL && s->ticket_key_file[0] != '\0' &&
        (ks = wsg_ticket_keyset_load(s->ticket_key_file, err)) == NULL)
        return -1;
    struct wsg_tls_gen *g = gen_build(st, s, err);
    if (g == NULL) {
        wsg_ticket_keyset_unref(ks);
        return -1;
    }
    if (ks != NULL) {
        pthread_mutex_lock(&st->lock);
        struct wsg_ticket_keyset *old = st->tkeys;
        st->tkeys = ks;
        pthread_mutex_unlock(&st->lock);
        wsg_ticket_keyset_unref(old);
    }
    gen_unref(gen_publish(st, g));
    return 0;
}

unsigned wsg_tls_store_ticket_keys(struct wsg_tls_store *st)
{
    pthread_mutex_lock(&st->lock);
    unsigned n = (unsigned)wsg_ticket_keyset_count(st->tkeys);
    pthread_mutex_unlock(&st->lock);
    return n;
}

void wsg_tls_store_free(struct wsg_tls_store *st)
{
    if (st == NULL)
        return;
    gen_unref(st->current);
    st->current = NULL;
    wsg_ticket_keyset_unref(st->tkeys);
    st->tkeys = NULL;
    wsg_tls_acme_free(st);
    mbedtls_ssl_ticket_free(&st->ticket);
    mbedtls_ctr_drbg_free(&st->drbg);
    mbedtls_entropy_free(&st->entropy);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

unsigned wsg_tls_store_generation(const struct wsg_tls_store *st)
{
    return atomic_load(&st->number);
}

unsigned wsg_tls_store_live_generations(const struct wsg_tls_store *st)
{
    return atomic_load(&st->live);
}

/* ---- describing the store (GET /certs) ---- */

static void json_str(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void json_time(FILE *out, time_t t)
{
    struct tm tm;
    char buf[32];
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        fputs("null", out);
    else
        fprintf(out, "\"%s\"", buf);
}

struct json_names {
    FILE *out;
    int n;
};

static int json_name(void *arg, const char *name, size_t len, int is_ip, int from_cn)
{
    struct json_names *j = arg;
    (void)is_ip;
    (void)from_cn;
    if (j->n++ != 0)
        fputc(',', j->out);
    json_str(j->out, name, len);
    return 0;
}

struct gen_row {
    unsigned number, conns;
};

void wsg_tls_store_describe_json(struct wsg_tls_store *st, FILE *out)
{
    /* A snapshot under the lock: the current generation (referenced, so it outlives a concurrent
     * reload while we print it) and every live generation's number and connection count. */
    struct gen_row rows[64];
    size_t nrows = 0, more = 0;
    pthread_mutex_lock(&st->lock);
    struct wsg_tls_gen *g = st->current;
    atomic_fetch_add(&g->refs, 1);
    for (const struct wsg_tls_gen *x = st->gens; x != NULL; x = x->next) {
        if (nrows == sizeof(rows) / sizeof(rows[0])) {
            more++;
            continue;
        }
        rows[nrows++] = (struct gen_row){x->number, atomic_load(&x->conns)};
    }
    pthread_mutex_unlock(&st->lock);

    time_t now = time(NULL);
    unsigned total = 0;
    for (size_t i = 0; i < nrows; i++)
        total += rows[i].conns;
    fprintf(out, "{\"generation\":%u,\"live_generations\":%u,\"connections\":%u,\"generations\":[", g->number,
            atomic_load(&st->live), total);
    for (size_t i = 0; i < nrows; i++)
        fprintf(out, "%s{\"generation\":%u,\"current\":%s,\"connections\":%u}", i != 0 ? "," : "",
                rows[i].number, rows[i].number == g->number ? "true" : "false", rows[i].conns);
    fprintf(out, "],\"generations_not_listed\":%zu,\"certificates\":[", more);
    for (size_t i = 0; i < g->ncerts; i++) {
        const mbedtls_x509_crt *leaf = &g->certs[i].chain;
        char subject[256], sha256[96];
        if (mbedtls_x509_dn_gets(subject, sizeof(subject), &leaf->subject) < 0)
            subject[0] = '\0';
        wsg_tls_fingerprint(leaf, sha256);
        time_t not_before = wsg_tls_x509_epoch(&leaf->valid_from);
        time_t not_after = wsg_tls_x509_epoch(&leaf->valid_to);
        fprintf(out, "%s{\"cert\":", i != 0 ? "," : "");
        if (g->certs[i].path != NULL)
            json_str(out, g->certs[i].path, strlen(g->certs[i].path));
        else
            fputs("null", out);
        fprintf(out, ",\"default\":%s,\"names\":[", i == 0 ? "true" : "false");
        struct json_names j = {out, 0};
        wsg_tls_leaf_names(leaf, json_name, &j);
        fputs("],\"subject\":", out);
        json_str(out, subject, strlen(subject));
        fputs(",\"fingerprint_sha256\":", out);
        json_str(out, sha256, strlen(sha256));
        fputs(",\"not_before\":", out);
        json_time(out, not_before);
        fputs(",\"not_after\":", out);
        json_time(out, not_after);
        fprintf(out, ",\"seconds_left\":%lld}", (long long)not_after - (long long)now);
    }
    fputs("]}\n", out);
    gen_unref(g);
}

void wsg_tls_store_expiry(struct wsg_tls_store *st,
                          void (*fn)(void *arg, const char *name, double seconds_left), void *arg)
{
    pthread_mutex_lock(&st->lock);
    struct wsg_tls_gen *g = st->current;
    atomic_fetch_add(&g->refs, 1);
    pthread_mutex_unlock(&st->lock);
    time_t now = time(NULL);
    for (size_t i = 0; i < g->nnames; i++)
        fn(arg, g->names[i].name,
           (double)wsg_tls_x509_epoch(&g->names[i].cert->chain.valid_to) - (double)now);
    gen_unref(g);
}

/* ---- self-signed certificates ---- */

int wsg_tls_cn_subject(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    const char *prefix = "CN=";
    for (const char *p = prefix; *p != '\0'; p++)
        out[o++] = *p;
    for (const char *p = name; *p != '\0'; p++) {
        if (o + 3 > cap)
            return -1;
        if (strchr(",=+<>#;\\\"", *p) != NULL)
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o] = '\0';
    return 0;
}

int wsg_tls_utc_stamp(time_t when, char out[16])
{
    struct tm tm;
    if (gmtime_r(&when, &tm) == NULL || tm.tm_year + 1900 > 9999)
        return -1;
    return strftime(out, 16, "%Y%m%d%H%M%S", &tm) == 14 ? 0 : -1;
}

struct selfsigned {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_x509_san_list *san;
    unsigned char (*ip)[16];
};

static int selfsigned_build(struct selfsigned *w, const char *const *names, size_t nnames, unsigned days,
                            char err[WSG_ERRLEN])
{
    static const unsigned char pers[] = "wsgate self-signed";
    char text[160], subject[300], from[16], to[16];
    unsigned char serial[16];
    int ret;
#define CHECK(what, call)                                                                                    \
    do {                                                                                                     \
        if ((ret = (call)) != 0) {                                                                           \
            fail(err, "self-signed certificate: %s: %s", what, mbed_text(ret, text, sizeof(text)));          \
            return -1;                                                                                       \
        }                                                                                                    \
    } while (0)

    CHECK("seeding the random generator",
          mbedtls_ctr_drbg_seed(&w->drbg, mbedtls_entropy_func, &w->entropy, pers, sizeof(pers) - 1));
    CHECK("key setup", mbedtls_pk_setup(&w->key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)));
    CHECK("key generation", mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(w->key),
                                                mbedtls_ctr_drbg_random, &w->drbg));
    if (wsg_tls_cn_subject(names[0], subject, sizeof(subject)) != 0) {
        fail(err, "self-signed certificate: name too long: %.40s...", names[0]);
        return -1;
    }
    time_t now = time(NULL);
    if (wsg_tls_utc_stamp(now - 86400, from) != 0 || wsg_tls_utc_stamp(now + (time_t)days * 86400, to) != 0) {
        fail(err, "self-signed certificate: validity of %u days is out of range", days);
        return -1;
    }
    CHECK("serial", mbedtls_ctr_drbg_random(&w->drbg, serial, sizeof(serial)));
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40); /* positive, no leading zero byte */

    mbedtls_x509write_crt_set_version(&w->crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w->crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w->crt, &w->key);
    mbedtls_x509write_crt_set_issuer_key(&w->crt, &w->key);
    CHECK("subject", mbedtls_x509write_crt_set_subject_name(&w->crt, subject));
    CHECK("issuer", mbedtls_x509write_crt_set_issuer_name(&w->crt, subject));
    CHECK("serial", mbedtls_x509write_crt_set_serial_raw(&w->crt, serial, sizeof(serial)));
    CHECK("validity", mbedtls_x509write_crt_set_validity(&w->crt, from, to));
    CHECK("basic constraints", mbedtls_x509write_crt_set_basic_constraints(&w->crt, 0, -1));
    CHECK("key usage", mbedtls_x509write_crt_set_key_usage(&w->crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE));

    mbedtls_asn1_sequence eku;
    memset(&eku, 0, sizeof(eku));
    eku.buf.tag = MBEDTLS_ASN1_OID;
    eku.buf.p = (unsigned char *)MBEDTLS_OID_SERVER_AUTH;
    eku.buf.len = MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH);
    CHECK("extended key usage", mbedtls_x509write_crt_set_ext_key_usage(&w->crt, &eku));

    w->san = calloc(nnames, sizeof(*w->san));
    w->ip = calloc(nnames, sizeof(*w->ip));
    if (w->san == NULL || w->ip == NULL) {
        fail(err, "self-signed certificate: out of memory");
        return -1;
    }
    for (size_t i = 0; i < nnames; i++) {
        mbedtls_x509_subject_alternative_name *node = &w->san[i].node;
        if (names[i] == NULL || names[i][0] == '\0') {
            fail(err, "self-signed certificate: empty name #%zu", i + 1);
            return -1;
        }
        if (inet_pton(AF_INET, names[i], w->ip[i]) == 1) {
            node->type = MBEDTLS_X509_SAN_IP_ADDRESS;
            node->san.unstructured_name.p = w->ip[i];
            node->san.unstructured_name.len = 4;
        } else if (inet_pton(AF_INET6, names[i], w->ip[i]) == 1) {
            node->type = MBEDTLS_X509_SAN_IP_ADDRESS;
            node->san.unstructured_name.p = w->ip[i];
            node->san.unstructured_name.len = 16;
        } else {
            node->type = MBEDTLS_X509_SAN_DNS_NAME;
            node->san.unstructured_name.p = (unsigned char *)(uintptr_t)names[i];
            node->san.unstructured_name.len = strlen(names[i]);
        }
        w->san[i].next = i + 1 < nnames ? &w->san[i + 1] : NULL;
    }
    CHECK("subjectAltName", mbedtls_x509write_crt_set_subject_alternative_name(&w->crt, w->san));
#undef CHECK
    return 0;
}

int wsg_tls_gen_selfsigned(const char *const *names, size_t nnames, unsigned days, char *cert_pem,
                           size_t cert_cap, char *key_pem, size_t key_cap, char err[WSG_ERRLEN])
{
    char text[160];
    int rc = -1, ret;
    if (names == NULL || nnames == 0) {
        fail(err, "self-signed certificate: no names given");
        return -1;
    }
    if (days == 0) {
        fail(err, "self-signed certificate: validity must be at least one day");
        return -1;
    }
    psa_status_t ps = psa_crypto_init();
    if (ps != PSA_SUCCESS) {
        fail(err, "PSA crypto initialisation failed (%d)", (int)ps);
        return -1;
    }
    struct selfsigned w;
    memset(&w, 0, sizeof(w));
    mbedtls_entropy_init(&w.entropy);
    mbedtls_ctr_drbg_init(&w.drbg);
    mbedtls_pk_init(&w.key);
    mbedtls_x509write_crt_init(&w.crt);
    if (selfsigned_build(&w, names, nnames, days, err) != 0)
        goto out;
    ret = mbedtls_x509write_crt_pem(&w.crt, (unsigned char *)cert_pem, cert_cap, mbedtls_ctr_drbg_random,
                                    &w.drbg);
    if (ret != 0) {
        fail(err, "self-signed certificate: writing PEM: %s", mbed_text(ret, text, sizeof(text)));
        goto out;
    }
    ret = mbedtls_pk_write_key_pem(&w.key, (unsigned char *)key_pem, key_cap);
    if (ret != 0) {
        fail(err, "self-signed key: writing PEM: %s", mbed_text(ret, text, sizeof(text)));
        goto out;
    }
    rc = 0;
out:
    free(w.san);
    free(w.ip);
    mbedtls_x509write_crt_free(&w.crt);
    mbedtls_pk_free(&w.key);
    mbedtls_ctr_drbg_free(&w.drbg);
    mbedtls_entropy_free(&w.entropy);
    return rc;
}
