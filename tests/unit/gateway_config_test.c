/* gateway_config_test.c - the settings table: defaults, parsers, errors, file and argv loading. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/config.h"
#include "tls/tls.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/wsgcfgXXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to tmpdir/name and returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static struct wsg_cfg *fresh(void)
{
    static struct wsg_cfg c;
    wsg_cfg_defaults(&c);
    return &c;
}

/* wsg_cfg_set from wsgate.conf line 12; returns the error text ("" on success). */
static const char *set(struct wsg_cfg *c, const char *name, const char *value)
{
    static char err[WSG_ERRLEN];
    err[0] = '\0';
    int rc = wsg_cfg_set(c, name, value, "wsgate.conf", 12, err);
    assert_int_equal(rc, err[0] != '\0' ? -1 : 0);
    return err;
}

static void test_defaults(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_int_equal(c->nlisten, 0);
    assert_int_equal(c->ncert, 0);
    assert_int_equal(c->nkey, 0);
    assert_int_equal(c->nupstream, 0);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->hash_prefix, 0);
    assert_int_equal(c->max_fails, 1);
    assert_true(c->fail_timeout == 10);
    assert_string_equal(c->health_check, "off");
    assert_true(c->health_interval == 5 && c->health_timeout == 2);
    assert_int_equal(c->health_rise, 2);
    assert_int_equal(c->health_fall, 3);
    assert_true(c->handshake_timeout == 10);
    assert_true(c->header_timeout == 10);
    assert_true(c->keepalive_timeout == 60);
    assert_true(c->connect_timeout == 5);
    assert_true(c->upstream_timeout == 60);
    assert_true(c->ws_idle_timeout == 120);
    assert_true(c->drain_timeout == 10);
    assert_int_equal(c->max_frame, 16u << 20);
    assert_int_equal(c->max_message, 16u << 20);
    assert_int_equal(c->max_body, 0);
    assert_int_equal(c->buffer_size, 32u << 10);
    assert_int_equal(c->max_header_size, 16u << 10);
    assert_int_equal(c->max_uri, 8u << 10);
    assert_int_equal(c->max_headers, 100);
    assert_int_equal(c->ticket_lifetime, 86400);
    assert_string_equal(c->access_log, "stderr");
    assert_string_equal(c->log_level, "notice");
    assert_int_equal(c->ip_table_size, 65536);
    assert_int_equal(c->ip_table_shards, 64);
    assert_int_equal(c->nroutes, 0);
    /* the table's defaults are policies/'s defaults */
    struct wsg_policy p;
    memset(&p, 0, sizeof(p));
    wsg_policy_defaults(&p);
    assert_memory_equal(&c->policy, &p, sizeof(p));
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t out;
    } good[] = {{"0", 0},
                {"512", 512},
                {"64k", 64 << 10},
                {"64K", 64 << 10},
                {"1m", 1 << 20},
                {"1M", 1 << 20},
                {"1g", 1ull << 30},
                {"16m", 16 << 20},
                {"007", 7},
                {"4096g", 4096ull << 30},
                {"18446744073709551615", UINT64_MAX}};
    static const char *bad[] = {"",
                                "k",
                                "12x",
                                "1.5m",
                                "-1",
                                " 1",
                                "1 ",
                                "1kb",
                                "0x10",
                                "1t",
                                "18446744073709551616",
                                "17179869184g"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 12345;
        if (wsg_parse_size(good[i].in, &v) != 0 || v != good[i].out)
            fail_msg("size \"%s\"", good[i].in);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v;
        if (wsg_parse_size(bad[i], &v) != -1)
            fail_msg("size \"%s\" accepted", bad[i]);
    }
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        double out;
    } good[] = {{"30", 30},    {"0", 0},       {"500ms", 0.5}, {"10s", 10},    {"2m", 120},   {"1h", 3600},
                {"1.5s", 1.5}, {"0.25", 0.25}, {"1.5m", 90},   {"2d", 172800}, {"100ms", 0.1}};
    static const char *bad[] = {"",
                                "s",
                                "10x",
                                "-1s",
                                ".5s",
                                "1e3",
                                "inf",
                                "nan",
                                "10 s",
                                "1..5s",
                                "10sec",
                                "0x10",
                                "1234567890123456"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        double v = -1;
        if (wsg_parse_duration(good[i].in, &v) != 0 || v < good[i].out - 1e-9 || v > good[i].out + 1e-9)
            fail_msg("duration \"%s\" -> %g", good[i].in, v);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        double v;
        if (wsg_parse_duration(bad[i], &v) != -1)
            fail_msg("duration \"%s\" accepted", bad[i]);
    }
}

static void test_set_scalars(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_string_equal(set(c, "max_message", "1m"), "");
    assert_int_equal(c->max_message, 1 << 20);
    assert_string_equal(set(c, "buffer_size", " 64k "), "");
    assert_int_equal(c->buffer_size, 64 << 10);
    assert_string_equal(set(c, "max_body", "1g"), "");
    assert_int_equal(c->max_body, 1ull << 30);
    assert_string_equal(set(c, "ws_idle_timeout", "1.5m"), "");
    assert_true(c->ws_idle_timeout == 90);
    assert_string_equal(set(c, "connect_timeout", "500ms"), "");
    assert_true(c->connect_timeout == 0.5);
    assert_string_equal(set(c, "workers", "8"), "");
    assert_int_equal(c->workers, 8);
    assert_string_equal(set(c, "hash_prefix", "24"), "");
    assert_int_equal(c->hash_prefix, 24);
    assert_string_equal(set(c, "log_level", "debug"), "");
    assert_string_equal(c->log_level, "debug");
    assert_string_equal(set(c, "access_log", "\"/var/log/my wsgate.log\""), "");
    assert_string_equal(c->access_log, "/var/log/my wsgate.log");
    assert_int_equal(c->tls_cipher_order, WSG_TLS_ORDER_SERVER);
    assert_string_equal(set(c, "tls_cipher_order", "client"), "");
    assert_int_equal(c->tls_cipher_order, WSG_TLS_ORDER_CLIENT);
    assert_string_equal(set(c, "tls_cipher_order", "server"), "");
    assert_int_equal(c->tls_cipher_order, WSG_TLS_ORDER_SERVER);
    assert_string_equal(set(c, "ticket_lifetime", "0"), "");
    assert_int_equal(c->ticket_lifetime, 0);
    assert_string_equal(set(c, "ticket_lifetime", "604800"), "");
    /* a bad value leaves the field alone */
    set(c, "workers", "lots");
    assert_int_equal(c->workers, 8);
}

