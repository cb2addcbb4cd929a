// The admin listener's status page (issue 17) in a real browser: Debian's Chromium (headless,
// driven by playwright-core) loads GET / from the admin listener of a wsgate that carried a
// scripted workload (WebSocket sessions with messages both ways and several close codes, a frame
// over client_max_frame (1009, a policy event), HTTP requests, a failed TLS handshake, a dead
// upstream beside a live one). Checked: no console error
// and no page error, no request leaves the admin origin, every figure cell (data-series names the
// /metrics series it shows) equals the series in a /metrics scrape taken while the gateway is
// idle, the page refreshes itself and follows more traffic, and /status.json holds exactly the
// samples of /metrics. A screenshot is kept in build/artifacts/status-page.png.
// Skipped when /usr/bin/chromium is absent (Debian package `chromium`); the /status.json checks
// run without it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import {
  TOP, startGateway, startWsEcho, cleanup, onCleanup, freePort, waitFor, sleep, adminRequest,
  httpsRequest,
} from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const ARTIFACTS = path.join(TOP, 'build/artifacts');
const T = { timeout: 90000 };
let gw, adminPort, echo, browser;

/** The /metrics samples: series text (name{labels} as printed) -> value. */
function scrapeMap(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}
async function scrape() {
  const r = await adminRequest(adminPort, '/metrics');
  assert.equal(r.status, 200);
  return scrapeMap(r.body);
}
const sessions = async () => (await scrape()).get('wsgate_websocket_sessions_total') ?? 0;

/** One WebSocket session through the gateway: n messages, then a close with code. */
async function session(n, code) {
  const ws = new WebSocket(`wss://localhost:${gw.port}/chat`, { rejectUnauthorized: false });
  onCleanup(() => ws.terminate());
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  let got = 0;
  const all = new Promise((res) => ws.on('message', () => { if (++got === n) res(); }));
  for (let i = 0; i < n; i++) ws.send(`message ${i} ${'x'.repeat(i * 50)}`);
  await all;
  const closed = new Promise((res) => ws.once('close', res));
  ws.close(code);
  await closed;
}

/** Waits until the gateway has counted `want` sessions and its figures stop moving. */
async function settle(want) {
  await waitFor(async () => (await sessions()) >= want, 10000, `${want} sessions counted`);
  let last = '';
  await waitFor(async () => {
    const now = JSON.stringify([...(await scrape())].filter(([k]) => !k.startsWith('wsgate_certificate_expiry')));
    const same = now === last;
    last = now;
    return same;
  }, 10000, 'idle figures', 300);
}

before(async () => {
  echo = await startWsEcho();
  // nothing listens there: ports below 1024 are never handed out as a test's free port (a port
  // freePort() released could be the next freePort()'s, e.g. the admin's)
  const dead = 9;
  adminPort = await freePort();
  gw = await startGateway(['--upstream', echo.addr, '--upstream', `127.0.0.1:${dead}`, '--workers', '2',
    '--admin', `127.0.0.1:${adminPort}`, '--client_max_frame', '1k']);
  await waitFor(async () => { try { return (await adminRequest(adminPort, '/healthz')).status === 200; } catch { return false; } },
    5000, 'the admin endpoint');
  // Workload: sessions with several close codes (4000 is counted as "other"), plain HTTP, a failed handshake.
  let done = 0;
  for (const [n, code] of [[3, 1000], [5, 1001], [2, 4000], [4, 1000]]) {
    try { await session(n, code); done++; } catch { /* a pick of the dead upstream fails: counted as such */ }
  }
  while (done < 4) { try { await session(2, 1000); done++; } catch { /* again */ } }
  // A frame over client_max_frame: closed 1009, a max_frame policy event on the page.
  for (let tries = 1; ; tries++) {
    const ws = new WebSocket(`wss://localhost:${gw.port}/chat`, { rejectUnauthorized: false });
    onCleanup(() => ws.terminate());
    const opened = await new Promise((res) => { ws.once('open', () => res(true)); ws.once('error', () => res(false)); });
    assert.ok(opened || tries < 5, 'no WebSocket session opened in 5 tries');
    if (!opened) continue;
    const closed = new Promise((res) => ws.once('close', (code) => res(code)));
    ws.send(Buffer.alloc(3000, 7));
    assert.equal(await closed, 1009);
    break;
  }
  for (let i = 0; i < 3; i++) await httpsRequest(gw.port, { path: `/page${i}` }).catch(() => {});
  await new Promise((resolve) => { // plain text to the TLS port: a failed handshake
    const p = net.connect({ host: '127.0.0.1', port: gw.port }, () => p.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    p.on('data', () => {});
    p.on('error', resolve);
    p.on('close', resolve);
    setTimeout(() => { p.destroy(); resolve(); }, 5000);
  });
  await settle(5);
  if (haveChromium) {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
      timeout: 30000,
    });
    onCleanup(() => browser.close());
  }
});
after(cleanup);

