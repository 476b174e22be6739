// Helpers for the cent.js suite: the client, raw API calls, connection tokens, and
// unidirectional HTTP-stream connections that collect their pushes.
//
// Environment: ROTOR_URL, ROTOR_API_KEY, ROTOR_HMAC_SECRET (defaults to tests/config/api.json's).

import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import cent from 'cent.js';

export const { CentClient, CentException } = cent;

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run tests/api-js/run.sh, or export it`);
  }
  return value;
}

export const URL_BASE = required('ROTOR_URL').replace(/\/$/, '');
export const API_KEY = required('ROTOR_API_KEY');
const SECRET =
  process.env.ROTOR_HMAC_SECRET ||
  JSON.parse(readFileSync(new URL('../config/api.json', import.meta.url), 'utf8')).token_hmac_secret_key;

export const client = new CentClient({ url: `${URL_BASE}/api`, apiKey: API_KEY });

export function unique(prefix = 'apijs') {
  return `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

export function token(user, ttl = 3600) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ sub: user, exp: Math.floor(Date.now() / 1000) + ttl }));
  const signature = createHmac('sha256', SECRET).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/** POST /api/<method> with fetch: { status, body }. */
export async function api(method, params, headers = {}) {
  const res = await fetch(`${URL_BASE}/api/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(params),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** A unidirectional HTTP-stream connection; `next(pred)` waits for a matching message. */
export class UniStream {
  static async open(user, ttl = 3600) {
    const s = new UniStream();
    s.abort = new AbortController();
    const res = await fetch(`${URL_BASE}/connection/uni_http_stream`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: token(user, ttl) }),
      signal: s.abort.signal,
    });
    if (res.status !== 200) {
      throw new Error(`uni_http_stream answered ${res.status}: ${await res.text()}`);
    }
    s.messages = [];
    s.waiters = [];
    s.closed = false;
    s.done = s.read(res.body);
    const first = await s.next((m) => m.connect);
    s.client = first.connect.client;
    s.session = first.connect.session;
    return s;
  }

  async read(body) {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of body) {
        buffer += decoder.decode(chunk, { stream: true });
        let nl;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) this.push(JSON.parse(line));
        }
      }
    } catch {
      // aborted by close()
    }
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.check();
  }

  push(message) {
    this.messages.push(message);
    for (const w of [...this.waiters]) w.check();
  }

  /** Resolves with the first unread message matching `pred` (pings are skipped). */
  next(pred = () => true, timeout = 5000) {
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          const i = this.messages.findIndex((m) => Object.keys(m).length > 0 && pred(m));
          if (i >= 0) {
            const [m] = this.messages.splice(i, 1);
            this.waiters.splice(this.waiters.indexOf(waiter), 1);
            clearTimeout(timer);
            resolve(m);
          }
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error('no matching message in time'));
      }, timeout);
      this.waiters.push(waiter);
      waiter.check();
    });
  }

  /** Rejects if a message matching `pred` arrives within `wait` ms. */
  async quiet(pred, wait = 500) {
    let got;
    try {
      got = await this.next(pred, wait);
    } catch {
      return;
    }
    throw new Error(`unexpected message: ${JSON.stringify(got)}`);
  }

  async waitClosed(timeout = 5000) {
    const t = new Promise((_, reject) => setTimeout(() => reject(new Error('stream did not end')), timeout));
    await Promise.race([this.done, t]);
  }

  close() {
    this.abort.abort();
  }
}
