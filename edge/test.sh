#!/usr/bin/env bash
# rotor on the edge, end to end: installs (edge/setup.sh), builds the Worker, starts
# `wrangler dev` on a free loopback port with fresh persisted state, runs the black-box
# conformance suite against it (tests/conformance/, config tests/config/conformance.json), the
# centrifuge SDK's Node suites (tests/sdk/*.test.mjs) and the Python SDK (tests/sdk-python/;
# both with config tests/config/sdk.json; off with ROTOR_EDGE_SDK=0), the server API through the official clients (tests/api/ with PyPI cent,
# tests/api-js/ with npm cent.js, config tests/config/api.json; off with ROTOR_EDGE_API=0), the
# admin web UI (tests/admin/, config tests/config/admin.json; off with ROTOR_EDGE_ADMIN=0) and
# the edge's own checks (tests/edge/: durability across a wrangler restart, ordered fan-out
# over several node objects, WebSocket sessions kept through hibernation), and the proxies to
# the application backend (tests/proxy/: its test backend, a config generated for its port;
# off with ROTOR_EDGE_PROXY=0). Stops every wrangler (and backend) it started.
# Exit status: non-zero if any suite failed. ROTOR_EDGE_SKIP_SETUP=1 skips edge/setup.sh;
# ROTOR_EDGE_CONFORMANCE=0, ROTOR_EDGE_MOVED=0 and ROTOR_EDGE_CHECKS=0 skip the conformance,
# moved-endpoint and tests/edge suites (to run a subset).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

[ "${ROTOR_EDGE_SKIP_SETUP:-}" = 1 ] || bash edge/setup.sh
t0=$(date +%s)
edge/build.sh
echo "edge: wasm build $(( $(date +%s) - t0 )) s; $(wc -c <edge/build/index_bg.wasm) bytes raw, $(gzip -9c edge/build/index_bg.wasm | wc -c) gzip"

work="$(mktemp -d "${TMPDIR:-/tmp}/rotor-edge-test.XXXXXX")"
pid=""
stop() { if [ -n "$pid" ]; then kill -TERM -- "-$pid" 2>/dev/null || true; pid=""; fi; }
trap 'stop; if [ -n "${backend_pid:-}" ]; then kill "$backend_pid" 2>/dev/null || true; fi' EXIT
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})'; }
key() { node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); process.stdout.write(String(c[process.argv[2]] ?? ""))' "$1" "$2"; }

