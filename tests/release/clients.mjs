// Raw-socket clients for the resource-release suite: every byte is written by hand so a test
// can stop a connection at any point (mid-head, mid-upgrade, mid-frame, mid-stream) and close
// it either cleanly (FIN, WebSocket close handshake) or abruptly (RST). Nothing here buffers
// without bound: stream bodies keep a rolling tail, WebSocket messages are counted and only
// the last few kept. Every wait is bounded.
import net from 'node:net';
import { createHmac, randomBytes } from 'node:crypto';

export const ROTOR_URL = (process.env.ROTOR_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const url = new URL(ROTOR_URL);
export const HOST = url.hostname;
export const PORT = Number(url.port || 80);
export const API_KEY = process.env.ROTOR_API_KEY || 'rotor-release-api-key';
export const SECRET = process.env.ROTOR_HMAC_SECRET || 'rotor-release-secret-0123456789abcdef';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const uniq = (p) => `${p}${randomBytes(4).toString('hex')}`;

const b64url = (b) => Buffer.from(b).toString('base64url');
/** An HS256 connection token for `user` signed with the server's HMAC secret. */
export function token(user, ttl = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub: user, iat: now, exp: now + ttl }));
  return `${head}.${body}.${createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url')}`;
}

/** Closes a socket abruptly (RST) or by closing it (FIN, or RST if unread data remains). */
export function kill(raw, rst) {
  if (rst) raw.s.resetAndDestroy();
  else raw.s.destroy();
}

/** A TCP connection to the server that remembers what it received and wakes waiters. */
export class Raw {
  constructor() {
    this.s = net.connect({ host: HOST, port: PORT });
    this.s.setNoDelay(true);
    this.buf = Buffer.alloc(0);
    this.received = 0;
    this.ended = false;
    this.closed = false;
    this.error = null;
    this.waiters = new Set();
    this.s.on('data', (d) => {
      this.received += d.length;
      this.feed(d);
      this.wake();
    });
    this.s.on('end', () => { this.ended = true; this.wake(); });
    this.s.on('close', () => { this.closed = true; this.wake(); });
    this.s.on('error', (e) => { this.error = e; });
  }

  /** Subclasses parse here; the default keeps everything in `buf`. */
  feed(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves with pred()'s value once truthy; rejects after `ms` or when the socket closed first. */
  until(pred, what, ms = 5000) {
    return new Promise((resolve, reject) => {
      let timer;
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      const check = () => {
        let v;
        try { v = pred(); } catch (e) { done(); reject(e); return true; }
        if (v) { done(); resolve(v); return true; }
        if (this.closed) {
          done();
          reject(new Error(`${what}: connection closed first${this.error ? ` (${this.error.code || this.error.message})` : ''}`));
          return true;
        }
        return false;
      };
      timer = setTimeout(() => { done(); reject(new Error(`${what}: timed out after ${ms} ms`)); }, ms);
      if (!check()) this.waiters.add(check);
    });
  }

  /** Waits for the TCP connection to be established. */
  open(ms = 5000) {
    if (this.s.readyState === 'open') { this.localPort = this.s.localPort; return Promise.resolve(); }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('TCP connect timed out')), ms);
      this.s.once('connect', () => { clearTimeout(t); this.localPort = this.s.localPort; resolve(); });
      this.s.once('close', () => { clearTimeout(t); reject(new Error(`TCP connect failed (${this.error?.code ?? 'closed'})`)); });
    });
  }

  /** Writes and waits until the bytes were handed to the kernel. */
  send(data) {
    return new Promise((resolve) => {
      if (this.s.destroyed) return resolve(false);
      this.s.write(data, (err) => resolve(!err));
    });
  }

  /** Waits (bounded) until the socket is closed, then makes sure it is. */
  async gone(ms = 1000) {
    await this.until(() => this.closed, 'close', ms).catch(() => {});
    this.s.destroy();
  }
}

// ---- HTTP

/** A request head (and body) as raw HTTP/1.1 text. */
export function httpRequest(method, path, { headers = {}, body } = {}) {
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${HOST}:${PORT}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  const payload = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  if (payload) lines.push(`Content-Length: ${payload.length}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`);
  return { head, body: payload ?? Buffer.alloc(0), all: Buffer.concat([head, payload ?? Buffer.alloc(0)]) };
}

