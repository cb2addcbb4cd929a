// WebSocket relay: a `ws` client through wsgate to recording upstreams; hand-built frames for
// RFC 6455 violations; limits; close codes; upstream death; drain.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { once } from 'node:events';
import WebSocket from 'ws';
import {
  startGateway, startWsEcho, startRawWsUpstream, wsUpgrade, buildFrame, readFrame, readClose, closePayload,
  OP, cleanup, waitFor, withTimeout, sleep, randomText, stopChild,
} from './lib.mjs';

const T = { timeout: 20000 };
let echo, raw, gw, gwRaw;

before(async () => {
  echo = await startWsEcho();
  raw = await startRawWsUpstream();
  gw = await startGateway(['--upstream', echo.addr, '--max_frame', '2m', '--max_message', '4m']);
  gwRaw = await startGateway(['--upstream', raw.addr, '--max_frame', '2m', '--max_message', '4m']);
});
after(cleanup);

/** Opens a ws client through wsgate. */
async function client(port, opts = {}) {
  const ws = new WebSocket(`wss://localhost:${port}/chat`, { rejectUnauthorized: false, perMessageDeflate: false, ...opts });
  ws.received = [];
  ws.on('message', (data, isBinary) => ws.received.push({ data: Buffer.from(data), isBinary }));
  ws.on('error', () => {});
  await withTimeout(once(ws, 'open'), 5000, 'ws open');
  return ws;
}
const closed = (ws) => withTimeout(new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() }))), 8000, 'ws close');
const nextMessage = (ws, n) => waitFor(() => ws.received.length >= n && ws.received[n - 1], 8000, `message #${n}`);

