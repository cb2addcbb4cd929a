/*
 * policy.c - the built-in policy defaults (README "Policies" says why each value).
 *
 * The settings table in gateway/config.c carries the same values as its defaults; the config unit
 * test checks that both agree, so changing one without the other fails `make test`.
 */
#include "policies/policy.h"

#include <string.h>

void wsg_policy_defaults(struct wsg_policy *p)
{
    memset(p, 0, sizeof(*p)); /* rates off, lists empty, lifetime off, slow consumer off */
    /* client -> upstream: Kong's client default (1 MiB); what a browser app sends is small */
    p->c2u.max_frame = 1u << 20;
    p->c2u.max_message = 1u << 20;
    /* upstream -> client: Kong's upstream default (16 MiB); the backend is trusted more */
    p->u2c.max_frame = 16u << 20;
    p->u2c.max_message = 16u << 20;
    p->c2u.allow_text = p->c2u.allow_binary = p->c2u.utf8 = 1;
    p->u2c.allow_text = p->u2c.allow_binary = p->u2c.utf8 = 1;
    p->rate_action = WSG_RATE_THROTTLE;
    p->ip_limit_status = 429;
    /* a dead peer is gone within 45 s, below the usual 60 s load-balancer idle timeouts */
    p->ping_interval = 30;
    p->pong_timeout = 15;
    p->slow_consumer_grace = 30;
    p->deflate = 1;
    p->deflate_max_ratio = 100;
}

int wsg_policy_per_ip(const struct wsg_policy *p)
{
    return p->ip_max_conns != 0 || p->ip_upgrades.rate > 0 || p->ip_msgs.rate > 0 || p->ip_bytes.rate > 0;
}
