// Fossil delta compression with the unmodified centrifuge SDK, on every bidirectional transport
// and encoding: the SDK asks for `delta: 'fossil'`, rotor answers `delta: true`, and the SDK
// rebuilds each 2 KB document from the deltas it receives, live and through recovery. Also the
// two protocol details SDKs depend on: recovery from an empty epoch (getState) succeeds.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { variants, client, apiPublish, uniq, nextEvent, collect, until, closeClient } from './lib.mjs';

/** A realistic document (about 2 KB of JSON) whose `version` and one price change. */
export function doc(n) {
  const items = [];
  for (let i = 0; i < 24; i++) {
    items.push({ id: i, name: `product ${i}`, price: i === n % 24 ? 100 + n : 100, tags: ['a', 'b'], stock: i * 3 });
  }
  return { version: n, updated: `2026-11-30T18:00:${String(n % 60).padStart(2, '0')}Z`, items };
}

for (const variant of variants) {
  describe(`delta: ${variant.name}`, () => {
    const open = [];
    const make = (opts) => {
      const made = client(variant, opts);
      open.push(made.c);
      return made;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map(closeClient));
    });

    it('negotiates fossil deltas and rebuilds every document, live and after recovery', async () => {
      const { c, decode } = make();
      const channel = `delta:${uniq('doc')}`;
      const sub = c.newSubscription(channel, { delta: 'fossil' });
      const pubs = collect(sub, 'publication');
      c.connect();
      sub.subscribe();
      await sub.ready(5000);
      for (let n = 1; n <= 5; n++) await apiPublish(channel, doc(n));
      await until(() => pubs.length === 5, 'five publications');
      assert.deepEqual(pubs.map((p) => decode(p.data)), [1, 2, 3, 4, 5].map(doc));
      const stats = sub.deltaStats();
      assert.equal(stats.numFullPayloads, 1, JSON.stringify(stats));
      assert.equal(stats.numDeltaPayloads, 4, JSON.stringify(stats));
      assert.ok(stats.bytesReceived * 3 < stats.bytesDecoded, `deltas save bytes: ${JSON.stringify(stats)}`);

      // Missed while disconnected: recovered with deltas, then live deltas continue the chain.
      await closeClient(c);
      for (let n = 6; n <= 8; n++) await apiPublish(channel, doc(n));
      const resubscribed = nextEvent(sub, 'subscribed');
      c.connect();
      const ctx = await resubscribed;
      assert.equal(ctx.recovered, true);
      await until(() => pubs.length === 8, 'three recovered publications');
      await apiPublish(channel, doc(9));
      await until(() => pubs.length === 9, 'a live publication after recovery');
      assert.deepEqual(pubs.map((p) => decode(p.data)), [1, 2, 3, 4, 5, 6, 7, 8, 9].map(doc));
      assert.ok(sub.deltaStats().numDeltaPayloads >= 6, JSON.stringify(sub.deltaStats()));
    });

    it('decodes a random stream exactly (the SDK applier checks the encoder)', async (t) => {
      if (variant.transport !== 'websocket') return t.skip('one run per encoding is enough');
      const { c, decode } = make();
      const channel = `delta:${uniq('random')}`;
      const sub = c.newSubscription(channel, { delta: 'fossil' });
      const pubs = collect(sub, 'publication');
      c.connect();
      sub.subscribe();
      await sub.ready(5000);
      // A seeded generator: edits of a document with non-ASCII text, so that some deltas cut
      // multi-byte characters (those go whole on JSON).
      let seed = 12345;
      const rnd = (n) => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      const words = ['alpha', 'βeta', 'γάμμα', 'delta', '日本語', 'emoji 🎉', 'x'.repeat(40), 'quote "q"', 'nl\n'];
      let state = Array.from({ length: 30 }, (_, i) => ({ k: i, v: words[i % words.length] }));
      const sent = [];
      for (let n = 0; n < 60; n++) {
        state = state.map((e) => (rnd(5) === 0 ? { k: e.k, v: words[rnd(words.length)] + rnd(1000) } : e));
        if (rnd(4) === 0) state.splice(rnd(state.length), 1);
        if (rnd(3) === 0) state.push({ k: 100 + n, v: words[rnd(words.length)] });
        const doc = { n, state };
        sent.push(doc);
        await apiPublish(channel, doc);
      }
      await until(() => pubs.length === sent.length, 'every publication', 20000);
      assert.deepEqual(pubs.map((p) => decode(p.data)), sent);
      const stats = sub.deltaStats();
      assert.ok(stats.numDeltaPayloads > 30, JSON.stringify(stats));
    });

    it('recovers from a position with an empty epoch (getState)', async () => {
      const { c, decode } = make();
      const channel = `delta:${uniq('state')}`;
      for (let n = 1; n <= 3; n++) await apiPublish(channel, { n });
      let calls = 0;
      const sub = c.newSubscription(channel, {
        getState: async () => {
          calls++;
          return { offset: 1, epoch: '' };
        },
      });
      const pubs = collect(sub, 'publication');
      c.connect();
      sub.subscribe();
      const ctx = await nextEvent(sub, 'subscribed', () => true, 8000);
      assert.equal(ctx.recovered, true);
      await until(() => pubs.length === 2, 'publications after offset 1');
      assert.deepEqual(pubs.map((p) => decode(p.data)), [{ n: 2 }, { n: 3 }]);
      assert.equal(calls, 1, 'no loop asking for state again');
    });
  });
}
