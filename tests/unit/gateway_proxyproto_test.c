/*
 * gateway_proxyproto_test.c - unit tests of gateway/proxyproto.c, the PROXY protocol v1/v2 parser:
 * every rule of HAProxy's doc/proxy-protocol.txt with a passing and a failing case.
 *
 * Every input is fed whole (ending right at a PROT_NONE guard page, so any over-read crashes), as
 * every prefix, one byte more each time (each one at the guard: PARTIAL until complete, and for a
 * bad input PARTIAL until the first byte that breaks a rule, INVALID from then on), and in seeded
 * random cuts. Valid headers are also followed by the client's own bytes, which must be left alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include "gateway/proxyproto.h"

/* ---- Guard page ---- */

struct guard {
    uint8_t *map;
    size_t maplen;
    uint8_t *end;
};

static void guard_init(struct guard *g, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (len + page - 1) / page * page;
    if (data == 0)
        data = page;
    g->maplen = data + page;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect(g->map + data, page, PROT_NONE), 0);
    g->end = g->map + data;
}

static const uint8_t *guard_place(struct guard *g, const uint8_t *src, size_t len)
{
    memcpy(g->end - len, src, len);
    return g->end - len;
}

static void guard_free(struct guard *g)
{
    munmap(g->map, g->maplen);
}

/* ---- Feeding ---- */

static const uint8_t client_hello_start[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01,
                                             0x00, 0x01, 0xfc, 0x03, 0x03};

/*
 * A valid header of hlen bytes: whole (alone and followed by the client's first TLS bytes) it
 * answers hlen; every prefix shorter answers PARTIAL; every random cut agrees. *out is the result
 * of the whole parse.
 */
static void check_ok(const uint8_t *in, size_t hlen, struct wsg_proxy_hdr *out)
{
    struct guard g;
    const char *why;
    struct wsg_proxy_hdr h;
    uint8_t with_tail[WSG_PROXY_MAX_HEADER + sizeof(client_hello_start)];

    assert_true(hlen <= WSG_PROXY_MAX_HEADER);
    guard_init(&g, sizeof(with_tail));
    int rc = wsg_proxy_parse(guard_place(&g, in, hlen), hlen, out, &why);
    if (rc != (int)hlen)
        fail_msg("whole: rc %d (%s), expected %zu", rc, why ? why : "-", hlen);
    memcpy(with_tail, in, hlen);
    memcpy(with_tail + hlen, client_hello_start, sizeof(client_hello_start));
    size_t tlen = hlen + sizeof(client_hello_start);
    rc = wsg_proxy_parse(guard_place(&g, with_tail, tlen), tlen, &h, &why);
    assert_int_equal(rc, (int)hlen);
    assert_memory_equal(&h, out, sizeof(h));
    for (size_t k = 0; k < hlen; k++) {
        rc = wsg_proxy_parse(guard_place(&g, in, k), k, &h, &why);
        if (rc != WSG_PARSE_PARTIAL)
            fail_msg("prefix %zu of %zu: rc %d (%s), expected PARTIAL", k, hlen, rc, why ? why : "-");
    }
    for (unsigned seed = 1; seed <= 8; seed++) {
        srand(seed);
        size_t pos = 0;
        while (pos < tlen) {
            pos += 1 + (size_t)rand() % 23;
            if (pos > tlen)
                pos = tlen;
            rc = wsg_proxy_parse(guard_place(&g, with_tail, pos), pos, &h, &why);
            assert_int_equal(rc, pos < hlen ? WSG_PARSE_PARTIAL : (int)hlen);
        }
    }
    guard_free(&g);
}

/*
 * An invalid input of len bytes: INVALID whole, with a reason containing want_why; PARTIAL for
 * every prefix shorter than first_bad and INVALID for every prefix from first_bad on (the parser
 * refuses as soon as the bytes allow, and never changes its mind).
 */
