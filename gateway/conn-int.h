/*
 * conn-int.h - private to the connection files of gateway/: the connection struct, its states and
 * flags, the few inline helpers every piece uses, and the calls the pieces make into each other.
 * Nothing outside gateway/conn*.c includes this file, except the pipeline fuzz target (which
 * checks the connection's buffers and state after every step).
 *
 * One connection, five files, one concern each:
 *   conn.c      the connection itself: sockets, upstream connect, the pump (conn_proceed), the
 *               closing sequence, the libev callbacks, new/drain/abort
 *   conn-tls.c  the client hop's TLS: the handshake, cli.in -> cli_plain, cli_ptx -> cli.out
 *   conn-http.c the HTTP/1.1 exchange: the request head and its checks, bodies both ways, the
 *               response head (including the upstream's 101), the error answers
 *   conn-ws.c   the WebSocket session: the two relays, admit hooks (rate limits), the session
 *               timer (pings, pong deadline, lifetime, slow consumer, drain), the close handshake
 *   conn-log.c  what a connection reports: access-log lines, policy-hit counters and log lines
 */
#ifndef WSG_CONN_INT_H
#define WSG_CONN_INT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "frames/ws.h"
#include "policies/base/buf.h"
#include "gateway/conn.h"
#include "gateway/http1.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/reason.h"

enum wsg_state {
    WSG_ST_TLS_HANDSHAKE, /* TLS handshake in progress */
    WSG_ST_REQ_HEAD,      /* waiting for the (next) request head */
    WSG_ST_HTTP,          /* a request/response exchange is under way */
    WSG_ST_WS_UPGRADE,    /* upgrade forwarded, waiting for the upstream's 101 */
    WSG_ST_WS,            /* relaying frames both ways */
    WSG_ST_CLOSING        /* flushing what is left, then lingering until the client closes */
};

/* The states' names for debug lines, indexed by enum wsg_state (conn.c). */
extern const char *const wsg_conn_state_names[];

#define WSG_CF_DESTROY 0x01   /* conn_proceed's tail frees the connection */
#define WSG_CF_DRAINING 0x02  /* no keep-alive; WebSockets get 1001 */
#define WSG_CF_CLOSE_CLI 0x04 /* WS: gateway close queued to the client; stop reading it */
#define WSG_CF_CLOSE_UP 0x08  /* WS: gateway close queued to the upstream; stop reading it */
#define WSG_CF_LINGER 0x10    /* CLOSING: write side shut, discarding input until EOF or timer */
#define WSG_CF_UP_REUSED 0x20 /* this exchange runs on a kept-alive upstream connection */
#define WSG_CF_PROXY_HDR 0x40 /* proxy_protocol listener: the PROXY header is not in yet */

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
    /* permessage-deflate: the offer forwarded (deflate on and the client offered one), and what
     * the upstream's 101 accepted */
    unsigned z_offered : 1, z_on : 1;
    struct wsg_ws_deflate z_offer, z_neg;
    unsigned aff_peer;    /* affinity cookie: 1 + index in c->ups of the upstream it names, 0 none */
    uint32_t aff_expires; /* that token's expiry (Unix seconds) */
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
    struct wsg_bucket b_inflate;       /* ... and the inflated bytes of compressed messages */
    unsigned z_turn_iter[2];           /* event-loop turn of z_turn_bytes, per direction (c2u, u2c) */
    uint64_t z_turn_bytes[2];          /* bytes inflated in that turn */
    unsigned z_yield : 1;              /* inflating stopped for this turn: ws_timer fires at once */
    ev_timer ws_timer;                 /* pings, pong deadline, lifetime, slow consumer, throttle */
    double throttle_until;             /* a client frame is held until then */
    double pong_due;                   /* the gateway's ping must be answered by then (0: none out) */
    double last_cli_activity;          /* last time client bytes were decoded */
    ev_timer tls_idle;                 /* gives mbedTLS's record buffers back once idle */
    ev_timer resume;                   /* 0 s: the pump yielded after 64 rounds, comes back next turn */
    double tls_busy_at;                /* end of the last burst while they were held */
    double lifetime_end;               /* 0: no max_lifetime */
    double slow_since;                 /* 0: the client keeps up */
    uint64_t cli_bytes_seen, pongs_seen;
    int retry_after;              /* seconds, for a 429/503 answer */
    double drain_at;              /* draining: when this WebSocket gets its 1001 */
    unsigned up_drain : 1;        /* drain_at is for its upstream's drain, not the process's */
    unsigned peer_session : 1;    /* counted in peer->sessions: give it back at the end */
    double next_progress;         /* next "ws_progress" access-log line (0: none) */
    struct wsg_ip_key conn_ipkey; /* max_connections_per_ip accounting */
    unsigned conn_ip_counted : 1;
    unsigned nreq;
};

/* ------------------------------------------------------------------ helpers (inline) */

static inline double now_of(const struct wsg_conn *c)
{
    return ev_now(c->w->loop);
}

static inline const struct wsg_cfg *cfg_of(const struct wsg_conn *c)
{
    return c->rt->cfg;
}

static inline struct wsg_metrics *metrics(const struct wsg_conn *c)
{
    return &c->w->m;
}

