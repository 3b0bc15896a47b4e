//! Checkpoints: account values, history and the tx index reach their column
//! families only every so many operations, written behind by a background
//! thread; in between they are served from memory and, after a crash,
//! rebuilt from the blocks. Every read must look the same at any point of
//! that cycle (also while a checkpoint is being written), and a restart must
//! give back the same state.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::checkpointing::{open, options};
use common::*;
use ruble_ledger::codec::Op;
use ruble_ledger::engine::{Ledger, Outcome};
use ruble_ledger::store::{touched_by, Store, StoreError, StoreOptions};
use ruble_ledger::types::{AccountId, Hash32};

const PAYERS: u64 = 12;

fn payers() -> Vec<ed25519_dalek::SigningKey> {
    (0..PAYERS).map(|i| key(100 + i)).collect()
}

/// Opens and funds the payers' accounts.
fn fund(ledger: &mut Ledger, w: &mut World) {
    let fund = w.fund_payers(&payers());
    assert!(ledger.execute(T0, fund).unwrap().iter().all(|o| o.receipt().is_some()));
}

/// Block `b`: 9 transfers among the payers.
fn block_transfers(w: &mut World, b: u64) -> Vec<ruble_ledger::codec::SignedOp> {
    let payers = payers();
    (0..9)
        .map(|i| {
            let (p, q) = ((b * 9 + i) % PAYERS, (b * 5 + i * 7 + 1) % PAYERS);
            let q = if p == q { (q + 1) % PAYERS } else { q };
            w.sign(
                &payers[p as usize],
                Op::Transfer {
                    payee: id(&payers[q as usize]),
                    amount: 1_00 + b,
                    purpose: format!("b{b} i{i}"),
                },
            )
        })
        .collect()
}

/// `blocks` blocks of 9 transfers among the payers.
fn build(ledger: &mut Ledger, w: &mut World, blocks: u64) {
    for b in 0..blocks {
        let ops = block_transfers(w, b);
        let out = ledger.execute(T0 + 1 + b, ops).unwrap();
        assert!(out.iter().all(|o| o.receipt().is_some()), "{out:?}");
    }
}

/// Every account's history as the chain itself says (scanning all blocks).
fn history_from_blocks(store: &Store) -> BTreeMap<AccountId, Vec<u64>> {
    let mut h: BTreeMap<AccountId, Vec<u64>> = BTreeMap::new();
    for height in 1..=store.head_height().unwrap() {
        for s in store.block_ops(height).unwrap() {
            for a in touched_by(&s.op) {
                h.entry(a).or_default().push(s.cursor);
            }
        }
    }
    h
}

/// Checks every read path against the in-memory state and the blocks.
fn check_reads(ledger: &Ledger) -> Hash32 {
    let (state, store) = (ledger.state(), ledger.store());
    let mut ids: Vec<_> = state.accounts().map(|a| a.id).collect();
    ids.sort_unstable();
    for id in &ids {
        assert_eq!(store.account(id).unwrap().as_ref(), state.account(id), "account {id}");
    }
    let all = store.all_accounts().unwrap();
    assert_eq!(
        all.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids,
        "all_accounts lists every account once, in order"
    );
    for a in &all {
        assert_eq!(Some(a), state.account(&a.id));
    }
    // Every committed operation is found where it sits, whether its index
    // entry is written yet or still pending.
    for height in 1..=store.head_height().unwrap() {
        for s in store.block_ops(height).unwrap() {
            assert_eq!(
                store.tx_cursor(&s.op.tx_id).unwrap(),
                Some(s.cursor),
                "tx {}",
                s.op.tx_id
            );
            assert_eq!(store.receipt(&s.op.tx_id).unwrap().unwrap().cursor(), s.cursor);
        }
    }
    for (acct, cursors) in history_from_blocks(store) {
        assert_eq!(
            store.history(&acct, 0, usize::MAX).unwrap(),
            cursors,
            "history of {acct}"
        );
        // Paging with small pages gives the same list, with no gap or repeat.
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = store.history(&acct, after, 3).unwrap();
            if page.is_empty() {
                break;
            }
            after = *page.last().unwrap();
            paged.extend(page);
        }
        assert_eq!(paged, cursors, "paged history of {acct}");
    }
    state.check_invariants().unwrap();
    state.state_hash()
}

