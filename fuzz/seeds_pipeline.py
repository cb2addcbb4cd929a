#!/usr/bin/env python3
"""fuzz/seeds_pipeline.py - (re)writes the seed corpus of the pipeline target, fuzz/corpus/pipeline/.

Run from the repository root: python3 fuzz/seeds_pipeline.py. Deterministic. Each seed is a script
of ops in the format documented at the top of fuzz/pipeline.c: [op][len lo][len hi][bytes].
The WebSocket seeds use the RFC 6455 sample key, whose accept value the upstream answers with.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "pipeline")

CSEND, USEND, CREAD, UREAD, CCLOSE, UCLOSE, TIME, CFRAME, UFRAME, CPONG, CRAW, DRAIN = range(12)
# TIME steps: index into {0.1, 1, 3, 10, 30, 100, 1000, 4000} s
T100, T1000, T4000 = 5, 6, 7

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

UPGRADE = (
    "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: " + KEY + "\r\nSec-WebSocket-Version: 13\r\nOrigin: https://localhost\r\n\r\n"
)
R101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + ACCEPT + "\r\n\r\n"


def op(code, data=b""):
    if isinstance(data, str):
        data = data.encode("latin-1")
    return bytes([code]) + struct.pack("<H", len(data)) + data


def frame(b0, payload=b"", rep=0):
    """Argument of CFRAME/UFRAME: header byte, repeat count, payload (the harness frames it)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return bytes([b0, rep]) + payload


def close_body(code, reason=b""):
    return struct.pack(">H", code) + reason


def raw_masked(b0, payload, key=b"\x11\x22\x33\x44", len_byte=None):
    """A client frame written by hand (for frames the harness's framer cannot make)."""
    n = len(payload)
    hdr = bytes([b0, 0x80 | (n if len_byte is None else len_byte)]) + key
    return hdr + bytes(p ^ key[i & 3] for i, p in enumerate(payload))


def ws_open():
    return op(CSEND, UPGRADE) + op(UREAD) + op(USEND, R101) + op(CREAD)


SEEDS = {}

