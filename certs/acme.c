/*
 * acme.c - `wsgate-certs acme`: obtains a certificate from an ACME server (RFC 8555) with the
 * running gateway answering the challenge, then installs it through the rotate path.
 *
 * In order, stopping at the first failure (nothing is installed before step 7):
 *   1. --renew-days: when the gateway already serves every --name with a certificate that has
 *      more days left, print so and exit 0 (a daily timer is the whole set-up);
 *   2. the account key (ECDSA P-256): read, or made and kept mode 0600 beside the certificate;
 *   3. the directory, a nonce, newAccount (an existing key gets its account back);
 *   4. newOrder for the names; for each pending authorization, the chosen challenge:
 *      tls-alpn-01 (RFC 8737): a self-signed certificate for the name carrying the critical
 *      acmeIdentifier extension (SHA-256 of the key authorization), pushed to the gateway with
 *      PUT /acme/tls-alpn-01/NAME; http-01: the key authorization pushed with
 *      PUT /acme/http-01/TOKEN. Then the challenge is triggered and the authorization polled;
 *      the gateway is told to forget the challenge as soon as it is decided, and on any failure;
 *   5. a new key for the certificate and a CSR (mbedTLS) with every name, sent to finalize; the
 *      order polled until valid;
 *   6. the certificate chain downloaded (PEM);
 *   7. the pair written beside the destination (mode 0600 for both) and handed to the rotate path:
 *      check, keep the previous pair, install atomically, reload, verify by handshake, roll back.
 * Every request is a JWS signed with the account key (jws.c); a badNonce answer is retried with
 * the fresh nonce, as RFC 8555 section 6.5 asks. The gateway keeps no ACME state of its own.
 */
#include "certs/acme.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_csr.h>

#include "tls/tls.h"

#define ACME_SYNOPSIS                                                                                        \
    "usage: wsgate-certs acme --directory URL --email ADDR --name NAME [--name NAME]...\n"                   \
    "                         --gateway ADMIN --connect HOST:PORT --dest-cert PATH --dest-key PATH\n"        \
    "                         [--challenge tls-alpn-01|http-01] [--ca BUNDLE] [--renew-days N]\n"            \
    "                         [--account-key PATH] [--warn-days N] [--timeout SECONDS]\n"                    \
    "                         [--wait SECONDS]\n"

static const char acme_usage[] = ACME_SYNOPSIS
    "  Obtains a certificate for the names from an ACME server (RFC 8555), the running gateway\n"
    "  answering the challenge, and installs it as `rotate` does (verified, rolled back on failure).\n"
    "  --directory URL     the ACME server's directory (https://...)\n"
    "  --email ADDR        the account's contact (mailto:)\n"
    "  --name NAME         a DNS name of the certificate; repeat for more (the first is the CN)\n"
    "  --gateway ADMIN     the gateway's admin endpoint: 127.0.0.1:PORT or unix:/PATH\n"
    "  --connect HOST:PORT the gateway's public TLS listener, for the verifying handshakes\n"
    "  --dest-cert PATH    the certificate file the gateway's configuration names (cert ...)\n"
    "  --dest-key PATH     the key file it names (key ...); the current pair is kept as PATH.prev\n"
    "  --challenge TYPE    tls-alpn-01 (default: answered by the TLS listener) or http-01 (answered\n"
    "                      by the gateway's listen_http listener on port 80)\n"
    "  --ca BUNDLE         CA bundle the ACME server's HTTPS certificate must verify against\n"
    "                      (default: the system bundle)\n"
    "  --renew-days N      do nothing while the served certificate for every name has more than N\n"
    "                      days left (default 30; 0 always renews)\n"
    "  --account-key PATH  the account key (default: acme-account.key beside --dest-cert; made,\n"
    "                      mode 0600, when missing)\n"
    "  --warn-days N       exit 2 when the new certificate expires within N days (default 30)\n"
    "  --timeout SECONDS   per request and per handshake (default 10)\n"
    "  --wait SECONDS      longest wait for the server to decide a challenge or an order (default 120)\n"
    "  Exit: 0 obtained and installed, or nothing to do; 1 refused, failed or rolled back (the\n"
    "  reason on stderr, nothing installed); 2 installed but expiring within --warn-days; 64 bad usage.\n";

#define ACME_MAX_AUTHZ WSG_CERTS_MAX_NAMES
#define JOSE "application/jose+json"

struct acme_opts {
    const char *directory, *email, *admin, *connect, *dest_cert, *dest_key, *ca, *account_key;
    const char *const *names;
    size_t nnames;
    int http01; /* else tls-alpn-01 */
    unsigned renew_days, warn_days;
    int timeout_ms, wait_s;
};

/* A challenge the gateway holds for us, to be taken back however the run ends. */
struct pushed {
    char path[300]; /* /acme/tls-alpn-01/NAME or /acme/http-01/TOKEN */
};

struct acme {
    const struct acme_opts *o;
    FILE *out, *err;
    struct wsg_https https;
    struct wsg_acme_key account;
    char nonce[256];
    char kid[1024];
    char new_nonce[1024], new_account[1024], new_order[1024];
    struct pushed pushed[ACME_MAX_AUTHZ];
    size_t npushed;
};

