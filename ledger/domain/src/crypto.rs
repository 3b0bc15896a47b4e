//! The one signature rule, and the only place that can mark an operation as
//! verified.
//!
//! # The rule: ZIP-215
//! A signature `(R, s)` by key `A` on message `M` is valid iff
//! - `A` and `R` are encodings of curve points (non-canonical encodings of
//!   the y-coordinate are accepted, as ZIP-215 says),
//! - `s < ℓ` (canonical scalar),
//! - `[8][s]B = [8]R + [8][k]A` with `k = SHA-512(R_bytes ‖ A_bytes ‖ M) mod ℓ`.
//!
//! It is the rule of ed25519-zebra, used here as the single-signature
//! reference. The cofactored equation makes batch verification agree with
//! single verification on every input (ed25519-dalek's cofactorless `verify`
//! can disagree with its own `verify_batch`, a consensus bug in a replayed
//! ledger). Our batch path evaluates the same cofactored equation over cached,
//! already-decompressed keys; `tests/signature_rule.rs` checks batch == single
//! on the 12 public edge cases and on random adversarial signatures.
//!
//! # Keys accepted for accounts
//! Verification accepts any point, but an account can only be opened for a
//! canonical, torsion-free (so not small-order, not mixed-order) key: see
//! [`check_account_key`]. The all-zero-ish small-order keys that let anyone
//! forge signatures can therefore never own money.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use parking_lot::RwLock;
use rand::RngCore;
use sha2::{Digest, Sha512};

use crate::codec::{SignedOp, OP_DOMAIN};
use crate::reason::Reason;

/// A value whose signature has been checked under the ZIP-215 rule. Only this
/// module can build one, so the state machine cannot be handed an unchecked
/// operation by mistake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The verdict on one operation: verified, or handed back with the reason.
pub type VerifyResult = Result<Verified<SignedOp>, (SignedOp, Reason)>;

/// Refuses keys that must never own an account: non-canonical encodings,
/// points not on the curve, small-order and mixed-order points.
pub fn check_account_key(pk: &[u8; 32]) -> Result<(), Reason> {
    let p = CompressedEdwardsY(*pk).decompress().ok_or(Reason::UnsafeKey)?;
    if p.compress().to_bytes() != *pk || p.is_small_order() || !p.is_torsion_free() {
        return Err(Reason::UnsafeKey);
    }
    Ok(())
}

/// Single-signature check under the ZIP-215 rule (ed25519-zebra).
pub fn verify_single(pk: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(vk) = ed25519_zebra::VerificationKey::try_from(*pk) else {
        return false;
    };
    vk.verify(&ed25519_zebra::Signature::from(*sig), msg).is_ok()
}

/// A decompressed public key, computed once and shared.
#[derive(Clone, Debug)]
pub struct CachedKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

/// Bounded cache of decompressed public keys. Decompression costs about a
/// quarter of a batched verification, and payers repeat, so it pays off.
/// When full it is cleared wholesale: simple, bounded, and a miss is only a
/// recomputation.
pub struct KeyCache {
    map: RwLock<HashMap<[u8; 32], Option<Arc<CachedKey>>>>,
    capacity: usize,
}

