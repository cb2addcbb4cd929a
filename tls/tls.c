/*
 * tls.c - owns one connection's TLS state (struct wsg_tls: mbedtls_ssl_context over two caller
 * buffers, a generation reference, the SNI name, resumption tracking, the last error), the mbedTLS
 * BIO shims, and the per-thread CSPRNG (struct wsg_rng).
 *
 * The BIO callbacks only move bytes between mbedTLS and the buffers: bio_recv takes from cin,
 * bio_send appends to cout. wsg_tls_write only encrypts when cout has room for the whole record it
 * will produce, so bio_send never refuses bytes of an application record and mbedTLS's "call again
 * with the same arguments" rule never applies to writes.
 *
 * Resumption tracking (mbedTLS 3.6 has no public "was this session resumed" getter on a server):
 *  - TLS 1.2: resumption only happens through our tickets. store.c wraps mbedtls_ssl_ticket_parse;
 *    a successful parse is recorded on the connection whose handshake this thread is stepping
 *    (thread-local `stepping`, set around mbedtls_ssl_handshake/read). In TLS 1.2 a successful
 *    ticket parse always means an abbreviated handshake.
 *  - TLS 1.3: a parsed ticket can still be refused later (ticket age, binder, PSK mode), so the
 *    answer comes from the wire instead: bio_send looks at the plaintext ServerHello it passes
 *    along, and a pre_shared_key extension in it (RFC 8446 4.2.11) means the server accepted a PSK.
 *    We configure no external PSKs, so that PSK is always a resumption ticket.
 */
#include "tls/tls-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "policies/base/buf.h"

struct wsg_tls {
    mbedtls_ssl_context ssl;
    struct wsg_buf *cin, *cout;
    struct wsg_tls_gen *gen;
    struct wsg_tls_acme_cert *acme; /* the TLS-ALPN-01 challenge this handshake serves (acme.c) */
    char *sni;
    unsigned hs_done : 1;   /* handshake returned WSG_OK */
    unsigned ticket_ok : 1; /* a session ticket was accepted (TLS 1.2 resumption) */
    unsigned psk_hello : 1; /* our ServerHello carried pre_shared_key (TLS 1.3 resumption) */
    unsigned out_mid : 1;   /* the last bio_send was partial: the next one starts mid-record */
    unsigned set_up : 1;    /* mbedtls_ssl_setup done: on the first handshake step, once the
                               ClientHello's suite list is in, because the configuration (the
                               suites the server allows) depends on it */
    char err[128];
};

/* The connection whose handshake this thread is running: lets the ticket-parse callback, which
 * only sees the ticket context, reach the connection. */
static _Thread_local struct wsg_tls *stepping;

#define TLS_EXT_PRE_SHARED_KEY 41
#define FALLBACK_RESERVE (16384 + 256)

/* ---- BIO shims ---- */

/* Scans the plaintext handshake records in a chunk we are about to send for a ServerHello with the
 * pre_shared_key extension. mbedTLS hands f_send everything it has buffered, from the first byte of
 * a record; after a partial send it retries with the remainder, which bio_send does not scan. */
static void scan_server_hello(struct wsg_tls *t, const unsigned char *p, size_t len)
{
    while (len >= 5 && p[0] == MBEDTLS_SSL_MSG_HANDSHAKE) {
        size_t rec = ((size_t)p[3] << 8) | p[4];
        if (5 + rec > len)
            return;
        const unsigned char *m = p + 5;
        /* type(1) length(3) version(2) random(32) session_id(1+n) suite(2) compression(1) exts(2+n) */
        size_t i = 4 + 2 + 32;
        if (rec > i && m[0] == MBEDTLS_SSL_HS_SERVER_HELLO) {
            i += 1 + (size_t)m[i] + 2 + 1;
            if (i + 2 <= rec) {
                size_t end = i + 2 + (((size_t)m[i] << 8) | m[i + 1]);
                if (end > rec)
                    end = rec;
                for (i += 2; i + 4 <= end; i += 4 + (((size_t)m[i + 2] << 8) | m[i + 3]))
                    if ((((unsigned)m[i] << 8) | m[i + 1]) == TLS_EXT_PRE_SHARED_KEY)
                        t->psk_hello = 1;
            }
        }
        p += 5 + rec;
        len -= 5 + rec;
    }
}

static int bio_send(void *ctx, const unsigned char *src, size_t len)
{
    struct wsg_tls *t = ctx;
    if (!t->hs_done && !t->out_mid)
        scan_server_hello(t, src, len);
    size_t n = wsg_buf_put(t->cout, src, len);
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_WRITE; /* mbedTLS retries with the same bytes */
    t->out_mid = n < len;                  /* the next call starts mid-record: do not scan it */
    return (int)n;
}

