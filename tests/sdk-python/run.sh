#!/usr/bin/env bash
# The official Python real-time SDK (PyPI `centrifuge-python`, unmodified) against rotor:
# fossil deltas live and through recovery, rpc without a handler (108) and recovery from an
# empty epoch, over WebSocket with JSON and with Protobuf. Idempotent: creates
# tests/sdk-python/.venv when missing and installs the pinned requirements.txt (again only
# when that file changed).
#
#   tests/sdk-python/run.sh                        starts target/debug/rotor with tests/config/sdk.json
#   ROTOR_URL=… ROTOR_API_KEY=… tests/sdk-python/run.sh   against a running server (e.g. wrangler dev)
#   tests/sdk-python/run.sh -k delta               extra args go to pytest
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "python sdk tests: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.rotor-requirements-sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "python sdk tests: pip install -r tests/sdk-python/requirements.txt" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

rotor_config="$root/tests/config/sdk.json"
# shellcheck source=tests/server.sh
. "$root/tests/server.sh"

cd "$here"
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "python sdk tests: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
