// Abuse resistance, bounded for a 2-core machine (the whole file takes well under a minute):
//   - 500 slowloris connections (TLS done, a request head dribbled a line at a time) while 20
//     normal clients are served; with header_timeout 2s every slowloris connection is closed
//     (408 or a bare close) about 2 s after its handshake
//   - 3,000 connects in a burst (half plain TCP that never speaks, half full TLS handshakes, 200
//     attempts in flight, all held open at once), the gateway keeps serving, then all are closed
//     and the gateway's descriptor count (/proc/PID/fd) returns to its baseline
//   - TCP resets (SO_LINGER 0: socket.resetAndDestroy()) mid-handshake, mid-request, mid-body,
//     mid-frame and mid-response; other clients are unaffected; descriptors return to baseline
//   - a TLS handshake that never completes is closed after handshake_timeout
// Counts are scaled down if the descriptor limit (`ulimit -n`) is too low for them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import {
  startGateway, startHttpEcho, startWsEcho, cleanup, freePort, waitFor, sleep, tlsConnect, Reader,
  readResponse, wsUpgrade, buildFrame, readFrame, readClose, closePayload, OP, httpsRequest, mapLimit,
  adminRequest, fdCount, bigBody, tmpDir,
} from './lib.mjs';

const T = { timeout: 90000 };
const FD_LIMIT = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()) || 1024;
let httpUp, wsUp, clientHello, confs = 0;

/** Every gateway descriptor, with what it points to, for failure messages. */
function fdDump(pid) {
  const kinds = {};
  try {
    for (const fd of execFileSync('ls', [`/proc/${pid}/fd`], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
      let k;
      try { k = execFileSync('readlink', [`/proc/${pid}/fd/${fd}`], { encoding: 'utf8' }).trim().replace(/\[\d+\]$/, ''); } catch { k = '?'; }
      kinds[k] = (kinds[k] || 0) + 1;
    }
  } catch { /* gone */ }
  return JSON.stringify(kinds);
}

/** Waits until the gateway's descriptor count is back to base (polling), asserts it. */
async function fdsBackTo(gw, base, what, ms = 8000) {
  let n = -1;
  try {
    await waitFor(() => { n = fdCount(gw.proc.pid); return n <= base; }, ms, what, 100);
  } catch {
    assert.fail(`${what}: wsgate holds ${n} descriptors, baseline ${base}: ${fdDump(gw.proc.pid)}\n${gw.log().slice(-3000)}`);
  }
  return n;
}

/** A normal client: one HTTP request and one WebSocket echo, both must be right. */
async function normalClient(port, i) {
  const r = await httpsRequest(port, { path: `/normal/${i}`, timeout: 10000 });
  assert.equal(r.status, 200, `normal client ${i}: HTTP ${r.status}`);
  assert.equal(JSON.parse(r.body).url, `/normal/${i}`);
  const { sock, reader, res } = await wsUpgrade(port, { path: `/ws/normal/${i}` });
  assert.equal(res.status, 101, `normal client ${i}: upgrade ${res.status}`);
  sock.write(buildFrame({ opcode: OP.TEXT, payload: `hello ${i}` }));
  const f = await readFrame(reader, 10000);
  assert.equal(f.payload.toString(), `hello ${i}`);
  sock.write(buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }));
  const c = await readClose(reader, 10000);
  assert.equal(c?.code, 1000);
  sock.destroy();
}

