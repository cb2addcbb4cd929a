/*
 * http1.c - strict HTTP/1.1 (RFC 9112, RFC 9110) for the gateway: the request and response head
 * parsers (picohttpparser contract), the streaming chunked-body scanner, and the head writers used
 * when proxying (hop-by-hop removal, X-Forwarded-* and Forwarded, WebSocket upgrade headers, the
 * gateway's own error responses).
 *
 * Owns no memory: parsers return pointers into the caller's buffer and re-parse from the start on
 * every call (stateless), the chunked scanner keeps its state in the caller's struct, and writers
 * append to the caller's wsg_buf. No I/O and no clock, so all of it is unit-tested and fuzzed as is.
 *
 * Strictness is deliberate (DESIGN §5): every ambiguity a front end and a back end could resolve
 * differently (bare LF, obs-fold, whitespace before the colon, CL+TE, duplicate Content-Length,
 * unknown transfer-codings) is rejected rather than repaired, which closes request smuggling.
 */
#include "gateway/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frames/ws.h"
#include "policies/base/buf.h"

#define DEFAULT_MAX_HEAD 8192
#define DEFAULT_MAX_TARGET 8192
#define MAX_CONTENT_LENGTH ((uint64_t)1 << 62)
#define MAX_CHUNK_SIZE ((uint64_t)1 << 62)
#define MAX_CHUNK_SIZE_DIGITS 16
#define MAX_CHUNK_EXT 1024 /* bytes of chunk-ext after the size, per chunk line */
#define MAX_TRAILER 8192   /* bytes of the whole trailer section incl. the final CRLF */

/* ---- Character classes (RFC 9110 §5.6.2, §5.5) ---- */

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
 *       / DIGIT / ALPHA */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar / SP / HTAB, obs-text allowed (RFC 9110 §5.5): everything but CTLs other than HTAB. */
static int is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Case-insensitive comparison of a counted string with a NUL-terminated literal. */
static int eq_ci(const char *s, size_t len, const char *lit)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (lit[i] == '\0' || lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
            return 0;
    return lit[i] == '\0';
}

