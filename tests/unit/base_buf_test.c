/* base_buf_test.c - the linear sliding buffer: reserve/commit, peek/consume, lazy memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "policies/base/buf.h"

static void fill(uint8_t *p, size_t n, uint8_t first)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(first + i);
}

static void test_setup_is_lazy(void **state)
{
    (void)state;
    struct wsg_buf b;
    memset(&b, 0xa5, sizeof(b));
    wsg_buf_setup(&b, 64);
    assert_null(b.base);
    assert_int_equal(b.cap, 64);
    assert_int_equal(b.hiwat, 64);
    assert_int_equal(b.lowat, 32);
    assert_int_equal(wsg_buf_len(&b), 0);
    assert_int_equal(wsg_buf_room(&b), 64);
    uint32_t len = 99;
    assert_null(wsg_buf_peek(&b, &len));
    assert_int_equal(len, 0);
    assert_int_equal(wsg_buf_take(&b, NULL, 10), 0);
    assert_null(b.base); /* peek/take on an empty buffer allocate nothing */

    uint32_t room;
    uint8_t *p = wsg_buf_reserve(&b, &room);
    assert_non_null(p);
    assert_non_null(b.base);
    assert_ptr_equal(p, b.base);
    assert_int_equal(room, 64);
    wsg_buf_free(&b);
    assert_null(b.base);
    assert_int_equal(b.cap, 64); /* cap and marks kept */
    assert_int_equal(b.hiwat, 64);

    /* a zeroed buffer (cap 0) never allocates */
    struct wsg_buf z;
    memset(&z, 0, sizeof(z));
    assert_null(wsg_buf_reserve(&z, &room));
    assert_int_equal(room, 0);
    assert_int_equal(wsg_buf_put(&z, "x", 1), 0);
    assert_null(z.base);
}

static void test_reserve_commit_peek_consume(void **state)
{
    (void)state;
    struct wsg_buf b;
    wsg_buf_setup(&b, 16);
    uint32_t room, len;
    uint8_t *p = wsg_buf_reserve(&b, &room);
    assert_non_null(p);
    assert_int_equal(room, 16);
    fill(p, 10, 0);
    wsg_buf_commit(&b, 10);
    assert_int_equal(wsg_buf_len(&b), 10);
    assert_int_equal(wsg_buf_room(&b), 6);

    const uint8_t *q = wsg_buf_peek(&b, &len);
    assert_int_equal(len, 10);
    assert_int_equal(q[0], 0);
    assert_int_equal(q[9], 9);

    wsg_buf_consume(&b, 4);
    q = wsg_buf_peek(&b, &len);
    assert_int_equal(len, 6);
    assert_int_equal(q[0], 4);

    /* tail room left: reserve appends without sliding */
    p = wsg_buf_reserve(&b, &room);
    assert_int_equal(room, 6);
    assert_ptr_equal(p, b.base + 14 - 4);
    assert_int_equal(b.head, 4);
    fill(p, 6, 10);
    wsg_buf_commit(&b, 6);
    q = wsg_buf_peek(&b, &len);
    assert_int_equal(len, 12);
    for (uint32_t i = 0; i < len; i++)
        assert_int_equal(q[i], 4 + i);

    /* consuming everything realigns to offset 0 */
    wsg_buf_consume(&b, 12);
    assert_int_equal(wsg_buf_len(&b), 0);
    assert_int_equal(b.head, 0);
    assert_null(wsg_buf_peek(&b, &len));
    assert_non_null(b.base); /* memory kept until shrink */
    wsg_buf_free(&b);
}

