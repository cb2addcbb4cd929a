// The admin endpoint after a scripted workload: /metrics passes a strict Prometheus text-format
// (0.0.4) check and every workload counter has its exact expected value; /healthz, /readyz
// (503 once draining), 404 for unknown paths, 405 for wrong methods.
//
// Workload (2 workers; client_max_frame 1k; no pings):
//   - 1 TLS connection, 5 keep-alive GETs to the HTTP echo                 -> 5 x 2xx
//   - 2 bad requests (CL+TE, a space in a field name), one connection each -> 2 x 4xx
//   - 1 plain-text HTTP request to the TLS port                             -> 1 failed handshake
//   - 3 WebSocket sessions, 4 text messages each way, closed by the client
//     with 1000, 1001 and 4000 (the echo upstream answers the same code)
//   - 1 WebSocket: 1 message each way, then a 2000-byte frame: the gateway sends 1009 to the
//     client and 1001 to the upstream; the client answers 1009, the upstream 1001 (these two
//     answers are not counted: the session is logged and counted when the gateway closes it)
// Session counters are added when a session ends, so the test waits for every access-log line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { WebSocketServer } from 'ws';
import {
  startGateway, startHttpEcho, cleanup, freePort, waitFor, sleep, tlsConnect, Reader, readResponse,
  rawRequest, wsUpgrade, buildFrame, readFrame, readClose, closePayload, OP, adminRequest,
} from './lib.mjs';

const T = { timeout: 60000 };

/* ---------------------------------------------------------------------------------------------
 * A strict Prometheus text exposition format 0.0.4 parser. Returns {families, samples, errors}:
 * errors lists every departure from the format (the test asserts there is none). Checks:
 * line grammar (name, labels, escapes, value, timestamp), # HELP and # TYPE at most once per
 * family and before its samples, a family's lines contiguous, no duplicate series, no duplicate
 * label names, sample names that fit the family type (counter/gauge: the name itself;
 * histogram: _bucket with le, _sum, _count), histogram buckets cumulative with a +Inf bucket
 * equal to _count, counters not negative, the text ending with a newline. */
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseLabels(s, i, where, errors) {
  // s[i] === '{'; returns [labels(object), index after '}'] or null on error
  const labels = {};
  i++;
  for (;;) {
    if (s[i] === '}') return [labels, i + 1];
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(i));
    if (!m) { errors.push(`${where}: bad label name at column ${i + 1}`); return null; }
    const name = m[0];
    i += name.length;
    if (s[i] !== '=' || s[i + 1] !== '"') { errors.push(`${where}: expected ="..." after label ${name}`); return null; }
    i += 2;
    let v = '';
    for (;;) {
      if (i >= s.length) { errors.push(`${where}: unterminated value of label ${name}`); return null; }
      const c = s[i];
      if (c === '"') { i++; break; }
      if (c === '\\') {
        const e = s[i + 1];
        if (e === '\\') v += '\\';
        else if (e === '"') v += '"';
        else if (e === 'n') v += '\n';
        else { errors.push(`${where}: bad escape \\${e ?? ''} in label ${name}`); return null; }
        i += 2;
        continue;
      }
      v += c;
      i++;
    }
    if (name.startsWith('__')) errors.push(`${where}: reserved label name ${name}`);
    if (name in labels) errors.push(`${where}: duplicate label ${name}`);
    labels[name] = v;
    if (s[i] === ',') { i++; continue; }
    if (s[i] === '}') return [labels, i + 1];
    errors.push(`${where}: expected , or } at column ${i + 1}`);
    return null;
  }
}

