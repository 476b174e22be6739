#!/usr/bin/env bash
# usage: tests/npm-ci.sh DIR — `npm ci` in DIR when its package-lock.json changed since the
# last install (a hash stamp in DIR/node_modules), so repeated runs cost nothing.
set -euo pipefail
dir="${1:?usage: tests/npm-ci.sh DIR}"
stamp="$dir/node_modules/.rotor-lock-sha256"
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "tests: npm ci in $dir" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
