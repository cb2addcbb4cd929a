/* loadgen: a WebSocket load generator for benchmarks, TLS by OpenSSL (not the code under test).
 *
 *   loadgen -u HOST:PORT[/PATH] [-c CONNS] [-s MSGSIZE] [-d SECONDS] [--tls|--plain]
 *           [--warmup SECONDS] [--rate MSGS_PER_S] [--cipher TLS13_SUITE] [--idle N]
 *           [--concurrency N] [--sni NAME] [--label TEXT] [--origin URL|none] [--subprotocol NAME]
 *           [--tls12] [--deflate]
 *   loadgen -u HOST:PORT --handshakes N [--resume] [--tls12] [--concurrency C] [-d S] [--warmup S]
 *
 * Echo mode (default): opens CONNS connections (TLS 1.3 by default, ALPN http/1.1, SNI "localhost",
 * no certificate verification), upgrades each to WebSocket, then each connection runs a closed loop:
 * send one masked binary message of MSGSIZE bytes (one frame), wait for the whole echo (verified
 * byte for byte), send the next. --rate R paces the sum of all connections to R messages/s (still
 * at most one in flight per connection; latency is then counted from the scheduled send time, so a
 * stalled server is not hidden by the generator waiting for it). After --warmup seconds (default 1)
 * it counts for -d seconds (default 5): messages/s, payload bytes/s, latency histogram (1% buckets)
 * with p50/p99/p99.9/max. Output: one JSON line on stdout, one human line on stderr.
 *
 * --deflate (echo mode): offers permessage-deflate (RFC 7692) as Chromium does ("permessage-deflate;
 * client_max_window_bits") and requires it in the 101. Each message is then a JSON-like text of
 * MSGSIZE bytes (a chat line: seq, user, room, timestamp and words drawn per message), different
 * every time, compressed by the connection's own deflate stream with context takeover (zlib's
 * default level as browsers use, or --deflate-level 0-9; raw, sync flush, the 00 00 ff ff tail removed) and
 * sent as one masked text frame with RSV1; its echo must come back compressed (RSV1) and inflate, through the
 * connection's own inflate stream, to exactly the text sent. The JSON line adds the compressed bytes per
 * message.
 *
 * Idle mode (--idle N): opens N connections, completes TLS and the upgrade, sends nothing more,
 * prints "idle K ready" (K = connections up) on stdout, then holds them until SIGTERM, SIGINT or EOF
 * on stdin (when stdin is a pipe or tty); then prints a JSON line with what happened meanwhile.
 *
 * Handshake mode (--handshakes N): a closed loop of --concurrency (default 64) connections, each
 * TCP connect + TLS handshake + close_notify + close, then the next; no upgrade, no data. Full by
 * default (no session offered); --resume offers the ticket of one priming connection each time and
 * checks SSL_session_reused (a miss is counted and makes the exit status 1). Counts the handshakes
 * done after --warmup for -d seconds or until N, whichever comes first: handshakes/s and the
 * connect-to-done latency. --tls12 caps the protocol at TLS 1.2 (any mode).
 *
 * Upgrade headers: "Origin: https://<sni>" unless --origin URL (or --origin none: no Origin);
 * --subprotocol NAME adds "Sec-WebSocket-Protocol: NAME".
 *
 * Connections to a 127.0.0.0/8 address are bound to source addresses 127.0.0.1..127.0.0.250 in turn
 * (IP_BIND_ADDRESS_NO_PORT), so many connections do not run out of ephemeral ports.
 *
 * Build: gcc -O2 -o loadgen loadgen.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <zlib.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { S_IDLE_SLOT, S_CONNECTING, S_TLS, S_WS_SEND, S_WS_RECV, S_OPEN, S_DEAD };

struct conn {
    int fd, idx, state;
    SSL *ssl;
    uint32_t ev;           /* current epoll interest */
    int want_in, want_out; /* what the last I/O attempt blocked on */
    /* upgrade */
    char hs[2048];
    int hs_len;
    /* sending */
    int inflight;   /* a message is out and its echo not complete */
    size_t out_off; /* bytes of the current frame written; == frame_len when fully sent */
    int waiting_timer;
    int skip_read; /* a new message just went out: its echo cannot be here yet, wait for epoll */
    uint64_t t_send, next_send;
    /* receiving: streaming frame parser */
    unsigned char hdr[14];
    int hdr_len, hdr_need;
    int in_payload;
    uint64_t rx_left;
    uint64_t rx_msg_off;
    unsigned rx_b0;
    /* the frame in flight: g_frame, or with --deflate this connection's own */
    unsigned char *frame;
    size_t frame_len;
    /* --deflate: the connection's compressor and decompressor (context takeover both ways), the
     * text in flight, the compressed echo gathered so far */
    z_stream *zd, *zi;
    unsigned char *plain, *zrx;
    size_t zrx_len;
    uint64_t seq;
};

/* ---------------------------------------------------------------- options and globals */
static const char *o_url;
static int o_conns = 64, o_size = 64, o_tls = 1, o_idle = 0, o_concurrency = 64;
static double o_dur = 5, o_warmup = 1, o_rate = 0;
static const char *o_cipher, *o_sni = "localhost", *o_label = "";
static const char *o_origin;      /* NULL: "https://<sni>"; "" (--origin none): no Origin header */
static const char *o_subprotocol; /* Sec-WebSocket-Protocol offered, or none */
static int o_handshakes, o_resume, o_tls12, o_deflate, o_zlevel = Z_DEFAULT_COMPRESSION;
static char g_host[256] = "127.0.0.1", g_path[512] = "/";
static int g_port;
static struct sockaddr_in g_dst;
static int g_bind_loopback;

static SSL_CTX *g_ctx;
static int g_ep, g_sigfd = -1, g_timerfd = -1;
static struct conn *g_c;
static int g_nconn;
static unsigned char *g_frame, *g_expect;
static size_t g_frame_len;
static unsigned char g_rbuf[256 * 1024];

/* counters */
static int n_started, n_setup_inflight, n_ready, n_failed, n_closed_open;
static uint64_t n_msgs, n_bytes, n_msgs_total, n_verify_err, n_ctrl_in, n_wire;
static int measuring, stopping;
static char g_proto[32] = "", g_cipher_name[64] = "", g_first_err[256] = "";
static uint64_t g_t_measure0;

