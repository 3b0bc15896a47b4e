//! Unit tests of every operation and every rejection, at the pure state
//! machine boundary. Each rejection is checked to leave the state unchanged.

mod common;

use common::*;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::reason::Reason;
use ruble_ledger::state::{Account, State};
use ruble_ledger::types::{AccountId, AccountKind, AccountStatus, Limits, Phase, MS_PER_DAY};

struct T {
    w: World,
    s: State,
}

/// A snapshot of everything observable, to prove a rejection changed nothing.
fn snapshot(s: &State) -> (Vec<Account>, String, u64, u64, usize) {
    let mut a: Vec<Account> = s.accounts().cloned().collect();
    a.sort_by_key(|x| x.id);
    (
        a,
        format!("{:?}", s.params()),
        s.totals().issued,
        s.totals().redeemed,
        s.recent_len(),
    )
}

impl T {
    fn new() -> T {
        let w = World::new();
        let (s, _) = State::genesis(&w.genesis()).unwrap();
        T { w, s }
    }

    /// Applies each op in its own block at `ts`; returns the outcome.
    fn run_at(&mut self, ts: u64, op: SignedOp) -> Result<(), Reason> {
        self.s.begin_block(ts.max(self.s.timestamp_ms()));
        let before = snapshot(&self.s);
        let r = self.s.apply(self.w.verified(op)).map(|_| ());
        if r.is_err() {
            assert_eq!(before, snapshot(&self.s), "a rejection must change nothing");
        }
        self.s.seal_block();
        self.s.check_invariants().unwrap();
        r
    }

    fn run(&mut self, op: SignedOp) -> Result<(), Reason> {
        self.run_at(T0, op)
    }

    fn cb(&mut self, op: Op) -> Result<(), Reason> {
        let cb = self.w.cb.clone();
        let o = self.w.sign(&cb, op);
        self.run(o)
    }
    fn bank(&mut self, i: usize, op: Op) -> Result<(), Reason> {
        let k = self.w.banks[i].clone();
        let o = self.w.sign(&k, op);
        self.run(o)
    }
    fn pay(&mut self, from: &ed25519_dalek::SigningKey, to: AccountId, amount: u64) -> Result<(), Reason> {
        let o = self.w.sign(
            from,
            Op::Transfer {
                payee: to,
                amount,
                purpose: "invoice".into(),
            },
        );
        self.run(o)
    }
    fn bal(&self, a: AccountId) -> u64 {
        self.s.account(&a).unwrap().balance
    }
    fn b(&self, i: usize) -> AccountId {
        id(&self.w.banks[i])
    }
    /// Bank `i` opens a business client with key seed `seed`, funded with `amount`.
    fn client(&mut self, bank: usize, seed: u64, amount: u64) -> ed25519_dalek::SigningKey {
        let k = key(seed);
        self.bank(
            bank,
            Op::OpenAccount {
                account: id(&k),
                kind: AccountKind::Business,
            },
        )
        .unwrap();
        if amount > 0 {
            let b = self.b(bank);
            if self.bal(b) < amount {
                self.cb(Op::Issue { bank: b, amount }).unwrap();
            }
            let bk = self.w.banks[bank].clone();
            self.pay(&bk, id(&k), amount).unwrap();
        }
        k
    }
}

#[test]
fn issue_and_redeem_move_supply() {
    let mut t = T::new();
    let b0 = t.b(0);
    t.cb(Op::Issue {
        bank: b0,
        amount: 1_000_00,
    })
    .unwrap();
    assert_eq!(t.bal(b0), 1_000_00);
    t.cb(Op::Redeem {
        bank: b0,
        amount: 400_00,
    })
    .unwrap();
    assert_eq!(t.bal(b0), 600_00);
    assert_eq!(t.s.totals().issued, 1_000_00);
    assert_eq!(t.s.totals().redeemed, 400_00);
    assert_eq!(
        t.cb(Op::Redeem {
            bank: b0,
            amount: 600_01
        }),
        Err(Reason::InsufficientFunds)
    );
    assert_eq!(t.cb(Op::Issue { bank: b0, amount: 0 }), Err(Reason::ZeroAmount));
    assert_eq!(
        t.cb(Op::Issue {
            bank: id(&key(77)),
            amount: 1
        }),
        Err(Reason::UnknownBank)
    );
    // Only the central bank issues.
    assert_eq!(t.bank(0, Op::Issue { bank: b0, amount: 1 }), Err(Reason::NotAuthorised));
    // u64 overflow of the issued total.
    t.cb(Op::Issue {
        bank: b0,
        amount: u64::MAX - 1_000_00,
    })
    .unwrap();
    assert_eq!(
        t.cb(Op::Issue {
            bank: t.b(1),
            amount: 1
        }),
        Err(Reason::Overflow)
    );
}

