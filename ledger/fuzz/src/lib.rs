//! Fuzz harness for the ledger: the logic behind the two `cargo fuzz` targets.
//!
//! - [`decode_op`] feeds raw bytes to every decoder of untrusted input (the
//!   operation body, the signed operation, its storage form, block headers,
//!   account and bank records, signed queries). Whatever decodes must
//!   re-encode to exactly the input (the encoding is canonical), signatures
//!   go through the real verifier and single and batch verification must
//!   agree, and a verified operation is applied to a small ledger.
//! - [`apply_ops`] reads the bytes as a program of operations of every kind
//!   (valid, unauthorised, expired, replayed, badly signed...) and block
//!   boundaries, runs it against [`State`] and checks after every operation
//!   and every block: a refused operation changes nothing, accepted money
//!   movements agree with a model, Σ balances = issued − redeemed,
//!   `check_invariants`, no operation applies twice, and replaying a sealed
//!   block on the state before it gives the same block hash.
//!
//! This file uses only crates the ledger itself depends on and parses the
//! bytes itself (no `arbitrary`), so `ledger/tests/fuzz_regressions.rs`
//! includes it with `#[path]` and replays the corpora on stable.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::SigningKey;
use ruble_domain::block::BlockHeader;
use ruble_domain::codec::{
    signing_message, tx_id, Op, OpBody, SignedOp, MAX_BODY_BYTES, MAX_NAME_BYTES, MAX_PURPOSE_BYTES, SIGNATURE_BYTES,
};
use ruble_domain::crypto::{verify_op, verify_ops, verify_single, KeyCache, Verified};
use ruble_domain::query::{history_params, method, Query, QueryGuard};
use ruble_domain::reason::Reason;
use ruble_domain::state::{Account, Bank, Effect, Genesis, GenesisBank, State};
use ruble_domain::types::{AccountId, AccountKind, Kopecks, Limits, Phase, Tier, TxId, MS_PER_DAY};
use sha2::{Digest, Sha256};

/// Chain id of the fuzz world.
pub const CHAIN: &str = "ruble-fuzz";
/// Genesis timestamp.
pub const T0: u64 = 1_800_000_000_000;
/// How far ahead an operation may be valid (the chain parameter).
pub const MAX_VALIDITY_MS: u64 = 600_000;
/// Longest program [`apply_ops`] runs, in instructions.
pub const MAX_INSTRUCTIONS: usize = 256;
/// How many submitted operations a program can replay.
const HISTORY: usize = 32;

// ---------------------------------------------------------------------------
// The world: a fixed pool of parties, a genesis and a set-up block.

/// Parties, by index into [`World::ids`].
pub mod party {
    pub const CB: usize = 0;
    pub const BANK0: usize = 1;
    pub const BANK1: usize = 2;
    /// Not admitted at genesis; `AdmitBank` can admit them.
    pub const NEW_BANK0: usize = 3;
    pub const NEW_BANK1: usize = 4;
    /// Business clients opened by the set-up block: 5, 6 at bank 0; 7, 8 at bank 1.
    pub const CLIENT0: usize = 5;
    /// Keys with no account yet: `OpenAccount` can open them.
    pub const UNOPENED0: usize = 9;
    pub const UNOPENED1: usize = 10;
    /// A valid key that is never given an account by the set-up.
    pub const STRANGER: usize = 11;
    /// Unsafe keys (no signing key): identity (small order), a non-canonical
    /// encoding, and an honest key plus an 8-torsion point (mixed order).
    pub const SMALL_ORDER: usize = 12;
    pub const NON_CANONICAL: usize = 13;
    pub const MIXED_ORDER: usize = 14;
    pub const COUNT: usize = 15;
}

/// Deterministic test key, as in `ledger/tests/common`.
pub fn key(seed: u64) -> SigningKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&seed.to_le_bytes());
    b[31] = 0x5a;
    SigningKey::from_bytes(&b)
}

pub fn id(k: &SigningKey) -> AccountId {
    AccountId(k.verifying_key().to_bytes())
}

pub struct World {
    /// Signing key of each party, where it has one.
    pub keys: Vec<Option<SigningKey>>,
    pub ids: Vec<AccountId>,
    /// Signs for the parties that have no key (so their signatures fail).
    pub wrong_key: SigningKey,
    pub genesis: Genesis,
    /// The state after the set-up block (clients opened and funded).
    pub base: State,
    pub cache: KeyCache,
}

impl World {
    fn new() -> World {
        let mut keys: Vec<Option<SigningKey>> =
            vec![Some(key(1)), Some(key(2)), Some(key(3)), Some(key(4)), Some(key(5))];
        for i in 0..6 {
            keys.push(Some(key(100 + i)));
        }
        keys.push(Some(key(999)));
        let mut ids: Vec<AccountId> = keys.iter().map(|k| id(k.as_ref().unwrap())).collect();
        let mut small = [0u8; 32];
        small[0] = 1; // the identity: small order
        ids.push(AccountId(small));
        // y = p + 1: a non-canonical encoding of the identity.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        ids.push(AccountId(non_canonical));
        let order8 = hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a");
        let t = CompressedEdwardsY(order8).decompress().expect("an 8-torsion point");
        let a = CompressedEdwardsY(id(&key(997)).0).decompress().expect("an honest key");
        ids.push(AccountId((a + t).compress().to_bytes()));
        keys.extend([None, None, None]);
        assert_eq!(ids.len(), party::COUNT);

        let genesis = Genesis {
            chain_id: CHAIN.into(),
            central_bank: ids[party::CB],
            timestamp_ms: T0,
            max_validity_ms: MAX_VALIDITY_MS,
            phase: Phase::Business,
            reporting_threshold: 0,
            settlement_limits: Limits::UNLIMITED,
            business_limits: Limits::UNLIMITED,
            retail_limits: Limits::UNLIMITED,
            banks: vec![
                GenesisBank {
                    id: ids[party::BANK0],
                    name: "Bank 0".into(),
                },
                GenesisBank {
                    id: ids[party::BANK1],
                    name: "Bank 1".into(),
                },
            ],
        };
        let (mut base, _) = State::genesis(&genesis).expect("fuzz genesis is valid");
        let cache = KeyCache::new(4096);
        let mut w = World {
            keys,
            ids,
            wrong_key: key(998),
            genesis,
            base: base.clone(),
            cache,
        };
        // Set-up block: open four business clients, issue to both banks, fund the clients.
        let mut setup = Vec::new();
        for c in 0..4 {
            let bank = if c < 2 { party::BANK0 } else { party::BANK1 };
            setup.push((
                bank,
                Op::OpenAccount {
                    account: w.ids[party::CLIENT0 + c],
                    kind: AccountKind::Business,
                },
            ));
        }
        for bank in [party::BANK0, party::BANK1] {
            setup.push((
                party::CB,
                Op::Issue {
                    bank: w.ids[bank],
                    amount: 10_000_000_00,
                },
            ));
        }
        for c in 0..4 {
            let bank = if c < 2 { party::BANK0 } else { party::BANK1 };
            setup.push((
                bank,
                Op::Transfer {
                    payee: w.ids[party::CLIENT0 + c],
                    amount: 1_000_000_00,
                    purpose: "setup".into(),
                },
            ));
        }
        base.begin_block(T0);
        for (n, (signer, op)) in setup.into_iter().enumerate() {
            let signed = w.sign(signer, op, u64::MAX - n as u64, T0 + MAX_VALIDITY_MS, CHAIN);
            let v = verify_op(signed, &w.cache).expect("set-up is signed correctly");
            base.apply(v).expect("set-up applies");
        }
        base.seal_block();
        base.check_invariants().expect("set-up keeps the invariants");
        w.base = base;
        w
    }

