/*
 * affinity.h - cookie affinity (`affinity cookie`): an opaque token naming an upstream, signed with
 * HMAC-SHA256 so a client can neither forge one nor pick its upstream, set by the gateway on the
 * first response and honoured on later requests and upgrades, whichever address they come from
 * and whichever gateway of a fleet (same affinity_key_file) they reach.
 *
 * Token (38 characters, base64url without padding, of 28 bytes):
 *   peer id (8, big endian) | expiry (4, Unix seconds, big endian) | HMAC-SHA256(key, "wsgate-aff1" |
 *   those 12 bytes), first 16 bytes
 * The peer id is a hash of the upstream's configured "host:port" (wsg_affinity_peer_id), so tokens
 * stay valid across reloads and across gateways with the same upstream list, and a token naming an
 * upstream that is not in the route's group matches nothing (the caller falls back to the hash).
 *
 * Pure functions: no socket, no clock, no allocation; unit-tested and fuzzed (fuzz/affinity_cookie).
 */
#ifndef WSG_AFFINITY_H
#define WSG_AFFINITY_H

#include <stddef.h>
#include <stdint.h>

#define WSG_AFF_KEY_LEN 32
#define WSG_AFF_TOKEN_LEN 38 /* base64url of 28 bytes, unpadded */

/* A stable 64-bit id for an upstream's configured name (FNV-1a, then a finaliser). */
uint64_t wsg_affinity_peer_id(const char *name);

/* Writes the token for peer_id, valid until expires (Unix seconds), NUL-terminated. */
void wsg_affinity_make(const uint8_t key[WSG_AFF_KEY_LEN], uint64_t peer_id, uint32_t expires,
                       char out[WSG_AFF_TOKEN_LEN + 1]);

enum wsg_aff_result {
    WSG_AFF_NONE = 0,   /* no cookie of that name */
    WSG_AFF_VALID = 1,  /* *peer_id and *expires filled */
    WSG_AFF_FORGED = 2, /* a cookie of that name, but not a token signed with this key */
    WSG_AFF_EXPIRED = 3 /* signed with this key, past its expiry */
};

/**
 * Looks for the cookie `name` in one Cookie header value ("a=1; name=TOKEN; b=2", RFC 6265 §4.2.1;
 * whitespace around pairs tolerated) and checks its token against key and now.
 * @return the best result among the pairs of that name (VALID over EXPIRED over FORGED over NONE).
 */
enum wsg_aff_result wsg_affinity_find(const uint8_t key[WSG_AFF_KEY_LEN], const char *name, const char *hdr,
                                      size_t len, uint32_t now, uint64_t *peer_id, uint32_t *expires);

#endif
