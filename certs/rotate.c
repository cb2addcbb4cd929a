/*
 * rotate.c - `wsgate-certs rotate` and `wsgate-certs status`, the two subcommands that talk to a
 * running gateway through its admin endpoint (admin_client.c).
 *
 * rotate, in order, stopping at the first failure:
 *   1. check the new pair exactly as `check` does (tls/check.c, the gateway's own rules): key
 *      matches, not expired, every --name covered (and the chain against --ca if given);
 *   2. read the pair being served (--dest-cert, --dest-key) and keep it as DEST.prev;
 *   3. install the new files over the destination atomically (temp file, fsync, rename; key 0600),
 *      key first;
 *   4. POST /reload; a refusal puts the previous files back and reloads again;
 *   5. for each --name, a real TLS handshake to the public listener (--connect) with that SNI must
 *      be served the new leaf (same SHA-256 fingerprint); otherwise roll back the same way.
 * The gateway swaps certificates inside the running process: established connections keep the
 * generation they started on, so nothing on the wire breaks whichever way this ends.
 */
#include "certs/certs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tls/tls.h"

#define ROTATE_SYNOPSIS                                                                                      \
    "usage: wsgate-certs rotate --gateway ADMIN --connect HOST:PORT --name NAME [--name NAME]...\n"          \
    "                           --dest-cert PATH --dest-key PATH [--ca BUNDLE] [--warn-days N]\n"            \
    "                           [--timeout SECONDS] CERT KEY\n"

static const char rotate_usage[] = ROTATE_SYNOPSIS
    "  Installs the pair CERT KEY into a running wsgate and proves it is served, or puts the\n"
    "  previous pair back.\n"
    "  --gateway ADMIN     the gateway's admin endpoint: 127.0.0.1:PORT or unix:/PATH\n"
    "  --connect HOST:PORT the gateway's public TLS listener, for the verifying handshakes\n"
    "  --name NAME         a name the new certificate must cover and be served for (via SNI);\n"
    "                      repeat for more\n"
    "  --dest-cert PATH    the certificate file the gateway's configuration names (cert ...)\n"
    "  --dest-key PATH     the key file it names (key ...); the current pair is kept as PATH.prev\n"
    "  --ca BUNDLE         the new chain must also verify against this CA bundle\n"
    "  --warn-days N       exit 2 when the new certificate expires within N days (default 30)\n"
    "  --timeout SECONDS   per admin request and per handshake (default 10)\n"
    "  Exit: 0 rotated, 1 refused or rolled back (the reason on stderr), 2 rotated but expiring\n"
    "  within --warn-days, 64 bad usage.\n";

#define STATUS_SYNOPSIS                                                                                      \
    "usage: wsgate-certs status --gateway ADMIN [--json] [--warn-days N] [--timeout SECONDS]\n"

static const char status_usage[] = STATUS_SYNOPSIS
    "  Prints what the running gateway serves: every name with the SHA-256 fingerprint, not-after\n"
    "  and days left of its certificate, the current generation, and the live connections of\n"
    "  every certificate generation still in use.\n"
    "  --gateway ADMIN     the admin endpoint: 127.0.0.1:PORT or unix:/PATH\n"
    "  --json              print the gateway's JSON (GET /certs) as is\n"
    "  --warn-days N       exit 2 when a served certificate expires within N days (default 30)\n"
    "  Exit: 0 good, 1 gateway unreachable or a bad answer, 2 expiring, 64 bad usage.\n";

/* ---- files ---- */

struct blob {
    char *data;
    size_t len;
    mode_t mode;
    int present;
};

