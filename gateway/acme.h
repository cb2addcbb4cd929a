/*
 * acme.h - ACME challenges served by the running gateway (issue 16), pushed and removed by
 * `wsgate-certs acme` over the admin endpoint. The gateway keeps no ACME state on disk: the
 * challenges live in memory only, so a crash leaves nothing behind.
 *
 * Admin endpoint (gateway/admin.c hands every /acme request here; the bodies are text/plain):
 *   PUT    /acme/http-01/TOKEN        body: the key authorization (1..1024 printable ASCII bytes,
 *                                     no whitespace); TOKEN: [A-Za-z0-9_-]{1,128}. 204 (replaces).
 *   DELETE /acme/http-01/TOKEN        204, or 404 when not held
 *   PUT    /acme/tls-alpn-01/NAME     body: a PEM certificate then its PEM private key (RFC 8737:
 *                                     critical acmeIdentifier, SAN holds NAME). 204 (replaces).
 *   DELETE /acme/tls-alpn-01/NAME     204 / 404
 *   GET    /acme                      200, one line per challenge held: "http-01 TOKEN" then
 *                                     "tls-alpn-01 NAME", each type sorted; empty when none
 *   Bad token, name or body: 400 with a one-line reason. Other methods on these paths: 405. A
 *   64th+1 challenge of one type: 507 Insufficient Storage (the table is full; nothing changed).
 *
 * HTTP-01 (RFC 8555 section 8.3) on the `listen_http` plaintext listeners, run on the main
 * thread's loop (the same as the admin endpoint, so the HTTP-01 table needs no lock):
 *   GET|HEAD /.well-known/acme-challenge/TOKEN   200 text/plain, the key authorization; 404 unknown
 *   anything else                                308 to https://HOST[:PORT]TARGET (PORT: the first
 *                                                `listen` port when it is not 443)
 *   no Host: 400; a head over 8 KiB: 431; not complete within header_timeout: closed. One request
 *   per connection (Connection: close).
 * TLS-ALPN-01 is served by the TLS layer itself (tls.h, wsg_tls_acme_*).
 */
#ifndef WSG_ACME_H
#define WSG_ACME_H

#include <ev.h>
#include <stddef.h>
#include <stdio.h>

#include "policies/base/err.h"

struct wsg_tls_store;
struct wsg_cfg;

#define WSG_ACME_HTTP_MAX 64        /* HTTP-01 tokens held at most */
#define WSG_ACME_TOKEN_MAX 128      /* bytes of a token */
#define WSG_ACME_KEYAUTH_MAX 1024   /* bytes of a key authorization */
#define WSG_ACME_HTTP_HEAD_MAX 8192 /* a listen_http request head; 431 above */
/* listen_http connections open at once; above, a new one is closed at accept (port 80 faces the
 * internet; each open one holds 8 KiB and a descriptor of the process the TLS workers share) */
#define WSG_ACME_HTTP_CONNS_MAX 256
#define WSG_ACME_FULL_STATUS 507 /* a PUT over the table's capacity */

/* Whether an admin request-target belongs to /acme ("/acme", "/acme/...", "/acme?..."). */
int wsg_acme_admin_target(const char *target, size_t len);

/**
 * Answers one /acme admin request: prints the text/plain body into out and returns the status.
 * st: the TLS store holding the TLS-ALPN-01 challenges (NULL: tls-alpn-01 requests get 503).
 * body, blen: the request body (the caller read exactly Content-Length bytes).
 * @note Main thread only (the HTTP-01 table has no lock).
 */
int wsg_acme_admin(FILE *out, const char *method, size_t mlen, const char *target, size_t tlen,
                   const char *body, size_t blen, struct wsg_tls_store *st);

/**
 * The answer of a listen_http listener to what a client sent so far (in, len; at most
 * WSG_ACME_HTTP_HEAD_MAX bytes are looked at).
 * https_port: the port written in redirects (443: none).
 * @return 0 when the head is not complete yet (and could still fit), else the HTTP status, with
 *         *out (malloc'ed, the whole response, the caller frees) and *outlen; -1 out of memory.
 */
int wsg_acme_http_answer(const char *in, size_t len, unsigned https_port, char **out, size_t *outlen);

/* Binds every cfg->listen_http address on loop (before the privilege drop) and answers there;
 * header_timeout bounds each request. @return 0, or -1 with err. Nothing bound when the list is
 * empty. */
int wsg_acme_http_start(struct ev_loop *loop, const struct wsg_cfg *cfg, char err[WSG_ERRLEN]);
void wsg_acme_http_stop(struct ev_loop *loop);

/* Prometheus families: wsgate_acme_challenges{type}, wsgate_acme_challenge_requests_total{type,
 * result}, wsgate_http_redirects_total. */
void wsg_acme_metrics(FILE *f, struct wsg_tls_store *st);

/* Forgets every HTTP-01 challenge and counter (tests, fuzzing). */
void wsg_acme_reset(void);
/* HTTP-01 challenges held. */
size_t wsg_acme_http_count(void);

#endif
