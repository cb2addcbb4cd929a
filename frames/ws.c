/*
 * ws.c - the frame-by-frame relay of one WebSocket direction: check each frame header against
 * RFC 6455 §5 and the direction's limits straight from src, move the frame onto the other hop
 * keeping FIN, opcode and frame boundaries exactly, and validate what moves (§5.6 UTF-8, §7 close
 * bodies). Also applies the per-direction policy (opcode, size and fragment limits, an admission
 * hook per frame), sends the gateway's own ping and close frames on that hop and consumes the
 * pongs answering its pings.
 *
 * Two ways a frame moves, chosen on its header:
 *
 * Data frames (text, binary, continuation) take the fast path (relay_data): once the header
 * passed, the relay keeps it as the output header (the same FIN, opcode and length encoding;
 * towards the upstream the client's masking key is replaced by a fresh one from the mask
 * generator, §5.3). The payload stays in src: each chunk src holds is unmasked, checked as UTF-8
 * and re-masked in one pass, in place, with the two keys combined (wsg_ws_payload_pass in
 * utf8.c, 16 bytes at a time); a chunk is handed to the sink only once all of it passed, and src
 * drops exactly what the sink took. So a payload byte is read once by that pass and once by the
 * sink's copy into the next buffer, and never waits anywhere but in src.
 *
 * Control frames (ping, pong, close) and the gateway's own frames go through wslay_frame: one
 * context decodes (wslay_frame_recv reports a header only with its first payload byte and reads
 * ahead up to 4 KiB into its own buffer, so the recv callback hands it exactly that one frame's
 * bytes, never a byte of the next), another encodes and masks. They are at most 125 bytes.
 * wsg_ws_relay_set_wslay_only (frames/ws-int.h) sends data frames that way too: it is the oracle
 * the differential fuzz target (fuzz/ws_diff.c) compares the fast path with.
 *
 * Either way each header is first checked here, straight from src: size limits and every header
 * rule hold before any payload byte is read or moves. Bytes taken from src are therefore either
 * forwarded or inside the frame in progress; after a close frame src keeps whatever follows.
 *
 * Memory: a 125-byte control gather buffer (close frames, and pongs that may answer the gateway's
 * ping), a 125-byte gateway close, two 125-byte gateway pings and a 125-byte pong token; data
 * payloads stay in src until the sink takes them. Never a whole message. The two wslay contexts
 * (4 KiB input buffer each, about 4.2 KiB) are held only while a control frame is in progress on
 * their side: between frames a wslay_frame context is in its initial state, so the relay hands it
 * back to a per-thread cache and takes one again for the next control frame. An idle connection
 * (two relays) thus holds none of them, and a stream of data frames never takes one.
 */
#include "frames/ws.h"
#include "frames/ws-int.h"

#include <stdlib.h>
#include <string.h>

#include <wslay/wslay.h>
#include <zlib.h>

#include "policies/base/buf.h"

/* A wslay_frame context and the relay using it: wslay fixes a context's user_data at init, so the
 * callbacks get the codec and find the relay through it. */
struct codec {
    wslay_frame_context_ptr ctx;
    struct wsg_ws_relay *owner;
};

enum gw_close_state {
    GW_NONE,    /* the gateway has not asked for a close */
    GW_PENDING, /* asked; waits for the encoder to finish the frame in progress */
    GW_SENDING, /* being pushed through the encoder */
    GW_DONE     /* handed to the sink completely (or a close already went out on this hop) */
};

struct wsg_ws_relay {
    enum wsg_ws_dir dir;
    struct wsg_ws_limits lim;
    struct wsg_buf *src;
    wsg_ws_sink_fn sink;
    void *sink_ctx;
    wsg_ws_rng_fn rng;
    void *rng_ctx;
    struct codec *dec; /* input hop, reads src through ws_recv_cb; held while dec_busy() */
    struct codec *enc; /* output hop, writes the sink through ws_send_cb; held while enc_busy() */
    uint64_t moved;    /* bytes taken from src plus bytes given to the sink: progress */

    /* Input: the frame whose header passed the gate. */
    int in_frame; /* header validated; payload being decoded */
    int in_done;  /* a close frame was read completely: read nothing more */
    uint8_t in_fin, in_opcode;
    uint64_t in_len;  /* payload length from the header */
    uint64_t in_got;  /* payload bytes decoded so far (fast path: taken by the sink) */
    uint64_t in_feed; /* bytes of this frame (header included) not yet handed to wslay */
    int in_gather;    /* control frame gathered in ctl_buf before it is forwarded */

    /* The fast path of a data frame (relay_data). Its header is taken from src as soon as it
     * passed the gate and kept as the output header; its payload stays in src until the sink
     * takes it: first in_ready bytes already unmasked, checked and re-masked, then the rest as it
     * arrives. in_got counts the payload bytes the sink took. */
    int wslay_only;      /* oracle mode: data frames go through wslay like control frames */
    int in_fast;         /* the input frame in progress takes the fast path */
    uint64_t in_ready;   /* payload bytes at the front of src ready to go */
    uint8_t in_key[4];   /* the client's masking key of the frame (C2U) */
    uint8_t out_key[4];  /* the gateway's fresh key for it (C2U) */
    uint8_t out_hdr[14]; /* the output header (§5.2: at most 2 + 8 + 4 bytes) */
    size_t out_hdr_len;  /* its length: the input header's */
    size_t out_hdr_off;  /* bytes of it the sink took */

    /* Message: §5.4 fragmentation state. */
    uint8_t msg_opcode;  /* opcode of the data message in progress; 0 between messages */
    uint64_t msg_len;    /* payload bytes of the message so far, as announced by its headers */
    uint64_t msg_frames; /* frames of the message so far */
    uint32_t utf8;       /* DFA state across the fragments of a text message */
    /* permessage-deflate (lim.deflate): the message in progress is compressed (RSV1 on its first
     * frame); its compressed bytes so far and what they inflated to. The inflate state exists from
     * the first compressed message on, and is freed after each one with deflate_no_context. */
    int msg_z;
    int msg_zend; /* its deflate stream reached a final block */
    uint64_t msg_wire, msg_plain;
    uint64_t frame_plain; /* what the current frame's compressed bytes inflated to */
    z_stream *zs;

