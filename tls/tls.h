/*
 * tls.h - the only header of tls/: TLS over two buffers, certificate generations, the shared
 * ticket keys, a per-thread CSPRNG and self-signed certificate generation.
 *
 * tls/ never touches a socket: a wsg_tls reads ciphertext from the cin buffer it was given and
 * appends ciphertext to cout. Files are read only by wsg_tls_store_new/_reload (boot or reload).
 * All structs are opaque outside tls/.
 */
#ifndef WSG_TLS_H
#define WSG_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "policies/base/buf-t.h"
#include "policies/base/err.h"

struct wsg_tls_store; /* current generation + ticket keys + DRBG; shared by all workers */
struct wsg_tls;       /* one client connection's TLS state; holds a generation reference */
struct wsg_rng;       /* a CSPRNG for one thread (mbedtls_ctr_drbg) */

/* One certificate/key pair. The SNI names it serves are read from the certificate
 * (subjectAltName DNS entries, wildcards like *.example.com, else the CN). */
struct wsg_tls_pair {
    const char *cert_path; /* PEM chain: leaf first, then intermediates */
    const char *key_path;  /* PEM private key */
};

struct wsg_tls_settings {
    const struct wsg_tls_pair *pairs; /* pairs[0] is the default for unknown or absent SNI */
    size_t npairs;                    /* 0: generate an in-memory self-signed pair (see below) */
    const char *const *gen_names;     /* names for the generated pair when npairs == 0 */
    size_t ngen_names;                /* e.g. {"localhost", "127.0.0.1"} */
    uint32_t ticket_lifetime;         /* seconds; 0 disables session tickets */
    unsigned cipher_order;            /* WSG_TLS_ORDER_SERVER or WSG_TLS_ORDER_CLIENT */
    const char *ticket_key_file;      /* shared ticket keys (see wsg_tls_ticket_keys_read); NULL or
                                       * "": per-process random keys */
};

/* TLS 1.3 cipher suite choice. SERVER: ChaCha20-Poly1305 whenever the client offers it (the
 * fastest AEAD of this mbedTLS build on x86-64, bench/mbedtls_raw), else the client's order.
 * CLIENT: the first suite of the client's list that the server allows (mbedTLS's own rule).
 * TLS 1.2 follows the server's list in both (ChaCha20-Poly1305 first for SERVER). */
enum { WSG_TLS_ORDER_SERVER = 0, WSG_TLS_ORDER_CLIENT = 1 };

/* ticket_key_file: one base64 line per key, each WSG_TICKET_KEY_BYTES random bytes, newest first
 * (the first encrypts, all decrypt). Layout of a key (nginx's 80-byte ticket key files): name
 * 0..15, unused 16..47 (nginx's HMAC key), AES-256-GCM key 48..79. */
#define WSG_TICKET_KEY_BYTES 80
#define WSG_TICKET_MAX_KEYS 16

/**
 * Reads a ticket key file: blank lines skipped, surrounding blanks and CR ignored, each other line
 * base64 of exactly 80 bytes, at most max keys, at least one.
 * @return 0 with *n keys in keys[], or -1 with err naming the file and line ("t.key:2: a key is 80
 *         bytes ..."). The caller zeroes keys[] after use.
 */
int wsg_tls_ticket_keys_read(const char *path, uint8_t keys[][WSG_TICKET_KEY_BYTES], size_t max, size_t *n,
                             char err[WSG_ERRLEN]);
/* The same over text already in memory (path only names it in errors). */
int wsg_tls_ticket_keys_parse(const char *path, const char *text, size_t len,
                              uint8_t keys[][WSG_TICKET_KEY_BYTES], size_t max, size_t *n,
                              char err[WSG_ERRLEN]);

/**
 * Initialises PSA crypto and builds the store with its first generation.
 * @return 0, or -1 with err naming the file and the reason ("k.pem: key does not match cert.pem").
 * @note Call once from the main thread before any worker starts.
 */
int wsg_tls_store_new(struct wsg_tls_store **out, const struct wsg_tls_settings *s, char err[WSG_ERRLEN]);
/**
 * Builds a new generation from s and makes it current. On error the old one keeps serving.
 * Thread-safe against concurrent wsg_tls_new(). Connections keep the generation they started on.
 */
