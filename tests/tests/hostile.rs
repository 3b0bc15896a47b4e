//! Hostile and malformed input over gRPC, table-driven. Every case states the
//! status code and the machine-readable reason it must get, and the central
//! bank's state hash must be the same after it as before.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use ruble_e2e::ruble_ledger::codec::{Op, OpBody, SignedOp};
use ruble_e2e::ruble_ledger::query::{method, Query};
use ruble_e2e::ruble_ledger::types::{AccountId, AccountKind, Limits, Phase};
use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::*;
use tonic::{Code, Status};

/// What a case sends.
enum Send {
    Wallet(pb::SubmitRequest),
    WalletBatch(pb::SubmitBatchRequest),
    Receipt(Vec<u8>),
    Account(Option<pb::SignedQuery>),
    CbIssueAs(Role, pb::SubmitRequest),
    BankFreezeAs(Role, pb::SubmitRequest),
    BankOpen(pb::SubmitRequest),
    CbSetPhase(pb::SubmitRequest),
    CbIssue(pb::SubmitRequest),
    BankClientOps(pb::SubmitBatchRequest),
    BankBatchStream(pb::SubmitBatchRequest),
}

struct Case {
    name: &'static str,
    send: Send,
    code: Code,
    reason: &'static str,
}

fn raw(body: Vec<u8>, sig: Vec<u8>) -> pb::SubmitRequest {
    pb::SubmitRequest {
        operation: Some(pb::SignedOperation { body, signature: sig }),
    }
}

fn body(signer: &SigningKey, valid_until_ms: u64, op: Op) -> OpBody {
    OpBody {
        chain_id: "ruble-dev".into(),
        signer: id(signer),
        nonce: rand::random(),
        valid_until_ms,
        op,
    }
}

fn signed_raw(k: &SigningKey, bytes: Vec<u8>) -> pb::SubmitRequest {
    use ed25519_dalek::Signer;
    let sig = k
        .sign(&ruble_e2e::ruble_ledger::codec::signing_message(&bytes))
        .to_bytes()
        .to_vec();
    raw(bytes, sig)
}

fn query(k: &SigningKey, at: u64, nonce: u64, signer: &SigningKey) -> pb::SignedQuery {
    let q = Query {
        chain_id: "ruble-dev".into(),
        method: method::GET_ACCOUNT.into(),
        account: id(k),
        issued_at_ms: at,
        nonce,
        params: vec![],
    };
    pb::SignedQuery {
        account: q.account.0.to_vec(),
        issued_at_ms: at,
        nonce,
        signature: q.sign(signer).to_vec(),
    }
}

async fn send(t: &TestNode, s: Send) -> Result<Option<pb::SubmitResult>, Status> {
    match s {
        Send::Wallet(r) => t
            .wallet(Role::Anonymous)
            .await
            .submit(r)
            .await
            .map(|r| Some(r.into_inner())),
        Send::WalletBatch(r) => {
            let out = t.wallet(Role::Anonymous).await.submit_batch(r).await?.into_inner();
            Ok(out.results.into_iter().next())
        }
        Send::Receipt(tx) => t
            .wallet(Role::Anonymous)
            .await
            .get_receipt(pb::GetReceiptRequest { tx_id: tx })
            .await
            .map(|_| None),
        Send::Account(q) => t
            .wallet(Role::Anonymous)
            .await
            .get_account(pb::GetAccountRequest { query: q })
            .await
            .map(|_| None),
        Send::CbIssueAs(role, r) => t.cb(role).await.issue(r).await.map(|r| Some(r.into_inner())),
        Send::BankFreezeAs(role, r) => t.bank(role).await.freeze_account(r).await.map(|r| Some(r.into_inner())),
        Send::BankOpen(r) => t
            .bank(Role::Bank(0))
            .await
            .open_account(r)
            .await
            .map(|r| Some(r.into_inner())),
        Send::CbSetPhase(r) => t
            .cb(Role::CentralBank)
            .await
            .set_phase(r)
            .await
            .map(|r| Some(r.into_inner())),
        Send::CbIssue(r) => t
            .cb(Role::CentralBank)
            .await
            .issue(r)
            .await
            .map(|r| Some(r.into_inner())),
        Send::BankClientOps(r) => {
            let out = t
                .bank(Role::Bank(0))
                .await
                .submit_client_operations(r)
                .await?
                .into_inner();
            Ok(out.results.into_iter().next())
        }
        Send::BankBatchStream(r) => {
            let mut s = t
                .bank(Role::Bank(0))
                .await
                .submit_client_batches(tokio_stream::iter(vec![r]))
                .await?
                .into_inner();
            let out = s.message().await?.expect("a response or a status");
            Ok(out.results.into_iter().next())
        }
    }
}

