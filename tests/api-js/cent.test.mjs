// The server HTTP API through the npm `cent.js` client (6.1.0): every method it has, its
// `pipeline()` (the legacy `POST /api` form), and the pushes connections get.
//
// Needs tests/config/api.json's shape: top-level channels with presence and history, a
// `plain` namespace with neither, uni_http_stream on.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { api, CentException, client, UniStream, unique } from './lib.mjs';

const opened = [];
async function stream(user, ttl) {
  const s = await UniStream.open(user, ttl);
  opened.push(s);
  return s;
}
after(() => opened.forEach((s) => s.close()));

describe('publish and history', () => {
  test('publish returns offset and epoch; history reads them back', async () => {
    const ch = unique();
    const first = await client.publish({ channel: ch, data: { n: 1 } });
    const second = await client.publish({ channel: ch, data: { n: 2 }, tags: { k: 'v' } });
    assert.equal(first.offset, 1);
    assert.ok(first.epoch);
    assert.equal(second.offset, 2);
    const history = await client.getHistory({ channel: ch, limit: -1 });
    assert.deepEqual(
      history.publications.map((p) => p.data),
      [{ n: 1 }, { n: 2 }],
    );
    assert.deepEqual(history.publications[1].tags, { k: 'v' });
    assert.equal(history.offset, 2);
    assert.equal(history.epoch, first.epoch);
  });

  test('an idempotency key returns the original result', async () => {
    const ch = unique();
    const a = await client.publish({ channel: ch, data: { once: 1 }, idempotency_key: 'k' });
    const b = await client.publish({ channel: ch, data: { once: 1 }, idempotency_key: 'k' });
    assert.deepEqual(b, a);
    const history = await client.getHistory({ channel: ch, limit: -1 });
    assert.equal(history.publications.length, 1);
  });

  test('history limit 0 gives the position only; since and reverse', async () => {
    const ch = unique();
    for (let n = 1; n <= 4; n++) await client.publish({ channel: ch, data: { n } });
    const top = await client.getHistory({ channel: ch, limit: 0 });
    assert.deepEqual(top.publications, []);
    assert.equal(top.offset, 4);
    const since = await client.getHistory({ channel: ch, limit: -1, since: { offset: 2, epoch: top.epoch } });
    assert.deepEqual(
      since.publications.map((p) => p.offset),
      [3, 4],
    );
    const reverse = await client.getHistory({ channel: ch, limit: 3, reverse: true });
    assert.deepEqual(
      reverse.publications.map((p) => p.offset),
      [4, 3, 2],
    );
  });

  test('removeHistory keeps the stream position', async () => {
    const ch = unique();
    await client.publish({ channel: ch, data: { x: 1 } });
    assert.deepEqual(await client.removeHistory({ channel: ch }), {});
    const history = await client.getHistory({ channel: ch, limit: -1 });
    assert.deepEqual(history.publications, []);
    assert.equal(history.offset, 1);
  });

  test('broadcast answers per channel', async () => {
    const a = unique();
    const b = unique();
    const result = await client.broadcast({ channels: [a, b, 'nosuchnamespace:x'], data: { all: true } });
    assert.equal(result.responses.length, 3);
    assert.equal(result.responses[0].result.offset, 1);
    assert.equal(result.responses[1].result.offset, 1);
    assert.deepEqual(result.responses[2].error, { code: 102, message: 'unknown channel' });
  });

  test('errors reject with CentException; the codes are the documented ones', async () => {
    await assert.rejects(client.publish({ channel: 'nosuchnamespace:x', data: {} }), CentException);
    await assert.rejects(client.getHistory({ channel: 'plain:x' }), CentException);
    await assert.rejects(client.getPresence({ channel: 'plain:x' }), CentException);
    assert.equal((await api('publish', { channel: 'nosuchnamespace:x', data: {} })).body.error.code, 102);
    assert.equal((await api('publish', { channel: '', data: {} })).body.error.code, 107);
    assert.equal((await api('publish', { channel: unique() })).body.error.code, 107);
    assert.equal((await api('history', { channel: 'plain:x' })).body.error.code, 108);
    assert.equal((await api('presence_stats', { channel: 'plain:x' })).body.error.code, 108);
  });
});

