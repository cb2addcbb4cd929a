/*
 * utf8.c - incremental UTF-8 validation (RFC 3629) for text frames and close reasons, the
 * relay's one-pass payload transform (unmask, check, re-mask: frames/ws-int.h), and the
 * close-code validity rule of RFC 6455 §7.4.
 *
 * The validator is a byte-class DFA in the style of Bjoern Hoehrmann's decoder, with our own
 * classes and transition table: each byte maps to one of 12 classes, and (state, class) gives the
 * next state. It only validates (no code point is computed), so a state is "how many
 * continuation bytes are still owed, and which range the next one must fall in".
 */
#include <string.h>

#include "frames/ws-int.h"

/* Byte classes. */
enum {
    C_ASCII, /* 00..7F */
    C_CONT1, /* 80..8F: continuation, low quarter */
    C_CONT2, /* 90..9F: continuation, second quarter */
    C_CONT3, /* A0..BF: continuation, upper half */
    C_LEAD2, /* C2..DF: lead of a 2-byte sequence */
    C_E0,    /* E0: 3-byte lead, next must be A0..BF (no overlongs) */
    C_LEAD3, /* E1..EC, EE..EF: 3-byte lead */
    C_ED,    /* ED: 3-byte lead, next must be 80..9F (no surrogates D800..DFFF) */
    C_F0,    /* F0: 4-byte lead, next must be 90..BF (no overlongs) */
    C_LEAD4, /* F1..F3: 4-byte lead */
    C_F4,    /* F4: 4-byte lead, next must be 80..8F (nothing above U+10FFFF) */
    C_BAD,   /* C0, C1 (always overlong), F5..FF (beyond U+10FFFF) */
    C__COUNT
};

/* States: 0 and 1 are fixed by the contract in ws.h. */
enum {
    S_ACCEPT, /* between characters */
    S_REJECT, /* invalid, sticky */
    S_NEED1,  /* one continuation byte owed (80..BF) */
    S_NEED2,  /* two owed, next any 80..BF */
    S_E0,     /* after E0 */
    S_ED,     /* after ED */
    S_NEED3,  /* three owed, next any 80..BF */
    S_F0,     /* after F0 */
    S_F4,     /* after F4 */
    S__COUNT
};
_Static_assert(S_ACCEPT == WSG_UTF8_ACCEPT && S_REJECT == WSG_UTF8_REJECT, "states fixed by ws.h");

/* Short names for the tables below. */
#define AS C_ASCII
#define K1 C_CONT1
#define K2 C_CONT2
#define K3 C_CONT3
#define L2 C_LEAD2
#define L3 C_LEAD3
#define L4 C_LEAD4
#define XX C_BAD

/* clang-format off */
static const uint8_t byte_class[256] = {
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 00..0F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 10..1F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 20..2F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 30..3F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 40..4F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 50..5F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 60..6F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 70..7F */
    K1, K1, K1, K1, K1, K1, K1, K1, K1, K1, K1, K1, K1, K1, K1, K1, /* 80..8F */
    K2, K2, K2, K2, K2, K2, K2, K2, K2, K2, K2, K2, K2, K2, K2, K2, /* 90..9F */
    K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, /* A0..AF */
    K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, K3, /* B0..BF */
    XX, XX, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, /* C0..CF */
    L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, /* D0..DF */
    C_E0, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, C_ED, L3, L3, /* E0..EF */
    C_F0, L4, L4, L4, C_F4, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, /* F0..FF */
};

/* Rows: current state; columns: byte class; cell: next state (short names below). */
#define OK S_ACCEPT
#define RJ S_REJECT
#define N1 S_NEED1
#define N2 S_NEED2
#define N3 S_NEED3
static const uint8_t next_state[S__COUNT][C__COUNT] = {
    /*           AS  K1  K2  K3  L2  E0    L3  ED    F0    L4  F4    XX */
    [S_ACCEPT] = {OK, RJ, RJ, RJ, N1, S_E0, N2, S_ED, S_F0, N3, S_F4, RJ},
    [S_REJECT] = {RJ, RJ, RJ, RJ, RJ, RJ,   RJ, RJ,   RJ,   RJ, RJ,   RJ},
    [S_NEED1]  = {RJ, OK, OK, OK, RJ, RJ,   RJ, RJ,   RJ,   RJ, RJ,   RJ},
    [S_NEED2]  = {RJ, N1, N1, N1, RJ, RJ,   RJ, RJ,   RJ,   RJ, RJ,   RJ},
    [S_E0]     = {RJ, RJ, RJ, N1, RJ, RJ,   RJ, RJ,   RJ,   RJ, RJ,   RJ}, /* A0..BF only */
    [S_ED]     = {RJ, N1, N1, RJ, RJ, RJ,   RJ, RJ,   RJ,   RJ, RJ,   RJ}, /* 80..9F only */
    [S_NEED3]  = {RJ, N2, N2, N2, RJ, RJ,   RJ, RJ,   RJ,   RJ, RJ,   RJ},
    [S_F0]     = {RJ, RJ, N2, N2, RJ, RJ,   RJ, RJ,   RJ,   RJ, RJ,   RJ}, /* 90..BF only */
    [S_F4]     = {RJ, N2, RJ, RJ, RJ, RJ,   RJ, RJ,   RJ,   RJ, RJ,   RJ}, /* 80..8F only */
};
/* clang-format on */
#undef OK
#undef RJ
#undef N1
#undef N2
#undef N3
#undef AS
#undef K1
#undef K2
#undef K3
#undef L2
#undef L3
#undef L4
#undef XX

