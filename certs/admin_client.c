/*
 * admin_client.c - the smallest HTTP/1.1 client that talks to wsgate's admin endpoint (and the
 * socket connect that probe.c shares): one request per connection, "Connection: close", the whole
 * answer read until the server closes. The admin endpoint is HOST:PORT on loopback or a unix
 * socket (unix:/run/wsgate/admin.sock).
 */
#include "certs/certs.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <mbedtls/ssl.h>

#define RESPONSE_MAX (4u << 20)

static void set_timeouts(int fd, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* connect() bounded by timeout_ms; the socket is blocking again afterwards. */
static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return -1;
    int ret = connect(fd, sa, len);
    if (ret != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n;
        do
            n = poll(&p, 1, timeout_ms);
        while (n < 0 && errno == EINTR);
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            return -1;
        if (soerr != 0) {
            errno = soerr;
            return -1;
        }
        ret = 0;
    }
    if (ret != 0)
        return -1;
    return fcntl(fd, F_SETFL, flags);
}

int wsg_certs_connect(const char *addr, int allow_unix, int timeout_ms, char err[WSG_ERRLEN])
{
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (!allow_unix) {
            snprintf(err, WSG_ERRLEN, "%s: a unix socket is not allowed here (HOST:PORT)", addr);
            return -1;
        }
        if (addr[5] == '\0' || strlen(addr + 5) >= sizeof(un.sun_path)) {
            snprintf(err, WSG_ERRLEN, "%s: not a usable unix socket path", addr);
            return -1;
        }
        strcpy(un.sun_path, addr + 5);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect_timeout(fd, (struct sockaddr *)&un, sizeof(un), timeout_ms) != 0) {
            snprintf(err, WSG_ERRLEN, "%s: cannot connect: %s", addr, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        set_timeouts(fd, timeout_ms);
        return fd;
    }
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl = colon != NULL ? (size_t)(colon - addr) : 0;
    if (colon == NULL || hl == 0 || hl >= sizeof(host) || colon[1] == '\0') {
        snprintf(err, WSG_ERRLEN, "%s: expected HOST:PORT%s", addr, allow_unix ? " or unix:/PATH" : "");
        return -1;
    }
    if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
        memcpy(host, addr + 1, hl - 2);
        host[hl - 2] = '\0';
    } else {
        memcpy(host, addr, hl);
        host[hl] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, colon + 1, &hints, &res);
    if (gai != 0) {
        snprintf(err, WSG_ERRLEN, "%s: %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms) == 0)
            break;
        saved = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, WSG_ERRLEN, "%s: cannot connect: %s", addr, strerror(saved));
        return -1;
    }
    set_timeouts(fd, timeout_ms);
    return fd;
}

int wsg_certs_http_parse(const char *buf, size_t len, struct wsg_certs_http *res)
{
    memset(res, 0, sizeof(*res));
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL || len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
        status = status * 10 + (buf[i] - '0');
    }
    const char *body = end + 4;
    size_t avail = len - (size_t)(body - buf), blen = avail;
    /* Content-Length, when present, bounds the body; without it the body ends at EOF. */
    for (const char *line = memchr(buf, '\n', (size_t)(end - buf)); line != NULL && line < end;
         line = memchr(line, '\n', (size_t)(end - line))) {
        line++;
        static const char cl[] = "content-length:";
        if ((size_t)(end - line) > sizeof(cl) - 1 && strncasecmp(line, cl, sizeof(cl) - 1) == 0) {
            char *stop;
            unsigned long long v = strtoull(line + sizeof(cl) - 1, &stop, 10);
            if (v > avail)
                return -1; /* truncated */
            blen = (size_t)v;
        }
    }
    res->body = malloc(blen + 1);
    if (res->body == NULL)
        return -1;
    memcpy(res->body, body, blen);
    res->body[blen] = '\0';
    res->len = blen;
    res->status = status;
    return 0;
}

int wsg_certs_admin_request(const char *admin, const char *method, const char *path, int timeout_ms,
                            struct wsg_certs_http *res, char err[WSG_ERRLEN])
{
    return wsg_certs_admin_send(admin, method, path, NULL, 0, timeout_ms, res, err);
}

int wsg_certs_admin_send(const char *admin, const char *method, const char *path, const void *body,
                         size_t blen, int timeout_ms, struct wsg_certs_http *res, char err[WSG_ERRLEN])
{
    memset(res, 0, sizeof(*res));
    int fd = wsg_certs_connect(admin, 1, timeout_ms, err);
    if (fd < 0)
        return -1;
    char head[512];
    int n =
        snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: wsgate-admin\r\nUser-Agent: wsgate-certs\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n",
                 method, path, blen);
    if (n < 0 || (size_t)n >= sizeof(head)) {
        snprintf(err, WSG_ERRLEN, "%s: %s: path too long", admin, method);
        close(fd);
        return -1;
    }
    struct {
        const char *p;
        size_t len;
    } part[2] = {{head, (size_t)n}, {body, blen}};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < part[i].len) {
            ssize_t w = send(fd, part[i].p + off, part[i].len - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                snprintf(err, WSG_ERRLEN, "%s: %s %s: cannot send: %s", admin, method, path, strerror(errno));
                close(fd);
                return -1;
            }
            off += (size_t)w;
        }
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            snprintf(err, WSG_ERRLEN, "%s: out of memory", admin);
            close(fd);
            return -1;
        }
        if (len == cap) {
            char *more = cap < RESPONSE_MAX ? realloc(buf, cap * 2) : NULL;
            if (more == NULL) {
                free(buf);
                snprintf(err, WSG_ERRLEN, "%s: %s %s: answer too large", admin, method, path);
                close(fd);
                return -1;
            }
            buf = more;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, WSG_ERRLEN, "%s: %s %s: %s", admin, method, path,
                     errno == EAGAIN ? "no answer in time" : strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    int rc = wsg_certs_http_parse(buf, len, res);
    free(buf);
    if (rc != 0)
        snprintf(err, WSG_ERRLEN, "%s: %s %s: not an HTTP response (is this the admin endpoint?)", admin,
                 method, path);
    return rc;
}

void wsg_certs_http_free(struct wsg_certs_http *res)
{
    if (res == NULL)
        return;
    free(res->body);
    res->body = NULL;
    res->len = 0;
}

/* ---- mbedTLS over a blocking socket (probe.c, https.c); its timeouts come from wsg_certs_connect ---- */

int wsg_certs_bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno != EINTR)
            return errno == EAGAIN ? MBEDTLS_ERR_SSL_TIMEOUT : MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
}

int wsg_certs_bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n > 0)
            return (int)n;
        if (n == 0)
            return MBEDTLS_ERR_SSL_CONN_EOF;
        if (errno != EINTR)
            return errno == EAGAIN ? MBEDTLS_ERR_SSL_TIMEOUT : MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
}
