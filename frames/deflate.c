/*
 * deflate.c - permessage-deflate (RFC 7692): the offer forwarded to the upstream and the check of
 * its answer. The inflate-and-check of compressed messages is in ws.c (it runs inside the relay).
 *
 * Syntax (RFC 6455 §9.1, RFC 7692 §5): elements separated by ',', each a name then parameters
 * separated by ';', a parameter being a token, optionally "=" token or quoted-string.
 */
#include "frames/ws.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct param {
    const char *name, *val;
    size_t nlen, vlen;
};

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char *s, size_t *b, size_t *e)
{
    while (*b < *e && ows(s[*b]))
        (*b)++;
    while (*e > *b && ows(s[*e - 1]))
        (*e)--;
}

static int is_name(const struct param *p, const char *name)
{
    return p->nlen == strlen(name) && strncasecmp(p->name, name, p->nlen) == 0;
}

/* One element [b, e): its name and up to 8 parameters. @return count, or -1 when malformed. */
static int parse_element(const char *s, size_t b, size_t e, struct param *name, struct param ps[8])
{
    int n = -1;
    while (b <= e) {
        size_t q = b;
        int inq = 0;
        while (q < e && (inq || s[q] != ';')) {
            if (s[q] == '"')
                inq = !inq;
            q++;
        }
        if (inq)
            return -1;
        size_t pb = b, pe = q;
        trim(s, &pb, &pe);
        if (pb == pe)
            return -1;
        struct param p = {s + pb, NULL, pe - pb, 0};
        const char *eq = memchr(s + pb, '=', pe - pb);
        if (eq != NULL) {
            size_t nb = pb, ne = (size_t)(eq - s), vb = ne + 1, ve = pe;
            trim(s, &nb, &ne);
            trim(s, &vb, &ve);
            if (vb + 1 < ve && s[vb] == '"' && s[ve - 1] == '"') {
                vb++;
                ve--;
            }
            if (nb == ne || vb == ve)
                return -1;
            p = (struct param){s + nb, s + vb, ne - nb, ve - vb};
        }
        if (n < 0) {
            if (p.val != NULL)
                return -1;
            *name = p;
        } else if (n < 8) {
            ps[n] = p;
        } else {
            return -1;
        }
        n++;
        b = q + 1;
    }
    return n < 0 ? -1 : n;
}

/* "8".."15" -> 8..15, else 0. */
static int bits_of(const struct param *p)
{
    if (p->val == NULL || p->vlen == 0 || p->vlen > 2)
        return 0;
    int v = 0;
    for (size_t i = 0; i < p->vlen; i++) {
        if (p->val[i] < '0' || p->val[i] > '9')
            return 0;
        v = v * 10 + (p->val[i] - '0');
    }
    if (p->vlen == 2 && p->val[0] == '0')
        return 0;
    return v >= 8 && v <= 15 ? v : 0;
}

/* The parameters of one permessage-deflate element into d. @return 0, or -1 with *why. */
static int read_params(const struct param *ps, int n, int answer, struct wsg_ws_deflate *d, const char **why)
{
    memset(d, 0, sizeof(*d));
    unsigned seen = 0;
    for (int i = 0; i < n; i++) {
        const struct param *p = &ps[i];
        unsigned bit;
        if (is_name(p, "server_no_context_takeover")) {
            bit = 1;
            if (p->val != NULL)
                goto bad_value;
            d->server_no_context = 1;
        } else if (is_name(p, "client_no_context_takeover")) {
            bit = 2;
            if (p->val != NULL)
                goto bad_value;
            d->client_no_context = 1;
        } else if (is_name(p, "server_max_window_bits")) {
            bit = 4;
            if ((d->server_bits = (uint8_t)bits_of(p)) == 0)
                goto bad_value;
        } else if (is_name(p, "client_max_window_bits")) {
            bit = 8;
            d->client_bits_param = 1;
            /* an offer may give it without a value; an answer must give one (§7.1.2.2) */
            if (p->val != NULL || answer) {
                if ((d->client_bits = (uint8_t)bits_of(p)) == 0)
                    goto bad_value;
            }
        } else {
            *why = "unknown permessage-deflate parameter";
            return -1;
        }
        if (seen & bit) {
            *why = "repeated permessage-deflate parameter";
            return -1;
        }
        seen |= bit;
    }
    return 0;
bad_value:
    *why = "bad permessage-deflate parameter value";
    return -1;
}

size_t wsg_ws_deflate_format(const struct wsg_ws_deflate *d, char *out, size_t cap)
{
    int w = snprintf(out, cap, "permessage-deflate%s%s",
                     d->server_no_context ? "; server_no_context_takeover" : "",
                     d->client_no_context ? "; client_no_context_takeover" : "");
    if (w > 0 && (size_t)w < cap && d->server_bits)
        w += snprintf(out + w, cap - (size_t)w, "; server_max_window_bits=%u", d->server_bits);
    if (w > 0 && (size_t)w < cap && d->client_bits_param)
        w += d->client_bits
                 ? snprintf(out + w, cap - (size_t)w, "; client_max_window_bits=%u", d->client_bits)
                 : snprintf(out + w, cap - (size_t)w, "; client_max_window_bits");
    if (w <= 0 || (size_t)w >= cap)
        return 0;
    return (size_t)w;
}

size_t wsg_ws_deflate_offer(const char *in, size_t len, char *out, size_t cap, struct wsg_ws_deflate *offer)
{
    for (size_t b = 0; b < len;) {
        size_t e = b;
        int inq = 0;
        while (e < len && (inq || in[e] != ',')) {
            if (in[e] == '"')
                inq = !inq;
            e++;
        }
        struct param name, ps[8];
        int n = parse_element(in, b, e, &name, ps);
        const char *why;
        struct wsg_ws_deflate d;
        if (n >= 0 && is_name(&name, "permessage-deflate") && read_params(ps, n, 0, &d, &why) == 0) {
            size_t w = wsg_ws_deflate_format(&d, out, cap);
            if (w != 0)
                *offer = d;
            return w;
        }
        b = e + 1;
    }
    return 0;
}

int wsg_ws_deflate_answer(const char *in, size_t len, const struct wsg_ws_deflate *offer,
                          struct wsg_ws_deflate *neg, const char **why)
{
    for (size_t i = 0; i < len; i++)
        if (in[i] == ',') {
            *why = "more than one extension accepted";
            return -1;
        }
    struct param name, ps[8];
    int n = parse_element(in, 0, len, &name, ps);
    if (n < 0) {
        *why = "malformed Sec-WebSocket-Extensions";
        return -1;
    }
    if (!is_name(&name, "permessage-deflate")) {
        *why = "an extension that was not offered";
        return -1;
    }
    if (read_params(ps, n, 1, neg, why) != 0)
        return -1;
    if (neg->client_bits_param && !offer->client_bits_param) {
        *why = "client_max_window_bits that was not offered";
        return -1;
    }
    if (offer->client_bits && neg->client_bits > offer->client_bits) {
        *why = "client_max_window_bits above the offer";
        return -1;
    }
    if (offer->server_bits && (neg->server_bits == 0 || neg->server_bits > offer->server_bits)) {
        *why = "server_max_window_bits missing or above the offer";
        return -1;
    }
    if (offer->server_no_context && !neg->server_no_context) {
        *why = "server_no_context_takeover offered but not accepted";
        return -1;
    }
    return 0;
}
