#!/usr/bin/env bash
# The resource-release suite (issue 11): starts target/debug/rotor with tests/config/release.json
# on a free loopback port (tests/server.sh), runs tests/release/*.test.mjs against it, and stops
# the server. The suite reads the server's /proc/<pid>, so it needs the server on this machine:
# with ROTOR_URL set (a server already running), ROTOR_PID must be set too.
#
# Environment: ROTOR_BIN (default target/debug/rotor, built when missing), ROTOR_TEST_REPORTER
# (default spec), RELEASE_N / RELEASE_CONCURRENCY (connections per transport and how many at a
# time; default 500 and 50).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if [ -n "${ROTOR_URL:-}" ] && [ -z "${ROTOR_PID:-}" ]; then
  echo "tests/release: ROTOR_URL is set but ROTOR_PID is not (the suite reads /proc/<pid>)" >&2
  exit 2
fi

rotor_config="$root/tests/config/release.json"
# shellcheck source=tests/server.sh
. "$root/tests/server.sh"

rc=0
node --test --test-reporter="${ROTOR_TEST_REPORTER:-spec}" --test-timeout=180000 "$here"/*.test.mjs || rc=$?

# A server still busy with the flood may not end on SIGTERM (issue 11): give it 10 s, then
# SIGKILL it (by its PID) before tests/server.sh's exit trap waits for it, and fail the suite.
if [ -n "${rotor_pid:-}" ] && kill -0 "$rotor_pid" 2>/dev/null; then
  kill "$rotor_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$rotor_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$rotor_pid" 2>/dev/null; then
    echo "tests/release: rotor (pid $rotor_pid) did not end within 10 s of SIGTERM; sending SIGKILL" >&2
    kill -9 "$rotor_pid" 2>/dev/null || true
    [ "$rc" -ne 0 ] || rc=1
  fi
fi
exit "$rc"
