#!/usr/bin/env bash
# Faults under load on a three-replica cluster (one process per replica, their
# replication links through scripts/netcut.py so a replica can be cut off).
# Every cycle runs txgen (receipts to a file), injects one fault while it
# drives load, repairs it, waits until the replicas converge, and then checks
# on EVERY replica: `ruble-node audit --expect-committed` on all receipts so
# far (each acknowledged transfer is in the chain; the audit's replay also
# refuses an operation applied twice and checks Σ balances = issued −
# redeemed), and that all replicas have the same state hash at the same height.
#
#   ./scripts/cluster-test.sh [--rounds N] [--profile debug|release] [--rate TPS]
#                             [--duration SECS_OF_LOAD_PER_CYCLE] [--faults LIST] [--control]
#
# Faults (a round runs each once, in this order unless --faults is given, a
# comma-separated list): kill-leader, kill-follower, stop-leader (SIGSTOP 3 s,
# then SIGCONT), wipe-follower (SIGKILL, `ruble-admin cluster remove`, delete
# its ledger and replication log, restart it and `ruble-admin cluster add` it
# back: it catches up from the others as a learner, then votes), cut-follower
# and cut-leader (its replication links go silent for 3 s).
#
# --control runs the replicas with a fault injected (a block is acknowledged
# before a quorum holds it) and kills the leader up to --rounds times; the
# audit must catch lost acknowledgements (it stops at the first catch).
#
# Prints one line per cycle: acknowledged so far, missing, audits, converged
# height, and "kill to first commit": the time from the fault to txgen's next
# committed transfer (from txgen's commit-gap report), and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=1
PROFILE=release
RATE=2000
DURATION=12s
CONTROL=0
FAULTS=kill-leader,kill-follower,stop-leader,wipe-follower,cut-follower,cut-leader
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --faults) FAULTS=$2; shift 2 ;;
    --control) CONTROL=1; FAULTS=kill-leader; shift ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
done
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p ruble-gateway -p ruble-wallet-sdk --bins
fi
BIN=target/$PROFILE
N=3
WORK=$(mktemp -d /tmp/ruble-cluster.XXXXXX)
DATA="$WORK/data"
# Replica i: clients on BASE+i-1, replication on BASE+100+i-1; the link
# from i to j through the proxy on BASE+200+10i+j.
BASE=$(( 20000 + (RANDOM % 300) * 100 ))
declare -A PID
cleanup() {
  local rc=$?
  for p in "${PID[@]}" "${PROXY:-}" "${TX:-}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # A failed run keeps its logs, data and receipts for a look.
  if [ "$rc" = 0 ]; then rm -rf "$WORK"; else echo "logs and data kept in $WORK"; fi
}
trap cleanup EXIT
RECEIPTS="$WORK/receipts.txt"
: > "$RECEIPTS"
: > "$WORK/cut"
EXTRA=()
[ "$CONTROL" = 1 ] && EXTRA=(--unsafe-ack-before-quorum)
COMMON=(--data-dir "$DATA" --listen "127.0.0.1:$BASE" --replicas "$N")

"$BIN/ruble-node" dev "${COMMON[@]}" --prepare > "$WORK/prepare.out" 2> "$WORK/prepare.log" \
  || { cat "$WORK/prepare.log"; exit 1; }
LINKS=()
for i in $(seq 1 $N); do for j in $(seq 1 $N); do
  [ "$i" = "$j" ] || LINKS+=(--link "$i:$j:$((BASE + 200 + 10 * i + j)):$((BASE + 100 + j - 1))")
done; done
python3 scripts/netcut.py --control "$WORK/cut" "${LINKS[@]}" > "$WORK/netcut.log" 2>&1 &
PROXY=$!

