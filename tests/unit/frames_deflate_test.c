/*
 * frames_deflate_test.c - unit tests of frames/deflate.c (the permessage-deflate offer forwarded to
 * the upstream and the check of its answer, RFC 7692 §7.1) and of the relay's inflate-and-check
 * path (frames/ws.c with lim.deflate): real zlib streams, cut at every byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "frames/ws.h"
#include "policies/base/buf.h"

static size_t offer(const char *in, char *out, struct wsg_ws_deflate *d)
{
    return wsg_ws_deflate_offer(in, strlen(in), out, 160, d);
}

static void test_offer(void **state)
{
    (void)state;
    char out[160];
    struct wsg_ws_deflate d;
    assert_int_not_equal(offer("permessage-deflate; client_max_window_bits", out, &d), 0);
    assert_string_equal(out, "permessage-deflate; client_max_window_bits");
    assert_true(d.client_bits_param && d.client_bits == 0);
    /* the first valid offer wins; others and other extensions are left out */
    assert_int_not_equal(
        offer("x-foo, permessage-deflate; bogus, permessage-deflate; server_max_window_bits=10; "
              "client_no_context_takeover, permessage-deflate",
              out, &d),
        0);
    assert_string_equal(out, "permessage-deflate; client_no_context_takeover; server_max_window_bits=10");
    assert_int_equal(d.server_bits, 10);
    assert_true(d.client_no_context && !d.server_no_context);
    assert_int_not_equal(
        offer("PERMESSAGE-DEFLATE ; Server_No_Context_Takeover ; client_max_window_bits=\"12\"", out, &d), 0);
    assert_string_equal(out, "permessage-deflate; server_no_context_takeover; client_max_window_bits=12");
    const char *bad[] = {"",
                         "x-webkit-deflate-frame",
                         "permessage-deflate; server_max_window_bits",
                         "permessage-deflate; server_max_window_bits=7",
                         "permessage-deflate; server_max_window_bits=16",
                         "permessage-deflate; server_max_window_bits=010",
                         "permessage-deflate; client_max_window_bits=x",
                         "permessage-deflate; server_no_context_takeover=1",
                         "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                         "permessage-deflate; unknown",
                         "permessage-deflate; ;",
                         "permessage-deflate=1",
                         "permessage-deflate; client_max_window_bits=\"9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (offer(bad[i], out, &d) != 0)
            fail_msg("accepted: %s -> %s", bad[i], out);
    /* the formatter alone (the answer wsgate writes when it requires client_no_context_takeover) */
    struct wsg_ws_deflate all = {.server_no_context = 1,
                                 .client_no_context = 1,
                                 .client_bits_param = 1,
                                 .server_bits = 9,
                                 .client_bits = 15};
    size_t alen = wsg_ws_deflate_format(&all, out, sizeof(out));
    assert_int_equal(alen, 127);
    assert_int_equal(alen, strlen(out));
    assert_string_equal(out, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                             "server_max_window_bits=9; client_max_window_bits=15");
    struct wsg_ws_deflate none = {0};
    assert_int_equal(wsg_ws_deflate_format(&none, out, sizeof(out)), 18);
    assert_string_equal(out, "permessage-deflate");
    /* too small a buffer: 0, never a cut parameter */
    for (size_t cap = 0; cap < 128; cap++)
        assert_int_equal(wsg_ws_deflate_format(&all, out, cap), 0);
    assert_int_equal(wsg_ws_deflate_format(&all, out, 128), 127);
    /* what it writes is an offer that reads back the same */
    struct wsg_ws_deflate back;
    char again[160];
    assert_int_not_equal(offer("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                               "server_max_window_bits=9; client_max_window_bits=15",
                               again, &back),
                         0);
    assert_memory_equal(&back, &all, sizeof(all));
}

