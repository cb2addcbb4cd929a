/*
 * http1_response.c - libFuzzer target for the upstream-side HTTP/1.1 response head parser, the
 * response rewriter and the chunked body scanner (gateway/http1.h).
 *
 * Input: [limits/options byte][split byte] then the bytes an upstream sends.
 *  - wsg_http_parse_response (answering a HEAD request when the option byte says so);
 *  - on success: the head alone parses the same, one byte less is PARTIAL, and
 *    wsg_http_write_response's output parses again with the same status and body framing (or,
 *    when it does not fit, leaves the buffer as it was);
 *  - the bytes after the head (the whole input if it is invalid) go through the chunked scanner
 *    whole, in two pieces and byte by byte, which must agree.
 */
#include <string.h>

#include "fuzz/fuzz.h"
#include "fuzz/http_common.h"
#include "policies/base/buf.h"
#include "gateway/http1.h"

static const struct wsg_http_limits lims[4] = {
    {0, 0, 0},
    {8192, 4096, 100},
    {256, 64, 8},
    {65536, 65536, 100},
};

static void check_rewrite(const struct wsg_http_resp *resp, int is_head, uint8_t opt)
{
    uint32_t caps[4] = {48, 512, 4096, 262144};
    struct wsg_buf out;
    memset(&out, 0, sizeof(out));
    wsg_buf_setup(&out, caps[(opt >> 3) & 3]);
    uint32_t pre = (opt & 0x20) ? 5 : 0;
    FUZZ_CHECK(wsg_buf_put(&out, "JUNK!", pre) == pre);
    int keep = (opt >> 6) & 1;
    if (wsg_http_write_response(resp, keep, &out) != 0) {
        FUZZ_CHECK(wsg_buf_len(&out) == pre);
        wsg_buf_free(&out);
        return;
    }
    uint32_t len;
    const uint8_t *p = wsg_buf_peek(&out, &len);
    FUZZ_CHECK(p != NULL && len > pre);
    size_t hlen = len - pre;
    char *head = fuzz_dup(p + pre, hlen);
    /* The rewriter adds at most two fields (Upgrade + Connection). */
    if (resp->num_headers + 2 <= WSG_HTTP_MAX_HEADERS) {
        struct wsg_http_limits big = {hlen + 1, hlen + 1, WSG_HTTP_MAX_HEADERS};
        struct wsg_http_resp *again = malloc(sizeof(*again));
        FUZZ_CHECK(again != NULL);
        const char *why = NULL;
        int n = wsg_http_parse_response(head, hlen, &big, is_head, again, &why);
        if (n != (int)hlen)
            fprintf(stderr, "rewritten head does not parse (%d: %s):\n%.*s\n", n, why ? why : "", (int)hlen,
                    head);
        FUZZ_CHECK(n == (int)hlen);
        FUZZ_CHECK(again->status == resp->status);
        FUZZ_CHECK(again->minor_version == 1);
        /* HTTP/1.0 responses are relabelled 1.1; their framing must not change meaning. */
        FUZZ_CHECK(again->body == resp->body);
        FUZZ_CHECK(again->content_length == resp->content_length);
        if (resp->status >= 200 && resp->body != WSG_BODY_EOF)
            FUZZ_CHECK(again->keep_alive == (unsigned)keep);
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
    int is_head = (opt >> 2) & 1;
    char *buf = fuzz_dup(in.p, in.n);
    struct wsg_http_resp *resp = malloc(sizeof(*resp));
    FUZZ_CHECK(resp != NULL);
    const char *why = NULL;
    int n = wsg_http_parse_response(buf, in.n, lim, is_head, resp, &why);
    size_t body_off = 0;
    if (fuzz_verbose())
        fprintf(stderr, "response: %d %s\n", n, why ? why : "");
    if (n == WSG_PARSE_INVALID) {
        FUZZ_CHECK(why != NULL);
    } else if (n != WSG_PARSE_PARTIAL) {
        FUZZ_CHECK(n > 0 && (size_t)n <= in.n);
        body_off = (size_t)n;
        FUZZ_CHECK(resp->status >= 100 && resp->status <= 599);
        FUZZ_CHECK(resp->num_headers <= WSG_HTTP_MAX_HEADERS);
        if (is_head || resp->status < 200 || resp->status == 204 || resp->status == 304)
            FUZZ_CHECK(resp->body == WSG_BODY_NONE);
        if (resp->body == WSG_BODY_EOF)
            FUZZ_CHECK(!resp->keep_alive);
        if (resp->ws_accept != NULL)
            FUZZ_CHECK(resp->status == 101);
        for (size_t i = 0; i < resp->num_headers; i++) {
            const struct wsg_http_header *h = &resp->headers[i];
            FUZZ_CHECK(h->name >= buf && h->name + h->name_len <= buf + n);
            FUZZ_CHECK(h->value >= buf && h->value + h->value_len <= buf + n);
        }
        char *head = fuzz_dup(in.p, (size_t)n);
        struct wsg_http_resp *again = malloc(sizeof(*again));
        FUZZ_CHECK(again != NULL);
        FUZZ_CHECK(wsg_http_parse_response(head, (size_t)n, lim, is_head, again, &why) == n);
        FUZZ_CHECK(again->status == resp->status && again->num_headers == resp->num_headers &&
                   again->body == resp->body && again->content_length == resp->content_length &&
                   again->keep_alive == resp->keep_alive);
        FUZZ_CHECK(wsg_http_parse_response(head, (size_t)n - 1, lim, is_head, again, &why) ==
                   WSG_PARSE_PARTIAL);
        free(again);
        free(head);
        check_rewrite(resp, is_head, split ^ opt);
    }
    chunk_scan_check((const uint8_t *)buf + body_off, in.n - body_off, split);
    free(resp);
    free(buf);
    return 0;
}
