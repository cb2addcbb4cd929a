// Helpers for the end-to-end tests: real processes on loopback, real peers, no mocks.
//   - ports, the wsgate process (spawned with flags, stderr collected, ready when it accepts TCP)
//   - upstreams: a `ws` echo server that records messages and closes, a raw WebSocket frame echo
//     server that records every frame exactly as it arrived, an HTTP echo server, a black hole,
//     the chat example
//   - clients: TLS sockets (no verification), a byte reader, HTTP/1.1 response parsing,
//     hand-built WebSocket frames
//   - certificates made with the openssl CLI (ECDSA P-256 with SANs)
// Everything started here is registered and killed by cleanup() (call it in `after`), and again
// when the test process exits.
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TOP = path.resolve(HERE, '../..');
export const WSGATE = path.resolve(TOP, process.env.WSGATE_BIN || 'build/release/wsgate');
export const CHAT_DIR = path.join(TOP, 'examples/chat');
export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects with `what` after ms. */
export function withTimeout(promise, ms, what = 'operation') {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

/** Polls cond() (sync or async) until truthy; returns its value. */
export async function waitFor(cond, ms = 5000, what = 'condition', every = 25) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timeout after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

// ---------------------------------------------------------------------------------------------
// Registry of everything to stop.
const cleanups = [];
const children = new Set();
export function onCleanup(fn) { cleanups.push(fn); }
export class SanitizerFinding extends Error {}
export async function cleanup() {
  const findings = [];
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await withTimeout(Promise.resolve().then(fn), 5000, 'cleanup step');
    } catch (e) {
      if (e instanceof SanitizerFinding) findings.push(e.message); /* best effort for the rest */
    }
  }
  if (findings.length) throw new SanitizerFinding(findings.join('\n'));
}

/* A gateway that crashed, or whose sanitizers reported anything, fails the file that ran it. */
function checkGatewayExit(proc, { code, signal }) {
  const log = proc.log();
  const m = /(ERROR: (Address|Leak)Sanitizer|runtime error:|AddressSanitizer)[^\n]*/.exec(log);
  if (m) throw new SanitizerFinding(`wsgate ${proc.spawnargs.slice(1).join(' ')}: ${m[0]}\n${log.slice(-4000)}`);
  if (signal && signal !== 'SIGTERM' && signal !== 'SIGKILL')
    throw new SanitizerFinding(`wsgate died with ${signal}:\n${log.slice(-4000)}`);
  if (code !== null && code !== 0)
    throw new SanitizerFinding(`wsgate exited with ${code}:\n${log.slice(-4000)}`);
}
function killAllNow() { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } }
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killAllNow(); process.exit(130); });

/** Spawns a process that is killed by cleanup(); stdout+stderr collected into .log(). */
export function spawnChild(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  const keep = (d) => { out += d; if (out.length > 4e6) out = out.slice(-2e6); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.log = () => out;
  child.exited = new Promise((res) => child.on('exit', (code, signal) => { children.delete(child); res({ code, signal }); }));
  child.on('error', (e) => { out += `spawn error: ${e.message}\n`; });
  children.add(child);
  onCleanup(() => stopChild(child));
  return child;
}

/** SIGTERM, then SIGKILL after grace ms. Resolves with {code, signal}. */
export async function stopChild(child, grace = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exited;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), grace);
  const r = await child.exited;
  clearTimeout(t);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Ports

/** A port that was free a moment ago on host. */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, host, () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export function tcpAccepts(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.setTimeout(500);
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('timeout', () => { s.destroy(); resolve(false); });
    s.on('error', () => resolve(false));
  });
}

