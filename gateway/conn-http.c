/*
 * conn-http.c - the HTTP/1.1 exchange of a connection: the request head read from cli_plain (checked,
 * routed to its route's policy and upstream group, the Origin, subprotocol and per-IP rules of an
 * upgrade applied, rewritten with the forwarding headers into up.out), the request body streamed
 * after it, the upstream's response head (an interim 1xx passed on, a 101 checked and handed to
 * conn-ws.c, any other relayed as plain HTTP) and body streamed into cli_ptx, keep-alive on both
 * hops, and the error answers the gateway writes itself. Parsing and writing heads is http1.c's;
 * this file is what the gateway does with them.
 */
#include "gateway/conn-int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gateway/affinity.h"

/* ------------------------------------------------------------------ error answers */

/* Answers an HTTP error (before any response byte went out) and closes after it. */
void wsg_conn_http_error(struct wsg_conn *c, enum wsg_reason r, const char *why)
{
    int status = wsg_reasons[r].http_status;
    if (r == WSG_R_IP_LIMIT && c->pol->ip_limit_status == 503)
        status = 503;
    c->reason = r;
    if (status == 0 || c->x.resp_started) {
        clog(WSG_LOG_INFO, c, "closing: %s%s%s", wsg_reasons[r].text, why ? ": " : "", why ? why : "");
        wsg_conn_start_closing(c);
        return;
    }
    clog(WSG_LOG_INFO, c, "%d: %s%s%s", status, wsg_reasons[r].text, why ? ": " : "", why ? why : "");
    const char *extra = NULL;
    char retry[48];
    if (r == WSG_R_UPGRADE_REQUIRED) {
        extra = "Sec-WebSocket-Version: 13\r\n";
    } else if (r == WSG_R_SHUTDOWN) {
        extra = "Retry-After: 1\r\n";
    } else if (r == WSG_R_IP_LIMIT) {
        snprintf(retry, sizeof(retry), "Retry-After: %d\r\n", c->retry_after > 0 ? c->retry_after : 1);
        extra = retry;
    }
    if (wsg_http_write_error(status, extra, &c->cli_ptx) != 0)
        clog(WSG_LOG_WARN, c, "no room for the %d answer", status);
    c->x.status = status;
    c->x.resp_started = 1;
    wsg_conn_log_http(c);
    wsg_conn_start_closing(c);
}

/* ------------------------------------------------------------------ the request */

static struct wsg_http_limits http_limits(const struct wsg_conn *c)
{
    const struct wsg_cfg *cfg = cfg_of(c);
    struct wsg_http_limits lim = {
        .max_head = cfg->max_header_size, .max_target = cfg->max_uri, .max_headers = cfg->max_headers};
    return lim;
}

static enum wsg_reason reason_of_status(int status)
{
    switch (status) {
    case 413:
        return WSG_R_BODY_TOO_BIG;
    case 414:
        return WSG_R_URI_TOO_LONG;
    case 431:
        return WSG_R_HEADERS_TOO_BIG;
    case 501:
    case 505:
        return WSG_R_NOT_IMPLEMENTED;
    default:
        return WSG_R_BAD_REQUEST;
    }
}