launch() { # launch I: start replica I in the background
  local i=$1 peers=()
  for j in $(seq 1 $N); do [ "$i" = "$j" ] || peers+=(--peer "$j=127.0.0.1:$((BASE + 200 + 10 * i + j))"); done
  : > "$WORK/n$i.out"
  "$BIN/ruble-node" dev "${COMMON[@]}" --replica "$i" "${peers[@]}" "${EXTRA[@]}" \
    > "$WORK/n$i.out" 2>> "$WORK/n$i.log" &
  PID[$i]=$!
}
await_ready() { # await_ready I: until replica I serves (it knows a leader)
  local i=$1
  for _ in $(seq 1 1200); do grep -q RUBLE_NODE_READY "$WORK/n$i.out" 2>/dev/null && return 0; sleep 0.05; done
  echo "replica $i did not come back"; tail -20 "$WORK/n$i.log"; exit 1
}
status() { # status I: replica I's cluster status (JSON), empty if it does not answer
  "$BIN/ruble-admin" --dev-dir "$DATA" --endpoint "https://127.0.0.1:$((BASE + $1 - 1))" \
    cluster status --json 2>/dev/null || true
}
admin() { # ruble-admin as the central bank, following the leader among the replicas
  "$BIN/ruble-admin" --dev-dir "$DATA" "$@"
}
field() { # field I NAME: one field of replica I's status (empty if it does not answer)
  status "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])" 2>/dev/null || true
}
leader() { # the id of the replica that says it leads (by its own status)
  for _ in $(seq 1 200); do
    for i in $(seq 1 $N); do
      [ "$(field "$i" is_leader)" = True ] && { echo "$i"; return 0; }
    done
    sleep 0.1
  done
  echo "no leader" >&2; exit 1
}
follower() { # a replica that is not the leader
  local l; l=$(leader)
  echo $(( l % N + 1 ))
}
converge() { # until every replica reports the same applied height and state hash; prints the height
  for _ in $(seq 1 600); do
    local seen=()
    for i in $(seq 1 $N); do seen+=("$(status "$i" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["applied_height"], s["state_hash"])' 2>/dev/null || echo none)"); done
    if [ "${seen[0]}" != none ] && [ "$(printf '%s\n' "${seen[@]}" | sort -u | wc -l)" = 1 ]; then
      echo "${seen[0]%% *}"; return 0
    fi
    sleep 0.1
  done
  echo "replicas did not converge: ${seen[*]}" >&2; return 1
}
now_ms() { date +%s%3N; }

for i in $(seq 1 $N); do launch "$i"; done
for i in $(seq 1 $N); do await_ready "$i"; done

