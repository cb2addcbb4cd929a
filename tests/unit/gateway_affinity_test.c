/*
 * gateway_affinity_test.c - unit tests of gateway/affinity.c: the affinity cookie's signed token
 * (round trip, every single-bit and single-character change refused, expiry, another key) and the
 * Cookie header reader (other cookies around it, whitespace, quotes, several of the same name, names
 * that only share a prefix, truncated and hostile values).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/affinity.h"

static const uint8_t key1[WSG_AFF_KEY_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                              17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t key2[WSG_AFF_KEY_LEN] = {32, 2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                              17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 1};
#define NOW 1800000000u

static enum wsg_aff_result find(const uint8_t *key, const char *hdr, uint64_t *id, uint32_t *exp)
{
    return wsg_affinity_find(key, "wsgate_upstream", hdr, strlen(hdr), NOW, id, exp);
}

static void test_round_trip(void **state)
{
    (void)state;
    uint64_t ids[] = {0, 1, UINT64_MAX, wsg_affinity_peer_id("127.0.0.1:3001"),
                      wsg_affinity_peer_id("[::1]:8080")};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char tok[WSG_AFF_TOKEN_LEN + 1], hdr[128];
        wsg_affinity_make(key1, ids[i], NOW + 60, tok);
        assert_int_equal(strlen(tok), WSG_AFF_TOKEN_LEN);
        assert_int_equal(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                         WSG_AFF_TOKEN_LEN);
        snprintf(hdr, sizeof(hdr), "wsgate_upstream=%s", tok);
        uint64_t id = 0;
        uint32_t exp = 0;
        assert_int_equal(find(key1, hdr, &id, &exp), WSG_AFF_VALID);
        assert_true(id == ids[i]);
        assert_int_equal(exp, NOW + 60);
        /* another gateway's key: forged, whatever it names */
        assert_int_equal(find(key2, hdr, &id, &exp), WSG_AFF_FORGED);
    }
    /* peer ids: stable, and different names differ */
    assert_true(wsg_affinity_peer_id("127.0.0.1:3001") == wsg_affinity_peer_id("127.0.0.1:3001"));
    assert_true(wsg_affinity_peer_id("127.0.0.1:3001") != wsg_affinity_peer_id("127.0.0.1:3002"));
}

static void test_expiry(void **state)
{
    (void)state;
    char tok[WSG_AFF_TOKEN_LEN + 1], hdr[128];
    uint64_t id;
    uint32_t exp;
    wsg_affinity_make(key1, 42, NOW, tok); /* expires now: no longer valid */
    snprintf(hdr, sizeof(hdr), "wsgate_upstream=%s", tok);
    assert_int_equal(find(key1, hdr, &id, &exp), WSG_AFF_EXPIRED);
    wsg_affinity_make(key1, 42, NOW + 1, tok);
    snprintf(hdr, sizeof(hdr), "wsgate_upstream=%s", tok);
    assert_int_equal(find(key1, hdr, &id, &exp), WSG_AFF_VALID);
}

/* Any one character changed to any other base64url character, and every bit of the raw token
 * flipped (through re-encoding by character), is refused: the MAC covers id and expiry, and the
 * last character's unused bits must be zero (one spelling per token). */
static void test_tamper(void **state)
{
    (void)state;
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char tok[WSG_AFF_TOKEN_LEN + 1], hdr[128];
    wsg_affinity_make(key1, 0x0123456789abcdefULL, NOW + 3600, tok);
    unsigned tried = 0;
    for (size_t pos = 0; pos < WSG_AFF_TOKEN_LEN; pos++)
        for (size_t a = 0; a < 64; a++) {
            if (alpha[a] == tok[pos])
                continue;
            char t[WSG_AFF_TOKEN_LEN + 1];
            memcpy(t, tok, sizeof(t));
            t[pos] = alpha[a];
            snprintf(hdr, sizeof(hdr), "wsgate_upstream=%s", t);
            uint64_t id;
            uint32_t exp;
            if (find(key1, hdr, &id, &exp) != WSG_AFF_FORGED)
                fail_msg("position %zu -> '%c' accepted", pos, alpha[a]);
            tried++;
        }
    assert_int_equal(tried, WSG_AFF_TOKEN_LEN * 63);
}

