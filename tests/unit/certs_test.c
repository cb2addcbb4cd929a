/*
 * certs_test.c - wsgate-certs gen, check, rotate and status, called as functions (the
 * subcommands' .c files are included, main.c is not): gen then check round trips, each failure
 * check must report, exit codes, key file mode, atomic writes; the admin HTTP client and JSON
 * reader; rotate refusing before it touches anything and rolling back when the gateway cannot be
 * reached; status against a canned admin endpoint. (The real gateway: tests/e2e/85-rotate.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certs/common.c"
#include "certs/gen.c"
#include "certs/check.c"
#include "certs/admin_client.c"
#include "certs/json.c"
#include "certs/probe.c"
#include "certs/rotate.c"

static char dir[64];

static const char *at(const char *name)
{
    static char bufs[8][256];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, 256, "%s/%s", dir, name);
    return b;
}

/* Output of one call, captured. */
struct capture {
    char *out, *err;
    size_t outlen, errlen;
    FILE *fout, *ferr;
};

static void cap_open(struct capture *c)
{
    memset(c, 0, sizeof(*c));
    c->fout = open_memstream(&c->out, &c->outlen);
    c->ferr = open_memstream(&c->err, &c->errlen);
    assert_non_null(c->fout);
    assert_non_null(c->ferr);
}

static void cap_close(struct capture *c)
{
    fclose(c->fout);
    fclose(c->ferr);
}

static void cap_free(struct capture *c)
{
    free(c->out);
    free(c->err);
}

static void gen_or_fail(const char *const *names, size_t n, const char *ca_out, const char *ca_cert,
                        const char *ca_key, unsigned days, const char *cert, const char *key)
{
    struct wsg_certs_gen_opts o = {.names = names,
                                   .nnames = n,
                                   .days = days,
                                   .ca_out_dir = ca_out,
                                   .ca_cert = ca_cert,
                                   .ca_key = ca_key,
                                   .out_cert = cert,
                                   .out_key = key};
    char err[WSG_ERRLEN] = "";
    int rc = wsg_certs_gen(&o, NULL, err);
    if (rc != 0)
        fail_msg("gen %s: %s", cert, err);
}

/* Runs check; returns the exit code and leaves the captured output in c (caller frees). */
static int check(struct capture *c, const char *cert, const char *key, const char *ca,
                 const char *const *names, size_t n, unsigned warn_days, int json)
{
    struct wsg_certs_check_opts o = {.cert = cert,
                                     .key = key,
                                     .ca = ca,
                                     .names = names,
                                     .nnames = n,
                                     .warn_days = warn_days,
                                     .json = json};
    cap_open(c);
    int rc = wsg_certs_check(&o, c->fout, c->ferr);
    cap_close(c);
    return rc;
}

static int check_rc(const char *cert, const char *key, const char *ca, const char *const *names, size_t n,
                    unsigned warn_days)
{
    struct capture c;
    int rc = check(&c, cert, key, ca, names, n, warn_days, 0);
    if (rc != 0)
        print_message("check %s -> %d:\n%s", cert, rc, c.err);
    cap_free(&c);
    return rc;
}

/* Runs a subcommand's argv entry point; returns its exit code. */
static int run_main(int (*fn)(int, char **, FILE *, FILE *), char **argv, struct capture *c)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    cap_open(c);
    int rc = fn(argc, argv, c->fout, c->ferr);
    cap_close(c);
    return rc;
}

/* ---- round trips ---- */

static void test_selfsigned_round_trip(void **state)
{
    (void)state;
    static const char *const names[] = {"a.test", "*.a.test", "127.0.0.1", "::1"};
    gen_or_fail(names, 4, NULL, NULL, NULL, 0, at("ss.pem"), at("ss.key"));
    static const char *const want[] = {"a.test", "www.a.test", "WWW.A.TEST", "127.0.0.1", "::1", "0:0::1"};
    /* a self-signed certificate is its own trust anchor */
    assert_int_equal(check_rc(at("ss.pem"), at("ss.key"), at("ss.pem"), want, 6, 30), WSG_CERTS_OK);
    assert_int_equal(check_rc(at("ss.pem"), at("ss.key"), NULL, NULL, 0, 30), WSG_CERTS_OK);
}