describe('messages through the relay', () => {
  const sizes = [0, 1, 125, 126, 65535, 65536, 1 << 20];
  for (const binary of [false, true]) {
    test(`${binary ? 'binary' : 'text'} messages of ${sizes.join(', ')} bytes are byte-exact both ways`, T, async () => {
      const ws = await client(gw.port);
      const conn = await echo.waitConn(echo.conns.length);
      const start = conn.messages.length;
      const sent = sizes.map((n) => (binary ? crypto.randomBytes(n) : Buffer.from(randomText(n))));
      for (let i = 0; i < sent.length; i++) {
        ws.send(binary ? sent[i] : sent[i].toString(), { binary });
        const got = await nextMessage(ws, i + 1);
        assert.equal(got.isBinary, binary);
        assert.equal(got.data.length, sent[i].length, `echo of ${sent[i].length} bytes`);
        assert.ok(got.data.equals(sent[i]), `echo of ${sent[i].length} bytes differs`);
        const up = conn.messages[start + i];
        assert.ok(up.data.equals(sent[i]), `upstream copy of ${sent[i].length} bytes differs`);
        assert.equal(up.isBinary, binary);
      }
      ws.close(1000);
      await closed(ws);
    });
  }

  // After a second without traffic the gateway gives mbedTLS's record buffers back (conn.c
  // on_tls_idle, tls/mbedtls/patches/20-idle-buffers.patch); the next records take them again and
  // must decrypt with the same keys and sequence numbers, in both directions, several times over.
  test('a WebSocket left idle past the TLS buffer release carries messages both ways after it', T, async () => {
    const ws = await client(gw.port);
    let n = 0;
    for (const size of [5, 70000, 1 << 20, 1]) {
      await sleep(1500);
      const msg = crypto.randomBytes(size);
      ws.send(msg, { binary: true });
      const got = await nextMessage(ws, ++n);
      assert.ok(got.data.equals(msg), `echo of ${size} bytes after an idle second differs`);
    }
    await sleep(1500);
    ws.close(4005, 'idle-bye');
    const c = await closed(ws);
    assert.equal(c.code, 4005);
    assert.equal(c.reason, 'idle-bye');
  });

  test('a fragmented message arrives as the same message and keeps its frame boundaries', T, async () => {
    // through the ws echo upstream: reassembled to the same message
    const ws = await client(gw.port);
    const conn = await echo.waitConn(echo.conns.length);
    ws.send('frag-one ', { fin: false });
    ws.send('frag-two ', { fin: false });
    ws.send('frag-three', { fin: true });
    const got = await nextMessage(ws, 1);
    assert.equal(got.data.toString(), 'frag-one frag-two frag-three');
    assert.equal(conn.messages.at(-1).data.toString(), 'frag-one frag-two frag-three');
    ws.close();
    await closed(ws);

    // through the raw upstream: every frame seen exactly, re-masked, FIN/opcode kept
    const w2 = await client(gwRaw.port);
    const f1 = Buffer.from([1, 2, 3]), f2 = crypto.randomBytes(70000), f3 = Buffer.from([9]);
    w2.send(f1, { binary: true, fin: false });
    w2.send(f2, { binary: true, fin: false });
    w2.send(f3, { binary: true, fin: true });
    const back = await nextMessage(w2, 1);
    assert.ok(back.data.equals(Buffer.concat([f1, f2, f3])));
    const rc = raw.conns.find((c) => c.frames.some((f) => f.payload.equals(f2)));
    assert.ok(rc, 'the upstream did not see the 70000-byte fragment');
    const data = rc.frames.filter((f) => f.opcode !== OP.CLOSE);
    assert.deepEqual(data.map((f) => [f.opcode, f.fin, f.payload.length]), [[OP.BIN, false, 3], [OP.CONT, false, 70000], [OP.CONT, true, 1]]);
    assert.ok(data.every((f) => f.masked), 'frames toward the upstream must be masked');
    w2.close();
    await closed(w2);
  });

  test('control frames interleaved in a fragmented message are relayed in place', T, async () => {
    const { sock, reader, res } = await wsUpgrade(gwRaw.port);
    assert.equal(res.status, 101);
    sock.write(buildFrame({ fin: false, opcode: OP.TEXT, payload: 'inter-a' }));
    sock.write(buildFrame({ opcode: OP.PING, payload: 'p1' }));
    sock.write(buildFrame({ fin: true, opcode: OP.CONT, payload: 'inter-b' }));
    const frames = [await readFrame(reader), await readFrame(reader), await readFrame(reader)];
    assert.deepEqual(frames.map((f) => [f.opcode, f.fin, f.payload.toString()]),
      [[OP.TEXT, false, 'inter-a'], [OP.PONG, true, 'p1'], [OP.CONT, true, 'inter-b']]);
    assert.ok(frames.every((f) => !f.masked), 'frames toward the client must not be masked');
    const rc = raw.byMarker('inter-a');
    assert.deepEqual(rc.frames.map((f) => [f.opcode, f.payload.toString()]), [[OP.TEXT, 'inter-a'], [OP.PING, 'p1'], [OP.CONT, 'inter-b']]);
    sock.destroy();
  });

  test('ping and pong are relayed end to end, both directions', T, async () => {
    const ws = await client(gw.port);
    const conn = await echo.waitConn(echo.conns.length);
    const pong = withTimeout(once(ws, 'pong'), 5000, 'pong');
    ws.ping(Buffer.from('client-ping'));
    const [payload] = await pong;
    assert.equal(payload.toString(), 'client-ping');
    await waitFor(() => conn.pings.some((p) => p.toString() === 'client-ping'), 3000, 'ping at the upstream');
    const ping = withTimeout(once(ws, 'ping'), 5000, 'ping from upstream');
    conn.ws.ping(Buffer.from('upstream-ping'));
    const [pp] = await ping;
    assert.equal(pp.toString(), 'upstream-ping');
    await waitFor(() => conn.pongs.some((p) => p.toString() === 'upstream-ping'), 3000, 'pong at the upstream');
    ws.close();
    await closed(ws);
  });

  test('deflate on (default): the client\'s permessage-deflate offer is negotiated with the upstream end to end', T, async () => {
    const ws = await client(gw.port, { perMessageDeflate: true });
    const conn = await echo.waitConn(echo.conns.length);
    assert.match(ws.extensions, /^permessage-deflate/, `not negotiated: "${ws.extensions}"`);
    assert.match(conn.headers['sec-websocket-extensions'] || '', /^permessage-deflate/);
    ws.send('x'.repeat(5000));
    const got = await nextMessage(ws, 1);
    assert.equal(got.data.toString(), 'x'.repeat(5000));
    assert.equal(conn.messages.at(-1).data.toString(), 'x'.repeat(5000));
    ws.close();
    await closed(ws);
  });

  test('deflate off: permessage-deflate offered by the client is not negotiated', T, async () => {
    const off = await startGateway(['--upstream', echo.addr, '--deflate', 'off']);
    const ws = await client(off.port, { perMessageDeflate: true });
    const conn = await echo.waitConn(echo.conns.length);
    assert.equal(ws.extensions, '', `negotiated: ${ws.extensions}`);
    assert.doesNotMatch(conn.headers['sec-websocket-extensions'] || '', /permessage-deflate/);
    ws.send('x'.repeat(5000));
    const got = await nextMessage(ws, 1);
    assert.equal(got.data.toString(), 'x'.repeat(5000));
    ws.close();
    await closed(ws);
  });

  test('a subprotocol request and the upstream choice are relayed', T, async () => {
    const ws = new WebSocket(`wss://localhost:${gw.port}/sub`, ['chat.v2', 'chat.v1'], { rejectUnauthorized: false });
    ws.on('error', () => {});
    await withTimeout(once(ws, 'open'), 5000, 'open');
    assert.equal(ws.protocol, 'chat.v2');
    const conn = await echo.waitConn(echo.conns.length);
    assert.equal(conn.req.url, '/sub');
    assert.match(conn.headers['sec-websocket-protocol'], /chat\.v2/);
    ws.close();
    await closed(ws);
  });
});