static void test_slide_when_tail_full(void **state)
{
    (void)state;
    struct wsg_buf b;
    wsg_buf_setup(&b, 16);
    uint8_t src[16], out[16];
    fill(src, 16, 100);
    assert_int_equal(wsg_buf_put(&b, src, 16), 16);
    /* full: reserve gives nothing */
    uint32_t room, len;
    assert_null(wsg_buf_reserve(&b, &room));
    assert_int_equal(room, 0);
    wsg_buf_consume(&b, 5);
    assert_int_equal(b.head, 5);
    /* no tail room but 5 free at the front: reserve slides the 11 unread bytes to 0 */
    uint8_t *p = wsg_buf_reserve(&b, &room);
    assert_non_null(p);
    assert_int_equal(b.head, 0);
    assert_int_equal(room, 5);
    assert_ptr_equal(p, b.base + 11);
    const uint8_t *q = wsg_buf_peek(&b, &len);
    assert_int_equal(len, 11);
    assert_ptr_equal(q, b.base);
    for (uint32_t i = 0; i < 11; i++)
        assert_int_equal(q[i], 105 + i);
    fill(p, 5, 116);
    wsg_buf_commit(&b, 5);
    assert_int_equal(wsg_buf_take(&b, out, sizeof(out)), 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(out[i], (uint8_t)(105 + i));

    /* put slides too, and keeps order across the slide */
    wsg_buf_free(&b);
    wsg_buf_setup(&b, 8);
    assert_int_equal(wsg_buf_put(&b, "abcdefgh", 8), 8);
    wsg_buf_consume(&b, 6);
    assert_int_equal(wsg_buf_put(&b, "ijklmn", 6), 6);
    char s[9] = {0};
    assert_int_equal(wsg_buf_take(&b, s, 8), 8);
    assert_string_equal(s, "ghijklmn");
    wsg_buf_free(&b);
}

static void test_put_short_and_take(void **state)
{
    (void)state;
    struct wsg_buf b;
    wsg_buf_setup(&b, 10);
    assert_int_equal(wsg_buf_put(&b, "0123456", 7), 7);
    assert_int_equal(wsg_buf_put(&b, "789abc", 6), 3); /* short: only 3 fit */
    assert_int_equal(wsg_buf_len(&b), 10);
    assert_int_equal(wsg_buf_room(&b), 0);
    assert_int_equal(wsg_buf_put(&b, "z", 1), 0);
    assert_int_equal(wsg_buf_put(&b, "", 0), 0);

    char out[16] = {0};
    assert_int_equal(wsg_buf_take(&b, out, 4), 4);
    assert_memory_equal(out, "0123", 4);
    assert_int_equal(wsg_buf_len(&b), 6);
    memset(out, 0, sizeof(out));
    assert_int_equal(wsg_buf_take(&b, out, sizeof(out)), 6); /* short: only 6 held */
    assert_string_equal(out, "456789");
    assert_int_equal(wsg_buf_take(&b, out, sizeof(out)), 0);
    assert_int_equal(b.head, 0);
    wsg_buf_free(&b);
}

static void test_shrink(void **state)
{
    (void)state;
    struct wsg_buf b;
    wsg_buf_setup(&b, 32);
    assert_int_equal(wsg_buf_put(&b, "hello", 5), 5);
    wsg_buf_shrink(&b); /* not empty: keeps memory and bytes */
    assert_non_null(b.base);
    uint32_t len;
    const uint8_t *q = wsg_buf_peek(&b, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(q, "hello", 5);
    wsg_buf_consume(&b, 5);
    wsg_buf_shrink(&b); /* empty: memory given back */
    assert_null(b.base);
    assert_int_equal(b.cap, 32);
    assert_int_equal(wsg_buf_room(&b), 32);
    /* usable again after shrink: allocates anew */
    assert_int_equal(wsg_buf_put(&b, "again", 5), 5);
    assert_non_null(b.base);
    q = wsg_buf_peek(&b, &len);
    assert_memory_equal(q, "again", 5);
    wsg_buf_free(&b);
    wsg_buf_free(&b); /* idempotent */
    wsg_buf_shrink(&b);
}

static void test_watermarks(void **state)
{
    (void)state;
    struct wsg_buf b;
    wsg_buf_setup(&b, 100);
    b.hiwat = 80;
    b.lowat = 20;
    uint8_t data[100] = {0};
    assert_false(wsg_buf_above_hiwat(&b));
    assert_true(wsg_buf_below_lowat(&b));
    assert_int_equal(wsg_buf_put(&b, data, 20), 20);
    assert_true(wsg_buf_below_lowat(&b)); /* at lowat counts as below */
    assert_int_equal(wsg_buf_put(&b, data, 1), 1);
    assert_false(wsg_buf_below_lowat(&b));
    assert_false(wsg_buf_above_hiwat(&b));
    assert_int_equal(wsg_buf_put(&b, data, 58), 58);
    assert_false(wsg_buf_above_hiwat(&b));
    assert_int_equal(wsg_buf_put(&b, data, 1), 1);
    assert_true(wsg_buf_above_hiwat(&b)); /* at hiwat counts as above */
    wsg_buf_consume(&b, 59);
    assert_false(wsg_buf_above_hiwat(&b));
    assert_false(wsg_buf_below_lowat(&b));
    wsg_buf_consume(&b, 1);
    assert_true(wsg_buf_below_lowat(&b));
    wsg_buf_free(&b);

    /* defaults from setup: hiwat = cap, lowat = cap / 2 */
    wsg_buf_setup(&b, 9);
    assert_int_equal(wsg_buf_put(&b, data, 9), 9);
    assert_true(wsg_buf_above_hiwat(&b));
    wsg_buf_consume(&b, 5);
    assert_true(wsg_buf_below_lowat(&b)); /* 4 <= 9/2 */
    wsg_buf_free(&b);
}

/* Byte stream through a small buffer in odd-sized pieces comes out intact and in order. */
static void test_stream_integrity(void **state)
{
    (void)state;
    struct wsg_buf b;
    wsg_buf_setup(&b, 37);
    uint8_t in = 0, expect = 0;
    unsigned seed = 12345;
    size_t total = 0;
    while (total < 200000) {
        seed = seed * 1103515245u + 12345u;
        uint32_t want = (seed >> 16) % 50, room;
        uint8_t *p = wsg_buf_reserve(&b, &room);
        if (p != NULL) {
            uint32_t n = want < room ? want : room;
            for (uint32_t i = 0; i < n; i++)
                p[i] = in++;
            wsg_buf_commit(&b, n);
        }
        seed = seed * 1103515245u + 12345u;
        uint8_t out[64];
        size_t got = wsg_buf_take(&b, out, (seed >> 16) % 45);
        for (size_t i = 0; i < got; i++)
            assert_int_equal(out[i], expect++);
        total += got;
        assert_true(b.head + b.len <= b.cap);
    }
    wsg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setup_is_lazy),
        cmocka_unit_test(test_reserve_commit_peek_consume),
        cmocka_unit_test(test_slide_when_tail_full),
        cmocka_unit_test(test_put_short_and_take),
        cmocka_unit_test(test_shrink),
        cmocka_unit_test(test_watermarks),
        cmocka_unit_test(test_stream_integrity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
