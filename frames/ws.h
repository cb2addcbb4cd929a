/*
 * ws.h - the only header of frames/: the WebSocket handshake helpers and the frame-by-frame
 * relay of one direction (check each header against RFC 6455 and the limits, then move data
 * frames in one pass from src to the sink and control frames through wslay_frame; ws.c says how).
 *
 * frames/ knows nothing of sockets, TLS or policy values: it reads a wsg_buf and writes through
 * a sink function it was handed. Structs are opaque outside frames/.
 */
#ifndef WSG_WS_H
#define WSG_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "policies/base/buf-t.h"
#include "policies/base/err.h"

/* ---- Handshake (RFC 6455 §4) ---- */

/* Writes base64(SHA-1(key + GUID)) and a NUL into accept (29 bytes needed).
 * @return 0, or -1 if key is not a base64 encoding of 16 bytes (24 chars). */
int wsg_ws_accept_key(const char *key, size_t key_len, char accept[29]);
/* Generates a fresh Sec-WebSocket-Key (24 chars + NUL) from 16 random bytes. */
void wsg_ws_make_key(const uint8_t rnd[16], char key[25]);
/* Rewrites a Sec-WebSocket-Extensions value without permessage-deflate offers.
 * Returns the new length (0: header must be dropped). out must have in_len bytes. */
size_t wsg_ws_strip_deflate(const char *in, size_t in_len, char *out);

/* ---- permessage-deflate (RFC 7692) negotiation: frames/deflate.c ---- */

/* An offer or a negotiated answer. Window bits: 0 = parameter absent. */
struct wsg_ws_deflate {
    unsigned server_no_context : 1; /* server_no_context_takeover */
    unsigned client_no_context : 1; /* client_no_context_takeover */
    unsigned client_bits_param : 1; /* client_max_window_bits present (with or without a value) */
    uint8_t server_bits, client_bits;
};
/**
 * Picks the first permessage-deflate offer in one Sec-WebSocket-Extensions value whose parameters
 * are all RFC 7692 §7.1 ones with valid values and none repeated, and writes it normalised into
 * out ("permessage-deflate; client_no_context_takeover; client_max_window_bits=12"...), NUL
 * terminated. Other extensions and invalid offers are left out.
 * @return its length, 0 when there is none (or it does not fit cap).
 */
size_t wsg_ws_deflate_offer(const char *in, size_t len, char *out, size_t cap, struct wsg_ws_deflate *offer);
/* Writes d as one normalised permessage-deflate element ("permessage-deflate; server_no_context_takeover;
 * client_no_context_takeover; server_max_window_bits=N; client_max_window_bits[=N]", the parameters
 * d has), NUL terminated. @return its length, 0 when it does not fit cap. */
size_t wsg_ws_deflate_format(const struct wsg_ws_deflate *d, char *out, size_t cap);
/**
 * Checks the upstream's Sec-WebSocket-Extensions answer against the offer that was forwarded:
 * exactly one permessage-deflate element, known parameters with valid values, none repeated,
 * client_max_window_bits only if offered, window sizes within the offer, server_no_context_takeover
 * and server_max_window_bits echoed when offered (§7.1.1.1, §7.1.2.1).
 * @return 0 with *neg filled, or -1 with *why (static text).
 */
int wsg_ws_deflate_answer(const char *in, size_t len, const struct wsg_ws_deflate *offer,
                          struct wsg_ws_deflate *neg, const char **why);

/* Bytes held by inflate contexts (zlib's state and window) in the whole process, for /metrics. */
uint64_t wsg_ws_inflate_bytes(void);

/* ---- Relay of one direction ---- */

enum wsg_ws_dir {
    WSG_WS_C2U, /* client -> upstream: input must be masked; output re-masked */
    WSG_WS_U2C  /* upstream -> client: input must be unmasked; output unmasked */
};

/* Sink for encoded bytes. Returns >0 bytes taken (may be short), or WSG_AGAIN when full. */
typedef ssize_t (*wsg_ws_sink_fn)(void *ctx, const uint8_t *data, size_t len);
/* Fills dst with random bytes (masks). Returns 0 or -1. */
typedef int (*wsg_ws_rng_fn)(void *ctx, uint8_t *dst, size_t len);

/*
 * Limits of one direction. All zero = RFC 6455 checks only. Every limit is checked on the frame
 * header, before any byte of that frame is taken from src, in this order (after the RFC checks):
 * deny_text / deny_binary (1003), max_frame, max_message, max_fragments (1009).
 */
