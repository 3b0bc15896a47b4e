//! `docs/signing-vectors.json` is the contract for banks signing in other
//! languages. This test rebuilds every vector from its fields and demands the
//! file match byte for byte, and checks that each signature verifies under the
//! ledger's rule. The `malformed` vectors are bodies one byte (or one list
//! entry) away from a valid one, each correctly signed, that every decoder
//! must refuse as `MALFORMED`. Regenerate (after an intended format change
//! only) with
//! `RUBLE_WRITE_VECTORS=1 cargo test -p ruble-ledger --test signing_vectors`.

use ed25519_dalek::{Signer as _, SigningKey};
use ruble_ledger::codec::{signing_message, tx_id, Op, OpBody, SignedOp, MAX_RULE_LIST};
use ruble_ledger::crypto::verify_single;
use ruble_ledger::query::{history_params, method, Query};
use ruble_ledger::reason::Reason;
use ruble_ledger::types::{AccountId, AccountKind, Limits, Phase, Tier, TxId};
use serde_json::{json, Value};

const CHAIN: &str = "ruble-dev";
const VALID_UNTIL_MS: u64 = 1_800_000_600_000;

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

fn idk(k: &SigningKey) -> AccountId {
    AccountId(k.verifying_key().to_bytes())
}

/// The body of vector `i` (its nonce is `1000 + i`).
fn body(i: usize, k: &SigningKey, op: Op) -> OpBody {
    OpBody {
        chain_id: CHAIN.into(),
        signer: idk(k),
        nonce: 1000 + i as u64,
        valid_until_ms: VALID_UNTIL_MS,
        op,
    }
}

/// Where the operation-specific part of a body starts (after version,
/// chain id, tag, signer, nonce and validity).
fn payload_at(chain_id: &str) -> usize {
    1 + 1 + chain_id.len() + 1 + 32 + 8 + 8
}

