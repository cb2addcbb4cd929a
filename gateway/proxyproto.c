/*
 * proxyproto.c - the PROXY protocol v1/v2 header parser (proxyproto.h), following HAProxy's
 * doc/proxy-protocol.txt section by section.
 *
 * Strict like the HTTP parser: anything that does not match the spec exactly is refused (§2.1:
 * "Any sequence which does not exactly match the protocol must be discarded and cause the
 * receiver to abort the connection"), and refused as early as the bytes allow, so that a client
 * talking TLS straight to a proxy_protocol listener is dropped on its first byte rather than at the
 * handshake timeout. A valid prefix is always PARTIAL; once a prefix is INVALID every longer one is.
 */
#include "gateway/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_prefix[] = "PROXY ";

/* v2 TLV types this parser looks into (spec §2.2.3, §2.2.5) */
#define PP2_TYPE_CRC32C 0x03
#define PP2_TYPE_UNIQUE_ID 0x05
#define PP2_UNIQUE_ID_MAX 128

static int fail(const char **why, const char *text)
{
    *why = text;
    return WSG_PARSE_INVALID;
}

uint32_t wsg_proxy_crc32c(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

int wsg_proxy_has_addr(const struct wsg_proxy_hdr *h)
{
    return h->command == WSG_PROXY_PROXY && (h->family == AF_INET || h->family == AF_INET6);
}

/* ---- Version 1 (§2.1) ---- */

/* Decimal 0..max, no leading zero (octal confusion), at least one digit, whole token. */
static int v1_number(const char *s, size_t n, unsigned max, unsigned *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* Exactly four decimal octets separated by single dots. */
static int v1_ipv4(const char *s, size_t n, struct in_addr *a)
{
    uint8_t o[4];
    size_t start = 0;
    int k = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.')
            continue;
        unsigned v;
        if (k == 4 || (k < 3 && i == n) || v1_number(s + start, i - start, 255, &v) != 0)
            return -1;
        o[k++] = (uint8_t)v;
        start = i + 1;
    }
    if (k != 4)
        return -1;
    memcpy(&a->s_addr, o, 4);
    return 0;
}

/* Hex groups and colons only (no embedded dotted quad, no zone), decoded by inet_pton. */
static int v1_ipv6(const char *s, size_t n, struct in6_addr *a)
{
    char tmp[INET6_ADDRSTRLEN];
    if (n < 2 || n >= sizeof(tmp))
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':'))
            return -1;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, a) == 1 ? 0 : -1;
}

/* Splits the next token ending at a single space (or at the end when last). */
static int v1_token(const char **p, const char *end, int last, const char **tok, size_t *tlen)
{
    const char *sp = last ? end : memchr(*p, ' ', (size_t)(end - *p));
    if (sp == NULL || sp == *p)
        return -1;
    *tok = *p;
    *tlen = (size_t)(sp - *p);
    *p = last ? end : sp + 1;
    return 0;
}

