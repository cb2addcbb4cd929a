/* gateway_upstream_test.c - rendezvous hashing, weights, prefix mode and passive health. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/health.h"
#include "gateway/upstream.h"

static const char *four[] = {"10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000", "10.0.0.4:3000"};

static struct wsg_upstreams *build(const char *const *names, const unsigned *weights, size_t n)
{
    struct wsg_upstreams *u = calloc(1, sizeof(*u));
    char err[WSG_ERRLEN];
    assert_non_null(u);
    for (size_t i = 0; i < n; i++) {
        int rc = wsg_upstream_add(u, names[i], weights ? weights[i] : 1, err);
        if (rc != 0)
            fail_msg("%s", err);
    }
    return u;
}

static void destroy(struct wsg_upstreams *u)
{
    wsg_upstreams_free(u);
    free(u);
}

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    memset(&ss, 0, sizeof(ss));
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v4n(uint32_t host_order)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    memset(&ss, 0, sizeof(ss));
    s->sin_family = AF_INET;
    s->sin_addr.s_addr = htonl(host_order);
    return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    memset(&ss, 0, sizeof(ss));
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
    return ss;
}

static unsigned top(const struct wsg_upstreams *u, const struct sockaddr_storage *ss)
{
    unsigned order[WSG_MAX_PEERS];
    assert_int_equal(wsg_upstream_rank(u, (const struct sockaddr *)ss, order), u->npeers);
    return order[0];
}

/* deterministic xorshift so the statistics tests are reproducible */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void test_add_parses(void **state)
{
    (void)state;
    struct wsg_upstreams *u = calloc(1, sizeof(*u));
    char err[WSG_ERRLEN];
    assert_int_equal(wsg_upstream_add(u, "127.0.0.1:3001", 2, err), 0);
    assert_int_equal(wsg_upstream_add(u, "[::1]:3002", 1, err), 0);
    assert_int_equal(wsg_upstream_add(u, "localhost:3003", 1, err), 0);
    assert_int_equal(u->npeers, 3);
    const struct sockaddr_in *a = (const struct sockaddr_in *)&u->peers[0].addr;
    assert_int_equal(a->sin_family, AF_INET);
    assert_int_equal(ntohs(a->sin_port), 3001);
    assert_int_equal(ntohl(a->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(u->peers[0].addrlen, sizeof(struct sockaddr_in));
    assert_int_equal(u->peers[0].weight, 2);
    assert_string_equal(u->peers[0].name, "127.0.0.1:3001");
    const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&u->peers[1].addr;
    assert_int_equal(b->sin6_family, AF_INET6);
    assert_int_equal(ntohs(b->sin6_port), 3002);
    assert_true(IN6_IS_ADDR_LOOPBACK(&b->sin6_addr));
    assert_string_equal(u->peers[1].name, "[::1]:3002");
    assert_true(u->peers[2].addr.ss_family == AF_INET || u->peers[2].addr.ss_family == AF_INET6);

    assert_int_equal(wsg_upstream_add(u, "127.0.0.1", 1, err), -1);
    assert_non_null(strstr(err, "\"127.0.0.1\""));
    assert_int_equal(wsg_upstream_add(u, "127.0.0.1:0", 1, err), -1);
    assert_non_null(strstr(err, "port"));
    assert_int_equal(wsg_upstream_add(u, "127.0.0.1:70000", 1, err), -1);
    assert_int_equal(wsg_upstream_add(u, "[::1:3000", 1, err), -1);
    assert_int_equal(wsg_upstream_add(u, "[zz]:3000", 1, err), -1);
    assert_non_null(strstr(err, "[zz]:3000"));
    assert_int_equal(wsg_upstream_add(u, "::1:3000", 1, err), -1);
    assert_int_equal(wsg_upstream_add(u, "127.0.0.1:3001", 1, err), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(wsg_upstream_add(u, "127.0.0.1:3009", 0, err), -1);
    assert_int_equal(wsg_upstream_add(u, "no-such-host.invalid:80", 1, err), -1);
    assert_non_null(strstr(err, "no-such-host.invalid"));
    assert_int_equal(u->npeers, 3);
    destroy(u);
}

static void test_add_limit(void **state)
{
    (void)state;
    struct wsg_upstreams *u = calloc(1, sizeof(*u));
    char err[WSG_ERRLEN], name[32];
    for (int i = 0; i < WSG_MAX_PEERS; i++) {
        snprintf(name, sizeof(name), "10.0.1.%d:80", i + 1);
        assert_int_equal(wsg_upstream_add(u, name, 1, err), 0);
    }
    assert_int_equal(wsg_upstream_add(u, "10.0.2.1:80", 1, err), -1);
    /* the tried mask covers index 63 */
    struct sockaddr_storage c = v4("192.0.2.1", 1);
    uint64_t tried = 0;
    for (int i = 0; i < WSG_MAX_PEERS; i++) {
        struct wsg_peer *p = wsg_upstream_pick(u, (struct sockaddr *)&c, tried, 0);
        assert_non_null(p);
        tried |= 1ULL << wsg_upstream_index(u, p);
    }
    assert_null(wsg_upstream_pick(u, (struct sockaddr *)&c, tried, 0));
    destroy(u);
}

/* Hard-coded rankings: a change in the hash (which would move every client) fails here. */
static void test_fixed_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        unsigned order[4];
    } vec[] = {
        {"192.0.2.1", {3, 1, 0, 2}},         {"192.0.2.77", {3, 1, 0, 2}}, {"198.51.100.23", {0, 3, 2, 1}},
        {"203.0.113.200", {1, 0, 3, 2}},     {"10.1.2.3", {3, 2, 0, 1}},   {"2001:db8::1", {1, 3, 2, 0}},
        {"2001:db8:1234::42", {2, 1, 3, 0}},
    };
    struct wsg_upstreams *u = build(four, NULL, 4);
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        struct sockaddr_storage c = strchr(vec[i].ip, ':') ? v6(vec[i].ip, 5555) : v4(vec[i].ip, 5555);
        unsigned order[WSG_MAX_PEERS];
        assert_int_equal(wsg_upstream_rank(u, (struct sockaddr *)&c, order), 4);
        for (int k = 0; k < 4; k++)
            if (order[k] != vec[i].order[k])
                fail_msg("%s: rank %d is peer %u, expected %u", vec[i].ip, k, order[k], vec[i].order[k]);
    }
    destroy(u);
}

