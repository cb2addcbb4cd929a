/*
 * frames_ws_test.c - unit tests of frames/: the relay (sizes, fragmentation, interleaved
 * control frames, every RFC 6455 violation with its close code, limits on the header, close
 * frames, the gateway's own close), the UTF-8 DFA, close codes and the handshake helpers.
 *
 * Input frames come from a tiny encoder here; the relay's output is decoded by a tiny decoder
 * here, so both sides are checked independently of wslay. Every input is fed whole, 1 byte at a
 * time and in seeded random cuts, into sinks that take everything, 1 byte per call, or 1 byte
 * every other call (WSG_AGAIN in between).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frames/ws.h"
#include "policies/base/buf.h"

/* ---- growable byte string ---- */

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *src, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (len != 0)
        memcpy(b->p + b->len, src, len);
    b->len += len;
}

static void bytes_free(struct bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- deterministic PRNG (xorshift64*) ---- */

static uint64_t rnd_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* ---- test-side encoder: one frame, masked when mask != NULL ---- */

static void put_frame(struct bytes *b, int fin, int rsv, int opcode, const uint8_t *mask, const void *payload,
                      size_t len)
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | opcode);
    uint8_t m = mask != NULL ? 0x80 : 0;
    if (len < 126) {
        h[n++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        h[n++] = m | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask != NULL) {
        memcpy(h + n, mask, 4);
        n += 4;
    }
    bytes_add(b, h, n);
    size_t at = b->len;
    bytes_add(b, payload, len);
    if (mask != NULL)
        for (size_t i = 0; i < len; i++)
            b->p[at + i] ^= mask[i % 4];
}

static const uint8_t cli_mask[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Client frame (masked) for C2U input. */
static void cframe(struct bytes *b, int fin, int opcode, const void *payload, size_t len)
{
    put_frame(b, fin, 0, opcode, cli_mask, payload, len);
}

static void close_payload(uint8_t *dst, size_t *len, int code, const char *reason)
{
    dst[0] = (uint8_t)(code >> 8);
    dst[1] = (uint8_t)code;
    *len = 2 + strlen(reason);
    memcpy(dst + 2, reason, strlen(reason));
}

/* ---- test-side decoder of the relay output ---- */

struct oframe {
    int fin, rsv, opcode, masked;
    uint8_t mask[4];
    uint8_t *payload; /* unmasked copy */
    size_t len;
};

#define MAX_OFRAMES 64

struct decoded {
    struct oframe f[MAX_OFRAMES];
    int n;
    size_t trailing; /* bytes after the last complete frame */
};

static void decode_all(const struct bytes *b, struct decoded *d)
{
    size_t off = 0;
    memset(d, 0, sizeof(*d));
    while (off < b->len) {
        const uint8_t *p = b->p + off;
        size_t avail = b->len - off, hdr = 2;
        if (avail < 2)
            break;
        uint64_t len = p[1] & 0x7f;
        int masked = p[1] >> 7;
        if (len == 126)
            hdr += 2;
        else if (len == 127)
            hdr += 8;
        if (masked)
            hdr += 4;
        if (avail < hdr)
            break;
        if (len == 126)
            len = ((uint64_t)p[2] << 8) | p[3];
        else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
        }
        if (avail - hdr < len)
            break;
        assert_true(d->n < MAX_OFRAMES);
        struct oframe *f = &d->f[d->n++];
        f->fin = p[0] >> 7;
        f->rsv = (p[0] >> 4) & 7;
        f->opcode = p[0] & 0xf;
        f->masked = masked;
        if (masked)
            memcpy(f->mask, p + hdr - 4, 4);
        f->len = (size_t)len;
        f->payload = malloc(f->len + 1);
        assert_non_null(f->payload);
        for (size_t i = 0; i < f->len; i++)
            f->payload[i] = p[hdr + i] ^ (masked ? f->mask[i % 4] : 0);
        off += hdr + (size_t)len;
    }
    d->trailing = b->len - off;
}

static void decoded_free(struct decoded *d)
{
    for (int i = 0; i < d->n; i++)
        free(d->f[i].payload);
    d->n = 0;
}

/* ---- harness: src buffer -> relay -> recording sink ---- */

enum feed_mode { FEED_WHOLE, FEED_ONE, FEED_RANDOM, FEED__COUNT };
enum sink_mode { SINK_ALL, SINK_ONE, SINK_FLAKY, SINK__COUNT };

static const char *const feed_names[] = {"whole", "1-byte", "random"};
static const char *const sink_names[] = {"all", "1-byte", "flaky"};

struct harness {
    enum wsg_ws_dir dir;
    enum feed_mode feed;
    enum sink_mode sink;
    struct wsg_buf src;
    struct wsg_ws_relay *r;
    struct bytes out;
    uint64_t seed;      /* random cuts */
    uint64_t rng_seed;  /* masks */
    struct bytes masks; /* every mask byte handed out by the rng */
    unsigned sink_calls;
    int blocked;   /* sink answers WSG_AGAIN */
    int fail_sink; /* sink answers WSG_ERR */
    int rc;        /* WSG_ERR once the pump failed */
};

static ssize_t test_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct harness *h = ctx;
    assert_true(len > 0);
    if (h->fail_sink)
        return WSG_ERR;
    if (h->blocked)
        return WSG_AGAIN;
    h->sink_calls++;
    switch (h->sink) {
    case SINK_ALL:
        break;
    case SINK_ONE:
        len = 1;
        break;
    case SINK_FLAKY:
        if (h->sink_calls % 2 == 1)
            return WSG_AGAIN;
        len = 1;
        break;
    default:
        fail();
    }
    bytes_add(&h->out, data, len);
    return (ssize_t)len;
}

static int test_rng(void *ctx, uint8_t *dst, size_t len)
{
    struct harness *h = ctx;
    for (size_t i = 0; i < len; i++)
        dst[i] = (uint8_t)rnd_next(&h->rng_seed);
    bytes_add(&h->masks, dst, len);
    return 0;
}

static void h_init(struct harness *h, enum wsg_ws_dir dir, const struct wsg_ws_limits *lim,
                   enum feed_mode feed, enum sink_mode sink, uint32_t src_cap, uint64_t seed)
{
    memset(h, 0, sizeof(*h));
    h->dir = dir;
    h->feed = feed;
    h->sink = sink;
    h->seed = seed * 0x9e3779b97f4a7c15ull + 1;
    h->rng_seed = seed + 0x1234567;
    wsg_buf_setup(&h->src, src_cap);
    h->r = wsg_ws_relay_new(dir, lim, &h->src, test_sink, h, test_rng, h);
    assert_non_null(h->r);
}

static void h_fini(struct harness *h)
{
    wsg_ws_relay_free(h->r);
    wsg_buf_free(&h->src);
    bytes_free(&h->out);
    bytes_free(&h->masks);
}

/* Pumps until nothing moves any more (a few idle rounds: the flaky sink alternates). */
static void h_drain(struct harness *h)
{
    int idle = 0;
    while (idle < 4 && h->rc == 0) {
        int rc = wsg_ws_relay_pump(h->r);
        if (rc == WSG_ERR)
            h->rc = WSG_ERR;
        idle = rc > 0 ? 0 : idle + 1;
    }
}

/* Feeds input in the harness's cuts, pumping after each; stops on WSG_ERR. */
static void h_feed(struct harness *h, const uint8_t *in, size_t len)
{
    size_t off = 0;
    int idle = 0;
    while (h->rc == 0 && (off < len || idle < 4)) {
        size_t cut = len - off;
        if (h->feed == FEED_ONE)
            cut = cut < 1 ? cut : 1;
        else if (h->feed == FEED_RANDOM) {
            uint64_t x = rnd_next(&h->seed);
            size_t c = (x & 3) == 0 ? (size_t)(x >> 8) % 20000 : (size_t)(x >> 8) % 300;
            c = c + 1;
            cut = cut < c ? cut : c;
        }
        size_t put = cut != 0 ? wsg_buf_put(&h->src, in + off, cut) : 0;
        off += put;
        int rc = wsg_ws_relay_pump(h->r);
        if (rc == WSG_ERR) {
            h->rc = WSG_ERR;
            break;
        }
        if (rc == 0 && put == 0) {
            if (++idle >= 4 && off < len)
                break; /* stalled: the relay read nothing more (closed or error) */
        } else {
            idle = 0;
        }
    }
}

static void h_feed_bytes(struct harness *h, const struct bytes *b)
{
    h_feed(h, b->p, b->len);
}

/* Asserts the output frames are masked exactly with the rng's masks, in order (C2U), or
 * unmasked (U2C). */
static void check_masks(const struct harness *h, const struct decoded *d)
{
    for (int i = 0; i < d->n; i++) {
        if (h->dir == WSG_WS_U2C) {
            assert_int_equal(d->f[i].masked, 0);
            continue;
        }
        assert_int_equal(d->f[i].masked, 1);
        assert_true(h->masks.len >= (size_t)(i + 1) * 4);
        assert_memory_equal(d->f[i].mask, h->masks.p + 4 * i, 4);
    }
    if (h->dir == WSG_WS_C2U && d->n >= 2) {
        int differ = 0;
        for (int i = 1; i < d->n; i++)
            differ |= memcmp(d->f[i].mask, d->f[0].mask, 4) != 0;
        assert_true(differ);
    }
}

static void fill_pattern(uint8_t *p, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)rnd_next(&seed);
}

/* ---- sizes ---- */

static void relay_one_binary(enum wsg_ws_dir dir, size_t size, enum feed_mode feed, enum sink_mode sink)
{
    struct harness h;
    struct bytes in = {0};
    uint8_t *payload = malloc(size + 1);
    assert_non_null(payload);
    fill_pattern(payload, size, size + 7);
    put_frame(&in, 1, 0, 2, dir == WSG_WS_C2U ? cli_mask : NULL, payload, size);
    h_init(&h, dir, NULL, feed, sink, 16384, size * 31 + feed * 7 + sink);
    h_feed_bytes(&h, &in);
    h_drain(&h);
    if (h.rc != 0)
        print_error("size %zu feed %s sink %s: rc %d\n", size, feed_names[feed], sink_names[sink], h.rc);
    assert_int_equal(h.rc, 0);

    struct decoded d;
    decode_all(&h.out, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.trailing, 0);
    assert_int_equal(d.f[0].fin, 1);
    assert_int_equal(d.f[0].rsv, 0);
    assert_int_equal(d.f[0].opcode, 2);
    assert_int_equal(d.f[0].len, size);
    if (size != 0)
        assert_memory_equal(d.f[0].payload, payload, size);
    check_masks(&h, &d);
    /* The output header uses the same (minimal) length encoding, so the sizes match exactly. */
    assert_int_equal(h.out.len, in.len);
    const struct wsg_ws_stats *st = wsg_ws_relay_stats(h.r);
    assert_int_equal(st->frames, 1);
    assert_int_equal(st->messages, 1);
    assert_int_equal(st->payload_bytes, size);
    assert_int_equal(st->close_code, 0);
    assert_int_equal(wsg_buf_len(&h.src), 0);
    assert_true(wsg_ws_relay_idle_out(h.r));
    decoded_free(&d);
    h_fini(&h);
    bytes_free(&in);
    free(payload);
}