static void test_error_messages(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_string_equal(set(c, "max_message", "12x"),
                        "wsgate.conf:12: max_message: \"12x\" is not a size (e.g. 64k, 1m)");
    assert_string_equal(set(c, "workers", "5000"), "wsgate.conf:12: workers: 5000 is above the maximum 256");
    assert_string_equal(set(c, "workers", "-1"), "wsgate.conf:12: workers: \"-1\" is not a number");
    assert_string_equal(set(c, "max_mesage", "1m"),
                        "wsgate.conf:12: unknown setting \"max_mesage\" (did you mean \"max_message\"?)");
    assert_string_equal(set(c, "frobnicate", "1"), "wsgate.conf:12: unknown setting \"frobnicate\"");
    assert_string_equal(set(c, "listen", ""), "wsgate.conf:12: listen: missing value");
    assert_string_equal(set(c, "listen", "   "), "wsgate.conf:12: listen: missing value");
    assert_string_equal(set(c, "workers", NULL), "wsgate.conf:12: workers: missing value");
    assert_string_equal(set(c, "buffer_size", "1k"),
                        "wsgate.conf:12: buffer_size: 1k is below the minimum 20k");
    assert_string_equal(set(c, "buffer_size", "17m"),
                        "wsgate.conf:12: buffer_size: 17m is above the maximum 16m");
    assert_string_equal(set(c, "max_header_size", "512"),
                        "wsgate.conf:12: max_header_size: 512 is below the minimum 1k");
    assert_string_equal(set(c, "max_header_size", "2m"),
                        "wsgate.conf:12: max_header_size: 2m is above the maximum 1m");
    assert_string_equal(set(c, "max_headers", "101"),
                        "wsgate.conf:12: max_headers: 101 is above the maximum 100");
    assert_string_equal(set(c, "ticket_lifetime", "604801"),
                        "wsgate.conf:12: ticket_lifetime: 604801 is above the maximum 604800");
    assert_string_equal(set(c, "hash_prefix", "16"), "wsgate.conf:12: hash_prefix: 16 is not one of: 0 24");
    assert_string_equal(set(c, "hash_prefix", "32"), "wsgate.conf:12: hash_prefix: 32 is not one of: 0 24");
    assert_string_equal(set(c, "log_level", "verbose"),
                        "wsgate.conf:12: log_level: \"verbose\" is not one of: error warn notice info debug");
    assert_string_equal(set(c, "tls_cipher_order", "fastest"),
                        "wsgate.conf:12: tls_cipher_order: \"fastest\" is not one of: server client");
    assert_string_equal(set(c, "fail_timeout", "10x"),
                        "wsgate.conf:12: fail_timeout: \"10x\" is not a duration (e.g. 500ms, 10s, 2m)");
    /* active health checks (issue 15) */
    assert_string_equal(set(c, "health_check", "health"),
                        "wsgate.conf:12: health_check: \"health\" is not off or a path starting with /");
    assert_string_equal(set(c, "health_check", "/a\x01b"),
                        "wsgate.conf:12: health_check: \"/a\x01b\" is not off or a path starting with /");
    assert_string_equal(set(c, "health_interval", "50ms"),
                        "wsgate.conf:12: health_interval: 50ms is below the minimum 100ms");
    assert_string_equal(set(c, "health_interval", "2h"),
                        "wsgate.conf:12: health_interval: 2h is above the maximum 1h");
    assert_string_equal(set(c, "health_timeout", "2x"),
                        "wsgate.conf:12: health_timeout: \"2x\" is not a duration (e.g. 500ms, 10s, 2m)");
    assert_string_equal(set(c, "health_timeout", "11m"),
                        "wsgate.conf:12: health_timeout: 11m is above the maximum 10m");
    assert_string_equal(set(c, "health_rise", "0"), "wsgate.conf:12: health_rise: 0 is below the minimum 1");
    assert_string_equal(set(c, "health_fall", "101"),
                        "wsgate.conf:12: health_fall: 101 is above the maximum 100");
    assert_string_equal(set(c, "health_fall", "-1"), "wsgate.conf:12: health_fall: \"-1\" is not a number");
    assert_string_equal(set(c, "handshake_timeout", "50ms"),
                        "wsgate.conf:12: handshake_timeout: 50ms is below the minimum 100ms");
    assert_string_equal(set(c, "ws_idle_timeout", "2d"),
                        "wsgate.conf:12: ws_idle_timeout: 2d is above the maximum 24h");
    assert_string_equal(set(c, "max_frame", "2g"), "wsgate.conf:12: max_frame: 2g is above the maximum 1g");
    assert_string_equal(set(c, "max_frame", "100"),
                        "wsgate.conf:12: max_frame: 100 is below the minimum 125");

    /* argv form */
    char err[WSG_ERRLEN];
    assert_int_equal(wsg_cfg_set(c, "max_frame", "x", "--", 0, err), -1);
    assert_string_equal(err, "--max_frame: \"x\" is not a size (e.g. 64k, 1m)");
    assert_int_equal(wsg_cfg_set(c, "workerz", "1", "--", 0, err), -1);
    assert_string_equal(err, "unknown option \"--workerz\" (did you mean \"--workers\"?)");
    /* nothing above changed the defaults */
    struct wsg_cfg d;
    wsg_cfg_defaults(&d);
    assert_memory_equal(c, &d, sizeof(d));
}

static void test_listen_values(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    static const char *good[] = {"0.0.0.0:443", "127.0.0.1:8443",  "[::]:443",           "[::1]:1",
                                 ":8443",       "localhost:65535", "gw.example.com:443", "*:443"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (strcmp(set(c, "listen", good[i]), "") != 0)
            fail_msg("listen %s: %s", good[i], set(c, "listen", good[i]));
    assert_int_equal(c->nlisten, sizeof(good) / sizeof(good[0]));
    assert_string_equal(c->listen[2], "[::]:443");
    static const char *bad[] = {"443",         "0.0.0.0",   "0.0.0.0:0",    "0.0.0.0:65536", "0.0.0.0:https",
                                "::1:443",     "[::1]443",  "[nope]:443",   "1.2.3.999:443", "a b:443",
                                "host..x:443", "-host:443", "0.0.0.0:443x", "[::1]:",        "host.:443"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *e = set(c, "listen", bad[i]);
        if (strncmp(e, "wsgate.conf:12: listen: \"", 25) != 0)
            fail_msg("listen \"%s\" accepted or bad message: %s", bad[i], e);
    }
    assert_string_equal(set(c, "listen", "0.0.0.0:70000"),
                        "wsgate.conf:12: listen: \"0.0.0.0:70000\" has a bad port (1-65535)");
    assert_string_equal(set(c, "listen", "127.0.0.1:8443"),
                        "wsgate.conf:12: listen: \"127.0.0.1:8443\" is given twice");
    /* capacity */
    c = fresh();
    char v[32];
    for (int i = 0; i < WSG_CFG_MAX_LISTEN; i++) {
        snprintf(v, sizeof(v), ":%d", 1000 + i);
        assert_string_equal(set(c, "listen", v), "");
    }
    assert_string_equal(set(c, "listen", ":999"), "wsgate.conf:12: listen: more than 16 values");
}

/* listen_http (issue 16): the listen syntax without options, repeatable, default off, never a
 * TLS listen address as well. */
static void test_listen_http_values(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_int_equal(c->nlisten_http, 0);
    static const char *good[] = {"0.0.0.0:80", "[::]:80", ":8080", "127.0.0.1:1", "localhost:65535", "*:80"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (strcmp(set(c, "listen_http", good[i]), "") != 0)
            fail_msg("listen_http %s: %s", good[i], set(c, "listen_http", good[i]));
    assert_int_equal(c->nlisten_http, sizeof(good) / sizeof(good[0]));
    assert_string_equal(c->listen_http[1], "[::]:80");
    assert_int_equal(c->nlisten, 0); /* a list of its own */
    static const char *bad[] = {"80",         "0.0.0.0",  "0.0.0.0:0",   "0.0.0.0:65536", "0.0.0.0:http",
                                "::1:80",     "[::1]80",  "[nope]:80",   "1.2.3.999:80",  "a b:80",
                                "host..x:80", "-host:80", "0.0.0.0:80x", "[::1]:",        "host.:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *e = set(c, "listen_http", bad[i]);
        if (strncmp(e, "wsgate.conf:12: listen_http: \"", 30) != 0)
            fail_msg("listen_http \"%s\" accepted or bad message: %s", bad[i], e);
    }
    assert_string_equal(set(c, "listen_http", "0.0.0.0:70000"),
                        "wsgate.conf:12: listen_http: \"0.0.0.0:70000\" has a bad port (1-65535)");
    assert_string_equal(set(c, "listen_http", "0.0.0.0:80"),
                        "wsgate.conf:12: listen_http: \"0.0.0.0:80\" is given twice");
    /* no options: proxy_protocol belongs to listen */
    assert_string_equal(set(c, "listen_http", ":81 proxy_protocol"),
                        "wsgate.conf:12: listen_http: \":81 proxy_protocol\" has more than an address (no "
                        "options here)");
    assert_string_equal(set(c, "listen_http", ""), "wsgate.conf:12: listen_http: missing value");
    /* capacity */
    c = fresh();
    char v[32];
    for (int i = 0; i < WSG_CFG_MAX_LISTEN; i++) {
        snprintf(v, sizeof(v), ":%d", 1000 + i);
        assert_string_equal(set(c, "listen_http", v), "");
    }
    assert_string_equal(set(c, "listen_http", ":999"), "wsgate.conf:12: listen_http: more than 16 values");
    /* the same address as a TLS listener: refused by finish */
    c = fresh();
    char err[WSG_ERRLEN];
    assert_string_equal(set(c, "upstream", "127.0.0.1:3000"), "");
    assert_string_equal(set(c, "listen", "127.0.0.1:8443"), "");
    assert_string_equal(set(c, "listen_http", "127.0.0.1:8443"), "");
    assert_int_equal(wsg_cfg_finish(c, err), -1);
    assert_string_equal(err, "listen_http: \"127.0.0.1:8443\" is also a TLS listen address");
    c = fresh();
    assert_string_equal(set(c, "upstream", "127.0.0.1:3000"), "");
    assert_string_equal(set(c, "listen", "127.0.0.1:8443"), "");
    assert_string_equal(set(c, "listen_http", "127.0.0.1:8080"), "");
    assert_int_equal(wsg_cfg_finish(c, err), 0);
    assert_int_equal(c->nlisten_http, 1);
}

static void test_upstream_values(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_string_equal(set(c, "health_check", "/healthz?full=1"), "");
    assert_string_equal(c->health_check, "/healthz?full=1");
    assert_string_equal(set(c, "upstream", "127.0.0.1:3001"), "");
    assert_string_equal(set(c, "upstream", "127.0.0.1:3002   weight=2"), "");
    assert_string_equal(set(c, "upstream", "[::1]:3003 weight=100"), "");
    assert_string_equal(set(c, "upstream", "app.internal:80\tweight=1"), "");
    assert_int_equal(c->nupstream, 4);
    assert_string_equal(c->upstream[0].addr, "127.0.0.1:3001");
    assert_int_equal(c->upstream[0].weight, 1);
    assert_string_equal(c->upstream[1].addr, "127.0.0.1:3002");
    assert_int_equal(c->upstream[1].weight, 2);
    assert_string_equal(c->upstream[2].addr, "[::1]:3003");
    assert_int_equal(c->upstream[2].weight, 100);
    assert_string_equal(c->upstream[3].addr, "app.internal:80");

    assert_string_equal(set(c, "upstream", "127.0.0.1:3005 weight=0"),
                        "wsgate.conf:12: upstream: \"weight=0\" is not a weight (1-100)");
    assert_string_equal(set(c, "upstream", "127.0.0.1:3005 weight=101"),
                        "wsgate.conf:12: upstream: \"weight=101\" is not a weight (1-100)");
    assert_string_equal(set(c, "upstream", "127.0.0.1:3005 weight=x"),
                        "wsgate.conf:12: upstream: \"weight=x\" is not a weight (1-100)");
    assert_string_equal(set(c, "upstream", "127.0.0.1:3005 backup"),
                        "wsgate.conf:12: upstream: unexpected \"backup\" (expected weight=N)");
    assert_string_equal(set(c, "upstream", ":3005"),
                        "wsgate.conf:12: upstream: \":3005\" has no host (expected HOST:PORT)");
    assert_string_equal(set(c, "upstream", "127.0.0.1:3001 weight=3"),
                        "wsgate.conf:12: upstream: \"127.0.0.1:3001\" is given twice");
    assert_string_equal(set(c, "upstream", "127.0.0.1"),
                        "wsgate.conf:12: upstream: \"127.0.0.1\" is not an address (expected HOST:PORT)");
    assert_int_equal(c->nupstream, 4);
}

static void test_cert_key_values(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_string_equal(set(c, "cert", "/etc/wsgate/a.crt"), "");
    assert_string_equal(set(c, "key", "/etc/wsgate/a.key"), "");
    assert_string_equal(set(c, "cert", "\"/etc/wsgate/with space.crt\""), "");
    assert_int_equal(c->ncert, 2);
    assert_int_equal(c->nkey, 1);
    assert_string_equal(c->cert[1], "/etc/wsgate/with space.crt");
    char longp[600];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    assert_string_equal(set(c, "key", longp), "wsgate.conf:12: key: path is longer than 511 bytes");
    assert_string_equal(set(c, "key", "\"\""), "wsgate.conf:12: key: missing value");
}

static void test_finish(void **state)
{
    (void)state;
    char err[WSG_ERRLEN];
    struct wsg_cfg *c = fresh();
    assert_int_equal(wsg_cfg_finish(c, err), -1);
    assert_string_equal(err, "no upstream configured: add `upstream HOST:PORT`");
    set(c, "upstream", "127.0.0.1:3000");
    set(c, "cert", "a.crt");
    set(c, "cert", "b.crt");
    set(c, "key", "a.key");
    assert_int_equal(wsg_cfg_finish(c, err), -1);
    assert_string_equal(err, "cert/key: 2 certificates but 1 key");
    set(c, "key", "b.key");
    set(c, "key", "c.key");
    assert_int_equal(wsg_cfg_finish(c, err), -1);
    assert_string_equal(err, "cert/key: 2 certificates but 3 keys");
    c = fresh();
    set(c, "upstream", "127.0.0.1:3000");
    assert_int_equal(wsg_cfg_finish(c, err), 0);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0], geteuid() == 0 ? "0.0.0.0:443" : "0.0.0.0:8443");
    /* a configured listen is kept */
    c = fresh();
    set(c, "upstream", "127.0.0.1:3000");
    set(c, "listen", "127.0.0.1:9443");
    assert_int_equal(wsg_cfg_finish(c, err), 0);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0], "127.0.0.1:9443");
}

