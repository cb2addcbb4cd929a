/*
 * fleet.c - the Redis sync of the per-IP rules (fleet.h).
 *
 * Per address (and route) one Redis hash, `PREFIX ip:ROUTE:ADDRESS`, with fields
 *   m, b, u          messages, bytes and upgrades the whole fleet consumed (counters, HINCRBY)
 *   c:INSTANCE       "LIVE_CONNECTIONS UNIX_MS" of one gateway (rewritten every sync)
 * and a time to live refreshed on every sync (PEXPIRE), so an address nobody serves any more, and
 * the fields of a gateway that crashed, go away by themselves (stale c: fields are also ignored
 * at once by their timestamp: gateways' clocks are assumed NTP-synchronised).
 *
 * One sync = for each collected entry, pipelined: HINCRBY m, HINCRBY b, HINCRBY u (each with this
 * gateway's delta; the reply is the fleet's new total), HSET or HDEL of our c: field, PEXPIRE,
 * HGETALL (the other gateways' c: fields). When every reply of the batch is in, each entry is
 * applied. A batch that has not come back within max(1 s, 5 intervals) counts as Redis being
 * down: the connection is dropped and retried with backoff (0.2 s doubling up to 5 s).
 */
#include "gateway/fleet.h"

#include <arpa/inet.h>
#include <ev.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "gateway/log.h"

#define FLEET_MAX_ITEMS 4096 /* entries per sync (more wait for the next one) */
#define FLEET_KEY_TTL_MS 60000
#define FLEET_CMDS 6 /* commands per entry */

struct batch {
    struct wsg_fleet *f;
    size_t n;
    unsigned pending; /* replies still to come */
    unsigned failed : 1;
    struct wsg_ip_fleet_item *items;
    int64_t (*tot)[3];
    uint32_t *remote;
};

struct reply_slot {
    struct batch *b;
    size_t item;
    int what; /* 0..2: HINCRBY m/b/u; 3: HGETALL; -1: no value wanted */
};

struct wsg_fleet {
    struct wsg_iptable *t;
    char spec[300]; /* the redis setting, for log lines */
    char host[256];
    int port; /* 0: unix socket in host */
    char password[256];
    char prefix[64];
    double interval, stale, batch_timeout;
    char instance[17];
    pthread_t thread;
    struct ev_loop *loop;
    ev_async stop;
    ev_timer tick, retry;
    redisAsyncContext *ac;
    int connected;
    double backoff;
    struct batch *inflight;
    double inflight_since;
    struct wsg_ip_fleet_item *scratch;
    /* for /metrics (atomic) */
    int up;
    unsigned long long syncs, errors, keys, dropped;
    double last_log;
    int failing; /* the last line logged was a failure */
};

static void log_state(struct wsg_fleet *f, int level, const char *what, const char *why)
{
    double now = ev_now(f->loop);
    /* the first failure after syncing always; then at most one line per 10 s while it lasts */
    if (level != WSG_LOG_NOTICE && f->failing && now - f->last_log < 10.0)
        return;
    f->failing = level != WSG_LOG_NOTICE;
    f->last_log = now;
    wsg_log(level, "redis %s: %s%s%s", f->spec, what, why ? ": " : "", why ? why : "");
}

static void set_up(struct wsg_fleet *f, int up)
{
    __atomic_store_n(&f->up, up, __ATOMIC_RELAXED);
}

static void schedule_retry(struct wsg_fleet *f);

static void batch_free(struct batch *b)
{
    if (b == NULL)
        return;
    free(b->items);
    free(b->tot);
    free(b->remote);
    free(b);
}

/* Every reply of a batch is in (or the connection died): apply, or drop. */
static void batch_done(struct batch *b)
{
    struct wsg_fleet *f = b->f;
    if (f->inflight == b)
        f->inflight = NULL;
    if (!b->failed) {
        double now = ev_time();
        for (size_t i = 0; i < b->n; i++)
            wsg_iptable_fleet_apply(f->t, &b->items[i], b->tot[i][0], b->tot[i][1], b->tot[i][2],
                                    b->remote[i], now);
        __atomic_add_fetch(&f->syncs, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&f->keys, b->n, __ATOMIC_RELAXED);
        if (!__atomic_load_n(&f->up, __ATOMIC_RELAXED)) {
            set_up(f, 1);
            log_state(f, WSG_LOG_NOTICE, "syncing again: per-IP limits count over the fleet", NULL);
        }
    } else {
        __atomic_add_fetch(&f->errors, 1, __ATOMIC_RELAXED);
        set_up(f, 0); /* (the failing reply was logged) */
    }
    batch_free(b);
}