describe('close handshake', () => {
  test('client close 4001 "bye" reaches the upstream and comes back', T, async () => {
    const ws = await client(gw.port);
    const conn = await echo.waitConn(echo.conns.length);
    ws.close(4001, 'bye');
    const c = await closed(ws);
    assert.equal(c.code, 4001);
    assert.equal(c.reason, 'bye');
    await waitFor(() => conn.close, 3000, 'upstream close');
    assert.deepEqual(conn.close, { code: 4001, reason: 'bye' });
  });

  test('upstream close 4002 "server-bye" reaches the client', T, async () => {
    const ws = await client(gw.port);
    const conn = await echo.waitConn(echo.conns.length);
    conn.ws.close(4002, 'server-bye');
    const c = await closed(ws);
    assert.deepEqual(c, { code: 4002, reason: 'server-bye' });
    await waitFor(() => conn.close, 3000, 'upstream close completion');
    assert.equal(conn.close.code, 4002);
  });

  test('a close with no status code is relayed as such', T, async () => {
    const { sock, reader, res } = await wsUpgrade(gwRaw.port);
    assert.equal(res.status, 101);
    sock.write(buildFrame({ opcode: OP.TEXT, payload: 'empty-close-marker' }));
    await readFrame(reader);
    sock.write(buildFrame({ opcode: OP.CLOSE }));
    const c = await readClose(reader);
    assert.ok(c, 'no close frame');
    assert.equal(c.payload.length, 0);
    const rc = raw.byMarker('empty-close-marker');
    await waitFor(() => rc.frames.some((f) => f.opcode === OP.CLOSE), 3000, 'close at upstream');
    assert.equal(rc.frames.find((f) => f.opcode === OP.CLOSE).payload.length, 0);
    sock.destroy();
  });

  test('an upstream that dies mid-session gets the client a 1011/1014 close with a reason', T, async () => {
    const dying = await startWsEcho();
    const g = await startGateway(['--upstream', dying.addr]);
    const ws = await client(g.port);
    await dying.waitConn(1);
    ws.send('alive?');
    await nextMessage(ws, 1);
    const t0 = Date.now();
    dying.kill();
    const c = await closed(ws);
    assert.ok([1011, 1014].includes(c.code), `close code ${c.code}`);
    assert.ok(c.reason.length > 0, 'empty close reason');
    assert.ok(Date.now() - t0 < 5000);
    await g.stop();
  });

  test('SIGTERM closes WebSockets with 1001 and exits within drain_timeout', T, async () => {
    const g = await startGateway(['--upstream', echo.addr, '--drain_timeout', '2s']);
    const ws = await client(g.port);
    ws.send('before-drain');
    await nextMessage(ws, 1);
    const c = closed(ws);
    const t0 = Date.now();
    g.proc.kill('SIGTERM');
    const { code } = await c;
    assert.equal(code, 1001);
    const ex = await withTimeout(g.proc.exited, 5000, 'wsgate exit after SIGTERM');
    assert.ok(Date.now() - t0 < 4000, `exited after ${Date.now() - t0} ms`);
    assert.equal(ex.code, 0, `exit ${JSON.stringify(ex)}\n${g.log().slice(-2000)}`);
  });
});

