//! Client-streamed submission shared by the wallet and bank services:
//! bounded in flight, rate-limited, charged to the caller's stream budget
//! ([`crate::budget`]), and ended, never resynchronised, by a request frame
//! the decoder refuses.
//!
//! A stream ends with a status of its own when:
//! - a request frame cannot be decoded (a bad compressed flag, a length over
//!   the limit, a malformed message: [`crate::wire::client_input_status`]).
//!   tonic's decoder has then consumed part of the frame, and what follows
//!   would be read as new frames; so nothing after it is read, and the
//!   operations before it are answered first;
//! - the caller sends nothing for its idle time (`DEADLINE_EXCEEDED`,
//!   `STREAM_IDLE`), or stops reading its results for that long
//!   (`DEADLINE_EXCEEDED`, `STREAM_STALLED`): an abandoned stream gives its
//!   slot back.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use ruble_ledger::codec::SignedOp;
use ruble_ledger::{Outcome, Reason};
use ruble_proto::v1 as pb;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::budget::{Caller, StreamPermit};
use crate::convert::{coded_status, decode_op, outcome_pb};
use crate::ctx::Ctx;
use crate::wire::client_input_status;

pub type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::SubmitResult, Status>> + Send>>;
pub type BatchResultStream = Pin<Box<dyn Stream<Item = Result<pb::SubmitBatchResponse, Status>> + Send>>;

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

/// Sends `item` unless the receiver has stopped reading for `stall`: `false`
/// when it did (or went away), and the caller's stream should end.
pub async fn deliver<T>(tx: &mpsc::Sender<T>, item: T, stall: Duration) -> bool {
    tx.send_timeout(item, stall).await.is_ok()
}

/// What one submission stream holds: its slot, its window of outstanding
/// operations, its idle time, and whether its results have stalled.
struct Session {
    ctx: Arc<Ctx>,
    _permit: StreamPermit,
    idle: Duration,
    max_inflight: usize,
    inflight: Arc<Semaphore>,
    stalled: Arc<AtomicBool>,
    limiter: RateLimiter,
}

/// The next request message, or the status the stream ends with.
enum Next<T> {
    Msg(T),
    End,
    Fail(Status),
}

impl Session {
    fn open(ctx: Arc<Ctx>, caller: Caller) -> Result<Session, Status> {
        let permit = ctx.stream_permit(caller)?;
        let max_inflight = ctx.limits.max_stream_inflight.max(1);
        Ok(Session {
            idle: ctx.limits.stream_idle(&caller),
            limiter: RateLimiter::new(ctx.limits.max_stream_ops_per_sec),
            ctx,
            _permit: permit,
            max_inflight,
            inflight: Arc::new(Semaphore::new(max_inflight)),
            stalled: Arc::new(AtomicBool::new(false)),
        })
    }

    fn ended(&self, reason: &str, message: String) -> Status {
        self.ctx.metrics.inc_refused(reason);
        coded_status(Code::DeadlineExceeded, reason, message)
    }

    fn stalled_status(&self) -> Status {
        self.ended(
            "STREAM_STALLED",
            format!("the stream's results were not read for {:?}", self.idle),
        )
    }

    /// Waits up to the idle time for the next message.
    async fn next<T>(&self, input: &mut Streaming<T>) -> Next<T> {
        if self.stalled.load(Ordering::Relaxed) {
            return Next::Fail(self.stalled_status());
        }
        match tokio::time::timeout(self.idle, input.message()).await {
            Ok(r) => Self::classify(r),
            Err(_) => Next::Fail(self.ended(
                "STREAM_IDLE",
                format!("nothing was sent on the stream for {:?}", self.idle),
            )),
        }
    }

    fn classify<T>(r: Result<Option<T>, Status>) -> Next<T> {
        match r {
            Ok(Some(m)) => Next::Msg(m),
            Ok(None) => Next::End,
            Err(st) => Next::Fail(client_input_status(&st)),
        }
    }

