/*
 * status.h - the operator's status page of the admin listener (issue 17).
 *
 *   GET /  or  /status   one self-contained HTML page (inline CSS and script, no external asset)
 *                        that fetches /status.json every two seconds and shows the live figures
 *   GET /status.json     the /metrics exposition as JSON: the same snapshot, so the two agree
 *
 * The JSON is made from the Prometheus text the admin endpoint already prints, so every figure
 * the page shows is, by construction, a series of /metrics (no second set of counters to drift).
 */
#ifndef WSG_STATUS_H
#define WSG_STATUS_H

#include <stddef.h>
#include <stdio.h>

extern const char wsg_status_html[];
extern const size_t wsg_status_html_len;

/*
 * Converts Prometheus text exposition (0.0.4) to one JSON object:
 *   {"types":{"FAMILY":"counter",...},
 *    "samples":[{"name":"NAME","labels":{"k":"v",...},"value":NUMBER},...],
 *    "skipped":N}
 * Samples keep their order and their labels' order; label values are unescaped from the
 * exposition and escaped as JSON. A line that is not a comment, not blank and not a well-formed
 * sample with a finite value is skipped and counted in "skipped" (NaN and +-Inf have no JSON
 * number). The output is always valid JSON. Returns the number of skipped lines.
 */
unsigned wsg_status_json(FILE *out, const char *text, size_t len);

#endif
