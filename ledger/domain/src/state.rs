//! The deterministic state machine.
//!
//! [`State`] is the whole ledger state in memory. It is changed only by
//! [`State::begin_block`], [`State::apply`] and [`State::seal_block`], which are
//! pure functions of the state and their arguments: no clock, no randomness,
//! no IO, no networking. The node chooses each block's timestamp and passes it
//! in; daily limits and validity windows use it. Replaying the same blocks on
//! [`State::genesis`] therefore yields the same state hash everywhere, which is
//! what the auditor (and, later, replication) relies on.
//!
//! `apply` either applies an operation completely or returns a [`Reason`] and
//! leaves the state exactly as it was: every check happens before the first
//! mutation.

use std::collections::{BTreeMap, HashMap, HashSet};

mod controls;
mod rules;

pub use controls::{
    AccountControls, ControlParams, Controls, HoldKind, Lot, Pending, Purpose, RetiredKey, Signatories,
    DEFAULT_HOLD_WINDOW_MS, EXPIRIES_MAX_PER_BLOCK, MAX_FRAUD_REGISTRY, MAX_HOLD_WINDOW_MS, MAX_LOTS_PER_ACCOUNT,
    MAX_PENDING_PER_ACCOUNT, MAX_PENDING_TOTAL, MAX_PURPOSES,
};

/// Maps keyed by public keys and tx ids: foldhash, seeded per process (so a
/// client cannot pick keys that collide), several times cheaper than SipHash
/// on 32-byte keys. Iteration order never reaches a hash or a block.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::block::{merkle_root, op_leaf, BlockHeader, Lanes, StateAccumulator};
use crate::codec::{valid_chain_id, Op, SignedOp};
use crate::crypto::{check_account_key, Verified};
use crate::reason::Reason;
use crate::types::{AccountId, AccountKind, AccountStatus, Hash32, Kopecks, Limits, Phase, TxId, MS_PER_DAY};

/// Who froze an account; a bank may not lift a central-bank freeze.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum FreezeAuthority {
    None = 0,
    Bank = 1,
    CentralBank = 2,
}

/// One wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    /// The servicing bank (for a settlement account, the bank itself; for the
    /// central bank's account, the central bank).
    pub bank: AccountId,
    pub status: AccountStatus,
    pub frozen_by: FreezeAuthority,
    pub balance: Kopecks,
    /// UTC day (`timestamp_ms / MS_PER_DAY`) that `outflow_today` counts.
    pub outflow_day: u64,
    pub outflow_today: Kopecks,
    pub opened_height: u64,
}

/// Encoded account record length.
pub const ACCOUNT_BYTES: usize = 1 + 32 + 1 + 1 + 8 + 8 + 8 + 8;

impl Account {
    pub fn encode(&self) -> [u8; ACCOUNT_BYTES] {
        let mut o = [0u8; ACCOUNT_BYTES];
        o[0] = self.kind as u8;
        o[1..33].copy_from_slice(&self.bank.0);
        o[33] = self.status as u8;
        o[34] = self.frozen_by as u8;
        o[35..43].copy_from_slice(&self.balance.to_be_bytes());
        o[43..51].copy_from_slice(&self.outflow_day.to_be_bytes());
        o[51..59].copy_from_slice(&self.outflow_today.to_be_bytes());
        o[59..67].copy_from_slice(&self.opened_height.to_be_bytes());
        o
    }

    pub fn decode(id: AccountId, b: &[u8]) -> Option<Account> {
        if b.len() != ACCOUNT_BYTES {
            return None;
        }
        Some(Account {
            id,
            kind: AccountKind::from_u8(b[0])?,
            bank: AccountId(b[1..33].try_into().ok()?),
            status: AccountStatus::from_u8(b[33])?,
            frozen_by: match b[34] {
                0 => FreezeAuthority::None,
                1 => FreezeAuthority::Bank,
                2 => FreezeAuthority::CentralBank,
                _ => return None,
            },
            balance: u64::from_be_bytes(b[35..43].try_into().ok()?),
            outflow_day: u64::from_be_bytes(b[43..51].try_into().ok()?),
            outflow_today: u64::from_be_bytes(b[51..59].try_into().ok()?),
            opened_height: u64::from_be_bytes(b[59..67].try_into().ok()?),
        })
    }

    /// A new, empty, active account.
    pub fn new_active(id: AccountId, kind: AccountKind, bank: AccountId, opened_height: u64) -> Account {
        Account {
            id,
            kind,
            bank,
            status: AccountStatus::Active,
            frozen_by: FreezeAuthority::None,
            balance: 0,
            outflow_day: 0,
            outflow_today: 0,
            opened_height,
        }
    }

    /// Outflow already spent on `day`.
    pub fn outflow_on(&self, day: u64) -> Kopecks {
        if self.outflow_day == day {
            self.outflow_today
        } else {
            0
        }
    }

    /// On the stack: sealing hashes one per touched account.
    fn state_entry(&self) -> [u8; 4 + 32 + ACCOUNT_BYTES] {
        let mut e = [0u8; 4 + 32 + ACCOUNT_BYTES];
        e[..4].copy_from_slice(b"acct");
        e[4..36].copy_from_slice(&self.id.0);
        e[36..].copy_from_slice(&self.encode());
        e
    }
}

/// An authorised intermediary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bank {
    pub id: AccountId,
    pub name: String,
    pub suspended: bool,
    pub admitted_height: u64,
}

impl Bank {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(10 + self.name.len());
        o.push(self.suspended as u8);
        o.extend_from_slice(&self.admitted_height.to_be_bytes());
        o.push(self.name.len() as u8);
        o.extend_from_slice(self.name.as_bytes());
        o
    }
    pub fn decode(id: AccountId, b: &[u8]) -> Option<Bank> {
        if b.len() < 10 || b.len() != 10 + b[9] as usize || b[0] > 1 {
            return None;
        }
        Some(Bank {
            id,
            suspended: b[0] == 1,
            admitted_height: u64::from_be_bytes(b[1..9].try_into().ok()?),
            name: String::from_utf8(b[10..].to_vec()).ok()?,
        })
    }
}

