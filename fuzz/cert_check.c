/*
 * cert_check.c - libFuzzer target for certificate and key loading as `wsgate-certs check` and a
 * reload do it (tls/check.c: wsg_tls_check_pair).
 *
 * Input: [split:2 little-endian][names:1] then the certificate file's bytes up to the split and
 * the key file's bytes after it. Each part is written to a memfd and passed by /proc/self/fd path,
 * the same file-reading code the gateway uses. The names byte picks which of a few host names
 * the leaf must cover, and whether the chain is verified against the certificate file itself.
 *
 * Invariants: the result is 0 or -1; -1 comes with at least one problem and 0 with none; every
 * problem is a NUL-terminated sentence; a loaded leaf has a fingerprint in "AB:CD:..." form and
 * every name it reports is terminated; wsg_tls_check_covers never crashes on them.
 */
#include <psa/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "tls/tls.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    psa_crypto_init(); /* key parsing goes through PSA in mbedTLS 3.6 */
    return 0;
}

static int to_memfd(const uint8_t *p, size_t n, char path[64])
{
    int fd = memfd_create("fuzz", 0);
    if (fd < 0)
        return -1;
    if (n > 0 && write(fd, p, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t split = (size_t)data[0] | (size_t)data[1] << 8;
    uint8_t sel = data[2];
    data += 3;
    size -= 3;
    if (split > size)
        split = size;
    char cert_path[64], key_path[64];
    int cfd = to_memfd(data, split, cert_path);
    int kfd = to_memfd(data + split, size - split, key_path);
    if (cfd < 0 || kfd < 0) {
        if (cfd >= 0)
            close(cfd);
        if (kfd >= 0)
            close(kfd);
        return 0;
    }
    static const char *const all_names[] = {"localhost", "127.0.0.1", "a.example.com", "::1"};
    struct wsg_tls_pair pair = {.cert_path = cert_path, .key_path = key_path};
    struct wsg_tls_check_opts opts = {.ca_path = (sel & 0x10) ? cert_path : NULL,
                                      .names = all_names,
                                      .nnames = sel & 3,
                                      .now = (sel & 0x20) ? 1700000000 : 0};
    struct wsg_tls_check_report rep;
    memset(&rep, 0, sizeof(rep));
    int rc = wsg_tls_check_pair(&pair, &opts, &rep);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK((rc == 0) == (rep.nproblems == 0));
    FUZZ_CHECK(rep.nproblems <= WSG_TLS_CHECK_MAX_PROBLEMS);
    for (size_t i = 0; i < rep.nproblems; i++) {
        FUZZ_CHECK(memchr(rep.problems[i], '\0', WSG_ERRLEN) != NULL);
        FUZZ_CHECK(rep.problems[i][0] != '\0');
    }
    if (rep.loaded) {
        FUZZ_CHECK(memchr(rep.subject, '\0', sizeof(rep.subject)) != NULL);
        FUZZ_CHECK(strlen(rep.sha256) == 95 && rep.sha256[2] == ':');
        for (size_t i = 0; i < rep.nnames; i++) {
            FUZZ_CHECK(rep.names[i] != NULL);
            (void)wsg_tls_check_covers(&rep, rep.names[i]);
        }
        for (size_t i = 0; i < sizeof(all_names) / sizeof(all_names[0]); i++)
            (void)wsg_tls_check_covers(&rep, all_names[i]);
    }
    if (fuzz_verbose())
        fprintf(stderr, "cert_check: rc %d, loaded %d, %zu names, %zu problems%s%s\n", rc, rep.loaded,
                rep.nnames, rep.nproblems, rep.nproblems ? ": " : "", rep.nproblems ? rep.problems[0] : "");
    wsg_tls_check_report_free(&rep);
    close(cfd);
    close(kfd);
    return 0;
}
