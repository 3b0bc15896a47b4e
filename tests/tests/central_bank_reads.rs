//! The central bank's bounded reads against a real node: `StreamLargePayments`
//! with `until_height` (the large payments of a range of blocks, then the
//! end of the stream, waiting for a block above the head), and the page
//! limits that `ListAccounts` and the statements share (0 asks for the
//! default page, which `max_page` caps like any other).

use std::time::Duration;

use ruble_e2e::ruble_ledger::codec::Op;
use ruble_e2e::ruble_ledger::pipeline::PipelineConfig;
use ruble_e2e::ruble_ledger::types::{AccountId, MAX_HEIGHT};
use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::*;
use ruble_gateway::ctx::ClientLimits;
use tonic::{Code, Streaming};

/// The dev genesis reports payments of 600 000 ₽ and more.
const LARGE: u64 = 700_000_00;
const SMALL: u64 = 1_000_00;

/// Bank 0 pays `amount` from its settlement account to business 1; the
/// height of the block it committed in.
async fn pay(t: &TestNode, amount: u64) -> u64 {
    let op = sign(
        &t.bank_key(0),
        Op::Transfer {
            payee: id(&t.business_key(0)),
            amount,
            purpose: format!("{amount} kopecks"),
        },
    );
    let r = t
        .wallet(Role::Anonymous)
        .await
        .submit(req(&op))
        .await
        .unwrap()
        .into_inner();
    match r.outcome {
        Some(pb::submit_result::Outcome::Committed(receipt)) => {
            assert_eq!(receipt.large, amount >= 600_000_00, "{receipt:?}");
            receipt.height
        }
        other => panic!("{other:?}"),
    }
}

/// The cursors of the large payments in blocks `from..=until`, as the
/// blocks themselves say.
async fn large_in_blocks(t: &TestNode, from: u64, until: u64) -> Vec<u64> {
    let mut cb = t.cb(Role::CentralBank).await;
    let mut out = Vec::new();
    for height in from..=until {
        let block = cb.get_block(pb::GetBlockRequest { height }).await.unwrap().into_inner();
        out.extend(block.operations.iter().filter(|r| r.large).map(|r| r.cursor));
    }
    out
}

async fn open(
    t: &TestNode,
    from_height: u64,
    until_height: u64,
) -> Result<Streaming<pb::LargePaymentReport>, tonic::Status> {
    t.cb(Role::CentralBank)
        .await
        .stream_large_payments(pb::StreamLargePaymentsRequest {
            from_height,
            until_height,
        })
        .await
        .map(|r| r.into_inner())
}

/// The next report's cursor, or `None` when the stream ended with OK.
async fn next(s: &mut Streaming<pb::LargePaymentReport>) -> Option<u64> {
    let m = tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("the stream neither sent nor ended")
        .expect("the stream ended with an error");
    m.map(|r| r.record.unwrap().cursor)
}

/// Every report until the stream ends (with OK).
async fn until_end(s: &mut Streaming<pb::LargePaymentReport>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(c) = next(s).await {
        out.push(c);
    }
    out
}