/* The other gateways' live connections from HGETALL's field/value array. */
static uint32_t remote_conns(const struct wsg_fleet *f, const redisReply *r)
{
    uint64_t sum = 0;
    double now_ms = ev_time() * 1000.0;
    char mine[24];
    snprintf(mine, sizeof(mine), "c:%s", f->instance);
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len < 2 ||
            memcmp(k->str, "c:", 2) != 0 || strcmp(k->str, mine) == 0)
            continue;
        unsigned long n = 0;
        double at = 0;
        if (sscanf(v->str, "%lu %lf", &n, &at) != 2 || now_ms - at > f->stale * 1000.0)
            continue; /* malformed, or a gateway that stopped syncing (crashed): forgotten */
        sum += n;
    }
    return sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct reply_slot *s = priv;
    struct batch *b = s->b;
    const redisReply *rep = r;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
        if (rep != NULL && !b->failed)
            log_state(b->f, WSG_LOG_WARN, "sync failed", rep->str);
        b->failed = 1;
    } else if (s->what >= 0 && s->what < 3) {
        if (rep->type == REDIS_REPLY_INTEGER)
            b->tot[s->item][s->what] = rep->integer;
        else
            b->failed = 1;
    } else if (s->what == 3) {
        if (rep->type == REDIS_REPLY_ARRAY)
            b->remote[s->item] = remote_conns(b->f, rep);
        else
            b->failed = 1;
    }
    free(s);
    if (--b->pending == 0)
        batch_done(b);
}

static int send_cmd(struct wsg_fleet *f, struct batch *b, size_t item, int what, int argc, const char **argv,
                    const size_t *lens)
{
    struct reply_slot *s = malloc(sizeof(*s));
    if (s == NULL)
        return -1;
    *s = (struct reply_slot){b, item, what};
    if (redisAsyncCommandArgv(f->ac, on_reply, s, argc, argv, lens) != REDIS_OK) {
        free(s);
        return -1;
    }
    b->pending++;
    return 0;
}

static void key_of(const struct wsg_fleet *f, const struct wsg_ip_key *k, char *out, size_t cap)
{
    char addr[INET6_ADDRSTRLEN];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(k->addr, mapped, 12) == 0)
        inet_ntop(AF_INET, k->addr + 12, addr, sizeof(addr));
    else
        inet_ntop(AF_INET6, k->addr, addr, sizeof(addr));
    snprintf(out, cap, "%sip:%u:%s", f->prefix, (unsigned)k->route, addr);
}

static void sync_now(struct wsg_fleet *f)
{
    size_t n = wsg_iptable_fleet_collect(f->t, f->scratch, FLEET_MAX_ITEMS);
    if (!f->connected) {
        __atomic_add_fetch(&f->dropped, n, __ATOMIC_RELAXED); /* local counting meanwhile */
        return;
    }
    if (n == 0)
        return;
    struct batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return;
    b->f = f;
    b->n = n;
    b->items = malloc(n * sizeof(*b->items));
    b->tot = calloc(n, sizeof(*b->tot));
    b->remote = calloc(n, sizeof(*b->remote));
    if (b->items == NULL || b->tot == NULL || b->remote == NULL) {
        batch_free(b);
        return;
    }
    memcpy(b->items, f->scratch, n * sizeof(*b->items));
    b->pending = 1; /* held until every command is queued */
    char field[24], val[48], ttl[16];
    snprintf(field, sizeof(field), "c:%s", f->instance);
    snprintf(ttl, sizeof(ttl), "%d", FLEET_KEY_TTL_MS);
    double now_ms = ev_time() * 1000.0;
    for (size_t i = 0; i < n && !b->failed; i++) {
        const struct wsg_ip_fleet_item *it = &b->items[i];
        char key[400], d[3][24];
        key_of(f, &it->key, key, sizeof(key));
        snprintf(d[0], sizeof(d[0]), "%lld", (long long)it->d_msgs);
        snprintf(d[1], sizeof(d[1]), "%lld", (long long)it->d_bytes);
        snprintf(d[2], sizeof(d[2]), "%lld", (long long)it->d_upg);
        static const char *const fields[3] = {"m", "b", "u"};
        for (int w = 0; w < 3; w++) {
            const char *argv[] = {"HINCRBY", key, fields[w], d[w]};
            size_t lens[] = {7, strlen(key), 1, strlen(d[w])};
            if (send_cmd(f, b, i, w, 4, argv, lens) != 0)
                b->failed = 1;
        }
        if (it->conns > 0) {
            snprintf(val, sizeof(val), "%u %.0f", it->conns, now_ms);
            const char *argv[] = {"HSET", key, field, val};
            size_t lens[] = {4, strlen(key), strlen(field), strlen(val)};
            if (send_cmd(f, b, i, -1, 4, argv, lens) != 0)
                b->failed = 1;
        } else {
            const char *argv[] = {"HDEL", key, field};
            size_t lens[] = {4, strlen(key), strlen(field)};
            if (send_cmd(f, b, i, -1, 3, argv, lens) != 0)
                b->failed = 1;
        }
        const char *pe[] = {"PEXPIRE", key, ttl};
        size_t pl[] = {7, strlen(key), strlen(ttl)};
        const char *ga[] = {"HGETALL", key};
        size_t gl[] = {7, strlen(key)};
        if (send_cmd(f, b, i, -1, 3, pe, pl) != 0 || send_cmd(f, b, i, 3, 2, ga, gl) != 0)
            b->failed = 1;
    }
    f->inflight = b;
    f->inflight_since = ev_now(f->loop);
    if (--b->pending == 0)
        batch_done(b);
}

