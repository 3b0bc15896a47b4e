//! The authorisation matrix: each role (no certificate, central bank, bank 0,
//! bank 1) against each bank and central-bank RPC. Allowed or denied
//! (UNAUTHENTICATED without a certificate, PERMISSION_DENIED with the wrong
//! one), and a denied call changes nothing. Then the cross-bank cases: a bank
//! cannot read, freeze or move another bank's clients.

use ed25519_dalek::SigningKey;
use ruble_e2e::ruble_ledger::codec::Op;
use ruble_e2e::ruble_ledger::types::{AccountKind, Limits, Phase};
use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::*;
use tonic::{Code, Status};

const CB_RPCS: &[&str] = &[
    "Issue",
    "Redeem",
    "AdmitBank",
    "SuspendBank",
    "SetPhase",
    "SetLimits",
    "SetReportingThreshold",
    "CbFreeze",
    "CbUnfreeze",
    "GetSupply",
    "GetAnyAccount",
    "StreamLargePayments",
    "GetBlock",
    "ListAccounts",
];
const BANK_RPCS: &[&str] = &[
    "OpenAccount",
    "CloseAccount",
    "BankFreeze",
    "BankUnfreeze",
    "SubmitClientOperations",
    "SubmitClientStream",
    "SubmitClientBatches",
    "GetClientAccount",
    "GetStatement",
    "StreamBlocks",
    "GetSelf",
];

