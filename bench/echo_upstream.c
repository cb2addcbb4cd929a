/* echo_upstream: a plaintext WebSocket echo server for benchmarks.
 *
 *   echo_upstream -p PORT [-b ADDR] [-t THREADS]
 *
 * epoll, nonblocking, level-triggered; one SO_REUSEPORT listener and one epoll loop per thread
 * (1 thread by default). Answers the HTTP/1.1 upgrade (Sec-WebSocket-Accept from libcrypto's
 * SHA-1), then echoes every frame as it arrives, frame by frame: data and continuation frames go
 * back with the same FIN/opcode, unmasked; ping -> pong; pong ignored; close -> the same close back,
 * then the connection is closed once written. Reads land in a per-thread scratch buffer and are
 * parsed in place; only an incomplete frame is copied into the connection. Nothing is allocated per
 * message. Prints "echo_upstream listening on ADDR:PORT" to stdout once ready.
 *
 * permessage-deflate (RFC 7692): when the upgrade offers it, the 101 accepts it (no parameters: both
 * sides keep their context and use 15-bit windows) and compressed frames are echoed as they came,
 * RSV1 included, without inflating them. That is a valid answer: the client's inflater then reads
 * exactly the stream its own compressor wrote, so the contexts stay in step. The proxy in front
 * sees compressed frames both ways, as with a server that compresses its own messages.
 *
 * Build: gcc -O2 -o echo_upstream echo_upstream.c -lcrypto -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH (256 * 1024)
#define MAX_HEAD 16384
#define OUT_HIGH (8u << 20) /* stop reading while more than this waits to be written */

struct conn {
    int fd;
    unsigned ws : 1, closing : 1, reading : 1, writing : 1;
    unsigned char *in;
    size_t in_len, in_cap;
    unsigned char *out;
    size_t out_off, out_len, out_cap;
};

struct thr {
    int ep, lfd;
    unsigned char *scratch;
    pthread_t tid;
};

static struct sockaddr_in g_addr;
static volatile sig_atomic_t g_stop;

static void die(const char *m)
{
    perror(m);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "echo_upstream: out of memory\n");
        exit(1);
    }
    return p;
}

static void set_events(struct thr *t, struct conn *c)
{
    struct epoll_event ev = {.events = (c->reading ? EPOLLIN : 0) | (c->writing ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_free(struct conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    free(c->in);
    free(c->out);
    free(c);
}

static unsigned char *out_reserve(struct conn *c, size_t n)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len < n) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_cap - c->out_len < n) {
            size_t cap = c->out_cap ? c->out_cap : 4096;
            while (cap - c->out_len < n)
                cap *= 2;
            c->out = xrealloc(c->out, cap);
            c->out_cap = cap;
        }
    }
    return c->out + c->out_len;
}

static void emit_frame(struct conn *c, unsigned b0, const unsigned char *p, uint64_t n)
{
    unsigned char *o = out_reserve(c, (size_t)n + 10);
    size_t h = 0;
    o[h++] = (unsigned char)b0;
    if (n < 126) {
        o[h++] = (unsigned char)n;
    } else if (n < 65536) {
        o[h++] = 126;
        o[h++] = (unsigned char)(n >> 8);
        o[h++] = (unsigned char)n;
    } else {
        o[h++] = 127;
        for (int i = 7; i >= 0; i--)
            o[h++] = (unsigned char)(n >> (8 * i));
    }
    memcpy(o + h, p, (size_t)n);
    c->out_len += h + (size_t)n;
}

static void unmask(unsigned char *p, uint64_t n, const unsigned char k[4])
{
    uint32_t k32;
    memcpy(&k32, k, 4);
    uint64_t k64 = ((uint64_t)k32 << 32) | k32;
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] ^= k[i & 3];
}

