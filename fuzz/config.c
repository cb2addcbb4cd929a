/*
 * config.c - libFuzzer target for the configuration parser (gateway/config.h).
 *
 * The input is a config file: it is written to a memfd and read with wsg_cfg_load_file (the same
 * path as `wsgate -c`), then wsg_cfg_finish runs the cross-field checks. The same bytes, cut at
 * newlines into an argv, go through wsg_cfg_load_args (`--NAME VALUE` overrides), and the first
 * line through wsg_parse_size / wsg_parse_duration.
 *
 * Invariants: an error message is NUL-terminated inside WSG_ERRLEN and not empty; on success
 * every scalar is within its table bounds and every string and list is terminated and counted
 * within its array.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "gateway/config.h"

static void check_err(int rc, const char err[WSG_ERRLEN])
{
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        FUZZ_CHECK(memchr(err, '\0', WSG_ERRLEN) != NULL);
        FUZZ_CHECK(err[0] != '\0');
    }
}

static int terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_cfg(const struct wsg_cfg *c)
{
    FUZZ_CHECK(c->nlisten <= WSG_CFG_MAX_LISTEN && c->ncert <= WSG_CFG_MAX_CERTS &&
               c->nkey <= WSG_CFG_MAX_CERTS && c->nupstream <= WSG_CFG_MAX_UPSTREAMS);
    for (unsigned i = 0; i < c->nlisten; i++)
        FUZZ_CHECK(terminated(c->listen[i], sizeof(c->listen[i])));
    for (unsigned i = 0; i < c->ncert; i++)
        FUZZ_CHECK(terminated(c->cert[i], sizeof(c->cert[i])));
    for (unsigned i = 0; i < c->nkey; i++)
        FUZZ_CHECK(terminated(c->key[i], sizeof(c->key[i])));
    for (unsigned i = 0; i < c->nupstream; i++)
        FUZZ_CHECK(terminated(c->upstream[i].addr, sizeof(c->upstream[i].addr)));
    FUZZ_CHECK(terminated(c->access_log, sizeof(c->access_log)));
    FUZZ_CHECK(terminated(c->log_level, sizeof(c->log_level)));
    FUZZ_CHECK(c->workers <= 256);
    FUZZ_CHECK(c->hash_prefix == 0 || c->hash_prefix == 24);
    FUZZ_CHECK(c->max_frame >= 125 && c->max_message >= 125);
    FUZZ_CHECK(c->buffer_size >= 20 * 1024 && c->buffer_size <= 16 * 1024 * 1024);
    FUZZ_CHECK(c->max_header_size >= 1024 && c->max_header_size <= 1024 * 1024);
    FUZZ_CHECK(c->max_uri >= 64 && c->max_headers >= 1 && c->max_headers <= 100);
    FUZZ_CHECK(c->fail_timeout >= 0.1 && c->fail_timeout <= 3600);
    FUZZ_CHECK(c->ws_idle_timeout >= 1 && c->ws_idle_timeout <= 86400);
    FUZZ_CHECK(c->drain_timeout >= 0 && c->drain_timeout <= 3600);
}

static void fuzz_file(const uint8_t *data, size_t size)
{
    int fd = memfd_create("wsg-fuzz-config", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        FUZZ_CHECK(w > 0);
        off += (size_t)w;
    }
    char path[64], err[WSG_ERRLEN];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct wsg_cfg *c = malloc(sizeof(*c));
    FUZZ_CHECK(c != NULL);
    wsg_cfg_defaults(c);
    memset(err, 0, sizeof(err));
    int rc = wsg_cfg_load_file(c, path, err);
    check_err(rc, err);
    if (fuzz_verbose())
        fprintf(stderr, "config: load %d %s\n", rc, rc ? err : "");
    if (rc == 0) {
        check_cfg(c);
        memset(err, 0, sizeof(err));
        rc = wsg_cfg_finish(c, err);
        check_err(rc, err);
        if (rc == 0) {
            check_cfg(c);
            FUZZ_CHECK(c->nupstream > 0 && c->nlisten > 0 && c->ncert == c->nkey);
            FUZZ_CHECK((uint64_t)c->max_header_size + 2048 <= c->buffer_size);
        }
    }
    free(c);
    close(fd);
}

/* The input cut at newlines is argv[1..]; "-c"-style arguments are part of what is fuzzed. */
static void fuzz_args(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    copy[size] = '\0';
    enum { MAXARGS = 64 };
    char *argv[MAXARGS + 2];
    int argc = 0;
    argv[argc++] = "wsgate";
    char *s = copy;
    while (argc < MAXARGS + 1) {
        argv[argc++] = s;
        char *nl = memchr(s, '\n', (size_t)(copy + size - s));
        if (nl == NULL)
            break;
        *nl = '\0';
        s = nl + 1;
    }
    argv[argc] = NULL;
    struct wsg_cfg *c = malloc(sizeof(*c));
    FUZZ_CHECK(c != NULL);
    wsg_cfg_defaults(c);
    char err[WSG_ERRLEN];
    memset(err, 0, sizeof(err));
    int rc = wsg_cfg_load_args(c, argc, argv, err);
    check_err(rc, err);
    if (rc == 0)
        check_cfg(c);
    free(c);

    /* The value parsers alone, on the first line. */
    uint64_t sz;
    double d;
    if (wsg_parse_size(argv[1], &sz) == 0)
        (void)sz;
    if (wsg_parse_duration(argv[1], &d) == 0)
        FUZZ_CHECK(d == d && d >= 0); /* not NaN, not negative */
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file(data, size);
    fuzz_args(data, size);
    return 0;
}
