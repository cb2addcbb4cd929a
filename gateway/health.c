/*
 * health.c - the active health checker (see health.h). Everything here runs on the checker
 * thread except start/stop; what it decides is published in struct wsg_peer with atomic stores
 * (hc_down, hc_status, hc_latency_us, hc_checks, hc_failed) and read by workers, the admin
 * endpoint and /metrics. Each check is non-blocking with its own timeout, so a hung upstream
 * delays nothing but its own result.
 */
#include "gateway/health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/log.h"

#define ANSWER_MAX 512 /* the status line is all we read */

struct check {
    ev_io io;
    ev_timer timer;
    struct wsg_peer *p;
    double t0;
    unsigned rise, fall;
    char req[512];
    size_t req_len, req_off;
    char in[ANSWER_MAX];
    size_t in_len;
};

static struct {
    pthread_t thread;
    struct ev_loop *loop;
    ev_timer tick;
    ev_async stop;
    struct wsg_shared *sh;
    int running;
} H;

int wsg_health_status_line(const char *buf, size_t len)
{
    static const char proto[] = "HTTP/1.";
    size_t n = len < 7 ? len : 7;
    if (memcmp(buf, proto, n) != 0)
        return -1;
    if (len < 13)
        return 0;
    if (buf[7] < '0' || buf[7] > '9' || buf[8] != ' ')
        return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
        status = status * 10 + (buf[i] - '0');
    }
    if (status < 100 || (buf[12] != ' ' && buf[12] != '\r'))
        return -1;
    return status;
}

/* One result: counts, the rise/fall run, the state change and its log line. */
static void result(struct check *k, int status, const char *why)
{
    struct wsg_peer *p = k->p;
    int ok = status >= 200 && status < 400;
    double ms = (ev_time() - k->t0) * 1000.0;
    __atomic_store_n(&p->hc_latency_us, (uint64_t)(ms * 1000.0), __ATOMIC_RELAXED);
    __atomic_store_n(&p->hc_status, status, __ATOMIC_RELAXED);
    __atomic_add_fetch(&p->hc_checks, 1, __ATOMIC_RELAXED);
    int down = __atomic_load_n(&p->hc_down, __ATOMIC_RELAXED);
    if (ok) {
        p->hc_fail_run = 0;
        p->hc_ok_run++;
        if (down && p->hc_ok_run >= k->rise) {
            __atomic_store_n(&p->hc_down, 0, __ATOMIC_RELAXED);
            wsg_log(WSG_LOG_NOTICE, "upstream %s: up (active check: %u passed in a row, last %d in %.1f ms)",
                    p->name, p->hc_ok_run, status, ms);
        }
    } else {
        __atomic_add_fetch(&p->hc_failed, 1, __ATOMIC_RELAXED);
        p->hc_ok_run = 0;
        p->hc_fail_run++;
        if (!down && p->hc_fail_run >= k->fall) {
            __atomic_store_n(&p->hc_down, 1, __ATOMIC_RELAXED);
            wsg_log(WSG_LOG_WARN, "upstream %s: down (active check: %u failed in a row, last: %s)", p->name,
                    p->hc_fail_run, why);
        } else if (wsg_log_on(WSG_LOG_INFO)) {
            wsg_log(WSG_LOG_INFO, "upstream %s: active check failed: %s", p->name, why);
        }
    }
}

static void finish(struct check *k, int status, const char *why)
{
    ev_io_stop(H.loop, &k->io);
    ev_timer_stop(H.loop, &k->timer);
    close(k->io.fd);
    result(k, status, why);
    k->p->hc_busy = 0;
    free(k);
}

static void on_check_io(EV_P_ ev_io *io, int revents)
{
    WSG_UNUSED(revents);
    struct check *k = container_of(io, struct check, io);
    char why[96];
    if (k->req_off < k->req_len) {
        if (k->req_off == 0) { /* the connect finished */
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
                snprintf(why, sizeof(why), "connect: %s", strerror(soerr ? soerr : errno));
                finish(k, 0, why);
                return;
            }
        }
        ssize_t n = send(io->fd, k->req + k->req_off, k->req_len - k->req_off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            snprintf(why, sizeof(why), "send: %s", strerror(errno));
            finish(k, 0, why);
            return;
        }
        k->req_off += (size_t)n;
        if (k->req_off == k->req_len) {
            ev_io_stop(loop, io);
            ev_io_set(io, io->fd, EV_READ);
            ev_io_start(loop, io);
        }
        return;
    }
    ssize_t n = recv(io->fd, k->in + k->in_len, sizeof(k->in) - k->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        snprintf(why, sizeof(why), n == 0 ? "closed before a status line" : "recv: %s", strerror(errno));
        finish(k, 0, why);
        return;
    }
    k->in_len += (size_t)n;
    int status = wsg_health_status_line(k->in, k->in_len);
    if (status == 0 && k->in_len < sizeof(k->in))
        return;
    if (status <= 0) {
        finish(k, 0, "not an HTTP/1.x status line");
        return;
    }
    snprintf(why, sizeof(why), "status %d", status);
    finish(k, status, why);
}

