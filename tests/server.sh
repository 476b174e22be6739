# Sourced by the suites that drive a native server (tests/run's conformance step, tests/sdk,
# tests/api, tests/api-js): when ROTOR_URL is not set, build and start target/debug/rotor with
# $rotor_config (ROTOR_CONFIG overrides it) on a free loopback port, export ROTOR_URL,
# ROTOR_API_KEY, ROTOR_HMAC_SECRET and ROTOR_PID (the server's process id, for suites that read
# /proc/<pid>), and stop the server (by its PID) on exit.
# Needs: $root (the repository root) and $rotor_config.

if [ -n "${ROTOR_URL:-}" ]; then
  if [ -z "${ROTOR_API_KEY:-}" ]; then
    echo "ROTOR_URL is set but ROTOR_API_KEY is not" >&2
    exit 2
  fi
  return 0
fi

rotor_config="${ROTOR_CONFIG:-$rotor_config}"
rotor_bin="${ROTOR_BIN:-$root/target/debug/rotor}"
if [ ! -x "$rotor_bin" ]; then
  echo "tests: building rotor (cargo build -p native)" >&2
  (cd "$root" && cargo build -q -p native)
fi
rotor_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
rotor_log="$(mktemp -t rotor-api-server.XXXXXX.log)"
"$rotor_bin" -c "$rotor_config" --address 127.0.0.1 --port "$rotor_port" >"$rotor_log" 2>&1 &
rotor_pid=$!
rotor_stop() {
  local rc=$?
  if kill -0 "$rotor_pid" 2>/dev/null; then
    kill "$rotor_pid" 2>/dev/null || true
    wait "$rotor_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    echo "---- rotor server log (last 40 lines of $rotor_log)" >&2
    tail -n 40 "$rotor_log" >&2 || true
  else
    rm -f "$rotor_log"
  fi
  exit "$rc"
}
trap rotor_stop EXIT
trap 'exit 130' INT TERM

export ROTOR_URL="http://127.0.0.1:$rotor_port"
export ROTOR_PID="$rotor_pid"
# The server's output (stdout and stderr), for suites that check what it logs.
export ROTOR_LOG="$rotor_log"
ROTOR_API_KEY="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$rotor_config")"
ROTOR_HMAC_SECRET="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token_hmac_secret_key"])' "$rotor_config")"
export ROTOR_API_KEY ROTOR_HMAC_SECRET

for _ in $(seq 1 200); do
  if python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=1)' "$ROTOR_URL" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$rotor_pid" 2>/dev/null; then
    echo "rotor exited during start-up" >&2
    exit 1
  fi
  sleep 0.1
done
echo "tests: rotor (pid $rotor_pid) on $ROTOR_URL, config $rotor_config" >&2
