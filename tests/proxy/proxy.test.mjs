// Proxies to the application backend, black-box: rotor (native or `wrangler dev`, ROTOR_URL)
// with every proxy pointed at tests/proxy/backend.mjs (ROTOR_PROXY_BACKEND: its ports). Each
// proxy kind: success, error, disconnect, timeout, backend down, malformed answer; the header
// allow-list; the centrifuge SDK with no token; and a cookie-authenticated plain EventSource
// in headless Chromium. Every failure case also checks that another client was unaffected.
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROTOR_URL, WS_URL, WebSocket, uniq, sleep, until } from '../conformance/lib.mjs';
import { openStream, openWs, connected, finished, closeAll } from '../conformance/kit.mjs';
import { launchChromium } from '../browser/chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '..', 'sdk', 'package.json'));
const EventSource = require('eventsource');
const { Centrifuge } = require('centrifuge');

const ports = JSON.parse(process.env.ROTOR_PROXY_BACKEND ?? '{}');
const CONTROL = `http://127.0.0.1:${ports.control}`;
const BACKEND = `http://127.0.0.1:${ports.proxy}`;

async function calls(pred = () => true) {
  const all = await (await fetch(`${CONTROL}/calls`)).json();
  return all.filter(pred);
}

/** A bidirectional JSON WebSocket client: `send(cmd)` resolves with the reply to its id. */
function bidi(headers = {}) {
  const ws = new WebSocket(`${WS_URL}/connection/websocket`, { headers });
  const c = { ws, replies: new Map(), pushes: [], closed: null, nextId: 1 };
  c.opened = new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  });
  ws.on('message', (d) => {
    for (const line of d.toString().split('\n').filter(Boolean)) {
      const m = JSON.parse(line);
      if (m.id) c.replies.set(m.id, m);
      else c.pushes.push(m);
    }
  });
  ws.on('close', (code, reason) => { c.closed = { code, reason: reason.toString() }; });
  c.send = async (cmd, ms = 8000) => {
    await c.opened;
    const id = c.nextId++;
    ws.send(JSON.stringify({ id, ...cmd }));
    await until(() => c.replies.has(id) || c.closed, `reply to ${JSON.stringify(cmd)}`, ms);
    return c.replies.get(id) ?? { closed: c.closed };
  };
  c.close = () => { try { ws.terminate(); } catch {} };
  return c;
}

const clients = [];
function track(c) {
  clients.push(c);
  return c;
}
after(async () => {
  for (const c of clients) c.close();
  await closeAll();
});

/** A connected client through the connect proxy, to show that others are not affected. */
async function bystander() {
  const c = track(bidi());
  const r = await c.send({ connect: { data: { user: uniq('by') } } });
  assert.ok(r.connect, JSON.stringify(r));
  return {
    async stillWorks() {
      const t0 = Date.now();
      const r = await c.send({ rpc: { method: 'echo', data: { ping: 1 } } });
      assert.deepEqual(r.rpc?.data?.echo, { ping: 1 }, JSON.stringify(r));
      assert.ok(Date.now() - t0 < 1000, 'the bystander answered without waiting for others');
    },
  };
}

