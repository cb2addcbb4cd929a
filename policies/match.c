/*
 * match.c - Host, Origin and subprotocol matching (policy.h).
 *
 * Host patterns: "chat.example.com" (exact) or "*.example.com" (one or more labels in front of
 * example.com, never example.com itself: nginx's "*.example.com" semantics, not its ".example.com").
 * Case-insensitive (RFC 4343); a ":port" and one trailing dot of the Host header are ignored.
 *
 * Origins (RFC 6454 serialisation, "scheme://host[:port]"): an allowlist entry is either a full
 * origin, compared on scheme, host and port with the default port filled in (http/ws 80,
 * https/wss 443), whose host may itself be a "*." pattern; or a bare host pattern, which allows
 * that host with any scheme and port. "null" (sandboxed iframes, file://) is an opaque origin
 * anybody can send, so it passes only when the list has the entry "null". An unparsable Origin
 * is refused whenever the list is not empty.
 */
#include "policies/policy.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static int ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* The host part of a Host header value: without ":port" and one trailing dot. */
static void host_only(const char *host, size_t len, size_t *out_len)
{
    if (len > 0 && host[0] == '[') { /* [v6]:port */
        const char *close = memchr(host, ']', len);
        *out_len = close != NULL ? (size_t)(close - host) + 1 : len;
        return;
    }
    const char *colon = memchr(host, ':', len);
    if (colon != NULL)
        len = (size_t)(colon - host);
    if (len > 1 && host[len - 1] == '.')
        len--;
    *out_len = len;
}

int wsg_match_host(const char *pattern, const char *host, size_t host_len)
{
    size_t hl, pl = strlen(pattern);
    host_only(host, host_len, &hl);
    if (hl == 0 || pl == 0)
        return 0;
    if (pl >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        const char *suffix = pattern + 1; /* ".example.com" */
        size_t sl = pl - 1;
        /* at least one non-empty label before the suffix */
        return hl > sl && host[hl - sl - 1] != '.' && ieq(host + hl - sl, sl, suffix, sl);
    }
    return ieq(pattern, pl, host, hl);
}

struct origin {
    const char *scheme, *host;
    size_t scheme_len, host_len;
    unsigned port; /* 0 = unknown scheme without a port */
};

static unsigned default_port(const char *scheme, size_t len)
{
    if (ieq(scheme, len, "https", 5) || ieq(scheme, len, "wss", 3))
        return 443;
    if (ieq(scheme, len, "http", 4) || ieq(scheme, len, "ws", 2))
        return 80;
    return 0;
}

/* "scheme://host[:port]" with nothing after (one trailing '/' tolerated in allowlist entries). */
static int parse_origin(const char *s, size_t len, struct origin *o)
{
    if (len > 0 && s[len - 1] == '/')
        len--;
    const char *sep = NULL;
    for (size_t i = 0; i + 2 < len; i++)
        if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
            sep = s + i;
            break;
        }
    if (sep == NULL || sep == s)
        return -1;
    o->scheme = s;
    o->scheme_len = (size_t)(sep - s);
    for (size_t i = 0; i < o->scheme_len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '-' && s[i] != '.')
            return -1;
    const char *h = sep + 3, *end = s + len;
    const char *hend;
    if (h < end && *h == '[') {
        hend = memchr(h, ']', (size_t)(end - h));
        if (hend == NULL)
            return -1;
        hend++;
    } else {
        hend = h;
        while (hend < end && *hend != ':')
            hend++;
    }
    o->host = h;
    o->host_len = (size_t)(hend - h);
    if (o->host_len == 0)
        return -1;
    for (const char *p = h; p < hend; p++)
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == '?' || *p == '#' || *p == '@' || *p == ',')
            return -1;
    o->port = default_port(o->scheme, o->scheme_len);
    if (hend < end) {
        if (*hend != ':' || hend + 1 == end)
            return -1;
        unsigned port = 0;
        for (const char *p = hend + 1; p < end; p++) {
            if (!isdigit((unsigned char)*p))
                return -1;
            port = port * 10 + (unsigned)(*p - '0');
            if (port > 65535)
                return -1;
        }
        if (port == 0)
            return -1;
        o->port = port;
    }
    return 0;
}

static int origin_entry_allows(const char *entry, const struct origin *o)
{
    size_t el = strlen(entry);
    if (memchr(entry, '/', el) == NULL) /* a host pattern: any scheme and port */
        return wsg_match_host(entry, o->host, o->host_len);
    struct origin e;
    if (parse_origin(entry, el, &e) != 0)
        return 0;
    if (!ieq(e.scheme, e.scheme_len, o->scheme, o->scheme_len) || e.port != o->port)
        return 0;
    char pat[128]; /* as long as an origins entry */
    if (e.host_len >= sizeof(pat))
        return 0;
    memcpy(pat, e.host, e.host_len);
    pat[e.host_len] = '\0';
    if (pat[0] == '*') /* a full origin with a wildcard host */
        return wsg_match_host(pat, o->host, o->host_len);
    return ieq(e.host, e.host_len, o->host, o->host_len);
}

int wsg_match_origin(const struct wsg_policy *p, const char *origin, size_t len)
{
    if (p->norigins == 0)
        return 1;
    while (len > 0 && (origin[0] == ' ' || origin[0] == '\t'))
        origin++, len--;
    while (len > 0 && (origin[len - 1] == ' ' || origin[len - 1] == '\t'))
        len--;
    if (ieq(origin, len, "null", 4)) {
        for (unsigned i = 0; i < p->norigins; i++)
            if (strcasecmp(p->origins[i], "null") == 0)
                return 1;
        return 0;
    }
    struct origin o;
    if (len == 0 || origin[len - 1] == '/' || parse_origin(origin, len, &o) != 0)
        return 0;
    for (unsigned i = 0; i < p->norigins; i++)
        if (strcasecmp(p->origins[i], "null") != 0 && origin_entry_allows(p->origins[i], &o))
            return 1;
    return 0;
}

int wsg_match_subprotocol_one(const struct wsg_policy *p, const char *name, size_t len)
{
    if (p->nsubprotocols == 0)
        return 1;
    for (unsigned i = 0; i < p->nsubprotocols; i++) /* names are case-sensitive (RFC 6455 §11.5) */
        if (strlen(p->subprotocols[i]) == len && memcmp(p->subprotocols[i], name, len) == 0)
            return 1;
    return 0;
}

int wsg_match_subprotocol(const struct wsg_policy *p, const char *offer, size_t len)
{
    if (p->nsubprotocols == 0)
        return 1;
    int offered = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (offer[i] == ' ' || offer[i] == '\t' || offer[i] == ','))
            i++;
        size_t start = i;
        while (i < len && offer[i] != ',' && offer[i] != ' ' && offer[i] != '\t')
            i++;
        if (i > start) {
            offered = 1;
            if (wsg_match_subprotocol_one(p, offer + start, i - start))
                return 1;
        }
    }
    return !offered;
}
