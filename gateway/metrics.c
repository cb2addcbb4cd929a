/* metrics.c - summing per-worker counters and printing them in Prometheus text format. */
#include "gateway/metrics.h"

#include "frames/ws.h"

#include <string.h>

const char *const wsg_policy_rule_names[WSG_PR__COUNT] = {
    "max_frame",     "max_message",  "max_fragments", "opcode",        "utf8",         "protocol",
    "rate_messages", "rate_bytes",   "ip_rate",       "ip_conns",      "origin",       "subprotocol",
    "header_size",   "pong_timeout", "lifetime",      "slow_consumer", "rate_inflate", "throttled",
};

void wsg_metrics_sum(struct wsg_metrics *out, const struct wsg_metrics *const *each, unsigned n)
{
    memset(out, 0, sizeof(*out));
    for (unsigned w = 0; w < n; w++) {
        const struct wsg_metrics *m = each[w];
        for (unsigned i = 0; i < WSG_M__COUNT; i++)
            out->c[i] += __atomic_load_n(&m->c[i], __ATOMIC_RELAXED);
        for (unsigned i = 0; i < WSG_M_STATES; i++)
            out->conns_in_state[i] += __atomic_load_n(&m->conns_in_state[i], __ATOMIC_RELAXED);
        for (unsigned i = 0; i < 6; i++)
            out->status[i] += __atomic_load_n(&m->status[i], __ATOMIC_RELAXED);
        for (unsigned i = 0; i < WSG_TLSF__COUNT; i++)
            out->tls_fail[i] += __atomic_load_n(&m->tls_fail[i], __ATOMIC_RELAXED);
        for (unsigned i = 0; i < WSG_M_SIZE_BUCKETS; i++)
            out->frame_size[i] += __atomic_load_n(&m->frame_size[i], __ATOMIC_RELAXED);
        out->frame_size_sum += __atomic_load_n(&m->frame_size_sum, __ATOMIC_RELAXED);
        for (unsigned s = 0; s < 4; s++)
            for (unsigned i = 0; i <= WSG_M_CLOSE_CODES; i++)
                out->close[s][i] += __atomic_load_n(&m->close[s][i], __ATOMIC_RELAXED);
        for (unsigned r = 0; r < WSG_M_ROUTES; r++)
            for (unsigned i = 0; i < WSG_PR__COUNT; i++)
                for (unsigned d = 0; d < 2; d++)
                    out->policy[r][i][d] += __atomic_load_n(&m->policy[r][i][d], __ATOMIC_RELAXED);
    }
}

static void counter(FILE *f, const char *name, const char *help, unsigned long long v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, v);
}

/* A counter family with one series per WebSocket direction. */
static void by_direction(FILE *f, const char *name, const char *help, uint64_t c2u, uint64_t u2c)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    fprintf(f, "%s{direction=\"client_to_upstream\"} %llu\n", name, (unsigned long long)c2u);
    fprintf(f, "%s{direction=\"upstream_to_client\"} %llu\n", name, (unsigned long long)u2c);
}