static void test_deterministic_and_port_free(void **state)
{
    (void)state;
    struct wsg_upstreams *a = build(four, NULL, 4), *b = build(four, NULL, 4);
    for (int i = 0; i < 2000; i++) {
        uint32_t ip = rnd32();
        struct sockaddr_storage c1 = v4n(ip), c2 = v4n(ip);
        ((struct sockaddr_in *)&c1)->sin_port = htons(1000);
        ((struct sockaddr_in *)&c2)->sin_port = htons(61000);
        unsigned o1[WSG_MAX_PEERS], o2[WSG_MAX_PEERS];
        wsg_upstream_rank(a, (struct sockaddr *)&c1, o1);
        wsg_upstream_rank(b, (struct sockaddr *)&c2, o2);
        assert_memory_equal(o1, o2, 4 * sizeof(unsigned));
        /* a permutation */
        unsigned seen = 0;
        for (int k = 0; k < 4; k++)
            seen |= 1u << o1[k];
        assert_int_equal(seen, 0xf);
    }
    destroy(a);
    destroy(b);
}

static void test_even_spread(void **state)
{
    (void)state;
    struct wsg_upstreams *u = build(four, NULL, 4);
    unsigned count[4] = {0};
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage c = v4n(rnd32());
        count[top(u, &c)]++;
    }
    for (int k = 0; k < 4; k++) {
        double share = (double)count[k] / n;
        if (share < 0.22 || share > 0.28)
            fail_msg("peer %d got %.4f of the clients", k, share);
    }
    /* sequential addresses (one big office, whole-address mode) spread as well */
    memset(count, 0, sizeof(count));
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage c = v4n(0x0a000000u + (uint32_t)i);
        count[top(u, &c)]++;
    }
    for (int k = 0; k < 4; k++)
        assert_true(count[k] > 0.22 * n && count[k] < 0.28 * n);
    destroy(u);
}

