/*
 * config.c - the settings table and everything derived from it (see config.h): what each setting
 * is, how its value is checked and where it is stored, the defaults, the final checks and the
 * route inheritance, route matching, `--help` and the README reference.
 *
 * One row per setting (Redis's config table, nginx's FILE:LINE errors). The defaults, the file
 * parser and the command-line overrides (config-file.c, through config-int.h), `--help` and the
 * README reference all read this table; adding a setting is adding a row (and its field in
 * struct wsg_cfg).
 *
 * wsg_cfg_set() is stateless: scalars are overwritten, repeatable settings append (their
 * defaults are empty lists). The loaders add the source rules: a scalar given twice in one file
 * is an error, and the first --NAME of a repeatable setting on the command line replaces the
 * list the file built.
 */
#include "gateway/config-int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define K 1024.0
#define M (1024.0 * 1024.0)
#define G (1024.0 * 1024.0 * 1024.0)

#define DIR_C2U 1u
#define DIR_U2C 2u
#define DIR_BOTH 3u

enum { SW_TEXT, SW_BINARY, SW_UTF8 }; /* T_SWITCH bits */

/* clang-format off */
#define FIELD(f) W_CFG, 0, 0, offsetof(struct wsg_cfg, f), sizeof(((struct wsg_cfg *)0)->f), 0
/* global field whose route-level twin is policy field pf */
#define FIELD_R(f, pf) W_CFG, 1, 0, offsetof(struct wsg_cfg, f), sizeof(((struct wsg_cfg *)0)->f), \
    offsetof(struct wsg_policy, pf)
#define POL(f) W_POL, 1, 0, offsetof(struct wsg_policy, f), sizeof(((struct wsg_policy *)0)->f), 0
#define DIR(d, f, legacy) W_DIR, 1, d, offsetof(struct wsg_dir_policy, f), \
    sizeof(((struct wsg_dir_policy *)0)->f), legacy
#define SWITCH(d, bit) W_DIR, 1, d, bit, 0, 0
#define LEGACY(f) offsetof(struct wsg_cfg, f)

/* The three spellings of a per-direction setting: plain (both), client_ (client -> upstream),
 * upstream_ (upstream -> client). */
#define DIR3(name, type, min, max, cdef, udef, f, legacy, choices, help)                              \
    {name, type, min, max, NULL, DIR(DIR_BOTH, f, legacy), choices,                                 \
     help "; both directions (sets client_" name " and upstream_" name ")"},                         \
    {"client_" name, type, min, max, cdef, DIR(DIR_C2U, f, 0), choices,                              \
     help ", client -> upstream"},                                                                   \
    {"upstream_" name, type, min, max, udef, DIR(DIR_U2C, f, 0), choices, help ", upstream -> client"}
#define SWITCH3(name, bit, def, help)                                                                \
    {name, T_SWITCH, 0, 0, NULL, SWITCH(DIR_BOTH, bit), "on off",                                    \
     help "; both directions (sets client_" name " and upstream_" name ")"},                         \
    {"client_" name, T_SWITCH, 0, 0, def, SWITCH(DIR_C2U, bit), "on off", help ", client -> upstream"}, \
    {"upstream_" name, T_SWITCH, 0, 0, def, SWITCH(DIR_U2C, bit), "on off", help ", upstream -> client"}