/// Chain parameters the central bank controls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub chain_id: String,
    pub central_bank: AccountId,
    pub phase: Phase,
    /// Indexed by [`AccountKind::index`].
    pub limits: [Limits; 4],
    /// Payments of at least this many kopecks are flagged large; 0 = off.
    pub reporting_threshold: Kopecks,
    /// How far ahead of the block timestamp `valid_until_ms` may be. Bounds
    /// the replay set: an operation older than this can no longer apply.
    pub max_validity_ms: u64,
}

impl Params {
    pub fn limits(&self, kind: AccountKind) -> Limits {
        self.limits[kind.index()]
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(160);
        o.push(self.chain_id.len() as u8);
        o.extend_from_slice(self.chain_id.as_bytes());
        o.extend_from_slice(&self.central_bank.0);
        o.push(self.phase as u8);
        for l in &self.limits {
            o.extend_from_slice(&l.balance_cap.to_be_bytes());
            o.extend_from_slice(&l.payment_cap.to_be_bytes());
            o.extend_from_slice(&l.daily_outflow_cap.to_be_bytes());
        }
        o.extend_from_slice(&self.reporting_threshold.to_be_bytes());
        o.extend_from_slice(&self.max_validity_ms.to_be_bytes());
        o
    }
}

/// Money created and destroyed since genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub issued: Kopecks,
    pub redeemed: Kopecks,
}

impl Totals {
    /// Money in circulation; equals the sum of all balances (the supply invariant).
    pub fn circulation(&self) -> Kopecks {
        self.issued - self.redeemed
    }
}

/// The genesis configuration: everything block 0 commits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    pub central_bank: AccountId,
    pub timestamp_ms: u64,
    #[serde(default = "default_max_validity_ms")]
    pub max_validity_ms: u64,
    #[serde(default = "default_phase")]
    pub phase: Phase,
    #[serde(default)]
    pub reporting_threshold: Kopecks,
    #[serde(default)]
    pub settlement_limits: Limits,
    #[serde(default)]
    pub business_limits: Limits,
    #[serde(default)]
    pub retail_limits: Limits,
    #[serde(default)]
    pub banks: Vec<GenesisBank>,
}

/// A bank admitted at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisBank {
    pub id: AccountId,
    pub name: String,
}

fn default_max_validity_ms() -> u64 {
    10 * 60 * 1000
}
fn default_phase() -> Phase {
    Phase::Business
}

/// Upper bound on `max_validity_ms` (one day): the replay set must stay bounded.
pub const MAX_VALIDITY_LIMIT_MS: u64 = MS_PER_DAY;

impl Genesis {
    pub fn validate(&self) -> Result<(), String> {
        if !valid_chain_id(&self.chain_id) {
            return Err(format!(
                "chain id {:?} must be 1..=32 bytes of [a-z0-9-]",
                self.chain_id
            ));
        }
        if self.max_validity_ms == 0 || self.max_validity_ms > MAX_VALIDITY_LIMIT_MS {
            return Err("max_validity_ms must be in 1..=86400000".into());
        }
        check_account_key(&self.central_bank.0).map_err(|_| "central bank key is unsafe".to_string())?;
        let mut seen = std::collections::BTreeSet::from([self.central_bank]);
        for b in &self.banks {
            check_account_key(&b.id.0).map_err(|_| format!("bank {} key is unsafe", b.name))?;
            if b.name.len() > crate::codec::MAX_NAME_BYTES {
                return Err(format!("bank name {:?} too long", b.name));
            }
            if !seen.insert(b.id) {
                return Err(format!("duplicate key for bank {}", b.name));
            }
        }
        Ok(())
    }
}

/// What an applied operation did beyond its plain meaning. Stored with the
/// operation (the store's `ops` record) so receipts, statements and the
/// bank's sweep report can show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    #[default]
    None,
    /// The payment is held (anti-fraud rule or signatories) until this
    /// block timestamp; its id is the operation's tx id.
    Held { until_ms: u64 },
    /// The payee's holding limit sent this much of the credit to its bank's
    /// settlement account (the waterfall).
    Swept { amount: Kopecks },
    /// Court-ordered collection moved this much.
    Collected { amount: Kopecks },
    /// A held payment executed; `swept` as in `Swept`.
    Settled { swept: Kopecks },
    /// A signatory's approval was recorded; the payment still waits.
    Approved,
}

impl Effect {
    /// Storage form: empty for `None`, else a tag byte and a u64.
    pub fn encode(&self) -> Option<[u8; 9]> {
        let (tag, v) = match *self {
            Effect::None => return None,
            Effect::Held { until_ms } => (1, until_ms),
            Effect::Swept { amount } => (2, amount),
            Effect::Collected { amount } => (3, amount),
            Effect::Settled { swept } => (4, swept),
            Effect::Approved => (5, 0),
        };
        let mut o = [0u8; 9];
        o[0] = tag;
        o[1..].copy_from_slice(&v.to_be_bytes());
        Some(o)
    }
    /// Inverse of [`Effect::encode`] (empty bytes are `None`).
    pub fn decode(b: &[u8]) -> Option<Effect> {
        if b.is_empty() {
            return Some(Effect::None);
        }
        if b.len() != 9 {
            return None;
        }
        let v = u64::from_be_bytes(b[1..].try_into().ok()?);
        Some(match b[0] {
            1 => Effect::Held { until_ms: v },
            2 => Effect::Swept { amount: v },
            3 => Effect::Collected { amount: v },
            4 => Effect::Settled { swept: v },
            5 if v == 0 => Effect::Approved,
            _ => return None,
        })
    }
    /// Money the waterfall sent to the payee's bank.
    pub fn swept(&self) -> Kopecks {
        match *self {
            Effect::Swept { amount } | Effect::Settled { swept: amount } => amount,
            _ => 0,
        }
    }
}

