/*
 * lifecycle.c - per-upstream drain, ready and weight over the admin endpoint (see lifecycle.h).
 * Runs on the main thread; what it changes in struct wsg_peer is read by the workers with
 * atomic loads, and each worker applies a drain to its own connections when woken.
 */
#include "gateway/lifecycle.h"

#include "gateway/health.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/log.h"

#define SPREAD_MAX 3600.0

static const char *group_name(const struct wsg_runtime *rt, unsigned r)
{
    return r == 0 ? "default" : rt->cfg->routes[r - 1].name;
}

/* s escaped for the inside of a JSON string */
static void json_in(FILE *out, const char *s)
{
    char buf[512];
    size_t n = wsg_json_str(buf, 0, sizeof(buf) - 1, s, strlen(s));
    buf[n] = '\0';
    fputs(buf, out);
}

static void json_s(FILE *out, const char *s)
{
    fputc('"', out);
    json_in(out, s);
    fputc('"', out);
}

static const char *state_of(struct wsg_peer *p, double now)
{
    if (__atomic_load_n(&p->draining, __ATOMIC_ACQUIRE))
        return "draining";
    if (__atomic_load_n(&p->hc_down, __ATOMIC_RELAXED) || wsg_upstream_passive_down(p, now))
        return "down";
    if (__atomic_load_n(&p->weight, __ATOMIC_RELAXED) == 0)
        return "idle";
    return "up";
}

/* WebSocket sessions on peers of that name, over every runtime in memory. */
static unsigned long sessions_of(struct wsg_runtime *const *rts, size_t nrts, const char *name)
{
    unsigned long n = 0;
    for (size_t k = 0; k < nrts; k++) {
        const struct wsg_runtime *rt = rts[k];
        for (unsigned r = 0; r <= rt->cfg->nroutes; r++) {
            if (r > 0 && rt->ups[r] == rt->ups[0])
                continue;
            const struct wsg_upstreams *u = rt->ups[r];
            for (size_t i = 0; i < u->npeers; i++)
                if (strcmp(u->peers[i].name, name) == 0)
                    n += __atomic_load_n(&u->peers[i].sessions, __ATOMIC_RELAXED);
        }
    }
    return n;
}

void wsg_lifecycle_list(FILE *out, struct wsg_runtime *const *rts, size_t nrts, double now)
{
    const struct wsg_runtime *rt = rts[0];
    int first = 1;
    fprintf(out, "{\"upstreams\":[");
    for (unsigned r = 0; r <= rt->cfg->nroutes; r++) {
        if (r > 0 && rt->ups[r] == rt->ups[0])
            continue;
        struct wsg_upstreams *u = rt->ups[r];
        for (size_t i = 0; i < u->npeers; i++) {
            struct wsg_peer *p = &u->peers[i];
            fprintf(out, "%s\n{\"group\":", first ? "" : ",");
            first = 0;
            json_s(out, group_name(rt, r));
            fprintf(out, ",\"name\":");
            json_s(out, p->name);
            int hc_on = strcmp(wsg_health_path(rt->cfg, r), "off") != 0;
            int st = __atomic_load_n(&p->hc_status, __ATOMIC_RELAXED);
            fprintf(out,
                    ",\"state\":\"%s\",\"weight\":%u,\"configured_weight\":%u,\"sessions\":%lu,"
                    "\"health\":{\"passive\":\"%s\",\"active\":\"%s\"",
                    state_of(p, now), __atomic_load_n(&p->weight, __ATOMIC_RELAXED), p->cfg_weight,
                    sessions_of(rts, nrts, p->name), wsg_upstream_passive_down(p, now) ? "down" : "up",
                    !hc_on                                           ? "off"
                    : __atomic_load_n(&p->hc_down, __ATOMIC_RELAXED) ? "down"
                                                                     : "up");
            if (hc_on)
                fprintf(out, ",\"checks\":%llu,\"failed\":%llu,\"last_status\":%d,\"latency_ms\":%.3f",
                        (unsigned long long)__atomic_load_n(&p->hc_checks, __ATOMIC_RELAXED),
                        (unsigned long long)__atomic_load_n(&p->hc_failed, __ATOMIC_RELAXED), st,
                        (double)__atomic_load_n(&p->hc_latency_us, __ATOMIC_RELAXED) / 1000.0);
            fprintf(out, "}}");
        }
    }
    fprintf(out, "\n]}\n");
}

struct family {
    const char *name, *type, *help;
};