#[test]
fn two_tier_story_business_then_retail() {
    let mut t = T::new();
    let alice = t.client(0, 100, 500_00);
    let bob = t.client(1, 101, 0);
    t.pay(&alice, id(&bob), 120_50).unwrap();
    assert_eq!(t.bal(id(&alice)), 379_50);
    assert_eq!(t.bal(id(&bob)), 120_50);
    // Retail is refused until the central bank opens the phase.
    let carol = key(102);
    let open_retail = Op::OpenAccount {
        account: id(&carol),
        kind: AccountKind::Retail,
    };
    assert_eq!(t.bank(0, open_retail.clone()), Err(Reason::PhaseNotOpen));
    assert_eq!(
        t.bank(0, Op::SetPhase { phase: Phase::Retail }),
        Err(Reason::NotAuthorised)
    );
    t.cb(Op::SetPhase { phase: Phase::Retail }).unwrap();
    assert_eq!(
        t.cb(Op::SetPhase { phase: Phase::Business }),
        Err(Reason::PhaseNotForward)
    );
    assert_eq!(
        t.cb(Op::SetPhase { phase: Phase::Retail }),
        Err(Reason::PhaseNotForward)
    );
    t.bank(0, open_retail).unwrap();
    t.pay(&bob, id(&carol), 20_50).unwrap();
    assert_eq!(t.bal(id(&carol)), 20_50);
    assert_eq!(t.s.account(&id(&carol)).unwrap().kind, AccountKind::Retail);
}

#[test]
fn transfer_rejections() {
    let mut t = T::new();
    let a = t.client(0, 100, 100_00);
    let b = t.client(0, 101, 0);
    assert_eq!(t.pay(&a, id(&b), 0), Err(Reason::ZeroAmount));
    assert_eq!(t.pay(&a, id(&a), 1), Err(Reason::SelfTransfer));
    assert_eq!(t.pay(&a, id(&key(999)), 1), Err(Reason::UnknownAccount));
    assert_eq!(t.pay(&key(998), id(&b), 1), Err(Reason::UnknownAccount));
    assert_eq!(t.pay(&a, id(&b), 100_01), Err(Reason::InsufficientFunds));
    assert_eq!(t.pay(&a, id(&t.w.cb.clone()), 1), Err(Reason::NotAuthorised));
    // Frozen payer, frozen payee.
    t.cb(Op::Freeze { account: id(&a) }).unwrap();
    assert_eq!(t.pay(&a, id(&b), 1), Err(Reason::AccountFrozen));
    assert_eq!(t.pay(&b, id(&a), 1), Err(Reason::AccountFrozen));
    t.cb(Op::Unfreeze { account: id(&a) }).unwrap();
    t.pay(&a, id(&b), 1).unwrap();
    // Closed payee.
    let c = t.client(0, 102, 0);
    t.bank(0, Op::CloseAccount { account: id(&c) }).unwrap();
    assert_eq!(t.pay(&a, id(&c), 1), Err(Reason::AccountClosed));
    assert_eq!(
        t.bank(0, Op::CloseAccount { account: id(&c) }),
        Err(Reason::AccountClosed)
    );
    // Cannot close with money in it.
    assert_eq!(
        t.bank(0, Op::CloseAccount { account: id(&a) }),
        Err(Reason::BalanceNotZero)
    );
}

