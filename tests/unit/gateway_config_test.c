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
    assert_string_equal(set(c, "fail_timeout", "10x"),
                        "wsgate.conf:12: fail_timeout: \"10x\" is not a duration (e.g. 500ms, 10s, 2m)");
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

static void test_upstream_values(void **state)
{
    (void)state;
    struct wsg_cfg *c = fresh();
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
                                  "cert",
                                  "key",
                                  "upstream",
                                  "workers",
                                  "hash_prefix",
                                  "max_fails",
                                  "fail_timeout",
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
                                  "access_log",
                                  "log_level"};
    char *help = capture(wsg_cfg_help);
    char *md = capture(wsg_cfg_markdown);
    assert_non_null(strstr(help, "wsgate [-t] [-c FILE] [--NAME VALUE]..."));
    assert_non_null(strstr(help, "(default: 16m)"));
    assert_non_null(strstr(md, "| name | type | default | description |"));
    struct wsg_cfg *c = fresh();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char opt[64];
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_set_scalars),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_listen_values),
        cmocka_unit_test(test_upstream_values),
        cmocka_unit_test(test_cert_key_values),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_file_errors),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_help_and_markdown),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
