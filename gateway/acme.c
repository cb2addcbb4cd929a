/*
 * acme.c - ACME challenges served by the gateway (see acme.h): the /acme admin requests, the
 * HTTP-01 table (main thread only), the listen_http plaintext listeners (on the main loop) and
 * their metrics. The TLS-ALPN-01 table lives in the TLS store (tls/acme.c), because worker
 * threads read it during handshakes.
 */
#include "gateway/acme.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/http1.h"
#include "gateway/log.h"
#include "policies/base/b64url.h"
#include "tls/tls.h"

/* ---- the HTTP-01 table (main thread only) ---- */

struct http01 {
    char token[WSG_ACME_TOKEN_MAX + 1];
    char keyauth[WSG_ACME_KEYAUTH_MAX];
    size_t kalen;
};

static struct {
    struct http01 tab[WSG_ACME_HTTP_MAX];
    size_t n;
    unsigned long long served, unknown, redirects;
} H;

void wsg_acme_reset(void)
{
    memset(&H, 0, sizeof(H));
}

size_t wsg_acme_http_count(void)
{
    return H.n;
}

static struct http01 *http01_find(const char *token, size_t len)
{
    for (size_t i = 0; i < H.n; i++)
        if (strlen(H.tab[i].token) == len && memcmp(H.tab[i].token, token, len) == 0)
            return &H.tab[i];
    return NULL;
}

/* base64url alphabet only (RFC 8555 section 8.3: the token's characters), 1..128 bytes */
static int token_ok(const char *s, size_t len)
{
    return len <= WSG_ACME_TOKEN_MAX && wsg_b64url_chars(s, len);
}

/* A DNS name: letters, digits, '-' and '.', 1..253 bytes, labels 1..63 not starting or ending
 * with '-'. Lower-cased into out (at least 254 bytes). */
static const char *name_check(const char *s, size_t len, char *out)
{
    if (len == 0 || len > 253)
        return "the name must be 1 to 253 characters";
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return "the name has an empty label or a label ending in '-'";
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            if (++label > 63)
                return "the name has a label over 63 characters";
        } else {
            return "the name is not a DNS name (letters, digits, '-' and '.')";
        }
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    if (label == 0 || s[len - 1] == '-')
        return "the name ends with '.' or '-'";
    out[len] = '\0';
    return NULL;
}

/* ---- the admin requests ---- */

int wsg_acme_admin_target(const char *target, size_t len)
{
    return len >= 5 && memcmp(target, "/acme", 5) == 0 && (len == 5 || target[5] == '/' || target[5] == '?');
}

static int method_eq(const char *m, size_t mlen, const char *want)
{
    return mlen == strlen(want) && memcmp(m, want, mlen) == 0;
}

static void list_tls(void *arg, const char *name)
{
    fprintf(arg, "tls-alpn-01 %s\n", name);
}

static int cmp_tokens(const void *a, const void *b)
{
    return strcmp(((const struct http01 *)a)->token, ((const struct http01 *)b)->token);
}

static int reply(FILE *out, int status, const char *text)
{
    fprintf(out, "%s\n", text);
    return status;
}

static int admin_http01(FILE *out, int put, const char *tok, size_t tlen, const char *body, size_t blen)
{
    if (!token_ok(tok, tlen))
        return reply(out, 400, "bad token: 1 to 128 characters of A-Z a-z 0-9 _ -");
    struct http01 *e = http01_find(tok, tlen);
    if (!put) {
        if (e == NULL)
            return reply(out, 404, "no such http-01 challenge");
        *e = H.tab[--H.n];
        return 204;
    }
    if (blen == 0 || blen > WSG_ACME_KEYAUTH_MAX)
        return reply(out, 400, "bad key authorization: 1 to 1024 bytes");
    for (size_t i = 0; i < blen; i++)
        if (body[i] <= 0x20 || body[i] >= 0x7f)
            return reply(out, 400, "bad key authorization: printable ASCII without whitespace only");
    if (e == NULL) {
        if (H.n >= WSG_ACME_HTTP_MAX)
            return reply(out, WSG_ACME_FULL_STATUS, "already 64 http-01 challenges held");
        e = &H.tab[H.n++];
        memcpy(e->token, tok, tlen);
        e->token[tlen] = '\0';
    }
    memcpy(e->keyauth, body, blen);
    e->kalen = blen;
    wsg_log(WSG_LOG_INFO, "acme: http-01 challenge %s held (%zu held)", e->token, H.n);
    return 204;
}

