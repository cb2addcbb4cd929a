/*
 * tickets.c - session-ticket keys shared by a fleet: the ticket_key_file reader and the ticket
 * write/parse callbacks that use its keys (mbedtls_ssl_ticket_write_t / _parse_t).
 *
 * Several gateways behind one L4 balancer must accept each other's tickets, so the keys come from
 * a file the operator distributes, not from each process's random generator. The file holds one
 * base64 line per key (blank lines ignored), each 80 random bytes, newest first: the first key
 * encrypts new tickets, every key decrypts. The 80 bytes are laid out as nginx's 80-byte
 * ssl_session_ticket_key files, so one file can serve both:
 *
 *     bytes  0..15  key name: written in clear at the head of each ticket, selects the key
 *     bytes 16..47  nginx's HMAC-SHA256 key; unused here (AES-GCM authenticates by itself)
 *     bytes 48..79  the AES-256-GCM key
 *
 * A ticket is  name[16] | iv[12] | len[2] | AES-256-GCM(session state)[len] | tag[16],  the first
 * 30 bytes being the additional data, and the state being mbedtls_ssl_session_save()'s
 * serialisation (mbedTLS's own ssl_ticket.c layout, with a 16-byte name instead of 4). IVs are
 * random (the store's DRBG): with 2^32 tickets per key the collision chance stays negligible, and
 * keys are meant to rotate daily (`wsgate-certs tickets new`).
 *
 * A key set is immutable and reference-counted: a reload builds a new one and swaps the store's
 * pointer under the store mutex; a handshake holds a reference only while it encrypts or decrypts.
 */
#include "tls/tls-int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>
#include <psa/crypto.h>

#define NAME_BYTES 16
#define AES_OFF 48
#define IV_BYTES 12
#define LEN_BYTES 2
#define TAG_BYTES 16
#define AAD_BYTES (NAME_BYTES + IV_BYTES + LEN_BYTES)
#define MIN_TICKET (AAD_BYTES + TAG_BYTES)
#define MAX_FILE (64 * 1024)

struct wsg_ticket_keyset {
    atomic_uint refs;
    size_t n;
    uint8_t name[WSG_TICKET_MAX_KEYS][NAME_BYTES];
    psa_key_id_t key[WSG_TICKET_MAX_KEYS];
};

__attribute__((format(printf, 2, 3))) static void fail(char err[WSG_ERRLEN], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, WSG_ERRLEN, fmt, ap);
    va_end(ap);
}

int wsg_tls_ticket_keys_parse(const char *path, const char *text, size_t len,
                              uint8_t keys[][WSG_TICKET_KEY_BYTES], size_t max, size_t *n,
                              char err[WSG_ERRLEN])
{
    *n = 0;
    unsigned line = 0;
    size_t pos = 0;
    while (pos < len) {
        line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + (nl ? 1 : 0);
        while (l > 0 && (s[l - 1] == '\r' || s[l - 1] == ' ' || s[l - 1] == '\t'))
            l--;
        while (l > 0 && (s[0] == ' ' || s[0] == '\t')) {
            s++;
            l--;
        }
        if (l == 0)
            continue;
        if (*n == max) {
            fail(err, "%.150s:%u: more than %zu keys", path, line, max);
            return -1;
        }
        uint8_t out[WSG_TICKET_KEY_BYTES + 3];
        size_t got = 0;
        int ret = mbedtls_base64_decode(out, sizeof(out), &got, (const unsigned char *)s, l);
        if (ret != 0 && ret != MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL) {
            fail(err, "%.150s:%u: not base64", path, line);
            return -1;
        }
        if (ret != 0 || got != WSG_TICKET_KEY_BYTES) {
            mbedtls_platform_zeroize(out, sizeof(out));
            fail(err, "%.150s:%u: a key is 80 bytes (head -c 80 /dev/urandom | base64 -w0)", path, line);
            return -1;
        }
        memcpy(keys[(*n)++], out, WSG_TICKET_KEY_BYTES);
        mbedtls_platform_zeroize(out, sizeof(out));
    }
    if (*n == 0) {
        fail(err, "%.150s: no key (one base64 line of 80 random bytes per key)", path);
        return -1;
    }
    return 0;
}

