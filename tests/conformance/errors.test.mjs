// Bad input gets its documented status or disconnect code, and other clients keep receiving.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { API_KEY, ROTOR_URL, WS_URL, WebSocket, api, jwt, publish, sleep, stream, token, uniq, uniWs, until } from './lib.mjs';

describe('bad input', () => {
  // A healthy client that must still receive after every error below.
  let healthy, healthyUser;
  before(async () => {
    healthyUser = uniq('healthy');
    healthy = stream('http', { body: { token: token(healthyUser) } });
    await until(() => healthy.connect(), 'healthy client connected');
  });
  after(async () => {
    await publish(`#${healthyUser}`, { still: 'here' });
    await until(() => healthy.pubs().some((p) => p.data.still === 'here'), 'healthy client still receives');
    await healthy.close();
  });

  const connectWith = async (t) => {
    const s = stream('http', { body: t === undefined ? {} : { token: t } });
    await until(() => s.ended, 'stream ends');
    assert.equal(s.status, 200);
    return s.disconnect();
  };

  it('missing token: 3501 bad request', async () => {
    assert.deepEqual(await connectWith(undefined), { code: 3501, reason: 'bad request' });
  });

  it('bad signature: 3500 invalid token', async () => {
    assert.equal((await connectWith(jwt({ sub: 'x' }, { secret: 'wrong' }))).code, 3500);
  });

  it('alg none: 3500 invalid token', async () => {
    assert.equal((await connectWith(jwt({ sub: 'x' }, { alg: 'none', sign: false }))).code, 3500);
  });

  it('expired token: 3005 connection expired', async () => {
    assert.equal((await connectWith(token('x', -10))).code, 3005);
  });

  it('a token that expires mid-connection ends it with 3005', async () => {
    const s = stream('http', { body: { token: token(uniq('short'), 1) } });
    await until(() => s.connect(), 'connected');
    await until(() => s.ended, 'closed after expiry', 10000);
    assert.equal(s.disconnect().code, 3005);
  });

  it('another user\'s personal channel in subs is not subscribed', async () => {
    const me = uniq('me');
    const other = uniq('other');
    const s = stream('http', { body: { token: token(me), subs: { [`#${other}`]: {} } } });
    await until(() => s.connect(), 'connected');
    assert.deepEqual(Object.keys(s.connect().subs), [`#${me}`]);
    await publish(`#${other}`, { secret: 1 });
    await publish(`#${me}`, { mine: 1 });
    await until(() => s.pubs().length >= 1, 'own publication');
    await sleep(100);
    assert.deepEqual(s.pubs().map((p) => p.data), [{ mine: 1 }]);
    await s.close();
  });

  it('server API: wrong or missing key is 401; X-API-Key, Authorization and api_key work', async () => {
    const channel = `chat:${uniq('api')}`;
    assert.equal((await api('publish', { channel, data: {} }, { 'X-API-Key': 'wrong' })).status, 401);
    assert.equal((await api('publish', { channel, data: {} }, {})).status, 401);
    assert.equal((await api('publish', { channel, data: {} }, { Authorization: 'apikey wrong' })).status, 401);
    assert.equal((await api('publish', { channel, data: { a: 1 } }, { Authorization: `apikey ${API_KEY}` })).status, 200);
    const q = await fetch(`${ROTOR_URL}/api/publish?api_key=${API_KEY}`, { method: 'POST', body: JSON.stringify({ channel, data: {} }) });
    assert.equal(q.status, 200);
    const legacy = await fetch(`${ROTOR_URL}/api`, {
      method: 'POST',
      headers: { 'X-API-Key': API_KEY },
      body: JSON.stringify({ method: 'publish', params: { channel, data: { legacy: true } } }),
    });
    assert.equal(legacy.status, 200);
    assert.ok(JSON.parse(await legacy.text()).result.offset >= 1);
    const notJson = await fetch(`${ROTOR_URL}/api/publish`, { method: 'POST', headers: { 'X-API-Key': API_KEY }, body: '{oops' });
    assert.equal(notJson.status, 400);
    assert.equal((await fetch(`${ROTOR_URL}/api/publish`, { headers: { 'X-API-Key': API_KEY } })).status, 405);
  });

  it('disallowed Origin: 403 on every transport; an allowed one gets CORS headers', async () => {
    const evil = { Origin: 'http://evil.example' };
    const h = await fetch(`${ROTOR_URL}/connection/uni_http_stream`, { method: 'POST', headers: evil, body: JSON.stringify({ token: token('o') }) });
    assert.equal(h.status, 403);
    assert.match(await h.text(), /allowed_origins/);
    const url = new URL('/connection/uni_sse', ROTOR_URL);
    url.searchParams.set('cf_connect', JSON.stringify({ token: token('o') }));
    assert.equal((await fetch(url, { headers: evil })).status, 403);
    const ws = uniWs({ token: token('o') }, { headers: evil });
    await until(() => ws.closed || ws.error, 'upgrade refused');
    assert.equal(ws.closed?.status ?? 403, 403);
    ws.close();

    const ok = stream('http', { body: { token: token(uniq('o')) }, headers: { Origin: 'http://allowed.example' } });
    await until(() => ok.connect(), 'allowed origin connects');
    assert.equal(ok.headers.get('access-control-allow-origin'), 'http://allowed.example');
    await ok.close();
  });
});

describe('bidirectional WebSocket frames', () => {
  it('a frame that goes bad part-way: the commands before it are answered, then 3501', async () => {
    const ws = new WebSocket(`${WS_URL}/connection/websocket`);
    const replies = [];
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('message', (d) => replies.push(JSON.parse(d.toString())));
    await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
    ws.send(JSON.stringify({ id: 1, connect: { token: token(uniq('bidi')) } }));
    await until(() => replies.some((r) => r.id === 1), 'connect reply');
    const channel = `chat:${uniq('frame')}`;
    ws.send([JSON.stringify({ id: 2, subscribe: { channel } }), '{not json', JSON.stringify({ id: 3, subscribe: { channel: `${channel}x` } })].join('\n'));
    assert.equal(await closed, 3501);
    assert.deepEqual(replies.filter((r) => r.id).map((r) => r.id), [1, 2], 'the subscribe before the bad line was answered');
    assert.ok(replies.find((r) => r.id === 2).subscribe, JSON.stringify(replies));
  });
});
