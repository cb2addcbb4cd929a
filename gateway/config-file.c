/*
 * config-file.c - reading a configuration: the file (lines, comments, `route NAME { ... }`
 * blocks, the rule that a scalar is set once per block) and the --NAME VALUE command line (whose
 * first value of a repeatable setting replaces the file's list). What each setting means, how
 * its value is checked and where it is stored is the settings table's (config.c); this file only
 * finds the settings in the text and hands each value to wsg_cfg_apply with its file and line.
 */
#include "gateway/config-int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* ---- route blocks ---- */

static int route_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((struct wsg_cfg_route *)0)->name))
        return 0;
    for (; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

/* "route NAME {": opens block *rp. */
static int route_open(struct wsg_cfg *c, char *value, const char *path, int line, struct wsg_cfg_route **rp,
                      char err[WSG_ERRLEN])
{
    char *words[3];
    size_t n = wsg_cfg_split_words(value, words, 2);
    if (n == 2 && strcmp(words[1], "{") != 0 && strlen(words[0]) > 0) {
        n = 0;
    } else if (n == 1 && strlen(words[0]) > 1 && words[0][strlen(words[0]) - 1] == '{') {
        words[0][strlen(words[0]) - 1] = '\0'; /* "route chat{" */
        n = 2;
    }
    if (n != 2) {
        snprintf(err, WSG_ERRLEN, "%s:%d: route: expected \"route NAME {\"", path, line);
        return -1;
    }
    const char *name = words[0];
    if (!route_name_ok(name)) {
        snprintf(err, WSG_ERRLEN,
                 "%s:%d: route: \"%.64s\" is not a route name (letters, digits, _ - .; up to 63)", path, line,
                 name);
        return -1;
    }
    for (unsigned i = 0; i < c->nroutes; i++)
        if (strcmp(c->routes[i].name, name) == 0) {
            snprintf(err, WSG_ERRLEN, "%s:%d: route %s: duplicate route name (first defined on line %d)",
                     path, line, name, c->routes[i].line);
            return -1;
        }
    if (c->nroutes >= WSG_CFG_MAX_ROUTES) {
        snprintf(err, WSG_ERRLEN, "%s:%d: route %s: more than %d routes", path, line, name,
                 WSG_CFG_MAX_ROUTES);
        return -1;
    }
    struct wsg_cfg_route *r = &c->routes[c->nroutes++];
    memset(r, 0, sizeof(*r));
    strcpy(r->name, name);
    strcpy(r->path, "/");
    snprintf(r->file, sizeof(r->file), "%s", path);
    r->line = line;
    *rp = r;
    return 0;
}

/* ---- the file ---- */

int wsg_cfg_load_file(struct wsg_cfg *c, const char *path, char err[WSG_ERRLEN])
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, WSG_ERRLEN, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int first_line[WSG_CFG_MAX_ROWS] = {0};
    int route_line[WSG_CFG_MAX_ROWS] = {0}; /* the same, inside the open route block */
    int path_line = 0;
    struct wsg_cfg_route *r = NULL; /* the open route block */
    char *buf = NULL;
    size_t bufcap = 0;
    ssize_t got;
    int line = 0, rc = 0;

    while ((got = getline(&buf, &bufcap, f)) >= 0) {
        line++;
        size_t len = (size_t)got;
        if (len > 0 && buf[len - 1] == '\n')
            len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
        buf[len] = '\0';
        if (len > MAX_LINE) {
            snprintf(err, WSG_ERRLEN, "%s:%d: line is longer than %d bytes", path, line, MAX_LINE);
            rc = -1;
            break;
        }
        if (strlen(buf) != len) {
            snprintf(err, WSG_ERRLEN, "%s:%d: line contains a NUL byte", path, line);
            rc = -1;
            break;
        }
        char *s = buf;
        if (line == 1 && (unsigned char)s[0] == 0xef && (unsigned char)s[1] == 0xbb &&
            (unsigned char)s[2] == 0xbf)
            s += 3; /* UTF-8 byte order mark */
        /* '#' at the start or after whitespace starts a comment */
        for (char *p = s; *p != '\0'; p++)
            if (*p == '#' && (p == s || wsg_cfg_is_space(p[-1]))) {
                *p = '\0';
                break;
            }
        while (wsg_cfg_is_space(*s))
            s++;
        len = strlen(s);
        while (len > 0 && wsg_cfg_is_space(s[len - 1]))
            len--;
        if (len > 0 && s[len - 1] == ';') { /* nginx habit */
            len--;
            while (len > 0 && wsg_cfg_is_space(s[len - 1]))
                len--;
        }
        s[len] = '\0';
        if (len == 0)
            continue;

        char *value = s + strcspn(s, " \t");
        if (*value != '\0')
            *value++ = '\0';

        /* route blocks */
        if (strcmp(s, "route") == 0) {
            if (r != NULL) {
                snprintf(err, WSG_ERRLEN,
                         "%s:%d: route: nested route blocks are not allowed (route %s opened on line %d)",
                         path, line, r->name, r->line);
                rc = -1;
                break;
            }
            if (route_open(c, value, path, line, &r, err) != 0) {
                rc = -1;
                break;
            }
            memset(route_line, 0, sizeof(route_line));
            path_line = 0;
            continue;
        }
        if (strcmp(s, "}") == 0) {
            if (r == NULL || value[strspn(value, " \t")] != '\0') {
                snprintf(err, WSG_ERRLEN, "%s:%d: unexpected \"}\"%s", path, line,
                         r == NULL ? " (no route block is open)"
                                   : " (a line of its own closes a route block)");
                rc = -1;
                break;
            }
            r = NULL;
            continue;
        }
        if (strcmp(s, "host") == 0 || strcmp(s, "path") == 0) {
            if (r == NULL) {
                snprintf(err, WSG_ERRLEN, "%s:%d: %s: only allowed inside a route block", path, line, s);
                rc = -1;
                break;
            }
            if (wsg_cfg_route_line(r, s, value, path, line, &path_line, err) != 0) {
                rc = -1;
                break;
            }
            continue;
        }

        const struct setting *st = wsg_cfg_find(s);
        if (st == NULL) {
            wsg_cfg_unknown(err, path, line, s);
            rc = -1;
            break;
        }
        if (r != NULL && !st->route && st->type != T_UPSTREAM) {
            snprintf(err, WSG_ERRLEN, "%s:%d: %s: not allowed inside a route block", path, line, st->name);
            rc = -1;
            break;
        }
        size_t row = wsg_cfg_row_index(st);
        int *seen = r != NULL ? route_line : first_line;
        if (!wsg_cfg_is_list(st) && seen[row] != 0) {
            wsg_cfg_fail(err, path, line, st->name, "is duplicate (first set on line %d)", seen[row]);
            rc = -1;
            break;
        }
        if (wsg_cfg_apply(c, r, st, value, path, line, err) != 0) {
            rc = -1;
            break;
        }
        seen[row] = line;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, WSG_ERRLEN, "%s: cannot read: %s", path, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && r != NULL) {
        snprintf(err, WSG_ERRLEN, "%s:%d: route %s: unclosed block (opened on line %d)", path, line, r->name,
                 r->line);
        rc = -1;
    }
    free(buf);
    fclose(f);
    return rc;
}

