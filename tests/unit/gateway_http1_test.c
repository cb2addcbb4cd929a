/*
 * gateway_http1_test.c - unit tests of gateway/http1.c: every strictness rule of the request and
 * response parsers with its exact status, the smuggling cases, the chunked scanner, the writers.
 *
 * Every parser input is fed whole (placed right before a PROT_NONE guard page, so any over-read
 * crashes), as every prefix (each one at the guard too: PARTIAL until complete), and in seeded
 * random cuts. The chunked scanner is fed whole, 1 byte at a time and in random cuts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "policies/base/buf.h"
#include "gateway/http1.h"

static const struct wsg_http_limits lim_default = {8192, 1024, 100};

/* ---- Guard page ---- */

struct guard {
    uint8_t *map;
    size_t maplen;
    uint8_t *end; /* first byte of the PROT_NONE page */
};

static void guard_init(struct guard *g, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (len + page - 1) / page * page;
    if (data == 0)
        data = page;
    g->maplen = data + page;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect(g->map + data, page, PROT_NONE), 0);
    g->end = g->map + data;
}

/* Copies len bytes so that they end exactly at the guard page. */
static const char *guard_place(struct guard *g, const char *src, size_t len)
{
    memcpy(g->end - len, src, len);
    return (const char *)g->end - len;
}

static void guard_free(struct guard *g)
{
    munmap(g->map, g->maplen);
}

/* ---- Scripted feeding of a stateless parser ---- */

struct pctx {
    const struct wsg_http_limits *lim;
    int is_response, is_head;
    struct wsg_http_req req;
    struct wsg_http_resp resp;
};

/* Returns the parser result; *status gets the HTTP status (502 for responses) on INVALID. */
static int run_parse(struct pctx *c, const char *buf, size_t len, int *status, const char **why)
{
    *status = 0;
    *why = NULL;
    if (c->is_response) {
        int rc = wsg_http_parse_response(buf, len, c->lim, c->is_head, &c->resp, why);
        if (rc == WSG_PARSE_INVALID)
            *status = 502;
        return rc;
    }
    return wsg_http_parse_request(buf, len, c->lim, &c->req, why, status);
}

/*
 * Valid input: whole returns head_len (the head may be followed by other bytes), every shorter
 * prefix and every random cut shorter than the head returns PARTIAL. Leaves c->req/resp parsed
 * from the caller's own buffer so that its pointers stay valid.
 */
static void check_ok(struct pctx *c, const char *in, size_t len, size_t head_len)
{
    struct guard g;
    int status;
    const char *why;

    guard_init(&g, len);
    int rc = run_parse(c, guard_place(&g, in, len), len, &status, &why);
    if (rc != (int)head_len)
        fail_msg("whole: rc %d (%s, %d), expected %zu for:\n%.*s", rc, why ? why : "-", status, head_len,
                 (int)len, in);
    for (size_t k = 0; k < len; k++) {
        rc = run_parse(c, guard_place(&g, in, k), k, &status, &why);
        int want = k < head_len ? WSG_PARSE_PARTIAL : (int)head_len;
        if (rc != want)
            fail_msg("prefix %zu: rc %d (%s), expected %d", k, rc, why ? why : "-", want);
    }
    for (unsigned seed = 1; seed <= 8; seed++) {
        srand(seed);
        size_t pos = 0;
        while (pos < len) {
            pos += 1 + (size_t)rand() % 13;
            if (pos > len)
                pos = len;
            rc = run_parse(c, guard_place(&g, in, pos), pos, &status, &why);
            assert_int_equal(rc, pos < head_len ? WSG_PARSE_PARTIAL : (int)head_len);
        }
    }
    guard_free(&g);
    assert_int_equal(run_parse(c, in, len, &status, &why), (int)head_len);
}

/*
 * Invalid input: whole returns INVALID with this status; each prefix is PARTIAL or INVALID with
 * the same status, and once INVALID every longer prefix stays INVALID.
 */
static void check_bad(struct pctx *c, const char *in, size_t len, int want_status)
{
    struct guard g;
    int status, seen_invalid = 0;
    const char *why;

    guard_init(&g, len);
    int rc = run_parse(c, guard_place(&g, in, len), len, &status, &why);
    if (rc != WSG_PARSE_INVALID || status != want_status)
        fail_msg("whole: rc %d status %d (%s), expected INVALID %d for:\n%.*s", rc, status, why ? why : "-",
                 want_status, (int)len, in);
    assert_non_null(why);
    for (size_t k = 0; k <= len; k++) {
        rc = run_parse(c, guard_place(&g, in, k), k, &status, &why);
        if (rc == WSG_PARSE_INVALID) {
            if (status != want_status)
                fail_msg("prefix %zu: status %d (%s), expected %d", k, status, why, want_status);
            seen_invalid = 1;
        } else if (rc != WSG_PARSE_PARTIAL || seen_invalid) {
            fail_msg("prefix %zu: rc %d after invalid=%d", k, rc, seen_invalid);
        }
    }
    for (unsigned seed = 1; seed <= 4; seed++) {
        srand(seed);
        size_t pos = 0;
        while (pos < len) {
            pos += 1 + (size_t)rand() % 13;
            if (pos > len)
                pos = len;
            rc = run_parse(c, guard_place(&g, in, pos), pos, &status, &why);
            assert_true(rc == WSG_PARSE_PARTIAL || (rc == WSG_PARSE_INVALID && status == want_status));
        }
    }
    guard_free(&g);
}

static struct pctx *req_ctx(void)
{
    static struct pctx c;
    memset(&c, 0, sizeof(c));
    c.lim = &lim_default;
    return &c;
}

static struct pctx *resp_ctx(int is_head)
{
    struct pctx *c = req_ctx();
    c->is_response = 1;
    c->is_head = is_head;
    return c;
}

