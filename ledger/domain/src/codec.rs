//! The canonical operation body: the exact bytes a signer signs and the node
//! stores. Specified byte by byte in `docs/signing.md`, with test vectors.
//!
//! Why a hand-specified fixed layout instead of protobuf: a signature must
//! cover one unambiguous encoding. Protobuf allows many encodings of the same
//! message (field order, default omission, unknown fields), which would let two
//! byte strings mean the same payment. Here every operation has exactly one
//! encoding, decoding is strict (no trailing bytes, no unknown tags, every enum
//! in range), and `decode(encode(x)) == x`, `encode(decode(b)) == b`.

use sha2::{Digest, Sha256};

use crate::reason::Reason;
use crate::types::{AccountId, AccountKind, Kopecks, Limits, Phase, Tier, TxId};

/// Domain-separation prefix of every signed operation.
pub const OP_DOMAIN: &[u8] = b"ruble-ledger/op/v1\0";
/// Body format version (first byte of every body).
pub const BODY_VERSION: u8 = 1;
/// Longest payment purpose, in UTF-8 bytes.
pub const MAX_PURPOSE_BYTES: usize = 140;
/// Longest bank name, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest chain id, in bytes (`[a-z0-9-]`).
pub const MAX_CHAIN_ID_BYTES: usize = 32;
/// Most payees, payee categories or signatory keys one rule lists.
pub const MAX_RULE_LIST: usize = 8;
/// Bytes before the operation-specific part: version, chain id, tag, signer, nonce, validity.
const HEADER_MAX_BYTES: usize = 1 + 1 + MAX_CHAIN_ID_BYTES + 1 + 32 + 8 + 8;
/// No valid body is longer than this; anything longer is refused before
/// parsing. The longest operation is `DefinePurpose` with full lists.
pub const MAX_BODY_BYTES: usize = HEADER_MAX_BYTES + 4 + 32 + 8 + 8 + 1 + 32 * MAX_RULE_LIST + 1 + 2 * MAX_RULE_LIST;
/// Ed25519 signature length.
pub const SIGNATURE_BYTES: usize = 64;

