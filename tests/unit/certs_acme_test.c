/*
 * certs_acme_test.c - the ACME client's building blocks (certs/json.c, certs/jws.c): the strict
 * JSON reader against RFC 8259's grammar, RFC 8555's example objects, truncated and hostile input;
 * base64url against RFC 4648's vectors and its strictness; the JWK thumbprint against RFC 7638's
 * example; ES256 against RFC 7515 appendix A.3 (its key, its signature verified, ours verified and
 * deterministic); ACME request bodies (RFC 8555 section 6.2) taken apart and checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs/admin_client.c"
#include "certs/https.c"
#include "certs/json.c"
#include "certs/jws.c"

static struct wsg_certs_json *parse(const char *s)
{
    return wsg_certs_json_parse(s, strlen(s));
}

static int accepts(const char *s)
{
    struct wsg_certs_json *j = parse(s);
    wsg_certs_json_free(j);
    return j != NULL;
}

/* ---- JSON ---- */

static void test_json_numbers(void **state)
{
    (void)state;
    static const char *const good[] = {"0",   "-0",   "1",    "-1",        "10",    "0.5",         "-0.5",
                                       "1e2", "1E+2", "1e-2", "12.34e056", "[0,1]", "{\"a\":-0.0}"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!accepts(good[i]))
            fail_msg("refused %s", good[i]);
    }
    static const char *const bad[] = {"01",
                                      "-01",
                                      "00",
                                      "1.",
                                      ".5",
                                      "+1",
                                      "-",
                                      "1e",
                                      "1e+",
                                      "1.e2",
                                      "0x1",
                                      "1e400",
                                      "-1e400",
                                      "NaN",
                                      "Infinity",
                                      "-Infinity",
                                      "[01]",
                                      "[1.]",
                                      "1 2",
                                      "--1",
                                      "0.5.5",
                                      "1ee2",
                                      "[-]",
                                      "1234567890123456789012345678901234567890"
                                      "1234567890123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (accepts(bad[i]))
            fail_msg("accepted %s", bad[i]);
    }
    struct wsg_certs_json *j = parse("[-12.5e1, 0, 3]");
    assert_non_null(j);
    assert_true(wsg_certs_json_num(j->kid[0], 0) == -125);
    wsg_certs_json_free(j);
}

static void test_json_strings(void **state)
{
    (void)state;
    static const char *const good[] = {"\"\"",
                                       "\"\\u00e9\"",
                                       "\"\xc3\xa9\"",
                                       "\"\xe2\x82\xac\"",
                                       "\"\xf0\x9f\x98\x80\"",
                                       "\"\\ud83d\\ude00\"",
                                       "\"\xf4\x8f\xbf\xbf\"",
                                       "\"\xef\xbf\xbd\"",
                                       "\"\\/\""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!accepts(good[i]))
            fail_msg("refused %s", good[i]);
    }
    static const char *const bad[] = {
        "\"\\u0000\"",          /* NUL: the tree's strings would be cut short */
        "\"a\\u0000b\"",        /* the same, inside */
        "\"\\ud800\"",          /* high surrogate alone */
        "\"\\ud800x\"",         /* ... followed by a character */
        "\"\\ud800\\u0041\"",   /* ... followed by a non-surrogate escape */
        "\"\\udc00\"",          /* low surrogate alone */
        "\"\\udc00\\ud800\"",   /* a pair in the wrong order */
        "\"\\u12\"",            /* short escape */
        "\"\\u12g4\"",          /* not hex */
        "\"\\x41\"",            /* no such escape */
        "\"\\'\"",              /* nor this */
        "\"\xc0\xaf\"",         /* overlong '/' */
        "\"\xe0\x80\xaf\"",     /* overlong, three bytes */
        "\"\xf0\x80\x80\xaf\"", /* overlong, four bytes */
        "\"\xed\xa0\x80\"",     /* a surrogate encoded in UTF-8 */
        "\"\xf4\x90\x80\x80\"", /* above U+10FFFF */
        "\"\xf5\x80\x80\x80\"", /* no such lead byte */
        "\"\xff\"",             /* nor this */
        "\"\x80\"",             /* continuation without a lead */
        "\"\xe2\x82\"",         /* sequence cut by the quote */
        "\"\xc3\"",             /* ... */
        "\"a\tb\"",             /* raw control character */
        "\"a\nb\"",             /* ... */
        "\"open",               /* unterminated */
        "'single'",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (accepts(bad[i]))
            fail_msg("accepted bad string #%zu", i);
    }
    /* the raw DEL is allowed (RFC 8259 escapes only below 0x20) */
    assert_true(accepts("\"\x7f\""));
    /* a NUL byte in the input itself, not escaped */
    static const char nul[] = "\"a\0b\"";
    assert_null(wsg_certs_json_parse(nul, sizeof(nul) - 1));
    struct wsg_certs_json *j = parse("\"\\ud83d\\ude00\\u00e9\\n\"");
    assert_non_null(j);
    assert_string_equal(j->string, "\xf0\x9f\x98\x80\xc3\xa9\n");
    wsg_certs_json_free(j);
}

