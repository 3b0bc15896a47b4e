//! The pipeline: how blocks are cut under a trickle of operations, and its
//! answers to a resubmitted operation, at every age: a retry
//! is always answered with the original receipt and never pays twice,
//! whether the operation is still in memory (committed since the last
//! checkpoint), only in the written index (an older one, still valid), or
//! past its validity.

mod common;

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::engine::{Ledger, Outcome};
use ruble_ledger::pipeline::{Pipeline, PipelineConfig};
use ruble_ledger::reason::Reason;
use ruble_ledger::state::Genesis;
use ruble_ledger::store::{Receipt, Store, StoreOptions};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A genesis for a chain that starts now (not at the fixed test time), so
/// that validity windows pass in real time.
fn genesis_now(w: &World) -> Genesis {
    let mut genesis = w.genesis();
    genesis.timestamp_ms = now_ms() - 1_000;
    genesis
}

/// Submits `ops` without waiting: their outcomes arrive on `answers`.
fn submit_to(p: &Pipeline, ops: Vec<SignedOp>, answers: &Sender<Vec<Outcome>>) {
    let tx = answers.clone();
    p.submit(
        ops,
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
    )
    .unwrap();
}

/// Submits `ops` and waits for their outcomes.
fn submit(p: &Pipeline, ops: Vec<SignedOp>) -> Vec<Outcome> {
    let (tx, rx) = std::sync::mpsc::channel();
    submit_to(p, ops, &tx);
    rx.recv_timeout(Duration::from_secs(10)).expect("an answer")
}

fn committed(o: &Outcome) -> Receipt {
    match o {
        Outcome::Committed(r) => r.clone(),
        other => panic!("not committed: {other:?}"),
    }
}

#[test]
fn a_retry_gets_the_original_receipt_at_every_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let genesis = genesis_now(&w);
    // Checkpoints every 8 operations: the payment soon leaves memory.
    let opts = StoreOptions {
        checkpoint_ops: 8,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open_with(dir.path(), &opts).unwrap());
    let ledger = Ledger::from_store(store.clone(), Some(&genesis)).unwrap();
    let p = Pipeline::start(ledger, PipelineConfig::default(), Box::new(|_, _| {}));

    let (a, b) = (key(500), key(501));
    let until = now_ms() + 60_000;
    fund(&mut w, &p, &[a.clone(), b.clone()], until);

    // The payment expires 3 s from now.
    let expires = now_ms() + 3_000;
    let pay = transfer(&mut w, &a, &b, 1_00, "retried", expires);
    let original = committed(&submit(&p, vec![pay.clone()])[0]);
    let balance = |p: &Pipeline| p.store().account(&id(&b)).unwrap().unwrap().balance;
    let paid = balance(&p);

    // 1. Just committed: found in memory before verification.
    assert!(store.recent_tx_cursors(&[pay.tx_id])[0].is_some());
    assert_eq!(
        submit(&p, vec![pay.clone()]),
        vec![Outcome::Duplicate(original.clone())]
    );

    // 2. Written behind at a checkpoint, still valid: the sequencer's replay
    // set refuses it and the answer carries the original receipt.
    let mut nonce_payee = 0u64;
    while store.recent_tx_cursors(&[pay.tx_id])[0].is_some() {
        nonce_payee += 1;
        let filler = transfer(&mut w, &b, &a, 1, &format!("filler {nonce_payee}"), until);
        committed(&submit(&p, vec![filler])[0]);
        assert!(nonce_payee < 200, "the payment never left memory");
    }
    assert!(now_ms() < expires, "the test ran too slowly to check a valid retry");
    assert_eq!(
        submit(&p, vec![pay.clone()]),
        vec![Outcome::Duplicate(original.clone())]
    );

    // 3. Past its validity: still the original receipt, not EXPIRED.
    while now_ms() <= expires + 50 {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(submit(&p, vec![pay.clone()]), vec![Outcome::Duplicate(original)]);
    // An operation that expired without ever being committed is EXPIRED.
    let late = transfer(&mut w, &a, &b, 1_00, "late", expires);
    assert_eq!(submit(&p, vec![late]), vec![Outcome::Rejected(Reason::Expired)]);

    // Paid once, whatever the retries (the fillers went the other way).
    assert_eq!(balance(&p), paid - nonce_payee);
    // What RocksDB holds in memory is reported (the blocks are in memtables).
    let (_cache, memtables) = store.rocksdb_memory().unwrap();
    assert!(memtables > 0);
    p.shutdown();
}

