/*
 * config.h - the settings table and the parsed configuration.
 *
 * One table (config.c) drives everything: the embedded defaults, the file parser
 * ("name value..." per line, '#' comments), the --NAME VALUE command-line overrides,
 * `wsgate --help`, `wsgate -t` and the README reference. Errors name the file, line and key:
 *   wsgate.conf:12: max_message: "12x" is not a size (e.g. 64k, 1m)
 */
#ifndef WSG_CONFIG_H
#define WSG_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "policies/base/err.h"
#include "gateway/proxyproto.h"

#define WSG_AFFINITY_IP 0
#define WSG_AFFINITY_COOKIE 1
#include "policies/policy.h"

#define WSG_CFG_MAX_LISTEN 16
#define WSG_CFG_MAX_PROXY_FROM 32
#define WSG_CFG_MAX_CERTS 32
#define WSG_CFG_MAX_UPSTREAMS 64
#define WSG_CFG_MAX_ROUTES 32
#define WSG_CFG_MAX_ROUTE_HOSTS 16
#define WSG_CFG_MAX_ROUTE_UPSTREAMS 16

struct wsg_cfg_upstream {
    char addr[128]; /* host:port */
    unsigned weight;
};

/* A `route NAME { ... }` block of the file. */
struct wsg_cfg_route {
    char name[64];
    char hosts[WSG_CFG_MAX_ROUTE_HOSTS][128]; /* exact or "*.example.com"; none = any host */
    unsigned nhosts;
    char path[256]; /* prefix of the request-target; "/" when not given */
    struct wsg_cfg_upstream upstream[WSG_CFG_MAX_ROUTE_UPSTREAMS]; /* none = the global upstreams */
    unsigned nupstream;
    /* After wsg_cfg_finish: the final global policy with this block's settings applied over it,
     * whatever their order in the file (nginx inheritance). */
    struct wsg_policy policy;
    char file[256]; /* where the block opened */
    int line;
    /* config.c's own: which table rows the block sets, and the line of its max_header_size */
    uint64_t set[2];
    int header_line;
};

struct wsg_cfg {
    /* repeatable */
    char listen[WSG_CFG_MAX_LISTEN][128];
    unsigned char listen_proxy[WSG_CFG_MAX_LISTEN]; /* 1: "ADDR proxy_protocol", a PROXY header first */
    unsigned nlisten;
    char listen_http[WSG_CFG_MAX_LISTEN][128]; /* plaintext ACME HTTP-01 + redirect (gateway/acme.h) */
    unsigned nlisten_http;
    char cert[WSG_CFG_MAX_CERTS][512];
    unsigned ncert;
    char key[WSG_CFG_MAX_CERTS][512];
    unsigned nkey;
    struct wsg_cfg_upstream upstream[WSG_CFG_MAX_UPSTREAMS];
    unsigned nupstream;
    /* scalars */
    unsigned workers;            /* 0 = number of CPUs */
    unsigned hash_prefix;        /* 0 = whole client address, 24 = IPv4 /24 (nginx ip_hash) */
    unsigned affinity;           /* WSG_AFFINITY_IP (0) or WSG_AFFINITY_COOKIE (1) */
    char affinity_cookie[64];    /* the cookie's name (an RFC 6265 token) */
    double affinity_cookie_ttl;  /* seconds a token is honoured after it was issued */
    char affinity_key_file[512]; /* HMAC key shared by a fleet ("" = per-process random key) */
    char redis[300];             /* "HOST:PORT" or "unix:PATH": per-IP rules over the fleet ("" = off) */
    char redis_password[256];
    char redis_prefix[64];
    double redis_sync;                 /* seconds between two syncs with Redis */
    unsigned max_fails;                /* passive health */
    double fail_timeout;               /* seconds */
    char health_check[256];            /* active health check path, or "off" */
    double health_interval;            /* between two checks of one upstream */
    double health_timeout;             /* one check must answer within this */
    unsigned health_rise, health_fall; /* consecutive results that change the state */
    double handshake_timeout;          /* TLS handshake */
    double header_timeout;             /* whole request head (slowloris) */
    double keepalive_timeout;          /* idle client between requests */
    double connect_timeout;            /* upstream connect */
    double upstream_timeout;           /* waiting for upstream bytes during an HTTP exchange */
    double ws_idle_timeout;            /* WebSocket with no frame either way */
    double drain_timeout;              /* SIGTERM: exit at most this long after */
    double drain_spread;               /* SIGTERM: WebSocket closes spread over this window */
    unsigned max_connections;          /* per process, 0 = no limit */
    unsigned max_connections_per_ip;   /* all workers, 0 = no limit */
    /* Transitional (conn.c's ws_start still reads them; to go once it reads the policy): set
     * only by the plain max_frame/max_message settings at top level, default 16m. */
    uint64_t max_frame;             /* WebSocket frame payload; 1009 above */
    uint64_t max_message;           /* WebSocket message payload over fragments; 1009 above */
    uint64_t max_body;              /* request body; 413 above; 0 = unlimited */
    uint32_t buffer_size;           /* capacity of each of the 6 per-connection buffers */
    uint32_t max_header_size;       /* request head; 431 above */
    uint32_t max_uri;               /* request-target; 414 above */
    unsigned max_headers;           /* header count; 431 above */
    unsigned ticket_lifetime;       /* seconds, 0 = no session tickets */
    char ticket_key_file[512];      /* shared ticket keys ("" = per-process random keys) */
    char proxy_protocol_from[1024]; /* CIDRs, space-separated, or "any" */
    struct wsg_cidr proxy_from[WSG_CFG_MAX_PROXY_FROM]; /* parsed by wsg_cfg_finish */
    unsigned nproxy_from;
    unsigned tls_cipher_order;   /* WSG_TLS_ORDER_SERVER (0) or WSG_TLS_ORDER_CLIENT (1) */
    char access_log[512];        /* "stderr", "off" or a path */
    char log_level[16];          /* error warn notice info debug */
    char admin[128];             /* "off", loopback "host:port" or "unix:/path" */
    char user[64];               /* drop privileges to this user after binding ("" = stay) */
    char group[64];              /* and this group ("" = the user's) */
    char key_permissions[8];     /* "strict" or "any" */
    char watch_certs[4];         /* "on": reload when a cert/key file changes */
    double session_log_interval; /* WebSocket progress lines (0 = off) */
    uint32_t ip_table_size;      /* per-IP table entries (LRU beyond) */
    uint32_t ip_table_shards;    /* power of two */
    /* The global policy: settings at top level or on the command line. It is the default route's
     * policy and the base every route starts from. */
    struct wsg_policy policy;
    struct wsg_cfg_route routes[WSG_CFG_MAX_ROUTES]; /* in file order */
    unsigned nroutes;
};