static void test_sizes_small(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 125, 126, 127, 4095, 4096, 4097, 65535, 65536};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        for (int f = 0; f < FEED__COUNT; f++)
            for (int s = 0; s < SINK__COUNT; s++) {
                if (sizes[i] > 4097 && f == FEED_ONE && s != SINK_ALL)
                    continue; /* covered by the smaller sizes; keeps the run short */
                relay_one_binary(WSG_WS_C2U, sizes[i], (enum feed_mode)f, (enum sink_mode)s);
                relay_one_binary(WSG_WS_U2C, sizes[i], (enum feed_mode)f, (enum sink_mode)s);
            }
}

static void test_size_1mib(void **state)
{
    (void)state;
    for (int s = 0; s < SINK__COUNT; s++) {
        relay_one_binary(WSG_WS_C2U, 1u << 20, FEED_RANDOM, (enum sink_mode)s);
        relay_one_binary(WSG_WS_U2C, 1u << 20, FEED_RANDOM, (enum sink_mode)s);
    }
    relay_one_binary(WSG_WS_C2U, 1u << 20, FEED_WHOLE, SINK_ALL);
    relay_one_binary(WSG_WS_C2U, 1u << 20, FEED_ONE, SINK_ALL);
}

/* ---- fragmentation and interleaved control frames ---- */

static void test_fragmented_text_split_char(void **state)
{
    (void)state;
    /* U+1F600 (F0 9F 98 80) split 2/2 across fragments, then U+20AC split 1/2. */
    static const char f1[] = "ab\xF0\x9F";
    static const char f2[] = "\x98\x80 c\xE2";
    static const char f3[] = "\x82\xAC!";
    for (int f = 0; f < FEED__COUNT; f++)
        for (int s = 0; s < SINK__COUNT; s++) {
            struct harness h;
            struct bytes in = {0};
            cframe(&in, 0, 1, f1, 4);
            cframe(&in, 0, 0, f2, 5);
            cframe(&in, 1, 0, f3, 3);
            h_init(&h, WSG_WS_C2U, NULL, (enum feed_mode)f, (enum sink_mode)s, 4096, 11);
            h_feed_bytes(&h, &in);
            h_drain(&h);
            assert_int_equal(h.rc, 0);
            struct decoded d;
            decode_all(&h.out, &d);
            assert_int_equal(d.n, 3);
            assert_int_equal(d.trailing, 0);
            assert_int_equal(d.f[0].opcode, 1);
            assert_int_equal(d.f[0].fin, 0);
            assert_int_equal(d.f[1].opcode, 0);
            assert_int_equal(d.f[1].fin, 0);
            assert_int_equal(d.f[2].opcode, 0);
            assert_int_equal(d.f[2].fin, 1);
            assert_int_equal(d.f[0].len, 4);
            assert_memory_equal(d.f[0].payload, f1, 4);
            assert_int_equal(d.f[1].len, 5);
            assert_memory_equal(d.f[1].payload, f2, 5);
            assert_int_equal(d.f[2].len, 3);
            assert_memory_equal(d.f[2].payload, f3, 3);
            check_masks(&h, &d);
            assert_int_equal(wsg_ws_relay_stats(h.r)->frames, 3);
            assert_int_equal(wsg_ws_relay_stats(h.r)->messages, 1);
            decoded_free(&d);
            h_fini(&h);
            bytes_free(&in);
        }
}

/* Relays of both directions take their wslay contexts from one per-thread cache, between frames.
 * A context must come back in a state that cannot leak into the next user: an encoder that masked
 * towards an upstream once must not mask a client-bound frame, a decoder that unmasked must not
 * unmask plain input. Relays of alternating directions, each one frame mid-way blocked so that
 * some contexts are put back mid-frame (destroyed) and others between frames (reused). */
static void test_codec_reuse_across_directions(void **state)
{
    (void)state;
    for (int round = 0; round < 12; round++) {
        enum wsg_ws_dir dir = (enum wsg_ws_dir)(round % 2);
        const uint8_t *m = dir == WSG_WS_C2U ? cli_mask : NULL;
        struct harness h;
        struct bytes in = {0};
        put_frame(&in, 1, 0, 1, m, "hello", 5);
        put_frame(&in, 1, 0, 9, m, "ping!", 5);
        put_frame(&in, 1, 0, 2, m, "binary payload", 14);
        h_init(&h, dir, NULL, FEED_WHOLE, SINK_ALL, 4096, (uint64_t)round + 1);
        h_feed_bytes(&h, &in);
        h_drain(&h);
        assert_int_equal(h.rc, 0);
        struct decoded d;
        decode_all(&h.out, &d);
        assert_int_equal(d.n, 3);
        assert_int_equal(d.trailing, 0);
        assert_memory_equal(d.f[0].payload, "hello", 5);
        assert_memory_equal(d.f[1].payload, "ping!", 5);
        assert_memory_equal(d.f[2].payload, "binary payload", 14);
        check_masks(&h, &d);
        decoded_free(&d);
        if (round % 3 == 2) {
            /* Leave this relay mid-frame on both sides: its contexts must not be reused. */
            struct bytes part = {0};
            uint8_t big[300];
            fill_pattern(big, sizeof(big), 9);
            put_frame(&part, 1, 0, 2, m, big, sizeof(big));
            h.blocked = 1;
            assert_int_equal(wsg_buf_put(&h.src, part.p, part.len / 2), part.len / 2);
            (void)wsg_ws_relay_pump(h.r);
            bytes_free(&part);
        }
        h_fini(&h);
        bytes_free(&in);
    }
}

static void test_ping_pong_interleaved(void **state)
{
    (void)state;
    for (int f = 0; f < FEED__COUNT; f++)
        for (int s = 0; s < SINK__COUNT; s++)
            for (int dir = 0; dir < 2; dir++) {
                struct harness h;
                struct bytes in = {0};
                const uint8_t *m = dir == WSG_WS_C2U ? cli_mask : NULL;
                uint8_t big[125];
                fill_pattern(big, sizeof(big), 3);
                put_frame(&in, 0, 0, 2, m, "part1", 5);
                put_frame(&in, 1, 0, 9, m, "ping!", 5);
                put_frame(&in, 0, 0, 0, m, "part2", 5);
                put_frame(&in, 1, 0, 10, m, big, sizeof(big));
                put_frame(&in, 1, 0, 9, m, "", 0);
                put_frame(&in, 1, 0, 0, m, "end", 3);
                put_frame(&in, 1, 0, 1, m, "next message", 12);
                h_init(&h, (enum wsg_ws_dir)dir, NULL, (enum feed_mode)f, (enum sink_mode)s, 4096, 5);
                h_feed_bytes(&h, &in);
                h_drain(&h);
                assert_int_equal(h.rc, 0);
                struct decoded d;
                decode_all(&h.out, &d);
                assert_int_equal(d.n, 7);
                assert_int_equal(d.trailing, 0);
                static const int ops[] = {2, 9, 0, 10, 9, 0, 1};
                static const int fins[] = {0, 1, 0, 1, 1, 1, 1};
                for (int i = 0; i < 7; i++) {
                    assert_int_equal(d.f[i].opcode, ops[i]);
                    assert_int_equal(d.f[i].fin, fins[i]);
                }
                assert_memory_equal(d.f[1].payload, "ping!", 5);
                assert_int_equal(d.f[3].len, 125);
                assert_memory_equal(d.f[3].payload, big, 125);
                assert_int_equal(d.f[4].len, 0);
                assert_memory_equal(d.f[5].payload, "end", 3);
                check_masks(&h, &d);
                const struct wsg_ws_stats *st = wsg_ws_relay_stats(h.r);
                assert_int_equal(st->frames, 7);
                assert_int_equal(st->messages, 2);
                assert_int_equal(st->payload_bytes, 5 + 5 + 5 + 125 + 0 + 3 + 12);
                decoded_free(&d);
                h_fini(&h);
                bytes_free(&in);
            }
}

static void test_large_fragmented_text(void **state)
{
    (void)state;
    /* 300 KB of mixed 1-4 byte characters, cut into fragments at arbitrary byte offsets. */
    struct bytes text = {0};
    uint64_t s = 99;
    static const char *const chars[] = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xEF\xBF\xBF"};
    while (text.len < 300000) {
        const char *c = chars[rnd_next(&s) % 5];
        bytes_add(&text, c, strlen(c));
    }
    size_t cuts[] = {0, 70001, 70001, 150003, 299999, text.len};
    for (int f = 0; f < FEED__COUNT; f += 2)
        for (int sk = 0; sk < SINK__COUNT; sk++) {
            struct harness h;
            struct bytes in = {0};
            for (int i = 0; i < 5; i++)
                cframe(&in, i == 4, i == 0 ? 1 : 0, text.p + cuts[i], cuts[i + 1] - cuts[i]);
            h_init(&h, WSG_WS_C2U, NULL, (enum feed_mode)f, (enum sink_mode)sk, 8192, 17);
            h_feed_bytes(&h, &in);
            h_drain(&h);
            assert_int_equal(h.rc, 0);
            struct decoded d;
            decode_all(&h.out, &d);
            assert_int_equal(d.n, 5);
            for (int i = 0; i < 5; i++) {
                assert_int_equal(d.f[i].len, cuts[i + 1] - cuts[i]);
                if (d.f[i].len != 0)
                    assert_memory_equal(d.f[i].payload, text.p + cuts[i], d.f[i].len);
                assert_int_equal(d.f[i].fin, i == 4);
            }
            check_masks(&h, &d);
            decoded_free(&d);
            h_fini(&h);
            bytes_free(&in);
        }
    bytes_free(&text);
}

/* Random valid streams: fragmented text/binary messages of random sizes with pings and pongs
 * interleaved, fed in random cuts through small source buffers; the output must be the same
 * frames, in order. */
struct iframe {
    int fin, opcode;
    size_t off, len;
};