    /// Signs with the party's key, or with [`World::wrong_key`] if it has none.
    pub fn sign(&self, signer: usize, op: Op, nonce: u64, valid_until_ms: u64, chain: &str) -> SignedOp {
        let body = OpBody {
            chain_id: chain.into(),
            signer: self.ids[signer],
            nonce,
            valid_until_ms,
            op,
        };
        SignedOp::sign(body, self.keys[signer].as_ref().unwrap_or(&self.wrong_key))
    }
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// The shared world (built once per process).
pub fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(World::new)
}

/// Everything observable about a state through its public API, so that
/// "nothing changed" can be checked exactly (and a difference is readable).
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprint {
    state_hash: [u8; 32],
    params: Vec<u8>,
    issued: u64,
    redeemed: u64,
    /// SHA-256 over the sorted account records, and over the banks.
    accounts: [u8; 32],
    banks: [u8; 32],
    recent_len: usize,
    open_block_len: usize,
    height: u64,
    head_hash: [u8; 32],
    timestamp_ms: u64,
    accumulator: [u64; 8],
}

pub fn fingerprint(s: &State) -> Fingerprint {
    let mut accounts: Vec<&Account> = s.accounts().collect();
    accounts.sort_by_key(|a| a.id);
    let mut h = Sha256::new();
    for a in accounts {
        h.update(a.id.0);
        h.update(a.encode());
    }
    let mut b = Sha256::new();
    for bank in s.banks() {
        b.update(bank.id.0);
        b.update(bank.encode());
    }
    Fingerprint {
        state_hash: s.state_hash(),
        params: s.params().encode(),
        issued: s.totals().issued,
        redeemed: s.totals().redeemed,
        accounts: h.finalize().into(),
        banks: b.finalize().into(),
        recent_len: s.recent_len(),
        open_block_len: s.open_block_len(),
        height: s.height(),
        head_hash: s.head_hash(),
        timestamp_ms: s.timestamp_ms(),
        accumulator: s.accumulator().0,
    }
}

// ---------------------------------------------------------------------------
// Target 1: decoding and validating.

/// Feeds `data` to every decoder of untrusted bytes. Panics on a finding.
pub fn decode_op(data: &[u8]) {
    // The operation body alone: canonical, or refused.
    if let Ok(body) = OpBody::decode(data) {
        assert!(data.len() <= MAX_BODY_BYTES);
        let again = body.try_encode().expect("a decoded body re-encodes");
        assert_eq!(again, data, "a non-canonical body was accepted: {body:?}");
    }

    // A signed operation: body ‖ signature (the last 64 bytes).
    if data.len() >= SIGNATURE_BYTES {
        let (body, sig) = data.split_at(data.len() - SIGNATURE_BYTES);
        if let Ok(op) = SignedOp::decode(body, sig) {
            assert_eq!(op.body_bytes, body);
            assert_eq!(&op.signature[..], sig);
            assert_eq!(op.tx_id, tx_id(body));
            assert_eq!(op.body.encode(), body, "signed op with a non-canonical body");
            check_signed(op);
        }
    }
    // A signature of the wrong length is refused before anything else.
    let short = &data[..data.len().min(SIGNATURE_BYTES - 1)];
    assert_eq!(SignedOp::decode(data, short), Err(Reason::BadSignature));

    // The storage form: u16 length ‖ body ‖ signature, then whatever follows.
    if let Ok((op, rest)) = SignedOp::from_stored(data) {
        let mut again = op.to_stored();
        again.extend_from_slice(rest);
        assert_eq!(again, data, "non-canonical stored operation");
        check_signed(op);
    }

    // Block headers and the state records.
    if let Some(h) = BlockHeader::decode(data) {
        assert_eq!(&h.encode()[..], data, "non-canonical header");
    }
    let who = AccountId([7; 32]);
    if let Some(a) = Account::decode(who, data) {
        assert_eq!(&a.encode()[..], data, "non-canonical account record");
    }
    if let Some(b) = Bank::decode(who, data) {
        assert_eq!(b.encode(), data, "non-canonical bank record");
    }

    // A signed read query: 'q' ‖ account ‖ issued_at ‖ nonce ‖ cursor ‖ limit ‖ signature.
    if data.len() == 1 + 32 + 8 + 8 + 8 + 4 + 64 && data[0] == b'q' {
        let mut r = Bytes::new(&data[1..]);
        let q = Query {
            chain_id: CHAIN.into(),
            method: method::GET_HISTORY.into(),
            account: AccountId(r.array()),
            issued_at_ms: r.u64(),
            nonce: r.u64(),
            params: history_params(r.u64(), r.u32()),
        };
        let sig = &data[data.len() - 64..];
        let single = verify_single(&q.account.0, &q.message(), sig.try_into().unwrap());
        assert_eq!(q.verify(sig), single);
        let mut guard = QueryGuard::new(30_000, 1);
        let first = guard.check(q.issued_at_ms, &q, sig);
        assert_eq!(first.is_ok(), single);
        if single {
            assert!(
                guard.check(q.issued_at_ms, &q, sig).is_err(),
                "a query was accepted twice"
            );
        }
    }
}

