// The Grafana dashboard (examples/grafana/wsgate.json) against a real Prometheus (Debian's
// `prometheus`, on loopback, scraping the admin listener every second) while a scripted
// workload runs through wsgate: WebSocket sessions with messages both ways closed with several
// codes, frames over client_max_frame (1009 and a max_frame policy event), plain text to the
// TLS port (failed handshakes), HTTP requests, a reload, ACME HTTP-01 fetches of a pushed token
// and listen_http redirects. Every PromQL expression of every panel,
// with Grafana's variables substituted ($__rate_interval 10s, $job and $instance the ones
// scraped), must evaluate without error and return data; the dashboard's template queries
// (label_values) must find their values. Skipped, saying why, when /usr/bin/prometheus is missing
// (.ci/deps.sh test installs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import http from 'node:http';
import WebSocket from 'ws';
import {
  TOP, startGateway, startWsEcho, cleanup, onCleanup, freePort, waitFor, sleep, adminRequest, spawnChild, tmpDir,
  httpsRequest, loopbackAddresses,
} from './lib.mjs';

const PROMETHEUS = process.env.PROMETHEUS || '/usr/bin/prometheus';
const havePrometheus = fs.existsSync(PROMETHEUS);
const DASHBOARD = path.join(TOP, 'examples/grafana/wsgate.json');
const T = { timeout: 110000 };
let gw, adminPort, httpPort, promPort, prom, stopLoad, loadDone;

function promGet(p) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: promPort, path: p, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(new Error(`${p}: ${res.statusCode} ${body.slice(0, 200)}`)); } });
    });
    req.setTimeout(10000, () => req.destroy(new Error(`prometheus timeout ${p}`)));
    req.on('error', reject);
  });
}
const query = (q) => promGet(`/api/v1/query?query=${encodeURIComponent(q)}`);

/** Every target expression of the dashboard (rows' nested panels included): {panel, refId, expr}. */
function expressions(dash) {
  const out = [];
  const walk = (panels) => {
    for (const p of panels || []) {
      for (const t of p.targets || []) if (t.expr) out.push({ panel: p.title, refId: t.refId, expr: t.expr });
      walk(p.panels);
    }
  };
  walk(dash.panels);
  return out;
}

/** One workload round through the gateway, from a given loopback source address. */
async function round(i, from) {
  const ws = new WebSocket(`wss://localhost:${gw.port}/load`, { rejectUnauthorized: false, localAddress: from });
  onCleanup(() => ws.terminate());
  try {
    await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
    let got = 0;
    const echoed = new Promise((res) => ws.on('message', () => { if (++got === 5) res(); }));
    for (let k = 0; k < 5; k++) ws.send(`round ${i} message ${k} ${'y'.repeat(k * 100)}`);
    await Promise.race([echoed, sleep(3000)]);
    const closed = new Promise((res) => ws.once('close', res));
    if (i % 3 === 2) ws.send(Buffer.alloc(3000, 1)); // over client_max_frame: the gateway closes 1009
    else ws.close(i % 3 === 0 ? 1000 : 1001);
    await Promise.race([closed, sleep(3000)]);
  } catch { /* counted by the gateway whatever happened */ }
  await httpsRequest(gw.port, { path: `/r${i}`, localAddress: from }).catch(() => {});
  await new Promise((resolve) => { // plain text to the TLS port: a failed handshake
    const s = net.connect({ host: '127.0.0.1', port: gw.port }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('data', () => {});
    s.on('error', resolve);
    s.on('close', resolve);
    setTimeout(() => { s.destroy(); resolve(); }, 3000);
  });
  // listen_http: an ACME HTTP-01 fetch of the pushed token and a request redirected to https
  for (const p of ['/.well-known/acme-challenge/load', `/r${i}`]) {
    await new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: httpPort, path: p, agent: false }, (res) => { res.resume(); res.on('end', resolve); });
      req.on('error', resolve);
      req.setTimeout(3000, () => { req.destroy(); resolve(); });
    });
  }
}

