/*
 * http1_request.c - libFuzzer target for the client-side HTTP/1.1 request head parser, the request
 * rewriter and the chunked body scanner (gateway/http1.h).
 *
 * Input: [limits/options byte][split byte] then the bytes a client sends.
 *  - wsg_http_parse_request over the bytes, with limits chosen by the first byte;
 *  - on success: the same head parses alone to the same result, one byte less is PARTIAL, and
 *    wsg_http_write_request's output (into a buffer of input-chosen size, possibly pre-filled)
 *    parses again as a request with the same method, target, framing and upgrade (or, when it
 *    does not fit, leaves the buffer exactly as it was);
 *  - the bytes after the head (the whole input if the head is invalid) go through
 *    wsg_http_chunked_scan whole, cut in two at the split byte's point, and byte by byte: all
 *    three must agree.
 */
#include <string.h>

#include "fuzz/fuzz.h"
#include "fuzz/http_common.h"
#include "policies/base/buf.h"
#include "gateway/http1.h"

static const struct wsg_http_limits lims[4] = {
    {0, 0, 0},         /* library defaults */
    {8192, 4096, 100}, /* gateway defaults */
    {256, 64, 8},      /* tight: 431/414 paths */
    {65536, 65536, 100},
};

static void check_status(int status)
{
    FUZZ_CHECK(status == 400 || status == 414 || status == 431 || status == 501 || status == 505);
}

static void check_rewrite(const struct wsg_http_req *req, uint8_t opt)
{
    static const char *const ips[4] = {"192.0.2.7", "2001:db8::1", "127.0.0.1", "::ffff:10.0.0.1"};
    struct wsg_http_fwd fwd = {.client_ip = ips[opt & 3], .proto = (opt & 4) ? "http" : "https"};
    uint32_t caps[4] = {64, 512, 4096, 262144};
    struct wsg_buf out;
    memset(&out, 0, sizeof(out));
    wsg_buf_setup(&out, caps[(opt >> 3) & 3]);
    uint32_t pre = (opt & 0x20) ? 7 : 0; /* bytes already queued before the head */
    FUZZ_CHECK(wsg_buf_put(&out, "GARBAGE", pre) == pre);
    if (wsg_http_write_request(req, &fwd, &out) != 0) {
        FUZZ_CHECK(wsg_buf_len(&out) == pre); /* nothing of a head that did not fit stays */
        wsg_buf_free(&out);
        return;
    }
    uint32_t len;
    const uint8_t *p = wsg_buf_peek(&out, &len);
    FUZZ_CHECK(p != NULL && len > pre);
    FUZZ_CHECK(memcmp(p, "GARBAGE", pre) == 0);
    char *head = fuzz_dup(p + pre, len - pre);
    size_t hlen = len - pre;
    /* Upstream-bound heads must themselves be valid requests. The rewriter adds up to seven
     * fields, so a client head near the field-count limit cannot be re-checked with our parser.
     * A request without Host (HTTP/1.0) never reaches the rewriter: the connection answers 400
     * first (gateway/conn.c), since the HTTP/1.1 request it would become requires Host. */
    if (req->num_headers + 7 <= WSG_HTTP_MAX_HEADERS && req->host != NULL) {
        struct wsg_http_limits big = {hlen + 1, hlen + 1, WSG_HTTP_MAX_HEADERS};
        struct wsg_http_req *again = malloc(sizeof(*again));
        FUZZ_CHECK(again != NULL);
        const char *why = NULL;
        int status = 0;
        int n = wsg_http_parse_request(head, hlen, &big, again, &why, &status);
        if (n != (int)hlen)
            fprintf(stderr, "rewritten head does not parse (%d: %s):\n%.*s\n", n, why ? why : "", (int)hlen,
                    head);
        FUZZ_CHECK(n == (int)hlen);
        FUZZ_CHECK(again->method_len == req->method_len &&
                   memcmp(again->method, req->method, req->method_len) == 0);
        FUZZ_CHECK(again->target_len == req->target_len &&
                   memcmp(again->target, req->target, req->target_len) == 0);
        FUZZ_CHECK(again->minor_version == 1);
        FUZZ_CHECK(again->body == req->body);
        FUZZ_CHECK(again->content_length == req->content_length);
        FUZZ_CHECK(again->upgrade_ws == req->upgrade_ws);
        FUZZ_CHECK(again->host != NULL && again->host->value_len == req->host->value_len &&
                   memcmp(again->host->value, req->host->value, req->host->value_len) == 0);
        free(again);
    }
    free(head);
    wsg_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t opt = fuzz_byte(&in), split = fuzz_byte(&in);
    const struct wsg_http_limits *lim = &lims[opt & 3];
    /* The parser gets an exact-size copy: any read past the end is an ASan report. */
    char *buf = fuzz_dup(in.p, in.n);
    struct wsg_http_req *req = malloc(sizeof(*req));
    FUZZ_CHECK(req != NULL);
    const char *why = NULL;
    int status = 0;
    int n = wsg_http_parse_request(buf, in.n, lim, req, &why, &status);
    size_t body_off = 0;
    if (fuzz_verbose())
        fprintf(stderr, "request: %d status %d %s\n", n, status, why ? why : "");
    if (n == WSG_PARSE_INVALID) {
        FUZZ_CHECK(why != NULL);
        check_status(status);
    } else if (n != WSG_PARSE_PARTIAL) {
        FUZZ_CHECK(n > 0 && (size_t)n <= in.n);
        body_off = (size_t)n;
        FUZZ_CHECK(req->minor_version == 0 || req->minor_version == 1);
        FUZZ_CHECK(req->num_headers <= WSG_HTTP_MAX_HEADERS);
        FUZZ_CHECK(req->host != NULL || req->minor_version == 0);
        FUZZ_CHECK(req->body == WSG_BODY_NONE || req->body == WSG_BODY_LENGTH ||
                   req->body == WSG_BODY_CHUNKED);
        for (size_t i = 0; i < req->num_headers; i++) {
            const struct wsg_http_header *h = &req->headers[i];
            FUZZ_CHECK(h->name >= buf && h->name + h->name_len <= buf + n);
            FUZZ_CHECK(h->value >= buf && h->value + h->value_len <= buf + n);
        }
        /* The head alone parses the same; one byte less is incomplete. */
        char *head = fuzz_dup(in.p, (size_t)n);
        struct wsg_http_req *again = malloc(sizeof(*again));
        FUZZ_CHECK(again != NULL);
        FUZZ_CHECK(wsg_http_parse_request(head, (size_t)n, lim, again, &why, &status) == n);
        FUZZ_CHECK(again->num_headers == req->num_headers && again->body == req->body &&
                   again->content_length == req->content_length && again->upgrade_ws == req->upgrade_ws &&
                   again->keep_alive == req->keep_alive);
        FUZZ_CHECK(wsg_http_parse_request(head, (size_t)n - 1, lim, again, &why, &status) ==
                   WSG_PARSE_PARTIAL);
        free(again);
        free(head);
        check_rewrite(req, split ^ opt);
    }
    chunk_scan_check((const uint8_t *)buf + body_off, in.n - body_off, split);
    free(req);
    free(buf);
    return 0;
}
