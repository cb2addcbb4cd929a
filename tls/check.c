/*
 * check.c - loading and judging certificate/key pairs, in one place for the whole gateway:
 *  - the shared steps (declared in tls-int.h): parse a chain file, parse a key file, key match,
 *    validity, fingerprint, the names a leaf serves. The store (store.c) runs them when it builds
 *    a generation and stops at the first problem; wsg_tls_check_pair runs them all and collects
 *    every problem. Both speak the same sentences about the same files.
 *  - wsg_tls_check_pair: a pair checked without serving it, plus the details a person or a script
 *    wants (names, not-after, fingerprint) and the chain against a CA bundle. Used by
 *    wsgate-certs (check, rotate).
 *
 * The name rules are the gateway's SNI rules (store.c, sni_lookup) plus IP addresses: an exact
 * DNS name, or "*.example.com" covering exactly one extra leading label; IP addresses only match
 * IP address entries (RFC 6125 6.4.4: never a DNS name that looks like one).
 */
#include "tls/tls-int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509.h>
#include <psa/crypto.h>

__attribute__((format(printf, 2, 3))) static void problem(struct wsg_tls_check_report *r, const char *fmt,
                                                          ...)
{
    if (r->nproblems == WSG_TLS_CHECK_MAX_PROBLEMS) {
        /* Never drop one silently: the last line says there were more. */
        snprintf(r->problems[WSG_TLS_CHECK_MAX_PROBLEMS - 1], WSG_ERRLEN,
                 "more problems than can be listed; fix the ones above and check again");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->problems[r->nproblems++], WSG_ERRLEN, fmt, ap);
    va_end(ap);
}

static const char *mbed_why(int ret, char *buf, size_t len)
{
    mbedtls_strerror(ret, buf, len);
    return buf;
}

/* ---- the shared steps (tls-int.h) ---- */

__attribute__((format(printf, 2, 3))) static int fail(char err[WSG_ERRLEN], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, WSG_ERRLEN, fmt, ap);
    va_end(ap);
    return -1;
}

/* A file mbedTLS could not open: say why the way the system does ("No such file or directory"). */
static int unreadable(const char *path, char err[WSG_ERRLEN])
{
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        fclose(f);
        return 0;
    }
    fail(err, "%s: cannot read: %s", path, strerror(errno));
    return 1;
}

int wsg_tls_load_chain(mbedtls_x509_crt *chain, const char *path, char err[WSG_ERRLEN])
{
    char why[200];
    int ret = mbedtls_x509_crt_parse_file(chain, path);
    if (ret == MBEDTLS_ERR_PK_FILE_IO_ERROR && unreadable(path, err))
        return -1;
    if (ret < 0)
        return fail(err, "%s: cannot parse certificate: %s", path, mbed_why(ret, why, sizeof(why)));
    if (ret > 0)
        return fail(err, "%s: cannot parse certificate: %d of the PEM blocks are not certificates", path,
                    ret);
    if (chain->raw.p == NULL)
        return fail(err, "%s: cannot parse certificate: no certificate in it", path);
    return 0;
}

int wsg_tls_load_key(mbedtls_pk_context *key, const char *path, mbedtls_ctr_drbg_context *drbg,
                     char err[WSG_ERRLEN])
{
    char why[200];
    int ret = mbedtls_pk_parse_keyfile(key, path, NULL, mbedtls_ctr_drbg_random, drbg);
    if (ret == MBEDTLS_ERR_PK_FILE_IO_ERROR && unreadable(path, err))
        return -1;
    if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED)
        return fail(err, "%s: private key is encrypted; wsgate needs it unencrypted", path);
    if (ret != 0)
        return fail(err, "%s: cannot parse private key: %s", path, mbed_why(ret, why, sizeof(why)));
    return 0;
}

int wsg_tls_key_matches(const mbedtls_x509_crt *leaf, const mbedtls_pk_context *key,
                        mbedtls_ctr_drbg_context *drbg, const char *cert_name, const char *key_name,
                        char err[WSG_ERRLEN])
{
    if (mbedtls_pk_check_pair(&leaf->pk, key, mbedtls_ctr_drbg_random, drbg) != 0)
        return fail(err, "%s: private key does not match %s", key_name, cert_name);
    return 0;
}

