/*
 * ws-int.h - private to frames/: the one-pass payload transform the relay's fast path runs, and
 * the switch that sends data frames through wslay instead (the oracle of fuzz/ws_diff.c). Only
 * frames/, its unit tests and that fuzz target include this file.
 */
#ifndef WSG_WS_INT_H
#define WSG_WS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "frames/ws.h"

/* wsg_utf8_step's states that the contract of ws.h fixes. */
#define WSG_UTF8_ACCEPT 0u
#define WSG_UTF8_REJECT 1u

/**
 * One pass over a chunk of a data frame's payload, in place, 16 bytes at a time where it can:
 * each byte is unmasked with in_key, checked as UTF-8 when check_utf8 is set (on the unmasked
 * byte, continuing from utf8), and masked again with out_key (RFC 6455 §5.3). Both keys are the
 * frame's 4-byte masking keys as they appear on the wire; offset is the payload offset of p[0]
 * within the frame, so the keys are rotated to it (byte j of the chunk uses key[(offset + j) % 4]).
 * A NULL key means that side is not masked: with both NULL, nothing is written.
 * @return the new UTF-8 state (WSG_UTF8_REJECT as soon as a byte is invalid: the rest of the chunk
 *         is then left half-done), or utf8 unchanged when check_utf8 is 0.
 */
uint32_t wsg_ws_payload_pass(uint8_t *p, size_t len, uint64_t offset, const uint8_t *in_key,
                             const uint8_t *out_key, int check_utf8, uint32_t utf8);

/**
 * Oracle mode, before the first pump: data frames take the same path as control frames (wslay_frame
 * decodes them into its 4 KiB buffer and unmasks them, wsg_utf8_step checks each decoded chunk,
 * wslay_frame encodes and masks them again). Everything else (the header gate, limits, control
 * frames, gateway frames, close codes and reasons) is shared with the fast path.
 */
void wsg_ws_relay_set_wslay_only(struct wsg_ws_relay *r, int on);

#endif
