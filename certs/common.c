/*
 * common.c - what every wsgate-certs subcommand uses: atomic file writes, argument helpers,
 * usage errors, dates.
 */
#include "certs/certs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len != 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The directory part of path ("." when there is none) into dir. */
static int dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return snprintf(dir, cap, ".") < (int)cap ? 0 : -1;
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= cap)
        return -1;
    memcpy(dir, path, len);
    dir[len] = '\0';
    return 0;
}

int wsg_certs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char err[WSG_ERRLEN])
{
    char dir[4096], tmp[4096 + 64];
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    if (*base == '\0' || dir_of(path, dir, sizeof(dir)) != 0 ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, base) >= (int)sizeof(tmp)) {
        snprintf(err, WSG_ERRLEN, "%s: not a usable file name", path);
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC); /* created 0600: a key is never readable by others, even briefly */
    if (fd < 0) {
        snprintf(err, WSG_ERRLEN, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
        return -1;
    }
    const char *step = "fchmod";
    if (fchmod(fd, mode) != 0)
        goto fail;
    step = "write";
    if (write_all(fd, data, len) != 0)
        goto fail;
    step = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    step = "close";
    int ret = close(fd);
    fd = -1;
    if (ret != 0)
        goto fail;
    step = "rename";
    if (rename(tmp, path) != 0)
        goto fail;
    /* The rename is durable once the directory is on disk too. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
fail:
    snprintf(err, WSG_ERRLEN, "%s: %s: %s", path, step, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}

int wsg_certs_opt_is(const char *arg, const char *opt)
{
    size_t n = strlen(opt);
    return strncmp(arg, opt, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

const char *wsg_certs_opt_value(int argc, char **argv, int *i)
{
    const char *eq = strchr(argv[*i], '=');
    if (eq != NULL)
        return eq + 1;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

int wsg_certs_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int wsg_certs_usage_error(FILE *err, const char *cmd, const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(err, "wsgate-certs %s: ", cmd);
    vfprintf(err, fmt, ap);
    fprintf(err, "\n%s(wsgate-certs %s --help explains every option)\n", usage, cmd);
    va_end(ap);
    return WSG_CERTS_USAGE;
}

void wsg_certs_date(time_t t, char out[11])
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 11, "%Y-%m-%d", &tm) != 10)
        snprintf(out, 11, "?");
}
