// testssl.sh (Debian package testssl.sh, command `testssl`) against the wsgate listener: no
// finding rated HIGH or CRITICAL (nor a FATAL scan problem); every finding above OK/INFO is listed.
//
// The listener serves a chain from a throw-away test CA (leaf: ECDSA P-256, SAN localhost and
// 127.0.0.1, 200 days, CRL and OCSP URIs), and testssl is given that CA with --add-ca: a bare
// self-signed certificate would be reported CRITICAL (chain of trust) and HIGH (no CRL/OCSP URI),
// which are findings about the test certificate, not about wsgate's TLS.
//
// Sections run: protocols (-p), cipher categories (-s), forward secrecy (-f), server preference
// (-P), server defaults / certificate (-S), HTTP headers (-h), vulnerabilities (-U). Left out,
// to stay well under a minute: per-cipher listing (-E) and client simulations (-c), which only
// report INFO. Runtime here: ~36 s (release build).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startGateway, startHttpEcho, cleanup, tmpDir, run } from './lib.mjs';

after(cleanup);

function findTestssl() {
  for (const name of ['testssl', 'testssl.sh']) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

/** A CA and a leaf it signed, with CRL and OCSP URIs. Returns {ca, cert, key} paths. */
function makeChain() {
  const dir = path.join(tmpDir(), 'testssl-pki');
  fs.mkdirSync(dir, { recursive: true });
  const f = (n) => path.join(dir, n);
  const ossl = (args) => execFileSync('openssl', args, { stdio: 'ignore' });
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'),
    '-out', f('ca.pem'), '-days', '400', '-subj', '/CN=wsgate e2e test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('leaf.key'),
    '-out', f('leaf.csr'), '-subj', '/CN=localhost']);
  fs.writeFileSync(f('ext.cnf'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    'crlDistributionPoints=URI:http://127.0.0.1:9/ca.crl',
    'authorityInfoAccess=OCSP;URI:http://127.0.0.1:9/ocsp',
    '',
  ].join('\n'));
  ossl(['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '200', '-sha256', '-extfile', f('ext.cnf'), '-out', f('leaf.pem')]);
  fs.chmodSync(f('leaf.key'), 0o600);
  return { ca: f('ca.pem'), cert: f('leaf.pem'), key: f('leaf.key') };
}

const BIN = findTestssl();

test('testssl.sh reports no HIGH or CRITICAL finding', {
  timeout: 240000,
  skip: BIN ? false : 'testssl.sh is not installed: apt-get install -y testssl.sh (Debian package testssl.sh, command testssl)',
}, async (t) => {
  const up = await startHttpEcho();
  const chain = makeChain();
  const gw = await startGateway(['--upstream', up.addr, '--cert', chain.cert, '--key', chain.key, '--workers', '2',
    '--access_log', 'off']);
  const json = path.join(tmpDir(), 'testssl.json');
  fs.rmSync(json, { force: true });
  const t0 = Date.now();
  const r = await run(BIN, ['--quiet', '--color', '0', '--warnings', 'batch', '--add-ca', chain.ca,
    '-p', '-s', '-f', '-P', '-S', '-h', '-U', '--jsonfile', json, `127.0.0.1:${gw.port}`], { timeout: 200000 });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  t.diagnostic(`${BIN} ran ${secs} s, exit ${r.code ?? r.signal}`);
  assert.ok(fs.existsSync(json), `testssl wrote no JSON (exit ${r.code ?? r.signal}):\n${r.out.slice(-3000)}`);
  const findings = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.ok(Array.isArray(findings) && findings.length > 20, `too few findings: ${findings.length}`);
  const ids = new Set(findings.map((f) => f.id));
  for (const id of ['TLS1_3', 'SSLv3', 'cipherlist_NULL', 'heartbleed', 'cert_chain_of_trust'])
    assert.ok(ids.has(id), `testssl did not run the check ${id} (the scan did not complete?):\n${r.out.slice(-3000)}`);
  const count = {};
  for (const f of findings) count[f.severity] = (count[f.severity] || 0) + 1;
  t.diagnostic(`severities: ${JSON.stringify(count)}`);
  const reported = findings.filter((f) => !['OK', 'INFO', 'DEBUG'].includes(f.severity));
  for (const f of reported) t.diagnostic(`${f.severity} ${f.id}: ${f.finding}`);
  // the facts wsgate promises (README: TLS 1.3 and 1.2 only)
  const fact = (id) => findings.find((f) => f.id === id)?.finding || '';
  for (const old of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) assert.match(fact(old), /^not offered/, `${old}: ${fact(old)}`);
  assert.match(fact('TLS1_2'), /^offered/, `TLS1_2: ${fact('TLS1_2')}`);
  assert.match(fact('TLS1_3'), /^offered/, `TLS1_3: ${fact('TLS1_3')}`);
  const bad = findings.filter((f) => ['HIGH', 'CRITICAL', 'FATAL'].includes(f.severity));
  assert.deepEqual(bad.map((f) => `${f.severity} ${f.id}: ${f.finding}`), [], 'findings rated HIGH, CRITICAL or FATAL');
});
