//! `Store::accounts_after`, the pages of `ListAccounts`: a range read of the
//! `accounts` family from a starting id, merged with the account values not
//! yet checkpointed. Every page must be what filtering the whole state gives
//! (accounts opened since the checkpoint, and pending values that change
//! whether an account matches, included), before and after checkpoints and
//! across restarts, and whole while checkpoints are written behind.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::checkpointing::open;
use common::*;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::engine::Ledger;
use ruble_ledger::state::Account;
use ruble_ledger::store::Store;
use ruble_ledger::types::{AccountId, AccountKind, AccountStatus};

fn execute(ledger: &mut Ledger, t: u64, ops: Vec<SignedOp>) {
    let out = ledger.execute(t, ops).unwrap();
    assert!(out.iter().all(|o| o.receipt().is_some()), "{out:?}");
}

type Filter = (&'static str, Box<dyn Fn(&Account) -> bool>);

/// The filters `ListAccounts` builds (status, bank, both) and two edge ones.
fn filters(w: &World) -> Vec<Filter> {
    let (b0, b1) = (id(&w.banks[0]), id(&w.banks[1]));
    vec![
        ("every account", Box::new(|_: &Account| true)),
        ("frozen", Box::new(|a: &Account| a.status == AccountStatus::Frozen)),
        ("active", Box::new(|a: &Account| a.status == AccountStatus::Active)),
        ("bank 0", Box::new(move |a: &Account| a.bank == b0)),
        (
            "active at bank 1",
            Box::new(move |a: &Account| a.bank == b1 && a.status == AccountStatus::Active),
        ),
        ("none", Box::new(|_: &Account| false)),
    ]
}

/// Every page of every filter, by several page sizes and from several
/// starting ids (each account's, and ids that are no account's), against
/// filtering `all_accounts` and the in-memory state.
fn check_pages(ledger: &Ledger, w: &World) {
    let (state, store) = (ledger.state(), ledger.store());
    let all = store.all_accounts().unwrap();
    let mut truth: Vec<Account> = state.accounts().cloned().collect();
    truth.sort_unstable_by_key(|a| a.id);
    assert_eq!(all, truth, "all_accounts is the state");
    let mut starts: Vec<Option<AccountId>> = vec![None];
    for a in &all {
        starts.push(Some(a.id));
        // Just before and just after it: ids of no account.
        let mut below = a.id;
        below.0[31] = below.0[31].wrapping_sub(1);
        let mut above = a.id;
        above.0[31] = above.0[31].wrapping_add(1);
        starts.extend([Some(below), Some(above)]);
    }
    starts.extend([Some(AccountId([0; 32])), Some(AccountId([0xff; 32]))]);
    for (name, f) in filters(w) {
        let expected: Vec<&Account> = all.iter().filter(|a| f(a)).collect();
        for &limit in &[0usize, 1, 2, 3, 7, 1000] {
            for after in &starts {
                let (page, more) = store.accounts_after(after.as_ref(), limit, &f).unwrap();
                let rest: Vec<&Account> = expected
                    .iter()
                    .copied()
                    .filter(|a| after.is_none_or(|x| a.id > x))
                    .collect();
                let want: Vec<&Account> = rest.iter().copied().take(limit).collect();
                assert_eq!(page.iter().collect::<Vec<_>>(), want, "{name}, {limit} after {after:?}");
                assert_eq!(more, rest.len() > limit, "{name}, {limit} after {after:?}: more");
            }
            if limit == 0 {
                continue;
            }
            // Walking the pages gives every matching account once, in order.
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let (page, more) = store.accounts_after(after.as_ref(), limit, &f).unwrap();
                assert!(page.len() <= limit);
                after = page.last().map(|a| a.id);
                walked.extend(page);
                if !more {
                    break;
                }
            }
            assert_eq!(walked.iter().collect::<Vec<_>>(), expected, "{name}, walked by {limit}");
        }
    }
}

/// Block of `n` transfers among the payers, amounts varying with `b`.
fn transfers(w: &mut World, payers: &[ed25519_dalek::SigningKey], b: u64, n: u64) -> Vec<SignedOp> {
    let k = payers.len() as u64;
    (0..n)
        .map(|i| {
            let (p, q) = ((b * 7 + i) % k, (b * 3 + i * 5 + 1) % k);
            let q = if p == q { (q + 1) % k } else { q };
            w.sign(
                &payers[p as usize],
                Op::Transfer {
                    payee: id(&payers[q as usize]),
                    amount: 1_00 + b,
                    purpose: String::new(),
                },
            )
        })
        .collect()
}

