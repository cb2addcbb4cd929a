// `wsgate-certs rotate` against a running wsgate: ten rotations under load (500 WebSockets
// exchanging messages, a loop of new TLS handshakes) with nothing dropped and every handshake that
// starts after a rotate returned served the new certificate; broken pairs (mismatched key, expired,
// wrong name, unreadable) and a gateway that refuses the reload leave the served certificate alone;
// old generations are freed once their connections close (GET /certs through `status --json`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { TOP, startGateway, startWsEcho, run, tmpDir, cleanup, waitFor, withTimeout, mapLimit, sleep } from './lib.mjs';

const CERTS = path.resolve(TOP, process.env.WSGATE_CERTS_BIN || 'build/release/wsgate-certs');
const NAME = 'rot.test';
const NWS = 500;
const ROTATIONS = 10;
const T = { timeout: 90000 };
let gw, echo, dir, conf, admin, pairs;

const f = (name) => path.join(dir, name);
const fpOf = (pem) => new crypto.X509Certificate(fs.readFileSync(pem)).fingerprint256.toUpperCase();

function certsSync(...args) {
  const r = spawnSync(CERTS, args, { encoding: 'utf8', timeout: 20000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
/** Async so that the event loop (WebSocket traffic, handshakes) keeps running meanwhile. */
const rotate = (cert, key, extra = []) => run(CERTS, ['rotate', '--gateway', admin, '--connect', `127.0.0.1:${gw.port}`,
  '--name', NAME, '--name', '127.0.0.1', '--dest-cert', f('cur.crt'), '--dest-key', f('cur.key'),
  '--warn-days', '7', ...extra, cert, key], { timeout: 30000 });
const status = async () => {
  const r = await run(CERTS, ['status', '--gateway', admin, '--json', '--warn-days', '0']);
  assert.equal(r.code, 0, r.out);
  return JSON.parse(r.out);
};

/** One new TLS handshake; resolves the served leaf's SHA-256 fingerprint. */
function handshake(servername = NAME) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port: gw.port, servername, rejectUnauthorized: false });
    const t = setTimeout(() => { sock.destroy(); reject(new Error('handshake timeout')); }, 10000);
    sock.once('secureConnect', () => {
      clearTimeout(t);
      const fp = sock.getPeerCertificate().fingerprint256;
      sock.destroy();
      resolve(fp);
    });
    sock.once('error', (e) => { clearTimeout(t); reject(e); });
  });
}

before(async () => {
  if (!fs.existsSync(CERTS)) throw new Error(`wsgate-certs not found: ${CERTS} (set WSGATE_CERTS_BIN)`);
  dir = fs.mkdtempSync(path.join(tmpDir(), 'rotate-'));
  pairs = [];
  for (let i = 0; i <= ROTATIONS; i++) {
    const cert = f(`p${i}.crt`), key = f(`p${i}.key`);
    const r = certsSync('gen', '--name', NAME, '--name', '127.0.0.1', '--days', '30', cert, key);
    assert.equal(r.code, 0, r.stderr);
    pairs.push({ cert, key, fp: fpOf(cert) });
  }
  fs.copyFileSync(pairs[0].cert, f('cur.crt'));
  fs.copyFileSync(pairs[0].key, f('cur.key'));
  echo = await startWsEcho({ perMessageDeflate: false });
  admin = `unix:${f('admin.sock')}`;
  conf = f('wsgate.conf');
  fs.writeFileSync(conf, `upstream ${echo.addr}\ncert ${f('cur.crt')}\nkey ${f('cur.key')}\nworkers 2\nadmin ${admin}\n`);
  gw = await startGateway(['-c', conf]);
});
after(cleanup);

let wss = [];