/// Signature rule on a decoded operation: the verifier (batch path, cached
/// keys) agrees with the single ZIP-215 check, also inside a batch with a
/// tampered copy; a verified operation is then applied to the fuzz world.
fn check_signed(op: SignedOp) {
    let w = world();
    let msg = signing_message(&op.body_bytes);
    let single = verify_single(&op.body.signer.0, &msg, &op.signature);
    let mut tampered = op.clone();
    tampered.signature[0] ^= 0x01;
    let tampered_single = verify_single(&tampered.body.signer.0, &msg, &tampered.signature);
    let batch = verify_ops(vec![op.clone(), tampered, op.clone()], &w.cache);
    assert_eq!(batch[0].is_ok(), single, "batch and single disagree");
    assert_eq!(
        batch[1].is_ok(),
        tampered_single,
        "batch and single disagree (tampered)"
    );
    assert_eq!(batch[2].is_ok(), single, "batch and single disagree (repeat)");
    match verify_op(op, &w.cache) {
        Ok(v) => {
            assert!(single, "verify_op accepted what verify_single refuses");
            apply_to_base(v);
        }
        Err((_, reason)) => {
            assert!(!single, "verify_op refused what verify_single accepts");
            assert_eq!(reason, Reason::BadSignature);
        }
    }
}

/// Applies one verified operation to the fuzz world's set-up state, in a
/// block timed so that it is not expired if it can be valid at all.
fn apply_to_base(v: Verified<SignedOp>) {
    let w = world();
    let mut s = w.base.clone();
    let ts = v
        .body
        .valid_until_ms
        .saturating_sub(MAX_VALIDITY_MS / 2)
        .max(s.timestamp_ms());
    s.begin_block(ts);
    let before = fingerprint(&s);
    match s.apply(v.clone()) {
        Ok(_) => {
            assert!(s.is_recent(&v.tx_id));
            assert_eq!(s.apply(v), Err(Reason::Duplicate), "the same operation applied twice");
            let sealed = s.seal_block();
            assert_eq!(sealed.ops.len(), 1);
            s.check_invariants().expect("invariants after one operation");
            assert_eq!(s.sum_balances(), s.totals().circulation() as u128);
        }
        Err(_) => {
            assert_eq!(fingerprint(&s), before, "a refused operation changed the state");
            s.abort_empty_block();
        }
    }
}

// ---------------------------------------------------------------------------
// Target 2: programs against the state machine.

/// Reads the fuzz input; past its end every read gives zeros.
struct Bytes<'a> {
    b: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn new(b: &'a [u8]) -> Self {
        Bytes { b }
    }
    fn done(&self) -> bool {
        self.b.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.b.split_first() {
            Some((&x, rest)) => {
                self.b = rest;
                x
            }
            None => 0,
        }
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for o in out.iter_mut() {
            *o = self.u8();
        }
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }
}

/// Program instructions (the opcode byte modulo 16).
pub mod opcode {
    pub const ISSUE: u8 = 0;
    pub const REDEEM: u8 = 1;
    pub const OPEN_ACCOUNT: u8 = 2;
    pub const CLOSE_ACCOUNT: u8 = 3;
    pub const TRANSFER: u8 = 4;
    pub const FREEZE: u8 = 5;
    pub const UNFREEZE: u8 = 6;
    pub const ADMIT_BANK: u8 = 7;
    pub const SUSPEND_BANK: u8 = 8;
    pub const SET_PHASE: u8 = 9;
    pub const SET_LIMITS: u8 = 10;
    pub const SET_REPORTING_THRESHOLD: u8 = 11;
    /// Resubmit one of the last operations submitted (accepted or not).
    pub const REPLAY: u8 = 12;
    /// Close the block (seal, or abort it if empty as the node does) and open the next.
    pub const NEXT_BLOCK: u8 = 13;
    /// 14 and 15 are transfers too (they are most of the traffic).
    pub const TRANSFER2: u8 = 14;
    pub const TRANSFER3: u8 = 15;
    /// An opcode byte with this bit whose low four bits are `TRANSFER3` is
    /// a central-bank control operation instead, chosen by the next byte
    /// (`Run::control_op`).
    pub const CONTROL: u8 = 0x80;
}

/// Flags byte of an operation instruction.
pub mod flag {
    /// Bits 0-2: validity window (see `Run::valid_until`).
    pub const VALIDITY: u8 = 0x07;
    pub const WRONG_CHAIN: u8 = 0x08;
    /// Flip a signature bit after signing: the verifier must refuse it.
    pub const CORRUPT_SIGNATURE: u8 = 0x10;
    /// Nonce 0 instead of a fresh one: the same op again is the same tx id.
    pub const NONCE_ZERO: u8 = 0x20;
    /// The next byte names the signer (usually the wrong one).
    pub const SIGNER: u8 = 0x80;
}

struct Run {
    state: State,
    /// State before the open block (the block replays on it identically).
    pre_block: State,
    ts: u64,
    nonce: u64,
    model: HashMap<AccountId, Kopecks>,
    issued: Kopecks,
    redeemed: Kopecks,
    applied_ever: HashSet<TxId>,
    block_ops: Vec<Verified<SignedOp>>,
    history: Vec<SignedOp>,
    seals: u32,
}

/// Runs `data` as a program against the state machine. Panics on a finding.
pub fn apply_ops(data: &[u8]) {
    let w = world();
    let base = w.base.clone();
    let mut run = Run {
        model: base.accounts().map(|a| (a.id, a.balance)).collect(),
        issued: base.totals().issued,
        redeemed: base.totals().redeemed,
        pre_block: base.clone(),
        state: base,
        ts: T0,
        nonce: 0,
        applied_ever: HashSet::new(),
        block_ops: Vec::new(),
        history: Vec::new(),
        seals: 0,
    };
    run.check_block_boundary();
    run.state.begin_block(T0);
    let mut r = Bytes::new(data);
    let mut n = 0;
    while !r.done() && n < MAX_INSTRUCTIONS {
        n += 1;
        run.step(w, &mut r);
    }
    run.end_block(true);
}

fn pick_party(r: &mut Bytes) -> usize {
    r.u8() as usize % party::COUNT
}