static int bio_recv(void *ctx, unsigned char *dst, size_t len)
{
    struct wsg_tls *t = ctx;
    size_t n = wsg_buf_take(t->cin, dst, len);
    return n != 0 ? (int)n : MBEDTLS_ERR_SSL_WANT_READ;
}

/* ---- errors ---- */

static void set_error(struct wsg_tls *t, const char *what, int ret)
{
    char text[96];
    const char *why = text;
    switch (ret) {
    case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION:
        why = "unsupported protocol version (TLS 1.2 or 1.3 required)";
        break;
    case MBEDTLS_ERR_SSL_INVALID_RECORD:
        why = "invalid TLS record (not TLS, or plain HTTP on a TLS port?)";
        break;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
        why = "the client sent a fatal alert";
        break;
    case MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE:
        why = "no common cipher suite, group or signature algorithm";
        break;
    case MBEDTLS_ERR_SSL_INVALID_MAC:
        why = "bad record MAC";
        break;
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
        why = "out of memory";
        break;
    default:
        mbedtls_strerror(ret, text, sizeof(text));
        break;
    }
    snprintf(t->err, sizeof(t->err), "%s: %s (-0x%04x)", what, why, (unsigned)-ret);
}

/* ---- called from store.c ---- */

void wsg_tls_note_sni(struct wsg_tls *t, const unsigned char *name, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return; /* keep the old name (or none): losing the log detail beats failing */
    memcpy(copy, name, len);
    copy[len] = '\0';
    free(t->sni);
    t->sni = copy;
}

struct wsg_tls_store *wsg_tls_store_of(const struct wsg_tls *t)
{
    return t->gen->st;
}

void wsg_tls_note_acme(struct wsg_tls *t, struct wsg_tls_acme_cert *c)
{
    wsg_tls_acme_unref(t->acme);
    t->acme = c;
}

int wsg_tls_is_acme(const struct wsg_tls *t)
{
    return t->acme != NULL;
}

void wsg_tls_note_ticket(void)
{
    if (stepping != NULL)
        stepping->ticket_ok = 1;
}

/* ---- connections ---- */

struct wsg_tls *wsg_tls_new(struct wsg_tls_store *st, struct wsg_buf *cin, struct wsg_buf *cout)
{
    struct wsg_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->cin = cin;
    t->cout = cout;
    t->gen = wsg_tls_gen_acquire(st);
    mbedtls_ssl_init(&t->ssl);
    return t;
}

#define TLS_AES_128_GCM_SHA256 0x1301

int wsg_tls_hello_offers(const uint8_t *p, size_t len, uint16_t suite)
{
    /* record: type(1) version(2) length(2); handshake: type(1) length(3); ClientHello:
     * legacy_version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2> ... */
    if (len < 5)
        return WSG_AGAIN;
    if (p[0] != MBEDTLS_SSL_MSG_HANDSHAKE || p[1] != 3)
        return 0;
    size_t rec = ((size_t)p[3] << 8) | p[4];
    size_t end = 5 + rec; /* what this record can hold; the list must lie inside it */
    size_t i = 5 + 4 + 2 + 32;
    if (i + 1 > end)
        return 0;
    if (len < i + 1)
        return WSG_AGAIN;
    if (p[5] != MBEDTLS_SSL_HS_CLIENT_HELLO || p[i] > 32)
        return 0;
    i += 1 + p[i];
    if (i + 2 > end)
        return 0;
    if (len < i + 2)
        return WSG_AGAIN;
    size_t n = ((size_t)p[i] << 8) | p[i + 1];
    i += 2;
    if (n % 2 != 0 || i + n > end)
        return 0;
    if (len < i + n)
        return WSG_AGAIN;
    for (size_t k = 0; k < n; k += 2)
        if ((((unsigned)p[i + k] << 8) | p[i + k + 1]) == suite)
            return 1;
    return 0;
}

/* Binds the connection to its generation's configuration. With the server's cipher order, a
 * client that offers AES-128-GCM gets the configuration whose only TLS 1.3 suite it is:
 * mbedTLS 3.6 picks the first suite of the client's list the server allows, so this is how the
 * server's preference wins. @return WSG_OK, WSG_AGAIN (ClientHello incomplete), WSG_ERR. */
