/*
 * json.c - a strict JSON (RFC 8259) reader for wsgate-certs: the admin endpoint's answers and an
 * ACME server's (RFC 8555), which come from the network and are read as hostile. A recursive-descent
 * parser into a small tree. Strict: the number grammar exactly (no leading zeros, no "1.", no "+1",
 * finite values only), strings valid UTF-8 (no overlong forms, no encoded surrogates, nothing above
 * U+10FFFF), \uXXXX escapes (surrogate pairs) become UTF-8 but \u0000 and lone surrogates are
 * refused (the tree's strings are NUL-terminated: an embedded NUL would cut a value short), no
 * duplicate member names (two readers could pick different ones), depth at most JSON_MAX_DEPTH,
 * nothing but whitespace around the one value (no byte order mark).
 */
#include "certs/certs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 32
#define JSON_MAX_NUMBER 64 /* characters of one number: more is not a value anyone sends */

struct parser {
    const char *p, *end;
    int depth;
};

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * The length of the well-formed UTF-8 sequence at p (RFC 3629 section 4), 0 when ill-formed or cut
 * short.
 */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* At the opening quote. The decoded string is never longer than the encoded one. */
static char *parse_string(struct parser *ps)
{
    const char *p = ps->p + 1;
    char *out = malloc((size_t)(ps->end - p) + 1), *o = out;
    if (out == NULL)
        return NULL;
    while (p < ps->end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            goto bad;
        if (c != '\\') {
            size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)ps->end);
            if (n == 0)
                goto bad;
            memcpy(o, p, n);
            o += n, p += n;
            continue;
        }
        if (++p >= ps->end)
            goto bad;
        switch (*p) {
        case '"':
        case '\\':
        case '/':
            *o++ = *p++;
            break;
        case 'b':
            *o++ = '\b', p++;
            break;
        case 'f':
            *o++ = '\f', p++;
            break;
        case 'n':
            *o++ = '\n', p++;
            break;
        case 'r':
            *o++ = '\r', p++;
            break;
        case 't':
            *o++ = '\t', p++;
            break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - p < 5 || hex4(p + 1, &cp) != 0)
                goto bad;
            p += 5;
            if (cp == 0 || (cp >= 0xdc00 && cp < 0xe000))
                goto bad; /* NUL, or a low surrogate alone */
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (ps->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 || lo < 0xdc00 ||
                    lo >= 0xe000)
                    goto bad; /* a high surrogate not followed by a low one */
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            o += utf8(cp, o);
            break;
        }
        default:
            goto bad;
        }
    }
    if (p >= ps->end)
        goto bad;
    *o = '\0';
    ps->p = p + 1;
    return out;
bad:
    free(out);
    return NULL;
}

static struct wsg_certs_json *parse_value(struct parser *ps);

/* Appends a member; the arrays grow by doubling, so hostile input with many members stays linear. */
static int push(struct wsg_certs_json *j, char *key, struct wsg_certs_json *kid)
{
    if (j->n == j->cap) {
        size_t cap = j->cap == 0 ? 4 : j->cap * 2;
        struct wsg_certs_json **k = realloc(j->kid, cap * sizeof(*k));
        if (k == NULL)
            return -1;
        j->kid = k;
        if (j->type == WSG_JSON_OBJECT) {
            char **keys = realloc(j->key, cap * sizeof(*keys));
            if (keys == NULL)
                return -1;
            j->key = keys;
        }
        j->cap = cap;
    }
    if (j->type == WSG_JSON_OBJECT)
        j->key[j->n] = key;
    j->kid[j->n++] = kid;
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* @return 1 when two members of the object share a name (sorted copy: n log n, not n squared). */
static int has_duplicate_key(const struct wsg_certs_json *j)
{
    if (j->n < 2)
        return 0;
    char **keys = malloc(j->n * sizeof(*keys));
    if (keys == NULL)
        return 1;
    memcpy(keys, j->key, j->n * sizeof(*keys));
    qsort(keys, j->n, sizeof(*keys), key_cmp);
    int dup = 0;
    for (size_t i = 1; i < j->n && !dup; i++)
        dup = strcmp(keys[i - 1], keys[i]) == 0;
    free(keys);
    return dup;
}

static struct wsg_certs_json *parse_container(struct parser *ps, struct wsg_certs_json *j)
{
    char close = j->type == WSG_JSON_ARRAY ? ']' : '}';
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return j;
    }
    for (;;) {
        char *key = NULL;
        skip_ws(ps);
        if (j->type == WSG_JSON_OBJECT) {
            if (ps->p >= ps->end || *ps->p != '"' || (key = parse_string(ps)) == NULL)
                goto bad;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(key);
                goto bad;
            }
            ps->p++;
        }
        struct wsg_certs_json *kid = parse_value(ps);
        if (kid == NULL || push(j, key, kid) != 0) {
            free(key);
            wsg_certs_json_free(kid);
            goto bad;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            if (j->type == WSG_JSON_OBJECT && has_duplicate_key(j))
                goto bad;
            return j;
        }
        goto bad;
    }