#[test]
fn pages_are_the_filtered_state_with_pending_accounts_and_after_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let mut ledger = open(dir.path(), &w);
    let checkpoint0 = ledger.store().checkpoint_height().unwrap();
    // Only the genesis' accounts are in the family; these are all pending.
    let payers: Vec<_> = (0..10).map(|i| key(200 + i)).collect();
    let fund = w.fund_payers(&payers);
    execute(&mut ledger, T0, fund);
    assert_eq!(
        ledger.store().checkpoint_height().unwrap(),
        checkpoint0,
        "nothing checkpointed yet"
    );
    check_pages(&ledger, &w);

    // Accounts at the other bank, some frozen in the block that opens them.
    let (bank1, cb) = (w.banks[1].clone(), w.cb.clone());
    let others: Vec<_> = (0..8).map(|i| key(300 + i)).collect();
    let mut ops = Vec::new();
    for (i, k) in others.iter().enumerate() {
        ops.push(w.sign(
            &bank1,
            Op::OpenAccount {
                account: id(k),
                kind: AccountKind::Business,
            },
        ));
        if i % 3 == 0 {
            ops.push(w.sign(&cb, Op::Freeze { account: id(k) }));
        }
    }
    execute(&mut ledger, T0 + 1, ops);
    check_pages(&ledger, &w);

    // Transfers across several checkpoints, checked after every block, and
    // freezes and unfreezes of accounts whose checkpointed value says the
    // opposite (a pending value decides whether an account matches).
    for b in 0..14u64 {
        let mut ops = transfers(&mut w, &payers, b, 9);
        match b {
            4 => ops.push(w.sign(
                &cb,
                Op::Freeze {
                    account: id(&others[2]),
                },
            )),
            6 => ops.push(w.sign(
                &cb,
                Op::Unfreeze {
                    account: id(&others[0]),
                },
            )),
            9 => ops.push(w.sign(
                &cb,
                Op::Freeze {
                    account: id(&others[1]),
                },
            )),
            11 => ops.push(w.sign(
                &cb,
                Op::Unfreeze {
                    account: id(&others[2]),
                },
            )),
            _ => {}
        }
        execute(&mut ledger, T0 + 2 + b, ops);
        check_pages(&ledger, &w);
    }
    assert!(
        ledger.store().checkpoint_height().unwrap() > checkpoint0 + 1,
        "checkpoints were written"
    );

    // A crash: the blocks after the checkpoint are replayed into the overlay.
    drop(ledger);
    let mut ledger = open(dir.path(), &w);
    check_pages(&ledger, &w);
    // A checkpoint at the head: everything in the family, nothing pending.
    ledger.store().checkpoint().unwrap();
    check_pages(&ledger, &w);
    execute(
        &mut ledger,
        T0 + 100,
        vec![w.sign(
            &cb,
            Op::Freeze {
                account: id(&payers[5]),
            },
        )],
    );
    check_pages(&ledger, &w);
}

/// Readers page through the accounts on other threads while blocks commit
/// and checkpoints are handed over every few blocks: one page holding every
/// account is one committed state (its balances sum to the money in
/// circulation), and a walk by small pages lists every account once.
#[test]
fn pages_stay_whole_while_checkpoints_are_written_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let mut ledger = open(dir.path(), &w);
    let payers: Vec<_> = (0..12).map(|i| key(400 + i)).collect();
    let fund = w.fund_payers(&payers);
    execute(&mut ledger, T0, fund);
    let circulation = ledger.state().totals().circulation() as u128;
    let mut ids: Vec<AccountId> = ledger.state().accounts().map(|a| a.id).collect();
    ids.sort_unstable();
    let store: Arc<Store> = ledger.store().clone();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done, ids) = (store.clone(), done.clone(), ids.clone());
            std::thread::spawn(move || {
                let mut views = 0u64;
                while !done.load(Ordering::Acquire) {
                    let (page, more) = store.accounts_after(None, usize::MAX, |_| true).unwrap();
                    assert!(!more);
                    assert_eq!(page.iter().map(|a| a.id).collect::<Vec<_>>(), ids, "every account once");
                    let sum: u128 = page.iter().map(|a| a.balance as u128).sum();
                    assert_eq!(sum, circulation, "a page of one committed state");
                    let mut walked = Vec::new();
                    let mut after = None;
                    loop {
                        let (page, more) = store.accounts_after(after.as_ref(), 3, |_| true).unwrap();
                        after = page.last().map(|a| a.id);
                        walked.extend(page.iter().map(|a| a.id));
                        if !more {
                            break;
                        }
                    }
                    assert_eq!(walked, ids, "a walk lists every account once");
                    views += 1;
                }
                views
            })
        })
        .collect();
    for b in 0..300u64 {
        let ops = transfers(&mut w, &payers, b, 9);
        execute(&mut ledger, T0 + 1 + b, ops);
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0, "the readers ran");
    }
    assert!(store.checkpoint_height().unwrap() > 250, "checkpoints were written");
    check_pages(&ledger, &w);
}