/// The outcome of applying one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Position in the block.
    pub index: u32,
    /// A transfer at or above the reporting threshold.
    pub large: bool,
    pub effect: Effect,
}

/// An operation as it sits in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedOp {
    pub op: SignedOp,
    pub large: bool,
    pub effect: Effect,
    /// Accounts the operation moved money of without naming them (a held
    /// payment's payer and payee when it settles, the bank a sweep
    /// credited): their statements list it too. Derived, not stored.
    pub also: Vec<AccountId>,
}

/// A finished block with everything the store must write for it.
#[derive(Clone, Debug)]
pub struct SealedBlock {
    pub header: BlockHeader,
    pub hash: Hash32,
    pub ops: Vec<AppliedOp>,
    /// Final values of every account the block touched, sorted by id.
    pub accounts: Vec<Account>,
    /// All banks, when the block changed any (there are few); otherwise empty.
    pub banks: Vec<Bank>,
    pub params: Params,
    pub totals: Totals,
    pub accumulator: StateAccumulator,
    /// Replay-set entries `(valid_until_ms, tx_id)` added by this block.
    pub recent_added: Vec<(u64, TxId)>,
    /// Replay-set entries with `valid_until_ms` below this were dropped.
    pub prune_below: u64,
    /// Control records the block changed (`None` = deleted), by key.
    pub controls: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// An account in memory, with what it contributes to the state accumulator.
#[derive(Clone)]
struct Slot {
    account: Account,
    /// `StateAccumulator::lanes` of the value as of the last sealed block
    /// (`None` for an account created in the open block): sealing subtracts
    /// it without hashing the old value again.
    lanes: Option<Lanes>,
    /// Whether the open block touched it (listed in `OpenBlock::touched`).
    touched: bool,
    /// Whether a control record ever named it since the state was loaded
    /// (a hint, never cleared): transfers between accounts without it skip
    /// the control rules, which could not change their outcome.
    ctl: bool,
}

struct OpenBlock {
    height: u64,
    timestamp_ms: u64,
    ops: Vec<AppliedOp>,
    /// Every account the block changed or created, once each (slot indices).
    touched: Vec<u32>,
    banks_changed: bool,
    recent_added: Vec<(u64, TxId)>,
}

/// The ledger state. See the module docs for the rules.
#[derive(Clone)]
pub struct State {
    params: Params,
    totals: Totals,
    /// Where each account's slot is. Accounts are never removed (a closed
    /// account keeps its slot), so an index stays valid for the state's life.
    index: FastMap<AccountId, u32>,
    /// Every account, in the order it was created (a slab). The open block
    /// lists touched accounts by index, so sealing reaches them without a
    /// second lookup in a map of millions (each one a cache miss).
    slots: Vec<Slot>,
    banks: BTreeMap<AccountId, Bank>,
    /// The replay set: every applied tx id, under the millisecond its
    /// validity ends. A tx id is a hash of the body, which holds
    /// `valid_until_ms`, so a replay looks in one small set; expiry drops
    /// whole entries from the front. Many small sets rather than one map of
    /// millions: a single map doubled (hundreds of MiB at once, and a pause
    /// of the sequencer while it rehashed) as a soak's window filled.
    recent: BTreeMap<u64, FastSet<TxId>>,
    recent_len: usize,
    accumulator: StateAccumulator,
    banks_digest: Hash32,
    height: u64,
    head_hash: Hash32,
    timestamp_ms: u64,
    open: OpenBlockBox,
    /// Holds, purpose-bound money, tiers, keys and the other control records.
    controls: Controls,
    /// `AppliedOp::also` of the operation being applied (pushed only once
    /// its checks passed).
    also: Vec<AccountId>,
    /// Operations in the last sealed block: the next block's vectors start
    /// with room for as many (a capacity hint only; grown by doubling, a
    /// 4,096-op block's ~1 MiB of operations was copied over again).
    last_block_ops: usize,
}

/// Appends `slot` to the slab and indexes it; returns its index. An account
/// is added once (callers check, or load unique stored keys).
fn add_slot(index: &mut FastMap<AccountId, u32>, slots: &mut Vec<Slot>, slot: Slot) -> u32 {
    let at = u32::try_from(slots.len()).expect("at most 2^32 accounts");
    let fresh = index.insert(slot.account.id, at).is_none();
    assert!(fresh, "account {} added twice", slot.account.id);
    slots.push(slot);
    at
}

// Boxed so that cloning a State between blocks stays cheap to write.
#[derive(Default)]
struct OpenBlockBox(Option<Box<OpenBlock>>);
impl Clone for OpenBlockBox {
    fn clone(&self) -> Self {
        assert!(self.0.is_none(), "cannot clone a state with an open block");
        OpenBlockBox(None)
    }
}

/// Most expired replay entries one block's seal drops. After a lull longer
/// than the validity window, every entry of the last burst expires at once:
/// the first block of a soak, after the 14.4 million transfers of its peak
/// run and five minutes of pre-signing, took 431 ms to seal, and its
/// operations waited for it. A block drops at most this many (about 2 ms)
/// and the next blocks the rest; in steady state far fewer expire per block.
/// An expired entry kept a little longer is inert: an operation that matches
/// it has the same validity, so it is refused as expired before the replay
/// check.
pub const RECENT_PRUNE_MAX_PER_BLOCK: usize = 65_536;

fn banks_digest(banks: &BTreeMap<AccountId, Bank>) -> Hash32 {
    let mut h = Sha256::new();
    for b in banks.values() {
        h.update(b.id.0);
        h.update(b.encode());
    }
    h.finalize().into()
}

/// Everything needed to rebuild a [`State`] from storage.
pub struct StateParts {
    pub params: Params,
    pub totals: Totals,
    pub accounts: Vec<Account>,
    pub banks: Vec<Bank>,
    pub recent: Vec<(u64, TxId)>,
    pub height: u64,
    pub head_hash: Hash32,
    pub timestamp_ms: u64,
    /// Built by [`Controls::from_records`] from the stored records.
    pub controls: Controls,
}

impl State {
    /// The state at height 0, and the genesis block header.
    pub fn genesis(g: &Genesis) -> Result<(State, BlockHeader), String> {
        g.validate()?;
        let mut limits = [Limits::UNLIMITED; 4];
        limits[AccountKind::Settlement.index()] = g.settlement_limits;
        limits[AccountKind::Business.index()] = g.business_limits;
        limits[AccountKind::Retail.index()] = g.retail_limits;
        let params = Params {
            chain_id: g.chain_id.clone(),
            central_bank: g.central_bank,
            phase: g.phase,
            limits,
            reporting_threshold: g.reporting_threshold,
            max_validity_ms: g.max_validity_ms,
        };
        let mut accounts = vec![Account::new_active(
            g.central_bank,
            AccountKind::CentralBank,
            g.central_bank,
            0,
        )];
        let mut banks = Vec::new();
        for b in &g.banks {
            accounts.push(Account::new_active(b.id, AccountKind::Settlement, b.id, 0));
            banks.push(Bank {
                id: b.id,
                name: b.name.clone(),
                suspended: false,
                admitted_height: 0,
            });
        }
        let mut state = State::from_parts(StateParts {
            params,
            totals: Totals::default(),
            accounts,
            banks,
            recent: Vec::new(),
            height: 0,
            head_hash: [0; 32],
            timestamp_ms: g.timestamp_ms,
            controls: Controls::default(),
        });
        let header = BlockHeader {
            height: 0,
            prev_hash: [0; 32],
            ops_root: merkle_root(&[]),
            state_hash: state.state_hash(),
            timestamp_ms: g.timestamp_ms,
            op_count: 0,
        };
        state.head_hash = header.hash();
        Ok((state, header))
    }

