// Fan-out and framing: what subscribers on the three uni transports receive, and which
// `subs` a connect request may add (reference §1.1 JSON rules, §2.2–2.4, §3).
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { API_KEY, ROTOR_URL, WEBSOCKET_PINGS, publish, token, uniq } from './lib.mjs';
import { openUni, closeAll, connected, finished, pubsOf, quiet } from './kit.mjs';

afterEach(closeAll);

const TRANSPORTS = ['http', 'sse', 'ws'];

/** Opens one client per transport for `user`, each asking for `subs`; waits for connect. */
async function onEveryTransport(user, subs) {
  const clients = {};
  for (const kind of TRANSPORTS) {
    clients[kind] = openUni(kind, { token: token(user), subs });
    await connected(clients[kind], `${kind} connect`);
  }
  return clients;
}

describe('fan-out', () => {
  it('one publication reaches a subscriber on every transport, once, with the same offset', async () => {
    const channel = `chat:${uniq('fan')}`;
    const clients = await onEveryTransport(uniq('u'), { [channel]: {} });
    const r = await publish(channel, { text: 'to all' });
    for (const [kind, c] of Object.entries(clients)) {
      const pubs = await pubsOf(c, channel, 1);
      assert.deepEqual(pubs[0].data, { text: 'to all' }, kind);
      assert.equal(pubs[0].offset, r.offset, kind);
    }
    await quiet(200);
    for (const [kind, c] of Object.entries(clients)) assert.equal(c.pubs(channel).length, 1, `${kind}: exactly once`);
  });

  it('a burst arrives in publish order with consecutive offsets on every transport', async () => {
    const channel = `chat:${uniq('burst')}`;
    const clients = await onEveryTransport(uniq('u'), { [channel]: {} });
    const N = 50;
    for (let i = 0; i < N; i++) await publish(channel, { i });
    for (const [kind, c] of Object.entries(clients)) {
      const pubs = await pubsOf(c, channel, N);
      assert.deepEqual(pubs.map((p) => p.data.i), Array.from({ length: N }, (_, i) => i), kind);
      assert.deepEqual(pubs.map((p) => p.offset), Array.from({ length: N }, (_, i) => i + 1), kind);
    }
    // Uni WebSocket: one push per message unless uni_websocket_join_push_messages is on.
    assert.ok(clients.ws.raw.every((m) => !m.isBinary && !m.text.includes('\n')), 'one JSON push per text message');
  });

  it('several connections of one user all get the personal channel', async () => {
    const user = uniq('multi');
    const clients = await onEveryTransport(user, undefined);
    await publish(`#${user}`, { hello: user });
    for (const [kind, c] of Object.entries(clients)) assert.deepEqual((await pubsOf(c, `#${user}`, 1))[0].data, { hello: user }, kind);
  });

  it('each connection gets its own client id and session', async () => {
    const clients = await onEveryTransport(uniq('ids'), undefined);
    const pushes = Object.values(clients).map((c) => c.connect());
    assert.equal(new Set(pushes.map((p) => p.client)).size, pushes.length);
    assert.equal(new Set(pushes.map((p) => p.session)).size, pushes.length);
    for (const [kind, p] of Object.keys(clients).map((kind, i) => [kind, pushes[i]])) {
      assert.match(p.client, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'client is a UUID v4');
      const pinged = kind !== 'ws' || WEBSOCKET_PINGS;
      assert.equal(p.ping, pinged ? 2 : undefined, `${kind}: ping interval in seconds (config "2s"), none on unpinged WebSockets`);
      assert.notEqual(p.pong, true, 'uni transports do not ask for pongs');
      assert.equal(typeof p.version, 'string');
    }
  });
});

