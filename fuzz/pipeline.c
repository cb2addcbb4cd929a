/*
 * pipeline.c - libFuzzer target for a whole connection: a real TLS client (mbedTLS, in this file)
 * on one end of a socketpair, the gateway's connection state machine (gateway/conn*.c, linked from
 * the library as the gateway links it; the private gateway/conn-int.h makes struct wsg_conn
 * readable for the invariants) on the other, and a real loopback TCP upstream that this file
 * accepts and plays. The input is a script: client bytes, upstream bytes,
 * reads, half-closes, drains and clock jumps interleaved as the input decides; after every step
 * the worker's libev loop runs until the connection is quiet, and the invariants are checked.
 *
 * Built once in LLVMFuzzerInitialize: the configuration (wsg_cfg_defaults + wsg_cfg_set:
 * buffer_size 24k, max_frame 4k, max_message 16k, max_headers 64, ping_interval 1h so that pings
 * happen only when the script moves the clock, max_fails 0, no session tickets) with one upstream,
 * a listening socket on 127.0.0.1 (ephemeral port); the runtime (upstream table) as main.c builds
 * it; a TLS store with the generated certificate (npairs 0); the per-IP table; one worker
 * (wsg_worker_init: its own loop, no thread, no listeners).
 *
 * Per input: socketpair(AF_UNIX) for the client hop, wsg_conn_new(worker, fds[0], 127.0.0.1:40000),
 * a TLS 1.3 handshake by the client over fds[1] (no verification, SNI localhost), then the ops:
 *
 *   [op][len lo][len hi][len bytes]...   (op taken modulo 12; len clamped to what is left)
 *   0  CSEND   the client sends the bytes through TLS
 *   1  USEND   the upstream (latest accepted connection) sends the bytes
 *   2  CREAD   the client reads and decrypts everything there is
 *   3  UREAD   the upstream reads everything there is
 *   4  CCLOSE  bytes[0]: bit 0 close_notify, bit 1 shutdown(SHUT_WR), bit 2 close the socket
 *   5  UCLOSE  bytes[0]: bit 0 shutdown(SHUT_WR), bit 1 close (bit 2: with a RST)
 *   6  TIME    the clock jumps by {0.1,1,3,10,30,100,1000,4000}[bytes[0] & 7] s for this
 *              connection: its absolute times move back, its timers fire if due (libev's clock
 *              is real time, so the connection's own times are shifted instead)
 *   7  CFRAME  the client sends one frame: bytes[0] = FIN|RSV|opcode, bytes[1] = repeat, the
 *              payload = bytes[2..] repeated (repeat + 1) times (max 64 KiB), masked
 *   8  UFRAME  the same from the upstream, unmasked
 *   9  CPONG   the client answers the last ping it received (a masked pong, same payload)
 *   10 CRAW    the bytes go to the client socket directly (not TLS records: breaks TLS)
 *   11 DRAIN   wsg_conn_drain() on the connection (what SIGTERM does)
 * New upstream connections are accepted automatically while the loop runs. At the end the loop
 * runs and both peers read until nothing moves, then everything is closed (wsg_conn_abort if the
 * connection still exists); LeakSanitizer checks the rest.
 *
 * Invariants (abort with a message):
 *   - one connection at most, the worker's and the shared counters agree with it; each of its six
 *     buffers holds at most its capacity (buffer_size), so the sum stays <= 6 x buffer_size;
 *     a WebSocket state has both relays;
 *   - the upstream's byte stream, per TCP connection, is a sequence of requests that parse again
 *     (wsg_http_parse_request, generous limits) with bodies framed as announced (Content-Length,
 *     chunked scanned again); after an upgrade request every byte is an RFC 6455 client frame:
 *     masked, RSV 0, known opcode, minimal length, control frames final and <= 125, a close body
 *     not 1 byte with a valid code and UTF-8 reason, continuations only inside a message, text
 *     UTF-8, frame <= max_frame, message <= max_message, nothing after a close;
 *   - the client's plaintext: the first response heads parse (wsg_http_parse_response); when the
 *     first final response is a 101, every later byte is an RFC 6455 server frame (the same rules,
 *     unmasked), so every close the client receives has a valid code (1000-1003, 1007-1014,
 *     3000-4999) or no body. (When the first final response is not a 101 the client's stream is
 *     not checked further: body framing of a later exchange depends on requests the script
 *     wrote.)
 * FUZZ_VERBOSE=1 prints the steps, the statuses and the frames each peer received.
 */
#include "gateway/conn-int.h"

#include <errno.h>
#include <mbedtls/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "gateway/upstream.h"
#include "policies/policy.h"
#include "tls/tls.h"

#define PL_BUFFER_SIZE (24 * 1024)
#define PL_MAX_FRAME 4096
#define PL_MAX_MESSAGE (16 * 1024)
#define PL_HEAD_CAP (48 * 1024) /* a head either peer receives; the gateway writes <= buffer_size */
#define PL_MAX_UP 8
#define PL_FRAME_MAX (64 * 1024)

