#!/usr/bin/env python3
"""fuzz/seeds_ws_diff.py - writes the seed corpus of the ws_diff target under fuzz/corpus/ws_diff/.

Run from the repository root: python3 fuzz/seeds_ws_diff.py. Deterministic. Each seed is the 8
control bytes documented at the top of fuzz/ws_diff.c, then either a generated-stream spec
(bit 0 of byte 7) or raw frames.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "ws_diff")
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])


def put(name, data):
    os.makedirs(ROOT, exist_ok=True)
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(data)


def ctl(o0=0, o1=0, sink=0, sizes=(0xFF, 0xFF, 0xFF, 0xFF), o7=1):
    return bytes([o0, o1, sink]) + bytes(sizes) + bytes([o7])


# ---- generated streams: one spec per frame ----
OPS = {0: 0, 1: 1, 2: 2, 8: 3, 9: 4, 10: 5}


def spec(op, length=10, content=1, fin=True, broken=None, key=KEY, payload=b""):
    """One frame of the generated stream (ws_diff.c): a, b[, hi, lo], c, key, payload."""
    a = OPS[op] | (0 if fin else 8)
    if broken is not None:
        a |= 0x10 | (broken << 5)
    out = bytearray()
    if length < 126:
        out += bytes([a, length])
    else:
        v = (length - 126) // 2
        out += bytes([a | 0x80, 0, v >> 8, v & 0xFF])
    out += bytes([content])
    out += key
    if content & 3 == 0:
        out += payload
    return bytes(out)


def spec_u2c(*args, **kw):
    kw["key"] = b""
    return spec(*args, **kw)


ASCII, MIX = 1, 2


def broken(pos):
    return 3 | (pos << 2)


# client -> upstream (byte 0 bit 0 = 0)
put("gen-text-binary", ctl() + spec(1, 20, ASCII) + spec(2, 100, MIX) + spec(1, 125, MIX))
put("gen-fragmented-text", ctl() + spec(1, 7, MIX, fin=False) + spec(9, 4, ASCII) + spec(0, 9, MIX, fin=False)
    + spec(0, 30, MIX))
put("gen-long-1k-64k", ctl(sizes=(200, 7, 255, 31), o7=0x81) + spec(2, 1026, MIX) + spec(1, 70002, MIX))
put("gen-broken-utf8", ctl() + spec(1, 50, MIX) + spec(1, 90, broken(5)))
put("gen-broken-utf8-late", ctl(sizes=(3, 1, 40, 2)) + spec(1, 120, broken(60)))
put("gen-broken-utf8-fragment", ctl() + spec(1, 40, MIX, fin=False) + spec(0, 40, broken(20)))
put("gen-close-1000", ctl() + spec(2, 10, ASCII) + spec(8, 12, 1 | (0 << 2)) + spec(2, 10, ASCII))
put("gen-close-bad-code", ctl() + spec(8, 6, 1 | (7 << 2)))
put("gen-ping-pong", ctl(o1=0x18) + spec(9, 0, ASCII) + spec(10, 4, 0, payload=b"diff") + spec(10, 3, ASCII)
    + spec(2, 3, ASCII))
put("gen-empty-frames", ctl() + spec(1, 0, ASCII, fin=False) + spec(0, 0, ASCII, fin=False) + spec(0, 0, ASCII)
    + spec(2, 0, ASCII))
put("gen-unmasked", ctl() + spec(2, 5, ASCII) + spec(2, 5, ASCII, broken=0))
put("gen-rsv", ctl() + spec(1, 5, ASCII, broken=1))
put("gen-opcode3", ctl() + spec(1, 5, ASCII, broken=2))
put("gen-nonminimal", ctl() + spec(2, 5, ASCII, broken=3))
put("gen-max-frame", ctl(o0=0x02) + spec(2, 16, ASCII) + spec(2, 17, ASCII))
put("gen-max-message", ctl(o0=0x08) + spec(2, 20, ASCII, fin=False) + spec(0, 20, ASCII))
put("gen-max-fragments", ctl(o1=0x01) + spec(2, 2, ASCII, fin=False) + spec(0, 2, ASCII))
put("gen-deny-text", ctl(o0=0x40) + spec(2, 2, ASCII) + spec(1, 2, ASCII))
put("gen-no-utf8", ctl(o0=0x20) + spec(1, 60, broken(3)))
put("gen-admit-77", ctl(o1=0x04) + spec(2, 76, MIX) + spec(2, 77, MIX))
put("gen-gw-close", ctl(o1=0x20) + spec(2, 30, ASCII) + spec(1, 200, MIX, fin=False))
put("gen-small-src-slow-sink", ctl(o1=0x00, sink=0x03, sizes=(0, 1, 2, 4)) + spec(1, 300, MIX) + spec(9, 5, ASCII)
    + spec(1, 40, MIX))
put("gen-big-src-flaky-sink", ctl(o1=0xC0, sink=0x2A, sizes=(255, 255, 255, 255), o7=0x81) + spec(1, 20000, MIX)
    + spec(2, 9000, MIX))
put("gen-raw-payload", ctl() + spec(2, 40, 0, payload=bytes(range(40))) + spec(1, 8, 0, payload=b"\xc3\xa9t\xc3\xa9!!!"))
# upstream -> client (byte 0 bit 0 = 1)
put("gen-u2c-text", ctl(o0=1) + spec_u2c(1, 100, MIX) + spec_u2c(2, 1026, MIX) + spec_u2c(8, 2, 1))
put("gen-u2c-broken", ctl(o0=1) + spec_u2c(1, 60, MIX, fin=False) + spec_u2c(0, 60, broken(33)))
put("gen-u2c-masked", ctl(o0=1) + spec_u2c(2, 4, ASCII, broken=0))
put("gen-u2c-ping-close", ctl(o0=1, o1=0x28) + spec_u2c(9, 3, ASCII) + spec_u2c(2, 300, MIX))


# ---- raw frames ----
def frame(op, payload, fin=True, mask=KEY):
    b = bytearray([(0x80 if fin else 0) | op])
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        b.append(m | n)
    elif n < 65536:
        b += bytes([m | 126]) + struct.pack(">H", n)
    else:
        b += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        b += mask
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return bytes(b) + payload


put("raw-c2u-echo", ctl(o7=0) + frame(1, "h\u00e9llo \u20ac".encode()) + frame(2, bytes(300)) + frame(8, b"\x03\xe8bye"))
put("raw-c2u-split-char", ctl(sizes=(0, 0, 0, 0), o7=0) + frame(1, b"a\xe2\x82", fin=False) + frame(0, b"\xac z"))
put("raw-c2u-bad-utf8", ctl(o7=0) + frame(1, b"abc\xed\xa0\x80def"))
put("raw-u2c", ctl(o0=1, o7=0) + frame(1, b"hi", mask=None) + frame(9, b"p", mask=None) + frame(2, bytes(200), mask=None))
