/*
 * iptable.c - the per-client-IP table shared by all workers (policy.h).
 *
 * nshards shards (a power of two), each with its own mutex, so workers rarely wait on each other.
 * A shard is a fixed array of entries (allocated once: the memory bound is exact and no malloc
 * happens on the data path), a chained hash over it (1-based entry indices, 0 = end, so a
 * calloc'ed table is empty and untouched pages cost nothing), and two lists:
 *   idle: entries without a live connection, most recently used first (the LRU);
 *   live: entries with live connections, never evicted.
 * Every operation is one hash lookup plus list splices: O(1). When a shard is full, the least
 * recently used idle entry is evicted (its buckets restart full, which errs toward the client);
 * when every entry of the shard has a live connection, a new IP is refused with Retry-After 1 s
 * and counted (`full`) rather than admitted untracked, so per-IP limits can never be dodged by
 * filling the table.
 *
 * The hash is keyed with a random seed so clients cannot aim their addresses at one chain.
 */
#include "policies/policy.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "policies/policy-int.h"

#define NIL 0u /* entry indices are 1-based */
#define RETRY_FULL 1.0
#define RETRY_CONNS 1.0

struct ipent {
    struct wsg_ip_key key;
    uint32_t conns;
    uint32_t chain;      /* next entry in the same hash chain */
    uint32_t prev, next; /* in the idle or the live list */
    struct wsg_bucket msgs, bytes, upgrades;
    /* fleet (redis, gateway/fleet.c): what this process consumed since the last sync, the
     * fleet's counters as last read, the other gateways' live connections and when learned */
    int64_t d_msgs, d_bytes, d_upg;
    int64_t seen_msgs, seen_bytes, seen_upg;
    uint32_t remote_conns;
    uint8_t fleet_seen; /* the counters were read once: later reads charge the difference */
    uint8_t dirty;      /* consumed since the last collect */
    double remote_at;
};

struct list {
    uint32_t head, tail; /* head = most recently used */
};

struct shard {
    pthread_mutex_t mu;
    struct ipent *ent;         /* cap entries; ent[i - 1] is entry i */
    uint32_t *hash;            /* nhash chain heads */
    uint32_t cap, nhash, used; /* used: entries handed out so far (bump, then reuse by eviction) */
    uint32_t count;            /* entries in the hash */
    struct list idle, live;
    uint32_t nlive;
    uint64_t evicted, full;
    char pad[64]; /* keep neighbouring shards' mutexes off one cache line */
};

struct wsg_iptable {
    struct shard *shards;
    unsigned nshards, shift; /* shard = hash >> shift */
    uint64_t seed;
    double remote_ttl; /* fleet: other gateways' connection counts older than this are ignored */
};

static uint32_t per_shard(size_t max_entries, unsigned nshards)
{
    size_t per = (max_entries + nshards - 1) / nshards;
    return per == 0 ? 1 : (uint32_t)per;
}

static uint32_t hash_size(uint32_t cap)
{
    uint32_t n = 1;
    while (n < cap)
        n <<= 1;
    return n;
}

static int valid(size_t max_entries, unsigned nshards)
{
    return nshards != 0 && (nshards & (nshards - 1)) == 0 && max_entries != 0 &&
           (max_entries + nshards - 1) / nshards <= (1u << 30);
}

size_t wsg_iptable_footprint(size_t max_entries, unsigned nshards)
{
    if (!valid(max_entries, nshards))
        return 0;
    uint32_t cap = per_shard(max_entries, nshards);
    return sizeof(struct wsg_iptable) +
           (size_t)nshards * (sizeof(struct shard) + (size_t)cap * sizeof(struct ipent) +
                              (size_t)hash_size(cap) * sizeof(uint32_t));
}

struct wsg_iptable *wsg_iptable_new(size_t max_entries, unsigned nshards)
{
    if (!valid(max_entries, nshards))
        return NULL;
    struct wsg_iptable *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->nshards = nshards;
    t->shift = 64;
    for (unsigned n = nshards; n > 1; n >>= 1)
        t->shift--;
    if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) != (ssize_t)sizeof(t->seed))
        t->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)t;
    t->shards = calloc(nshards, sizeof(struct shard));
    if (t->shards == NULL) {
        free(t);
        return NULL;
    }
    uint32_t cap = per_shard(max_entries, nshards);
    for (unsigned i = 0; i < nshards; i++) {
        struct shard *s = &t->shards[i];
        s->cap = cap;
        s->nhash = hash_size(cap);
        s->ent = calloc(cap, sizeof(struct ipent));
        s->hash = calloc(s->nhash, sizeof(uint32_t));
        pthread_mutex_init(&s->mu, NULL);
        if (s->ent == NULL || s->hash == NULL) {
            t->nshards = i + 1;
            wsg_iptable_free(t);
            return NULL;
        }
    }
    return t;
}