time_t wsg_tls_x509_epoch(const mbedtls_x509_time *t)
{
    struct tm tm = {
        .tm_year = t->year - 1900,
        .tm_mon = t->mon - 1,
        .tm_mday = t->day,
        .tm_hour = t->hour,
        .tm_min = t->min,
        .tm_sec = t->sec,
    };
    return timegm(&tm);
}

int wsg_tls_cert_validity(const mbedtls_x509_crt *c, int depth, const char *cert_name, time_t now,
                          char err[WSG_ERRLEN])
{
    char which[200] = "certificate", dn[160];
    if (depth != 0) {
        if (mbedtls_x509_dn_gets(dn, sizeof(dn), &c->subject) < 0)
            snprintf(dn, sizeof(dn), "?");
        snprintf(which, sizeof(which), "certificate #%d in the file (%s)", depth + 1, dn);
    }
    const mbedtls_x509_time *to = &c->valid_to, *from = &c->valid_from;
    if (wsg_tls_x509_epoch(to) < now)
        return fail(err, "%s: %s expired on %04d-%02d-%02d", cert_name, which, to->year, to->mon, to->day);
    if (wsg_tls_x509_epoch(from) > now)
        return fail(err, "%s: %s not valid before %04d-%02d-%02d", cert_name, which, from->year, from->mon,
                    from->day);
    return 0;
}

void wsg_tls_fingerprint_der(const unsigned char *der, size_t len, char out[96])
{
    unsigned char md[32];
    out[0] = '\0';
    if (mbedtls_sha256(der, len, md, 0) != 0)
        return;
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(out + 3 * i, 96 - 3 * i, "%02X%s", md[i], i + 1 < sizeof(md) ? ":" : "");
}

void wsg_tls_fingerprint(const mbedtls_x509_crt *crt, char out[96])
{
    wsg_tls_fingerprint_der(crt->raw.p, crt->raw.len, out);
}

int wsg_tls_leaf_names(const mbedtls_x509_crt *leaf, wsg_tls_name_fn fn, void *arg)
{
    int any_san = 0;
    for (const mbedtls_x509_sequence *s = &leaf->subject_alt_names; s != NULL; s = s->next) {
        if (s->buf.p == NULL)
            continue;
        mbedtls_x509_subject_alternative_name san;
        memset(&san, 0, sizeof(san));
        if (mbedtls_x509_parse_subject_alt_name(&s->buf, &san) != 0)
            continue; /* a type mbedTLS does not parse: neither a DNS name nor an address */
        int ret = 0;
        const mbedtls_x509_buf *v = &san.san.unstructured_name;
        if (san.type == MBEDTLS_X509_SAN_DNS_NAME && v->len != 0 && memchr(v->p, '\0', v->len) == NULL) {
            any_san = 1;
            ret = fn(arg, (const char *)v->p, v->len, 0, 0);
        } else if (san.type == MBEDTLS_X509_SAN_IP_ADDRESS && (v->len == 4 || v->len == 16)) {
            char text[INET6_ADDRSTRLEN];
            any_san = 1;
            if (inet_ntop(v->len == 4 ? AF_INET : AF_INET6, v->p, text, sizeof(text)) != NULL)
                ret = fn(arg, text, strlen(text), 1, 0);
        }
        mbedtls_x509_free_subject_alt_name(&san);
        if (ret != 0)
            return ret;
    }
    if (any_san)
        return 0;
    for (const mbedtls_x509_name *n = &leaf->subject; n != NULL; n = n->next)
        if (n->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0 && n->val.len != 0 &&
            memchr(n->val.p, '\0', n->val.len) == NULL)
            return fn(arg, (const char *)n->val.p, n->val.len, 0, 1);
    return 0;
}

/* ---- wsg_tls_check_pair ---- */

static int add_name(void *arg, const char *text, size_t len, int is_ip, int from_cn)
{
    struct wsg_tls_check_report *r = arg;
    char **names = realloc(r->names, (r->nnames + 1) * sizeof(*names));
    if (names == NULL)
        return -1;
    r->names = names;
    unsigned char *ip = realloc(r->name_is_ip, r->nnames + 1);
    if (ip == NULL)
        return -1;
    r->name_is_ip = ip;
    char *copy = strndup(text, len);
    if (copy == NULL)
        return -1;
    r->names[r->nnames] = copy;
    r->name_is_ip[r->nnames] = (unsigned char)(is_ip != 0);
    r->nnames++;
    if (from_cn)
        r->names_from_cn = 1;
    return 0;
}

