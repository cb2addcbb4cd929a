// HTTP/1.1 proxying through wsgate: keep-alive, bodies, forwarded headers, strict parsing,
// upstream failures, smuggling.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startGateway, startHttpEcho, startBlackHole, freePort, tlsConnect, Reader, readResponse, rawRequest,
  httpsRequest, cleanup, sleep, loopbackAddresses, mapLimit, bigBody, tcpAccepts,
} from './lib.mjs';

let gw, echo;
const T = { timeout: 20000 };

before(async () => {
  echo = await startHttpEcho();
  gw = await startGateway(['--upstream', echo.addr]);
});
after(cleanup);

const json = (res) => JSON.parse(res.body.toString());

test('GET is proxied, two requests on one keep-alive TLS connection', T, async () => {
  const sock = await tlsConnect(gw.port);
  const reader = new Reader(sock);
  try {
    sock.write(`GET /first?a=1 HTTP/1.1\r\nHost: localhost:${gw.port}\r\nUser-Agent: e2e\r\n\r\n`);
    const r1 = await readResponse(reader);
    assert.equal(r1.status, 200);
    assert.equal(json(r1).url, '/first?a=1');
    sock.write(`GET /second HTTP/1.1\r\nHost: localhost:${gw.port}\r\n\r\n`);
    const r2 = await readResponse(reader);
    assert.equal(r2.status, 200);
    assert.equal(json(r2).url, '/second');
    // pipelined: both requests in one write, answers in order
    sock.write(`GET /p1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /p2 HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    assert.equal(json(await readResponse(reader)).url, '/p1');
    assert.equal(json(await readResponse(reader)).url, '/p2');
    assert.equal(reader.ended, false, 'the connection was closed despite keep-alive');
  } finally { sock.destroy(); }
});

test('HEAD and a 0-length POST keep the connection usable', T, async () => {
  const sock = await tlsConnect(gw.port);
  const reader = new Reader(sock);
  try {
    sock.write('HEAD /h HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const h = await readResponse(reader, { head: true });
    assert.equal(h.status, 200);
    sock.write('POST /empty HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n');
    const p = await readResponse(reader);
    assert.equal(json(p).method, 'POST');
    assert.equal(json(p).bodyLength, 0);
  } finally { sock.destroy(); }
});

test('POST with a Content-Length body arrives byte-exact', T, async () => {
  const body = crypto.randomBytes(300 * 1024);
  const res = await httpsRequest(gw.port, { method: 'POST', path: '/cl', body, headers: { 'Content-Length': body.length, 'Content-Type': 'application/octet-stream' } });
  assert.equal(res.status, 200);
  const rec = echo.requests.find((r) => r.url === '/cl');
  assert.equal(rec.body.length, body.length);
  assert.ok(rec.body.equals(body), 'body differs at the upstream');
});

test('POST with a chunked body arrives byte-exact', T, async () => {
  const sock = await tlsConnect(gw.port);
  const reader = new Reader(sock);
  const parts = [crypto.randomBytes(1), crypto.randomBytes(4096), crypto.randomBytes(70000), crypto.randomBytes(17)];
  try {
    sock.write('POST /chunked-in HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n');
    for (const p of parts) {
      sock.write(`${p.length.toString(16)}\r\n`);
      sock.write(p);
      sock.write('\r\n');
      await sleep(10);
    }
    sock.write('0\r\n\r\n');
    const res = await readResponse(reader);
    assert.equal(res.status, 200);
    const rec = echo.requests.find((r) => r.url === '/chunked-in');
    assert.ok(rec.body.equals(Buffer.concat(parts)), 'body differs at the upstream');
    // still usable afterwards
    sock.write('GET /after-chunked HTTP/1.1\r\nHost: localhost\r\n\r\n');
    assert.equal(json(await readResponse(reader)).url, '/after-chunked');
  } finally { sock.destroy(); }
});

test('a chunked response is relayed intact', T, async () => {
  const sock = await tlsConnect(gw.port);
  const reader = new Reader(sock);
  try {
    sock.write('GET /chunked HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const res = await readResponse(reader);
    assert.equal(res.status, 200);
    const expected = Array.from({ length: 5 }, (_, i) => `chunk-${i}:${'x'.repeat(1000)}\n`).join('');
    assert.equal(res.body.toString(), expected);
    sock.write('GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n');
    assert.equal(json(await readResponse(reader)).url, '/after');
  } finally { sock.destroy(); }
});

for (const [n, chunked] of [[40000, false], [1 << 20, false], [1 << 20, true]]) {
  test(`a ${n}-byte ${chunked ? 'chunked' : 'Content-Length'} response is relayed byte-exact`, T, async () => {
    const sock = await tlsConnect(gw.port);
    const reader = new Reader(sock);
    try {
      sock.write(`GET /big?n=${n}${chunked ? '&chunked' : ''} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      const res = await readResponse(reader, { ms: 8000 });
      assert.equal(res.status, 200);
      assert.equal(res.body.length, n);
      assert.ok(res.body.equals(bigBody(n)), 'body differs');
      sock.write('GET /after-big HTTP/1.1\r\nHost: localhost\r\n\r\n');
      assert.equal(json(await readResponse(reader)).url, '/after-big');
    } finally { sock.destroy(); }
  });
}