const TAIL = 256 * 1024;

/**
 * A streaming HTTP response (uni HTTP stream, uni SSE, emulation streams): `status` once the
 * head arrived, `tail` the last 256 KiB of the body as text (chunk-size lines included).
 */
export class HttpStream extends Raw {
  constructor() {
    super();
    this.status = null;
    this.tail = '';
  }

  feed(d) {
    if (this.status === null) {
      super.feed(d);
      const at = this.buf.indexOf('\r\n\r\n');
      if (at < 0) return;
      const head = this.buf.subarray(0, at).toString('latin1');
      this.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      this.head = head;
      d = this.buf.subarray(at + 4);
      this.buf = Buffer.alloc(0);
    }
    this.tail += d.toString('latin1');
    if (this.tail.length > 2 * TAIL) this.tail = this.tail.slice(-TAIL);
  }

  /** Waits for `marker` (string or RegExp) in the body; returns the match. */
  async expect(marker, what, ms = 5000) {
    return this.until(() => {
      if (this.status !== null && this.status !== 200) throw new Error(`${what}: HTTP ${this.status}: ${this.tail.slice(0, 200)}`);
      return typeof marker === 'string' ? this.tail.includes(marker) : marker.exec(this.tail);
    }, what, ms);
  }
}

/**
 * A keep-alive HTTP client connection for short requests (API calls, /emulation posts):
 * `call()` sends one request and resolves with { status, body } (Content-Length responses).
 */
export class HttpConn extends Raw {
  constructor() {
    super();
    this.responses = [];
  }

  feed(d) {
    super.feed(d);
    for (;;) {
      const at = this.buf.indexOf('\r\n\r\n');
      if (at < 0) return;
      const head = this.buf.subarray(0, at).toString('latin1');
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (this.buf.length < at + 4 + len) return;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      this.responses.push({ status, head, body: this.buf.subarray(at + 4, at + 4 + len).toString() });
      this.buf = this.buf.subarray(at + 4 + len);
    }
  }

  async call(method, path, { headers, body } = {}, ms = 5000) {
    const want = this.responses.length + 1;
    await this.send(httpRequest(method, path, { headers, body }).all);
    await this.until(() => this.responses.length >= want, `${method} ${path} response`, ms);
    return this.responses[want - 1];
  }