static void check_bad(const uint8_t *in, size_t len, size_t first_bad, const char *want_why)
{
    struct guard g;
    const char *why;
    struct wsg_proxy_hdr h;

    assert_true(first_bad >= 1 && first_bad <= len);
    guard_init(&g, len);
    int rc = wsg_proxy_parse(guard_place(&g, in, len), len, &h, &why);
    if (rc != WSG_PARSE_INVALID)
        fail_msg("whole: rc %d, expected INVALID (%s)", rc, want_why);
    assert_non_null(why);
    if (strstr(why, want_why) == NULL)
        fail_msg("why \"%s\", expected \"%s\"", why, want_why);
    for (size_t k = 0; k <= len; k++) {
        rc = wsg_proxy_parse(guard_place(&g, in, k), k, &h, &why);
        int want = k < first_bad ? WSG_PARSE_PARTIAL : WSG_PARSE_INVALID;
        if (rc != want)
            fail_msg("prefix %zu of %zu: rc %d (%s), expected %d (first bad %zu)", k, len, rc,
                     why ? why : "-", want, first_bad);
        if (rc == WSG_PARSE_INVALID)
            assert_non_null(why);
    }
    for (unsigned seed = 1; seed <= 4; seed++) {
        srand(seed);
        size_t pos = 0;
        while (pos < len) {
            pos += 1 + (size_t)rand() % 23;
            if (pos > len)
                pos = len;
            rc = wsg_proxy_parse(guard_place(&g, in, pos), pos, &h, &why);
            assert_int_equal(rc, pos < first_bad ? WSG_PARSE_PARTIAL : WSG_PARSE_INVALID);
        }
    }
    guard_free(&g);
}

static void v1_ok(const char *line, struct wsg_proxy_hdr *h)
{
    check_ok((const uint8_t *)line, strlen(line), h);
    assert_int_equal(h->version, 1);
}

static void v1_bad(const char *line, size_t first_bad, const char *want_why)
{
    check_bad((const uint8_t *)line, strlen(line), first_bad ? first_bad : strlen(line), want_why);
}

static void check_in4(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    char txt[INET_ADDRSTRLEN];
    assert_int_equal(s->sin_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &s->sin_addr, txt, sizeof(txt)));
    assert_string_equal(txt, ip);
    assert_int_equal(ntohs(s->sin_port), port);
}

static void check_in6(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    char txt[INET6_ADDRSTRLEN];
    assert_int_equal(s->sin6_family, AF_INET6);
    assert_non_null(inet_ntop(AF_INET6, &s->sin6_addr, txt, sizeof(txt)));
    assert_string_equal(txt, ip);
    assert_int_equal(ntohs(s->sin6_port), port);
}

/* ---- v2 builder ---- */

struct v2b {
    uint8_t b[4096];
    size_t n;
};

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Fixed part; the length field is set by v2_end from what was appended. */
static void v2_start(struct v2b *v, uint8_t ver_cmd, uint8_t fam)
{
    memcpy(v->b, sig, 12);
    v->b[12] = ver_cmd;
    v->b[13] = fam;
    v->n = 16;
}

static void v2_put(struct v2b *v, const void *p, size_t n)
{
    assert_true(v->n + n <= sizeof(v->b));
    memcpy(v->b + v->n, p, n);
    v->n += n;
}

static void v2_tlv(struct v2b *v, uint8_t type, const void *val, size_t n)
{
    uint8_t t[3] = {type, (uint8_t)(n >> 8), (uint8_t)n};
    v2_put(v, t, 3);
    if (n)
        v2_put(v, val, n);
}

static void v2_end(struct v2b *v)
{
    size_t alen = v->n - 16;
    v->b[14] = (uint8_t)(alen >> 8);
    v->b[15] = (uint8_t)alen;
}

static void v2_inet4(struct v2b *v, const char *src, const char *dst, uint16_t sp, uint16_t dp)
{
    struct in_addr a;
    assert_int_equal(inet_pton(AF_INET, src, &a), 1);
    v2_put(v, &a, 4);
    assert_int_equal(inet_pton(AF_INET, dst, &a), 1);
    v2_put(v, &a, 4);
    uint16_t p = htons(sp);
    v2_put(v, &p, 2);
    p = htons(dp);
    v2_put(v, &p, 2);
}

