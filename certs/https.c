/*
 * https.c - the ACME client's HTTPS (RFC 8555 section 6.1): one request per connection over
 * mbedTLS, the server verified against a CA bundle (--ca, or the system's), the whole answer read
 * until the server closes, then parsed strictly (wsg_https_parse): status line, the few headers
 * ACME needs (Location, Replay-Nonce, Retry-After, Content-Type), the body by Content-Length,
 * chunked transfer coding, or the end of the stream.
 *
 * The answer comes from the network and is read as hostile: CRLF line ends only, no obs-fold,
 * token header names, one Content-Length, chunked only as the sole transfer coding and not with a
 * Content-Length, chunk sizes of at most 8 hex digits, the whole answer at most 1 MiB.
 */
#include "certs/acme.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/ssl.h>
#include <psa/crypto.h>

#define HTTPS_ANSWER_MAX (1u << 20)
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* ---- the answer ---- */

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Copies a header value into a fixed field; a value that does not fit is an error (no truncation). */
static int keep(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

/* The next CRLF-terminated line from *p; @return its length, or -1 when there is no CRLF. */
static long line_at(const char *p, const char *end)
{
    for (const char *q = p; q + 1 < end; q++) {
        if (q[0] == '\r' && q[1] == '\n')
            return (long)(q - p);
        if (q[0] == '\r' || q[0] == '\n')
            return -1; /* a bare CR or LF */
    }
    return -1;
}

/* Decodes a chunked body at p into out (never longer than the input). @return its length or -1. */
static long dechunk(const char *p, const char *end, char *out)
{
    size_t olen = 0;
    for (;;) {
        long n = line_at(p, end);
        if (n <= 0)
            return -1;
        size_t size = 0, digits = 0;
        const char *q = p;
        for (; q < p + n && digits < 9; q++, digits++) {
            char c = *q;
            int v = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (v < 0)
                break;
            size = size * 16 + (size_t)v;
        }
        if (digits == 0 || digits > 8 || (q < p + n && *q != ';'))
            return -1; /* chunk extensions after ';' are allowed and ignored */
        p += n + 2;
        if (size == 0)
            break;
        if ((size_t)(end - p) < size + 2 || p[size] != '\r' || p[size + 1] != '\n')
            return -1;
        memcpy(out + olen, p, size);
        olen += size;
        p += size + 2;
    }
    for (;;) { /* trailer fields, then the empty line */
        long n = line_at(p, end);
        if (n < 0)
            return -1;
        p += n + 2;
        if (n == 0)
            break;
    }
    return p == end ? (long)olen : -1;
}

int wsg_https_parse(const char *buf, size_t len, int is_head, struct wsg_https_res *res)
{
    const char *p = buf, *end = buf + len;
    memset(res, 0, sizeof(*res));
    long n = line_at(p, end);
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        status = status * 10 + (p[i] - '0');
    }
    if (status < 100 || (n > 12 && p[12] != ' '))
        return -1;
    p += n + 2;

    int chunked = 0, have_cl = 0;
    size_t cl = 0;
    for (;;) {
        n = line_at(p, end);
        if (n < 0)
            return -1;
        if (n == 0) {
            p += 2;
            break;
        }
        const char *colon = memchr(p, ':', (size_t)n);
        if (colon == NULL || colon == p)
            return -1;
        for (const char *q = p; q < colon; q++)
            if (!is_tchar((unsigned char)*q))
                return -1; /* also refuses obs-fold (a line starting with whitespace) */
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1, *ve = p + n;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++)
            if ((unsigned char)*q < 0x20 && *q != '\t')
                return -1;
        size_t vlen = (size_t)(ve - v);
#define IS(name) (nlen == sizeof(name) - 1 && strncasecmp(p, name, nlen) == 0)
        if (IS("location")) {
            if (res->location[0] != '\0' || keep(res->location, sizeof(res->location), v, vlen) != 0)
                return -1;
        } else if (IS("replay-nonce")) {
            if (keep(res->nonce, sizeof(res->nonce), v, vlen) != 0)
                return -1;
        } else if (IS("retry-after")) {
            if (keep(res->retry_after, sizeof(res->retry_after), v, vlen) != 0)
                return -1;
        } else if (IS("content-type")) {
            if (keep(res->content_type, sizeof(res->content_type), v, vlen) != 0)
                return -1;
        } else if (IS("content-length")) {
            size_t val = 0;
            if (have_cl || vlen == 0 || vlen > 9)
                return -1;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return -1;
                val = val * 10 + (size_t)(v[i] - '0');
            }
            have_cl = 1, cl = val;
        } else if (IS("transfer-encoding")) {
            if (chunked || vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
                return -1; /* only chunked, once */
            chunked = 1;
        }
#undef IS
        p += n + 2;
    }
    if (chunked && have_cl)
        return -1;
    size_t avail = (size_t)(end - p);
    long blen;
    res->body = malloc(avail + 1);
    if (res->body == NULL)
        return -1;
    if (is_head || status == 204 || status == 304 || status < 200)
        blen = 0;
    else if (chunked)
        blen = dechunk(p, end, res->body);
    else if (have_cl)
        blen = cl <= avail ? (long)cl : -1;
    else
        blen = (long)avail;
    if (blen < 0) {
        wsg_https_res_free(res);
        return -1;
    }
    if (!chunked)
        memcpy(res->body, p, (size_t)blen);
    res->body[blen] = '\0';
    res->len = (size_t)blen;
    res->status = status;
    return 0;
}

