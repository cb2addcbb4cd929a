/*
 * frames_fastpath_test.c - unit tests of the relay's one-pass payload transform
 * (wsg_ws_payload_pass, frames/ws-int.h) and of the fast path that uses it:
 *   - the fused XOR against a byte-wise reference at every address alignment 0..15, every key
 *     rotation, lengths 0..300 and 64 KiB, with both keys, one of them or none, and cut into two
 *     chunks at every point (the relay readies a frame chunk by chunk as src fills);
 *   - UTF-8 in the fused pass against RFC 3629 boundary cases (and random bytes) with an
 *     independent byte-wise validator, split at every byte, at every position in the 16-byte
 *     rounds of the ASCII fast path;
 *   - the same boundary cases as masked text frames through a C2U relay, cut at every byte:
 *     relayed exactly when valid, 1007 "invalid UTF-8" / "truncated UTF-8" otherwise, with
 *     nothing of the failing chunk forwarded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frames/ws-int.h"
#include "policies/base/buf.h"

static uint64_t rnd_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)rnd_next(&seed);
}

/* ---- references ---- */

/* Byte-wise: out = in ^ in_key ^ out_key, each rotated to the payload offset. */
static void xor_reference(uint8_t *p, size_t len, uint64_t offset, const uint8_t *ik, const uint8_t *ok)
{
    for (size_t i = 0; i < len; i++) {
        size_t k = (size_t)((offset + i) % 4);
        p[i] ^= (uint8_t)((ik != NULL ? ik[k] : 0) ^ (ok != NULL ? ok[k] : 0));
    }
}

/* RFC 3629 §4 by ranges, one byte at a time, independent of frames/utf8.c's tables. */
struct u8ref {
    int need;       /* continuation bytes still owed */
    uint8_t lo, hi; /* range of the next one */
    int bad;
};

static void u8ref_step(struct u8ref *s, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len && !s->bad; i++) {
        uint8_t c = p[i];
        if (s->need) {
            if (c < s->lo || c > s->hi)
                s->bad = 1;
            s->need--;
            s->lo = 0x80;
            s->hi = 0xBF;
            continue;
        }
        s->lo = 0x80;
        s->hi = 0xBF;
        if (c <= 0x7F)
            continue;
        if (c >= 0xC2 && c <= 0xDF)
            s->need = 1;
        else if (c == 0xE0)
            s->need = 2, s->lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
            s->need = 2;
        else if (c == 0xED)
            s->need = 2, s->hi = 0x9F;
        else if (c == 0xF0)
            s->need = 3, s->lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3)
            s->need = 3;
        else if (c == 0xF4)
            s->need = 3, s->hi = 0x8F;
        else
            s->bad = 1;
    }
}

/* The keys tried: the client's and the gateway's, as on the wire. */
static const uint8_t key_a[4] = {0x37, 0xfa, 0x21, 0x3d};
static const uint8_t key_b[4] = {0x8c, 0x05, 0xd1, 0x6e};

/* ---- the fused XOR ---- */

#define GUARD 16

/* Runs the pass on len bytes at alignment align, at payload offset off, in one chunk and cut in
 * two at cut (cut == len: one chunk), and compares with the reference, guard bytes included. */
static void check_xor(size_t len, size_t align, uint64_t off, const uint8_t *ik, const uint8_t *ok,
                      size_t cut, uint8_t *buf, uint8_t *want, uint64_t seed)
{
    size_t total = GUARD + align + len + GUARD;
    fill_random(buf, total, seed);
    memcpy(want, buf, total);
    xor_reference(want + GUARD + align, len, off, ik, ok);
    uint8_t *p = buf + GUARD + align;
    assert_int_equal(wsg_ws_payload_pass(p, cut, off, ik, ok, 0, 7), 7); /* state passed through */
    assert_int_equal(wsg_ws_payload_pass(p + cut, len - cut, off + cut, ik, ok, 0, 7), 7);
    if (memcmp(buf, want, total) != 0)
        fail_msg("len %zu align %zu offset %llu cut %zu keys %d%d", len, align, (unsigned long long)off, cut,
                 ik != NULL, ok != NULL);
}

