// With `admin` off (the default, as in tests/config/conformance.json) none of the admin web
// UI's paths exist: 404, not a page, a login or an API.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ROTOR_URL } from './lib.mjs';

describe('admin web UI off', () => {
  for (const [method, path, body] of [
    ['GET', '/', undefined],
    ['POST', '/admin/auth', 'password=x'],
    ['POST', '/admin/api', '{"method":"info","params":{}}'],
  ]) {
    it(`${method} ${path} is 404`, async () => {
      const res = await fetch(`${ROTOR_URL}${path}`, { method, body, headers: { authorization: 'token 1.AAAA' } });
      assert.equal(res.status, 404);
      await res.text();
    });
  }
});
