//! The fuzz targets' corpora as regression tests, on stable.
//!
//! `ledger/fuzz/src/lib.rs` holds the logic of both `cargo fuzz` targets as
//! plain functions; this test includes it and replays every input kept under
//! `ledger/fuzz/{seeds,corpus,regressions}/<target>/`: the hand-written seeds
//! (a valid encoding of every operation type), the minimised corpus of the
//! last fuzzing run (`scripts/fuzz.sh`) and every crash ever found.
//!
//! `RUBLE_WRITE_FUZZ_SEEDS=1 cargo test -p ruble-ledger --test fuzz_regressions seeds`
//! rewrites the seed files after a change to the harness or the encoding.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ruble_ledger::codec::{Op, OpBody, SignedOp};

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

/// Input files of a directory (sorted; a missing directory has none).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    v.sort();
    v
}

fn replay(target: &str, f: fn(&[u8])) {
    let seeds = inputs(&dir("seeds", target));
    let corpus = inputs(&dir("corpus", target));
    let regressions = inputs(&dir("regressions", target));
    assert!(!seeds.is_empty(), "no seeds for {target}: the test would check nothing");
    assert!(
        !corpus.is_empty(),
        "no corpus for {target}: run scripts/fuzz.sh (the test would check nothing)"
    );
    for p in seeds.iter().chain(&corpus).chain(&regressions) {
        let data = fs::read(p).unwrap();
        // Stops at the first failing input, and names it.
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(&data))) {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("{target} fails on {}: {msg}", p.display());
        }
    }
    eprintln!(
        "{target}: {} seeds, {} corpus inputs, {} regressions replayed",
        seeds.len(),
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn decode_op_corpus_and_regressions() {
    replay("decode_op", harness::decode_op);
}

#[test]
fn apply_ops_corpus_and_regressions() {
    replay("apply_ops", harness::apply_ops);
}

/// The seed files are what the harness generates (so they still decode and
/// sign as intended), and they hold every operation type in every form.
#[test]
fn seeds_are_current_and_cover_every_operation() {
    let write = std::env::var_os("RUBLE_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in harness::seed_inputs() {
        let path = dir("seeds", target).join(&name);
        if write {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &bytes).unwrap();
        }
        let on_disk = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            on_disk,
            bytes,
            "{} is stale: rerun with RUBLE_WRITE_FUZZ_SEEDS=1",
            path.display()
        );
    }
    let mut bodies = BTreeSet::new();
    let mut signed = BTreeSet::new();
    let mut stored = BTreeSet::new();
    for p in inputs(&dir("seeds", "decode_op")) {
        let b = fs::read(&p).unwrap();
        if let Ok(body) = OpBody::decode(&b) {
            bodies.insert(body.op.tag());
        }
        if b.len() >= 64 {
            if let Ok(op) = SignedOp::decode(&b[..b.len() - 64], &b[b.len() - 64..]) {
                assert!(ruble_ledger::crypto::verify_single(
                    &op.body.signer.0,
                    &ruble_ledger::codec::signing_message(&op.body_bytes),
                    &op.signature
                ));
                signed.insert(op.body.op.tag());
            }
        }
        if let Ok((op, _)) = SignedOp::from_stored(&b) {
            stored.insert(op.body.op.tag());
        }
    }
    let all: BTreeSet<u8> = harness::sample_ops().iter().map(|(_, op)| op.tag()).collect();
    assert_eq!(all.len(), 27, "sample_ops has one operation of each type");
    // A new Op variant must get a seed: this match stops compiling until then.
    for (_, op) in harness::sample_ops() {
        match op {
            Op::Issue { .. }
            | Op::Redeem { .. }
            | Op::OpenAccount { .. }
            | Op::CloseAccount { .. }
            | Op::Transfer { .. }
            | Op::Freeze { .. }
            | Op::Unfreeze { .. }
            | Op::AdmitBank { .. }
            | Op::SuspendBank { .. }
            | Op::SetPhase { .. }
            | Op::SetLimits { .. }
            | Op::SetReportingThreshold { .. }
            | Op::FreezeReceiveOnly { .. }
            | Op::SetControls { .. }
            | Op::FlagFraud { .. }
            | Op::ConfirmPayment { .. }
            | Op::ReleasePayment { .. }
            | Op::VoidPayment { .. }
            | Op::Collect { .. }
            | Op::DefinePurpose { .. }
            | Op::PayTagged { .. }
            | Op::SetCategory { .. }
            | Op::SetSweep { .. }
            | Op::SetTier { .. }
            | Op::SetTierLimits { .. }
            | Op::RotateKey { .. }
            | Op::SetSignatories { .. } => {}
        }
    }
    assert_eq!(bodies, all, "a body seed of every operation type");
    assert_eq!(signed, all, "a validly signed seed of every operation type");
    assert_eq!(stored, all, "a stored-form seed of every operation type");
}
