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
    unsigned weight;
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
 * The best peer for the client that is not down and not in tried (bitmask of indexes).
 * If every untried peer is down, returns the best untried one anyway (nginx: a fully-down
 * group is retried rather than refused). NULL when all have been tried.
 */
struct wsg_peer *wsg_upstream_pick(struct wsg_upstreams *u, const struct sockaddr *client, uint64_t tried,
                                   double now);
/* 1 when p may take a new session now (not marked down by the passive checks). */
int wsg_upstream_is_up(struct wsg_peer *p, double now);
/* Reports the outcome of a connection attempt (failed=1: connect refused/timed out). */
void wsg_upstream_release(struct wsg_upstreams *u, struct wsg_peer *p, int failed, double now);
static inline unsigned wsg_upstream_index(const struct wsg_upstreams *u, const struct wsg_peer *p)
{
    return (unsigned)(p - u->peers);
}

#endif