static void test_xor_every_alignment_rotation_length(void **state)
{
    (void)state;
    uint8_t *buf = malloc(65536 + 64), *want = malloc(65536 + 64);
    assert_non_null(buf);
    assert_non_null(want);
    const uint8_t *keys[4][2] = {{key_a, key_b}, {key_a, NULL}, {NULL, key_b}, {NULL, NULL}};
    /* Offsets: every rotation, and the same rotations past 4 GiB (a frame may be that long). */
    static const uint64_t offs[] = {0, 1, 2, 3, 4, 5, 6, 7, (1ull << 32) + 1, (1ull << 40) + 3};
    for (size_t align = 0; align < 16; align++)
        for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++)
            for (size_t k = 0; k < 4; k++) {
                for (size_t len = 0; len <= 300; len++)
                    check_xor(len, align, offs[o], keys[k][0], keys[k][1], len, buf, want, len * 131 + align);
                check_xor(65536, align, offs[o], keys[k][0], keys[k][1], 65536, buf, want, align + 9);
            }
    /* Cut in two at every point: chunk by chunk gives the same bytes as one pass. */
    for (size_t align = 0; align < 16; align++)
        for (uint64_t off = 0; off < 4; off++)
            for (size_t cut = 0; cut <= 100; cut++)
                check_xor(100, align, off, key_a, key_b, cut, buf, want, cut + 17 * align);
    free(buf);
    free(want);
}

/* The text path writes the same bytes as the binary path when the text is valid (ASCII, then
 * random valid UTF-8), at every alignment, rotation and length. */