static void note_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_err(const char *fmt, ...)
{
    if (g_first_err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_first_err, sizeof(g_first_err), fmt, ap);
    va_end(ap);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- histogram (ns, ~0.8% buckets) */
#define H_SUB 128
#define H_BUCKETS (H_SUB * 40)
static uint64_t g_hist[H_BUCKETS];
static uint64_t g_hist_n, g_hist_max;

static int h_index(uint64_t v)
{
    if (v < H_SUB)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= 7 */
    int shift = e - 7;
    int idx = H_SUB + shift * H_SUB + (int)((v >> shift) - H_SUB);
    return idx < H_BUCKETS ? idx : H_BUCKETS - 1;
}

static double h_value(int idx) /* middle of the bucket */
{
    if (idx < H_SUB)
        return idx;
    int shift = (idx - H_SUB) / H_SUB;
    uint64_t m = H_SUB + (uint64_t)((idx - H_SUB) % H_SUB);
    return (double)(m << shift) + (double)(1ull << shift) / 2.0;
}

static void h_add(uint64_t v)
{
    g_hist[h_index(v)]++;
    g_hist_n++;
    if (v > g_hist_max)
        g_hist_max = v;
}

static double h_pct(double p)
{
    if (!g_hist_n)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)g_hist_n);
    if (rank < 1)
        rank = 1;
    uint64_t acc = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        acc += g_hist[i];
        if (acc >= rank)
            return h_value(i);
    }
    return (double)g_hist_max;
}

/* ---------------------------------------------------------------- epoll helpers */
static void set_interest(struct conn *c, uint32_t ev)
{
    if (c->fd < 0 || ev == c->ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e);
    c->ev = ev;
}

static void start_next_connections(void);

static void conn_kill(struct conn *c, const char *why)
{
    int was_open = c->state == S_OPEN;
    if (!was_open && c->state != S_DEAD) {
        n_failed++;
        n_setup_inflight--;
        note_err("conn %d setup failed: %s", c->idx, why);
    } else if (was_open) {
        n_closed_open++;
        note_err("conn %d closed while open: %s", c->idx, why);
    }
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = S_DEAD;
    if (!was_open)
        start_next_connections();
}

static const char *ssl_errstr(void)
{
    static char b[160];
    unsigned long e = ERR_get_error();
    if (!e)
        return errno ? strerror(errno) : "eof";
    ERR_error_string_n(e, b, sizeof(b));
    ERR_clear_error();
    return b;
}

/* I/O over TLS or plain: >0 bytes, 0 would block (want_in/want_out set), -1 error/eof. */
static int io_read(struct conn *c, void *b, int n)
{
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, b, n);
        if (r > 0)
            return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            c->want_in = 1;
            return 0;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            c->want_out = 1;
            return 0;
        }
        return -1;
    }
    ssize_t r = recv(c->fd, b, (size_t)n, 0);
    if (r > 0)
        return (int)r;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->want_in = 1;
        return 0;
    }
    if (r == 0)
        errno = 0;
    return -1;
}

static int io_write(struct conn *c, const void *b, int n)
{
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_write(c->ssl, b, n);
        if (r > 0)
            return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) {
            c->want_out = 1;
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ) {
            c->want_in = 1;
            return 0;
        }
        return -1;
    }
    ssize_t r = send(c->fd, b, (size_t)n, MSG_NOSIGNAL);
    if (r > 0)
        return (int)r;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->want_out = 1;
        return 0;
    }
    return -1;
}

/* ---------------------------------------------------------------- connection setup */
static void conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = S_CONNECTING;
    n_setup_inflight++;
    if (c->fd < 0) {
        conn_kill(c, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (g_bind_loopback) {
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(c->idx % 250));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            conn_kill(c, strerror(errno));
            return;
        }
    }
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    c->ev = EPOLLOUT;
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &e) < 0) {
        conn_kill(c, strerror(errno));
        return;
    }
    if (connect(c->fd, (struct sockaddr *)&g_dst, sizeof(g_dst)) < 0 && errno != EINPROGRESS) {
        conn_kill(c, strerror(errno));
        return;
    }
}

static void start_next_connections(void)
{
    while (!stopping && n_started < g_nconn && n_setup_inflight < o_concurrency) {
        struct conn *c = &g_c[n_started++];
        conn_open(c);
    }
}

static void build_upgrade(struct conn *c)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[16];
    for (int i = 0; i < 16; i++)
        raw[i] = (unsigned char)(rand() & 0xff);
    char key[25];
    int k = 0;
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = ((uint32_t)raw[i] << 16) | ((uint32_t)raw[i + 1] << 8) | raw[i + 2];
        key[k++] = b64[(v >> 18) & 63];
        key[k++] = b64[(v >> 12) & 63];
        key[k++] = b64[(v >> 6) & 63];
        key[k++] = b64[v & 63];
    }
    uint32_t v = (uint32_t)raw[15] << 16;
    key[k++] = b64[(v >> 18) & 63];
    key[k++] = b64[(v >> 12) & 63];
    key[k++] = '=';
    key[k++] = '=';
    key[k] = 0;
    char origin[300] = "", proto[300] = "";
    if (!o_origin)
        snprintf(origin, sizeof(origin), "Origin: https://%s\r\n", o_sni);
    else if (o_origin[0])
        snprintf(origin, sizeof(origin), "Origin: %s\r\n", o_origin);
    if (o_subprotocol)
        snprintf(proto, sizeof(proto), "Sec-WebSocket-Protocol: %s\r\n", o_subprotocol);
    const char *ext =
        o_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "";
    c->hs_len = snprintf(c->hs, sizeof(c->hs),
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                         "%s%s%sUser-Agent: wsgate-bench-loadgen\r\n\r\n",
                         g_path, o_sni, key, origin, proto, ext);
    c->out_off = 0;
}

static void send_message(struct conn *c, uint64_t t);
static void drive(struct conn *c);

/* ---------------------------------------------------------------- --deflate */
static unsigned char *g_zbuf; /* compressed message, before framing; inflated echo */
static size_t g_zcap;

/* A JSON-like chat line of exactly n bytes (n >= 128), different for every (connection, seq). */
static void make_text(struct conn *c, unsigned char *out, size_t n)
{
    static const char *const words[32] = {"hello", "world", "the",   "meeting", "is",     "at",     "noon",
                                          "see",   "you",   "there", "ok",      "thanks", "deploy", "done",
                                          "build", "green", "lunch", "?",       "coffee", "later",  "sure",
                                          "ship",  "it",    "now",   "review",  "please", "merged", "tests",
                                          "pass",  "again", "why",   "no"};
    uint64_t x = (c->seq + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(c->idx + 1) * 0xbf58476d1ce4e5b9ull;
    char *o = (char *)out;
    size_t k = (size_t)snprintf(o, n,
                                "{\"seq\":%llu,\"conn\":%d,\"user\":\"user%llu\",\"room\":\"lobby\","
                                "\"ts\":%llu,\"text\":\"",
                                (unsigned long long)c->seq, c->idx, (unsigned long long)(x % 97),
                                (unsigned long long)(1700000000000ull + c->seq * 37));
    while (k + 2 < n) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const char *w = words[x & 31];
        size_t wl = strlen(w);
        for (size_t i = 0; i <= wl && k + 2 < n; i++)
            o[k++] = i < wl ? w[i] : ' ';
    }
    o[n - 2] = '"';
    o[n - 1] = '}';
}

