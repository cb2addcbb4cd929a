/*
 * check.c - `wsgate-certs check`: is this pair safe to serve? The checking itself is tls/'s
 * (wsg_tls_check_pair: the gateway and the tool judge the same files the same way); this file
 * adds the expiry warning window, the exit code and the two output forms (text, one JSON object).
 */
#include "certs/certs.h"

#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

#define CHECK_SYNOPSIS                                                                                       \
    "usage: wsgate-certs check CERT KEY [--ca BUNDLE] [--name HOST]... [--warn-days N] [--json]\n"

static const char check_usage[] = CHECK_SYNOPSIS
    "  Checks that KEY matches CERT, that the chain in CERT verifies against BUNDLE, that every\n"
    "  HOST (DNS name or IP address) is covered, and that every certificate is within its validity.\n"
    "  --warn-days N   exit 2 when the certificate expires within N days (default 30, 0: never)\n"
    "  --json          print one JSON object: ok, status, problems, warnings, names, not_after,\n"
    "                  days_left, fingerprint_sha256\n"
    "  Exit: 0 good, 1 bad (each problem on stderr, one sentence naming the file), 2 good but\n"
    "  expiring, 64 bad usage.\n";

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void json_time(FILE *out, time_t t)
{
    struct tm tm;
    char buf[32];
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        fputs("null", out);
        return;
    }
    fprintf(out, "\"%s\"", buf);
}

/* Whole days left, rounded down (negative once expired). */
static long days_left(time_t not_after, time_t now)
{
    long long s = (long long)not_after - (long long)now;
    long long d = s / 86400;
    if (s < 0 && s % 86400 != 0)
        d--;
    return (long)d;
}

static void print_json(FILE *out, const struct wsg_certs_check_opts *o, const struct wsg_tls_check_report *r,
                       int status, const char *warning, time_t now)
{
    static const char *const words[] = {
        [WSG_CERTS_OK] = "ok", [WSG_CERTS_BAD] = "bad", [WSG_CERTS_EXPIRING] = "expiring"};
    fprintf(out, "{\"ok\":%s,\"status\":\"%s\",\"cert\":", status != WSG_CERTS_BAD ? "true" : "false",
            words[status]);
    json_string(out, o->cert);
    fputs(",\"key\":", out);
    json_string(out, o->key);
    fputs(",\"problems\":[", out);
    for (size_t i = 0; i < r->nproblems; i++) {
        if (i != 0)
            fputc(',', out);
        json_string(out, r->problems[i]);
    }
    fputs("],\"warnings\":[", out);
    if (warning != NULL)
        json_string(out, warning);
    fputs("],\"subject\":", out);
    if (r->loaded)
        json_string(out, r->subject);
    else
        fputs("null", out);
    fputs(",\"names\":[", out);
    for (size_t i = 0; i < r->nnames; i++) {
        if (i != 0)
            fputc(',', out);
        json_string(out, r->names[i]);
    }
    fputs("],\"not_before\":", out);
    if (r->loaded)
        json_time(out, r->not_before);
    else
        fputs("null", out);
    fputs(",\"not_after\":", out);
    if (r->loaded) {
        json_time(out, r->not_after);
        fprintf(out, ",\"days_left\":%ld", days_left(r->not_after, now));
    } else {
        fputs("null,\"days_left\":null", out);
    }
    fputs(",\"fingerprint_sha256\":", out);
    if (r->loaded && r->sha256[0] != '\0')
        json_string(out, r->sha256);
    else
        fputs("null", out);
    fputs("}\n", out);
}

int wsg_certs_check(const struct wsg_certs_check_opts *o, FILE *out, FILE *err)
{
    struct wsg_tls_pair pair = {.cert_path = o->cert, .key_path = o->key};
    time_t now = o->now != 0 ? o->now : time(NULL);
    struct wsg_tls_check_opts co = {.ca_path = o->ca, .names = o->names, .nnames = o->nnames, .now = now};
    struct wsg_tls_check_report *r = malloc(sizeof(*r));
    if (r == NULL) {
        fprintf(err, "wsgate-certs check: out of memory\n");
        return WSG_CERTS_BAD;
    }
    int status = wsg_tls_check_pair(&pair, &co, r) == 0 ? WSG_CERTS_OK : WSG_CERTS_BAD;
    char warning[WSG_ERRLEN], date[11];
    const char *warn = NULL;
    long left = r->loaded ? days_left(r->not_after, now) : 0;
    if (r->loaded)
        wsg_certs_date(r->not_after, date);
    if (status == WSG_CERTS_OK &&
        (long long)r->not_after - (long long)now < (long long)o->warn_days * 86400) {
        snprintf(warning, sizeof(warning),
                 "%s: certificate expires on %s, in %ld day%s (warning window %u days)", o->cert, date, left,
                 left == 1 ? "" : "s", o->warn_days);
        warn = warning;
        status = WSG_CERTS_EXPIRING;
    }
    if (o->json) {
        print_json(out, o, r, status, warn, now);
    } else {
        for (size_t i = 0; i < r->nproblems; i++)
            fprintf(err, "%s\n", r->problems[i]);
        if (warn != NULL)
            fprintf(err, "%s\n", warn);
        if (status != WSG_CERTS_BAD) {
            fprintf(out, "%s: %s: names", o->cert, status == WSG_CERTS_OK ? "ok" : "expiring");
            for (size_t i = 0; i < r->nnames; i++)
                fprintf(out, "%s %s", i != 0 ? "," : "", r->names[i]);
            fprintf(out, "; expires %s (%ld days left); sha256 %s\n", date, left, r->sha256);
        }
    }
    wsg_tls_check_report_free(r);
    free(r);
    return status;
}

int wsg_certs_check_main(int argc, char **argv, FILE *out, FILE *err)
{
    const char *names[WSG_CERTS_MAX_NAMES];
    const char *pos[2];
    size_t npos = 0;
    struct wsg_certs_check_opts o = {.names = names, .warn_days = WSG_CERTS_DEFAULT_WARN_DAYS};
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (npos == 2)
                return wsg_certs_usage_error(err, "check", CHECK_SYNOPSIS, "unexpected argument \"%s\"", a);
            pos[npos++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_positional = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(check_usage, out);
            return WSG_CERTS_OK;
        } else if (wsg_certs_opt_is(a, "--name")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return wsg_certs_usage_error(err, "check", CHECK_SYNOPSIS, "--name needs a value");
            if (o.nnames == WSG_CERTS_MAX_NAMES)
                return wsg_certs_usage_error(err, "check", CHECK_SYNOPSIS, "at most %d names",
                                             WSG_CERTS_MAX_NAMES);
            names[o.nnames++] = v;
        } else if (wsg_certs_opt_is(a, "--ca")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return wsg_certs_usage_error(err, "check", CHECK_SYNOPSIS, "--ca needs a CA bundle file");
            o.ca = v;
        } else if (wsg_certs_opt_is(a, "--warn-days")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL ||
                wsg_certs_parse_uint(v, 0, 36500, &o.warn_days) != 0)
                return wsg_certs_usage_error(err, "check", CHECK_SYNOPSIS,
                                             "--warn-days needs a number of days from 0 to 36500");
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else {
            return wsg_certs_usage_error(err, "check", CHECK_SYNOPSIS, "unknown option \"%s\"", a);
        }
    }
    if (npos != 2)
        return wsg_certs_usage_error(err, "check", CHECK_SYNOPSIS, "give CERT and KEY");
    o.cert = pos[0];
    o.key = pos[1];
    return wsg_certs_check(&o, out, err);
}
