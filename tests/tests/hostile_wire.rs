//! Hostile request bytes over gRPC, table-driven, against a real node (real
//! TLS, RocksDB in a temp dir): malformed and truncated protobuf, bad field
//! values and lengths, invalid frames, missing or foreign credentials, and
//! request streams with a frame the decoder must refuse followed by a frame
//! that would execute if the stream were read on. Every case states the exact
//! status code and reason it must get, and the central bank's state hash must
//! be the same after it as before; the smuggled operation must never commit.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use ruble_e2e::fuzz::{frame, frame_claiming, send_case, Case, CaseKind, FuzzRole, FuzzTarget, Outcome};
use ruble_e2e::ruble_ledger::codec::Op;
use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::*;

const SUBMIT: &str = "/ruble.v1.WalletService/Submit";
const SUBMIT_STREAM: &str = "/ruble.v1.WalletService/SubmitStream";
const RECEIPT: &str = "/ruble.v1.WalletService/GetReceipt";
const OPEN: &str = "/ruble.v1.BankService/OpenAccount";
const CLIENT_ACCOUNT: &str = "/ruble.v1.BankService/GetClientAccount";
const CLIENT_STREAM: &str = "/ruble.v1.BankService/SubmitClientStream";
const CLIENT_BATCHES: &str = "/ruble.v1.BankService/SubmitClientBatches";
const ISSUE: &str = "/ruble.v1.CentralBankService/Issue";
const BLOCK: &str = "/ruble.v1.CentralBankService/GetBlock";
const LARGE: &str = "/ruble.v1.CentralBankService/StreamLargePayments";
const BLOCKS: &str = "/ruble.v1.BankService/StreamBlocks";

