//! Disk trouble at a real boundary: the node's data directory lives on a
//! small tmpfs that fills up under load. The node must stop acknowledging,
//! say why (status message, health, reason code), lose nothing it already
//! acknowledged, and serve again once space returns, without a restart.
//!
//! Mounting needs root (CI runs as root). Elsewhere set `RUBLE_NO_TMPFS=1`
//! to skip explicitly; the test never skips on its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ruble_e2e::*;
use ruble_gateway::ctx::ClientLimits;
use ruble_ledger::codec::Op;
use ruble_ledger::pipeline::PipelineConfig;
use ruble_ledger::types::TxId;
use ruble_proto::v1 as pb;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size_mb: u32) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            ok.success(),
            "mounting a tmpfs failed: this test needs root (set RUBLE_NO_TMPFS=1 to skip it)"
        );
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size_mb: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mb}m")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "remounting the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn health(t: &TestNode) -> ServingStatus {
    let mut h = HealthClient::new(t.channel(Role::Anonymous).await);
    let r = h
        .check(HealthCheckRequest {
            service: "ruble.v1.WalletService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(r.status).unwrap()
}

/// A batch of transfers between two businesses, with the longest purpose so
/// that the disk fills quickly.
fn batch(t: &TestNode, n: usize) -> Vec<ruble_ledger::SignedOp> {
    let (a, b) = (t.business_key(0), t.business_key(2));
    (0..n)
        .map(|i| {
            let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            sign(
                from,
                Op::Transfer {
                    payee: id(to),
                    amount: 1,
                    purpose: "x".repeat(ruble_ledger::codec::MAX_PURPOSE_BYTES),
                },
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_stops_acknowledging_loses_nothing_and_recovers() {
    if std::env::var_os("RUBLE_NO_TMPFS").is_some() {
        eprintln!("skipped: RUBLE_NO_TMPFS is set");
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(mnt.path(), 24);
    let dir = tempfile::tempdir_in(mnt.path()).unwrap();
    let t = TestNode::start_in(dir, ClientLimits::default(), PipelineConfig::default()).await;
    assert_eq!(health(&t).await, ServingStatus::Serving);
    let mut wallet = t.wallet(Role::Anonymous).await;

    // Fill the disk. Every acknowledged transfer is remembered.
    let mut acknowledged: Vec<TxId> = Vec::new();
    let mut refusal: Option<tonic::Status> = None;
    let t0 = Instant::now();
    while refusal.is_none() {
        assert!(t0.elapsed() < Duration::from_secs(240), "the disk never filled");
        let ops = batch(&t, 500);
        let req = pb::SubmitBatchRequest {
            operations: ops.iter().map(wire).collect(),
            request_id: 0,
        };
        match wallet.submit_batch(req).await {
            Ok(r) => {
                for (op, res) in ops.iter().zip(r.into_inner().results) {
                    match res.outcome {
                        Some(pb::submit_result::Outcome::Committed(_)) => acknowledged.push(op.tx_id),
                        Some(pb::submit_result::Outcome::Rejected(rj)) => {
                            assert_eq!(rj.reason, "UNAVAILABLE", "unexpected rejection: {}", rj.message)
                        }
                        None => panic!("a result with no outcome"),
                    }
                }
            }
            Err(st) => refusal = Some(st),
        }
    }
    let st = refusal.unwrap();
    eprintln!(
        "disk full after {} acknowledged transfers ({:.1} s); refusal: {:?} {}",
        acknowledged.len(),
        t0.elapsed().as_secs_f64(),
        st.code(),
        st.message()
    );
    assert!(
        acknowledged.len() > 1000,
        "only {} acknowledged before the disk filled",
        acknowledged.len()
    );
    // The refusal is precise and says why.
    assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
    assert_eq!(reason(&st), "UNAVAILABLE");
    assert!(
        st.message().contains("No space left on device"),
        "the status should say why: {}",
        st.message()
    );
    // Health says NOT_SERVING, and nothing more is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&t).await != ServingStatus::NotServing {
        assert!(Instant::now() < deadline, "health never went NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        let ops = batch(&t, 10);
        let req = pb::SubmitBatchRequest {
            operations: ops.iter().map(wire).collect(),
            request_id: 0,
        };
        let st = wallet
            .submit_batch(req)
            .await
            .expect_err("a full disk must not acknowledge");
        assert_eq!(st.code(), tonic::Code::Unavailable);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Reads still work while writes cannot.
    let before = t.supply().await;
    assert_eq!(before.sum_balances, before.in_circulation);

    // Space returns: the node serves again without a restart.
    fs.resize(512);
    let resized = Instant::now();
    let deadline = resized + Duration::from_secs(20);
    while health(&t).await != ServingStatus::Serving {
        assert!(
            Instant::now() < deadline,
            "the node did not recover after space returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "serving again {} ms after space returned",
        resized.elapsed().as_millis()
    );
    let ops = batch(&t, 200);
    let req = pb::SubmitBatchRequest {
        operations: ops.iter().map(wire).collect(),
        request_id: 0,
    };
    let results = wallet.submit_batch(req).await.unwrap().into_inner().results;
    assert!(
        results
            .iter()
            .all(|r| matches!(r.outcome, Some(pb::submit_result::Outcome::Committed(_)))),
        "after recovery every transfer commits"
    );
    acknowledged.extend(ops.iter().map(|o| o.tx_id));

    // Nothing acknowledged was lost: audit the chain after a clean stop.
    let mut t = t;
    t.stop().await;
    let store = ruble_ledger::Store::open(&t.path().join("db")).unwrap();
    let report = ruble_ledger::audit::audit(&store, &acknowledged).unwrap();
    assert!(report.ok, "audit: {:?}", report.errors);
    assert!(
        report.missing.is_empty(),
        "lost acknowledged transfers: {:?}",
        report.missing.len()
    );
    assert_eq!(report.expected_committed, acknowledged.len());
    drop(store);
    drop(t);
    drop(fs);
}

/// Inverts 32 bytes in the middle of the largest table file of the store.
fn damage_largest_table(db: &Path) {
    let sst = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a table file after a clean stop");
    let mut b = std::fs::read(&sst).unwrap();
    let mid = b.len() / 2;
    for x in &mut b[mid..mid + 32] {
        *x = !*x;
    }
    std::fs::write(&sst, b).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_on_a_damaged_data_directory() {
    let mut t = TestNode::start().await;
    let mut wallet = t.wallet(Role::Anonymous).await;
    for _ in 0..10 {
        let ops = batch(&t, 500);
        let req = pb::SubmitBatchRequest {
            operations: ops.iter().map(wire).collect(),
            request_id: 0,
        };
        wallet.submit_batch(req).await.unwrap();
    }
    t.stop().await; // a clean stop flushes the memtables into table files
    let mut opts = t.options();
    opts.listen = "127.0.0.1:0".parse().unwrap();
    // Control: the undamaged directory starts.
    let node = ruble_gateway::node::start(opts.clone())
        .await
        .expect("an undamaged store starts");
    node.shutdown().await.unwrap();

    damage_largest_table(&t.path().join("db"));
    let err = match ruble_gateway::node::start(opts).await {
        Ok(_) => panic!("a node started on a damaged data directory"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("corrupt"), "the refusal should say what is wrong: {err}");
    assert!(
        err.contains(&t.path().join("db").display().to_string()),
        "and where: {err}"
    );
}