    /// A window for `n` operations; waits while the stream has too many
    /// outstanding (backpressure), but no longer than the idle time.
    async fn window(&self, n: usize) -> Result<OwnedSemaphorePermit, Status> {
        let want = n.clamp(1, self.max_inflight) as u32;
        match tokio::time::timeout(self.idle, self.inflight.clone().acquire_many_owned(want)).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) | Err(_) => Err(self.stalled_status()),
        }
    }

    /// Decodes and vets operations; a refused one never reaches the ledger.
    fn vet<'a>(
        &mut self,
        ops: impl Iterator<Item = Option<&'a pb::SignedOperation>>,
        check: &impl Fn(&SignedOp) -> Result<(), Reason>,
    ) -> (Vec<Vec<u8>>, Vec<Result<SignedOp, Reason>>) {
        let (mut ids, mut items) = (Vec::new(), Vec::new());
        for op in ops {
            // The id goes with every result of an operation that decoded,
            // refused or not, so the client can match it to what it sent.
            let decoded = decode_op(op);
            ids.push(decoded.as_ref().map(|op| op.tx_id.0.to_vec()).unwrap_or_default());
            items.push(decoded.and_then(|op| {
                if !self.limiter.allow() {
                    return Err(Reason::Overloaded);
                }
                check(&op).map(|_| op)
            }));
        }
        (ids, items)
    }

    /// Submits vetted operations on a task of their own and hands their
    /// outcomes to `answer`, which sends them; overload is answered per
    /// operation (`OVERLOADED`) and keeps the stream.
    fn spawn_submit<F>(
        &self,
        window: OwnedSemaphorePermit,
        ids: Vec<Vec<u8>>,
        items: Vec<Result<SignedOp, Reason>>,
        answer: F,
    ) where
        F: FnOnce(Vec<Vec<u8>>, Result<Vec<Outcome>, Status>) -> futures::future::BoxFuture<'static, bool>
            + Send
            + 'static,
    {
        let (ctx, stalled) = (self.ctx.clone(), self.stalled.clone());
        tokio::spawn(async move {
            let outs = match ctx.submit_checked(items).await {
                Err(st) if st.code() == Code::ResourceExhausted => {
                    Ok(vec![Outcome::Rejected(Reason::Overloaded); ids.len()])
                }
                other => other,
            };
            if !answer(ids, outs).await {
                stalled.store(true, Ordering::Relaxed);
            }
            drop(window);
        });
    }

    /// Ends the stream with `end`: every operation admitted before it is
    /// answered first, so the status is the stream's last word.
    async fn finish<T: Send + 'static>(self, tx: mpsc::Sender<Result<T, Status>>, end: Option<Status>) {
        if let Some(st) = end {
            let all = self.max_inflight as u32;
            let _ = tokio::time::timeout(self.idle, self.inflight.acquire_many(all)).await;
            let _ = tx.send_timeout(Err(st), self.idle).await;
        }
    }
}

/// Sends each item, unless the client stops reading for `stall`.
async fn send_all<T>(tx: &mpsc::Sender<Result<T, Status>>, items: Vec<Result<T, Status>>, stall: Duration) -> bool {
    for it in items {
        match tx.send_timeout(it, stall).await {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) | Err(SendTimeoutError::Closed(_)) => return false,
        }
    }
    true
}

