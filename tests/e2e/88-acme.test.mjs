// `wsgate-certs acme` (issue 16) against Debian's pebble, the ACME test server, on loopback:
// pebble's challenge ports point at wsgate (tlsPort at its TLS listener, httpPort at its
// `listen_http` listener, through a small pass-through the test can make lie), names resolve to
// 127.0.0.1 through pebble-challtestsrv's DNS. Issuance through TLS-ALPN-01 while 100 WebSockets
// exchange messages (0 closed), the new certificate served (fingerprint) and issued by Pebble; a
// second run within --renew-days does nothing; issuance through HTTP-01; refusals (a name pebble
// rejects, a wrong challenge answer, an unreachable ACME server, an untrusted one) print a clear
// error, install nothing and leave the served certificate alone; the gateway holds no challenge
// once a run is over.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import {
  TOP, startGateway, startWsEcho, spawnChild, run, tmpDir, cleanup, onCleanup, freePort, tcpAccepts, waitFor, mapLimit,
} from './lib.mjs';

const CERTS = path.resolve(TOP, process.env.WSGATE_CERTS_BIN || 'build/release/wsgate-certs');
const NAME = 'chat.acme.test';
const NAME2 = 'www.acme.test';
const NWS = 100;
const T = { timeout: 120000 };
let dir, gw, echo, admin, httpPort, directory, pebble;
let tamper = false; // the HTTP-01 pass-through answers a wrong key authorization while set

const f = (name) => path.join(dir, name);
const fpOf = (file) => new crypto.X509Certificate(fs.readFileSync(file)).fingerprint256;

function certsSync(...args) {
  const r = spawnSync(CERTS, args, { encoding: 'utf8', timeout: 20000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

const acme = (extra = [], { names = [NAME, NAME2], dirUrl = directory, ca = f('pebble-ca.pem') } = {}) =>
  run(CERTS, ['acme', '--directory', dirUrl, '--email', 'ops@acme.test', ...names.flatMap((n) => ['--name', n]),
    '--gateway', admin, '--connect', `127.0.0.1:${gw.port}`, '--dest-cert', f('site.crt'), '--dest-key', f('site.key'),
    '--ca', ca, '--timeout', '5', '--wait', '30', ...extra], { timeout: 90000 });

/** One new TLS handshake; resolves the served leaf (fingerprint and issuer). */
function served(servername = NAME) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port: gw.port, servername, rejectUnauthorized: false });
    const t = setTimeout(() => { sock.destroy(); reject(new Error('handshake timeout')); }, 10000);
    sock.once('secureConnect', () => {
      clearTimeout(t);
      const c = sock.getPeerCertificate();
      sock.destroy();
      resolve({ fp: c.fingerprint256, issuer: c.issuer?.CN });
    });
    sock.once('error', (e) => { clearTimeout(t); reject(e); });
  });
}

