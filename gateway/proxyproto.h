/*
 * proxyproto.h - the PROXY protocol header an L4 balancer (HAProxy send-proxy / send-proxy-v2, AWS
 * NLB, ...) puts in front of a connection to tell who the client is: version 1 (one text line) and
 * version 2 (binary), per HAProxy's doc/proxy-protocol.txt.
 *
 * One pure function over a byte buffer: no socket, no clock, no memory of its own, so it is
 * unit-tested and fuzzed as is. Stateless like the HTTP parsers (picohttpparser contract): the
 * caller appends what arrived and calls again from the start.
 *
 * Bounded: a version 1 line is at most 107 bytes with its CRLF; a version 2 header is 16 bytes plus
 * the length it announces, which may cover the address block of its family plus at most
 * WSG_PROXY_MAX_TLV bytes of TLVs (more is refused as soon as the 16 fixed bytes are in). So an
 * answer never needs more than WSG_PROXY_MAX_HEADER bytes. Bytes that cannot begin a header (a TLS
 * ClientHello sent straight to a proxy_protocol listener, say) are refused at once, without
 * waiting for more.
 */
#ifndef WSG_PROXYPROTO_H
#define WSG_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policies/base/err.h"

#define WSG_PROXY_V1_MAX 107  /* "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n" */
#define WSG_PROXY_V2_FIXED 16 /* signature 12, version+command, family+transport, length 2 */
#define WSG_PROXY_MAX_TLV 1024
/* 16 fixed bytes + two AF_UNIX paths of 108 bytes + the TLV cap */
#define WSG_PROXY_MAX_HEADER (WSG_PROXY_V2_FIXED + 216 + WSG_PROXY_MAX_TLV)

enum wsg_proxy_cmd {
    WSG_PROXY_LOCAL = 0, /* v2 LOCAL (the balancer's own health check): keep the socket's addresses */
    WSG_PROXY_PROXY = 1  /* relayed on behalf of the client described by src/dst */
};

/* What a header said. Version 1 "UNKNOWN" is command PROXY with family AF_UNSPEC. */
struct wsg_proxy_hdr {
    int version; /* 1 or 2 */
    enum wsg_proxy_cmd command;
    int family;                       /* AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX (LOCAL: always AF_UNSPEC) */
    int transport;                    /* 0 (unspecified), SOCK_STREAM or SOCK_DGRAM */
    struct sockaddr_storage src, dst; /* filled for AF_INET, AF_INET6 (with ports) and AF_UNIX */
    size_t tlv_off, tlv_len;          /* v2: where its TLVs are in the caller's buffer (all well formed) */
};

/**
 * Parses the PROXY protocol header at the start of buf (version told by its first bytes).
 * @param buf, len  the bytes received so far on the connection (not NUL-terminated)
 * @param h         filled on success (unspecified otherwise)
 * @param why       on WSG_PARSE_INVALID: static text naming the first rule broken
 * @return the header's length in bytes (what follows is the client's own stream, e.g. its TLS
 *         ClientHello), WSG_PARSE_PARTIAL when every byte so far is a prefix of a valid header
 *         (never once WSG_PROXY_MAX_HEADER bytes are in), or WSG_PARSE_INVALID.
 * @note The caller uses the carried addresses only when command is WSG_PROXY_PROXY and family is
 *       AF_INET or AF_INET6 (wsg_proxy_has_addr); LOCAL, UNKNOWN, AF_UNSPEC and AF_UNIX mean "keep
 *       the socket's own addresses" (spec §2.1, §2.2). A v2 CRC32C TLV, when present, must match.
 */
int wsg_proxy_parse(const uint8_t *buf, size_t len, struct wsg_proxy_hdr *h, const char **why);

/* 1 when h carries a client address to use instead of the socket's peer. */
int wsg_proxy_has_addr(const struct wsg_proxy_hdr *h);

/* CRC32C (Castagnoli, RFC 4960 appendix B) of n bytes, as the v2 CRC32C TLV carries it. */
uint32_t wsg_proxy_crc32c(const uint8_t *p, size_t n);

/* An address block allowed to send PROXY headers (proxy_protocol_from). IPv4 is kept as
 * IPv4-mapped IPv6 so that one compare serves both families. */
struct wsg_cidr {
    uint8_t addr[16]; /* network order, host bits cleared */
    unsigned bits;    /* prefix length over the 16 bytes (an IPv4 /24 is 96 + 24) */
};

/**
 * Parses "10.0.0.0/8", "192.0.2.7" (a /32), "2001:db8::/32", "::1" (a /128) or "any" (0.0.0.0/0
 * and ::/0 both). Host bits set below the prefix are refused (a likely typo).
 * @return 0, or -1 with *why (static text).
 */
int wsg_cidr_parse(const char *s, struct wsg_cidr *out, const char **why);
/* 1 when the address (AF_INET or AF_INET6; IPv4-mapped IPv6 counts as IPv4) is inside c. */
int wsg_cidr_match(const struct wsg_cidr *c, const struct sockaddr *sa);

#endif