static void test_random_streams(void **state)
{
    (void)state;
    static const char *const chars[] = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    for (uint64_t seed = 1; seed <= 40; seed++) {
        uint64_t s = seed;
        struct bytes pay = {0}, in = {0};
        struct iframe fr[MAX_OFRAMES];
        int nf = 0;
        enum wsg_ws_dir dir = (enum wsg_ws_dir)(seed % 2);
        while (nf < MAX_OFRAMES - 8) {
            /* One message of complete characters (text) or random bytes (binary)... */
            int text = rnd_next(&s) % 2;
            size_t len = rnd_next(&s) % 4 == 0 ? rnd_next(&s) % 150000 : rnd_next(&s) % 400;
            size_t moff = pay.len;
            while (pay.len - moff < len) {
                uint8_t b = (uint8_t)rnd_next(&s);
                const char *c = chars[rnd_next(&s) % 4];
                if (text)
                    bytes_add(&pay, c, strlen(c));
                else
                    bytes_add(&pay, &b, 1);
            }
            len = pay.len - moff;
            /* ...cut at random byte offsets (through characters too), with control frames between. */
            int nfrag = 1 + (int)(rnd_next(&s) % 4);
            size_t at = 0;
            for (int i = 0; i < nfrag; i++) {
                size_t flen = i + 1 == nfrag ? len - at : (size_t)(rnd_next(&s) % (len - at + 1));
                fr[nf++] = (struct iframe){i + 1 == nfrag, i == 0 ? (text ? 1 : 2) : 0, moff + at, flen};
                at += flen;
                if (rnd_next(&s) % 3 == 0) {
                    size_t clen = rnd_next(&s) % 126;
                    uint8_t tmp[125];
                    fill_pattern(tmp, clen, rnd_next(&s));
                    fr[nf++] = (struct iframe){1, rnd_next(&s) % 2 ? 9 : 10, pay.len, clen};
                    bytes_add(&pay, tmp, clen);
                }
            }
        }
        for (int i = 0; i < nf; i++)
            put_frame(&in, fr[i].fin, 0, fr[i].opcode, dir == WSG_WS_C2U ? cli_mask : NULL, pay.p + fr[i].off,
                      fr[i].len);
        struct harness h;
        h_init(&h, dir, NULL, FEED_RANDOM, (enum sink_mode)(seed % SINK__COUNT),
               64 + (uint32_t)(seed * 97 % 5000), seed);
        h_feed_bytes(&h, &in);
        h_drain(&h);
        const char *why = NULL;
        if (h.rc != 0) {
            wsg_ws_relay_error(h.r, &why);
            fail_msg("seed %u: %s", (unsigned)seed, why);
        }
        struct decoded d;
        decode_all(&h.out, &d);
        assert_int_equal(d.n, nf);
        assert_int_equal(d.trailing, 0);
        for (int i = 0; i < nf; i++) {
            assert_int_equal(d.f[i].fin, fr[i].fin);
            assert_int_equal(d.f[i].opcode, fr[i].opcode);
            assert_int_equal(d.f[i].len, fr[i].len);
            if (fr[i].len != 0)
                assert_memory_equal(d.f[i].payload, pay.p + fr[i].off, fr[i].len);
        }
        check_masks(&h, &d);
        assert_int_equal(wsg_buf_len(&h.src), 0);
        decoded_free(&d);
        h_fini(&h);
        bytes_free(&in);
        bytes_free(&pay);
    }
}

/* ---- violations ---- */

struct violation {
    const char *name;
    enum wsg_ws_dir dir;
    struct wsg_ws_limits lim;
    void (*build)(struct bytes *in); /* valid frames first, then the offending one */
    int good_frames;                 /* complete frames expected on the output */
    int code;
    const char *reason;
};