/* line: the bytes after "PROXY " up to (not including) the CRLF. */
static int v1_line(const char *p, const char *end, struct wsg_proxy_hdr *h, const char **why)
{
    memset(h, 0, sizeof(*h));
    h->version = 1;
    h->command = WSG_PROXY_PROXY;
    const char *proto;
    size_t plen;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    proto = p;
    plen = (size_t)((sp ? sp : end) - p);
    if (plen == 7 && memcmp(proto, "UNKNOWN", 7) == 0) {
        /* "the receiver must ignore anything presented before the CRLF" */
        h->family = AF_UNSPEC;
        return 0;
    }
    int fam;
    if (plen == 4 && memcmp(proto, "TCP4", 4) == 0)
        fam = AF_INET;
    else if (plen == 4 && memcmp(proto, "TCP6", 4) == 0)
        fam = AF_INET6;
    else
        return fail(why, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
    if (sp == NULL)
        return fail(why, "PROXY v1: addresses missing");
    p = sp + 1;
    const char *tok[4];
    size_t tlen[4];
    for (int i = 0; i < 4; i++)
        if (v1_token(&p, end, i == 3, &tok[i], &tlen[i]) != 0)
            return fail(why, "PROXY v1: expected 4 fields separated by single spaces");
    if (memchr(tok[3], ' ', tlen[3]) != NULL)
        return fail(why, "PROXY v1: expected 4 fields separated by single spaces");
    unsigned sport, dport;
    if (v1_number(tok[2], tlen[2], 65535, &sport) != 0 || v1_number(tok[3], tlen[3], 65535, &dport) != 0)
        return fail(why, "PROXY v1: bad port");
    h->family = fam;
    h->transport = SOCK_STREAM;
    if (fam == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&h->src, *d = (struct sockaddr_in *)&h->dst;
        if (v1_ipv4(tok[0], tlen[0], &s->sin_addr) != 0 || v1_ipv4(tok[1], tlen[1], &d->sin_addr) != 0)
            return fail(why, "PROXY v1: bad IPv4 address");
        s->sin_family = d->sin_family = AF_INET;
        s->sin_port = htons((uint16_t)sport);
        d->sin_port = htons((uint16_t)dport);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src, *d = (struct sockaddr_in6 *)&h->dst;
        if (v1_ipv6(tok[0], tlen[0], &s->sin6_addr) != 0 || v1_ipv6(tok[1], tlen[1], &d->sin6_addr) != 0)
            return fail(why, "PROXY v1: bad IPv6 address");
        s->sin6_family = d->sin6_family = AF_INET6;
        s->sin6_port = htons((uint16_t)sport);
        d->sin6_port = htons((uint16_t)dport);
    }
    return 0;
}

static int parse_v1(const uint8_t *buf, size_t len, struct wsg_proxy_hdr *h, const char **why)
{
    size_t plen = sizeof(v1_prefix) - 1;
    if (memcmp(buf, v1_prefix, len < plen ? len : plen) != 0)
        return fail(why, "PROXY v1: line does not start with \"PROXY \"");
    /* §2.1: the CRLF must be within the first 107 bytes; a lone CR or LF ends nothing */
    size_t scan = len < WSG_PROXY_V1_MAX ? len : WSG_PROXY_V1_MAX;
    for (size_t i = plen; i < scan; i++) {
        if (buf[i] == '\n')
            return fail(why, "PROXY v1: LF without CR");
        if (buf[i] != '\r')
            continue;
        if (i + 1 >= WSG_PROXY_V1_MAX)
            break;
        if (i + 1 == len)
            return WSG_PARSE_PARTIAL;
        if (buf[i + 1] != '\n')
            return fail(why, "PROXY v1: CR without LF");
        int rc = v1_line((const char *)buf + plen, (const char *)buf + i, h, why);
        return rc == 0 ? (int)(i + 2) : rc;
    }
    if (len >= WSG_PROXY_V1_MAX)
        return fail(why, "PROXY v1: no CRLF within 107 bytes");
    return WSG_PARSE_PARTIAL;
}

/* ---- Version 2 (§2.2) ---- */

static size_t v2_addr_len(uint8_t fam)
{
    switch (fam >> 4) {
    case 1:
        return 12; /* 2 x 4 + 2 x 2 */
    case 2:
        return 36; /* 2 x 16 + 2 x 2 */
    case 3:
        return 216; /* 2 x 108 */
    default:
        return 0;
    }
}

/* Walks the TLVs (§2.2): every one whole, a CRC32C one checked against the whole header. */
static int v2_tlvs(const uint8_t *buf, size_t total, size_t off, const char **why)
{
    while (off < total) {
        if (total - off < 3)
            return fail(why, "PROXY v2: truncated TLV");
        uint8_t type = buf[off];
        size_t vlen = (size_t)buf[off + 1] << 8 | buf[off + 2];
        if (vlen > total - off - 3)
            return fail(why, "PROXY v2: TLV longer than the header");
        if (type == PP2_TYPE_CRC32C) {
            if (vlen != 4)
                return fail(why, "PROXY v2: CRC32C TLV is not 4 bytes");
            /* §2.2.3: the checksum of the whole header with this field zeroed */
            const uint8_t *v = buf + off + 3;
            uint32_t want = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3];
            uint8_t tmp[WSG_PROXY_MAX_HEADER];
            memcpy(tmp, buf, total);
            memset(tmp + off + 3, 0, 4);
            if (wsg_proxy_crc32c(tmp, total) != want)
                return fail(why, "PROXY v2: CRC32C mismatch");
        } else if (type == PP2_TYPE_UNIQUE_ID && vlen > PP2_UNIQUE_ID_MAX) {
            return fail(why, "PROXY v2: UNIQUE_ID TLV over 128 bytes");
        }
        off += 3 + vlen;
    }
    return 0;
}

