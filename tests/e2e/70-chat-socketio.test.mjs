// The seed scenario: four socket.io chat instances (examples/chat) behind wsgate, driven by
// socket.io-client from many loopback addresses 127.a.b.c.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { io } from 'socket.io-client';
import {
  startGateway, startChat, httpsRequest, cleanup, onCleanup, waitFor, withTimeout, sleep, mapLimit, loopbackAddresses,
} from './lib.mjs';

const T = { timeout: 45000 };
let gw, chats;
const instanceCache = new Map();

before(async () => {
  chats = await Promise.all([1, 2, 3, 4].map((n) => startChat(n)));
  gw = await startGateway(chats.flatMap((c) => ['--upstream', c.addr]));
});
after(cleanup);

/** The instance number that serves GET /whoami from this local address. */
async function whoami(addr) {
  const res = await httpsRequest(gw.port, { path: '/whoami', localAddress: addr });
  assert.equal(res.status, 200, `GET /whoami from ${addr}: ${res.status}`);
  return JSON.parse(res.body.toString());
}
async function instanceOf(addr) {
  if (!instanceCache.has(addr)) instanceCache.set(addr, Number((await whoami(addr)).instance));
  return instanceCache.get(addr);
}
/** Addresses grouped by the instance that serves them (looks at up to n addresses). */
async function addressesByInstance(n = 48, seed = 11) {
  const addrs = loopbackAddresses(n, seed);
  const inst = await mapLimit(addrs, 8, instanceOf);
  const by = new Map();
  addrs.forEach((a, i) => { if (!by.has(inst[i])) by.set(inst[i], []); by.get(inst[i]).push(a); });
  return by;
}

/** A socket.io client through wsgate from a local address. Resolves once connected. */
async function chatClient(addr, opts = {}) {
  const agent = new https.Agent({ localAddress: addr, rejectUnauthorized: false });
  const socket = io(`https://localhost:${gw.port}`, {
    agent, localAddress: addr, rejectUnauthorized: false, reconnectionDelay: 200, reconnectionDelayMax: 1000,
    timeout: 5000, forceNew: true, ...opts,
  });
  socket.addr = addr;
  // the transport the session started with, and the one it upgraded to
  socket.firstTransport = socket.io.engine?.transport?.name;
  socket.io.engine?.on('upgrade', (tr) => { socket.upgradedTo = tr.name; });
  socket.got = [];
  socket.disconnects = [];
  socket.connects = 0;
  socket.on('chat message', (m) => socket.got.push(m));
  socket.on('disconnect', (reason) => socket.disconnects.push(reason));
  socket.on('connect', () => { socket.connects++; });
  onCleanup(() => { socket.close(); agent.destroy(); });
  await withTimeout(new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', (e) => reject(new Error(`connect_error from ${addr}: ${e.message}`)));
  }), 8000, `socket.io connect from ${addr}`);
  return socket;
}
const transportOf = (s) => s.io.engine.transport.name;

test('default transports: long-polling first, then upgraded to a WebSocket', T, async () => {
  const s = await chatClient('127.0.0.1');
  assert.equal(s.firstTransport, 'polling');
  await waitFor(() => transportOf(s) === 'websocket', 8000, 'upgrade to websocket');
  assert.equal(s.upgradedTo, 'websocket');
  s.emit('chat message', 'over-upgraded');
  await waitFor(() => s.got.includes('over-upgraded'), 5000, 'own message back');
  s.close();
});

test('websocket-only transport', T, async () => {
  const s = await chatClient('127.0.0.2', { transports: ['websocket'] });
  assert.equal(transportOf(s), 'websocket');
  s.emit('chat message', 'ws-only');
  await waitFor(() => s.got.includes('ws-only'), 5000, 'own message back');
  s.close();
});

test('polling-only transport', T, async () => {
  const s = await chatClient('127.0.0.3', { transports: ['polling'] });
  s.emit('chat message', 'polling-only');
  await waitFor(() => s.got.includes('polling-only'), 5000, 'own message back');
  assert.equal(transportOf(s), 'polling');
  s.close();
});

