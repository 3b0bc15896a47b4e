#!/usr/bin/env bash
# Overload: open-loop txgen at twice the measured peak against a release dev
# node with a bounded admission queue. The node must answer RESOURCE_EXHAUSTED
# (reason OVERLOADED) instead of queueing without bound, its resident memory
# must stay under a stated bound, and throughput and latency must recover
# when the load drops to half the peak. Writes target/overload/summary.md.
#   PEAK=N        skip the closed-loop measurement (30 s) and use N tx/s as the peak
#   SECS=60       overload duration
#   RSS_LIMIT_MB  the bound checked (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-60}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-1024}
OUT=target/overload
rm -rf "$OUT" && mkdir -p "$OUT"
cargo build --release -q -p ruble-gateway -p ruble-wallet-sdk --bins
. scripts/lib.sh
SAMPLER=
trap '[ -n "${NODE:-}" ] && kill $NODE 2>/dev/null || true; [ -n "$SAMPLER" ] && kill $SAMPLER 2>/dev/null || true' EXIT
# Admission (8192 operations in flight) below what txgen offers (two batch
# streams of up to 16384 each), so that the excess is refused, not queued.
start_dev_node "$OUT" --max-inflight-ops 8192
# Resident memory of the node, sampled every second.
( while kill -0 $NODE 2>/dev/null; do ps -o rss= -p $NODE >> "$OUT/rss_kb.txt" || true; sleep 1; done ) &
SAMPLER=$!
PEAK=${PEAK:-$(measure_peak "$OUT" 30)}
echo "==> overload: open loop at $((PEAK * 2))/s for ${SECS}s (peak $PEAK/s)"
"$BIN/txgen" --dev-dir "$OUT/dev-data" --duration "${SECS}s" --accounts 1000 --rate $((PEAK * 2)) \
  --presign-max "$(presign_for $((PEAK * 2)) "$SECS")" --window 16384 --report "$OUT/overload.json" --plot "$OUT/overload.svg" || true
echo "==> recovery: open loop at $((PEAK / 2))/s for 20s"
"$BIN/txgen" --dev-dir "$OUT/dev-data" --duration 20s --accounts 1000 --rate $((PEAK / 2)) \
  --report "$OUT/recovery.json" --plot "$OUT/recovery.svg"
kill -TERM $NODE; wait $NODE || true
python3 - "$OUT" "$RSS_LIMIT_MB" "$PEAK" <<'PY'
import json, sys
out, limit, peak = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
o = json.load(open(f"{out}/overload.json")); r = json.load(open(f"{out}/recovery.json"))
rss = [int(x) for x in open(f"{out}/rss_kb.txt").read().split() if x.strip()]
max_mb = max(rss) / 1024
lines = [
  f"peak {peak} tx/s; overload at {2*peak}/s: committed {o['committed_tps']:.0f} tx/s, rejected {o['rejected']}, p99 {o['latency_ms_p99']:.1f} ms",
  f"recovery at {peak//2}/s: committed {r['committed_tps']:.0f} tx/s, p50 {r['latency_ms_p50']:.2f} ms, p99 {r['latency_ms_p99']:.2f} ms, rejected {r['rejected_total']}",
  f"node RSS max {max_mb:.0f} MiB (bound {limit} MiB), samples {len(rss)}",
]
print("\n".join(lines))
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
ok = max_mb <= limit and o['rejected'].get('OVERLOADED', 0) > 0 and r['rejected_total'] == 0
print("overload test", "passed" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
