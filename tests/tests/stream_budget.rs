//! Stream and connection budgets against a real node (real TLS, RocksDB in a
//! temp dir): idle streams opened without a client certificate cannot lock a
//! bank out of bulk submission or its block stream, an abandoned stream gives
//! its slot back, and connections over the per-address cap are closed.

use std::time::Duration;

use ruble_e2e::ruble_ledger::codec::Op;
use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::*;
use ruble_gateway::ctx::ClientLimits;
use ruble_ledger::pipeline::PipelineConfig;
use tonic::Code;
use tonic_types::StatusExt;

/// A request stream that never sends and never ends: an idle caller.
fn idle() -> futures::stream::Pending<pb::SubmitRequest> {
    futures::stream::pending()
}

fn scope(st: &tonic::Status) -> String {
    st.get_details_error_info()
        .and_then(|i| i.metadata.get("scope").cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_anonymous_streams_do_not_stop_a_banks_bulk_submission_or_block_stream() {
    let limits = ClientLimits {
        anonymous_stream_idle: Duration::from_secs(5),
        ..ClientLimits::default()
    };
    let per_ip = limits.max_streams_per_ip;
    let t = TestNode::start_with(limits, PipelineConfig::default()).await;

    // 200 idle SubmitStream calls with no client certificate, 20 to a
    // connection, as an outsider would open them.
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..10 {
        let ch = t.channel(Role::Anonymous).await;
        for _ in 0..20 {
            let mut w = pb::wallet_service_client::WalletServiceClient::new(ch.clone());
            match w.submit_stream(idle()).await {
                Ok(s) => held.push(s.into_inner()),
                Err(st) => refused.push(st),
            }
        }
    }
    assert_eq!(held.len(), per_ip, "one address gets its per-address budget, no more");
    assert_eq!(refused.len(), 200 - per_ip);
    for st in &refused {
        assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
        assert_eq!(reason(st), "TOO_MANY_STREAMS", "{st:?}");
        assert_eq!(scope(st), "peer", "{st:?}");
    }

    // Meanwhile a bank submits in bulk over its batch stream and follows the
    // chain over its block stream: its own budget, untouched.
    let before = t.supply().await.height;
    let mut bank = t.bank(Role::Bank(0)).await;
    let mut blocks = bank
        .stream_blocks(pb::StreamBlocksRequest {
            from_height: before + 1,
        })
        .await
        .expect("a bank's block stream opens beside 200 anonymous ones")
        .into_inner();
    let (alice, bob) = (t.business_key(0), t.business_key(2));
    let batches: Vec<pb::SubmitBatchRequest> = (0..4)
        .map(|b| pb::SubmitBatchRequest {
            operations: (0..250)
                .map(|_| {
                    wire(&sign(
                        &alice,
                        Op::Transfer {
                            payee: id(&bob),
                            amount: 1,
                            purpose: String::new(),
                        },
                    ))
                })
                .collect(),
            request_id: b,
        })
        .collect();
    let mut answers = bank
        .submit_client_batches(tokio_stream::iter(batches))
        .await
        .expect("a bank's batch stream opens beside 200 anonymous ones")
        .into_inner();
    let mut committed = 0;
    while let Some(r) = answers.message().await.unwrap() {
        for res in r.results {
            assert!(
                matches!(res.outcome, Some(pb::submit_result::Outcome::Committed(_))),
                "{res:?}"
            );
            committed += 1;
        }
    }
    assert_eq!(committed, 1000);
    let ev = tokio::time::timeout(Duration::from_secs(10), blocks.message())
        .await
        .expect("the block stream delivers")
        .unwrap()
        .expect("a block");
    assert!(ev.header.unwrap().height > before);
    assert!(!ev.operations.is_empty(), "the bank sees its clients' payments");

    // The idle streams end by themselves, with a status that says why ...
    let st = tokio::time::timeout(Duration::from_secs(10), held[0].message())
        .await
        .expect("an idle stream is ended by the node")
        .unwrap_err();
    assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
    assert_eq!(reason(&st), "STREAM_IDLE", "{st:?}");
    // ... and their slots are free again.
    let mut ok = false;
    for _ in 0..50 {
        let mut w = t.wallet(Role::Anonymous).await;
        if w.submit_stream(idle()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ok,
        "after the idle streams ended, an anonymous caller gets a stream again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_is_capped_by_its_own_budget_and_a_stream_that_stops_reading_gives_its_slot_back() {
    let limits = ClientLimits {
        max_streams_per_participant: 3,
        participant_stream_idle: Duration::from_secs(2),
        ..ClientLimits::default()
    };
    let t = TestNode::start_with(limits, PipelineConfig::default()).await;
    let ch = t.channel(Role::Bank(1)).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut b = pb::bank_service_client::BankServiceClient::new(ch.clone());
        open.push(
            b.submit_client_stream(idle())
                .await
                .expect("within the bank's budget")
                .into_inner(),
        );
    }
    let mut b = pb::bank_service_client::BankServiceClient::new(ch.clone());
    let Err(st) = b.stream_blocks(pb::StreamBlocksRequest { from_height: 1 }).await else {
        panic!("a fourth stream of the same bank is refused");
    };
    assert_eq!(
        (st.code(), reason(&st), scope(&st)),
        (Code::ResourceExhausted, "TOO_MANY_STREAMS".into(), "participant".into())
    );
    // Another bank is not affected.
    let mut other = t.bank(Role::Bank(0)).await;
    other
        .stream_blocks(pb::StreamBlocksRequest { from_height: 1 })
        .await
        .expect("bank 0 has a budget of its own");
    // Idle past the participants' idle time: each stream ends, STREAM_IDLE.
    for s in &mut open {
        let st = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("ended by the node")
            .unwrap_err();
        assert_eq!((st.code(), reason(&st)), (Code::DeadlineExceeded, "STREAM_IDLE".into()));
    }
    let mut opened = false;
    for _ in 0..50 {
        if b.submit_client_stream(idle()).await.is_ok() {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(opened, "the bank's slots came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_cap_are_closed_until_one_closes() {
    let limits = ClientLimits {
        max_connections_per_ip: 3,
        ..ClientLimits::default()
    };
    let t = TestNode::start_with(limits, PipelineConfig::default()).await;
    let mut chans = Vec::new();
    for _ in 0..3 {
        let mut w = t.wallet(Role::Anonymous).await;
        w.get_chain_info(pb::GetChainInfoRequest {})
            .await
            .expect("within the cap");
        chans.push(w);
    }
    let refused = try_call(&t).await;
    assert!(refused.is_err(), "a fourth connection from the same address is closed");
    chans.pop();
    // The server notices the close shortly after.
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if try_call(&t).await.is_ok() {
            served = true;
            break;
        }
    }
    assert!(served, "a freed slot takes a new connection");
}

/// One call on a new connection; an error if the connection is refused.
async fn try_call(t: &TestNode) -> anyhow::Result<()> {
    let tls =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(t.ca_pem()));
    let ch = tonic::transport::Endpoint::from_shared(t.endpoint())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .connect()
        .await?;
    pb::wallet_service_client::WalletServiceClient::new(ch)
        .get_chain_info(pb::GetChainInfoRequest {})
        .await?;
    Ok(())
}
