/*
 * http_common.h - checks shared by the http1_request and http1_response targets: the chunked
 * scanner must give the same answer whatever the cuts (whole, two pieces at an input-chosen point,
 * one byte at a time), and a head parser must agree with itself on a prefix of the input.
 */
#ifndef WSG_FUZZ_HTTP_COMMON_H
#define WSG_FUZZ_HTTP_COMMON_H

#include <string.h>

#include "fuzz/fuzz.h"
#include "gateway/http1.h"

struct chunk_result {
    int invalid;     /* the scanner said WSG_PARSE_INVALID */
    size_t consumed; /* body bytes before the end (or before the error) */
    int done;
};

/* Feeds p[0..len) in pieces cut at the offsets cuts[0..ncuts) (ascending). */
static inline struct chunk_result chunk_scan_cuts(const uint8_t *p, size_t len, const size_t *cuts,
                                                  size_t ncuts)
{
    struct wsg_http_chunked ch;
    struct chunk_result r = {0, 0, 0};
    memset(&ch, 0, sizeof(ch));
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && at <= len; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end < at)
            end = at;
        if (end > len)
            end = len;
        size_t piece = end - at;
        const char *why = NULL;
        long m = wsg_http_chunked_scan(&ch, p + at, piece, &why);
        if (m < 0) {
            FUZZ_CHECK(m == WSG_PARSE_INVALID);
            FUZZ_CHECK(why != NULL);
            r.invalid = 1;
            return r;
        }
        FUZZ_CHECK((size_t)m <= piece);
        /* Fewer bytes than given only when the body ended inside this piece. */
        FUZZ_CHECK((size_t)m == piece || ch.done);
        r.consumed += (size_t)m;
        at = end;
        if (ch.done) {
            r.done = 1;
            return r;
        }
    }
    return r;
}

static inline void chunk_scan_check(const uint8_t *p, size_t len, uint8_t split_sel)
{
    struct chunk_result whole = chunk_scan_cuts(p, len, NULL, 0);
    size_t cut = len * split_sel / 255;
    struct chunk_result two = chunk_scan_cuts(p, len, &cut, 1);
    FUZZ_CHECK(whole.invalid == two.invalid);
    if (!whole.invalid) {
        FUZZ_CHECK(whole.done == two.done);
        FUZZ_CHECK(whole.consumed == two.consumed);
    }
    /* One byte per call: the hardest split (the scanner keeps all its state in the struct). */
    struct wsg_http_chunked ch;
    memset(&ch, 0, sizeof(ch));
    size_t consumed = 0;
    int invalid = 0;
    for (size_t i = 0; i < len && !ch.done; i++) {
        const char *why = NULL;
        long m = wsg_http_chunked_scan(&ch, p + i, 1, &why);
        if (m < 0) {
            invalid = 1;
            break;
        }
        FUZZ_CHECK(m == 1 || (m == 0 && ch.done));
        consumed += (size_t)m;
    }
    FUZZ_CHECK(invalid == whole.invalid);
    if (!invalid) {
        FUZZ_CHECK(ch.done == whole.done);
        FUZZ_CHECK(consumed == whole.consumed);
    }
    /* A scanner that failed stays failed. */
    if (invalid) {
        const char *why = NULL;
        FUZZ_CHECK(wsg_http_chunked_scan(&ch, (const uint8_t *)"0\r\n\r\n", 5, &why) == WSG_PARSE_INVALID);
    }
}

/* A copy of p[0..len) in its own exact-size allocation, so ASan sees any read past its end. */
static inline char *fuzz_dup(const uint8_t *p, size_t len)
{
    char *c = malloc(len ? len : 1);
    FUZZ_CHECK(c != NULL);
    if (len)
        memcpy(c, p, len);
    return c;
}

#endif