fn vectors() -> Value {
    let cb = key(1);
    let bank = key(2);
    let alice = key(3);
    let bob = key(4);
    // A business signatory's key: it signs approvals, it is no account.
    let signatory = key(5);
    // Alice's key after her bank rotated it (a lost device).
    let alice_new = key(6);
    let signatory2 = key(7);
    let mut cases: Vec<(&str, &SigningKey, Op)> = vec![
        (
            "transfer",
            &alice,
            Op::Transfer {
                payee: idk(&bob),
                amount: 125_050,
                purpose: "Invoice 2026-001".into(),
            },
        ),
        (
            "transfer_cyrillic_purpose",
            &alice,
            Op::Transfer {
                payee: idk(&bob),
                amount: 1,
                purpose: "Оплата по счёту №7".into(),
            },
        ),
        (
            "issue",
            &cb,
            Op::Issue {
                bank: idk(&bank),
                amount: 100_000_000_00,
            },
        ),
        (
            "redeem",
            &cb,
            Op::Redeem {
                bank: idk(&bank),
                amount: 5_000_00,
            },
        ),
        (
            "open_account",
            &bank,
            Op::OpenAccount {
                account: idk(&alice),
                kind: AccountKind::Business,
            },
        ),
        ("close_account", &bank, Op::CloseAccount { account: idk(&alice) }),
        ("freeze", &cb, Op::Freeze { account: idk(&alice) }),
        ("unfreeze", &bank, Op::Unfreeze { account: idk(&alice) }),
        (
            "admit_bank",
            &cb,
            Op::AdmitBank {
                bank: idk(&bank),
                name: "Example Bank".into(),
            },
        ),
        ("suspend_bank", &cb, Op::SuspendBank { bank: idk(&bank) }),
        ("set_phase", &cb, Op::SetPhase { phase: Phase::Retail }),
        (
            "set_limits",
            &cb,
            Op::SetLimits {
                kind: AccountKind::Retail,
                limits: Limits {
                    balance_cap: 100_000_00,
                    payment_cap: 50_000_00,
                    daily_outflow_cap: 80_000_00,
                },
            },
        ),
        (
            "set_reporting_threshold",
            &cb,
            Op::SetReportingThreshold { amount: 600_000_00 },
        ),
    ];
    // The held payment the payment vectors act on: the `transfer` vector
    // (a payment's id is its transfer's tx id).
    let held = {
        let (_, k, op) = &cases[0];
        SignedOp::sign(body(0, k, op.clone()), k).tx_id
    };
    cases.extend::<Vec<(&str, &SigningKey, Op)>>(vec![
        (
            "freeze_receive_only",
            &bank,
            Op::FreezeReceiveOnly { account: idk(&alice) },
        ),
        (
            "set_controls",
            &cb,
            Op::SetControls {
                hold_threshold: 100_000_00,
                hold_window_ms: 172_800_000,
                protected_minimum: 1_000_00,
            },
        ),
        (
            "flag_fraud",
            &bank,
            Op::FlagFraud {
                account: idk(&bob),
                flagged: true,
            },
        ),
        (
            "flag_fraud_unflag",
            &cb,
            Op::FlagFraud {
                account: idk(&bob),
                flagged: false,
            },
        ),
        ("confirm_payment", &alice, Op::ConfirmPayment { payment: held }),
        (
            "confirm_payment_by_signatory",
            &signatory,
            Op::ConfirmPayment { payment: held },
        ),
        ("release_payment", &bank, Op::ReleasePayment { payment: held }),
        ("void_payment", &alice, Op::VoidPayment { payment: held }),
        (
            "collect",
            &bank,
            Op::Collect {
                debtor: idk(&alice),
                claimant: idk(&bob),
                amount: 10_000_00,
            },
        ),
        (
            "define_purpose",
            &cb,
            Op::DefinePurpose {
                purpose: 7,
                issuer: idk(&cb),
                unlock_at_ms: 1_800_000_000_000,
                expires_at_ms: 1_831_536_000_000,
                payees: vec![idk(&bob)],
                categories: vec![5411, 5912],
            },
        ),
        (
            "pay_tagged",
            &cb,
            Op::PayTagged {
                payee: idk(&alice),
                amount: 5_000_00,
                purpose: 7,
            },
        ),
        (
            "set_category",
            &bank,
            Op::SetCategory {
                account: idk(&bob),
                category: 5411,
            },
        ),
        (
            "set_sweep",
            &bank,
            Op::SetSweep {
                account: idk(&alice),
                enabled: true,
            },
        ),
        (
            "set_tier",
            &bank,
            Op::SetTier {
                account: idk(&alice),
                tier: Tier::Simplified,
            },
        ),
        (
            "set_tier_limits",
            &cb,
            Op::SetTierLimits {
                tier: Tier::Anonymous,
                limits: Limits {
                    balance_cap: 15_000_00,
                    payment_cap: 15_000_00,
                    daily_outflow_cap: 40_000_00,
                },
            },
        ),
        (
            "rotate_key",
            &bank,
            Op::RotateKey {
                account: idk(&alice),
                new_key: idk(&alice_new),
            },
        ),
        (
            "transfer_after_key_rotation",
            &alice_new,
            Op::Transfer {
                payee: idk(&bob),
                amount: 300_00,
                purpose: String::new(),
            },
        ),
        (
            "set_signatories",
            &bank,
            Op::SetSignatories {
                account: idk(&alice),
                min_amount: 1_000_000_00,
                required: 2,
                keys: vec![idk(&signatory), idk(&signatory2)],
            },
        ),
        (
            "set_signatories_remove",
            &bank,
            Op::SetSignatories {
                account: idk(&alice),
                min_amount: 0,
                required: 0,
                keys: vec![],
            },
        ),
    ]);
    let signed: Vec<(&str, &SigningKey, SignedOp)> = cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, k, op))| (name, k, SignedOp::sign(body(i, k, op), k)))
        .collect();
    let ops: Vec<Value> = signed
        .iter()
        .map(|(name, k, signed)| {
            let body = &signed.body;
            json!({
                "name": name,
                "secret_key_seed": hex::encode(k.to_bytes()),
                "public_key": hex::encode(k.verifying_key().to_bytes()),
                "chain_id": body.chain_id,
                "nonce": body.nonce,
                "valid_until_ms": body.valid_until_ms,
                "kind": body.op.name(),
                "body": hex::encode(&signed.body_bytes),
                "signing_message": hex::encode(signing_message(&signed.body_bytes)),
                "tx_id": hex::encode(tx_id(&signed.body_bytes).0),
                "signature": hex::encode(signed.signature),
            })
        })
        .collect();
    let malformed = malformed();
    let q = Query {
        chain_id: "ruble-dev".into(),
        method: method::GET_HISTORY.into(),
        account: idk(&alice),
        issued_at_ms: 1_800_000_000_000,
        nonce: 77,
        params: history_params(0, 50),
    };
    json!({
        "about": "Test vectors for docs/signing.md. Keys are ed25519 seeds (RFC 8032). All integers big-endian. \
                  `malformed`: correctly signed bodies that every decoder must refuse with the given reason.",
        "operations": ops,
        "malformed": malformed,
        "queries": [{
            "name": "get_history",
            "secret_key_seed": hex::encode(alice.to_bytes()),
            "account": hex::encode(q.account.0),
            "chain_id": q.chain_id,
            "method": q.method,
            "issued_at_ms": q.issued_at_ms,
            "nonce": q.nonce,
            "params": hex::encode(&q.params),
            "message": hex::encode(q.message()),
            "signature": hex::encode(q.sign(&alice)),
        }],
    })
}

