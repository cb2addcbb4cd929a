// Policy engine (issue 3), end to end through TLS: per-route size / opcode / UTF-8 rules in each
// direction, per-connection and per-IP rates (close and lossless throttle), per-IP connection and
// upgrade limits, Origin / subprotocol / header-size handshake rules, liveness (dead client,
// lifetime, slow consumer), and the violation counters on /metrics. Recording upstreams check
// that an offending frame never reaches the other hop.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import {
  startGateway, startWsEcho, startRawWsUpstream, wsUpgrade, buildFrame, readFrame, readClose, OP,
  cleanup, waitFor, withTimeout, sleep, tmpDir, freePort,
} from './lib.mjs';

const T = { timeout: 20000 };
let echo, raw, gw, gwIp;

/* ---------------------------------------------------------------------------------------------
 * helpers */

function writeConf(name, text) {
  const p = path.join(tmpDir(), name);
  fs.writeFileSync(p, text);
  return p;
}

/** Every message the ws echo upstream receives gets an arrival time in rec.times. */
function stampArrivals(srv) {
  srv.wss.on('connection', (ws) => {
    const rec = srv.conns.find((c) => c.ws === ws);
    rec.times = [];
    ws.on('message', () => rec.times.push(performance.now()));
  });
}

const rawByPath = (p) => raw.conns.find((c) => c.head.startsWith(`GET ${p} `));
const echoByPath = (srv, p) => srv.conns.find((c) => c.req.url === p);
const uniq = (prefix) => `${prefix}${crypto.randomBytes(4).toString('hex')}`;
const dataFrames = (rc) => rc.frames.filter((f) => f.opcode !== OP.CLOSE);
const closeAt = (rc) => rc.frames.find((f) => f.opcode === OP.CLOSE);
const show = (frames) => JSON.stringify(frames.map((f) => [f.opcode, f.payload.length, f.payload.subarray(0, 24).toString()]));

/** Raw upgrade that must succeed. */
async function open(port, p, opts = {}) {
  const u = await wsUpgrade(port, { path: p, ...opts });
  assert.equal(u.res.status, 101, `upgrade ${p}: ${u.res.rawHead}`);
  return u;
}

/** Sends a text marker and waits for its echo, so the session is known to be up end to end. */
async function roundTrip(sock, reader, marker) {
  sock.write(buildFrame({ opcode: OP.TEXT, payload: marker }));
  const f = await readFrame(reader);
  assert.equal(f.payload.toString(), marker);
}

async function wsClient(port, p, opts = {}) {
  const { protocols, ...rest } = opts;
  const ws = new WebSocket(`wss://localhost:${port}${p}`, protocols, { rejectUnauthorized: false, perMessageDeflate: false, ...rest });
  ws.received = [];
  ws.on('message', (data, isBinary) => ws.received.push({ data: Buffer.from(data), isBinary }));
  ws.on('error', () => {});
  ws.closedP = new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString(), at: performance.now() })));
  await withTimeout(once(ws, 'open'), 5000, `ws open ${p}`);
  return ws;
}

/** Gateway log lines mentioning a string (for failure messages). */
const logAbout = (g, s) => g.log().split('\n').filter((l) => l.includes(s)).slice(-8).join('\n');

function getText(port, p) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${p} timed out`)));
    req.on('error', reject);
  });
}

/** wsgate_policy_events_total as {"route/rule/direction": n}. */
function policyEvents(text) {
  const out = {};
  const re = /^wsgate_policy_events_total\{route="([^"]*)",rule="([^"]*)",direction="([^"]*)"\} (\d+)$/gm;
  for (let m; (m = re.exec(text));) out[`${m[1]}/${m[2]}/${m[3]}`] = Number(m[4]);
  return out;
}

/* ---------------------------------------------------------------------------------------------
 * gateways */

before(async () => {
  echo = await startWsEcho({ perMessageDeflate: false });
  stampArrivals(echo);
  raw = await startRawWsUpstream();
  const conf = writeConf('policy-main.conf', `
upstream ${raw.addr}
route sizes {
    path /sizes/
    client_max_frame 1k
    client_max_message 4k
}
route down {
    path /down/
    client_max_frame 4k
    upstream_max_frame 1k
}
route frags {
    path /frags/
    max_fragments 3
}
route textonly {
    path /textonly/
    allow_binary off
}
route notext {
    path /notext/
    client_allow_text off
}
route noutf8 {
    path /noutf8/
    utf8 off
}
route rateclose {
    path /rateclose/
    rate_messages 5
    rate_messages_burst 5
    rate_action close
}
route bytesclose {
    path /bytesclose/
    rate_bytes 1k
    rate_bytes_burst 1k
    rate_action close
}
route throttle {
    path /throttle/
    upstream ${echo.addr}
    rate_messages 50
    rate_messages_burst 5
}
route bthrottle {
    path /bthrottle/
    upstream ${echo.addr}
    rate_bytes 1m
    rate_bytes_burst 64k
}
route push {
    path /push/
    upstream ${echo.addr}
    rate_messages 10
    rate_messages_burst 1
}
route origin {
    path /origin/
    origins https://app.example.com *.example.org
}
route sub {
    path /sub/
    upstream ${echo.addr}
    subprotocols chat.v2 chat.v1
}
route hdr {
    path /hdr/
    max_header_size 1k
}
route dead {
    path /dead/
    upstream ${echo.addr}
    ping_interval 1s
    pong_timeout 1s
}
route life {
    path /life/
    upstream ${echo.addr}
    max_lifetime 1s
}
route lifejit {
    path /lifejit/
    upstream ${echo.addr}
    max_lifetime 1s
    lifetime_jitter 1s
}
route slow {
    path /slow/
    upstream ${echo.addr}
    slow_consumer_bytes 64k
    slow_consumer_grace 1s
}
`);
  gw = await startGateway(['-c', conf]);

  const confIp = writeConf('policy-ip.conf', `
