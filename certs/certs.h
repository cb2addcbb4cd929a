/*
 * certs.h - the wsgate-certs tool: one function per subcommand taking argv (for main.c) and one
 * taking parsed options (for tests and for later subcommands such as rotate, which checks first).
 *
 * Exit codes follow the README's contract for scripts: 0 good, 1 bad, 2 good but expiring within
 * the warning window (check), 64 bad usage (sysexits EX_USAGE).
 */
#ifndef WSG_CERTS_H
#define WSG_CERTS_H

#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "gateway/err.h"

enum { WSG_CERTS_OK = 0, WSG_CERTS_BAD = 1, WSG_CERTS_EXPIRING = 2, WSG_CERTS_USAGE = 64 };

#define WSG_CERTS_MAX_NAMES 100
#define WSG_CERTS_DEFAULT_DAYS 90u
#define WSG_CERTS_DEFAULT_WARN_DAYS 30u
#define WSG_CERTS_CA_DAYS 3650u /* a development CA made by gen --ca-out */

/* ---- common.c ---- */

/**
 * Writes len bytes to path atomically: a temp file in the same directory, fchmod(mode), fsync,
 * rename over path, fsync of the directory. Readers see the old file or the new one, never a part.
 * @return 0, or -1 with err naming the file; the temp file is removed on every failure.
 */
int wsg_certs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char err[WSG_ERRLEN]);

/* Argument helpers shared by the subcommands. opt_is: arg is "--opt" or "--opt=...". */
int wsg_certs_opt_is(const char *arg, const char *opt);
/* The value of the option at argv[*i] ("--opt=v" or "--opt v", advancing *i), NULL if missing. */
const char *wsg_certs_opt_value(int argc, char **argv, int *i);
/* Parses a decimal in [min, max]. @return 0 or -1. */
int wsg_certs_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);
/* Prints "wsgate-certs CMD: <message>" and the synopsis to err. @return WSG_CERTS_USAGE. */
__attribute__((format(printf, 4, 5))) int wsg_certs_usage_error(FILE *err, const char *cmd,
                                                                const char *synopsis, const char *fmt, ...);
/* "2025-01-31" (UTC) into out[11]. */
void wsg_certs_date(time_t t, char out[11]);

/* ---- gen.c ---- */

struct wsg_certs_gen_opts {
    const char *const *names; /* DNS names, "*.example.com", IPv4 or IPv6 addresses; names[0] is the CN */
    size_t nnames;
    unsigned days;          /* leaf validity; 0: WSG_CERTS_DEFAULT_DAYS */
    const char *ca_out_dir; /* create a development CA here (ca.pem, ca.key) and sign with it */
    const char *ca_cert;    /* or sign with this existing CA (PEM certificate, first one used) */
    const char *ca_key;     /*    and its key */
    const char *out_cert;   /* the leaf certificate (PEM) */
    const char *out_key;    /* its key (PEM, mode 0600) */
};

/**
 * Generates an ECDSA P-256 key and certificate as described by o and writes the files atomically
 * (CA files first, then the key, then the certificate). Prints what it wrote to out (may be NULL).
 * @return 0, or -1 with err.
 */
int wsg_certs_gen(const struct wsg_certs_gen_opts *o, FILE *out, char err[WSG_ERRLEN]);
/* The gen subcommand: argv[0] is "gen". @return an exit code. */
int wsg_certs_gen_main(int argc, char **argv, FILE *out, FILE *err);
/* Whether name is something gen can put in a subjectAltName (sets *why when not). */
int wsg_certs_name_ok(const char *name, const char **why);

/* ---- check.c ---- */

struct wsg_certs_check_opts {
    const char *cert;
    const char *key;
    const char *ca;           /* CA bundle the chain must verify against, or NULL */
    const char *const *names; /* names that must be covered */
    size_t nnames;
    unsigned warn_days; /* exit 2 when fewer than this many days are left */
    int json;           /* one JSON object on out instead of text */
    time_t now;         /* 0: the current time (tests move the clock) */
};

/**
 * Checks a pair (see wsg_tls_check_pair) and reports: text (summary on out, one problem or
 * warning per line on err) or one JSON object on out.
 * @return WSG_CERTS_OK, WSG_CERTS_BAD or WSG_CERTS_EXPIRING.
 */
int wsg_certs_check(const struct wsg_certs_check_opts *o, FILE *out, FILE *err);
/* The check subcommand: argv[0] is "check". @return an exit code. */
int wsg_certs_check_main(int argc, char **argv, FILE *out, FILE *err);

#endif
