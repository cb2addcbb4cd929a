/* err.c - the one table that maps each failure to its answer on the wire. */
#include "gateway/err.h"

const struct wsg_reason_row wsg_reasons[WSG_R__COUNT] = {
    [WSG_R_NONE] = {"done", 0, 1000},
    [WSG_R_TLS_HANDSHAKE] = {"TLS handshake failed", 0, 0},
    [WSG_R_TLS_TIMEOUT] = {"TLS handshake timeout", 0, 0},
    [WSG_R_BAD_REQUEST] = {"bad request", 400, 0},
    [WSG_R_BODY_TOO_BIG] = {"request body too large", 413, 0},
    [WSG_R_URI_TOO_LONG] = {"request-target too long", 414, 0},
    [WSG_R_HEADERS_TOO_BIG] = {"request header fields too large", 431, 0},
    [WSG_R_NOT_IMPLEMENTED] = {"transfer-coding not implemented", 501, 0},
    [WSG_R_UPGRADE_REQUIRED] = {"unsupported WebSocket version", 426, 0},
    [WSG_R_HEADER_TIMEOUT] = {"request header timeout", 408, 0},
    [WSG_R_UPSTREAM_DOWN] = {"no upstream reachable", 502, 1011},
    [WSG_R_NO_UPSTREAM] = {"no upstream configured", 503, 1011},
    [WSG_R_UPSTREAM_TIMEOUT] = {"upstream timeout", 504, 1011},
    [WSG_R_UPSTREAM_BAD] = {"invalid upstream response", 502, 1014},
    [WSG_R_UPSTREAM_CLOSED] = {"upstream closed the connection", 502, 1011},
    [WSG_R_WS_PROTOCOL] = {"WebSocket protocol error", 0, 1002},
    [WSG_R_WS_BAD_UTF8] = {"invalid UTF-8 in text message", 0, 1007},
    [WSG_R_WS_TOO_BIG] = {"message too big", 0, 1009},
    [WSG_R_WS_POLICY] = {"policy violation", 0, 1008},
    [WSG_R_WS_IDLE] = {"WebSocket idle timeout", 0, 1001},
    [WSG_R_IDLE] = {"keep-alive idle timeout", 0, 0},
    [WSG_R_CLIENT_CLOSED] = {"client closed", 0, 1001},
    [WSG_R_SHUTDOWN] = {"gateway shutting down", 503, 1001},
    [WSG_R_NOMEM] = {"out of memory", 503, 1011},
};