test('forwarding headers reach the upstream and Host is preserved', T, async () => {
  const res = await httpsRequest(gw.port, { path: '/fwd', headers: { Host: 'app.example:8443' }, localAddress: '127.0.0.7' });
  assert.equal(res.status, 200);
  const h = json(res).headers;
  assert.equal(h.host, 'app.example:8443');
  assert.equal(h['x-forwarded-for'], '127.0.0.7');
  assert.equal(h['x-forwarded-proto'], 'https');
  assert.equal(h['x-forwarded-host'], 'app.example:8443');
  assert.equal(h['x-real-ip'], '127.0.0.7');
  assert.ok(h.forwarded, 'no Forwarded header');
  assert.match(h.forwarded, /for="?127\.0\.0\.7"?/i);
  assert.match(h.forwarded, /proto=https/i);
});

test('X-Forwarded-For is appended to a client-supplied value', T, async () => {
  const res = await httpsRequest(gw.port, { path: '/xff', headers: { 'X-Forwarded-For': '203.0.113.9' }, localAddress: '127.0.0.8' });
  const h = json(res).headers;
  assert.match(h['x-forwarded-for'], /^203\.0\.113\.9, ?127\.0\.0\.8$/);
  // X-Real-IP is the connecting address, never the client's claim
  assert.equal(h['x-real-ip'], '127.0.0.8');
});

test('hop-by-hop headers are not forwarded', T, async () => {
  const res = await httpsRequest(gw.port, { path: '/hop', headers: { Connection: 'keep-alive, X-Secret', 'X-Secret': 'no', 'Keep-Alive': 'timeout=5', 'X-Kept': 'yes' } });
  const h = json(res).headers;
  assert.equal(h['x-kept'], 'yes');
  assert.equal(h['x-secret'], undefined, 'a header named in Connection was forwarded');
  assert.equal(h['keep-alive'], undefined, 'Keep-Alive was forwarded');
});

