/* mbedtls_raw: mbedTLS's own ceilings on this machine, as reference lines for the wsgate bench.
 *
 *   mbedtls_raw --cert CERT.pem --key KEY.pem [-d SECONDS] [-s WRITE_SIZE] [--suites LIST]
 *               [--no-handshakes] [--no-records] [--primitives]
 *
 * An mbedTLS client and an mbedTLS server in one process, one thread, connected by two memory
 * buffers (no sockets, no system calls on the data path). Same library build as wsgate
 * (build/deps/mbedtls or the system's 3.6) and the same server-side choices (TLS 1.2-1.3,
 * groups X25519 first, no client authentication).
 *
 * Records (per TLS 1.3 suite): after one handshake, the client writes WRITE_SIZE-byte buffers
 * (256 KiB by default; mbedtls_ssl_write cuts them into 16 KiB records) and the server reads them,
 * for SECONDS (3 by default). Every byte is encrypted once and decrypted once, which is the crypto
 * work a proxy does per echoed byte (decrypt the client's message, encrypt the echo), so mb_per_s is
 * directly comparable with a proxy's echo payload bytes/s. enc/dec rates are over the thread CPU
 * time spent in mbedtls_ssl_write / mbedtls_ssl_read alone (robust to other load on the machine).
 *
 * Handshakes (TLS 1.3 and TLS 1.2): full handshakes, a fresh client and server context each time,
 * ECDSA P-256 certificate (the one given), X25519 key exchange, no tickets, no resumption.
 * server_per_s = handshakes / thread CPU time spent in the server's mbedtls_ssl_handshake calls
 * (the server side's ceiling per core; the client's work is counted separately in client_per_s).
 * Resumed (mode "resumed", TLS 1.3 and TLS 1.2): the same, each client offering the ticket of one
 * priming handshake, the server configured like wsgate (tickets sealed with AES-256-GCM; TLS 1.3
 * psk_dhe_ke, so a resumption still does an X25519 exchange, as every browser and OpenSSL ask; a
 * fresh ticket is sent after each TLS 1.3 handshake, as wsgate does).
 *
 * Primitives (--primitives, off by default): the PSA calls a TLS 1.3 server makes, one at a time, per
 * thread CPU second: deterministic ECDSA P-256 signing, the X25519 / P-256 key share (generate_key +
 * export_public_key) and shared secret, AES-GCM and ChaCha20-Poly1305 one-shot encrypt+decrypt of
 * 16 KiB and 1 KiB in place. With our build these run on the nettle driver (tls/psa/), with Debian's
 * on mbedTLS's built-in code; bench/nettle_raw gives nettle's own ceilings for the same operations.
 *
 * Output: one JSON line per measurement on stdout, a human line per measurement on stderr.
 *
 * Build: gcc -O2 -isystem build/deps/mbedtls/usr/include mbedtls_raw.c \
 *          build/deps/mbedtls/usr/lib/x86_64-linux-gnu/{libmbedtls,libmbedx509,libmbedcrypto}.a
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

/* ---------------------------------------------------------------- memory "sockets" */
struct pipe {
    unsigned char *b;
    size_t cap, r, w;
};

static int p_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct pipe *p = ctx;
    if (p->cap - p->w < len && p->r > 0) { /* compact */
        memmove(p->b, p->b + p->r, p->w - p->r);
        p->w -= p->r;
        p->r = 0;
    }
    size_t room = p->cap - p->w;
    if (room == 0)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    size_t n = len < room ? len : room;
    memcpy(p->b + p->w, buf, n);
    p->w += n;
    return (int)n;
}

static int p_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct pipe *p = ctx;
    size_t avail = p->w - p->r;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = len < avail ? len : avail;
    memcpy(buf, p->b + p->r, n);
    p->r += n;
    if (p->r == p->w)
        p->r = p->w = 0;
    return (int)n;
}

static struct pipe c2s, s2c;

/* ---------------------------------------------------------------- setup */
static mbedtls_entropy_context g_entropy;
static mbedtls_ctr_drbg_context g_drbg;
static mbedtls_x509_crt g_crt;
static mbedtls_pk_context g_key;
static mbedtls_ssl_ticket_context g_ticket;

