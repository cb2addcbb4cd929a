/*
 * reason.h - why a connection ended, and what each reason becomes on the wire: the one table
 * (reason.c) that maps each failure to its log text, the HTTP status answered before an upgrade
 * and the WebSocket close code sent after it. Used by the connection files (conn*.c).
 */
#ifndef WSG_REASON_H
#define WSG_REASON_H

/*
 * Why a connection ended. One row each in wsg_reasons[]: log text, the HTTP status used before
 * the upgrade, the WebSocket close code sent to the client after it.
 */
enum wsg_reason {
    WSG_R_NONE = 0,         /* normal end */
    WSG_R_TLS_HANDSHAKE,    /* handshake failed */
    WSG_R_TLS_TIMEOUT,      /* handshake took too long */
    WSG_R_BAD_REQUEST,      /* 400 */
    WSG_R_BODY_TOO_BIG,     /* 413 */
    WSG_R_URI_TOO_LONG,     /* 414 */
    WSG_R_HEADERS_TOO_BIG,  /* 431 */
    WSG_R_NOT_IMPLEMENTED,  /* 501: unknown transfer-coding */
    WSG_R_UPGRADE_REQUIRED, /* 426: bad Sec-WebSocket-Version */
    WSG_R_HEADER_TIMEOUT,   /* 408 */
    WSG_R_UPSTREAM_DOWN,    /* 502 / 1011: connect failed, all peers down */
    WSG_R_NO_UPSTREAM,      /* 503 */
    WSG_R_UPSTREAM_TIMEOUT, /* 504 */
    WSG_R_UPSTREAM_BAD,     /* 502 / 1014: upstream broke HTTP or RFC 6455 */
    WSG_R_UPSTREAM_CLOSED,  /* 502 / 1011: upstream closed mid-response or mid-session */
    WSG_R_WS_PROTOCOL,      /* 1002 */
    WSG_R_WS_BAD_UTF8,      /* 1007 */
    WSG_R_WS_TOO_BIG,       /* 1009 */
    WSG_R_WS_POLICY,        /* 1008 */
    WSG_R_WS_IDLE,          /* 1001: idle timeout */
    WSG_R_IDLE,             /* keep-alive idle timeout, no answer */
    WSG_R_CLIENT_CLOSED,    /* client went away */
    WSG_R_SHUTDOWN,         /* 503 / 1001: draining */
    WSG_R_NOMEM,            /* 503 / 1011 */
    WSG_R_ORIGIN,           /* 403: Origin not in the route's allowlist */
    WSG_R_SUBPROTOCOL,      /* 403: no offered subprotocol is allowed */
    WSG_R_IP_LIMIT,         /* 429 (or 503): too many connections or upgrades from one address */
    WSG_R_WS_UNSUPPORTED,   /* 1003: a data opcode the route does not allow */
    WSG_R_WS_RATE,          /* 1008: a rate limit with action close */
    WSG_R_WS_PONG,          /* 1001: no pong to the gateway's ping in time */
    WSG_R_WS_LIFETIME,      /* 1001: max_lifetime reached */
    WSG_R_WS_SLOW,          /* 1008: the client did not read for slow_consumer_grace */
    WSG_R_PROXY_HEADER,     /* proxy_protocol listener: bad, cut or late PROXY header, no answer */
    WSG_R_UPSTREAM_DRAIN,   /* 1001: the upstream is being drained (POST /upstreams/NAME/drain) */
    WSG_R__COUNT
};

struct wsg_reason_row {
    const char *text;
    int http_status; /* 0: no HTTP answer (close silently) */
    int ws_close;    /* 0: no close frame */
};

extern const struct wsg_reason_row wsg_reasons[WSG_R__COUNT];

#endif
