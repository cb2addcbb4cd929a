/*
 * policy.h - the only header of policies/: per-route policy values, token buckets, the shared
 * per-client-IP table, and the matching helpers (Host, path, Origin, subprotocol).
 *
 * Pure: no sockets, no TLS, no wslay, no clock. Every call that depends on time takes `now`
 * (seconds, e.g. ev_now()), so unit tests inject time. The per-IP table is the only shared
 * mutable state; it is sharded and locked internally and safe from any thread.
 */
#ifndef WSG_POLICY_H
#define WSG_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policies/base/err.h"

/* ---- values (filled by gateway/config.c from the settings table) ---- */

enum wsg_rate_action { WSG_RATE_THROTTLE = 0, WSG_RATE_CLOSE = 1 };

/* Limits for one direction of a WebSocket. 0 = no limit for sizes/counts. */
struct wsg_dir_policy {
    uint64_t max_frame;     /* payload bytes of one frame (1009 above) */
    uint64_t max_message;   /* payload bytes of one message over all its fragments (1009) */
    uint32_t max_fragments; /* frames of one message (1009 above; 0 = no limit) */
    unsigned allow_text : 1, allow_binary : 1; /* a forbidden data opcode closes 1003 */
    unsigned utf8 : 1;                         /* validate text as UTF-8 (1007) */
};

/* A token bucket's configuration: rate per second and burst capacity. rate 0 = off. */
struct wsg_rate {
    double rate, burst;
};

#define WSG_POLICY_MAX_LIST 16

struct wsg_policy {
    struct wsg_dir_policy c2u, u2c;
    /* client -> upstream message rates, per connection and per client IP (all its connections,
     * all workers) */
    struct wsg_rate conn_msgs, conn_bytes, ip_msgs, ip_bytes;
    enum wsg_rate_action rate_action; /* throttle: stop reading until refilled; close: 1008 */
    /* before the upgrade, per client IP */
    uint32_t ip_max_conns;       /* concurrent WebSockets per IP (0 = no limit) */
    struct wsg_rate ip_upgrades; /* upgrades per second per IP */
    unsigned ip_limit_status;    /* 429 (with Retry-After) or 503 */
    /* handshake */
    char origins[WSG_POLICY_MAX_LIST][128]; /* exact or "*.example.com"; none = any origin */
    unsigned norigins;
    char subprotocols[WSG_POLICY_MAX_LIST][64]; /* allowed; none = any */
    unsigned nsubprotocols;
    uint32_t max_header_size; /* request head for this route (431 above; 0 = global cap) */
    /* active health checks of a route's own upstream group ("" / 0 = the global setting) */
    char health_check[256];
    double health_interval, health_timeout;
    uint32_t health_rise, health_fall;
    /* permessage-deflate (RFC 7692): 1 = negotiated end to end and inspected, 0 = offers stripped */
    unsigned deflate;
    uint32_t deflate_max_ratio; /* inflated / compressed bytes of a message past 64 KiB (0 = none) */
    /* 1: clients are told to reset their compressor after each message (client_no_context_takeover
     * added to the offer to the upstream and, when its answer lacks it, to the client's answer) */
    unsigned deflate_client_no_context;
    struct wsg_rate conn_inflate; /* client -> upstream bytes inflated per second, per connection */
    /* liveness */
    double ping_interval;         /* gateway pings an idle client after this (0 = off) */
    double pong_timeout;          /* and closes 1001 if no pong within this */
    double max_lifetime;          /* close 1001 after this (0 = off) ... */
    double lifetime_jitter;       /* ... plus a random 0..jitter, so clients do not reconnect together */
    uint64_t slow_consumer_bytes; /* bytes waiting for the client above this ... */
    double slow_consumer_grace;   /* ... for longer than this: close 1008 (0 bytes = off) */
};

/* Fills p with the built-in defaults (documented in the README). */
void wsg_policy_defaults(struct wsg_policy *p);
/* 1 if p has any per-IP rule (ip_max_conns, ip_upgrades, ip_msgs, ip_bytes). Without one,
 * wsg_iptable_conn_begin admits without touching the table, so call wsg_iptable_conn_end only for
 * connections whose policy (kept for the connection's life) has one. */
int wsg_policy_per_ip(const struct wsg_policy *p);

/* ---- token bucket ---- */

struct wsg_bucket {
    double tokens, last; /* tokens available at time `last` */
};

/* Starts full. */
void wsg_bucket_init(struct wsg_bucket *b, const struct wsg_rate *r, double now);
/**
 * Takes n tokens if available (refilling by rate since last, capped at burst).
 * @return 0 when taken; otherwise the seconds until n tokens will be there (> 0), nothing taken.
 * n larger than burst can never be taken at once: it is allowed when the bucket is full (the
 * bucket goes negative, i.e. into debt), so a message larger than the burst is delayed, not refused.
 */
double wsg_bucket_take(struct wsg_bucket *b, const struct wsg_rate *r, double n, double now);

/**
 * Charges n tokens for work already done (bytes already inflated): the bucket may go below zero.
 * n 0 only asks whether it is out of debt.
 * @return 0 when the bucket is at or above zero afterwards; else the seconds until it is back at
 *         zero (> 0). Always 0 when the rate is off.
 */
double wsg_bucket_charge(struct wsg_bucket *b, const struct wsg_rate *r, double n, double now);