    /// Rebuilds a state from its stored parts (recomputing the accumulator,
    /// which is how a corrupted record is caught at start-up).
    pub fn from_parts(p: StateParts) -> State {
        let mut accumulator = StateAccumulator::default();
        let mut index = FastMap::with_capacity_and_hasher(p.accounts.len(), Default::default());
        let mut slots = Vec::with_capacity(p.accounts.len());
        for a in p.accounts {
            let lanes = StateAccumulator::lanes(&a.state_entry());
            accumulator.add_lanes(&lanes);
            add_slot(
                &mut index,
                &mut slots,
                Slot {
                    account: a,
                    lanes: Some(lanes),
                    touched: false,
                    ctl: false,
                },
            );
        }
        for id in p.controls.mentioned() {
            if let Some(&at) = index.get(&id) {
                let slot: &mut Slot = &mut slots[at as usize];
                slot.ctl = true;
            }
        }
        let banks: BTreeMap<_, _> = p.banks.into_iter().map(|b| (b.id, b)).collect();
        let mut recent: BTreeMap<u64, FastSet<TxId>> = BTreeMap::new();
        let mut recent_len = 0;
        for (until, tx) in p.recent {
            recent_len += usize::from(recent.entry(until).or_default().insert(tx));
        }
        State {
            banks_digest: banks_digest(&banks),
            params: p.params,
            totals: p.totals,
            index,
            slots,
            banks,
            recent,
            recent_len,
            accumulator,
            height: p.height,
            head_hash: p.head_hash,
            timestamp_ms: p.timestamp_ms,
            open: OpenBlockBox(None),
            last_block_ops: 0,
            controls: p.controls,
            also: Vec::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
    pub fn totals(&self) -> Totals {
        self.totals
    }
    pub fn height(&self) -> u64 {
        self.height
    }
    pub fn head_hash(&self) -> Hash32 {
        self.head_hash
    }
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.acct(id)
    }
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.slots.iter().map(|s| &s.account)
    }
    pub fn account_count(&self) -> usize {
        self.slots.len()
    }
    pub fn bank(&self, id: &AccountId) -> Option<&Bank> {
        self.banks.get(id)
    }
    pub fn banks(&self) -> impl Iterator<Item = &Bank> {
        self.banks.values()
    }
    pub fn recent_len(&self) -> usize {
        self.recent_len
    }
    /// Whether this operation was applied (and is still inside its validity
    /// window). Scans the whole set: for tests and tools; the state itself
    /// looks up by validity end and id.
    pub fn is_recent(&self, tx: &TxId) -> bool {
        self.recent.values().any(|set| set.contains(tx))
    }
    pub fn accumulator(&self) -> StateAccumulator {
        self.accumulator
    }
    /// The control records: holds, purposes, lots, tiers, keys, registry.
    pub fn controls(&self) -> &Controls {
        &self.controls
    }
    /// True while a block is open.
    pub fn block_open(&self) -> bool {
        self.open.0.is_some()
    }
    /// Operations applied to the open block so far.
    pub fn open_block_len(&self) -> usize {
        self.open.0.as_ref().map_or(0, |o| o.ops.len())
    }

    /// Commitment to the whole state at the current height.
    pub fn state_hash(&self) -> Hash32 {
        let mut h = Sha256::new();
        h.update(b"ruble-ledger/state/v1\0");
        h.update(self.params.encode());
        h.update(self.totals.issued.to_be_bytes());
        h.update(self.totals.redeemed.to_be_bytes());
        h.update(self.banks_digest);
        h.update(self.accumulator.to_bytes());
        // A ledger without control records hashes as it did before they
        // existed, so its stored chain still verifies.
        if !self.controls.is_empty() {
            h.update(b"controls");
            h.update(self.controls.accumulator().to_bytes());
        }
        h.finalize().into()
    }

