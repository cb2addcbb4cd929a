#!/usr/bin/env python3
"""fuzz/seeds.py - (re)writes the committed seed corpora under fuzz/corpus/<target>/.

Run from the repository root: python3 fuzz/seeds.py. Deterministic except the TLS ClientHellos,
which are produced by Python's ssl module (OpenSSL) over memory BIOs, so their randoms change;
re-running rewrites them. Each seed starts with the control bytes its target documents at the
top of fuzz/<target>.c (or fuzz/ws_relay.h).
"""
import os
import ssl
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("latin-1")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- HTTP ----
# control bytes: [opt][split]; opt bits 0-1 limits {lib defaults, gateway, tight, big},
# request: bits 0-1 client ip, bit 2 proto, bits 3-4 out capacity, bit 5 pre-filled out (xor'd with split)
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
REQS = {
    "get": "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
    "get-10-nohost": "GET / HTTP/1.0\r\n\r\n",
    "get-10-keepalive": "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
    "ws-upgrade": "GET /chat HTTP/1.1\r\nHost: localhost:8443\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: " + KEY + "\r\nSec-WebSocket-Version: 13\r\nOrigin: https://localhost:8443\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo\r\n\r\n",
    "ws-upgrade-deflate-only": "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: [::1]:8443\r\n"
    "Connection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: " + KEY + "\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    "post-cl": "POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
    "Content-Length: 5\r\n\r\n40{}\n",
    "post-chunked": "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n1a;ext=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer-A: 1\r\n\r\n",
    "post-chunked-pipelined": "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
    "options-star": "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "absolute-form": "GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "forwarded-existing": "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n"
    "Forwarded: for=10.0.0.1\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n\r\n",
    "connection-names": "GET / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret, host, content-length\r\n"
    "X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\nContent-Length: 0\r\n\r\n",
    "expect-continue": "PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n0123456789",
    "leading-crlf": "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "empty-values": "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Spaces:    \t \r\n\r\n",
    # invalid
    "bad-cl-te": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "bad-te-gzip": "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "bad-dup-cl": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "bad-dup-host": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad-bare-lf": "GET / HTTP/1.1\nHost: h\n\n",
    "bad-obs-fold": "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  2\r\n\r\n",
    "bad-space-colon": "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    "bad-version": "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "bad-connect": "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "bad-cl-sign": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
    "bad-host-chars": "GET / HTTP/1.1\r\nHost: a b\"c\r\n\r\n",
    "partial": "GET /partial HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaa",
}
for i, (name, text) in enumerate(sorted(REQS.items())):
    opt = (1 + 4 * i) & 0xFD  # gateway limits (bits 0-1 = 1); ip / capacity choices vary
    split = (37 * i) & 0xFF
    put("http1_request", name, bytes([opt, split]) + text.encode())
