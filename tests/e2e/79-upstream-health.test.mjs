// Active health checks (issue 15): an upstream whose health endpoint starts failing goes down
// after health_fall checks and new sessions avoid it, it comes back after health_rise; a hung
// endpoint times out without holding up the checks of the others; states are in /upstreams,
// /metrics and the log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  startGateway, httpsRequest, adminRequest, cleanup, onCleanup, freePort, waitFor, sleep, loopbackAddresses,
} from './lib.mjs';

const T = { timeout: 60000 };
let gw, admin, A, B;

/** An upstream whose /health answers as told: 'ok' 200, 'redirect' 302, 'fail' 503, 'hang' never. */
async function controllable(name) {
  const up = { name, mode: 'ok', checks: [], addr: '' };
  const socks = new Set();
  const server = http.createServer((req, res) => {
    if (req.url === '/health') {
      up.checks.push({ at: Date.now(), method: req.method, host: req.headers.host, ua: req.headers['user-agent'] });
      if (up.mode === 'hang') return; // holds the connection, answers nothing
      res.writeHead({ ok: 200, redirect: 302, fail: 503 }[up.mode], { 'content-type': 'text/plain' });
      res.end(up.mode);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ name }));
  });
  server.on('connection', (s) => { socks.add(s); s.on('close', () => socks.delete(s)); });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  up.addr = `127.0.0.1:${port}`;
  onCleanup(() => new Promise((r) => { for (const s of socks) s.destroy(); server.close(() => r()); }));
  return up;
}

before(async () => {
  A = await controllable('A');
  B = await controllable('B');
  admin = await freePort();
  gw = await startGateway(['--upstream', A.addr, '--upstream', B.addr, '--workers', '2', '--admin', `127.0.0.1:${admin}`,
    '--health_check', '/health', '--health_interval', '200ms', '--health_timeout', '300ms', '--health_rise', '2',
    '--health_fall', '3', '--access_log', 'off']);
});
after(cleanup);

async function served(addr) {
  const r = await httpsRequest(gw.port, { path: '/whoami', localAddress: addr });
  assert.equal(r.status, 200);
  return JSON.parse(r.body).name;
}
async function peer(up) {
  const r = await adminRequest(admin, '/upstreams');
  return JSON.parse(r.body).upstreams.find((u) => u.name === up.addr);
}
async function metrics() {
  return (await adminRequest(admin, '/metrics')).body;
}

