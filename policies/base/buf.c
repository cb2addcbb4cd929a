/*
 * buf.c - fixed-capacity linear sliding byte buffer (see buf.h).
 *
 * Linear rather than a ring so that parsers always see the unread bytes contiguous (the HTTP head,
 * a frame header). Memory is taken on the first reserve and can be given back when the buffer
 * empties, which keeps idle connections cheap.
 */
#include "policies/base/buf.h"

#include <stdlib.h>
#include <string.h>

/*
 * Per-thread cache of buffer blocks. Connections give their empty buffers back after every burst
 * (so that an idle connection holds none); a busy connection takes one again for the next message.
 * Without the cache that was a malloc and a free of a buffer_size block for each of the six
 * buffers on every message (4,500 instructions of a 24,000-instruction 64-byte echo, callgrind).
 * Only blocks of one capacity are kept (the configured buffer_size: after a reload that changes it,
 * blocks of the old size are freed instead), and at most CACHE_BYTES of them per thread, so the
 * cache is a fixed cost per worker, never per connection.
 */
#define CACHE_BYTES (2u << 20)
#define CACHE_SLOTS 128
static _Thread_local struct {
    uint32_t cap, n;
    void *blk[CACHE_SLOTS];
} cache;

static void *block_get(uint32_t cap)
{
    if (cache.n != 0 && cache.cap == cap)
        return cache.blk[--cache.n];
    return malloc(cap);
}

static void block_put(void *p, uint32_t cap)
{
    if (cache.n != 0 && cache.cap != cap)
        wsg_buf_cache_drain();
    uint32_t max = CACHE_BYTES / (cap != 0 ? cap : 1);
    if (cache.n < (max < CACHE_SLOTS ? max : CACHE_SLOTS)) {
        cache.cap = cap;
        cache.blk[cache.n++] = p;
        return;
    }
    free(p);
}

void wsg_buf_cache_drain(void)
{
    while (cache.n != 0)
        free(cache.blk[--cache.n]);
}

void wsg_buf_setup(struct wsg_buf *b, uint32_t cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
    b->hiwat = cap;
    b->lowat = cap / 2;
}

void wsg_buf_free(struct wsg_buf *b)
{
    if (b->base != NULL)
        block_put(b->base, b->cap);
    b->base = NULL;
    b->head = b->len = 0;
}

void wsg_buf_shrink(struct wsg_buf *b)
{
    if (b->len == 0)
        wsg_buf_free(b);
}

uint8_t *wsg_buf_reserve(struct wsg_buf *b, uint32_t *room)
{
    *room = 0;
    if (b->base == NULL) {
        if (b->cap == 0 || (b->base = block_get(b->cap)) == NULL)
            return NULL;
        b->head = b->len = 0;
    }
    if (b->len == b->cap)
        return NULL;
    if (b->head + b->len == b->cap || (b->len == 0 && b->head != 0)) {
        /* No tail room left (or nothing to keep): slide the unread bytes back to 0. */
        memmove(b->base, b->base + b->head, b->len);
        b->head = 0;
    }
    *room = b->cap - b->head - b->len;
    return b->base + b->head + b->len;
}

void wsg_buf_commit(struct wsg_buf *b, uint32_t n)
{
    b->len += n;
}

size_t wsg_buf_put(struct wsg_buf *b, const void *src, size_t len)
{
    size_t done = 0;
    while (done < len) {
        uint32_t room;
        uint8_t *p = wsg_buf_reserve(b, &room);
        if (p == NULL)
            break;
        size_t n = len - done < room ? len - done : room;
        memcpy(p, (const uint8_t *)src + done, n);
        wsg_buf_commit(b, (uint32_t)n);
        done += n;
    }
    return done;
}

const uint8_t *wsg_buf_peek(const struct wsg_buf *b, uint32_t *len)
{
    *len = b->len;
    return b->len != 0 ? b->base + b->head : NULL;
}

void wsg_buf_consume(struct wsg_buf *b, uint32_t n)
{
    b->head += n;
    b->len -= n;
    if (b->len == 0)
        b->head = 0; /* realign when empty (HAProxy b_realign_if_empty) */
}

size_t wsg_buf_take(struct wsg_buf *b, void *dst, size_t len)
{
    size_t n = len < b->len ? len : b->len;
    if (n != 0) {
        memcpy(dst, b->base + b->head, n);
        wsg_buf_consume(b, (uint32_t)n);
    }
    return n;
}