static int deflate_setup(struct conn *c)
{
    c->zd = calloc(1, sizeof(z_stream));
    c->zi = calloc(1, sizeof(z_stream));
    c->plain = malloc((size_t)o_size);
    c->zrx = malloc(g_zcap);
    c->frame = malloc(g_zcap + 14);
    if (!c->zd || !c->zi || !c->plain || !c->zrx || !c->frame)
        return -1;
    if (deflateInit2(c->zd, o_zlevel, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK ||
        inflateInit2(c->zi, -15) != Z_OK)
        return -1;
    return 0;
}

/* The next message of c: a new text, compressed, framed (text, RSV1, masked) into c->frame. */
static int deflate_next(struct conn *c)
{
    c->seq++;
    make_text(c, c->plain, (size_t)o_size);
    c->zd->next_in = c->plain;
    c->zd->avail_in = (uInt)o_size;
    c->zd->next_out = g_zbuf;
    c->zd->avail_out = (uInt)g_zcap;
    if (deflate(c->zd, Z_SYNC_FLUSH) != Z_OK || c->zd->avail_in != 0 || c->zd->avail_out == 0)
        return -1;
    size_t zn = g_zcap - c->zd->avail_out;
    if (zn < 4 || memcmp(g_zbuf + zn - 4, "\0\0\xff\xff", 4) != 0)
        return -1;
    zn -= 4; /* RFC 7692 §7.2.1 */
    size_t h = 0;
    c->frame[h++] = 0xc1; /* FIN, RSV1, text */
    if (zn < 126) {
        c->frame[h++] = (unsigned char)(0x80 | zn);
    } else {
        c->frame[h++] = 0x80 | 126; /* g_zcap < 65536 */
        c->frame[h++] = (unsigned char)(zn >> 8);
        c->frame[h++] = (unsigned char)zn;
    }
    unsigned char mask[4];
    for (int i = 0; i < 4; i++)
        mask[i] = (unsigned char)(rand() & 0xff);
    memcpy(c->frame + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < zn; i++)
        c->frame[h + i] = g_zbuf[i] ^ mask[i & 3];
    c->frame_len = h + zn;
    if (measuring)
        n_wire += zn;
    return 0;
}

/* The whole compressed echo is in c->zrx: inflate it and compare with the text sent. */
static int deflate_check(struct conn *c)
{
    memcpy(c->zrx + c->zrx_len, "\0\0\xff\xff", 4);
    c->zi->next_in = c->zrx;
    c->zi->avail_in = (uInt)(c->zrx_len + 4);
    c->zi->next_out = g_zbuf;
    c->zi->avail_out = (uInt)g_zcap;
    int r = inflate(c->zi, Z_SYNC_FLUSH);
    size_t got = g_zcap - c->zi->avail_out;
    c->zrx_len = 0;
    if ((r != Z_OK && r != Z_BUF_ERROR) || c->zi->avail_in != 0 || got != (size_t)o_size ||
        memcmp(g_zbuf, c->plain, got) != 0) {
        n_verify_err++;
        note_err("conn %d: the compressed echo inflates to %zu bytes (zlib %d), not the %d sent", c->idx, got,
                 r, o_size);
        return -1;
    }
    return 0;
}

static void became_open(struct conn *c)
{
    c->state = S_OPEN;
    n_setup_inflight--;
    n_ready++;
    if (!g_proto[0] && c->ssl) {
        snprintf(g_proto, sizeof(g_proto), "%s", SSL_get_version(c->ssl));
        snprintf(g_cipher_name, sizeof(g_cipher_name), "%s", SSL_get_cipher_name(c->ssl));
    }
    c->hdr_len = 0;
    c->hdr_need = 2;
    c->in_payload = 0;
    if (!o_deflate) {
        c->frame = g_frame;
        c->frame_len = g_frame_len;
    } else if (!c->zd && deflate_setup(c) < 0) {
        fprintf(stderr, "loadgen: out of memory for deflate\n");
        exit(2);
    }
    c->out_off = c->frame_len;
    start_next_connections();
}

/* ---------------------------------------------------------------- message loop */
static void send_message(struct conn *c, uint64_t t)
{
    if (o_deflate && deflate_next(c) < 0) {
        fprintf(stderr, "loadgen: deflate failed\n");
        exit(2);
    }
    c->inflight = 1;
    c->out_off = 0;
    c->t_send = t;
}

static void message_done(struct conn *c)
{
    uint64_t t = now_ns();
    c->inflight = 0;
    n_msgs_total++;
    if (measuring) {
        n_msgs++;
        n_bytes += (uint64_t)o_size;
        h_add(t - c->t_send);
    }
    if (stopping)
        return;
    if (o_rate > 0) {
        double interval = (double)g_nconn / o_rate * 1e9;
        c->next_send += (uint64_t)interval;
        if (c->next_send <= t) {
            send_message(c, c->next_send);
        } else {
            c->waiting_timer = 1;
        }
    } else {
        send_message(c, t);
    }
    c->skip_read = 1;
}

/* Feeds received bytes to the frame parser. Returns -1 on protocol error. */
static int on_bytes(struct conn *c, const unsigned char *d, size_t n)
{
    while (n > 0) {
        if (!c->in_payload) {
            while (n > 0 && c->hdr_len < c->hdr_need) {
                c->hdr[c->hdr_len++] = *d++;
                n--;
                if (c->hdr_len == 2) {
                    unsigned l = c->hdr[1] & 127;
                    c->hdr_need = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0) + ((c->hdr[1] & 0x80) ? 4 : 0);
                }
            }
            if (c->hdr_len < c->hdr_need)
                return 0;
            uint64_t l = c->hdr[1] & 127;
            if (l == 126)
                l = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            else if (l == 127) {
                l = 0;
                for (int i = 0; i < 8; i++)
                    l = (l << 8) | c->hdr[2 + i];
            }
            if (c->hdr[1] & 0x80) {
                note_err("conn %d: masked frame from server", c->idx);
                return -1;
            }
            c->rx_b0 = c->hdr[0];
            c->rx_left = l;
            c->in_payload = 1;
            c->hdr_len = 0;
            c->hdr_need = 2;
            unsigned op = c->rx_b0 & 15;
            if (op == 8) {
                note_err("conn %d: close frame from server", c->idx);
                return -1;
            }
            if ((op == 1 || op == 2 || op == 0) && !c->inflight) {
                note_err("conn %d: unsolicited data frame", c->idx);
                return -1;
            }
            if (op == 1 || op == 2)
                c->rx_msg_off = 0;
            if (o_deflate && (op == 1 || op == 2) && !(c->rx_b0 & 0x40)) {
                n_verify_err++;
                note_err("conn %d: an echo without RSV1 (not compressed)", c->idx);
                return -1;
            }
            if (op >= 8)
                n_ctrl_in++;
        }
        size_t take = n < c->rx_left ? n : (size_t)c->rx_left;
        unsigned op = c->rx_b0 & 15;
        if (op < 8 && take && o_deflate) {
            if (c->zrx_len + take + 4 > g_zcap) {
                n_verify_err++;
                note_err("conn %d: compressed echo longer than %zu bytes", c->idx, g_zcap);
                return -1;
            }
            memcpy(c->zrx + c->zrx_len, d, take);
            c->zrx_len += take;
            c->rx_msg_off += take;
        } else if (op < 8 && take) {
            if (c->rx_msg_off + take > (uint64_t)o_size || memcmp(d, g_expect + c->rx_msg_off, take) != 0) {
                n_verify_err++;
                note_err("conn %d: echoed payload differs at offset %llu", c->idx,
                         (unsigned long long)c->rx_msg_off);
                return -1;
            }
            c->rx_msg_off += take;
        }
        d += take;
        n -= take;
        c->rx_left -= take;
        if (c->rx_left == 0) {
            c->in_payload = 0;
            if (op < 8 && (c->rx_b0 & 0x80) && o_deflate) {
                if (deflate_check(c) < 0)
                    return -1;
                message_done(c);
            } else if (op < 8 && (c->rx_b0 & 0x80)) {
                if (c->rx_msg_off != (uint64_t)o_size) {
                    n_verify_err++;
                    note_err("conn %d: echo of %llu bytes, sent %d", c->idx,
                             (unsigned long long)c->rx_msg_off, o_size);
                    return -1;
                }
                message_done(c);
            }
        }
    }
    return 0;
}

