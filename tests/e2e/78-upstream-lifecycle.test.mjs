// Upstream lifecycle (issue 15): draining one socket.io upstream over the admin endpoint moves
// its clients with 1001 spread over the window while the others are untouched; weight 0 and
// ready; keep-alive HTTP leaves a draining upstream after the current exchange; bad requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import path from 'node:path';
import WebSocket from 'ws';
import {
  startGateway, startChat, httpsRequest, adminRequest, cleanup, onCleanup, freePort, waitFor, sleep, mapLimit,
  loopbackAddresses, run, tmpDir, WSGATE,
} from './lib.mjs';

const CTL = path.join(path.dirname(WSGATE), 'wsgate-ctl');

const T = { timeout: 60000 };
let gw, chats, admin;
const byInstance = new Map(); // instance number -> upstream name

before(async () => {
  chats = await Promise.all([1, 2, 3, 4].map((n) => startChat(n)));
  for (const c of chats) byInstance.set(String(c.n), c.addr);
  admin = await freePort();
  gw = await startGateway([...chats.flatMap((c) => ['--upstream', c.addr]), '--workers', '2', '--admin',
    `127.0.0.1:${admin}`, '--ping_interval', '0', '--access_log', 'off']);
});
after(cleanup);

/** The upstream that serves plain HTTP from this local address now. */
async function upstreamOf(addr) {
  const res = await httpsRequest(gw.port, { path: '/whoami', localAddress: addr });
  assert.equal(res.status, 200, `GET /whoami from ${addr}: ${res.status}`);
  return byInstance.get(JSON.parse(res.body.toString()).instance);
}

/**
 * A socket.io (engine.io 4) session over a plain WebSocket, so that the close code and its time
 * are seen as they arrive: "0{...}" open, "40" connect, "2" ping -> "3" pong.
 */
