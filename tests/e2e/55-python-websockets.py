#!/usr/bin/python3
"""A second, independent WebSocket implementation through wsgate: Python's `websockets`
(Debian python3-websockets 10.4, asyncio API) as client and as upstream. Against an upstream
without compression the client's permessage-deflate offer is declined; against one with its
default compression, permessage-deflate is negotiated end to end and both sides compress.

Usage: WSGATE_BIN=build/release/wsgate tests/e2e/55-python-websockets.py
Prints one line per check and a closing `python: N passed, N failed`; exits 1 on any failure.
"""
import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import websockets

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WSGATE = os.path.abspath(os.path.join(TOP, os.environ.get("WSGATE_BIN", "build/release/wsgate")))

results = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(f"{'ok' if cond else 'not ok'} - {name}{'' if cond else ': ' + str(detail)}", flush=True)


async def wait_port(port, proc, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"wsgate exited with {proc.returncode}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"wsgate not listening on {port}")


async def main():
    seen_closes = []
    received = []

    async def echo(ws, path=None):
        try:
            async for msg in ws:
                received.append(msg)
                if msg == "close-me":
                    await ws.close(4003, "upstream says bye")
                    break
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass
        seen_closes.append((ws.close_code, ws.close_reason))

    up_port = free_port()
    upstream = await websockets.serve(echo, "127.0.0.1", up_port, compression=None)
    # a second upstream with websockets' default compression (permessage-deflate), behind its own gateway
    z_seen = []

    async def z_echo(ws, path=None):
        z_seen.append((ws.request_headers.get("Sec-WebSocket-Extensions"), [e.name for e in ws.extensions]))
        try:
            async for msg in ws:
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass

    z_up_port = free_port()
    z_upstream = await websockets.serve(z_echo, "127.0.0.1", z_up_port)
    z_gw_port, z_admin = free_port(), free_port()
    z_proc = subprocess.Popen([WSGATE, "--listen", f"127.0.0.1:{z_gw_port}", "--upstream", f"127.0.0.1:{z_up_port}",
                               "--admin", f"127.0.0.1:{z_admin}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gw_port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([WSGATE, "--listen", f"127.0.0.1:{gw_port}", "--upstream", f"127.0.0.1:{up_port}"],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        await wait_port(gw_port, proc)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        url = f"wss://localhost:{gw_port}/py"

        async def step(name, coro, timeout=10):
            try:
                await asyncio.wait_for(coro, timeout)
            except Exception as e:  # noqa: BLE001 - a crash is that check failing
                check(name, False, repr(e))

        async def messages():
            async with websockets.connect(url, ssl=ctx, compression="deflate", open_timeout=5, close_timeout=5) as ws:
                check("permessage-deflate not negotiated", not ws.extensions, ws.extensions)
                for m in ["hello", "", "é€𝄞" * 100, b"\x00\x01\x02" * 50]:
                    await ws.send(m)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    check(f"small {type(m).__name__} message of {len(m)} echoes exactly", got == m, repr(got)[:80])
                await ws.send(["frag-a ", "frag-b ", "frag-c"])  # one fragmented message
                got = await asyncio.wait_for(ws.recv(), 5)
                check("a fragmented message arrives whole", got == "frag-a frag-b frag-c", got)
                pong = await ws.ping(b"py-ping")
                await asyncio.wait_for(pong, 5)
                check("ping answered with pong", True)
                await ws.close(4001, "bye")
            check("client close code seen by the client side", ws.close_code == 4001, ws.close_code)
            for _ in range(50):
                if seen_closes:
                    break
                await asyncio.sleep(0.05)
            check("close 4001 'bye' reached the upstream", seen_closes[-1:] == [(4001, "bye")], seen_closes)

        async def large():
            async with websockets.connect(url, ssl=ctx, open_timeout=5, close_timeout=2) as ws:
                for m in ["é€𝄞" * 10000, b"\x00\x01\x02" * 50000]:
                    await ws.send(m)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    check(f"large {type(m).__name__} message of {len(m)} echoes exactly", got == m)

        async def upstream_close():
            async with websockets.connect(url, ssl=ctx, open_timeout=5, close_timeout=5) as ws:
                await ws.send("close-me")
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed:
                    pass
            check("upstream close 4003 reached the client", (ws.close_code, ws.close_reason) == (4003, "upstream says bye"),
                  (ws.close_code, ws.close_reason))

        async def sigterm():
            t0 = time.monotonic()
            async with websockets.connect(url, ssl=ctx, open_timeout=5, close_timeout=5) as ws:
                await ws.send("before-term")
                await asyncio.wait_for(ws.recv(), 5)
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                except websockets.ConnectionClosed:
                    pass
            check("SIGTERM closes the client with 1001", ws.close_code == 1001, ws.close_code)
            try:
                proc.wait(timeout=10)
                check("wsgate exits after SIGTERM", True)
            except subprocess.TimeoutExpired:
                check("wsgate exits after SIGTERM", False, f"still running after {time.monotonic() - t0:.1f}s")

        def deflate_counters():
            with socket.create_connection(("127.0.0.1", z_admin), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                body = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    body += d
            out = {}
            for line in body.decode().splitlines():
                if line.startswith("wsgate_deflate_bytes_total{"):
                    labels, v = line.split("} ")
                    out[labels.split("{")[1]] = int(v)
            return out

        async def compressed():
            await wait_port(z_gw_port, z_proc)
            async with websockets.connect(f"wss://localhost:{z_gw_port}/pyz", ssl=ctx, open_timeout=5, close_timeout=5) as ws:
                names = [e.name for e in ws.extensions]
                check("permessage-deflate negotiated on the client side", names == ["permessage-deflate"], ws.extensions)
                check("the upstream got the offer and negotiated it too",
                      len(z_seen) == 1 and (z_seen[0][0] or "").startswith("permessage-deflate")
                      and z_seen[0][1] == ["permessage-deflate"], z_seen)
                msgs = ["hello", "", "é€𝄞" * 1000, '{"user":"ann","text":"' + "chat " * 2000 + '"}', b"\x00\x01\x02" * 20000]
                msgs += [f'{{"seq":{i},"room":"lobby","text":"{"x" * (i * 37 % 900)}"}}' for i in range(50)]
                for m in msgs:
                    await ws.send(m)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    if got != m:
                        check(f"compressed {type(m).__name__} message of {len(m)} echoes exactly", False, repr(got)[:80])
                        return
                check(f"{len(msgs)} messages echo exactly with compression both ways", True)
                await ws.ping(b"z")
            c = deflate_counters()
            check("wsgate inflated compressed messages in both directions",
                  all(c.get(f'direction="{d}",form="{f}"', 0) > 0
                      for d in ("client_to_upstream", "upstream_to_client") for f in ("compressed", "inflated"))
                  and c['direction="client_to_upstream",form="inflated"'] > c['direction="client_to_upstream",form="compressed"'],
                  c)

        await step("permessage-deflate end to end", compressed())
        await step("messages, fragments, ping, client close", messages())
        await step("large messages", large())
        await step("upstream close", upstream_close())
        await step("SIGTERM drain", sigterm(), 25)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        z_proc.kill()
        z_proc.wait()
        z_upstream.close()
        await z_upstream.wait_closed()
        if not all(results):
            log.seek(0)
            print("wsgate stderr (tail):\n" + log.read()[-3000:].decode(errors="replace"), flush=True)
        upstream.close()
        await upstream.wait_closed()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    except Exception as e:  # noqa: BLE001 - any crash is one failed check
        check("python websockets suite ran", False, repr(e))
    passed = sum(results)
    failed = len(results) - passed
    print(f"python: {passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed or not results else 0)
