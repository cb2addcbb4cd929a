// SIGHUP reload: new certificates for new handshakes, established WebSockets untouched, and a
// broken certificate or config refused with the file named while the old one keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { startGateway, startWsEcho, makeCert, run, tmpDir, cleanup, waitFor, withTimeout } from './lib.mjs';

const T = { timeout: 30000 };
let gw, echo, dir, conf, certA, certB;

const subjectCN = async (port) => {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'reload.test'],
    { delayMs: 300 });
  return (/subject=.*?CN\s*=\s*([^\s,/]+)/.exec(r.out) || [])[1];
};
const install = (pair) => {
  fs.copyFileSync(pair.cert, path.join(dir, 'cur.crt'));
  fs.copyFileSync(pair.key, path.join(dir, 'cur.key'));
};
const reloadAndWait = async (what) => {
  const before_ = gw.log().length;
  gw.proc.kill('SIGHUP');
  await waitFor(() => /reloaded|reload refused/.test(gw.log().slice(before_)), 5000, `reload (${what})`);
  return gw.log().slice(before_);
};

before(async () => {
  echo = await startWsEcho({ perMessageDeflate: false });
  dir = fs.mkdtempSync(path.join(tmpDir(), 'reload-'));
  certA = makeCert('reload-a.test', ['reload.test', 'reload-a.test']);
  certB = makeCert('reload-b.test', ['reload.test', 'reload-b.test']);
  install(certA);
  conf = path.join(dir, 'wsgate.conf');
  fs.writeFileSync(conf, `upstream ${echo.addr}\ncert ${dir}/cur.crt\nkey ${dir}/cur.key\nworkers 2\n`);
  gw = await startGateway(['-c', conf]);
});
after(cleanup);

test('SIGHUP swaps the certificate for new handshakes; an open WebSocket keeps working', T, async () => {
  assert.equal(await subjectCN(gw.port), 'reload-a.test');
  const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/`, { rejectUnauthorized: false, servername: 'reload.test' });
  const got = [];
  let closed = null;
  ws.on('message', (d) => got.push(d.toString()));
  ws.on('close', (code) => { closed = code; });
  await withTimeout(new Promise((r, j) => { ws.once('open', r); ws.once('error', j); }), 5000, 'open');
  ws.send('before');
  await waitFor(() => got.includes('before'), 5000, 'echo before reload');

  install(certB);
  const out = await reloadAndWait('good certificate');
  assert.match(out, /reloaded: certificate generation 2/);
  assert.equal(await subjectCN(gw.port), 'reload-b.test');

  ws.send('after');
  await waitFor(() => got.includes('after'), 5000, 'echo after reload');
  assert.equal(closed, null, 'the established WebSocket was closed by the reload');
  ws.close(1000);
});

test('a key that does not match is refused with the file named; the old certificate keeps serving', T, async () => {
  fs.copyFileSync(certA.key, path.join(dir, 'cur.key')); /* cert B with key A */
  const out = await reloadAndWait('mismatched key');
  assert.match(out, /reload refused.*cur\.(key|crt)/);
  assert.equal(await subjectCN(gw.port), 'reload-b.test');
  install(certB);
});

test('a config error on reload names file, line and key; nothing changes', T, async () => {
  const good = fs.readFileSync(conf, 'utf8');
  fs.writeFileSync(conf, `${good}max_message 12x\n`);
  const out = await reloadAndWait('bad config');
  assert.match(out, /reload refused.*wsgate\.conf:5: max_message: "12x" is not a size/);
  assert.equal(await subjectCN(gw.port), 'reload-b.test');
  fs.writeFileSync(conf, good);
});

test('watch_certs on: replacing the files reloads by itself, once, without a signal', T, async () => {
  const wdir = fs.mkdtempSync(path.join(tmpDir(), 'watch-'));
  const a = makeCert('watch-a.test', ['watch.test']);
  const b = makeCert('watch-b.test', ['watch.test']);
  fs.copyFileSync(a.cert, path.join(wdir, 'c.crt'));
  fs.copyFileSync(a.key, path.join(wdir, 'c.key'));
  const w = await startGateway(['--upstream', echo.addr, '--cert', path.join(wdir, 'c.crt'), '--key',
    path.join(wdir, 'c.key'), '--watch_certs', 'on']);
  const cn = async () => {
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${w.port}`, '-servername', 'watch.test'],
      { delayMs: 300 });
    return (/subject=.*?CN\s*=\s*([^\s,/]+)/.exec(r.out) || [])[1];
  };
  assert.equal(await cn(), 'watch-a.test');
  /* as a rotation does it: temp file + rename, key then certificate */
  for (const [src, dst] of [[b.key, 'c.key'], [b.cert, 'c.crt']]) {
    fs.copyFileSync(src, path.join(wdir, `${dst}.tmp`));
    fs.renameSync(path.join(wdir, `${dst}.tmp`), path.join(wdir, dst));
  }
  await waitFor(() => /reloaded: certificate generation 2/.test(w.log()), 8000, 'the automatic reload');
  assert.equal(await cn(), 'watch-b.test');
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(!/generation 3/.test(w.log()), 'two file changes caused two reloads (no debounce)');
});

test('a session ticket issued before a rotation still resumes after it (ticket keys are not per certificate)', T,
  async () => {
    const sess = path.join(dir, 'ticket.sess');
    const s1 = await run('openssl', ['s_client', '-connect', `127.0.0.1:${gw.port}`, '-servername', 'reload.test',
      '-tls1_2', '-sess_out', sess], { delayMs: 300 });
    assert.match(s1.out, /New, TLSv1\.2/, s1.out);
    install(certA);
    const out = await reloadAndWait('rotation back to A');
    assert.match(out, /reloaded/);
    const s2 = await run('openssl', ['s_client', '-connect', `127.0.0.1:${gw.port}`, '-servername', 'reload.test',
      '-tls1_2', '-sess_in', sess], { delayMs: 300 });
    assert.match(s2.out, /Reused, TLSv1\.2/, `not resumed after the rotation:\n${s2.out}`);
  });

test('SIGHUP: an established WebSocket keeps the policy it started with; new ones get the new one', T, async () => {
  const good = fs.readFileSync(conf, 'utf8');
  fs.writeFileSync(conf, `${good}client_max_message 1k\n`);
  assert.match(await reloadAndWait('policy 1k'), /reloaded/);
  const open = async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/`, { rejectUnauthorized: false, servername: 'reload.test' });
    ws.got = [];
    ws.closedWith = null;
    ws.on('message', (d) => ws.got.push(d.length));
    ws.on('close', (code) => { ws.closedWith = code; });
    await withTimeout(new Promise((r, j) => { ws.once('open', r); ws.once('error', j); }), 5000, 'open');
    return ws;
  };
  const old = await open(); /* started under the 1k limit */
  fs.writeFileSync(conf, `${good}client_max_message 64k\n`);
  assert.match(await reloadAndWait('policy 64k'), /reloaded/);
  const fresh = await open();
  fresh.send(Buffer.alloc(4000));
  await waitFor(() => fresh.got.includes(4000), 5000, 'the new session echoes 4000 bytes under 64k');
  old.send(Buffer.alloc(4000));
  await waitFor(() => old.closedWith !== null, 5000, 'the old session closes under its 1k limit');
  assert.equal(old.closedWith, 1009);
  fresh.close();
  fs.writeFileSync(conf, good);
  await reloadAndWait('restore');
});