static int read_blob(const char *path, struct blob *b, char err[WSG_ERRLEN])
{
    memset(b, 0, sizeof(*b));
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT)
            return 0; /* not there: present stays 0 */
        snprintf(err, WSG_ERRLEN, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    size_t cap = 16384;
    b->data = malloc(cap);
    b->mode = fstat(fileno(f), &sb) == 0 ? (sb.st_mode & 07777) : 0644;
    while (b->data != NULL) {
        size_t n = fread(b->data + b->len, 1, cap - b->len, f);
        b->len += n;
        if (b->len < cap)
            break;
        char *more = cap < (16u << 20) ? realloc(b->data, cap *= 2) : NULL;
        if (more == NULL) {
            free(b->data);
            b->data = NULL;
        } else {
            b->data = more;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (b->data == NULL || bad) {
        snprintf(err, WSG_ERRLEN, "%s: cannot read: %s", path, b->data == NULL ? "too large" : strerror(EIO));
        free(b->data);
        b->data = NULL;
        return -1;
    }
    b->present = 1;
    return 0;
}

static void blob_free(struct blob *b)
{
    free(b->data);
    b->data = NULL;
}

/* ---- talking to the gateway ---- */

/* POST /reload. @return 0 when the gateway answered 200, else -1 with its reason in err. */
static int reload(const struct wsg_certs_rotate_opts *o, char err[WSG_ERRLEN])
{
    struct wsg_certs_http res;
    char why[WSG_ERRLEN];
    if (wsg_certs_admin_request(o->admin, "POST", "/reload", o->timeout_ms, &res, why) != 0) {
        snprintf(err, WSG_ERRLEN, "reload: %.230s", why);
        return -1;
    }
    int rc = 0;
    if (res.status != 200) {
        struct wsg_certs_json *j = wsg_certs_json_parse(res.body, res.len);
        const char *e = wsg_certs_json_str(wsg_certs_json_get(j, "error"));
        if (e != NULL)
            snprintf(err, WSG_ERRLEN, "reload refused by the gateway (HTTP %d): %s", res.status, e);
        else
            snprintf(err, WSG_ERRLEN, "the gateway refused the reload (HTTP %d): %.200s", res.status,
                     res.body);
        wsg_certs_json_free(j);
        rc = -1;
    }
    wsg_certs_http_free(&res);
    return rc;
}

static int install(const char *path, const struct blob *b, mode_t mode, char err[WSG_ERRLEN])
{
    return wsg_certs_write_atomic(path, b->data, b->len, mode, err);
}

/* Puts the previous pair back (or removes what we installed if there was none) and reloads.
 * switched: the gateway accepted the reload of the new pair (so it must reload again to go back);
 * otherwise it never stopped serving the previous pair and a refused reload here changes nothing. */
static void roll_back(const struct wsg_certs_rotate_opts *o, const struct blob *pc, const struct blob *pk,
                      int switched, FILE *err)
{
    char why[WSG_ERRLEN];
    if (pk->present && pc->present) {
        if (install(o->dest_key, pk, 0600, why) != 0 || install(o->dest_cert, pc, pc->mode, why) != 0) {
            fprintf(err, "wsgate-certs rotate: rollback: %s\n", why);
            fprintf(err,
                    "wsgate-certs rotate: rollback incomplete: the previous pair is in %s.prev and %s.prev\n",
                    o->dest_cert, o->dest_key);
            return;
        }
    } else {
        unlink(o->dest_cert);
        unlink(o->dest_key);
    }
    if (reload(o, why) == 0)
        fprintf(err, "wsgate-certs rotate: rolled back: the previous pair is installed and served again\n");
    else if (!switched)
        fprintf(err,
                "wsgate-certs rotate: rolled back: the previous pair is installed again and the gateway kept "
                "serving it (the reload after the rollback was refused too: %s)\n",
                why);
    else
        fprintf(
            err,
            "wsgate-certs rotate: rollback incomplete: the previous pair is installed again but the gateway "
            "still serves the new one: %s\n",
            why);
}

/* A handshake per name; the first name whose leaf is not the new one fails the rotation (said on err). */
static int verify(const struct wsg_certs_rotate_opts *o, const char *want, FILE *out, FILE *err)
{
    for (size_t i = 0; i < o->nnames; i++) {
        char got[96], why[WSG_ERRLEN];
        int ret = -1;
        for (int attempt = 0; attempt < 3 && ret != 0; attempt++) {
            if (attempt != 0)
                usleep(200 * 1000);
            ret = wsg_certs_probe(o->connect, o->names[i], o->timeout_ms, got, why);
        }
        if (ret != 0) {
            fprintf(err, "wsgate-certs rotate: verification: %s\n", why);
            return -1;
        }
        if (strcmp(got, want) != 0) {
            fprintf(err,
                    "wsgate-certs rotate: verification: %s is served a certificate with sha256 %s, not the "
                    "new %s\n",
                    o->names[i], got, want);
            return -1;
        }
        fprintf(out, "verified: %s is served the new certificate\n", o->names[i]);
    }
    return 0;
}

int wsg_certs_rotate(const struct wsg_certs_rotate_opts *o, FILE *out, FILE *err)
{
    char why[WSG_ERRLEN], prev_cert[4200], prev_key[4200];
    int status = WSG_CERTS_BAD;
    struct blob nc = {0}, nk = {0}, pc = {0}, pk = {0};
    struct wsg_tls_check_report *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fprintf(err, "wsgate-certs rotate: out of memory\n");
        return WSG_CERTS_BAD;
    }
    if (snprintf(prev_cert, sizeof(prev_cert), "%s.prev", o->dest_cert) >= (int)sizeof(prev_cert) ||
        snprintf(prev_key, sizeof(prev_key), "%s.prev", o->dest_key) >= (int)sizeof(prev_key)) {
        fprintf(err, "wsgate-certs rotate: destination path too long\n");
        goto out;
    }

    /* 1. check: the same rules the gateway applies when it loads the pair, plus the names */
    struct wsg_tls_pair pair = {.cert_path = o->cert, .key_path = o->key};
    struct wsg_tls_check_opts co = {.ca_path = o->ca, .names = o->names, .nnames = o->nnames};
    if (wsg_tls_check_pair(&pair, &co, r) != 0) {
        for (size_t i = 0; i < r->nproblems; i++)
            fprintf(err, "wsgate-certs rotate: refused: %s\n", r->problems[i]);
        goto out;
    }
    if (read_blob(o->cert, &nc, why) != 0 || read_blob(o->key, &nk, why) != 0 || !nc.present || !nk.present) {
        fprintf(err, "wsgate-certs rotate: refused: %s\n",
                nc.present && nk.present ? why : "the new pair vanished");
        goto out;
    }

    /* 2. keep the served pair */
    if (read_blob(o->dest_cert, &pc, why) != 0 || read_blob(o->dest_key, &pk, why) != 0) {
        fprintf(err, "wsgate-certs rotate: refused: %s\n", why);
        goto out;
    }
    if (pc.present != pk.present) {
        fprintf(err, "wsgate-certs rotate: refused: %s exists but %s does not\n",
                pc.present ? o->dest_cert : o->dest_key, pc.present ? o->dest_key : o->dest_cert);
        goto out;
    }
    if (pc.present &&
        (install(prev_key, &pk, 0600, why) != 0 || install(prev_cert, &pc, pc.mode, why) != 0)) {
        fprintf(err, "wsgate-certs rotate: refused: keeping the previous pair: %s\n", why);
        goto out;
    }

    /* 3. install, key first: a reload between the two renames sees a mismatch and refuses it */
    if (install(o->dest_key, &nk, 0600, why) != 0 ||
        install(o->dest_cert, &nc, pc.present ? pc.mode : 0644, why) != 0) {
        fprintf(err, "wsgate-certs rotate: installing: %s\n", why);
        roll_back(o, &pc, &pk, 0, err);
        goto out;
    }
    fprintf(out, "installed: %s, %s (previous pair kept as %s, %s)\n", o->dest_cert, o->dest_key,
            pc.present ? prev_cert : "-", pc.present ? prev_key : "-");

    /* 4. reload */
    if (reload(o, why) != 0) {
        fprintf(err, "wsgate-certs rotate: %s\n", why);
        roll_back(o, &pc, &pk, 0, err);
        goto out;
    }
    fprintf(out, "reloaded: %s\n", o->admin);

    /* 5. verify on the wire */
    if (verify(o, r->sha256, out, err) != 0) {
        roll_back(o, &pc, &pk, 1, err);
        goto out;
    }
    char date[11];
    time_t now = time(NULL);
    long long left = ((long long)r->not_after - (long long)now) / 86400;
    wsg_certs_date(r->not_after, date);
    fprintf(out, "rotated: sha256 %s, expires %s (%lld days left)\n", r->sha256, date, left);
    status = WSG_CERTS_OK;
    if ((long long)r->not_after - (long long)now < (long long)o->warn_days * 86400) {
        fprintf(
            err,
            "wsgate-certs rotate: %s: certificate expires on %s, in %lld day%s (warning window %u days)\n",
            o->cert, date, left, left == 1 ? "" : "s", o->warn_days);
        status = WSG_CERTS_EXPIRING;
    }
out:
    blob_free(&nc);
    if (nk.data != NULL)
        memset(nk.data, 0, nk.len);
    blob_free(&nk);
    blob_free(&pc);
    if (pk.data != NULL)
        memset(pk.data, 0, pk.len);
    blob_free(&pk);
    wsg_tls_check_report_free(r);
    free(r);
    return status;
}

/* ---- argv ---- */

static int parse_timeout(const char *v, int *ms)
{
    unsigned s;
    if (wsg_certs_parse_uint(v, 1, 3600, &s) != 0)
        return -1;
    *ms = (int)s * 1000;
    return 0;
}

int wsg_certs_rotate_main(int argc, char **argv, FILE *out, FILE *err)
{
    const char *names[WSG_CERTS_MAX_NAMES];
    const char *pos[2];
    size_t npos = 0;
    struct wsg_certs_rotate_opts o = {
        .names = names, .warn_days = WSG_CERTS_DEFAULT_WARN_DAYS, .timeout_ms = 10000};
    int only_positional = 0;
#define USAGE(...) wsg_certs_usage_error(err, "rotate", ROTATE_SYNOPSIS, __VA_ARGS__)
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (npos == 2)
                return USAGE("unexpected argument \"%s\"", a);
            pos[npos++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_positional = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(rotate_usage, out);
            return WSG_CERTS_OK;
        } else if (wsg_certs_opt_is(a, "--name")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return USAGE("--name needs a value");
            if (o.nnames == WSG_CERTS_MAX_NAMES)
                return USAGE("at most %d names", WSG_CERTS_MAX_NAMES);
            names[o.nnames++] = v;
        } else if (wsg_certs_opt_is(a, "--gateway")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return USAGE("--gateway needs the admin endpoint (HOST:PORT or unix:/PATH)");
            o.admin = v;
        } else if (wsg_certs_opt_is(a, "--connect")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0' ||
                strncmp(v, "unix:", 5) == 0)
                return USAGE("--connect needs the public listener as HOST:PORT");
            o.connect = v;
        } else if (wsg_certs_opt_is(a, "--dest-cert")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return USAGE("--dest-cert needs a path");
            o.dest_cert = v;
        } else if (wsg_certs_opt_is(a, "--dest-key")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return USAGE("--dest-key needs a path");
            o.dest_key = v;
        } else if (wsg_certs_opt_is(a, "--ca")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return USAGE("--ca needs a CA bundle file");
            o.ca = v;
        } else if (wsg_certs_opt_is(a, "--warn-days")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL ||
                wsg_certs_parse_uint(v, 0, 36500, &o.warn_days) != 0)
                return USAGE("--warn-days needs a number of days from 0 to 36500");
        } else if (wsg_certs_opt_is(a, "--timeout")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || parse_timeout(v, &o.timeout_ms) != 0)
                return USAGE("--timeout needs a number of seconds from 1 to 3600");
        } else {
            return USAGE("unknown option \"%s\"", a);
        }
    }
    if (o.admin == NULL)
        return USAGE("give --gateway ADMIN");
    if (o.connect == NULL)
        return USAGE("give --connect HOST:PORT (the public listener the new certificate is verified on)");
    if (o.nnames == 0)
        return USAGE("give at least one --name");
    if (o.dest_cert == NULL || o.dest_key == NULL)
        return USAGE(
            "give --dest-cert PATH and --dest-key PATH (the files the gateway's configuration names)");
    if (strcmp(o.dest_cert, o.dest_key) == 0)
        return USAGE("--dest-cert and --dest-key must be different files");
    if (npos != 2)
        return USAGE("give CERT and KEY");
    o.cert = pos[0];
    o.key = pos[1];
    return wsg_certs_rotate(&o, out, err);
