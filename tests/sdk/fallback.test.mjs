// Transport fallback: the SDK's transports array, as in Centrifugo's HTTP-streaming docs. When
// the WebSocket endpoint refuses (nothing listening, or a path that answers 404), the SDK moves
// on to HTTP streaming (or SSE) and everything works there.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { variants, client, endpoints, apiPublish, uniq, nextEvent, closeClient, WS_URL, ROTOR_URL, CLOSED_PORT } from './lib.mjs';

const refusing = {
  closedPort: { transport: 'websocket', endpoint: `ws://127.0.0.1:${CLOSED_PORT}/connection/websocket` },
  notFound: { transport: 'websocket', endpoint: `${WS_URL}/connection/no_such_endpoint` },
};

const cases = [
  { name: 'JSON: closed port → http_stream', variant: variants[0], transports: [refusing.closedPort, { transport: 'http_stream', endpoint: endpoints.http_stream }], expect: 'http_stream' },
  { name: 'JSON: 404 WebSocket path → http_stream', variant: variants[0], transports: [refusing.notFound, { transport: 'http_stream', endpoint: endpoints.http_stream }], expect: 'http_stream' },
  {
    name: 'JSON: 404 WebSocket path, 404 http_stream path → sse',
    variant: variants[0],
    transports: [refusing.notFound, { transport: 'http_stream', endpoint: `${ROTOR_URL}/connection/no_such_stream` }, { transport: 'sse', endpoint: endpoints.sse }],
    expect: 'sse',
  },
  { name: 'Protobuf: closed port → http_stream', variant: variants[3], transports: [refusing.closedPort, { transport: 'http_stream', endpoint: endpoints.http_stream }], expect: 'http_stream' },
  { name: 'Protobuf: 404 WebSocket path → http_stream', variant: variants[3], transports: [refusing.notFound, { transport: 'http_stream', endpoint: endpoints.http_stream }], expect: 'http_stream' },
  { name: 'JSON: a working WebSocket is used first', variant: variants[0], transports: [{ transport: 'websocket', endpoint: endpoints.websocket }, { transport: 'http_stream', endpoint: endpoints.http_stream }], expect: 'websocket' },
];

describe('transport fallback', () => {
  const open = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map(closeClient));
  });

  for (const tc of cases) {
    it(tc.name, async () => {
      const { c, decode, encode, tokenCalls } = client(tc.variant, { transports: tc.transports });
      open.push(c);
      const channel = uniq('fallback');
      const sub = c.newSubscription(channel);
      const connected = nextEvent(c, 'connected', () => true, 15000);
      c.connect();
      sub.subscribe();
      const ctx = await connected;
      assert.equal(ctx.transport, tc.expect);
      assert.ok(tokenCalls.length >= 1);
      await sub.ready(5000);

      const got = nextEvent(sub, 'publication');
      await apiPublish(channel, { via: tc.expect });
      assert.deepEqual(decode((await got).data), { via: tc.expect });

      // The client → server leg works on the fallback transport too.
      const echoed = nextEvent(sub, 'publication');
      await sub.publish(encode({ from: 'client' }));
      assert.deepEqual(decode((await echoed).data), { from: 'client' });
    });
  }
});