    /// Opens block `height + 1`. The timestamp must not go backwards; the node
    /// passes `max(now, last timestamp)`.
    pub fn begin_block(&mut self, timestamp_ms: u64) {
        assert!(self.open.0.is_none(), "a block is already open");
        assert!(timestamp_ms >= self.timestamp_ms, "block timestamps never go backwards");
        self.open = OpenBlockBox(Some(Box::new(OpenBlock {
            height: self.height + 1,
            timestamp_ms,
            ops: Vec::with_capacity(self.last_block_ops),
            touched: Vec::with_capacity(2 * self.last_block_ops),
            banks_changed: false,
            recent_added: Vec::with_capacity(self.last_block_ops),
        })));
        // The replay set is pruned when the block is sealed, not here: an
        // aborted block must leave no trace (see `abort_empty_block`).
    }

    /// Discards an open block to which no operation applied. Exactly
    /// equivalent to never having opened it: `begin_block` changes nothing
    /// but the open block, so the next block may have an earlier timestamp
    /// than the aborted one (the node's clock can step back) and every
    /// operation applied before is still refused as a duplicate.
    pub fn abort_empty_block(&mut self) {
        let open = self.open.0.take().expect("no open block");
        assert!(open.ops.is_empty() && open.touched.is_empty() && !open.banks_changed);
        assert!(self.controls.changes.is_empty());
    }

    fn open_block(&mut self) -> &mut OpenBlock {
        self.open.0.as_deref_mut().expect("no open block")
    }

    /// Lists an existing account as touched by the open block (once). Called
    /// only once every check has passed: apply is all or nothing.
    fn remember(&mut self, id: AccountId) {
        let at = self.slot_of(&id).expect("remember an existing account");
        self.remember_at(at);
    }

    /// [`State::remember`] by slot index.
    fn remember_at(&mut self, at: u32) {
        let slot = &mut self.slots[at as usize];
        if !slot.touched {
            slot.touched = true;
            self.open_block().touched.push(at);
        }
    }

    /// Inserts an account created by the open block (listed as touched).
    fn create(&mut self, account: Account) {
        let at = add_slot(
            &mut self.index,
            &mut self.slots,
            Slot {
                account,
                lanes: None,
                touched: true,
                ctl: false,
            },
        );
        self.open_block().touched.push(at);
    }

    fn slot_of(&self, id: &AccountId) -> Option<u32> {
        self.index.get(id).copied()
    }

    fn exists(&self, id: &AccountId) -> bool {
        self.index.contains_key(id)
    }

    fn acct(&self, id: &AccountId) -> Option<&Account> {
        self.slot_of(id).map(|at| &self.slots[at as usize].account)
    }

    fn acct_mut(&mut self, id: &AccountId) -> &mut Account {
        let at = self.slot_of(id).expect("checked above");
        &mut self.slots[at as usize].account
    }

    fn is_central_bank(&self, id: &AccountId) -> bool {
        *id == self.params.central_bank
    }

    fn require_central_bank(&self, signer: &AccountId) -> Result<(), Reason> {
        if self.is_central_bank(signer) {
            Ok(())
        } else {
            Err(Reason::NotAuthorised)
        }
    }

    /// The signer as an active bank.
    fn require_active_bank(&self, signer: &AccountId) -> Result<(), Reason> {
        match self.banks.get(signer) {
            None => Err(Reason::NotAuthorised),
            Some(b) if b.suspended => Err(Reason::BankSuspended),
            Some(_) => Ok(()),
        }
    }

    /// Applies one verified operation to the open block. On `Err` nothing changed.
    pub fn apply(&mut self, op: Verified<SignedOp>) -> Result<Applied, Reason> {
        let (ts, index) = {
            let o = self.open_block();
            (o.timestamp_ms, o.ops.len() as u32)
        };
        let body = &op.body;
        if body.chain_id != self.params.chain_id {
            return Err(Reason::WrongChain);
        }
        if body.valid_until_ms < ts {
            return Err(Reason::Expired);
        }
        if body.valid_until_ms - ts > self.params.max_validity_ms {
            return Err(Reason::ValidityTooLong);
        }
        if self
            .recent
            .get(&body.valid_until_ms)
            .is_some_and(|set| set.contains(&op.tx_id))
        {
            return Err(Reason::Duplicate);
        }
        let signer = body.signer;
        let tx_id = op.tx_id;
        let mut effect = Effect::None;
        let large = match &body.op {
            &Op::Transfer { payee, amount, .. } => {
                let (large, e) = self.transfer(ts, tx_id, signer, payee, amount)?;
                effect = e;
                large
            }
            &Op::Issue { bank, amount } => self.issue(signer, bank, amount)?,
            &Op::Redeem { bank, amount } => self.redeem(signer, bank, amount)?,
            &Op::OpenAccount { account, kind } => self.open_account(signer, account, kind)?,
            &Op::CloseAccount { account } => self.close_account(signer, account)?,
            &Op::Freeze { account } => self.set_frozen(signer, account, true)?,
            &Op::Unfreeze { account } => self.set_frozen(signer, account, false)?,
            Op::AdmitBank { bank, name } => self.admit_bank(signer, *bank, name.clone())?,
            &Op::SuspendBank { bank } => self.suspend_bank(signer, bank)?,
            &Op::SetPhase { phase } => {
                self.require_central_bank(&signer)?;
                if phase <= self.params.phase {
                    return Err(Reason::PhaseNotForward);
                }
                self.params.phase = phase;
                false
            }
            &Op::SetLimits { kind, limits } => {
                self.require_central_bank(&signer)?;
                if kind == AccountKind::CentralBank {
                    return Err(Reason::InvalidKind);
                }
                self.params.limits[kind.index()] = limits;
                false
            }
            &Op::SetReportingThreshold { amount } => {
                self.require_central_bank(&signer)?;
                self.params.reporting_threshold = amount;
                false
            }
            other => {
                effect = self.apply_control(ts, signer, other)?;
                false
            }
        };
        // Signed by a rotated-in key: the account's statement lists it.
        if let Ok(account) = self.controls.resolve(&signer) {
            if account != signer {
                self.also.push(account);
            }
        }
        // Past this point the operation has applied: record it.
        let until = body.valid_until_ms;
        let tx = op.tx_id;
        let fresh = self.recent.entry(until).or_default().insert(tx);
        debug_assert!(fresh, "checked as not recent above");
        self.recent_len += 1;
        let o = self.open_block();
        o.recent_added.push((until, tx));
        let also = std::mem::take(&mut self.also);
        let o = self.open_block();
        o.ops.push(AppliedOp {
            op: op.into_inner(),
            large,
            effect,
            also,
        });
        Ok(Applied { index, large, effect })
    }