    /* A close frame (or a pong of the token's length) is gathered (≤125 bytes) and checked
     * before it is forwarded. */
    uint8_t ctl_buf[125];
    size_t ctl_len;

    /* Policy: admission hook, inflate hook (z_held: it said stop), the pong token. */
    wsg_ws_admit_fn admit;
    void *admit_ctx;
    wsg_ws_inflate_fn zhook;
    void *zhook_ctx;
    int z_held; /* since it said stop: asked again (with 0) before the next slice */
    int z_stop; /* it said stop during this pump: no more inflating until the next one */
    int pong_set;
    uint8_t pong_tok[125];
    size_t pong_len;

    /* Output: the frame being encoded and the chunk being pushed into it. */
    struct wslay_frame_iocb out; /* fin, rsv, opcode, payload_length, mask of the frame */
    int out_busy;                /* the output hop is mid-frame (wslay's encoder or the fast path) */
    int out_fast;                /* ... and that frame is the fast path's, not wslay's */
    uint64_t out_sent;           /* payload bytes of the frame accepted by the encoder */
    const uint8_t *chunk; /* decoded bytes waiting to go out (points into dec, ctl_buf or a gw buffer) */
    size_t chunk_len, chunk_off;
    int chunk_pending;

    /* The gateway's own close frame. */
    enum gw_close_state gw;
    uint8_t gw_buf[125];
    size_t gw_len;

    /* The gateway's own pings: one waiting for the encoder, one being pushed through it. */
    int ping_waiting, ping_sending;
    uint8_t ping_wait[125], ping_out[125];
    size_t ping_wait_len, ping_out_len;
    uint64_t ping_seq, ping_wait_seq, ping_out_seq, ping_done_seq; /* call numbers */

    int closed;      /* a close frame went out completely on this hop */
    int sink_failed; /* the sink returned something else than bytes or WSG_AGAIN */
    int err_code;    /* close code for the sender after a violation; 0 = none */
    const char *err_reason;
    struct wsg_ws_stats st;
};

#define OP_CONT WSLAY_CONTINUATION_FRAME
#define OP_TEXT WSLAY_TEXT_FRAME
#define OP_BINARY WSLAY_BINARY_FRAME
#define OP_CLOSE WSLAY_CONNECTION_CLOSE
#define OP_PING WSLAY_PING
#define OP_PONG WSLAY_PONG

static int fail(struct wsg_ws_relay *r, int code, const char *reason);

/* ---- wslay shims: buffers and sinks only ---- */

static ssize_t ws_recv_cb(uint8_t *buf, size_t len, int flags, void *user_data)
{
    struct wsg_ws_relay *r = ((struct codec *)user_data)->owner;
    WSG_UNUSED(flags);
    if (len > r->in_feed)
        len = (size_t)r->in_feed; /* never a byte of the next frame */
    size_t n = wsg_buf_take(r->src, buf, len);
    if (n == 0)
        return -1; /* wslay_frame_recv turns any return <= 0 into WSLAY_ERR_WANT_READ */
    r->in_feed -= n;
    r->moved += n;
    r->st.bytes_in += n;
    return (ssize_t)n;
}

/* Hands bytes to the sink. @return bytes taken (> 0), 0 when the sink is full, WSG_ERR when it
 * failed (then the relay fails with 1011). */
static ssize_t sink_put(struct wsg_ws_relay *r, const uint8_t *data, size_t len)
{
    ssize_t n = r->sink(r->sink_ctx, data, len);
    if (n > 0 && (size_t)n <= len) {
        r->moved += (uint64_t)n;
        return n;
    }
    if (n != WSG_AGAIN && n != 0) {
        r->sink_failed = 1;
        return fail(r, 1011, "output failed");
    }
    return 0;
}

static ssize_t ws_send_cb(const uint8_t *data, size_t len, int flags, void *user_data)
{
    struct wsg_ws_relay *r = ((struct codec *)user_data)->owner;
    WSG_UNUSED(flags);
    ssize_t n = sink_put(r, data, len);
    return n > 0 ? n : -1; /* wslay_frame_send turns any return <= 0 into WSLAY_ERR_WANT_WRITE */
}

static int ws_genmask_cb(uint8_t *buf, size_t len, void *user_data)
{
    struct wsg_ws_relay *r = ((struct codec *)user_data)->owner;
    if (r->rng == NULL || r->rng(r->rng_ctx, buf, len) != 0)
        return -1;
    return 0;
}

/* ---- the per-thread codec cache ---- */

/* Contexts kept per thread and kind: at most 4 x 16 x 4.2 KiB = 270 KiB. A context is only ever
 * reused for the same kind (decoder or encoder, of the same direction): wslay_frame_send sets its
 * mask flag when a frame is masked and never clears it, so an encoder that once masked (towards
 * an upstream) would mask the payloads of unmasked frames (towards a client) under a header that
 * says they are not. The unit tests caught exactly that. */
#define CODEC_CACHE 16

static _Thread_local struct {
    unsigned n;
    struct codec *c[CODEC_CACHE];
} codecs[2][2]; /* [dir][0 decoder, 1 encoder] */

static void codec_destroy(struct codec *k)
{
    wslay_frame_context_free(k->ctx);
    free(k);
}

/* A decoder (enc 0) or encoder (enc 1) context for r's direction, in its initial state, owned by
 * r; NULL when out of memory. */
static struct codec *codec_get(struct wsg_ws_relay *r, int enc)
{
    static const struct wslay_frame_callbacks cbs = {ws_send_cb, ws_recv_cb, ws_genmask_cb};
    struct codec *k;
    if (codecs[r->dir][enc].n != 0) {
        k = codecs[r->dir][enc].c[--codecs[r->dir][enc].n];
    } else {
        if ((k = malloc(sizeof(*k))) == NULL)
            return NULL;
        if (wslay_frame_context_init(&k->ctx, &cbs, k) != 0) {
            free(k);
            return NULL;
        }
    }
    k->owner = r;
    return k;
}

