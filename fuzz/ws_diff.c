/*
 * ws_diff.c - libFuzzer target: the relay's fast path against wslay (issue 11). The same frame
 * stream, cut into the same reads, goes through two relays of one direction: one as shipped
 * (data frames on the fast path: header rewritten in place, payload unmasked, checked and
 * re-masked in one pass) and one with wsg_ws_relay_set_wslay_only (data frames decoded, unmasked,
 * re-encoded and re-masked by wslay_frame, UTF-8 checked per decoded chunk), each writing into its
 * own sink. Everything else (header gate, limits, admission hook, control frames, gateway
 * frames) is the same code, so any difference is the fast path's.
 *
 * Masks differ by construction (each relay draws its own keys, and the fast path draws a frame's
 * key when its first chunk is readied, wslay when it encodes the header), so outputs are compared
 * after normalising: every frame's payload unmasked and its 4-byte key zeroed. Then:
 *   - the close code and the reason are identical (both 0 / NULL when the stream is valid);
 *   - without an error the normalised outputs are byte-identical, and so are the stats (frames,
 *     messages, payload bytes, relayed close code, gateway pongs, bytes taken from src), the
 *     bytes left in src and whether a close went out;
 *   - after an error, one normalised output is a prefix of the other, and the longer one goes on
 *     only inside one last, unfinished frame: the frame that failed, of which each relay may have
 *     forwarded a different number of already-checked bytes (the fast path's chunks are what src
 *     holds, wslay's what fits its 4 KiB buffer), never a byte that failed;
 *   - each relay's masked frames carry the key its generator drew for them, fresh per frame
 *     (consecutive draws of a generator that never repeats 4 bytes here).
 *
 * Input: 8 control bytes, then the stream.
 *   [0] bit 0 direction (0 client -> upstream, 1 upstream -> client); bits 1-2 max_frame
 *       {none,16,125,70000}; bits 3-4 max_message {none,32,300,300000}; bit 5 no_utf8;
 *       bit 6 deny_text; bit 7 deny_binary
 *   [1] bits 0-1 max_fragments {none,1,2,5}; bit 2 admission hook (holds every other call, closes
 *       1008 "diff policy" on a frame of 77 payload bytes); bit 3 a gateway ping before the
 *       stream; bit 4 expect a pong answering it; bit 5 a gateway close (1001) once the stream is
 *       in (only when no error); bits 6-7 capacity of src {14,100,1024,16384}
 *   [2] sink: low nibble = every how many calls it says WSG_AGAIN (0, 1: never), high nibble =
 *       bytes taken per call {1,2,3,5,8,13,64,all,...}
 *   [3..6] four read sizes (value + 1, times 37 when bit 7 of [7] is set), used in turn
 *   [7] bit 0: the stream is generated from the rest of the input (below); else it is the rest
 *       of the input as it is, raw frames
 * Generated stream: frames until the input runs out, each from
 *   a: bits 0-2 opcode {0,1,2,8,9,10,1,2}; bit 3 not final; bit 4 break a header rule, picked by
 *      bits 5-6 {flip the mask bit, RSV1, opcode 3, non-minimal 16-bit length}; bit 7 long (2 more
 *      length bytes: 126 + 2 * value)
 *   b: length (short: b % 126), then the 2 long-length bytes if any
 *   c: content, bits 0-1 {bytes of the input, ASCII, UTF-8 mix,
 *      UTF-8 mix with one byte broken at position (c >> 2) * 7 % length}; a close frame's payload
 *      is a code from a table then the text
 *   4 bytes of masking key (client -> upstream), then for "bytes of the input" the payload.
 */
#include <string.h>

#include "frames/ws-int.h"
#include "fuzz/fuzz.h"
#include "fuzz/ws_sink.h"
#include "policies/base/buf.h"

#define MAX_STREAM (160u << 10) /* enough for a 64-bit length, small enough for speed */

/* ---- generator ---- */

struct gen {
    uint8_t *p;
    size_t len, cap;
};

static void gen_add(struct gen *g, const void *src, size_t n)
{
    if (g->len + n > g->cap) {
        g->cap = (g->len + n) * 2;
        g->p = realloc(g->p, g->cap);
        FUZZ_CHECK(g->p != NULL);
    }
    memcpy(g->p + g->len, src, n);
    g->len += n;
}

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Payload text: ASCII, or a mix of 1- to 4-byte characters (whole ones, ASCII to pad). */
static void gen_text(uint8_t *dst, size_t n, int mix, uint64_t seed)
{
    static const char *const chars[] = {"\xC3\xA9",     "\xE2\x82\xAC",     "\xF0\x9F\x98\x80",
                                        "\xED\x9F\xBF", "\xF4\x8F\xBF\xBF", "\xC2\x80",
                                        "\xEF\xBF\xBF"};
    size_t i = 0;
    while (i < n) {
        uint64_t x = xs(&seed);
        const char *c = mix && (x & 3) == 0 ? chars[(x >> 8) % 7] : NULL;
        size_t cl = c != NULL ? strlen(c) : 1;
        if (c == NULL || i + cl > n) {
            dst[i++] = (uint8_t)(' ' + (x >> 16) % 95);
            continue;
        }
        memcpy(dst + i, c, cl);
        i += cl;
    }
}