#[test]
fn reads_agree_before_and_after_checkpoints_and_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let mut ledger = open(dir.path(), &w);
    fund(&mut ledger, &mut w);
    build(&mut ledger, &mut w, 23);
    let hash = check_reads(&ledger);
    let height = ledger.state().height();
    drop(ledger);

    // A crash (no checkpoint on the way out): the blocks after the last
    // checkpoint are replayed, and everything reads the same.
    let ledger = open(dir.path(), &w);
    assert_eq!(ledger.state().height(), height);
    assert_eq!(check_reads(&ledger), hash);

    // A clean stop writes a checkpoint at the head: the same again.
    ledger.store().flush().unwrap();
    drop(ledger);
    let mut ledger = open(dir.path(), &w);
    assert_eq!(check_reads(&ledger), hash);

    // And the chain goes on from there.
    build(&mut ledger, &mut w, 5);
    check_reads(&ledger);
}

#[test]
fn a_block_after_the_checkpoint_that_does_not_replay_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let mut ledger = open(dir.path(), &w);
    fund(&mut ledger, &mut w);
    build(&mut ledger, &mut w, 23);
    let head = ledger.state().height();
    let last = ledger.store().block_ops(head).unwrap();
    // Swap in a validly signed, different operation: it applies, but the
    // block no longer hashes to what was committed.
    let other = w.sign(
        &key(100),
        Op::Transfer {
            payee: id(&key(101)),
            amount: 7,
            purpose: "not what was committed".into(),
        },
    );
    let mut raw = other.to_stored();
    raw.push(0);
    ledger.store().tamper_op(last[0].cursor, &raw).unwrap();
    drop(ledger);
    match Ledger::open_with(dir.path(), Some(&w.genesis()), &options()) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains(&format!("block {head} does not replay")), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a block that does not replay must refuse the start"),
    }
}

/// Readers on other threads while blocks commit and checkpoints are handed
/// to the background writer every few blocks: every view they get is whole
/// (the balances always sum to the money in circulation, no account is
/// missing or doubled, every acknowledged operation is found, history never
/// repeats or skips a cursor).
#[test]
fn reads_stay_whole_while_checkpoints_are_written_behind() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let mut ledger = open(dir.path(), &w);
    fund(&mut ledger, &mut w);
    let circulation = ledger.state().totals().circulation() as u128;
    let accounts = ledger.state().account_count();
    let store = ledger.store().clone();
    let done = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<ruble_ledger::types::TxId>>> = Arc::default();
    let watched = id(&key(100));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done, acknowledged) = (store.clone(), done.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let mut views = 0u64;
                while !done.load(Ordering::Acquire) {
                    let known: Vec<_> = acknowledged.lock().unwrap().clone();
                    let all = store.all_accounts().unwrap();
                    assert_eq!(all.len(), accounts, "every account once");
                    assert!(all.windows(2).all(|p| p[0].id < p[1].id), "in id order, no repeat");
                    let sum: u128 = all.iter().map(|a| a.balance as u128).sum();
                    assert_eq!(sum, circulation, "a view of whole blocks");
                    let found = store.tx_cursors(&known).unwrap();
                    assert!(
                        found.iter().all(Option::is_some),
                        "an acknowledged operation went missing"
                    );
                    let h = store.history(&watched, 0, usize::MAX).unwrap();
                    assert!(h.windows(2).all(|p| p[0] < p[1]), "history repeats or goes back");
                    views += 1;
                }
                views
            })
        })
        .collect();
    for b in 0..300u64 {
        let ops = block_transfers(&mut w, b);
        let txs: Vec<_> = ops.iter().map(|o| o.tx_id).collect();
        let out = ledger.execute(T0 + 1 + b, ops).unwrap();
        assert!(out.iter().all(|o| o.receipt().is_some()));
        acknowledged.lock().unwrap().extend(txs);
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0, "the readers ran");
    }
    // 2,700 operations at a checkpoint every 40: dozens were handed over
    // while the readers read.
    assert!(store.checkpoint_height().unwrap() > 250, "checkpoints were written");
    check_reads(&ledger);
}