int wsg_tls_store_reload(struct wsg_tls_store *st, const struct wsg_tls_settings *s, char err[WSG_ERRLEN]);
void wsg_tls_store_free(struct wsg_tls_store *st);
/* Generation counter of the current generation (1, 2, ...) and number of live generations. */
unsigned wsg_tls_store_generation(const struct wsg_tls_store *st);
unsigned wsg_tls_store_live_generations(const struct wsg_tls_store *st);
/* Keys loaded from ticket_key_file (0: none, tickets use per-process keys). */
unsigned wsg_tls_store_ticket_keys(struct wsg_tls_store *st);

/**
 * Creates the server side of one connection over two buffers owned by the caller.
 * cin: ciphertext received from the client (wsg_tls consumes from it).
 * cout: ciphertext to send to the client (wsg_tls appends to it).
 * @return NULL on out of memory.
 */
struct wsg_tls *wsg_tls_new(struct wsg_tls_store *st, struct wsg_buf *cin, struct wsg_buf *cout);
/* Releases the connection and its generation reference. NULL is fine. */
void wsg_tls_free(struct wsg_tls *t);

/**
 * Advances the handshake with what is in cin.
 * @return WSG_OK when complete, WSG_AGAIN when it needs more input (or room in cout),
 *         WSG_ERR on failure (wsg_tls_error() says why; an alert may be in cout to flush).
 */
int wsg_tls_handshake(struct wsg_tls *t);
/**
 * Decrypts into dst.
 * @return >0 bytes, WSG_AGAIN (need more ciphertext), WSG_EOF (close_notify received),
 *         WSG_ERR (bad record, alert).
 * @note Call again until WSG_AGAIN: decrypted bytes can wait inside mbedTLS (wsg_tls_pending).
 */
ssize_t wsg_tls_read(struct wsg_tls *t, void *dst, size_t len);
/* Plaintext bytes already decrypted and waiting inside the TLS state. */
size_t wsg_tls_pending(const struct wsg_tls *t);
/**
 * Encrypts up to len bytes into cout.
 * @return >0 bytes taken (may be less than len), WSG_AGAIN when cout lacks room for one full
 *         record (see wsg_tls_write_reserve), WSG_ERR.
 */
ssize_t wsg_tls_write(struct wsg_tls *t, const void *src, size_t len);
/* Room cout must have before a write is attempted: one maximal record plus its expansion. */
size_t wsg_tls_write_reserve(const struct wsg_tls *t);
/* Queues a close_notify alert into cout. */
void wsg_tls_close_notify(struct wsg_tls *t);
/**
 * Gives mbedTLS's two record buffers (2 x 16.7 KB, most of what an idle connection costs) back to
 * the allocator when nothing waits in them; the next read or write that needs them takes them
 * again (tls/mbedtls/patches/20-idle-buffers.patch). The gateway calls it once a connection has
 * had no burst for a second (conn.c on_tls_idle): after every burst it cost 7x a small echo.
 * @return 1 when the buffers are not held (released now or before), 0 when the connection is not
 *         idle (handshake not done, a record partly in, decrypted bytes waiting, output pending).
 */
int wsg_tls_shrink(struct wsg_tls *t);
/* Whether the handshake is done and the record buffers are held (wsg_tls_shrink would try). */
int wsg_tls_buffers_held(const struct wsg_tls *t);

/**
 * Looks into the first TLS record of a connection (p, len: what has arrived so far) for a
 * ClientHello that offers cipher suite `suite` (IANA number, e.g. 0x1303).
 * @return 1 offered, 0 not offered or not a well-formed ClientHello start (mbedTLS then answers
 *         it), WSG_AGAIN when the list is not complete yet. Reads nothing beyond len.
 */
int wsg_tls_hello_offers(const uint8_t *p, size_t len, uint16_t suite);

/* After the handshake: the SNI name sent (or NULL), the protocol ("TLSv1.3"), the suite name,
 * whether the session was resumed. Last error as text (static or owned by t). */