static const struct family families[] = {
    {"wsgate_upstream_up", "gauge",
     "1 while the upstream is up by passive and active health (draining aside)."},
    {"wsgate_upstream_check_up", "gauge",
     "0 while the active health check holds the upstream down (1 otherwise, also with health_check off)."},
    {"wsgate_upstream_check_seconds", "gauge",
     "Duration of the last active health check (0 before the first)."},
    {"wsgate_upstream_checks_total", "counter", "Active health checks by result (health_check)."},
    {"wsgate_upstream_draining", "gauge", "1 while the upstream is drained over the admin endpoint."},
    {"wsgate_upstream_weight", "gauge", "The weight in force (configured, or set over the admin endpoint)."},
    {"wsgate_upstream_sessions", "gauge", "WebSocket sessions relayed to the upstream now."},
};

void wsg_lifecycle_metrics(FILE *out, const struct wsg_runtime *rt, double now)
{
    /* every family always, so that dashboards find them (zeros while health_check is off) */
    for (size_t k = 0; k < sizeof(families) / sizeof(families[0]); k++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", families[k].name, families[k].help, families[k].name,
                families[k].type);
        for (unsigned r = 0; r <= rt->cfg->nroutes; r++) {
            if (r > 0 && rt->ups[r] == rt->ups[0])
                continue;
            struct wsg_upstreams *u = rt->ups[r];
            for (size_t i = 0; i < u->npeers; i++) {
                struct wsg_peer *p = &u->peers[i];
                char lbl[320];
                snprintf(lbl, sizeof(lbl), "route=\"%s\",upstream=\"%s\"", group_name(rt, r), p->name);
                int hc_down = __atomic_load_n(&p->hc_down, __ATOMIC_RELAXED);
                switch (k) {
                case 0:
                    fprintf(out, "%s{%s} %d\n", families[k].name, lbl,
                            !hc_down && !wsg_upstream_passive_down(p, now));
                    break;
                case 1:
                    fprintf(out, "%s{%s} %d\n", families[k].name, lbl, !hc_down);
                    break;
                case 2:
                    fprintf(out, "%s{%s} %.6f\n", families[k].name, lbl,
                            (double)__atomic_load_n(&p->hc_latency_us, __ATOMIC_RELAXED) / 1e6);
                    break;
                case 3: {
                    uint64_t all = __atomic_load_n(&p->hc_checks, __ATOMIC_RELAXED);
                    uint64_t bad = __atomic_load_n(&p->hc_failed, __ATOMIC_RELAXED);
                    fprintf(out, "%s{%s,result=\"ok\"} %llu\n%s{%s,result=\"failed\"} %llu\n",
                            families[k].name, lbl, (unsigned long long)(all - bad), families[k].name, lbl,
                            (unsigned long long)bad);
                    break;
                }
                case 4:
                    fprintf(out, "%s{%s} %d\n", families[k].name, lbl,
                            __atomic_load_n(&p->draining, __ATOMIC_ACQUIRE));
                    break;
                case 5:
                    fprintf(out, "%s{%s} %u\n", families[k].name, lbl,
                            __atomic_load_n(&p->weight, __ATOMIC_RELAXED));
                    break;
                default:
                    fprintf(out, "%s{%s} %lu\n", families[k].name, lbl,
                            __atomic_load_n(&p->sessions, __ATOMIC_RELAXED));
                    break;
                }
            }
        }
    }
}

/* The value of key in a query string ("a=1&b=2"), copied into val; 1 found, 0 not, -1 too long. */
static int query_get(const char *q, size_t qlen, const char *key, char *val, size_t cap)
{
    size_t kl = strlen(key);
    const char *end = q + qlen;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - q) > kl && memcmp(q, key, kl) == 0 && q[kl] == '=') {
            size_t vl = (size_t)(stop - q - (ptrdiff_t)kl - 1);
            if (vl >= cap)
                return -1;
            memcpy(val, q + kl + 1, vl);
            val[vl] = '\0';
            return 1;
        }
        q = amp ? amp + 1 : end;
    }
    return 0;
}

enum action { A_DRAIN, A_READY, A_WEIGHT };