put("http1_request", "tight-414", bytes([2, 128]) + ("GET /" + "a" * 100 + " HTTP/1.1\r\nHost: h\r\n\r\n").encode())
put("http1_request", "tight-431", bytes([2, 128]) + ("GET / HTTP/1.1\r\nHost: h\r\n" + "X: y\r\n" * 9 + "\r\n").encode())
put("http1_request", "chunk-bad-size", bytes([1, 10]) + b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n")
put("http1_request", "chunk-bare-lf", bytes([1, 200]) + b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n")

RESPS = {
    "200-cl": "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
    "200-chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n4\r\nWiki\r\n0\r\nX-T: 1\r\n\r\n",
    "101": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
    "Sec-WebSocket-Protocol: chat\r\n\r\n\x81\x05hello",
    "204": "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
    "304": "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    "100-continue": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "10-eof": "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nbody until close",
    "10-keepalive": "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    "close": "HTTP/1.1 500 Internal Server Error\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\nContent-Length: 0\r\n\r\n",
    "empty-reason": "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
    "set-cookie": "HTTP/1.1 302 Found\r\nLocation: /x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
    "bad-cl-te": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "bad-status": "HTTP/1.1 99 X\r\n\r\n",
    "bad-status-600": "HTTP/1.1 600 X\r\n\r\n",
    "bad-bare-lf": "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "bad-version": "HTTP/2 200 OK\r\n\r\n",
    "bad-te-10": "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
}
for i, (name, text) in enumerate(sorted(RESPS.items())):
    put("http1_response", name, bytes([(1 + 3 * i) & 0xFB, (53 * i) & 0xFF]) + text.encode("latin-1"))
put("http1_response", "head-200", bytes([4 | 1, 0]) + b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
put("http1_response", "tight-431", bytes([2, 0]) + ("HTTP/1.1 200 OK\r\n" + "X: y\r\n" * 20 + "\r\n").encode())

# ---- WebSocket ----


def frame(op, payload=b"", fin=True, mask=None, rsv=0, len_form=None):
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload)
    form = len_form or (7 if n < 126 else 16 if n < 65536 else 64)
    mbit = 0x80 if mask is not None else 0
    if form == 7:
        hdr = bytes([b0, mbit | n])
    elif form == 16:
        hdr = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask is not None:
        hdr += mask
        payload = bytes(c ^ mask[i & 3] for i, c in enumerate(payload))
    return hdr + payload


def close_body(code, reason=b""):
    return struct.pack(">H", code) + reason


def ws_seeds(masked):
    M = b"\x37\xfa\x21\x3d" if masked else None
    f = lambda *a, **k: frame(*a, mask=M, **k)
    s = {
        "text": f(1, b"hello"),
        "binary-126": f(2, bytes(range(256)) * 1),
        "binary-127-partial": frame(2, b"", mask=None)[:0] + (bytes([0x82, (0x80 if masked else 0) | 127]) + struct.pack(">Q", 70000) + (M or b"") + b"x" * 100),
        "fragmented-utf8": f(1, "h\u00e9".encode()[:2], fin=False) + f(9, b"ping") + f(0, "h\u00e9\u20ac".encode()[2:], fin=False)
        + f(0, "\U0001f600".encode(), fin=True),
        "ping-pong-close": f(9, b"p") + f(10, b"") + f(8, close_body(1000, b"bye")) + f(1, b"after close"),
        "close-empty": f(8),
        "close-4999-utf8": f(8, close_body(4999, "d\u00e9j\u00e0".encode())),
        "many-small": b"".join(f(2 if i % 3 else 1, b"ab" * i) for i in range(20)),
        "empty-frames": f(1, b"", fin=False) + f(0, b"", fin=False) + f(0, b"") + f(2, b""),
        # invalid
        "bad-rsv": f(1, b"x", rsv=4),
        "bad-opcode": f(3, b"x"),
        "bad-ctl-fragmented": f(9, b"x", fin=False),
        "bad-ctl-long": f(9, b"x" * 126),
        "bad-cont-first": f(0, b"x"),
        "bad-new-in-msg": f(1, b"a", fin=False) + f(2, b"b"),
        "bad-len-nonminimal": f(2, b"abc", len_form=16),
        "bad-len-nonminimal64": f(2, b"abc", len_form=64),
        "bad-close-1": f(8, b"\x03"),
        "bad-close-code": f(8, close_body(1005)),
        "bad-close-utf8": f(8, close_body(1000, b"\xff")),
        "bad-utf8": f(1, b"ok \xc0\xaf"),
        "bad-utf8-truncated": f(1, b"\xe2\x82"),
        "bad-utf8-surrogate": f(1, b"a", fin=False) + f(0, b"\xed\xa0\x80"),
        "bad-mask": frame(1, b"x", mask=None if masked else b"\x01\x02\x03\x04"),
    }
    return s


# control bytes: [opt][sink][4 chunk sizes][close step]
for target, masked in (("ws_c2u", True), ("ws_u2c", False)):
    for i, (name, data) in enumerate(sorted(ws_seeds(masked).items())):
        opt = [0x00, 0x40, 0x80, 0xC0, 0xC0, 0x80][i % 6]  # no limits, no gateway close, src capacities vary
        sink = [0x00, 0x12, 0x03, 0x70, 0x25, 0xF0][i % 6]
        sizes = bytes([[0, 1, 3, 255][(i + k) % 4] for k in range(4)])
        put(target, name, bytes([opt, sink]) + sizes + bytes([i % 5]) + data)
    # limits and the gateway's close
    big = frame(2, b"z" * 300, mask=b"\x01\x02\x03\x04" if masked else None)
    put(target, "limit-frame", bytes([0x01, 0, 255, 255, 255, 255, 0]) + big)
    put(target, "limit-message", bytes([0x04, 0, 255, 255, 255, 255, 0])
        + frame(1, b"a" * 20, fin=False, mask=b"\x09\x08\x07\x06" if masked else None)
        + frame(0, b"b" * 20, mask=b"\x09\x08\x07\x06" if masked else None))
    put(target, "gw-close-midframe", bytes([0x10, 0x31, 9, 9, 9, 9, 1]) + big + big)
    put(target, "src-14-sink-1", bytes([0x00, 0x02, 0, 1, 2, 13, 0]) + big)
    if masked:
        put(target, "rng-fails", bytes([0x20, 0, 255, 255, 255, 255, 0]) + frame(1, b"a", mask=b"\0\0\0\0") * 5)

# ---- TLS ----


def client_hello(sni, minv, maxv, alpn=None, tickets=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = minv
    ctx.maximum_version = maxv
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    o = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        o.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


V = ssl.TLSVersion
hellos = {
    "ch13-localhost": client_hello("localhost", V.TLSv1_3, V.TLSv1_3, ["http/1.1"]),
    "ch13-exact": client_hello("a.example.test", V.TLSv1_3, V.TLSv1_3),
    "ch13-wild": client_hello("x.wild.example.test", V.TLSv1_3, V.TLSv1_3),
    "ch13-unknown": client_hello("nope.invalid", V.TLSv1_2, V.TLSv1_3, ["h2", "http/1.1"]),
    "ch12-localhost": client_hello("localhost", V.TLSv1_2, V.TLSv1_2, ["http/1.1"]),
    "ch12-wild-deep": client_hello("a.b.wild.example.test", V.TLSv1_2, V.TLSv1_2, tickets=False),
    "ch12-nosni": client_hello(None, V.TLSv1_2, V.TLSv1_2),
}
for i, (name, ch) in enumerate(sorted(hellos.items())):
    put("tls_server", name, bytes([0, i & 3]) + ch)
ch = hellos["ch13-localhost"]
put("tls_server", "ch13-split-7", bytes([7, 0]) + ch)
put("tls_server", "ch13-split-1-smallout", bytes([1, 0]) + ch)
# ClientHello, then a middlebox CCS and a fake encrypted record; then an alert
put("tls_server", "ch13-ccs-appdata", bytes([0, 2]) + ch + b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x20" + bytes(32))
put("tls_server", "ch12-alert", bytes([0, 1]) + hellos["ch12-localhost"] + b"\x15\x03\x03\x00\x02\x02\x28")
put("tls_server", "plain-http", bytes([0, 0]) + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
put("tls_server", "sslv2-hello", bytes([0, 0]) + bytes.fromhex("802b0103010012000000100000030000080000040000060000002100000000000100802d2c2b2a29282726"))
# a TLS 1.2 ClientHello with a forged session ticket (extension 35) in place of the empty one
ch12 = bytearray(hellos["ch12-localhost"])
idx = ch12.find(b"\x00\x23\x00\x00")
if idx > 0:
    ticket = bytes(range(120))
    forged = ch12[:idx] + b"\x00\x23" + struct.pack(">H", len(ticket)) + ticket + ch12[idx + 4:]
    # fix the record, handshake and extensions lengths
    grow = len(ticket)
    rec = struct.unpack(">H", forged[3:5])[0] + grow
    forged[3:5] = struct.pack(">H", rec)
    hs = int.from_bytes(forged[6:9], "big") + grow
    forged[6:9] = hs.to_bytes(3, "big")
    p = 9 + 2 + 32
    p += 1 + forged[p]
    p += 2 + struct.unpack(">H", forged[p:p + 2])[0]
    p += 1 + forged[p]
    ext = struct.unpack(">H", forged[p:p + 2])[0] + grow
    forged[p:p + 2] = struct.pack(">H", ext)
    put("tls_server", "ch12-ticket", bytes([0, 3]) + bytes(forged))

# ---- config ----
CONFS = {
    "full": """# wsgate.conf
listen 0.0.0.0:8443
listen [::]:8443
upstream 127.0.0.1:3001 weight=2
upstream 127.0.0.1:3002
upstream [::1]:3003 weight=1
workers 4
hash_prefix 24
max_fails 3
fail_timeout 10s
handshake_timeout 500ms
header_timeout 10
keepalive_timeout 1m
connect_timeout 5s
upstream_timeout 1h
ws_idle_timeout 120s
drain_timeout 0
max_frame 1m
max_message 16M
max_body 0
buffer_size 32k
max_header_size 16k
max_uri 8k
max_headers 100
ticket_lifetime 86400
access_log stderr
log_level info
""",
    "certs": "cert /etc/wsgate/a.pem\nkey /etc/wsgate/a.key\ncert b.pem\nkey b.key\nupstream h:1\n",
    "nginx-style": "\xef\xbb\xbflisten 0.0.0.0:8443;   # comment\r\nupstream 10.0.0.1:80;\r\n\t max_frame   64k ; \r\n#x\r\n",
    "comments": "# only\n   \n\t# more\nupstream a:1 # trailing # comment\nlog_level debug#not a comment\n",
    "argv": "--upstream\n127.0.0.1:1\n--max_frame=1m\n-c\n/etc/x\n-t\n--workers\n2",
    "bad-unknown": "listne 1.2.3.4:5\n",
    "bad-duplicate": "workers 1\nworkers 2\n",
    "bad-size": "max_message 12x\n",
    "bad-range": "buffer_size 1k\nupstream a:1\n",
    "bad-header-vs-buffer": "buffer_size 20k\nmax_header_size 1m\nupstream a:1\n",
    "bad-nul": "workers 1\x00\n",
    "bad-certkey": "cert a\nupstream a:1\n",
    "bad-upstream-weight": "upstream a:1 weight=0\nupstream a:2 weight=x\n",
    "long-line": "access_log /" + "x" * 600 + "\n",
    "duration-edge": "fail_timeout 999999999999999d\n",
}
for name, text in CONFS.items():
    put("config", name, text)


# ---- psa_driver: [op] then operands (fuzz/psa_driver.c) ----
def hx(s):
    return bytes.fromhex(s)


ALICE = hx("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
BOB_PUB = hx("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
D_IUT = hx("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534")
Q_CAVS = hx("04700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287"
            "db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac")
D_6979 = hx("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721")
PSA = {
    "x25519-rfc7748": b"\x00" + ALICE + BOB_PUB,
    "x25519-zero-peer": b"\x00" + ALICE + bytes(32),
    "x25519-one-peer": b"\x00" + ALICE + b"\x01" + bytes(31),
    "x25519-top-bit": b"\x00" + ALICE + BOB_PUB[:31] + bytes([BOB_PUB[31] | 0x80]),
    "x25519-noncanonical": b"\x00" + ALICE + bytes([0xee]) + b"\xff" * 30 + b"\x7f",
    "p256-cavs": b"\x01" + D_IUT + b"\x00" + Q_CAVS,
    "p256-derived": b"\x01" + D_IUT + b"\x01" + D_6979,
    "p256-off-curve": b"\x01" + D_IUT + b"\x00" + Q_CAVS[:64] + bytes([Q_CAVS[64] ^ 1]),
    "p256-compressed": b"\x01" + D_IUT + b"\x00" + b"\x02" + Q_CAVS[1:33] + bytes(32),
    "gcm128-intact": b"\x02" + bytes([0, 11, 6, 20, 0]) + bytes(range(16)) + bytes(12) + b"a" * 20 + b"hello world" * 5,
    "gcm256-flip": b"\x02" + bytes([2, 15, 3, 0, 7]) + bytes(range(32)) + bytes(16) + b"x" * 100,
    "gcm192-short-nonce-empty": b"\x02" + bytes([1, 0, 0, 64, 1]) + bytes(24) + b"\x01" + b"A" * 64,
    "ecdsa-sha256": b"\x03" + D_6979 + b"\x00" + bytes(range(32)),
    "ecdsa-sha384": b"\x03" + D_6979 + b"\x01" + bytes(range(48)),
    "ecdsa-sha1": b"\x03" + D_IUT + b"\x04" + bytes(range(20)),
}
for name, blob in PSA.items():
    put("psa_driver", name, blob)