const char *wsg_tls_sni(const struct wsg_tls *t);
const char *wsg_tls_version(const struct wsg_tls *t);
const char *wsg_tls_cipher(const struct wsg_tls *t);
int wsg_tls_resumed(const struct wsg_tls *t);
const char *wsg_tls_error(const struct wsg_tls *t);

/* A per-thread CSPRNG (e.g. WebSocket masks). fill returns 0, or -1 on failure. */
struct wsg_rng *wsg_rng_new(void);
int wsg_rng_fill(struct wsg_rng *r, uint8_t *dst, size_t len);
void wsg_rng_free(struct wsg_rng *r);

/* HMAC-SHA256 (RFC 2104) of msg under key, for tokens the gateway signs (gateway/affinity.c).
 * @return 0, or -1 when mbedTLS fails. */
int wsg_hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen, uint8_t out[32]);

/* Helpers for writing certificates (the generated pair here, wsgate-certs gen): "CN=<name>" with
 * the characters RFC 4514 treats specially escaped, and a time as mbedTLS's "YYYYMMDDhhmmss" (UTC).
 * Both return 0, or -1 when out is too small or the time out of range. */
int wsg_tls_cn_subject(const char *name, char *out, size_t cap);
int wsg_tls_utc_stamp(time_t when, char out[16]);

/**
 * Generates an ECDSA P-256 key and a self-signed certificate valid for days, with
 * subjectAltName entries for names (DNS names, or IP addresses written as dotted quads or IPv6).
 * Writes PEM into caller buffers. Used by the embedded default and by wsgate-certs.
 * @return 0 or -1 with err.
 */
int wsg_tls_gen_selfsigned(const char *const *names, size_t nnames, unsigned days, char *cert_pem,
                           size_t cert_cap, char *key_pem, size_t key_cap, char err[WSG_ERRLEN]);

/* ---- ACME TLS-ALPN-01 challenges (RFC 8737), pushed by wsgate-certs acme (tls/acme.c) ----
 *
 * The store holds at most WSG_TLS_ACME_MAX challenge certificates, in memory only, by DNS name.
 * A handshake whose ALPN negotiates "acme-tls/1" (the server list is http/1.1 then acme-tls/1, so
 * only a client offering acme-tls/1 without http/1.1 gets it, RFC 8737 section 4) is answered
 * with the challenge certificate for its SNI name, or fails with an unrecognized_name alert when
 * none is held. Every other handshake is untouched. */
#define WSG_TLS_ACME_MAX 64
#define WSG_TLS_ACME_ALPN "acme-tls/1"

/**
 * Parses pem (len bytes, not NUL-terminated: one PEM certificate and its PEM private key) and
 * holds it for name (lower-case DNS name, already validated by the caller), replacing a held one.
 * The certificate must carry the critical acmeIdentifier extension (1.3.6.1.5.5.7.1.31, an OCTET
 * STRING of 32 bytes), a subjectAltName DNS entry equal to name, and the key must match it.
 * @return 0 added, 1 replaced, -1 refused with err (one sentence), -2 table full (err too).
 * @note Thread-safe against handshakes; called from the admin thread.
 */
int wsg_tls_acme_put(struct wsg_tls_store *st, const char *name, const char *pem, size_t len,
                     char err[WSG_ERRLEN]);
/* Removes name's challenge. @return 0, or -1 when none was held. A handshake that selected it
 * keeps it until that handshake's connection is freed. */
int wsg_tls_acme_delete(struct wsg_tls_store *st, const char *name);
/* Calls fn for each held name in sorted order. */
void wsg_tls_acme_list(struct wsg_tls_store *st, void (*fn)(void *arg, const char *name), void *arg);
/* Challenges held, and acme-tls/1 handshakes counted since start: served (a challenge was held
 * for the name) and unknown (none was: the handshake failed). */
size_t wsg_tls_acme_count(struct wsg_tls_store *st);
void wsg_tls_acme_stats(struct wsg_tls_store *st, uint64_t *served, uint64_t *unknown);
/* After the handshake: 1 when it negotiated acme-tls/1 (the connection carries no HTTP: close it). */
int wsg_tls_is_acme(const struct wsg_tls *t);

/* ---- checking a pair without serving it (tls/check.c): wsgate-certs check and rotate ---- */

