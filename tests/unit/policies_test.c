/* policies_test.c - token buckets (injected time), the per-IP table, the matching helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policies/policy.h"

#define assert_near(a, b) assert_true(fabs_((a) - (b)) < 1e-9)

static double fabs_(double x)
{
    return x < 0 ? -x : x;
}

/* ---- token bucket ---- */

static void test_bucket_refill_and_cap(void **state)
{
    (void)state;
    struct wsg_rate r = {.rate = 10, .burst = 20};
    struct wsg_bucket b;
    wsg_bucket_init(&b, &r, 1000.0);
    assert_near(b.tokens, 20); /* starts full */
    for (int i = 0; i < 20; i++)
        assert_true(wsg_bucket_take(&b, &r, 1, 1000.0) == 0);
    /* empty: the next token is 0.1 s away, exactly */
    assert_near(wsg_bucket_take(&b, &r, 1, 1000.0), 0.1);
    assert_near(wsg_bucket_take(&b, &r, 5, 1000.0), 0.5);
    /* a refusal takes nothing */
    assert_near(b.tokens, 0);
    /* 0.25 s later: 2.5 tokens */
    assert_true(wsg_bucket_take(&b, &r, 2, 1000.25) == 0);
    assert_near(b.tokens, 0.5);
    assert_near(wsg_bucket_take(&b, &r, 1, 1000.25), 0.05);
    /* a long pause refills up to the burst only */
    assert_true(wsg_bucket_take(&b, &r, 1, 2000.0) == 0);
    assert_near(b.tokens, 19);
    /* time going backwards refills nothing and does not break later refills */
    assert_true(wsg_bucket_take(&b, &r, 19, 1990.0) == 0);
    assert_near(wsg_bucket_take(&b, &r, 1, 1990.0), 0.1);
    assert_true(wsg_bucket_take(&b, &r, 1, 1990.1 + 1e-9) == 0);
}

static void test_bucket_default_burst(void **state)
{
    (void)state;
    struct wsg_bucket b;
    /* burst 0 = max(rate, 1) */
    struct wsg_rate r = {.rate = 5, .burst = 0};
    wsg_bucket_init(&b, &r, 0);
    assert_near(b.tokens, 5);
    struct wsg_rate slow = {.rate = 0.5, .burst = 0};
    wsg_bucket_init(&b, &slow, 0);
    assert_near(b.tokens, 1);
    assert_true(wsg_bucket_take(&b, &slow, 1, 0) == 0);
    assert_near(wsg_bucket_take(&b, &slow, 1, 0), 2.0); /* one token every 2 s */
    assert_near(wsg_bucket_take(&b, &slow, 1, 1.5), 0.5);
    assert_true(wsg_bucket_take(&b, &slow, 1, 2.0) == 0);
}

static void test_bucket_off_and_odd_input(void **state)
{
    (void)state;
    struct wsg_bucket b = {0, 0};
    struct wsg_rate off = {.rate = 0, .burst = 0};
    for (int i = 0; i < 1000; i++)
        assert_true(wsg_bucket_take(&b, &off, 1e12, i) == 0); /* rate 0: always allowed, no division */
    struct wsg_rate r = {.rate = 1, .burst = 1};
    wsg_bucket_init(&b, &r, 0);
    assert_true(wsg_bucket_take(&b, &r, 0, 0) == 0);
    assert_true(wsg_bucket_take(&b, &r, -5, 0) == 0);
    assert_near(b.tokens, 1);
}

static void test_bucket_debt(void **state)
{
    (void)state;
    /* 1000 bytes/s, burst 1000: a 5000-byte message goes from a full bucket, into debt */
    struct wsg_rate r = {.rate = 1000, .burst = 1000};
    struct wsg_bucket b;
    wsg_bucket_init(&b, &r, 50);
    assert_true(wsg_bucket_take(&b, &r, 5000, 50) == 0);
    assert_near(b.tokens, -4000);
    /* the next byte waits until the debt is paid: 4.001 s */
    assert_near(wsg_bucket_take(&b, &r, 1, 50), 4.001);
    /* another large message waits until the bucket is full again: 5 s */
    assert_near(wsg_bucket_take(&b, &r, 5000, 50), 5.0);
    assert_near(wsg_bucket_take(&b, &r, 5000, 54), 1.0);
    assert_true(wsg_bucket_take(&b, &r, 5000, 55) == 0);
    /* a large message with a partly full bucket: waits for full, not for 5000 tokens */
    wsg_bucket_init(&b, &r, 100);
    assert_true(wsg_bucket_take(&b, &r, 600, 100) == 0);
    assert_near(wsg_bucket_take(&b, &r, 5000, 100), 0.6);
    /* the average holds: 10 messages of 5000 bytes take 45 s after the first */
    wsg_bucket_init(&b, &r, 0);
    double now = 0;
    for (int i = 0; i < 10; i++) {
        double w;
        while ((w = wsg_bucket_take(&b, &r, 5000, now)) > 0)
            now += w;
    }
    assert_near(now, 45.0);
}