static const struct wsg_http_req *req_ok(const char *in)
{
    struct pctx *c = req_ctx();
    check_ok(c, in, strlen(in), strlen(in));
    return &c->req;
}

static void req_bad(const char *in, int status)
{
    check_bad(req_ctx(), in, strlen(in), status);
}

static void req_bad_lim(const char *in, size_t len, const struct wsg_http_limits *lim, int status)
{
    struct pctx *c = req_ctx();
    c->lim = lim;
    check_bad(c, in, len, status);
}

static const struct wsg_http_resp *resp_ok(const char *in, int is_head)
{
    struct pctx *c = resp_ctx(is_head);
    check_ok(c, in, strlen(in), strlen(in));
    return &c->resp;
}

static void resp_bad(const char *in)
{
    check_bad(resp_ctx(0), in, strlen(in), 502);
}

static int hv_is(const struct wsg_http_header *h, const char *v)
{
    return h != NULL && h->value_len == strlen(v) && memcmp(h->value, v, h->value_len) == 0;
}

#define H "Host: example.com\r\n"

/* ---- Requests: valid ---- */

static void test_req_simple_get(void **state)
{
    (void)state;
    const struct wsg_http_req *r = req_ok("GET /index.html?a=b HTTP/1.1\r\n" H "Accept:  */*  \r\n\r\n");
    assert_int_equal(r->method_len, 3);
    assert_memory_equal(r->method, "GET", 3);
    assert_int_equal(r->target_len, 15);
    assert_memory_equal(r->target, "/index.html?a=b", 15);
    assert_int_equal(r->minor_version, 1);
    assert_int_equal(r->num_headers, 2);
    assert_true(hv_is(r->host, "example.com"));
    assert_true(hv_is(&r->headers[1], "*/*")); /* OWS trimmed on both sides */
    assert_int_equal(r->body, WSG_BODY_NONE);
    assert_true(r->keep_alive);
    assert_false(r->upgrade_ws);
    assert_false(r->expect_continue);
    assert_null(r->ws_key);
}

static void test_req_followed_by_body(void **state)
{
    (void)state;
    static const char in[] = "POST /p HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\nhello";
    struct pctx *c = req_ctx();
    check_ok(c, in, sizeof(in) - 1, sizeof(in) - 1 - 5);
    assert_int_equal(c->req.body, WSG_BODY_LENGTH);
    assert_int_equal(c->req.content_length, 5);
}

static void test_req_content_length_max(void **state)
{
    (void)state;
    const struct wsg_http_req *r =
        req_ok("POST / HTTP/1.1\r\n" H "Content-Length: 4611686018427387904\r\n\r\n");
    assert_int_equal(r->body, WSG_BODY_LENGTH);
    assert_true(r->content_length == (uint64_t)1 << 62);
    r = req_ok("POST / HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n");
    assert_int_equal(r->body, WSG_BODY_LENGTH);
    assert_int_equal(r->content_length, 0);
}

static void test_req_chunked(void **state)
{
    (void)state;
    const struct wsg_http_req *r = req_ok("POST / HTTP/1.1\r\n" H "Transfer-Encoding: Chunked\r\n\r\n");
    assert_int_equal(r->body, WSG_BODY_CHUNKED);
    r = req_ok("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked , \r\n\r\n"); /* empty element ignored */
    assert_int_equal(r->body, WSG_BODY_CHUNKED);
}

