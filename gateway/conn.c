/*
 * conn.c - one client connection: its state machine, its five buffers and the pump that moves
 * bytes through them.
 *
 *   client socket -> cli.in -> TLS -> cli_plain -> HTTP head / body | WS relay c2u -> up.out -> upstream
 *   upstream -> up.in -> HTTP head / body | WS relay u2c -> cli_ptx -> TLS -> cli.out -> client socket
 *
 * Rules (DESIGN §3):
 * - every libev callback ends in conn_proceed(); only its tail frees a connection;
 * - a stage runs only while its input has bytes and its output has room, and a socket is read
 *   only while its first buffer is under the high watermark, so memory per connection is bounded
 *   by the buffer sizes whatever the message sizes;
 * - WebSocket frames are relayed one by one by frames/ (never a whole message in memory).
 */
#include "gateway/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/sockios.h>
#include <math.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frames/ws.h"
#include "gateway/buf.h"
#include "gateway/http1.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "tls/tls.h"

enum wsg_state {
    WSG_ST_TLS_HANDSHAKE, /* TLS handshake in progress */
    WSG_ST_REQ_HEAD,      /* waiting for the (next) request head */
    WSG_ST_HTTP,          /* a request/response exchange is under way */
    WSG_ST_WS_UPGRADE,    /* upgrade forwarded, waiting for the upstream's 101 */
    WSG_ST_WS,            /* relaying frames both ways */
    WSG_ST_CLOSING        /* flushing what is left, then lingering until the client closes */
};

static const char *const state_names[] = {"tls", "head", "http", "upgrade", "ws", "closing"};

#define WSG_CF_DESTROY 0x01   /* conn_proceed's tail frees the connection */
#define WSG_CF_DRAINING 0x02  /* no keep-alive; WebSockets get 1001 */
#define WSG_CF_CLOSE_CLI 0x04 /* WS: gateway close queued to the client; stop reading it */
#define WSG_CF_CLOSE_UP 0x08  /* WS: gateway close queued to the upstream; stop reading it */
#define WSG_CF_LINGER 0x10    /* CLOSING: write side shut, discarding input until EOF or timer */
#define WSG_CF_UP_REUSED 0x20 /* this exchange runs on a kept-alive upstream connection */

#define LINGER_SECONDS 2.0

struct wsg_side {
    int fd;
    ev_io io;
    int armed; /* events currently set on io */
    struct wsg_buf in, out;
    unsigned eof : 1;        /* read returned 0 (or the TLS peer sent close_notify) */
    unsigned err : 1;        /* the socket failed */
    unsigned connecting : 1; /* upstream: non-blocking connect in progress */
    uint64_t rx, tx;         /* socket bytes */
};

struct wsg_xchg {
    char method[16];
    char target[512];
    int is_head;
    int keep_alive; /* keep the client connection after this exchange */
    enum wsg_http_body req_body;
    uint64_t req_left, req_total;
    struct wsg_http_chunked req_ch;
    unsigned req_done : 1;
    unsigned resp_started : 1;
    unsigned resp_done : 1;
    unsigned up_keep : 1; /* the upstream allows reuse */
    enum wsg_http_body resp_body;
    uint64_t resp_left;
    struct wsg_http_chunked resp_ch;
    int status;
    uint64_t resp_bytes;
    double t0;
    char ws_accept[29];
};

struct wsg_conn {
    struct wsg_conn *next, *prev;
    struct wsg_worker *w;
    uint64_t id;
    struct sockaddr_storage peer_addr;
    char peer_ip[INET6_ADDRSTRLEN];
    unsigned peer_port;
    enum wsg_state st;
    unsigned flags;
    struct wsg_side cli, up;
    struct wsg_buf cli_plain; /* decrypted client bytes */
    struct wsg_buf cli_ptx;   /* plaintext waiting to be encrypted for the client */
    struct wsg_tls *tls;
    ev_timer timer;
    double deadline;
    double t_start;
    const struct wsg_runtime *rt; /* config in force for the current exchange (kept until exit) */
    const struct wsg_policy *pol; /* the route's policy for the current exchange */
    unsigned route;               /* 0: default route; i + 1: route i */
    struct wsg_upstreams *ups;    /* the table peer belongs to */
    struct wsg_peer *peer;        /* upstream of the current/last exchange */
    uint64_t tried;               /* peers tried for the current connect */
    struct wsg_xchg x;
    struct wsg_ws_relay *c2u, *u2c;
    enum wsg_reason reason;
    int gw_close_cli, gw_close_up;   /* close codes the gateway itself sent */
    unsigned c2u_failed, u2c_failed; /* that relay's input broke RFC 6455 or a limit */
    /* policy state of a WebSocket (issue 3) */
    struct wsg_ip_key ipkey;
    unsigned ip_counted : 1;           /* counted in the per-IP table: release at the end */
    struct wsg_bucket b_msgs, b_bytes; /* per-connection client->upstream rates */
    ev_timer ws_timer;                 /* pings, pong deadline, lifetime, slow consumer, throttle */
    double throttle_until;             /* a client frame is held until then */
    double pong_due;                   /* the gateway's ping must be answered by then (0: none out) */
    double last_cli_activity;          /* last time client bytes were decoded */
    ev_timer tls_idle;                 /* gives mbedTLS's record buffers back once idle */
    double tls_busy_at;                /* end of the last burst while they were held */
    double lifetime_end;               /* 0: no max_lifetime */
    double slow_since;                 /* 0: the client keeps up */
    uint64_t cli_bytes_seen, pongs_seen;
    int retry_after;              /* seconds, for a 429/503 answer */
    double drain_at;              /* draining: when this WebSocket gets its 1001 */
    double next_progress;         /* next "ws_progress" access-log line (0: none) */
    struct wsg_ip_key conn_ipkey; /* max_connections_per_ip accounting */
    unsigned conn_ip_counted : 1;
    unsigned nreq;
};

static void conn_proceed(struct wsg_conn *c);
static void on_client_io(EV_P_ ev_io *io, int revents);
static void on_upstream_io(EV_P_ ev_io *io, int revents);
static void on_timer(EV_P_ ev_timer *t, int revents);
/* An established TLS connection with no burst for this long gives its record buffers back. */
#define TLS_IDLE_SECONDS 1.0
static void on_tls_idle(EV_P_ ev_timer *t, int revents);
static void start_closing(struct wsg_conn *c);

/* ------------------------------------------------------------------ helpers */

static double now_of(const struct wsg_conn *c)
{
    return ev_now(c->w->loop);
}

static const struct wsg_cfg *cfg_of(const struct wsg_conn *c)
{
    return c->rt->cfg;
}

static struct wsg_metrics *metrics(const struct wsg_conn *c)
{
    return &c->w->m;
}

static void set_state(struct wsg_conn *c, enum wsg_state st)
{
    wsg_m_gauge(&metrics(c)->conns_in_state[c->st], -1);
    wsg_m_gauge(&metrics(c)->conns_in_state[st], +1);
    c->st = st;
}

/* Arms the single connection timer for secs from now. The timer only ever moves earlier here;
 * when the deadline moves later, on_timer re-arms for the remainder (cheap on every frame). */
