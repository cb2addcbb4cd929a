/*
 * affinity.c - the signed upstream token of `affinity cookie` (see affinity.h) and the Cookie header
 * reader that finds it.
 */
#include "gateway/affinity.h"

#include <string.h>

#include "policies/base/b64url.h"
#include "tls/tls.h"

#define AFF_DATA 12 /* peer id 8 + expiry 4 */
#define AFF_MAC 16
#define AFF_RAW (AFF_DATA + AFF_MAC)
_Static_assert(WSG_AFF_TOKEN_LEN == WSG_B64URL_LEN(AFF_RAW),
               "a token is the unpadded base64url of AFF_RAW bytes");

uint64_t wsg_affinity_peer_id(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    h ^= h >> 33; /* murmur3's fmix64: spreads FNV's weak high bits */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void mac(const uint8_t key[WSG_AFF_KEY_LEN], const uint8_t data[AFF_DATA], uint8_t out[AFF_MAC])
{
    uint8_t msg[11 + AFF_DATA], full[32];
    memcpy(msg, "wsgate-aff1", 11);
    memcpy(msg + 11, data, AFF_DATA);
    if (wsg_hmac_sha256(key, WSG_AFF_KEY_LEN, msg, sizeof(msg), full) != 0)
        memset(full, 0, sizeof(full)); /* cannot happen with SHA-256 compiled in; never verifies */
    memcpy(out, full, AFF_MAC);
}

void wsg_affinity_make(const uint8_t key[WSG_AFF_KEY_LEN], uint64_t peer_id, uint32_t expires,
                       char out[WSG_AFF_TOKEN_LEN + 1])
{
    uint8_t raw[AFF_RAW];
    for (int i = 0; i < 8; i++)
        raw[i] = (uint8_t)(peer_id >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        raw[8 + i] = (uint8_t)(expires >> (24 - 8 * i));
    mac(key, raw, raw + AFF_DATA);
    wsg_b64url_encode(raw, AFF_RAW, out);
}

/* One candidate value: exactly WSG_AFF_TOKEN_LEN base64url characters whose unused low bits are 0
 * (one encoding per token), a matching MAC, then the expiry. */
static enum wsg_aff_result check_token(const uint8_t key[WSG_AFF_KEY_LEN], const char *v, size_t len,
                                       uint32_t now, uint64_t *peer_id, uint32_t *expires)
{
    if (len != WSG_AFF_TOKEN_LEN)
        return WSG_AFF_FORGED;
    uint8_t raw[AFF_RAW];
    if (wsg_b64url_decode(v, len, raw, sizeof(raw)) != AFF_RAW)
        return WSG_AFF_FORGED;
    uint8_t want[AFF_MAC];
    mac(key, raw, want);
    uint8_t diff = 0;
    for (size_t i = 0; i < AFF_MAC; i++) /* constant time: no early exit on the first wrong byte */
        diff |= (uint8_t)(want[i] ^ raw[AFF_DATA + i]);
    if (diff != 0)
        return WSG_AFF_FORGED;
    uint64_t id = 0;
    uint32_t exp = 0;
    for (int i = 0; i < 8; i++)
        id = id << 8 | raw[i];
    for (int i = 0; i < 4; i++)
        exp = exp << 8 | raw[8 + i];
    if (exp <= now)
        return WSG_AFF_EXPIRED;
    *peer_id = id;
    *expires = exp;
    return WSG_AFF_VALID;
}

enum wsg_aff_result wsg_affinity_find(const uint8_t key[WSG_AFF_KEY_LEN], const char *name, const char *hdr,
                                      size_t len, uint32_t now, uint64_t *peer_id, uint32_t *expires)
{
    size_t nlen = strlen(name);
    enum wsg_aff_result best = WSG_AFF_NONE;
    for (size_t a = 0; a < len;) {
        size_t b = a;
        while (b < len && hdr[b] != ';')
            b++;
        size_t s = a, e = b;
        while (s < e && (hdr[s] == ' ' || hdr[s] == '\t'))
            s++;
        while (e > s && (hdr[e - 1] == ' ' || hdr[e - 1] == '\t'))
            e--;
        /* "name=value": the name matched exactly (cookie names are case-sensitive) */
        if (e - s > nlen && memcmp(hdr + s, name, nlen) == 0 && hdr[s + nlen] == '=') {
            const char *v = hdr + s + nlen + 1;
            size_t vlen = e - (s + nlen + 1);
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') { /* RFC 6265 allows DQUOTEs */
                v++;
                vlen -= 2;
            }
            uint64_t id = 0;
            uint32_t exp = 0;
            enum wsg_aff_result r = check_token(key, v, vlen, now, &id, &exp);
            if (r == WSG_AFF_VALID) {
                *peer_id = id;
                *expires = exp;
                return r;
            }
            if (best == WSG_AFF_NONE || r == WSG_AFF_EXPIRED)
                best = r;
        }
        a = b + 1;
    }
    return best;
}
