/*
 * affinity_cookie.c - libFuzzer target for the affinity cookie reader (gateway/affinity.h): the
 * Cookie header parser and the token check behind `affinity cookie`.
 *
 * Input: [ctrl][header bytes...]. ctrl bit 0: every "@@" in the header is replaced by a token
 * signed with the harness key (so the fuzzer works around valid tokens, not only random ones);
 * bits 1-2: that token's expiry relative to the clock (-1 s, +0 s, +1 s, +1 day); bits 3-7 pick the
 * peer id it names.
 *
 * Invariants: the reader sees an exact-size copy (any over-read is caught by ASan); the result is
 * one of the four; VALID returns an id and an expiry after the clock whose token (re-made with the
 * harness key) occurs in the header as a value of that cookie name; with another key the same
 * header is never VALID; a verdict other than NONE implies a "wsgate_upstream=" pair in the header.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "gateway/affinity.h"

#define NOW 1800000000u

static const uint8_t key[WSG_AFF_KEY_LEN] = "0123456789abcdef0123456789abcde";
static const uint8_t other[WSG_AFF_KEY_LEN] = "fedcba9876543210fedcba987654321";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t ctrl = fuzz_byte(&in);
    if (in.n > 4096)
        return 0;
    static const int64_t rel[4] = {-1, 0, 1, 86400};
    char tok[WSG_AFF_TOKEN_LEN + 1];
    wsg_affinity_make(key, (uint64_t)(ctrl >> 3) * 0x9E3779B97F4A7C15ULL,
                      (uint32_t)(NOW + rel[(ctrl >> 1) & 3]), tok);
    /* the header, with "@@" expanded when asked */
    size_t cap = in.n * WSG_AFF_TOKEN_LEN / 2 + 1, len = 0;
    char *hdr = malloc(cap);
    FUZZ_CHECK(hdr != NULL);
    for (size_t i = 0; i < in.n; i++) {
        if ((ctrl & 1) && i + 1 < in.n && in.p[i] == '@' && in.p[i + 1] == '@') {
            memcpy(hdr + len, tok, WSG_AFF_TOKEN_LEN);
            len += WSG_AFF_TOKEN_LEN;
            i++;
            continue;
        }
        hdr[len++] = (char)in.p[i];
    }
    char *copy = malloc(len ? len : 1); /* exact size */
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, hdr, len);

    uint64_t id = 0;
    uint32_t exp = 0;
    enum wsg_aff_result r = wsg_affinity_find(key, "wsgate_upstream", copy, len, NOW, &id, &exp);
    FUZZ_CHECK(r == WSG_AFF_NONE || r == WSG_AFF_VALID || r == WSG_AFF_FORGED || r == WSG_AFF_EXPIRED);
    if (r == WSG_AFF_VALID) {
        FUZZ_CHECK(exp > NOW);
        char again[WSG_AFF_TOKEN_LEN + 1];
        wsg_affinity_make(key, id, exp, again);
        FUZZ_CHECK(memmem(copy, len, again, WSG_AFF_TOKEN_LEN) != NULL);
    }
    uint64_t id2;
    uint32_t exp2;
    FUZZ_CHECK(wsg_affinity_find(other, "wsgate_upstream", copy, len, NOW, &id2, &exp2) != WSG_AFF_VALID);
    /* a verdict other than NONE needs a pair of that name */
    if (r != WSG_AFF_NONE)
        FUZZ_CHECK(memmem(copy, len, "wsgate_upstream=", 16) != NULL);
    if (fuzz_verbose())
        fprintf(stderr, "affinity_cookie: %zu bytes -> %d\n", len, (int)r);
    free(copy);
    free(hdr);
    return 0;
}
