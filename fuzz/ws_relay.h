/*
 * ws_relay.h - the body of the ws_c2u and ws_u2c targets: one direction of the WebSocket relay
 * (frames/ws.h) fed from the input in input-chosen chunk sizes, writing into a sink that takes a
 * few bytes at a time and sometimes says WSG_AGAIN, with an independent RFC 6455 model checking
 * what came out.
 *
 * Input: 7 control bytes, then the frames one peer sends.
 *   [0] limits and options: bits 0-1 max_frame {none,16,125,1000}, bits 2-3 max_message
 *       {none,32,300,5000}, bit 4 the gateway sends its own close (1001) after feed step [6],
 *       bit 5 the mask generator fails after two masks, bits 6-7 capacity of src {14,100,1024,16384}
 *   [1] sink: low nibble = every how many calls it says WSG_AGAIN (0, 1: never), high nibble =
 *       bytes taken per call {1,2,3,5,8,13,64,unbounded,...}
 *   [2..5] four chunk sizes (value + 1), used in turn to move input into src
 *   [6] the feed step after which the gateway close is requested (bit 4 of [0])
 *
 * Invariants:
 *   - WSG_ERR comes with a close code in {1002, 1007, 1009} (1011 only when the mask generator
 *     failed) and a reason; without a gateway close or a mask failure the code is exactly the one
 *     the model finds for the first violation in the input (0 when the input is valid);
 *   - every byte handed to the sink decodes as valid frames (mask bit per direction, RSV 0, known
 *     opcodes, control frames short and final, fragmentation, minimal length encoding, close
 *     code and UTF-8 reason, UTF-8 text never invalid so far); only the last frame may be
 *     unfinished, and only after an error or when the input ended inside it;
 *   - the frames out are the frames in: same FIN, opcode and unmasked payload, in order; the only
 *     extra frame allowed is the gateway's own close, last;
 *   - without errors, every complete input frame (up to a close) went out complete.
 */
#ifndef WSG_FUZZ_WS_RELAY_H
#define WSG_FUZZ_WS_RELAY_H

#include <string.h>

#include "frames/ws.h"
#include "fuzz/fuzz.h"
#include "fuzz/ws_sink.h"
#include "policies/base/buf.h"

/* ---- independent RFC 3629 validator (earliest rejection), not the one in frames/ ---- */

struct u8 {
    int need;       /* continuation bytes still owed */
    uint8_t lo, hi; /* range of the next continuation byte */
};

/* Returns 0 ok so far, -1 invalid. */
static int u8_step(struct u8 *s, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (s->need) {
            if (c < s->lo || c > s->hi)
                return -1;
            s->need--;
            s->lo = 0x80;
            s->hi = 0xbf;
            continue;
        }
        s->lo = 0x80;
        s->hi = 0xbf;
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf)
            s->need = 1;
        else if (c == 0xe0)
            s->need = 2, s->lo = 0xa0;
        else if (c == 0xed)
            s->need = 2, s->hi = 0x9f;
        else if (c >= 0xe1 && c <= 0xef)
            s->need = 2;
        else if (c == 0xf0)
            s->need = 3, s->lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3)
            s->need = 3;
        else if (c == 0xf4)
            s->need = 3, s->hi = 0x8f;
        else
            return -1;
    }
    return 0;
}

static int close_code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/* ---- independent frame decoder ---- */

struct frame {
    uint8_t fin, rsv, opcode, masked;
    size_t hdr;          /* header bytes */
    uint64_t len;        /* announced payload length */
    int minimal;         /* length in the shortest form, MSB clear */
    size_t have;         /* payload bytes present (<= len) */
    const uint8_t *mask; /* 4 bytes when masked */
    const uint8_t *payload;
    int complete;
};

/* Decodes the frame at p. Returns 0 if even the header is incomplete (*need_hdr set then). */
static int frame_at(const uint8_t *p, size_t avail, struct frame *f)
{
    memset(f, 0, sizeof(*f));
    if (avail < 2)
        return 0;
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 0xf;
    f->masked = p[1] >> 7;
    uint8_t l7 = p[1] & 0x7f;
    size_t ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
    f->hdr = 2 + ext + (f->masked ? 4 : 0);
    if (avail < 2 + ext)
        return 0;
    f->len = l7;
    f->minimal = 1;
    if (ext) {
        f->len = 0;
        for (size_t i = 0; i < ext; i++)
            f->len = (f->len << 8) | p[2 + i];
        f->minimal = ext == 2 ? f->len >= 126 : (f->len >= 65536 && (f->len >> 63) == 0);
    }
    if (avail < f->hdr)
        return 0;
    f->mask = f->masked ? p + 2 + ext : NULL;
    f->payload = p + f->hdr;
    f->have = (uint64_t)(avail - f->hdr) < f->len ? avail - f->hdr : (size_t)f->len;
    f->complete = f->have == f->len;
    return 1;
}

