//! The whole two-tier story over gRPC with real TLS: the central bank issues
//! to a bank, the bank opens a business account and funds it, the business
//! pays another business, retail is refused until the central bank opens the
//! retail phase and accepted after. Then a restart keeps every balance, and
//! health checking and reflection answer.

use ruble_e2e::ruble_ledger::codec::Op;
use ruble_e2e::ruble_ledger::types::{AccountKind, Phase};
use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tier_story_then_restart() {
    let mut t = TestNode::start().await;
    let cbk = t.cb_key();
    let bank0 = t.bank_key(0);
    let mut cb = t.cb(Role::CentralBank).await;
    let mut bank = t.bank(Role::Bank(0)).await;
    let before = t.supply().await;

    // 1. The central bank issues 5 000 000 ₽ to bank 0.
    let r = cb
        .issue(req(&sign(
            &cbk,
            Op::Issue {
                bank: id(&bank0),
                amount: 5_000_000_00,
            },
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(r.outcome, Some(pb::submit_result::Outcome::Committed(_))));
    assert_eq!(t.supply().await.issued, before.issued + 5_000_000_00);

    // 2. The bank opens two business accounts and funds one.
    let alice = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let bob = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    for k in [&alice, &bob] {
        bank.open_account(req(&sign(
            &bank0,
            Op::OpenAccount {
                account: id(k),
                kind: AccountKind::Business,
            },
        )))
        .await
        .unwrap();
    }
    let fund = sign(
        &bank0,
        Op::Transfer {
            payee: id(&alice),
            amount: 10_000_00,
            purpose: "funding".into(),
        },
    );
    let out = bank
        .submit_client_operations(pb::SubmitBatchRequest {
            operations: vec![wire(&fund)],
            request_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(out.results[0].outcome, Some(pb::submit_result::Outcome::Committed(_))),
        "{out:?}"
    );

    // 3. Alice pays Bob through the wallet service.
    let mut wallet = t.wallet(Role::Anonymous).await;
    let pay = sign(
        &alice,
        Op::Transfer {
            payee: id(&bob),
            amount: 2_500_50,
            purpose: "invoice 17".into(),
        },
    );
    let r = wallet.submit(req(&pay)).await.unwrap().into_inner();
    let Some(pb::submit_result::Outcome::Committed(receipt)) = r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(receipt.tx_id, pay.tx_id.0.to_vec());
    assert_eq!(t.balance(id(&alice)).await, 10_000_00 - 2_500_50);
    assert_eq!(t.balance(id(&bob)).await, 2_500_50);
    // Resubmitting returns the original receipt, not a second payment.
    let again = wallet.submit(req(&pay)).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(
        again.outcome,
        Some(pb::submit_result::Outcome::Committed(receipt.clone()))
    );
    assert_eq!(t.balance(id(&bob)).await, 2_500_50);
    // Insufficient funds: a precise status with the ledger reason, and nothing changes.
    let hash = t.state_hash().await;
    let too_much = sign(
        &bob,
        Op::Transfer {
            payee: id(&alice),
            amount: 1_000_000_00,
            purpose: String::new(),
        },
    );
    let st = wallet.submit(req(&too_much)).await.unwrap_err();
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::FailedPrecondition, "INSUFFICIENT_FUNDS")
    );
    assert_eq!(t.state_hash().await, hash);

    // 4. Retail: refused before the retail phase, accepted after.
    let carol = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let open_retail = Op::OpenAccount {
        account: id(&carol),
        kind: AccountKind::Retail,
    };
    let st = bank
        .open_account(req(&sign(&bank0, open_retail.clone())))
        .await
        .unwrap_err();
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::FailedPrecondition, "PHASE_NOT_OPEN")
    );
    cb.set_phase(req(&sign(&cbk, Op::SetPhase { phase: Phase::Retail })))
        .await
        .unwrap();
    let st = cb
        .set_phase(req(&sign(&cbk, Op::SetPhase { phase: Phase::Business })))
        .await
        .unwrap_err();
    assert_eq!(reason(&st), "PHASE_NOT_FORWARD");
    bank.open_account(req(&sign(&bank0, open_retail))).await.unwrap();
    let pay_retail = sign(
        &bob,
        Op::Transfer {
            payee: id(&carol),
            amount: 500_00,
            purpose: "gift".into(),
        },
    );
    wallet.submit(req(&pay_retail)).await.unwrap();
    assert_eq!(t.balance(id(&carol)).await, 500_00);

    // Supply: Σ balances = issued − redeemed, per bank too.
    let s = t.supply().await;
    assert_eq!(s.sum_balances, s.in_circulation);
    assert_eq!(s.in_circulation, s.issued - s.redeemed);
    let b0 = s.banks.iter().find(|b| b.bank == id(&bank0).0.to_vec()).unwrap();
    assert_eq!(b0.clients, 2 + 3); // two dev businesses + alice, bob, carol

    // 5. Restart keeps every balance and the head.
    let (height, state) = (s.height, s.state_hash.clone());
    let accounts: Vec<_> = [&alice, &bob, &carol].iter().map(|k| id(k)).collect();
    let mut balances = Vec::new();
    for a in &accounts {
        balances.push(t.balance(*a).await);
    }
    t.restart().await;
    let s2 = t.supply().await;
    assert_eq!((s2.height, s2.state_hash), (height, state));
    for (a, b) in accounts.iter().zip(balances) {
        assert_eq!(t.balance(*a).await, b);
    }
    // The original receipt survives the restart too.
    let mut wallet = t.wallet(Role::Anonymous).await;
    let rec = wallet
        .get_receipt(pb::GetReceiptRequest {
            tx_id: pay.tx_id.0.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (rec.amount, rec.kind.as_str(), rec.purpose.as_str()),
        (2_500_50, "transfer", "invoice 17")
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    let t = TestNode::start().await;
    let ch = t.channel(Role::Anonymous).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ruble.v1.WalletService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut refl = ServerReflectionClient::new(ch);
    let reqs = tokio_stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let mut resp = refl.server_reflection_info(reqs).await.unwrap().into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("{msg:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "ruble.v1.WalletService",
        "ruble.v1.BankService",
        "ruble.v1.CentralBankService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
}