static int same_ci(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int name_is(const struct wsg_http_header *h, const char *lit)
{
    return eq_ci(h->name, h->name_len, lit);
}

/*
 * Iterates the elements of a comma-separated list (RFC 9110 §5.6.1): each call stores the next
 * element, OWS-trimmed (possibly empty), in *e / *elen. Returns 0 when the list is exhausted.
 */
static int next_elem(const char **cur, const char *end, const char **e, size_t *elen)
{
    const char *p = *cur, *s, *t;
    if (p == NULL || p > end)
        return 0;
    s = p;
    while (p < end && *p != ',')
        p++;
    t = p;
    while (s < t && is_ows((unsigned char)*s))
        s++;
    while (t > s && is_ows((unsigned char)t[-1]))
        t--;
    *e = s;
    *elen = (size_t)(t - s);
    *cur = p < end ? p + 1 : end + 1; /* past the end marks "exhausted" */
    return 1;
}

/* Does any element of the list value equal lit (case-insensitive)? */
static int list_has(const struct wsg_http_header *h, const char *lit)
{
    const char *cur = h->value, *e;
    size_t elen;
    while (next_elem(&cur, h->value + h->value_len, &e, &elen))
        if (eq_ci(e, elen, lit))
            return 1;
    return 0;
}

const struct wsg_http_header *wsg_http_find(const struct wsg_http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (name_is(&h[i], name))
            return &h[i];
    return NULL;
}

/* ---- Head parsing ---- */

struct perr {
    int rc; /* WSG_PARSE_PARTIAL or WSG_PARSE_INVALID */
    const char *why;
    int status;
};

static const char *partial(struct perr *e)
{
    e->rc = WSG_PARSE_PARTIAL;
    return NULL;
}

static const char *invalid(struct perr *e, const char *why, int status)
{
    e->rc = WSG_PARSE_INVALID;
    e->why = why;
    e->status = status;
    return NULL;
}

/* Expects CRLF at p (RFC 9112 §2.2: a bare CR or LF is rejected, never taken as a line end). */
static const char *expect_crlf(const char *p, const char *end, struct perr *e)
{
    if (p == end)
        return partial(e);
    if (*p == '\n')
        return invalid(e, "bare LF", 400);
    if (*p != '\r')
        return invalid(e, "malformed start line", 400);
    if (p + 1 == end)
        return partial(e);
    if (p[1] != '\n')
        return invalid(e, "bare CR", 400);
    return p + 2;
}

/*
 * Checks "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3) at p as far as bytes are available. Returns the
 * position after it, or NULL with *e set. *minor gets the minor digit; *bad_version is set when
 * the syntax is right but the version is not 1.0 or 1.1.
 */
static const char *parse_version(const char *p, const char *end, int *minor, int *bad_version, struct perr *e)
{
    static const char pat[] = "HTTP/d.d";
    size_t avail = (size_t)(end - p) < 8 ? (size_t)(end - p) : 8;
    for (size_t i = 0; i < avail; i++) {
        unsigned char c = (unsigned char)p[i];
        int ok = pat[i] == 'd' ? (c >= '0' && c <= '9') : c == (unsigned char)pat[i];
        if (!ok)
            return invalid(e, c == '\n' ? "bare LF" : "malformed HTTP version", 400);
    }
    if (avail < 8)
        return partial(e);
    *bad_version = p[5] != '1' || (p[7] != '0' && p[7] != '1');
    *minor = p[7] - '0';
    return p + 8;
}

/*
 * Parses field lines up to and including the empty line that ends the head (RFC 9112 §5).
 * Returns the position after that line, or NULL with *e set.
 */
static const char *parse_fields(const char *p, const char *end, struct wsg_http_header *hdrs, size_t max,
                                size_t *num, struct perr *e)
{
    size_t n = 0;
    for (;;) {
        if (p == end)
            return partial(e);
        if (*p == '\r') {
            if (p + 1 == end)
                return partial(e);
            if (p[1] != '\n')
                return invalid(e, "bare CR", 400);
            *num = n;
            return p + 2;
        }
        if (*p == '\n')
            return invalid(e, "bare LF", 400);
        /* RFC 9112 §5.2: obs-fold is rejected; so is whitespace before the first field (§2.2). */
        if (is_ows((unsigned char)*p))
            return invalid(e, "obsolete line folding", 400);
        const char *name = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        if (p == end)
            return partial(e);
        if (*p != ':') {
            /* RFC 9112 §5.1: no whitespace is allowed between the field name and the colon. */
            if (is_ows((unsigned char)*p))
                return invalid(e, "whitespace before colon", 400);
            if (*p == '\n')
                return invalid(e, "bare LF", 400);
            return invalid(e, "invalid character in field name", 400);
        }
        if (p == name)
            return invalid(e, "empty field name", 400);
        size_t name_len = (size_t)(p - name);
        p++;
        while (p < end && is_ows((unsigned char)*p))
            p++;
        const char *val = p;
        for (;;) {
            if (p == end)
                return partial(e);
            unsigned char c = (unsigned char)*p;
            if (c == '\r') {
                if (p + 1 == end)
                    return partial(e);
                if (p[1] != '\n')
                    return invalid(e, "bare CR", 400);
                break;
            }
            if (c == '\n')
                return invalid(e, "bare LF", 400);
            if (!is_field_char(c))
                return invalid(e, "control character in field value", 400);
            p++;
        }
        const char *vend = p;
        while (vend > val && is_ows((unsigned char)vend[-1]))
            vend--;
        if (n == max)
            return invalid(e, "too many header fields", 431);
        hdrs[n].name = name;
        hdrs[n].name_len = name_len;
        hdrs[n].value = val;
        hdrs[n].value_len = (size_t)(vend - val);
        n++;
        p += 2;
    }
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6); no sign, no list, at most 2^62. */
static int parse_content_length(const struct wsg_http_header *h, uint64_t *out)
{
    uint64_t v = 0;
    if (h->value_len == 0)
        return -1;
    for (size_t i = 0; i < h->value_len; i++) {
        unsigned char c = (unsigned char)h->value[i];
        if (c < '0' || c > '9')
            return -1;
        if (v > (MAX_CONTENT_LENGTH - (uint64_t)(c - '0')) / 10)
            return -1; /* over 2^62: checked before it could wrap */
        v = v * 10 + (uint64_t)(c - '0');
    }
    *out = v;
    return 0;
}

/* Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): reg-name, IPv4 or [IPv6]. */
static int host_valid(const struct wsg_http_header *h)
{
    if (h->value_len == 0)
        return 0;
    for (size_t i = 0; i < h->value_len; i++) {
        unsigned char c = (unsigned char)h->value[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c == 0 || strchr("-._~!$&'()*+;=%:[]", c) == NULL)
            return 0;
    }
    return 1;
}

/* What the framing headers of one message say, shared by requests and responses. */
struct framing {
    int cl_seen, te_seen, te_chunked; /* te_chunked: the coding list is exactly "chunked" */
    uint64_t cl;
    int conn_close, conn_keep_alive, conn_upgrade;
};

/* Accumulates Content-Length, Transfer-Encoding and Connection; returns 0 or -1 with *e set. */
static int add_framing(const struct wsg_http_header *h, struct framing *f, int status, struct perr *e)
{
    if (name_is(h, "content-length")) {
        /* RFC 9112 §6.3 item 5: a duplicate (even equal) or invalid length is unrecoverable. */
        if (f->cl_seen) {
            invalid(e, "duplicate Content-Length", status);
            return -1;
        }
        if (parse_content_length(h, &f->cl) != 0) {
            invalid(e, "invalid Content-Length", status);
            return -1;
        }
        f->cl_seen = 1;
    } else if (name_is(h, "transfer-encoding")) {
        /* Several field lines form one list (RFC 9110 §5.3); count every coding across them. */
        const char *cur = h->value, *el;
        size_t elen;
        int codings = f->te_seen ? (f->te_chunked ? 1 : 2) : 0;
        int chunked = codings == 1;
        while (next_elem(&cur, h->value + h->value_len, &el, &elen)) {
            if (elen == 0)
                continue; /* empty list elements are ignored (RFC 9110 §5.6.1) */
            codings++;
            chunked = eq_ci(el, elen, "chunked");
        }
        f->te_seen = 1;
        f->te_chunked = codings == 1 && chunked;
    } else if (name_is(h, "connection")) {
        f->conn_close |= list_has(h, "close");
        f->conn_keep_alive |= list_has(h, "keep-alive");
        f->conn_upgrade |= list_has(h, "upgrade");
    }
    return 0;
}

/* Does an Upgrade list name the websocket protocol (RFC 9110 §7.8: protocol-name ["/" version])? */
static int upgrade_has_websocket(const struct wsg_http_header *h)
{
    const char *cur = h->value, *el;
    size_t elen;
    while (next_elem(&cur, h->value + h->value_len, &el, &elen)) {
        const char *slash = memchr(el, '/', elen);
        if (eq_ci(el, slash != NULL ? (size_t)(slash - el) : elen, "websocket"))
            return 1;
    }
    return 0;
}

static void lim_values(const struct wsg_http_limits *lim, size_t *max_head, size_t *max_target,
                       size_t *max_hdrs)
{
    *max_head = lim != NULL && lim->max_head != 0 ? lim->max_head : DEFAULT_MAX_HEAD;
    *max_target = lim != NULL && lim->max_target != 0 ? lim->max_target : DEFAULT_MAX_TARGET;
    *max_hdrs = lim != NULL && lim->max_headers != 0 ? lim->max_headers : WSG_HTTP_MAX_HEADERS;
    if (*max_hdrs > WSG_HTTP_MAX_HEADERS)
        *max_hdrs = WSG_HTTP_MAX_HEADERS;
}

/* request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 §3). */
static const char *parse_request_line(const char *p, const char *end, size_t max_target,
                                      struct wsg_http_req *req, struct perr *e)
{
    /* RFC 9112 §2.2: empty lines before the request-line are ignored (they may trail a body). */
    while (p < end && *p == '\r') {
        if ((p = expect_crlf(p, end, e)) == NULL)
            return NULL;
    }
    const char *m = p;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p == end)
        return partial(e);
    if (*p != ' ' || p == m)
        return invalid(e, *p == '\n' ? "bare LF" : "malformed method", 400);
    req->method = m;
    req->method_len = (size_t)(p - m);
    /* Tunnels are not proxied: CONNECT (authority-form, RFC 9112 §3.2.3) is not implemented. */
    if (req->method_len == 7 && memcmp(m, "CONNECT", 7) == 0)
        return invalid(e, "CONNECT not supported", 501);
    p++;

    const char *t = p;
    for (;;) {
        /* 414 as soon as the target is longer than allowed, without waiting for its end. */
        if ((size_t)(p - t) > max_target)
            return invalid(e, "request-target too long", 414);
        if (p == end)
            return partial(e);
        unsigned char c = (unsigned char)*p;
        if (c == ' ')
            break;
        if (c < 0x21 || c > 0x7e)
            return invalid(e, c == '\n' ? "bare LF" : "invalid character in request-target", 400);
        p++;
    }
    size_t tl = (size_t)(p - t);
    if (tl == 0)
        return invalid(e, "empty request-target", 400);
    /* RFC 9112 §3.2: origin-form, absolute-form, or asterisk-form for OPTIONS only. */
    if (t[0] == '*') {
        if (tl != 1 || req->method_len != 7 || memcmp(m, "OPTIONS", 7) != 0)
            return invalid(e, "asterisk-form only for OPTIONS", 400);
    } else if (t[0] != '/') {
        int abs = (tl > 7 && eq_ci(t, 7, "http://")) || (tl > 8 && eq_ci(t, 8, "https://"));
        if (!abs)
            return invalid(e, "invalid request-target form", 400);
    }
    req->target = t;
    req->target_len = tl;
    p++;

    int bad_version = 0;
    if ((p = parse_version(p, end, &req->minor_version, &bad_version, e)) == NULL)
        return NULL;
    if (bad_version)
        return invalid(e, "HTTP version not supported", 505);
    return expect_crlf(p, end, e);
}

