// The admin endpoints' answers to bad input, over HTTP: a wrong password is 401 and repeated
// ones are slowed (429 + Retry-After, even for the right password), expired, forged and missing
// admin tokens are 401, garbage bodies 400. Runs against rotor with tests/config/admin.json
// (tests/admin/run.sh natively, edge/test.sh under wrangler dev).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ROTOR_URL, PASSWORD, ADMIN_SECRET, adminToken, login, loginToken, adminApi, sdk } from './lib.mjs';

describe('admin endpoints', () => {
  it('serves the page at /', async () => {
    const res = await fetch(`${ROTOR_URL}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/html/);
    assert.match(res.headers.get('content-security-policy'), /default-src 'none'/);
    const html = await res.text();
    assert.match(html, /<title>rotor admin<\/title>/);
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=/, 'the page loads nothing from elsewhere');
  });

  it('answers a wrong password with 401, slows repeats, then lets the right one in', async () => {
    await loginToken(); // a clean slate for this address
    const wrong = await login('not-the-password');
    assert.equal(wrong.status, 401);
    assert.equal(await wrong.text(), 'wrong password');
    // Right away again: slowed, even with the right password.
    const again = await login(PASSWORD);
    assert.equal(again.status, 429);
    const wait = Number(again.headers.get('retry-after'));
    assert.ok(wait >= 1, `Retry-After: ${wait}`);
    assert.match(await again.text(), /too many failed logins/);
    await sdk.sleep(wait * 1000 + 100);
    // The second failure in a row doubles the wait.
    assert.equal((await login('still-wrong', 'json')).status, 401);
    const slower = await login(PASSWORD);
    assert.equal(slower.status, 429);
    assert.ok(Number(slower.headers.get('retry-after')) >= 2, slower.headers.get('retry-after'));
    const token = await loginToken();
    assert.match(token, /^\d+\.[A-Za-z0-9_-]+$/);
  });

  it('refuses a body without a password with 400', async () => {
    const res = await fetch(`${ROTOR_URL}/admin/auth`, { method: 'POST', body: 'user=x' });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /password/);
    assert.equal((await fetch(`${ROTOR_URL}/admin/auth`)).status, 405);
  });

  it('runs API calls with a valid token', async () => {
    const token = await loginToken();
    const res = await adminApi(token, 'info');
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.ok(body.result.nodes.length >= 1, JSON.stringify(body));
    const unknown = await (await adminApi(token, 'no_such_method')).json();
    assert.equal(unknown.error.code, 104);
    const garbage = await adminApi(token, '', {}, 'not json');
    assert.equal(garbage.status, 400);
    assert.match(await garbage.text(), /method/);
  });

  it('refuses missing, forged and expired admin tokens with 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    const good = adminToken(now + 600);
    assert.equal((await adminApi(good, 'info')).status, 200, 'a token made with admin_secret works');
    const forged = [
      ['missing', undefined],
      ['empty', ''],
      ['garbage', 'hello'],
      ['other secret', adminToken(now + 600, `${ADMIN_SECRET}-not`)],
      ['expiry changed', `${now + 99999}.${good.split('.')[1]}`],
      ['expired', adminToken(now - 1)],
      ['huge', `${'9'.repeat(30)}.${'A'.repeat(5000)}`],
    ];
    for (const [what, token] of forged) {
      const res = await adminApi(token, 'info');
      assert.equal(res.status, 401, what);
      await res.text();
    }
    const expired = await adminApi(adminToken(now - 1), 'info');
    assert.match(await expired.text(), /expired/);
  });
});