/* Gives r's decoder (enc 0) or encoder (enc 1) back. clean: it is between frames (its initial
 * state), so it may be reused. */
static void codec_put(struct wsg_ws_relay *r, int enc, int clean)
{
    struct codec *k = enc ? r->enc : r->dec;
    if (k == NULL)
        return;
    if (enc)
        r->enc = NULL;
    else
        r->dec = NULL;
    k->owner = NULL;
    if (clean && codecs[r->dir][enc].n < CODEC_CACHE)
        codecs[r->dir][enc].c[codecs[r->dir][enc].n++] = k;
    else
        codec_destroy(k);
}

void wsg_ws_cache_drain(void)
{
    for (int d = 0; d < 2; d++)
        for (int e = 0; e < 2; e++)
            while (codecs[d][e].n != 0)
                codec_destroy(codecs[d][e].c[--codecs[d][e].n]);
}

/* Is wslay's decoder (encoder) in the middle of a frame? Fast-path frames never use them. */
static int dec_busy(const struct wsg_ws_relay *r)
{
    return r->in_frame && !r->in_fast;
}

static int enc_busy(const struct wsg_ws_relay *r)
{
    return r->out_busy && !r->out_fast;
}

/* Hands back the contexts of the sides that are between frames. A pending chunk may point into
 * the decoder's buffer, so the decoder also stays until the chunk went out. */
static void codecs_release(struct wsg_ws_relay *r)
{
    if (!dec_busy(r) && !r->chunk_pending)
        codec_put(r, 0, 1);
    if (!enc_busy(r))
        codec_put(r, 1, 1);
}

/* ---- helpers ---- */

static int fail(struct wsg_ws_relay *r, int code, const char *reason)
{
    if (r->err_code == 0) {
        r->err_code = code;
        r->err_reason = reason;
    }
    return WSG_ERR;
}

static int is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

/* Called when the encoder has taken the last byte of a frame. */
static void frame_out_done(struct wsg_ws_relay *r)
{
    r->out_busy = 0;
    if (r->ping_sending) {
        r->ping_sending = 0;
        r->ping_done_seq = r->ping_out_seq;
    }
    if (r->out.opcode == OP_CLOSE) {
        r->closed = 1;
        r->gw = GW_DONE; /* ours went out, or the relayed one did: either way one close per hop */
    }
}

/*
 * Pushes the pending chunk through the encoder, continuing the frame in r->out.
 * wslay_frame_send resumes a partially sent header by itself; it returns the payload bytes it
 * took (0 for an empty frame), or WSLAY_ERR_WANT_WRITE when it could not take any.
 * @return 1 chunk gone, 0 sink full, WSG_ERR.
 */
static int push(struct wsg_ws_relay *r)
{
    if (r->enc == NULL && (r->enc = codec_get(r, 1)) == NULL)
        return fail(r, 1011, "out of memory");
    do {
        r->out.data = r->chunk + r->chunk_off;
        r->out.data_length = r->chunk_len - r->chunk_off;
        r->out_busy = 1; /* from the first call on, wslay holds this frame's header */
        ssize_t n = wslay_frame_send(r->enc->ctx, &r->out);
        if (r->sink_failed)
            return fail(r, 1011, "output failed");
        if (n == WSLAY_ERR_WANT_WRITE)
            return 0;
        if (n < 0)
            return fail(r, 1011,
                        n == WSLAY_ERR_INVALID_CALLBACK ? "mask generation failed" : "encoder error");
        r->chunk_off += (size_t)n;
        r->out_sent += (uint64_t)n;
    } while (r->chunk_off < r->chunk_len);
    r->chunk_pending = 0;
    if (r->out_sent == r->out.payload_length)
        frame_out_done(r);
    return 1;
}

/* Starts a new output frame carrying data (its first or only chunk). */
static void start_out(struct wsg_ws_relay *r, uint8_t fin, uint8_t opcode, uint64_t payload_len)
{
    memset(&r->out, 0, sizeof(r->out));
    r->out.fin = fin;
    r->out.rsv = WSLAY_RSV_NONE;
    r->out.opcode = opcode;
    r->out.payload_length = payload_len;
    /* §5.3: a client masks every frame with a fresh key; a server never masks. */
    r->out.mask = r->dir == WSG_WS_C2U;
    r->out_sent = 0;
}

static void set_chunk(struct wsg_ws_relay *r, const uint8_t *p, size_t len)
{
    r->chunk = p;
    r->chunk_len = len;
    r->chunk_off = 0;
    r->chunk_pending = 1;
}

/* Starts the gateway's close when the encoder is between frames. */
static void start_gw_close(struct wsg_ws_relay *r)
{
    start_out(r, 1, OP_CLOSE, r->gw_len);
    set_chunk(r, r->gw_buf, r->gw_len);
    r->gw = GW_SENDING;
}

/* Starts the gateway's waiting ping when the encoder is between frames. */
static void start_gw_ping(struct wsg_ws_relay *r)
{
    memcpy(r->ping_out, r->ping_wait, r->ping_wait_len);
    r->ping_out_len = r->ping_wait_len;
    r->ping_out_seq = r->ping_wait_seq;
    r->ping_waiting = 0;
    r->ping_sending = 1;
    start_out(r, 1, OP_PING, r->ping_out_len);
    set_chunk(r, r->ping_out, r->ping_out_len);
}

/*
 * Checks the next frame header in src before any of it goes to wslay (§5.2 framing, §5.4
 * fragmentation, §5.5 control frames, then the limits, then the admission hook). Rules that need
 * only the first two bytes fire as soon as those are in; the limits as soon as the extended length
 * is in; the hook once the whole header is in. Nothing changes in r until the frame is accepted,
 * so a held frame is simply checked again on the next call.
 * @return 1 header accepted (the frame is now in progress), 0 incomplete or held, WSG_ERR.
 */