static void test_ca_out_round_trip(void **state)
{
    (void)state;
    static const char *const names[] = {"b.test", "*.b.test", "10.1.2.3", "fe80::1"};
    gen_or_fail(names, 4, at("ca"), NULL, NULL, 0, at("b.pem"), at("b.key"));
    static const char *const want[] = {"b.test", "x.b.test", "10.1.2.3", "fe80::1"};
    assert_int_equal(check_rc(at("b.pem"), at("b.key"), at("ca/ca.pem"), want, 4, 30), WSG_CERTS_OK);
    /* the CA itself is a pair too, and its key is private */
    assert_int_equal(check_rc(at("ca/ca.pem"), at("ca/ca.key"), at("ca/ca.pem"), NULL, 0, 30), WSG_CERTS_OK);
    struct stat sb;
    assert_int_equal(stat(at("ca/ca.key"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* another trust anchor does not verify it */
    static const char *const other[] = {"other.test"};
    gen_or_fail(other, 1, NULL, NULL, NULL, 0, at("other.pem"), at("other.key"));
    struct capture c;
    assert_int_equal(check(&c, at("b.pem"), at("b.key"), at("other.pem"), NULL, 0, 30, 0), WSG_CERTS_BAD);
    assert_non_null(strstr(c.err, "b.pem: chain does not verify against "));
    assert_non_null(strstr(c.err, "other.pem: "));
    cap_free(&c);

    /* a second --ca-out into the same directory would orphan every leaf the CA signed */
    struct wsg_certs_gen_opts o = {.names = names,
                                   .nnames = 1,
                                   .ca_out_dir = at("ca"),
                                   .out_cert = at("b2.pem"),
                                   .out_key = at("b2.key")};
    char err[WSG_ERRLEN];
    assert_int_equal(wsg_certs_gen(&o, NULL, err), -1);
    assert_non_null(strstr(err, "a CA already exists"));
    assert_int_equal(access(at("b2.pem"), F_OK), -1);
}

static void test_existing_ca_round_trip(void **state)
{
    (void)state;
    static const char *const names[] = {"c.test"};
    gen_or_fail(names, 1, at("ca2"), NULL, NULL, 0, at("c0.pem"), at("c0.key"));
    gen_or_fail(names, 1, NULL, at("ca2/ca.pem"), at("ca2/ca.key"), 7, at("c.pem"), at("c.key"));
    assert_int_equal(check_rc(at("c.pem"), at("c.key"), at("ca2/ca.pem"), names, 1, 5), WSG_CERTS_OK);

    /* a leaf is not a CA: signing with one is refused and nothing is written */
    struct wsg_certs_gen_opts o = {.names = names,
                                   .nnames = 1,
                                   .ca_cert = at("c.pem"),
                                   .ca_key = at("c.key"),
                                   .out_cert = at("c2.pem"),
                                   .out_key = at("c2.key")};
    char err[WSG_ERRLEN];
    assert_int_equal(wsg_certs_gen(&o, NULL, err), -1);
    assert_non_null(strstr(err, "cannot sign server certificates"));
    assert_int_equal(access(at("c2.pem"), F_OK), -1);
    assert_int_equal(access(at("c2.key"), F_OK), -1);

    /* a CA key that is not the CA's */
    o.ca_cert = at("ca2/ca.pem");
    o.ca_key = at("c.key");
    assert_int_equal(wsg_certs_gen(&o, NULL, err), -1);
    assert_non_null(strstr(err, "c.key: private key does not match"));
}

/* ---- what check must catch ---- */

static void test_mismatched_key(void **state)
{
    (void)state;
    static const char *const d[] = {"d.test"}, *const e[] = {"e.test"};
    gen_or_fail(d, 1, NULL, NULL, NULL, 0, at("d.pem"), at("d.key"));
    gen_or_fail(e, 1, NULL, NULL, NULL, 0, at("e.pem"), at("e.key"));
    struct capture c;
    assert_int_equal(check(&c, at("d.pem"), at("e.key"), NULL, NULL, 0, 30, 0), WSG_CERTS_BAD);
    char want[300];
    snprintf(want, sizeof(want), "%s: private key does not match %s\n", at("e.key"), at("d.pem"));
    assert_string_equal(c.err, want);
    assert_int_equal(c.outlen, 0);
    cap_free(&c);
}

static void test_wrong_name(void **state)
{
    (void)state;
    static const char *const names[] = {"example.com", "*.example.com"};
    gen_or_fail(names, 2, NULL, NULL, NULL, 0, at("ex.pem"), at("ex.key"));
    static const char *const want[] = {"www.example.org"};
    struct capture c;
    assert_int_equal(check(&c, at("ex.pem"), at("ex.key"), NULL, want, 1, 30, 0), WSG_CERTS_BAD);
    /* the self-signed generator (tls/) lists names back to front */
    assert_non_null(strstr(c.err, "ex.pem: name www.example.org is not covered (covers "));
    assert_non_null(strstr(c.err, "example.com"));
    assert_non_null(strstr(c.err, "*.example.com"));
    cap_free(&c);
    /* a wildcard covers one label, not the bare domain's neighbours or two labels */
    static const char *const deep[] = {"a.b.example.com"};
    assert_int_equal(check_rc(at("ex.pem"), at("ex.key"), NULL, deep, 1, 30), WSG_CERTS_BAD);
    /* a DNS name never covers an address */
    static const char *const ip[] = {"127.0.0.1"};
    assert_int_equal(check_rc(at("ex.pem"), at("ex.key"), NULL, ip, 1, 30), WSG_CERTS_BAD);
}

static void test_expiring_soon(void **state)
{
    (void)state;
    static const char *const names[] = {"soon.test"};
    gen_or_fail(names, 1, NULL, NULL, NULL, 5, at("soon.pem"), at("soon.key"));
    struct capture c;
    assert_int_equal(check(&c, at("soon.pem"), at("soon.key"), NULL, NULL, 0, 30, 0), WSG_CERTS_EXPIRING);
    assert_non_null(strstr(c.err, "soon.pem: certificate expires on "));
    assert_non_null(strstr(c.out, "soon.pem: expiring: "));
    cap_free(&c);
    assert_int_equal(check_rc(at("soon.pem"), at("soon.key"), NULL, NULL, 0, 3), WSG_CERTS_OK);
    assert_int_equal(check_rc(at("soon.pem"), at("soon.key"), NULL, NULL, 0, 0), WSG_CERTS_OK);
}

static void test_expired_and_not_yet_valid(void **state)
{
    (void)state;
    static const char *const names[] = {"old.test"};
    gen_or_fail(names, 1, NULL, NULL, NULL, 5, at("old.pem"), at("old.key"));
    struct wsg_certs_check_opts o = {
        .cert = at("old.pem"), .key = at("old.key"), .warn_days = 30, .now = time(NULL) + 10 * 86400};
    struct capture c;
    cap_open(&c);
    assert_int_equal(wsg_certs_check(&o, c.fout, c.ferr), WSG_CERTS_BAD);
    cap_close(&c);
    assert_non_null(strstr(c.err, "old.pem: certificate expired on "));
    cap_free(&c);
    o.now = time(NULL) - 10 * 86400;
    cap_open(&c);
    assert_int_equal(wsg_certs_check(&o, c.fout, c.ferr), WSG_CERTS_BAD);
    cap_close(&c);
    assert_non_null(strstr(c.err, "old.pem: certificate not valid before "));
    cap_free(&c);
}

static void test_unreadable_and_garbage(void **state)
{
    (void)state;
    struct capture c;
    assert_int_equal(check(&c, at("missing.pem"), at("missing.key"), NULL, NULL, 0, 30, 0), WSG_CERTS_BAD);
    assert_non_null(strstr(c.err, "missing.pem: cannot read: No such file or directory"));
    assert_non_null(strstr(c.err, "missing.key: cannot read: No such file or directory"));
    cap_free(&c);
    char err[WSG_ERRLEN];
    assert_int_equal(wsg_certs_write_atomic(at("junk.pem"), "junk\n", 5, 0644, err), 0);
    static const char *const names[] = {"j.test"};
    gen_or_fail(names, 1, NULL, NULL, NULL, 0, at("j.pem"), at("j.key"));
    assert_int_equal(check(&c, at("junk.pem"), at("j.key"), NULL, NULL, 0, 30, 0), WSG_CERTS_BAD);
    assert_non_null(strstr(c.err, "junk.pem: cannot parse certificate"));
    cap_free(&c);
}

static void test_json(void **state)
{
    (void)state;
    static const char *const names[] = {"json.test", "127.0.0.2"};
    gen_or_fail(names, 2, at("caj"), NULL, NULL, 0, at("json.pem"), at("json.key"));
    struct capture c;
    assert_int_equal(check(&c, at("json.pem"), at("json.key"), at("caj/ca.pem"), names, 2, 30, 1),
                     WSG_CERTS_OK);
    assert_int_equal(c.errlen, 0);
    assert_non_null(strstr(c.out, "{\"ok\":true,\"status\":\"ok\","));
    assert_non_null(strstr(c.out, "\"problems\":[]"));
    assert_non_null(strstr(c.out, "\"names\":[\"json.test\",\"127.0.0.2\"]"));
    /* 90 days from gen, less the moment between gen and check */
    assert_true(strstr(c.out, "\"days_left\":89,") != NULL || strstr(c.out, "\"days_left\":90,") != NULL);
    const char *fp = strstr(c.out, "\"fingerprint_sha256\":\"");
    assert_non_null(fp);
    fp += strlen("\"fingerprint_sha256\":\"");
    assert_true(strlen(fp) >= 95 + 3);
    for (int i = 0; i < 95; i++)
        assert_true(i % 3 == 2 ? fp[i] == ':' : strchr("0123456789ABCDEF", fp[i]) != NULL);
    assert_string_equal(fp + 95, "\"}\n");
    cap_free(&c);

    static const char *const wrong[] = {"nope.test"};
    assert_int_equal(check(&c, at("json.pem"), at("json.key"), NULL, wrong, 1, 30, 1), WSG_CERTS_BAD);
    assert_non_null(strstr(c.out, "{\"ok\":false,\"status\":\"bad\","));
    assert_non_null(strstr(c.out, "name nope.test is not covered (covers json.test, 127.0.0.2)\"]"));
    cap_free(&c);
}

/* ---- files ---- */

static void test_key_mode_0600(void **state)
{
    (void)state;
    static const char *const names[] = {"mode.test"};
    mode_t old = umask(0);
    gen_or_fail(names, 1, NULL, NULL, NULL, 0, at("mode.pem"), at("mode.key"));
    umask(old);
    struct stat sb;
    assert_int_equal(stat(at("mode.key"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(stat(at("mode.pem"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    /* overwriting a looser key file still ends at 0600 */
    assert_int_equal(chmod(at("mode.key"), 0666), 0);
    gen_or_fail(names, 1, NULL, NULL, NULL, 0, at("mode.pem"), at("mode.key"));
    assert_int_equal(stat(at("mode.key"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

/* Names in d starting with '.', i.e. temp files. */
static int temp_files_in(const char *d)
{
    DIR *dp = opendir(d);
    assert_non_null(dp);
    int n = 0;
    for (struct dirent *e; (e = readdir(dp)) != NULL;)
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(dp);
    return n;
}

static void test_atomic_write(void **state)
{
    (void)state;
    assert_int_equal(mkdir(at("atomic"), 0755), 0);
    static const char *const names[] = {"atomic.test"};
    gen_or_fail(names, 1, at("atomic/ca"), NULL, NULL, 0, at("atomic/a.pem"), at("atomic/a.key"));
    assert_int_equal(temp_files_in(at("atomic")), 0);
    assert_int_equal(temp_files_in(at("atomic/ca")), 0);

    /* replacing keeps one complete file: the new one */
    char err[WSG_ERRLEN];
    assert_int_equal(wsg_certs_write_atomic(at("atomic/f"), "one\n", 4, 0644, err), 0);
    assert_int_equal(wsg_certs_write_atomic(at("atomic/f"), "two!\n", 5, 0644, err), 0);
    FILE *f = fopen(at("atomic/f"), "r");
    char buf[16] = "";
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "two!\n");

    /* a failed rename (the target is a directory) leaves no temp file and the target intact */
    assert_int_equal(mkdir(at("atomic/isdir"), 0755), 0);
    assert_int_equal(wsg_certs_write_atomic(at("atomic/isdir"), "x", 1, 0644, err), -1);
    assert_non_null(strstr(err, "isdir: rename: "));
    assert_int_equal(temp_files_in(at("atomic")), 0);
    struct stat sb;
    assert_int_equal(stat(at("atomic/isdir"), &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));

    /* a missing directory is an error naming the file */
    assert_int_equal(wsg_certs_write_atomic(at("nodir/x.pem"), "x", 1, 0644, err), -1);
    assert_non_null(strstr(err, "nodir/x.pem: cannot create a temporary file"));

    /* gen into a missing directory fails before writing anything */
    struct wsg_certs_gen_opts o = {
        .names = names, .nnames = 1, .out_cert = at("atomic/g.pem"), .out_key = at("nodir/g.key")};
    assert_int_equal(wsg_certs_gen(&o, NULL, err), -1);
    assert_int_equal(access(at("atomic/g.pem"), F_OK), -1);
    assert_int_equal(temp_files_in(at("atomic")), 0);
}

/* ---- argv ---- */

static void test_usage_errors(void **state)
{
    (void)state;
    struct capture c;
    char *no_name[] = {"gen", "x.pem", "x.key", NULL};
    char *both_ca[] = {"gen", "--name", "a.test", "--ca-out", "d", "--ca", "c", "k", "x.pem", "x.key", NULL};
    char *bad_days[] = {"gen", "--name", "a.test", "--days", "0", "x.pem", "x.key", NULL};
    char *bad_name[] = {"gen", "--name", "a..test", "x.pem", "x.key", NULL};
    char *one_pos[] = {"gen", "--name", "a.test", "x.pem", NULL};
    char *ca_short[] = {"gen", "--name", "a.test", "x.pem", "x.key", "--ca", "c", NULL};
    char *unknown[] = {"gen", "--frob", NULL};
    char **gens[] = {no_name, both_ca, bad_days, bad_name, one_pos, ca_short, unknown};
    for (size_t i = 0; i < sizeof(gens) / sizeof(gens[0]); i++) {
        assert_int_equal(run_main(wsg_certs_gen_main, gens[i], &c), WSG_CERTS_USAGE);
        assert_non_null(strstr(c.err, "wsgate-certs gen: "));
        assert_non_null(strstr(c.err, "usage: wsgate-certs gen "));
        cap_free(&c);
    }
    char *c_one[] = {"check", "x.pem", NULL};
    char *c_three[] = {"check", "a", "b", "c", NULL};
    char *c_warn[] = {"check", "a", "b", "--warn-days", "soon", NULL};
    char *c_ca[] = {"check", "a", "b", "--ca", NULL};
    char **checks[] = {c_one, c_three, c_warn, c_ca};
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        assert_int_equal(run_main(wsg_certs_check_main, checks[i], &c), WSG_CERTS_USAGE);
        assert_non_null(strstr(c.err, "usage: wsgate-certs check "));
        cap_free(&c);
    }
    char *help[] = {"gen", "--help", NULL};
    assert_int_equal(run_main(wsg_certs_gen_main, help, &c), WSG_CERTS_OK);
    assert_non_null(strstr(c.out, "usage: wsgate-certs gen "));
    cap_free(&c);
}

static void test_argv_round_trip(void **state)
{
    (void)state;
    struct capture c;
    char cert[256], key[256], ca[256], cadir[256];
    snprintf(cert, sizeof(cert), "%s", at("argv.pem"));
    snprintf(key, sizeof(key), "%s", at("argv.key"));
    snprintf(cadir, sizeof(cadir), "%s", at("argv-ca"));
    snprintf(ca, sizeof(ca), "%s", at("argv-ca/ca.pem"));
    char *gen[] = {"gen", "--name", "argv.test", "--name=*.argv.test", "--days", "20", "--ca-out", cadir,
                   cert,  key,      NULL};
    assert_int_equal(run_main(wsg_certs_gen_main, gen, &c), WSG_CERTS_OK);
    assert_non_null(strstr(c.out, "wrote "));
    cap_free(&c);
    char *chk[] = {"check", cert, key, "--ca", ca, "--name", "www.argv.test", "--warn-days=10", NULL};
    assert_int_equal(run_main(wsg_certs_check_main, chk, &c), WSG_CERTS_OK);
    assert_non_null(strstr(c.out, ": ok: names argv.test, *.argv.test; expires "));
    cap_free(&c);
    char *chk2[] = {"check", cert, key, "--ca", ca, "--warn-days", "25", "--json", NULL};
    assert_int_equal(run_main(wsg_certs_check_main, chk2, &c), WSG_CERTS_EXPIRING);
    assert_non_null(strstr(c.out, "\"status\":\"expiring\""));
    cap_free(&c);
}

/* ---- admin client, JSON, rotate and status without a gateway ---- */

static void test_http_parse(void **state)
{
    (void)state;
    struct wsg_certs_http r;
    const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 12\r\n\r\n"
                      "{\"ok\":true}\nextra";
    assert_int_equal(wsg_certs_http_parse(ok, sizeof(ok) - 1, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 12);
    assert_string_equal(r.body, "{\"ok\":true}\n");
    wsg_certs_http_free(&r);
    const char eof[] = "HTTP/1.0 409 Conflict\r\nConnection: close\r\n\r\nuntil the end";
    assert_int_equal(wsg_certs_http_parse(eof, sizeof(eof) - 1, &r), 0);
    assert_int_equal(r.status, 409);
    assert_string_equal(r.body, "until the end");
    wsg_certs_http_free(&r);
    const char truncated[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";
    assert_int_equal(wsg_certs_http_parse(truncated, sizeof(truncated) - 1, &r), -1);
    const char no_end[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n";
    assert_int_equal(wsg_certs_http_parse(no_end, sizeof(no_end) - 1, &r), -1);
    const char not_http[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";
    assert_int_equal(wsg_certs_http_parse(not_http, sizeof(not_http) - 1, &r), -1);
}

static void test_json_reader(void **state)
{
    (void)state;
    const char text[] = " {\"generation\":3,\"ok\":false,\"none\":null,\"list\":[1,-2.5e1,\"x\"],"
                        "\"s\":\"a\\\"b\\\\c\\n\\u00e9\\ud834\\udd1e\",\"o\":{\"k\":[]}} ";
    struct wsg_certs_json *j = wsg_certs_json_parse(text, sizeof(text) - 1);
    assert_non_null(j);
    assert_true(wsg_certs_json_num(wsg_certs_json_get(j, "generation"), 0) == 3);
    assert_int_equal(wsg_certs_json_get(j, "ok")->type, WSG_JSON_BOOL);
    assert_int_equal(wsg_certs_json_get(j, "none")->type, WSG_JSON_NULL);
    const struct wsg_certs_json *l = wsg_certs_json_get(j, "list");
    assert_int_equal(l->n, 3);
    assert_true(wsg_certs_json_num(l->kid[1], 0) == -25);
    assert_string_equal(wsg_certs_json_str(l->kid[2]), "x");
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(j, "s")), "a\"b\\c\n\xc3\xa9\xf0\x9d\x84\x9e");
    assert_int_equal(wsg_certs_json_get(wsg_certs_json_get(j, "o"), "k")->n, 0);
    assert_null(wsg_certs_json_get(j, "missing"));
    assert_null(wsg_certs_json_str(wsg_certs_json_get(j, "generation")));
    wsg_certs_json_free(j);
    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "\"open", "tru", "{} x", "[\"\\q\"]", "01x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(wsg_certs_json_parse(bad[i], strlen(bad[i])));
    char deep[200];
    memset(deep, '[', sizeof(deep));
    assert_null(wsg_certs_json_parse(deep, sizeof(deep)));
}

static void test_rotate_status_usage(void **state)
{
    (void)state;
    struct capture c;
    char *no_gw[] = {"rotate", "--connect",  "h:1", "--name", "a", "--dest-cert",
                     "d.c",    "--dest-key", "d.k", "c",      "k", NULL};
    char *no_conn[] = {"rotate", "--gateway",  "h:1", "--name", "a", "--dest-cert",
                       "d.c",    "--dest-key", "d.k", "c",      "k", NULL};
    char *no_name[] = {"rotate", "--gateway",  "h:1", "--connect", "h:2", "--dest-cert",
                       "d.c",    "--dest-key", "d.k", "c",         "k",   NULL};
    char *no_dest[] = {"rotate", "--gateway", "h:1", "--connect", "h:2", "--name", "a", "c", "k", NULL};
    char *same[] = {"rotate",      "--gateway", "h:1",        "--connect", "h:2", "--name", "a",
                    "--dest-cert", "d",         "--dest-key", "d",         "c",   "k",      NULL};
    char *one_pos[] = {"rotate",      "--gateway", "h:1",        "--connect", "h:2", "--name", "a",
                       "--dest-cert", "d.c",       "--dest-key", "d.k",       "c",   NULL};
    char *unix_conn[] = {"rotate",      "--gateway", "h:1",        "--connect", "unix:/x", "--name", "a",
                         "--dest-cert", "d.c",       "--dest-key", "d.k",       "c",       "k",      NULL};
    char *bad_timeout[] = {"rotate", "--timeout", "0", NULL};
    char *unknown[] = {"rotate", "--frob", NULL};
    char **rotates[] = {no_gw, no_conn, no_name, no_dest, same, one_pos, unix_conn, bad_timeout, unknown};
    for (size_t i = 0; i < sizeof(rotates) / sizeof(rotates[0]); i++) {
        assert_int_equal(run_main(wsg_certs_rotate_main, rotates[i], &c), WSG_CERTS_USAGE);
        assert_non_null(strstr(c.err, "usage: wsgate-certs rotate "));
        cap_free(&c);
    }
    char *s_none[] = {"status", NULL};
    char *s_extra[] = {"status", "--gateway", "h:1", "x", NULL};
    char **statuses[] = {s_none, s_extra};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        assert_int_equal(run_main(wsg_certs_status_main, statuses[i], &c), WSG_CERTS_USAGE);
        assert_non_null(strstr(c.err, "usage: wsgate-certs status "));
        cap_free(&c);
    }
    char *help[] = {"rotate", "--help", NULL};
    assert_int_equal(run_main(wsg_certs_rotate_main, help, &c), WSG_CERTS_OK);
    assert_non_null(strstr(c.out, "--dest-cert PATH"));
    cap_free(&c);
}

static int file_equals(const char *a, const char *b)
{
    struct blob x, y;
    char err[WSG_ERRLEN];
    assert_int_equal(read_blob(a, &x, err), 0);
    assert_int_equal(read_blob(b, &y, err), 0);
    int eq = x.present && y.present && x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
    blob_free(&x);
    blob_free(&y);
    return eq;
}

/* Refusals happen before anything is written; an unreachable gateway rolls the files back. */
static void test_rotate_offline(void **state)
{
    (void)state;
    static const char *const names[] = {"rot.test"};
    char cur_crt[256], cur_key[256], sock[256];
    gen_or_fail(names, 1, NULL, NULL, NULL, 30, at("old.crt"), at("old.key"));
    gen_or_fail(names, 1, NULL, NULL, NULL, 30, at("new.crt"), at("new.key"));
    snprintf(cur_crt, sizeof(cur_crt), "%s", at("cur.crt"));
    snprintf(cur_key, sizeof(cur_key), "%s", at("cur.key"));
    snprintf(sock, sizeof(sock), "unix:%s", at("nobody.sock"));
    struct blob b;
    char err[WSG_ERRLEN];
    assert_int_equal(read_blob(at("old.crt"), &b, err), 0);
    assert_int_equal(wsg_certs_write_atomic(cur_crt, b.data, b.len, 0644, err), 0);
    blob_free(&b);
    assert_int_equal(read_blob(at("old.key"), &b, err), 0);
    assert_int_equal(wsg_certs_write_atomic(cur_key, b.data, b.len, 0600, err), 0);
    blob_free(&b);

    struct wsg_certs_rotate_opts o = {.admin = sock,
                                      .connect = "127.0.0.1:1",
                                      .names = names,
                                      .nnames = 1,
                                      .cert = at("new.crt"),
                                      .key = at("old.key"),
                                      .dest_cert = cur_crt,
                                      .dest_key = cur_key,
                                      .warn_days = 7,
                                      .timeout_ms = 2000};
    struct capture c;
    cap_open(&c);
    assert_int_equal(wsg_certs_rotate(&o, c.fout, c.ferr), WSG_CERTS_BAD);
    cap_close(&c);
    assert_non_null(strstr(c.err, "refused: "));
    assert_non_null(strstr(c.err, "old.key: private key does not match "));
    cap_free(&c);
    assert_true(file_equals(cur_crt, at("old.crt")));
    assert_int_equal(access(at("cur.crt.prev"), F_OK), -1); /* nothing written at all */

    o.key = at("new.key");
    cap_open(&c);
    assert_int_equal(wsg_certs_rotate(&o, c.fout, c.ferr), WSG_CERTS_BAD);
    cap_close(&c);
    assert_non_null(strstr(c.err, "reload: unix:"));
    assert_non_null(strstr(c.err, "cannot connect"));
    assert_non_null(strstr(c.err, "rolled back: the previous pair is installed again"));
    cap_free(&c);
    assert_true(file_equals(cur_crt, at("old.crt")));
    assert_true(file_equals(cur_key, at("old.key")));
    assert_true(file_equals(at("cur.crt.prev"), at("old.crt")));
    assert_true(file_equals(at("cur.key.prev"), at("old.key")));
    struct stat sb;
    assert_int_equal(stat(cur_key, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(stat(at("cur.key.prev"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

/* A one-shot admin endpoint on a unix socket: reads the request, answers `answer`, closes. */
struct canned {
    int fd;
    const char *answer;
    char request[1024];
};

static void *canned_serve(void *arg)
{
    struct canned *k = arg;
    int c = accept(k->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    ssize_t n = recv(c, k->request, sizeof(k->request) - 1, 0);
    k->request[n > 0 ? n : 0] = '\0';
    (void)!write(c, k->answer, strlen(k->answer));
    close(c);
    return NULL;
}

static int canned_status(const char *answer, int json, unsigned warn_days, struct capture *c, char *request)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", at("canned.sock"));
    unlink(un.sun_path);
    struct canned k = {.answer = answer};
    k.fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(k.fd >= 0);
    assert_int_equal(bind(k.fd, (struct sockaddr *)&un, sizeof(un)), 0);
    assert_int_equal(listen(k.fd, 1), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, canned_serve, &k), 0);
    char admin[200];
    snprintf(admin, sizeof(admin), "unix:%s", un.sun_path);
    cap_open(c);
    int rc = wsg_certs_status(admin, json, warn_days, 2000, c->fout, c->ferr);
    cap_close(c);
    pthread_join(th, NULL);
    close(k.fd);
    snprintf(request, 1024, "%s", k.request);
    return rc;
}

static void test_status_table(void **state)
{
    (void)state;
    static const char body[] =
        "{\"generation\":4,\"live_generations\":2,\"connections\":7,\"generations\":["
        "{\"generation\":4,\"current\":true,\"connections\":2},{\"generation\":2,\"current\":false,"
        "\"connections\":5}],\"generations_not_listed\":0,\"certificates\":[{\"cert\":\"/etc/w/site.crt\","
        "\"default\":true,\"names\":[\"a.test\",\"127.0.0.1\"],\"subject\":\"CN=a.test\","
        "\"fingerprint_sha256\":\"AB:CD\",\"not_before\":\"2025-01-01T00:00:00Z\","
        "\"not_after\":\"2025-04-01T00:00:00Z\",\"seconds_left\":864000}]}\n";
    char answer[2048], request[1024];
    snprintf(answer, sizeof(answer),
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    struct capture c;
    assert_int_equal(canned_status(answer, 0, 5, &c, request), WSG_CERTS_OK);
    assert_non_null(strstr(request, "GET /certs HTTP/1.1\r\n"));
    assert_non_null(strstr(c.out, "a.test "));
    assert_non_null(strstr(c.out, "127.0.0.1 "));
    assert_non_null(strstr(c.out, " 10 "));
    assert_non_null(strstr(c.out, "2025-04-01T00:00:00Z AB:CD "));
    assert_non_null(strstr(c.out, "/etc/w/site.crt (default)"));
    assert_non_null(strstr(c.out, "generation 4, 2 live generations, 7 connections"));
    assert_non_null(strstr(c.out, "\n2            no       5\n"));
    cap_free(&c);
    /* within the warning window: 2; --json passes the body through */
    assert_int_equal(canned_status(answer, 1, 30, &c, request), WSG_CERTS_EXPIRING);
    assert_string_equal(c.out, body);
    assert_non_null(strstr(c.err, "/etc/w/site.crt expires within 30 days (10 left)"));
    cap_free(&c);
    /* not the admin endpoint */
    assert_int_equal(
        canned_status("HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n", 0, 0, &c, request),
        WSG_CERTS_BAD);
    assert_non_null(strstr(c.err, "answered HTTP 404"));
    cap_free(&c);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/wsgate-certs-test-XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selfsigned_round_trip),
        cmocka_unit_test(test_ca_out_round_trip),
        cmocka_unit_test(test_existing_ca_round_trip),
        cmocka_unit_test(test_mismatched_key),
        cmocka_unit_test(test_wrong_name),
        cmocka_unit_test(test_expiring_soon),
        cmocka_unit_test(test_expired_and_not_yet_valid),
        cmocka_unit_test(test_unreadable_and_garbage),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_key_mode_0600),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_argv_round_trip),
        cmocka_unit_test(test_http_parse),
        cmocka_unit_test(test_json_reader),
        cmocka_unit_test(test_rotate_status_usage),
        cmocka_unit_test(test_rotate_offline),
        cmocka_unit_test(test_status_table),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