static void test_req_http10(void **state)
{
    (void)state;
    const struct wsg_http_req *r = req_ok("GET / HTTP/1.0\r\n\r\n"); /* Host optional in 1.0 */
    assert_int_equal(r->minor_version, 0);
    assert_null(r->host);
    assert_false(r->keep_alive);
    r = req_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(r->keep_alive);
    r = req_ok("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    assert_false(r->expect_continue);
}

static void test_req_connection_close(void **state)
{
    (void)state;
    const struct wsg_http_req *r = req_ok("GET / HTTP/1.1\r\n" H "Connection: foo, CLOSE\r\n\r\n");
    assert_false(r->keep_alive);
    r = req_ok("GET / HTTP/1.1\r\n" H "Connection: foo\r\nConnection: close\r\n\r\n");
    assert_false(r->keep_alive);
    r = req_ok("GET / HTTP/1.1\r\n" H "Connection: closed\r\n\r\n");
    assert_true(r->keep_alive);
}

static void test_req_upgrade_ws(void **state)
{
    (void)state;
    const struct wsg_http_req *r =
        req_ok("GET /chat HTTP/1.1\r\n" H "Connection: keep-alive, Upgrade\r\n"
               "Upgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n");
    assert_true(r->upgrade_ws);
    assert_true(hv_is(r->ws_key, "dGhlIHNhbXBsZSBub25jZQ=="));
    assert_true(hv_is(r->ws_version, "13"));
    /* A list with another protocol first, no key: the caller answers 400. */
    r = req_ok("GET / HTTP/1.1\r\n" H "Connection: upgrade\r\nUpgrade: h2c, websocket\r\n\r\n");
    assert_true(r->upgrade_ws);
    assert_null(r->ws_key);
    /* Not an upgrade: POST, missing Connection token, other protocol, HTTP/1.0. */
    r = req_ok("POST / HTTP/1.1\r\n" H "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_false(r->upgrade_ws);
    r = req_ok("GET / HTTP/1.1\r\n" H "Connection: keep-alive\r\nUpgrade: websocket\r\n\r\n");
    assert_false(r->upgrade_ws);
    r = req_ok("GET / HTTP/1.1\r\n" H "Connection: upgrade\r\nUpgrade: h2c\r\n\r\n");
    assert_false(r->upgrade_ws);
    r = req_ok("GET / HTTP/1.0\r\n" H "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_false(r->upgrade_ws);
}

static void test_req_expect_continue(void **state)
{
    (void)state;
    const struct wsg_http_req *r =
        req_ok("PUT /x HTTP/1.1\r\n" H "Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    assert_true(r->expect_continue);
}

static void test_req_target_forms(void **state)
{
    (void)state;
    const struct wsg_http_req *r = req_ok("OPTIONS * HTTP/1.1\r\n" H "\r\n");
    assert_int_equal(r->target_len, 1);
    r = req_ok("GET http://example.com/a HTTP/1.1\r\n" H "\r\n");
    assert_int_equal(r->target_len, 20);
    req_ok("OPTIONS /x HTTP/1.1\r\n" H "\r\n");
    req_bad("GET * HTTP/1.1\r\n" H "\r\n", 400);
    req_bad("OPTIONS *x HTTP/1.1\r\n" H "\r\n", 400);
    req_bad("GET example.com:443 HTTP/1.1\r\n" H "\r\n", 400); /* authority-form */
    req_bad("GET foo HTTP/1.1\r\n" H "\r\n", 400);
    req_bad("GET ftp://x/ HTTP/1.1\r\n" H "\r\n", 400);
    req_bad("CONNECT example.com:443 HTTP/1.1\r\n" H "\r\n", 501);
}

static void test_req_leading_crlf_and_obs_text(void **state)
{
    (void)state;
    const struct wsg_http_req *r = req_ok("\r\n\r\nGET / HTTP/1.1\r\n" H "X-A: caf\xc3\xa9\tx\r\n\r\n");
    assert_true(hv_is(&r->headers[1], "caf\xc3\xa9\tx"));
    assert_true(hv_is(r->host, "example.com"));
    r = req_ok("GET / HTTP/1.1\r\n" H "X-Empty:\r\nX-Sp:   \r\n\r\n");
    assert_int_equal(r->headers[1].value_len, 0);
    assert_int_equal(r->headers[2].value_len, 0);
}

/* ---- Requests: request line ---- */

static void test_req_line_syntax(void **state)
{
    (void)state;
    req_bad("G(T / HTTP/1.1\r\n" H "\r\n", 400);
    req_bad(" GET / HTTP/1.1\r\n" H "\r\n", 400);
    req_bad("GET  / HTTP/1.1\r\n" H "\r\n", 400);   /* double SP */
    req_bad("GET / HTTP/1.1 \r\n" H "\r\n", 400);   /* trailing SP */
    req_bad("GET /\tx HTTP/1.1\r\n" H "\r\n", 400); /* HTAB in target */
    req_bad("GET /\x7f HTTP/1.1\r\n" H "\r\n", 400);
    req_bad("GET /\xc3\xa9 HTTP/1.1\r\n" H "\r\n", 400);
    req_bad("GET /\r\n" H "\r\n", 400); /* HTTP/0.9 shape */
    req_bad("GET / http/1.1\r\n" H "\r\n", 400);
    req_bad("GET / HTTP/1.10\r\n" H "\r\n", 400);
    req_bad("GET / HTTP/11\r\n" H "\r\n", 400);
}

static void test_req_version_505(void **state)
{
    (void)state;
    req_bad("GET / HTTP/2.0\r\n" H "\r\n", 505);
    req_bad("GET / HTTP/1.2\r\n" H "\r\n", 505);
    req_bad("GET / HTTP/0.9\r\n" H "\r\n", 505);
}

static void test_req_target_414(void **state)
{
    (void)state;
    static const struct wsg_http_limits lim = {8192, 16, 100};
    char in[256];
    /* 16 bytes of target are fine, 17 are not. */
    snprintf(in, sizeof(in), "GET /%s HTTP/1.1\r\n" H "\r\n", "123456789012345");
    struct pctx *c = req_ctx();
    c->lim = &lim;
    check_ok(c, in, strlen(in), strlen(in));
    snprintf(in, sizeof(in), "GET /%s HTTP/1.1\r\n" H "\r\n", "1234567890123456");
    req_bad_lim(in, strlen(in), &lim, 414);
    /* Detected while partial: no SP within max_target bytes of target. */
    const char *part = "GET /12345678901234567";
    int status = 0;
    const char *why = NULL;
    struct wsg_http_req req;
    assert_int_equal(wsg_http_parse_request(part, 21, &lim, &req, &why, &status), WSG_PARSE_INVALID);
    assert_int_equal(status, 414);
    assert_int_equal(wsg_http_parse_request(part, 20, &lim, &req, &why, &status), WSG_PARSE_PARTIAL);
}

/* ---- Requests: head size and header count ---- */

static void test_req_head_431(void **state)
{
    (void)state;
    static const struct wsg_http_limits lim = {64, 1024, 100};
    /* Exactly 64 bytes of head is accepted. */
    const char *fits = "GET / HTTP/1.1\r\n" H "X-Pad: 012345678901234567\r\n\r\n";
    assert_int_equal(strlen(fits), 64);
    struct pctx *c = req_ctx();
    c->lim = &lim;
    check_ok(c, fits, strlen(fits), strlen(fits));
    req_bad_lim("GET / HTTP/1.1\r\n" H "X-Pad: 0123456789012345678\r\n\r\n", 65, &lim, 431);
    /* Partial: 64 bytes and no end yet is already a 431. */
    const char *part = "GET / HTTP/1.1\r\n" H "X-Pad: 0123456789012345678901234567890123456789";
    int status = 0;
    const char *why = NULL;
    struct wsg_http_req req;
    assert_true(strlen(part) > 64);
    assert_int_equal(wsg_http_parse_request(part, 64, &lim, &req, &why, &status), WSG_PARSE_INVALID);
    assert_int_equal(status, 431);
    assert_int_equal(wsg_http_parse_request(part, 63, &lim, &req, &why, &status), WSG_PARSE_PARTIAL);
}

static void test_req_too_many_headers(void **state)
{
    (void)state;
    static const struct wsg_http_limits lim = {8192, 1024, 3};
    struct pctx *c = req_ctx();
    c->lim = &lim;
    const char *three = "GET / HTTP/1.1\r\n" H "A: 1\r\nB: 2\r\n\r\n";
    check_ok(c, three, strlen(three), strlen(three));
    const char *four = "GET / HTTP/1.1\r\n" H "A: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    req_bad_lim(four, strlen(four), &lim, 431);
    /* The default limit is WSG_HTTP_MAX_HEADERS. */
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n" H);
    for (int i = 0; i < WSG_HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "X%d: v\r\n", i);
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    req_bad(big, 431);
}

/* ---- Requests: line endings and field syntax ---- */

static void test_req_bare_lf(void **state)
{
    (void)state;
    req_bad("GET / HTTP/1.1\n" H "\r\n", 400);
    req_bad("GET /\n HTTP/1.1\r\n" H "\r\n", 400);
    req_bad("GET / HTTP/1.1\r\nHost: example.com\nX: y\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "X\n: y\r\n\r\n", 400);
    req_bad("\nGET / HTTP/1.1\r\n" H "\r\n", 400);
}

static void test_req_bare_cr(void **state)
{
    (void)state;
    req_bad("GET / HTTP/1.1\r" H "\r\n", 400);
    req_bad("GET / HTTP/1.1\r\nX: a\rb\r\n" H "\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "\rX: y\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "\r\r\n", 400);
    req_bad("\rGET / HTTP/1.1\r\n" H "\r\n", 400);
}

static void test_req_obs_fold(void **state)
{
    (void)state;
    req_bad("GET / HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "X-A: a\r\n\tb\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n Host: example.com\r\n\r\n", 400);
}

static void test_req_field_name(void **state)
{
    (void)state;
    req_bad("GET / HTTP/1.1\r\n" H "X-A : b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "X-A\t: b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H ": b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "X(A: b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "X A: b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "NoColon\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "X-\xc3\xa9: b\r\n\r\n", 400);
}

static void test_req_field_value_ctl(void **state)
{
    (void)state;
    static const char nul[] = "GET / HTTP/1.1\r\n" H "X-A: a\0b\r\n\r\n";
    check_bad(req_ctx(), nul, sizeof(nul) - 1, 400);
    req_bad("GET / HTTP/1.1\r\n" H "X-A: a\x01"
            "b\r\n\r\n",
            400);
    req_bad("GET / HTTP/1.1\r\n" H "X-A: a\x1f\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H "X-A: a\x7f\r\n\r\n", 400);
    req_ok("GET / HTTP/1.1\r\n" H "X-A: a\tb \xff\x80\r\n\r\n");
}

/* ---- Requests: Host ---- */

static void test_req_host(void **state)
{
    (void)state;
    req_bad("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\n" H H "\r\n", 400);
    req_bad("GET / HTTP/1.1\r\nHost: a.com\r\nhost: b.com\r\n\r\n", 400);
    req_bad("GET / HTTP/1.0\r\n" H H "\r\n", 400);
    req_bad("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400);
    req_bad("GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n", 400);
    const struct wsg_http_req *r = req_ok("GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
    assert_true(hv_is(r->host, "[::1]:8443"));
}

/* ---- Requests: Content-Length and Transfer-Encoding (smuggling) ---- */

static void test_req_content_length_invalid(void **state)
{
    (void)state;
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: 5 5\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: 4611686018427387905\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length : 5\r\n\r\n", 400);
}

static void test_req_cl_and_te(void **state)
{
    (void)state;
    req_bad("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", 400);
}

static void test_req_te_unsupported(void **state)
{
    (void)state;
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: xchunked\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: \"chunked\"\r\n\r\n", 501);
    /* Several field lines form one list. */
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
}

static void test_req_te_smuggling_syntax(void **state)
{
    (void)state;
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding : chunked\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n chunked\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: x\r\n\tchunked\r\n\r\n", 400);
    req_bad("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\n\r\n", 400);
    req_bad("POST / HTTP/1.0\r\n" H "Transfer-Encoding: chunked\r\n\r\n", 400);
    req_bad("POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
}

/* ---- Responses ---- */

static void test_resp_basic(void **state)
{
    (void)state;
    const struct wsg_http_resp *r = resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A:  b \r\n\r\n", 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->minor_version, 1);
    assert_int_equal(r->reason_len, 2);
    assert_memory_equal(r->reason, "OK", 2);
    assert_int_equal(r->num_headers, 2);
    assert_true(hv_is(&r->headers[1], "b"));
    assert_int_equal(r->body, WSG_BODY_LENGTH);
    assert_int_equal(r->content_length, 12);
    assert_true(r->keep_alive);

    r = resp_ok("HTTP/1.1 404 \r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", 0);
    assert_int_equal(r->status, 404);
    assert_int_equal(r->reason_len, 0);
    assert_int_equal(r->body, WSG_BODY_CHUNKED);
    assert_false(r->keep_alive);

    r = resp_ok("HTTP/1.1 200 Very Fine\tIndeed\r\n\r\n", 0);
    assert_int_equal(r->body, WSG_BODY_EOF);
    assert_false(r->keep_alive); /* the close ends the body */

    r = resp_ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 0);
    assert_false(r->keep_alive);
    r = resp_ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", 0);
    assert_true(r->keep_alive);
}

static void test_resp_followed_by_body(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    struct pctx *c = resp_ctx(0);
    check_ok(c, in, sizeof(in) - 1, sizeof(in) - 3);
}

static void test_resp_no_body(void **state)
{
    (void)state;
    const struct wsg_http_resp *r = resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", 1);
    assert_int_equal(r->body, WSG_BODY_NONE);
    assert_true(r->keep_alive);
    r = resp_ok("HTTP/1.1 204 No Content\r\n\r\n", 0);
    assert_int_equal(r->body, WSG_BODY_NONE);
    assert_true(r->keep_alive);
    r = resp_ok("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", 0);
    assert_int_equal(r->body, WSG_BODY_NONE);
    r = resp_ok("HTTP/1.1 100 Continue\r\n\r\n", 0);
    assert_int_equal(r->body, WSG_BODY_NONE);
    r = resp_ok("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 0);
    assert_int_equal(r->body, WSG_BODY_NONE);
}

static void test_resp_101(void **state)
{
    (void)state;
    const struct wsg_http_resp *r =
        resp_ok("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                0);
    assert_int_equal(r->status, 101);
    assert_int_equal(r->body, WSG_BODY_NONE);
    assert_true(hv_is(r->ws_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_true(hv_is(r->upgrade, "websocket"));
    assert_true(r->conn_upgrade);
    r = resp_ok("HTTP/1.1 101 Switching Protocols\r\n\r\n", 0);
    assert_null(r->ws_accept);
    assert_null(r->upgrade);
    assert_false(r->conn_upgrade);
    r = resp_ok("HTTP/1.1 200 OK\r\nSec-WebSocket-Accept: x\r\nContent-Length: 0\r\n\r\n", 0);
    assert_null(r->ws_accept);
}

static void test_resp_invalid(void **state)
{
    (void)state;
    resp_bad("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    resp_bad("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n");
    resp_bad("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
    resp_bad("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    resp_bad("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n");
    resp_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    resp_bad("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    resp_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n");
    resp_bad("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n");
    resp_bad("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n");
    resp_bad("HTTP/1.1 200\r\n\r\n");
    resp_bad("HTTP/1.1 20 OK\r\n\r\n");
    resp_bad("HTTP/1.1 2000 OK\r\n\r\n");
    resp_bad("HTTP/1.1 099 Low\r\n\r\n");
    resp_bad("HTTP/1.1 600 High\r\n\r\n");
    resp_bad("HTTP/2.0 200 OK\r\n\r\n");
    resp_bad("HTTP/1.1  200 OK\r\n\r\n");
    resp_bad("HTTP/1.1 200 O\x01K\r\n\r\n");
    resp_bad("http/1.1 200 OK\r\n\r\n");
}

static void test_resp_nul_and_size(void **state)
{
    (void)state;
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
    check_bad(resp_ctx(0), nul, sizeof(nul) - 1, 502);
    static const struct wsg_http_limits lim = {32, 0, 0};
    struct pctx *c = resp_ctx(0);
    c->lim = &lim;
    const char *big = "HTTP/1.1 200 OK\r\nServer: 0123456789\r\n\r\n";
    check_bad(c, big, strlen(big), 502);
}

/* ---- Chunked scanner ---- */

/* Feeds in[0..len) in pieces of step bytes (0: seeded random cuts). Returns the body length
 * reported, or WSG_PARSE_INVALID. *done gets the scanner's flag. */
static long chunk_feed(const char *in, size_t len, size_t step, unsigned seed, int *done)
{
    struct wsg_http_chunked ch;
    const char *why = NULL;
    size_t pos = 0;
    long total = 0;

    memset(&ch, 0, sizeof(ch));
    srand(seed);
    while (pos < len) {
        size_t n = step != 0 ? step : 1 + (size_t)rand() % 9;
        if (n > len - pos)
            n = len - pos;
        long r = wsg_http_chunked_scan(&ch, (const uint8_t *)in + pos, n, &why);
        if (r < 0) {
            assert_int_equal(r, WSG_PARSE_INVALID);
            assert_non_null(why);
            /* Sticky: the next call fails too. */
            assert_int_equal(wsg_http_chunked_scan(&ch, (const uint8_t *)"0", 1, &why), WSG_PARSE_INVALID);
            *done = ch.done;
            return r;
        }
        assert_true((size_t)r <= n);
        total += r;
        if (ch.done)
            break;
        assert_int_equal((size_t)r, n); /* not done: everything was body */
        pos += n;
    }
    *done = ch.done;
    if (ch.done)
        assert_int_equal(wsg_http_chunked_scan(&ch, (const uint8_t *)"x", 1, &why), 0);
    return total;
}

/* Whole (at a guard page), byte by byte and random cuts must agree. */
static void chunk_check(const char *in, size_t len, long want, int want_done)
{
    struct guard g;
    int done;

    guard_init(&g, len);
    const char *at = guard_place(&g, in, len);
    long r = chunk_feed(at, len, len, 0, &done);
    assert_int_equal(r, want);
    assert_int_equal(done, want_done);
    r = chunk_feed(at, len, 1, 0, &done);
    assert_int_equal(r, want);
    assert_int_equal(done, want_done);
    for (unsigned seed = 1; seed <= 16; seed++) {
        r = chunk_feed(at, len, 0, seed, &done);
        assert_int_equal(r, want);
        assert_int_equal(done, want_done);
    }
    guard_free(&g);
}

static void chunk_ok(const char *body, const char *next)
{
    char in[4096];
    size_t bl = strlen(body);
    snprintf(in, sizeof(in), "%s%s", body, next);
    chunk_check(in, strlen(in), (long)bl, 1);
}

static void chunk_bad(const char *in)
{
    chunk_check(in, strlen(in), WSG_PARSE_INVALID, 0);
}

static void test_chunked_valid(void **state)
{
    (void)state;
    chunk_ok("0\r\n\r\n", "");
    chunk_ok("5\r\nhello\r\n0\r\n\r\n", "");
    chunk_ok("5;name=val;x=\"q t\"\r\nhello\r\nA\r\n0123456789\r\n000\r\n\r\n", "");
    chunk_ok("5 ; ext\r\nhello\r\n0;last\r\nX-Sum: abc\r\nX-Empty:\r\n\r\n", "");
    chunk_ok("1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n", "");
    chunk_ok("0000000000000003\r\nabc\r\n0\r\n\r\n", ""); /* 16 digits */
    chunk_ok("3\r\n\r\n\r\r\n0\r\n\r\n", "");             /* data may hold CRLF */
}

static void test_chunked_followed_by_next(void **state)
{
    (void)state;
    chunk_ok("5\r\nhello\r\n0\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    chunk_ok("3\r\nabc\r\n0\r\nT: v\r\n\r\n", "POST /x HTTP/1.1\r\n");
}

static void test_chunked_partial(void **state)
{
    (void)state;
    const char *in = "5\r\nhello\r\n0\r\n";
    chunk_check(in, strlen(in), (long)strlen(in), 0);
    /* The largest size: accepted, data still pending. */
    in = "4000000000000000\r\nabc";
    chunk_check(in, strlen(in), (long)strlen(in), 0);
}

static void test_chunked_invalid(void **state)
{
    (void)state;
    chunk_bad("fg\r\n");
    chunk_bad("g\r\n");
    chunk_bad("\r\n");
    chunk_bad(";x\r\n");
    chunk_bad("-5\r\n");
    chunk_bad("0x5\r\nhello\r\n");
    chunk_bad("FFFFFFFFFFFFFFFFF\r\n");
    chunk_bad("00000000000000001\r\n"); /* 17 digits */
    chunk_bad("4000000000000001\r\n");  /* over 2^62 */
    chunk_bad("5\r\nhelloX\r\n0\r\n\r\n");
    chunk_bad("5\r\nhello\r0\r\n\r\n");
    chunk_bad("5\r\nhello\n0\r\n\r\n");
    chunk_bad("5\nhello\r\n0\r\n\r\n");
    chunk_bad("5\r\nhello\r\n0\n\r\n");
    chunk_bad("5\r\nhello\r\n0\r\n\n");
    chunk_bad("5\r\nhello\r\n0\r\n\rX");
    chunk_bad("5\rxhello\r\n");
    chunk_bad("5 x\r\nhello\r\n");
    chunk_bad("5;a\x01\r\nhello\r\n");
    chunk_bad("5;a\nhello\r\n");
    chunk_bad("0\r\nX : v\r\n\r\n");
    chunk_bad("0\r\nX: v\r\n w\r\n\r\n");
    chunk_bad("0\r\nX: v\nY: w\r\n\r\n");
    chunk_bad("0\r\nX: v\x01\r\n\r\n");
    chunk_bad("0\r\n: v\r\n\r\n");
}

static void test_chunked_limits(void **state)
{
    (void)state;
    static char in[12000];
    /* chunk-ext: 1024 bytes after the size are fine, 1025 are not. */
    memset(in, 0, sizeof(in));
    in[0] = '1';
    in[1] = ';';
    memset(in + 2, 'e', 1023);
    strcat(in, "\r\nx\r\n0\r\n\r\n");
    chunk_check(in, strlen(in), (long)strlen(in), 1);
    memset(in, 0, sizeof(in));
    in[0] = '1';
    in[1] = ';';
    memset(in + 2, 'e', 1024);
    strcat(in, "\r\nx\r\n0\r\n\r\n");
    chunk_bad(in);
    /* Trailers: 8 KiB in all (final CRLF included). */
    memset(in, 0, sizeof(in));
    strcpy(in, "0\r\nX: ");
    memset(in + 6, 'v', 8192 - 3 - 4);
    strcat(in, "\r\n\r\n");
    assert_int_equal(strlen(in) - 3, 8192);
    chunk_check(in, strlen(in), (long)strlen(in), 1);
    memset(in, 0, sizeof(in));
    strcpy(in, "0\r\nX: ");
    memset(in + 6, 'v', 8192 - 3 - 4 + 1);
    strcat(in, "\r\n\r\n");
    chunk_bad(in);
}

/* ---- Writers ---- */

static struct wsg_buf out_buf;

static void expect_out(struct wsg_buf *b, const char *want)
{
    uint32_t n;
    const uint8_t *p = wsg_buf_peek(b, &n);
    if (n != strlen(want) || memcmp(p, want, n) != 0)
        fail_msg("got:\n%.*s\nwant:\n%s", (int)n, p != NULL ? (const char *)p : "", want);
}

/* Every capacity short of the output: -1 and the buffer exactly as before (here "XY"). */
typedef int (*write_fn)(const void *ctx, struct wsg_buf *out);

static void expect_no_room(write_fn fn, const void *ctx, size_t full_len)
{
    for (uint32_t cap = 0; cap < full_len + 2; cap++) {
        struct wsg_buf b;
        wsg_buf_setup(&b, cap);
        size_t pre = cap >= 2 ? wsg_buf_put(&b, "XY", 2) : 0;
        /* Leave head != 0 sometimes, so a put has to slide. */
        if (cap >= 2 && (cap & 1)) {
            wsg_buf_consume(&b, 1);
            pre = 1;
        }
        if (pre + full_len <= cap) {
            wsg_buf_free(&b);
            continue;
        }
        assert_int_equal(fn(ctx, &b), -1);
        assert_int_equal(wsg_buf_len(&b), pre);
        if (pre != 0) {
            uint32_t n;
            const uint8_t *p = wsg_buf_peek(&b, &n);
            assert_memory_equal(p, pre == 2 ? "XY" : "Y", pre);
        }
        wsg_buf_free(&b);
    }
}

struct wreq {
    const struct wsg_http_req *req;
    const struct wsg_http_fwd *fwd;
};

static int call_write_request(const void *ctx, struct wsg_buf *out)
{
    const struct wreq *w = ctx;
    return wsg_http_write_request(w->req, w->fwd, out);
}

static void golden_request(const char *in, const char *ip, const char *want)
{
    struct wsg_http_req req;
    const char *why = NULL;
    int status = 0;
    struct wsg_http_fwd fwd = {.client_ip = ip, .proto = "https"};
    int rc = wsg_http_parse_request(in, strlen(in), &lim_default, &req, &why, &status);
    if (rc != (int)strlen(in))
        fail_msg("parse: %d %s", rc, why ? why : "-");
    wsg_buf_setup(&out_buf, 4096);
    assert_int_equal(wsg_http_write_request(&req, &fwd, &out_buf), 0);
    expect_out(&out_buf, want);
    wsg_buf_free(&out_buf);
    struct wreq w = {&req, &fwd};
    expect_no_room(call_write_request, &w, strlen(want));
}

static void test_write_request_get(void **state)
{
    (void)state;
    golden_request("GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n"
                   "Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
                   "Proxy-Connection: x\r\nTrailer: X\r\nUpgrade: h2c\r\nX-Real-IP: 6.6.6.6\r\n"
                   "X-Forwarded-Proto: http\r\nX-Forwarded-Host: evil\r\nAccept:   */*\r\n\r\n",
                   "192.0.2.7",
                   "GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n"
                   "Connection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
                   "X-Forwarded-Host: example.com\r\nX-Real-IP: 192.0.2.7\r\n"
                   "Forwarded: for=192.0.2.7;host=\"example.com\";proto=https\r\n\r\n");
}

static void test_write_request_existing_xff(void **state)
{
    (void)state;
    golden_request(
        "POST /up HTTP/1.1\r\nHost: a.test:8443\r\nX-Forwarded-For: 10.0.0.1\r\n"
        "Content-Length: 3\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\nForwarded: for=10.0.0.1\r\n\r\n",
        "192.0.2.7",
        "POST /up HTTP/1.1\r\nHost: a.test:8443\r\nContent-Length: 3\r\nConnection: keep-alive\r\n"
        "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: a.test:8443\r\nX-Real-IP: 192.0.2.7\r\n"
        "Forwarded: for=10.0.0.1, for=192.0.2.7;host=\"a.test:8443\";proto=https\r\n\r\n");
}

static void test_write_request_ipv6_chunked(void **state)
{
    (void)state;
    golden_request(
        "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: h\r\n\r\n", "2001:db8::1",
        "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: h\r\nConnection: keep-alive\r\n"
        "X-Forwarded-For: 2001:db8::1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n"
        "X-Real-IP: 2001:db8::1\r\nForwarded: for=\"[2001:db8::1]\";host=\"h\";proto=https\r\n\r\n");
}

static void test_write_request_http10(void **state)
{
    (void)state;
    golden_request(
        "GET / HTTP/1.0\r\nConnection: Host, close\r\n\r\n", "192.0.2.7",
        "GET / HTTP/1.1\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\n"
        "X-Forwarded-Proto: https\r\nX-Real-IP: 192.0.2.7\r\nForwarded: for=192.0.2.7;proto=https\r\n\r\n");
    /* Connection cannot strip Host or the framing headers from the upstream. */
    golden_request("POST / HTTP/1.1\r\nHost: h\r\nConnection: Host, Content-Length, X-A\r\nX-A: 1\r\n"
                   "Content-Length: 1\r\n\r\n",
                   "192.0.2.7",
                   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: keep-alive\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n"
                   "X-Real-IP: 192.0.2.7\r\nForwarded: for=192.0.2.7;host=\"h\";proto=https\r\n\r\n");
}

static void test_write_request_upgrade(void **state)
{
    (void)state;
    golden_request(
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: chat\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo\r\n\r\n",
        "192.0.2.7",
        "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: x-foo\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: 192.0.2.7\r\n"
        "X-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\nX-Real-IP: 192.0.2.7\r\n"
        "Forwarded: for=192.0.2.7;host=\"h\";proto=https\r\n\r\n");
    /* Only permessage-deflate offered: the header goes. */
    golden_request("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                   "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                   "192.0.2.7",
                   "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n"
                   "X-Real-IP: 192.0.2.7\r\nForwarded: for=192.0.2.7;host=\"h\";proto=https\r\n\r\n");
}

struct wresp {
    const struct wsg_http_resp *resp;
    int keep_alive;
};

static int call_write_response(const void *ctx, struct wsg_buf *out)
{
    const struct wresp *w = ctx;
    return wsg_http_write_response(w->resp, w->keep_alive, out);
}

static void golden_response(const char *in, int keep_alive, const char *want)
{
    struct wsg_http_resp resp;
    const char *why = NULL;
    int rc = wsg_http_parse_response(in, strlen(in), &lim_default, 0, &resp, &why);
    if (rc != (int)strlen(in))
        fail_msg("parse: %d %s", rc, why ? why : "-");
    wsg_buf_setup(&out_buf, 4096);
    assert_int_equal(wsg_http_write_response(&resp, keep_alive, &out_buf), 0);
    expect_out(&out_buf, want);
    wsg_buf_free(&out_buf);
    struct wresp w = {&resp, keep_alive};
    expect_no_room(call_write_response, &w, strlen(want));
}

static void test_write_response_chunked(void **state)
{
    (void)state;
    golden_response("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
                    "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTrailer: X-Sum\r\n"
                    "Upgrade: h2c\r\nProxy-Connection: k\r\nTE: x\r\nSet-Cookie: a=b\r\n\r\n",
                    0,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
                    "Set-Cookie: a=b\r\nConnection: close\r\n\r\n");
    golden_response("HTTP/1.0 404 Nope\r\nContent-Length: 0\r\n\r\n", 1,
                    "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    golden_response("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 1,
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    golden_response("HTTP/1.1 100 Continue\r\n\r\n", 1, "HTTP/1.1 100 Continue\r\n\r\n");
}

static void test_write_response_101(void **state)
{
    (void)state;
    golden_response(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
        1,
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        "Sec-WebSocket-Protocol: chat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
}

struct werr {
    int status;
    const char *extra;
};

static int call_write_error(const void *ctx, struct wsg_buf *out)
{
    const struct werr *w = ctx;
    return wsg_http_write_error(w->status, w->extra, out);
}

static void golden_error(int status, const char *extra, const char *want)
{
    wsg_buf_setup(&out_buf, 4096);
    assert_int_equal(wsg_http_write_error(status, extra, &out_buf), 0);
    expect_out(&out_buf, want);
    wsg_buf_free(&out_buf);
    struct werr w = {status, extra};
    expect_no_room(call_write_error, &w, strlen(want));
}

static void test_write_error(void **state)
{
    (void)state;
    golden_error(400, NULL,
                 "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
                 "Connection: close\r\n\r\n400 Bad Request\n");
    golden_error(426, "Sec-WebSocket-Version: 13\r\n",
                 "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
                 "Connection: close\r\nSec-WebSocket-Version: 13\r\n\r\n426 Upgrade Required\n");
    golden_error(431, NULL,
                 "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
                 "Content-Length: 36\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large\n");
}

static void test_reason_phrases(void **state)
{
    (void)state;
    static const int codes[] = {100, 101, 200, 204, 301, 302, 304, 400, 403, 404, 405, 408,
                                413, 414, 426, 429, 431, 500, 501, 502, 503, 504, 505};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *p = wsg_http_reason_phrase(codes[i]);
        assert_non_null(p);
        assert_true(strlen(p) > 0);
        assert_string_not_equal(p, wsg_http_reason_phrase(599));
    }
    assert_string_equal(wsg_http_reason_phrase(503), "Service Unavailable");
    assert_string_equal(wsg_http_reason_phrase(414), "URI Too Long");
    assert_non_null(wsg_http_reason_phrase(299));
    assert_non_null(wsg_http_reason_phrase(0));
}

/* A route's subprotocol allowlist: the offer forwarded is the filtered one, on one line, and a
 * filtered-out offer drops the header entirely. */
static void test_write_filtered_subprotocols(void **state)
{
    (void)state;
    static const char in[] =
        "GET /chat HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: foo, chat.v1\r\nSec-WebSocket-Protocol: bar\r\n\r\n";
    struct wsg_http_req req;
    const char *why = NULL;
    int status = 0;
    assert_int_equal(wsg_http_parse_request(in, sizeof(in) - 1, NULL, &req, &why, &status),
                     (int)sizeof(in) - 1);
    for (int keep = 0; keep < 2; keep++) {
        struct wsg_buf out;
        wsg_buf_setup(&out, 4096);
        struct wsg_http_fwd fwd = {.client_ip = "192.0.2.1",
                                   .proto = "https",
                                   .ws_protocols = "chat.v1",
                                   .ws_protocols_len = keep ? 7 : 0};
        assert_int_equal(wsg_http_write_request(&req, &fwd, &out), 0);
        uint32_t len;
        const uint8_t *p = wsg_buf_peek(&out, &len);
        char *head = strndup((const char *)p, len);
        assert_null(strstr(head, "foo"));
        assert_null(strstr(head, "bar"));
        const char *line = strstr(head, "Sec-WebSocket-Protocol: chat.v1\r\n");
        if (keep) {
            assert_non_null(line);
            assert_null(strstr(line + 1, "Sec-WebSocket-Protocol"));
        } else {
            assert_null(strstr(head, "Sec-WebSocket-Protocol"));
        }
        free(head);
        wsg_buf_free(&out);
    }
}

static void test_find(void **state)
{
    (void)state;
    const struct wsg_http_req *r = req_ok("GET / HTTP/1.1\r\n" H "X-A: 1\r\nx-a: 2\r\n\r\n");
    assert_true(hv_is(wsg_http_find(r->headers, r->num_headers, "X-a"), "1"));
    assert_null(wsg_http_find(r->headers, r->num_headers, "X-"));
    assert_null(wsg_http_find(r->headers, r->num_headers, "X-AB"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_req_simple_get),
        cmocka_unit_test(test_req_followed_by_body),
        cmocka_unit_test(test_req_content_length_max),
        cmocka_unit_test(test_req_chunked),
        cmocka_unit_test(test_req_http10),
        cmocka_unit_test(test_req_connection_close),
        cmocka_unit_test(test_req_upgrade_ws),
        cmocka_unit_test(test_req_expect_continue),
        cmocka_unit_test(test_req_target_forms),
        cmocka_unit_test(test_req_leading_crlf_and_obs_text),
        cmocka_unit_test(test_req_line_syntax),
        cmocka_unit_test(test_req_version_505),
        cmocka_unit_test(test_req_target_414),
        cmocka_unit_test(test_req_head_431),
        cmocka_unit_test(test_req_too_many_headers),
        cmocka_unit_test(test_req_bare_lf),
        cmocka_unit_test(test_req_bare_cr),
        cmocka_unit_test(test_req_obs_fold),
        cmocka_unit_test(test_req_field_name),
        cmocka_unit_test(test_req_field_value_ctl),
        cmocka_unit_test(test_req_host),
        cmocka_unit_test(test_req_content_length_invalid),
        cmocka_unit_test(test_req_cl_and_te),
        cmocka_unit_test(test_req_te_unsupported),
        cmocka_unit_test(test_req_te_smuggling_syntax),
        cmocka_unit_test(test_resp_basic),
        cmocka_unit_test(test_resp_followed_by_body),
        cmocka_unit_test(test_resp_no_body),
        cmocka_unit_test(test_resp_101),
        cmocka_unit_test(test_resp_invalid),
        cmocka_unit_test(test_resp_nul_and_size),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_followed_by_next),
        cmocka_unit_test(test_chunked_partial),
        cmocka_unit_test(test_chunked_invalid),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_write_request_get),
        cmocka_unit_test(test_write_request_existing_xff),
        cmocka_unit_test(test_write_request_ipv6_chunked),
        cmocka_unit_test(test_write_request_http10),
        cmocka_unit_test(test_write_request_upgrade),
        cmocka_unit_test(test_write_response_chunked),
        cmocka_unit_test(test_write_response_101),
        cmocka_unit_test(test_write_error),
        cmocka_unit_test(test_reason_phrases),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_write_filtered_subprotocols),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
