/*
 * upstream_admin.c - libFuzzer target for the two parsers of issue 15: the admin endpoint's
 * /upstreams/NAME/ACTION?QUERY target (wsg_lifecycle_post, gateway/lifecycle.h) and the active
 * health check's status line (wsg_health_status_line, gateway/health.h).
 *
 * Input: [opt] then bytes. opt bit 0 clear: the bytes are a request-target given to
 * wsg_lifecycle_post over a runtime of three upstreams ("127.0.0.1:3001", "[::1]:3002",
 * "app:3003" resolved at start as 127.0.0.1) and no worker. Set: the bytes are an answer whose
 * status line the checker reads.
 *
 * Invariants, besides ASan/UBSan (every call reads an exact-size copy):
 * - the admin answer is 200, 400 or 404 with a JSON object body ending in "}\n"; a 200 names
 *   an upstream of the table and changed exactly that peer as asked (drain: draining with the
 *   spread given, at most 1 h; ready: not draining; weight: the value, at most 100); any other
 *   answer changed nothing;
 * - the status line: -1, 0 (more bytes needed, only below 13 bytes) or 100-999, and the verdict
 *   of a prefix that is not 0 is the verdict of every longer input.
 */
#include <string.h>

#include "fuzz/fuzz.h"
#include "gateway/config.h"
#include "gateway/health.h"
#include "gateway/lifecycle.h"
#include "gateway/log.h"

static struct wsg_runtime rt;
static struct wsg_cfg cfg;
static struct wsg_upstreams ups;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    wsg_log_max = WSG_LOG_ERROR; /* the admin changes log notices */
    wsg_cfg_defaults(&cfg);
    char err[WSG_ERRLEN];
    FUZZ_CHECK(wsg_upstream_add(&ups, "127.0.0.1:3001", 1, err) == 0);
    FUZZ_CHECK(wsg_upstream_add(&ups, "[::1]:3002", 2, err) == 0);
    FUZZ_CHECK(wsg_upstream_add(&ups, "localhost:3003", 3, err) == 0);
    rt.cfg = &cfg;
    rt.ups[0] = &ups;
    return 0;
}

static void fuzz_admin(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < ups.npeers; i++) {
        ups.peers[i].draining = 0;
        ups.peers[i].drain_spread_ms = 0;
        ups.peers[i].weight = ups.peers[i].cfg_weight;
    }
    char *copy = malloc(n ? n : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, n);
    char *body = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&body, &blen);
    FUZZ_CHECK(f != NULL);
    struct wsg_runtime *rts[1] = {&rt};
    int status = wsg_lifecycle_post(f, copy, n, rts, 1, NULL, 0);
    fclose(f);
    FUZZ_CHECK(status == 200 || status == 400 || status == 404);
    FUZZ_CHECK(blen >= 3 && body[0] == '{' && body[blen - 2] == '}' && body[blen - 1] == '\n');
    if (fuzz_verbose())
        fprintf(stderr, "%d %s", status, body);
    size_t changed = 0;
    for (size_t i = 0; i < ups.npeers; i++) {
        struct wsg_peer *p = &ups.peers[i];
        if (p->draining || p->weight != p->cfg_weight)
            changed++;
        FUZZ_CHECK(p->weight <= 100);
        FUZZ_CHECK(p->drain_spread_ms <= 3600 * 1000);
        if (p->draining || p->weight != p->cfg_weight) {
            /* only the peer named in a successful request, right after the prefix */
            size_t nl = strlen(p->name);
            FUZZ_CHECK(status == 200);
            FUZZ_CHECK(n > 11 + nl && memcmp(copy, "/upstreams/", 11) == 0 &&
                       memcmp(copy + 11, p->name, nl) == 0 && copy[11 + nl] == '/');
        }
    }
    FUZZ_CHECK(changed <= 1);
    if (status == 200)
        FUZZ_CHECK(strstr(body, "\"ok\":true") != NULL);
    free(body);
    free(copy);
}

static int status_copy(const uint8_t *data, size_t n)
{
    char *copy = malloc(n ? n : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, n);
    int s = wsg_health_status_line(copy, n);
    free(copy);
    return s;
}

static void fuzz_status(const uint8_t *data, size_t n)
{
    int whole = status_copy(data, n);
    FUZZ_CHECK(whole == -1 || whole == 0 || (whole >= 100 && whole <= 999));
    FUZZ_CHECK(whole != 0 || n < 13);
    for (size_t k = 0; k <= n && k <= 16; k++) {
        int s = status_copy(data, k);
        FUZZ_CHECK(s == 0 || s == whole);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t opt = fuzz_byte(&in);
    if (opt & 1)
        fuzz_status(in.p, in.n);
    else
        fuzz_admin(in.p, in.n);
    return 0;
}
