//! Shared test kit: a small world (central bank, two banks, business clients)
//! with deterministic keys, and helpers to sign operations.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use ruble_ledger::codec::{Op, OpBody, SignedOp};
use ruble_ledger::crypto::{verify_op, KeyCache, Verified};
use ruble_ledger::state::{Genesis, GenesisBank};
use ruble_ledger::types::{AccountId, AccountKind, Limits, Phase};

pub mod checkpointing;

pub const CHAIN: &str = "ruble-test";
pub const T0: u64 = 1_800_000_000_000;

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
    pub cb: SigningKey,
    pub banks: Vec<SigningKey>,
    pub nonce: u64,
    pub cache: KeyCache,
}

impl World {
    pub fn new() -> World {
        World {
            cb: key(1),
            banks: vec![key(2), key(3)],
            nonce: 0,
            cache: KeyCache::default(),
        }
    }

    pub fn genesis(&self) -> Genesis {
        Genesis {
            chain_id: CHAIN.into(),
            central_bank: id(&self.cb),
            timestamp_ms: T0,
            max_validity_ms: 600_000,
            phase: Phase::Business,
            reporting_threshold: 0,
            settlement_limits: Limits::UNLIMITED,
            business_limits: Limits::UNLIMITED,
            retail_limits: Limits::UNLIMITED,
            banks: self
                .banks
                .iter()
                .enumerate()
                .map(|(i, k)| GenesisBank {
                    id: id(k),
                    name: format!("Bank {i}"),
                })
                .collect(),
        }
    }

    /// Signs `op` by `signer`, valid until `T0 + 10 min` (enough for tests
    /// whose blocks use timestamps near T0).
    pub fn sign(&mut self, signer: &SigningKey, op: Op) -> SignedOp {
        self.sign_until(signer, op, T0 + 600_000)
    }

    pub fn sign_until(&mut self, signer: &SigningKey, op: Op, valid_until_ms: u64) -> SignedOp {
        self.nonce += 1;
        SignedOp::sign(
            OpBody {
                chain_id: CHAIN.into(),
                signer: id(signer),
                nonce: self.nonce,
                valid_until_ms,
                op,
            },
            signer,
        )
    }

    /// Issues 10 000 000.00 ₽ to bank 0, opens a business account at bank 0
    /// for each payer and funds it with 100 000.00 ₽.
    pub fn fund_payers(&mut self, payers: &[SigningKey]) -> Vec<SignedOp> {
        let (bank, cb) = (self.banks[0].clone(), self.cb.clone());
        let mut ops = vec![self.sign(
            &cb,
            Op::Issue {
                bank: id(&bank),
                amount: 1_000_000_000,
            },
        )];
        for p in payers {
            ops.push(self.sign(
                &bank,
                Op::OpenAccount {
                    account: id(p),
                    kind: AccountKind::Business,
                },
            ));
            ops.push(self.sign(
                &bank,
                Op::Transfer {
                    payee: id(p),
                    amount: 10_000_000,
                    purpose: String::new(),
                },
            ));
        }
        ops
    }

    pub fn verified(&self, op: SignedOp) -> Verified<SignedOp> {
        verify_op(op, &self.cache).expect("test op is signed correctly")
    }
}
