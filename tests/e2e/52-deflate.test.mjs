// permessage-deflate (issue 13): negotiated end to end, compressed messages forwarded as they came
// and inflated by wsgate only to check them. Real peers: `ws` with perMessageDeflate as client and
// as upstream (with and without context takeover); hand-built compressed frames for the bomb,
// invalid UTF-8 inside compression, RSV1 where it is not allowed; a raw upstream with a bad answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import zlib from 'node:zlib';
import { once } from 'node:events';
import WebSocket from 'ws';
import {
  startGateway, startWsEcho, wsUpgrade, buildFrame, readClose, readFrame, OP, cleanup, onCleanup, freePort,
  withTimeout, waitFor, sleep, wsAccept, randomText, adminRequest,
} from './lib.mjs';

const T = { timeout: 30000 };
let echo, gw, admin;

before(async () => {
  echo = await startWsEcho();
  admin = await freePort();
  gw = await startGateway(['--upstream', echo.addr, '--max_message', '64k', '--admin', `127.0.0.1:${admin}`]);
});
after(cleanup);

/** RFC 7692 §7.2.1: a message compressed with a sync flush and its 00 00 ff ff tail removed. */
const compress = (buf) => {
  const z = zlib.deflateRawSync(buf, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.deepEqual([...z.subarray(-4)], [0, 0, 0xff, 0xff]);
  return z.subarray(0, -4);
};

async function wsClient(opts, port = gw.port) {
  const ws = new WebSocket(`wss://localhost:${port}/z`, { rejectUnauthorized: false, ...opts });
  ws.got = [];
  ws.on('message', (d, isBinary) => ws.got.push({ data: Buffer.from(d), isBinary }));
  ws.on('error', () => {});
  await withTimeout(once(ws, 'open'), 5000, 'open');
  return ws;
}

for (const [name, pmd, upOpts] of [
  ['with context takeover', { threshold: 0 }, true],
  ['client_no_context_takeover and server_no_context_takeover', { threshold: 0, clientNoContextTakeover: true, serverNoContextTakeover: true },
    { threshold: 0, clientNoContextTakeover: true, serverNoContextTakeover: true }],
  ['client_max_window_bits=10', { threshold: 0, clientMaxWindowBits: 10 }, true],
]) {
  test(`ws client and ws upstream, ${name}: negotiated end to end, 200 messages echo intact`, T, async () => {
    const up = upOpts === true ? echo : await startWsEcho({ perMessageDeflate: upOpts });
    const g = up === echo ? gw : await startGateway(['--upstream', up.addr, '--max_message', '64k']);
    const ws = await wsClient({ perMessageDeflate: pmd }, g.port);
    const conn = await up.waitConn(up.conns.length);
    assert.match(ws.extensions, /^permessage-deflate/);
    assert.match(conn.headers['sec-websocket-extensions'], /^permessage-deflate/);
    if (pmd.clientNoContextTakeover) {
      assert.match(conn.headers['sec-websocket-extensions'], /client_no_context_takeover/); // offer forwarded
      // and the upstream's answer comes back to the client with its parameters
      const u = await wsUpgrade(g.port, { path: '/nc', headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_no_context_takeover; server_no_context_takeover' } });
      assert.match(u.res.headers['sec-websocket-extensions'], /server_no_context_takeover/);
      assert.match(u.res.headers['sec-websocket-extensions'], /client_no_context_takeover/);
      u.sock.destroy();
    }
    const sent = [];
    for (let i = 0; i < 200; i++) {
      const m = i % 3 === 0 ? crypto.randomBytes(1 + (i * 37) % 3000)
        : JSON.stringify({ seq: i, user: `user${i % 7}`, text: randomText(50 + (i * 13) % 1000), tags: ['a', 'b', 'c'] });
      sent.push(m);
      ws.send(m, { binary: Buffer.isBuffer(m) });
    }
    await waitFor(() => ws.got.length === 200, 10000, `200 echoes (have ${ws.got.length})`);
    ws.got.forEach((g2, i) => assert.equal(Buffer.compare(g2.data, Buffer.from(sent[i])), 0, `message ${i}`));
    assert.equal(conn.messages.length, 200);
    ws.close();
  });
}

async function rawDeflate(path = '/raw') {
  const u = await wsUpgrade(gw.port, { path, headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' } });
  assert.equal(u.res.status, 101);
  assert.match(u.res.headers['sec-websocket-extensions'] || '', /^permessage-deflate/);
  const conn = await echo.waitConn(echo.conns.length);
  return { ...u, conn };
}

test('an 8 MiB bomb (a few KiB on the wire) against max_message 64k: 1009, the upstream gets nothing of it', T, async () => {
  const { sock, reader, conn } = await rawDeflate('/bomb');
  const bomb = compress(Buffer.alloc(8 << 20));
  assert.ok(bomb.length < 16384, `${bomb.length} bytes on the wire`);
  // (max_frame is 1 MiB by default: max_message 64k is the rule that catches it)
  sock.write(buildFrame({ opcode: OP.TEXT, rsv: 4, payload: bomb }));
  const c = await readClose(reader);
  assert.ok(c, 'no close frame');
  assert.equal(c.payload.readUInt16BE(0), 1009, c.payload.toString());
  assert.match(c.payload.subarray(2).toString(), /inflated message exceeds max_message/);
  await sleep(200);
  assert.equal(conn.messages.length, 0, 'the upstream received a message');
  await waitFor(() => conn.closed, 3000, 'upstream closed');
  assert.equal(conn.close.code, 1001);
  const m = (await adminRequest(admin, '/metrics')).body;
  assert.match(m, /^wsgate_deflate_bombs_total [1-9]/m);
});

test('a ratio bomb under max_message: deflate_max_ratio closes 1009', T, async () => {
  const g = await startGateway(['--upstream', echo.addr, '--max_message', '64m', '--max_frame', '64m', '--deflate_max_ratio', '100']);
  const u = await wsUpgrade(g.port, { path: '/ratio', headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate' } });
  assert.equal(u.res.status, 101);
  assert.match(u.res.headers['sec-websocket-extensions'] || '', /^permessage-deflate/, u.res.rawHead);
  u.sock.write(buildFrame({ opcode: OP.BIN, rsv: 4, payload: compress(Buffer.alloc(4 << 20)) }));
  const c = await readClose(u.reader);
  assert.equal(c.payload.readUInt16BE(0), 1009, c.payload.toString());
  assert.match(c.payload.subarray(2).toString(), /deflate_max_ratio/);
});

test('invalid UTF-8 inside a compressed text message: 1007, nothing forwarded', T, async () => {
  const { sock, reader, conn } = await rawDeflate('/utf8');
  sock.write(buildFrame({ opcode: OP.TEXT, rsv: 4, payload: compress(Buffer.from([0x68, 0x69, 0xff, 0xfe])) }));
  const c = await readClose(reader);
  assert.equal(c.payload.readUInt16BE(0), 1007);
  await sleep(200);
  assert.equal(conn.messages.length, 0);
});

test('a compressed text message cut inside a UTF-8 sequence across fragments is 1007; valid fragments pass', T, async () => {
  const { sock, reader, conn } = await rawDeflate('/frag');
  const z = compress(Buffer.from('héllo wörld'));
  sock.write(buildFrame({ opcode: OP.TEXT, rsv: 4, fin: false, payload: z.subarray(0, 5) }));
  sock.write(buildFrame({ opcode: OP.CONT, fin: true, payload: z.subarray(5) }));
  await waitFor(() => conn.messages.length === 1, 3000, 'the fragmented compressed message');
  assert.equal(conn.messages[0].data.toString(), 'héllo wörld');
  const back = await readFrame(reader);
  assert.equal(back.rsv & 4, 4, 'the echo comes back compressed');
  sock.write(buildFrame({ opcode: OP.TEXT, rsv: 4, payload: compress(Buffer.from([0xc3])) }));
  const c = await readClose(reader);
  assert.equal(c.payload.readUInt16BE(0), 1007);
});

test('RSV1 without deflate negotiated, and RSV1 on a continuation or control frame: 1002', T, async () => {
  let u = await wsUpgrade(gw.port, { path: '/nodeflate' }); // no offer
  assert.equal(u.res.status, 101);
  assert.equal(u.res.headers['sec-websocket-extensions'], undefined);
  u.sock.write(buildFrame({ opcode: OP.TEXT, rsv: 4, payload: compress(Buffer.from('hi')) }));
  let c = await readClose(u.reader);
  assert.equal(c.payload.readUInt16BE(0), 1002);
  const off = await startGateway(['--upstream', echo.addr, '--deflate', 'off']);
  u = await wsUpgrade(off.port, { path: '/off', headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate' } });
  assert.equal(u.res.headers['sec-websocket-extensions'], undefined, 'deflate off must strip the offer');
  u.sock.write(buildFrame({ opcode: OP.TEXT, rsv: 4, payload: compress(Buffer.from('hi')) }));
  c = await readClose(u.reader);
  assert.equal(c.payload.readUInt16BE(0), 1002);
  const d = await rawDeflate('/rsv-cont');
  d.sock.write(buildFrame({ opcode: OP.TEXT, rsv: 4, fin: false, payload: compress(Buffer.from('a')) }));
  d.sock.write(buildFrame({ opcode: OP.CONT, rsv: 4, fin: true, payload: Buffer.alloc(0) }));
  c = await readClose(d.reader);
  assert.equal(c.payload.readUInt16BE(0), 1002);
  const e = await rawDeflate('/rsv-ping');
  e.sock.write(buildFrame({ opcode: OP.PING, rsv: 4, payload: Buffer.from('p') }));
  c = await readClose(e.reader);
  assert.equal(c.payload.readUInt16BE(0), 1002);
});

/** An upstream that answers the upgrade with the given Sec-WebSocket-Extensions. */
async function badUpstream(ext) {
  const port = await freePort();
  const srv = net.createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const key = /sec-websocket-key: *(\S+)/i.exec(buf)[1];
      s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(key)}\r\nSec-WebSocket-Extensions: ${ext}\r\n\r\n`);
    });
    s.on('error', () => {});
  });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  onCleanup(() => new Promise((r) => srv.close(() => r())));
  return `127.0.0.1:${port}`;
}

test('an upstream answer wsgate cannot honour fails the upgrade with 502 and a log line', T, async () => {
  for (const [ext, why] of [
    ['permessage-deflate; client_max_window_bits=10', /client_max_window_bits that was not offered/],
    ['permessage-deflate; server_max_window_bits=16', /bad permessage-deflate parameter value/],
    ['permessage-deflate; foo', /unknown permessage-deflate parameter/],
    ['permessage-deflate, permessage-deflate', /more than one extension/],
    ['x-webkit-deflate-frame', /not offered/],
    ['permessage-deflate; server_no_context_takeover; server_no_context_takeover', /repeated/],
  ]) {
    const g = await startGateway(['--upstream', await badUpstream(ext)]);
    const u = await wsUpgrade(g.port, { path: '/bad', headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate' } });
    assert.equal(u.res.status, 502, `${ext}: ${u.res.status}`);
    await waitFor(() => why.test(g.log()), 3000, `log line for ${ext}:\n${g.log()}`);
  }
});

test('max_frame applies to what a compressed frame inflates to', T, async () => {
  const g = await startGateway(['--upstream', echo.addr, '--client_max_frame', '1k']);
  const u = await wsUpgrade(g.port, { path: '/frame', headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate' } });
  assert.equal(u.res.status, 101);
  const z = compress(Buffer.alloc(5000, 0x61));
  assert.ok(z.length < 1024);
  u.sock.write(buildFrame({ opcode: OP.TEXT, rsv: 4, payload: z }));
  const c = await readClose(u.reader);
  assert.equal(c.payload.readUInt16BE(0), 1009);
  assert.match(c.payload.subarray(2).toString(), /inflated frame exceeds max_frame/);
});

/** About 256 KiB of chatty JSON: it deflates about 20 to 1 (and the ratio rule is off below). */
const chatty = (k) => {
  const rows = [];
  for (let i = 0; rows.length < 4400; i++) rows.push({ seq: k * 10000 + i, user: `user${i % 7}`, room: 'lobby', ok: i % 3 !== 0 });
  return JSON.stringify(rows).slice(0, 256 << 10);
};

/** A second connection that echoes a small message every 100 ms meanwhile: its round trips. */
function bystander(port) {
  const rtts = [];
  let stop = false, ws;
  const done = (async () => {
    ws = await wsClient({ perMessageDeflate: { threshold: 0 } }, port);
    for (let i = 0; !stop; i++) {
      const t0 = Date.now();
      ws.send(JSON.stringify({ ping: i }));
      await waitFor(() => ws.got.length === i + 1, 5000, `bystander echo ${i}`);
      rtts.push(Date.now() - t0);
      await sleep(100);
    }
    return ws;
  })();
  return { rtts, finish: async () => { stop = true; return done; } };
}

for (const action of ['throttle', 'close']) {
  test(`rate_inflate_bytes 1m with rate_action ${action}: compressible messages over it are ${action === 'close' ? 'closed 1008' : 'held, none lost'}; another connection is unaffected`, T, async () => {
    const up = await startWsEcho();
    const adm = await freePort();
    const g = await startGateway(['--upstream', up.addr, '--rate_inflate_bytes', '1m', '--rate_inflate_bytes_burst', '1m',
      '--rate_action', action, '--deflate_max_ratio', '0', '--admin', `127.0.0.1:${adm}`]);
    const b = bystander(g.port);
    await sleep(300);
    const ws = await wsClient({ perMessageDeflate: { threshold: 0 } }, g.port);
    const conn = await up.waitConn(2);
    assert.match(ws.extensions, /^permessage-deflate/);
    const closed = new Promise((res) => ws.once('close', (code, reason) => res({ code, reason: reason.toString() })));
    const sent = Array.from({ length: 16 }, (_, k) => chatty(k)); // 4 MiB inflated, about 200 KiB on the wire
    const t0 = Date.now();
    for (const m of sent) ws.send(m);
    if (action === 'throttle') {
      await waitFor(() => ws.got.length === 16, 20000, `16 echoes (have ${ws.got.length})`);
      const took = Date.now() - t0;
      // 1 MiB of burst, then 1 MiB/s: the last 3 MiB take about 3 s
      assert.ok(took >= 2400, `4 MiB inflated went in ${took} ms at 1 MiB/s`);
      ws.got.forEach((e, i) => assert.equal(e.data.toString(), sent[i], `message ${i}`));
      assert.equal(conn.messages.length, 16);
      ws.close();
    } else {
      const c = await withTimeout(closed, 10000, 'the 1008');
      assert.equal(c.code, 1008);
      assert.match(c.reason, /inflate rate limit \(rate_inflate_bytes\)/);
      // the upstream got the messages under the rate, never one past it, and a 1001
      await waitFor(() => conn.closed, 3000, 'upstream closed');
      assert.equal(conn.close.code, 1001);
      assert.ok(conn.messages.length >= 3 && conn.messages.length < 16, `${conn.messages.length} messages reached the upstream`);
      conn.messages.forEach((m, i) => assert.equal(m.data.toString(), sent[i], `message ${i}`));
    }
    await sleep(300);
    const bws = await b.finish();
    // the bystander went on: same gateway, same worker count, its own bucket
    assert.ok(b.rtts.length >= 5, `bystander round trips: ${b.rtts.length}`);
    assert.ok(Math.max(...b.rtts) < 1000, `bystander round trips (ms): ${b.rtts.join(' ')}`);
    assert.equal(bws.readyState, WebSocket.OPEN);
    bws.close();
    const m = (await adminRequest(adm, '/metrics')).body;
    const rule = action === 'close' ? 'rate_inflate' : 'throttled';
    assert.match(m, new RegExp(`^wsgate_policy_events_total\\{[^}]*rule="${rule}"[^}]*direction="client_to_upstream"[^}]*\\} [1-9]`, 'm'));
    if (action === 'close') // a throttle is counted, not logged (as for the other rates)
      await waitFor(() => /policy rate_inflate \(route default, client to upstream\): inflate rate limit/.test(g.log()), 3000, `log line:\n${g.log()}`);
  });
}

test('a 48 MiB message inflated in 1 MiB turns (the per-turn bound) arrives intact both ways; another connection goes on meanwhile', T, async () => {
  const up = await startWsEcho();
  const g = await startGateway(['--upstream', up.addr, '--max_message', '64m', '--max_frame', '64m', '--deflate_max_ratio', '0']);
  const b = bystander(g.port);
  await sleep(300);
  const ws = await wsClient({ perMessageDeflate: { threshold: 0 }, maxPayload: 64 << 20 }, g.port);
  const big = Buffer.alloc(48 << 20, 'abcdefgh'); // 48 MiB that deflate to about 48 KiB: 48+ turns each way
  ws.send(big);
  await waitFor(() => ws.got.length === 1, 20000, 'the 48 MiB echo');
  assert.equal(Buffer.compare(ws.got[0].data, big), 0);
  const bws = await b.finish();
  assert.ok(b.rtts.length >= 2, `bystander round trips: ${b.rtts.length}`);
  assert.ok(Math.max(...b.rtts) < 1000, `bystander round trips (ms): ${b.rtts.join(' ')}`);
  bws.close();
  ws.close();
});

test('deflate_client_no_context_takeover on: the client is told to reset its compressor, offered upstream and required in its answer; the client -> upstream inflater is freed between messages', T, async (t) => {
  // an upstream that answers plain "permessage-deflate": wsgate adds the parameter to the client's answer
  const g0 = await startGateway(['--upstream', await badUpstream('permessage-deflate'), '--deflate_client_no_context_takeover', 'on']);
  const u = await wsUpgrade(g0.port, { path: '/nct', headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' } });
  assert.equal(u.res.status, 101);
  assert.equal(u.res.headers['sec-websocket-extensions'], 'permessage-deflate; client_no_context_takeover', u.res.rawHead);
  assert.equal((u.res.rawHead.match(/sec-websocket-extensions/gi) || []).length, 1, u.res.rawHead);
  u.sock.destroy();
  // real peers: ws both sides, each with its default context takeover; the client obeys the answer
  const gauge = async (port) => Number(/^wsgate_deflate_inflate_bytes (\d+)/m.exec((await adminRequest(port, '/metrics')).body)[1]);
  const held = {};
  for (const mode of ['off', 'on']) {
    const up = await startWsEcho({ perMessageDeflate: { threshold: 0 } });
    const adm = await freePort();
    const g = await startGateway(['--upstream', up.addr, '--admin', `127.0.0.1:${adm}`, '--deflate_client_no_context_takeover', mode]);
    const ws = new WebSocket(`wss://localhost:${g.port}/z`, { rejectUnauthorized: false, perMessageDeflate: { threshold: 0 } });
    ws.got = [];
    ws.on('message', (d) => ws.got.push({ data: Buffer.from(d) }));
    const answer = new Promise((res) => ws.once('upgrade', (r) => res(r.headers['sec-websocket-extensions'])));
    await withTimeout(once(ws, 'open'), 5000, 'open');
    const ext = await answer;
    const conn = await up.waitConn(1);
    assert.match(ext, /^permessage-deflate/);
    if (mode === 'on') {
      assert.match(conn.headers['sec-websocket-extensions'], /client_no_context_takeover/, 'offered to the upstream');
      assert.match(ext, /client_no_context_takeover/, `the client's answer: ${ext}`);
    } else {
      assert.doesNotMatch(ext, /client_no_context_takeover/);
    }
    const sent = [];
    for (let i = 0; i < 100; i++) {
      const m = JSON.stringify({ seq: i, user: `user${i % 7}`, text: randomText(200 + (i * 53) % 3000) });
      sent.push(m);
      ws.send(m);
    }
    await waitFor(() => ws.got.length === 100, 10000, `100 echoes (have ${ws.got.length})`);
    ws.got.forEach((e, i) => assert.equal(e.data.toString(), sent[i], `message ${i}`));
    held[mode] = await gauge(adm);
    ws.close();
  }
  // off: both directions keep a context (zlib state and 32 KiB window each); on: only upstream -> client
  t.diagnostic(`inflate memory held by one idle connection: ${held.off} B with context takeover, ${held.on} B with deflate_client_no_context_takeover on`);
  assert.ok(held.off > 60000, `inflate memory held with context takeover: ${held.off}`);
  assert.ok(held.on > 20000 && held.on < held.off * 0.6, `held: on ${held.on}, off ${held.off}`);
});
