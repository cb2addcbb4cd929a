// The fleet (issue 14): three gateways behind Debian's HAProxy (TCP mode, send-proxy-v2, round
// robin) sharing one real redis-server on loopback and one ticket key file; clients bound to
// distinct 127.x.y.z addresses. The client's own address reaches the upstream; one address lands on
// one upstream whichever gateway serves it; one address's per-IP message rate and connection count
// hold over the three gateways; a TLS session made on one gateway resumes on another; Redis killed
// mid-test: the gateways keep serving and count locally; Redis back: shared again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { WebSocketServer } from 'ws';
import {
  startGateway, startHttpEcho, cleanup, onCleanup, freePort, tcpAccepts, waitFor, tmpDir, spawnChild, stopChild,
  httpsRequest, wsUpgrade, adminRequest, loopbackAddresses, makeCert, sleep, buildFrame, OP, startHaproxy,
} from './lib.mjs';

const T = { timeout: 90000 };
const RATE = 40, BURST = 5, MAX_CONNS = 3;
let redisPort, redis, echoA, echoB, ws, gws = [], hap;

async function startRedis(port) {
  const proc = spawnChild('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no']);
  await waitFor(() => tcpAccepts(port), 10000, `redis-server:\n${proc.log()}`);
  return proc;
}

/** A WebSocket upstream that records when each message arrived, per connection path. */
async function startTimedWs() {
  const port = await freePort();
  const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
  const byPath = new Map();
  wss.on('connection', (sock, req) => {
    const rec = { times: [], headers: req.headers };
    byPath.set(req.url, rec);
    sock.on('message', (d) => { rec.times.push(performance.now()); sock.send(d); });
    sock.on('error', () => {});
  });
  await new Promise((r) => wss.once('listening', r));
  onCleanup(() => new Promise((r) => { for (const c of wss.clients) c.terminate(); wss.close(() => r()); }));
  return { addr: `127.0.0.1:${port}`, byPath };
}

async function metric(g, name) {
  const r = await adminRequest(g.admin, '/metrics');
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(r.body);
  return m ? Number(m[1]) : undefined;
}

before(async () => {
  redisPort = await freePort();
  redis = await startRedis(redisPort);
  echoA = await startHttpEcho();
  echoB = await startHttpEcho();
  ws = await startTimedWs();
  const dir = tmpDir();
  const keys = path.join(dir, 'tickets.key');
  fs.writeFileSync(keys, `${crypto.randomBytes(80).toString('base64')}\n`, { mode: 0o600 });
  const cert = makeCert('localhost', ['localhost']);
  const conf = path.join(dir, 'fleet.conf');
  fs.writeFileSync(conf, `upstream ${echoA.addr}
upstream ${echoB.addr}
cert ${cert.cert}
key ${cert.key}
ticket_key_file ${keys}
redis 127.0.0.1:${redisPort}
redis_sync 100ms
workers 2
route ws {
    path /ws/
    upstream ${ws.addr}
    ip_rate_messages ${RATE}
    ip_rate_messages_burst ${BURST}
    ip_max_conns ${MAX_CONNS}
}
`);
  for (let i = 0; i < 3; i++) {
    const pp = await freePort(), admin = await freePort();
    const g = await startGateway(['-c', conf, '--listen', `127.0.0.1:${pp} proxy_protocol`, '--admin', `127.0.0.1:${admin}`]);
    await waitFor(() => tcpAccepts(pp), 5000, 'proxy_protocol listener');
    gws.push({ ...g, pp, admin });
  }
  hap = await startHaproxy('fleet', gws.map((g) => `127.0.0.1:${g.pp} send-proxy-v2`));
  await waitFor(async () => (await Promise.all(gws.map((g) => metric(g, 'wsgate_redis_up')))).every((v) => v === 1),
    5000, 'wsgate_redis_up 1 on every gateway');
});
after(cleanup);

test('the client address reaches the upstream, and one address one upstream through any gateway', T, async () => {
  const addrs = loopbackAddresses(9, 74);
  let n = 0;
  for (const a of addrs) {
    const ups = new Set();
    for (let i = 0; i < 3; i++) { // round robin: three requests, three gateways
      const marker = `/fleet-${n++}`;
      const r = await httpsRequest(hap.port, { path: marker, localAddress: a });
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body.toString()).headers['x-forwarded-for'], a);
      ups.add(echoA.requests.some((q) => q.url === marker) ? 'A' : 'B');
    }
    assert.equal(ups.size, 1, `${a} reached both upstreams`);
  }
  for (const g of gws) assert.ok(addrs.some((a) => g.log().includes(`"${a}"`)), 'a gateway served none of them');
});