static int derive_request(struct wsg_http_req *req, struct perr *e)
{
    struct framing f = {0};
    const struct wsg_http_header *upgrade = NULL;
    int expect = 0;

    req->host = req->ws_key = req->ws_version = NULL;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct wsg_http_header *h = &req->headers[i];
        if (name_is(h, "host")) {
            /* RFC 9112 §3.2: more than one Host, or an invalid one, is a 400. */
            if (req->host != NULL)
                return invalid(e, "duplicate Host", 400), -1;
            if (!host_valid(h))
                return invalid(e, "invalid Host", 400), -1;
            req->host = h;
        } else if (name_is(h, "upgrade")) {
            if (upgrade == NULL || !upgrade_has_websocket(upgrade))
                upgrade = h;
        } else if (name_is(h, "expect")) {
            expect |= eq_ci(h->value, h->value_len, "100-continue");
        } else if (name_is(h, "sec-websocket-key")) {
            if (req->ws_key == NULL)
                req->ws_key = h;
        } else if (name_is(h, "sec-websocket-version")) {
            if (req->ws_version == NULL)
                req->ws_version = h;
        } else if (add_framing(h, &f, 400, e) != 0) {
            return -1;
        }
    }
    if (req->host == NULL && req->minor_version == 1)
        return invalid(e, "missing Host", 400), -1;
    if (f.te_seen) {
        /* RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing; CL+TE is smuggling. */
        if (req->minor_version == 0)
            return invalid(e, "Transfer-Encoding in HTTP/1.0", 400), -1;
        if (f.cl_seen)
            return invalid(e, "Content-Length with Transfer-Encoding", 400), -1;
        /* RFC 9112 §6.3 item 4: only a final (here: the only) "chunked" is understood; else 501. */
        if (!f.te_chunked)
            return invalid(e, "unsupported transfer-coding", 501), -1;
        req->body = WSG_BODY_CHUNKED;
        req->content_length = 0;
    } else if (f.cl_seen) {
        req->body = WSG_BODY_LENGTH;
        req->content_length = f.cl;
    } else {
        req->body = WSG_BODY_NONE; /* RFC 9112 §6.3 item 7 */
        req->content_length = 0;
    }
    /* RFC 9112 §9.3: 1.1 is persistent unless "close"; 1.0 only with "keep-alive". */
    req->keep_alive = req->minor_version == 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    /* RFC 9110 §7.8: Upgrade is ignored in HTTP/1.0; RFC 6455 §4.1 needs GET. */
    req->upgrade_ws = req->minor_version == 1 && req->method_len == 3 && memcmp(req->method, "GET", 3) == 0 &&
                      f.conn_upgrade && upgrade != NULL && upgrade_has_websocket(upgrade);
    if (!req->upgrade_ws)
        req->ws_key = req->ws_version = NULL;
    /* RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored. */
    req->expect_continue = expect && req->minor_version == 1;
    return 0;
}

