// Cookie affinity (issue 14): `affinity cookie`. The first response sets an HMAC-signed token
// naming the upstream; later requests and upgrades carrying it go there whatever their address
// and whichever gateway of the fleet (same affinity_key_file) serves them; forged, expired and
// foreign tokens fall back to the IP hash and are counted. The tokens are made here with Node's
// crypto from the documented layout (gateway/affinity.h), so the test also pins the format.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { io } from 'socket.io-client';
import {
  startGateway, startHttpEcho, startChat, cleanup, onCleanup, httpsRequest, adminRequest, freePort, waitFor,
  withTimeout, sleep, tmpDir, loopbackAddresses, wsUpgrade, startWsEcho, runGateway, makeCert,
} from './lib.mjs';

const T = { timeout: 60000 };
const KEYFILE_BYTES = crypto.randomBytes(48);
let keyFile, echos, gw1, gw2, admin1;

// --- the token, as gateway/affinity.h lays it out
const affKey = () => crypto.createHmac('sha256', KEYFILE_BYTES).update('wsgate affinity key').digest();
function peerId(name) {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(name)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  h ^= h >> 33n;
  h = (h * 0xff51afd7ed558ccdn) & 0xffffffffffffffffn;
  h ^= h >> 33n;
  return h;
}
function token(name, expires, key = affKey()) {
  const data = Buffer.alloc(12);
  data.writeBigUInt64BE(peerId(name), 0);
  data.writeUInt32BE(expires >>> 0, 8);
  const mac = crypto.createHmac('sha256', key).update(Buffer.concat([Buffer.from('wsgate-aff1'), data])).digest();
  return Buffer.concat([data, mac.subarray(0, 16)]).toString('base64url');
}
const now = () => Math.floor(Date.now() / 1000);

/** Which echo upstream answered the request with this marker path. */
const servedBy = (marker) => echos.findIndex((e) => e.requests.some((r) => r.url === marker));
let seq = 0;
async function get(port, { addr = '127.0.0.1', cookie } = {}) {
  const marker = `/aff-${seq++}`;
  const r = await httpsRequest(port, { path: marker, localAddress: addr, headers: cookie ? { Cookie: cookie } : {} });
  assert.equal(r.status, 200);
  const set = [].concat(r.headers['set-cookie'] || []);
  return { up: servedBy(marker), set, cookie: set.length ? set[0].split(';')[0] : undefined };
}
async function metric(adminPort, result) {
  const r = await adminRequest(adminPort, '/metrics');
  const m = new RegExp(`^wsgate_affinity_cookies_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(r.body);
  assert.ok(m, `no ${result} series`);
  return Number(m[1]);
}

before(async () => {
  echos = await Promise.all([0, 1, 2, 3].map(() => startHttpEcho()));
  keyFile = path.join(tmpDir(), 'affinity.key');
  fs.writeFileSync(keyFile, KEYFILE_BYTES, { mode: 0o600 });
  const ups = echos.flatMap((e) => ['--upstream', e.addr]);
  admin1 = await freePort();
  gw1 = await startGateway([...ups, '--affinity', 'cookie', '--affinity_key_file', keyFile, '--admin', `127.0.0.1:${admin1}`]);
  gw2 = await startGateway([...ups, '--affinity', 'cookie', '--affinity_key_file', keyFile]);
});
after(cleanup);

test('the first response sets the cookie; with it every address, on either gateway, reaches that upstream', T, async () => {
  const first = await get(gw1.port, { addr: '127.0.0.1' });
  assert.equal(first.set.length, 1);
  assert.match(first.set[0], /^wsgate_upstream=[A-Za-z0-9_-]{38}; Path=\/; Secure; HttpOnly; SameSite=Lax$/);
  // the token is the documented one: it names the upstream that answered
  const raw = Buffer.from(first.cookie.split('=')[1], 'base64url');
  assert.equal(raw.readBigUInt64BE(0), peerId(echos[first.up].addr));
  assert.ok(Math.abs(raw.readUInt32BE(8) - (now() + 86400)) <= 5, 'expiry = now + affinity_cookie_ttl (1d)');
  const addrs = loopbackAddresses(24, 73);
  const hashed = new Set();
  for (const a of addrs) {
    const withCookie = await get(a.endsWith('1') ? gw2.port : gw1.port, { addr: a, cookie: first.cookie });
    assert.equal(withCookie.up, first.up, `${a} with the cookie went elsewhere`);
    assert.equal(withCookie.set.length, 0, 'a fresh cookie naming the same upstream is not set again');
    hashed.add((await get(gw1.port, { addr: a })).up);
  }
  assert.ok(hashed.size > 1, 'without the cookie the 24 addresses should spread: the test would prove nothing');
  // another gateway of the fleet honours it too, from any address
  assert.equal((await get(gw2.port, { addr: addrs[0], cookie: `a=1; ${first.cookie}; b=2` })).up, first.up);
});

test('forged, expired and foreign tokens fall back to the hash and get a new cookie; counted', T, async () => {
  const addr = '127.5.6.7';
  const hashUp = (await get(gw1.port, { addr })).up;
  const other = echos.findIndex((_, i) => i !== hashUp);
  const before = {};
  for (const k of ['followed', 'forged', 'expired', 'foreign']) before[k] = await metric(admin1, k);
  const cases = {
    forged: token(echos[other].addr, now() + 3600, crypto.randomBytes(32)), // another key
    expired: token(echos[other].addr, now() - 10),
    foreign: token('10.9.9.9:80', now() + 3600), // signed, but no such upstream here
  };
  for (const [kind, tok] of Object.entries(cases)) {
    const r = await get(gw1.port, { addr, cookie: `wsgate_upstream=${tok}` });
    assert.equal(r.up, hashUp, `${kind} token: not the hash's choice`);
    assert.equal(r.set.length, 1, `${kind} token: no fresh cookie`);
    assert.equal(Buffer.from(r.cookie.split('=')[1], 'base64url').readBigUInt64BE(0), peerId(echos[hashUp].addr));
  }
  // one character changed in a good token is forged too
  const good = token(echos[other].addr, now() + 3600);
  const bad = (good[5] === 'A' ? 'B' : 'A');
  assert.equal((await get(gw1.port, { addr, cookie: `wsgate_upstream=${good.slice(0, 5)}${bad}${good.slice(6)}` })).up, hashUp);
  // and the good one is followed
  assert.equal((await get(gw1.port, { addr, cookie: `wsgate_upstream=${good}` })).up, other);
  await waitFor(async () => (await metric(admin1, 'forged')) === before.forged + 2, 3000, 'forged counted');
  assert.equal(await metric(admin1, 'expired'), before.expired + 1);
  assert.equal(await metric(admin1, 'foreign'), before.foreign + 1);
  assert.ok(await metric(admin1, 'followed') >= before.followed + 1);
  // a token past half its life is refreshed (same upstream, later expiry)
  const old = await get(gw1.port, { addr, cookie: `wsgate_upstream=${token(echos[other].addr, now() + 3600)}` });
  assert.equal(old.up, other);
  assert.equal(old.set.length, 1, 'a token with 1h of 24h left is refreshed');
  assert.equal(Buffer.from(old.cookie.split('=')[1], 'base64url').readBigUInt64BE(0), peerId(echos[other].addr));
});