static void generate(struct fuzz_in *in, int masked, struct gen *g)
{
    static const uint8_t ops[8] = {0, 1, 2, 8, 9, 10, 1, 2};
    static const uint16_t codes[8] = {1000, 1001, 1002, 1007, 1011, 3000, 4999, 1005};
    uint8_t *pl = malloc(126 + 2 * 65535 + 1);
    FUZZ_CHECK(pl != NULL);
    while (in->n >= 3 && g->len < MAX_STREAM) {
        uint8_t a = fuzz_byte(in), b = fuzz_byte(in);
        uint8_t op = ops[a & 7], fin = !((a >> 3) & 1), broken = (a >> 4) & 1, how = (a >> 5) & 3;
        size_t len = b % 126;
        if (a & 0x80) {
            size_t hi = fuzz_byte(in), lo = fuzz_byte(in);
            len = 126 + 2 * ((hi << 8) | lo);
        }
        uint8_t c = fuzz_byte(in);
        uint8_t key[4] = {0};
        for (int i = 0; i < 4 && masked; i++)
            key[i] = fuzz_byte(in);
        uint64_t seed = 0x9e3779b97f4a7c15ull ^ ((uint64_t)c << 32) ^ g->len ^ len;
        switch (c & 3) {
        case 0:
            for (size_t i = 0; i < len; i++)
                pl[i] = in->n != 0 ? fuzz_byte(in) : (uint8_t)xs(&seed);
            break;
        case 1:
            gen_text(pl, len, 0, seed);
            break;
        default:
            gen_text(pl, len, 1, seed);
            if ((c & 3) == 3 && len != 0)
                pl[(size_t)(c >> 2) * 7 % len] ^= (uint8_t)(0x80 | (xs(&seed) & 0x7f));
            break;
        }
        if (op == 8 && len >= 2 && (c & 3) != 0) {
            uint16_t code = codes[(c >> 2) & 7];
            pl[0] = (uint8_t)(code >> 8);
            pl[1] = (uint8_t)code;
        }
        uint8_t h[14];
        size_t n = 0;
        h[n++] =
            (uint8_t)((fin ? 0x80 : 0) | (broken && how == 1 ? 0x40 : 0) | (broken && how == 2 ? 3 : op));
        uint8_t m = (uint8_t)((masked ^ (broken && how == 0)) ? 0x80 : 0);
        if (len < 126 && !(broken && how == 3)) {
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
        if (m) {
            memcpy(h + n, key, 4);
            n += 4;
        }
        gen_add(g, h, n);
        size_t at = g->len;
        if (len != 0)
            gen_add(g, pl, len);
        if (m)
            for (size_t i = 0; i < len; i++)
                g->p[at + i] ^= key[i & 3];
    }
    free(pl);
}

/* ---- one relay run ---- */

struct rng {
    uint64_t x;
    uint8_t drawn[4096][4]; /* the keys handed out, in order (for the mask check) */
    size_t n;
};

static int rng_fn(void *ctx, uint8_t *dst, size_t len)
{
    struct rng *r = ctx;
    FUZZ_CHECK(len == 4);
    uint64_t v = xs(&r->x);
    memcpy(dst, &v, 4);
    if (r->n < sizeof(r->drawn) / sizeof(r->drawn[0]))
        memcpy(r->drawn[r->n++], dst, 4);
    return 0;
}

struct admit {
    unsigned calls;
};

static int admit_fn(void *ctx, const struct wsg_ws_frame_info *fi, const char **reason)
{
    struct admit *a = ctx;
    if (++a->calls % 2 == 1)
        return WSG_AGAIN;
    if (fi->payload_len == 77) {
        *reason = "diff policy";
        return 1008;
    }
    return 0;
}

struct run {
    struct sink sink;
    struct rng rng;
    struct admit admit;
    int code;
    const char *reason;
    struct wsg_ws_stats st;
    uint32_t src_left;
    int closed, gw_close_rc;
};

struct setup {
    enum wsg_ws_dir dir;
    struct wsg_ws_limits lim;
    int admit, ping, pong, gw_close;
    uint32_t src_cap;
    unsigned again_every, max_take;
    size_t sizes[4];
};

static void run_relay(const struct setup *su, int wslay_only, const uint8_t *stream, size_t n,
                      struct run *out)
{
    memset(out, 0, sizeof(*out));
    out->sink.again_every = su->again_every;
    out->sink.max_take = su->max_take;
    out->rng.x = 0x2545f4914f6cdd1dull;
    struct wsg_buf src;
    memset(&src, 0, sizeof(src));
    wsg_buf_setup(&src, su->src_cap);
    struct wsg_ws_relay *r =
        wsg_ws_relay_new(su->dir, &su->lim, &src, sink_fn, &out->sink, rng_fn, &out->rng);
    FUZZ_CHECK(r != NULL);
    wsg_ws_relay_set_wslay_only(r, wslay_only);
    if (su->admit)
        wsg_ws_relay_set_admit(r, admit_fn, &out->admit);
    if (su->ping) {
        FUZZ_CHECK(wsg_ws_relay_send_ping(r, (const uint8_t *)"diff", 4) >= 0);
        if (su->pong)
            wsg_ws_relay_expect_pong(r, (const uint8_t *)"diff", 4);
    }

    size_t off = 0, step = 0, stalls = 0, guard = 0;
    for (;;) {
        FUZZ_CHECK(++guard < 16 * n + 1000); /* the pump must not spin without progress */
        size_t fed = 0;
        if (off < n) {
            size_t want = su->sizes[step++ & 3];
            if (want > n - off)
                want = n - off;
            fed = wsg_buf_put(&src, stream + off, want);
            off += fed;
        }
        int rc = wsg_ws_relay_pump(r);
        if (rc == WSG_ERR)
            break;
        FUZZ_CHECK(rc == 0 || rc == 1);
        if (rc == 0 && fed == 0) {
            if (++stalls >= 8)
                break;
        } else {
            stalls = 0;
        }
    }
    out->code = wsg_ws_relay_error(r, &out->reason);
    if (su->gw_close && out->code == 0) {
        out->gw_close_rc = wsg_ws_relay_send_close(r, 1001, "going away");
        for (int k = 0; k < 64 && out->gw_close_rc == 0; k++) {
            (void)wsg_ws_relay_pump(r);
            out->gw_close_rc = wsg_ws_relay_send_close(r, 1001, "going away");
        }
    }
    out->st = *wsg_ws_relay_stats(r);
    out->src_left = wsg_buf_len(&src);
    out->closed = wsg_ws_relay_closed(r);
    wsg_ws_relay_free(r);
    wsg_buf_free(&src);
}

/* ---- comparison ---- */

/* Unmasks every frame of out in place and zeroes its key; checks each masked frame carries the
 * key the generator drew for it, in order. Returns the offset where the last frame starts and
 * sets *last_done when it is complete (or out is empty). */
static size_t normalise(uint8_t *p, size_t len, const struct rng *rng, int *last_done)
{
    size_t off = 0, start = 0, keys = 0;
    *last_done = 1;
    while (off < len) {
        start = off;
        *last_done = 0;
        size_t avail = len - off;
        if (avail < 2)
            break;
        uint8_t l7 = p[off + 1] & 0x7f, masked = p[off + 1] >> 7;
        size_t ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0, hdr = 2 + ext + (masked ? 4 : 0);
        if (avail < hdr)
            break;
        uint64_t plen = l7;
        if (ext != 0) {
            plen = 0;
            for (size_t i = 0; i < ext; i++)
                plen = (plen << 8) | p[off + 2 + i];
        }
        size_t have = avail - hdr < plen ? avail - hdr : (size_t)plen;
        if (masked) {
            uint8_t *key = p + off + hdr - 4;
            /* Keys may be drawn for frames that never went out (a pong the gateway consumed
             * draws none; a failed frame may have drawn one): find this key among the draws
             * not used yet, in order. */
            while (keys < rng->n && memcmp(rng->drawn[keys], key, 4) != 0)
                keys++;
            if (rng->n < sizeof(rng->drawn) / sizeof(rng->drawn[0]))
                FUZZ_CHECK(keys < rng->n);
            keys++;
            for (size_t i = 0; i < have; i++)
                p[off + hdr + i] ^= key[i & 3];
            memset(key, 0, 4);
        }
        if (have < plen)
            break;
        off += hdr + (size_t)plen;
        *last_done = 1;
        start = off;
    }
    return start;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t max_frames[4] = {0, 16, 125, 70000};
    static const uint64_t max_msgs[4] = {0, 32, 300, 300000};
    static const uint32_t max_frags[4] = {0, 1, 2, 5};
    static const uint32_t caps[4] = {14, 100, 1024, 16384};
    static const unsigned takes[16] = {1,        2, 3,        5,   8,        13,   64,       1u << 30,
                                       1u << 30, 7, 1u << 30, 100, 1u << 30, 4096, 1u << 30, 1u << 30};
    struct fuzz_in in = {data, size};
    uint8_t o0 = fuzz_byte(&in), o1 = fuzz_byte(&in), sk = fuzz_byte(&in);
    uint8_t sz[4];
    for (int i = 0; i < 4; i++)
        sz[i] = fuzz_byte(&in);
    uint8_t o7 = fuzz_byte(&in);

    struct setup su;
    memset(&su, 0, sizeof(su));
    su.dir = (o0 & 1) ? WSG_WS_U2C : WSG_WS_C2U;
    su.lim.max_frame = max_frames[(o0 >> 1) & 3];
    su.lim.max_message = max_msgs[(o0 >> 3) & 3];
    su.lim.no_utf8 = (o0 >> 5) & 1;
    su.lim.deny_text = (o0 >> 6) & 1;
    su.lim.deny_binary = (o0 >> 7) & 1;
    su.lim.max_fragments = max_frags[o1 & 3];
    su.admit = (o1 >> 2) & 1;
    su.ping = (o1 >> 3) & 1;
    su.pong = (o1 >> 4) & 1;
    su.gw_close = (o1 >> 5) & 1;
    su.src_cap = caps[o1 >> 6];
    su.again_every = sk & 15;
    su.max_take = takes[sk >> 4];
    for (int i = 0; i < 4; i++)
        su.sizes[i] = ((size_t)sz[i] + 1) * ((o7 & 0x80) ? 37 : 1);

    struct gen g = {NULL, 0, 0};
    if (o7 & 1)
        generate(&in, su.dir == WSG_WS_C2U, &g);
    else if (in.n != 0)
        gen_add(&g, in.p, in.n);

    struct run *fast = malloc(sizeof(*fast)), *oracle = malloc(sizeof(*oracle));
    FUZZ_CHECK(fast != NULL && oracle != NULL);
    run_relay(&su, 0, g.p, g.len, fast);
    run_relay(&su, 1, g.p, g.len, oracle);

    if (fuzz_verbose())
        fprintf(stderr, "ws_diff: %s, stream %zu: fast %d (%s) out %zu, wslay %d (%s) out %zu\n",
                su.dir == WSG_WS_C2U ? "c2u" : "u2c", g.len, fast->code, fast->reason ? fast->reason : "-",
                fast->sink.len, oracle->code, oracle->reason ? oracle->reason : "-", oracle->sink.len);

    /* Identical close codes and reasons. */
    FUZZ_CHECK(fast->code == oracle->code);
    FUZZ_CHECK((fast->reason == NULL) == (oracle->reason == NULL));
    if (fast->reason != NULL)
        FUZZ_CHECK(strcmp(fast->reason, oracle->reason) == 0);

    int fast_done, oracle_done;
    size_t fast_last = normalise(fast->sink.buf, fast->sink.len, &fast->rng, &fast_done);
    size_t oracle_last = normalise(oracle->sink.buf, oracle->sink.len, &oracle->rng, &oracle_done);
    if (fast->code == 0) {
        /* Byte-identical output (keys aside), same accounting. */
        FUZZ_CHECK(fast->sink.len == oracle->sink.len);
        FUZZ_CHECK(fast->sink.len == 0 || memcmp(fast->sink.buf, oracle->sink.buf, fast->sink.len) == 0);
        FUZZ_CHECK(fast->st.frames == oracle->st.frames);
        FUZZ_CHECK(fast->st.messages == oracle->st.messages);
        FUZZ_CHECK(fast->st.payload_bytes == oracle->st.payload_bytes);
        FUZZ_CHECK(fast->st.close_code == oracle->st.close_code);
        FUZZ_CHECK(fast->st.gateway_pongs == oracle->st.gateway_pongs);
        FUZZ_CHECK(fast->st.bytes_in == oracle->st.bytes_in);
        FUZZ_CHECK(fast->src_left == oracle->src_left);
        FUZZ_CHECK(fast->closed == oracle->closed);
        FUZZ_CHECK(fast->gw_close_rc == oracle->gw_close_rc);
    } else {
        /* The shorter output is a prefix of the longer, which goes on only inside its last,
         * unfinished frame. */
        const struct run *lo = fast->sink.len <= oracle->sink.len ? fast : oracle;
        const struct run *hi = lo == fast ? oracle : fast;
        size_t hi_last = hi == fast ? fast_last : oracle_last;
        int hi_done = hi == fast ? fast_done : oracle_done;
        FUZZ_CHECK(lo->sink.len == 0 || memcmp(lo->sink.buf, hi->sink.buf, lo->sink.len) == 0);
        if (hi->sink.len > lo->sink.len)
            FUZZ_CHECK(!hi_done && hi_last <= lo->sink.len);
    }

    free(fast->sink.buf);
    free(oracle->sink.buf);
    free(fast);
    free(oracle);
    free(g.p);
    return 0;
}