static void drive(struct conn *c)
{
    /* Loops until nothing moves: with read_ahead, OpenSSL may hold decrypted records that epoll
     * cannot report, so leaving early could stall the connection. */
    for (;;) {
        c->want_in = c->want_out = 0;
        switch (c->state) {
        case S_CONNECTING: {
            int err = 0;
            socklen_t l = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) {
                conn_kill(c, strerror(err));
                return;
            }
            struct sockaddr_in a;
            l = sizeof(a);
            if (getpeername(c->fd, (struct sockaddr *)&a, &l) < 0) { /* not connected yet */
                set_interest(c, EPOLLOUT);
                return;
            }
            if (o_tls) {
                c->ssl = SSL_new(g_ctx);
                SSL_set_fd(c->ssl, c->fd);
                SSL_set_tlsext_host_name(c->ssl, o_sni);
                SSL_set_connect_state(c->ssl);
                c->state = S_TLS;
            } else {
                build_upgrade(c);
                c->state = S_WS_SEND;
            }
            continue;
        }
        case S_TLS: {
            ERR_clear_error();
            int r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                build_upgrade(c);
                c->state = S_WS_SEND;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                set_interest(c, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE)
                set_interest(c, EPOLLOUT);
            else
                conn_kill(c, ssl_errstr());
            return;
        }
        case S_WS_SEND: {
            int r = io_write(c, c->hs + c->out_off, c->hs_len - (int)c->out_off);
            if (r < 0) {
                conn_kill(c, "write upgrade");
                return;
            }
            if (r == 0)
                break;
            c->out_off += (size_t)r;
            if ((int)c->out_off == c->hs_len) {
                c->state = S_WS_RECV;
                c->hs_len = 0;
            }
            continue;
        }
        case S_WS_RECV: {
            int r = io_read(c, c->hs + c->hs_len, (int)sizeof(c->hs) - 1 - c->hs_len);
            if (r < 0) {
                conn_kill(c, "eof before 101");
                return;
            }
            if (r == 0)
                break;
            c->hs_len += r;
            c->hs[c->hs_len] = 0;
            char *e = strstr(c->hs, "\r\n\r\n");
            if (!e) {
                if (c->hs_len >= (int)sizeof(c->hs) - 1) {
                    conn_kill(c, "response head too long");
                    return;
                }
                continue;
            }
            if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
                char *eol = strstr(c->hs, "\r\n");
                *eol = 0;
                char why[160];
                snprintf(why, sizeof(why), "upgrade refused: %.120s", c->hs);
                conn_kill(c, why);
                return;
            }
            if (o_deflate && !strcasestr(c->hs, "\r\nSec-WebSocket-Extensions: permessage-deflate")) {
                conn_kill(c, "permessage-deflate not negotiated");
                return;
            }
            size_t extra = (size_t)(c->hs + c->hs_len - (e + 4));
            unsigned char tmp[2048];
            memcpy(tmp, e + 4, extra);
            became_open(c);
            if (extra && on_bytes(c, tmp, extra) < 0) {
                conn_kill(c, "bad frame");
                return;
            }
            if (!o_idle && !stopping) {
                c->next_send = now_ns();
                send_message(c, c->next_send);
            }
            continue;
        }
        case S_OPEN: {
            int progressed = 0;
            if (c->inflight && c->out_off < c->frame_len) {
                int r = io_write(c, c->frame + c->out_off, (int)(c->frame_len - c->out_off));
                if (r < 0) {
                    conn_kill(c, "write failed");
                    return;
                }
                c->out_off += (size_t)r;
                progressed |= r > 0;
            }
            if (c->skip_read) { /* saves one read() that would return EAGAIN per message */
                c->skip_read = 0;
                if (!(c->ssl && SSL_has_pending(c->ssl)) && (!c->inflight || c->out_off == c->frame_len))
                    break;
            }
            int r = io_read(c, g_rbuf, (int)sizeof(g_rbuf));
            if (r < 0) {
                conn_kill(c, c->ssl ? ssl_errstr() : (errno ? strerror(errno) : "eof"));
                return;
            }
            if (r > 0) {
                if (on_bytes(c, g_rbuf, (size_t)r) < 0) {
                    conn_kill(c, "bad frame");
                    return;
                }
                progressed = 1;
            }
            if (progressed)
                continue;
            break;
        }
        default:
            return;
        }
        break;
    }
    if (c->state == S_DEAD || c->fd < 0)
        return;
    uint32_t ev = 0;
    if (c->state == S_OPEN) {
        ev = EPOLLIN;
        if ((c->inflight && c->out_off < c->frame_len && !c->want_in) || c->want_out)
            ev |= EPOLLOUT;
    } else {
        ev = (c->want_in ? EPOLLIN : 0) | (c->want_out ? EPOLLOUT : 0);
        if (!ev)
            ev = EPOLLIN;
    }
    set_interest(c, ev);
}

