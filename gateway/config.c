/*
 * config.c - the settings table and everything derived from it (see config.h).
 *
 * One row per setting (Redis's config table, nginx's FILE:LINE errors). The defaults, the file
 * parser, the command-line overrides, `--help` and the README reference all read this table;
 * adding a setting is adding a row (and its field in struct wsg_cfg).
 *
 * wsg_cfg_set() is stateless: scalars are overwritten, repeatable settings append (their
 * defaults are empty lists). The loaders add the source rules: a scalar given twice in one file
 * is an error, and the first --NAME of a repeatable setting on the command line replaces the
 * list the file built.
 */
#include "gateway/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LINE 4096
#define K 1024.0
#define M (1024.0 * 1024.0)
#define G (1024.0 * 1024.0 * 1024.0)

enum type {
    T_SIZE,     /* uint64_t or uint32_t (by field size): "512", "64k", "1m", "1g" */
    T_DURATION, /* double seconds: "30", "500ms", "10s", "2m", "1h", "1.5s" */
    T_UINT,     /* unsigned */
    T_STRING,   /* char[] */
    T_LISTEN,   /* repeatable "host:port", "[v6]:port", ":port" */
    T_CERT,     /* repeatable path */
    T_KEY,      /* repeatable path, pairs with the cert of the same rank */
    T_UPSTREAM, /* repeatable "host:port [weight=N]" */
};

struct setting {
    const char *name;
    enum type type;
    double min, max;     /* bounds for numbers (bytes, seconds or units) */
    const char *def;     /* default as text, parsed like a file value; NULL: empty list */
    size_t off, size;    /* where in struct wsg_cfg, and the field's size */
    const char *choices; /* space-separated allowed values, or NULL */
    const char *help;
};

#define FIELD(f) offsetof(struct wsg_cfg, f), sizeof(((struct wsg_cfg *)0)->f)

/* clang-format off */
static const struct setting settings[] = {
    {"listen", T_LISTEN, 0, 0, NULL, FIELD(listen), NULL,
     "address to accept TLS on: HOST:PORT, [IPV6]:PORT or :PORT (repeatable; "
     "default 0.0.0.0:443 as root, else 0.0.0.0:8443)"},
    {"cert", T_CERT, 0, 0, NULL, FIELD(cert), NULL,
     "certificate chain file, PEM (repeatable; the Nth key belongs to the Nth cert)"},
    {"key", T_KEY, 0, 0, NULL, FIELD(key), NULL, "private key file, PEM (repeatable)"},
    {"upstream", T_UPSTREAM, 0, 0, NULL, FIELD(upstream), NULL,
     "backend HOST:PORT [weight=N] (repeatable, at least one; weight 1-100, default 1)"},
    {"workers", T_UINT, 0, 256, "0", FIELD(workers), NULL, "worker threads (0 = one per CPU)"},
    {"hash_prefix", T_UINT, 0, 24, "0", FIELD(hash_prefix), "0 24",
     "client address bits hashed to pick an upstream: 0 = whole address, 24 = IPv4 /24 "
     "(IPv6 /48) like nginx ip_hash"},
    {"max_fails", T_UINT, 0, 1000, "1", FIELD(max_fails), NULL,
     "failed connects within fail_timeout that mark an upstream down (0 = never)"},
    {"fail_timeout", T_DURATION, 0.1, 3600, "10s", FIELD(fail_timeout), NULL,
     "window for counting failures, and how long a failed upstream is skipped"},
    {"handshake_timeout", T_DURATION, 0.1, 3600, "10s", FIELD(handshake_timeout), NULL,
     "TLS handshake must finish within this"},
    {"header_timeout", T_DURATION, 0.1, 3600, "10s", FIELD(header_timeout), NULL,
     "whole request head must arrive within this (408)"},
    {"keepalive_timeout", T_DURATION, 0.1, 3600, "60s", FIELD(keepalive_timeout), NULL,
     "idle client connection between requests is closed after this"},
    {"connect_timeout", T_DURATION, 0.1, 600, "5s", FIELD(connect_timeout), NULL,
     "upstream connect must succeed within this (then the next upstream is tried)"},
    {"upstream_timeout", T_DURATION, 0.1, 86400, "60s", FIELD(upstream_timeout), NULL,
     "longest wait for upstream bytes during an HTTP exchange (504)"},
    {"ws_idle_timeout", T_DURATION, 1, 86400, "120s", FIELD(ws_idle_timeout), NULL,
     "WebSocket with no frame either way is closed (1001) after this; keep above the "
     "app's ping interval"},
    {"drain_timeout", T_DURATION, 0, 3600, "10s", FIELD(drain_timeout), NULL,
     "on SIGTERM, exit at most this long after closing the listeners"},
    {"max_frame", T_SIZE, 125, G, "16m", FIELD(max_frame), NULL,
     "largest WebSocket frame payload (1009 above)"},
    {"max_message", T_SIZE, 125, G, "16m", FIELD(max_message), NULL,
     "largest WebSocket message over all its fragments (1009 above)"},
    {"max_body", T_SIZE, 0, 1024 * G, "0", FIELD(max_body), NULL,
     "largest HTTP request body (413 above; 0 = unlimited)"},
    {"buffer_size", T_SIZE, 20 * K, 16 * M, "32k", FIELD(buffer_size), NULL,
     "capacity of each of the 5 per-connection buffers"},
    {"max_header_size", T_SIZE, K, M, "16k", FIELD(max_header_size), NULL,
     "largest request head (431 above)"},
    {"max_uri", T_SIZE, 64, M, "8k", FIELD(max_uri), NULL, "longest request-target (414 above)"},
    {"max_headers", T_UINT, 1, 100, "100", FIELD(max_headers), NULL,
     "most header fields in a request (431 above)"},
    {"ticket_lifetime", T_UINT, 0, 7 * 86400, "86400", FIELD(ticket_lifetime), NULL,
     "TLS session ticket lifetime in seconds (0 = no tickets)"},
    {"access_log", T_STRING, 0, 0, "stderr", FIELD(access_log), NULL,
     "where JSON access-log lines go: stderr, off or a file path"},
    {"log_level", T_STRING, 0, 0, "notice", FIELD(log_level), "error warn notice info debug",
     "least severe message logged"},
};
/* clang-format on */

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

