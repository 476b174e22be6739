// The three unidirectional transports as the seed walkthroughs use them, over real sockets.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ROTOR_URL, WEBSOCKET_PINGS, publish, stream, token, uniq, uniWs, until } from './lib.mjs';

describe('uni HTTP stream', () => {
  it('connect push, personal channel publication, {} pings', async () => {
    const user = uniq('u');
    const s = stream('http', { body: { token: token(user) } });
    await until(() => s.connect(), 'connect push');
    assert.equal(s.status, 200);
    const c = s.connect();
    assert.match(c.client, /^[0-9a-f-]{36}$/);
    assert.ok(c.session, 'session id');
    assert.ok(c.version);
    assert.equal(c.ping, 2);
    assert.ok(`#${user}` in c.subs, JSON.stringify(c));
    assert.ok(c.expires && c.ttl > 3500);
    const r = await publish(`#${user}`, { input: 'hello' });
    assert.ok(r.offset >= 1 && r.epoch);
    await until(() => s.pubs().length === 1, 'publication');
    assert.deepEqual(s.pubs()[0].data, { input: 'hello' });
    assert.equal(s.pubs()[0].offset, r.offset);
    assert.equal(s.messages[1].channel, `#${user}`);
    await until(() => s.messages.some((m) => Object.keys(m).length === 0), 'a {} ping', 5000);
    await s.close();
  });

  it('refuses wrong methods and bad bodies with the documented statuses', async () => {
    const url = `${ROTOR_URL}/connection/uni_http_stream`;
    assert.equal((await fetch(url)).status, 405);
    const big = await fetch(url, { method: 'POST', body: JSON.stringify({ token: 'x'.repeat(70000) }) });
    assert.equal(big.status, 413);
    assert.match(await big.text(), /65536/);
    const bad = await fetch(url, { method: 'POST', body: '{"token":' });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /JSON/);
  });

  it('a null body is an empty connect request (no token: 3501)', async () => {
    const s = stream('http', { body: 'null' });
    await until(() => s.ended, 'stream end');
    assert.equal(s.status, 200);
    assert.equal(s.disconnect().code, 3501);
  });
});

describe('uni SSE', () => {
  it('GET with cf_connect: event stream, personal publication, data: {} pings', async () => {
    const user = uniq('u');
    const s = stream('sse', { method: 'GET', query: { token: token(user) } });
    await until(() => s.connect(), 'connect event');
    assert.match(s.headers.get('content-type'), /^text\/event-stream/);
    assert.ok(s.raw.startsWith('\r\n'));
    assert.match(s.raw, /retry: \d+/);
    await publish(`#${user}`, { input: 'sse' });
    await until(() => s.pubs().length === 1, 'publication');
    assert.match(s.raw, /data: \{"channel":"#[^"]+","pub":\{"data":\{"input":"sse"\}/);
    await until(() => /\ndata: \{\}\n\n/.test(s.raw), 'data: {} ping', 5000);
    await s.close();
  });

  it('POST with a JSON body works too', async () => {
    const user = uniq('u');
    const s = stream('sse', { body: { token: token(user) } });
    await until(() => s.connect(), 'connect event');
    await publish(`#${user}`, { n: 1 });
    await until(() => s.pubs().length === 1, 'publication');
    await s.close();
  });

  it('refuses bad cf_connect, oversized POST, other methods', async () => {
    const url = new URL('/connection/uni_sse', ROTOR_URL);
    url.searchParams.set('cf_connect', '{nope');
    const bad = await fetch(url);
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /cf_connect/);
    const big = await fetch(`${ROTOR_URL}/connection/uni_sse`, { method: 'POST', body: 'x'.repeat(70000) });
    assert.equal(big.status, 413);
    assert.equal((await fetch(`${ROTOR_URL}/connection/uni_sse`, { method: 'PUT', body: '{}' })).status, 405);
  });
});

