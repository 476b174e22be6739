#!/usr/bin/env bash
# Installs what the edge build and `wrangler dev` need; idempotent and quick when done.
#  - the wasm32-unknown-unknown Rust target (rustup);
#  - wasm-bindgen-cli 0.2.130, the exact version of the wasm-bindgen crate (cargo install, ~4 min once);
#  - wrangler + Node 22 from edge/package-lock.json (npm ci, ~20 s; skipped when up to date).
set -euo pipefail
edge="$(cd "$(dirname "$0")" && pwd)"
rustup target list --installed | grep -qx wasm32-unknown-unknown \
  || timeout 300 rustup target add wasm32-unknown-unknown
# Not --locked: its lockfile wants crate versions the registry mirror may lack.
wasm-bindgen --version 2>/dev/null | grep -qx 'wasm-bindgen 0.2.130' \
  || cargo install wasm-bindgen-cli --version 0.2.130
cd "$edge"
stamp=node_modules/.rotor-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi
