// One connection's life on each transport, ended cleanly or aborted at a chosen point.
// `connection(kind, k)` runs the k-th connection of a round: even k end cleanly, odd k are
// aborted at one of the kind's abort points (cycling), with RST or FIN (alternating per cycle).
import { API_KEY, Ws, HttpStream, HttpConn, httpRequest, kill, token, uniq, sleep, pbConnect, pbSubscribe, pbReplies } from './clients.mjs';

const user = () => uniq('rel');
const lines = (m) => m.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l));

// ---- WebSocket kinds

const WS = {
  'ws-json': { path: '/connection/websocket', protocol: undefined },
  'ws-protobuf': { path: '/connection/websocket', protocol: 'centrifuge-protobuf' },
  'uni-ws': { path: '/connection/uni_websocket', protocol: undefined },
};

/** Sends the connect request of a WebSocket kind; resolves when the connect reply/push arrived. */
async function wsConnect(c, kind, { subscribe } = {}) {
  if (kind === 'ws-protobuf') {
    await c.sendBinary(pbConnect(token(user())));
    await c.until(() => c.last.some((m) => m.binary && pbReplies(m.data).some((r) => r[1] === 1 && r[5])), 'protobuf connect reply');
    if (subscribe) {
      await c.sendBinary(pbSubscribe(2, subscribe));
      await c.until(() => c.last.some((m) => m.binary && pbReplies(m.data).some((r) => r[1] === 2 && (r[6] || r[2]))), 'protobuf subscribe reply');
      const err = c.last.flatMap((m) => pbReplies(m.data)).find((r) => r[1] === 2 && r[2]);
      if (err) throw new Error('protobuf subscribe answered with an error');
    }
  } else if (kind === 'ws-json') {
    await c.sendText(JSON.stringify({ id: 1, connect: { token: token(user()) } }));
    await c.until(() => c.last.some((m) => lines(m).some((r) => r.id === 1 && r.connect)), 'JSON connect reply');
    if (subscribe) {
      await c.sendText(JSON.stringify({ id: 2, subscribe: { channel: subscribe } }));
      const r = await c.until(() => c.last.flatMap(lines).find((r) => r.id === 2), 'JSON subscribe reply');
      if (!r.subscribe) throw new Error(`subscribe: ${JSON.stringify(r)}`);
    }
  } else {
    const req = { token: token(user()) };
    if (subscribe) req.subs = { [subscribe]: {} };
    await c.sendText(JSON.stringify(req));
    const p = await c.until(() => c.last.flatMap(lines).find((r) => r.connect || r.disconnect), 'uni connect push');
    if (!p.connect) throw new Error(`uni connect: ${JSON.stringify(p)}`);
  }
}

/** A connected (and optionally subscribed) WebSocket client of `kind`. */
export async function openWs(kind, opts) {
  const c = new Ws();
  try {
    await c.open();
    await c.send(Ws.head(WS[kind].path, WS[kind].protocol));
    await c.until(() => c.status !== null, 'upgrade response');
    if (!c.upgraded) throw new Error(`upgrade: HTTP ${c.status}`);
    await wsConnect(c, kind, opts);
    return c;
  } catch (e) {
    c.s.destroy();
    throw e;
  }
}

const WS_ABORTS = ['mid-head', 'mid-upgrade', 'after-upgrade', 'mid-frame', 'mid-stream'];

