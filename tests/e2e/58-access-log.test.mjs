// Access log: one JSON line per HTTP request and per WebSocket session, progress lines for long
// sessions, and the file reopened on SIGUSR1 (logrotate).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { startGateway, startWsEcho, startHttpEcho, httpsRequest, tmpDir, cleanup, waitFor, sleep } from './lib.mjs';

const T = { timeout: 30000 };
let ws, http, gw, logPath;
const lines = () => fs.readFileSync(logPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

before(async () => {
  ws = await startWsEcho({ perMessageDeflate: false });
  http = await startHttpEcho();
  logPath = path.join(tmpDir(), 'access.log');
  const conf = path.join(tmpDir(), 'log.conf');
  fs.writeFileSync(conf, `upstream ${ws.addr}\nroute h {\n    path /http/\n    upstream ${http.addr}\n}\n`
    + `access_log ${logPath}\nsession_log_interval 1s\n`);
  gw = await startGateway(['-c', conf]);
});
after(cleanup);

test('an HTTP request and a WebSocket session each get one JSON line; long sessions get progress lines', T,
  async () => {
    const r = await httpsRequest(gw.port, { path: '/http/x?y=1' });
    assert.equal(r.status, 200);
    const c = new WebSocket(`wss://127.0.0.1:${gw.port}/ws`, { rejectUnauthorized: false, servername: 'log.test' });
    await new Promise((res, rej) => { c.once('open', res); c.once('error', rej); });
    const got = [];
    c.on('message', (d) => got.push(d));
    for (let i = 0; i < 3; i++) c.send(`m${i}`);
    await waitFor(() => got.length === 3, 5000, 'echoes');
    await sleep(2300);
    c.close(4000, 'done');
    await waitFor(() => lines().some((l) => l.type === 'ws'), 5000, 'the ws line');
    const all = lines();
    const h = all.find((l) => l.type === 'http');
    assert.equal(h.method, 'GET');
    assert.equal(h.target, '/http/x?y=1');
    assert.equal(h.status, 200);
    assert.equal(h.upstream, http.addr);
    assert.equal(h.client, '127.0.0.1');
    assert.match(h.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const progress = all.filter((l) => l.type === 'ws_progress');
    assert.ok(progress.length >= 2, `${progress.length} progress lines in 2.3 s at 1 s`);
    const w = all.find((l) => l.type === 'ws');
    assert.equal(w.sni, 'log.test');
    assert.equal(w.target, '/ws');
    assert.equal(w.upstream, ws.addr);
    assert.equal(w.c2u_messages, 3);
    assert.equal(w.u2c_messages, 3);
    assert.equal(w.c2u_bytes, 6 + 6); /* payload of every frame: 3 x 2 data bytes + the close (code + 'done') */
    assert.equal(w.close_by_client, 4000);
    assert.equal(w.close_by_upstream, 4000);
    assert.equal(all.filter((l) => l.type === 'ws').length, 1);
  });

test('SIGUSR1 reopens the access log (logrotate moves the file away first)', T, async () => {
  fs.renameSync(logPath, `${logPath}.1`);
  gw.proc.kill('SIGUSR1');
  await waitFor(() => /access log reopened/.test(gw.log()), 5000, 'the reopen');
  const r = await httpsRequest(gw.port, { path: '/http/after-rotate' });
  assert.equal(r.status, 200);
  await waitFor(() => fs.existsSync(logPath) && lines().some((l) => l.target === '/http/after-rotate'), 5000,
    'the line in the new file');
  assert.ok(!fs.readFileSync(`${logPath}.1`, 'utf8').includes('after-rotate'));
});
