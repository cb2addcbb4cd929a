/*
 * buf.c - fixed-capacity linear sliding byte buffer (see buf.h).
 *
 * Linear rather than a ring so that parsers always see the unread bytes contiguous (the HTTP head,
 * a frame header). Memory is taken on the first reserve and can be given back when the buffer
 * empties, which keeps idle connections cheap.
 */
#include "gateway/buf.h"

#include <stdlib.h>
#include <string.h>

void wsg_buf_setup(struct wsg_buf *b, uint32_t cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
    b->hiwat = cap;
    b->lowat = cap / 2;
}

void wsg_buf_free(struct wsg_buf *b)
{
    free(b->base);
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
        if (b->cap == 0 || (b->base = malloc(b->cap)) == NULL)
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
