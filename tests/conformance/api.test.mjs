// Server HTTP API as far as the uni transports need it: publish and the legacy `POST /api`
// form, auth, validation (reference §5).
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { API_KEY, ROTOR_URL, token, uniq } from './lib.mjs';
import { openUni, closeAll, connected, finished, pubsOf, quiet } from './kit.mjs';

afterEach(closeAll);

async function post(path, body, headers = { 'X-API-Key': API_KEY }) {
  const res = await fetch(`${ROTOR_URL}${path}`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

describe('POST /api/publish', () => {
  it('answers 200 application/json {"result":{offset, epoch}}; offsets grow by one', async () => {
    const channel = `chat:${uniq('api')}`;
    const a = await post('/api/publish', { channel, data: { n: 1 } });
    assert.equal(a.status, 200);
    assert.match(a.type, /^application\/json/);
    const ra = JSON.parse(a.text).result;
    assert.equal(ra.offset, 1);
    assert.equal(typeof ra.epoch, 'string');
    const rb = JSON.parse((await post('/api/publish', { channel, data: { n: 2 } })).text).result;
    assert.deepEqual(rb, { offset: 2, epoch: ra.epoch });
  });

  it('key from X-API-Key, Authorization: apikey (any case) or ?api_key=; others are 401', async () => {
    const channel = `chat:${uniq('auth')}`;
    const body = { channel, data: { a: 1 } };
    assert.equal((await post('/api/publish', body, { 'X-API-Key': API_KEY })).status, 200);
    assert.equal((await post('/api/publish', body, { Authorization: `apikey ${API_KEY}` })).status, 200);
    assert.equal((await post('/api/publish', body, { Authorization: `ApiKey ${API_KEY}` })).status, 200, 'scheme is case-insensitive');
    assert.equal((await post(`/api/publish?api_key=${encodeURIComponent(API_KEY)}`, body, {})).status, 200);
    assert.equal((await post('/api/publish', body, {})).status, 401, 'missing key');
    assert.equal((await post('/api/publish', body, { 'X-API-Key': `${API_KEY}x` })).status, 401, 'wrong key');
    assert.equal((await post('/api/publish', body, { Authorization: `Bearer ${API_KEY}` })).status, 401, 'other scheme');
    assert.equal((await post('/api/publish', body, { 'X-API-Key': '' })).status, 401, 'empty key');
  });

  it('a non-POST is 405, checked before the key', async () => {
    const res = await fetch(`${ROTOR_URL}/api/publish`);
    assert.equal(res.status, 405);
    await res.text();
  });

  it('validation: empty channel 107, unknown namespace 102, missing data 107, not JSON 400', async () => {
    const err = async (body) => JSON.parse((await post('/api/publish', body)).text).error;
    assert.equal((await err({ channel: '', data: {} })).code, 107);
    assert.deepEqual(await err({ channel: `nope:${uniq('x')}`, data: {} }), { code: 102, message: 'unknown channel' });
    assert.equal((await err({ channel: `chat:${uniq('x')}` })).code, 107);
    const notJson = await post('/api/publish', '{oops');
    assert.equal(notJson.status, 400);
  });

  it('a failed publish reaches nobody; wrong keys do not publish', async () => {
    const user = uniq('u');
    const c = openUni('http', { token: token(user) });
    await connected(c);
    await post('/api/publish', { channel: `#${user}`, data: { leaked: 1 } }, { 'X-API-Key': 'wrong' });
    await post('/api/publish', { channel: `#${user}`, data: { ok: 1 } });
    await pubsOf(c, `#${user}`, 1);
    await quiet(150);
    assert.deepEqual(c.pubs().map((p) => p.data), [{ ok: 1 }]);
  });

  it('idempotency_key: a repeat returns the first result and is not delivered again', async () => {
    const user = uniq('idem');
    const c = openUni('sse', { token: token(user) });
    await connected(c);
    const body = { channel: `#${user}`, data: { once: true }, idempotency_key: uniq('k') };
    const first = JSON.parse((await post('/api/publish', body)).text).result;
    const again = JSON.parse((await post('/api/publish', body)).text).result;
    assert.deepEqual(again, first);
    await pubsOf(c, `#${user}`, 1);
    await quiet(200);
    assert.equal(c.pubs().length, 1);
  });
});

describe('legacy POST /api', () => {
  it('one command: {"method":"publish","params":{...}} → {"result":{...}}', async () => {
    const user = uniq('legacy');
    const c = openUni('ws', { token: token(user) });
    await connected(c);
    const r = await post('/api', { method: 'publish', params: { channel: `#${user}`, data: { legacy: true } } });
    assert.equal(r.status, 200);
    assert.ok(JSON.parse(r.text).result.offset >= 1, r.text);
    assert.deepEqual((await pubsOf(c, `#${user}`, 1))[0].data, { legacy: true });
  });

  it('several newline-separated commands get newline-separated replies in order, with ids', async () => {
    const channel = `chat:${uniq('legacy')}`;
    const body = [
      { id: 1, method: 'publish', params: { channel, data: { n: 1 } } },
      { id: 2, method: 'PUBLISH', params: { channel, data: { n: 2 } } }, // method names are case-insensitive
      { id: 3, method: 0, params: { channel, data: { n: 3 } } }, // PUBLISH = 0
      { id: 4, params: { channel, data: { n: 4 } } }, // no method = publish
      { id: 5, method: 'no_such_method', params: {} },
    ].map((c) => JSON.stringify(c)).join('\n');
    const r = await post('/api', body);
    assert.equal(r.status, 200);
    const replies = r.text.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(replies.map((x) => x.id), [1, 2, 3, 4, 5]);
    assert.deepEqual(replies.slice(0, 4).map((x) => x.result?.offset), [1, 2, 3, 4]);
    assert.deepEqual(replies[4].error, { code: 104, message: 'not found' });
  });

  it('needs the key (401) and a body (400)', async () => {
    const channel = `chat:${uniq('legacy')}`;
    assert.equal((await post('/api', { method: 'publish', params: { channel, data: {} } }, {})).status, 401);
    assert.equal((await post('/api', '')).status, 400);
  });
});

describe('POST /api/batch', () => {
  it('runs commands about connections and about channels in order, one reply each', async () => {
    const user = uniq('batch');
    const channel = `chat:${uniq('batch')}`;
    const c = openUni('http', { token: token(user) });
    await connected(c);
    const r = await post('/api/batch', {
      commands: [
        { subscribe: { user, channel } },
        { publish: { channel, data: { n: 1 } } },
        { no_such_method: {} },
        { disconnect: { user } },
      ],
    });
    assert.equal(r.status, 200);
    const { replies } = JSON.parse(r.text);
    assert.deepEqual(replies[0], { subscribe: {} }, r.text);
    assert.equal(replies[1].publish.offset, 1, r.text);
    assert.deepEqual(replies[2], { error: { code: 104, message: 'not found' } });
    assert.deepEqual(replies[3], { disconnect: {} });
    // The server-side subscription was made before the publication, which reached the client,
    // and the disconnect ended the connection.
    assert.deepEqual((await pubsOf(c, channel, 1))[0].data, { n: 1 });
    await finished(c);
  });
});