/* ---------------------------------------------------------------- timers (--rate) */
static void arm_timer(void)
{
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < g_nconn; i++)
        if (g_c[i].state == S_OPEN && g_c[i].waiting_timer && g_c[i].next_send < next)
            next = g_c[i].next_send;
    struct itimerspec its = {0};
    if (next != UINT64_MAX) {
        if (next == 0)
            next = 1;
        its.it_value.tv_sec = (time_t)(next / 1000000000ull);
        its.it_value.tv_nsec = (long)(next % 1000000000ull);
    }
    timerfd_settime(g_timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void fire_timers(void)
{
    uint64_t t = now_ns();
    for (int i = 0; i < g_nconn; i++) {
        struct conn *c = &g_c[i];
        if (c->state == S_OPEN && c->waiting_timer && c->next_send <= t) {
            c->waiting_timer = 0;
            send_message(c, c->next_send);
            drive(c);
        }
    }
}

/* ---------------------------------------------------------------- handshake mode (--handshakes N) */
/* Closed loop over --concurrency slots (-c): TCP connect, TLS handshake, close_notify, close, again.
 * Nothing else is sent (no upgrade). Full: a fresh SSL with no session each time. --resume: every
 * handshake offers the session (ticket) from one priming connection made first; each one is checked
 * with SSL_session_reused. Counts handshakes completed after --warmup for -d seconds or until N,
 * whichever comes first; latency = connect() to handshake done. */
enum { HS_FREE, HS_CONNECTING, HS_TLS };
struct hslot {
    int fd, state;
    SSL *ssl;
    uint64_t t0;
};
static SSL_SESSION *g_sess;
static unsigned g_src_next;

static int hs_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    if (g_sess)
        return 0; /* keep the first one only */
    g_sess = sess;
    return 1; /* we keep the reference */
}

