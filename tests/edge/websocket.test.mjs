// WebSockets on the edge (hibernation API): a bidirectional JSON client and a uni client keep
// their sessions while the node object holding them is evicted during an idle spell longer
// than the runtime's window (~10-15 s locally) and rebuilt from the sockets' attachments:
// the info API shows a node younger than the spell, and publications and commands reach the
// same sessions without a reconnect. Needs a global WebSocket (Node 22: edge/test.sh runs
// this directory with the Node that edge/setup.sh installs).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { token, start, stop, config, sleep, channel as named } from "./lib.mjs";

after(stop);

function open(url) {
  const ws = new WebSocket(url);
  const messages = [];
  ws.addEventListener("message", (e) => messages.push(String(e.data)));
  const closed = new Promise((resolve) => ws.addEventListener("close", (e) => resolve([e.code, e.reason])));
  return new Promise((resolve, reject) => {
    ws.addEventListener("open", () => resolve({ ws, messages, closed }));
    ws.addEventListener("error", reject);
  });
}

async function until(what, f, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function publish(base, channel, data) {
  const r = await fetch(`${base}/api/publish`, {
    method: "POST",
    headers: { "x-api-key": config.api_key },
    body: JSON.stringify({ channel, data }),
  });
  return (await r.json()).result;
}

async function info(base) {
  const r = await fetch(`${base}/api/info`, { method: "POST", headers: { "x-api-key": config.api_key }, body: "{}" });
  return (await r.json()).result.nodes;
}

const IDLE_MS = 25_000; // well past the runtime's eviction of idle objects (~10-15 s locally)

test("WebSocket sessions live on in their sockets while the node object hibernates", { timeout: 180_000, skip: typeof WebSocket === "undefined" && "needs Node 22 (global WebSocket)" }, async () => {
  const base = await start();
  const wsBase = base.replace(/^http/, "ws");
  const channel = named(`ws-${Date.now()}`);
  const user = (sub) => token({ sub }, config.token_hmac_secret_key);
  const replyTo = (c, id) => until(`reply ${id}`, () => c.messages.map((m) => JSON.parse(m)).find((m) => m.id === id));

  const bidi = await open(`${wsBase}/connection/websocket`);
  bidi.ws.send(JSON.stringify({ id: 1, connect: { token: user("b1") } }));
  const connect = await replyTo(bidi, 1);
  assert.ok(connect.connect.client, JSON.stringify(connect));
  assert.equal(connect.connect.ping, undefined, "no server pings: an idle node object may hibernate");
  bidi.ws.send(JSON.stringify({ id: 2, subscribe: { channel, recover: true } }));
  await replyTo(bidi, 2);

  const uni = await open(`${wsBase}/connection/uni_websocket`);
  uni.ws.send(JSON.stringify({ token: user("u1"), subs: { [channel]: {} } }));
  await until("uni connect push", () => uni.messages.find((m) => m.includes('"connect"')));
  let t0 = performance.now();
  const first = await publish(base, channel, { n: 1 });
  await until("the first publication", () => bidi.messages.some((m) => m.includes('"n":1')) && uni.messages.some((m) => m.includes('"n":1')));
  const warm = performance.now() - t0;

  await sleep(IDLE_MS);

  // A publication wakes the node object: its hub is new, rebuilt from the sockets'
  // attachments, and the sessions receive without reconnecting.
  t0 = performance.now();
  const second = await publish(base, channel, { n: 2 });
  assert.equal(second.offset, first.offset + 1);
  await until("the publication on the bidirectional socket", () => bidi.messages.some((m) => m.includes('"n":2')));
  await until("the publication on the uni socket", () => uni.messages.some((m) => m.includes('"n":2')));
  console.log(`# publish → both sockets: ${warm.toFixed(0)} ms awake, ${(performance.now() - t0).toFixed(0)} ms waking a hibernated node`);
  await publish(base, "#b1", { personal: true });
  await until("the personal channel (a server-side subscription)", () => bidi.messages.some((m) => m.includes('"personal":true')));
  const nodes = (await info(base)).filter((n) => n.num_clients > 0);
  assert.equal(nodes.reduce((sum, n) => sum + n.num_clients, 0), 2, JSON.stringify(nodes));
  for (const n of nodes) assert.ok(n.uptime < IDLE_MS / 1000 - 5, `node ${n.uid} was rebuilt during the idle spell (uptime ${n.uptime} s)`);
  const pubs = (c) => c.messages.map((m) => JSON.parse(m)).filter((m) => (m.push?.pub ?? m.pub)?.data?.n);
  assert.deepEqual(pubs(bidi).map((m) => m.push.pub.offset), [first.offset, second.offset], "each publication once, nothing else");
  assert.deepEqual(pubs(uni).map((m) => m.pub.offset), [first.offset, second.offset]);
  assert.ok(!bidi.messages.some((m) => /"(subscribe|unsubscribe|disconnect)"/.test(m) && !m.includes('"id"')), "no pushes about the wake-up");

  // The same session still holds its subscription (subscribing again is refused with 105);
  // unsubscribing is stored with it.
  bidi.ws.send(JSON.stringify({ id: 3, subscribe: { channel } }));
  assert.equal((await replyTo(bidi, 3)).error?.code, 105);
  bidi.ws.send(JSON.stringify({ id: 4, unsubscribe: { channel } }));
  await replyTo(bidi, 4);

  await sleep(IDLE_MS);

  // This time a client command wakes it, and the session is as the client left it.
  bidi.ws.send(JSON.stringify({ id: 5, subscribe: { channel, recover: true, offset: second.offset, epoch: second.epoch } }));
  const resubscribed = await replyTo(bidi, 5);
  assert.equal(resubscribed.error, undefined, JSON.stringify(resubscribed));
  assert.equal(resubscribed.subscribe.recovered, true);
  await publish(base, channel, { n: 3 });
  await until("a publication after the second wake-up", () => bidi.messages.some((m) => m.includes('"n":3')) && uni.messages.some((m) => m.includes('"n":3')));

  bidi.ws.close(1000);
  uni.ws.close(1000);
  const [code] = await bidi.closed;
  assert.equal(code, 1000);
});
