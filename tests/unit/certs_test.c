/*
 * certs_test.c - wsgate-certs gen and check, called as functions (the subcommands' .c files are
 * included, main.c is not): gen then check round trips, each failure check must report, exit
 * codes, key file mode, atomic writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certs/common.c"
#include "certs/gen.c"
#include "certs/check.c"

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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