static int parse_v2(const uint8_t *buf, size_t len, struct wsg_proxy_hdr *h, const char **why)
{
    if (memcmp(buf, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0)
        return fail(why, "PROXY v2: bad signature");
    if (len < 13)
        return WSG_PARSE_PARTIAL;
    /* §2.2: version 2 only; command LOCAL (0) or PROXY (1) */
    if (buf[12] >> 4 != 2)
        return fail(why, "PROXY v2: version is not 2");
    if ((buf[12] & 0x0F) > 1)
        return fail(why, "PROXY v2: command is neither LOCAL nor PROXY");
    if (len < 14)
        return WSG_PARSE_PARTIAL;
    uint8_t fam = buf[13];
    if (fam >> 4 > 3 || (fam & 0x0F) > 2)
        return fail(why, "PROXY v2: unknown address family or transport");
    if (len < WSG_PROXY_V2_FIXED)
        return WSG_PARSE_PARTIAL;
    size_t alen = (size_t)buf[14] << 8 | buf[15];
    size_t need = v2_addr_len(fam);
    int local = (buf[12] & 0x0F) == 0;
    /* LOCAL ignores the block whatever the family says, but the cap holds for it too */
    if (alen > (need > 0 ? need : 216) + WSG_PROXY_MAX_TLV)
        return fail(why, "PROXY v2: header longer than the TLV cap");
    if (!local && alen < need)
        return fail(why, "PROXY v2: address block shorter than its family");
    size_t total = WSG_PROXY_V2_FIXED + alen;
    if (len < total)
        return WSG_PARSE_PARTIAL;

    memset(h, 0, sizeof(*h));
    h->version = 2;
    if (local) {
        /* §2.2: "discard the protocol block including the family which is ignored" */
        h->command = WSG_PROXY_LOCAL;
        h->family = AF_UNSPEC;
        return (int)total;
    }
    h->command = WSG_PROXY_PROXY;
    h->transport = (fam & 0x0F) == 1 ? SOCK_STREAM : (fam & 0x0F) == 2 ? SOCK_DGRAM : 0;
    const uint8_t *a = buf + WSG_PROXY_V2_FIXED;
    switch (fam >> 4) {
    case 1: {
        struct sockaddr_in *s = (struct sockaddr_in *)&h->src, *d = (struct sockaddr_in *)&h->dst;
        h->family = s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2); /* both already in network order */
        memcpy(&d->sin_port, a + 10, 2);
        break;
    }
    case 2: {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src, *d = (struct sockaddr_in6 *)&h->dst;
        h->family = s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        break;
    }
    case 3: {
        struct sockaddr_un *s = (struct sockaddr_un *)&h->src, *d = (struct sockaddr_un *)&h->dst;
        h->family = s->sun_family = d->sun_family = AF_UNIX;
        _Static_assert(sizeof(s->sun_path) == 108, "AF_UNIX path is 108 bytes in PROXY v2");
        memcpy(s->sun_path, a, 108);
        memcpy(d->sun_path, a + 108, 108);
        break;
    }
    default:
        /* AF_UNSPEC: "the receiver should ignore address information", and so cannot tell
         * where TLVs would start: the whole block is skipped */
        h->family = AF_UNSPEC;
        return (int)total;
    }
    size_t off = WSG_PROXY_V2_FIXED + need;
    if (v2_tlvs(buf, total, off, why) != 0)
        return WSG_PARSE_INVALID;
    h->tlv_off = off;
    h->tlv_len = total - off;
    return (int)total;
}

int wsg_proxy_parse(const uint8_t *buf, size_t len, struct wsg_proxy_hdr *h, const char **why)
{
    *why = NULL;
    if (len == 0)
        return WSG_PARSE_PARTIAL;
    /* §2.2 "identifying the protocol version": the first byte tells them apart */
    if (buf[0] == v2_sig[0])
        return parse_v2(buf, len, h, why);
    if (buf[0] == (uint8_t)v1_prefix[0])
        return parse_v1(buf, len, h, why);
    return fail(why, "no PROXY protocol header");
}

/* ---- proxy_protocol_from ---- */

static void to_mapped(const struct in_addr *a4, uint8_t out[16])
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xFF;
    memcpy(out + 12, &a4->s_addr, 4);
}

int wsg_cidr_parse(const char *s, struct wsg_cidr *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(s, "any") == 0)
        return 0; /* ::/0 covers the mapped IPv4 space too */
    char host[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof(host)) {
        *why = "is not an address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32, any)";
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    unsigned max, base;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        to_mapped(&a4, out->addr);
        max = 32;
        base = 96;
    } else if (inet_pton(AF_INET6, host, &a6) == 1) {
        memcpy(out->addr, &a6, 16);
        max = 128;
        base = 0;
    } else {
        *why = "is not an address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32, any)";
        return -1;
    }
    unsigned bits = max;
    if (slash != NULL && v1_number(slash + 1, strlen(slash + 1), max, &bits) != 0) {
        *why = "has a bad prefix length";
        return -1;
    }
    out->bits = base + bits;
    for (unsigned b = out->bits; b < 128; b++)
        if (out->addr[b / 8] & (0x80u >> (b % 8))) {
            *why = "has host bits set below its prefix length";
            return -1;
        }
    return 0;
}

int wsg_cidr_match(const struct wsg_cidr *c, const struct sockaddr *sa)
{
    uint8_t a[16];
    if (sa->sa_family == AF_INET)
        to_mapped(&((const struct sockaddr_in *)(const void *)sa)->sin_addr, a);
    else if (sa->sa_family == AF_INET6)
        memcpy(a, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    else
        return 0;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(a, c->addr, full) != 0)
        return 0;
    return rest == 0 || ((a[full] ^ c->addr[full]) & (uint8_t)(0xFF00u >> rest)) == 0;
}
