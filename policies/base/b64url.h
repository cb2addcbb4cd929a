/*
 * b64url.h - base64url without padding (RFC 4648 section 5, as RFC 7515 section 2 uses it): the
 * affinity cookie's tokens (gateway/affinity.c) and the ACME client's JWS parts (certs/jws.c).
 *
 * Part of the base layer (policies/base/): includes nothing of the project.
 */
#ifndef WSG_B64URL_H
#define WSG_B64URL_H

#include <stddef.h>

/* Characters of len bytes encoded (no padding). */
#define WSG_B64URL_LEN(len) ((len) / 3 * 4 + ((len) % 3 == 0 ? 0 : (len) % 3 + 1))

/* Encodes len bytes into out, which holds WSG_B64URL_LEN(len) + 1 bytes; NUL-terminated. */
void wsg_b64url_encode(const void *data, size_t len, char *out);
/* 1 when the len characters at s are all of the base64url alphabet (and len > 0). */
int wsg_b64url_chars(const char *s, size_t len);
/**
 * Decodes base64url without padding, strictly: only the URL-safe alphabet, no '=', no whitespace,
 * a length that is not 1 modulo 4, and zero bits after the last byte (one spelling per value).
 * @return the number of bytes written to out, or -1 (malformed, or more than cap bytes).
 */
long wsg_b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap);

#endif