upstream ${echo.addr}
workers 2
route agg {
    path /agg/
    ip_rate_messages 50
    ip_rate_messages_burst 10
}
route ipclose {
    path /ipclose/
    ip_rate_messages 3
    ip_rate_messages_burst 3
    rate_action close
}
route ipc {
    path /ipc/
    ip_max_conns 3
}
route ipc503 {
    path /ipc503/
    ip_max_conns 1
    ip_limit_status 503
}
route upg {
    path /upg/
    ip_upgrades 1
    ip_upgrades_burst 3
}
`);
  gwIp = await startGateway(['-c', confIp]);
});
after(cleanup);

/* ---------------------------------------------------------------------------------------------
 * sizes, opcodes, UTF-8 */

describe('size, opcode and UTF-8 rules per route and direction', () => {
  test('client frame over the route\'s client_max_frame -> 1009 to the client, 1001 upstream, frame never forwarded', T, async () => {
    const p = `/sizes/${uniq('f')}`;
    const { sock, reader } = await open(gw.port, p);
    await roundTrip(sock, reader, 'sizes-hello');
    // the header and 20 payload bytes only: the verdict must come from the header
    sock.write(buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(1025, 7) }).subarray(0, 20));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame (TCP closed)');
    assert.equal(c.code, 1009, `close ${c.code} "${c.reason}"\n${logAbout(gw, 'route sizes')}`);
    assert.match(c.reason, /max_frame/);
    const rc = rawByPath(p);
    await waitFor(() => closeAt(rc), 3000, 'close at the upstream');
    assert.equal(closeAt(rc).code, 1001, `upstream close ${closeAt(rc).code} "${closeAt(rc).reason}"`);
    assert.deepEqual(dataFrames(rc).map((f) => f.payload.toString()), ['sizes-hello'], `upstream got ${show(rc.frames)}`);
    sock.destroy();
  });

  test('a frame of exactly client_max_frame passes; the default route is not limited by the route', T, async () => {
    const a = await open(gw.port, `/sizes/${uniq('ok')}`);
    const pay = crypto.randomBytes(1024);
    a.sock.write(buildFrame({ opcode: OP.BIN, payload: pay }));
    const f = await readFrame(a.reader);
    assert.ok(f.payload.equals(pay));
    a.sock.destroy();
    const b = await open(gw.port, `/elsewhere/${uniq('ok')}`);
    const big = crypto.randomBytes(5000);
    b.sock.write(buildFrame({ opcode: OP.BIN, payload: big }));
    const g = await readFrame(b.reader);
    assert.ok(g.payload.equals(big), 'default route refused a 5000-byte frame');
    b.sock.destroy();
  });

  test('message over client_max_message across fragments -> 1009; the fragment over the limit never reaches the upstream', T, async () => {
    const p = `/sizes/${uniq('m')}`;
    const { sock, reader } = await open(gw.port, p);
    await roundTrip(sock, reader, 'msg-hello');
    sock.write(buildFrame({ opcode: OP.BIN, fin: false, payload: Buffer.alloc(1000, 1) }));
    for (let i = 2; i <= 4; i++) sock.write(buildFrame({ opcode: OP.CONT, fin: false, payload: Buffer.alloc(1000, i) }));
    sock.write(buildFrame({ opcode: OP.CONT, fin: true, payload: Buffer.alloc(1000, 0xee) }));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1009, `close ${c.code} "${c.reason}"`);
    assert.match(c.reason, /max_message/);
    const rc = rawByPath(p);
    await waitFor(() => closeAt(rc), 3000, 'close at the upstream');
    assert.equal(closeAt(rc).code, 1001);
    assert.ok(!rc.frames.some((f) => f.payload.length === 1000 && f.payload[0] === 0xee), `upstream got ${show(rc.frames)}`);
    sock.destroy();
  });

  test('upstream frame over upstream_max_frame -> 1009 to the upstream, 1001 to the client, never delivered', T, async () => {
    const p = `/down/${uniq('d')}`;
    const { sock, reader } = await open(gw.port, p);
    const small = crypto.randomBytes(1000);
    sock.write(buildFrame({ opcode: OP.BIN, payload: small }));
    assert.ok((await readFrame(reader)).payload.equals(small), 'a 1000-byte echo did not come back');
    // 2000 bytes are fine from the client (4k) but the raw upstream echoes them (limit 1k)
    sock.write(buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(2000, 0x42) }));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1001, `client close ${c.code} "${c.reason}"`);
    assert.ok(c.reason.length > 0, 'empty reason');
    assert.ok(!c.skipped.some((f) => f.payload.length >= 1001), `client got the oversized frame: ${show(c.skipped)}`);
    const rc = rawByPath(p);
    await waitFor(() => closeAt(rc), 3000, 'close at the upstream');
    assert.equal(closeAt(rc).code, 1009, `upstream close ${closeAt(rc).code} "${closeAt(rc).reason}"`);
    sock.destroy();
  });

  test('max_fragments 3: three fragments pass, a fourth -> 1009 and is not forwarded', T, async () => {
    const p = `/frags/${uniq('fr')}`;
    const { sock, reader } = await open(gw.port, p);
    sock.write(buildFrame({ opcode: OP.TEXT, fin: false, payload: 'a' }));
    sock.write(buildFrame({ opcode: OP.CONT, fin: false, payload: 'b' }));
    sock.write(buildFrame({ opcode: OP.CONT, fin: true, payload: 'c' }));
    const back = [await readFrame(reader), await readFrame(reader), await readFrame(reader)];
    assert.deepEqual(back.map((f) => f.payload.toString()), ['a', 'b', 'c']);
    sock.write(buildFrame({ opcode: OP.TEXT, fin: false, payload: 'w' }));
    sock.write(buildFrame({ opcode: OP.CONT, fin: false, payload: 'x' }));
    sock.write(buildFrame({ opcode: OP.CONT, fin: false, payload: 'y' }));
    sock.write(buildFrame({ opcode: OP.CONT, fin: true, payload: 'z-fourth' }));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1009, `close ${c.code} "${c.reason}"`);
    assert.match(c.reason, /fragment/);
    const rc = rawByPath(p);
    await waitFor(() => closeAt(rc), 3000, 'close at the upstream');
    assert.equal(closeAt(rc).code, 1001);
    assert.ok(!rc.frames.some((f) => f.payload.toString() === 'z-fourth'), `upstream got ${show(rc.frames)}`);
    sock.destroy();
  });

  test('allow_binary off -> a binary frame gets 1003, text passes; not forwarded', T, async () => {
    const p = `/textonly/${uniq('t')}`;
    const { sock, reader } = await open(gw.port, p);
    await roundTrip(sock, reader, 'text is fine');
    sock.write(buildFrame({ opcode: OP.BIN, payload: Buffer.from('binary-not-allowed') }));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1003, `close ${c.code} "${c.reason}"`);
    assert.ok(c.reason.length > 0);
    const rc = rawByPath(p);
    await waitFor(() => closeAt(rc), 3000, 'close at the upstream');
    assert.equal(closeAt(rc).code, 1001);
    assert.deepEqual(dataFrames(rc).map((f) => f.payload.toString()), ['text is fine'], `upstream got ${show(rc.frames)}`);
    sock.destroy();
  });

  test('client_allow_text off -> a text frame gets 1003, binary passes; not forwarded', T, async () => {
    const p = `/notext/${uniq('b')}`;
    const { sock, reader } = await open(gw.port, p);
    sock.write(buildFrame({ opcode: OP.BIN, payload: 'binary is fine' }));
    assert.equal((await readFrame(reader)).payload.toString(), 'binary is fine');
    sock.write(buildFrame({ opcode: OP.TEXT, payload: 'text-not-allowed' }));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1003, `close ${c.code} "${c.reason}"`);
    const rc = rawByPath(p);
    await waitFor(() => closeAt(rc), 3000, 'close at the upstream');
    assert.ok(!rc.frames.some((f) => f.payload.toString() === 'text-not-allowed'), `upstream got ${show(rc.frames)}`);
    sock.destroy();
  });

  test('utf8 off passes invalid UTF-8 text both ways; the default route still answers 1007', T, async () => {
    const bad = Buffer.from([0x68, 0x69, 0xff, 0xc0, 0xaf]);
    const a = await open(gw.port, `/noutf8/${uniq('u')}`);
    a.sock.write(buildFrame({ opcode: OP.TEXT, payload: bad }));
    const f = await readFrame(a.reader);
    assert.equal(f.opcode, OP.TEXT);
    assert.ok(f.payload.equals(bad));
    a.sock.destroy();
    const b = await open(gw.port, `/other/${uniq('u')}`);
    b.sock.write(buildFrame({ opcode: OP.TEXT, payload: bad }));
    const c = await readClose(b.reader, 5000);
    assert.equal(c?.code, 1007);
    b.sock.destroy();
  });
});

/* ---------------------------------------------------------------------------------------------
 * per-connection rates */

describe('per-connection rates', () => {
  test('rate_messages 5 (burst 5) with rate_action close: the 6th message -> 1008 naming the rule; upstream got exactly 5', T, async () => {
    // one message in 10 fragments counts once
    const a = await open(gw.port, `/rateclose/${uniq('f')}`);
    for (let i = 0; i < 10; i++) a.sock.write(buildFrame({ opcode: i ? OP.CONT : OP.TEXT, fin: i === 9, payload: `p${i}` }));
    for (let i = 0; i < 10; i++) assert.equal((await readFrame(a.reader)).payload.toString(), `p${i}`);
    a.sock.destroy();

    const p = `/rateclose/${uniq('r')}`;
    const { sock, reader } = await open(gw.port, p);
    sock.write(Buffer.concat(Array.from({ length: 8 }, (_, i) => buildFrame({ opcode: OP.TEXT, payload: `m${i}` }))));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1008, `close ${c.code} "${c.reason}"`);
    assert.match(c.reason, /rate_messages/);
    const rc = rawByPath(p);
    await waitFor(() => closeAt(rc), 3000, 'close at the upstream');
    assert.equal(closeAt(rc).code, 1001);
    assert.deepEqual(dataFrames(rc).map((f) => f.payload.toString()), ['m0', 'm1', 'm2', 'm3', 'm4']);
    sock.destroy();
  });

  test('rate_bytes 1k with rate_action close: 600 + 600 bytes -> 1008 naming rate_bytes; the second never forwarded', T, async () => {
    const p = `/bytesclose/${uniq('b')}`;
    const { sock, reader } = await open(gw.port, p);
    sock.write(buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(600, 1) }));
    sock.write(buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(600, 2) }));
    const c = await readClose(reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1008, `close ${c.code} "${c.reason}"`);
    assert.match(c.reason, /rate_bytes/);
    const rc = rawByPath(p);
    await waitFor(() => closeAt(rc), 3000, 'close at the upstream');
    assert.deepEqual(dataFrames(rc).map((f) => f.payload[0]), [1], `upstream got ${show(rc.frames)}`);
    sock.destroy();
  });

  test('throttle: 100 messages sent at once with rate_messages 50 (burst 5) all arrive, in order, at 50/s ±10%', T, async (t) => {
    const p = `/throttle/${uniq('t')}`;
    const { sock, reader } = await open(gw.port, p);
    const N = 100, BURST = 5, RATE = 50;
    const sent = Array.from({ length: N }, (_, i) => `t-${String(i).padStart(3, '0')}`);
    const up = await waitFor(() => echoByPath(echo, p), 3000, 'upstream connection');
    await sleep(200); // the bucket is full (burst 5) whatever the handshake took
    sock.write(Buffer.concat(sent.map((s) => buildFrame({ opcode: OP.TEXT, payload: s }))));
    const t0 = performance.now();
    await waitFor(() => up.messages.length >= N, 8000, `${N} messages at the upstream (have ${up.messages.length})`);
    assert.deepEqual(up.messages.map((m) => m.data.toString()), sent, 'lost, duplicated or reordered');
    const first = up.times[0], last = up.times[N - 1];
    assert.ok(first - t0 < 500, `the burst took ${(first - t0).toFixed(0)} ms to arrive`);
    // the first BURST go at once; the other N - BURST at RATE/s after the first arrival
    const rate = (N - BURST) / ((last - first) / 1000);
    t.diagnostic(`measured ${rate.toFixed(1)} msg/s (${(last - first).toFixed(0)} ms for ${N - BURST})`);
    assert.ok(Math.abs(rate - RATE) <= RATE * 0.1, `measured ${rate.toFixed(1)} msg/s (${(last - first).toFixed(0)} ms for ${N - BURST})`);
    // not all held until the end: at 20 ms spacing, the middle message arrives mid-way
    const mid = up.times[BURST + 47] - first;
    assert.ok(mid > 800 && mid < 1100, `message ${BURST + 48} arrived ${mid.toFixed(0)} ms after the first`);
    // and the echoes all come back to the client, in order
    const back = [];
    for (let i = 0; i < N; i++) back.push((await readFrame(reader, 5000)).payload.toString());
    assert.deepEqual(back, sent);
    sock.destroy();
  });

  test('throttle on bytes: 2 MiB at once with rate_bytes 1m (burst 64k) arrives whole, in order, at 1 MiB/s ±10%', T, async (t) => {
    const p = `/bthrottle/${uniq('b')}`;
    const { sock, reader } = await open(gw.port, p);
    const N = 32, SZ = 64 << 10, RATE = 1 << 20;
    const msgs = Array.from({ length: N }, (_, i) => { const b = crypto.randomBytes(SZ); b.writeUInt32BE(i, 0); return b; });
    const up = await waitFor(() => echoByPath(echo, p), 3000, 'upstream connection');
    let echoed = 0;
    reader.sock.on('data', (d) => { echoed += d.length; });
    await sleep(200);
    sock.write(Buffer.concat(msgs.map((m) => buildFrame({ opcode: OP.BIN, payload: m }))));
    await sleep(600);
    const atUp = up.messages.length;
    await waitFor(() => up.messages.length >= N, 10000, `${N} messages at the upstream (have ${up.messages.length})`);
    assert.equal(up.messages.length, N);
    for (let i = 0; i < N; i++) assert.ok(up.messages[i].data.equals(msgs[i]), `message ${i} differs`);
    const first = up.times[0], last = up.times[N - 1];
    // the first takes the burst; the other N - 1 go at RATE
    const rate = ((N - 1) * SZ) / ((last - first) / 1000);
    t.diagnostic(`measured ${(rate / 1024).toFixed(0)} KiB/s over ${(last - first).toFixed(0)} ms; ${atUp}/${N} through after 600 ms`);
    assert.ok(Math.abs(rate - RATE) <= RATE * 0.1, `measured ${(rate / 1024).toFixed(0)} KiB/s over ${(last - first).toFixed(0)} ms`);
    assert.ok(atUp > 3 && atUp < 16, `${atUp} of ${N} messages were through after 600 ms (expected about 10)`);
    await waitFor(() => echoed >= N * SZ, 8000, 'echoes back at the client');
    sock.destroy();
  });

  test('throttle holds the client by TCP: 12 MiB sent against rate_messages 10 is not read ahead by the gateway', T, async (t) => {
    const p = `/push/${uniq('p')}`;
    const { sock } = await open(gw.port, p);
    const N = 48, SZ = 256 << 10;
    const up = await waitFor(() => echoByPath(echo, p), 3000, 'upstream connection');
    await sleep(200);
    // one frame at a time, the next when the client's TCP stack has taken the previous one
    let flushed = 0, stop = false;
    (async () => {
      for (let i = 0; i < N && !stop; i++) {
        await new Promise((r) => sock.write(buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(SZ, i) }), r));
        flushed++;
      }
    })().catch(() => {});
    await sleep(1200);
    const atUp = up.messages.length, taken = flushed;
    stop = true;
    t.diagnostic(`after 1.2 s: ${atUp} messages at the upstream, ${taken}/${N} frames taken by the client's TCP`);
    assert.ok(atUp >= 10 && atUp <= 15, `${atUp} messages through in 1.2 s at 10/s (burst 1)`);
    // without pushback the gateway would read all 12 MiB at once; with it, what left the client
    // is what passed plus the kernel buffers in between (a few MiB)
    assert.ok(taken < N, `the client's TCP took all ${N} frames (${N * SZ >> 20} MiB) while ${atUp} had passed`);
    up.messages.forEach((m, i) => assert.ok(m.data.length === SZ && m.data[0] === i, `message ${i} out of order`));
    sock.destroy();
  });
});