static int dns_covers(const char *pattern, const char *host, size_t hlen)
{
    size_t plen = strlen(pattern);
    if (plen == hlen && strncasecmp(pattern, host, hlen) == 0)
        return 1;
    if (plen < 3 || pattern[0] != '*' || pattern[1] != '.')
        return 0;
    const char *dot = memchr(host, '.', hlen);
    if (dot == NULL || dot == host || host[0] == '*')
        return 0;
    size_t rest = hlen - (size_t)(dot - host); /* ".example.com" */
    return rest == plen - 1 && strncasecmp(pattern + 1, dot, rest) == 0;
}

int wsg_tls_check_covers(const struct wsg_tls_check_report *r, const char *host)
{
    unsigned char want[16], have[16];
    int fam = 0;
    if (inet_pton(AF_INET, host, want) == 1)
        fam = AF_INET;
    else if (inet_pton(AF_INET6, host, want) == 1)
        fam = AF_INET6;
    size_t hlen = strlen(host);
    if (fam == 0 && hlen > 1 && host[hlen - 1] == '.')
        hlen--; /* "example.com." is the same name */
    for (size_t i = 0; i < r->nnames; i++) {
        if (r->names_from_cn)
            break; /* no subjectAltName: clients match nothing (RFC 6125 6.4.4) */
        if (fam != 0) {
            if (r->name_is_ip[i] && inet_pton(fam, r->names[i], have) == 1 &&
                memcmp(want, have, fam == AF_INET ? 4 : 16) == 0)
                return 1;
        } else if (!r->name_is_ip[i] && dns_covers(r->names[i], host, hlen)) {
            return 1;
        }
    }
    return 0;
}

static void name_list(const struct wsg_tls_check_report *r, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->nnames && o < cap; i++) {
        int n = snprintf(out + o, cap - o, "%s%s", i != 0 ? ", " : "", r->names[i]);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    if (r->nnames == 0)
        snprintf(out, cap, "no names");
}

static void check_names(struct wsg_tls_check_report *r, const char *cert_path,
                        const struct wsg_tls_check_opts *o)
{
    char covers[160];
    name_list(r, covers, sizeof(covers));
    for (size_t i = 0; i < o->nnames; i++) {
        if (wsg_tls_check_covers(r, o->names[i]))
            continue;
        if (r->names_from_cn)
            problem(r,
                    "%s: name %s is not covered: the certificate has no subjectAltName and clients "
                    "ignore its CN (%s)",
                    cert_path, o->names[i], covers);
        else
            problem(r, "%s: name %s is not covered (covers %s)", cert_path, o->names[i], covers);
    }
}

static void check_validity(struct wsg_tls_check_report *r, const char *cert_path,
                           const mbedtls_x509_crt *chain, time_t now)
{
    char err[WSG_ERRLEN];
    int depth = 0;
    for (const mbedtls_x509_crt *c = chain; c != NULL && c->raw.p != NULL; c = c->next, depth++)
        if (wsg_tls_cert_validity(c, depth, cert_path, now, err) != 0)
            problem(r, "%s", err);
}

struct verify_ctx {
    const mbedtls_x509_crt *chain;
};

/* The file's own certificates had their validity judged at o->now already; say it once. */
static int on_verify(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    const struct verify_ctx *v = p;
    (void)depth;
    for (const mbedtls_x509_crt *c = v->chain; c != NULL; c = c->next)
        if (c == crt)
            *flags &= ~(uint32_t)(MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE);
    return 0;
}

