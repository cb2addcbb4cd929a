/*
 * conn-log.c - what a connection reports to the operator: one JSON access-log line per HTTP
 * exchange ("http") and per WebSocket session ("ws" at its end, "ws_progress" every
 * session_log_interval while it lasts), the session's totals into the metrics, and the policy
 * events (counted by route, rule and direction; logged with the client's address, rate-limited).
 * log.c owns the log files and the JSON string escaping; this file owns the fields.
 */
#include "gateway/conn-int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tls/tls.h"

/* ------------------------------------------------------------------ access log */

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

void wsg_conn_log_http(struct wsg_conn *c)
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

/* The session's final access-log line, and its totals into the metrics. */
void wsg_conn_log_ws(struct wsg_conn *c)
{
    const struct wsg_ws_stats *a = wsg_ws_relay_stats(c->c2u), *b = wsg_ws_relay_stats(c->u2c);
    struct wsg_metrics *m = metrics(c);
    wsg_m_add(&m->c[WSG_M_C2U_BYTES], a->payload_bytes);
    wsg_m_add(&m->c[WSG_M_U2C_BYTES], b->payload_bytes);
    wsg_m_add(&m->c[WSG_M_C2U_MESSAGES], a->messages);
    wsg_m_add(&m->c[WSG_M_U2C_MESSAGES], b->messages);
    wsg_m_add(&m->c[WSG_M_C2U_FRAMES], a->frames);
    wsg_m_add(&m->c[WSG_M_U2C_FRAMES], b->frames);
    wsg_m_add(&m->c[WSG_M_Z_C2U_WIRE], a->compressed_bytes);
    wsg_m_add(&m->c[WSG_M_Z_C2U_PLAIN], a->inflated_bytes);
    wsg_m_add(&m->c[WSG_M_Z_U2C_WIRE], b->compressed_bytes);
    wsg_m_add(&m->c[WSG_M_Z_U2C_PLAIN], b->inflated_bytes);
    wsg_m_add(&m->c[WSG_M_Z_BOMBS], a->bombs + b->bombs);
    wsg_m_close(m, 0, a->close_code);
    wsg_m_close(m, 1, b->close_code);
    wsg_m_close(m, 2, c->gw_close_cli);
    wsg_m_close(m, 3, c->gw_close_up);
    wsg_conn_log_ws_line(c, "ws");
}

/* One access-log line for a WebSocket: "ws" when it ends, "ws_progress" while it lasts. */
void wsg_conn_log_ws_line(struct wsg_conn *c, const char *type)
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

/* ------------------------------------------------------------------ policy events */

/* Counts a policy event by route, rule and direction, and logs it with the client address, at
 * most 10 lines a second per worker (a flood of violations must not flood the log). */
void wsg_conn_policy_hit(struct wsg_conn *c, enum wsg_policy_rule rule, int dir, const char *what)
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
