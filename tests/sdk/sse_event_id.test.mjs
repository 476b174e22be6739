// Uni SSE event ids: every event carries all the connection's stream positions; a client that
// comes back with Last-Event-ID (header or `last_event_id` query parameter) recovers from them.
// Black-box over fetch: id limits, the "not recovered" signal, and the bad-id paths.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { apiPublish, connToken, uniq, ROTOR_URL } from './lib.mjs';

/** Opens a uni SSE stream and collects its events ({id, event, data}) until closed. */
function openSse({ token, subs, lastEventId, viaQuery = false }) {
  const url = new URL('/connection/uni_sse', ROTOR_URL);
  url.searchParams.set('cf_connect', JSON.stringify({ token, subs }));
  const headers = {};
  if (lastEventId && viaQuery) url.searchParams.set('last_event_id', lastEventId);
  else if (lastEventId) headers['Last-Event-ID'] = lastEventId;
  const ac = new AbortController();
  const events = [];
  let lastId = null;
  const done = (async () => {
    const res = await fetch(url, { headers, signal: ac.signal });
    assert.equal(res.status, 200);
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true });
        let at;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const ev = { id: null, event: 'message', data: '' };
          let any = false;
          for (const line of block.split(/\r?\n/)) {
            const [k, ...rest] = line.split(':');
            const v = rest.join(':').replace(/^ /, '');
            if (k === 'id') { ev.id = v; lastId = v; any = true; }
            if (k === 'event') { ev.event = v; any = true; }
            if (k === 'data') { ev.data += v; any = true; }
          }
          if (any && (ev.data || ev.event !== 'message')) events.push(ev);
        }
      }
    } catch (e) {
      if (e.name !== 'AbortError') throw e;
    }
  })();
  return {
    events,
    get lastId() { return lastId; },
    messages: () => events.filter((e) => e.event === 'message' && e.data !== '{}').map((e) => ({ ...e, msg: JSON.parse(e.data) })),
    async until(pred, what) {
      const deadline = Date.now() + 8000;
      while (!pred(this)) {
        if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; events: ${JSON.stringify(events).slice(0, 2000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close() { ac.abort(); await done.catch(() => {}); },
  };
}

const pubs = (s) => s.messages().filter((m) => m.msg.pub).map((m) => m.msg.pub.data.n);

describe('uni SSE event ids', () => {
  it('every event carries an id; resuming from it recovers what was missed, in order', async () => {
    const channel = uniq('ids');
    const token = connToken(uniq('u'));
    const a = openSse({ token, subs: { [channel]: {} } });
    await a.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
    assert.match(a.events.find((e) => e.data.includes('"connect"')).id, /^1\.[A-Za-z0-9_-]+$/);
    await apiPublish(channel, { n: 1 });
    await a.until((s) => pubs(s).length === 1, 'pub 1');
    const id = a.lastId;
    await a.close();
    for (let n = 2; n <= 4; n++) await apiPublish(channel, { n });

    for (const viaQuery of [false, true]) {
      const b = openSse({ token, subs: { [channel]: {} }, lastEventId: id, viaQuery });
      await b.until((s) => pubs(s).length === 3, 'recovered pubs');
      const connect = b.messages().find((m) => m.msg.connect).msg.connect;
      assert.equal(connect.subs[channel].recovered, true);
      assert.deepEqual(pubs(b), [2, 3, 4]);
      // Each event moved the position on: resuming from the last id recovers nothing more.
      const last = b.lastId;
      await b.close();
      const c = openSse({ token, subs: { [channel]: {} }, lastEventId: last, viaQuery });
      await c.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(pubs(c), []);
      assert.equal(c.messages().find((m) => m.msg.connect).msg.connect.subs[channel].recovered, true);
      await c.close();
    }
  });

  it('a position outside the history window says "not recovered" for that channel', async () => {
    const channel = `tiny:${uniq('w')}`; // history_size 2
    const token = connToken(uniq('u'));
    const a = openSse({ token, subs: { [channel]: {} } });
    await a.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
    const id = a.lastId;
    await a.close();
    for (let n = 1; n <= 5; n++) await apiPublish(channel, { n });
    const b = openSse({ token, subs: { [channel]: {} }, lastEventId: id });
    await b.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
    const sub = b.messages().find((m) => m.msg.connect).msg.connect.subs[channel];
    assert.equal(sub.was_recovering, true);
    assert.notEqual(sub.recovered, true);
    assert.equal(sub.offset, 5); // the current top, so the page can reload and go on
    await apiPublish(channel, { n: 6 });
    await b.until((s) => pubs(s).includes(6), 'live pub');
    assert.deepEqual(pubs(b), [6]);
    await b.close();
  });

  it('64 channels fit in an id of about a kilobyte; more get no ids', async () => {
    const token = connToken(uniq('u'));
    const subs = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`${uniq('many')}-${i}`, {}]));
    const a = openSse({ token, subs });
    await a.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
    const connectEvent = a.events.find((e) => e.data.includes('"connect"'));
    assert.ok(connectEvent.id, 'connect event has an id');
    assert.ok(connectEvent.id.length <= 1200, `id is ${connectEvent.id.length} chars`);
    assert.equal(Object.keys(a.messages().find((m) => m.msg.connect).msg.connect.subs).length, 64);
    await a.close();

    subs[uniq('one-more')] = {};
    const b = openSse({ token, subs });
    await b.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
    assert.equal(b.events.find((e) => e.data.includes('"connect"')).id, null);
    await b.close();
  });

  for (const [what, mangle] of [
    ['malformed', () => 'not-an-id'],
    ['unknown version', (id) => `9${id.slice(1)}`],
    ['tampered', (id) => id.slice(0, -3) + (id.endsWith('AAA') ? 'BBB' : 'AAA')],
  ]) {
    it(`a ${what} id gets a resume_error event and a plain subscribe`, async () => {
      const channel = uniq('bad');
      const token = connToken(uniq('u'));
      const a = openSse({ token, subs: { [channel]: {} } });
      await a.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
      const id = a.lastId;
      await a.close();
      await apiPublish(channel, { n: 1 });
      const b = openSse({ token, subs: { [channel]: {} }, lastEventId: mangle(id) });
      await b.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
      const err = b.events.find((e) => e.event === 'resume_error');
      assert.ok(err, 'resume_error event');
      const body = JSON.parse(err.data);
      assert.equal(body.code, 107);
      assert.match(body.message, /Last-Event-ID/);
      const sub = b.messages().find((m) => m.msg.connect).msg.connect.subs[channel];
      assert.notEqual(sub.was_recovering, true);
      await apiPublish(channel, { n: 2 });
      await b.until((s) => pubs(s).includes(2), 'live pub after fallback');
      assert.deepEqual(pubs(b), [2]);
      await b.close();
    });
  }

  it('an id issued for other channels is refused', async () => {
    const token = connToken(uniq('u'));
    const a = openSse({ token, subs: { [uniq('one')]: {} } });
    await a.until((s) => s.messages().some((m) => m.msg.connect), 'connect');
    const id = a.lastId;
    await a.close();
    const b = openSse({ token, subs: { [uniq('other')]: {} }, lastEventId: id });
    await b.until((s) => s.events.some((e) => e.event === 'resume_error'), 'resume_error');
    assert.match(JSON.parse(b.events.find((e) => e.event === 'resume_error').data).message, /different set of channels/);
    await b.close();
  });
});
