/*
 * config-int.h - private to gateway/config.c and gateway/config-file.c: the row type of the
 * settings table, and the calls the readers of a configuration (config-file.c: the file and the
 * command line) make into the table's code (config.c: what each setting is, how its value is
 * checked and stored). Nothing else includes this file.
 */
#ifndef WSG_CONFIG_INT_H
#define WSG_CONFIG_INT_H

#include <stddef.h>

#include "gateway/config.h"

#define MAX_LINE 4096
/* Rows of the settings table at most: the bits of struct wsg_cfg_route.set (config.c checks). */
#define WSG_CFG_MAX_ROWS 128

enum type {
    T_SIZE,        /* uint64_t or uint32_t (by field size): "512", "64k", "1m", "1g" */
    T_DURATION,    /* double seconds: "30", "500ms", "10s", "2m", "1h", "1.5s" */
    T_UINT,        /* unsigned */
    T_STRING,      /* char[] */
    T_LISTEN,      /* repeatable "host:port", "[v6]:port", ":port" */
    T_HTTP_LISTEN, /* repeatable "host:port", "[v6]:port", ":port", no options (listen_http) */
    T_CERT,        /* repeatable path */
    T_KEY,         /* repeatable path, pairs with the cert of the same rank */
    T_UPSTREAM,    /* repeatable "host:port [weight=N]" (also inside a route: the route's own list) */
    T_RATE,        /* double per second: "10", "0.5" */
    T_BYTERATE,    /* double bytes per second, written as a size: "64k" */
    T_ENUM,        /* one of choices, stored as its index (an enum) */
    T_SWITCH,      /* on|off, a bit of struct wsg_dir_policy (off = which bit) */
    T_PLIST,       /* repeatable space-separated list in struct wsg_policy (origins, subprotocols) */
};

/* Where a row's value lives. */
enum where {
    W_CFG, /* struct wsg_cfg at off (a route-allowed W_CFG row: struct wsg_policy at alt inside a route) */
    W_POL, /* struct wsg_policy at off: the global one, or the route's */
    W_DIR, /* struct wsg_dir_policy at off, for each direction in dirs (at top level also
            * struct wsg_cfg at alt when alt != 0: the transitional max_frame/max_message) */
};

struct setting {
    const char *name;
    enum type type;
    double min, max; /* bounds for numbers (bytes, seconds or units) */
    const char *def; /* default as text, parsed like a file value; NULL: none (empty list) */
    enum where where;
    unsigned route;      /* 1: also allowed inside route blocks */
    unsigned dirs;       /* W_DIR: DIR_C2U and/or DIR_U2C */
    size_t off, size;    /* where (see enum where), and the field's size */
    size_t alt;          /* see enum where; 0 = none */
    const char *choices; /* space-separated allowed values, or NULL */
    const char *help;
};

/* The row named name, or NULL. */
const struct setting *wsg_cfg_find(const char *name);
/* The row's index in the table (0 .. rows - 1). */
size_t wsg_cfg_row_index(const struct setting *st);
/* 1 for a repeatable row (listen, listen_http, cert, key, upstream, origins, subprotocols). */
int wsg_cfg_is_list(const struct setting *st);
/* Empties a repeatable row's list (at top level when r is NULL, else in route block r). */
void wsg_cfg_clear_list(struct wsg_cfg *c, struct wsg_cfg_route *r, const struct setting *st);
/* Checks value and stores it, at top level (r NULL) or inside route block r (which it marks as
 * set). @return 0, or -1 with err naming file:line (line 0: the command line) and the setting. */
int wsg_cfg_apply(struct wsg_cfg *c, struct wsg_cfg_route *r, const struct setting *st, const char *value,
                  const char *file, int line, char err[WSG_ERRLEN]);
/* A route block's `host` (repeatable) or `path` (once: *path_line is where it was set) line. */
int wsg_cfg_route_line(struct wsg_cfg_route *r, const char *name, char *value, const char *file, int line,
                       int *path_line, char err[WSG_ERRLEN]);
/* "FILE:LINE: unknown setting "NAME"" or "unknown option "--NAME"", with the nearest name. */
void wsg_cfg_unknown(char err[WSG_ERRLEN], const char *file, int line, const char *name);
/* "FILE:LINE: NAME: " for a file, "--NAME: " for the command line (line 0), then fmt. */
void wsg_cfg_fail(char err[WSG_ERRLEN], const char *file, int line, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int wsg_cfg_is_space(char ch);
/* Splits v in place on spaces and tabs; at most max words. Returns the count, or max + 1. */
size_t wsg_cfg_split_words(char *v, char **words, size_t max);

#endif