  api(method, params, ms = 5000) {
    return this.call('POST', `/api/${method}`, { headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' }, body: params }, ms);
  }
}

// ---- WebSocket (RFC 6455, client side: masked frames)

/** One client frame, masked. */
export function wsFrame(opcode, payload) {
  payload = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n])
    : n < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 255])
      : (() => { const b = Buffer.alloc(10); b[0] = 0x80 | opcode; b[1] = 0x80 | 127; b.writeBigUInt64BE(BigInt(n), 2); return b; })();
  const mask = randomBytes(4);
  const body = Buffer.alloc(n);
  for (let i = 0; i < n; i++) body[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

export const closePayload = (code, reason = '') => {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
};

/**
 * A WebSocket client over a raw socket: `upgradeHead(path, protocol)` to start, then
 * `upgraded` (status 101 seen), `messages` (count), `last` (last few messages as
 * { binary, data }), `closeCode` when the server sent a close frame. Answers pings; answers a
 * server close frame with a close frame (then the server is expected to end TCP).
 */
export class Ws extends Raw {
  constructor() {
    super();
    this.status = null;
    this.upgraded = false;
    this.messages = 0;
    this.last = [];
    this.closeCode = null;
    this.sentClose = false;
    this.pending = null; // a fragmented message being assembled
    this.onMessage = null;
  }

  static head(path, protocol) {
    const headers = {
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      'Sec-WebSocket-Version': '13',
    };
    if (protocol) headers['Sec-WebSocket-Protocol'] = protocol;
    return httpRequest('GET', path, { headers }).head;
  }

  feed(d) {
    super.feed(d);
    if (this.status === null) {
      const at = this.buf.indexOf('\r\n\r\n');
      if (at < 0) return;
      const head = this.buf.subarray(0, at).toString('latin1');
      this.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      this.upgraded = this.status === 101;
      this.buf = this.buf.subarray(at + 4);
      if (!this.upgraded) return;
    }
    if (!this.upgraded) return;
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      let len = b[1] & 127;
      let off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10; }
      if (b[1] & 0x80) off += 4; // servers do not mask; skip a mask anyway
      if (b.length < off + len) return;
      const opcode = b[0] & 15;
      const fin = (b[0] & 0x80) !== 0;
      const payload = b.subarray(off, off + len);
      this.buf = b.subarray(off + len);
      this.frame(opcode, fin, payload);
    }
  }

  frame(opcode, fin, payload) {
    if (opcode === 9) { this.s.write(wsFrame(10, payload)); return; }
    if (opcode === 10) return;
    if (opcode === 8) {
      this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this.closeReason = payload.subarray(2).toString();
      if (!this.sentClose) { this.sentClose = true; this.s.write(wsFrame(8, payload.subarray(0, 2))); }
      return;
    }
    if (opcode === 0 && this.pending) this.pending.parts.push(payload);
    else this.pending = { binary: opcode === 2, parts: [payload] };
    if (!fin) return;
    const m = { binary: this.pending.binary, data: Buffer.concat(this.pending.parts) };
    this.pending = null;
    this.messages += 1;
    this.last.push(m);
    if (this.last.length > 8) this.last.shift();
    this.onMessage?.(m);
  }

  sendText(text) { return this.send(wsFrame(1, text)); }
  sendBinary(buf) { return this.send(wsFrame(2, buf)); }

  /**
   * The client side of a clean close: a close frame (1000), then up to `ms` for the server's
   * close frame or its end of TCP, then our FIN. Returns whether the server answered.
   */
  async closeCleanly(ms = 1000) {
    if (!this.sentClose) { this.sentClose = true; await this.send(wsFrame(8, closePayload(1000))); }
    const answered = await this.until(() => this.closeCode !== null || this.ended, 'server close', ms).then(() => true, () => false);
    this.s.end();
    await this.gone(500);
    return answered;
  }
}

// ---- Protobuf (just what the suite sends and reads: client.proto Command and Reply)

export function varint(n) {
  const out = [];
  while (n > 127) { out.push((n & 127) | 128); n = Math.floor(n / 128); }
  out.push(n);
  return Buffer.from(out);
}
const pbVarint = (tag, n) => Buffer.concat([varint((tag << 3) | 0), varint(n)]);
const pbBytes = (tag, b) => { b = Buffer.from(b); return Buffer.concat([varint((tag << 3) | 2), varint(b.length), b]); };
const delimited = (m) => Buffer.concat([varint(m.length), m]);

/** Command{id:1, connect{token}} and Command{id, subscribe{channel}}, varint-delimited. */
export const pbConnect = (tok) => delimited(Buffer.concat([pbVarint(1, 1), pbBytes(4, pbBytes(1, tok))]));
export const pbSubscribe = (id, channel) => delimited(Buffer.concat([pbVarint(1, id), pbBytes(5, pbBytes(1, channel))]));
/** Command{send:{}}: field 12, empty. */
export const PB_SEND = delimited(Buffer.from([0x62, 0x00]));

function readVarint(b, off) {
  let n = 0;
  let mul = 1;
  for (;;) {
    if (off >= b.length) throw new Error('truncated varint');
    const x = b[off++];
    n += (x & 127) * mul;
    if (!(x & 128)) return [n, off];
    mul *= 128;
  }
}

/** The top-level fields of each varint-delimited Reply in a frame: [{ tag: value }]. */
export function pbReplies(frame) {
  const out = [];
  let off = 0;
  while (off < frame.length) {
    let len;
    [len, off] = readVarint(frame, off);
    const end = off + len;
    const fields = {};
    while (off < end) {
      let key;
      [key, off] = readVarint(frame, off);
      const tag = key >> 3;
      const wire = key & 7;
      if (wire === 0) { let v; [v, off] = readVarint(frame, off); fields[tag] = v; }
      else if (wire === 2) { let l; [l, off] = readVarint(frame, off); fields[tag] = frame.subarray(off, off + l); off += l; }
      else if (wire === 1) off += 8;
      else if (wire === 5) off += 4;
      else throw new Error(`unexpected wire type ${wire}`);
    }
    out.push(fields);
  }
  return out;
}
