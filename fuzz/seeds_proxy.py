#!/usr/bin/env python3
"""fuzz/seeds_proxy.py - (re)writes the seed corpus of the proxy_protocol target,
fuzz/corpus/proxy_protocol/.

Run from the repository root: python3 fuzz/seeds_proxy.py. Deterministic. Each seed is [opt] then
the header bytes (format at the top of fuzz/proxy_protocol.c): opt bit 0 asks the harness to fill
in a CRC32C TLV's checksum, bit 1 to re-encode a header that is followed by more bytes.
"""
import ipaddress
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "proxy_protocol")
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03])


def put(name, data, opt=0):
    os.makedirs(ROOT, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("latin-1")
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(bytes([opt]) + data)


def tlv(t, v=b""):
    return struct.pack(">BH", t, len(v)) + v


def v2(ver_cmd, fam, block):
    return SIG + bytes([ver_cmd, fam]) + struct.pack(">H", len(block)) + block


def inet4(s, d, sp, dp):
    return ipaddress.IPv4Address(s).packed + ipaddress.IPv4Address(d).packed + struct.pack(">HH", sp, dp)


def inet6(s, d, sp, dp):
    return ipaddress.IPv6Address(s).packed + ipaddress.IPv6Address(d).packed + struct.pack(">HH", sp, dp)


# v1
put("v1-tcp4", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")
put("v1-tcp4-then-tls", b"PROXY TCP4 203.0.113.9 10.0.0.1 1 8443\r\n" + HELLO, opt=2)
put("v1-tcp4-max", "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n")
put("v1-tcp6", "PROXY TCP6 2001:db8::1 ::1 40000 443\r\n")
put("v1-tcp6-max", "PROXY TCP6 FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")
put("v1-unknown", "PROXY UNKNOWN\r\n")
put("v1-unknown-worst", "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")
put("v1-bad-leading-zero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n")
put("v1-bad-port", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n")
put("v1-bad-lf", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")
put("v1-bad-long", "PROXY UNKNOWN " + "a" * 120 + "\r\n")
put("v1-bad-mapped", "PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n")
put("v1-partial", "PROXY TCP4 1.2.3.4 5.6")
# v2
put("v2-tcp4", v2(0x21, 0x11, inet4("203.0.113.7", "10.0.0.1", 51234, 443)))
put("v2-tcp4-then-tls", v2(0x21, 0x11, inet4("127.0.0.2", "127.0.0.1", 5, 8443)) + HELLO, opt=2)
put("v2-udp4", v2(0x21, 0x12, inet4("198.51.100.1", "10.0.0.1", 1, 2)))
put("v2-tcp6", v2(0x21, 0x21, inet6("2001:db8::42", "2001:db8::1", 40000, 8443)))
put("v2-tcp6-mapped", v2(0x21, 0x21, inet6("::ffff:192.0.2.9", "::1", 5, 6)))
put("v2-unix", v2(0x21, 0x31, b"/run/haproxy.sock".ljust(108, b"\0") + b"x" * 108))
put("v2-local", v2(0x20, 0x00, b""))
put("v2-local-block", v2(0x20, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2) + tlv(4, b"pad")))
put("v2-unspec", v2(0x21, 0x00, b"whatever"))
put("v2-tlvs", v2(0x21, 0x11, inet4("192.0.2.1", "10.0.0.1", 1000, 443) + tlv(1, b"http/1.1") + tlv(2, b"example.com")
                  + tlv(4) + tlv(5, b"\x07" * 128) + tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3"))
                  + tlv(0xEA, b"\x01vpce-0123456789abcdef")))
put("v2-crc", v2(0x21, 0x11, inet4("192.0.2.77", "10.0.0.1", 4242, 443) + tlv(1, b"h2") + tlv(3, b"\0\0\0\0")
                 + tlv(2, b"a.example")), opt=1)
put("v2-crc-bad", v2(0x21, 0x11, inet4("192.0.2.77", "10.0.0.1", 4242, 443) + tlv(3, b"\1\2\3\4")))
put("v2-tlv-cap", v2(0x21, 0x31, b"\0" * 216 + tlv(4, b"\0" * 1021)))
put("v2-bad-tlv-cap", v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2) + tlv(4, b"\0" * 1022)))
put("v2-bad-tlv-overrun", v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x02\x00\x09abcdefgh"))
put("v2-bad-short", v2(0x21, 0x21, inet4("1.2.3.4", "5.6.7.8", 1, 2)))
put("v2-bad-version", SIG + b"\x11\x11\x00\x0c" + inet4("1.2.3.4", "5.6.7.8", 1, 2))
put("v2-bad-command", SIG + b"\x22\x11\x00\x0c" + inet4("1.2.3.4", "5.6.7.8", 1, 2))
put("v2-bad-family", SIG + b"\x21\x41\x00\x0c" + inet4("1.2.3.4", "5.6.7.8", 1, 2))
put("not-a-header-tls", HELLO)
put("not-a-header-http", "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
