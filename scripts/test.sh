#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, crash and
# end-to-end tests (real RocksDB in temp dirs, real nodes on 127.0.0.1:0, real TLS).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo build (binaries used by the end-to-end tests)"
cargo build --workspace --bins
echo "==> cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc

echo "==> crash under load (short): SIGKILL cycles must lose nothing; the unsafe control must be caught"
./scripts/crash-test.sh --cycles 2 --profile debug
./scripts/crash-test.sh --cycles 4 --profile debug --control

echo "==> replicated cluster under faults (short): each fault once must lose nothing; the unsafe control must be caught"
./scripts/cluster-test.sh --rounds 1 --profile debug --rate 1000 --duration 8s
./scripts/cluster-test.sh --rounds 3 --profile debug --rate 1000 --duration 8s --control