IFS=, read -r -a FAULT_LIST <<< "$FAULTS"
FAILED=0
CAUGHT=0
CYCLE=0
RECOVERIES=()
for r in $(seq 1 "$ROUNDS"); do
  for fault in "${FAULT_LIST[@]}"; do
    CYCLE=$((CYCLE + 1))
    c=$CYCLE
    "$BIN/txgen" --dev-dir "$DATA" --duration "$DURATION" --rate "$RATE" --stall-timeout 1s --accounts 200 --presign-max 200000 \
      --receipts "$WORK/r$c.txt" --report "$WORK/r$c.json" > "$WORK/txgen$c.log" 2>&1 &
    TX=$!
    for _ in $(seq 1 1200); do grep -q "txgen: running" "$WORK/txgen$c.log" 2>/dev/null && break; sleep 0.1; done
    sleep "$(python3 -c 'import random; print(round(random.uniform(2.0, 4.0), 2))')"
    case "$fault" in
      kill-leader|stop-leader|cut-leader) victim=$(leader) ;;
      *) victim=$(follower) ;;
    esac
    TERM_BEFORE=$(field "$victim" term)
    T_FAULT=$(now_ms)
    EFFECT=ok
    case "$fault" in
      kill-leader|kill-follower)
        kill -9 "${PID[$victim]}"; wait "${PID[$victim]}" 2>/dev/null || true
        sleep 2; launch "$victim"; await_ready "$victim" ;;
      stop-leader)
        kill -STOP "${PID[$victim]}"; sleep 3; kill -CONT "${PID[$victim]}" ;;
      wipe-follower)
        # A voter that lost its log must not vote as if it had it: it leaves
        # the membership, and comes back as a new learner that catches up
        # (from a snapshot or the log) before it votes again.
        kill -9 "${PID[$victim]}"; wait "${PID[$victim]}" 2>/dev/null || true
        admin cluster remove --id "$victim" --yes > "$WORK/remove$c.log" 2>&1 \
          || { echo "removing replica $victim failed"; cat "$WORK/remove$c.log"; exit 1; }
        rm -rf "$DATA/node$victim/db" "$DATA/node$victim/raft" "$DATA/node$victim/raft-snapshots"
        launch "$victim"
        admin cluster add --id "$victim" --raft "127.0.0.1:$((BASE + 100 + victim - 1))" \
          --client "https://127.0.0.1:$((BASE + victim - 1))" > "$WORK/add$c.log" 2>&1 \
          || { echo "adding replica $victim back failed"; cat "$WORK/add$c.log"; exit 1; }
        await_ready "$victim" ;;
      cut-follower|cut-leader)
        echo "$victim" > "$WORK/cut"; sleep 0.5
        H0=$(field "$victim" applied_height); sleep 2.5
        H1=$(field "$victim" applied_height)
        : > "$WORK/cut"
        # Cut off, a replica applies nothing new (else the cut did not cut).
        [ "$fault" = cut-leader ] || [ "$H0" = "$H1" ] || EFFECT="no: applied $H0 -> $H1 while cut" ;;
      *) echo "unknown fault $fault"; exit 2 ;;
    esac
    TX_OK=yes
    wait "$TX" || TX_OK=no
    TX=
    cat "$WORK/r$c.txt" >> "$RECEIPTS" 2>/dev/null || true
    HEIGHT=$(converge) || { FAILED=1; HEIGHT=none; }
    # A lost leader is replaced: a new term began.
    case "$fault" in
      *-leader) [ "$(field "$victim" term)" -gt "$TERM_BEFORE" ] || EFFECT="no: term still $TERM_BEFORE" ;;
    esac
    AUDITS=""
    MISSING=0
    for i in $(seq 1 $N); do
      if "$BIN/ruble-node" audit --data-dir "$DATA/node$i" --expect-committed "$RECEIPTS" > "$WORK/audit$c-$i.json"; then
        AUDITS+="ok "
      else
        AUDITS+="FAIL "; FAILED=1
      fi
      m=$(python3 -c "import json;print(len(json.load(open('$WORK/audit$c-$i.json')).get('missing', [])))" 2>/dev/null || echo "?")
      [ "$m" = "?" ] || [ "$m" -le "$MISSING" ] || MISSING=$m
    done
    # txgen's own account: nothing rejected (a failover is retried, never
    # answered with a refusal), each acknowledged transfer once in its
    # receipts, and commits after the fault. Fault to first commit: the end
    # of txgen's commit gap that spans the fault (none: under 250 ms).
    read -r REC TXCHECK < <(python3 scripts/cluster_cycle.py "$WORK/r$c.json" "$WORK/r$c.txt" "$T_FAULT")
    RECOVERIES+=("$fault=$REC")
    echo "cycle $c ($fault of replica $victim): acknowledged so far $(wc -l < "$RECEIPTS"), missing $MISSING," \
         "audits [${AUDITS% }], converged at height $HEIGHT, fault took effect: $EFFECT, txgen exit ok=$TX_OK," \
         "txgen checks: $TXCHECK, fault to first commit ${REC} ms"
    if [ "$CONTROL" = 1 ]; then
      # Caught means acknowledged transfers missing, nothing else.
      if [ "$MISSING" != 0 ] && [ "$MISSING" != "?" ]; then CAUGHT=1; break 2; fi
      continue
    fi
    [ "$TX_OK" = yes ] && [ "$TXCHECK" = ok ] && [ "$EFFECT" = ok ] || { tail -5 "$WORK/txgen$c.log"; FAILED=1; }
  done
done
for i in $(seq 1 $N); do kill -TERM "${PID[$i]}" 2>/dev/null || true; done
for i in $(seq 1 $N); do wait "${PID[$i]}" 2>/dev/null || true; done
PID=()
if [ "$CONTROL" = 1 ]; then
  if [ "$CAUGHT" = 1 ]; then echo "control: the harness caught the unsafe cluster (as it must)"; exit 0; fi
  echo "control: the unsafe cluster was NOT caught: the harness cannot fail"; exit 1
fi
if [ "$FAILED" = 0 ]; then
  echo "cluster test passed: $CYCLE fault cycles, 0 lost; fault to first commit (ms): ${RECOVERIES[*]}"
else
  echo "cluster test FAILED"; exit 1
fi