fn edge_key(i: usize) -> [u8; 32] {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../ledger/tests/data/ed25519-edge-cases.json")).unwrap();
    hex::decode(v["cases"][i]["pub_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_precisely_and_changes_nothing() {
    let t = TestNode::start().await;
    let (cbk, b0, b1) = (t.cb_key(), t.bank_key(0), t.bank_key(1));
    let alice = t.business_key(0); // bank 0
    let bob = t.business_key(2); // bank 0
    let soon = now_ms() + 120_000;
    let pay = |from: &SigningKey, to: AccountId, amount: u64| {
        sign(
            from,
            Op::Transfer {
                payee: to,
                amount,
                purpose: "x".into(),
            },
        )
    };

    // Fixtures: a closed account, a frozen account, a committed payment to replay.
    let closed = SigningKey::generate(&mut rand::rngs::OsRng);
    let frozen = SigningKey::generate(&mut rand::rngs::OsRng);
    let poor = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut bank = t.bank(Role::Bank(0)).await;
    for k in [&closed, &frozen, &poor] {
        bank.open_account(req(&sign(
            &b0,
            Op::OpenAccount {
                account: id(k),
                kind: AccountKind::Business,
            },
        )))
        .await
        .unwrap();
    }
    bank.close_account(req(&sign(&b0, Op::CloseAccount { account: id(&closed) })))
        .await
        .unwrap();
    let fund = sign(
        &b0,
        Op::Transfer {
            payee: id(&frozen),
            amount: 100_00,
            purpose: String::new(),
        },
    );
    bank.submit_client_operations(pb::SubmitBatchRequest {
        operations: vec![wire(&fund)],
        request_id: 0,
    })
    .await
    .unwrap();
    bank.freeze_account(req(&sign(&b0, Op::Freeze { account: id(&frozen) })))
        .await
        .unwrap();
    let committed = pay(&alice, id(&bob), 1_00);
    t.wallet(Role::Anonymous).await.submit(req(&committed)).await.unwrap();
    // Limits for retail (the limit cases use a retail payee later is not possible before
    // the phase), so tighten the business limits on a fresh pair of accounts instead.
    let mut cb = t.cb(Role::CentralBank).await;
    cb.set_limits(req(&sign(
        &cbk,
        Op::SetLimits {
            kind: AccountKind::Business,
            limits: Limits {
                balance_cap: 2_000_000_00,
                payment_cap: 500_000_00,
                daily_outflow_cap: 700_000_00,
            },
        },
    )))
    .await
    .unwrap();
    // 400 000 ₽ of today's 700 000 ₽ daily allowance used.
    t.wallet(Role::Anonymous)
        .await
        .submit(req(&pay(&alice, id(&poor), 400_000_00)))
        .await
        .unwrap();
    let poor_pays = pay(&poor, id(&bob), 400_000_01);
    let big_credit = sign(
        &b0,
        Op::Transfer {
            payee: id(&bob),
            amount: 1_500_000_00,
            purpose: String::new(),
        },
    );

    let good = pay(&alice, id(&bob), 5_00);
    let good_bytes = good.body_bytes.clone();
    let good_sig = good.signature.to_vec();
    let mut trailing = good_bytes.clone();
    trailing.push(0);
    let mut bad_version = good_bytes.clone();
    bad_version[0] = 9;
    let mut bad_tag = good_bytes.clone();
    bad_tag[2 + "ruble-dev".len()] = 200;
    let mut flipped = good_sig.clone();
    flipped[10] ^= 1;
    // s + ℓ: same point equation, non-canonical scalar.
    let mut non_canonical_s = good_sig.clone();
    {
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for j in 0..32 {
            let v = non_canonical_s[32 + j] as u16 + l[j] as u16 + carry;
            non_canonical_s[32 + j] = v as u8;
            carry = v >> 8;
        }
    }
    let mallory = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut long_purpose = body(
        &alice,
        soon,
        Op::Transfer {
            payee: id(&bob),
            amount: 1,
            purpose: String::new(),
        },
    )
    .encode();
    let n = long_purpose.len();
    long_purpose[n - 2..].copy_from_slice(&141u16.to_be_bytes());
    long_purpose.extend(std::iter::repeat_n(b'a', 141));
    let mut bad_utf8 = body(
        &alice,
        soon,
        Op::Transfer {
            payee: id(&bob),
            amount: 1,
            purpose: "ab".into(),
        },
    )
    .encode();
    let n = bad_utf8.len();
    bad_utf8[n - 1] = 0xff;
    let mut wrong_chain = body(
        &alice,
        soon,
        Op::Transfer {
            payee: id(&bob),
            amount: 1,
            purpose: String::new(),
        },
    );
    wrong_chain.chain_id = "ruble-prod".into();
    let too_big: Vec<pb::SignedOperation> = (0..4097).map(|_| wire(&good)).collect();

    let cases = vec![
        Case {
            name: "no operation",
            send: Send::Wallet(pb::SubmitRequest { operation: None }),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "empty body",
            send: Send::Wallet(raw(vec![], good_sig.clone())),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "truncated body",
            send: Send::Wallet(raw(good_bytes[..good_bytes.len() - 1].to_vec(), good_sig.clone())),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "trailing byte",
            send: Send::Wallet(raw(trailing, good_sig.clone())),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "unknown version",
            send: Send::Wallet(raw(bad_version, good_sig.clone())),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "unknown operation tag",
            send: Send::Wallet(raw(bad_tag, good_sig.clone())),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "purpose over 140 bytes",
            send: Send::Wallet(signed_raw(&alice, long_purpose)),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "purpose not UTF-8",
            send: Send::Wallet(signed_raw(&alice, bad_utf8)),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "huge garbage body",
            send: Send::Wallet(raw(vec![1u8; 100_000], good_sig.clone())),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "wrong chain id",
            send: Send::Wallet(req(&SignedOp::sign(wrong_chain, &alice))),
            code: Code::InvalidArgument,
            reason: "WRONG_CHAIN",
        },
        Case {
            name: "truncated signature",
            send: Send::Wallet(raw(good_bytes.clone(), good_sig[..63].to_vec())),
            code: Code::Unauthenticated,
            reason: "BAD_SIGNATURE",
        },
        Case {
            name: "zero signature",
            send: Send::Wallet(raw(good_bytes.clone(), vec![0; 64])),
            code: Code::Unauthenticated,
            reason: "BAD_SIGNATURE",
        },
        Case {
            name: "signature bit flip",
            send: Send::Wallet(raw(good_bytes.clone(), flipped)),
            code: Code::Unauthenticated,
            reason: "BAD_SIGNATURE",
        },
        Case {
            name: "non-canonical s",
            send: Send::Wallet(raw(good_bytes.clone(), non_canonical_s)),
            code: Code::Unauthenticated,
            reason: "BAD_SIGNATURE",
        },
        Case {
            name: "signed by another key",
            send: Send::Wallet(signed_raw(&mallory, good_bytes.clone())),
            code: Code::Unauthenticated,
            reason: "BAD_SIGNATURE",
        },
        Case {
            name: "zero amount",
            send: Send::Wallet(req(&pay(&alice, id(&bob), 0))),
            code: Code::InvalidArgument,
            reason: "ZERO_AMOUNT",
        },
        Case {
            name: "u64::MAX amount",
            send: Send::Wallet(req(&pay(&alice, id(&bob), u64::MAX))),
            code: Code::FailedPrecondition,
            reason: "PAYMENT_LIMIT_EXCEEDED",
        },
        Case {
            name: "negative-looking amount (2^63)",
            send: Send::Wallet(req(&pay(&alice, id(&bob), 1 << 63))),
            code: Code::FailedPrecondition,
            reason: "PAYMENT_LIMIT_EXCEEDED",
        },
        Case {
            name: "payment from a frozen account",
            send: Send::Wallet(req(&pay(&frozen, id(&bob), 1))),
            code: Code::FailedPrecondition,
            reason: "ACCOUNT_FROZEN",
        },
        Case {
            name: "more than the balance",
            send: Send::Wallet(req(&poor_pays)),
            code: Code::FailedPrecondition,
            reason: "INSUFFICIENT_FUNDS",
        },
        Case {
            name: "above the daily outflow cap",
            send: Send::Wallet(req(&pay(&alice, id(&bob), 300_000_01))),
            code: Code::FailedPrecondition,
            reason: "DAILY_LIMIT_EXCEEDED",
        },
        Case {
            name: "payment to oneself",
            send: Send::Wallet(req(&pay(&alice, id(&alice), 1))),
            code: Code::InvalidArgument,
            reason: "SELF_TRANSFER",
        },
        Case {
            name: "payment to an unknown account",
            send: Send::Wallet(req(&pay(&alice, id(&mallory), 1))),
            code: Code::NotFound,
            reason: "UNKNOWN_ACCOUNT",
        },
        Case {
            name: "payment from an unknown account",
            send: Send::Wallet(req(&pay(&mallory, id(&alice), 1))),
            code: Code::NotFound,
            reason: "UNKNOWN_ACCOUNT",
        },
        Case {
            name: "payment to a closed account",
            send: Send::Wallet(req(&pay(&alice, id(&closed), 1))),
            code: Code::FailedPrecondition,
            reason: "ACCOUNT_CLOSED",
        },
        Case {
            name: "payment to a frozen account",
            send: Send::Wallet(req(&pay(&alice, id(&frozen), 1))),
            code: Code::FailedPrecondition,
            reason: "ACCOUNT_FROZEN",
        },
        Case {
            name: "above the payment cap",
            send: Send::Wallet(req(&pay(&alice, id(&bob), 500_000_01))),
            code: Code::FailedPrecondition,
            reason: "PAYMENT_LIMIT_EXCEEDED",
        },
        Case {
            name: "above the payee's balance cap",
            send: Send::BankClientOps(pb::SubmitBatchRequest {
                operations: vec![wire(&big_credit)],
                request_id: 0,
            }),
            code: Code::FailedPrecondition,
            reason: "BALANCE_LIMIT_EXCEEDED",
        },
        Case {
            name: "replay of a committed operation",
            send: Send::Wallet(req(&committed)),
            code: Code::Ok,
            reason: "",
        },
        Case {
            name: "expired operation",
            send: Send::Wallet(req(&SignedOp::sign(
                body(
                    &alice,
                    now_ms() - 1000,
                    Op::Transfer {
                        payee: id(&bob),
                        amount: 1,
                        purpose: String::new(),
                    },
                ),
                &alice,
            ))),
            code: Code::InvalidArgument,
            reason: "EXPIRED",
        },
        Case {
            name: "validity too long",
            send: Send::Wallet(req(&SignedOp::sign(
                body(
                    &alice,
                    now_ms() + 3_600_000,
                    Op::Transfer {
                        payee: id(&bob),
                        amount: 1,
                        purpose: String::new(),
                    },
                ),
                &alice,
            ))),
            code: Code::InvalidArgument,
            reason: "VALIDITY_TOO_LONG",
        },
        Case {
            name: "admin operation on the wallet service",
            send: Send::Wallet(req(&sign(
                &cbk,
                Op::Issue {
                    bank: id(&b0),
                    amount: 1,
                },
            ))),
            code: Code::PermissionDenied,
            reason: "NOT_AUTHORISED",
        },
        Case {
            name: "batch over the limit",
            send: Send::WalletBatch(pb::SubmitBatchRequest {
                operations: too_big.clone(),
                request_id: 0,
            }),
            code: Code::InvalidArgument,
            reason: "BATCH_TOO_LARGE",
        },
        Case {
            name: "batch over the limit on a bank's batch stream",
            send: Send::BankBatchStream(pb::SubmitBatchRequest {
                operations: too_big,
                request_id: 1,
            }),
            code: Code::InvalidArgument,
            reason: "BATCH_TOO_LARGE",
        },
        Case {
            name: "receipt id of 31 bytes",
            send: Send::Receipt(vec![0; 31]),
            code: Code::InvalidArgument,
            reason: "MALFORMED",
        },
        Case {
            name: "receipt of an unknown operation",
            send: Send::Receipt(vec![7; 32]),
            code: Code::NotFound,
            reason: "UNKNOWN_TX",
        },
        Case {
            name: "query missing",
            send: Send::Account(None),
            code: Code::Unauthenticated,
            reason: "MISSING_QUERY",
        },
        Case {
            name: "expired signed query",
            send: Send::Account(Some(query(&alice, now_ms() - 120_000, 1, &alice))),
            code: Code::Unauthenticated,
            reason: "STALE_QUERY",
        },
        Case {
            name: "query from the future",
            send: Send::Account(Some(query(&alice, now_ms() + 120_000, 2, &alice))),
            code: Code::Unauthenticated,
            reason: "STALE_QUERY",
        },
        Case {
            name: "query signed by someone else",
            send: Send::Account(Some(query(&alice, now_ms(), 3, &mallory))),
            code: Code::Unauthenticated,
            reason: "BAD_SIGNATURE",
        },
        Case {
            name: "issuance by a bank (bank certificate)",
            send: Send::CbIssueAs(
                Role::Bank(0),
                req(&sign(
                    &cbk,
                    Op::Issue {
                        bank: id(&b0),
                        amount: 1,
                    },
                )),
            ),
            code: Code::PermissionDenied,
            reason: "WRONG_ROLE",
        },
        Case {
            name: "issuance signed by a bank key",
            send: Send::CbIssue(req(&sign(
                &b0,
                Op::Issue {
                    bank: id(&b0),
                    amount: 1,
                },
            ))),
            code: Code::PermissionDenied,
            reason: "NOT_AUTHORISED",
        },
        Case {
            name: "wrong operation for the RPC",
            send: Send::CbIssue(req(&sign(
                &cbk,
                Op::Redeem {
                    bank: id(&b0),
                    amount: 1,
                },
            ))),
            code: Code::InvalidArgument,
            reason: "WRONG_OPERATION",
        },
        Case {
            name: "bank freezing another bank's client",
            send: Send::BankFreezeAs(Role::Bank(1), req(&sign(&b1, Op::Freeze { account: id(&alice) }))),
            code: Code::PermissionDenied,
            reason: "NOT_AUTHORISED",
        },
        Case {
            name: "no client certificate on the bank service",
            send: Send::BankFreezeAs(Role::Anonymous, req(&sign(&b0, Op::Freeze { account: id(&alice) }))),
            code: Code::Unauthenticated,
            reason: "CLIENT_CERTIFICATE_REQUIRED",
        },
        Case {
            name: "small-order key (edge case 0) as an account",
            send: Send::BankOpen(req(&sign(
                &b0,
                Op::OpenAccount {
                    account: AccountId(edge_key(0)),
                    kind: AccountKind::Business,
                },
            ))),
            code: Code::InvalidArgument,
            reason: "UNSAFE_KEY",
        },
        Case {
            name: "mixed-order key (edge case 3) as an account",
            send: Send::BankOpen(req(&sign(
                &b0,
                Op::OpenAccount {
                    account: AccountId(edge_key(3)),
                    kind: AccountKind::Business,
                },
            ))),
            code: Code::InvalidArgument,
            reason: "UNSAFE_KEY",
        },
        Case {
            name: "non-canonical key (edge case 10) as an account",
            send: Send::BankOpen(req(&sign(
                &b0,
                Op::OpenAccount {
                    account: AccountId(edge_key(10)),
                    kind: AccountKind::Business,
                },
            ))),
            code: Code::InvalidArgument,
            reason: "UNSAFE_KEY",
        },
        Case {
            name: "retail account before the retail phase",
            send: Send::BankOpen(req(&sign(
                &b0,
                Op::OpenAccount {
                    account: id(&mallory),
                    kind: AccountKind::Retail,
                },
            ))),
            code: Code::FailedPrecondition,
            reason: "PHASE_NOT_OPEN",
        },
        Case {
            name: "phase set to the current phase",
            send: Send::CbSetPhase(req(&sign(&cbk, Op::SetPhase { phase: Phase::Business }))),
            code: Code::FailedPrecondition,
            reason: "PHASE_NOT_FORWARD",
        },
        Case {
            name: "issuance overflowing u64",
            send: Send::CbIssue(req(&sign(
                &cbk,
                Op::Issue {
                    bank: id(&b0),
                    amount: u64::MAX,
                },
            ))),
            code: Code::FailedPrecondition,
            reason: "OVERFLOW",
        },
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut tried = 0;
    for c in cases {
        let before = t.state_hash().await;
        let r = send(&t, c.send).await;
        match (&r, c.code) {
            (Ok(res), Code::Ok) => {
                if c.name.starts_with("replay") {
                    assert!(
                        res.as_ref().is_some_and(|r| r.duplicate),
                        "{}: a replay answers the original receipt",
                        c.name
                    );
                    assert_eq!(t.state_hash().await, before, "{}", c.name);
                }
            }
            (Ok(Some(res)), code) => match &res.outcome {
                Some(pb::submit_result::Outcome::Rejected(rj)) => {
                    assert_eq!(rj.reason, c.reason, "{}", c.name);
                    let _ = code;
                    assert_eq!(t.state_hash().await, before, "{}: state changed", c.name);
                }
                other => panic!("{}: expected {:?}/{}, got {other:?}", c.name, c.code, c.reason),
            },
            (Err(st), code) => {
                assert_eq!(st.code(), code, "{}: {st:?}", c.name);
                // Every refusal says why, machine-readably.
                assert_eq!(reason(st), c.reason, "{}: {st:?}", c.name);
                assert_eq!(t.state_hash().await, before, "{}: state changed", c.name);
            }
            (Ok(None), code) => panic!("{}: expected {code:?}, got success", c.name),
        }
        tried += 1;
    }
    assert!(tried >= 40);
    // The node is still healthy after all that.
    let mut w = t.wallet(Role::Anonymous).await;
    w.submit(req(&pay(&alice, id(&bob), 1))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_foreign_certificates_are_refused() {
    let t = TestNode::start().await;
    let before = t.state_hash().await;
    // A message over the 4 MiB limit.
    let huge = pb::SubmitRequest {
        operation: Some(pb::SignedOperation {
            body: vec![0u8; 5 << 20],
            signature: vec![0u8; 64],
        }),
    };
    let st = t.wallet(Role::Anonymous).await.submit(huge).await.unwrap_err();
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
        "{st:?}"
    );
    // A client certificate from another CA: the TLS handshake fails.
    let other_ca = ruble_gateway::pki::generate_ca().unwrap();
    let cert = other_ca
        .issue_client(&ruble_gateway::auth::Participant::CentralBank)
        .unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(t.ca_pem()))
        .identity(tonic::transport::Identity::from_pem(cert.cert_pem, cert.key_pem));
    let ch = tonic::transport::Endpoint::from_shared(t.endpoint())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    let refused = match ch.connect().await {
        Err(_) => true,
        Ok(ch) => ruble_e2e::ruble_proto::v1::central_bank_service_client::CentralBankServiceClient::new(ch)
            .get_supply(pb::GetSupplyRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from an unknown CA must not get in");
    assert_eq!(t.state_hash().await, before);
}
