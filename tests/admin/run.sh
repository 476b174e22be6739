#!/usr/bin/env bash
# The admin web UI against rotor's native server: starts target/debug/rotor with
# tests/config/admin.json on a free loopback port (tests/server.sh), runs tests/admin/*.test.mjs
# (the endpoints' answers to bad input, and the page in headless Chromium, which prints where
# it saved its screenshot), and stops the server. edge/test.sh runs the same files under
# wrangler dev. `tests/admin/run.sh tests/admin/auth.test.mjs` runs some files. Environment: as tests/sdk/run.sh (ROTOR_BIN, CHROMIUM_PATH, ROTOR_URL…),
# plus ROTOR_ADMIN_SCREENSHOT (the screenshot's path).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

"$root/tests/npm-ci.sh" "$root/tests/sdk"
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium || echo /usr/bin/chromium)}"

rotor_config="$root/tests/config/admin.json"
# shellcheck source=tests/server.sh
. "$root/tests/server.sh"

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=("$here"/*.test.mjs)
fi
# One file at a time: both log in from the same address, and failed logins slow it down.
node --test --test-concurrency=1 --test-reporter="${ROTOR_TEST_REPORTER:-spec}" "${files[@]}"
