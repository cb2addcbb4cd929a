/* status.c - the status page and the exposition-to-JSON conversion behind /status.json. */
#include "gateway/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

/* Writes s[0..n) as a JSON string (quotes included). */
static void json_str(FILE *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* Label value: p at the opening quote. Unescapes into buf; returns the index after the closing
 * quote, or 0 when the value is malformed or longer than cap. */
static size_t label_value(const char *p, size_t n, char *buf, size_t cap, size_t *blen)
{
    size_t i = 1, o = 0;
    while (i < n && p[i] != '"') {
        char c = p[i];
        if (c == '\\') {
            if (i + 1 >= n)
                return 0;
            c = p[i + 1] == 'n' ? '\n' : p[i + 1];
            if (p[i + 1] != 'n' && p[i + 1] != '\\' && p[i + 1] != '"')
                return 0;
            i++;
        }
        if (o >= cap)
            return 0;
        buf[o++] = c;
        i++;
    }
    if (i >= n)
        return 0;
    *blen = o;
    return i + 1;
}

struct label {
    size_t name_off, name_len;
    size_t val_off, val_len; /* into the value arena */
};

enum { MAX_LABELS = 16, LABEL_ARENA = 2048 };

/* One sample line (no newline). Writes it as a JSON object (with a leading comma unless first)
 * and returns 1, or returns 0 and writes nothing when the line is malformed. */
static int sample(FILE *out, const char *l, size_t n, int first)
{
    size_t i = 0;
    if (n == 0 || !name_start(l[0]))
        return 0;
    while (i < n && name_char(l[i]))
        i++;
    size_t name_len = i;
    struct label lab[MAX_LABELS];
    unsigned nl = 0;
    char arena[LABEL_ARENA];
    size_t used = 0;
    if (i < n && l[i] == '{') {
        i++;
        while (i < n && l[i] != '}') {
            if (nl == MAX_LABELS || !name_start(l[i]) || l[i] == ':')
                return 0;
            size_t s = i;
            while (i < n && name_char(l[i]) && l[i] != ':')
                i++;
            if (i + 1 >= n || l[i] != '=' || l[i + 1] != '"')
                return 0;
            lab[nl].name_off = s;
            lab[nl].name_len = i - s;
            i++;
            size_t vlen;
            size_t k = label_value(l + i, n - i, arena + used, sizeof(arena) - used, &vlen);
            if (k == 0)
                return 0;
            lab[nl].val_off = used;
            lab[nl].val_len = vlen;
            used += vlen;
            nl++;
            i += k;
            if (i < n && l[i] == ',')
                i++;
            else if (i >= n || l[i] != '}')
                return 0;
        }
        if (i >= n)
            return 0;
        i++;
    }
    if (i >= n || (l[i] != ' ' && l[i] != '\t'))
        return 0;
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    size_t vs = i;
    while (i < n && l[i] != ' ' && l[i] != '\t')
        i++;
    size_t vn = i - vs;
    char num[64];
    if (vn == 0 || vn >= sizeof(num))
        return 0;
    memcpy(num, l + vs, vn);
    num[vn] = '\0';
    if (strspn(num, "0123456789+-.eE") != vn) /* strtod would also take hex, "inf", "nan" */
        return 0;
    char *end;
    double v = strtod(num, &end);
    if (*end != '\0' || !isfinite(v))
        return 0;
    /* An optional timestamp, then nothing. */
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    if (i < n) {
        if (l[i] == '-')
            i++;
        size_t ts = i;
        while (i < n && l[i] >= '0' && l[i] <= '9')
            i++;
        while (i < n && (l[i] == ' ' || l[i] == '\t'))
            i++;
        if (i == ts || i < n)
            return 0;
    }
    /* Integers as printed (a uint64 counter keeps every digit), anything else as %.17g. */
    size_t d = num[0] == '-' ? 1 : 0;
    int integer = vn > d && vn - d <= 20 && (num[d] != '0' || vn - d == 1);
    for (size_t k = d; k < vn && integer; k++)
        integer = num[k] >= '0' && num[k] <= '9';
    fputs(first ? "\n{\"name\":" : ",\n{\"name\":", out);
    json_str(out, l, name_len);
    fputs(",\"labels\":{", out);
    for (unsigned k = 0; k < nl; k++) {
        if (k)
            fputc(',', out);
        json_str(out, l + lab[k].name_off, lab[k].name_len);
        fputc(':', out);
        json_str(out, arena + lab[k].val_off, lab[k].val_len);
    }
    fputs("},\"value\":", out);
    if (integer)
        fputs(num, out);
    else
        fprintf(out, "%.17g", v == 0 ? 0.0 : v); /* -0 prints as 0 */
    fputc('}', out);
    return 1;
}

unsigned wsg_status_json(FILE *out, const char *text, size_t len)
{
    unsigned skipped = 0;
    int first = 1;
    /* Types first: one pass over the comments. */
    fputs("{\"types\":{", out);
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len;
        const char *l = text + p;
        size_t n = e - p;
        if (n > 7 && memcmp(l, "# TYPE ", 7) == 0) {
            size_t i = 7;
            while (i < n && name_char(l[i]))
                i++;
            size_t t = i + 1;
            size_t tn = n > t ? n - t : 0;
            static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
            for (unsigned k = 0; i > 7 && i < n && l[i] == ' ' && k < sizeof(types) / sizeof(types[0]); k++)
                if (tn == strlen(types[k]) && memcmp(l + t, types[k], tn) == 0) {
                    if (!first)
                        fputc(',', out);
                    json_str(out, l + 7, i - 7);
                    fputc(':', out);
                    json_str(out, types[k], tn);
                    first = 0;
                }
        }
        p = e + 1;
    }
    fputs("},\"samples\":[", out);
    first = 1;
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len;
        const char *l = text + p;
        size_t n = e - p;
        if (n > 0 && l[n - 1] == '\r')
            n--;
        size_t b = 0;
        while (b < n && (l[b] == ' ' || l[b] == '\t'))
            b++;
        if (b < n && l[b] != '#') {
            if (sample(out, l + b, n - b, first))
                first = 0;
            else
                skipped++;
        }
        p = e + 1;
    }
    fprintf(out, "],\"skipped\":%u}\n", skipped);
    return skipped;
}