/// Nothing arrives and the stream stays open for a while.
async fn stays_open(s: &mut Streaming<pb::LargePaymentReport>) {
    if let Ok(m) = tokio::time::timeout(Duration::from_millis(500), s.message()).await {
        panic!("expected the stream to wait, got {m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payments_until_a_height_end_the_stream_once_sent() {
    let t = TestNode::start().await;
    // Large payments in some blocks, small ones in others (block 1, the dev
    // set-up, funds the businesses with large payments too).
    let mut heights = Vec::new();
    for amount in [LARGE, SMALL, LARGE, LARGE, SMALL, LARGE] {
        heights.push(pay(&t, amount).await);
    }
    let head = *heights.last().unwrap();
    assert_eq!(heights, (head - 5..=head).collect::<Vec<_>>(), "a block each");
    let middle = heights[3];

    // Up to a middle height: exactly those up to it, then the end.
    let want = large_in_blocks(&t, 1, middle).await;
    assert!(want.len() > 2, "{want:?}");
    assert_eq!(until_end(&mut open(&t, 0, middle).await.unwrap()).await, want);
    // From a height on, and up to the head.
    let want = large_in_blocks(&t, heights[1], head).await;
    assert_eq!(want.len(), 3, "{want:?}");
    assert_eq!(until_end(&mut open(&t, heights[1], head).await.unwrap()).await, want);
    // A block without large payments: nothing, and the end.
    let none: Vec<u64> = Vec::new();
    assert_eq!(
        until_end(&mut open(&t, heights[1], heights[1]).await.unwrap()).await,
        none
    );
    // A range that ends before it starts holds nothing.
    assert_eq!(until_end(&mut open(&t, middle, middle - 1).await.unwrap()).await, none);

    // Above the head: what is stored, then it waits for the block...
    let stored = large_in_blocks(&t, 1, head).await;
    let mut s = open(&t, 0, head + 1).await.unwrap();
    for &c in &stored {
        assert_eq!(next(&mut s).await, Some(c));
    }
    stays_open(&mut s).await;
    // ... and ends once it is committed, with its large payment.
    let h = pay(&t, LARGE).await;
    assert_eq!(h, head + 1);
    let new = large_in_blocks(&t, h, h).await;
    assert_eq!(new.len(), 1);
    assert_eq!(next(&mut s).await, Some(new[0]));
    assert_eq!(next(&mut s).await, None, "the stream ends after until_height");

    // A block above the head with only a small payment: the end, nothing sent.
    let mut s = open(&t, h + 1, h + 1).await.unwrap();
    stays_open(&mut s).await;
    assert_eq!(pay(&t, SMALL).await, h + 1);
    assert_eq!(next(&mut s).await, None);

    // 0 follows as before: everything stored, then it stays open.
    let mut s = open(&t, 0, 0).await.unwrap();
    for c in large_in_blocks(&t, 1, h + 1).await {
        assert_eq!(next(&mut s).await, Some(c));
    }
    stays_open(&mut s).await;
    let h = pay(&t, LARGE).await;
    assert_eq!(next(&mut s).await, large_in_blocks(&t, h, h).await.first().copied());
    stays_open(&mut s).await;

    // A height no chain reaches is refused, as from_height is.
    let st = open(&t, 0, MAX_HEIGHT + 1).await.unwrap_err();
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::OutOfRange, "HEIGHT_OUT_OF_RANGE"),
        "{st:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_capped_by_max_page_the_default_one_too() {
    let limits = ClientLimits {
        max_page: 4,
        ..ClientLimits::default()
    };
    let t = TestNode::start_with(limits, PipelineConfig::default()).await;
    // Business 1 (a client of bank 0): opened, funded, and paid five times.
    for _ in 0..5 {
        pay(&t, SMALL).await;
    }
    let business: AccountId = id(&t.business_key(0));
    let bank = t.bank(Role::Bank(0)).await;
    let statement = |limit: u32| {
        let mut bank = bank.clone();
        async move {
            bank.get_statement(pb::GetStatementRequest {
                account: business.0.to_vec(),
                cursor: 0,
                limit,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let all = statement(0).await;
    assert_eq!(
        (all.entries.len(), all.more),
        (4, true),
        "0 asks for the default page, capped at 4"
    );
    for (limit, len) in [(1, 1), (3, 3), (4, 4), (1000, 4)] {
        let p = statement(limit).await;
        assert_eq!((p.entries.len(), p.more), (len, true), "limit {limit}");
    }
    // The same rule for ListAccounts (the dev chain has 7 accounts).
    let mut cb = t.cb(Role::CentralBank).await;
    for (limit, len) in [(0, 4), (2, 2), (1000, 4)] {
        let p = cb
            .list_accounts(pb::ListAccountsRequest {
                limit,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((p.accounts.len(), p.more), (len, true), "limit {limit}");
    }
}
