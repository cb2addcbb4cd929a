/*
 * status_json.c - libFuzzer target for the Prometheus-text-to-JSON conversion behind the admin
 * listener's /status.json (gateway/status.h).
 *
 * The whole input is the exposition text. Invariants: the output is one valid JSON value (checked
 * by the strict RFC 8259 reader below: no control byte unescaped, no bad escape, numbers by the
 * grammar, nothing after the value) ending in a newline; "samples" holds one object per line that
 * was not skipped, so samples + skipped equals the number of lines that are neither blank nor
 * comments; the returned count equals "skipped".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "gateway/status.h"

struct rd {
    const char *p, *end;
    unsigned depth;
    unsigned objects_at_depth3; /* sample objects: {"samples":[ {..} ]} */
};

static void ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

static int lit(struct rd *r, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, s, n) != 0)
        return 0;
    r->p += n;
    return 1;
}

static int hexd(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int str(struct rd *r)
{
    if (r->p >= r->end || *r->p != '"')
        return 0;
    r->p++;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            r->p++;
            if (r->p >= r->end)
                return 0;
            if (*r->p == 'u') {
                if (r->end - r->p < 5 || !hexd(r->p[1]) || !hexd(r->p[2]) || !hexd(r->p[3]) || !hexd(r->p[4]))
                    return 0;
                r->p += 4;
            } else if (!strchr("\"\\/bfnrt", *r->p)) {
                return 0;
            }
        }
        r->p++;
    }
    if (r->p >= r->end)
        return 0;
    r->p++;
    return 1;
}

static int digits(struct rd *r)
{
    const char *s = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    return r->p > s;
}

static int num(struct rd *r)
{
    if (r->p < r->end && *r->p == '-')
        r->p++;
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else if (!digits(r))
        return 0;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (!digits(r))
            return 0;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (!digits(r))
            return 0;
    }
    return 1;
}

static int value(struct rd *r)
{
    ws(r);
    if (r->p >= r->end || r->depth > 8)
        return 0;
    char c = *r->p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (c == '{' && r->depth == 2)
            r->objects_at_depth3++;
        r->p++;
        r->depth++;
        ws(r);
        if (r->p < r->end && *r->p == close) {
            r->p++;
            r->depth--;
            return 1;
        }
        for (;;) {
            if (c == '{') {
                ws(r);
                if (!str(r))
                    return 0;
                ws(r);
                if (!lit(r, ":"))
                    return 0;
            }
            if (!value(r))
                return 0;
            ws(r);
            if (lit(r, ","))
                continue;
            if (r->p < r->end && *r->p == close) {
                r->p++;
                r->depth--;
                return 1;
            }
            return 0;
        }
    }
    if (c == '"')
        return str(r);
    if (lit(r, "true") || lit(r, "false") || lit(r, "null"))
        return 1;
    return num(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = NULL;
    size_t olen = 0;
    FILE *f = open_memstream(&out, &olen);
    FUZZ_CHECK(f != NULL);
    unsigned skipped = wsg_status_json(f, (const char *)data, size);
    fclose(f);

    struct rd r = {.p = out, .end = out + olen};
    FUZZ_CHECK(value(&r));
    FUZZ_CHECK(r.p == r.end - 1 && *r.p == '\n');

    /* Lines neither blank nor comments, cut as the converter cuts them. */
    unsigned lines = 0;
    for (size_t p = 0; p < size;) {
        const char *nl = memchr(data + p, '\n', size - p);
        size_t e = nl ? (size_t)((const uint8_t *)nl - data) : size, n = e - p, b = 0;
        const char *l = (const char *)data + p;
        if (n > 0 && l[n - 1] == '\r')
            n--;
        while (b < n && (l[b] == ' ' || l[b] == '\t'))
            b++;
        if (b < n && l[b] != '#')
            lines++;
        p = e + 1;
    }
    /* Samples are the objects two levels down ({"samples":[{...}]}); "types" and "labels" are at
     * other depths. */
    FUZZ_CHECK(r.objects_at_depth3 + skipped == lines);
    char tail[32];
    snprintf(tail, sizeof(tail), "],\"skipped\":%u}\n", skipped);
    FUZZ_CHECK(olen >= strlen(tail) && memcmp(out + olen - strlen(tail), tail, strlen(tail)) == 0);
    free(out);
    return 0;
}
