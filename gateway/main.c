/*
 * main.c - argv, configuration, certificates, upstreams, worker threads and signals.
 * No protocol code lives here.
 *
 *   wsgate [-t] [-c FILE] [--NAME VALUE]...
 *
 * The main thread owns the default libev loop: SIGHUP reloads (config file + certificates;
 * established connections keep what they started with), SIGTERM/SIGINT drain (stop accepting,
 * close WebSockets with 1001, exit within drain_timeout); a second SIGTERM exits at once.
 */
#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/acme.h"
#include "gateway/admin.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/fleet.h"
#include "gateway/health.h"
#include "gateway/lifecycle.h"
#include "gateway/log.h"
#include "gateway/upstream.h"
#include "tls/tls.h"

#define MAX_WORKERS 256
#define MAX_OLD 64

static struct {
    int argc;
    char **argv;
    const char *conf_path;
    struct wsg_shared sh;
    struct wsg_worker *workers;
    unsigned nworkers;
    int draining;
    ev_timer drain_watch;
    struct ev_loop *loop;
    unsigned long reloads_ok, reloads_failed;
    struct wsg_runtime *old[MAX_OLD]; /* replaced runtimes: connections may still use them */
    struct wsg_fleet *fleet;          /* redis: the per-IP rules' sync thread (NULL: off) */
    unsigned nold;
} g;

static const char *const gen_names[] = {"localhost", "127.0.0.1", "::1"};

/* A private key readable by group or others is refused (key_permissions strict): whoever can
 * read it can impersonate the site. */
static int check_secret_mode(const char *path, const char *what, char err[WSG_ERRLEN])
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0; /* the TLS loader names the unreadable file */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, WSG_ERRLEN,
                 "%.120s: %s is accessible by group or others (mode %04o): chmod 600 it, "
                 "or set key_permissions any",
                 path, what, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* The ticket key file is a secret of the same rank: whoever reads it decrypts every resumed
 * session's keys (RFC 8446 §4.6.1). */
static int check_key_permissions(const struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    if (strcmp(cfg->key_permissions, "any") == 0)
        return 0;
    for (unsigned i = 0; i < cfg->nkey; i++)
        if (check_secret_mode(cfg->key[i], "private key", err) != 0)
            return -1;
    if (cfg->ticket_key_file[0] != '\0' &&
        check_secret_mode(cfg->ticket_key_file, "ticket key file", err) != 0)
        return -1;
    if (cfg->affinity_key_file[0] != '\0' &&
        check_secret_mode(cfg->affinity_key_file, "affinity key file", err) != 0)
        return -1;
    return 0;
}

static int load_config(struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    wsg_cfg_defaults(cfg);
    if (g.conf_path && wsg_cfg_load_file(cfg, g.conf_path, err) != 0)
        return -1;
    if (wsg_cfg_load_args(cfg, g.argc, g.argv, err) != 0)
        return -1;
    if (wsg_cfg_finish(cfg, err) != 0)
        return -1;
    return check_key_permissions(cfg, err);
}

/* Root binds 443 and reads the keys, then becomes `user`: the process that parses hostile
 * bytes holds no privilege. Reloads then read certificates as that user. */