/* ---- small text helpers ---- */

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* Copies s without its leading/trailing whitespace into out (size n); -1 if it does not fit. */
static int trim_copy(const char *s, char *out, size_t n)
{
    while (is_space(*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && is_space(s[len - 1]))
        len--;
    if (len >= n)
        return -1;
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

static const struct setting *find(const char *name)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[65];
    if (la > 64 || lb > 64)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The setting closest to name if it is within 2 edits, else NULL. */
static const char *suggest(const char *name)
{
    const char *best = NULL;
    size_t bestd = 3;
    for (size_t i = 0; i < NSETTINGS; i++) {
        size_t d = distance(name, settings[i].name);
        if (d < bestd) {
            bestd = d;
            best = settings[i].name;
        }
    }
    return best;
}

/* "FILE:LINE: NAME: " for a file, "--NAME: " for the command line (line 0). */
static void fail(char err[WSG_ERRLEN], const char *file, int line, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void fail(char err[WSG_ERRLEN], const char *file, int line, const char *name, const char *fmt, ...)
{
    int n;
    if (line > 0)
        n = snprintf(err, WSG_ERRLEN, "%s:%d: %s: ", file, line, name);
    else
        n = snprintf(err, WSG_ERRLEN, "--%s: ", name);
    if (n < 0 || n >= WSG_ERRLEN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, WSG_ERRLEN - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- value parsers ---- */

int wsg_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        p++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        p++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        p++;
        break;
    default:
        return -1;
    }
    if (*p != '\0' || (shift != 0 && v > (UINT64_MAX >> shift)))
        return -1;
    *out = v << shift;
    return 0;
}

int wsg_parse_duration(const char *s, double *out)
{
    const char *p = s;
    size_t ndig = 0;
    while (isdigit((unsigned char)*p)) {
        p++;
        ndig++;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            ndig++;
        }
    }
    if (ndig == 0 || ndig > 15 || !isdigit((unsigned char)s[0]))
        return -1;
    char num[32];
    memcpy(num, s, (size_t)(p - s));
    num[p - s] = '\0';
    double v = strtod(num, NULL);
    double unit;
    if (strcmp(p, "") == 0 || strcmp(p, "s") == 0)
        unit = 1;
    else if (strcmp(p, "ms") == 0)
        unit = 0.001;
    else if (strcmp(p, "m") == 0)
        unit = 60;
    else if (strcmp(p, "h") == 0)
        unit = 3600;
    else if (strcmp(p, "d") == 0)
        unit = 86400;
    else
        return -1;
    *out = v * unit;
    return 0;
}

static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    for (; isdigit((unsigned char)*s); s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (*s != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Renders a number of the row's type the way a user would write it ("16m", "10s", "256"). */
static void format_value(const struct setting *st, double v, char *out, size_t n)
{
    if (st->type == T_SIZE) {
        uint64_t b = (uint64_t)v;
        if (b != 0 && b % (1u << 30) == 0)
            snprintf(out, n, "%llug", (unsigned long long)(b >> 30));
        else if (b != 0 && b % (1u << 20) == 0)
            snprintf(out, n, "%llum", (unsigned long long)(b >> 20));
        else if (b != 0 && b % (1u << 10) == 0)
            snprintf(out, n, "%lluk", (unsigned long long)(b >> 10));
        else
            snprintf(out, n, "%llu", (unsigned long long)b);
    } else if (st->type == T_DURATION) {
        if (v != 0 && fmod(v, 3600) == 0)
            snprintf(out, n, "%.0fh", v / 3600);
        else if (v != 0 && fmod(v, 60) == 0)
            snprintf(out, n, "%.0fm", v / 60);
        else if (v >= 1 || v == 0)
            snprintf(out, n, "%gs", v);
        else
            snprintf(out, n, "%gms", v * 1000);
    } else {
        snprintf(out, n, "%.0f", v);
    }
}

static int in_choices(const char *choices, const char *v)
{
    size_t len = strlen(v);
    for (const char *p = choices; *p != '\0';) {
        size_t w = strcspn(p, " ");
        if (w == len && strncmp(p, v, len) == 0)
            return 1;
        p += w;
        while (*p == ' ')
            p++;
    }
    return 0;
}

/* HOST:PORT, [V6]:PORT, or (allow_empty_host) :PORT; no DNS. Returns a static reason or NULL. */
static const char *check_hostport(const char *v, int allow_empty_host)
{
    const char *colon;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        char host[64];
        if (close == NULL || close[1] != ':')
            return "is not an address (expected [IPV6]:PORT)";
        size_t hl = (size_t)(close - v - 1);
        struct in6_addr a6;
        if (hl == 0 || hl >= sizeof(host))
            return "is not an IPv6 address";
        memcpy(host, v + 1, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return "is not an IPv6 address";
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL)
            return "is not an address (expected HOST:PORT)";
        if (memchr(v, ':', (size_t)(colon - v)) != NULL)
            return "has an IPv6 address without brackets (write [ADDR]:PORT)";
        size_t hl = (size_t)(colon - v);
        if (hl == 0 && !allow_empty_host)
            return "has no host (expected HOST:PORT)";
        if (hl >= 254)
            return "has a host name that is too long";
        char host[256];
        memcpy(host, v, hl);
        host[hl] = '\0';
        int digits_dots = hl > 0, label = 0;
        for (size_t i = 0; i < hl; i++) {
            unsigned char ch = (unsigned char)host[i];
            if (!isdigit(ch) && ch != '.')
                digits_dots = 0;
            if (isalnum(ch) || ch == '_' || (ch == '-' && label > 0)) {
                label++;
            } else if (ch == '.' && label > 0) {
                label = 0;
            } else if (ch == '*' && hl == 1 && allow_empty_host) {
                label = 1;
            } else {
                return "is not an address (bad character in host)";
            }
        }
        if (hl > 0 && label == 0)
            return "is not an address (host ends with '.')";
        struct in_addr a4;
        if (digits_dots && inet_pton(AF_INET, host, &a4) != 1)
            return "is not an IPv4 address";
    }
    uint64_t port;
    if (parse_uint(colon + 1, &port) != 0 || port < 1 || port > 65535)
        return "has a bad port (1-65535)";
    return NULL;
}

/* The list behind a repeatable row: count, capacity, element pointer. */
static char *list_slot(struct wsg_cfg *c, const struct setting *st, unsigned **count, unsigned *cap,
                       size_t *elsize)
{
    switch (st->type) {
    case T_LISTEN:
        *count = &c->nlisten, *cap = WSG_CFG_MAX_LISTEN, *elsize = sizeof(c->listen[0]);
        break;
    case T_CERT:
        *count = &c->ncert, *cap = WSG_CFG_MAX_CERTS, *elsize = sizeof(c->cert[0]);
        break;
    case T_KEY:
        *count = &c->nkey, *cap = WSG_CFG_MAX_CERTS, *elsize = sizeof(c->key[0]);
        break;
    case T_UPSTREAM:
        *count = &c->nupstream, *cap = WSG_CFG_MAX_UPSTREAMS, *elsize = sizeof(c->upstream[0]);
        break;
    default:
        return NULL;
    }
    return (char *)c + st->off;
}

static int is_list(const struct setting *st)
{
    return st->type == T_LISTEN || st->type == T_CERT || st->type == T_KEY || st->type == T_UPSTREAM;
}

static void clear_list(struct wsg_cfg *c, const struct setting *st)
{
    unsigned *count, cap;
    size_t elsize;
    char *base = list_slot(c, st, &count, &cap, &elsize);
    memset(base, 0, st->size);
    *count = 0;
}

/* Strips one pair of surrounding double quotes (paths with spaces). */
static void unquote(char *v)
{
    size_t len = strlen(v);
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        memmove(v, v + 1, len - 2);
        v[len - 2] = '\0';
    }
}

static int set_list(struct wsg_cfg *c, const struct setting *st, char *v, const char *file, int line,
                    char err[WSG_ERRLEN])
{
    unsigned *count, cap;
    size_t elsize;
    char *base = list_slot(c, st, &count, &cap, &elsize);
    if (*count >= cap) {
        fail(err, file, line, st->name, "more than %u values", cap);
        return -1;
    }
    char *slot = base + (size_t)*count * elsize;
    if (st->type == T_CERT || st->type == T_KEY) {
        unquote(v);
        if (v[0] == '\0') {
            fail(err, file, line, st->name, "missing value");
            return -1;
        }
        if (strlen(v) >= elsize) {
            fail(err, file, line, st->name, "path is longer than %zu bytes", elsize - 1);
            return -1;
        }
        strcpy(slot, v);
    } else if (st->type == T_LISTEN) {
        const char *why = strlen(v) >= elsize ? "is too long" : check_hostport(v, 1);
        if (why != NULL) {
            fail(err, file, line, st->name, "\"%s\" %s", v, why);
            return -1;
        }
        for (unsigned i = 0; i < *count; i++)
            if (strcmp(base + (size_t)i * elsize, v) == 0) {
                fail(err, file, line, st->name, "\"%s\" is given twice", v);
                return -1;
            }
        strcpy(slot, v);
    } else { /* T_UPSTREAM: "host:port [weight=N]" */
        struct wsg_cfg_upstream *up = (struct wsg_cfg_upstream *)(void *)slot;
        char *rest = v + strcspn(v, " \t");
        if (*rest != '\0')
            *rest++ = '\0';
        while (is_space(*rest))
            rest++;
        const char *why = strlen(v) >= sizeof(up->addr) ? "is too long" : check_hostport(v, 0);
        if (why != NULL) {
            fail(err, file, line, st->name, "\"%s\" %s", v, why);
            return -1;
        }
        uint64_t weight = 1;
        while (*rest != '\0') {
            char *tok = rest;
            rest += strcspn(rest, " \t");
            if (*rest != '\0')
                *rest++ = '\0';
            while (is_space(*rest))
                rest++;
            if (strncmp(tok, "weight=", 7) != 0) {
                fail(err, file, line, st->name, "unexpected \"%s\" (expected weight=N)", tok);
                return -1;
            }
            if (parse_uint(tok + 7, &weight) != 0 || weight < 1 || weight > 100) {
                fail(err, file, line, st->name, "\"%s\" is not a weight (1-100)", tok);
                return -1;
            }
        }
        struct wsg_cfg_upstream *all = (struct wsg_cfg_upstream *)(void *)base;
        for (unsigned i = 0; i < *count; i++)
            if (strcmp(all[i].addr, v) == 0) {
                fail(err, file, line, st->name, "\"%s\" is given twice", v);
                return -1;
            }
        strcpy(up->addr, v);
        up->weight = (unsigned)weight;
    }
    (*count)++;
    return 0;
}

static int set_scalar(struct wsg_cfg *c, const struct setting *st, char *v, const char *file, int line,
                      char err[WSG_ERRLEN])
{
    char *field = (char *)c + st->off;
    char lim[32];
    double num;

    switch (st->type) {
    case T_STRING:
        unquote(v);
        if (v[0] == '\0') {
            fail(err, file, line, st->name, "missing value");
            return -1;
        }
        if (st->choices != NULL && !in_choices(st->choices, v)) {
            fail(err, file, line, st->name, "\"%s\" is not one of: %s", v, st->choices);
            return -1;
        }
        if (strlen(v) >= st->size) {
            fail(err, file, line, st->name, "value is longer than %zu bytes", st->size - 1);
            return -1;
        }
        strcpy(field, v);
        return 0;
    case T_SIZE: {
        uint64_t b;
        if (wsg_parse_size(v, &b) != 0) {
            fail(err, file, line, st->name, "\"%s\" is not a size (e.g. 64k, 1m)", v);
            return -1;
        }
        num = (double)b;
        break;
    }
    case T_DURATION:
        if (wsg_parse_duration(v, &num) != 0) {
            fail(err, file, line, st->name, "\"%s\" is not a duration (e.g. 500ms, 10s, 2m)", v);
            return -1;
        }
        break;
    case T_UINT: {
        uint64_t u;
        if (parse_uint(v, &u) != 0) {
            fail(err, file, line, st->name, "\"%s\" is not a number", v);
            return -1;
        }
        num = (double)u;
        break;
    }
    default:
        return -1;
    }

    if (st->choices != NULL) {
        char canon[32];
        format_value(st, num, canon, sizeof(canon));
        if (!in_choices(st->choices, canon)) {
            fail(err, file, line, st->name, "%s is not one of: %s", v, st->choices);
            return -1;
        }
    }
    if (num < st->min) {
        format_value(st, st->min, lim, sizeof(lim));
        fail(err, file, line, st->name, "%s is below the minimum %s", v, lim);
        return -1;
    }
    if (num > st->max) {
        format_value(st, st->max, lim, sizeof(lim));
        fail(err, file, line, st->name, "%s is above the maximum %s", v, lim);
        return -1;
    }
    if (st->type == T_DURATION) {
        *(double *)(void *)field = num;
    } else if (st->size == sizeof(uint64_t)) {
        *(uint64_t *)(void *)field = (uint64_t)num;
    } else {
        *(uint32_t *)(void *)field = (uint32_t)num;
    }
    return 0;
}

static int apply(struct wsg_cfg *c, const struct setting *st, const char *value, const char *file, int line,
                 char err[WSG_ERRLEN])
{
    char v[MAX_LINE + 1];
    if (value == NULL || trim_copy(value, v, sizeof(v)) != 0) {
        fail(err, file, line, st->name, value == NULL ? "missing value" : "value is too long");
        return -1;
    }
    if (v[0] == '\0') {
        fail(err, file, line, st->name, "missing value");
        return -1;
    }
    return is_list(st) ? set_list(c, st, v, file, line, err) : set_scalar(c, st, v, file, line, err);
}

/* ---- public API ---- */

void wsg_cfg_defaults(struct wsg_cfg *c)
{
    char err[WSG_ERRLEN];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].def == NULL)
            continue;
        int rc = apply(c, &settings[i], settings[i].def, "(defaults)", 1, err);
        if (rc != 0) { /* a broken table row: caught by the unit tests */
            fprintf(stderr, "wsgate: bad default: %s\n", err);
            abort();
        }
    }
}