/* ---- per-client-IP table, shared by all workers ---- */

struct wsg_iptable;
/* max_entries bounds memory (LRU eviction of idle entries); nshards a power of two. */
struct wsg_iptable *wsg_iptable_new(size_t max_entries, unsigned nshards);
void wsg_iptable_free(struct wsg_iptable *t);
/* Bytes used by the table at max_entries (for the README's memory statement). */
size_t wsg_iptable_footprint(size_t max_entries, unsigned nshards);

/* Counters for /metrics and tests (summed over shards, each read under its lock). */
struct wsg_iptable_stats {
    size_t capacity;  /* entries the table can hold (shards x per-shard capacity) */
    size_t entries;   /* entries in use */
    size_t live;      /* entries with at least one live connection */
    uint64_t evicted; /* idle entries dropped to make room (LRU) */
    uint64_t full;    /* new IPs refused because every entry of their shard had live connections */
};
void wsg_iptable_stats(struct wsg_iptable *t, struct wsg_iptable_stats *s);
/* Entries in use in one shard (tests: keys spread over shards). */
size_t wsg_iptable_shard_entries(struct wsg_iptable *t, unsigned shard);

/* What one IP (for one route) has: key = route index + address (IPv4-mapped IPv6 = IPv4). */
struct wsg_ip_key {
    uint32_t route;
    uint8_t addr[16];
};
void wsg_ip_key_make(struct wsg_ip_key *k, uint32_t route, const struct sockaddr *sa);

/**
 * Admission of a new WebSocket: checks ip_max_conns and ip_upgrades; on success counts the
 * connection (release it with wsg_iptable_conn_end).
 * @return 0 admitted; else the seconds a client should wait (Retry-After), > 0.
 */
double wsg_iptable_conn_begin(struct wsg_iptable *t, const struct wsg_ip_key *k, const struct wsg_policy *p,
                              double now);
void wsg_iptable_conn_end(struct wsg_iptable *t, const struct wsg_ip_key *k);
/**
 * Takes one message of `bytes` from the IP's message and byte buckets (both or neither).
 * @return 0 taken; else seconds until possible.
 */
double wsg_iptable_take(struct wsg_iptable *t, const struct wsg_ip_key *k, const struct wsg_policy *p,
                        double bytes, double now);
/* The same with the message count given: 0 for the continuation frames of a message, whose bytes
 * still count. */
double wsg_iptable_take_n(struct wsg_iptable *t, const struct wsg_ip_key *k, const struct wsg_policy *p,
                          double msgs, double bytes, double now);
/* ---- fleet: the per-IP rules counted over several gateways (gateway/fleet.c, through Redis) ----
 * Each gateway keeps its own buckets and counts what it consumes; every sync interval the fleet
 * module collects those deltas, adds them to shared counters, and charges back what the other
 * gateways consumed meanwhile (the counters' growth minus its own delta), plus their live
 * connection counts for ip_max_conns. Nothing here waits for the network. */
struct wsg_ip_fleet_item {
    struct wsg_ip_key key;
    int64_t d_msgs, d_bytes, d_upg; /* consumed here since the previous collect */
    uint32_t conns;                 /* live connections here */
};
/* Turns on ip_max_conns over the fleet: remote counts are used while younger than remote_ttl. */
void wsg_iptable_fleet_enable(struct wsg_iptable *t, double remote_ttl);
/* Copies out (and resets the deltas of) up to max entries that have live connections or consumed
 * since the last call. Entries of max_connections_per_ip (route UINT32_MAX) stay local. */
size_t wsg_iptable_fleet_collect(struct wsg_iptable *t, struct wsg_ip_fleet_item *out, size_t max);
/* The shared counters after this gateway's delta of it was added (tot_*), and the other
 * gateways' live connections: charges what the others consumed since the previous apply. */
void wsg_iptable_fleet_apply(struct wsg_iptable *t, const struct wsg_ip_fleet_item *it, int64_t tot_msgs,
                             int64_t tot_bytes, int64_t tot_upg, uint32_t remote_conns, double now);

/* Live connections counted for k, or -1 when k has no entry (never seen, or evicted). */
long wsg_iptable_conns(struct wsg_iptable *t, const struct wsg_ip_key *k);

/* ---- matching ---- */

/* Host pattern: exact (case-insensitive, port ignored in host) or "*.example.com" (one or more labels). */
int wsg_match_host(const char *pattern, const char *host, size_t host_len);
/* Origin header value ("https://app.example.com[:port]") against the allowlist: each entry is
 * an origin ("https://app.example.com"), or a host pattern ("*.example.com") matched on the
 * origin's host. Returns 1 if allowed (also when the list is empty). */
int wsg_match_origin(const struct wsg_policy *p, const char *origin, size_t len);
/* Picks the first offered subprotocol (comma list from Sec-WebSocket-Protocol) that is allowed.
 * Returns 1 allowed (any when the list is empty or nothing was offered), 0 refused. */
int wsg_match_subprotocol(const struct wsg_policy *p, const char *offer, size_t len);
/* 1 if the single subprotocol name (e.g. the one the upstream's 101 chose) is allowed (any when
 * the list is empty). */
int wsg_match_subprotocol_one(const struct wsg_policy *p, const char *name, size_t len);

#endif
