// Backpressure: a client that stops reading while the upstream floods makes wsgate stop reading
// the upstream (TCP pushes back) instead of buffering; when the client reads again, every byte
// arrives. The bound is wsgate's buffers, whatever the message size.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { startGateway, freePort, wsUpgrade, wsAccept, readFrame, cleanup, onCleanup, waitFor, sleep, buildFrame, OP }
  from './lib.mjs';

const T = { timeout: 60000 };
const TOTAL = 48 << 20;  /* what the upstream tries to send */
const CHUNK = 1 << 20;   /* one 1 MiB binary frame at a time */
let gw, up;

const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

/* A raw upstream that answers the upgrade and then writes TOTAL bytes of frames as fast as its
 * socket accepts them, counting what the kernel took. */
async function startFlooder() {
  const port = await freePort();
  const st = { sent: 0, done: false };
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.once('data', (head) => {
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head.toString('latin1'))[1];
      const accept = wsAccept(key);
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
        + `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
      const frame = buildFrame({ opcode: OP.BIN, payload: Buffer.alloc(CHUNK, 0x5a), mask: false });
      const pump = () => {
        while (st.sent < TOTAL) {
          st.sent += CHUNK;
          if (!sock.write(frame)) { sock.once('drain', pump); return; }
        }
        st.done = true;
      };
      pump();
    });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  onCleanup(() => server.close());
  return { addr: `127.0.0.1:${port}`, st };
}

before(async () => {
  /* Under `make asan`, ASan keeps freed blocks in a 256 MB quarantine, so RSS would measure ASan
   * rather than wsgate (which frees and reuses its buffers on every pump); keep it small. */
  process.env.ASAN_OPTIONS = [process.env.ASAN_OPTIONS, 'quarantine_size_mb=1'].filter(Boolean).join(':');
  up = await startFlooder();
  gw = await startGateway(['--upstream', up.addr, '--workers', '1']);
});
after(cleanup);

test('a client that stops reading holds the upstream back; then every byte arrives', T, async (t) => {
  const rss0 = rssKiB(gw.proc.pid);
  const { sock, reader } = await wsUpgrade(gw.port);
  sock.pause(); /* stop reading: the kernel buffers fill, then wsgate's, then TCP pushes back */
  await sleep(1500);
  const stalled = up.st.sent;
  await sleep(1000);
  assert.equal(up.st.sent, stalled, 'the upstream kept sending while nobody read');
  assert.ok(stalled < TOTAL / 2, `the upstream got ${stalled} of ${TOTAL} bytes out while the client read nothing`);
  const grew = rssKiB(gw.proc.pid) - rss0;
  t.diagnostic(`upstream got ${stalled >> 20} MiB out before stalling; wsgate RSS grew ${grew} KiB`);
  assert.ok(grew < 8 * 1024, `wsgate's RSS grew by ${grew} KiB while holding a stalled client`);

  /* Read again: all TOTAL bytes of payload arrive, frame by frame. */
  let payload = 0;
  sock.resume();
  while (payload < TOTAL) {
    const f = await readFrame(reader, 10000);
    assert.equal(f.opcode, OP.BIN);
    assert.equal(f.payload.length, CHUNK);
    payload += f.payload.length;
  }
  assert.equal(payload, TOTAL);
  await waitFor(() => up.st.done, 5000, 'the upstream finished');
});