/* ---- per-IP table ---- */

static struct wsg_ip_key key4(uint32_t route, const char *ip)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    struct wsg_ip_key k;
    wsg_ip_key_make(&k, route, (struct sockaddr *)&sa);
    return k;
}

static struct wsg_ip_key key6(uint32_t route, const char *ip)
{
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
    struct wsg_ip_key k;
    wsg_ip_key_make(&k, route, (struct sockaddr *)&sa);
    return k;
}

static struct wsg_ip_key keyn(uint32_t n)
{
    char ip[32];
    snprintf(ip, sizeof(ip), "10.%u.%u.%u", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    return key4(0, ip);
}

/* wsg_bucket_charge: work already done is charged, the bucket may go below zero, and the wait is
 * until it is back at zero (the inflate rate: bytes are known only once inflated). */
static void test_bucket_charge(void **state)
{
    (void)state;
    struct wsg_rate r = {.rate = 1000, .burst = 2000};
    struct wsg_bucket b;
    wsg_bucket_init(&b, &r, 10);
    assert_true(wsg_bucket_charge(&b, &r, 1500, 10) == 0); /* within the burst */
    assert_near(b.tokens, 500);
    assert_true(wsg_bucket_charge(&b, &r, 500, 10) == 0);  /* exactly empty is not in debt */
    assert_near(wsg_bucket_charge(&b, &r, 3000, 10), 3.0); /* 3000 in debt: 3 s to zero */
    assert_near(b.tokens, -3000);
    assert_near(wsg_bucket_charge(&b, &r, 0, 11), 2.0); /* asking takes nothing */
    assert_near(wsg_bucket_charge(&b, &r, 0, 12.5), 0.5);
    assert_true(wsg_bucket_charge(&b, &r, 0, 13) == 0);
    /* the refill is capped at the burst, never more however long the wait */
    assert_true(wsg_bucket_charge(&b, &r, 0, 1000) == 0);
    assert_near(b.tokens, 2000);
    assert_true(wsg_bucket_charge(&b, &r, 2000, 1000) == 0);
    assert_true(wsg_bucket_charge(&b, &r, 1, 1000) > 0);
    /* burst 0: max(rate, 1) */
    struct wsg_rate r0 = {.rate = 100, .burst = 0};
    wsg_bucket_init(&b, &r0, 0);
    assert_true(wsg_bucket_charge(&b, &r0, 100, 0) == 0);
    assert_near(wsg_bucket_charge(&b, &r0, 50, 0), 0.5);
    /* rate off (0, NaN): always 0 and nothing charged */
    struct wsg_rate off = {.rate = 0, .burst = 10};
    b.tokens = 5;
    assert_true(wsg_bucket_charge(&b, &off, 1e9, 0) == 0);
    assert_near(b.tokens, 5);
    struct wsg_rate nan = {.rate = 0.0 / 0.0, .burst = 10};
    assert_true(wsg_bucket_charge(&b, &nan, 1e9, 0) == 0);
    /* negative n charges nothing (never a refill by the caller) */
    wsg_bucket_init(&b, &r, 0);
    assert_true(wsg_bucket_charge(&b, &r, -5000, 0) == 0);
    assert_near(b.tokens, 2000);
}

static void test_ip_key(void **state)
{
    (void)state;
    struct wsg_ip_key a = key4(3, "192.0.2.7"), b = key6(3, "::ffff:192.0.2.7"), c = key6(3, "2001:db8::7");
    assert_memory_equal(&a, &b, sizeof(a)); /* IPv4-mapped IPv6 = IPv4 */
    assert_memory_not_equal(&a, &c, sizeof(a));
    struct wsg_ip_key d = key4(4, "192.0.2.7"); /* another route, another entry */
    assert_memory_not_equal(&a, &d, sizeof(a));
    struct wsg_iptable *t = wsg_iptable_new(1024, 4);
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    p.ip_max_conns = 1;
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0) == 0);
    assert_true(wsg_iptable_conn_begin(t, &b, &p, 0) > 0); /* the same IP */
    assert_true(wsg_iptable_conn_begin(t, &c, &p, 0) == 0);
    assert_true(wsg_iptable_conn_begin(t, &d, &p, 0) == 0);
    assert_int_equal(wsg_iptable_conns(t, &b), 1);
    wsg_iptable_free(t);
}

