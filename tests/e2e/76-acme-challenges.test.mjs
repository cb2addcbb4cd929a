// ACME challenges served by the running gateway (issue 16, gateway side): pushed and removed over
// the admin endpoint, served on the real listeners.
//   - TLS-ALPN-01 (RFC 8737): a handshake offering only acme-tls/1 for a name with a pushed
//     challenge gets that certificate (fingerprint) and is closed after the handshake; http/1.1
//     for the same name still gets the configured certificate; acme-tls/1 for a name without a
//     challenge, or after its DELETE, fails; bad PUT bodies are refused with 400 and a reason
//     (garbage, a key of another certificate, no acmeIdentifier, a non-critical one, a SAN without
//     the name), a bad name 400, an oversized body 413, PUT without Content-Length 400.
//   - HTTP-01 on listen_http: the key authorization for /.well-known/acme-challenge/TOKEN, 404
//     for an unknown token, 308 to https (with the TLS port, not 443) for everything else, 400
//     without Host, 431 for a head over 8 KiB; bad tokens and key authorizations 400.
//   - GET /acme lists what is held; 405 for other methods; the metrics count it all.
//   - WebSockets through the TLS listener keep echoing while challenges come and go (0 closed).
// Challenge certificates are made with the openssl CLI (a test dependency), with the
// acmeIdentifier extension written as raw DER.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import {
  startGateway, startWsEcho, cleanup, freePort, makeCert, tmpDir, Reader, readResponse, sleep, waitFor,
} from './lib.mjs';

const T = { timeout: 60000 };
let gw, adminPort, httpPort, echo, site;

/** A TLS-ALPN-01 style certificate made by openssl: P-256, self-signed, SAN san, and the
 * acmeIdentifier extension (critical unless told) holding OCTET STRING(32 bytes). */
function challengeCert(name, { san = name, acmeId = true, critical = true, idLen = 32 } = {}) {
  const dir = tmpDir();
  const base = path.join(dir, `acme-${crypto.randomBytes(4).toString('hex')}`);
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${base}.key`, '-out', `${base}.crt`, '-days', '1', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=DNS:${san}`];
  if (acmeId) {
    const der = ['04', idLen.toString(16).padStart(2, '0'), crypto.randomBytes(idLen).toString('hex')].join('')
      .match(/../g).join(':');
    args.push('-addext', `1.3.6.1.5.5.7.1.31=${critical ? 'critical,' : ''}DER:${der}`);
  }
  execFileSync('openssl', args, { stdio: 'ignore' });
  const cert = fs.readFileSync(`${base}.crt`, 'utf8'), key = fs.readFileSync(`${base}.key`, 'utf8');
  return { cert, key, pem: cert + key, fp: new crypto.X509Certificate(cert).fingerprint256 };
}