describe('connect proxy', () => {
  it('authenticates a token-less WebSocket and forwards only the allow-listed headers', async () => {
    const user = uniq('u');
    const c = track(bidi({ Cookie: `session=${user}`, 'X-Real-Ip': '10.1.2.3', 'X-Not-Listed': 'secret' }));
    const r = await c.send({ connect: { data: { hello: 1 }, name: 'proxy-test' } });
    assert.deepEqual(r.connect.data, { welcome: user }, JSON.stringify(r));
    const [call] = await calls((x) => x.kind === 'connect' && x.headers.cookie === `session=${user}`);
    assert.ok(call, 'the backend got the connect call');
    assert.equal(call.headers['x-real-ip'], '10.1.2.3');
    assert.equal(call.headers['x-rotor-static'], 'yes', 'static headers are added');
    assert.equal(call.headers['x-not-listed'], undefined, 'a header not listed is not forwarded');
    assert.equal(call.headers['content-type'], 'application/json');
    assert.equal(call.body.transport, 'websocket');
    assert.equal(call.body.protocol, 'json');
    assert.equal(call.body.name, 'proxy-test');
    assert.deepEqual(call.body.data, { hello: 1 });
    assert.match(call.body.client, /^[0-9a-f-]{36}$/);
    // Later calls carry the user, the forwarded headers and the connection meta.
    const rpc = await c.send({ rpc: { method: 'echo', data: { a: 1 } } });
    assert.deepEqual(rpc.rpc.data, { echo: { a: 1 }, user, meta: { backend: 'meta' } });
    const [rpcCall] = await calls((x) => x.kind === 'rpc' && x.body.user === user);
    assert.equal(rpcCall.headers.cookie, `session=${user}`);
  });

  it("subscribes the connection to the answer's channels (an unknown namespace is error 102)", async () => {
    const channel = uniq('news');
    const c = track(bidi());
    const r = await c.send({ connect: { data: { user: uniq('ch'), channels: [channel] } } });
    assert.deepEqual(r.connect?.subs, { [channel]: {} }, JSON.stringify(r));
    const bad = track(bidi());
    assert.equal((await bad.send({ connect: { data: { channels: ['nope:x'] } } })).error?.code, 102);
  });

  it('an anonymous answer (empty user) connects anonymously', async () => {
    const c = track(bidi());
    const r = await c.send({ connect: { data: { user: '' } } });
    assert.ok(r.connect, JSON.stringify(r));
    assert.deepEqual(r.connect.data, { welcome: '' });
  });

  it("answers the backend's error and disconnect as they are", async () => {
    const by = await bystander();
    const e = track(bidi());
    assert.deepEqual((await e.send({ connect: { data: { mode: 'error' } } })).error, { code: 1000, message: 'custom error' });
    const d = track(bidi());
    const r = await d.send({ connect: { data: { mode: 'disconnect' } } });
    assert.deepEqual(r.closed, { code: 4501, reason: 'go away' });
    await by.stillWorks();
  });

  for (const mode of ['slow', 'malformed', 'status500', 'badcode', 'huge', 'drop']) {
    it(`a ${mode} backend answer is a temporary internal error (100), and others go on`, async () => {
      const by = await bystander();
      const c = track(bidi());
      const t0 = Date.now();
      const pending = c.send({ connect: { data: { mode } } });
      if (mode === 'slow') await by.stillWorks(); // while this connect waits
      const r = await pending;
      assert.deepEqual(r.error, { code: 100, message: 'internal server error', temporary: true }, JSON.stringify(r));
      if (mode === 'slow') assert.ok(Date.now() - t0 >= 900 && Date.now() - t0 < 2400, 'the 1 s timeout');
      await by.stillWorks();
    });
  }

  it('a failed call is logged with its endpoint and cause (native: the server log)', async (t) => {
    if (!process.env.ROTOR_LOG) return t.skip('needs the server log (ROTOR_LOG)');
    const { readFileSync } = await import('node:fs');
    const c = track(bidi());
    assert.equal((await c.send({ connect: { data: { mode: 'status500' } } })).error?.code, 100);
    const line = `connect proxy call to ${BACKEND}/connect failed: HTTP status 500`;
    await until(() => readFileSync(process.env.ROTOR_LOG, 'utf8').includes(line), `log line: ${line}`);
  });

  it('a backend that is down is a temporary internal error, and the connection after it works', async () => {
    const by = await bystander();
    await fetch(`${CONTROL}/down`, { method: 'POST' });
    try {
      const c = track(bidi());
      assert.deepEqual((await c.send({ connect: {} })).error?.code, 100);
      const rpc = await (async () => { const b = track(bidi()); return b; })();
      assert.equal((await rpc.send({ connect: {} })).error?.code, 100);
    } finally {
      await fetch(`${CONTROL}/up`, { method: 'POST' });
    }
    await by.stillWorks();
    const c = track(bidi());
    assert.ok((await c.send({ connect: {} })).connect);
  });

  it('uni HTTP stream, uni SSE and uni WebSocket connect through it with the forwarded Cookie', async () => {
    const user = uniq('uni');
    const headers = { Cookie: `session=${user}` };
    for (const c of [
      openStream('http', { body: {}, headers }),
      openStream('sse', { method: 'GET', headers }),
      openWs({}, { headers }),
    ]) {
      const connect = await connected(c);
      assert.deepEqual(connect.data, { welcome: user });
    }
  });

  it('uni clients get 3004 for a failed call and the disconnect the backend chose', async () => {
    const failed = openStream('http', { body: { data: { mode: 'malformed' } } });
    await finished(failed);
    assert.equal(failed.disconnect()?.code, 3004);
    const refused = openStream('http', { body: { data: { need_cookie: true } } });
    await finished(refused);
    assert.deepEqual(refused.disconnect(), { code: 4403, reason: 'login first' });
  });
});

