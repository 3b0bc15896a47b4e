//! Domain primitives: identifiers, account kinds and statuses, rollout phase, limits.
//!
//! Money is always an integer number of kopecks in a `u64`; there is no floating
//! point anywhere near a balance.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Kopecks, the only unit of money in the ledger (1 ruble = 100 kopecks).
pub type Kopecks = u64;

/// An account is named by its holder's ed25519 public key (32 bytes).
///
/// Using the key as the identifier lets the hot path verify a transfer's
/// signature before it looks at any state: the payer id *is* the verifying key.
/// One key holds at most one account.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AccountId(pub [u8; 32]);

impl AccountId {
    /// Lower-case hex, 64 characters: the canonical text form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)?;
        Ok(AccountId(out))
    }

    /// Accepts exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(AccountId)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for AccountId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AccountId::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The identity of an operation: SHA-256 of its signing message (domain prefix
/// and canonical body, see `docs/signing.md`). It does not cover the signature,
/// so a re-encoded signature cannot make "another" operation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TxId(pub [u8; 32]);

/// Byte order (the order of the keys in RocksDB), compared eight bytes at a
/// time. The derived order on `[u8; 32]` calls `memcmp` for every
/// comparison: sorting a block's ~8k touched accounts and a checkpoint's
/// ~100k account and history records, that was 2-3% of the ledger's CPU at
/// 1M accounts.
macro_rules! byte_order {
    ($t:ty) => {
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                for (a, b) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
                    let a = u64::from_be_bytes(a.try_into().expect("eight bytes"));
                    let b = u64::from_be_bytes(b.try_into().expect("eight bytes"));
                    if a != b {
                        return a.cmp(&b);
                    }
                }
                std::cmp::Ordering::Equal
            }
        }

        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}
byte_order!(AccountId);
byte_order!(TxId);

impl TxId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)?;
        Ok(TxId(out))
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(TxId)
    }
}

impl Serialize for TxId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TxId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TxId::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A 32-byte SHA-256 digest (block hashes, roots, state hashes).
pub type Hash32 = [u8; 32];

/// What an account is for. The numbering matches `ruble.v1.AccountKind`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum AccountKind {
    /// The issuer's own account; its balance is always zero (issuance mints
    /// straight into a settlement account).
    CentralBank = 1,
    /// A commercial bank's account at the central bank.
    Settlement = 2,
    /// A business client's wallet (open from the first rollout phase).
    Business = 3,
    /// A member of the public's wallet (open only in the retail phase).
    Retail = 4,
}

impl AccountKind {
    pub const ALL: [AccountKind; 4] = [
        AccountKind::CentralBank,
        AccountKind::Settlement,
        AccountKind::Business,
        AccountKind::Retail,
    ];
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => AccountKind::CentralBank,
            2 => AccountKind::Settlement,
            3 => AccountKind::Business,
            4 => AccountKind::Retail,
            _ => return None,
        })
    }
    /// Index into per-kind tables.
    pub fn index(self) -> usize {
        self as usize - 1
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::CentralBank => "central_bank",
            AccountKind::Settlement => "settlement",
            AccountKind::Business => "business",
            AccountKind::Retail => "retail",
        }
    }
}

/// Whether an account may move money.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum AccountStatus {
    Active = 1,
    /// Neither pays nor receives until unfrozen.
    Frozen = 2,
    /// Terminal; the id is never reused.
    Closed = 3,
    /// Receive-only freeze: credits arrive, nothing leaves (a court order
    /// or an investigation that must not starve the account of incoming funds).
    ReceiveOnly = 4,
}

impl AccountStatus {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => AccountStatus::Active,
            2 => AccountStatus::Frozen,
            3 => AccountStatus::Closed,
            4 => AccountStatus::ReceiveOnly,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
            AccountStatus::ReceiveOnly => "receive_only",
        }
    }
}

/// Rollout phase; it only moves forward.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Phase {
    /// Business wallets only.
    Business = 1,
    /// Retail wallets admitted too.
    Retail = 2,
}

impl Phase {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Phase::Business,
            2 => Phase::Retail,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Business => "business",
            Phase::Retail => "retail",
        }
    }
}

/// Identification level of a retail wallet. Each level has its own limits:
/// `Full` uses the retail kind's limits, the others their own
/// (`SetTierLimits`). Business wallets have no tier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Tier {
    /// No identification: the tightest caps.
    Anonymous = 1,
    /// Simplified identification (for example through a public-services login).
    Simplified = 2,
    /// Full in-person identification; the default of every wallet.
    Full = 3,
}

impl Tier {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Tier::Anonymous,
            2 => Tier::Simplified,
            3 => Tier::Full,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Anonymous => "anonymous",
            Tier::Simplified => "simplified",
            Tier::Full => "full",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Tier::Anonymous, Tier::Simplified, Tier::Full]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Per-kind limits, all in kopecks. `u64::MAX` means unlimited.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Limits {
    /// Largest balance an account of this kind may hold after a credit.
    pub balance_cap: Kopecks,
    /// Largest single outgoing payment.
    pub payment_cap: Kopecks,
    /// Largest sum of outgoing payments in one UTC day (by block timestamp).
    pub daily_outflow_cap: Kopecks,
}

impl Limits {
    pub const UNLIMITED: Limits = Limits {
        balance_cap: u64::MAX,
        payment_cap: u64::MAX,
        daily_outflow_cap: u64::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::UNLIMITED
    }
}

/// Milliseconds in a UTC day; daily outflow resets when
/// `block_timestamp_ms / MS_PER_DAY` changes.
pub const MS_PER_DAY: u64 = 86_400_000;

/// The highest block height a cursor can name (a cursor keeps the height in
/// its upper 32 bits). A caller's height above it names no block, ever.
pub const MAX_HEIGHT: u64 = u32::MAX as u64;

/// Position of an operation in the chain: `height << 32 | index`.
/// Strictly increasing along the chain, so it serves as a resumable cursor.
/// `height` is at most [`MAX_HEIGHT`]: check a caller's height first.
pub fn cursor_of(height: u64, index: u32) -> u64 {
    debug_assert!(height <= MAX_HEIGHT);
    (height << 32) | index as u64
}

/// Inverse of [`cursor_of`].
pub fn cursor_parts(cursor: u64) -> (u64, u32) {
    (cursor >> 32, cursor as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Two ids that agree on a random prefix, so that every eight-byte
    /// chunk gets to decide some comparisons (random ids would differ in
    /// the first byte).
    fn pair() -> impl Strategy<Value = ([u8; 32], [u8; 32])> {
        (any::<[u8; 32]>(), any::<[u8; 32]>(), 0usize..=32).prop_map(|(a, mut b, shared)| {
            b[..shared].copy_from_slice(&a[..shared]);
            (a, b)
        })
    }

    proptest! {
        #[test]
        fn ids_order_as_their_bytes((a, b) in pair()) {
            prop_assert_eq!(AccountId(a).cmp(&AccountId(b)), a.cmp(&b));
            prop_assert_eq!(TxId(a).cmp(&TxId(b)), a.cmp(&b));
            prop_assert_eq!(AccountId(a).partial_cmp(&AccountId(b)), Some(a.cmp(&b)));
        }
    }
}
