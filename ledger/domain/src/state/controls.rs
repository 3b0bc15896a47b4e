//! Central-bank controls: held payments (anti-fraud holds and business
//! signatories), the fraud registry, purpose-bound money, holding-limit
//! sweeps, wallet tiers, key rotation and court-ordered collection.
//!
//! Everything here is data the state machine checks at apply time; no user
//! code runs in the ledger. The records live beside the accounts, not in
//! them: a ledger that uses none of these controls has no record, keeps the
//! account layout and the state hash of a ledger that predates them, and
//! transfers between accounts without controls take the unchanged fast path
//! in `State::transfer` (one flag per account, [`super::Slot::ctl`], says
//! whether an account has any record).
//!
//! Each record has one canonical encoding (`key`, `value`); the state hash
//! commits to the multiset of `CONTROL_DOMAIN ‖ key ‖ value` through a
//! second [`StateAccumulator`], updated record by record, and the store
//! keeps the records in their own column family. Indexes that can be
//! derived from the records (deadlines, reserved sums, key lookups) are
//! rebuilt at load and never hashed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::block::StateAccumulator;
use crate::types::{AccountId, Kopecks, Limits, Tier, TxId};

/// Domain prefix of a control record's accumulator entry.
const CONTROL_DOMAIN: &[u8] = b"ruble-ledger/control/v1\0";

/// Longest anti-fraud hold window (seven days).
pub const MAX_HOLD_WINDOW_MS: u64 = 7 * 86_400_000;
/// Default hold window: two days, the Russian anti-fraud rule's.
pub const DEFAULT_HOLD_WINDOW_MS: u64 = 2 * 86_400_000;
/// Most held payments one account may have waiting.
pub const MAX_PENDING_PER_ACCOUNT: u32 = 32;
/// Most held payments in the whole ledger.
pub const MAX_PENDING_TOTAL: usize = 1 << 20;
/// Most purposes defined at once.
pub const MAX_PURPOSES: usize = 4096;
/// Most purpose-bound lots (distinct purposes) one wallet may hold.
pub const MAX_LOTS_PER_ACCOUNT: usize = 8;
/// Most accounts on the fraud registry.
pub const MAX_FRAUD_REGISTRY: usize = 1 << 20;
/// Most expiries (voided holds and returned lots) one block's seal performs;
/// the rest wait for the next block. Bounds a block's seal after a lull.
pub const EXPIRIES_MAX_PER_BLOCK: usize = 4096;

/// A key that was rotated away: it signs for no account any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetiredKey;

/// Chain-wide control parameters set by the central bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlParams {
    /// A payment of at least this to a payee the payer has not paid this
    /// much before is held; 0 = the new-payee rule is off.
    pub hold_threshold: Kopecks,
    /// How long a held payment waits for its confirmation or release.
    pub hold_window_ms: u64,
    /// Court-ordered collection leaves at least this in a wallet.
    pub protected_minimum: Kopecks,
    /// Limits of the anonymous tier.
    pub anonymous: Limits,
    /// Limits of the simplified tier.
    pub simplified: Limits,
}

impl Default for ControlParams {
    fn default() -> Self {
        ControlParams {
            hold_threshold: 0,
            hold_window_ms: DEFAULT_HOLD_WINDOW_MS,
            protected_minimum: 0,
            anonymous: Limits::UNLIMITED,
            simplified: Limits::UNLIMITED,
        }
    }
}

/// Why a payment is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum HoldKind {
    /// First payment of at least the hold threshold to this payee.
    NewPayee = 1,
    /// The payee is on the fraud registry.
    FraudRegistry = 2,
    /// A business payment above its signatories' amount, waiting for approvals.
    Signatures = 3,
}

impl HoldKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => HoldKind::NewPayee,
            2 => HoldKind::FraudRegistry,
            3 => HoldKind::Signatures,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::NewPayee => "new_payee",
            HoldKind::FraudRegistry => "fraud_registry",
            HoldKind::Signatures => "signatures",
        }
    }
}