static const char *find_header(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

/* Returns bytes consumed, or (size_t)-1 to close. */
static size_t do_handshake(struct conn *c, unsigned char *data, size_t len)
{
    const unsigned char *e = memmem(data, len, "\r\n\r\n", 4);
    if (!e) {
        if (len > MAX_HEAD)
            return (size_t)-1;
        return 0;
    }
    size_t hl = (size_t)(e - data) + 4, klen;
    const char *key = find_header((const char *)data, hl, "Sec-WebSocket-Key", &klen);
    if (!key || klen == 0 || klen > 64) {
        static const char bad[] =
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        memcpy(out_reserve(c, sizeof(bad) - 1), bad, sizeof(bad) - 1);
        c->out_len += sizeof(bad) - 1;
        c->closing = 1;
        return hl;
    }
    char buf[128];
    memcpy(buf, key, klen);
    memcpy(buf + klen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((unsigned char *)buf, klen + 36, md);
    unsigned char acc[64];
    EVP_EncodeBlock(acc, md, SHA_DIGEST_LENGTH);
    size_t elen;
    const char *ext = find_header((const char *)data, hl, "Sec-WebSocket-Extensions", &elen);
    int deflate = ext != NULL && memmem(ext, elen, "permessage-deflate", 18) != NULL;
    char resp[320];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s\r\n",
                     acc, deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
    memcpy(out_reserve(c, (size_t)n), resp, (size_t)n);
    c->out_len += (size_t)n;
    c->ws = 1;
    return hl;
}

/* Parses and echoes every complete frame in data; returns bytes consumed, (size_t)-1 to close. */
static size_t do_frames(struct conn *c, unsigned char *data, size_t len)
{
    size_t off = 0;
    while (!c->closing && len - off >= 2) {
        unsigned char *f = data + off;
        unsigned b0 = f[0], b1 = f[1];
        uint64_t plen = b1 & 127;
        size_t hl = 2;
        if (plen == 126) {
            if (len - off < 4)
                break;
            plen = ((uint64_t)f[2] << 8) | f[3];
            hl = 4;
        } else if (plen == 127) {
            if (len - off < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | f[2 + i];
            hl = 10;
            if (plen >> 62)
                return (size_t)-1;
        }
        const unsigned char *key = NULL;
        if (b1 & 0x80) {
            key = f + hl;
            hl += 4;
        }
        if ((uint64_t)(len - off) < hl + plen)
            break;
        unsigned char *p = f + hl;
        if (key)
            unmask(p, plen, key);
        switch (b0 & 0x0f) {
        case 0x0:
        case 0x1:
        case 0x2:
            emit_frame(c, b0, p, plen);
            break;
        case 0x9:
            emit_frame(c, 0x8a, p, plen);
            break;
        case 0xa:
            break;
        case 0x8:
            emit_frame(c, 0x88, p, plen);
            c->closing = 1;
            break;
        default:
            return (size_t)-1;
        }
        off += hl + (size_t)plen;
    }
    return off;
}

static size_t process(struct conn *c, unsigned char *data, size_t len)
{
    size_t off = 0;
    if (!c->ws) {
        size_t n = do_handshake(c, data, len);
        if (n == (size_t)-1 || n == 0)
            return n;
        off = n;
    }
    if (c->closing)
        return len; /* discard the rest */
    size_t n = do_frames(c, data + off, len - off);
    if (n == (size_t)-1)
        return n;
    return c->closing ? len : off + n;
}

/* Returns -1 when the connection must go. */
static int flush_out(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->out_cap > (1u << 20)) { /* do not keep a big buffer after a big message */
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
        if (c->closing)
            return -1;
    }
    return 0;
}

static int on_readable(struct thr *t, struct conn *c)
{
    for (int rounds = 0; rounds < 16; rounds++) {
        unsigned char *buf;
        size_t want;
        if (c->in_len == 0) {
            buf = t->scratch;
            want = SCRATCH;
        } else {
            if (c->in_cap - c->in_len < 65536) {
                size_t cap = c->in_cap * 2;
                while (cap - c->in_len < 65536)
                    cap *= 2;
                c->in = xrealloc(c->in, cap);
                c->in_cap = cap;
            }
            buf = c->in + c->in_len;
            want = c->in_cap - c->in_len;
        }
        ssize_t r = recv(c->fd, buf, want, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        if (r == 0)
            return -1;
        unsigned char *data;
        size_t len;
        if (buf == t->scratch) {
            data = buf;
            len = (size_t)r;
        } else {
            c->in_len += (size_t)r;
            data = c->in;
            len = c->in_len;
        }
        size_t used = process(c, data, len);
        if (used == (size_t)-1)
            return -1;
        size_t left = len - used;
        if (data == t->scratch) {
            if (left) {
                size_t cap = 65536;
                while (cap < left * 2)
                    cap *= 2;
                c->in = xrealloc(c->in, cap);
                c->in_cap = cap;
                memcpy(c->in, data + used, left);
                c->in_len = left;
            }
        } else if (left == 0) {
            free(c->in); /* no partial frame: keep nothing per connection */
            c->in = NULL;
            c->in_cap = c->in_len = 0;
        } else if (used) {
            memmove(c->in, c->in + used, left);
            c->in_len = left;
        }
        if (flush_out(c) < 0)
            return -1;
        if (c->closing || c->out_len - c->out_off > OUT_HIGH)
            break;
        if ((size_t)r < want)
            return 0;
    }
    return 0;
}

static void update_interest(struct thr *t, struct conn *c)
{
    int wr = c->out_off < c->out_len;
    int rd = !c->closing && c->out_len - c->out_off <= OUT_HIGH;
    if (wr != c->writing || rd != c->reading) {
        c->writing = (unsigned)wr;
        c->reading = (unsigned)rd;
        set_events(t, c);
    }
}

static void on_accept(struct thr *t)
{
    for (;;) {
        int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                fprintf(stderr, "echo_upstream: accept: %s\n", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->reading = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

static void *loop(void *arg)
{
    struct thr *t = arg;
    struct epoll_event evs[256];
    while (!g_stop) {
        int n = epoll_wait(t->ep, evs, 256, 500);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                on_accept(t);
                continue;
            }
            uint32_t e = evs[i].events;
            int bad = 0;
            if (e & EPOLLOUT)
                bad = flush_out(c) < 0;
            if (!bad && (e & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                bad = on_readable(t, c) < 0;
            if (bad)
                conn_free(c);
            else
                update_interest(t, c);
        }
    }
    return NULL;
}

static int make_listener(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&g_addr, sizeof(g_addr)) < 0)
        die("bind");
    if (listen(fd, 4096) < 0)
        die("listen");
    return fd;
}

static void on_signal(int s)
{
    (void)s;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    int port = 0, threads = 1;
    const char *bind_addr = "127.0.0.1";
    int opt;
    while ((opt = getopt(argc, argv, "p:t:b:h")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 't':
            threads = atoi(optarg);
            break;
        case 'b':
            bind_addr = optarg;
            break;
        default:
            fprintf(stderr, "usage: %s -p PORT [-b ADDR] [-t THREADS]\n", argv[0]);
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || threads < 1 || threads > 256) {
        fprintf(stderr, "usage: %s -p PORT [-b ADDR] [-t THREADS]\n", argv[0]);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &g_addr.sin_addr) != 1) {
        fprintf(stderr, "echo_upstream: bad address %s\n", bind_addr);
        return 2;
    }
    struct thr *ts = calloc((size_t)threads, sizeof(*ts));
    for (int i = 0; i < threads; i++) {
        ts[i].lfd = make_listener();
        ts[i].ep = epoll_create1(EPOLL_CLOEXEC);
        ts[i].scratch = malloc(SCRATCH);
        if (ts[i].ep < 0 || !ts[i].scratch)
            die("epoll_create1");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(ts[i].ep, EPOLL_CTL_ADD, ts[i].lfd, &ev) < 0)
            die("epoll_ctl");
    }
    printf("echo_upstream listening on %s:%d (%d thread%s)\n", bind_addr, port, threads,
           threads > 1 ? "s" : "");
    fflush(stdout);
    for (int i = 1; i < threads; i++)
        pthread_create(&ts[i].tid, NULL, loop, &ts[i]);
    loop(&ts[0]);
    for (int i = 1; i < threads; i++)
        pthread_join(ts[i].tid, NULL);
    return 0;
}