async function waitListening(port, child, what, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before listening:\n${child.log()}`);
    }
    if (await tcpAccepts(port)) return;
    await sleep(50);
  }
  throw new Error(`${what} not listening on ${port} after ${ms} ms:\n${child ? child.log() : ''}`);
}

// ---------------------------------------------------------------------------------------------
// wsgate

/**
 * Starts wsgate on 127.0.0.1:<free port> with the given extra flags (an array, e.g.
 * ['--upstream', '127.0.0.1:3001']). Returns {port, proc, log(), stop()}.
 */
export async function startGateway(flags, { port, listenHost = '127.0.0.1' } = {}) {
  if (!fs.existsSync(WSGATE)) throw new Error(`wsgate binary not found: ${WSGATE} (set WSGATE_BIN)`);
  port = port || await freePort();
  const args = ['--listen', `${listenHost}:${port}`, ...flags];
  const proc = spawnChild(WSGATE, args);
  onCleanup(async () => checkGatewayExit(proc, await stopChild(proc, 4000)));
  await waitListening(port, proc, `wsgate ${args.join(' ')}`);
  return { port, proc, args, log: () => proc.log(), stop: (grace) => stopChild(proc, grace) };
}

/** Runs wsgate to completion (for -t, --help). Returns {code, stdout, stderr}. */
export function runGateway(args, timeout = 10000) {
  return new Promise((resolve) => {
    const p = spawn(WSGATE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('close', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }); });
  });
}

// ---------------------------------------------------------------------------------------------
// Certificates (openssl CLI)

let tmpRoot;
export function tmpDir() {
  if (!tmpRoot) {
    tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-e2e-'));
    onCleanup(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
  }
  return tmpRoot;
}

/** Self-signed ECDSA P-256 certificate for cn with the given SAN DNS names. Returns {cert, key}. */
export function makeCert(cn, dnsNames = [cn]) {
  const dir = tmpDir();
  const base = path.join(dir, cn.replace(/[^\w.-]/g, '_'));
  const cert = `${base}.crt`, key = `${base}.key`;
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', `subjectAltName=${dnsNames.map((n) => `DNS:${n}`).join(',')}`], { stdio: 'ignore' });
  return { cert, key };
}

/** Runs a command, collects output; never throws. stdin: string written then closed after delayMs. */
export function run(cmd, args, { input = '', delayMs = 0, timeout = 15000 } = {}) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.stdin.on('error', () => {});
    const t = setTimeout(() => p.kill('SIGKILL'), timeout);
    setTimeout(() => { p.stdin.end(input); }, delayMs);
    p.on('close', (code, signal) => { clearTimeout(t); resolve({ code, signal, out }); });
  });
}

// ---------------------------------------------------------------------------------------------
// Byte reader over a socket

export class EOFError extends Error {}

export class Reader {
  constructor(sock) {
    this.sock = sock;
    this.chunks = [];
    this.len = 0;
    this.ended = false;
    this.error = null;
    this.waiters = [];
    sock.on('data', (d) => { this.chunks.push(d); this.len += d.length; this._wake(); });
    sock.on('end', () => { this.ended = true; this._wake(); });
    sock.on('close', () => { this.ended = true; this._wake(); });
    sock.on('error', (e) => { this.error = e; this.ended = true; this._wake(); });
  }
  _wake() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }
  _flat() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] || Buffer.alloc(0);
  }
  _take(n) {
    const b = this._flat();
    const out = b.subarray(0, n);
    this.chunks = n < b.length ? [b.subarray(n)] : [];
    this.len -= n;
    return out;
  }
  async _more(deadline, what) {
    if (this.ended) throw new EOFError(`EOF while waiting for ${what}${this.error ? ` (${this.error.code || this.error.message})` : ''}`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timeout waiting for ${what}`);
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.waiters = this.waiters.filter((f) => f !== done); reject(new Error(`timeout waiting for ${what}`)); }, left);
      const done = () => { clearTimeout(t); resolve(); };
      this.waiters.push(done);
    });
  }
  async read(n, ms = 5000) {
    const deadline = Date.now() + ms;
    while (this.len < n) await this._more(deadline, `${n} bytes (have ${this.len})`);
    return this._take(n);
  }
  async readUntil(delim, ms = 5000, max = 1 << 20) {
    const deadline = Date.now() + ms;
    const d = Buffer.from(delim);
    for (;;) {
      const i = this._flat().indexOf(d);
      if (i >= 0) return this._take(i + d.length);
      if (this.len > max) throw new Error(`no ${JSON.stringify(delim)} within ${max} bytes`);
      await this._more(deadline, JSON.stringify(delim));
    }
  }
  /** Everything until the peer closes. */
  async readToEnd(ms = 5000) {
    const deadline = Date.now() + ms;
    while (!this.ended) await this._more(deadline, 'end of stream').catch((e) => { if (!(e instanceof EOFError)) throw e; });
    return this._take(this.len);
  }
  /** Resolves true when the peer has closed within ms, false otherwise. */
  async waitEnd(ms = 5000) {
    try { await this.readToEnd(ms); return true; } catch { return false; }
  }
}

