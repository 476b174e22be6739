#!/usr/bin/env bash
# Proxies to the application backend, end to end: starts the test backend
# (tests/proxy/backend.mjs, a real HTTP server on free loopback ports), writes a rotor config
# pointing every proxy at it (tests/proxy/config.mjs), starts rotor with it (tests/server.sh)
# unless ROTOR_URL is set (the edge: edge/test.sh starts its own backend and wrangler and sets
# ROTOR_URL and ROTOR_PROXY_BACKEND), and runs `node --test tests/proxy/`, the headless
# Chromium cookie test included. Stops what it started.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
tests/npm-ci.sh tests/sdk
# Headless Chromium for the cookie EventSource test, as tests/sdk/run.sh installs it.
if [ -z "${CHROMIUM_PATH:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "proxy tests: installing Debian's chromium" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium)}"
work="$(mktemp -d -t rotor-proxy.XXXXXX)"
backend_pid=""
cleanup() {
  local rc=$?
  [ -n "$backend_pid" ] && kill "$backend_pid" 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

if [ -z "${ROTOR_PROXY_BACKEND:-}" ]; then
  node tests/proxy/backend.mjs >"$work/ports" &
  backend_pid=$!
  for _ in $(seq 1 100); do [ -s "$work/ports" ] && break; sleep 0.1; done
  ROTOR_PROXY_BACKEND="$(cat "$work/ports")"
  export ROTOR_PROXY_BACKEND
fi
backend_port="$(node -e 'process.stdout.write(String(JSON.parse(process.argv[1]).proxy))' "$ROTOR_PROXY_BACKEND")"
node tests/proxy/config.mjs "$backend_port" >"$work/config.json"

rotor_config="$work/config.json"
# shellcheck source=tests/server.sh
. tests/server.sh
if [ -n "${rotor_pid:-}" ]; then
  trap 'rc=$?; [ -n "$backend_pid" ] && kill "$backend_pid" 2>/dev/null; rm -rf "$work"; (exit $rc); rotor_stop' EXIT
fi
node --test --test-force-exit --test-timeout=60000 --test-concurrency=1 tests/proxy/