static int drop_privileges(const struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    if (cfg->user[0] == '\0')
        return 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL) {
        snprintf(err, WSG_ERRLEN, "user: no such user \"%s\"", cfg->user);
        return -1;
    }
    gid_t gid = pw->pw_gid;
    if (cfg->group[0]) {
        struct group *gr = getgrnam(cfg->group);
        if (gr == NULL) {
            snprintf(err, WSG_ERRLEN, "group: no such group \"%s\"", cfg->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if (geteuid() != 0) {
        if (getuid() == pw->pw_uid)
            return 0;
        snprintf(err, WSG_ERRLEN, "user: switching to %s needs root", cfg->user);
        return -1;
    }
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
        snprintf(err, WSG_ERRLEN, "user: cannot switch to %s: %s", cfg->user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) { /* must be impossible now */
        snprintf(err, WSG_ERRLEN, "user: privileges could be regained after switching to %s", cfg->user);
        return -1;
    }
    wsg_log(WSG_LOG_NOTICE, "running as %s (uid %u, gid %u)", cfg->user, (unsigned)pw->pw_uid, (unsigned)gid);
    return 0;
}

static struct wsg_upstreams *build_upstreams(const struct wsg_cfg *cfg, const struct wsg_cfg_upstream *list,
                                             unsigned n, char err[WSG_ERRLEN])
{
    struct wsg_upstreams *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        snprintf(err, WSG_ERRLEN, "out of memory");
        return NULL;
    }
    u->hash_prefix = cfg->hash_prefix;
    u->max_fails = cfg->max_fails;
    u->fail_timeout = cfg->fail_timeout;
    for (unsigned i = 0; i < n; i++) {
        if (wsg_upstream_add(u, list[i].addr, list[i].weight, err) != 0) {
            wsg_upstreams_free(u);
            free(u);
            return NULL;
        }
    }
    return u;
}

static void runtime_free(struct wsg_runtime *rt)
{
    if (rt == NULL)
        return;
    for (unsigned i = 1; i <= WSG_CFG_MAX_ROUTES; i++)
        if (rt->ups[i] != NULL && rt->ups[i] != rt->ups[0]) {
            wsg_upstreams_free(rt->ups[i]);
            free(rt->ups[i]);
        }
    if (rt->ups[0] != NULL) {
        wsg_upstreams_free(rt->ups[0]);
        free(rt->ups[0]);
    }
    free((void *)rt->cfg);
    free(rt);
}

/* The affinity cookies' HMAC key: derived from affinity_key_file (whatever bytes it holds, at
 * least 32, so a fleet sharing the file shares the key), else one random key for the life of the
 * process (kept across reloads). */
static int affinity_key(const struct wsg_cfg *cfg, uint8_t key[32], char err[WSG_ERRLEN])
{
    static uint8_t process_key[32];
    static int have_process_key;
    if (cfg->affinity_key_file[0] == '\0') {
        if (!have_process_key) {
            struct wsg_rng *r = wsg_rng_new();
            if (r == NULL || wsg_rng_fill(r, process_key, sizeof(process_key)) != 0) {
                wsg_rng_free(r);
                snprintf(err, WSG_ERRLEN, "affinity: no random key (CSPRNG failed)");
                return -1;
            }
            wsg_rng_free(r);
            have_process_key = 1;
        }
        memcpy(key, process_key, 32);
        return 0;
    }
    uint8_t buf[4096];
    FILE *f = fopen(cfg->affinity_key_file, "rb");
    if (f == NULL) {
        snprintf(err, WSG_ERRLEN, "affinity_key_file %.200s: %s", cfg->affinity_key_file, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf), f);
    int more = fgetc(f) != EOF;
    fclose(f);
    int rc = 0;
    if (n < 32 || more) {
        snprintf(err, WSG_ERRLEN,
                 "affinity_key_file %.120s: %zu bytes, want 32 to %zu (head -c 32 /dev/urandom)",
                 cfg->affinity_key_file, more ? sizeof(buf) + 1 : n, sizeof(buf));
        rc = -1;
    } else if (wsg_hmac_sha256(buf, n, (const uint8_t *)"wsgate affinity key", 19, key) != 0) {
        snprintf(err, WSG_ERRLEN, "affinity_key_file: HMAC failed");
        rc = -1;
    }
    memset(buf, 0, sizeof(buf));
    return rc;
}

/* Takes ownership of cfg: the upstream tables of the default route and of every route that has
 * its own group. */
static struct wsg_runtime *runtime_new(struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    struct wsg_runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        snprintf(err, WSG_ERRLEN, "out of memory");
        free(cfg);
        return NULL;
    }
    rt->cfg = cfg;
    if (affinity_key(cfg, rt->affinity_key, err) != 0)
        goto fail;
    if ((rt->ups[0] = build_upstreams(cfg, cfg->upstream, cfg->nupstream, err)) == NULL)
        goto fail;
    for (unsigned i = 0; i < cfg->nroutes; i++) {
        const struct wsg_cfg_route *r = &cfg->routes[i];
        if (r->nupstream == 0) {
            rt->ups[i + 1] = rt->ups[0];
        } else if ((rt->ups[i + 1] = build_upstreams(cfg, r->upstream, r->nupstream, err)) == NULL) {
            /* Name the block: FILE:LINE: route NAME: reason (truncated to fit). */
            char inner[WSG_ERRLEN];
            snprintf(inner, sizeof(inner), "%s", err);
            int n = snprintf(err, WSG_ERRLEN, "%.100s:%d: route %.40s: ", r->file, r->line, r->name);
            snprintf(err + n, WSG_ERRLEN - (size_t)n, "%.*s", (int)(WSG_ERRLEN - (size_t)n - 1), inner);
            goto fail;
        }
    }
    return rt;
fail:
    runtime_free(rt);
    return NULL;
}