static void v2_inet6(struct v2b *v, const char *src, const char *dst, uint16_t sp, uint16_t dp)
{
    struct in6_addr a;
    assert_int_equal(inet_pton(AF_INET6, src, &a), 1);
    v2_put(v, &a, 16);
    assert_int_equal(inet_pton(AF_INET6, dst, &a), 1);
    v2_put(v, &a, 16);
    uint16_t p = htons(sp);
    v2_put(v, &p, 2);
    p = htons(dp);
    v2_put(v, &p, 2);
}

/* Fills in the CRC32C TLV value at value offset voff, over the finished header. */
static void v2_fix_crc(struct v2b *v, size_t voff)
{
    memset(v->b + voff, 0, 4);
    uint32_t c = wsg_proxy_crc32c(v->b, v->n);
    v->b[voff] = (uint8_t)(c >> 24);
    v->b[voff + 1] = (uint8_t)(c >> 16);
    v->b[voff + 2] = (uint8_t)(c >> 8);
    v->b[voff + 3] = (uint8_t)c;
}

/* ---- v1 ---- */

static void test_v1_tcp4(void **state)
{
    (void)state;
    struct wsg_proxy_hdr h;
    v1_ok("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &h);
    assert_int_equal(h.command, WSG_PROXY_PROXY);
    assert_int_equal(h.family, AF_INET);
    assert_int_equal(h.transport, SOCK_STREAM);
    assert_true(wsg_proxy_has_addr(&h));
    check_in4(&h.src, "192.168.0.1", 56324);
    check_in4(&h.dst, "192.168.0.11", 443);
    /* the longest TCP4 line (56 bytes), zeros */
    v1_ok("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", &h);
    check_in4(&h.src, "255.255.255.255", 65535);
    v1_ok("PROXY TCP4 0.0.0.0 10.0.0.0 0 0\r\n", &h);
    check_in4(&h.src, "0.0.0.0", 0);
    check_in4(&h.dst, "10.0.0.0", 0);
}

static void test_v1_tcp6(void **state)
{
    (void)state;
    struct wsg_proxy_hdr h;
    v1_ok("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n", &h);
    assert_int_equal(h.family, AF_INET6);
    assert_true(wsg_proxy_has_addr(&h));
    check_in6(&h.src, "2001:db8::1", 1);
    check_in6(&h.dst, "::1", 65535);
    /* the longest TCP6 line the spec names (104 bytes), upper case */
    const char *longest = "PROXY TCP6 FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(longest), 104);
    v1_ok(longest, &h);
    check_in6(&h.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
}

static void test_v1_unknown(void **state)
{
    (void)state;
    struct wsg_proxy_hdr h;
    v1_ok("PROXY UNKNOWN\r\n", &h);
    assert_int_equal(h.command, WSG_PROXY_PROXY);
    assert_int_equal(h.family, AF_UNSPEC);
    assert_false(wsg_proxy_has_addr(&h));
    /* "the receiver must ignore anything presented before the CRLF": the 107-byte worst case */
    const char *worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(worst), WSG_PROXY_V1_MAX);
    v1_ok(worst, &h);
    assert_int_equal(h.family, AF_UNSPEC);
    v1_ok("PROXY UNKNOWN garbage \x01 here\r\n", &h);
}

static void test_v1_length_cap(void **state)
{
    (void)state;
    char line[160];
    /* 108 bytes: the CR at index 106 comes too late */
    memset(line, 0, sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'a', 106 - 14);
    memcpy(line + 106, "\r\n", 2);
    assert_int_equal(strlen(line), 108);
    v1_bad(line, 107, "no CRLF within 107 bytes");
    /* no CRLF at all: refused at 107 bytes */
    memset(line + 14, 'a', 140 - 14);
    line[140] = '\0';
    v1_bad(line, 107, "no CRLF within 107 bytes");
}

static void test_v1_bad(void **state)
{
    (void)state;
    /* refused on the first byte that cannot belong to a header */
    v1_bad("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 1, "no PROXY protocol header");
    v1_bad("PROXY-TCP4\r\n", 6, "does not start with");
    v1_bad("PROXYTCP4\r\n", 6, "does not start with");
    v1_bad("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1, "no PROXY protocol header");
    /* line endings */
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 0, "LF without CR");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n", 32, "CR without LF");
    v1_bad("PROXY UNKNOWN\n\r\n", 14, "LF without CR");
    /* protocol */
    v1_bad("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 0, "not TCP4, TCP6 or UNKNOWN");
    v1_bad("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 0, "not TCP4, TCP6 or UNKNOWN");
    v1_bad("PROXY UNKNOWNX\r\n", 0, "not TCP4, TCP6 or UNKNOWN");
    v1_bad("PROXY \r\n", 0, "not TCP4, TCP6 or UNKNOWN");
    v1_bad("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, "not TCP4, TCP6 or UNKNOWN");
    v1_bad("PROXY TCP4\r\n", 0, "addresses missing");
    /* fields and spaces */
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 0, "4 fields");
    v1_bad("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 0, "4 fields");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 0, "4 fields");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 0, "4 fields");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", 0, "4 fields");
    /* ports: decimal, no leading zero, at most 65535 */
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 0, "bad port");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", 0, "bad port");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", 0, "bad port");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", 0, "bad port");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n", 0, "bad port");
    /* IPv4: four octets 0-255, no leading zero, single dots */
    v1_bad("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 0, "bad IPv4");
    v1_bad("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", 0, "bad IPv4");
    v1_bad("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 0, "bad IPv4");
    v1_bad("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 0, "bad IPv4");
    v1_bad("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", 0, "bad IPv4");
    v1_bad("PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", 0, "bad IPv4");
    v1_bad("PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n", 0, "bad IPv4");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.a 1 2\r\n", 0, "bad IPv4");
    /* the family named must match the addresses */
    v1_bad("PROXY TCP4 ::1 ::1 1 2\r\n", 0, "bad IPv4");
    v1_bad("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", 0, "bad IPv6");
    /* IPv6: hex groups, one "::" at most, 128 bits, no dotted tail, no zone */
    v1_bad("PROXY TCP6 1::2::3 ::1 1 2\r\n", 0, "bad IPv6");
    v1_bad("PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n", 0, "bad IPv6");
    v1_bad("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 0, "bad IPv6");
    v1_bad("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", 0, "bad IPv6");
    v1_bad("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 0, "bad IPv6");
    v1_bad("PROXY TCP6 12345::1 ::1 1 2\r\n", 0, "bad IPv6");
    v1_bad("PROXY TCP6 g::1 ::1 1 2\r\n", 0, "bad IPv6");
    v1_bad("PROXY TCP6 : ::1 1 2\r\n", 0, "bad IPv6");
    /* a NUL inside the line is just a bad byte */
    static const char nul[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
    check_bad((const uint8_t *)nul, sizeof(nul) - 1, sizeof(nul) - 1, "bad IPv4");
}

/* ---- v2 ---- */

static void test_v2_tcp4(void **state)
{
    (void)state;
    struct v2b v;
    struct wsg_proxy_hdr h;
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "203.0.113.7", "10.0.0.1", 51234, 443);
    v2_end(&v);
    assert_int_equal(v.n, 28);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.command, WSG_PROXY_PROXY);
    assert_int_equal(h.family, AF_INET);
    assert_int_equal(h.transport, SOCK_STREAM);
    assert_true(wsg_proxy_has_addr(&h));
    check_in4(&h.src, "203.0.113.7", 51234);
    check_in4(&h.dst, "10.0.0.1", 443);
    assert_int_equal(h.tlv_len, 0);
    /* UDP over IPv4 is read the same way */
    v2_start(&v, 0x21, 0x12);
    v2_inet4(&v, "198.51.100.1", "10.0.0.1", 1, 2);
    v2_end(&v);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.transport, SOCK_DGRAM);
    check_in4(&h.src, "198.51.100.1", 1);
}

static void test_v2_tcp6(void **state)
{
    (void)state;
    struct v2b v;
    struct wsg_proxy_hdr h;
    v2_start(&v, 0x21, 0x21);
    v2_inet6(&v, "2001:db8::42", "2001:db8::1", 40000, 8443);
    v2_end(&v);
    assert_int_equal(v.n, 52);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.family, AF_INET6);
    check_in6(&h.src, "2001:db8::42", 40000);
    check_in6(&h.dst, "2001:db8::1", 8443);
    /* an IPv4-mapped client stays AF_INET6 here; the per-IP table folds it to IPv4 itself */
    v2_start(&v, 0x21, 0x21);
    v2_inet6(&v, "::ffff:192.0.2.9", "::1", 5, 6);
    v2_end(&v);
    check_ok(v.b, v.n, &h);
    check_in6(&h.src, "::ffff:192.0.2.9", 5);
}

static void test_v2_unix(void **state)
{
    (void)state;
    struct v2b v;
    struct wsg_proxy_hdr h;
    uint8_t path[108];
    v2_start(&v, 0x21, 0x31);
    memset(path, 0, sizeof(path));
    strcpy((char *)path, "/run/haproxy/client.sock");
    v2_put(&v, path, 108);
    memset(path, 'x', sizeof(path)); /* a full 108-byte path has no NUL */
    v2_put(&v, path, 108);
    v2_end(&v);
    assert_int_equal(v.n, 16 + 216);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.family, AF_UNIX);
    assert_int_equal(h.transport, SOCK_STREAM);
    assert_false(wsg_proxy_has_addr(&h)); /* the socket's own address stays the client's */
    const struct sockaddr_un *s = (const struct sockaddr_un *)&h.src, *d = (const struct sockaddr_un *)&h.dst;
    assert_int_equal(s->sun_family, AF_UNIX);
    assert_string_equal(s->sun_path, "/run/haproxy/client.sock");
    assert_memory_equal(d->sun_path, path, 108);
    /* too short for two paths */
    uint8_t two[216] = {0};
    v2_start(&v, 0x21, 0x31);
    v2_put(&v, two, 215);
    v2_end(&v);
    check_bad(v.b, v.n, 16, "shorter than its family");
}

static void test_v2_local(void **state)
{
    (void)state;
    struct v2b v;
    struct wsg_proxy_hdr h;
    /* HAProxy's health check: LOCAL, UNSPEC, no address */
    v2_start(&v, 0x20, 0x00);
    v2_end(&v);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.command, WSG_PROXY_LOCAL);
    assert_int_equal(h.family, AF_UNSPEC);
    assert_false(wsg_proxy_has_addr(&h));
    /* LOCAL with an address block: skipped whole ("must not assume zero") and ignored */
    v2_start(&v, 0x20, 0x11);
    v2_inet4(&v, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&v, 0x04, "pad", 3);
    v2_end(&v);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.command, WSG_PROXY_LOCAL);
    assert_int_equal(h.family, AF_UNSPEC);
    assert_false(wsg_proxy_has_addr(&h));
    /* LOCAL shorter than the family it names: nothing is read from it, accepted */
    v2_start(&v, 0x20, 0x21);
    v2_put(&v, "abc", 3);
    v2_end(&v);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.command, WSG_PROXY_LOCAL);
    /* PROXY over AF_UNSPEC: the receiver ignores the block */
    v2_start(&v, 0x21, 0x00);
    v2_put(&v, "whatever", 8);
    v2_end(&v);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.command, WSG_PROXY_PROXY);
    assert_int_equal(h.family, AF_UNSPEC);
    assert_false(wsg_proxy_has_addr(&h));
}