impl KeyCache {
    pub fn new(capacity: usize) -> Self {
        KeyCache {
            map: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The decompressed key, or `None` if the bytes are not a curve point.
    pub fn get(&self, pk: &[u8; 32]) -> Option<Arc<CachedKey>> {
        if let Some(hit) = self.map.read().get(pk) {
            return hit.clone();
        }
        let entry = CompressedEdwardsY(*pk)
            .decompress()
            .map(|point| Arc::new(CachedKey { bytes: *pk, point }));
        let mut map = self.map.write();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(*pk, entry.clone());
        entry
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache::new(1 << 20)
    }
}

/// One signature to check in a batch.
#[derive(Clone, Copy)]
pub struct BatchItem<'a> {
    pub pk: &'a [u8; 32],
    pub msg_prefix: &'a [u8],
    pub msg: &'a [u8],
    pub sig: &'a [u8; 64],
}

fn challenge(r: &[u8], a: &[u8; 32], prefix: &[u8], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(prefix);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// The cofactored batch equation
/// `[8]( -Σ z_i s_i B + Σ z_i R_i + Σ z_i k_i A_i ) = 0` with random 128-bit `z_i`.
/// Accepts iff (up to probability 2^-128) every item satisfies the single rule.
fn batch_equation(items: &[BatchItem<'_>], cache: &KeyCache) -> bool {
    let mut rng = rand::thread_rng();
    let n = items.len();
    let mut scalars = Vec::with_capacity(2 * n + 1);
    let mut points = Vec::with_capacity(2 * n + 1);
    let mut b_coeff = Scalar::ZERO;
    scalars.push(Scalar::ZERO); // placeholder for B
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    for it in items {
        let Some(key) = cache.get(it.pk) else {
            return false;
        };
        let r_bytes: [u8; 32] = it.sig[..32].try_into().unwrap();
        let s_bytes: [u8; 32] = it.sig[32..].try_into().unwrap();
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
            return false;
        };
        let k = challenge(&r_bytes, &key.bytes, it.msg_prefix, it.msg);
        let mut zb = [0u8; 16];
        rng.fill_bytes(&mut zb);
        let z = Scalar::from(u128::from_le_bytes(zb));
        b_coeff -= z * s;
        scalars.push(z);
        points.push(r);
        scalars.push(z * k);
        points.push(key.point);
    }
    scalars[0] = b_coeff;
    EdwardsPoint::vartime_multiscalar_mul(scalars.iter(), points.iter())
        .mul_by_cofactor()
        .is_identity()
}

/// Verifies many signatures: one batch equation, and on failure a single
/// check of each so that only the bad ones are refused. Returns one verdict
/// per item, identical to [`verify_single`] on each.
pub fn verify_batch(items: &[BatchItem<'_>], cache: &KeyCache) -> Vec<bool> {
    if items.is_empty() {
        return Vec::new();
    }
    if batch_equation(items, cache) {
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|it| {
            // Single fallback through the same cached equation with n = 1.
            batch_equation(std::slice::from_ref(it), cache)
        })
        .collect()
}

/// Verifies one decoded operation.
pub fn verify_op(op: SignedOp, cache: &KeyCache) -> Result<Verified<SignedOp>, (SignedOp, Reason)> {
    let ok = verify_batch(
        &[BatchItem {
            pk: &op.body.signer.0,
            msg_prefix: OP_DOMAIN,
            msg: &op.body_bytes,
            sig: &op.signature,
        }],
        cache,
    )[0];
    if ok {
        Ok(Verified(op))
    } else {
        Err((op, Reason::BadSignature))
    }
}

/// Verifies a chunk of operations with one batch equation (plus single
/// fallback). The order of the result matches the input.
pub fn verify_ops(ops: Vec<SignedOp>, cache: &KeyCache) -> Vec<Result<Verified<SignedOp>, (SignedOp, Reason)>> {
    let verdicts = {
        let items: Vec<BatchItem<'_>> = ops
            .iter()
            .map(|op| BatchItem {
                pk: &op.body.signer.0,
                msg_prefix: OP_DOMAIN,
                msg: &op.body_bytes,
                sig: &op.signature,
            })
            .collect();
        verify_batch(&items, cache)
    };
    ops.into_iter()
        .zip(verdicts)
        .map(|(op, ok)| {
            if ok {
                Ok(Verified(op))
            } else {
                Err((op, Reason::BadSignature))
            }
        })
        .collect()
}

/// Verifies operations in parallel on all cores (rayon), in chunks of
/// `chunk` signatures (64 to 1024 is the useful range).
pub fn verify_ops_parallel(
    ops: Vec<SignedOp>,
    cache: &KeyCache,
    chunk: usize,
) -> Vec<Result<Verified<SignedOp>, (SignedOp, Reason)>> {
    use rayon::prelude::*;
    let chunk = chunk.clamp(1, 4096);
    if ops.len() <= chunk {
        return verify_ops(ops, cache);
    }
    let mut chunks: Vec<Vec<SignedOp>> = Vec::with_capacity(ops.len() / chunk + 1);
    let mut it = ops.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(chunk).collect());
    }
    chunks
        .into_par_iter()
        .map(|c| verify_ops(c, cache))
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect()
}

/// For the auditor and tests: re-verification of an operation already in the
/// chain, under the same rule.
pub fn reverify(op: &SignedOp, cache: &KeyCache) -> bool {
    verify_op(op.clone(), cache).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honest_key_is_accepted_and_identity_is_refused() {
        let k = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        assert_eq!(check_account_key(&k.verifying_key().to_bytes()), Ok(()));
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(check_account_key(&identity), Err(Reason::UnsafeKey));
        assert_eq!(check_account_key(&[0u8; 32]), Err(Reason::UnsafeKey));
    }

    #[test]
    fn key_cache_is_bounded() {
        let cache = KeyCache::new(4);
        for i in 0..10u8 {
            let k = ed25519_dalek::SigningKey::from_bytes(&[i; 32]);
            assert!(cache.get(&k.verifying_key().to_bytes()).is_some());
            assert!(cache.len() <= 4);
        }
    }
}
