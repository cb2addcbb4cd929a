/* log.c - error and access logs; see log.h. */
#include "gateway/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int wsg_log_max = WSG_LOG_NOTICE;
static int access_fd = 2;

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};

int wsg_log_level_parse(const char *s)
{
    for (int i = 0; i < 5; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int wsg_log_open_access(const char *where)
{
    if (strcmp(where, "stderr") == 0) {
        access_fd = 2;
        return 0;
    }
    if (strcmp(where, "off") == 0) {
        access_fd = -1;
        return 0;
    }
    int fd = open(where, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    access_fd = fd;
    return 0;
}

int wsg_log_reopen_access(const char *where)
{
    if (strcmp(where, "stderr") == 0 || strcmp(where, "off") == 0 || access_fd <= 2)
        return 0;
    int fd = open(where, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    /* dup2 replaces the descriptor atomically: workers writing at this moment never see a
     * closed fd. */
    int r = dup2(fd, access_fd);
    close(fd);
    return r < 0 ? -1 : 0;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void wsg_log(enum wsg_log_level lvl, const char *fmt, ...)
{
    if (!wsg_log_on(lvl))
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03dZ [%s] ", (int)(tv.tv_usec / 1000),
                          level_names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
    line[n++] = '\n';
    write_all(2, line, n);
}

void wsg_access(const char *json, size_t len)
{
    if (access_fd < 0)
        return;
    char line[4096];
    if (len > sizeof(line) - 1)
        len = sizeof(line) - 1;
    memcpy(line, json, len);
    line[len++] = '\n';
    write_all(access_fd, line, len);
}

size_t wsg_json_str(char *dst, size_t len, size_t cap, const char *s, size_t slen)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < slen; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[7];
        size_t el = 0;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            el = 2;
        } else if (ch < 0x20 || ch >= 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            el = 6;
        } else {
            esc[0] = (char)ch;
            el = 1;
        }
        if (len + el >= cap)
            break;
        memcpy(dst + len, esc, el);
        len += el;
    }
    if (len < cap)
        dst[len] = '\0';
    return len;
}
