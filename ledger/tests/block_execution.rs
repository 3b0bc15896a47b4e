//! One block-execution function (`exec::execute_block` / `exec::replay_block`)
//! behind the engine, the start-up replay (`Store::load`) and the auditor.
//!
//! - The three agree block for block on a chain that holds refused
//!   operations, duplicates, an expired retry and an empty block.
//! - What the copies of the loop used to disagree on: the engine refused an
//!   expired retry `EXPIRED` where the pipeline gives the original receipt;
//!   the auditor stopped on a stored operation that no longer applies with
//!   the block left open (and then reported an invariant the chain does not
//!   break); start-up accepted a block whose stored header differs from the
//!   replayed one when the stored hash matched, and a block whose operations
//!   are not at their positions, both of which the auditor refuses.

mod common;

use std::path::Path;

use common::*;
use ruble_ledger::audit::audit;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::crypto::{verify_ops_parallel, KeyCache};
use ruble_ledger::engine::{Ledger, Outcome};
use ruble_ledger::exec::replay_block;
use ruble_ledger::reason::Reason;
use ruble_ledger::state::State;
use ruble_ledger::store::{Receipt, Store, StoreError};
use ruble_ledger::types::{cursor_of, Hash32, TxId};

/// Validity of the operations of the late blocks (after the first
/// operations' validity, `T0 + 600_000`, has ended).
const LATE_UNTIL: u64 = T0 + 900_000;

fn pay(w: &mut World, from: &ed25519_dalek::SigningKey, to: &ed25519_dalek::SigningKey, amount: u64) -> SignedOp {
    pay_until(w, from, to, amount, T0 + 600_000)
}

fn pay_until(
    w: &mut World,
    from: &ed25519_dalek::SigningKey,
    to: &ed25519_dalek::SigningKey,
    amount: u64,
    until: u64,
) -> SignedOp {
    w.sign_until(
        from,
        Op::Transfer {
            payee: id(to),
            amount,
            purpose: String::new(),
        },
        until,
    )
}

fn committed(o: &Outcome) -> Receipt {
    match o {
        Outcome::Committed(r) => r.clone(),
        other => panic!("expected committed, got {other:?}"),
    }
}

/// Each block as the engine left it: (height, block hash, state hash).
type Recorded = Vec<(u64, Hash32, Hash32)>;

fn record(ledger: &Ledger, chain: &mut Recorded) {
    let s = ledger.state();
    chain.push((s.height(), s.head_hash(), s.state_hash()));
}

/// The operations of stored block `height`, verified again.
fn stored_ops(store: &Store, height: u64) -> Vec<ruble_ledger::exec::VerifiedOp> {
    let ops = store.block_ops(height).unwrap().into_iter().map(|s| s.op).collect();
    verify_ops_parallel(ops, &KeyCache::default(), 256)
}