static void copy_field(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* affinity cookie: which upstream of the route's group the request's cookie names (c->x.aff_peer),
 * counted by what the cookie was. Forged, expired and foreign tokens leave the choice to the hash. */
static void affinity_read(struct wsg_conn *c, const struct wsg_http_req *req, const struct wsg_upstreams *ups)
{
    const struct wsg_cfg *cfg = cfg_of(c);
    enum wsg_aff_result best = WSG_AFF_NONE;
    uint64_t id = 0;
    uint32_t exp = 0;
    for (size_t i = 0; i < req->num_headers && best != WSG_AFF_VALID; i++) {
        const struct wsg_http_header *h = &req->headers[i];
        if (h->name_len != 6 || strncasecmp(h->name, "Cookie", 6) != 0)
            continue;
        enum wsg_aff_result r = wsg_affinity_find(c->rt->affinity_key, cfg->affinity_cookie, h->value,
                                                  h->value_len, (uint32_t)now_of(c), &id, &exp);
        if (r == WSG_AFF_VALID || best == WSG_AFF_NONE || r == WSG_AFF_EXPIRED)
            best = r;
    }
    if (best == WSG_AFF_NONE)
        return;
    if (best == WSG_AFF_VALID) {
        for (size_t i = 0; i < ups->npeers; i++)
            if (wsg_affinity_peer_id(ups->peers[i].name) == id) {
                c->x.aff_peer = (unsigned)i + 1;
                c->x.aff_expires = exp;
                wsg_m_add(&metrics(c)->c[WSG_M_AFF_FOLLOWED], 1);
                return;
            }
        wsg_m_add(&metrics(c)->c[WSG_M_AFF_FOREIGN], 1);
        return;
    }
    wsg_m_add(&metrics(c)->c[best == WSG_AFF_EXPIRED ? WSG_M_AFF_EXPIRED : WSG_M_AFF_FORGED], 1);
}

/* affinity cookie: the Set-Cookie line for the response, or NULL when the request's own cookie
 * already names the upstream that answers and is less than half-way through its life. */
static const char *affinity_set_cookie(struct wsg_conn *c, char *line, size_t cap)
{
    const struct wsg_cfg *cfg = cfg_of(c);
    if (cfg->affinity != WSG_AFFINITY_COOKIE || c->peer == NULL || c->ups == NULL)
        return NULL;
    uint32_t now = (uint32_t)now_of(c);
    if (c->x.aff_peer != 0 && &c->ups->peers[c->x.aff_peer - 1] == c->peer &&
        c->x.aff_expires - now > cfg->affinity_cookie_ttl / 2)
        return NULL;
    char token[WSG_AFF_TOKEN_LEN + 1];
    wsg_affinity_make(c->rt->affinity_key, wsg_affinity_peer_id(c->peer->name),
                      now + (uint32_t)cfg->affinity_cookie_ttl, token);
    int n = snprintf(line, cap, "Set-Cookie: %s=%s; Path=/; Secure; HttpOnly; SameSite=Lax\r\n",
                     cfg->affinity_cookie, token);
    return n > 0 && (size_t)n < cap ? line : NULL;
}

/* A complete request head is in cli_plain: check it, rewrite it into up.out, pick the upstream. */
int wsg_conn_http_head(struct wsg_conn *c)
{
    uint32_t avail;
    const uint8_t *p = wsg_buf_peek(&c->cli_plain, &avail);
    if (p == NULL)
        return 0;
    struct wsg_http_limits lim = http_limits(c);
    struct wsg_http_req req;
    const char *why = NULL;
    int status = 400;
    int n = wsg_http_parse_request((const char *)p, avail, &lim, &req, &why, &status);
    if (n == WSG_PARSE_PARTIAL) {
        if (c->cli.eof) {
            c->reason = WSG_R_CLIENT_CLOSED;
            wsg_conn_start_closing(c);
            return 1;
        }
        if (avail >= c->cli_plain.cap) { /* cannot grow: the head is larger than the buffer */
            wsg_conn_http_error(c, WSG_R_HEADERS_TOO_BIG, "head larger than buffer_size");
            return 1;
        }
        return 0;
    }
    memset(&c->x, 0, sizeof(c->x));
    c->x.t0 = now_of(c);
    c->nreq++;
    if (n < 0) {
        wsg_conn_http_error(c, reason_of_status(status), why);
        return 1;
    }
    if (req.host == NULL) {
        /* HTTP/1.0 may omit Host, but the request is forwarded as HTTP/1.1, which requires it
         * (RFC 9112 §3.2): the upstream would refuse it anyway. */
        wsg_conn_http_error(c, WSG_R_BAD_REQUEST, "Host is required");
        return 1;
    }
    /* Each request takes the configuration in force now, and its route's policy. */
    c->rt = wsg_shared_rt(c->w->sh);
    const struct wsg_cfg_route *route =
        wsg_cfg_route_match(c->rt->cfg, req.host ? req.host->value : NULL, req.host ? req.host->value_len : 0,
                            req.target, req.target_len);
    c->route = wsg_cfg_route_index(c->rt->cfg, route);
    c->pol = wsg_cfg_route_policy(c->rt->cfg, route);
    if (c->pol->max_header_size && (size_t)n > c->pol->max_header_size) {
        wsg_conn_policy_hit(c, WSG_PR_HEADER_SIZE, 0, "request head above the route's max_header_size");
        wsg_conn_http_error(c, WSG_R_HEADERS_TOO_BIG, "request head above the route's max_header_size");
        return 1;
    }
    copy_field(c->x.method, sizeof(c->x.method), req.method, req.method_len);
    copy_field(c->x.target, sizeof(c->x.target), req.target, req.target_len);
    c->x.is_head = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
    c->x.keep_alive = req.keep_alive && !(c->flags & WSG_CF_DRAINING);
    c->x.req_body = req.body;
    c->x.req_left = req.content_length;
    if (req.body == WSG_BODY_NONE || (req.body == WSG_BODY_LENGTH && req.content_length == 0))
        c->x.req_done = 1;
    const struct wsg_cfg *cfg = cfg_of(c);
    if (cfg->max_body && req.body == WSG_BODY_LENGTH && req.content_length > cfg->max_body) {
        wsg_conn_http_error(c, WSG_R_BODY_TOO_BIG, "Content-Length above max_body");
        return 1;
    }
    if (req.upgrade_ws) {
        if (c->flags & WSG_CF_DRAINING) {
            wsg_conn_http_error(c, WSG_R_SHUTDOWN, NULL);
            return 1;
        }
        if (req.ws_version == NULL || req.ws_version->value_len != 2 ||
            memcmp(req.ws_version->value, "13", 2) != 0) {
            wsg_conn_http_error(c, WSG_R_UPGRADE_REQUIRED, "Sec-WebSocket-Version is not 13");
            return 1;
        }
        if (req.ws_key == NULL ||
            wsg_ws_accept_key(req.ws_key->value, req.ws_key->value_len, c->x.ws_accept) != 0) {
            wsg_conn_http_error(c, WSG_R_BAD_REQUEST, "missing or invalid Sec-WebSocket-Key");
            return 1;
        }
        if (req.body != WSG_BODY_NONE && !(req.body == WSG_BODY_LENGTH && req.content_length == 0)) {
            wsg_conn_http_error(c, WSG_R_BAD_REQUEST, "upgrade request with a body");
            return 1;
        }
        /* Cross-site WebSocket hijacking: a browser always sends Origin; a client that sends none
         * is not a browser and is not what the allowlist protects against. */
        const struct wsg_http_header *origin = wsg_http_find(req.headers, req.num_headers, "Origin");
        if (c->pol->norigins && origin != NULL &&
            !wsg_match_origin(c->pol, origin->value, origin->value_len)) {
            wsg_conn_policy_hit(c, WSG_PR_ORIGIN, 0, "Origin not in the allowlist");
            wsg_conn_http_error(c, WSG_R_ORIGIN, NULL);
            return 1;
        }
        const struct wsg_http_header *proto =
            wsg_http_find(req.headers, req.num_headers, "Sec-WebSocket-Protocol");
        if (c->pol->nsubprotocols && proto != NULL &&
            !wsg_match_subprotocol(c->pol, proto->value, proto->value_len)) {
            wsg_conn_policy_hit(c, WSG_PR_SUBPROTOCOL, 0, "no offered subprotocol is allowed");
            wsg_conn_http_error(c, WSG_R_SUBPROTOCOL, NULL);
            return 1;
        }
        if (wsg_policy_per_ip(c->pol)) {
            wsg_ip_key_make(&c->ipkey, c->route, (const struct sockaddr *)&c->peer_addr);
            double wait = wsg_iptable_conn_begin(c->w->sh->ipt, &c->ipkey, c->pol, now_of(c));
            if (wait > 0) {
                c->retry_after = (int)ceil(wait);
                wsg_conn_policy_hit(c, WSG_PR_IP_CONNS, 0, "ip_max_conns or ip_upgrades reached");
                wsg_conn_http_error(c, WSG_R_IP_LIMIT, NULL);
                return 1;
            }
            c->ip_counted = 1;
        }
    }
    struct wsg_http_fwd fwd = {.client_ip = c->peer_ip, .proto = "https"};
    char protos[512];
    if (req.upgrade_ws && c->pol->nsubprotocols) {
        /* Forward only the offered subprotocols the route allows, in the client's order. */
        size_t plen = 0;
        for (size_t i = 0; i < req.num_headers; i++) {
            const struct wsg_http_header *h = &req.headers[i];
            if (h->name_len != 22 || strncasecmp(h->name, "Sec-WebSocket-Protocol", 22) != 0)
                continue;
            for (size_t a = 0; a < h->value_len;) {
                size_t b = a;
                while (b < h->value_len && h->value[b] != ',')
                    b++;
                size_t s0 = a, e0 = b;
                while (s0 < e0 && (h->value[s0] == ' ' || h->value[s0] == '\t'))
                    s0++;
                while (e0 > s0 && (h->value[e0 - 1] == ' ' || h->value[e0 - 1] == '\t'))
                    e0--;
                if (e0 > s0 && wsg_match_subprotocol_one(c->pol, h->value + s0, e0 - s0) &&
                    plen + (e0 - s0) + 2 < sizeof(protos)) {
                    if (plen > 0) {
                        memcpy(protos + plen, ", ", 2);
                        plen += 2;
                    }
                    memcpy(protos + plen, h->value + s0, e0 - s0);
                    plen += e0 - s0;
                }
                a = b + 1;
            }
        }
        fwd.ws_protocols = protos;
        fwd.ws_protocols_len = plen;
    }
    char zoffer[160];
    if (req.upgrade_ws && c->pol->deflate) {
        /* RFC 7692: forward the client's first offer wsgate can inspect, alone; other extensions
         * (which no relay here could honour) are dropped */
        size_t zlen = 0;
        for (size_t i = 0; i < req.num_headers && zlen == 0; i++)
            if (req.headers[i].name_len == 24 &&
                strncasecmp(req.headers[i].name, "Sec-WebSocket-Extensions", 24) == 0)
                zlen = wsg_ws_deflate_offer(req.headers[i].value, req.headers[i].value_len, zoffer,
                                            sizeof(zoffer), &c->x.z_offer);
        if (zlen > 0 && c->pol->deflate_client_no_context && !c->x.z_offer.client_no_context) {
            c->x.z_offer.client_no_context = 1; /* the route wants it: the upstream is told too */
            zlen = wsg_ws_deflate_format(&c->x.z_offer, zoffer, sizeof(zoffer));
        }
        c->x.z_offered = zlen > 0;
        fwd.ws_extensions = zoffer;
        fwd.ws_extensions_len = zlen;
    }
    if (wsg_http_write_request(&req, &fwd, &c->up.out) != 0) {
        wsg_conn_http_error(c, WSG_R_HEADERS_TOO_BIG, "rewritten head larger than buffer_size");
        return 1;
    }
    wsg_buf_consume(&c->cli_plain, (uint32_t)n);
    set_state(c, req.upgrade_ws ? WSG_ST_WS_UPGRADE : WSG_ST_HTTP);

    /* Reuse the kept-alive upstream connection when it serves the same group, its upstream may
     * still take requests (not draining, weight > 0, healthy) and it is the upstream a valid
     * affinity cookie names (if any), else pick one: same client, same ranking. */
    if (cfg->affinity == WSG_AFFINITY_COOKIE)
        affinity_read(c, &req, c->rt->ups[c->route]);
    c->flags &= ~WSG_CF_UP_REUSED;
    if (c->up.fd >= 0 && !c->up.eof && !c->up.connecting && c->ups == c->rt->ups[c->route] &&
        wsg_upstream_is_up(c->peer, now_of(c)) &&
        (c->x.aff_peer == 0 || c->peer == &c->ups->peers[c->x.aff_peer - 1])) {
        c->flags |= WSG_CF_UP_REUSED;
        set_deadline(c, cfg->upstream_timeout);
        return 1;
    }
    wsg_conn_side_close(c, &c->up);
    wsg_buf_free(&c->up.in);
    c->tried = 0;
    c->ups = c->rt->ups[c->route];
    if (wsg_conn_upstream_open(c) != 0) {
        wsg_conn_http_error(c, WSG_R_UPSTREAM_DOWN, "no upstream accepted a connection");
        return 1;
    }
    return 1;
}

/* Streams the request body from cli_plain to up.out. */
int wsg_conn_http_req_body(struct wsg_conn *c)
{
    if (c->x.req_done)
        return 0;
    uint32_t avail;
    const uint8_t *p = wsg_buf_peek(&c->cli_plain, &avail);
    uint32_t room = wsg_buf_room(&c->up.out);
    if (p == NULL || room == 0) {
        if (p == NULL && c->cli.eof) {
            c->reason = WSG_R_CLIENT_CLOSED;
            wsg_conn_start_closing(c);
            return 1;
        }
        return 0;
    }
    uint32_t n = avail < room ? avail : room;
    if (c->x.req_body == WSG_BODY_LENGTH) {
        if (n > c->x.req_left)
            n = (uint32_t)c->x.req_left;
        c->x.req_left -= n;
        if (c->x.req_left == 0)
            c->x.req_done = 1;
    } else {
        const char *why = NULL;
        long m = wsg_http_chunked_scan(&c->x.req_ch, p, n, &why);
        if (m < 0) {
            wsg_conn_http_error(c, WSG_R_BAD_REQUEST, why);
            return 1;
        }
        n = (uint32_t)m;
        if (c->x.req_ch.done)
            c->x.req_done = 1;
    }
    c->x.req_total += n;
    const struct wsg_cfg *cfg = cfg_of(c);
    if (cfg->max_body && c->x.req_total > cfg->max_body) {
        wsg_conn_http_error(c, WSG_R_BODY_TOO_BIG, "chunked body above max_body");
        return 1;
    }
    if (wsg_buf_put(&c->up.out, p, n) != n) {
        c->reason = WSG_R_NOMEM;
        c->flags |= WSG_CF_DESTROY;
        return 0;
    }
    wsg_buf_consume(&c->cli_plain, n);
    return n > 0 || c->x.req_done;
}

/* ------------------------------------------------------------------ the response */

/* The response is complete: log it, then keep both connections or close. */
static void finish_exchange(struct wsg_conn *c)
{
    wsg_conn_log_http(c);
    int up_keep = c->x.up_keep && c->x.req_done && c->x.resp_body != WSG_BODY_EOF;
    if (!up_keep) {
        wsg_conn_side_close(c, &c->up);
        wsg_buf_free(&c->up.in);
        wsg_buf_free(&c->up.out);
    }
    if (!c->x.keep_alive || !c->x.req_done || (c->flags & WSG_CF_DRAINING) || c->cli.eof) {
        wsg_conn_start_closing(c);
        return;
    }
    set_state(c, WSG_ST_REQ_HEAD);
    set_deadline(c, cfg_of(c)->keepalive_timeout);
}

int wsg_conn_http_resp_head(struct wsg_conn *c)
{
    uint32_t avail;
    const uint8_t *p = wsg_buf_peek(&c->up.in, &avail);
    if (p == NULL) {
        if (c->up.eof) {
            wsg_conn_http_error(c, WSG_R_UPSTREAM_CLOSED, "upstream closed before responding");
            return 1;
        }
        return 0;
    }
    struct wsg_http_limits lim = http_limits(c);
    lim.max_head = c->up.in.cap;
    struct wsg_http_resp resp;
    const char *why = NULL;
    int n = wsg_http_parse_response((const char *)p, avail, &lim, c->x.is_head, &resp, &why);
    if (n == WSG_PARSE_PARTIAL) {
        if (c->up.eof || avail >= c->up.in.cap) {
            wsg_conn_http_error(c, c->up.eof ? WSG_R_UPSTREAM_CLOSED : WSG_R_UPSTREAM_BAD,
                                "incomplete response head");
            return 1;
        }
        return 0;
    }
    if (n < 0) {
        wsg_conn_http_error(c, WSG_R_UPSTREAM_BAD, why);
        return 1;
    }
    if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
        /* Interim response (100 Continue): pass it on and wait for the final one. */
        if (wsg_buf_room(&c->cli_ptx) < 64)
            return 0;
        char line[64];
        int m = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n\r\n", resp.status,
                         wsg_http_reason_phrase(resp.status));
        wsg_buf_put(&c->cli_ptx, line, (size_t)m);
        wsg_buf_consume(&c->up.in, (uint32_t)n);
        return 1;
    }
    if (c->st == WSG_ST_WS_UPGRADE && resp.status == 101) {
        if (resp.upgrade == NULL || !resp.conn_upgrade || resp.ws_accept == NULL ||
            resp.ws_accept->value_len != 28 || memcmp(resp.ws_accept->value, c->x.ws_accept, 28) != 0) {
            wsg_conn_http_error(c, WSG_R_UPSTREAM_BAD, "101 without a valid Sec-WebSocket-Accept");
            return 1;
        }
        const struct wsg_http_header *chosen =
            wsg_http_find(resp.headers, resp.num_headers, "Sec-WebSocket-Protocol");
        if (chosen != NULL && c->pol->nsubprotocols &&
            !wsg_match_subprotocol_one(c->pol, chosen->value, chosen->value_len)) {
            wsg_conn_http_error(c, WSG_R_UPSTREAM_BAD,
                                "upstream chose a subprotocol the route does not allow");
            return 1;
        }
        const struct wsg_http_header *ext = NULL;
        for (size_t i = 0; i < resp.num_headers; i++)
            if (resp.headers[i].name_len == 24 &&
                strncasecmp(resp.headers[i].name, "Sec-WebSocket-Extensions", 24) == 0) {
                if (ext != NULL) {
                    wsg_conn_http_error(c, WSG_R_UPSTREAM_BAD,
                                        "upstream sent Sec-WebSocket-Extensions twice");
                    return 1;
                }
                ext = &resp.headers[i];
            }
        if (ext != NULL) {
            const char *zwhy = NULL;
            if (!c->x.z_offered) {
                wsg_conn_http_error(c, WSG_R_UPSTREAM_BAD,
                                    "upstream accepted an extension that was not offered");
                return 1;
            }
            if (wsg_ws_deflate_answer(ext->value, ext->value_len, &c->x.z_offer, &c->x.z_neg, &zwhy) != 0) {
                clog(WSG_LOG_WARN, c, "upstream %s: permessage-deflate answer refused: %s",
                     c->peer ? c->peer->name : "", zwhy);
                wsg_conn_http_error(c, WSG_R_UPSTREAM_BAD, zwhy);
                return 1;
            }
            c->x.z_on = 1;
        }
        char cookie[160], extra[360];
        resp.extra_headers = affinity_set_cookie(c, cookie, sizeof(cookie));
        resp.pass_extensions = c->x.z_on;
        if (c->x.z_on && c->pol->deflate_client_no_context && !c->x.z_neg.client_no_context) {
            /* RFC 7692 §7.1.1.2: a server may require client_no_context_takeover although the
             * client did not offer it; the upstream's inflater reads such messages as well */
            c->x.z_neg.client_no_context = 1;
            char zans[160];
            size_t zl = wsg_ws_deflate_format(&c->x.z_neg, zans, sizeof(zans));
            int w = snprintf(extra, sizeof(extra), "Sec-WebSocket-Extensions: %.*s\r\n%s", (int)zl, zans,
                             resp.extra_headers != NULL ? resp.extra_headers : "");
            if (zl == 0 || w <= 0 || (size_t)w >= sizeof(extra)) {
                wsg_conn_http_error(c, WSG_R_UPSTREAM_BAD, "permessage-deflate answer too long");
                return 1;
            }
            resp.extra_headers = extra;
            resp.pass_extensions = 0; /* the upstream's line is replaced by ours */
        }
        if (wsg_http_write_response(&resp, 1, &c->cli_ptx) != 0)
            return 0; /* wait for room */
        wsg_buf_consume(&c->up.in, (uint32_t)n);
        c->x.status = 101;
        c->x.resp_started = 1;
        if (wsg_conn_ws_start(c) != 0) {
            c->reason = WSG_R_NOMEM;
            c->flags |= WSG_CF_DESTROY;
        }
        return 1;
    }
    if (resp.status == 101) {
        wsg_conn_http_error(c, WSG_R_UPSTREAM_BAD, "101 to a request that did not ask to upgrade");
        return 1;
    }
    if (c->st == WSG_ST_WS_UPGRADE) {
        set_state(c, WSG_ST_HTTP); /* the upstream refused the upgrade: relay its answer as plain HTTP */
        c->x.keep_alive = 0;
        wsg_conn_ws_ip_release(c);
    }
    if (resp.body == WSG_BODY_EOF)
        c->x.keep_alive = 0;
    char cookie[160];
    resp.extra_headers = affinity_set_cookie(c, cookie, sizeof(cookie));
    if (wsg_http_write_response(&resp, c->x.keep_alive, &c->cli_ptx) != 0)
        return 0;
    wsg_buf_consume(&c->up.in, (uint32_t)n);
    c->x.status = resp.status;
    c->x.resp_started = 1;
    c->x.resp_body = resp.body;
    c->x.resp_left = resp.content_length;
    c->x.up_keep = resp.keep_alive;
    if (resp.body == WSG_BODY_NONE || (resp.body == WSG_BODY_LENGTH && resp.content_length == 0)) {
        c->x.resp_done = 1;
        finish_exchange(c);
    }
    return 1;
}