static void unknown(char err[WSG_ERRLEN], const char *file, int line, const char *name)
{
    const char *near = suggest(name);
    const char *dash = line > 0 ? "" : "--";
    int n = line > 0 ? snprintf(err, WSG_ERRLEN, "%s:%d: unknown setting \"%s\"", file, line, name)
                     : snprintf(err, WSG_ERRLEN, "unknown option \"--%s\"", name);
    if (near != NULL && n > 0 && n < WSG_ERRLEN)
        snprintf(err + n, WSG_ERRLEN - (size_t)n, " (did you mean \"%s%s\"?)", dash, near);
}

int wsg_cfg_set(struct wsg_cfg *c, const char *name, const char *value, const char *file, int line,
                char err[WSG_ERRLEN])
{
    const struct setting *st = find(name);
    if (st == NULL) {
        unknown(err, file, line, name);
        return -1;
    }
    return apply(c, st, value, file, line, err);
}

int wsg_cfg_load_file(struct wsg_cfg *c, const char *path, char err[WSG_ERRLEN])
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, WSG_ERRLEN, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int first_line[NSETTINGS] = {0};
    char *buf = NULL;
    size_t bufcap = 0;
    ssize_t got;
    int line = 0, rc = 0;

    while ((got = getline(&buf, &bufcap, f)) >= 0) {
        line++;
        size_t len = (size_t)got;
        if (len > 0 && buf[len - 1] == '\n')
            len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
        buf[len] = '\0';
        if (len > MAX_LINE) {
            snprintf(err, WSG_ERRLEN, "%s:%d: line is longer than %d bytes", path, line, MAX_LINE);
            rc = -1;
            break;
        }
        if (strlen(buf) != len) {
            snprintf(err, WSG_ERRLEN, "%s:%d: line contains a NUL byte", path, line);
            rc = -1;
            break;
        }
        char *s = buf;
        if (line == 1 && (unsigned char)s[0] == 0xef && (unsigned char)s[1] == 0xbb &&
            (unsigned char)s[2] == 0xbf)
            s += 3; /* UTF-8 byte order mark */
        /* '#' at the start or after whitespace starts a comment */
        for (char *p = s; *p != '\0'; p++)
            if (*p == '#' && (p == s || is_space(p[-1]))) {
                *p = '\0';
                break;
            }
        while (is_space(*s))
            s++;
        len = strlen(s);
        while (len > 0 && is_space(s[len - 1]))
            len--;
        if (len > 0 && s[len - 1] == ';') { /* nginx habit */
            len--;
            while (len > 0 && is_space(s[len - 1]))
                len--;
        }
        s[len] = '\0';
        if (len == 0)
            continue;

        char *value = s + strcspn(s, " \t");
        if (*value != '\0')
            *value++ = '\0';
        const struct setting *st = find(s);
        if (st == NULL) {
            unknown(err, path, line, s);
            rc = -1;
            break;
        }
        size_t row = (size_t)(st - settings);
        if (!is_list(st) && first_line[row] != 0) {
            fail(err, path, line, st->name, "is duplicate (first set on line %d)", first_line[row]);
            rc = -1;
            break;
        }
        if (apply(c, st, value, path, line, err) != 0) {
            rc = -1;
            break;
        }
        first_line[row] = line;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, WSG_ERRLEN, "%s: cannot read: %s", path, strerror(errno));
        rc = -1;
    }
    free(buf);
    fclose(f);
    return rc;
}

