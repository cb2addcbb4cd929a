/*
 * conn.c - one client connection: its sockets, the pump that moves bytes through its six buffers,
 * its closing sequence, its libev callbacks and its life from accept to free.
 *
 *   client socket -> cli.in -> TLS -> cli_plain -> HTTP head / body | WS relay c2u -> up.out -> upstream
 *   upstream -> up.in -> HTTP head / body | WS relay u2c -> cli_ptx -> TLS -> cli.out -> client socket
 *
 * The stages themselves live next door (conn-int.h lists them): TLS in conn-tls.c, the HTTP/1.1
 * exchange in conn-http.c, the WebSocket session in conn-ws.c, the access log in conn-log.c.
 * This file decides when they run.
 *
 * Rules (docs/ARCHITECTURE.md, "The connection pump"):
 * - every libev callback ends in wsg_conn_proceed(); only its tail frees a connection;
 * - a stage runs only while its input has bytes and its output has room, and a socket is read
 *   only while its first buffer is under the high watermark, so memory per connection is bounded
 *   by the buffer sizes whatever the message sizes;
 * - WebSocket frames are relayed one by one by frames/ (never a whole message in memory).
 */
#include "gateway/conn-int.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls/tls.h"

const char *const wsg_conn_state_names[] = {"tls", "head", "http", "upgrade", "ws", "closing"};

#define LINGER_SECONDS 2.0

static void on_client_io(EV_P_ ev_io *io, int revents);
static void on_upstream_io(EV_P_ ev_io *io, int revents);
static void on_timer(EV_P_ ev_timer *t, int revents);
static void on_resume(EV_P_ ev_timer *t, int revents);

/* ------------------------------------------------------------------ sockets */

void wsg_conn_side_close(struct wsg_conn *c, struct wsg_side *s)
{
    if (s->fd < 0)
        return;
    ev_io_stop(c->w->loop, &s->io);
    close(s->fd);
    s->fd = -1;
    s->armed = 0;
    s->connecting = 0;
}

/* read() into s->in until EAGAIN, the buffer is full, or 8 rounds (fairness). */
static void sock_fill(struct wsg_conn *c, struct wsg_side *s)
{
    for (int round = 0; round < 8 && s->fd >= 0 && !s->eof; round++) {
        uint32_t room;
        uint8_t *p = wsg_buf_reserve(&s->in, &room);
        if (p == NULL) {
            if (s->in.base == NULL) { /* out of memory: this connection only */
                c->reason = WSG_R_NOMEM;
                c->flags |= WSG_CF_DESTROY;
            }
            return;
        }
        ssize_t n = recv(s->fd, p, room, 0);
        if (n > 0) {
            s->rx += (uint64_t)n;
            if ((c->flags & WSG_CF_LINGER) && s == &c->cli)
                continue; /* lingering: discard */
            wsg_buf_commit(&s->in, (uint32_t)n);
            if ((uint32_t)n < room)
                return;
        } else if (n == 0) {
            s->eof = 1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else {
            s->eof = 1;
            s->err = 1;
        }
    }
}

/* send() s->out until EAGAIN or empty: write before waiting. Returns 1 if anything was sent
 * (room was made, so a stage that waited for it may run again). */
static int sock_flush(struct wsg_conn *c, struct wsg_side *s)
{
    WSG_UNUSED(c);
    int sent = 0;
    while (s->fd >= 0 && !s->connecting && !s->err && wsg_buf_len(&s->out) > 0) {
        uint32_t len;
        const uint8_t *p = wsg_buf_peek(&s->out, &len);
        ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            s->tx += (uint64_t)n;
            wsg_buf_consume(&s->out, (uint32_t)n);
            sent = 1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            s->err = 1;
            s->eof = 1;
            break;
        }
    }
    return sent;
}

static void fmt_addr(const struct sockaddr *sa, char *ip, size_t iplen, unsigned *port)
{
    ip[0] = '\0';
    *port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)iplen);
        *port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, (socklen_t)iplen);
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)iplen);
        *port = ntohs(in6->sin6_port);
    }
}

/* ------------------------------------------------------------------ upstream connect */