/// Bodies that must be refused: each is a valid body (signed with
/// `SignedOp::sign`) changed in one place, then signed again, so the
/// signature is never the reason.
fn malformed() -> Vec<Value> {
    let cb = key(1);
    let bank = key(2);
    let alice = key(3);
    let bob = key(4);
    let ids = |from: u8, n: usize| -> Vec<AccountId> { (0..n).map(|j| idk(&key(from + j as u8))).collect() };
    let at = payload_at(CHAIN);
    let payment = TxId([0x5a; 32]);
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, &str, &SigningKey, Op, Mutation)> = vec![
        (
            "flag_fraud_flag_2",
            "the flagged byte is 2: a boolean is exactly 0 or 1",
            &bank,
            Op::FlagFraud {
                account: idk(&bob),
                flagged: true,
            },
            Box::new(|b| *b.last_mut().unwrap() = 2),
        ),
        (
            "set_sweep_enabled_ff",
            "the enabled byte is 0xff: a boolean is exactly 0 or 1",
            &bank,
            Op::SetSweep {
                account: idk(&alice),
                enabled: true,
            },
            Box::new(|b| *b.last_mut().unwrap() = 0xff),
        ),
        (
            "set_tier_0",
            "tier 0: a tier is 1 (anonymous), 2 (simplified) or 3 (full)",
            &bank,
            Op::SetTier {
                account: idk(&alice),
                tier: Tier::Simplified,
            },
            Box::new(|b| *b.last_mut().unwrap() = 0),
        ),
        (
            "set_tier_4",
            "tier 4: a tier is 1 (anonymous), 2 (simplified) or 3 (full)",
            &bank,
            Op::SetTier {
                account: idk(&alice),
                tier: Tier::Full,
            },
            Box::new(|b| *b.last_mut().unwrap() = 4),
        ),
        (
            "set_tier_limits_tier_0",
            "tier 0: a tier is 1 (anonymous), 2 (simplified) or 3 (full)",
            &cb,
            Op::SetTierLimits {
                tier: Tier::Anonymous,
                limits: Limits {
                    balance_cap: 1,
                    payment_cap: 1,
                    daily_outflow_cap: 1,
                },
            },
            Box::new(move |b| b[at] = 0),
        ),
        (
            "define_purpose_9_payees",
            "the payee count is 9 (and 9 payees follow): a list holds at most 8",
            &cb,
            Op::DefinePurpose {
                purpose: 7,
                issuer: idk(&cb),
                unlock_at_ms: 0,
                expires_at_ms: 1_831_536_000_000,
                payees: ids(10, MAX_RULE_LIST),
                categories: vec![5411],
            },
            Box::new(move |b| {
                let count_at = at + 4 + 32 + 8 + 8;
                b[count_at] += 1;
                let end = count_at + 1 + 32 * MAX_RULE_LIST;
                b.splice(end..end, idk(&key(30)).0);
            }),
        ),
        (
            "define_purpose_9_categories",
            "the category count is 9 (and 9 categories follow): a list holds at most 8",
            &cb,
            Op::DefinePurpose {
                purpose: 7,
                issuer: idk(&cb),
                unlock_at_ms: 0,
                expires_at_ms: 1_831_536_000_000,
                payees: vec![idk(&bob)],
                categories: (0..MAX_RULE_LIST as u16).map(|c| 5411 + c).collect(),
            },
            Box::new(move |b| {
                let count_at = at + 4 + 32 + 8 + 8 + 1 + 32;
                b[count_at] += 1;
                b.extend_from_slice(&5999u16.to_be_bytes());
            }),
        ),
        (
            "set_signatories_9_keys",
            "the key count is 9 (and 9 keys follow): a list holds at most 8",
            &bank,
            Op::SetSignatories {
                account: idk(&alice),
                min_amount: 1,
                required: 2,
                keys: ids(10, MAX_RULE_LIST),
            },
            Box::new(move |b| {
                b[at + 32 + 8 + 1] += 1;
                b.extend_from_slice(&idk(&key(30)).0);
            }),
        ),
        (
            "confirm_payment_31_byte_id",
            "the body ends inside the payment id (a payment id is 32 bytes)",
            &alice,
            Op::ConfirmPayment { payment },
            Box::new(|b| {
                b.pop();
            }),
        ),
        (
            "void_payment_trailing_byte",
            "a byte after the payment id: nothing may follow the payload",
            &alice,
            Op::VoidPayment { payment },
            Box::new(|b| b.push(0)),
        ),
        (
            "unknown_tag_28",
            "tag 28: no such operation",
            &cb,
            Op::SetControls {
                hold_threshold: 0,
                hold_window_ms: 1,
                protected_minimum: 0,
            },
            Box::new(|b| b[1 + 1 + CHAIN.len()] = 28),
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, why, k, op, mutate))| {
            let valid = SignedOp::sign(body(100 + i, k, op), k);
            let mut b = valid.body_bytes.clone();
            mutate(&mut b);
            assert_ne!(b, valid.body_bytes, "{name}");
            json!({
                "name": name,
                "why": why,
                "mutated_from": valid.body.op.name(),
                "secret_key_seed": hex::encode(k.to_bytes()),
                "public_key": hex::encode(k.verifying_key().to_bytes()),
                "body": hex::encode(&b),
                "signature": hex::encode(k.sign(&signing_message(&b)).to_bytes()),
                "reason": Reason::Malformed.code(),
            })
        })
        .collect()
}