export function parsePrometheus(text) {
  const errors = [];
  const families = new Map(); // name -> {name, help, type, samples: [], done}
  const samples = [];
  const series = new Set();
  let current = null;
  const fam = (name) => {
    if (!families.has(name)) families.set(name, { name, help: undefined, type: undefined, samples: [], done: false });
    return families.get(name);
  };
  const enter = (f, where) => {
    if (current && current !== f) current.done = true;
    if (f.done) errors.push(`${where}: lines of family ${f.name} are not contiguous`);
    current = f;
  };
  if (text.length && !text.endsWith('\n')) errors.push('the text does not end with a newline');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, n) => {
    const where = `line ${n + 1} ${JSON.stringify(line.slice(0, 120))}`;
    if (/\r/.test(line)) errors.push(`${where}: carriage return`);
    if (line.trim() === '') return; // empty lines are ignored by the format
    if (line.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) return; // an ordinary comment
      const [, kw, name, rest = ''] = m;
      if (!NAME.test(name)) { errors.push(`${where}: bad metric name ${name}`); return; }
      const f = fam(name);
      enter(f, where);
      if (f.samples.length) errors.push(`${where}: # ${kw} after samples of ${name}`);
      if (kw === 'HELP') {
        if (f.help !== undefined) errors.push(`${where}: second # HELP for ${name}`);
        if (/^(?:[^\\]|\\[\\n])*$/.test(rest) === false) errors.push(`${where}: bad escape in HELP text`);
        f.help = rest;
      } else {
        if (f.type !== undefined) errors.push(`${where}: second # TYPE for ${name}`);
        if (!TYPES.has(rest)) errors.push(`${where}: unknown type ${JSON.stringify(rest)}`);
        f.type = rest;
      }
      return;
    }
    const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nm) { errors.push(`${where}: bad sample line`); return; }
    const name = nm[0];
    let i = name.length;
    let labels = {};
    if (line[i] === '{') {
      const r = parseLabels(line, i, where, errors);
      if (!r) return;
      [labels, i] = r;
    }
    const tail = line.slice(i);
    const vm = /^[ \t]+(\S+)(?:[ \t]+(-?\d+))?$/.exec(tail);
    if (!vm) { errors.push(`${where}: expected " value [timestamp]" after the name and labels`); return; }
    if (!VALUE.test(vm[1])) { errors.push(`${where}: bad value ${vm[1]}`); return; }
    const value = Number(vm[1].replace(/^([+-]?)Inf$/, '$1Infinity'));
    // the family: the name itself, or name minus _bucket/_sum/_count for a histogram/summary
    let f = families.get(name);
    let suffix = '';
    const sm = /^(.*)_(bucket|sum|count)$/.exec(name);
    if (sm && families.has(sm[1]) && ['histogram', 'summary'].includes(families.get(sm[1]).type)) {
      f = families.get(sm[1]);
      suffix = sm[2];
    }
    if (!f) { errors.push(`${where}: sample of ${name} without # HELP and # TYPE before it`); f = fam(name); }
    enter(f, where);
    if (f.help === undefined) errors.push(`${where}: no # HELP before the samples of ${f.name}`);
    if (f.type === undefined) errors.push(`${where}: no # TYPE before the samples of ${f.name}`);
    if ((f.type === 'counter' || f.type === 'gauge' || f.type === 'untyped') && name !== f.name) errors.push(`${where}: sample name ${name} in ${f.type} ${f.name}`);
    if (f.type === 'counter' && !(value >= 0)) errors.push(`${where}: counter value ${vm[1]}`);
    if (f.type === 'histogram') {
      if (!suffix) errors.push(`${where}: histogram sample without _bucket/_sum/_count`);
      if (suffix === 'bucket' && !('le' in labels)) errors.push(`${where}: bucket without le`);
      if (suffix !== 'bucket' && 'le' in labels) errors.push(`${where}: le on a non-bucket sample`);
    }
    const key = `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(',')}}`;
    if (series.has(key)) errors.push(`${where}: duplicate series ${key}`);
    series.add(key);
    const s = { name, labels, value, family: f.name, suffix };
    f.samples.push(s);
    samples.push(s);
  });
  for (const f of families.values()) {
    if (f.type === undefined) errors.push(`family ${f.name}: no # TYPE`);
    if (f.help === undefined) errors.push(`family ${f.name}: no # HELP`);
    if (f.type !== 'histogram') continue;
    // group by the labels other than le
    const groups = new Map();
    for (const s of f.samples) {
      const { le, ...rest } = s.labels;
      const g = JSON.stringify(Object.entries(rest).sort());
      if (!groups.has(g)) groups.set(g, { buckets: [], sum: undefined, count: undefined });
      const gr = groups.get(g);
      if (s.suffix === 'bucket') gr.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value, le]);
      else gr[s.suffix] = s.value;
    }
    for (const [g, gr] of groups) {
      const w = `histogram ${f.name}${g === '[]' ? '' : ` ${g}`}`;
      if (gr.buckets.some(([le]) => Number.isNaN(le))) errors.push(`${w}: an le that is not a number`);
      const sorted = [...gr.buckets].sort((a, b) => a[0] - b[0]);
      for (let k = 1; k < sorted.length; k++) if (sorted[k][1] < sorted[k - 1][1]) errors.push(`${w}: bucket le=${sorted[k][2]} below le=${sorted[k - 1][2]}`);
      const inf = sorted.find(([le]) => le === Infinity);
      if (!inf) errors.push(`${w}: no le="+Inf" bucket`);
      if (gr.count === undefined) errors.push(`${w}: no ${f.name}_count`);
      if (gr.sum === undefined) errors.push(`${w}: no ${f.name}_sum`);
      if (inf && gr.count !== undefined && inf[1] !== gr.count) errors.push(`${w}: _count ${gr.count} != +Inf bucket ${inf[1]}`);
    }
  }
  return { families, samples, errors };
}