/// Central bank or one of the four (possible) banks.
fn pick_authority(r: &mut Bytes) -> usize {
    r.u8() as usize % 5
}

fn pick_amount(r: &mut Bytes) -> Kopecks {
    match r.u8() % 8 {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => u64::MAX - r.u8() as u64,
        4 => r.u8() as u64,
        5 => r.u16() as u64 * 100,
        6 => r.u64(),
        _ => r.u32() as u64,
    }
}

fn pick_kind(r: &mut Bytes) -> AccountKind {
    AccountKind::from_u8(1 + r.u8() % 4).unwrap()
}

fn pick_text(r: &mut Bytes, max: usize) -> String {
    match r.u8() % 4 {
        0 => String::new(),
        1 => "p".into(),
        2 => "x".repeat(max),
        // Multi-byte UTF-8, as long as fits (cut on a character boundary).
        _ => {
            let mut s = String::new();
            for c in "Счёт №42 ".chars().cycle() {
                if s.len() + c.len_utf8() > max {
                    break;
                }
                s.push(c);
            }
            s
        }
    }
}

impl Run {
    fn step(&mut self, w: &World, r: &mut Bytes) {
        use opcode::*;
        let raw = r.u8();
        let code = raw % 16;
        if code == TRANSFER3 && raw & CONTROL != 0 {
            let (signer, op) = self.control_op(w, r);
            self.submit(w, r, signer, op);
            return;
        }
        let (signer, op) = match code {
            ISSUE | REDEEM => {
                let bank = w.ids[pick_party(r)];
                let amount = pick_amount(r);
                let op = if code == ISSUE {
                    Op::Issue { bank, amount }
                } else {
                    Op::Redeem { bank, amount }
                };
                (party::CB, op)
            }
            OPEN_ACCOUNT => {
                let signer = pick_authority(r);
                let account = w.ids[pick_party(r)];
                let kind = pick_kind(r);
                (signer, Op::OpenAccount { account, kind })
            }
            CLOSE_ACCOUNT => {
                let signer = pick_authority(r);
                let account = w.ids[pick_party(r)];
                (signer, Op::CloseAccount { account })
            }
            TRANSFER | TRANSFER2 | TRANSFER3 => {
                let payer = pick_party(r);
                let payee = w.ids[pick_party(r)];
                let amount = pick_amount(r);
                let purpose = pick_text(r, MAX_PURPOSE_BYTES);
                (payer, Op::Transfer { payee, amount, purpose })
            }
            FREEZE | UNFREEZE => {
                let signer = pick_authority(r);
                let account = w.ids[pick_party(r)];
                let op = if code == FREEZE {
                    Op::Freeze { account }
                } else {
                    Op::Unfreeze { account }
                };
                (signer, op)
            }
            ADMIT_BANK => {
                let bank = w.ids[pick_party(r)];
                let name = pick_text(r, MAX_NAME_BYTES);
                (party::CB, Op::AdmitBank { bank, name })
            }
            SUSPEND_BANK => (
                party::CB,
                Op::SuspendBank {
                    bank: w.ids[pick_party(r)],
                },
            ),
            SET_PHASE => (
                party::CB,
                Op::SetPhase {
                    phase: Phase::from_u8(1 + r.u8() % 2).unwrap(),
                },
            ),
            SET_LIMITS => {
                let kind = pick_kind(r);
                let limits = Limits {
                    balance_cap: pick_amount(r),
                    payment_cap: pick_amount(r),
                    daily_outflow_cap: pick_amount(r),
                };
                (party::CB, Op::SetLimits { kind, limits })
            }
            SET_REPORTING_THRESHOLD => (party::CB, Op::SetReportingThreshold { amount: pick_amount(r) }),
            REPLAY => {
                if !self.history.is_empty() {
                    let i = r.u8() as usize % self.history.len();
                    let op = self.history[i].clone();
                    self.verify_and_apply(w, op, None);
                }
                return;
            }
            _ => {
                debug_assert_eq!(code, NEXT_BLOCK);
                let seal_empty = r.u8() & 1 == 1;
                self.end_block(seal_empty);
                let delta = self.pick_delta(r);
                self.ts = self.state.timestamp_ms().saturating_add(delta);
                self.state.begin_block(self.ts);
                return;
            }
        };
        self.submit(w, r, signer, op);
    }

    /// One of the control operations (tags 13-27), its fields drawn from
    /// the parties, amounts and the payments held or recently submitted.
    fn control_op(&mut self, w: &World, r: &mut Bytes) -> (usize, Op) {
        let account = w.ids[pick_party(r)];
        let payment = match r.u8() % 3 {
            0 if !self.history.is_empty() => self.history[r.u8() as usize % self.history.len()].tx_id,
            1 => {
                let held: Vec<TxId> = self.state.controls().all_pending().map(|(id, _)| *id).collect();
                if held.is_empty() {
                    TxId([r.u8(); 32])
                } else {
                    held[r.u8() as usize % held.len()]
                }
            }
            _ => TxId([r.u8(); 32]),
        };
        let tier = Tier::from_u8(1 + r.u8() % 3).unwrap();
        let purpose = r.u8() as u32 % 3;
        match r.u8() % 15 {
            0 => (pick_authority(r), Op::FreezeReceiveOnly { account }),
            1 => (
                party::CB,
                Op::SetControls {
                    hold_threshold: pick_amount(r),
                    hold_window_ms: match r.u8() % 3 {
                        0 => 0,
                        1 => 1 + r.u16() as u64,
                        _ => r.u64(),
                    },
                    protected_minimum: pick_amount(r),
                },
            ),
            2 => (
                pick_authority(r),
                Op::FlagFraud {
                    account,
                    flagged: r.u8() & 1 == 1,
                },
            ),
            3 => (pick_party(r), Op::ConfirmPayment { payment }),
            4 => (pick_authority(r), Op::ReleasePayment { payment }),
            5 => (pick_party(r), Op::VoidPayment { payment }),
            6 => (
                pick_authority(r),
                Op::Collect {
                    debtor: account,
                    claimant: w.ids[pick_party(r)],
                    amount: pick_amount(r),
                },
            ),
            7 => {
                let n = r.u8() as usize % 3;
                let payees = (0..n).map(|_| w.ids[pick_party(r)]).collect();
                let categories = (0..r.u8() % 3).map(|_| r.u16() % 4).collect();
                let unlock = self.ts.saturating_add(r.u8() as u64 * 100);
                let expires = match r.u8() % 3 {
                    0 => self.ts,
                    1 => self.ts.saturating_add(1 + r.u16() as u64),
                    _ => u64::MAX,
                };
                (
                    party::CB,
                    Op::DefinePurpose {
                        purpose,
                        issuer: w.ids[pick_party(r)],
                        unlock_at_ms: unlock.min(expires),
                        expires_at_ms: expires,
                        payees,
                        categories,
                    },
                )
            }
            8 => (
                pick_party(r),
                Op::PayTagged {
                    payee: account,
                    amount: pick_amount(r),
                    purpose,
                },
            ),
            9 => (
                pick_authority(r),
                Op::SetCategory {
                    account,
                    category: r.u16() % 4,
                },
            ),
            10 => (
                pick_authority(r),
                Op::SetSweep {
                    account,
                    enabled: r.u8() & 1 == 1,
                },
            ),
            11 => (pick_authority(r), Op::SetTier { account, tier }),
            12 => {
                let limits = Limits {
                    balance_cap: pick_amount(r),
                    payment_cap: pick_amount(r),
                    daily_outflow_cap: pick_amount(r),
                };
                (party::CB, Op::SetTierLimits { tier, limits })
            }
            13 => (
                pick_authority(r),
                Op::RotateKey {
                    account,
                    new_key: w.ids[pick_party(r)],
                },
            ),
            _ => {
                let n = r.u8() as usize % 4;
                let keys = (0..n).map(|_| w.ids[pick_party(r)]).collect();
                (
                    pick_authority(r),
                    Op::SetSignatories {
                        account,
                        min_amount: pick_amount(r),
                        required: r.u8() % 4,
                        keys,
                    },
                )
            }
        }
    }

