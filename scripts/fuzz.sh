#!/usr/bin/env bash
# Fuzzes the ledger with cargo-fuzz (libFuzzer, nightly): every target for
# SECONDS_PER_TARGET seconds (default 600), then minimises each corpus and
# prints, per target, the runs executed, the coverage and the findings. The
# summary is also written to target/fuzz-summary.txt; full logs go to
# target/fuzz-logs/<target>.log. Exits non-zero if any target found something.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment:
#   FUZZ_TARGETS    targets to run (default: all of `cargo fuzz list`)
#   FUZZ_PARALLEL   1 (default) runs the targets at the same time, 0 one after the other
#   FUZZ_SANITIZER  address (default) or none (faster; the ledger has no unsafe code)
#
# Targets (ledger/fuzz/fuzz_targets, logic in ledger/fuzz/src/lib.rs):
#   decode_op  every decoder of untrusted bytes, canonical encoding, batch == single verification
#   apply_ops  random operation programs against the state machine, invariants after every block
#
# A finding lands in ledger/fuzz/artifacts/<target>/. Minimise it with
#   cargo +nightly fuzz tmin --fuzz-dir ledger/fuzz <target> <artifact>
# and keep it in ledger/fuzz/regressions/<target>/: ledger/tests/fuzz_regressions.rs
# replays the seeds, the corpus and the regressions in the normal `cargo test`.
set -euo pipefail

SECS="${1:-600}"
cd "$(dirname "$0")/.."
FUZZ_DIR=ledger/fuzz
SANITIZER="${FUZZ_SANITIZER:-address}"
PARALLEL="${FUZZ_PARALLEL:-1}"
LOGS=target/fuzz-logs
SUMMARY=target/fuzz-summary.txt
mkdir -p "$LOGS"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

FUZZ=(cargo +nightly fuzz)
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    mapfile -t TARGETS < <("${FUZZ[@]}" list --fuzz-dir "$FUZZ_DIR")
fi

# Longest input per target: a body with its signature and framing fits in 512
# bytes; 1 KiB of program is ~100 instructions (the harness stops at 256).
max_len() {
    case "$1" in
    decode_op) echo 512 ;;
    apply_ops) echo 1024 ;;
    *) echo 4096 ;;
    esac
}

echo "fuzz.sh: building ${TARGETS[*]} (sanitizer: $SANITIZER)"
"${FUZZ[@]}" build --fuzz-dir "$FUZZ_DIR" --sanitizer "$SANITIZER"

declare -A PID START END STATUS BEFORE
artifacts() { find "$FUZZ_DIR/artifacts/$1" -type f 2>/dev/null | sort || true; }

run_target() {
    local t="$1"
    mkdir -p "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/artifacts/$t"
    # New inputs go to corpus/<t>; seeds/<t> (one valid encoding of every
    # operation type, written by the regression test) is read only.
    "${FUZZ[@]}" run --fuzz-dir "$FUZZ_DIR" --sanitizer "$SANITIZER" "$t" \
        "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/seeds/$t" -- \
        -max_total_time="$SECS" -max_len="$(max_len "$t")" -timeout=30 \
        -print_final_stats=1 >"$LOGS/$t.log" 2>&1
}

for t in "${TARGETS[@]}"; do
    BEFORE[$t]="$(artifacts "$t")"
    START[$t]=$(date +%s)
    echo "fuzz.sh: $t for ${SECS}s (log: $LOGS/$t.log)"
    if [ "$PARALLEL" = 1 ]; then
        run_target "$t" &
        PID[$t]=$!
    else
        set +e
        run_target "$t"
        STATUS[$t]=$?
        set -e
        END[$t]=$(date +%s)
    fi
done
if [ "$PARALLEL" = 1 ]; then
    for t in "${TARGETS[@]}"; do
        set +e
        wait "${PID[$t]}"
        STATUS[$t]=$?
        set -e
        END[$t]=$(date +%s)
    done
fi

# Minimise each corpus (cmin keeps the smallest set with the same coverage).
for t in "${TARGETS[@]}"; do
    echo "fuzz.sh: minimising the corpus of $t"
    "${FUZZ[@]}" cmin --fuzz-dir "$FUZZ_DIR" --sanitizer "$SANITIZER" "$t" "$FUZZ_DIR/corpus/$t" \
        -- -max_len="$(max_len "$t")" >"$LOGS/$t.cmin.log" 2>&1 ||
        echo "fuzz.sh: cmin of $t failed (see $LOGS/$t.cmin.log)" >&2
done

stat() { grep -E "^stat::$2:" "$LOGS/$1.log" | tail -1 | awk '{print $2}'; }
last_status_line() { grep -E '^#[0-9]+' "$LOGS/$1.log" | tail -1; }

found=0
{
    echo "ledger fuzzing: $(date -u +%Y-%m-%dT%H:%M:%SZ), ${SECS}s per target, sanitizer $SANITIZER, $(rustc +nightly --version)"
    for t in "${TARGETS[@]}"; do
        runs=$(stat "$t" number_of_executed_units)
        eps=$(stat "$t" average_exec_per_sec)
        rss=$(stat "$t" peak_rss_mb)
        line=$(last_status_line "$t")
        cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line")
        ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line")
        files=$(find "$FUZZ_DIR/corpus/$t" -type f | wc -l)
        bytes=$(du -sb "$FUZZ_DIR/corpus/$t" | cut -f1)
        new=$(comm -13 <(echo "${BEFORE[$t]}") <(artifacts "$t") | grep -v '^$' || true)
        if [ "${STATUS[$t]}" != 0 ] || [ -n "$new" ]; then
            found=1
            findings="FINDING (exit ${STATUS[$t]}): ${new:-see $LOGS/$t.log}"
        else
            findings="none"
        fi
        echo "== $t"
        echo "   seconds run:   $((END[$t] - START[$t]))"
        echo "   runs executed: ${runs:-?} (${eps:-?} exec/s), peak RSS ${rss:-?} MB"
        echo "   coverage:      cov ${cov:-?} edges, ft ${ft:-?} features"
        echo "   last line:     ${line:-?}"
        echo "   corpus:        $files files, $bytes bytes (after cmin)"
        echo "   findings:      $findings"
    done
} | tee "$SUMMARY"
exit "$found"