test('/status.json holds exactly the samples of /metrics; the page is served with a CSP and no external reference', T, async () => {
  const j = await adminRequest(adminPort, '/status.json');
  assert.equal(j.status, 200);
  assert.match(j.headers['content-type'], /^application\/json/);
  const doc = JSON.parse(j.body);
  assert.equal(doc.skipped, 0);
  assert.equal(doc.types.wsgate_connections, 'gauge');
  assert.equal(doc.types.wsgate_tls_handshakes_total, 'counter');
  assert.equal(doc.types.wsgate_websocket_frame_payload_bytes, 'histogram');
  const m = await scrape();
  const fromJson = new Map(doc.samples.map((s) => {
    const l = Object.entries(s.labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
    return [l.length ? `${s.name}{${l.join(',')}}` : s.name, s.value];
  }));
  assert.deepEqual([...fromJson.keys()].sort(), [...m.keys()].sort());
  for (const [k, v] of m) {
    if (k.startsWith('wsgate_certificate_expiry_seconds')) assert.ok(Math.abs(fromJson.get(k) - v) <= 5, k);
    else assert.equal(fromJson.get(k), v, k);
  }
  assert.ok(m.get('wsgate_websocket_messages_total{direction="client_to_upstream"}') >= 14);
  for (const p of ['/', '/status', '/status?x=1']) {
    const r = await adminRequest(adminPort, p);
    assert.equal(r.status, 200, p);
    assert.match(r.headers['content-type'], /^text\/html/);
    assert.match(r.headers['content-security-policy'], /default-src 'none'/);
    assert.match(r.body, /^<!doctype html>/);
    // self-contained: no src=/href= to anything but data:, no @import, no url()
    assert.deepEqual([...r.body.matchAll(/\b(?:src|href)\s*=\s*"([^"]*)"/g)].map((x) => x[1]).filter((u) => !u.startsWith('data:')), []);
    assert.doesNotMatch(r.body, /@import|url\(/);
  }
  assert.equal((await adminRequest(adminPort, '/status.json', { method: 'POST' })).status, 405);
  assert.equal((await adminRequest(adminPort, '/', { method: 'DELETE' })).status, 405);
  assert.equal((await adminRequest(adminPort, '/status.jsonx')).status, 404);
});

test('the status page in Chromium: no console error, every figure equals /metrics, it refreshes itself', T, async (t) => {
  if (!haveChromium) {
    t.skip(`${CHROMIUM} not found (apt-get install chromium)`);
    return;
  }
  const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
  const page = await context.newPage();
  const problems = [], requests = [];
  page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  page.on('request', (r) => requests.push(r.url()));
  const origin = `http://127.0.0.1:${adminPort}`;
  const res = await page.goto(`${origin}/`, { timeout: 20000 });
  assert.equal(res.status(), 200);
  assert.equal(await page.title(), 'wsgate status');
  await page.waitForFunction(() => document.body.dataset.updated, null, { timeout: 10000 });

  const cells = () => page.$$eval('[data-series]', (els) => els.map((e) => ({
    series: e.dataset.series, text: e.textContent.trim(), scale: Number(e.dataset.scale || 1), digits: Number(e.dataset.digits || 0),
    map: e.dataset.map || '',
  })));
  const compare = (shown, m) => {
    for (const c of shown) {
      assert.ok(m.has(c.series), `the page shows ${c.series}, absent from /metrics`);
      const v = m.get(c.series);
      if (c.map === 'up') assert.equal(c.text, v ? 'up' : 'down', c.series);
      else if (c.map === 'draining') assert.equal(c.text, v ? 'draining' : 'serving', c.series);
      else if (c.scale !== 1) assert.ok(Math.abs(Number(c.text) - v / c.scale) <= 0.051, `${c.series}: page ${c.text}, /metrics ${v / c.scale}`);
      else assert.equal(Number(c.text.replace(/,/g, '')), v, `${c.series}: page ${c.text}, /metrics ${v}`);
    }
  };
  let shown = await cells();
  let m = await scrape();
  compare(shown, m);
  const names = new Set(shown.map((c) => c.series.replace(/\{.*/, '')));
  for (const fam of ['wsgate_connections', 'wsgate_tls_handshakes_total', 'wsgate_tls_handshake_failures_total',
    'wsgate_websocket_messages_total', 'wsgate_websocket_payload_bytes_total', 'wsgate_websocket_closes_total',
    'wsgate_upstream_up', 'wsgate_upstream_picks_total', 'wsgate_upstream_failures_total', 'wsgate_certificate_expiry_seconds',
    'wsgate_http_responses_total', 'wsgate_websocket_sessions_total', 'wsgate_draining']) {
    assert.ok(names.has(fam), `the page shows no ${fam}`);
  }
  // The figures the workload made are on the page with their values (not only zeros).
  const at = (s) => shown.find((c) => c.series === s)?.text;
  assert.equal(at('wsgate_websocket_closes_total{by="client",code="other"}'), '1');
  assert.equal(Number(at('wsgate_tls_handshakes_total{result="failed"}')), m.get('wsgate_tls_handshakes_total{result="failed"}'));
  assert.ok(m.get('wsgate_tls_handshakes_total{result="failed"}') >= 1);
  assert.equal(await page.$$eval('#ups tbody tr', (r) => r.length), 2);
  assert.equal(at('wsgate_policy_events_total{route="default",rule="max_frame",direction="client_to_upstream"}'), '1');
  // Every close-code series of /metrics has its row, and every upstream.
  for (const k of m.keys()) {
    if (/^wsgate_(websocket_closes_total|upstream_up|policy_events_total)\{/.test(k)) assert.ok(shown.some((c) => c.series === k), `no row for ${k}`);
  }

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'status-page.png'), fullPage: true });

  // Live: more traffic, the page follows on its own (no reload).
  const before1 = await page.evaluate(() => document.body.dataset.updated);
  const sessionsShown = Number(at('wsgate_websocket_sessions_total'));
  const n0 = await sessions();
  await session(6, 1000);
  await settle(n0 + 1);
  const mark = Date.now();
  await page.waitForFunction((t) => Number(document.body.dataset.updated) > t, mark, { timeout: 10000 });
  assert.notEqual(await page.evaluate(() => document.body.dataset.updated), before1);
  shown = await cells();
  m = await scrape();
  compare(shown, m);
  assert.equal(Number(at('wsgate_websocket_sessions_total')), sessionsShown + 1);
  fs.writeFileSync(path.join(ARTIFACTS, 'status-page.json'), JSON.stringify({ cells: shown }, null, 1));

  assert.deepEqual(problems, []);
  assert.deepEqual(requests.filter((u) => !u.startsWith(`${origin}/`)), []);
  assert.ok(requests.some((u) => u === `${origin}/status.json`), 'the page fetched status.json');
  await context.close();
});