static void test_json_structure(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{,}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{1:1}",
        "{a:1}",
        "tru",
        "truex",
        "nul",
        "nulll",
        "True",
        "[true false]",
        "{} {}",
        "{} x",
        "\xef\xbb\xbf{}",            /* byte order mark */
        "{\"a\":1,\"a\":2}",         /* duplicate member: two readers could pick different ones */
        "{\"b\":1,\"a\":2,\"b\":3}", /* ... not adjacent */
        "{\"a\":{\"x\":1,\"x\":1}}", /* ... nested */
        "{\"\\u0061\":1,\"a\":2}",   /* ... spelled differently */
        "[1]\x0b",                   /* vertical tab is not JSON whitespace */
        "\x0c[1]",                   /* nor form feed */
        "/* */ 1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (accepts(bad[i]))
            fail_msg("accepted %s", bad[i]);
    }
    static const char *const good[] = {" \t\r\n[ ] ", "{}", "{\"a\":1,\"b\":1}",
                                       "{\"a\":{\"a\":{\"a\":null}}}", "[[],{},\"\",0,true,false,null]"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!accepts(good[i]))
            fail_msg("refused %s", good[i]);
    }
    /* depth: 32 nested containers are fine, 33 are not */
    char deep[80];
    memset(deep, '[', 32);
    memset(deep + 32, ']', 32);
    struct wsg_certs_json *ok = wsg_certs_json_parse(deep, 64);
    assert_non_null(ok);
    wsg_certs_json_free(ok);
    memset(deep, '[', 33);
    memset(deep + 33, ']', 33);
    assert_null(wsg_certs_json_parse(deep, 66));
    /* 20000 members with distinct names: accepted (duplicates found by sorting, not pairwise) */
    size_t n = 20000, cap = n * 16 + 8, len = 0;
    char *big = malloc(cap);
    assert_non_null(big);
    big[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(big + len, cap - len, "%s\"k%zu\":0", i ? "," : "", i);
    big[len++] = '}';
    struct wsg_certs_json *j = wsg_certs_json_parse(big, len);
    assert_non_null(j);
    assert_int_equal(j->n, n);
    wsg_certs_json_free(j);
    /* ... and the same with the last name repeated: refused */
    len--;
    len += (size_t)snprintf(big + len, cap - len, ",\"k0\":1}");
    assert_null(wsg_certs_json_parse(big, len));
    free(big);
}

/* RFC 8555's example objects (sections 7.1.1, 7.1.3, 7.1.4, 6.7), as an ACME server sends them. */
static const char rfc8555_directory[] =
    "{\n"
    "  \"newNonce\": \"https://example.com/acme/new-nonce\",\n"
    "  \"newAccount\": \"https://example.com/acme/new-account\",\n"
    "  \"newOrder\": \"https://example.com/acme/new-order\",\n"
    "  \"newAuthz\": \"https://example.com/acme/new-authz\",\n"
    "  \"revokeCert\": \"https://example.com/acme/revoke-cert\",\n"
    "  \"keyChange\": \"https://example.com/acme/key-change\",\n"
    "  \"meta\": {\n"
    "    \"termsOfService\": \"https://example.com/acme/terms/2017-5-30\",\n"
    "    \"website\": \"https://www.example.com/\",\n"
    "    \"caaIdentities\": [\"example.com\"],\n"
    "    \"externalAccountRequired\": false\n"
    "  }\n"
    "}\n";

static const char rfc8555_order[] =
    "{\n"
    "  \"status\": \"valid\",\n"
    "  \"expires\": \"2016-01-20T14:09:07.99Z\",\n"
    "  \"identifiers\": [\n"
    "    { \"type\": \"dns\", \"value\": \"www.example.org\" },\n"
    "    { \"type\": \"dns\", \"value\": \"example.org\" }\n"
    "  ],\n"
    "  \"notBefore\": \"2016-01-01T00:00:00Z\",\n"
    "  \"notAfter\": \"2016-01-08T00:00:00Z\",\n"
    "  \"authorizations\": [\n"
    "    \"https://example.com/acme/authz/PAniVnsZcis\",\n"
    "    \"https://example.com/acme/authz/r4HqLzrSrpI\"\n"
    "  ],\n"
    "  \"finalize\": \"https://example.com/acme/order/TOlocE8rfgo/finalize\",\n"
    "  \"certificate\": \"https://example.com/acme/cert/mAt3xBGaobw\"\n"
    "}\n";