static void test_weights(void **state)
{
    (void)state;
    static const char *two[] = {"10.0.0.1:3000", "10.0.0.2:3000"};
    static const unsigned w[] = {2, 1};
    struct wsg_upstreams *u = build(two, w, 2);
    unsigned count[2] = {0};
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage c = v4n(rnd32());
        count[top(u, &c)]++;
    }
    double share = (double)count[0] / n;
    if (share < 2.0 / 3 - 0.03 || share > 2.0 / 3 + 0.03)
        fail_msg("weight 2 peer got %.4f", share);
    destroy(u);

    /* 4 peers weighted 1:2:3:4 get about 10/20/30/40 % */
    static const unsigned w4[] = {1, 2, 3, 4};
    u = build(four, w4, 4);
    unsigned c4[4] = {0};
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage c = v4n(rnd32());
        c4[top(u, &c)]++;
    }
    for (int k = 0; k < 4; k++) {
        double s = (double)c4[k] / n, want = (k + 1) / 10.0;
        if (s < want - 0.03 || s > want + 0.03)
            fail_msg("weight %d peer got %.4f", k + 1, s);
    }
    destroy(u);
}

static void test_removal_moves_only_its_clients(void **state)
{
    (void)state;
    struct wsg_upstreams *all = build(four, NULL, 4);
    static const char *three[] = {"10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.4:3000"}; /* .3 removed */
    struct wsg_upstreams *less = build(three, NULL, 3);
    int moved = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage c = v4n(rnd32());
        unsigned order[WSG_MAX_PEERS];
        wsg_upstream_rank(all, (struct sockaddr *)&c, order);
        const char *before = all->peers[order[0]].name;
        const char *after = less->peers[top(less, &c)].name;
        if (strcmp(before, "10.0.0.3:3000") == 0) {
            moved++;
            assert_string_equal(after, all->peers[order[1]].name); /* its second choice */
        } else {
            assert_string_equal(after, before);
        }
    }
    assert_true(moved > n / 5 && moved < n * 3 / 10);
    /* order of configuration does not matter either: ranking is by name */
    static const char *shuffled[] = {"10.0.0.4:3000", "10.0.0.2:3000", "10.0.0.1:3000", "10.0.0.3:3000"};
    struct wsg_upstreams *sh = build(shuffled, NULL, 4);
    for (int i = 0; i < 2000; i++) {
        struct sockaddr_storage c = v4n(rnd32());
        assert_string_equal(all->peers[top(all, &c)].name, sh->peers[top(sh, &c)].name);
    }
    destroy(all);
    destroy(less);
    destroy(sh);
}

static void test_prefix24(void **state)
{
    (void)state;
    struct wsg_upstreams *u = build(four, NULL, 4);
    u->hash_prefix = 24;
    struct sockaddr_storage c0 = v4("10.1.2.0", 1);
    unsigned want = top(u, &c0);
    for (uint32_t i = 0; i < 256; i++) {
        struct sockaddr_storage c = v4n(0x0a010200u + i);
        assert_int_equal(top(u, &c), want);
    }
    /* a different /24 is hashed independently; over many /24s all peers are used */
    unsigned used = 0;
    for (uint32_t net = 0; net < 64; net++) {
        struct sockaddr_storage c = v4n(0x0a000000u + (net << 8) + 7);
        used |= 1u << top(u, &c);
    }
    assert_int_equal(used, 0xf);
    /* IPv6 in /24 mode: the /48 decides */
    struct sockaddr_storage a = v6("2001:db8:1::1", 1), b = v6("2001:db8:1:ffff::2", 1);
    assert_int_equal(top(u, &a), top(u, &b));

    /* whole-address mode spreads the same /24 over every peer */
    u->hash_prefix = 0;
    unsigned count[4] = {0};
    for (uint32_t i = 0; i < 256; i++) {
        struct sockaddr_storage c = v4n(0x0a010200u + i);
        count[top(u, &c)]++;
    }
    for (int k = 0; k < 4; k++)
        assert_true(count[k] > 30);
    destroy(u);
}

