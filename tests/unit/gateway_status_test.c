/*
 * gateway_status_test.c - the exposition-to-JSON conversion behind /status.json: exact output
 * for well-formed samples (labels unescaped then escaped as JSON, integers kept digit for digit,
 * timestamps dropped, types collected), and every malformed line skipped and counted, never
 * breaking the JSON. (The page itself: tests/e2e/93-status-page.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/status.h"

static char *convert(const char *text, unsigned *skipped)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    *skipped = wsg_status_json(f, text, strlen(text));
    fclose(f);
    return out;
}

static void expect(const char *text, const char *json, unsigned skipped)
{
    unsigned got;
    char *out = convert(text, &got);
    assert_string_equal(out, json);
    assert_int_equal(got, skipped);
    free(out);
}

static void test_well_formed(void **state)
{
    (void)state;
    expect("", "{\"types\":{},\"samples\":[],\"skipped\":0}\n", 0);
    expect("# HELP a_total Things.\n# TYPE a_total counter\na_total 18446744073709551615\n",
           "{\"types\":{\"a_total\":\"counter\"},\"samples\":[\n"
           "{\"name\":\"a_total\",\"labels\":{},\"value\":18446744073709551615}],\"skipped\":0}\n",
           0);
    /* label order kept; \\ \" \n unescaped, then JSON-escaped; a timestamp dropped; CRLF */
    expect("g{z=\"1\",a=\"x\\\\y\\\"z\\nw\"} 2.5 1700000000\r\nh -7\n",
           "{\"types\":{},\"samples\":[\n"
           "{\"name\":\"g\",\"labels\":{\"z\":\"1\",\"a\":\"x\\\\y\\\"z\\u000aw\"},\"value\":2.5},\n"
           "{\"name\":\"h\",\"labels\":{},\"value\":-7}],\"skipped\":0}\n",
           0);
    /* not JSON numbers as written: re-printed */
    expect("a 007\nb +3\nc 1e3\nd -0\n",
           "{\"types\":{},\"samples\":[\n{\"name\":\"a\",\"labels\":{},\"value\":7},\n"
           "{\"name\":\"b\",\"labels\":{},\"value\":3},\n{\"name\":\"c\",\"labels\":{},\"value\":1000},\n"
           "{\"name\":\"d\",\"labels\":{},\"value\":-0}],\"skipped\":0}\n", /* -0 is a JSON number */
           0);
    /* a bad TYPE line is ignored (comments are not counted as skipped) */
    expect("# TYPE x nonsense\n# TYPE  gauge\n#TYPE y gauge\n",
           "{\"types\":{},\"samples\":[],\"skipped\":0}\n", 0);
}

static void test_malformed_lines_skipped(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a NaN\n",
        "a +Inf\n",
        "a -Inf\n",
        "a 1e400\n",
        "a\n",
        "a \n",
        "a x\n",
        "a{b=\"1\"}2\n",
        "a{b=\"1\" 2\n",
        "a{b=1} 2\n",
        "a{=\"1\"} 2\n",
        "a{b=\"1\\x\"} 2\n",
        "a{b=\"1} 2\n",
        "a{:b=\"1\"} 2\n",
        "9a 1\n",
        "a 1 2 3\n",
        "a 1 x\n",
        "{b=\"1\"} 2\n",
        "a 1 -\n",
        "a 0x10\n",
        "a 12345678901234567890123456789012345678901234567890123456789012345\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "ok 1\n%sok 2\n", bad[i]);
        unsigned skipped;
        char *out = convert(text, &skipped);
        if (skipped != 1)
            fail_msg("%s: %u skipped", bad[i], skipped);
        assert_string_equal(out, "{\"types\":{},\"samples\":[\n{\"name\":\"ok\",\"labels\":{},\"value\":1},\n"
                                 "{\"name\":\"ok\",\"labels\":{},\"value\":2}],\"skipped\":1}\n");
        free(out);
    }
    /* more labels than the converter holds, and label values longer than its arena */
    char many[1024] = "a{";
    for (int i = 0; i < 20; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "l%d=\"v\",", i);
    strcat(many, "} 1\n");
    expect(many, "{\"types\":{},\"samples\":[],\"skipped\":1}\n", 1);
    char *big = malloc(5000);
    strcpy(big, "a{b=\"");
    memset(big + 5, 'x', 4000);
    strcpy(big + 4005, "\"} 1\n");
    expect(big, "{\"types\":{},\"samples\":[],\"skipped\":1}\n", 1);
    free(big);
    /* control and non-ASCII bytes in a label value come out escaped */
    expect("a{b=\"\x01\xff\"} 1",
           "{\"types\":{},\"samples\":[\n{\"name\":\"a\",\"labels\":{\"b\":\"\\u0001\\u00ff\"},\"value\":1}],"
           "\"skipped\":0}\n",
           0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_malformed_lines_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