test('the upstream a cookie names is down: the hash decides and the cookie moves', T, async () => {
  const extra = await startHttpEcho();
  const dead = await startHttpEcho();
  const g = await startGateway(['--upstream', extra.addr, '--upstream', dead.addr, '--affinity', 'cookie',
    '--affinity_key_file', keyFile]);
  await dead.close();
  const r = await httpsRequest(g.port, { path: '/moved', headers: { Cookie: `wsgate_upstream=${token(dead.addr, now() + 3600)}` } });
  assert.equal(r.status, 200);
  assert.ok(extra.requests.some((q) => q.url === '/moved'));
  const set = [].concat(r.headers['set-cookie'] || []);
  assert.equal(set.length, 1);
  assert.equal(Buffer.from(set[0].split(';')[0].split('=')[1], 'base64url').readBigUInt64BE(0), peerId(extra.addr));
});

test('a WebSocket upgrade follows the cookie, and the 101 sets it', T, async () => {
  const wsu = [await startWsEcho(), await startWsEcho()];
  const g = await startGateway([...wsu.flatMap((u) => ['--upstream', u.addr]), '--affinity', 'cookie']);
  const first = await wsUpgrade(g.port, { localAddress: '127.8.8.8', path: '/ws-aff' });
  assert.equal(first.res.status, 101);
  const setCookie = first.res.headers['set-cookie'];
  assert.ok(setCookie, `no Set-Cookie in the 101:\n${first.res.rawHead}`);
  await waitFor(() => wsu.some((u) => u.conns.length === 1), 3000, 'first upstream connection');
  const up = wsu[0].conns.length === 1 ? 0 : 1;
  const cookie = String(setCookie).split(';')[0];
  // twelve other addresses carrying the cookie: all on that upstream, and no new cookie
  for (const a of loopbackAddresses(12, 5)) {
    const r = await wsUpgrade(g.port, { localAddress: a, path: '/ws-aff', headers: { Cookie: cookie } });
    assert.equal(r.res.status, 101);
    assert.equal(r.res.headers['set-cookie'], undefined);
    r.sock.destroy();
  }
  await waitFor(() => wsu[up].conns.length === 13, 3000, 'all twelve on the cookie\'s upstream');
  assert.equal(wsu[1 - up].conns.length, 0);
  first.sock.destroy();
});