#[test]
fn limits_payment_daily_and_balance_caps() {
    let mut t = T::new();
    let a = t.client(0, 100, 10_000_00);
    let b = t.client(1, 101, 0);
    t.cb(Op::SetLimits {
        kind: AccountKind::Business,
        limits: Limits {
            balance_cap: 3_000_00,
            payment_cap: 1_000_00,
            daily_outflow_cap: 2_500_00,
        },
    })
    .unwrap();
    assert_eq!(
        t.cb(Op::SetLimits {
            kind: AccountKind::CentralBank,
            limits: Limits::UNLIMITED
        }),
        Err(Reason::InvalidKind)
    );
    assert_eq!(t.pay(&a, id(&b), 1_000_01), Err(Reason::PaymentLimitExceeded));
    t.pay(&a, id(&b), 1_000_00).unwrap();
    t.pay(&a, id(&b), 1_000_00).unwrap();
    assert_eq!(t.pay(&a, id(&b), 600_00), Err(Reason::DailyLimitExceeded));
    t.pay(&a, id(&b), 500_00).unwrap();
    // Next UTC day the outflow counter resets; now b's balance cap bites.
    let next_day = (T0 / MS_PER_DAY + 1) * MS_PER_DAY + 1;
    let op = t.w.sign_until(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 600_00,
            purpose: String::new(),
        },
        next_day + 1000,
    );
    assert_eq!(t.run_at(next_day, op), Err(Reason::BalanceLimitExceeded));
    let op = t.w.sign_until(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 500_00,
            purpose: String::new(),
        },
        next_day + 1000,
    );
    t.run_at(next_day, op).unwrap();
    assert_eq!(t.bal(id(&b)), 3_000_00);
}

#[test]
fn large_payments_are_flagged() {
    let mut t = T::new();
    let a = t.client(0, 100, 1_000_000_00);
    let b = t.client(0, 101, 0);
    t.cb(Op::SetReportingThreshold { amount: 600_000_00 }).unwrap();
    let small = t.w.sign(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 599_999_99,
            purpose: String::new(),
        },
    );
    let big = t.w.sign(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 400_000_01,
            purpose: String::new(),
        },
    );
    t.s.begin_block(T0);
    assert!(!t.s.apply(t.w.verified(small)).unwrap().large);
    // 400k is below the threshold too; raise it later and check the flag.
    assert!(!t.s.apply(t.w.verified(big)).unwrap().large);
    t.s.seal_block();
    let c = t.client(0, 102, 600_000_00);
    let op = t.w.sign(
        &c,
        Op::Transfer {
            payee: id(&b),
            amount: 600_000_00,
            purpose: String::new(),
        },
    );
    t.s.begin_block(T0);
    assert!(t.s.apply(t.w.verified(op)).unwrap().large);
    t.s.seal_block();
}

#[test]
fn replay_window_and_chain_id() {
    let mut t = T::new();
    let a = t.client(0, 100, 100_00);
    let b = t.client(0, 101, 0);
    let op = t.w.sign(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 1_00,
            purpose: String::new(),
        },
    );
    t.run(op.clone()).unwrap();
    assert_eq!(t.run(op.clone()), Err(Reason::Duplicate));
    // Twice in one block: the second is a replay.
    let op2 = t.w.sign(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 1_00,
            purpose: String::new(),
        },
    );
    t.s.begin_block(T0);
    t.s.apply(t.w.verified(op2.clone())).unwrap();
    assert_eq!(t.s.apply(t.w.verified(op2)), Err(Reason::Duplicate));
    t.s.seal_block();
    // Expired; valid too far ahead.
    let old = t.w.sign_until(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 1,
            purpose: String::new(),
        },
        T0 - 1,
    );
    assert_eq!(t.run(old), Err(Reason::Expired));
    let far = t.w.sign_until(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 1,
            purpose: String::new(),
        },
        T0 + 600_001,
    );
    assert_eq!(t.run(far), Err(Reason::ValidityTooLong));
    // Once the window has passed, the replay entry is pruned and the op is refused as expired.
    assert!(t.s.is_recent(&op.tx_id));
    let later = T0 + 700_000;
    let fresh = t.w.sign_until(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 1,
            purpose: String::new(),
        },
        later + 1,
    );
    t.run_at(later, fresh).unwrap();
    assert!(!t.s.is_recent(&op.tx_id));
    assert_eq!(t.run_at(later, op), Err(Reason::Expired));
    // Wrong chain.
    let mut body =
        t.w.sign(
            &a,
            Op::Transfer {
                payee: id(&b),
                amount: 1,
                purpose: String::new(),
            },
        )
        .body;
    body.chain_id = "other-chain".into();
    body.valid_until_ms = later + 1000;
    let wrong = SignedOp::sign(body, &a);
    assert_eq!(t.run_at(later, wrong), Err(Reason::WrongChain));
}