// ---------------------------------------------------------------------------------------------
// TLS clients

/** Connects to wsgate with TLS (no verification). Resolves with the socket after the handshake. */
export function tlsConnect(port, { servername = 'localhost', localAddress, host = '127.0.0.1', ...rest } = {}) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host, port, servername, localAddress, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...rest });
    const t = setTimeout(() => { sock.destroy(); reject(new Error('TLS connect timeout')); }, 5000);
    sock.once('secureConnect', () => { clearTimeout(t); resolve(sock); });
    sock.once('error', (e) => { clearTimeout(t); reject(e); });
  });
}

/** Parses one HTTP/1.1 response from reader. Returns {status, reason, headers, rawHead, body}. */
export async function readResponse(reader, { ms = 5000, head = false } = {}) {
  const rawHead = (await reader.readUntil('\r\n\r\n', ms)).toString('latin1');
  const lines = rawHead.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const l of lines.slice(1)) {
    if (!l) continue;
    const i = l.indexOf(':');
    const k = l.slice(0, i).trim().toLowerCase(), v = l.slice(i + 1).trim();
    headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
  }
  const status = Number(m[1]);
  let body = Buffer.alloc(0);
  if (head || status < 200 || status === 204 || status === 304) {
    // no body
  } else if (/\bchunked\b/i.test(headers['transfer-encoding'] || '')) {
    const parts = [];
    for (;;) {
      const sizeLine = (await reader.readUntil('\r\n', ms)).toString('latin1');
      const size = parseInt(sizeLine, 16);
      if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(sizeLine)}`);
      if (size === 0) { // trailers until empty line
        while ((await reader.readUntil('\r\n', ms)).length > 2);
        break;
      }
      parts.push(await reader.read(size, ms));
      await reader.read(2, ms);
    }
    body = Buffer.concat(parts);
    body.chunked = parts.length;
  } else if (headers['content-length'] !== undefined) {
    body = await reader.read(Number(headers['content-length']), ms);
  } else {
    body = await reader.readToEnd(ms);
  }
  return { status, reason: m[2], headers, rawHead, body };
}

/** Sends raw request bytes on a fresh TLS connection and reads one response. */
export async function rawRequest(port, bytes, opts = {}) {
  const sock = await tlsConnect(port, opts);
  const reader = new Reader(sock);
  try {
    sock.write(bytes);
    const res = await readResponse(reader, opts);
    res.closed = await reader.waitEnd(opts.waitEndMs ?? 0);
    return res;
  } finally {
    sock.destroy();
  }
}

/** https.request through wsgate; resolves {status, headers, body(Buffer)}. */
export function httpsRequest(port, { path: p = '/', method = 'GET', headers = {}, body, localAddress, agent, servername = 'localhost', timeout = 8000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: p, method, headers, localAddress, servername, agent: agent ?? false, rejectUnauthorized: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`request timeout ${method} ${p}`)));
    req.on('error', reject);
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames

export const OP = { CONT: 0, TEXT: 1, BIN: 2, CLOSE: 8, PING: 9, PONG: 10 };

/** Builds one frame. payload: Buffer|string. mask: true (random key) / false / a 4-byte Buffer. */
export function buildFrame({ fin = true, rsv = 0, opcode, payload = Buffer.alloc(0), mask = true } = {}) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const key = mask === true ? crypto.randomBytes(4) : mask || null;
  let hdr;
  if (p.length < 126) {
    hdr = Buffer.from([0, p.length]);
  } else if (p.length < 65536) {
    hdr = Buffer.alloc(4); hdr[1] = 126; hdr.writeUInt16BE(p.length, 2);
  } else {
    hdr = Buffer.alloc(10); hdr[1] = 127; hdr.writeBigUInt64BE(BigInt(p.length), 2);
  }
  hdr[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  if (!key) return Buffer.concat([hdr, p]);
  hdr[1] |= 0x80;
  const m = Buffer.from(p);
  for (let i = 0; i < m.length; i++) m[i] ^= key[i & 3];
  return Buffer.concat([hdr, key, m]);
}

export function closePayload(code, reason = '') {
  if (code === undefined) return Buffer.alloc(0);
  const r = Buffer.isBuffer(reason) ? reason : Buffer.from(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code, 0);
  r.copy(b, 2);
  return b;
}

/** Reads one frame. Returns {fin, rsv, opcode, masked, payload, code?, reason?}. */
export async function readFrame(reader, ms = 5000) {
  const h = await reader.read(2, ms);
  let len = h[1] & 0x7f;
  if (len === 126) len = (await reader.read(2, ms)).readUInt16BE(0);
  else if (len === 127) len = Number((await reader.read(8, ms)).readBigUInt64BE(0));
  const masked = !!(h[1] & 0x80);
  const key = masked ? await reader.read(4, ms) : null;
  const payload = Buffer.from(await reader.read(len, ms));
  if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
  const f = { fin: !!(h[0] & 0x80), rsv: (h[0] >> 4) & 7, opcode: h[0] & 0x0f, masked, payload };
  if (f.opcode === OP.CLOSE) {
    f.code = payload.length >= 2 ? payload.readUInt16BE(0) : undefined;
    f.reason = payload.subarray(2).toString('utf8');
  }
  return f;
}

/** Reads frames until a close frame (returned) or EOF (returns null). Other frames go to .skipped. */
export async function readClose(reader, ms = 5000) {
  const skipped = [];
  const deadline = Date.now() + ms;
  try {
    for (;;) {
      const f = await readFrame(reader, Math.max(1, deadline - Date.now()));
      if (f.opcode === OP.CLOSE) { f.skipped = skipped; return f; }
      skipped.push(f);
    }
  } catch (e) {
    if (e instanceof EOFError) return null;
    throw e;
  }
}

export function wsKey() { return crypto.randomBytes(16).toString('base64'); }
export function wsAccept(key) { return crypto.createHash('sha1').update(key + WS_GUID).digest('base64'); }

/**
 * Manual upgrade through wsgate over a raw TLS socket. Returns {sock, reader, res} where res is
 * the parsed response head (status 101 expected unless the test checks a refusal).
 */
export async function wsUpgrade(port, { path: p = '/', headers = {}, key = wsKey(), version = '13', localAddress, servername } = {}) {
  const sock = await tlsConnect(port, { localAddress, servername });
  const reader = new Reader(sock);
  const h = { Host: `localhost:${port}`, Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': version, ...headers };
  if (key !== null) h['Sec-WebSocket-Key'] = key;
  let req = `GET ${p} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(h)) if (v !== null) req += `${k}: ${v}\r\n`;
  sock.write(`${req}\r\n`);
  const res = await readResponse(reader, { head: true });
  if (res.status === 101) {
    if (res.headers['sec-websocket-accept'] !== wsAccept(key)) throw new Error(`bad Sec-WebSocket-Accept in ${res.rawHead}`);
  } else if (res.headers['content-length']) {
    res.body = await reader.read(Number(res.headers['content-length']));
  }
  onCleanup(() => sock.destroy());
  return { sock, reader, res };
}

