/*
 * health.h - active health checks (issue 15): one thread with its own libev loop for the whole
 * process sends `GET health_check HTTP/1.1` over plaintext to every upstream of every group of
 * the runtime in force, every health_interval; an answer 2xx/3xx within health_timeout passes.
 * health_fall failures in a row mark the peer down (hc_down), health_rise passes bring it back;
 * wsg_upstream_is_up combines this with the passive checks. State changes are logged.
 */
#ifndef WSG_HEALTH_H
#define WSG_HEALTH_H

#include "gateway/conn.h"

/* Starts the checker thread (it idles while health_check is off). @return 0 or -1 with err. */
int wsg_health_start(struct wsg_shared *sh, char err[WSG_ERRLEN]);
/* Stops and joins it; in-flight checks are abandoned. */
void wsg_health_stop(void);

/**
 * Reads an HTTP/1.x status line at the start of buf (len bytes).
 * @return the status (100-999), 0 when more bytes are needed, -1 when it is not one
 */
int wsg_health_status_line(const char *buf, size_t len);
/* The health_check path in force for upstream group r (0: the global group; i + 1: route i's own
 * group, whose block may set its own health_* values), or "off". */
const char *wsg_health_path(const struct wsg_cfg *cfg, unsigned r);

#endif
