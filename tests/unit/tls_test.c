/*
 * tls_test.c - tls/ against a real mbedTLS client: both ends talk through two wsg_bufs in memory
 * (client -> c2s -> wsg_tls -> s2c -> client) and the test pumps them until each step is done.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#include "policies/base/buf.h"
#include "tls/tls.h"

#define BUFCAP (64u * 1024u)

static struct wsg_rng *rng;
static char dir[64];
/* Three generated pairs on disk: D (default: default.test, localhost), A (a.test), B (*.b.test). */
static char d_crt[128], d_key[128], a_crt[128], a_key[128], b_crt[128], b_key[128];
static char x_crt[128], x_key[128]; /* expired on 2024-01-01 */

static int rng_cb(void *p, unsigned char *dst, size_t len)
{
    return wsg_rng_fill(p, dst, len) == 0 ? 0 : MBEDTLS_ERR_SSL_NO_RNG;
}

/* ---- a client wired to a server wsg_tls ---- */

struct link {
    struct wsg_buf c2s, s2c;
    mbedtls_ssl_config ccfg;
    mbedtls_ssl_context cli;
    struct wsg_tls *srv;
    mbedtls_ssl_session saved;
    int have_session;
};

static int cli_send(void *ctx, const unsigned char *src, size_t len)
{
    struct link *l = ctx;
    size_t n = wsg_buf_put(&l->c2s, src, len);
    return n != 0 ? (int)n : MBEDTLS_ERR_SSL_WANT_WRITE;
}

static int cli_recv(void *ctx, unsigned char *dst, size_t len)
{
    struct link *l = ctx;
    size_t n = wsg_buf_take(&l->s2c, dst, len);
    return n != 0 ? (int)n : MBEDTLS_ERR_SSL_WANT_READ;
}

static const char *cli_alpn[] = {"http/1.1", NULL};
/* What link_open's client offers (cli_alpn unless a test says otherwise). */
static const char **cli_alpn_list = cli_alpn;

enum { ANY_VERSION = 0, TLS12_ONLY = 1 };

/* When set, the client offers only these suites, in this order (link_open). */
static const int *cli_suites;

static void link_open(struct link *l, struct wsg_tls_store *st, const char *sni, int tls12,
                      const mbedtls_ssl_session *resume)
{
    memset(l, 0, sizeof(*l));
    wsg_buf_setup(&l->c2s, BUFCAP);
    wsg_buf_setup(&l->s2c, BUFCAP);
    mbedtls_ssl_config_init(&l->ccfg);
    mbedtls_ssl_init(&l->cli);
    mbedtls_ssl_session_init(&l->saved);
    assert_int_equal(mbedtls_ssl_config_defaults(&l->ccfg, MBEDTLS_SSL_IS_CLIENT,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT),
                     0);
    mbedtls_ssl_conf_authmode(&l->ccfg, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_rng(&l->ccfg, rng_cb, rng);
    assert_int_equal(mbedtls_ssl_conf_alpn_protocols(&l->ccfg, cli_alpn_list), 0);
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        &l->ccfg, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
    if (tls12)
        mbedtls_ssl_conf_max_tls_version(&l->ccfg, MBEDTLS_SSL_VERSION_TLS1_2);
    if (cli_suites != NULL)
        mbedtls_ssl_conf_ciphersuites(&l->ccfg, cli_suites);
    assert_int_equal(mbedtls_ssl_setup(&l->cli, &l->ccfg), 0);
    mbedtls_ssl_set_bio(&l->cli, l, cli_send, cli_recv, NULL);
    if (sni != NULL)
        assert_int_equal(mbedtls_ssl_set_hostname(&l->cli, sni), 0);
    if (resume != NULL)
        assert_int_equal(mbedtls_ssl_set_session(&l->cli, resume), 0);
    l->srv = wsg_tls_new(st, &l->c2s, &l->s2c);
    assert_non_null(l->srv);
}

static void link_close(struct link *l)
{
    wsg_tls_free(l->srv);
    mbedtls_ssl_free(&l->cli);
    mbedtls_ssl_config_free(&l->ccfg);
    mbedtls_ssl_session_free(&l->saved);
    wsg_buf_free(&l->c2s);
    wsg_buf_free(&l->s2c);
}

static int want(int ret)
{
    return ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE;
}

/* Pumps both handshakes until both are done. Returns the server's final wsg code. */
static int link_handshake(struct link *l)
{
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!cdone) {
            int c = mbedtls_ssl_handshake(&l->cli);
            if (c == 0)
                cdone = 1;
            else if (!want(c))
                fail_msg("client handshake: -0x%04x", (unsigned)-c);
        }
        if (!sdone) {
            int s = wsg_tls_handshake(l->srv);
            if (s == WSG_OK)
                sdone = 1;
            else if (s != WSG_AGAIN)
                return s;
        }
    }
    assert_true(cdone && sdone);
    if (mbedtls_ssl_get_version_number(&l->cli) == MBEDTLS_SSL_VERSION_TLS1_2)
        l->have_session = mbedtls_ssl_get_session(&l->cli, &l->saved) == 0;
    return WSG_OK;
}

/* Client reads until WANT_READ, appending to dst; keeps any TLS 1.3 ticket. Returns the count. */
static size_t cli_drain(struct link *l, uint8_t *dst, size_t cap)
{
    size_t got = 0;
    for (;;) {
        uint8_t scratch[512];
        uint8_t *p = dst != NULL ? dst + got : scratch;
        size_t room = dst != NULL ? cap - got : sizeof(scratch);
        if (room == 0)
            return got;
        int r = mbedtls_ssl_read(&l->cli, p, room);
        if (r > 0) {
            if (dst != NULL)
                got += (size_t)r;
            continue;
        }
        if (r == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
            mbedtls_ssl_session_free(&l->saved);
            mbedtls_ssl_session_init(&l->saved);
            l->have_session = mbedtls_ssl_get_session(&l->cli, &l->saved) == 0;
            continue;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_READ && wsg_buf_len(&l->s2c) != 0)
            continue; /* stopped after a post-handshake message; more records wait */
        if (want(r))
            return got;
        fail_msg("client read: -0x%04x", (unsigned)-r);
    }
}

/* Server reads until WSG_AGAIN in small pieces, appending to dst. Returns the count. */
static size_t srv_drain(struct link *l, uint8_t *dst, size_t cap)
{
    size_t got = 0;
    for (;;) {
        size_t room = cap - got < 1000 ? cap - got : 1000;
        if (room == 0)
            return got;
        ssize_t r = wsg_tls_read(l->srv, dst + got, room);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        assert_int_equal(r, WSG_AGAIN);
        assert_int_equal(wsg_tls_pending(l->srv), 0);
        return got;
    }
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 31u + seed) ^ (i >> 8));
}

/* ---- fixtures ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void gen_pair(const char *crt, const char *key, const char *const *names, size_t n)
{
    char cpem[8192], kpem[1024], err[WSG_ERRLEN];
    if (wsg_tls_gen_selfsigned(names, n, 30, cpem, sizeof(cpem), kpem, sizeof(kpem), err) != 0)
        fail_msg("gen_selfsigned: %s", err);
    write_file(crt, cpem);
    write_file(key, kpem);
}

/* A pair valid from 2023-01-01 to 2024-01-01, written with mbedTLS directly. */
static void gen_expired(const char *crt_path, const char *key_path)
{
    mbedtls_pk_context key;
    mbedtls_x509write_cert w;
    unsigned char cpem[4096], kpem[1024], serial[1] = {1};
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&w);
    assert_int_equal(mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
    assert_int_equal(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), rng_cb, rng), 0);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, &key);
    mbedtls_x509write_crt_set_issuer_key(&w, &key);
    assert_int_equal(mbedtls_x509write_crt_set_subject_name(&w, "CN=old.test"), 0);
    assert_int_equal(mbedtls_x509write_crt_set_issuer_name(&w, "CN=old.test"), 0);
    assert_int_equal(mbedtls_x509write_crt_set_serial_raw(&w, serial, 1), 0);
    assert_int_equal(mbedtls_x509write_crt_set_validity(&w, "20230101000000", "20240101000000"), 0);
    assert_int_equal(mbedtls_x509write_crt_pem(&w, cpem, sizeof(cpem), rng_cb, rng), 0);
    assert_int_equal(mbedtls_pk_write_key_pem(&key, kpem, sizeof(kpem)), 0);
    write_file(crt_path, (const char *)cpem);
    write_file(key_path, (const char *)kpem);
    mbedtls_x509write_crt_free(&w);
    mbedtls_pk_free(&key);
}

