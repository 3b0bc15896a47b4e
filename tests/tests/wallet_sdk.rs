//! The wallet SDK and the `ruble-wallet` CLI against a real dev node.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ruble_e2e::ruble_ledger::types::TxId;
use ruble_e2e::*;
use ruble_wallet::{ClientBuilder, Error, Reason, WalletKey};

fn wallet_key(t: &TestNode, i: usize) -> WalletKey {
    WalletKey::from_signing_key(t.business_key(i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_pays_another_and_both_views_agree() {
    let t = TestNode::start().await;
    let c = t.sdk().await;
    let (a, b) = (wallet_key(&t, 0), wallet_key(&t, 1));
    let (a0, b0) = (
        c.account(&a).await.unwrap().balance,
        c.account(&b).await.unwrap().balance,
    );
    let p = c.pay(&a, b.account_id(), 12_345_67, "Invoice 42").await.unwrap();
    assert!(!p.duplicate);
    assert_eq!(c.account(&a).await.unwrap().balance, a0 - 12_345_67);
    assert_eq!(c.account(&b).await.unwrap().balance, b0 + 12_345_67);
    // Both histories hold the same record; the receipt lookup agrees.
    let ha = c.history(&a, 0, 100).await.unwrap();
    let hb = c.history(&b, 0, 100).await.unwrap();
    let ra = ha
        .entries
        .iter()
        .find(|r| r.tx_id == p.receipt.tx_id)
        .expect("in payer history");
    let rb = hb
        .entries
        .iter()
        .find(|r| r.tx_id == p.receipt.tx_id)
        .expect("in payee history");
    assert_eq!(ra, rb);
    assert_eq!(
        (ra.amount, ra.purpose.as_str(), ra.from, ra.to),
        (12_345_67, "Invoice 42", Some(a.account_id()), Some(b.account_id()))
    );
    assert_eq!(c.receipt(p.receipt.tx_id).await.unwrap(), *ra);
    // Paging: one entry per page walks the same history.
    let mut cursor = 0;
    let mut walked = Vec::new();
    loop {
        let page = c.history(&a, cursor, 1).await.unwrap();
        walked.extend(page.entries.iter().map(|r| r.tx_id));
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(walked, ha.entries.iter().map(|r| r.tx_id).collect::<Vec<_>>());
    // Typed errors: a ledger rejection is not a transport failure.
    let err = c.pay(&b, a.account_id(), u64::MAX / 2, "").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rejected {
                reason: Reason::InsufficientFunds,
                ..
            }
        ),
        "{err:?}"
    );
    let stranger = WalletKey::generate();
    let err = c.account(&stranger).await.unwrap_err();
    assert_eq!(err.reason(), Some(Reason::UnknownAccount));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_payments_from_one_account_land_exactly_once() {
    let t = TestNode::start().await;
    let c = t.sdk().await;
    let (a, b) = (wallet_key(&t, 0), wallet_key(&t, 1));
    let b0 = c.account(&b).await.unwrap().balance;
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let (c, a, payee) = (c.clone(), a.clone(), b.account_id());
            tokio::spawn(async move { c.pay(&a, payee, 100 + i, &format!("invoice {i}")).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        let p = task.await.unwrap().unwrap();
        assert!(!p.duplicate);
        assert!(ids.insert(p.receipt.tx_id));
    }
    let expected: u64 = (0..200u64).map(|i| 100 + i).sum();
    assert_eq!(c.account(&b).await.unwrap().balance, b0 + expected);
    let mut seen = HashSet::new();
    let mut cursor = 0;
    loop {
        let page = c.history(&b, cursor, 1000).await.unwrap();
        for r in &page.entries {
            if ids.contains(&r.tx_id) {
                assert!(seen.insert(r.tx_id), "a payment appears twice");
            }
        }
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(seen.len(), 200);
    // The batch API: another 200 invoices in one call.
    let ops: Vec<_> = (0..200u64)
        .map(|i| c.transfer(&a, b.account_id(), 1, &format!("batch {i}")).unwrap())
        .collect();
    let results = c.submit_batch(&ops).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|p| !p.duplicate)));
    assert_eq!(c.account(&b).await.unwrap().balance, b0 + expected + 200);
}

/// A TCP relay that can swallow a response and cut the connection.
async fn proxy(target: std::net::SocketAddr, cut: Arc<AtomicBool>) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let server = tokio::net::TcpStream::connect(target).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let cut = cut.clone();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if cut.load(Ordering::SeqCst) {
                        // Swallow the answer and drop the connection.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        cut.store(false, Ordering::SeqCst);
                        let _ = cw.shutdown().await;
                        return;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_dropped_connection_does_not_double_pay() {
    let t = TestNode::start().await;
    let cut = Arc::new(AtomicBool::new(false));
    let via = proxy(t.addr, cut.clone()).await;
    let c = ClientBuilder::new(format!("https://{via}"))
        .ca_pem(t.ca_pem())
        .tls_domain("localhost")
        .timeout(Duration::from_secs(5))
        .retries(5)
        .backoff(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let (a, b) = (wallet_key(&t, 0), wallet_key(&t, 1));
    let direct = t.sdk().await;
    let b0 = direct.account(&b).await.unwrap().balance;
    let op = c.transfer(&a, b.account_id(), 777_00, "retry me").unwrap();
    cut.store(true, Ordering::SeqCst);
    let p = c.submit(&op).await.unwrap();
    assert!(!cut.load(Ordering::SeqCst), "the connection was really cut");
    // The first attempt committed but its answer was lost; the retry got the original receipt.
    assert!(p.duplicate, "the retry must be answered as a duplicate: {p:?}");
    assert_eq!(p.receipt.tx_id, op.tx_id);
    assert_eq!(direct.account(&b).await.unwrap().balance, b0 + 777_00);
    // And resubmitting yet again still pays once.
    let again = direct.submit(&op).await.unwrap();
    assert_eq!(again.receipt, p.receipt);
    assert_eq!(direct.account(&b).await.unwrap().balance, b0 + 777_00);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_every_incoming_payment_once_across_a_restart() {
    let mut t = TestNode::start().await;
    let (a, b) = (wallet_key(&t, 0), wallet_key(&t, 1));
    let c = ClientBuilder::new(t.endpoint())
        .ca_pem(t.ca_pem())
        .timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    // Start after everything already committed (the dev funding).
    let start = c.history(&b, 0, 1000).await.unwrap().next_cursor;
    let mut watch = Box::pin(c.watch_incoming(&b, start));
    let mut sent: Vec<TxId> = Vec::new();
    for i in 0..5 {
        sent.push(
            c.pay(&a, b.account_id(), 10 + i, "before restart")
                .await
                .unwrap()
                .receipt
                .tx_id,
        );
    }
    let mut got: Vec<TxId> = Vec::new();
    while got.len() < 3 {
        got.push(
            tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
                .tx_id,
        );
    }
    t.restart().await;
    let c2 = t.sdk().await;
    for i in 0..5 {
        sent.push(
            c2.pay(&a, b.account_id(), 20 + i, "after restart")
                .await
                .unwrap()
                .receipt
                .tx_id,
        );
    }
    while got.len() < sent.len() {
        let r = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .expect("watch resumed")
            .unwrap()
            .unwrap();
        got.push(r.tx_id);
    }
    assert_eq!(got, sent, "every payment once, in order");
    // Nothing more arrives (no repeats).
    assert!(tokio::time::timeout(Duration::from_millis(500), watch.next())
        .await
        .is_err());
}

fn cli(t: &TestNode, args: &[&str]) -> (i32, serde_json::Value) {
    cli_env(t, args, &[])
}

/// `ruble-wallet --dev-dir <t> --json ARGS` with `env` set (and no
/// terminal); its exit code and last line of JSON.
fn cli_env(t: &TestNode, args: &[&str], env: &[(&str, &str)]) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(bin("ruble-wallet"))
        .arg("--dev-dir")
        .arg(t.path())
        .arg("--json")
        .args(args)
        .env_remove("RUBLE_WALLET_PASSPHRASE")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("{}");
    let v = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text} / {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_main_commands_with_json() {
    let t = TestNode::start().await;
    let key1 = t.key_file("business-1");
    let k1 = key1.to_str().unwrap();
    let newkey = t.path().join("new.json");
    let nk = newkey.to_str().unwrap();
    // keygen (encrypted) and address; passphrases from the variable or a
    // file, and --passphrase still (visible in `ps`).
    let secret = [("RUBLE_WALLET_PASSPHRASE", "s3cret")];
    let (code, v) = tokio::task::block_in_place(|| cli_env(&t, &["keygen", "--out", nk, "--encrypt"], &secret));
    assert_eq!(code, 0, "{v}");
    let addr_new = v["address"].as_str().unwrap().to_string();
    let pass_file = |name: &str, text: &str| {
        let p = t.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (right, wrong) = (pass_file("right.pass", "s3cret\n"), pass_file("wrong.pass", "wrong\n"));
    let (code, v) = tokio::task::block_in_place(|| cli(&t, &["--key", nk, "--passphrase-file", &right, "address"]));
    assert_eq!((code, v["address"].as_str().unwrap()), (0, addr_new.as_str()));
    let (code, v) = tokio::task::block_in_place(|| cli(&t, &["--key", nk, "--passphrase", "s3cret", "address"]));
    assert_eq!((code, v["address"].as_str().unwrap()), (0, addr_new.as_str()));
    let (code, v) = tokio::task::block_in_place(|| cli(&t, &["--key", nk, "--passphrase-file", &wrong, "address"]));
    assert_eq!((code, v["error"].as_str().unwrap()), (4, "WRONG_PASSPHRASE"));
    // No passphrase and no terminal to ask on: a key problem that says how to give one.
    let (code, v) = tokio::task::block_in_place(|| cli(&t, &["--key", nk, "address"]));
    assert_eq!((code, v["error"].as_str().unwrap()), (4, "KEY_FILE"), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("RUBLE_WALLET_PASSPHRASE"),
        "{v}"
    );
    // balance, pay, history, receipt, watch.
    let (code, v) = tokio::task::block_in_place(|| cli(&t, &["--key", k1, "balance"]));
    assert_eq!(code, 0, "{v}");
    let before = v["balance_kopecks"].as_u64().unwrap();
    let payee = t.key_file("business-2");
    let (_, v) = tokio::task::block_in_place(|| cli(&t, &["--key", payee.to_str().unwrap(), "address"]));
    let to = v["address"].as_str().unwrap().to_string();
    let (code, v) = tokio::task::block_in_place(|| {
        cli(
            &t,
            &[
                "--key",
                k1,
                "pay",
                "--to",
                &to,
                "--amount",
                "1250.50",
                "--purpose",
                "CLI invoice",
            ],
        )
    });
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["amount_kopecks"].as_u64(), Some(125_050));
    let tx = v["tx_id"].as_str().unwrap().to_string();
    let cursor = v["cursor"].as_u64().unwrap();
    let (_, v) = tokio::task::block_in_place(|| cli(&t, &["--key", k1, "balance"]));
    assert_eq!(v["balance_kopecks"].as_u64().unwrap(), before - 125_050);
    let (code, v) = tokio::task::block_in_place(|| cli(&t, &["--key", k1, "history"]));
    assert_eq!(code, 0);
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["tx_id"] == tx.as_str() && e["direction"] == "out"));
    let (code, v) = tokio::task::block_in_place(|| cli(&t, &["receipt", &tx]));
    assert_eq!((code, v["purpose"].as_str()), (0, Some("CLI invoice")));
    let from = (cursor - 1).to_string();
    let (code, v) = tokio::task::block_in_place(|| {
        cli(
            &t,
            &[
                "--key",
                payee.to_str().unwrap(),
                "watch",
                "--from-cursor",
                &from,
                "--count",
                "1",
            ],
        )
    });
    assert_eq!((code, v["tx_id"].as_str()), (0, Some(tx.as_str())));
    // Failures: insufficient funds (2), unknown account (2), node unreachable (3).
    let (code, v) =
        tokio::task::block_in_place(|| cli(&t, &["--key", k1, "pay", "--to", &to, "--amount", "99999999999"]));
    assert_eq!((code, v["error"].as_str()), (2, Some("INSUFFICIENT_FUNDS")));
    let (code, v) = tokio::task::block_in_place(|| cli_env(&t, &["--key", nk, "balance"], &secret));
    assert_eq!((code, v["error"].as_str()), (2, Some("UNKNOWN_ACCOUNT")));
    let (code, v) = tokio::task::block_in_place(|| {
        cli(
            &t,
            &[
                "--endpoint",
                "https://127.0.0.1:9",
                "--key",
                k1,
                "--timeout",
                "2s",
                "balance",
            ],
        )
    });
    assert_eq!((code, v["error"].as_str()), (3, Some("UNREACHABLE")));
    // The exit codes are the operator CLIs': a CA file that cannot be read
    // is a certificate problem (4; it was a usage error, 1) ...
    let ep = t.endpoint();
    let (code, v) = tokio::task::block_in_place(|| {
        cli(
            &t,
            &["--endpoint", &ep, "--ca", "/nonexistent/ca.pem", "--key", k1, "balance"],
        )
    });
    assert_eq!((code, v["error"].as_str()), (4, Some("CERTIFICATE")), "{v}");
    // ... and a command-line mistake is 1 (it was clap's 2, the code of a refusal).
    let out = std::process::Command::new(bin("ruble-wallet"))
        .args(["--json", "no-such-command"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// Runs `txgen` against `t` with `args` (output files in `out`); its exit
/// code, stderr and JSON report.
fn txgen(t: &TestNode, out: &std::path::Path, name: &str, args: &[&str]) -> (i32, String, serde_json::Value) {
    let report = out.join(format!("{name}.json"));
    let run = std::process::Command::new(bin("txgen"))
        .arg("--dev-dir")
        .arg(t.path())
        .arg("--report")
        .arg(&report)
        .arg("--receipts")
        .arg(out.join(format!("{name}.txt")))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    let v = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (run.status.code().unwrap_or(-1), stderr, v)
}

/// `txgen`'s contract: it sets up its own world, drives a closed loop of
/// pre-signed transfers and an open loop that outruns its pre-signing (so it
/// signs the rest while running), and reports every committed transfer, each
/// of which the auditor then finds in the chain. A pre-signed transfer is
/// kept as its plan and signature and rebuilt when sent, so a rebuild that
/// differed from what was signed shows here as `BAD_SIGNATURE` rejections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txgen_drives_a_node_and_every_transfer_it_reports_committed_is_in_the_chain() {
    let mut t = TestNode::start().await;
    let out = tempfile::tempdir().unwrap();
    let svg = out.path().join("closed.svg");
    let (code, stderr, closed) = tokio::task::block_in_place(|| {
        txgen(
            &t,
            out.path(),
            "closed",
            &[
                "--transfers",
                "3000",
                "--accounts",
                "20",
                "--batch",
                "64",
                "--calibrate",
                "--plot",
                svg.to_str().unwrap(),
            ],
        )
    });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(closed["mode"], "closed_loop");
    assert_eq!(
        (&closed["submitted"], &closed["committed"], &closed["rejected_total"]),
        (&3000.into(), &3000.into(), &0.into()),
        "{closed}"
    );
    assert_eq!(closed["presigned"], 3000);
    assert!(closed["latency_ms_p99"].as_f64().unwrap() >= closed["latency_ms_p50"].as_f64().unwrap());
    assert!(closed["latency_ms_p50"].as_f64().unwrap() > 0.0);
    assert!(closed["calibration"]["verify_ops_per_s"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));

    // Open loop, pre-signing a fifth of what it will send.
    let (code, stderr, open) = tokio::task::block_in_place(|| {
        txgen(
            &t,
            out.path(),
            "open",
            &[
                "--rate",
                "2000",
                "--duration",
                "2s",
                "--presign-max",
                "1000",
                "--accounts",
                "10",
            ],
        )
    });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(open["mode"], "open_loop");
    assert_eq!(open["presigned"], 1000);
    assert_eq!(open["rejected_total"], 0, "{open}");
    let committed = open["committed"].as_u64().unwrap();
    assert!(committed > 2000, "signed during the run too: {open}");
    assert_eq!(open["submitted"].as_u64().unwrap(), committed);

    // Every receipt once, and every one in the chain.
    let mut receipts = std::fs::read_to_string(out.path().join("closed.txt")).unwrap();
    receipts.push_str(&std::fs::read_to_string(out.path().join("open.txt")).unwrap());
    let ids: HashSet<&str> = receipts.lines().collect();
    assert_eq!(ids.len(), 3000 + committed as usize);
    assert!(ids.iter().all(|l| l.len() == 64 && TxId::from_hex(l).is_ok()));
    let all = out.path().join("all.txt");
    std::fs::write(&all, &receipts).unwrap();
    t.stop().await;
    let audit = std::process::Command::new(bin("ruble-node"))
        .args(["audit", "--data-dir"])
        .arg(t.path())
        .arg("--expect-committed")
        .arg(&all)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(audit.status.success(), "{report}");
    assert_eq!(report["expected_committed"], 3000 + committed);
    assert_eq!(report["missing"], serde_json::json!([]));
}

/// A run whose pre-signed transfers cannot fit beside the node is refused
/// before any work, with an error that names the way out, instead of being
/// killed by the kernel minutes into its signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txgen_refuses_to_pre_sign_more_than_memory_holds() {
    let t = TestNode::start().await;
    let before = t.supply().await;
    let out = tempfile::tempdir().unwrap();
    let (code, stderr, report) = tokio::task::block_in_place(|| {
        txgen(
            &t,
            out.path(),
            "huge",
            &["--transfers", "100000000000", "--presign-max", "100000000000"],
        )
    });
    assert_ne!(code, 0);
    assert!(
        stderr.contains("MemAvailable") && stderr.contains("--presign-max"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("setting up"),
        "refused before touching the node: {stderr}"
    );
    assert_eq!(report, serde_json::Value::Null, "no report for a refused run");
    assert_eq!(t.supply().await, before, "nothing issued, nothing opened");
}

/// A stand-in for a replica that does not lead: every call is answered
/// `UNAVAILABLE`/`NOT_LEADER` naming `leader`, exactly as the gateway's
/// `LedgerBackend` refusal is sent.
#[derive(Clone)]
struct NotLeaderReplica {
    leader: Option<String>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl tonic::server::NamedService for NotLeaderReplica {
    const NAME: &'static str = "ruble.v1.WalletService";
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for NotLeaderReplica {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let st = ruble_gateway::ctx::not_leader_status(self.leader.as_deref());
        std::future::ready(Ok(st.into_http()))
    }
}

/// Serves a [`NotLeaderReplica`] (plaintext, loopback); returns its endpoint.
async fn not_leader_replica(leader: Option<String>, calls: Arc<std::sync::atomic::AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = tonic::service::Routes::new(NotLeaderReplica { leader, calls });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

/// The SDK follows the leader by itself: connected to a replica that does
/// not lead, it goes where the NOT_LEADER answer points and pays there, once;
/// told no leader, it tries the next replica it was given; a dead replica
/// first in the list is skipped at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_follows_the_leader_named_by_a_replica() {
    let t = TestNode::start().await;
    let (a, b) = (wallet_key(&t, 0), wallet_key(&t, 1));

    // Told where the leader is.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let follower = not_leader_replica(Some(t.endpoint()), calls.clone()).await;
    let c = ClientBuilder::new(follower.clone())
        .ca_pem(t.ca_pem())
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    assert_eq!(c.endpoint(), t.endpoint(), "followed at connect");
    let b0 = c.account(&b).await.unwrap().balance;
    let p = c.pay(&a, b.account_id(), 1_00, "to the leader").await.unwrap();
    assert!(!p.duplicate);
    assert_eq!(c.account(&b).await.unwrap().balance, b0 + 1_00, "paid once");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the follower was asked once");

    // No leader known (an election): the next replica.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let electing = not_leader_replica(None, calls.clone()).await;
    let c = ClientBuilder::new(electing)
        .replicas([t.endpoint()])
        .ca_pem(t.ca_pem())
        .backoff(Duration::from_millis(10))
        .connect()
        .await
        .unwrap();
    assert_eq!(c.endpoint(), t.endpoint());
    c.pay(&a, b.account_id(), 1_00, "after the election").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Without other replicas, a NOT_LEADER with no leader is an error to the caller.
    let lone = not_leader_replica(None, Arc::default()).await;
    let e = ClientBuilder::new(lone)
        .retries(1)
        .backoff(Duration::from_millis(10))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotLeader { leader: None }), "{e:?}");

    // A dead replica first: skipped.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let c = ClientBuilder::new(dead)
        .replicas([t.endpoint()])
        .ca_pem(t.ca_pem())
        .connect()
        .await
        .unwrap();
    assert_eq!(c.endpoint(), t.endpoint());
}