// ------------------------------------------------------------------------------------------
// Strict parsing: each bad request gets its exact status and never reaches the upstream.
const big = (n) => 'a'.repeat(n);
const badRequests = [
  ['bare LF line endings', 'GET / HTTP/1.1\nHost: localhost\n\n', 400],
  ['bare LF after a header', 'GET / HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n', 400],
  ['obs-fold continuation line', 'GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n', 400],
  ['space before the colon', 'GET / HTTP/1.1\r\nHost: localhost\r\nX-A : b\r\n\r\n', 400],
  ['Content-Length and Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['two different Content-Length', 'POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
  ['duplicate Content-Length', 'POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', 400],
  ['non-numeric Content-Length', 'POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3x\r\n\r\nabc', 400],
  ['duplicate Host', 'GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n', 400],
  ['missing Host', 'GET / HTTP/1.1\r\nUser-Agent: e2e\r\n\r\n', 400],
  ['garbage request line', 'HELLO\r\n\r\n', 400],
  ['request-target over max_uri (8k)', `GET /${big(9000)} HTTP/1.1\r\nHost: localhost\r\n\r\n`, 414],
  ['header block over max_header_size (16k)', `GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ${big(17000)}\r\n\r\n`, 431],
  ['unknown Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: bogus\r\n\r\n', 501],
  ['WebSocket upgrade with version 8', 'GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n', 426],
  ['WebSocket upgrade without a key', 'GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n', 400],
  ['WebSocket upgrade with a short key', 'GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n', 400],
];

for (const [name, req, status] of badRequests) {
  test(`${status} for ${name}`, T, async () => {
    const before = echo.requests.length;
    const res = await rawRequest(gw.port, req, { waitEndMs: 2000 });
    assert.equal(res.status, status, `got ${res.status} ${res.reason}\n${res.rawHead}`);
    if (status === 426) assert.equal(res.headers['sec-websocket-version'], '13');
    assert.ok(res.closed, 'the connection stayed open after an error status');
    await sleep(50);
    assert.equal(echo.requests.length, before, `the bad request reached the upstream: ${JSON.stringify(echo.requests.at(-1)?.url)}`);
  });
}

test('smuggling: CL+TE never forwards the hidden second request', T, async () => {
  const before = echo.requests.length;
  const sock = await tlsConnect(gw.port);
  const reader = new Reader(sock);
  try {
    const hidden = 'GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n';
    sock.write('POST /front HTTP/1.1\r\nHost: localhost\r\nContent-Length: ' + (5 + hidden.length)
      + '\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' + hidden);
    const res = await readResponse(reader);
    assert.equal(res.status, 400);
    // whatever follows, the connection must not carry on
    await reader.waitEnd(2000);
    await sleep(200);
    const seen = echo.requests.slice(before).map((r) => r.url);
    assert.deepEqual(seen, [], `the upstream received ${JSON.stringify(seen)}`);
  } finally { sock.destroy(); }
});

test('smuggling: Transfer-Encoding with a space before the colon is not forwarded', T, async () => {
  const before = echo.requests.length;
  const res = await rawRequest(gw.port, 'POST /te HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled2 HTTP/1.1\r\nHost: localhost\r\n\r\n', { waitEndMs: 1000 });
  assert.equal(res.status, 400);
  await sleep(200);
  assert.deepEqual(echo.requests.slice(before).map((r) => r.url), []);
});

// ------------------------------------------------------------------------------------------
// Upstream failures

// Upstreams that nothing listens on: ports below 1024 on loopback, which no test server and no
// ephemeral port (the kernel's range starts far above) can take. A port freePort() found free
// could be bound by a parallel test file (or be a connection's own source port) a moment later.
const DEAD1 = '127.0.0.1:1', DEAD2 = '127.0.0.1:9';
async function assertDead() {
  for (const d of [DEAD1, DEAD2]) {
    const [host, port] = d.split(':');
    assert.equal(await tcpAccepts(Number(port), host), false, `${d} accepts connections: the dead upstreams are not dead here`);
  }
}

test('502 when no upstream accepts a connection', T, async () => {
  await assertDead();
  const [dead1, dead2] = [DEAD1.split(':')[1], DEAD2.split(':')[1]];
  const g = await startGateway(['--upstream', `127.0.0.1:${dead1}`, '--upstream', `127.0.0.1:${dead2}`, '--connect_timeout', '1s']);
  const t0 = Date.now();
  const res = await rawRequest(g.port, 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n', { ms: 8000 });
  assert.equal(res.status, 502);
  assert.ok(Date.now() - t0 < 5000);
  await g.stop();
});

test('504 when the upstream never answers (upstream_timeout)', T, async () => {
  const hole = await startBlackHole();
  const g = await startGateway(['--upstream', hole.addr, '--upstream_timeout', '1s']);
  const t0 = Date.now();
  const res = await rawRequest(g.port, 'GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n', { ms: 8000 });
  const took = Date.now() - t0;
  assert.equal(res.status, 504);
  assert.ok(took >= 800 && took < 5000, `answered after ${took} ms`);
  assert.ok(hole.received() > 0, 'the request never reached the upstream');
  await g.stop();
});

test('a refused connect retries the next-ranked upstream (no client sees an error)', T, async () => {
  await assertDead();
  const g = await startGateway(['--upstream', DEAD1, '--upstream', echo.addr, '--upstream', DEAD2]);
  const addrs = loopbackAddresses(24, 7);
  const res = await mapLimit(addrs, 6, (a) => httpsRequest(g.port, { path: `/retry/${a}`, localAddress: a }));
  assert.deepEqual(res.map((r) => r.status), addrs.map(() => 200));
  await g.stop();
});

test('408 (or a close) when the request head is not finished within header_timeout', T, async () => {
  const g = await startGateway(['--upstream', echo.addr, '--header_timeout', '1s']);
  const sock = await tlsConnect(g.port);
  const reader = new Reader(sock);
  try {
    const t0 = Date.now();
    sock.write('GET /slowloris HTTP/1.1\r\nHost: localhost\r\n');
    const got = await reader.readToEnd(6000);
    const took = Date.now() - t0;
    assert.ok(took < 5000, `closed after ${took} ms`);
    if (got.length) assert.match(got.toString('latin1'), /^HTTP\/1\.1 408/);
  } finally { sock.destroy(); }
  await g.stop();
});
