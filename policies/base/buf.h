/*
 * buf.h - fixed-capacity linear sliding byte buffer. Part of the base layer (policies/base/), below
 * every module: anyone may include it, and it includes nothing of the project but err.h.
 *
 * API: reserve -> write into the span -> commit; peek -> consume. The buffer slides its bytes back
 * to offset 0 when it empties or when reserve needs tail room. Memory is allocated lazily on the
 * first reserve/put, so an idle connection's empty buffers cost nothing after wsg_buf_shrink();
 * the blocks given back are reused from a bounded per-thread cache, not malloc'd per message.
 */
#ifndef WSG_BUF_H
#define WSG_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "policies/base/buf-t.h"
#include "policies/base/err.h"

/* Sets capacity and watermarks; allocates nothing. hiwat defaults to cap, lowat to cap/2. */
void wsg_buf_setup(struct wsg_buf *b, uint32_t cap);
/* Frees the memory; the buffer becomes empty and unallocated (cap and marks kept). */
void wsg_buf_free(struct wsg_buf *b);
/* Gives the memory back if the buffer is empty. */
void wsg_buf_shrink(struct wsg_buf *b);
/* Frees the blocks the calling thread keeps for reuse (freed buffers go to a small per-thread
 * cache, at most 2 MiB); a thread calls it before it exits. */
void wsg_buf_cache_drain(void);

/* Returns a pointer to contiguous free room and its size in *room (0 if full). NULL when the
 * allocation fails (out of memory) or when the buffer is full. */
uint8_t *wsg_buf_reserve(struct wsg_buf *b, uint32_t *room) WSG_MUST_CHECK;
/* Marks n bytes written into the span returned by reserve. */
void wsg_buf_commit(struct wsg_buf *b, uint32_t n);
/* Appends up to len bytes; returns how many were copied (may be short when full; 0 on OOM). */
size_t wsg_buf_put(struct wsg_buf *b, const void *src, size_t len);
/* Pointer to the first unread byte, with the count in *len (NULL, 0 when empty). */
const uint8_t *wsg_buf_peek(const struct wsg_buf *b, uint32_t *len);
/* Drops n bytes from the front (n <= len). */
void wsg_buf_consume(struct wsg_buf *b, uint32_t n);
/* Copies up to len bytes out and consumes them; returns how many. */
size_t wsg_buf_take(struct wsg_buf *b, void *dst, size_t len);

static inline uint32_t wsg_buf_len(const struct wsg_buf *b)
{
    return b->len;
}
static inline uint32_t wsg_buf_room(const struct wsg_buf *b)
{
    return b->cap - b->len;
}
static inline int wsg_buf_above_hiwat(const struct wsg_buf *b)
{
    return b->len >= b->hiwat;
}
static inline int wsg_buf_below_lowat(const struct wsg_buf *b)
{
    return b->len <= b->lowat;
}

#endif