static int group_setup(void **state)
{
    (void)state;
    if (psa_crypto_init() != PSA_SUCCESS || (rng = wsg_rng_new()) == NULL)
        return -1;
    snprintf(dir, sizeof(dir), "/tmp/tls_test.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(d_crt, sizeof(d_crt), "%s/d.crt", dir);
    snprintf(d_key, sizeof(d_key), "%s/d.key", dir);
    snprintf(a_crt, sizeof(a_crt), "%s/a.crt", dir);
    snprintf(a_key, sizeof(a_key), "%s/a.key", dir);
    snprintf(b_crt, sizeof(b_crt), "%s/b.crt", dir);
    snprintf(b_key, sizeof(b_key), "%s/b.key", dir);
    snprintf(x_crt, sizeof(x_crt), "%s/x.crt", dir);
    snprintf(x_key, sizeof(x_key), "%s/x.key", dir);
    static const char *const dn[] = {"default.test", "localhost"}, *const an[] = {"a.test"},
                             *const bn[] = {"*.b.test"};
    gen_pair(d_crt, d_key, dn, 2);
    gen_pair(a_crt, a_key, an, 1);
    gen_pair(b_crt, b_key, bn, 1);
    gen_expired(x_crt, x_key);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    const char *files[] = {d_crt, d_key, a_crt, a_key, b_crt, b_key, x_crt, x_key};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    char mixed[160];
    snprintf(mixed, sizeof(mixed), "%s/garbage.crt", dir);
    unlink(mixed);
    rmdir(dir);
    wsg_rng_free(rng);
    return 0;
}

static struct wsg_tls_store *store_generated(uint32_t tickets)
{
    static const char *const names[] = {"localhost", "127.0.0.1"};
    struct wsg_tls_settings s = {.gen_names = names, .ngen_names = 2, .ticket_lifetime = tickets};
    struct wsg_tls_store *st;
    char err[WSG_ERRLEN];
    if (wsg_tls_store_new(&st, &s, err) != 0)
        fail_msg("store_new: %s", err);
    return st;
}

static const struct wsg_tls_pair three[] = {{d_crt, d_key}, {a_crt, a_key}, {b_crt, b_key}};

static struct wsg_tls_store *store_files(uint32_t tickets)
{
    struct wsg_tls_settings s = {.pairs = three, .npairs = 3, .ticket_lifetime = tickets};
    struct wsg_tls_store *st;
    char err[WSG_ERRLEN];
    if (wsg_tls_store_new(&st, &s, err) != 0)
        fail_msg("store_new: %s", err);
    return st;
}

/* ---- tests ---- */

static void test_tls13_data(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_generated(0);
    struct link l;
    link_open(&l, st, "localhost", ANY_VERSION, NULL);
    assert_int_equal(link_handshake(&l), WSG_OK);
    assert_string_equal(wsg_tls_version(l.srv), "TLSv1.3");
    assert_memory_equal(wsg_tls_cipher(l.srv), "TLS1-3-", 7);
    assert_string_equal(wsg_tls_sni(l.srv), "localhost");
    assert_false(wsg_tls_resumed(l.srv));
    assert_string_equal(mbedtls_ssl_get_alpn_protocol(&l.cli), "http/1.1");
    assert_int_equal(wsg_tls_store_generation(st), 1);

    /* server -> client: 100 KiB in record-sized pieces, WSG_AGAIN when s2c is full */
    enum { BIG = 100 * 1024 };
    uint8_t *out = malloc(BIG), *in = malloc(BIG);
    assert_non_null(out);
    assert_non_null(in);
    fill_pattern(out, BIG, 7);
    size_t off = 0, got = 0;
    int agains = 0;
    while (off < BIG) {
        uint32_t before = wsg_buf_len(&l.s2c);
        ssize_t n = wsg_tls_write(l.srv, out + off, BIG - off);
        if (n > 0) {
            assert_true(n <= 16384);
            assert_true(wsg_buf_len(&l.s2c) - before <= (size_t)n + wsg_tls_write_reserve(l.srv) - 16384);
            off += (size_t)n;
        } else {
            assert_int_equal(n, WSG_AGAIN);
            assert_true(wsg_buf_room(&l.s2c) < wsg_tls_write_reserve(l.srv));
            agains++;
            got += cli_drain(&l, in + got, BIG - got);
        }
    }
    got += cli_drain(&l, in + got, BIG - got);
    assert_true(agains > 0);
    assert_int_equal(got, BIG);
    assert_memory_equal(in, out, BIG);

    /* client -> server: 100 KiB, the server reads in 1000-byte pieces until WSG_AGAIN */
    fill_pattern(out, BIG, 99);
    memset(in, 0, BIG);
    off = got = 0;
    while (off < BIG) {
        int r = mbedtls_ssl_write(&l.cli, out + off, BIG - off);
        if (r > 0)
            off += (size_t)r;
        else if (r == MBEDTLS_ERR_SSL_WANT_WRITE)
            got += srv_drain(&l, in + got, BIG - got); /* then retry with the same arguments */
        else
            fail_msg("client write: -0x%04x", (unsigned)-r);
    }
    got += srv_drain(&l, in + got, BIG - got);
    assert_int_equal(got, BIG);
    assert_memory_equal(in, out, BIG);

    /* decrypted bytes wait inside mbedTLS: a short read leaves some pending with cin empty */
    assert_int_equal(mbedtls_ssl_write(&l.cli, out, 5000), 5000);
    uint8_t small[100];
    assert_int_equal(wsg_tls_read(l.srv, small, sizeof(small)), 100);
    assert_int_equal(wsg_buf_len(&l.c2s), 0);
    assert_int_equal(wsg_tls_pending(l.srv), 4900);
    assert_int_equal(srv_drain(&l, in, BIG), 4900);

    /* close_notify both ways */
    wsg_tls_close_notify(l.srv);
    assert_int_equal(mbedtls_ssl_read(&l.cli, small, sizeof(small)), MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
    assert_int_equal(mbedtls_ssl_close_notify(&l.cli), 0);
    assert_int_equal(wsg_tls_read(l.srv, small, sizeof(small)), WSG_EOF);

    free(out);
    free(in);
    link_close(&l);
    wsg_tls_store_free(st);
}

/* Buffers smaller than one record: the handshake goes through in pieces and writes shrink. */
static void test_small_buffers(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_generated(3600);
    struct link l;
    link_open(&l, st, "localhost", ANY_VERSION, NULL);
    wsg_buf_setup(&l.c2s, 700);
    wsg_buf_setup(&l.s2c, 700);
    assert_int_equal(link_handshake(&l), WSG_OK);
    uint8_t out[5000], in[5000];
    fill_pattern(out, sizeof(out), 3);
    size_t off = 0, got = 0;
    while (off < sizeof(out)) {
        ssize_t n = wsg_tls_write(l.srv, out + off, sizeof(out) - off);
        if (n > 0)
            off += (size_t)n;
        else
            assert_int_equal(n, WSG_AGAIN);
        got += cli_drain(&l, in + got, sizeof(in) - got);
    }
    got += cli_drain(&l, in + got, sizeof(in) - got);
    assert_int_equal(got, sizeof(out));
    assert_memory_equal(in, out, sizeof(out));
    link_close(&l);
    wsg_tls_store_free(st);
}

/* After the handshake: "hello" server -> client, "world" client -> server, then nothing more. */
static void say_hello_both_ways(struct link *l)
{
    uint8_t buf[64];
    assert_int_equal(wsg_tls_write(l->srv, "hello", 5), 5);
    assert_int_equal(cli_drain(l, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(mbedtls_ssl_write(&l->cli, (const unsigned char *)"world", 5), 5);
    assert_int_equal(wsg_tls_read(l->srv, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "world", 5);
    assert_int_equal(wsg_tls_read(l->srv, buf, sizeof(buf)), WSG_AGAIN);
}

static void test_tls12_suite(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_generated(0);
    struct link l;
    link_open(&l, st, NULL, TLS12_ONLY, NULL);
    assert_int_equal(link_handshake(&l), WSG_OK);
    assert_string_equal(wsg_tls_version(l.srv), "TLSv1.2");
    const char *c = wsg_tls_cipher(l.srv);
    assert_non_null(strstr(c, "ECDHE-ECDSA"));
    assert_true(strstr(c, "GCM") != NULL || strstr(c, "CHACHA20-POLY1305") != NULL);
    assert_null(wsg_tls_sni(l.srv));

    say_hello_both_ways(&l);
    link_close(&l);
    wsg_tls_store_free(st);
}

/* One exchange of n bytes each way with the record buffers released before each direction
 * (tls/mbedtls/patches/20-idle-buffers.patch): the data and the record sequence numbers survive. */
static void exchange_released(struct link *l, size_t n, unsigned seed)
{
    uint8_t *out = malloc(n), *in = malloc(n);
    assert_non_null(out);
    assert_non_null(in);
    fill_pattern(out, n, seed);
    assert_int_equal(wsg_tls_shrink(l->srv), 1);
    size_t off = 0, got = 0;
    while (off < n) {
        ssize_t w = wsg_tls_write(l->srv, out + off, n - off);
        if (w > 0)
            off += (size_t)w;
        else
            assert_int_equal(w, WSG_AGAIN);
        got += cli_drain(l, in + got, n - got);
    }
    got += cli_drain(l, in + got, n - got);
    assert_int_equal(got, n);
    assert_memory_equal(in, out, n);

    fill_pattern(out, n, seed + 1);
    assert_int_equal(wsg_tls_shrink(l->srv), 1);
    off = got = 0;
    while (off < n) {
        int r = mbedtls_ssl_write(&l->cli, out + off, n - off);
        if (r > 0)
            off += (size_t)r;
        else if (r == MBEDTLS_ERR_SSL_WANT_WRITE)
            got += srv_drain(l, in + got, n - got);
        else
            fail_msg("client write: -0x%04x", (unsigned)-r);
    }
    got += srv_drain(l, in + got, n - got);
    assert_int_equal(got, n);
    assert_memory_equal(in, out, n);
    free(out);
    free(in);
}

/* An idle connection gives mbedTLS's record buffers back and takes them again on the next read
 * or write; it refuses while anything waits in them. */
static void idle_release_case(struct wsg_tls_store *st, int tls12, const mbedtls_ssl_session *resume,
                              mbedtls_ssl_session *save)
{
    struct link l;
    link_open(&l, st, "localhost", tls12, resume);
    assert_int_equal(wsg_tls_shrink(l.srv), 0); /* no handshake yet */
    assert_int_equal(link_handshake(&l), WSG_OK);
    assert_int_equal(resume != NULL, wsg_tls_resumed(l.srv));
    assert_int_equal(wsg_tls_shrink(l.srv), 1);
    assert_int_equal(wsg_tls_shrink(l.srv), 1); /* already released: fine */
    /* 1 byte, a few records, several full records, and 1-byte again: sequence numbers advance */
    static const size_t sizes[] = {1, 5, 1000, 16384, 16385, 40000, 100 * 1024, 1};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        exchange_released(&l, sizes[i], (unsigned)i);

    /* decrypted bytes wait inside mbedTLS: not idle until they are read */
    uint8_t out[5000], in[5000];
    fill_pattern(out, sizeof(out), 42);
    assert_int_equal(wsg_tls_shrink(l.srv), 1);
    assert_int_equal(mbedtls_ssl_write(&l.cli, out, sizeof(out)), (int)sizeof(out));
    assert_int_equal(wsg_tls_read(l.srv, in, 100), 100);
    assert_int_equal(wsg_tls_shrink(l.srv), 0);
    assert_int_equal(srv_drain(&l, in + 100, sizeof(in) - 100), sizeof(in) - 100);
    assert_memory_equal(in, out, sizeof(out));
    assert_int_equal(wsg_tls_shrink(l.srv), 1);

    /* a record that has only partly arrived: not idle */
    assert_int_equal(mbedtls_ssl_write(&l.cli, out, 1000), 1000);
    uint8_t rec[2000];
    size_t rlen = wsg_buf_take(&l.c2s, rec, sizeof(rec));
    assert_true(rlen > 1000);
    assert_int_equal(wsg_buf_put(&l.c2s, rec, 700), 700);
    assert_int_equal(wsg_tls_read(l.srv, in, sizeof(in)), WSG_AGAIN);
    assert_int_equal(wsg_tls_shrink(l.srv), 0);
    assert_int_equal(wsg_buf_put(&l.c2s, rec + 700, rlen - 700), rlen - 700);
    assert_int_equal(srv_drain(&l, in, sizeof(in)), 1000);
    assert_memory_equal(in, out, 1000);
    assert_int_equal(wsg_tls_shrink(l.srv), 1);

    if (save != NULL) {
        assert_true(l.have_session);
        mbedtls_ssl_session_free(save);
        *save = l.saved;
        mbedtls_ssl_session_init(&l.saved);
    }

    /* a tampered record after a release is refused (bad MAC), not decrypted */
    assert_int_equal(mbedtls_ssl_write(&l.cli, out, 10), 10);
    rlen = wsg_buf_take(&l.c2s, rec, sizeof(rec));
    rec[rlen - 1] ^= 1;
    assert_int_equal(wsg_buf_put(&l.c2s, rec, rlen), rlen);
    assert_int_equal(wsg_tls_read(l.srv, in, sizeof(in)), WSG_ERR);
    assert_non_null(strstr(wsg_tls_error(l.srv), "bad record MAC"));
    link_close(&l);

    /* close_notify from a released connection */
    link_open(&l, st, "localhost", tls12, NULL);
    assert_int_equal(link_handshake(&l), WSG_OK);
    say_hello_both_ways(&l);
    assert_int_equal(wsg_tls_shrink(l.srv), 1);
    wsg_tls_close_notify(l.srv);
    uint8_t b[16];
    assert_int_equal(mbedtls_ssl_read(&l.cli, b, sizeof(b)), MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
    assert_int_equal(wsg_tls_shrink(l.srv), 1);
    assert_int_equal(mbedtls_ssl_close_notify(&l.cli), 0);
    assert_int_equal(wsg_tls_read(l.srv, b, sizeof(b)), WSG_EOF);
    link_close(&l);
}

static void test_idle_release(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_files(3600);
    mbedtls_ssl_session s13, s12;
    mbedtls_ssl_session_init(&s13);
    mbedtls_ssl_session_init(&s12);
    /* full handshakes that issue tickets (TLS 1.3: the server's handshake state is freed once
     * its NewSessionTicket is out), then resumptions with those tickets */
    idle_release_case(st, ANY_VERSION, NULL, &s13);
    idle_release_case(st, ANY_VERSION, &s13, NULL);
    idle_release_case(st, TLS12_ONLY, NULL, &s12);
    idle_release_case(st, TLS12_ONLY, &s12, NULL);
    mbedtls_ssl_session_free(&s13);
    mbedtls_ssl_session_free(&s12);
    wsg_tls_store_free(st);
}

/* The certificate the client received equals the leaf in path. */
static void assert_peer_is(struct link *l, const char *path)
{
    mbedtls_x509_crt want_crt;
    mbedtls_x509_crt_init(&want_crt);
    assert_int_equal(mbedtls_x509_crt_parse_file(&want_crt, path), 0);
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&l->cli);
    assert_non_null(peer);
    assert_int_equal(peer->raw.len, want_crt.raw.len);
    assert_memory_equal(peer->raw.p, want_crt.raw.p, want_crt.raw.len);
    mbedtls_x509_crt_free(&want_crt);
}

static void sni_case(struct wsg_tls_store *st, const char *sni, int tls12, const char *expect)
{
    struct link l;
    link_open(&l, st, sni, tls12, NULL);
    assert_int_equal(link_handshake(&l), WSG_OK);
    assert_peer_is(&l, expect);
    if (sni != NULL)
        assert_string_equal(wsg_tls_sni(l.srv), sni);
    else
        assert_null(wsg_tls_sni(l.srv));
    link_close(&l);
}

static void test_sni(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_files(0);
    sni_case(st, "x.b.test", ANY_VERSION, b_crt);
    sni_case(st, "a.test", ANY_VERSION, a_crt);
    sni_case(st, "A.Test", ANY_VERSION, a_crt);
    sni_case(st, "zzz.test", ANY_VERSION, d_crt);
    sni_case(st, "y.x.b.test", ANY_VERSION, d_crt); /* a wildcard covers one label only */
    sni_case(st, "b.test", ANY_VERSION, d_crt);
    sni_case(st, NULL, ANY_VERSION, d_crt);
    sni_case(st, "x.b.test", TLS12_ONLY, b_crt);
    sni_case(st, "nope.test", TLS12_ONLY, d_crt);
    wsg_tls_store_free(st);
}

/* Connects, exchanges a byte each way, returns whether the server says resumed. Saves the
 * client's session in *save when given. */
static int connect_once(struct wsg_tls_store *st, int tls12, const mbedtls_ssl_session *resume,
                        mbedtls_ssl_session *save)
{
    struct link l;
    uint8_t b;
    link_open(&l, st, "localhost", tls12, resume);
    assert_int_equal(link_handshake(&l), WSG_OK);
    assert_int_equal(wsg_tls_write(l.srv, "x", 1), 1);
    assert_int_equal(cli_drain(&l, &b, 1), 1);
    int resumed = wsg_tls_resumed(l.srv);
    if (save != NULL) {
        assert_true(l.have_session);
        mbedtls_ssl_session_free(save);
        *save = l.saved; /* move it out: link_close frees l.saved */
        mbedtls_ssl_session_init(&l.saved);
    }
    link_close(&l);
    return resumed;
}

static void test_tickets(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_files(3600);
    mbedtls_ssl_session s13, s12;
    mbedtls_ssl_session_init(&s13);
    mbedtls_ssl_session_init(&s12);

    assert_false(connect_once(st, ANY_VERSION, NULL, &s13));
    assert_true(connect_once(st, ANY_VERSION, &s13, NULL));
    assert_false(connect_once(st, TLS12_ONLY, NULL, &s12));
    assert_true(connect_once(st, TLS12_ONLY, &s12, NULL));

    /* the ticket keys live in the store: resumption survives a reload */
    char err[WSG_ERRLEN];
    struct wsg_tls_settings s = {.pairs = three, .npairs = 3, .ticket_lifetime = 3600};
    assert_int_equal(wsg_tls_store_reload(st, &s, err), 0);
    assert_int_equal(wsg_tls_store_generation(st), 2);
    assert_true(connect_once(st, ANY_VERSION, &s13, NULL));
    assert_true(connect_once(st, TLS12_ONLY, &s12, NULL));

    mbedtls_ssl_session_free(&s13);
    mbedtls_ssl_session_free(&s12);
    wsg_tls_store_free(st);

    /* ticket_lifetime 0: no tickets, a full handshake every time */
    st = store_files(0);
    mbedtls_ssl_session_init(&s12);
    assert_false(connect_once(st, TLS12_ONLY, NULL, &s12));
    assert_false(connect_once(st, TLS12_ONLY, &s12, NULL));
    mbedtls_ssl_session_free(&s12);
    wsg_tls_store_free(st);
}

/* ---- ticket_key_file (tls/tickets.c) ---- */

/* Writes keys (each 80 bytes from seed+i) as base64 lines, extra text appended, mode 0600. */
static void write_keys(const char *path, const unsigned *seeds, size_t n, const char *extra)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) {
        uint8_t k[WSG_TICKET_KEY_BYTES];
        for (size_t j = 0; j < sizeof(k); j++)
            k[j] = (uint8_t)(seeds[i] * 131 + j * 7);
        unsigned char b64[128];
        size_t olen;
        assert_int_equal(mbedtls_base64_encode(b64, sizeof(b64), &olen, k, sizeof(k)), 0);
        fprintf(f, "%.*s\n", (int)olen, b64);
    }
    if (extra)
        fputs(extra, f);
    fclose(f);
}

static struct wsg_tls_store *store_keys(const char *keyfile)
{
    struct wsg_tls_settings s = {
        .pairs = three, .npairs = 3, .ticket_lifetime = 3600, .ticket_key_file = keyfile};
    struct wsg_tls_store *st;
    char err[WSG_ERRLEN];
    if (wsg_tls_store_new(&st, &s, err) != 0)
        fail_msg("store_new: %s", err);
    return st;
}

static int reload_keys(struct wsg_tls_store *st, const char *keyfile, char err[WSG_ERRLEN])
{
    struct wsg_tls_settings s = {
        .pairs = three, .npairs = 3, .ticket_lifetime = 3600, .ticket_key_file = keyfile};
    return wsg_tls_store_reload(st, &s, err);
}

static void test_ticket_key_file_fleet(void **state)
{
    (void)state;
    char kf1[128], kf2[128], kf3[128], err[WSG_ERRLEN];
    snprintf(kf1, sizeof(kf1), "%s/t1.key", dir);
    snprintf(kf2, sizeof(kf2), "%s/t2.key", dir);
    snprintf(kf3, sizeof(kf3), "%s/t3.key", dir);
    const unsigned a[] = {1}, ba[] = {2, 1}, c[] = {3};
    write_keys(kf1, a, 1, NULL);
    write_keys(kf2, ba, 2, "\r\n  \n");
    write_keys(kf3, c, 1, NULL);

    /* two "gateways" with the same file: a session from one resumes on the other */
    struct wsg_tls_store *g1 = store_keys(kf1), *g2 = store_keys(kf1), *g3 = store_keys(kf3);
    assert_int_equal(wsg_tls_store_ticket_keys(g1), 1);
    for (int v = 0; v < 2; v++) {
        int tls12 = v ? TLS12_ONLY : ANY_VERSION;
        mbedtls_ssl_session s;
        mbedtls_ssl_session_init(&s);
        assert_false(connect_once(g1, tls12, NULL, &s));
        assert_true(connect_once(g2, tls12, &s, NULL));
        assert_true(connect_once(g1, tls12, &s, NULL));
        /* another fleet's key: a full handshake, not an error */
        assert_false(connect_once(g3, tls12, &s, NULL));
        mbedtls_ssl_session_free(&s);
    }

    /* rotation: g2 reloads [new, old]: it encrypts with the new key and still takes old tickets;
     * g1, not reloaded yet, takes none of the new ones (a full handshake) */
    mbedtls_ssl_session old, fresh;
    mbedtls_ssl_session_init(&old);
    mbedtls_ssl_session_init(&fresh);
    assert_false(connect_once(g1, ANY_VERSION, NULL, &old));
    assert_int_equal(reload_keys(g2, kf2, err), 0);
    assert_int_equal(wsg_tls_store_ticket_keys(g2), 2);
    assert_true(connect_once(g2, ANY_VERSION, &old, NULL));
    assert_false(connect_once(g2, ANY_VERSION, NULL, &fresh));
    assert_false(connect_once(g1, ANY_VERSION, &fresh, NULL));
    assert_int_equal(reload_keys(g1, kf2, err), 0);
    assert_true(connect_once(g1, ANY_VERSION, &fresh, NULL));
    /* the old key retired: its tickets stop resuming, the new ones go on */
    const unsigned b_only[] = {2};
    write_keys(kf1, b_only, 1, NULL);
    assert_int_equal(reload_keys(g1, kf1, err), 0);
    assert_false(connect_once(g1, ANY_VERSION, &old, NULL));
    assert_true(connect_once(g1, ANY_VERSION, &fresh, NULL));

    /* a bad file refuses the reload and the keys in use stay */
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "no key"},
        {"\n\n", "no key"},
        {"not*base64\n", ":1: not base64"},
        {"AAAA\n", ":1: a key is 80 bytes"},
        {"Zm9v!!\n", ":1: not base64"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(kf3, "w");
        fputs(bad[i].text, f);
        fclose(f);
        assert_int_equal(reload_keys(g1, kf3, err), -1);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("bad key file %zu: \"%s\", expected \"%s\"", i, err, bad[i].why);
        assert_true(connect_once(g1, ANY_VERSION, &fresh, NULL));
    }
    /* 81 and 79 bytes, on the second line; two keys with one name; a missing file */
    const unsigned two[] = {5, 6};
    write_keys(kf3, two, 2,
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
               "AAAAAAAAAAAAAAA\n");
    assert_int_equal(reload_keys(g1, kf3, err), -1);
    assert_non_null(strstr(err, ":3: a key is 80 bytes"));
    write_keys(kf3, a, 1, NULL);
    write_keys(kf2, a, 1, NULL);
    FILE *f = fopen(kf3, "a");
    FILE *g = fopen(kf2, "r");
    char line[200];
    assert_non_null(fgets(line, sizeof(line), g));
    fputs(line, f);
    fclose(f);
    fclose(g);
    assert_int_equal(reload_keys(g1, kf3, err), -1);
    assert_non_null(strstr(err, "same name"));
    assert_int_equal(reload_keys(g1, "/nonexistent/t.key", err), -1);
    assert_non_null(strstr(err, "/nonexistent/t.key: cannot read"));
    assert_int_equal(wsg_tls_store_ticket_keys(g1), 1);
    assert_true(connect_once(g1, ANY_VERSION, &fresh, NULL));
    /* and at start */
    struct wsg_tls_settings s = {
        .pairs = three, .npairs = 3, .ticket_lifetime = 3600, .ticket_key_file = "/nonexistent/t.key"};
    struct wsg_tls_store *none;
    assert_int_equal(wsg_tls_store_new(&none, &s, err), -1);

    mbedtls_ssl_session_free(&old);
    mbedtls_ssl_session_free(&fresh);
    wsg_tls_store_free(g1);
    wsg_tls_store_free(g2);
    wsg_tls_store_free(g3);
    unlink(kf1);
    unlink(kf2);
    unlink(kf3);
}

/* The parser alone: blanks, CRLF, the key cap. */
static void test_ticket_key_parse(void **state)
{
    (void)state;
    uint8_t keys[3][WSG_TICKET_KEY_BYTES];
    size_t n;
    char err[WSG_ERRLEN];
    char k80[200];
    uint8_t raw[80];
    size_t olen;
    memset(raw, 0xAB, sizeof(raw));
    assert_int_equal(mbedtls_base64_encode((unsigned char *)k80, sizeof(k80), &olen, raw, sizeof(raw)), 0);
    char text[1024];
    snprintf(text, sizeof(text), "\n  %s \r\n\n\t%s", k80, k80);
    assert_int_equal(wsg_tls_ticket_keys_parse("t", text, strlen(text), keys, 3, &n, err), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(keys[1], raw, 80);
    snprintf(text, sizeof(text), "%s\n%s\n%s\n%s\n", k80, k80, k80, k80);
    assert_int_equal(wsg_tls_ticket_keys_parse("t", text, strlen(text), keys, 3, &n, err), -1);
    assert_string_equal(err, "t:4: more than 3 keys");
    snprintf(text, sizeof(text), "%s%s\n", k80, k80); /* two keys on one line ("=" inside) */
    assert_int_equal(wsg_tls_ticket_keys_parse("t", text, strlen(text), keys, 3, &n, err), -1);
    assert_non_null(strstr(err, "t:1: not base64"));
    memset(text, 'A', 216); /* 162 bytes */
    text[216] = '\0';
    assert_int_equal(wsg_tls_ticket_keys_parse("t", text, strlen(text), keys, 3, &n, err), -1);
    assert_non_null(strstr(err, "t:1: a key is 80 bytes"));
    static const char nul[] = "QUJD\0RA==\n";
    assert_int_equal(wsg_tls_ticket_keys_parse("t", nul, sizeof(nul) - 1, keys, 3, &n, err), -1);
}

static void test_reload_and_generations(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_files(0);
    char err[WSG_ERRLEN];
    assert_int_equal(wsg_tls_store_generation(st), 1);
    assert_int_equal(wsg_tls_store_live_generations(st), 1);

    /* an old connection keeps generation 1 alive across a good reload */
    struct link old;
    link_open(&old, st, "a.test", ANY_VERSION, NULL);
    assert_int_equal(link_handshake(&old), WSG_OK);
    const struct wsg_tls_pair swapped[] = {{a_crt, a_key}};
    struct wsg_tls_settings s = {.pairs = swapped, .npairs = 1};
    assert_int_equal(wsg_tls_store_reload(st, &s, err), 0);
    assert_int_equal(wsg_tls_store_generation(st), 2);
    assert_int_equal(wsg_tls_store_live_generations(st), 2);
    assert_int_equal(wsg_tls_write(old.srv, "ok", 2), 2); /* still serving on generation 1 */
    uint8_t b[4];
    assert_int_equal(cli_drain(&old, b, sizeof(b)), 2);
    link_close(&old);
    assert_int_equal(wsg_tls_store_live_generations(st), 1);
    sni_case(st, "zzz.test", ANY_VERSION, a_crt); /* the new default */

    /* key/cert mismatch: fails, names the files, generation 2 keeps serving */
    const struct wsg_tls_pair bad[] = {{d_crt, d_key}, {a_crt, b_key}};
    s = (struct wsg_tls_settings){.pairs = bad, .npairs = 2};
    assert_int_equal(wsg_tls_store_reload(st, &s, err), -1);
    assert_non_null(strstr(err, b_key));
    assert_non_null(strstr(err, a_crt));
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(wsg_tls_store_generation(st), 2);
    assert_int_equal(wsg_tls_store_live_generations(st), 1);
    sni_case(st, "zzz.test", ANY_VERSION, a_crt);

    /* unparsable certificate and missing key file name the file too */
    char garbage[160];
    snprintf(garbage, sizeof(garbage), "%s/garbage.crt", dir);
    write_file(garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    const struct wsg_tls_pair unparsable[] = {{garbage, a_key}};
    s = (struct wsg_tls_settings){.pairs = unparsable, .npairs = 1};
    assert_int_equal(wsg_tls_store_reload(st, &s, err), -1);
    assert_non_null(strstr(err, garbage));
    assert_non_null(strstr(err, "cannot parse certificate"));
    const struct wsg_tls_pair missing[] = {{a_crt, "/nonexistent/k.pem"}};
    s = (struct wsg_tls_settings){.pairs = missing, .npairs = 1};
    assert_int_equal(wsg_tls_store_reload(st, &s, err), -1);
    assert_non_null(strstr(err, "/nonexistent/k.pem: cannot read: No such file or directory"));
    assert_int_equal(wsg_tls_store_generation(st), 2);
    assert_int_equal(wsg_tls_store_live_generations(st), 1);

    const struct wsg_tls_pair expired[] = {{x_crt, x_key}};
    s = (struct wsg_tls_settings){.pairs = expired, .npairs = 1};
    assert_int_equal(wsg_tls_store_reload(st, &s, err), -1);
    char want_msg[200];
    snprintf(want_msg, sizeof(want_msg), "%s: certificate expired on 2024-01-01", x_crt);
    assert_string_equal(err, want_msg);

    /* a bad store_new reports the same way and leaves nothing behind */
    struct wsg_tls_store *none = (struct wsg_tls_store *)&err;
    s = (struct wsg_tls_settings){.pairs = bad, .npairs = 2};
    assert_int_equal(wsg_tls_store_new(&none, &s, err), -1);
    assert_null(none);
    wsg_tls_store_free(st);
}

static char *describe(struct wsg_tls_store *st)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    wsg_tls_store_describe_json(st, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

/* GET /certs: the current generation's pairs and the live connections of every generation. */
static void test_describe(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_files(0);
    char err[WSG_ERRLEN];
    struct link one, two, three_;
    link_open(&one, st, "a.test", ANY_VERSION, NULL);
    assert_int_equal(link_handshake(&one), WSG_OK);
    link_open(&two, st, "x.b.test", ANY_VERSION, NULL);
    assert_int_equal(link_handshake(&two), WSG_OK);
    char *j = describe(st);
    assert_non_null(strstr(j, "{\"generation\":1,\"live_generations\":1,\"connections\":2,"));
    assert_non_null(strstr(j, "\"generations\":[{\"generation\":1,\"current\":true,\"connections\":2}]"));
    char want[512];
    /* (gen writes the subjectAltName entries in reverse order) */
    snprintf(want, sizeof(want),
             "{\"cert\":\"%s\",\"default\":true,\"names\":[\"localhost\",\"default.test\"],", d_crt);
    assert_non_null(strstr(j, want));
    snprintf(want, sizeof(want), "{\"cert\":\"%s\",\"default\":false,\"names\":[\"*.b.test\"],", b_crt);
    assert_non_null(strstr(j, want));
    free(j);

    /* a reload: the old connections stay counted on generation 1 */
    const struct wsg_tls_pair swapped[] = {{a_crt, a_key}};
    struct wsg_tls_settings s = {.pairs = swapped, .npairs = 1};
    assert_int_equal(wsg_tls_store_reload(st, &s, err), 0);
    link_open(&three_, st, "a.test", ANY_VERSION, NULL);
    assert_int_equal(link_handshake(&three_), WSG_OK);
    j = describe(st);
    assert_non_null(strstr(j, "{\"generation\":2,\"live_generations\":2,\"connections\":3,"));
    assert_non_null(strstr(j, "[{\"generation\":2,\"current\":true,\"connections\":1},"
                              "{\"generation\":1,\"current\":false,\"connections\":2}]"));
    /* the fingerprint, subject and dates are the ones wsgate-certs check reports */
    struct wsg_tls_check_report r;
    assert_int_equal(wsg_tls_check_pair(&swapped[0], NULL, &r), 0);
    snprintf(want, sizeof(want), "\"names\":[\"a.test\"],\"subject\":\"%s\",\"fingerprint_sha256\":\"%s\"",
             r.subject, r.sha256);
    assert_non_null(strstr(j, want));
    long long left = 0;
    const char *sl = strstr(j, "\"seconds_left\":");
    assert_non_null(sl);
    left = strtoll(sl + 15, NULL, 10);
    assert_true(left > 29LL * 86400 && left <= 30LL * 86400);
    assert_null(strstr(j, d_crt)); /* only the current generation's pairs */
    wsg_tls_check_report_free(&r);
    free(j);

    /* the last connection of generation 1 frees it */
    link_close(&one);
    link_close(&two);
    j = describe(st);
    assert_non_null(strstr(j, "\"generations\":[{\"generation\":2,\"current\":true,\"connections\":1}]"));
    assert_int_equal(wsg_tls_store_live_generations(st), 1);
    free(j);
    link_close(&three_);
    j = describe(st);
    assert_non_null(strstr(j, "\"connections\":0,"));
    free(j);
    wsg_tls_store_free(st);
}

/* The store and wsgate-certs check load through the same code: the same sentence for the same files. */
static void test_store_and_check_agree(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_files(0);
    char err[WSG_ERRLEN];
    const struct wsg_tls_pair cases[] = {
        {a_crt, b_key}, {x_crt, x_key}, {a_crt, "/nonexistent/k.pem"}, {"/nonexistent/c.pem", a_key}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wsg_tls_settings s = {.pairs = &cases[i], .npairs = 1};
        struct wsg_tls_check_report r;
        assert_int_equal(wsg_tls_store_reload(st, &s, err), -1);
        assert_int_equal(wsg_tls_check_pair(&cases[i], NULL, &r), -1);
        assert_true(r.nproblems >= 1);
        assert_string_equal(err, r.problems[0]);
        wsg_tls_check_report_free(&r);
    }
    assert_int_equal(wsg_tls_store_generation(st), 1);
    wsg_tls_store_free(st);
}

struct churn {
    struct wsg_tls_store *st;
    int failures;
};

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < 300; i++) {
        struct wsg_buf in, out;
        wsg_buf_setup(&in, 1024);
        wsg_buf_setup(&out, 1024);
        struct wsg_tls *t = wsg_tls_new(c->st, &in, &out);
        if (t == NULL || wsg_tls_handshake(t) != WSG_AGAIN)
            c->failures++;
        wsg_tls_free(t);
        wsg_buf_free(&in);
        wsg_buf_free(&out);
    }
    return NULL;
}

/* wsg_tls_new/free on four threads while the main thread reloads. */
static void test_reload_concurrent(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_files(600);
    struct churn c[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (struct churn){st, 0};
        assert_int_equal(pthread_create(&th[i], NULL, churn_thread, &c[i]), 0);
    }
    char err[WSG_ERRLEN];
    struct wsg_tls_settings s = {.pairs = three, .npairs = 3, .ticket_lifetime = 600};
    for (int i = 0; i < 10; i++) {
        if (wsg_tls_store_reload(st, &s, err) != 0)
            fail_msg("reload: %s", err);
        free(describe(st)); /* walks the generations while connections come and go */
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(c[i].failures, 0);
    }
    assert_int_equal(wsg_tls_store_generation(st), 11);
    assert_int_equal(wsg_tls_store_live_generations(st), 1);
    wsg_tls_store_free(st);
}

static void test_selfsigned(void **state)
{
    (void)state;
    static const char *const names[] = {"localhost", "127.0.0.1", "::1", "example.test"};
    char cpem[8192], kpem[1024], err[WSG_ERRLEN];
    assert_int_equal(wsg_tls_gen_selfsigned(names, 4, 10, cpem, sizeof(cpem), kpem, sizeof(kpem), err), 0);
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    mbedtls_x509_crt_init(&crt);
    mbedtls_pk_init(&key);
    assert_int_equal(mbedtls_x509_crt_parse(&crt, (const unsigned char *)cpem, strlen(cpem) + 1), 0);
    assert_int_equal(
        mbedtls_pk_parse_key(&key, (const unsigned char *)kpem, strlen(kpem) + 1, NULL, 0, rng_cb, rng), 0);
    assert_int_equal(mbedtls_pk_check_pair(&crt.pk, &key, rng_cb, rng), 0);
    assert_int_equal(mbedtls_pk_get_type(&key), MBEDTLS_PK_ECKEY);
    assert_false(mbedtls_x509_time_is_past(&crt.valid_to));
    assert_false(mbedtls_x509_time_is_future(&crt.valid_from));

    char dn[128];
    assert_true(mbedtls_x509_dn_gets(dn, sizeof(dn), &crt.subject) > 0);
    assert_string_equal(dn, "CN=localhost");

    int dns_localhost = 0, dns_example = 0, ip4 = 0, ip6 = 0;
    static const unsigned char v4[4] = {127, 0, 0, 1}, v6[16] = {[15] = 1};
    for (const mbedtls_x509_sequence *s = &crt.subject_alt_names; s != NULL; s = s->next) {
        mbedtls_x509_subject_alternative_name san;
        memset(&san, 0, sizeof(san));
        assert_int_equal(mbedtls_x509_parse_subject_alt_name(&s->buf, &san), 0);
        const mbedtls_x509_buf *v = &san.san.unstructured_name;
        if (san.type == MBEDTLS_X509_SAN_DNS_NAME && v->len == 9 && memcmp(v->p, "localhost", 9) == 0)
            dns_localhost = 1;
        if (san.type == MBEDTLS_X509_SAN_DNS_NAME && v->len == 12 && memcmp(v->p, "example.test", 12) == 0)
            dns_example = 1;
        if (san.type == MBEDTLS_X509_SAN_IP_ADDRESS && v->len == 4 && memcmp(v->p, v4, 4) == 0)
            ip4 = 1;
        if (san.type == MBEDTLS_X509_SAN_IP_ADDRESS && v->len == 16 && memcmp(v->p, v6, 16) == 0)
            ip6 = 1;
        mbedtls_x509_free_subject_alt_name(&san);
    }
    assert_true(dns_localhost && dns_example && ip4 && ip6);
    assert_int_equal(mbedtls_x509_crt_check_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE), 0);

    /* too small an output buffer is an error, not an overflow */
    assert_int_equal(wsg_tls_gen_selfsigned(names, 4, 10, cpem, 100, kpem, sizeof(kpem), err), -1);
    assert_int_equal(wsg_tls_gen_selfsigned(names, 0, 10, cpem, sizeof(cpem), kpem, sizeof(kpem), err), -1);
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&crt);
}

static void bad_hello(struct wsg_tls_store *st, const void *bytes, size_t len, const char *expect)
{
    struct wsg_buf cin, cout;
    wsg_buf_setup(&cin, BUFCAP);
    wsg_buf_setup(&cout, BUFCAP);
    struct wsg_tls *t = wsg_tls_new(st, &cin, &cout);
    assert_non_null(t);
    assert_int_equal(wsg_buf_put(&cin, bytes, len), len);
    int r = WSG_AGAIN;
    for (int i = 0; i < 4 && r == WSG_AGAIN; i++)
        r = wsg_tls_handshake(t);
    assert_int_equal(r, WSG_ERR);
    if (strstr(wsg_tls_error(t), expect) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", wsg_tls_error(t), expect);
    wsg_tls_free(t);
    wsg_buf_free(&cin);
    wsg_buf_free(&cout);
}

static void test_bad_client_hello(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_generated(0);
    static const char http[] = "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
    bad_hello(st, http, sizeof(http) - 1, "TLS handshake");

    /* A TLS 1.0-only ClientHello: version 3.1, one suite (AES128-SHA), no extensions. */
    uint8_t hello[5 + 4 + 2 + 32 + 1 + 4 + 2];
    size_t body = sizeof(hello) - 9;
    uint8_t *p = hello;
    *p++ = 0x16, *p++ = 3, *p++ = 1, *p++ = 0, *p++ = (uint8_t)(body + 4);
    *p++ = 1, *p++ = 0, *p++ = 0, *p++ = (uint8_t)body;
    *p++ = 3, *p++ = 1;
    memset(p, 0x5a, 32), p += 32;
    *p++ = 0;
    *p++ = 0, *p++ = 2, *p++ = 0x00, *p++ = 0x2f;
    *p++ = 1, *p++ = 0;
    assert_int_equal((size_t)(p - hello), sizeof(hello));
    bad_hello(st, hello, sizeof(hello), "unsupported protocol version");

    /* Random bytes after a plausible record header */
    uint8_t junk[300];
    assert_int_equal(wsg_rng_fill(rng, junk, sizeof(junk)), 0);
    junk[0] = 0x16, junk[1] = 3, junk[2] = 1, junk[3] = 1, junk[4] = 0x20;
    bad_hello(st, junk, sizeof(junk), "TLS handshake");
    wsg_tls_store_free(st);
}

/* The suite a client gets: order is the store's cipher_order, suites what the client offers
 * (NULL: mbedTLS's default list, which starts with AES-256-GCM). */
static void expect_suite(unsigned order, int tls12, const int *suites, const char *want)
{
    static const char *const names[] = {"localhost"};
    struct wsg_tls_settings s = {.gen_names = names, .ngen_names = 1, .cipher_order = order};
    struct wsg_tls_store *st;
    char err[WSG_ERRLEN];
    if (wsg_tls_store_new(&st, &s, err) != 0)
        fail_msg("store_new: %s", err);
    struct link l;
    cli_suites = suites;
    link_open(&l, st, "localhost", tls12, NULL);
    cli_suites = NULL;
    assert_int_equal(link_handshake(&l), WSG_OK);
    if (strcmp(wsg_tls_cipher(l.srv), want) != 0)
        fail_msg("order %u tls12 %d: got %s, want %s", order, tls12, wsg_tls_cipher(l.srv), want);
    say_hello_both_ways(&l); /* and data flows both ways on it */
    link_close(&l);
    wsg_tls_store_free(st);
}

static size_t hello_start(uint8_t *h);

/* A connection whose client sent nothing (or not the whole suite list yet) has no mbedTLS
 * configuration bound: every accessor must still answer (the fuzzer found version() crashing). */
static void test_before_hello(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_generated(0);
    struct wsg_buf cin, cout;
    wsg_buf_setup(&cin, BUFCAP);
    wsg_buf_setup(&cout, BUFCAP);
    struct wsg_tls *t = wsg_tls_new(st, &cin, &cout);
    assert_non_null(t);
    uint8_t h[128];
    size_t n = hello_start(h);
    for (size_t part = 0; part <= 40; part += 40) { /* nothing, then a first piece of a hello */
        assert_int_equal(wsg_buf_put(&cin, h, part), part);
        assert_int_equal(wsg_tls_handshake(t), WSG_AGAIN);
        assert_string_equal(wsg_tls_version(t), "none");
        assert_string_equal(wsg_tls_cipher(t), "none");
        assert_false(wsg_tls_resumed(t));
        assert_int_equal(wsg_tls_pending(t), 0);
        assert_true(wsg_tls_write_reserve(t) > 0);
        assert_int_equal(wsg_tls_write(t, "x", 1), WSG_AGAIN);
        wsg_tls_close_notify(t);
        assert_int_equal(wsg_buf_len(&cout), 0);
        wsg_buf_consume(&cin, wsg_buf_len(&cin));
    }
    assert_true(n > 40);
    wsg_tls_free(t);
    wsg_buf_free(&cin);
    wsg_buf_free(&cout);
    wsg_tls_store_free(st);
}

static void test_cipher_order(void **state)
{
    (void)state;
    static const int aes128_only[] = {MBEDTLS_TLS1_3_AES_128_GCM_SHA256, 0};
    static const int aes256_then_cc[] = {MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
                                         MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256, 0};
    static const int cc_then_aes128[] = {MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
                                         MBEDTLS_TLS1_3_AES_128_GCM_SHA256, 0};
    /* server order: AES-128-GCM whenever offered, wherever it is in the client's list */
    expect_suite(WSG_TLS_ORDER_SERVER, ANY_VERSION, NULL, "TLS1-3-AES-128-GCM-SHA256");
    expect_suite(WSG_TLS_ORDER_SERVER, ANY_VERSION, cc_then_aes128, "TLS1-3-AES-128-GCM-SHA256");
    expect_suite(WSG_TLS_ORDER_SERVER, ANY_VERSION, aes128_only, "TLS1-3-AES-128-GCM-SHA256");
    /* without AES-128-GCM in its list, the client's first */
    expect_suite(WSG_TLS_ORDER_SERVER, ANY_VERSION, aes256_then_cc, "TLS1-3-AES-256-GCM-SHA384");
    expect_suite(WSG_TLS_ORDER_SERVER, TLS12_ONLY, NULL, "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256");
    /* client order: the client's first */
    expect_suite(WSG_TLS_ORDER_CLIENT, ANY_VERSION, aes256_then_cc, "TLS1-3-AES-256-GCM-SHA384");
    expect_suite(WSG_TLS_ORDER_CLIENT, ANY_VERSION, cc_then_aes128, "TLS1-3-CHACHA20-POLY1305-SHA256");
    expect_suite(WSG_TLS_ORDER_CLIENT, ANY_VERSION, aes128_only, "TLS1-3-AES-128-GCM-SHA256");
}

/* A ClientHello start: record and handshake headers, version, random, a 32-byte session id and
 * the suites 0x1301 0x1302 0x1303 (wsg_tls_hello_offers reads no further). */
static size_t hello_start(uint8_t *h)
{
    size_t n = 0;
    h[n++] = 0x16, h[n++] = 3, h[n++] = 1, h[n++] = 0x01, h[n++] = 0x00; /* record of 256 bytes */
    h[n++] = 1, h[n++] = 0, h[n++] = 0, h[n++] = 0xfc;
    h[n++] = 3, h[n++] = 3;
    memset(h + n, 0x11, 32), n += 32;
    h[n++] = 32;
    memset(h + n, 0x22, 32), n += 32;
    h[n++] = 0, h[n++] = 6;
    h[n++] = 0x13, h[n++] = 0x01, h[n++] = 0x13, h[n++] = 0x02, h[n++] = 0x13, h[n++] = 0x03;
    return n;
}

static void test_hello_offers(void **state)
{
    (void)state;
    uint8_t h[128];
    size_t n = hello_start(h);
    /* every cut before the end of the suite list: not decided yet; reads nothing beyond len (a
     * copy of just that prefix in its own allocation, so ASan sees any overread) */
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *p = malloc(cut + 1);
        assert_non_null(p);
        memcpy(p, h, cut);
        assert_int_equal(wsg_tls_hello_offers(p, cut, 0x1303), WSG_AGAIN);
        free(p);
    }
    assert_int_equal(wsg_tls_hello_offers(h, n, 0x1303), 1);
    assert_int_equal(wsg_tls_hello_offers(h, n, 0x1301), 1);
    assert_int_equal(wsg_tls_hello_offers(h, n, 0xcca9), 0);
    /* not a ClientHello start: 0 (mbedTLS answers it), as soon as that can be seen */
    uint8_t b[128];
    memcpy(b, h, n), b[0] = 0x17;
    assert_int_equal(wsg_tls_hello_offers(b, 5, 0x1303), 0);
    memcpy(b, h, n), b[1] = 2;
    assert_int_equal(wsg_tls_hello_offers(b, n, 0x1303), 0);
    memcpy(b, h, n), b[5] = 2; /* ServerHello */
    assert_int_equal(wsg_tls_hello_offers(b, n, 0x1303), 0);
    memcpy(b, h, n), b[43] = 33; /* session id over 32 bytes */
    assert_int_equal(wsg_tls_hello_offers(b, n, 0x1303), 0);
    memcpy(b, h, n), b[77] = 5; /* odd suite list length */
    assert_int_equal(wsg_tls_hello_offers(b, n, 0x1303), 0);
    memcpy(b, h, n), b[76] = 0x10; /* suite list longer than the record */
    assert_int_equal(wsg_tls_hello_offers(b, n, 0x1303), 0);
    memcpy(b, h, n), b[3] = 0, b[4] = 40; /* record too short for the header fields */
    assert_int_equal(wsg_tls_hello_offers(b, n, 0x1303), 0);
    memcpy(b, h, n), b[3] = 0, b[4] = 78; /* record ends inside the suite list */
    assert_int_equal(wsg_tls_hello_offers(b, n, 0x1303), 0);
}

/* ---- ACME TLS-ALPN-01 challenges (issue 16, tls/acme.c) ---- */

/* A TLS-ALPN-01 challenge written with mbedTLS: self-signed P-256 for name, with the
 * acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding OCTET STRING(idlen bytes), critical or
 * not (id 0: none). PEM certificate then PEM key into pem; the certificate's DER into der. */
static void gen_challenge(const char *name, int id, int critical, size_t idlen, char *pem, size_t cap,
                          unsigned char *der, size_t *derlen)
{
    static const unsigned char oid[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f};
    mbedtls_pk_context key;
    mbedtls_x509write_cert w;
    unsigned char cpem[4096], kpem[1024], serial[1] = {7}, value[2 + 64];
    char subject[128];
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&w);
    assert_int_equal(mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
    assert_int_equal(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), rng_cb, rng), 0);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, &key);
    mbedtls_x509write_crt_set_issuer_key(&w, &key);
    snprintf(subject, sizeof(subject), "CN=%s", name);
    assert_int_equal(mbedtls_x509write_crt_set_subject_name(&w, subject), 0);
    assert_int_equal(mbedtls_x509write_crt_set_issuer_name(&w, subject), 0);
    assert_int_equal(mbedtls_x509write_crt_set_serial_raw(&w, serial, 1), 0);
    assert_int_equal(mbedtls_x509write_crt_set_validity(&w, "20200101000000", "20991231000000"), 0);
    mbedtls_x509_san_list san = {.node = {.type = MBEDTLS_X509_SAN_DNS_NAME}};
    san.node.san.unstructured_name.p = (unsigned char *)(uintptr_t)name;
    san.node.san.unstructured_name.len = strlen(name);
    assert_int_equal(mbedtls_x509write_crt_set_subject_alternative_name(&w, &san), 0);
    if (id) {
        value[0] = 0x04;
        value[1] = (unsigned char)idlen;
        assert_int_equal(wsg_rng_fill(rng, value + 2, idlen), 0);
        assert_int_equal(mbedtls_x509write_crt_set_extension(&w, (const char *)oid, sizeof(oid), critical,
                                                             value, 2 + idlen),
                         0);
    }
    assert_int_equal(mbedtls_x509write_crt_pem(&w, cpem, sizeof(cpem), rng_cb, rng), 0);
    assert_int_equal(mbedtls_pk_write_key_pem(&key, kpem, sizeof(kpem)), 0);
    snprintf(pem, cap, "%s%s", (const char *)cpem, (const char *)kpem);
    if (der != NULL) {
        mbedtls_pem_context pc;
        mbedtls_pem_init(&pc);
        size_t used, dl;
        assert_int_equal(mbedtls_pem_read_buffer(&pc, "-----BEGIN CERTIFICATE-----",
                                                 "-----END CERTIFICATE-----", cpem, NULL, 0, &used),
                         0);
        const unsigned char *d = mbedtls_pem_get_buffer(&pc, &dl);
        memcpy(der, d, dl);
        *derlen = dl;
        mbedtls_pem_free(&pc);
    }
    mbedtls_x509write_crt_free(&w);
    mbedtls_pk_free(&key);
}