static const char rfc8555_authz[] = "{\n"
                                    "  \"status\": \"valid\",\n"
                                    "  \"expires\": \"2015-03-01T14:09:07.99Z\",\n"
                                    "  \"identifier\": {\n"
                                    "    \"type\": \"dns\",\n"
                                    "    \"value\": \"www.example.org\"\n"
                                    "  },\n"
                                    "  \"challenges\": [\n"
                                    "    {\n"
                                    "      \"url\": \"https://example.com/acme/chall/prV_B7yEyA4\",\n"
                                    "      \"type\": \"http-01\",\n"
                                    "      \"status\": \"valid\",\n"
                                    "      \"token\": \"DGyRejmCefe7v4NfDGDKfA\",\n"
                                    "      \"validated\": \"2014-12-01T12:05:58.16Z\"\n"
                                    "    }\n"
                                    "  ],\n"
                                    "  \"wildcard\": false\n"
                                    "}\n";

static const char rfc8555_problem[] =
    "{\n"
    "    \"type\": \"urn:ietf:params:acme:error:malformed\",\n"
    "    \"detail\": \"Some of the identifiers requested were rejected\",\n"
    "    \"subproblems\": [\n"
    "        {\n"
    "            \"type\": \"urn:ietf:params:acme:error:malformed\",\n"
    "            \"detail\": \"Invalid underscore in DNS name \\\"_example.org\\\"\",\n"
    "            \"identifier\": {\n"
    "                \"type\": \"dns\",\n"
    "                \"value\": \"_example.org\"\n"
    "            }\n"
    "        },\n"
    "        {\n"
    "            \"type\": \"urn:ietf:params:acme:error:rejectedIdentifier\",\n"
    "            \"detail\": \"This CA will not issue for \\\"example.net\\\"\",\n"
    "            \"identifier\": {\n"
    "                \"type\": \"dns\",\n"
    "                \"value\": \"example.net\"\n"
    "            }\n"
    "        }\n"
    "    ]\n"
    "}\n";

static void test_json_rfc8555_objects(void **state)
{
    (void)state;
    struct wsg_certs_json *d = parse(rfc8555_directory);
    assert_non_null(d);
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(d, "newNonce")),
                        "https://example.com/acme/new-nonce");
    assert_int_equal(
        wsg_certs_json_bool(wsg_certs_json_get(wsg_certs_json_get(d, "meta"), "externalAccountRequired"), 1),
        0);
    wsg_certs_json_free(d);

    struct wsg_certs_json *o = parse(rfc8555_order);
    assert_non_null(o);
    const struct wsg_certs_json *authz = wsg_certs_json_get(o, "authorizations");
    assert_int_equal(authz->type, WSG_JSON_ARRAY);
    assert_int_equal(authz->n, 2);
    assert_string_equal(wsg_certs_json_str(authz->kid[1]), "https://example.com/acme/authz/r4HqLzrSrpI");
    assert_string_equal(
        wsg_certs_json_str(wsg_certs_json_get(wsg_certs_json_get(o, "identifiers")->kid[0], "value")),
        "www.example.org");
    wsg_certs_json_free(o);

    struct wsg_certs_json *a = parse(rfc8555_authz);
    assert_non_null(a);
    const struct wsg_certs_json *ch = wsg_certs_json_get(a, "challenges")->kid[0];
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(ch, "token")), "DGyRejmCefe7v4NfDGDKfA");
    wsg_certs_json_free(a);

    struct wsg_certs_json *p = parse(rfc8555_problem);
    assert_non_null(p);
    assert_string_equal(
        wsg_certs_json_str(wsg_certs_json_get(wsg_certs_json_get(p, "subproblems")->kid[0], "detail")),
        "Invalid underscore in DNS name \"_example.org\"");
    wsg_certs_json_free(p);
}

/* Every proper prefix of a document is refused: a short read never passes for an answer. */
static void test_json_truncated(void **state)
{
    (void)state;
    const char *docs[] = {rfc8555_directory, rfc8555_order, rfc8555_authz, rfc8555_problem};
    for (size_t d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
        size_t len = strlen(docs[d]);
        while (len > 0 && docs[d][len - 1] == '\n')
            len--; /* the whole value, without the trailing whitespace */
        for (size_t n = 0; n < len; n++) {
            struct wsg_certs_json *j = wsg_certs_json_parse(docs[d], n);
            if (j != NULL)
                fail_msg("document %zu: the prefix of %zu bytes parsed", d, n);
        }
        struct wsg_certs_json *j = wsg_certs_json_parse(docs[d], len);
        assert_non_null(j);
        wsg_certs_json_free(j);
    }
}