int wsg_tls_ticket_keys_read(const char *path, uint8_t keys[][WSG_TICKET_KEY_BYTES], size_t max, size_t *n,
                             char err[WSG_ERRLEN])
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail(err, "%.150s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    char *text = malloc(MAX_FILE + 1);
    size_t len = text ? fread(text, 1, MAX_FILE + 1, f) : 0;
    int bad = text == NULL || ferror(f);
    fclose(f);
    int rc = -1;
    if (bad)
        fail(err, "%.150s: cannot read: %s", path, text == NULL ? "out of memory" : "I/O error");
    else if (len > MAX_FILE)
        fail(err, "%.150s: larger than 64 KiB", path);
    else
        rc = wsg_tls_ticket_keys_parse(path, text, len, keys, max, n, err);
    if (text != NULL) {
        mbedtls_platform_zeroize(text, MAX_FILE + 1);
        free(text);
    }
    return rc;
}

/* ---- key sets ---- */

static void keyset_free(struct wsg_ticket_keyset *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        psa_destroy_key(ks->key[i]);
    mbedtls_platform_zeroize(ks, sizeof(*ks));
    free(ks);
}

void wsg_ticket_keyset_unref(struct wsg_ticket_keyset *ks)
{
    if (ks != NULL && atomic_fetch_sub(&ks->refs, 1) == 1)
        keyset_free(ks);
}

struct wsg_ticket_keyset *wsg_ticket_keyset_load(const char *path, char err[WSG_ERRLEN])
{
    uint8_t(*raw)[WSG_TICKET_KEY_BYTES] = malloc(WSG_TICKET_MAX_KEYS * WSG_TICKET_KEY_BYTES);
    struct wsg_ticket_keyset *ks = calloc(1, sizeof(*ks));
    size_t n = 0;
    if (raw == NULL || ks == NULL) {
        fail(err, "%.150s: out of memory", path);
        goto fail;
    }
    atomic_init(&ks->refs, 1);
    if (wsg_tls_ticket_keys_read(path, raw, WSG_TICKET_MAX_KEYS, &n, err) != 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            if (memcmp(raw[i], raw[j], NAME_BYTES) == 0) {
                fail(err, "%.150s: keys %zu and %zu have the same name (first 16 bytes)", path, j + 1, i + 1);
                goto fail;
            }
        psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
        psa_set_key_usage_flags(&a, PSA_KEY_USAGE_ENCRYPT | PSA_KEY_USAGE_DECRYPT);
        psa_set_key_algorithm(&a, PSA_ALG_GCM);
        psa_set_key_type(&a, PSA_KEY_TYPE_AES);
        psa_set_key_bits(&a, 256);
        psa_status_t ps = psa_import_key(&a, raw[i] + AES_OFF, 32, &ks->key[i]);
        psa_reset_key_attributes(&a);
        if (ps != PSA_SUCCESS) {
            fail(err, "%.150s: key %zu: cannot import (PSA error %d)", path, i + 1, (int)ps);
            goto fail;
        }
        memcpy(ks->name[i], raw[i], NAME_BYTES);
        ks->n = i + 1;
    }
    mbedtls_platform_zeroize(raw, WSG_TICKET_MAX_KEYS * WSG_TICKET_KEY_BYTES);
    free(raw);
    return ks;
fail:
    if (raw != NULL) {
        mbedtls_platform_zeroize(raw, WSG_TICKET_MAX_KEYS * WSG_TICKET_KEY_BYTES);
        free(raw);
    }
    if (ks != NULL)
        keyset_free(ks);
    return NULL;
}

