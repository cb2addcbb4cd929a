/*
 * proxy_protocol.c - libFuzzer target for the PROXY protocol v1/v2 parser (gateway/proxyproto.h).
 *
 * Input: [opt] then the bytes a balancer would send. opt bit 0: when the bytes are a v2 header
 * with a CRC32C TLV, the harness writes the right checksum into it first (libFuzzer cannot compute
 * one), so the paths after the check are reached; bit 1: the re-encoding checks below also run for
 * a header followed by more bytes (always on when the input is exactly the header).
 *
 * Invariants, besides ASan/UBSan (every parse reads an exact-size copy of its prefix):
 * - the answer is PARTIAL, INVALID (with a non-empty reason) or a length within the input and
 *   within WSG_PROXY_MAX_HEADER; PARTIAL never once WSG_PROXY_MAX_HEADER bytes are in;
 * - fed one byte more each time, the answers are PARTIAL up to one verdict that never changes
 *   after (same length, same header), and that verdict is the whole input's;
 * - a success is self-consistent (version 1 or 2, LOCAL only in v2 and then AF_UNSPEC, address
 *   families match, v2 TLVs end at the header's end), and a header carrying an address encodes
 *   again, as a v1 line (inet_ntop) and as a v2 header, into one that parses to the same
 *   addresses and ports.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "gateway/proxyproto.h"

static int parse_copy(const uint8_t *data, size_t n, struct wsg_proxy_hdr *h, const char **why)
{
    uint8_t *copy = malloc(n ? n : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, n);
    memset(h, 0, sizeof(*h));
    int rc = wsg_proxy_parse(copy, n, h, why);
    free(copy);
    return rc;
}

/* Writes the right CRC32C into the first CRC32C TLV of a v2 header, if there is one. */
static void fix_crc(uint8_t *b, size_t n)
{
    static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    if (n < 16 || memcmp(b, sig, 12) != 0)
        return;
    size_t total = 16 + ((size_t)b[14] << 8 | b[15]);
    size_t fam = b[13] >> 4, off = 16 + (fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0);
    if (total > n)
        return;
    while (off + 3 <= total) {
        size_t vlen = (size_t)b[off + 1] << 8 | b[off + 2];
        if (b[off] == 0x03 && vlen == 4 && off + 7 <= total) {
            memset(b + off + 3, 0, 4);
            uint32_t c = wsg_proxy_crc32c(b, total);
            b[off + 3] = (uint8_t)(c >> 24);
            b[off + 4] = (uint8_t)(c >> 16);
            b[off + 5] = (uint8_t)(c >> 8);
            b[off + 6] = (uint8_t)c;
            return;
        }
        off += 3 + vlen;
    }
}

static void same_addr(const struct wsg_proxy_hdr *a, const struct wsg_proxy_hdr *b)
{
    FUZZ_CHECK(a->family == b->family && a->command == b->command);
    if (a->family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->src, *y = (const void *)&b->src;
        FUZZ_CHECK(x->sin_addr.s_addr == y->sin_addr.s_addr && x->sin_port == y->sin_port);
        x = (const void *)&a->dst;
        y = (const void *)&b->dst;
        FUZZ_CHECK(x->sin_addr.s_addr == y->sin_addr.s_addr && x->sin_port == y->sin_port);
    } else {
        const struct sockaddr_in6 *x = (const void *)&a->src, *y = (const void *)&b->src;
        FUZZ_CHECK(memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 && x->sin6_port == y->sin6_port);
        x = (const void *)&a->dst;
        y = (const void *)&b->dst;
        FUZZ_CHECK(memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 && x->sin6_port == y->sin6_port);
    }
}

