// A real browser: Debian's Chromium driven by playwright-core loads the chat page through
// wsgate, sends a message and sees it come back; and its own WebSocket to a `ws` upstream
// negotiates permessage-deflate end to end (Chromium always offers it), with messages compressed
// both ways and echoed intact. Skipped when /usr/bin/chromium is absent (Debian package `chromium`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startGateway, startChat, startWsEcho, cleanup, onCleanup, freePort, adminRequest } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
let gw, browser;

before(async () => {
  if (!haveChromium) return;
  const chats = await Promise.all([1, 2].map((n) => startChat(n)));
  gw = await startGateway(chats.flatMap((c) => ['--upstream', c.addr]));
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    timeout: 30000,
  });
  onCleanup(() => browser.close());
});
after(cleanup);

test('the chat page loads over TLS and a message makes the round trip over a WebSocket', { timeout: 60000 }, async (t) => {
  if (!haveChromium) {
    t.skip(`${CHROMIUM} not found (apt-get install chromium)`);
    return;
  }
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  const res = await page.goto(`https://localhost:${gw.port}/`, { timeout: 20000 });
  assert.equal(res.status(), 200);
  assert.match(await page.title(), /^Instance #[12]$/);
  // socket.io connects (polling, then the upgrade to a WebSocket)
  await page.waitForFunction(() => window.socket?.connected ?? (typeof io === 'function'), null, { timeout: 15000 });
  const text = `hello from chromium ${Date.now()}`;
  await page.fill('#input', text);
  await page.click('form button');
  await page.waitForSelector(`#messages li:has-text("${text}")`, { timeout: 15000 });
  await page.waitForFunction(() => performance.getEntriesByType('resource').length > 0, null, { timeout: 5000 });
  // the upgrade happened through wsgate
  const deadline = Date.now() + 10000;
  while (!sockets.some((u) => u.includes('transport=websocket')) && Date.now() < deadline) await page.waitForTimeout(100);
  assert.ok(sockets.some((u) => u.startsWith(`wss://localhost:${gw.port}/socket.io/`) && u.includes('transport=websocket')),
    `no socket.io WebSocket seen: ${JSON.stringify(sockets)}`);
  await context.close();
});

test('Chromium\'s WebSocket negotiates permessage-deflate through wsgate; messages compressed both ways echo intact', { timeout: 60000 }, async (t) => {
  if (!haveChromium) {
    t.skip(`${CHROMIUM} not found (apt-get install chromium)`);
    return;
  }
  const echo = await startWsEcho({ perMessageDeflate: { threshold: 0 } }); // the upstream compresses every message
  const admin = await freePort();
  const g = await startGateway(['--upstream', echo.addr, '--admin', `127.0.0.1:${admin}`]);
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  // any page of this origin will do: the WebSocket is opened by the page's script
  await page.goto(`https://localhost:${gw.port}/`, { timeout: 20000 });
  const r = await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    await new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error('websocket error')); });
    const sent = [];
    for (let i = 0; i < 60; i++) {
      sent.push(i % 5 === 4
        ? new Uint8Array(2000 + i).map((_, k) => (k * 7 + i) & 0xff)
        : JSON.stringify({ seq: i, user: `user${i % 7}`, text: 'héllo wörld €'.repeat(1 + (i * 13) % 200) }));
    }
    const got = [];
    const done = new Promise((res) => { ws.onmessage = (e) => { got.push(e.data); if (got.length === sent.length) res(); }; });
    for (const m of sent) ws.send(m);
    await Promise.race([done, new Promise((res) => setTimeout(res, 10000))]);
    const same = (a, b) => (typeof a === 'string' ? a === b
      : b instanceof ArrayBuffer && a.length === b.byteLength && new Uint8Array(b).every((v, k) => v === a[k]));
    const bad = sent.findIndex((m, i) => !same(m, got[i]));
    const extensions = ws.extensions;
    ws.close(1000);
    return { extensions, n: got.length, bad };
  }, `wss://localhost:${g.port}/zchat`);
  assert.match(r.extensions, /^permessage-deflate/, `the browser's negotiated extensions: "${r.extensions}"`);
  assert.equal(r.n, 60, 'echoes');
  assert.equal(r.bad, -1, `message ${r.bad} came back changed`);
  const conn = await echo.waitConn(1);
  assert.match(conn.headers['sec-websocket-extensions'], /^permessage-deflate/, 'the browser\'s offer reached the upstream');
  assert.equal(conn.ws.extensions, 'permessage-deflate', 'the upstream negotiated it');
  assert.equal(conn.messages.length, 60);
  // and the frames really were compressed both ways: wsgate inflated them to check them
  const m = (await adminRequest(admin, '/metrics')).body;
  for (const d of ['client_to_upstream', 'upstream_to_client']) {
    for (const f of ['compressed', 'inflated']) {
      assert.match(m, new RegExp(`^wsgate_deflate_bytes_total\\{direction="${d}",form="${f}"\\} [1-9]`, 'm'), `${d} ${f}`);
    }
  }
  await context.close();
});