#undef USAGE
}

/* ---- status ---- */

static void print_generations(FILE *out, const struct wsg_certs_json *j)
{
    const struct wsg_certs_json *gens = wsg_certs_json_get(j, "generations");
    fprintf(out, "generation %.0f, %.0f live generation%s, %.0f connection%s\n",
            wsg_certs_json_num(wsg_certs_json_get(j, "generation"), 0),
            wsg_certs_json_num(wsg_certs_json_get(j, "live_generations"), 0),
            wsg_certs_json_num(wsg_certs_json_get(j, "live_generations"), 0) == 1 ? "" : "s",
            wsg_certs_json_num(wsg_certs_json_get(j, "connections"), 0),
            wsg_certs_json_num(wsg_certs_json_get(j, "connections"), 0) == 1 ? "" : "s");
    if (gens == NULL || gens->type != WSG_JSON_ARRAY)
        return;
    fprintf(out, "%-12s %-8s %s\n", "GENERATION", "CURRENT", "CONNECTIONS");
    for (size_t i = 0; i < gens->n; i++) {
        const struct wsg_certs_json *g = gens->kid[i], *cur = wsg_certs_json_get(g, "current");
        fprintf(out, "%-12.0f %-8s %.0f\n", wsg_certs_json_num(wsg_certs_json_get(g, "generation"), 0),
                cur != NULL && cur->type == WSG_JSON_BOOL && cur->boolean ? "yes" : "no",
                wsg_certs_json_num(wsg_certs_json_get(g, "connections"), 0));
    }
}

