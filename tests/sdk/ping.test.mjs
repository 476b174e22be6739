// Server ping / client pong (protocol §1.5) on every transport: an idle connection stays up for
// two whole ping intervals. If the server stopped pinging, the SDK would reconnect ("no ping",
// detected here within 1.5 s thanks to maxServerPingDelay); if the SDK's pongs (over the
// WebSocket, or through /emulation for HTTP streaming and SSE) did not reach the server, it
// would close the connection with 3012 "no pong". Either shows up as a 'connecting' event.
// Where WebSockets go unpinged (the edge, so idle node objects hibernate), the SDK is told
// no interval and must stay connected through an idle spell longer than the runtime's
// eviction window (~10-15 s), then still receive.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { variants, client, apiPublish, uniq, nextEvent, sleep, closeClient, WEBSOCKET_PINGS } from './lib.mjs';

describe('ping/pong keeps idle connections alive', { concurrency: true }, () => {
  for (const variant of variants) {
    it(variant.name, async () => {
      const { c, decode } = client(variant, { centrifuge: { maxServerPingDelay: 1500 } });
      try {
        const channel = uniq('idle');
        const sub = c.newSubscription(channel);
        const trouble = [];
        c.connect();
        sub.subscribe();
        await sub.ready(5000);
        c.on('connecting', (ctx) => trouble.push(ctx));
        c.on('disconnected', (ctx) => trouble.push(ctx));
        // The ping interval the server announced in its connect reply, and whether it wants
        // pongs (read from the SDK's state: the SDK does not publish them).
        const interval = c._serverPing;
        if (variant.transport === 'websocket' && !WEBSOCKET_PINGS) {
          assert.ok(!interval, 'no ping interval announced');
          await sleep(20_000);
        } else {
          assert.ok(interval > 0, 'the connect reply announces a ping interval');
          assert.equal(c._sendPong, true, 'bidirectional transports are asked for pongs');
          await sleep(2 * interval + 2000);
        }
        assert.deepEqual(trouble, []);
        assert.equal(c.state, 'connected');
        const got = nextEvent(sub, 'publication');
        await apiPublish(channel, { still: 'here' });
        assert.deepEqual(decode((await got).data), { still: 'here' });
      } finally {
        await closeClient(c);
      }
    });
  }
});