static void tls_settings(const struct wsg_cfg *cfg, struct wsg_tls_pair *pairs, struct wsg_tls_settings *s)
{
    for (unsigned i = 0; i < cfg->ncert; i++) {
        pairs[i].cert_path = cfg->cert[i];
        pairs[i].key_path = cfg->key[i];
    }
    memset(s, 0, sizeof(*s));
    s->pairs = pairs;
    s->npairs = cfg->ncert;
    s->gen_names = gen_names;
    s->ngen_names = sizeof(gen_names) / sizeof(gen_names[0]);
    s->ticket_lifetime = cfg->ticket_lifetime;
    s->ticket_key_file = cfg->ticket_key_file;
    s->cipher_order = cfg->tls_cipher_order;
}

static void usage(FILE *out)
{
    wsg_cfg_help(out);
}

/* Reloads the file and the certificates. Established connections keep what they started with;
 * new exchanges take the new configuration. Returns 0, or -1 with err (nothing changed). */
static int do_reload(char err[WSG_ERRLEN])
{
    if (g.nold >= MAX_OLD) {
        snprintf(err, WSG_ERRLEN, "too many reloads without a restart (%d)", MAX_OLD);
        return -1;
    }
    struct wsg_cfg *cfg = malloc(sizeof(*cfg));
    if (cfg == NULL) {
        snprintf(err, WSG_ERRLEN, "out of memory");
        return -1;
    }
    if (load_config(cfg, err) != 0) {
        free(cfg);
        return -1;
    }
    struct wsg_tls_pair pairs[WSG_CFG_MAX_CERTS];
    struct wsg_tls_settings ts;
    tls_settings(cfg, pairs, &ts);
    struct wsg_runtime *rt = runtime_new(cfg, err);
    if (rt == NULL)
        return -1;
    if (wsg_tls_store_reload(g.sh.tls, &ts, err) != 0) {
        runtime_free(rt);
        return -1;
    }
    const struct wsg_cfg *old_cfg = g.sh.rt->cfg;
    if (strcmp(old_cfg->listen[0], cfg->listen[0]) != 0 || old_cfg->nlisten != cfg->nlisten ||
        memcmp(old_cfg->listen_proxy, cfg->listen_proxy, sizeof(cfg->listen_proxy)) != 0 ||
        old_cfg->nlisten_http != cfg->nlisten_http ||
        memcmp(old_cfg->listen_http, cfg->listen_http, sizeof(cfg->listen_http)) != 0 ||
        old_cfg->workers != cfg->workers || strcmp(old_cfg->admin, cfg->admin) != 0 ||
        old_cfg->ip_table_size != cfg->ip_table_size)
        wsg_log(WSG_LOG_WARN,
                "reload: listen, listen_http, workers, admin and ip_table_size changes take effect after a "
                "restart");
    int lvl = wsg_log_level_parse(cfg->log_level);
    if (lvl >= 0)
        wsg_log_max = lvl;
    g.old[g.nold++] = g.sh.rt;
    __atomic_store_n(&g.sh.rt, rt, __ATOMIC_RELEASE);
    g.reloads_ok++;
    wsg_log(WSG_LOG_NOTICE, "reloaded: certificate generation %u, %u upstreams, %u routes, %u ticket keys",
            wsg_tls_store_generation(g.sh.tls), cfg->nupstream, cfg->nroutes,
            wsg_tls_store_ticket_keys(g.sh.tls));
    return 0;
}

