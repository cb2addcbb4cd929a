/*
 * policy-int.h - helpers shared inside policies/ only (not part of the module's interface).
 */
#ifndef WSG_POLICY_INT_H
#define WSG_POLICY_INT_H

#include "policies/policy.h"

/* The effective capacity: burst, or max(rate, 1) when burst is 0. */
double wsg_bucket_burst(const struct wsg_rate *r);
/* Adds what `rate` earned since b->last (capped at the burst) and moves b->last to now. */
void wsg_bucket_refill(struct wsg_bucket *b, const struct wsg_rate *r, double now);
/* After a refill: 0 if n tokens can be taken now, else the seconds until they can (> 0). rate > 0. */
double wsg_bucket_wait(const struct wsg_bucket *b, const struct wsg_rate *r, double n);

#endif