/** The value of the series name{labels} (labels must match exactly), or undefined. */
function value(parsed, name, labels = {}) {
  const want = JSON.stringify(Object.entries(labels).sort());
  const s = parsed.samples.find((x) => x.name === name && JSON.stringify(Object.entries(x.labels).sort()) === want);
  return s?.value;
}
/** Every series of a family as {'k=v,k=v': value} (label order sorted). */
function seriesOf(parsed, name) {
  const out = {};
  for (const s of parsed.samples) {
    if (s.name !== name) continue;
    out[Object.entries(s.labels).sort().map(([k, v]) => `${k}=${v}`).join(',')] = s.value;
  }
  return out;
}

/* ---------------------------------------------------------------------------------------------
 * the workload */

let gw, adminPort, up, upWs, baseline, after1, scrapeText;
const upCloses = [];

async function scrape() {
  const r = await adminRequest(adminPort, '/metrics');
  assert.equal(r.status, 200, `/metrics answered ${r.status}: ${r.body}`);
  assert.match(r.headers['content-type'] || '', /^text\/plain; version=0\.0\.4/);
  return r.body;
}
const gauges = (p) => p.samples.filter((s) => s.name === 'wsgate_connections').reduce((a, s) => a + s.value, 0);
const countLines = (re) => gw.log().split('\n').filter((l) => re.test(l)).length;

async function wsSession(i, closeCode, K = 4) {
  const { sock, reader, res } = await wsUpgrade(gw.port, { path: `/ws/${i}` });
  assert.equal(res.status, 101);
  for (let j = 0; j < K; j++) sock.write(buildFrame({ opcode: OP.TEXT, payload: `s${i}-m${j}` }));
  for (let j = 0; j < K; j++) {
    const f = await readFrame(reader);
    assert.equal(f.opcode, OP.TEXT);
    assert.equal(f.payload.toString(), `s${i}-m${j}`);
  }
  sock.write(buildFrame({ opcode: OP.CLOSE, payload: closePayload(closeCode, 'bye') }));
  const c = await readClose(reader, 5000);
  assert.equal(c?.code, closeCode, `session ${i}: the upstream's close echo`);
  assert.ok(await reader.waitEnd(5000), `session ${i}: the gateway did not close the connection`);
  sock.destroy();
}