static int tls_setup(struct wsg_tls *t)
{
    const mbedtls_ssl_config *conf = &t->gen->conf;
    if (t->gen->has_fast) {
        uint32_t len;
        const uint8_t *p = wsg_buf_peek(t->cin, &len);
        int r = wsg_tls_hello_offers(p, len, TLS_AES_128_GCM_SHA256);
        if (r == WSG_AGAIN)
            return WSG_AGAIN;
        if (r == 1)
            conf = &t->gen->conf_fast;
    }
    int ret = mbedtls_ssl_setup(&t->ssl, conf);
    if (ret != 0) {
        set_error(t, "TLS setup", ret);
        return WSG_ERR;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    mbedtls_ssl_set_user_data_p(&t->ssl, t);
    t->set_up = 1;
    return WSG_OK;
}

void wsg_tls_free(struct wsg_tls *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    wsg_tls_acme_unref(t->acme); /* after mbedTLS, which may point at its certificate */
    wsg_tls_gen_release(t->gen);
    free(t->sni);
    free(t);
}

int wsg_tls_handshake(struct wsg_tls *t)
{
    int ret;
    if (!t->set_up && (ret = tls_setup(t)) != WSG_OK)
        return ret;
    stepping = t;
    do
        ret = mbedtls_ssl_handshake(&t->ssl);
    while (ret == MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA);
    stepping = NULL;
    switch (ret) {
    case 0:
        t->hs_done = 1;
        return WSG_OK;
    case MBEDTLS_ERR_SSL_WANT_READ:
    case MBEDTLS_ERR_SSL_WANT_WRITE:
    case MBEDTLS_ERR_SSL_ASYNC_IN_PROGRESS:
    case MBEDTLS_ERR_SSL_CRYPTO_IN_PROGRESS:
        return WSG_AGAIN;
    default:
        set_error(t, "TLS handshake", ret);
        return WSG_ERR;
    }
}

ssize_t wsg_tls_read(struct wsg_tls *t, void *dst, size_t len)
{
    if (len == 0)
        return WSG_AGAIN;
    if (!t->set_up) {
        int r = tls_setup(t);
        if (r != WSG_OK)
            return r;
    }
    /* No ciphertext waiting, nothing decrypted or half-read inside mbedTLS: nothing to do. A pump
     * asks once more after every step, and an mbedtls_ssl_read that ends in WANT_READ costs about
     * 800 instructions; this was three of them per echoed message. */
    if (t->hs_done && wsg_buf_len(t->cin) == 0 && mbedtls_ssl_get_bytes_avail(&t->ssl) == 0 &&
        !mbedtls_ssl_check_pending(&t->ssl))
        return WSG_AGAIN;
    for (int tries = 0; tries < 64; tries++) {
        uint32_t before = wsg_buf_len(t->cin);
        stepping = t;
        int ret = mbedtls_ssl_read(&t->ssl, dst, len);
        stepping = NULL;
        if (ret > 0) {
            t->hs_done = 1; /* also when the caller let mbedtls_ssl_read finish the handshake */
            return ret;
        }
        switch (ret) {
        case 0:
        case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
            return WSG_EOF;
        case MBEDTLS_ERR_SSL_WANT_READ:
            /* mbedTLS also says WANT_READ right after a non-application record (a TLS 1.3
             * post-handshake message, a warning alert) while more ciphertext waits in cin. */
            if (wsg_buf_len(t->cin) != 0 && wsg_buf_len(t->cin) < before)
                continue;
            return WSG_AGAIN;
        case MBEDTLS_ERR_SSL_WANT_WRITE:
        case MBEDTLS_ERR_SSL_ASYNC_IN_PROGRESS:
        case MBEDTLS_ERR_SSL_CRYPTO_IN_PROGRESS:
            return WSG_AGAIN;
        case MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET:
        case MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA:
            continue; /* informational: read again */
        default:
            set_error(t, "TLS read", ret);
            return WSG_ERR;
        }
    }
    return WSG_AGAIN; /* still progressing: cin is non-empty, so the caller's pump calls again */
}

size_t wsg_tls_pending(const struct wsg_tls *t)
{
    if (!t->set_up)
        return 0;
    return mbedtls_ssl_get_bytes_avail(&t->ssl);
}

static size_t expansion(const struct wsg_tls *t)
{
    int exp = t->hs_done ? mbedtls_ssl_get_record_expansion(&t->ssl) : -1;
    return exp >= 0 ? (size_t)exp : FALLBACK_RESERVE - 16384;
}

ssize_t wsg_tls_write(struct wsg_tls *t, const void *src, size_t len)
{
    if (len == 0)
        return 0;
    if (!t->set_up)
        return WSG_AGAIN; /* nothing can be sent before the handshake */
    int max = mbedtls_ssl_get_max_out_record_payload(&t->ssl);
    if (max <= 0) {
        set_error(t, "TLS write", max < 0 ? max : MBEDTLS_ERR_SSL_INTERNAL_ERROR);
        return WSG_ERR;
    }
    size_t n = len < (size_t)max ? len : (size_t)max;
    /* Room for the whole record this call produces: a full record for large writes, the exact
     * record for a short one. Never a record that cout could only take in part. */
    size_t room = wsg_buf_room(t->cout), exp = expansion(t);
    if (room < n + exp) {
        if (t->cout->cap >= n + exp || room <= exp)
            return WSG_AGAIN; /* wait until the record fits */
        n = room - exp;       /* cout can never hold this record: a smaller one, not a deadlock */
    }
    int ret = mbedtls_ssl_write(&t->ssl, src, n);
    if (ret > 0)
        return ret;
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        /* Only possible if output was already pending (e.g. a write before the handshake finished):
         * mbedTLS may have taken the bytes, so reporting AGAIN could duplicate or lose data. */
        snprintf(t->err, sizeof(t->err), "TLS write: blocked mid-record (cout full with output pending)");
        return WSG_ERR;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ)
        return WSG_AGAIN;
    set_error(t, "TLS write", ret);
    return WSG_ERR;
}

