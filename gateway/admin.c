/*
 * admin.c - the admin endpoint (see admin.h). Small on purpose: one request per connection,
 * parsed with the gateway's own strict HTTP/1.1 parser, answered and closed. A request body is
 * read only by Content-Length (at most ADMIN_BODY_MAX: 413 above; chunked: 400; PUT without a
 * Content-Length: 400), for the ACME challenges (gateway/acme.h).
 */
#include "gateway/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "gateway/acme.h"
#include "gateway/http1.h"
#include "gateway/log.h"
#include "gateway/status.h"

#define ADMIN_HEAD_MAX 8192
#define ADMIN_BODY_MAX 16384
#define ADMIN_TIMEOUT 5.0

struct admin_conn {
    ev_io io;
    ev_timer timer;
    char in[ADMIN_HEAD_MAX + ADMIN_BODY_MAX];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
};

static struct {
    int fd;
    ev_io io;
    const struct wsg_admin_ops *ops;
    char unix_path[108];
} A = {.fd = -1};

static void admin_close(struct ev_loop *loop, struct admin_conn *a)
{
    ev_io_stop(loop, &a->io);
    ev_timer_stop(loop, &a->timer);
    close(a->io.fd);
    free(a->out);
    free(a);
}

static void respond_h(struct admin_conn *a, int status, const char *ctype, const char *extra,
                      const char *body, size_t blen)
{
    size_t cap = blen + 256 + strlen(extra);
    a->out = malloc(cap);
    if (a->out == NULL)
        return;
    int n = snprintf(a->out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
                     "Cache-Control: no-store\r\n%s\r\n",
                     status, wsg_http_reason_phrase(status), ctype, blen, extra);
    memcpy(a->out + n, body, blen);
    a->out_len = (size_t)n + blen;
}

static void respond(struct admin_conn *a, int status, const char *ctype, const char *body, size_t blen)
{
    respond_h(a, status, ctype, "", body, blen);
}

static int target_is(const struct wsg_http_req *r, const char *path)
{
    size_t n = strlen(path);
    if (r->target_len < n || memcmp(r->target, path, n) != 0)
        return 0;
    return r->target_len == n || r->target[n] == '?';
}

static int method_is(const struct wsg_http_req *r, const char *m)
{
    return r->method_len == strlen(m) && memcmp(r->method, m, r->method_len) == 0;
}

/* The page may run its inline script and fetch status.json from this listener, nothing else. */
#define STATUS_PAGE_HEADERS                                                                                  \
    "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "   \
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"     \
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"

