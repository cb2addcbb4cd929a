/*
 * bucket.c - token buckets with injected time (policy.h).
 *
 * A bucket holds up to `burst` tokens and gains `rate` per second. Taking n tokens either succeeds
 * now or says how long to wait (HAProxy's next_event_delay: a delay, not a yes/no), so the caller
 * arms one timer instead of polling. A message larger than the burst is let through when the
 * bucket is full and leaves it in debt: it is delayed, never refused.
 */
#include "policies/policy.h"

#include "policies/policy-int.h"

double wsg_bucket_burst(const struct wsg_rate *r)
{
    if (r->burst > 0)
        return r->burst;
    return r->rate > 1 ? r->rate : 1;
}

void wsg_bucket_init(struct wsg_bucket *b, const struct wsg_rate *r, double now)
{
    b->tokens = wsg_bucket_burst(r);
    b->last = now;
}

void wsg_bucket_refill(struct wsg_bucket *b, const struct wsg_rate *r, double now)
{
    double burst = wsg_bucket_burst(r);
    if (now > b->last) {
        b->tokens += (now - b->last) * r->rate;
        if (b->tokens > burst)
            b->tokens = burst;
    }
    /* time going backwards refills nothing; either way the bucket is now at `now` */
    b->last = now;
    if (b->tokens > burst) /* the burst shrank on reload */
        b->tokens = burst;
}

double wsg_bucket_wait(const struct wsg_bucket *b, const struct wsg_rate *r, double n)
{
    double burst = wsg_bucket_burst(r);
    if (n <= b->tokens)
        return 0;
    if (n > burst && b->tokens >= burst)
        return 0; /* larger than the burst: allowed from a full bucket, into debt */
    double need = (n > burst ? burst : n) - b->tokens;
    double w = need / r->rate;
    return w > 0 ? w : 1e-9; /* never 0 for a refusal, whatever the rounding */
}

double wsg_bucket_take(struct wsg_bucket *b, const struct wsg_rate *r, double n, double now)
{
    if (!(r->rate > 0)) /* off (also NaN) */
        return 0;
    if (!(n > 0))
        return 0;
    wsg_bucket_refill(b, r, now);
    double w = wsg_bucket_wait(b, r, n);
    if (w == 0)
        b->tokens -= n;
    return w;
}

double wsg_bucket_charge(struct wsg_bucket *b, const struct wsg_rate *r, double n, double now)
{
    if (!(r->rate > 0)) /* off (also NaN) */
        return 0;
    wsg_bucket_refill(b, r, now);
    if (n > 0)
        b->tokens -= n;
    if (b->tokens >= 0)
        return 0;
    double w = -b->tokens / r->rate;
    return w > 0 ? w : 1e-9;
}