/// Opens and funds `payers` through the pipeline, every operation signed
/// valid until `until` (a chain starting now); all must commit. Returns the
/// last one's receipt.
fn fund(w: &mut World, p: &Pipeline, payers: &[ed25519_dalek::SigningKey], until: u64) -> Receipt {
    let funding: Vec<SignedOp> = w
        .fund_payers(payers)
        .into_iter()
        .map(|op| w.sign_until(&signer_of(w, &op), op.body.op.clone(), until))
        .collect();
    let receipts: Vec<Receipt> = submit(p, funding).iter().map(committed).collect();
    receipts.last().expect("something to fund").clone()
}

/// `from` pays `to`, signed valid until `until`.
fn transfer(
    w: &mut World,
    from: &ed25519_dalek::SigningKey,
    to: &ed25519_dalek::SigningKey,
    amount: u64,
    purpose: &str,
    until: u64,
) -> SignedOp {
    let op = Op::Transfer {
        payee: id(to),
        amount,
        purpose: purpose.into(),
    };
    w.sign_until(from, op, until)
}

/// The key that signed `op` (the funding ops are re-signed with a validity
/// that suits a chain starting now).
fn signer_of(w: &World, op: &SignedOp) -> ed25519_dalek::SigningKey {
    [w.cb.clone(), w.banks[0].clone(), w.banks[1].clone()]
        .into_iter()
        .find(|k| id(k) == op.body.signer)
        .expect("funding is signed by the central bank or bank 0")
}

#[test]
fn a_trickle_of_operations_waits_out_the_minimum_block_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let ledger = Ledger::open(dir.path(), Some(&genesis_now(&w))).unwrap();
    let gap = Duration::from_millis(300);
    let cfg = PipelineConfig {
        min_block_interval: gap,
        max_block_wait: Duration::from_secs(2),
        ..PipelineConfig::default()
    };
    let p = Pipeline::start(ledger, cfg, Box::new(|_, _| {}));
    let (a, b) = (key(500), key(501));
    let until = now_ms() + 60_000;
    let funded = fund(&mut w, &p, &[a.clone(), b.clone()], until);
    let after_funding = std::time::Instant::now();

    // Five transfers, 10 ms apart, each submitted alone while the committer
    // is idle: without the interval each would be sealed into a block of
    // its own; with it they wait for the interval and share one block.
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..5 {
        let op = transfer(&mut w, &a, &b, 1, &format!("trickle {i}"), until);
        submit_to(&p, vec![op], &tx);
        std::thread::sleep(Duration::from_millis(10));
    }
    let receipts: Vec<Receipt> = (0..5)
        .map(|_| committed(&rx.recv_timeout(Duration::from_secs(10)).expect("an answer")[0]))
        .collect();
    // The funding block was sealed before its answer; the next seal comes
    // at least `gap` after that (less the funding block's commit time).
    assert!(
        after_funding.elapsed() >= gap - Duration::from_millis(100),
        "answered {:?} after the previous block",
        after_funding.elapsed()
    );
    assert!(receipts.iter().all(|r| r.height == funded.height + 1), "{receipts:?}");
    p.shutdown();
}

/// Dropping the pipeline without `shutdown` still commits what it admitted
/// and closes the store before the drop returns. (Threads left holding the
/// store past the drop kept RocksDB open while a test process exited, which
/// aborted it; here the data directory could not be opened again.)
#[test]
fn dropping_the_pipeline_commits_what_it_admitted_and_closes_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let ledger = Ledger::open(dir.path(), Some(&genesis_now(&w))).unwrap();
    // A slow commit hook keeps the committer busy well past the drop's call.
    let hook = Box::new(|_: &Arc<_>, _: &_| std::thread::sleep(Duration::from_millis(200)));
    let p = Pipeline::start(ledger, PipelineConfig::default(), hook);
    let (a, b) = (key(500), key(501));
    let until = now_ms() + 60_000;
    let funded = fund(&mut w, &p, &[a.clone(), b.clone()], until);
    let (tx, rx) = std::sync::mpsc::channel();
    submit_to(
        &p,
        vec![transfer(&mut w, &a, &b, 1, "in flight at the drop", until)],
        &tx,
    );
    drop(p);
    let answer = rx.try_recv().expect("answered before the drop returned");
    let receipt = committed(&answer[0]);
    let reopened = Ledger::open(dir.path(), None).expect("the store is closed after the drop");
    assert_eq!(reopened.state().height(), receipt.height);
    assert!(receipt.height > funded.height);
}