before(async () => {
  if (!havePrometheus) return;
  const echo = await startWsEcho();
  // nothing listens there: ports below 1024 are never handed out as a test's free port (a port
  // freePort() released could be the next freePort()'s, e.g. the admin's)
  const dead = 9;
  adminPort = await freePort();
  httpPort = await freePort();
  // a real redis-server, so that the fleet families (wsgate_redis_*) are exported and charted too
  const redisPort = await freePort();
  const redis = spawnChild('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await waitFor(() => new Promise((r) => { const s = net.connect(redisPort, '127.0.0.1', () => { s.destroy(); r(true); }); s.on('error', () => r(false)); }),
    10000, `redis-server:\n${redis.log()}`);
  gw = await startGateway(['--upstream', echo.addr, '--upstream', `127.0.0.1:${dead}`, '--workers', '2',
    '--admin', `127.0.0.1:${adminPort}`, '--client_max_frame', '1k', '--access_log', 'off',
    '--redis', `127.0.0.1:${redisPort}`, '--ip_rate_messages', '100000', '--listen_http', `127.0.0.1:${httpPort}`]);
  await waitFor(async () => { try { return (await adminRequest(adminPort, '/healthz')).status === 200; } catch { return false; } },
    5000, 'the admin endpoint');
  // an ACME HTTP-01 challenge held for the whole run (the acme panels' data)
  const put = await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: adminPort, path: '/acme/http-01/load', method: 'PUT',
      headers: { 'Content-Length': 6 }, agent: false }, (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
    req.end('load.k');
  });
  assert.equal(put, 204);
  const dir = fs.mkdtempSync(path.join(tmpDir(), 'prometheus-'));
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), [
    'global:', '  scrape_interval: 1s', '  scrape_timeout: 900ms', '  evaluation_interval: 1s',
    'scrape_configs:', '  - job_name: wsgate', '    static_configs:', `      - targets: ['127.0.0.1:${adminPort}']`, ''].join('\n'));
  promPort = await freePort();
  prom = spawnChild(PROMETHEUS, [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn', '--storage.tsdb.retention.time=1h']);
  await waitFor(async () => { try { return (await promGet('/-/ready')) !== null; } catch (e) { return /Ready/.test(e.message); } },
    30000, `prometheus ready (${PROMETHEUS})`, 200);
  // The workload runs in the background while the expressions are evaluated; sources spread over
  // 127.0.0.0/8 so the client-address hash also picks the dead upstream (connect failures).
  const sources = loopbackAddresses(8, 17);
  let stop = false;
  stopLoad = () => { stop = true; return loadDone; };
  loadDone = (async () => { for (let i = 0; !stop; i++) { await round(i, sources[i % sources.length]); await sleep(100); } })();
  // enough scrapes for every rate() window
  await waitFor(async () => {
    const r = await query('count_over_time(wsgate_connections_accepted_total[1m])');
    return r.status === 'success' && r.data.result.length > 0 && Number(r.data.result[0].value[1]) >= 12;
  }, 40000, 'twelve scrapes of wsgate', 500);
  assert.equal((await adminRequest(adminPort, '/reload', { method: 'POST' })).status, 200);
  await sleep(2500); // scraped after the reload
});
after(async () => { if (stopLoad) await stopLoad(); await cleanup(); });

test('the dashboard is well formed: unique panel ids, every panel placed, every query on the datasource variable', async (t) => {
  const dash = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  assert.equal(dash.uid, 'wsgate-overview');
  const ids = new Set();
  const walk = (panels) => {
    for (const p of panels) {
      assert.ok(!ids.has(p.id), `duplicate panel id ${p.id}`);
      ids.add(p.id);
      assert.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.h > 0, `${p.title}: no gridPos`);
      if (p.type !== 'row') {
        assert.equal(p.datasource?.uid, '${datasource}', `${p.title}: datasource`);
        assert.ok(p.targets?.length > 0, `${p.title}: no query`);
        for (const q of p.targets) assert.match(q.expr, /instance=~"\$instance"/, `${p.title} ${q.refId}: not filtered by $instance`);
      }
      walk(p.panels || []);
    }
  };
  walk(dash.panels);
  // every family wsgate exports is on the dashboard
  const text = (await adminRequest(adminPort ?? 0, '/metrics').catch(() => null))?.body;
  if (!text) { t.diagnostic('no gateway (prometheus missing): family coverage not checked'); return; }
  const families = [...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]);
  const exprs = expressions(dash).map((e) => e.expr).join('\n');
  for (const f of families) {
    if (['wsgate_websocket_frames_total'].includes(f)) continue; // messages and bytes say it better
    assert.ok(exprs.includes(f), `no panel shows ${f}`);
  }
});

