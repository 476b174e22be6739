// WebSockets on the edge (hibernation API): a bidirectional JSON client and a uni client keep
// their sessions through an idle spell longer than the runtime's eviction window (~10 s), so
// publications and commands still reach them. Needs a global WebSocket (Node 22: edge/test.sh
// runs this directory with the Node that edge/setup.sh installs).
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

test("WebSocket sessions outlive an idle spell and keep receiving", { timeout: 120_000, skip: typeof WebSocket === "undefined" && "needs Node 22 (global WebSocket)" }, async () => {
  // Pings rarer than the idle spell: nothing but the residency timer keeps the node object
  // in memory.
  const base = await start({ ROTOR_PING_INTERVAL: "60s" });
  const wsBase = base.replace(/^http/, "ws");
  const channel = named(`ws-${Date.now()}`);
  const user = (sub) => token({ sub }, config.token_hmac_secret_key);

  const bidi = await open(`${wsBase}/connection/websocket`);
  bidi.ws.send(JSON.stringify({ id: 1, connect: { token: user("b1") } }));
  const connect = JSON.parse(await until("connect reply", () => bidi.messages.find((m) => m.includes('"id":1'))));
  assert.ok(connect.connect.client, JSON.stringify(connect));
  bidi.ws.send(JSON.stringify({ id: 2, subscribe: { channel } }));
  await until("subscribe reply", () => bidi.messages.find((m) => m.includes('"id":2')));
  // Answer server pings, as SDKs do.
  bidi.ws.addEventListener("message", (e) => {
    if (e.data === "{}") bidi.ws.send("{}");
  });

  const uni = await open(`${wsBase}/connection/uni_websocket`);
  uni.ws.send(JSON.stringify({ token: user("u1"), subs: { [channel]: {} } }));
  await until("uni connect push", () => uni.messages.find((m) => m.includes('"connect"')));

  await sleep(25_000); // idle: well past the runtime's eviction of idle objects (~10-15 s locally)

  const res = await publish(base, channel, { after: "idle" });
  assert.equal(res.offset, 1);
  await until("publication on the bidirectional socket", () => bidi.messages.find((m) => m.includes('"after":"idle"')));
  await until("publication on the uni socket", () => uni.messages.find((m) => m.includes('"after":"idle"')));
  // The same session still holds its subscription: subscribing again is refused with 105.
  bidi.ws.send(JSON.stringify({ id: 3, subscribe: { channel } }));
  const again = JSON.parse(await until("subscribe reply", () => bidi.messages.find((m) => m.includes('"id":3'))));
  assert.equal(again.error?.code, 105, JSON.stringify(again));

  bidi.ws.close(1000);
  uni.ws.close(1000);
  const [code] = await bidi.closed;
  assert.equal(code, 1000);
});
