// Connection tokens on every unidirectional transport (reference §3 "Uni connect failure
// handling", §4 JWT). Each failure must end only that connection: healthy clients on all three
// transports stay open through the whole file and must still receive at the end.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { jwt, token, publish, uniq } from './lib.mjs';
import { openUni, closeAll, connected, finished, isOpen, pubsOf, UNI_KINDS } from './kit.mjs';

const now = () => Math.floor(Date.now() / 1000);

/**
 * Connects with `req` over `kind` and returns the disconnect code the server ended it with.
 * HTTP stream / SSE: HTTP 200, then a single `disconnect` push, then the end of the body.
 * WebSocket: a close frame with the code (a `disconnect` push before it must agree).
 */
async function refusedWith(kind, req) {
  const c = openUni(kind, req);
  await finished(c, `${kind}: server ends the connection`);
  assert.equal(c.connect(), undefined, `${kind}: no connect push on a refused connection`);
  if (kind === 'ws') {
    assert.ok(c.closed.code, `${kind}: closed with a close frame (got ${JSON.stringify(c.closed)})`);
    if (c.disconnect()) assert.equal(c.disconnect().code, c.closed.code, 'disconnect push and close frame agree');
    return c.closed.code;
  }
  assert.equal(c.status, 200, `${kind}: connect errors come as a disconnect push on a 200 stream`);
  const pushes = c.messages.filter((m) => Object.keys(m).length > 0);
  assert.equal(pushes.length, 1, `${kind}: exactly one push: ${JSON.stringify(c.messages)}`);
  assert.ok(c.disconnect(), `${kind}: a disconnect push: ${JSON.stringify(c.messages)}`);
  assert.equal(typeof c.disconnect().reason, 'string');
  return c.disconnect().code;
}

describe('connection tokens on every uni transport', () => {
  const healthy = {};
  let healthyUser;

  before(async () => {
    healthyUser = uniq('healthy');
    for (const kind of ['http', 'sse', 'ws']) {
      healthy[kind] = openUni(kind, { token: token(healthyUser) }, { keep: true });
      await connected(healthy[kind], `healthy ${kind} client`);
    }
  });
  after(async () => {
    for (const c of Object.values(healthy)) await c.close();
  });
  afterEach(closeAll);

  const cases = [
    ['missing token', () => ({}), 3501],
    ['bad signature', () => ({ token: jwt({ sub: 'x', exp: now() + 60 }, { secret: 'not-the-secret' }) }), 3500],
    ['alg none, unsigned', () => ({ token: jwt({ sub: 'x', exp: now() + 60 }, { alg: 'none', sign: false }) }), 3500],
    // An HS256 signature over a header that says HS512 must not pass either.
    ['header alg differs from the signature', () => ({ token: jwt({ sub: 'x', exp: now() + 60 }, { alg: 'HS512' }) }), 3500],
    ['not a JWT at all', () => ({ token: 'not-a-jwt' }), 3500],
    ['payload not JSON', () => ({ token: `${Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')}.bm90IGpzb24.${'A'.repeat(43)}` }), 3500],
    // Error 109 (token expired) maps to disconnect 3005 on uni transports (§3).
    ['expired token', () => ({ token: token('x', -30) }), 3005],
    // A subscription token (it has a `channel` claim) is not a connection token (§4).
    ['subscription token used to connect', () => ({ token: token('x', 60, { channel: 'chat:abc' }) }), 3500],
    // nbf is validated; Centrifugo's verifier answers "invalid token" for a token not yet valid.
    ['nbf in the future', () => ({ token: token('x', 600, { nbf: now() + 300 }) }), 3500],
  ];

  for (const [name, req, code] of cases) {
    it(`${name}: disconnect ${code} on http stream, SSE (POST and GET) and WebSocket`, async () => {
      for (const kind of UNI_KINDS) {
        assert.equal(await refusedWith(kind, req()), code, `${name} over ${kind}`);
      }
    });
  }

  it('missing token: reason is "bad request"', async () => {
    const c = openUni('http', {});
    await finished(c);
    assert.deepEqual(c.disconnect(), { code: 3501, reason: 'bad request' });
  });

  it('bad signature: reason is "invalid token"', async () => {
    const c = openUni('http', { token: jwt({ sub: 'x' }, { secret: 'wrong' }) });
    await finished(c);
    assert.deepEqual(c.disconnect(), { code: 3500, reason: 'invalid token' });
  });

  it('a token without exp never expires: connect push has no expires/ttl', async () => {
    const user = uniq('noexp');
    const c = openUni('http', { token: jwt({ sub: user, iat: now() }) });
    const push = await connected(c);
    assert.notEqual(push.expires, true);
    assert.equal(push.ttl, undefined);
    assert.ok(`#${user}` in push.subs);
  });

  it('a token with exp: connect push says expires with the remaining ttl', async () => {
    const c = openUni('sse', { token: token(uniq('exp'), 600) });
    const push = await connected(c);
    assert.equal(push.expires, true);
    assert.ok(push.ttl > 590 && push.ttl <= 600, `ttl ${push.ttl}`);
  });

  it('unknown claims (info, meta, jti) are accepted', async () => {
    const c = openUni('ws', { token: token(uniq('claims'), 600, { info: { name: 'N' }, meta: { m: 1 }, jti: 'j1' }) });
    await connected(c);
  });

  it('a token that expires mid-connection ends it with 3005 on every transport', async () => {
    // exp in 2 s, client_expired_close_delay 1 s in the conformance config: about 3 s.
    const clients = ['http', 'sse', 'ws'].map((kind) => [kind, openUni(kind, { token: token(uniq('short'), 2) })]);
    for (const [kind, c] of clients) await connected(c, `${kind} connect`);
    for (const [kind, c] of clients) {
      await finished(c, `${kind} closed after expiry`, 15000);
      // Established uni connections get a disconnect push before the end (WS: then a close frame).
      assert.equal(c.disconnect()?.code, 3005, `${kind}: ${JSON.stringify(c.messages.slice(-2))}`);
      if (kind === 'ws') assert.equal(c.closed.code, 3005);
    }
  });

  it('healthy clients on every transport still receive after all of the above', async () => {
    await publish(`#${healthyUser}`, { still: 'here' });
    for (const [kind, c] of Object.entries(healthy)) {
      assert.ok(isOpen(c), `${kind} healthy client still open`);
      const pubs = await pubsOf(c, `#${healthyUser}`, 1);
      assert.deepEqual(pubs.at(-1).data, { still: 'here' }, kind);
    }
  });
});