static void test_xor_text_path_same_bytes(void **state)
{
    (void)state;
    static const char *const chars[] = {"a", "Z", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", " "};
    uint8_t plain[400], buf[400 + 32], want[400 + 32];
    uint64_t seed = 99;
    for (int mix = 0; mix < 2; mix++)
        for (size_t align = 0; align < 16; align++)
            for (uint64_t off = 0; off < 4; off++)
                for (size_t len = 0; len <= 300; len += mix ? 7 : 1) {
                    /* Valid text of about len bytes (whole characters). */
                    size_t n = 0;
                    while (n < len) {
                        const char *c = mix ? chars[rnd_next(&seed) % 6] : "x";
                        size_t cl = strlen(c);
                        if (n + cl > len)
                            break;
                        memcpy(plain + n, c, cl);
                        n += cl;
                    }
                    /* Masked by the client as on the wire. */
                    uint8_t *p = buf + align;
                    memcpy(p, plain, n);
                    xor_reference(p, n, off, key_a, NULL);
                    memcpy(want + align, p, n);
                    xor_reference(want + align, n, off, key_a, key_b);
                    uint32_t st = wsg_ws_payload_pass(p, n, off, key_a, key_b, 1, WSG_UTF8_ACCEPT);
                    assert_int_equal(st, WSG_UTF8_ACCEPT);
                    assert_memory_equal(p, want + align, n);
                    /* Unmasked in (a server's frame): checked, nothing written. */
                    memcpy(p, plain, n);
                    assert_int_equal(wsg_ws_payload_pass(p, n, off, NULL, NULL, 1, WSG_UTF8_ACCEPT), 0);
                    assert_memory_equal(p, plain, n);
                }
}

/* ---- UTF-8 in the fused pass ---- */

static const struct {
    const char *s;
    size_t len;
    int ok; /* complete and valid */
} u8cases[] = {
    {"\x00", 1, 1},
    {"\x7F", 1, 1},             /* U+007F, last 1-byte */
    {"\xC2\x80", 2, 1},         /* U+0080, first 2-byte */
    {"\xDF\xBF", 2, 1},         /* U+07FF, last 2-byte */
    {"\xE0\xA0\x80", 3, 1},     /* U+0800, first 3-byte */
    {"\xEC\xBF\xBF", 3, 1},     /* U+CFFF */
    {"\xED\x80\x80", 3, 1},     /* U+D000 */
    {"\xED\x9F\xBF", 3, 1},     /* U+D7FF, before the surrogates */
    {"\xEE\x80\x80", 3, 1},     /* U+E000, after them */
    {"\xEF\xBF\xBD", 3, 1},     /* U+FFFD */
    {"\xEF\xBF\xBF", 3, 1},     /* U+FFFF, last 3-byte */
    {"\xF0\x90\x80\x80", 4, 1}, /* U+10000, first 4-byte */
    {"\xF1\x80\x80\x80", 4, 1}, /* U+40000 */
    {"\xF3\xBF\xBF\xBF", 4, 1}, /* U+FFFFF */
    {"\xF4\x80\x80\x80", 4, 1}, /* U+100000 */
    {"\xF4\x8F\xBF\xBF", 4, 1}, /* U+10FFFF, the last code point */
    {"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 11, 1},
    {"\x80", 1, 0}, /* lone continuation bytes */
    {"\xBF", 1, 0},
    {"\xC0\x80", 2, 0},                 /* overlong NUL */
    {"\xC1\xBF", 2, 0},                 /* overlong U+007F */
    {"\xE0\x80\x80", 3, 0},             /* overlong */
    {"\xE0\x9F\xBF", 3, 0},             /* overlong U+07FF */
    {"\xF0\x80\x80\x80", 4, 0},         /* overlong */
    {"\xF0\x8F\xBF\xBF", 4, 0},         /* overlong U+FFFF */
    {"\xED\xA0\x80", 3, 0},             /* U+D800, first surrogate */
    {"\xED\xAD\xBF", 3, 0},             /* U+DB7F */
    {"\xED\xBF\xBF", 3, 0},             /* U+DFFF, last surrogate */
    {"\xED\xA0\x80\xED\xB0\x80", 6, 0}, /* a surrogate pair (CESU-8) */
    {"\xF4\x90\x80\x80", 4, 0},         /* U+110000 */
    {"\xF5\x80\x80\x80", 4, 0},
    {"\xF7\xBF\xBF\xBF", 4, 0},
    {"\xF8\x88\x80\x80\x80", 5, 0}, /* 5-byte form */
    {"\xFC\x84\x80\x80\x80\x80", 6, 0},
    {"\xFE", 1, 0},
    {"\xFF", 1, 0},
    {"\xC2\x41", 2, 0}, /* lead then ASCII */
    {"\xE2\x82\x41", 3, 0},
    {"\xF0\x9F\x98\x41", 4, 0},
    {"\xC2", 1, 0}, /* truncated at the end */
    {"\xE2\x82", 2, 0},
    {"\xF0\x9F\x98", 3, 0},
    {"\xC2\xC2\x80", 3, 0}, /* a lead where a continuation is owed */
};

#define NCASES (sizeof(u8cases) / sizeof(u8cases[0]))

/* Builds prefix ASCII bytes, the case, then suffix ASCII bytes: with prefix 0..17 the case falls
 * at every position of the 16-byte rounds of the ASCII fast path, and the suffix makes the pass
 * go back to it. Returns the length. */
static size_t build_text(uint8_t *dst, size_t prefix, size_t c, size_t suffix)
{
    size_t n = 0;
    for (size_t i = 0; i < prefix; i++)
        dst[n++] = (uint8_t)('a' + i % 26);
    memcpy(dst + n, u8cases[c].s, u8cases[c].len);
    n += u8cases[c].len;
    for (size_t i = 0; i < suffix; i++)
        dst[n++] = (uint8_t)('A' + i % 26);
    return n;
}

static void test_utf8_boundaries_split_every_byte(void **state)
{
    (void)state;
    uint8_t plain[128], wire[128 + 16], p[128 + 16];
    for (size_t c = 0; c < NCASES; c++)
        for (size_t prefix = 0; prefix <= 17; prefix++)
            for (size_t suffix = 0; suffix <= 20; suffix += 20) {
                size_t n = build_text(plain, prefix, c, suffix);
                struct u8ref ref = {0, 0x80, 0xBF, 0};
                u8ref_step(&ref, plain, n);
                int want_ok = !ref.bad && ref.need == 0;
                /* The independent reference agrees with the table (ASCII after a truncated
                 * sequence makes it invalid). */
                assert_int_equal(want_ok, u8cases[c].ok);
                for (uint64_t off = 0; off < 4; off++)
                    for (size_t cut = 0; cut <= n; cut++) {
                        memcpy(wire, plain, n);
                        xor_reference(wire, n, off, key_a, NULL);
                        memcpy(p + (cut & 7), wire, n); /* also vary the address */
                        uint8_t *q = p + (cut & 7);
                        uint32_t st = wsg_ws_payload_pass(q, cut, off, key_a, key_b, 1, WSG_UTF8_ACCEPT);
                        struct u8ref r1 = {0, 0x80, 0xBF, 0};
                        u8ref_step(&r1, plain, cut);
                        /* After the first piece: rejected exactly when the reference saw an
                         * invalid byte; otherwise the same state as the table DFA. */
                        assert_int_equal(st == WSG_UTF8_REJECT, r1.bad);
                        if (st == WSG_UTF8_REJECT) {
                            assert_false(want_ok);
                            continue;
                        }
                        assert_int_equal(st, wsg_utf8_step(WSG_UTF8_ACCEPT, plain, cut));
                        st = wsg_ws_payload_pass(q + cut, n - cut, off + cut, key_a, key_b, 1, st);
                        if (want_ok) {
                            assert_int_equal(st, WSG_UTF8_ACCEPT);
                            /* Valid: every byte re-masked with the other key. */
                            uint8_t want[128 + 16];
                            memcpy(want, plain, n);
                            xor_reference(want, n, off, key_b, NULL);
                            assert_memory_equal(q, want, n);
                        } else {
                            assert_int_not_equal(st, WSG_UTF8_ACCEPT); /* rejected or incomplete */
                            if (ref.bad)
                                assert_int_equal(st, WSG_UTF8_REJECT);
                        }
                    }
            }
}

/* Random bytes, mostly ASCII with a sprinkling of high bytes: the fused pass and the reference
 * agree on every prefix length. */
static void test_utf8_random(void **state)
{
    (void)state;
    uint8_t plain[96], q[96];
    uint64_t seed = 5;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rnd_next(&seed) % sizeof(plain));
        for (size_t i = 0; i < n; i++) {
            uint64_t x = rnd_next(&seed);
            plain[i] = (x & 7) == 0 ? (uint8_t)(0x80 | (x >> 8)) : (uint8_t)((x >> 8) & 0x7F);
        }
        uint64_t off = rnd_next(&seed) & 3;
        memcpy(q, plain, n);
        xor_reference(q, n, off, key_a, NULL);
        uint32_t st = wsg_ws_payload_pass(q, n, off, key_a, key_b, 1, WSG_UTF8_ACCEPT);
        struct u8ref r = {0, 0x80, 0xBF, 0};
        u8ref_step(&r, plain, n);
        assert_int_equal(st == WSG_UTF8_REJECT, r.bad);
        if (!r.bad)
            assert_int_equal(st == WSG_UTF8_ACCEPT, r.need == 0);
    }
}

