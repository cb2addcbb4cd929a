// PROXY protocol listeners (issue 14): Debian's HAProxy in TCP mode, send-proxy-v2 (and
// send-proxy, v1), round robin over two wsgate processes; clients bound to distinct 127.x.y.z
// addresses. The address carried in the header is the client address everywhere: X-Forwarded-For
// and X-Real-IP at the upstream, the upstream chosen by the IP hash (whichever gateway serves),
// per-IP rules (ip_max_conns), the access log. Missing, malformed, late and untrusted headers
// close the connection and are counted in /metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  startGateway, startHttpEcho, startWsEcho, cleanup, freePort, tcpAccepts, waitFor, tmpDir, spawnChild,
  httpsRequest, wsUpgrade, tlsConnect, adminRequest, loopbackAddresses, makeCert, sleep, startHaproxy,
} from './lib.mjs';

const T = { timeout: 90000 };
let echoA, echoB, wsA, wsB, cert, g1, g2, pp1, pp2, admin1, hap2, hap1;

async function gatewayWithProxyListener(extra) {
  const pp = await freePort();
  const admin = await freePort();
  const g = await startGateway(['--listen', `127.0.0.1:${pp} proxy_protocol`, '--admin', `127.0.0.1:${admin}`,
    '--cert', cert.cert, '--key', cert.key, '--handshake_timeout', '1s', '--workers', '2', ...extra]);
  await waitFor(() => tcpAccepts(pp), 5000, 'proxy_protocol listener');
  return { g, pp, admin };
}

async function metric(adminPort, result) {
  const r = await adminRequest(adminPort, '/metrics');
  const m = new RegExp(`^wsgate_proxy_protocol_headers_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(r.body);
  assert.ok(m, `no ${result} series in:\n${r.body}`);
  return Number(m[1]);
}

before(async () => {
  echoA = await startHttpEcho();
  echoB = await startHttpEcho();
  wsA = await startWsEcho();
  wsB = await startWsEcho();
  cert = makeCert('localhost', ['localhost']);
  // Two gateways, the same upstream list: the rendezvous hash agrees between them.
  const ups = ['--upstream', echoA.addr, '--upstream', echoB.addr];
  ({ g: g1, pp: pp1, admin: admin1 } = await gatewayWithProxyListener(ups));
  ({ g: g2, pp: pp2 } = await gatewayWithProxyListener(ups));
  hap2 = await startHaproxy('v2', [`127.0.0.1:${pp1} send-proxy-v2`, `127.0.0.1:${pp2} send-proxy-v2`]);
  hap1 = await startHaproxy('v1', [`127.0.0.1:${pp1} send-proxy`, `127.0.0.1:${pp2} send-proxy`]);
});
after(cleanup);

for (const v of ['v2', 'v1']) {
  test(`through HAProxy send-proxy${v === 'v2' ? '-v2' : ''}: X-Forwarded-For is the client's address, one address one upstream`, T, async () => {
    const hap = v === 'v2' ? hap2 : hap1;
    const addrs = loopbackAddresses(12, v === 'v2' ? 7 : 8);
    const seen = new Map(); // address -> set of upstreams
    let n = 0;
    for (const a of addrs) {
      for (let i = 0; i < 4; i++) { // round robin: each address goes through both gateways
        const marker = `/pp-${v}-${n++}`;
        const r = await httpsRequest(hap.port, { path: marker, localAddress: a });
        assert.equal(r.status, 200);
        const body = JSON.parse(r.body.toString());
        assert.equal(body.headers['x-forwarded-for'], a, `XFF for ${a}`);
        assert.equal(body.headers['x-real-ip'], a);
        assert.match(body.headers.forwarded, new RegExp(`for=${a.replace(/\./g, '\\.')}`));
        const up = echoA.requests.some((q) => q.url === marker) ? 'A' : 'B';
        if (!seen.has(a)) seen.set(a, new Set());
        seen.get(a).add(up);
      }
    }
    for (const [a, ups] of seen) assert.equal(ups.size, 1, `${a} landed on ${[...ups]}`);
    // twelve addresses hashed over two upstreams: both get some (checks the hash saw distinct
    // addresses, not the balancer's one)
    const all = new Set([...seen.values()].map((s) => [...s][0]));
    assert.equal(all.size, 2, 'every client landed on one upstream: the hash saw one address');
    // both gateways served, and logged the clients' own addresses
    for (const g of [g1, g2]) assert.ok(addrs.some((a) => g.log().includes(`"${a}"`)), g.log());
  });
}

test('the access log and the WebSocket upstream see the carried address', T, async () => {
  const g = await gatewayWithProxyListener(['--upstream', wsA.addr]);
  const hap = await startHaproxy('ws', [`127.0.0.1:${g.pp} send-proxy-v2`]);
  const a = '127.31.41.59';
  const { sock, res } = await wsUpgrade(hap.port, { localAddress: a, path: '/chat' });
  assert.equal(res.status, 101);
  const rec = await wsA.waitConn(wsA.conns.length);
  assert.equal(rec.headers['x-forwarded-for'], a);
  sock.destroy();
  await waitFor(() => g.g.log().includes(`"${a}"`), 5000, `access log line with ${a}:\n${g.g.log()}`);
  assert.ok(!/"client":"127\.0\.0\.1"/.test(g.g.log()), g.g.log());
});