static const struct setting settings[] = {
    {"listen", T_LISTEN, 0, 0, NULL, FIELD(listen), NULL,
     "address to accept TLS on: HOST:PORT, [IPV6]:PORT or :PORT, then optionally proxy_protocol (every "
     "connection starts with a PROXY protocol v1 or v2 header from a balancer in proxy_protocol_from, "
     "whose client address is used everywhere) (repeatable; default 0.0.0.0:443 as root, else 0.0.0.0:8443)"},
    {"listen_http", T_HTTP_LISTEN, 0, 0, NULL, FIELD(listen_http), NULL,
     "plaintext HTTP address (same syntax as listen, no options): answers ACME HTTP-01 challenges "
     "(/.well-known/acme-challenge/TOKEN, pushed over the admin endpoint by wsgate-certs acme) and "
     "redirects every other request to https with 308 (repeatable; default off)"},
    {"cert", T_CERT, 0, 0, NULL, FIELD(cert), NULL,
     "certificate chain file, PEM (repeatable; the Nth key belongs to the Nth cert)"},
    {"key", T_KEY, 0, 0, NULL, FIELD(key), NULL, "private key file, PEM (repeatable)"},
    {"upstream", T_UPSTREAM, 0, 0, NULL, FIELD(upstream), NULL,
     "backend HOST:PORT [weight=N] (repeatable, at least one; weight 1-100, default 1; inside a "
     "route: that route's own group, max 16)"},
    {"workers", T_UINT, 0, 256, "0", FIELD(workers), NULL, "worker threads (0 = one per CPU)"},
    {"hash_prefix", T_UINT, 0, 24, "0", FIELD(hash_prefix), "0 24",
     "client address bits hashed to pick an upstream: 0 = whole address, 24 = IPv4 /24 "
     "(IPv6 /48) like nginx ip_hash"},
    {"affinity", T_ENUM, 0, 0, "ip", FIELD(affinity), "ip cookie",
     "how a client keeps its upstream: ip = the hash of its address; cookie = the first request is "
     "placed by the hash and the response sets affinity_cookie (an HMAC-signed token naming the "
     "upstream), which later requests and upgrades follow while that upstream is up, whatever "
     "their address"},
    {"affinity_cookie", T_STRING, 0, 0, "wsgate_upstream", FIELD(affinity_cookie), NULL,
     "name of the affinity cookie (Secure, HttpOnly, SameSite=Lax, Path=/; a session cookie)"},
    {"affinity_cookie_ttl", T_DURATION, 60, 365 * 86400.0, "1d", FIELD(affinity_cookie_ttl), NULL,
     "how long an affinity token is honoured after it was issued (refreshed once half of it is "
     "gone); an expired, forged or foreign token falls back to the hash"},
    {"affinity_key_file", T_STRING, 0, 0, NULL, FIELD(affinity_key_file), NULL,
     "HMAC key for affinity tokens, at least 32 bytes (head -c 32 /dev/urandom > FILE), the same on "
     "every gateway of a fleet; refused when readable by group or others (key_permissions); empty = "
     "a random key per process (tokens then hold on this gateway only, until it restarts)"},
    {"redis", T_STRING, 0, 0, NULL, FIELD(redis), NULL,
     "Redis server shared by a fleet of gateways, HOST:PORT or unix:PATH: ip_rate_messages, "
     "ip_rate_bytes, ip_upgrades and ip_max_conns then count over every gateway using it (each keeps "
     "local counts and syncs every redis_sync; Redis down = local counting); empty = off"},
    {"redis_password", T_STRING, 0, 0, NULL, FIELD(redis_password), NULL,
     "sent with AUTH after connecting to redis (empty = none)"},
    {"redis_prefix", T_STRING, 0, 0, "wsgate:", FIELD(redis_prefix), NULL,
     "prefix of every Redis key wsgate writes (several fleets can share one Redis)"},
    {"redis_sync", T_DURATION, 0.01, 10, "100ms", FIELD(redis_sync), NULL,
     "how often each gateway adds its counts to Redis and reads the fleet's (the fleet-wide rate "
     "is held within about one interval's worth)"},
    {"max_fails", T_UINT, 0, 1000, "1", FIELD(max_fails), NULL,
     "failed connects within fail_timeout that mark an upstream down (0 = never)"},
    {"fail_timeout", T_DURATION, 0.1, 3600, "10s", FIELD(fail_timeout), NULL,
     "window for counting failures, and how long a failed upstream is skipped"},
    {"health_check", T_STRING, 0, 0, "off", FIELD_R(health_check, health_check), NULL,
     "active health check: PATH to GET (HTTP/1.1, plaintext) on every upstream every health_interval, "
     "2xx/3xx = up; combined with the passive checks (off = passive only)"},
    {"health_interval", T_DURATION, 0.1, 3600, "5s", FIELD_R(health_interval, health_interval), NULL,
     "time between two active checks of one upstream"},
    {"health_timeout", T_DURATION, 0.05, 600, "2s", FIELD_R(health_timeout, health_timeout), NULL,
     "an active check not answered within this (connect, request, status line) fails"},
    {"health_rise", T_UINT, 1, 100, "2", FIELD_R(health_rise, health_rise), NULL,
     "consecutive passing checks that bring a down upstream back"},
    {"health_fall", T_UINT, 1, 100, "3", FIELD_R(health_fall, health_fall), NULL,
     "consecutive failing checks that take an upstream down"},
    {"handshake_timeout", T_DURATION, 0.1, 3600, "10s", FIELD(handshake_timeout), NULL,
     "TLS handshake must finish within this"},
    {"header_timeout", T_DURATION, 0.1, 3600, "10s", FIELD(header_timeout), NULL,
     "whole request head must arrive within this (408)"},
    {"keepalive_timeout", T_DURATION, 0.1, 3600, "60s", FIELD(keepalive_timeout), NULL,
     "idle client connection between requests is closed after this"},
    {"connect_timeout", T_DURATION, 0.1, 600, "5s", FIELD(connect_timeout), NULL,
     "upstream connect must succeed within this (then the next upstream is tried)"},
    {"upstream_timeout", T_DURATION, 0.1, 86400, "60s", FIELD(upstream_timeout), NULL,
     "longest wait for upstream bytes during an HTTP exchange (504)"},
    {"ws_idle_timeout", T_DURATION, 1, 86400, "120s", FIELD(ws_idle_timeout), NULL,
     "WebSocket with no frame either way is closed (1001) after this; keep above the "
     "app's ping interval"},
    {"drain_timeout", T_DURATION, 0, 3600, "10s", FIELD(drain_timeout), NULL,
     "on SIGTERM, exit at most this long after closing the listeners"},
    {"drain_spread", T_DURATION, 0, 3600, "0", FIELD(drain_spread), NULL,
     "on SIGTERM, WebSockets are closed with 1001 at random times spread over this window, so "
     "clients do not all reconnect at once (0 = all at once; capped at 80% of drain_timeout)"},
    {"max_connections", T_UINT, 0, 10000000, "0", FIELD(max_connections), NULL,
     "client connections per process; above, new ones are closed at once (0 = no limit)"},
    {"max_connections_per_ip", T_UINT, 0, 10000000, "0", FIELD(max_connections_per_ip), NULL,
     "client connections from one address, all workers; above, new ones are closed at once (0 = no limit)"},
    DIR3("max_frame", T_SIZE, 125, G, "1m", "16m", max_frame, LEGACY(max_frame), NULL,
         "largest WebSocket frame payload (1009 above, checked on the frame header)"),
    DIR3("max_message", T_SIZE, 125, G, "1m", "16m", max_message, LEGACY(max_message), NULL,
         "largest WebSocket message over all its fragments (1009 above)"),
    DIR3("max_fragments", T_UINT, 0, 1000000, "0", "0", max_fragments, 0, NULL,
         "most frames in one message (1009 above; 0 = no limit)"),
    SWITCH3("allow_text", SW_TEXT, "on", "text messages allowed (off: 1003)"),
    SWITCH3("allow_binary", SW_BINARY, "on", "binary messages allowed (off: 1003)"),
    SWITCH3("utf8", SW_UTF8, "on", "text messages checked to be UTF-8 (1007)"),
    {"rate_messages", T_RATE, 0, 1e6, "0", POL(conn_msgs.rate), NULL,
     "messages per second one connection may send (client -> upstream; decimals allowed; 0 = off)"},
    {"rate_messages_burst", T_RATE, 0, 1e9, "0", POL(conn_msgs.burst), NULL,
     "messages a connection may send at once above rate_messages (0 = max(rate, 1))"},
    {"rate_bytes", T_BYTERATE, 0, G, "0", POL(conn_bytes.rate), NULL,
     "message payload bytes per second one connection may send (0 = off)"},
    {"rate_bytes_burst", T_BYTERATE, 0, G, "0", POL(conn_bytes.burst), NULL,
     "bytes a connection may send at once (0 = max(rate, 1)); a bigger message waits for a full "
     "bucket, then goes"},
    {"rate_inflate_bytes", T_BYTERATE, 0, G, "0", POL(conn_inflate.rate), NULL,
     "bytes per second one connection's compressed messages may inflate to (client -> upstream, "
     "permessage-deflate; counted as wsgate inflates them; over it rate_action applies; 0 = off)"},
    {"rate_inflate_bytes_burst", T_BYTERATE, 0, G, "0", POL(conn_inflate.burst), NULL,
     "inflated bytes a connection may send at once above rate_inflate_bytes (0 = max(rate, 1))"},
    {"ip_rate_messages", T_RATE, 0, 1e6, "0", POL(ip_msgs.rate), NULL,
     "messages per second one client IP may send over all its connections (0 = off)"},
    {"ip_rate_messages_burst", T_RATE, 0, 1e9, "0", POL(ip_msgs.burst), NULL,
     "burst of ip_rate_messages (0 = max(rate, 1))"},
    {"ip_rate_bytes", T_BYTERATE, 0, G, "0", POL(ip_bytes.rate), NULL,
     "payload bytes per second one client IP may send over all its connections (0 = off)"},
    {"ip_rate_bytes_burst", T_BYTERATE, 0, G, "0", POL(ip_bytes.burst), NULL,
     "burst of ip_rate_bytes (0 = max(rate, 1))"},
    {"rate_action", T_ENUM, 0, 0, "throttle", POL(rate_action), "throttle close",
     "over a rate: throttle (stop reading the client until tokens refill; nothing lost) or close "
     "(1008 naming the rule)"},
    {"ip_max_conns", T_UINT, 0, 1000000, "0", POL(ip_max_conns), NULL,
     "concurrent WebSockets per client IP (refused with ip_limit_status; 0 = no limit)"},
    {"ip_upgrades", T_RATE, 0, 1e6, "0", POL(ip_upgrades.rate), NULL,
     "WebSocket upgrades per second per client IP (0 = off)"},
    {"ip_upgrades_burst", T_RATE, 0, 1e9, "0", POL(ip_upgrades.burst), NULL,
     "burst of ip_upgrades (0 = max(rate, 1))"},
    {"ip_limit_status", T_UINT, 0, 999, "429", POL(ip_limit_status), "429 503",
     "answer to an upgrade over ip_max_conns or ip_upgrades: 429 (with Retry-After) or 503"},
    {"deflate", T_ENUM, 0, 0, "on", POL(deflate), "off on",
     "permessage-deflate (RFC 7692): on = the client's offer goes to the upstream (filtered to what "
     "wsgate can inspect) and compressed messages are forwarded as they came, inflated only to check "
     "max_message and UTF-8; off = offers stripped, messages uncompressed"},
    {"deflate_max_ratio", T_UINT, 0, 1000000, "100", POL(deflate_max_ratio), NULL,
     "a compressed message whose inflated size reaches this many times its compressed size, once "
     "past 64 KiB inflated, closes 1009 (a decompression bomb; 0 = no ratio check)"},
    {"deflate_client_no_context_takeover", T_ENUM, 0, 0, "off", POL(deflate_client_no_context), "off on",
     "on = clients must reset their compressor after each message: client_no_context_takeover is added "
     "to the offer forwarded to the upstream and, when the upstream's answer lacks it, to the answer "
     "the client receives (RFC 7692 7.1.1.2 lets a server require it); the client -> upstream inflate "
     "state (about 40 KiB) is then held only while a compressed message is in flight, at the cost of "
     "the clients' compression ratio"},
    {"origins", T_PLIST, 0, 0, NULL, POL(origins), NULL,
     "allowed Origin values, space-separated, repeatable (lines append): https://app.example.com "
     "(scheme, host, port), *.example.com (any scheme), null; others get 403; none = any"},
    {"subprotocols", T_PLIST, 0, 0, NULL, POL(subprotocols), NULL,
     "allowed Sec-WebSocket-Protocol names, space-separated, repeatable; an offer with none of "
     "them gets 403; none = any"},
    {"max_body", T_SIZE, 0, 1024 * G, "0", FIELD(max_body), NULL,
     "largest HTTP request body (413 above; 0 = unlimited)"},
    {"buffer_size", T_SIZE, 20 * K, 16 * M, "32k", FIELD(buffer_size), NULL,
     "capacity of each of the 6 per-connection buffers (idle connections hold none)"},
    {"max_header_size", T_SIZE, K, M, "16k", FIELD_R(max_header_size, max_header_size), NULL,
     "largest request head (431 above); inside a route: that route's cap, at most the global one"},
    {"max_uri", T_SIZE, 64, M, "8k", FIELD(max_uri), NULL, "longest request-target (414 above)"},
    {"max_headers", T_UINT, 1, 100, "100", FIELD(max_headers), NULL,
     "most header fields in a request (431 above)"},
    {"ping_interval", T_DURATION, 0, 86400, "30s", POL(ping_interval), NULL,
     "wsgate pings a client silent for this long (0 = never)"},
    {"pong_timeout", T_DURATION, 0.1, 3600, "15s", POL(pong_timeout), NULL,
     "and closes it (1001) when no pong comes within this"},
    {"max_lifetime", T_DURATION, 0, 30 * 86400.0, "0", POL(max_lifetime), NULL,
     "close a WebSocket (1001) this long after the upgrade (0 = never)"},
    {"lifetime_jitter", T_DURATION, 0, 86400, "0", POL(lifetime_jitter), NULL,
     "plus a random 0..this, so clients do not all reconnect at once"},
    {"slow_consumer_bytes", T_SIZE, 0, G, "0", POL(slow_consumer_bytes), NULL,
     "bytes waiting for a client above this for slow_consumer_grace: close 1008 (0 = off)"},
    {"slow_consumer_grace", T_DURATION, 0, 3600, "30s", POL(slow_consumer_grace), NULL,
     "how long the client may stay above slow_consumer_bytes"},
    {"ip_table_size", T_UINT, 1024, 16777216, "65536", FIELD(ip_table_size), NULL,
     "client IPs tracked for the ip_ rules (least recently used idle ones are forgotten beyond)"},
    {"ip_table_shards", T_UINT, 1, 1024, "64", FIELD(ip_table_shards), "1 2 4 8 16 32 64 128 256 512 1024",
     "locks the per-IP table is split into (a power of two)"},
    {"ticket_lifetime", T_UINT, 0, 7 * 86400, "86400", FIELD(ticket_lifetime), NULL,
     "TLS session ticket lifetime in seconds (0 = no tickets)"},
    {"proxy_protocol_from", T_STRING, 0, 0, "any", FIELD(proxy_protocol_from), NULL,
     "who may send PROXY headers to proxy_protocol listeners: addresses or CIDRs, space-separated "
     "(10.0.0.0/8 2001:db8::/32), or any; others are closed at accept and counted"},
    {"ticket_key_file", T_STRING, 0, 0, NULL, FIELD(ticket_key_file), NULL,
     "session ticket keys shared by several gateways: one base64 line per key, each 80 random bytes "
     "(head -c 80 /dev/urandom | base64 -w0); the first encrypts, all decrypt; reloaded on SIGHUP and "
     "by watch_certs; refused when readable by group or others (key_permissions); empty = per-process "
     "random keys"},
    {"tls_cipher_order", T_ENUM, 0, 0, "server", FIELD(tls_cipher_order), "server client",
     "TLS 1.3 suite choice: server = AES-128-GCM whenever the client offers it (the fastest in "
     "this build), else the client's order; client = the client's first supported suite"},
    {"access_log", T_STRING, 0, 0, "stderr", FIELD(access_log), NULL,
     "where JSON access-log lines go: stderr, off or a file path"},
    {"log_level", T_STRING, 0, 0, "notice", FIELD(log_level), "error warn notice info debug",
     "least severe message logged"},
    {"user", T_STRING, 0, 0, NULL, FIELD(user), NULL,
     "after binding and loading keys as root, switch to this user (and its group unless `group` is "
     "set); empty = stay"},
    {"group", T_STRING, 0, 0, NULL, FIELD(group), NULL, "group to switch to with `user`"},
    {"key_permissions", T_STRING, 0, 0, "strict", FIELD(key_permissions), "strict any",
     "strict: refuse to start (or reload) when a private key file is readable by group or others"},
    {"session_log_interval", T_DURATION, 0, 86400, "0", FIELD(session_log_interval), NULL,
     "a WebSocket session open longer than this gets an access-log progress line every interval "
     "(0 = only the final line)"},
    {"watch_certs", T_STRING, 0, 0, "off", FIELD(watch_certs), "on off",
     "on: reload by itself when a cert or key file changes (inotify through libev's ev_stat, "
     "debounced 1 s), as if sent SIGHUP"},
    {"admin", T_STRING, 0, 0, "off", FIELD(admin), NULL,
     "admin endpoint (/metrics, / and /status (status page), /status.json, /healthz, /readyz, /certs, "
     "POST /reload, POST /drain, /upstreams, /acme): a loopback HOST:PORT, unix:PATH, or off"},
};
/* clang-format on */

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))
_Static_assert(NSETTINGS <= WSG_CFG_MAX_ROWS, "more settings than struct wsg_cfg_route.set has bits");