test('a TLS session made on one gateway resumes on the others', T, async () => {
  const connect = (session) => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: hap.port, servername: 'localhost', rejectUnauthorized: false, session });
    let sess;
    s.on('session', (x) => { sess = x; });
    s.once('secureConnect', async () => {
      await sleep(100); // TLS 1.3 tickets come after the handshake
      const reused = s.isSessionReused();
      s.destroy();
      resolve({ sess, reused });
    });
    s.once('error', reject);
  });
  const first = await connect();
  assert.ok(first.sess, 'no ticket');
  let sess = first.sess;
  for (let i = 0; i < 4; i++) { // round robin over three gateways: crosses all of them
    const r = await connect(sess);
    assert.equal(r.reused, true, `connection ${i + 2} not resumed`);
    sess = r.sess || sess;
  }
});

/** n WebSockets from addr through HAProxy (so spread over the gateways), each sending per messages. */
async function burstFrom(addr, n, per, tag) {
  const socks = [];
  for (let i = 0; i < n; i++) {
    const u = await wsUpgrade(hap.port, { path: `/ws/${tag}-${i}`, localAddress: addr });
    assert.equal(u.res.status, 101, u.res.rawHead);
    socks.push(u.sock);
  }
  await waitFor(() => socks.every((_, i) => ws.byPath.has(`/ws/${tag}-${i}`)), 3000, 'upstream sessions');
  await sleep(400); // a sync or two: every gateway knows the address
  const t0 = performance.now();
  socks.forEach((s, i) => s.write(Buffer.concat(Array.from({ length: per }, (_, j) => buildFrame({ opcode: OP.TEXT, payload: `${tag}${i}-${j}` })))));
  const recs = socks.map((_, i) => ws.byPath.get(`/ws/${tag}-${i}`));
  return { socks, recs, t0 };
}

test(`one address, 6 connections over 3 gateways, held to ip_rate_messages ${RATE}/s within 20%`, T, async (t) => {
  const PER = 30;
  const { socks, recs } = await burstFrom('127.77.0.1', 6, PER, 'rate');
  await waitFor(() => recs.reduce((s, r) => s + r.times.length, 0) >= 6 * PER, 20000,
    `all ${6 * PER} messages (have ${recs.reduce((s, r) => s + r.times.length, 0)})`);
  const times = recs.flatMap((r) => r.times).sort((a, b) => a - b);
  // after the three gateways' bursts: the steady fleet-wide rate
  const from = 3 * BURST + 10;
  const rate = (times.length - 1 - from) / ((times.at(-1) - times[from]) / 1000);
  t.diagnostic(`fleet-wide ${rate.toFixed(1)} msg/s (limit ${RATE}; each gateway alone would allow ${RATE})`);
  assert.ok(Math.abs(rate - RATE) <= RATE * 0.2, `fleet-wide rate ${rate.toFixed(1)} msg/s, want ${RATE} +-20%`);
  for (const s of socks) s.destroy();
});

