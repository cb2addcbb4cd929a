/*
 * metrics.h - per-worker counters, summed when scraped (DESIGN §1: no lock on the data path).
 *
 * Each worker owns one struct wsg_metrics and is its only writer; the admin endpoint on the
 * main thread reads all of them with relaxed atomic loads and prints Prometheus text.
 */
#ifndef WSG_METRICS_H
#define WSG_METRICS_H

#include <stdint.h>
#include <stdio.h>

enum wsg_counter {
    WSG_M_ACCEPTED,      /* client connections accepted */
    WSG_M_REFUSED,       /* closed at accept: max_connections or max_connections_per_ip */
    WSG_M_TLS_FULL,      /* completed handshakes without resumption */
    WSG_M_TLS_RESUMED,   /* completed handshakes resumed from a ticket */
    WSG_M_TLS_FAILED,    /* failed handshakes */
    WSG_M_TLS_TIMEOUT,   /* handshakes that timed out */
    WSG_M_HTTP_REQUESTS, /* requests answered (any status) */
    WSG_M_WS_UPGRADES,   /* WebSocket sessions established */
    WSG_M_C2U_BYTES,     /* WebSocket payload bytes client -> upstream */
    WSG_M_U2C_BYTES,     /* ... upstream -> client */
    WSG_M_C2U_MESSAGES,
    WSG_M_U2C_MESSAGES,
    WSG_M_C2U_FRAMES,
    WSG_M_U2C_FRAMES,
    WSG_M_UPSTREAM_CONNECTS,      /* successful upstream connects */
    WSG_M_UPSTREAM_CONNECT_FAILS, /* refused or timed out */
    /* PROXY protocol listeners (listen ... proxy_protocol) */
    WSG_M_PROXY_OK,         /* header with a client address (or v1 UNKNOWN): used */
    WSG_M_PROXY_LOCAL,      /* v2 LOCAL (the balancer's health check): the socket's addresses kept */
    WSG_M_PROXY_INVALID,    /* malformed header (or none: other bytes first): closed */
    WSG_M_PROXY_INCOMPLETE, /* no whole header within handshake_timeout, or EOF before it: closed */
    WSG_M_PROXY_UNTRUSTED,  /* from an address outside proxy_protocol_from: closed at accept */
    /* affinity cookie (affinity cookie): what a request's cookie was */
    WSG_M_AFF_FOLLOWED, /* valid, and it named an upstream of the route's group */
    WSG_M_AFF_FOREIGN,  /* valid, but naming no upstream of this group: the hash decides */
    WSG_M_AFF_EXPIRED,  /* signed by us, older than affinity_cookie_ttl: the hash decides */
    WSG_M_AFF_FORGED,   /* not a token signed with our key: the hash decides */
    /* permessage-deflate: compressed messages' payload, as received and inflated (checked) */
    WSG_M_Z_C2U_WIRE,
    WSG_M_Z_C2U_PLAIN,
    WSG_M_Z_U2C_WIRE,
    WSG_M_Z_U2C_PLAIN,
    WSG_M_Z_BOMBS, /* compressed messages stopped inflated: max_frame, max_message, deflate_max_ratio */
    WSG_M__COUNT
};

/* Policy rules, for violations counted by route, rule and direction. */
enum wsg_policy_rule {
    WSG_PR_MAX_FRAME,
    WSG_PR_MAX_MESSAGE,
    WSG_PR_MAX_FRAGMENTS,
    WSG_PR_OPCODE,
    WSG_PR_UTF8,
    WSG_PR_PROTOCOL,
    WSG_PR_RATE_MESSAGES,
    WSG_PR_RATE_BYTES,
    WSG_PR_IP_RATE,
    WSG_PR_IP_CONNS,
    WSG_PR_ORIGIN,
    WSG_PR_SUBPROTOCOL,
    WSG_PR_HEADER_SIZE,
    WSG_PR_PONG_TIMEOUT,
    WSG_PR_LIFETIME,
    WSG_PR_SLOW_CONSUMER,
    WSG_PR_RATE_INFLATE, /* rate_inflate_bytes */
    WSG_PR_THROTTLED,    /* not a violation: a frame held until tokens refill */
    WSG_PR__COUNT
};
extern const char *const wsg_policy_rule_names[WSG_PR__COUNT];
enum { WSG_M_ROUTES = 33 }; /* default route + WSG_CFG_MAX_ROUTES */

/* Why TLS handshakes failed. */
enum {
    WSG_TLSF_VERSION,
    WSG_TLSF_NO_COMMON,
    WSG_TLSF_NOT_TLS,
    WSG_TLSF_CLIENT_ALERT,
    WSG_TLSF_OTHER,
    WSG_TLSF__COUNT
};

enum { WSG_M_STATES = 6 };       /* connection states, as conn.c numbers them */
enum { WSG_M_SIZE_BUCKETS = 8 }; /* frame payload: <=125, <=1k, <=4k, <=16k, <=64k, <=256k, <=1m, more */
enum { WSG_M_CLOSE_CODES = 12 }; /* 1000..1011 by index; other codes are counted in "other" */

struct wsg_metrics {
    uint64_t c[WSG_M__COUNT];
    int64_t conns_in_state[WSG_M_STATES]; /* gauge */
    uint64_t status[6];                   /* HTTP answers by class: [1]=1xx .. [5]=5xx */
    uint64_t tls_fail[WSG_TLSF__COUNT];   /* failed handshakes by reason */
    uint64_t frame_size[WSG_M_SIZE_BUCKETS];
    uint64_t frame_size_sum; /* payload bytes of the frames counted in frame_size */
    /* close codes seen, by who sent them: [0] client, [1] upstream, [2] gateway to client,
     * [3] gateway to upstream; index code-1000, last slot "other" */
    uint64_t close[4][WSG_M_CLOSE_CODES + 1];
    /* [route][rule][direction: 0 client->upstream, 1 upstream->client] */
    uint64_t policy[WSG_M_ROUTES][WSG_PR__COUNT][2];
};

/* The owner thread is the only writer; relaxed stores keep readers on other threads defined. */
static inline void wsg_m_add(uint64_t *ctr, uint64_t n)
{
    __atomic_store_n(ctr, __atomic_load_n(ctr, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
static inline void wsg_m_gauge(int64_t *g, int64_t delta)
{
    __atomic_store_n(g, __atomic_load_n(g, __ATOMIC_RELAXED) + delta, __ATOMIC_RELAXED);
}
static inline unsigned wsg_m_size_bucket(uint64_t len)
{
    static const uint64_t edges[WSG_M_SIZE_BUCKETS - 1] = {125, 1024, 4096, 16384, 65536, 262144, 1048576};
    unsigned i = 0;
    while (i < WSG_M_SIZE_BUCKETS - 1 && len > edges[i])
        i++;
    return i;
}
static inline void wsg_m_close(struct wsg_metrics *m, unsigned who, int code)
{
    if (code <= 0)
        return;
    unsigned i =
        code >= 1000 && code < 1000 + WSG_M_CLOSE_CODES ? (unsigned)(code - 1000) : WSG_M_CLOSE_CODES;
    wsg_m_add(&m->close[who][i], 1);
}

/* Sums n workers' metrics into out (relaxed loads). */
void wsg_metrics_sum(struct wsg_metrics *out, const struct wsg_metrics *const *each, unsigned n);
/* Prints Prometheus text exposition format 0.0.4 for the sum; route_names[i] names route i
 * (0 = the default route, ""). */
void wsg_metrics_print(FILE *f, const struct wsg_metrics *m, const char *const *route_names,
                       unsigned nroutes);

#endif