void wsg_metrics_print(FILE *f, const struct wsg_metrics *m, const char *const *route_names, unsigned nroutes)
{
    static const char *const states[WSG_M_STATES] = {"tls_handshake", "request_head", "http",
                                                     "ws_upgrade",    "websocket",    "closing"};
    fprintf(f, "# HELP wsgate_connections Client connections by state.\n# TYPE wsgate_connections gauge\n");
    for (unsigned i = 0; i < WSG_M_STATES; i++)
        fprintf(f, "wsgate_connections{state=\"%s\"} %lld\n", states[i], (long long)m->conns_in_state[i]);
    counter(f, "wsgate_connections_accepted_total", "Client connections accepted.", m->c[WSG_M_ACCEPTED]);
    counter(f, "wsgate_connections_refused_total",
            "Client connections closed at accept by max_connections or max_connections_per_ip.",
            m->c[WSG_M_REFUSED]);
    fprintf(f, "# HELP wsgate_tls_handshakes_total TLS handshakes by result.\n"
               "# TYPE wsgate_tls_handshakes_total counter\n");
    fprintf(f, "wsgate_tls_handshakes_total{result=\"full\"} %llu\n",
            (unsigned long long)m->c[WSG_M_TLS_FULL]);
    fprintf(f, "wsgate_tls_handshakes_total{result=\"resumed\"} %llu\n",
            (unsigned long long)m->c[WSG_M_TLS_RESUMED]);
    fprintf(f, "wsgate_tls_handshakes_total{result=\"failed\"} %llu\n",
            (unsigned long long)m->c[WSG_M_TLS_FAILED]);
    fprintf(f, "wsgate_tls_handshakes_total{result=\"timeout\"} %llu\n",
            (unsigned long long)m->c[WSG_M_TLS_TIMEOUT]);
    static const char *const tlsf[WSG_TLSF__COUNT] = {"protocol_version", "no_common_parameters", "not_tls",
                                                      "client_alert", "other"};
    fprintf(f, "# HELP wsgate_tls_handshake_failures_total Failed TLS handshakes by reason.\n"
               "# TYPE wsgate_tls_handshake_failures_total counter\n");
    for (unsigned i = 0; i < WSG_TLSF__COUNT; i++)
        fprintf(f, "wsgate_tls_handshake_failures_total{reason=\"%s\"} %llu\n", tlsf[i],
                (unsigned long long)m->tls_fail[i]);
    fprintf(f, "# HELP wsgate_http_responses_total HTTP responses sent to clients, by status class.\n"
               "# TYPE wsgate_http_responses_total counter\n");
    for (unsigned i = 1; i < 6; i++)
        fprintf(f, "wsgate_http_responses_total{class=\"%uxx\"} %llu\n", i, (unsigned long long)m->status[i]);
    counter(f, "wsgate_websocket_sessions_total", "WebSocket sessions established.", m->c[WSG_M_WS_UPGRADES]);
    by_direction(f, "wsgate_websocket_payload_bytes_total", "WebSocket payload bytes relayed.",
                 m->c[WSG_M_C2U_BYTES], m->c[WSG_M_U2C_BYTES]);
    by_direction(f, "wsgate_websocket_messages_total", "WebSocket messages relayed.",
                 m->c[WSG_M_C2U_MESSAGES], m->c[WSG_M_U2C_MESSAGES]);
    by_direction(f, "wsgate_websocket_frames_total", "WebSocket frames relayed.", m->c[WSG_M_C2U_FRAMES],
                 m->c[WSG_M_U2C_FRAMES]);
    static const char *const edges[WSG_M_SIZE_BUCKETS] = {"125",   "1024",   "4096",    "16384",
                                                          "65536", "262144", "1048576", "+Inf"};
    fprintf(f, "# HELP wsgate_websocket_frame_payload_bytes Payload size of relayed frames.\n"
               "# TYPE wsgate_websocket_frame_payload_bytes histogram\n");
    unsigned long long cum = 0;
    for (unsigned i = 0; i < WSG_M_SIZE_BUCKETS; i++) {
        cum += m->frame_size[i];
        fprintf(f, "wsgate_websocket_frame_payload_bytes_bucket{le=\"%s\"} %llu\n", edges[i], cum);
    }
    fprintf(f, "wsgate_websocket_frame_payload_bytes_sum %llu\n", (unsigned long long)m->frame_size_sum);
    fprintf(f, "wsgate_websocket_frame_payload_bytes_count %llu\n", cum);
    static const char *const who[4] = {"client", "upstream", "gateway_to_client", "gateway_to_upstream"};
    fprintf(f, "# HELP wsgate_websocket_closes_total Close frames by sender and code.\n"
               "# TYPE wsgate_websocket_closes_total counter\n");
    for (unsigned s = 0; s < 4; s++)
        for (unsigned i = 0; i <= WSG_M_CLOSE_CODES; i++) {
            if (m->close[s][i] == 0)
                continue;
            if (i < WSG_M_CLOSE_CODES)
                fprintf(f, "wsgate_websocket_closes_total{by=\"%s\",code=\"%u\"} %llu\n", who[s], 1000 + i,
                        (unsigned long long)m->close[s][i]);
            else
                fprintf(f, "wsgate_websocket_closes_total{by=\"%s\",code=\"other\"} %llu\n", who[s],
                        (unsigned long long)m->close[s][i]);
        }
    fprintf(f,
            "# HELP wsgate_policy_events_total Policy violations (and throttled frames) by route, rule and "
            "direction.\n# TYPE wsgate_policy_events_total counter\n");
    for (unsigned r = 0; r < WSG_M_ROUTES && r < nroutes; r++)
        for (unsigned i = 0; i < WSG_PR__COUNT; i++)
            for (unsigned d = 0; d < 2; d++)
                if (m->policy[r][i][d] != 0)
                    fprintf(f, "wsgate_policy_events_total{route=\"%s\",rule=\"%s\",direction=\"%s\"} %llu\n",
                            route_names[r], wsg_policy_rule_names[i],
                            d == 0 ? "client_to_upstream" : "upstream_to_client",
                            (unsigned long long)m->policy[r][i][d]);
    fprintf(f, "# HELP wsgate_proxy_protocol_headers_total PROXY protocol headers on proxy_protocol "
               "listeners, by result (invalid, incomplete and untrusted ones closed the connection).\n"
               "# TYPE wsgate_proxy_protocol_headers_total counter\n");
    static const char *const pp[] = {"ok", "local", "invalid", "incomplete", "untrusted"};
    for (unsigned i = 0; i < 5; i++)
        fprintf(f, "wsgate_proxy_protocol_headers_total{result=\"%s\"} %llu\n", pp[i],
                (unsigned long long)m->c[WSG_M_PROXY_OK + i]);
    fprintf(f, "# HELP wsgate_affinity_cookies_total Requests that carried an affinity cookie, by what "
               "it was (only followed ones chose the upstream).\n"
               "# TYPE wsgate_affinity_cookies_total counter\n");
    static const char *const aff[] = {"followed", "foreign", "expired", "forged"};
    for (unsigned i = 0; i < 4; i++)
        fprintf(f, "wsgate_affinity_cookies_total{result=\"%s\"} %llu\n", aff[i],
                (unsigned long long)m->c[WSG_M_AFF_FOLLOWED + i]);
    fprintf(f, "# HELP wsgate_deflate_bytes_total Payload of compressed (permessage-deflate) messages, "
               "as received (compressed) and as wsgate inflated it to check it, by direction.\n"
               "# TYPE wsgate_deflate_bytes_total counter\n");
    for (unsigned d = 0; d < 2; d++)
        for (unsigned k = 0; k < 2; k++)
            fprintf(f, "wsgate_deflate_bytes_total{direction=\"%s\",form=\"%s\"} %llu\n",
                    d == 0 ? "client_to_upstream" : "upstream_to_client", k == 0 ? "compressed" : "inflated",
                    (unsigned long long)m->c[WSG_M_Z_C2U_WIRE + 2 * d + k]);
    counter(f, "wsgate_deflate_bombs_total",
            "Compressed messages stopped once inflated past max_frame or max_message, or by "
            "deflate_max_ratio (closed 1009).",
            m->c[WSG_M_Z_BOMBS]);
    fprintf(f,
            "# HELP wsgate_deflate_inflate_bytes Memory held by inflate contexts (zlib state and window).\n"
            "# TYPE wsgate_deflate_inflate_bytes gauge\nwsgate_deflate_inflate_bytes %llu\n",
            (unsigned long long)wsg_ws_inflate_bytes());
    counter(f, "wsgate_upstream_connects_total", "Successful upstream connects.",
            m->c[WSG_M_UPSTREAM_CONNECTS]);
    counter(f, "wsgate_upstream_connect_failures_total", "Refused or timed-out upstream connects.",
            m->c[WSG_M_UPSTREAM_CONNECT_FAILS]);
}