/* ---- the same cases through the relay's fast path ---- */

struct out {
    uint8_t buf[512];
    size_t len;
};

static ssize_t out_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct out *o = ctx;
    assert_true(o->len + len <= sizeof(o->buf));
    memcpy(o->buf + o->len, data, len);
    o->len += len;
    return (ssize_t)len;
}

static int fixed_rng(void *ctx, uint8_t *dst, size_t len)
{
    (void)ctx;
    assert_int_equal(len, 4);
    memcpy(dst, key_b, 4);
    return 0;
}

static void test_relay_text_cut_every_byte(void **state)
{
    (void)state;
    uint8_t plain[128], frame[160];
    for (size_t c = 0; c < NCASES; c++)
        for (size_t prefix = 0; prefix <= 17; prefix += 17) {
            size_t n = build_text(plain, prefix, c, 3);
            struct u8ref ref = {0, 0x80, 0xBF, 0};
            u8ref_step(&ref, plain, n);
            int ok = !ref.bad && ref.need == 0;
            /* One masked final text frame (n < 126: a 6-byte header). */
            frame[0] = 0x81;
            frame[1] = (uint8_t)(0x80 | n);
            memcpy(frame + 2, key_a, 4);
            memcpy(frame + 6, plain, n);
            xor_reference(frame + 6, n, 0, key_a, NULL);
            size_t flen = 6 + n;
            for (size_t cut = 0; cut <= flen; cut++) {
                struct wsg_buf src;
                struct out o = {{0}, 0};
                memset(&src, 0, sizeof(src));
                wsg_buf_setup(&src, 4096);
                struct wsg_ws_relay *r =
                    wsg_ws_relay_new(WSG_WS_C2U, NULL, &src, out_sink, &o, fixed_rng, NULL);
                assert_non_null(r);
                assert_int_equal(wsg_buf_put(&src, frame, cut), cut);
                int rc1 = wsg_ws_relay_pump(r);
                size_t after_first = o.len;
                int rc2 = rc1;
                if (rc1 != WSG_ERR) {
                    assert_int_equal(wsg_buf_put(&src, frame + cut, flen - cut), flen - cut);
                    rc2 = wsg_ws_relay_pump(r);
                }
                const char *why = NULL;
                int code = wsg_ws_relay_error(r, &why);
                if (ok) {
                    assert_true(rc2 > 0 || (rc2 == 0 && cut == flen));
                    assert_int_equal(code, 0);
                    uint8_t want[160];
                    memcpy(want, frame, flen);
                    memcpy(want + 2, key_b, 4);
                    memcpy(want + 6, plain, n);
                    xor_reference(want + 6, n, 0, key_b, NULL);
                    assert_int_equal(o.len, flen);
                    assert_memory_equal(o.buf, want, flen);
                } else {
                    assert_int_equal(rc2, WSG_ERR);
                    assert_int_equal(code, 1007);
                    assert_true(strcmp(why, "invalid UTF-8") == 0 || strcmp(why, "truncated UTF-8") == 0);
                    /* Only chunks that passed whole went out: the first piece when it was valid
                     * on its own, never a byte of the second. */
                    assert_int_equal(o.len, after_first);
                    if (o.len != 0) {
                        struct u8ref r1 = {0, 0x80, 0xBF, 0};
                        u8ref_step(&r1, plain, o.len - 6);
                        assert_false(r1.bad);
                        assert_false(wsg_ws_relay_idle_out(r)); /* mid-frame: no close possible */
                    } else {
                        assert_true(wsg_ws_relay_idle_out(r)); /* a gateway close can still go */
                    }
                }
                wsg_ws_relay_free(r);
                wsg_buf_free(&src);
            }
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xor_every_alignment_rotation_length),
        cmocka_unit_test(test_xor_text_path_same_bytes),
        cmocka_unit_test(test_utf8_boundaries_split_every_byte),
        cmocka_unit_test(test_utf8_random),
        cmocka_unit_test(test_relay_text_cut_every_byte),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    wsg_ws_cache_drain();
    wsg_buf_cache_drain();
    return rc;
}