/// Found by the `apply_ops` fuzz target: an aborted empty block must leave no
/// trace. It used to prune the replay set in `begin_block`; a later block with
/// an earlier timestamp (the node's clock stepping back) then applied an
/// already-applied payment a second time.
#[test]
fn an_aborted_block_forgets_no_replay_entry() {
    let mut t = T::new();
    let a = t.client(0, 100, 100_00);
    let b = t.client(0, 101, 0);
    let op = t.w.sign(
        &a,
        Op::Transfer {
            payee: id(&b),
            amount: 1_00,
            purpose: String::new(),
        },
    );
    t.run(op.clone()).unwrap();
    let before = snapshot(&t.s);
    // A block past the payment's validity, to which nothing applies: aborted.
    t.s.begin_block(T0 + 600_001);
    t.s.abort_empty_block();
    assert_eq!(snapshot(&t.s), before, "an aborted block changes nothing");
    // The clock stepped back: the next block is inside the validity window.
    assert_eq!(t.run_at(T0 + 1, op), Err(Reason::Duplicate));
    assert_eq!(t.bal(id(&a)), 99_00);
}

#[test]
fn account_opening_rules() {
    let mut t = T::new();
    let k = key(100);
    // Not a bank.
    let o = t.w.sign(
        &key(50),
        Op::OpenAccount {
            account: id(&k),
            kind: AccountKind::Business,
        },
    );
    assert_eq!(t.run(o), Err(Reason::NotAuthorised));
    // Unsafe key (identity point, small order).
    let mut ident = [0u8; 32];
    ident[0] = 1;
    assert_eq!(
        t.bank(
            0,
            Op::OpenAccount {
                account: AccountId(ident),
                kind: AccountKind::Business
            }
        ),
        Err(Reason::UnsafeKey)
    );
    assert_eq!(
        t.bank(
            0,
            Op::OpenAccount {
                account: id(&k),
                kind: AccountKind::Settlement
            }
        ),
        Err(Reason::InvalidKind)
    );
    t.bank(
        0,
        Op::OpenAccount {
            account: id(&k),
            kind: AccountKind::Business,
        },
    )
    .unwrap();
    assert_eq!(
        t.bank(
            1,
            Op::OpenAccount {
                account: id(&k),
                kind: AccountKind::Business
            }
        ),
        Err(Reason::AccountExists)
    );
    let acct = t.s.account(&id(&k)).unwrap();
    assert_eq!(
        (acct.bank, acct.status, acct.balance),
        (t.b(0), AccountStatus::Active, 0)
    );
}

#[test]
fn banks_act_only_on_their_own_clients() {
    let mut t = T::new();
    let a = t.client(0, 100, 10_00);
    // Bank 1 may not freeze, unfreeze or close bank 0's client.
    assert_eq!(t.bank(1, Op::Freeze { account: id(&a) }), Err(Reason::NotAuthorised));
    assert_eq!(
        t.bank(1, Op::CloseAccount { account: id(&a) }),
        Err(Reason::NotAuthorised)
    );
    // A bank may not freeze another bank's settlement account.
    assert_eq!(t.bank(0, Op::Freeze { account: t.b(1) }), Err(Reason::NotAuthorised));
    t.bank(0, Op::Freeze { account: id(&a) }).unwrap();
    assert_eq!(t.bank(0, Op::Freeze { account: id(&a) }), Err(Reason::AccountFrozen));
    t.bank(0, Op::Unfreeze { account: id(&a) }).unwrap();
    assert_eq!(
        t.bank(0, Op::Unfreeze { account: id(&a) }),
        Err(Reason::AccountNotFrozen)
    );
    // The bank cannot lift a central-bank freeze.
    t.cb(Op::Freeze { account: id(&a) }).unwrap();
    assert_eq!(t.bank(0, Op::Unfreeze { account: id(&a) }), Err(Reason::NotAuthorised));
    t.cb(Op::Unfreeze { account: id(&a) }).unwrap();
    // The central bank's own account cannot be frozen.
    let cb = id(&t.w.cb.clone());
    assert_eq!(t.cb(Op::Freeze { account: cb }), Err(Reason::NotAuthorised));
}

