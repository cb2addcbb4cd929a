/*
 * admin.h - the admin listener: plain HTTP/1.1 on a loopback address or a unix socket, never on
 * the public listener. Runs on the main thread's loop.
 *
 *   GET  /healthz   200 "ok" while the process runs
 *   GET  /readyz    200 "ready", or 503 "draining"
 *   GET  /metrics   Prometheus text format (per-worker counters summed on scrape)
 *   GET  /, /status the status page: one self-contained HTML page refreshing itself (status.h)
 *   GET  /status.json  the /metrics exposition as JSON (what the status page shows)
 *   GET  /certs     JSON: served certificates and generations
 *   POST /reload    reload config and certificates: 200 {"ok":true,...} or 409 {"ok":false,"error":...}
 *   POST /drain     start draining: 202
 *   GET  /upstreams, POST /upstreams/HOST:PORT/{drain,ready,weight}: gateway/lifecycle.h
 *   GET /acme, PUT|DELETE /acme/{http-01,tls-alpn-01}/...: ACME challenges, gateway/acme.h
 *
 * Request bodies are read by Content-Length only, at most 16 KiB (413 above); PUT needs one (400).
 */
#ifndef WSG_ADMIN_H
#define WSG_ADMIN_H

#include <ev.h>
#include <stdio.h>

#include "policies/base/err.h"

struct wsg_admin_ops {
    /* Returns 0 or -1 with err (the reason the reload was refused). */
    int (*reload)(char err[WSG_ERRLEN]);
    void (*drain)(void);
    int (*draining)(void);
    void (*metrics)(FILE *out);
    void (*certs)(FILE *out);
    /* /upstreams...: prints the answer's JSON body and returns its HTTP status (lifecycle.h). */
    int (*upstreams)(FILE *out, int post, const char *target, size_t len);
    /* /acme...: prints the text/plain answer and returns its HTTP status (acme.h); NULL: 404. */
    int (*acme)(FILE *out, const char *method, size_t mlen, const char *target, size_t tlen, const char *body,
                size_t blen);
};

/* addr: "127.0.0.1:9090", "[::1]:9090" or "unix:/path/to.sock". Returns 0 or -1 with err. */
int wsg_admin_start(struct ev_loop *loop, const char *addr, const struct wsg_admin_ops *ops,
                    char err[WSG_ERRLEN]);
void wsg_admin_stop(struct ev_loop *loop);

#endif
