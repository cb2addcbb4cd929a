/*
 * json.c - just enough JSON (RFC 8259) for wsgate-certs to read the admin endpoint's answers:
 * a recursive-descent parser into a small tree. Depth-limited; numbers as doubles; \uXXXX escapes
 * (with surrogate pairs) become UTF-8.
 */
#include "certs/certs.h"

#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 32

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
            *o++ = *p++;
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
            if (cp >= 0xd800 && cp < 0xdc00 && ps->end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
                hex4(p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
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

static int push(struct wsg_certs_json *j, char *key, struct wsg_certs_json *kid)
{
    struct wsg_certs_json **k = realloc(j->kid, (j->n + 1) * sizeof(*k));
    if (k == NULL)
        return -1;
    j->kid = k;
    if (j->type == WSG_JSON_OBJECT) {
        char **keys = realloc(j->key, (j->n + 1) * sizeof(*keys));
        if (keys == NULL)
            return -1;
        j->key = keys;
        j->key[j->n] = key;
    }
    j->kid[j->n++] = kid;
    return 0;
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
            return j;
        }
        goto bad;
    }
bad:
    wsg_certs_json_free(j);
    return NULL;
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
        char num[64];
        size_t n = 0;
        while (ps->p + n < ps->end && n < sizeof(num) - 1 && strchr("+-.eE0123456789", ps->p[n]) != NULL)
            n++;
        memcpy(num, ps->p, n);
        num[n] = '\0';
        char *stop;
        j->type = WSG_JSON_NUMBER;
        j->number = strtod(num, &stop);
        if (stop != num + n)
            goto bad;
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