describe('uni WebSocket', () => {
  it('connect command as the first message, publications, {} pings and ping frames', async () => {
    const user = uniq('u');
    const chat = `chat:${uniq('c')}`;
    const c = uniWs({ token: token(user), subs: { [chat]: {} } });
    await until(() => c.messages.some((m) => m.connect), 'connect push');
    const connect = c.messages.find((m) => m.connect).connect;
    assert.equal(connect.ping, WEBSOCKET_PINGS ? 2 : undefined);
    assert.deepEqual(Object.keys(connect.subs).sort(), [`#${user}`, chat].sort());
    await publish(chat, { text: 'chat' });
    await publish(`#${user}`, { text: 'personal' });
    await until(() => c.messages.filter((m) => m.pub).length === 2, 'two publications');
    assert.deepEqual(c.messages.filter((m) => m.pub).map((m) => [m.channel, m.pub.data.text]), [[chat, 'chat'], [`#${user}`, 'personal']]);
    if (WEBSOCKET_PINGS) {
      await until(() => c.messages.some((m) => Object.keys(m).length === 0) && c.pings > 0, '{} ping and a ping frame', 5000);
    } else {
      await new Promise((r) => setTimeout(r, 5000)); // two ping intervals: none may come
      assert.equal(c.messages.filter((m) => Object.keys(m).length === 0).length + c.pings, 0, 'no pings');
    }
    c.close();
  });

  it('a first message over 64 KiB closes with 1009', async () => {
    const c = uniWs({ token: 'x'.repeat(70000) });
    await until(() => c.closed, 'close');
    assert.equal(c.closed.code, 1009);
  });

  it('a first message that is not a connect request closes with 3501', async () => {
    const c = uniWs('this is not json');
    await until(() => c.closed, 'close');
    assert.equal(c.closed.code, 3501);
  });
});

describe('recovery through connect subs', () => {
  it('missed publications come back in order with recovered: true', async () => {
    const channel = `chat:${uniq('rec')}`;
    const t = token(uniq('u'));
    const first = stream('http', { body: { token: t, subs: { [channel]: {} } } });
    await until(() => first.connect(), 'connect');
    await publish(channel, { n: 1 });
    await until(() => first.pubs().length === 1, 'pub 1');
    const { epoch } = first.connect().subs[channel];
    const offset = first.pubs()[0].offset;
    await first.close();
    for (let n = 2; n <= 4; n++) await publish(channel, { n });

    const again = stream('http', { body: { token: t, subs: { [channel]: { recover: true, offset, epoch } } } });
    await until(() => again.connect(), 'connect');
    const sub = again.connect().subs[channel];
    assert.equal(sub.was_recovering, true);
    assert.equal(sub.recovered, true);
    assert.deepEqual(sub.publications.map((p) => p.data.n), [2, 3, 4]);
    await again.close();

    const wrongEpoch = stream('http', { body: { token: t, subs: { [channel]: { recover: true, offset, epoch: 'nope' } } } });
    await until(() => wrongEpoch.connect(), 'connect');
    const w = wrongEpoch.connect().subs[channel];
    assert.equal(w.was_recovering, true);
    assert.notEqual(w.recovered, true);
    assert.equal(w.publications, undefined);
    await wrongEpoch.close();
  });

  it('outside the history window: not recovered', async () => {
    const channel = `tiny:${uniq('rec')}`; // history_size 2
    const t = token(uniq('u'));
    const first = stream('http', { body: { token: t, subs: { [channel]: {} } } });
    await until(() => first.connect(), 'connect');
    const { epoch } = first.connect().subs[channel];
    await first.close();
    for (let n = 1; n <= 5; n++) await publish(channel, { n });
    const again = stream('http', { body: { token: t, subs: { [channel]: { recover: true, offset: 0, epoch } } } });
    await until(() => again.connect(), 'connect');
    const sub = again.connect().subs[channel];
    assert.equal(sub.was_recovering, true);
    assert.notEqual(sub.recovered, true);
    assert.equal(sub.offset, 5);
    await again.close();
  });
});