static void v_unmasked(struct bytes *in)
{
    cframe(in, 1, 2, "ok", 2);
    put_frame(in, 1, 0, 2, NULL, "bad", 3);
}
static void v_masked_server(struct bytes *in)
{
    put_frame(in, 1, 0, 2, NULL, "ok", 2);
    put_frame(in, 1, 0, 2, cli_mask, "bad", 3);
}
static void v_rsv1(struct bytes *in)
{
    cframe(in, 1, 1, "ok", 2);
    put_frame(in, 1, 4, 1, cli_mask, "bad", 3);
}
static void v_rsv3(struct bytes *in)
{
    put_frame(in, 1, 1, 2, cli_mask, "bad", 3);
}
static void v_opcode3(struct bytes *in)
{
    cframe(in, 1, 2, "ok", 2);
    cframe(in, 1, 3, "bad", 3);
}
static void v_opcode_b(struct bytes *in)
{
    cframe(in, 1, 0xb, "bad", 3);
}
static void v_ping_nofin(struct bytes *in)
{
    cframe(in, 1, 9, "ok", 2);
    cframe(in, 0, 9, "bad", 3);
}
static void v_ping_126(struct bytes *in)
{
    uint8_t p[126] = {0};
    cframe(in, 1, 9, p, 126);
}
static void v_cont_first(struct bytes *in)
{
    cframe(in, 1, 2, "ok", 2);
    cframe(in, 1, 0, "bad", 3);
}
static void v_text_in_fragmented(struct bytes *in)
{
    cframe(in, 0, 2, "one", 3);
    cframe(in, 1, 9, "ping", 4);
    cframe(in, 1, 1, "bad", 3);
}
static void v_bad_utf8(struct bytes *in)
{
    cframe(in, 1, 1, "ok", 2);
    cframe(in, 1, 1, "abc\xC0\x80", 5);
}
static void v_utf8_truncated_fin(struct bytes *in)
{
    cframe(in, 1, 1, "ok \xE2\x82\xAC", 6);
    cframe(in, 1, 1, "abc\xE2\x82", 5);
}
static void v_utf8_truncated_fragments(struct bytes *in)
{
    cframe(in, 0, 1, "x\xE2", 2); /* valid so far: forwarded */
    cframe(in, 1, 0, "y", 1);     /* \xE2 'y' is invalid */
}
static void v_utf8_end_mid_seq_fragments(struct bytes *in)
{
    cframe(in, 0, 1, "x\xF0\x9F", 3);
    cframe(in, 0, 0, "\x98", 1);
    cframe(in, 1, 0, "", 0); /* message ends with one byte owed */
}
static void v_close_1byte(struct bytes *in)
{
    cframe(in, 1, 8, "\x03", 1);
}
static void close_with_code(struct bytes *in, int code)
{
    uint8_t p[8];
    size_t n;
    close_payload(p, &n, code, "x");
    cframe(in, 1, 2, "ok", 2);
    cframe(in, 1, 8, p, n);
}
static void v_close_1005(struct bytes *in)
{
    close_with_code(in, 1005);
}
static void v_close_999(struct bytes *in)
{
    close_with_code(in, 999);
}
static void v_close_5000(struct bytes *in)
{
    close_with_code(in, 5000);
}
static void v_close_1006(struct bytes *in)
{
    close_with_code(in, 1006);
}
static void v_close_1015(struct bytes *in)
{
    close_with_code(in, 1015);
}
static void v_close_2000(struct bytes *in)
{
    close_with_code(in, 2000);
}
static void v_close_bad_reason(struct bytes *in)
{
    cframe(in, 1, 8, "\x03\xe8good\xED\xA0\x80", 9); /* 1000 + a surrogate */
}
static void v_nonminimal_len(struct bytes *in)
{
    /* 10 bytes encoded with the 16-bit length */
    uint8_t f[] = {0x82, 0x80 | 126, 0, 10, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    bytes_add(in, f, sizeof(f));
}
static void v_max_frame_header_only(struct bytes *in)
{
    /* only the header of a 1001-byte frame: 2 + 2 + mask */
    uint8_t f[] = {0x82, 0x80 | 126, 0x03, 0xe9, 1, 2, 3, 4};
    cframe(in, 1, 2, "ok", 2);
    bytes_add(in, f, sizeof(f));
}
static void v_max_frame_64(struct bytes *in)
{
    /* 64-bit length of 2^40, and nothing after the length itself */
    uint8_t f[] = {0x82, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0};
    bytes_add(in, f, sizeof(f));
}
static void v_max_message_header_only(struct bytes *in)
{
    uint8_t p[60] = {0};
    cframe(in, 0, 2, p, 60);
    cframe(in, 1, 9, "", 0);
    uint8_t f[] = {0x80, 0x80 | 50, 9, 9, 9, 9}; /* FIN continuation of 50 bytes: 110 > 100 */
    bytes_add(in, f, sizeof(f));
}

static void v_max_fragments_header_only(struct bytes *in)
{
    cframe(in, 0, 1, "a", 1);
    cframe(in, 1, 9, "p", 1); /* control frames are not fragments */
    cframe(in, 0, 0, "b", 1);
    cframe(in, 0, 0, "c", 1);                   /* 3 fragments: at the limit */
    uint8_t f[] = {0x80, 0x80 | 1, 1, 2, 3, 4}; /* the 4th: its header only */
    bytes_add(in, f, sizeof(f));
}
static void v_deny_text_header_only(struct bytes *in)
{
    cframe(in, 1, 2, "bin", 3);
    uint8_t f[] = {0x81, 0x80 | 5, 1, 2, 3, 4};
    bytes_add(in, f, sizeof(f));
}
static void v_deny_binary_header_only(struct bytes *in)
{
    put_frame(in, 0, 0, 1, NULL, "te", 2);
    put_frame(in, 1, 0, 0, NULL, "xt", 2);
    uint8_t f[] = {0x82, 126, 0x10, 0x00}; /* 4096 bytes announced, none sent */
    bytes_add(in, f, sizeof(f));
}

static const struct violation violations[] = {
    {"unmasked client frame", WSG_WS_C2U, {0}, v_unmasked, 1, 1002, "unmasked client frame"},
    {"masked server frame", WSG_WS_U2C, {0}, v_masked_server, 1, 1002, "masked server frame"},
    {"rsv1", WSG_WS_C2U, {0}, v_rsv1, 1, 1002, "reserved bit set"},
    {"rsv3", WSG_WS_C2U, {0}, v_rsv3, 0, 1002, "reserved bit set"},
    {"opcode 3", WSG_WS_C2U, {0}, v_opcode3, 1, 1002, "reserved opcode"},
    {"opcode 0xb", WSG_WS_C2U, {0}, v_opcode_b, 0, 1002, "reserved opcode"},
    {"ping without fin", WSG_WS_C2U, {0}, v_ping_nofin, 1, 1002, "fragmented control frame"},
    {"ping of 126", WSG_WS_C2U, {0}, v_ping_126, 0, 1002, "control frame over 125 bytes"},
    {"continuation first", WSG_WS_C2U, {0}, v_cont_first, 1, 1002, "continuation without a message"},
    {"text inside fragmented",
     WSG_WS_C2U,
     {0},
     v_text_in_fragmented,
     2,
     1002,
     "new message inside a fragmented one"},
    {"bad utf-8", WSG_WS_C2U, {0}, v_bad_utf8, 1, 1007, "invalid UTF-8"},
    {"utf-8 truncated at fin", WSG_WS_C2U, {0}, v_utf8_truncated_fin, 1, 1007, "truncated UTF-8"},
    {"utf-8 broken across fragments", WSG_WS_C2U, {0}, v_utf8_truncated_fragments, 1, 1007, "invalid UTF-8"},
    {"utf-8 message ends mid-char",
     WSG_WS_C2U,
     {0},
     v_utf8_end_mid_seq_fragments,
     2,
     1007,
     "truncated UTF-8"},
    {"close of 1 byte", WSG_WS_C2U, {0}, v_close_1byte, 0, 1002, "close payload of 1 byte"},
    {"close 1005", WSG_WS_C2U, {0}, v_close_1005, 1, 1002, "bad close code"},
    {"close 999", WSG_WS_C2U, {0}, v_close_999, 1, 1002, "bad close code"},
    {"close 5000", WSG_WS_C2U, {0}, v_close_5000, 1, 1002, "bad close code"},
    {"close 1006", WSG_WS_C2U, {0}, v_close_1006, 1, 1002, "bad close code"},
    {"close 1015", WSG_WS_C2U, {0}, v_close_1015, 1, 1002, "bad close code"},
    {"close 2000", WSG_WS_C2U, {0}, v_close_2000, 1, 1002, "bad close code"},
    {"close reason not utf-8", WSG_WS_C2U, {0}, v_close_bad_reason, 0, 1007, "invalid UTF-8 in close reason"},
    {"non-minimal length", WSG_WS_C2U, {0}, v_nonminimal_len, 0, 1002, "bad payload length"},
    {"max_frame on header",
     WSG_WS_C2U,
     {.max_frame = 1000},
     v_max_frame_header_only,
     1,
     1009,
     "frame exceeds max_frame"},
    {"max_frame 64-bit",
     WSG_WS_C2U,
     {.max_frame = 1u << 20},
     v_max_frame_64,
     0,
     1009,
     "frame exceeds max_frame"},
    {"max_message over fragments",
     WSG_WS_C2U,
     {.max_message = 100},
     v_max_message_header_only,
     2,
     1009,
     "message exceeds max_message"},
    {"max_fragments on header",
     WSG_WS_C2U,
     {.max_fragments = 3},
     v_max_fragments_header_only,
     4,
     1009,
     "too many fragments"},
    {"deny_text on header",
     WSG_WS_C2U,
     {.deny_text = 1},
     v_deny_text_header_only,
     1,
     1003,
     "text messages not allowed"},
    {"deny_binary on header",
     WSG_WS_U2C,
     {.deny_binary = 1},
     v_deny_binary_header_only,
     2,
     1003,
     "binary messages not allowed"},
};

static void test_violations(void **state)
{
    (void)state;
    for (size_t v = 0; v < sizeof(violations) / sizeof(violations[0]); v++)
        for (int f = 0; f < FEED__COUNT; f++)
            for (int s = 0; s < SINK__COUNT; s++) {
                const struct violation *vi = &violations[v];
                struct harness h;
                struct bytes in = {0};
                vi->build(&in);
                h_init(&h, vi->dir, &vi->lim, (enum feed_mode)f, (enum sink_mode)s, 4096, v);
                h_feed_bytes(&h, &in);
                h_drain(&h);
                const char *reason = NULL;
                int code = wsg_ws_relay_error(h.r, &reason);
                if (h.rc != WSG_ERR || code != vi->code || reason == NULL || strcmp(reason, vi->reason) != 0)
                    print_error("%s (feed %s, sink %s): rc %d code %d reason %s\n", vi->name, feed_names[f],
                                sink_names[s], h.rc, code, reason != NULL ? reason : "(null)");
                assert_int_equal(h.rc, WSG_ERR);
                assert_int_equal(code, vi->code);
                assert_string_equal(reason, vi->reason);
                /* The sink holds exactly the frames before the offending one, complete. */
                struct decoded d;
                decode_all(&h.out, &d);
                assert_int_equal(d.n, vi->good_frames);
                /* Bad UTF-8 in a text frame streamed in several chunks: the valid chunks before
                 * the bad byte went out (the header and part of the payload, never the bad
                 * chunk). Fed whole, the offending frame is one chunk and nothing of it leaves. */
                if (vi->code == 1007 && vi->build != v_close_bad_reason && f != FEED_WHOLE)
                    assert_true(d.trailing < in.len);
                else
                    assert_int_equal(d.trailing, 0);
                assert_int_equal(wsg_ws_relay_pump(h.r), WSG_ERR); /* sticky */
                decoded_free(&d);
                h_fini(&h);
                bytes_free(&in);
            }
}

/* The limit fires with only the first 4 bytes of the header in (no mask key, no payload). */
static void test_limits_on_partial_header(void **state)
{
    (void)state;
    struct wsg_ws_limits lim = {.max_frame = 1000, .max_message = 0};
    struct harness h;
    h_init(&h, WSG_WS_C2U, &lim, FEED_WHOLE, SINK_ALL, 4096, 1);
    static const uint8_t hdr[] = {0x82, 0x80 | 126, 0x03, 0xe9};
    assert_int_equal(wsg_buf_put(&h.src, hdr, 3), 3);
    assert_int_equal(wsg_ws_relay_pump(h.r), 0);
    assert_int_equal(wsg_buf_put(&h.src, hdr + 3, 1), 1);
    assert_int_equal(wsg_ws_relay_pump(h.r), WSG_ERR);
    assert_int_equal(wsg_ws_relay_error(h.r, NULL), 1009);
    assert_int_equal(h.out.len, 0);
    h_fini(&h);

    /* Exactly at the limit passes; the message limit counts every fragment. */
    lim.max_frame = 10;
    lim.max_message = 25;
    h_init(&h, WSG_WS_C2U, &lim, FEED_WHOLE, SINK_ALL, 4096, 1);
    struct bytes in = {0};
    cframe(&in, 0, 1, "0123456789", 10);
    cframe(&in, 0, 0, "0123456789", 10);
    cframe(&in, 1, 0, "01234", 5);
    cframe(&in, 1, 2, "0123456789", 10); /* a new message starts from 0 */
    h_feed_bytes(&h, &in);
    h_drain(&h);
    assert_int_equal(h.rc, 0);
    assert_int_equal(wsg_ws_relay_stats(h.r)->messages, 2);
    h_fini(&h);
    bytes_free(&in);
}

/* ---- close frames ---- */

static void test_close_relayed(void **state)
{
    (void)state;
    for (int f = 0; f < FEED__COUNT; f++)
        for (int s = 0; s < SINK__COUNT; s++) {
            struct harness h;
            struct bytes in = {0};
            uint8_t p[125];
            size_t n;
            char reason[124];
            memset(reason, 'r', 120);
            memcpy(reason + 120, "\xE2\x82\xAC", 4); /* 123 bytes, ends with a 3-byte char */
            close_payload(p, &n, 4000, reason);
            assert_int_equal(n, 125);
            cframe(&in, 1, 1, "hello", 5);
            cframe(&in, 1, 8, p, n);
            size_t close_end = in.len;
            cframe(&in, 1, 1, "after close", 11); /* must stay in src */
            h_init(&h, WSG_WS_C2U, NULL, (enum feed_mode)f, (enum sink_mode)s, 4096, 3);
            h_feed_bytes(&h, &in);
            h_drain(&h);
            assert_int_equal(h.rc, 0);
            assert_true(wsg_ws_relay_closed(h.r));
            struct decoded d;
            decode_all(&h.out, &d);
            assert_int_equal(d.n, 2);
            assert_int_equal(d.trailing, 0);
            assert_int_equal(d.f[1].opcode, 8);
            assert_int_equal(d.f[1].len, 125);
            assert_memory_equal(d.f[1].payload, p, 125);
            check_masks(&h, &d);
            assert_int_equal(wsg_ws_relay_stats(h.r)->close_code, 4000);
            /* The relay consumed exactly the bytes it decoded. */
            assert_int_equal(wsg_buf_len(&h.src), in.len - close_end);
            assert_int_equal(wsg_ws_relay_pump(h.r), 0);
            decoded_free(&d);
            h_fini(&h);
            bytes_free(&in);
        }
}

static void test_close_empty_and_codes(void **state)
{
    (void)state;
    static const int codes[] = {0, 1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        struct harness h;
        struct bytes in = {0};
        uint8_t p[8];
        size_t n = 0;
        if (codes[i] != 0)
            close_payload(p, &n, codes[i], "");
        put_frame(&in, 1, 0, 8, NULL, p, n);
        h_init(&h, WSG_WS_U2C, NULL, FEED_ONE, SINK_FLAKY, 64, i);
        h_feed_bytes(&h, &in);
        h_drain(&h);
        assert_int_equal(h.rc, 0);
        assert_true(wsg_ws_relay_closed(h.r));
        assert_int_equal(wsg_ws_relay_stats(h.r)->close_code, codes[i] != 0 ? codes[i] : 1005);
        assert_int_equal(h.out.len, in.len);
        assert_memory_equal(h.out.p, in.p, in.len); /* unmasked both sides: byte-exact */
        h_fini(&h);
        bytes_free(&in);
    }
}

static void test_send_close_idle(void **state)
{
    (void)state;
    for (int s = 0; s < SINK__COUNT; s++) {
        struct harness h;
        h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, (enum sink_mode)s, 4096, 8);
        assert_true(wsg_ws_relay_idle_out(h.r));
        int rc;
        int rounds = 0;
        while ((rc = wsg_ws_relay_send_close(h.r, 1001, "going away")) == 0)
            assert_true(++rounds < 1000);
        assert_true(rc > 0);
        assert_true(wsg_ws_relay_closed(h.r));
        struct decoded d;
        decode_all(&h.out, &d);
        assert_int_equal(d.n, 1);
        assert_int_equal(d.f[0].opcode, 8);
        assert_int_equal(d.f[0].fin, 1);
        assert_int_equal(d.f[0].len, 12);
        assert_memory_equal(d.f[0].payload, "\x03\xe9going away", 12);
        check_masks(&h, &d);
        /* Nothing is forwarded after the gateway's close. */
        struct bytes in = {0};
        cframe(&in, 1, 2, "late", 4);
        h_feed_bytes(&h, &in);
        h_drain(&h);
        assert_int_equal(h.rc, 0);
        decoded_free(&d);
        decode_all(&h.out, &d);
        assert_int_equal(d.n, 1);
        assert_int_equal(wsg_ws_relay_send_close(h.r, 1000, ""), 1); /* idempotent */
        decoded_free(&d);
        h_fini(&h);
        bytes_free(&in);
    }
}

static void test_send_close_blocked_sink(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, WSG_WS_U2C, NULL, FEED_WHOLE, SINK_ALL, 4096, 8);
    h.blocked = 1;
    assert_int_equal(wsg_ws_relay_send_close(h.r, 1009, "too big"), 0);
    assert_false(wsg_ws_relay_closed(h.r));
    h.blocked = 0;
    assert_true(wsg_ws_relay_pump(h.r) > 0);
    assert_true(wsg_ws_relay_closed(h.r));
    assert_int_equal(wsg_ws_relay_send_close(h.r, 1009, "too big"), 1);
    assert_int_equal(h.out.len, 2 + 2 + 7);
    assert_memory_equal(h.out.p, "\x88\x09\x03\xf1too big", 11);
    h_fini(&h);
}