test(`ip_max_conns ${MAX_CONNS} counts the connections on every gateway; Redis down: local; back: shared`, T, async () => {
  const addr = '127.78.0.1';
  const socks = [];
  for (let i = 0; i < MAX_CONNS; i++) {
    const u = await wsUpgrade(hap.port, { path: `/ws/mc-${i}`, localAddress: addr });
    assert.equal(u.res.status, 101);
    socks.push(u.sock);
  }
  await sleep(500);
  for (let i = 0; i < 3; i++) { // whichever gateway the next one reaches
    const u = await wsUpgrade(hap.port, { path: `/ws/mc-x${i}`, localAddress: addr });
    assert.equal(u.res.status, 429, `connection ${MAX_CONNS + 1 + i} from one address admitted (gateway ${i})`);
    u.sock.destroy();
  }
  const other = await wsUpgrade(hap.port, { path: '/ws/mc-other', localAddress: '127.78.0.2' });
  assert.equal(other.res.status, 101);
  other.sock.destroy();

  // Redis killed: every gateway keeps serving, and says it counts locally
  await stopChild(redis, 1000);
  await waitFor(async () => (await Promise.all(gws.map((g) => metric(g, 'wsgate_redis_up')))).every((v) => v === 0),
    5000, 'wsgate_redis_up 0 on every gateway');
  const r = await httpsRequest(hap.port, { path: '/while-redis-down', localAddress: '127.78.0.3' });
  assert.equal(r.status, 200);
  // once the others' counts are stale (2 s), each gateway admits up to ip_max_conns of its own
  await sleep(2500);
  const local = await wsUpgrade(hap.port, { path: '/ws/mc-local', localAddress: addr });
  assert.equal(local.res.status, 101, 'with Redis down a gateway holding one of the three should admit another');
  local.sock.destroy();
  await sleep(200);

  // Redis back on the same port: shared again
  redis = await startRedis(redisPort);
  await waitFor(async () => (await Promise.all(gws.map((g) => metric(g, 'wsgate_redis_up')))).every((v) => v === 1),
    15000, 'wsgate_redis_up 1 again (reconnect backoff is at most 5 s)');
  await sleep(500);
  for (let i = 0; i < 3; i++) {
    const u = await wsUpgrade(hap.port, { path: `/ws/mc-y${i}`, localAddress: addr });
    assert.equal(u.res.status, 429, 'Redis back: the fleet-wide count again');
    u.sock.destroy();
  }
  for (const s of socks) s.destroy();
  for (const g of gws) assert.match(g.log(), /redis 127\.0\.0\.1:\d+: .*count locally/, g.log().split("\n").filter((l) => /redis/.test(l)).join("\n"));
});

test('a gateway that crashes holding connections is forgotten; redis_password', T, async () => {
  // two direct gateways on their own Redis with a password, ip_max_conns 2
  const port = await freePort();
  const pr = spawnChild('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--requirepass', 's3cret']);
  await waitFor(() => tcpAccepts(port), 10000, 'redis-server with a password');
  const cert = makeCert('localhost', ['localhost']);
  const base = ['--cert', cert.cert, '--key', cert.key, '--upstream', ws.addr, '--ip_max_conns', '2',
    '--redis', `127.0.0.1:${port}`];
  const a1 = await freePort(), a2 = await freePort(), a3 = await freePort();
  const g1 = await startGateway([...base, '--redis_password', 's3cret', '--admin', `127.0.0.1:${a1}`]);
  const g2 = await startGateway([...base, '--redis_password', 's3cret', '--admin', `127.0.0.1:${a2}`]);
  const wrong = await startGateway([...base, '--redis_password', 'nope', '--admin', `127.0.0.1:${a3}`]);
  const up = async (admin) => metric({ admin }, 'wsgate_redis_up');
  await waitFor(async () => await up(a1) === 1 && await up(a2) === 1, 5000, 'the two with the password connected');
  await waitFor(() => /redis 127\.0\.0\.1:\d+: AUTH refused, per-IP limits count locally: WRONGPASS/.test(wrong.log()), 5000,
    `the wrong password logged:\n${wrong.log()}`);
  assert.equal(await up(a3), 0);
  const addr = '127.79.0.1';
  const held = [];
  for (let i = 0; i < 2; i++) {
    const u = await wsUpgrade(g1.port, { path: `/crash-${i}`, localAddress: addr });
    assert.equal(u.res.status, 101);
    held.push(u.sock);
  }
  await sleep(500);
  // g2 has never seen the address: it learns the fleet's count at its first sync of it, so its
  // first connection may pass (the documented overshoot: one per gateway, one interval); after
  // that sync it counts g1's two
  const firstOnG2 = await wsUpgrade(g2.port, { path: '/crash-first', localAddress: addr });
  held.push(firstOnG2.sock);
  await sleep(500);
  const refused = await wsUpgrade(g2.port, { path: '/crash-x', localAddress: addr });
  assert.equal(refused.res.status, 429, 'g2 must count the two connections held on g1');
  refused.sock.destroy();
  g1.proc.kill('SIGKILL'); // crashes with its two connections counted in Redis
  await g1.proc.exited;
  // its count is believed for max(2 s, 10 x redis_sync), then forgotten
  await waitFor(async () => {
    const u = await wsUpgrade(g2.port, { path: '/crash-y', localAddress: addr });
    u.sock.destroy();
    return u.res.status === 101;
  }, 6000, 'g2 admits again once the crashed gateway\'s count is stale', 500);
  for (const s of held) s.destroy();
});