describe('resources come back', () => {
  it('clients that leave while their connect waits for a slow backend leave nothing behind (native: fds)', async (t) => {
    const pid = process.env.ROTOR_PID;
    if (!pid) return t.skip('needs the server on this machine (ROTOR_PID)');
    const { readdirSync } = await import('node:fs');
    const fds = () => readdirSync(`/proc/${pid}/fd`).length;
    const before = fds();
    const leaving = [];
    for (let i = 0; i < 40; i++) {
      const c = bidi();
      leaving.push(c);
      c.opened.then(() => c.ws.send(JSON.stringify({ id: 1, connect: { data: { mode: 'slow' } } }))).catch(() => {});
    }
    await until(() => leaving.every((c) => c.ws.readyState === 1), 'the sockets open');
    await sleep(200);
    for (const c of leaving) c.close();
    // Their calls run out (1 s timeout; the backend answers after 2.5 s): connections to the
    // backend that did not finish are dropped, not pooled.
    await sleep(3000);
    await until(() => fds() <= before + 2, `fds back near ${before} (now ${fds()})`, 8000);
    const by = await bystander();
    await by.stillWorks();
  });
});

describe('rpc proxy', () => {
  it('answers, errors, disconnects and times out per call', async () => {
    const by = await bystander();
    const c = track(bidi());
    assert.ok((await c.send({ connect: { data: { user: uniq('rpc') } } })).connect);
    assert.deepEqual((await c.send({ rpc: { method: 'error' } })).error, { code: 1000, message: 'custom error' });
    for (const method of ['malformed', 'status500', 'badcode', 'slow']) {
      const r = await c.send({ rpc: { method } });
      assert.equal(r.error?.code, 100, `${method}: ${JSON.stringify(r)}`);
    }
    assert.ok((await c.send({ rpc: { method: 'echo' } })).rpc, 'the connection goes on after failed calls');
    const r = await c.send({ rpc: { method: 'disconnect' } });
    assert.deepEqual(r.closed, { code: 4501, reason: 'go away' });
    await by.stillWorks();
  });

  it('a hostile backend (a byte at a time, an endless body, a gzip bomb, a redirect) is error 100 within the timeout', async () => {
    const by = await bystander();
    const c = track(bidi());
    assert.ok((await c.send({ connect: { data: { user: uniq('rpc') } } })).connect);
    for (const method of ['drip', 'endless', 'gzipbomb', 'redirect']) {
      const t0 = Date.now();
      const r = await c.send({ rpc: { method } });
      assert.equal(r.error?.code, 100, `${method}: ${JSON.stringify(r)}`);
      assert.ok(Date.now() - t0 < 2500, `${method}: answered in ${Date.now() - t0} ms (timeout 1 s)`);
    }
    assert.equal((await calls((c) => c.kind === 'followed')).length, 0, 'redirects are not followed');
    assert.ok((await c.send({ rpc: { method: 'echo' } })).rpc, 'the connection goes on');
    await by.stillWorks();
  });
});

describe('subscribe and publish proxies', () => {
  it('the backend grants, refuses or fails a subscription', async () => {
    const by = await bystander();
    const c = track(bidi());
    assert.ok((await c.send({ connect: { data: { user: uniq('sub') } } })).connect);
    const ok = await c.send({ subscribe: { channel: `px:ok-${uniq('')}` } });
    assert.deepEqual(ok.subscribe?.data, { granted: true }, JSON.stringify(ok));
    const err = await c.send({ subscribe: { channel: `px:error-${uniq('')}` } });
    assert.deepEqual(err.error, { code: 1000, message: 'custom error' });
    for (const mode of ['malformed', 'slow']) {
      const r = await c.send({ subscribe: { channel: `px:${mode}-${uniq('')}` } });
      assert.equal(r.error?.code, 100, `${mode}: ${JSON.stringify(r)}`);
    }
    // Channels outside the namespace do not ask the backend.
    const plain = `plain-${uniq('')}`;
    assert.ok((await c.send({ subscribe: { channel: plain } })).subscribe);
    assert.equal((await calls((x) => x.body.channel === plain)).length, 0);
    const d = await c.send({ subscribe: { channel: `px:disconnect-${uniq('')}` } });
    assert.deepEqual(d.closed, { code: 4501, reason: 'go away' });
    await by.stillWorks();
  });

  it('the backend may rewrite a publication, refuse it or fail', async () => {
    const user = uniq('pub');
    const c = track(bidi());
    assert.ok((await c.send({ connect: { data: { user } } })).connect);
    const channel = `px:ok-${uniq('')}`;
    assert.ok((await c.send({ subscribe: { channel } })).subscribe);
    const r = await c.send({ publish: { channel, data: { rewrite: true } } });
    assert.ok(r.publish, JSON.stringify(r));
    await until(() => c.pushes.some((p) => p.push?.channel === channel), 'the publication');
    assert.deepEqual(c.pushes.find((p) => p.push?.channel === channel).push.pub.data, { rewritten: true });
    const [call] = await calls((x) => x.kind === 'publish' && x.body.channel === channel);
    assert.equal(call.body.user, user);
    assert.deepEqual(call.body.data, { rewrite: true });
    assert.deepEqual((await c.send({ publish: { channel: `px:error-${uniq('')}`, data: {} } })).error, {
      code: 1000,
      message: 'custom error',
    });
    assert.equal((await c.send({ publish: { channel: `px:slow-${uniq('')}`, data: {} } })).error?.code, 100);
  });
});

