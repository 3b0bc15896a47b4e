# Shared by the load scripts (bench, soak, overload): source it, do not run it.

BIN=target/release

# start_dev_node DIR [ruble-node dev flags...]: starts a release dev node with
# its data in DIR/dev-data, logs in DIR/node.{out,log}; sets NODE to its pid
# and METRICS to its metrics address (empty without --metrics-listen), and
# returns once it is ready (fails, with the log, if it does not start).
start_dev_node() {
  local dir=$1
  shift
  "$BIN/ruble-node" dev --data-dir "$dir/dev-data" --listen 127.0.0.1:0 "$@" > "$dir/node.out" 2> "$dir/node.log" &
  NODE=$!
  for _ in $(seq 1 100); do grep -q RUBLE_NODE_READY "$dir/node.out" 2>/dev/null && break; sleep 0.2; done
  grep -q RUBLE_NODE_READY "$dir/node.out" || { echo "node did not start"; tail "$dir/node.log"; return 1; }
  METRICS=$(sed -n 's/.*RUBLE_NODE_READY .*metrics=\([^ ]*\).*/\1/p' "$dir/node.out")
}

# start_sampler DIR TXGEN_LOG: once txgen (pid TXGEN) logs its timed phase in
# TXGEN_LOG, samples the node once a second into DIR/samples.jsonl
# (scripts/sample.py: its metrics and CPU per thread, txgen's CPU, the
# machine's iowait, steal and dirty pages) until the node exits; sets SAMPLER.
start_sampler() {
  local dir=$1 log=$2
  ( until grep -q "txgen: running" "$log" 2>/dev/null; do sleep 0.2; done
    exec python3 scripts/sample.py "$METRICS" "$NODE" "$dir/samples.jsonl" "$TXGEN" ) &
  SAMPLER=$!
}

# measure_peak DIR SECS: the committed tx/s the node sustains in a closed loop
# of SECS seconds over 1000 accounts, every transfer signed before the run
# (signing during it would take the node's CPU). Report in DIR/peak.json.
measure_peak() {
  local dir=$1 secs=$2
  "$BIN/txgen" --dev-dir "$dir/dev-data" --duration "${secs}s" --accounts 1000 \
    --presign-max $((secs * 80000)) --report "$dir/peak.json" > /dev/null
  python3 -c "import json;print(int(json.load(open('$dir/peak.json'))['committed_tps']))"
}

# presign_for RATE SECS: transfers to pre-sign for an open loop (with margin).
presign_for() {
  python3 -c "print(int($1 * $2 * 1.06) + 1000)"
}