static int hs_prime(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&g_dst, sizeof(g_dst)) < 0) {
        note_err("priming connect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    SSL *ssl = SSL_new(g_ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, o_sni);
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
        note_err("priming handshake: %s", ssl_errstr());
        SSL_free(ssl);
        close(fd);
        return -1;
    }
    snprintf(g_proto, sizeof(g_proto), "%s", SSL_get_version(ssl));
    snprintf(g_cipher_name, sizeof(g_cipher_name), "%s", SSL_get_cipher_name(ssl));
    /* TLS 1.3 tickets come after the handshake: read (nothing else arrives) until one is there */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uint64_t deadline = now_ns() + 3000000000ull;
    while (!g_sess && now_ns() < deadline) {
        char b[256];
        ERR_clear_error();
        int r = SSL_read(ssl, b, sizeof(b));
        if (r <= 0) {
            int e = SSL_get_error(ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                break;
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            poll(&pf, 1, 50);
        }
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    if (!g_sess) {
        note_err("priming connection got no session ticket within 3 s");
        return -1;
    }
    return 0;
}

static int run_handshakes(void)
{
    int nslots = o_concurrency;
    struct hslot *sl = calloc((size_t)nslots, sizeof(*sl));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t n_done = 0, n_counted = 0, n_reused = 0, n_not_reused = 0, n_fail = 0;
    if (o_resume && hs_prime() != 0) {
        printf("{\"mode\":\"handshake\",\"label\":\"%s\",\"resume\":true,\"handshakes\":0,\"handshakes_per_"
               "s\":0,"
               "\"failed\":1,\"first_error\":\"%s\"}\n",
               o_label, g_first_err);
        fprintf(stderr, "loadgen %s: %s\n", o_label, g_first_err);
        return 1;
    }
    uint64_t t0 = now_ns(), tm0 = t0 + (uint64_t)(o_warmup * 1e9), tm_end = tm0 + (uint64_t)(o_dur * 1e9);
    int measuring_hs = 0;
    uint64_t t_meas_start = tm0;
    for (int i = 0; i < nslots; i++)
        sl[i].fd = -1;

        /* (re)start a slot: nonblocking connect from the next loopback source address */
#define HS_START(s)                                                                                          \
    do {                                                                                                     \
        (s)->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);                            \
        (s)->state = HS_CONNECTING;                                                                          \
        (s)->t0 = now_ns();                                                                                  \
        int one_ = 1;                                                                                        \
        setsockopt((s)->fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof(one_));                                  \
        if (g_bind_loopback) {                                                                               \
            setsockopt((s)->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one_, sizeof(one_));                   \
            struct sockaddr_in src_ = {.sin_family = AF_INET};                                               \
            src_.sin_addr.s_addr = htonl(0x7f000001u + (g_src_next++ % 250));                                \
            bind((s)->fd, (struct sockaddr *)&src_, sizeof(src_));                                           \
        }                                                                                                    \
        struct epoll_event e_ = {.events = EPOLLOUT, .data.ptr = (s)};                                       \
        epoll_ctl(ep, EPOLL_CTL_ADD, (s)->fd, &e_);                                                          \
        if (connect((s)->fd, (struct sockaddr *)&g_dst, sizeof(g_dst)) < 0 && errno != EINPROGRESS) {        \
            n_fail++;                                                                                        \
            note_err("connect: %s", strerror(errno));                                                        \
        }                                                                                                    \
    } while (0)

    for (int i = 0; i < nslots; i++)
        HS_START(&sl[i]);
    struct epoll_event evs[256];
    int got_signal = 0;
    while (!got_signal) {
        uint64_t t = now_ns();
        if (!measuring_hs && t >= tm0) {
            measuring_hs = 1;
            t_meas_start = t;
        }
        if (t >= tm_end || (o_handshakes > 0 && n_counted >= (uint64_t)o_handshakes))
            break;
        if (n_fail > 100 && n_fail > n_done) /* the server is refusing: do not spin */
            break;
        int n = epoll_wait(ep, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            struct hslot *s = evs[i].data.ptr;
            if (s == NULL) {
                got_signal = 1;
                continue;
            }
            int failed = 0, done = 0;
            if (s->state == HS_CONNECTING) {
                int err = 0;
                socklen_t l = sizeof(err);
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) {
                    note_err("connect: %s", strerror(err));
                    failed = 1;
                } else {
                    s->ssl = SSL_new(g_ctx);
                    SSL_set_fd(s->ssl, s->fd);
                    SSL_set_tlsext_host_name(s->ssl, o_sni);
                    if (o_resume) {
                        /* a copy each time: OpenSSL marks a TLS 1.3 session object it has resumed
                         * with as not resumable (single use), as if -sess_in read it afresh */
                        SSL_SESSION *cp = SSL_SESSION_dup(g_sess);
                        SSL_set_session(s->ssl, cp);
                        SSL_SESSION_free(cp);
                    }
                    SSL_set_connect_state(s->ssl);
                    s->state = HS_TLS;
                }
            }
            if (!failed && s->state == HS_TLS) {
                ERR_clear_error();
                int r = SSL_do_handshake(s->ssl);
                if (r == 1) {
                    done = 1;
                } else {
                    int e = SSL_get_error(s->ssl, r);
                    struct epoll_event ev = {.data.ptr = s};
                    if (e == SSL_ERROR_WANT_READ)
                        ev.events = EPOLLIN;
                    else if (e == SSL_ERROR_WANT_WRITE)
                        ev.events = EPOLLOUT;
                    else {
                        note_err("handshake: %s", ssl_errstr());
                        failed = 1;
                    }
                    if (!failed)
                        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                }
            }
            if (!failed && !done)
                continue;
            uint64_t t1 = now_ns();
            if (done) {
                n_done++;
                if (!g_proto[0]) {
                    snprintf(g_proto, sizeof(g_proto), "%s", SSL_get_version(s->ssl));
                    snprintf(g_cipher_name, sizeof(g_cipher_name), "%s", SSL_get_cipher_name(s->ssl));
                }
                if (measuring_hs && t1 < tm_end) {
                    n_counted++;
                    h_add(t1 - s->t0);
                    if (o_resume) {
                        if (SSL_session_reused(s->ssl))
                            n_reused++;
                        else
                            n_not_reused++;
                    }
                }
                SSL_set_quiet_shutdown(s->ssl, 0);
                SSL_shutdown(s->ssl); /* one close_notify, not waited for */
            } else {
                n_fail++;
            }
            if (s->ssl)
                SSL_free(s->ssl);
            s->ssl = NULL;
            close(s->fd);
            s->fd = -1;
            s->state = HS_FREE;
            HS_START(s);
        }
    }
#undef HS_START
    uint64_t t_end = now_ns();
    for (int i = 0; i < nslots; i++) {
        if (sl[i].ssl)
            SSL_free(sl[i].ssl);
        if (sl[i].fd >= 0)
            close(sl[i].fd);
    }
    double secs = measuring_hs ? (double)(t_end - t_meas_start) / 1e9 : 0;
    double hps = secs > 0 ? (double)n_counted / secs : 0;
    double p50 = h_pct(50) / 1e3, p99 = h_pct(99) / 1e3;
    printf(
        "{\"mode\":\"handshake\",\"label\":\"%s\",\"proto\":\"%s\",\"cipher\":\"%s\",\"resume\":%s,"
        "\"concurrency\":%d,\"handshakes\":%llu,\"seconds\":%.3f,\"handshakes_per_s\":%.1f,\"reused\":%llu,"
        "\"not_reused\":%llu,\"failed\":%llu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"first_error\":\"%s\"}\n",
        o_label, g_proto, g_cipher_name, o_resume ? "true" : "false", nslots, (unsigned long long)n_counted,
        secs, hps, (unsigned long long)n_reused, (unsigned long long)n_not_reused, (unsigned long long)n_fail,
        p50, p99, g_first_err);
    fflush(stdout);
    fprintf(
        stderr,
        "loadgen %s: %s %s %s handshakes, %d in flight: %llu in %.2fs = %.0f/s (p50 %.0f us, p99 %.0f us); "
        "%llu failed%s%s%s\n",
        o_label, g_proto, g_cipher_name, o_resume ? "resumed" : "full", nslots, (unsigned long long)n_counted,
        secs, hps, p50, p99, (unsigned long long)n_fail,
        o_resume ? (n_not_reused ? ", SOME NOT RESUMED" : ", all resumed") : "",
        g_first_err[0] ? "; first error: " : "", g_first_err);
    return n_counted > 0 && n_fail == 0 && n_not_reused == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- main */
static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen -u HOST:PORT[/PATH] [-c CONNS] [-s MSGSIZE] [-d SECONDS] [--tls|--plain]\n"
            "               [--warmup S] [--rate MSGS_PER_S] [--cipher TLS13_SUITE] [--idle N]\n"
            "               [--concurrency N] [--sni NAME] [--label TEXT] [--origin URL|none]\n"
            "               [--subprotocol NAME] [--tls12] [--deflate] [--deflate-level 0-9]\n"
            "       loadgen -u HOST:PORT --handshakes N [--resume] [--tls12] [--concurrency C] [-d S] "
            "[--warmup S]\n");
    exit(2);
}

static size_t parse_size(const char *s)
{
    char *e;
    double v = strtod(s, &e);
    if (*e == 'k' || *e == 'K')
        v *= 1024;
    else if (*e == 'm' || *e == 'M')
        v *= 1024 * 1024;
    return (size_t)v;
}

static void parse_url(const char *u)
{
    if (strncmp(u, "wss://", 6) == 0) {
        u += 6;
        o_tls = 1;
    } else if (strncmp(u, "ws://", 5) == 0) {
        u += 5;
        o_tls = 0;
    }
    const char *slash = strchr(u, '/');
    const char *colon = strrchr(u, ':');
    if (!colon || (slash && colon > slash))
        usage();
    size_t hl = (size_t)(colon - u);
    if (hl >= sizeof(g_host))
        usage();
    memcpy(g_host, u, hl);
    g_host[hl] = 0;
    g_port = atoi(colon + 1);
    if (slash)
        snprintf(g_path, sizeof(g_path), "%s", slash);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(g_host, NULL, &hints, &res) != 0) {
        fprintf(stderr, "loadgen: cannot resolve %s\n", g_host);
        exit(2);
    }
    memcpy(&g_dst, res->ai_addr, sizeof(g_dst));
    g_dst.sin_port = htons((uint16_t)g_port);
    freeaddrinfo(res);
    g_bind_loopback = (ntohl(g_dst.sin_addr.s_addr) >> 24) == 127;
}