describe('refresh and sub_refresh proxies', () => {
  it('the server asks the backend when a connection and a subscription expire, and keeps them', async () => {
    const user = uniq('exp');
    const c = track(bidi());
    const r = await c.send({ connect: { data: { user, expire_in: 1 } } });
    assert.ok(r.connect, JSON.stringify(r));
    assert.equal(r.connect.expires, undefined, 'the server refreshes: the client is not told');
    const channel = `px:expiring-${uniq('')}`;
    const s = await c.send({ subscribe: { channel } });
    assert.ok(s.subscribe, JSON.stringify(s));
    let refresh;
    let subRefresh;
    const deadline = Date.now() + 8000;
    while ((!refresh || !subRefresh) && Date.now() < deadline) {
      await sleep(200);
      [refresh] = await calls((x) => x.kind === 'refresh' && x.body.user === user);
      [subRefresh] = await calls((x) => x.kind === 'sub_refresh' && x.body.channel === channel);
    }
    assert.ok(refresh, 'the refresh proxy was called');
    assert.ok(subRefresh, 'the sub_refresh proxy was called');
    assert.deepEqual(refresh.body.meta, { backend: 'meta' });
    assert.equal(c.closed, null, 'still connected');
    assert.ok((await c.send({ rpc: { method: 'echo' } })).rpc);
  });
});

describe('the centrifuge SDK with no token', () => {
  for (const transport of ['websocket', 'http_stream', 'sse']) {
    it(`connects through the connect proxy over ${transport} and calls rpc`, async () => {
      const user = uniq('sdk');
      const endpoint = transport === 'websocket'
        ? `${WS_URL}/connection/websocket`
        : `${ROTOR_URL}/connection/${transport}`;
      const c = new Centrifuge([{ transport, endpoint }], {
        websocket: WebSocket,
        eventsource: EventSource,
        emulationEndpoint: `${ROTOR_URL}/emulation`,
        data: { user },
        timeout: 5000,
      });
      track({ close: () => c.disconnect() });
      const ctx = new Promise((resolve) => c.once('connected', resolve));
      c.connect();
      const connectedCtx = await ctx;
      assert.deepEqual(connectedCtx.data, { welcome: user });
      const rpc = await c.rpc('echo', { n: 7 });
      assert.deepEqual(rpc.data, { echo: { n: 7 }, user, meta: { backend: 'meta' } });
      c.disconnect();
    });
  }
});

describe('cookie authentication in headless Chromium', () => {
  let browser;
  before(async () => { browser = await launchChromium('rotor-proxy-cookie'); });
  after(async () => { await browser?.close(); });

  it('a plain EventSource (withCredentials) and fetch (credentials: include) are authenticated by the session cookie', async () => {
    const user = uniq('alice').replace(/[^A-Za-z0-9_-]/g, '');
    const page = await browser.context.newPage();
    await page.goto(`${BACKEND}/page?user=${user}&rotor=${encodeURIComponent(ROTOR_URL)}`);
    await page.waitForFunction(() => window.events.some((e) => e.connect || e.error) && window.streamed, null, {
      timeout: 15000,
    });
    const events = await page.evaluate(() => window.events);
    const connect = events.find((e) => e.connect)?.connect;
    assert.ok(connect, JSON.stringify(events));
    assert.deepEqual(connect.data, { welcome: user });
    const streamed = await page.evaluate(() => window.streamed);
    assert.deepEqual(streamed.connect?.data, { welcome: user }, JSON.stringify(streamed));
    // A publication reaches the cookie-authenticated stream (personal channel via the API).
    const calls_ = await calls((x) => x.kind === 'connect' && x.headers.cookie === `session=${user}`);
    assert.ok(calls_.length >= 2, 'both requests carried the cookie to the backend');
    assert.ok(calls_.every((x) => x.headers.origin === undefined), 'only listed headers are forwarded');
    await page.close();
  });

  it('CORS answers carry Access-Control-Allow-Credentials for allowed origins only', async () => {
    const allowed = await fetch(`${ROTOR_URL}/connection/uni_http_stream`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://127.0.0.1:1234', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(allowed.headers.get('access-control-allow-credentials'), 'true');
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://127.0.0.1:1234');
    const refused = await fetch(`${ROTOR_URL}/connection/uni_http_stream`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(refused.status, 403);
    assert.equal(refused.headers.get('access-control-allow-credentials'), null);
  });
});