    /// May `a` pay? A receive-only freeze stops payments only.
    fn payable(a: &Account) -> Result<(), Reason> {
        match a.status {
            AccountStatus::ReceiveOnly => Err(Reason::AccountReceiveOnly),
            _ => Self::usable(a),
        }
    }

    /// May `a` receive? Active or receive-only.
    fn usable(a: &Account) -> Result<(), Reason> {
        match a.status {
            AccountStatus::Active | AccountStatus::ReceiveOnly => Ok(()),
            AccountStatus::Frozen => Err(Reason::AccountFrozen),
            AccountStatus::Closed => Err(Reason::AccountClosed),
        }
    }

    /// A transfer signed by `signer` (the payer's key). Returns the large
    /// flag and the effect (held, swept).
    fn transfer(
        &mut self,
        ts: u64,
        tx_id: TxId,
        signer: AccountId,
        payee_id: AccountId,
        amount: Kopecks,
    ) -> Result<(bool, Effect), Reason> {
        if amount == 0 {
            return Err(Reason::ZeroAmount);
        }
        let payer_id = self.controls.resolve(&signer).map_err(|_| Reason::KeyRevoked)?;
        if payer_id == payee_id {
            return Err(Reason::SelfTransfer);
        }
        // One map lookup per side; everything after goes by slot index.
        let pi = self.slot_of(&payer_id).ok_or(Reason::UnknownAccount)?;
        let qi = self.slot_of(&payee_id).ok_or(Reason::UnknownAccount)?;
        let t = self.params.reporting_threshold;
        let large = t > 0 && amount >= t;
        // Accounts that no control record names, and a payment below the
        // hold threshold: the control rules cannot change the outcome.
        let hold = self.controls.params.hold_threshold;
        if self.slots[pi as usize].ctl || self.slots[qi as usize].ctl || (hold > 0 && amount >= hold) {
            let effect = self.transfer_controlled(ts, tx_id, signer, pi, qi, amount)?;
            return Ok((large, effect));
        }
        let payer = &self.slots[pi as usize].account;
        let payee = &self.slots[qi as usize].account;
        Self::payable(payer)?;
        Self::usable(payee)?;
        if payer.kind == AccountKind::CentralBank || payee.kind == AccountKind::CentralBank {
            return Err(Reason::NotAuthorised);
        }
        if payer.kind == AccountKind::Settlement {
            self.require_active_bank(&payer_id)?;
        }
        if (payer.kind == AccountKind::Retail || payee.kind == AccountKind::Retail) && self.params.phase < Phase::Retail
        {
            return Err(Reason::PhaseNotOpen);
        }
        let payer_limits = self.params.limits(payer.kind);
        if amount > payer_limits.payment_cap {
            return Err(Reason::PaymentLimitExceeded);
        }
        let day = ts / MS_PER_DAY;
        // Saturating: the counter only feeds a `>` comparison with a cap.
        let outflow = payer.outflow_on(day).saturating_add(amount);
        if outflow > payer_limits.daily_outflow_cap {
            return Err(Reason::DailyLimitExceeded);
        }
        let payer_balance = payer.balance.checked_sub(amount).ok_or(Reason::InsufficientFunds)?;
        let payee_balance = payee.balance.checked_add(amount).ok_or(Reason::Overflow)?;
        if payee_balance > self.params.limits(payee.kind).balance_cap {
            return Err(Reason::BalanceLimitExceeded);
        }
        self.remember_at(pi);
        self.remember_at(qi);
        let payer = &mut self.slots[pi as usize].account;
        payer.balance = payer_balance;
        payer.outflow_day = day;
        payer.outflow_today = outflow;
        self.slots[qi as usize].account.balance = payee_balance;
        Ok((large, Effect::None))
    }

    fn issue(&mut self, signer: AccountId, bank: AccountId, amount: Kopecks) -> Result<bool, Reason> {
        self.require_central_bank(&signer)?;
        if amount == 0 {
            return Err(Reason::ZeroAmount);
        }
        let b = self.banks.get(&bank).ok_or(Reason::UnknownBank)?;
        if b.suspended {
            return Err(Reason::BankSuspended);
        }
        let acct = self.acct(&bank).ok_or(Reason::UnknownAccount)?;
        Self::usable(acct)?;
        let issued = self.totals.issued.checked_add(amount).ok_or(Reason::Overflow)?;
        let balance = acct.balance.checked_add(amount).ok_or(Reason::Overflow)?;
        if balance > self.params.limits(AccountKind::Settlement).balance_cap {
            return Err(Reason::BalanceLimitExceeded);
        }
        self.remember(bank);
        self.acct_mut(&bank).balance = balance;
        self.totals.issued = issued;
        Ok(false)
    }