static void test_json_quote(void **state)
{
    (void)state;
    const char *in = "a\"b\\c\n\x01\xc3\xa9/";
    char *q = wsg_certs_json_quote(in);
    assert_non_null(q);
    assert_string_equal(q, "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9/\"");
    struct wsg_certs_json *j = parse(q);
    assert_non_null(j);
    assert_string_equal(j->string, in);
    wsg_certs_json_free(j);
    free(q);
}

/* ---- base64url ---- */

static void test_b64url(void **state)
{
    (void)state;
    /* RFC 4648 section 10, less the padding */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *e = wsg_b64url(plain[i], strlen(plain[i]));
        assert_string_equal(e, enc[i]);
        free(e);
        unsigned char out[16];
        assert_int_equal(wsg_b64url_decode(enc[i], strlen(enc[i]), out, sizeof(out)), (long)strlen(plain[i]));
        assert_memory_equal(out, plain[i], strlen(plain[i]));
    }
    /* the URL-safe alphabet: 0xfb 0xff -> "-_8" (standard base64: "+/8=") */
    static const unsigned char fbff[] = {0xfb, 0xff};
    char *e = wsg_b64url(fbff, 2);
    assert_string_equal(e, "-_8");
    free(e);
    unsigned char out[64];
    assert_int_equal(wsg_b64url_decode("-_8", 3, out, sizeof(out)), 2);
    assert_memory_equal(out, fbff, 2);
    /* every byte value round trips */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    for (size_t n = 0; n <= 256; n += 37) {
        char *s = wsg_b64url(all, n);
        unsigned char back[256];
        assert_int_equal(wsg_b64url_decode(s, strlen(s), back, sizeof(back)), (long)n);
        assert_memory_equal(back, all, n);
        free(s);
    }
    /* strict */
    static const char *const bad[] = {
        "Zg==",  /* padding */
        "Zm9v=", /* ... */
        "+/8",   /* the standard alphabet */
        "Zm 9v", /* whitespace */
        "Z",     /* a length of 1 mod 4 */
        "Zm9vY", /* ... */
        "Zh",    /* non-zero bits after the last byte: "Zg" is the spelling of "f" */
        "Zm9",   /* ... "Zm8" is "fo" */
        "Zm9v\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (wsg_b64url_decode(bad[i], strlen(bad[i]), out, sizeof(out)) != -1)
            fail_msg("decoded %s", bad[i]);
    }
    /* no more than cap */
    assert_int_equal(wsg_b64url_decode("Zm9vYmFy", 8, out, 5), -1);
    assert_int_equal(wsg_b64url_decode("Zm9vYmFy", 8, out, 6), 6);
}

/* ---- JWK, thumbprint, ES256 ---- */