static int admin_tls(FILE *out, int put, const char *name, size_t nlen, const char *body, size_t blen,
                     struct wsg_tls_store *st)
{
    char lower[256], err[WSG_ERRLEN];
    const char *why = name_check(name, nlen, lower);
    if (why != NULL)
        return reply(out, 400, why);
    if (st == NULL)
        return reply(out, 503, "no TLS store");
    if (!put) {
        if (wsg_tls_acme_delete(st, lower) != 0)
            return reply(out, 404, "no such tls-alpn-01 challenge");
        return 204;
    }
    int r = wsg_tls_acme_put(st, lower, body, blen, err);
    if (r == -2)
        return reply(out, WSG_ACME_FULL_STATUS, err);
    if (r < 0)
        return reply(out, 400, err);
    wsg_log(WSG_LOG_INFO, "acme: tls-alpn-01 challenge for %s held", lower);
    return 204;
}

int wsg_acme_admin(FILE *out, const char *method, size_t mlen, const char *target, size_t tlen,
                   const char *body, size_t blen, struct wsg_tls_store *st)
{
    int put = method_eq(method, mlen, "PUT"), del = method_eq(method, mlen, "DELETE");
    if (tlen == 5 && memcmp(target, "/acme", 5) == 0) {
        if (!method_eq(method, mlen, "GET"))
            return reply(out, 405, "method not allowed");
        struct http01 sorted[WSG_ACME_HTTP_MAX];
        memcpy(sorted, H.tab, H.n * sizeof(sorted[0]));
        qsort(sorted, H.n, sizeof(sorted[0]), cmp_tokens);
        for (size_t i = 0; i < H.n; i++)
            fprintf(out, "http-01 %s\n", sorted[i].token);
        if (st != NULL)
            wsg_tls_acme_list(st, list_tls, out);
        return 200;
    }
    static const char p_http[] = "/acme/http-01/", p_tls[] = "/acme/tls-alpn-01/";
    size_t lh = sizeof(p_http) - 1, lt = sizeof(p_tls) - 1;
    int is_http = tlen >= lh && memcmp(target, p_http, lh) == 0;
    int is_tls = tlen >= lt && memcmp(target, p_tls, lt) == 0;
    if (!is_http && !is_tls)
        return reply(out, 404, "not found");
    if (!put && !del)
        return reply(out, 405, "method not allowed");
    if (is_http)
        return admin_http01(out, put, target + lh, tlen - lh, body, blen);
    return admin_tls(out, put, target + lt, tlen - lt, body, blen, st);
}

/* ---- the listen_http answer ---- */

/* The Host header's host, without its port: "example.com", "[::1]". NULL when it is not a
 * plausible host (what could reach a Location header must be plain). */
static int host_part(const char *h, size_t len, size_t *hl)
{
    size_t end = len;
    if (len > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', len);
        if (close == NULL)
            return -1;
        end = (size_t)(close - h) + 1;
        for (size_t i = 1; i + 1 < end; i++)
            if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f') ||
                  (h[i] >= 'A' && h[i] <= 'F') || h[i] == ':' || h[i] == '.'))
                return -1;
        if (end < 3)
            return -1;
    } else {
        const char *colon = memchr(h, ':', len);
        if (colon != NULL)
            end = (size_t)(colon - h);
        if (end == 0)
            return -1;
        for (size_t i = 0; i < end; i++) {
            char c = h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '.' || c == '_'))
                return -1;
        }
    }
    if (end < len) { /* ":PORT", digits only */
        if (h[end] != ':' || end + 1 == len || len - end > 6)
            return -1;
        for (size_t i = end + 1; i < len; i++)
            if (h[i] < '0' || h[i] > '9')
                return -1;
    }
    *hl = end;
    return 0;
}

static int respond(char **out, size_t *outlen, int status, const char *extra, const char *body, size_t blen,
                   int head_only)
{
    size_t cap = 256 + strlen(extra) + blen;
    char *p = malloc(cap);
    if (p == NULL)
        return -1;
    int n = snprintf(p, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\nCache-Control: no-store\r\n%s\r\n",
                     status, wsg_http_reason_phrase(status), blen, extra);
    if (!head_only) {
        memcpy(p + n, body, blen);
        n += (int)blen;
    }
    *out = p;
    *outlen = (size_t)n;
    return status;
}

#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"

