/*
 * ws_inflate.c - libFuzzer target for the relay's permessage-deflate path (frames/ws.c,
 * inflate_check): compressed messages through a client -> upstream relay with deflate negotiated.
 *
 * Input: [opts][level][wbits][cut][...body]. opts bit 0: text (else binary); bit 1: the sender
 * resets its context per message (deflate_no_context); bits 2-3: max_message {0, 300, 4096, 65536};
 * bit 4: the body is sent as it is as "compressed" bytes (random streams, not made by zlib); bit 5:
 * deflate_max_ratio 2 (else 0); bits 6-7: messages per input {1, 2, 3, 4}. level 0-9, wbits 8-15
 * (zlib makes the compressed stream with these: the relay must read any window size); cut: frames
 * per message (bits 0-3 + 1), bytes per read into src (bits 4-5, {1, 7, 64, 4096}), and with bit 6
 * an inflate hook that holds the relay after every other slice (the gateway's rate and per-turn
 * bound): the verdicts must not change, every inflated byte is reported once, no slice inflates past
 * what WSG_WS_INFLATE_SLICE compressed bytes can hold.
 * The body is split into the messages; each is compressed with a sync flush and its 00 00 ff ff
 * tail dropped (RFC 7692 §7.2.1), fragmented, masked, and fed to the relay in cuts.
 *
 * Invariants: an error is 1007 (invalid UTF-8 of a text message, or bad compressed data) or 1009
 * (max_message or deflate_max_ratio), and for zlib-made messages exactly the one an independent
 * check of the uncompressed bytes predicts (UTF-8 by a second validator, the size limit on the
 * inflated and on the compressed bytes; either
 * when the first bad message breaks both, or when the ratio rule may apply); no
 * message ever exceeds max_message inflated without 1009; what the sink got is the compressed
 * frames as they came (the same payload bytes after unmasking, RSV1 on each first frame).
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "frames/ws.h"
#include "fuzz/fuzz.h"
#include "fuzz/ws_sink.h"
#include "policies/base/buf.h"

static int rng(void *ctx, uint8_t *dst, size_t len)
{
    uint32_t *s = ctx;
    for (size_t i = 0; i < len; i++) {
        *s = *s * 1103515245u + 12345u;
        dst[i] = (uint8_t)(*s >> 16);
    }
    return 0;
}

/* Second UTF-8 validator (RFC 3629 table 3-7 style, ranges). @return 1 valid and complete. */
static int utf8_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        } else {
            return 0;
        }
        if (i + need >= n)
            return 0;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xbf)
                return 0;
        i += need + 1;
    }
    return 1;
}

/* The inflate hook of bit 6: sums what it is told, holds after every other slice. */
static struct {
    uint64_t sum, max_one, calls;
} hk;

static int hook(void *ctx, uint64_t n, const char **reason)
{
    (void)ctx;
    (void)reason;
    hk.sum += n;
    if (n > hk.max_one)
        hk.max_one = n;
    if (n == 0) /* asked again after a hold: go on, so every pump moves a slice */
        return 0;
    return ++hk.calls % 2 ? WSG_AGAIN : 0;
}