/* RFC 7638 section 3.1: the thumbprint of its RSA example key, over the canonical members. */
static void test_thumbprint_rfc7638(void **state)
{
    (void)state;
    static const char jwk[] = "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":"
                              "\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFx"
                              "uhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_"
                              "RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368Q"
                              "QMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"
                              "bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G"
                              "_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\"}";
    char t[WSG_THUMBPRINT_LEN + 1];
    assert_int_equal(wsg_jwk_thumbprint(jwk, t), 0);
    assert_string_equal(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

/* RFC 7515 appendix A.3: the ES256 example key and JWS. */
static const char a3_d[] = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
static const char a3_x[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char a3_y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
static const char a3_input[] =
    "eyJhbGciOiJFUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
static const char a3_sig[] =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

static void load_a3(struct wsg_acme_key *k)
{
    char err[WSG_ERRLEN];
    unsigned char d[32];
    assert_int_equal(wsg_acme_key_init(k, err), 0);
    assert_int_equal(wsg_b64url_decode(a3_d, strlen(a3_d), d, sizeof(d)), 32);
    if (wsg_acme_key_from_d(k, d, err) != 0)
        fail_msg("%s", err);
}

static void test_es256_rfc7515(void **state)
{
    (void)state;
    struct wsg_acme_key k;
    load_a3(&k);
    /* the JWK made from the private scalar has the RFC's x and y, in RFC 7638's order */
    char want[WSG_JWK_MAX];
    snprintf(want, sizeof(want), "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", a3_x, a3_y);
    assert_string_equal(k.jwk, want);
    char t[WSG_THUMBPRINT_LEN + 1];
    assert_int_equal(wsg_jwk_thumbprint(want, t), 0);
    assert_string_equal(k.thumbprint, t);

    /* the RFC's signature verifies */
    unsigned char sig[64];
    assert_int_equal(wsg_b64url_decode(a3_sig, strlen(a3_sig), sig, sizeof(sig)), 64);
    assert_int_equal(wsg_jws_es256_verify(&k, a3_input, strlen(a3_input), sig), 0);
    /* ... and not over other input, nor altered */
    assert_int_equal(wsg_jws_es256_verify(&k, a3_input, strlen(a3_input) - 1, sig), -1);
    sig[10] ^= 1;
    assert_int_equal(wsg_jws_es256_verify(&k, a3_input, strlen(a3_input), sig), -1);

    /* ours verifies, and is deterministic (RFC 6979): the same input, the same signature */
    unsigned char s1[64], s2[64];
    assert_int_equal(wsg_jws_es256_sign(&k, a3_input, strlen(a3_input), s1), 0);
    assert_int_equal(wsg_jws_es256_sign(&k, a3_input, strlen(a3_input), s2), 0);
    assert_memory_equal(s1, s2, 64);
    assert_int_equal(wsg_jws_es256_verify(&k, a3_input, strlen(a3_input), s1), 0);
    assert_int_equal(wsg_jws_es256_sign(&k, "other", 5, s2), 0);
    assert_memory_not_equal(s1, s2, 64);
    wsg_acme_key_free(&k);
}

static void test_key_generate_pem_round_trip(void **state)
{
    (void)state;
    char err[WSG_ERRLEN];
    struct wsg_acme_key a, b;
    assert_int_equal(wsg_acme_key_init(&a, err), 0);
    assert_int_equal(wsg_acme_key_generate(&a, err), 0);
    unsigned char pem[1024];
    assert_int_equal(wsg_acme_key_pem(&a, pem, sizeof(pem)), 0);
    assert_non_null(strstr((char *)pem, "-----BEGIN EC PRIVATE KEY-----"));
    assert_int_equal(wsg_acme_key_init(&b, err), 0);
    assert_int_equal(wsg_acme_key_parse(&b, pem, strlen((char *)pem) + 1, err), 0);
    assert_string_equal(a.jwk, b.jwk);
    assert_string_equal(a.thumbprint, b.thumbprint);
    assert_int_equal(strlen(a.thumbprint), WSG_THUMBPRINT_LEN);
    unsigned char sig[64];
    assert_int_equal(wsg_jws_es256_sign(&a, "x", 1, sig), 0);
    assert_int_equal(wsg_jws_es256_verify(&b, "x", 1, sig), 0);
    /* garbage is refused with a reason */
    static const unsigned char junk[] =
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
    assert_int_equal(wsg_acme_key_parse(&b, junk, sizeof(junk), err), -1);
    assert_non_null(strstr(err, "cannot parse the account key"));
    wsg_acme_key_free(&a);
    wsg_acme_key_free(&b);
}

/* Takes a flattened JWS apart: exactly its three members, the header decoded, the signature checked. */
static struct wsg_certs_json *jws_open(struct wsg_acme_key *k, const char *body, char **payload)
{
    struct wsg_certs_json *j = parse(body);
    assert_non_null(j);
    assert_int_equal(j->n, 3);
    const char *prot = wsg_certs_json_str(wsg_certs_json_get(j, "protected"));
    const char *pay = wsg_certs_json_str(wsg_certs_json_get(j, "payload"));
    const char *sig = wsg_certs_json_str(wsg_certs_json_get(j, "signature"));
    assert_non_null(prot);
    assert_non_null(pay);
    assert_non_null(sig);
    char *input;
    assert_true(asprintf(&input, "%s.%s", prot, pay) > 0);
    unsigned char raw[64];
    assert_int_equal(wsg_b64url_decode(sig, strlen(sig), raw, sizeof(raw)), 64);
    assert_int_equal(wsg_jws_es256_verify(k, input, strlen(input), raw), 0);
    free(input);
    unsigned char buf[2048];
    long n = wsg_b64url_decode(pay, strlen(pay), buf, sizeof(buf) - 1);
    assert_true(n >= 0);
    buf[n] = '\0';
    *payload = strdup((char *)buf);
    n = wsg_b64url_decode(prot, strlen(prot), buf, sizeof(buf));
    assert_true(n > 0);
    struct wsg_certs_json *h = wsg_certs_json_parse((char *)buf, (size_t)n);
    assert_non_null(h);
    wsg_certs_json_free(j);
    return h;
}

static void test_jws_acme(void **state)
{
    (void)state;
    struct wsg_acme_key k;
    load_a3(&k);
    /* newAccount (RFC 8555 section 7.3): jwk, no kid */
    const char *payload = "{\"termsOfServiceAgreed\":true,\"contact\":[\"mailto:cert-admin@example.org\"]}";
    char *body =
        wsg_jws_acme(&k, NULL, "6S8IqOGY7eL2lsGoTZYifg", "https://example.com/acme/new-account", payload);
    assert_non_null(body);
    char *got;
    struct wsg_certs_json *h = jws_open(&k, body, &got);
    assert_string_equal(got, payload);
    assert_int_equal(h->n, 4);
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(h, "alg")), "ES256");
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(h, "nonce")), "6S8IqOGY7eL2lsGoTZYifg");
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(h, "url")),
                        "https://example.com/acme/new-account");
    assert_null(wsg_certs_json_get(h, "kid"));
    const struct wsg_certs_json *jwk = wsg_certs_json_get(h, "jwk");
    assert_non_null(jwk);
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(jwk, "kty")), "EC");
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(jwk, "crv")), "P-256");
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(jwk, "x")), a3_x);
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(jwk, "y")), a3_y);
    assert_null(wsg_certs_json_get(jwk, "d")); /* never the private part */
    wsg_certs_json_free(h);
    free(got);
    free(body);

    /* POST-as-GET with kid (section 6.3): an empty payload, kid and no jwk; a URL that needs escaping */
    body = wsg_jws_acme(&k, "https://example.com/acme/acct/evOfKhNU60wg", "JHb54aT_KTXBWQOzGYkt9A",
                        "https://example.com/acme/order/\"q\\", NULL);
    assert_non_null(body);
    assert_non_null(strstr(body, "\"payload\":\"\","));
    h = jws_open(&k, body, &got);
    assert_string_equal(got, "");
    assert_int_equal(h->n, 4);
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(h, "kid")),
                        "https://example.com/acme/acct/evOfKhNU60wg");
    assert_string_equal(wsg_certs_json_str(wsg_certs_json_get(h, "url")),
                        "https://example.com/acme/order/\"q\\");
    assert_null(wsg_certs_json_get(h, "jwk"));
    wsg_certs_json_free(h);
    free(got);
    free(body);

    /* a nonce that is not base64url is not put into a header */
    static const char *const bad_nonce[] = {"", "a+b", "a\"b", "abc=", "a b"};
    for (size_t i = 0; i < sizeof(bad_nonce) / sizeof(bad_nonce[0]); i++)
        assert_null(wsg_jws_acme(&k, NULL, bad_nonce[i], "https://example.com/", "{}"));
    assert_null(wsg_jws_acme(&k, NULL, NULL, "https://example.com/", "{}"));
    assert_null(wsg_jws_acme(&k, NULL, "abc", NULL, "{}"));
    wsg_acme_key_free(&k);
}