/// Each committed submission's time is split into the stages that held it,
/// and a delay shows in the stage that caused it: a block sealed while the
/// committer is still busy with the previous one (here, a commit hook that
/// sleeps) spends that time in `commit`, not in verification or sequencing.
#[test]
fn a_submission_held_behind_a_busy_committer_is_timed_in_the_commit_stage() {
    use ruble_ledger::pipeline::CommitTimes;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let ledger = Ledger::open(dir.path(), Some(&genesis_now(&w))).unwrap();
    let stall = Duration::from_millis(400);
    let slow_next = Arc::new(AtomicBool::new(false));
    let seen: Arc<parking_lot::Mutex<Vec<(u64, CommitTimes)>>> = Arc::default();
    let hook = {
        let (slow_next, seen) = (slow_next.clone(), seen.clone());
        Box::new(move |block: &Arc<ruble_ledger::state::SealedBlock>, t: &CommitTimes| {
            seen.lock().push((block.header.height, t.clone()));
            // Runs after the block's replies: the next block is sealed
            // meanwhile and waits for the committer.
            if slow_next.swap(false, Ordering::AcqRel) {
                std::thread::sleep(stall);
            }
        })
    };
    let p = Pipeline::start(ledger, PipelineConfig::default(), hook);
    let (a, b) = (key(500), key(501));
    let until = now_ms() + 60_000;
    let funded = fund(&mut w, &p, &[a.clone(), b.clone()], until);
    // The hook runs after a block's replies: wait for the funding block's,
    // or it could be the one to take the stall meant for `first`.
    let t0 = Instant::now();
    while !seen.lock().iter().any(|(h, _)| *h == funded.height) {
        assert!(t0.elapsed() < Duration::from_secs(10), "the funding block's hook ran");
        std::thread::sleep(Duration::from_millis(1));
    }

    slow_next.store(true, Ordering::Release);
    let first = committed(&submit(&p, vec![transfer(&mut w, &a, &b, 1, "before the stall", until)])[0]);
    // Answered before the hook stalls: this one is sealed during the stall.
    let sent = Instant::now();
    let second = committed(&submit(&p, vec![transfer(&mut w, &a, &b, 1, "behind the stall", until)])[0]);
    let waited = sent.elapsed();
    p.shutdown();

    let seen = seen.lock();
    for (height, t) in seen.iter() {
        assert_eq!(t.submissions.len(), 1, "block {height}: one submission each");
        assert!(t.submissions[0].commit >= t.write, "block {height}: {t:?}");
    }
    let (_, t) = seen.iter().find(|(h, _)| *h == second.height).expect("hook ran for it");
    let s = t.submissions[0];
    assert!(first.height < second.height);
    assert!(s.commit >= stall / 2, "the stall is in the commit stage: {s:?}");
    assert!(
        s.commit > s.verify + s.sequence + s.block,
        "and not in the others: {s:?}"
    );
    assert!(
        s.verify + s.sequence + s.block + s.commit <= waited,
        "the stages are parts of the wait ({waited:?}): {s:?}"
    );
}

/// A sink that holds each block until the test releases it, then commits it
/// locally; it can also be told to fail the next commit.
struct GatedSink {
    local: ruble_ledger::pipeline::LocalSink,
    release: parking_lot::Mutex<std::sync::mpsc::Receiver<()>>,
    fail_next: std::sync::atomic::AtomicBool,
    seen: parking_lot::Mutex<Vec<u64>>,
    recovered: std::sync::atomic::AtomicUsize,
}

impl ruble_ledger::pipeline::BlockSink for GatedSink {
    fn commit(&self, block: &ruble_ledger::state::SealedBlock) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        self.seen.lock().push(block.header.height);
        self.release
            .lock()
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "not released".to_string())?;
        if self.fail_next.swap(false, Ordering::AcqRel) {
            return Err("quorum lost".into());
        }
        self.local.commit(block)
    }

    fn recover(&self) -> Result<ruble_ledger::state::State, String> {
        self.recovered.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.local.recover()
    }
}