#define WSG_TLS_CHECK_MAX_PROBLEMS 16

struct wsg_tls_check_opts {
    const char *ca_path;      /* PEM bundle the chain must verify against; NULL: not verified */
    const char *const *names; /* host names or IP addresses the leaf must cover (may be NULL) */
    size_t nnames;
    time_t now; /* the time to judge validity at; 0: the current time */
};

/* What wsg_tls_check_pair found. Owned by the caller; release with wsg_tls_check_report_free. */
struct wsg_tls_check_report {
    int loaded;                   /* the leaf parsed: the fields below are meaningful */
    time_t not_before, not_after; /* UTC, seconds since the epoch */
    char subject[256];            /* "CN=example.com" */
    char sha256[96];              /* of the leaf's DER, "AB:CD:...:EF" like openssl x509 -fingerprint */
    char **names;                 /* subjectAltName DNS names and IP addresses, in certificate order */
    size_t nnames;                /* ("example.com", "*.example.com", "127.0.0.1", "::1") */
    unsigned char *name_is_ip;    /* name_is_ip[i]: names[i] came from an IP address entry */
    int names_from_cn;            /* no subjectAltName: names[0] is the CN (clients ignore it) */
    size_t nproblems;             /* 0: good */
    char problems[WSG_TLS_CHECK_MAX_PROBLEMS][WSG_ERRLEN]; /* one sentence each, naming the file */
};

/**
 * Loads p the way the store does and checks it without serving it: both files parse, the key
 * matches the leaf, every certificate in the file is inside its validity window at o->now, each
 * of o->names is covered (exact or single-label wildcard DNS name, IP address for addresses),
 * and, with o->ca_path, the chain (leaf, then the file's intermediates) verifies against it.
 * Problems read like "cert.pem: certificate expired on 2024-01-01".
 * @return 0 when r->nproblems is 0, else -1. r is filled either way (see r->loaded).
 * @note Initialises PSA crypto itself. o may be NULL (no CA, no names, now).
 */
int wsg_tls_check_pair(const struct wsg_tls_pair *p, const struct wsg_tls_check_opts *o,
                       struct wsg_tls_check_report *r);
/* Frees what a report points to (names); the report itself is the caller's. NULL is fine. */
void wsg_tls_check_report_free(struct wsg_tls_check_report *r);
/* Whether the certificate names in r cover host (a DNS name or an IP address), by the rules above. */
int wsg_tls_check_covers(const struct wsg_tls_check_report *r, const char *host);

/* ---- describing what is served (GET /certs, wsgate-certs status) ---- */

#include <stdio.h>

/**
 * Prints one JSON object (and a newline) describing the store:
 *   {"generation":N,"live_generations":M,"connections":C,
 *    "generations":[{"generation":N,"current":true,"connections":C},...],   (newest first)
 *    "generations_not_listed":0,
 *    "certificates":[{"cert":"/etc/wsgate/site.crt" or null (generated),"default":true,
 *                     "names":["example.com","*.example.com","127.0.0.1"],"subject":"CN=example.com",
 *                     "fingerprint_sha256":"AB:CD:...","not_before":"2025-01-01T00:00:00Z",
 *                     "not_after":"2025-04-01T00:00:00Z","seconds_left":7776000},...]}
 * certificates are the current generation's pairs in configuration order (the first is the
 * default for unknown or absent SNI); connections count live wsg_tls objects per generation.
 * @note Thread-safe against wsg_tls_store_reload and against connections coming and going.
 */
void wsg_tls_store_describe_json(struct wsg_tls_store *st, FILE *out);
/* Calls fn once per SNI name the current generation serves with the seconds until that name's
 * certificate expires (negative once expired). For /metrics. */
void wsg_tls_store_expiry(struct wsg_tls_store *st,
                          void (*fn)(void *arg, const char *name, double seconds_left), void *arg);

/* SHA-256 of a DER certificate as "AB:CD:...:EF", the way openssl x509 -fingerprint -sha256 and
 * wsg_tls_check_report.sha256 write it (wsgate-certs rotate compares what a handshake served). */
void wsg_tls_fingerprint_der(const unsigned char *der, size_t len, char out[96]);

#endif
