/*
 * tls_server.c - libFuzzer target for the server side of a TLS connection (tls/tls.h) fed from
 * the input through the two memory buffers, in the manner of mbedTLS's programs/fuzz/fuzz_server.c:
 * the input is everything the client sends (ClientHello first), the server's answers are dropped.
 *
 * The store is built once in LLVMFuzzerInitialize: three generated self-signed pairs written to a
 * temporary directory and loaded as files, so the SNI map has a default ("localhost"), an exact
 * name (a.example.test) and a wildcard (*.wild.example.test) to choose from; session tickets on.
 * Falls back to the built-in generated pair (npairs = 0) if that fails.
 *
 * Input: [feed byte][cout byte] then the client's bytes.
 *   feed: 0 = everything at once, else pieces of that many bytes (TLS records cut anywhere);
 *   cout: capacity of the ciphertext-out buffer {512, 4096, 17000, 65536} (small ones force
 *         partial writes and WANT_WRITE inside the handshake).
 * After a completed handshake, the rest is read as application data, then a write and a
 * close_notify are queued.
 *
 * Determinism: the library seeds its DRBG from the system entropy, so server randoms and key
 * shares differ between runs. The paths reachable from fuzzed bytes (ClientHello parsing, SNI,
 * ticket parsing, alerts) do not depend on them; later flights cannot be forged by the fuzzer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "policies/base/buf.h"
#include "tls/tls.h"

static struct wsg_tls_store *store;

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int build_store_from_files(void)
{
    static const char *const n0[] = {"localhost", "127.0.0.1"};
    static const char *const n1[] = {"a.example.test"};
    static const char *const n2[] = {"*.wild.example.test"};
    static const char *const *names[3] = {n0, n1, n2};
    static const size_t nn[3] = {2, 1, 1};
    char dir[] = "/tmp/wsg-fuzz-tls-XXXXXX";
    char paths[6][64], err[WSG_ERRLEN];
    struct wsg_tls_pair pairs[3];
    int rc = -1, made = 0;
    if (mkdtemp(dir) == NULL)
        return -1;
    char *cert = malloc(8192), *key = malloc(2048);
    if (cert == NULL || key == NULL)
        goto out;
    for (int i = 0; i < 3; i++) {
        snprintf(paths[2 * i], sizeof(paths[0]), "%s/c%d.pem", dir, i);
        snprintf(paths[2 * i + 1], sizeof(paths[0]), "%s/k%d.pem", dir, i);
        if (wsg_tls_gen_selfsigned(names[i], nn[i], 30, cert, 8192, key, 2048, err) != 0 ||
            write_file(paths[2 * i], cert) != 0 || write_file(paths[2 * i + 1], key) != 0) {
            made = 2 * i + 2;
            goto out;
        }
        made = 2 * i + 2;
        pairs[i].cert_path = paths[2 * i];
        pairs[i].key_path = paths[2 * i + 1];
    }
    struct wsg_tls_settings s = {pairs, 3, NULL, 0, 3600, WSG_TLS_ORDER_SERVER, NULL};
    if (wsg_tls_store_new(&store, &s, err) == 0)
        rc = 0;
    else
        fprintf(stderr, "tls_server: store from files: %s\n", err);
out:
    for (int i = 0; i < made; i++)
        unlink(paths[i]);
    rmdir(dir);
    free(cert);
    free(key);
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    WSG_UNUSED(argc);
    WSG_UNUSED(argv);
    if (build_store_from_files() == 0)
        return 0;
    static const char *const names[] = {"localhost", "127.0.0.1"};
    struct wsg_tls_settings s = {NULL, 0, names, 2, 3600, WSG_TLS_ORDER_SERVER, NULL};
    char err[WSG_ERRLEN];
    if (wsg_tls_store_new(&store, &s, err) != 0) {
        fprintf(stderr, "tls_server: cannot build the TLS store: %s\n", err);
        abort();
    }
    return 0;
}

/* Moves the next piece of client bytes into cin. Returns how many. */
static size_t feed(struct wsg_buf *cin, struct fuzz_in *in, size_t piece)
{
    size_t want = piece == 0 || piece > in->n ? in->n : piece;
    size_t n = wsg_buf_put(cin, in->p, want);
    in->p += n;
    in->n -= n;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t couts[4] = {512, 4096, 17000, 65536};
    struct fuzz_in in = {data, size};
    size_t piece = fuzz_byte(&in);
    uint32_t cout_cap = couts[fuzz_byte(&in) & 3];
    struct wsg_buf cin, cout;
    memset(&cin, 0, sizeof(cin));
    memset(&cout, 0, sizeof(cout));
    wsg_buf_setup(&cin, 65536);
    wsg_buf_setup(&cout, cout_cap);
    struct wsg_tls *t = wsg_tls_new(store, &cin, &cout);
    FUZZ_CHECK(t != NULL);

    int rc = WSG_AGAIN, idle = 0;
    for (int guard = 0; guard < 100000; guard++) {
        size_t fed = feed(&cin, &in, piece);
        uint32_t cin_before = wsg_buf_len(&cin);
        rc = wsg_tls_handshake(t);
        uint32_t sent = wsg_buf_len(&cout);
        wsg_buf_consume(&cout, sent); /* the client reads (and ignores) everything */
        if (rc != WSG_AGAIN)
            break;
        if (fed == 0 && sent == 0 && wsg_buf_len(&cin) == cin_before) {
            if (++idle >= 2)
                break; /* waiting for client bytes that will not come */
        } else {
            idle = 0;
        }
    }
    FUZZ_CHECK(rc == WSG_OK || rc == WSG_AGAIN || rc == WSG_ERR);
    if (rc == WSG_ERR)
        FUZZ_CHECK(strcmp(wsg_tls_error(t), "no error") != 0);
    /* Accessors are safe whatever the state. */
    const char *sni = wsg_tls_sni(t);
    FUZZ_CHECK(sni == NULL || strlen(sni) < 65536);
    FUZZ_CHECK(wsg_tls_version(t) != NULL && wsg_tls_cipher(t) != NULL);
    (void)wsg_tls_resumed(t);
    FUZZ_CHECK(wsg_tls_write_reserve(t) > 0);

    if (fuzz_verbose())
        fprintf(stderr, "tls: rc %d sni %s version %s error %s\n", rc, sni ? sni : "-", wsg_tls_version(t),
                wsg_tls_error(t));
    if (rc == WSG_OK) {
        uint8_t plain[4096];
        for (int guard = 0; guard < 100000; guard++) {
            feed(&cin, &in, piece);
            ssize_t n = wsg_tls_read(t, plain, sizeof(plain));
            FUZZ_CHECK(n == WSG_AGAIN || n == WSG_EOF || n == WSG_ERR ||
                       (n > 0 && (size_t)n <= sizeof(plain)));
            wsg_buf_consume(&cout, wsg_buf_len(&cout));
            if (n == WSG_EOF || n == WSG_ERR || (n == WSG_AGAIN && in.n == 0))
                break;
        }
        ssize_t w = wsg_tls_write(t, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
        FUZZ_CHECK(w == WSG_AGAIN || w == WSG_ERR || (w > 0 && w <= 28));
        wsg_tls_close_notify(t);
    }
    wsg_tls_free(t);
    wsg_buf_free(&cin);
    wsg_buf_free(&cout);
    return 0;
}