static void test_v2_tlvs(void **state)
{
    (void)state;
    struct v2b v;
    struct wsg_proxy_hdr h;
    /* what AWS NLB and HAProxy send: ALPN, AUTHORITY, NOOP, UNIQUE_ID, SSL with sub-TLVs, custom */
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "192.0.2.1", "10.0.0.1", 1000, 443);
    v2_tlv(&v, 0x01, "http/1.1", 8);
    v2_tlv(&v, 0x02, "example.com", 11);
    v2_tlv(&v, 0x04, NULL, 0);
    uint8_t id[128];
    memset(id, 7, sizeof(id));
    v2_tlv(&v, 0x05, id, sizeof(id));
    v2_tlv(&v, 0x20, "\x01\x00\x00\x00\x00\x21\x00\x07TLSv1.3", 15);
    v2_tlv(&v, 0xEA, "\x01vpce-0123456789abcdef", 22);
    v2_end(&v);
    check_ok(v.b, v.n, &h);
    check_in4(&h.src, "192.0.2.1", 1000);
    assert_int_equal(h.tlv_off, 28);
    assert_int_equal(h.tlv_len, v.n - 28);
    assert_int_equal(v.b[h.tlv_off], 0x01);

    /* UNIQUE_ID over 128 bytes */
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "192.0.2.1", "10.0.0.1", 1000, 443);
    uint8_t big[129];
    memset(big, 1, sizeof(big));
    v2_tlv(&v, 0x05, big, sizeof(big));
    v2_end(&v);
    check_bad(v.b, v.n, v.n, "UNIQUE_ID");

    /* a TLV whose length runs past the header */
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "192.0.2.1", "10.0.0.1", 1000, 443);
    v2_put(&v,
           "\x02\x00\x09"
           "abcdefgh",
           11);
    v2_end(&v);
    check_bad(v.b, v.n, v.n, "TLV longer than the header");

    /* 1 or 2 bytes left after the last TLV: not even a TLV header */
    for (size_t extra = 1; extra <= 2; extra++) {
        v2_start(&v, 0x21, 0x11);
        v2_inet4(&v, "192.0.2.1", "10.0.0.1", 1000, 443);
        v2_tlv(&v, 0x04, "x", 1);
        v2_put(&v, "\x04\x00", extra);
        v2_end(&v);
        check_bad(v.b, v.n, v.n, "truncated TLV");
    }
}