/// A payment waiting for confirmation, release or signatures. Its funds
/// stay in the payer's balance, reserved: `free_part` of the free funds and
/// `lot_parts` of purpose-bound lots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub payer: AccountId,
    pub payee: AccountId,
    pub amount: Kopecks,
    pub kind: HoldKind,
    /// Voided when a block later than this seals.
    pub deadline_ms: u64,
    pub free_part: Kopecks,
    /// `(purpose, amount)`, by purpose id.
    pub lot_parts: Vec<(u32, Kopecks)>,
    /// Signatory keys that approved, sorted.
    pub approvals: Vec<AccountId>,
}

/// What tagged money may pay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purpose {
    /// Where unspent funds return at expiry; the central bank destroys them.
    pub issuer: AccountId,
    pub unlock_at_ms: u64,
    pub expires_at_ms: u64,
    pub payees: Vec<AccountId>,
    pub categories: Vec<u16>,
}

impl Purpose {
    /// Whether funds of this purpose may pay `payee` (of `category`) at `ts`.
    pub fn allows(&self, ts: u64, payee: &AccountId, category: u16) -> bool {
        ts >= self.unlock_at_ms
            && ts < self.expires_at_ms
            && (self.payees.contains(payee) || (category != 0 && self.categories.contains(&category)))
    }
}

/// A wallet's holding of one purpose's money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lot {
    pub amount: Kopecks,
    /// Part of `amount` reserved by held payments.
    pub reserved: Kopecks,
}

/// A business account's k-of-n rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signatories {
    pub min_amount: Kopecks,
    pub required: u8,
    /// Sorted, unique.
    pub keys: Vec<AccountId>,
}

/// Per-account settings; an account with all defaults has no record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountControls {
    pub tier: Tier,
    pub category: u16,
    pub sweep: bool,
    /// The key that signs for the account after a rotation.
    pub controller: Option<AccountId>,
    pub signatories: Option<Signatories>,
}

impl Default for AccountControls {
    fn default() -> Self {
        AccountControls {
            tier: Tier::Full,
            category: 0,
            sweep: false,
            controller: None,
            signatories: None,
        }
    }
}