// ---------------------------------------------------------------------------------------------
// Upstreams

/**
 * `ws` echo server. Echoes every message with the same type. Records per connection:
 * {req, headers, messages: [{data: Buffer, isBinary}], pings, pongs, close: {code, reason}|null}.
 */
export async function startWsEcho({ perMessageDeflate = true } = {}) {
  const port = await freePort();
  const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate, maxPayload: 64 << 20 });
  const conns = [];
  wss.on('connection', (ws, req) => {
    const rec = { ws, req, headers: req.headers, messages: [], pings: [], pongs: [], close: null, closed: false };
    conns.push(rec);
    ws.on('message', (data, isBinary) => {
      rec.messages.push({ data: Buffer.from(data), isBinary });
      if (ws.readyState === ws.OPEN) ws.send(data, { binary: isBinary });
    });
    ws.on('ping', (d) => rec.pings.push(Buffer.from(d)));
    ws.on('pong', (d) => rec.pongs.push(Buffer.from(d)));
    ws.on('close', (code, reason) => { rec.close = { code, reason: reason.toString() }; rec.closed = true; });
    ws.on('error', () => {});
  });
  await new Promise((r) => wss.once('listening', r));
  const srv = {
    port, wss, conns,
    addr: `127.0.0.1:${port}`,
    last: () => conns[conns.length - 1],
    waitConn: (n = 1) => waitFor(() => conns.length >= n && conns[n - 1], 5000, `upstream connection #${n}`),
    /** Kills every upstream TCP connection abruptly and stops listening (an upstream that dies). */
    kill: () => { for (const c of conns) c.ws._socket?.destroy(); wss.close(); },
    close: () => new Promise((r) => { for (const c of wss.clients) c.terminate(); wss.close(() => r()); }),
  };
  onCleanup(srv.close);
  return srv;
}