    fn redeem(&mut self, signer: AccountId, bank: AccountId, amount: Kopecks) -> Result<bool, Reason> {
        self.require_central_bank(&signer)?;
        if amount == 0 {
            return Err(Reason::ZeroAmount);
        }
        self.banks.get(&bank).ok_or(Reason::UnknownBank)?;
        let acct = self.acct(&bank).ok_or(Reason::UnknownAccount)?;
        let balance = acct.balance.checked_sub(amount).ok_or(Reason::InsufficientFunds)?;
        let redeemed = self.totals.redeemed.checked_add(amount).ok_or(Reason::Overflow)?;
        self.remember(bank);
        self.acct_mut(&bank).balance = balance;
        self.totals.redeemed = redeemed;
        Ok(false)
    }

    fn open_account(&mut self, signer: AccountId, account: AccountId, kind: AccountKind) -> Result<bool, Reason> {
        self.require_active_bank(&signer)?;
        match kind {
            AccountKind::Business => {}
            AccountKind::Retail if self.params.phase >= Phase::Retail => {}
            AccountKind::Retail => return Err(Reason::PhaseNotOpen),
            AccountKind::CentralBank | AccountKind::Settlement => return Err(Reason::InvalidKind),
        }
        if self.exists(&account) {
            return Err(Reason::AccountExists);
        }
        // A key that controls (or controlled) another account cannot name a new one.
        if self.controls.resolve(&account) != Ok(account) {
            return Err(Reason::KeyInUse);
        }
        check_account_key(&account.0)?;
        let height = self.open_block().height;
        self.create(Account::new_active(account, kind, signer, height));
        Ok(false)
    }

    fn close_account(&mut self, signer: AccountId, account: AccountId) -> Result<bool, Reason> {
        self.require_active_bank(&signer)?;
        let a = self.acct(&account).ok_or(Reason::UnknownAccount)?;
        if a.bank != signer || !matches!(a.kind, AccountKind::Business | AccountKind::Retail) {
            return Err(Reason::NotAuthorised);
        }
        if a.status == AccountStatus::Closed {
            return Err(Reason::AccountClosed);
        }
        if a.balance != 0 {
            return Err(Reason::BalanceNotZero);
        }
        self.remember(account);
        let a = self.acct_mut(&account);
        a.status = AccountStatus::Closed;
        a.frozen_by = FreezeAuthority::None;
        Ok(false)
    }

    fn set_frozen(&mut self, signer: AccountId, account: AccountId, freeze: bool) -> Result<bool, Reason> {
        let by_cb = self.is_central_bank(&signer);
        if !by_cb {
            self.require_active_bank(&signer)?;
        }
        let a = self.acct(&account).ok_or(Reason::UnknownAccount)?;
        let allowed = if by_cb {
            a.kind != AccountKind::CentralBank
        } else {
            a.bank == signer && matches!(a.kind, AccountKind::Business | AccountKind::Retail)
        };
        if !allowed {
            return Err(Reason::NotAuthorised);
        }
        match (a.status, freeze) {
            (AccountStatus::Closed, _) => return Err(Reason::AccountClosed),
            (AccountStatus::Frozen, true) => return Err(Reason::AccountFrozen),
            (AccountStatus::Active, false) => return Err(Reason::AccountNotFrozen),
            // A bank may not lift the regulator's freeze (full or receive-only).
            (AccountStatus::Frozen | AccountStatus::ReceiveOnly, false)
                if !by_cb && a.frozen_by == FreezeAuthority::CentralBank =>
            {
                return Err(Reason::NotAuthorised)
            }
            _ => {}
        }
        self.remember(account);
        let a = self.acct_mut(&account);
        if freeze {
            // A receive-only freeze escalated to a full one keeps the
            // stronger authority: a bank cannot take over the regulator's.
            let by = if by_cb {
                FreezeAuthority::CentralBank
            } else {
                FreezeAuthority::Bank
            };
            a.status = AccountStatus::Frozen;
            a.frozen_by = if a.frozen_by == FreezeAuthority::CentralBank {
                FreezeAuthority::CentralBank
            } else {
                by
            };
        } else {
            a.status = AccountStatus::Active;
            a.frozen_by = FreezeAuthority::None;
        }
        Ok(false)
    }

    fn admit_bank(&mut self, signer: AccountId, bank: AccountId, name: String) -> Result<bool, Reason> {
        self.require_central_bank(&signer)?;
        if let Some(b) = self.banks.get(&bank) {
            if !b.suspended {
                return Err(Reason::BankAlreadyAdmitted);
            }
            self.banks.get_mut(&bank).expect("checked").suspended = false;
            self.open_block().banks_changed = true;
            return Ok(false);
        }
        if self.exists(&bank) {
            return Err(Reason::AccountExists);
        }
        if self.controls.resolve(&bank) != Ok(bank) {
            return Err(Reason::KeyInUse);
        }
        check_account_key(&bank.0)?;
        let height = self.open_block().height;
        self.create(Account::new_active(bank, AccountKind::Settlement, bank, height));
        self.banks.insert(
            bank,
            Bank {
                id: bank,
                name,
                suspended: false,
                admitted_height: height,
            },
        );
        self.open_block().banks_changed = true;
        Ok(false)
    }

    fn suspend_bank(&mut self, signer: AccountId, bank: AccountId) -> Result<bool, Reason> {
        self.require_central_bank(&signer)?;
        let b = self.banks.get_mut(&bank).ok_or(Reason::UnknownBank)?;
        if b.suspended {
            return Err(Reason::BankAlreadySuspended);
        }
        b.suspended = true;
        self.open_block().banks_changed = true;
        Ok(false)
    }