static void check_chain(struct wsg_tls_check_report *r, const char *cert_path, mbedtls_x509_crt *chain,
                        const char *ca_path)
{
    char why[200];
    mbedtls_x509_crt ca;
    mbedtls_x509_crt_init(&ca);
    char err[WSG_ERRLEN];
    int ret = mbedtls_x509_crt_parse_file(&ca, ca_path);
    if (ret == MBEDTLS_ERR_PK_FILE_IO_ERROR && unreadable(ca_path, err)) {
        problem(r, "%s", err);
        goto out;
    }
    if (ret < 0 || ca.raw.p == NULL) {
        problem(r, "%s: cannot parse CA bundle: %s", ca_path,
                ret < 0 ? mbed_why(ret, why, sizeof(why)) : "no certificate in it");
        goto out;
    }
    struct verify_ctx v = {chain};
    uint32_t flags = 0;
    ret = mbedtls_x509_crt_verify(chain, &ca, NULL, NULL, &flags, on_verify, &v);
    if (ret == 0)
        goto out;
    if (flags == 0) {
        problem(r, "%s: chain does not verify against %s: %s", cert_path, ca_path,
                mbed_why(ret, why, sizeof(why)));
        goto out;
    }
    /* mbedTLS writes one line per reason; make them one sentence. */
    char info[512], joined[512];
    size_t o = 0;
    joined[0] = '\0';
    if (mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags) <= 0)
        snprintf(info, sizeof(info), "verification flags 0x%x", (unsigned)flags);
    char *save = NULL;
    for (char *line = strtok_r(info, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        int n = snprintf(joined + o, sizeof(joined) - o, "%s%s", o != 0 ? "; " : "", line);
        if (n < 0 || (size_t)n >= sizeof(joined) - o)
            break;
        o += (size_t)n;
    }
    if (joined[0] >= 'A' && joined[0] <= 'Z')
        joined[0] = (char)(joined[0] + 32);
    problem(r, "%s: chain does not verify against %s: %s", cert_path, ca_path, joined);
out:
    mbedtls_x509_crt_free(&ca);
}

int wsg_tls_check_pair(const struct wsg_tls_pair *p, const struct wsg_tls_check_opts *o,
                       struct wsg_tls_check_report *r)
{
    static const unsigned char pers[] = "wsgate check";
    static const struct wsg_tls_check_opts none = {0};
    char why[200];
    int ret;
    memset(r, 0, sizeof(*r));
    if (o == NULL)
        o = &none;
    time_t now = o->now != 0 ? o->now : time(NULL);
    if (p->cert_path == NULL || p->key_path == NULL) {
        problem(r, "certificate pair without %s path", p->cert_path == NULL ? "a certificate" : "a key");
        return -1;
    }
    psa_status_t ps = psa_crypto_init();
    if (ps != PSA_SUCCESS) {
        problem(r, "PSA crypto initialisation failed (%d)", (int)ps);
        return -1;
    }
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_x509_crt_init(&chain);
    mbedtls_pk_init(&key);
    ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, pers, sizeof(pers) - 1);
    if (ret != 0) {
        problem(r, "cannot seed the random generator: %s", mbed_why(ret, why, sizeof(why)));
        goto out;
    }

    /* The same steps and sentences as the store (store.c, load_files), without stopping. */
    char err[WSG_ERRLEN];
    if (wsg_tls_load_chain(&chain, p->cert_path, err) != 0)
        problem(r, "%s", err);
    r->loaded = chain.raw.p != NULL; /* some PEM blocks may have parsed: still worth describing */
    int key_ok = wsg_tls_load_key(&key, p->key_path, &drbg, err) == 0;
    if (!key_ok)
        problem(r, "%s", err);
    if (!r->loaded)
        goto out;
    r->not_before = wsg_tls_x509_epoch(&chain.valid_from);
    r->not_after = wsg_tls_x509_epoch(&chain.valid_to);
    if (mbedtls_x509_dn_gets(r->subject, sizeof(r->subject), &chain.subject) < 0)
        r->subject[0] = '\0';
    wsg_tls_fingerprint(&chain, r->sha256);
    if (wsg_tls_leaf_names(&chain, add_name, r) != 0) {
        problem(r, "%s: out of memory reading the names", p->cert_path);
        goto out;
    }
    if (key_ok && wsg_tls_key_matches(&chain, &key, &drbg, p->cert_path, p->key_path, err) != 0)
        problem(r, "%s", err);
    check_validity(r, p->cert_path, &chain, now);
    check_names(r, p->cert_path, o);
    if (o->ca_path != NULL)
        check_chain(r, p->cert_path, &chain, o->ca_path);
out:
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&chain);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return r->nproblems == 0 ? 0 : -1;
}

void wsg_tls_check_report_free(struct wsg_tls_check_report *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nnames; i++)
        free(r->names[i]);
    free(r->names);
    free(r->name_is_ip);
    r->names = NULL;
    r->name_is_ip = NULL;
    r->nnames = 0;
}