enum {
    OP_CSEND,
    OP_USEND,
    OP_CREAD,
    OP_UREAD,
    OP_CCLOSE,
    OP_UCLOSE,
    OP_TIME,
    OP_CFRAME,
    OP_UFRAME,
    OP_CPONG,
    OP_CRAW,
    OP_DRAIN,
    OP_COUNT
};
static const char *const op_names[OP_COUNT] = {"csend", "usend",  "cread",  "uread", "cclose", "uclose",
                                               "time",  "cframe", "uframe", "cpong", "craw",   "drain"};

#if defined(__clang__)
/* The libFuzzer build only (clang; the gcc replay keeps full stacks): ASan's fast unwinder walks
 * through libev, libwslay and mbedTLS, which are built without frame pointers, so the third frame of
 * an allocation stack onward is stack garbage. Every run then stores new "unique" allocation stacks
 * and the stack depot grows ~30 KB per execution (1.2 GB of RSS after 35k runs, with a live heap
 * of 30 MB). Two frames (the allocator and its caller) stay exact and bounded. The report's own
 * stack is unaffected; for full alloc/free stacks rerun the reproducer with
 * ASAN_OPTIONS=malloc_context_size=30 (the environment overrides this). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "malloc_context_size=2";
}
#endif

/* ------------------------------------------------------------------ one-time setup */

static struct wsg_shared pl_sh;
static struct wsg_worker pl_w;
static int pl_lfd = -1;
static mbedtls_ssl_config pl_ccfg;
static pid_t pl_pid;
static uint64_t pl_rng_state = 0x9e3779b97f4a7c15ull;