static void test_load_file(void **state)
{
    (void)state;
    char err[WSG_ERRLEN];
    struct wsg_cfg *c = fresh();
    const char *path =
        write_file("ok.conf", "# wsgate test config\n"
                              "\n"
                              "listen 127.0.0.1:8443;\n"
                              "   listen   [::1]:8443   # IPv6 too\n"
                              "upstream 127.0.0.1:3001 weight=3;\r\n"
                              "upstream 127.0.0.1:3002\r\n"
                              "\t# indented comment\n"
                              "max_message 1m ;\n"
                              "access_log /var/log/wsgate#1.log\n"
                              "ws_idle_timeout 90s#no space: part of the value? no: not a duration\n"
                              "workers 4");                /* no final newline */
    assert_int_equal(wsg_cfg_load_file(c, path, err), -1); /* the '#' inside 90s#... is not a comment */
    assert_non_null(strstr(err, "ok.conf:10: ws_idle_timeout: \"90s#no space:"));

    c = fresh();
    path = write_file("ok.conf", "# wsgate test config\n"
                                 "\n"
                                 "listen 127.0.0.1:8443;\n"
                                 "   listen   [::1]:8443   # IPv6 too\n"
                                 "upstream 127.0.0.1:3001 weight=3;\r\n"
                                 "upstream 127.0.0.1:3002\r\n"
                                 "\t# indented comment\n"
                                 "max_message 1m ;\n"
                                 "access_log /var/log/wsgate#1.log\n"
                                 "ws_idle_timeout 90s # 1.5 minutes\r\n"
                                 "workers 4");
    if (wsg_cfg_load_file(c, path, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c->nlisten, 2);
    assert_string_equal(c->listen[0], "127.0.0.1:8443");
    assert_string_equal(c->listen[1], "[::1]:8443");
    assert_int_equal(c->nupstream, 2);
    assert_string_equal(c->upstream[0].addr, "127.0.0.1:3001");
    assert_int_equal(c->upstream[0].weight, 3);
    assert_string_equal(c->upstream[1].addr, "127.0.0.1:3002");
    assert_int_equal(c->upstream[1].weight, 1);
    assert_int_equal(c->max_message, 1 << 20);
    assert_string_equal(c->access_log, "/var/log/wsgate#1.log");
    assert_true(c->ws_idle_timeout == 90);
    assert_int_equal(c->workers, 4);
    assert_int_equal(wsg_cfg_finish(c, err), 0);
}

static void test_load_file_errors(void **state)
{
    (void)state;
    char err[WSG_ERRLEN], path[160];
    struct wsg_cfg *c = fresh();

    snprintf(path, sizeof(path), "%s/wsgate.conf", tmpdir);
    unlink(path);
    assert_int_equal(wsg_cfg_load_file(c, path, err), -1);
    char want[256];
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);

    /* errors name the file as given and the line */
    assert_int_equal(chdir(tmpdir), 0);
    write_file("wsgate.conf", "upstream 127.0.0.1:1\n\nmax_message 12x\n");
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, "wsgate.conf", err), -1);
    assert_string_equal(err, "wsgate.conf:3: max_message: \"12x\" is not a size (e.g. 64k, 1m)");

    write_file("wsgate.conf", "# c\n\n\nworkers 4\nworkers 2\n");
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, "wsgate.conf", err), -1);
    assert_string_equal(err, "wsgate.conf:5: workers: is duplicate (first set on line 4)");

    write_file("wsgate.conf", "max_mesage 1m\n");
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, "wsgate.conf", err), -1);
    assert_string_equal(err, "wsgate.conf:1: unknown setting \"max_mesage\" (did you mean \"max_message\"?)");

    write_file("wsgate.conf", "workers 1\nlisten\n");
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, "wsgate.conf", err), -1);
    assert_string_equal(err, "wsgate.conf:2: listen: missing value");

    write_file("wsgate.conf", "workers 1\nlisten ;  # nothing\n");
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, "wsgate.conf", err), -1);
    assert_string_equal(err, "wsgate.conf:2: listen: missing value");

    write_file("wsgate.conf", "workers 5000\n");
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, "wsgate.conf", err), -1);
    assert_string_equal(err, "wsgate.conf:1: workers: 5000 is above the maximum 256");

    /* over-long line: 4096 bytes is fine, 4097 is not */
    char *big = malloc(5000);
    assert_non_null(big);
    memset(big, ' ', 4096);
    memcpy(big, "access_log /x", 13);
    memset(big + 13, 'y', 4096 - 13 - 100);
    strcpy(big + 4096, "\r\nworkers 1\n");
    write_file("wsgate.conf", big);
    c = fresh();
    if (wsg_cfg_load_file(c, "wsgate.conf", err) != -1 || strstr(err, "longer than 511") == NULL)
        fail_msg("4096-byte line: %s", err); /* read fine, value too long for access_log */
    memset(big, '#', 4097);
    strcpy(big + 4097, "\nworkers 1\n");
    write_file("wsgate.conf", big);
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, "wsgate.conf", err), -1);
    assert_string_equal(err, "wsgate.conf:1: line is longer than 4096 bytes");
    free(big);

    /* unreadable: a directory */
    assert_int_equal(wsg_cfg_load_file(c, tmpdir, err), -1);
    assert_non_null(strstr(err, tmpdir));

    /* a NUL byte in a line */
    FILE *f = fopen("wsgate.conf", "w");
    fwrite("workers 1\0 2\n", 1, 13, f);
    fclose(f);
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, "wsgate.conf", err), -1);
    assert_string_equal(err, "wsgate.conf:1: line contains a NUL byte");
}