    /// How far the next block's timestamp is after the last sealed one.
    fn pick_delta(&self, r: &mut Bytes) -> u64 {
        match r.u8() % 8 {
            0 => 0,
            1 => 1,
            2 => r.u8() as u64 * 1000,
            3 => r.u16() as u64 * 100,
            4 => MAX_VALIDITY_MS,
            5 => MAX_VALIDITY_MS + 1,
            // To the next UTC day (daily limits reset).
            6 => MS_PER_DAY - self.state.timestamp_ms() % MS_PER_DAY,
            _ => r.u64(),
        }
    }

    fn valid_until(&self, mode: u8, r: &mut Bytes) -> u64 {
        let ts = self.ts;
        let max = self.state.params().max_validity_ms;
        match mode {
            0 | 7 => ts.saturating_add(max),
            1 => ts,
            2 => ts.saturating_add(r.u8() as u64 * 1000),
            3 => ts.saturating_sub(1 + r.u8() as u64),     // expired
            4 => ts.saturating_add(max).saturating_add(1), // too long
            5 => u64::MAX,
            _ => 0,
        }
    }

    fn submit(&mut self, w: &World, r: &mut Bytes, default_signer: usize, op: Op) {
        let flags = r.u8();
        let signer = if flags & flag::SIGNER != 0 {
            pick_party(r)
        } else {
            default_signer
        };
        let valid_until = self.valid_until(flags & flag::VALIDITY, r);
        let chain = if flags & flag::WRONG_CHAIN != 0 {
            "ruble-other"
        } else {
            CHAIN
        };
        let nonce = if flags & flag::NONCE_ZERO != 0 {
            0
        } else {
            self.nonce += 1;
            self.nonce
        };
        let mut signed = w.sign(signer, op, nonce, valid_until, chain);
        let honest = w.keys[signer].is_some();
        let expect_valid = if flags & flag::CORRUPT_SIGNATURE != 0 {
            let bit = r.u8();
            signed.signature[(bit as usize / 8) % SIGNATURE_BYTES] ^= 1 << (bit % 8);
            Some(false)
        } else if honest {
            Some(true)
        } else {
            None
        };
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(signed.clone());
        self.verify_and_apply(w, signed, expect_valid);
    }

    fn verify_and_apply(&mut self, w: &World, op: SignedOp, expect_valid: Option<bool>) {
        match verify_op(op, &w.cache) {
            Err((op, reason)) => {
                assert_eq!(reason, Reason::BadSignature);
                assert_ne!(expect_valid, Some(true), "an honest signature was refused: {op:?}");
            }
            Ok(v) => {
                assert_ne!(expect_valid, Some(false), "a corrupted signature verified: {:?}", *v);
                self.apply(v);
            }
        }
    }

