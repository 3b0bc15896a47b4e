//! Random sequences of the central-bank controls against an independent
//! model: anti-fraud holds (new payee, fraud registry), business
//! signatories, confirm / release / void and deadlines, receive-only
//! freezes, court-ordered collection above a protected minimum,
//! purpose-bound money with its expiry, holding-limit sweeps and key
//! rotation. After every operation the ledger's outcome (applied, or the
//! exact reason) equals the model's; after every block every balance,
//! status, held payment, lot and total agrees, and all invariants hold
//! (Σ balances = issued − redeemed, reservations within balances). A
//! second property runs the same through RocksDB, reopens, and audits.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::engine::{Ledger, Outcome};
use ruble_ledger::reason::Reason;
use ruble_ledger::state::{Effect, HoldKind, State};
use ruble_ledger::types::{AccountId, AccountKind, AccountStatus, Limits, TxId};

/// Business clients 0..4 (even at bank 0, odd at bank 1); 4 and 5 are the
/// banks' settlement accounts.
const CLIENTS: usize = 4;
const PARTIES: usize = CLIENTS + 2;
/// Client 0 needs 2 of its 2 signatories for payments of at least this.
const SIGNED_FROM: u64 = 50_000;
/// Purpose 1 pays only client 3 and expires here.
const PURPOSE: u32 = 1;
const PURPOSE_PAYEE: usize = 3;
const EXPIRES: u64 = T0 + 4_000;
const WINDOW_MS: u64 = 1_000;
/// Set-up funding (see `Sim::setup_ops`).
const FUNDS_BANK: u64 = 1_000_000;
const FUNDS_CLIENT: u64 = 200_000;

#[derive(Clone, Copy, Debug)]
enum How {
    Confirm,
    Release,
    Void,
    Approve(usize),
}

