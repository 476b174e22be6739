#!/usr/bin/env bash
# The server HTTP API through the official Python client (PyPI `cent`), plus black-box HTTP
# error paths and the legacy `POST /api` form. Idempotent: creates tests/api/.venv when missing
# and installs the pinned requirements.txt into it (again only when that file changed).
#
#   ROTOR_URL=http://127.0.0.1:8000 ROTOR_API_KEY=… tests/api/run.sh   against a running server
#   tests/api/run.sh                                                  starts target/debug/rotor
#                                                                     with tests/config/api.json
#   tests/api/run.sh -k history                                       extra args go to pytest
#
# ROTOR_HMAC_SECRET (the server's token_hmac_secret_key) signs the tests' connection tokens;
# it defaults to the one in tests/config/api.json.
# Exit code: pytest's, except that "no tests collected" (5) is a failure too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "api tests: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.rotor-requirements-sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "api tests: pip install -r tests/api/requirements.txt" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

rotor_config="$root/tests/config/api.json"
# shellcheck source=tests/server.sh
. "$root/tests/server.sh"

cd "$here"
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "api tests: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