static void on_check_timeout(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(revents);
    struct check *k = container_of(t, struct check, timer);
    finish(k, -1, k->req_off < k->req_len ? "timed out connecting" : "timed out waiting for the answer");
}

/* The check settings of one upstream group: a route's own values where its block set them. */
struct hc_set {
    const char *path;
    double interval, timeout;
    unsigned rise, fall;
};

static struct hc_set settings_of(const struct wsg_cfg *cfg, unsigned r)
{
    struct hc_set s = {cfg->health_check, cfg->health_interval, cfg->health_timeout, cfg->health_rise,
                       cfg->health_fall};
    if (r > 0) {
        const struct wsg_policy *p = &cfg->routes[r - 1].policy;
        if (p->health_check[0] != '\0')
            s.path = p->health_check;
        if (p->health_interval > 0)
            s.interval = p->health_interval;
        if (p->health_timeout > 0)
            s.timeout = p->health_timeout;
        if (p->health_rise > 0)
            s.rise = p->health_rise;
        if (p->health_fall > 0)
            s.fall = p->health_fall;
    }
    return s;
}

const char *wsg_health_path(const struct wsg_cfg *cfg, unsigned r)
{
    return settings_of(cfg, r).path;
}

static void start_check(const struct hc_set *cfg, struct wsg_peer *p)
{
    struct check *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return;
    k->p = p;
    k->t0 = ev_time();
    k->rise = cfg->rise;
    k->fall = cfg->fall;
    int n = snprintf(k->req, sizeof(k->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wsgate-health\r\nConnection: close\r\n\r\n",
                     cfg->path, p->name);
    k->req_len = n > 0 && (size_t)n < sizeof(k->req) ? (size_t)n : 0;
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    p->hc_busy = 1;
    if (fd < 0 || k->req_len == 0 ||
        (connect(fd, (const struct sockaddr *)&p->addr, p->addrlen) != 0 && errno != EINPROGRESS)) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        result(k, 0, why);
        p->hc_busy = 0;
        free(k);
        return;
    }
    ev_io_init(&k->io, on_check_io, fd, EV_WRITE);
    ev_io_start(H.loop, &k->io);
    ev_timer_init(&k->timer, on_check_timeout, cfg->timeout, 0.);
    ev_timer_start(H.loop, &k->timer);
}

/* Starts the checks that are due, over every group of the runtime in force. */
static void on_tick(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    const struct wsg_runtime *rt = wsg_shared_rt(H.sh);
    const struct wsg_cfg *cfg = rt->cfg;
    double now = ev_now(loop), every = 1.0;
    for (unsigned r = 0; r <= cfg->nroutes; r++) {
        if (r > 0 && rt->ups[r] == rt->ups[0])
            continue; /* a route without its own group: the global group, checked once */
        struct hc_set set = settings_of(cfg, r);
        if (strcmp(set.path, "off") == 0)
            continue;
        /* a quarter of the shortest interval: checks start at most that late */
        if (set.interval / 4 < every)
            every = set.interval / 4;
        struct wsg_upstreams *u = rt->ups[r];
        for (size_t i = 0; i < u->npeers; i++) {
            struct wsg_peer *p = &u->peers[i];
            if (p->hc_busy || now < p->hc_next)
                continue;
            p->hc_next = now + set.interval;
            start_check(&set, p);
        }
    }
    t->repeat = every < 0.025 ? 0.025 : every > 0.25 ? 0.25 : every;
    ev_timer_again(loop, t);
}

static void on_stop(EV_P_ ev_async *a, int revents)
{
    WSG_UNUSED(a);
    WSG_UNUSED(revents);
    ev_break(loop, EVBREAK_ALL);
}

static void *checker_main(void *arg)
{
    WSG_UNUSED(arg);
    ev_run(H.loop, 0);
    return NULL;
}

int wsg_health_start(struct wsg_shared *sh, char err[WSG_ERRLEN])
{
    H.sh = sh;
    H.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (H.loop == NULL) {
        snprintf(err, WSG_ERRLEN, "health checks: cannot create an event loop");
        return -1;
    }
    ev_init(&H.tick, on_tick);
    H.tick.repeat = 0.01;
    ev_timer_again(H.loop, &H.tick);
    ev_async_init(&H.stop, on_stop);
    ev_async_start(H.loop, &H.stop);
    if (pthread_create(&H.thread, NULL, checker_main, NULL) != 0) {
        snprintf(err, WSG_ERRLEN, "health checks: cannot start the thread");
        ev_loop_destroy(H.loop);
        H.loop = NULL;
        return -1;
    }
    H.running = 1;
    return 0;
}

void wsg_health_stop(void)
{
    if (!H.running)
        return;
    ev_async_send(H.loop, &H.stop);
    pthread_join(H.thread, NULL);
    H.running = 0;
    /* in-flight checks: their sockets close with the process; free what the loop still holds */
    ev_loop_destroy(H.loop);
    H.loop = NULL;
}
