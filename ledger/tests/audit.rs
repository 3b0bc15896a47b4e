//! The auditor replays the chain and catches tampering with a stored
//! operation, a stored block and a stored balance; start-up refuses a store
//! whose state does not match its head block.

mod common;

use common::*;
use ruble_ledger::audit::audit;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::engine::Ledger;
use ruble_ledger::store::StoreError;
use ruble_ledger::types::{cursor_of, AccountKind};

fn build_chain(dir: &std::path::Path) -> (World, Vec<SignedOp>) {
    let mut w = World::new();
    let g = w.genesis();
    let mut ledger = Ledger::open(dir, Some(&g)).unwrap();
    let cb = w.cb.clone();
    let bank = w.banks[0].clone();
    let a = key(100);
    let b = key(101);
    let mut all = Vec::new();
    let blocks = vec![
        vec![
            w.sign(
                &cb,
                Op::Issue {
                    bank: id(&bank),
                    amount: 1_000_00,
                },
            ),
            w.sign(
                &bank,
                Op::OpenAccount {
                    account: id(&a),
                    kind: AccountKind::Business,
                },
            ),
            w.sign(
                &bank,
                Op::OpenAccount {
                    account: id(&b),
                    kind: AccountKind::Business,
                },
            ),
        ],
        vec![w.sign(
            &bank,
            Op::Transfer {
                payee: id(&a),
                amount: 500_00,
                purpose: "fund".into(),
            },
        )],
        vec![
            w.sign(
                &a,
                Op::Transfer {
                    payee: id(&b),
                    amount: 100_00,
                    purpose: "inv 1".into(),
                },
            ),
            w.sign(
                &a,
                Op::Transfer {
                    payee: id(&b),
                    amount: 50_00,
                    purpose: "inv 2".into(),
                },
            ),
        ],
    ];
    for (i, ops) in blocks.into_iter().enumerate() {
        all.extend(ops.clone());
        let out = ledger.execute(T0 + i as u64, ops).unwrap();
        assert!(out.iter().all(|o| o.receipt().is_some()), "{out:?}");
    }
    (w, all)
}

#[test]
fn clean_chain_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ops) = build_chain(dir.path());
    let ledger = Ledger::open(dir.path(), None).unwrap();
    let r = audit(ledger.store(), &ops.iter().map(|o| o.tx_id).collect::<Vec<_>>()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(
        (r.blocks, r.operations, r.issued, r.in_circulation),
        (3, 6, 1_000_00, 1_000_00)
    );
    // An operation never committed is reported missing.
    let mut w = World::new();
    let stray = w.sign_until(&key(100), Op::Freeze { account: id(&key(100)) }, T0 + 99);
    let r = audit(ledger.store(), &[stray.tx_id]).unwrap();
    assert!(!r.ok);
    assert_eq!(r.missing, vec![stray.tx_id.to_hex()]);
}

#[test]
fn tampered_operation_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = build_chain(dir.path());
    let ledger = Ledger::open(dir.path(), None).unwrap();
    // Re-write the amount of block 3's first transfer, keeping the old signature.
    let stored = ledger.store().op_at(cursor_of(3, 0)).unwrap().unwrap();
    let mut body = stored.op.body.clone();
    if let Op::Transfer { amount, .. } = &mut body.op {
        *amount = 400_00;
    }
    let mut forged = stored.op.clone();
    forged.body_bytes = body.encode();
    let mut raw = forged.to_stored();
    raw.push(0);
    ledger.store().tamper_op(cursor_of(3, 0), &raw).unwrap();
    let r = audit(ledger.store(), &[]).unwrap();
    assert!(!r.ok);
    assert!(r.errors.iter().any(|e| e.contains("bad signature")), "{:?}", r.errors);

    // Replace it with a *validly signed* different operation: the ops root and the state no longer match.
    let valid = w.sign(
        &key(100),
        Op::Transfer {
            payee: id(&key(101)),
            amount: 1_00,
            purpose: "x".into(),
        },
    );
    let mut raw = valid.to_stored();
    raw.push(0);
    ledger.store().tamper_op(cursor_of(3, 0), &raw).unwrap();
    let r = audit(ledger.store(), &[]).unwrap();
    assert!(!r.ok);
    assert!(
        r.errors.iter().any(|e| e.contains("operations root differs")),
        "{:?}",
        r.errors
    );
}

#[test]
fn tampered_balance_is_caught_by_audit_and_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    build_chain(dir.path());
    {
        let ledger = Ledger::open(dir.path(), None).unwrap();
        // Account values reach their column family at a checkpoint (a clean
        // shutdown writes one); before it, they are rebuilt from the blocks.
        ledger.store().checkpoint().unwrap();
        let mut acct = ledger.store().account(&id(&key(101))).unwrap().unwrap();
        acct.balance += 1_000_00;
        ledger.store().tamper_account(&acct).unwrap();
        let r = audit(ledger.store(), &[]).unwrap();
        assert!(!r.ok);
        assert!(r.errors.iter().any(|e| e.contains("stored balance")), "{:?}", r.errors);
        assert!(
            r.errors
                .iter()
                .any(|e| e.contains("start-up check") && e.contains("state hash")),
            "{:?}",
            r.errors
        );
    }
    match Ledger::open(dir.path(), None) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("state hash"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a tampered store must not open"),
    }
}

/// The replay reads and verifies blocks a window ahead (at most 1,024 blocks
/// or 16,384 operations each) while it applies the previous window: a chain
/// of more than one window replays whole, and a forgery past the first
/// window stops the replay at exactly its block.
#[test]
fn a_chain_longer_than_a_window_replays_whole_and_a_later_forgery_stops_it_at_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut ops) = build_chain(dir.path());
    let mut ledger = Ledger::open(dir.path(), None).unwrap();
    let (a, b) = (key(100), key(101));
    for i in 0..1_100u64 {
        let op = w.sign(
            &a,
            Op::Transfer {
                payee: id(&b),
                amount: 1,
                purpose: String::new(),
            },
        );
        ops.push(op.clone());
        let out = ledger.execute(T0 + 10 + i, vec![op]).unwrap();
        assert!(out[0].receipt().is_some(), "{out:?}");
    }
    let ids: Vec<_> = ops.iter().map(|o| o.tx_id).collect();
    let r = audit(ledger.store(), &ids).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!((r.blocks, r.operations), (1_103, 1_106));

    // Block 1,053 (the second window) carries an amount its signature does not cover.
    let at = cursor_of(1_053, 0);
    let stored = ledger.store().op_at(at).unwrap().unwrap();
    let mut forged = stored.op.clone();
    let mut body = forged.body.clone();
    if let Op::Transfer { amount, .. } = &mut body.op {
        *amount = 2;
    }
    forged.body_bytes = body.encode();
    let mut raw = forged.to_stored();
    raw.push(0);
    ledger.store().tamper_op(at, &raw).unwrap();
    let r = audit(ledger.store(), &ids).unwrap();
    assert!(!r.ok);
    assert_eq!(r.blocks, 1_052, "every block before the forged one replayed");
    assert!(
        r.errors
            .iter()
            .any(|e| e.starts_with("block 1053 op 0") && e.contains("bad signature")),
        "{:?}",
        r.errors
    );
}