/**
 * Raw WebSocket upstream: does the handshake by hand, then records every frame as it arrived
 * ({fin, rsv, opcode, masked, payload}) and echoes it back unmasked with the same FIN/opcode.
 * A close frame is answered with the same payload and the connection ends.
 */
export async function startRawWsUpstream() {
  const port = await freePort();
  const conns = [];
  const server = net.createServer(async (sock) => {
    const rec = { sock, head: '', headers: {}, frames: [], ended: false };
    conns.push(rec);
    const reader = new Reader(sock);
    sock.on('close', () => { rec.ended = true; });
    sock.on('error', () => {});
    try {
      rec.head = (await reader.readUntil('\r\n\r\n', 10000)).toString('latin1');
      for (const l of rec.head.split('\r\n').slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) rec.headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
        + `Sec-WebSocket-Accept: ${wsAccept(rec.headers['sec-websocket-key'] || '')}\r\n\r\n`);
      for (;;) {
        const f = await readFrame(reader, 60000);
        rec.frames.push(f);
        if (f.opcode === OP.CLOSE) {
          sock.end(buildFrame({ opcode: OP.CLOSE, payload: f.payload, mask: false }));
          break;
        }
        if (f.opcode === OP.PING) sock.write(buildFrame({ opcode: OP.PONG, payload: f.payload, mask: false }));
        else if (f.opcode !== OP.PONG) sock.write(buildFrame({ fin: f.fin, opcode: f.opcode, payload: f.payload, mask: false }));
      }
    } catch { sock.destroy(); }
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const srv = {
    port, conns, addr: `127.0.0.1:${port}`,
    /** The connection whose frames include a data frame with this exact text. */
    byMarker: (marker) => conns.find((c) => c.frames.some((f) => f.payload.toString() === marker)),
    close: () => new Promise((r) => { for (const c of conns) c.sock.destroy(); server.close(() => r()); }),
  };
  onCleanup(srv.close);
  return srv;
}

/**
 * HTTP echo upstream. Answers JSON {method, url, headers, rawHeaders, body (latin1), bodyLength}.
 * /chunked answers a chunked body of several writes. Records every request in .requests.
 */
export async function startHttpEcho() {
  const port = await freePort();
  const requests = [];
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const rec = { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body, remote: req.socket.remoteAddress };
      requests.push(rec);
      const big = /^\/big\?n=(\d+)(&chunked)?/.exec(req.url);
      if (big) { // n deterministic bytes, with Content-Length or chunked in 16 KiB writes
        const data = bigBody(Number(big[1]));
        if (!big[2]) {
          res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length });
          return res.end(data);
        }
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        for (let off = 0; off < data.length; off += 16384) res.write(data.subarray(off, off + 16384));
        return res.end();
      }
      if (req.url.startsWith('/chunked')) {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        let i = 0;
        const tick = () => {
          if (i === 5) return res.end();
          res.write(`chunk-${i++}:${'x'.repeat(1000)}\n`);
          setTimeout(tick, 5);
        };
        return tick();
      }
      const out = Buffer.from(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body: body.toString('latin1'), bodyLength: body.length }));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': out.length });
      res.end(out);
    });
  });
  server.keepAliveTimeout = 30000;
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const srv = {
    port, server, requests, addr: `127.0.0.1:${port}`,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
  onCleanup(srv.close);
  return srv;
}