static void test_v2_tlv_cap(void **state)
{
    (void)state;
    struct v2b v;
    struct wsg_proxy_hdr h;
    static uint8_t pad[2048];
    /* exactly WSG_PROXY_MAX_TLV bytes of TLVs after an IPv4 block: accepted */
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "192.0.2.1", "10.0.0.1", 1, 2);
    v2_tlv(&v, 0x04, pad, WSG_PROXY_MAX_TLV - 3);
    v2_end(&v);
    check_ok(v.b, v.n, &h);
    assert_int_equal(h.tlv_len, WSG_PROXY_MAX_TLV);
    /* one byte more: refused as soon as the 16 fixed bytes are in, never waited for */
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "192.0.2.1", "10.0.0.1", 1, 2);
    v2_tlv(&v, 0x04, pad, WSG_PROXY_MAX_TLV - 2);
    v2_end(&v);
    check_bad(v.b, v.n, 16, "TLV cap");
    /* the largest header there is: AF_UNIX + the cap */
    v2_start(&v, 0x21, 0x31);
    v2_put(&v, pad, 216);
    v2_tlv(&v, 0x04, pad, WSG_PROXY_MAX_TLV - 3);
    v2_end(&v);
    assert_int_equal(v.n, WSG_PROXY_MAX_HEADER);
    check_ok(v.b, v.n, &h);
    /* a length field of 65535 */
    uint8_t hdr[16];
    memcpy(hdr, sig, 12);
    memcpy(hdr + 12, "\x21\x11\xff\xff", 4);
    check_bad(hdr, 16, 16, "TLV cap");
    /* LOCAL is capped too */
    memcpy(hdr + 12, "\x20\x00\xff\xff", 4);
    check_bad(hdr, 16, 16, "TLV cap");
}

