//! The central-bank controls end to end, over raw gRPC with real TLS against
//! a real node: anti-fraud holds (new payee, fraud registry) with
//! confirmation, release and voiding; business signatories; receive-only
//! freezes; court-ordered collection above the protected minimum; key
//! rotation with transfers and signed queries; purpose-bound money; wallet
//! tiers and the holding-limit sweep; and a restart that keeps held
//! payments, balances and the state hash. Every refusal is checked for its
//! exact code and reason, and for leaving the state hash as it was.

use ed25519_dalek::SigningKey;
use ruble_e2e::ruble_ledger::codec::{Op, SignedOp};
use ruble_e2e::ruble_ledger::query::{method, Query};
use ruble_e2e::ruble_ledger::types::{AccountId, AccountKind, Limits, Phase, Tier};
use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::ruble_proto::v1::bank_service_client::BankServiceClient;
use ruble_e2e::ruble_proto::v1::central_bank_service_client::CentralBankServiceClient;
use ruble_e2e::*;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

type Answer = Result<Response<pb::SubmitResult>, Status>;
type Cb = CentralBankServiceClient<Channel>;
type Bank = BankServiceClient<Channel>;

/// Anti-fraud hold window used by the tests (one hour).
const WINDOW: u64 = 3_600_000;

/// The method a wallet's `ListHeldPayments` query is signed for.
const LIST_HELD: &str = "ListHeldPayments";

fn fresh() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

fn bytes(k: &SigningKey) -> Vec<u8> {
    id(k).0.to_vec()
}

/// The receipt of a committed operation (panics on anything else).
fn committed(r: Answer) -> pb::Receipt {
    match r {
        Ok(r) => match r.into_inner().outcome {
            Some(pb::submit_result::Outcome::Committed(rc)) => rc,
            other => panic!("not committed: {other:?}"),
        },
        Err(st) => panic!("refused: {:?} {} ({})", st.code(), reason(&st), st.message()),
    }
}

fn effect(rc: &pb::Receipt) -> pb::Effect {
    rc.effect.clone().expect("a receipt carries its effect")
}

fn pay(k: &SigningKey, payee: AccountId, amount: u64) -> SignedOp {
    sign(
        k,
        Op::Transfer {
            payee,
            amount,
            purpose: "controls".into(),
        },
    )
}

/// A signed query naming `account`, signed by `signer`.
fn query(account: AccountId, signer: &SigningKey, method: &str) -> pb::SignedQuery {
    query_with(account, signer, method, vec![])
}

fn query_with(account: AccountId, signer: &SigningKey, method: &str, params: Vec<u8>) -> pb::SignedQuery {
    let at = now_ms();
    let nonce: u64 = rand::random();
    let q = Query {
        chain_id: "ruble-dev".into(),
        method: method.into(),
        account,
        issued_at_ms: at,
        nonce,
        params,
    };
    pb::SignedQuery {
        account: account.0.to_vec(),
        issued_at_ms: at,
        nonce,
        signature: q.sign(signer).to_vec(),
    }
}

/// Refused with exactly this code and reason, and the state hash unchanged.
macro_rules! refused {
    ($t:expr, $call:expr, $code:expr, $reason:expr) => {{
        let before = $t.state_hash().await;
        match $call.await {
            Ok(r) => panic!("{} was not refused: {:?}", stringify!($call), r.into_inner()),
            Err(st) => assert_eq!(
                (st.code(), reason(&st).as_str()),
                ($code, $reason),
                "{}: {}",
                stringify!($call),
                st.message()
            ),
        }
        assert_eq!($t.state_hash().await, before, "a refusal changed the state");
    }};
}

async fn acct(cb: &mut Cb, a: AccountId) -> pb::Account {
    cb.get_any_account(pb::GetClientAccountRequest { account: a.0.to_vec() })
        .await
        .unwrap()
        .into_inner()
}

async fn held(cb: &mut Cb, account: Option<AccountId>) -> Vec<pb::HeldPayment> {
    cb.list_held_payments(pb::ListHeldPaymentsRequest {
        account: account.map_or(Vec::new(), |a| a.0.to_vec()),
    })
    .await
    .unwrap()
    .into_inner()
    .payments
}

/// Opens a wallet of `kind` at the bank whose key is `bk`.
async fn open(bank: &mut Bank, bk: &SigningKey, kind: AccountKind) -> SigningKey {
    let k = fresh();
    committed(
        bank.open_account(req(&sign(bk, Op::OpenAccount { account: id(&k), kind })))
            .await,
    );
    k
}