/* ---- small text helpers ---- */

int wsg_cfg_is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* Copies s without its leading/trailing whitespace into out (size n); -1 if it does not fit. */
static int trim_copy(const char *s, char *out, size_t n)
{
    while (wsg_cfg_is_space(*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && wsg_cfg_is_space(s[len - 1]))
        len--;
    if (len >= n)
        return -1;
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

const struct setting *wsg_cfg_find(const char *name)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[65];
    if (la > 64 || lb > 64)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The setting closest to name if it is within 2 edits, else NULL. */
static const char *suggest(const char *name)
{
    const char *best = NULL;
    size_t bestd = 3;
    for (size_t i = 0; i < NSETTINGS; i++) {
        size_t d = distance(name, settings[i].name);
        if (d < bestd) {
            bestd = d;
            best = settings[i].name;
        }
    }
    return best;
}

/* "FILE:LINE: NAME: " for a file, "--NAME: " for the command line (line 0). */
void wsg_cfg_fail(char err[WSG_ERRLEN], const char *file, int line, const char *name, const char *fmt, ...)
{
    int n;
    if (line > 0)
        n = snprintf(err, WSG_ERRLEN, "%s:%d: %s: ", file, line, name);
    else
        n = snprintf(err, WSG_ERRLEN, "--%s: ", name);
    if (n < 0 || n >= WSG_ERRLEN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, WSG_ERRLEN - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- value parsers ---- */

int wsg_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        p++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        p++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        p++;
        break;
    default:
        return -1;
    }
    if (*p != '\0' || (shift != 0 && v > (UINT64_MAX >> shift)))
        return -1;
    *out = v << shift;
    return 0;
}

int wsg_parse_duration(const char *s, double *out)
{
    const char *p = s;
    size_t ndig = 0;
    while (isdigit((unsigned char)*p)) {
        p++;
        ndig++;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            ndig++;
        }
    }
    if (ndig == 0 || ndig > 15 || !isdigit((unsigned char)s[0]))
        return -1;
    char num[32];
    memcpy(num, s, (size_t)(p - s));
    num[p - s] = '\0';
    double v = strtod(num, NULL);
    double unit;
    if (strcmp(p, "") == 0 || strcmp(p, "s") == 0)
        unit = 1;
    else if (strcmp(p, "ms") == 0)
        unit = 0.001;
    else if (strcmp(p, "m") == 0)
        unit = 60;
    else if (strcmp(p, "h") == 0)
        unit = 3600;
    else if (strcmp(p, "d") == 0)
        unit = 86400;
    else
        return -1;
    *out = v * unit;
    return 0;
}

static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    for (; isdigit((unsigned char)*s); s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (*s != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Renders a number of the row's type the way a user would write it ("16m", "10s", "256"). */
static void format_value(const struct setting *st, double v, char *out, size_t n)
{
    if (st->type == T_SIZE || st->type == T_BYTERATE) {
        uint64_t b = (uint64_t)v;
        if (b != 0 && b % (1u << 30) == 0)
            snprintf(out, n, "%llug", (unsigned long long)(b >> 30));
        else if (b != 0 && b % (1u << 20) == 0)
            snprintf(out, n, "%llum", (unsigned long long)(b >> 20));
        else if (b != 0 && b % (1u << 10) == 0)
            snprintf(out, n, "%lluk", (unsigned long long)(b >> 10));
        else
            snprintf(out, n, "%llu", (unsigned long long)b);
    } else if (st->type == T_DURATION) {
        if (v != 0 && fmod(v, 3600) == 0)
            snprintf(out, n, "%.0fh", v / 3600);
        else if (v != 0 && fmod(v, 60) == 0)
            snprintf(out, n, "%.0fm", v / 60);
        else if (v >= 1 || v == 0)
            snprintf(out, n, "%gs", v);
        else
            snprintf(out, n, "%gms", v * 1000);
    } else if (st->type == T_RATE) {
        snprintf(out, n, "%.15g", v);
    } else {
        snprintf(out, n, "%.0f", v);
    }
}

/* "10", "0.5", "2.25": a non-negative decimal without exponent. */
static int parse_decimal(const char *s, double *out)
{
    const char *p = s;
    size_t ndig = 0;
    while (isdigit((unsigned char)*p))
        p++, ndig++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, ndig++;
    }
    if (ndig == 0 || ndig > 15 || !isdigit((unsigned char)s[0]) || *p != '\0' || p[-1] == '.')
        return -1;
    *out = strtod(s, NULL);
    return 0;
}

static int in_choices(const char *choices, const char *v)
{
    size_t len = strlen(v);
    for (const char *p = choices; *p != '\0';) {
        size_t w = strcspn(p, " ");
        if (w == len && strncmp(p, v, len) == 0)
            return 1;
        p += w;
        while (*p == ' ')
            p++;
    }
    return 0;
}

/* HOST:PORT, [V6]:PORT, or (allow_empty_host) :PORT; no DNS. Returns a static reason or NULL. */
static const char *check_hostport(const char *v, int allow_empty_host)
{
    const char *colon;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        char host[64];
        if (close == NULL || close[1] != ':')
            return "is not an address (expected [IPV6]:PORT)";
        size_t hl = (size_t)(close - v - 1);
        struct in6_addr a6;
        if (hl == 0 || hl >= sizeof(host))
            return "is not an IPv6 address";
        memcpy(host, v + 1, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return "is not an IPv6 address";
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL)
            return "is not an address (expected HOST:PORT)";
        if (memchr(v, ':', (size_t)(colon - v)) != NULL)
            return "has an IPv6 address without brackets (write [ADDR]:PORT)";
        size_t hl = (size_t)(colon - v);
        if (hl == 0 && !allow_empty_host)
            return "has no host (expected HOST:PORT)";
        if (hl >= 254)
            return "has a host name that is too long";
        char host[256];
        memcpy(host, v, hl);
        host[hl] = '\0';
        int digits_dots = hl > 0, label = 0;
        for (size_t i = 0; i < hl; i++) {
            unsigned char ch = (unsigned char)host[i];
            if (!isdigit(ch) && ch != '.')
                digits_dots = 0;
            if (isalnum(ch) || ch == '_' || (ch == '-' && label > 0)) {
                label++;
            } else if (ch == '.' && label > 0) {
                label = 0;
            } else if (ch == '*' && hl == 1 && allow_empty_host) {
                label = 1;
            } else {
                return "is not an address (bad character in host)";
            }
        }
        if (hl > 0 && label == 0)
            return "is not an address (host ends with '.')";
        struct in_addr a4;
        if (digits_dots && inet_pton(AF_INET, host, &a4) != 1)
            return "is not an IPv4 address";
    }
    uint64_t port;
    if (parse_uint(colon + 1, &port) != 0 || port < 1 || port > 65535)
        return "has a bad port (1-65535)";
    return NULL;
}

/* The list behind a repeatable row: count, capacity, element pointer. */

/* ---- where values live ---- */

static struct wsg_policy *policy_of(struct wsg_cfg *c, struct wsg_cfg_route *r)
{
    return r != NULL ? &r->policy : &c->policy;
}

size_t wsg_cfg_row_index(const struct setting *st)
{
    return (size_t)(st - settings);
}

static unsigned *plist_count(struct wsg_policy *p, const struct setting *st)
{
    return st->off == offsetof(struct wsg_policy, origins) ? &p->norigins : &p->nsubprotocols;
}

/* The list behind a repeatable row (r: inside that route block): count, capacity, element size. */
static char *list_slot(struct wsg_cfg *c, struct wsg_cfg_route *r, const struct setting *st, unsigned **count,
                       unsigned *cap, size_t *elsize)
{
    static unsigned none;
    *count = &none, *cap = 0, *elsize = 1; /* not a list: callers check wsg_cfg_is_list() first */
    switch (st->type) {
    case T_LISTEN:
        *count = &c->nlisten, *cap = WSG_CFG_MAX_LISTEN, *elsize = sizeof(c->listen[0]);
        break;
    case T_HTTP_LISTEN:
        *count = &c->nlisten_http, *cap = WSG_CFG_MAX_LISTEN, *elsize = sizeof(c->listen_http[0]);
        break;
    case T_CERT:
        *count = &c->ncert, *cap = WSG_CFG_MAX_CERTS, *elsize = sizeof(c->cert[0]);
        break;
    case T_KEY:
        *count = &c->nkey, *cap = WSG_CFG_MAX_CERTS, *elsize = sizeof(c->key[0]);
        break;
    case T_UPSTREAM:
        if (r != NULL) {
            *count = &r->nupstream, *cap = WSG_CFG_MAX_ROUTE_UPSTREAMS, *elsize = sizeof(r->upstream[0]);
            return (char *)r->upstream;
        }
        *count = &c->nupstream, *cap = WSG_CFG_MAX_UPSTREAMS, *elsize = sizeof(c->upstream[0]);
        break;
    case T_PLIST: {
        struct wsg_policy *p = policy_of(c, r);
        *count = plist_count(p, st);
        *cap = WSG_POLICY_MAX_LIST;
        *elsize = st->size / WSG_POLICY_MAX_LIST;
        return (char *)p + st->off;
    }
    default:
        return NULL;
    }
    return (char *)c + st->off;
}

int wsg_cfg_is_list(const struct setting *st)
{
    return st->type == T_LISTEN || st->type == T_HTTP_LISTEN || st->type == T_CERT || st->type == T_KEY ||
           st->type == T_UPSTREAM || st->type == T_PLIST;
}

void wsg_cfg_clear_list(struct wsg_cfg *c, struct wsg_cfg_route *r, const struct setting *st)
{
    unsigned *count, cap;
    size_t elsize;
    char *base = list_slot(c, r, st, &count, &cap, &elsize);
    memset(base, 0, (size_t)cap * elsize);
    if (st->type == T_LISTEN)
        memset(c->listen_proxy, 0, sizeof(c->listen_proxy));
    *count = 0;
}

static unsigned get_switch(const struct wsg_dir_policy *d, size_t bit)
{
    return bit == SW_TEXT ? d->allow_text : bit == SW_BINARY ? d->allow_binary : d->utf8;
}

static void put_switch(struct wsg_dir_policy *d, size_t bit, unsigned on)
{
    if (bit == SW_TEXT)
        d->allow_text = on;
    else if (bit == SW_BINARY)
        d->allow_binary = on;
    else
        d->utf8 = on;
}

static void put_num(char *field, const struct setting *st, double num)
{
    if (st->type == T_DURATION || st->type == T_RATE || st->type == T_BYTERATE)
        *(double *)(void *)field = num;
    else if (st->size == sizeof(uint64_t))
        *(uint64_t *)(void *)field = (uint64_t)num;
    else
        *(uint32_t *)(void *)field = (uint32_t)num;
}

/* Stores a checked number (or switch/enum index) where the row says, globally or in route r. */
static void store(struct wsg_cfg *c, struct wsg_cfg_route *r, const struct setting *st, double num)
{
    struct wsg_policy *p = policy_of(c, r);
    switch (st->where) {
    case W_CFG:
        put_num(r != NULL ? (char *)p + st->alt : (char *)c + st->off, st, num);
        break;
    case W_POL:
        put_num((char *)p + st->off, st, num);
        break;
    case W_DIR:
        for (unsigned d = DIR_C2U; d <= DIR_U2C; d <<= 1) {
            if (!(st->dirs & d))
                continue;
            struct wsg_dir_policy *dp = d == DIR_C2U ? &p->c2u : &p->u2c;
            if (st->type == T_SWITCH)
                put_switch(dp, st->off, num != 0);
            else
                put_num((char *)dp + st->off, st, num);
        }
        if (r == NULL && st->alt != 0)
            put_num((char *)c + st->alt, st, num);
        break;
    }
}

/* Copies what row st sets from src to dst (a route's own setting over the inherited policy). */
static void copy_row(struct wsg_policy *dst, const struct wsg_policy *src, const struct setting *st)
{
    switch (st->where) {
    case W_CFG:
        memcpy((char *)dst + st->alt, (const char *)src + st->alt, st->size);
        break;
    case W_POL:
        memcpy((char *)dst + st->off, (const char *)src + st->off, st->size);
        if (st->type == T_PLIST)
            *plist_count(dst, st) = *plist_count((struct wsg_policy *)(uintptr_t)src, st);
        break;
    case W_DIR:
        for (unsigned d = DIR_C2U; d <= DIR_U2C; d <<= 1) {
            if (!(st->dirs & d))
                continue;
            struct wsg_dir_policy *dd = d == DIR_C2U ? &dst->c2u : &dst->u2c;
            const struct wsg_dir_policy *sd = d == DIR_C2U ? &src->c2u : &src->u2c;
            if (st->type == T_SWITCH)
                put_switch(dd, st->off, get_switch(sd, st->off));
            else
                memcpy((char *)dd + st->off, (const char *)sd + st->off, st->size);
        }
        break;
    }
}

/* ---- value checks ---- */

/* "example.com", "*.example.com", "10.0.0.1" or "[::1]" (no port). */
static int host_pattern_ok(const char *s, size_t len)
{
    if (len >= 2 && s[0] == '*' && s[1] == '.')
        s += 2, len -= 2;
    if (len == 0)
        return 0;
    if (s[0] == '[') {
        char v6[64];
        struct in6_addr a6;
        if (s[len - 1] != ']' || len - 2 >= sizeof(v6) || len < 3)
            return 0;
        memcpy(v6, s + 1, len - 2);
        v6[len - 2] = '\0';
        return inet_pton(AF_INET6, v6, &a6) == 1;
    }
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isalnum(ch) || ch == '_' || (ch == '-' && label > 0))
            label++;
        else if (ch == '.' && label > 0)
            label = 0;
        else
            return 0;
    }
    return label > 0;
}