static void test_v2_crc32c(void **state)
{
    (void)state;
    /* RFC 3720 B.4 / the usual check value */
    assert_int_equal(wsg_proxy_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
    uint8_t zeros[32] = {0};
    assert_int_equal(wsg_proxy_crc32c(zeros, 32), 0x8A9136AAu);

    struct v2b v;
    struct wsg_proxy_hdr h;
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "192.0.2.77", "10.0.0.1", 4242, 443);
    v2_tlv(&v, 0x01, "h2", 2);
    v2_tlv(&v, 0x03, "\0\0\0\0", 4);
    size_t voff = v.n - 4;
    v2_tlv(&v, 0x02, "a.example", 9);
    v2_end(&v);
    v2_fix_crc(&v, voff);
    check_ok(v.b, v.n, &h);
    check_in4(&h.src, "192.0.2.77", 4242);
    /* any flipped bit, in the addresses, the other TLVs or the checksum itself, is caught (except
     * in the CRC32C TLV's own type byte: a header without that TLV is simply not checked) */
    for (size_t i = 16; i < v.n; i++) {
        if (i == voff - 3)
            continue;
        v.b[i] ^= 0x10;
        struct wsg_proxy_hdr hh;
        const char *why;
        if (wsg_proxy_parse(v.b, v.n, &hh, &why) != WSG_PARSE_INVALID)
            fail_msg("flipped byte %zu accepted", i);
        assert_non_null(why);
        v.b[i] ^= 0x10;
    }
    v.b[voff + 3] ^= 1;
    check_bad(v.b, v.n, v.n, "CRC32C mismatch");
    /* a CRC32C TLV that is not 4 bytes */
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "192.0.2.77", "10.0.0.1", 4242, 443);
    v2_tlv(&v, 0x03, "\0\0\0", 3);
    v2_end(&v);
    check_bad(v.b, v.n, v.n, "not 4 bytes");
}