static void test_ipv6_and_mapped(void **state)
{
    (void)state;
    struct wsg_upstreams *u = build(four, NULL, 4);
    for (int mode = 0; mode < 2; mode++) {
        u->hash_prefix = mode ? 24 : 0;
        for (int i = 0; i < 1000; i++) {
            uint32_t ip = rnd32();
            struct sockaddr_storage c4 = v4n(ip), c6;
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c6;
            memset(&c6, 0, sizeof(c6));
            s6->sin6_family = AF_INET6;
            s6->sin6_addr.s6_addr[10] = 0xff;
            s6->sin6_addr.s6_addr[11] = 0xff;
            uint32_t be = htonl(ip);
            memcpy(s6->sin6_addr.s6_addr + 12, &be, 4);
            unsigned o4[WSG_MAX_PEERS], o6[WSG_MAX_PEERS];
            wsg_upstream_rank(u, (struct sockaddr *)&c4, o4);
            wsg_upstream_rank(u, (struct sockaddr *)&c6, o6);
            assert_memory_equal(o4, o6, 4 * sizeof(unsigned));
        }
    }
    /* native IPv6 clients spread over all peers */
    u->hash_prefix = 0;
    unsigned count[4] = {0};
    for (int i = 0; i < 4000; i++) {
        struct sockaddr_storage c = v6("2001:db8::", 1);
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c;
        uint32_t r = rnd32();
        memcpy(s6->sin6_addr.s6_addr + 8, &r, 4);
        r = rnd32();
        memcpy(s6->sin6_addr.s6_addr + 12, &r, 4);
        count[top(u, &c)]++;
    }
    for (int k = 0; k < 4; k++)
        assert_true(count[k] > 800 && count[k] < 1200);
    destroy(u);
}

static void test_pick_and_health(void **state)
{
    (void)state;
    struct wsg_upstreams *u = build(four, NULL, 4);
    u->max_fails = 2;
    u->fail_timeout = 10;
    struct sockaddr_storage c = v4("192.0.2.1", 4242); /* ranking 3, 1, 0, 2 */
    struct sockaddr *sa = (struct sockaddr *)&c;
    double now = 1000;

    struct wsg_peer *p = wsg_upstream_pick(u, sa, 0, now);
    assert_int_equal(wsg_upstream_index(u, p), 3);
    /* tried mask respected: next-ranked peers in order, then NULL */
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 1u << 3, now)), 1);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, (1u << 3) | (1u << 1), now)), 0);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0xb, now)), 2);
    assert_null(wsg_upstream_pick(u, sa, 0xf, now));

    /* one failure: still up (max_fails 2) */
    wsg_upstream_release(u, p, 1, now);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now + 1)), 3);
    /* a success resets the count */
    wsg_upstream_release(u, p, 0, now + 1);
    wsg_upstream_release(u, p, 1, now + 2);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now + 2)), 3);
    /* failures more than fail_timeout apart do not add up */
    wsg_upstream_release(u, p, 1, now + 13);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now + 13)), 3);
    /* a second failure within the window: down for fail_timeout */
    wsg_upstream_release(u, p, 1, now + 14);
    assert_true(p->down_until > now + 14);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now + 15)), 1);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now + 23.9)), 1);
    /* back after the timeout */
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now + 24.1)), 3);

    /* all down: the best untried one anyway, then NULL when all are tried */
    double t = 2000;
    for (size_t i = 0; i < 4; i++) {
        wsg_upstream_release(u, &u->peers[i], 1, t);
        wsg_upstream_release(u, &u->peers[i], 1, t);
    }
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, t + 1)), 3);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 1u << 3, t + 1)), 1);
    assert_null(wsg_upstream_pick(u, sa, 0xf, t + 1));
    /* only peer 0 comes back (success): picked over the better-ranked but down 3 and 1 */
    wsg_upstream_release(u, &u->peers[0], 0, t + 2);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, t + 2)), 0);

    /* max_fails 0: never marked down */
    u->max_fails = 0;
    struct wsg_peer *q = &u->peers[2];
    for (int i = 0; i < 10; i++)
        wsg_upstream_release(u, q, 1, 3000);
    assert_true(q->down_until <= 3000);
    destroy(u);
}