/// The committer answers a block's submissions only once the sink says the
/// block is durable, whatever the sink (a replicated node's sink returns
/// when a quorum holds the block); a sink that fails answers `Unavailable`,
/// and the pipeline goes on from the state the sink recovers.
#[test]
fn submissions_are_answered_only_after_the_sink_made_their_block_durable() {
    use ruble_ledger::pipeline::{LocalSink, SystemClock};
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let ledger = Ledger::open(dir.path(), Some(&genesis_now(&w))).unwrap();
    let store = ledger.store().clone();
    let (release, gate) = std::sync::mpsc::channel();
    let sink = Arc::new(GatedSink {
        local: LocalSink(store.clone()),
        release: parking_lot::Mutex::new(gate),
        fail_next: Default::default(),
        seen: Default::default(),
        recovered: Default::default(),
    });
    let p = Pipeline::start_with(
        ledger,
        PipelineConfig::default(),
        Box::new(|_, _| {}),
        sink.clone(),
        Arc::new(SystemClock),
    );
    let (a, b) = (key(500), key(501));
    let until = now_ms() + 60_000;
    let (tx, rx) = std::sync::mpsc::channel();
    let funding: Vec<SignedOp> = w
        .fund_payers(&[a.clone(), b.clone()])
        .into_iter()
        .map(|op| w.sign_until(&signer_of(&w, &op), op.body.op.clone(), until))
        .collect();
    submit_to(&p, funding, &tx);
    // Sealed and handed to the sink, but not answered while the sink holds it.
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "answered before durable"
    );
    assert_eq!(store.head_height().unwrap(), 0);
    release.send(()).unwrap();
    let funded = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(funded.iter().all(|o| matches!(o, Outcome::Committed(_))), "{funded:?}");
    let head = store.head_height().unwrap();
    assert_eq!(head, *sink.seen.lock().last().unwrap());

    // A failed commit: Unavailable, nothing written, and the pipeline goes on
    // from the recovered state.
    sink.fail_next.store(true, Ordering::Release);
    let lost = transfer(&mut w, &a, &b, 1_00, "lost quorum", until);
    submit_to(&p, vec![lost.clone()], &tx);
    release.send(()).unwrap();
    let answer = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(answer, vec![Outcome::Rejected(Reason::Unavailable)]);
    assert_eq!(store.head_height().unwrap(), head);
    // The recovery happens on the next retry tick; then the retry commits.
    let mut retried = None;
    for _ in 0..50 {
        if let Ok(()) = p.submit(
            vec![lost.clone()],
            Box::new({
                let tx = tx.clone();
                move |o| {
                    let _ = tx.send(o);
                }
            }),
        ) {
            release.send(()).unwrap();
            retried = Some(rx.recv_timeout(Duration::from_secs(10)).unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let retried = retried.expect("the pipeline accepts again after recovery");
    assert!(matches!(retried[0], Outcome::Committed(_)), "{retried:?}");
    assert!(sink.recovered.load(Ordering::Acquire) >= 1);
    assert_eq!(store.head_height().unwrap(), head + 1);
    // Unblock the shutdown's last commit, if any.
    let _ = release.send(());
    drop(p);
}

/// Block timestamps come from the pipeline's clock, and never go backwards
/// even when the clock does (a leader change to a node whose clock is behind
/// must not make the chain's time run back).
#[test]
fn block_timestamps_follow_the_clock_and_never_go_backwards() {
    use ruble_ledger::pipeline::{Clock, LocalSink};
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Manual(AtomicU64);
    impl Clock for Manual {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::Acquire)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let genesis = genesis_now(&w);
    let ledger = Ledger::open(dir.path(), Some(&genesis)).unwrap();
    let store = ledger.store().clone();
    let t1 = genesis.timestamp_ms + 5_000;
    let clock = Arc::new(Manual(AtomicU64::new(t1)));
    let p = Pipeline::start_with(
        ledger,
        PipelineConfig::default(),
        Box::new(|_, _| {}),
        Arc::new(LocalSink(store.clone())),
        clock.clone(),
    );
    let (a, b) = (key(500), key(501));
    let until = now_ms() + 60_000;
    let r1 = fund(&mut w, &p, &[a.clone(), b.clone()], until);
    let ts = |h: u64| store.header(h).unwrap().unwrap().0.timestamp_ms;
    assert_eq!(ts(r1.height), t1, "the block's time is the clock's");
    // The clock jumps back a minute: the next block keeps the previous time.
    clock.0.store(t1 - 60_000, Ordering::Release);
    let r2 = committed(&submit(&p, vec![transfer(&mut w, &a, &b, 1, "clock behind", until)])[0]);
    assert!(r2.height > r1.height);
    assert_eq!(ts(r2.height), t1);
    clock.0.store(t1 + 1_000, Ordering::Release);
    let r3 = committed(&submit(&p, vec![transfer(&mut w, &a, &b, 1, "clock ahead", until)])[0]);
    assert_eq!(ts(r3.height), t1 + 1_000);
}
