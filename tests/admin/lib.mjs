// Shared by the admin UI tests: the admin config's secrets (tests/config/admin.json, or
// ROTOR_ADMIN_CONFIG), admin tokens made the way rotor makes them (to forge and expire them),
// and the admin endpoints.
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const sdk = await import(join(here, '..', 'sdk', 'lib.mjs'));
export const { ROTOR_URL } = sdk;

const config = JSON.parse(readFileSync(process.env.ROTOR_ADMIN_CONFIG || join(here, '..', 'config', 'admin.json'), 'utf8'));
export const PASSWORD = config.admin_password;
export const ADMIN_SECRET = config.admin_secret;

/** `<expiry>.<HMAC-SHA256("rotor-admin:" + expiry)>`, as `shared::admin::issue_token`. */
export function adminToken(expirySecs, secret = ADMIN_SECRET) {
  const tag = createHmac('sha256', secret).update(`rotor-admin:${expirySecs}`).digest('base64url');
  return `${expirySecs}.${tag}`;
}

export function login(password, type = 'form') {
  const body = type === 'json' ? JSON.stringify({ password }) : new URLSearchParams({ password }).toString();
  const contentType = type === 'json' ? 'application/json' : 'application/x-www-form-urlencoded';
  return fetch(`${ROTOR_URL}/admin/auth`, { method: 'POST', headers: { 'content-type': contentType }, body });
}

/** Logs in, waiting out a slow-down left by an earlier test. */
export async function loginToken() {
  for (let attempt = 0; attempt < 5; attempt++) {
    const res = await login(PASSWORD);
    if (res.status === 200) return (await res.json()).token;
    if (res.status !== 429) throw new Error(`login: ${res.status} ${await res.text()}`);
    await sdk.sleep(1000 * Number(res.headers.get('retry-after') || 1) + 100);
  }
  throw new Error('login: still slowed down');
}

export function adminApi(token, method, params = {}, raw) {
  const headers = { 'content-type': 'application/json' };
  if (token !== undefined) headers.authorization = `token ${token}`;
  const body = raw ?? JSON.stringify({ method, params });
  return fetch(`${ROTOR_URL}/admin/api`, { method: 'POST', headers, body });
}