async function heldChallenges() {
  const sock = admin.slice('unix:'.length);
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: sock, path: '/acme', method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  if (!fs.existsSync(CERTS)) throw new Error(`wsgate-certs not found: ${CERTS} (set WSGATE_CERTS_BIN)`);
  dir = fs.mkdtempSync(path.join(tmpDir(), 'acme-'));
  // pebble's own HTTPS certificate, from a development CA the client trusts with --ca
  let r = certsSync('gen', '--name', '127.0.0.1', '--name', 'localhost', '--ca-out', f('pca'), f('pebble.crt'), f('pebble.key'));
  assert.equal(r.code, 0, r.out);
  fs.copyFileSync(f('pca/ca.pem'), f('pebble-ca.pem'));
  // what the gateway serves before ACME: a self-signed pair, 10 days left (inside --renew-days 30)
  r = certsSync('gen', '--name', NAME, '--name', NAME2, '--days', '10', f('site.crt'), f('site.key'));
  assert.equal(r.code, 0, r.out);

  echo = await startWsEcho({ perMessageDeflate: false });
  const tlsPort = await freePort();
  const gwHttp = await freePort();
  admin = `unix:${f('admin.sock')}`;
  fs.writeFileSync(f('wsgate.conf'), `upstream ${echo.addr}\ncert ${f('site.crt')}\nkey ${f('site.key')}\n`
    + `workers 2\nadmin ${admin}\nlisten_http 127.0.0.1:${gwHttp}\n`);
  gw = await startGateway(['-c', f('wsgate.conf')], { port: tlsPort });

  // pebble's HTTP-01 validations go through this pass-through to the gateway's listen_http
  const passThrough = http.createServer((req, res) => {
    if (tamper) {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('not-the-key-authorization');
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: gwHttp, path: req.url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  httpPort = await freePort();
  await new Promise((res) => passThrough.listen(httpPort, '127.0.0.1', res));

  const dnsPort = await freePort(), mgmt = await freePort();
  const cts = spawnChild('pebble-challtestsrv', ['-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dnsPort}`,
    '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${mgmt}`]);
  await waitFor(() => tcpAccepts(mgmt), 10000, `pebble-challtestsrv:\n${cts.log()}`);
  const apiPort = await freePort(), pmgmt = await freePort();
  fs.writeFileSync(f('pebble.json'), JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${apiPort}`, managementListenAddress: `127.0.0.1:${pmgmt}`,
      certificate: f('pebble.crt'), privateKey: f('pebble.key'), httpPort, tlsPort,
      ocspResponderURL: '', externalAccountBindingRequired: false, domainBlocklist: ['blocked.acme.test'],
    },
  }));
  // no random validation sleeps; one good nonce in ten refused (the client must retry badNonce);
  // no reuse of valid authorizations, so every order below answers the challenge it names
  pebble = spawnChild('pebble', ['-config', f('pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`],
    { env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '10', PEBBLE_AUTHZREUSE: '0' } });
  await waitFor(() => tcpAccepts(apiPort), 10000, `pebble:\n${pebble.log()}`);
  directory = `https://127.0.0.1:${apiPort}/dir`;
  onCleanup(() => new Promise((res) => passThrough.close(res)));
});
after(cleanup);

test('TLS-ALPN-01: issued and served while 100 WebSockets keep exchanging messages', T, async () => {
  const before_ = await served();
  assert.equal(before_.fp, fpOf(f('site.crt')));
  const stats = { closed: 0, bad: 0 };
  const wss = await mapLimit(Array.from({ length: NWS }, (_, i) => i), 20, (i) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/`, { rejectUnauthorized: false, servername: NAME, perMessageDeflate: false });
    ws.sent = 0;
    ws.got = 0;
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.on('message', (d) => { if (d.toString() !== `${i}:${ws.got}`) stats.bad++; ws.got++; });
    ws.on('close', () => { stats.closed++; });
  }));
  let next = 0;
  const traffic = setInterval(() => {
    for (let k = 0; k < 5; k++) {
      const i = next++ % NWS, ws = wss[i];
      if (ws.readyState === WebSocket.OPEN) ws.send(`${i}:${ws.sent++}`);
    }
  }, 10);
  let r;
  try {
    r = await acme();
  } finally {
    clearInterval(traffic);
  }
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /account key: made .*acme-account\.key \(mode 0600\)/);
  assert.match(r.out, /challenge: tls-alpn-01 chat\.acme\.test pushed to the gateway/);
  assert.match(r.out, /rotated: sha256 /);
  assert.equal((fs.statSync(f('acme-account.key')).mode & 0o777), 0o600);
  assert.equal((fs.statSync(f('site.key')).mode & 0o777), 0o600);
  // the new certificate is Pebble's, for both names, and it is what the gateway serves now
  const cert = new crypto.X509Certificate(fs.readFileSync(f('site.crt')));
  assert.match(cert.issuer, /Pebble Intermediate CA/);
  assert.match(cert.subjectAltName, /DNS:chat\.acme\.test/);
  assert.match(cert.subjectAltName, /DNS:www\.acme\.test/);
  for (const n of [NAME, NAME2]) assert.equal((await served(n)).fp, cert.fingerprint256, n);
  assert.notEqual(cert.fingerprint256, before_.fp);
  // nothing left behind: no challenge held, no temporary files
  assert.deepEqual(await heldChallenges(), { status: 200, body: '' });
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('acme-new')), []);
  // the WebSockets lived through it, every message echoed
  await waitFor(() => wss.every((ws) => ws.got === ws.sent), 15000, 'all echoes');
  const sent = wss.reduce((a, ws) => a + ws.sent, 0);
  assert.ok(sent > 100, `only ${sent} messages sent`);
  assert.equal(stats.bad, 0);
  assert.equal(stats.closed, 0, 'WebSockets closed during the ACME run');
  for (const ws of wss) ws.close(1000);
});

test('a second run within --renew-days does nothing', T, async () => {
  const fp = fpOf(f('site.crt'));
  const mtime = fs.statSync(f('site.crt')).mtimeMs;
  const r = await acme();
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /nothing to do: every name is served with \d+ days left \(--renew-days 30\)/);
  assert.doesNotMatch(r.out, /order:/);
  assert.equal(fpOf(f('site.crt')), fp);
  assert.equal(fs.statSync(f('site.crt')).mtimeMs, mtime);
  assert.equal((await served()).fp, fp);
});

test('HTTP-01 through listen_http: issued and served', T, async () => {
  const old = fpOf(f('site.crt'));
  const r = await acme(['--challenge', 'http-01', '--renew-days', '0']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /account: .* \(existing\)/);
  assert.match(r.out, /challenge: http-01 chat\.acme\.test pushed to the gateway/);
  assert.match(r.out, /challenge: http-01 www\.acme\.test pushed to the gateway/);
  assert.match(r.out, /rotated: sha256 /);
  const fp = fpOf(f('site.crt'));
  assert.notEqual(fp, old);
  assert.equal((await served()).fp, fp);
  assert.deepEqual(await heldChallenges(), { status: 200, body: '' });
});

test('refusals: clear error, nothing installed, the served certificate unchanged', T, async () => {
  const fp = fpOf(f('site.crt'));
  const bytes = fs.readFileSync(f('site.crt'));
  const unchanged = async (what) => {
    assert.deepEqual(fs.readFileSync(f('site.crt')), bytes, `${what}: site.crt changed`);
    assert.equal((await served()).fp, fp, `${what}: the served certificate changed`);
    assert.deepEqual(await heldChallenges(), { status: 200, body: '' }, `${what}: a challenge is still held`);
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('acme-new')), [], what);
  };

  // a name pebble will not issue for (its domainBlocklist, as a CA's policy would)
  let r = await acme(['--renew-days', '0'], { names: [NAME, 'blocked.acme.test'] });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /newOrder refused: HTTP 400, rejectedIdentifier: .*forbidden by policy.*blocked\.acme\.test/);
  assert.match(r.out, /nothing installed; the served certificate is unchanged/);
  await unchanged('rejected name');

  // a wrong HTTP-01 answer: the authorization turns invalid, with pebble's reason
  tamper = true;
  try {
    r = await acme(['--challenge', 'http-01', '--renew-days', '0']);
  } finally {
    tamper = false;
  }
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /authorization for (chat|www)\.acme\.test: invalid: urn:ietf:params:acme:error:unauthorized: .+/);
  await unchanged('wrong challenge answer');

  // an ACME server that is not there, and one whose certificate is not trusted
  const dead = await freePort();
  r = await acme(['--renew-days', '0'], { dirUrl: `https://127.0.0.1:${dead}/dir` });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /directory: .*127\.0\.0\.1:\d+/);
  await unchanged('unreachable server');
  r = await acme(['--renew-days', '0'], { ca: f('site.crt') });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /the server's certificate is not trusted/);
  await unchanged('untrusted server');

  // bad usage: 64, before any network
  r = await run(CERTS, ['acme', '--directory', 'http://x/dir', '--email', 'a@b']);
  assert.equal(r.code, 64, r.out);
  assert.match(r.out, /--directory: not an https URL/);
  r = await acme(['--challenge', 'dns-01']);
  assert.equal(r.code, 64, r.out);
  r = await acme([], { names: ['*.acme.test'] });
  assert.equal(r.code, 64, r.out);
  assert.match(r.out, /no wildcards/);
  await unchanged('bad usage');
});
