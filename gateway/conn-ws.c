/*
 * conn-ws.c - the WebSocket session of a connection, from the upstream's 101 to the last close
 * frame: the two relays of frames/ (c2u reads cli_plain and writes up.out, u2c reads up.in and
 * writes cli_ptx), the admit hooks that count every frame and apply the rate limits to the
 * client's, the session timer (gateway pings and the pong deadline, max_lifetime, slow consumer,
 * throttle, the drain's 1001, the periodic ws_progress line), the gateway's own close frames, and
 * the decision of how a session ends (the close handshake relayed both ways, a hop gone, a broken
 * rule). The relays do the framing and RFC 6455 checks; this file decides what a result means.
 */
#include "gateway/conn-int.h"

#include <linux/sockios.h>
#include <string.h>
#include <sys/ioctl.h>

#include "tls/tls.h"

/* ------------------------------------------------------------------ what the relays write into */

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

/* ------------------------------------------------------------------ policies: admit hooks, session timer */

static void count_frame(struct wsg_conn *c, uint64_t len)
{
    wsg_m_add(&metrics(c)->frame_size[wsg_m_size_bucket(len)], 1);
    wsg_m_add(&metrics(c)->frame_size_sum, len);
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

void wsg_conn_ws_ip_release(struct wsg_conn *c)
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
    if (c->z_yield) {
        /* inflating waits for the next turn: after the poll, so other connections' I/O goes first */
        ev_timer_set(&c->ws_timer, 0., 0.);
        ev_timer_start(c->w->loop, &c->ws_timer);
    } else if (next > 0) {
        ev_timer_set(&c->ws_timer, next > now ? next - now : 0.001, 0.);
        ev_timer_start(c->w->loop, &c->ws_timer);
    }
}

/* A client frame (or inflated slice) over a rate rule: rate_action close refuses it with 1008,
 * throttle holds it (TCP pushes back on the client) until `until`, when the tokens are there. */
static int over_rate(struct wsg_conn *c, enum wsg_policy_rule rule, const char *why, double until,
                     const char **reason)
{
    if (c->pol->rate_action == WSG_RATE_CLOSE) {
        wsg_conn_policy_hit(c, rule, 0, why);
        *reason = why;
        return 1008;
    }
    if (!c->throttle_until)
        wsg_conn_policy_hit(c, WSG_PR_THROTTLED, 0, why);
    c->throttle_until = until;
    ws_arm_timer(c);
    return WSG_AGAIN;
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
    return over_rate(c, rule, why, now + wait, reason);
}

/* Bytes one direction of a connection may inflate per event-loop turn (about a millisecond of
 * zlib), so that one connection's compressed input cannot stall the worker: past it the relay
 * stops between two slices (frames/ws.h, at most WSG_WS_INFLATE_SLICE compressed bytes, so at most
 * about 1 MiB more), and ws_timer, set to fire at once, brings it back after the next poll. */
#define INFLATE_TURN_BYTES (1u << 20)

static int inflate_turn(struct wsg_conn *c, int dir, uint64_t n)
{
    unsigned it = ev_iteration(c->w->loop);
    if (c->z_turn_iter[dir] != it) {
        c->z_turn_iter[dir] = it;
        c->z_turn_bytes[dir] = 0;
    }
    c->z_turn_bytes[dir] += n;
    if (c->z_turn_bytes[dir] < INFLATE_TURN_BYTES)
        return 0;
    if (!c->z_yield) {
        c->z_yield = 1;
        ws_arm_timer(c);
    }
    return WSG_AGAIN;
}

/* What the client's compressed messages inflated to, slice by slice: the inflate rate
 * (rate_inflate_bytes: charged once inflated, so the bucket may go into debt; throttle holds the
 * rest until it is paid, close refuses the slice with 1008), then the per-turn bound. */
static int inflate_c2u(void *ctx, uint64_t n, const char **reason)
{
    struct wsg_conn *c = ctx;
    const struct wsg_policy *p = c->pol;
    if (p->conn_inflate.rate > 0) {
        double now = now_of(c);
        double wait = wsg_bucket_charge(&c->b_inflate, &p->conn_inflate, (double)n, now);
        if (wait > 0)
            return over_rate(c, WSG_PR_RATE_INFLATE, "inflate rate limit (rate_inflate_bytes)", now + wait,
                             reason);
    }
    return inflate_turn(c, 0, n);
}

