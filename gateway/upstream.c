/*
 * upstream.c - upstream peers, rendezvous hashing on the client address, passive health.
 *
 * Rendezvous (highest-random-weight) hashing: every peer gets a score from a hash of
 * (client address, peer name) and the client goes to the highest score. The ranking depends only
 * on the configured names and the address, so gateways sharing a list agree, and removing a
 * peer moves only that peer's clients. Weighted with the logarithmic method
 * (score = -weight / ln(u), u uniform in (0,1)), which gives each peer a share proportional to
 * its weight.
 *
 * Key: the client address bytes (4 for IPv4 incl. IPv4-mapped IPv6, 16 for IPv6), never the port.
 * hash_prefix 24 masks IPv4 to /24 (nginx ip_hash) and IPv6 to /48.
 *
 * Passive health as nginx: a failure within fail_timeout of the window's first failure counts;
 * max_fails of them mark the peer down for fail_timeout. A success clears the count.
 */
#include "gateway/upstream.h"

#include <arpa/inet.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* splitmix64's finalizer: spreads FNV's weak high bits over the whole word. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The hash key for a client: address bytes, masked when hash_prefix asks for it. */
static size_t client_key(const struct wsg_upstreams *u, const struct sockaddr *sa, uint8_t key[16])
{
    size_t len = 0;
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        memcpy(key, &sin->sin_addr, 4);
        len = 4;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            memcpy(key, sin6->sin6_addr.s6_addr + 12, 4);
            len = 4;
        } else {
            memcpy(key, sin6->sin6_addr.s6_addr, 16);
            len = 16;
        }
    }
    if (u->hash_prefix == 24) {
        if (len == 4)
            key[3] = 0;
        else if (len == 16)
            memset(key + 6, 0, 10);
    }
    return len;
}

static double score(const struct wsg_peer *p, const uint8_t *key, size_t keylen)
{
    uint64_t h = fnv1a(FNV_OFFSET, key, keylen);
    h = mix(fnv1a(h, p->name, strlen(p->name)));
    double x = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* 2^53: x in (0,1) */
    unsigned w = __atomic_load_n(&p->weight, __ATOMIC_RELAXED);
    return -(double)(w > 0 ? w : 1) / log(x); /* weight 0 ranks as 1: is_up skips it */
}

int wsg_upstream_add(struct wsg_upstreams *u, const char *hostport, unsigned weight, char err[WSG_ERRLEN])
{
    if (u->npeers >= WSG_MAX_PEERS) {
        snprintf(err, WSG_ERRLEN, "upstream \"%.100s\": more than %d upstreams", hostport, WSG_MAX_PEERS);
        return -1;
    }
    if (weight < 1 || weight > 100) {
        snprintf(err, WSG_ERRLEN, "upstream \"%.100s\": weight %u is not in 1-100", hostport, weight);
        return -1;
    }
    struct wsg_peer *p = &u->peers[u->npeers];
    size_t len = strlen(hostport);
    if (len >= sizeof(p->name)) {
        snprintf(err, WSG_ERRLEN, "upstream \"%.100s...\": name is too long", hostport);
        return -1;
    }
    for (size_t i = 0; i < u->npeers; i++)
        if (strcmp(u->peers[i].name, hostport) == 0) {
            snprintf(err, WSG_ERRLEN, "upstream \"%s\": given twice", hostport);
            return -1;
        }

    char host[128];
    const char *port;
    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, WSG_ERRLEN, "upstream \"%s\": expected [IPV6]:PORT", hostport);
            return -1;
        }
        memcpy(host, hostport + 1, (size_t)(close - hostport - 1));
        host[close - hostport - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(hostport, ':');
        if (colon == NULL || colon == hostport || memchr(hostport, ':', (size_t)(colon - hostport)) != NULL) {
            snprintf(err, WSG_ERRLEN, "upstream \"%s\": expected HOST:PORT", hostport);
            return -1;
        }
        memcpy(host, hostport, (size_t)(colon - hostport));
        host[colon - hostport] = '\0';
        port = colon + 1;
    }
    char *end;
    unsigned long pn = strtoul(port, &end, 10);
    if (port[0] < '0' || port[0] > '9' || *end != '\0' || pn < 1 || pn > 65535) {
        snprintf(err, WSG_ERRLEN, "upstream \"%s\": bad port (1-65535)", hostport);
        return -1;
    }

    memset(p, 0, sizeof(*p));
    struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&p->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&p->addr;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pn);
        p->addrlen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pn);
        p->addrlen = sizeof(*sin6);
    } else if (hostport[0] == '[') {
        snprintf(err, WSG_ERRLEN, "upstream \"%s\": \"%s\" is not an IPv6 address", hostport, host);
        return -1;
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        int rc = getaddrinfo(host, port, &hints, &res);
        if (rc != 0 || res == NULL) {
            snprintf(err, WSG_ERRLEN, "upstream \"%s\": cannot resolve \"%s\": %s", hostport, host,
                     rc != 0 ? gai_strerror(rc) : "no address");
            return -1;
        }
        memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
        p->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
    }
    memcpy(p->name, hostport, len + 1);
    p->weight = weight;
    p->cfg_weight = weight;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        snprintf(err, WSG_ERRLEN, "upstream \"%s\": cannot create lock", hostport);
        return -1;
    }
    u->npeers++;
    return 0;
}