/// Makes one call as `role`. Operations are signed by the party the RPC is
/// meant for (the central bank, or the calling bank / bank 0), so a denial can
/// only come from the caller's certificate.
async fn call(t: &TestNode, role: Role, rpc: &str) -> Result<(), Status> {
    let cbk = t.cb_key();
    let bi = match role {
        Role::Bank(i) => i,
        _ => 0,
    };
    let bk = t.bank_key(bi);
    let client = t.business_key(bi); // business-1 is bank 0's, business-2 bank 1's
    let fresh = || SigningKey::generate(&mut rand::rngs::OsRng);
    let mut cb = t.cb(role).await;
    let mut bank = t.bank(role).await;
    match rpc {
        "Issue" => cb
            .issue(req(&sign(
                &cbk,
                Op::Issue {
                    bank: id(&bk),
                    amount: 1,
                },
            )))
            .await
            .map(drop),
        "Redeem" => cb
            .redeem(req(&sign(
                &cbk,
                Op::Redeem {
                    bank: id(&bk),
                    amount: 1,
                },
            )))
            .await
            .map(drop),
        "AdmitBank" => cb
            .admit_bank(req(&sign(
                &cbk,
                Op::AdmitBank {
                    bank: id(&fresh()),
                    name: "New Bank".into(),
                },
            )))
            .await
            .map(drop),
        "SuspendBank" => {
            // Admit a throwaway bank first (as the central bank), then suspend it as `role`.
            let nb = fresh();
            t.cb(Role::CentralBank)
                .await
                .admit_bank(req(&sign(
                    &cbk,
                    Op::AdmitBank {
                        bank: id(&nb),
                        name: "Tmp".into(),
                    },
                )))
                .await
                .unwrap();
            cb.suspend_bank(req(&sign(&cbk, Op::SuspendBank { bank: id(&nb) })))
                .await
                .map(drop)
        }
        "SetPhase" => cb
            .set_phase(req(&sign(&cbk, Op::SetPhase { phase: Phase::Retail })))
            .await
            .map(drop),
        "SetLimits" => cb
            .set_limits(req(&sign(
                &cbk,
                Op::SetLimits {
                    kind: AccountKind::Retail,
                    limits: Limits::UNLIMITED,
                },
            )))
            .await
            .map(drop),
        "SetReportingThreshold" => cb
            .set_reporting_threshold(req(&sign(&cbk, Op::SetReportingThreshold { amount: 600_000_00 })))
            .await
            .map(drop),
        "CbFreeze" | "CbUnfreeze" => {
            let victim = fresh();
            t.bank(Role::Bank(0))
                .await
                .open_account(req(&sign(
                    &t.bank_key(0),
                    Op::OpenAccount {
                        account: id(&victim),
                        kind: AccountKind::Business,
                    },
                )))
                .await
                .unwrap();
            if rpc == "CbUnfreeze" {
                t.cb(Role::CentralBank)
                    .await
                    .freeze_account(req(&sign(&cbk, Op::Freeze { account: id(&victim) })))
                    .await
                    .unwrap();
                cb.unfreeze_account(req(&sign(&cbk, Op::Unfreeze { account: id(&victim) })))
                    .await
                    .map(drop)
            } else {
                cb.freeze_account(req(&sign(&cbk, Op::Freeze { account: id(&victim) })))
                    .await
                    .map(drop)
            }
        }
        "GetSupply" => cb.get_supply(pb::GetSupplyRequest {}).await.map(drop),
        "GetAnyAccount" => cb
            .get_any_account(pb::GetClientAccountRequest {
                account: id(&client).0.to_vec(),
            })
            .await
            .map(drop),
        "StreamLargePayments" => cb
            .stream_large_payments(pb::StreamLargePaymentsRequest {
                from_height: 0,
                until_height: 0,
            })
            .await
            .map(drop),
        "GetBlock" => cb.get_block(pb::GetBlockRequest { height: 1 }).await.map(drop),
        "ListAccounts" => cb.list_accounts(pb::ListAccountsRequest::default()).await.map(drop),
        "OpenAccount" => bank
            .open_account(req(&sign(
                &bk,
                Op::OpenAccount {
                    account: id(&fresh()),
                    kind: AccountKind::Business,
                },
            )))
            .await
            .map(drop),
        "CloseAccount" => {
            let k = fresh();
            t.bank(Role::Bank(bi))
                .await
                .open_account(req(&sign(
                    &bk,
                    Op::OpenAccount {
                        account: id(&k),
                        kind: AccountKind::Business,
                    },
                )))
                .await
                .unwrap();
            bank.close_account(req(&sign(&bk, Op::CloseAccount { account: id(&k) })))
                .await
                .map(drop)
        }
        "BankFreeze" | "BankUnfreeze" => {
            let k = fresh();
            let mut own = t.bank(Role::Bank(bi)).await;
            own.open_account(req(&sign(
                &bk,
                Op::OpenAccount {
                    account: id(&k),
                    kind: AccountKind::Business,
                },
            )))
            .await
            .unwrap();
            if rpc == "BankUnfreeze" {
                own.freeze_account(req(&sign(&bk, Op::Freeze { account: id(&k) })))
                    .await
                    .unwrap();
                bank.unfreeze_account(req(&sign(&bk, Op::Unfreeze { account: id(&k) })))
                    .await
                    .map(drop)
            } else {
                bank.freeze_account(req(&sign(&bk, Op::Freeze { account: id(&k) })))
                    .await
                    .map(drop)
            }
        }
        "SubmitClientOperations" => {
            let pay = sign(
                &client,
                Op::Transfer {
                    payee: id(&bk),
                    amount: 1,
                    purpose: String::new(),
                },
            );
            let r = bank
                .submit_client_operations(pb::SubmitBatchRequest {
                    operations: vec![wire(&pay)],
                    request_id: 0,
                })
                .await?
                .into_inner();
            assert!(
                matches!(r.results[0].outcome, Some(pb::submit_result::Outcome::Committed(_))),
                "{r:?}"
            );
            Ok(())
        }
        "SubmitClientStream" => {
            let pay = sign(
                &client,
                Op::Transfer {
                    payee: id(&bk),
                    amount: 1,
                    purpose: String::new(),
                },
            );
            let mut s = bank
                .submit_client_stream(tokio_stream::iter(vec![req(&pay)]))
                .await?
                .into_inner();
            let r = s.message().await?.expect("one result");
            assert!(
                matches!(r.outcome, Some(pb::submit_result::Outcome::Committed(_))),
                "{r:?}"
            );
            Ok(())
        }
        "SubmitClientBatches" => {
            let pay = sign(
                &client,
                Op::Transfer {
                    payee: id(&bk),
                    amount: 1,
                    purpose: String::new(),
                },
            );
            let mut s = bank
                .submit_client_batches(tokio_stream::iter(vec![pb::SubmitBatchRequest {
                    operations: vec![wire(&pay)],
                    request_id: 7,
                }]))
                .await?
                .into_inner();
            let r = s.message().await?.expect("one response");
            assert_eq!(r.request_id, 7, "a response names its request");
            assert!(
                matches!(r.results[0].outcome, Some(pb::submit_result::Outcome::Committed(_))),
                "{r:?}"
            );
            Ok(())
        }
        "GetClientAccount" => bank
            .get_client_account(pb::GetClientAccountRequest {
                account: id(&client).0.to_vec(),
            })
            .await
            .map(drop),
        "GetStatement" => bank
            .get_statement(pb::GetStatementRequest {
                account: id(&client).0.to_vec(),
                cursor: 0,
                limit: 10,
            })
            .await
            .map(drop),
        "StreamBlocks" => bank
            .stream_blocks(pb::StreamBlocksRequest { from_height: 1 })
            .await
            .map(drop),
        "GetSelf" => bank.get_self(pb::GetSelfRequest {}).await.map(drop),
        other => panic!("unknown rpc {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_rpc() {
    let t = TestNode::start().await;
    let roles = [Role::Anonymous, Role::CentralBank, Role::Bank(0), Role::Bank(1)];
    let mut checked = 0;
    for role in roles {
        for (service, rpcs) in [("cb", CB_RPCS), ("bank", BANK_RPCS)] {
            for rpc in rpcs {
                let allowed = matches!((service, role), ("cb", Role::CentralBank) | ("bank", Role::Bank(_)));
                let before = t.state_hash().await;
                let r = call(&t, role, rpc).await;
                if allowed {
                    r.unwrap_or_else(|e| panic!("{role:?} {rpc}: expected allowed, got {e:?}"));
                } else {
                    let st = r.expect_err(&format!("{role:?} {rpc}: expected denied"));
                    let want = if role == Role::Anonymous {
                        Code::Unauthenticated
                    } else {
                        Code::PermissionDenied
                    };
                    assert_eq!(st.code(), want, "{role:?} {rpc}: {st:?}");
                    let why = if role == Role::Anonymous {
                        "CLIENT_CERTIFICATE_REQUIRED"
                    } else {
                        "WRONG_ROLE"
                    };
                    assert_eq!(reason(&st), why, "{role:?} {rpc}: {st:?}");
                    // Set-up steps of some rows change state on purpose; compare
                    // only rows without set-up.
                    if !matches!(
                        *rpc,
                        "SuspendBank" | "CbFreeze" | "CbUnfreeze" | "CloseAccount" | "BankFreeze" | "BankUnfreeze"
                    ) {
                        assert_eq!(
                            t.state_hash().await,
                            before,
                            "{role:?} {rpc}: a denied call changed state"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * (CB_RPCS.len() + BANK_RPCS.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_never_sees_or_touches_another_banks_clients() {
    let t = TestNode::start().await;
    let theirs = t.business_key(0); // bank 0's client
    let bank1 = t.bank_key(1);
    let mut b1 = t.bank(Role::Bank(1)).await;
    let before = t.state_hash().await;

    let st = b1
        .get_client_account(pb::GetClientAccountRequest {
            account: id(&theirs).0.to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    let st = b1
        .get_statement(pb::GetStatementRequest {
            account: id(&theirs).0.to_vec(),
            cursor: 0,
            limit: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    // Freezing it with its own key: the ledger refuses (not its client).
    let st = b1
        .freeze_account(req(&sign(&bank1, Op::Freeze { account: id(&theirs) })))
        .await
        .unwrap_err();
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::PermissionDenied, "NOT_AUTHORISED")
    );
    // Relaying an operation signed with bank 0's key: refused at the gateway.
    let st = b1
        .freeze_account(req(&sign(&t.bank_key(0), Op::Freeze { account: id(&theirs) })))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    // Moving bank 0's client's money through bank 1's bulk path.
    let pay = sign(
        &theirs,
        Op::Transfer {
            payee: id(&bank1),
            amount: 1_00,
            purpose: String::new(),
        },
    );
    let r = b1
        .submit_client_operations(pb::SubmitBatchRequest {
            operations: vec![wire(&pay)],
            request_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    match &r.results[0].outcome {
        Some(pb::submit_result::Outcome::Rejected(rj)) => assert_eq!(rj.reason, "NOT_AUTHORISED"),
        other => panic!("{other:?}"),
    }
    // A refused operation is answered with its id, so a client can match it.
    assert_eq!(r.results[0].tx_id, pay.tx_id.0.to_vec());
    // The same through bank 1's stream: refused, and answered with its id
    // (a result without one leaves the client waiting for it forever).
    let pay2 = sign(
        &theirs,
        Op::Transfer {
            payee: id(&bank1),
            amount: 2_00,
            purpose: String::new(),
        },
    );
    let r = b1
        .submit_client_stream(tokio_stream::iter(vec![req(&pay2)]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("one result");
    match &r.outcome {
        Some(pb::submit_result::Outcome::Rejected(rj)) => assert_eq!(rj.reason, "NOT_AUTHORISED"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.tx_id, pay2.tx_id.0.to_vec());
    // And through bank 1's batch stream.
    let pay3 = sign(
        &theirs,
        Op::Transfer {
            payee: id(&bank1),
            amount: 3_00,
            purpose: String::new(),
        },
    );
    let r = b1
        .submit_client_batches(tokio_stream::iter(vec![pb::SubmitBatchRequest {
            operations: vec![wire(&pay3)],
            request_id: 1,
        }]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("one response");
    match &r.results[0].outcome {
        Some(pb::submit_result::Outcome::Rejected(rj)) => assert_eq!(rj.reason, "NOT_AUTHORISED"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.results[0].tx_id, pay3.tx_id.0.to_vec());
    // The block stream shows bank 1 nothing of bank 0's clients.
    let mut s = b1
        .stream_blocks(pb::StreamBlocksRequest { from_height: 1 })
        .await
        .unwrap()
        .into_inner();
    let ev = s.message().await.unwrap().unwrap();
    for op in &ev.operations {
        assert_ne!(op.to, id(&theirs).0.to_vec(), "bank 1 saw bank 0's client");
        assert_ne!(op.signer, id(&theirs).0.to_vec());
    }
    assert!(!ev.operations.is_empty(), "bank 1 sees its own clients' funding");
    assert_eq!(t.state_hash().await, before, "no denied action changed state");
}

/// The cluster service is the central bank's alone: without a certificate
/// UNAUTHENTICATED, with a bank's PERMISSION_DENIED (WRONG_ROLE); the
/// central bank, on a single node, FAILED_PRECONDITION (NOT_REPLICATED):
/// there is no membership to show or change. Nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_service_is_the_central_banks_and_a_single_node_is_not_replicated() {
    use ruble_e2e::ruble_proto::v1::cluster_service_client::ClusterServiceClient;
    let t = TestNode::start().await;
    let before = t.state_hash().await;
    for (role, code, why) in [
        (Role::Anonymous, Code::Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED"),
        (Role::Bank(0), Code::PermissionDenied, "WRONG_ROLE"),
        (Role::Bank(1), Code::PermissionDenied, "WRONG_ROLE"),
        (Role::CentralBank, Code::FailedPrecondition, "NOT_REPLICATED"),
    ] {
        let mut c = ClusterServiceClient::new(t.channel(role).await);
        let answers = [
            c.get_cluster(pb::GetClusterRequest {}).await.map(drop),
            c.add_replica(pb::AddReplicaRequest {
                id: 2,
                raft_addr: "127.0.0.1:50062".into(),
                client_endpoint: "https://127.0.0.1:50052".into(),
                promote: true,
            })
            .await
            .map(drop),
            c.remove_replica(pb::RemoveReplicaRequest { id: 1 }).await.map(drop),
        ];
        for (rpc, r) in ["GetCluster", "AddReplica", "RemoveReplica"].iter().zip(answers) {
            let st = r.expect_err(&format!("{role:?} {rpc}: expected a refusal"));
            assert_eq!((st.code(), reason(&st).as_str()), (code, why), "{role:?} {rpc}: {st:?}");
        }
    }
    assert_eq!(t.state_hash().await, before);
}