/* A partial head that already fills max_head bytes can never fit: 431 (or 502 for responses). */
static int finish(const struct perr *e, size_t len, size_t max_head, int over_status, const char **why,
                  int *status)
{
    if (e->rc == WSG_PARSE_PARTIAL) {
        if (len < max_head)
            return WSG_PARSE_PARTIAL;
        *why = "head too large";
        *status = over_status;
        return WSG_PARSE_INVALID;
    }
    *why = e->why;
    *status = e->status;
    return WSG_PARSE_INVALID;
}

int wsg_http_parse_request(const char *buf, size_t len, const struct wsg_http_limits *lim,
                           struct wsg_http_req *req, const char **why, int *status)
{
    const char *why_dummy;
    int status_dummy;
    size_t max_head, max_target, max_hdrs;
    struct perr e = {0, NULL, 0};

    if (why == NULL)
        why = &why_dummy;
    if (status == NULL)
        status = &status_dummy;
    lim_values(lim, &max_head, &max_target, &max_hdrs);
    /* Never look past max_head bytes: a head that does not end within them is a 431. */
    const char *end = buf + (len < max_head ? len : max_head);
    const char *p = parse_request_line(buf, end, max_target, req, &e);
    if (p != NULL)
        p = parse_fields(p, end, req->headers, max_hdrs, &req->num_headers, &e);
    if (p == NULL)
        return finish(&e, len, max_head, 431, why, status);
    if (derive_request(req, &e) != 0)
        return finish(&e, len, max_head, 431, why, status);
    return (int)(p - buf);
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 §4). */
static const char *parse_status_line(const char *p, const char *end, struct wsg_http_resp *resp,
                                     struct perr *e)
{
    int bad_version = 0;
    if ((p = parse_version(p, end, &resp->minor_version, &bad_version, e)) == NULL)
        return NULL;
    if (bad_version)
        return invalid(e, "upstream HTTP version not supported", 502);
    if (p == end)
        return partial(e);
    if (*p != ' ')
        return invalid(e, "malformed status line", 502);
    p++;
    int st = 0;
    for (int i = 0; i < 3; i++, p++) {
        if (p == end)
            return partial(e);
        if (*p < '0' || *p > '9')
            return invalid(e, "malformed status code", 502);
        st = st * 10 + (*p - '0');
    }
    if (st < 100 || st > 599)
        return invalid(e, "status code out of range", 502);
    resp->status = st;
    if (p == end)
        return partial(e);
    if (*p != ' ')
        return invalid(e, "malformed status line", 502);
    p++;
    const char *r = p;
    for (;;) {
        if (p == end)
            return partial(e);
        unsigned char c = (unsigned char)*p;
        if (c == '\r')
            break;
        /* reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ) */
        if (!is_field_char(c))
            return invalid(e, c == '\n' ? "bare LF" : "control character in reason phrase", 502);
        p++;
    }
    resp->reason = r;
    resp->reason_len = (size_t)(p - r);
    return expect_crlf(p, end, e);
}