static void unmask(const struct frame *f, uint8_t *dst)
{
    for (size_t i = 0; i < f->have; i++)
        dst[i] = f->payload[i] ^ (f->mask ? f->mask[i & 3] : 0);
}

static int is_ctl(uint8_t op)
{
    return (op & 8) != 0;
}

/*
 * The RFC 6455 model of one direction: walks the input frames as the relay must and returns the
 * close code of the first violation (0 if none), the number of complete frames it would accept
 * and the offset where it stopped. Header rules fire as soon as their bytes are present, payload
 * rules on the bytes present, close-body rules when the close frame is complete.
 */
struct model {
    int code;
    size_t frames;
};

static struct model model_run(const uint8_t *p, size_t n, int want_masked, uint64_t max_frame,
                              uint64_t max_message)
{
    struct model m = {0, 0};
    size_t off = 0;
    uint8_t msg_op = 0;
    uint64_t msg_len = 0;
    struct u8 text = {0, 0x80, 0xbf};
    uint8_t *tmp = malloc(n + 1);
    FUZZ_CHECK(tmp != NULL);
    while (off < n) {
        const uint8_t *q = p + off;
        size_t avail = n - off;
        if (avail < 2)
            break;
        uint8_t fin = q[0] >> 7, rsv = (q[0] >> 4) & 7, op = q[0] & 0xf, masked = q[1] >> 7, l7 = q[1] & 0x7f;
        if (masked != want_masked || rsv != 0 || !(op <= 2 || (op >= 8 && op <= 10)) ||
            (is_ctl(op) && !fin) || (is_ctl(op) && l7 > 125) || (op == 0 && msg_op == 0) ||
            ((op == 1 || op == 2) && msg_op != 0)) {
            m.code = 1002;
            break;
        }
        struct frame f;
        int whole = frame_at(q, avail, &f);
        size_t ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
        if (avail < 2 + ext)
            break;
        if (!f.minimal && ext == 0)
            f.minimal = 1;
        /* frame_at stopped before the length when the mask is missing: recompute it here. */
        uint64_t len = l7;
        if (ext) {
            len = 0;
            for (size_t i = 0; i < ext; i++)
                len = (len << 8) | q[2 + i];
            if ((ext == 2 && len < 126) || (ext == 8 && (len < 65536 || (len >> 63) != 0))) {
                m.code = 1002;
                break;
            }
        }
        if (op == 8 && len == 1) {
            m.code = 1002;
            break;
        }
        if (max_frame && len > max_frame) {
            m.code = 1009;
            break;
        }
        if (!is_ctl(op) && max_message) {
            uint64_t before = op == 0 ? msg_len : 0;
            if (before + len < before || before + len > max_message) {
                m.code = 1009;
                break;
            }
        }
        if (!whole)
            break;
        if (op == 1 || op == 2) {
            msg_op = op;
            msg_len = 0;
            memset(&text, 0, sizeof(text));
        }
        if (!is_ctl(op))
            msg_len = msg_len + len < msg_len ? UINT64_MAX : msg_len + len;
        unmask(&f, tmp);
        if (op == 8) {
            if (!f.complete)
                break;
            if (f.len >= 2) {
                if (!close_code_ok((tmp[0] << 8) | tmp[1])) {
                    m.code = 1002;
                    break;
                }
                struct u8 r = {0, 0x80, 0xbf};
                if (u8_step(&r, tmp + 2, f.len - 2) != 0 || r.need) {
                    m.code = 1007;
                    break;
                }
            }
            m.frames++;
            break; /* nothing is read after a close */
        }
        if (!is_ctl(op) && msg_op == 1) {
            if (u8_step(&text, tmp, f.have) != 0) {
                m.code = 1007;
                break;
            }
            if (f.complete && fin && text.need) {
                m.code = 1007;
                break;
            }
        }
        if (!f.complete)
            break;
        m.frames++;
        if (!is_ctl(op) && fin)
            msg_op = 0;
        off += f.hdr + (size_t)f.len;
    }
    free(tmp);
    return m;
}