bad:
    wsg_certs_json_free(j);
    return NULL;
}

static size_t digits(const char *p, const char *end)
{
    size_t n = 0;
    while (p + n < end && p[n] >= '0' && p[n] <= '9')
        n++;
    return n;
}

/* The length of the number at p by RFC 8259's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
 * 0 when it does not match (01, 1., .5, +1, -, 1e). */
static size_t number_len(const char *s, const char *end)
{
    const char *p = s;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        p += digits(p, end);
    else
        return 0;
    if (p < end && *p == '.') {
        size_t d = digits(p + 1, end);
        if (d == 0)
            return 0;
        p += 1 + d;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        size_t d = digits(p, end);
        if (d == 0)
            return 0;
        p += d;
    }
    /* "01": the grammar ends after the 0, and what follows is not a separator either */
    if (p < end && *p >= '0' && *p <= '9')
        return 0;
    return (size_t)(p - s);
}

static struct wsg_certs_json *parse_value(struct parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end || ps->depth >= JSON_MAX_DEPTH)
        return NULL;
    struct wsg_certs_json *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    char c = *ps->p;
    size_t left = (size_t)(ps->end - ps->p);
    if (c == '{' || c == '[') {
        j->type = c == '{' ? WSG_JSON_OBJECT : WSG_JSON_ARRAY;
        ps->depth++;
        j = parse_container(ps, j);
        ps->depth--;
        return j;
    }
    if (c == '"') {
        j->type = WSG_JSON_STRING;
        if ((j->string = parse_string(ps)) == NULL)
            goto bad;
        return j;
    }
    if (left >= 4 && memcmp(ps->p, "true", 4) == 0) {
        j->type = WSG_JSON_BOOL, j->boolean = 1, ps->p += 4;
        return j;
    }
    if (left >= 5 && memcmp(ps->p, "false", 5) == 0) {
        j->type = WSG_JSON_BOOL, ps->p += 5;
        return j;
    }
    if (left >= 4 && memcmp(ps->p, "null", 4) == 0) {
        j->type = WSG_JSON_NULL, ps->p += 4;
        return j;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        size_t n = number_len(ps->p, ps->end);
        char num[JSON_MAX_NUMBER + 1];
        if (n == 0 || n > JSON_MAX_NUMBER)
            goto bad;
        memcpy(num, ps->p, n);
        num[n] = '\0';
        char *stop;
        j->type = WSG_JSON_NUMBER;
        j->number = strtod(num, &stop);
        if (stop != num + n || !isfinite(j->number))
            goto bad; /* 1e400 */
        ps->p += n;
        return j;
    }
bad:
    free(j);
    return NULL;
}

struct wsg_certs_json *wsg_certs_json_parse(const char *s, size_t len)
{
    struct parser ps = {s, s + len, 0};
    struct wsg_certs_json *j = parse_value(&ps);
    skip_ws(&ps);
    if (j != NULL && ps.p != ps.end) {
        wsg_certs_json_free(j);
        return NULL;
    }
    return j;
}

void wsg_certs_json_free(struct wsg_certs_json *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->n; i++) {
        wsg_certs_json_free(j->kid[i]);
        if (j->key != NULL)
            free(j->key[i]);
    }
    free(j->kid);
    free(j->key);
    free(j->string);
    free(j);
}

const struct wsg_certs_json *wsg_certs_json_get(const struct wsg_certs_json *j, const char *key)
{
    if (j == NULL || j->type != WSG_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < j->n; i++)
        if (strcmp(j->key[i], key) == 0)
            return j->kid[i];
    return NULL;
}

const char *wsg_certs_json_str(const struct wsg_certs_json *j)
{
    return j != NULL && j->type == WSG_JSON_STRING ? j->string : NULL;
}

double wsg_certs_json_num(const struct wsg_certs_json *j, double dflt)
{
    return j != NULL && j->type == WSG_JSON_NUMBER ? j->number : dflt;
}

int wsg_certs_json_bool(const struct wsg_certs_json *j, int dflt)
{
    return j != NULL && j->type == WSG_JSON_BOOL ? j->boolean : dflt;
}

char *wsg_certs_json_quote(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len * 6 + 3), *o = out; /* \u00XX at worst */
    if (out == NULL)
        return NULL;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p < 0x20) {
            o += sprintf(o, "\\u%04x", *p);
        } else {
            *o++ = (char)*p;
        }
    }
    *o++ = '"';
    *o = '\0';
    return out;
}