function sioClient(addr) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/socket.io/?EIO=4&transport=websocket`,
      { rejectUnauthorized: false, localAddress: addr });
    const rec = { addr, ws, code: null, at: 0, error: null };
    ws.on('message', (d) => {
      const m = d.toString();
      if (m.startsWith('0')) ws.send('40');
      else if (m === '2') ws.send('3');
      else if (m.startsWith('40')) resolve(rec);
    });
    ws.on('close', (code) => { rec.code = code; rec.at = Date.now(); });
    ws.on('error', (e) => { rec.error = e.code || e.message; });
    ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    setTimeout(() => reject(new Error(`socket.io connect timeout from ${addr}`)), 10000);
    onCleanup(() => ws.terminate());
  });
}

async function upstreams() {
  const r = await adminRequest(admin, '/upstreams');
  assert.equal(r.status, 200);
  return JSON.parse(r.body).upstreams;
}

test('drain one of four socket.io upstreams: its 200-client share moves with 1001 spread over 5 s', T, async (t) => {
  const N = 200;
  const addrs = loopbackAddresses(N, 15);
  const clients = await mapLimit(addrs, 25, sioClient);
  const where = await mapLimit(addrs, 16, upstreamOf);
  await waitFor(async () => (await upstreams()).reduce((s, u) => s + u.sessions, 0) === N, 5000,
    'GET /upstreams counts every session');
  // the upstream with the most clients
  const count = new Map();
  for (const u of where) count.set(u, (count.get(u) || 0) + 1);
  const target = [...count].sort((a, b) => b[1] - a[1])[0][0];
  const mine = clients.filter((_, i) => where[i] === target);
  const others = clients.filter((_, i) => where[i] !== target);
  t.diagnostic(`clients per upstream: ${JSON.stringify([...count])}; draining ${target} (${mine.length})`);
  assert.ok(mine.length >= 20, `only ${mine.length} clients on the busiest upstream`);

  const t0 = Date.now();
  const r = await adminRequest(admin, `/upstreams/${target}/drain?spread=5s`, { method: 'POST' });
  assert.equal(r.status, 200, r.body);
  assert.equal(JSON.parse(r.body).state, 'draining');
  // new sessions from its clients' addresses go to their next-ranked upstream at once
  const moved = await mapLimit(mine.slice(0, 10).map((c) => c.addr), 5, upstreamOf);
  for (const u of moved) assert.notEqual(u, target);

  await waitFor(() => mine.every((c) => c.code !== null), 8000, 'every client of the draining upstream closed');
  const codes = new Map();
  for (const c of mine) codes.set(c.code, (codes.get(c.code) || 0) + 1);
  assert.deepEqual([...codes], [[1001, mine.length]], `close codes: ${JSON.stringify([...codes])}`);
  const at = mine.map((c) => c.at - t0).sort((a, b) => a - b);
  const bins = new Array(30).fill(0);
  for (const v of at) bins[Math.min(29, Math.floor(v / 200))]++;
  t.diagnostic(`closes from ${at[0]} to ${at[at.length - 1]} ms after the drain; per 200 ms: ${bins.join(' ')}`);
  assert.ok(at[at.length - 1] - at[0] > 3000 && at[at.length - 1] < 5800,
    `closes spanned ${at[0]}..${at[at.length - 1]} ms (spread 5 s)`);
  assert.ok(Math.max(...bins) <= mine.length / 4, `a 200 ms bin held ${Math.max(...bins)} of ${mine.length}`);

  // the others are untouched, nobody saw an abnormal close or a reset
  await sleep(300);
  assert.equal(others.filter((c) => c.code !== null).length, 0, 'sessions on other upstreams were closed');
  assert.equal(clients.filter((c) => c.code === 1006 || c.error).length, 0, 'a client saw 1006 or an error');

  // the moved clients reconnect, and every session ends on a healthy upstream
  const again = await mapLimit(mine.map((c) => c.addr), 25, sioClient);
  const list = await upstreams();
  const drained = list.find((u) => u.name === target);
  assert.equal(drained.state, 'draining');
  assert.equal(drained.sessions, 0, 'sessions left on the drained upstream');
  assert.equal(list.reduce((s, u) => s + u.sessions, 0), N);
  const after = await mapLimit(mine.map((c) => c.addr), 16, upstreamOf);
  for (const u of after) assert.notEqual(u, target);
  for (const c of [...again, ...others]) c.ws.close(1000);

  // ready: the first choice again, for new sessions
  assert.equal((await adminRequest(admin, `/upstreams/${target}/ready`, { method: 'POST' })).status, 200);
  assert.equal(await upstreamOf(mine[0].addr), target);
  await waitFor(async () => (await upstreams()).reduce((s, u) => s + u.sessions, 0) === 0, 5000, 'sessions end');
});

test('weight 0: no new sessions or requests, established ones kept; keep-alive HTTP leaves after its exchange', T, async () => {
  const addr = loopbackAddresses(1, 99)[0];
  const target = await upstreamOf(addr);
  const kept = await sioClient(addr);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, localAddress: addr, rejectUnauthorized: false });
  onCleanup(() => agent.destroy());
  const first = await httpsRequest(gw.port, { path: '/whoami', agent, localAddress: addr });
  assert.equal(byInstance.get(JSON.parse(first.body).instance), target);

  let r = await adminRequest(admin, `/upstreams/${target}/weight?w=0`, { method: 'POST' });
  assert.equal(r.status, 200, r.body);
  assert.equal((await upstreams()).find((u) => u.name === target).weight, 0);
  // the same kept-alive client connection: its next request goes elsewhere
  const second = await httpsRequest(gw.port, { path: '/whoami', agent, localAddress: addr });
  assert.notEqual(byInstance.get(JSON.parse(second.body).instance), target);
  assert.notEqual(await upstreamOf(addr), target);
  await sleep(300);
  assert.equal(kept.code, null, 'weight 0 closed an established session');

  // drain while a keep-alive connection is idle on it: the next request goes elsewhere too
  r = await adminRequest(admin, `/upstreams/${target}/weight?w=1`, { method: 'POST' });
  assert.equal(r.status, 200);
  agent.destroy(); // a kept-alive connection stays with its upstream while that one is up: a new one
  const agent2 = new https.Agent({ keepAlive: true, maxSockets: 1, localAddress: addr, rejectUnauthorized: false });
  onCleanup(() => agent2.destroy());
  const third = await httpsRequest(gw.port, { path: '/whoami', agent: agent2, localAddress: addr });
  assert.equal(byInstance.get(JSON.parse(third.body).instance), target);
  assert.equal((await adminRequest(admin, `/upstreams/${target}/drain?spread=0`, { method: 'POST' })).status, 200);
  await waitFor(() => kept.code !== null, 3000, 'spread 0 closes at once');
  assert.equal(kept.code, 1001);
  const fourth = await httpsRequest(gw.port, { path: '/whoami', agent: agent2, localAddress: addr });
  assert.equal(agent2.totalSocketCount, 1, 'the client connection was kept');
  assert.notEqual(byInstance.get(JSON.parse(fourth.body).instance), target);
  assert.equal((await adminRequest(admin, `/upstreams/${target}/ready`, { method: 'POST' })).status, 200);
});

test('admin /upstreams: unknown upstream or bad address 404, bad query 400, wrong method 405', T, async () => {
  const name = chats[0].addr;
  const cases = [
    ['POST', '/upstreams/127.0.0.1:1/drain', 404],
    ['POST', '/upstreams/not-an-address/ready', 404],
    ['POST', '/upstreams//drain', 404],
    ['POST', '/upstreams/', 404],
    ['POST', `/upstreams/${name}/explode`, 404],
    ['POST', `/upstreams/${name}`, 404],
    ['POST', `/upstreams/${name}/drain?spread=soon`, 400],
    ['POST', `/upstreams/${name}/drain?spread=2h`, 400],
    ['POST', `/upstreams/${name}/weight`, 400],
    ['POST', `/upstreams/${name}/weight?w=101`, 400],
    ['POST', `/upstreams/${name}/weight?w=-1`, 400],
    ['POST', `/upstreams/${name}/weight?w=1x`, 400],
    ['GET', `/upstreams/${name}/drain`, 405],
    ['POST', '/upstreams', 405],
  ];
  for (const [method, p, want] of cases) {
    const r = await adminRequest(admin, p, { method });
    assert.equal(r.status, want, `${method} ${p}: ${r.status} ${r.body}`);
  }
  // nothing above changed any upstream
  for (const u of await upstreams()) {
    assert.equal(u.state, 'up', JSON.stringify(u));
    assert.equal(u.weight, 1);
  }
});

test('wsgate-ctl: every command and its exit code (0 done, 1 usage, 2 not found/refused, 3 cannot connect)', T, async () => {
  const name = chats[1].addr;
  const ctl = (...args) => run(CTL, ['--admin', `127.0.0.1:${admin}`, ...args]);
  let r = await ctl('upstreams');
  assert.equal(r.code, 0, r.out);
  for (const c of chats) assert.match(r.out, new RegExp(`${c.addr.replace(/\./g, '\\.')}\\s+up\\s`));
  r = await ctl('upstreams', '--json');
  assert.equal(r.code, 0, r.out);
  assert.equal(JSON.parse(r.out).upstreams.length, 4);

  r = await ctl('drain', name, '--spread', '2s');
  assert.equal(r.code, 0, r.out);
  assert.equal((await upstreams()).find((u) => u.name === name).state, 'draining');
  r = await ctl('status');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^ready; upstreams: 3 up, 0 down, 1 draining, 0 weight 0;/);
  r = await ctl('ready', name);
  assert.equal(r.code, 0, r.out);
  r = await ctl('weight', name, '7');
  assert.equal(r.code, 0, r.out);
  assert.equal((await upstreams()).find((u) => u.name === name).weight, 7);
  r = await ctl('reload');
  assert.equal(r.code, 0, r.out);
  // a reload rebuilds the tables from the file (here: the command line): the weight is gone
  assert.equal((await upstreams()).find((u) => u.name === name).weight, 1);

  // not found or refused: 2
  for (const args of [['drain', '127.0.0.1:1'], ['ready', 'nosuchhost:80'], ['weight', '[::1]:9', '1']]) {
    r = await ctl(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.code} ${r.out}`);
    assert.match(r.out, /404/);
  }
  // usage: 1 (also a spread the gateway finds malformed)
  for (const args of [[], ['frob'], ['drain'], ['weight', name], ['weight', name, '101'], ['weight', name, 'x'],
    ['drain', name, '--spread'], ['drain', name, '--spread', 'soon'], ['drain', 'a b:1'], ['drain', '1.2.3.4:5/x'],
    ['upstreams', 'extra'], ['--bogus', 'status']]) {
    r = await ctl(...args);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.code} ${r.out}`);
  }
  r = await run(CTL, ['status']); // no --admin, no WSGATE_ADMIN
  assert.equal(r.code, 1, r.out);
  // cannot connect: 3
  const dir = tmpDir();
  r = await run(CTL, ['--admin', `unix:${dir}/none.sock`, 'status']);
  assert.equal(r.code, 3, r.out);
  r = await run(CTL, ['--admin', `127.0.0.1:${await freePort()}`, 'upstreams']);
  assert.equal(r.code, 3, r.out);
  for (const u of await upstreams()) assert.equal(u.state, 'up');
});