    fn apply(&mut self, v: Verified<SignedOp>) {
        let before = fingerprint(&self.state);
        let threshold = self.state.params().reporting_threshold;
        let max_validity = self.state.params().max_validity_ms;
        let was_open_len = self.state.open_block_len();
        // What a settling operation settles, and who a key pays for: read
        // before the operation changes them.
        let held = match &v.body.op {
            Op::ConfirmPayment { payment } | Op::ReleasePayment { payment } => {
                self.state.controls().pending(payment).cloned()
            }
            _ => None,
        };
        let payer = self.state.controls().resolve(&v.body.signer).unwrap_or(v.body.signer);
        match self.state.apply(v.clone()) {
            Err(_) => {
                assert_eq!(
                    fingerprint(&self.state),
                    before,
                    "a refused operation changed the state"
                );
            }
            Ok(applied) => {
                let body = &v.body;
                assert!(
                    self.applied_ever.insert(v.tx_id),
                    "operation {} applied twice (ts {}, valid until {})",
                    v.tx_id,
                    self.ts,
                    body.valid_until_ms
                );
                assert_eq!(applied.index as usize, was_open_len);
                assert_eq!(applied.index as usize, self.block_ops.len());
                assert_eq!(body.chain_id, CHAIN);
                assert!(body.valid_until_ms >= self.ts, "expired operation applied");
                assert!(body.valid_until_ms - self.ts <= max_validity, "validity too long");
                assert!(self.state.is_recent(&v.tx_id));
                let cb = self.state.params().central_bank;
                let signer = body.signer;
                let mut touched = vec![signer];
                let large = match &body.op {
                    Op::Issue { bank, amount } => {
                        assert_eq!(signer, cb, "issue by someone other than the central bank");
                        assert!(*amount > 0);
                        let b = self.model.get_mut(bank).expect("issue to an account the model knows");
                        *b = b.checked_add(*amount).expect("issue overflows a balance");
                        self.issued = self.issued.checked_add(*amount).expect("issued overflows");
                        touched.push(*bank);
                        false
                    }
                    Op::Redeem { bank, amount } => {
                        assert_eq!(signer, cb, "redeem by someone other than the central bank");
                        assert!(*amount > 0);
                        let b = self.model.get_mut(bank).expect("redeem from a known account");
                        *b = b.checked_sub(*amount).expect("redeem below zero");
                        self.redeemed = self.redeemed.checked_add(*amount).expect("redeemed overflows");
                        touched.push(*bank);
                        false
                    }
                    Op::Transfer { payee, amount, .. } => {
                        assert!(*amount > 0, "zero transfer applied");
                        assert_ne!(payer, *payee, "self-payment applied");
                        assert_ne!(payer, cb, "the central bank paid");
                        assert_ne!(*payee, cb, "the central bank was paid");
                        touched.extend([payer, *payee]);
                        match applied.effect {
                            // Held: reserved, nothing moves yet.
                            Effect::Held { .. } => {}
                            Effect::None | Effect::Swept { .. } => {
                                let swept = applied.effect.swept();
                                self.pay(payer, *payee, *amount, swept);
                                touched.push(self.state.account(payee).unwrap().bank);
                            }
                            e => panic!("a transfer with effect {e:?}"),
                        }
                        threshold > 0 && *amount >= threshold
                    }
                    Op::ConfirmPayment { .. } | Op::ReleasePayment { .. } => {
                        match applied.effect {
                            Effect::Approved => {}
                            Effect::Settled { swept } => {
                                let h = held.expect("settled a held payment");
                                self.pay(h.payer, h.payee, h.amount, swept);
                                let bank = self.state.account(&h.payee).unwrap().bank;
                                touched.extend([h.payer, h.payee, bank]);
                            }
                            e => panic!("a settlement with effect {e:?}"),
                        }
                        false
                    }
                    Op::Collect {
                        debtor,
                        claimant,
                        amount,
                    } => {
                        let Effect::Collected { amount: moved } = applied.effect else {
                            panic!("a collection with effect {:?}", applied.effect);
                        };
                        assert!(moved > 0 && moved <= *amount, "collected {moved} of {amount}");
                        self.pay(*debtor, *claimant, moved, 0);
                        touched.extend([*debtor, *claimant]);
                        false
                    }
                    Op::PayTagged { payee, amount, .. } => {
                        assert!(*amount > 0);
                        if signer == cb {
                            self.issued = self.issued.checked_add(*amount).expect("issued overflows");
                            *self.model.get_mut(payee).expect("payee known") += amount;
                        } else {
                            self.pay(payer, *payee, *amount, 0);
                        }
                        touched.extend([payer, *payee]);
                        false
                    }
                    Op::FreezeReceiveOnly { .. }
                    | Op::SetControls { .. }
                    | Op::FlagFraud { .. }
                    | Op::VoidPayment { .. }
                    | Op::DefinePurpose { .. }
                    | Op::SetCategory { .. }
                    | Op::SetSweep { .. }
                    | Op::SetTier { .. }
                    | Op::SetTierLimits { .. }
                    | Op::RotateKey { .. }
                    | Op::SetSignatories { .. } => false,
                    Op::OpenAccount { account, .. } => {
                        assert!(self.model.insert(*account, 0).is_none(), "account opened twice");
                        touched.push(*account);
                        false
                    }
                    Op::AdmitBank { bank, .. } => {
                        self.model.entry(*bank).or_insert(0);
                        assert_eq!(signer, cb);
                        touched.push(*bank);
                        false
                    }
                    Op::CloseAccount { account } => {
                        assert_eq!(self.model.get(account), Some(&0), "closed an account holding money");
                        touched.push(*account);
                        false
                    }
                    Op::SuspendBank { .. }
                    | Op::SetPhase { .. }
                    | Op::SetLimits { .. }
                    | Op::SetReportingThreshold { .. } => {
                        assert_eq!(signer, cb, "a parameter change by someone other than the central bank");
                        false
                    }
                    Op::Freeze { account } | Op::Unfreeze { account } => {
                        touched.push(*account);
                        false
                    }
                };
                assert_eq!(applied.large, large, "large-payment flag");
                for id in touched {
                    assert_eq!(
                        self.state.account(&id).map(|a| a.balance),
                        self.model.get(&id).copied(),
                        "balance of {id} after {}",
                        body.op.name()
                    );
                }
                let t = self.state.totals();
                assert_eq!((t.issued, t.redeemed), (self.issued, self.redeemed));
                self.block_ops.push(v);
            }
        }
    }

    /// Moves `amount` from `p` to `q` in the model; `swept` of it lands in
    /// `q`'s bank's settlement account instead (the waterfall).
    fn pay(&mut self, p: AccountId, q: AccountId, amount: Kopecks, swept: Kopecks) {
        let b = self.model.get_mut(&p).expect("payer known to the model");
        *b = b.checked_sub(amount).expect("payer overdrawn");
        let bank = self.state.account(&q).expect("payee exists").bank;
        let b = self.model.get_mut(&q).expect("payee known to the model");
        *b = b.checked_add(amount - swept).expect("payee overflows");
        let b = self.model.get_mut(&bank).expect("bank known to the model");
        *b = b.checked_add(swept).expect("bank overflows");
    }