/* "null", a host pattern, or "scheme://HOST-PATTERN[:port][/]". */
static int origin_ok(const char *v)
{
    if (strcmp(v, "null") == 0)
        return 1;
    const char *sep = strstr(v, "://");
    if (sep == NULL)
        return host_pattern_ok(v, strlen(v));
    if (sep == v || !isalpha((unsigned char)v[0]))
        return 0;
    for (const char *p = v; p < sep; p++)
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
            return 0;
    const char *h = sep + 3;
    size_t len = strlen(h);
    if (len > 0 && h[len - 1] == '/')
        len--;
    const char *end = h + len, *hend;
    if (len > 0 && h[0] == '[') {
        hend = memchr(h, ']', len);
        if (hend == NULL)
            return 0;
        hend++;
    } else {
        hend = memchr(h, ':', len);
        if (hend == NULL)
            hend = end;
    }
    if (!host_pattern_ok(h, (size_t)(hend - h)))
        return 0;
    if (hend == end)
        return 1;
    if (*hend != ':')
        return 0;
    char port[8];
    uint64_t pn;
    if ((size_t)(end - hend - 1) >= sizeof(port))
        return 0;
    memcpy(port, hend + 1, (size_t)(end - hend - 1));
    port[end - hend - 1] = '\0';
    return parse_uint(port, &pn) == 0 && pn >= 1 && pn <= 65535;
}

