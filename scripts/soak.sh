#!/usr/bin/env bash
# Soak: open-loop txgen at 70% of the measured peak for 10 minutes against a
# release dev node. Pass: no transfer refused or failed, the node's resident
# memory flat (the last quarter of the run no higher than the second quarter
# plus 15%, not counting RocksDB's block cache and memtables, which fill up to
# their configured bounds over the first minutes), p99 latency stable (no minute's worst-second p99 above twice the
# first full minute's), and every acknowledged transfer in the chain.
# Writes target/soak/summary.md (with the per-minute table) and the reports.
#   PEAK=N        skip the closed-loop measurement and use N tx/s as the peak
#   SOAK_SECS=600 duration of the soak
#   SOAK_LOAD=0.7 fraction of the peak
#   PEAK_SECS=180 length of the closed-loop run that measures the peak
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-deps.sh
SECS=${SOAK_SECS:-600}
LOAD=${SOAK_LOAD:-0.7}
PEAK_SECS=${PEAK_SECS:-180}
OUT=target/soak
rm -rf "$OUT" && mkdir -p "$OUT"
cargo build --release -q -p ruble-gateway -p ruble-wallet-sdk --bins
. scripts/lib.sh
SAMPLER=
trap '[ -n "${NODE:-}" ] && kill $NODE 2>/dev/null || true; [ -n "${TXGEN:-}" ] && kill $TXGEN 2>/dev/null || true; [ -n "$SAMPLER" ] && kill $SAMPLER 2>/dev/null || true' EXIT
start_dev_node "$OUT" --metrics-listen 127.0.0.1:0
# The peak is what the node sustains over minutes of closed loop on a growing
# chain (a short burst on an empty chain overstates it), and it leaves the
# soak starting on a chain that already holds millions of transfers.
PEAK=${PEAK:-$(measure_peak "$OUT" "$PEAK_SECS")}
RATE=$(python3 -c "print(int($PEAK * $LOAD))")
# Every transfer of the soak is signed before it starts (80 bytes each in txgen,
# 32 more for its receipt; txgen refuses a count that cannot fit in memory).
PRESIGN=$(presign_for "$RATE" "$SECS")
echo "==> soak: open loop at $RATE/s ($LOAD of peak $PEAK/s) for ${SECS}s"
"$BIN/txgen" --dev-dir "$OUT/dev-data" --duration "${SECS}s" --accounts 1000 --rate "$RATE" \
  --presign-max "$PRESIGN" --report "$OUT/soak.json" --receipts "$OUT/receipts.txt" --plot "$OUT/soak.svg" \
  2> >(tee "$OUT/soak.log" >&2) &
TXGEN=$!
# Once a second, from the timed phase on: the node's memory, metrics and CPU
# per thread, txgen's CPU, and the machine's iowait, steal and dirty pages
# (scripts/sample.py), to explain any latency spike (scripts/soak_report.py).
start_sampler "$OUT" "$OUT/soak.log"
# A failed txgen still gets its audit and report (the report names its
# errors); the script fails at the end.
TXGEN_RC=0
wait $TXGEN || TXGEN_RC=$?
TXGEN=
kill $SAMPLER 2>/dev/null || true
SAMPLER=
echo "==> audit of every acknowledged transfer"
"$BIN/ruble-node" audit --data-dir "$OUT/dev-data" --expect-committed "$OUT/receipts.txt" > "$OUT/audit.json" || true
kill -TERM $NODE; wait $NODE || true
python3 scripts/soak_report.py "$OUT" "$PEAK" "$RATE"
exit $TXGEN_RC