struct wsg_ws_limits {
    uint64_t max_frame;       /* payload bytes of one frame; 0 = no limit */
    uint64_t max_message;     /* payload bytes of one message, cumulative over fragments; 0 = none */
    uint32_t max_fragments;   /* frames (first + continuations) of one message; 0 = no limit */
    unsigned deny_text : 1;   /* a text message closes 1003 "text messages not allowed" */
    unsigned deny_binary : 1; /* a binary message closes 1003 "binary messages not allowed" */
    unsigned no_utf8 : 1;     /* do not validate text payloads and close reasons as UTF-8 */
    /* permessage-deflate negotiated on this hop: RSV1 marks a compressed message; it is forwarded
     * as it came and inflated only to check it (max_message and UTF-8 on the inflated bytes) */
    unsigned deflate : 1;
    unsigned deflate_no_context : 1; /* the sender resets its compressor after each message */
    uint32_t deflate_max_ratio;      /* inflated / compressed, checked past 64 KiB; 0 = none */
};

/* What the relay saw; counters for logs. */
struct wsg_ws_stats {
    uint64_t frames, messages, payload_bytes; /* frames and payload_bytes include gateway pongs */
    int close_code; /* code of the close frame relayed in this direction; 1005 if none in it; 0 if no close */
    uint64_t gateway_pongs; /* pongs answering wsg_ws_relay_expect_pong, consumed, not forwarded */
    uint64_t bytes_in;      /* wire bytes taken from src */
    uint64_t compressed_bytes, inflated_bytes; /* permessage-deflate: payload of compressed messages */
    uint64_t bombs; /* compressed messages stopped inflated (max_frame, max_message, deflate_max_ratio) */
};

struct wsg_ws_relay;

/**
 * @param src  buffer the relay reads from. It consumes exactly the bytes it forwarded or holds
 *             (a frame header, a control frame); the payload of the data frame in progress stays
 *             in src until the sink takes it, and the relay rewrites those bytes in place
 *             (unmasked, re-masked) before it hands them over: nobody else may read src.
 * @param sink where the re-encoded frames go (client hop: TLS write; upstream hop: up.out)
 * @param rng  mask source, used only for WSG_WS_C2U
 * @return NULL on out of memory.
 */
struct wsg_ws_relay *wsg_ws_relay_new(enum wsg_ws_dir dir, const struct wsg_ws_limits *lim,
                                      struct wsg_buf *src, wsg_ws_sink_fn sink, void *sink_ctx,
                                      wsg_ws_rng_fn rng, void *rng_ctx);
void wsg_ws_relay_free(struct wsg_ws_relay *r);
/* Frees the wslay contexts the calling thread keeps for reuse (a relay holds its contexts only
 * while a frame is in progress and gives them to a per-thread cache of at most 64 between
 * frames); a thread calls it before it exits. */
void wsg_ws_cache_drain(void);

/**
 * Moves frames from src to the sink until src is empty or the sink says WSG_AGAIN.
 * Frames keep FIN, opcode and boundaries exactly; payload is streamed in chunks, never a whole
 * message in memory. Invalid input is detected before it is forwarded (size on the header,
 * UTF-8 on each chunk before that chunk goes out).
 * @return >0 progress, 0 nothing possible now, WSG_ERR on a violation: then
 *         wsg_ws_relay_error() gives the close code for the sender (1002, 1003, 1007, 1009, the
 *         admission hook's code, or 1011 when the sink or the mask generator failed) and a reason.
 * @note After a close frame was relayed completely the relay stops reading src (returns 0).
 */
int wsg_ws_relay_pump(struct wsg_ws_relay *r);
int wsg_ws_relay_error(const struct wsg_ws_relay *r, const char **reason);
/* 1 when a close frame has passed through completely. */
int wsg_ws_relay_closed(const struct wsg_ws_relay *r);
/* 1 when the encoder is between frames (a gateway frame may be sent now). */
int wsg_ws_relay_idle_out(const struct wsg_ws_relay *r);
/**
 * Sends a close frame generated by the gateway on this relay's output hop (code, UTF-8 reason
 * truncated to 123 bytes). If a frame is being streamed, the close goes out right after it
 * completes; after that the relay forwards nothing more.
 * @return >0 once the frame is fully handed to the sink, 0 if it is still pending (call
 *         wsg_ws_relay_pump or this again), WSG_ERR on failure.
 */
int wsg_ws_relay_send_close(struct wsg_ws_relay *r, int code, const char *reason);
const struct wsg_ws_stats *wsg_ws_relay_stats(const struct wsg_ws_relay *r);

/* ---- Policy hooks ---- */

