#!/usr/bin/env bash
# Starts `wrangler dev` (local workerd) on 127.0.0.1:<port> in its own process group and
# prints its PID (= PGID): stop it with `kill -TERM -- -<pid>`.
# usage: edge/dev.sh <port> [extra wrangler dev args, e.g. --persist-to DIR --env-file FILE]
# Output goes to $ROTOR_EDGE_LOG (default edge/.wrangler/dev-<port>.log).
set -euo pipefail
port="${1:?usage: edge/dev.sh <port> [wrangler dev args]}"
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
edge="$root/edge"
log="${ROTOR_EDGE_LOG:-$edge/.wrangler/dev-$port.log}"
mkdir -p "$(dirname "$log")"
# wrangler and the Node 22 it needs come from edge/node_modules (edge/setup.sh).
export PATH="$edge/node_modules/.bin:$PATH"
export WRANGLER_SEND_METRICS=false CI=true
cd "$root"
setsid wrangler dev --config "$root/wrangler.toml" --ip 127.0.0.1 --port "$port" --inspector-port 0 \
  --show-interactive-dev-session=false "$@" </dev/null >"$log" 2>&1 &
echo $!
