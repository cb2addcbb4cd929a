// ticket_key_file (issue 14): several gateways sharing session ticket keys, checked with
// openssl s_client sessions saved on one gateway and offered to another; wsgate-certs tickets new;
// reload by SIGHUP and by watch_certs; the key file's permissions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startGateway, startHttpEcho, makeCert, run, tmpDir, cleanup, runGateway, waitFor, freePort, TOP } from './lib.mjs';

const CERTS = path.resolve(TOP, process.env.WSGATE_CERTS_BIN || 'build/release/wsgate-certs');
const T = { timeout: 60000 };
let echo, cert, dir;

before(async () => {
  echo = await startHttpEcho();
  cert = makeCert('localhost', ['localhost']);
  dir = tmpDir();
});
after(cleanup);

const key80 = () => crypto.randomBytes(80).toString('base64');
function keyFile(name, lines, mode = 0o600) {
  const p = path.join(dir, name);
  fs.writeFileSync(p, lines.map((l) => `${l}\n`).join(''), { mode });
  fs.chmodSync(p, mode);
  return p;
}
const gateway = (kf, extra = []) => startGateway(['--upstream', echo.addr, '--cert', cert.cert, '--key', cert.key,
  '--ticket_key_file', kf, ...extra]);

const sclient = (port, args, opts) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`,
  '-servername', 'localhost', ...args], opts);

// A session from a full handshake on port (TLS 1.3 tickets arrive after the handshake: keep
// stdin open a moment), saved to a file.
async function newSession(port, ver, name) {
  const sess = path.join(dir, `${name}${ver}.pem`);
  const r = await sclient(port, [ver, '-sess_out', sess], { delayMs: 500 });
  assert.match(r.out, /^New, TLSv1\.[23]/m, r.out);
  assert.ok(fs.existsSync(sess) && fs.statSync(sess).size > 0, `no session saved:\n${r.out}`);
  return sess;
}
async function resumes(port, ver, sess) {
  const r = await sclient(port, [ver, '-sess_in', sess], { delayMs: 200 });
  const m = /^(New|Reused), TLSv1\.[23]/m.exec(r.out);
  assert.ok(m, `no handshake:\n${r.out}`);
  return m[1] === 'Reused';
}

for (const ver of ['-tls1_3', '-tls1_2']) {
  test(`a session from one gateway resumes on another with the same key file (${ver})`, T, async () => {
    const kf = keyFile(`shared${ver}.key`, [key80()]);
    const g1 = await gateway(kf), g2 = await gateway(kf);
    const other = await gateway(keyFile(`other${ver}.key`, [key80()]));
    const noFile = await startGateway(['--upstream', echo.addr, '--cert', cert.cert, '--key', cert.key]);
    const sess = await newSession(g1.port, ver, 'g1');
    assert.equal(await resumes(g2.port, ver, sess), true, 'not resumed on the second gateway');
    assert.equal(await resumes(g1.port, ver, sess), true, 'not resumed on the first gateway');
    // another fleet's keys, or per-process keys: a full handshake, never an error
    assert.equal(await resumes(other.port, ver, sess), false);
    assert.equal(await resumes(noFile.port, ver, sess), false);
  });
}

test('wsgate-certs tickets new, then SIGHUP: new tickets everywhere, old ones still resume', T, async () => {
  const kf = path.join(dir, 'rot.key');
  let r = execFileSync(CERTS, ['tickets', 'new', kf], { encoding: 'utf8' });
  assert.match(r, /1 key, new/);
  assert.equal(fs.statSync(kf).mode & 0o777, 0o600);
  const first = fs.readFileSync(kf, 'utf8').trim().split('\n');
  assert.equal(first.length, 1);
  assert.equal(Buffer.from(first[0], 'base64').length, 80);

  const g1 = await gateway(kf), g2 = await gateway(kf);
  const old = await newSession(g1.port, '-tls1_3', 'rot-old');

  r = execFileSync(CERTS, ['tickets', 'new', kf], { encoding: 'utf8' });
  assert.match(r, /2 keys, the new one first/);
  const second = fs.readFileSync(kf, 'utf8').trim().split('\n');
  assert.equal(second.length, 2);
  assert.equal(second[1], first[0], 'the previous key is kept second');
  assert.notEqual(second[0], first[0]);
  for (const g of [g1, g2]) g.proc.kill('SIGHUP');
  await waitFor(() => /reloaded: .* 2 ticket keys/.test(g1.log()) && /reloaded: .* 2 ticket keys/.test(g2.log()),
    5000, 'both reloaded with 2 keys');
  assert.equal(await resumes(g2.port, '-tls1_3', old), true, 'a ticket of the previous key must still resume');
  const fresh = await newSession(g2.port, '-tls1_3', 'rot-new');
  assert.equal(await resumes(g1.port, '-tls1_3', fresh), true, 'a ticket of the new key must resume on g1');

  // a third rotation drops the first key: its tickets stop resuming (full handshake)
  execFileSync(CERTS, ['tickets', 'new', kf]);
  const third = fs.readFileSync(kf, 'utf8').trim().split('\n');
  assert.deepEqual(third.slice(1), [second[0]]);
  g1.proc.kill('SIGHUP');
  await waitFor(() => (g1.log().match(/reloaded: /g) || []).length >= 2, 5000, 'second reload');
  assert.equal(await resumes(g1.port, '-tls1_3', old), false, 'a retired key must not resume');
  assert.equal(await resumes(g1.port, '-tls1_3', fresh), true);

  // a file it does not understand is left alone
  const junk = keyFile('junk.key', ['not a key']);
  const bad = await run(CERTS, ['tickets', 'new', junk]);
  assert.equal(bad.code, 1, bad.out);
  assert.match(bad.out, /junk\.key:1: not base64/);
  assert.equal(fs.readFileSync(junk, 'utf8'), 'not a key\n');
});

test('watch_certs reloads the key file when it changes; a bad file is refused and the keys stay', T, async () => {
  const kf = keyFile('watched.key', [key80()]);
  const g = await gateway(kf, ['--watch_certs', 'on']);
  const sess = await newSession(g.port, '-tls1_3', 'watched');
  // a broken file: the reload is refused, the keys in use stay
  fs.writeFileSync(kf, 'AAAA\n');
  await waitFor(() => /reload refused.*watched\.key:1: a key is 80 bytes/.test(g.log()), 8000, 'refused reload');
  assert.equal(await resumes(g.port, '-tls1_3', sess), true);
  // a new key alone: the old tickets stop resuming once it is picked up
  fs.writeFileSync(kf, `${key80()}\n`);
  await waitFor(() => /reloaded: .* 1 ticket keys/.test(g.log()), 8000, 'watch_certs reload');
  assert.equal(await resumes(g.port, '-tls1_3', sess), false);
});

test('a key file readable by group or others is refused like a private key; bad files are named', T, async () => {
  const kf = keyFile('open.key', [key80()], 0o640);
  let r = await runGateway(['-t', '--upstream', echo.addr, '--ticket_key_file', kf]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /open\.key: ticket key file is accessible by group or others \(mode 0640\)/);
  r = await runGateway(['-t', '--upstream', echo.addr, '--ticket_key_file', kf, '--key_permissions', 'any']);
  assert.equal(r.code, 0, r.stderr);
  // contents are checked when the gateway starts (and on every reload)
  const short = keyFile('short.key', [crypto.randomBytes(48).toString('base64')]);
  const g = await run(path.resolve(TOP, process.env.WSGATE_BIN || 'build/release/wsgate'),
    ['--listen', `127.0.0.1:${await freePort()}`, '--upstream', echo.addr, '--ticket_key_file', short], { delayMs: 10000 });
  assert.notEqual(g.code, 0);
  assert.match(g.out, /short\.key:1: a key is 80 bytes/);
});