describe('RFC 6455 violations from the client', () => {
  const m = (s) => Buffer.from(s);
  const violations = [
    ['an unmasked frame', 1002, [{ opcode: OP.TEXT, payload: 'unmasked', mask: false }]],
    ['RSV1 without an extension', 1002, [{ opcode: OP.TEXT, payload: 'rsv1', rsv: 4 }]],
    ['RSV2', 1002, [{ opcode: OP.BIN, payload: 'rsv2', rsv: 2 }]],
    ['RSV3', 1002, [{ opcode: OP.TEXT, payload: 'rsv3', rsv: 1 }]],
    ['reserved data opcode 3', 1002, [{ opcode: 3, payload: 'op3' }]],
    ['reserved control opcode 0xB', 1002, [{ opcode: 0xb, payload: 'opB' }]],
    ['a ping of 126 bytes', 1002, [{ opcode: OP.PING, payload: Buffer.alloc(126, 0x41) }]],
    ['a fragmented ping', 1002, [{ opcode: OP.PING, fin: false, payload: 'fragping' }]],
    ['a continuation without a start', 1002, [{ opcode: OP.CONT, payload: 'orphan' }]],
    ['a new message inside a fragmented one', 1002, [{ opcode: OP.TEXT, fin: false, payload: 'started' }, { opcode: OP.TEXT, payload: 'interloper' }], ['started']],
    ['a close with a 1-byte payload', 1002, [{ opcode: OP.CLOSE, payload: Buffer.from([3]) }]],
    ['a close with code 1005', 1002, [{ opcode: OP.CLOSE, payload: closePayload(1005) }]],
    ['a close with code 1006', 1002, [{ opcode: OP.CLOSE, payload: closePayload(1006) }]],
    ['a close with code 999', 1002, [{ opcode: OP.CLOSE, payload: closePayload(999) }]],
    ['a close with code 2999 (reserved)', 1002, [{ opcode: OP.CLOSE, payload: closePayload(2999) }]],
    ['a close with code 5000', 1002, [{ opcode: OP.CLOSE, payload: closePayload(5000) }]],
    ['a close reason that is not UTF-8', 1007, [{ opcode: OP.CLOSE, payload: closePayload(1000, Buffer.from([0xce, 0xba, 0xff])) }]],
    ['a text frame that is not UTF-8', 1007, [{ opcode: OP.TEXT, payload: Buffer.from([0x68, 0x69, 0xff]) }]],
    ['a text message ending mid-character', 1007, [{ opcode: OP.TEXT, payload: Buffer.from([0x41, 0xe2, 0x82]) }]],
    ['an encoded surrogate (CESU)', 1007, [{ opcode: OP.TEXT, payload: Buffer.from([0xed, 0xa0, 0x80]) }]],
    ['an overlong encoding', 1007, [{ opcode: OP.TEXT, payload: Buffer.from([0xc0, 0xaf]) }]],
    ['invalid UTF-8 across fragments', 1007, [{ opcode: OP.TEXT, fin: false, payload: Buffer.from([0x61, 0xe2, 0x82]) }, { opcode: OP.CONT, payload: Buffer.from([0x28]) }], [Buffer.from([0x61, 0xe2, 0x82])]],
  ];

  let seq = 0;
  for (const [name, code, frames, mayArrive = []] of violations) {
    test(`${name} -> ${code}, never reaches the upstream`, T, async () => {
      const marker = `marker-${++seq}-${crypto.randomBytes(4).toString('hex')}`;
      const { sock, reader, res } = await wsUpgrade(gwRaw.port);
      assert.equal(res.status, 101);
      sock.write(buildFrame({ opcode: OP.TEXT, payload: marker }));
      const echoed = await readFrame(reader);
      assert.equal(echoed.payload.toString(), marker);
      for (const f of frames) sock.write(buildFrame(f));
      const c = await readClose(reader, 5000);
      assert.ok(c, 'the gateway closed TCP without a close frame');
      assert.equal(c.code, code, `close ${c.code} "${c.reason}"`);
      assert.equal(c.masked, false);
      // the gateway should then end the connection
      assert.ok(await reader.waitEnd(3000), 'connection still open 3 s after the close frame');
      await sleep(100);
      const rc = raw.byMarker(marker);
      assert.ok(rc, 'upstream connection not found');
      const allowed = [marker, ...mayArrive].map((x) => Buffer.from(x));
      const dataFrames = rc.frames.filter((f) => f.opcode !== OP.CLOSE);
      assert.deepEqual(dataFrames.map((f) => f.payload.toString('hex')), allowed.map((b) => b.toString('hex')),
        `the upstream received: ${JSON.stringify(rc.frames.map((f) => [f.opcode, f.payload.toString()]))}`);
      // a close the gateway sends upstream must itself be valid, never the client's bad one
      for (const f of rc.frames.filter((x) => x.opcode === OP.CLOSE)) {
        for (const bad of frames.filter((x) => x.opcode === OP.CLOSE)) {
          assert.ok(!f.payload.equals(m(bad.payload)), 'the invalid close frame was forwarded');
        }
      }
      sock.destroy();
    });
  }
});

