/*
 * wsgate-ctl.c - the command-line client of wsgate's admin endpoint (issue 15): upstreams and
 * their lifecycle (drain, ready, weight), reload, status. One request per command through the
 * admin client of wsgate-certs (certs/admin_client.c); the answers are the endpoint's JSON.
 *
 * Exit codes: 0 done, 1 bad usage (also a value the gateway refused as malformed: 400),
 * 2 not found or refused (404, 409, anything else not 2xx; status: the gateway drains),
 * 3 cannot connect to the admin endpoint (or no answer in time).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs/certs.h"

enum { CTL_OK = 0, CTL_USAGE = 1, CTL_REFUSED = 2, CTL_CONNECT = 3 };

static const char synopsis[] =
    "usage: wsgate-ctl [--admin unix:PATH|HOST:PORT] [--timeout SECONDS] COMMAND [ARGS]\n"
    "commands:\n"
    "  upstreams [--json]                  every upstream: state, weights, sessions, health\n"
    "  drain HOST:PORT [--spread 30s]      no new sessions; its WebSockets get 1001 over the spread\n"
    "  ready HOST:PORT                     undo drain\n"
    "  weight HOST:PORT N                  weight in force, 0-100 (0: no new sessions)\n"
    "  reload                              reload configuration and certificates (as SIGHUP)\n"
    "  status                              ready or draining, and the upstreams in one line\n"
    "--admin defaults to $WSGATE_ADMIN. Changes made here do not survive a reload: put lasting ones\n"
    "in the configuration file.\n"
    "exit codes: 0 done, 1 bad usage, 2 not found or refused (status: draining), 3 cannot connect\n";

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wsgate-ctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(synopsis, stderr);
    return CTL_USAGE;
}

/* Sends one request; prints the reason and returns CTL_CONNECT when there is no answer. */
static int request(const char *admin, const char *method, const char *path, int timeout_ms,
                   struct wsg_certs_http *res)
{
    char err[WSG_ERRLEN];
    if (wsg_certs_admin_request(admin, method, path, timeout_ms, res, err) != 0) {
        fprintf(stderr, "wsgate-ctl: %s\n", err);
        return CTL_CONNECT;
    }
    return CTL_OK;
}

/* The exit code for an HTTP status; prints the body of an error to stderr. */
static int outcome(const struct wsg_certs_http *res)
{
    if (res->status >= 200 && res->status < 300)
        return CTL_OK;
    fprintf(stderr, "wsgate-ctl: %d: %s%s", res->status, res->body,
            res->len > 0 && res->body[res->len - 1] == '\n' ? "" : "\n");
    return res->status == 400 ? CTL_USAGE : CTL_REFUSED;
}

/* HOST:PORT goes into the request-target as it is: nothing that would end or reshape it. */
static int name_ok(const char *s)
{
    if (*s == '\0' || strlen(s) > 127)
        return 0;
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f || *s == '/' || *s == '?' || *s == '#' || *s == '%' || *s == '&')
            return 0;
    return 1;
}

static void print_table(const char *body, size_t len)
{
    struct wsg_certs_json *j = wsg_certs_json_parse(body, len);
    const struct wsg_certs_json *ups = wsg_certs_json_get(j, "upstreams");
    if (ups == NULL || ups->type != WSG_JSON_ARRAY) {
        fputs(body, stdout);
        wsg_certs_json_free(j);
        return;
    }
    printf("%-12s %-28s %-9s %6s %8s %-7s %-6s %s\n", "GROUP", "UPSTREAM", "STATE", "WEIGHT", "SESSIONS",
           "PASSIVE", "ACTIVE", "LAST CHECK");
    for (size_t i = 0; i < ups->n; i++) {
        const struct wsg_certs_json *u = ups->kid[i], *h = wsg_certs_json_get(u, "health");
        const char *group = wsg_certs_json_str(wsg_certs_json_get(u, "group"));
        const char *name = wsg_certs_json_str(wsg_certs_json_get(u, "name"));
        const char *state = wsg_certs_json_str(wsg_certs_json_get(u, "state"));
        const char *passive = wsg_certs_json_str(wsg_certs_json_get(h, "passive"));
        const char *active = wsg_certs_json_str(wsg_certs_json_get(h, "active"));
        char weight[32], last[64] = "-";
        snprintf(weight, sizeof(weight), "%.0f/%.0f", wsg_certs_json_num(wsg_certs_json_get(u, "weight"), 0),
                 wsg_certs_json_num(wsg_certs_json_get(u, "configured_weight"), 0));
        if (wsg_certs_json_get(h, "last_status") != NULL)
            snprintf(last, sizeof(last), "%.0f in %.1f ms",
                     wsg_certs_json_num(wsg_certs_json_get(h, "last_status"), 0),
                     wsg_certs_json_num(wsg_certs_json_get(h, "latency_ms"), 0));
        printf("%-12s %-28s %-9s %6s %8.0f %-7s %-6s %s\n", group ? group : "?", name ? name : "?",
               state ? state : "?", weight, wsg_certs_json_num(wsg_certs_json_get(u, "sessions"), 0),
               passive ? passive : "?", active ? active : "?", last);
    }
    wsg_certs_json_free(j);
}