test('every PromQL expression of the dashboard returns data from a real Prometheus scraping wsgate', T, async (t) => {
  if (!havePrometheus) {
    t.skip(`${PROMETHEUS} not found (apt-get install prometheus; .ci/deps.sh test installs it)`);
    return;
  }
  const dash = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  const list = expressions(dash);
  assert.ok(list.length >= 25, `${list.length} expressions`);
  const subst = (e) => e.replaceAll('$__rate_interval', '10s').replaceAll('$__interval', '2s')
    .replaceAll('$job', 'wsgate').replaceAll('$instance', `127.0.0.1:${adminPort}`);
  const empty = [];
  for (const { panel, refId, expr } of list) {
    const q = subst(expr);
    assert.doesNotMatch(q, /\$/, `${panel} ${refId}: a variable left in ${q}`);
    // A counter family whose series only appear once counted (closes, policy events) may need
    // the workload's next round: retry a few seconds before calling it empty.
    let r;
    const deadline = Date.now() + 15000;
    for (;;) {
      r = await query(q);
      assert.equal(r.status, 'success', `${panel} ${refId}: ${q}: ${r.error}`);
      if (r.data.result.length > 0 || Date.now() > deadline) break;
      await sleep(1000);
    }
    if (r.data.result.length === 0) empty.push(`${panel} ${refId}: ${q}`);
    else t.diagnostic(`${panel} [${refId}]: ${r.data.result.length} series, first ${JSON.stringify(r.data.result[0].metric)} = ${r.data.result[0].value[1]}`);
  }
  assert.deepEqual(empty, [], 'expressions without data');
  // The load itself is visible (not only zeros): messages, policy events and failed handshakes per second.
  for (const q of [
    'sum(rate(wsgate_websocket_messages_total[10s])) > 0',
    'sum(increase(wsgate_policy_events_total{rule="max_frame"}[1m])) > 0',
    'sum(increase(wsgate_tls_handshake_failures_total{reason="not_tls"}[1m])) > 0',
    'sum(increase(wsgate_reloads_total{result="ok"}[5m])) > 0',
    'sum(increase(wsgate_acme_challenge_requests_total{type="http-01",result="served"}[1m])) > 0',
    'sum(increase(wsgate_http_redirects_total[1m])) > 0',
    'max(wsgate_acme_challenges{type="http-01"}) > 0']) {
    const r = await query(q);
    assert.ok(r.data.result.length > 0, `no data for ${q}`);
  }
});

test('the dashboard\'s template variables find their values (label_values through the series API)', T, async (t) => {
  if (!havePrometheus) {
    t.skip(`${PROMETHEUS} not found`);
    return;
  }
  const dash = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  for (const v of dash.templating.list.filter((x) => x.type === 'query')) {
    const m = /^label_values\((.+), (\w+)\)$/.exec(v.query.query);
    assert.ok(m, `${v.name}: ${v.query.query}`);
    const match = m[1].replaceAll('$job', 'wsgate');
    const r = await promGet(`/api/v1/series?match[]=${encodeURIComponent(match)}`);
    assert.equal(r.status, 'success', `${v.name}: ${match}`);
    const values = new Set(r.data.map((s) => s[m[2]]).filter(Boolean));
    assert.ok(values.size > 0, `${v.name}: no ${m[2]} for ${match}`);
    if (m[2] === 'instance') assert.ok(values.has(`127.0.0.1:${adminPort}`));
  }
});
