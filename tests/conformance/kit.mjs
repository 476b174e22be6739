// Extra black-box helpers on top of lib.mjs: a uni WebSocket client that can pass the connect
// request in the URL, per-test cleanup of every stream and socket, and small waits.
// Every wait is bounded; every client a test opens is closed by `closeAll()` (afterEach).
import assert from 'node:assert/strict';
import { ROTOR_URL, WS_URL, WebSocket, stream, until, sleep } from './lib.mjs';

const open = new Set();

/** Closes every client opened through this module since the last call (use in afterEach). */
export async function closeAll() {
  const all = [...open];
  open.clear();
  await Promise.all(all.map((c) => Promise.resolve(c.close()).catch(() => {})));
}

/** lib.mjs `stream()` ('http' or 'sse'); closed by closeAll() unless `keep` is set. */
export function openStream(kind, { keep = false, ...opts } = {}) {
  const s = stream(kind, opts);
  // A failed request (e.g. "fetch failed" on a reset connection) ends the client with `error`
  // set, so waits report it instead of timing out, and it never becomes an unhandled rejection.
  s.done.catch((e) => { s.error = e; s.ended = true; });
  if (!keep) open.add(s);
  return s;
}

/**
 * A uni WebSocket client. `first` (object or string) is sent as the first message when given;
 * `query` (object) goes into `cf_connect`. Messages are parsed JSON, `raw` keeps the texts.
 * `keep`: not closed by closeAll() (for clients that live through a whole describe).
 */
export function openWs(first, { query, headers, keep = false } = {}) {
  const url = new URL(`${WS_URL}/connection/uni_websocket`);
  if (query !== undefined) url.searchParams.set('cf_connect', typeof query === 'string' ? query : JSON.stringify(query));
  const ws = new WebSocket(url, { headers });
  const c = { ws, messages: [], raw: [], pings: 0, closed: null, status: null, error: null, opened: false };
  ws.on('open', () => {
    c.opened = true;
    if (first !== undefined) ws.send(typeof first === 'string' ? first : JSON.stringify(first));
  });
  ws.on('message', (d, isBinary) => {
    const text = d.toString();
    c.raw.push({ text, isBinary });
    try { c.messages.push(JSON.parse(text)); } catch { c.messages.push({ unparsable: text }); }
  });
  ws.on('ping', () => { c.pings += 1; });
  ws.on('close', (code, reason) => { c.closed = { code, reason: reason.toString() }; });
  ws.on('error', (e) => { c.error = e; });
  ws.on('unexpected-response', (req, res) => {
    c.status = res.statusCode;
    c.closed = { status: res.statusCode };
    req.destroy();
  });
  c.connect = () => c.messages.find((m) => m.connect)?.connect;
  c.disconnect = () => c.messages.find((m) => m.disconnect)?.disconnect;
  c.pubs = (channel) => c.messages.filter((m) => m.pub && (!channel || m.channel === channel)).map((m) => m.pub);
  c.close = () => { try { ws.terminate(); } catch {} };
  if (!keep) open.add(c);
  return c;
}

/** Opens a uni client of `kind` ('http' | 'sse' | 'sse-get' | 'ws') with connect request `req`. */
export function openUni(kind, req, { keep = false, headers } = {}) {
  if (kind === 'ws') return openWs(req, { keep, headers });
  if (kind === 'sse-get') return openStream('sse', { method: 'GET', query: req, keep, headers });
  return openStream(kind, { body: req, keep, headers });
}

/** True while a uni client's connection is still open. */
export const isOpen = (c) => !c.ended && !c.closed;

export const UNI_KINDS = ['http', 'sse', 'sse-get', 'ws'];

/** Waits for the connect push of a uni client and returns it. */
export async function connected(c, what = 'connect push', ms = 8000) {
  await until(() => c.connect() || c.disconnect() || c.ended || c.closed, what, ms);
  if (c.error && !c.ws && !c.connect()) assert.fail(`${what}: request failed: ${c.error.message} (${c.error.cause?.message ?? c.error.cause?.code ?? ''})`);
  assert.ok(c.connect(), `${what}: got ${JSON.stringify(c.disconnect() ?? c.closed ?? c.messages)}`);
  return c.connect();
}

/** Waits until a uni client is finished (stream ended or socket closed). */
export async function finished(c, what = 'connection end', ms = 8000) {
  await until(() => c.ended || c.closed, what, ms);
  if (c.error && !c.ws) assert.fail(`${what}: request failed: ${c.error.message} (${c.error.cause?.message ?? c.error.cause?.code ?? ''})`);
}

/** Waits until a client holds `n` publications of `channel`; returns them. */
export async function pubsOf(c, channel, n, ms = 8000) {
  await until(() => c.pubs(channel).length >= n, `${n} publication(s) on ${channel}`, ms);
  return c.pubs(channel);
}

/** Resolves after `ms`, to check that nothing more arrives. */
export const quiet = (ms = 300) => sleep(ms);

export const isPing = (m) => m && typeof m === 'object' && Object.keys(m).length === 0;

export { ROTOR_URL };
