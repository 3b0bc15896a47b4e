//! Client-streamed submission shared by the wallet and bank services:
//! bounded in flight, rate-limited, and counted against the node-wide stream
//! limit.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use ruble_ledger::codec::SignedOp;
use ruble_ledger::Reason;
use ruble_proto::v1 as pb;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::convert::{coded_status, decode_op, outcome_pb};
use crate::ctx::Ctx;

pub type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::SubmitResult, Status>> + Send>>;
pub type BatchResultStream = Pin<Box<dyn Stream<Item = Result<pb::SubmitBatchResponse, Status>> + Send>>;

/// Takes one of the node's stream slots or answers RESOURCE_EXHAUSTED.
pub fn stream_permit(ctx: &Ctx) -> Result<OwnedSemaphorePermit, Status> {
    ctx.streams.clone().try_acquire_owned().map_err(|_| {
        coded_status(
            Code::ResourceExhausted,
            "TOO_MANY_STREAMS",
            format!("at most {} concurrent streams", ctx.limits.max_concurrent_streams),
        )
    })
}

/// A token bucket: `rate` operations per second, bursts up to one second's worth.
pub struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u64) -> Self {
        RateLimiter {
            rate: rate_per_sec as f64,
            tokens: rate_per_sec as f64,
            last: Instant::now(),
        }
    }
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs a submission stream. `check` vets each decoded operation (service
/// rules) before it reaches the ledger. Results come back in completion order.
pub fn run_submit_stream<F>(
    ctx: Arc<Ctx>,
    mut input: Streaming<pb::SubmitRequest>,
    check: F,
) -> Result<ResultStream, Status>
where
    F: Fn(&SignedOp) -> Result<(), Reason> + Send + Sync + 'static,
{
    let permit = stream_permit(&ctx)?;
    let inflight = Arc::new(Semaphore::new(ctx.limits.max_stream_inflight));
    let (tx, rx) = mpsc::channel::<Result<pb::SubmitResult, Status>>(ctx.limits.max_stream_inflight);
    tokio::spawn(async move {
        let _permit = permit;
        let mut limiter = RateLimiter::new(ctx.limits.max_stream_ops_per_sec);
        // Requests are gathered into small batches so that a stream feeds the
        // verifier's batch equation instead of single checks.
        loop {
            let first = match input.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => break,
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + Duration::from_micros(500);
            while batch.len() < 256 {
                match tokio::time::timeout_at(deadline, input.message()).await {
                    Ok(Ok(Some(m))) => batch.push(m),
                    _ => break,
                }
            }
            let n = batch.len() as u32;
            // Stop reading while too many results are outstanding (backpressure to the client).
            let Ok(permits) = inflight.clone().acquire_many_owned(n).await else {
                break;
            };
            let mut items = Vec::with_capacity(batch.len());
            let mut ids = Vec::with_capacity(batch.len());
            for req in batch {
                // The id goes with every result of an operation that decoded,
                // refused or not, so the client can match it to what it sent.
                let decoded = decode_op(req.operation.as_ref());
                ids.push(decoded.as_ref().map(|op| op.tx_id.0.to_vec()).unwrap_or_default());
                items.push(decoded.and_then(|op| {
                    if !limiter.allow() {
                        return Err(Reason::Overloaded);
                    }
                    check(&op).map(|_| op)
                }));
            }
            let (ctx2, tx2) = (ctx.clone(), tx.clone());
            tokio::spawn(async move {
                let _permits = permits;
                match ctx2.submit_checked(items).await {
                    Ok(outs) => {
                        for (id, o) in ids.iter().zip(outs) {
                            if tx2.send(Ok(outcome_pb(id, &o))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(st) if st.code() == Code::ResourceExhausted => {
                        // Overload is per batch: tell the client for each op, keep the stream.
                        for id in &ids {
                            let o = ruble_ledger::Outcome::Rejected(Reason::Overloaded);
                            if tx2.send(Ok(outcome_pb(id, &o))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(st) => {
                        let _ = tx2.send(Err(st)).await;
                    }
                }
            });
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Runs a stream of batches: each request is a batch (at most
/// `max_batch_len` operations, else the stream ends with BATCH_TOO_LARGE),
/// answered by one response with its `request_id`, in completion order.
/// Bounded like the single-operation stream: at most `max_stream_inflight`
/// operations outstanding (the stream stops reading beyond that), the per-
/// stream rate limit per operation, and the node-wide stream count.
pub fn run_batch_stream<F>(
    ctx: Arc<Ctx>,
    mut input: Streaming<pb::SubmitBatchRequest>,
    check: F,
) -> Result<BatchResultStream, Status>
where
    F: Fn(&SignedOp) -> Result<(), Reason> + Send + Sync + 'static,
{
    let permit = stream_permit(&ctx)?;
    let max_inflight = ctx.limits.max_stream_inflight;
    let inflight = Arc::new(Semaphore::new(max_inflight));
    // Responses waiting to be written: at most one per outstanding batch.
    let (tx, rx) = mpsc::channel::<Result<pb::SubmitBatchResponse, Status>>(max_inflight.max(1));
    tokio::spawn(async move {
        let _permit = permit;
        let mut limiter = RateLimiter::new(ctx.limits.max_stream_ops_per_sec);
        loop {
            let req = match input.message().await {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => break,
            };
            let n = req.operations.len();
            if n > ctx.limits.max_batch_len {
                let _ = tx
                    .send(Err(coded_status(
                        Code::InvalidArgument,
                        "BATCH_TOO_LARGE",
                        format!("a batch holds at most {} operations", ctx.limits.max_batch_len),
                    )))
                    .await;
                break;
            }
            // Stop reading while too many results are outstanding
            // (backpressure to the client). A batch larger than the whole
            // window waits for all of it.
            let want = n.clamp(1, max_inflight) as u32;
            let Ok(permits) = inflight.clone().acquire_many_owned(want).await else {
                break;
            };
            let mut items = Vec::with_capacity(n);
            let mut ids = Vec::with_capacity(n);
            for op in &req.operations {
                let decoded = decode_op(Some(op));
                ids.push(decoded.as_ref().map(|op| op.tx_id.0.to_vec()).unwrap_or_default());
                items.push(decoded.and_then(|op| {
                    if !limiter.allow() {
                        return Err(Reason::Overloaded);
                    }
                    check(&op).map(|_| op)
                }));
            }
            let request_id = req.request_id;
            let (ctx2, tx2) = (ctx.clone(), tx.clone());
            tokio::spawn(async move {
                let _permits = permits;
                let answer = match ctx2.submit_checked(items).await {
                    Ok(outs) => Ok(pb::SubmitBatchResponse {
                        results: ids.iter().zip(&outs).map(|(id, o)| outcome_pb(id, o)).collect(),
                        request_id,
                    }),
                    // Overload is per batch: answer each operation, keep the stream.
                    Err(st) if st.code() == Code::ResourceExhausted => {
                        let o = ruble_ledger::Outcome::Rejected(Reason::Overloaded);
                        Ok(pb::SubmitBatchResponse {
                            results: ids.iter().map(|id| outcome_pb(id, &o)).collect(),
                            request_id,
                        })
                    }
                    Err(st) => Err(st),
                };
                let _ = tx2.send(answer).await;
            });
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
