// The application backend of the proxy suite: a real HTTP server on free loopback ports that
// answers rotor's proxy calls (connect, refresh, subscribe, publish, rpc, sub_refresh) the way
// a test asks for, and records every call (kind, headers, body) for the tests to assert on.
//
//   node tests/proxy/backend.mjs      prints one line of JSON: {"proxy": <port>, "control": <port>}
//
// Proxy port: POST /connect, /refresh, /subscribe, /publish, /rpc, /sub_refresh. What comes
// back depends on the request: the connect `data.mode` or cookie, the rpc `method`, the
// subscribe/publish channel name (a part after the namespace: `ok`, `error`, `disconnect`,
// `slow`, `malformed`, `status500`, `badcode`, `huge`, `drop`; hostile ones: `drip` (a valid
// answer a byte every 300 ms), `endless` (a chunked body that never ends), `gzipbomb` (16 MiB
// of spaces, gzipped), `redirect` (307 to /followed, which would answer a result)). Also GET /page (a page on the
// backend's origin that sets a session cookie and opens a plain EventSource to rotor).
// Control port: GET /calls (every call so far), POST /down (stop listening and drop every
// connection: calls are refused), POST /up (listen again on the same port).
import http from 'node:http';
import zlib from 'node:zlib';

const calls = [];
const MAX_CALLS = 10000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function mode(kind, body) {
  switch (kind) {
    case 'connect':
      return body.data?.mode ?? 'ok';
    case 'rpc':
      return body.method;
    case 'subscribe':
    case 'publish':
    case 'sub_refresh':
      return String(body.channel ?? '').split(':').pop().split('-')[0];
    default:
      return 'ok';
  }
}

function cookieUser(headers) {
  const m = /(?:^|;\s*)session=([A-Za-z0-9_-]+)/.exec(headers.cookie ?? '');
  return m ? m[1] : null;
}

function result(kind, body, headers) {
  switch (kind) {
    case 'connect': {
      const user = body.data?.user ?? cookieUser(headers) ?? '';
      const r = { user, info: { name: user || 'anonymous' }, data: { welcome: user }, meta: { backend: 'meta' } };
      if (body.data?.expire_in) r.expire_at = Math.floor(Date.now() / 1000) + body.data.expire_in;
      if (body.data?.channels) r.channels = body.data.channels;
      return r;
    }
    case 'refresh':
      return { expire_at: Math.floor(Date.now() / 1000) + 60, info: { refreshed: true } };
    case 'rpc':
      return { data: { echo: body.data ?? null, user: body.user, meta: body.meta ?? null } };
    case 'publish':
      return body.data?.rewrite ? { data: { rewritten: true } } : {};
    case 'subscribe': {
      const r = { info: { chan: 'info' }, data: { granted: true } };
      if (mode(kind, body) === 'expiring') r.expire_at = Math.floor(Date.now() / 1000) + 2;
      return r;
    }
    case 'sub_refresh':
      return { expire_at: Math.floor(Date.now() / 1000) + 60 };
    default:
      return {};
  }
}

async function answer(kind, body, req, res) {
  const m = mode(kind, body);
  const json = (status, v) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(typeof v === 'string' ? v : JSON.stringify(v));
  };
  switch (m) {
    case 'error':
      return json(200, { error: { code: 1000, message: 'custom error' } });
    case 'disconnect':
      return json(200, { disconnect: { code: 4501, reason: 'go away' } });
    case 'slow':
      await sleep(2500);
      return json(200, { result: result(kind, body, req.headers) });
    case 'malformed':
      return json(200, '{"result": {"user": ');
    case 'status500':
      return json(500, { result: result(kind, body, req.headers) });
    case 'badcode':
      return json(200, { error: { code: 3000, message: 'not an error code' } });
    case 'huge':
      return json(200, { result: { data: 'x'.repeat(2 * 1024 * 1024) } });
    case 'drop':
      return req.socket.destroy();
    case 'drip': {
      res.writeHead(200, { 'content-type': 'application/json' });
      for (const ch of JSON.stringify({ result: result(kind, body, req.headers) })) {
        if (res.destroyed) return;
        res.write(ch);
        await sleep(300);
      }
      return res.end();
    }
    case 'endless': {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 32);
      while (!res.destroyed) {
        if (!res.write(chunk)) await new Promise((r) => { res.once('drain', r); res.once('close', r); });
      }
      return;
    }
    case 'gzipbomb': {
      const bomb = zlib.gzipSync(Buffer.alloc(16 * 1024 * 1024, 32));
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      return res.end(bomb);
    }
    case 'redirect':
      res.writeHead(307, { location: '/followed' });
      return res.end();
    case 'anonymous_refused':
      return json(200, { disconnect: { code: 4403, reason: 'login first' } });
    default:
      if (kind === 'connect' && body.data?.need_cookie && !cookieUser(req.headers)) {
        return json(200, { disconnect: { code: 4403, reason: 'login first' } });
      }
      return json(200, { result: result(kind, body, req.headers) });
  }
}

function page(query) {
  const rotor = query.get('rotor');
  return `<!doctype html><meta charset="utf-8"><title>cookie EventSource</title>
<script>
  window.events = [];
  window.streamed = null;
  const rotor = ${JSON.stringify(rotor)};
  // A plain EventSource: no token, no header of our own; the browser sends the session cookie.
  const es = new EventSource(rotor + '/connection/uni_sse', { withCredentials: true });
  es.onmessage = (e) => window.events.push(JSON.parse(e.data));
  es.onerror = () => window.events.push({ error: true });
  // The same through uni HTTP streaming with fetch.
  fetch(rotor + '/connection/uni_http_stream', { method: 'POST', credentials: 'include', body: '{}' })
    .then(async (r) => {
      const reader = r.body.getReader();
      const { value } = await reader.read();
      window.streamed = JSON.parse(new TextDecoder().decode(value).split('\\n')[0]);
      reader.cancel();
    })
    .catch((e) => { window.streamed = { error: String(e) }; });
</script>`;
}

const proxy = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'GET' && url.pathname === '/page') {
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'set-cookie': `session=${url.searchParams.get('user') ?? 'alice'}; Path=/; SameSite=Lax`,
    });
    return res.end(page(url.searchParams));
  }
  const kind = url.pathname.slice(1);
  let chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400);
      return res.end('not JSON');
    }
    if (calls.length < MAX_CALLS) calls.push({ kind, headers: req.headers, body, at: Date.now() });
    answer(kind, body, req, res).catch(() => res.destroy());
  });
});
proxy.keepAliveTimeout = 30000;

let port = 0;
const control = http.createServer((req, res) => {
  const done = (v) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(v));
  };
  if (req.url === '/calls') return done(calls);
  if (req.url === '/down') {
    proxy.close();
    proxy.closeAllConnections();
    return done({ down: true });
  }
  if (req.url === '/up') return proxy.listen(port, '127.0.0.1', () => done({ up: true }));
  res.writeHead(404);
  res.end();
});

proxy.listen(0, '127.0.0.1', () => {
  port = proxy.address().port;
  control.listen(0, '127.0.0.1', () => {
    console.log(JSON.stringify({ proxy: port, control: control.address().port }));
  });
});
process.on('SIGTERM', () => process.exit(0));