/* ---- https.c: the ACME server's answers ---- */

static int answer(const char *s, int is_head, struct wsg_https_res *r)
{
    return wsg_https_parse(s, strlen(s), is_head, r);
}

static void test_https_parse_good(void **state)
{
    (void)state;
    struct wsg_https_res r;
    /* Pebble's newAccount answer, shape for shape */
    assert_int_equal(answer("HTTP/1.1 201 Created\r\nCache-Control: public, max-age=0, no-cache\r\n"
                            "Content-Type: application/json; charset=utf-8\r\n"
                            "Link: <https://127.0.0.1:14000/dir>;rel=\"index\"\r\n"
                            "Location: https://127.0.0.1:14000/my-account/2aa23ea2b9b92486\r\n"
                            "Replay-Nonce: PnELX16wcIAo5g7TxVwBPw\r\nContent-Length: 17\r\n\r\n"
                            "{\"status\":\"valid\"}",
                            0, &r),
                     0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.location, "https://127.0.0.1:14000/my-account/2aa23ea2b9b92486");
    assert_string_equal(r.nonce, "PnELX16wcIAo5g7TxVwBPw");
    assert_string_equal(r.content_type, "application/json; charset=utf-8");
    assert_int_equal(r.len, 17);
    assert_string_equal(r.body, "{\"status\":\"valid\"");
    wsg_https_res_free(&r);
    /* chunked, with an extension and a trailer */
    assert_int_equal(answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n"
                            "5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
                            0, &r),
                     0);
    assert_string_equal(r.body, "hello world");
    assert_string_equal(r.retry_after, "3");
    wsg_https_res_free(&r);
    /* HEAD (newNonce): no body whatever Content-Length says; body up to the end without framing */
    assert_int_equal(answer("HTTP/1.1 200 OK\r\nReplay-Nonce: n\r\nContent-Length: 10\r\n\r\n", 1, &r), 0);
    assert_int_equal(r.len, 0);
    wsg_https_res_free(&r);
    assert_int_equal(answer("HTTP/1.0 400 Bad\r\n\r\n{\"type\":\"x\"}", 0, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"type\":\"x\"}");
    wsg_https_res_free(&r);
}

