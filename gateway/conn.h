/*
 * conn.h - workers and connections.
 *
 * A worker is one thread with one libev loop and its own SO_REUSEPORT listening sockets; it owns
 * every connection it accepted. A connection is a TLS client hop and a plaintext upstream hop:
 *
 *   cli.in -> TLS -> cli_plain -> HTTP/1.1 or WS(c2u) -> up.out -> upstream socket
 *   up.in -> HTTP/1.1 or WS(u2c) -> cli_ptx -> TLS -> cli.out -> client socket
 *
 * Every libev callback ends in conn_proceed(); a connection is freed only there.
 */
#ifndef WSG_CONN_H
#define WSG_CONN_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "gateway/config.h"
#include "gateway/metrics.h"
#include "gateway/upstream.h"
#include "policies/policy.h"

struct wsg_tls_store;
struct wsg_rng;
struct wsg_conn;

/* The configuration in force and what was built from it: swapped whole on reload (an atomic
 * pointer); replaced ones stay valid until exit, so a connection may keep using the one it
 * started with. */
struct wsg_runtime {
    const struct wsg_cfg *cfg;
    /* [0]: the global upstreams; [i + 1]: route i's own group, or the global table again */
    struct wsg_upstreams *ups[1 + WSG_CFG_MAX_ROUTES];
    uint8_t affinity_key[32]; /* HMAC key of affinity cookies (gateway/affinity.h) */
};

/* What all workers share. */
struct wsg_shared {
    struct wsg_runtime *rt;    /* see above */
    struct wsg_tls_store *tls; /* generations swap on reload (internally locked) */
    struct wsg_iptable *ipt;   /* per-client-IP limits, all workers (internally locked) */
    unsigned long live_conns;  /* client connections of all workers (atomic) */
};

static inline const struct wsg_runtime *wsg_shared_rt(const struct wsg_shared *sh)
{
    return __atomic_load_n(&sh->rt, __ATOMIC_ACQUIRE);
}

struct wsg_worker {
    int id;
    pthread_t thread;
    struct ev_loop *loop;
    struct wsg_shared *sh;
    struct wsg_rng *rng;
    int lfd[WSG_CFG_MAX_LISTEN];
    ev_io accept_io[WSG_CFG_MAX_LISTEN];
    unsigned char lproxy[WSG_CFG_MAX_LISTEN]; /* listener i expects a PROXY header first */
    unsigned nlisten;
    int spare_fd;          /* /dev/null, closed to accept() and drop a client under EMFILE */
    ev_timer accept_retry; /* re-enables accepting after EMFILE */
    ev_async wake;         /* main thread -> worker: drain or stop */
    ev_timer drain_timer;
    ev_async ups_wake;     /* main thread -> worker: an upstream was drained or made ready */
    volatile int draining; /* set by main, read by the worker after wake */
    int done;              /* set by the worker when its thread is about to return */
    double drain_deadline;
    struct wsg_conn *conns; /* every live connection (doubly linked) */
    unsigned nconns;
    uint64_t next_id;
    struct wsg_metrics m; /* written by this worker only; summed by the admin endpoint */
};

/* "host:port", "[v6]:port", ":port" or "*:port" (the listen syntax) -> a passive sockaddr; what
 * ("listen", "listen_http") names the setting in err. @return 0 or -1 with err. */
int wsg_listen_addr(const char *what, const char *spec, struct sockaddr_storage *ss, socklen_t *len,
                    char err[WSG_ERRLEN]);
/* Creates the listening sockets for every listen address (SO_REUSEPORT) for one worker.
 * @return 0 or -1 with err naming the address. Called from the main thread at boot. */
int wsg_worker_listen(struct wsg_worker *w, const struct wsg_cfg *cfg, char err[WSG_ERRLEN]);
/* Thread body: runs the loop until drained or stopped. */
void *wsg_worker_main(void *arg);
/* From the main thread: begin draining (stop accepting, close WebSockets with 1001). */
void wsg_worker_drain(struct wsg_worker *w);

/* From the main thread: an upstream's drain state changed (gateway/lifecycle.c); the worker
 * schedules or cancels the 1001s of its own WebSockets on it. */
void wsg_worker_upstreams_changed(struct wsg_worker *w);

/* Prepares a worker (loop, rng, spare fd); listening sockets come from wsg_worker_listen. */
int wsg_worker_init(struct wsg_worker *w, int id, struct wsg_shared *sh);

/* Takes ownership of an accepted client socket. proxy: the listener is "listen ADDR
 * proxy_protocol", so a PROXY header must come first, and only from proxy_protocol_from. */
void wsg_conn_new(struct wsg_worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen, int proxy);
/* Drain one connection: idle ones close now, WebSockets get 1001, HTTP exchanges finish first. */
void wsg_conn_drain(struct wsg_conn *c);
/* Its upstream's drain state may have changed: a WebSocket on a draining upstream gets its 1001
 * within the drain's spread (cancelled again by ready), an idle keep-alive connection lets its
 * upstream connection go. May free c. */
void wsg_conn_upstream_changed(struct wsg_conn *c);
/* Frees a connection at once (end of the drain window). */
void wsg_conn_abort(struct wsg_conn *c);
struct wsg_conn *wsg_conn_next(const struct wsg_conn *c);

#endif