static int derive_response(struct wsg_http_resp *resp, int is_head, struct perr *e)
{
    struct framing f = {0};

    resp->ws_accept = resp->upgrade = NULL;
    for (size_t i = 0; i < resp->num_headers; i++) {
        const struct wsg_http_header *h = &resp->headers[i];
        if (name_is(h, "sec-websocket-accept")) {
            if (resp->ws_accept == NULL)
                resp->ws_accept = h;
        } else if (name_is(h, "upgrade")) {
            if (resp->upgrade == NULL)
                resp->upgrade = h;
        } else if (add_framing(h, &f, 502, e) != 0) {
            return -1;
        }
    }
    /* Ambiguous framing from the upstream is never passed on (RFC 9112 §6.1, §6.3). */
    if (f.te_seen) {
        if (resp->minor_version == 0)
            return invalid(e, "Transfer-Encoding in HTTP/1.0 response", 502), -1;
        if (f.cl_seen)
            return invalid(e, "Content-Length with Transfer-Encoding in response", 502), -1;
        if (!f.te_chunked)
            return invalid(e, "unsupported transfer-coding in response", 502), -1;
    }
    resp->content_length = 0;
    /* RFC 9112 §6.3 items 1-2: HEAD, 1xx, 204 and 304 have no body whatever the headers say. */
    if (is_head || resp->status < 200 || resp->status == 204 || resp->status == 304) {
        resp->body = WSG_BODY_NONE;
    } else if (f.te_seen) {
        resp->body = WSG_BODY_CHUNKED;
    } else if (f.cl_seen) {
        resp->body = WSG_BODY_LENGTH;
        resp->content_length = f.cl;
    } else {
        resp->body = WSG_BODY_EOF; /* RFC 9112 §6.3 item 8 */
    }
    resp->keep_alive = resp->minor_version == 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    if (resp->body == WSG_BODY_EOF)
        resp->keep_alive = 0; /* the close is what ends the body */
    resp->conn_upgrade = f.conn_upgrade;
    if (resp->status != 101)
        resp->ws_accept = NULL;
    return 0;
}

int wsg_http_parse_response(const char *buf, size_t len, const struct wsg_http_limits *lim, int is_head,
                            struct wsg_http_resp *resp, const char **why)
{
    const char *why_dummy;
    int status;
    size_t max_head, max_target, max_hdrs;
    struct perr e = {0, NULL, 0};

    if (why == NULL)
        why = &why_dummy;
    lim_values(lim, &max_head, &max_target, &max_hdrs);
    resp->extra_headers = NULL;
    resp->pass_extensions = 0;
    const char *end = buf + (len < max_head ? len : max_head);
    const char *p = parse_status_line(buf, end, resp, &e);
    if (p != NULL)
        p = parse_fields(p, end, resp->headers, max_hdrs, &resp->num_headers, &e);
    if (p == NULL)
        return finish(&e, len, max_head, 502, why, &status);
    if (derive_response(resp, is_head, &e) != 0)
        return finish(&e, len, max_head, 502, why, &status);
    return (int)(p - buf);
}

/* ---- Chunked body scanner (RFC 9112 §7.1) ---- */