static void say_err(struct acme *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_err(struct acme *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(a->out); /* the progress so far, then the error, in that order on a shared terminal */
    fputs("wsgate-certs acme: ", a->err);
    vfprintf(a->err, fmt, ap);
    fputc('\n', a->err);
    va_end(ap);
}

/* "TYPE: DETAIL" of an RFC 7807 problem document, or the status and the start of the body. */
static void problem_text(const struct wsg_https_res *r, char *out, size_t cap)
{
    struct wsg_certs_json *j = wsg_certs_json_parse(r->body, r->len);
    const char *type = wsg_certs_json_str(wsg_certs_json_get(j, "type"));
    const char *detail = wsg_certs_json_str(wsg_certs_json_get(j, "detail"));
    if (type != NULL) {
        const char *prefix = "urn:ietf:params:acme:error:";
        if (strncmp(type, prefix, strlen(prefix)) == 0)
            type += strlen(prefix);
        snprintf(out, cap, "HTTP %d, %s: %s", r->status, type, detail != NULL ? detail : "(no detail)");
    } else {
        snprintf(out, cap, "HTTP %d: %.200s", r->status, r->body != NULL ? r->body : "");
    }
    for (char *p = out; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' '; /* one line on stderr, whatever the server sent */
    wsg_certs_json_free(j);
}

static int is_problem(const struct wsg_https_res *r, const char *type)
{
    struct wsg_certs_json *j = wsg_certs_json_parse(r->body, r->len);
    const char *t = wsg_certs_json_str(wsg_certs_json_get(j, "type"));
    int yes = t != NULL && strcmp(t, type) == 0;
    wsg_certs_json_free(j);
    return yes;
}

static int copy_url(char *dst, size_t cap, const char *src)
{
    if (src == NULL || strncmp(src, "https://", 8) != 0 || strlen(src) >= cap)
        return -1;
    strcpy(dst, src);
    return 0;
}

/* ---- requests ---- */

static int fetch_nonce(struct acme *a)
{
    struct wsg_https_res r;
    char why[WSG_ERRLEN];
    if (wsg_https_request(&a->https, "HEAD", a->new_nonce, NULL, NULL, &r, why) != 0) {
        say_err(a, "newNonce: %s", why);
        return -1;
    }
    int ok = (r.status == 200 || r.status == 204) && r.nonce[0] != '\0';
    if (ok)
        strcpy(a->nonce, r.nonce);
    else
        say_err(a, "newNonce %s: HTTP %d without a Replay-Nonce", a->new_nonce, r.status);
    wsg_https_res_free(&r);
    return ok ? 0 : -1;
}

/*
 * A signed POST (payload NULL: POST-as-GET). The answer's nonce is kept for the next request; a
 * badNonce refusal is retried with it (up to 5 times). @return 0 with r (any status), or -1.
 */
static int post(struct acme *a, const char *what, const char *url, const char *payload,
                struct wsg_https_res *r)
{
    char why[WSG_ERRLEN];
    for (int attempt = 0; attempt < 5; attempt++) {
        if (a->nonce[0] == '\0' && fetch_nonce(a) != 0)
            return -1;
        char *body = wsg_jws_acme(&a->account, a->kid[0] != '\0' ? a->kid : NULL, a->nonce, url, payload);
        a->nonce[0] = '\0'; /* each nonce is good once */
        if (body == NULL) {
            say_err(a, "%s: cannot sign the request (a nonce that is not base64url?)", what);
            return -1;
        }
        int rc = wsg_https_request(&a->https, "POST", url, JOSE, body, r, why);
        free(body);
        if (rc != 0) {
            say_err(a, "%s: %s", what, why);
            return -1;
        }
        strcpy(a->nonce, r->nonce);
        if (r->status == 400 && is_problem(r, "urn:ietf:params:acme:error:badNonce")) {
            wsg_https_res_free(r);
            continue;
        }
        return 0;
    }
    say_err(a, "%s: the server refused five nonces in a row", what);
    return -1;
}

/* A POST whose answer must have one of the two statuses and be a JSON object. @return it or NULL. */
static struct wsg_certs_json *post_json(struct acme *a, const char *what, const char *url,
                                        const char *payload, int want1, int want2, struct wsg_https_res *r)
{
    if (post(a, what, url, payload, r) != 0)
        return NULL;
    if (r->status != want1 && r->status != want2) {
        char p[512];
        problem_text(r, p, sizeof(p));
        say_err(a, "%s refused: %s", what, p);
        wsg_https_res_free(r);
        return NULL;
    }
    struct wsg_certs_json *j = wsg_certs_json_parse(r->body, r->len);
    if (j == NULL || j->type != WSG_JSON_OBJECT) {
        say_err(a, "%s: the answer is not a JSON object", what);
        wsg_certs_json_free(j);
        wsg_https_res_free(r);
        return NULL;
    }
    return j;
}

/* Seconds to wait before asking again: Retry-After (delta-seconds, 1 to 10), else 1. */
static unsigned retry_after(const struct wsg_https_res *r)
{
    unsigned s;
    if (r->retry_after[0] != '\0' && wsg_certs_parse_uint(r->retry_after, 0, 86400, &s) == 0)
        return s < 1 ? 1 : s > 10 ? 10 : s;
    return 1;
}

/*
 * POST-as-GET url until its "status" is neither pending nor processing, at most --wait seconds.
 * @return the last object (the caller frees it), or NULL.
 */
static struct wsg_certs_json *poll_status(struct acme *a, const char *what, const char *url)
{
    time_t deadline = time(NULL) + a->o->wait_s;
    for (;;) {
        struct wsg_https_res r;
        struct wsg_certs_json *j = post_json(a, what, url, NULL, 200, 200, &r);
        if (j == NULL)
            return NULL;
        const char *st = wsg_certs_json_str(wsg_certs_json_get(j, "status"));
        unsigned wait = retry_after(&r);
        wsg_https_res_free(&r);
        if (st == NULL) {
            say_err(a, "%s: the answer has no status", what);
            wsg_certs_json_free(j);
            return NULL;
        }
        if (strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0)
            return j;
        wsg_certs_json_free(j);
        if (time(NULL) + (time_t)wait > deadline) {
            say_err(a, "%s: still %s after %d s (--wait)", what, st, a->o->wait_s);
            return NULL;
        }
        sleep(wait);
    }
}

/* ---- the gateway ---- */

static int gateway_push(struct acme *a, const char *path, const void *body, size_t len)
{
    struct wsg_certs_http res;
    char why[WSG_ERRLEN];
    if (wsg_certs_admin_send(a->o->admin, "PUT", path, body, len, a->o->timeout_ms, &res, why) != 0) {
        say_err(a, "pushing the challenge: %s", why);
        return -1;
    }
    int ok = res.status == 204 || res.status == 200;
    if (!ok) {
        char *nl = strchr(res.body, '\n');
        if (nl != NULL)
            *nl = '\0';
        say_err(a, "the gateway refused the challenge (PUT %s): HTTP %d %.200s%s", path, res.status, res.body,
                res.status == 404 ? " (a gateway without ACME challenge support?)" : "");
    } else if (a->npushed < ACME_MAX_AUTHZ) {
        snprintf(a->pushed[a->npushed++].path, sizeof(a->pushed[0].path), "%s", path);
    }
    wsg_certs_http_free(&res);
    return ok ? 0 : -1;
}

/* Takes a challenge back (every one when path is NULL). Failures are reported, not fatal. */
static void gateway_forget(struct acme *a, const char *path)
{
    for (size_t i = 0; i < a->npushed; i++) {
        if (path != NULL && strcmp(a->pushed[i].path, path) != 0)
            continue;
        struct wsg_certs_http res;
        char why[WSG_ERRLEN];
        if (wsg_certs_admin_send(a->o->admin, "DELETE", a->pushed[i].path, NULL, 0, a->o->timeout_ms, &res,
                                 why) != 0)
            say_err(a, "taking the challenge back (DELETE %s): %s", a->pushed[i].path, why);
        else
            wsg_certs_http_free(&res);
        a->pushed[i--] = a->pushed[--a->npushed];
    }
}

/* ---- certificates ---- */

static void mbed_say(struct acme *a, const char *what, int ret)
{
    char text[160];
    mbedtls_strerror(ret, text, sizeof(text));
    say_err(a, "%s: %s", what, text);
}

/*
 * The RFC 8737 challenge certificate for name: self-signed by a fresh key, subjectAltName the
 * name alone, the critical acmeIdentifier extension holding SHA-256(key authorization).
 * @return malloc'd PEM certificate followed by PEM key, or NULL.
 */
static char *alpn_challenge_pem(struct acme *a, const char *name, const char *key_auth)
{
    static const char acme_identifier_oid[] = MBEDTLS_OID_PKIX "\x01\x1f"; /* 1.3.6.1.5.5.7.1.31 */
    struct wsg_acme_key k;
    char why[WSG_ERRLEN], subject[300], from[16], to[16];
    unsigned char ext[2 + 32], serial[16], *pem = NULL;
    char *out = NULL;
    int ret = 0;
    const char *what = "key";
    mbedtls_x509write_cert crt;
    mbedtls_x509write_crt_init(&crt);
    if (wsg_acme_key_init(&k, why) != 0 || wsg_acme_key_generate(&k, why) != 0) {
        say_err(a, "challenge key: %s", why);
        goto out;
    }
    ext[0] = MBEDTLS_ASN1_OCTET_STRING;
    ext[1] = 32;
    mbedtls_sha256((const unsigned char *)key_auth, strlen(key_auth), ext + 2, 0);
    mbedtls_x509_san_list san = {
        .node = {.type = MBEDTLS_X509_SAN_DNS_NAME,
                 .san.unstructured_name = {.p = (unsigned char *)(uintptr_t)name, .len = strlen(name)}}};
    time_t now = time(NULL);
    snprintf(subject, sizeof(subject), "CN=%s", name);
    what = "validity";
    if (wsg_tls_utc_stamp(now - 86400, from) != 0 || wsg_tls_utc_stamp(now + 7 * 86400, to) != 0)
        goto out;
#define STEP(name_, call)                                                                                    \
    do {                                                                                                     \
        what = (name_);                                                                                      \
        if ((ret = (call)) != 0)                                                                             \
            goto mbed_fail;                                                                                  \
    } while (0)
    STEP("serial", mbedtls_ctr_drbg_random(&k.drbg, serial, sizeof(serial)));
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, &k.pk);
    mbedtls_x509write_crt_set_issuer_key(&crt, &k.pk);
    STEP("subject", mbedtls_x509write_crt_set_subject_name(&crt, subject));
    STEP("issuer", mbedtls_x509write_crt_set_issuer_name(&crt, subject));
    STEP("serial", mbedtls_x509write_crt_set_serial_raw(&crt, serial, sizeof(serial)));
    STEP("validity", mbedtls_x509write_crt_set_validity(&crt, from, to));
    STEP("subjectAltName", mbedtls_x509write_crt_set_subject_alternative_name(&crt, &san));
    STEP("acmeIdentifier",
         mbedtls_x509write_crt_set_extension(&crt, acme_identifier_oid, MBEDTLS_OID_SIZE(acme_identifier_oid),
                                             1, ext, sizeof(ext)));
    enum { PEM_CAP = 4096 };
    pem = malloc(2 * PEM_CAP);
    what = "PEM";
    if (pem == NULL)
        goto out;
    STEP("writing the certificate",
         mbedtls_x509write_crt_pem(&crt, pem, PEM_CAP, mbedtls_ctr_drbg_random, &k.drbg));
    if (wsg_acme_key_pem(&k, pem + PEM_CAP, PEM_CAP) != 0)
        goto out;
#undef STEP
    if (asprintf(&out, "%s%s", (char *)pem, (char *)pem + PEM_CAP) < 0)
        out = NULL;
    goto out;
mbed_fail:
    mbed_say(a, what, ret);
out:
    if (out == NULL && ret == 0)
        say_err(a, "challenge certificate for %s: %s failed", name, what);
    if (pem != NULL) {
        memset(pem, 0, 2 * PEM_CAP);
        free(pem);
    }
    mbedtls_x509write_crt_free(&crt);
    wsg_acme_key_free(&k);
    return out;
}

/* The CSR (DER, base64url) for every name, signed by the certificate's key. @return malloc'd or NULL. */
static char *csr_b64(struct acme *a, struct wsg_acme_key *k)
{
    mbedtls_x509write_csr csr;
    mbedtls_x509write_csr_init(&csr);
    mbedtls_x509_san_list *san = calloc(a->o->nnames, sizeof(*san));
    unsigned char *der = malloc(8192);
    char subject[300], *b = NULL;
    int ret = MBEDTLS_ERR_X509_ALLOC_FAILED;
    if (san == NULL || der == NULL)
        goto out;
    snprintf(subject, sizeof(subject), "CN=%s", a->o->names[0]);
    for (size_t i = 0; i < a->o->nnames; i++) {
        san[i].node.type = MBEDTLS_X509_SAN_DNS_NAME;
        san[i].node.san.unstructured_name.p = (unsigned char *)(uintptr_t)a->o->names[i];
        san[i].node.san.unstructured_name.len = strlen(a->o->names[i]);
        san[i].next = i + 1 < a->o->nnames ? &san[i + 1] : NULL;
    }
    mbedtls_x509write_csr_set_md_alg(&csr, MBEDTLS_MD_SHA256);
    mbedtls_x509write_csr_set_key(&csr, &k->pk);
    if ((ret = mbedtls_x509write_csr_set_subject_name(&csr, subject)) != 0 ||
        (ret = mbedtls_x509write_csr_set_subject_alternative_name(&csr, san)) != 0)
        goto out;
    ret = mbedtls_x509write_csr_der(&csr, der, 8192, mbedtls_ctr_drbg_random, &k->drbg);
    if (ret <= 0)
        goto out;
    /* mbedTLS writes at the end of the buffer */
    b = wsg_b64url(der + 8192 - ret, (size_t)ret);
    ret = 0;
out:
    if (ret != 0)
        mbed_say(a, "the CSR", ret);
    free(san);
    free(der);
    mbedtls_x509write_csr_free(&csr);
    return b;
}

/* ---- the steps ---- */

/* 1. @return 1 when every name is served with more than renew_days left, 0 otherwise (or unknown). */
static int still_fresh(struct acme *a)
{
    struct wsg_certs_http res;
    char why[WSG_ERRLEN];
    if (a->o->renew_days == 0)
        return 0;
    if (wsg_certs_admin_request(a->o->admin, "GET", "/certs", a->o->timeout_ms, &res, why) != 0) {
        say_err(a, "%s (renewing)", why);
        return 0;
    }
    struct wsg_certs_json *j = res.status == 200 ? wsg_certs_json_parse(res.body, res.len) : NULL;
    const struct wsg_certs_json *certs = wsg_certs_json_get(j, "certificates");
    double least = -1;
    size_t covered = 0;
    for (size_t n = 0; certs != NULL && certs->type == WSG_JSON_ARRAY && n < a->o->nnames; n++) {
        double best = -1;
        for (size_t i = 0; i < certs->n; i++) {
            const struct wsg_certs_json *names = wsg_certs_json_get(certs->kid[i], "names");
            double left = wsg_certs_json_num(wsg_certs_json_get(certs->kid[i], "seconds_left"), -1);
            for (size_t k = 0; names != NULL && names->type == WSG_JSON_ARRAY && k < names->n; k++) {
                const char *s = wsg_certs_json_str(names->kid[k]);
                if (s != NULL && strcasecmp(s, a->o->names[n]) == 0 && left > best)
                    best = left;
            }
        }
        if (best < 0)
            break;
        covered++;
        if (least < 0 || best < least)
            least = best;
    }
    wsg_certs_json_free(j);
    wsg_certs_http_free(&res);
    if (covered < a->o->nnames)
        return 0;
    if (least > (double)a->o->renew_days * 86400) {
        fprintf(a->out, "nothing to do: every name is served with %lld days left (--renew-days %u)\n",
                (long long)(least / 86400), a->o->renew_days);
        return 1;
    }
    fprintf(a->out, "renewing: %lld days left, within --renew-days %u\n", (long long)(least / 86400),
            a->o->renew_days);
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(16384 + 1);
    size_t n = buf != NULL ? fread(buf, 1, 16384, f) : 0;
    int more = buf != NULL && fgetc(f) != EOF;
    fclose(f);
    if (buf == NULL || more) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* 2. */
static int account_key(struct acme *a, char path[4200])
{
    char why[WSG_ERRLEN];
    if (a->o->account_key != NULL) {
        snprintf(path, 4200, "%s", a->o->account_key);
    } else {
        const char *slash = strrchr(a->o->dest_cert, '/');
        int dlen = slash != NULL ? (int)(slash - a->o->dest_cert) : 1;
        snprintf(path, 4200, "%.*s/acme-account.key", dlen, slash != NULL ? a->o->dest_cert : ".");
    }
    size_t len;
    char *pem = read_file(path, &len);
    if (pem != NULL) {
        int rc = wsg_acme_key_parse(&a->account, (unsigned char *)pem, len + 1, why);
        memset(pem, 0, len);
        free(pem);
        if (rc != 0)
            say_err(a, "%s: %s", path, why);
        return rc;
    }
    if (errno != ENOENT) {
        say_err(a, "%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char buf[1024];
    if (wsg_acme_key_generate(&a->account, why) != 0 ||
        wsg_acme_key_pem(&a->account, buf, sizeof(buf)) != 0 ||
        wsg_certs_write_atomic(path, buf, strlen((char *)buf), 0600, why) != 0) {
        say_err(a, "account key %s: %s", path, why);
        return -1;
    }
    memset(buf, 0, sizeof(buf));
    fprintf(a->out, "account key: made %s (mode 0600)\n", path);
    return 0;
}

/* 3. */
static int directory_and_account(struct acme *a)
{
    struct wsg_https_res r;
    char why[WSG_ERRLEN];
    if (wsg_https_request(&a->https, "GET", a->o->directory, NULL, NULL, &r, why) != 0) {
        say_err(a, "directory: %s", why);
        return -1;
    }
    struct wsg_certs_json *d = r.status == 200 ? wsg_certs_json_parse(r.body, r.len) : NULL;
    int ok = d != NULL &&
             copy_url(a->new_nonce, sizeof(a->new_nonce),
                      wsg_certs_json_str(wsg_certs_json_get(d, "newNonce"))) == 0 &&
             copy_url(a->new_account, sizeof(a->new_account),
                      wsg_certs_json_str(wsg_certs_json_get(d, "newAccount"))) == 0 &&
             copy_url(a->new_order, sizeof(a->new_order),
                      wsg_certs_json_str(wsg_certs_json_get(d, "newOrder"))) == 0;
    const struct wsg_certs_json *meta = wsg_certs_json_get(d, "meta");
    int eab = wsg_certs_json_bool(wsg_certs_json_get(meta, "externalAccountRequired"), 0);
    wsg_certs_json_free(d);
    if (!ok) {
        say_err(a, "directory %s: HTTP %d, not an ACME directory (newNonce, newAccount, newOrder)",
                a->o->directory, r.status);
        wsg_https_res_free(&r);
        return -1;
    }
    wsg_https_res_free(&r);
    if (eab) {
        say_err(a, "%s requires external account binding, which wsgate-certs does not support",
                a->o->directory);
        return -1;
    }

    char *contact = NULL, *q = NULL, *payload = NULL;
    if (asprintf(&contact, "mailto:%s", a->o->email) < 0 || (q = wsg_certs_json_quote(contact)) == NULL ||
        asprintf(&payload, "{\"termsOfServiceAgreed\":true,\"contact\":[%s]}", q) < 0)
        payload = NULL;
    free(contact);
    free(q);
    if (payload == NULL)
        return -1;
    struct wsg_certs_json *acct = post_json(a, "newAccount", a->new_account, payload, 200, 201, &r);
    free(payload);
    if (acct == NULL)
        return -1;
    const char *st = wsg_certs_json_str(wsg_certs_json_get(acct, "status"));
    int created = r.status == 201;
    ok = r.location[0] != '\0' && strlen(r.location) < sizeof(a->kid) &&
         (st == NULL || strcmp(st, "valid") == 0);
    if (ok)
        strcpy(a->kid, r.location);
    else
        say_err(a, "newAccount: account status %s, or no Location", st != NULL ? st : "(none)");
    wsg_certs_json_free(acct);
    wsg_https_res_free(&r);
    if (ok)
        fprintf(a->out, "account: %s (%s)\n", a->kid, created ? "created" : "existing");
    return ok ? 0 : -1;
}

/* 4. One authorization: answer its challenge through the gateway and wait for the verdict. */
static int authorize(struct acme *a, const char *url)
{
    struct wsg_https_res r;
    struct wsg_certs_json *z = post_json(a, "authorization", url, NULL, 200, 200, &r);
    if (z == NULL)
        return -1;
    wsg_https_res_free(&r);
    int rc = -1;
    const char *st = wsg_certs_json_str(wsg_certs_json_get(z, "status"));
    const struct wsg_certs_json *id = wsg_certs_json_get(z, "identifier");
    const char *name = wsg_certs_json_str(wsg_certs_json_get(id, "value"));
    const char *type = a->o->http01 ? "http-01" : "tls-alpn-01";
    const struct wsg_certs_json *chs = wsg_certs_json_get(z, "challenges"), *ch = NULL;
    char path[300], chal_url[1024];
    if (st != NULL && strcmp(st, "valid") == 0) {
        fprintf(a->out, "authorization: %s already valid\n", name != NULL ? name : url);
        rc = 0;
        goto out;
    }
    if (st == NULL || strcmp(st, "pending") != 0 || name == NULL) {
        say_err(a, "authorization %s: status %s", url, st != NULL ? st : "(none)");
        goto out;
    }
    for (size_t i = 0; chs != NULL && chs->type == WSG_JSON_ARRAY && i < chs->n && ch == NULL; i++) {
        const char *t = wsg_certs_json_str(wsg_certs_json_get(chs->kid[i], "type"));
        if (t != NULL && strcmp(t, type) == 0)
            ch = chs->kid[i];
    }
    const char *token = wsg_certs_json_str(wsg_certs_json_get(ch, "token"));
    if (ch == NULL || token == NULL ||
        copy_url(chal_url, sizeof(chal_url), wsg_certs_json_str(wsg_certs_json_get(ch, "url"))) != 0) {
        say_err(a, "authorization for %s offers no usable %s challenge", name, type);
        goto out;
    }
    size_t tlen = strlen(token);
    if (tlen > 128 || !wsg_b64url_chars(token, tlen)) {
        say_err(a, "authorization for %s: the challenge token is not base64url (RFC 8555 section 8.1)", name);
        goto out;
    }
    char key_auth[256];
    snprintf(key_auth, sizeof(key_auth), "%s.%s", token, a->account.thumbprint);
    if (a->o->http01) {
        snprintf(path, sizeof(path), "/acme/http-01/%s", token);
        if (gateway_push(a, path, key_auth, strlen(key_auth)) != 0)
            goto out;
    } else {
        if (strlen(name) > 253 ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") !=
                strlen(name)) {
            say_err(a, "authorization: %.100s is not a host name", name);
            goto out;
        }
        snprintf(path, sizeof(path), "/acme/tls-alpn-01/%s", name);
        char *pem = alpn_challenge_pem(a, name, key_auth);
        if (pem == NULL)
            goto out;
        int pushed = gateway_push(a, path, pem, strlen(pem));
        memset(pem, 0, strlen(pem));
        free(pem);
        if (pushed != 0)
            goto out;
    }
    fprintf(a->out, "challenge: %s %s pushed to the gateway\n", type, name);
    struct wsg_certs_json *c = post_json(a, "challenge", chal_url, "{}", 200, 200, &r);
    if (c == NULL)
        goto forget;
    wsg_certs_json_free(c);
    wsg_https_res_free(&r);
    struct wsg_certs_json *done = poll_status(a, "authorization", url);
    if (done == NULL)
        goto forget;
    st = wsg_certs_json_str(wsg_certs_json_get(done, "status"));
    if (st != NULL && strcmp(st, "valid") == 0) {
        fprintf(a->out, "authorization: %s valid\n", name);
        rc = 0;
    } else {
        /* the failed challenge carries the reason (RFC 8555 section 7.1.5) */
        const struct wsg_certs_json *cs = wsg_certs_json_get(done, "challenges");
        const char *detail = NULL, *ptype = NULL;
        for (size_t i = 0; cs != NULL && cs->type == WSG_JSON_ARRAY && i < cs->n; i++) {
            const struct wsg_certs_json *e = wsg_certs_json_get(cs->kid[i], "error");
            if (e != NULL) {
                detail = wsg_certs_json_str(wsg_certs_json_get(e, "detail"));
                ptype = wsg_certs_json_str(wsg_certs_json_get(e, "type"));
            }
        }
        say_err(a, "authorization for %s: %s: %s%s%.300s", name, st != NULL ? st : "(no status)",
                ptype != NULL ? ptype : "", ptype != NULL ? ": " : "",
                detail != NULL ? detail : "(no detail)");
    }
    wsg_certs_json_free(done);
forget:
    gateway_forget(a, path);
out:
    wsg_certs_json_free(z);
    return rc;
}

/* 4-6. @return the PEM chain (malloc'd) and the certificate key in *certkey, or NULL. */
static char *order(struct acme *a, struct wsg_acme_key *certkey)
{
    struct wsg_https_res r;
    char *payload = NULL, *chain = NULL, *csr = NULL, order_url[1024], finalize[1024];
    size_t cap = 64, len = 0;
    payload = malloc(cap);
    if (payload == NULL)
        return NULL;
    len = (size_t)sprintf(payload, "{\"identifiers\":[");
    for (size_t i = 0; i < a->o->nnames; i++) {
        char *q = wsg_certs_json_quote(a->o->names[i]);
        char *more = q != NULL ? realloc(payload, len + strlen(q) + 40) : NULL;
        if (more == NULL) {
            free(q);
            free(payload);
            return NULL;
        }
        payload = more;
        len += (size_t)sprintf(payload + len, "%s{\"type\":\"dns\",\"value\":%s}", i > 0 ? "," : "", q);
        free(q);
    }
    strcpy(payload + len, "]}");
    struct wsg_certs_json *o = post_json(a, "newOrder", a->new_order, payload, 201, 201, &r);
    free(payload);
    if (o == NULL)
        return NULL;
    int ok = copy_url(order_url, sizeof(order_url), r.location) == 0 &&
             copy_url(finalize, sizeof(finalize), wsg_certs_json_str(wsg_certs_json_get(o, "finalize"))) == 0;
    wsg_https_res_free(&r);
    const struct wsg_certs_json *authz = wsg_certs_json_get(o, "authorizations");
    if (!ok || authz == NULL || authz->type != WSG_JSON_ARRAY || authz->n == 0) {
        say_err(a, "newOrder: the order has no Location, finalize URL or authorizations");
        goto out;
    }
    fprintf(a->out, "order: %s (%zu authorization%s)\n", order_url, authz->n, authz->n == 1 ? "" : "s");
    for (size_t i = 0; i < authz->n; i++) {
        char url[1024];
        if (copy_url(url, sizeof(url), wsg_certs_json_str(authz->kid[i])) != 0) {
            say_err(a, "newOrder: an authorization is not an https URL");
            goto out;
        }
        if (authorize(a, url) != 0)
            goto out;
    }

    char why[WSG_ERRLEN];
    if (wsg_acme_key_generate(certkey, why) != 0) {
        say_err(a, "certificate key: %s", why);
        goto out;
    }
    if ((csr = csr_b64(a, certkey)) == NULL || asprintf(&payload, "{\"csr\":\"%s\"}", csr) < 0)
        goto out;
    struct wsg_certs_json *f = post_json(a, "finalize", finalize, payload, 200, 200, &r);
    free(payload);
    if (f == NULL)
        goto out;
    wsg_certs_json_free(f);
    wsg_https_res_free(&r);
    struct wsg_certs_json *done = poll_status(a, "order", order_url);
    if (done == NULL)
        goto out;
    const char *st = wsg_certs_json_str(wsg_certs_json_get(done, "status"));
    char cert_url[1024];
    if (st == NULL || strcmp(st, "valid") != 0 ||
        copy_url(cert_url, sizeof(cert_url), wsg_certs_json_str(wsg_certs_json_get(done, "certificate"))) !=
            0) {
        say_err(a, "order %s: status %s, no certificate", order_url, st != NULL ? st : "(none)");
        wsg_certs_json_free(done);
        goto out;
    }
    wsg_certs_json_free(done);
    if (post(a, "certificate", cert_url, NULL, &r) != 0)
        goto out;
    if (r.status != 200 || strstr(r.body, "-----BEGIN CERTIFICATE-----") == NULL || strlen(r.body) != r.len) {
        char p[512];
        problem_text(&r, p, sizeof(p));
        say_err(a, "certificate download: not a PEM chain: %s", p);
        wsg_https_res_free(&r);
        goto out;
    }
    chain = r.body; /* taken over */
    r.body = NULL;
    fprintf(a->out, "certificate: downloaded %s\n", cert_url);
out:
    free(csr);
    wsg_certs_json_free(o);
    return chain;
}

/* 7. The pair beside the destination, then the rotate path. @return an exit code. */
static int install(struct acme *a, const char *chain, struct wsg_acme_key *certkey)
{
    char cpath[4200], kpath[4200], why[WSG_ERRLEN];
    unsigned char keypem[1024];
    int status = WSG_CERTS_BAD;
    snprintf(cpath, sizeof(cpath), "%s.acme-new", a->o->dest_cert);
    snprintf(kpath, sizeof(kpath), "%s.acme-new", a->o->dest_key);
    if (wsg_acme_key_pem(certkey, keypem, sizeof(keypem)) != 0 ||
        wsg_certs_write_atomic(kpath, keypem, strlen((char *)keypem), 0600, why) != 0 ||
        wsg_certs_write_atomic(cpath, chain, strlen(chain), 0600, why) != 0) {
        say_err(a, "writing the new pair: %s", why);
        goto out;
    }
    struct wsg_certs_rotate_opts ro = {.admin = a->o->admin,
                                       .connect = a->o->connect,
                                       .names = a->o->names,
                                       .nnames = a->o->nnames,
                                       .cert = cpath,
                                       .key = kpath,
                                       .dest_cert = a->o->dest_cert,
                                       .dest_key = a->o->dest_key,
                                       .warn_days = a->o->warn_days,
                                       .timeout_ms = a->o->timeout_ms};
    status = wsg_certs_rotate(&ro, a->out, a->err);
out:
    memset(keypem, 0, sizeof(keypem));
    unlink(cpath);
    unlink(kpath);
    return status;
}

static int acme_run(const struct acme_opts *o, FILE *out, FILE *err)
{
    struct acme *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return WSG_CERTS_BAD;
    a->o = o, a->out = out, a->err = err;
    struct wsg_acme_key certkey;
    int keys_live = 0, status = WSG_CERTS_BAD;
    char why[WSG_ERRLEN], path[4200];
    if (still_fresh(a)) {
        status = WSG_CERTS_OK;
        goto done;
    }
    /* both keys' contexts are set up (and so must be freed) whether or not seeding succeeds */
    int seeded = wsg_acme_key_init(&a->account, why) == 0;
    seeded &= wsg_acme_key_init(&certkey, why) == 0;
    keys_live = 1;
    if (!seeded) {
        say_err(a, "%s", why);
        goto done;
    }
    if (wsg_https_init(&a->https, o->ca, o->timeout_ms, why) != 0) {
        say_err(a, "%s", why);
        wsg_https_free(&a->https);
        goto done;
    }
    if (account_key(a, path) == 0 && directory_and_account(a) == 0) {
        char *chain = order(a, &certkey);
        gateway_forget(a, NULL); /* whatever is still held, however the order ended */
        if (chain != NULL)
            status = install(a, chain, &certkey);
        else
            say_err(a, "nothing installed; the served certificate is unchanged");
        free(chain);
    }
    wsg_https_free(&a->https);
done:
    if (keys_live) {
        wsg_acme_key_free(&certkey);
        wsg_acme_key_free(&a->account);
    }
    free(a);
    return status;
}

/* ---- argv ---- */

int wsg_certs_acme_main(int argc, char **argv, FILE *out, FILE *err)
{
    const char *names[WSG_CERTS_MAX_NAMES];
    struct acme_opts o = {.names = names,
                          .renew_days = 30,
                          .warn_days = WSG_CERTS_DEFAULT_WARN_DAYS,
                          .timeout_ms = 10000,
                          .wait_s = 120};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        unsigned u;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(acme_usage, out);
            return WSG_CERTS_OK;
        }
#define VALUE()                                                                                              \
    do {                                                                                                     \
        if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL)                                               \
            return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS, "%s needs a value", arg);               \
    } while (0)
        if (wsg_certs_opt_is(arg, "--directory")) {
            VALUE();
            char host[256], hp[300];
            const char *path;
            if (wsg_https_url(v, host, hp, &path) != 0)
                return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS, "--directory: not an https URL: %s",
                                             v);
            o.directory = v;
        } else if (wsg_certs_opt_is(arg, "--email")) {
            VALUE();
            const char *at = strchr(v, '@');
            if (at == NULL || at == v || at[1] == '\0' || strpbrk(v, " \t\r\n<>\"") != NULL)
                return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS, "--email: not an address: %s", v);
            o.email = v;
        } else if (wsg_certs_opt_is(arg, "--name")) {
            VALUE();
            const char *why;
            if (o.nnames == WSG_CERTS_MAX_NAMES)
                return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS, "at most %d names",
                                             WSG_CERTS_MAX_NAMES);
            if (wsg_certs_name_ok(v, &why) == 0)
                return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS, "--name %s: %s", v, why);
            names[o.nnames++] = v;
        } else if (wsg_certs_opt_is(arg, "--gateway")) {
            VALUE();
            o.admin = v;
        } else if (wsg_certs_opt_is(arg, "--connect")) {
            VALUE();
            o.connect = v;
        } else if (wsg_certs_opt_is(arg, "--dest-cert")) {
            VALUE();
            o.dest_cert = v;
        } else if (wsg_certs_opt_is(arg, "--dest-key")) {
            VALUE();
            o.dest_key = v;
        } else if (wsg_certs_opt_is(arg, "--ca")) {
            VALUE();
            o.ca = v;
        } else if (wsg_certs_opt_is(arg, "--account-key")) {
            VALUE();
            o.account_key = v;
        } else if (wsg_certs_opt_is(arg, "--challenge")) {
            VALUE();
            if (strcmp(v, "http-01") != 0 && strcmp(v, "tls-alpn-01") != 0)
                return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS,
                                             "--challenge: tls-alpn-01 or http-01, not %s", v);
            o.http01 = strcmp(v, "http-01") == 0;
        } else if (wsg_certs_opt_is(arg, "--renew-days") || wsg_certs_opt_is(arg, "--warn-days")) {
            VALUE();
            if (wsg_certs_parse_uint(v, 0, 3650, &u) != 0)
                return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS,
                                             "%s: a number of days (0 to 3650), not %s", arg, v);
            *(wsg_certs_opt_is(arg, "--renew-days") ? &o.renew_days : &o.warn_days) = u;
        } else if (wsg_certs_opt_is(arg, "--timeout") || wsg_certs_opt_is(arg, "--wait")) {
            VALUE();
            if (wsg_certs_parse_uint(v, 1, 3600, &u) != 0)
                return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS, "%s: seconds (1 to 3600), not %s",
                                             arg, v);
            if (wsg_certs_opt_is(arg, "--timeout"))
                o.timeout_ms = (int)u * 1000;
            else
                o.wait_s = (int)u;
        } else {
            return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS, "unknown argument %s", arg);
        }
#undef VALUE
    }
    const char *missing = o.directory == NULL   ? "--directory"
                          : o.email == NULL     ? "--email"
                          : o.nnames == 0       ? "--name"
                          : o.admin == NULL     ? "--gateway"
                          : o.connect == NULL   ? "--connect"
                          : o.dest_cert == NULL ? "--dest-cert"
                          : o.dest_key == NULL  ? "--dest-key"
                                                : NULL;
    if (missing != NULL)
        return wsg_certs_usage_error(err, "acme", ACME_SYNOPSIS, "%s is required", missing);
    for (size_t i = 0; i < o.nnames; i++)
        if (strchr(names[i], '*') != NULL || strspn(names[i], "0123456789.:") == strlen(names[i]))
            return wsg_certs_usage_error(
                err, "acme", ACME_SYNOPSIS,
                "--name %s: only DNS names (no wildcards: they need dns-01; no addresses)", names[i]);
    return acme_run(&o, out, err);
}