void wsg_iptable_free(struct wsg_iptable *t)
{
    if (t == NULL)
        return;
    for (unsigned i = 0; i < t->nshards; i++) {
        free(t->shards[i].ent);
        free(t->shards[i].hash);
        pthread_mutex_destroy(&t->shards[i].mu);
    }
    free(t->shards);
    free(t);
}

void wsg_ip_key_make(struct wsg_ip_key *k, uint32_t route, const struct sockaddr *sa)
{
    memset(k, 0, sizeof(*k));
    k->route = route;
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        k->addr[10] = k->addr[11] = 0xff; /* ::ffff:a.b.c.d, the IPv4-mapped form */
        memcpy(&k->addr[12], &s4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(k->addr, &s6->sin6_addr, 16);
    }
}

/* ---- hashing and lists (shard lock held) ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_key(const struct wsg_iptable *t, const struct wsg_ip_key *k)
{
    uint64_t a, b;
    memcpy(&a, k->addr, 8);
    memcpy(&b, k->addr + 8, 8);
    uint64_t h = mix(t->seed ^ k->route);
    h = mix(h ^ a);
    h = mix(h ^ b ^ 0x9e3779b97f4a7c15ull);
    return h;
}

static struct shard *shard_of(struct wsg_iptable *t, uint64_t h)
{
    return &t->shards[t->shift == 64 ? 0 : h >> t->shift];
}

static struct ipent *ent(struct shard *s, uint32_t i)
{
    return &s->ent[i - 1];
}

static int key_eq(const struct wsg_ip_key *a, const struct wsg_ip_key *b)
{
    return a->route == b->route && memcmp(a->addr, b->addr, 16) == 0;
}

static void unlink_from(struct shard *s, struct list *l, uint32_t i)
{
    struct ipent *e = ent(s, i);
    if (e->prev != NIL)
        ent(s, e->prev)->next = e->next;
    else
        l->head = e->next;
    if (e->next != NIL)
        ent(s, e->next)->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NIL;
}

static void push_front(struct shard *s, struct list *l, uint32_t i)
{
    struct ipent *e = ent(s, i);
    e->prev = NIL;
    e->next = l->head;
    if (l->head != NIL)
        ent(s, l->head)->prev = i;
    else
        l->tail = i;
    l->head = i;
}

static uint32_t lookup(struct shard *s, const struct wsg_ip_key *k, uint64_t h)
{
    for (uint32_t i = s->hash[h & (s->nhash - 1)]; i != NIL; i = ent(s, i)->chain)
        if (key_eq(&ent(s, i)->key, k))
            return i;
    return NIL;
}

static void hash_remove(struct shard *s, struct wsg_iptable *t, uint32_t i)
{
    uint32_t *pp = &s->hash[hash_key(t, &ent(s, i)->key) & (s->nhash - 1)];
    while (*pp != i)
        pp = &ent(s, *pp)->chain;
    *pp = ent(s, i)->chain;
}

/* A fresh entry for k (buckets full), or NIL when every entry has a live connection. */
static uint32_t insert(struct wsg_iptable *t, struct shard *s, const struct wsg_ip_key *k, uint64_t h,
                       const struct wsg_policy *p, double now)
{
    uint32_t i;
    if (s->used < s->cap) {
        i = ++s->used;
    } else if (s->idle.tail != NIL) {
        i = s->idle.tail;
        unlink_from(s, &s->idle, i);
        hash_remove(s, t, i);
        s->count--;
        s->evicted++;
    } else {
        s->full++;
        return NIL;
    }
    struct ipent *e = ent(s, i);
    memset(e, 0, sizeof(*e));
    e->key = *k;
    wsg_bucket_init(&e->msgs, &p->ip_msgs, now);
    wsg_bucket_init(&e->bytes, &p->ip_bytes, now);
    wsg_bucket_init(&e->upgrades, &p->ip_upgrades, now);
    uint32_t *head = &s->hash[h & (s->nhash - 1)];
    e->chain = *head;
    *head = i;
    s->count++;
    push_front(s, &s->idle, i);
    return i;
}

