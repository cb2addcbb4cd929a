// TLS termination checked with openssl s_client: versions, suites, SNI, tickets, ALPN.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startGateway, startHttpEcho, makeCert, run, tmpDir, cleanup, runGateway } from './lib.mjs';

let gw, gwSni, echo, certA, certB;
const T = { timeout: 30000 };

before(async () => {
  echo = await startHttpEcho();
  gw = await startGateway(['--upstream', echo.addr]);
  certA = makeCert('a.test', ['a.test']);
  certB = makeCert('b.test', ['b.test', '*.b.test']);
  gwSni = await startGateway(['--upstream', echo.addr, '--cert', certA.cert, '--key', certA.key,
    '--cert', certB.cert, '--key', certB.key]);
});
after(cleanup);

const sclient = (port, args, opts) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], opts);

// s_client's way of saying the handshake completed.
const negotiated = (out) => {
  const m = /(?:New|Reused), (TLSv[\d.]+|SSLv3), Cipher is (\S+)/.exec(out);
  return m && m[2] !== '(NONE)' ? { version: m[1], cipher: m[2] } : null;
};
const subjectCN = (out) => (/subject=.*?CN\s*=\s*([^\s,/]+)/.exec(out) || [])[1];

test('TLS 1.3 negotiates', T, async () => {
  const r = await sclient(gw.port, ['-tls1_3', '-servername', 'localhost']);
  const n = negotiated(r.out);
  assert.ok(n, `no handshake:\n${r.out}`);
  assert.equal(n.version, 'TLSv1.3');
  assert.match(n.cipher, /^TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)$/);
});

