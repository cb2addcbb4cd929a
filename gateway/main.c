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
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/conn.h"
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
    const void *old[MAX_OLD * 2]; /* replaced configs and upstream tables, freed at exit */
    unsigned nold;
} g;

static const char *const gen_names[] = {"localhost", "127.0.0.1", "::1"};

static int load_config(struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    wsg_cfg_defaults(cfg);
    if (g.conf_path && wsg_cfg_load_file(cfg, g.conf_path, err) != 0)
        return -1;
    if (wsg_cfg_load_args(cfg, g.argc, g.argv, err) != 0)
        return -1;
    return wsg_cfg_finish(cfg, err);
}

static struct wsg_upstreams *build_upstreams(const struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    struct wsg_upstreams *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        snprintf(err, WSG_ERRLEN, "out of memory");
        return NULL;
    }
    u->hash_prefix = cfg->hash_prefix;
    u->max_fails = cfg->max_fails;
    u->fail_timeout = cfg->fail_timeout;
    for (unsigned i = 0; i < cfg->nupstream; i++) {
        if (wsg_upstream_add(u, cfg->upstream[i].addr, cfg->upstream[i].weight, err) != 0) {
            wsg_upstreams_free(u);
            free(u);
            return NULL;
        }
    }
    return u;
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
}

static void usage(FILE *out)
{
    wsg_cfg_help(out);
}

static void on_reload(EV_P_ ev_signal *w, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(w);
    WSG_UNUSED(revents);
    char err[WSG_ERRLEN];
    struct wsg_cfg *cfg = malloc(sizeof(*cfg));
    if (cfg == NULL)
        return;
    if (load_config(cfg, err) != 0) {
        wsg_log(WSG_LOG_ERROR, "reload refused, the running configuration stays: %s", err);
        free(cfg);
        return;
    }
    struct wsg_tls_pair pairs[WSG_CFG_MAX_CERTS];
    struct wsg_tls_settings ts;
    tls_settings(cfg, pairs, &ts);
    struct wsg_upstreams *ups = build_upstreams(cfg, err);
    if (ups == NULL || g.nold + 2 > MAX_OLD * 2 || wsg_tls_store_reload(g.sh.tls, &ts, err) != 0) {
        wsg_log(WSG_LOG_ERROR, "reload refused, the running configuration stays: %s",
                g.nold + 2 > MAX_OLD * 2 ? "too many reloads without restart" : err);
        if (ups) {
            wsg_upstreams_free(ups);
            free(ups);
        }
        free(cfg);
        return;
    }
    const struct wsg_cfg *old_cfg = g.sh.cfg;
    if (strcmp(old_cfg->listen[0], cfg->listen[0]) != 0 || old_cfg->nlisten != cfg->nlisten ||
        old_cfg->workers != cfg->workers)
        wsg_log(WSG_LOG_WARN, "reload: listen and workers changes take effect after a restart");
    wsg_log_max = wsg_log_level_parse(cfg->log_level);
    /* Connections read these pointers at the start of each exchange; the old ones stay valid. */
    g.old[g.nold++] = old_cfg;
    g.old[g.nold++] = g.sh.ups;
    __atomic_store_n(&g.sh.cfg, cfg, __ATOMIC_RELEASE);
    __atomic_store_n(&g.sh.ups, ups, __ATOMIC_RELEASE);
    wsg_log(WSG_LOG_NOTICE, "reloaded: certificate generation %u, %u upstreams",
            wsg_tls_store_generation(g.sh.tls), cfg->nupstream);
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

static void on_term(EV_P_ ev_signal *w, int revents)
{
    WSG_UNUSED(revents);
    if (g.draining) {
        wsg_log(WSG_LOG_NOTICE, "second signal %d: exiting now", w->signum);
        _exit(0);
    }
    g.draining = 1;
    wsg_log(WSG_LOG_NOTICE, "signal %d: draining (at most %.1fs)", w->signum, g.sh.cfg->drain_timeout);
    for (unsigned i = 0; i < g.nworkers; i++)
        wsg_worker_drain(&g.workers[i]);
    ev_timer_init(&g.drain_watch, on_drain_watch, 0.02, 0.02);
    ev_timer_start(loop, &g.drain_watch);
}

int main(int argc, char **argv)
{
    int test_only = 0;
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
    if ((g.sh.ups = build_upstreams(cfg, err)) == NULL) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 1;
    }
    g.sh.cfg = cfg;
    if (test_only) {
        fprintf(stderr, "wsgate: configuration %s is ok\n", g.conf_path ? g.conf_path : "(command line)");
        wsg_tls_store_free(g.sh.tls);
        wsg_upstreams_free(g.sh.ups);
        free(g.sh.ups);
        free(cfg);
        return 0;
    }
    if (wsg_log_open_access(cfg->access_log) != 0) {
        fprintf(stderr, "wsgate: access_log %s: %s\n", cfg->access_log, strerror(errno));
        return 1;
    }
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

    /* Workers never see the signals we handle: block them before the threads start. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    for (unsigned i = 0; i < g.nworkers; i++) {
        if (pthread_create(&g.workers[i].thread, NULL, wsg_worker_main, &g.workers[i]) != 0) {
            fprintf(stderr, "wsgate: cannot start worker %u\n", i);
            return 1;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    ev_signal sig_hup, sig_term, sig_int;
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
    wsg_log(WSG_LOG_NOTICE, "drained, exiting");
    free(g.workers);
    wsg_tls_store_free(g.sh.tls);
    wsg_upstreams_free(g.sh.ups);
    free(g.sh.ups);
    free((void *)g.sh.cfg);
    for (unsigned i = 0; i < g.nold; i += 2) {
        free((void *)g.old[i]);
        wsg_upstreams_free((struct wsg_upstreams *)g.old[i + 1]);
        free((void *)g.old[i + 1]);
    }
    ev_loop_destroy(loop);
    return 0;
}