/* RFC 9110 token (what Sec-WebSocket-Protocol names are). */
static int token_ok(const char *v)
{
    if (*v == '\0')
        return 0;
    for (; *v != '\0'; v++)
        if (!isalnum((unsigned char)*v) && strchr("!#$%&'*+-.^_`|~", *v) == NULL)
            return 0;
    return 1;
}

/* Strips one pair of surrounding double quotes (paths with spaces). */
static void unquote(char *v)
{
    size_t len = strlen(v);
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        memmove(v, v + 1, len - 2);
        v[len - 2] = '\0';
    }
}

/* Splits v in place on spaces and tabs; at most max words. Returns the count, or max + 1. */
size_t wsg_cfg_split_words(char *v, char **words, size_t max)
{
    size_t n = 0;
    while (*v != '\0') {
        while (wsg_cfg_is_space(*v))
            v++;
        if (*v == '\0')
            break;
        if (n == max)
            return max + 1;
        words[n++] = v;
        v += strcspn(v, " \t");
        if (*v != '\0')
            *v++ = '\0';
    }
    return n;
}

/* origins / subprotocols (and a route's host list): every word checked before any is added. */
static int add_words(char *base, unsigned *count, unsigned cap, size_t elsize, char *v,
                     int (*ok)(const char *), const char *what, const char *file, int line, const char *name,
                     char err[WSG_ERRLEN])
{
    char *words[WSG_POLICY_MAX_LIST + 1];
    size_t n = wsg_cfg_split_words(v, words, WSG_POLICY_MAX_LIST);
    if (*count + n > cap) {
        wsg_cfg_fail(err, file, line, name, "more than %u values", cap);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (strlen(words[i]) >= elsize) {
            wsg_cfg_fail(err, file, line, name, "\"%s\" is longer than %zu bytes", words[i], elsize - 1);
            return -1;
        }
        if (!ok(words[i])) {
            wsg_cfg_fail(err, file, line, name, "\"%s\" is not %s", words[i], what);
            return -1;
        }
        for (unsigned j = 0; j < *count; j++)
            if (strcasecmp(base + (size_t)j * elsize, words[i]) == 0) {
                wsg_cfg_fail(err, file, line, name, "\"%s\" is given twice", words[i]);
                return -1;
            }
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(words[j], words[i]) == 0) {
                wsg_cfg_fail(err, file, line, name, "\"%s\" is given twice", words[i]);
                return -1;
            }
    }
    for (size_t i = 0; i < n; i++)
        strcpy(base + (size_t)(*count)++ * elsize, words[i]);
    return 0;
}