/* ---- the command line ---- */

int wsg_cfg_load_args(struct wsg_cfg *c, int argc, char **argv, char err[WSG_ERRLEN])
{
    int seen[WSG_CFG_MAX_ROWS] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0) {
            i++; /* -c FILE: main's */
            continue;
        }
        if (strncmp(a, "-c", 2) == 0 || strcmp(a, "-t") == 0 || strcmp(a, "-h") == 0 ||
            strcmp(a, "--help") == 0)
            continue;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            snprintf(err, WSG_ERRLEN, "unexpected argument \"%.200s\" (settings are --NAME VALUE)", a);
            return -1;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq != NULL ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof(name)) {
            snprintf(err, WSG_ERRLEN, "unknown option \"%.200s\"", a);
            return -1;
        }
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        const struct setting *st = wsg_cfg_find(name);
        if (st == NULL) {
            wsg_cfg_unknown(err, "--", 0, name);
            return -1;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            wsg_cfg_fail(err, "--", 0, st->name, "missing value");
            return -1;
        }
        size_t row = wsg_cfg_row_index(st);
        if (wsg_cfg_is_list(st) && !seen[row])
            wsg_cfg_clear_list(c, NULL, st); /* the command line replaces the file's list */
        seen[row] = 1;
        if (wsg_cfg_apply(c, NULL, st, value, "--", 0, err) != 0)
            return -1;
    }
    return 0;
}
