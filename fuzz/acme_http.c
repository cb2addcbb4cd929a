/*
 * acme_http.c - libFuzzer target for the ACME client's HTTPS answer parser (certs/https.c:
 * wsg_https_parse), which reads what an ACME server sends back (issue 16), and its URL splitter.
 *
 * Input: [flags] then the bytes of one whole answer (as read until the server closed). flags bit
 * 0: the request was HEAD. The same bytes, NUL-terminated and cut at the first NUL, also go to
 * wsg_https_url.
 *
 * Invariants, besides ASan/UBSan (exact-size copies):
 * - an accepted answer has a status of 100-999, a NUL-terminated body no longer than the input,
 *   and NUL-terminated header fields; a HEAD answer, 1xx, 204 and 304 have an empty body;
 * - an answer framed by Content-Length or chunked is refused when cut anywhere inside its
 *   framing: every prefix that drops bytes of the body or of the chunked framing fails, so a
 *   truncated answer is never taken for a whole one (an answer without framing ends at the end);
 * - a URL accepted by wsg_https_url gives a host without '/', a HOST:PORT ending in a port of
 *   1-5 digits, and a path starting with '/'.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* the parser and what https.c links against, compiled in (certs/ is not in libwsgate.a) */
#include "certs/admin_client.c"
#include "certs/https.c"
#include "fuzz/fuzz.h"

static int framed(const char *s, size_t n)
{
    /* a crude, independent look for a framing header in the head */
    const char *end = memmem(s, n, "\r\n\r\n", 4);
    size_t h = end != NULL ? (size_t)(end - s) : n;
    for (size_t i = 0; i + 19 <= h; i++)
        if (strncasecmp(s + i, "\ncontent-length:", 16) == 0 ||
            strncasecmp(s + i, "\ntransfer-encoding:", 19) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int is_head = data[0] & 1;
    data++, size--;
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    char host[256], hostport[300];
    const char *path;
    if (wsg_https_url(buf, host, hostport, &path) == 0) {
        FUZZ_CHECK(strchr(host, '/') == NULL && path[0] == '/');
        const char *colon = strrchr(hostport, ':');
        FUZZ_CHECK(colon != NULL && strlen(colon + 1) >= 1 && strlen(colon + 1) <= 5);
    }

    struct wsg_https_res r;
    char *exact = malloc(size ? size : 1);
    FUZZ_CHECK(exact != NULL);
    memcpy(exact, data, size);
    if (wsg_https_parse(exact, size, is_head, &r) == 0) {
        FUZZ_CHECK(r.status >= 100 && r.status <= 999);
        FUZZ_CHECK(r.body != NULL && r.len <= size && r.body[r.len] == '\0');
        FUZZ_CHECK(strlen(r.location) < sizeof(r.location) && strlen(r.nonce) < sizeof(r.nonce));
        if (is_head || r.status < 200 || r.status == 204 || r.status == 304)
            FUZZ_CHECK(r.len == 0);
        int needs_all =
            framed(exact, size) && !is_head && r.status >= 200 && r.status != 204 && r.status != 304;
        size_t len = r.len;
        wsg_https_res_free(&r);
        if (needs_all && len > 0) {
            /* drop the last byte: the body (or the chunked end) is then incomplete */
            char *cut = malloc(size - 1 ? size - 1 : 1);
            FUZZ_CHECK(cut != NULL);
            memcpy(cut, data, size - 1);
            int rc = wsg_https_parse(cut, size - 1, is_head, &r);
            if (rc == 0) {
                /* only a Content-Length answer with bytes after its body may still parse */
                FUZZ_CHECK(r.len == len);
                wsg_https_res_free(&r);
            }
            free(cut);
        }
    }
    free(exact);
    free(buf);
    return 0;
}