/* affinity, affinity_cookie, affinity_cookie_ttl (issue 14): defaults and bad values, each named
 * with file, line and key. */
static void test_affinity_settings(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_int_equal(c->affinity, WSG_AFFINITY_IP);
    assert_string_equal(c->affinity_cookie, "wsgate_upstream");
    assert_true(c->affinity_cookie_ttl == 86400);
    assert_string_equal(c->affinity_key_file, "");
    assert_string_equal(set(c, "affinity", "cookie"), "");
    assert_int_equal(c->affinity, WSG_AFFINITY_COOKIE);
    assert_string_equal(set(c, "affinity", "ip"), "");
    assert_int_equal(c->affinity, WSG_AFFINITY_IP);
    assert_string_equal(set(c, "affinity", "sticky"),
                        "wsgate.conf:12: affinity: \"sticky\" is not one of: ip cookie");
    assert_string_equal(set(c, "affinity_cookie", "SERVERID"), "");
    assert_string_equal(c->affinity_cookie, "SERVERID");
    const char *bad[] = {"a b", "a;b", "a=b", "a,b", "a\"b", "(a)", "a/b", "a\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_non_null(strstr(set(c, "affinity_cookie", bad[i]), "affinity_cookie: "));
    assert_string_equal(c->affinity_cookie, "SERVERID"); /* unchanged by the refusals */
    assert_string_equal(set(c, "affinity_cookie_ttl", "10m"), "");
    assert_true(c->affinity_cookie_ttl == 600);
    assert_non_null(strstr(set(c, "affinity_cookie_ttl", "10s"), "wsgate.conf:12: affinity_cookie_ttl: "));
    assert_non_null(strstr(set(c, "affinity_cookie_ttl", "soon"), "wsgate.conf:12: affinity_cookie_ttl: "));
}

/* health_* inside a route block (issue 15): the route's own group gets its own values; unset
 * ones stay 0 ("the global setting"); a bad value names file, line and key. */
static void test_route_health(void **state)
{
    (void)state;
    char err[WSG_ERRLEN];
    struct wsg_cfg *c = fresh();
    const char *path =
        write_file("rh.conf", "upstream 10.0.0.1:80\nhealth_check /g\nroute r {\n    path /r/\n"
                              "    upstream 10.0.0.2:80\n    health_check /r\n    health_fall 5\n}\n");
    assert_int_equal(wsg_cfg_load_file(c, path, err), 0);
    assert_int_equal(wsg_cfg_finish(c, err), 0);
    assert_string_equal(c->health_check, "/g");
    assert_string_equal(c->routes[0].policy.health_check, "/r");
    assert_int_equal(c->routes[0].policy.health_fall, 5);
    assert_int_equal(c->routes[0].policy.health_rise, 0);
    assert_true(c->routes[0].policy.health_interval == 0);
    c = fresh();
    path =
        write_file("rh2.conf", "upstream 10.0.0.1:80\nroute r {\n    path /r/\n    health_check nope\n}\n");
    assert_int_equal(wsg_cfg_load_file(c, path, err), -1);
    assert_non_null(strstr(err, "rh2.conf:4: health_check: \"nope\" is not off or a path starting with /"));
}

/* redis, redis_prefix, redis_sync (issue 14): defaults and bad values with file, line and key. */
static void test_redis_settings(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_string_equal(c->redis, "");
    assert_string_equal(c->redis_prefix, "wsgate:");
    assert_true(c->redis_sync > 0.0999 && c->redis_sync < 0.1001);
    assert_string_equal(set(c, "redis", "127.0.0.1:6379"), "");
    assert_string_equal(set(c, "redis", "redis.internal:6380"), "");
    assert_string_equal(set(c, "redis", "[::1]:6379"), "");
    assert_string_equal(set(c, "redis", "unix:/run/redis/redis.sock"), "");
    assert_string_equal(c->redis, "unix:/run/redis/redis.sock");
    const char *bad[] = {"localhost", "localhost:", ":6379", "h:0",
                         "h:65536",   "h:63x",      "h:-1",  "unix:relative"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *e = set(c, "redis", bad[i]);
        if (strstr(e, "wsgate.conf:12: redis: ") == NULL ||
            strstr(e, "is not HOST:PORT or unix:/PATH") == NULL)
            fail_msg("%s: %s", bad[i], e);
    }
    assert_string_equal(c->redis, "unix:/run/redis/redis.sock");
    assert_string_equal(set(c, "redis_sync", "250ms"), "");
    assert_true(c->redis_sync > 0.2499 && c->redis_sync < 0.2501);
    assert_non_null(strstr(set(c, "redis_sync", "1ms"), "wsgate.conf:12: redis_sync: "));
    assert_non_null(strstr(set(c, "redis_sync", "1m"), "wsgate.conf:12: redis_sync: "));
    assert_string_equal(set(c, "redis_prefix", "fleet-a:"), "");
    assert_non_null(strstr(set(c, "redis_prefix",
                               "x"
                               "0123456789012345678901234567890123456789012345678901234567890123"),
                           "wsgate.conf:12: redis_prefix: "));
}

/* listen ADDR proxy_protocol (issue 14) and proxy_protocol_from. */
static void test_proxy_protocol_settings(void **state)
{
    (void)state;
    char err[WSG_ERRLEN];
    struct wsg_cfg *c = fresh();
    assert_string_equal(set(c, "upstream", "10.0.0.1:80"), "");
    assert_string_equal(set(c, "listen", ":8443"), "");
    assert_string_equal(set(c, "listen", "127.0.0.1:9443 proxy_protocol"), "");
    assert_string_equal(set(c, "listen", "[::1]:9443   proxy_protocol  "), "");
    assert_int_equal(c->nlisten, 3);
    assert_string_equal(c->listen[1], "127.0.0.1:9443");
    assert_string_equal(c->listen[2], "[::1]:9443");
    assert_int_equal(c->listen_proxy[0], 0);
    assert_int_equal(c->listen_proxy[1], 1);
    assert_int_equal(c->listen_proxy[2], 1);
    assert_string_equal(set(c, "listen", "127.0.0.1:9443"),
                        "wsgate.conf:12: listen: \"127.0.0.1:9443\" is given twice");
    assert_string_equal(
        set(c, "listen", ":1 proxy"),
        "wsgate.conf:12: listen: \":1 proxy\" has \"proxy\" after the address (the only option is "
        "proxy_protocol)");
    assert_string_equal(
        set(c, "listen", ":1 proxy_protocol x"),
        "wsgate.conf:12: listen: \":1 proxy_protocol x\" has \"proxy_protocol x\" after the address (the "
        "only option is proxy_protocol)");
    /* the default: any sender */
    assert_int_equal(wsg_cfg_finish(c, err), 0);
    assert_int_equal(c->nproxy_from, 1);
    assert_int_equal(c->proxy_from[0].bits, 0);
    assert_string_equal(set(c, "proxy_protocol_from", "10.0.0.0/8  192.0.2.7 2001:db8::/32"), "");
    assert_int_equal(wsg_cfg_finish(c, err), 0);
    assert_int_equal(c->nproxy_from, 3);
    assert_int_equal(c->proxy_from[0].bits, 96 + 8);
    assert_int_equal(c->proxy_from[1].bits, 128);
    assert_int_equal(c->proxy_from[2].bits, 32);
    assert_string_equal(set(c, "proxy_protocol_from", "10.0.0.1/8"), "");
    assert_int_equal(wsg_cfg_finish(c, err), -1);
    assert_string_equal(err, "proxy_protocol_from: \"10.0.0.1/8\" has host bits set below its prefix length");
    assert_string_equal(set(c, "proxy_protocol_from", "lb.example.com"), "");
    assert_int_equal(wsg_cfg_finish(c, err), -1);
    assert_non_null(strstr(err, "\"lb.example.com\" is not an address or CIDR"));

    /* the command line's first --listen replaces the file's list, flags included */
    c = fresh();
    const char *path = write_file(
        "pp.conf", "listen :8443 proxy_protocol\nlisten :9443 proxy_protocol\nupstream 10.0.0.1:80\n");
    assert_int_equal(wsg_cfg_load_file(c, path, err), 0);
    assert_int_equal(c->listen_proxy[1], 1);
    char *argv[] = {"wsgate", "-c", (char *)path, "--listen", ":10443", NULL};
    assert_int_equal(wsg_cfg_load_args(c, 5, argv, err), 0);
    assert_int_equal(c->nlisten, 1);
    assert_int_equal(c->listen_proxy[0], 0);
    assert_int_equal(c->listen_proxy[1], 0);
}

static void test_args(void **state)
{
    (void)state;
    char err[WSG_ERRLEN];
    struct wsg_cfg *c = fresh();
    const char *path = write_file("args.conf", "listen :8443\nlisten :9443\nupstream 10.0.0.1:80\nworkers 4\n"
                                               "max_frame 1m\n");
    assert_int_equal(wsg_cfg_load_file(c, path, err), 0);
    char *argv[] = {"wsgate",      "-c",
                    (char *)path,  "-t",
                    "--workers=8", "--listen",
                    ":10443",      "--listen",
                    "[::1]:10443", "-h",
                    "--help",      "--max_frame",
                    "2m",          "--upstream=10.0.0.2:80 weight=5",
                    NULL};
    int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;
    if (wsg_cfg_load_args(c, argc, argv, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c->workers, 8);
    assert_int_equal(c->max_frame, 2 << 20);
    assert_int_equal(c->nlisten, 2); /* the file's two were replaced */
    assert_string_equal(c->listen[0], ":10443");
    assert_string_equal(c->listen[1], "[::1]:10443");
    assert_int_equal(c->nupstream, 1);
    assert_string_equal(c->upstream[0].addr, "10.0.0.2:80");
    assert_int_equal(c->upstream[0].weight, 5);
    assert_int_equal(wsg_cfg_finish(c, err), 0);

    /* errors */
    char *a1[] = {"wsgate", "--max_frame", "x"};
    assert_int_equal(wsg_cfg_load_args(c, 3, a1, err), -1);
    assert_string_equal(err, "--max_frame: \"x\" is not a size (e.g. 64k, 1m)");
    char *a2[] = {"wsgate", "--max_mesage=1m"};
    assert_int_equal(wsg_cfg_load_args(c, 2, a2, err), -1);
    assert_string_equal(err, "unknown option \"--max_mesage\" (did you mean \"--max_message\"?)");
    char *a3[] = {"wsgate", "--workers"};
    assert_int_equal(wsg_cfg_load_args(c, 2, a3, err), -1);
    assert_string_equal(err, "--workers: missing value");
    char *a4[] = {"wsgate", "--workers="};
    assert_int_equal(wsg_cfg_load_args(c, 2, a4, err), -1);
    assert_string_equal(err, "--workers: missing value");
    char *a5[] = {"wsgate", "stray"};
    assert_int_equal(wsg_cfg_load_args(c, 2, a5, err), -1);
    assert_non_null(strstr(err, "\"stray\""));
    char *a6[] = {"wsgate", "-x"};
    assert_int_equal(wsg_cfg_load_args(c, 2, a6, err), -1);
    char *a7[] = {"wsgate", "--nosuchthing", "1"};
    assert_int_equal(wsg_cfg_load_args(c, 3, a7, err), -1);
    assert_string_equal(err, "unknown option \"--nosuchthing\"");
    /* a scalar twice on the command line: the last one wins */
    char *a8[] = {"wsgate", "--workers", "2", "--workers", "3"};
    assert_int_equal(wsg_cfg_load_args(c, 5, a8, err), 0);
    assert_int_equal(c->workers, 3);
    /* no argv settings: the file's lists stay */
    c = fresh();
    assert_int_equal(wsg_cfg_load_file(c, path, err), 0);
    char *a9[] = {"wsgate", "-c", (char *)path};
    assert_int_equal(wsg_cfg_load_args(c, 3, a9, err), 0);
    assert_int_equal(c->nlisten, 2);
    assert_int_equal(c->workers, 4);
}

static char *capture(void (*fn)(FILE *))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    fn(f);
    fclose(f);
    return text;
}

static void test_help_and_markdown(void **state)
{
    (void)state;
    static const char *names[] = {"listen",
                                  "listen_http",
                                  "cert",
                                  "key",
                                  "upstream",
                                  "workers",
                                  "hash_prefix",
                                  "affinity",
                                  "affinity_cookie",
                                  "affinity_cookie_ttl",
                                  "affinity_key_file",
                                  "redis",
                                  "redis_password",
                                  "redis_prefix",
                                  "redis_sync",
                                  "max_fails",
                                  "fail_timeout",
                                  "health_check",
                                  "health_interval",
                                  "health_timeout",
                                  "health_rise",
                                  "health_fall",
                                  "handshake_timeout",
                                  "header_timeout",
                                  "keepalive_timeout",
                                  "connect_timeout",
                                  "upstream_timeout",
                                  "ws_idle_timeout",
                                  "drain_timeout",
                                  "max_frame",
                                  "max_message",
                                  "max_body",
                                  "buffer_size",
                                  "max_header_size",
                                  "max_uri",
                                  "max_headers",
                                  "ticket_lifetime",
                                  "proxy_protocol_from",
                                  "ticket_key_file",
                                  "access_log",
                                  "log_level",
                                  "client_max_frame",
                                  "upstream_max_frame",
                                  "client_max_message",
                                  "upstream_max_message",
                                  "max_fragments",
                                  "client_max_fragments",
                                  "upstream_max_fragments",
                                  "allow_text",
                                  "client_allow_text",
                                  "upstream_allow_text",
                                  "allow_binary",
                                  "client_allow_binary",
                                  "upstream_allow_binary",
                                  "utf8",
                                  "client_utf8",
                                  "upstream_utf8",
                                  "rate_messages",
                                  "rate_messages_burst",
                                  "rate_bytes",
                                  "rate_bytes_burst",
                                  "rate_inflate_bytes",
                                  "rate_inflate_bytes_burst",
                                  "ip_rate_messages",
                                  "ip_rate_messages_burst",
                                  "ip_rate_bytes",
                                  "ip_rate_bytes_burst",
                                  "rate_action",
                                  "ip_max_conns",
                                  "ip_upgrades",
                                  "ip_upgrades_burst",
                                  "ip_limit_status",
                                  "deflate",
                                  "deflate_max_ratio",
                                  "deflate_client_no_context_takeover",
                                  "origins",
                                  "subprotocols",
                                  "ping_interval",
                                  "pong_timeout",
                                  "max_lifetime",
                                  "lifetime_jitter",
                                  "slow_consumer_bytes",
                                  "slow_consumer_grace",
                                  "ip_table_size",
                                  "ip_table_shards",
                                  "admin",
                                  "drain_spread",
                                  "max_connections",
                                  "max_connections_per_ip",
                                  "user",
                                  "group",
                                  "key_permissions",
                                  "session_log_interval",
                                  "watch_certs",
                                  "tls_cipher_order"};
    char *help = capture(wsg_cfg_help);
    char *md = capture(wsg_cfg_markdown);
    assert_non_null(strstr(help, "wsgate [-t] [-c FILE] [--NAME VALUE]..."));
    assert_non_null(strstr(help, "(default: 16m)"));
    assert_non_null(strstr(md, "| name | type | default | where | description |"));
    assert_non_null(strstr(md, "| `client_max_message` | size | `1m` | top, route |"));
    assert_non_null(strstr(md, "| `workers` | number | `0` | top |"));
    assert_non_null(strstr(help, "--client_max_frame SIZE"));
    assert_non_null(strstr(help, "(default: 1m) [route]"));
    struct wsg_cfg *c = fresh();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char opt[128];
        snprintf(opt, sizeof(opt), "  --%s ", names[i]);
        if (strstr(help, opt) == NULL)
            fail_msg("--help lacks %s", names[i]);
        snprintf(opt, sizeof(opt), "| `%s` |", names[i]);
        if (strstr(md, opt) == NULL)
            fail_msg("markdown lacks %s", names[i]);
        /* and each is a real setting */
        snprintf(opt, sizeof(opt), "wsgate.conf:12: %s: missing value", names[i]);
        assert_string_equal(set(c, names[i], ""), opt);
    }
    /* one line per setting after the header lines, no more */
    size_t lines = 0;
    for (const char *p = help; (p = strstr(p, "\n  --")) != NULL; p++)
        lines++;
    assert_int_equal(lines, sizeof(names) / sizeof(names[0]));
    free(help);
    free(md);
}

