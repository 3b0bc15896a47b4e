#!/usr/bin/env bash
# Soak: open-loop txgen at 70% of the measured peak for 10 minutes against a
# release dev node. Pass: no transfer refused or failed, the node's resident
# memory flat (the last quarter of the run no higher than the second quarter
# plus 15%), p99 latency stable (no minute's worst-second p99 above twice the
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
trap '[ -n "${NODE:-}" ] && kill $NODE 2>/dev/null || true; [ -n "$SAMPLER" ] && kill $SAMPLER 2>/dev/null || true' EXIT
start_dev_node "$OUT"
# The peak is what the node sustains over minutes of closed loop on a growing
# chain (a short burst on an empty chain overstates it), and it leaves the
# soak starting on a chain that already holds millions of transfers.
PEAK=${PEAK:-$(measure_peak "$OUT" "$PEAK_SECS")}
RATE=$(python3 -c "print(int($PEAK * $LOAD))")
# Every transfer of the soak is signed before it starts (~300 bytes each in txgen).
PRESIGN=$(presign_for "$RATE" "$SECS")
# Resident memory of the node, one sample a second, from the moment the timed
# phase starts (after txgen's set-up and pre-signing).
( until grep -q "txgen: running" "$OUT/soak.log" 2>/dev/null; do sleep 0.5; done
  while kill -0 $NODE 2>/dev/null; do echo "$(date +%s) $(ps -o rss= -p $NODE)" >> "$OUT/rss_kb.txt" || true; sleep 1; done ) &
SAMPLER=$!
echo "==> soak: open loop at $RATE/s ($LOAD of peak $PEAK/s) for ${SECS}s"
"$BIN/txgen" --dev-dir "$OUT/dev-data" --duration "${SECS}s" --accounts 1000 --rate "$RATE" \
  --presign-max "$PRESIGN" --report "$OUT/soak.json" --receipts "$OUT/receipts.txt" --plot "$OUT/soak.svg" \
  2> >(tee "$OUT/soak.log" >&2)
echo "==> audit of every acknowledged transfer"
"$BIN/ruble-node" audit --data-dir "$OUT/dev-data" --expect-committed "$OUT/receipts.txt" > "$OUT/audit.json" || true
kill -TERM $NODE; wait $NODE || true
python3 - "$OUT" "$PEAK" "$RATE" <<'PY'
import json, sys
out, peak, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = json.load(open(f"{out}/soak.json")); a = json.load(open(f"{out}/audit.json"))
rss = [int(l.split()[1]) / 1024 for l in open(f"{out}/rss_kb.txt") if len(l.split()) == 2]
q = max(1, len(rss) // 4)
rss_q2, rss_q4 = max(rss[q:2 * q]), max(rss[-q:])
secs = [s for s in r["per_second"] if s["t"] >= 0]
minutes = {}
for s in secs:
    minutes.setdefault(int(s["t"] // 60), []).append(s)
rows = ["| minute | committed tx/s | rejected | p50 ms (median of seconds) | p99 ms (worst second) |", "|---:|---:|---:|---:|---:|"]
p99s = []
for m, ss in sorted(minutes.items()):
    if len(ss) < 30:
        continue
    tps = sum(s["committed"] for s in ss) / len(ss)
    p50 = sorted(s["latency_ms_p50"] for s in ss)[len(ss) // 2]
    p99 = max(s["latency_ms_p99"] for s in ss)
    p99s.append(p99)
    rows.append(f"| {m + 1} | {tps:.0f} | {sum(s['rejected'] for s in ss)} | {p50:.2f} | {p99:.2f} |")
first = p99s[1] if len(p99s) > 1 else p99s[0]  # the first full minute after warm-up
p99_ok = all(p <= max(2 * first, 5.0) for p in p99s[1:])
mem_ok = rss_q4 <= rss_q2 * 1.15
err_ok = r["rejected_total"] == 0 and r["committed"] == r["submitted"]
audit_ok = a.get("ok") and not a.get("missing")
lines = [
    f"soak: {r['duration_s']:.0f} s open loop at {rate}/s (peak {peak}/s): submitted {r['submitted']}, committed {r['committed']}, rejected {r['rejected_total']}",
    f"latency over the run: p50 {r['latency_ms_p50']:.2f} ms, p99 {r['latency_ms_p99']:.2f} ms, max {r['latency_ms_max']:.2f} ms",
    f"node RSS: first sample {rss[0]:.0f} MiB, max of 2nd quarter {rss_q2:.0f} MiB, max of last quarter {rss_q4:.0f} MiB, overall max {max(rss):.0f} MiB ({len(rss)} samples)",
    f"audit: ok={a.get('ok')} operations={a.get('operations')} expected_committed={a.get('expected_committed')} missing={len(a.get('missing', []))}",
    "",
    *rows,
    "",
    f"verdict: errors {'none' if err_ok else 'SOME'}; memory {'flat' if mem_ok else 'GROWING'}; p99 {'stable' if p99_ok else 'UNSTABLE'}; audit {'ok' if audit_ok else 'FAILED'}",
]
print("\n".join(lines))
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
sys.exit(0 if (err_ok and mem_ok and p99_ok and audit_ok) else 1)
PY