static void pl_die(const char *what, const char *detail)
{
    fprintf(stderr, "pipeline: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* Deterministic randomness for the client (its ECDHE shares come from PSA anyway). */
static int pl_rng(void *ctx, unsigned char *dst, size_t len)
{
    WSG_UNUSED(ctx);
    for (size_t i = 0; i < len; i++) {
        pl_rng_state ^= pl_rng_state << 13;
        pl_rng_state ^= pl_rng_state >> 7;
        pl_rng_state ^= pl_rng_state << 17;
        dst[i] = (unsigned char)(pl_rng_state >> 24);
    }
    return 0;
}

static void pl_set(struct wsg_cfg *cfg, const char *name, const char *value)
{
    char err[WSG_ERRLEN];
    if (wsg_cfg_set(cfg, name, value, "pipeline", 0, err) != 0)
        pl_die("config", err);
}

/* main.c's build_upstreams/runtime_new, for a configuration without routes. */
static struct wsg_runtime *pl_runtime(struct wsg_cfg *cfg)
{
    char err[WSG_ERRLEN];
    struct wsg_runtime *rt = calloc(1, sizeof(*rt));
    struct wsg_upstreams *u = calloc(1, sizeof(*u));
    if (rt == NULL || u == NULL)
        pl_die("out of memory", NULL);
    u->hash_prefix = cfg->hash_prefix;
    u->max_fails = cfg->max_fails;
    u->fail_timeout = cfg->fail_timeout;
    for (unsigned i = 0; i < cfg->nupstream; i++)
        if (wsg_upstream_add(u, cfg->upstream[i].addr, cfg->upstream[i].weight, err) != 0)
            pl_die("upstream", err);
    rt->cfg = cfg;
    rt->ups[0] = u;
    for (unsigned i = 0; i < cfg->nroutes; i++)
        rt->ups[i + 1] = u;
    return rt;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    WSG_UNUSED(argc);
    WSG_UNUSED(argv);
    char err[WSG_ERRLEN];
    signal(SIGPIPE, SIG_IGN);
    wsg_log_max = fuzz_verbose() ? WSG_LOG_DEBUG : -1;
    wsg_log_open_access(fuzz_verbose() ? "stderr" : "off");

    /* The upstream: a loopback listener on an ephemeral port. */
    pl_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    if (pl_lfd < 0 || bind(pl_lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(pl_lfd, 128) != 0 ||
        getsockname(pl_lfd, (struct sockaddr *)&sin, &sl) != 0)
        pl_die("upstream listener", strerror(errno));
    char up[64];
    snprintf(up, sizeof(up), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));

    struct wsg_cfg *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        pl_die("out of memory", NULL);
    wsg_cfg_defaults(cfg);
    pl_set(cfg, "listen", "127.0.0.1:1"); /* never bound */
    pl_set(cfg, "upstream", up);
    pl_set(cfg, "buffer_size", "24k");
    pl_set(cfg, "max_frame", "4k");
    pl_set(cfg, "max_message", "16k");
    pl_set(cfg, "max_headers", "64"); /* the forwarded head adds a few: stays <= 100 to parse again */
    pl_set(cfg, "ping_interval", "1h");
    pl_set(cfg, "max_fails", "0");
    pl_set(cfg, "ticket_lifetime", "0");
    pl_set(cfg, "workers", "1");
    if (wsg_cfg_finish(cfg, err) != 0)
        pl_die("config", err);
    if (cfg->buffer_size != PL_BUFFER_SIZE || cfg->policy.c2u.max_frame != PL_MAX_FRAME ||
        cfg->policy.u2c.max_message != PL_MAX_MESSAGE)
        pl_die("config", "limits not applied");

    pl_sh.rt = pl_runtime(cfg);
    static const char *const names[] = {"localhost", "127.0.0.1"};
    struct wsg_tls_settings ts = {NULL, 0, names, 2, 0, WSG_TLS_ORDER_SERVER, NULL};
    if (wsg_tls_store_new(&pl_sh.tls, &ts, err) != 0)
        pl_die("TLS store", err);
    if ((pl_sh.ipt = wsg_iptable_new(cfg->ip_table_size, cfg->ip_table_shards)) == NULL)
        pl_die("per-IP table", "out of memory");
    if (wsg_worker_init(&pl_w, 0, &pl_sh) != 0)
        pl_die("worker", "wsg_worker_init failed");

    mbedtls_ssl_config_init(&pl_ccfg);
    if (mbedtls_ssl_config_defaults(&pl_ccfg, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        pl_die("client TLS config", NULL);
    mbedtls_ssl_conf_authmode(&pl_ccfg, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_rng(&pl_ccfg, pl_rng, NULL);
    mbedtls_ssl_conf_min_tls_version(&pl_ccfg, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_conf_max_tls_version(&pl_ccfg, MBEDTLS_SSL_VERSION_TLS1_3);
    pl_pid = getpid();
    return 0;
}

/* ------------------------------------------------------------------ RFC 6455 / UTF-8 models */

struct pl_u8 {
    int need;
    uint8_t lo, hi;
};

/* Independent RFC 3629 validator: 0 ok so far, -1 invalid. */
static int pl_u8_step(struct pl_u8 *s, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t b = p[i];
        if (s->need) {
            if (b < s->lo || b > s->hi)
                return -1;
            s->need--;
            s->lo = 0x80;
            s->hi = 0xbf;
            continue;
        }
        s->lo = 0x80;
        s->hi = 0xbf;
        if (b < 0x80)
            continue;
        if (b >= 0xc2 && b <= 0xdf)
            s->need = 1;
        else if (b == 0xe0)
            s->need = 2, s->lo = 0xa0;
        else if (b == 0xed)
            s->need = 2, s->hi = 0x9f;
        else if (b >= 0xe1 && b <= 0xef)
            s->need = 2;
        else if (b == 0xf0)
            s->need = 3, s->lo = 0x90;
        else if (b >= 0xf1 && b <= 0xf3)
            s->need = 3;
        else if (b == 0xf4)
            s->need = 3, s->hi = 0x8f;
        else
            return -1;
    }
    return 0;
}

static int pl_close_code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/* A streaming decoder of the frames one peer receives. */
struct pl_ws {
    const char *who; /* "upstream" or "client" */
    int masked;      /* frames must be masked (to the upstream) or unmasked (to the client) */
    uint8_t hdr[14];
    size_t hlen;
    int in_payload;
    uint8_t op, fin, mask[4];
    uint64_t len, pos;
    int in_msg, msg_text;
    uint64_t msg_len;
    struct pl_u8 u8;
    uint8_t ctl[125];
    size_t ctl_len;
    int closed;     /* a close frame was received whole */
    int close_code; /* its code (1005: no body) */
    unsigned long frames, messages;
    uint8_t ping[125];
    size_t ping_len;
    int have_ping;
};

static void pl_ws_fail(const struct pl_ws *d, const char *what)
{
    fprintf(stderr, "pipeline: invalid WebSocket stream to the %s after %lu frames: %s\n", d->who, d->frames,
            what);
    abort();
}

static void pl_ws_frame_start(struct pl_ws *d)
{
    const uint8_t *h = d->hdr;
    uint8_t l7 = h[1] & 0x7f;
    d->fin = h[0] >> 7;
    d->op = h[0] & 0xf;
    if ((h[0] >> 4) & 7)
        pl_ws_fail(d, "RSV bits set");
    if (!(d->op <= 2 || (d->op >= 8 && d->op <= 10)))
        pl_ws_fail(d, "unknown opcode");
    if ((h[1] >> 7) != d->masked)
        pl_ws_fail(d, d->masked ? "unmasked frame" : "masked frame");
    size_t ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
    d->len = l7;
    if (ext) {
        d->len = 0;
        for (size_t i = 0; i < ext; i++)
            d->len = (d->len << 8) | h[2 + i];
        if (ext == 2 ? d->len < 126 : (d->len < 65536 || (d->len >> 63) != 0))
            pl_ws_fail(d, "length not in its minimal form");
    }
    if (d->masked)
        memcpy(d->mask, h + 2 + ext, 4);
    else
        memset(d->mask, 0, 4);
    if (d->op >= 8) {
        if (!d->fin)
            pl_ws_fail(d, "fragmented control frame");
        if (d->len > 125)
            pl_ws_fail(d, "control frame above 125 bytes");
        if (d->op == 8 && d->len == 1)
            pl_ws_fail(d, "close frame with a 1-byte body");
        d->ctl_len = 0;
    } else {
        if (d->op == 0 && !d->in_msg)
            pl_ws_fail(d, "continuation outside a message");
        if (d->op != 0 && d->in_msg)
            pl_ws_fail(d, "new data frame inside a fragmented message");
        if (d->len > PL_MAX_FRAME)
            pl_ws_fail(d, "frame above max_frame");
        if (d->op != 0) {
            d->in_msg = 1;
            d->msg_text = d->op == 1;
            d->msg_len = 0;
            memset(&d->u8, 0, sizeof(d->u8));
        }
        d->msg_len += d->len;
        if (d->msg_len > PL_MAX_MESSAGE)
            pl_ws_fail(d, "message above max_message");
    }
    d->in_payload = 1;
    d->pos = 0;
}

static void pl_ws_frame_end(struct pl_ws *d)
{
    d->frames++;
    d->in_payload = 0;
    d->hlen = 0;
    if (d->op == 8) {
        int code = 1005;
        if (d->ctl_len >= 2) {
            code = (d->ctl[0] << 8) | d->ctl[1];
            if (!pl_close_code_ok(code))
                pl_ws_fail(d, "close frame with an invalid code");
            struct pl_u8 u = {0, 0x80, 0xbf};
            if (pl_u8_step(&u, d->ctl + 2, d->ctl_len - 2) != 0 || u.need)
                pl_ws_fail(d, "close reason is not UTF-8");
        }
        d->closed = 1;
        d->close_code = code;
    } else if (d->op == 9) {
        memcpy(d->ping, d->ctl, d->ctl_len);
        d->ping_len = d->ctl_len;
        d->have_ping = 1;
    } else if (d->op < 8 && d->fin) {
        if (d->msg_text && d->u8.need)
            pl_ws_fail(d, "text message ends inside a UTF-8 sequence");
        d->in_msg = 0;
        d->messages++;
    }
    if (fuzz_verbose())
        fprintf(stderr, "  %s <- frame fin %u op %u len %llu%s\n", d->who, d->fin, d->op,
                (unsigned long long)d->len, d->op == 8 ? " (close)" : "");
}

static void pl_ws_feed(struct pl_ws *d, const uint8_t *p, size_t n)
{
    uint8_t tmp[4096];
    while (n > 0) {
        if (d->closed)
            pl_ws_fail(d, "bytes after a close frame");
        if (!d->in_payload) {
            d->hdr[d->hlen++] = *p++;
            n--;
            size_t need = 2;
            if (d->hlen >= 2) {
                uint8_t l7 = d->hdr[1] & 0x7f;
                need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((d->hdr[1] & 0x80) ? 4 : 0);
            }
            if (d->hlen == need) {
                pl_ws_frame_start(d);
                if (d->len == 0)
                    pl_ws_frame_end(d);
            }
            continue;
        }
        uint64_t left = d->len - d->pos;
        size_t k = n < sizeof(tmp) ? n : sizeof(tmp);
        if (k > left)
            k = (size_t)left;
        for (size_t i = 0; i < k; i++)
            tmp[i] = p[i] ^ d->mask[(d->pos + i) & 3];
        if (d->op >= 8) {
            memcpy(d->ctl + d->ctl_len, tmp, k);
            d->ctl_len += k;
        } else if (d->msg_text && pl_u8_step(&d->u8, tmp, k) != 0) {
            pl_ws_fail(d, "text message is not UTF-8");
        }
        d->pos += k;
        p += k;
        n -= k;
        if (d->pos == d->len)
            pl_ws_frame_end(d);
    }
}

/* ------------------------------------------------------------------ HTTP stream models */

/* What one upstream TCP connection received: requests (heads parse again, bodies framed as
 * announced), then frames after an upgrade request. */
struct pl_up {
    int fd;
    int eof;
    enum { UP_HEAD, UP_LENGTH, UP_CHUNKED, UP_FRAMES } mode;
    uint8_t *head;
    size_t hlen;
    uint64_t left;
    struct wsg_http_chunked ch;
    unsigned nreq;
    struct pl_ws ws;
};

static const struct wsg_http_limits pl_lim = {PL_HEAD_CAP, PL_HEAD_CAP, WSG_HTTP_MAX_HEADERS};

static void pl_up_feed(struct pl_up *u, const uint8_t *p, size_t n)
{
    while (n > 0) {
        switch (u->mode) {
        case UP_HEAD: {
            size_t take = PL_HEAD_CAP - u->hlen < n ? PL_HEAD_CAP - u->hlen : n;
            if (take == 0)
                pl_die("the upstream received a request head larger than any buffer", NULL);
            memcpy(u->head + u->hlen, p, take);
            size_t old = u->hlen;
            u->hlen += take;
            struct wsg_http_req req;
            const char *why = NULL;
            int status = 0;
            int r = wsg_http_parse_request((const char *)u->head, u->hlen, &pl_lim, &req, &why, &status);
            if (r == WSG_PARSE_PARTIAL) {
                p += take;
                n -= take;
                break;
            }
            if (r < 0) {
                fprintf(stderr, "pipeline: upstream head: %.*s\n", (int)(u->hlen < 400 ? u->hlen : 400),
                        (const char *)u->head);
                pl_die("the upstream received a request head that does not parse", why);
            }
            FUZZ_CHECK((size_t)r > old && (size_t)r <= u->hlen);
            size_t used = (size_t)r - old;
            p += used;
            n -= used;
            u->nreq++;
            if (fuzz_verbose())
                fprintf(stderr, "  upstream <- %.*s %.*s (body %d, %llu)%s\n", (int)req.method_len,
                        req.method, (int)(req.target_len < 80 ? req.target_len : 80), req.target,
                        (int)req.body, (unsigned long long)req.content_length,
                        req.upgrade_ws ? " upgrade" : "");
            u->hlen = 0;
            if (req.upgrade_ws) {
                FUZZ_CHECK(req.body == WSG_BODY_NONE ||
                           (req.body == WSG_BODY_LENGTH && req.content_length == 0));
                u->mode = UP_FRAMES;
            } else if (req.body == WSG_BODY_LENGTH && req.content_length > 0) {
                u->mode = UP_LENGTH;
                u->left = req.content_length;
            } else if (req.body == WSG_BODY_CHUNKED) {
                u->mode = UP_CHUNKED;
                memset(&u->ch, 0, sizeof(u->ch));
            } else {
                FUZZ_CHECK(req.body != WSG_BODY_EOF);
            }
            break;
        }
        case UP_LENGTH: {
            size_t k = n < u->left ? n : (size_t)u->left;
            u->left -= k;
            p += k;
            n -= k;
            if (u->left == 0)
                u->mode = UP_HEAD;
            break;
        }
        case UP_CHUNKED: {
            const char *why = NULL;
            long r = wsg_http_chunked_scan(&u->ch, p, n, &why);
            if (r < 0)
                pl_die("the upstream received a chunked body that does not scan", why);
            FUZZ_CHECK((size_t)r <= n);
            if (!u->ch.done)
                FUZZ_CHECK((size_t)r == n);
            else
                u->mode = UP_HEAD;
            p += r;
            n -= (size_t)r;
            break;
        }
        case UP_FRAMES:
            pl_ws_feed(&u->ws, p, n);
            n = 0;
            break;
        }
    }
}

/* What the client decrypted: response heads up to the first final one; frames after a 101. */
struct pl_cli_model {
    enum { CM_HEAD, CM_FRAMES, CM_IGNORE } mode;
    uint8_t *head;
    size_t hlen;
    int status; /* first final status */
    struct pl_ws ws;
};

static void pl_cli_feed(struct pl_cli_model *m, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (m->mode == CM_IGNORE)
            return;
        if (m->mode == CM_FRAMES) {
            pl_ws_feed(&m->ws, p, n);
            return;
        }
        size_t take = PL_HEAD_CAP - m->hlen < n ? PL_HEAD_CAP - m->hlen : n;
        if (take == 0)
            pl_die("the client received a response head larger than any buffer", NULL);
        memcpy(m->head + m->hlen, p, take);
        size_t old = m->hlen;
        m->hlen += take;
        struct wsg_http_resp resp;
        const char *why = NULL;
        int r = wsg_http_parse_response((const char *)m->head, m->hlen, &pl_lim, 0, &resp, &why);
        if (r == WSG_PARSE_PARTIAL) {
            p += take;
            n -= take;
            continue;
        }
        if (r < 0) {
            fprintf(stderr, "pipeline: client head: %.*s\n", (int)(m->hlen < 400 ? m->hlen : 400),
                    (const char *)m->head);
            pl_die("the client received a response head that does not parse", why);
        }
        FUZZ_CHECK((size_t)r > old && (size_t)r <= m->hlen);
        size_t used = (size_t)r - old;
        p += used;
        n -= used;
        m->hlen = 0;
        if (fuzz_verbose())
            fprintf(stderr, "  client <- HTTP %d\n", resp.status);
        if (resp.status >= 100 && resp.status < 200 && resp.status != 101)
            continue; /* interim */
        m->status = resp.status;
        m->mode = resp.status == 101 ? CM_FRAMES : CM_IGNORE;
    }
}

/* ------------------------------------------------------------------ one input */

struct pl {
    /* client */
    int cfd;
    mbedtls_ssl_context ssl;
    int ssl_init, hs_done, cdead, ceof, cwr_shut;
    struct pl_cli_model cm;
    /* upstream connections, in accept order */
    struct pl_up *up[PL_MAX_UP];
    unsigned nup;
    unsigned long accepted;
};

static struct wsg_conn *pl_conn(void)
{
    return pl_w.conns;
}

static void pl_check(const struct pl *s)
{
    WSG_UNUSED(s);
    struct wsg_conn *c = pl_conn();
    FUZZ_CHECK(__atomic_load_n(&pl_sh.live_conns, __ATOMIC_RELAXED) == pl_w.nconns);
    if (c == NULL) {
        FUZZ_CHECK(pl_w.nconns == 0);
        return;
    }
    FUZZ_CHECK(pl_w.nconns == 1 && c->next == NULL && c->prev == NULL);
    FUZZ_CHECK(c->st <= WSG_ST_CLOSING);
    const struct wsg_buf *bufs[6] = {&c->cli.in,  &c->cli.out, &c->cli_plain,
                                     &c->cli_ptx, &c->up.in,   &c->up.out};
    uint64_t sum = 0;
    for (int i = 0; i < 6; i++) {
        const struct wsg_buf *b = bufs[i];
        FUZZ_CHECK(b->cap == PL_BUFFER_SIZE);
        FUZZ_CHECK(b->len <= b->cap);
        FUZZ_CHECK(b->base != NULL || b->len == 0);
        if (b->base != NULL)
            FUZZ_CHECK((uint64_t)b->head + b->len <= b->cap);
        sum += b->len;
    }
    FUZZ_CHECK(sum <= 6ull * PL_BUFFER_SIZE);
    if (c->st == WSG_ST_WS)
        FUZZ_CHECK(c->c2u != NULL && c->u2c != NULL);
    if (c->st == WSG_ST_TLS_HANDSHAKE)
        FUZZ_CHECK(c->up.fd < 0);
}

static struct pl_up *pl_up_new(int fd)
{
    struct pl_up *u = calloc(1, sizeof(*u));
    FUZZ_CHECK(u != NULL);
    u->head = malloc(PL_HEAD_CAP);
    FUZZ_CHECK(u->head != NULL);
    u->fd = fd;
    u->ws.who = "upstream";
    u->ws.masked = 1;
    return u;
}

static void pl_up_close(struct pl_up *u, int rst)
{
    if (u->fd >= 0) {
        if (rst) {
            struct linger lg = {1, 0};
            setsockopt(u->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(u->fd);
        u->fd = -1;
    }
}

static void pl_up_free(struct pl_up *u)
{
    pl_up_close(u, 1);
    free(u->head);
    free(u);
}

/* Accepts every connection the gateway opened to the upstream. */
static void pl_accept(struct pl *s)
{
    for (;;) {
        int fd = accept4(pl_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        s->accepted++;
        if (s->nup == PL_MAX_UP) { /* keep the newest: the oldest is long finished */
            pl_up_free(s->up[0]);
            memmove(s->up, s->up + 1, (PL_MAX_UP - 1) * sizeof(s->up[0]));
            s->nup--;
        }
        s->up[s->nup++] = pl_up_new(fd);
    }
}

/* A cheap fingerprint of the connection: when it stops changing, the gateway waits for a peer. */
static uint64_t pl_sig(const struct pl *s)
{
    const struct wsg_conn *c = pl_conn();
    if (c == NULL)
        return 1 + s->accepted;
    uint64_t h = 1469598103934665603ull;
    uint64_t v[] = {(uint64_t)(uintptr_t)c,
                    c->st,
                    c->flags,
                    c->cli.rx,
                    c->cli.tx,
                    c->up.rx,
                    c->up.tx,
                    wsg_buf_len(&c->cli.in),
                    wsg_buf_len(&c->cli.out),
                    wsg_buf_len(&c->cli_plain),
                    wsg_buf_len(&c->cli_ptx),
                    wsg_buf_len(&c->up.in),
                    wsg_buf_len(&c->up.out),
                    (uint64_t)c->up.fd,
                    c->up.connecting,
                    s->accepted};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        h = (h ^ v[i]) * 1099511628211ull;
    return h;
}

/* Runs the worker's loop until the connection stops changing (or a bound). */
static void pl_settle(struct pl *s)
{
    int same = 0;
    for (int i = 0; i < 64 && same < 2; i++) {
        pl_accept(s);
        uint64_t before = pl_sig(s);
        ev_run(pl_w.loop, EVRUN_NOWAIT);
        pl_check(s);
        same = pl_sig(s) == before ? same + 1 : 0;
    }
    pl_accept(s);
}

/* ---- client BIO over the socketpair ---- */

static int pl_bio_send(void *ctx, const unsigned char *p, size_t len)
{
    int fd = *(int *)ctx;
    if (fd < 0)
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
}

static int pl_bio_recv(void *ctx, unsigned char *p, size_t len)
{
    int fd = *(int *)ctx;
    if (fd < 0)
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
    if (n >= 0)
        return (int)n; /* 0: EOF */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return MBEDTLS_ERR_SSL_WANT_READ;
    return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
}

static int pl_client_ok(const struct pl *s)
{
    return s->hs_done && !s->cdead && s->cfd >= 0;
}

static void pl_client_read(struct pl *s)
{
    static uint8_t buf[16384];
    for (int i = 0; i < 256 && pl_client_ok(s) && !s->ceof; i++) {
        int r = mbedtls_ssl_read(&s->ssl, buf, sizeof(buf));
        if (r > 0) {
            pl_cli_feed(&s->cm, buf, (size_t)r);
            continue;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
            return;
        if (r == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
            continue;
        if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == 0) {
            s->ceof = 1;
            return;
        }
        if (fuzz_verbose())
            fprintf(stderr, "  client: TLS read -0x%04x\n", (unsigned)-r);
        s->cdead = 1; /* the gateway closed without close_notify, or a TLS error */
    }
}

/* Writes plaintext through TLS, running the gateway while the socket is full. */
static void pl_client_write(struct pl *s, const uint8_t *p, size_t n)
{
    size_t off = 0;
    for (int stuck = 0; off < n && stuck < 4 && pl_client_ok(s) && !s->cwr_shut;) {
        int r = mbedtls_ssl_write(&s->ssl, p + off, n - off);
        if (r > 0) {
            off += (size_t)r;
            stuck = 0;
        } else if (r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ) {
            pl_settle(s);
            stuck++;
        } else {
            if (fuzz_verbose())
                fprintf(stderr, "  client: TLS write -0x%04x\n", (unsigned)-r);
            s->cdead = 1;
        }
    }
}

static void pl_raw_send(struct pl *s, int fd, const uint8_t *p, size_t n)
{
    size_t off = 0;
    for (int stuck = 0; fd >= 0 && off < n && stuck < 4;) {
        ssize_t r = send(fd, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            off += (size_t)r;
            stuck = 0;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            pl_settle(s);
            stuck++;
        } else {
            return;
        }
    }
}

static struct pl_up *pl_up_cur(struct pl *s)
{
    for (unsigned i = s->nup; i-- > 0;)
        if (s->up[i]->fd >= 0)
            return s->up[i];
    return NULL;
}

static void pl_up_read(struct pl *s)
{
    static uint8_t buf[16384];
    for (unsigned i = 0; i < s->nup; i++) {
        struct pl_up *u = s->up[i];
        for (int k = 0; k < 256 && u->fd >= 0 && !u->eof; k++) {
            ssize_t r = recv(u->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0) {
                pl_up_feed(u, buf, (size_t)r);
            } else if (r == 0) {
                u->eof = 1;
            } else {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    u->eof = 1;
                break;
            }
        }
    }
}

/* One frame: [b0][repeat][payload], the payload repeated (repeat + 1) times. */
static size_t pl_frame(uint8_t *out, const uint8_t *d, size_t n, int masked)
{
    uint8_t b0 = n > 0 ? d[0] : 0x81;
    size_t rep = n > 1 ? (size_t)d[1] + 1 : 1;
    const uint8_t *pay = n > 2 ? d + 2 : d;
    size_t plen = n > 2 ? n - 2 : 0;
    size_t total = plen * rep;
    if (total > PL_FRAME_MAX)
        total = PL_FRAME_MAX;
    size_t h = 0;
    out[h++] = b0;
    uint8_t m = masked ? 0x80 : 0;
    if (total < 126) {
        out[h++] = m | (uint8_t)total;
    } else if (total < 65536) {
        out[h++] = m | 126;
        out[h++] = (uint8_t)(total >> 8);
        out[h++] = (uint8_t)total;
    } else {
        out[h++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)total >> (8 * i));
    }
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    if (masked) {
        memcpy(out + h, key, 4);
        h += 4;
    }
    for (size_t i = 0; i < total; i++)
        out[h + i] = (uint8_t)(pay[plen ? i % plen : 0] ^ (masked ? key[i & 3] : 0));
    return h + total;
}

/* The clock moves s seconds for this connection: its absolute times go back by s, and its timers
 * fire when due (libev's clock itself is real time). */
static void pl_shift_timer(ev_timer *t, double secs)
{
    if (!ev_is_active(t))
        return; /* stopped, or already expired and pending */
    double left = ev_timer_remaining(pl_w.loop, t) - secs;
    ev_timer_stop(pl_w.loop, t);
    if (left <= 0) {
        ev_feed_event(pl_w.loop, t, EV_TIMER);
    } else {
        ev_timer_set(t, left, 0.);
        ev_timer_start(pl_w.loop, t);
    }
}

static void pl_advance(double secs)
{
    struct wsg_conn *c = pl_conn();
    if (c == NULL)
        return;
    c->deadline -= secs;
    c->t_start -= secs;
    c->x.t0 -= secs;
    double *abs[] = {&c->throttle_until, &c->pong_due, &c->last_cli_activity, &c->lifetime_end,
                     &c->slow_since,     &c->drain_at, &c->next_progress};
    for (size_t i = 0; i < sizeof(abs) / sizeof(abs[0]); i++)
        if (*abs[i] != 0)
            *abs[i] -= secs;
    c->b_msgs.last -= secs;
    c->b_bytes.last -= secs;
    pl_shift_timer(&c->timer, secs);
    pl_shift_timer(&c->ws_timer, secs);
}

static void pl_op(struct pl *s, unsigned op, const uint8_t *d, size_t n)
{
    static uint8_t frame[PL_FRAME_MAX + 14];
    uint8_t arg = n > 0 ? d[0] : 0;
    struct pl_up *u = pl_up_cur(s);
    if (fuzz_verbose())
        fprintf(stderr, "op %s %zu bytes (conn %s)\n", op_names[op], n,
                pl_conn() ? wsg_conn_state_names[pl_conn()->st] : "gone");
    switch (op) {
    case OP_CSEND:
        pl_client_write(s, d, n);
        break;
    case OP_USEND:
        if (u != NULL)
            pl_raw_send(s, u->fd, d, n);
        break;
    case OP_CREAD:
        pl_client_read(s);
        break;
    case OP_UREAD:
        pl_up_read(s);
        break;
    case OP_CCLOSE:
        if ((arg & 1) && pl_client_ok(s))
            mbedtls_ssl_close_notify(&s->ssl);
        if ((arg & 2) && s->cfd >= 0) {
            shutdown(s->cfd, SHUT_WR);
            s->cwr_shut = 1;
        }
        if ((arg & 4) && s->cfd >= 0) {
            close(s->cfd);
            s->cfd = -1;
        }
        break;
    case OP_UCLOSE:
        if (u == NULL)
            break;
        if (arg & 1)
            shutdown(u->fd, SHUT_WR);
        if (arg & 2) {
            pl_up_read(s); /* what it received still counts */
            pl_up_close(u, arg & 4);
        }
        break;
    case OP_TIME: {
        static const double steps[8] = {0.1, 1, 3, 10, 30, 100, 1000, 4000};
        pl_advance(steps[arg & 7]);
        break;
    }
    case OP_CFRAME:
        pl_client_write(s, frame, pl_frame(frame, d, n, 1));
        break;
    case OP_UFRAME:
        if (u != NULL)
            pl_raw_send(s, u->fd, frame, pl_frame(frame, d, n, 0));
        break;
    case OP_CPONG:
        if (s->cm.ws.have_ping) {
            uint8_t pong[2 + 125];
            pong[0] = 0x8a;
            pong[1] = 0;
            memcpy(pong + 2, s->cm.ws.ping, s->cm.ws.ping_len);
            pl_client_write(s, frame, pl_frame(frame, pong, 2 + s->cm.ws.ping_len, 1));
        }
        break;
    case OP_CRAW:
        pl_raw_send(s, s->cfd, d, n);
        break;
    case OP_DRAIN:
        if (pl_conn() != NULL)
            wsg_conn_drain(pl_conn());
        break;
    }
    pl_check(s);
    pl_settle(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pid_t loop_pid;
    if (loop_pid == 0)
        loop_pid = pl_pid;
    if (getpid() != loop_pid) { /* replay forks one child per input: the loop's backend is shared */
        ev_loop_fork(pl_w.loop);
        loop_pid = getpid();
    }

    struct pl *s = calloc(1, sizeof(*s));
    FUZZ_CHECK(s != NULL);
    s->cm.head = malloc(PL_HEAD_CAP);
    FUZZ_CHECK(s->cm.head != NULL);
    s->cm.ws.who = "client";
    s->cm.ws.masked = 0;

    int fds[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    s->cfd = fds[1];
    struct sockaddr_in peer = {
        .sin_family = AF_INET, .sin_port = htons(40000), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    wsg_conn_new(&pl_w, fds[0], (const struct sockaddr *)&peer, sizeof(peer), 0);
    pl_check(s);

    mbedtls_ssl_init(&s->ssl);
    s->ssl_init = 1;
    FUZZ_CHECK(mbedtls_ssl_setup(&s->ssl, &pl_ccfg) == 0);
    FUZZ_CHECK(mbedtls_ssl_set_hostname(&s->ssl, "localhost") == 0);
    mbedtls_ssl_set_bio(&s->ssl, &s->cfd, pl_bio_send, pl_bio_recv, NULL);
    for (int i = 0; i < 200; i++) {
        int r = mbedtls_ssl_handshake(&s->ssl);
        if (r == 0) {
            s->hs_done = 1;
            break;
        }
        if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE) {
            fprintf(stderr, "pipeline: client handshake failed: -0x%04x\n", (unsigned)-r);
            break;
        }
        ev_run(pl_w.loop, EVRUN_NOWAIT);
        pl_check(s);
    }
    FUZZ_CHECK(s->hs_done); /* nothing fuzzed has happened yet: the set-up itself is broken */
    pl_settle(s);

    size_t off = 0;
    while (size - off >= 3) {
        unsigned op = data[off] % OP_COUNT;
        size_t len = (size_t)data[off + 1] | ((size_t)data[off + 2] << 8);
        off += 3;
        if (len > size - off)
            len = size - off;
        pl_op(s, op, data + off, len);
        off += len;
    }

    /* Let everything in flight arrive, and read it. */
    for (int i = 0; i < 4; i++) {
        pl_settle(s);
        pl_client_read(s);
        pl_up_read(s);
    }
    pl_check(s);
    if (fuzz_verbose()) {
        struct wsg_conn *c = pl_conn();
        fprintf(stderr,
                "end: conn %s; client: status %d, %lu frames, close %d%s; upstream: %lu connections, "
                "%u requests, %lu frames, close %d\n",
                c ? wsg_conn_state_names[c->st] : "gone", s->cm.status, s->cm.ws.frames, s->cm.ws.close_code,
                s->ceof ? ", EOF" : "", s->accepted, s->nup ? s->up[s->nup - 1]->nreq : 0,
                s->nup ? s->up[s->nup - 1]->ws.frames : 0, s->nup ? s->up[s->nup - 1]->ws.close_code : 0);
    }

    /* Tear down: upstream sockets with a RST (no TIME_WAIT), then the connection, then the client. */
    for (unsigned i = 0; i < s->nup; i++)
        pl_up_free(s->up[i]);
    while (pl_conn() != NULL)
        wsg_conn_abort(pl_conn());
    for (int fd; (fd = accept4(pl_lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0;) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    if (s->ssl_init)
        mbedtls_ssl_free(&s->ssl);
    if (s->cfd >= 0)
        close(s->cfd);
    FUZZ_CHECK(pl_w.nconns == 0 && __atomic_load_n(&pl_sh.live_conns, __ATOMIC_RELAXED) == 0);
    free(s->cm.head);
    free(s);
    return 0;
}