static const int server_suites[] = {
    /* wsgate's list (tls/store.c) */
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};
static const uint16_t server_groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_X25519, MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_NONE};
/* X25519 is the key share (TLS 1.3) / the ECDHE group (TLS 1.2); P-256 must be listed too, since TLS 1.2
 * checks the ECDSA certificate's curve against this list. */
static const uint16_t client_groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_X25519, MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1, MBEDTLS_SSL_IANA_TLS_GROUP_NONE};

static struct {
    const char *name, *openssl;
    int id;
} g_suites[] = {
    {"TLS1-3-AES-128-GCM-SHA256", "TLS_AES_128_GCM_SHA256", MBEDTLS_TLS1_3_AES_128_GCM_SHA256},
    {"TLS1-3-AES-256-GCM-SHA384", "TLS_AES_256_GCM_SHA384", MBEDTLS_TLS1_3_AES_256_GCM_SHA384},
    {"TLS1-3-CHACHA20-POLY1305-SHA256", "TLS_CHACHA20_POLY1305_SHA256",
     MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256},
};

static void die_mbed(const char *what, int ret)
{
    char b[200];
    mbedtls_strerror(ret, b, sizeof(b));
    fprintf(stderr, "mbedtls_raw: %s: -0x%04x %s\n", what, (unsigned)-ret, b);
    exit(1);
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void conf_server(mbedtls_ssl_config *conf, mbedtls_ssl_protocol_version maxv)
{
    mbedtls_ssl_config_init(conf);
    int ret = mbedtls_ssl_config_defaults(conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0)
        ret = mbedtls_ssl_conf_own_cert(conf, &g_crt, &g_key);
    if (ret)
        die_mbed("server config", ret);
    mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &g_drbg);
    mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(conf, maxv);
    mbedtls_ssl_conf_ciphersuites(conf, server_suites);
    mbedtls_ssl_conf_groups(conf, server_groups);
    mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#if defined(MBEDTLS_SSL_SESSION_TICKETS) && defined(MBEDTLS_SSL_SRV_C)
    mbedtls_ssl_conf_new_session_tickets(conf, 0); /* no ticket: a pure full handshake */
#endif
}

static void conf_client(mbedtls_ssl_config *conf, const int *suites, mbedtls_ssl_protocol_version v)
{
    mbedtls_ssl_config_init(conf);
    int ret = mbedtls_ssl_config_defaults(conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret)
        die_mbed("client config", ret);
    mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &g_drbg);
    mbedtls_ssl_conf_min_tls_version(conf, v);
    mbedtls_ssl_conf_max_tls_version(conf, v);
    mbedtls_ssl_conf_ciphersuites(conf, suites);
    mbedtls_ssl_conf_groups(conf, client_groups);
    mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_NONE);
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
    mbedtls_ssl_conf_session_tickets(conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
#endif
}

/* The client writes to c2s and reads s2c, the server the other way round. */
static int cli_send(void *ctx, const unsigned char *b, size_t n)
{
    (void)ctx;
    return p_send(&c2s, b, n);
}
static int cli_recv(void *ctx, unsigned char *b, size_t n)
{
    (void)ctx;
    return p_recv(&s2c, b, n);
}
static int srv_send(void *ctx, const unsigned char *b, size_t n)
{
    (void)ctx;
    return p_send(&s2c, b, n);
}
static int srv_recv(void *ctx, unsigned char *b, size_t n)
{
    (void)ctx;
    return p_recv(&c2s, b, n);
}

static void pair_setup(mbedtls_ssl_context *cli, mbedtls_ssl_context *srv, mbedtls_ssl_config *cc,
                       mbedtls_ssl_config *sc)
{
    c2s.r = c2s.w = s2c.r = s2c.w = 0;
    mbedtls_ssl_init(cli);
    mbedtls_ssl_init(srv);
    int ret = mbedtls_ssl_setup(cli, cc);
    if (ret == 0)
        ret = mbedtls_ssl_setup(srv, sc);
    if (ret == 0)
        ret = mbedtls_ssl_set_hostname(cli, "localhost");
    if (ret)
        die_mbed("ssl setup", ret);
    mbedtls_ssl_set_bio(cli, NULL, cli_send, cli_recv, NULL);
    mbedtls_ssl_set_bio(srv, NULL, srv_send, srv_recv, NULL);
}