int wsg_certs_status(const char *admin, int json, unsigned warn_days, int timeout_ms, FILE *out, FILE *err)
{
    struct wsg_certs_http res;
    char why[WSG_ERRLEN];
    if (wsg_certs_admin_request(admin, "GET", "/certs", timeout_ms, &res, why) != 0) {
        fprintf(err, "wsgate-certs status: %s\n", why);
        return WSG_CERTS_BAD;
    }
    int status = WSG_CERTS_BAD;
    struct wsg_certs_json *j = NULL;
    const struct wsg_certs_json *certs;
    if (res.status != 200) {
        fprintf(err, "wsgate-certs status: %s: GET /certs answered HTTP %d: %.200s\n", admin, res.status,
                res.body);
        goto out;
    }
    j = wsg_certs_json_parse(res.body, res.len);
    certs = wsg_certs_json_get(j, "certificates");
    if (certs == NULL || certs->type != WSG_JSON_ARRAY) {
        fprintf(err, "wsgate-certs status: %s: GET /certs: not the expected JSON (an older gateway?)\n",
                admin);
        goto out;
    }
    status = WSG_CERTS_OK;
    if (json)
        fwrite(res.body, 1, res.len, out);
    else
        fprintf(out, "%-32s %-9s %-20s %-95s %s\n", "NAME", "DAYS LEFT", "NOT AFTER", "SHA-256 FINGERPRINT",
                "CERT");
    for (size_t i = 0; i < certs->n; i++) {
        const struct wsg_certs_json *c = certs->kid[i], *names = wsg_certs_json_get(c, "names"),
                                    *dflt = wsg_certs_json_get(c, "default");
        double left = wsg_certs_json_num(wsg_certs_json_get(c, "seconds_left"), 0);
        long long days = (long long)left / 86400 - (left < 0 && (long long)left % 86400 != 0);
        if (left < (double)warn_days * 86400) {
            if (status == WSG_CERTS_OK)
                fprintf(err, "wsgate-certs status: %s expires within %u days (%lld left)\n",
                        wsg_certs_json_str(wsg_certs_json_get(c, "cert")) != NULL
                            ? wsg_certs_json_str(wsg_certs_json_get(c, "cert"))
                            : "the generated certificate",
                        warn_days, days);
            status = WSG_CERTS_EXPIRING;
        }
        if (json)
            continue;
        const char *na = wsg_certs_json_str(wsg_certs_json_get(c, "not_after"));
        const char *fp = wsg_certs_json_str(wsg_certs_json_get(c, "fingerprint_sha256"));
        const char *file = wsg_certs_json_str(wsg_certs_json_get(c, "cert"));
        int is_default = dflt != NULL && dflt->type == WSG_JSON_BOOL && dflt->boolean;
        size_t n = names != NULL && names->type == WSG_JSON_ARRAY ? names->n : 0;
        for (size_t k = 0; k < (n != 0 ? n : 1); k++) {
            const char *name = n != 0 ? wsg_certs_json_str(names->kid[k]) : NULL;
            fprintf(out, "%-32s %-9lld %-20s %-95s %s%s\n", name != NULL ? name : "(no names)", days,
                    na != NULL ? na : "?", fp != NULL ? fp : "?", file != NULL ? file : "(generated)",
                    is_default ? " (default)" : "");
        }
    }
    if (!json)
        print_generations(out, j);
out:
    wsg_certs_json_free(j);
    wsg_certs_http_free(&res);
    return status;
}