/// All control records, with the indexes derived from them.
#[derive(Clone, Default)]
pub struct Controls {
    pub(super) params: ControlParams,
    pub(super) pending: BTreeMap<TxId, Pending>,
    pub(super) fraud: BTreeMap<AccountId, AccountId>,
    pub(super) known: BTreeSet<(AccountId, AccountId)>,
    pub(super) purposes: BTreeMap<u32, Purpose>,
    pub(super) lots: BTreeMap<(AccountId, u32), Lot>,
    pub(super) accounts: BTreeMap<AccountId, AccountControls>,
    /// Retired key → the account it controlled.
    pub(super) retired: BTreeMap<AccountId, AccountId>,
    // Derived, not hashed.
    pub(super) deadlines: BTreeSet<(u64, TxId)>,
    pub(super) expiries: BTreeSet<(u64, u32)>,
    pub(super) reserved_free: BTreeMap<AccountId, Kopecks>,
    pub(super) pending_count: BTreeMap<AccountId, u32>,
    pub(super) lots_by_purpose: BTreeMap<u32, BTreeSet<AccountId>>,
    pub(super) key_index: BTreeMap<AccountId, AccountId>,
    pub(super) acc: StateAccumulator,
    /// The open block's record changes (`None` = deleted), for the store.
    pub(super) changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

// Record key prefixes.
const K_PARAMS: u8 = b'C';
const K_PENDING: u8 = b'P';
const K_FRAUD: u8 = b'F';
const K_KNOWN: u8 = b'K';
const K_PURPOSE: u8 = b'D';
const K_LOT: u8 = b'L';
const K_ACCOUNT: u8 = b'A';
const K_RETIRED: u8 = b'R';

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn put_limits(o: &mut Vec<u8>, l: &Limits) {
    o.extend_from_slice(&l.balance_cap.to_be_bytes());
    o.extend_from_slice(&l.payment_cap.to_be_bytes());
    o.extend_from_slice(&l.daily_outflow_cap.to_be_bytes());
}

/// Strict reader for record values (stored by this module only; a record
/// that does not decode is corruption).
struct R<'a>(&'a [u8]);
impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn id(&mut self) -> Option<AccountId> {
        AccountId::from_slice(self.take(32)?)
    }
    fn limits(&mut self) -> Option<Limits> {
        Some(Limits {
            balance_cap: self.u64()?,
            payment_cap: self.u64()?,
            daily_outflow_cap: self.u64()?,
        })
    }
    fn end(self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn enc_params(p: &ControlParams) -> Vec<u8> {
    let mut o = Vec::with_capacity(24 + 48);
    o.extend_from_slice(&p.hold_threshold.to_be_bytes());
    o.extend_from_slice(&p.hold_window_ms.to_be_bytes());
    o.extend_from_slice(&p.protected_minimum.to_be_bytes());
    put_limits(&mut o, &p.anonymous);
    put_limits(&mut o, &p.simplified);
    o
}

fn enc_pending(p: &Pending) -> Vec<u8> {
    let mut o = Vec::with_capacity(128);
    o.extend_from_slice(&p.payer.0);
    o.extend_from_slice(&p.payee.0);
    o.extend_from_slice(&p.amount.to_be_bytes());
    o.push(p.kind as u8);
    o.extend_from_slice(&p.deadline_ms.to_be_bytes());
    o.extend_from_slice(&p.free_part.to_be_bytes());
    o.push(p.lot_parts.len() as u8);
    for (purpose, amount) in &p.lot_parts {
        o.extend_from_slice(&purpose.to_be_bytes());
        o.extend_from_slice(&amount.to_be_bytes());
    }
    o.push(p.approvals.len() as u8);
    for k in &p.approvals {
        o.extend_from_slice(&k.0);
    }
    o
}

fn dec_pending(b: &[u8]) -> Option<Pending> {
    let mut r = R(b);
    let payer = r.id()?;
    let payee = r.id()?;
    let amount = r.u64()?;
    let kind = HoldKind::from_u8(r.u8()?)?;
    let deadline_ms = r.u64()?;
    let free_part = r.u64()?;
    let n = r.u8()?;
    let lot_parts = (0..n).map(|_| Some((r.u32()?, r.u64()?))).collect::<Option<Vec<_>>>()?;
    let n = r.u8()?;
    let approvals = (0..n).map(|_| r.id()).collect::<Option<Vec<_>>>()?;
    r.end()?;
    Some(Pending {
        payer,
        payee,
        amount,
        kind,
        deadline_ms,
        free_part,
        lot_parts,
        approvals,
    })
}

fn enc_purpose(p: &Purpose) -> Vec<u8> {
    let mut o = Vec::with_capacity(64 + 32 * p.payees.len());
    o.extend_from_slice(&p.issuer.0);
    o.extend_from_slice(&p.unlock_at_ms.to_be_bytes());
    o.extend_from_slice(&p.expires_at_ms.to_be_bytes());
    o.push(p.payees.len() as u8);
    for x in &p.payees {
        o.extend_from_slice(&x.0);
    }
    o.push(p.categories.len() as u8);
    for c in &p.categories {
        o.extend_from_slice(&c.to_be_bytes());
    }
    o
}

fn dec_purpose(b: &[u8]) -> Option<Purpose> {
    let mut r = R(b);
    let issuer = r.id()?;
    let unlock_at_ms = r.u64()?;
    let expires_at_ms = r.u64()?;
    let n = r.u8()?;
    let payees = (0..n).map(|_| r.id()).collect::<Option<Vec<_>>>()?;
    let n = r.u8()?;
    let categories = (0..n).map(|_| r.u16()).collect::<Option<Vec<_>>>()?;
    r.end()?;
    Some(Purpose {
        issuer,
        unlock_at_ms,
        expires_at_ms,
        payees,
        categories,
    })
}

fn enc_account(a: &AccountControls) -> Vec<u8> {
    let mut o = Vec::with_capacity(48);
    o.push(a.tier as u8);
    o.extend_from_slice(&a.category.to_be_bytes());
    o.push(a.sweep as u8);
    match &a.controller {
        Some(k) => {
            o.push(1);
            o.extend_from_slice(&k.0);
        }
        None => o.push(0),
    }
    match &a.signatories {
        Some(s) => {
            o.push(1);
            o.extend_from_slice(&s.min_amount.to_be_bytes());
            o.push(s.required);
            o.push(s.keys.len() as u8);
            for k in &s.keys {
                o.extend_from_slice(&k.0);
            }
        }
        None => o.push(0),
    }
    o
}

fn dec_account(b: &[u8]) -> Option<AccountControls> {
    let mut r = R(b);
    let tier = Tier::from_u8(r.u8()?)?;
    let category = r.u16()?;
    let sweep = match r.u8()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let controller = match r.u8()? {
        0 => None,
        1 => Some(r.id()?),
        _ => return None,
    };
    let signatories = match r.u8()? {
        0 => None,
        1 => {
            let min_amount = r.u64()?;
            let required = r.u8()?;
            let n = r.u8()?;
            let keys = (0..n).map(|_| r.id()).collect::<Option<Vec<_>>>()?;
            Some(Signatories {
                min_amount,
                required,
                keys,
            })
        }
        _ => return None,
    };
    r.end()?;
    Some(AccountControls {
        tier,
        category,
        sweep,
        controller,
        signatories,
    })
}

fn entry(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(CONTROL_DOMAIN.len() + key.len() + value.len());
    e.extend_from_slice(CONTROL_DOMAIN);
    e.extend_from_slice(key);
    e.extend_from_slice(value);
    e
}

impl Controls {
    /// Whether no record exists (the state hash then leaves controls out).
    pub fn is_empty(&self) -> bool {
        self.acc == StateAccumulator::default()
            && self.params == ControlParams::default()
            && self.pending.is_empty()
            && self.fraud.is_empty()
            && self.known.is_empty()
            && self.purposes.is_empty()
            && self.lots.is_empty()
            && self.accounts.is_empty()
            && self.retired.is_empty()
    }

    pub fn accumulator(&self) -> StateAccumulator {
        self.acc
    }

    /// Records one change: the accumulator swaps the old entry for the new
    /// one, and the store learns the new value.
    fn record(&mut self, key: Vec<u8>, old: Option<Vec<u8>>, new: Option<Vec<u8>>) {
        if old == new {
            return;
        }
        if let Some(v) = &old {
            self.acc.remove(&entry(&key, v));
        }
        if let Some(v) = &new {
            self.acc.add(&entry(&key, v));
        }
        self.changes.insert(key, new);
    }

    pub(super) fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        std::mem::take(&mut self.changes).into_iter().collect()
    }

    pub(super) fn set_params(&mut self, p: ControlParams) {
        let enc = |p: &ControlParams| (*p != ControlParams::default()).then(|| enc_params(p));
        let old = enc(&self.params);
        let new = enc(&p);
        self.params = p;
        self.record(vec![K_PARAMS], old, new);
    }

    pub(super) fn set_pending(&mut self, id: TxId, p: Option<Pending>) {
        let old = self.pending.remove(&id);
        if let Some(o) = &old {
            self.deadlines.remove(&(o.deadline_ms, id));
            let r = self.reserved_free.get_mut(&o.payer).expect("reserved with its pending");
            *r -= o.free_part;
            if *r == 0 {
                self.reserved_free.remove(&o.payer);
            }
            let c = self.pending_count.get_mut(&o.payer).expect("counted with its pending");
            *c -= 1;
            if *c == 0 {
                self.pending_count.remove(&o.payer);
            }
        }
        if let Some(n) = &p {
            self.deadlines.insert((n.deadline_ms, id));
            *self.reserved_free.entry(n.payer).or_default() += n.free_part;
            *self.pending_count.entry(n.payer).or_default() += 1;
        }
        let k = key(K_PENDING, &[&id.0]);
        let (o, n) = (old.as_ref().map(enc_pending), p.as_ref().map(enc_pending));
        if let Some(n) = p {
            self.pending.insert(id, n);
        }
        self.record(k, o, n);
    }

    pub(super) fn set_fraud(&mut self, account: AccountId, by: Option<AccountId>) {
        let old = match by {
            Some(b) => self.fraud.insert(account, b),
            None => self.fraud.remove(&account),
        };
        self.record(
            key(K_FRAUD, &[&account.0]),
            old.map(|b| b.0.to_vec()),
            by.map(|b| b.0.to_vec()),
        );
    }

    pub(super) fn add_known(&mut self, payer: AccountId, payee: AccountId) {
        if self.known.insert((payer, payee)) {
            self.record(key(K_KNOWN, &[&payer.0, &payee.0]), None, Some(Vec::new()));
        }
    }

    pub(super) fn set_purpose(&mut self, id: u32, p: Option<Purpose>) {
        let old = self.purposes.remove(&id);
        if let Some(o) = &old {
            self.expiries.remove(&(o.expires_at_ms, id));
        }
        if let Some(n) = &p {
            self.expiries.insert((n.expires_at_ms, id));
        }
        let (o, n) = (old.as_ref().map(enc_purpose), p.as_ref().map(enc_purpose));
        if let Some(n) = p {
            self.purposes.insert(id, n);
        }
        self.record(key(K_PURPOSE, &[&id.to_be_bytes()]), o, n);
    }

    /// Sets a lot; an empty lot (nothing in it, nothing reserved) is removed.
    pub(super) fn set_lot(&mut self, holder: AccountId, purpose: u32, lot: Lot) {
        let enc = |l: &Lot| {
            let mut v = l.amount.to_be_bytes().to_vec();
            v.extend_from_slice(&l.reserved.to_be_bytes());
            v
        };
        debug_assert!(lot.reserved <= lot.amount);
        let new = (lot.amount > 0).then_some(lot);
        let old = match new {
            Some(l) => self.lots.insert((holder, purpose), l),
            None => self.lots.remove(&(holder, purpose)),
        };
        if new.is_some() {
            self.lots_by_purpose.entry(purpose).or_default().insert(holder);
        } else if let Some(set) = self.lots_by_purpose.get_mut(&purpose) {
            set.remove(&holder);
            if set.is_empty() {
                self.lots_by_purpose.remove(&purpose);
            }
        }
        self.record(
            key(K_LOT, &[&holder.0, &purpose.to_be_bytes()]),
            old.as_ref().map(enc),
            new.as_ref().map(enc),
        );
    }

    pub(super) fn set_account(&mut self, id: AccountId, c: AccountControls) {
        let old = self.accounts.remove(&id);
        if let Some(k) = old.as_ref().and_then(|o| o.controller) {
            self.key_index.remove(&k);
        }
        if let Some(k) = c.controller {
            self.key_index.insert(k, id);
        }
        let new = (c != AccountControls::default()).then_some(c);
        let (o, n) = (old.as_ref().map(enc_account), new.as_ref().map(enc_account));
        if let Some(n) = new {
            self.accounts.insert(id, n);
        }
        self.record(key(K_ACCOUNT, &[&id.0]), o, n);
    }

    pub(super) fn retire(&mut self, key_: AccountId, account: AccountId) {
        let old = self.retired.insert(key_, account);
        debug_assert!(old.is_none());
        self.record(key(K_RETIRED, &[&key_.0]), None, Some(account.0.to_vec()));
    }

    /// Rebuilds the controls from stored records. `Err` names the first
    /// record that does not decode.
    pub fn from_records(records: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<Controls, String> {
        let mut c = Controls::default();
        for (k, v) in records {
            let bad = || format!("control record {}", hex::encode(&k));
            let (&prefix, rest) = k.split_first().ok_or_else(bad)?;
            match prefix {
                K_PARAMS if rest.is_empty() => {
                    let mut r = R(&v);
                    let p = ControlParams {
                        hold_threshold: r.u64().ok_or_else(bad)?,
                        hold_window_ms: r.u64().ok_or_else(bad)?,
                        protected_minimum: r.u64().ok_or_else(bad)?,
                        anonymous: r.limits().ok_or_else(bad)?,
                        simplified: r.limits().ok_or_else(bad)?,
                    };
                    r.end().ok_or_else(bad)?;
                    c.set_params(p);
                }
                K_PENDING => {
                    let id = TxId::from_slice(rest).ok_or_else(bad)?;
                    c.set_pending(id, Some(dec_pending(&v).ok_or_else(bad)?));
                }
                K_FRAUD => {
                    let a = AccountId::from_slice(rest).ok_or_else(bad)?;
                    c.set_fraud(a, Some(AccountId::from_slice(&v).ok_or_else(bad)?));
                }
                K_KNOWN if rest.len() == 64 && v.is_empty() => {
                    let payer = AccountId::from_slice(&rest[..32]).ok_or_else(bad)?;
                    let payee = AccountId::from_slice(&rest[32..]).ok_or_else(bad)?;
                    c.add_known(payer, payee);
                }
                K_PURPOSE if rest.len() == 4 => {
                    let id = u32::from_be_bytes(rest.try_into().expect("4 bytes"));
                    c.set_purpose(id, Some(dec_purpose(&v).ok_or_else(bad)?));
                }
                K_LOT if rest.len() == 36 && v.len() == 16 => {
                    let holder = AccountId::from_slice(&rest[..32]).ok_or_else(bad)?;
                    let purpose = u32::from_be_bytes(rest[32..].try_into().expect("4 bytes"));
                    let lot = Lot {
                        amount: u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
                        reserved: u64::from_be_bytes(v[8..].try_into().expect("8 bytes")),
                    };
                    if lot.amount == 0 || lot.reserved > lot.amount {
                        return Err(bad());
                    }
                    c.set_lot(holder, purpose, lot);
                }
                K_ACCOUNT => {
                    let a = AccountId::from_slice(rest).ok_or_else(bad)?;
                    c.set_account(a, dec_account(&v).ok_or_else(bad)?);
                }
                K_RETIRED => {
                    let k = AccountId::from_slice(rest).ok_or_else(bad)?;
                    c.retire(k, AccountId::from_slice(&v).ok_or_else(bad)?);
                }
                _ => return Err(bad()),
            }
        }
        c.changes.clear();
        Ok(c)
    }

    /// Every record, canonical form, in key order (for tests and the auditor).
    pub fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        if self.params != ControlParams::default() {
            out.push((vec![K_PARAMS], enc_params(&self.params)));
        }
        for (id, p) in &self.pending {
            out.push((key(K_PENDING, &[&id.0]), enc_pending(p)));
        }
        for (a, b) in &self.fraud {
            out.push((key(K_FRAUD, &[&a.0]), b.0.to_vec()));
        }
        for (p, q) in &self.known {
            out.push((key(K_KNOWN, &[&p.0, &q.0]), Vec::new()));
        }
        for (id, p) in &self.purposes {
            out.push((key(K_PURPOSE, &[&id.to_be_bytes()]), enc_purpose(p)));
        }
        for ((h, p), l) in &self.lots {
            let mut v = l.amount.to_be_bytes().to_vec();
            v.extend_from_slice(&l.reserved.to_be_bytes());
            out.push((key(K_LOT, &[&h.0, &p.to_be_bytes()]), v));
        }
        for (a, c) in &self.accounts {
            out.push((key(K_ACCOUNT, &[&a.0]), enc_account(c)));
        }
        for (k, a) in &self.retired {
            out.push((key(K_RETIRED, &[&k.0]), a.0.to_vec()));
        }
        out.sort();
        out
    }

    /// Checks the derived indexes and the accumulator against the records.
    pub fn check(&self) -> Result<(), String> {
        let rebuilt = Controls::from_records(self.records())?;
        if rebuilt.acc != self.acc {
            return Err("control accumulator does not match the records".into());
        }
        if rebuilt.deadlines != self.deadlines
            || rebuilt.expiries != self.expiries
            || rebuilt.reserved_free != self.reserved_free
            || rebuilt.pending_count != self.pending_count
            || rebuilt.lots_by_purpose != self.lots_by_purpose
            || rebuilt.key_index != self.key_index
        {
            return Err("a derived control index disagrees with the records".into());
        }
        for p in self.pending.values() {
            let parts: u128 = p.lot_parts.iter().map(|&(_, a)| a as u128).sum();
            if parts + p.free_part as u128 != p.amount as u128 {
                return Err("a held payment's parts do not add up to its amount".into());
            }
        }
        let mut lot_reserved: BTreeMap<(AccountId, u32), u128> = BTreeMap::new();
        for p in self.pending.values() {
            for &(purpose, a) in &p.lot_parts {
                *lot_reserved.entry((p.payer, purpose)).or_default() += a as u128;
            }
        }
        for (k, l) in &self.lots {
            if lot_reserved.get(k).copied().unwrap_or(0) != l.reserved as u128 {
                return Err("a lot's reserved amount disagrees with the held payments".into());
            }
        }
        if lot_reserved.keys().any(|k| !self.lots.contains_key(k)) {
            return Err("a held payment reserves a lot that does not exist".into());
        }
        Ok(())
    }

    // Read access for the node's APIs and tools.
    pub fn params(&self) -> &ControlParams {
        &self.params
    }
    pub fn pending(&self, id: &TxId) -> Option<&Pending> {
        self.pending.get(id)
    }
    /// Held payments of `payer`, by id.
    pub fn pending_of<'a>(&'a self, payer: &'a AccountId) -> impl Iterator<Item = (&'a TxId, &'a Pending)> + 'a {
        self.pending.iter().filter(move |(_, p)| p.payer == *payer)
    }
    pub fn all_pending(&self) -> impl Iterator<Item = (&TxId, &Pending)> {
        self.pending.iter()
    }
    /// The limits that bind account `id` of `kind`, whose kind's limits are
    /// `kind_limits`: a retail wallet below the full tier gets the tighter
    /// of its tier's and its kind's, cap by cap (a lower tier never loosens
    /// a cap, whatever the tier limits are set to).
    pub fn limits_for(&self, id: &AccountId, kind: crate::types::AccountKind, kind_limits: Limits) -> Limits {
        if kind != crate::types::AccountKind::Retail {
            return kind_limits;
        }
        let tier = match self.accounts.get(id).map(|c| c.tier) {
            Some(Tier::Anonymous) => self.params.anonymous,
            Some(Tier::Simplified) => self.params.simplified,
            _ => return kind_limits,
        };
        Limits {
            balance_cap: tier.balance_cap.min(kind_limits.balance_cap),
            payment_cap: tier.payment_cap.min(kind_limits.payment_cap),
            daily_outflow_cap: tier.daily_outflow_cap.min(kind_limits.daily_outflow_cap),
        }
    }

    /// The parts of `balance`, the balance of account `id`:
    /// `(free, tagged, reserved)`. balance = free + tagged + the free funds
    /// held payments reserve; `reserved` counts reserved free and tagged
    /// funds. `free` is what any payment may spend.
    pub fn balance_parts(&self, id: &AccountId, balance: Kopecks) -> (Kopecks, Kopecks, Kopecks) {
        let reserved_free = self.reserved_free(id);
        let (mut tagged, mut reserved) = (0u64, reserved_free);
        for (_, l) in self.lots_of(id) {
            tagged += l.amount;
            reserved += l.reserved;
        }
        // Lots and reservations never exceed the balance (`State::check_invariants`).
        (balance - tagged - reserved_free, tagged, reserved)
    }

    /// Sum of the held payments' amounts.
    pub fn held_total(&self) -> u128 {
        self.pending.values().map(|p| p.amount as u128).sum()
    }
    /// Purpose-bound money in all wallets.
    pub fn tagged_total(&self) -> u128 {
        self.lots.values().map(|l| l.amount as u128).sum()
    }
    pub fn purpose(&self, id: u32) -> Option<&Purpose> {
        self.purposes.get(&id)
    }
    pub fn purposes(&self) -> impl Iterator<Item = (&u32, &Purpose)> {
        self.purposes.iter()
    }
    /// Lots of `holder`, by purpose.
    pub fn lots_of<'a>(&'a self, holder: &AccountId) -> impl Iterator<Item = (u32, &'a Lot)> + 'a {
        self.lots
            .range((*holder, 0)..=(*holder, u32::MAX))
            .map(|(&(_, p), l)| (p, l))
    }
    pub fn account(&self, id: &AccountId) -> AccountControls {
        self.accounts.get(id).cloned().unwrap_or_default()
    }
    /// Who put `account` on the fraud registry.
    pub fn flagged_by(&self, account: &AccountId) -> Option<AccountId> {
        self.fraud.get(account).copied()
    }
    pub fn fraud_registry(&self) -> impl Iterator<Item = (&AccountId, &AccountId)> {
        self.fraud.iter()
    }
    /// Free funds reserved by held payments of `account`.
    pub fn reserved_free(&self, account: &AccountId) -> Kopecks {
        self.reserved_free.get(account).copied().unwrap_or(0)
    }
    /// The account a key signs for: the account it names, the account it
    /// controls after a rotation, or [`RetiredKey`] if it was rotated away.
    #[inline]
    pub fn resolve(&self, key_: &AccountId) -> Result<AccountId, RetiredKey> {
        if self.key_index.is_empty() {
            return Ok(*key_);
        }
        if let Some(a) = self.key_index.get(key_) {
            return Ok(*a);
        }
        if self.retired.contains_key(key_) {
            return Err(RetiredKey);
        }
        Ok(*key_)
    }
    /// The key that controls `account` now.
    pub fn controller(&self, account: &AccountId) -> AccountId {
        self.accounts
            .get(account)
            .and_then(|c| c.controller)
            .unwrap_or(*account)
    }
    pub fn is_retired(&self, key_: &AccountId) -> bool {
        self.retired.contains_key(key_)
    }
    /// Whether `payer` has paid `payee` at least the hold threshold before.
    pub fn is_known(&self, payer: &AccountId, payee: &AccountId) -> bool {
        self.known.contains(&(*payer, *payee))
    }
    /// Accounts mentioned by any per-account record (their slots get the
    /// `ctl` flag at load).
    pub(super) fn mentioned(&self) -> BTreeSet<AccountId> {
        let mut s = BTreeSet::new();
        s.extend(self.pending.values().flat_map(|p| [p.payer, p.payee]));
        s.extend(self.fraud.keys().copied());
        s.extend(self.lots.keys().map(|(h, _)| *h));
        s.extend(self.accounts.keys().copied());
        s
    }
}