async function wsConnection(kind, mode, rst, stats, track) {
  const c = new Ws();
  try {
    await c.open();
    track(c);
    const head = Ws.head(WS[kind].path, WS[kind].protocol);
    if (mode === 'mid-head') {
      await c.send(head.subarray(0, head.length >> 1));
      await sleep(5);
      return kill(c, rst);
    }
    await c.send(head);
    if (mode === 'mid-upgrade') return kill(c, rst);
    await c.until(() => c.status !== null, 'upgrade response');
    if (!c.upgraded) throw new Error(`upgrade: HTTP ${c.status}`);
    if (mode === 'after-upgrade') return kill(c, rst);
    await wsConnect(c, kind);
    if (mode === 'mid-frame') {
      // A frame header announcing 1000 bytes, the mask, and 10 of them.
      await c.send(Buffer.concat([Buffer.from([0x81, 0xfe, 0x03, 0xe8]), Buffer.alloc(14, 7)]));
      await sleep(5);
      return kill(c, rst);
    }
    if (mode === 'mid-stream') return kill(c, rst);
    if (await c.closeCleanly()) stats.closeAnswered = (stats.closeAnswered ?? 0) + 1;
  } finally {
    c.s.destroy();
  }
}

// ---- streaming HTTP kinds

const STREAMS = {
  'uni-sse-get': { method: 'GET', path: '/connection/uni_sse', emulation: false },
  'uni-sse-post': { method: 'POST', path: '/connection/uni_sse', emulation: false },
  'uni-http-stream': { method: 'POST', path: '/connection/uni_http_stream', emulation: false },
  'http-stream': { method: 'POST', path: '/connection/http_stream', emulation: true },
  'sse': { method: 'GET', path: '/connection/sse', emulation: true },
};

/** The request opening a stream of `kind`; `subs` for uni kinds (a server-side subscription). */
function streamRequest(kind, subs) {
  const { method, path, emulation } = STREAMS[kind];
  const payload = emulation ? { id: 1, connect: { token: token(user()) } } : { token: token(user()), ...(subs ? { subs: { [subs]: {} } } : {}) };
  const json = JSON.stringify(payload);
  if (method === 'GET') return httpRequest('GET', `${path}?cf_connect=${encodeURIComponent(json)}`, { headers: { Accept: 'text/event-stream' } });
  return httpRequest('POST', path, { headers: { 'Content-Type': 'application/json' }, body: json });
}

/** Subscribes an emulation session through POST /emulation on its own connection. */
async function emulationSubscribe(s, channel, { abortMidBody = false, rst = false } = {}) {
  const m = await s.expect(/"session":"([^"]+)".*?"node":"([^"]+)"|"node":"([^"]+)".*?"session":"([^"]+)"/, 'emulation connect reply');
  const session = m[1] ?? m[4];
  const node = m[2] ?? m[3];
  const body = JSON.stringify({ session, node, data: JSON.stringify({ id: 2, subscribe: { channel } }) });
  const post = new HttpConn();
  try {
    await post.open();
    if (abortMidBody) {
      const req = httpRequest('POST', '/emulation', { headers: { 'Content-Type': 'application/json' }, body });
      await post.send(req.all.subarray(0, req.head.length + (req.body.length >> 1)));
      await sleep(5);
      return kill(post, rst);
    }
    const r = await post.call('POST', '/emulation', { headers: { 'Content-Type': 'application/json' }, body });
    if (r.status !== 204) throw new Error(`/emulation: HTTP ${r.status} ${r.body}`);
    post.s.end();
    await post.gone(500);
  } finally {
    post.s.destroy();
  }
  await s.expect(/"id":2,"(subscribe|error)"/, 'subscribe reply on the stream');
  if (/"id":2,"error"/.test(s.tail)) throw new Error(`emulation subscribe: ${s.tail.slice(-200)}`);
}

/** An open stream of `kind`, connected and subscribed to `channel`. */
export async function openStream(kind, channel) {
  const s = new HttpStream();
  try {
    await s.open();
    await s.send(streamRequest(kind, channel).all);
    await s.expect('"connect"', 'connect');
    if (STREAMS[kind].emulation && channel) await emulationSubscribe(s, channel);
    return s;
  } catch (e) {
    s.s.destroy();
    throw e;
  }
}

const STREAM_ABORTS = {
  GET: ['mid-head', 'before-response', 'mid-stream'],
  POST: ['mid-head', 'mid-body', 'before-response', 'mid-stream'],
};