/* Encodes h (an address-carrying header) as v1 and v2 and parses both again. */
static void reencode(const struct wsg_proxy_hdr *h)
{
    char line[WSG_PROXY_V1_MAX + 1], s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    uint8_t v2[16 + 36];
    unsigned sp, dp;
    size_t v2len;
    memcpy(v2, "\r\n\r\n\0\r\nQUIT\n\x21", 13);
    if (h->family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&h->src, *b = (const void *)&h->dst;
        FUZZ_CHECK(inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s)) &&
                   inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d)));
        sp = ntohs(a->sin_port);
        dp = ntohs(b->sin_port);
        v2[13] = 0x11;
        memcpy(v2 + 16, &a->sin_addr, 4);
        memcpy(v2 + 20, &b->sin_addr, 4);
        memcpy(v2 + 24, &a->sin_port, 2);
        memcpy(v2 + 26, &b->sin_port, 2);
        v2len = 28;
    } else {
        const struct sockaddr_in6 *a = (const void *)&h->src, *b = (const void *)&h->dst;
        FUZZ_CHECK(inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s)) &&
                   inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d)));
        sp = ntohs(a->sin6_port);
        dp = ntohs(b->sin6_port);
        v2[13] = 0x21;
        memcpy(v2 + 16, &a->sin6_addr, 16);
        memcpy(v2 + 32, &b->sin6_addr, 16);
        memcpy(v2 + 48, &a->sin6_port, 2);
        memcpy(v2 + 50, &b->sin6_port, 2);
        v2len = 52;
    }
    v2[14] = 0;
    v2[15] = (uint8_t)(v2len - 16);
    struct wsg_proxy_hdr h2;
    const char *why;
    FUZZ_CHECK(parse_copy(v2, v2len, &h2, &why) == (int)v2len);
    same_addr(h, &h2);
    /* inet_ntop writes IPv4-mapped IPv6 as ::ffff:a.b.c.d, which a v1 line may not carry */
    if (strchr(s, '.') != NULL && h->family == AF_INET6)
        return;
    if (strchr(d, '.') != NULL && h->family == AF_INET6)
        return;
    int n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n", h->family == AF_INET ? "TCP4" : "TCP6",
                     s, d, sp, dp);
    FUZZ_CHECK(n > 0 && (size_t)n <= WSG_PROXY_V1_MAX);
    FUZZ_CHECK(parse_copy((const uint8_t *)line, (size_t)n, &h2, &why) == n);
    same_addr(h, &h2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t opt = fuzz_byte(&in);
    size_t n = in.n;
    uint8_t *buf = malloc(n ? n : 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, in.p, n);
    if (opt & 1)
        fix_crc(buf, n);

    struct wsg_proxy_hdr whole, h;
    const char *why = NULL;
    int rc = parse_copy(buf, n, &whole, &why);
    FUZZ_CHECK(rc == WSG_PARSE_PARTIAL || rc == WSG_PARSE_INVALID || (rc > 0 && (size_t)rc <= n));
    FUZZ_CHECK(rc <= WSG_PROXY_MAX_HEADER);
    if (rc == WSG_PARSE_PARTIAL)
        FUZZ_CHECK(n < WSG_PROXY_MAX_HEADER);
    if (rc == WSG_PARSE_INVALID)
        FUZZ_CHECK(why != NULL && why[0] != '\0');
    if (fuzz_verbose())
        fprintf(stderr, "proxy_protocol: %zu bytes -> %d %s\n", n, rc, rc == WSG_PARSE_INVALID ? why : "");

    /* one byte more each time: PARTIAL, then one verdict that stays */
    size_t lim = n < WSG_PROXY_MAX_HEADER + 1 ? n : WSG_PROXY_MAX_HEADER + 1;
    int verdict = WSG_PARSE_PARTIAL;
    for (size_t k = 0; k <= lim; k++) {
        int r = parse_copy(buf, k, &h, &why);
        if (verdict != WSG_PARSE_PARTIAL) {
            FUZZ_CHECK(r == verdict);
            if (r > 0)
                FUZZ_CHECK(memcmp(&h, &whole, sizeof(h)) == 0);
            continue;
        }
        FUZZ_CHECK(r == WSG_PARSE_PARTIAL || r == WSG_PARSE_INVALID || (r > 0 && (size_t)r == k));
        verdict = r;
    }
    FUZZ_CHECK(verdict == rc);

    if (rc > 0) {
        FUZZ_CHECK(whole.version == 1 || whole.version == 2);
        FUZZ_CHECK(whole.command == WSG_PROXY_PROXY || (whole.version == 2 && whole.family == AF_UNSPEC));
        FUZZ_CHECK(whole.family == AF_UNSPEC || whole.family == AF_INET || whole.family == AF_INET6 ||
                   whole.family == AF_UNIX);
        if (whole.family != AF_UNSPEC)
            FUZZ_CHECK(whole.src.ss_family == whole.family && whole.dst.ss_family == whole.family);
        if (whole.version == 2 && whole.tlv_off != 0)
            FUZZ_CHECK(whole.tlv_off + whole.tlv_len == (size_t)rc);
        if (whole.version == 1)
            FUZZ_CHECK(rc <= WSG_PROXY_V1_MAX && buf[rc - 2] == '\r' && buf[rc - 1] == '\n');
        if (wsg_proxy_has_addr(&whole) && ((size_t)rc == n || (opt & 2)))
            reencode(&whole);
    }
    free(buf);
    return 0;
}