/* ---------------------------------------------------------------------------------------------
 * per-IP rules across connections and worker threads */

describe('per-IP rules (workers 2)', () => {
  test('8 connections from 127.0.0.2 share one ip_rate_messages bucket (50/s, burst 10); 127.0.0.3 is unaffected', { timeout: 30000 }, async (t) => {
    const K = 8, PER = 15, BURST = 10, RATE = 50;
    const tag = uniq('');
    const clients = [];
    for (let i = 0; i < K; i++) clients.push(await open(gwIp.port, `/agg/a${i}-${tag}`, { localAddress: '127.0.0.2' }));
    const ups = await waitFor(() => { const u = clients.map((_, i) => echoByPath(echo, `/agg/a${i}-${tag}`)); return u.every(Boolean) && u; }, 3000, 'upstream connections');
    await sleep(300);
    const t0 = performance.now();
    clients.forEach((c, i) => c.sock.write(Buffer.concat(Array.from({ length: PER }, (_, j) => buildFrame({ opcode: OP.TEXT, payload: `a${i}-${j}` })))));
    await sleep(300);
    // another address meanwhile: its own bucket, full
    const other = await open(gwIp.port, `/agg/b-${tag}`, { localAddress: '127.0.0.3' });
    const upB = await waitFor(() => echoByPath(echo, `/agg/b-${tag}`), 3000, 'upstream connection of 127.0.0.3');
    const tB = performance.now();
    other.sock.write(Buffer.concat(Array.from({ length: BURST }, (_, j) => buildFrame({ opcode: OP.TEXT, payload: `b-${j}` }))));
    await waitFor(() => upB.messages.length >= BURST, 3000, `127.0.0.3's ${BURST} messages (have ${upB.messages.length})`);
    const bTook = upB.times[BURST - 1] - tB;
    const aDuringB = ups.reduce((s, u) => s + u.messages.length, 0);

    await waitFor(() => ups.every((u) => u.messages.length >= PER), 10000,
      `all ${K * PER} messages of 127.0.0.2 (have ${ups.reduce((s, u) => s + u.messages.length, 0)})`);
    ups.forEach((u, i) => assert.deepEqual(u.messages.map((m) => m.data.toString()), Array.from({ length: PER }, (_, j) => `a${i}-${j}`), `connection ${i}`));
    const times = ups.flatMap((u) => u.times).sort((x, y) => x - y);
    const first = times[0], last = times.at(-1);
    const rate = (K * PER - BURST) / ((last - first) / 1000);
    t.diagnostic(`aggregate ${rate.toFixed(1)} msg/s; 127.0.0.3's ${BURST} took ${bTook.toFixed(0)} ms while 127.0.0.2 had ${aDuringB}/${K * PER} through`);
    assert.ok(first - t0 < 500);
    assert.ok(Math.abs(rate - RATE) <= RATE * 0.1, `aggregate ${rate.toFixed(1)} msg/s over ${(last - first).toFixed(0)} ms (8 connections, 1 address)`);
    // at no point did the 8 together get ahead of burst + rate * t (+ slack for one timer tick)
    times.forEach((t, i) => assert.ok(i + 1 <= BURST + RATE * ((t - first) / 1000) + 2, `message ${i + 1} at ${(t - first).toFixed(0)} ms is ahead of the bucket`));
    assert.ok(bTook < 400, `127.0.0.3's ${BURST} messages took ${bTook.toFixed(0)} ms`);
    assert.ok(aDuringB < K * PER - 20, `127.0.0.2 was nearly done (${aDuringB}) when 127.0.0.3 sent: the test proves nothing`);

    for (const c of [...clients, other]) c.sock.destroy();
    // which worker each 127.0.0.2 connection was on (conn id % 64), from the access log
    await waitFor(() => (gwIp.log().match(/"type":"ws"[^\n]*"client":"127\.0\.0\.2"/g) || []).length >= K, 3000, 'access-log lines').catch(() => {});
    const workers = new Set((gwIp.log().match(/"type":"ws","conn":\d+,"client":"127\.0\.0\.2"/g) || []).map((l) => Number(/"conn":(\d+)/.exec(l)[1]) % 64));
    t.diagnostic(`127.0.0.2's connections were on workers ${[...workers].join(', ')}`);
  });

  test('ip_rate_messages 3 (burst 3) with rate_action close: the 4th message over two connections of one address -> 1008', T, async () => {
    const tag = uniq('');
    const a = await open(gwIp.port, `/ipclose/a-${tag}`, { localAddress: '127.0.0.9' });
    const b = await open(gwIp.port, `/ipclose/b-${tag}`, { localAddress: '127.0.0.9' });
    const c3 = await open(gwIp.port, `/ipclose/c-${tag}`, { localAddress: '127.0.0.10' });
    a.sock.write(Buffer.concat(['a0', 'a1'].map((x) => buildFrame({ opcode: OP.TEXT, payload: x }))));
    assert.deepEqual([(await readFrame(a.reader)).payload.toString(), (await readFrame(a.reader)).payload.toString()], ['a0', 'a1']);
    // b0 takes the last token (its echo may lose the race with the close), b1 is refused
    b.sock.write(Buffer.concat(['b0', 'b1'].map((x) => buildFrame({ opcode: OP.TEXT, payload: x }))));
    const c = await readClose(b.reader, 5000);
    assert.ok(c, 'no close frame');
    assert.equal(c.code, 1008, `close ${c.code} "${c.reason}"`);
    assert.match(c.reason, /ip_rate/);
    const upB = echoByPath(echo, `/ipclose/b-${tag}`);
    await waitFor(() => upB.close, 3000, 'upstream close');
    assert.deepEqual(upB.messages.map((m) => m.data.toString()), ['b0']);
    assert.equal(upB.close.code, 1001);
    // another address has its own bucket
    c3.sock.write(Buffer.concat(['c0', 'c1', 'c2'].map((x) => buildFrame({ opcode: OP.TEXT, payload: x }))));
    for (const x of ['c0', 'c1', 'c2']) assert.equal((await readFrame(c3.reader)).payload.toString(), x);
    for (const u of [a, b, c3]) u.sock.destroy();
  });

  test('ip_max_conns 3: the 4th concurrent upgrade from one address -> 429 with Retry-After; other address fine; a slot frees on close', T, async () => {
    const tag = uniq('');
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await open(gwIp.port, `/ipc/h${i}-${tag}`, { localAddress: '127.0.0.4' }));
    const r = await wsUpgrade(gwIp.port, { path: `/ipc/refused-${tag}`, localAddress: '127.0.0.4' });
    assert.equal(r.res.status, 429, r.res.rawHead);
    assert.match(r.res.headers['retry-after'] || '', /^[1-9]\d*$/, `Retry-After: ${r.res.headers['retry-after']}`);
    r.sock.destroy();
    const o = await open(gwIp.port, `/ipc/other-${tag}`, { localAddress: '127.0.0.5' });
    await roundTrip(o.sock, o.reader, 'other-ip');
    // a slot frees when a connection ends
    held[0].sock.destroy();
    let again;
    await waitFor(async () => {
      const u = await wsUpgrade(gwIp.port, { path: `/ipc/again-${tag}`, localAddress: '127.0.0.4' });
      if (u.res.status === 101) { again = u; return true; }
      u.sock.destroy();
      return false;
    }, 4000, 'a free slot after a close', 200);
    await roundTrip(again.sock, again.reader, 'again');
    assert.ok(!echoByPath(echo, `/ipc/refused-${tag}`), 'the refused upgrade reached the upstream');
    for (const c of [...held, o, again]) c.sock.destroy();
  });

  test('ip_max_conns 1 with ip_limit_status 503 -> the 2nd gets 503', T, async () => {
    const tag = uniq('');
    const a = await open(gwIp.port, `/ipc503/a-${tag}`, { localAddress: '127.0.0.8' });
    const b = await wsUpgrade(gwIp.port, { path: `/ipc503/b-${tag}`, localAddress: '127.0.0.8' });
    assert.equal(b.res.status, 503, b.res.rawHead);
    assert.ok(!echoByPath(echo, `/ipc503/b-${tag}`));
    a.sock.destroy(); b.sock.destroy();
  });

  test('ip_upgrades 1/s burst 3: the 4th upgrade in a row -> 429 Retry-After; another address fine', T, async () => {
    const tag = uniq('');
    const ok = [];
    for (let i = 0; i < 3; i++) ok.push(await open(gwIp.port, `/upg/u${i}-${tag}`, { localAddress: '127.0.0.6' }));
    const r = await wsUpgrade(gwIp.port, { path: `/upg/refused-${tag}`, localAddress: '127.0.0.6' });
    assert.equal(r.res.status, 429, r.res.rawHead);
    assert.equal(r.res.headers['retry-after'], '1', 'one token at 1/s is less than a second away');
    const o = await open(gwIp.port, `/upg/o-${tag}`, { localAddress: '127.0.0.7' });
    assert.ok(!echoByPath(echo, `/upg/refused-${tag}`), 'the refused upgrade reached the upstream');
    for (const c of [...ok, r, o]) c.sock.destroy();
  });
});