static void test_send_close_mid_frame(void **state)
{
    (void)state;
    for (int s = 0; s < SINK__COUNT; s++) {
        struct harness h;
        struct bytes in = {0};
        uint8_t payload[1000];
        fill_pattern(payload, sizeof(payload), 4);
        cframe(&in, 1, 2, payload, sizeof(payload));
        cframe(&in, 1, 2, "not forwarded", 13);
        h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, (enum sink_mode)s, 4096, 9);
        /* The 8-byte header and 402 payload bytes only. */
        h_feed(&h, in.p, 410);
        h_drain(&h);
        assert_int_equal(h.rc, 0);
        assert_false(wsg_ws_relay_idle_out(h.r));
        assert_int_equal(wsg_ws_relay_send_close(h.r, 1008, "policy"), 0);
        assert_false(wsg_ws_relay_closed(h.r));
        /* The rest of the frame arrives: it completes, then the close goes out, then nothing. */
        h_feed(&h, in.p + 410, in.len - 410);
        h_drain(&h);
        assert_int_equal(h.rc, 0);
        assert_true(wsg_ws_relay_closed(h.r));
        assert_int_equal(wsg_ws_relay_send_close(h.r, 1008, "policy"), 1);
        struct decoded d;
        decode_all(&h.out, &d);
        assert_int_equal(d.n, 2);
        assert_int_equal(d.trailing, 0);
        assert_int_equal(d.f[0].opcode, 2);
        assert_int_equal(d.f[0].len, 1000);
        assert_memory_equal(d.f[0].payload, payload, 1000);
        assert_int_equal(d.f[1].opcode, 8);
        assert_memory_equal(d.f[1].payload, "\x03\xf0policy", 8);
        check_masks(&h, &d);
        /* The relayed close code stays "none": the close was the gateway's. */
        assert_int_equal(wsg_ws_relay_stats(h.r)->close_code, 0);
        decoded_free(&d);
        h_fini(&h);
        bytes_free(&in);
    }
}

static void test_send_close_reason_truncated(void **state)
{
    (void)state;
    struct harness h;
    char reason[300] = "";
    for (int i = 0; i < 100; i++)
        strcat(reason, "\xC3\xA9"); /* 200 bytes of 2-byte chars */
    h_init(&h, WSG_WS_U2C, NULL, FEED_WHOLE, SINK_ALL, 4096, 1);
    assert_true(wsg_ws_relay_send_close(h.r, 1000, reason) > 0);
    struct decoded d;
    decode_all(&h.out, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.f[0].len, 2 + 122); /* 123 would split a character */
    assert_int_equal(wsg_utf8_step(0, d.f[0].payload + 2, 122), 0);
    decoded_free(&d);
    h_fini(&h);

    /* Invalid codes are refused; code 0 sends an empty close. */
    h_init(&h, WSG_WS_U2C, NULL, FEED_WHOLE, SINK_ALL, 4096, 1);
    assert_int_equal(wsg_ws_relay_send_close(h.r, 1005, NULL), WSG_ERR);
    assert_true(wsg_ws_relay_send_close(h.r, 0, NULL) > 0);
    assert_int_equal(h.out.len, 2);
    assert_memory_equal(h.out.p, "\x88\x00", 2);
    h_fini(&h);
}

static void test_send_close_after_violation(void **state)
{
    (void)state;
    /* Violation between frames: the gateway's close still goes out on this hop. */
    struct harness h;
    struct bytes in = {0};
    cframe(&in, 1, 2, "ok", 2);
    put_frame(&in, 1, 0, 2, NULL, "unmasked", 8);
    h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, SINK_ALL, 4096, 2);
    h_feed_bytes(&h, &in);
    assert_int_equal(h.rc, WSG_ERR);
    h.blocked = 1;
    assert_int_equal(wsg_ws_relay_send_close(h.r, 1001, "bye"), 0);
    h.blocked = 0;
    assert_int_equal(wsg_ws_relay_pump(h.r), WSG_ERR); /* still an error, but drives the close */
    assert_int_equal(wsg_ws_relay_send_close(h.r, 1001, "bye"), 1);
    struct decoded d;
    decode_all(&h.out, &d);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.f[1].opcode, 8);
    decoded_free(&d);
    h_fini(&h);
    bytes_free(&in);

    /* Violation mid-frame: the frame can never complete, so no close is possible on this hop. */
    memset(&in, 0, sizeof(in));
    cframe(&in, 1, 1, "valid \xFF", 7);
    h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, SINK_ALL, 4096, 2);
    h_feed(&h, in.p, 6 + 3); /* "val" goes out: the encoder is mid-frame */
    h_feed(&h, in.p + 9, in.len - 9);
    assert_int_equal(h.rc, WSG_ERR);
    assert_int_equal(wsg_ws_relay_error(h.r, NULL), 1007);
    assert_false(wsg_ws_relay_idle_out(h.r));
    assert_int_equal(wsg_ws_relay_send_close(h.r, 1001, "bye"), WSG_ERR);
    h_fini(&h);
    bytes_free(&in);
}

static void test_sink_failure(void **state)
{
    (void)state;
    struct harness h;
    struct bytes in = {0};
    cframe(&in, 1, 2, "data", 4);
    h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, SINK_ALL, 4096, 2);
    h.fail_sink = 1;
    h_feed_bytes(&h, &in);
    assert_int_equal(h.rc, WSG_ERR);
    assert_int_equal(wsg_ws_relay_error(h.r, NULL), 1011);
    assert_int_equal(wsg_ws_relay_send_close(h.r, 1000, ""), WSG_ERR);
    h_fini(&h);
    bytes_free(&in);
}

/* ---- policy limits: fragments, opcodes, UTF-8 off ---- */

/* Runs in through a relay with lim in every feed/sink mode; expects no error and the same frames
 * out (byte-exact when U2C). */
static void relay_valid(enum wsg_ws_dir dir, const struct wsg_ws_limits *lim, const struct bytes *in,
                        int want_frames)
{
    for (int f = 0; f < FEED__COUNT; f++)
        for (int s = 0; s < SINK__COUNT; s++) {
            struct harness h;
            h_init(&h, dir, lim, (enum feed_mode)f, (enum sink_mode)s, 4096, (uint64_t)(f * 3 + s));
            h_feed_bytes(&h, in);
            h_drain(&h);
            const char *why = NULL;
            if (h.rc != 0) {
                wsg_ws_relay_error(h.r, &why);
                fail_msg("feed %s sink %s: %s", feed_names[f], sink_names[s], why);
            }
            struct decoded d;
            decode_all(&h.out, &d);
            assert_int_equal(d.n, want_frames);
            assert_int_equal(d.trailing, 0);
            check_masks(&h, &d);
            if (dir == WSG_WS_U2C) {
                assert_int_equal(h.out.len, in->len);
                assert_memory_equal(h.out.p, in->p, in->len);
            }
            assert_int_equal(wsg_buf_len(&h.src), 0);
            assert_int_equal(wsg_ws_relay_stats(h.r)->bytes_in, in->len);
            decoded_free(&d);
            h_fini(&h);
        }
}

static void test_max_fragments(void **state)
{
    (void)state;
    struct wsg_ws_limits lim = {.max_fragments = 3};
    for (int dir = 0; dir < 2; dir++) {
        const uint8_t *m = dir == WSG_WS_C2U ? cli_mask : NULL;
        struct bytes in = {0};
        /* Exactly 3 fragments (pings between do not count), then 1, 2 and 3 again: the count
         * starts over with every message. */
        put_frame(&in, 0, 0, 1, m, "a", 1);
        put_frame(&in, 1, 0, 9, m, "p", 1);
        put_frame(&in, 0, 0, 0, m, "b", 1);
        put_frame(&in, 1, 0, 10, m, "q", 1);
        put_frame(&in, 1, 0, 0, m, "c", 1);
        put_frame(&in, 1, 0, 2, m, "one", 3);
        put_frame(&in, 0, 0, 2, m, "tw", 2);
        put_frame(&in, 1, 0, 0, m, "o", 1);
        put_frame(&in, 0, 0, 1, m, "x", 1);
        put_frame(&in, 0, 0, 0, m, "", 0);
        put_frame(&in, 1, 0, 0, m, "z", 1);
        relay_valid((enum wsg_ws_dir)dir, &lim, &in, 11);
        bytes_free(&in);
    }

    /* max_fragments 1: no fragmentation at all; the second fragment's header alone fails. */
    lim.max_fragments = 1;
    struct harness h;
    struct bytes in = {0};
    put_frame(&in, 1, 0, 2, NULL, "whole", 5);
    put_frame(&in, 0, 0, 2, NULL, "first", 5);
    size_t at = in.len;
    put_frame(&in, 1, 0, 0, NULL, "second", 6);
    h_init(&h, WSG_WS_U2C, &lim, FEED_ONE, SINK_ALL, 4096, 1);
    h_feed(&h, in.p, at + 2);
    const char *why = NULL;
    assert_int_equal(h.rc, WSG_ERR);
    assert_int_equal(wsg_ws_relay_error(h.r, &why), 1009);
    assert_string_equal(why, "too many fragments");
    assert_int_equal(h.out.len, at); /* the first fragment went out, nothing of the second */
    assert_int_equal(wsg_buf_len(&h.src), 2);
    h_fini(&h);
    bytes_free(&in);
}

static void test_deny_opcodes(void **state)
{
    (void)state;
    for (int dir = 0; dir < 2; dir++) {
        const uint8_t *m = dir == WSG_WS_C2U ? cli_mask : NULL;
        /* deny_binary: fragmented text (continuations carry opcode 0) and control frames pass. */
        struct wsg_ws_limits lim = {.deny_binary = 1};
        struct bytes in = {0};
        put_frame(&in, 0, 0, 1, m, "hel", 3);
        put_frame(&in, 1, 0, 9, m, "", 0);
        put_frame(&in, 0, 0, 0, m, "lo ", 3);
        put_frame(&in, 1, 0, 0, m, "world", 5);
        put_frame(&in, 1, 0, 1, m, "again", 5);
        relay_valid((enum wsg_ws_dir)dir, &lim, &in, 5);
        bytes_free(&in);

        /* deny_text: the mirror image. */
        struct wsg_ws_limits lim2 = {.deny_text = 1};
        memset(&in, 0, sizeof(in));
        put_frame(&in, 0, 0, 2, m, "\xff\x00", 2);
        put_frame(&in, 1, 0, 10, m, "pong", 4);
        put_frame(&in, 1, 0, 0, m, "\x80", 1);
        relay_valid((enum wsg_ws_dir)dir, &lim2, &in, 3);
        bytes_free(&in);
    }

    /* Both denied: the first data header closes 1003, with only 2 bytes of it in. */
    struct wsg_ws_limits both = {.deny_text = 1, .deny_binary = 1};
    static const uint8_t hdr[] = {0x81, 0x85};
    struct harness h;
    h_init(&h, WSG_WS_C2U, &both, FEED_WHOLE, SINK_ALL, 4096, 1);
    assert_int_equal(wsg_buf_put(&h.src, hdr, 1), 1);
    assert_int_equal(wsg_ws_relay_pump(h.r), 0);
    assert_int_equal(wsg_buf_put(&h.src, hdr + 1, 1), 1);
    assert_int_equal(wsg_ws_relay_pump(h.r), WSG_ERR);
    const char *why = NULL;
    assert_int_equal(wsg_ws_relay_error(h.r, &why), 1003);
    assert_string_equal(why, "text messages not allowed");
    assert_int_equal(h.out.len, 0);
    assert_int_equal(wsg_buf_len(&h.src), 2);
    h_fini(&h);
}