static void set_deadline(struct wsg_conn *c, double secs)
{
    c->deadline = now_of(c) + secs;
    if (ev_is_active(&c->timer)) {
        if (ev_timer_remaining(c->w->loop, &c->timer) <= secs + 0.001)
            return;
        ev_timer_stop(c->w->loop, &c->timer);
    }
    ev_timer_set(&c->timer, secs, 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

#define clog(lvl, c, fmt, ...)                                                                               \
    do {                                                                                                     \
        if (wsg_log_on(lvl))                                                                                 \
            wsg_log(lvl, "[#%llu %s:%u] " fmt, (unsigned long long)(c)->id, (c)->peer_ip, (c)->peer_port,    \
                    ##__VA_ARGS__);                                                                          \
    } while (0)

static void side_close(struct wsg_conn *c, struct wsg_side *s)
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

/* ------------------------------------------------------------------ logs */

/* The fields every access-log line starts with: time, type, connection, client, SNI (open). */
static size_t log_start(const struct wsg_conn *c, char *j, size_t cap, const char *type)
{
    struct tm tm;
    time_t t = (time_t)ev_now(c->w->loop);
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return (size_t)snprintf(
        j, cap, "{\"time\":\"%s\",\"type\":\"%s\",\"conn\":%llu,\"client\":\"%s\",\"port\":%u,\"sni\":\"", ts,
        type, (unsigned long long)c->id, c->peer_ip, c->peer_port);
}

static void log_http(struct wsg_conn *c)
{
    if (c->x.status >= 100 && c->x.status < 600)
        wsg_m_add(&metrics(c)->status[c->x.status / 100], 1);
    char j[3072];
    size_t n = log_start(c, j, sizeof(j), "http");
    const char *sni = c->tls ? wsg_tls_sni(c->tls) : NULL;
    if (sni)
        n = wsg_json_str(j, n, sizeof(j), sni, strlen(sni));
    n += (size_t)snprintf(j + n, sizeof(j) - n, "\",\"method\":\"");
    n = wsg_json_str(j, n, sizeof(j), c->x.method, strlen(c->x.method));
    n += (size_t)snprintf(j + n, sizeof(j) - n, "\",\"target\":\"");
    n = wsg_json_str(j, n, sizeof(j), c->x.target, strlen(c->x.target));
    n += (size_t)snprintf(j + n, sizeof(j) - n,
                          "\",\"status\":%d,\"upstream\":\"%s\",\"req_body\":%llu,\"resp_bytes\":%llu,"
                          "\"dur_ms\":%.1f}",
                          c->x.status, c->peer ? c->peer->name : "", (unsigned long long)c->x.req_total,
                          (unsigned long long)c->x.resp_bytes, (now_of(c) - c->x.t0) * 1000.0);
    if (n < sizeof(j))
        wsg_access(j, n);
}

static void log_ws_line(struct wsg_conn *c, const char *type);

/* The session's final access-log line, and its totals into the metrics. */
static void log_ws(struct wsg_conn *c)
{
    const struct wsg_ws_stats *a = wsg_ws_relay_stats(c->c2u), *b = wsg_ws_relay_stats(c->u2c);
    struct wsg_metrics *m = metrics(c);
    wsg_m_add(&m->c[WSG_M_C2U_BYTES], a->payload_bytes);
    wsg_m_add(&m->c[WSG_M_U2C_BYTES], b->payload_bytes);
    wsg_m_add(&m->c[WSG_M_C2U_MESSAGES], a->messages);
    wsg_m_add(&m->c[WSG_M_U2C_MESSAGES], b->messages);
    wsg_m_add(&m->c[WSG_M_C2U_FRAMES], a->frames);
    wsg_m_add(&m->c[WSG_M_U2C_FRAMES], b->frames);
    wsg_m_close(m, 0, a->close_code);
    wsg_m_close(m, 1, b->close_code);
    wsg_m_close(m, 2, c->gw_close_cli);
    wsg_m_close(m, 3, c->gw_close_up);
    log_ws_line(c, "ws");
}

/* One access-log line for a WebSocket: "ws" when it ends, "ws_progress" while it lasts. */
static void log_ws_line(struct wsg_conn *c, const char *type)
{
    const struct wsg_ws_stats *a = wsg_ws_relay_stats(c->c2u), *b = wsg_ws_relay_stats(c->u2c);
    char j[3072];
    size_t n = log_start(c, j, sizeof(j), type);
    const char *sni = wsg_tls_sni(c->tls);
    if (sni)
        n = wsg_json_str(j, n, sizeof(j), sni, strlen(sni));
    n += (size_t)snprintf(j + n, sizeof(j) - n, "\",\"target\":\"");
    n = wsg_json_str(j, n, sizeof(j), c->x.target, strlen(c->x.target));
    n += (size_t)snprintf(
        j + n, sizeof(j) - n,
        "\",\"upstream\":\"%s\",\"c2u_frames\":%llu,\"c2u_messages\":%llu,\"c2u_bytes\":%llu,"
        "\"u2c_frames\":%llu,\"u2c_messages\":%llu,\"u2c_bytes\":%llu,\"close_by_client\":%d,"
        "\"close_by_upstream\":%d,\"close_by_gateway_to_client\":%d,\"close_by_gateway_to_upstream\":%d,"
        "\"reason\":\"%s\",\"dur_ms\":%.1f}",
        c->peer ? c->peer->name : "", (unsigned long long)a->frames, (unsigned long long)a->messages,
        (unsigned long long)a->payload_bytes, (unsigned long long)b->frames, (unsigned long long)b->messages,
        (unsigned long long)b->payload_bytes, a->close_code, b->close_code, c->gw_close_cli, c->gw_close_up,
        wsg_reasons[c->reason].text, (now_of(c) - c->x.t0) * 1000.0);
    if (n < sizeof(j))
        wsg_access(j, n);
}

/* ------------------------------------------------------------------ failure answers */

/* Answers an HTTP error (before any response byte went out) and closes after it. */
static void respond_error(struct wsg_conn *c, enum wsg_reason r, const char *why)
{
    int status = wsg_reasons[r].http_status;
    if (r == WSG_R_IP_LIMIT && c->pol->ip_limit_status == 503)
        status = 503;
    c->reason = r;
    if (status == 0 || c->x.resp_started) {
        clog(WSG_LOG_INFO, c, "closing: %s%s%s", wsg_reasons[r].text, why ? ": " : "", why ? why : "");
        start_closing(c);
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
    log_http(c);
    start_closing(c);
}

/* ------------------------------------------------------------------ upstream connect */

static int upstream_open(struct wsg_conn *c)
{
    struct wsg_upstreams *ups = c->ups;
    for (;;) {
        struct wsg_peer *p =
            wsg_upstream_pick(ups, (const struct sockaddr *)&c->peer_addr, c->tried, now_of(c));
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
    side_close(c, &c->up);
    if (upstream_open(c) != 0)
        respond_error(c, WSG_R_UPSTREAM_DOWN, "every upstream refused");
}

/* ------------------------------------------------------------------ WebSocket */

static ssize_t sink_up(void *ctx, const uint8_t *data, size_t len)
{
    struct wsg_conn *c = ctx;
    size_t n = wsg_buf_put(&c->up.out, data, len);
    return n > 0 ? (ssize_t)n : WSG_AGAIN;
}

static ssize_t sink_cli(void *ctx, const uint8_t *data, size_t len)
{
    struct wsg_conn *c = ctx;
    size_t n = wsg_buf_put(&c->cli_ptx, data, len);
    return n > 0 ? (ssize_t)n : WSG_AGAIN;
}

static int rng_fill(void *ctx, uint8_t *dst, size_t len)
{
    return wsg_rng_fill(ctx, dst, len);
}

/* ------------------------------------------------------------------ policies (issue 3) */

static void on_ws_timer(EV_P_ ev_timer *t, int revents);
static void ws_fail(struct wsg_conn *c, enum wsg_reason r, int cli_code, const char *cli_reason, int up_code,
                    const char *up_reason);

static void count_frame(struct wsg_conn *c, uint64_t len)
{
    wsg_m_add(&metrics(c)->frame_size[wsg_m_size_bucket(len)], 1);
    wsg_m_add(&metrics(c)->frame_size_sum, len);
}

/* Counts a policy event by route, rule and direction, and logs it with the client address, at
 * most 10 lines a second per worker (a flood of violations must not flood the log). */
static void policy_hit(struct wsg_conn *c, enum wsg_policy_rule rule, int dir, const char *what)
{
    static __thread double tokens = 20, last;
    static __thread unsigned long suppressed;
    unsigned route = c->route < WSG_M_ROUTES ? c->route : WSG_M_ROUTES - 1;
    wsg_m_add(&metrics(c)->policy[route][rule][dir], 1);
    if (rule == WSG_PR_THROTTLED)
        return;
    double now = now_of(c);
    tokens += (now - last) * 10;
    if (tokens > 20)
        tokens = 20;
    last = now;
    if (tokens < 1) {
        suppressed++;
        return;
    }
    tokens -= 1;
    const struct wsg_cfg *cfg = cfg_of(c);
    clog(WSG_LOG_NOTICE, c, "policy %s (route %s, %s): %s%s", wsg_policy_rule_names[rule],
         c->route == 0 ? "default" : cfg->routes[c->route - 1].name,
         dir == 0 ? "client to upstream" : "upstream to client", what,
         suppressed ? " (earlier ones were not logged)" : "");
    suppressed = 0;
}

/* Which rule a relay's own violation broke, from its close code and reason. */
static enum wsg_policy_rule rule_of(int code, const char *why)
{
    if (code == 1009)
        return strstr(why, "fragment")  ? WSG_PR_MAX_FRAGMENTS
               : strstr(why, "message") ? WSG_PR_MAX_MESSAGE
                                        : WSG_PR_MAX_FRAME;
    if (code == 1003)
        return WSG_PR_OPCODE;
    if (code == 1007)
        return WSG_PR_UTF8;
    return WSG_PR_PROTOCOL;
}

static void ip_release(struct wsg_conn *c)
{
    if (c->ip_counted) {
        wsg_iptable_conn_end(c->w->sh->ipt, &c->ipkey);
        c->ip_counted = 0;
    }
}

static void earliest(double *next, double t)
{
    if (t > 0 && (*next == 0 || t < *next))
        *next = t;
}

/* Arms ws_timer for the earliest of: the next ping, the pong deadline, the end of life, the
 * next slow-consumer check, the end of a throttle. */
static void ws_arm_timer(struct wsg_conn *c)
{
    const struct wsg_policy *p = c->pol;
    double now = now_of(c), next = 0;
    if (c->pong_due)
        earliest(&next, c->pong_due);
    else if (p->ping_interval > 0)
        earliest(&next, c->last_cli_activity + p->ping_interval);
    earliest(&next, c->lifetime_end);
    if (p->slow_consumer_bytes > 0)
        earliest(&next, now + (p->slow_consumer_grace > 2 ? 1.0 : p->slow_consumer_grace / 2 + 0.05));
    earliest(&next, c->throttle_until);
    earliest(&next, c->drain_at);
    earliest(&next, c->next_progress);
    ev_timer_stop(c->w->loop, &c->ws_timer);
    if (next > 0) {
        ev_timer_set(&c->ws_timer, next > now ? next - now : 0.001, 0.);
        ev_timer_start(c->w->loop, &c->ws_timer);
    }
}

/* The client's frames: counted, then held (throttle) or refused (close) by the rate rules. */
static int admit_c2u(void *ctx, const struct wsg_ws_frame_info *fi, const char **reason)
{
    struct wsg_conn *c = ctx;
    const struct wsg_policy *p = c->pol;
    double now = now_of(c);
    c->last_cli_activity = now;
    if (fi->opcode >= 8) {
        count_frame(c, fi->payload_len);
        return 0; /* control frames are never held: a held close or pong would stall liveness */
    }
    double msgs = fi->first_of_message ? 1 : 0, bytes = (double)fi->payload_len, wait = 0;
    enum wsg_policy_rule rule = WSG_PR_RATE_MESSAGES;
    int took_msgs = 0;
    if (msgs > 0 && p->conn_msgs.rate > 0) {
        wait = wsg_bucket_take(&c->b_msgs, &p->conn_msgs, 1, now);
        took_msgs = wait == 0;
    }
    if (wait == 0 && bytes > 0 && p->conn_bytes.rate > 0) {
        wait = wsg_bucket_take(&c->b_bytes, &p->conn_bytes, bytes, now);
        rule = WSG_PR_RATE_BYTES;
        if (wait > 0 && took_msgs)
            c->b_msgs.tokens += 1; /* both or neither */
    }
    if (wait == 0 && (p->ip_msgs.rate > 0 || p->ip_bytes.rate > 0)) {
        wait = wsg_iptable_take_n(c->w->sh->ipt, &c->ipkey, p, msgs, bytes, now);
        rule = WSG_PR_IP_RATE;
        if (wait > 0) {
            if (took_msgs)
                c->b_msgs.tokens += 1;
            if (p->conn_bytes.rate > 0 && bytes > 0)
                c->b_bytes.tokens += bytes;
        }
    }
    if (wait == 0) {
        count_frame(c, fi->payload_len);
        if (c->throttle_until) {
            c->throttle_until = 0;
            ws_arm_timer(c);
        }
        return 0;
    }
    const char *why = rule == WSG_PR_RATE_MESSAGES ? "message rate limit (rate_messages)"
                      : rule == WSG_PR_RATE_BYTES
                          ? "byte rate limit (rate_bytes)"
                          : "per-address rate limit (ip_rate_messages, ip_rate_bytes)";
    if (p->rate_action == WSG_RATE_CLOSE) {
        policy_hit(c, rule, 0, why);
        *reason = why;
        return 1008;
    }
    /* throttle: hold the frame (TCP pushes back on the client) until the tokens are there */
    if (!c->throttle_until)
        policy_hit(c, WSG_PR_THROTTLED, 0, why);
    c->throttle_until = now + wait;
    ws_arm_timer(c);
    return WSG_AGAIN;
}

/* The upstream's frames: only counted. */
static int admit_u2c(void *ctx, const struct wsg_ws_frame_info *fi, const char **reason)
{
    WSG_UNUSED(reason);
    struct wsg_conn *c = ctx;
    count_frame(c, fi->payload_len);
    return 0;
}

/* Bytes written for the client and not yet read by it: ours plus the kernel's send queue. */
static uint64_t client_backlog(const struct wsg_conn *c)
{
    int outq = 0;
    if (c->cli.fd >= 0 && ioctl(c->cli.fd, SIOCOUTQ, &outq) != 0)
        outq = 0;
    return (uint64_t)outq + wsg_buf_len(&c->cli_ptx) + wsg_buf_len(&c->cli.out) +
           wsg_ws_relay_pending_out(c->u2c);
}

static void on_ws_timer(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    struct wsg_conn *c = container_of(t, struct wsg_conn, ws_timer);
    if (c->st != WSG_ST_WS || (c->flags & (WSG_CF_CLOSE_CLI | WSG_CF_CLOSE_UP))) {
        conn_proceed(c);
        return;
    }
    const struct wsg_policy *p = c->pol;
    double now = ev_now(loop);
    const struct wsg_ws_stats *st = wsg_ws_relay_stats(c->c2u);
    if (st->bytes_in != c->cli_bytes_seen) {
        c->cli_bytes_seen = st->bytes_in;
        c->last_cli_activity = now;
    }
    if (st->gateway_pongs != c->pongs_seen) {
        c->pongs_seen = st->gateway_pongs;
        c->pong_due = 0;
    }
    if (c->throttle_until && now >= c->throttle_until) {
        c->throttle_until = 0;                          /* the pump below asks admit again */
        c->deadline = now + cfg_of(c)->ws_idle_timeout; /* being held is not being idle */
    }
    if (c->next_progress && now >= c->next_progress) {
        log_ws_line(c, "ws_progress");
        c->next_progress = now + cfg_of(c)->session_log_interval;
    }
    if (c->drain_at && now >= c->drain_at) {
        ws_fail(c, WSG_R_SHUTDOWN, 1001, "gateway shutting down", 1001, "gateway shutting down");
    } else if (c->pong_due && now >= c->pong_due) {
        policy_hit(c, WSG_PR_PONG_TIMEOUT, 0, "no pong to the gateway's ping");
        ws_fail(c, WSG_R_WS_PONG, 1001, "no pong in time", 1001, "client unresponsive");
    } else if (c->lifetime_end && now >= c->lifetime_end) {
        policy_hit(c, WSG_PR_LIFETIME, 0, "max_lifetime reached");
        ws_fail(c, WSG_R_WS_LIFETIME, 1001, "connection lifetime reached", 1001, "client lifetime reached");
    } else if (p->slow_consumer_bytes > 0 && client_backlog(c) > p->slow_consumer_bytes) {
        if (c->slow_since == 0) {
            c->slow_since = now;
        } else if (now - c->slow_since >= p->slow_consumer_grace) {
            policy_hit(c, WSG_PR_SLOW_CONSUMER, 1, "the client does not read (slow_consumer_bytes)");
            ws_fail(c, WSG_R_WS_SLOW, 1008, "slow consumer", 1001, "client too slow");
        }
    } else {
        c->slow_since = 0;
    }
    if (!c->pong_due && p->ping_interval > 0 && now - c->last_cli_activity >= p->ping_interval &&
        !(c->flags & WSG_CF_CLOSE_CLI)) {
        uint8_t tok[8];
        if (wsg_rng_fill(c->w->rng, tok, sizeof(tok)) == 0 &&
            wsg_ws_relay_send_ping(c->u2c, tok, sizeof(tok)) >= 0) {
            wsg_ws_relay_expect_pong(c->c2u, tok, sizeof(tok));
            c->pong_due = now + p->pong_timeout;
        }
    }
    if (c->st == WSG_ST_WS && !(c->flags & (WSG_CF_CLOSE_CLI | WSG_CF_CLOSE_UP)))
        ws_arm_timer(c);
    conn_proceed(c);
}

static struct wsg_ws_limits limits_of(const struct wsg_dir_policy *d)
{
    struct wsg_ws_limits l = {.max_frame = d->max_frame,
                              .max_message = d->max_message,
                              .max_fragments = d->max_fragments,
                              .deny_text = !d->allow_text,
                              .deny_binary = !d->allow_binary,
                              .no_utf8 = !d->utf8};
    return l;
}

static int ws_start(struct wsg_conn *c)
{
    const struct wsg_cfg *cfg = cfg_of(c);
    const struct wsg_policy *p = c->pol;
    struct wsg_ws_limits lc = limits_of(&p->c2u), lu = limits_of(&p->u2c);
    c->c2u = wsg_ws_relay_new(WSG_WS_C2U, &lc, &c->cli_plain, sink_up, c, rng_fill, c->w->rng);
    c->u2c = wsg_ws_relay_new(WSG_WS_U2C, &lu, &c->up.in, sink_cli, c, rng_fill, c->w->rng);
    if (c->c2u == NULL || c->u2c == NULL)
        return -1;
    wsg_ws_relay_set_admit(c->c2u, admit_c2u, c);
    wsg_ws_relay_set_admit(c->u2c, admit_u2c, c);
    double now = now_of(c);
    wsg_bucket_init(&c->b_msgs, &p->conn_msgs, now);
    wsg_bucket_init(&c->b_bytes, &p->conn_bytes, now);
    c->last_cli_activity = now;
    if (cfg->session_log_interval > 0)
        c->next_progress = now + cfg->session_log_interval;
    if (p->max_lifetime > 0) {
        uint32_t r = 0;
        if (p->lifetime_jitter > 0 && wsg_rng_fill(c->w->rng, (uint8_t *)&r, sizeof(r)) != 0)
            r = 0;
        c->lifetime_end = now + p->max_lifetime + p->lifetime_jitter * ((double)r / 4294967296.0);
    }
    set_state(c, WSG_ST_WS);
    wsg_m_add(&metrics(c)->c[WSG_M_WS_UPGRADES], 1);
    wsg_m_add(&metrics(c)->status[1], 1); /* the 101 sent to the client */
    set_deadline(c, cfg->ws_idle_timeout);
    ws_arm_timer(c);
    if (c->flags & WSG_CF_DRAINING) /* upgraded while the gateway drains */
        ws_fail(c, WSG_R_SHUTDOWN, 1001, "gateway shutting down", 1001, "gateway shutting down");
    return 0;
}

/* Queues a gateway close frame toward the client (code, reason). */
static void ws_close_client(struct wsg_conn *c, int code, const char *reason)
{
    if (c->flags & WSG_CF_CLOSE_CLI)
        return;
    c->flags |= WSG_CF_CLOSE_CLI;
    c->gw_close_cli = code;
    if (!wsg_ws_relay_closed(c->u2c) && wsg_ws_relay_send_close(c->u2c, code, reason) < 0)
        c->flags |= WSG_CF_DESTROY;
}

static void ws_close_upstream(struct wsg_conn *c, int code, const char *reason)
{
    if (c->flags & WSG_CF_CLOSE_UP)
        return;
    c->flags |= WSG_CF_CLOSE_UP;
    c->gw_close_up = code;
    if (c->up.fd >= 0 && !c->up.eof && !wsg_ws_relay_closed(c->c2u) &&
        wsg_ws_relay_send_close(c->c2u, code, reason) < 0)
        side_close(c, &c->up);
}

/* Ends a WebSocket for reason r: tells both hops, then closes once the frames are out. */
static void ws_fail(struct wsg_conn *c, enum wsg_reason r, int cli_code, const char *cli_reason, int up_code,
                    const char *up_reason)
{
    if (c->reason == WSG_R_NONE)
        c->reason = r;
    clog(r == WSG_R_NONE ? WSG_LOG_DEBUG : WSG_LOG_INFO, c, "websocket: %s (client %d \"%s\", upstream %d)",
         wsg_reasons[r].text, cli_code, cli_reason ? cli_reason : "", up_code);
    if (cli_code)
        ws_close_client(c, cli_code, cli_reason);
    if (up_code)
        ws_close_upstream(c, up_code, up_reason);
}

/* Runs one relay. After its input broke the protocol it runs only to send the gateway's own
 * pending close frame (a relay forwards nothing after a gateway close). Returns >0 progress,
 * 0 nothing, -1 the first time the input violates RFC 6455 or a limit. */
static int relay_step(struct wsg_ws_relay *r, unsigned *failed)
{
    if (*failed && wsg_ws_relay_idle_out(r))
        return 0;
    int rv = wsg_ws_relay_pump(r);
    if (rv > 0)
        return rv;
    if (rv < 0 && !*failed) {
        *failed = 1;
        return -1;
    }
    return 0;
}

static int ws_pump(struct wsg_conn *c)
{
    int progress = 0;
    int r = relay_step(c->c2u, &c->c2u_failed);
    if (r > 0) {
        progress += r;
    } else if (r < 0) {
        /* The client broke a rule: its code to the client, 1001 to the upstream. */
        const char *why = "protocol error";
        int code = wsg_ws_relay_error(c->c2u, &why);
        enum wsg_reason rs = code == 1007   ? WSG_R_WS_BAD_UTF8
                             : code == 1009 ? WSG_R_WS_TOO_BIG
                             : code == 1003 ? WSG_R_WS_UNSUPPORTED
                             : code == 1008 ? WSG_R_WS_RATE
                                            : WSG_R_WS_PROTOCOL;
        if (code != 1008) /* rate closes were counted by the admit hook */
            policy_hit(c, rule_of(code, why), 0, why);
        ws_fail(c, rs, code, why, 1001, code == 1002 ? "client protocol error" : "client broke a policy");
        progress++;
    }
    r = relay_step(c->u2c, &c->u2c_failed);
    if (r > 0) {
        progress += r;
    } else if (r < 0) {
        /* The upstream broke a rule: its code to the upstream. A size or type policy is the
         * route's choice (1001 to the client); a broken protocol is a bad gateway (1014). */
        const char *why = "protocol error";
        int code = wsg_ws_relay_error(c->u2c, &why);
        policy_hit(c, rule_of(code, why), 1, why);
        if (code == 1009 || code == 1003 || code == 1008)
            ws_fail(c, WSG_R_WS_POLICY, 1001, "upstream message refused by policy", code, why);
        else
            ws_fail(c, WSG_R_UPSTREAM_BAD, 1014, "upstream protocol error", code, why);
        progress++;
    }
    if (progress)
        set_deadline(c, cfg_of(c)->ws_idle_timeout);

    /* How the session ends. */
    int c2u_closed = wsg_ws_relay_closed(c->c2u), u2c_closed = wsg_ws_relay_closed(c->u2c);
    if (c2u_closed && u2c_closed) {
        start_closing(c); /* close handshake relayed both ways */
    } else if (c->up.eof && wsg_buf_len(&c->up.in) == 0 && !u2c_closed) {
        if (c->reason == WSG_R_NONE)
            ws_fail(c, WSG_R_UPSTREAM_CLOSED, 1011, "upstream closed the connection", 0, NULL);
        else
            ws_close_client(c, 1011, "upstream closed the connection");
        side_close(c, &c->up);
    } else if (c->cli.eof && wsg_buf_len(&c->cli_plain) == 0 && !c2u_closed &&
               !(c->flags & WSG_CF_CLOSE_UP)) {
        ws_fail(c, WSG_R_CLIENT_CLOSED, 0, NULL, 1001, "client went away");
    }
    if (c->cli.eof && (c2u_closed || (c->flags & WSG_CF_CLOSE_UP)) && wsg_buf_len(&c->up.out) == 0)
        start_closing(c);
    if (c->up.eof && u2c_closed)
        side_close(c, &c->up);
    /* Gateway closes sent and flushed: done. */
    if ((c->flags & WSG_CF_CLOSE_CLI) && wsg_ws_relay_idle_out(c->u2c) &&
        ((c->flags & WSG_CF_CLOSE_UP) || c->up.fd < 0 || c2u_closed) &&
        (c->up.fd < 0 || wsg_ws_relay_idle_out(c->c2u)))
        start_closing(c);
    return progress;
}

/* ------------------------------------------------------------------ HTTP */

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

/* A complete request head is in cli_plain: check it, rewrite it into up.out, pick the upstream. */
static int handle_request(struct wsg_conn *c)
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
            start_closing(c);
            return 1;
        }
        if (avail >= c->cli_plain.cap) { /* cannot grow: the head is larger than the buffer */
            respond_error(c, WSG_R_HEADERS_TOO_BIG, "head larger than buffer_size");
            return 1;
        }
        return 0;
    }
    memset(&c->x, 0, sizeof(c->x));
    c->x.t0 = now_of(c);
    c->nreq++;
    if (n < 0) {
        respond_error(c, reason_of_status(status), why);
        return 1;
    }
    if (req.host == NULL) {
        /* HTTP/1.0 may omit Host, but the request is forwarded as HTTP/1.1, which requires it
         * (RFC 9112 §3.2): the upstream would refuse it anyway. */
        respond_error(c, WSG_R_BAD_REQUEST, "Host is required");
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
        policy_hit(c, WSG_PR_HEADER_SIZE, 0, "request head above the route's max_header_size");
        respond_error(c, WSG_R_HEADERS_TOO_BIG, "request head above the route's max_header_size");
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
        respond_error(c, WSG_R_BODY_TOO_BIG, "Content-Length above max_body");
        return 1;
    }
    if (req.upgrade_ws) {
        if (c->flags & WSG_CF_DRAINING) {
            respond_error(c, WSG_R_SHUTDOWN, NULL);
            return 1;
        }
        if (req.ws_version == NULL || req.ws_version->value_len != 2 ||
            memcmp(req.ws_version->value, "13", 2) != 0) {
            respond_error(c, WSG_R_UPGRADE_REQUIRED, "Sec-WebSocket-Version is not 13");
            return 1;
        }
        if (req.ws_key == NULL ||
            wsg_ws_accept_key(req.ws_key->value, req.ws_key->value_len, c->x.ws_accept) != 0) {
            respond_error(c, WSG_R_BAD_REQUEST, "missing or invalid Sec-WebSocket-Key");
            return 1;
        }
        if (req.body != WSG_BODY_NONE && !(req.body == WSG_BODY_LENGTH && req.content_length == 0)) {
            respond_error(c, WSG_R_BAD_REQUEST, "upgrade request with a body");
            return 1;
        }
        /* Cross-site WebSocket hijacking: a browser always sends Origin; a client that sends none
         * is not a browser and is not what the allowlist protects against. */
        const struct wsg_http_header *origin = wsg_http_find(req.headers, req.num_headers, "Origin");
        if (c->pol->norigins && origin != NULL &&
            !wsg_match_origin(c->pol, origin->value, origin->value_len)) {
            policy_hit(c, WSG_PR_ORIGIN, 0, "Origin not in the allowlist");
            respond_error(c, WSG_R_ORIGIN, NULL);
            return 1;
        }
        const struct wsg_http_header *proto =
            wsg_http_find(req.headers, req.num_headers, "Sec-WebSocket-Protocol");
        if (c->pol->nsubprotocols && proto != NULL &&
            !wsg_match_subprotocol(c->pol, proto->value, proto->value_len)) {
            policy_hit(c, WSG_PR_SUBPROTOCOL, 0, "no offered subprotocol is allowed");
            respond_error(c, WSG_R_SUBPROTOCOL, NULL);
            return 1;
        }
        if (wsg_policy_per_ip(c->pol)) {
            wsg_ip_key_make(&c->ipkey, c->route, (const struct sockaddr *)&c->peer_addr);
            double wait = wsg_iptable_conn_begin(c->w->sh->ipt, &c->ipkey, c->pol, now_of(c));
            if (wait > 0) {
                c->retry_after = (int)ceil(wait);
                policy_hit(c, WSG_PR_IP_CONNS, 0, "ip_max_conns or ip_upgrades reached");
                respond_error(c, WSG_R_IP_LIMIT, NULL);
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
    if (wsg_http_write_request(&req, &fwd, &c->up.out) != 0) {
        respond_error(c, WSG_R_HEADERS_TOO_BIG, "rewritten head larger than buffer_size");
        return 1;
    }
    wsg_buf_consume(&c->cli_plain, (uint32_t)n);
    set_state(c, req.upgrade_ws ? WSG_ST_WS_UPGRADE : WSG_ST_HTTP);

    /* Reuse the kept-alive upstream connection when it serves the same group, else pick one:
     * same client, same ranking. */
    c->flags &= ~WSG_CF_UP_REUSED;
    if (c->up.fd >= 0 && !c->up.eof && !c->up.connecting && c->ups == c->rt->ups[c->route]) {
        c->flags |= WSG_CF_UP_REUSED;
        set_deadline(c, cfg->upstream_timeout);
        return 1;
    }
    side_close(c, &c->up);
    wsg_buf_free(&c->up.in);
    c->tried = 0;
    c->ups = c->rt->ups[c->route];
    if (upstream_open(c) != 0) {
        respond_error(c, WSG_R_UPSTREAM_DOWN, "no upstream accepted a connection");
        return 1;
    }
    return 1;
}

/* Streams the request body from cli_plain to up.out. */
static int pump_req_body(struct wsg_conn *c)
{
    if (c->x.req_done)
        return 0;
    uint32_t avail;
    const uint8_t *p = wsg_buf_peek(&c->cli_plain, &avail);
    uint32_t room = wsg_buf_room(&c->up.out);
    if (p == NULL || room == 0) {
        if (p == NULL && c->cli.eof) {
            c->reason = WSG_R_CLIENT_CLOSED;
            start_closing(c);
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
            respond_error(c, WSG_R_BAD_REQUEST, why);
            return 1;
        }
        n = (uint32_t)m;
        if (c->x.req_ch.done)
            c->x.req_done = 1;
    }
    c->x.req_total += n;
    const struct wsg_cfg *cfg = cfg_of(c);
    if (cfg->max_body && c->x.req_total > cfg->max_body) {
        respond_error(c, WSG_R_BODY_TOO_BIG, "chunked body above max_body");
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

/* The response is complete: log it, then keep both connections or close. */
static void finish_exchange(struct wsg_conn *c)
{
    log_http(c);
    int up_keep = c->x.up_keep && c->x.req_done && c->x.resp_body != WSG_BODY_EOF;
    if (!up_keep) {
        side_close(c, &c->up);
        wsg_buf_free(&c->up.in);
        wsg_buf_free(&c->up.out);
    }
    if (!c->x.keep_alive || !c->x.req_done || (c->flags & WSG_CF_DRAINING) || c->cli.eof) {
        start_closing(c);
        return;
    }
    set_state(c, WSG_ST_REQ_HEAD);
    set_deadline(c, cfg_of(c)->keepalive_timeout);
}

static int pump_resp_head(struct wsg_conn *c)
{
    uint32_t avail;
    const uint8_t *p = wsg_buf_peek(&c->up.in, &avail);
    if (p == NULL) {
        if (c->up.eof) {
            respond_error(c, WSG_R_UPSTREAM_CLOSED, "upstream closed before responding");
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
            respond_error(c, c->up.eof ? WSG_R_UPSTREAM_CLOSED : WSG_R_UPSTREAM_BAD,
                          "incomplete response head");
            return 1;
        }
        return 0;
    }
    if (n < 0) {
        respond_error(c, WSG_R_UPSTREAM_BAD, why);
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
            respond_error(c, WSG_R_UPSTREAM_BAD, "101 without a valid Sec-WebSocket-Accept");
            return 1;
        }
        const struct wsg_http_header *chosen =
            wsg_http_find(resp.headers, resp.num_headers, "Sec-WebSocket-Protocol");
        if (chosen != NULL && c->pol->nsubprotocols &&
            !wsg_match_subprotocol_one(c->pol, chosen->value, chosen->value_len)) {
            respond_error(c, WSG_R_UPSTREAM_BAD, "upstream chose a subprotocol the route does not allow");
            return 1;
        }
        if (wsg_http_find(resp.headers, resp.num_headers, "Sec-WebSocket-Extensions") != NULL) {
            respond_error(c, WSG_R_UPSTREAM_BAD, "upstream accepted an extension that was not offered");
            return 1;
        }
        if (wsg_http_write_response(&resp, 1, &c->cli_ptx) != 0)
            return 0; /* wait for room */
        wsg_buf_consume(&c->up.in, (uint32_t)n);
        c->x.status = 101;
        c->x.resp_started = 1;
        if (ws_start(c) != 0) {
            c->reason = WSG_R_NOMEM;
            c->flags |= WSG_CF_DESTROY;
        }
        return 1;
    }
    if (resp.status == 101) {
        respond_error(c, WSG_R_UPSTREAM_BAD, "101 to a request that did not ask to upgrade");
        return 1;
    }
    if (c->st == WSG_ST_WS_UPGRADE) {
        set_state(c, WSG_ST_HTTP); /* the upstream refused the upgrade: relay its answer as plain HTTP */
        c->x.keep_alive = 0;
        ip_release(c);
    }
    if (resp.body == WSG_BODY_EOF)
        c->x.keep_alive = 0;
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

static int pump_resp_body(struct wsg_conn *c)
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
                log_http(c);
                start_closing(c);
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
            start_closing(c);
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

/* ------------------------------------------------------------------ the pump */

/* Why a handshake failed, from the mbedTLS code the TLS layer put at the end of its message. */
static unsigned tls_fail_reason(const char *err)
{
    const char *p = err ? strstr(err, "(-0x") : NULL;
    unsigned code = p ? (unsigned)strtoul(p + 4, NULL, 16) : 0;
    switch (code) {
    case 0x6E80: /* MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION: TLS 1.1 or older, SSLv3 */
        return WSG_TLSF_VERSION;
    case 0x7180: /* MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE: no common suite, group or signature */
        return WSG_TLSF_NO_COMMON;
    case 0x7200: /* MBEDTLS_ERR_SSL_INVALID_RECORD: not TLS at all (plain HTTP, a scanner) */
        return WSG_TLSF_NOT_TLS;
    case 0x7780: /* MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: the client gave up (untrusted cert...) */
        return WSG_TLSF_CLIENT_ALERT;
    default:
        return WSG_TLSF_OTHER;
    }
}

static int pump_tls_in(struct wsg_conn *c)
{
    if (c->st == WSG_ST_CLOSING || c->tls == NULL)
        return 0;
    if (c->st == WSG_ST_TLS_HANDSHAKE) {
        int r = wsg_tls_handshake(c->tls);
        if (r == WSG_OK) {
            wsg_m_add(&metrics(c)->c[wsg_tls_resumed(c->tls) ? WSG_M_TLS_RESUMED : WSG_M_TLS_FULL], 1);
            set_state(c, WSG_ST_REQ_HEAD);
            set_deadline(c, cfg_of(c)->header_timeout);
            clog(WSG_LOG_DEBUG, c, "TLS %s %s sni=%s%s", wsg_tls_version(c->tls), wsg_tls_cipher(c->tls),
                 wsg_tls_sni(c->tls) ? wsg_tls_sni(c->tls) : "-", wsg_tls_resumed(c->tls) ? " resumed" : "");
            return 1;
        }
        if (r == WSG_AGAIN) {
            if (c->cli.eof && wsg_buf_len(&c->cli.in) == 0) {
                c->reason = WSG_R_CLIENT_CLOSED;
                c->flags |= WSG_CF_DESTROY;
            }
            return 0;
        }
        c->reason = WSG_R_TLS_HANDSHAKE;
        wsg_m_add(&metrics(c)->c[WSG_M_TLS_FAILED], 1);
        wsg_m_add(&metrics(c)->tls_fail[tls_fail_reason(wsg_tls_error(c->tls))], 1);
        clog(WSG_LOG_INFO, c, "TLS handshake failed: %s", wsg_tls_error(c->tls));
        set_state(c, WSG_ST_CLOSING); /* flush the alert, then close */
        c->flags |= WSG_CF_LINGER;
        set_deadline(c, 0.2);
        return 0;
    }
    int progress = 0;
    if (c->flags & WSG_CF_CLOSE_CLI) {
        /* The gateway closed the client's WebSocket: what it still sends is dropped. */
        wsg_buf_consume(&c->cli.in, wsg_buf_len(&c->cli.in));
        return 0;
    }
    while (wsg_buf_room(&c->cli_plain) > 0 && !c->cli.eof) {
        uint32_t room;
        uint8_t *dst = wsg_buf_reserve(&c->cli_plain, &room);
        if (dst == NULL)
            break;
        ssize_t n = wsg_tls_read(c->tls, dst, room);
        if (n > 0) {
            wsg_buf_commit(&c->cli_plain, (uint32_t)n);
            progress = 1;
        } else if (n == WSG_AGAIN) {
            break;
        } else if (n == WSG_EOF) {
            c->cli.eof = 1; /* close_notify */
            progress = 1;
        } else {
            clog(WSG_LOG_INFO, c, "TLS: %s", wsg_tls_error(c->tls));
            c->reason = WSG_R_CLIENT_CLOSED;
            c->flags |= WSG_CF_DESTROY;
            return 0;
        }
    }
    return progress;
}

static int pump_tls_out(struct wsg_conn *c)
{
    int progress = 0;
    if (c->tls == NULL || c->st == WSG_ST_TLS_HANDSHAKE)
        return 0;
    while (wsg_buf_len(&c->cli_ptx) > 0 && wsg_buf_room(&c->cli.out) >= wsg_tls_write_reserve(c->tls)) {
        uint32_t len;
        const uint8_t *p = wsg_buf_peek(&c->cli_ptx, &len);
        ssize_t n = wsg_tls_write(c->tls, p, len);
        if (n <= 0) {
            if (n == WSG_ERR) {
                clog(WSG_LOG_INFO, c, "TLS write: %s", wsg_tls_error(c->tls));
                c->flags |= WSG_CF_DESTROY;
            }
            break;
        }
        wsg_buf_consume(&c->cli_ptx, (uint32_t)n);
        progress = 1;
    }
    return progress;
}

static int pump_request(struct wsg_conn *c)
{
    switch (c->st) {
    case WSG_ST_REQ_HEAD:
        if (wsg_buf_len(&c->cli_plain) == 0) {
            if (c->cli.eof) {
                c->reason = WSG_R_NONE;
                start_closing(c);
                return 1;
            }
            return 0;
        }
        if (c->nreq > 0 && c->deadline - now_of(c) > cfg_of(c)->header_timeout)
            set_deadline(c, cfg_of(c)->header_timeout); /* first bytes of the next request */
        return handle_request(c);
    case WSG_ST_HTTP:
        return pump_req_body(c);
    case WSG_ST_WS:
        return ws_pump(c);
    default:
        return 0;
    }
}

static int pump_response(struct wsg_conn *c)
{
    switch (c->st) {
    case WSG_ST_HTTP:
        if (c->up.connecting)
            return 0;
        if (!c->x.resp_started)
            return pump_resp_head(c);
        return pump_resp_body(c);
    case WSG_ST_WS_UPGRADE:
        if (c->up.connecting)
            return 0;
        return pump_resp_head(c);
    case WSG_ST_REQ_HEAD:
        /* An idle kept-alive upstream may only close; anything else makes it unusable. */
        if (c->up.fd >= 0 && (c->up.eof || wsg_buf_len(&c->up.in) > 0)) {
            side_close(c, &c->up);
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
static void start_closing(struct wsg_conn *c)
{
    if (c->st == WSG_ST_CLOSING)
        return;
    if (c->st == WSG_ST_WS)
        log_ws(c);
    set_state(c, WSG_ST_CLOSING);
    set_deadline(c, LINGER_SECONDS + 3.0);
}

static void closing_step(struct wsg_conn *c)
{
    if (c->up.fd >= 0 && (wsg_buf_len(&c->up.out) == 0 || c->up.err || c->up.connecting))
        side_close(c, &c->up);
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
        log_ws(c);
    clog(WSG_LOG_DEBUG, c, "closed in %s: %s, client rx %llu tx %llu, upstream rx %llu tx %llu, %.3fs",
         state_names[c->st], wsg_reasons[c->reason].text, (unsigned long long)c->cli.rx,
         (unsigned long long)c->cli.tx, (unsigned long long)c->up.rx, (unsigned long long)c->up.tx,
         now_of(c) - c->t_start);
    ev_timer_stop(w->loop, &c->timer);
    ev_timer_stop(w->loop, &c->ws_timer);
    ev_timer_stop(w->loop, &c->tls_idle);
    ip_release(c);
    if (c->conn_ip_counted)
        wsg_iptable_conn_end(w->sh->ipt, &c->conn_ipkey);
    __atomic_sub_fetch(&w->sh->live_conns, 1, __ATOMIC_RELAXED);
    side_close(c, &c->cli);
    side_close(c, &c->up);
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

static void conn_proceed(struct wsg_conn *c)
{
    int progress, rounds = 0;
    do {
        progress = pump_tls_in(c);
        progress += pump_request(c);
        progress += pump_response(c);
        progress += pump_tls_out(c);
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
    if (rounds >= 64)
        ev_feed_event(c->w->loop, &c->cli.io, 0); /* yield to other connections, come back soon */
    /* Empty buffers go back to the allocator: an idle connection then holds no buffer memory
     * at all, only its TLS and codec state. */
    wsg_buf_shrink(&c->cli.in);
    wsg_buf_shrink(&c->cli_plain);
    wsg_buf_shrink(&c->cli_ptx);
    wsg_buf_shrink(&c->cli.out);
    wsg_buf_shrink(&c->up.in);
    wsg_buf_shrink(&c->up.out);
    /* mbedTLS's record buffers (33 KB) go back after TLS_IDLE_SECONDS without a burst: giving
     * them back after every burst cost 7x the instructions of a 64 B echo (zeroing and
     * allocating 2 x 16.7 KB each time). Like set_deadline: a burst only notes the time. */
    if (c->tls != NULL && wsg_tls_buffers_held(c->tls)) {
        c->tls_busy_at = now_of(c);
        if (!ev_is_active(&c->tls_idle)) {
            ev_timer_set(&c->tls_idle, TLS_IDLE_SECONDS, 0.);
            ev_timer_start(c->w->loop, &c->tls_idle);
        }
    }
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
    conn_proceed(c);
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
    conn_proceed(c);
}

static void on_tls_idle(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    struct wsg_conn *c = container_of(t, struct wsg_conn, tls_idle);
    double left = c->tls_busy_at + TLS_IDLE_SECONDS - ev_now(loop);
    if (left <= 0.001) {
        if (wsg_tls_shrink(c->tls))
            return;
        left = TLS_IDLE_SECONDS; /* not idle inside (output waiting for a slow reader): later */
    }
    ev_timer_set(t, left, 0.);
    ev_timer_start(loop, t);
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
        c->reason = WSG_R_TLS_TIMEOUT;
        wsg_m_add(&metrics(c)->c[WSG_M_TLS_TIMEOUT], 1);
        c->flags |= WSG_CF_DESTROY;
        break;
    case WSG_ST_REQ_HEAD:
        if (wsg_buf_len(&c->cli_plain) > 0 || c->nreq == 0) {
            respond_error(c, WSG_R_HEADER_TIMEOUT, NULL);
        } else {
            c->reason = WSG_R_IDLE;
            start_closing(c);
        }
        break;
    case WSG_ST_HTTP:
    case WSG_ST_WS_UPGRADE:
        if (c->up.connecting) {
            upstream_connected(c, 1);
        } else {
            clog(WSG_LOG_WARN, c, "upstream %s: no answer within upstream_timeout",
                 c->peer ? c->peer->name : "");
            respond_error(c, WSG_R_UPSTREAM_TIMEOUT, NULL);
        }
        break;
    case WSG_ST_WS:
        if (c->up.connecting) {
            upstream_connected(c, 1);
        } else if (c->flags & (WSG_CF_CLOSE_CLI | WSG_CF_CLOSE_UP)) {
            start_closing(c); /* the close handshake did not finish in time */
        } else {
            ws_fail(c, WSG_R_WS_IDLE, 1001, "idle timeout", 1001, "idle timeout");
            set_deadline(c, 5.0);
        }
        break;
    case WSG_ST_CLOSING:
        c->flags |= WSG_CF_DESTROY;
        break;
    }
    conn_proceed(c);
}

/* ------------------------------------------------------------------ lifecycle */

void wsg_conn_new(struct wsg_worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen)
{
    const struct wsg_runtime *rt = wsg_shared_rt(w->sh);
    const struct wsg_cfg *cfg = rt->cfg;
    /* max_connections and max_connections_per_ip: refused by closing at once, before any TLS
     * work (HAProxy maxconn would queue; a gateway under a flood should shed load instead). */
    unsigned long live = __atomic_add_fetch(&w->sh->live_conns, 1, __ATOMIC_RELAXED);
    struct wsg_ip_key ipk;
    int ip_counted = 0;
    if (cfg->max_connections && live > cfg->max_connections)
        goto refuse;
    if (cfg->max_connections_per_ip) {
        struct wsg_policy lim = {.ip_max_conns = cfg->max_connections_per_ip};
        wsg_ip_key_make(&ipk, UINT32_MAX, peer);
        if (wsg_iptable_conn_begin(w->sh->ipt, &ipk, &lim, ev_now(w->loop)) > 0)
            goto refuse;
        ip_counted = 1;
    }
    struct wsg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (ip_counted)
            wsg_iptable_conn_end(w->sh->ipt, &ipk);
        goto refuse;
    }
    if (ip_counted) {
        c->conn_ipkey = ipk;
        c->conn_ip_counted = 1;
    }
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
    ev_init(&c->ws_timer, on_ws_timer);
    ev_init(&c->tls_idle, on_tls_idle);
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
    __atomic_sub_fetch(&w->sh->live_conns, 1, __ATOMIC_RELAXED);
    wsg_m_add(&w->m.c[WSG_M_REFUSED], 1);
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
            start_closing(c);
        }
        break;
    case WSG_ST_WS: {
        /* Spread the 1001s over drain_spread so that clients do not all reconnect at once. */
        const struct wsg_cfg *cfg = cfg_of(c);
        double spread =
            cfg->drain_spread < cfg->drain_timeout * 0.8 ? cfg->drain_spread : cfg->drain_timeout * 0.8;
        uint32_t r = 0;
        if (spread > 0 && wsg_rng_fill(c->w->rng, (uint8_t *)&r, sizeof(r)) == 0) {
            c->drain_at = now_of(c) + spread * ((double)r / 4294967296.0) + 0.001;
            ws_arm_timer(c);
        } else {
            ws_fail(c, WSG_R_SHUTDOWN, 1001, "gateway shutting down", 1001, "gateway shutting down");
        }
        break;
    }
    default:
        c->x.keep_alive = 0;
        break;
    }
    conn_proceed(c);
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
