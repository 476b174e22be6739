// Channel options and protocol details SDKs depend on, over the raw client protocol:
// `channel_regex`, `force_recovery_mode: "cache"`, Fossil delta negotiation, recovery from an
// empty epoch, rpc without a handler (108). Namespaces `rx`, `cache` and `delta` in
// tests/config/conformance.json.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { WS_URL, WebSocket, publish, token, uniq, until } from './lib.mjs';
import { openUni, closeAll, connected, pubsOf } from './kit.mjs';

afterEach(closeAll);
const sockets = new Set();
afterEach(() => {
  for (const ws of sockets) ws.terminate();
  sockets.clear();
});

/** A connected bidirectional JSON WebSocket client: `call(cmd)` resolves with the reply. */
async function bidi() {
  const ws = new WebSocket(`${WS_URL}/connection/websocket`);
  sockets.add(ws);
  const c = { ws, messages: [], closed: null, next: 1 };
  ws.on('message', (d) => {
    for (const line of d.toString().split('\n').filter(Boolean)) c.messages.push(JSON.parse(line));
  });
  ws.on('close', (code) => { c.closed = code; });
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  c.call = async (cmd) => {
    const id = c.next++;
    ws.send(JSON.stringify({ id, ...cmd }));
    await until(() => c.messages.some((m) => m.id === id) || c.closed, `reply ${id}`);
    return c.messages.find((m) => m.id === id);
  };
  c.pubs = (channel) => c.messages.filter((m) => m.push?.pub && m.push.channel === channel).map((m) => m.push.pub);
  const r = await c.call({ connect: { token: token(uniq('opt')) } });
  assert.ok(r.connect, JSON.stringify(r));
  return c;
}

describe('channel_regex', () => {
  it('a subscribe to a name the regex does not match gets 107; a match subscribes', async () => {
    const c = await bidi();
    const ok = await c.call({ subscribe: { channel: `rx:${uniq('abc_')}` } });
    assert.ok(ok.subscribe, JSON.stringify(ok));
    const bad = await c.call({ subscribe: { channel: 'rx:Not-Matching' } });
    assert.deepEqual(bad.error, { code: 107, message: 'bad request' });
    assert.equal(c.closed, null);
  });

  it('connect subs that do not match are left out of the connect push', async () => {
    const good = `rx:${uniq('ok')}`;
    const c = openUni('http', { token: token(uniq('u')), subs: { [good]: {}, 'rx:NO!': {} } });
    const push = await connected(c);
    assert.deepEqual(Object.keys(push.subs || {}).filter((k) => k.startsWith('rx:')), [good]);
  });
});

describe('force_recovery_mode: cache', () => {
  it('recovering from an empty position gets the latest publication only', async () => {
    const channel = `cache:${uniq('state')}`;
    for (let n = 1; n <= 3; n++) await publish(channel, { n });
    const c = await bidi();
    const r = await c.call({ subscribe: { channel, recover: true } });
    assert.equal(r.subscribe.recovered, true, JSON.stringify(r));
    assert.deepEqual(r.subscribe.publications, [{ data: { n: 3 }, offset: 3 }]);
  });

  it('a uni client reconnecting from an old position or epoch gets the latest publication', async () => {
    const channel = `cache:${uniq('uni')}`;
    const tok = token(uniq('u'));
    for (let n = 1; n <= 4; n++) await publish(channel, { n });
    for (const position of [{ offset: 1, epoch: 'stale-epoch' }, { offset: 2 }]) {
      const c = openUni('sse', { token: tok, subs: { [channel]: { recover: true, ...position } } });
      const push = await connected(c);
      const sub = push.subs[channel];
      assert.equal(sub.recovered, true, JSON.stringify(sub));
      assert.deepEqual(sub.publications ?? (await pubsOf(c, channel, 1)), [{ data: { n: 4 }, offset: 4 }]);
    }
  });
});

describe('delta: "fossil"', () => {
  it('is granted where allowed: whole first, then deltas, data as JSON strings', async () => {
    const c = await bidi();
    const channel = `delta:${uniq('doc')}`;
    const r = await c.call({ subscribe: { channel, delta: 'fossil' } });
    assert.equal(r.subscribe.delta, true, JSON.stringify(r));
    const doc = (n) => ({ n, text: 'a fairly long text that stays the same between versions '.repeat(8) });
    for (let n = 1; n <= 3; n++) await publish(channel, doc(n));
    await until(() => c.pubs(channel).length === 3, 'three publications');
    const pubs = c.pubs(channel);
    assert.deepEqual(pubs.map((p) => p.delta === true), [false, true, true]);
    assert.ok(pubs.every((p) => typeof p.data === 'string'), JSON.stringify(pubs));
    assert.deepEqual(JSON.parse(pubs[0].data), doc(1));
    assert.ok(pubs[1].data.length < JSON.stringify(doc(2)).length / 4, `a small delta: ${pubs[1].data}`);
  });

  it('is declined where not allowed, and an unknown type closes with 3501', async () => {
    const c = await bidi();
    const channel = `chat:${uniq('nodelta')}`;
    const r = await c.call({ subscribe: { channel, delta: 'fossil' } });
    assert.ok(r.subscribe && r.subscribe.delta === undefined, JSON.stringify(r));
    await publish(channel, { n: 1 });
    await until(() => c.pubs(channel).length === 1, 'a publication');
    assert.deepEqual(c.pubs(channel)[0].data, { n: 1 });
    c.ws.send(JSON.stringify({ id: 99, subscribe: { channel: `delta:${uniq('x')}`, delta: 'xdelta' } }));
    await until(() => c.closed, 'the close');
    assert.equal(c.closed, 3501);
  });

  it('leaves uni transports unaffected', async () => {
    const channel = `delta:${uniq('uni')}`;
    const c = openUni('http', { token: token(uniq('u')), subs: { [channel]: {} } });
    await connected(c);
    await publish(channel, { n: 1 });
    await publish(channel, { n: 2 });
    assert.deepEqual((await pubsOf(c, channel, 2)).map((p) => p.data), [{ n: 1 }, { n: 2 }]);
  });
});

describe('protocol details SDKs depend on', () => {
  it('rpc without an RPC handler answers 108 "not available"', async () => {
    const c = await bidi();
    const r = await c.call({ rpc: { method: 'getUser', data: {} } });
    assert.deepEqual(r.error, { code: 108, message: 'not available' });
  });

  it('recover with an empty epoch means any epoch', async () => {
    const channel = `chat:${uniq('anyepoch')}`;
    for (let n = 1; n <= 3; n++) await publish(channel, { n });
    const c = await bidi();
    // flag 2: reject an unrecoverable position with 112 (what SDKs with getState send).
    const r = await c.call({ subscribe: { channel, recover: true, offset: 1, epoch: '', flag: 2 } });
    assert.equal(r.subscribe?.recovered, true, JSON.stringify(r));
    assert.deepEqual(r.subscribe.publications.map((p) => p.data), [{ n: 2 }, { n: 3 }]);
  });
});