#[test]
fn bank_admission_and_suspension() {
    let mut t = T::new();
    let nb = key(40);
    assert_eq!(
        t.bank(
            0,
            Op::AdmitBank {
                bank: id(&nb),
                name: "New".into()
            }
        ),
        Err(Reason::NotAuthorised)
    );
    t.cb(Op::AdmitBank {
        bank: id(&nb),
        name: "New".into(),
    })
    .unwrap();
    assert_eq!(
        t.cb(Op::AdmitBank {
            bank: id(&nb),
            name: "New".into()
        }),
        Err(Reason::BankAlreadyAdmitted)
    );
    assert_eq!(t.s.account(&id(&nb)).unwrap().kind, AccountKind::Settlement);
    t.cb(Op::Issue {
        bank: id(&nb),
        amount: 50_00,
    })
    .unwrap();
    let client = key(41);
    let o = t.w.sign(
        &nb,
        Op::OpenAccount {
            account: id(&client),
            kind: AccountKind::Business,
        },
    );
    t.run(o).unwrap();
    t.cb(Op::SuspendBank { bank: id(&nb) }).unwrap();
    assert_eq!(
        t.cb(Op::SuspendBank { bank: id(&nb) }),
        Err(Reason::BankAlreadySuspended)
    );
    assert_eq!(t.cb(Op::SuspendBank { bank: id(&key(42)) }), Err(Reason::UnknownBank));
    // A suspended bank can neither open accounts nor pay, nor receive issuance.
    let o = t.w.sign(
        &nb,
        Op::OpenAccount {
            account: id(&key(43)),
            kind: AccountKind::Business,
        },
    );
    assert_eq!(t.run(o), Err(Reason::BankSuspended));
    assert_eq!(t.pay(&nb, id(&client), 1), Err(Reason::BankSuspended));
    assert_eq!(
        t.cb(Op::Issue {
            bank: id(&nb),
            amount: 1
        }),
        Err(Reason::BankSuspended)
    );
    // Reinstated by admitting again.
    t.cb(Op::AdmitBank {
        bank: id(&nb),
        name: "New".into(),
    })
    .unwrap();
    t.pay(&nb, id(&client), 1).unwrap();
    // A client key cannot become a bank.
    assert_eq!(
        t.cb(Op::AdmitBank {
            bank: id(&client),
            name: "x".into()
        }),
        Err(Reason::AccountExists)
    );
}

#[test]
fn state_hash_changes_with_every_balance_and_is_deterministic() {
    let run = || {
        let mut t = T::new();
        let a = t.client(0, 100, 50_00);
        let b = t.client(1, 101, 0);
        t.pay(&a, id(&b), 7).unwrap();
        (t.s.state_hash(), t.s.head_hash())
    };
    let (h1, head1) = run();
    let (h2, head2) = run();
    // Signatures are deterministic (ed25519) and nonces are counters, so two runs agree bit for bit.
    assert_eq!((h1, head1), (h2, head2));
    let mut t = T::new();
    let a = t.client(0, 100, 50_00);
    let b = t.client(1, 101, 0);
    t.pay(&a, id(&b), 8).unwrap();
    assert_ne!(t.s.state_hash(), h1);
}