int wsg_certs_status_main(int argc, char **argv, FILE *out, FILE *err)
{
    const char *admin = NULL;
    int json = 0, timeout_ms = 10000;
    unsigned warn_days = WSG_CERTS_DEFAULT_WARN_DAYS;
#define USAGE(...) wsg_certs_usage_error(err, "status", STATUS_SYNOPSIS, __VA_ARGS__)
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(status_usage, out);
            return WSG_CERTS_OK;
        } else if (wsg_certs_opt_is(a, "--gateway")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return USAGE("--gateway needs the admin endpoint (HOST:PORT or unix:/PATH)");
            admin = v;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (wsg_certs_opt_is(a, "--warn-days")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL ||
                wsg_certs_parse_uint(v, 0, 36500, &warn_days) != 0)
                return USAGE("--warn-days needs a number of days from 0 to 36500");
        } else if (wsg_certs_opt_is(a, "--timeout")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || parse_timeout(v, &timeout_ms) != 0)
                return USAGE("--timeout needs a number of seconds from 1 to 3600");
        } else {
            return USAGE("unexpected argument \"%s\"", a);
        }
    }
    if (admin == NULL)
        return USAGE("give --gateway ADMIN");
    return wsg_certs_status(admin, json, warn_days, timeout_ms, out, err);
#undef USAGE
}