test('10 rotations under load: no failed handshake, no closed WebSocket, no lost message', T, async () => {
  assert.equal(await handshake(), pairs[0].fp);
  // 500 established WebSockets, all on generation 1
  const stats = { closed: 0, errors: [], bad: 0 };
  wss = await mapLimit(Array.from({ length: NWS }, (_, i) => i), 25, (i) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/`, { rejectUnauthorized: false, servername: NAME, perMessageDeflate: false });
    ws.sent = 0;
    ws.got = 0;
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.on('message', (d) => {
      if (d.toString() !== `${i}:${ws.got}`) stats.bad++;
      ws.got++;
    });
    ws.on('close', () => { stats.closed++; });
    ws.on('error', (e) => stats.errors.push(e.message));
  }));
  // continuous traffic: every 10 ms the next 5 sockets send one message each (~500 msg/s)
  let next = 0;
  const traffic = setInterval(() => {
    for (let k = 0; k < 5; k++) {
      const i = next++ % NWS, ws = wss[i];
      if (ws.readyState === WebSocket.OPEN) ws.send(`${i}:${ws.sent++}`);
    }
  }, 10);
  // a loop of new handshakes, two at a time; each remembers when it started
  const shakes = [];
  let shaking = true;
  const loop = async () => {
    while (shaking) {
      const rec = { start: Date.now() };
      shakes.push(rec);
      try { rec.fp = await handshake(); } catch (e) { rec.err = e.message; }
      await sleep(5);
    }
  };
  const loops = [loop(), loop()];
  const returned = []; // Date.now() when rotate #i returned
  try {
    for (let i = 1; i <= ROTATIONS; i++) {
      await sleep(300);
      const r = await rotate(pairs[i].cert, pairs[i].key);
      returned[i] = Date.now();
      assert.equal(r.code, 0, `rotation #${i}: ${r.out}`);
      assert.match(r.out, /rotated: sha256 /);
    }
    await sleep(300);
  } finally {
    shaking = false;
    await Promise.all(loops);
    clearInterval(traffic);
  }
  // every message echoed, in order; no WebSocket closed
  await waitFor(() => wss.every((ws) => ws.got === ws.sent), 15000, 'all echoes');
  const sent = wss.reduce((a, ws) => a + ws.sent, 0), got = wss.reduce((a, ws) => a + ws.got, 0);
  assert.ok(sent > 1000, `only ${sent} messages sent`);
  assert.equal(got, sent, 'lost messages');
  assert.equal(stats.bad, 0, 'echoes out of order or corrupted');
  assert.equal(stats.closed, 0, 'WebSockets closed during the rotations');
  assert.deepEqual(stats.errors, []);
  // every handshake succeeded; those that started after rotate #i returned (and before #i+1
  // returned) saw pair i, those that overlapped a rotation saw pair i-1 or i
  const failed = shakes.filter((s) => s.err);
  assert.equal(failed.length, 0, `failed handshakes: ${failed.slice(0, 3).map((s) => s.err).join('; ')}`);
  assert.ok(shakes.length >= 20, `only ${shakes.length} handshakes`);
  for (const s of shakes) {
    let i = 0;
    while (i < ROTATIONS && returned[i + 1] <= s.start) i++;
    const ok = s.fp === pairs[i].fp || (i < ROTATIONS && s.fp === pairs[i + 1].fp);
    assert.ok(ok, `a handshake that started after rotation #${i} returned saw ${s.fp}, not ${pairs[i].fp}`);
  }
  // the old generation is still alive for the 500 WebSockets; new handshakes use the newest
  const st = await status();
  assert.equal(st.generation, 1 + ROTATIONS);
  assert.equal(st.certificates[0].fingerprint_sha256, pairs[ROTATIONS].fp);
  assert.deepEqual(st.certificates[0].names.slice().sort(), ['127.0.0.1', NAME]);
  assert.equal(st.certificates[0].default, true);
  assert.ok(st.certificates[0].seconds_left > 29 * 86400);
  const g1 = st.generations.find((g) => g.generation === 1);
  assert.ok(g1 && g1.connections === NWS, `generation 1: ${JSON.stringify(st.generations)}`);
  const text = await run(CERTS, ['status', '--gateway', admin, '--warn-days', '0']);
  assert.equal(text.code, 0, text.out);
  assert.match(text.out, new RegExp(`rot\\.test\\s+(29|30)\\s+\\S+Z\\s+${pairs[ROTATIONS].fp}`));
  assert.match(text.out, /^1\s+no\s+500$/m);
});

test('generations are freed once their connections close', T, async () => {
  for (const ws of wss) ws.close(1000);
  await waitFor(async () => (await status()).live_generations === 1, 15000, 'one live generation');
  const st = await status();
  assert.deepEqual(st.generations.map((g) => g.generation), [1 + ROTATIONS]);
  assert.equal(st.generations[0].current, true);
});