enum {
    CH_SIZE = 0, /* chunk-size hex digits */
    CH_SIZE_WS,  /* BWS between the size and ";" */
    CH_EXT,      /* chunk-ext up to CR */
    CH_SIZE_LF,  /* LF of the chunk-size line */
    CH_DATA,     /* chunk-data */
    CH_DATA_CR,  /* CR after chunk-data */
    CH_DATA_LF,  /* LF after chunk-data */
    CH_TR_START, /* start of a trailer line, or CR of the final CRLF */
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,
    CH_END_LF, /* LF of the final CRLF */
    CH_DONE,
    CH_ERROR
};

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static long chunk_fail(struct wsg_http_chunked *ch, const char **why, const char *text)
{
    ch->state = CH_ERROR;
    if (why != NULL)
        *why = text;
    return WSG_PARSE_INVALID;
}

long wsg_http_chunked_scan(struct wsg_http_chunked *ch, const uint8_t *p, size_t len, const char **why)
{
    size_t i = 0;

    if (ch->state == CH_ERROR)
        return chunk_fail(ch, why, "invalid chunked body");
    while (i < len && !ch->done) {
        uint8_t c = p[i];
        /* In the trailer section, `remaining` counts its bytes (bounded, RFC 9112 §7.1.2). */
        if (ch->state >= CH_TR_START && ch->state <= CH_END_LF && ++ch->remaining > MAX_TRAILER)
            return chunk_fail(ch, why, "trailer section too large");
        switch (ch->state) {
        case CH_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                if (ch->size_digits == MAX_CHUNK_SIZE_DIGITS || ch->remaining > (MAX_CHUNK_SIZE >> 4))
                    return chunk_fail(ch, why, "chunk size too large");
                ch->remaining = (ch->remaining << 4) | (uint64_t)v;
                if (ch->remaining > MAX_CHUNK_SIZE)
                    return chunk_fail(ch, why, "chunk size too large");
                ch->size_digits++;
                break;
            }
            if (ch->size_digits == 0)
                return chunk_fail(ch, why, "invalid chunk size");
            ch->line_len = 0;
            if (c == ';')
                ch->state = CH_EXT;
            else if (c == ' ' || c == '\t')
                ch->state = CH_SIZE_WS;
            else if (c == '\r')
                ch->state = CH_SIZE_LF;
            else if (c == '\n')
                return chunk_fail(ch, why, "bare LF in chunk size line");
            else
                return chunk_fail(ch, why, "invalid chunk size");
            break;
        }
        case CH_SIZE_WS: /* chunk-ext = *( BWS ";" ... ): whitespace only before a ";" */
            if (++ch->line_len > MAX_CHUNK_EXT)
                return chunk_fail(ch, why, "chunk extension too long");
            if (c == ';')
                ch->state = CH_EXT;
            else if (c != ' ' && c != '\t')
                return chunk_fail(ch, why, "invalid chunk size line");
            break;
        case CH_EXT:
            if (++ch->line_len > MAX_CHUNK_EXT)
                return chunk_fail(ch, why, "chunk extension too long");
            if (c == '\r')
                ch->state = CH_SIZE_LF;
            else if (c == '\n')
                return chunk_fail(ch, why, "bare LF in chunk extension");
            else if (!is_field_char(c))
                return chunk_fail(ch, why, "control character in chunk extension");
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return chunk_fail(ch, why, "bare CR in chunk size line");
            if (ch->remaining == 0) {
                ch->state = CH_TR_START; /* last-chunk; `remaining` now counts trailer bytes */
            } else {
                ch->state = CH_DATA;
            }
            break;
        case CH_DATA: {
            size_t n = len - i;
            if (n > ch->remaining)
                n = (size_t)ch->remaining;
            i += n;
            ch->remaining -= n;
            if (ch->remaining == 0)
                ch->state = CH_DATA_CR;
            continue;
        }
        case CH_DATA_CR:
            if (c != '\r')
                return chunk_fail(ch, why,
                                  c == '\n' ? "bare LF after chunk data" : "missing CRLF after chunk data");
            ch->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                return chunk_fail(ch, why, "missing CRLF after chunk data");
            ch->state = CH_SIZE;
            ch->size_digits = 0;
            ch->remaining = 0;
            break;
        case CH_TR_START:
            if (c == '\r')
                ch->state = CH_END_LF;
            else if (c == '\n')
                return chunk_fail(ch, why, "bare LF in trailer section");
            else if (is_ows(c))
                return chunk_fail(ch, why, "obsolete line folding in trailer");
            else if (is_tchar(c))
                ch->state = CH_TR_NAME;
            else
                return chunk_fail(ch, why, "invalid trailer field name");
            break;
        case CH_TR_NAME:
            if (c == ':')
                ch->state = CH_TR_VALUE;
            else if (is_ows(c))
                return chunk_fail(ch, why, "whitespace before colon in trailer");
            else if (!is_tchar(c))
                return chunk_fail(ch, why, "invalid trailer field name");
            break;
        case CH_TR_VALUE:
            if (c == '\r')
                ch->state = CH_TR_LF;
            else if (c == '\n')
                return chunk_fail(ch, why, "bare LF in trailer field");
            else if (!is_field_char(c))
                return chunk_fail(ch, why, "control character in trailer field");
            break;
        case CH_TR_LF:
            if (c != '\n')
                return chunk_fail(ch, why, "bare CR in trailer field");
            ch->state = CH_TR_START;
            break;
        case CH_END_LF:
            if (c != '\n')
                return chunk_fail(ch, why, "bare CR at end of chunked body");
            ch->state = CH_DONE;
            ch->done = 1;
            break;
        default:
            return chunk_fail(ch, why, "invalid chunked scanner state");
        }
        i++;
    }
    return (long)i;
}