static int gate_header(struct wsg_ws_relay *r)
{
    uint32_t avail;
    const uint8_t *p = wsg_buf_peek(r->src, &avail);
    if (avail < 2)
        return 0;
    uint8_t fin = p[0] >> 7, rsv = (p[0] >> 4) & 0x7, opcode = p[0] & 0xf;
    uint8_t masked = p[1] >> 7, len7 = p[1] & 0x7f;

    /* §5.1: a server closes on an unmasked frame, a client on a masked one. */
    if (r->dir == WSG_WS_C2U && !masked)
        return fail(r, 1002, "unmasked client frame");
    if (r->dir == WSG_WS_U2C && masked)
        return fail(r, 1002, "masked server frame");
    /* §5.2: RSV1-3 must be 0 unless an extension defines them. RFC 7692 §6: with permessage-deflate
     * RSV1 marks the first frame of a compressed message, and nothing else. */
    int z = 0;
    if (rsv == 4 && r->lim.deflate && (opcode == OP_TEXT || opcode == OP_BINARY))
        z = 1;
    else if (rsv != 0)
        return fail(r, 1002,
                    rsv == 4 && r->lim.deflate ? "RSV1 on a continuation or control frame"
                                               : "reserved bit set");
    /* §5.2: opcodes 3-7 and 0xB-0xF are reserved. */
    if (!(opcode <= OP_BINARY || (opcode >= OP_CLOSE && opcode <= OP_PONG)))
        return fail(r, 1002, "reserved opcode");
    /* §5.5: control frames are never fragmented and carry at most 125 bytes. */
    if (is_control(opcode) && !fin)
        return fail(r, 1002, "fragmented control frame");
    if (is_control(opcode) && len7 > 125)
        return fail(r, 1002, "control frame over 125 bytes");
    /* §5.4: continuations only inside a message; no new message inside one (controls may
     * interleave). */
    if (opcode == OP_CONT && r->msg_opcode == 0)
        return fail(r, 1002, "continuation without a message");
    if ((opcode == OP_TEXT || opcode == OP_BINARY) && r->msg_opcode != 0)
        return fail(r, 1002, "new message inside a fragmented one");

    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (avail < 2 + ext)
        return 0;
    uint64_t len = len7;
    if (ext != 0) {
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = (len << 8) | p[2 + i];
        /* §5.2: the minimal number of bytes must be used, and the 64-bit MSB must be 0. */
        if ((ext == 2 && len < 126) || (ext == 8 && (len < 65536 || (len >> 63) != 0)))
            return fail(r, 1002, "bad payload length");
    }
    /* §5.5.1: a close body is empty or starts with a 2-byte code. */
    if (opcode == OP_CLOSE && len == 1)
        return fail(r, 1002, "close payload of 1 byte");
    /* §10.4: limits are checked on the header, before any payload is read. §7.4.1: 1003 is for
     * a type of data the endpoint cannot accept. */
    if (opcode == OP_TEXT && r->lim.deny_text)
        return fail(r, 1003, "text messages not allowed");
    if (opcode == OP_BINARY && r->lim.deny_binary)
        return fail(r, 1003, "binary messages not allowed");
    if (r->lim.max_frame != 0 && len > r->lim.max_frame)
        return fail(r, 1009, "frame exceeds max_frame");
    if (!is_control(opcode) && r->lim.max_message != 0 &&
        add_sat(opcode == OP_CONT ? r->msg_len : 0, len) > r->lim.max_message)
        return fail(r, 1009, "message exceeds max_message");
    uint64_t nfrag = opcode == OP_CONT ? r->msg_frames + 1 : 1;
    if (!is_control(opcode) && r->lim.max_fragments != 0 && nfrag > r->lim.max_fragments)
        return fail(r, 1009, "too many fragments");

    size_t hdr = 2 + ext + (masked ? 4 : 0);
    if (avail < hdr)
        return 0;

    if (r->admit != NULL) {
        struct wsg_ws_frame_info fi = {opcode, fin, len, opcode == OP_TEXT || opcode == OP_BINARY};
        const char *why = NULL;
        int rc = r->admit(r->admit_ctx, &fi, &why);
        if (rc == WSG_AGAIN)
            return 0; /* held: nothing taken; checked and asked again on the next call */
        if (rc != 0) {
            if (!wsg_ws_close_code_valid(rc))
                return fail(r, 1011, "invalid admission result");
            return fail(r, rc, why != NULL ? why : "policy violation");
        }
    }

    r->in_frame = 1;
    r->in_fin = fin;
    r->in_opcode = opcode;
    r->in_len = len;
    r->in_got = 0;
    r->frame_plain = 0;
    r->in_feed = hdr + len;
    int msg_z = opcode == OP_CONT ? r->msg_z : z;
    r->in_fast = !is_control(opcode) && (!r->wslay_only || msg_z);
    r->in_gather = opcode == OP_CLOSE || (opcode == OP_PONG && r->pong_set && len == r->pong_len);
    if (!is_control(opcode))
        r->msg_frames = nfrag;
    if (opcode == OP_TEXT || opcode == OP_BINARY) {
        r->msg_opcode = opcode;
        r->msg_len = 0;
        r->utf8 = 0;
        r->msg_z = z;
        r->msg_zend = 0;
        r->msg_wire = r->msg_plain = 0;
    }
    if (!is_control(opcode))
        r->msg_len = add_sat(r->msg_len, len);
    if (r->in_gather)
        r->ctl_len = 0;
    if (r->in_fast) {
        /* The output header is the input header: same FIN, opcode and length encoding (RSV is 0,
         * the length minimal, the mask bit right for the direction: all checked above). Only the
         * key changes, once the first chunk passed (ready_chunk). */
        memcpy(r->out_hdr, p, hdr);
        r->out_hdr_len = hdr;
        r->out_hdr_off = 0;
        if (masked)
            memcpy(r->in_key, p + hdr - 4, 4);
        r->in_ready = 0;
        wsg_buf_consume(r->src, (uint32_t)hdr);
        r->moved += hdr;
        r->st.bytes_in += hdr;
    }
    return 1;
}