static size_t compress_msg(const uint8_t *in, size_t n, int level, int wbits, uint8_t **out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    FUZZ_CHECK(deflateInit2(&z, level, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    size_t cap = deflateBound(&z, n) + 64;
    *out = malloc(cap);
    FUZZ_CHECK(*out != NULL);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = *out;
    z.avail_out = (uInt)cap;
    FUZZ_CHECK(deflate(&z, Z_SYNC_FLUSH) == Z_OK);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    FUZZ_CHECK(len >= 4 && memcmp(*out + len - 4, "\0\0\xff\xff", 4) == 0);
    return len - 4;
}

static void put_frame(struct wsg_buf *wire, int fin, int rsv1, int opcode, const uint8_t *p, size_t n,
                      uint32_t *seed)
{
    uint8_t h[14], key[4];
    size_t hl = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    rng(seed, key, 4);
    memcpy(h + hl, key, 4);
    hl += 4;
    FUZZ_CHECK(wsg_buf_put(wire, h, hl) == hl);
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i] ^ key[i & 3];
        FUZZ_CHECK(wsg_buf_put(wire, &b, 1) == 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size > 70000)
        return 0;
    uint8_t opts = data[0];
    int level = data[1] % 10, wbits = 8 + data[2] % 8;
    if (wbits == 8)
        wbits = 9; /* zlib's raw deflate refuses 8 (it would write a 9-bit stream) */
    unsigned frames_per = (data[3] & 15) + 1;
    static const size_t cuts[4] = {1, 7, 64, 4096};
    size_t cut = cuts[(data[3] >> 4) & 3];
    const uint8_t *body = data + 4;
    size_t blen = size - 4;
    int text = opts & 1, raw = (opts >> 4) & 1;
    static const uint64_t maxes[4] = {0, 300, 4096, 65536};
    struct wsg_ws_limits lim = {.max_message = maxes[(opts >> 2) & 3],
                                .deflate = 1,
                                .deflate_no_context = (opts >> 1) & 1,
                                .deflate_max_ratio = (opts & 32) ? 2 : 0};
    unsigned nmsg = ((opts >> 6) & 3) + 1;

    /* the wire bytes, and the expected verdict of each message */
    struct wsg_buf wire;
    wsg_buf_setup(&wire, 1u << 18);
    uint32_t seed = 7;
    int expect = 0; /* first expected close code (zlib-made messages only) */
    size_t per = blen / nmsg;
    for (unsigned m = 0; m < nmsg; m++) {
        const uint8_t *mp = body + m * per;
        size_t mn = m + 1 == nmsg ? blen - m * per : per;
        uint8_t *z = NULL;
        size_t zn;
        if (raw) {
            z = malloc(mn ? mn : 1);
            FUZZ_CHECK(z != NULL);
            memcpy(z, mp, mn);
            zn = mn;
        } else {
            zn = compress_msg(mp, mn, level, wbits, &z);
            /* max_message holds for the inflated bytes and, checked on the headers, for the
             * compressed bytes too (stored blocks make them a few bytes longer than the text) */
            int big = lim.max_message != 0 && (mn > lim.max_message || zn > lim.max_message);
            int bad = text && !utf8_ok(mp, mn);
            int ratio = lim.deflate_max_ratio != 0 && mn > 65536 && mn / (zn ? zn : 1) >= 2;
            /* the first message with a violation decides; when it has two, which one is seen first
             * depends on how inflate's output is chunked (size is checked per output chunk before
             * its UTF-8): either */
            if (expect == 0 && (ratio || (big && bad)))
                expect = -1;
            else if (expect == 0 && big)
                expect = 1009;
            else if (expect == 0 && bad)
                expect = 1007;
        }
        size_t fl = zn / frames_per + 1;
        size_t off = 0;
        unsigned f = 0;
        do {
            size_t n = zn - off < fl ? zn - off : fl;
            int last = off + n == zn;
            put_frame(&wire, last, f == 0, f == 0 ? (text ? 1 : 2) : 0, z + off, n, &seed);
            off += n;
            f++;
        } while (off < zn);
        free(z);
    }

    struct wsg_buf src;
    wsg_buf_setup(&src, 16384);
    struct sink sk = {.max_take = 1u << 30};
    uint32_t mseed = 99;
    struct wsg_ws_relay *r = wsg_ws_relay_new(WSG_WS_C2U, &lim, &src, sink_fn, &sk, rng, &mseed);
    FUZZ_CHECK(r != NULL);
    int hooked = (data[3] >> 6) & 1;
    memset(&hk, 0, sizeof(hk));
    if (hooked)
        wsg_ws_relay_set_inflate_hook(r, hook, NULL);
    uint32_t wl;
    const uint8_t *wp = wsg_buf_peek(&wire, &wl);
    size_t fed = 0;
    int rc = 0;
    for (int guard = 0; guard < 1000000; guard++) {
        if (fed < wl && wsg_buf_room(&src) > 0) {
            size_t n = wl - fed < cut ? wl - fed : cut;
            n = wsg_buf_put(&src, wp + fed, n);
            fed += n;
        }
        rc = wsg_ws_relay_pump(r);
        if (rc < 0)
            break;
        if (rc == 0 && fed == wl)
            break;
    }
    const char *why = NULL;
    int code = rc < 0 ? wsg_ws_relay_error(r, &why) : 0;
    if (fuzz_verbose())
        fprintf(stderr, "ws_inflate: code %d (%s), expected %d\n", code, why ? why : "-", expect);
    if (code != 0)
        FUZZ_CHECK(code == 1007 || code == 1009);
    if (!raw && expect >= 0)
        FUZZ_CHECK(code == expect);
    if (!raw && expect == -1)
        FUZZ_CHECK(code == 0 || code == 1009 || code == 1007);
    /* what went out unmasks to what came in (a prefix of it after an error) */
    if (code == 0 && fed == wl) {
        const struct wsg_ws_stats *st = wsg_ws_relay_stats(r);
        FUZZ_CHECK(st->messages == nmsg);
        FUZZ_CHECK(sk.len == wl); /* same frames, same lengths: only the keys differ */
        FUZZ_CHECK((sk.buf[0] & 0x40) != 0);
        if (hooked)
            FUZZ_CHECK(hk.sum == st->inflated_bytes);
    }
    /* deflate's worst expansion is about 1032:1; the end-of-message tail adds at most a little */
    FUZZ_CHECK(hk.max_one <= (uint64_t)WSG_WS_INFLATE_SLICE * 1032 + 65536);
    wsg_ws_relay_free(r);
    wsg_buf_free(&src);
    wsg_buf_free(&wire);
    free(sk.buf);
    return 0;
}