test('per-IP rules count the carried address (ip_max_conns 1)', T, async () => {
  const g = await gatewayWithProxyListener(['--upstream', wsB.addr, '--ip_max_conns', '1']);
  const hap = await startHaproxy('ipmax', [`127.0.0.1:${g.pp} send-proxy-v2`]);
  const first = await wsUpgrade(hap.port, { localAddress: '127.9.9.1' });
  assert.equal(first.res.status, 101);
  const again = await wsUpgrade(hap.port, { localAddress: '127.9.9.1' });
  assert.equal(again.res.status, 429, 'the same client address must be limited');
  const other = await wsUpgrade(hap.port, { localAddress: '127.9.9.2' });
  assert.equal(other.res.status, 101, 'another client address behind the same balancer must pass');
  first.sock.destroy();
  other.sock.destroy();
});

test('no header, a malformed one, one too late, one from outside proxy_protocol_from: closed and counted', T, async () => {
  const closed = (sock) => new Promise((r) => { sock.on('close', () => r(true)); sock.on('error', () => {}); });
  const before = {
    ok: await metric(admin1, 'ok'), invalid: await metric(admin1, 'invalid'),
    incomplete: await metric(admin1, 'incomplete'), local: await metric(admin1, 'local'),
  };
  // TLS straight to the proxy_protocol listener: the ClientHello is not a header
  await assert.rejects(tlsConnect(pp1));
  await waitFor(async () => await metric(admin1, 'invalid') === before.invalid + 1, 3000, 'invalid counted');
  // a malformed v1 line
  let s = net.connect(pp1, '127.0.0.1');
  s.write('PROXY TCP4 1.2.3.4 5.6.7.8 99999 443\r\n');
  assert.ok(await closed(s));
  await waitFor(async () => await metric(admin1, 'invalid') === before.invalid + 2, 3000, 'invalid counted');
  // half a header, then nothing: closed at handshake_timeout (1s)
  s = net.connect(pp1, '127.0.0.1');
  s.write('PROXY TCP4 1.2.3.4 ');
  const t0 = Date.now();
  assert.ok(await closed(s));
  assert.ok(Date.now() - t0 >= 800, `closed after ${Date.now() - t0} ms`);
  await waitFor(async () => await metric(admin1, 'incomplete') === before.incomplete + 1, 3000, 'incomplete counted');
  // a v2 LOCAL header (a balancer's health check) then TLS: served with the socket's address
  s = net.connect(pp1, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  s.write(Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex'));
  const t = await tlsConnect(0, { socket: s });
  t.destroy();
  await waitFor(async () => await metric(admin1, 'local') === before.local + 1, 3000, 'local counted');
  assert.equal(await metric(admin1, 'ok'), before.ok);

  // proxy_protocol_from: the balancer's 127.0.0.1 is not in 10.0.0.0/8
  const g = await gatewayWithProxyListener(['--upstream', echoA.addr, '--proxy_protocol_from', '10.0.0.0/8 192.0.2.1']);
  // (the start-up probe, tcpAccepts, was itself an untrusted peer: count from there)
  await waitFor(async () => await metric(g.admin, 'untrusted') >= 1, 3000, 'the probe counted');
  const untrusted0 = await metric(g.admin, 'untrusted');
  s = net.connect(g.pp, '127.0.0.1');
  s.write('PROXY TCP4 203.0.113.1 10.0.0.1 5000 443\r\n');
  assert.ok(await closed(s));
  await waitFor(async () => await metric(g.admin, 'untrusted') === untrusted0 + 1, 3000, 'untrusted counted');
  assert.equal(await metric(g.admin, 'ok'), 0);
  // the plain listener of the same gateway is not affected
  const r = await httpsRequest(g.g.port, { path: '/plain' });
  assert.equal(r.status, 200);
  await sleep(10);
});

test('max_connections_per_ip counts the carried address, not the balancer', T, async () => {
  const g = await gatewayWithProxyListener(['--upstream', echoA.addr, '--max_connections_per_ip', '1']);
  const hap = await startHaproxy('maxconn', [`127.0.0.1:${g.pp} send-proxy-v2`]);
  const first = await tlsConnect(hap.port, { localAddress: '127.9.8.1' });
  // the same client again: refused once its header is read (the balancer sees the close)
  await assert.rejects(tlsConnect(hap.port, { localAddress: '127.9.8.1' }));
  // another client behind the same balancer has its own count
  const other = await tlsConnect(hap.port, { localAddress: '127.9.8.2' });
  first.destroy();
  other.destroy();
  // the count is given back when the connection ends
  await waitFor(async () => {
    try { (await tlsConnect(hap.port, { localAddress: '127.9.8.1' })).destroy(); return true; } catch { return false; }
  }, 5000, 'the first client may connect again once its connection is gone');
});