static int handshake_pair(mbedtls_ssl_context *cli, mbedtls_ssl_context *srv, double *t_cli, double *t_srv)
{
    int cd = 0, sd = 0;
    for (int it = 0; it < 10000 && !(cd && sd); it++) {
        if (!cd) {
            double t0 = cpu_s();
            int r = mbedtls_ssl_handshake(cli);
            *t_cli += cpu_s() - t0;
            if (r == 0)
                cd = 1;
            else if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
                die_mbed("client handshake", r);
        }
        if (!sd) {
            double t0 = cpu_s();
            int r = mbedtls_ssl_handshake(srv);
            *t_srv += cpu_s() - t0;
            if (r == 0)
                sd = 1;
            else if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
                die_mbed("server handshake", r);
        }
    }
    return cd && sd ? 0 : -1;
}

/* ---------------------------------------------------------------- measurements */
static void records(int si, size_t wsize, double dur)
{
    static unsigned char *src, *dst;
    if (!src) {
        src = malloc(wsize);
        dst = malloc(wsize);
        for (size_t i = 0; i < wsize; i++)
            src[i] = (unsigned char)(i * 31 + 7);
    }
    int suites[2] = {g_suites[si].id, 0};
    mbedtls_ssl_config cc, sc;
    conf_client(&cc, suites, MBEDTLS_SSL_VERSION_TLS1_3);
    conf_server(&sc, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_context cli, srv;
    pair_setup(&cli, &srv, &cc, &sc);
    double tc = 0, ts = 0;
    if (handshake_pair(&cli, &srv, &tc, &ts) != 0) {
        fprintf(stderr, "mbedtls_raw: handshake did not finish\n");
        exit(1);
    }
    const char *got = mbedtls_ssl_get_ciphersuite(&srv);
    double t_enc = 0, t_dec = 0, w0 = wall_s(), c0 = cpu_s();
    uint64_t bytes = 0;
    unsigned long writes = 0;
    while (wall_s() - w0 < dur) {
        size_t sent = 0, recvd = 0;
        while (recvd < wsize) {
            if (sent < wsize) {
                double t0 = cpu_s();
                int r = mbedtls_ssl_write(&cli, src + sent, wsize - sent);
                t_enc += cpu_s() - t0;
                if (r > 0)
                    sent += (size_t)r;
                else if (r != MBEDTLS_ERR_SSL_WANT_WRITE && r != MBEDTLS_ERR_SSL_WANT_READ)
                    die_mbed("write", r);
            }
            for (;;) {
                double t0 = cpu_s();
                int r = mbedtls_ssl_read(&srv, dst + recvd, wsize - recvd);
                t_dec += cpu_s() - t0;
                if (r > 0) {
                    recvd += (size_t)r;
                    continue;
                }
                if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
                    break;
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
                if (r == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
                    continue;
#endif
                die_mbed("read", r);
            }
        }
        if (memcmp(src, dst, wsize) != 0) {
            fprintf(stderr, "mbedtls_raw: data differs\n");
            exit(1);
        }
        bytes += wsize;
        writes++;
    }
    double wall = wall_s() - w0, cpu = cpu_s() - c0;
    double mbps = (double)bytes / cpu / 1e6; /* enc + dec of each byte, per CPU second */
    printf("{\"mode\":\"record\",\"suite\":\"%s\",\"openssl_name\":\"%s\",\"negotiated\":\"%s\",\"write_"
           "size\":%zu,"
           "\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"bytes\":%llu,\"mb_per_s\":%.1f,\"wall_mb_per_s\":%.1f,"
           "\"enc_mb_per_s\":%.1f,\"dec_mb_per_s\":%.1f}\n",
           g_suites[si].name, g_suites[si].openssl, got ? got : "?", wsize, wall, cpu,
           (unsigned long long)bytes, mbps, (double)bytes / wall / 1e6, (double)bytes / t_enc / 1e6,
           (double)bytes / t_dec / 1e6);
    fflush(stdout);
    fprintf(
        stderr,
        "mbedtls_raw %s: %lu x %zu B in %.2fs: %.1f MB/s encrypt+decrypt per CPU second (encrypt %.1f MB/s, "
        "decrypt %.1f MB/s)\n",
        g_suites[si].name, writes, wsize, wall, mbps, (double)bytes / t_enc / 1e6,
        (double)bytes / t_dec / 1e6);
    mbedtls_ssl_free(&cli);
    mbedtls_ssl_free(&srv);
    mbedtls_ssl_config_free(&cc);
    mbedtls_ssl_config_free(&sc);
}

/* Turns tickets on for a resumption measurement: server as wsgate, client keeps what it gets. */
static void conf_tickets(mbedtls_ssl_config *cc, mbedtls_ssl_config *sc)
{
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
    mbedtls_ssl_conf_session_tickets_cb(sc, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse, &g_ticket);
    mbedtls_ssl_conf_new_session_tickets(sc, 1);
    mbedtls_ssl_conf_tls13_key_exchange_modes(sc, MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL |
                                                      MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL);
    mbedtls_ssl_conf_session_tickets(cc, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    mbedtls_ssl_conf_tls13_key_exchange_modes(cc, MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL |
                                                      MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL);
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        cc, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#else
    (void)cc, (void)sc;
    fprintf(stderr, "mbedtls_raw: this mbedTLS has no session tickets\n");
    exit(1);
#endif
}

/* After a handshake: lets the client read the TLS 1.3 NewSessionTicket, then keeps its session. */
static void keep_session(mbedtls_ssl_context *cli, mbedtls_ssl_session *out)
{
    if (mbedtls_ssl_get_version_number(cli) == MBEDTLS_SSL_VERSION_TLS1_3) {
        unsigned char b[16];
        int r, got = 0;
        for (int i = 0; i < 8 && !got; i++) {
            r = mbedtls_ssl_read(cli, b, sizeof(b));
            if (r == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
                got = 1;
            else if (r != MBEDTLS_ERR_SSL_WANT_READ)
                die_mbed("client ticket read", r);
        }
        if (!got) {
            fprintf(stderr, "mbedtls_raw: no TLS 1.3 ticket arrived\n");
            exit(1);
        }
    }
    mbedtls_ssl_session_free(out);
    mbedtls_ssl_session_init(out);
    int r = mbedtls_ssl_get_session(cli, out);
    if (r)
        die_mbed("get session", r);
}

static void handshakes(mbedtls_ssl_protocol_version v, double dur, int resume)
{
    static const int s13[] = {MBEDTLS_TLS1_3_AES_128_GCM_SHA256, MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
                              MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256, 0};
    static const int s12[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                              MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0};
    const char *pname = v == MBEDTLS_SSL_VERSION_TLS1_3 ? "TLSv1.3" : "TLSv1.2";
    mbedtls_ssl_config cc, sc;
    conf_client(&cc, v == MBEDTLS_SSL_VERSION_TLS1_3 ? s13 : s12, v);
    conf_server(&sc, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_session saved;
    mbedtls_ssl_session_init(&saved);
    double tc = 0, ts = 0;
    if (resume) {
        conf_tickets(&cc, &sc);
        mbedtls_ssl_context cli, srv;
        pair_setup(&cli, &srv, &cc, &sc);
        if (handshake_pair(&cli, &srv, &tc, &ts) != 0) {
            fprintf(stderr, "mbedtls_raw: priming handshake did not finish\n");
            exit(1);
        }
        keep_session(&cli, &saved);
        mbedtls_ssl_free(&cli);
        mbedtls_ssl_free(&srv);
        tc = ts = 0;
    }
    double w0 = wall_s();
    unsigned long n = 0;
    char suite[80] = "";
    while (wall_s() - w0 < dur) {
        mbedtls_ssl_context cli, srv;
        pair_setup(&cli, &srv, &cc, &sc);
        if (resume) {
            int r = mbedtls_ssl_set_session(&cli, &saved);
            if (r)
                die_mbed("set session", r);
        }
        if (handshake_pair(&cli, &srv, &tc, &ts) != 0) {
            fprintf(stderr, "mbedtls_raw: handshake did not finish\n");
            exit(1);
        }
        if (resume && v == MBEDTLS_SSL_VERSION_TLS1_3) {
            /* the server wrote a fresh ticket after the handshake: the client reads it, as OpenSSL
             * clients do (its cost is the client's) */
            double t0 = cpu_s();
            unsigned char b[16];
            (void)mbedtls_ssl_read(&cli, b, sizeof(b));
            tc += cpu_s() - t0;
        }
        if (!suite[0])
            snprintf(suite, sizeof(suite), "%s %s", mbedtls_ssl_get_version(&srv),
                     mbedtls_ssl_get_ciphersuite(&srv));
        mbedtls_ssl_free(&cli);
        mbedtls_ssl_free(&srv);
        n++;
    }
    double wall = wall_s() - w0;
    printf(
        "{\"mode\":\"%s\",\"proto\":\"%s\",\"negotiated\":\"%s\",\"kex\":\"x25519\",\"cert\":\"ecdsa-"
        "p256\","
        "\"handshakes\":%lu,\"seconds\":%.3f,\"pair_per_s\":%.1f,\"server_per_s\":%.1f,\"client_per_s\":%.1f,"
        "\"server_ms\":%.3f}\n",
        resume ? "resumed" : "handshake", pname, suite, n, wall, (double)n / wall, (double)n / ts,
        (double)n / tc, ts * 1e3 / (double)n);
    fflush(stdout);
    fprintf(stderr,
            "mbedtls_raw handshakes %s (%s): %lu %s in %.2fs: server side %.0f/s per core "
            "(%.3f ms each), client side %.0f/s, both in one thread %.0f/s\n",
            pname, suite, n,
            resume
                ? (v == MBEDTLS_SSL_VERSION_TLS1_3 ? "ticket-resumed (psk_dhe_ke: X25519)" : "ticket-resumed")
                : "full ECDSA P-256 + X25519",
            wall, (double)n / ts, ts * 1e3 / (double)n, (double)n / tc, (double)n / wall);
    mbedtls_ssl_session_free(&saved);
    mbedtls_ssl_config_free(&cc);
    mbedtls_ssl_config_free(&sc);
}

/* ---------------------------------------------------------------- PSA primitives */
/* --primitives: the PSA calls a TLS 1.3 server makes, one at a time, so the driver's gain per
 * operation can be set against nettle_raw's ceilings (same names). Rates are per thread CPU second. */
static void prim_line(const char *op, unsigned long n, double cpu, double bytes)
{
    if (bytes > 0) {
        printf("{\"mode\":\"primitive\",\"op\":\"%s\",\"ops\":%lu,\"cpu_s\":%.3f,\"per_s\":%.1f,\"mb_per_s\":"
               "%.1f}\n",
               op, n, cpu, (double)n / cpu, bytes * (double)n / cpu / 1e6);
        fprintf(stderr, "mbedtls_raw primitive %s: %.0f MB/s\n", op, bytes * (double)n / cpu / 1e6);
    } else {
        printf("{\"mode\":\"primitive\",\"op\":\"%s\",\"ops\":%lu,\"cpu_s\":%.3f,\"per_s\":%.1f}\n", op, n,
               cpu, (double)n / cpu);
        fprintf(stderr, "mbedtls_raw primitive %s: %.0f/s\n", op, (double)n / cpu);
    }
    fflush(stdout);
}

static void psa_check(psa_status_t st, const char *what)
{
    if (st != PSA_SUCCESS) {
        fprintf(stderr, "mbedtls_raw: %s: PSA status %d\n", what, (int)st);
        exit(1);
    }
}

static psa_key_id_t prim_key(psa_key_type_t type, size_t bits, psa_key_usage_t usage, psa_algorithm_t alg)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_id_t k;
    psa_set_key_type(&a, type);
    psa_set_key_bits(&a, bits);
    psa_set_key_usage_flags(&a, usage);
    psa_set_key_algorithm(&a, alg);
    psa_check(psa_generate_key(&a, &k), "generate_key");
    return k;
}

/* Runs BODY for DUR seconds of wall time; N and CPU are the count and thread CPU time. */
#define PRIM_LOOP(dur, n, cpu, body)                                                                         \
    do {                                                                                                     \
        double w0_ = wall_s(), c0_ = cpu_s();                                                                \
        n = 0;                                                                                               \
        while (wall_s() - w0_ < (dur)) {                                                                     \
            for (int i_ = 0; i_ < 16; i_++) {                                                                \
                body;                                                                                        \
            }                                                                                                \
            n += 16;                                                                                         \
        }                                                                                                    \
        cpu = cpu_s() - c0_;                                                                                 \
    } while (0)

static void primitives(double dur)
{
    const psa_algorithm_t det = PSA_ALG_DETERMINISTIC_ECDSA(PSA_ALG_SHA_256);
    unsigned long n;
    double cpu;
    uint8_t hash[32] = {1}, sig[64], pub[65], peer[65], secret[32];
    size_t len, peer_len;

    psa_key_id_t sk =
        prim_key(PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1), 256, PSA_KEY_USAGE_SIGN_HASH, det);
    PRIM_LOOP(dur, n, cpu, psa_check(psa_sign_hash(sk, det, hash, 32, sig, sizeof(sig), &len), "sign_hash"));
    prim_line("ecdsa-p256-sign-deterministic", n, cpu, 0);
    psa_destroy_key(sk);

    static const struct {
        const char *name;
        psa_ecc_family_t family;
        size_t bits;
    } curves[] = {{"x25519", PSA_ECC_FAMILY_MONTGOMERY, 255}, {"p256", PSA_ECC_FAMILY_SECP_R1, 256}};
    for (size_t c = 0; c < 2; c++) {
        char op[64];
        psa_key_type_t t = PSA_KEY_TYPE_ECC_KEY_PAIR(curves[c].family);
        psa_key_id_t other = prim_key(t, curves[c].bits, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH), mine;
        psa_check(psa_export_public_key(other, peer, sizeof(peer), &peer_len), "export_public_key");
        /* the key share: generate, then export the public key (where the multiplication happens) */
        PRIM_LOOP(dur, n, cpu, {
            mine = prim_key(t, curves[c].bits, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH);
            psa_check(psa_export_public_key(mine, pub, sizeof(pub), &len), "export_public_key");
            psa_destroy_key(mine);
        });
        snprintf(op, sizeof(op), "%s-keygen+export", curves[c].name);
        prim_line(op, n, cpu, 0);
        mine = prim_key(t, curves[c].bits, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH);
        PRIM_LOOP(
            dur, n, cpu,
            psa_check(psa_raw_key_agreement(PSA_ALG_ECDH, mine, peer, peer_len, secret, sizeof(secret), &len),
                      "key_agreement"));
        snprintf(op, sizeof(op), "%s-shared-secret", curves[c].name);
        prim_line(op, n, cpu, 0);
        psa_destroy_key(mine);
        psa_destroy_key(other);
    }

    static const struct {
        const char *name;
        psa_key_type_t type;
        size_t bits;
        psa_algorithm_t alg;
    } aeads[] = {{"aes-128-gcm", PSA_KEY_TYPE_AES, 128, PSA_ALG_GCM},
                 {"aes-256-gcm", PSA_KEY_TYPE_AES, 256, PSA_ALG_GCM},
                 {"chacha20-poly1305", PSA_KEY_TYPE_CHACHA20, 256, PSA_ALG_CHACHA20_POLY1305}};
    static const size_t sizes[] = {16384, 1024};
    size_t cap = 16384 + 16;
    uint8_t *buf = calloc(1, cap), nonce[12] = {0}, ad[13] = {0};
    for (size_t i = 0; i < 3; i++) {
        psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
        psa_key_id_t k;
        psa_set_key_type(&a, aeads[i].type);
        psa_set_key_bits(&a, aeads[i].bits);
        psa_set_key_usage_flags(&a, PSA_KEY_USAGE_ENCRYPT | PSA_KEY_USAGE_DECRYPT);
        psa_set_key_algorithm(&a, aeads[i].alg);
        psa_check(psa_generate_key(&a, &k), "generate AEAD key");
        for (size_t z = 0; z < 2; z++) {
            char op[64];
            /* in place, as TLS records are: encrypt then decrypt the same buffer */
            PRIM_LOOP(dur / 2, n, cpu, {
                psa_check(psa_aead_encrypt(k, aeads[i].alg, nonce, 12, ad, 13, buf, sizes[z], buf, cap, &len),
                          "aead_encrypt");
                psa_check(psa_aead_decrypt(k, aeads[i].alg, nonce, 12, ad, 13, buf, len, buf, cap, &len),
                          "aead_decrypt");
            });
            snprintf(op, sizeof(op), "%s-%zu-encrypt+decrypt", aeads[i].name, sizes[z]);
            prim_line(op, n, cpu, (double)sizes[z]);
        }
        psa_destroy_key(k);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *only = NULL;
    double dur = 3;
    size_t wsize = 256 * 1024;
    int do_hs = 1, do_rec = 1, do_prim = 0;
    static struct option lo[] = {{"cert", required_argument, 0, 'c'},
                                 {"key", required_argument, 0, 'k'},
                                 {"suites", required_argument, 0, 'S'},
                                 {"no-handshakes", no_argument, 0, 'H'},
                                 {"no-records", no_argument, 0, 'R'},
                                 {"primitives", no_argument, 0, 'P'},
                                 {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "d:s:", lo, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'S':
            only = optarg;
            break;
        case 'H':
            do_hs = 0;
            break;
        case 'R':
            do_rec = 0;
            break;
        case 'P':
            do_prim = 1;
            break;
        case 'd':
            dur = atof(optarg);
            break;
        case 's':
            wsize = (size_t)atol(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: mbedtls_raw --cert C --key K [-d SECONDS] [-s WRITE_SIZE] [--suites LIST] "
                    "[--no-handshakes] [--no-records] [--primitives]\n");
            return 2;
        }
    }
    if (!cert || !key || dur <= 0 || wsize < 1) {
        fprintf(stderr, "mbedtls_raw: --cert and --key are required\n");
        return 2;
    }
    psa_status_t ps = psa_crypto_init();
    if (ps != PSA_SUCCESS) {
        fprintf(stderr, "mbedtls_raw: psa_crypto_init: %d\n", (int)ps);
        return 1;
    }
    mbedtls_entropy_init(&g_entropy);
    mbedtls_ctr_drbg_init(&g_drbg);
    int ret =
        mbedtls_ctr_drbg_seed(&g_drbg, mbedtls_entropy_func, &g_entropy, (const unsigned char *)"raw", 3);
    if (ret)
        die_mbed("drbg seed", ret);
    mbedtls_x509_crt_init(&g_crt);
    mbedtls_pk_init(&g_key);
    if ((ret = mbedtls_x509_crt_parse_file(&g_crt, cert)) != 0)
        die_mbed("cert", ret);
    if ((ret = mbedtls_pk_parse_keyfile(&g_key, key, NULL, mbedtls_ctr_drbg_random, &g_drbg)) != 0)
        die_mbed("key", ret);
    mbedtls_ssl_ticket_init(&g_ticket);
    if ((ret = mbedtls_ssl_ticket_setup(&g_ticket, mbedtls_ctr_drbg_random, &g_drbg,
                                        MBEDTLS_CIPHER_AES_256_GCM, 86400)) != 0)
        die_mbed("ticket setup", ret);
    c2s.cap = s2c.cap = wsize + (1u << 20);
    c2s.b = malloc(c2s.cap);
    s2c.b = malloc(s2c.cap);
    fprintf(stderr, "mbedtls_raw: %s\n", MBEDTLS_VERSION_STRING_FULL);
    if (do_prim)
        primitives(dur);
    if (do_rec)
        for (size_t i = 0; i < sizeof(g_suites) / sizeof(g_suites[0]); i++)
            if (!only || strstr(only, g_suites[i].name) || strstr(only, g_suites[i].openssl))
                records((int)i, wsize, dur);
    if (do_hs) {
        handshakes(MBEDTLS_SSL_VERSION_TLS1_3, dur, 0);
        handshakes(MBEDTLS_SSL_VERSION_TLS1_2, dur, 0);
        handshakes(MBEDTLS_SSL_VERSION_TLS1_3, dur, 1);
        handshakes(MBEDTLS_SSL_VERSION_TLS1_2, dur, 1);
    }
    return 0;
}