/* The fleet hooks (issue 14): collect hands out what this process consumed and resets it; apply
 * charges the others' consumption (counter growth minus our own delta) and their connections. */
static void test_iptable_fleet(void **state)
{
    (void)state;
    struct wsg_iptable *t = wsg_iptable_new(64, 1);
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    p.ip_max_conns = 3;
    p.ip_msgs.rate = 10;
    p.ip_msgs.burst = 10;
    wsg_iptable_fleet_enable(t, 2.0);
    struct wsg_ip_key a = keyn(1), g = keyn(2);
    g.route = UINT32_MAX; /* max_connections_per_ip: never synced */
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0) == 0);
    assert_true(wsg_iptable_conn_begin(t, &g, &p, 0) == 0);
    for (int i = 0; i < 4; i++)
        assert_true(wsg_iptable_take(t, &a, &p, 100, 0) == 0);
    struct wsg_ip_fleet_item it[8];
    assert_int_equal(wsg_iptable_fleet_collect(t, it, 8), 1);
    assert_memory_equal(&it[0].key, &a, sizeof(a));
    assert_int_equal(it[0].d_msgs, 4);
    assert_int_equal(it[0].d_upg, 1);
    assert_int_equal(it[0].conns, 1);
    /* first read: the counters' history is not charged; others' connections are */
    wsg_iptable_fleet_apply(t, &it[0], 1000 + 4, 0, 50, 2, 0.1);
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0.2) > 0); /* 1 here + 2 elsewhere = 3 */
    /* collected again: the deltas were reset; live entries always come (heartbeat) */
    assert_int_equal(wsg_iptable_fleet_collect(t, it, 8), 1);
    assert_int_equal(it[0].d_msgs, 0);
    /* the others consumed 9 messages since: 9 tokens charged (10 - 4 - 9 + 2 refilled = -1 at t=0.2) */
    wsg_iptable_fleet_apply(t, &it[0], 1004 + 9, 0, 50, 0, 0.2);
    assert_true(wsg_iptable_take(t, &a, &p, 1, 0.2) > 0);
    assert_true(wsg_iptable_take(t, &a, &p, 1, 0.3) > 0);  /* 0 tokens */
    assert_true(wsg_iptable_take(t, &a, &p, 1, 0.4) == 0); /* 1 token */
    /* remote connection counts go stale after remote_ttl */
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0.3) == 0);
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0.3) == 0);
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0.3) > 0); /* 3 here */
    wsg_iptable_conn_end(t, &a);
    assert_int_equal(wsg_iptable_fleet_collect(t, it, 8), 1);
    wsg_iptable_fleet_apply(t, &it[0], 1014, 0, 52, 5, 1.0);
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 1.5) > 0);  /* 2 here + 5 elsewhere */
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 3.5) == 0); /* the 5 are 2.5 s old: forgotten */
    /* a counter that went backwards (Redis restarted, key expired) charges nothing */
    assert_int_equal(wsg_iptable_fleet_collect(t, it, 8), 1);
    wsg_iptable_fleet_apply(t, &it[0], 3, 0, 1, 0, 3.6);
    assert_true(wsg_iptable_take(t, &a, &p, 1, 3.6) == 0);
    /* an idle entry that just consumed is collected once, then not */
    wsg_iptable_conn_end(t, &a);
    wsg_iptable_conn_end(t, &a);
    wsg_iptable_conn_end(t, &a);
    assert_true(wsg_iptable_take(t, &a, &p, 1, 3.7) == 0);
    assert_int_equal(wsg_iptable_fleet_collect(t, it, 8), 1);
    assert_int_equal(wsg_iptable_fleet_collect(t, it, 8), 0);
    wsg_iptable_free(t);
}

