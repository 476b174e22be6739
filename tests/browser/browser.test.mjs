// tests/browser/index.html in real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core): the page loads the SDK's browser build, connects to rotor over WebSocket
// and over HTTP streaming (cross-origin: the page is served from another port, so CORS and
// allowed_origins are exercised), subscribes, and shows publications sent through the API.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = join(here, '..', 'sdk');
const { apiPublish, connToken, uniq, ROTOR_URL } = await import(join(sdkDir, 'lib.mjs'));


/** The page and the SDK's browser bundle, nothing else. */
function staticServer(host = '127.0.0.1') {
  const files = {
    '/index.html': [join(here, 'index.html'), 'text/html; charset=utf-8'],
    '/centrifuge.js': [join(sdkDir, 'node_modules', 'centrifuge', 'dist', 'centrifuge.js'), 'application/javascript'],
  };
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const entry = files[path === '/' ? '/index.html' : path];
    if (!entry) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': entry[1] }).end(await readFile(entry[0]));
  });
  return new Promise((resolve) => server.listen(0, host, () => resolve(server)));
}

describe('browser page (headless Chromium)', () => {
  let server, browser, chromium, pageUrl;
  // The same page from an origin that tests/config/sdk.json does not allow.
  let foreign, foreignUrl;
  const consoleLines = [];

  before(async () => {
    server = await staticServer();
    pageUrl = `http://127.0.0.1:${server.address().port}/index.html`;
    foreign = await staticServer('127.0.0.2');
    foreignUrl = `http://127.0.0.2:${foreign.address().port}/index.html`;
    chromium = await launchChromium();
    browser = chromium.context;
  });

  after(async () => {
    await chromium?.close();
    for (const s of [server, foreign]) await new Promise((r) => (s ? s.close(r) : r()));
  });

  async function openPage(query, url = pageUrl) {
    const page = await browser.newPage();
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
    await page.goto(`${url}?${new URLSearchParams(query)}`);
    return page;
  }

  async function expectText(page, selector, pattern, what) {
    try {
      await page.waitForFunction(
        ([sel, src]) => new RegExp(src).test(document.querySelector(sel)?.textContent || ''),
        [selector, pattern.source],
        { timeout: 10000 },
      );
    } catch (e) {
      const text = await page.locator(selector).textContent().catch(() => '?');
      assert.fail(`${what}: ${selector} shows ${JSON.stringify(text)}\nbrowser console:\n${consoleLines.join('\n')}`);
    }
  }

  it('shows a publication over WebSocket and over HTTP streaming', async () => {
    const channel = uniq('browser');
    const page = await openPage({ server: ROTOR_URL, token: connToken(uniq('web')), channel });
    try {
      for (const t of ['websocket', 'http_stream']) {
        await expectText(page, `#state-${t}`, new RegExp(`^connected over ${t}$`), `${t} connection`);
        await expectText(page, `#sub-${t}`, /^subscribed$/, `${t} subscription`);
      }
      await apiPublish(channel, { text: 'hello browser' });
      for (const t of ['websocket', 'http_stream']) {
        await expectText(page, `#log-${t}`, /"text":"hello browser"/, `${t} publication`);
      }
      if (process.env.ROTOR_SCREENSHOT) await page.screenshot({ path: process.env.ROTOR_SCREENSHOT });
    } finally {
      await page.close();
    }
  });

  for (const t of ['websocket', 'http_stream']) {
    it(`works with only ${t} (transport=${t})`, async () => {
      const channel = uniq('browser');
      const page = await openPage({ server: ROTOR_URL, token: connToken(uniq('web')), channel, transport: t });
      try {
        await expectText(page, `#sub-${t}`, /^subscribed$/, `${t} subscription`);
        await apiPublish(channel, { n: 1 });
        await apiPublish(channel, { n: 2 });
        await expectText(page, `#log-${t}`, /\{"n":1\}\{"n":2\}/, `${t} publications in order`);
        // The client → server leg from the browser (for HTTP streaming: a CORS POST to /emulation).
        await page.evaluate(async ([tr, ch]) => {
          await window.clients[tr].getSubscription(ch).publish({ from: 'browser' });
        }, [t, channel]);
        await expectText(page, `#log-${t}`, /"from":"browser"/, `${t} publication from the page`);
      } finally {
        await page.close();
      }
    });
  }

  it('refuses a page from an origin outside allowed_origins', async () => {
    const channel = uniq('browser');
    const page = await openPage({ server: ROTOR_URL, token: connToken(uniq('web')), channel }, foreignUrl);
    try {
      // Both clients try (and keep retrying); neither may get through.
      await expectText(page, '#state-websocket', /^connecting$/, 'websocket trying');
      await expectText(page, '#state-http_stream', /^connecting$/, 'http_stream trying');
      await page.waitForTimeout(3000);
      await apiPublish(channel, { must: 'not arrive' });
      await page.waitForTimeout(500);
      for (const t of ['websocket', 'http_stream']) {
        assert.doesNotMatch(await page.locator(`#state-${t}`).textContent(), /connected over/, `${t} must not connect`);
        assert.equal(await page.locator(`#log-${t} li`).count(), 0);
      }
    } finally {
      await page.close();
    }
  });
});
