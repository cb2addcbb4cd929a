// Graceful drain and connection caps: SIGTERM closes WebSockets with 1001 spread over
// drain_spread (no reconnect storm, no TCP reset) and the process exits in time; connections
// above max_connections_per_ip are closed at accept while other addresses are served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import WebSocket from 'ws';
import { startGateway, startWsEcho, cleanup, waitFor, withTimeout, mapLimit } from './lib.mjs';

const T = { timeout: 60000 };
let echo;

before(async () => {
  echo = await startWsEcho({ perMessageDeflate: false });
});
after(cleanup);

test('SIGTERM: 300 WebSockets get 1001 spread over drain_spread, none sees a reset, exit in time', T, async (t) => {
  const gw = await startGateway(['--upstream', echo.addr, '--workers', '2', '--drain_spread', '2s',
    '--drain_timeout', '4s', '--ping_interval', '0', '--access_log', 'off']);
  const N = 300;
  const clients = await mapLimit([...Array(N).keys()], 50, (i) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/`, { rejectUnauthorized: false,
      localAddress: `127.0.${1 + (i >> 7)}.${1 + (i & 127)}` });
    const rec = { ws, code: null, at: 0, error: null };
    ws.on('close', (code) => { rec.code = code; rec.at = Date.now(); });
    ws.on('error', (e) => { rec.error = e.code || e.message; });
    ws.once('open', () => resolve(rec));
    ws.once('unexpected-response', () => reject(new Error('upgrade refused')));
    setTimeout(() => reject(new Error('open timeout')), 10000);
  }));
  const t0 = Date.now();
  gw.proc.kill('SIGTERM');
  await waitFor(() => clients.every((c) => c.code !== null), 8000, 'every client closed');
  const exit = await withTimeout(gw.proc.exited, 6000, 'wsgate exit after SIGTERM');
  const exitAfter = Date.now() - t0;
  assert.equal(exit.code, 0);
  assert.ok(exitAfter < 5000, `exited ${exitAfter} ms after SIGTERM (drain_timeout 4s)`);
  const codes = new Map();
  for (const c of clients) codes.set(c.code, (codes.get(c.code) || 0) + 1);
  assert.deepEqual([...codes], [[1001, N]], `close codes: ${JSON.stringify([...codes])}`);
  const errors = clients.filter((c) => c.error);
  assert.equal(errors.length, 0, `errors (resets): ${errors.slice(0, 5).map((c) => c.error)}`);
  const at = clients.map((c) => c.at - t0).sort((a, b) => a - b);
  const span = at[N - 1] - at[0];
  /* uniform over 2 s: the span is near 2 s and no 200 ms bin holds more than a quarter */
  const bins = new Array(20).fill(0);
  for (const v of at) bins[Math.min(19, Math.floor(v / 200))]++;
  t.diagnostic(`closes from ${at[0]} to ${at[N - 1]} ms after SIGTERM; per 200 ms: ${bins.join(' ')}`);
  assert.ok(span > 1200 && at[N - 1] < 3500, `closes spanned ${span} ms (${at[0]}..${at[N - 1]})`);
  assert.ok(Math.max(...bins) < N / 4, `a 200 ms bin held ${Math.max(...bins)} of ${N} closes`);
});

test('max_connections_per_ip: the 4th connection from one address is closed, others are served', T, async () => {
  const gw = await startGateway(['--upstream', echo.addr, '--max_connections_per_ip', '3']);
  const open = (addr) => new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: gw.port, localAddress: addr, rejectUnauthorized: false,
      servername: 'localhost' });
    s.once('secureConnect', () => resolve({ ok: true, s }));
    s.once('error', (e) => resolve({ ok: false, err: e.code || e.message }));
    s.once('close', () => resolve({ ok: false, err: 'closed' }));
  });
  const held = [];
  for (let i = 0; i < 3; i++) {
    const r = await open('127.0.9.9');
    assert.ok(r.ok, `connection ${i + 1} from 127.0.9.9: ${r.err}`);
    held.push(r.s);
  }
  const fourth = await open('127.0.9.9');
  assert.equal(fourth.ok, false, 'the 4th connection from 127.0.9.9 completed a handshake');
  const other = await open('127.0.9.10');
  assert.ok(other.ok, `127.0.9.10 was refused: ${other.err}`);
  other.s.destroy();
  held[0].destroy();
  await waitFor(async () => (await open('127.0.9.9')).ok, 5000, 'a slot frees when a connection closes');
  for (const s of held) s.destroy();
});
