/*
 * log.h - the error log (text, levels as nginx) and the access log (one JSON object per line).
 *
 * Both go to stderr unless configured otherwise. Lines are written with one write(2) each, so
 * lines from different worker threads never interleave.
 */
#ifndef WSG_LOG_H
#define WSG_LOG_H

#include <stddef.h>

enum wsg_log_level { WSG_LOG_ERROR, WSG_LOG_WARN, WSG_LOG_NOTICE, WSG_LOG_INFO, WSG_LOG_DEBUG };

extern int wsg_log_max; /* lines above this level are dropped */

/* "error" .. "debug" -> level, or -1. */
int wsg_log_level_parse(const char *s);
/* Opens the access log: "stderr", "off" or a path (appended). Returns 0 or -1 (errno set). */
int wsg_log_open_access(const char *where);
/* Reopens the access-log file in place (logrotate's SIGUSR1). Returns 0 or -1 (errno set). */
int wsg_log_reopen_access(const char *where);

void wsg_log(enum wsg_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes one access-log line (a complete JSON object without the newline). */
void wsg_access(const char *json, size_t len);

/* Appends s to dst as a JSON string body (escaping quotes, backslashes, control bytes and bytes
 * >= 0x80 as \u00XX), never writing past cap; returns the new length. */
size_t wsg_json_str(char *dst, size_t len, size_t cap, const char *s, size_t slen);

#define wsg_log_on(lvl) ((int)(lvl) <= wsg_log_max)

#endif
