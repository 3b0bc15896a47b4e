//! Prometheus metrics, served over plain HTTP at `/metrics`.
//!
//! Names carry their unit: `ruble_commit_latency_seconds`,
//! `ruble_ops_rejected_total{reason}`, `ruble_queue_depth{queue}`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use ruble_ledger::pipeline::StageTimes;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabel {
    part: String,
}

struct Inner {
    registry: Registry,
    accepted: Counter,
    rejected: Family<ReasonLabel, Counter>,
    height: Gauge,
    queue_depth: Family<QueueLabel, Gauge>,
    commit_latency: Histogram,
    block_ops: Histogram,
    submit_latency: Histogram,
    stage_latency: Family<StageLabel, Histogram, fn() -> Histogram>,
    storage_ok: Gauge,
    commit_failures: Gauge,
    store_memory: Family<PartLabel, Gauge>,
    refused: Family<ReasonLabel, Counter>,
}

/// A submission's latency, whole or by stage: 0.25 ms .. ~4 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00025, 2.0, 15))
}

/// The node's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let accepted = Counter::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let height = Gauge::default();
        let queue_depth = Family::<QueueLabel, Gauge>::default();
        // 0.5 ms .. ~1 s
        let commit_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 12));
        let block_ops = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register("ruble_ops_accepted", "Operations committed", accepted.clone());
        registry.register("ruble_ops_rejected", "Operations refused, by reason", rejected.clone());
        registry.register(
            "ruble_block_height",
            "Height of the last committed block",
            height.clone(),
        );
        registry.register(
            "ruble_queue_depth",
            "Items waiting in each pipeline stage",
            queue_depth.clone(),
        );
        registry.register(
            "ruble_commit_latency_seconds",
            "Synced RocksDB write of one block",
            commit_latency.clone(),
        );
        registry.register("ruble_block_ops", "Operations per committed block", block_ops.clone());
        let submit_latency = latency_histogram();
        registry.register(
            "ruble_submit_latency_seconds",
            "From admission of a submission to its durable answer (verify, sequence, commit)",
            submit_latency.clone(),
        );
        // The same buckets as the submit latency they divide up.
        let stage_latency = Family::<StageLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "ruble_stage_latency_seconds",
            "Where a committed submission's time went, by stage: verify (queue and batch check), \
             sequence (queue and apply), block (open block until sealed), commit (seal until durable)",
            stage_latency.clone(),
        );
        let storage_ok = Gauge::default();
        storage_ok.set(1);
        registry.register(
            "ruble_storage_ok",
            "1 while blocks can be written, 0 after a failed write until the store recovers",
            storage_ok.clone(),
        );
        let commit_failures = Gauge::default();
        registry.register(
            "ruble_commit_failures",
            "Block writes that failed since the node started",
            commit_failures.clone(),
        );
        let store_memory = Family::<PartLabel, Gauge>::default();
        registry.register(
            "ruble_store_memory_bytes",
            "Memory held by RocksDB, by part (block_cache, memtables); both bounded by configuration",
            store_memory.clone(),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "ruble_refused",
            "Calls and connections refused by a budget, by reason (TOO_MANY_STREAMS, TOO_MANY_CONNECTIONS, \
             STREAM_IDLE, STREAM_STALLED)",
            refused.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            refused,
            accepted,
            rejected,
            height,
            queue_depth,
            commit_latency,
            block_ops,
            submit_latency,
            stage_latency,
            storage_ok,
            commit_failures,
            store_memory,
        }))
    }

    pub fn inc_accepted(&self, n: u64) {
        self.0.accepted.inc_by(n);
    }
    pub fn inc_rejected(&self, reason: &str) {
        self.0
            .rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
    /// A call or connection refused or ended by a budget (see [`crate::budget`]).
    pub fn inc_refused(&self, reason: &str) {
        self.0
            .refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
    pub fn set_height(&self, h: u64) {
        self.0.height.set(h as i64);
    }
    pub fn set_queue_depth(&self, queue: &str, n: i64) {
        self.0
            .queue_depth
            .get_or_create(&QueueLabel {
                queue: queue.to_string(),
            })
            .set(n);
    }
    pub fn set_store_memory(&self, block_cache: u64, memtables: u64) {
        for (part, v) in [("block_cache", block_cache), ("memtables", memtables)] {
            self.0
                .store_memory
                .get_or_create(&PartLabel { part: part.to_string() })
                .set(v as i64);
        }
    }
    pub fn set_storage(&self, ok: bool, failures: u64) {
        self.0.storage_ok.set(ok as i64);
        self.0.commit_failures.set(failures as i64);
    }
    pub fn observe_submit(&self, secs: f64) {
        self.0.submit_latency.observe(secs);
    }
    pub fn observe_stages(&self, submissions: &[StageTimes]) {
        let stage = |name| self.0.stage_latency.get_or_create(&StageLabel { stage: name }).clone();
        let [verify, sequence, block, commit] = ["verify", "sequence", "block", "commit"].map(stage);
        for t in submissions {
            verify.observe(t.verify.as_secs_f64());
            sequence.observe(t.sequence.as_secs_f64());
            block.observe(t.block.as_secs_f64());
            commit.observe(t.commit.as_secs_f64());
        }
    }
    pub fn observe_commit(&self, secs: f64, ops: u64) {
        self.0.commit_latency.observe(secs);
        self.0.block_ops.observe(ops as f64);
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry).expect("writing to a String");
        out
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown` resolves; returns the bound address.
pub async fn serve(
    metrics: Metrics,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let conn = tokio::select! {
                _ = &mut shutdown => return,
                c = listener.accept() => c,
            };
            let Ok((stream, _)) = conn else { continue };
            let m = metrics.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let m = m.clone();
                    async move {
                        let resp = if req.uri().path() == "/metrics" {
                            Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(m.encode())))
                        } else {
                            Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"not found\n")))
                        };
                        Ok::<_, hyper::http::Error>(resp.expect("static response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_counters_over_http() {
        let m = Metrics::new();
        m.inc_accepted(3);
        m.inc_rejected("INSUFFICIENT_FUNDS");
        m.set_store_memory(1_000, 2_000);
        let ms = std::time::Duration::from_millis;
        m.observe_stages(&[StageTimes {
            verify: ms(3),
            sequence: ms(0),
            block: std::time::Duration::from_micros(900),
            commit: ms(300),
        }]);
        let addr = serve(m.clone(), "127.0.0.1:0".parse().unwrap(), std::future::pending())
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(body.contains("ruble_ops_accepted_total 3"), "{body}");
        assert!(
            body.contains("ruble_ops_rejected_total{reason=\"INSUFFICIENT_FUNDS\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("ruble_store_memory_bytes{part=\"block_cache\"} 1000"),
            "{body}"
        );
        assert!(
            body.contains("ruble_store_memory_bytes{part=\"memtables\"} 2000"),
            "{body}"
        );
        // scripts/soak_report.py reads the stages from these lines.
        for (stage, first_bucket_holding_it) in [("verify", "0.004"), ("block", "0.001"), ("commit", "0.512")] {
            assert!(
                body.contains(&format!(
                    "ruble_stage_latency_seconds_bucket{{le=\"{first_bucket_holding_it}\",stage=\"{stage}\"}} 1"
                )),
                "{stage}: {body}"
            );
        }
        assert!(
            body.contains("ruble_stage_latency_seconds_bucket{le=\"0.256\",stage=\"commit\"} 0"),
            "{body}"
        );
    }
}