static void on_tick(EV_P_ ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct wsg_fleet *f = w->data;
    if (f->inflight != NULL) {
        if (ev_now(f->loop) - f->inflight_since > f->batch_timeout && f->ac != NULL) {
            log_state(f, WSG_LOG_WARN, "no answer in time: limits count locally until it is back", NULL);
            set_up(f, 0);
            redisAsyncContext *ac = f->ac;
            f->ac = NULL; /* the disconnect callback sees a context we no longer use */
            f->connected = 0;
            redisAsyncFree(ac); /* answers the batch's callbacks with NULL: dropped */
            schedule_retry(f);
        }
        return; /* one batch at a time: the next interval's deltas wait in the table */
    }
    sync_now(f);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct wsg_fleet *f = ac->data;
    if (f == NULL || f->ac != ac)
        return;
    if (status != REDIS_OK) {
        log_state(f, WSG_LOG_WARN, "cannot connect, per-IP limits count locally", ac->errstr);
        f->ac = NULL; /* hiredis frees it after this callback */
        schedule_retry(f);
        return;
    }
    f->connected = 1;
    f->backoff = 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct wsg_fleet *f = ac->data;
    (void)status;
    if (f == NULL || f->ac != ac)
        return;
    f->ac = NULL;
    f->connected = 0;
    set_up(f, 0);
    log_state(f, WSG_LOG_WARN, "connection lost, per-IP limits count locally",
              ac->errstr[0] ? ac->errstr : NULL);
    schedule_retry(f);
}

static void on_auth(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    const redisReply *rep = r;
    struct wsg_fleet *f = ac->data;
    if (f != NULL && rep != NULL && f->ac == ac && rep->type == REDIS_REPLY_ERROR)
        log_state(f, WSG_LOG_WARN, "AUTH refused, per-IP limits count locally", rep->str);
}

/* AUTH (when a password is set), then PING: its answer says whether the syncs can work. */
static void on_ping(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    const redisReply *rep = r;
    struct wsg_fleet *f = ac->data;
    if (f == NULL || rep == NULL || f->ac != ac)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        log_state(f, WSG_LOG_WARN, "refused, per-IP limits count locally", rep->str);
        return;
    }
    set_up(f, 1);
    log_state(f, WSG_LOG_NOTICE, "connected: per-IP limits count over the fleet", NULL);
}

