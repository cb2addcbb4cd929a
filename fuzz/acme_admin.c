/*
 * acme_admin.c - libFuzzer target for the two parsers of the gateway's ACME challenge serving
 * (issue 16, gateway/acme.h): the admin endpoint's /acme requests (wsg_acme_admin: target,
 * method, body; the TLS-ALPN-01 PEM checks of tls/acme.c behind it) and the listen_http request
 * handling (wsg_acme_http_answer: the HTTP-01 answer, 308 redirect, 400/404/431).
 *
 * Input: [opt] then bytes.
 *   opt bit 0 clear: an admin request. Method = opt bits 1-2 (GET, PUT, DELETE, POST); the bytes
 *     up to the first '\n' are the request-target, the rest the body. The HTTP-01 table starts
 *     empty and holds one token "seed" (key authorization "seed.k") and the TLS store no
 *     challenge, for every input.
 *   opt bit 0 set: the bytes are what a client sent to listen_http; opt bit 1 picks the https
 *     port written in redirects (443 or 8443).
 *
 * Invariants, besides ASan/UBSan (every call reads an exact-size copy):
 * - admin: the status is one of 200 204 400 404 405 507; a 204 has an empty body, any other a
 *   body of one line ending in '\n' (200: the listing, one line per challenge); a 204 PUT of
 *   http-01 holds exactly the token and body given (a fetch on listen_http answers 200 with the
 *   body byte for byte), and its DELETE then answers 204 and the table is back to what it was; a
 *   204 PUT of tls-alpn-01 is listed by GET /acme and its DELETE answers 204; anything but a 204
 *   PUT or DELETE changed nothing (table sizes);
 * - listen_http: 0 (head incomplete) only below 8 KiB; else a status in 200 308 400 404 414 431
 *   501 505, a response that starts with "HTTP/1.1 <status> ", a head of CRLF lines, a
 *   Content-Length equal to the bytes after it (none after a HEAD), and for 308 a Location of
 *   https://... without CR, LF or space; 200 only with the seeded key authorization as body.
 */
#include <string.h>

#include "fuzz/fuzz.h"
#include "gateway/acme.h"
#include "gateway/log.h"
#include "tls/tls.h"

static struct wsg_tls_store *store;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    wsg_log_max = WSG_LOG_ERROR;
    static const char *const names[] = {"localhost"};
    struct wsg_tls_settings s = {.gen_names = names, .ngen_names = 1};
    char err[WSG_ERRLEN];
    FUZZ_CHECK(wsg_tls_store_new(&store, &s, err) == 0);
    return 0;
}

static void list_count(void *arg, const char *name)
{
    (void)name;
    (*(size_t *)arg)++;
}

static size_t tls_count(void)
{
    size_t n = 0;
    wsg_tls_acme_list(store, list_count, &n);
    FUZZ_CHECK(n == wsg_tls_acme_count(store));
    return n;
}

/* One admin call; returns the status and leaves the answer in *body (malloc'ed). */
static int admin(const char *method, const char *target, size_t tlen, const char *req_body, size_t blen,
                 char **body, size_t *len)
{
    FILE *f = open_memstream(body, len);
    FUZZ_CHECK(f != NULL);
    int st = wsg_acme_admin(f, method, strlen(method), target, tlen, req_body, blen, store);
    fclose(f);
    return st;
}

static void seed(void)
{
    char *b = NULL;
    size_t l = 0;
    wsg_acme_reset();
    FUZZ_CHECK(admin("PUT", "/acme/http-01/seed", 18, "seed.k", 6, &b, &l) == 204);
    free(b);
}

static int http_answer(const char *in, size_t n, unsigned port, char **out, size_t *outlen)
{
    char *copy = malloc(n ? n : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, in, n);
    *out = NULL;
    int st = wsg_acme_http_answer(copy, n, port, out, outlen);
    free(copy);
    return st;
}