static void test_policy_settings(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    struct wsg_policy *p = &c->policy;
    /* three spellings */
    assert_string_equal(set(c, "max_frame", "64k"), "");
    assert_int_equal(p->c2u.max_frame, 64 << 10);
    assert_int_equal(p->u2c.max_frame, 64 << 10);
    assert_int_equal(c->max_frame, 64 << 10); /* transitional field follows the plain setting */
    assert_string_equal(set(c, "client_max_frame", "32k"), "");
    assert_int_equal(p->c2u.max_frame, 32 << 10);
    assert_int_equal(p->u2c.max_frame, 64 << 10);
    assert_int_equal(c->max_frame, 64 << 10);
    assert_string_equal(set(c, "upstream_max_message", "128k"), "");
    assert_int_equal(p->u2c.max_message, 128 << 10);
    assert_int_equal(p->c2u.max_message, 1 << 20);
    assert_string_equal(set(c, "max_message", "256k"), "");
    assert_int_equal(p->c2u.max_message, 256 << 10);
    assert_int_equal(p->u2c.max_message, 256 << 10);
    assert_int_equal(c->max_message, 256 << 10);
    assert_string_equal(set(c, "client_max_fragments", "10"), "");
    assert_int_equal(p->c2u.max_fragments, 10);
    assert_int_equal(p->u2c.max_fragments, 0);
    /* switches */
    assert_string_equal(set(c, "allow_binary", "off"), "");
    assert_int_equal(p->c2u.allow_binary, 0);
    assert_int_equal(p->u2c.allow_binary, 0);
    assert_int_equal(p->c2u.allow_text, 1);
    assert_string_equal(set(c, "upstream_allow_binary", "on"), "");
    assert_int_equal(p->u2c.allow_binary, 1);
    assert_int_equal(p->c2u.allow_binary, 0);
    assert_string_equal(set(c, "client_utf8", "off"), "");
    assert_int_equal(p->c2u.utf8, 0);
    assert_int_equal(p->u2c.utf8, 1);
    assert_string_equal(set(c, "upstream_allow_text", "off"), "");
    assert_int_equal(p->u2c.allow_text, 0);
    assert_int_equal(p->c2u.allow_text, 1);
    /* rates */
    assert_string_equal(set(c, "rate_messages", "2.5"), "");
    assert_true(p->conn_msgs.rate == 2.5);
    assert_string_equal(set(c, "rate_messages_burst", "20"), "");
    assert_true(p->conn_msgs.burst == 20);
    assert_string_equal(set(c, "rate_bytes", "64k"), "");
    assert_true(p->conn_bytes.rate == 65536);
    assert_string_equal(set(c, "rate_bytes_burst", "1m"), "");
    assert_true(p->conn_bytes.burst == 1048576);
    assert_true(p->conn_inflate.rate == 0 && p->conn_inflate.burst == 0); /* off by default */
    assert_string_equal(set(c, "rate_inflate_bytes", "10m"), "");
    assert_string_equal(set(c, "rate_inflate_bytes_burst", "64m"), "");
    assert_true(p->conn_inflate.rate == 10485760 && p->conn_inflate.burst == 67108864);
    assert_string_equal(set(c, "ip_rate_messages", "100"), "");
    assert_string_equal(set(c, "ip_rate_messages_burst", "0.5"), "");
    assert_true(p->ip_msgs.rate == 100 && p->ip_msgs.burst == 0.5);
    assert_string_equal(set(c, "ip_rate_bytes", "1m"), "");
    assert_string_equal(set(c, "ip_rate_bytes_burst", "4m"), "");
    assert_true(p->ip_bytes.rate == 1048576 && p->ip_bytes.burst == 4194304);
    assert_string_equal(set(c, "ip_upgrades", "0.2"), "");
    assert_string_equal(set(c, "ip_upgrades_burst", "5"), "");
    assert_true(p->ip_upgrades.rate == 0.2 && p->ip_upgrades.burst == 5);
    assert_int_equal(p->deflate_client_no_context, 0);
    assert_string_equal(set(c, "deflate_client_no_context_takeover", "on"), "");
    assert_int_equal(p->deflate_client_no_context, 1);
    assert_string_equal(set(c, "rate_action", "close"), "");
    assert_int_equal(p->rate_action, WSG_RATE_CLOSE);
    assert_string_equal(set(c, "rate_action", "throttle"), "");
    assert_int_equal(p->rate_action, WSG_RATE_THROTTLE);
    assert_string_equal(set(c, "ip_max_conns", "8"), "");
    assert_int_equal(p->ip_max_conns, 8);
    assert_string_equal(set(c, "ip_limit_status", "503"), "");
    assert_int_equal(p->ip_limit_status, 503);
    /* lists append */
    assert_string_equal(set(c, "origins", "https://app.example.com  *.example.net"), "");
    assert_string_equal(set(c, "origins", "null http://[::1]:3000 https://*.example.io"), "");
    assert_int_equal(p->norigins, 5);
    assert_string_equal(p->origins[0], "https://app.example.com");
    assert_string_equal(p->origins[4], "https://*.example.io");
    assert_string_equal(set(c, "subprotocols", "mqtt graphql-transport-ws"), "");
    assert_int_equal(p->nsubprotocols, 2);
    assert_string_equal(p->subprotocols[1], "graphql-transport-ws");
    /* liveness */
    assert_string_equal(set(c, "ping_interval", "20s"), "");
    assert_string_equal(set(c, "pong_timeout", "5s"), "");
    assert_string_equal(set(c, "max_lifetime", "1h"), "");
    assert_string_equal(set(c, "lifetime_jitter", "5m"), "");
    assert_string_equal(set(c, "slow_consumer_bytes", "4m"), "");
    assert_string_equal(set(c, "slow_consumer_grace", "10s"), "");
    assert_true(p->ping_interval == 20 && p->pong_timeout == 5 && p->max_lifetime == 3600 &&
                p->lifetime_jitter == 300 && p->slow_consumer_bytes == 4 << 20 &&
                p->slow_consumer_grace == 10);
    /* global-only ones */
    assert_string_equal(set(c, "ip_table_size", "1024"), "");
    assert_string_equal(set(c, "ip_table_shards", "256"), "");
    assert_int_equal(c->ip_table_size, 1024);
    assert_int_equal(c->ip_table_shards, 256);
    /* max_header_size at top level is the global cap, not the policy's */
    assert_string_equal(set(c, "max_header_size", "8k"), "");
    assert_int_equal(c->max_header_size, 8 << 10);
    assert_int_equal(p->max_header_size, 0);
}