#[test]
fn vectors_file_matches_the_implementation() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/signing-vectors.json");
    let generated = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var("RUBLE_WRITE_VECTORS").is_ok() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).expect("docs/signing-vectors.json exists");
    assert_eq!(
        on_disk, generated,
        "docs/signing-vectors.json is out of date with the codec"
    );

    // And independently of the generator: every vector decodes, re-encodes and verifies.
    let v: Value = serde_json::from_str(&on_disk).unwrap();
    for op in v["operations"].as_array().unwrap() {
        let body = hex::decode(op["body"].as_str().unwrap()).unwrap();
        let decoded = OpBody::decode(&body).unwrap();
        assert_eq!(decoded.encode(), body);
        assert_eq!(decoded.op.name(), op["kind"].as_str().unwrap());
        let msg = hex::decode(op["signing_message"].as_str().unwrap()).unwrap();
        assert_eq!(msg, signing_message(&body));
        let pk: [u8; 32] = hex::decode(op["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let sig: [u8; 64] = hex::decode(op["signature"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert!(verify_single(&pk, &msg, &sig), "{}", op["name"]);
        assert_eq!(hex::encode(tx_id(&body).0), op["tx_id"].as_str().unwrap());
    }

    // Every malformed vector is refused with its reason, though its signature verifies.
    let malformed = v["malformed"].as_array().unwrap();
    assert!(!malformed.is_empty());
    for m in malformed {
        let body = hex::decode(m["body"].as_str().unwrap()).unwrap();
        let sig = hex::decode(m["signature"].as_str().unwrap()).unwrap();
        let want = Reason::from_code(m["reason"].as_str().unwrap()).unwrap();
        assert_eq!(OpBody::decode(&body), Err(want), "{}", m["name"]);
        assert_eq!(SignedOp::decode(&body, &sig).err(), Some(want), "{}", m["name"]);
        let pk: [u8; 32] = hex::decode(m["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert!(
            verify_single(&pk, &signing_message(&body), &sig.try_into().unwrap()),
            "{}",
            m["name"]
        );
    }
}

/// Every operation kind has a vector.
#[test]
fn every_operation_kind_has_a_vector() {
    let v = vectors();
    let kinds: std::collections::BTreeSet<&str> = v["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["kind"].as_str().unwrap())
        .collect();
    let tags: std::collections::BTreeSet<u8> = v["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            let body = hex::decode(op["body"].as_str().unwrap()).unwrap();
            OpBody::decode(&body).unwrap().op.tag()
        })
        .collect();
    assert_eq!(tags, (1..=27).collect(), "kinds with vectors: {kinds:?}");
}
