/*
 * lifecycle.h - an upstream's life at run time, driven from the admin endpoint (issue 15):
 *
 *   GET  /upstreams                         JSON: every peer of every group, its state, weight,
 *                                           WebSocket sessions and health (passive and active)
 *   POST /upstreams/HOST:PORT/drain?spread=30s  no new sessions or requests; its WebSockets get
 *                                           1001 "upstream draining" at random times over spread
 *   POST /upstreams/HOST:PORT/ready         undoes drain (pending 1001s are cancelled)
 *   POST /upstreams/HOST:PORT/weight?w=N    the weight in force, 0-100 (0: no new sessions)
 *
 * A change applies to the peer of that name in every group of every runtime still in memory
 * (connections opened before a reload keep their runtime), then every worker is woken to apply
 * it to its own connections. A reload builds fresh tables from the file: changes made here do
 * not survive SIGHUP (like HAProxy's runtime API), unless written to the file.
 */
#ifndef WSG_LIFECYCLE_H
#define WSG_LIFECYCLE_H

#include <stddef.h>
#include <stdio.h>

#include "gateway/conn.h"

/* GET /upstreams of the current runtime rts[0]; sessions are summed over rts[0..n). */
void wsg_lifecycle_list(FILE *out, struct wsg_runtime *const *rts, size_t nrts, double now);

/* The per-upstream gauges of /metrics: up (all health), active check up and latency, checks by
 * result, draining, weight, sessions. */
void wsg_lifecycle_metrics(FILE *out, const struct wsg_runtime *rt, double now);

/**
 * POST /upstreams/NAME/ACTION?QUERY (target as received, len bytes). Applies the change to
 * rts[0..nrts) and wakes the workers. Writes a JSON (or error) body to out.
 * @return the HTTP status: 200, 400 (bad query), 404 (no such upstream or action)
 */
int wsg_lifecycle_post(FILE *out, const char *target, size_t len, struct wsg_runtime *const *rts, size_t nrts,
                       struct wsg_worker *workers, unsigned nworkers);

#endif