static void test_policy_errors(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
    assert_string_equal(set(c, "client_max_message", "12x"),
                        "wsgate.conf:12: client_max_message: \"12x\" is not a size (e.g. 64k, 1m)");
    assert_string_equal(set(c, "upstream_max_frame", "2g"),
                        "wsgate.conf:12: upstream_max_frame: 2g is above the maximum 1g");
    assert_string_equal(set(c, "max_fragments", "x"), "wsgate.conf:12: max_fragments: \"x\" is not a number");
    assert_string_equal(set(c, "allow_text", "yes"),
                        "wsgate.conf:12: allow_text: \"yes\" is not one of: on off");
    assert_string_equal(set(c, "client_utf8", "1"),
                        "wsgate.conf:12: client_utf8: \"1\" is not one of: on off");
    assert_string_equal(set(c, "rate_messages", "1e3"),
                        "wsgate.conf:12: rate_messages: \"1e3\" is not a number (e.g. 10, 0.5)");
    assert_string_equal(set(c, "rate_messages", "-1"),
                        "wsgate.conf:12: rate_messages: \"-1\" is not a number (e.g. 10, 0.5)");
    assert_string_equal(set(c, "rate_messages", "5."),
                        "wsgate.conf:12: rate_messages: \"5.\" is not a number (e.g. 10, 0.5)");
    assert_string_equal(set(c, "rate_messages", "2000000"),
                        "wsgate.conf:12: rate_messages: 2000000 is above the maximum 1000000");
    assert_string_equal(set(c, "rate_bytes", "64kb"),
                        "wsgate.conf:12: rate_bytes: \"64kb\" is not a size (e.g. 64k, 1m)");
    assert_string_equal(set(c, "ip_rate_bytes", "2g"),
                        "wsgate.conf:12: ip_rate_bytes: 2g is above the maximum 1g");
    assert_string_equal(set(c, "rate_inflate_bytes", "1mb"),
                        "wsgate.conf:12: rate_inflate_bytes: \"1mb\" is not a size (e.g. 64k, 1m)");
    assert_string_equal(set(c, "rate_inflate_bytes", "-1m"),
                        "wsgate.conf:12: rate_inflate_bytes: \"-1m\" is not a size (e.g. 64k, 1m)");
    assert_string_equal(set(c, "rate_inflate_bytes_burst", "2g"),
                        "wsgate.conf:12: rate_inflate_bytes_burst: 2g is above the maximum 1g");
    assert_string_equal(set(c, "deflate_client_no_context_takeover", "yes"),
                        "wsgate.conf:12: deflate_client_no_context_takeover: \"yes\" is not one of: off on");
    assert_string_equal(set(c, "rate_action", "drop"),
                        "wsgate.conf:12: rate_action: \"drop\" is not one of: throttle close");
    assert_string_equal(set(c, "ip_limit_status", "403"),
                        "wsgate.conf:12: ip_limit_status: 403 is not one of: 429 503");
    assert_string_equal(
        set(c, "ip_table_shards", "48"),
        "wsgate.conf:12: ip_table_shards: 48 is not one of: 1 2 4 8 16 32 64 128 256 512 1024");
    assert_string_equal(set(c, "ip_table_size", "100"),
                        "wsgate.conf:12: ip_table_size: 100 is below the minimum 1024");
    assert_string_equal(set(c, "ip_table_size", "16777217"),
                        "wsgate.conf:12: ip_table_size: 16777217 is above the maximum 16777216");
    assert_string_equal(set(c, "pong_timeout", "0"),
                        "wsgate.conf:12: pong_timeout: 0 is below the minimum 100ms");
    assert_string_equal(
        set(c, "origins", "https://ok.example.com ftp:/bad"),
        "wsgate.conf:12: origins: \"ftp:/bad\" is not an origin (e.g. https://app.example.com, "
        "*.example.com or null)");
    assert_string_equal(set(c, "origins", "https://a.example.com/path"),
                        "wsgate.conf:12: origins: \"https://a.example.com/path\" is not an origin (e.g. "
                        "https://app.example.com, *.example.com or null)");
    assert_string_equal(set(c, "origins", "https://a.example.com:99999"),
                        "wsgate.conf:12: origins: \"https://a.example.com:99999\" is not an origin (e.g. "
                        "https://app.example.com, *.example.com or null)");
    assert_string_equal(set(c, "origins", "a.example.com A.example.com"),
                        "wsgate.conf:12: origins: \"A.example.com\" is given twice");
    assert_string_equal(set(c, "subprotocols", "chat v1/json"),
                        "wsgate.conf:12: subprotocols: \"v1/json\" is not a subprotocol name (a token)");
    char big[300];
    memset(big, 'a', 200);
    big[200] = '\0';
    char want[400];
    snprintf(want, sizeof(want), "wsgate.conf:12: origins: \"%s\" is longer than 127 bytes", big);
    assert_string_equal(set(c, "origins", big), want);
    /* capacity: 16 */
    assert_string_equal(set(c, "subprotocols", "a b c d e f g h i j k l m n o p"), "");
    assert_string_equal(set(c, "subprotocols", "q"), "wsgate.conf:12: subprotocols: more than 16 values");
    c->policy.nsubprotocols = 0;
    memset(c->policy.subprotocols, 0, sizeof(c->policy.subprotocols));
    /* a rejected line adds nothing, and nothing above changed the defaults */
    struct wsg_cfg d;
    wsg_cfg_defaults(&d);
    assert_memory_equal(c, &d, sizeof(d));
}