static void test_https_parse_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "HTTP/1.1 200 OK\r\n",                                                /* no end of head */
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",                             /* bare LF */
        "HTTP/2 200 OK\r\n\r\n",                                              /* not HTTP/1.x */
        "HTTP/1.1 20 OK\r\n\r\n",                                             /* two digits */
        "HTTP/1.1 099 OK\r\n\r\n",                                            /* below 100 */
        "HTTP/1.1 200OK\r\n\r\n",                                             /* no space after the code */
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",                             /* space in a name */
        "HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",                         /* obs-fold */
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",                    /* cut short */
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", /* twice */
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",       /* cut in a chunk */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", /* no last chunk */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",          /* no final CRLF */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n",  /* 9 hex digits */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nextra", /* after the end */
        "HTTP/1.1 200 OK\r\nLocation: a\r\nLocation: b\r\n\r\n",               /* two Locations */
        "HTTP/1.1 200 OK\r\nA: b\x01\r\n\r\n",                                 /* control byte */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wsg_https_res r;
        if (answer(bad[i], 0, &r) == 0) {
            print_error("accepted bad answer %zu: %s\n", i, bad[i]);
            wsg_https_res_free(&r);
            fail();
        }
    }
    /* a Replay-Nonce longer than the field is refused, not cut */
    char big[600];
    snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nReplay-Nonce: %0300d\r\n\r\n", 0);
    struct wsg_https_res r;
    assert_int_equal(answer(big, 1, &r), -1);
}

static void test_https_url(void **state)
{
    (void)state;
    char host[256], hp[300];
    const char *path;
    assert_int_equal(wsg_https_url("https://127.0.0.1:14000/dir", host, hp, &path), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(hp, "127.0.0.1:14000");
    assert_string_equal(path, "/dir");
    assert_int_equal(wsg_https_url("https://acme-v02.api.letsencrypt.org/directory", host, hp, &path), 0);
    assert_string_equal(hp, "acme-v02.api.letsencrypt.org:443");
    assert_int_equal(wsg_https_url("https://[::1]:14000", host, hp, &path), 0);
    assert_string_equal(host, "::1");
    assert_string_equal(hp, "[::1]:14000");
    assert_string_equal(path, "/");
    static const char *const bad[] = {
        "http://a/dir",  "https://",      "https:///x",     "https://a:/x",    "https://a:123456/x",
        "https://a:1x/", "https://u@a/x", "https://[::1/x", "https://[::1]x/", "https://a b/x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (wsg_https_url(bad[i], host, hp, &path) == 0) {
            print_error("accepted bad URL %s\n", bad[i]);
            fail();
        }
}

/* ---- Pebble's own answers (tests/unit/fixtures/pebble/, captured from Debian's pebble 2.4) ---- */

static struct wsg_certs_json *fixture(const char *name, char **text, size_t *len)
{
    char path[512];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof(path), "%.*s/fixtures/pebble/%s", slash != NULL ? (int)(slash - __FILE__) : 1,
             slash != NULL ? __FILE__ : ".", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        print_error("cannot open %s (run from the repository root)\n", path);
        fail();
    }
    *text = malloc(65536);
    assert_non_null(*text);
    *len = fread(*text, 1, 65536, f);
    fclose(f);
    return wsg_certs_json_parse(*text, *len);
}

static const char *str_at(const struct wsg_certs_json *j, const char *key)
{
    return wsg_certs_json_str(wsg_certs_json_get(j, key));
}

/* Every fixture parses; every cut that drops a byte of its value is refused (an answer cut short
 * by the network is never read as a shorter one). */
static void test_pebble_fixtures_truncated(void **state)
{
    (void)state;
    static const char *const names[] = {"directory.json",
                                        "account.json",
                                        "order-pending.json",
                                        "order-processing.json",
                                        "order-valid.json",
                                        "authz-pending.json",
                                        "authz-valid.json",
                                        "authz-invalid.json",
                                        "challenge.json",
                                        "problem-bad-nonce.json",
                                        "problem-rejected-identifier.json"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *text;
        size_t len;
        struct wsg_certs_json *j = fixture(names[i], &text, &len);
        if (j == NULL) {
            print_error("%s does not parse\n", names[i]);
            fail();
        }
        assert_int_equal(j->type, WSG_JSON_OBJECT);
        wsg_certs_json_free(j);
        size_t last = len;
        while (last > 0 && strchr(" \t\r\n", text[last - 1]) != NULL)
            last--;
        for (size_t cut = 0; cut < last; cut++) {
            struct wsg_certs_json *p = wsg_certs_json_parse(text, cut);
            if (p != NULL) {
                print_error("%s cut to %zu bytes parses\n", names[i], cut);
                fail();
            }
        }
        free(text);
    }
}