/* ---------------------------------------------------------------------------------------------
 * handshake rules */

describe('handshake rules', () => {
  const cases = [
    ['https://app.example.com', 101],
    ['http://app.example.com', 403],
    ['https://app.example.com:8443', 403],
    ['https://evil.example.com', 403],
    ['https://app.example.com.evil.net', 403],
    ['https://chat.example.org', 101],
    ['http://a.b.example.org', 101],
    ['https://example.org', 403],
    ['https://notexample.org', 403],
    ['null', 403],
    [null, 101], // no Origin: not a browser
  ];
  test('Origin allowlist (exact and wildcard): 403 before the upgrade, the upstream never sees it', T, async () => {
    for (const [origin, want] of cases) {
      const p = `/origin/${uniq('o')}`;
      const u = await wsUpgrade(gw.port, { path: p, headers: origin ? { Origin: origin } : {} });
      assert.equal(u.res.status, want, `Origin ${origin}: ${u.res.status}`);
      if (want === 403) {
        assert.equal(u.res.headers.upgrade, undefined);
        await sleep(50);
        assert.ok(!rawByPath(p), `Origin ${origin}: the upstream saw the upgrade`);
      } else {
        await roundTrip(u.sock, u.reader, `origin ok ${origin}`);
      }
      u.sock.destroy();
    }
    // a route without a list takes any Origin
    const any = await open(gw.port, `/x/${uniq('o')}`, { headers: { Origin: 'https://evil.example.com' } });
    any.sock.destroy();
  });

  test('subprotocol allowlist: an offer with none allowed -> 403; an allowed one is negotiated', T, async () => {
    const p = `/sub/${uniq('s')}`;
    const u = await wsUpgrade(gw.port, { path: p, headers: { 'Sec-WebSocket-Protocol': 'foo, bar' } });
    assert.equal(u.res.status, 403, u.res.rawHead);
    await sleep(50);
    assert.ok(!echoByPath(echo, p), 'the upstream saw the refused upgrade');
    u.sock.destroy();
    const ws = await wsClient(gw.port, `/sub/${uniq('s')}`, { protocols: ['chat.v1'] });
    assert.equal(ws.protocol, 'chat.v1');
    ws.close();
    const ws2 = new WebSocket(`wss://localhost:${gw.port}/sub/${uniq('s')}`, ['mqtt'], { rejectUnauthorized: false });
    const status = await withTimeout(new Promise((r) => {
      ws2.on('unexpected-response', (req, res) => { r(res.statusCode); req.destroy(); });
      ws2.on('open', () => r(101));
      ws2.on('error', () => {});
    }), 5000, 'ws client refusal');
    assert.equal(status, 403);
    /* A mixed offer: only the allowed names are forwarded, so the upstream (which picks the
     * first it is offered) cannot choose a forbidden one. */
    const p3 = `/sub/${uniq('s')}`;
    const ws3 = await wsClient(gw.port, p3, { protocols: ['foo', 'chat.v1'] });
    assert.equal(ws3.protocol, 'chat.v1');
    ws3.close();
    const seen = echoByPath(echo, p3);
    assert.ok(seen, 'the upstream saw the upgrade');
    assert.equal(seen.headers['sec-websocket-protocol'], 'chat.v1');
  });

  test('route max_header_size 1k: a 1.5k head -> 431 on that route, 101 elsewhere; a small head passes', T, async () => {
    const pad = { 'X-Pad': 'p'.repeat(1500) };
    const p = `/hdr/${uniq('h')}`;
    const u = await wsUpgrade(gw.port, { path: p, headers: pad });
    assert.equal(u.res.status, 431, u.res.rawHead);
    await sleep(50);
    assert.ok(!rawByPath(p));
    u.sock.destroy();
    (await open(gw.port, `/hdr/${uniq('h')}`, { headers: { 'X-Pad': 'p'.repeat(300) } })).sock.destroy();
    (await open(gw.port, `/nohdr/${uniq('h')}`, { headers: pad })).sock.destroy();
  });
});