/* Marks i as just used: front of the idle list (live entries are not ordered). */
static void touch(struct shard *s, uint32_t i)
{
    if (ent(s, i)->conns == 0 && s->idle.head != i) {
        unlink_from(s, &s->idle, i);
        push_front(s, &s->idle, i);
    }
}

/* ---- the operations ---- */

/* The entry for k, created when absent; NIL when the shard is full of live entries. */
static uint32_t lookup_or_insert(struct wsg_iptable *t, struct shard *s, const struct wsg_ip_key *k,
                                 uint64_t h, const struct wsg_policy *p, double now)
{
    uint32_t i = lookup(s, k, h);
    return i != NIL ? i : insert(t, s, k, h, p, now);
}

double wsg_iptable_conn_begin(struct wsg_iptable *t, const struct wsg_ip_key *k, const struct wsg_policy *p,
                              double now)
{
    if (t == NULL || !wsg_policy_per_ip(p))
        return 0;
    uint64_t h = hash_key(t, k);
    struct shard *s = shard_of(t, h);
    double wait = 0;
    pthread_mutex_lock(&s->mu);
    uint32_t i = lookup_or_insert(t, s, k, h, p, now);
    if (i == NIL) {
        wait = RETRY_FULL;
        goto out;
    }
    struct ipent *e = ent(s, i);
    touch(s, i);
    uint32_t remote = t->remote_ttl > 0 && now - e->remote_at < t->remote_ttl ? e->remote_conns : 0;
    if (p->ip_max_conns != 0 && e->conns + remote >= p->ip_max_conns) {
        wait = RETRY_CONNS; /* nobody knows when a connection will end: try again in a second */
        goto out;
    }
    wait = wsg_bucket_take(&e->upgrades, &p->ip_upgrades, 1, now);
    if (wait > 0)
        goto out;
    e->d_upg++;
    e->dirty = 1;
    if (e->conns++ == 0) {
        unlink_from(s, &s->idle, i);
        push_front(s, &s->live, i);
        s->nlive++;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return wait;
}

void wsg_iptable_conn_end(struct wsg_iptable *t, const struct wsg_ip_key *k)
{
    if (t == NULL)
        return;
    uint64_t h = hash_key(t, k);
    struct shard *s = shard_of(t, h);
    pthread_mutex_lock(&s->mu);
    uint32_t i = lookup(s, k, h);
    if (i != NIL && ent(s, i)->conns > 0 && --ent(s, i)->conns == 0) {
        unlink_from(s, &s->live, i);
        push_front(s, &s->idle, i);
        s->nlive--;
    }
    pthread_mutex_unlock(&s->mu);
}

double wsg_iptable_take(struct wsg_iptable *t, const struct wsg_ip_key *k, const struct wsg_policy *p,
                        double bytes, double now)
{
    return wsg_iptable_take_n(t, k, p, 1, bytes, now);
}

double wsg_iptable_take_n(struct wsg_iptable *t, const struct wsg_ip_key *k, const struct wsg_policy *p,
                          double msgs, double bytes, double now)
{
    int msgs_on = p->ip_msgs.rate > 0 && msgs > 0, bytes_on = p->ip_bytes.rate > 0 && bytes > 0;
    if (t == NULL || (!msgs_on && !bytes_on))
        return 0;
    uint64_t h = hash_key(t, k);
    struct shard *s = shard_of(t, h);
    double wait = 0;
    pthread_mutex_lock(&s->mu);
    uint32_t i = lookup_or_insert(t, s, k, h, p, now);
    if (i == NIL) /* full of live entries: a connection admitted earlier is not held back */
        goto out;
    struct ipent *e = ent(s, i);
    touch(s, i);
    double wm = 0, wb = 0;
    if (msgs_on) {
        wsg_bucket_refill(&e->msgs, &p->ip_msgs, now);
        wm = wsg_bucket_wait(&e->msgs, &p->ip_msgs, msgs);
    }
    if (bytes_on) {
        wsg_bucket_refill(&e->bytes, &p->ip_bytes, now);
        wb = wsg_bucket_wait(&e->bytes, &p->ip_bytes, bytes);
    }
    if (wm == 0 && wb == 0) { /* both or neither */
        if (msgs_on) {
            e->msgs.tokens -= msgs;
            e->d_msgs += (int64_t)msgs;
        }
        if (bytes_on) {
            e->bytes.tokens -= bytes;
            e->d_bytes += (int64_t)bytes;
        }
        e->dirty = 1;
    }
    wait = wm > wb ? wm : wb;
out:
    pthread_mutex_unlock(&s->mu);
    return wait;
}

long wsg_iptable_conns(struct wsg_iptable *t, const struct wsg_ip_key *k)
{
    uint64_t h = hash_key(t, k);
    struct shard *s = shard_of(t, h);
    pthread_mutex_lock(&s->mu);
    uint32_t i = lookup(s, k, h);
    long n = i == NIL ? -1 : (long)ent(s, i)->conns;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void wsg_iptable_stats(struct wsg_iptable *t, struct wsg_iptable_stats *st)
{
    memset(st, 0, sizeof(*st));
    for (unsigned i = 0; i < t->nshards; i++) {
        struct shard *s = &t->shards[i];
        pthread_mutex_lock(&s->mu);
        st->capacity += s->cap;
        st->entries += s->count;
        st->live += s->nlive;
        st->evicted += s->evicted;
        st->full += s->full;
        pthread_mutex_unlock(&s->mu);
    }
}

size_t wsg_iptable_shard_entries(struct wsg_iptable *t, unsigned shard)
{
    if (shard >= t->nshards)
        return 0;
    struct shard *s = &t->shards[shard];
    pthread_mutex_lock(&s->mu);
    size_t n = s->count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- fleet (policy.h) ---- */

void wsg_iptable_fleet_enable(struct wsg_iptable *t, double remote_ttl)
{
    t->remote_ttl = remote_ttl;
}

static int collect_one(struct ipent *e, struct wsg_ip_fleet_item *it)
{
    if (e->key.route == UINT32_MAX) /* max_connections_per_ip: this gateway's own rule */
        return 0;
    it->key = e->key;
    it->d_msgs = e->d_msgs;
    it->d_bytes = e->d_bytes;
    it->d_upg = e->d_upg;
    it->conns = e->conns;
    e->d_msgs = e->d_bytes = e->d_upg = 0;
    e->dirty = 0;
    return 1;
}

size_t wsg_iptable_fleet_collect(struct wsg_iptable *t, struct wsg_ip_fleet_item *out, size_t max)
{
    size_t n = 0;
    for (unsigned si = 0; si < t->nshards && n < max; si++) {
        struct shard *s = &t->shards[si];
        pthread_mutex_lock(&s->mu);
        for (uint32_t i = s->live.head; i != NIL && n < max; i = ent(s, i)->next)
            n += (size_t)collect_one(ent(s, i), &out[n]);
        /* idle entries that consumed since the last sync are at the front of the LRU (a
         * connection that just ended): stop at the first clean one */
        for (uint32_t i = s->idle.head; i != NIL && n < max && ent(s, i)->dirty; i = ent(s, i)->next)
            n += (size_t)collect_one(ent(s, i), &out[n]);
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

/* What the other gateways consumed since the last read of one counter. */
static int64_t remote_part(int64_t total, int64_t mine, int64_t *seen, int first)
{
    int64_t r = total - mine - *seen;
    *seen = total;
    /* first read: history before this gateway knew the address is not charged; a counter that
     * went backwards expired in Redis (or Redis restarted): start over from it */
    return first || r < 0 ? 0 : r;
}

void wsg_iptable_fleet_apply(struct wsg_iptable *t, const struct wsg_ip_fleet_item *it, int64_t tot_msgs,
                             int64_t tot_bytes, int64_t tot_upg, uint32_t remote_conns, double now)
{
    uint64_t h = hash_key(t, &it->key);
    struct shard *s = shard_of(t, h);
    pthread_mutex_lock(&s->mu);
    uint32_t i = lookup(s, &it->key, h);
    if (i != NIL) {
        struct ipent *e = ent(s, i);
        int first = !e->fleet_seen;
        e->msgs.tokens -= (double)remote_part(tot_msgs, it->d_msgs, &e->seen_msgs, first);
        e->bytes.tokens -= (double)remote_part(tot_bytes, it->d_bytes, &e->seen_bytes, first);
        e->upgrades.tokens -= (double)remote_part(tot_upg, it->d_upg, &e->seen_upg, first);
        e->fleet_seen = 1;
        e->remote_conns = remote_conns;
        e->remote_at = now;
    }
    pthread_mutex_unlock(&s->mu);
}