/* What the client reads from each answer, read from Pebble's. */
static void test_pebble_fixtures_fields(void **state)
{
    (void)state;
    char *t;
    size_t n;
    struct wsg_certs_json *j = fixture("directory.json", &t, &n);
    assert_string_equal(str_at(j, "newNonce"), "https://127.0.0.1:14000/nonce-plz");
    assert_string_equal(str_at(j, "newAccount"), "https://127.0.0.1:14000/sign-me-up");
    assert_string_equal(str_at(j, "newOrder"), "https://127.0.0.1:14000/order-plz");
    assert_int_equal(
        wsg_certs_json_bool(wsg_certs_json_get(wsg_certs_json_get(j, "meta"), "externalAccountRequired"), 1),
        0);
    wsg_certs_json_free(j);
    free(t);

    j = fixture("account.json", &t, &n);
    assert_string_equal(str_at(j, "status"), "valid");
    assert_string_equal(str_at(wsg_certs_json_get(j, "key"), "crv"), "P-256");
    wsg_certs_json_free(j);
    free(t);

    j = fixture("order-pending.json", &t, &n);
    assert_string_equal(str_at(j, "status"), "pending");
    assert_non_null(str_at(j, "finalize"));
    const struct wsg_certs_json *az = wsg_certs_json_get(j, "authorizations");
    assert_int_equal(az->type, WSG_JSON_ARRAY);
    assert_int_equal(az->n, 2);
    assert_memory_equal(wsg_certs_json_str(az->kid[0]), "https://", 8);
    wsg_certs_json_free(j);
    free(t);

    j = fixture("order-valid.json", &t, &n);
    assert_string_equal(str_at(j, "status"), "valid");
    assert_string_equal(str_at(j, "certificate"), "https://127.0.0.1:34139/certZ/6e1109a3c39a087c");
    wsg_certs_json_free(j);
    free(t);

    j = fixture("authz-pending.json", &t, &n);
    assert_string_equal(str_at(j, "status"), "pending");
    assert_string_equal(str_at(wsg_certs_json_get(j, "identifier"), "value"), "www.acme.test");
    const struct wsg_certs_json *ch = wsg_certs_json_get(j, "challenges");
    assert_int_equal(ch->n, 3);
    assert_string_equal(str_at(ch->kid[1], "type"), "tls-alpn-01");
    assert_string_equal(str_at(ch->kid[1], "token"), "2bLr31_BGlyYfj26zuD-xOjxXyeCXd1yRHcu16JbLd4");
    wsg_certs_json_free(j);
    free(t);

    j = fixture("authz-invalid.json", &t, &n);
    assert_string_equal(str_at(j, "status"), "invalid");
    const struct wsg_certs_json *e = wsg_certs_json_get(wsg_certs_json_get(j, "challenges")->kid[0], "error");
    assert_string_equal(str_at(e, "type"), "urn:ietf:params:acme:error:unauthorized");
    /* the detail's escaped quotes come out as quotes */
    assert_non_null(strstr(str_at(e, "detail"), "!= \"not-the-key-authorization\""));
    wsg_certs_json_free(j);
    free(t);

    j = fixture("problem-bad-nonce.json", &t, &n);
    assert_string_equal(str_at(j, "type"), "urn:ietf:params:acme:error:badNonce");
    assert_true(wsg_certs_json_num(wsg_certs_json_get(j, "status"), 0) == 400);
    wsg_certs_json_free(j);
    free(t);

    j = fixture("problem-rejected-identifier.json", &t, &n);
    assert_string_equal(str_at(j, "type"), "urn:ietf:params:acme:error:rejectedIdentifier");
    assert_non_null(strstr(str_at(j, "detail"), "\"blocked.acme.test\""));
    wsg_certs_json_free(j);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_json_structure),
        cmocka_unit_test(test_json_rfc8555_objects),
        cmocka_unit_test(test_json_truncated),
        cmocka_unit_test(test_json_quote),
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_thumbprint_rfc7638),
        cmocka_unit_test(test_es256_rfc7515),
        cmocka_unit_test(test_key_generate_pem_round_trip),
        cmocka_unit_test(test_jws_acme),
        cmocka_unit_test(test_https_parse_good),
        cmocka_unit_test(test_https_parse_bad),
        cmocka_unit_test(test_https_url),
        cmocka_unit_test(test_pebble_fixtures_truncated),
        cmocka_unit_test(test_pebble_fixtures_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