/** A gateway that proxies HTTP to the echo and WebSocket to the ws echo by path (/ws/). */
async function gateway(extra = []) {
  const conf = path.join(tmpDir(), `abuse-${++confs}.conf`);
  fs.writeFileSync(conf, `upstream ${httpUp.addr}\nroute ws {\n    path /ws/\n    upstream ${wsUp.addr}\n}\n`);
  const adminPort = await freePort();
  const gw = await startGateway(['-c', conf, '--workers', '2', '--access_log', 'off', '--ping_interval', '0',
    '--admin', `127.0.0.1:${adminPort}`, ...extra]);
  gw.adminPort = adminPort;
  // warm up (lazy allocations, first upstream connects), then the baseline
  await normalClient(gw.port, 'warmup');
  await waitFor(async () => {
    const m = (await adminRequest(adminPort, '/metrics')).body;
    return [...m.matchAll(/^wsgate_connections\{state="[^"]+"\} (\d+)$/gm)].every((x) => x[1] === '0');
  }, 5000, 'the warm-up connections to close');
  await sleep(200);
  gw.baseFds = fdCount(gw.proc.pid);
  return gw;
}

async function metric(gw, re) {
  const m = (await adminRequest(gw.adminPort, '/metrics')).body;
  const x = re.exec(m);
  return x ? Number(x[1]) : undefined;
}

before(async () => {
  httpUp = await startHttpEcho();
  wsUp = await startWsEcho({ perMessageDeflate: false });
  // a real ClientHello, captured once, for the raw mid-handshake cases
  const port = await freePort();
  const srv = net.createServer();
  const got = new Promise((resolve) => srv.on('connection', (s) => { s.once('data', (d) => { resolve(Buffer.from(d)); s.destroy(); }); s.on('error', () => {}); }));
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  c.on('error', () => {});
  clientHello = await got;
  c.destroy();
  srv.close();
});
after(cleanup);

test('500 slowloris connections are closed after header_timeout while 20 normal clients are served', T, async (t) => {
  const N = Math.min(500, Math.floor((FD_LIMIT - 300) / 2));
  const gw = await gateway(['--header_timeout', '2s']);
  const slow = [];
  const opened = await mapLimit([...Array(N).keys()], 100, async (i) => {
    const sock = await tlsConnect(gw.port);
    const rec = { sock, at: Date.now(), closedAt: 0, data: '', i };
    sock.on('data', (d) => { rec.data += d.toString('latin1'); });
    sock.on('error', () => {});
    sock.on('close', () => { rec.closedAt = Date.now(); });
    sock.write('GET /slow HTTP/1.1\r\nHost: localhost\r\n');
    slow.push(rec);
    return rec;
  });
  assert.equal(opened.length, N);
  // dribble one header line every 300 ms to every connection still open
  let k = 0;
  const drip = setInterval(() => {
    k++;
    for (const r of slow) if (!r.closedAt && !r.sock.destroyed) r.sock.write(`X-Drip-${k}: ${'a'.repeat(10)}\r\n`);
  }, 300);
  try {
    // meanwhile, 20 normal clients, 5 at a time
    const t0 = Date.now();
    await mapLimit([...Array(20).keys()], 5, (i) => normalClient(gw.port, i));
    t.diagnostic(`20 normal clients served in ${Date.now() - t0} ms with ${slow.filter((r) => !r.closedAt).length} slowloris connections open`);
    await waitFor(() => slow.every((r) => r.closedAt), 10000, 'every slowloris connection closed');
  } finally {
    clearInterval(drip);
  }
  const lifetimes = slow.map((r) => r.closedAt - r.at).sort((a, b) => a - b);
  t.diagnostic(`slowloris lifetimes: min ${lifetimes[0]} ms, median ${lifetimes[N >> 1]} ms, max ${lifetimes[N - 1]} ms`);
  const answers = {};
  for (const r of slow) {
    const st = /^HTTP\/1\.1 (\d{3})/.exec(r.data)?.[1] || (r.data ? 'garbage' : 'close');
    answers[st] = (answers[st] || 0) + 1;
  }
  t.diagnostic(`slowloris answers: ${JSON.stringify(answers)}`);
  assert.deepEqual(Object.keys(answers).filter((a) => a !== '408' && a !== 'close'), [], `answers other than 408 or close: ${JSON.stringify(answers)}`);
  assert.ok(lifetimes[0] >= 1800, `a slowloris connection was closed after ${lifetimes[0]} ms (header_timeout 2s)`);
  assert.ok(lifetimes[N - 1] <= 4500, `a slowloris connection lived ${lifetimes[N - 1]} ms (header_timeout 2s)`);
  for (const r of slow) r.sock.destroy();
  await fdsBackTo(gw, gw.baseFds, 'descriptors after the slowloris connections');
});

test('3,000 connects in a burst: served meanwhile, then descriptors return to the baseline', T, async (t) => {
  const N = Math.min(3000, Math.floor((FD_LIMIT - 400) / 1));
  assert.ok(N >= 1000, `descriptor limit ${FD_LIMIT} too low for the burst`);
  const gw = await gateway();
  t.diagnostic(`wsgate baseline ${gw.baseFds} descriptors; burst of ${N} (ulimit -n ${FD_LIMIT})`);
  const socks = [];
  const fails = {};
  const t0 = Date.now();
  await mapLimit([...Array(N).keys()], 200, (i) => new Promise((resolve) => {
    const plain = i % 2 === 0;
    const s = plain ? net.connect({ host: '127.0.0.1', port: gw.port })
      : tls.connect({ host: '127.0.0.1', port: gw.port, servername: 'localhost', rejectUnauthorized: false });
    socks.push(s);
    const to = setTimeout(() => { fails.timeout = (fails.timeout || 0) + 1; resolve(); }, 15000);
    s.once(plain ? 'connect' : 'secureConnect', () => { clearTimeout(to); resolve(); });
    s.on('error', (e) => { clearTimeout(to); fails[e.code || e.message] = (fails[e.code || e.message] || 0) + 1; resolve(); });
  }));
  const took = Date.now() - t0;
  const held = fdCount(gw.proc.pid);
  t.diagnostic(`${N} connects in ${took} ms; wsgate holds ${held} descriptors; failures ${JSON.stringify(fails)}`);
  assert.deepEqual(fails, {}, 'connect or handshake failures in the burst');
  assert.ok(held >= gw.baseFds + N * 0.9, `wsgate holds ${held} descriptors with ${N} connections open`);
  // still serving, with all of them open
  await mapLimit([...Array(5).keys()], 5, (i) => normalClient(gw.port, `burst-${i}`));
  assert.equal(await metric(gw, /^wsgate_connections_accepted_total (\d+)$/m) >= N, true);
  for (const s of socks) s.destroy();
  const n = await fdsBackTo(gw, gw.baseFds, 'descriptors after the burst was closed', 15000);
  t.diagnostic(`back to ${n} descriptors`);
  await normalClient(gw.port, 'after-burst');
});

test('resets mid-handshake, mid-request, mid-body, mid-frame and mid-response: others unaffected, descriptors back', T, async (t) => {
  const gw = await gateway();
  const R = 40; // of each kind, concurrently
  const rawTo = () => new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: gw.port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  const tlsOver = async () => {
    const raw = await rawTo();
    const s = tls.connect({ socket: raw, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    await new Promise((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject); });
    s.on('error', () => {});
    raw.on('error', () => {});
    return { raw, s, reader: new Reader(s) };
  };
  const kinds = {
    // half a ClientHello, then RST
    'half ClientHello': async () => {
      const raw = await rawTo();
      raw.on('error', () => {});
      raw.write(clientHello.subarray(0, clientHello.length >> 1));
      await sleep(20);
      raw.resetAndDestroy();
    },
    // a whole ClientHello; RST once the server's flight arrives (the server waits for Finished)
    'after ServerHello': async () => {
      const raw = await rawTo();
      raw.on('error', () => {});
      const got = new Promise((r) => { raw.once('data', r); setTimeout(r, 3000); });
      raw.write(clientHello);
      await got;
      raw.resetAndDestroy();
    },
    'mid request head': async () => {
      const { raw, s } = await tlsOver();
      s.write('GET /reset HTTP/1.1\r\nHost: localhost\r\nX-Half: ');
      await sleep(20);
      raw.resetAndDestroy();
    },
    'mid request body': async () => {
      const { raw, s } = await tlsOver();
      s.write('POST /reset HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n');
      s.write(Buffer.alloc(30000, 0x61));
      await sleep(30);
      raw.resetAndDestroy();
    },
    'mid response': async () => {
      const { raw, s, reader } = await tlsOver();
      s.write('GET /big?n=20000000 HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await reader.read(100000, 10000);
      raw.resetAndDestroy();
    },
    'mid frame': async () => {
      const { raw, s, reader } = await tlsOver();
      s.write(`GET /ws/reset HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${Buffer.alloc(16, 1).toString('base64')}\r\n\r\n`);
      const res = await readResponse(reader, { head: true });
      assert.equal(res.status, 101);
      const f = buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(50000, 2) });
      s.write(f.subarray(0, 20000));
      await sleep(30);
      raw.resetAndDestroy();
    },
    'mid close handshake': async () => {
      const { raw, s, reader } = await tlsOver();
      s.write(`GET /ws/reset2 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${Buffer.alloc(16, 2).toString('base64')}\r\n\r\n`);
      const res = await readResponse(reader, { head: true });
      assert.equal(res.status, 101);
      s.write(buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000).subarray(0, 1) })); // bad close payload: the gateway closes 1002
      await sleep(10);
      raw.resetAndDestroy();
    },
  };
  const errors = [];
  const t0 = Date.now();
  // every kind at once, with normal clients in the middle of it
  const normal = mapLimit([...Array(10).keys()], 3, (i) => normalClient(gw.port, `reset-${i}`));
  await Promise.all(Object.entries(kinds).map(([name, fn]) => mapLimit([...Array(R).keys()], 10, async () => {
    try { await fn(); } catch (e) { errors.push(`${name}: ${e.message}`); }
  })));
  await normal;
  t.diagnostic(`${R} resets of each of ${Object.keys(kinds).length} kinds in ${Date.now() - t0} ms`);
  assert.deepEqual(errors.slice(0, 5), [], `client-side errors setting up the resets (${errors.length})`);
  await fdsBackTo(gw, gw.baseFds, 'descriptors after the resets', 10000);
  // the upstreams are not left with half-open connections either
  await waitFor(() => wsUp.conns.every((c) => c.closed), 5000, 'every upstream WebSocket closed');
  await mapLimit([...Array(5).keys()], 5, (i) => normalClient(gw.port, `after-reset-${i}`));
  const body = bigBody(1 << 20);
  const r = await httpsRequest(gw.port, { path: `/big?n=${body.length}` });
  assert.equal(r.status, 200);
  assert.ok(r.body.equals(body), 'a 1 MiB response after the resets arrives intact');
});