static void test_iptable_new_and_footprint(void **state)
{
    (void)state;
    assert_null(wsg_iptable_new(1024, 3)); /* not a power of two */
    assert_null(wsg_iptable_new(1024, 0));
    assert_null(wsg_iptable_new(0, 4));
    assert_int_equal(wsg_iptable_footprint(1024, 3), 0);
    size_t f1 = wsg_iptable_footprint(65536, 64), f2 = wsg_iptable_footprint(131072, 64);
    assert_true(f1 > 65536 * 64 && f1 < 65536 * 200);    /* per entry: key, counts, links, 3 buckets */
    assert_true(f2 > f1 * 19 / 10 && f2 < f1 * 21 / 10); /* linear in entries */
    struct wsg_iptable *t = wsg_iptable_new(1000, 16);
    struct wsg_iptable_stats st;
    wsg_iptable_stats(t, &st);
    assert_int_equal(st.capacity, 16 * 63); /* ceil(1000 / 16) per shard */
    assert_int_equal(st.entries, 0);
    wsg_iptable_free(t);
    wsg_iptable_free(NULL);
}

static void test_iptable_lru_eviction(void **state)
{
    (void)state;
    struct wsg_iptable *t = wsg_iptable_new(4, 1);
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    p.ip_max_conns = 100;
    struct wsg_ip_key k[8];
    for (int i = 0; i < 8; i++)
        k[i] = keyn((uint32_t)i + 1);
    /* A B C D, each connected and gone: idle, A least recent */
    for (int i = 0; i < 4; i++) {
        assert_true(wsg_iptable_conn_begin(t, &k[i], &p, i) == 0);
        wsg_iptable_conn_end(t, &k[i]);
    }
    /* use A again: now B is the least recently used */
    assert_true(wsg_iptable_conn_begin(t, &k[0], &p, 10) == 0);
    wsg_iptable_conn_end(t, &k[0]);
    assert_true(wsg_iptable_conn_begin(t, &k[4], &p, 11) == 0); /* E evicts B */
    wsg_iptable_conn_end(t, &k[4]);
    assert_int_equal(wsg_iptable_conns(t, &k[1]), -1);
    assert_int_equal(wsg_iptable_conns(t, &k[0]), 0);
    assert_int_equal(wsg_iptable_conns(t, &k[2]), 0);
    assert_true(wsg_iptable_conn_begin(t, &k[5], &p, 12) == 0); /* F evicts C */
    assert_int_equal(wsg_iptable_conns(t, &k[2]), -1);
    assert_int_equal(wsg_iptable_conns(t, &k[3]), 0);
    struct wsg_iptable_stats st;
    wsg_iptable_stats(t, &st);
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.evicted, 2);
    assert_int_equal(st.live, 1);
    wsg_iptable_free(t);
}

static void test_iptable_live_never_evicted(void **state)
{
    (void)state;
    struct wsg_iptable *t = wsg_iptable_new(4, 1);
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    p.ip_upgrades.rate = 1000;
    struct wsg_ip_key k[6];
    for (int i = 0; i < 6; i++)
        k[i] = keyn((uint32_t)i + 100);
    /* A idle (oldest), B C D live */
    assert_true(wsg_iptable_conn_begin(t, &k[0], &p, 0) == 0);
    wsg_iptable_conn_end(t, &k[0]);
    for (int i = 1; i < 4; i++)
        assert_true(wsg_iptable_conn_begin(t, &k[i], &p, 1) == 0);
    /* E takes A's place; then the shard is all live: F is refused with 1 s, counted */
    assert_true(wsg_iptable_conn_begin(t, &k[4], &p, 2) == 0);
    assert_int_equal(wsg_iptable_conns(t, &k[0]), -1);
    assert_near(wsg_iptable_conn_begin(t, &k[5], &p, 3), 1.0);
    for (int i = 1; i < 5; i++)
        assert_int_equal(wsg_iptable_conns(t, &k[i]), 1);
    struct wsg_iptable_stats st;
    wsg_iptable_stats(t, &st);
    assert_int_equal(st.full, 1);
    assert_int_equal(st.live, 4);
    /* once one ends, F gets its entry */
    wsg_iptable_conn_end(t, &k[2]);
    assert_true(wsg_iptable_conn_begin(t, &k[5], &p, 4) == 0);
    assert_int_equal(wsg_iptable_conns(t, &k[2]), -1);
    /* a message from an IP that cannot be tracked is not held back */
    p.ip_msgs.rate = 1;
    assert_true(wsg_iptable_take(t, &k[0], &p, 10, 5) == 0);
    /* ending an unknown key or ending twice is harmless */
    wsg_iptable_conn_end(t, &k[0]);
    wsg_iptable_conn_end(t, &k[5]);
    wsg_iptable_conn_end(t, &k[5]);
    assert_int_equal(wsg_iptable_conns(t, &k[5]), 0);
    wsg_iptable_free(t);
}