/// Runs a submission stream of single operations for `caller`. `check` vets
/// each decoded operation (service rules) before it reaches the ledger.
/// Results come back in completion order.
pub fn run_submit_stream<F>(
    ctx: Arc<Ctx>,
    caller: Caller,
    mut input: Streaming<pb::SubmitRequest>,
    check: F,
) -> Result<ResultStream, Status>
where
    F: Fn(&SignedOp) -> Result<(), Reason> + Send + Sync + 'static,
{
    let mut s = Session::open(ctx, caller)?;
    let (tx, rx) = mpsc::channel::<Result<pb::SubmitResult, Status>>(s.max_inflight);
    tokio::spawn(async move {
        let end = loop {
            let first = match s.next(&mut input).await {
                Next::Msg(m) => m,
                Next::End => break None,
                Next::Fail(st) => break Some(st),
            };
            // Requests are gathered into small batches so that a stream feeds
            // the verifier's batch equation instead of single checks.
            let mut batch = vec![first];
            let mut stop = None;
            let deadline = tokio::time::Instant::now() + Duration::from_micros(500);
            while batch.len() < 256 {
                match tokio::time::timeout_at(deadline, input.message()).await {
                    Err(_) => break,
                    Ok(r) => match Session::classify(r) {
                        Next::Msg(m) => batch.push(m),
                        Next::End => {
                            stop = Some(None);
                            break;
                        }
                        Next::Fail(st) => {
                            stop = Some(Some(st));
                            break;
                        }
                    },
                }
            }
            // Stop reading while too many results are outstanding (backpressure to the client).
            let window = match s.window(batch.len()).await {
                Ok(w) => w,
                Err(st) => break Some(st),
            };
            let (ids, items) = s.vet(batch.iter().map(|r| r.operation.as_ref()), &check);
            let (tx2, stall) = (tx.clone(), s.idle);
            s.spawn_submit(window, ids, items, move |ids, outs| {
                Box::pin(async move {
                    let answers = match outs {
                        Ok(outs) => ids.iter().zip(&outs).map(|(id, o)| Ok(outcome_pb(id, o))).collect(),
                        Err(st) => vec![Err(st)],
                    };
                    send_all(&tx2, answers, stall).await
                })
            });
            if let Some(end) = stop {
                break end;
            }
        };
        s.finish(tx, end).await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Runs a stream of batches for `caller`: each request is a batch (at most
/// `max_batch_len` operations, else the stream ends with BATCH_TOO_LARGE),
/// answered by one response with its `request_id`, in completion order.
/// Bounded like the single-operation stream: at most `max_stream_inflight`
/// operations outstanding (the stream stops reading beyond that; a batch
/// larger than the whole window waits for all of it), and the per-stream
/// rate limit per operation.
pub fn run_batch_stream<F>(
    ctx: Arc<Ctx>,
    caller: Caller,
    mut input: Streaming<pb::SubmitBatchRequest>,
    check: F,
) -> Result<BatchResultStream, Status>
where
    F: Fn(&SignedOp) -> Result<(), Reason> + Send + Sync + 'static,
{
    let mut s = Session::open(ctx, caller)?;
    // Responses waiting to be written: at most one per outstanding batch.
    let (tx, rx) = mpsc::channel::<Result<pb::SubmitBatchResponse, Status>>(s.max_inflight);
    tokio::spawn(async move {
        let end = loop {
            let req = match s.next(&mut input).await {
                Next::Msg(m) => m,
                Next::End => break None,
                Next::Fail(st) => break Some(st),
            };
            let max_batch = s.ctx.limits.max_batch_len;
            if req.operations.len() > max_batch {
                break Some(coded_status(
                    Code::InvalidArgument,
                    "BATCH_TOO_LARGE",
                    format!("a batch holds at most {max_batch} operations"),
                ));
            }
            let window = match s.window(req.operations.len()).await {
                Ok(w) => w,
                Err(st) => break Some(st),
            };
            let (ids, items) = s.vet(req.operations.iter().map(Some), &check);
            let (tx2, stall, request_id) = (tx.clone(), s.idle, req.request_id);
            s.spawn_submit(window, ids, items, move |ids, outs| {
                Box::pin(async move {
                    let answer = outs.map(|outs| pb::SubmitBatchResponse {
                        results: ids.iter().zip(&outs).map(|(id, o)| outcome_pb(id, o)).collect(),
                        request_id,
                    });
                    send_all(&tx2, vec![answer], stall).await
                })
            });
        };
        s.finish(tx, end).await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
