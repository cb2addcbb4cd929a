// A real browser: Debian's Chromium driven by playwright-core loads the chat page through
// wsgate, sends a message and sees it come back. Skipped when /usr/bin/chromium is absent
// (Debian package `chromium`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startGateway, startChat, cleanup, onCleanup } from './lib.mjs';

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