int wsg_acme_http_answer(const char *in, size_t len, unsigned https_port, char **out, size_t *outlen)
{
    struct wsg_http_req req;
    struct wsg_http_limits lim = {
        .max_head = WSG_ACME_HTTP_HEAD_MAX, .max_target = WSG_ACME_HTTP_HEAD_MAX, .max_headers = 64};
    const char *why = NULL;
    int status = 400;
    int r = wsg_http_parse_request(in, len, &lim, &req, &why, &status);
    if (r == WSG_PARSE_PARTIAL)
        return 0;
    if (r < 0) {
        char body[160];
        int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, wsg_http_reason_phrase(status),
                         why != NULL ? why : "bad request");
        return respond(out, outlen, status, "", body, (size_t)n, 0);
    }
    if (req.host == NULL)
        return respond(out, outlen, 400, "", "400 Bad Request: no Host\n", 25, 0);
    int get = req.method_len == 3 && memcmp(req.method, "GET", 3) == 0;
    int head = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
    size_t lp = sizeof(CHALLENGE_PREFIX) - 1;
    if ((get || head) && req.target_len >= lp && memcmp(req.target, CHALLENGE_PREFIX, lp) == 0) {
        const char *tok = req.target + lp;
        size_t tl = req.target_len - lp;
        struct http01 *e = token_ok(tok, tl) ? http01_find(tok, tl) : NULL;
        if (e == NULL) {
            H.unknown++;
            return respond(out, outlen, 404, "", "404 Not Found\n", 14, head);
        }
        H.served++;
        return respond(out, outlen, 200, "", e->keyauth, e->kalen, head);
    }
    size_t hl;
    if (host_part(req.host->value, req.host->value_len, &hl) != 0)
        return respond(out, outlen, 400, "", "400 Bad Request: bad Host\n", 26, head);
    if (req.target_len == 0 || req.target[0] != '/')
        return respond(out, outlen, 400, "", "400 Bad Request: not an origin-form target\n", 43, head);
    /* 308 keeps the method and body (RFC 9110 section 15.4.9); the port only when not 443. */
    size_t cap = 64 + hl + req.target_len;
    char *loc = malloc(cap);
    if (loc == NULL)
        return -1;
    char port[16] = "";
    if (https_port != 443)
        snprintf(port, sizeof(port), ":%u", https_port);
    snprintf(loc, cap, "Location: https://%.*s%s%.*s\r\n", (int)hl, req.host->value, port,
             (int)req.target_len, req.target);
    H.redirects++;
    int rc = respond(out, outlen, 308, loc, "", 0, head);
    free(loc);
    return rc;
}

/* ---- the listen_http listeners (main loop) ---- */

struct http_conn {
    ev_io io;
    ev_timer timer;
    char in[WSG_ACME_HTTP_HEAD_MAX];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    int lingering; /* answered: discarding what the client still sends until it closes */
};

/* After the answer, the client's unread bytes are read and dropped for up to this long, so that
 * closing does not reset the connection before the client read the answer (a 431, say). */
#define LINGER_SECONDS 1.0

static struct {
    int fd[WSG_CFG_MAX_LISTEN];
    ev_io io[WSG_CFG_MAX_LISTEN];
    unsigned n;
    unsigned https_port;
    double timeout;
    unsigned live; /* open listen_http connections (at most WSG_ACME_HTTP_CONNS_MAX) */
} L;

static void http_close(struct ev_loop *loop, struct http_conn *h)
{
    ev_io_stop(loop, &h->io);
    ev_timer_stop(loop, &h->timer);
    close(h->io.fd);
    free(h->out);
    free(h);
    L.live--;
}

static void on_http_io(EV_P_ ev_io *io, int revents)
{
    struct http_conn *h = (struct http_conn *)io;
    if (h->lingering) {
        char sink[4096];
        ssize_t n = recv(io->fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            http_close(loop, h);
        return;
    }
    if (h->out == NULL && (revents & EV_READ)) {
        ssize_t n = recv(io->fd, h->in + h->in_len, sizeof(h->in) - h->in_len, 0);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            http_close(loop, h);
            return;
        }
        h->in_len += (size_t)n;
        int st = wsg_acme_http_answer(h->in, h->in_len, L.https_port, &h->out, &h->out_len);
        if (st == 0)
            return;
        if (st < 0 || h->out == NULL) {
            http_close(loop, h);
            return;
        }
        ev_io_stop(loop, io);
        ev_io_set(io, io->fd, EV_WRITE);
        ev_io_start(loop, io);
    }
    if (h->out != NULL) {
        while (h->out_off < h->out_len) {
            ssize_t n = send(io->fd, h->out + h->out_off, h->out_len - h->out_off, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n <= 0)
                break;
            h->out_off += (size_t)n;
        }
        shutdown(io->fd, SHUT_WR);
        h->lingering = 1;
        ev_io_stop(loop, io);
        ev_io_set(io, io->fd, EV_READ);
        ev_io_start(loop, io);
        ev_timer_stop(loop, &h->timer);
        ev_timer_set(&h->timer, LINGER_SECONDS, 0.);
        ev_timer_start(loop, &h->timer);
    }
}

