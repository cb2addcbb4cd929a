/*
 * certs.h - the wsgate-certs tool: one function per subcommand taking argv (for main.c) and one
 * taking parsed options (for tests and for later subcommands such as rotate, which checks first).
 *
 * Exit codes follow the README's contract for scripts: 0 good, 1 bad, 2 good but expiring within
 * the warning window (check), 64 bad usage (sysexits EX_USAGE). rotate: 0 rotated, 1 refused or
 * rolled back, 2 rotated but expiring within --warn-days, 64 bad usage.
 */
#ifndef WSG_CERTS_H
#define WSG_CERTS_H

#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "policies/base/err.h"

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

/* ---- admin_client.c: a tiny HTTP/1.1 client for the gateway's admin endpoint ---- */

/**
 * Connects a stream socket to addr: "HOST:PORT", "[V6]:PORT" or, when allow_unix, "unix:/path".
 * Send and receive time out after timeout_ms (also the connect timeout).
 * @return the socket, or -1 with err naming addr.
 */
int wsg_certs_connect(const char *addr, int allow_unix, int timeout_ms, char err[WSG_ERRLEN]);

struct wsg_certs_http {
    int status; /* 200, 409, ... */
    char *body; /* NUL-terminated; free with wsg_certs_http_free */
    size_t len;
};

/**
 * Parses one complete HTTP/1.1 response (status line, headers, body by Content-Length or up to
 * the end of the buffer). @return 0, or -1 when buf is not a complete response.
 */
int wsg_certs_http_parse(const char *buf, size_t len, struct wsg_certs_http *res);
/**
 * Sends "METHOD PATH" to the admin endpoint admin (HOST:PORT or unix:/path) with
 * Connection: close and reads the whole answer. @return 0 (any status) or -1 with err.
 */
int wsg_certs_admin_request(const char *admin, const char *method, const char *path, int timeout_ms,
                            struct wsg_certs_http *res, char err[WSG_ERRLEN]);
/* The same with a request body of blen bytes (Content-Length; body may be NULL when blen is 0). */
int wsg_certs_admin_send(const char *admin, const char *method, const char *path, const void *body,
                         size_t blen, int timeout_ms, struct wsg_certs_http *res, char err[WSG_ERRLEN]);
void wsg_certs_http_free(struct wsg_certs_http *res);
/* mbedTLS's send and receive callbacks over a blocking socket (ctx: the int fd); a timeout of the
 * socket (SO_SNDTIMEO / SO_RCVTIMEO, set by wsg_certs_connect) is MBEDTLS_ERR_SSL_TIMEOUT. */
int wsg_certs_bio_send(void *ctx, const unsigned char *buf, size_t len);
int wsg_certs_bio_recv(void *ctx, unsigned char *buf, size_t len);

/* ---- json.c: a strict JSON reader (RFC 8259) for the admin endpoint's and ACME servers' answers ---- */

enum wsg_certs_json_type {
    WSG_JSON_NULL,
    WSG_JSON_BOOL,
    WSG_JSON_NUMBER,
    WSG_JSON_STRING,
    WSG_JSON_ARRAY,
    WSG_JSON_OBJECT
};

struct wsg_certs_json {
    enum wsg_certs_json_type type;
    int boolean;
    double number;
    char *string;                /* WSG_JSON_STRING (UTF-8, NUL-terminated) */
    struct wsg_certs_json **kid; /* WSG_JSON_ARRAY items or WSG_JSON_OBJECT values */
    char **key;                  /* WSG_JSON_OBJECT keys */
    size_t n, cap;               /* members, and room for them (grown by doubling) */
};

/* @return the parsed value (one value, whitespace around it allowed), or NULL when malformed. */
struct wsg_certs_json *wsg_certs_json_parse(const char *s, size_t len);
void wsg_certs_json_free(struct wsg_certs_json *j);
/* The member key of an object, or NULL (also when j is not an object). */
const struct wsg_certs_json *wsg_certs_json_get(const struct wsg_certs_json *j, const char *key);
/* The string (NULL unless a string), the number (dflt unless a number). */
const char *wsg_certs_json_str(const struct wsg_certs_json *j);
double wsg_certs_json_num(const struct wsg_certs_json *j, double dflt);
/* The boolean (dflt unless a boolean). */
int wsg_certs_json_bool(const struct wsg_certs_json *j, int dflt);
/* s (NUL-terminated UTF-8) as a JSON string with its quotes, malloc'd; NULL when out of memory. */
char *wsg_certs_json_quote(const char *s);

/* ---- probe.c: one real TLS handshake, to see what a client is served ---- */

/**
 * Connects to addr (HOST:PORT), handshakes with SNI sni (NULL: none; IP addresses are not sent
 * as SNI), does not verify, and writes the SHA-256 fingerprint of the leaf the server sent
 * ("AB:CD:...", openssl format). @return 0, or -1 with err.
 */
int wsg_certs_probe(const char *addr, const char *sni, int timeout_ms, char sha256[96], char err[WSG_ERRLEN]);

/* ---- rotate.c: rotate and status ---- */

struct wsg_certs_rotate_opts {
    const char *admin;        /* the admin endpoint: HOST:PORT or unix:/path */
    const char *connect;      /* the public TLS listener to verify through: HOST:PORT */
    const char *const *names; /* names to check and verify via SNI (at least one) */
    size_t nnames;
    const char *cert, *key;           /* the new pair */
    const char *dest_cert, *dest_key; /* where the gateway's configuration reads its pair */
    const char *ca;                   /* optional CA bundle the new chain must verify against */
    unsigned warn_days;               /* exit 2 when the new certificate expires within this */
    int timeout_ms;                   /* per admin request and per verification handshake */
};

/* Checks, installs, reloads, verifies; rolls back on any failure. @return an exit code. */
int wsg_certs_rotate(const struct wsg_certs_rotate_opts *o, FILE *out, FILE *err);
/* The rotate subcommand: argv[0] is "rotate". @return an exit code. */
int wsg_certs_rotate_main(int argc, char **argv, FILE *out, FILE *err);
/* Prints GET /certs as a table (or as is with json). @return 0, 1 (unreachable, bad answer) or 2
 * (a served certificate expires within warn_days). */
int wsg_certs_status(const char *admin, int json, unsigned warn_days, int timeout_ms, FILE *out, FILE *err);
/* The status subcommand: argv[0] is "status". @return an exit code. */
int wsg_certs_status_main(int argc, char **argv, FILE *out, FILE *err);

/* ---- tickets.c ---- */

/**
 * Rotates a ticket_key_file: a fresh key first, then the key that was first (if any); older keys
 * are dropped. Written atomically, mode 0600. An existing file that is not a valid key file is
 * left alone. Prints one line to out (may be NULL).
 * @return 0, or -1 with err.
 */
int wsg_certs_tickets_new(const char *path, FILE *out, char err[WSG_ERRLEN]);
/* The tickets subcommand: argv[0] is "tickets". @return an exit code. */
int wsg_certs_tickets_main(int argc, char **argv, FILE *out, FILE *err);

#endif
