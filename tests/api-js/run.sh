#!/usr/bin/env bash
# The server HTTP API through the npm `cent.js` client (pinned in package.json/package-lock.json),
# with node's test runner. Idempotent: `npm ci` only when package-lock.json changed.
#
#   ROTOR_URL=http://127.0.0.1:8000 ROTOR_API_KEY=… tests/api-js/run.sh   against a running server
#   tests/api-js/run.sh                                                  starts target/debug/rotor
#                                                                        with tests/config/api.json
#
# ROTOR_HMAC_SECRET (the server's token_hmac_secret_key) signs the tests' connection tokens;
# it defaults to the one in tests/config/api.json. Exit code: node's (non-zero on a failure).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

"$root/tests/npm-ci.sh" "$here"

rotor_config="$root/tests/config/api.json"
# shellcheck source=tests/server.sh
. "$root/tests/server.sh"

cd "$here"
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=("$here"/*.test.mjs)
fi
node --test --test-reporter="${ROTOR_TEST_REPORTER:-spec}" "${files[@]}"
