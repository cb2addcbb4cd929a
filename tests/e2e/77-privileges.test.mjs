// Privileges: wsgate binds and loads its keys as root, then runs as `user`, is not dumpable (no
// core with the keys in it), and refuses a private key that group or others can read.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { startGateway, startHttpEcho, makeCert, runGateway, httpsRequest, cleanup } from './lib.mjs';

/** A free port below 1024 on 127.0.0.1 (only root can bind it). */
async function privilegedPort() {
  for (let tries = 0; tries < 50; tries++) {
    const port = 600 + Math.floor(Math.random() * 400);
    const ok = await new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port below 1024');
}

const T = { timeout: 30000 };
const root = process.getuid() === 0;
let echo;

before(async () => {
  echo = await startHttpEcho();
});
after(cleanup);

test('user nobody: the workers serve as uid 65534 and the process is not dumpable', { ...T, skip: !root && 'needs root' },
  async () => {
    const pair = makeCert('priv.test');
    fs.chmodSync(pair.key, 0o600);
    const gw = await startGateway(['--upstream', echo.addr, '--cert', pair.cert, '--key', pair.key, '--user', 'nobody']);
    const status = fs.readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8');
    const uids = /Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(status).slice(1).map(Number);
    assert.deepEqual(uids, [65534, 65534, 65534, 65534], `Uid line: ${uids}`);
    /* A non-dumpable process's /proc entries stay owned by root whatever its uid. */
    assert.equal(fs.statSync(`/proc/${gw.proc.pid}/status`).uid, 0);
    const r = await httpsRequest(gw.port, { path: '/who' });
    assert.equal(r.status, 200);
  });

test('listen_http below 1024 is bound before the switch to nobody (issue 16)', { ...T, skip: !root && 'needs root' },
  async () => {
    const pair = makeCert('priv80.test');
    fs.chmodSync(pair.key, 0o600);
    const port = await privilegedPort();
    const gw = await startGateway(['--upstream', echo.addr, '--cert', pair.cert, '--key', pair.key, '--user', 'nobody',
      '--listen_http', `127.0.0.1:${port}`]);
    const uids = /Uid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8'))[1];
    assert.equal(Number(uids), 65534);
    const res = await new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/x', headers: { Host: 'priv80.test' }, agent: false },
        (r) => { r.resume(); r.on('end', () => resolve(r)); });
      req.on('error', reject);
    });
    assert.equal(res.statusCode, 308);
    assert.equal(res.headers.location, `https://priv80.test:${gw.port}/x`);
  });

test('a private key readable by group or others is refused, naming the file; key_permissions any allows it', T,
  async () => {
    const pair = makeCert('perm.test');
    fs.chmodSync(pair.key, 0o644);
    const args = ['-t', '--upstream', echo.addr, '--cert', pair.cert, '--key', pair.key];
    const bad = await runGateway(args);
    assert.equal(bad.code, 1);
    assert.ok(bad.stderr.includes(`${pair.key}: private key is accessible by group or others (mode 0644)`), bad.stderr);
    const ok = await runGateway([...args, '--key_permissions', 'any']);
    assert.equal(ok.code, 0, ok.stderr);
    fs.chmodSync(pair.key, 0o600);
    assert.equal((await runGateway(args)).code, 0);
  });