static int host_ok(const char *v)
{
    return host_pattern_ok(v, strlen(v));
}

static int set_list(struct wsg_cfg *c, struct wsg_cfg_route *r, const struct setting *st, char *v,
                    const char *file, int line, char err[WSG_ERRLEN])
{
    unsigned *count, cap;
    size_t elsize;
    char *base = list_slot(c, r, st, &count, &cap, &elsize);
    if (st->type == T_PLIST) {
        int origins = st->off == offsetof(struct wsg_policy, origins);
        return add_words(base, count, cap, elsize, v, origins ? origin_ok : token_ok,
                         origins ? "an origin (e.g. https://app.example.com, *.example.com or null)"
                                 : "a subprotocol name (a token)",
                         file, line, st->name, err);
    }
    if (*count >= cap) {
        wsg_cfg_fail(err, file, line, st->name, "more than %u values", cap);
        return -1;
    }
    char *slot = base + (size_t)*count * elsize;
    if (st->type == T_CERT || st->type == T_KEY) {
        unquote(v);
        if (v[0] == '\0') {
            wsg_cfg_fail(err, file, line, st->name, "missing value");
            return -1;
        }
        if (strlen(v) >= elsize) {
            wsg_cfg_fail(err, file, line, st->name, "path is longer than %zu bytes", elsize - 1);
            return -1;
        }
        strcpy(slot, v);
    } else if (st->type == T_LISTEN || st->type == T_HTTP_LISTEN) {
        /* "ADDR [proxy_protocol]" (nginx's listen parameter); listen_http takes no option */
        int http = st->type == T_HTTP_LISTEN, proxy = 0;
        char *opt = v + strcspn(v, " \t");
        const char *why = NULL;
        if (http) {
            why = strlen(v) >= elsize ? "is too long"
                  : *opt != '\0'      ? "has more than an address (no options here)"
                                      : NULL;
        } else if (*opt != '\0') {
            char whole[256];
            snprintf(whole, sizeof(whole), "%.200s", v);
            *opt++ = '\0';
            while (wsg_cfg_is_space(*opt))
                opt++;
            size_t ol = strlen(opt);
            while (ol > 0 && wsg_cfg_is_space(opt[ol - 1]))
                opt[--ol] = '\0';
            if (strcmp(opt, "proxy_protocol") != 0) {
                wsg_cfg_fail(err, file, line, st->name,
                             "\"%s\" has \"%s\" after the address (the only option is proxy_protocol)", whole,
                             opt);
                return -1;
            }
            proxy = 1;
        }
        if (why == NULL)
            why = strlen(v) >= elsize ? "is too long" : check_hostport(v, 1);
        if (why != NULL) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" %s", v, why);
            return -1;
        }
        for (unsigned i = 0; i < *count; i++)
            if (strcmp(base + (size_t)i * elsize, v) == 0) {
                wsg_cfg_fail(err, file, line, st->name, "\"%s\" is given twice", v);
                return -1;
            }
        if (!http)
            c->listen_proxy[*count] = (unsigned char)proxy;
        strcpy(slot, v);
    } else { /* T_UPSTREAM: "host:port [weight=N]" */
        struct wsg_cfg_upstream *up = (struct wsg_cfg_upstream *)(void *)slot;
        char *rest = v + strcspn(v, " \t");
        if (*rest != '\0')
            *rest++ = '\0';
        while (wsg_cfg_is_space(*rest))
            rest++;
        const char *why = strlen(v) >= sizeof(up->addr) ? "is too long" : check_hostport(v, 0);
        if (why != NULL) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" %s", v, why);
            return -1;
        }
        uint64_t weight = 1;
        while (*rest != '\0') {
            char *tok = rest;
            rest += strcspn(rest, " \t");
            if (*rest != '\0')
                *rest++ = '\0';
            while (wsg_cfg_is_space(*rest))
                rest++;
            if (strncmp(tok, "weight=", 7) != 0) {
                wsg_cfg_fail(err, file, line, st->name, "unexpected \"%s\" (expected weight=N)", tok);
                return -1;
            }
            if (parse_uint(tok + 7, &weight) != 0 || weight < 1 || weight > 100) {
                wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not a weight (1-100)", tok);
                return -1;
            }
        }
        struct wsg_cfg_upstream *all = (struct wsg_cfg_upstream *)(void *)base;
        for (unsigned i = 0; i < *count; i++)
            if (strcmp(all[i].addr, v) == 0) {
                wsg_cfg_fail(err, file, line, st->name, "\"%s\" is given twice", v);
                return -1;
            }
        strcpy(up->addr, v);
        up->weight = (unsigned)weight;
    }
    (*count)++;
    return 0;
}

/* redis: "HOST:PORT" (port 1-65535, "[v6]:PORT" too) or "unix:/absolute/path". */
static int redis_addr_ok(const char *v)
{
    if (strncmp(v, "unix:", 5) == 0)
        return v[5] == '/';
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v || colon[1] == '\0')
        return 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return *end == '\0' && port >= 1 && port <= 65535 && colon[1] != '-' && colon[1] != '+';
}

/* A cookie name is an RFC 6265 token (RFC 7230 tchar): visible ASCII but separators. */
static int cookie_name_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p) != NULL)
            return 0;
    return 1;
}

static int set_scalar(struct wsg_cfg *c, struct wsg_cfg_route *r, const struct setting *st, char *v,
                      const char *file, int line, char err[WSG_ERRLEN])
{
    char lim[32];
    double num;

    switch (st->type) {
    case T_STRING: {
        char *field = (char *)c + st->off;
        unquote(v);
        if (v[0] == '\0') {
            wsg_cfg_fail(err, file, line, st->name, "missing value");
            return -1;
        }
        if (st->choices != NULL && !in_choices(st->choices, v)) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not one of: %s", v, st->choices);
            return -1;
        }
        if (strcmp(st->name, "health_check") == 0 && strcmp(v, "off") != 0) {
            int ok = v[0] == '/';
            for (const char *q = v; ok && *q; q++)
                ok = *q > 0x20 && *q < 0x7f; /* it goes into a request line as it is */
            if (!ok) {
                wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not off or a path starting with /", v);
                return -1;
            }
        }
        if (strlen(v) >= st->size) {
            wsg_cfg_fail(err, file, line, st->name, "value is longer than %zu bytes", st->size - 1);
            return -1;
        }
        if (r != NULL && st->route) /* a route's own value (FIELD_R): in its policy */
            field = (char *)policy_of(c, r) + st->alt;
        /* a cookie name is an RFC 6265 token: no separators, controls or spaces */
        if (strcmp(st->name, "redis") == 0 && !redis_addr_ok(v)) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not HOST:PORT or unix:/PATH", v);
            return -1;
        }
        if (strcmp(st->name, "affinity_cookie") == 0 && !cookie_name_ok(v)) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not a cookie name (RFC 6265 token)", v);
            return -1;
        }
        strcpy(field, v);
        return 0;
    }
    case T_ENUM:
    case T_SWITCH: {
        if (!in_choices(st->choices, v)) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not one of: %s", v, st->choices);
            return -1;
        }
        /* the index among the choices: "on off" -> on is 0, so switches store 1 for "on" */
        size_t len = strlen(v), idx = 0;
        for (const char *p = st->choices; strncmp(p, v, len) != 0 || (p[len] != ' ' && p[len] != '\0');
             p += strcspn(p, " ") + 1)
            idx++;
        store(c, r, st, st->type == T_SWITCH ? (idx == 0) : (double)idx);
        return 0;
    }
    case T_SIZE:
    case T_BYTERATE: {
        uint64_t b;
        if (wsg_parse_size(v, &b) != 0) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not a size (e.g. 64k, 1m)", v);
            return -1;
        }
        num = (double)b;
        break;
    }
    case T_DURATION:
        if (wsg_parse_duration(v, &num) != 0) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not a duration (e.g. 500ms, 10s, 2m)", v);
            return -1;
        }
        break;
    case T_RATE:
        if (parse_decimal(v, &num) != 0) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not a number (e.g. 10, 0.5)", v);
            return -1;
        }
        break;
    case T_UINT: {
        uint64_t u;
        if (parse_uint(v, &u) != 0) {
            wsg_cfg_fail(err, file, line, st->name, "\"%s\" is not a number", v);
            return -1;
        }
        num = (double)u;
        break;
    }
    default:
        return -1;
    }

    if (st->choices != NULL) {
        char canon[32];
        format_value(st, num, canon, sizeof(canon));
        if (!in_choices(st->choices, canon)) {
            wsg_cfg_fail(err, file, line, st->name, "%s is not one of: %s", v, st->choices);
            return -1;
        }
    }
    if (num < st->min) {
        format_value(st, st->min, lim, sizeof(lim));
        wsg_cfg_fail(err, file, line, st->name, "%s is below the minimum %s", v, lim);
        return -1;
    }
    if (num > st->max) {
        format_value(st, st->max, lim, sizeof(lim));
        wsg_cfg_fail(err, file, line, st->name, "%s is above the maximum %s", v, lim);
        return -1;
    }
    store(c, r, st, num);
    return 0;
}