/* §5.5.1, §7.4: validates the gathered close body. */
static int check_close(struct wsg_ws_relay *r)
{
    if (r->ctl_len == 0) {
        r->st.close_code = 1005; /* §7.1.5: no status code present */
        return 0;
    }
    int code = (r->ctl_buf[0] << 8) | r->ctl_buf[1];
    if (!wsg_ws_close_code_valid(code))
        return fail(r, 1002, "bad close code");
    /* §5.5.1: the reason is UTF-8. */
    if (!r->lim.no_utf8 && wsg_utf8_step(0, r->ctl_buf + 2, r->ctl_len - 2) != 0)
        return fail(r, 1007, "invalid UTF-8 in close reason");
    r->st.close_code = code;
    return 0;
}

/* Called when the input frame's last payload byte was decoded and accepted for forwarding. */
static void frame_in_done(struct wsg_ws_relay *r)
{
    r->in_frame = 0;
    r->in_fast = 0;
    r->st.frames++;
    if (r->in_opcode == OP_CLOSE)
        r->in_done = 1; /* §5.5.1: nothing follows a close */
    if (!is_control(r->in_opcode) && r->in_fin) {
        r->st.messages++;
        r->msg_opcode = 0;
        r->msg_len = 0;
        r->msg_frames = 0;
        r->utf8 = 0;
        r->msg_z = 0;
    }
}

static _Thread_local uint8_t z_out[16384]; /* inflated bytes are looked at, then dropped */

/* zlib's allocations go through these, so /metrics can say what inflate contexts hold. */
static uint64_t z_bytes;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    size_t n = (size_t)items * size;
    uint64_t *p = malloc(n + sizeof(uint64_t));
    if (p == NULL)
        return Z_NULL;
    *p = n;
    __atomic_add_fetch(&z_bytes, n, __ATOMIC_RELAXED);
    return p + 1;
}

static void z_free(voidpf opaque, voidpf address)
{
    (void)opaque;
    if (address == NULL)
        return;
    uint64_t *p = (uint64_t *)address - 1;
    __atomic_sub_fetch(&z_bytes, *p, __ATOMIC_RELAXED);
    free(p);
}

uint64_t wsg_ws_inflate_bytes(void)
{
    return __atomic_load_n(&z_bytes, __ATOMIC_RELAXED);
}

static void z_release(struct wsg_ws_relay *r)
{
    if (r->zs != NULL) {
        inflateEnd(r->zs);
        free(r->zs);
        r->zs = NULL;
    }
}

/*
 * RFC 7692 §7.2.2: inflates n compressed bytes of the message in progress (and, at its end, the
 * 00 00 ff ff tail the sender removed) only to check what they hold: the message's inflated size
 * against max_message (1009 as soon as it is crossed), the inflate ratio once past 64 KiB, and
 * UTF-8 of a text message (1007). Output goes to a per-thread scratch buffer and is dropped.
 * @return 0, or WSG_ERR.
 */
static int inflate_check(struct wsg_ws_relay *r, const uint8_t *q, size_t n, int last)
{
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    if (r->zs == NULL) {
        r->zs = calloc(1, sizeof(*r->zs));
        if (r->zs != NULL) {
            r->zs->zalloc = z_alloc;
            r->zs->zfree = z_free;
        }
        /* a 2^15 window reads any window size the sender chose (max_window_bits only bounds it) */
        if (r->zs == NULL || inflateInit2(r->zs, -15) != Z_OK) {
            free(r->zs);
            r->zs = NULL;
            return fail(r, 1011, "out of memory for inflate");
        }
    }
    int text = r->msg_opcode == OP_TEXT && !r->lim.no_utf8;
    uint64_t wire0 = r->msg_wire; /* the ratio is taken over the compressed bytes inflated so far */
    for (int part = 0; part < 2; part++) {
        if (part == 1 && (!last || r->msg_zend))
            break;
        if (part == 0 && n > 0 && r->msg_zend) /* RFC 1951: nothing follows the final block */
            return fail(r, 1007, "compressed data after the final deflate block");
        r->zs->next_in = (Bytef *)(part == 0 ? q : tail);
        r->zs->avail_in = (uInt)(part == 0 ? n : sizeof(tail));
        do {
            r->zs->next_out = z_out;
            r->zs->avail_out = sizeof(z_out);
            int zr = inflate(r->zs, Z_SYNC_FLUSH);
            size_t got = sizeof(z_out) - r->zs->avail_out;
            if (part == 0)
                r->msg_wire = wire0 + (n - r->zs->avail_in);
            if (zr != Z_OK && zr != Z_BUF_ERROR && zr != Z_STREAM_END)
                return fail(r, 1007, "invalid compressed data");
            if (zr == Z_STREAM_END && part == 0 && r->zs->avail_in != 0)
                return fail(r, 1007, "compressed data after the final deflate block");
            r->msg_plain += got;
            r->frame_plain += got;
            if (r->lim.max_frame != 0 && r->frame_plain > r->lim.max_frame) {
                r->st.bombs++;
                return fail(r, 1009, "inflated frame exceeds max_frame");
            }
            if (r->lim.max_message != 0 && r->msg_plain > r->lim.max_message) {
                r->st.bombs++;
                return fail(r, 1009, "inflated message exceeds max_message");
            }
            if (r->lim.deflate_max_ratio != 0 && r->msg_plain > 65536 &&
                r->msg_plain / (r->msg_wire ? r->msg_wire : 1) >= r->lim.deflate_max_ratio) {
                r->st.bombs++;
                return fail(r, 1009, "inflate ratio of the message above deflate_max_ratio");
            }
            /* the one-pass transform with no keys only checks: 16 bytes at a time where it can */
            if (text && got > 0 &&
                (r->utf8 = wsg_ws_payload_pass(z_out, got, 0, NULL, NULL, 1, r->utf8)) == WSG_UTF8_REJECT)
                return fail(r, 1007, "invalid UTF-8");
            if (zr == Z_STREAM_END) {
                /* a final block (RFC 7692 §7.2.3: allowed): the stream is over, so the next
                 * message starts a new one whatever the context takeover */
                r->msg_zend = 1;
                break;
            }
            /* inflate stops when the input is used up or the output full: only the latter loops */
            if (zr == Z_BUF_ERROR || r->zs->avail_out != 0)
                break;
        } while (1);
    }
    if (last) {
        if (text && r->utf8 != WSG_UTF8_ACCEPT)
            return fail(r, 1007, "truncated UTF-8");
        r->st.inflated_bytes += r->msg_plain;
        r->st.compressed_bytes += r->msg_wire;
        if (r->msg_zend)
            inflateReset(r->zs);
        r->msg_zend = 0;
        if (r->lim.deflate_no_context)
            z_release(r); /* the sender resets its context: so do we, and free the memory meanwhile */
    }
    return 0;
}