test('socket.io: polling from one address, the WebSocket from another, one session (real client, cookie jar)', { timeout: 90000 }, async () => {
  const chats = await Promise.all([1, 2, 3, 4].map((n) => startChat(n)));
  const g = await startGateway([...chats.flatMap((c) => ['--upstream', c.addr]), '--affinity', 'cookie']);
  const whoami = async (a) => JSON.parse((await httpsRequest(g.port, { path: '/whoami', localAddress: a })).body.toString()).instance;
  // A for the polling requests, B for the WebSocket: two addresses the hash sends to two instances
  const addrs = loopbackAddresses(40, 99);
  const A = addrs[0];
  const instA = await whoami(A);
  let B;
  for (const a of addrs.slice(1)) if (await whoami(a) !== instA) { B = a; break; }
  assert.ok(B, 'no address hashed away from A');
  const client = async (withCredentials) => {
    const agentA = new https.Agent({ localAddress: A, rejectUnauthorized: false });
    const agentB = new https.Agent({ localAddress: B, rejectUnauthorized: false });
    const s = io(`https://localhost:${g.port}`, {
      rejectUnauthorized: false, withCredentials, reconnection: false, forceNew: true, timeout: 5000,
      transportOptions: { polling: { agent: agentA }, websocket: { agent: agentB, localAddress: B } },
    });
    onCleanup(() => { s.close(); agentA.destroy(); agentB.destroy(); });
    s.got = [];
    s.on('chat message', (m) => s.got.push(m));
    s.io.engine.on('upgrade', (tr) => { s.upgradedTo = tr.name; });
    await withTimeout(new Promise((r, j) => { s.once('connect', r); s.once('connect_error', j); }), 8000, 'connect');
    return s;
  };
  // with the cookie jar: the WebSocket from B lands on A's instance, the upgrade completes
  const s = await client(true);
  await waitFor(() => s.upgradedTo === 'websocket', 8000, 'upgrade to websocket with the cookie');
  s.emit('chat message', 'kept-session');
  await waitFor(() => s.got.includes('kept-session'), 5000, 'own message back over the WebSocket');
  assert.equal(s.io.engine.transport.name, 'websocket');
  s.close();
  await waitFor(() => g.log().includes(`"type":"ws","conn"`), 5000, 'the WebSocket access-log line');
  const wsLine = g.log().split('\n').find((l) => l.includes('"type":"ws"') && l.includes('transport=websocket'));
  assert.ok(wsLine && wsLine.includes(`"client":"${B}"`), `the WebSocket did not come from ${B}: ${wsLine}`);
  assert.ok(g.log().includes(`"client":"${A}"`), 'the polling requests did not come from A');
  // without cookies the WebSocket from B reaches another instance, which does not know the
  // session: the upgrade never completes (so the case above is a real test)
  const n = await client(false);
  await sleep(2500);
  assert.notEqual(n.upgradedTo, 'websocket');
  n.close();
});

test('affinity_key_file: readable by others, too short, missing: refused at start, naming the file', T, async () => {
  const cert = makeCert('localhost');
  const base = ['--listen', `127.0.0.1:${await freePort()}`, '--cert', cert.cert, '--key', cert.key,
    '--upstream', echos[0].addr, '--affinity', 'cookie', '-t'];
  const open = path.join(tmpDir(), 'open.key');
  fs.writeFileSync(open, crypto.randomBytes(32), { mode: 0o644 });
  fs.chmodSync(open, 0o644);
  let r = await runGateway([...base, '--affinity_key_file', open]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /open\.key: affinity key file is accessible by group or others/);
  const short = path.join(tmpDir(), 'short.key');
  fs.writeFileSync(short, crypto.randomBytes(31), { mode: 0o600 });
  r = await runGateway([...base, '--affinity_key_file', short]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /affinity_key_file .*short\.key: 31 bytes, want 32/);
  r = await runGateway([...base, '--affinity_key_file', path.join(tmpDir(), 'none.key')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /affinity_key_file .*none\.key: No such file/);
  r = await runGateway([...base, '--affinity_key_file', keyFile]);
  assert.equal(r.code, 0, r.stderr);
});
