/*
 * conn-tls.c - the client hop's TLS, as stages of the pump: the handshake (and what a failed one
 * is counted as), client records in cli.in decrypted into cli_plain, and cli_ptx encrypted into
 * records in cli.out. tls/ does the cryptography over those two buffers and never sees a socket;
 * this file decides when to call it and what a result means for the connection. The close_notify
 * at the end is part of the closing sequence (conn.c, closing_step).
 */
#include "gateway/conn-int.h"

#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

/* Why a handshake failed, from the mbedTLS code the TLS layer put at the end of its message. */
static unsigned tls_fail_reason(const char *err)
{
    const char *p = err ? strstr(err, "(-0x") : NULL;
    unsigned code = p ? (unsigned)strtoul(p + 4, NULL, 16) : 0;
    switch (code) {
    case 0x6E80: /* MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION: TLS 1.1 or older, SSLv3 */
        return WSG_TLSF_VERSION;
    case 0x7180: /* MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE: no common suite, group or signature */
        return WSG_TLSF_NO_COMMON;
    case 0x7200: /* MBEDTLS_ERR_SSL_INVALID_RECORD: not TLS at all (plain HTTP, a scanner) */
        return WSG_TLSF_NOT_TLS;
    case 0x7780: /* MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: the client gave up (untrusted cert...) */
        return WSG_TLSF_CLIENT_ALERT;
    default:
        return WSG_TLSF_OTHER;
    }
}

int wsg_conn_tls_in(struct wsg_conn *c)
{
    if (c->st == WSG_ST_CLOSING || c->tls == NULL || (c->flags & WSG_CF_PROXY_HDR))
        return 0; /* (the PROXY header first: wsg_conn_proxy_in) */
    if (c->st == WSG_ST_TLS_HANDSHAKE) {
        int r = wsg_tls_handshake(c->tls);
        if (r == WSG_OK) {
            wsg_m_add(&metrics(c)->c[wsg_tls_resumed(c->tls) ? WSG_M_TLS_RESUMED : WSG_M_TLS_FULL], 1);
            if (wsg_tls_is_acme(c->tls)) {
                /* A TLS-ALPN-01 validation (RFC 8737 section 3): the handshake was the whole
                 * answer; acme-tls/1 carries no application data. Close (close_notify). */
                clog(WSG_LOG_INFO, c, "TLS-ALPN-01 challenge served for %s",
                     wsg_tls_sni(c->tls) ? wsg_tls_sni(c->tls) : "-");
                wsg_conn_start_closing(c);
                return 1;
            }
            set_state(c, WSG_ST_REQ_HEAD);
            set_deadline(c, cfg_of(c)->header_timeout);
            clog(WSG_LOG_DEBUG, c, "TLS %s %s sni=%s%s", wsg_tls_version(c->tls), wsg_tls_cipher(c->tls),
                 wsg_tls_sni(c->tls) ? wsg_tls_sni(c->tls) : "-", wsg_tls_resumed(c->tls) ? " resumed" : "");
            return 1;
        }
        if (r == WSG_AGAIN) {
            if (c->cli.eof && wsg_buf_len(&c->cli.in) == 0) {
                c->reason = WSG_R_CLIENT_CLOSED;
                c->flags |= WSG_CF_DESTROY;
            }
            return 0;
        }
        c->reason = WSG_R_TLS_HANDSHAKE;
        wsg_m_add(&metrics(c)->c[WSG_M_TLS_FAILED], 1);
        wsg_m_add(&metrics(c)->tls_fail[tls_fail_reason(wsg_tls_error(c->tls))], 1);
        clog(WSG_LOG_INFO, c, "TLS handshake failed: %s", wsg_tls_error(c->tls));
        set_state(c, WSG_ST_CLOSING); /* flush the alert, then close */
        c->flags |= WSG_CF_LINGER;
        set_deadline(c, 0.2);
        return 0;
    }
    int progress = 0;
    if (c->flags & WSG_CF_CLOSE_CLI) {
        /* The gateway closed the client's WebSocket: what it still sends is dropped. */
        wsg_buf_consume(&c->cli.in, wsg_buf_len(&c->cli.in));
        return 0;
    }
    while (wsg_buf_room(&c->cli_plain) > 0 && !c->cli.eof) {
        uint32_t room;
        uint8_t *dst = wsg_buf_reserve(&c->cli_plain, &room);
        if (dst == NULL)
            break;
        ssize_t n = wsg_tls_read(c->tls, dst, room);
        if (n > 0) {
            wsg_buf_commit(&c->cli_plain, (uint32_t)n);
            progress = 1;
        } else if (n == WSG_AGAIN) {
            break;
        } else if (n == WSG_EOF) {
            c->cli.eof = 1; /* close_notify */
            progress = 1;
        } else {
            clog(WSG_LOG_INFO, c, "TLS: %s", wsg_tls_error(c->tls));
            c->reason = WSG_R_CLIENT_CLOSED;
            c->flags |= WSG_CF_DESTROY;
            return 0;
        }
    }
    return progress;
}

int wsg_conn_tls_out(struct wsg_conn *c)
{
    int progress = 0;
    if (c->tls == NULL || c->st == WSG_ST_TLS_HANDSHAKE)
        return 0;
    while (wsg_buf_len(&c->cli_ptx) > 0 && wsg_buf_room(&c->cli.out) >= wsg_tls_write_reserve(c->tls)) {
        uint32_t len;
        const uint8_t *p = wsg_buf_peek(&c->cli_ptx, &len);
        ssize_t n = wsg_tls_write(c->tls, p, len);
        if (n <= 0) {
            if (n == WSG_ERR) {
                clog(WSG_LOG_INFO, c, "TLS write: %s", wsg_tls_error(c->tls));
                c->flags |= WSG_CF_DESTROY;
            }
            break;
        }
        wsg_buf_consume(&c->cli_ptx, (uint32_t)n);
        progress = 1;
    }
    return progress;
}

/* ------------------------------------------------------------------ idle record buffers */

/* An established TLS connection with no burst for this long gives mbedTLS's record buffers
 * (2 x 16.7 KB) back; the next record allocates them again. Giving them back after every burst
 * cost 7x the instructions of a 64 B echo (zeroing and allocating them each time), so a burst
 * only notes the time, like set_deadline, and the timer re-arms for the remainder. */
#define TLS_IDLE_SECONDS 1.0

void wsg_conn_tls_note_burst(struct wsg_conn *c)
{
    if (c->tls == NULL || !wsg_tls_buffers_held(c->tls))
        return;
    c->tls_busy_at = now_of(c);
    if (!ev_is_active(&c->tls_idle)) {
        ev_timer_set(&c->tls_idle, TLS_IDLE_SECONDS, 0.);
        ev_timer_start(c->w->loop, &c->tls_idle);
    }
}

void wsg_conn_tls_on_idle(EV_P_ ev_timer *t, int revents)
{
    WSG_UNUSED(revents);
    struct wsg_conn *c = container_of(t, struct wsg_conn, tls_idle);
    double left = c->tls_busy_at + TLS_IDLE_SECONDS - ev_now(loop);
    if (left <= 0.001) {
        if (wsg_tls_shrink(c->tls))
            return;
        left = TLS_IDLE_SECONDS; /* not idle inside (output waiting for a slow reader): later */
    }
    ev_timer_set(t, left, 0.);
    ev_timer_start(loop, t);
}