test('a message reaches exactly the clients of the same instance', T, async () => {
  const by = await addressesByInstance();
  const [x, xs] = [...by.entries()].find(([, a]) => a.length >= 2) || [];
  assert.ok(x, 'no instance got two of 48 addresses');
  const [y, ys] = [...by.entries()].find(([k]) => k !== x) || [];
  assert.ok(y, 'all 48 addresses landed on one instance');
  const sameAddr1 = await chatClient(xs[0]);
  const sameAddr2 = await chatClient(xs[0], { transports: ['websocket'] });
  const sameInst = await chatClient(xs[1], { transports: ['polling'] });
  const other = await chatClient(ys[0]);
  const mine = [sameAddr1, sameAddr2, sameInst];
  const msg = `hello instance ${x} ${Date.now()}`;
  sameAddr1.emit('chat message', msg);
  await waitFor(() => mine.every((s) => s.got.includes(msg)), 6000, 'delivery on the same instance');
  const msgY = `hello instance ${y} ${Date.now()}`;
  other.emit('chat message', msgY);
  await waitFor(() => other.got.includes(msgY), 6000, 'delivery to the other instance');
  await sleep(500);
  assert.ok(!other.got.includes(msg), `a client of instance ${y} got a message of instance ${x}`);
  for (const s of mine) assert.ok(!s.got.includes(msgY), `a client of instance ${x} got a message of instance ${y}`);
  for (const s of [...mine, other]) s.close();
});

test('256 client addresses: each sticks to one instance, all four are used, X-Forwarded-For is the address', { timeout: 90000 }, async () => {
  const addrs = loopbackAddresses(256, 2024);
  assert.equal(new Set(addrs.map((a) => a.split('.')[1])).size > 50, true);
  const results = await mapLimit(addrs, 12, async (addr) => {
    const seen = [];
    for (let i = 0; i < 2; i++) {
      const res = await httpsRequest(gw.port, { path: '/', localAddress: addr });
      assert.equal(res.status, 200);
      const m = /<title>Instance #(\d+)<\/title>/.exec(res.body.toString());
      assert.ok(m, `no title in the page for ${addr}`);
      seen.push(Number(m[1]));
    }
    const who = await whoami(addr);
    seen.push(Number(who.instance));
    assert.equal(who.headers['x-forwarded-for'], addr, `X-Forwarded-For for ${addr}`);
    assert.equal(who.headers['x-real-ip'], addr);
    assert.equal(who.headers['x-forwarded-proto'], 'https');
    return seen;
  });
  const moved = addrs.filter((a, i) => new Set(results[i]).size !== 1);
  assert.deepEqual(moved, [], `addresses that moved between instances: ${moved.slice(0, 5).map((a) => `${a} ${results[addrs.indexOf(a)]}`).join('; ')}`);
  const counts = [1, 2, 3, 4].map((n) => results.filter((r) => r[0] === n).length);
  for (const c of counts) assert.ok(c > 20, `uneven spread over the instances: ${counts}`);
});

test('one instance killed: its clients reconnect to a live instance, the others see no disconnect', { timeout: 60000 }, async () => {
  const by = await addressesByInstance(48, 99);
  const entries = [...by.entries()].filter(([, a]) => a.length >= 2);
  assert.ok(entries.length >= 2, 'need two instances with two addresses each');
  const [[victim, vAddrs], [survivor, sAddrs]] = entries;
  const victims = [await chatClient(vAddrs[0]), await chatClient(vAddrs[1], { transports: ['websocket'] })];
  const others = [await chatClient(sAddrs[0]), await chatClient(sAddrs[1], { transports: ['websocket'] })];
  await waitFor(() => transportOf(victims[0]) === 'websocket' && transportOf(others[0]) === 'websocket', 8000, 'upgrades');

  await chats[victim - 1].kill();
  instanceCache.clear();
  await waitFor(() => victims.every((s) => s.disconnects.length >= 1), 8000, 'victim clients notice the loss');
  await waitFor(() => victims.every((s) => s.connected && s.connects >= 2), 15000, 'victim clients reconnect');
  for (const s of victims) {
    const now = await instanceOf(s.addr);
    assert.notEqual(now, victim, `${s.addr} still routed to the dead instance`);
    const msg = `back from ${s.addr}`;
    s.emit('chat message', msg);
    await waitFor(() => s.got.includes(msg), 6000, `message after reconnection from ${s.addr}`);
  }
  // the other instance's clients never noticed
  const msg = `still here ${Date.now()}`;
  others[0].emit('chat message', msg);
  await waitFor(() => others.every((s) => s.got.includes(msg)), 6000, 'survivor delivery');
  for (const s of others) {
    assert.deepEqual(s.disconnects, [], `${s.addr} (instance ${survivor}) was disconnected`);
    assert.equal(s.connects, 1);
  }
  for (const s of [...victims, ...others]) s.close();
});
