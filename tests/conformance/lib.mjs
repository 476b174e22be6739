// Black-box helpers: everything goes over real sockets to ROTOR_URL (native or `wrangler dev`).
import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '..', 'sdk', 'package.json'));
export const WebSocket = require('ws');

export const ROTOR_URL = (process.env.ROTOR_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
export const WS_URL = ROTOR_URL.replace(/^http/, 'ws');
export const API_KEY = process.env.ROTOR_API_KEY || 'rotor-conformance-api-key';
export const SECRET = process.env.ROTOR_HMAC_SECRET || 'rotor-conformance-secret-0123456789';
/**
 * Whether the server pings WebSocket sessions. The edge does not (ROTOR_WEBSOCKET_PINGS=0):
 * an idle WebSocket-only Durable Object must be free to hibernate, so its connect results
 * announce no ping interval and the runtime watches the sockets instead.
 */
export const WEBSOCKET_PINGS = process.env.ROTOR_WEBSOCKET_PINGS !== '0';

export const uniq = (p) => `${p}${randomBytes(4).toString('hex')}`;
const b64url = (b) => Buffer.from(b).toString('base64url');

export function jwt(claims, { secret = SECRET, alg = 'HS256', sign = true } = {}) {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = sign ? createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url') : '';
  return `${head}.${body}.${sig}`;
}

export function token(user, ttl = 3600, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return jwt({ sub: user, iat: now, exp: now + ttl, ...extra });
}

export async function api(method, params, headers = { 'X-API-Key': API_KEY }) {
  const res = await fetch(`${ROTOR_URL}/api/${method}`, { method: 'POST', headers, body: JSON.stringify(params) });
  return { status: res.status, text: await res.text() };
}

export async function publish(channel, data) {
  const r = await api('publish', { channel, data });
  assert.equal(r.status, 200, r.text);
  const body = JSON.parse(r.text);
  assert.ok(body.result, r.text);
  return body.result;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `pred()` holds (bounded). */
export async function until(pred, what, ms = 8000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
    await sleep(20);
  }
}

/**
 * A streaming client: uni HTTP stream (NDJSON) or uni SSE. `messages` holds parsed JSON
 * messages (pings included as {}), `ended` turns true when the server ends the stream.
 */
export function stream(kind, { body, query, headers = {}, method = 'POST' } = {}) {
  const path = kind === 'sse' ? '/connection/uni_sse' : '/connection/uni_http_stream';
  const url = new URL(path, ROTOR_URL);
  if (query) url.searchParams.set('cf_connect', JSON.stringify(query));
  const ac = new AbortController();
  const s = { messages: [], raw: '', ended: false, status: null, headers: null };
  s.done = (async () => {
    const init = { method, headers, signal: ac.signal };
    if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
    const res = await fetch(url, init);
    s.status = res.status;
    s.headers = res.headers;
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        const text = dec.decode(chunk, { stream: true });
        s.raw += text;
        buf += text;
        if (kind === 'sse') {
          let at;
          while ((at = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, at);
            buf = buf.slice(at + 2);
            for (const line of block.split(/\r?\n/)) if (line.startsWith('data: ')) s.messages.push(JSON.parse(line.slice(6)));
          }
        } else {
          let at;
          while ((at = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, at);
            buf = buf.slice(at + 1);
            if (line.trim()) s.messages.push(JSON.parse(line));
          }
        }
      }
    } catch (e) {
      if (e.name !== 'AbortError') throw e;
    }
    s.ended = true;
  })();
  s.close = async () => { ac.abort(); await s.done.catch(() => {}); };
  s.pubs = (channel) => s.messages.filter((m) => m.pub && (!channel || m.channel === channel)).map((m) => m.pub);
  s.connect = () => s.messages.find((m) => m.connect)?.connect;
  s.disconnect = () => s.messages.find((m) => m.disconnect)?.disconnect;
  return s;
}

/** A uni WebSocket client: sends `first` as the first message. */
export function uniWs(first, { headers } = {}) {
  const ws = new WebSocket(`${WS_URL}/connection/uni_websocket`, { headers });
  const c = { messages: [], pings: 0, closed: null, error: null, ws };
  ws.on('open', () => { if (first !== undefined) ws.send(typeof first === 'string' ? first : JSON.stringify(first)); });
  ws.on('message', (d) => c.messages.push(JSON.parse(d.toString())));
  ws.on('ping', () => { c.pings += 1; });
  ws.on('close', (code, reason) => { c.closed = { code, reason: reason.toString() }; });
  ws.on('error', (e) => { c.error = e; });
  ws.on('unexpected-response', (req, res) => { c.closed = { status: res.statusCode }; req.destroy(); });
  c.close = () => { try { ws.terminate(); } catch {} };
  return c;
}