static void test_no_utf8(void **state)
{
    (void)state;
    struct wsg_ws_limits lim = {.no_utf8 = 1};
    for (int dir = 0; dir < 2; dir++) {
        const uint8_t *m = dir == WSG_WS_C2U ? cli_mask : NULL;
        struct bytes in = {0};
        put_frame(&in, 1, 0, 1, m, "bad \xff\xc0\x80 \xed\xa0\x80", 11);
        put_frame(&in, 0, 0, 1, m, "ends mid \xe2\x82", 11); /* truncated at FIN too */
        put_frame(&in, 1, 0, 0, m, "\xf0", 1);
        put_frame(&in, 1, 0, 8, m, "\x03\xe8\xff\xfe", 4); /* close reason not UTF-8 */
        relay_valid((enum wsg_ws_dir)dir, &lim, &in, 4);
        bytes_free(&in);
    }
    /* The payload arrives byte-exact (C2U: unmasked payload equal). */
    struct harness h;
    struct bytes in = {0};
    cframe(&in, 1, 1, "\xc0\xaf\xff", 3);
    h_init(&h, WSG_WS_C2U, &lim, FEED_ONE, SINK_ONE, 4096, 2);
    h_feed_bytes(&h, &in);
    h_drain(&h);
    assert_int_equal(h.rc, 0);
    struct decoded d;
    decode_all(&h.out, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.f[0].len, 3);
    assert_memory_equal(d.f[0].payload, "\xc0\xaf\xff", 3);
    decoded_free(&d);
    h_fini(&h);
    bytes_free(&in);
    /* The close code is still checked. */
    memset(&in, 0, sizeof(in));
    cframe(&in, 1, 8, "\x03\xed\xff", 3); /* 1005 */
    h_init(&h, WSG_WS_C2U, &lim, FEED_WHOLE, SINK_ALL, 4096, 2);
    h_feed_bytes(&h, &in);
    assert_int_equal(h.rc, WSG_ERR);
    assert_int_equal(wsg_ws_relay_error(h.r, NULL), 1002);
    h_fini(&h);
    bytes_free(&in);
}

/* ---- admission hook ---- */

#define MAX_CALLS 256

struct admit_log {
    struct wsg_ws_frame_info calls[MAX_CALLS];
    int n;
    int hold_opcode; /* hold frames with this opcode (-1: none) */
    int fail_at;     /* answer fail_code on this call index (-1: never) */
    int fail_code;
    const char *fail_reason;
};

static int test_admit(void *ctx, const struct wsg_ws_frame_info *fi, const char **reason)
{
    struct admit_log *a = ctx;
    assert_true(a->n < MAX_CALLS);
    int i = a->n++;
    a->calls[i] = *fi;
    if (i == a->fail_at) {
        *reason = a->fail_reason;
        return a->fail_code;
    }
    if (fi->opcode == a->hold_opcode)
        return WSG_AGAIN;
    return 0;
}

static void admit_log_init(struct admit_log *a)
{
    memset(a, 0, sizeof(*a));
    a->hold_opcode = -1;
    a->fail_at = -1;
}

static void test_admit_hold(void **state)
{
    (void)state;
    for (int f = 0; f < FEED__COUNT; f++)
        for (int s = 0; s < SINK__COUNT; s++) {
            struct harness h;
            struct admit_log a;
            struct bytes in = {0};
            uint8_t big[3000];
            fill_pattern(big, sizeof(big), 7);
            put_frame(&in, 1, 0, 2, NULL, big, sizeof(big));
            size_t first = in.len;
            put_frame(&in, 1, 0, 1, NULL, "held text", 9);
            put_frame(&in, 1, 0, 2, NULL, "after", 5);
            admit_log_init(&a);
            a.hold_opcode = 1;
            h_init(&h, WSG_WS_U2C, NULL, (enum feed_mode)f, (enum sink_mode)s, 4096, 40 + f * 3 + s);
            wsg_ws_relay_set_admit(h.r, test_admit, &a);
            h_feed_bytes(&h, &in);
            h_drain(&h);
            assert_int_equal(h.rc, 0);
            /* The first frame went out whole; nothing of the held one, and src still has it. */
            assert_int_equal(h.out.len, first);
            assert_memory_equal(h.out.p, in.p, first);
            assert_int_equal(wsg_buf_len(&h.src), in.len - first);
            uint32_t avail;
            const uint8_t *p = wsg_buf_peek(&h.src, &avail);
            assert_memory_equal(p, in.p + first, in.len - first);
            assert_true(wsg_ws_relay_idle_out(h.r));
            assert_int_equal(wsg_ws_relay_pending_out(h.r), 0);
            /* Every pump asks again, and returns 0. */
            int n = a.n;
            assert_true(n >= 2);
            assert_int_equal(a.calls[n - 1].opcode, 1);
            for (int i = 0; i < 3; i++) {
                assert_int_equal(wsg_ws_relay_pump(h.r), 0);
                assert_int_equal(a.n, n + i + 1);
            }
            assert_int_equal(wsg_buf_len(&h.src), in.len - first);
            assert_int_equal(h.out.len, first);
            /* Released: everything passes, byte-exact; the held frame was admitted once more. */
            a.hold_opcode = -1;
            n = a.n;
            h_drain(&h);
            assert_int_equal(h.rc, 0);
            assert_int_equal(h.out.len, in.len);
            assert_memory_equal(h.out.p, in.p, in.len);
            assert_int_equal(a.n, n + 2); /* the held frame, then "after" */
            assert_int_equal(a.calls[n].opcode, 1);
            assert_int_equal(a.calls[n + 1].opcode, 2);
            assert_int_equal(wsg_ws_relay_stats(h.r)->frames, 3);
            h_fini(&h);
            bytes_free(&in);
        }
}

static void test_admit_close(void **state)
{
    (void)state;
    for (int f = 0; f < FEED__COUNT; f++)
        for (int s = 0; s < SINK__COUNT; s++) {
            struct harness h;
            struct admit_log a;
            struct bytes in = {0};
            cframe(&in, 1, 2, "one", 3);
            cframe(&in, 1, 9, "ping", 4);
            size_t good = in.len;
            cframe(&in, 1, 1, "over the rate", 13);
            admit_log_init(&a);
            a.fail_at = 2;
            a.fail_code = 1008;
            a.fail_reason = "message rate exceeded";
            h_init(&h, WSG_WS_C2U, NULL, (enum feed_mode)f, (enum sink_mode)s, 4096, 9);
            wsg_ws_relay_set_admit(h.r, test_admit, &a);
            h_feed_bytes(&h, &in);
            h_drain(&h);
            assert_int_equal(h.rc, WSG_ERR);
            const char *why = NULL;
            assert_int_equal(wsg_ws_relay_error(h.r, &why), 1008);
            assert_string_equal(why, "message rate exceeded");
            assert_int_equal(a.n, 3);
            struct decoded d;
            decode_all(&h.out, &d);
            assert_int_equal(d.n, 2);
            assert_int_equal(d.trailing, 0);
            decoded_free(&d);
            /* Nothing of the refused frame was taken from src. */
            if (f == FEED_WHOLE)
                assert_int_equal(wsg_buf_len(&h.src), in.len - good);
            assert_int_equal(wsg_ws_relay_stats(h.r)->bytes_in, good);
            assert_int_equal(wsg_ws_relay_pump(h.r), WSG_ERR); /* sticky, not asked again */
            assert_int_equal(a.n, 3);
            /* The gateway can still close this hop: the encoder is between frames. */
            int rc, rounds = 0;
            while ((rc = wsg_ws_relay_send_close(h.r, 1008, "message rate exceeded")) == 0)
                assert_true(++rounds < 1000);
            assert_true(rc > 0);
            h_fini(&h);
            bytes_free(&in);
        }

    /* NULL reason, and a value that is no close code. */
    struct harness h;
    struct admit_log a;
    struct bytes in = {0};
    cframe(&in, 1, 2, "x", 1);
    admit_log_init(&a);
    a.fail_at = 0;
    a.fail_code = 4000;
    h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, SINK_ALL, 4096, 1);
    wsg_ws_relay_set_admit(h.r, test_admit, &a);
    h_feed_bytes(&h, &in);
    const char *why = NULL;
    assert_int_equal(wsg_ws_relay_error(h.r, &why), 4000);
    assert_string_equal(why, "policy violation");
    h_fini(&h);
    admit_log_init(&a);
    a.fail_at = 0;
    a.fail_code = 7;
    h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, SINK_ALL, 4096, 1);
    wsg_ws_relay_set_admit(h.r, test_admit, &a);
    h_feed_bytes(&h, &in);
    assert_int_equal(h.rc, WSG_ERR);
    assert_int_equal(wsg_ws_relay_error(h.r, NULL), 1011);
    assert_int_equal(h.out.len, 0);
    h_fini(&h);
    bytes_free(&in);
}

static void test_admit_frame_info(void **state)
{
    (void)state;
    static const struct {
        int fin, opcode;
        const char *p;
        int first;
    } fr[] = {
        {0, 1, "ab", 1}, {1, 9, "p", 0},   {0, 0, "cd", 0},       {1, 10, "", 0},
        {1, 0, "ef", 0}, {1, 2, "bin", 1}, {1, 8, "\x03\xe8", 0},
    };
    const int nfr = (int)(sizeof(fr) / sizeof(fr[0]));
    for (int f = 0; f < FEED__COUNT; f++)
        for (int s = 0; s < SINK__COUNT; s++)
            for (int dir = 0; dir < 2; dir++) {
                struct harness h;
                struct admit_log a;
                struct bytes in = {0};
                for (int i = 0; i < nfr; i++)
                    put_frame(&in, fr[i].fin, 0, fr[i].opcode, dir == WSG_WS_C2U ? cli_mask : NULL, fr[i].p,
                              strlen(fr[i].p));
                admit_log_init(&a);
                h_init(&h, (enum wsg_ws_dir)dir, NULL, (enum feed_mode)f, (enum sink_mode)s, 4096, 3);
                wsg_ws_relay_set_admit(h.r, test_admit, &a);
                h_feed_bytes(&h, &in);
                h_drain(&h);
                assert_int_equal(h.rc, 0);
                assert_true(wsg_ws_relay_closed(h.r));
                /* Exactly once per frame, in order, with the header's values. */
                assert_int_equal(a.n, nfr);
                for (int i = 0; i < nfr; i++) {
                    assert_int_equal(a.calls[i].opcode, fr[i].opcode);
                    assert_int_equal(a.calls[i].fin, fr[i].fin);
                    assert_int_equal(a.calls[i].payload_len, strlen(fr[i].p));
                    assert_int_equal(a.calls[i].first_of_message, fr[i].first);
                }
                struct decoded d;
                decode_all(&h.out, &d);
                assert_int_equal(d.n, nfr);
                decoded_free(&d);
                h_fini(&h);
                bytes_free(&in);
            }
}

/* ---- gateway pings, pong interception, pending output ---- */

/* Pumps until the output settles (the flaky sink needs several rounds). */
static void h_settle(struct harness *h)
{
    for (int i = 0; i < 64; i++)
        if (wsg_ws_relay_pump(h->r) == WSG_ERR)
            h->rc = WSG_ERR;
}

