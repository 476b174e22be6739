// Helpers for the edge checks: tokens, API calls, stream readers. Node 20+, no dependencies.
import { createHmac } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const BASE = process.env.ROTOR_URL ?? "http://127.0.0.1:8787";
export const API_KEY = process.env.ROTOR_API_KEY ?? "";
export const SECRET = process.env.ROTOR_HMAC_SECRET ?? "";

const b64url = (b) => Buffer.from(b).toString("base64url");

export function token(claims, secret = SECRET) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

export async function api(method, params, base = BASE) {
  const r = await fetch(`${base}/api/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": API_KEY },
    body: JSON.stringify(params),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`api ${method}: ${r.status} ${text}`);
  return JSON.parse(text);
}

/** Opens a uni HTTP stream and collects its NDJSON pushes. */
export async function uniStream(connect, base = BASE) {
  const ac = new AbortController();
  const r = await fetch(`${base}/connection/uni_http_stream`, {
    method: "POST",
    body: JSON.stringify(connect),
    signal: ac.signal,
  });
  const pushes = [];
  const waiters = [];
  const done = (async () => {
    let buf = "";
    const dec = new TextDecoder();
    try {
      for await (const chunk of r.body) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (line) pushes.push(JSON.parse(line));
          for (const w of [...waiters]) w();
        }
      }
    } catch {}
  })();
  return {
    status: r.status,
    pushes,
    /** Resolves with the first push (after `from`) matching `pred`. */
    async next(pred, timeoutMs = 5000, from = 0) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = pushes.slice(from).find(pred);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`timeout; got ${JSON.stringify(pushes)}`);
        await new Promise((res) => {
          waiters.push(res);
          setTimeout(res, 50);
        });
        waiters.length = 0;
      }
    },
    close() {
      ac.abort();
      return done;
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- a `wrangler dev` of our own (edge/dev.sh), configured like the conformance suite

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const configPath = [join(root, "tests/config/conformance.json"), join(root, "tests/config/sdk.json")].find(existsSync);
export const config = JSON.parse(readFileSync(configPath, "utf8"));
/** A channel clients may subscribe to by themselves under `config` (conformance: `chat:`). */
export const channel = (base) => ((config.namespaces ?? []).some((n) => n.name === "chat") ? `chat:${base}` : base);
const work = mkdtempSync(join(tmpdir(), "rotor-edge-test-"));
const envFile = join(work, "env");
const persist = join(work, "state");

let running = null;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/**
 * Starts `wrangler dev` (edge/dev.sh) on a free port with this test file's state dir and the
 * config file; `overrides` adds ROTOR_<KEY> variables (e.g. { ROTOR_PING_INTERVAL: "60s" }).
 */
export async function start(overrides = {}) {
  const lines = [`ROTOR_CONFIG_JSON='${JSON.stringify(config)}'`, ...Object.entries(overrides).map(([k, v]) => `${k}=${v}`)];
  writeFileSync(envFile, lines.join("\n") + "\n");
  const port = await freePort();
  const t0 = performance.now();
  const pid = Number(
    execFileSync(join(root, "edge/dev.sh"), [String(port), "--persist-to", persist, "--env-file", envFile], {
      env: { ...process.env, ROTOR_EDGE_PREBUILT: "1", ROTOR_EDGE_LOG: join(work, `wrangler-${port}.log`) },
    })
      .toString()
      .trim(),
  );
  const base = `http://127.0.0.1:${port}`;
  running = { pid, base };
  for (let i = 0; i < 1200; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) {
        console.log(`# wrangler dev ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        return base;
      }
    } catch {}
    await sleep(100);
  }
  throw new Error(`wrangler dev did not start: see ${work}`);
}

/** Stops the running `wrangler dev` (its whole process group). */
export async function stop() {
  if (!running) return;
  const { pid } = running;
  running = null;
  try {
    process.kill(-pid, "SIGTERM");
  } catch {}
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(-pid, 0);
    } catch {
      return;
    }
    await sleep(100);
  }
  try {
    process.kill(-pid, "SIGKILL");
  } catch {}
}