/* ---- the relay under test ---- */

struct rng {
    uint64_t x;
    unsigned calls, fail_after;
};

static int rng_fn(void *ctx, uint8_t *dst, size_t len)
{
    struct rng *r = ctx;
    if (r->fail_after && ++r->calls > r->fail_after)
        return -1;
    for (size_t i = 0; i < len; i++) {
        r->x ^= r->x << 13;
        r->x ^= r->x >> 7;
        r->x ^= r->x << 17;
        dst[i] = (uint8_t)r->x;
    }
    return 0;
}

/* Checks what the sink received against the input frames (see the invariants above). */
static void check_output(const uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len, int dir_c2u,
                         int gw_close, int errored, size_t *complete_out)
{
    size_t o = 0, i = 0;
    uint8_t msg_op = 0;
    struct u8 text = {0, 0x80, 0xbf};
    int seen_close = 0;
    uint8_t *a = malloc(out_len + 1), *b = malloc(in_len + 1);
    FUZZ_CHECK(a != NULL && b != NULL);
    *complete_out = 0;
    while (o < out_len) {
        FUZZ_CHECK(!seen_close); /* nothing after a close frame */
        struct frame f;
        int whole = frame_at(out + o, out_len - o, &f);
        if (!whole || !f.complete) {
            /* An unfinished last frame: only when the relay stopped inside one. */
            FUZZ_CHECK(!whole || o + f.hdr + f.have == out_len);
            if (!whole) {
                FUZZ_CHECK(out_len - o < 14);
                break;
            }
        }
        FUZZ_CHECK(f.masked == dir_c2u);
        FUZZ_CHECK(f.rsv == 0);
        FUZZ_CHECK(f.opcode <= 2 || (f.opcode >= 8 && f.opcode <= 10));
        FUZZ_CHECK(f.minimal);
        if (is_ctl(f.opcode))
            FUZZ_CHECK(f.fin && f.len <= 125);
        if (f.opcode == 0)
            FUZZ_CHECK(msg_op != 0);
        if (f.opcode == 1 || f.opcode == 2) {
            FUZZ_CHECK(msg_op == 0);
            msg_op = f.opcode;
            memset(&text, 0, sizeof(text));
        }
        unmask(&f, a);
        if (!is_ctl(f.opcode) && msg_op == 1) {
            FUZZ_CHECK(u8_step(&text, a, f.have) == 0);
            if (f.complete && f.fin)
                FUZZ_CHECK(text.need == 0);
        }
        int ours = 0;
        if (f.opcode == 8 && f.complete) {
            FUZZ_CHECK(f.len != 1);
            if (f.len >= 2) {
                FUZZ_CHECK(close_code_ok((a[0] << 8) | a[1]));
                struct u8 r = {0, 0x80, 0xbf};
                FUZZ_CHECK(u8_step(&r, a + 2, f.len - 2) == 0 && r.need == 0);
            }
            seen_close = 1;
            ours = gw_close && f.len == 12 && memcmp(a, "\x03\xe9going away", 12) == 0;
        }
        /* The same frame as the next input frame, or (last) the gateway's own close. */
        struct frame g;
        int g_ok = i < in_len && frame_at(in + i, in_len - i, &g);
        int same = g_ok && g.fin == f.fin && g.opcode == f.opcode && g.len == f.len && g.have >= f.have;
        if (same) {
            unmask(&g, b);
            same = memcmp(a, b, f.have) == 0;
        }
        if (!same) {
            FUZZ_CHECK(ours);
        } else {
            i += g.hdr + g.have;
        }
        if (!f.complete)
            break;
        if (!is_ctl(f.opcode) && f.fin)
            msg_op = 0;
        if (!ours)
            ++*complete_out;
        o += f.hdr + (size_t)f.len;
    }
    WSG_UNUSED(errored);
    free(a);
    free(b);
}

