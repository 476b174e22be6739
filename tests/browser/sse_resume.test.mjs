// Uni SSE resumes by itself: a plain EventSource in real headless Chromium, its stream cut by
// the server while publications go on; after the browser's automatic reconnect (Last-Event-ID)
// the page holds every publication exactly once, in order.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = join(here, '..', 'sdk');
const { api, apiPublish, connToken, uniq, ROTOR_URL } = await import(join(sdkDir, 'lib.mjs'));


describe('uni SSE resume in a browser (plain EventSource)', () => {
  let server, browser, chromium, pageUrl;

  before(async () => {
    server = createServer(async (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(await readFile(join(here, 'sse.html')));
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    pageUrl = `http://127.0.0.1:${server.address().port}/sse.html`;
    chromium = await launchChromium('rotor-chromium-sse');
    browser = chromium.context;
  });

  after(async () => {
    await chromium?.close();
    await new Promise((r) => (server ? server.close(r) : r()));
  });

  const waitFor = (page, fn, arg, what) =>
    page.waitForFunction(fn, arg, { timeout: 15000 }).catch(async (e) => {
      const state = await page.evaluate(() => ({ received: window.received, connects: window.connects.length }));
      assert.fail(`${what}: ${e.message}; page state ${JSON.stringify(state)}`);
    });

  it('keeps every publication exactly once, in order, across a server cut', async () => {
    const user = uniq('sse-user');
    const channel = uniq('sse-resume');
    const page = await browser.newPage();
    try {
      await page.goto(`${pageUrl}?${new URLSearchParams({ server: ROTOR_URL, token: connToken(user), channel })}`);
      await waitFor(page, () => window.connects.length === 1, undefined, 'first connect');
      for (let n = 1; n <= 3; n++) await apiPublish(channel, { n });
      await waitFor(page, () => window.received.length === 3, undefined, 'first three publications');

      // The server ends the stream; publications continue while the browser reconnects
      // (it waits `retry: 1000` ms before coming back with Last-Event-ID).
      await api('disconnect', { user, disconnect: { code: 3011, reason: 'force reconnect' } });
      for (let n = 4; n <= 8; n++) await apiPublish(channel, { n });

      await waitFor(page, () => window.connects.length === 2, undefined, 'automatic reconnect');
      for (let n = 9; n <= 10; n++) await apiPublish(channel, { n });
      await waitFor(page, () => window.received.length >= 10, undefined, 'all ten publications');
      await page.waitForTimeout(300); // nothing extra may follow

      const got = await page.evaluate(() => ({
        received: window.received,
        second: window.connects[1],
        errors: window.resumeErrors,
      }));
      assert.deepEqual(got.received, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      const sub = got.second.subs[channel];
      assert.equal(sub.was_recovering, true, JSON.stringify(sub));
      assert.equal(sub.recovered, true, JSON.stringify(sub));
      assert.deepEqual(got.errors, []);
      assert.equal(await page.locator('#recovered').textContent(), 'true');
    } finally {
      await page.close();
    }
  });
});