static int cmd_status(const char *admin, int timeout_ms)
{
    struct wsg_certs_http ready, ups;
    int rc = request(admin, "GET", "/readyz", timeout_ms, &ready);
    if (rc != CTL_OK)
        return rc;
    rc = request(admin, "GET", "/upstreams", timeout_ms, &ups);
    if (rc != CTL_OK) {
        wsg_certs_http_free(&ready);
        return rc;
    }
    unsigned n[4] = {0}; /* up, down, draining, idle */
    unsigned long sessions = 0;
    struct wsg_certs_json *j = wsg_certs_json_parse(ups.body, ups.len);
    const struct wsg_certs_json *list = wsg_certs_json_get(j, "upstreams");
    for (size_t i = 0; list != NULL && list->type == WSG_JSON_ARRAY && i < list->n; i++) {
        const char *st = wsg_certs_json_str(wsg_certs_json_get(list->kid[i], "state"));
        static const char *const names[4] = {"up", "down", "draining", "idle"};
        for (int k = 0; k < 4; k++)
            if (st != NULL && strcmp(st, names[k]) == 0)
                n[k]++;
        sessions += (unsigned long)wsg_certs_json_num(wsg_certs_json_get(list->kid[i], "sessions"), 0);
    }
    wsg_certs_json_free(j);
    int draining = ready.status != 200;
    printf("%s; upstreams: %u up, %u down, %u draining, %u weight 0; %lu WebSocket sessions\n",
           draining ? "draining" : "ready", n[0], n[1], n[2], n[3], sessions);
    wsg_certs_http_free(&ready);
    wsg_certs_http_free(&ups);
    return draining ? CTL_REFUSED : CTL_OK;
}

int main(int argc, char **argv)
{
    const char *admin = getenv("WSGATE_ADMIN");
    unsigned timeout_s = 10;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(synopsis, stdout);
            return CTL_OK;
        } else if (wsg_certs_opt_is(argv[i], "--admin")) {
            if ((admin = wsg_certs_opt_value(argc, argv, &i)) == NULL || admin[0] == '\0')
                return usage_error("--admin needs unix:PATH or HOST:PORT");
        } else if (wsg_certs_opt_is(argv[i], "--timeout")) {
            if (wsg_certs_parse_uint(wsg_certs_opt_value(argc, argv, &i), 1, 3600, &timeout_s) != 0)
                return usage_error("--timeout needs seconds, 1-3600");
        } else {
            return usage_error("unknown option \"%s\"", argv[i]);
        }
    }
    if (i >= argc)
        return usage_error("no command");
    const char *cmd = argv[i++];
    if (strcmp(cmd, "help") == 0) {
        fputs(synopsis, stdout);
        return CTL_OK;
    }
    if (admin == NULL || admin[0] == '\0')
        return usage_error("where is the gateway? give --admin unix:PATH|HOST:PORT (or set WSGATE_ADMIN)");
    int timeout_ms = (int)timeout_s * 1000;

    /* the command's own arguments */
    const char *name = NULL, *value = NULL, *spread = NULL;
    int json = 0;
    int want_name = strcmp(cmd, "drain") == 0 || strcmp(cmd, "ready") == 0 || strcmp(cmd, "weight") == 0;
    if (!want_name && strcmp(cmd, "upstreams") != 0 && strcmp(cmd, "reload") != 0 &&
        strcmp(cmd, "status") != 0)
        return usage_error("unknown command \"%s\"", cmd);
    for (; i < argc; i++) {
        if (strcmp(cmd, "drain") == 0 && wsg_certs_opt_is(argv[i], "--spread")) {
            if ((spread = wsg_certs_opt_value(argc, argv, &i)) == NULL || !name_ok(spread))
                return usage_error("--spread needs a duration (e.g. 30s)");
        } else if (strcmp(cmd, "upstreams") == 0 && strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (want_name && name == NULL && strncmp(argv[i], "--", 2) != 0) {
            name = argv[i];
        } else if (strcmp(cmd, "weight") == 0 && value == NULL && strncmp(argv[i], "--", 2) != 0) {
            value = argv[i];
        } else {
            return usage_error("unexpected argument \"%s\"", argv[i]);
        }
    }
    if (want_name && name == NULL)
        return usage_error("%s needs HOST:PORT", cmd);
    if (name != NULL && !name_ok(name))
        return usage_error("\"%s\" is not HOST:PORT", name);
    unsigned w = 0;
    if (strcmp(cmd, "weight") == 0 && (value == NULL || wsg_certs_parse_uint(value, 0, 100, &w) != 0))
        return usage_error("weight needs HOST:PORT and a number 0-100");

    if (strcmp(cmd, "status") == 0)
        return cmd_status(admin, timeout_ms);
    char path[512];
    const char *method = "POST";
    if (strcmp(cmd, "upstreams") == 0) {
        method = "GET";
        snprintf(path, sizeof(path), "/upstreams");
    } else if (strcmp(cmd, "reload") == 0) {
        snprintf(path, sizeof(path), "/reload");
    } else if (strcmp(cmd, "weight") == 0) {
        snprintf(path, sizeof(path), "/upstreams/%s/weight?w=%u", name, w);
    } else if (spread != NULL) {
        snprintf(path, sizeof(path), "/upstreams/%s/drain?spread=%s", name, spread);
    } else {
        snprintf(path, sizeof(path), "/upstreams/%s/%s", name, cmd);
    }
    struct wsg_certs_http res;
    int rc = request(admin, method, path, timeout_ms, &res);
    if (rc != CTL_OK)
        return rc;
    rc = outcome(&res);
    if (rc == CTL_OK) {
        if (strcmp(cmd, "upstreams") == 0 && !json)
            print_table(res.body, res.len);
        else
            fputs(res.body, stdout);
    }
    wsg_certs_http_free(&res);
    return rc;
}