static void fuzz_admin(unsigned opt, const uint8_t *data, size_t n)
{
    static const char *const methods[] = {"GET", "PUT", "DELETE", "POST"};
    const char *method = methods[(opt >> 1) & 3];
    const uint8_t *nl = memchr(data, '\n', n);
    size_t tlen = nl != NULL ? (size_t)(nl - data) : n;
    size_t blen = nl != NULL ? n - tlen - 1 : 0;
    char *target = malloc(tlen ? tlen : 1), *reqb = malloc(blen ? blen : 1);
    FUZZ_CHECK(target != NULL && reqb != NULL);
    memcpy(target, data, tlen);
    if (blen)
        memcpy(reqb, nl + 1, blen);
    seed();
    size_t http_before = wsg_acme_http_count(), tls_before = tls_count();

    char *body = NULL;
    size_t len = 0;
    int st = admin(method, target, tlen, reqb, blen, &body, &len);
    if (fuzz_verbose())
        fprintf(stderr, "%s %.*s -> %d %.*s", method, (int)tlen, target, st, (int)len, body);
    FUZZ_CHECK(st == 200 || st == 204 || st == 400 || st == 404 || st == 405 || st == 507);
    if (st == 204) {
        FUZZ_CHECK(len == 0);
    } else if (st == 200) {
        FUZZ_CHECK(len == 0 || body[len - 1] == '\n');
        size_t lines = 0;
        for (size_t i = 0; i < len; i++)
            lines += body[i] == '\n';
        FUZZ_CHECK(lines == http_before + tls_before);
    } else {
        FUZZ_CHECK(len >= 2 && body[len - 1] == '\n' && memchr(body, '\n', len) == body + len - 1);
    }
    int put = strcmp(method, "PUT") == 0, del = strcmp(method, "DELETE") == 0;
    static const char p_http[] = "/acme/http-01/", p_tls[] = "/acme/tls-alpn-01/";
    int is_http = tlen >= 14 && memcmp(target, p_http, 14) == 0;
    int is_tls = tlen >= 18 && memcmp(target, p_tls, 18) == 0;
    if (!(st == 204 && (put || del))) {
        FUZZ_CHECK(wsg_acme_http_count() == http_before);
        FUZZ_CHECK(tls_count() == tls_before);
    } else if (is_http && put) {
        /* held exactly: listen_http serves the body for the token */
        const char *tok = target + 14;
        size_t tl = tlen - 14;
        FUZZ_CHECK(tl >= 1 && tl <= WSG_ACME_TOKEN_MAX && blen >= 1 && blen <= WSG_ACME_KEYAUTH_MAX);
        char req[256];
        int rl = snprintf(req, sizeof(req),
                          "GET /.well-known/acme-challenge/%.*s HTTP/1.1\r\nHost: a\r\n\r\n", (int)tl, tok);
        char *out = NULL;
        size_t ol = 0;
        FUZZ_CHECK(http_answer(req, (size_t)rl, 443, &out, &ol) == 200);
        FUZZ_CHECK(ol >= blen && memcmp(out + ol - blen, reqb, blen) == 0);
        free(out);
        free(body);
        body = NULL;
        FUZZ_CHECK(admin("DELETE", target, tlen, NULL, 0, &body, &len) == 204);
        int was_seed = tl == 4 && memcmp(tok, "seed", 4) == 0; /* replaced, then deleted */
        FUZZ_CHECK(wsg_acme_http_count() == http_before - (size_t)was_seed);
    } else if (is_http && del) {
        FUZZ_CHECK(tlen == 18 && memcmp(target + 14, "seed", 4) == 0);
        FUZZ_CHECK(wsg_acme_http_count() == http_before - 1);
    } else if (is_tls && put) {
        FUZZ_CHECK(tls_count() == tls_before + 1);
        free(body);
        body = NULL;
        FUZZ_CHECK(admin("DELETE", target, tlen, NULL, 0, &body, &len) == 204);
        FUZZ_CHECK(tls_count() == tls_before);
    } else {
        FUZZ_CHECK(0); /* a 204 DELETE of tls-alpn-01: none was held */
    }
    free(body);
    free(target);
    free(reqb);
}

static void fuzz_http(unsigned opt, const uint8_t *data, size_t n)
{
    seed();
    unsigned port = (opt & 2) ? 8443 : 443;
    char *out = NULL;
    size_t ol = 0;
    int st = http_answer((const char *)data, n, port, &out, &ol);
    if (st == 0) {
        FUZZ_CHECK(n < WSG_ACME_HTTP_HEAD_MAX && out == NULL);
        return;
    }
    FUZZ_CHECK(st == 200 || st == 308 || st == 400 || st == 404 || st == 414 || st == 431 || st == 501 ||
               st == 505);
    FUZZ_CHECK(out != NULL);
    char line[32];
    int ll = snprintf(line, sizeof(line), "HTTP/1.1 %d ", st);
    FUZZ_CHECK(ol > (size_t)ll && memcmp(out, line, (size_t)ll) == 0);
    const char *end = memmem(out, ol, "\r\n\r\n", 4);
    FUZZ_CHECK(end != NULL);
    size_t head = (size_t)(end - out) + 4;
    for (size_t i = 0; i < head; i++) /* CRLF lines only: nothing of the request split a line */
        FUZZ_CHECK((out[i] != '\n' || (i > 0 && out[i - 1] == '\r')) &&
                   (out[i] != '\r' || out[i + 1] == '\n'));
    const char *cl = memmem(out, head, "Content-Length: ", 16);
    FUZZ_CHECK(cl != NULL);
    size_t clen = strtoul(cl + 16, NULL, 10);
    FUZZ_CHECK(ol - head == clen || ol == head); /* HEAD: no body */
    if (st == 200)
        FUZZ_CHECK(clen == 6 && (ol == head || memcmp(out + head, "seed.k", 6) == 0));
    if (st == 308) {
        const char *loc = memmem(out, head, "\r\nLocation: https://", 20);
        FUZZ_CHECK(loc != NULL);
        const char *eol = memmem(loc + 2, head - (size_t)(loc + 2 - out), "\r\n", 2);
        FUZZ_CHECK(eol != NULL);
        for (const char *p = loc + 12; p < eol; p++)
            FUZZ_CHECK(*p != '\r' && *p != '\n' && *p != ' ');
        if (port == 8443)
            FUZZ_CHECK(memmem(loc, (size_t)(eol - loc), ":8443/", 6) != NULL);
    }
    if (fuzz_verbose())
        fprintf(stderr, "%.*s\n", (int)(head > 200 ? 200 : head), out);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned opt = fuzz_byte(&in);
    if (opt & 1)
        fuzz_http(opt, in.p, in.n);
    else
        fuzz_admin(opt, in.p, in.n);
    return 0;
}