test('a failing health endpoint: down after health_fall, avoided, back after health_rise', T, async () => {
  // an address whose first choice is A
  let addr;
  for (const a of loopbackAddresses(40, 7)) if (await served(a) === 'A') { addr = a; break; }
  assert.ok(addr, 'no address ranked to A');
  await waitFor(() => A.checks.length >= 2 && B.checks.length >= 2, 3000, 'checks on both upstreams');
  const c = A.checks[0];
  assert.equal(c.method, 'GET');
  assert.equal(c.host, A.addr);
  assert.equal(c.ua, 'wsgate-health');
  assert.equal((await peer(A)).health.active, 'up');
  // spacing: about one check per interval (200 ms), not a flood
  const n0 = A.checks.length;
  await sleep(1000);
  const per = A.checks.length - n0;
  assert.ok(per >= 3 && per <= 7, `${per} checks in 1 s at health_interval 200ms`);

  A.mode = 'fail';
  const failAt = A.checks.length; // the first check that will fail
  await waitFor(async () => (await peer(A)).health.active === 'down', 4000, 'A down');
  // exactly health_fall failed checks took it down (the state is published with the third)
  assert.match(gw.log(), /upstream 127\.0\.0\.1:\d+: down \(active check: 3 failed in a row, last: status 503\)/);
  assert.ok(A.checks.length - failAt >= 3, `down after ${A.checks.length - failAt} checks`);
  const p = await peer(A);
  assert.equal(p.state, 'down');
  assert.equal(p.health.last_status, 503);
  assert.equal(await served(addr), 'B', 'a new request went to the upstream that is down');
  assert.match(await metrics(), new RegExp(`wsgate_upstream_check_up\\{route="default",upstream="${A.addr}"\\} 0`));
  assert.match(await metrics(), new RegExp(`wsgate_upstream_up\\{route="default",upstream="${A.addr}"\\} 0`));

  // one good answer is not enough (rise 2): a 302 counts as up
  A.mode = 'redirect';
  const okAt = A.checks.length;
  await waitFor(async () => (await peer(A)).health.active === 'up', 4000, 'A up again');
  assert.ok(A.checks.length - okAt >= 2, `up after ${A.checks.length - okAt} checks (rise 2)`);
  assert.match(gw.log(), /upstream 127\.0\.0\.1:\d+: up \(active check: 2 passed in a row, last 302/);
  assert.equal(await served(addr), 'A');
  A.mode = 'ok';
});

test('a hung health endpoint times out (health_timeout) and never holds up the other checks', T, async () => {
  await waitFor(async () => (await peer(A)).health.active === 'up', 4000, 'A up');
  A.mode = 'hang';
  const t0 = Date.now();
  const b0 = (await peer(B)).health.checks;
  await waitFor(async () => (await peer(A)).health.active === 'down', 5000, 'hung A down');
  const took = Date.now() - t0;
  // three timeouts of 300 ms, checks 200 ms apart at best: no sooner than 0.9 s
  assert.ok(took >= 800, `down ${took} ms after hanging`);
  const a = await peer(A);
  assert.equal(a.health.last_status, -1);
  assert.ok(a.health.latency_ms >= 250 && a.health.latency_ms < 1000, `a timed-out check took ${a.health.latency_ms} ms`);
  assert.match(gw.log(), /down \(active check: 3 failed in a row, last: timed out waiting for the answer\)/);
  // B was checked all along at its own pace
  const b = await peer(B);
  assert.ok(b.health.checks - b0 >= Math.floor(took / 200) - 2, `B: ${b.health.checks - b0} checks in ${took} ms`);
  assert.equal(b.health.active, 'up');
  assert.ok(b.health.latency_ms < 200, `B's check took ${b.health.latency_ms} ms`);
  const m = await metrics();
  assert.match(m, new RegExp(`wsgate_upstream_checks_total\\{route="default",upstream="${A.addr}",result="failed"\\} [1-9]`));
  assert.match(m, /# TYPE wsgate_upstream_check_seconds gauge/);
  A.mode = 'ok';
  await waitFor(async () => (await peer(A)).health.active === 'up', 4000, 'A back');
});

test('per route group: a route with its own upstreams checks them with its own settings; the global group is unchecked', T, async () => {
  const G = await controllable('G');
  const R = await controllable('R');
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { tmpDir } = await import('./lib.mjs');
  const conf = path.join(tmpDir(), 'health-route.conf');
  fs.writeFileSync(conf, `upstream ${G.addr}
access_log off
route r {
    path /r/
    upstream ${R.addr}
    health_check /health
    health_interval 150ms
    health_timeout 300ms
    health_fall 2
    health_rise 1
}
`);
  const adm = await freePort();
  const g = await startGateway(['-c', conf, '--admin', `127.0.0.1:${adm}`]);
  await waitFor(() => R.checks.length >= 3, 3000, 'checks of the route\'s upstream');
  assert.equal(G.checks.length, 0, 'the global group has health_check off');
  R.mode = 'fail';
  const ups = async () => JSON.parse((await adminRequest(adm, '/upstreams')).body).upstreams;
  await waitFor(async () => (await ups()).find((u) => u.name === R.addr)?.health.active === 'down', 3000,
    'R down after health_fall 2');
  R.mode = 'ok';
  await waitFor(async () => (await ups()).find((u) => u.name === R.addr)?.health.active === 'up', 3000,
    'R up after health_rise 1');
  assert.equal(G.checks.length, 0);
  await g.stop();
});