int wsg_conn_upstream_open(struct wsg_conn *c)
{
    struct wsg_upstreams *ups = c->ups;
    for (;;) {
        struct wsg_peer *p = NULL;
        /* affinity cookie: the upstream it names first, while it is up and untried */
        unsigned aff = c->x.aff_peer;
        if (aff != 0 && !(c->tried & (1ull << (aff - 1))) &&
            wsg_upstream_is_up(&ups->peers[aff - 1], now_of(c)))
            p = &ups->peers[aff - 1];
        if (p == NULL)
            p = wsg_upstream_pick(ups, (const struct sockaddr *)&c->peer_addr, c->tried, now_of(c));
        if (p == NULL)
            return -1;
        c->peer = p;
        c->tried |= 1ull << wsg_upstream_index(ups, p);
        int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            clog(WSG_LOG_ERROR, c, "socket: %s", strerror(errno));
            return -1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int r = connect(fd, (const struct sockaddr *)&p->addr, p->addrlen);
        if (r == 0 || errno == EINPROGRESS) {
            c->up.fd = fd;
            c->up.eof = c->up.err = 0;
            c->up.connecting = r != 0;
            ev_io_init(&c->up.io, on_upstream_io, fd, 0);
            c->up.armed = 0;
            if (r == 0) {
                wsg_upstream_release(ups, p, 0, now_of(c));
                wsg_m_add(&metrics(c)->c[WSG_M_UPSTREAM_CONNECTS], 1);
            }
            set_deadline(c, cfg_of(c)->connect_timeout);
            return 0;
        }
        clog(WSG_LOG_WARN, c, "upstream %s: connect: %s", p->name, strerror(errno));
        wsg_m_add(&metrics(c)->c[WSG_M_UPSTREAM_CONNECT_FAILS], 1);
        close(fd);
        wsg_upstream_release(ups, p, 1, now_of(c));
    }
}

/* The connect finished (or timed out): on failure try the next-ranked peer. Nothing has been
 * sent yet, so a retry cannot duplicate a request. */