# Plain HTTP: two requests on one kept-alive connection, Content-Length answers.
SEEDS["get-keepalive"] = (
    op(CSEND, "GET /index.html HTTP/1.1\r\nHost: localhost\r\nUser-Agent: seed\r\n\r\n")
    + op(UREAD)
    + op(USEND, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    + op(CREAD)
    + op(CSEND, "GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n")
    + op(UREAD)
    + op(USEND, "HTTP/1.1 204 No Content\r\n\r\n")
    + op(CREAD)
    + op(CCLOSE, b"\x01")
)

# POST with a chunked body, chunked response with trailers.
SEEDS["post-chunked"] = (
    op(CSEND, "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    + op(CSEND, "1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n")
    + op(UREAD)
    + op(USEND, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n")
    + op(CREAD)
    + op(USEND, "5\r\npedia\r\n0\r\n\r\n")
    + op(CREAD)
)

# Response until EOF, HEAD request, 100-continue.
SEEDS["http-eof-body"] = (
    op(CSEND, "PUT /f HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
    + op(UREAD)
    + op(USEND, "HTTP/1.1 100 Continue\r\n\r\n")
    + op(CREAD)
    + op(CSEND, "0123456789")
    + op(UREAD)
    + op(USEND, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until eof")
    + op(UCLOSE, b"\x03")
    + op(CREAD)
)
SEEDS["head-then-upgrade"] = (
    op(CSEND, "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    + op(UREAD)
    + op(USEND, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    + op(CREAD)
    + op(CSEND, UPGRADE)
    + op(UREAD)
    + op(USEND, R101)
    + op(CREAD)
    + op(CFRAME, frame(0x81, "after reuse"))
    + op(UREAD)
    + op(UFRAME, frame(0x81, "ok"))
    + op(CREAD)
)

# WebSocket: frames both ways, fragments, ping/pong, close handshake.
SEEDS["ws-session"] = (
    ws_open()
    + op(CFRAME, frame(0x81, "hello"))
    + op(UREAD)
    + op(UFRAME, frame(0x81, "world"))
    + op(CREAD)
    + op(CFRAME, frame(0x02, b"\x00\x01\x02"))
    + op(CFRAME, frame(0x89, b"cping"))
    + op(CFRAME, frame(0x80, b"\x03\x04", 9))
    + op(UREAD)
    + op(UFRAME, frame(0x89, b"uping"))
    + op(CREAD)
    + op(CPONG)
    + op(UREAD)
    + op(UFRAME, frame(0x82, b"\xff" * 100, 9))
    + op(CREAD)
    + op(CFRAME, frame(0x88, close_body(1000, b"bye")))
    + op(UREAD)
    + op(UFRAME, frame(0x88, close_body(1000)))
    + op(CREAD)
    + op(CCLOSE, b"\x01")
)
SEEDS["ws-upstream-closes-first"] = (
    ws_open()
    + op(UFRAME, frame(0x81, "héllo"))
    + op(UFRAME, frame(0x88, close_body(4000, b"app")))
    + op(CREAD)
    + op(CFRAME, frame(0x88, close_body(4000)))
    + op(UREAD)
    + op(UCLOSE, b"\x02")
    + op(CREAD)
)
# Invalid frame from the client (RSV1 set): the gateway closes it 1002, the upstream 1001.
SEEDS["ws-client-rsv"] = ws_open() + op(CSEND, raw_masked(0xC1, b"bad")) + op(CREAD) + op(UREAD)
# Unmasked client frame, then a continuation with no message open.
SEEDS["ws-client-unmasked"] = ws_open() + op(CSEND, b"\x81\x02hi") + op(CREAD) + op(UREAD)
SEEDS["ws-client-continuation"] = ws_open() + op(CFRAME, frame(0x80, "x")) + op(CREAD) + op(UREAD)
# Too big: one 5000-byte frame (max_frame 4k) -> 1009; a 20 KiB message in 4 KiB fragments -> 1009.
SEEDS["ws-too-big-frame"] = ws_open() + op(CFRAME, frame(0x82, b"A" * 100, 49)) + op(CREAD) + op(UREAD)
SEEDS["ws-too-big-message"] = (
    ws_open()
    + op(CFRAME, frame(0x02, b"B" * 64, 63))
    + op(CFRAME, frame(0x00, b"B" * 64, 63))
    + op(CFRAME, frame(0x00, b"B" * 64, 63))
    + op(CFRAME, frame(0x00, b"B" * 64, 63))
    + op(UREAD)
    + op(CFRAME, frame(0x80, b"B" * 64, 63))
    + op(CREAD)
    + op(UREAD)
)
SEEDS["ws-client-bad-utf8"] = ws_open() + op(CFRAME, frame(0x81, b"ok \xc3\x28")) + op(CREAD) + op(UREAD)
SEEDS["ws-client-bad-close"] = ws_open() + op(CFRAME, frame(0x88, close_body(1005))) + op(CREAD) + op(UREAD)
# The upstream breaks the protocol (masked frame): 1014 to the client.
SEEDS["ws-upstream-masked"] = (
    ws_open() + op(USEND, raw_masked(0x81, b"no")) + op(CREAD) + op(UREAD)
)
# The upstream goes away: 1011 to the client.
SEEDS["ws-upstream-eof"] = ws_open() + op(UCLOSE, b"\x01") + op(CREAD) + op(CFRAME, frame(0x88)) + op(UREAD)
# Bad 101 (wrong accept): 502.
SEEDS["ws-bad-accept"] = (
    op(CSEND, UPGRADE)
    + op(UREAD)
    + op(USEND, R101.replace(ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
    + op(CREAD)
)
# Refused upgrade: relayed as plain HTTP.
SEEDS["ws-refused"] = (
    op(CSEND, UPGRADE)
    + op(UREAD)
    + op(USEND, "HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n")
    + op(CREAD)
)
# Clock: the gateway pings after ping_interval, the client answers; later idle timeout (1001).
SEEDS["ws-ping-idle"] = (
    ws_open()
    + op(TIME, bytes([T4000]))
    + op(CREAD)
    + op(CPONG)
    + op(UREAD)
    + op(TIME, bytes([T1000]))
    + op(CREAD)
    + op(UREAD)
)
SEEDS["ws-drain"] = ws_open() + op(CFRAME, frame(0x01, "part")) + op(DRAIN) + op(CREAD) + op(UREAD)
# HTTP timeouts and errors: upstream silent (504), header timeout (408), bad request (400).
SEEDS["http-upstream-timeout"] = (
    op(CSEND, "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n") + op(UREAD) + op(TIME, bytes([T100])) + op(CREAD)
)
SEEDS["http-header-timeout"] = op(CSEND, "GET / HTTP/1.1\r\nHost: loc") + op(TIME, bytes([4])) + op(CREAD)
SEEDS["http-bad-request"] = op(CSEND, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") + op(CREAD)
SEEDS["tls-garbage-after-handshake"] = op(CSEND, "GET / HT") + op(CRAW, b"\x17\x03\x03\x00\x05hello") + op(CREAD)

os.makedirs(ROOT, exist_ok=True)
for name, data in sorted(SEEDS.items()):
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(data)
print("pipeline: %d seeds in %s" % (len(SEEDS), ROOT))
