// Graceful drain (native): on SIGTERM rotor stops accepting, disconnects every client with
// 3001 "shutdown" (a code the SDK reconnects after), flushes and exits within
// `shutdown_timeout`. This file starts its own rotor (target/debug/rotor, or ROTOR_BIN) with
// tests/config/sdk.json, so the suite's shared server keeps running.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import { hs256, nextEvent, sleep } from './lib.mjs';

const require = createRequire(import.meta.url);
const { Centrifuge } = require('centrifuge');
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const binary = process.env.ROTOR_BIN || join(root, 'target/debug/rotor');
// Under edge/test.sh the suite runs against wrangler dev: the drain is the native server's.
const skip = process.env.ROTOR_WEBSOCKET_PINGS === '0' ? 'the drain is native (SIGTERM)' : !existsSync(binary) && `no ${binary}`;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

it('SIGTERM: the SDK client gets 3001 "shutdown" and rotor exits within shutdown_timeout', { skip, timeout: 60_000 }, async () => {
  const config = JSON.parse(readFileSync(join(root, 'tests/config/sdk.json'), 'utf8'));
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'rotor-drain-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ ...config, address: '127.0.0.1', port, shutdown_timeout: '4s' }));
  const server = spawn(binary, ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.on('data', (d) => (log += d));
  const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {}
    assert.ok(i < 200, `rotor did not start: ${log}`);
    await sleep(50);
  }

  const now = Math.floor(Date.now() / 1000);
  const token = hs256({ sub: 'drain-user', iat: now, exp: now + 3600 }, config.token_hmac_secret_key);
  const c = new Centrifuge(`ws://127.0.0.1:${port}/connection/websocket`, {
    websocket: WebSocket,
    token,
    minReconnectDelay: 5000,
    maxReconnectDelay: 10000,
  });
  const connected = nextEvent(c, 'connected');
  c.connect();
  await connected;

  const connecting = nextEvent(c, 'connecting', () => true, 10_000);
  const sent = Date.now();
  server.kill('SIGTERM');
  const ctx = await connecting;
  assert.equal(ctx.code, 3001, JSON.stringify(ctx));
  assert.equal(ctx.reason, 'shutdown');
  const { code, at } = await exited;
  c.disconnect();
  assert.equal(code, 0, log);
  assert.ok(at - sent < 4000, `exited ${at - sent} ms after SIGTERM (shutdown_timeout 4s)`);
  assert.match(log, /shutdown: every connection flushed and closed/);
});