/// Builds a chain through the engine, with a checkpoint after block 3 (so
/// that start-up replays blocks 4 to 6 and the auditor all six). Returns
/// the engine's record of every block and the acknowledged operations.
fn build(dir: &Path, w: &mut World) -> (Recorded, Vec<TxId>) {
    let mut ledger = Ledger::open(dir, Some(&w.genesis())).unwrap();
    let (a, b) = (key(100), key(101));
    let mut chain = Vec::new();
    let mut acked = Vec::new();
    let mut ack = |outs: &[Outcome]| acked.extend(outs.iter().filter_map(|o| o.receipt()).map(|r| r.tx_id));

    // 1: funding, all applied.
    let ops = w.fund_payers(&[a.clone(), b.clone()]);
    let out = ledger.execute(T0 + 1, ops).unwrap();
    assert!(out.iter().all(|o| matches!(o, Outcome::Committed(_))), "{out:?}");
    ack(&out);
    record(&ledger, &mut chain);

    // 2: one transfer applied; beside it, its copy (a duplicate in the same
    // block), too much, a forged signature, an operation already expired,
    // one valid for too long.
    let x = pay(w, &a, &b, 100);
    let mut forged = pay(w, &a, &b, 1);
    forged.signature[0] ^= 1;
    let ops = vec![
        x.clone(),
        x.clone(),
        pay(w, &a, &b, 20_000_000),
        forged,
        pay_until(w, &a, &b, 1, T0),
        pay_until(w, &a, &b, 1, T0 + 10_000_000),
    ];
    let out = ledger.execute(T0 + 2, ops).unwrap();
    let rx = committed(&out[0]);
    assert_eq!(out[1], Outcome::Duplicate(rx.clone()));
    assert_eq!(
        out[2..].iter().map(Outcome::reason).collect::<Vec<_>>(),
        [
            Reason::InsufficientFunds,
            Reason::BadSignature,
            Reason::Expired,
            Reason::ValidityTooLong
        ]
        .map(Some)
    );
    ack(&out);
    record(&ledger, &mut chain);

    // 3: a retry of x (the replay set refuses it) and a new transfer.
    let out = ledger.execute(T0 + 3, vec![x.clone(), pay(w, &b, &a, 30)]).unwrap();
    assert_eq!(out[0], Outcome::Duplicate(rx.clone()));
    committed(&out[1]);
    ack(&out);
    record(&ledger, &mut chain);
    ledger.store().checkpoint().unwrap();

    // 4: nothing applies; the engine seals the block empty.
    let out = ledger
        .execute(T0 + 4, vec![x.clone(), pay(w, &a, &b, 50_000_000)])
        .unwrap();
    assert_eq!(out[0], Outcome::Duplicate(rx.clone()));
    assert_eq!(out[1].reason(), Some(Reason::InsufficientFunds));
    record(&ledger, &mut chain);
    assert_eq!(ledger.store().header(4).unwrap().unwrap().0.op_count, 0);

    // 5: past x's validity. Its retry is refused EXPIRED by the state and
    // answered with its original receipt; another expired operation, never
    // committed, is refused.
    let z = pay_until(w, &a, &b, 7, LATE_UNTIL);
    let ops = vec![x.clone(), pay_until(w, &a, &b, 1, T0 + 500_000), z.clone()];
    let out = ledger.execute(T0 + 600_001, ops).unwrap();
    assert_eq!(
        out[0],
        Outcome::Duplicate(rx.clone()),
        "an expired retry gets its original receipt"
    );
    assert_eq!(out[1].reason(), Some(Reason::Expired));
    let rz = committed(&out[2]);
    ack(&out);
    record(&ledger, &mut chain);

    // 6: a retry of z and one more transfer.
    let out = ledger
        .execute(T0 + 600_002, vec![z, pay_until(w, &b, &a, 3, LATE_UNTIL)])
        .unwrap();
    assert_eq!(out[0], Outcome::Duplicate(rz));
    committed(&out[1]);
    ack(&out);
    record(&ledger, &mut chain);
    (chain, acked)
}

#[test]
fn the_engine_the_start_up_replay_and_the_auditor_agree_block_for_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let (chain, acked) = build(dir.path(), &mut w);
    let head = chain.last().unwrap().0;
    assert_eq!(head, 6);

    let ledger = Ledger::open(dir.path(), Some(&w.genesis())).unwrap();
    let store = ledger.store();
    // What the engine committed is what it computed.
    for &(height, hash, state_hash) in &chain {
        let (header, stored_hash) = store.header(height).unwrap().unwrap();
        assert_eq!((stored_hash, header.state_hash), (hash, state_hash), "block {height}");
    }

    // The shared replay, block by block from genesis, gives each block's
    // hash and state hash again.
    let (mut state, _) = State::genesis(&w.genesis()).unwrap();
    for &(height, hash, state_hash) in &chain {
        let (header, stored_hash) = store.header(height).unwrap().unwrap();
        let sealed = replay_block(&mut state, &header, &stored_hash, stored_ops(store, height))
            .unwrap_or_else(|e| panic!("block {height}: {e}"));
        assert_eq!((sealed.hash, state.state_hash()), (hash, state_hash), "block {height}");
    }

    // Start-up: the checkpoint after block 3, blocks 4 to 6 replayed (each
    // to its stored hash, or the open fails) to the engine's head.
    assert_eq!(store.checkpoint_height().unwrap(), 3);
    let (_, head_hash, head_state) = chain[chain.len() - 1];
    let s = ledger.state();
    assert_eq!(
        (s.height(), s.head_hash(), s.state_hash()),
        (head, head_hash, head_state)
    );
    s.check_invariants().unwrap();

    // The auditor: every block from genesis, to the same head.
    let r = audit(store, &acked).unwrap();
    assert!(r.ok, "{:?} {:?}", r.errors, r.missing);
    assert_eq!(r.blocks, head);
    assert_eq!(
        (r.head_hash, r.state_hash),
        (hex::encode(head_hash), hex::encode(head_state))
    );
}