/// Sealing reaches a block's touched accounts by slot index and updates the
/// state commitment incrementally. A large block (thousands of accounts,
/// created and changed in it) must still carry the commitments of the
/// definition: the Merkle root of its leaves in order, its accounts sorted
/// and once each with their final values, and a state hash equal to that of
/// a state rebuilt from scratch from the same accounts.
#[test]
fn large_blocks_seal_to_the_sequential_commitments() {
    use ruble_ledger::block::{merkle_root, op_leaf};
    use ruble_ledger::state::StateParts;
    const N: u64 = 3_000;
    let mut t = T::new();
    let payers: Vec<_> = (0..N).map(|i| key(10_000 + i)).collect();
    let mut funding = t.w.fund_payers(&payers);
    // `fund_payers` issues enough for 100 payers: top the bank up first.
    let (cb, bank0) = (t.w.cb.clone(), t.b(0));
    funding.insert(
        0,
        t.w.sign(
            &cb,
            Op::Issue {
                bank: bank0,
                amount: N * 10_000_000,
            },
        ),
    );
    let transfers: Vec<SignedOp> = payers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let payee = id(&payers[(i + 1) % payers.len()]);
            t.w.sign(
                p,
                Op::Transfer {
                    payee,
                    amount: 1 + i as u64,
                    purpose: String::new(),
                },
            )
        })
        .collect();
    for block_ops in [funding, transfers] {
        t.s.begin_block(T0);
        for op in &block_ops {
            t.s.apply(t.w.verified(op.clone())).unwrap();
        }
        let block = t.s.seal_block();
        assert!(block.accounts.len() as u64 >= N, "every payer is in the block");
        let leaves: Vec<_> = block
            .ops
            .iter()
            .map(|a| op_leaf(&a.op.tx_id, &a.op.signature))
            .collect();
        assert_eq!(block.header.ops_root, merkle_root(&leaves));
        assert!(
            block.accounts.windows(2).all(|w| w[0].id < w[1].id),
            "sorted, once each"
        );
        for a in &block.accounts {
            assert_eq!(t.s.account(&a.id), Some(a), "the block carries final values");
        }
        // Recomputes every account's lanes one by one and compares.
        t.s.check_invariants().unwrap();
        let rebuilt = State::from_parts(StateParts {
            params: t.s.params().clone(),
            totals: t.s.totals(),
            accounts: t.s.accounts().cloned().collect(),
            banks: t.s.banks().cloned().collect(),
            recent: Vec::new(),
            height: t.s.height(),
            head_hash: t.s.head_hash(),
            timestamp_ms: t.s.timestamp_ms(),
            controls: t.s.controls().clone(),
        });
        assert_eq!(rebuilt.state_hash(), t.s.state_hash());
        assert_eq!(block.header.state_hash, t.s.state_hash());
    }
}

/// After a lull longer than the validity window, a burst's replay entries all
/// expire at once; one seal drops at most `RECENT_PRUNE_MAX_PER_BLOCK` of them
/// (the first block after the lull would otherwise wait on millions of
/// frees), the next blocks the rest, and an expired entry still held is
/// inert: its operation is refused as expired, not as a duplicate.
#[test]
fn a_block_drops_a_bounded_number_of_expired_replay_entries() {
    use ruble_ledger::state::RECENT_PRUNE_MAX_PER_BLOCK as CAP;
    let mut t = T::new();
    let b0 = t.b(0);
    let n = CAP + 1_000;
    t.cb(Op::Issue {
        bank: b0,
        amount: n as u64,
    })
    .unwrap();
    let payee = t.client(1, 77, 0);
    let bank = t.w.banks[0].clone();
    let before = t.s.recent_len();
    // One block of `n` transfers, each valid until its own millisecond.
    let ops: Vec<SignedOp> = (0..n as u64)
        .map(|i| {
            t.w.sign_until(
                &bank,
                Op::Transfer {
                    payee: id(&payee),
                    amount: 1,
                    purpose: String::new(),
                },
                T0 + 1_000 + i,
            )
        })
        .collect();
    t.s.begin_block(T0);
    for op in &ops {
        t.s.apply(t.w.verified(op.clone())).unwrap();
    }
    t.s.seal_block();
    assert_eq!(t.s.recent_len(), before + n);
    // Long after all of them expired (the set-up's entries, valid until
    // T0 + 10 min, have not), a block drops `CAP` of them: one entry per
    // instant here, so exactly `CAP`.
    let later = T0 + 1_000 + n as u64 + 60_000;
    let zero = t.w.sign_until(
        &bank,
        Op::Transfer {
            payee: id(&payee),
            amount: 0,
            purpose: String::new(),
        },
        later + 1_000,
    );
    assert_eq!(t.run_at(later, zero), Err(Reason::ZeroAmount));
    assert_eq!(t.s.recent_len(), before + n - CAP, "the rest wait for the next blocks");
    // A held expired entry decides nothing: its operation is expired.
    let last = ops.last().unwrap().clone();
    assert_eq!(t.run_at(later, last), Err(Reason::Expired));
    assert_eq!(t.s.recent_len(), before, "the next block dropped the rest");
}
