//! Signed read requests: a wallet proves it holds the account's key and that
//! the request is fresh, so nobody else can read its balance or history.
//!
//! Signed message (see `docs/signing.md`):
//! `QUERY_DOMAIN ‖ u8 len ‖ chain_id ‖ u8 len ‖ method ‖ account (32) ‖
//!  issued_at_ms (u64 BE) ‖ nonce (u64 BE) ‖ u16 len ‖ params`.
//! `params` binds the request's arguments (for `GetHistory`: cursor u64 BE ‖
//! limit u32 BE; for `WatchIncoming`: from_cursor u64 BE; otherwise empty).
//!
//! [`QueryGuard`] enforces freshness (issued within ±`window_ms` of the node's
//! clock) and single use (an `(account, nonce)` pair is accepted once). It is
//! bounded: when full it refuses new queries rather than grow.

use std::collections::{BTreeSet, HashSet};

use crate::crypto::verify_single;
use crate::types::AccountId;

pub const QUERY_DOMAIN: &[u8] = b"ruble-ledger/query/v1\0";

/// Method names bound into the signature.
pub mod method {
    pub const GET_ACCOUNT: &str = "GetAccount";
    pub const GET_HISTORY: &str = "GetHistory";
    pub const WATCH_INCOMING: &str = "WatchIncoming";
}

/// A read request before or after signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub chain_id: String,
    pub method: String,
    pub account: AccountId,
    pub issued_at_ms: u64,
    pub nonce: u64,
    pub params: Vec<u8>,
}

impl Query {
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(QUERY_DOMAIN.len() + 96 + self.params.len());
        m.extend_from_slice(QUERY_DOMAIN);
        m.push(self.chain_id.len() as u8);
        m.extend_from_slice(self.chain_id.as_bytes());
        m.push(self.method.len() as u8);
        m.extend_from_slice(self.method.as_bytes());
        m.extend_from_slice(&self.account.0);
        m.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        m.extend_from_slice(&self.nonce.to_be_bytes());
        m.extend_from_slice(&(self.params.len() as u16).to_be_bytes());
        m.extend_from_slice(&self.params);
        m
    }

    pub fn sign(&self, key: &ed25519_dalek::SigningKey) -> [u8; 64] {
        use ed25519_dalek::Signer;
        key.sign(&self.message()).to_bytes()
    }

    /// ZIP-215 check against the account key (the account id is the key).
    pub fn verify(&self, signature: &[u8]) -> bool {
        self.verify_by(&self.account, signature)
    }

    /// Whether `signature` verifies under `key`: the account's controlling
    /// key, which after a rotation is not the account id.
    pub fn verify_by(&self, key: &AccountId, signature: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        verify_single(&key.0, &self.message(), &sig)
    }
}

/// `params` for `GetHistory`.
pub fn history_params(cursor: u64, limit: u32) -> Vec<u8> {
    let mut p = cursor.to_be_bytes().to_vec();
    p.extend_from_slice(&limit.to_be_bytes());
    p
}

/// `params` for `WatchIncoming`.
pub fn watch_params(from_cursor: u64) -> Vec<u8> {
    from_cursor.to_be_bytes().to_vec()
}

/// Why a signed query was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query signature does not verify")]
    BadSignature,
    #[error("the query is too old or from the future")]
    Stale,
    #[error("this query was already used")]
    Reused,
    #[error("too many recent queries; retry shortly")]
    Overloaded,
}

impl QueryError {
    pub fn code(self) -> &'static str {
        match self {
            QueryError::BadSignature => "BAD_SIGNATURE",
            QueryError::Stale => "STALE_QUERY",
            QueryError::Reused => "QUERY_REUSED",
            QueryError::Overloaded => "OVERLOADED",
        }
    }
}

/// Freshness and single-use check for signed queries.
pub struct QueryGuard {
    window_ms: u64,
    capacity: usize,
    seen: HashSet<(AccountId, u64)>,
    by_expiry: BTreeSet<(u64, AccountId, u64)>,
}

impl QueryGuard {
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        QueryGuard {
            window_ms,
            capacity,
            seen: HashSet::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// Checks signature, freshness and reuse at time `now_ms`; records the query.
    pub fn check(&mut self, now_ms: u64, q: &Query, signature: &[u8]) -> Result<(), QueryError> {
        self.check_by(now_ms, q, &q.account, signature)
    }

    /// [`QueryGuard::check`] with the signature checked under `key`, the
    /// key that controls the account now (its id, unless rotated).
    pub fn check_by(&mut self, now_ms: u64, q: &Query, key: &AccountId, signature: &[u8]) -> Result<(), QueryError> {
        if q.issued_at_ms.abs_diff(now_ms) > self.window_ms {
            return Err(QueryError::Stale);
        }
        if !q.verify_by(key, signature) {
            return Err(QueryError::BadSignature);
        }
        while let Some(&(exp, a, n)) = self.by_expiry.first() {
            if exp >= now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&(a, n));
        }
        if self.seen.contains(&(q.account, q.nonce)) {
            return Err(QueryError::Reused);
        }
        if self.seen.len() >= self.capacity {
            return Err(QueryError::Overloaded);
        }
        self.seen.insert((q.account, q.nonce));
        // Keep it until it could no longer pass the freshness check.
        self.by_expiry
            .insert((q.issued_at_ms.saturating_add(self.window_ms), q.account, q.nonce));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(key: &ed25519_dalek::SigningKey, at: u64, nonce: u64) -> Query {
        Query {
            chain_id: "c".into(),
            method: method::GET_ACCOUNT.into(),
            account: AccountId(key.verifying_key().to_bytes()),
            issued_at_ms: at,
            nonce,
            params: vec![],
        }
    }

    #[test]
    fn fresh_signed_query_passes_once() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let mut g = QueryGuard::new(30_000, 100);
        let query = q(&key, 1_000_000, 1);
        let sig = query.sign(&key);
        assert_eq!(g.check(1_000_500, &query, &sig), Ok(()));
        assert_eq!(g.check(1_000_600, &query, &sig), Err(QueryError::Reused));
        assert_eq!(g.check(1_100_000, &query, &sig), Err(QueryError::Stale));
        let other = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let forged = q(&key, 1_000_000, 2);
        assert_eq!(
            g.check(1_000_000, &forged, &forged.sign(&other)),
            Err(QueryError::BadSignature)
        );
        // Changing a bound parameter breaks the signature.
        let mut tampered = q(&key, 1_000_000, 3);
        let sig = tampered.sign(&key);
        tampered.method = method::GET_HISTORY.into();
        assert_eq!(g.check(1_000_000, &tampered, &sig), Err(QueryError::BadSignature));
    }

    #[test]
    fn guard_is_bounded() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let mut g = QueryGuard::new(30_000, 2);
        for n in 0..2 {
            let query = q(&key, 0, n);
            g.check(0, &query, &query.sign(&key)).unwrap();
        }
        let query = q(&key, 0, 9);
        assert_eq!(g.check(0, &query, &query.sign(&key)), Err(QueryError::Overloaded));
        // After the window the old entries expire and room returns.
        let query = q(&key, 40_000, 9);
        assert_eq!(g.check(40_000, &query, &query.sign(&key)), Ok(()));
    }
}