/// What an operation does. Tags (the `kind` byte) are in [`Op::tag`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Central bank mints `amount` into `bank`'s settlement account.
    Issue {
        bank: AccountId,
        amount: Kopecks,
    },
    /// Central bank takes `amount` out of `bank`'s settlement account and out of circulation.
    Redeem {
        bank: AccountId,
        amount: Kopecks,
    },
    /// A bank opens a client wallet for `account` (the holder's key).
    OpenAccount {
        account: AccountId,
        kind: AccountKind,
    },
    /// A bank closes one of its clients' empty wallets.
    CloseAccount {
        account: AccountId,
    },
    /// The signer pays `payee`.
    Transfer {
        payee: AccountId,
        amount: Kopecks,
        purpose: String,
    },
    /// The central bank (any account) or the servicing bank (its clients) freezes.
    Freeze {
        account: AccountId,
    },
    Unfreeze {
        account: AccountId,
    },
    /// Central bank admits a new bank (opening its settlement account) or reinstates a suspended one.
    AdmitBank {
        bank: AccountId,
        name: String,
    },
    SuspendBank {
        bank: AccountId,
    },
    SetPhase {
        phase: Phase,
    },
    SetLimits {
        kind: AccountKind,
        limits: Limits,
    },
    /// Payments of at least this amount are flagged as large (0 turns flagging off).
    SetReportingThreshold {
        amount: Kopecks,
    },
    /// The central bank or the servicing bank freezes an account for
    /// payments only: it can still receive. Lifted by `Unfreeze`.
    FreezeReceiveOnly {
        account: AccountId,
    },
    /// Central bank: the anti-fraud hold rule and the collection floor.
    /// A payment of at least `hold_threshold` (0 = off) to a payee the
    /// payer has not paid that much before is held for `hold_window_ms`;
    /// collection leaves at least `protected_minimum` in a wallet.
    SetControls {
        hold_threshold: Kopecks,
        hold_window_ms: u64,
        protected_minimum: Kopecks,
    },
    /// A bank (its clients) or the central bank (anyone) puts an account on
    /// the fraud registry, or takes it off: payments to it are held.
    FlagFraud {
        account: AccountId,
        flagged: bool,
    },
    /// The payer confirms its held payment, or a signatory approves one
    /// waiting for signatures. Executes it once enough have.
    ConfirmPayment {
        payment: TxId,
    },
    /// The payer's bank or the central bank clears a payment held by the
    /// anti-fraud rules: it executes.
    ReleasePayment {
        payment: TxId,
    },
    /// The payer, its bank or the central bank voids a held payment: the
    /// reserved funds become spendable again.
    VoidPayment {
        payment: TxId,
    },
    /// Court-ordered collection, by the debtor's bank or the central bank:
    /// up to `amount` of the debtor's free funds above the protected
    /// minimum go to `claimant`.
    Collect {
        debtor: AccountId,
        claimant: AccountId,
        amount: Kopecks,
    },
    /// Central bank: a purpose for tagged money. Funds tagged with it may
    /// pay only the listed payees or payees of the listed categories, not
    /// before `unlock_at_ms`; at `expires_at_ms` what is left returns to
    /// `issuer` (destroyed if the issuer is the central bank).
    DefinePurpose {
        purpose: u32,
        issuer: AccountId,
        unlock_at_ms: u64,
        expires_at_ms: u64,
        payees: Vec<AccountId>,
        categories: Vec<u16>,
    },
    /// The purpose's issuer pays `payee` tagged funds (the central bank
    /// issues them: new money).
    PayTagged {
        payee: AccountId,
        amount: Kopecks,
        purpose: u32,
    },
    /// The servicing bank sets a payee category (merchant category) of its client; 0 = none.
    SetCategory {
        account: AccountId,
        category: u16,
    },
    /// The servicing bank turns the holding-limit waterfall on or off: a
    /// credit past the wallet's cap sends the excess to the bank's
    /// settlement account instead of being refused.
    SetSweep {
        account: AccountId,
        enabled: bool,
    },
    /// The servicing bank moves a retail wallet to another identification tier.
    SetTier {
        account: AccountId,
        tier: Tier,
    },
    /// Central bank: the limits of an identification tier below `Full`.
    SetTierLimits {
        tier: Tier,
        limits: Limits,
    },
    /// The servicing bank rotates the key that controls a client's account
    /// (a lost device); the account keeps its id, history and balance.
    RotateKey {
        account: AccountId,
        new_key: AccountId,
    },
    /// The servicing bank sets a business account's signatories: payments
    /// of at least `min_amount` need `required` of `keys` (0 = none).
    SetSignatories {
        account: AccountId,
        min_amount: Kopecks,
        required: u8,
        keys: Vec<AccountId>,
    },
}

impl Op {
    pub fn tag(&self) -> u8 {
        match self {
            Op::Issue { .. } => 1,
            Op::Redeem { .. } => 2,
            Op::OpenAccount { .. } => 3,
            Op::CloseAccount { .. } => 4,
            Op::Transfer { .. } => 5,
            Op::Freeze { .. } => 6,
            Op::Unfreeze { .. } => 7,
            Op::AdmitBank { .. } => 8,
            Op::SuspendBank { .. } => 9,
            Op::SetPhase { .. } => 10,
            Op::SetLimits { .. } => 11,
            Op::SetReportingThreshold { .. } => 12,
            Op::FreezeReceiveOnly { .. } => 13,
            Op::SetControls { .. } => 14,
            Op::FlagFraud { .. } => 15,
            Op::ConfirmPayment { .. } => 16,
            Op::ReleasePayment { .. } => 17,
            Op::VoidPayment { .. } => 18,
            Op::Collect { .. } => 19,
            Op::DefinePurpose { .. } => 20,
            Op::PayTagged { .. } => 21,
            Op::SetCategory { .. } => 22,
            Op::SetSweep { .. } => 23,
            Op::SetTier { .. } => 24,
            Op::SetTierLimits { .. } => 25,
            Op::RotateKey { .. } => 26,
            Op::SetSignatories { .. } => 27,
        }
    }

