#!/usr/bin/env bash
# Builds and starts a dev node on an embedded RocksDB in ./dev-data (genesis,
# PKI, keys and funded business accounts are created on first start).
# Extra arguments go to `ruble-node dev` (e.g. --listen 127.0.0.1:50052).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-deps.sh
cargo build --release -p ruble-gateway -p ruble-wallet-sdk --bins
export PATH="$PWD/target/release:$PATH"
exec ruble-node dev --data-dir "${RUBLE_DEV_DIR:-dev-data}" --metrics-listen 127.0.0.1:9100 "$@"