/// The store drops expired replay records by range deletes every 64 blocks,
/// each starting where the previous one ended. Across several of them and a
/// restart, every record still within its validity is kept (a resubmission
/// is a duplicate, not a second payment) and the expired ones are gone from
/// the loaded replay set as from the running one.
#[test]
fn replay_records_are_pruned_in_steps_and_the_unexpired_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let mut ledger = open(dir.path(), &w);
    fund(&mut ledger, &mut w);
    // (The set-up operations stay valid throughout too.)
    let set_up = ledger.state().recent_len();
    let payers = payers();
    let mut long_lived = Vec::new();
    // 200 blocks a second apart: range deletes at heights 64, 128 and 192.
    for b in 0..200u64 {
        let ts = T0 + 1_000 + b * 1_000;
        let pay = |w: &mut World, i: u64, until: u64| {
            w.sign_until(
                &payers[(i % PAYERS) as usize],
                Op::Transfer {
                    payee: id(&payers[((i + 1) % PAYERS) as usize]),
                    amount: 1,
                    purpose: String::new(),
                },
                until,
            )
        };
        // One that expires three blocks later, and every tenth block one
        // valid for the rest of the test.
        let mut ops = vec![pay(&mut w, b, ts + 3_000)];
        if b % 10 == 0 {
            let op = pay(&mut w, b + 1, ts + 590_000);
            long_lived.push(op.clone());
            ops.push(op);
        }
        let out = ledger.execute(ts, ops).unwrap();
        assert!(out.iter().all(|o| matches!(o, Outcome::Committed(_))), "{out:?}");
    }
    let (height, window) = (ledger.state().height(), ledger.state().recent_len());
    // The long-lived ones, and the short ones of the last four blocks (a
    // record whose validity ends at this block's time is still live).
    let kept = set_up + long_lived.len();
    assert!((kept..=kept + 4).contains(&window), "{window} of {kept}");
    drop(ledger);

    let mut ledger = open(dir.path(), &w);
    assert_eq!(ledger.state().height(), height);
    assert_eq!(ledger.state().recent_len(), window, "the loaded replay set");
    let ts = T0 + 1_000 + 200 * 1_000;
    let again = ledger.execute(ts, long_lived.clone()).unwrap();
    assert!(again.iter().all(|o| matches!(o, Outcome::Duplicate(_))), "{again:?}");
}

/// Tx index entries handed over ahead of their checkpoint reach the column
/// family while the account values and history stay pending, and a crash
/// that leaves them there without the checkpoint record is harmless: the
/// restart replays the blocks, and every read agrees with the chain.
#[test]
fn tx_index_entries_written_ahead_of_their_checkpoint_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let opts = StoreOptions {
        // No checkpoint of the state in this test, only `txs` hand-overs.
        checkpoint_ops: 1 << 20,
        txs_handover_ops: 12,
        ..options()
    };
    let mut ledger = Ledger::open_with(dir.path(), Some(&w.genesis()), &opts).unwrap();
    fund(&mut ledger, &mut w);
    let first_checkpoint = ledger.store().checkpoint_height().unwrap();
    build(&mut ledger, &mut w, 6);
    let first_block = ledger.store().block_ops(first_checkpoint + 1).unwrap();
    let early = first_block[0].op.tx_id;
    let hash = check_reads(&ledger);

    // What is in the column families (a read-only open sees no overlay):
    // the early operation's index entry, written by the background writer
    // within moments, but no later checkpoint.
    let mut waited = 0;
    loop {
        let ro = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(ro.checkpoint_height().unwrap(), first_checkpoint, "no state checkpoint");
        if ro.tx_cursor(&early).unwrap() == Some(first_block[0].cursor) {
            break;
        }
        waited += 1;
        assert!(waited < 200, "the tx index entry was never written ahead");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // A crash: the blocks since the checkpoint are replayed over index
    // entries that are already written.
    let height = ledger.state().height();
    drop(ledger);
    let ledger = Ledger::open_with(dir.path(), Some(&w.genesis()), &opts).unwrap();
    assert_eq!(ledger.state().height(), height);
    assert_eq!(check_reads(&ledger), hash);
}