/* Loads text as tmpdir/wsgate.conf (by relative name, as errors show it). "" or the error. */
static const char *load(struct wsg_cfg *c, const char *text)
{
    static char err[WSG_ERRLEN];
    err[0] = '\0';
    char cwd[256];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmpdir), 0);
    write_file("wsgate.conf", text);
    wsg_cfg_defaults(c);
    int rc = wsg_cfg_load_file(c, "wsgate.conf", err);
    if (rc == 0)
        rc = wsg_cfg_finish(c, err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, err[0] != '\0' ? -1 : 0);
    return err;
}

static const struct wsg_cfg_route *route(const struct wsg_cfg *c, const char *host, const char *path)
{
    return wsg_cfg_route_match(c, host, host != NULL ? strlen(host) : 0, path, strlen(path));
}

static void test_routes(void **state)
{
    (void)state;
    struct wsg_cfg *c = malloc(sizeof(*c));
    assert_non_null(c);
    const char *e = load(c, "upstream 127.0.0.1:3000\n"
                            "route chat {\n"
                            "    host chat.example.com *.chat.example.com   # comment\n"
                            "    path /socket.io/\n"
                            "    upstream 127.0.0.1:3001 weight=2\n"
                            "    upstream 127.0.0.1:3002\n"
                            "    client_max_message 64k\n"
                            "    rate_messages 5\n"
                            "    origins https://chat.example.com\n"
                            "    max_header_size 8k\n"
                            "}\n"
                            "route api{\n"
                            "    path /api/;\n"
                            "    max_frame 4k\n"
                            "    utf8 off\n"
                            "    upstream_allow_binary off\n"
                            "}\n"
                            "route any_chat {\n"
                            "  host *.chat.example.com\n"
                            "}\n"
                            "# global settings after the routes still reach them\n"
                            "max_message 2m\n"
                            "ip_max_conns 10\n"
                            "rate_messages 100\n"
                            "origins https://www.example.com\n"
                            "allow_text off\n");
    if (e[0] != '\0')
        fail_msg("%s", e);
    assert_int_equal(c->nroutes, 3);
    const struct wsg_cfg_route *chat = &c->routes[0], *api = &c->routes[1], *any = &c->routes[2];
    assert_string_equal(chat->name, "chat");
    assert_int_equal(chat->line, 2);
    assert_string_equal(chat->file, "wsgate.conf");
    assert_int_equal(chat->nhosts, 2);
    assert_string_equal(chat->hosts[1], "*.chat.example.com");
    assert_string_equal(chat->path, "/socket.io/");
    assert_int_equal(chat->nupstream, 2);
    assert_string_equal(chat->upstream[0].addr, "127.0.0.1:3001");
    assert_int_equal(chat->upstream[0].weight, 2);
    assert_int_equal(c->nupstream, 1); /* the route's upstreams are its own */
    assert_string_equal(api->name, "api");
    assert_string_equal(api->path, "/api/");
    assert_int_equal(api->nupstream, 0);
    assert_string_equal(any->path, "/");

    /* global */
    assert_int_equal(c->policy.c2u.max_message, 2 << 20);
    assert_int_equal(c->policy.u2c.max_message, 2 << 20);
    assert_int_equal(c->policy.ip_max_conns, 10);
    assert_int_equal(c->policy.c2u.allow_text, 0);
    /* chat: its own settings over the final global policy */
    const struct wsg_policy *p = &chat->policy;
    assert_int_equal(p->c2u.max_message, 64 << 10);
    assert_int_equal(p->u2c.max_message, 2 << 20); /* inherited from a line below the block */
    assert_true(p->conn_msgs.rate == 5);           /* its own beats the global 100 */
    assert_int_equal(p->ip_max_conns, 10);
    assert_int_equal(p->norigins, 1); /* the route's list replaces the global one */
    assert_string_equal(p->origins[0], "https://chat.example.com");
    assert_int_equal(p->max_header_size, 8 << 10);
    assert_int_equal(p->c2u.allow_text, 0);
    assert_int_equal(p->c2u.max_frame, 1 << 20); /* defaults where nobody set anything */
    /* api */
    p = &api->policy;
    assert_int_equal(p->c2u.max_frame, 4 << 10);
    assert_int_equal(p->u2c.max_frame, 4 << 10);
    assert_int_equal(p->c2u.utf8, 0);
    assert_int_equal(p->u2c.utf8, 0);
    assert_int_equal(p->u2c.allow_binary, 0);
    assert_int_equal(p->c2u.allow_binary, 1);
    assert_int_equal(p->c2u.allow_text, 0); /* global switch inherited */
    assert_int_equal(p->norigins, 1);
    assert_string_equal(p->origins[0], "https://www.example.com");
    assert_true(p->conn_msgs.rate == 100);
    assert_int_equal(p->max_header_size, 0); /* the global cap */
    /* any_chat: all inherited */
    struct wsg_policy g = c->policy;
    assert_memory_equal(&any->policy, &g, sizeof(g));

    /* finishing again changes nothing */
    struct wsg_cfg *again = malloc(sizeof(*again));
    memcpy(again, c, sizeof(*c));
    char err[WSG_ERRLEN];
    assert_int_equal(wsg_cfg_finish(again, err), 0);
    assert_memory_equal(again, c, sizeof(*c));
    free(again);

    /* matching: file order, host patterns, path prefix */
    assert_ptr_equal(route(c, "chat.example.com", "/socket.io/?EIO=4"), chat);
    assert_ptr_equal(route(c, "CHAT.example.com:8443", "/socket.io/"), chat);
    assert_ptr_equal(route(c, "eu.chat.example.com", "/socket.io/x"), chat);
    assert_ptr_equal(route(c, "eu.chat.example.com", "/other"), any);   /* path fails chat, any has "/" */
    assert_ptr_equal(route(c, "chat.example.com", "/socket.io"), NULL); /* prefix is "/socket.io/" */
    assert_ptr_equal(route(c, "www.example.com", "/api/v1"), api);      /* api: any host */
    assert_ptr_equal(route(c, "chat.example.com", "/api/v1"), api);
    assert_ptr_equal(route(c, "www.example.com", "/"), NULL);
    assert_ptr_equal(route(c, NULL, "/socket.io/"), NULL); /* no Host: host routes cannot match */
    assert_ptr_equal(route(c, "badchat.example.com", "/socket.io/"), NULL);
    assert_ptr_equal(wsg_cfg_route_policy(c, NULL), &c->policy);
    assert_ptr_equal(wsg_cfg_route_policy(c, api), &api->policy);
    assert_int_equal(wsg_cfg_route_index(c, NULL), 0);
    assert_int_equal(wsg_cfg_route_index(c, chat), 1);
    assert_int_equal(wsg_cfg_route_index(c, any), 3);

    /* the command line sets the global level, which routes inherit */
    char *argv[] = {"wsgate", "--upstream_max_message", "3m", "--origins", "https://cli.example.com"};
    assert_int_equal(wsg_cfg_load_args(c, 5, argv, err), 0);
    assert_int_equal(wsg_cfg_finish(c, err), 0);
    assert_int_equal(c->routes[0].policy.u2c.max_message, 3 << 20);
    assert_int_equal(c->routes[0].policy.c2u.max_message, 64 << 10);
    assert_int_equal(c->policy.norigins, 1); /* argv replaced the file's list */
    assert_string_equal(c->routes[1].policy.origins[0], "https://cli.example.com");
    assert_string_equal(c->routes[0].policy.origins[0], "https://chat.example.com");
    free(c);
}

