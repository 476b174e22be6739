// Untrusted input that once crashed, froze or fooled rotor (issue 11): binary payloads for
// JSON clients on every path, hostile API values, unknown namespaces in uni `subs`. Each ends
// with a clear answer for its sender while a bystander keeps receiving and the API answers.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { API_KEY, ROTOR_URL, api, publish, token, uniq, until } from './lib.mjs';
import { closeAll, connected, finished, openUni, pubsOf } from './kit.mjs';

const b64 = (s) => Buffer.from(s, 'latin1').toString('base64');

/** An API call whose body is given as JSON text (integers beyond what JavaScript holds). */
async function apiText(method, body) {
  const res = await fetch(`${ROTOR_URL}/api/${method}`, { method: 'POST', headers: { 'X-API-Key': API_KEY }, body });
  return { status: res.status, text: await res.text() };
}

async function apiOk(method, params) {
  const r = typeof params === 'string' ? await apiText(method, params) : await api(method, params);
  assert.equal(r.status, 200, r.text);
  const body = JSON.parse(r.text);
  assert.ok(!body.error, r.text);
  return body.result;
}

describe('untrusted input', () => {
  let bystander, bystanderChannel;
  before(async () => {
    const user = uniq('bystander');
    bystanderChannel = `#${user}`;
    bystander = openUni('http', { token: token(user) }, { keep: true });
    await connected(bystander);
  });
  afterEach(closeAll);
  after(async () => {
    // The node that served every case below still serves its other clients and the API.
    await publish(bystanderChannel, { still: 'here' });
    await pubsOf(bystander, bystanderChannel, 1);
    await apiOk('info', {});
    await bystander.close();
  });

  for (const kind of ['http', 'sse', 'sse-get', 'ws']) {
    it(`a binary publication ends a live JSON ${kind} client with 3506`, async () => {
      const channel = uniq('chat:bin');
      const user = uniq('u');
      const c = openUni(kind, { token: token(user, 3600, { channels: [channel] }) });
      await connected(c);
      await apiOk('publish', { channel, b64data: b64('\xffnot json') });
      await finished(c, 'the client is cut off');
      const code = c.disconnect()?.code ?? c.closed?.code;
      assert.equal(code, 3506, JSON.stringify(c.disconnect() ?? c.closed));
    });
  }

  it('recovering over a binary publication ends a JSON client with 3506; the API gives it as b64data', async () => {
    const channel = uniq('chat:rec');
    const first = await publish(channel, { n: 1 });
    await apiOk('publish', { channel, b64data: b64('\x00\x01binary') });
    const c = openUni('http', {
      token: token(uniq('u'), 3600, { channels: [channel] }),
      subs: { [channel]: { recover: true, offset: first.offset, epoch: first.epoch } },
    });
    await finished(c, 'the recovering client is cut off');
    assert.equal(c.disconnect()?.code, 3506, JSON.stringify(c.messages));
    const history = await apiOk('history', { channel, limit: 10 });
    assert.equal(history.publications.length, 2);
    assert.deepEqual(history.publications[0].data, { n: 1 });
    assert.equal(history.publications[1].b64data, b64('\x00\x01binary'));
  });

  it('binary connection info: join pushes end JSON subscribers with 3506', async () => {
    const channel = uniq('room:info');
    const watcher = openUni('http', { token: token(uniq('w'), 3600, { channels: [channel] }) });
    await connected(watcher);
    const binary = openUni('http', { token: token(uniq('b'), 3600, { channels: [channel], b64info: b64('\xfe') }) });
    await connected(binary);
    await finished(watcher, 'the watcher is cut off by the join push');
    assert.equal(watcher.disconnect()?.code, 3506, JSON.stringify(watcher.messages));
    // Its own join push carries the same info: a JSON client cannot hold binary info.
    await finished(binary, 'the binary-info client is cut off by its own join push');
    assert.equal(binary.disconnect()?.code, 3506, JSON.stringify(binary.messages));
    await apiOk('presence', { channel });
  });

  it('a channel pattern that once took minutes answers at once; a huge one is refused with 107', async () => {
    const long = `chat:${'a'.repeat(240)}`;
    const c = openUni('http', { token: token(uniq('u'), 3600, { channels: [long] }) });
    await connected(c);
    const started = Date.now();
    const result = await apiOk('channels', { pattern: '*a*a*a*a*a*a*a*a*b' });
    assert.ok(!(long in result.channels));
    assert.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`);
    const r = await api('channels', { pattern: '*'.repeat(5000) });
    const body = JSON.parse(r.text);
    assert.equal(body.error?.code, 107, r.text);
    assert.match(body.error.message, /pattern/);
  });

  it('expire_at at the end of time neither wraps nor crashes', async () => {
    const user = uniq('u');
    const c = openUni('http', { token: token(user) });
    await connected(c);
    for (const expire_at of ['9223372036854775807', '-9223372036854775808', '9223372036854776']) {
      await apiOk('subscribe', `{"user":"${user}","channel":"${uniq('chat:e')}","expire_at":${expire_at}}`);
      await apiOk('refresh', `{"user":"${user}","expire_at":${expire_at}}`);
    }
    await until(() => c.messages.some((m) => m.refresh), 'a refresh push');
    assert.ok(!c.ended, 'still connected');
  });

  it('a 1 MB channel name is refused with 107 naming channel_max_length', async () => {
    const r = await api('publish', { channel: 'x'.repeat(1 << 20), data: {} });
    const body = JSON.parse(r.text);
    assert.equal(body.error?.code, 107, r.text.slice(0, 200));
    assert.match(body.error.message, /channel_max_length/);
  });

  it('a batch of more than 1000 commands is refused whole with 400', async () => {
    const commands = Array.from({ length: 1001 }, () => ({ info: {} }));
    const r = await api('batch', { commands });
    assert.equal(r.status, 400, r.text.slice(0, 200));
    assert.match(r.text, /1000/);
  });

  it('a broadcast to more than 10,000 channels is refused whole with 400, before any publishes', async () => {
    const prefix = uniq('bc');
    const channels = Array.from({ length: 10001 }, (_, i) => `${prefix}${i}`);
    const r = await api('broadcast', { channels, data: {} });
    assert.equal(r.status, 400, r.text.slice(0, 200));
    assert.match(r.text, /10000/);
    const history = await api('history', { channel: channels[0] });
    assert.equal(history.status, 200);
  });

  for (const kind of ['http', 'ws']) {
    it(`an unknown namespace in uni ${kind} subs is left out, not a disconnect`, async () => {
      const c = openUni(kind, { token: token(uniq('u')), subs: { 'nope:x': {}, [uniq('chat:ok')]: {} } });
      const connect = await connected(c);
      assert.ok(!('nope:x' in (connect.subs || {})), JSON.stringify(connect));
    });
  }
});

describe('close frames from API disconnect', () => {
  afterEach(closeAll);

  for (const [code, reason, wantCode] of [
    [70000, 'x'.repeat(200), 1011],
    [1005, 'reserved', 1011],
    [4321, 'é'.repeat(100), 4321],
  ]) {
    it(`code ${code} with a ${Buffer.byteLength(reason)}-byte reason makes a valid close frame (${wantCode})`, async () => {
      const user = uniq('d');
      const c = openUni('ws', { token: token(user) });
      await connected(c);
      await apiOk('disconnect', { user, disconnect: { code, reason } });
      await finished(c, 'the socket closes');
      assert.equal(c.error, null, `the client saw a protocol error: ${c.error?.message}`);
      assert.equal(c.closed.code, wantCode, JSON.stringify(c.closed));
      assert.ok(Buffer.byteLength(c.closed.reason) <= 123, `reason of ${Buffer.byteLength(c.closed.reason)} bytes`);
      assert.ok(reason.startsWith(c.closed.reason), 'a cut reason is a prefix, cut on a character boundary');
    });
  }
});