static int inflate_u2c(void *ctx, uint64_t n, const char **reason)
{
    WSG_UNUSED(reason);
    return inflate_turn(ctx, 1, n);
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

void wsg_conn_ws_on_timer(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    struct wsg_conn *c = container_of(t, struct wsg_conn, ws_timer);
    /* a new turn: the relays inflate again (they ask their hook first, which may stop them and
     * arm this timer again), whatever the state, a frame may still be streaming while closing */
    c->z_yield = 0;
    if (c->st != WSG_ST_WS || (c->flags & (WSG_CF_CLOSE_CLI | WSG_CF_CLOSE_UP))) {
        wsg_conn_proceed(c);
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
        wsg_conn_log_ws_line(c, "ws_progress");
        c->next_progress = now + cfg_of(c)->session_log_interval;
    }
    if (c->drain_at && now >= c->drain_at && c->up_drain) {
        wsg_conn_ws_fail(c, WSG_R_UPSTREAM_DRAIN, 1001, "upstream draining", 1001, "upstream draining");
    } else if (c->drain_at && now >= c->drain_at) {
        wsg_conn_ws_fail(c, WSG_R_SHUTDOWN, 1001, "gateway shutting down", 1001, "gateway shutting down");
    } else if (c->pong_due && now >= c->pong_due) {
        wsg_conn_policy_hit(c, WSG_PR_PONG_TIMEOUT, 0, "no pong to the gateway's ping");
        wsg_conn_ws_fail(c, WSG_R_WS_PONG, 1001, "no pong in time", 1001, "client unresponsive");
    } else if (c->lifetime_end && now >= c->lifetime_end) {
        wsg_conn_policy_hit(c, WSG_PR_LIFETIME, 0, "max_lifetime reached");
        wsg_conn_ws_fail(c, WSG_R_WS_LIFETIME, 1001, "connection lifetime reached", 1001,
                         "client lifetime reached");
    } else if (p->slow_consumer_bytes > 0 && client_backlog(c) > p->slow_consumer_bytes) {
        if (c->slow_since == 0) {
            c->slow_since = now;
        } else if (now - c->slow_since >= p->slow_consumer_grace) {
            wsg_conn_policy_hit(c, WSG_PR_SLOW_CONSUMER, 1, "the client does not read (slow_consumer_bytes)");
            wsg_conn_ws_fail(c, WSG_R_WS_SLOW, 1008, "slow consumer", 1001, "client too slow");
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
    wsg_conn_proceed(c);
}

/* ------------------------------------------------------------------ the session: start, closes, pump */

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

int wsg_conn_ws_start(struct wsg_conn *c)
{
    const struct wsg_cfg *cfg = cfg_of(c);
    const struct wsg_policy *p = c->pol;
    struct wsg_ws_limits lc = limits_of(&p->c2u), lu = limits_of(&p->u2c);
    if (c->x.z_on) { /* permessage-deflate negotiated: each direction inflates what it checks */
        lc.deflate = lu.deflate = 1;
        lc.deflate_no_context = c->x.z_neg.client_no_context;
        lu.deflate_no_context = c->x.z_neg.server_no_context;
        lc.deflate_max_ratio = lu.deflate_max_ratio = p->deflate_max_ratio;
    }
    c->c2u = wsg_ws_relay_new(WSG_WS_C2U, &lc, &c->cli_plain, sink_up, c, rng_fill, c->w->rng);
    c->u2c = wsg_ws_relay_new(WSG_WS_U2C, &lu, &c->up.in, sink_cli, c, rng_fill, c->w->rng);
    if (c->c2u == NULL || c->u2c == NULL)
        return -1;
    wsg_ws_relay_set_admit(c->c2u, admit_c2u, c);
    wsg_ws_relay_set_admit(c->u2c, admit_u2c, c);
    if (c->x.z_on) {
        wsg_ws_relay_set_inflate_hook(c->c2u, inflate_c2u, c);
        wsg_ws_relay_set_inflate_hook(c->u2c, inflate_u2c, c);
    }
    double now = now_of(c);
    wsg_bucket_init(&c->b_msgs, &p->conn_msgs, now);
    wsg_bucket_init(&c->b_bytes, &p->conn_bytes, now);
    wsg_bucket_init(&c->b_inflate, &p->conn_inflate, now);
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
    if (c->peer != NULL) {
        __atomic_add_fetch(&c->peer->sessions, 1, __ATOMIC_RELAXED);
        c->peer_session = 1;
    }
    if (c->flags & WSG_CF_DRAINING) /* upgraded while the gateway drains */
        wsg_conn_ws_fail(c, WSG_R_SHUTDOWN, 1001, "gateway shutting down", 1001, "gateway shutting down");
    else if (c->peer != NULL && __atomic_load_n(&c->peer->draining, __ATOMIC_ACQUIRE))
        /* picked before its upstream's drain began, upgraded after: closed like the others */
        wsg_conn_ws_upstream_drain(c, __atomic_load_n(&c->peer->drain_spread_ms, __ATOMIC_RELAXED) / 1000.0,
                                   0);
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
        wsg_conn_side_close(c, &c->up);
}

/* Ends a WebSocket for reason r: tells both hops, then closes once the frames are out. */
void wsg_conn_ws_fail(struct wsg_conn *c, enum wsg_reason r, int cli_code, const char *cli_reason,
                      int up_code, const char *up_reason)
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

int wsg_conn_ws_pump(struct wsg_conn *c)
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
            wsg_conn_policy_hit(c, rule_of(code, why), 0, why);
        wsg_conn_ws_fail(c, rs, code, why, 1001,
                         code == 1002 ? "client protocol error" : "client broke a policy");
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
        wsg_conn_policy_hit(c, rule_of(code, why), 1, why);
        if (code == 1009 || code == 1003 || code == 1008)
            wsg_conn_ws_fail(c, WSG_R_WS_POLICY, 1001, "upstream message refused by policy", code, why);
        else
            wsg_conn_ws_fail(c, WSG_R_UPSTREAM_BAD, 1014, "upstream protocol error", code, why);
        progress++;
    }
    if (progress)
        set_deadline(c, cfg_of(c)->ws_idle_timeout);

    /* How the session ends. */
    int c2u_closed = wsg_ws_relay_closed(c->c2u), u2c_closed = wsg_ws_relay_closed(c->u2c);
    if (c2u_closed && u2c_closed) {
        wsg_conn_start_closing(c); /* close handshake relayed both ways */
    } else if (c->up.eof && wsg_buf_len(&c->up.in) == 0 && !u2c_closed) {
        if (c->reason == WSG_R_NONE)
            wsg_conn_ws_fail(c, WSG_R_UPSTREAM_CLOSED, 1011, "upstream closed the connection", 0, NULL);
        else
            ws_close_client(c, 1011, "upstream closed the connection");
        wsg_conn_side_close(c, &c->up);
    } else if (c->cli.eof && wsg_buf_len(&c->cli_plain) == 0 && !c2u_closed &&
               !(c->flags & WSG_CF_CLOSE_UP)) {
        wsg_conn_ws_fail(c, WSG_R_CLIENT_CLOSED, 0, NULL, 1001, "client went away");
    }
    if (c->cli.eof && (c2u_closed || (c->flags & WSG_CF_CLOSE_UP)) && wsg_buf_len(&c->up.out) == 0)
        wsg_conn_start_closing(c);
    if (c->up.eof && u2c_closed)
        wsg_conn_side_close(c, &c->up);
    /* Gateway closes sent and flushed: done. */
    if ((c->flags & WSG_CF_CLOSE_CLI) && wsg_ws_relay_idle_out(c->u2c) &&
        ((c->flags & WSG_CF_CLOSE_UP) || c->up.fd < 0 || c2u_closed) &&
        (c->up.fd < 0 || wsg_ws_relay_idle_out(c->c2u)))
        wsg_conn_start_closing(c);
    return progress;
}

/* ------------------------------------------------------------------ drain */

/* Spreads the 1001s over drain_spread so that clients do not all reconnect at once. */
void wsg_conn_ws_drain(struct wsg_conn *c)
{
    const struct wsg_cfg *cfg = cfg_of(c);
    double spread =
        cfg->drain_spread < cfg->drain_timeout * 0.8 ? cfg->drain_spread : cfg->drain_timeout * 0.8;
    uint32_t r = 0;
    if (spread > 0 && wsg_rng_fill(c->w->rng, (uint8_t *)&r, sizeof(r)) == 0) {
        c->drain_at = now_of(c) + spread * ((double)r / 4294967296.0) + 0.001;
        ws_arm_timer(c);
    } else {
        wsg_conn_ws_fail(c, WSG_R_SHUTDOWN, 1001, "gateway shutting down", 1001, "gateway shutting down");
    }
}

/* An upstream's drain (POST /upstreams/NAME/drain): the same random spread, its own reason. A
 * session the process drain already scheduled keeps that time. */
void wsg_conn_ws_upstream_drain(struct wsg_conn *c, double spread, int ready)
{
    if (c->flags & (WSG_CF_DRAINING | WSG_CF_CLOSE_CLI))
        return;
    if (ready) {
        if (c->up_drain && c->drain_at) {
            c->drain_at = 0;
            c->up_drain = 0;
            ws_arm_timer(c);
        }
        return;
    }
    if (c->drain_at)
        return; /* already scheduled */
    uint32_t r = 0;
    c->up_drain = 1;
    if (spread > 0 && wsg_rng_fill(c->w->rng, (uint8_t *)&r, sizeof(r)) == 0) {
        c->drain_at = now_of(c) + spread * ((double)r / 4294967296.0) + 0.001;
        ws_arm_timer(c);
    } else {
        wsg_conn_ws_fail(c, WSG_R_UPSTREAM_DRAIN, 1001, "upstream draining", 1001, "upstream draining");
    }
}