    /// Lower-case name used in APIs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Issue { .. } => "issue",
            Op::Redeem { .. } => "redeem",
            Op::OpenAccount { .. } => "open_account",
            Op::CloseAccount { .. } => "close_account",
            Op::Transfer { .. } => "transfer",
            Op::Freeze { .. } => "freeze",
            Op::Unfreeze { .. } => "unfreeze",
            Op::AdmitBank { .. } => "admit_bank",
            Op::SuspendBank { .. } => "suspend_bank",
            Op::SetPhase { .. } => "set_phase",
            Op::SetLimits { .. } => "set_limits",
            Op::SetReportingThreshold { .. } => "set_reporting_threshold",
            Op::FreezeReceiveOnly { .. } => "freeze_receive_only",
            Op::SetControls { .. } => "set_controls",
            Op::FlagFraud { .. } => "flag_fraud",
            Op::ConfirmPayment { .. } => "confirm_payment",
            Op::ReleasePayment { .. } => "release_payment",
            Op::VoidPayment { .. } => "void_payment",
            Op::Collect { .. } => "collect",
            Op::DefinePurpose { .. } => "define_purpose",
            Op::PayTagged { .. } => "pay_tagged",
            Op::SetCategory { .. } => "set_category",
            Op::SetSweep { .. } => "set_sweep",
            Op::SetTier { .. } => "set_tier",
            Op::SetTierLimits { .. } => "set_tier_limits",
            Op::RotateKey { .. } => "rotate_key",
            Op::SetSignatories { .. } => "set_signatories",
        }
    }
}

/// A decoded operation body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpBody {
    pub chain_id: String,
    /// Whose key signs: the payer for a transfer, the bank or the central bank otherwise.
    pub signer: AccountId,
    /// Any value; it only makes otherwise identical operations distinct
    /// (paying the same invoice amount twice). Not a sequence number: many
    /// operations of one account can be in flight in any order.
    pub nonce: u64,
    /// The operation is valid in blocks with `timestamp_ms <= valid_until_ms`;
    /// bounded by the chain's `max_validity_ms` so the replay set stays bounded.
    pub valid_until_ms: u64,
    pub op: Op,
}

