/* ws_sink.h - the relay harnesses' sink (ws_relay.h for ws_c2u/ws_u2c, ws_diff.c): it keeps every
 * byte it takes, takes at most max_take bytes a call and answers WSG_AGAIN every again_every-th
 * call, so a relay meets short writes and a full sink at every point. */
#ifndef WSG_FUZZ_WS_SINK_H
#define WSG_FUZZ_WS_SINK_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "fuzz/fuzz.h"
#include "policies/base/err.h"

struct sink {
    uint8_t *buf;
    size_t len, cap;
    unsigned calls, again_every, max_take;
};

static ssize_t sink_fn(void *ctx, const uint8_t *data, size_t len)
{
    struct sink *s = ctx;
    s->calls++;
    if (s->again_every > 1 && s->calls % s->again_every == 0)
        return WSG_AGAIN;
    FUZZ_CHECK(len > 0);
    size_t n = len < s->max_take ? len : s->max_take;
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->buf = realloc(s->buf, s->cap);
        FUZZ_CHECK(s->buf != NULL);
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return (ssize_t)n;
}

#endif