static void count_name(void *arg, const char *name)
{
    (void)name;
    (*(int *)arg)++;
}

static void test_acme_challenges(void **state)
{
    (void)state;
    struct wsg_tls_store *st = store_files(0);
    char pem[8192], other[8192], err[WSG_ERRLEN];
    unsigned char der[2048];
    size_t derlen = 0;
    uint64_t served, unknown;

    /* what PUT refuses, and why */
    gen_challenge("acme.test", 0, 0, 0, pem, sizeof(pem), NULL, NULL);
    assert_int_equal(wsg_tls_acme_put(st, "acme.test", pem, strlen(pem), err), -1);
    assert_non_null(strstr(err, "lacks the acmeIdentifier"));
    gen_challenge("acme.test", 1, 0, 32, pem, sizeof(pem), NULL, NULL);
    assert_int_equal(wsg_tls_acme_put(st, "acme.test", pem, strlen(pem), err), -1);
    assert_non_null(strstr(err, "not critical"));
    gen_challenge("acme.test", 1, 1, 31, pem, sizeof(pem), NULL, NULL);
    assert_int_equal(wsg_tls_acme_put(st, "acme.test", pem, strlen(pem), err), -1);
    assert_non_null(strstr(err, "32 bytes"));
    gen_challenge("acme.test", 1, 1, 32, pem, sizeof(pem), NULL, NULL);
    assert_int_equal(wsg_tls_acme_put(st, "other.test", pem, strlen(pem), err), -1);
    assert_non_null(strstr(err, "subjectAltName"));
    gen_challenge("acme.test", 1, 1, 32, other, sizeof(other), NULL, NULL);
    char *mixed = malloc(16384);
    assert_non_null(mixed);
    /* this certificate, another's key */
    snprintf(mixed, 16384, "%.*s%s", (int)(strstr(pem, "-----END CERTIFICATE-----") - pem + 26), pem,
             strstr(other, "-----BEGIN EC PRIVATE KEY-----"));
    assert_int_equal(wsg_tls_acme_put(st, "acme.test", mixed, strlen(mixed), err), -1);
    assert_non_null(strstr(err, "does not match"));
    free(mixed);
    assert_int_equal(wsg_tls_acme_put(st, "acme.test", pem, 100, err), -1); /* cut */
    assert_int_equal(wsg_tls_acme_count(st), 0);
    assert_int_equal(wsg_tls_acme_delete(st, "acme.test"), -1);

    gen_challenge("acme.test", 1, 1, 32, pem, sizeof(pem), der, &derlen);
    assert_int_equal(wsg_tls_acme_put(st, "acme.test", pem, strlen(pem), err), 0);
    assert_int_equal(wsg_tls_acme_put(st, "acme.test", pem, strlen(pem), err), 1); /* replaced */
    assert_int_equal(wsg_tls_acme_count(st), 1);

    /* acme-tls/1 alone over TLS 1.2, whose Certificate message is in the clear: the server
     * selects the challenge, then it is deleted while the server is stuck mid-flight on a small
     * output buffer; the handshake goes on with the entry it holds (ASan: no use after free)
     * and the challenge's DER is what it sends. */
    static const char *acme_only[] = {"acme-tls/1", NULL};
    cli_alpn_list = acme_only;
    struct link l;
    link_open(&l, st, "ACME.test", TLS12_ONLY, NULL);
    wsg_buf_setup(&l.s2c, 300);
    assert_true(want(mbedtls_ssl_handshake(&l.cli))); /* ClientHello */
    assert_int_equal(wsg_tls_handshake(l.srv), WSG_AGAIN);
    assert_true(wsg_tls_is_acme(l.srv));
    assert_int_equal(wsg_tls_acme_delete(st, "acme.test"), 0);
    assert_int_equal(wsg_tls_acme_count(st), 0);
    unsigned char *seen = malloc(65536);
    size_t nseen = 0;
    for (int i = 0; i < 200; i++) {
        uint32_t len;
        const uint8_t *p = wsg_buf_peek(&l.s2c, &len);
        assert_true(nseen + len <= 65536);
        if (len != 0)
            memcpy(seen + nseen, p, len);
        nseen += len;
        wsg_buf_consume(&l.s2c, len);
        assert_int_equal(wsg_tls_handshake(l.srv), WSG_AGAIN);
    }
    assert_non_null(memmem(seen, nseen, der, derlen));
    free(seen);
    link_close(&l);
    wsg_tls_acme_stats(st, &served, &unknown);
    assert_int_equal(served, 1);
    assert_int_equal(unknown, 0);

    /* acme-tls/1 for a name without a challenge: the handshake fails */
    link_open(&l, st, "acme.test", ANY_VERSION, NULL);
    int s = WSG_AGAIN;
    for (int i = 0; i < 20 && s == WSG_AGAIN; i++) {
        (void)mbedtls_ssl_handshake(&l.cli);
        s = wsg_tls_handshake(l.srv);
    }
    assert_int_equal(s, WSG_ERR);
    assert_false(wsg_tls_is_acme(l.srv));
    link_close(&l);
    wsg_tls_acme_stats(st, &served, &unknown);
    assert_int_equal(unknown, 1);

    /* a client offering http/1.1 as well gets http/1.1 and the configured certificate, while a
     * challenge is held for its name */
    gen_challenge("a.test", 1, 1, 32, pem, sizeof(pem), NULL, NULL);
    assert_int_equal(wsg_tls_acme_put(st, "a.test", pem, strlen(pem), err), 0);
    static const char *both[] = {"acme-tls/1", "http/1.1", NULL};
    cli_alpn_list = both;
    link_open(&l, st, "a.test", ANY_VERSION, NULL);
    assert_int_equal(link_handshake(&l), WSG_OK);
    assert_string_equal(mbedtls_ssl_get_alpn_protocol(&l.cli), "http/1.1");
    assert_false(wsg_tls_is_acme(l.srv));
    assert_peer_is(&l, a_crt);
    link_close(&l);
    cli_alpn_list = cli_alpn;
    int listed = 0;
    wsg_tls_acme_list(st, count_name, &listed);
    assert_int_equal(listed, 1);

    /* at most WSG_TLS_ACME_MAX names */
    for (int i = 0; i < WSG_TLS_ACME_MAX - 1; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n%d.test", i);
        gen_challenge(name, 1, 1, 32, pem, sizeof(pem), NULL, NULL);
        assert_int_equal(wsg_tls_acme_put(st, name, pem, strlen(pem), err), 0);
    }
    gen_challenge("full.test", 1, 1, 32, pem, sizeof(pem), NULL, NULL);
    assert_int_equal(wsg_tls_acme_put(st, "full.test", pem, strlen(pem), err), -2);
    assert_int_equal(wsg_tls_acme_count(st), WSG_TLS_ACME_MAX);
    wsg_tls_store_free(st); /* frees the held challenges (ASan: no leak) */
}

static int reset_alpn(void **state)
{
    (void)state;
    cli_alpn_list = cli_alpn; /* also when test_acme_challenges failed half-way */
    return 0;
}

static void test_rng(void **state)
{
    (void)state;
    uint8_t a[3000], b[3000];
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(wsg_rng_fill(rng, a, sizeof(a)), 0); /* more than one DRBG request */
    assert_int_equal(wsg_rng_fill(rng, b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a + 2000, b + 2000, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_data),
        cmocka_unit_test_teardown(test_acme_challenges, reset_alpn),
        cmocka_unit_test(test_small_buffers),
        cmocka_unit_test(test_tls12_suite),
        cmocka_unit_test(test_sni),
        cmocka_unit_test(test_tickets),
        cmocka_unit_test(test_reload_and_generations),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_store_and_check_agree),
        cmocka_unit_test(test_reload_concurrent),
        cmocka_unit_test(test_selfsigned),
        cmocka_unit_test(test_bad_client_hello),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_cipher_order),
        cmocka_unit_test(test_hello_offers),
        cmocka_unit_test(test_before_hello),
        cmocka_unit_test(test_idle_release),
        cmocka_unit_test(test_ticket_key_file_fleet),
        cmocka_unit_test(test_ticket_key_parse),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