describe('payloads and framing', () => {
  it('data published with raw newlines arrives whole, one push per line / event / message', async () => {
    const channel = `chat:${uniq('nl')}`;
    const clients = await onEveryTransport(uniq('u'), { [channel]: {} });
    // A pretty-printed API body: the raw newlines inside `data` must not split NDJSON lines or
    // SSE events (Centrifugo strips raw \n from embedded JSON, §1.1).
    const body = `{\n  "channel": "${channel}",\n  "data": {\n    "a": "b",\n    "list": [\n      1,\n      2\n    ]\n  }\n}`;
    const res = await fetch(`${ROTOR_URL}/api/publish`, { method: 'POST', headers: { 'X-API-Key': API_KEY }, body });
    assert.equal(res.status, 200);
    assert.ok(JSON.parse(await res.text()).result);
    for (const [kind, c] of Object.entries(clients)) {
      const pubs = await pubsOf(c, channel, 1);
      assert.deepEqual(pubs[0].data, { a: 'b', list: [1, 2] }, kind);
    }
    const lines = clients.http.raw.split('\n').filter((l) => l.trim());
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `NDJSON line parses: ${line}`);
  });

  it('strings with escapes and non-ASCII text, and non-object data, arrive unchanged', async () => {
    const channel = `chat:${uniq('utf')}`;
    const clients = await onEveryTransport(uniq('u'), { [channel]: {} });
    const values = [
      { s: 'line1\nline2\t"quoted" \\ back ☃ 日本語 😀 \u2028' },
      'just a string',
      42,
      [1, { nested: true }],
    ];
    for (const v of values) await publish(channel, v);
    for (const [kind, c] of Object.entries(clients)) {
      const pubs = await pubsOf(c, channel, values.length);
      assert.deepEqual(pubs.map((p) => p.data), values, kind);
    }
  });

  it('publication tags reach subscribers', async () => {
    const channel = `chat:${uniq('tags')}`;
    const c = openUni('http', { token: token(uniq('u')), subs: { [channel]: {} } });
    await connected(c);
    const res = await fetch(`${ROTOR_URL}/api/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': API_KEY },
      body: JSON.stringify({ channel, data: { t: 1 }, tags: { kind: 'note' } }),
    });
    assert.equal(res.status, 200);
    const [pub] = await pubsOf(c, channel, 1);
    assert.deepEqual(pub.tags, { kind: 'note' });
  });
});

describe('which connect subs are subscribed', () => {
  for (const kind of TRANSPORTS) {
    it(`${kind}: another user's personal channel is ignored and its publications not delivered`, async () => {
      const me = uniq('me');
      const other = uniq('other');
      const c = openUni(kind, { token: token(me), subs: { [`#${other}`]: {} } });
      const push = await connected(c);
      assert.deepEqual(Object.keys(push.subs), [`#${me}`]);
      await publish(`#${other}`, { secret: 1 });
      await publish(`#${me}`, { mine: 1 });
      await pubsOf(c, `#${me}`, 1);
      await quiet(150);
      assert.deepEqual(c.pubs().map((p) => p.data), [{ mine: 1 }]);
    });
  }

  it('a private ($) channel without a subscription token is ignored', async () => {
    const me = uniq('me');
    const priv = `$chat:${uniq('priv')}`;
    const c = openUni('http', { token: token(me), subs: { [priv]: {} } });
    const push = await connected(c);
    assert.deepEqual(Object.keys(push.subs), [`#${me}`]);
    await publish(priv, { secret: 1 });
    await quiet(150);
    assert.equal(c.pubs(priv).length, 0);
  });

  it('a top-level channel without allow_subscribe_for_client is ignored', async () => {
    const me = uniq('me');
    const plain = uniq('news');
    const c = openUni('sse', { token: token(me), subs: { [plain]: {} } });
    const push = await connected(c);
    assert.deepEqual(Object.keys(push.subs), [`#${me}`]);
    await publish(plain, { x: 1 });
    await quiet(150);
    assert.equal(c.pubs(plain).length, 0);
  });

  it('user-limited channels: subscribed when the user is listed after #, ignored otherwise', async () => {
    const me = uniq('me');
    const mine = `${uniq('dm')}#${me},someone`;
    const theirs = `${uniq('dm')}#someone,else`;
    const c = openUni('ws', { token: token(me), subs: { [mine]: {}, [theirs]: {} } });
    const push = await connected(c);
    assert.deepEqual(Object.keys(push.subs).sort(), [`#${me}`, mine].sort());
    await publish(theirs, { no: 1 });
    await publish(mine, { yes: 1 });
    assert.deepEqual((await pubsOf(c, mine, 1))[0].data, { yes: 1 });
    await quiet(150);
    assert.equal(c.pubs(theirs).length, 0);
  });
  // An unknown namespace in subs is left out: see untrusted.test.mjs.
});