int main(int argc, char **argv)
{
    static struct option lo[] = {{"tls", no_argument, 0, 'T'},
                                 {"plain", no_argument, 0, 'P'},
                                 {"idle", required_argument, 0, 'i'},
                                 {"rate", required_argument, 0, 'r'},
                                 {"cipher", required_argument, 0, 'C'},
                                 {"warmup", required_argument, 0, 'w'},
                                 {"concurrency", required_argument, 0, 'k'},
                                 {"sni", required_argument, 0, 'n'},
                                 {"label", required_argument, 0, 'l'},
                                 {"help", no_argument, 0, 'h'},
                                 {"handshakes", required_argument, 0, 'H'},
                                 {"resume", no_argument, 0, 'R'},
                                 {"tls12", no_argument, 0, '2'},
                                 {"origin", required_argument, 0, 'O'},
                                 {"subprotocol", required_argument, 0, 'S'},
                                 {"deflate", no_argument, 0, 'Z'},
                                 {"deflate-level", required_argument, 0, 'L'},
                                 {0, 0, 0, 0}};
    int opt, tls_flag = -1;
    while ((opt = getopt_long(argc, argv, "c:s:d:u:h", lo, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o_conns = atoi(optarg);
            break;
        case 's':
            o_size = (int)parse_size(optarg);
            break;
        case 'd':
            o_dur = atof(optarg);
            break;
        case 'u':
            o_url = optarg;
            break;
        case 'T':
            tls_flag = 1;
            break;
        case 'P':
            tls_flag = 0;
            break;
        case 'i':
            o_idle = atoi(optarg);
            break;
        case 'r':
            o_rate = atof(optarg);
            break;
        case 'C':
            o_cipher = optarg;
            break;
        case 'w':
            o_warmup = atof(optarg);
            break;
        case 'k':
            o_concurrency = atoi(optarg);
            break;
        case 'n':
            o_sni = optarg;
            break;
        case 'l':
            o_label = optarg;
            break;
        case 'H':
            o_handshakes = atoi(optarg);
            break;
        case 'R':
            o_resume = 1;
            break;
        case '2':
            o_tls12 = 1;
            break;
        case 'O':
            o_origin = strcmp(optarg, "none") == 0 ? "" : optarg;
            break;
        case 'S':
            o_subprotocol = optarg;
            break;
        case 'Z':
            o_deflate = 1;
            break;
        case 'L':
            o_deflate = 1;
            o_zlevel = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (!o_url || o_conns < 1 || o_size < 0 || o_dur <= 0 || o_concurrency < 1)
        usage();
    if (o_deflate && (o_size < 128 || o_size > 16384)) {
        fprintf(stderr, "loadgen: --deflate wants a message size of 128 to 16384 bytes\n");
        return 2;
    }
    parse_url(o_url);
    if (tls_flag >= 0)
        o_tls = tls_flag;
    g_nconn = o_idle > 0 ? o_idle : o_conns;
    srand((unsigned)(getpid() ^ now_ns()));

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)g_nconn + 32)
        fprintf(stderr, "loadgen: warning: RLIMIT_NOFILE %llu < %d connections\n",
                (unsigned long long)rl.rlim_cur, g_nconn);
    signal(SIGPIPE, SIG_IGN);

    if (o_tls) {
        g_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION);
        SSL_CTX_set_mode(g_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (o_tls12)
            SSL_CTX_set_max_proto_version(g_ctx, TLS1_2_VERSION);
        if (o_handshakes && o_resume) {
            SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
            SSL_CTX_sess_set_new_cb(g_ctx, hs_new_session);
        } else {
            SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
        }
        SSL_CTX_set_read_ahead(g_ctx, 1); /* one read() per burst of records, not two per record */
        static const unsigned char alpn[] = "\x08http/1.1";
        SSL_CTX_set_alpn_protos(g_ctx, alpn, sizeof(alpn) - 1);
        if (o_cipher && SSL_CTX_set_ciphersuites(g_ctx, o_cipher) != 1) {
            fprintf(stderr, "loadgen: bad --cipher %s\n", o_cipher);
            return 2;
        }
    }

    if (o_handshakes) {
        if (!o_tls) {
            fprintf(stderr, "loadgen: --handshakes needs TLS\n");
            return 2;
        }
        return run_handshakes();
    }

    /* the message: one masked binary frame, the same bytes every time */
    unsigned char mask[4];
    for (int i = 0; i < 4; i++)
        mask[i] = (unsigned char)(rand() & 0xff);
    g_expect = malloc((size_t)o_size + 1);
    g_frame = malloc((size_t)o_size + 14);
    for (int i = 0; i < o_size; i++)
        g_expect[i] = (unsigned char)(i * 31 + 7);
    size_t h = 0;
    g_frame[h++] = 0x82;
    if (o_size < 126) {
        g_frame[h++] = (unsigned char)(0x80 | o_size);
    } else if (o_size < 65536) {
        g_frame[h++] = 0x80 | 126;
        g_frame[h++] = (unsigned char)(o_size >> 8);
        g_frame[h++] = (unsigned char)o_size;
    } else {
        g_frame[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            g_frame[h++] = (unsigned char)((uint64_t)o_size >> (8 * i));
    }
    memcpy(g_frame + h, mask, 4);
    h += 4;
    for (int i = 0; i < o_size; i++)
        g_frame[h + (size_t)i] = g_expect[i] ^ mask[i & 3];
    g_frame_len = h + (size_t)o_size;
    g_zcap = (size_t)o_size * 2 + 256; /* a sync-flushed deflate of o_size bytes always fits */
    g_zbuf = malloc(g_zcap);

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    g_sigfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    static int tag_sig, tag_timer, tag_stdin;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &tag_sig};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, g_sigfd, &e);
    g_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    e.data.ptr = &tag_timer;
    epoll_ctl(g_ep, EPOLL_CTL_ADD, g_timerfd, &e);
    int stdin_watched = 0;
    if (o_idle) {
        e.data.ptr = &tag_stdin;
        stdin_watched = epoll_ctl(g_ep, EPOLL_CTL_ADD, 0, &e) == 0; /* fails for /dev/null, files */
    }

    g_c = calloc((size_t)g_nconn, sizeof(*g_c));
    for (int i = 0; i < g_nconn; i++) {
        g_c[i].fd = -1;
        g_c[i].idx = i;
        g_c[i].state = S_IDLE_SLOT;
    }
    uint64_t t0 = now_ns();
    uint64_t setup_deadline = t0 + 120ull * 1000000000ull; /* connections must be up within 2 min */
    start_next_connections();

    int announced = 0, got_signal = 0;
    uint64_t t_ready = 0, t_measure_end = 0;
    struct epoll_event evs[512];
    for (;;) {
        uint64_t t = now_ns();
        int all_up = n_ready + n_failed == g_nconn;
        if (!t_ready && (all_up || t > setup_deadline)) {
            t_ready = t;
            if (o_idle) {
                printf("idle %d ready\n", n_ready);
                fflush(stdout);
                announced = 1;
            } else {
                g_t_measure0 = t + (uint64_t)(o_warmup * 1e9);
                t_measure_end = g_t_measure0 + (uint64_t)(o_dur * 1e9);
            }
        }
        if (!o_idle && t_ready) {
            if (!measuring && t >= g_t_measure0 && t < t_measure_end) {
                measuring = 1;
                g_t_measure0 = t;
            }
            if (t >= t_measure_end) {
                measuring = 0;
                stopping = 1;
                break;
            }
        }
        if (got_signal)
            break;
        int timeout = 100;
        if (!o_idle && t_ready) {
            uint64_t until = measuring ? t_measure_end : g_t_measure0;
            uint64_t ms = until > t ? (until - t) / 1000000 + 1 : 0;
            if ((uint64_t)timeout > ms)
                timeout = (int)ms;
        }
        int n = epoll_wait(g_ep, evs, 512, timeout);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_sig) {
                struct signalfd_siginfo si;
                while (read(g_sigfd, &si, sizeof(si)) == sizeof(si))
                    got_signal = 1;
                continue;
            }
            if (p == &tag_stdin) {
                char b[256];
                ssize_t r = read(0, b, sizeof(b));
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    got_signal = 1;
                    epoll_ctl(g_ep, EPOLL_CTL_DEL, 0, NULL);
                }
                continue;
            }
            if (p == &tag_timer) {
                uint64_t x;
                while (read(g_timerfd, &x, sizeof(x)) == sizeof(x)) {
                }
                fire_timers();
                continue;
            }
            struct conn *c = p;
            if (c->fd >= 0)
                drive(c);
        }
        if (o_rate > 0)
            arm_timer();
    }
    uint64_t t_end = now_ns();
    (void)stdin_watched;

    int stalled = 0;
    uint64_t oldest = 0;
    for (int i = 0; i < g_nconn; i++) {
        struct conn *c = &g_c[i];
        if (c->state == S_OPEN && c->inflight && t_end - c->t_send > 1000000000ull) {
            stalled++;
            if (t_end - c->t_send > oldest)
                oldest = t_end - c->t_send;
        }
    }
    int still_open = 0;
    for (int i = 0; i < g_nconn; i++) {
        struct conn *c = &g_c[i];
        if (c->state == S_OPEN)
            still_open++;
        if (c->ssl) {
            SSL_shutdown(c->ssl); /* best effort close_notify; not waited for */
            SSL_free(c->ssl);
        }
        if (c->fd >= 0)
            close(c->fd);
    }

    if (o_idle) {
        printf("{\"mode\":\"idle\",\"label\":\"%s\",\"tls\":%s,\"proto\":\"%s\",\"cipher\":\"%s\","
               "\"requested\":%d,"
               "\"ready\":%d,\"failed\":%d,\"closed_by_peer\":%d,\"still_open\":%d,\"setup_s\":%.3f,"
               "\"held_s\":%.3f,\"first_error\":\"%s\"}\n",
               o_label, o_tls ? "true" : "false", g_proto, g_cipher_name, o_idle, n_ready, n_failed,
               n_closed_open, still_open, (double)((t_ready ? t_ready : t_end) - t0) / 1e9,
               t_ready ? (double)(t_end - t_ready) / 1e9 : 0.0, g_first_err);
        fflush(stdout);
        fprintf(
            stderr,
            "loadgen idle %s: %d/%d connections up in %.2fs (%d failed), %d closed by peer while held%s%s\n",
            o_label, n_ready, o_idle, (double)((t_ready ? t_ready : t_end) - t0) / 1e9, n_failed,
            n_closed_open, g_first_err[0] ? "; first error: " : "", g_first_err);
        (void)announced;
        return n_ready == o_idle && n_closed_open == 0 ? 0 : 1;
    }

    double secs = (double)(t_end - g_t_measure0) / 1e9;
    if (!t_ready || secs <= 0)
        secs = 0;
    double mps = secs > 0 ? (double)n_msgs / secs : 0;
    double p50 = h_pct(50) / 1e3, p99 = h_pct(99) / 1e3, p999 = h_pct(99.9) / 1e3,
           mx = (double)g_hist_max / 1e3;
    printf(
        "{\"mode\":\"echo\",\"label\":\"%s\",\"tls\":%s,\"proto\":\"%s\",\"cipher\":\"%s\",\"conns\":%d,"
        "\"ready\":%d,\"failed\":%d,\"closed_by_peer\":%d,\"size\":%d,\"rate\":%.0f,\"seconds\":%.3f,"
        "\"msgs\":%llu,\"msgs_per_s\":%.1f,\"bytes_per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
        "\"p999_us\":%.1f,\"max_us\":%.1f,\"deflate\":%s,\"wire_bytes_per_msg\":%.1f,\"verify_errors\":%llu,"
        "\"stalled\":%d,\"oldest_inflight_ms\":%.1f,\"first_error\":\"%s\"}\n",
        o_label, o_tls ? "true" : "false", g_proto, g_cipher_name, o_conns, n_ready, n_failed, n_closed_open,
        o_size, o_rate, secs, (unsigned long long)n_msgs, mps, mps * o_size, p50, p99, p999, mx,
        o_deflate ? "true" : "false", o_deflate && n_msgs ? (double)n_wire / (double)n_msgs : (double)o_size,
        (unsigned long long)n_verify_err, stalled, (double)oldest / 1e6, g_first_err);
    fflush(stdout);
    fprintf(stderr,
            "loadgen %s %s %s: %d conns x %d B, %.2fs: %.0f msg/s (%.1f MB/s) p50 %.1f us p99 %.1f us p99.9 "
            "%.1f us "
            "max %.1f us; %d failed, %d closed, %llu verify errors, %d stalled%s%s\n",
            o_label, o_tls ? (g_proto[0] ? g_proto : "tls") : "plain", g_cipher_name, n_ready, o_size, secs,
            mps, mps * o_size / 1e6, p50, p99, p999, mx, n_failed, n_closed_open,
            (unsigned long long)n_verify_err, stalled, g_first_err[0] ? "; first error: " : "", g_first_err);
    int ok = n_ready == o_conns && n_closed_open == 0 && n_verify_err == 0 && n_msgs > 0;
    return ok ? 0 : 1;
}