/// The engine answered an expired retry of a committed operation `EXPIRED`;
/// the pipeline (and the docs: a resubmission gets its original receipt)
/// answer it with the original receipt. A never-committed expired
/// operation is still refused.
#[test]
fn an_expired_retry_gets_its_original_receipt_from_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let mut ledger = Ledger::open(dir.path(), Some(&w.genesis())).unwrap();
    let (a, b) = (key(100), key(101));
    ledger.execute(T0 + 1, w.fund_payers(&[a.clone(), b.clone()])).unwrap();
    let x = pay(&mut w, &a, &b, 100);
    let rx = committed(&ledger.execute(T0 + 2, vec![x.clone()]).unwrap()[0]);
    let never = pay_until(&mut w, &a, &b, 1, T0 + 500_000);
    let out = ledger.execute(T0 + 600_001, vec![x, never]).unwrap();
    assert_eq!(out[0], Outcome::Duplicate(rx));
    assert_eq!(out[1], Outcome::Rejected(Reason::Expired));
}

/// A chain for tampering: blocks 1 (funding), 2 (x, valid until
/// `T0 + 600_000`), 3 (two transfers, after x's validity) and 4 (one more).
fn tamper_chain(dir: &Path, w: &mut World) -> (SignedOp, Vec<TxId>) {
    let mut ledger = Ledger::open(dir, Some(&w.genesis())).unwrap();
    let (a, b) = (key(100), key(101));
    let mut acked = Vec::new();
    let mut blocks = vec![
        (T0 + 1, w.fund_payers(&[a.clone(), b.clone()])),
        (T0 + 2, vec![pay(w, &a, &b, 100)]),
    ];
    let x = blocks[1].1[0].clone();
    blocks.push((
        T0 + 600_001,
        vec![pay_until(w, &a, &b, 1, LATE_UNTIL), pay_until(w, &b, &a, 2, LATE_UNTIL)],
    ));
    blocks.push((T0 + 600_002, vec![pay_until(w, &a, &b, 3, LATE_UNTIL)]));
    for (ts, ops) in blocks {
        let out = ledger.execute(ts, ops).unwrap();
        assert!(out.iter().all(|o| matches!(o, Outcome::Committed(_))), "{out:?}");
        acked.extend(out.iter().map(|o| o.receipt().unwrap().tx_id));
    }
    (x, acked)
}

