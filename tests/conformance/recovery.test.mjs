// Stream positions and recovery through the connect request's `subs` (reference §3, §6), on
// every uni transport. Positions are taken from a first connection's connect push, as a uni
// client does (no history API needed).
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { publish, token, uniq } from './lib.mjs';
import { openUni, closeAll, connected, pubsOf, quiet } from './kit.mjs';

afterEach(closeAll);

const TRANSPORTS = ['http', 'sse', 'ws'];

/** Connects, returns the connect push's subs entry for `channel` and closes. */
async function positionOf(kind, tok, channel) {
  const c = openUni(kind, { token: tok, subs: { [channel]: {} } });
  const push = await connected(c);
  const sub = push.subs?.[channel];
  assert.ok(sub, `${channel} in connect subs: ${JSON.stringify(push.subs)}`);
  await c.close();
  return sub;
}

async function recoverWith(kind, tok, channel, position) {
  const c = openUni(kind, { token: tok, subs: { [channel]: { recover: true, ...position } } });
  const push = await connected(c, `${kind} recovering connect`);
  const sub = push.subs?.[channel];
  assert.ok(sub, `${channel} in connect subs: ${JSON.stringify(push.subs)}`);
  return { c, sub };
}

describe('stream position in the connect push', () => {
  for (const kind of TRANSPORTS) {
    it(`${kind}: a channel with history and force_recovery is recoverable and positioned`, async () => {
      const channel = `chat:${uniq('pos')}`;
      const tok = token(uniq('u'));
      const fresh = await positionOf(kind, tok, channel);
      assert.equal(fresh.recoverable, true, JSON.stringify(fresh));
      assert.equal(fresh.positioned, true, JSON.stringify(fresh));
      assert.equal(typeof fresh.epoch, 'string');
      assert.ok(fresh.epoch.length > 0);
      assert.equal(fresh.offset ?? 0, 0, 'an empty stream is at offset 0 (omitted as a zero value)');
      assert.equal(fresh.recovered, undefined, 'not recovering: no recovered flag');
      assert.equal(fresh.was_recovering, undefined);

      const r = await publish(channel, { n: 1 });
      assert.equal(r.epoch, fresh.epoch, 'publish answers the same epoch');
      assert.equal(r.offset, 1, 'the first publication of a stream has offset 1');
      const after = await positionOf(kind, tok, channel);
      assert.equal(after.epoch, fresh.epoch);
      assert.equal(after.offset, 1, 'the connect push carries the stream top');
    });
  }
});

describe('recovery through connect subs, per transport', () => {
  for (const kind of TRANSPORTS) {
    it(`${kind}: missed publications come back in order inside the connect push`, async () => {
      const channel = `chat:${uniq('rec')}`;
      const tok = token(uniq('u'));
      await publish(channel, { n: 0 }); // so the position to recover from is not 0
      const { epoch, offset } = await positionOf(kind, tok, channel);
      assert.equal(offset, 1);
      for (let n = 1; n <= 3; n++) await publish(channel, { n });

      const { c, sub } = await recoverWith(kind, tok, channel, { offset, epoch });
      assert.equal(sub.was_recovering, true, JSON.stringify(sub));
      assert.equal(sub.recovered, true, JSON.stringify(sub));
      assert.equal(sub.epoch, epoch);
      assert.deepEqual(sub.publications.map((p) => p.data.n), [1, 2, 3]);
      assert.deepEqual(sub.publications.map((p) => p.offset), [2, 3, 4]);
      // Centrifugo answers the client's own offset on success, so a client can always advance
      // its position from the publications (centrifuge client.go subscribeCmd).
      assert.equal(sub.offset, offset, 'on success the entry carries the requested offset');

      // Recovered publications are not sent again as separate pushes; live ones follow.
      await quiet(200);
      assert.equal(c.pubs(channel).length, 0, 'recovered publications not repeated');
      await publish(channel, { n: 4 });
      const live = await pubsOf(c, channel, 1);
      assert.deepEqual(live.map((p) => [p.data.n, p.offset]), [[4, 5]]);
    });

    it(`${kind}: recovering from the top: recovered with nothing to replay`, async () => {
      const channel = `chat:${uniq('top')}`;
      const tok = token(uniq('u'));
      await publish(channel, { n: 1 });
      await publish(channel, { n: 2 });
      const { epoch, offset } = await positionOf(kind, tok, channel);
      const { sub } = await recoverWith(kind, tok, channel, { offset, epoch });
      assert.equal(sub.was_recovering, true);
      assert.equal(sub.recovered, true, JSON.stringify(sub));
      assert.equal((sub.publications ?? []).length, 0);
      assert.equal(sub.offset, 2);
    });

    it(`${kind}: a wrong epoch is not recovered and gets the current position`, async () => {
      const channel = `chat:${uniq('epoch')}`;
      const tok = token(uniq('u'));
      const { epoch } = await positionOf(kind, tok, channel);
      for (let n = 1; n <= 3; n++) await publish(channel, { n });
      const { sub } = await recoverWith(kind, tok, channel, { offset: 1, epoch: epoch === 'xxxxxxxx' ? 'yyyyyyyy' : 'xxxxxxxx' });
      assert.equal(sub.was_recovering, true);
      assert.notEqual(sub.recovered, true, JSON.stringify(sub));
      assert.equal(sub.publications, undefined, 'no publications when not recovered');
      assert.equal(sub.epoch, epoch, 'the current epoch, so the client can start over');
      assert.equal(sub.offset, 3, 'the current top');
    });
  }

  it('personal channel (top-level history_size 100): inside the window recovers, outside does not', async () => {
    // The personal channel lives in the top-level namespace; its subscription is server-side,
    // and the connect request's subs entry for it is a recovery hint (reference §3, use 1).
    const user = uniq('win');
    const channel = `#${user}`;
    const tok = token(user);
    const { epoch, offset } = await positionOf('http', tok, channel);
    assert.equal(offset ?? 0, 0);
    for (let n = 1; n <= 150; n++) await publish(channel, { n });

    const inside = await recoverWith('ws', tok, channel, { offset: 60, epoch });
    assert.equal(inside.sub.recovered, true, JSON.stringify({ ...inside.sub, publications: inside.sub.publications?.length }));
    assert.equal(inside.sub.publications.length, 90);
    assert.deepEqual(inside.sub.publications.map((p) => p.offset), Array.from({ length: 90 }, (_, i) => 61 + i));
    await inside.c.close();

    const outside = await recoverWith('sse', tok, channel, { offset: 10, epoch });
    assert.equal(outside.sub.was_recovering, true);
    assert.notEqual(outside.sub.recovered, true, 'offsets 11..50 fell out of the 100-publication window');
    assert.equal(outside.sub.publications, undefined);
    assert.equal(outside.sub.offset, 150);
    assert.equal(outside.sub.epoch, epoch);

    // The connection is still subscribed and receives live publications after a failed recovery.
    await publish(channel, { n: 151 });
    const live = await pubsOf(outside.c, channel, 1);
    assert.equal(live[0].offset, 151);
  });
});
