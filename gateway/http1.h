/*
 * http1.h - strict HTTP/1.1 head parsers (request and response), body framing scanners and the
 * head rewriters used when proxying.
 *
 * Parsers keep the picohttpparser contract: stateless over a contiguous buffer, pointers into the
 * caller's buffer, >0 = bytes of the head consumed (through the blank line), WSG_PARSE_PARTIAL,
 * WSG_PARSE_INVALID with *why (static text) and *status (the HTTP status to answer).
 * Strictness (DESIGN §5): CRLF only (bare LF rejected), no obs-fold, no whitespace before the
 * colon, token characters in names, no CTLs in values, reject CL+TE, duplicate or invalid
 * Content-Length, duplicate Host, missing Host in HTTP/1.1, transfer-codings other than a final
 * "chunked" (501), request-target over max_target (414), head over max_head (431).
 */
#ifndef WSG_HTTP1_H
#define WSG_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#include "policies/base/buf-t.h"
#include "policies/base/err.h"

#define WSG_HTTP_MAX_HEADERS 100

struct wsg_http_header {
    const char *name, *value; /* value has leading/trailing OWS trimmed */
    size_t name_len, value_len;
};

struct wsg_http_limits {
    size_t max_head;    /* bytes of the whole head incl. request line; over: 431 */
    size_t max_target;  /* bytes of the request-target; over: 414 */
    size_t max_headers; /* header count (<= WSG_HTTP_MAX_HEADERS); over: 431 */
};

/* Body framing of a message, derived from the head (RFC 9112 §6). */
enum wsg_http_body {
    WSG_BODY_NONE,    /* no body */
    WSG_BODY_LENGTH,  /* content_length bytes */
    WSG_BODY_CHUNKED, /* chunked, scanned with wsg_http_chunked_scan */
    WSG_BODY_EOF      /* responses only: until the upstream closes */
};

struct wsg_http_req {
    const char *method, *target;
    size_t method_len, target_len;
    int minor_version; /* 0 or 1 */
    struct wsg_http_header headers[WSG_HTTP_MAX_HEADERS];
    size_t num_headers;
    /* derived */
    const struct wsg_http_header *host; /* NULL when absent (only allowed for HTTP/1.0) */
    enum wsg_http_body body;
    uint64_t content_length;
    unsigned keep_alive : 1; /* client wants the connection kept (1.1 default, Connection: close) */
    unsigned upgrade_ws : 1; /* GET + Connection: upgrade + Upgrade: websocket */
    unsigned expect_continue : 1;
    /* WebSocket fields (valid when upgrade_ws) */
    const struct wsg_http_header *ws_key, *ws_version;
};

struct wsg_http_resp {
    int status, minor_version;
    const char *reason;
    size_t reason_len;
    struct wsg_http_header headers[WSG_HTTP_MAX_HEADERS];
    size_t num_headers;
    /* derived; for_head_request / 1xx / 204 / 304 mean WSG_BODY_NONE */
    enum wsg_http_body body;
    uint64_t content_length;
    unsigned keep_alive : 1;                 /* upstream keeps the connection */
    const struct wsg_http_header *ws_accept; /* Sec-WebSocket-Accept when status == 101 */
    const struct wsg_http_header *upgrade;   /* Upgrade header, if any */
    unsigned conn_upgrade : 1;               /* Connection lists "upgrade" */
    /* set by the caller, not the parser: header lines ("Name: value\r\n"...) that
     * wsg_http_write_response adds (the affinity cookie); NULL for none */
    const char *extra_headers;
    /* set by the caller: a 101 keeps its Sec-WebSocket-Extensions (permessage-deflate negotiated
     * and checked); otherwise the header is dropped from a 101 */
    unsigned pass_extensions : 1;
};

int wsg_http_parse_request(const char *buf, size_t len, const struct wsg_http_limits *lim,
                           struct wsg_http_req *req, const char **why, int *status);
/* is_head: the request was HEAD (response has no body). */
int wsg_http_parse_response(const char *buf, size_t len, const struct wsg_http_limits *lim, int is_head,
                            struct wsg_http_resp *resp, const char **why);

/* Case-insensitive lookup of the first header with this name; NULL if none. */
const struct wsg_http_header *wsg_http_find(const struct wsg_http_header *h, size_t n, const char *name);

/* Streaming scanner for a chunked body forwarded as-is. Zero it to start. */
struct wsg_http_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk data */
    unsigned size_digits, line_len;
    unsigned done : 1; /* the last-chunk and trailers have been seen */
};
/**
 * Scans len bytes of chunked body. Returns how many bytes belong to the body (<= len; fewer when
 * the body ended inside this span: bytes after it are the next message), or WSG_PARSE_INVALID
 * with *why (bad chunk size, overflow, missing CRLF, bare LF, oversized chunk-ext or trailers).
 */
long wsg_http_chunked_scan(struct wsg_http_chunked *ch, const uint8_t *p, size_t len, const char **why);

/* What the gateway adds when forwarding a request. */
struct wsg_http_fwd {
    const char *client_ip; /* textual address of the client */
    const char *proto;     /* "https" */
    int ws_key_replace;    /* unused (reserved) */
    /* When ws_protocols is not NULL (an upgrade on a route with a subprotocol allowlist), every
     * Sec-WebSocket-Protocol line is replaced by this one value (dropped when it is empty), so
     * the upstream can only choose a subprotocol the route allows. */
    const char *ws_protocols;
    size_t ws_protocols_len;
    /* When ws_extensions is not NULL (deflate on), every Sec-WebSocket-Extensions line is replaced
     * by this one value (dropped when it is empty): the filtered permessage-deflate offer. */
    const char *ws_extensions;
    size_t ws_extensions_len;
};

/**
 * Writes the request head for the upstream into out: same method/target, HTTP/1.1, every header
 * except the hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade and
 * any named in Connection; Transfer-Encoding kept when chunked since the body passes through),
 * plus "Connection: keep-alive" (or "Upgrade: websocket" + "Connection: Upgrade" for an upgrade,
 * with permessage-deflate removed from Sec-WebSocket-Extensions), X-Forwarded-For appended to
 * any existing value, X-Forwarded-Proto, X-Forwarded-Host (the Host), X-Real-IP, Forwarded
 * (existing value + ", for=...;host=...;proto=https", IPv6 quoted in brackets). Host is preserved.
 * @return 0, or -1 when out lacks room.
 */
int wsg_http_write_request(const struct wsg_http_req *req, const struct wsg_http_fwd *fwd,
                           struct wsg_buf *out);
/**
 * Writes the response head for the client into out: status line, headers minus hop-by-hop ones
 * (Transfer-Encoding kept when chunked), and "Connection: keep-alive"/"close" per keep_alive.
 * For a 101 it writes "Upgrade: websocket" + "Connection: Upgrade" and drops any
 * Sec-WebSocket-Extensions (we stripped the offer, so none may be accepted).
 * @return 0, or -1 when out lacks room.
 */
int wsg_http_write_response(const struct wsg_http_resp *resp, int keep_alive, struct wsg_buf *out);
/**
 * Writes a complete short error response generated by the gateway: status line, Content-Type
 * text/plain, Content-Length, Connection: close, extra headers if not NULL (each ending in CRLF),
 * and the body "<status> <reason phrase>\n". Returns 0 or -1.
 */
int wsg_http_write_error(int status, const char *extra_headers, struct wsg_buf *out);
const char *wsg_http_reason_phrase(int status);

#endif
