// The admin web UI in real headless Chromium (Debian's, through playwright-core as in
// tests/browser): log in with the password, see the node figures, watch a channel in the live
// view, publish JSON to it and see the publication reach a connected SDK client (and the live
// view), see the channel and the client's presence listed, the history, then disconnect the
// user. Saves a screenshot and prints its path (ROTOR_ADMIN_SCREENSHOT names the file).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium } from '../browser/chromium.mjs';
import { ROTOR_URL, PASSWORD, sdk } from './lib.mjs';

const { client, closeClient, hs256, nextEvent, uniq } = sdk;
const variant = { transport: 'websocket', protobuf: false };

describe('admin web UI (headless Chromium)', () => {
  let chromium, page;
  const consoleLines = [];

  before(async () => {
    chromium = await launchChromium('rotor-admin-chromium');
    page = await chromium.context.newPage();
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  });

  after(async () => {
    await chromium?.close();
  });

  it('logs in, publishes to a subscriber, lists channel and presence, disconnects the user', async (t) => {
    const user = uniq('alice');
    const channel = uniq('news');
    // A client of the application: subscribes with a subscription token (the config lets no
    // client subscribe on its own, as in production).
    const alice = client(variant, { user });
    const sub = alice.c.newSubscription(channel, {
      getToken: async () => hs256({ sub: user, channel, exp: Math.floor(Date.now() / 1000) + 3600 }),
    });
    const received = [];
    sub.on('publication', (ctx) => received.push(ctx.data));
    const subscribed = nextEvent(sub, 'subscribed');
    alice.c.connect();
    sub.subscribe();
    await subscribed;

    try {
      // In the login form: a wrong password shows the 401, the right one gets in (after the
      // slow-down the wrong one earned).
      await page.goto(`${ROTOR_URL}/`);
      await page.locator('#password').fill('wrong');
      await page.locator('#login').click();
      await page.locator('#login-error', { hasText: '401' }).waitFor({ timeout: 10000 });
      await sdk.sleep(1100);
      await page.locator('#password').fill(PASSWORD);
      await page.locator('#login').click();
      await page.locator('#app').waitFor({ state: 'visible', timeout: 10000 });

      // Node figures (one row per node; per node object at the edge).
      await page.locator('#nodes tr').first().waitFor({ timeout: 10000 });
      const nodes = await page.locator('#nodes tr').count();
      if (process.env.TEST_NODE_COUNT) assert.equal(nodes, Number(process.env.TEST_NODE_COUNT));
      else assert.ok(nodes >= 1);

      // The live view subscribes through rotor itself.
      await page.locator('#live-channel').fill(channel);
      await page.locator('#live-watch').click();
      await page.locator('#live-status', { hasText: 'watching' }).waitFor({ timeout: 10000 });

      // Publish JSON data.
      const text = `hello from the admin UI ${Date.now()}`;
      await page.locator('#pub-channel').fill(channel);
      await page.locator('#pub-data').fill(JSON.stringify({ text }));
      await page.locator('#publish').click();
      await page.locator('#pub-result', { hasText: 'published' }).waitFor({ timeout: 10000 });
      await sdk.until(() => received.some((d) => d.text === text), 'the publication at the SDK client');
      await page.locator('#live-log li', { hasText: text }).waitFor({ timeout: 10000 });

      // The channel with its subscribers (alice and the live view).
      await page.locator('#ch-refresh').click();
      const row = page.locator('#channels tr', { hasText: channel });
      await row.waitFor({ timeout: 10000 });
      assert.equal((await row.locator('td').nth(1).textContent()).trim(), '2');

      // Presence and history of the channel.
      await page.locator('#ch-channel').fill(channel);
      await page.locator('#presence-btn').click();
      await page.locator('#presence tr', { hasText: user }).waitFor({ timeout: 10000 });
      await page.locator('#presence tr', { hasText: 'rotor-admin' }).waitFor({ timeout: 10000 });
      await page.locator('#presence-btn').click(); // keep the table in the screenshot
      const shot = process.env.ROTOR_ADMIN_SCREENSHOT
        || join(tmpdir(), `rotor-admin-ui-${new URL(ROTOR_URL).port}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`admin UI screenshot: ${shot}`);
      t.diagnostic(`screenshot: ${shot}`);
      await page.locator('#history-btn').click();
      await page.locator('#history', { hasText: text }).waitFor({ timeout: 10000 });

      // Bad JSON is caught on the page.
      await page.locator('#pub-data').fill('{nope');
      await page.locator('#publish').click();
      await page.locator('#pub-result', { hasText: 'not JSON' }).waitFor({ timeout: 5000 });

      // Disconnect the user: alice's client is told so.
      const gone = nextEvent(alice.c, 'disconnected', () => true, 10000);
      await page.locator('#dc-user').fill(user);
      await page.locator('#disconnect').click();
      await page.locator('#dc-result', { hasText: `disconnected ${user}` }).waitFor({ timeout: 10000 });
      const ctx = await gone;
      assert.equal(ctx.code, 3503, JSON.stringify(ctx));
    } catch (e) {
      console.log(`page console:\n${consoleLines.join('\n')}`);
      throw e;
    } finally {
      await closeClient(alice.c);
    }
  });

  it('goes back to the login form when the token is no longer accepted', async () => {
    await page.evaluate(() => sessionStorage.setItem('rotor-admin-token', '1.AAAA'));
    await page.goto(`${ROTOR_URL}/`);
    await page.locator('#login-box').waitFor({ state: 'visible', timeout: 10000 });
    assert.equal(await page.locator('#app').isVisible(), false);
  });
});