// tls_cipher_order server (the default): AES-128-GCM whenever the client offers it, even last
// (OpenSSL's default order starts with AES-256-GCM); without it, the client's first.
// tls_cipher_order client: the client's first.
test('TLS 1.3 suite: the server\'s order by default, the client\'s with tls_cipher_order client', T, async () => {
  const suite = async (port, extra) => {
    const r = await sclient(port, ['-tls1_3', '-servername', 'localhost', ...extra]);
    const n = negotiated(r.out);
    assert.ok(n, `no handshake:\n${r.out}`);
    return n.cipher;
  };
  assert.equal(await suite(gw.port, []), 'TLS_AES_128_GCM_SHA256');
  assert.equal(await suite(gw.port, ['-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256']),
    'TLS_AES_128_GCM_SHA256');
  assert.equal(await suite(gw.port, ['-ciphersuites', 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256']),
    'TLS_AES_256_GCM_SHA384');
  assert.equal(await suite(gw.port, ['-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256']), 'TLS_CHACHA20_POLY1305_SHA256');
  const gwClient = await startGateway(['--upstream', echo.addr, '--tls_cipher_order', 'client']);
  assert.equal(await suite(gwClient.port, ['-ciphersuites', 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256']),
    'TLS_AES_256_GCM_SHA384');
  assert.equal(await suite(gwClient.port, ['-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256']),
    'TLS_CHACHA20_POLY1305_SHA256');
});

test('TLS 1.2 negotiates an ECDHE AEAD suite', T, async () => {
  const r = await sclient(gw.port, ['-tls1_2', '-servername', 'localhost']);
  const n = negotiated(r.out);
  assert.ok(n, `no handshake:\n${r.out}`);
  assert.equal(n.version, 'TLSv1.2');
  assert.match(n.cipher, /^ECDHE-.*(GCM|CHACHA20)/);
});

test('the generated certificate is ECDSA for localhost and 127.0.0.1', T, async () => {
  const r = await sclient(gw.port, ['-servername', 'localhost', '-showcerts']);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.out);
  assert.ok(pem, r.out);
  const file = path.join(tmpDir(), 'generated.pem');
  fs.writeFileSync(file, pem[0]);
  const x = await run('openssl', ['x509', '-in', file, '-noout', '-text']);
  assert.match(x.out, /id-ecPublicKey/);
  assert.match(x.out, /DNS:localhost/);
  assert.match(x.out, /IP Address:127\.0\.0\.1/);
});

// Old versions: Debian's openssl refuses to even offer them at its default security level, so
// lower it; -msg proves a ClientHello was sent, so the failure is the server's refusal.
for (const [flag, name] of [['-tls1', 'TLS 1.0'], ['-tls1_1', 'TLS 1.1']]) {
  test(`${name} is refused by the server`, T, async () => {
    const r = await sclient(gw.port, [flag, '-cipher', 'DEFAULT@SECLEVEL=0', '-servername', 'localhost', '-msg']);
    assert.doesNotMatch(r.out, /no protocols available|no ciphers available/, `the client could not offer ${name}:\n${r.out}`);
    assert.match(r.out, />>> .*ClientHello/, `no ClientHello was sent:\n${r.out}`);
    assert.equal(negotiated(r.out), null, `${name} was negotiated:\n${r.out}`);
    assert.notEqual(r.code, 0);
  });
}

test('a CBC suite alone is refused', T, async () => {
  const r = await sclient(gw.port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0', '-servername', 'localhost', '-msg']);
  assert.doesNotMatch(r.out, /no ciphers available/, r.out);
  assert.match(r.out, />>> .*ClientHello/, r.out);
  assert.equal(negotiated(r.out), null, `a CBC suite was negotiated:\n${r.out}`);
  assert.notEqual(r.code, 0);
});

test('a TLS 1.2 client offering CBC first still gets an AEAD suite', T, async () => {
  const r = await sclient(gw.port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256', '-servername', 'localhost']);
  const n = negotiated(r.out);
  assert.ok(n, r.out);
  assert.equal(n.cipher, 'ECDHE-ECDSA-AES128-GCM-SHA256');
});

test('SNI selects the certificate by exact name', T, async () => {
  const a = await sclient(gwSni.port, ['-servername', 'a.test']);
  assert.equal(subjectCN(a.out), 'a.test', a.out);
  const b = await sclient(gwSni.port, ['-servername', 'b.test']);
  assert.equal(subjectCN(b.out), 'b.test', b.out);
});

test('SNI selects the certificate by wildcard name', T, async () => {
  const r = await sclient(gwSni.port, ['-servername', 'x.b.test']);
  assert.equal(subjectCN(r.out), 'b.test', r.out);
});

test('an unknown name and no SNI get the default (first) certificate', T, async () => {
  const r = await sclient(gwSni.port, ['-servername', 'unknown.example']);
  assert.ok(negotiated(r.out), r.out);
  assert.equal(subjectCN(r.out), 'a.test', r.out);
  const n = await sclient(gwSni.port, ['-noservername']);
  assert.ok(negotiated(n.out), n.out);
  assert.equal(subjectCN(n.out), 'a.test', n.out);
});

test('a wildcard does not match two labels', T, async () => {
  const r = await sclient(gwSni.port, ['-servername', 'y.x.b.test']);
  assert.equal(subjectCN(r.out), 'a.test', r.out);
});

for (const ver of ['-tls1_3', '-tls1_2']) {
  test(`session ticket resumes (${ver})`, T, async () => {
    const sess = path.join(tmpDir(), `sess${ver}.pem`);
    // Keep stdin open a moment: TLS 1.3 tickets arrive after the handshake.
    const first = await sclient(gw.port, [ver, '-servername', 'localhost', '-sess_out', sess], { delayMs: 500 });
    assert.ok(negotiated(first.out), first.out);
    assert.ok(fs.existsSync(sess) && fs.statSync(sess).size > 0, `no session saved:\n${first.out}`);
    const second = await sclient(gw.port, [ver, '-servername', 'localhost', '-sess_in', sess], { delayMs: 200 });
    assert.match(second.out, /^Reused, TLSv1\.[23]/m, `not resumed:\n${second.out}`);
  });
}

test('ALPN http/1.1 is selected', T, async () => {
  const r = await sclient(gw.port, ['-servername', 'localhost', '-alpn', 'h2,http/1.1']);
  assert.match(r.out, /ALPN protocol: http\/1\.1/, r.out);
});

test('requests over the negotiated connection work', T, async () => {
  const r = await sclient(gw.port, ['-servername', 'localhost', '-quiet', '-ign_eof'],
    { input: 'GET /via-openssl HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', delayMs: 300, timeout: 8000 });
  assert.match(r.out, /HTTP\/1\.1 200/, r.out);
  assert.match(r.out, /via-openssl/);
});

test('wsgate -t validates a config file', T, async () => {
  const dir = tmpDir();
  const good = path.join(dir, 'good.conf');
  fs.writeFileSync(good, `# a comment\nlisten 127.0.0.1:18443\nupstream 127.0.0.1:3001\nupstream 127.0.0.1:3002 weight=2\nmax_message 1m\n`);
  const ok = await runGateway(['-t', '-c', good]);
  assert.equal(ok.code, 0, ok.stderr);
  const bad = path.join(dir, 'bad.conf');
  fs.writeFileSync(bad, `upstream 127.0.0.1:3001\nmax_message 12x\n`);
  const ko = await runGateway(['-t', '-c', bad]);
  assert.equal(ko.code, 1);
  assert.match(ko.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: max_message: `));
  const unknown = path.join(dir, 'unknown.conf');
  fs.writeFileSync(unknown, `upstream 127.0.0.1:3001\n\nno_such_setting 1\n`);
  const ku = await runGateway(['-t', '-c', unknown]);
  assert.equal(ku.code, 1);
  assert.match(ku.stderr, /unknown\.conf:3: .*no_such_setting/);
});

test('wsgate --help lists the settings', T, async () => {
  const r = await runGateway(['--help']);
  assert.equal(r.code, 0);
  const text = r.stdout + r.stderr;
  for (const name of ['listen', 'cert', 'key', 'upstream', 'workers', 'max_frame', 'max_message', 'hash_prefix', 'header_timeout']) {
    assert.match(text, new RegExp(`\\b${name}\\b`), `--help does not list ${name}`);
  }
});