/* Applies one setting at top level (r NULL) or inside route block r (which it marks as set). */
int wsg_cfg_apply(struct wsg_cfg *c, struct wsg_cfg_route *r, const struct setting *st, const char *value,
                  const char *file, int line, char err[WSG_ERRLEN])
{
    char v[MAX_LINE + 1];
    if (value == NULL || trim_copy(value, v, sizeof(v)) != 0) {
        wsg_cfg_fail(err, file, line, st->name, value == NULL ? "missing value" : "value is too long");
        return -1;
    }
    if (v[0] == '\0') {
        wsg_cfg_fail(err, file, line, st->name, "missing value");
        return -1;
    }
    int rc = wsg_cfg_is_list(st) ? set_list(c, r, st, v, file, line, err)
                                 : set_scalar(c, r, st, v, file, line, err);
    if (rc == 0 && r != NULL) {
        size_t row = wsg_cfg_row_index(st);
        r->set[row / 64] |= 1ull << (row % 64);
        if (st->where == W_CFG && st->type != T_UPSTREAM)
            r->header_line = line;
    }
    return rc;
}

/* ---- public API ---- */

void wsg_cfg_defaults(struct wsg_cfg *c)
{
    char err[WSG_ERRLEN];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].def == NULL)
            continue;
        int rc = wsg_cfg_apply(c, NULL, &settings[i], settings[i].def, "(defaults)", 1, err);
        if (rc != 0) { /* a broken table row: caught by the unit tests */
            fprintf(stderr, "wsgate: bad default: %s\n", err);
            abort();
        }
    }
    /* transitional (config.h): the old single limits keep their 16m until conn.c reads the policy */
    c->max_frame = c->policy.u2c.max_frame;
    c->max_message = c->policy.u2c.max_message;
}

void wsg_cfg_unknown(char err[WSG_ERRLEN], const char *file, int line, const char *name)
{
    const char *near = suggest(name);
    const char *dash = line > 0 ? "" : "--";
    int n = line > 0 ? snprintf(err, WSG_ERRLEN, "%s:%d: unknown setting \"%s\"", file, line, name)
                     : snprintf(err, WSG_ERRLEN, "unknown option \"--%s\"", name);
    if (near != NULL && n > 0 && n < WSG_ERRLEN)
        snprintf(err + n, WSG_ERRLEN - (size_t)n, " (did you mean \"%s%s\"?)", dash, near);
}

int wsg_cfg_set(struct wsg_cfg *c, const char *name, const char *value, const char *file, int line,
                char err[WSG_ERRLEN])
{
    const struct setting *st = wsg_cfg_find(name);
    if (st == NULL) {
        wsg_cfg_unknown(err, file, line, name);
        return -1;
    }
    return wsg_cfg_apply(c, NULL, st, value, file, line, err);
}

/* host / path, the two route-only lines. */
int wsg_cfg_route_line(struct wsg_cfg_route *r, const char *name, char *value, const char *file, int line,
                       int *path_line, char err[WSG_ERRLEN])
{
    char v[MAX_LINE + 1];
    if (trim_copy(value, v, sizeof(v)) != 0 || v[0] == '\0') {
        wsg_cfg_fail(err, file, line, name, "missing value");
        return -1;
    }
    if (strcmp(name, "host") == 0)
        return add_words((char *)r->hosts, &r->nhosts, WSG_CFG_MAX_ROUTE_HOSTS, sizeof(r->hosts[0]), v,
                         host_ok, "a host name or pattern (e.g. chat.example.com, *.example.com)", file, line,
                         name, err);
    if (*path_line != 0) {
        wsg_cfg_fail(err, file, line, name, "is duplicate (first set on line %d)", *path_line);
        return -1;
    }
    unquote(v);
    if (v[0] != '/' || strpbrk(v, " \t") != NULL) {
        wsg_cfg_fail(err, file, line, name, "\"%s\" is not a path prefix (starts with /)", v);
        return -1;
    }
    if (strlen(v) >= sizeof(r->path)) {
        wsg_cfg_fail(err, file, line, name, "value is longer than %zu bytes", sizeof(r->path) - 1);
        return -1;
    }
    strcpy(r->path, v);
    *path_line = line;
    return 0;
}