void wsg_upstreams_free(struct wsg_upstreams *u)
{
    for (size_t i = 0; i < u->npeers; i++)
        pthread_mutex_destroy(&u->peers[i].lock);
    u->npeers = 0;
}

size_t wsg_upstream_rank(const struct wsg_upstreams *u, const struct sockaddr *client,
                         unsigned order[WSG_MAX_PEERS])
{
    uint8_t key[16];
    size_t keylen = client_key(u, client, key);
    double sc[WSG_MAX_PEERS];
    size_t n = u->npeers;

    for (size_t i = 0; i < n; i++) {
        double s = score(&u->peers[i], key, keylen);
        /* insertion sort, best first; equal scores keep index order */
        size_t j = i;
        while (j > 0 && sc[j - 1] < s) {
            sc[j] = sc[j - 1];
            order[j] = order[j - 1];
            j--;
        }
        sc[j] = s;
        order[j] = (unsigned)i;
    }
    return n;
}

static int is_down(struct wsg_peer *p, double now)
{
    pthread_mutex_lock(&p->lock);
    int down = p->down_until > now;
    pthread_mutex_unlock(&p->lock);
    return down;
}

int wsg_upstream_passive_down(struct wsg_peer *p, double now)
{
    return is_down(p, now);
}

/* Taken out by the operator: draining, or weight 0. */
static int admin_out(const struct wsg_peer *p)
{
    return __atomic_load_n(&p->draining, __ATOMIC_ACQUIRE) ||
           __atomic_load_n(&p->weight, __ATOMIC_RELAXED) == 0;
}

int wsg_upstream_is_up(struct wsg_peer *p, double now)
{
    return !admin_out(p) && !__atomic_load_n(&p->hc_down, __ATOMIC_RELAXED) && !is_down(p, now);
}

struct wsg_peer *wsg_upstream_pick(struct wsg_upstreams *u, const struct sockaddr *client, uint64_t tried,
                                   double now)
{
    unsigned order[WSG_MAX_PEERS];
    size_t n = wsg_upstream_rank(u, client, order);
    struct wsg_peer *fallback = NULL;

    for (size_t i = 0; i < n; i++) {
        unsigned idx = order[i];
        if (tried & (1ULL << idx))
            continue;
        struct wsg_peer *p = &u->peers[idx];
        if (wsg_upstream_is_up(p, now))
            return p;
        if (fallback == NULL && !admin_out(p))
            fallback = p;
    }
    /* every untried peer is down by health: try the best of them anyway; never one that the
     * operator took out (draining, weight 0) */
    return fallback;
}

void wsg_upstream_release(struct wsg_upstreams *u, struct wsg_peer *p, int failed, double now)
{
    __atomic_add_fetch(failed ? &p->failures : &p->picks, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->lock);
    if (!failed) {
        p->fails = 0;
        p->down_until = 0;
    } else if (u->max_fails > 0) {
        if (p->fails == 0 || now - p->fail_start > u->fail_timeout) {
            p->fails = 0;
            p->fail_start = now; /* a new window */
        }
        if (++p->fails >= u->max_fails) {
            p->down_until = now + u->fail_timeout;
            p->fails = 0;
        }
    }
    pthread_mutex_unlock(&p->lock);
}