int wsg_conn_http_resp_body(struct wsg_conn *c)
{
    uint32_t avail;
    const uint8_t *p = wsg_buf_peek(&c->up.in, &avail);
    uint32_t room = wsg_buf_room(&c->cli_ptx);
    if (p == NULL) {
        if (c->up.eof) {
            if (c->x.resp_body == WSG_BODY_EOF) {
                c->x.resp_done = 1;
                finish_exchange(c);
            } else {
                c->reason = WSG_R_UPSTREAM_CLOSED;
                clog(WSG_LOG_WARN, c, "upstream %s closed mid-response", c->peer ? c->peer->name : "");
                wsg_conn_log_http(c);
                wsg_conn_start_closing(c);
            }
            return 1;
        }
        return 0;
    }
    if (room == 0)
        return 0;
    uint32_t n = avail < room ? avail : room;
    if (c->x.resp_body == WSG_BODY_LENGTH) {
        if (n > c->x.resp_left)
            n = (uint32_t)c->x.resp_left;
        c->x.resp_left -= n;
        if (c->x.resp_left == 0)
            c->x.resp_done = 1;
    } else if (c->x.resp_body == WSG_BODY_CHUNKED) {
        const char *why = NULL;
        long m = wsg_http_chunked_scan(&c->x.resp_ch, p, n, &why);
        if (m < 0) {
            c->reason = WSG_R_UPSTREAM_BAD;
            clog(WSG_LOG_WARN, c, "upstream %s: bad chunked body: %s", c->peer ? c->peer->name : "", why);
            wsg_conn_start_closing(c);
            return 1;
        }
        n = (uint32_t)m;
        if (c->x.resp_ch.done)
            c->x.resp_done = 1;
    }
    wsg_buf_put(&c->cli_ptx, p, n);
    wsg_buf_consume(&c->up.in, n);
    c->x.resp_bytes += n;
    if (c->x.resp_done) {
        if (wsg_buf_len(&c->up.in) > 0)
            c->x.up_keep = 0; /* the upstream sent more than the response: never reuse it */
        finish_exchange(c);
    }
    return n > 0 || c->x.resp_done;
}