# serve <config.json> <name>: starts wrangler dev with that config and fresh state in
# $work/<name>; sets $url and $pid. Waits 60 s at most for the health endpoint (the config's
# health_handler_prefix, /health by default), and retries once.
serve() {
  local config="$1" name="$2" conf_json attempt deadline ready="" start health
  conf_json="$(node -e 'process.stdout.write(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))))' "$config")"
  health="$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).health_handler_prefix || "/health")' "$config")"
  case "$conf_json" in *"'"*) echo "edge/test.sh: $config holds a single quote, which the env file cannot carry" >&2; return 2 ;; esac
  mkdir -p "$work/$name"
  printf "ROTOR_CONFIG_JSON='%s'\n" "$conf_json" >"$work/$name/env"
  for attempt in 1 2; do
    url="http://127.0.0.1:$(free_port)"
    start=$(date +%s%N)
    pid="$(ROTOR_EDGE_PREBUILT=1 ROTOR_EDGE_LOG="$work/$name/wrangler.log" \
      edge/dev.sh "${url##*:}" --persist-to "$work/$name/state" --env-file "$work/$name/env")"
    deadline=$(( $(date +%s) + 60 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
      if curl -fs -o /dev/null --max-time 2 "$url$health"; then ready=1; break; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if [ -n "$ready" ]; then
      echo "edge: wrangler dev ($name) ready at $url in $(( ($(date +%s%N) - start) / 1000000 )) ms (log: $work/$name/wrangler.log)"
      return 0
    fi
    echo "edge: wrangler dev ($name, attempt $attempt) did not answer; log:" >&2
    tail -n 30 "$work/$name/wrangler.log" >&2
    stop
    sleep 1
  done
  return 1
}

# The conformance suite and the SDK suites take `ws`/`centrifuge` from tests/sdk's packages.
tests/npm-ci.sh tests/sdk

rc=0
if [ "${ROTOR_EDGE_CONFORMANCE:-1}" != 1 ]; then
  :
elif compgen -G "tests/conformance/*.test.mjs" >/dev/null; then
  config=tests/config/conformance.json
  serve "$config" conformance
  # ROTOR_WEBSOCKET_PINGS=0: the edge does not ping WebSocket sessions, so that idle node
  # objects can hibernate (edge/src/lib.rs); the suite then checks that no pings come.
  ROTOR_URL="$url" ROTOR_API_KEY="$(key "$config" api_key)" ROTOR_HMAC_SECRET="$(key "$config" token_hmac_secret_key)" \
    ROTOR_WEBSOCKET_PINGS=0 edge/node_modules/.bin/node --test --test-force-exit tests/conformance/*.test.mjs || rc=1
  stop
else
  echo "edge: no tests/conformance/*.test.mjs yet"
fi

# Every endpoint moved to a configured path (tests/config/moved.json), as natively.
if [ "${ROTOR_EDGE_MOVED:-1}" = 1 ]; then
  config=tests/config/moved.json
  serve "$config" moved
  ROTOR_URL="$url" edge/node_modules/.bin/node --test --test-force-exit tests/moved/*.test.mjs || rc=1
  stop
fi

if [ "${ROTOR_EDGE_SDK:-1}" = 1 ]; then
  config=tests/config/sdk.json
  serve "$config" sdk
  ROTOR_URL="$url" ROTOR_CLOSED_PORT="$(free_port)" ROTOR_API_KEY="$(key "$config" api_key)" \
    ROTOR_HMAC_SECRET="$(key "$config" token_hmac_secret_key)" ROTOR_WEBSOCKET_PINGS=0 \
    node --test --test-force-exit --test-concurrency=4 tests/sdk/*.test.mjs || rc=1
  # The Python SDK from PyPI (centrifuge-python) against the same server.
  ROTOR_URL="$url" ROTOR_API_KEY="$(key "$config" api_key)" ROTOR_HMAC_SECRET="$(key "$config" token_hmac_secret_key)" \
    tests/sdk-python/run.sh || rc=1
  stop
fi

if [ "${ROTOR_EDGE_API:-1}" = 1 ]; then
  config=tests/config/api.json
  serve "$config" api
  # The official API clients: PyPI cent (pytest) and npm cent.js. `info` lists one node per
  # node object.
  api_env=(ROTOR_URL="$url" ROTOR_API_KEY="$(key "$config" api_key)" ROTOR_HMAC_SECRET="$(key "$config" token_hmac_secret_key)"
    TEST_NODE_COUNT="$(sed -n 's/^edge_node_count *= *\([0-9][0-9]*\).*/\1/p' wrangler.toml)")
  env "${api_env[@]}" tests/api/run.sh || rc=1
  env "${api_env[@]}" tests/api-js/run.sh || rc=1
  stop
fi

if [ "${ROTOR_EDGE_ADMIN:-1}" = 1 ]; then
  # The admin web UI served by the Worker (tests/config/admin.json): its endpoints and the
  # page in headless Chromium, one node row per node object.
  config=tests/config/admin.json
  serve "$config" admin
  ROTOR_URL="$url" ROTOR_API_KEY="$(key "$config" api_key)" ROTOR_HMAC_SECRET="$(key "$config" token_hmac_secret_key)" \
    TEST_NODE_COUNT="$(sed -n 's/^edge_node_count *= *\([0-9][0-9]*\).*/\1/p' wrangler.toml)" \
    ROTOR_BODIES_BUFFERED=1 CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}" ROTOR_ADMIN_SCREENSHOT="${ROTOR_ADMIN_SCREENSHOT:-$work/admin-ui.png}" \
    node --test --test-force-exit --test-concurrency=1 tests/admin/auth.test.mjs tests/admin/ui.test.mjs || rc=1
  stop
fi

if [ "${ROTOR_EDGE_PROXY:-1}" = 1 ]; then
  # A real HTTP backend on free loopback ports, and a config pointing every proxy at it.
  node tests/proxy/backend.mjs >"$work/backend-ports" &
  backend_pid=$!
  for _ in $(seq 1 100); do [ -s "$work/backend-ports" ] && break; sleep 0.1; done
  backend_ports="$(cat "$work/backend-ports")"
  node tests/proxy/config.mjs "$(node -e 'process.stdout.write(String(JSON.parse(process.argv[1]).proxy))' "$backend_ports")" \
    >"$work/proxy.json"
  serve "$work/proxy.json" proxy
  ROTOR_URL="$url" ROTOR_API_KEY="$(key "$work/proxy.json" api_key)" ROTOR_PROXY_BACKEND="$backend_ports" \
    ROTOR_LOG="$work/proxy/wrangler.log" tests/proxy/run.sh || rc=1
  stop
  kill "$backend_pid" 2>/dev/null || true
fi

if [ "${ROTOR_EDGE_CHECKS:-1}" = 1 ]; then
  # Start and restart their own wrangler dev; Node 22 (from edge/setup.sh) for its WebSocket.
  edge/node_modules/.bin/node --test --test-force-exit tests/edge/*.test.mjs || rc=1
fi
exit "$rc"