static void test_iptable_sharding(void **state)
{
    (void)state;
    struct wsg_iptable *t = wsg_iptable_new(1 << 16, 16);
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    p.ip_max_conns = 10;
    /* 1600 consecutive addresses (the worst case for a weak hash) */
    for (uint32_t i = 0; i < 1600; i++) {
        struct wsg_ip_key k = keyn(i);
        assert_true(wsg_iptable_conn_begin(t, &k, &p, 0) == 0);
    }
    for (unsigned s = 0; s < 16; s++) {
        size_t n = wsg_iptable_shard_entries(t, s);
        if (n < 60 || n > 140) /* expected 100 each; binomial sd ~ 10 */
            fail_msg("shard %u has %zu of 1600 entries", s, n);
    }
    assert_int_equal(wsg_iptable_shard_entries(t, 16), 0);
    wsg_iptable_free(t);
}

static void test_iptable_admission(void **state)
{
    (void)state;
    struct wsg_iptable *t = wsg_iptable_new(1024, 4);
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    struct wsg_ip_key a = key4(1, "198.51.100.1"), b = key4(1, "198.51.100.2");
    /* nothing per IP configured: admitted without an entry */
    assert_int_equal(wsg_policy_per_ip(&p), 0);
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0) == 0);
    assert_int_equal(wsg_iptable_conns(t, &a), -1);
    /* ip_max_conns 2 */
    p.ip_max_conns = 2;
    assert_int_equal(wsg_policy_per_ip(&p), 1);
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0) == 0);
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0) == 0);
    assert_near(wsg_iptable_conn_begin(t, &a, &p, 0), 1.0); /* Retry-After 1 */
    assert_true(wsg_iptable_conn_begin(t, &b, &p, 0) == 0); /* another IP is unaffected */
    wsg_iptable_conn_end(t, &a);
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0) == 0);
    assert_int_equal(wsg_iptable_conns(t, &a), 2);
    /* ip_upgrades 0.5/s, burst 2: two at once, then one every 2 s; Retry-After is exact */
    struct wsg_ip_key c = key4(1, "198.51.100.3");
    p.ip_max_conns = 0;
    p.ip_upgrades.rate = 0.5;
    p.ip_upgrades.burst = 2;
    assert_true(wsg_iptable_conn_begin(t, &c, &p, 100) == 0);
    assert_true(wsg_iptable_conn_begin(t, &c, &p, 100) == 0);
    assert_near(wsg_iptable_conn_begin(t, &c, &p, 100), 2.0);
    assert_near(wsg_iptable_conn_begin(t, &c, &p, 101.5), 0.5);
    assert_true(wsg_iptable_conn_begin(t, &c, &p, 102) == 0);
    assert_int_equal(wsg_iptable_conns(t, &c), 3); /* refused upgrades were not counted */
    /* both limits: the connection limit answers first and costs no upgrade token */
    struct wsg_ip_key d = key4(1, "198.51.100.4");
    p.ip_max_conns = 1;
    p.ip_upgrades.rate = 1;
    p.ip_upgrades.burst = 1;
    assert_true(wsg_iptable_conn_begin(t, &d, &p, 200) == 0);
    assert_near(wsg_iptable_conn_begin(t, &d, &p, 205), 1.0);
    wsg_iptable_conn_end(t, &d);
    assert_true(wsg_iptable_conn_begin(t, &d, &p, 205) == 0);
    wsg_iptable_free(t);
}

