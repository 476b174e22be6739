// Durability of the edge: a channel's history, epoch and recent idempotency keys survive a
// restart of `wrangler dev` with the same --persist-to directory, and a client that recovers
// after the restart gets the publications it missed with recovered:true.
//
// Starts and stops its own `wrangler dev` (edge/dev.sh) on a free loopback port, with the
// configuration of tests/config/conformance.json (sdk.json until that exists).
// Needs edge/setup.sh and a build (edge/build.sh); edge/test.sh does both.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { token, uniStream, start, stop, config, channel as named } from "./lib.mjs";

after(stop);

async function publish(base, channel, data, extra = {}) {
  const r = await fetch(`${base}/api/publish`, {
    method: "POST",
    headers: { "x-api-key": config.api_key },
    body: JSON.stringify({ channel, data, ...extra }),
  });
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.ok(body.result, JSON.stringify(body));
  return body.result;
}

const user = (sub) => token({ sub }, config.token_hmac_secret_key);

test("history and epoch survive a restart; a client recovers what it missed", { timeout: 120_000 }, async () => {
  const channel = named(`durable-${Date.now()}`);
  let base = await start();

  const first = await uniStream({ token: user("u1"), subs: { [channel]: {} } }, base);
  const connect = await first.next((p) => p.connect);
  const sub = connect.connect.subs[channel];
  assert.ok(sub.recoverable && sub.epoch, JSON.stringify(connect));
  const p1 = await publish(base, channel, { n: 1 });
  assert.equal(p1.offset, 1);
  assert.equal(p1.epoch, sub.epoch);
  await first.next((p) => p.pub?.offset === 1);
  await first.close(); // the client goes away having seen offset 1
  await publish(base, channel, { n: 2 });
  const p3 = await publish(base, channel, { n: 3 }, { idempotency_key: `k-${channel}` });

  await stop();
  base = await start();

  // A publish retried after the restart with its idempotency key is answered, not repeated.
  assert.deepEqual(await publish(base, channel, { n: 3 }, { idempotency_key: `k-${channel}` }), p3);
  const p4 = await publish(base, channel, { n: 4 });
  assert.deepEqual(p4, { offset: 4, epoch: sub.epoch }, "the stream goes on where it was");

  const back = await uniStream({ token: user("u1"), subs: { [channel]: { recover: true, epoch: sub.epoch, offset: 1 } } }, base);
  const again = (await back.next((p) => p.connect)).connect.subs[channel];
  assert.equal(again.recovered, true, JSON.stringify(again));
  assert.equal(again.epoch, sub.epoch);
  assert.deepEqual(
    again.publications.map((p) => [p.offset, p.data.n]),
    [[2, 2], [3, 3], [4, 4]],
  );
  // And it is live again.
  await publish(base, channel, { n: 5 });
  const live = await back.next((p) => p.pub);
  assert.equal(live.pub.offset, 5);
  await back.close();
});
