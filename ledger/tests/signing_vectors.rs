//! `docs/signing-vectors.json` is the contract for banks signing in other
//! languages. This test rebuilds every vector from its fields and demands the
//! file match byte for byte, and checks that each signature verifies under the
//! ledger's rule. Regenerate (after an intended format change only) with
//! `RUBLE_WRITE_VECTORS=1 cargo test -p ruble-ledger --test signing_vectors`.

use ed25519_dalek::SigningKey;
use ruble_ledger::codec::{signing_message, tx_id, Op, OpBody, SignedOp};
use ruble_ledger::crypto::verify_single;
use ruble_ledger::query::{history_params, method, Query};
use ruble_ledger::types::{AccountId, AccountKind, Limits, Phase};
use serde_json::{json, Value};

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

fn vectors() -> Value {
    let cb = key(1);
    let bank = key(2);
    let alice = key(3);
    let bob = key(4);
    let idk = |k: &SigningKey| AccountId(k.verifying_key().to_bytes());
    let cases: Vec<(&str, &SigningKey, Op)> = vec![
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
    let ops: Vec<Value> = cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, k, op))| {
            let body = OpBody {
                chain_id: "ruble-dev".into(),
                signer: idk(k),
                nonce: 1000 + i as u64,
                valid_until_ms: 1_800_000_600_000,
                op,
            };
            let signed = SignedOp::sign(body.clone(), k);
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
    let q = Query {
        chain_id: "ruble-dev".into(),
        method: method::GET_HISTORY.into(),
        account: idk(&alice),
        issued_at_ms: 1_800_000_000_000,
        nonce: 77,
        params: history_params(0, 50),
    };
    json!({
        "about": "Test vectors for docs/signing.md. Keys are ed25519 seeds (RFC 8032). All integers big-endian.",
        "operations": ops,
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
}