static void test_iptable_take(void **state)
{
    (void)state;
    struct wsg_iptable *t = wsg_iptable_new(1024, 4);
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    struct wsg_ip_key a = key4(0, "203.0.113.9");
    assert_true(wsg_iptable_take(t, &a, &p, 1e9, 0) == 0); /* off */
    p.ip_msgs = (struct wsg_rate){.rate = 10, .burst = 10};
    p.ip_bytes = (struct wsg_rate){.rate = 1000, .burst = 1000};
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 0) == 0);
    for (int i = 0; i < 5; i++)
        assert_true(wsg_iptable_take(t, &a, &p, 100, 0) == 0);
    /* 500 bytes left: 600 would need 0.1 s; both or neither, so no message token is used */
    assert_near(wsg_iptable_take(t, &a, &p, 600, 0), 0.1);
    for (int i = 0; i < 5; i++)
        assert_true(wsg_iptable_take(t, &a, &p, 1, 0) == 0);
    /* messages exhausted (10): the wait is the longer of the two */
    assert_near(wsg_iptable_take(t, &a, &p, 1, 0), 0.1);
    assert_near(wsg_iptable_take(t, &a, &p, 800, 0), 0.305);
    /* a message larger than the byte burst goes when the bucket is full */
    assert_true(wsg_iptable_take(t, &a, &p, 5000, 10) == 0);
    assert_near(wsg_iptable_take(t, &a, &p, 1, 10), 4.001);
    /* a second connection of the same IP shares the buckets */
    assert_true(wsg_iptable_conn_begin(t, &a, &p, 10) == 0);
    assert_near(wsg_iptable_take(t, &a, &p, 1, 12), 2.001);
    wsg_iptable_free(t);
}

/* 4 threads doing begin / take / end on 8 overlapping keys, time frozen so no token comes back:
 * each key must hand out exactly its burst, and every connection count must be back at 0. */
#define NTHREADS 4
#define NKEYS 8
#define ROUNDS 20000
#define BURST 5000

struct worker {
    struct wsg_iptable *t;
    const struct wsg_policy *p;
    long taken[NKEYS];
    long refused;
    unsigned seed;
};

static atomic_int live[NKEYS];
static atomic_int max_live[NKEYS];

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        w->seed = w->seed * 1103515245u + 12345u;
        unsigned kid = (w->seed >> 16) % NKEYS;
        struct wsg_ip_key k = keyn(kid + 1);
        if (wsg_iptable_conn_begin(w->t, &k, w->p, 1.0) != 0) {
            w->refused++;
            continue;
        }
        int n = atomic_fetch_add(&live[kid], 1) + 1;
        int m = atomic_load(&max_live[kid]);
        while (n > m && !atomic_compare_exchange_weak(&max_live[kid], &m, n))
            ;
        if (wsg_iptable_take(w->t, &k, w->p, 1, 1.0) == 0)
            w->taken[kid]++;
        atomic_fetch_sub(&live[kid], 1);
        wsg_iptable_conn_end(w->t, &k);
    }
    return NULL;
}

static void test_iptable_threads(void **state)
{
    (void)state;
    struct wsg_iptable *t = wsg_iptable_new(1024, 4);
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    p.ip_max_conns = 3; /* 4 threads on 8 keys: sometimes 4 want one key */
    p.ip_msgs = (struct wsg_rate){.rate = 1, .burst = BURST};
    struct worker w[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].t = t;
        w[i].p = &p;
        w[i].seed = (unsigned)i * 7919u + 1;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    long attempts = 0;
    for (int k = 0; k < NKEYS; k++) {
        long total = 0;
        for (int i = 0; i < NTHREADS; i++)
            total += w[i].taken[k];
        attempts += total;
        assert_int_equal(total, BURST); /* 10000 tries per key on average, exactly BURST succeed */
        struct wsg_ip_key key = keyn((uint32_t)k + 1);
        assert_int_equal(wsg_iptable_conns(t, &key), 0);
        assert_true(atomic_load(&max_live[k]) <= 3);
    }
    assert_int_equal(attempts, NKEYS * BURST);
    struct wsg_iptable_stats st;
    wsg_iptable_stats(t, &st);
    assert_int_equal(st.entries, NKEYS);
    assert_int_equal(st.live, 0);
    assert_int_equal(st.evicted, 0);
    wsg_iptable_free(t);
}

/* ---- matching ---- */