/* One input frame header, as the admission hook sees it. */
struct wsg_ws_frame_info {
    int opcode; /* 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong */
    int fin;
    uint64_t payload_len;
    int first_of_message; /* data frames: opcode != 0 (1 for text/binary, 0 otherwise) */
};

/**
 * Admission of one input frame, called once its whole header (mask key included) is in src,
 * after the RFC 6455 checks and the wsg_ws_limits passed, before any byte of it is taken from src
 * or forwarded. Called for control frames too.
 * @return 0 admit (never called again for this frame);
 *         WSG_AGAIN hold: the relay stops before the frame (src untouched, nothing of it
 *         forwarded) and the pump returns 0 unless something else moved; every later pump calls
 *         the hook again for the same frame until it returns 0;
 *         a close code valid on the wire (e.g. 1008): the relay fails like on a violation
 *         (pump returns WSG_ERR, wsg_ws_relay_error gives the code and *reason, which must be a
 *         static string; NULL gives "policy violation"). Any other value fails with 1011.
 */
typedef int (*wsg_ws_admit_fn)(void *ctx, const struct wsg_ws_frame_info *fi, const char **reason);
/* Sets (fn NULL: removes) the admission hook. */
void wsg_ws_relay_set_admit(struct wsg_ws_relay *r, wsg_ws_admit_fn fn, void *ctx);

/**
 * Inflate hook (permessage-deflate): a relay inflates a compressed message's input in slices of at
 * most WSG_WS_INFLATE_SLICE compressed bytes (deflate cannot expand 1 KiB past about 1 MiB, RFC
 * 1951's 258-byte copy in 2 bits), and calls the hook after each slice with what that slice inflated
 * to, once it passed the checks and before any of it is forwarded.
 * @return 0 go on;
 *         WSG_AGAIN stop inflating: the slice is forwarded, but nothing more is inflated in this
 *         pump; every later pump first calls the hook with inflated 0, and inflates again only
 *         once it returns 0 (src untouched meanwhile: the sender is held by backpressure);
 *         a close code valid on the wire (e.g. 1008): the relay fails on this slice, which is not
 *         forwarded (wsg_ws_relay_error gives the code and *reason, a static string; NULL gives
 *         "policy violation"). Any other value fails with 1011.
 * No hook: every slice goes on.
 */
#define WSG_WS_INFLATE_SLICE 1024
typedef int (*wsg_ws_inflate_fn)(void *ctx, uint64_t inflated, const char **reason);
/* Sets (fn NULL: removes) the inflate hook. */
void wsg_ws_relay_set_inflate_hook(struct wsg_ws_relay *r, wsg_ws_inflate_fn fn, void *ctx);

/**
 * Sends a ping generated by the gateway on this relay's output hop (masked on WSG_WS_C2U), len
 * <= 125. If a frame is being streamed, the ping goes out right after it completes (between two
 * fragments of a message is fine). Unlike a close, the relay goes on relaying afterwards.
 * One gateway ping waits at a time: a new call before the previous one started replaces it.
 * @return >0 once the frame is fully handed to the sink, 0 if it is still pending
 *         (wsg_ws_relay_pump sends it), WSG_ERR if the hop is closing or closed (a close went
 *         out or was asked for), after a violation or sink failure, or len > 125.
 */
int wsg_ws_relay_send_ping(struct wsg_ws_relay *r, const uint8_t *payload, size_t len);

/**
 * Call on the relay that READS the peer's answer (the client's pong arrives on WSG_WS_C2U).
 * The next pong whose payload equals payload[0..len) is consumed and not forwarded; the token is
 * then cleared and stats->gateway_pongs incremented. Other pongs are relayed. One token at a time
 * (a new call replaces it); payload NULL or len > 125 clears it.
 */
void wsg_ws_relay_expect_pong(struct wsg_ws_relay *r, const uint8_t *payload, size_t len);

/* Bytes taken from src and decoded that the sink has not taken yet: the rest of a control frame
 * (<= 125 bytes, relayed or the gateway's); 0 if none. Data payloads are never taken from src
 * before the sink takes them, and a frame header the relay holds (<= 14 bytes) is not counted. */
size_t wsg_ws_relay_pending_out(const struct wsg_ws_relay *r);

/* UTF-8 validation (Hoehrmann-style DFA), usable incrementally. state starts at 0 (ACCEPT);
 * returns the new state: 0 = complete and valid so far, 1 = invalid (sticky), other = mid-sequence. */
uint32_t wsg_utf8_step(uint32_t state, const uint8_t *p, size_t len);

/* Is code valid to appear in a close frame on the wire (RFC 6455 §7.4)? */
int wsg_ws_close_code_valid(int code);

#endif