/* ---- Head writers ---- */

/* Appends to a wsg_buf and remembers the first short put, so callers check once at the end. */
struct out {
    struct wsg_buf *b;
    uint32_t start_len;
    int failed;
};

static void emit(struct out *o, const void *p, size_t n)
{
    if (!o->failed && wsg_buf_put(o->b, p, n) != n)
        o->failed = 1;
}

static void emits(struct out *o, const char *s)
{
    emit(o, s, strlen(s));
}

static void emit_header(struct out *o, const char *name, size_t name_len, const char *value, size_t value_len)
{
    emit(o, name, name_len);
    emit(o, ": ", 2);
    emit(o, value, value_len);
    emit(o, "\r\n", 2);
}

/* Undoes a partial write: nothing of a head that did not fit stays in the buffer. */
static int finish_out(struct out *o)
{
    if (!o->failed)
        return 0;
    o->b->len = o->start_len; /* a put may have slid the bytes to offset 0; len still counts them */
    return -1;
}

/* Headers that must not reach the client or upstream whatever Connection says about them: they
 * carry framing or the handshake, and a client could otherwise strip Host from the upstream. */
static int end_to_end_protected(const struct wsg_http_header *h)
{
    return name_is(h, "host") || name_is(h, "content-length") || name_is(h, "transfer-encoding") ||
           (h->name_len > 14 && eq_ci(h->name, 14, "sec-websocket-"));
}

/* Is h hop-by-hop (RFC 9110 §7.6.1): a fixed connection header or one named by Connection? */
static int hop_by_hop(const struct wsg_http_header *h, const struct wsg_http_header *all, size_t n)
{
    static const char *const fixed[] = {"connection", "keep-alive", "proxy-connection",
                                        "te",         "trailer",    "upgrade"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (name_is(h, fixed[i]))
            return 1;
    if (end_to_end_protected(h))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!name_is(&all[i], "connection"))
            continue;
        const char *cur = all[i].value, *el;
        size_t elen;
        while (next_elem(&cur, all[i].value + all[i].value_len, &el, &elen))
            if (elen == h->name_len && same_ci(el, h->name, elen))
                return 1;
    }
    return 0;
}

/* Starts "Name: v1, v2, " joining the values of every field line called name (empty ones skipped);
 * the caller writes the element it appends and the CRLF. */
static void emit_joined_start(struct out *o, const char *name, const struct wsg_http_header *h, size_t n)
{
    emits(o, name);
    emit(o, ": ", 2);
    for (size_t i = 0; i < n; i++) {
        if (!name_is(&h[i], name) || h[i].value_len == 0)
            continue;
        emit(o, h[i].value, h[i].value_len);
        emit(o, ", ", 2);
    }
}

/* Sec-WebSocket-Extensions without permessage-deflate (we relay frames, we cannot inflate). */
static void emit_ws_extensions(struct out *o, const struct wsg_http_header *h)
{
    char small[256];
    char *tmp = h->value_len <= sizeof(small) ? small : malloc(h->value_len);
    if (tmp == NULL) {
        o->failed = 1;
        return;
    }
    size_t n = wsg_ws_strip_deflate(h->value, h->value_len, tmp);
    if (n != 0)
        emit_header(o, h->name, h->name_len, tmp, n);
    if (tmp != small)
        free(tmp);
}

int wsg_http_write_request(const struct wsg_http_req *req, const struct wsg_http_fwd *fwd,
                           struct wsg_buf *out)
{
    struct out o = {out, out->len, 0};
    const char *ip = fwd != NULL && fwd->client_ip != NULL ? fwd->client_ip : "unknown";
    const char *proto = fwd != NULL && fwd->proto != NULL ? fwd->proto : "https";
    const struct wsg_http_header *h = req->headers;
    size_t n = req->num_headers;

