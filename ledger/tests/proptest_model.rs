//! Random operation sequences against a simple in-memory model of balances.
//! After every block: the model and the ledger agree on every balance and
//! every outcome class, and all invariants hold (Σ balances = issued −
//! redeemed, no negative balance, no operation twice, hash chain links).
//! A second property runs the same through RocksDB and the auditor.

mod common;

use std::collections::HashMap;

use common::*;
use proptest::prelude::*;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::engine::{Ledger, Outcome};
use ruble_ledger::reason::Reason;
use ruble_ledger::state::State;
use ruble_ledger::types::{AccountId, AccountKind, AccountStatus, Limits};

const CLIENTS: usize = 6;

#[derive(Clone, Debug)]
enum Action {
    Issue { bank: usize, amount: u64 },
    Redeem { bank: usize, amount: u64 },
    Pay { from: usize, to: usize, amount: u64 },
    Freeze { who: usize },
    Unfreeze { who: usize },
    PaymentCap { cap: u64 },
    Replay { back: usize },
}

fn action() -> impl Strategy<Value = Action> {
    let amount = prop_oneof![1u64..1_000, 1u64..100_000, Just(0u64), Just(u64::MAX)];
    prop_oneof![
        1 => (0..2usize, amount.clone()).prop_map(|(bank, amount)| Action::Issue { bank, amount }),
        1 => (0..2usize, amount.clone()).prop_map(|(bank, amount)| Action::Redeem { bank, amount }),
        6 => (0..CLIENTS + 2, 0..CLIENTS + 2, amount).prop_map(|(from, to, amount)| Action::Pay { from, to, amount }),
        1 => (0..CLIENTS).prop_map(|who| Action::Freeze { who }),
        1 => (0..CLIENTS).prop_map(|who| Action::Unfreeze { who }),
        1 => prop_oneof![Just(u64::MAX), 1u64..50_000].prop_map(|cap| Action::PaymentCap { cap }),
        1 => (0..20usize).prop_map(|back| Action::Replay { back }),
    ]
}

/// The model: balances, statuses, totals and the payment cap. Parties 0..CLIENTS
/// are business clients (even ones at bank 0, odd at bank 1); CLIENTS and
/// CLIENTS+1 are the two banks' settlement accounts.
struct Model {
    bal: HashMap<AccountId, u64>,
    frozen: HashMap<AccountId, bool>,
    issued: u64,
    redeemed: u64,
    cap: u64,
}

struct Sim {
    w: World,
    parties: Vec<ed25519_dalek::SigningKey>,
    history: Vec<SignedOp>,
}

impl Sim {
    fn new() -> Sim {
        let w = World::new();
        let mut parties: Vec<_> = (0..CLIENTS as u64).map(|i| key(100 + i)).collect();
        parties.push(w.banks[0].clone());
        parties.push(w.banks[1].clone());
        Sim {
            w,
            parties,
            history: Vec::new(),
        }
    }
    fn setup_ops(&mut self) -> Vec<SignedOp> {
        (0..CLIENTS)
            .map(|i| {
                let bank = self.w.banks[i % 2].clone();
                let account = id(&self.parties[i]);
                self.w.sign(
                    &bank,
                    Op::OpenAccount {
                        account,
                        kind: AccountKind::Business,
                    },
                )
            })
            .collect()
    }
    fn op_for(&mut self, a: &Action) -> SignedOp {
        let cb = self.w.cb.clone();
        match *a {
            Action::Issue { bank, amount } => {
                let b = id(&self.w.banks[bank]);
                self.w.sign(&cb, Op::Issue { bank: b, amount })
            }
            Action::Redeem { bank, amount } => {
                let b = id(&self.w.banks[bank]);
                self.w.sign(&cb, Op::Redeem { bank: b, amount })
            }
            Action::Pay { from, to, amount } => {
                let payer = self.parties[from].clone();
                let payee = id(&self.parties[to]);
                self.w.sign(
                    &payer,
                    Op::Transfer {
                        payee,
                        amount,
                        purpose: "p".into(),
                    },
                )
            }
            Action::Freeze { who } => {
                let account = id(&self.parties[who]);
                self.w.sign(&cb, Op::Freeze { account })
            }
            Action::Unfreeze { who } => {
                let account = id(&self.parties[who]);
                self.w.sign(&cb, Op::Unfreeze { account })
            }
            Action::PaymentCap { cap } => self.w.sign(
                &cb,
                Op::SetLimits {
                    kind: AccountKind::Business,
                    limits: Limits {
                        payment_cap: cap,
                        ..Limits::UNLIMITED
                    },
                },
            ),
            Action::Replay { back } => match self.history.len() {
                0 => self.w.sign(&cb, Op::SetReportingThreshold { amount: 1 }),
                n => self.history[n - 1 - back.min(n - 1)].clone(),
            },
        }
    }
}