describe('size limits', () => {
  let small;
  before(async () => {
    small = await startGateway(['--upstream', raw.addr, '--max_frame', '1k', '--max_message', '4k']);
  });

  test('a frame over max_frame -> 1009 (decided on the header)', T, async () => {
    const marker = `big-frame-${crypto.randomBytes(4).toString('hex')}`;
    const { sock, reader } = await wsUpgrade(small.port);
    sock.write(buildFrame({ opcode: OP.TEXT, payload: marker }));
    await readFrame(reader);
    // only the header and a few payload bytes: the verdict must not wait for the payload
    const frame = buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(1025, 7) });
    sock.write(frame.subarray(0, 20));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1009);
    await sleep(100);
    const rc = raw.byMarker(marker);
    assert.deepEqual(rc.frames.filter((f) => f.opcode !== OP.CLOSE).map((f) => f.payload.length), [marker.length]);
    sock.destroy();
  });

  test('a frame of exactly max_frame passes', T, async () => {
    const { sock, reader } = await wsUpgrade(small.port);
    const p = crypto.randomBytes(1024);
    sock.write(buildFrame({ opcode: OP.BIN, payload: p }));
    const f = await readFrame(reader);
    assert.equal(f.opcode, OP.BIN);
    assert.ok(f.payload.equals(p));
    sock.destroy();
  });

  test('a message over max_message across fragments -> 1009', T, async () => {
    const marker = crypto.randomBytes(1000);
    const { sock, reader } = await wsUpgrade(small.port);
    // 4 x 1000 = 4000 bytes fit in 4k; the 5th fragment would make 5000
    sock.write(buildFrame({ opcode: OP.BIN, fin: false, payload: marker }));
    for (let i = 0; i < 3; i++) sock.write(buildFrame({ opcode: OP.CONT, fin: false, payload: Buffer.alloc(1000, i) }));
    sock.write(buildFrame({ opcode: OP.CONT, fin: true, payload: Buffer.alloc(1000, 0xee) }));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1009);
    await sleep(100);
    const rc = raw.conns.find((x) => x.frames.some((f) => f.payload.equals(marker)));
    assert.ok(rc);
    const total = rc.frames.filter((f) => f.opcode !== OP.CLOSE).reduce((s, f) => s + f.payload.length, 0);
    assert.ok(total <= 4096, `the upstream received ${total} bytes of the message`);
    assert.ok(!rc.frames.some((f) => f.payload.equals(Buffer.alloc(1000, 0xee))), 'the frame over the limit reached the upstream');
    sock.destroy();
  });

  test('a ws client sending a too-big message gets 1009', T, async () => {
    const ws = await client(small.port);
    ws.send(Buffer.alloc(2000));
    const c = await closed(ws);
    assert.equal(c.code, 1009);
  });
});