static void upstream_connected(struct wsg_conn *c, int timed_out)
{
    struct wsg_upstreams *ups = c->ups;
    int err = 0;
    socklen_t len = sizeof(err);
    if (timed_out)
        err = ETIMEDOUT;
    else if (getsockopt(c->up.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0) {
        c->up.connecting = 0;
        wsg_m_add(&metrics(c)->c[WSG_M_UPSTREAM_CONNECTS], 1);
        wsg_upstream_release(ups, c->peer, 0, now_of(c));
        set_deadline(c, c->st == WSG_ST_WS ? cfg_of(c)->ws_idle_timeout : cfg_of(c)->upstream_timeout);
        return;
    }
    clog(WSG_LOG_WARN, c, "upstream %s: connect: %s", c->peer->name, strerror(err));
    wsg_m_add(&metrics(c)->c[WSG_M_UPSTREAM_CONNECT_FAILS], 1);
    wsg_upstream_release(ups, c->peer, 1, now_of(c));
    wsg_conn_side_close(c, &c->up);
    if (wsg_conn_upstream_open(c) != 0)
        wsg_conn_http_error(c, WSG_R_UPSTREAM_DOWN, "every upstream refused");
}

/* ------------------------------------------------------------------ the pump */

/* The client-to-upstream stage for the state: a request head, a request body, or the c2u relay
 * (which conn-ws.c runs together with u2c). */
static int pump_request(struct wsg_conn *c)
{
    switch (c->st) {
    case WSG_ST_REQ_HEAD:
        if (wsg_buf_len(&c->cli_plain) == 0) {
            if (c->cli.eof) {
                c->reason = WSG_R_NONE;
                wsg_conn_start_closing(c);
                return 1;
            }
            return 0;
        }
        if (c->nreq > 0 && c->deadline - now_of(c) > cfg_of(c)->header_timeout)
            set_deadline(c, cfg_of(c)->header_timeout); /* first bytes of the next request */
        return wsg_conn_http_head(c);
    case WSG_ST_HTTP:
        return wsg_conn_http_req_body(c);
    case WSG_ST_WS:
        return wsg_conn_ws_pump(c);
    default:
        return 0;
    }
}

/* The upstream-to-client stage for the state: a response head (or the 101), a response body. */
static int pump_response(struct wsg_conn *c)
{
    switch (c->st) {
    case WSG_ST_HTTP:
        if (c->up.connecting)
            return 0;
        if (!c->x.resp_started)
            return wsg_conn_http_resp_head(c);
        return wsg_conn_http_resp_body(c);
    case WSG_ST_WS_UPGRADE:
        if (c->up.connecting)
            return 0;
        return wsg_conn_http_resp_head(c);
    case WSG_ST_REQ_HEAD:
        /* An idle kept-alive upstream may only close; anything else makes it unusable. */
        if (c->up.fd >= 0 && (c->up.eof || wsg_buf_len(&c->up.in) > 0)) {
            wsg_conn_side_close(c, &c->up);
            wsg_buf_free(&c->up.in);
        }
        return 0;
    default:
        return 0;
    }
}

/* Enters CLOSING: the last bytes are encrypted and flushed, then the write side is shut and the
 * client's remaining input is discarded until it closes or LINGER_SECONDS pass (nginx's lingering
 * close), so that our final bytes are not destroyed by a TCP reset. */
void wsg_conn_start_closing(struct wsg_conn *c)
{
    if (c->st == WSG_ST_CLOSING)
        return;
    if (c->st == WSG_ST_WS)
        wsg_conn_log_ws(c);
    set_state(c, WSG_ST_CLOSING);
    set_deadline(c, LINGER_SECONDS + 3.0);
}

static void closing_step(struct wsg_conn *c)
{
    if (c->up.fd >= 0 && (wsg_buf_len(&c->up.out) == 0 || c->up.err || c->up.connecting))
        wsg_conn_side_close(c, &c->up);
    if (c->flags & WSG_CF_LINGER) {
        if (c->cli.eof || c->cli.err || (wsg_buf_len(&c->cli.out) == 0 && c->tls == NULL))
            c->flags |= WSG_CF_DESTROY;
        if (wsg_buf_len(&c->cli.out) == 0 && c->cli.fd >= 0)
            shutdown(c->cli.fd, SHUT_WR);
        return;
    }
    if (wsg_buf_len(&c->cli_ptx) == 0 && wsg_buf_len(&c->cli.out) == 0) {
        if (c->tls != NULL)
            wsg_tls_close_notify(c->tls);
        c->flags |= WSG_CF_LINGER;
        wsg_buf_consume(&c->cli.in, wsg_buf_len(&c->cli.in));
        set_deadline(c, LINGER_SECONDS);
    }
    if (c->cli.err)
        c->flags |= WSG_CF_DESTROY;
}

static void update_side(struct wsg_conn *c, struct wsg_side *s, int want)
{
    if (s->fd < 0 || want == s->armed)
        return;
    ev_io_stop(c->w->loop, &s->io);
    ev_io_set(&s->io, s->fd, want);
    if (want)
        ev_io_start(c->w->loop, &s->io);
    s->armed = want;
}

/* One place decides which watchers are armed (h2o update_read_state). */
static void update_io(struct wsg_conn *c)
{
    int cw = 0, uw = 0;
    if (!c->cli.eof && !wsg_buf_above_hiwat(&c->cli.in))
        cw |= EV_READ;
    if (wsg_buf_len(&c->cli.out) > 0)
        cw |= EV_WRITE;
    if (c->up.fd >= 0) {
        if (c->up.connecting) {
            uw = EV_WRITE;
        } else {
            if (!c->up.eof && !wsg_buf_above_hiwat(&c->up.in))
                uw |= EV_READ;
            if (wsg_buf_len(&c->up.out) > 0)
                uw |= EV_WRITE;
        }
    }
    update_side(c, &c->cli, cw);
    update_side(c, &c->up, uw);
}

static void conn_destroy(struct wsg_conn *c)
{
    struct wsg_worker *w = c->w;
    if (c->st == WSG_ST_WS)
        wsg_conn_log_ws(c);
    clog(WSG_LOG_DEBUG, c, "closed in %s: %s, client rx %llu tx %llu, upstream rx %llu tx %llu, %.3fs",
         wsg_conn_state_names[c->st], wsg_reasons[c->reason].text, (unsigned long long)c->cli.rx,
         (unsigned long long)c->cli.tx, (unsigned long long)c->up.rx, (unsigned long long)c->up.tx,
         now_of(c) - c->t_start);
    ev_timer_stop(w->loop, &c->timer);
    ev_timer_stop(w->loop, &c->ws_timer);
    ev_timer_stop(w->loop, &c->tls_idle);
    ev_timer_stop(w->loop, &c->resume);
    wsg_conn_ws_ip_release(c);
    if (c->peer_session)
        __atomic_sub_fetch(&c->peer->sessions, 1, __ATOMIC_RELAXED);
    if (c->conn_ip_counted)
        wsg_iptable_conn_end(w->sh->ipt, &c->conn_ipkey);
    __atomic_sub_fetch(&w->sh->live_conns, 1, __ATOMIC_RELAXED);
    wsg_conn_side_close(c, &c->cli);
    wsg_conn_side_close(c, &c->up);
    wsg_ws_relay_free(c->c2u);
    wsg_ws_relay_free(c->u2c);
    wsg_tls_free(c->tls);
    wsg_buf_free(&c->cli.in);
    wsg_buf_free(&c->cli.out);
    wsg_buf_free(&c->cli_plain);
    wsg_buf_free(&c->cli_ptx);
    wsg_buf_free(&c->up.in);
    wsg_buf_free(&c->up.out);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    wsg_m_gauge(&w->m.conns_in_state[c->st], -1);
    free(c);
}

void wsg_conn_proceed(struct wsg_conn *c)
{
    int progress, rounds = 0;
    do {
        progress = wsg_conn_proxy_in(c);
        progress += wsg_conn_tls_in(c);
        progress += pump_request(c);
        progress += pump_response(c);
        progress += wsg_conn_tls_out(c);
        if (c->st == WSG_ST_CLOSING)
            closing_step(c);
        if (c->flags & WSG_CF_DESTROY)
            break;
        /* Write before waiting; what a flush frees lets the stages above run again. */
        progress += sock_flush(c, &c->cli);
        progress += sock_flush(c, &c->up);
    } while (progress > 0 && ++rounds < 64);
    if (!(c->flags & WSG_CF_DESTROY)) {
        if (c->st == WSG_ST_CLOSING)
            closing_step(c);
        if (c->cli.err && c->st != WSG_ST_CLOSING)
            c->flags |= WSG_CF_DESTROY; /* the client is gone: nobody to answer */
    }
    if (c->flags & WSG_CF_DESTROY) {
        conn_destroy(c);
        return;
    }
    if (rounds >= 64 && !ev_is_active(&c->resume)) {
        /* Yield to the other connections and come back on the next loop turn. Not ev_feed_event:
         * libev invokes an event fed from a callback in the same turn, before the I/O already
         * pending for other connections (a connection that keeps moving bytes would hold the
         * worker). A 0 s timer is due only after the next poll, with everybody else's events. */
        ev_timer_set(&c->resume, 0., 0.);
        ev_timer_start(c->w->loop, &c->resume);
    }
    /* Empty buffers go back to the allocator: an idle connection then holds no buffer memory
     * at all, only its TLS and codec state. */
    wsg_buf_shrink(&c->cli.in);
    wsg_buf_shrink(&c->cli_plain);
    wsg_buf_shrink(&c->cli_ptx);
    wsg_buf_shrink(&c->cli.out);
    wsg_buf_shrink(&c->up.in);
    wsg_buf_shrink(&c->up.out);
    wsg_conn_tls_note_burst(c); /* and mbedTLS's record buffers once idle for a second */
    update_io(c);
}

/* ------------------------------------------------------------------ callbacks */

static void on_client_io(EV_P_ ev_io *io, int revents)
{
    WSG_UNUSED(loop);
    struct wsg_conn *c = container_of(io, struct wsg_conn, cli.io);
    if (revents & EV_READ)
        sock_fill(c, &c->cli);
    if (revents & EV_WRITE)
        sock_flush(c, &c->cli);
    wsg_conn_proceed(c);
}

static void on_upstream_io(EV_P_ ev_io *io, int revents)
{
    WSG_UNUSED(loop);
    struct wsg_conn *c = container_of(io, struct wsg_conn, up.io);
    if (c->up.connecting && (revents & (EV_WRITE | EV_READ)))
        upstream_connected(c, 0);
    if (c->up.fd >= 0 && !c->up.connecting) {
        if (revents & EV_READ) {
            uint64_t before = c->up.rx;
            sock_fill(c, &c->up);
            if (c->up.rx != before && c->st == WSG_ST_HTTP)
                c->deadline = ev_now(loop) + cfg_of(c)->upstream_timeout;
        }
        if (revents & EV_WRITE)
            sock_flush(c, &c->up);
    }
    wsg_conn_proceed(c);
}

/* The pump yielded (wsg_conn_proceed): its turn again. */
static void on_resume(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(revents);
    wsg_conn_proceed(container_of(t, struct wsg_conn, resume));
}

static void on_timer(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    struct wsg_conn *c = container_of(t, struct wsg_conn, timer);
    double left = c->deadline - ev_now(loop);
    if (left > 0.001) {
        ev_timer_set(t, left, 0.);
        ev_timer_start(loop, t);
        return;
    }
    switch (c->st) {
    case WSG_ST_TLS_HANDSHAKE:
        if (c->flags & WSG_CF_PROXY_HDR) { /* the header must arrive whole within handshake_timeout */
            c->reason = WSG_R_PROXY_HEADER;
            wsg_m_add(&metrics(c)->c[WSG_M_PROXY_INCOMPLETE], 1);
            clog(WSG_LOG_INFO, c, "closed: no whole PROXY header within handshake_timeout");
        } else {
            c->reason = WSG_R_TLS_TIMEOUT;
            wsg_m_add(&metrics(c)->c[WSG_M_TLS_TIMEOUT], 1);
        }
        c->flags |= WSG_CF_DESTROY;
        break;
    case WSG_ST_REQ_HEAD:
        if (wsg_buf_len(&c->cli_plain) > 0 || c->nreq == 0) {
            wsg_conn_http_error(c, WSG_R_HEADER_TIMEOUT, NULL);
        } else {
            c->reason = WSG_R_IDLE;
            wsg_conn_start_closing(c);
        }
        break;
    case WSG_ST_HTTP:
    case WSG_ST_WS_UPGRADE:
        if (c->up.connecting) {
            upstream_connected(c, 1);
        } else {
            clog(WSG_LOG_WARN, c, "upstream %s: no answer within upstream_timeout",
                 c->peer ? c->peer->name : "");
            wsg_conn_http_error(c, WSG_R_UPSTREAM_TIMEOUT, NULL);
        }
        break;
    case WSG_ST_WS:
        if (c->up.connecting) {
            upstream_connected(c, 1);
        } else if (c->flags & (WSG_CF_CLOSE_CLI | WSG_CF_CLOSE_UP)) {
            wsg_conn_start_closing(c); /* the close handshake did not finish in time */
        } else {
            wsg_conn_ws_fail(c, WSG_R_WS_IDLE, 1001, "idle timeout", 1001, "idle timeout");
            set_deadline(c, 5.0);
        }
        break;
    case WSG_ST_CLOSING:
        c->flags |= WSG_CF_DESTROY;
        break;
    }
    wsg_conn_proceed(c);
}

/* ------------------------------------------------------------------ lifecycle */

/* max_connections_per_ip for the client at sa: @return 1 counted (ipk filled: release it at the
 * end), 0 no limit set, -1 over the limit. */
static int ip_conn_begin(struct wsg_worker *w, const struct wsg_cfg *cfg, const struct sockaddr *sa,
                         struct wsg_ip_key *ipk)
{
    if (!cfg->max_connections_per_ip)
        return 0;
    struct wsg_policy lim = {.ip_max_conns = cfg->max_connections_per_ip};
    wsg_ip_key_make(ipk, UINT32_MAX, sa);
    return wsg_iptable_conn_begin(w->sh->ipt, ipk, &lim, ev_now(w->loop)) > 0 ? -1 : 1;
}

/* A balancer outside proxy_protocol_from may not speak for its clients. */
static int proxy_trusted(const struct wsg_cfg *cfg, const struct sockaddr *peer)
{
    for (unsigned i = 0; i < cfg->nproxy_from; i++)
        if (wsg_cidr_match(&cfg->proxy_from[i], peer))
            return 1;
    return 0;
}

int wsg_conn_proxy_in(struct wsg_conn *c)
{
    if (!(c->flags & WSG_CF_PROXY_HDR) || (c->flags & WSG_CF_DESTROY))
        return 0;
    uint32_t len;
    const uint8_t *p = wsg_buf_peek(&c->cli.in, &len);
    struct wsg_proxy_hdr h;
    const char *why = NULL;
    int n = wsg_proxy_parse(p ? p : (const uint8_t *)"", len, &h, &why);
    if (n == WSG_PARSE_PARTIAL) {
        if (c->cli.eof || c->cli.err) {
            wsg_m_add(&metrics(c)->c[WSG_M_PROXY_INCOMPLETE], 1);
            clog(WSG_LOG_INFO, c, "closed: connection ended inside its PROXY header (%u bytes)", len);
            c->reason = WSG_R_PROXY_HEADER;
            c->flags |= WSG_CF_DESTROY;
        }
        return 0;
    }
    if (n < 0) {
        wsg_m_add(&metrics(c)->c[WSG_M_PROXY_INVALID], 1);
        clog(WSG_LOG_INFO, c, "closed: bad PROXY header: %s", why ? why : "invalid");
        c->reason = WSG_R_PROXY_HEADER;
        c->flags |= WSG_CF_DESTROY;
        return 0;
    }
    wsg_buf_consume(&c->cli.in, (uint32_t)n);
    c->flags &= ~WSG_CF_PROXY_HDR;
    if (wsg_proxy_has_addr(&h)) {
        char was[INET6_ADDRSTRLEN];
        unsigned was_port = c->peer_port;
        memcpy(was, c->peer_ip, sizeof(was));
        memcpy(&c->peer_addr, &h.src, sizeof(c->peer_addr));
        fmt_addr((const struct sockaddr *)&c->peer_addr, c->peer_ip, sizeof(c->peer_ip), &c->peer_port);
        wsg_m_add(&metrics(c)->c[WSG_M_PROXY_OK], 1);
        clog(WSG_LOG_DEBUG, c, "PROXY v%d header from %s:%u", h.version, was, was_port);
    } else {
        /* LOCAL (the balancer's own health check), UNKNOWN, AF_UNSPEC, AF_UNIX: the socket's own
         * addresses stay (spec 2.1, 2.2). */
        wsg_m_add(&metrics(c)->c[h.command == WSG_PROXY_LOCAL ? WSG_M_PROXY_LOCAL : WSG_M_PROXY_OK], 1);
    }
    struct wsg_ip_key ipk;
    int counted = ip_conn_begin(c->w, cfg_of(c), (const struct sockaddr *)&c->peer_addr, &ipk);
    if (counted < 0) {
        wsg_m_add(&metrics(c)->c[WSG_M_REFUSED], 1);
        clog(WSG_LOG_INFO, c, "closed: max_connections_per_ip");
        c->reason = WSG_R_IP_LIMIT;
        c->flags |= WSG_CF_DESTROY;
        return 0;
    }
    if (counted > 0) {
        c->conn_ipkey = ipk;
        c->conn_ip_counted = 1;
    }
    return 1;
}

void wsg_conn_new(struct wsg_worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen, int proxy)
{
    const struct wsg_runtime *rt = wsg_shared_rt(w->sh);
    const struct wsg_cfg *cfg = rt->cfg;
    /* max_connections and max_connections_per_ip: refused by closing at once, before any TLS
     * work (HAProxy maxconn would queue; a gateway under a flood should shed load instead). On a
     * proxy_protocol listener the peer is the balancer: the per-IP count waits for the header's
     * address (wsg_conn_proxy_in). */
    unsigned long live = __atomic_add_fetch(&w->sh->live_conns, 1, __ATOMIC_RELAXED);
    struct wsg_ip_key ipk;
    int ip_counted = 0;
    if (proxy && !proxy_trusted(cfg, peer)) {
        wsg_m_add(&w->m.c[WSG_M_PROXY_UNTRUSTED], 1);
        if (wsg_log_on(WSG_LOG_INFO)) {
            char ip[INET6_ADDRSTRLEN];
            unsigned port;
            fmt_addr(peer, ip, sizeof(ip), &port);
            wsg_log(WSG_LOG_INFO, "[%s:%u] closed: PROXY protocol listener, peer not in proxy_protocol_from",
                    ip, port);
        }
        goto refuse_quiet;
    }
    if (cfg->max_connections && live > cfg->max_connections)
        goto refuse;
    if (!proxy && (ip_counted = ip_conn_begin(w, cfg, peer, &ipk)) < 0)
        goto refuse;
    struct wsg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (ip_counted > 0)
            wsg_iptable_conn_end(w->sh->ipt, &ipk);
        goto refuse;
    }
    if (ip_counted > 0) {
        c->conn_ipkey = ipk;
        c->conn_ip_counted = 1;
    }
    if (proxy)
        c->flags |= WSG_CF_PROXY_HDR;
    c->w = w;
    c->rt = rt;
    c->pol = &cfg->policy;
    c->id = ++w->next_id * 64 + (uint64_t)w->id;
    memcpy(&c->peer_addr, peer, peerlen < sizeof(c->peer_addr) ? peerlen : sizeof(c->peer_addr));
    fmt_addr(peer, c->peer_ip, sizeof(c->peer_ip), &c->peer_port);
    c->t_start = ev_now(w->loop);
    c->cli.fd = fd;
    c->up.fd = -1;
    wsg_buf_setup(&c->cli.in, cfg->buffer_size);
    wsg_buf_setup(&c->cli.out, cfg->buffer_size);
    wsg_buf_setup(&c->cli_plain, cfg->buffer_size);
    wsg_buf_setup(&c->cli_ptx, cfg->buffer_size);
    wsg_buf_setup(&c->up.in, cfg->buffer_size);
    wsg_buf_setup(&c->up.out, cfg->buffer_size);
    c->tls = wsg_tls_new(w->sh->tls, &c->cli.in, &c->cli.out);
    ev_io_init(&c->cli.io, on_client_io, fd, 0);
    ev_io_init(&c->up.io, on_upstream_io, -1, 0);
    ev_init(&c->timer, on_timer);
    ev_init(&c->ws_timer, wsg_conn_ws_on_timer);
    ev_init(&c->tls_idle, wsg_conn_tls_on_idle);
    ev_init(&c->resume, on_resume);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    wsg_m_add(&w->m.c[WSG_M_ACCEPTED], 1);
    wsg_m_gauge(&w->m.conns_in_state[WSG_ST_TLS_HANDSHAKE], +1);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->tls == NULL) {
        c->reason = WSG_R_NOMEM;
        c->flags |= WSG_CF_DESTROY;
    }
    if (w->draining)
        c->flags |= WSG_CF_DRAINING;
    set_deadline(c, cfg->handshake_timeout);
    ev_feed_event(w->loop, &c->cli.io, EV_READ); /* the ClientHello is usually already there */
    update_io(c);
    return;