/** n bytes, the same for the same n (what /big?n= answers). */
export function bigBody(n) {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + (i >> 8)) & 0xff;
  return out;
}

/** Accepts TCP connections, reads everything, never answers. Records received bytes. */
export async function startBlackHole() {
  const port = await freePort();
  const socks = [];
  let received = 0;
  const server = net.createServer((s) => { socks.push(s); s.on('data', (d) => { received += d.length; }); s.on('error', () => {}); });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const srv = {
    port, addr: `127.0.0.1:${port}`, socks, received: () => received,
    close: () => new Promise((r) => { for (const s of socks) s.destroy(); server.close(() => r()); }),
  };
  onCleanup(srv.close);
  return srv;
}

/** One chat example instance (examples/chat) on 127.0.0.1:port. */
export async function startChat(n, port) {
  if (!fs.existsSync(path.join(CHAT_DIR, 'node_modules'))) throw new Error('examples/chat/node_modules missing (.ci/deps.sh test installs it)');
  port = port || await freePort();
  const proc = spawnChild(process.execPath, [path.join(CHAT_DIR, 'index.js')], { env: { ...process.env, PORT: String(port), NODE_NUMBER: String(n) } });
  await waitListening(port, proc, `chat instance #${n}`);
  return { n, port, proc, addr: `127.0.0.1:${port}`, kill: () => { proc.kill('SIGKILL'); return proc.exited; } };
}

// ---------------------------------------------------------------------------------------------
// Misc

/** Runs fn over items with at most `limit` in flight. */
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; out[i] = await fn(items[i], i); } };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** 127.a.b.c with all three octets varied, deterministic. */
export function loopbackAddresses(n, seed = 1) {
  const out = new Set();
  let x = seed >>> 0;
  const rnd = () => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x >>> 8; };
  while (out.size < n) out.add(`127.${1 + (rnd() % 254)}.${rnd() % 256}.${1 + (rnd() % 254)}`);
  return [...out];
}

export function randomText(n) {
  // ASCII plus some multi-byte characters, exactly n bytes of UTF-8
  const s = [];
  let len = 0;
  const alphabet = ['a', 'b', 'Z', '0', ' ', 'é', '€', '𝄞'];
  while (len < n) {
    const c = alphabet[crypto.randomInt(alphabet.length)];
    const l = Buffer.byteLength(c);
    if (len + l > n) { s.push('x'); len += 1; } else { s.push(c); len += l; }
  }
  return s.join('');
}

// ---------------------------------------------------------------------------------------------
// Operations helpers (admin endpoint, descriptors)

/** One plain HTTP/1.1 request to the admin endpoint on 127.0.0.1:port. Resolves {status, headers, body}. */
export function adminRequest(port, p, { method = 'GET', timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`admin request timeout ${method} ${p}`)));
    req.on('error', reject);
    req.end();
  });
}

/** Open descriptors of a process (Linux /proc), or -1 when it is gone. */
export function fdCount(pid) {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return -1; }
}

/**
 * Debian's HAProxy in TCP mode on a free loopback port, round robin over `servers` (each
 * "HOST:PORT [options]", e.g. "127.0.0.1:8443 send-proxy-v2"). Returns {port, proc}.
 */
export async function startHaproxy(name, servers) {
  const port = await freePort();
  const cfg = path.join(tmpDir(), `${name}.cfg`);
  fs.writeFileSync(cfg, `global
    maxconn 2000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:${port}
    default_backend be
backend be
    balance roundrobin
${servers.map((srv, i) => `    server s${i} ${srv}`).join('\n')}
`);
  const proc = spawnChild('haproxy', ['-db', '-f', cfg]);
  await waitFor(() => tcpAccepts(port), 10000, `haproxy ${name}:\n${proc.log()}`);
  return { port, proc };
}