static void on_reload(EV_P_ ev_signal *w, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(w);
    WSG_UNUSED(revents);
    char err[WSG_ERRLEN];
    if (do_reload(err) != 0) {
        g.reloads_failed++;
        wsg_log(WSG_LOG_ERROR, "reload refused, the running configuration stays: %s", err);
    }
}

/* ---- watch_certs: reload when a certificate or key file changes ---- */

static struct {
    ev_stat st[2 * WSG_CFG_MAX_CERTS + 1];
    unsigned n;
    ev_timer debounce;
} W;

static void on_watch_debounce(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(t);
    WSG_UNUSED(revents);
    char err[WSG_ERRLEN];
    wsg_log(WSG_LOG_NOTICE, "a certificate or key file changed: reloading");
    if (do_reload(err) != 0) {
        g.reloads_failed++;
        wsg_log(WSG_LOG_ERROR, "reload refused, the running configuration stays: %s", err);
    }
}

static void on_watch(EV_P_ ev_stat *w, int revents)
{
    WSG_UNUSED(w);
    WSG_UNUSED(revents);
    /* A rotation writes two files, often in several steps: reload once, after it settled. */
    ev_timer_stop(loop, &W.debounce);
    ev_timer_set(&W.debounce, 1.0, 0.);
    ev_timer_start(loop, &W.debounce);
}

static void watch_start(struct ev_loop *loop, const struct wsg_cfg *cfg)
{
    ev_init(&W.debounce, on_watch_debounce);
    for (unsigned i = 0; i < cfg->ncert && W.n + 2 <= sizeof(W.st) / sizeof(W.st[0]); i++) {
        ev_stat_init(&W.st[W.n], on_watch, cfg->cert[i], 0.);
        ev_stat_start(loop, &W.st[W.n++]);
        ev_stat_init(&W.st[W.n], on_watch, cfg->key[i], 0.);
        ev_stat_start(loop, &W.st[W.n++]);
    }
    if (cfg->ticket_key_file[0] != '\0') {
        ev_stat_init(&W.st[W.n], on_watch, cfg->ticket_key_file, 0.);
        ev_stat_start(loop, &W.st[W.n++]);
    }
}

/* SIGUSR1 (logrotate): reopen the access log file. */
static void on_reopen(EV_P_ ev_signal *w, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(w);
    WSG_UNUSED(revents);
    if (wsg_log_reopen_access(g.sh.rt->cfg->access_log) != 0)
        wsg_log(WSG_LOG_ERROR, "access_log %s: cannot reopen: %s", g.sh.rt->cfg->access_log, strerror(errno));
    else
        wsg_log(WSG_LOG_NOTICE, "access log reopened");
}

static void on_drain_watch(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(t);
    WSG_UNUSED(revents);
    for (unsigned i = 0; i < g.nworkers; i++)
        if (!__atomic_load_n(&g.workers[i].done, __ATOMIC_ACQUIRE))
            return;
    ev_break(loop, EVBREAK_ALL);
}

static void start_drain(void)
{
    if (g.draining)
        return;
    g.draining = 1;
    wsg_log(WSG_LOG_NOTICE, "draining (at most %.1fs)", g.sh.rt->cfg->drain_timeout);
    for (unsigned i = 0; i < g.nworkers; i++)
        wsg_worker_drain(&g.workers[i]);
    ev_timer_init(&g.drain_watch, on_drain_watch, 0.02, 0.02);
    ev_timer_start(g.loop, &g.drain_watch);
}