/// Checks a chain id: 1 to 32 bytes of `[a-z0-9-]`.
pub fn valid_chain_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CHAIN_ID_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl OpBody {
    /// The canonical bytes. Panics only on a programming error (strings over
    /// their limits); use [`OpBody::try_encode`] for untrusted input.
    pub fn encode(&self) -> Vec<u8> {
        self.try_encode().expect("operation body within limits")
    }

    /// The canonical bytes, or `Malformed` if a field is out of its limits.
    pub fn try_encode(&self) -> Result<Vec<u8>, Reason> {
        if !valid_chain_id(&self.chain_id) {
            return Err(Reason::Malformed);
        }
        let mut out = Vec::with_capacity(128);
        out.push(BODY_VERSION);
        out.push(self.chain_id.len() as u8);
        out.extend_from_slice(self.chain_id.as_bytes());
        out.push(self.op.tag());
        out.extend_from_slice(&self.signer.0);
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.valid_until_ms.to_be_bytes());
        match &self.op {
            Op::Issue { bank, amount } | Op::Redeem { bank, amount } => {
                out.extend_from_slice(&bank.0);
                out.extend_from_slice(&amount.to_be_bytes());
            }
            Op::OpenAccount { account, kind } => {
                out.extend_from_slice(&account.0);
                out.push(*kind as u8);
            }
            Op::CloseAccount { account } | Op::Freeze { account } | Op::Unfreeze { account } => {
                out.extend_from_slice(&account.0);
            }
            Op::Transfer { payee, amount, purpose } => {
                if purpose.len() > MAX_PURPOSE_BYTES {
                    return Err(Reason::Malformed);
                }
                out.extend_from_slice(&payee.0);
                out.extend_from_slice(&amount.to_be_bytes());
                out.extend_from_slice(&(purpose.len() as u16).to_be_bytes());
                out.extend_from_slice(purpose.as_bytes());
            }
            Op::AdmitBank { bank, name } => {
                if name.len() > MAX_NAME_BYTES {
                    return Err(Reason::Malformed);
                }
                out.extend_from_slice(&bank.0);
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
            }
            Op::SuspendBank { bank } => out.extend_from_slice(&bank.0),
            Op::SetPhase { phase } => out.push(*phase as u8),
            Op::SetLimits { kind, limits } => {
                out.push(*kind as u8);
                out.extend_from_slice(&limits.balance_cap.to_be_bytes());
                out.extend_from_slice(&limits.payment_cap.to_be_bytes());
                out.extend_from_slice(&limits.daily_outflow_cap.to_be_bytes());
            }
            Op::SetReportingThreshold { amount } => out.extend_from_slice(&amount.to_be_bytes()),
            Op::FreezeReceiveOnly { account } => out.extend_from_slice(&account.0),
            Op::SetControls {
                hold_threshold,
                hold_window_ms,
                protected_minimum,
            } => {
                out.extend_from_slice(&hold_threshold.to_be_bytes());
                out.extend_from_slice(&hold_window_ms.to_be_bytes());
                out.extend_from_slice(&protected_minimum.to_be_bytes());
            }
            Op::FlagFraud { account, flagged } => {
                out.extend_from_slice(&account.0);
                out.push(*flagged as u8);
            }
            Op::ConfirmPayment { payment } | Op::ReleasePayment { payment } | Op::VoidPayment { payment } => {
                out.extend_from_slice(&payment.0)
            }
            Op::Collect {
                debtor,
                claimant,
                amount,
            } => {
                out.extend_from_slice(&debtor.0);
                out.extend_from_slice(&claimant.0);
                out.extend_from_slice(&amount.to_be_bytes());
            }
            Op::DefinePurpose {
                purpose,
                issuer,
                unlock_at_ms,
                expires_at_ms,
                payees,
                categories,
            } => {
                if payees.len() > MAX_RULE_LIST || categories.len() > MAX_RULE_LIST {
                    return Err(Reason::Malformed);
                }
                out.extend_from_slice(&purpose.to_be_bytes());
                out.extend_from_slice(&issuer.0);
                out.extend_from_slice(&unlock_at_ms.to_be_bytes());
                out.extend_from_slice(&expires_at_ms.to_be_bytes());
                out.push(payees.len() as u8);
                for p in payees {
                    out.extend_from_slice(&p.0);
                }
                out.push(categories.len() as u8);
                for c in categories {
                    out.extend_from_slice(&c.to_be_bytes());
                }
            }
            Op::PayTagged { payee, amount, purpose } => {
                out.extend_from_slice(&payee.0);
                out.extend_from_slice(&amount.to_be_bytes());
                out.extend_from_slice(&purpose.to_be_bytes());
            }
            Op::SetCategory { account, category } => {
                out.extend_from_slice(&account.0);
                out.extend_from_slice(&category.to_be_bytes());
            }
            Op::SetSweep { account, enabled } => {
                out.extend_from_slice(&account.0);
                out.push(*enabled as u8);
            }
            Op::SetTier { account, tier } => {
                out.extend_from_slice(&account.0);
                out.push(*tier as u8);
            }
            Op::SetTierLimits { tier, limits } => {
                out.push(*tier as u8);
                out.extend_from_slice(&limits.balance_cap.to_be_bytes());
                out.extend_from_slice(&limits.payment_cap.to_be_bytes());
                out.extend_from_slice(&limits.daily_outflow_cap.to_be_bytes());
            }
            Op::RotateKey { account, new_key } => {
                out.extend_from_slice(&account.0);
                out.extend_from_slice(&new_key.0);
            }
            Op::SetSignatories {
                account,
                min_amount,
                required,
                keys,
            } => {
                if keys.len() > MAX_RULE_LIST {
                    return Err(Reason::Malformed);
                }
                out.extend_from_slice(&account.0);
                out.extend_from_slice(&min_amount.to_be_bytes());
                out.push(*required);
                out.push(keys.len() as u8);
                for k in keys {
                    out.extend_from_slice(&k.0);
                }
            }
        }
        debug_assert!(out.len() <= MAX_BODY_BYTES);
        Ok(out)
    }

    /// Strict decoding: any deviation from the canonical form is `Malformed`.
    pub fn decode(bytes: &[u8]) -> Result<OpBody, Reason> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(Reason::Malformed);
        }
        let mut r = Reader { b: bytes };
        if r.u8()? != BODY_VERSION {
            return Err(Reason::Malformed);
        }
        let chain_len = r.u8()? as usize;
        let chain_id = r.utf8(chain_len)?;
        if !valid_chain_id(&chain_id) {
            return Err(Reason::Malformed);
        }
        let tag = r.u8()?;
        let signer = r.id()?;
        let nonce = r.u64()?;
        let valid_until_ms = r.u64()?;
        let op = match tag {
            1 => Op::Issue {
                bank: r.id()?,
                amount: r.u64()?,
            },
            2 => Op::Redeem {
                bank: r.id()?,
                amount: r.u64()?,
            },
            3 => Op::OpenAccount {
                account: r.id()?,
                kind: AccountKind::from_u8(r.u8()?).ok_or(Reason::Malformed)?,
            },
            4 => Op::CloseAccount { account: r.id()? },
            5 => {
                let payee = r.id()?;
                let amount = r.u64()?;
                let len = r.u16()? as usize;
                if len > MAX_PURPOSE_BYTES {
                    return Err(Reason::Malformed);
                }
                Op::Transfer {
                    payee,
                    amount,
                    purpose: r.utf8(len)?,
                }
            }
            6 => Op::Freeze { account: r.id()? },
            7 => Op::Unfreeze { account: r.id()? },
            8 => {
                let bank = r.id()?;
                let len = r.u8()? as usize;
                if len > MAX_NAME_BYTES {
                    return Err(Reason::Malformed);
                }
                Op::AdmitBank {
                    bank,
                    name: r.utf8(len)?,
                }
            }
            9 => Op::SuspendBank { bank: r.id()? },
            10 => Op::SetPhase {
                phase: Phase::from_u8(r.u8()?).ok_or(Reason::Malformed)?,
            },
            11 => Op::SetLimits {
                kind: AccountKind::from_u8(r.u8()?).ok_or(Reason::Malformed)?,
                limits: Limits {
                    balance_cap: r.u64()?,
                    payment_cap: r.u64()?,
                    daily_outflow_cap: r.u64()?,
                },
            },
            12 => Op::SetReportingThreshold { amount: r.u64()? },
            13 => Op::FreezeReceiveOnly { account: r.id()? },
            14 => Op::SetControls {
                hold_threshold: r.u64()?,
                hold_window_ms: r.u64()?,
                protected_minimum: r.u64()?,
            },
            15 => Op::FlagFraud {
                account: r.id()?,
                flagged: r.bool()?,
            },
            16 => Op::ConfirmPayment { payment: r.tx()? },
            17 => Op::ReleasePayment { payment: r.tx()? },
            18 => Op::VoidPayment { payment: r.tx()? },
            19 => Op::Collect {
                debtor: r.id()?,
                claimant: r.id()?,
                amount: r.u64()?,
            },
            20 => {
                let purpose = r.u32()?;
                let issuer = r.id()?;
                let unlock_at_ms = r.u64()?;
                let expires_at_ms = r.u64()?;
                let n = r.list_len()?;
                let payees = (0..n).map(|_| r.id()).collect::<Result<Vec<_>, _>>()?;
                let n = r.list_len()?;
                let categories = (0..n).map(|_| r.u16()).collect::<Result<Vec<_>, _>>()?;
                Op::DefinePurpose {
                    purpose,
                    issuer,
                    unlock_at_ms,
                    expires_at_ms,
                    payees,
                    categories,
                }
            }
            21 => Op::PayTagged {
                payee: r.id()?,
                amount: r.u64()?,
                purpose: r.u32()?,
            },
            22 => Op::SetCategory {
                account: r.id()?,
                category: r.u16()?,
            },
            23 => Op::SetSweep {
                account: r.id()?,
                enabled: r.bool()?,
            },
            24 => Op::SetTier {
                account: r.id()?,
                tier: Tier::from_u8(r.u8()?).ok_or(Reason::Malformed)?,
            },
            25 => Op::SetTierLimits {
                tier: Tier::from_u8(r.u8()?).ok_or(Reason::Malformed)?,
                limits: Limits {
                    balance_cap: r.u64()?,
                    payment_cap: r.u64()?,
                    daily_outflow_cap: r.u64()?,
                },
            },
            26 => Op::RotateKey {
                account: r.id()?,
                new_key: r.id()?,
            },
            27 => {
                let account = r.id()?;
                let min_amount = r.u64()?;
                let required = r.u8()?;
                let n = r.list_len()?;
                let keys = (0..n).map(|_| r.id()).collect::<Result<Vec<_>, _>>()?;
                Op::SetSignatories {
                    account,
                    min_amount,
                    required,
                    keys,
                }
            }
            _ => return Err(Reason::Malformed),
        };
        if !r.b.is_empty() {
            return Err(Reason::Malformed);
        }
        Ok(OpBody {
            chain_id,
            signer,
            nonce,
            valid_until_ms,
            op,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Reason> {
        if self.b.len() < n {
            return Err(Reason::Malformed);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, Reason> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Reason> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, Reason> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, Reason> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    /// A boolean is exactly 0 or 1 (one encoding per value).
    fn bool(&mut self) -> Result<bool, Reason> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Reason::Malformed),
        }
    }
    /// A list length byte, at most [`MAX_RULE_LIST`].
    fn list_len(&mut self) -> Result<usize, Reason> {
        let n = self.u8()? as usize;
        if n > MAX_RULE_LIST {
            return Err(Reason::Malformed);
        }
        Ok(n)
    }
    fn tx(&mut self) -> Result<TxId, Reason> {
        Ok(TxId(self.take(32)?.try_into().unwrap()))
    }
    fn id(&mut self) -> Result<AccountId, Reason> {
        Ok(AccountId(self.take(32)?.try_into().unwrap()))
    }
    fn utf8(&mut self, n: usize) -> Result<String, Reason> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| Reason::Malformed)
    }
}

