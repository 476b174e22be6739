// Fan-out on the edge: publications reach subscribers on every node object, in order and
// without gaps, even when the API sends a burst of them at once (the channel object orders
// them; its per-node queues keep that order on the way to each node object).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { token, uniStream, start, stop, config, channel as named } from "./lib.mjs";

after(stop);

test("a burst of concurrent publishes reaches every subscriber in order", { timeout: 120_000 }, async () => {
  const base = await start();
  const channel = named(`burst-${Date.now()}`);
  // Connections land on node objects at random: enough of them to span several nodes.
  const clients = await Promise.all(
    Array.from({ length: 8 }, (_, i) => uniStream({ token: token({ sub: `f${i}` }, config.token_hmac_secret_key), subs: { [channel]: {} } }, base)),
  );
  for (const c of clients) await c.next((p) => p.connect);
  const n = 60;
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      fetch(`${base}/api/publish`, {
        method: "POST",
        headers: { "x-api-key": config.api_key },
        body: JSON.stringify({ channel, data: { i } }),
      }).then((r) => r.json()),
    ),
  );
  const offsets = results.map((r) => r.result.offset).sort((a, b) => a - b);
  assert.deepEqual(offsets, Array.from({ length: n }, (_, i) => i + 1), "every publish got its own offset");
  for (const c of clients) {
    await c.next((p) => p.pub?.offset === n, 10_000);
    const got = c.pushes.filter((p) => p.pub).map((p) => p.pub.offset);
    assert.deepEqual(got, offsets, "in order, no gaps, no duplicates");
    assert.ok(!c.pushes.some((p) => p.disconnect), JSON.stringify(c.pushes.find((p) => p.disconnect)));
  }
  console.log(`# ${n} publishes to ${clients.length} subscribers in ${(performance.now() - t0).toFixed(0)} ms`);
  await Promise.all(clients.map((c) => c.close()));
});