int wsg_cfg_load_args(struct wsg_cfg *c, int argc, char **argv, char err[WSG_ERRLEN])
{
    int seen[NSETTINGS] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0) {
            i++; /* -c FILE: main's */
            continue;
        }
        if (strncmp(a, "-c", 2) == 0 || strcmp(a, "-t") == 0 || strcmp(a, "-h") == 0 ||
            strcmp(a, "--help") == 0)
            continue;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            snprintf(err, WSG_ERRLEN, "unexpected argument \"%.200s\" (settings are --NAME VALUE)", a);
            return -1;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq != NULL ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof(name)) {
            snprintf(err, WSG_ERRLEN, "unknown option \"%.200s\"", a);
            return -1;
        }
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        const struct setting *st = find(name);
        if (st == NULL) {
            unknown(err, "--", 0, name);
            return -1;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fail(err, "--", 0, st->name, "missing value");
            return -1;
        }
        size_t row = (size_t)(st - settings);
        if (is_list(st) && !seen[row])
            clear_list(c, st); /* the command line replaces the file's list */
        seen[row] = 1;
        if (apply(c, st, value, "--", 0, err) != 0)
            return -1;
    }
    return 0;
}

int wsg_cfg_finish(struct wsg_cfg *c, char err[WSG_ERRLEN])
{
    if (c->ncert != c->nkey) {
        snprintf(err, WSG_ERRLEN, "cert/key: %u certificate%s but %u key%s", c->ncert,
                 c->ncert == 1 ? "" : "s", c->nkey, c->nkey == 1 ? "" : "s");
        return -1;
    }
    if (c->nupstream == 0) {
        snprintf(err, WSG_ERRLEN, "no upstream configured: add `upstream HOST:PORT`");
        return -1;
    }
    /* The request head is parsed in one linear buffer and rewritten (plus the X-Forwarded-*
     * headers) into another of the same size. */
    if ((uint64_t)c->max_header_size + 2048 > c->buffer_size) {
        snprintf(err, WSG_ERRLEN,
                 "max_header_size: %u bytes does not fit buffer_size %u with 2k to spare for the "
                 "forwarding headers",
                 c->max_header_size, c->buffer_size);
        return -1;
    }
    if (c->nlisten == 0) {
        snprintf(c->listen[0], sizeof(c->listen[0]), "%s", geteuid() == 0 ? "0.0.0.0:443" : "0.0.0.0:8443");
        c->nlisten = 1;
    }
    return 0;
}