static void test_v2_bad_fixed(void **state)
{
    (void)state;
    struct v2b v;
    v2_start(&v, 0x21, 0x11);
    v2_inet4(&v, "192.0.2.1", "10.0.0.1", 1, 2);
    v2_end(&v);
    /* every signature byte (the first one decides v1 vs v2: a wrong one is "no header") */
    for (size_t i = 0; i < 12; i++) {
        uint8_t b[64];
        memcpy(b, v.b, v.n);
        b[i] ^= 0x40;
        check_bad(b, v.n, i + 1, i == 0 ? "no PROXY protocol header" : "bad signature");
    }
    const struct {
        uint8_t ver_cmd, fam;
        size_t first_bad;
        const char *why;
    } cases[] = {
        {0x11, 0x11, 13, "version is not 2"},        {0x31, 0x11, 13, "version is not 2"},
        {0x01, 0x11, 13, "version is not 2"},        {0x22, 0x11, 13, "neither LOCAL nor PROXY"},
        {0x2F, 0x11, 13, "neither LOCAL nor PROXY"}, {0x21, 0x41, 14, "unknown address family"},
        {0x21, 0xF1, 14, "unknown address family"},  {0x21, 0x13, 14, "unknown address family"},
        {0x20, 0x43, 14, "unknown address family"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t b[64];
        memcpy(b, v.b, v.n);
        b[12] = cases[i].ver_cmd;
        b[13] = cases[i].fam;
        check_bad(b, v.n, cases[i].first_bad, cases[i].why);
    }
    /* address block shorter than the family: refused at 16 bytes */
    v2_start(&v, 0x21, 0x11);
    v2_put(&v, "12345678901", 11);
    v2_end(&v);
    check_bad(v.b, v.n, 16, "shorter than its family");
    v2_start(&v, 0x21, 0x21);
    v2_inet4(&v, "192.0.2.1", "10.0.0.1", 1, 2); /* 12 bytes where IPv6 needs 36 */
    v2_end(&v);
    check_bad(v.b, v.n, 16, "shorter than its family");
}

static void test_not_a_header(void **state)
{
    (void)state;
    struct wsg_proxy_hdr h;
    const char *why;
    /* a client talking TLS straight to a proxy_protocol listener: refused on its first byte */
    check_bad(client_hello_start, sizeof(client_hello_start), 1, "no PROXY protocol header");
    static const uint8_t zero[1] = {0};
    check_bad(zero, 1, 1, "no PROXY protocol header");
    assert_int_equal(wsg_proxy_parse(zero, 0, &h, &why), WSG_PARSE_PARTIAL);
    assert_null(why);
    /* a v1 line answered by a v2 signature start, and the reverse */
    v1_bad("PROXY \r\n\r\n", 8, "not TCP4");
    static const uint8_t mixed[] = "\r\n\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    check_bad(mixed, sizeof(mixed) - 1, 5, "bad signature");
}

/* Random bytes never over-read, never pass the cap, and are monotone (PARTIAL.. then fixed). */
static void test_random(void **state)
{
    (void)state;
    struct guard g;
    static uint8_t in[WSG_PROXY_MAX_HEADER + 64];
    guard_init(&g, sizeof(in));
    srand(1234);
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)rand() % sizeof(in);
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)rand();
        /* half of them start like a header */
        if (iter % 2 && n >= 16) {
            memcpy(in, sig, 12);
            in[12] = 0x20 | (uint8_t)(rand() % 3);
            in[13] = (uint8_t)((rand() % 4) << 4 | (rand() % 3));
            in[14] = 0;
            in[15] = (uint8_t)(rand() % 64);
        } else if (iter % 4 == 0 && n >= 6) {
            memcpy(in, "PROXY ", 6);
        }
        int last = WSG_PARSE_PARTIAL;
        for (size_t k = 0; k <= n; k++) {
            struct wsg_proxy_hdr h;
            const char *why;
            int rc = wsg_proxy_parse(guard_place(&g, in, k), k, &h, &why);
            if (last != WSG_PARSE_PARTIAL) {
                assert_int_equal(rc, last);
                continue;
            }
            assert_true(rc == WSG_PARSE_PARTIAL || rc == WSG_PARSE_INVALID || (rc > 0 && (size_t)rc == k));
            if (rc == WSG_PARSE_PARTIAL)
                assert_true(k < WSG_PROXY_MAX_HEADER);
            if (rc == WSG_PARSE_INVALID)
                assert_non_null(why);
            last = rc;
        }
    }
    guard_free(&g);
}

