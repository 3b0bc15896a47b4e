//! The one signature rule (ZIP-215): single and batch verification accept
//! exactly the same signatures, on the 12 public edge cases and on random
//! adversarial ones; unsafe keys can never open an account.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use rand::{Rng, RngCore, SeedableRng};
use ruble_ledger::crypto::{check_account_key, verify_batch, verify_single, BatchItem, KeyCache};
use sha2::{Digest, Sha512};

struct Case {
    msg: Vec<u8>,
    pk: [u8; 32],
    sig: [u8; 64],
}

fn edge_cases() -> (Vec<Case>, Vec<bool>) {
    let raw = include_str!("data/ed25519-edge-cases.json");
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    let cases = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            msg: hex::decode(c["message"].as_str().unwrap()).unwrap(),
            pk: hex::decode(c["pub_key"].as_str().unwrap()).unwrap().try_into().unwrap(),
            sig: hex::decode(c["signature"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
        })
        .collect();
    let zebra: Vec<bool> = v["results_of_known_libraries"]["Zebra (ZIP-215)"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(|s| s == "V")
        .collect();
    (cases, zebra)
}

fn item(c: &Case) -> BatchItem<'_> {
    BatchItem {
        pk: &c.pk,
        msg_prefix: &[],
        msg: &c.msg,
        sig: &c.sig,
    }
}

#[test]
fn edge_cases_follow_zip215_on_single_and_batch_paths() {
    let (cases, zebra) = edge_cases();
    assert_eq!(cases.len(), 12);
    let cache = KeyCache::default();
    let single: Vec<bool> = cases.iter().map(|c| verify_single(&c.pk, &c.msg, &c.sig)).collect();
    assert_eq!(single, zebra, "single verification must be exactly ZIP-215");
    // Each case alone through the batch path.
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(verify_batch(&[item(c)], &cache), vec![single[i]], "case {i}");
    }
    // All twelve in one batch (the batch fails, fallback isolates the bad ones).
    let items: Vec<_> = cases.iter().map(item).collect();
    assert_eq!(verify_batch(&items, &cache), single);
    // Only the accepted ones: one batch equation, all accepted.
    let good: Vec<_> = cases
        .iter()
        .zip(&single)
        .filter(|(_, ok)| **ok)
        .map(|(c, _)| item(c))
        .collect();
    assert!(verify_batch(&good, &cache).iter().all(|ok| *ok));
}

#[test]
fn edge_case_keys_that_are_small_order_cannot_open_accounts() {
    let (cases, _) = edge_cases();
    // Keys 0, 1, 10, 11 are small-order (10 and 11 also non-canonical); keys
    // 2-5, 8, 9 are mixed-order (a torsion component); only 6 and 7 are
    // prime-order keys such as a real key generator makes.
    let expected_refused = [true, true, true, true, true, true, false, false, true, true, true, true];
    for (i, c) in cases.iter().enumerate() {
        let refused = check_account_key(&c.pk).is_err();
        assert_eq!(refused, expected_refused[i], "case {i} key {}", hex::encode(c.pk));
        let p = CompressedEdwardsY(c.pk)
            .decompress()
            .expect("every edge-case key is a point");
        let unsafe_key = p.compress().to_bytes() != c.pk || p.is_small_order() || !p.is_torsion_free();
        assert_eq!(
            refused, unsafe_key,
            "case {i}: refused exactly when small-order, mixed-order or non-canonical"
        );
    }
}

