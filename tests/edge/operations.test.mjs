// Operating rotor at the edge (issue 14): `/metrics` adds up every node object's figures
// under Centrifugo's names, behind the API key; `/health` answers 200 while a node object
// answers a round trip and 503 once it stops (the `TEST_NODE_STALL_MS` hook makes node-0
// stop answering that long after it started). Runs its own `wrangler dev`.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { token, start, stop, config, sleep, uniStream } from "./lib.mjs";

after(stop);

const STALL_MS = 12_000;

function figure(text, series) {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    if (line.slice(0, i) === series) return Number(line.slice(i + 1));
  }
  return undefined;
}

test("metrics merge the node objects; health turns 503 when a node object stops answering", { timeout: 180_000 }, async () => {
  const base = await start({ ROTOR_PROMETHEUS: "true", TEST_NODE_STALL_MS: String(STALL_MS) });
  const started = Date.now();
  assert.equal((await fetch(`${base}/health`)).status, 200);

  // Behind the API key at the edge.
  assert.equal((await fetch(`${base}/metrics`)).status, 401);
  assert.equal((await fetch(`${base}/metrics`, { headers: { "x-api-key": "wrong" } })).status, 401);
  assert.equal((await fetch(`${base}/metrics?api_key=wrong`)).status, 401);

  const user = (sub) => ({ token: token({ sub }, config.token_hmac_secret_key) });
  const streams = [];
  for (const sub of ["m1", "m2", "m1"]) {
    const s = await uniStream(user(sub), base);
    await s.next((p) => p.connect);
    streams.push(s);
  }
  const scrape = async () => {
    const r = await fetch(`${base}/metrics`, { headers: { "x-api-key": config.api_key } });
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /^text\/plain/);
    return r.text();
  };
  const text = await scrape();
  assert.equal(figure(text, "centrifugo_node_num_clients"), 3, text);
  assert.equal(figure(text, 'centrifugo_transport_connect_count{transport="uni_http_stream"}'), 3, text);
  assert.ok(figure(text, "centrifugo_node_num_nodes") >= 1, text);
  assert.equal(figure(text, 'centrifugo_node_build{version="0.1.0"}'), 1, text);
  assert.match(text, /# TYPE centrifugo_client_command_duration_seconds summary/);
  for (const s of streams) await s.close();

  // Polled, so node-0 stays awake (hibernation would start a new life, and the hook with it).
  let last = 200;
  while (Date.now() - started < STALL_MS + 20_000) {
    const t0 = Date.now();
    const r = await fetch(`${base}/health`);
    last = r.status;
    if (last === 503) {
      assert.match(await r.text(), /did not answer within 1 s/);
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
      break;
    }
    assert.equal(last, 200);
    assert.ok(Date.now() - started < STALL_MS + 5_000, "still 200 well after the hook's time");
    await sleep(500);
  }
  assert.equal(last, 503);

  // A node object that does not answer leaves out its figures; the scrape is still answered.
  const t0 = Date.now();
  const r = await fetch(`${base}/metrics`, { headers: { "x-api-key": config.api_key }, signal: AbortSignal.timeout(15_000) });
  assert.equal(r.status, 200);
  assert.match(await r.text(), /centrifugo_node_num_clients /);
  assert.ok(Date.now() - t0 < 5000, `scrape took ${Date.now() - t0} ms`);
});