/* ---- proxy_protocol_from ---- */

static int in_cidr(const char *cidr, const char *ip)
{
    struct wsg_cidr c;
    const char *why = NULL;
    if (wsg_cidr_parse(cidr, &c, &why) != 0)
        fail_msg("%s: %s", cidr, why);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return wsg_cidr_match(&c, (struct sockaddr *)&ss);
}

static void test_cidr(void **state)
{
    (void)state;
    assert_true(in_cidr("any", "203.0.113.9"));
    assert_true(in_cidr("any", "2001:db8::1"));
    assert_true(in_cidr("10.0.0.0/8", "10.255.1.2"));
    assert_false(in_cidr("10.0.0.0/8", "11.0.0.1"));
    assert_true(in_cidr("192.0.2.7", "192.0.2.7"));
    assert_false(in_cidr("192.0.2.7", "192.0.2.8"));
    assert_true(in_cidr("192.0.2.0/25", "192.0.2.127"));
    assert_false(in_cidr("192.0.2.0/25", "192.0.2.128"));
    assert_true(in_cidr("0.0.0.0/0", "198.51.100.1"));
    assert_false(in_cidr("0.0.0.0/0", "2001:db8::1")); /* an IPv4 block holds no IPv6 address */
    /* IPv4-mapped IPv6 peers (a dual-stack listener) count as IPv4 */
    assert_true(in_cidr("127.0.0.0/8", "::ffff:127.0.0.2"));
    assert_true(in_cidr("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in_cidr("2001:db8::/32", "2001:db9::1"));
    assert_true(in_cidr("::1", "::1"));
    assert_false(in_cidr("::1", "127.0.0.1"));
    assert_true(in_cidr("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(in_cidr("2001:db8::/33", "2001:db8:8000::1"));

    struct wsg_cidr c;
    const char *why;
    static const char *const bad[] = {"",
                                      "/8",
                                      "10.0.0.0/",
                                      "10.0.0.0/33",
                                      "10.0.0.0/08",
                                      "10.0.0.1/8",
                                      "2001:db8::/129",
                                      "2001:db8::1/32",
                                      "example.com",
                                      "10.0.0.0/8x",
                                      "10.0.0.0/-1",
                                      "anyone"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (wsg_cidr_parse(bad[i], &c, &why) != -1)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_non_null(why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),      cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),   cmocka_unit_test(test_v1_length_cap),
        cmocka_unit_test(test_v1_bad),       cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6),      cmocka_unit_test(test_v2_unix),
        cmocka_unit_test(test_v2_local),     cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_v2_tlv_cap),   cmocka_unit_test(test_v2_crc32c),
        cmocka_unit_test(test_v2_bad_fixed), cmocka_unit_test(test_not_a_header),
        cmocka_unit_test(test_random),       cmocka_unit_test(test_cidr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