int wsg_lifecycle_post(FILE *out, const char *target, size_t len, struct wsg_runtime *const *rts, size_t nrts,
                       struct wsg_worker *workers, unsigned nworkers)
{
    static const char prefix[] = "/upstreams/";
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len;
    size_t qlen = q ? len - plen - 1 : 0;
    if (q)
        q++;
    /* the HTTP parser already refuses these; names and values are compared as C strings */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] >= 0x7f) {
            fprintf(out, "{\"ok\":false,\"error\":\"not found\"}\n");
            return 404;
        }
    if (plen <= sizeof(prefix) - 1 || memcmp(target, prefix, sizeof(prefix) - 1) != 0) {
        fprintf(out, "{\"ok\":false,\"error\":\"not found\"}\n");
        return 404;
    }
    const char *name = target + sizeof(prefix) - 1;
    const char *slash = NULL;
    for (const char *s = target + plen; s > name; s--)
        if (s[-1] == '/') {
            slash = s - 1;
            break;
        }
    char peer_name[128], act[16];
    if (slash == NULL || slash == name || (size_t)(slash - name) >= sizeof(peer_name) ||
        (size_t)(target + plen - slash - 1) >= sizeof(act)) {
        fprintf(out, "{\"ok\":false,\"error\":\"expected /upstreams/HOST:PORT/ACTION\"}\n");
        return 404;
    }
    memcpy(peer_name, name, (size_t)(slash - name));
    peer_name[slash - name] = '\0';
    memcpy(act, slash + 1, (size_t)(target + plen - slash - 1));
    act[target + plen - slash - 1] = '\0';
    enum action a;
    if (strcmp(act, "drain") == 0)
        a = A_DRAIN;
    else if (strcmp(act, "ready") == 0)
        a = A_READY;
    else if (strcmp(act, "weight") == 0)
        a = A_WEIGHT;
    else {
        fprintf(out, "{\"ok\":false,\"error\":\"no such action (drain, ready, weight)\"}\n");
        return 404;
    }

    /* the upstream must exist in the configuration in force */
    const struct wsg_runtime *cur = rts[0];
    int found = 0;
    for (unsigned r = 0; r <= cur->cfg->nroutes && !found; r++)
        for (size_t i = 0; i < cur->ups[r]->npeers && !found; i++)
            found = strcmp(cur->ups[r]->peers[i].name, peer_name) == 0;
    if (!found) {
        fprintf(out, "{\"ok\":false,\"error\":\"no upstream ");
        json_in(out, peer_name);
        fprintf(out, " in the configuration\"}\n");
        return 404;
    }

    char val[32];
    double spread = cur->cfg->drain_spread;
    unsigned w = 0;
    if (a == A_DRAIN) {
        int r = query_get(q ? q : "", qlen, "spread", val, sizeof(val));
        if (r < 0 || (r == 1 && (wsg_parse_duration(val, &spread) != 0 || spread > SPREAD_MAX))) {
            fprintf(out, "{\"ok\":false,\"error\":\"spread: expected a duration up to 1h (e.g. 30s)\"}\n");
            return 400;
        }
    } else if (a == A_WEIGHT) {
        int r = query_get(q ? q : "", qlen, "w", val, sizeof(val));
        char *end = NULL;
        unsigned long v = r == 1 ? strtoul(val, &end, 10) : 1000;
        if (r != 1 || val[0] < '0' || val[0] > '9' || *end != '\0' || v > 100) {
            fprintf(out, "{\"ok\":false,\"error\":\"w: expected a weight 0-100\"}\n");
            return 400;
        }
        w = (unsigned)v;
    }

    for (size_t k = 0; k < nrts; k++) {
        const struct wsg_runtime *rt = rts[k];
        for (unsigned r = 0; r <= rt->cfg->nroutes; r++) {
            if (r > 0 && rt->ups[r] == rt->ups[0])
                continue;
            struct wsg_upstreams *u = rt->ups[r];
            for (size_t i = 0; i < u->npeers; i++) {
                struct wsg_peer *p = &u->peers[i];
                if (strcmp(p->name, peer_name) != 0)
                    continue;
                if (a == A_DRAIN) {
                    __atomic_store_n(&p->drain_spread_ms, (unsigned)(spread * 1000.0 + 0.5),
                                     __ATOMIC_RELAXED);
                    __atomic_store_n(&p->draining, 1, __ATOMIC_RELEASE);
                } else if (a == A_READY) {
                    __atomic_store_n(&p->draining, 0, __ATOMIC_RELEASE);
                } else {
                    __atomic_store_n(&p->weight, w, __ATOMIC_RELAXED);
                }
            }
        }
    }
    if (a != A_WEIGHT)
        for (unsigned i = 0; i < nworkers; i++)
            wsg_worker_upstreams_changed(&workers[i]);

    if (a == A_DRAIN)
        wsg_log(WSG_LOG_NOTICE, "upstream %s: draining (WebSockets closed over %.1fs)", peer_name, spread);
    else if (a == A_READY)
        wsg_log(WSG_LOG_NOTICE, "upstream %s: ready", peer_name);
    else
        wsg_log(WSG_LOG_NOTICE, "upstream %s: weight %u", peer_name, w);
    fprintf(out, "{\"ok\":true,\"upstream\":");
    json_s(out, peer_name);
    if (a == A_DRAIN)
        fprintf(out, ",\"state\":\"draining\",\"spread\":%.3f}\n", spread);
    else if (a == A_READY)
        fprintf(out, ",\"state\":\"ready\"}\n");
    else
        fprintf(out, ",\"weight\":%u}\n", w);
    return 200;
}