/* Issue 15: draining, weight 0 and the active check take a peer out of placement; clients
 * move to their next-ranked peer; the operator's choices are never the all-down fallback. */
static void test_lifecycle_states(void **state)
{
    (void)state;
    struct wsg_upstreams *u = build(four, NULL, 4);
    struct sockaddr_storage c = v4("192.0.2.1", 4242); /* ranking 3, 1, 0, 2 */
    struct sockaddr *sa = (struct sockaddr *)&c;
    double now = 1000;
    for (size_t i = 0; i < 4; i++)
        assert_true(wsg_upstream_is_up(&u->peers[i], now));

    u->peers[3].draining = 1;
    assert_false(wsg_upstream_is_up(&u->peers[3], now));
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now)), 1);
    u->peers[1].weight = 0;
    assert_false(wsg_upstream_is_up(&u->peers[1], now));
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now)), 0);
    u->peers[0].hc_down = 1;
    assert_false(wsg_upstream_is_up(&u->peers[0], now));
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now)), 2);
    /* 2 down by health too: the fallback is the best one down by health (0), never 3 or 1 */
    u->peers[2].hc_down = 1;
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now)), 0);
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 1u << 0, now)), 2);
    assert_null(wsg_upstream_pick(u, sa, (1u << 0) | (1u << 2), now));

    /* ready again and weighted: back to the first choice (rendezvous: nobody else moved) */
    u->peers[3].draining = 0;
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 0, now)), 3);
    u->peers[1].weight = 1;
    u->peers[0].hc_down = u->peers[2].hc_down = 0;
    assert_int_equal(wsg_upstream_index(u, wsg_upstream_pick(u, sa, 1u << 3, now)), 1);
    destroy(u);
}

/* The active check reads only the status line; everything else is a failed check. */
static void test_health_status_line(void **state)
{
    (void)state;
#define SL(s) wsg_health_status_line(s, sizeof(s) - 1)
    assert_int_equal(SL("HTTP/1.1 200 OK\r\n"), 200);
    assert_int_equal(SL("HTTP/1.0 302 Found\r\n"), 302);
    assert_int_equal(SL("HTTP/1.1 503\r\n"), 503);
    assert_int_equal(SL("HTTP/1.1 999 x"), 999);
    /* more bytes needed */
    assert_int_equal(SL(""), 0);
    assert_int_equal(SL("HTTP/1"), 0);
    assert_int_equal(SL("HTTP/1.1 20"), 0);
    assert_int_equal(SL("HTTP/1.1 200"), 0);
    /* not a status line */
    assert_int_equal(SL("HTTP/2.0 200 OK\r\n"), -1);
    assert_int_equal(SL("http/1.1 200 OK\r\n"), -1);
    assert_int_equal(SL("HTTP/1.x 200 OK\r\n"), -1);
    assert_int_equal(SL("HTTP/1.1  200 OK\r\n"), -1);
    assert_int_equal(SL("HTTP/1.1 2x0 OK\r\n"), -1);
    assert_int_equal(SL("HTTP/1.1 099 OK\r\n"), -1);
    assert_int_equal(SL("HTTP/1.1 2000 OK\r\n"), -1);
    assert_int_equal(SL("SSH-2.0-OpenSSH\r\n"), -1);
    assert_int_equal(SL("H"), 0);
    assert_int_equal(SL("X"), -1);
#undef SL
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_parses),
        cmocka_unit_test(test_add_limit),
        cmocka_unit_test(test_fixed_vectors),
        cmocka_unit_test(test_deterministic_and_port_free),
        cmocka_unit_test(test_even_spread),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_removal_moves_only_its_clients),
        cmocka_unit_test(test_prefix24),
        cmocka_unit_test(test_ipv6_and_mapped),
        cmocka_unit_test(test_pick_and_health),
        cmocka_unit_test(test_lifecycle_states),
        cmocka_unit_test(test_health_status_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
