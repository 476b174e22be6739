#!/usr/bin/env bash
# Every endpoint moved to a configured path, against a native server (tests/config/moved.json),
# or against ROTOR_URL (with ROTOR_API_KEY) when set. The edge runs the same suite in edge/test.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
rotor_config=$root/tests/config/moved.json
. tests/server.sh
node --test --test-timeout=60000 tests/moved/