size_t wsg_ticket_keyset_count(const struct wsg_ticket_keyset *ks)
{
    return ks ? ks->n : 0;
}

static struct wsg_ticket_keyset *keyset_acquire(struct wsg_tls_store *st)
{
    pthread_mutex_lock(&st->lock);
    struct wsg_ticket_keyset *ks = st->tkeys;
    if (ks != NULL)
        atomic_fetch_add(&ks->refs, 1);
    pthread_mutex_unlock(&st->lock);
    return ks;
}

/* ---- the callbacks ---- */

int wsg_ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                     const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
    struct wsg_tls_store *st = p;
    *tlen = 0;
    if (end - start < MIN_TICKET)
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    struct wsg_ticket_keyset *ks = keyset_acquire(st);
    if (ks == NULL)
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    unsigned char *iv = start + NAME_BYTES, *lenp = iv + IV_BYTES, *state = lenp + LEN_BYTES;
    size_t clear_len = 0, ciph_len = 0;
    int ret = mbedtls_ctr_drbg_random(&st->drbg, iv, IV_BYTES);
    if (ret == 0)
        ret = mbedtls_ssl_session_save(session, state, (size_t)(end - state) - TAG_BYTES, &clear_len);
    if (ret == 0 && clear_len > 65535)
        ret = MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    if (ret == 0) {
        memcpy(start, ks->name[0], NAME_BYTES);
        lenp[0] = (unsigned char)(clear_len >> 8);
        lenp[1] = (unsigned char)clear_len;
        psa_status_t ps = psa_aead_encrypt(ks->key[0], PSA_ALG_GCM, iv, IV_BYTES, start, AAD_BYTES, state,
                                           clear_len, state, (size_t)(end - state), &ciph_len);
        if (ps != PSA_SUCCESS || ciph_len != clear_len + TAG_BYTES)
            ret = MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
    if (ret == 0) {
        *tlen = AAD_BYTES + ciph_len;
        *lifetime = st->ticket_lifetime;
    }
    wsg_ticket_keyset_unref(ks);
    return ret;
}

int wsg_ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    struct wsg_tls_store *st = p;
    if (len < MIN_TICKET)
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    size_t enc_len = (size_t)buf[NAME_BYTES + IV_BYTES] << 8 | buf[NAME_BYTES + IV_BYTES + 1];
    if (len != MIN_TICKET + enc_len)
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    struct wsg_ticket_keyset *ks = keyset_acquire(st);
    if (ks == NULL)
        return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
    size_t k = 0;
    while (k < ks->n && memcmp(ks->name[k], buf, NAME_BYTES) != 0)
        k++;
    int ret;
    size_t clear_len = 0;
    if (k == ks->n) {
        /* a retired key (or another fleet's): the client does a full handshake */
        ret = MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
    } else if (psa_aead_decrypt(ks->key[k], PSA_ALG_GCM, buf + NAME_BYTES, IV_BYTES, buf, AAD_BYTES,
                                buf + AAD_BYTES, enc_len + TAG_BYTES, buf + AAD_BYTES, enc_len,
                                &clear_len) != PSA_SUCCESS ||
               clear_len != enc_len) {
        ret = MBEDTLS_ERR_SSL_INVALID_MAC;
    } else {
        ret = mbedtls_ssl_session_load(session, buf + AAD_BYTES, clear_len);
    }
    wsg_ticket_keyset_unref(ks);
    if (ret != 0)
        return ret;
#if defined(MBEDTLS_HAVE_TIME)
    /* The lifetime is enforced here, as mbedTLS's own parser does (RFC 8446 4.6.1). */
    mbedtls_ms_time_t created, age;
    ret = mbedtls_ssl_session_get_ticket_creation_time(session, &created);
    if (ret != 0)
        return ret;
    age = mbedtls_ms_time() - created;
    if (age < 0 || age > (mbedtls_ms_time_t)st->ticket_lifetime * 1000)
        return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
#endif
    wsg_tls_note_ticket();
    return 0;
}