describe('connections', () => {
  test('subscribe pushes, delivers, shows in presence and channels; unsubscribe stops it', async () => {
    const ch = unique();
    const user = unique('user');
    const s = await stream(user);
    assert.deepEqual(await client.subscribe({ user, channel: ch }), {});
    const sub = await s.next((m) => m.subscribe);
    assert.equal(sub.channel, ch);

    await client.publish({ channel: ch, data: { hello: 1 } });
    const pub = await s.next((m) => m.pub);
    assert.deepEqual(pub.pub.data, { hello: 1 });

    const presence = await client.getPresence({ channel: ch });
    assert.deepEqual(Object.keys(presence.presence), [s.client]);
    assert.equal(presence.presence[s.client].user, user);
    assert.deepEqual(await client.getPresenceStats({ channel: ch }), { num_clients: 1, num_users: 1 });

    const channels = await client.getChannels({ pattern: ch });
    assert.deepEqual(channels.channels, { [ch]: { num_clients: 1 } });

    // Summed over nodes: at the edge the client is on one of several node objects.
    const { nodes } = await client.getInfo();
    assert.ok(nodes.reduce((n, node) => n + node.num_clients, 0) >= 1);
    assert.ok(nodes.reduce((n, node) => n + node.num_subs, 0) >= 1);

    assert.deepEqual(await client.unsubscribe({ user, channel: ch }), {});
    const unsub = await s.next((m) => m.unsubscribe);
    assert.deepEqual(unsub, { channel: ch, unsubscribe: { code: 2000, reason: 'server unsubscribe' } });
    await client.publish({ channel: ch, data: { hello: 2 } });
    await s.quiet((m) => m.pub);
  });

  test('disconnect: default 3503, custom code, whitelist', async () => {
    const user = unique('user');
    const a = await stream(user);
    const b = await stream(user);
    await client.disconnect({ user, whitelist: [a.client], disconnect: { code: 4002, reason: 'custom' } });
    assert.deepEqual((await b.next((m) => m.disconnect)).disconnect, { code: 4002, reason: 'custom' });
    await b.waitClosed();
    await a.quiet((m) => m.disconnect);
    await client.disconnect({ user });
    assert.deepEqual((await a.next((m) => m.disconnect)).disconnect, { code: 3503, reason: 'force disconnect' });
    await a.waitClosed();
  });

  test('refresh pushes the new expiry; expired closes with 3005', async () => {
    const user = unique('user');
    const s = await stream(user, 60);
    await client.refresh({ user, expire_at: Math.floor(Date.now() / 1000) + 300 });
    const { refresh } = await s.next((m) => m.refresh);
    assert.equal(refresh.expires, true);
    assert.ok(refresh.ttl > 290 && refresh.ttl <= 300, `ttl ${refresh.ttl}`);
    await client.refresh({ user, expired: true });
    assert.equal((await s.next((m) => m.disconnect)).disconnect.code, 3005);
    await s.waitClosed();
  });
});

describe('info and pipeline', () => {
  test('getInfo describes every node', async () => {
    const { nodes } = await client.getInfo();
    // One node natively; at the edge, one per node object (edge_node_count).
    assert.equal(nodes.length, Number(process.env.TEST_NODE_COUNT ?? 1));
    for (const node of nodes) {
      for (const field of ['uid', 'name', 'version']) assert.ok(node[field], field);
      for (const field of ['num_clients', 'num_users', 'num_channels', 'num_subs', 'uptime']) {
        assert.equal(typeof node[field], 'number', field);
      }
    }
  });

  test('pipeline() runs commands through the legacy form, in order', async () => {
    const ch = unique();
    const results = await client.pipeline([
      { method: 'publish', params: { channel: ch, data: { n: 1 } } },
      { method: 'publish', params: { channel: ch, data: { n: 2 } } },
      { method: 'history', params: { channel: ch, limit: -1 } },
      { method: 'presence_stats', params: { channel: ch } },
      { method: 'broadcast', params: { channels: [ch], data: { n: 3 } } },
      { method: 'info', params: {} },
      { method: 'publish', params: { channel: 'nosuchnamespace:x', data: {} } },
    ]);
    assert.equal(results.length, 7);
    assert.equal(results[0].offset, 1);
    assert.equal(results[1].offset, 2);
    assert.deepEqual(
      results[2].publications.map((p) => p.data),
      [{ n: 1 }, { n: 2 }],
    );
    assert.deepEqual(results[3], { num_clients: 0, num_users: 0 });
    assert.equal(results[4].responses[0].result.offset, 3);
    assert.ok(results[5].nodes[0].uid);
    assert.equal(results[6], undefined, 'an error line has no result');
  });
});