/** One request to the admin endpoint with an optional body. Resolves {status, body}. */
function admin(method, p, body) {
  return new Promise((resolve, reject) => {
    const headers = body !== undefined ? { 'Content-Length': Buffer.byteLength(body) } : {};
    const req = http.request({ host: '127.0.0.1', port: adminPort, path: p, method, headers, agent: false }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: b }));
    });
    req.setTimeout(5000, () => req.destroy(new Error(`admin ${method} ${p} timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Raw bytes to a plaintext port; one response, and whether the gateway then closed. */
async function plain(port, bytes) {
  const sock = net.connect({ host: '127.0.0.1', port });
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  const reader = new Reader(sock);
  try {
    sock.write(bytes);
    const head = /^HEAD /.test(bytes.toString());
    const res = await readResponse(reader, { head });
    res.closed = await reader.waitEnd(3000);
    return res;
  } finally {
    sock.destroy();
  }
}

/** A TLS handshake to the gateway. Resolves {fp, alpn, ended} or rejects with the handshake error. */
function handshake(servername, ALPNProtocols) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port: gw.port, servername, ALPNProtocols, rejectUnauthorized: false });
    const t = setTimeout(() => { sock.destroy(); reject(new Error('handshake timeout')); }, 5000);
    sock.once('error', (e) => { clearTimeout(t); reject(e); });
    sock.once('secureConnect', () => {
      clearTimeout(t);
      const out = { fp: sock.getPeerCertificate().fingerprint256, alpn: sock.alpnProtocol, sock };
      resolve(out);
    });
  });
}

/** Whether the gateway closes sock within ms without the client sending anything. */
function closedByPeer(sock, ms = 3000) {
  return new Promise((resolve) => {
    const t = setTimeout(() => { sock.destroy(); resolve(false); }, ms);
    sock.on('data', () => {});
    sock.once('close', () => { clearTimeout(t); resolve(true); });
    sock.once('end', () => { clearTimeout(t); sock.destroy(); resolve(true); });
  });
}

async function metric(series) {
  const res = await admin('GET', '/metrics');
  const line = res.body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

before(async () => {
  echo = await startWsEcho({ perMessageDeflate: false });
  site = makeCert('acme.test', ['acme.test', 'www.acme.test']);
  adminPort = await freePort();
  httpPort = await freePort();
  gw = await startGateway(['--upstream', echo.addr, '--workers', '2', '--cert', site.cert, '--key', site.key,
    '--key_permissions', 'any', '--admin', `127.0.0.1:${adminPort}`, '--listen_http', `127.0.0.1:${httpPort}`,
    '--log_level', 'info']);
});
after(cleanup);

test('TLS-ALPN-01: acme-tls/1 gets the pushed challenge, http/1.1 the real certificate', T, async () => {
  const siteFp = new crypto.X509Certificate(fs.readFileSync(site.cert)).fingerprint256;
  const ch = challengeCert('acme.test');
  assert.equal((await admin('PUT', '/acme/tls-alpn-01/ACME.test', ch.pem)).status, 204);
  const served0 = await metric('wsgate_acme_challenge_requests_total{type="tls-alpn-01",result="served"}');

  const a = await handshake('acme.test', ['acme-tls/1']);
  assert.equal(a.alpn, 'acme-tls/1');
  assert.equal(a.fp, ch.fp, 'the challenge certificate');
  assert.ok(await closedByPeer(a.sock), 'the gateway closes an acme-tls/1 connection after the handshake');

  // a normal client, same name, while the challenge is held: the configured certificate
  const n = await handshake('acme.test', ['http/1.1']);
  assert.equal(n.alpn, 'http/1.1');
  assert.equal(n.fp, siteFp);
  n.sock.write('GET / HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n');
  const r = await readResponse(new Reader(n.sock));
  assert.ok(r.status >= 200 && r.status < 600, 'HTTP still served');
  n.sock.destroy();
  // offering both: the server's order picks http/1.1
  const both = await handshake('acme.test', ['acme-tls/1', 'http/1.1']);
  assert.equal(both.alpn, 'http/1.1');
  assert.equal(both.fp, siteFp);
  both.sock.destroy();
  // no ALPN at all: unaffected
  const none = await handshake('acme.test', undefined);
  assert.equal(none.fp, siteFp);
  none.sock.destroy();

  // a replacement is served from then on
  const ch2 = challengeCert('acme.test');
  assert.equal((await admin('PUT', '/acme/tls-alpn-01/acme.test', ch2.pem)).status, 204);
  const b = await handshake('acme.test', ['acme-tls/1']);
  assert.equal(b.fp, ch2.fp);
  b.sock.destroy();

  // no challenge for that name: the handshake fails
  await assert.rejects(handshake('www.acme.test', ['acme-tls/1']));
  await assert.rejects(handshake(undefined, ['acme-tls/1']));
  // DELETE, then acme-tls/1 fails; a second DELETE is 404
  assert.equal((await admin('DELETE', '/acme/tls-alpn-01/acme.test')).status, 204);
  assert.equal((await admin('DELETE', '/acme/tls-alpn-01/acme.test')).status, 404);
  await assert.rejects(handshake('acme.test', ['acme-tls/1']));
  const after1 = await handshake('acme.test', ['http/1.1']);
  assert.equal(after1.fp, siteFp);
  after1.sock.destroy();

  assert.equal(await metric('wsgate_acme_challenge_requests_total{type="tls-alpn-01",result="served"}'), served0 + 2);
  assert.ok(await metric('wsgate_acme_challenge_requests_total{type="tls-alpn-01",result="unknown"}') >= 3);
});

test('TLS-ALPN-01: bad pushes are refused with a reason', T, async () => {
  const good = challengeCert('bad.test');
  const other = challengeCert('bad.test');
  const cases = [
    ['garbage', 'hello, not a PEM', /exactly one PEM certificate/],
    ['truncated PEM', good.cert.slice(0, 200) + good.key, /does not parse/],
    ['certificate only', good.cert, /private key/],
    ['key of another certificate', good.cert + other.key, /does not match/],
    ['no acmeIdentifier', (() => { const c = challengeCert('bad.test', { acmeId: false }); return c.pem; })(), /lacks the acmeIdentifier/],
    ['acmeIdentifier not critical', challengeCert('bad.test', { critical: false }).pem, /not critical/],
    ['acmeIdentifier of 16 bytes', challengeCert('bad.test', { idLen: 16 }).pem, /32 bytes/],
    ['SAN without the name', challengeCert('bad.test', { san: 'other.test' }).pem, /subjectAltName/],
    ['two certificates', good.cert + other.cert + good.key, /exactly one/],
  ];
  for (const [what, body, why] of cases) {
    const r = await admin('PUT', '/acme/tls-alpn-01/bad.test', body);
    assert.equal(r.status, 400, what);
    assert.match(r.body, why, what);
    assert.equal(r.body.split('\n').filter(Boolean).length, 1, `${what}: one line`);
    assert.match(r.headers['content-type'], /^text\/plain/);
  }
  for (const name of ['bad_name.test', '-a.test', 'a..test', 'a.test.', 'x'.repeat(254), 'a b', '%41.test', '']) {
    const r = await admin('PUT', `/acme/tls-alpn-01/${encodeURIComponent(name).replace(/%2E/g, '.')}`, good.pem);
    assert.equal(r.status, 400, `name ${JSON.stringify(name)}`);
  }
  // nothing was held by any of it
  assert.equal((await admin('GET', '/acme')).body, '');
  await assert.rejects(handshake('bad.test', ['acme-tls/1']));
});

test('admin: body limits, methods, listing', T, async () => {
  // 413 above 16 KiB (the head alone: nothing unread when the gateway closes)
  const big = await plain(adminPort, 'PUT /acme/http-01/tok HTTP/1.1\r\nHost: a\r\nContent-Length: 16385\r\n\r\n');
  assert.equal(big.status, 413);
  // exactly 16 KiB is read (and refused as a key authorization, not as a size)
  const full = await admin('PUT', '/acme/http-01/tok', 'a'.repeat(16384));
  assert.equal(full.status, 400);
  assert.match(full.body, /1 to 1024 bytes/);
  // PUT without a Content-Length, a chunked PUT: 400
  assert.equal((await plain(adminPort, 'PUT /acme/http-01/tok HTTP/1.1\r\nHost: a\r\n\r\n')).status, 400);
  assert.equal((await plain(adminPort, 'PUT /acme/http-01/tok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n')).status, 400);
  // a body sent in pieces is waited for
  const sock = net.connect({ host: '127.0.0.1', port: adminPort });
  await new Promise((r) => sock.once('connect', r));
  const reader = new Reader(sock);
  sock.write('PUT /acme/http-01/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nslow.');
  await sleep(200);
  sock.write('abcde');
  assert.equal((await readResponse(reader)).status, 204);
  sock.destroy();
  // methods
  assert.equal((await admin('POST', '/acme')).status, 405);
  assert.equal((await admin('GET', '/acme/http-01/slow')).status, 405);
  assert.equal((await admin('POST', '/acme/tls-alpn-01/a.test', 'x')).status, 405);
  assert.equal((await admin('PUT', '/acme/dns-01/x', 'x')).status, 404);
  assert.equal((await admin('DELETE', '/acme/http-01/slow')).status, 204);
  // the listing: sorted per type, http-01 first
  const ch = challengeCert('b.list.test'), ch2 = challengeCert('a.list.test');
  assert.equal((await admin('PUT', '/acme/tls-alpn-01/b.list.test', ch.pem)).status, 204);
  assert.equal((await admin('PUT', '/acme/tls-alpn-01/a.list.test', ch2.pem)).status, 204);
  assert.equal((await admin('PUT', '/acme/http-01/zz', 'zz.k')).status, 204);
  assert.equal((await admin('PUT', '/acme/http-01/Aa', 'Aa.k')).status, 204);
  const list = await admin('GET', '/acme');
  assert.equal(list.status, 200);
  assert.equal(list.body, 'http-01 Aa\nhttp-01 zz\ntls-alpn-01 a.list.test\ntls-alpn-01 b.list.test\n');
  assert.equal(await metric('wsgate_acme_challenges{type="http-01"}'), 2);
  assert.equal(await metric('wsgate_acme_challenges{type="tls-alpn-01"}'), 2);
  for (const p of ['/acme/http-01/zz', '/acme/http-01/Aa', '/acme/tls-alpn-01/a.list.test', '/acme/tls-alpn-01/b.list.test'])
    assert.equal((await admin('DELETE', p)).status, 204);
  assert.equal((await admin('GET', '/acme')).body, '');
  // at most 64 of a kind: the 65th is 507, a replacement still fits
  for (let i = 0; i < 64; i++) assert.equal((await admin('PUT', `/acme/http-01/t${i}`, `t${i}.k`)).status, 204);
  const over = await admin('PUT', '/acme/http-01/t64', 't64.k');
  assert.equal(over.status, 507);
  assert.equal((await admin('PUT', '/acme/http-01/t0', 't0.new')).status, 204);
  for (let i = 0; i < 64; i++) assert.equal((await admin('DELETE', `/acme/http-01/t${i}`)).status, 204);
  assert.equal(await metric('wsgate_acme_challenges{type="http-01"}'), 0);
});

test('HTTP-01 on listen_http: key authorization, 404, 308, 400, 431', T, async () => {
  const keyauth = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI';
  assert.equal((await admin('PUT', '/acme/http-01/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA', keyauth)).status, 204);
  const served0 = await metric('wsgate_acme_challenge_requests_total{type="http-01",result="served"}');
  const redirects0 = await metric('wsgate_http_redirects_total');

  const ok = await plain(httpPort, 'GET /.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA HTTP/1.1\r\nHost: acme.test\r\n\r\n');
  assert.equal(ok.status, 200);
  assert.equal(ok.body.toString(), keyauth);
  assert.match(ok.headers['content-type'], /^text\/plain/);
  assert.equal(ok.headers.connection, 'close');
  assert.ok(ok.closed);
  const head = await plain(httpPort, 'HEAD /.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA HTTP/1.1\r\nHost: acme.test\r\n\r\n');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String(keyauth.length));

  const unknown = await plain(httpPort, 'GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: acme.test\r\n\r\n');
  assert.equal(unknown.status, 404);

  const redir = await plain(httpPort, 'GET /chat/room?x=1&y=%20 HTTP/1.1\r\nHost: acme.test:80\r\n\r\n');
  assert.equal(redir.status, 308);
  assert.equal(redir.headers.location, `https://acme.test:${gw.port}/chat/room?x=1&y=%20`);
  const redir6 = await plain(httpPort, 'POST / HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\n\r\n');
  assert.equal(redir6.status, 308);
  assert.equal(redir6.headers.location, `https://[::1]:${gw.port}/`);
  // a challenge path with another method is redirected too
  assert.equal((await plain(httpPort, 'POST /.well-known/acme-challenge/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n')).status, 308);

  assert.equal((await plain(httpPort, 'GET / HTTP/1.0\r\n\r\n')).status, 400, 'no Host (1.0)');
  assert.equal((await plain(httpPort, 'GET / HTTP/1.1\r\n\r\n')).status, 400, 'no Host (1.1)');
  assert.equal((await plain(httpPort, 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n')).status, 400, 'bad Host');
  assert.equal((await plain(httpPort, 'GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n')).status, 400);
  const huge = await plain(httpPort, `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(9000)}\r\n\r\n`);
  assert.equal(huge.status, 431);

  // DELETE, then 404
  assert.equal((await admin('DELETE', '/acme/http-01/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA')).status, 204);
  assert.equal((await plain(httpPort, 'GET /.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA HTTP/1.1\r\nHost: acme.test\r\n\r\n')).status, 404);

  // bad tokens and key authorizations
  for (const tok of ['a.b', 'a%20b', 'x'.repeat(129), 'a+b', 'a=']) assert.equal((await admin('PUT', `/acme/http-01/${tok}`, 'k')).status, 400, tok);
  assert.equal((await admin('PUT', '/acme/http-01/', 'k')).status, 400);
  assert.equal((await admin('PUT', `/acme/http-01/${'x'.repeat(128)}`, 'k')).status, 204);
  assert.equal((await admin('DELETE', `/acme/http-01/${'x'.repeat(128)}`)).status, 204);
  for (const body of ['', 'a b', 'a\tb', 'k'.repeat(1025), 'caf\u00e9']) {
    const r = await admin('PUT', '/acme/http-01/tok', body);
    assert.equal(r.status, 400, JSON.stringify(body.slice(0, 20)));
    assert.match(r.body, /key authorization/);
  }
  assert.equal((await admin('PUT', '/acme/http-01/tok', 'k'.repeat(1024))).status, 204);
  assert.equal((await admin('DELETE', '/acme/http-01/tok')).status, 204);
  assert.equal((await admin('DELETE', '/acme/http-01/tok')).status, 404);

  assert.equal(await metric('wsgate_acme_challenge_requests_total{type="http-01",result="served"}'), served0 + 2);
  assert.equal(await metric('wsgate_http_redirects_total'), redirects0 + 3);
});

test('listen_http holds at most 256 connections; beyond, new ones are closed at once', T, async () => {
  const open = async () => {
    const sock = net.connect({ host: '127.0.0.1', port: httpPort });
    await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
    return sock;
  };
  /** Resolves 'closed' when the gateway ends the connection without a byte, 'open' after ms. */
  const fate = (sock, ms) => new Promise((resolve) => {
    let got = 0;
    const t = setTimeout(() => resolve(got ? 'data' : 'open'), ms);
    sock.on('data', (d) => { got += d.length; });
    sock.once('close', () => { clearTimeout(t); resolve(got ? 'data' : 'closed'); });
    sock.on('error', () => {});
  });
  const held = [];
  try {
    for (let i = 0; i < 256; i++) held.push(await open());
    await sleep(200); // every one accepted and counted
    const extra = await open();
    assert.equal(await fate(extra, 2000), 'closed', 'the 257th connection was not closed');
    // the open ones are still served: one of them asks for a redirect
    held[0].write('GET /x HTTP/1.1\r\nHost: acme.test\r\n\r\n');
    const answer = await new Promise((resolve) => {
      let buf = '';
      held[0].on('data', (d) => { buf += d; });
      held[0].once('close', () => resolve(buf));
    });
    assert.match(answer, /^HTTP\/1\.1 308 /);
    // once some are gone, new connections are served again
    for (const s of held.splice(0, 10)) s.destroy();
    await sleep(200);
    const again = await plain(httpPort, 'GET /y HTTP/1.1\r\nHost: acme.test\r\n\r\n');
    assert.equal(again.status, 308);
    // the TLS listener never noticed
    const hs = await handshake('acme.test', ['http/1.1']);
    assert.equal(hs.alpn, 'http/1.1');
    hs.sock.destroy();
  } finally {
    for (const s of held) s.destroy();
  }
});

test('WebSockets keep echoing while challenges come and go', T, async () => {
  const N = 6;
  const socks = [];
  let closed = 0, received = 0;
  for (let i = 0; i < N; i++) {
    const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/ws`, { rejectUnauthorized: false, servername: 'acme.test', perMessageDeflate: false });
    await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
    ws.on('message', () => { received++; });
    ws.on('close', () => { closed++; });
    socks.push(ws);
  }
  let sent = 0, stop = false;
  const pump = (async () => {
    while (!stop) {
      for (const ws of socks) { ws.send(`m${sent}`); sent++; }
      await sleep(10);
    }
  })();
  for (let round = 0; round < 8; round++) {
    const ch = challengeCert('acme.test');
    assert.equal((await admin('PUT', '/acme/tls-alpn-01/acme.test', ch.pem)).status, 204);
    assert.equal((await admin('PUT', `/acme/http-01/r${round}`, `r${round}.k`)).status, 204);
    const a = await handshake('acme.test', ['acme-tls/1']);
    assert.equal(a.fp, ch.fp);
    a.sock.destroy();
    assert.equal((await plain(httpPort, `GET /.well-known/acme-challenge/r${round} HTTP/1.1\r\nHost: acme.test\r\n\r\n`)).body.toString(), `r${round}.k`);
    assert.equal((await admin('DELETE', '/acme/tls-alpn-01/acme.test')).status, 204);
    assert.equal((await admin('DELETE', `/acme/http-01/r${round}`)).status, 204);
    await sleep(40); /* the pump sends between rounds too (openssl blocks this loop while it runs) */
  }
  stop = true;
  await pump;
  await waitFor(() => received === sent, 10000, `echoes (${received}/${sent})`);
  assert.equal(closed, 0, 'no WebSocket closed');
  assert.ok(sent >= N * 16, `messages sent: ${sent}`);
  for (const ws of socks) ws.close(1000);
  assert.equal((await admin('GET', '/acme')).body, '');
});
