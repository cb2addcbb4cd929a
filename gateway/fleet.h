/*
 * fleet.h - per-IP rules counted over a fleet of gateways through Redis (`redis`, issue 14).
 *
 * One sync thread per process with its own libev loop and one hiredis async connection (attached
 * with hiredis's libev adapter): the per-IP table it syncs is already one per process, shared by
 * the workers, so one client per process is the natural counterpart and no worker loop ever waits
 * on Redis. Every redis_sync it collects the table's deltas (policies/iptable.c,
 * wsg_iptable_fleet_collect), pipelines them into Redis and charges back what the other gateways
 * consumed (wsg_iptable_fleet_apply). Redis down, slow or restarted: the deltas of that interval
 * are dropped, the table counts locally as without Redis, `wsgate_redis_up` is 0, a log line says
 * so, and the connection is retried with backoff.
 */
#ifndef WSG_FLEET_H
#define WSG_FLEET_H

#include <stdio.h>

#include "gateway/config.h"
#include "policies/policy.h"

struct wsg_fleet;

/* Starts the sync thread for cfg->redis (which must be set). @return NULL with err on failure. */
struct wsg_fleet *wsg_fleet_start(struct wsg_iptable *t, const struct wsg_cfg *cfg, char err[WSG_ERRLEN]);
/* Stops the thread and frees everything (f may be NULL). */
void wsg_fleet_stop(struct wsg_fleet *f);
/* The wsgate_redis_* families for /metrics (f may be NULL: redis_up is then absent). */
void wsg_fleet_metrics(struct wsg_fleet *f, FILE *out);

#endif