void wsg_https_res_free(struct wsg_https_res *res)
{
    free(res->body);
    res->body = NULL;
    res->len = 0;
}

/* ---- the URL ---- */

int wsg_https_url(const char *url, char host[256], char hostport[300], const char **path)
{
    if (strncmp(url, "https://", 8) != 0)
        return -1;
    const char *a = url + 8, *slash = strchr(a, '/');
    size_t alen = slash != NULL ? (size_t)(slash - a) : strlen(a);
    if (alen == 0 || alen >= 256 || memchr(a, '@', alen) != NULL)
        return -1; /* no userinfo */
    const char *h = a, *he;
    const char *port = NULL;
    if (*a == '[') {
        he = memchr(a, ']', alen);
        if (he == NULL)
            return -1;
        h = a + 1;
        if (he + 1 < a + alen) {
            if (he[1] != ':')
                return -1;
            port = he + 2;
        }
    } else {
        he = memchr(a, ':', alen);
        if (he != NULL)
            port = he + 1;
        else
            he = a + alen;
    }
    if (he == h)
        return -1;
    size_t plen = port != NULL ? (size_t)(a + alen - port) : 0;
    if (port != NULL && (plen == 0 || plen > 5 || strspn(port, "0123456789") < plen))
        return -1;
    for (const char *q = h; q < he; q++)
        if ((unsigned char)*q <= 0x20 || *q == '/' || *q == '?' || *q == '#' || (unsigned char)*q >= 0x7f)
            return -1;
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    snprintf(hostport, 300, "%s%s%s:%.*s", *a == '[' ? "[" : "", host, *a == '[' ? "]" : "",
             port != NULL ? (int)plen : 3, port != NULL ? port : "443");
    *path = slash != NULL ? slash : "/";
    return 0;
}

/* ---- the client ---- */

int wsg_https_init(struct wsg_https *h, const char *ca_path, int timeout_ms, char err[WSG_ERRLEN])
{
    static const unsigned char pers[] = "wsgate-certs acme https";
    memset(h, 0, sizeof(*h));
    h->timeout_ms = timeout_ms;
    mbedtls_x509_crt_init(&h->ca);
    mbedtls_entropy_init(&h->entropy);
    mbedtls_ctr_drbg_init(&h->drbg);
    if (psa_crypto_init() != PSA_SUCCESS ||
        mbedtls_ctr_drbg_seed(&h->drbg, mbedtls_entropy_func, &h->entropy, pers, sizeof(pers) - 1) != 0) {
        snprintf(err, WSG_ERRLEN, "cannot seed the random generator");
        return -1;
    }
    const char *path = ca_path != NULL ? ca_path : SYSTEM_CA_BUNDLE;
    int ret = mbedtls_x509_crt_parse_file(&h->ca, path);
    if (ret < 0 || h->ca.raw.p == NULL) {
        char why[160];
        mbedtls_strerror(ret, why, sizeof(why));
        snprintf(err, WSG_ERRLEN, "%.120s: cannot read the CA bundle: %.100s", path, why);
        return -1;
    }
    return 0;
}

void wsg_https_free(struct wsg_https *h)
{
    mbedtls_x509_crt_free(&h->ca);
    mbedtls_ctr_drbg_free(&h->drbg);
    mbedtls_entropy_free(&h->entropy);
}