/* The inflate hook's answer for a slice that inflated to `got` bytes: 0 go on, 1 stop (held),
 * WSG_ERR failed. */
static int ask_zhook(struct wsg_ws_relay *r, uint64_t got)
{
    if (r->zhook == NULL)
        return 0;
    const char *why = NULL;
    int rc = r->zhook(r->zhook_ctx, got, &why);
    if (rc == 0) {
        r->z_held = 0;
        return 0;
    }
    if (rc == WSG_AGAIN) {
        r->z_held = r->z_stop = 1;
        return 1;
    }
    if (!wsg_ws_close_code_valid(rc))
        return fail(r, 1011, "invalid inflate hook result");
    return fail(r, rc, why != NULL ? why : "policy violation");
}

/*
 * ready_chunk for a compressed message: slice by slice (WSG_WS_INFLATE_SLICE compressed bytes),
 * unmask, inflate to check, mask with the gateway's key (forwarded as it came), then ask the
 * inflate hook. A slice the hook refuses is not readied; after a slice it holds, the rest waits in
 * src (masked as it came) for a later pump.
 * @return 0, or WSG_ERR.
 */
static int ready_compressed(struct wsg_ws_relay *r, uint8_t *q, size_t n, uint64_t off)
{
    int c2u = r->dir == WSG_WS_C2U;
    if (r->z_held && n > 0) { /* an empty frame inflates only the 4-byte tail: never held */
        if (r->z_stop)
            return 0;
        int rc = ask_zhook(r, 0);
        if (rc != 0)
            return rc < 0 ? WSG_ERR : 0;
    }
    size_t done = 0;
    do {
        size_t k = n - done < WSG_WS_INFLATE_SLICE ? n - done : WSG_WS_INFLATE_SLICE;
        uint8_t *s = q != NULL ? q + done : NULL; /* an empty frame with src empty: q is NULL */
        uint64_t plain0 = r->msg_plain;
        if (c2u)
            wsg_ws_payload_pass(s, k, off + done, r->in_key, NULL, 0, 0);
        if (inflate_check(r, s, k, off + done + k == r->in_len && r->in_fin) < 0)
            return WSG_ERR;
        int rc = ask_zhook(r, r->msg_plain - plain0);
        if (rc < 0)
            return WSG_ERR;
        if (c2u)
            wsg_ws_payload_pass(s, k, off + done, NULL, r->out_key, 0, 0);
        r->in_ready += k;
        r->st.payload_bytes += k;
        done += k;
        if (rc > 0)
            break;
    } while (done < n);
    return 0;
}

/*
 * Readies the next n payload bytes of the fast-path frame, at q in src: unmasks, checks and
 * re-masks them in one pass. The first call for a frame (n may be 0 for an empty frame) draws the
 * gateway's key and puts it into the output header. Nothing of a chunk goes out before all of it
 * passed, as on the wslay path.
 * @return 0, or WSG_ERR (1007 on UTF-8, 1011 when the mask generator failed).
 */
static int ready_chunk(struct wsg_ws_relay *r, uint8_t *q, size_t n)
{
    uint64_t off = r->in_got + r->in_ready; /* payload offset of q[0] in the frame */
    int c2u = r->dir == WSG_WS_C2U;
    int text = r->msg_opcode == OP_TEXT && !r->lim.no_utf8;
    if (off == 0 && c2u) {
        /* §5.3: a fresh, unpredictable key for every frame sent towards the upstream. */
        if (r->rng == NULL || r->rng(r->rng_ctx, r->out_key, 4) != 0)
            return fail(r, 1011, "mask generation failed");
        memcpy(r->out_hdr + r->out_hdr_len - 4, r->out_key, 4);
    }
    if (r->msg_z)
        return ready_compressed(r, q, n, off);
    if (c2u || text) {
        /* §5.6, §8.1: text is UTF-8 across the whole message, checked on the unmasked bytes; a
         * message must not end inside a sequence. */
        uint32_t st =
            wsg_ws_payload_pass(q, n, off, c2u ? r->in_key : NULL, c2u ? r->out_key : NULL, text, r->utf8);
        if (text) {
            if (st == WSG_UTF8_REJECT)
                return fail(r, 1007, "invalid UTF-8");
            if (off + n == r->in_len && r->in_fin && st != WSG_UTF8_ACCEPT)
                return fail(r, 1007, "truncated UTF-8");
            r->utf8 = st;
        }
    }
    r->in_ready += n;
    r->st.payload_bytes += n;
    return 0;
}

/*
 * The fast path of a data frame (text, binary, continuation), from src straight to the sink:
 * 1. what src holds of the payload is readied in place (ready_chunk);
 * 2. once the first chunk passed (at once for an empty frame) the output hop is committed to this
 *    frame: it stays busy until the frame's last byte went out, and gateway frames wait;
 * 3. the header, then the ready payload straight from src, go to the sink; src drops what the
 *    sink took.
 * @return 1 something moved (call again), 0 src holds nothing more of the frame or the sink is
 *         full, WSG_ERR.
 */