static void test_route_order_does_not_matter(void **state)
{
    (void)state;
    struct wsg_cfg *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    const char *block = "route r {\n  client_max_frame 8k\n  ip_upgrades 3\n}\n";
    const char *globals = "upstream 127.0.0.1:1\nmax_frame 512k\nip_upgrades 7\nip_upgrades_burst 9\n";
    char text[512];
    snprintf(text, sizeof(text), "%s%s", globals, block);
    assert_string_equal(load(a, text), "");
    snprintf(text, sizeof(text), "%s%s", block, globals);
    assert_string_equal(load(b, text), "");
    for (int i = 0; i < 2; i++) {
        const struct wsg_policy *p = &(i ? b : a)->routes[0].policy;
        assert_int_equal(p->c2u.max_frame, 8 << 10);
        assert_int_equal(p->u2c.max_frame, 512 << 10);
        assert_true(p->ip_upgrades.rate == 3 && p->ip_upgrades.burst == 9);
    }
    assert_memory_equal(&a->routes[0].policy, &b->routes[0].policy, sizeof(a->routes[0].policy));
    /* plain and prefixed in one block: the later line wins for its direction */
    assert_string_equal(load(a, "upstream 127.0.0.1:1\nroute r {\n client_max_frame 8k\n max_frame 16k\n}\n"
                                "route s {\n max_frame 16k\n client_max_frame 8k\n}\n"),
                        "");
    assert_int_equal(a->routes[0].policy.c2u.max_frame, 16 << 10);
    assert_int_equal(a->routes[1].policy.c2u.max_frame, 8 << 10);
    assert_int_equal(a->routes[1].policy.u2c.max_frame, 16 << 10);
    free(a);
    free(b);
}

static void test_route_errors(void **state)
{
    (void)state;
    struct wsg_cfg *c = malloc(sizeof(*c));
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"route chat {\n  client_max_message 12x\n}\n",
         "wsgate.conf:2: client_max_message: \"12x\" is not a size (e.g. 64k, 1m)"},
        {"upstream 127.0.0.1:1\nroute chat {\n  workers 4\n}\n",
         "wsgate.conf:3: workers: not allowed inside a route block"},
        {"route chat {\n  ip_table_size 2048\n}\n",
         "wsgate.conf:2: ip_table_size: not allowed inside a route block"},
        {"route chat {\n  listen :8443\n}\n", "wsgate.conf:2: listen: not allowed inside a route block"},
        {"# c\nroute chat {\n  host chat.example.com\n\n",
         "wsgate.conf:4: route chat: unclosed block (opened on line 2)"},
        {"route chat {\n  route inner {\n  }\n}\n",
         "wsgate.conf:2: route: nested route blocks are not allowed (route chat opened on line 1)"},
        {"route chat {\n}\nroute api {\n}\nroute chat {\n}\n",
         "wsgate.conf:5: route chat: duplicate route name (first defined on line 1)"},
        {"}\n", "wsgate.conf:1: unexpected \"}\" (no route block is open)"},
        {"route chat {\n} x\n", "wsgate.conf:2: unexpected \"}\" (a line of its own closes a route block)"},
        {"route {\n}\n", "wsgate.conf:1: route: expected \"route NAME {\""},
        {"route chat\n}\n", "wsgate.conf:1: route: expected \"route NAME {\""},
        {"route chat { max_frame 1k }\n", "wsgate.conf:1: route: expected \"route NAME {\""},
        {"route a/b {\n}\n",
         "wsgate.conf:1: route: \"a/b\" is not a route name (letters, digits, _ - .; up to 63)"},
        {"host example.com\n", "wsgate.conf:1: host: only allowed inside a route block"},
        {"path /x\n", "wsgate.conf:1: path: only allowed inside a route block"},
        {"route r {\n  host bad_host!\n}\n", "wsgate.conf:2: host: \"bad_host!\" is not a host name or "
                                             "pattern (e.g. chat.example.com, *.example.com)"},
        {"route r {\n  host example.com:443\n}\n",
         "wsgate.conf:2: host: \"example.com:443\" is not a host name or pattern (e.g. chat.example.com, "
         "*.example.com)"},
        {"route r {\n  host a.example.com a.example.com\n}\n",
         "wsgate.conf:2: host: \"a.example.com\" is given twice"},
        {"route r {\n  host\n}\n", "wsgate.conf:2: host: missing value"},
        {"route r {\n  path api\n}\n", "wsgate.conf:2: path: \"api\" is not a path prefix (starts with /)"},
        {"route r {\n  path /a\n  path /b\n}\n", "wsgate.conf:3: path: is duplicate (first set on line 2)"},
        {"route r {\n  rate_messages 1\n  rate_messages 2\n}\n",
         "wsgate.conf:3: rate_messages: is duplicate (first set on line 2)"},
        {"route r {\n  upstream 127.0.0.1:1\n  upstream 127.0.0.1:1\n}\n",
         "wsgate.conf:3: upstream: \"127.0.0.1:1\" is given twice"},
        {"route r {\n  utf8 maybe\n}\n", "wsgate.conf:2: utf8: \"maybe\" is not one of: on off"},
        {"route r {\n  max_mesage 1m\n}\n",
         "wsgate.conf:2: unknown setting \"max_mesage\" (did you mean \"max_message\"?)"},
        {"upstream 127.0.0.1:1\nroute chat {\n  max_header_size 32k\n}\n",
         "wsgate.conf:3: route chat: max_header_size: 32k is above the global max_header_size 16k"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *e = load(c, cases[i].text);
        if (strcmp(e, cases[i].err) != 0)
            fail_msg("case %zu:\n  got  %s\n  want %s", i, e, cases[i].err);
    }
    /* the same route line is fine once the global cap is raised, wherever that line is */
    assert_string_equal(load(c,
                             "upstream 127.0.0.1:1\nbuffer_size 64k\nroute chat {\n  max_header_size 32k\n}\n"
                             "max_header_size 32k\n"),
                        "");
    assert_int_equal(c->routes[0].policy.max_header_size, 32 << 10);
    /* a scalar set at top level and in a route is not a duplicate */
    assert_string_equal(load(c, "upstream 127.0.0.1:1\nrate_messages 1\nroute a {\n rate_messages 2\n}\n"
                                "route b {\n rate_messages 3\n}\n"),
                        "");
    /* 32 routes at most; 16 upstreams per route */
    char *text = malloc(32 * 1024);
    size_t n = (size_t)sprintf(text, "upstream 127.0.0.1:1\n");
    for (int i = 0; i < WSG_CFG_MAX_ROUTES; i++)
        n += (size_t)sprintf(text + n, "route r%d {\n}\n", i);
    assert_string_equal(load(c, text), "");
    assert_int_equal(c->nroutes, WSG_CFG_MAX_ROUTES);
    sprintf(text + n, "route r99 {\n}\n");
    assert_string_equal(load(c, text), "wsgate.conf:66: route r99: more than 32 routes");
    n = (size_t)sprintf(text, "upstream 127.0.0.1:1\nroute r {\n");
    for (int i = 0; i < WSG_CFG_MAX_ROUTE_UPSTREAMS + 1; i++)
        n += (size_t)sprintf(text + n, "upstream 127.0.0.1:%d\n", 1000 + i);
    sprintf(text + n, "}\n");
    assert_string_equal(load(c, text), "wsgate.conf:19: upstream: more than 16 values");
    free(text);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_set_scalars),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_listen_values),
        cmocka_unit_test(test_listen_http_values),
        cmocka_unit_test(test_upstream_values),
        cmocka_unit_test(test_cert_key_values),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_file_errors),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_proxy_protocol_settings),
        cmocka_unit_test(test_affinity_settings),
        cmocka_unit_test(test_redis_settings),
        cmocka_unit_test(test_route_health),
        cmocka_unit_test(test_help_and_markdown),
        cmocka_unit_test(test_policy_settings),
        cmocka_unit_test(test_policy_errors),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_route_order_does_not_matter),
        cmocka_unit_test(test_route_errors),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