    /// Closes the open block: seals it, or, if nothing applied and
    /// `!seal_empty`, aborts it as the node's sequencer does.
    fn end_block(&mut self, seal_empty: bool) {
        if self.state.open_block_len() == 0 && !seal_empty {
            self.state.abort_empty_block();
            assert_eq!(self.state.height(), self.pre_block.height());
            assert_eq!(self.state.state_hash(), self.pre_block.state_hash());
            return;
        }
        let prev_hash = self.state.head_hash();
        let prev_height = self.state.height();
        // Purposes due to expire return their funds at this seal: the model
        // takes those balances from the state (the invariants still check
        // the sum); everything an operation moved it checked above.
        let expiring = self
            .state
            .controls()
            .purposes()
            .any(|(_, p)| p.expires_at_ms <= self.ts);
        let sealed = self.state.seal_block();
        if expiring {
            for a in &sealed.accounts {
                self.model.insert(a.id, a.balance);
            }
            let t = self.state.totals();
            assert_eq!(t.issued, self.issued, "an expiry issued money");
            assert!(t.redeemed >= self.redeemed, "an expiry un-redeemed money");
            self.redeemed = t.redeemed;
        }
        self.seals += 1;
        assert_eq!(sealed.header.prev_hash, prev_hash, "hash chain links");
        assert_eq!(sealed.header.height, prev_height + 1);
        assert_eq!(sealed.header.timestamp_ms, self.ts);
        assert_eq!(sealed.header.state_hash, self.state.state_hash());
        assert_eq!(sealed.hash, sealed.header.hash());
        assert_eq!(self.state.head_hash(), sealed.hash);
        assert_eq!(sealed.header.op_count as usize, self.block_ops.len());
        assert_eq!(
            sealed.ops.iter().map(|o| o.op.tx_id).collect::<Vec<_>>(),
            self.block_ops.iter().map(|v| v.tx_id).collect::<Vec<_>>(),
            "the block holds exactly the accepted operations, in order"
        );
        for a in &sealed.accounts {
            assert_eq!(self.state.account(&a.id), Some(a), "sealed account record");
        }
        assert_eq!(sealed.totals, self.state.totals());
        self.check_block_boundary();
        // The state machine is a function of (state, block): the block
        // replays on the state before it to the same hash.
        let mut replay = self.pre_block.clone();
        replay.begin_block(sealed.header.timestamp_ms);
        for v in self.block_ops.drain(..) {
            replay.apply(v).expect("a sealed operation replays");
        }
        let again = replay.seal_block();
        assert_eq!(again.hash, sealed.hash, "replaying the block gives another hash");
        assert_eq!(fingerprint(&replay), fingerprint(&self.state));
        self.pre_block = self.state.clone();
    }

    /// Everything that must hold between blocks.
    fn check_block_boundary(&self) {
        let s = &self.state;
        if let Err(e) = s.check_invariants() {
            panic!("invariants broken after block {}: {e}", s.height());
        }
        let t = s.totals();
        assert_eq!((t.issued, t.redeemed), (self.issued, self.redeemed));
        assert_eq!(
            s.sum_balances(),
            t.circulation() as u128,
            "Σ balances ≠ issued − redeemed"
        );
        assert_eq!(s.account_count(), self.model.len(), "accounts in the model");
        for a in s.accounts() {
            assert_eq!(
                self.model.get(&a.id),
                Some(&a.balance),
                "balance of {} vs the model",
                a.id
            );
        }
        let model_sum: u128 = self.model.values().map(|&b| b as u128).sum();
        assert_eq!(model_sum, t.circulation() as u128);
    }
}

// ---------------------------------------------------------------------------
// Seed inputs: one valid encoding of every operation type, in each form.

/// One valid instance of every [`Op`] variant, with the party that may sign it.
pub fn sample_ops() -> Vec<(usize, Op)> {
    let w = world();
    let ids = &w.ids;
    vec![
        (
            party::CB,
            Op::Issue {
                bank: ids[party::BANK0],
                amount: 500_00,
            },
        ),
        (
            party::CB,
            Op::Redeem {
                bank: ids[party::BANK1],
                amount: 100_00,
            },
        ),
        (
            party::BANK0,
            Op::OpenAccount {
                account: ids[party::UNOPENED0],
                kind: AccountKind::Business,
            },
        ),
        (
            party::BANK0,
            Op::CloseAccount {
                account: ids[party::CLIENT0],
            },
        ),
        (
            party::CLIENT0,
            Op::Transfer {
                payee: ids[party::CLIENT0 + 2],
                amount: 12_345,
                purpose: "Счёт №42".into(),
            },
        ),
        (
            party::CB,
            Op::Freeze {
                account: ids[party::CLIENT0 + 1],
            },
        ),
        (
            party::BANK1,
            Op::Unfreeze {
                account: ids[party::CLIENT0 + 3],
            },
        ),
        (
            party::CB,
            Op::AdmitBank {
                bank: ids[party::NEW_BANK0],
                name: "New Bank".into(),
            },
        ),
        (
            party::CB,
            Op::SuspendBank {
                bank: ids[party::BANK1],
            },
        ),
        (party::CB, Op::SetPhase { phase: Phase::Retail }),
        (
            party::CB,
            Op::SetLimits {
                kind: AccountKind::Retail,
                limits: Limits {
                    balance_cap: 600_000_00,
                    payment_cap: 100_000_00,
                    daily_outflow_cap: 300_000_00,
                },
            },
        ),
        (party::CB, Op::SetReportingThreshold { amount: 600_000_00 }),
        (
            party::CB,
            Op::FreezeReceiveOnly {
                account: ids[party::CLIENT0 + 1],
            },
        ),
        (
            party::CB,
            Op::SetControls {
                hold_threshold: 100_000_00,
                hold_window_ms: 172_800_000,
                protected_minimum: 1_000_00,
            },
        ),
        (
            party::BANK0,
            Op::FlagFraud {
                account: ids[party::CLIENT0 + 3],
                flagged: true,
            },
        ),
        (party::CLIENT0, Op::ConfirmPayment { payment: TxId([5; 32]) }),
        (party::BANK0, Op::ReleasePayment { payment: TxId([5; 32]) }),
        (party::CLIENT0, Op::VoidPayment { payment: TxId([5; 32]) }),
        (
            party::BANK0,
            Op::Collect {
                debtor: ids[party::CLIENT0],
                claimant: ids[party::CLIENT0 + 2],
                amount: 10_00,
            },
        ),
        (
            party::CB,
            Op::DefinePurpose {
                purpose: 1,
                issuer: ids[party::CB],
                unlock_at_ms: 0,
                expires_at_ms: T0 + MS_PER_DAY,
                payees: vec![ids[party::CLIENT0 + 2]],
                categories: vec![5912],
            },
        ),
        (
            party::CB,
            Op::PayTagged {
                payee: ids[party::CLIENT0],
                amount: 50_00,
                purpose: 1,
            },
        ),
        (
            party::BANK0,
            Op::SetCategory {
                account: ids[party::CLIENT0],
                category: 5912,
            },
        ),
        (
            party::BANK0,
            Op::SetSweep {
                account: ids[party::CLIENT0],
                enabled: true,
            },
        ),
        (
            party::BANK0,
            Op::SetTier {
                account: ids[party::CLIENT0],
                tier: Tier::Simplified,
            },
        ),
        (
            party::CB,
            Op::SetTierLimits {
                tier: Tier::Anonymous,
                limits: Limits {
                    balance_cap: 15_000_00,
                    payment_cap: 5_000_00,
                    daily_outflow_cap: 15_000_00,
                },
            },
        ),
        (
            party::BANK0,
            Op::RotateKey {
                account: ids[party::CLIENT0],
                new_key: ids[party::STRANGER],
            },
        ),
        (
            party::BANK0,
            Op::SetSignatories {
                account: ids[party::CLIENT0],
                min_amount: 1_000_000_00,
                required: 2,
                keys: vec![ids[party::UNOPENED0], ids[party::UNOPENED1]],
            },
        ),
    ]
}