static int relay_data(struct wsg_ws_relay *r)
{
    uint32_t avail;
    /* The payload bytes of the frame in progress are the relay's to rewrite: nobody else reads
     * src (ws.h). */
    uint8_t *p = (uint8_t *)wsg_buf_peek(r->src, &avail);
    uint64_t left = r->in_len - r->in_got - r->in_ready; /* payload not readied yet */
    if (left > 0 && avail > r->in_ready) {
        size_t n = avail - r->in_ready < left ? avail - (size_t)r->in_ready : (size_t)left;
        if (ready_chunk(r, p + r->in_ready, n) < 0)
            return WSG_ERR;
    } else if (r->in_len == 0 && !r->out_busy) {
        if (ready_chunk(r, p, 0) < 0)
            return WSG_ERR;
    }
    if (!r->out_busy) {
        if (r->in_ready == 0 && r->in_len != 0)
            return 0; /* no payload byte here yet */
        r->out_busy = 1;
        r->out_fast = 1;
    }

    uint64_t before = r->moved;
    while (r->out_hdr_off < r->out_hdr_len) {
        ssize_t n = sink_put(r, r->out_hdr + r->out_hdr_off, r->out_hdr_len - r->out_hdr_off);
        if (n <= 0)
            return n < 0 ? WSG_ERR : r->moved != before;
        r->out_hdr_off += (size_t)n;
    }
    while (r->in_ready > 0) {
        ssize_t n = sink_put(r, p, (size_t)r->in_ready);
        if (n < 0)
            return WSG_ERR;
        if (n == 0)
            break;
        wsg_buf_consume(r->src, (uint32_t)n);
        r->moved += (uint64_t)n;
        r->st.bytes_in += (uint64_t)n;
        p += n;
        r->in_ready -= (uint64_t)n;
        r->in_got += (uint64_t)n;
    }
    if (r->in_got == r->in_len) {
        r->out_busy = 0;
        r->out_fast = 0;
        frame_in_done(r);
        return 1;
    }
    return r->moved != before ? 1 : 0;
}

/*
 * Decodes the next payload chunk of the input and makes it the pending output chunk.
 * @return 1 something happened (call again), 0 src has nothing more now, WSG_ERR.
 */
static int pull(struct wsg_ws_relay *r)
{
    if (!r->in_frame) {
        int rc = gate_header(r);
        if (rc <= 0)
            return rc;
    }
    if (r->in_fast)
        return relay_data(r);
    if (r->dec == NULL && (r->dec = codec_get(r, 0)) == NULL)
        return fail(r, 1011, "out of memory");
    struct wslay_frame_iocb io;
    memset(&io, 0, sizeof(io));
    ssize_t n = wslay_frame_recv(r->dec->ctx, &io);
    if (n == WSLAY_ERR_WANT_READ)
        return 0;
    if (n < 0)
        return fail(r, 1002, "malformed frame"); /* unreachable: the gate checked what wslay checks */
    uint64_t before = r->in_got;
    r->in_got += (uint64_t)n;
    int last = r->in_got == r->in_len;
    r->st.payload_bytes += (uint64_t)n;

    if (r->in_gather) {
        if (n > 0) {
            memcpy(r->ctl_buf + r->ctl_len, io.data, (size_t)n); /* in_len <= 125 by the gate */
            r->ctl_len += (size_t)n;
        }
        if (!last)
            return 1;
        if (r->in_opcode == OP_CLOSE && check_close(r) < 0)
            return WSG_ERR;
        if (r->in_opcode == OP_PONG && r->pong_set && r->ctl_len == r->pong_len &&
            memcmp(r->ctl_buf, r->pong_tok, r->ctl_len) == 0) {
            /* The answer to the gateway's own ping: consumed here. */
            r->pong_set = 0;
            r->st.gateway_pongs++;
            frame_in_done(r);
            return 1;
        }
        start_out(r, 1, r->in_opcode, r->in_len);
        set_chunk(r, r->ctl_buf, r->ctl_len);
        frame_in_done(r);
        return 1;
    }

    if (r->msg_opcode == OP_TEXT && !is_control(r->in_opcode) && !r->lim.no_utf8) {
        /* §5.6, §8.1: text is UTF-8 across the whole message; each chunk is checked before it
         * goes out, and the message must not end inside a sequence. */
        uint32_t st = wsg_utf8_step(r->utf8, io.data, (size_t)n);
        if (st == 1)
            return fail(r, 1007, "invalid UTF-8");
        if (last && r->in_fin && st != 0)
            return fail(r, 1007, "truncated UTF-8");
        r->utf8 = st;
    }
    if (before == 0)
        start_out(r, r->in_fin, r->in_opcode, r->in_len);
    set_chunk(r, io.data, (size_t)n);
    if (last)
        frame_in_done(r);
    return 1;
}

/* Drives only the output: the pending chunk, then a waiting gateway ping, then a pending
 * gateway close. */
static int drive_out(struct wsg_ws_relay *r)
{
    for (;;) {
        if (r->chunk_pending) {
            int rc = push(r);
            if (rc <= 0)
                return rc;
            continue;
        }
        if (!r->out_busy && !r->closed) {
            if (r->ping_waiting) {
                start_gw_ping(r);
                continue;
            }
            if (r->gw == GW_PENDING) {
                start_gw_close(r);
                continue;
            }
        }
        return 1;
    }
}

/* ---- API ---- */

struct wsg_ws_relay *wsg_ws_relay_new(enum wsg_ws_dir dir, const struct wsg_ws_limits *lim,
                                      struct wsg_buf *src, wsg_ws_sink_fn sink, void *sink_ctx,
                                      wsg_ws_rng_fn rng, void *rng_ctx)
{
    struct wsg_ws_relay *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->dir = dir;
    if (lim != NULL)
        r->lim = *lim;
    r->src = src;
    r->sink = sink;
    r->sink_ctx = sink_ctx;
    r->rng = rng;
    r->rng_ctx = rng_ctx;
    return r;
}