/// The bank pays its client from its settlement account.
async fn fund(bank: &mut Bank, bk: &SigningKey, payee: &SigningKey, amount: u64) -> pb::Receipt {
    let op = pay(bk, id(payee), amount);
    let out = bank
        .submit_client_operations(pb::SubmitBatchRequest {
            operations: vec![wire(&op)],
            request_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    match out.results.into_iter().next().and_then(|r| r.outcome) {
        Some(pb::submit_result::Outcome::Committed(rc)) => rc,
        other => panic!("funding not committed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_fraud_registry_and_signatories_survive_a_restart() {
    let mut t = TestNode::start().await;
    let (cbk, b0k, b1k) = (t.cb_key(), t.bank_key(0), t.bank_key(1));
    let mut cb = t.cb(Role::CentralBank).await;
    let mut b0 = t.bank(Role::Bank(0)).await;
    let mut b1 = t.bank(Role::Bank(1)).await;
    let mut w = t.wallet(Role::Anonymous).await;
    let payer = t.business_key(0); // bank 0's, 1 000 000 ₽
    let biz = t.business_key(2); // bank 0's, 1 000 000 ₽
    assert_eq!(t.balance(id(&payer)).await, 1_000_000_00);
    let mut payees = Vec::new();
    for _ in 0..7 {
        payees.push(open(&mut b0, &b0k, AccountKind::Business).await);
    }
    let [p1, p2, p3, p4, p5, fraudster, rot] = <[SigningKey; 7]>::try_from(payees).unwrap();
    fund(&mut b0, &b0k, &rot, 200_000_00).await; // before the hold rule

    // The central bank sets the hold rule: 100 000 ₽ to a new payee, one hour.
    committed(
        cb.set_controls(req(&sign(
            &cbk,
            Op::SetControls {
                hold_threshold: 100_000_00,
                hold_window_ms: WINDOW,
                protected_minimum: 1_000_00,
            },
        )))
        .await,
    );
    let s = cb.get_controls(pb::GetControlsRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (s.hold_threshold, s.hold_window_ms, s.protected_minimum),
        (100_000_00, WINDOW, 1_000_00)
    );
    refused!(
        t,
        cb.set_controls(req(&sign(
            &cbk,
            Op::SetControls {
                hold_threshold: 1,
                hold_window_ms: 0,
                protected_minimum: 0,
            },
        ))),
        Code::InvalidArgument,
        "INVALID_RULE"
    );

    // 1. A first payment of 600 000 ₽ to a new payee is held, not moved.
    let big = pay(&payer, id(&p1), 600_000_00);
    let rc = committed(w.submit(req(&big)).await);
    let e = effect(&rc);
    assert_eq!(e.kind, "held");
    assert_eq!(e.held_until_ms, rc.timestamp_ms + WINDOW);
    assert_eq!(t.balance(id(&p1)).await, 0);
    let a = b0
        .get_client_account(pb::GetClientAccountRequest { account: bytes(&payer) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (a.balance, a.reserved, a.free, a.tagged),
        (1_000_000_00, 600_000_00, 400_000_00, 0)
    );
    // The receipt read back carries the effect too.
    let rec = w
        .get_receipt(pb::GetReceiptRequest {
            tx_id: big.tx_id.0.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rec.effect.as_ref().map(|e| e.kind.as_str()), Some("held"));
    // Below the threshold nothing is held.
    let small = committed(w.submit(req(&pay(&payer, id(&p2), 50_000_00))).await);
    assert_eq!(effect(&small).kind, "none");
    assert_eq!(t.balance(id(&p2)).await, 50_000_00);
    // 400 000 ₽ is within the balance (950 000 ₽) but not the free funds (350 000 ₽).
    refused!(
        t,
        w.submit(req(&pay(&payer, id(&p2), 400_000_00))),
        Code::FailedPrecondition,
        "FUNDS_RESERVED"
    );
    // Bank 0 lists it; bank 1 (no client of its on either side) does not.
    let list = b0
        .list_held_payments(pb::ListHeldPaymentsRequest { account: vec![] })
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(list.len(), 1, "{list:?}");
    let h = &list[0];
    assert_eq!(
        (&h.payment_id, &h.payer, &h.payee, h.amount, h.kind.as_str()),
        (
            &big.tx_id.0.to_vec(),
            &bytes(&payer),
            &bytes(&p1),
            600_000_00,
            "new_payee"
        )
    );
    assert_eq!((h.deadline_ms, h.required, h.tagged_part), (e.held_until_ms, 0, 0));
    assert!(h.approvals.is_empty());
    let theirs = b1
        .list_held_payments(pb::ListHeldPaymentsRequest { account: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.payments.is_empty(), "{theirs:?}");
    // The payer's own listing (signed query) shows the same.
    let mine = w
        .list_held_payments(pb::GetAccountRequest {
            query: Some(query(id(&payer), &payer, LIST_HELD)),
        })
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(mine, list);
    // So does the payee's.
    let incoming = w
        .list_held_payments(pb::GetAccountRequest {
            query: Some(query(id(&p1), &p1, LIST_HELD)),
        })
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(incoming, list);
    // Another bank may not release it.
    refused!(
        t,
        b1.release_payment(req(&sign(&b1k, Op::ReleasePayment { payment: big.tx_id }))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    // The payer confirms it: it executes.
    let confirm = sign(&payer, Op::ConfirmPayment { payment: big.tx_id });
    let rc = committed(w.submit(req(&confirm)).await);
    assert_eq!((effect(&rc).kind.as_str(), effect(&rc).swept), ("settled", 0));
    assert_eq!(t.balance(id(&p1)).await, 600_000_00);
    let a = acct(&mut cb, id(&payer)).await;
    assert_eq!((a.balance, a.reserved, a.free), (350_000_00, 0, 350_000_00));
    assert!(held(&mut cb, None).await.is_empty());
    // The same confirmation again is a duplicate with the original receipt;
    // a new one finds no held payment.
    let again = w.submit(req(&confirm)).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(again.outcome, Some(pb::submit_result::Outcome::Committed(rc)));
    refused!(
        t,
        w.submit(req(&sign(&payer, Op::ConfirmPayment { payment: big.tx_id }))),
        Code::NotFound,
        "UNKNOWN_PAYMENT"
    );
    // A known payee now: the next large payment goes straight through.
    let rc = committed(w.submit(req(&pay(&payer, id(&p1), 150_000_00))).await);
    assert_eq!(effect(&rc).kind, "none");
    assert_eq!(t.balance(id(&p1)).await, 750_000_00);
    assert_eq!(t.balance(id(&payer)).await, 200_000_00);

    // 2. The fraud registry.
    committed(
        cb.flag_fraud(req(&sign(
            &cbk,
            Op::FlagFraud {
                account: id(&fraudster),
                flagged: true,
            },
        )))
        .await,
    );
    let reg = cb
        .list_fraud_registry(pb::ListFraudRegistryRequest {})
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(
        reg,
        vec![pb::FraudEntry {
            account: bytes(&fraudster),
            flagged_by: bytes(&cbk),
        }]
    );
    assert_eq!(acct(&mut cb, id(&fraudster)).await.fraud_flagged_by, bytes(&cbk));
    refused!(
        t,
        cb.flag_fraud(req(&sign(
            &cbk,
            Op::FlagFraud {
                account: id(&fraudster),
                flagged: true,
            },
        ))),
        Code::FailedPrecondition,
        "ALREADY_FLAGGED"
    );
    // Only the reporter (or the central bank) takes an entry off.
    refused!(
        t,
        b1.flag_fraud(req(&sign(
            &b1k,
            Op::FlagFraud {
                account: id(&fraudster),
                flagged: false,
            },
        ))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    refused!(
        t,
        b0.flag_fraud(req(&sign(
            &b0k,
            Op::FlagFraud {
                account: id(&p3),
                flagged: false,
            },
        ))),
        Code::FailedPrecondition,
        "NOT_FLAGGED"
    );
    // Any payment to a flagged payee is held, whatever its amount.
    let f1 = pay(&payer, id(&fraudster), 10_00);
    assert_eq!(effect(&committed(w.submit(req(&f1)).await)).kind, "held");
    let l = b0
        .list_held_payments(pb::ListHeldPaymentsRequest {
            account: bytes(&fraudster),
        })
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].payment_id.clone(), l[0].kind.as_str()),
        (f1.tx_id.0.to_vec(), "fraud_registry")
    );
    // The payer's bank releases it.
    let rc = committed(
        b0.release_payment(req(&sign(&b0k, Op::ReleasePayment { payment: f1.tx_id })))
            .await,
    );
    assert_eq!(effect(&rc).kind, "settled");
    assert_eq!(t.balance(id(&fraudster)).await, 10_00);
    // Another one the payer voids: the reservation is released, nothing moves.
    let f2 = pay(&payer, id(&fraudster), 20_00);
    assert_eq!(effect(&committed(w.submit(req(&f2)).await)).kind, "held");
    let a = acct(&mut cb, id(&payer)).await;
    assert_eq!((a.balance, a.reserved, a.free), (199_990_00, 20_00, 199_970_00));
    let rc = committed(
        w.submit(req(&sign(&payer, Op::VoidPayment { payment: f2.tx_id })))
            .await,
    );
    assert_eq!(effect(&rc).kind, "none");
    let a = acct(&mut cb, id(&payer)).await;
    assert_eq!((a.balance, a.reserved, a.free), (199_990_00, 0, 199_990_00));
    assert_eq!(t.balance(id(&fraudster)).await, 10_00);
    assert!(held(&mut cb, None).await.is_empty());
    refused!(
        t,
        w.submit(req(&sign(&payer, Op::VoidPayment { payment: f2.tx_id }))),
        Code::NotFound,
        "UNKNOWN_PAYMENT"
    );
    // Off the registry, small payments to it move at once again.
    committed(
        cb.flag_fraud(req(&sign(
            &cbk,
            Op::FlagFraud {
                account: id(&fraudster),
                flagged: false,
            },
        )))
        .await,
    );
    let rc = committed(w.submit(req(&pay(&payer, id(&fraudster), 30_00))).await);
    assert_eq!(effect(&rc).kind, "none");
    assert_eq!(t.balance(id(&fraudster)).await, 40_00);
    // Any bank may report any client account: bank 1 flags bank 0's p2, and
    // the entry names bank 1 (it stays on the registry over the restart).
    committed(
        b1.flag_fraud(req(&sign(
            &b1k,
            Op::FlagFraud {
                account: id(&p2),
                flagged: true,
            },
        )))
        .await,
    );
    assert_eq!(acct(&mut cb, id(&p2)).await.fraud_flagged_by, bytes(&b1k));

    // A held payment whose payer's key is rotated: the old key can neither
    // confirm nor void it (KEY_REVOKED, as for its transfers), nor list it;
    // the new key confirms it.
    let rh = pay(&rot, id(&p5), 150_000_00);
    assert_eq!(effect(&committed(w.submit(req(&rh)).await)).kind, "held");
    let nk = fresh();
    committed(
        b0.rotate_key(req(&sign(
            &b0k,
            Op::RotateKey {
                account: id(&rot),
                new_key: id(&nk),
            },
        )))
        .await,
    );
    refused!(
        t,
        w.submit(req(&sign(&rot, Op::ConfirmPayment { payment: rh.tx_id }))),
        Code::PermissionDenied,
        "KEY_REVOKED"
    );
    refused!(
        t,
        w.submit(req(&sign(&rot, Op::VoidPayment { payment: rh.tx_id }))),
        Code::PermissionDenied,
        "KEY_REVOKED"
    );
    refused!(
        t,
        w.list_held_payments(pb::GetAccountRequest {
            query: Some(query(id(&rot), &rot, LIST_HELD)),
        }),
        Code::PermissionDenied,
        "KEY_REVOKED"
    );
    let l = w
        .list_held_payments(pb::GetAccountRequest {
            query: Some(query(id(&rot), &nk, LIST_HELD)),
        })
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].payment_id, rh.tx_id.0.to_vec());
    let rc = committed(
        w.submit(req(&sign(&nk, Op::ConfirmPayment { payment: rh.tx_id })))
            .await,
    );
    assert_eq!(effect(&rc).kind, "settled");
    assert_eq!(t.balance(id(&p5)).await, 150_000_00);
    assert_eq!(t.balance(id(&rot)).await, 50_000_00);

    // 3. Business signatories: 2 of 3 keys for payments of 10 000 ₽ and more.
    let (s1, s2, s3) = (fresh(), fresh(), fresh());
    committed(
        b0.set_signatories(req(&sign(
            &b0k,
            Op::SetSignatories {
                account: id(&biz),
                min_amount: 10_000_00,
                required: 2,
                keys: vec![id(&s1), id(&s2), id(&s3)],
            },
        )))
        .await,
    );
    let rule = acct(&mut cb, id(&biz)).await.signatories.expect("a signatory rule");
    assert_eq!((rule.min_amount, rule.required), (10_000_00, 2));
    let mut want = vec![bytes(&s1), bytes(&s2), bytes(&s3)];
    want.sort();
    let mut got = rule.keys.clone();
    got.sort();
    assert_eq!(got, want);
    refused!(
        t,
        b0.set_signatories(req(&sign(
            &b0k,
            Op::SetSignatories {
                account: id(&biz),
                min_amount: 1,
                required: 4,
                keys: vec![id(&s1), id(&s2), id(&s3)],
            },
        ))),
        Code::InvalidArgument,
        "INVALID_RULE"
    );
    refused!(
        t,
        b1.set_signatories(req(&sign(
            &b1k,
            Op::SetSignatories {
                account: id(&biz),
                min_amount: 1,
                required: 1,
                keys: vec![id(&s1)],
            },
        ))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    let sp = pay(&biz, id(&p3), 20_000_00);
    let rc = committed(w.submit(req(&sp)).await);
    assert_eq!(effect(&rc).kind, "held");
    let l = held(&mut cb, Some(id(&p3))).await;
    assert_eq!(l.len(), 1);
    assert_eq!(
        (
            l[0].payment_id.clone(),
            l[0].kind.as_str(),
            l[0].required,
            l[0].approvals.len()
        ),
        (sp.tx_id.0.to_vec(), "signatures", 2, 0)
    );
    // Neither the payer nor its bank may push it through.
    refused!(
        t,
        w.submit(req(&sign(&biz, Op::ConfirmPayment { payment: sp.tx_id }))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    refused!(
        t,
        b0.release_payment(req(&sign(&b0k, Op::ReleasePayment { payment: sp.tx_id }))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    let rc = committed(
        w.submit(req(&sign(&s1, Op::ConfirmPayment { payment: sp.tx_id })))
            .await,
    );
    assert_eq!(effect(&rc).kind, "approved");
    assert_eq!(t.balance(id(&p3)).await, 0);
    assert_eq!(held(&mut cb, Some(id(&p3))).await[0].approvals, vec![bytes(&s1)]);
    refused!(
        t,
        w.submit(req(&sign(&s1, Op::ConfirmPayment { payment: sp.tx_id }))),
        Code::AlreadyExists,
        "ALREADY_APPROVED"
    );
    let rc = committed(
        w.submit(req(&sign(&s2, Op::ConfirmPayment { payment: sp.tx_id })))
            .await,
    );
    assert_eq!(effect(&rc).kind, "settled");
    assert_eq!(t.balance(id(&p3)).await, 20_000_00);
    assert_eq!(t.balance(id(&biz)).await, 980_000_00);
    // Below the rule's amount: no signatures needed.
    let rc = committed(w.submit(req(&pay(&biz, id(&p3), 9_999_99))).await);
    assert_eq!(effect(&rc).kind, "none");
    assert_eq!(t.balance(id(&p3)).await, 29_999_99);

    // 4. Restart with two payments waiting: one new-payee hold (exactly at
    // the threshold) and one with one of its two signatures.
    let np = pay(&payer, id(&p4), 100_000_00);
    assert_eq!(effect(&committed(w.submit(req(&np)).await)).kind, "held");
    let sg = pay(&biz, id(&p4), 50_000_00);
    assert_eq!(effect(&committed(w.submit(req(&sg)).await)).kind, "held");
    assert_eq!(
        effect(&committed(
            w.submit(req(&sign(&s3, Op::ConfirmPayment { payment: sg.tx_id })))
                .await
        ))
        .kind,
        "approved"
    );
    let waiting = held(&mut cb, None).await;
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    let registry = cb
        .list_fraud_registry(pb::ListFraudRegistryRequest {})
        .await
        .unwrap()
        .into_inner();
    let everyone = [&payer, &biz, &p1, &p2, &p3, &p4, &p5, &fraudster, &rot];
    let mut accounts = Vec::new();
    for k in everyone {
        accounts.push(acct(&mut cb, id(k)).await);
    }
    let s = t.supply().await;
    drop((cb, b0, b1, w));
    t.restart().await;

    let mut cb = t.cb(Role::CentralBank).await;
    let mut w = t.wallet(Role::Anonymous).await;
    let s2 = t.supply().await;
    assert_eq!((s2.height, &s2.state_hash), (s.height, &s.state_hash));
    assert_eq!(held(&mut cb, None).await, waiting);
    assert_eq!(
        cb.list_fraud_registry(pb::ListFraudRegistryRequest {})
            .await
            .unwrap()
            .into_inner(),
        registry
    );
    for (k, before) in everyone.iter().zip(&accounts) {
        let now = acct(&mut cb, id(k)).await;
        assert_eq!(&now, before, "account changed over the restart");
    }
    let a = acct(&mut cb, id(&payer)).await;
    assert_eq!((a.reserved, a.free), (100_000_00, 99_960_00));
    assert_eq!(acct(&mut cb, id(&rot)).await.controller, bytes(&nk));
    assert_eq!(acct(&mut cb, id(&p2)).await.fraud_flagged_by, bytes(&b1k));
    let mut b0 = t.bank(Role::Bank(0)).await;
    let l = b0
        .list_held_payments(pb::ListHeldPaymentsRequest { account: bytes(&p4) })
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(l.len(), 2);
    // And they still work: the payer confirms one, a second signatory the other.
    let rc = committed(
        w.submit(req(&sign(&payer, Op::ConfirmPayment { payment: np.tx_id })))
            .await,
    );
    assert_eq!(effect(&rc).kind, "settled");
    refused!(
        t,
        w.submit(req(&sign(&s3, Op::ConfirmPayment { payment: sg.tx_id }))),
        Code::AlreadyExists,
        "ALREADY_APPROVED"
    );
    let rc = committed(
        w.submit(req(&sign(&s1, Op::ConfirmPayment { payment: sg.tx_id })))
            .await,
    );
    assert_eq!(effect(&rc).kind, "settled");
    assert_eq!(t.balance(id(&p4)).await, 150_000_00);
    assert!(held(&mut cb, None).await.is_empty());
    let s = t.supply().await;
    assert_eq!(
        (s.sum_balances, s.in_circulation),
        (s.in_circulation, s.issued - s.redeemed)
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_only_collection_and_key_rotation() {
    let t = TestNode::start().await;
    let (cbk, b0k, b1k) = (t.cb_key(), t.bank_key(0), t.bank_key(1));
    let mut cb = t.cb(Role::CentralBank).await;
    let mut b0 = t.bank(Role::Bank(0)).await;
    let mut b1 = t.bank(Role::Bank(1)).await;
    let mut w = t.wallet(Role::Anonymous).await;
    let c1 = open(&mut b0, &b0k, AccountKind::Business).await;
    let c2 = open(&mut b0, &b0k, AccountKind::Business).await;
    let claimant = open(&mut b0, &b0k, AccountKind::Business).await;
    fund(&mut b0, &b0k, &c1, 10_000_00).await;
    fund(&mut b0, &b0k, &c2, 10_000_00).await;
    committed(
        cb.set_controls(req(&sign(
            &cbk,
            Op::SetControls {
                hold_threshold: 0,
                hold_window_ms: 86_400_000,
                protected_minimum: 1_000_00,
            },
        )))
        .await,
    );

    // 1. Receive-only freeze by the bank: credits arrive, payments do not leave.
    committed(
        b0.freeze_receive_only(req(&sign(&b0k, Op::FreezeReceiveOnly { account: id(&c1) })))
            .await,
    );
    assert_eq!(
        acct(&mut cb, id(&c1)).await.status,
        pb::AccountStatus::ReceiveOnly as i32
    );
    fund(&mut b0, &b0k, &c1, 500_00).await;
    assert_eq!(t.balance(id(&c1)).await, 10_500_00);
    refused!(
        t,
        w.submit(req(&pay(&c1, id(&claimant), 1_00))),
        Code::FailedPrecondition,
        "ACCOUNT_RECEIVE_ONLY"
    );
    refused!(
        t,
        b0.freeze_receive_only(req(&sign(&b0k, Op::FreezeReceiveOnly { account: id(&c1) }))),
        Code::FailedPrecondition,
        "ACCOUNT_RECEIVE_ONLY"
    );
    refused!(
        t,
        b1.freeze_receive_only(req(&sign(&b1k, Op::FreezeReceiveOnly { account: id(&c1) }))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    // The central bank's receive-only freeze: its bank cannot lift it.
    committed(
        cb.freeze_receive_only(req(&sign(&cbk, Op::FreezeReceiveOnly { account: id(&c2) })))
            .await,
    );
    refused!(
        t,
        b0.unfreeze_account(req(&sign(&b0k, Op::Unfreeze { account: id(&c2) }))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    committed(
        cb.unfreeze_account(req(&sign(&cbk, Op::Unfreeze { account: id(&c2) })))
            .await,
    );
    assert_eq!(acct(&mut cb, id(&c2)).await.status, pb::AccountStatus::Active as i32);
    committed(w.submit(req(&pay(&c2, id(&claimant), 1_00))).await);

    // 2. Court-ordered collection: free funds above the protected minimum,
    // from a receive-only account too.
    let rc = committed(
        b0.collect(req(&sign(
            &b0k,
            Op::Collect {
                debtor: id(&c1),
                claimant: id(&claimant),
                amount: 1_000_000_00,
            },
        )))
        .await,
    );
    let e = effect(&rc);
    assert_eq!((e.kind.as_str(), e.collected), ("collected", 9_500_00));
    assert_eq!(t.balance(id(&c1)).await, 1_000_00);
    assert_eq!(t.balance(id(&claimant)).await, 9_500_00 + 1_00);
    refused!(
        t,
        b0.collect(req(&sign(
            &b0k,
            Op::Collect {
                debtor: id(&c1),
                claimant: id(&claimant),
                amount: 1,
            },
        ))),
        Code::FailedPrecondition,
        "NOTHING_COLLECTABLE"
    );
    // Another bank may not collect from bank 0's client.
    refused!(
        t,
        b1.collect(req(&sign(
            &b1k,
            Op::Collect {
                debtor: id(&c2),
                claimant: id(&t.business_key(1)),
                amount: 1_00,
            },
        ))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    // The central bank collects from any bank's client (business-2 is bank 1's).
    let debtor = t.business_key(1);
    let before = t.balance(id(&debtor)).await;
    let rc = committed(
        cb.collect(req(&sign(
            &cbk,
            Op::Collect {
                debtor: id(&debtor),
                claimant: id(&claimant),
                amount: 2_500_00,
            },
        )))
        .await,
    );
    assert_eq!(
        (effect(&rc).kind.as_str(), effect(&rc).collected),
        ("collected", 2_500_00)
    );
    assert_eq!(t.balance(id(&debtor)).await, before - 2_500_00);
    assert_eq!(t.balance(id(&claimant)).await, 1_00 + 9_500_00 + 2_500_00);
    // The bank lifts its own receive-only freeze; the account pays again.
    committed(
        b0.unfreeze_account(req(&sign(&b0k, Op::Unfreeze { account: id(&c1) })))
            .await,
    );
    committed(w.submit(req(&pay(&c1, id(&claimant), 1_00))).await);
    assert_eq!(t.balance(id(&c1)).await, 999_00);

    // 3. Key rotation: the account keeps its id, the new key signs for it.
    let r = open(&mut b0, &b0k, AccountKind::Business).await;
    fund(&mut b0, &b0k, &r, 10_000_00).await;
    let n = fresh();
    committed(
        b0.rotate_key(req(&sign(
            &b0k,
            Op::RotateKey {
                account: id(&r),
                new_key: id(&n),
            },
        )))
        .await,
    );
    assert_eq!(acct(&mut cb, id(&r)).await.controller, bytes(&n));
    refused!(
        t,
        b1.rotate_key(req(&sign(
            &b1k,
            Op::RotateKey {
                account: id(&r),
                new_key: id(&fresh()),
            },
        ))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    for taken in [id(&claimant), id(&r), id(&n)] {
        refused!(
            t,
            b0.rotate_key(req(&sign(
                &b0k,
                Op::RotateKey {
                    account: id(&c2),
                    new_key: taken,
                },
            ))),
            Code::AlreadyExists,
            "KEY_IN_USE"
        );
    }
    refused!(
        t,
        w.submit(req(&pay(&r, id(&claimant), 1_00))),
        Code::PermissionDenied,
        "KEY_REVOKED"
    );
    let by_new = pay(&n, id(&claimant), 2_00);
    assert_eq!(by_new.body.signer, id(&n));
    let rc = committed(w.submit(req(&by_new)).await);
    assert_eq!(effect(&rc).kind, "none");
    assert_eq!(t.balance(id(&r)).await, 9_998_00);
    assert_eq!(t.balance(id(&claimant)).await, 12_001_00 + 1_00 + 2_00);
    let rec = w
        .get_receipt(pb::GetReceiptRequest {
            tx_id: by_new.tx_id.0.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((&rec.from, &rec.signer, rec.amount), (&bytes(&r), &bytes(&n), 2_00));
    // Through the bank's client path as well.
    let out = b0
        .submit_client_operations(pb::SubmitBatchRequest {
            operations: vec![wire(&pay(&n, id(&claimant), 3_00))],
            request_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(out.results[0].outcome, Some(pb::submit_result::Outcome::Committed(_))),
        "{out:?}"
    );
    assert_eq!(t.balance(id(&r)).await, 9_995_00);
    // Signed queries: the new key reads the account, the old one is refused.
    let a = w
        .get_account(pb::GetAccountRequest {
            query: Some(query(id(&r), &n, method::GET_ACCOUNT)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((&a.id, a.balance, &a.controller), (&bytes(&r), 9_995_00, &bytes(&n)));
    refused!(
        t,
        w.get_account(pb::GetAccountRequest {
            query: Some(query(id(&r), &r, method::GET_ACCOUNT)),
        }),
        Code::PermissionDenied,
        "KEY_REVOKED"
    );
    // The account's history (read with the new key) and its bank's statement
    // list the payments the new key signed.
    let hist = w
        .get_history(pb::GetHistoryRequest {
            query: Some(query_with(
                id(&r),
                &n,
                method::GET_HISTORY,
                ruble_e2e::ruble_ledger::query::history_params(0, 0),
            )),
            cursor: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let signed_by_new = |p: &pb::HistoryPage| p.entries.iter().filter(|e| e.signer == bytes(&n)).count();
    assert_eq!(signed_by_new(&hist), 2, "{hist:?}");
    let stmt = b0
        .get_statement(pb::GetStatementRequest {
            account: bytes(&r),
            cursor: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stmt.entries, hist.entries);

    // 4. Holds and collection; a held payment nobody acts on is voided at
    // its deadline (a one millisecond window): confirming it late is
    // PAYMENT_EXPIRED, and the next block's seal releases the reservation.
    // First with an hour's window: a collection leaves the reservation (and
    // the protected minimum) alone; the central bank voids the payment.
    committed(
        cb.set_controls(req(&sign(
            &cbk,
            Op::SetControls {
                hold_threshold: 1_000_00,
                hold_window_ms: WINDOW,
                protected_minimum: 1_000_00,
            },
        )))
        .await,
    );
    let x = open(&mut b0, &b0k, AccountKind::Business).await;
    let h1 = pay(&c2, id(&x), 2_000_00);
    assert_eq!(effect(&committed(w.submit(req(&h1)).await)).kind, "held");
    let rc = committed(
        cb.collect(req(&sign(
            &cbk,
            Op::Collect {
                debtor: id(&c2),
                claimant: id(&claimant),
                amount: 1_000_000_00,
            },
        )))
        .await,
    );
    assert_eq!(effect(&rc).collected, 9_999_00 - 2_000_00 - 1_000_00);
    let a = acct(&mut cb, id(&c2)).await;
    assert_eq!((a.balance, a.reserved, a.free), (3_000_00, 2_000_00, 1_000_00));
    refused!(
        t,
        b1.void_payment(req(&sign(&b1k, Op::VoidPayment { payment: h1.tx_id }))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    let rc = committed(
        cb.void_payment(req(&sign(&cbk, Op::VoidPayment { payment: h1.tx_id })))
            .await,
    );
    assert_eq!(effect(&rc).kind, "none");
    let a = acct(&mut cb, id(&c2)).await;
    assert_eq!((a.balance, a.reserved, a.free), (3_000_00, 0, 3_000_00));
    assert_eq!(t.balance(id(&x)).await, 0);
    // Then with one millisecond.
    committed(
        cb.set_controls(req(&sign(
            &cbk,
            Op::SetControls {
                hold_threshold: 1_000_00,
                hold_window_ms: 1,
                protected_minimum: 1_000_00,
            },
        )))
        .await,
    );
    let late = pay(&c2, id(&x), 2_000_00);
    let rc = committed(w.submit(req(&late)).await);
    assert_eq!(
        effect(&rc),
        pb::Effect {
            kind: "held".into(),
            held_until_ms: rc.timestamp_ms + 1,
            ..Default::default()
        }
    );
    assert_eq!(acct(&mut cb, id(&c2)).await.reserved, 2_000_00);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    refused!(
        t,
        w.submit(req(&sign(&c2, Op::ConfirmPayment { payment: late.tx_id }))),
        Code::FailedPrecondition,
        "PAYMENT_EXPIRED"
    );
    fund(&mut b0, &b0k, &x, 1_00).await;
    assert!(held(&mut cb, None).await.is_empty());
    let a = acct(&mut cb, id(&c2)).await;
    assert_eq!((a.balance, a.reserved, a.free), (3_000_00, 0, 3_000_00));
    assert_eq!(t.balance(id(&x)).await, 1_00);
    assert_eq!(acct(&mut cb, id(&c2)).await.balance, 3_000_00);
    refused!(
        t,
        w.submit(req(&sign(&c2, Op::ConfirmPayment { payment: late.tx_id }))),
        Code::NotFound,
        "UNKNOWN_PAYMENT"
    );
    refused!(
        t,
        b0.void_payment(req(&sign(&b0k, Op::VoidPayment { payment: late.tx_id }))),
        Code::NotFound,
        "UNKNOWN_PAYMENT"
    );
    let s = t.supply().await;
    assert_eq!(
        (s.sum_balances, s.in_circulation),
        (s.in_circulation, s.issued - s.redeemed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purpose_bound_money_tiers_and_sweep() {
    let t = TestNode::start().await;
    let (cbk, b0k, b1k) = (t.cb_key(), t.bank_key(0), t.bank_key(1));
    let mut cb = t.cb(Role::CentralBank).await;
    let mut b0 = t.bank(Role::Bank(0)).await;
    let mut b1 = t.bank(Role::Bank(1)).await;
    let mut w = t.wallet(Role::Anonymous).await;
    committed(
        cb.set_phase(req(&sign(&cbk, Op::SetPhase { phase: Phase::Retail })))
            .await,
    );
    let merchant = open(&mut b0, &b0k, AccountKind::Business).await; // a listed payee
    let shop = open(&mut b1, &b1k, AccountKind::Business).await; // of a listed category
    let other = open(&mut b0, &b0k, AccountKind::Business).await; // neither
    let citizen = open(&mut b0, &b0k, AccountKind::Retail).await;

    // 1. Purpose-bound money.
    committed(
        b1.set_category(req(&sign(
            &b1k,
            Op::SetCategory {
                account: id(&shop),
                category: 5411,
            },
        )))
        .await,
    );
    assert_eq!(acct(&mut cb, id(&shop)).await.category, 5411);
    refused!(
        t,
        b0.set_category(req(&sign(
            &b0k,
            Op::SetCategory {
                account: id(&shop),
                category: 1,
            },
        ))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    let expires = now_ms() + 3_600_000;
    let define = |purpose: u32, payees: Vec<AccountId>, categories: Vec<u16>| {
        sign(
            &cbk,
            Op::DefinePurpose {
                purpose,
                issuer: id(&cbk),
                unlock_at_ms: 0,
                expires_at_ms: expires,
                payees,
                categories,
            },
        )
    };
    committed(
        cb.define_purpose(req(&define(7, vec![id(&merchant)], vec![5411])))
            .await,
    );
    refused!(
        t,
        cb.define_purpose(req(&define(7, vec![id(&other)], vec![]))),
        Code::AlreadyExists,
        "PURPOSE_EXISTS"
    );
    refused!(
        t,
        cb.define_purpose(req(&define(8, vec![], vec![]))),
        Code::InvalidArgument,
        "INVALID_RULE"
    );
    let purposes = cb
        .list_purposes(pb::ListPurposesRequest {})
        .await
        .unwrap()
        .into_inner()
        .purposes;
    assert_eq!(
        purposes,
        vec![pb::Purpose {
            id: 7,
            issuer: bytes(&cbk),
            unlock_at_ms: 0,
            expires_at_ms: expires,
            payees: vec![bytes(&merchant)],
            categories: vec![5411],
        }]
    );
    let s0 = t.supply().await;
    let tagged = |payee: &SigningKey, amount: u64, purpose: u32| {
        sign(
            &cbk,
            Op::PayTagged {
                payee: id(payee),
                amount,
                purpose,
            },
        )
    };
    let rc = committed(cb.issue_tagged(req(&tagged(&citizen, 50_000_00, 7))).await);
    assert_eq!(effect(&rc).kind, "none");
    let s1 = t.supply().await;
    assert_eq!(s1.issued, s0.issued + 50_000_00);
    assert_eq!(s1.in_circulation, s0.in_circulation + 50_000_00);
    assert_eq!(s1.sum_balances, s1.in_circulation);
    refused!(
        t,
        cb.issue_tagged(req(&tagged(&citizen, 1_00, 9))),
        Code::NotFound,
        "UNKNOWN_PURPOSE"
    );
    // The central bank's issuing is not a wallet operation.
    refused!(
        t,
        w.submit(req(&tagged(&citizen, 1_00, 7))),
        Code::PermissionDenied,
        "NOT_AUTHORISED"
    );
    let a = acct(&mut cb, id(&citizen)).await;
    assert_eq!((a.balance, a.tagged, a.free, a.reserved), (50_000_00, 50_000_00, 0, 0));
    assert_eq!(
        a.lots,
        vec![pb::Lot {
            purpose: 7,
            amount: 50_000_00,
            reserved: 0,
            unlock_at_ms: 0,
            expires_at_ms: expires,
        }]
    );
    refused!(
        t,
        w.submit(req(&pay(&citizen, id(&other), 1_000_00))),
        Code::FailedPrecondition,
        "PURPOSE_RESTRICTED"
    );
    // Purpose-bound funds are not collectable.
    refused!(
        t,
        cb.collect(req(&sign(
            &cbk,
            Op::Collect {
                debtor: id(&citizen),
                claimant: id(&other),
                amount: 1_00,
            },
        ))),
        Code::FailedPrecondition,
        "NOTHING_COLLECTABLE"
    );
    // The listed payee and the payee of the listed category receive free money.
    assert_eq!(
        effect(&committed(
            w.submit(req(&pay(&citizen, id(&merchant), 10_000_00))).await
        ))
        .kind,
        "none"
    );
    let m = acct(&mut cb, id(&merchant)).await;
    assert_eq!(
        (m.balance, m.free, m.tagged, m.lots.len()),
        (10_000_00, 10_000_00, 0, 0)
    );
    committed(w.submit(req(&pay(&citizen, id(&shop), 5_000_00))).await);
    let s = acct(&mut cb, id(&shop)).await;
    assert_eq!((s.balance, s.free, s.tagged), (5_000_00, 5_000_00, 0));
    let a = acct(&mut cb, id(&citizen)).await;
    assert_eq!((a.balance, a.tagged, a.free), (35_000_00, 35_000_00, 0));
    assert_eq!(a.lots[0].amount, 35_000_00);
    // Free money beside it pays anyone; the tagged rest still does not.
    fund(&mut b0, &b0k, &citizen, 3_000_00).await;
    committed(w.submit(req(&pay(&citizen, id(&other), 3_000_00))).await);
    assert_eq!(t.balance(id(&other)).await, 3_000_00);
    refused!(
        t,
        w.submit(req(&pay(&citizen, id(&other), 1_00))),
        Code::FailedPrecondition,
        "PURPOSE_RESTRICTED"
    );
    let s = t.supply().await;
    assert_eq!(s.sum_balances, s.in_circulation);

    // 2. Wallet tiers: the anonymous tier's caps.
    let anon = Limits {
        balance_cap: 15_000_00,
        payment_cap: 5_000_00,
        daily_outflow_cap: 10_000_00,
    };
    committed(
        cb.set_tier_limits(req(&sign(
            &cbk,
            Op::SetTierLimits {
                tier: Tier::Anonymous,
                limits: anon,
            },
        )))
        .await,
    );
    refused!(
        t,
        cb.set_tier_limits(req(&sign(
            &cbk,
            Op::SetTierLimits {
                tier: Tier::Full,
                limits: anon,
            },
        ))),
        Code::InvalidArgument,
        "INVALID_RULE"
    );
    let anon_pb = pb::Limits {
        balance_cap: 15_000_00,
        payment_cap: 5_000_00,
        daily_outflow_cap: 10_000_00,
    };
    let c = cb.get_controls(pb::GetControlsRequest {}).await.unwrap().into_inner();
    assert_eq!(c.anonymous_limits, Some(anon_pb));
    let anonymous = open(&mut b0, &b0k, AccountKind::Retail).await;
    committed(
        b0.set_tier(req(&sign(
            &b0k,
            Op::SetTier {
                account: id(&anonymous),
                tier: Tier::Anonymous,
            },
        )))
        .await,
    );
    refused!(
        t,
        b0.set_tier(req(&sign(
            &b0k,
            Op::SetTier {
                account: id(&merchant),
                tier: Tier::Anonymous,
            },
        ))),
        Code::InvalidArgument,
        "INVALID_KIND"
    );
    let a = acct(&mut cb, id(&anonymous)).await;
    assert_eq!((a.tier.as_str(), a.limits), ("anonymous", Some(anon_pb)));
    fund(&mut b0, &b0k, &anonymous, 15_000_00).await;
    refused!(
        t,
        w.submit(req(&pay(&merchant, id(&anonymous), 1_00))),
        Code::FailedPrecondition,
        "BALANCE_LIMIT_EXCEEDED"
    );
    refused!(
        t,
        w.submit(req(&pay(&anonymous, id(&merchant), 5_000_01))),
        Code::FailedPrecondition,
        "PAYMENT_LIMIT_EXCEEDED"
    );
    committed(w.submit(req(&pay(&anonymous, id(&merchant), 3_000_00))).await);
    assert_eq!(t.balance(id(&anonymous)).await, 12_000_00);

    // 3. The holding-limit sweep: the excess over the cap goes to the bank.
    committed(
        b0.set_sweep(req(&sign(
            &b0k,
            Op::SetSweep {
                account: id(&anonymous),
                enabled: true,
            },
        )))
        .await,
    );
    assert!(acct(&mut cb, id(&anonymous)).await.sweep);
    let settlement = |r: Result<Response<pb::Account>, Status>| r.unwrap().into_inner().balance;
    let before = settlement(b0.get_self(pb::GetSelfRequest {}).await);
    let sweep = pay(&merchant, id(&anonymous), 5_000_00);
    let rc = committed(w.submit(req(&sweep)).await);
    let e = effect(&rc);
    assert_eq!((e.kind.as_str(), e.swept), ("swept", 2_000_00));
    assert_eq!(t.balance(id(&anonymous)).await, 15_000_00);
    assert_eq!(t.balance(id(&merchant)).await, 8_000_00);
    assert_eq!(settlement(b0.get_self(pb::GetSelfRequest {}).await), before + 2_000_00);
    let page = b0
        .list_sweeps(pb::ListSweepsRequest { cursor: 0, limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 1, "{page:?}");
    let s = &page.entries[0];
    assert_eq!(
        (&s.tx_id, &s.from, &s.to, s.amount, s.kind.as_str()),
        (
            &sweep.tx_id.0.to_vec(),
            &bytes(&merchant),
            &bytes(&anonymous),
            5_000_00,
            "transfer"
        )
    );
    assert_eq!(
        s.effect.as_ref().map(|e| (e.kind.as_str(), e.swept)),
        Some(("swept", 2_000_00))
    );
    assert!(!page.more);
    let theirs = b1
        .list_sweeps(pb::ListSweepsRequest { cursor: 0, limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.entries.is_empty(), "{theirs:?}");
    // Purpose-bound money is never swept: past the cap it is refused.
    refused!(
        t,
        cb.issue_tagged(req(&tagged(&anonymous, 1_00, 7))),
        Code::FailedPrecondition,
        "BALANCE_LIMIT_EXCEEDED"
    );
    // Back to the full tier: the retail kind's caps (300 000 ₽) apply again.
    committed(
        b0.set_tier(req(&sign(
            &b0k,
            Op::SetTier {
                account: id(&anonymous),
                tier: Tier::Full,
            },
        )))
        .await,
    );
    let rc = committed(w.submit(req(&pay(&merchant, id(&anonymous), 1_000_00))).await);
    assert_eq!(effect(&rc).kind, "none");
    assert_eq!(t.balance(id(&anonymous)).await, 16_000_00);

    // 4. At its expiry a purpose's unspent money goes back to its issuer,
    // the central bank: out of circulation.
    let soon = now_ms() + 800;
    committed(
        cb.define_purpose(req(&sign(
            &cbk,
            Op::DefinePurpose {
                purpose: 11,
                issuer: id(&cbk),
                unlock_at_ms: 0,
                expires_at_ms: soon,
                payees: vec![id(&merchant)],
                categories: vec![],
            },
        )))
        .await,
    );
    committed(cb.issue_tagged(req(&tagged(&other, 4_000_00, 11))).await);
    let a = acct(&mut cb, id(&other)).await;
    assert_eq!((a.balance, a.tagged, a.free), (7_000_00, 4_000_00, 3_000_00));
    let s0 = t.supply().await;
    tokio::time::sleep(std::time::Duration::from_millis(soon.saturating_sub(now_ms()) + 100)).await;
    refused!(
        t,
        cb.issue_tagged(req(&tagged(&other, 1_00, 11))),
        Code::NotFound,
        "UNKNOWN_PURPOSE"
    );
    fund(&mut b0, &b0k, &other, 1_00).await; // a block after the expiry
    let s1 = t.supply().await;
    assert_eq!(s1.redeemed, s0.redeemed + 4_000_00);
    assert_eq!(s1.in_circulation, s0.in_circulation - 4_000_00);
    let a = acct(&mut cb, id(&other)).await;
    assert_eq!((a.balance, a.tagged, a.free, a.lots.len()), (3_001_00, 0, 3_001_00, 0));
    let ids: Vec<u32> = cb
        .list_purposes(pb::ListPurposesRequest {})
        .await
        .unwrap()
        .into_inner()
        .purposes
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, vec![7]);
    let s = t.supply().await;
    assert_eq!(
        (s.sum_balances, s.in_circulation),
        (s.in_circulation, s.issued - s.redeemed)
    );
}