static void on_term(EV_P_ ev_signal *w, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(revents);
    if (g.draining) {
        wsg_log(WSG_LOG_NOTICE, "second signal %d: exiting now", w->signum);
        _exit(0);
    }
    wsg_log(WSG_LOG_NOTICE, "signal %d", w->signum);
    start_drain();
}

/* ---- admin endpoint callbacks (main thread) ---- */

static int admin_reload(char err[WSG_ERRLEN])
{
    if (do_reload(err) == 0)
        return 0;
    g.reloads_failed++;
    wsg_log(WSG_LOG_ERROR, "reload refused, the running configuration stays: %s", err);
    return -1;
}

static int admin_draining(void)
{
    return g.draining;
}

static void print_expiry(void *arg, const char *name, double seconds_left)
{
    char esc[300];
    size_t n = wsg_json_str(esc, 0, sizeof(esc), name, strlen(name)); /* JSON escaping suits labels too */
    esc[n] = '\0';
    fprintf(arg, "wsgate_certificate_expiry_seconds{name=\"%s\"} %.0f\n", esc, seconds_left);
}

static void admin_metrics(FILE *f)
{
    const struct wsg_metrics *each[MAX_WORKERS];
    struct wsg_metrics sum;
    for (unsigned i = 0; i < g.nworkers; i++)
        each[i] = &g.workers[i].m;
    wsg_metrics_sum(&sum, each, g.nworkers);
    const struct wsg_runtime *rt = wsg_shared_rt(&g.sh);
    const char *names[WSG_M_ROUTES] = {"default"};
    for (unsigned r = 0; r < rt->cfg->nroutes && r + 1 < WSG_M_ROUTES; r++)
        names[r + 1] = rt->cfg->routes[r].name;
    wsg_metrics_print(f, &sum, names, rt->cfg->nroutes + 1);
    wsg_fleet_metrics(g.fleet, f);
    fprintf(f, "# HELP wsgate_reloads_total Configuration reloads by result.\n# TYPE wsgate_reloads_total "
               "counter\n");
    fprintf(f, "wsgate_reloads_total{result=\"ok\"} %lu\nwsgate_reloads_total{result=\"failed\"} %lu\n",
            g.reloads_ok, g.reloads_failed);
    fprintf(
        f,
        "# HELP wsgate_tls_generation Current certificate generation.\n# TYPE wsgate_tls_generation gauge\n"
        "wsgate_tls_generation %u\n",
        wsg_tls_store_generation(g.sh.tls));
    fprintf(f,
            "# HELP wsgate_tls_generations_live Certificate generations still used by connections.\n"
            "# TYPE wsgate_tls_generations_live gauge\nwsgate_tls_generations_live %u\n",
            wsg_tls_store_live_generations(g.sh.tls));
    fprintf(f, "# HELP wsgate_draining 1 while draining.\n# TYPE wsgate_draining gauge\nwsgate_draining %d\n",
            g.draining);
    wsg_lifecycle_metrics(f, rt, ev_now(g.loop));
    static const char *const pick_family[2] = {"wsgate_upstream_picks_total",
                                               "wsgate_upstream_failures_total"};
    static const char *const pick_help[2] = {"Connections opened to the upstream (picked and connected).",
                                             "Refused or timed-out connects to the upstream."};
    for (int k = 0; k < 2; k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", pick_family[k], pick_help[k], pick_family[k]);
        for (unsigned r = 0; r <= rt->cfg->nroutes; r++) {
            if (r > 0 && rt->ups[r] == rt->ups[0])
                continue;
            const struct wsg_upstreams *u = rt->ups[r];
            for (size_t i = 0; i < u->npeers; i++)
                fprintf(f, "%s{route=\"%s\",upstream=\"%s\"} %llu\n", pick_family[k],
                        r == 0 ? "default" : rt->cfg->routes[r - 1].name, u->peers[i].name,
                        (unsigned long long)__atomic_load_n(
                            k == 0 ? &u->peers[i].picks : &u->peers[i].failures, __ATOMIC_RELAXED));
        }
    }
    fprintf(f, "# HELP wsgate_certificate_expiry_seconds Seconds until each served certificate expires, by "
               "name.\n# TYPE wsgate_certificate_expiry_seconds gauge\n");
    wsg_tls_store_expiry(g.sh.tls, print_expiry, f);
    wsg_acme_metrics(f, g.sh.tls);
}