size_t wsg_tls_write_reserve(const struct wsg_tls *t)
{
    if (!t->hs_done)
        return FALLBACK_RESERVE;
    int max = mbedtls_ssl_get_max_out_record_payload(&t->ssl);
    return (max > 0 ? (size_t)max : 16384) + expansion(t);
}

void wsg_tls_close_notify(struct wsg_tls *t)
{
    if (t->set_up)
        (void)mbedtls_ssl_close_notify(&t->ssl); /* WANT_WRITE: cout full, the alert is dropped */
}

int wsg_tls_shrink(struct wsg_tls *t)
{
    if (!t->hs_done)
        return 0;
    return mbedtls_ssl_release_buffers(&t->ssl) == 0;
}

int wsg_tls_buffers_held(const struct wsg_tls *t)
{
    return t->hs_done && !mbedtls_ssl_buffers_released(&t->ssl);
}

const char *wsg_tls_sni(const struct wsg_tls *t)
{
    return t->sni;
}

const char *wsg_tls_version(const struct wsg_tls *t)
{
    if (!t->set_up)
        return "none"; /* no ClientHello yet: mbedTLS has no configuration to look at */
    return mbedtls_ssl_get_version(&t->ssl);
}

const char *wsg_tls_cipher(const struct wsg_tls *t)
{
    if (!t->set_up)
        return "none";
    const char *c = mbedtls_ssl_get_ciphersuite(&t->ssl);
    return c != NULL ? c : "none";
}

int wsg_tls_resumed(const struct wsg_tls *t)
{
    if (!t->hs_done)
        return 0;
    if (mbedtls_ssl_get_version_number(&t->ssl) == MBEDTLS_SSL_VERSION_TLS1_3)
        return t->psk_hello;
    return t->ticket_ok;
}

const char *wsg_tls_error(const struct wsg_tls *t)
{
    return t->err[0] != '\0' ? t->err : "no error";
}

/* ---- per-thread CSPRNG ---- */

/* Small requests (a frame's 4-byte masking key, every frame to the upstream) are served from a
 * pool drawn 512 bytes at a time: one CTR-DRBG call costs about 1,100 instructions whatever its
 * size up to a few hundred bytes. Served bytes are wiped from the pool. */
#define RNG_POOL 512
#define RNG_SMALL 32

struct wsg_rng {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    size_t pool_off; /* bytes of pool already served (RNG_POOL: empty) */
    uint8_t pool[RNG_POOL];
};

struct wsg_rng *wsg_rng_new(void)
{
    static const unsigned char pers[] = "wsgate rng";
    struct wsg_rng *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    mbedtls_entropy_init(&r->entropy);
    mbedtls_ctr_drbg_init(&r->drbg);
    if (mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy, pers, sizeof(pers) - 1) != 0) {
        wsg_rng_free(r);
        return NULL;
    }
    r->pool_off = RNG_POOL;
    return r;
}

int wsg_hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen, uint8_t out[32])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    return md != NULL && mbedtls_md_hmac(md, key, klen, msg, mlen, out) == 0 ? 0 : -1;
}

int wsg_rng_fill(struct wsg_rng *r, uint8_t *dst, size_t len)
{
    if (len <= RNG_SMALL) {
        if (RNG_POOL - r->pool_off < len) {
            if (mbedtls_ctr_drbg_random(&r->drbg, r->pool, RNG_POOL) != 0)
                return -1;
            r->pool_off = 0;
        }
        memcpy(dst, r->pool + r->pool_off, len);
        mbedtls_platform_zeroize(r->pool + r->pool_off, len);
        r->pool_off += len;
        return 0;
    }
    while (len != 0) {
        size_t n = len < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        if (mbedtls_ctr_drbg_random(&r->drbg, dst, n) != 0)
            return -1;
        dst += n;
        len -= n;
    }
    return 0;
}

void wsg_rng_free(struct wsg_rng *r)
{
    if (r == NULL)
        return;
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->entropy);
    mbedtls_platform_zeroize(r->pool, sizeof(r->pool));
    free(r);
}
