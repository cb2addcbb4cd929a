/*
 * acme_json.c - libFuzzer target for wsgate-certs' strict JSON reader (certs/json.c), which reads
 * an ACME server's answers (issue 16) and the admin endpoint's: network input, read as hostile.
 *
 * Input: the bytes of one document, given to wsg_certs_json_parse on an exact-size copy.
 *
 * Invariants, besides ASan/UBSan:
 * - an accepted tree is at most 32 deep, its strings are valid UTF-8 without NUL, its objects
 *   have no two members of one name, and its numbers are finite;
 * - written back out (strings by wsg_certs_json_quote, numbers as %.17g), it parses again to a
 *   tree that writes out to the same bytes (the reader and the writer agree);
 * - when the document is an object, an array or a string, every cut of it that drops a
 *   non-whitespace byte is refused (a truncated answer is never taken for a whole one).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs/json.c"
#include "fuzz/fuzz.h"

/* An independent UTF-8 check (RFC 3629 table 3-7 ranges), written apart from json.c's. */
static int utf8_ok(const unsigned char *s)
{
    while (*s != '\0') {
        unsigned c = *s, n, cp;
        if (c < 0x80) {
            s++;
            continue;
        }
        if ((c & 0xe0) == 0xc0)
            n = 1, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            n = 2, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            n = 3, cp = c & 0x07;
        else
            return 0;
        for (unsigned i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i] & 0x3f);
        }
        unsigned min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
            return 0;
        s += n + 1;
    }
    return 1;
}

static void check_tree(const struct wsg_certs_json *j, int depth)
{
    FUZZ_CHECK(depth <= JSON_MAX_DEPTH + 1);
    switch (j->type) {
    case WSG_JSON_NULL:
    case WSG_JSON_BOOL:
        break;
    case WSG_JSON_NUMBER:
        FUZZ_CHECK(isfinite(j->number));
        break;
    case WSG_JSON_STRING:
        FUZZ_CHECK(j->string != NULL && utf8_ok((const unsigned char *)j->string));
        break;
    case WSG_JSON_ARRAY:
    case WSG_JSON_OBJECT:
        for (size_t i = 0; i < j->n; i++) {
            if (j->type == WSG_JSON_OBJECT) {
                FUZZ_CHECK(utf8_ok((const unsigned char *)j->key[i]));
                for (size_t k = 0; k < i; k++)
                    FUZZ_CHECK(strcmp(j->key[k], j->key[i]) != 0);
                FUZZ_CHECK(wsg_certs_json_get(j, j->key[i]) == j->kid[i]);
            }
            check_tree(j->kid[i], depth + 1);
        }
        break;
    }
}

static void put_string(FILE *f, const char *s)
{
    char *q = wsg_certs_json_quote(s);
    FUZZ_CHECK(q != NULL);
    fputs(q, f);
    free(q);
}

static void write_tree(FILE *f, const struct wsg_certs_json *j)
{
    switch (j->type) {
    case WSG_JSON_NULL:
        fputs("null", f);
        break;
    case WSG_JSON_BOOL:
        fputs(j->boolean ? "true" : "false", f);
        break;
    case WSG_JSON_NUMBER:
        fprintf(f, "%.17g", j->number);
        break;
    case WSG_JSON_STRING:
        put_string(f, j->string);
        break;
    case WSG_JSON_ARRAY:
    case WSG_JSON_OBJECT:
        fputc(j->type == WSG_JSON_ARRAY ? '[' : '{', f);
        for (size_t i = 0; i < j->n; i++) {
            if (i > 0)
                fputc(',', f);
            if (j->type == WSG_JSON_OBJECT) {
                put_string(f, j->key[i]);
                fputc(':', f);
            }
            write_tree(f, j->kid[i]);
        }
        fputc(j->type == WSG_JSON_ARRAY ? ']' : '}', f);
        break;
    }
}

static char *write_out(const struct wsg_certs_json *j, size_t *len)
{
    char *out = NULL;
    FILE *f = open_memstream(&out, len);
    FUZZ_CHECK(f != NULL);
    write_tree(f, j);
    fclose(f);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *doc = malloc(size + 1);
    if (doc == NULL)
        return 0;
    memcpy(doc, data, size);
    struct wsg_certs_json *j = wsg_certs_json_parse(doc, size);
    if (j == NULL) {
        free(doc);
        return 0;
    }
    check_tree(j, 1);

    size_t len1, len2;
    char *once = write_out(j, &len1);
    struct wsg_certs_json *again = wsg_certs_json_parse(once, len1);
    FUZZ_CHECK(again != NULL);
    char *twice = write_out(again, &len2);
    FUZZ_CHECK(len1 == len2 && memcmp(once, twice, len1) == 0);
    free(once);
    free(twice);
    wsg_certs_json_free(again);

    if (j->type == WSG_JSON_OBJECT || j->type == WSG_JSON_ARRAY || j->type == WSG_JSON_STRING) {
        size_t last = size; /* one past the last non-whitespace byte */
        while (last > 0 && strchr(" \t\r\n", doc[last - 1]) != NULL && doc[last - 1] != '\0')
            last--;
        for (size_t cut = 0; cut < last; cut += 1 + cut / 16) {
            char *part = malloc(cut + 1);
            FUZZ_CHECK(part != NULL);
            memcpy(part, doc, cut);
            struct wsg_certs_json *p = wsg_certs_json_parse(part, cut);
            FUZZ_CHECK(p == NULL);
            free(part);
        }
    }
    wsg_certs_json_free(j);
    free(doc);
    return 0;
}