static int host(const char *pattern, const char *h)
{
    return wsg_match_host(pattern, h, strlen(h));
}

static void test_match_host(void **state)
{
    (void)state;
    assert_true(host("chat.example.com", "chat.example.com"));
    assert_true(host("chat.example.com", "CHAT.Example.COM"));
    assert_true(host("Chat.Example.com", "chat.example.com"));
    assert_true(host("chat.example.com", "chat.example.com:8443"));
    assert_true(host("chat.example.com", "chat.example.com."));
    assert_true(host("chat.example.com", "chat.example.com.:443"));
    assert_false(host("chat.example.com", "chat.example.co"));
    assert_false(host("chat.example.com", "xchat.example.com"));
    assert_false(host("chat.example.com", ""));
    assert_false(host("chat.example.com", ":443"));
    /* wildcard: one or more labels, never the bare domain */
    assert_true(host("*.example.com", "a.example.com"));
    assert_true(host("*.example.com", "a.b.example.com"));
    assert_true(host("*.example.com", "A.EXAMPLE.COM:443"));
    assert_false(host("*.example.com", "example.com"));
    assert_false(host("*.example.com", "badexample.com"));
    assert_false(host("*.example.com", ".example.com"));
    assert_false(host("*.example.com", "a..example.com"));
    assert_false(host("*.example.com", "example.com.evil.net"));
    assert_false(host("*.example.com", "a.example.com.evil.net"));
    /* IPv6 literals keep their brackets, lose the port */
    assert_true(host("[::1]", "[::1]:8443"));
    assert_true(host("[::1]", "[::1]"));
    assert_true(host("10.0.0.1", "10.0.0.1:443"));
}

static int origin(const struct wsg_policy *p, const char *o)
{
    return wsg_match_origin(p, o, strlen(o));
}

static void add(char list[][128], unsigned *n, const char *v)
{
    strcpy(list[(*n)++], v);
}

static void test_match_origin(void **state)
{
    (void)state;
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    assert_true(origin(&p, "https://anything.test")); /* empty list: any */
    assert_true(origin(&p, "null"));
    add(p.origins, &p.norigins, "https://app.example.com");
    assert_true(origin(&p, "https://app.example.com"));
    assert_true(origin(&p, "HTTPS://APP.EXAMPLE.COM"));
    assert_true(origin(&p, "https://app.example.com:443")); /* default port */
    assert_false(origin(&p, "https://app.example.com:8443"));
    assert_false(origin(&p, "http://app.example.com"));
    assert_false(origin(&p, "https://evil.app.example.com"));
    assert_false(origin(&p, "https://app.example.com.evil.net"));
    assert_false(origin(&p, "https://app.example.comx"));
    assert_false(origin(&p, "null"));
    assert_false(origin(&p, ""));
    assert_false(origin(&p, "app.example.com"));
    assert_false(origin(&p, "https://app.example.com/"));
    assert_false(origin(&p, "https://app.example.com/path"));
    assert_false(origin(&p, "https://user@app.example.com"));
    assert_false(origin(&p, "https://app.example.com:0"));
    assert_false(origin(&p, "https://app.example.com:99999"));
    assert_false(origin(&p, "https://"));
    /* explicit ports and default-port normalisation both ways */
    add(p.origins, &p.norigins, "http://localhost:3000");
    add(p.origins, &p.norigins, "http://legacy.example.org:80");
    assert_true(origin(&p, "http://localhost:3000"));
    assert_false(origin(&p, "http://localhost"));
    assert_false(origin(&p, "https://localhost:3000"));
    assert_true(origin(&p, "http://legacy.example.org"));
    /* host patterns: any scheme and port */
    add(p.origins, &p.norigins, "*.example.net");
    assert_true(origin(&p, "https://a.example.net"));
    assert_true(origin(&p, "http://a.b.example.net:8080"));
    assert_false(origin(&p, "https://example.net"));
    assert_false(origin(&p, "https://badexample.net"));
    /* full origin with a wildcard host */
    add(p.origins, &p.norigins, "https://*.example.io");
    assert_true(origin(&p, "https://x.example.io"));
    assert_false(origin(&p, "http://x.example.io"));
    assert_false(origin(&p, "https://example.io"));
    /* IPv6 */
    add(p.origins, &p.norigins, "http://[::1]:8080");
    assert_true(origin(&p, "http://[::1]:8080"));
    assert_false(origin(&p, "http://[::1]"));
    /* "null" only when listed */
    assert_false(origin(&p, "null"));
    add(p.origins, &p.norigins, "null");
    assert_true(origin(&p, "null"));
    assert_true(origin(&p, " null "));
}

