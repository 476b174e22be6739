#!/usr/bin/env bash
# The centrifuge JS SDK (npm, unmodified) against rotor's native server, in Node and in headless
# Chromium. Installs what it needs (idempotently), starts target/debug/rotor with
# tests/config/sdk.json on a free loopback port, runs `node --test` over tests/sdk and
# tests/browser, and stops the server. Exit code: node's (non-zero when a test failed).
#
#   tests/sdk/run.sh                         every SDK and browser test
#   tests/sdk/run.sh tests/sdk/ping.test.mjs just some files (paths from the repo root)
#
# Environment: ROTOR_BIN (default target/debug/rotor, built when missing), CHROMIUM_PATH
# (default /usr/bin/chromium), ROTOR_TEST_REPORTER (default spec).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
config="$root/tests/config/sdk.json"
cd "$root"

# ---- dependencies

stamp="$here/node_modules/.rotor-lock-sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "sdk tests: npm ci in tests/sdk" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

if [ -z "${CHROMIUM_PATH:-}" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    echo "sdk tests: installing Debian's chromium" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  CHROMIUM_PATH="$(command -v chromium)"
fi
export CHROMIUM_PATH

bin="${ROTOR_BIN:-$root/target/debug/rotor}"
if [ ! -x "$bin" ]; then
  echo "sdk tests: building rotor (cargo build -p native)" >&2
  cargo build -q -p native
fi

# ---- server

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
port="$(free_port)"
closed_port="$(free_port)" # nothing listens here: the fallback tests' refusing WebSocket
log="$(mktemp -t rotor-sdk-server.XXXXXX.log)"

"$bin" -c "$config" --address 127.0.0.1 --port "$port" >"$log" 2>&1 &
server_pid=$!
cleanup() {
  local rc=$?
  if kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    echo "---- rotor server log (last 40 lines of $log)" >&2
    tail -n 40 "$log" >&2 || true
  else
    rm -f "$log"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export ROTOR_URL="http://127.0.0.1:$port"
export ROTOR_CLOSED_PORT="$closed_port"
ROTOR_API_KEY="$(node -p 'require(process.argv[1]).api_key' "$config")"
ROTOR_HMAC_SECRET="$(node -p 'require(process.argv[1]).token_hmac_secret_key' "$config")"
export ROTOR_API_KEY ROTOR_HMAC_SECRET

node -e '
  const url = process.argv[1] + "/health";
  const deadline = Date.now() + 20000;
  (async function poll() {
    try { if ((await fetch(url)).ok) return; } catch {}
    if (Date.now() > deadline) { console.error("rotor did not start on " + url); process.exit(1); }
    setTimeout(poll, 100);
  })();
' "$ROTOR_URL"
kill -0 "$server_pid" # still running (not someone else answering on the port)
echo "sdk tests: rotor (pid $server_pid) on $ROTOR_URL, config $config" >&2

# ---- tests

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=("$here"/*.test.mjs "$root"/tests/browser/*.test.mjs)
fi
node --test --test-concurrency=4 --test-reporter="${ROTOR_TEST_REPORTER:-spec}" "${files[@]}"