/* ---------------------------------------------------------------------------------------------
 * liveness */

describe('liveness', () => {
  test('ping_interval 1s, pong_timeout 1s: a client that never answers is closed 1001 within 2 s (+slack), the upstream too; one that answers stays', T, async () => {
    const dead = async () => {
      const p = `/dead/${uniq('d')}`;
      const { sock, reader } = await open(gw.port, p);
      const t0 = performance.now();
      const ping = await readFrame(reader, 3000);
      const tPing = performance.now() - t0;
      assert.equal(ping.opcode, OP.PING, `expected a ping, got opcode ${ping.opcode}`);
      const c = await readClose(reader, 4000);
      const tClose = performance.now() - t0;
      assert.ok(c, 'TCP closed without a close frame');
      assert.equal(c.code, 1001, `close ${c.code} "${c.reason}"`);
      assert.ok(tPing > 800 && tPing < 1800, `ping after ${tPing.toFixed(0)} ms`);
      assert.ok(tClose > 1800 && tClose < 3200, `closed after ${tClose.toFixed(0)} ms (interval 1 s + deadline 1 s)`);
      const up = echoByPath(echo, p);
      await waitFor(() => up.close, 3000, 'upstream close');
      assert.equal(up.close.code, 1001);
      sock.destroy();
    };
    // answers every ping with the same payload: stays open
    const alive = async (payloadOf) => {
      const { sock, reader } = await open(gw.port, `/dead/${uniq('a')}`);
      const t0 = performance.now();
      let pings = 0;
      while (performance.now() - t0 < 3500) {
        let f;
        try { f = await readFrame(reader, Math.max(1, 3500 - (performance.now() - t0))); } catch (e) {
          if (/timeout/.test(e.message)) break;
          throw e;
        }
        if (f.opcode === OP.CLOSE) return { closed: f, pings, at: performance.now() - t0 };
        if (f.opcode === OP.PING) { pings++; sock.write(buildFrame({ opcode: OP.PONG, payload: payloadOf(f.payload) })); }
      }
      sock.destroy();
      return { closed: null, pings };
    };
    const [, good, wrong] = await Promise.all([dead(), alive((p) => p), alive(() => Buffer.from('not-your-ping'))]);
    assert.equal(good.closed, null, `a client answering pings was closed: ${good.closed?.code} "${good.closed?.reason}"`);
    assert.ok(good.pings >= 2, `${good.pings} pings in 3.5 s`);
    assert.ok(wrong.closed, 'a pong with another payload kept the client alive');
    assert.equal(wrong.closed.code, 1001);
    assert.ok(wrong.at < 3200, `closed after ${wrong.at} ms`);
  });

  test('max_lifetime 1s -> 1001 "connection lifetime reached" at ~1 s even while active; upstream 1001; jitter spreads closes', T, async () => {
    const p = `/life/${uniq('l')}`;
    const ws = await wsClient(gw.port, p);
    const t0 = performance.now();
    const iv = setInterval(() => { if (ws.readyState === WebSocket.OPEN) ws.send('alive'); }, 150);
    const jit = await Promise.all(Array.from({ length: 5 }, () => wsClient(gw.port, `/lifejit/${uniq('j')}`)));
    const tj = performance.now();
    const c = await withTimeout(ws.closedP, 4000, 'lifetime close');
    clearInterval(iv);
    const took = c.at - t0;
    assert.equal(c.code, 1001);
    assert.equal(c.reason, 'connection lifetime reached');
    assert.ok(took > 900 && took < 2000, `closed after ${took.toFixed(0)} ms`);
    assert.ok(ws.received.length >= 3, 'the echoes did not flow before the lifetime ended');
    const up = echoByPath(echo, p);
    await waitFor(() => up.close, 3000, 'upstream close');
    assert.equal(up.close.code, 1001);
    const js = await withTimeout(Promise.all(jit.map((w) => w.closedP)), 5000, 'jittered closes');
    const at = js.map((x) => x.at - tj);
    for (const x of js) assert.equal(x.code, 1001);
    assert.ok(at.every((x) => x > 900 && x < 2700), `jittered closes at ${at.map((x) => x.toFixed(0))} ms`);
    assert.ok(Math.max(...at) - Math.min(...at) > 50, `no jitter: ${at.map((x) => x.toFixed(0))} ms`);
  });

  test('slow consumer: a client that stops reading above 64k for 1 s -> 1008 to the client, 1001 to the upstream', T, async (t) => {
    const p = `/slow/${uniq('s')}`;
    const { sock, reader } = await open(gw.port, p);
    await roundTrip(sock, reader, 'slow-hello');
    const up = echoByPath(echo, p);
    sock.pause(); // stop reading
    const t0 = performance.now();
    const chunk = Buffer.alloc(256 << 10, 0x61);
    for (let i = 0; i < 16; i++) up.ws.send(chunk, { binary: true });
    await waitFor(() => up.close, 6000, 'upstream close for a slow consumer');
    const took = performance.now() - t0;
    assert.equal(up.close.code, 1001, `upstream close ${up.close.code} "${up.close.reason}"`);
    assert.ok(took > 900, `closed after ${took.toFixed(0)} ms, before the 1 s grace`);
    sock.resume();
    // reading again, the client gets the queued data and then the 1008
    const c = await readClose(reader, 8000);
    t.diagnostic(`upstream closed after ${took.toFixed(0)} ms; client got ${c?.code} "${c?.reason}" after ${c?.skipped.length} frames`);
    assert.ok(c, 'no close frame for the client (TCP ended)');
    assert.equal(c.code, 1008, `client close ${c.code} "${c.reason}"`);
    assert.match(gw.log(), /policy slow_consumer \(route slow, upstream to client\)/);
    sock.destroy();
  });
});