static int subp(const struct wsg_policy *p, const char *offer)
{
    return wsg_match_subprotocol(p, offer, strlen(offer));
}

static void test_match_subprotocol(void **state)
{
    (void)state;
    struct wsg_policy p;
    wsg_policy_defaults(&p);
    assert_true(subp(&p, "anything, else"));
    strcpy(p.subprotocols[p.nsubprotocols++], "graphql-transport-ws");
    strcpy(p.subprotocols[p.nsubprotocols++], "mqtt");
    assert_true(subp(&p, "mqtt"));
    assert_true(subp(&p, "v1.chat, mqtt"));
    assert_true(subp(&p, "v1.chat,graphql-transport-ws"));
    assert_true(subp(&p, "  mqtt  ,  "));
    assert_false(subp(&p, "MQTT")); /* case-sensitive */
    assert_false(subp(&p, "mqttx"));
    assert_false(subp(&p, "mqt"));
    assert_false(subp(&p, "v1.chat, graphql-ws"));
    assert_true(subp(&p, ""));     /* nothing offered: nothing to refuse */
    assert_true(subp(&p, " , ,")); /* still nothing */
    assert_true(wsg_match_subprotocol_one(&p, "mqtt", 4));
    assert_false(wsg_match_subprotocol_one(&p, "mqtt", 3));
    assert_false(wsg_match_subprotocol_one(&p, "evil", 4));
}

static void test_policy_defaults(void **state)
{
    (void)state;
    struct wsg_policy p;
    memset(&p, 0xa5, sizeof(p));
    wsg_policy_defaults(&p);
    assert_int_equal(p.c2u.max_frame, 1 << 20);
    assert_int_equal(p.c2u.max_message, 1 << 20);
    assert_int_equal(p.u2c.max_frame, 16 << 20);
    assert_int_equal(p.u2c.max_message, 16 << 20);
    assert_int_equal(p.c2u.max_fragments, 0);
    assert_true(p.c2u.allow_text && p.c2u.allow_binary && p.c2u.utf8);
    assert_true(p.u2c.allow_text && p.u2c.allow_binary && p.u2c.utf8);
    assert_true(p.conn_msgs.rate == 0 && p.conn_bytes.rate == 0 && p.ip_msgs.rate == 0 &&
                p.ip_bytes.rate == 0);
    assert_int_equal(p.rate_action, WSG_RATE_THROTTLE);
    assert_int_equal(p.ip_max_conns, 0);
    assert_true(p.ip_upgrades.rate == 0);
    assert_int_equal(p.ip_limit_status, 429);
    assert_int_equal(p.norigins, 0);
    assert_int_equal(p.nsubprotocols, 0);
    assert_int_equal(p.max_header_size, 0);
    assert_true(p.ping_interval == 30 && p.pong_timeout == 15);
    assert_true(p.max_lifetime == 0 && p.lifetime_jitter == 0);
    assert_int_equal(p.slow_consumer_bytes, 0);
    assert_true(p.slow_consumer_grace == 30);
    assert_int_equal(wsg_policy_per_ip(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_defaults),
        cmocka_unit_test(test_bucket_refill_and_cap),
        cmocka_unit_test(test_bucket_default_burst),
        cmocka_unit_test(test_bucket_off_and_odd_input),
        cmocka_unit_test(test_bucket_debt),
        cmocka_unit_test(test_bucket_charge),
        cmocka_unit_test(test_ip_key),
        cmocka_unit_test(test_iptable_new_and_footprint),
        cmocka_unit_test(test_iptable_lru_eviction),
        cmocka_unit_test(test_iptable_live_never_evicted),
        cmocka_unit_test(test_iptable_sharding),
        cmocka_unit_test(test_iptable_admission),
        cmocka_unit_test(test_iptable_take),
        cmocka_unit_test(test_iptable_threads),
        cmocka_unit_test(test_iptable_fleet),
        cmocka_unit_test(test_match_host),
        cmocka_unit_test(test_match_origin),
        cmocka_unit_test(test_match_subprotocol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