/// A stored block holding an operation that no longer applies on replay:
/// a copy of an earlier one still in its validity (`DUPLICATE`), or an
/// expired retry (`EXPIRED`). Neither can be in a block this chain sealed,
/// so start-up refuses and the auditor stops at that block and reports it,
/// with its state closed at the operations before it (it used to leave the
/// block open and then report a broken invariant).
#[test]
fn a_stored_duplicate_or_expired_retry_refuses_the_start_and_stops_the_audit_at_its_block() {
    for (case, reason) in [("duplicate", Reason::Duplicate), ("expired retry", Reason::Expired)] {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::new();
        let (x, acked) = tamper_chain(dir.path(), &mut w);
        // Block 3's second operation replaced by a copy of an earlier one:
        // for the duplicate, one of block 3's own operations (applied just
        // before it in the block); for the expired retry, x.
        let ledger = Ledger::open(dir.path(), None).unwrap();
        let copy = match reason {
            Reason::Duplicate => ledger.store().op_at(cursor_of(3, 0)).unwrap().unwrap().op,
            _ => x.clone(),
        };
        let mut raw = copy.to_stored();
        raw.push(0);
        ledger.store().tamper_op(cursor_of(3, 1), &raw).unwrap();

        let r = audit(ledger.store(), &acked).unwrap();
        assert!(!r.ok);
        let expected = format!("block 3 op 1 ({}): does not re-apply: {}", copy.tx_id, reason.code());
        assert!(r.errors.contains(&expected), "{case}: {:?}", r.errors);
        assert_eq!(
            (r.blocks, r.operations),
            (2, 7),
            "{case}: stops at block 3, after its first operation"
        );
        assert!(
            !r.errors.iter().any(|e| e.starts_with("invariant")),
            "{case}: the replayed state is a sealed one: {:?}",
            r.errors
        );
        drop(ledger);
        match Ledger::open(dir.path(), None) {
            Err(StoreError::Corrupt(msg)) => {
                let expected = format!(
                    "block 3 does not replay: operation 1 ({}) refused: {}",
                    copy.tx_id,
                    reason.code()
                );
                assert!(msg.contains(&expected), "{case}: {msg}");
            }
            Err(e) => panic!("{case}: unexpected error {e}"),
            Ok(_) => panic!("{case}: a block that does not replay must refuse the start"),
        }
    }
}

/// The store's column families, opened directly, to damage what the store
/// itself has no hook for (RocksDB checksums stay valid: this is a record
/// written wrong, not a flipped bit).
fn raw_db(dir: &Path) -> rocksdb::DB {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, dir).unwrap();
    rocksdb::DB::open_cf(&opts, dir, cfs).unwrap()
}

/// A stored header that is not the replayed one, its stored hash intact:
/// the hash alone agreed, and start-up (which compared only the hash)
/// served the wrong header while the auditor refused it. Both refuse it now.
#[test]
fn a_stored_header_that_differs_from_the_replayed_one_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let (_, acked) = tamper_chain(dir.path(), &mut w);
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("blocks").unwrap();
        let mut v = db.get_cf(&cf, 3u64.to_be_bytes()).unwrap().unwrap();
        v[72] ^= 1; // the first byte of the header's state hash
        db.put_cf(&cf, 3u64.to_be_bytes(), &v).unwrap();
    }
    match Ledger::open(dir.path(), None) {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains("block 3 does not replay"), "{msg}");
            assert!(msg.contains("state_hash"), "{msg}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a block whose header is not the replayed one must refuse the start"),
    }
    let store = Store::open(dir.path()).unwrap();
    let r = audit(&store, &acked).unwrap();
    assert!(
        r.errors
            .iter()
            .any(|e| e == "block 3: stored hash does not match its header"),
        "{:?}",
        r.errors
    );
}

/// Block 3's second operation moved from its position (index 1) to index 2:
/// the block still hashes the same, but its receipt and history would point
/// at nothing. The auditor refused it and start-up served it; both refuse it.
#[test]
fn an_operation_stored_out_of_its_place_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let (_, acked) = tamper_chain(dir.path(), &mut w);
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("ops").unwrap();
        let at = cursor_of(3, 1).to_be_bytes();
        let v = db.get_cf(&cf, at).unwrap().unwrap();
        db.delete_cf(&cf, at).unwrap();
        db.put_cf(&cf, cursor_of(3, 2).to_be_bytes(), &v).unwrap();
    }
    match Ledger::open(dir.path(), None) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("block 3 does not replay: operation 1"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an operation out of its place must refuse the start"),
    }
    let store = Store::open(dir.path()).unwrap();
    let r = audit(&store, &acked).unwrap();
    assert!(
        r.errors.iter().any(|e| e == "block 3: operation 1 stored out of place"),
        "{:?}",
        r.errors
    );
}
