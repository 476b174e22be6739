// Helpers shared by the SDK tests: tokens, the server API, SDK clients per transport and
// small promise utilities. The SDK itself (npm `centrifuge`) is used exactly as published.
import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
const EventSource = require('eventsource');
const { Centrifuge: CentrifugeJson } = require('centrifuge');
const { Centrifuge: CentrifugeProtobuf } = require('centrifuge/build/protobuf');

export const ROTOR_URL = (process.env.ROTOR_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
export const WS_URL = ROTOR_URL.replace(/^http/, 'ws');
export const API_KEY = process.env.ROTOR_API_KEY || 'rotor-sdk-test-api-key';
export const SECRET = process.env.ROTOR_HMAC_SECRET || 'rotor-sdk-test-secret-0123456789abcdef';
/** A loopback port nothing listens on (run.sh finds one), for the fallback tests. */
export const CLOSED_PORT = process.env.ROTOR_CLOSED_PORT || '1';
/** Whether the server pings WebSocket sessions (the edge does not: its idle objects hibernate). */
export const WEBSOCKET_PINGS = process.env.ROTOR_WEBSOCKET_PINGS !== '0';

export const endpoints = {
  websocket: `${WS_URL}/connection/websocket`,
  http_stream: `${ROTOR_URL}/connection/http_stream`,
  sse: `${ROTOR_URL}/connection/sse`,
  emulation: `${ROTOR_URL}/emulation`,
};

/** The five ways the SDK can talk to rotor's bidirectional endpoints. */
export const variants = [
  { name: 'websocket (JSON)', transport: 'websocket', protobuf: false },
  { name: 'http_stream (JSON)', transport: 'http_stream', protobuf: false },
  { name: 'sse (JSON)', transport: 'sse', protobuf: false },
  { name: 'websocket (Protobuf)', transport: 'websocket', protobuf: true },
  { name: 'http_stream (Protobuf)', transport: 'http_stream', protobuf: true },
];

// ---- tokens (HS256, as a backend would make them)

const b64url = (buf) => Buffer.from(buf).toString('base64url');

export function hs256(claims, secret = SECRET) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** A connection token for `user` valid for `ttl` seconds. */
export function connToken(user, ttl = 3600, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return hs256({ sub: user, iat: now, exp: now + ttl, ...extra });
}

// ---- server HTTP API

export async function api(method, params) {
  const res = await fetch(`${ROTOR_URL}/api/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify(params),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`api ${method}: HTTP ${res.status}: ${text}`);
  const body = JSON.parse(text);
  if (body.error) throw new Error(`api ${method}: error ${JSON.stringify(body.error)}`);
  return body.result;
}

export const apiPublish = (channel, data) => api('publish', { channel, data });

// ---- SDK clients

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Unique names so that tests never share channels or users. */
export function uniq(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/**
 * Makes a Centrifuge client for a variant. `opts.getToken` defaults to a one-hour token for
 * `opts.user`; `opts.transports` replaces the single-transport list (fallback tests).
 * Returns { c, variant, encode, decode, tokenCalls } where encode/decode turn JS values into
 * the payloads the variant carries (JSON values, or JSON bytes for Protobuf) and back.
 */
export function client(variant, opts = {}) {
  const user = opts.user ?? uniq('user');
  const tokenCalls = [];
  const getToken = opts.getToken ?? (async (ctx) => {
    tokenCalls.push(ctx);
    return connToken(user, opts.ttl ?? 3600);
  });
  const Impl = variant.protobuf ? CentrifugeProtobuf : CentrifugeJson;
  const transports = opts.transports
    ?? (variant.transport === 'websocket' && !opts.asArray
      ? endpoints.websocket
      : [{ transport: variant.transport, endpoint: endpoints[variant.transport] }]);
  const c = new Impl(transports, {
    websocket: WebSocket,
    eventsource: EventSource,
    emulationEndpoint: endpoints.emulation,
    getToken: (ctx) => getToken(ctx),
    name: 'rotor-sdk-test',
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 5000,
    ...(opts.centrifuge || {}),
  });
  const encode = variant.protobuf ? (v) => enc.encode(JSON.stringify(v)) : (v) => v;
  const decode = variant.protobuf
    ? (d) => {
        assertBytes(d);
        return JSON.parse(dec.decode(d));
      }
    : (d) => d;
  return { c, user, tokenCalls, encode, decode };
}

function assertBytes(d) {
  if (!(d instanceof Uint8Array)) throw new Error(`expected bytes from a Protobuf client, got ${typeof d}: ${JSON.stringify(d)}`);
}

// ---- promise utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the first event `name` from `emitter` that passes `pred`; rejects after `ms`. */
export function nextEvent(emitter, name, pred = () => true, ms = 8000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(name, on);
      reject(new Error(`timed out after ${ms} ms waiting for '${name}'`));
    }, ms);
    function on(ctx) {
      if (!pred(ctx)) return;
      clearTimeout(timer);
      emitter.off(name, on);
      resolve(ctx);
    }
    emitter.on(name, on);
  });
}

/** Collects every event `name` into an array (for asserting order and counts). */
export function collect(emitter, name) {
  const seen = [];
  emitter.on(name, (ctx) => seen.push(ctx));
  return seen;
}

/** Waits until `cond()` is truthy, polling; rejects with `what` after `ms`. */
export async function until(cond, what, ms = 8000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Disconnects and waits until the client has really gone (safe to call twice). */
export async function closeClient(c) {
  if (!c || c.state === 'disconnected') return;
  const done = nextEvent(c, 'disconnected', () => true, 5000).catch(() => {});
  c.disconnect();
  await done;
}