    /// Closes the open block: updates the state commitment for the touched
    /// accounts only and returns the block with everything to store.
    pub fn seal_block(&mut self) -> SealedBlock {
        // Held payments past their deadline are voided and expired purposes
        // return their funds, as of this block's timestamp (bounded per block).
        self.run_expiries();
        let mut open = *self.open.0.take().expect("no open block");
        self.last_block_ops = open.ops.len();
        // The block lists its accounts sorted by id.
        let mut touched: Vec<(AccountId, u32)> = std::mem::take(&mut open.touched)
            .into_iter()
            .map(|at| (self.slots[at as usize].account.id, at))
            .collect();
        touched.sort_unstable();
        // (Hashing the lanes on rayon's threads was tried: no gain could be
        // seen in `apply_commit` at 1M accounts, whose other core is the
        // committer's, and on the node it would take cycles from verification.)
        let mut accounts = Vec::with_capacity(touched.len());
        for &(_, at) in &touched {
            let slot = &mut self.slots[at as usize];
            debug_assert!(slot.touched);
            slot.touched = false;
            if let Some(old) = &slot.lanes {
                self.accumulator.remove_lanes(old);
            }
            let new = StateAccumulator::lanes(&slot.account.state_entry());
            self.accumulator.add_lanes(&new);
            slot.lanes = Some(new);
            accounts.push(slot.account.clone());
        }
        let banks = if open.banks_changed {
            self.banks_digest = banks_digest(&self.banks);
            self.banks.values().cloned().collect()
        } else {
            Vec::new()
        };
        let leaves: Vec<Hash32> = open.ops.iter().map(|a| op_leaf(&a.op.tx_id, &a.op.signature)).collect();
        let header = BlockHeader {
            height: open.height,
            prev_hash: self.head_hash,
            ops_root: merkle_root(&leaves),
            state_hash: self.state_hash(),
            timestamp_ms: open.timestamp_ms,
            op_count: open.ops.len() as u32,
        };
        let hash = header.hash();
        self.height = open.height;
        self.head_hash = hash;
        self.timestamp_ms = open.timestamp_ms;
        // Replay entries whose validity ended before this block can never
        // match again: from now on every block is at least this late and an
        // expired operation is refused before the replay check. Dropped here,
        // with the block that makes them stale (the store drops its copies,
        // everything below `prune_below`, lazily). Not in `begin_block`:
        // a block that is then aborted would have forgotten them while the
        // next block may be earlier, letting an applied operation apply twice.
        // At most `RECENT_PRUNE_MAX_PER_BLOCK` of them, whole validity
        // instants at a time (so the cut is a function of the state alone).
        let mut dropped = 0;
        while dropped < RECENT_PRUNE_MAX_PER_BLOCK {
            let Some(entry) = self.recent.first_entry() else {
                break;
            };
            if *entry.key() >= open.timestamp_ms {
                break;
            }
            let n = entry.remove().len();
            self.recent_len -= n;
            dropped += n;
        }
        SealedBlock {
            header,
            hash,
            ops: open.ops,
            accounts,
            banks,
            params: self.params.clone(),
            totals: self.totals,
            accumulator: self.accumulator,
            recent_added: open.recent_added,
            prune_below: open.timestamp_ms,
            controls: self.controls.take_changes(),
        }
    }

    /// Checks the invariants that must hold between blocks. O(accounts): for
    /// tests, the auditor and start-up, not for every block.
    pub fn check_invariants(&self) -> Result<(), String> {
        let sum = self.sum_balances();
        if self.totals.redeemed > self.totals.issued {
            return Err("redeemed exceeds issued".into());
        }
        let circulation = (self.totals.issued - self.totals.redeemed) as u128;
        if sum != circulation {
            return Err(format!("sum of balances {sum} != issued - redeemed {circulation}"));
        }
        let cb = self
            .acct(&self.params.central_bank)
            .ok_or("central bank account missing")?;
        if cb.balance != 0 {
            return Err("the central bank account holds money".into());
        }
        for b in self.banks.values() {
            match self.acct(&b.id) {
                Some(a) if a.kind == AccountKind::Settlement => {}
                _ => return Err(format!("bank {} has no settlement account", b.id)),
            }
        }
        for a in self.accounts() {
            if matches!(a.kind, AccountKind::Business | AccountKind::Retail) && !self.banks.contains_key(&a.bank) {
                return Err(format!("account {} is served by unknown bank", a.id));
            }
            let frozen = matches!(a.status, AccountStatus::Frozen | AccountStatus::ReceiveOnly);
            if frozen != (a.frozen_by != FreezeAuthority::None) {
                return Err(format!("account {} freeze authority inconsistent", a.id));
            }
        }
        self.controls.check()?;
        self.check_control_invariants()?;
        if self.recent.values().map(FastSet::len).sum::<usize>() != self.recent_len {
            return Err("replay set count disagrees with its contents".into());
        }
        let mut acc = StateAccumulator::default();
        if self.index.len() != self.slots.len() {
            return Err("account index and slots disagree in size".into());
        }
        for (at, slot) in self.slots.iter().enumerate() {
            if self.slot_of(&slot.account.id) != Some(at as u32) {
                return Err(format!("account {} is not indexed at its slot", slot.account.id));
            }
            if slot.touched {
                return Err(format!("account {} still marked as touched", slot.account.id));
            }
            let lanes = StateAccumulator::lanes(&slot.account.state_entry());
            if slot.lanes != Some(lanes) {
                return Err(format!(
                    "account {}: cached accumulator lanes are stale",
                    slot.account.id
                ));
            }
            acc.add_lanes(&lanes);
        }
        if acc != self.accumulator {
            return Err("state accumulator does not match the accounts".into());
        }
        Ok(())
    }

    /// Sum of all balances (u128, so it cannot overflow).
    pub fn sum_balances(&self) -> u128 {
        self.accounts().map(|a| a.balance as u128).sum()
    }
}