#[derive(Clone, Debug)]
enum Action {
    Issue {
        bank: usize,
        amount: u64,
    },
    Pay {
        from: usize,
        to: usize,
        amount: u64,
        old_key: bool,
    },
    SetControls {
        threshold: u64,
        floor: u64,
    },
    Flag {
        who: usize,
        on: bool,
    },
    Settle {
        k: usize,
        how: How,
    },
    ReceiveOnly {
        who: usize,
    },
    Unfreeze {
        who: usize,
    },
    Collect {
        debtor: usize,
        claimant: usize,
        amount: u64,
    },
    IssueTagged {
        to: usize,
        amount: u64,
    },
    Sweep {
        who: usize,
        on: bool,
    },
    Cap {
        cap: u64,
    },
    Rotate {
        who: usize,
    },
    Replay {
        back: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let amount = prop_oneof![4 => 1u64..1_000, 4 => 1u64..100_000, 1 => Just(0u64)];
    let how = prop_oneof![
        Just(How::Confirm),
        Just(How::Release),
        Just(How::Void),
        (0..2usize).prop_map(How::Approve)
    ];
    prop_oneof![
        2 => (0..2usize, 1u64..1_000_000).prop_map(|(bank, amount)| Action::Issue { bank, amount }),
        8 => (0..PARTIES, 0..PARTIES, amount.clone(), prop::bool::weighted(0.1))
            .prop_map(|(from, to, amount, old_key)| Action::Pay { from, to, amount, old_key }),
        1 => (prop_oneof![Just(0u64), 1u64..60_000], prop_oneof![Just(0u64), 1u64..5_000])
            .prop_map(|(threshold, floor)| Action::SetControls { threshold, floor }),
        1 => (0..PARTIES, any::<bool>()).prop_map(|(who, on)| Action::Flag { who, on }),
        6 => (0..8usize, how).prop_map(|(k, how)| Action::Settle { k, how }),
        1 => (0..PARTIES).prop_map(|who| Action::ReceiveOnly { who }),
        1 => (0..PARTIES).prop_map(|who| Action::Unfreeze { who }),
        1 => (0..PARTIES, 0..PARTIES, amount.clone())
            .prop_map(|(debtor, claimant, amount)| Action::Collect { debtor, claimant, amount }),
        3 => (0..PARTIES, amount).prop_map(|(to, amount)| Action::IssueTagged { to, amount }),
        2 => (0..PARTIES, any::<bool>()).prop_map(|(who, on)| Action::Sweep { who, on }),
        1 => prop_oneof![Just(u64::MAX), 100_000u64..400_000].prop_map(|cap| Action::Cap { cap }),
        1 => (0..PARTIES).prop_map(|who| Action::Rotate { who }),
        1 => (0..20usize).prop_map(|back| Action::Replay { back }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct MPending {
    payer: usize,
    payee: usize,
    amount: u64,
    kind: HoldKind,
    deadline: u64,
    free_part: u64,
    lot_part: u64,
    approvals: BTreeSet<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Default)]
struct MLot {
    amount: u64,
    reserved: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
    Active,
    ReceiveOnly,
}

/// The model: what the ledger should hold, computed independently.
struct Model {
    bal: Vec<u64>,
    status: Vec<St>,
    issued: u64,
    redeemed: u64,
    threshold: u64,
    floor: u64,
    cap: u64,
    fraud: BTreeSet<usize>,
    known: BTreeSet<(usize, usize)>,
    pending: BTreeMap<TxId, MPending>,
    lots: BTreeMap<usize, MLot>,
    purpose_live: bool,
    sweep: BTreeSet<usize>,
}

struct Sim {
    w: World,
    /// The key each party signs with now (clients' keys rotate).
    keys: Vec<SigningKey>,
    /// Each party's original key (its account id).
    orig: Vec<SigningKey>,
    signatories: [SigningKey; 2],
    next_key: u64,
    history: Vec<SignedOp>,
    /// A rotation just signed: taken into `keys` once the ledger accepts it.
    staged_key: Option<(usize, SigningKey)>,
    /// Payer (party index) of each held payment, as of the current op.
    payers: BTreeMap<TxId, usize>,
}

fn bank_of(p: usize) -> usize {
    if p < CLIENTS {
        p % 2
    } else {
        p - CLIENTS
    }
}

impl Sim {
    fn new() -> Sim {
        let w = World::new();
        let mut keys: Vec<_> = (0..CLIENTS as u64).map(|i| key(100 + i)).collect();
        keys.push(w.banks[0].clone());
        keys.push(w.banks[1].clone());
        Sim {
            orig: keys.clone(),
            keys,
            w,
            signatories: [key(900), key(901)],
            next_key: 5_000,
            history: Vec::new(),
            staged_key: None,
            payers: BTreeMap::new(),
        }
    }
    fn ids(&self) -> Vec<AccountId> {
        self.orig.iter().map(id).collect()
    }
    fn setup_ops(&mut self) -> Vec<SignedOp> {
        let ids = self.ids();
        let mut ops: Vec<SignedOp> = (0..CLIENTS)
            .map(|i| {
                let bank = self.w.banks[i % 2].clone();
                self.w.sign(
                    &bank,
                    Op::OpenAccount {
                        account: ids[i],
                        kind: AccountKind::Business,
                    },
                )
            })
            .collect();
        let (bank0, cb) = (self.w.banks[0].clone(), self.w.cb.clone());
        let keys = vec![id(&self.signatories[0]), id(&self.signatories[1])];
        ops.push(self.w.sign(
            &bank0,
            Op::SetSignatories {
                account: ids[0],
                min_amount: SIGNED_FROM,
                required: 2,
                keys,
            },
        ));
        // Funding: each bank gets 1,000,000 and pays each of its clients 200,000.
        for b in 0..2 {
            ops.push(self.w.sign(
                &cb,
                Op::Issue {
                    bank: ids[CLIENTS + b],
                    amount: FUNDS_BANK,
                },
            ));
        }
        for (i, payee) in ids.iter().enumerate().take(CLIENTS) {
            let bank = self.w.banks[i % 2].clone();
            ops.push(self.w.sign(
                &bank,
                Op::Transfer {
                    payee: *payee,
                    amount: FUNDS_CLIENT,
                    purpose: String::new(),
                },
            ));
        }
        ops.push(self.w.sign(
            &cb,
            Op::SetControls {
                hold_threshold: 0,
                hold_window_ms: WINDOW_MS,
                protected_minimum: 0,
            },
        ));
        ops.push(self.w.sign(
            &cb,
            Op::DefinePurpose {
                purpose: PURPOSE,
                issuer: id(&cb),
                unlock_at_ms: 0,
                expires_at_ms: EXPIRES,
                payees: vec![ids[PURPOSE_PAYEE]],
                categories: vec![],
            },
        ));
        ops
    }
    /// The operation for an action; `pending` lists the held payments in id order.
    fn op_for(&mut self, a: &Action, pending: &[TxId]) -> SignedOp {
        let cb = self.w.cb.clone();
        let ids = self.ids();
        let bank_key = |s: &Sim, p: usize| s.w.banks[bank_of(p)].clone();
        match *a {
            Action::Issue { bank, amount } => self.w.sign(
                &cb,
                Op::Issue {
                    bank: ids[CLIENTS + bank],
                    amount,
                },
            ),
            Action::Pay {
                from,
                to,
                amount,
                old_key,
            } => {
                let k = if old_key {
                    self.orig[from].clone()
                } else {
                    self.keys[from].clone()
                };
                self.w.sign(
                    &k,
                    Op::Transfer {
                        payee: ids[to],
                        amount,
                        purpose: "p".into(),
                    },
                )
            }
            Action::SetControls { threshold, floor } => self.w.sign(
                &cb,
                Op::SetControls {
                    hold_threshold: threshold,
                    hold_window_ms: WINDOW_MS,
                    protected_minimum: floor,
                },
            ),
            Action::Flag { who, on } => self.w.sign(
                &cb,
                Op::FlagFraud {
                    account: ids[who],
                    flagged: on,
                },
            ),
            Action::Settle { k, how } => {
                let payment = if pending.is_empty() {
                    TxId([7; 32])
                } else {
                    pending[k % pending.len()]
                };
                // The payer of a held payment is a client; for an unknown
                // payment any signer does.
                let payer = self.payer_of(&payment).unwrap_or(1);
                match how {
                    How::Confirm => {
                        let k = self.keys[payer].clone();
                        self.w.sign(&k, Op::ConfirmPayment { payment })
                    }
                    How::Approve(s) => {
                        let k = self.signatories[s].clone();
                        self.w.sign(&k, Op::ConfirmPayment { payment })
                    }
                    How::Release => {
                        let k = bank_key(self, payer);
                        self.w.sign(&k, Op::ReleasePayment { payment })
                    }
                    How::Void => {
                        let k = self.keys[payer].clone();
                        self.w.sign(&k, Op::VoidPayment { payment })
                    }
                }
            }
            Action::ReceiveOnly { who } => self.w.sign(&cb, Op::FreezeReceiveOnly { account: ids[who] }),
            Action::Unfreeze { who } => self.w.sign(&cb, Op::Unfreeze { account: ids[who] }),
            Action::Collect {
                debtor,
                claimant,
                amount,
            } => self.w.sign(
                &cb,
                Op::Collect {
                    debtor: ids[debtor],
                    claimant: ids[claimant],
                    amount,
                },
            ),
            Action::IssueTagged { to, amount } => self.w.sign(
                &cb,
                Op::PayTagged {
                    payee: ids[to],
                    amount,
                    purpose: PURPOSE,
                },
            ),
            Action::Sweep { who, on } => {
                let k = bank_key(self, who);
                self.w.sign(
                    &k,
                    Op::SetSweep {
                        account: ids[who],
                        enabled: on,
                    },
                )
            }
            Action::Cap { cap } => self.w.sign(
                &cb,
                Op::SetLimits {
                    kind: AccountKind::Business,
                    limits: Limits {
                        balance_cap: cap,
                        ..Limits::UNLIMITED
                    },
                },
            ),
            Action::Rotate { who } => {
                let k = bank_key(self, who);
                self.next_key += 1;
                let new_key = key(self.next_key);
                let op = self.w.sign(
                    &k,
                    Op::RotateKey {
                        account: ids[who],
                        new_key: id(&new_key),
                    },
                );
                self.staged_key = Some((who, new_key));
                op
            }
            Action::Replay { back } => match self.history.len() {
                0 => self.w.sign(&cb, Op::SetReportingThreshold { amount: 1 }),
                n => self.history[n - 1 - back.min(n - 1)].clone(),
            },
        }
    }
}

impl Sim {
    fn payer_of(&self, payment: &TxId) -> Option<usize> {
        self.payers.get(payment).copied()
    }
}

impl Model {
    fn new() -> Model {
        let mut bal = vec![FUNDS_CLIENT; CLIENTS];
        bal.extend([FUNDS_BANK - 2 * FUNDS_CLIENT; 2]);
        Model {
            bal,
            status: vec![St::Active; PARTIES],
            issued: 2 * FUNDS_BANK,
            redeemed: 0,
            threshold: 0,
            floor: 0,
            cap: u64::MAX,
            fraud: BTreeSet::new(),
            known: BTreeSet::new(),
            pending: BTreeMap::new(),
            lots: BTreeMap::new(),
            purpose_live: true,
            sweep: BTreeSet::new(),
        }
    }

    fn cap_of(&self, p: usize) -> u64 {
        if p < CLIENTS {
            self.cap
        } else {
            u64::MAX
        }
    }
    fn reserved_free(&self, p: usize) -> u64 {
        self.pending
            .values()
            .filter(|h| h.payer == p)
            .map(|h| h.free_part)
            .sum()
    }
    fn lot(&self, p: usize) -> MLot {
        self.lots.get(&p).copied().unwrap_or_default()
    }
    fn free(&self, p: usize) -> u64 {
        self.bal[p] - self.lot(p).amount - self.reserved_free(p)
    }
    fn lot_usable(&self, ts: u64, payee: usize) -> bool {
        payee == PURPOSE_PAYEE && ts < EXPIRES && self.purpose_live
    }

    /// `(payee keeps, swept to its bank)`, or the refusal.
    fn plan_credit(&self, q: usize, amount: u64, sweepable: bool) -> Result<(u64, u64), Reason> {
        let cap = self.cap_of(q);
        if self.bal[q] + amount <= cap {
            return Ok((amount, 0));
        }
        if !(sweepable && self.sweep.contains(&q)) {
            return Err(Reason::BalanceLimitExceeded);
        }
        let keep = cap.saturating_sub(self.bal[q]).min(amount);
        Ok((keep, amount - keep))
    }
    fn credit(&mut self, q: usize, c: (u64, u64)) -> Effect {
        self.bal[q] += c.0;
        self.bal[CLIENTS + bank_of(q)] += c.1;
        if c.1 > 0 {
            Effect::Swept { amount: c.1 }
        } else {
            Effect::None
        }
    }
    fn check_statuses(&self, p: usize, q: usize) -> Result<(), Reason> {
        if self.status[p] == St::ReceiveOnly {
            return Err(Reason::AccountReceiveOnly);
        }
        let _ = q; // Receive-only payees receive; there is no full freeze here.
        Ok(())
    }

    /// Predicts the outcome of `a` at block time `ts`; applies it if accepted.
    #[allow(clippy::too_many_arguments)]
    fn predict(
        &mut self,
        a: &Action,
        ts: u64,
        tx: TxId,
        payment: Option<TxId>,
        rotated: &[bool],
        replay: bool,
    ) -> Result<Effect, Reason> {
        if replay {
            return Err(Reason::Duplicate);
        }
        match *a {
            Action::Issue { bank, amount } => {
                self.issued += amount;
                self.bal[CLIENTS + bank] += amount;
                Ok(Effect::None)
            }
            Action::Pay {
                from,
                to,
                amount,
                old_key,
            } => {
                if amount == 0 {
                    return Err(Reason::ZeroAmount);
                }
                if old_key && rotated[from] {
                    return Err(Reason::KeyRevoked);
                }
                if from == to {
                    return Err(Reason::SelfTransfer);
                }
                self.check_statuses(from, to)?;
                // Funding: the purpose's lot first (only toward its payee).
                let lot = self.lot(from);
                let from_lot = if self.lot_usable(ts, to) {
                    (lot.amount - lot.reserved).min(amount)
                } else {
                    0
                };
                let free_part = amount - from_lot;
                if free_part > self.free(from) {
                    return Err(if amount > self.bal[from] {
                        Reason::InsufficientFunds
                    } else if amount > self.bal[from] - self.reserved_free(from) - lot.reserved {
                        Reason::FundsReserved
                    } else {
                        Reason::PurposeRestricted
                    });
                }
                let kind = if from == 0 && amount >= SIGNED_FROM {
                    Some(HoldKind::Signatures)
                } else if from_lot > 0 {
                    None
                } else if self.fraud.contains(&to) {
                    Some(HoldKind::FraudRegistry)
                } else if self.threshold > 0 && amount >= self.threshold && !self.known.contains(&(from, to)) {
                    Some(HoldKind::NewPayee)
                } else {
                    None
                };
                let credit = self.plan_credit(to, amount, true)?;
                let Some(kind) = kind else {
                    return Ok(self.execute(from, to, amount, from_lot, credit, false));
                };
                if self.pending.values().filter(|h| h.payer == from).count() >= 32 {
                    return Err(Reason::CapacityReached);
                }
                if from_lot > 0 {
                    self.lots.get_mut(&from).unwrap().reserved += from_lot;
                }
                let deadline = ts + WINDOW_MS;
                self.pending.insert(
                    tx,
                    MPending {
                        payer: from,
                        payee: to,
                        amount,
                        kind,
                        deadline,
                        free_part,
                        lot_part: from_lot,
                        approvals: BTreeSet::new(),
                    },
                );
                Ok(Effect::Held { until_ms: deadline })
            }
            Action::SetControls { threshold, floor } => {
                self.threshold = threshold;
                self.floor = floor;
                Ok(Effect::None)
            }
            Action::Flag { who, on } => {
                if who >= CLIENTS {
                    return Err(Reason::InvalidKind);
                }
                match (self.fraud.contains(&who), on) {
                    (true, true) => Err(Reason::AlreadyFlagged),
                    (false, false) => Err(Reason::NotFlagged),
                    (_, true) => {
                        self.fraud.insert(who);
                        Ok(Effect::None)
                    }
                    (_, false) => {
                        self.fraud.remove(&who);
                        Ok(Effect::None)
                    }
                }
            }
            Action::Settle { how, .. } => {
                let id = payment.expect("a payment id");
                let h = self.pending.get(&id).cloned().ok_or(Reason::UnknownPayment)?;
                if !matches!(how, How::Void) && h.deadline < ts {
                    return Err(Reason::PaymentExpired);
                }
                match how {
                    How::Void => {
                        self.void(&id);
                        Ok(Effect::None)
                    }
                    How::Approve(s) => {
                        if h.kind != HoldKind::Signatures {
                            return Err(Reason::NotAuthorised);
                        }
                        if h.approvals.contains(&s) {
                            return Err(Reason::AlreadyApproved);
                        }
                        if h.approvals.len() + 1 >= 2 {
                            return self.settle(ts, &id);
                        }
                        self.pending.get_mut(&id).unwrap().approvals.insert(s);
                        Ok(Effect::Approved)
                    }
                    How::Confirm | How::Release if h.kind == HoldKind::Signatures => Err(Reason::NotAuthorised),
                    How::Confirm | How::Release => self.settle(ts, &id),
                }
            }
            Action::ReceiveOnly { who } => match self.status[who] {
                St::ReceiveOnly => Err(Reason::AccountReceiveOnly),
                St::Active => {
                    self.status[who] = St::ReceiveOnly;
                    Ok(Effect::None)
                }
            },
            Action::Unfreeze { who } => match self.status[who] {
                St::Active => Err(Reason::AccountNotFrozen),
                St::ReceiveOnly => {
                    self.status[who] = St::Active;
                    Ok(Effect::None)
                }
            },
            Action::Collect {
                debtor,
                claimant,
                amount,
            } => {
                if amount == 0 {
                    return Err(Reason::ZeroAmount);
                }
                if debtor == claimant {
                    return Err(Reason::SelfTransfer);
                }
                if debtor >= CLIENTS {
                    return Err(Reason::InvalidKind);
                }
                let moved = self.free(debtor).saturating_sub(self.floor).min(amount);
                if moved == 0 {
                    return Err(Reason::NothingCollectable);
                }
                let credit = self.plan_credit(claimant, moved, false)?;
                self.bal[debtor] -= moved;
                self.credit(claimant, credit);
                Ok(Effect::Collected { amount: moved })
            }
            Action::IssueTagged { to, amount } => {
                if amount == 0 {
                    return Err(Reason::ZeroAmount);
                }
                if ts >= EXPIRES || !self.purpose_live {
                    return Err(Reason::UnknownPurpose);
                }
                if to >= CLIENTS {
                    return Err(Reason::InvalidKind);
                }
                self.plan_credit(to, amount, false)?;
                self.issued += amount;
                self.bal[to] += amount;
                self.lots.entry(to).or_default().amount += amount;
                Ok(Effect::None)
            }
            Action::Sweep { who, on } => {
                if who >= CLIENTS {
                    return Err(Reason::InvalidKind);
                }
                if on {
                    self.sweep.insert(who);
                } else {
                    self.sweep.remove(&who);
                }
                Ok(Effect::None)
            }
            Action::Cap { cap } => {
                self.cap = cap;
                Ok(Effect::None)
            }
            Action::Rotate { who } => {
                if who >= CLIENTS {
                    return Err(Reason::InvalidKind);
                }
                Ok(Effect::None)
            }
            Action::Replay { .. } => Ok(Effect::None),
        }
    }

    fn execute(
        &mut self,
        p: usize,
        q: usize,
        amount: u64,
        lot_part: u64,
        credit: (u64, u64),
        reserved: bool,
    ) -> Effect {
        if lot_part > 0 {
            let lot = self.lots.get_mut(&p).unwrap();
            lot.amount -= lot_part;
            if reserved {
                lot.reserved -= lot_part;
            }
            if lot.amount == 0 {
                self.lots.remove(&p);
            }
        }
        self.bal[p] -= amount;
        let e = self.credit(q, credit);
        if self.threshold > 0 && amount >= self.threshold {
            self.known.insert((p, q));
        }
        e
    }

    fn settle(&mut self, ts: u64, id: &TxId) -> Result<Effect, Reason> {
        let h = self.pending[id].clone();
        self.check_statuses(h.payer, h.payee)?;
        if h.lot_part > 0 && !self.lot_usable(ts, h.payee) {
            return Err(Reason::PurposeRestricted);
        }
        let credit = self.plan_credit(h.payee, h.amount, true)?;
        self.pending.remove(id);
        let e = self.execute(h.payer, h.payee, h.amount, h.lot_part, credit, true);
        Ok(Effect::Settled { swept: e.swept() })
    }

    fn void(&mut self, id: &TxId) {
        let h = self.pending.remove(id).unwrap();
        if h.lot_part > 0 {
            self.lots.get_mut(&h.payer).unwrap().reserved -= h.lot_part;
        }
    }

    /// What a block's seal does at `ts`: void past-deadline holds, then
    /// return the expired purpose's unreserved funds (destroyed: the
    /// central bank issued them).
    fn seal(&mut self, ts: u64) {
        let due: Vec<TxId> = self
            .pending
            .iter()
            .filter(|(_, h)| h.deadline < ts)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.void(&id);
        }
        if ts >= EXPIRES && self.purpose_live {
            for (holder, lot) in self.lots.iter_mut() {
                let back = lot.amount - lot.reserved;
                self.bal[*holder] -= back;
                self.redeemed += back;
                lot.amount = lot.reserved;
            }
            self.lots.retain(|_, l| l.amount > 0);
            if self.lots.is_empty() {
                self.purpose_live = false;
            }
        }
    }
}

fn check_model(s: &State, m: &Model, ids: &[AccountId]) {
    s.check_invariants().unwrap();
    for (p, a) in ids.iter().enumerate() {
        let acct = s.account(a).unwrap();
        assert_eq!(acct.balance, m.bal[p], "balance of party {p}");
        let st = match acct.status {
            AccountStatus::ReceiveOnly => St::ReceiveOnly,
            AccountStatus::Active => St::Active,
            other => panic!("party {p} is {other:?}"),
        };
        assert_eq!(st, m.status[p], "status of party {p}");
        let lot = s.controls().lots_of(a).find(|(p, _)| *p == PURPOSE).map(|(_, l)| *l);
        let got = lot.map_or(MLot::default(), |l| MLot {
            amount: l.amount,
            reserved: l.reserved,
        });
        assert_eq!(got, m.lot(p), "lot of party {p}");
    }
    let held: BTreeMap<TxId, u64> = s.controls().all_pending().map(|(id, h)| (*id, h.amount)).collect();
    let want: BTreeMap<TxId, u64> = m.pending.iter().map(|(id, h)| (*id, h.amount)).collect();
    assert_eq!(held, want, "held payments");
    assert_eq!(s.totals().issued, m.issued);
    assert_eq!(s.totals().redeemed, m.redeemed);
}

/// Block timestamps: T0 plus the running sum of the steps.
fn steps() -> impl Strategy<Value = Vec<(u64, Vec<Action>)>> {
    prop::collection::vec((0u64..900, prop::collection::vec(action(), 1..14)), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn controls_match_the_model(blocks in steps()) {
        let mut sim = Sim::new();
        let (mut s, _) = State::genesis(&sim.w.genesis()).unwrap();
        s.begin_block(T0);
        for op in sim.setup_ops() {
            s.apply(sim.w.verified(op)).unwrap();
        }
        s.seal_block();
        let ids = sim.ids();
        let mut m = Model::new();
        let mut rotated = vec![false; PARTIES];
        let mut ts = T0;
        for (step, block) in &blocks {
            ts += step;
            s.begin_block(ts);
            for a in block {
                let pending: Vec<TxId> = s.controls().all_pending().map(|(id, _)| *id).collect();
                sim.payers = s
                    .controls()
                    .all_pending()
                    .map(|(id, h)| (*id, ids.iter().position(|x| *x == h.payer).unwrap()))
                    .collect();
                let op = sim.op_for(a, &pending);
                let payment = match &op.body.op {
                    Op::ConfirmPayment { payment } | Op::ReleasePayment { payment } | Op::VoidPayment { payment } => {
                        Some(*payment)
                    }
                    _ => None,
                };
                let replay = s.is_recent(&op.tx_id);
                let expected = m.predict(a, ts, op.tx_id, payment, &rotated, replay);
                let got = s.apply(sim.w.verified(op.clone())).map(|ap| ap.effect);
                prop_assert_eq!(got, expected, "action {:?} at {}", a, ts - T0);
                if got.is_ok() {
                    sim.history.push(op);
                    if let Some((who, k)) = sim.staged_key.take() {
                        sim.keys[who] = k;
                        rotated[who] = true;
                    }
                }
                sim.staged_key = None;
            }
            s.seal_block();
            m.seal(ts);
            check_model(&s, &m, &ids);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// The same through RocksDB: the reopened state has the same hash and
    /// control records, and the auditor replays every operation.
    #[test]
    fn controls_survive_store_and_audit(blocks in steps()) {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Sim::new();
        let g = sim.w.genesis();
        let (hash, records) = {
            let mut ledger = Ledger::open(dir.path(), Some(&g)).unwrap();
            let setup = sim.setup_ops();
            let out = ledger.execute(T0, setup.clone()).unwrap();
            prop_assert!(out.iter().all(|o| matches!(o, Outcome::Committed(_))));
            sim.history.extend(setup);
            let ids = sim.ids();
            let mut ts = T0;
            for (step, block) in &blocks {
                ts += step;
                let mut ops = Vec::new();
                for a in block {
                    let pending: Vec<TxId> = ledger.state().controls().all_pending().map(|(id, _)| *id).collect();
                    sim.payers = ledger
                        .state()
                        .controls()
                        .all_pending()
                        .map(|(id, h)| (*id, ids.iter().position(|x| *x == h.payer).unwrap()))
                        .collect();
                    ops.push(sim.op_for(a, &pending));
                    // A rotation is taken as applied; if it is not, later
                    // payments are refused, which is fine here.
                    if let Some((who, k)) = sim.staged_key.take() {
                        sim.keys[who] = k;
                    }
                }
                let out = ledger.execute(ts, ops.clone()).unwrap();
                for (op, o) in ops.into_iter().zip(out) {
                    if let Outcome::Committed(r) = o {
                        prop_assert_eq!(r.tx_id, op.tx_id);
                        sim.history.push(op);
                    }
                }
                ledger.state().check_invariants().unwrap();
            }
            (ledger.state().state_hash(), ledger.state().controls().records())
        };
        let ledger = Ledger::open(dir.path(), None).unwrap();
        ledger.state().check_invariants().unwrap();
        prop_assert_eq!(ledger.state().state_hash(), hash);
        prop_assert_eq!(ledger.state().controls().records(), records);
        let report = ruble_ledger::audit::audit(ledger.store(), &sim.history.iter().map(|o| o.tx_id).collect::<Vec<_>>()).unwrap();
        prop_assert!(report.ok, "audit: {:?}", report.errors);
        prop_assert_eq!(report.operations as usize, sim.history.len());
    }
}