fn challenge(r: &[u8; 32], a: &[u8; 32], m: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(m);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Signs with a raw scalar and an arbitrary (possibly mixed-order) public key,
/// which is how an adversary builds signatures on which cofactored and
/// cofactorless verification disagree.
fn raw_sign(a: &Scalar, pk: &[u8; 32], msg: &[u8], rng: &mut impl RngCore) -> [u8; 64] {
    let mut rb = [0u8; 64];
    rng.fill_bytes(&mut rb);
    let r = Scalar::from_bytes_mod_order_wide(&rb);
    let big_r = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
    let k = challenge(&big_r, pk, msg);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

#[test]
fn batch_equals_single_on_random_adversarial_signatures() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let cache = KeyCache::default();
    let mut cases: Vec<([u8; 32], Vec<u8>, [u8; 64])> = Vec::new();
    let mut dalek_disagrees = 0;
    for i in 0..600 {
        let mut msg = vec![0u8; rng.gen_range(0..80)];
        rng.fill_bytes(&mut msg);
        let mut sb = [0u8; 64];
        rng.fill_bytes(&mut sb);
        let a = Scalar::from_bytes_mod_order_wide(&sb);
        let honest = ED25519_BASEPOINT_POINT * a;
        let (pk, sig) = match i % 6 {
            // Honest signature.
            0 => {
                let pk = honest.compress().to_bytes();
                (pk, raw_sign(&a, &pk, &msg, &mut rng))
            }
            // Mixed-order key: valid under the cofactored rule only (sometimes both).
            1 => {
                let pk = (honest + EIGHT_TORSION[1 + (i / 6) % 7]).compress().to_bytes();
                (pk, raw_sign(&a, &pk, &msg, &mut rng))
            }
            // Torsion added to R after signing.
            2 => {
                let pk = honest.compress().to_bytes();
                let mut sig = raw_sign(&a, &pk, &msg, &mut rng);
                let r = CompressedEdwardsY(sig[..32].try_into().unwrap()).decompress().unwrap();
                sig[..32].copy_from_slice(&(r + EIGHT_TORSION[1 + (i / 6) % 7]).compress().to_bytes());
                (pk, sig)
            }
            // Non-canonical s (s + ℓ): must be refused everywhere.
            3 => {
                let pk = honest.compress().to_bytes();
                let mut sig = raw_sign(&a, &pk, &msg, &mut rng);
                let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
                let mut wide = [0u8; 33];
                let l: [u8; 32] = [
                    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ];
                let mut carry = 0u16;
                for j in 0..32 {
                    let v = s.as_bytes()[j] as u16 + l[j] as u16 + carry;
                    wide[j] = v as u8;
                    carry = v >> 8;
                }
                wide[32] = carry as u8;
                if wide[32] == 0 {
                    sig[32..].copy_from_slice(&wide[..32]);
                }
                (pk, sig)
            }
            // A flipped bit somewhere.
            4 => {
                let pk = honest.compress().to_bytes();
                let mut sig = raw_sign(&a, &pk, &msg, &mut rng);
                let bit = rng.gen_range(0..512);
                sig[bit / 8] ^= 1 << (bit % 8);
                (pk, sig)
            }
            // Small-order key with a small-order R and s = 0.
            _ => {
                let pk = EIGHT_TORSION[(i / 6) % 8].compress().to_bytes();
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&EIGHT_TORSION[(i / 7) % 8].compress().to_bytes());
                (pk, sig)
            }
        };
        if let (Ok(vk), Ok(s)) = (
            ed25519_dalek::VerifyingKey::from_bytes(&pk),
            ed25519_dalek::Signature::from_slice(&sig),
        ) {
            let dalek = ed25519_dalek::Verifier::verify(&vk, &msg, &s).is_ok();
            if dalek != verify_single(&pk, &msg, &sig) {
                dalek_disagrees += 1;
            }
        }
        cases.push((pk, msg, sig));
    }
    // The test really is adversarial: the cofactorless library disagrees on some.
    assert!(
        dalek_disagrees > 10,
        "only {dalek_disagrees} adversarial disagreements generated"
    );

    let single: Vec<bool> = cases.iter().map(|(pk, m, s)| verify_single(pk, m, s)).collect();
    assert!(single.iter().filter(|ok| **ok).count() > 150);
    assert!(single.iter().filter(|ok| !**ok).count() > 150);
    let items: Vec<BatchItem<'_>> = cases
        .iter()
        .map(|(pk, m, s)| BatchItem {
            pk,
            msg_prefix: &[],
            msg: m,
            sig: s,
        })
        .collect();
    // Whole batch, random-size chunks, and the accepted subset all agree with single.
    assert_eq!(verify_batch(&items, &cache), single);
    let mut start = 0;
    while start < items.len() {
        let end = (start + rng.gen_range(1..80)).min(items.len());
        assert_eq!(verify_batch(&items[start..end], &cache), single[start..end].to_vec());
        start = end;
    }
    let accepted: Vec<_> = items
        .iter()
        .zip(&single)
        .filter(|(_, ok)| **ok)
        .map(|(it, _)| BatchItem { ..*it })
        .collect();
    assert!(verify_batch(&accepted, &cache).iter().all(|ok| *ok));
}