/// Seed inputs as `(target, file name, bytes)`. `ledger/tests/fuzz_regressions.rs`
/// writes them to `ledger/fuzz/seeds/` and checks the files stay equal.
pub fn seed_inputs() -> Vec<(&'static str, String, Vec<u8>)> {
    let w = world();
    let mut out = Vec::new();
    for (n, (signer, op)) in sample_ops().into_iter().enumerate() {
        let name = op.name();
        let signed = w.sign(signer, op, n as u64 + 1, T0 + MAX_VALIDITY_MS, CHAIN);
        out.push(("decode_op", format!("body-{name}"), signed.body_bytes.clone()));
        let mut with_sig = signed.body_bytes.clone();
        with_sig.extend_from_slice(&signed.signature);
        out.push(("decode_op", format!("signed-{name}"), with_sig));
        out.push(("decode_op", format!("stored-{name}"), signed.to_stored()));
    }
    let header = BlockHeader {
        height: 1,
        prev_hash: [1; 32],
        ops_root: [2; 32],
        state_hash: [3; 32],
        timestamp_ms: T0,
        op_count: 3,
    };
    out.push(("decode_op", "header".into(), header.encode().to_vec()));
    let client = w.base.account(&w.ids[party::CLIENT0]).unwrap();
    out.push(("decode_op", "account".into(), client.encode().to_vec()));
    out.push((
        "decode_op",
        "bank".into(),
        w.base.bank(&w.ids[party::BANK0]).unwrap().encode(),
    ));
    // A signed query by a client.
    let q = Query {
        chain_id: CHAIN.into(),
        method: method::GET_HISTORY.into(),
        account: w.ids[party::CLIENT0],
        issued_at_ms: T0,
        nonce: 7,
        params: history_params(0, 50),
    };
    let mut qb = vec![b'q'];
    qb.extend_from_slice(&q.account.0);
    qb.extend_from_slice(&q.issued_at_ms.to_be_bytes());
    qb.extend_from_slice(&q.nonce.to_be_bytes());
    qb.extend_from_slice(&q.params);
    qb.extend_from_slice(&q.sign(w.keys[party::CLIENT0].as_ref().unwrap()));
    out.push(("decode_op", "query".into(), qb));

    // apply_ops: a short program per instruction, then one using them all.
    use opcode::*;
    let programs: Vec<(&str, Vec<u8>)> = vec![
        ("issue", vec![ISSUE, party::BANK0 as u8, 5, 0, 10, 0]),
        ("redeem", vec![REDEEM, party::BANK1 as u8, 5, 0, 10, 0]),
        (
            "open-account",
            vec![OPEN_ACCOUNT, party::BANK0 as u8, party::UNOPENED0 as u8, 2, 0],
        ),
        (
            "open-close-account",
            vec![
                OPEN_ACCOUNT,
                party::BANK1 as u8,
                party::UNOPENED1 as u8,
                2,
                0,
                CLOSE_ACCOUNT,
                party::BANK1 as u8,
                party::UNOPENED1 as u8,
                0,
            ],
        ),
        (
            "transfer",
            vec![TRANSFER, party::CLIENT0 as u8, party::CLIENT0 as u8 + 2, 5, 0, 20, 1, 0],
        ),
        ("freeze", vec![FREEZE, party::CB as u8, party::CLIENT0 as u8, 0]),
        (
            "freeze-unfreeze",
            vec![
                FREEZE,
                party::BANK0 as u8,
                party::CLIENT0 as u8 + 1,
                0,
                UNFREEZE,
                party::BANK0 as u8,
                party::CLIENT0 as u8 + 1,
                0,
            ],
        ),
        ("admit-bank", vec![ADMIT_BANK, party::NEW_BANK0 as u8, 1, 0]),
        ("suspend-bank", vec![SUSPEND_BANK, party::BANK1 as u8, 0]),
        ("set-phase", vec![SET_PHASE, 1, 0]),
        ("set-limits", vec![SET_LIMITS, 3, 5, 0, 100, 5, 0, 50, 2, 0]),
        ("set-reporting-threshold", vec![SET_REPORTING_THRESHOLD, 5, 0, 10, 0]),
        (
            "replay",
            vec![
                TRANSFER,
                party::CLIENT0 as u8,
                party::CLIENT0 as u8 + 3,
                1,
                0,
                0,
                REPLAY,
                0,
                NEXT_BLOCK,
                1,
                1,
                REPLAY,
                0,
            ],
        ),
        (
            "next-block",
            vec![NEXT_BLOCK, 1, 2, 7, ISSUE, party::BANK0 as u8, 1, 0, NEXT_BLOCK, 0, 6],
        ),
        (
            "wrong-signer",
            vec![ISSUE, party::BANK0 as u8, 1, flag::SIGNER, party::BANK0 as u8],
        ),
        ("expired", vec![ISSUE, party::BANK0 as u8, 1, 3, 5]),
        ("too-long", vec![ISSUE, party::BANK0 as u8, 1, 4]),
        ("wrong-chain", vec![ISSUE, party::BANK0 as u8, 1, flag::WRONG_CHAIN]),
        (
            "bad-signature",
            vec![ISSUE, party::BANK0 as u8, 1, flag::CORRUPT_SIGNATURE, 77],
        ),
        (
            "huge-amount",
            vec![TRANSFER, party::CLIENT0 as u8, party::BANK0 as u8, 2, 0, 0],
        ),
    ];
    let mut all = Vec::new();
    for (name, p) in programs {
        all.extend_from_slice(&p);
        all.extend_from_slice(&[NEXT_BLOCK, 0, 1]);
        out.push(("apply_ops", name.to_string(), p));
    }
    out.push(("apply_ops", "all".into(), all));
    out
}