/* Fills every field with the table's defaults (listen/upstream/cert lists empty). */
void wsg_cfg_defaults(struct wsg_cfg *c);
/**
 * Applies one setting. file/line say where it came from (file "--" line 0 for argv). For
 * repeatable settings the first call from a new source replaces the defaults; later ones append.
 * value is the rest of the line (e.g. "127.0.0.1:3001 weight=2").
 * @return 0 or -1 with err ("FILE:LINE: NAME: reason"; "--NAME: reason" for argv).
 */
int wsg_cfg_set(struct wsg_cfg *c, const char *name, const char *value, const char *file, int line,
                char err[WSG_ERRLEN]);
/* Reads a whole file, `route NAME { ... }` blocks included; the first error stops it. -1 with
 * err also for unreadable files. */
int wsg_cfg_load_file(struct wsg_cfg *c, const char *path, char err[WSG_ERRLEN]);
/* Parses argv overrides (--NAME VALUE ...), ignoring -c FILE, -t, -h/--help which main handles.
 * Settings given on the command line override the file even for repeatable ones. */
int wsg_cfg_load_args(struct wsg_cfg *c, int argc, char **argv, char err[WSG_ERRLEN]);
/* Cross-field checks after everything is loaded: cert/key pairs match in count, at least one
 * upstream, at least one listen (defaults to 0.0.0.0:443 as root, 0.0.0.0:8443 otherwise), a
 * route's max_header_size not above the global one. Then each route's policy becomes the final
 * global policy with the route's own settings over it. Calling it again gives the same result. */
int wsg_cfg_finish(struct wsg_cfg *c, char err[WSG_ERRLEN]);
/**
 * The route for a request: routes in file order, the first whose host patterns (if any) match
 * `host` (the Host header; port ignored) and whose path is a prefix of `path` wins.
 * @return the route, or NULL for the default route (global policy and upstreams).
 */
const struct wsg_cfg_route *wsg_cfg_route_match(const struct wsg_cfg *c, const char *host, size_t host_len,
                                                const char *path, size_t path_len);
/* &r->policy, or the global policy for the default route (r NULL). */
const struct wsg_policy *wsg_cfg_route_policy(const struct wsg_cfg *c, const struct wsg_cfg_route *r);
/* 0 for the default route (NULL), i + 1 for c->routes[i]: the route part of the per-IP key. */
uint32_t wsg_cfg_route_index(const struct wsg_cfg *c, const struct wsg_cfg_route *r);

/* Prints the settings table (name, type, default, help) as `wsgate --help` shows it. */
void wsg_cfg_help(FILE *out);
/* Prints the table as a Markdown reference (README). */
void wsg_cfg_markdown(FILE *out);
/* Row i of the settings table, for generators (the man page wsgate.conf(5), the commented
 * example configuration): 0 and *row filled, or -1 past the last row. bounds is "" or
 * " (one of: ...)" / " (LOW to HIGH)" as in wsg_cfg_markdown. */
struct wsg_cfg_row {
    const char *name, *type, *metavar, *def, *help; /* def: NULL when none (an empty list) */
    int route;                                      /* also allowed inside route blocks */
    char bounds[96];
};
int wsg_cfg_row(size_t i, struct wsg_cfg_row *row);

/* Parsers shared with tests: "64k", "1m", "512" -> bytes; "10s", "500ms", "2m", "1h", "30" -> s. */
int wsg_parse_size(const char *s, uint64_t *out);
int wsg_parse_duration(const char *s, double *out);

#endif
