#!/usr/bin/env bash
# The benchmark: a release dev node, txgen calibration + closed loop + open loop
# at half the measured peak, an audit of every receipt, and the ledger-alone
# benchmark at 10k and 1M accounts. Reports and a markdown table land in
# target/bench/.
#   BENCH_SECS (default 20)   duration of each load phase
#   BENCH_ACCOUNTS (1000)     txgen accounts
#   BENCH_LEDGER_1M=0         skip the 1M-account ledger benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-deps.sh
SECS=${BENCH_SECS:-20}
ACCOUNTS=${BENCH_ACCOUNTS:-1000}
OUT=target/bench
rm -rf "$OUT" && mkdir -p "$OUT"
cargo build --release -p ruble-gateway -p ruble-wallet-sdk --bins
. scripts/lib.sh
trap '[ -n "${NODE:-}" ] && kill $NODE 2>/dev/null || true' EXIT
start_dev_node "$OUT" --metrics-listen 127.0.0.1:0

echo "==> closed loop, ${SECS}s, with calibration"
"$BIN/txgen" --dev-dir "$OUT/dev-data" --duration "${SECS}s" --accounts "$ACCOUNTS" --calibrate \
  --report "$OUT/closed.json" --receipts "$OUT/closed-receipts.txt" --plot "$OUT/closed.svg" 2> "$OUT/closed.log" &
TXGEN=$!
# Profile the node for 10 s of the timed phase (set BENCH_PERF=0 to skip).
if [ "${BENCH_PERF:-1}" != 0 ] && command -v perf >/dev/null; then
  # Set-up, pre-signing and calibration come first (about a minute here):
  # wait up to 5 minutes for the timed phase, or the profile is of an idle node.
  for _ in $(seq 1 3000); do grep -q "txgen: running" "$OUT/closed.log" 2>/dev/null && break; sleep 0.1; done
  sleep 2
  perf record -F 499 -g -p "$NODE" -o "$OUT/perf.data" -- sleep 10 > /dev/null 2>&1 || true
fi
wait $TXGEN
tail -6 "$OUT/closed.log"
if [ -f "$OUT/perf.data" ]; then
  perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -30 > "$OUT/profile.txt" || true
  perf report -i "$OUT/perf.data" --no-children --sort comm --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -12 > "$OUT/profile-threads.txt" || true
fi
PEAK=$(python3 -c "import json;print(int(json.load(open('$OUT/closed.json'))['committed_tps']))")
HALF=$((PEAK / 2))
echo "==> open loop at half the peak: ${HALF}/s for ${SECS}s"
"$BIN/txgen" --dev-dir "$OUT/dev-data" --duration "${SECS}s" --accounts "$ACCOUNTS" --rate "$HALF" \
  --report "$OUT/open.json" --receipts "$OUT/open-receipts.txt" --plot "$OUT/open.svg" \
  2> >(tee "$OUT/open.log" >&2) &
TXGEN=$!
# Sampled once a second through the open loop, so that a latency spike can be
# put beside its cause (open-summary.md).
start_sampler "$OUT" "$OUT/open.log"
wait $TXGEN
kill $SAMPLER 2>/dev/null || true
curl -s "http://$METRICS/metrics" > "$OUT/metrics.txt" 2>/dev/null || true

echo "==> audit of every acknowledged transfer"
cat "$OUT/closed-receipts.txt" "$OUT/open-receipts.txt" > "$OUT/all-receipts.txt"
"$BIN/ruble-node" audit --data-dir "$OUT/dev-data" --expect-committed "$OUT/all-receipts.txt" > "$OUT/audit.json" || {
  echo "AUDIT FAILED"; head -40 "$OUT/audit.json"; exit 1; }
kill -TERM $NODE; wait $NODE || true
# The open loop's worst seconds beside the node's and the machine's view of
# them (its verdicts are the soak's, for a 20 s run only indicative).
python3 scripts/soak_report.py "$OUT" "$PEAK" "$HALF" open > /dev/null || true

echo "==> ledger alone: apply + durable commit of pre-verified transfers"
cargo bench -p ruble-ledger --bench apply_commit -- --accounts 10000 --block 4096 --transfers 400000 \
  --json "$PWD/$OUT/ledger-10k.json" | tee "$OUT/ledger-10k.md"
if [ "${BENCH_LEDGER_1M:-1}" != 0 ]; then
  # The first run saves its set-up (a million accounts opened and funded,
  # ~100 s here) as a template for the second.
  SETUP="$PWD/$OUT/ledger-1m-setup"
  cargo bench -p ruble-ledger --bench apply_commit -- --accounts 1000000 --block 4096 --transfers 400000 \
    --template "$SETUP" --json "$PWD/$OUT/ledger-1m.json" | tee "$OUT/ledger-1m.md"
  # The same for 2M transfers (1M of them pipelined): long enough for the
  # write-behind (checkpoints, their flushes and compactions) to reach its
  # steady state, which the short run above ends before.
  cargo bench -p ruble-ledger --bench apply_commit -- --accounts 1000000 --block 4096 --transfers 2000000 \
    --template "$SETUP" --json "$PWD/$OUT/ledger-1m-sustained.json" | tee "$OUT/ledger-1m-sustained.md"
  rm -rf "$SETUP"
fi

python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
c = json.load(open(f"{out}/closed.json")); o = json.load(open(f"{out}/open.json"))
a = json.load(open(f"{out}/audit.json"))
ceil = c["calibration"]["verify_ops_per_s"]
rows = [
  "| run | committed tx/s | ceiling (verify/s, all cores) | ratio | p50 ms | p99 ms | max ms | rejected |",
  "|---|---:|---:|---:|---:|---:|---:|---:|",
  f"| closed loop | {c['committed_tps']:.0f} | {ceil:.0f} | {c['committed_tps']/ceil:.2f} | {c['latency_ms_p50']:.2f} | {c['latency_ms_p99']:.2f} | {c['latency_ms_max']:.2f} | {c['rejected_total']} |",
  f"| open loop @ {o['settings']['rate']:.0f}/s | {o['committed_tps']:.0f} | {ceil:.0f} | {o['committed_tps']/ceil:.2f} | {o['latency_ms_p50']:.2f} | {o['latency_ms_p99']:.2f} | {o['latency_ms_max']:.2f} | {o['rejected_total']} |",
  "",
  f"audit: ok={a['ok']} blocks={a['blocks']} operations={a['operations']} expected_committed={a['expected_committed']} missing={len(a['missing'])}",
  "",
]
for name in ("ledger-10k", "ledger-1m", "ledger-1m-sustained"):
    p = f"{out}/{name}.json"
    if os.path.exists(p):
        l = json.load(open(p))
        rows.append(f"ledger alone, {l['accounts']} accounts, block {l['block_ops']}, {l['transfers']} transfers: sequential {l['sequential_tps']:.0f} tx/s, pipelined {l['pipelined_tps']:.0f} tx/s, commit p50 {l['commit_ms_p50']:.2f} ms p99 {l['commit_ms_p99']:.2f} ms")
open(f"{out}/summary.md", "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
sed -n '/^Worst seconds/,/^verdict/p' "$OUT/open-summary.md" 2>/dev/null | grep -v '^verdict' || true
echo "reports: $OUT/ (open-summary.md: the open loop's worst seconds, with CPU per thread)"