static void test_cookie_header(void **state)
{
    (void)state;
    char tok[WSG_AFF_TOKEN_LEN + 1], old[WSG_AFF_TOKEN_LEN + 1], hdr[512];
    uint64_t id = 0;
    uint32_t exp = 0;
    wsg_affinity_make(key1, 7, NOW + 100, tok);
    wsg_affinity_make(key1, 8, NOW - 100, old);
    /* where the token sits: {before, after} */
    const char *around[][2] = {
        {"a=1; wsgate_upstream=", "; b=2"},
        {"wsgate_upstream=", ""},
        {"  wsgate_upstream=", "  "},
        {"a=1;wsgate_upstream=", ""},
        {"wsgate_upstream=\"", "\""},
        {"wsgate_upstream=garbage; wsgate_upstream=", ""}, /* the valid one wins wherever it is */
        {"wsgate_upstream=", "; wsgate_upstream=garbage"},
    };
    for (size_t i = 0; i < sizeof(around) / sizeof(around[0]); i++) {
        snprintf(hdr, sizeof(hdr), "%s%s%s", around[i][0], tok, around[i][1]);
        if (find(key1, hdr, &id, &exp) != WSG_AFF_VALID || id != 7)
            fail_msg("not found in: %s", hdr);
    }
    /* no cookie of that name: names sharing a prefix, other case, empty header */
    const char *none[] = {"",
                          ";",
                          "wsgate_upstreamx=abc",
                          "Wsgate_upstream=abc",
                          "xwsgate_upstream=abc",
                          "wsgate_upstream",
                          "a=1; b=2"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        if (find(key1, none[i], &id, &exp) != WSG_AFF_NONE)
            fail_msg("found in: \"%s\"", none[i]);
    /* present but not ours: empty, short, long, bad characters, truncated, unbalanced quote */
    snprintf(hdr, sizeof(hdr), "wsgate_upstream=%.37s", tok);
    assert_int_equal(find(key1, hdr, &id, &exp), WSG_AFF_FORGED);
    snprintf(hdr, sizeof(hdr), "wsgate_upstream=%sA", tok);
    assert_int_equal(find(key1, hdr, &id, &exp), WSG_AFF_FORGED);
    snprintf(hdr, sizeof(hdr), "wsgate_upstream=\"%s", tok);
    assert_int_equal(find(key1, hdr, &id, &exp), WSG_AFF_FORGED);
    assert_int_equal(find(key1, "wsgate_upstream=", &id, &exp), WSG_AFF_FORGED);
    assert_int_equal(find(key1, "wsgate_upstream=!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", &id, &exp),
                     WSG_AFF_FORGED);
    /* an expired one beside a forged one reports expired; beside a valid one, valid */
    snprintf(hdr, sizeof(hdr), "wsgate_upstream=x; wsgate_upstream=%s", old);
    assert_int_equal(find(key1, hdr, &id, &exp), WSG_AFF_EXPIRED);
    snprintf(hdr, sizeof(hdr), "wsgate_upstream=%s; wsgate_upstream=%s", old, tok);
    assert_int_equal(find(key1, hdr, &id, &exp), WSG_AFF_VALID);
    assert_true(id == 7);
}

/* The reader never reads outside the bytes it is given: headers cut at every length (run under
 * ASan by make asan), and random bytes. */
static void test_cuts_and_noise(void **state)
{
    (void)state;
    char tok[WSG_AFF_TOKEN_LEN + 1], hdr[256];
    wsg_affinity_make(key1, 9, NOW + 100, tok);
    int n = snprintf(hdr, sizeof(hdr), "a=1; wsgate_upstream=%s; c=3", tok);
    for (int cut = 0; cut <= n; cut++) {
        char *copy = malloc((size_t)cut + 1);
        assert_non_null(copy);
        memcpy(copy, hdr, (size_t)cut);
        uint64_t id;
        uint32_t exp;
        enum wsg_aff_result r = wsg_affinity_find(key1, "wsgate_upstream", copy, (size_t)cut, NOW, &id, &exp);
        int whole = cut >= (int)(strlen("a=1; wsgate_upstream=") + WSG_AFF_TOKEN_LEN);
        assert_int_equal(r, whole                                       ? WSG_AFF_VALID
                            : cut > (int)strlen("a=1; wsgate_upstream") ? WSG_AFF_FORGED
                                                                        : WSG_AFF_NONE);
        free(copy);
    }
    srand(7);
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(rand() % 80);
        char *b = malloc(len + 1);
        assert_non_null(b);
        for (size_t k = 0; k < len; k++)
            b[k] = "wsgate_upstream=; \"A-_z9"[rand() % 24];
        uint64_t id;
        uint32_t exp;
        assert_int_not_equal(wsg_affinity_find(key1, "wsgate_upstream", b, len, NOW, &id, &exp),
                             WSG_AFF_VALID);
        free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_tamper),         cmocka_unit_test(test_cookie_header),
        cmocka_unit_test(test_cuts_and_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
