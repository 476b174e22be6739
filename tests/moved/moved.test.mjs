// Every endpoint moved (tests/config/moved.json): each answers at its configured path, and
// nothing answers at the default paths any more. Run against a base URL (ROTOR_URL) on
// either host: tests/moved/run.sh (native), edge/test.sh (wrangler dev).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const WebSocket = createRequire(join(here, '..', 'sdk', 'package.json'))('ws');
const config = JSON.parse(readFileSync(join(here, '..', 'config', 'moved.json'), 'utf8'));
const base = process.env.ROTOR_URL;
const connect = '{"id":1,"connect":{}}';

/** Reads a streaming response until `text` shows up, then stops it. */
async function streamHas(path, init, text) {
  const ctl = new AbortController();
  const r = await fetch(base + path, { ...init, signal: ctl.signal });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  const reader = r.body.getReader();
  let seen = '';
  const deadline = Date.now() + 5000;
  while (!seen.includes(text) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += new TextDecoder().decode(value);
  }
  ctl.abort();
  assert.ok(seen.includes(text), `${path}: ${JSON.stringify(seen)}`);
}

function wsHas(path, send, text) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base.replace(/^http/, 'ws') + path);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`${path}: no ${text}`)); }, 5000);
    ws.on('open', () => send && ws.send(send));
    ws.on('message', (m) => {
      if (String(m).includes(text)) { clearTimeout(timer); ws.close(); resolve(); }
    });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

test('every endpoint answers at its moved path', async () => {
  const health = await fetch(base + config.health_handler_prefix);
  assert.equal(health.status, 200);
  const api = await fetch(`${base}${config.api_handler_prefix}/info`, { method: 'POST', headers: { 'X-API-Key': config.api_key }, body: '{}' });
  assert.equal(api.status, 200, await api.text());
  await streamHas(config.uni_http_stream_handler_prefix, { method: 'POST', body: '{}' }, '"connect"');
  await streamHas(`${config.uni_sse_handler_prefix}?cf_connect=%7B%7D`, {}, '"connect"');
  await streamHas(config.http_stream_handler_prefix, { method: 'POST', body: connect }, '"connect"');
  await streamHas(`${config.sse_handler_prefix}?cf_connect=${encodeURIComponent(connect)}`, {}, '"connect"');
  await wsHas(config.uni_websocket_handler_prefix, '{}', '"connect"');
  await wsHas(config.websocket_handler_prefix, connect, '"connect"');
  // An emulation request for no known session: refused as such, not as an unknown path.
  const emulation = await fetch(base + config.emulation_handler_prefix, { method: 'POST', body: '{' });
  assert.equal(emulation.status, 400, await emulation.text());
});

test('nothing answers at the default paths', async () => {
  for (const path of ['/connection/websocket', '/connection/http_stream', '/connection/sse', '/connection/uni_http_stream',
    '/connection/uni_sse', '/connection/uni_websocket', '/emulation', '/health', '/api/info', '/api']) {
    const r = await fetch(base + path, { method: 'POST', headers: { 'X-API-Key': config.api_key }, body: '{}' });
    assert.equal(r.status, 404, `${path}: ${r.status}`);
    await r.arrayBuffer();
  }
});