test('a TLS handshake that never completes is closed after handshake_timeout', T, async (t) => {
  const gw = await gateway(['--handshake_timeout', '1s']);
  const before = await metric(gw, /^wsgate_tls_handshakes_total\{result="timeout"\} (\d+)$/m);
  const open = (what, bytes) => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: gw.port });
    const rec = { what, at: 0, closedAt: 0, error: null };
    s.on('connect', () => { rec.at = Date.now(); if (bytes) s.write(bytes); });
    s.on('data', () => {});
    s.on('error', (e) => { rec.error = e.code; });
    s.on('close', () => { rec.closedAt = Date.now(); resolve(rec); });
    setTimeout(() => { s.destroy(); }, 6000);
  });
  const recs = await Promise.all([
    open('silent', null),
    open('half ClientHello', clientHello.subarray(0, 40)),
    // a complete ClientHello, then nothing: the server waits for the client's Finished
    open('no Finished', clientHello),
  ]);
  for (const r of recs) {
    const life = r.closedAt - r.at;
    t.diagnostic(`${r.what}: closed after ${life} ms${r.error ? ` (${r.error})` : ''}`);
    assert.ok(life >= 900 && life <= 2500, `${r.what}: closed after ${life} ms (handshake_timeout 1s)`);
  }
  await waitFor(async () => (await metric(gw, /^wsgate_tls_handshakes_total\{result="timeout"\} (\d+)$/m)) - before === 3, 3000,
    'wsgate_tls_handshakes_total{result="timeout"} +3');
  await fdsBackTo(gw, gw.baseFds, 'descriptors after the handshake timeouts');
});