before(async () => {
  up = await startHttpEcho();
  upWs = new WebSocketServer({ server: up.server, perMessageDeflate: false });
  upWs.on('connection', (ws) => {
    ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary }));
    ws.on('close', (code) => upCloses.push(code));
    ws.on('error', () => {});
  });
  adminPort = await freePort();
  gw = await startGateway(['--upstream', up.addr, '--workers', '2', '--admin', `127.0.0.1:${adminPort}`,
    '--client_max_frame', '1k', '--ping_interval', '0', '--log_level', 'info', '--drain_timeout', '6s']);
  // startGateway's readiness probe is one plain TCP connect that closes at once
  await waitFor(async () => { try { return (await adminRequest(adminPort, '/healthz')).status === 200; } catch { return false; } }, 5000, 'the admin endpoint');
  await waitFor(async () => { const p = parsePrometheus(await scrape()); return value(p, 'wsgate_connections_accepted_total') >= 1 && gauges(p) === 0; }, 5000, 'the readiness probe accounted');
  await sleep(100);
  baseline = parsePrometheus(await scrape());

  // 5 keep-alive requests on one connection
  const s = await tlsConnect(gw.port);
  const r = new Reader(s);
  for (let i = 0; i < 5; i++) {
    s.write(`GET /req/${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    const res = await readResponse(r);
    assert.equal(res.status, 200, `request ${i}`);
    assert.equal(JSON.parse(res.body).url, `/req/${i}`);
  }
  s.end();
  await r.waitEnd(3000);
  s.destroy();
  // 2 bad requests
  const bad1 = await rawRequest(gw.port, 'POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', { waitEndMs: 3000 });
  assert.equal(bad1.status, 400, 'CL+TE');
  const bad2 = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n', { waitEndMs: 3000 });
  assert.equal(bad2.status, 400, 'a space in a field name');
  // a plain HTTP request to the TLS port
  await new Promise((resolve) => {
    const p = net.connect({ host: '127.0.0.1', port: gw.port }, () => p.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    p.on('data', () => {});
    p.on('error', () => resolve());
    p.on('close', () => resolve());
    setTimeout(() => { p.destroy(); resolve(); }, 5000);
  });
  // 3 sessions
  await wsSession(0, 1000);
  await wsSession(1, 1001);
  await wsSession(2, 4000);
  // 1 session closed 1009 by client_max_frame
  {
    const { sock, reader, res } = await wsUpgrade(gw.port, { path: '/ws/big' });
    assert.equal(res.status, 101);
    sock.write(buildFrame({ opcode: OP.TEXT, payload: 'small' }));
    assert.equal((await readFrame(reader)).payload.toString(), 'small');
    sock.write(buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(2000, 1) }));
    const c = await readClose(reader, 5000);
    assert.equal(c?.code, 1009, 'the gateway closes an oversized frame with 1009');
    sock.write(buildFrame({ opcode: OP.CLOSE, payload: closePayload(1009) }));
    assert.ok(await reader.waitEnd(5000), 'the gateway did not close the 1009 connection');
    sock.destroy();
  }
  // every line logged, every connection gone
  await waitFor(() => countLines(/"type":"ws"/) >= 4 && countLines(/"type":"http"/) >= 7, 5000,
    'the access-log lines of 4 sessions and 7 requests');
  await waitFor(async () => gauges(parsePrometheus(await scrape())) === 0, 5000, 'no connection left');
  await sleep(200);
  scrapeText = await scrape();
  after1 = parsePrometheus(scrapeText);
});
after(cleanup);

test('/metrics is strict Prometheus text format (HELP/TYPE, escapes, no duplicates, histograms)', T, async (t) => {
  for (const [what, p] of [['before the workload', baseline], ['after the workload', after1]]) {
    assert.deepEqual(p.errors, [], `${what}:\n${p.errors.join('\n')}`);
  }
  t.diagnostic(`${after1.families.size} families, ${after1.samples.length} series`);
});

test('the parser itself rejects what it must', () => {
  const bad = {
    'no TYPE': '# HELP a x\na 1\n',
    'no HELP': '# TYPE a counter\na 1\n',
    'TYPE after sample': '# HELP a x\na 1\n# TYPE a counter\n',
    'duplicate family': '# HELP a x\n# TYPE a counter\na 1\n# HELP a x\n# TYPE a counter\na 1\n',
    'duplicate series': '# HELP a x\n# TYPE a counter\na{b="1"} 1\na{b="1"} 2\n',
    'bad escape': '# HELP a x\n# TYPE a counter\na{b="\\x"} 1\n',
    'unescaped quote': '# HELP a x\n# TYPE a counter\na{b="""} 1\n',
    'bad value': '# HELP a x\n# TYPE a counter\na 1x\n',
    'no +Inf': '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    'no _sum': '# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n',
    'split family': '# HELP a x\n# TYPE a gauge\na{x="1"} 1\n# HELP b x\n# TYPE b gauge\nb 1\na{x="2"} 1\n',
    'no newline at end': '# HELP a x\n# TYPE a gauge\na 1',
    'bad HELP escape': '# HELP a x \\t\n# TYPE a gauge\na 1\n',
  };
  for (const [what, text] of Object.entries(bad)) assert.notDeepEqual(parsePrometheus(text).errors, [], what);
  const good = '# HELP a x \\\\ \\n y\n# TYPE a counter\na{b="q\\"\\\\\\n",c=""} 1e3 1700000000000\n# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n';
  const p = parsePrometheus(good);
  assert.deepEqual(p.errors, []);
  assert.equal(value(p, 'a', { b: 'q"\\\n', c: '' }), 1000);
});

test('exact counts after the scripted workload', T, async (t) => {
  const b = (name, labels) => value(baseline, name, labels);
  // before: only the readiness probe (one TCP connect, closed without a byte)
  assert.equal(b('wsgate_connections_accepted_total'), 1, 'accepted before the workload (the readiness probe)');
  for (const r of ['full', 'resumed', 'failed', 'timeout']) assert.equal(b('wsgate_tls_handshakes_total', { result: r }), 0, `tls ${r} before`);
  assert.equal(b('wsgate_websocket_sessions_total'), 0);

  const v = (name, labels) => value(after1, name, labels);
  const got = {
    accepted: v('wsgate_connections_accepted_total'),
    refused: v('wsgate_connections_refused_total'),
    tls: seriesOf(after1, 'wsgate_tls_handshakes_total'),
    http: Object.fromEntries(Object.entries(seriesOf(after1, 'wsgate_http_responses_total')).filter(([k]) => k !== 'class=1xx')),
    sessions: v('wsgate_websocket_sessions_total'),
    messages: seriesOf(after1, 'wsgate_websocket_messages_total'),
    closes: seriesOf(after1, 'wsgate_websocket_closes_total'),
    policy: seriesOf(after1, 'wsgate_policy_events_total'),
    connections: seriesOf(after1, 'wsgate_connections'),
    bytes: seriesOf(after1, 'wsgate_websocket_payload_bytes_total'),
    frames: seriesOf(after1, 'wsgate_websocket_frames_total'),
    histogram: seriesOf(after1, 'wsgate_websocket_frame_payload_bytes_bucket'),
    histogramSum: v('wsgate_websocket_frame_payload_bytes_sum'),
    histogramCount: v('wsgate_websocket_frame_payload_bytes_count'),
  };
  t.diagnostic(JSON.stringify(got));
  const want = {
    accepted: 1 + 1 + 2 + 1 + 3 + 1, // probe, keep-alive, 2 bad, plain text, 3 sessions, the 1009 one
    refused: 0,
    tls: { 'result=full': 7, 'result=resumed': 0, 'result=failed': 1, 'result=timeout': 0 },
    http: { 'class=2xx': 5, 'class=3xx': 0, 'class=4xx': 2, 'class=5xx': 0 }, // 1xx: the next test
    sessions: 4,
    messages: { 'direction=client_to_upstream': 13, 'direction=upstream_to_client': 13 },
    // the peers' answers to the gateway's own closes (client 1009, upstream 1001) end the session
    // after it was logged and counted: not counted
    closes: {
      'by=client,code=1000': 1, 'by=client,code=1001': 1, 'by=client,code=other': 1,
      'by=upstream,code=1000': 1, 'by=upstream,code=1001': 1, 'by=upstream,code=other': 1,
      'by=gateway_to_client,code=1009': 1, 'by=gateway_to_upstream,code=1001': 1,
    },
    policy: { 'direction=client_to_upstream,route=default,rule=max_frame': 1 },
    connections: { 'state=tls_handshake': 0, 'state=request_head': 0, 'state=http': 0, 'state=ws_upgrade': 0, 'state=websocket': 0, 'state=closing': 0 },
    // relayed frames each way: 13 data frames (12 x "sN-mJ" + "small", 5 bytes each) and the 3
    // relayed close frames (code + "bye": 5 bytes each); the gateway's own closes are not relayed
    bytes: { 'direction=client_to_upstream': 13 * 5 + 3 * 5, 'direction=upstream_to_client': 13 * 5 + 3 * 5 },
    frames: { 'direction=client_to_upstream': 16, 'direction=upstream_to_client': 16 },
    histogram: { 'le=125': 32, 'le=1024': 32, 'le=4096': 32, 'le=16384': 32, 'le=65536': 32, 'le=262144': 32, 'le=1048576': 32, 'le=+Inf': 32 },
    histogramSum: 160,
    histogramCount: 32,
  };
  const wrong = Object.keys(want).filter((k) => JSON.stringify(got[k]) !== JSON.stringify(want[k]))
    .map((k) => `${k}: got ${JSON.stringify(got[k])}, want ${JSON.stringify(want[k])}`);
  assert.deepEqual(got, want, `families with other counts than expected:\n${wrong.join('\n')}`);
  assert.deepEqual(upCloses.sort(), [1000, 1001, 1001, 4000], 'close codes the upstream received');
});

test('the 101 answers to the 4 upgrades are counted in wsgate_http_responses_total{class="1xx"}', T, async () => {
  // HELP: "HTTP responses sent to clients, by status class"; a 101 is one, and without it the
  // 1xx series could never move
  assert.equal(value(after1, 'wsgate_http_responses_total', { class: '1xx' }), 4);
});

test('the route label names the default route "default" in every family', T, async () => {
  const routes = after1.samples.filter((s) => 'route' in s.labels).map((s) => `${s.name} route=${JSON.stringify(s.labels.route)}`);
  const empty = routes.filter((r) => r.endsWith('route=""'));
  assert.deepEqual(empty, [], `series with an empty route label (the default route is "default" in wsgate_policy_events_total): ${empty.join(', ')}`);
});

test('admin: /healthz 200, /readyz 200, unknown path 404, wrong method 405, then POST /drain: /readyz 503', T, async () => {
  const h = await adminRequest(adminPort, '/healthz');
  assert.equal(h.status, 200);
  assert.equal((await adminRequest(adminPort, '/readyz')).status, 200);
  assert.equal((await adminRequest(adminPort, '/nope')).status, 404);
  assert.equal((await adminRequest(adminPort, '/metricsx')).status, 404);
  assert.equal((await adminRequest(adminPort, '/metrics', { method: 'POST' })).status, 405);
  assert.equal((await adminRequest(adminPort, '/healthz', { method: 'DELETE' })).status, 405);
  assert.equal((await adminRequest(adminPort, '/drain', { method: 'GET' })).status, 405);
  assert.equal((await adminRequest(adminPort, '/reload', { method: 'GET' })).status, 405);
  assert.equal(value(parsePrometheus(await scrape()), 'wsgate_draining'), 0);
  // a session that never answers the gateway's close keeps the drain going (2 s linger)
  const held = await wsUpgrade(gw.port, { path: '/ws/held' });
  assert.equal(held.res.status, 101);
  const d = await adminRequest(adminPort, '/drain', { method: 'POST' });
  assert.equal(d.status, 202);
  const ready = await adminRequest(adminPort, '/readyz');
  assert.equal(ready.status, 503, `/readyz while draining: ${ready.status} ${ready.body}`);
  assert.equal(value(parsePrometheus(await scrape()), 'wsgate_draining'), 1);
  const c = await readClose(held.reader, 8000);
  assert.equal(c?.code, 1001, 'the held session is closed with 1001');
  const exit = await Promise.race([gw.proc.exited, sleep(15000).then(() => null)]);
  assert.ok(exit, 'wsgate did not exit within drain_timeout after POST /drain');
  assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}\n${gw.log().slice(-2000)}`);
});