async function streamConnection(kind, mode, rst, track) {
  const s = new HttpStream();
  try {
    await s.open();
    track(s);
    const req = streamRequest(kind);
    if (mode === 'mid-head') {
      await s.send(req.head.subarray(0, req.head.length >> 1));
      await sleep(5);
      return kill(s, rst);
    }
    if (mode === 'mid-body') {
      await s.send(req.all.subarray(0, req.head.length + (req.body.length >> 1)));
      await sleep(5);
      return kill(s, rst);
    }
    await s.send(req.all);
    if (mode === 'before-response') return kill(s, rst);
    await s.expect('"connect"', 'connect');
    if (STREAMS[kind].emulation) {
      const channel = `chat:${uniq('e')}`;
      if (mode === 'emulation-mid-body') {
        await emulationSubscribe(s, channel, { abortMidBody: true, rst });
        return kill(s, rst);
      }
      await emulationSubscribe(s, channel);
    }
    if (mode === 'mid-stream') return kill(s, rst);
    // Clean: the client read what it wanted and closes its socket (what a browser does when
    // an EventSource is closed or a fetch is aborted after its data was read).
    s.s.destroy();
  } finally {
    s.s.destroy();
  }
}

// ---- API keep-alive connections

const API_ABORTS = ['mid-head', 'mid-body', 'before-response', 'idle-between'];

async function apiConnection(mode, rst, track) {
  const c = new HttpConn();
  try {
    await c.open();
    track(c);
    const req = httpRequest('POST', '/api/info', { headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' }, body: {} });
    if (mode === 'mid-head') {
      await c.send(req.head.subarray(0, req.head.length >> 1));
      await sleep(5);
      return kill(c, rst);
    }
    if (mode === 'mid-body') {
      await c.send(req.all.subarray(0, req.head.length + 1));
      await sleep(5);
      return kill(c, rst);
    }
    if (mode === 'before-response') {
      await c.send(req.all);
      return kill(c, rst);
    }
    for (let i = 0; i < 3; i++) {
      const r = await c.api(i === 1 ? 'publish' : 'info', i === 1 ? { channel: 'chat:api', data: { i } } : {});
      if (r.status !== 200 || !r.body.includes('"result"')) throw new Error(`API: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    }
    if (mode === 'idle-between') {
      await sleep(20);
      return kill(c, rst);
    }
    c.s.end();
    await c.gone(500);
  } finally {
    c.s.destroy();
  }
}

// ---- one connection of a round

export const KINDS = ['ws-json', 'ws-protobuf', 'uni-ws', 'uni-sse-get', 'uni-sse-post', 'uni-http-stream', 'http-stream', 'sse', 'api'];

function abortsOf(kind) {
  if (WS[kind]) return WS_ABORTS;
  if (kind === 'api') return API_ABORTS;
  const list = STREAM_ABORTS[STREAMS[kind].method];
  return STREAMS[kind].emulation ? [...list, 'emulation-mid-body'] : list;
}

/**
 * The k-th connection of a round of `kind`; counts outcomes in `stats`, and lists in
 * `stats.conns` each connection's client port and how it ended ('clean', 'mid-stream/rst', …)
 * so the server's sockets left behind can be told apart by that.
 */
export async function connection(kind, k, stats) {
  const aborts = abortsOf(kind);
  const clean = k % 2 === 0;
  const i = k >> 1;
  const mode = clean ? 'clean' : aborts[i % aborts.length];
  const rst = Math.floor(i / aborts.length) % 2 === 0;
  const label = clean ? 'clean' : `${mode}/${rst ? 'rst' : 'fin'}`;
  const track = (raw) => { (stats.conns ??= []).push({ label, port: raw.localPort }); };
  if (WS[kind]) await wsConnection(kind, mode, rst, stats, track);
  else if (kind === 'api') await apiConnection(mode, rst, track);
  else await streamConnection(kind, mode, rst, track);
  if (clean) stats.clean += 1;
  else stats.aborted += 1;
}
