/*
 * worker.c - worker threads: one libev loop each, SO_REUSEPORT listeners, accept with the
 * EMFILE spare-descriptor trick, and draining on request from the main thread.
 */
#include "gateway/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "policies/base/buf.h"
#include "gateway/log.h"
#include "frames/ws.h"
#include "tls/tls.h"

int wsg_listen_addr(const char *what, const char *spec, struct sockaddr_storage *ss, socklen_t *len,
                    char err[WSG_ERRLEN])
{
    char host[128] = "";
    const char *port;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof(host))
            goto bad;
        memcpy(host, spec + 1, (size_t)(end - spec - 1));
        port = end + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
            goto bad;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                    *res;
    int r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (r != 0) {
        snprintf(err, WSG_ERRLEN, "%s %s: %s", what, spec, gai_strerror(r));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
bad:
    snprintf(err, WSG_ERRLEN, "%s %s: expected host:port", what, spec);
    return -1;
}

int wsg_worker_listen(struct wsg_worker *w, const struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    w->nlisten = 0;
    for (unsigned i = 0; i < cfg->nlisten; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (wsg_listen_addr("listen", cfg->listen[i], &ss, &len, err) != 0)
            return -1;
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(err, WSG_ERRLEN, "listen %s: socket: %s", cfg->listen[i], strerror(errno));
            return -1;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* Each worker has its own listening socket; the kernel spreads connections (DESIGN §1). */
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
            snprintf(err, WSG_ERRLEN, "listen %s: %s", cfg->listen[i], strerror(errno));
            close(fd);
            return -1;
        }
        w->lproxy[w->nlisten] = cfg->listen_proxy[i];
        w->lfd[w->nlisten++] = fd;
    }
    return 0;
}

static void on_accept_retry(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    struct wsg_worker *w = container_of(t, struct wsg_worker, accept_retry);
    if (w->draining)
        return;
    for (unsigned i = 0; i < w->nlisten; i++)
        ev_io_start(loop, &w->accept_io[i]);
}

static void on_accept(EV_P_ ev_io *io, int revents)
{
    WSG_UNUSED(revents);
    struct wsg_worker *w = io->data;
    int proxy = w->lproxy[io - w->accept_io];
    for (int n = 0; n < 64; n++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            wsg_conn_new(w, fd, (struct sockaddr *)&ss, len, proxy);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE) {
            /* ev.pod: "The special problem of accept()ing when you can't". Free the spare
             * descriptor, accept and close the client, take the spare back; then pause. */
            static double last_log;
            if (ev_now(loop) - last_log > 5.0) {
                wsg_log(WSG_LOG_ERROR, "accept: %s (%u connections on worker %d)", strerror(errno), w->nconns,
                        w->id);
                last_log = ev_now(loop);
            }
            if (w->spare_fd >= 0) {
                close(w->spare_fd);
                int c = accept(io->fd, NULL, NULL);
                if (c >= 0)
                    close(c);
                w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            for (unsigned i = 0; i < w->nlisten; i++)
                ev_io_stop(loop, &w->accept_io[i]);
            ev_timer_set(&w->accept_retry, 0.1, 0.);
            ev_timer_start(loop, &w->accept_retry);
        }
        return; /* EAGAIN or an error for this one client */
    }
}

static void drain_step(struct wsg_worker *w)
{
    if (w->nconns == 0 || ev_now(w->loop) >= w->drain_deadline) {
        ev_break(w->loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&w->drain_timer, 0.05, 0.);
    ev_timer_start(w->loop, &w->drain_timer);
}

static void on_drain_timer(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(revents);
    drain_step(container_of(t, struct wsg_worker, drain_timer));
}

static void on_wake(EV_P_ ev_async *a, int revents)
{
    WSG_UNUSED(revents);
    struct wsg_worker *w = container_of(a, struct wsg_worker, wake);
    if (!w->draining)
        return;
    for (unsigned i = 0; i < w->nlisten; i++) {
        ev_io_stop(loop, &w->accept_io[i]);
        close(w->lfd[i]);
        w->lfd[i] = -1;
    }
    ev_timer_stop(loop, &w->accept_retry);
    w->drain_deadline = ev_now(loop) + wsg_shared_rt(w->sh)->cfg->drain_timeout;
    /* Drain every connection; conn_drain may free c, so take next first. */
    for (struct wsg_conn *c = w->conns, *next; c != NULL; c = next) {
        next = wsg_conn_next(c);
        wsg_conn_drain(c);
    }
    drain_step(w);
}

static void on_ups_wake(EV_P_ ev_async *a, int revents)
{
    WSG_UNUSED(loop);
    WSG_UNUSED(revents);
    struct wsg_worker *w = container_of(a, struct wsg_worker, ups_wake);
    if (__atomic_load_n(&w->draining, __ATOMIC_ACQUIRE))
        return; /* the process drain has the connections now */
    /* conn_upstream_changed may free c, so take next first */
    for (struct wsg_conn *c = w->conns, *next; c != NULL; c = next) {
        next = wsg_conn_next(c);
        wsg_conn_upstream_changed(c);
    }
}

void wsg_worker_upstreams_changed(struct wsg_worker *w)
{
    ev_async_send(w->loop, &w->ups_wake);
}

void wsg_worker_drain(struct wsg_worker *w)
{
    __atomic_store_n(&w->draining, 1, __ATOMIC_RELEASE); /* on_ups_wake may read it at any time */
    ev_async_send(w->loop, &w->wake);
}

void *wsg_worker_main(void *arg)
{
    struct wsg_worker *w = arg;
    for (unsigned i = 0; i < w->nlisten; i++) {
        ev_io_init(&w->accept_io[i], on_accept, w->lfd[i], EV_READ);
        w->accept_io[i].data = w;
        ev_io_start(w->loop, &w->accept_io[i]);
    }
    ev_run(w->loop, 0);
    /* Whatever is left after the drain window is closed without ceremony. */
    while (w->conns != NULL)
        wsg_conn_abort(w->conns);
    wsg_buf_cache_drain();
    wsg_ws_cache_drain();
    for (unsigned i = 0; i < w->nlisten; i++)
        if (w->lfd[i] >= 0)
            close(w->lfd[i]);
    if (w->spare_fd >= 0)
        close(w->spare_fd);
    wsg_rng_free(w->rng);
    ev_loop_destroy(w->loop);
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

int wsg_worker_init(struct wsg_worker *w, int id, struct wsg_shared *sh)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->sh = sh;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    w->rng = wsg_rng_new();
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (w->loop == NULL || w->rng == NULL)
        return -1;
    ev_async_init(&w->wake, on_wake);
    ev_async_start(w->loop, &w->wake);
    ev_async_init(&w->ups_wake, on_ups_wake);
    ev_async_start(w->loop, &w->ups_wake);
    ev_init(&w->accept_retry, on_accept_retry);
    ev_init(&w->drain_timer, on_drain_timer);
    return 0;
}
