/*
 * upstream.h - the upstream peer table, rendezvous (highest-random-weight) hashing on the client
 * address with weights, and passive health (max_fails within fail_timeout).
 *
 * The table is built at boot (or reload) and shared read-only by all workers; the health fields
 * are updated under a per-peer lock. Ranking is deterministic from the peer names and the client
 * address alone, so two gateways with the same list agree without talking.
 */
#ifndef WSG_UPSTREAM_H
#define WSG_UPSTREAM_H

#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policies/base/err.h"

#define WSG_MAX_PEERS 64

struct wsg_peer {
    char name[128]; /* "host:port" as configured: the hash identity */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned weight;     /* in force (atomic): the configured one, or POST .../weight; 0 = no new sessions */
    unsigned cfg_weight; /* as configured */
    /* lifecycle (atomic; written by the admin endpoint and the health checker, read by workers) */
    int draining;             /* 1: POST .../drain: no new sessions, established ones closed over spread */
    unsigned drain_spread_ms; /* the drain's window, stored before draining (release) */
    int hc_down;              /* 1: the active health check says down */
    unsigned long sessions;   /* WebSocket sessions relayed to this peer now */
    /* active health check state, owned by the checker thread (gateway/health.c) */
    unsigned hc_ok_run, hc_fail_run; /* consecutive results */
    double hc_next;                  /* when the next check starts */
    int hc_busy;                     /* a check is in flight */
    uint64_t hc_checks, hc_failed;   /* totals (atomic; metrics) */
    uint64_t hc_latency_us;          /* last check's duration (atomic) */
    int hc_status;                   /* last check: HTTP status, 0 no answer, -1 timed out (atomic) */
    /* passive health, under lock */
    pthread_mutex_t lock;
    unsigned fails;
    double fail_start;        /* when the first failure of the current window happened */
    double down_until;        /* skipped until then */
    uint64_t picks, failures; /* connects that succeeded / failed (atomic; metrics) */
};

struct wsg_upstreams {
    struct wsg_peer peers[WSG_MAX_PEERS];
    size_t npeers;
    unsigned hash_prefix; /* 0: whole address; 24: IPv4 /24 (IPv6: /48 by same spirit) */
    unsigned max_fails;   /* 0: never mark down */
    double fail_timeout;  /* seconds */
};

/* Parses "host:port" or "[v6]:port" (numeric hosts, or names resolved at boot) into peer. */
int wsg_upstream_add(struct wsg_upstreams *u, const char *hostport, unsigned weight, char err[WSG_ERRLEN]);
void wsg_upstreams_free(struct wsg_upstreams *u); /* destroys locks; does not free u */

/**
 * Fills order[] with peer indexes ranked for this client (best first); returns npeers.
 * Rendezvous score per peer: -weight / ln(h) with h a 64-bit hash of (masked client address,
 * peer name) mapped into (0,1).
 */
size_t wsg_upstream_rank(const struct wsg_upstreams *u, const struct sockaddr *client,
                         unsigned order[WSG_MAX_PEERS]);

/**
 * The best peer for the client that is up (wsg_upstream_is_up) and not in tried (bitmask of
 * indexes). If every untried peer is down by health, returns the best untried one that is not
 * draining and has a weight anyway (nginx: a fully-down group is retried rather than refused).
 * NULL when all have been tried, or all the rest are draining or weighted 0.
 */
struct wsg_peer *wsg_upstream_pick(struct wsg_upstreams *u, const struct sockaddr *client, uint64_t tried,
                                   double now);
/**
 * May new sessions and requests be placed on p? Up by passive health (not within fail_timeout
 * of max_fails failures) and by the active check, not draining, weight > 0.
 */
int wsg_upstream_is_up(struct wsg_peer *p, double now);
/* Passive health alone: 1 while max_fails failures keep p out. */
int wsg_upstream_passive_down(struct wsg_peer *p, double now);
/* Reports the outcome of a connection attempt (failed=1: connect refused/timed out). */
void wsg_upstream_release(struct wsg_upstreams *u, struct wsg_peer *p, int failed, double now);
static inline unsigned wsg_upstream_index(const struct wsg_upstreams *u, const struct wsg_peer *p)
{
    return (unsigned)(p - u->peers);
}

#endif