static void connect_now(struct wsg_fleet *f)
{
    redisAsyncContext *ac = f->port ? redisAsyncConnect(f->host, f->port) : redisAsyncConnectUnix(f->host);
    if (ac == NULL || ac->err) {
        log_state(f, WSG_LOG_WARN, "cannot connect, per-IP limits count locally",
                  ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_retry(f);
        return;
    }
    ac->data = f;
    f->ac = ac;
    redisLibevAttach(f->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (f->password[0]) {
        const char *argv[] = {"AUTH", f->password};
        size_t lens[] = {4, strlen(f->password)};
        redisAsyncCommandArgv(ac, on_auth, NULL, 2, argv, lens);
    }
    redisAsyncCommand(ac, on_ping, NULL, "PING");
}

static void on_retry(EV_P_ ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    connect_now(w->data);
}

static void schedule_retry(struct wsg_fleet *f)
{
    f->backoff = f->backoff == 0 ? 0.2 : (f->backoff * 2 > 5.0 ? 5.0 : f->backoff * 2);
    ev_timer_stop(f->loop, &f->retry);
    ev_timer_set(&f->retry, f->backoff, 0.);
    ev_timer_start(f->loop, &f->retry);
}

static void on_stop(EV_P_ ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(EV_A_ EVBREAK_ALL);
}

static void *fleet_main(void *arg)
{
    struct wsg_fleet *f = arg;
    connect_now(f);
    ev_run(f->loop, 0);
    if (f->ac != NULL) {
        redisAsyncContext *ac = f->ac;
        f->ac = NULL;
        redisAsyncFree(ac);
    }
    return NULL;
}

struct wsg_fleet *wsg_fleet_start(struct wsg_iptable *t, const struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    struct wsg_fleet *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->scratch = calloc(FLEET_MAX_ITEMS, sizeof(*f->scratch))) == NULL) {
        free(f);
        snprintf(err, WSG_ERRLEN, "redis: out of memory");
        return NULL;
    }
    f->t = t;
    snprintf(f->spec, sizeof(f->spec), "%s", cfg->redis);
    if (strncmp(cfg->redis, "unix:", 5) == 0) {
        snprintf(f->host, sizeof(f->host), "%s", cfg->redis + 5);
    } else {
        const char *colon = strrchr(cfg->redis, ':');
        size_t hl = (size_t)(colon - cfg->redis);
        const char *h = cfg->redis;
        if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [v6]:port */
            h++;
            hl -= 2;
        }
        snprintf(f->host, sizeof(f->host), "%.*s", (int)hl, h);
        f->port = atoi(colon + 1);
    }
    snprintf(f->password, sizeof(f->password), "%s", cfg->redis_password);
    snprintf(f->prefix, sizeof(f->prefix), "%s", cfg->redis_prefix);
    f->interval = cfg->redis_sync;
    f->batch_timeout = 5 * f->interval > 1.0 ? 5 * f->interval : 1.0;
    /* another gateway's connection count is believed for 10 intervals, at least 2 s */
    f->stale = 10 * f->interval > 2.0 ? 10 * f->interval : 2.0;
    uint8_t id[8];
    if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
        memset(id, 0, sizeof(id));
    for (int i = 0; i < 8; i++)
        snprintf(f->instance + 2 * i, 3, "%02x", id[i]);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    if (f->loop == NULL) {
        free(f->scratch);
        free(f);
        snprintf(err, WSG_ERRLEN, "redis: cannot create an event loop");
        return NULL;
    }
    ev_async_init(&f->stop, on_stop);
    ev_async_start(f->loop, &f->stop);
    ev_timer_init(&f->tick, on_tick, f->interval, f->interval);
    f->tick.data = f;
    ev_timer_start(f->loop, &f->tick);
    ev_init(&f->retry, on_retry);
    f->retry.data = f;
    wsg_iptable_fleet_enable(t, f->stale);
    if (pthread_create(&f->thread, NULL, fleet_main, f) != 0) {
        ev_loop_destroy(f->loop);
        free(f->scratch);
        free(f);
        snprintf(err, WSG_ERRLEN, "redis: cannot start the sync thread");
        return NULL;
    }
    return f;
}

void wsg_fleet_stop(struct wsg_fleet *f)
{
    if (f == NULL)
        return;
    ev_async_send(f->loop, &f->stop);
    pthread_join(f->thread, NULL);
    batch_free(f->inflight); /* its callbacks ran with NULL when the context was freed */
    ev_loop_destroy(f->loop);
    free(f->scratch);
    free(f);
}

void wsg_fleet_metrics(struct wsg_fleet *f, FILE *out)
{
    if (f == NULL)
        return;
    fprintf(
        out,
        "# HELP wsgate_redis_up 1 while per-IP limits are synced with redis, 0 while they count locally.\n"
        "# TYPE wsgate_redis_up gauge\nwsgate_redis_up %d\n"
        "# HELP wsgate_redis_syncs_total Syncs with redis that completed.\n"
        "# TYPE wsgate_redis_syncs_total counter\nwsgate_redis_syncs_total %llu\n"
        "# HELP wsgate_redis_sync_errors_total Syncs that failed (redis down, slow or answering an error).\n"
        "# TYPE wsgate_redis_sync_errors_total counter\nwsgate_redis_sync_errors_total %llu\n"
        "# HELP wsgate_redis_keys_synced_total Per-IP entries sent to redis.\n"
        "# TYPE wsgate_redis_keys_synced_total counter\nwsgate_redis_keys_synced_total %llu\n"
        "# HELP wsgate_redis_keys_local_total Per-IP entries counted locally only because redis was "
        "down.\n# TYPE wsgate_redis_keys_local_total counter\nwsgate_redis_keys_local_total %llu\n",
        __atomic_load_n(&f->up, __ATOMIC_RELAXED), __atomic_load_n(&f->syncs, __ATOMIC_RELAXED),
        __atomic_load_n(&f->errors, __ATOMIC_RELAXED), __atomic_load_n(&f->keys, __ATOMIC_RELAXED),
        __atomic_load_n(&f->dropped, __ATOMIC_RELAXED));
}