struct WireCase {
    name: &'static str,
    path: &'static str,
    role: FuzzRole,
    chunks: Vec<Bytes>,
    headers: Vec<(&'static str, String)>,
    code: &'static str,
    reason: &'static str,
    /// A transfer hidden behind the refused frame: it must not commit.
    smuggled: Option<Vec<u8>>,
}

fn case(
    name: &'static str,
    path: &'static str,
    role: FuzzRole,
    chunks: Vec<Bytes>,
    code: &'static str,
    reason: &'static str,
) -> WireCase {
    WireCase {
        name,
        path,
        role,
        chunks,
        headers: Vec::new(),
        code,
        reason,
        smuggled: None,
    }
}

fn cat(parts: &[&[u8]]) -> Bytes {
    parts.concat().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_request_bytes_get_a_precise_status_and_change_nothing() {
    let t = TestNode::start().await;
    let target = FuzzTarget::from_dev_dir(t.path()).unwrap();
    let (alice, bob) = (t.business_key(0), t.business_key(2));
    let transfer = || {
        sign(
            &alice,
            Op::Transfer {
                payee: id(&bob),
                amount: 1,
                purpose: "smuggled".into(),
            },
        )
    };
    let submit_req = |op: &ruble_e2e::ruble_ledger::codec::SignedOp| req(op).encode_to_vec();
    let batch_req = |op: &ruble_e2e::ruble_ledger::codec::SignedOp| {
        pb::SubmitBatchRequest {
            operations: vec![wire(op)],
            request_id: 1,
        }
        .encode_to_vec()
    };
    let valid = submit_req(&transfer());
    let half = &valid[..valid.len() / 2];

    let mut cases = vec![
        // Malformed and truncated protobuf.
        case(
            "garbage protobuf",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame(0, &[0xff; 40])],
            "INVALID_ARGUMENT",
            "MALFORMED_MESSAGE",
        ),
        case(
            "truncated protobuf",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame(0, half)],
            "INVALID_ARGUMENT",
            "MALFORMED_MESSAGE",
        ),
        case(
            "wrong wire type for a field",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame(0, &[0x0d, 1, 2, 3, 4])],
            "INVALID_ARGUMENT",
            "MALFORMED_MESSAGE",
        ),
        case(
            "over-long varint",
            RECEIPT,
            FuzzRole::Anonymous,
            vec![frame(
                0,
                &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            )],
            "INVALID_ARGUMENT",
            "MALFORMED_MESSAGE",
        ),
        case(
            "length past the end",
            RECEIPT,
            FuzzRole::Anonymous,
            vec![frame(0, &[0x0a, 0x7f, 1, 2])],
            "INVALID_ARGUMENT",
            "MALFORMED_MESSAGE",
        ),
        case(
            "malformed protobuf with a bank certificate",
            OPEN,
            FuzzRole::Bank,
            vec![frame(0, &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])],
            "INVALID_ARGUMENT",
            "MALFORMED_MESSAGE",
        ),
        case(
            "malformed protobuf with the central bank's certificate",
            ISSUE,
            FuzzRole::CentralBank,
            vec![frame(0, &[0x12; 9])],
            "INVALID_ARGUMENT",
            "MALFORMED_MESSAGE",
        ),
        // Bad field values and lengths.
        case(
            "tx id of 33 bytes",
            RECEIPT,
            FuzzRole::Anonymous,
            vec![frame(0, &pb::GetReceiptRequest { tx_id: vec![1; 33] }.encode_to_vec())],
            "INVALID_ARGUMENT",
            "MALFORMED",
        ),
        case(
            "account id of 0 bytes",
            CLIENT_ACCOUNT,
            FuzzRole::Bank,
            vec![frame(
                0,
                &pb::GetClientAccountRequest { account: vec![] }.encode_to_vec(),
            )],
            "INVALID_ARGUMENT",
            "MALFORMED",
        ),
        case(
            "operation body of garbage",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame(
                0,
                &pb::SubmitRequest {
                    operation: Some(pb::SignedOperation {
                        body: vec![0xee; 90],
                        signature: vec![0; 64],
                    }),
                }
                .encode_to_vec(),
            )],
            "INVALID_ARGUMENT",
            "MALFORMED",
        ),
        case(
            "block height u64::MAX",
            BLOCK,
            FuzzRole::CentralBank,
            vec![frame(0, &pb::GetBlockRequest { height: u64::MAX }.encode_to_vec())],
            "NOT_FOUND",
            "UNKNOWN_BLOCK",
        ),
        // A height no cursor can hold (it once panicked the stream's task).
        case(
            "large payments from height 2^63",
            LARGE,
            FuzzRole::CentralBank,
            vec![frame(
                0,
                &pb::StreamLargePaymentsRequest {
                    from_height: 1 << 63,
                    until_height: 0,
                }
                .encode_to_vec(),
            )],
            "OUT_OF_RANGE",
            "HEIGHT_OUT_OF_RANGE",
        ),
        case(
            "blocks from height u64::MAX",
            BLOCKS,
            FuzzRole::Bank,
            vec![frame(
                0,
                &pb::StreamBlocksRequest { from_height: u64::MAX }.encode_to_vec(),
            )],
            "OUT_OF_RANGE",
            "HEIGHT_OUT_OF_RANGE",
        ),
        // Invalid frames.
        case(
            "compressed flag without an encoding",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame(1, &valid)],
            "INVALID_ARGUMENT",
            "COMPRESSED_WITHOUT_ENCODING",
        ),
        case(
            "invalid compressed flag 2",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame(2, &valid)],
            "INVALID_ARGUMENT",
            "INVALID_COMPRESSION_FLAG",
        ),
        case(
            "invalid compressed flag 0xff",
            OPEN,
            FuzzRole::Bank,
            vec![frame(0xff, &valid)],
            "INVALID_ARGUMENT",
            "INVALID_COMPRESSION_FLAG",
        ),
        case(
            "frame claiming 4 GiB",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame_claiming(0, u32::MAX, &valid)],
            "RESOURCE_EXHAUSTED",
            "MESSAGE_TOO_LARGE",
        ),
        case(
            "frame longer than its body",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame_claiming(0, valid.len() as u32 + 1, &valid)],
            "INVALID_ARGUMENT",
            "TRUNCATED_MESSAGE",
        ),
        case(
            "frame header cut short",
            ISSUE,
            FuzzRole::CentralBank,
            vec![Bytes::from_static(&[0, 0, 0])],
            "INVALID_ARGUMENT",
            "TRUNCATED_MESSAGE",
        ),
        case(
            "a frame header and no body",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![frame_claiming(0, 40, &[])],
            "INVALID_ARGUMENT",
            "TRUNCATED_MESSAGE",
        ),
        case(
            "a stream ending after a frame header",
            SUBMIT_STREAM,
            FuzzRole::Bank,
            vec![frame_claiming(0, 40, &[])],
            "INVALID_ARGUMENT",
            "TRUNCATED_MESSAGE",
        ),
        case(
            "a stream ending inside a frame header",
            CLIENT_BATCHES,
            FuzzRole::Bank,
            vec![Bytes::from_static(&[0, 0])],
            "INVALID_ARGUMENT",
            "TRUNCATED_MESSAGE",
        ),
        case(
            "no message at all",
            SUBMIT,
            FuzzRole::Anonymous,
            vec![],
            "INVALID_ARGUMENT",
            "MISSING_MESSAGE",
        ),
        case(
            "unknown method",
            "/ruble.v1.WalletService/Steal",
            FuzzRole::Anonymous,
            vec![frame(0, &valid)],
            "UNIMPLEMENTED",
            "UNKNOWN_METHOD",
        ),
        // Missing or foreign credentials.
        case(
            "bank service without a client certificate",
            OPEN,
            FuzzRole::Anonymous,
            vec![frame(0, &valid)],
            "UNAUTHENTICATED",
            "CLIENT_CERTIFICATE_REQUIRED",
        ),
        case(
            "central-bank service with a bank certificate",
            ISSUE,
            FuzzRole::Bank,
            vec![frame(0, &valid)],
            "PERMISSION_DENIED",
            "WRONG_ROLE",
        ),
        case(
            "bank service with the central bank's certificate",
            CLIENT_ACCOUNT,
            FuzzRole::CentralBank,
            vec![frame(0, &[])],
            "PERMISSION_DENIED",
            "WRONG_ROLE",
        ),
    ];
    // The node accepts no compressed requests (no decompression bombs to bound).
    let mut gzip_garbage = case(
        "gzip-flagged garbage",
        SUBMIT,
        FuzzRole::Anonymous,
        vec![frame(1, &[0x1f, 0x8b, 0, 1, 2, 3, 4, 5])],
        "UNIMPLEMENTED",
        "UNSUPPORTED_ENCODING",
    );
    gzip_garbage.headers.push(("grpc-encoding", "gzip".into()));
    cases.push(gzip_garbage);
    let mut brotli = case(
        "an encoding the node does not speak",
        SUBMIT,
        FuzzRole::Anonymous,
        vec![frame(1, &valid)],
        "UNIMPLEMENTED",
        "UNSUPPORTED_ENCODING",
    );
    brotli.headers.push(("grpc-encoding", "br".into()));
    cases.push(brotli);

    // Streams: a refused frame followed by a frame carrying a real transfer.
    // tonic's decoder has consumed part of the refused frame; reading on would
    // parse the smuggled frame as a new one and execute it.
    for (path, role, encode) in [
        (
            SUBMIT_STREAM,
            FuzzRole::Anonymous,
            &submit_req as &dyn Fn(&_) -> Vec<u8>,
        ),
        (CLIENT_STREAM, FuzzRole::Bank, &submit_req),
        (CLIENT_BATCHES, FuzzRole::Bank, &batch_req),
    ] {
        let smuggle = |name, code, reason, head: &[u8]| {
            let op = transfer();
            let mut c = case(
                name,
                path,
                role,
                vec![cat(&[head, &frame(0, &encode(&op))])],
                code,
                reason,
            );
            c.smuggled = Some(op.tx_id.0.to_vec());
            c
        };
        cases.push(smuggle(
            "stream: compressed flag, then a frame",
            "INVALID_ARGUMENT",
            "COMPRESSED_WITHOUT_ENCODING",
            &[1],
        ));
        cases.push(smuggle(
            "stream: invalid flag, then a frame",
            "INVALID_ARGUMENT",
            "INVALID_COMPRESSION_FLAG",
            &[7],
        ));
        cases.push(smuggle(
            "stream: fake oversize length, then a frame",
            "RESOURCE_EXHAUSTED",
            "MESSAGE_TOO_LARGE",
            &[0, 0xff, 0xff, 0xff, 0xff],
        ));
        cases.push(smuggle(
            "stream: malformed message, then a frame",
            "INVALID_ARGUMENT",
            "MALFORMED_MESSAGE",
            &frame(0, &[0xff; 7]),
        ));
    }
    assert!(cases.len() >= 30, "{} cases", cases.len());

    let mut wallet = t.wallet(Role::Anonymous).await;
    for c in &cases {
        let before = t.state_hash().await;
        let mut ch = target.connect(c.role).await.unwrap();
        let wc = Case {
            kind: CaseKind::Frame,
            family: "table",
            name: c.name.to_string(),
            content_type: Some("application/grpc"),
            headers: c.headers.clone(),
            chunks: c.chunks.clone(),
            idle: false,
        };
        let out = send_case(&mut ch, c.path, &wc, Duration::from_secs(10)).await;
        match &out {
            Outcome::Status {
                code, reason, message, ..
            } => {
                assert_eq!(
                    (code.as_str(), reason.as_deref().unwrap_or("")),
                    (c.code, c.reason),
                    "{}: {message}",
                    c.name
                );
            }
            other => panic!("{}: expected {}/{}, got {other:?}", c.name, c.code, c.reason),
        }
        if let Some(tx) = &c.smuggled {
            let st = wallet
                .get_receipt(pb::GetReceiptRequest { tx_id: tx.clone() })
                .await
                .expect_err("the smuggled transfer must not commit");
            assert_eq!(reason(&st), "UNKNOWN_TX", "{}", c.name);
        }
        assert_eq!(t.state_hash().await, before, "{}: state changed", c.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_before_a_refused_frame_are_answered_and_nothing_after_it_runs() {
    let t = TestNode::start().await;
    let target = FuzzTarget::from_dev_dir(t.path()).unwrap();
    let (alice, bob) = (t.business_key(0), t.business_key(2));
    let pay = |purpose: &str| {
        sign(
            &alice,
            Op::Transfer {
                payee: id(&bob),
                amount: 1,
                purpose: purpose.into(),
            },
        )
    };
    let (first, after) = (pay("first"), pay("after the refused frame"));
    let body = cat(&[
        &frame(0, &req(&first).encode_to_vec()),
        &[1],
        &frame(0, &req(&after).encode_to_vec()),
    ]);
    let mut ch = target.connect(FuzzRole::Bank).await.unwrap();
    let c = Case {
        kind: CaseKind::Stream,
        family: "table",
        name: "valid, refused, smuggled".into(),
        content_type: Some("application/grpc"),
        headers: vec![],
        chunks: vec![body],
        idle: false,
    };
    match send_case(&mut ch, CLIENT_STREAM, &c, Duration::from_secs(10)).await {
        Outcome::Status {
            code, reason, messages, ..
        } => {
            assert_eq!(
                (code.as_str(), reason.as_deref()),
                ("INVALID_ARGUMENT", Some("COMPRESSED_WITHOUT_ENCODING"))
            );
            assert_eq!(
                messages, 1,
                "the operation before the refused frame is answered before the status"
            );
        }
        other => panic!("expected a status, got {other:?}"),
    }
    let mut w = t.wallet(Role::Anonymous).await;
    w.get_receipt(pb::GetReceiptRequest {
        tx_id: first.tx_id.0.to_vec(),
    })
    .await
    .expect("the operation before the refused frame committed");
    let st = w
        .get_receipt(pb::GetReceiptRequest {
            tx_id: after.tx_id.0.to_vec(),
        })
        .await
        .expect_err("nothing after the refused frame runs");
    assert_eq!(reason(&st), "UNKNOWN_TX");
}