static int ws_relay_fuzz(enum wsg_ws_dir dir, const uint8_t *data, size_t size)
{
    static const uint64_t max_frames[4] = {0, 16, 125, 1000};
    static const uint64_t max_msgs[4] = {0, 32, 300, 5000};
    static const uint32_t caps[4] = {14, 100, 1024, 16384};
    static const unsigned takes[16] = {1,        2, 3,        5,   8,        13,   64,       1u << 30,
                                       1u << 30, 7, 1u << 30, 100, 1u << 30, 4096, 1u << 30, 1u << 30};
    struct fuzz_in in = {data, size};
    uint8_t opt = fuzz_byte(&in), sk = fuzz_byte(&in);
    size_t sizes[4];
    for (int i = 0; i < 4; i++)
        sizes[i] = (size_t)fuzz_byte(&in) + 1;
    uint8_t close_at = fuzz_byte(&in);

    struct wsg_ws_limits lim = {.max_frame = max_frames[opt & 3], .max_message = max_msgs[(opt >> 2) & 3]};
    int gw_close = (opt >> 4) & 1;
    struct rng rng = {0x9e3779b97f4a7c15ull, 0, (opt >> 5) & 1 ? 2 : 0};
    struct sink sink = {NULL, 0, 0, 0, sk & 15, takes[sk >> 4]};
    struct wsg_buf src;
    memset(&src, 0, sizeof(src));
    wsg_buf_setup(&src, caps[opt >> 6]);
    struct wsg_ws_relay *r = wsg_ws_relay_new(dir, &lim, &src, sink_fn, &sink, rng_fn, &rng);
    FUZZ_CHECK(r != NULL);

    size_t off = 0, step = 0, stalls = 0, guard = 0;
    int rc = 0, close_asked = 0;
    for (;;) {
        FUZZ_CHECK(++guard < 16 * size + 1000); /* the pump must not spin without progress */
        size_t fed = 0;
        if (off < in.n) {
            size_t want = sizes[step++ & 3];
            if (want > in.n - off)
                want = in.n - off;
            fed = wsg_buf_put(&src, in.p + off, want);
            off += fed;
        }
        if (gw_close && !close_asked && step >= close_at) {
            close_asked = 1;
            int c = wsg_ws_relay_send_close(r, 1001, "going away");
            FUZZ_CHECK(c == 1 || c == 0 || c == WSG_ERR);
        }
        rc = wsg_ws_relay_pump(r);
        if (rc == WSG_ERR)
            break;
        FUZZ_CHECK(rc == 0 || rc == 1);
        if (rc == 0 && fed == 0) {
            /* No progress and no new input: the sink said AGAIN (it accepts the next call), or
             * the relay is waiting for input it will never get. */
            if (++stalls >= 3)
                break;
        } else {
            stalls = 0;
        }
    }
    if (gw_close && !close_asked) {
        close_asked = 1;
        for (int k = 0; k < 64; k++) {
            int c = wsg_ws_relay_send_close(r, 1001, "going away");
            if (c != 0)
                break;
        }
    }

    const char *reason = NULL;
    int code = wsg_ws_relay_error(r, &reason);
    int rng_failed = rng.fail_after && rng.calls > rng.fail_after;
    if (rc == WSG_ERR) {
        FUZZ_CHECK(code == 1002 || code == 1007 || code == 1009 || (code == 1011 && rng_failed));
        FUZZ_CHECK(reason != NULL);
    }

    /* What the relay read of src is a prefix of the input. */
    size_t consumed = off - wsg_buf_len(&src);
    int want_masked = dir == WSG_WS_C2U;
    struct model m = model_run(in.p, in.n, want_masked, lim.max_frame, lim.max_message);
    if (!gw_close && !rng_failed) {
        if (code != m.code)
            fprintf(stderr, "relay close code %d (%s), model %d\n", code, reason ? reason : "-", m.code);
        FUZZ_CHECK(code == m.code);
    } else if (code != 0 && code != 1011) {
        FUZZ_CHECK(code == m.code);
    }
    size_t complete_out = 0;
    check_output(sink.buf, sink.len, in.p, consumed, want_masked, gw_close, code != 0, &complete_out);
    if (fuzz_verbose())
        fprintf(stderr, "ws: code %d (%s) model %d; frames out %zu, model %zu; in %zu consumed %zu out %zu\n",
                code, reason ? reason : "-", m.code, complete_out, m.frames, in.n, consumed, sink.len);
    if (code == 0 && !gw_close) {
        FUZZ_CHECK(complete_out == m.frames);
        FUZZ_CHECK(wsg_ws_relay_stats(r)->frames == m.frames);
    }

    wsg_ws_relay_free(r);
    wsg_buf_free(&src);
    free(sink.buf);
    return 0;
}

#endif