refuse:
    wsg_m_add(&w->m.c[WSG_M_REFUSED], 1);
refuse_quiet:
    __atomic_sub_fetch(&w->sh->live_conns, 1, __ATOMIC_RELAXED);
    close(fd);
}

void wsg_conn_drain(struct wsg_conn *c)
{
    c->flags |= WSG_CF_DRAINING;
    switch (c->st) {
    case WSG_ST_TLS_HANDSHAKE:
        c->flags |= WSG_CF_DESTROY;
        break;
    case WSG_ST_REQ_HEAD:
        if (wsg_buf_len(&c->cli_plain) == 0) {
            c->reason = WSG_R_SHUTDOWN;
            wsg_conn_start_closing(c);
        }
        break;
    case WSG_ST_WS:
        wsg_conn_ws_drain(c);
        break;
    default:
        c->x.keep_alive = 0;
        break;
    }
    wsg_conn_proceed(c);
}

void wsg_conn_upstream_changed(struct wsg_conn *c)
{
    if (c->peer == NULL)
        return;
    int draining = __atomic_load_n(&c->peer->draining, __ATOMIC_ACQUIRE);
    if (c->st == WSG_ST_WS) {
        double spread = __atomic_load_n(&c->peer->drain_spread_ms, __ATOMIC_RELAXED) / 1000.0;
        wsg_conn_ws_upstream_drain(c, spread, !draining);
    } else if (c->st == WSG_ST_REQ_HEAD && draining && c->up.fd >= 0) {
        /* between two requests: the next one goes elsewhere anyway */
        wsg_conn_side_close(c, &c->up);
        wsg_buf_free(&c->up.in);
    } else {
        return;
    }
    wsg_conn_proceed(c);
}

void wsg_conn_abort(struct wsg_conn *c)
{
    if (c->reason == WSG_R_NONE)
        c->reason = WSG_R_SHUTDOWN;
    conn_destroy(c);
}

struct wsg_conn *wsg_conn_next(const struct wsg_conn *c)
{
    return c->next;
}