uint32_t wsg_utf8_step(uint32_t state, const uint8_t *p, size_t len)
{
    size_t i = 0;
    if (state >= S__COUNT)
        return S_REJECT;
    while (i < len) {
        if (state == S_ACCEPT) {
            /* Fast path: runs of ASCII stay in ACCEPT. */
            while (i < len && p[i] < 0x80)
                i++;
            if (i == len)
                break;
        }
        state = next_state[state][byte_class[p[i++]]];
        if (state == S_REJECT)
            break;
    }
    return state;
}

/* Repeats key, rotated to payload offset, over 8 bytes in memory order; the first 4 also go to
 * rot[] for the byte-wise tails. A NULL key is all zero. */
static uint64_t key_word(const uint8_t *key, uint64_t offset, uint8_t rot[4])
{
    uint8_t w[8] = {0};
    if (key != NULL)
        for (int j = 0; j < 8; j++)
            w[j] = key[(offset + (uint64_t)j) & 3];
    memcpy(rot, w, 4);
    uint64_t k;
    memcpy(&k, w, 8);
    return k;
}

#define TOP_BITS 0x8080808080808080ull /* the bit that makes a byte non-ASCII, in each of 8 */

/*
 * Words are moved with memcpy (one unaligned load or store on x86-64 and arm64), 16 bytes per
 * round, and XORed with the key repeated over 8 bytes: a chunk starts at any address and at any
 * key rotation, so only the byte-wise tails look at the index, and since rounds are multiples of
 * 4 bytes, byte i of the chunk always takes rot[i % 4].
 */
uint32_t wsg_ws_payload_pass(uint8_t *p, size_t len, uint64_t offset, const uint8_t *in_key,
                             const uint8_t *out_key, int check_utf8, uint32_t utf8)
{
    uint8_t in_rot[4], out_rot[4];
    uint64_t in8 = key_word(in_key, offset, in_rot), out8 = key_word(out_key, offset, out_rot);
    int write = in_key != NULL || out_key != NULL;
    size_t i = 0;

    if (!check_utf8) {
        /* Binary: unmask and re-mask are one XOR with the combined key. */
        uint64_t k = in8 ^ out8;
        if (!write)
            return utf8;
        for (; i + 16 <= len; i += 16) {
            uint64_t a, b;
            memcpy(&a, p + i, 8);
            memcpy(&b, p + i + 8, 8);
            a ^= k;
            b ^= k;
            memcpy(p + i, &a, 8);
            memcpy(p + i + 8, &b, 8);
        }
        for (; i < len; i++)
            p[i] ^= (uint8_t)(in_rot[i & 3] ^ out_rot[i & 3]);
        return utf8;
    }

    uint32_t state = utf8 < S__COUNT ? utf8 : S_REJECT;
    while (i < len && state != S_REJECT) {
        /* Between characters, 16 bytes whose unmasked top bits are all clear are ASCII: valid. */
        if (state == S_ACCEPT) {
            for (; i + 16 <= len; i += 16) {
                uint64_t a, b;
                memcpy(&a, p + i, 8);
                memcpy(&b, p + i + 8, 8);
                a ^= in8;
                b ^= in8;
                if (((a | b) & TOP_BITS) != 0)
                    break;
                if (write) {
                    a ^= out8;
                    b ^= out8;
                    memcpy(p + i, &a, 8);
                    memcpy(p + i + 8, &b, 8);
                }
            }
        }
        /* Otherwise the DFA, byte by byte, for the next 16 bytes (or what is left). */
        size_t end = len - i < 16 ? len : i + 16;
        for (; i < end; i++) {
            uint8_t c = p[i] ^ in_rot[i & 3];
            state = next_state[state][byte_class[c]];
            if (state == S_REJECT)
                break;
            if (write)
                p[i] = c ^ out_rot[i & 3];
        }
    }
    return state;
}

int wsg_ws_close_code_valid(int code)
{
    /* RFC 6455 §7.4.1 defines 1000-1003 and 1007-1011; 1012-1014 are IANA-registered and sent by
     * servers in practice. 1004 is reserved, 1005/1006/1015 must never be sent on the wire. §7.4.2:
     * 0-999 unused, 1000-2999 reserved for the protocol, 3000-4999 for libraries and applications. */
    if (code >= 1000 && code <= 1003)
        return 1;
    if (code >= 1007 && code <= 1014)
        return 1;
    return code >= 3000 && code <= 4999;
}