/* proxy_protocol_from: its words into c->proxy_from ("any" alone, or addresses and CIDRs). */
static int parse_proxy_from(struct wsg_cfg *c, char err[WSG_ERRLEN])
{
    char words[sizeof(c->proxy_protocol_from)];
    snprintf(words, sizeof(words), "%s", c->proxy_protocol_from);
    c->nproxy_from = 0;
    for (char *save = NULL, *w = strtok_r(words, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
        const char *why = NULL;
        if (c->nproxy_from == WSG_CFG_MAX_PROXY_FROM) {
            snprintf(err, WSG_ERRLEN, "proxy_protocol_from: more than %d addresses or CIDRs",
                     WSG_CFG_MAX_PROXY_FROM);
            return -1;
        }
        if (wsg_cidr_parse(w, &c->proxy_from[c->nproxy_from], &why) != 0) {
            snprintf(err, WSG_ERRLEN, "proxy_protocol_from: \"%.60s\" %s", w, why);
            return -1;
        }
        c->nproxy_from++;
    }
    if (c->nproxy_from == 0) {
        snprintf(err, WSG_ERRLEN,
                 "proxy_protocol_from: empty (write any to accept PROXY headers from anyone)");
        return -1;
    }
    return 0;
}

int wsg_cfg_finish(struct wsg_cfg *c, char err[WSG_ERRLEN])
{
    if (c->ncert != c->nkey) {
        snprintf(err, WSG_ERRLEN, "cert/key: %u certificate%s but %u key%s", c->ncert,
                 c->ncert == 1 ? "" : "s", c->nkey, c->nkey == 1 ? "" : "s");
        return -1;
    }
    if (c->nupstream == 0) {
        snprintf(err, WSG_ERRLEN, "no upstream configured: add `upstream HOST:PORT`");
        return -1;
    }
    /* The request head is parsed in one linear buffer and rewritten (plus the X-Forwarded-*
     * headers) into another of the same size. */
    if ((uint64_t)c->max_header_size + 2048 > c->buffer_size) {
        snprintf(err, WSG_ERRLEN,
                 "max_header_size: %u bytes does not fit buffer_size %u with 2k to spare for the "
                 "forwarding headers",
                 c->max_header_size, c->buffer_size);
        return -1;
    }
    /* Routes inherit the final global policy (nginx: the order of the file does not matter). */
    for (unsigned i = 0; i < c->nroutes; i++) {
        struct wsg_cfg_route *r = &c->routes[i];
        if (r->header_line != 0 && r->policy.max_header_size > c->max_header_size) {
            const struct setting *st = wsg_cfg_find("max_header_size");
            char mine[32], global[32];
            format_value(st, r->policy.max_header_size, mine, sizeof(mine));
            format_value(st, c->max_header_size, global, sizeof(global));
            snprintf(err, WSG_ERRLEN,
                     "%s:%d: route %s: max_header_size: %s is above the global max_header_size %s", r->file,
                     r->header_line, r->name, mine, global);
            return -1;
        }
        struct wsg_policy merged = c->policy;
        for (size_t row = 0; row < NSETTINGS; row++)
            if (r->set[row / 64] & (1ull << (row % 64)) && settings[row].type != T_UPSTREAM)
                copy_row(&merged, &r->policy, &settings[row]);
        r->policy = merged;
    }
    if (c->nlisten == 0) {
        snprintf(c->listen[0], sizeof(c->listen[0]), "%s", geteuid() == 0 ? "0.0.0.0:443" : "0.0.0.0:8443");
        c->listen_proxy[0] = 0;
        c->nlisten = 1;
    }
    for (unsigned i = 0; i < c->nlisten_http; i++)
        for (unsigned k = 0; k < c->nlisten; k++)
            if (strcmp(c->listen_http[i], c->listen[k]) == 0) {
                snprintf(err, WSG_ERRLEN, "listen_http: \"%s\" is also a TLS listen address", c->listen[k]);
                return -1;
            }
    return parse_proxy_from(c, err);
}

const struct wsg_cfg_route *wsg_cfg_route_match(const struct wsg_cfg *c, const char *host, size_t host_len,
                                                const char *path, size_t path_len)
{
    for (unsigned i = 0; i < c->nroutes; i++) {
        const struct wsg_cfg_route *r = &c->routes[i];
        size_t pl = strlen(r->path);
        if (pl > path_len || memcmp(r->path, path, pl) != 0)
            continue;
        if (r->nhosts == 0)
            return r;
        for (unsigned h = 0; h < r->nhosts; h++)
            if (host != NULL && wsg_match_host(r->hosts[h], host, host_len))
                return r;
    }
    return NULL;
}

const struct wsg_policy *wsg_cfg_route_policy(const struct wsg_cfg *c, const struct wsg_cfg_route *r)
{
    return r != NULL ? &r->policy : &c->policy;
}

uint32_t wsg_cfg_route_index(const struct wsg_cfg *c, const struct wsg_cfg_route *r)
{
    return r != NULL ? (uint32_t)(r - c->routes) + 1 : 0;
}

static const char *metavar(enum type t)
{
    switch (t) {
    case T_SIZE:
        return "SIZE";
    case T_BYTERATE:
        return "SIZE/s";
    case T_DURATION:
        return "DURATION";
    case T_UINT:
    case T_RATE:
        return "N";
    case T_STRING:
    case T_ENUM:
        return "VALUE";
    case T_SWITCH:
        return "on|off";
    case T_PLIST:
        return "LIST";
    case T_LISTEN:
    case T_HTTP_LISTEN:
    case T_UPSTREAM:
        return "HOST:PORT";
    case T_CERT:
    case T_KEY:
        return "FILE";
    }
    return "VALUE";
}

static const char *type_name(enum type t)
{
    switch (t) {
    case T_SIZE:
        return "size";
    case T_BYTERATE:
        return "size per second";
    case T_DURATION:
        return "duration";
    case T_UINT:
        return "number";
    case T_RATE:
        return "per second";
    case T_STRING:
    case T_ENUM:
        return "string";
    case T_SWITCH:
        return "on/off";
    case T_PLIST:
        return "list, repeatable";
    case T_LISTEN:
    case T_HTTP_LISTEN:
        return "address, repeatable";
    case T_CERT:
    case T_KEY:
        return "path, repeatable";
    case T_UPSTREAM:
        return "upstream, repeatable";
    }
    return "?";
}

static int route_allowed(const struct setting *st)
{
    return st->route || st->type == T_UPSTREAM;
}

void wsg_cfg_help(FILE *out)
{
    fprintf(out,
            "usage: wsgate [-t] [-c FILE] [--NAME VALUE]...\n"
            "  -c FILE   read settings from FILE (one `NAME VALUE` per line)\n"
            "  -t        check the configuration and exit\n"
            "  -h        show this help\n"
            "settings (in the file as `NAME VALUE`, on the command line as --NAME VALUE or --NAME=VALUE;\n"
            "sizes take k/m/g, durations ms/s/m/h; [route]: also allowed in the file's\n"
            "`route NAME { host PATTERN...; path PREFIX; ... }` blocks, which override the top level):\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *st = &settings[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", st->name, metavar(st->type));
        fprintf(out, "  %-30s %s", left, st->help);
        if (st->def != NULL)
            fprintf(out, " (default: %s)", st->def);
        if (route_allowed(st))
            fputs(" [route]", out);
        fputc('\n', out);
    }
}

void wsg_cfg_markdown(FILE *out)
{
    fprintf(out, "| name | type | default | where | description |\n");
    fprintf(out, "|------|------|---------|-------|-------------|\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *st = &settings[i];
        char bounds[96] = "";
        if (st->type == T_SIZE || st->type == T_DURATION || st->type == T_UINT || st->type == T_RATE ||
            st->type == T_BYTERATE) {
            char lo[32], hi[32];
            format_value(st, st->min, lo, sizeof(lo));
            format_value(st, st->max, hi, sizeof(hi));
            if (st->choices != NULL)
                snprintf(bounds, sizeof(bounds), " (one of: %s)", st->choices);
            else
                snprintf(bounds, sizeof(bounds), " (%s to %s)", lo, hi);
        } else if (st->choices != NULL) {
            snprintf(bounds, sizeof(bounds), " (one of: %s)", st->choices);
        }
        fprintf(out, "| `%s` | %s | %s%s%s | %s | %s%s |\n", st->name, type_name(st->type),
                st->def ? "`" : "", st->def ? st->def : "", st->def ? "`" : "",
                route_allowed(st) ? "top, route" : "top", st->help, bounds);
    }
}

/* A generator's view of one row: the same words --help and --help-markdown print. */
int wsg_cfg_row(size_t i, struct wsg_cfg_row *row)
{
    if (i >= NSETTINGS)
        return -1;
    const struct setting *st = &settings[i];
    *row = (struct wsg_cfg_row){.name = st->name,
                                .type = type_name(st->type),
                                .metavar = metavar(st->type),
                                .def = st->def,
                                .help = st->help,
                                .route = route_allowed(st)};
    if (st->choices != NULL) {
        snprintf(row->bounds, sizeof(row->bounds), " (one of: %s)", st->choices);
    } else if (st->type == T_SIZE || st->type == T_DURATION || st->type == T_UINT || st->type == T_RATE ||
               st->type == T_BYTERATE) {
        char lo[32], hi[32];
        format_value(st, st->min, lo, sizeof(lo));
        format_value(st, st->max, hi, sizeof(hi));
        snprintf(row->bounds, sizeof(row->bounds), " (%s to %s)", lo, hi);
    }
    return 0;
}
