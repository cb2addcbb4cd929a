/*
 * tickets.c - `wsgate-certs tickets new FILE`: rotates a ticket_key_file (tls/tickets.c).
 *
 * Prepends a fresh key (80 bytes from getrandom) and keeps the key that was first, so the file
 * holds two keys: the new one encrypts, the previous one still decrypts the tickets it issued
 * (they live at most ticket_lifetime). Older keys are dropped. A file that exists but does not
 * read as a key file (the gateway's own rules) is left alone and the command fails: it never
 * replaces something it does not understand. The file is written atomically with mode 0600.
 */
#include "certs/certs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

#include "tls/tls.h"

#define KEEP 2
static const char synopsis[] = "usage: wsgate-certs tickets new FILE\n";

static int fill_random(uint8_t *p, size_t n)
{
    while (n != 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int wsg_certs_tickets_new(const char *path, FILE *out, char err[WSG_ERRLEN])
{
    uint8_t keys[WSG_TICKET_MAX_KEYS + 1][WSG_TICKET_KEY_BYTES];
    size_t n = 0;
    int rc = -1;
    if (access(path, F_OK) == 0) {
        if (wsg_tls_ticket_keys_read(path, keys + 1, WSG_TICKET_MAX_KEYS, &n, err) != 0)
            goto out;
    } else if (errno != ENOENT) {
        snprintf(err, WSG_ERRLEN, "%.150s: %s", path, strerror(errno));
        goto out;
    }
    if (fill_random(keys[0], WSG_TICKET_KEY_BYTES) != 0) {
        snprintf(err, WSG_ERRLEN, "getrandom: %s", strerror(errno));
        goto out;
    }
    size_t keep = n + 1 < KEEP ? n + 1 : KEEP;
    /* 80 bytes are 108 base64 characters, plus the newline */
    char text[KEEP * 112];
    size_t len = 0;
    for (size_t i = 0; i < keep; i++) {
        size_t olen = 0;
        if (mbedtls_base64_encode((unsigned char *)text + len, sizeof(text) - len - 1, &olen, keys[i],
                                  WSG_TICKET_KEY_BYTES) != 0) {
            snprintf(err, WSG_ERRLEN, "base64: buffer too small");
            goto out;
        }
        len += olen;
        text[len++] = '\n';
    }
    rc = wsg_certs_write_atomic(path, text, len, 0600, err);
    mbedtls_platform_zeroize(text, sizeof(text));
    if (rc == 0 && out != NULL)
        fprintf(out, "%s: %s%s\n", path,
                keep == 1 ? "1 key, new"
                          : "2 keys, the new one first (it encrypts; the previous one still decrypts)",
                n > 1 ? "; older keys dropped" : "");
out:
    mbedtls_platform_zeroize(keys, sizeof(keys));
    return rc;
}

int wsg_certs_tickets_main(int argc, char **argv, FILE *out, FILE *err)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fprintf(out,
                "%s"
                "Prepends a fresh session ticket key (80 random bytes, base64) to FILE and keeps the\n"
                "key that was first after it: the new key encrypts, the previous one still decrypts.\n"
                "Creates FILE (mode 0600) when missing. Then reload every gateway using the file\n"
                "(SIGHUP, POST /reload, or watch_certs on).\n",
                synopsis);
        return WSG_CERTS_OK;
    }
    if (argc != 3 || strcmp(argv[1], "new") != 0)
        return wsg_certs_usage_error(err, "tickets", synopsis, "expected: new FILE");
    char e[WSG_ERRLEN];
    if (wsg_certs_tickets_new(argv[2], out, e) != 0) {
        fprintf(err, "wsgate-certs tickets: %s\n", e);
        return WSG_CERTS_BAD;
    }
    return WSG_CERTS_OK;
}