/// The message an ed25519 key signs: `OP_DOMAIN || body`.
pub fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(OP_DOMAIN.len() + body.len());
    m.extend_from_slice(OP_DOMAIN);
    m.extend_from_slice(body);
    m
}

/// `SHA-256(OP_DOMAIN || body)`: the operation's identity.
pub fn tx_id(body: &[u8]) -> TxId {
    let mut h = Sha256::new();
    h.update(OP_DOMAIN);
    h.update(body);
    TxId(h.finalize().into())
}

/// A decoded operation with its exact bytes and signature, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedOp {
    pub body: OpBody,
    /// The canonical body bytes as received (they are what was signed).
    pub body_bytes: Vec<u8>,
    pub signature: [u8; SIGNATURE_BYTES],
    pub tx_id: TxId,
}

impl SignedOp {
    /// Decodes untrusted bytes. Cheap: no signature work happens here.
    pub fn decode(body_bytes: &[u8], signature: &[u8]) -> Result<SignedOp, Reason> {
        let signature: [u8; SIGNATURE_BYTES] = signature.try_into().map_err(|_| Reason::BadSignature)?;
        let body = OpBody::decode(body_bytes)?;
        Ok(SignedOp {
            body,
            body_bytes: body_bytes.to_vec(),
            signature,
            tx_id: tx_id(body_bytes),
        })
    }

