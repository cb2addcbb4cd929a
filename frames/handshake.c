/*
 * handshake.c - the header values of the WebSocket opening handshake (RFC 6455 §4): the
 * Sec-WebSocket-Accept answer to a client key, a fresh Sec-WebSocket-Key for the upstream hop,
 * and the removal of permessage-deflate offers from Sec-WebSocket-Extensions.
 */
#include "frames/ws.h"

#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

/* RFC 6455 §1.3: the GUID appended to the key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int is_b64_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
           ch == '/';
}

int wsg_ws_accept_key(const char *key, size_t key_len, char accept[29])
{
    /* §4.1/§11.3.1: the key is base64 of a 16-byte nonce: 22 alphabet chars and "==". */
    uint8_t nonce[18];
    size_t olen = 0;
    if (key == NULL || key_len != 24 || key[22] != '=' || key[23] != '=')
        return -1;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64_char(key[i]))
            return -1;
    if (mbedtls_base64_decode(nonce, sizeof(nonce), &olen, (const unsigned char *)key, key_len) != 0 ||
        olen != 16)
        return -1;

    /* §4.2.2: base64(SHA-1(key + GUID)), the key taken as sent (not decoded). */
    unsigned char concat[24 + sizeof(ws_guid) - 1];
    unsigned char digest[20];
    memcpy(concat, key, 24);
    memcpy(concat + 24, ws_guid, sizeof(ws_guid) - 1);
    if (mbedtls_sha1(concat, sizeof(concat), digest) != 0)
        return -1;
    if (mbedtls_base64_encode((unsigned char *)accept, 29, &olen, digest, sizeof(digest)) != 0 || olen != 28)
        return -1;
    return 0;
}

void wsg_ws_make_key(const uint8_t rnd[16], char key[25])
{
    size_t olen = 0;
    /* §4.1: 16 random bytes, base64-encoded; 25 bytes always suffice (24 + NUL). */
    if (mbedtls_base64_encode((unsigned char *)key, 25, &olen, rnd, 16) != 0)
        key[0] = '\0';
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Finds the end of one list element: the next comma outside a quoted-string (§9.1 allows
 * quoted parameter values, which may contain commas). */
static size_t element_end(const char *in, size_t pos, size_t len)
{
    int quoted = 0;
    for (; pos < len; pos++) {
        char ch = in[pos];
        if (quoted) {
            if (ch == '\\' && pos + 1 < len)
                pos++;
            else if (ch == '"')
                quoted = 0;
        } else if (ch == '"') {
            quoted = 1;
        } else if (ch == ',') {
            break;
        }
    }
    return pos;
}

/* Trims optional whitespace around [*b, *e). */
static void trim(const char *in, size_t *b, size_t *e)
{
    while (*b < *e && is_ows(in[*b]))
        (*b)++;
    while (*e > *b && is_ows(in[*e - 1]))
        (*e)--;
}

/* Is the element's extension token (before any ';') "permessage-deflate" (case-insensitive)? */
static int is_deflate(const char *el, size_t len)
{
    static const char name[] = "permessage-deflate";
    size_t n = 0;
    while (n < len && el[n] != ';')
        n++;
    while (n > 0 && is_ows(el[n - 1]))
        n--;
    if (n != sizeof(name) - 1)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = el[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch != name[i])
            return 0;
    }
    return 1;
}

/* Copies each non-empty, non-deflate element into out (when out is not NULL), joined by sep, and
 * counts them in *count. Returns the output length. */
static size_t scan_kept(const char *in, size_t in_len, size_t *count, char *out, const char *sep)
{
    size_t pos = 0, total = 0, sep_len = sep != NULL ? strlen(sep) : 0;
    *count = 0;
    while (pos <= in_len) {
        size_t b = pos, e = element_end(in, pos, in_len);
        pos = e + 1;
        trim(in, &b, &e);
        if (b == e || is_deflate(in + b, e - b))
            continue;
        if (out != NULL) {
            if (*count > 0) {
                memcpy(out + total, sep, sep_len);
                total += sep_len;
            }
            memcpy(out + total, in + b, e - b);
        }
        total += e - b;
        (*count)++;
    }
    return total;
}

size_t wsg_ws_strip_deflate(const char *in, size_t in_len, char *out)
{
    /* RFC 7692 §5: permessage-deflate sets RSV1, which our relay rejects (no extension is
     * negotiated end to end), so every offer of it goes; other extensions pass untouched.
     * Elements are joined with ", " when that fits in in_len, else with ",". */
    size_t count;
    size_t kept = scan_kept(in, in_len, &count, NULL, NULL);
    if (count == 0)
        return 0;
    const char *sep = kept + 2 * (count - 1) <= in_len ? ", " : ",";
    return scan_kept(in, in_len, &count, out, sep);
}