static void test_send_ping_idle(void **state)
{
    (void)state;
    for (int s = 0; s < SINK__COUNT; s++)
        for (int dir = 0; dir < 2; dir++) {
            struct harness h;
            h_init(&h, (enum wsg_ws_dir)dir, NULL, FEED_WHOLE, (enum sink_mode)s, 4096, 12);
            int rc = wsg_ws_relay_send_ping(h.r, (const uint8_t *)"tok-1", 5);
            assert_true(rc >= 0);
            if (s == SINK_ALL)
                assert_true(rc > 0);
            h_settle(&h);
            assert_int_equal(h.rc, 0);
            assert_true(wsg_ws_relay_idle_out(h.r));
            assert_false(wsg_ws_relay_closed(h.r));
            /* The relay goes on relaying after the ping. */
            struct bytes in = {0};
            put_frame(&in, 1, 0, 2, dir == WSG_WS_C2U ? cli_mask : NULL, "data", 4);
            h_feed_bytes(&h, &in);
            h_drain(&h);
            assert_int_equal(h.rc, 0);
            struct decoded d;
            decode_all(&h.out, &d);
            assert_int_equal(d.n, 2);
            assert_int_equal(d.trailing, 0);
            assert_int_equal(d.f[0].opcode, 9);
            assert_int_equal(d.f[0].fin, 1);
            assert_int_equal(d.f[0].len, 5);
            assert_memory_equal(d.f[0].payload, "tok-1", 5);
            assert_int_equal(d.f[1].opcode, 2);
            assert_memory_equal(d.f[1].payload, "data", 4);
            check_masks(&h, &d);
            /* Not a frame the relay read. */
            assert_int_equal(wsg_ws_relay_stats(h.r)->frames, 1);
            decoded_free(&d);
            /* Refused: too long; after a close. */
            uint8_t p[126] = {0};
            assert_int_equal(wsg_ws_relay_send_ping(h.r, p, 126), WSG_ERR);
            assert_true(wsg_ws_relay_send_ping(h.r, p, 125) >= 0);
            while (wsg_ws_relay_send_close(h.r, 1000, "") == 0)
                (void)wsg_ws_relay_pump(h.r);
            assert_int_equal(wsg_ws_relay_send_ping(h.r, p, 1), WSG_ERR);
            decode_all(&h.out, &d);
            assert_int_equal(d.n, 4);
            assert_int_equal(d.f[2].opcode, 9);
            assert_int_equal(d.f[2].len, 125);
            assert_int_equal(d.f[3].opcode, 8);
            decoded_free(&d);
            h_fini(&h);
            bytes_free(&in);
        }
}

static void test_send_ping_mid_frame(void **state)
{
    (void)state;
    for (int s = 0; s < SINK__COUNT; s++)
        for (int dir = 0; dir < 2; dir++) {
            struct harness h;
            struct bytes in = {0};
            const uint8_t *m = dir == WSG_WS_C2U ? cli_mask : NULL;
            uint8_t payload[1000];
            fill_pattern(payload, sizeof(payload), 4);
            put_frame(&in, 0, 0, 2, m, payload, sizeof(payload));
            size_t hdr = dir == WSG_WS_C2U ? 8 : 4;
            put_frame(&in, 1, 0, 0, m, "tail", 4);
            h_init(&h, (enum wsg_ws_dir)dir, NULL, FEED_WHOLE, (enum sink_mode)s, 4096, 9);
            /* The header and 402 payload bytes only: the encoder is mid-frame. */
            h_feed(&h, in.p, hdr + 402);
            h_drain(&h);
            assert_int_equal(h.rc, 0);
            assert_false(wsg_ws_relay_idle_out(h.r));
            assert_int_equal(wsg_ws_relay_send_ping(h.r, (const uint8_t *)"old", 3), 0);
            /* A second ping before the first started replaces it. */
            assert_int_equal(wsg_ws_relay_send_ping(h.r, (const uint8_t *)"hb-2", 4), 0);
            h_drain(&h);
            struct decoded d;
            decode_all(&h.out, &d);
            assert_int_equal(d.n, 0); /* still inside the data frame */
            decoded_free(&d);
            /* The rest arrives: the frame completes, the ping goes out between the two
             * fragments, then the last fragment. */
            h_feed(&h, in.p + hdr + 402, in.len - hdr - 402);
            h_drain(&h);
            assert_int_equal(h.rc, 0);
            assert_false(wsg_ws_relay_closed(h.r));
            decode_all(&h.out, &d);
            assert_int_equal(d.n, 3);
            assert_int_equal(d.trailing, 0);
            assert_int_equal(d.f[0].opcode, 2);
            assert_int_equal(d.f[0].fin, 0);
            assert_int_equal(d.f[0].len, 1000);
            assert_memory_equal(d.f[0].payload, payload, 1000);
            assert_int_equal(d.f[1].opcode, 9);
            assert_int_equal(d.f[1].len, 4);
            assert_memory_equal(d.f[1].payload, "hb-2", 4);
            assert_int_equal(d.f[2].opcode, 0);
            assert_int_equal(d.f[2].fin, 1);
            assert_memory_equal(d.f[2].payload, "tail", 4);
            check_masks(&h, &d);
            assert_int_equal(wsg_ws_relay_stats(h.r)->messages, 1);
            decoded_free(&d);
            h_fini(&h);
            bytes_free(&in);
        }

    /* A ping while the input frame is held by the admission hook goes out at once. */
    struct harness h;
    struct admit_log a;
    struct bytes in = {0};
    cframe(&in, 1, 2, "held", 4);
    admit_log_init(&a);
    a.hold_opcode = 2;
    h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, SINK_ALL, 4096, 1);
    wsg_ws_relay_set_admit(h.r, test_admit, &a);
    h_feed_bytes(&h, &in);
    assert_int_equal(h.out.len, 0);
    assert_true(wsg_ws_relay_send_ping(h.r, (const uint8_t *)"x", 1) > 0);
    a.hold_opcode = -1;
    h_drain(&h);
    struct decoded d;
    decode_all(&h.out, &d);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.f[0].opcode, 9);
    assert_int_equal(d.f[1].opcode, 2);
    check_masks(&h, &d);
    decoded_free(&d);
    h_fini(&h);
    bytes_free(&in);
}

static void test_expect_pong(void **state)
{
    (void)state;
    for (int f = 0; f < FEED__COUNT; f++)
        for (int s = 0; s < SINK__COUNT; s++)
            for (int dir = 0; dir < 2; dir++) {
                struct harness h;
                struct bytes in = {0};
                const uint8_t *m = dir == WSG_WS_C2U ? cli_mask : NULL;
                put_frame(&in, 0, 0, 1, m, "frag", 4);
                put_frame(&in, 1, 0, 10, m, "tox", 3); /* same length, other payload: relayed */
                put_frame(&in, 1, 0, 10, m, "tok", 3); /* ours: consumed */
                put_frame(&in, 1, 0, 0, m, "ment", 4);
                put_frame(&in, 1, 0, 10, m, "tok", 3);  /* token cleared: relayed */
                put_frame(&in, 1, 0, 10, m, "tokk", 4); /* relayed */
                h_init(&h, (enum wsg_ws_dir)dir, NULL, (enum feed_mode)f, (enum sink_mode)s, 4096, 21);
                wsg_ws_relay_expect_pong(h.r, (const uint8_t *)"tok", 3);
                h_feed_bytes(&h, &in);
                h_drain(&h);
                assert_int_equal(h.rc, 0);
                struct decoded d;
                decode_all(&h.out, &d);
                assert_int_equal(d.n, 5);
                assert_int_equal(d.trailing, 0);
                static const int ops[] = {1, 10, 0, 10, 10};
                static const char *const pays[] = {"frag", "tox", "ment", "tok", "tokk"};
                for (int i = 0; i < 5; i++) {
                    assert_int_equal(d.f[i].opcode, ops[i]);
                    assert_int_equal(d.f[i].len, strlen(pays[i]));
                    assert_memory_equal(d.f[i].payload, pays[i], strlen(pays[i]));
                }
                check_masks(&h, &d);
                const struct wsg_ws_stats *st = wsg_ws_relay_stats(h.r);
                assert_int_equal(st->gateway_pongs, 1);
                assert_int_equal(st->frames, 6);
                assert_int_equal(st->bytes_in, in.len);
                decoded_free(&d);
                h_fini(&h);
                bytes_free(&in);
            }

    /* An empty token matches an empty pong; NULL clears. */
    struct harness h;
    struct bytes in = {0};
    cframe(&in, 1, 10, "", 0);
    cframe(&in, 1, 10, "", 0);
    h_init(&h, WSG_WS_C2U, NULL, FEED_WHOLE, SINK_ALL, 4096, 2);
    wsg_ws_relay_expect_pong(h.r, (const uint8_t *)"", 0);
    h_feed(&h, in.p, 6);
    assert_int_equal(h.out.len, 0);
    assert_int_equal(wsg_ws_relay_stats(h.r)->gateway_pongs, 1);
    wsg_ws_relay_expect_pong(h.r, (const uint8_t *)"", 0);
    wsg_ws_relay_expect_pong(h.r, NULL, 0);
    h_feed(&h, in.p + 6, 6);
    struct decoded d;
    decode_all(&h.out, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.f[0].opcode, 10);
    decoded_free(&d);
    assert_int_equal(wsg_ws_relay_stats(h.r)->gateway_pongs, 1);
    h_fini(&h);
    bytes_free(&in);
}