/* ---------------------------------------------------------------------------------------------
 * accounting */

describe('accounting', () => {
  test('/metrics counts each violation by route, rule and direction (exact counts); the log names the client', T, async () => {
    const adminPort = await freePort();
    const conf = writeConf('policy-metrics.conf', `
upstream ${raw.addr}
admin 127.0.0.1:${adminPort}
route metered {
    path /metered/
    client_max_frame 2k
    upstream_max_frame 1k
    origins https://ok.example.com
}
route rc {
    path /rc/
    rate_messages 2
    rate_messages_burst 2
    rate_action close
}
route tr {
    path /tr/
    rate_messages 20
    rate_messages_burst 1
}
`);
    const g = await startGateway(['-c', conf]);
    const closeOf = async (p, frames) => {
      const { sock, reader } = await open(g.port, p);
      sock.write(Buffer.concat(frames.map((f) => buildFrame(f))));
      const c = await readClose(reader, 5000);
      sock.destroy();
      return c;
    };
    // 3 client frames over client_max_frame
    for (let i = 0; i < 3; i++) assert.equal((await closeOf(`/metered/c${i}`, [{ opcode: OP.BIN, payload: Buffer.alloc(3000) }]))?.code, 1009);
    // 1 upstream frame over upstream_max_frame (the echo of 1500 bytes)
    assert.equal((await closeOf('/metered/u', [{ opcode: OP.BIN, payload: Buffer.alloc(1500) }]))?.code, 1001);
    // 2 refused Origins, 1 accepted
    for (const o of ['https://evil.example.com', 'http://ok.example.com']) {
      const u = await wsUpgrade(g.port, { path: '/metered/o', headers: { Origin: o } });
      assert.equal(u.res.status, 403);
      u.sock.destroy();
    }
    (await open(g.port, '/metered/ok', { headers: { Origin: 'https://ok.example.com' } })).sock.destroy();
    // 2 rate closes
    for (let i = 0; i < 2; i++) {
      const c = await closeOf(`/rc/${i}`, [0, 1, 2].map((j) => ({ opcode: OP.TEXT, payload: `r${j}` })));
      assert.equal(c?.code, 1008);
    }
    // throttled (not a violation, but counted)
    const t = await open(g.port, '/tr/x');
    t.sock.write(Buffer.concat([0, 1, 2, 3].map((j) => buildFrame({ opcode: OP.TEXT, payload: `t${j}` }))));
    for (let j = 0; j < 4; j++) await readFrame(t.reader);
    t.sock.destroy();

    const want = {
      'metered/max_frame/client_to_upstream': 3,
      'metered/max_frame/upstream_to_client': 1,
      'metered/origin/client_to_upstream': 2,
      'rc/rate_messages/client_to_upstream': 2,
    };
    const scrape = async () => { const r = await getText(adminPort, '/metrics'); assert.equal(r.status, 200); return policyEvents(r.body); };
    await waitFor(async () => { const ev = await scrape(); return Object.entries(want).every(([k, v]) => (ev[k] || 0) >= v); }, 3000, 'the counters');
    await sleep(200);
    const ev = await scrape();
    const { 'tr/throttled/client_to_upstream': throttled, ...rest } = ev;
    assert.deepEqual(rest, want, `policy events: ${JSON.stringify(ev)}`);
    assert.ok(throttled >= 1, `throttled: ${throttled}`);
    const log = g.log();
    assert.match(log, /127\.0\.0\.1[^\n]*policy origin \(route metered, client to upstream\)/);
    assert.match(log, /127\.0\.0\.1[^\n]*policy rate_messages \(route rc, client to upstream\)/);
    await g.stop();
  });
});