/* Writes all of buf through TLS. @return 0 or an mbedTLS error. */
static int tls_write_all(mbedtls_ssl_context *ssl, const char *buf, size_t len)
{
    while (len > 0) {
        int n = mbedtls_ssl_write(ssl, (const unsigned char *)buf, len);
        if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        if (n < 0)
            return n;
        buf += n, len -= (size_t)n;
    }
    return 0;
}

int wsg_https_request(struct wsg_https *h, const char *method, const char *url, const char *ctype,
                      const char *body, struct wsg_https_res *res, char err[WSG_ERRLEN])
{
    char host[256], hostport[300], why[160];
    const char *path;
    memset(res, 0, sizeof(*res));
    if (wsg_https_url(url, host, hostport, &path) != 0) {
        snprintf(err, WSG_ERRLEN, "not an https URL: %.200s", url);
        return -1;
    }
    int rc = -1, ret, fd = -1;
    char *req = NULL, *buf = NULL;
    size_t blen = body != NULL ? strlen(body) : 0, len = 0, cap = 16384;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);
    const char *step = "client configuration";
    if ((ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                           MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
        goto mbed_fail;
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf, &h->ca, NULL);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &h->drbg);
    if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0)
        goto mbed_fail;
    step = "host name";
    if ((ret = mbedtls_ssl_set_hostname(&ssl, host)) != 0) /* checked against the certificate */
        goto mbed_fail;
    if ((fd = wsg_certs_connect(hostport, 0, h->timeout_ms, err)) < 0)
        goto out;
    mbedtls_ssl_set_bio(&ssl, &fd, wsg_certs_bio_send, wsg_certs_bio_recv, NULL);
    step = "handshake";
    do
        ret = mbedtls_ssl_handshake(&ssl);
    while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
    if (ret != 0) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&ssl);
        if (flags != 0 && flags != (uint32_t)-1) {
            char info[256];
            mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
            info[strcspn(info, "\n")] = '\0';
            snprintf(err, WSG_ERRLEN, "%.80s: the server's certificate is not trusted: %.100s", hostport,
                     info);
            goto out;
        }
        goto mbed_fail;
    }
    req = malloc(strlen(path) + strlen(host) + blen + 512);
    if (req == NULL) {
        snprintf(err, WSG_ERRLEN, "out of memory");
        goto out;
    }
    int n = sprintf(req,
                    "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wsgate-certs\r\nAccept: */*\r\n"
                    "Connection: close\r\n",
                    method, path, hostport);
    if (body != NULL)
        n += sprintf(req + n, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, blen);
    n += sprintf(req + n, "\r\n");
    if (body != NULL)
        memcpy(req + n, body, blen);
    step = "write";
    if ((ret = tls_write_all(&ssl, req, (size_t)n + blen)) != 0)
        goto mbed_fail;
    step = "read";
    buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            snprintf(err, WSG_ERRLEN, "out of memory");
            goto out;
        }
        if (len == cap) {
            char *more = cap < HTTPS_ANSWER_MAX ? realloc(buf, cap * 2) : NULL;
            if (more == NULL) {
                snprintf(err, WSG_ERRLEN, "%.120s: %s %s: the answer is larger than %u bytes", hostport,
                         method, path, HTTPS_ANSWER_MAX);
                goto out;
            }
            buf = more, cap *= 2;
        }
        ret = mbedtls_ssl_read(&ssl, (unsigned char *)buf + len, cap - len);
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE ||
            ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
            continue;
        if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF)
            break;
        if (ret < 0)
            goto mbed_fail;
        len += (size_t)ret;
    }
    if (wsg_https_parse(buf, len, strcmp(method, "HEAD") == 0, res) != 0) {
        snprintf(err, WSG_ERRLEN, "%.120s: %s %s: not a valid HTTP/1.1 answer", hostport, method, path);
        goto out;
    }
    rc = 0;
    goto out;
mbed_fail:
    mbedtls_strerror(ret, why, sizeof(why));
    snprintf(err, WSG_ERRLEN, "%.120s: TLS %s failed: %.100s", hostport, step, why);
out:
    if (fd >= 0) {
        (void)mbedtls_ssl_close_notify(&ssl);
        close(fd);
    }
    free(req);
    free(buf);
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    return rc;
}
