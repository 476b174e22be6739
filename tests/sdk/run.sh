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
# (default /usr/bin/chromium), ROTOR_TEST_REPORTER (default spec); ROTOR_URL and ROTOR_API_KEY
# to test a server that is already running (tests/server.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
config="$root/tests/config/sdk.json"
cd "$root"

# ---- dependencies

"$root/tests/npm-ci.sh" "$here"

if [ -z "${CHROMIUM_PATH:-}" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    echo "sdk tests: installing Debian's chromium" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  CHROMIUM_PATH="$(command -v chromium)"
fi
export CHROMIUM_PATH

# ---- server

rotor_config="$config"
# shellcheck source=tests/server.sh
. "$root/tests/server.sh"
# Nothing listens here: the fallback tests' refusing WebSocket.
ROTOR_CLOSED_PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
export ROTOR_CLOSED_PORT

# ---- tests

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=("$here"/*.test.mjs "$root"/tests/browser/*.test.mjs)
fi
node --test --test-concurrency=4 --test-reporter="${ROTOR_TEST_REPORTER:-spec}" "${files[@]}"