static void on_http_timeout(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    http_close(loop, container_of(t, struct http_conn, timer));
}

static void on_http_accept(EV_P_ ev_io *io, int revents)
{
    WSG_UNUSED(revents);
    for (int i = 0; i < 64; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct http_conn *h = L.live < WSG_ACME_HTTP_CONNS_MAX ? calloc(1, sizeof(*h)) : NULL;
        if (h == NULL) {
            close(fd); /* full (or out of memory): this one goes, the open ones are served */
            continue;
        }
        L.live++;
        ev_io_init(&h->io, on_http_io, fd, EV_READ);
        ev_io_start(loop, &h->io);
        ev_timer_init(&h->timer, on_http_timeout, L.timeout, 0.);
        ev_timer_start(loop, &h->timer);
    }
}

/* One listen_http address (the `listen` syntax, checked by the config) -> a listening socket. */
static int bind_one(const char *spec, char err[WSG_ERRLEN])
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (wsg_listen_addr("listen_http", spec, &ss, &len, err) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 256) != 0) {
        snprintf(err, WSG_ERRLEN, "listen_http %s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int wsg_acme_http_start(struct ev_loop *loop, const struct wsg_cfg *cfg, char err[WSG_ERRLEN])
{
    const char *colon = strrchr(cfg->listen[0], ':');
    L.https_port = colon != NULL ? (unsigned)strtoul(colon + 1, NULL, 10) : 443;
    L.timeout = cfg->header_timeout;
    for (unsigned i = 0; i < cfg->nlisten_http; i++) {
        int fd = bind_one(cfg->listen_http[i], err);
        if (fd < 0)
            return -1;
        L.fd[L.n] = fd;
        ev_io_init(&L.io[L.n], on_http_accept, fd, EV_READ);
        ev_io_start(loop, &L.io[L.n]);
        L.n++;
    }
    return 0;
}

void wsg_acme_http_stop(struct ev_loop *loop)
{
    for (unsigned i = 0; i < L.n; i++) {
        ev_io_stop(loop, &L.io[i]);
        close(L.fd[i]);
    }
    L.n = 0;
}

/* ---- metrics ---- */

void wsg_acme_metrics(FILE *f, struct wsg_tls_store *st)
{
    uint64_t served = 0, unknown = 0;
    size_t tls_held = 0;
    if (st != NULL) {
        wsg_tls_acme_stats(st, &served, &unknown);
        tls_held = wsg_tls_acme_count(st);
    }
    fprintf(
        f,
        "# HELP wsgate_acme_challenges ACME challenges held in memory (pushed over the admin endpoint), "
        "by type.\n# TYPE wsgate_acme_challenges gauge\n"
        "wsgate_acme_challenges{type=\"http-01\"} %zu\nwsgate_acme_challenges{type=\"tls-alpn-01\"} %zu\n",
        H.n, tls_held);
    fprintf(f,
            "# HELP wsgate_acme_challenge_requests_total ACME validation requests: served (a challenge was "
            "held) or unknown.\n# TYPE wsgate_acme_challenge_requests_total counter\n"
            "wsgate_acme_challenge_requests_total{type=\"http-01\",result=\"served\"} %llu\n"
            "wsgate_acme_challenge_requests_total{type=\"http-01\",result=\"unknown\"} %llu\n"
            "wsgate_acme_challenge_requests_total{type=\"tls-alpn-01\",result=\"served\"} %llu\n"
            "wsgate_acme_challenge_requests_total{type=\"tls-alpn-01\",result=\"unknown\"} %llu\n",
            H.served, H.unknown, (unsigned long long)served, (unsigned long long)unknown);
    fprintf(f,
            "# HELP wsgate_http_redirects_total Requests on listen_http redirected to https (308).\n"
            "# TYPE wsgate_http_redirects_total counter\nwsgate_http_redirects_total %llu\n",
            H.redirects);
}