/* /status.json: the metrics exposition converted (status.h), so it is the /metrics snapshot. */
static void respond_status_json(struct admin_conn *a)
{
    char *text = NULL, *json = NULL;
    size_t tlen = 0, jlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    if (f == NULL) {
        respond(a, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    A.ops->metrics(f);
    fclose(f);
    FILE *j = open_memstream(&json, &jlen);
    if (j == NULL) {
        free(text);
        respond(a, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    wsg_status_json(j, text, tlen);
    fclose(j);
    respond(a, 200, "application/json", json, jlen);
    free(text);
    free(json);
}

/* Runs an ops callback that prints into a memory stream and answers with what it printed. */
static void respond_stream(struct admin_conn *a, int status, const char *ctype, void (*fn)(FILE *))
{
    char *body = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&body, &blen);
    if (f == NULL) {
        respond(a, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    fn(f);
    fclose(f);
    respond(a, status, ctype, body, blen);
    free(body);
}

/* /upstreams (GET) and /upstreams/NAME/ACTION (POST). */
static void respond_upstreams(struct admin_conn *a, const struct wsg_http_req *r)
{
    int post = method_is(r, "POST");
    int list = target_is(r, "/upstreams");
    if (list != !post || (!post && !method_is(r, "GET"))) {
        respond(a, 405, "text/plain", "method not allowed\n", 19);
        return;
    }
    char *body = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&body, &blen);
    if (f == NULL) {
        respond(a, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    int status = A.ops->upstreams(f, post, r->target, r->target_len);
    fclose(f);
    respond(a, status, "application/json", body, blen);
    free(body);
}

/* /acme...: the ACME challenges (gateway/acme.h); text/plain answers, 204 without a body. */
static void respond_acme(struct admin_conn *a, const struct wsg_http_req *r, const char *body, size_t blen)
{
    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    if (f == NULL) {
        respond(a, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    int status = A.ops->acme(f, r->method, r->method_len, r->target, r->target_len, body, blen);
    fclose(f);
    if (status == 204)
        tlen = 0; /* RFC 9110 section 15.3.5: no content */
    respond(a, status, "text/plain; charset=utf-8", text, tlen);
    free(text);
}

static void handle(struct admin_conn *a, const struct wsg_http_req *r, const char *req_body, size_t blen)
{
    const struct wsg_admin_ops *ops = A.ops;
    if (ops->acme != NULL && wsg_acme_admin_target(r->target, r->target_len)) {
        respond_acme(a, r, req_body, blen);
    } else if (target_is(r, "/upstreams") ||
               (r->target_len > 11 && memcmp(r->target, "/upstreams/", 11) == 0)) {
        respond_upstreams(a, r);
    } else if (target_is(r, "/healthz") && method_is(r, "GET")) {
        respond(a, 200, "text/plain", "ok\n", 3);
    } else if (target_is(r, "/readyz") && method_is(r, "GET")) {
        if (ops->draining())
            respond(a, 503, "text/plain", "draining\n", 9);
        else
            respond(a, 200, "text/plain", "ready\n", 6);
    } else if (target_is(r, "/metrics") && method_is(r, "GET")) {
        respond_stream(a, 200, "text/plain; version=0.0.4; charset=utf-8", ops->metrics);
    } else if (target_is(r, "/certs") && method_is(r, "GET")) {
        respond_stream(a, 200, "application/json", ops->certs);
    } else if ((target_is(r, "/") || target_is(r, "/status")) && method_is(r, "GET")) {
        respond_h(a, 200, "text/html; charset=utf-8", STATUS_PAGE_HEADERS, wsg_status_html,
                  wsg_status_html_len);
    } else if (target_is(r, "/status.json") && method_is(r, "GET")) {
        respond_status_json(a);
    } else if (target_is(r, "/reload") && method_is(r, "POST")) {
        char err[WSG_ERRLEN], body[WSG_ERRLEN * 2 + 64];
        if (ops->reload(err) == 0) {
            respond(a, 200, "application/json", "{\"ok\":true}\n", 12);
        } else {
            size_t n = (size_t)snprintf(body, sizeof(body), "{\"ok\":false,\"error\":\"");
            n = wsg_json_str(body, n, sizeof(body) - 4, err, strlen(err));
            n += (size_t)snprintf(body + n, sizeof(body) - n, "\"}\n");
            respond(a, 409, "application/json", body, n);
        }
    } else if (target_is(r, "/drain") && method_is(r, "POST")) {
        ops->drain();
        respond(a, 202, "text/plain", "draining\n", 9);
    } else if (target_is(r, "/healthz") || target_is(r, "/readyz") || target_is(r, "/metrics") ||
               target_is(r, "/certs") || target_is(r, "/reload") || target_is(r, "/drain") ||
               target_is(r, "/") || target_is(r, "/status") || target_is(r, "/status.json")) {
        respond(a, 405, "text/plain", "method not allowed\n", 19);
    } else {
        respond(a, 404, "text/plain", "not found\n", 10);
    }
}

static void on_admin_io(EV_P_ ev_io *io, int revents)
{
    struct admin_conn *a = (struct admin_conn *)io;
    if (a->out == NULL && (revents & EV_READ)) {
        ssize_t n = recv(io->fd, a->in + a->in_len, sizeof(a->in) - a->in_len, 0);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            admin_close(loop, a);
            return;
        }
        a->in_len += (size_t)n;
        struct wsg_http_req req;
        struct wsg_http_limits lim = {.max_head = ADMIN_HEAD_MAX, .max_target = 1024, .max_headers = 50};
        const char *why = NULL;
        int status = 400;
        int r = wsg_http_parse_request(a->in, a->in_len, &lim, &req, &why, &status);
        if (r == WSG_PARSE_PARTIAL)
            return;
        if (r < 0) {
            respond(a, status, "text/plain", "bad request\n", 12);
        } else if (req.body == WSG_BODY_CHUNKED ||
                   (req.method_len == 3 && memcmp(req.method, "PUT", 3) == 0 &&
                    req.body != WSG_BODY_LENGTH)) {
            respond(a, 400, "text/plain", "a body needs a Content-Length\n", 30);
        } else if (req.body == WSG_BODY_LENGTH && req.content_length > ADMIN_BODY_MAX) {
            respond(a, 413, "text/plain", "body over 16 KiB\n", 17);
        } else {
            size_t blen = req.body == WSG_BODY_LENGTH ? (size_t)req.content_length : 0;
            if (a->in_len < (size_t)r + blen)
                return; /* the rest of the body (the head parses the same again) */
            handle(a, &req, a->in + r, blen);
        }
        if (a->out == NULL) {
            admin_close(loop, a);
            return;
        }
        ev_io_stop(loop, io);
        ev_io_set(io, io->fd, EV_WRITE);
        ev_io_start(loop, io);
    }
    if (a->out != NULL) {
        while (a->out_off < a->out_len) {
            ssize_t n = send(io->fd, a->out + a->out_off, a->out_len - a->out_off, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n <= 0)
                break;
            a->out_off += (size_t)n;
        }
        admin_close(loop, a);
    }
}

static void on_admin_timeout(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    admin_close(loop, container_of(t, struct admin_conn, timer));
}

static void on_admin_accept(EV_P_ ev_io *io, int revents)
{
    WSG_UNUSED(revents);
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct admin_conn *a = calloc(1, sizeof(*a));
        if (a == NULL) {
            close(fd);
            return;
        }
        ev_io_init(&a->io, on_admin_io, fd, EV_READ);
        ev_io_start(loop, &a->io);
        ev_timer_init(&a->timer, on_admin_timeout, ADMIN_TIMEOUT, 0.);
        ev_timer_start(loop, &a->timer);
    }
}

int wsg_admin_start(struct ev_loop *loop, const char *addr, const struct wsg_admin_ops *ops,
                    char err[WSG_ERRLEN])
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        const char *path = addr + 5;
        if (strlen(path) >= sizeof(un->sun_path)) {
            snprintf(err, WSG_ERRLEN, "admin %s: path too long", addr);
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        unlink(path);
        len = sizeof(*un);
        snprintf(A.unix_path, sizeof(A.unix_path), "%s", path);
    } else {
        char host[128];
        const char *colon = strrchr(addr, ':');
        if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
            snprintf(err, WSG_ERRLEN, "admin %s: expected HOST:PORT or unix:PATH", addr);
            return -1;
        }
        size_t hl = (size_t)(colon - addr);
        if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
            memcpy(host, addr + 1, hl - 2);
            host[hl - 2] = '\0';
        } else {
            memcpy(host, addr, hl);
            host[hl] = '\0';
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_NUMERICHOST},
                        *res;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
            snprintf(err, WSG_ERRLEN, "admin %s: not a numeric address", addr);
            return -1;
        }
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        len = res->ai_addrlen;
        freeaddrinfo(res);
        /* Never the public internet: the admin endpoint has no authentication. */
        int loopback = 0;
        if (ss.ss_family == AF_INET)
            loopback = (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
        else if (ss.ss_family == AF_INET6)
            loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
        if (!loopback) {
            snprintf(err, WSG_ERRLEN, "admin %s: must be a loopback address or a unix socket", addr);
            return -1;
        }
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0 && ss.ss_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
        snprintf(err, WSG_ERRLEN, "admin %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (ss.ss_family == AF_UNIX)
        chmod(A.unix_path, 0600);
    A.fd = fd;
    A.ops = ops;
    ev_io_init(&A.io, on_admin_accept, fd, EV_READ);
    ev_io_start(loop, &A.io);
    return 0;
}

void wsg_admin_stop(struct ev_loop *loop)
{
    if (A.fd < 0)
        return;
    ev_io_stop(loop, &A.io);
    close(A.fd);
    A.fd = -1;
    if (A.unix_path[0])
        unlink(A.unix_path);
}