    emit(&o, req->method, req->method_len);
    emit(&o, " ", 1);
    emit(&o, req->target, req->target_len);
    emits(&o, " HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++) {
        if (name_is(&h[i], "transfer-encoding")) {
            /* Chunked bytes pass through unchanged, so their framing header goes with them. */
            if (req->body == WSG_BODY_CHUNKED)
                emit_header(&o, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
            continue;
        }
        if (hop_by_hop(&h[i], h, n))
            continue;
        /* Ours replace whatever the client sent: it cannot spoof them. XFF/Forwarded are appended. */
        if (name_is(&h[i], "x-forwarded-for") || name_is(&h[i], "forwarded") || name_is(&h[i], "x-real-ip") ||
            name_is(&h[i], "x-forwarded-proto") || name_is(&h[i], "x-forwarded-host"))
            continue;
        if (name_is(&h[i], "sec-websocket-extensions") && req->upgrade_ws) {
            if (fwd == NULL || fwd->ws_extensions == NULL)
                emit_ws_extensions(&o, &h[i]);
            continue;
        }
        if (name_is(&h[i], "sec-websocket-protocol") && req->upgrade_ws && fwd != NULL &&
            fwd->ws_protocols != NULL)
            continue; /* replaced by the filtered offer below */
        emit_header(&o, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    }
    if (req->upgrade_ws && fwd != NULL && fwd->ws_protocols != NULL && fwd->ws_protocols_len > 0)
        emit_header(&o, "Sec-WebSocket-Protocol", 22, fwd->ws_protocols, fwd->ws_protocols_len);
    if (req->upgrade_ws && fwd != NULL && fwd->ws_extensions != NULL && fwd->ws_extensions_len > 0)
        emit_header(&o, "Sec-WebSocket-Extensions", 24, fwd->ws_extensions, fwd->ws_extensions_len);
    if (req->upgrade_ws)
        emits(&o, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    else
        emits(&o, "Connection: keep-alive\r\n");
    emit_joined_start(&o, "X-Forwarded-For", h, n);
    emits(&o, ip);
    emits(&o, "\r\nX-Forwarded-Proto: ");
    emits(&o, proto);
    emits(&o, "\r\n");
    if (req->host != NULL)
        emit_header(&o, "X-Forwarded-Host", 16, req->host->value, req->host->value_len);
    emits(&o, "X-Real-IP: ");
    emits(&o, ip);
    emits(&o, "\r\n");
    /* RFC 7239 §4, §6: an IPv6 node is bracketed and quoted; host is a quoted-string. */
    int v6 = strchr(ip, ':') != NULL;
    emit_joined_start(&o, "Forwarded", h, n);
    emits(&o, v6 ? "for=\"[" : "for=");
    emits(&o, ip);
    emits(&o, v6 ? "]\"" : "");
    if (req->host != NULL) {
        emits(&o, ";host=\"");
        emit(&o, req->host->value, req->host->value_len);
        emits(&o, "\"");
    }
    emits(&o, ";proto=");
    emits(&o, proto);
    emits(&o, "\r\n");
    emits(&o, "\r\n");
    return finish_out(&o);
}

int wsg_http_write_response(const struct wsg_http_resp *resp, int keep_alive, struct wsg_buf *out)
{
    struct out o = {out, out->len, 0};
    const struct wsg_http_header *h = resp->headers;
    size_t n = resp->num_headers;
    char line[32];

    snprintf(line, sizeof(line), "HTTP/1.1 %03d ", resp->status);
    emits(&o, line);
    if (resp->reason_len != 0)
        emit(&o, resp->reason, resp->reason_len);
    else
        emits(&o, wsg_http_reason_phrase(resp->status));
    emit(&o, "\r\n", 2);
    for (size_t i = 0; i < n; i++) {
        if (name_is(&h[i], "transfer-encoding")) {
            if (resp->body == WSG_BODY_CHUNKED)
                emit_header(&o, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
            continue;
        }
        if (hop_by_hop(&h[i], h, n))
            continue;
        /* Kept only when the caller checked it (permessage-deflate negotiated). */
        if (resp->status == 101 && name_is(&h[i], "sec-websocket-extensions") && !resp->pass_extensions)
            continue;
        emit_header(&o, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    }
    if (resp->extra_headers != NULL)
        emits(&o, resp->extra_headers);
    if (resp->status == 101)
        emits(&o, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    else if (resp->status >= 200)
        emits(&o, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    emit(&o, "\r\n", 2);
    return finish_out(&o);
}

int wsg_http_write_error(int status, const char *extra_headers, struct wsg_buf *out)
{
    struct out o = {out, out->len, 0};
    const char *phrase = wsg_http_reason_phrase(status);
    char body[96], line[160];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, phrase);

    snprintf(line, sizeof(line),
             "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n",
             status, phrase, blen);
    emits(&o, line);
    if (extra_headers != NULL)
        emits(&o, extra_headers);
    emit(&o, "\r\n", 2);
    emit(&o, body, (size_t)blen);
    return finish_out(&o);
}

const char *wsg_http_reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "Unknown";
    }
}