impl Model {
    /// The model's own prediction of the outcome; applies it if accepted.
    fn predict(&mut self, a: &Action, parties: &[AccountId], replay: bool) -> Result<(), Reason> {
        if replay {
            return Err(Reason::Duplicate);
        }
        match *a {
            Action::Issue { bank, amount } => {
                let b = parties[CLIENTS + bank];
                if amount == 0 {
                    return Err(Reason::ZeroAmount);
                }
                let issued = self.issued.checked_add(amount).ok_or(Reason::Overflow)?;
                self.issued = issued;
                *self.bal.get_mut(&b).unwrap() += amount;
                Ok(())
            }
            Action::Redeem { bank, amount } => {
                let b = parties[CLIENTS + bank];
                if amount == 0 {
                    return Err(Reason::ZeroAmount);
                }
                let bal = self.bal[&b].checked_sub(amount).ok_or(Reason::InsufficientFunds)?;
                self.bal.insert(b, bal);
                self.redeemed += amount;
                Ok(())
            }
            Action::Pay { from, to, amount } => {
                let (p, q) = (parties[from], parties[to]);
                if amount == 0 {
                    return Err(Reason::ZeroAmount);
                }
                if p == q {
                    return Err(Reason::SelfTransfer);
                }
                if self.frozen[&p] || self.frozen[&q] {
                    return Err(Reason::AccountFrozen);
                }
                if from < CLIENTS && amount > self.cap {
                    return Err(Reason::PaymentLimitExceeded);
                }
                let pb = self.bal[&p].checked_sub(amount).ok_or(Reason::InsufficientFunds)?;
                let qb = self.bal[&q].checked_add(amount).ok_or(Reason::Overflow)?;
                self.bal.insert(p, pb);
                self.bal.insert(q, qb);
                Ok(())
            }
            Action::Freeze { who } => {
                let f = self.frozen.get_mut(&parties[who]).unwrap();
                if *f {
                    return Err(Reason::AccountFrozen);
                }
                *f = true;
                Ok(())
            }
            Action::Unfreeze { who } => {
                let f = self.frozen.get_mut(&parties[who]).unwrap();
                if !*f {
                    return Err(Reason::AccountNotFrozen);
                }
                *f = false;
                Ok(())
            }
            Action::PaymentCap { cap } => {
                self.cap = cap;
                Ok(())
            }
            Action::Replay { .. } => Ok(()),
        }
    }
}

fn check_model(s: &State, m: &Model, parties: &[AccountId]) {
    s.check_invariants().unwrap();
    for p in parties {
        let a = s.account(p).unwrap();
        assert_eq!(a.balance, m.bal[p], "balance of {p}");
        assert_eq!(a.status == AccountStatus::Frozen, m.frozen[p]);
    }
    assert_eq!(s.totals().issued, m.issued);
    assert_eq!(s.totals().redeemed, m.redeemed);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_match_the_model(blocks in prop::collection::vec(prop::collection::vec(action(), 1..12), 1..10)) {
        let mut sim = Sim::new();
        let (mut s, genesis_header) = State::genesis(&sim.w.genesis()).unwrap();
        let setup = sim.setup_ops();
        s.begin_block(T0);
        for op in setup {
            s.apply(sim.w.verified(op)).unwrap();
        }
        let mut prev = s.seal_block();
        prop_assert_eq!(prev.header.prev_hash, genesis_header.hash());
        let parties: Vec<AccountId> = sim.parties.iter().map(id).collect();
        let mut m = Model {
            bal: parties.iter().map(|p| (*p, 0)).collect(),
            frozen: parties.iter().map(|p| (*p, false)).collect(),
            issued: 0,
            redeemed: 0,
            cap: u64::MAX,
        };
        for (bi, block) in blocks.iter().enumerate() {
            s.begin_block(T0 + bi as u64);
            for a in block {
                let op = sim.op_for(a);
                let replay = s.is_recent(&op.tx_id);
                let expected = m.predict(a, &parties, replay);
                let got = s.apply(sim.w.verified(op.clone())).map(|_| ());
                prop_assert_eq!(got, expected, "action {:?}", a);
                if got.is_ok() {
                    sim.history.push(op);
                }
            }
            let sealed = s.seal_block();
            prop_assert_eq!(sealed.header.prev_hash, prev.hash, "hash chain links");
            prop_assert_eq!(sealed.header.height, prev.header.height + 1);
            prev = sealed;
            check_model(&s, &m, &parties);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// The same through RocksDB: after reopening, the loaded state equals the
    /// model and the auditor finds nothing wrong.
    #[test]
    fn random_sequences_survive_store_and_audit(blocks in prop::collection::vec(prop::collection::vec(action(), 1..20), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Sim::new();
        let g = sim.w.genesis();
        let parties: Vec<AccountId> = sim.parties.iter().map(id).collect();
        {
            let mut ledger = Ledger::open(dir.path(), Some(&g)).unwrap();
            let setup = sim.setup_ops();
            let out = ledger.execute(T0, setup).unwrap();
            prop_assert!(out.iter().all(|o| matches!(o, Outcome::Committed(_))));
            for (bi, block) in blocks.iter().enumerate() {
                let ops: Vec<SignedOp> = block.iter().map(|a| sim.op_for(a)).collect();
                let out = ledger.execute(T0 + bi as u64, ops.clone()).unwrap();
                for (op, o) in ops.into_iter().zip(out) {
                    if let Outcome::Committed(r) = o {
                        prop_assert_eq!(r.tx_id, op.tx_id);
                        sim.history.push(op);
                    }
                }
                ledger.state().check_invariants().unwrap();
            }
        }
        let ledger = Ledger::open(dir.path(), None).unwrap();
        ledger.state().check_invariants().unwrap();
        let report = ruble_ledger::audit::audit(ledger.store(), &sim.history.iter().map(|o| o.tx_id).collect::<Vec<_>>()).unwrap();
        prop_assert!(report.ok, "audit: {:?}", report.errors);
        prop_assert_eq!(report.operations as usize, sim.history.len() + CLIENTS);
        let sum: u128 = parties.iter().map(|p| ledger.state().account(p).unwrap().balance as u128).sum();
        prop_assert_eq!(sum, report.in_circulation as u128);
    }
}