static inline void set_state(struct wsg_conn *c, enum wsg_state st)
{
    wsg_m_gauge(&metrics(c)->conns_in_state[c->st], -1);
    wsg_m_gauge(&metrics(c)->conns_in_state[st], +1);
    c->st = st;
}

/* Arms the single connection timer for secs from now. The timer only ever moves earlier here;
 * when the deadline moves later, on_timer re-arms for the remainder (cheap on every frame). */
static inline void set_deadline(struct wsg_conn *c, double secs)
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

/* ------------------------------------------------------------------ conn.c */

/* Runs the stages until nothing moves, flushes both sockets, frees the connection if it is done,
 * else arms the watchers. Every libev callback ends here; nothing else frees a connection. */
void wsg_conn_proceed(struct wsg_conn *c);
/* Enters CLOSING (idempotent): flush, close_notify, shut the write side, linger. */
void wsg_conn_start_closing(struct wsg_conn *c);
/* Closes one side's socket and stops its watcher (idempotent); its buffers stay. */
void wsg_conn_side_close(struct wsg_conn *c, struct wsg_side *s);
/* proxy_protocol listeners, the pump's first stage: parses the PROXY header at the front of
 * cli.in, consumes it, makes its source the client address (peer_addr, peer_ip, peer_port) and
 * only then counts max_connections_per_ip; a bad or cut header destroys the connection. Does
 * nothing once the header is in. @return >0 progress, 0 nothing. */
int wsg_conn_proxy_in(struct wsg_conn *c);
/* Connects to the best-ranked upstream of c->ups not yet tried. @return 0 (connected or in
 * progress, c->up set up) or -1 when every peer failed. */
int wsg_conn_upstream_open(struct wsg_conn *c);

/* ------------------------------------------------------------------ conn-tls.c */

/* The handshake, then client records -> cli_plain. @return >0 progress, 0 nothing. */
int wsg_conn_tls_in(struct wsg_conn *c);
/* cli_ptx -> client records in cli.out. @return >0 progress, 0 nothing. */
int wsg_conn_tls_out(struct wsg_conn *c);
/* End of a burst (conn_proceed): while mbedTLS holds its record buffers, (re)starts the idle
 * clock that gives them back. */
void wsg_conn_tls_note_burst(struct wsg_conn *c);
/* The c->tls_idle timer's callback. */
void wsg_conn_tls_on_idle(EV_P_ ev_timer *t, int revents);

/* ------------------------------------------------------------------ conn-http.c */

/* A request head is (perhaps) complete in cli_plain: check it, route it, rewrite it into up.out,
 * connect. Each returns >0 progress, 0 nothing. */
int wsg_conn_http_head(struct wsg_conn *c);
/* The request body, cli_plain -> up.out. */
int wsg_conn_http_req_body(struct wsg_conn *c);
/* The response head from up.in (an interim 1xx, a 101 that starts the session, or final). */
int wsg_conn_http_resp_head(struct wsg_conn *c);
/* The response body, up.in -> cli_ptx. */
int wsg_conn_http_resp_body(struct wsg_conn *c);
/* Answers an HTTP error for reason r (before any response byte went out) and closes after it. */
void wsg_conn_http_error(struct wsg_conn *c, enum wsg_reason r, const char *why);

/* ------------------------------------------------------------------ conn-ws.c */

/* The upstream answered 101: builds both relays and enters WSG_ST_WS. @return 0 or -1 (no memory). */
int wsg_conn_ws_start(struct wsg_conn *c);
/* Runs both relays and decides how the session ends. @return >0 progress, 0 nothing. */
int wsg_conn_ws_pump(struct wsg_conn *c);
/* Ends a WebSocket for reason r: a gateway close to each hop whose code is not 0. */
void wsg_conn_ws_fail(struct wsg_conn *c, enum wsg_reason r, int cli_code, const char *cli_reason,
                      int up_code, const char *up_reason);
/* Draining: schedules this session's 1001 within drain_spread (or sends it now). */
void wsg_conn_ws_drain(struct wsg_conn *c);
/* Its upstream is draining: schedules the 1001 "upstream draining" within spread seconds
 * (unless a 1001 is already due); ready = 1 cancels a pending one (POST .../ready). */
void wsg_conn_ws_upstream_drain(struct wsg_conn *c, double spread, int ready);
/* Gives back the session's count in the per-IP table (ip_max_conns, ip_upgrades), if any. */
void wsg_conn_ws_ip_release(struct wsg_conn *c);
/* The session timer's callback (c->ws_timer). */
void wsg_conn_ws_on_timer(EV_P_ ev_timer *t, int revents);

/* ------------------------------------------------------------------ conn-log.c */

/* The exchange's access-log line ("http"), and its status class into the metrics. */
void wsg_conn_log_http(struct wsg_conn *c);
/* The session's final access-log line ("ws"), and its totals into the metrics. */
void wsg_conn_log_ws(struct wsg_conn *c);
/* One access-log line for a WebSocket: "ws" when it ends, "ws_progress" while it lasts. */
void wsg_conn_log_ws_line(struct wsg_conn *c, const char *type);
/* Counts a policy event by route, rule and direction (dir 0: client to upstream), and logs it
 * with the client address, at most 10 lines a second per worker. */
void wsg_conn_policy_hit(struct wsg_conn *c, enum wsg_policy_rule rule, int dir, const char *what);

#endif