test('broken pairs and a refused reload change nothing on the wire', T, async () => {
  const served = pairs[ROTATIONS].fp;
  const before_ = { cert: fs.readFileSync(f('cur.crt')), key: fs.readFileSync(f('cur.key')) };
  const unchanged = async (what) => {
    assert.equal(await handshake(), served, `${what}: the served certificate changed`);
    assert.deepEqual(fs.readFileSync(f('cur.crt')), before_.cert, `${what}: cur.crt changed`);
    assert.deepEqual(fs.readFileSync(f('cur.key')), before_.key, `${what}: cur.key changed`);
  };
  const gen0 = (await status()).generation;

  // a key that does not match
  let r = await rotate(pairs[0].cert, pairs[1].key);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /refused: .*p1\.key: private key does not match .*p0\.crt/);
  await unchanged('mismatched key');

  // an expired certificate (openssl ca with explicit dates in the past)
  fs.mkdirSync(f('ca'));
  fs.writeFileSync(f('ca/index.txt'), '');
  fs.writeFileSync(f('ca/serial'), '01\n');
  fs.writeFileSync(f('ca/ca.cnf'), `[ca]\ndefault_ca = d\n[d]\ndatabase = ${f('ca/index.txt')}\nnew_certs_dir = ${f('ca')}\n`
    + `serial = ${f('ca/serial')}\ndefault_md = sha256\npolicy = p\nunique_subject = no\ncopy_extensions = copy\n[p]\ncommonName = supplied\n`);
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('old.key'),
    '-out', f('old.csr'), '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME},IP:127.0.0.1`], { stdio: 'ignore' });
  execFileSync('openssl', ['ca', '-batch', '-config', f('ca/ca.cnf'), '-selfsign', '-keyfile', f('old.key'), '-in', f('old.csr'),
    '-out', f('old.crt'), '-startdate', '20230101000000Z', '-enddate', '20240101000000Z', '-notext'], { stdio: 'ignore' });
  r = await rotate(f('old.crt'), f('old.key'));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /refused: .*old\.crt: certificate expired on 2024-01-01/);
  await unchanged('expired certificate');

  // a name the certificate does not cover
  assert.equal(certsSync('gen', '--name', 'other.test', f('other.crt'), f('other.key')).code, 0);
  r = await rotate(f('other.crt'), f('other.key'));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /refused: .*other\.crt: name rot\.test is not covered/);
  await unchanged('wrong name');

  // unreadable files: missing, and (when not root) without read permission
  r = await rotate(f('missing.crt'), pairs[1].key);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /missing\.crt: cannot read: No such file or directory/);
  await unchanged('missing file');
  if (process.getuid() !== 0) {
    fs.copyFileSync(pairs[1].key, f('noperm.key'));
    fs.chmodSync(f('noperm.key'), 0o000);
    r = await rotate(pairs[1].cert, f('noperm.key'));
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /noperm\.key: cannot read: Permission denied/);
    await unchanged('unreadable key');
  }

  // the pair is good but the gateway refuses the reload (a broken config): put back, reload again
  const good = fs.readFileSync(conf, 'utf8');
  fs.writeFileSync(conf, `${good}max_message 12x\n`);
  try {
    r = await rotate(pairs[1].cert, pairs[1].key);
  } finally {
    fs.writeFileSync(conf, good);
  }
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /reload refused by the gateway \(HTTP 409\): .*max_message/);
  assert.match(r.out, /rolled back/);
  await unchanged('refused reload');
  // the previous pair is kept next to the served one
  assert.deepEqual(fs.readFileSync(f('cur.crt.prev')), before_.cert);

  // none of the refusals above built a generation (the rollback reload of the last one did)
  const st = await status();
  assert.ok(st.generation <= gen0 + 1, `generation ${gen0} -> ${st.generation}`);
  assert.equal(st.certificates[0].fingerprint_sha256, served);
});

test('exit codes: 2 when the new certificate expires within --warn-days, 64 for bad usage', T, async () => {
  const r = await rotate(pairs[0].cert, pairs[0].key, ['--warn-days', '60']);
  assert.equal(r.code, 2, r.out);
  assert.match(r.out, /certificate expires on .* \(warning window 60 days\)/);
  assert.equal(await handshake(), pairs[0].fp);
  assert.equal(certsSync('rotate', '--gateway', admin, '--name', NAME, pairs[1].cert, pairs[1].key).code, 64);
  assert.equal(certsSync('status').code, 64);
  const down = certsSync('status', '--gateway', `unix:${f('nobody.sock')}`);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot connect/);
});
