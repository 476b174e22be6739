// Fan-out under a burst: many subscribers on all three transports, concurrent publishers.
// Bounded (90 clients, 1000 publications, well under a minute) and loopback only.
//
// Off by default (set ROTOR_CONFORMANCE_LOAD=1): on the debug build it currently trips a
// panic in native/src/outbox.rs (`fetch_add(len) + len` overflows when the writer's
// `written()` runs between the enqueue and the count), which kills the engine task and with it
// every later test against the same server. Turn it on by default once that is fixed.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { publish, token, uniq } from './lib.mjs';
import { openUni, closeAll, connected, pubsOf } from './kit.mjs';

afterEach(closeAll);

const enabled = process.env.ROTOR_CONFORMANCE_LOAD === '1';

describe('fan-out under load', { skip: enabled ? false : 'set ROTOR_CONFORMANCE_LOAD=1 to run' }, () => {
  it('90 subscribers × 1000 publications from 10 concurrent publishers: all delivered, in offset order', async () => {
    const channel = `chat:${uniq('load')}`;
    const kinds = ['http', 'sse', 'ws'];
    const clients = Array.from({ length: 90 }, (_, i) => openUni(kinds[i % 3], { token: token(uniq('u')), subs: { [channel]: {} } }));
    for (const c of clients) await connected(c, 'connect', 15000);
    const N = 1000;
    const W = 10;
    await Promise.all(Array.from({ length: W }, async (_, w) => {
      for (let i = 0; i < N / W; i++) await publish(channel, { w, i });
    }));
    for (const [n, c] of clients.entries()) {
      const pubs = await pubsOf(c, channel, N, 20000);
      assert.equal(pubs.length, N, `client ${n} (${kinds[n % 3]}) got each publication once`);
      assert.deepEqual(pubs.map((p) => p.offset), Array.from({ length: N }, (_, i) => i + 1), `client ${n} in offset order`);
    }
  });
});