    /// Signs a body with a dalek signing key (clients, tests and tools).
    pub fn sign(body: OpBody, key: &ed25519_dalek::SigningKey) -> SignedOp {
        use ed25519_dalek::Signer;
        let body_bytes = body.encode();
        let signature = key.sign(&signing_message(&body_bytes)).to_bytes();
        SignedOp {
            tx_id: tx_id(&body_bytes),
            body,
            body_bytes,
            signature,
        }
    }

    /// Storage form: `u16 body_len || body || signature`.
    pub fn to_stored(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 + self.body_bytes.len() + SIGNATURE_BYTES);
        self.write_stored(&mut v);
        v
    }

    /// [`SignedOp::to_stored`], appended to `out`.
    pub fn write_stored(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.body_bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.body_bytes);
        out.extend_from_slice(&self.signature);
    }

    /// Inverse of [`SignedOp::to_stored`]; returns the rest of the slice.
    pub fn from_stored(b: &[u8]) -> Result<(SignedOp, &[u8]), Reason> {
        if b.len() < 2 {
            return Err(Reason::Malformed);
        }
        let len = u16::from_be_bytes([b[0], b[1]]) as usize;
        if b.len() < 2 + len + SIGNATURE_BYTES {
            return Err(Reason::Malformed);
        }
        let op = SignedOp::decode(&b[2..2 + len], &b[2 + len..2 + len + SIGNATURE_BYTES])?;
        Ok((op, &b[2 + len + SIGNATURE_BYTES..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_ops() -> Vec<Op> {
        let a = AccountId([7; 32]);
        vec![
            Op::Issue { bank: a, amount: 1 },
            Op::Redeem {
                bank: a,
                amount: u64::MAX,
            },
            Op::OpenAccount {
                account: a,
                kind: AccountKind::Retail,
            },
            Op::CloseAccount { account: a },
            Op::Transfer {
                payee: a,
                amount: 12345,
                purpose: "Счёт №42".into(),
            },
            Op::Freeze { account: a },
            Op::Unfreeze { account: a },
            Op::AdmitBank {
                bank: a,
                name: "Bank".into(),
            },
            Op::SuspendBank { bank: a },
            Op::SetPhase { phase: Phase::Retail },
            Op::SetLimits {
                kind: AccountKind::Business,
                limits: Limits {
                    balance_cap: 1,
                    payment_cap: 2,
                    daily_outflow_cap: 3,
                },
            },
            Op::SetReportingThreshold { amount: 600_000_00 },
            Op::FreezeReceiveOnly { account: a },
            Op::SetControls {
                hold_threshold: 100_000_00,
                hold_window_ms: 172_800_000,
                protected_minimum: 1_000_00,
            },
            Op::FlagFraud {
                account: a,
                flagged: true,
            },
            Op::ConfirmPayment { payment: TxId([5; 32]) },
            Op::ReleasePayment { payment: TxId([5; 32]) },
            Op::VoidPayment { payment: TxId([5; 32]) },
            Op::Collect {
                debtor: a,
                claimant: AccountId([8; 32]),
                amount: 77,
            },
            Op::DefinePurpose {
                purpose: 7,
                issuer: a,
                unlock_at_ms: 1,
                expires_at_ms: 2,
                payees: vec![AccountId([9; 32]); MAX_RULE_LIST],
                categories: vec![5411; MAX_RULE_LIST],
            },
            Op::DefinePurpose {
                purpose: u32::MAX,
                issuer: a,
                unlock_at_ms: 0,
                expires_at_ms: u64::MAX,
                payees: vec![],
                categories: vec![5912],
            },
            Op::PayTagged {
                payee: a,
                amount: 10,
                purpose: 7,
            },
            Op::SetCategory {
                account: a,
                category: 5411,
            },
            Op::SetSweep {
                account: a,
                enabled: true,
            },
            Op::SetTier {
                account: a,
                tier: Tier::Anonymous,
            },
            Op::SetTierLimits {
                tier: Tier::Simplified,
                limits: Limits {
                    balance_cap: 4,
                    payment_cap: 5,
                    daily_outflow_cap: 6,
                },
            },
            Op::RotateKey {
                account: a,
                new_key: AccountId([4; 32]),
            },
            Op::SetSignatories {
                account: a,
                min_amount: 1_000_000_00,
                required: 2,
                keys: vec![AccountId([4; 32]); MAX_RULE_LIST],
            },
        ]
    }

    #[test]
    fn longest_body_fits_the_bound() {
        let longest = sample_ops()
            .into_iter()
            .map(|op| {
                OpBody {
                    chain_id: "c".repeat(MAX_CHAIN_ID_BYTES),
                    signer: AccountId([1; 32]),
                    nonce: 0,
                    valid_until_ms: 0,
                    op,
                }
                .encode()
                .len()
            })
            .max()
            .unwrap();
        assert_eq!(longest, MAX_BODY_BYTES);
    }

    #[test]
    fn lists_and_flags_have_one_encoding() {
        let body = OpBody {
            chain_id: "c".into(),
            signer: AccountId([1; 32]),
            nonce: 0,
            valid_until_ms: 0,
            op: Op::SetSweep {
                account: AccountId([2; 32]),
                enabled: true,
            },
        };
        let mut b = body.encode();
        *b.last_mut().unwrap() = 2; // a boolean is 0 or 1
        assert_eq!(OpBody::decode(&b), Err(Reason::Malformed));
        let body = OpBody {
            op: Op::SetSignatories {
                account: AccountId([2; 32]),
                min_amount: 1,
                required: 1,
                keys: vec![AccountId([3; 32]); MAX_RULE_LIST + 1],
            },
            ..body
        };
        assert_eq!(body.try_encode(), Err(Reason::Malformed));
    }

    #[test]
    fn every_op_roundtrips_and_is_canonical() {
        for op in sample_ops() {
            let body = OpBody {
                chain_id: "ruble-test".into(),
                signer: AccountId([1; 32]),
                nonce: 42,
                valid_until_ms: 1_700_000_000_000,
                op,
            };
            let bytes = body.encode();
            assert_eq!(OpBody::decode(&bytes).unwrap(), body);
            // Any truncation and any trailing byte are refused.
            for cut in 0..bytes.len() {
                assert_eq!(OpBody::decode(&bytes[..cut]), Err(Reason::Malformed), "cut {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(OpBody::decode(&longer), Err(Reason::Malformed));
        }
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let body = OpBody {
            chain_id: "c".into(),
            signer: AccountId([1; 32]),
            nonce: 0,
            valid_until_ms: 0,
            op: Op::SetPhase { phase: Phase::Retail },
        };
        let mut b = body.encode();
        *b.last_mut().unwrap() = 3; // no such phase
        assert_eq!(OpBody::decode(&b), Err(Reason::Malformed));
        let mut b = body.encode();
        b[0] = 2; // unknown version
        assert_eq!(OpBody::decode(&b), Err(Reason::Malformed));
        let mut b = body.encode();
        b[2] = b'A'; // chain id must be lower-case
        assert_eq!(OpBody::decode(&b), Err(Reason::Malformed));
        let mut b = body.encode();
        b[3] = 99; // unknown kind tag
        assert_eq!(OpBody::decode(&b), Err(Reason::Malformed));
        let long = OpBody {
            op: Op::Transfer {
                payee: AccountId([2; 32]),
                amount: 1,
                purpose: "x".repeat(MAX_PURPOSE_BYTES + 1),
            },
            ..body
        };
        assert_eq!(long.try_encode(), Err(Reason::Malformed));
    }

    #[test]
    fn invalid_utf8_purpose_is_refused() {
        let body = OpBody {
            chain_id: "c".into(),
            signer: AccountId([1; 32]),
            nonce: 0,
            valid_until_ms: 0,
            op: Op::Transfer {
                payee: AccountId([2; 32]),
                amount: 1,
                purpose: "ab".into(),
            },
        };
        let mut b = body.encode();
        let n = b.len();
        b[n - 1] = 0xff;
        assert_eq!(OpBody::decode(&b), Err(Reason::Malformed));
    }

    #[test]
    fn stored_form_roundtrips() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let op = SignedOp::sign(
            OpBody {
                chain_id: "c".into(),
                signer: AccountId(key.verifying_key().to_bytes()),
                nonce: 1,
                valid_until_ms: 2,
                op: Op::Freeze {
                    account: AccountId([3; 32]),
                },
            },
            &key,
        );
        let mut stored = op.to_stored();
        stored.push(0xAA);
        let (back, rest) = SignedOp::from_stored(&stored).unwrap();
        assert_eq!(back, op);
        assert_eq!(rest, &[0xAA]);
    }
}
