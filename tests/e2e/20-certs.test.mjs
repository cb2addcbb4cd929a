// wsgate-certs against real peers: what `gen` writes verifies with `openssl verify
// -verify_hostname / -verify_ip` (against the generated CA, or the certificate itself when
// self-signed), `check` answers with the documented exit codes, and wsgate serves a generated pair
// (openssl s_client -servername NAME sees the same fingerprint and verifies it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TOP, startGateway, startHttpEcho, run, tmpDir, cleanup } from './lib.mjs';

const CERTS = path.resolve(TOP, process.env.WSGATE_CERTS_BIN || 'build/release/wsgate-certs');
const T = { timeout: 30000 };
let dir, echo;

/** Runs wsgate-certs; {code, stdout, stderr}. */
function certs(...args) {
  const r = spawnSync(CERTS, args, { encoding: 'utf8', timeout: 20000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const f = (name) => path.join(dir, name);

/** gen must succeed; returns {cert, key}. */
function gen(base, names, extra = []) {
  const cert = f(`${base}.pem`), key = f(`${base}.key`);
  const r = certs('gen', ...names.flatMap((n) => ['--name', n]), ...extra, cert, key);
  assert.equal(r.code, 0, `gen ${base}: ${r.stderr}`);
  return { cert, key };
}

/** openssl verify with one -verify_hostname / -verify_ip check; {ok, out}. */
async function verify(cert, caFile, check) {
  const [flag, value] = check;
  const r = await run('openssl', ['verify', '-CAfile', caFile, flag, value, cert]);
  return { ok: r.code === 0 && /: OK\s*$/.test(r.out), out: r.out };
}

/** `openssl x509 -fingerprint -sha256` of a PEM file, as "AB:CD:...". */
async function fingerprint(file) {
  const r = await run('openssl', ['x509', '-in', file, '-noout', '-fingerprint', '-sha256']);
  const m = /Fingerprint=([0-9A-F:]+)/i.exec(r.out);
  assert.ok(m, r.out);
  return m[1].toUpperCase();
}

before(async () => {
  if (!fs.existsSync(CERTS)) throw new Error(`wsgate-certs not found: ${CERTS} (set WSGATE_CERTS_BIN)`);
  dir = fs.mkdtempSync(path.join(tmpDir(), 'certs-'));
  echo = await startHttpEcho();
});
after(cleanup);

test('--help lists the commands; bad usage exits 64', T, () => {
  const h = certs('--help');
  assert.equal(h.code, 0);
  assert.match(h.stdout, /\bgen\b/);
  assert.match(h.stdout, /\bcheck\b/);
  assert.equal(certs().code, 64);
  assert.equal(certs('frobnicate').code, 64);
  const noName = certs('gen', f('x.pem'), f('x.key'));
  assert.equal(noName.code, 64);
  assert.match(noName.stderr, /wsgate-certs gen: give at least one --name/);
  assert.equal(certs('gen', '--name', 'a..b', f('x.pem'), f('x.key')).code, 64);
  assert.equal(certs('check', f('x.pem')).code, 64);
  assert.equal(certs('check', 'a', 'b', '--warn-days', 'soon').code, 64);
  assert.equal(fs.existsSync(f('x.pem')), false);
});

test('self-signed: verifies against itself for DNS, wildcard, IPv4 and IPv6 names', T, async () => {
  const { cert, key } = gen('ss', ['ss.test', '*.ss.test', '127.0.0.1', '::1']);
  for (const check of [['-verify_hostname', 'ss.test'], ['-verify_hostname', 'www.ss.test'],
    ['-verify_ip', '127.0.0.1'], ['-verify_ip', '::1']]) {
    const v = await verify(cert, cert, check);
    assert.ok(v.ok, `${check.join(' ')}:\n${v.out}`);
  }
  for (const check of [['-verify_hostname', 'other.test'], ['-verify_hostname', 'a.b.ss.test'],
    ['-verify_ip', '127.0.0.2']]) {
    const v = await verify(cert, cert, check);
    assert.ok(!v.ok, `${check.join(' ')} should fail:\n${v.out}`);
  }
  assert.equal(fs.statSync(key).mode & 0o777, 0o600);
});

test('--ca-out: the leaf chains to the new CA, with the right extensions', T, async () => {
  const { cert, key } = gen('leaf', ['leaf.test', '*.leaf.test', '127.0.0.1'], ['--ca-out', f('ca')]);
  const ca = f('ca/ca.pem');
  for (const check of [['-verify_hostname', 'leaf.test'], ['-verify_hostname', 'api.leaf.test'], ['-verify_ip', '127.0.0.1']]) {
    const v = await verify(cert, ca, check);
    assert.ok(v.ok, `${check.join(' ')}:\n${v.out}`);
  }
  assert.ok(!(await verify(cert, f('ss.pem'), ['-verify_hostname', 'leaf.test'])).ok, 'verified against an unrelated anchor');
  assert.equal(fs.statSync(key).mode & 0o777, 0o600);
  assert.equal(fs.statSync(f('ca/ca.key')).mode & 0o777, 0o600);
  const caText = (await run('openssl', ['x509', '-in', ca, '-noout', '-text'])).out;
  assert.match(caText, /CA:TRUE/);
  assert.match(caText, /Certificate Sign/);
  const leafText = (await run('openssl', ['x509', '-in', cert, '-noout', '-text'])).out;
  assert.match(leafText, /CA:FALSE/);
  assert.match(leafText, /TLS Web Server Authentication/);
  assert.match(leafText, /Authority Key Identifier/);
  assert.match(leafText, /DNS:leaf\.test, DNS:\*\.leaf\.test, IP Address:127\.0\.0\.1/);
  // the file holds the leaf only: the CA file is the trust anchor
  assert.equal(fs.readFileSync(cert, 'utf8').match(/BEGIN CERTIFICATE/g).length, 1);
});

test('--ca CERT KEY: signs with an existing CA', T, async () => {
  const { cert } = gen('signed', ['signed.test'], ['--ca', f('ca/ca.pem'), f('ca/ca.key'), '--days', '30']);
  const v = await verify(cert, f('ca/ca.pem'), ['-verify_hostname', 'signed.test']);
  assert.ok(v.ok, v.out);
});

test('check: exit codes, one-sentence problems, JSON with the openssl fingerprint', T, async () => {
  const good = certs('check', f('leaf.pem'), f('leaf.key'), '--ca', f('ca/ca.pem'), '--name', 'x.leaf.test', '--name', '127.0.0.1', '--json');
  assert.equal(good.code, 0, good.stdout + good.stderr);
  const j = JSON.parse(good.stdout);
  assert.equal(j.ok, true);
  assert.deepEqual(j.problems, []);
  assert.deepEqual(j.names, ['leaf.test', '*.leaf.test', '127.0.0.1']);
  assert.ok(j.days_left >= 89 && j.days_left <= 90, `days_left ${j.days_left}`);
  assert.ok(!Number.isNaN(Date.parse(j.not_after)));
  assert.equal(j.fingerprint_sha256, await fingerprint(f('leaf.pem')));

  const mismatch = certs('check', f('leaf.pem'), f('ss.key'));
  assert.equal(mismatch.code, 1);
  assert.equal(mismatch.stderr.trim(), `${f('ss.key')}: private key does not match ${f('leaf.pem')}`);

  const wrong = certs('check', f('leaf.pem'), f('leaf.key'), '--name', 'www.example.org');
  assert.equal(wrong.code, 1);
  assert.equal(wrong.stderr.trim(),
    `${f('leaf.pem')}: name www.example.org is not covered (covers leaf.test, *.leaf.test, 127.0.0.1)`);

  const untrusted = certs('check', f('leaf.pem'), f('leaf.key'), '--ca', f('ss.pem'));
  assert.equal(untrusted.code, 1);
  assert.match(untrusted.stderr, /leaf\.pem: chain does not verify against .*ss\.pem/);

  gen('soon', ['soon.test'], ['--days', '5']);
  const soon = certs('check', f('soon.pem'), f('soon.key'), '--warn-days', '30');
  assert.equal(soon.code, 2, soon.stderr);
  assert.match(soon.stderr, /soon\.pem: certificate expires on \d{4}-\d\d-\d\d, in [45] days/);
  assert.equal(certs('check', f('soon.pem'), f('soon.key'), '--warn-days', '3').code, 0);
});

test('wsgate serves the generated pairs: s_client sees and verifies them', T, async () => {
  const gw = await startGateway(['--upstream', echo.addr, '--cert', f('leaf.pem'), '--key', f('leaf.key'),
    '--cert', f('ss.pem'), '--key', f('ss.key')]);
  const served = async (args) => {
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${gw.port}`, '-showcerts', '-verify_return_error', ...args]);
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.out);
    assert.ok(pem, r.out);
    const file = path.join(dir, `served-${Math.random().toString(36).slice(2)}.pem`);
    fs.writeFileSync(file, `${pem[0]}\n`);
    return { out: r.out, fp: await fingerprint(file) };
  };
  const leafFp = await fingerprint(f('leaf.pem'));
  for (const name of ['leaf.test', 'www.leaf.test']) {
    const s = await served(['-servername', name, '-CAfile', f('ca/ca.pem'), '-verify_hostname', name]);
    assert.match(s.out, /Verify return code: 0 \(ok\)/, s.out);
    assert.equal(s.fp, leafFp);
  }
  const byIp = await served(['-noservername', '-CAfile', f('ca/ca.pem'), '-verify_ip', '127.0.0.1']);
  assert.match(byIp.out, /Verify return code: 0 \(ok\)/, byIp.out);
  assert.equal(byIp.fp, leafFp);
  const ss = await served(['-servername', 'api.ss.test', '-CAfile', f('ss.pem'), '-verify_hostname', 'api.ss.test']);
  assert.match(ss.out, /Verify return code: 0 \(ok\)/, ss.out);
  assert.equal(ss.fp, await fingerprint(f('ss.pem')));
});