static void admin_certs(FILE *f)
{
    wsg_tls_store_describe_json(g.sh.tls, f);
}

static int admin_upstreams(FILE *f, int post, const char *target, size_t len)
{
    struct wsg_runtime *rts[1 + MAX_OLD];
    size_t n = 0;
    rts[n++] = (struct wsg_runtime *)wsg_shared_rt(&g.sh);
    for (unsigned i = 0; i < g.nold; i++)
        rts[n++] = g.old[i];
    if (!post) {
        wsg_lifecycle_list(f, rts, n, ev_now(g.loop));
        return 200;
    }
    return wsg_lifecycle_post(f, target, len, rts, n, g.workers, g.nworkers);
}

static int admin_acme(FILE *f, const char *method, size_t mlen, const char *target, size_t tlen,
                      const char *body, size_t blen)
{
    return wsg_acme_admin(f, method, mlen, target, tlen, body, blen, g.sh.tls);
}

static const struct wsg_admin_ops admin_ops = {
    .reload = admin_reload,
    .drain = start_drain,
    .draining = admin_draining,
    .metrics = admin_metrics,
    .certs = admin_certs,
    .upstreams = admin_upstreams,
    .acme = admin_acme,
};

int main(int argc, char **argv)
{
    int test_only = 0;
    /* Blocks of 16 KiB and more (mbedTLS's two 16.7 KB record buffers, given back after a second
     * of idleness, see gateway/conn-tls.c) come from mmap, so that freeing them returns the
     * memory to the system instead of leaving holes in the heap that RSS keeps counting.
     * Measured with make bench's idle run (5,000 TLS WebSockets): 19.9-20.5 -> 7.2 KiB per idle
     * connection; handshakes and echo rates per CPU-second unchanged within the run's noise. */
    mallopt(M_MMAP_THRESHOLD, 16 * 1024);
    g.argc = argc;
    g.argv = argv;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--help-markdown") == 0) {
            wsg_cfg_markdown(stdout); /* the README's settings reference */
            return 0;
        } else if (strcmp(argv[i], "-t") == 0) {
            test_only = 1;
        } else if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "wsgate: -c needs a file\n");
                return 1;
            }
            g.conf_path = argv[++i];
        } else if (strncmp(argv[i], "--", 2) == 0 && strchr(argv[i], '=') == NULL) {
            i++; /* --NAME VALUE: the value is not an option of ours */
        }
    }

    char err[WSG_ERRLEN];
    struct wsg_cfg *cfg = malloc(sizeof(*cfg));
    if (cfg == NULL || load_config(cfg, err) != 0) {
        fprintf(stderr, "wsgate: %s\n", cfg ? err : "out of memory");
        return 1;
    }
    int lvl = wsg_log_level_parse(cfg->log_level);
    wsg_log_max = lvl < 0 ? WSG_LOG_NOTICE : lvl;

    struct wsg_tls_pair pairs[WSG_CFG_MAX_CERTS];
    struct wsg_tls_settings ts;
    tls_settings(cfg, pairs, &ts);
    if (wsg_tls_store_new(&g.sh.tls, &ts, err) != 0) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 1;
    }
    if ((g.sh.rt = runtime_new(cfg, err)) == NULL) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 1;
    }
    if (test_only) {
        fprintf(stderr, "wsgate: configuration %s is ok\n", g.conf_path ? g.conf_path : "(command line)");
        wsg_tls_store_free(g.sh.tls);
        runtime_free(g.sh.rt);
        return 0;
    }
    if ((g.sh.ipt = wsg_iptable_new(cfg->ip_table_size, cfg->ip_table_shards)) == NULL) {
        fprintf(stderr, "wsgate: out of memory for the per-IP table\n");
        return 1;
    }
    if (cfg->redis[0] != '\0' && (g.fleet = wsg_fleet_start(g.sh.ipt, cfg, err)) == NULL) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 1;
    }
    if (wsg_log_open_access(cfg->access_log) != 0) {
        fprintf(stderr, "wsgate: access_log %s: %s\n", cfg->access_log, strerror(errno));
        return 1;
    }
    /* No core dumps: a core of this process would hold the private keys and session secrets. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (cfg->ncert == 0)
        wsg_log(WSG_LOG_WARN,
                "no cert configured: serving a generated self-signed certificate for localhost, "
                "127.0.0.1 and ::1");

    signal(SIGPIPE, SIG_IGN);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    g.nworkers = cfg->workers ? cfg->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    if (g.nworkers > MAX_WORKERS)
        g.nworkers = MAX_WORKERS;
    g.workers = calloc(g.nworkers, sizeof(*g.workers));
    if (g.workers == NULL) {
        fprintf(stderr, "wsgate: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < g.nworkers; i++) {
        if (wsg_worker_init(&g.workers[i], (int)i, &g.sh) != 0 ||
            wsg_worker_listen(&g.workers[i], cfg, err) != 0) {
            fprintf(stderr, "wsgate: %s\n", err);
            return 1;
        }
    }

    /* The admin listener is bound before the privilege drop, like the public ones. */
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    g.loop = loop;
    if (cfg->admin[0] && strcmp(cfg->admin, "off") != 0 &&
        wsg_admin_start(loop, cfg->admin, &admin_ops, err) != 0) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 1;
    }
    /* listen_http (ACME HTTP-01 and the https redirect) on this loop, beside the admin endpoint
     * that fills its table; bound before the privilege drop too (port 80). */
    if (wsg_acme_http_start(loop, cfg, err) != 0) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 1;
    }
    if (drop_privileges(cfg, err) != 0) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 1;
    }

    /* Workers never see the signals we handle: block them before the threads start. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    for (unsigned i = 0; i < g.nworkers; i++) {
        if (pthread_create(&g.workers[i].thread, NULL, wsg_worker_main, &g.workers[i]) != 0) {
            fprintf(stderr, "wsgate: cannot start worker %u\n", i);
            return 1;
        }
    }
    /* the active health checker: one thread for the process (idle while health_check is off) */
    if (wsg_health_start(&g.sh, err) != 0) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (strcmp(cfg->watch_certs, "on") == 0)
        watch_start(loop, cfg);
    ev_signal sig_hup, sig_term, sig_int, sig_usr1;
    ev_signal_init(&sig_usr1, on_reopen, SIGUSR1);
    ev_signal_start(loop, &sig_usr1);
    ev_signal_init(&sig_hup, on_reload, SIGHUP);
    ev_signal_init(&sig_term, on_term, SIGTERM);
    ev_signal_init(&sig_int, on_term, SIGINT);
    ev_signal_start(loop, &sig_hup);
    ev_signal_start(loop, &sig_term);
    ev_signal_start(loop, &sig_int);
    wsg_log(WSG_LOG_NOTICE, "wsgate listening on %s%s with %u workers, %u upstreams", cfg->listen[0],
            cfg->nlisten > 1 ? " (and more)" : "", g.nworkers, cfg->nupstream);
    ev_run(loop, 0);

    for (unsigned i = 0; i < g.nworkers; i++)
        pthread_join(g.workers[i].thread, NULL);
    wsg_health_stop();
    wsg_log(WSG_LOG_NOTICE, "drained, exiting");
    free(g.workers);
    wsg_admin_stop(loop);
    wsg_acme_http_stop(loop);
    wsg_tls_store_free(g.sh.tls);
    runtime_free(g.sh.rt);
    for (unsigned i = 0; i < g.nold; i++)
        runtime_free(g.old[i]);
    wsg_fleet_stop(g.fleet);
    wsg_iptable_free(g.sh.ipt);
    ev_loop_destroy(loop);
    return 0;
}