void wsg_ws_relay_free(struct wsg_ws_relay *r)
{
    if (r == NULL)
        return;
    codec_put(r, 0, !dec_busy(r)); /* mid-frame contexts are destroyed, never reused */
    codec_put(r, 1, !enc_busy(r));
    z_release(r);
    free(r);
}

static int relay_pump(struct wsg_ws_relay *r)
{
    uint64_t before = r->moved;
    if (r->sink_failed)
        return WSG_ERR;
    if (r->err_code != 0) {
        /* The input is dead, but a gateway ping or close may still be going out. */
        if (r->gw == GW_PENDING || r->gw == GW_SENDING || r->ping_sending)
            (void)drive_out(r);
        return WSG_ERR;
    }
    for (;;) {
        int rc = drive_out(r);
        if (rc < 0)
            return WSG_ERR;
        /* Here a gateway close is either out (closed) or waits for the frame being streamed
         * (out_busy): only that frame's input is still read, never a new frame. */
        if (rc == 0 || r->closed)
            break;
        if (r->in_done)
            break;
        rc = pull(r);
        if (rc < 0)
            return WSG_ERR;
        if (rc == 0)
            break;
    }
    return r->moved != before ? 1 : 0;
}

int wsg_ws_relay_pump(struct wsg_ws_relay *r)
{
    r->z_stop = 0;
    int rc = relay_pump(r);
    codecs_release(r);
    return rc;
}

void wsg_ws_relay_set_wslay_only(struct wsg_ws_relay *r, int on)
{
    r->wslay_only = on != 0;
}

int wsg_ws_relay_error(const struct wsg_ws_relay *r, const char **reason)
{
    if (reason != NULL)
        *reason = r->err_reason;
    return r->err_code;
}

int wsg_ws_relay_closed(const struct wsg_ws_relay *r)
{
    return r->closed;
}

int wsg_ws_relay_idle_out(const struct wsg_ws_relay *r)
{
    return !r->out_busy && !r->chunk_pending;
}

/* Length of the longest prefix of s, at most max bytes, that ends on a character boundary of
 * valid UTF-8. */
static size_t utf8_prefix(const char *s, size_t len, size_t max)
{
    size_t good = 0;
    uint32_t st = 0;
    for (size_t i = 0; i < len && i < max; i++) {
        st = wsg_utf8_step(st, (const uint8_t *)s + i, 1);
        if (st == 1)
            break;
        if (st == 0)
            good = i + 1;
    }
    return good;
}

static int send_close(struct wsg_ws_relay *r, int code, const char *reason)
{
    if (r->sink_failed)
        return WSG_ERR;
    if (r->gw == GW_NONE) {
        if (r->closed) {
            r->gw = GW_DONE; /* §5.5.1: a close already went out on this hop; one is enough */
            return 1;
        }
        if (code != 0 && !wsg_ws_close_code_valid(code))
            return WSG_ERR;
        r->gw_len = 0;
        if (code != 0) {
            /* §5.5.1: 2-byte code in network order, then a UTF-8 reason (125 - 2 bytes max). */
            r->gw_buf[0] = (uint8_t)(code >> 8);
            r->gw_buf[1] = (uint8_t)code;
            size_t rlen = reason != NULL ? strlen(reason) : 0;
            rlen = utf8_prefix(reason, rlen, sizeof(r->gw_buf) - 2);
            if (rlen != 0)
                memcpy(r->gw_buf + 2, reason, rlen);
            r->gw_len = 2 + rlen;
        }
        r->gw = GW_PENDING;
    }
    if (r->gw == GW_DONE)
        return 1;
    /* After a violation the input frame being streamed can never complete, so the hop can take
     * no valid frame any more: the caller should drop the connection. */
    if (r->err_code != 0 && r->gw == GW_PENDING && r->out_busy)
        return WSG_ERR;
    if (drive_out(r) < 0)
        return WSG_ERR;
    return r->gw == GW_DONE ? 1 : 0;
}

int wsg_ws_relay_send_close(struct wsg_ws_relay *r, int code, const char *reason)
{
    int rc = send_close(r, code, reason);
    codecs_release(r);
    return rc;
}

const struct wsg_ws_stats *wsg_ws_relay_stats(const struct wsg_ws_relay *r)
{
    return &r->st;
}

void wsg_ws_relay_set_admit(struct wsg_ws_relay *r, wsg_ws_admit_fn fn, void *ctx)
{
    r->admit = fn;
    r->admit_ctx = ctx;
}

void wsg_ws_relay_set_inflate_hook(struct wsg_ws_relay *r, wsg_ws_inflate_fn fn, void *ctx)
{
    r->zhook = fn;
    r->zhook_ctx = ctx;
    if (fn == NULL)
        r->z_held = 0;
}

int wsg_ws_relay_send_ping(struct wsg_ws_relay *r, const uint8_t *payload, size_t len)
{
    /* §5.5.1: nothing may follow a close on this hop; after a failure the caller closes. */
    if (r->sink_failed || r->err_code != 0 || r->closed || r->gw != GW_NONE || len > 125 ||
        (len != 0 && payload == NULL))
        return WSG_ERR;
    if (len != 0)
        memcpy(r->ping_wait, payload, len);
    r->ping_wait_len = len;
    r->ping_waiting = 1;
    uint64_t seq = ++r->ping_seq;
    r->ping_wait_seq = seq;
    int rc = drive_out(r);
    codecs_release(r);
    if (rc < 0)
        return WSG_ERR;
    return r->ping_done_seq >= seq ? 1 : 0;
}

void wsg_ws_relay_expect_pong(struct wsg_ws_relay *r, const uint8_t *payload, size_t len)
{
    if (payload == NULL || len > sizeof(r->pong_tok)) {
        r->pong_set = 0;
        r->pong_len = 0;
        return;
    }
    if (len != 0)
        memcpy(r->pong_tok, payload, len);
    r->pong_len = len;
    r->pong_set = 1;
}

size_t wsg_ws_relay_pending_out(const struct wsg_ws_relay *r)
{
    return r->chunk_pending ? r->chunk_len - r->chunk_off : 0;
}