static const char *metavar(enum type t)
{
    switch (t) {
    case T_SIZE:
        return "SIZE";
    case T_DURATION:
        return "DURATION";
    case T_UINT:
        return "N";
    case T_STRING:
        return "VALUE";
    case T_LISTEN:
    case T_UPSTREAM:
        return "HOST:PORT";
    case T_CERT:
    case T_KEY:
        return "FILE";
    }
    return "VALUE";
}

static const char *type_name(enum type t)
{
    switch (t) {
    case T_SIZE:
        return "size";
    case T_DURATION:
        return "duration";
    case T_UINT:
        return "number";
    case T_STRING:
        return "string";
    case T_LISTEN:
        return "address, repeatable";
    case T_CERT:
    case T_KEY:
        return "path, repeatable";
    case T_UPSTREAM:
        return "upstream, repeatable";
    }
    return "?";
}

void wsg_cfg_help(FILE *out)
{
    fprintf(out,
            "usage: wsgate [-t] [-c FILE] [--NAME VALUE]...\n"
            "  -c FILE   read settings from FILE (one `NAME VALUE` per line)\n"
            "  -t        check the configuration and exit\n"
            "  -h        show this help\n"
            "settings (in the file as `NAME VALUE`, on the command line as --NAME VALUE or --NAME=VALUE;\n"
            "sizes take k/m/g, durations ms/s/m/h):\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *st = &settings[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", st->name, metavar(st->type));
        fprintf(out, "  %-30s %s", left, st->help);
        if (st->def != NULL)
            fprintf(out, " (default: %s)", st->def);
        fputc('\n', out);
    }
}

void wsg_cfg_markdown(FILE *out)
{
    fprintf(out, "| name | type | default | description |\n");
    fprintf(out, "|------|------|---------|-------------|\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *st = &settings[i];
        char bounds[96] = "";
        if (st->type == T_SIZE || st->type == T_DURATION || st->type == T_UINT) {
            char lo[32], hi[32];
            format_value(st, st->min, lo, sizeof(lo));
            format_value(st, st->max, hi, sizeof(hi));
            if (st->choices != NULL)
                snprintf(bounds, sizeof(bounds), " (one of: %s)", st->choices);
            else
                snprintf(bounds, sizeof(bounds), " (%s to %s)", lo, hi);
        } else if (st->choices != NULL) {
            snprintf(bounds, sizeof(bounds), " (one of: %s)", st->choices);
        }
        fprintf(out, "| `%s` | %s | %s%s%s | %s%s |\n", st->name, type_name(st->type), st->def ? "`" : "",
                st->def ? st->def : "", st->def ? "`" : "", st->help, bounds);
    }
}