static void test_pending_out(void **state)
{
    (void)state;
    struct harness h;
    struct bytes in = {0};
    uint8_t payload[1000];
    fill_pattern(payload, sizeof(payload), 5);

    /* A control frame is decoded by wslay before it goes out: while the sink is full, its payload
     * is held by the relay and counted. */
    put_frame(&in, 1, 0, 9, NULL, payload, 125);
    h_init(&h, WSG_WS_U2C, NULL, FEED_WHOLE, SINK_ALL, 4096, 1);
    assert_int_equal(wsg_ws_relay_pending_out(h.r), 0);
    h.blocked = 1;
    assert_int_equal(wsg_buf_put(&h.src, in.p, in.len), in.len);
    assert_true(wsg_ws_relay_pump(h.r) > 0); /* took the frame from src, the sink took nothing */
    assert_int_equal(wsg_buf_len(&h.src), 0);
    assert_int_equal(wsg_ws_relay_pending_out(h.r), 125);
    assert_int_equal(wsg_ws_relay_stats(h.r)->bytes_in, in.len);
    assert_int_equal(h.out.len, 0);
    h.blocked = 0;
    h.sink = SINK_ONE; /* a pump may stop after a byte: the count goes down as the sink takes */
    size_t last = 125;
    while (wsg_ws_relay_pump(h.r) > 0) {
        size_t now = wsg_ws_relay_pending_out(h.r);
        assert_true(now <= last);
        assert_int_equal(now, h.out.len <= 2 ? 125 : in.len - h.out.len);
        last = now;
    }
    assert_int_equal(wsg_ws_relay_pending_out(h.r), 0);
    assert_int_equal(h.out.len, in.len);
    assert_memory_equal(h.out.p, in.p, in.len);
    h_fini(&h);
    bytes_free(&in);

    /* A data frame (fast path): once its header passed the gate the relay keeps the header, but
     * its payload is never taken from src before the sink takes it: while the sink is full, src
     * keeps all of it and nothing is pending; then src shrinks by exactly what the sink took. */
    memset(&in, 0, sizeof(in));
    put_frame(&in, 1, 0, 2, NULL, payload, sizeof(payload));
    h_init(&h, WSG_WS_U2C, NULL, FEED_WHOLE, SINK_ALL, 4096, 1);
    h.blocked = 1;
    assert_int_equal(wsg_buf_put(&h.src, in.p, in.len), in.len);
    assert_true(wsg_ws_relay_pump(h.r) > 0); /* took the 4-byte header */
    assert_int_equal(wsg_buf_len(&h.src), 1000);
    assert_int_equal(wsg_ws_relay_pending_out(h.r), 0);
    assert_int_equal(wsg_ws_relay_stats(h.r)->bytes_in, 4);
    assert_false(wsg_ws_relay_idle_out(h.r)); /* committed to the frame: gateway frames wait */
    assert_int_equal(wsg_ws_relay_pump(h.r), 0);
    h.blocked = 0;
    h.sink = SINK_ONE;
    while (wsg_ws_relay_pump(h.r) > 0) {
        assert_int_equal(wsg_ws_relay_pending_out(h.r), 0);
        assert_int_equal(wsg_buf_len(&h.src), h.out.len <= 4 ? 1000 : in.len - h.out.len);
        assert_int_equal(wsg_ws_relay_stats(h.r)->bytes_in, h.out.len <= 4 ? 4 : h.out.len);
    }
    assert_int_equal(h.out.len, in.len);
    assert_memory_equal(h.out.p, in.p, in.len);
    assert_true(wsg_ws_relay_idle_out(h.r));
    h_fini(&h);
    bytes_free(&in);
}

/* ---- UTF-8 DFA ---- */

static uint32_t utf8(const char *s, size_t len)
{
    return wsg_utf8_step(0, (const uint8_t *)s, len);
}

static void test_utf8_boundaries(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"\x00", 1, 1},
        {"\x7F", 1, 1},             /* U+007F */
        {"\xC2\x80", 2, 1},         /* U+0080 */
        {"\xDF\xBF", 2, 1},         /* U+07FF */
        {"\xE0\xA0\x80", 3, 1},     /* U+0800 */
        {"\xED\x9F\xBF", 3, 1},     /* U+D7FF */
        {"\xEE\x80\x80", 3, 1},     /* U+E000 */
        {"\xEF\xBF\xBF", 3, 1},     /* U+FFFF */
        {"\xF0\x90\x80\x80", 4, 1}, /* U+10000 */
        {"\xF4\x8F\xBF\xBF", 4, 1}, /* U+10FFFF */
        {"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 11, 1},
        {"\x80", 1, 0}, /* lone continuation */
        {"\xBF", 1, 0},
        {"\xC0\x80", 2, 0},         /* overlong NUL */
        {"\xC1\xBF", 2, 0},         /* overlong U+007F */
        {"\xE0\x80\x80", 3, 0},     /* overlong */
        {"\xE0\x9F\xBF", 3, 0},     /* overlong U+07FF */
        {"\xF0\x80\x80\x80", 4, 0}, /* overlong */
        {"\xF0\x8F\xBF\xBF", 4, 0}, /* overlong U+FFFF */
        {"\xED\xA0\x80", 3, 0},     /* U+D800 */
        {"\xED\xBF\xBF", 3, 0},     /* U+DFFF */
        {"\xF4\x90\x80\x80", 4, 0}, /* U+110000 */
        {"\xF5\x80\x80\x80", 4, 0},
        {"\xF8\x88\x80\x80\x80", 5, 0},
        {"\xFE", 1, 0},
        {"\xFF", 1, 0},
        {"\xC2\x41", 2, 0}, /* lead then ASCII */
        {"\xE2\x82\x41", 3, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t st = utf8(cases[i].s, cases[i].len);
        if (cases[i].ok)
            assert_int_equal(st, 0);
        else
            assert_int_equal(st, 1);
    }
    /* Incomplete sequences are mid-sequence (neither 0 nor 1). */
    assert_true(utf8("\xC2", 1) > 1);
    assert_true(utf8("\xE0\xA0", 2) > 1);
    assert_true(utf8("\xF0\x90\x80", 3) > 1);
    /* Incremental: every split of a valid string gives the same result as the whole. */
    static const char s[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";
    for (size_t cut = 0; cut <= sizeof(s) - 1; cut++) {
        uint32_t st = wsg_utf8_step(0, (const uint8_t *)s, cut);
        assert_int_not_equal(st, 1);
        st = wsg_utf8_step(st, (const uint8_t *)s + cut, sizeof(s) - 1 - cut);
        assert_int_equal(st, 0);
    }
    /* Reject is sticky. */
    assert_int_equal(wsg_utf8_step(1, (const uint8_t *)"abc", 3), 1);
    /* Exhaustive over every 1- and 2-byte input against a reference rule. */
    for (int a = 0; a < 256; a++) {
        uint8_t b1 = (uint8_t)a;
        assert_int_equal(wsg_utf8_step(0, &b1, 1) == 0, a < 0x80);
        for (int b = 0; b < 256; b++) {
            uint8_t two[2] = {(uint8_t)a, (uint8_t)b};
            int want = (a < 0x80 && b < 0x80) || (a >= 0xC2 && a <= 0xDF && b >= 0x80 && b <= 0xBF);
            assert_int_equal(wsg_utf8_step(0, two, 2) == 0, want);
        }
    }
}

/* Reference: decode every code point 0..0x10FFFF to UTF-8 and check acceptance. */
static void test_utf8_all_code_points(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t b[4];
        size_t n;
        if (cp < 0x80) {
            b[0] = (uint8_t)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (uint8_t)(0xC0 | (cp >> 6));
            b[1] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (uint8_t)(0xE0 | (cp >> 12));
            b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            b[0] = (uint8_t)(0xF0 | (cp >> 18));
            b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            b[3] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 4;
        }
        int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        uint32_t st = wsg_utf8_step(0, b, n);
        if (surrogate)
            assert_int_equal(st, 1);
        else if (st != 0)
            fail_msg("U+%04X rejected", cp);
    }
}

static void test_close_code_valid(void **state)
{
    (void)state;
    for (int c = -1; c < 6000; c++) {
        int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
        if (wsg_ws_close_code_valid(c) != want)
            fail_msg("close code %d", c);
    }
}

/* ---- handshake ---- */

static void test_accept_key(void **state)
{
    (void)state;
    char accept[29];
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(wsg_ws_accept_key(key, 24, accept), 0);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    assert_int_equal(wsg_ws_accept_key(key, 23, accept), -1);
    assert_int_equal(wsg_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", 23, accept), -1);
    assert_int_equal(wsg_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ===", 25, accept), -1);
    assert_int_equal(wsg_ws_accept_key("dGhlIHNhbXBsZSBub25jZQAA", 24, accept), -1); /* 18 bytes */
    assert_int_equal(wsg_ws_accept_key("dGhlIHNhbXBsZSBub25j!Q==", 24, accept), -1);
    assert_int_equal(wsg_ws_accept_key("dGhlIHNhbXBsZSBub25j Q==", 24, accept), -1);
    assert_int_equal(wsg_ws_accept_key("", 0, accept), -1);
}

static void test_make_key(void **state)
{
    (void)state;
    uint8_t rnd[16];
    char key[25], accept[29];
    for (int i = 0; i < 16; i++)
        rnd[i] = (uint8_t)(i * 37 + 1);
    wsg_ws_make_key(rnd, key);
    assert_int_equal(strlen(key), 24);
    assert_int_equal(wsg_ws_accept_key(key, 24, accept), 0);
    memset(rnd, 0, 16);
    wsg_ws_make_key(rnd, key);
    assert_string_equal(key, "AAAAAAAAAAAAAAAAAAAAAA==");
}

static void check_strip(const char *in, const char *want)
{
    char out[256];
    size_t n = wsg_ws_strip_deflate(in, strlen(in), out);
    if (n != strlen(want) || memcmp(out, want, n) != 0)
        fail_msg("strip(\"%s\") = \"%.*s\", want \"%s\"", in, (int)n, out, want);
    assert_true(n <= strlen(in));
}

static void test_strip_deflate(void **state)
{
    (void)state;
    check_strip("", "");
    check_strip("permessage-deflate", "");
    check_strip("permessage-deflate; client_max_window_bits", "");
    check_strip("PerMessage-Deflate ; server_no_context_takeover", "");
    check_strip("permessage-deflate; client_max_window_bits, permessage-deflate", "");
    check_strip("permessage-deflate; client_max_window_bits, foo", "foo");
    check_strip("foo, permessage-deflate, bar; x=1", "foo, bar; x=1");
    check_strip("foo,bar", "foo,bar");
    check_strip("foo,permessage-deflate,bar", "foo, bar"); /* ", " fits once deflate is gone */
    check_strip(" foo ;a=1 ,  permessage-deflate ;x ", "foo ;a=1");
    check_strip("x; q=\"a,permessage-deflate\", permessage-deflate", "x; q=\"a,permessage-deflate\"");
    check_strip("permessage-deflate-x", "permessage-deflate-x");
    check_strip("x-webkit-deflate-frame", "x-webkit-deflate-frame");
    check_strip(", ,", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_small),
        cmocka_unit_test(test_size_1mib),
        cmocka_unit_test(test_fragmented_text_split_char),
        cmocka_unit_test(test_ping_pong_interleaved),
        cmocka_unit_test(test_codec_reuse_across_directions),
        cmocka_unit_test(test_large_fragmented_text),
        cmocka_unit_test(test_random_streams),
        cmocka_unit_test(test_violations),
        cmocka_unit_test(test_limits_on_partial_header),
        cmocka_unit_test(test_close_relayed),
        cmocka_unit_test(test_close_empty_and_codes),
        cmocka_unit_test(test_send_close_idle),
        cmocka_unit_test(test_send_close_blocked_sink),
        cmocka_unit_test(test_send_close_mid_frame),
        cmocka_unit_test(test_send_close_reason_truncated),
        cmocka_unit_test(test_send_close_after_violation),
        cmocka_unit_test(test_sink_failure),
        cmocka_unit_test(test_max_fragments),
        cmocka_unit_test(test_deny_opcodes),
        cmocka_unit_test(test_no_utf8),
        cmocka_unit_test(test_admit_hold),
        cmocka_unit_test(test_admit_close),
        cmocka_unit_test(test_admit_frame_info),
        cmocka_unit_test(test_send_ping_idle),
        cmocka_unit_test(test_send_ping_mid_frame),
        cmocka_unit_test(test_expect_pong),
        cmocka_unit_test(test_pending_out),
        cmocka_unit_test(test_utf8_boundaries),
        cmocka_unit_test(test_utf8_all_code_points),
        cmocka_unit_test(test_close_code_valid),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_make_key),
        cmocka_unit_test(test_strip_deflate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