static int answer(const char *offer_s, const char *ans, struct wsg_ws_deflate *neg, const char **why)
{
    char out[160];
    struct wsg_ws_deflate o;
    assert_int_not_equal(offer(offer_s, out, &o), 0);
    return wsg_ws_deflate_answer(ans, strlen(ans), &o, neg, why);
}

static void test_answer(void **state)
{
    (void)state;
    struct wsg_ws_deflate n;
    const char *why = NULL;
    assert_int_equal(answer("permessage-deflate", "permessage-deflate", &n, &why), 0);
    assert_int_equal(answer("permessage-deflate; client_max_window_bits",
                            "permessage-deflate; client_max_window_bits=10; server_no_context_takeover", &n,
                            &why),
                     0);
    assert_true(n.server_no_context && n.client_bits == 10);
    assert_int_equal(answer("permessage-deflate; client_no_context_takeover",
                            "permessage-deflate; client_no_context_takeover", &n, &why),
                     0);
    assert_true(n.client_no_context);
    struct {
        const char *offer, *ans, *why;
    } bad[] = {
        {"permessage-deflate", "permessage-deflate; client_max_window_bits=10", "not offered"},
        {"permessage-deflate; client_max_window_bits=9", "permessage-deflate; client_max_window_bits=10",
         "above"},
        {"permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits", "value"},
        {"permessage-deflate; server_max_window_bits=10", "permessage-deflate", "server_max_window_bits"},
        {"permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=11",
         "above"},
        {"permessage-deflate; server_no_context_takeover", "permessage-deflate",
         "server_no_context_takeover"},
        {"permessage-deflate", "permessage-deflate, permessage-deflate", "more than one"},
        {"permessage-deflate", "x-webkit-deflate-frame", "not offered"},
        {"permessage-deflate", "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
         "repeated"},
        {"permessage-deflate", "permessage-deflate; foo=1", "unknown"},
        {"permessage-deflate", "", "malformed"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (answer(bad[i].offer, bad[i].ans, &n, &why) != -1)
            fail_msg("accepted: %s / %s", bad[i].offer, bad[i].ans);
        if (why == NULL || strstr(why, bad[i].why) == NULL)
            fail_msg("%s / %s: why \"%s\", want \"%s\"", bad[i].offer, bad[i].ans, why ? why : "(null)",
                     bad[i].why);
    }
}

/* ---- the relay's inflate check, U2C (unmasked, so the wire is easy to build) ---- */

static ssize_t sink(void *ctx, const uint8_t *data, size_t len)
{
    struct wsg_buf *b = ctx;
    return (ssize_t)wsg_buf_put(b, data, len);
}

static size_t zmsg(const void *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t len = cap - z.avail_out - 4;
    deflateEnd(&z);
    return len;
}

/* One compressed message through a U2C relay fed `step` bytes at a time. @return close code or 0. */
static int relay(const struct wsg_ws_limits *lim, int opcode, const void *plain, size_t n, size_t step,
                 size_t *forwarded)
{
    static uint8_t z[1 << 20], wire[(1 << 20) + 16];
    size_t zn = zmsg(plain, n, z, sizeof(z));
    size_t hl = 2;
    wire[0] = (uint8_t)(0x80 | 0x40 | opcode);
    if (zn < 126) {
        wire[1] = (uint8_t)zn;
    } else if (zn < 65536) {
        wire[1] = 126;
        wire[2] = (uint8_t)(zn >> 8);
        wire[3] = (uint8_t)zn;
        hl = 4;
    } else {
        wire[1] = 127;
        memset(wire + 2, 0, 8);
        wire[7] = (uint8_t)(zn >> 16);
        wire[8] = (uint8_t)(zn >> 8);
        wire[9] = (uint8_t)zn;
        hl = 10;
    }
    memcpy(wire + hl, z, zn);
    struct wsg_buf src, out;
    wsg_buf_setup(&src, 1 << 16);
    wsg_buf_setup(&out, 1 << 21);
    struct wsg_ws_relay *r = wsg_ws_relay_new(WSG_WS_U2C, lim, &src, sink, &out, NULL, NULL);
    assert_non_null(r);
    int code = 0;
    for (size_t off = 0; off < hl + zn && code == 0;) {
        size_t k = hl + zn - off < step ? hl + zn - off : step;
        k = wsg_buf_put(&src, wire + off, k);
        off += k;
        while (code == 0) {
            int rc = wsg_ws_relay_pump(r);
            if (rc < 0)
                code = wsg_ws_relay_error(r, NULL);
            if (rc <= 0)
                break;
        }
    }
    *forwarded = wsg_buf_len(&out);
    if (code != 0) /* a failing message is never completed toward the other hop */
        assert_true(*forwarded < hl + zn);
    if (code == 0) { /* forwarded as it came */
        uint32_t len;
        const uint8_t *p = wsg_buf_peek(&out, &len);
        assert_int_equal(len, hl + zn);
        assert_memory_equal(p, wire, hl + zn);
    }
    wsg_ws_relay_free(r);
    wsg_buf_free(&src);
    wsg_buf_free(&out);
    return code;
}

static void test_inflate_check(void **state)
{
    (void)state;
    struct wsg_ws_limits lim = {.deflate = 1, .max_message = 64 << 10, .deflate_max_ratio = 100};
    const char text[] = "h\xc3\xa9llo w\xc3\xb6rld, \xe2\x82\xac and \xf0\x9f\x98\x80";
    size_t fwd;
    for (size_t step = 1; step <= 40; step++) {
        assert_int_equal(relay(&lim, 1, text, strlen(text), step, &fwd), 0);
        /* invalid UTF-8 at the end, and a sequence cut at the end of the message */
        assert_int_equal(relay(&lim, 1, "abc\xff", 4, step, &fwd), 1007);
        assert_int_equal(relay(&lim, 1, "abc\xe2\x82", 5, step, &fwd), 1007);
        /* as binary the same bytes pass */
        assert_int_equal(relay(&lim, 2, "abc\xff", 4, step, &fwd), 0);
    }
    /* a zero bomb: 1009 long before the end, nothing forwarded */
    uint8_t *zeros = calloc(1, 8 << 20);
    assert_non_null(zeros);
    assert_int_equal(relay(&lim, 2, zeros, 8 << 20, 4096, &fwd), 1009);
    assert_int_equal(fwd, 0);
    /* 64 KiB exactly passes; one more byte does not */
    assert_int_equal(relay(&lim, 2, zeros, 64 << 10, 4096, &fwd), 0);
    lim.deflate_max_ratio = 0;
    assert_int_equal(relay(&lim, 2, zeros, (64 << 10) + 1, 4096, &fwd), 1009);
    /* the ratio rule alone */
    lim.max_message = 0;
    lim.deflate_max_ratio = 100;
    assert_int_equal(relay(&lim, 2, zeros, 1 << 20, 4096, &fwd), 1009);
    lim.deflate_max_ratio = 0;
    assert_int_equal(relay(&lim, 2, zeros, 1 << 20, 4096, &fwd), 0);
    free(zeros);
    /* RSV1 without deflate negotiated */
    struct wsg_ws_limits plain = {0};
    assert_int_equal(relay(&plain, 1, "hi", 2, 7, &fwd), 1002);
}

/* ---- the inflate hook: slices, hold, refuse ---- */

static struct {
    int mode; /* 0 go on, 1 WSG_AGAIN after every slice that inflated something, 2 1008 past limit */
    uint64_t sum, calls, max_one, limit;
} hk;

static int hook(void *ctx, uint64_t n, const char **reason)
{
    (void)ctx;
    hk.calls++;
    hk.sum += n;
    if (n > hk.max_one)
        hk.max_one = n;
    if (hk.mode == 1 && n > 0)
        return WSG_AGAIN;
    if (hk.mode == 2 && hk.sum > hk.limit) {
        *reason = "inflate rate";
        return 1008;
    }
    return 0;
}

/* A 4 MiB zero message (about 4 KiB compressed: the worst ratio deflate has) and 300 KiB of JSON,
 * each in one frame, through a U2C relay with the hook in `mode`; the whole wire is in src at once.
 * @return close code or 0; *pumps: pumps that made progress. */
static int hooked(int mode, int json, uint64_t limit, uint64_t *pumps)
{
    static uint8_t plain[4 << 20], z[1 << 20], wire[(1 << 20) + 16];
    size_t n = sizeof(plain);
    if (json) {
        n = 0;
        for (unsigned i = 0; n + 64 < 300 << 10; i++)
            n += (size_t)snprintf((char *)plain + n, 64, "{\"id\":%u,\"name\":\"user%u\",\"ok\":true},", i,
                                  i % 100);
    } else {
        memset(plain, 0, n);
    }
    size_t zn = zmsg(plain, n, z, sizeof(z));
    assert_true(zn >= 126 && zn < 65536); /* the 2-byte length (RFC 6455 §5.2: minimal) */
    wire[0] = 0x80 | 0x40 | 2;
    wire[1] = 126;
    wire[2] = (uint8_t)(zn >> 8);
    wire[3] = (uint8_t)zn;
    memcpy(wire + 4, z, zn);
    struct wsg_buf src, out;
    wsg_buf_setup(&src, 1 << 21);
    wsg_buf_setup(&out, 1 << 21);
    assert_int_equal(wsg_buf_put(&src, wire, 4 + zn), 4 + zn);
    struct wsg_ws_limits lim = {.deflate = 1};
    struct wsg_ws_relay *r = wsg_ws_relay_new(WSG_WS_U2C, &lim, &src, sink, &out, NULL, NULL);
    assert_non_null(r);
    wsg_ws_relay_set_inflate_hook(r, hook, NULL);
    memset(&hk, 0, sizeof(hk));
    hk.mode = mode;
    hk.limit = limit;
    int code = 0, rc;
    *pumps = 0;
    while ((rc = wsg_ws_relay_pump(r)) > 0)
        ++*pumps;
    if (rc < 0)
        code = wsg_ws_relay_error(r, NULL);
    if (code == 0) { /* forwarded as it came, and every inflated byte was reported */
        uint32_t len;
        const uint8_t *p = wsg_buf_peek(&out, &len);
        assert_int_equal(len, 4 + zn);
        assert_memory_equal(p, wire, 4 + zn);
        assert_int_equal(hk.sum, n);
    } else {
        assert_true(wsg_buf_len(&out) < 4 + zn); /* never completed */
    }
    /* no slice inflates past what WSG_WS_INFLATE_SLICE compressed bytes can hold */
    assert_true(hk.max_one <= (uint64_t)WSG_WS_INFLATE_SLICE * 1032 + 4 * 1032);
    wsg_ws_relay_free(r);
    wsg_buf_free(&src);
    wsg_buf_free(&out);
    return code;
}

static void test_inflate_hook(void **state)
{
    (void)state;
    uint64_t pumps;
    for (int json = 0; json < 2; json++) {
        /* go on: one pump does it all, in several slices */
        assert_int_equal(hooked(0, json, 0, &pumps), 0);
        assert_true(hk.calls >= 2);
        /* held after every slice: one slice per pump, each pump first asks again with 0 */
        assert_int_equal(hooked(1, json, 0, &pumps), 0);
        assert_true(pumps >= hk.calls / 2 && pumps >= 2);
        /* refused past 100 KiB: 1008, the message not completed */
        assert_int_equal(hooked(2, json, 100 << 10, &pumps), 1008);
        assert_true(hk.sum > 100 << 10 && hk.sum < 3 << 20);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offer),
        cmocka_unit_test(test_answer),
        cmocka_unit_test(test_inflate_check),
        cmocka_unit_test(test_inflate_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
