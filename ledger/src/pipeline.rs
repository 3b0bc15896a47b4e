//! The node's hot path: verify → sequence → commit, on separate threads.
//!
//! ```text
//!  submit() ──► [submit queue] ──► verifier × N ──► [verified] ──► sequencer ──► [sealed, cap 1] ──► committer ──► replies
//!   dedupe by        bounded        batch ZIP-215       bounded      apply to        one block being       synced        after the
//!   recent commits                  (chunked, cached    FIFO         State; cut      applied while the     WriteBatch    commit only
//!   (in memory)                      keys, fallback)                 blocks          previous commits
//! ```
//!
//! - **Backpressure.** Every operation counts against `max_inflight_ops` from
//!   `submit` until its reply; over the limit `submit` fails fast with
//!   [`Reason::Overloaded`]. All queues are bounded by that count, so memory
//!   stays flat under any load.
//! - **Group commit.** The sequencer seals the open block as soon as the
//!   committer is idle (or the block is full, or `max_block_wait` passed), so
//!   blocks grow with load and latency stays low when idle; but no sooner than
//!   `min_block_interval` after the previous seal, so that a moderate load is
//!   not cut into hundreds of tiny blocks a second, each costing an fsync and
//!   a seal. Block N is fsynced while block N+1 is being applied.
//! - **Nothing acknowledged is lost.** Replies (including rejections) are sent
//!   by the committer, in block order, after the block's synced write returned.
//! - **Commit failure.** If a write fails (disk full, IO error), that block and
//!   every block sealed after it are answered [`Reason::Unavailable`] without
//!   being written, and [`Pipeline::storage_error`] says why. Until the store
//!   is writable again, `submit` fails fast with `Unavailable`. The sequencer
//!   reopens the store every [`STORAGE_RETRY`] (RocksDB refuses writes after
//!   a failed one until reopened), reloads its state from it (the truth) and
//!   carries on, so the node serves again once writes succeed.
//!
//! Two seams make the pipeline independent of where blocks end up and of the
//! wall clock:
//! - a [`BlockSink`] makes each sealed block durable. [`LocalSink`] is one
//!   synced RocksDB commit; a replicated node's sink proposes the block to
//!   its Raft group and returns once a quorum holds it. The committer answers
//!   a block's submissions only after the sink returned `Ok`, whatever the sink.
//! - a [`Clock`] gives the block timestamps (`max(clock, previous)`, so they
//!   never go backwards even when the clock does); tests pass their own.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::RwLock;

use crate::codec::SignedOp;
use crate::crypto::{verify_ops, KeyCache, VerifyResult};
use crate::engine::{Ledger, Outcome};
use crate::reason::Reason;
use crate::state::{Params, SealedBlock, State, Totals};
use crate::store::{Receipt, Store};
use crate::types::{Hash32, TxId};

/// How often the sequencer tries to reopen the store after a failed write.
pub const STORAGE_RETRY: Duration = Duration::from_secs(1);

/// A stage that holds up the pipeline this long is logged (a latency spike
/// for everything behind it): a sequencer seal, or a committer's replies.
const SLOW_STAGE: Duration = Duration::from_millis(100);

/// How long an idle sequencer sleeps before looking at the store's health.
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// Where sealed blocks become durable. Called on the committer thread, one
/// block at a time, in height order.
pub trait BlockSink: Send + Sync + 'static {
    /// Makes `block` durable. Returns `Ok` only once it is: the block's
    /// submissions are answered right after. An error means the block may or
    /// may not become durable later (its submissions are answered
    /// `Unavailable`, and a retry gets the original receipt if it did).
    fn commit(&self, block: &SealedBlock) -> Result<(), String>;

    /// After a failed commit: the durable truth to go on from, or an error
    /// (the sequencer tries again after [`STORAGE_RETRY`]). Meanwhile every
    /// submission is answered `Unavailable`.
    fn recover(&self) -> Result<State, String>;

    /// Whether the sequencer's state may not be the durable head though no
    /// commit failed: a replica that has come to lead since it last loaded
    /// (the state machine, not the pipeline, applied what others sealed).
    /// Asked before each block opens; `true` makes the sequencer reload
    /// through [`BlockSink::recover`] before it executes anything, so no
    /// answer, a rejection included, comes from a stale state.
    fn needs_reload(&self) -> bool {
        false
    }
}

/// The single node's sink: one synced `WriteBatch` per block; recovery
/// reopens the store (RocksDB refuses writes after a failed one) and reloads.
pub struct LocalSink(pub Arc<Store>);

impl BlockSink for LocalSink {
    fn commit(&self, block: &SealedBlock) -> Result<(), String> {
        self.0.commit(block).map_err(|e| e.to_string())
    }

    fn recover(&self) -> Result<State, String> {
        self.0.reopen().and_then(|()| self.0.load()).map_err(|e| e.to_string())
    }
}

/// Milliseconds since the Unix epoch, for block timestamps.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Tuning and limits of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Operations admitted and not yet answered, across all stages.
    pub max_inflight_ops: usize,
    /// A block is sealed at this many operations at the latest.
    pub max_block_ops: usize,
    /// ... or when it has been open this long while the committer is busy
    /// (otherwise it is sealed as soon as the committer is free).
    pub max_block_wait: Duration,
    /// A block that is not full is sealed no sooner than this after the
    /// previous one. Seals are per-block CPU (the fsync's submission, the
    /// block's header, hashes and head record); at 42,000 op/s over 1,000
    /// accounts a free committer sealed ~700 blocks a second of ~60
    /// operations, and that overhead is what pushed a 2-core machine to
    /// the utilisation where queues grow long tails.
    pub min_block_interval: Duration,
    /// Signatures per batch equation.
    pub verify_chunk: usize,
    /// Verifier threads (default: available cores).
    pub verify_threads: usize,
    /// Nice value of the verifier threads (0: normal priority).
    pub verify_nice: i32,
    /// Test-only fault injection: acknowledge before the commit is durable.
    /// Exists so the crash harness can prove it catches a lost acknowledgement.
    pub unsafe_ack_before_commit: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_inflight_ops: 65_536,
            max_block_ops: 8_192,
            max_block_wait: Duration::from_millis(20),
            min_block_interval: Duration::from_millis(2),
            verify_chunk: 256,
            verify_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            verify_nice: 0,
            unsafe_ack_before_commit: false,
        }
    }
}

/// Called once per submission with one outcome per submitted operation, in order.
pub type Reply = Box<dyn FnOnce(Vec<Outcome>) + Send>;

/// Called by the committer after each durable commit (streams, metrics).
pub type CommitHook = Box<dyn Fn(&Arc<SealedBlock>, &CommitTimes) + Send + Sync>;

/// Where one submission's time went, from `submit` to its block being
/// durable. The stages follow each other, so they add up to the whole wait
/// (less the reply itself): a latency spike is attributed to the stage that
/// holds it, which end-to-end figures cannot do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Waiting for a verifier, and the batch verification itself.
    pub verify: Duration,
    /// Waiting for the sequencer, and applying to the state.
    pub sequence: Duration,
    /// Waiting in the open block until it is sealed (group commit).
    pub block: Duration,
    /// From the seal until the block is durable: waiting behind the commit
    /// in flight, then its own synced write.
    pub commit: Duration,
}

/// What the committer measured of one committed block.
#[derive(Clone, Debug, Default)]
pub struct CommitTimes {
    /// The block's synced write alone.
    pub write: Duration,
    /// One entry per submission answered with this block, in block order.
    pub submissions: Vec<StageTimes>,
}

/// What the committed head looks like (cheap to clone for queries).
#[derive(Clone, Debug)]
pub struct CommittedView {
    pub height: u64,
    pub head_hash: Hash32,
    pub state_hash: Hash32,
    pub timestamp_ms: u64,
    pub params: Params,
    pub totals: Totals,
}

/// Counters for metrics.
#[derive(Default, Debug)]
pub struct PipelineStats {
    pub inflight_ops: AtomicUsize,
    pub verify_queue: AtomicUsize,
    pub sequencer_queue: AtomicUsize,
    pub committed_ops: AtomicU64,
    pub rejected_ops: AtomicU64,
    pub overloaded: AtomicU64,
    pub commit_failures: AtomicU64,
}

struct Submission {
    admitted: Instant,
    /// Outcomes known before any work (already committed duplicates).
    slots: Vec<Option<Outcome>>,
    /// The operations still to process, with their slot index.
    ops: Vec<(usize, SignedOp)>,
    reply: Reply,
}

struct VerifiedSubmission {
    admitted: Instant,
    verified: Instant,
    slots: Vec<Option<Outcome>>,
    ops: Vec<(usize, VerifyResult)>,
    reply: Reply,
}

/// Index in the block, or the reason with the operation's id.
type ApplyResult = Result<u32, (Reason, TxId)>;

/// A submission waiting for its block's commit.
struct PendingReply {
    admitted: Instant,
    verified: Instant,
    applied_at: Instant,
    slots: Vec<Option<Outcome>>,
    /// (slot, result of apply: index in block, or reason with the op's id)
    applied: Vec<(usize, ApplyResult)>,
    reply: Reply,
}

enum ToCommitter {
    Block {
        block: Box<SealedBlock>,
        replies: Vec<PendingReply>,
        epoch: u64,
        sealed: Instant,
    },
    /// Replies with no block to commit (everything rejected), kept in order.
    RepliesOnly { replies: Vec<PendingReply> },
}

struct Shared {
    store: Arc<Store>,
    sink: Arc<dyn BlockSink>,
    clock: Arc<dyn Clock>,
    cache: Arc<KeyCache>,
    cfg: PipelineConfig,
    stats: PipelineStats,
    view: RwLock<CommittedView>,
    /// Sealed blocks handed to the committer and not yet done with (at
    /// most two: one committing, one queued behind it).
    blocks_in_flight: AtomicUsize,
    /// Blocks sealed in an epoch <= this must not be written (a write failed).
    failed_epoch: AtomicU64,
    accepting: AtomicBool,
    /// Set by a failed commit, cleared when the store is writable again.
    storage_error: parking_lot::Mutex<Option<String>>,
}

/// The running pipeline. Dropping it shuts it down as [`Pipeline::shutdown`]
/// does: its threads hold the store, and a RocksDB still open while the
/// process exits aborts it ("pthread lock: Invalid argument") when static
/// destructors run under a live background thread.
pub struct Pipeline {
    shared: Arc<Shared>,
    submit_tx: RwLock<Option<Sender<Submission>>>,
    threads: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

fn view_of(state: &State) -> CommittedView {
    CommittedView {
        height: state.height(),
        head_hash: state.head_hash(),
        state_hash: state.state_hash(),
        timestamp_ms: state.timestamp_ms(),
        params: state.params().clone(),
        totals: state.totals(),
    }
}

impl Pipeline {
    /// Starts the threads, committing locally ([`LocalSink`]) with block
    /// times from the system clock. `on_commit` runs on the committer thread
    /// after each durable commit; keep it cheap (send to a channel).
    pub fn start(ledger: Ledger, cfg: PipelineConfig, on_commit: CommitHook) -> Pipeline {
        let sink = Arc::new(LocalSink(ledger.store().clone()));
        Pipeline::start_with(ledger, cfg, on_commit, sink, Arc::new(SystemClock))
    }

    /// [`Pipeline::start`] with another sink and clock.
    pub fn start_with(
        ledger: Ledger,
        cfg: PipelineConfig,
        on_commit: CommitHook,
        sink: Arc<dyn BlockSink>,
        clock: Arc<dyn Clock>,
    ) -> Pipeline {
        let (state, store, cache) = ledger.into_parts();
        let shared = Arc::new(Shared {
            view: RwLock::new(view_of(&state)),
            store,
            sink,
            clock,
            cache,
            stats: PipelineStats::default(),
            blocks_in_flight: AtomicUsize::new(0),
            failed_epoch: AtomicU64::new(0),
            accepting: AtomicBool::new(true),
            storage_error: parking_lot::Mutex::new(None),
            cfg: cfg.clone(),
        });
        let cap = cfg.max_inflight_ops.max(1);
        let (submit_tx, submit_rx) = bounded::<Submission>(cap);
        let (verified_tx, verified_rx) = bounded::<VerifiedSubmission>(cap);
        let (commit_tx, commit_rx) = bounded::<ToCommitter>(1);
        // The committer's "I am free" signal to the sequencer (one pending
        // token at most; a stale one only causes a spurious look).
        let (idle_tx, idle_rx) = bounded::<()>(1);
        let mut threads = Vec::new();
        for i in 0..cfg.verify_threads.max(1) {
            let (rx, tx, sh) = (submit_rx.clone(), verified_tx.clone(), shared.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ruble-verify-{i}"))
                    .spawn(move || verifier(rx, tx, sh))
                    .expect("spawn verifier"),
            );
        }
        drop(verified_tx);
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("ruble-sequencer".into())
                .spawn(move || sequencer(state, verified_rx, idle_rx, commit_tx, sh))
                .expect("spawn sequencer"),
        );
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("ruble-committer".into())
                .spawn(move || committer(commit_rx, idle_tx, sh, on_commit))
                .expect("spawn committer"),
        );
        Pipeline {
            shared,
            submit_tx: RwLock::new(Some(submit_tx)),
            threads: parking_lot::Mutex::new(threads),
        }
    }

    /// Admits a batch of decoded operations. The reply is called once, after
    /// the block holding them is durable. Fails fast with `Overloaded` when
    /// the in-flight limit would be exceeded, `Unavailable` when shutting down.
    pub fn submit(&self, ops: Vec<SignedOp>, reply: Reply) -> Result<(), Reason> {
        let n = ops.len();
        if n == 0 {
            reply(Vec::new());
            return Ok(());
        }
        if !self.shared.accepting.load(Ordering::Acquire) || self.shared.storage_error.lock().is_some() {
            return Err(Reason::Unavailable);
        }
        let stats = &self.shared.stats;
        let prev = stats.inflight_ops.fetch_add(n, Ordering::AcqRel);
        if prev + n > self.shared.cfg.max_inflight_ops {
            stats.inflight_ops.fetch_sub(n, Ordering::AcqRel);
            stats.overloaded.fetch_add(n as u64, Ordering::Relaxed);
            return Err(Reason::Overloaded);
        }
        // Dedupe before spending verification work: a retry of an operation
        // committed since the last checkpoint (the usual retry: seconds
        // after a lost answer) gets its original receipt from memory. An
        // older one is verified and then answered by the sequencer's replay
        // set (DUPLICATE) or, past its validity, found by `resolve`: either
        // way with its original receipt. Looking every submitted id up in
        // the chain-wide index here cost a filter probe per table file per
        // operation on the gRPC threads, a cost that grew with the chain
        // (a third of the node's CPU at 27M transfers, perf).
        let ids: Vec<TxId> = ops.iter().map(|op| op.tx_id).collect();
        let found = self.shared.store.recent_tx_cursors(&ids);
        let mut slots: Vec<Option<Outcome>> = Vec::with_capacity(n);
        let mut todo = Vec::with_capacity(n);
        for ((i, op), cursor) in ops.into_iter().enumerate().zip(found) {
            match cursor.and_then(|c| self.shared.store.receipt_at(&op.tx_id, c).ok()) {
                Some(r) => slots.push(Some(Outcome::Duplicate(r))),
                None => {
                    slots.push(None);
                    todo.push((i, op));
                }
            }
        }
        if todo.is_empty() {
            stats.inflight_ops.fetch_sub(n, Ordering::AcqRel);
            reply(slots.into_iter().map(|s| s.expect("all resolved")).collect());
            return Ok(());
        }
        let sub = Submission {
            admitted: Instant::now(),
            slots,
            ops: todo,
            reply,
        };
        let guard = self.submit_tx.read();
        let Some(tx) = guard.as_ref() else {
            stats.inflight_ops.fetch_sub(n, Ordering::AcqRel);
            return Err(Reason::Unavailable);
        };
        stats.verify_queue.fetch_add(1, Ordering::Relaxed);
        // Cannot block: the channel holds as many submissions as the op limit.
        if tx.try_send(sub).is_err() {
            stats.verify_queue.fetch_sub(1, Ordering::Relaxed);
            stats.inflight_ops.fetch_sub(n, Ordering::AcqRel);
            return Err(Reason::Unavailable);
        }
        Ok(())
    }

    /// The committed head.
    pub fn view(&self) -> CommittedView {
        self.shared.view.read().clone()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.shared.stats
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.shared.cfg
    }

    /// Why the node cannot commit right now (the failed write's error), or
    /// `None` when the store is healthy.
    pub fn storage_error(&self) -> Option<String> {
        self.shared.storage_error.lock().clone()
    }

    /// Stops admitting, lets every admitted operation finish (the block in
    /// flight is committed and answered), and joins the threads.
    pub fn shutdown(&self) {
        self.shared.accepting.store(false, Ordering::Release);
        self.submit_tx.write().take();
        let me = std::thread::current().id();
        for t in self.threads.lock().drain(..) {
            // The last handle can be dropped on a pipeline thread (a reply
            // that owned it): that thread ends by itself, it cannot join itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Lowers the calling thread's CPU priority by `nice` steps (Linux: nice is
/// per thread). Best effort: on failure the thread runs at normal priority.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id
    // only changes this thread's scheduling weight.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

fn verifier(rx: Receiver<Submission>, tx: Sender<VerifiedSubmission>, sh: Arc<Shared>) {
    // Verification is the bulk of the node's CPU and runs in chunks of
    // milliseconds. Niced, it still takes every cycle nobody else wants, but
    // the sequencer, the committer and the gRPC threads (short, latency-
    // critical bursts) preempt it instead of queueing behind it.
    if sh.cfg.verify_nice != 0 {
        lower_priority(sh.cfg.verify_nice);
    }
    let chunk = sh.cfg.verify_chunk.max(1);
    while let Ok(first) = rx.recv() {
        // Coalesce small submissions (unary RPCs) into one batch equation.
        let mut subs = vec![first];
        let mut n = subs[0].ops.len();
        while n < chunk {
            match rx.try_recv() {
                Ok(s) => {
                    n += s.ops.len();
                    subs.push(s);
                }
                Err(_) => break,
            }
        }
        sh.stats.verify_queue.fetch_sub(subs.len(), Ordering::Relaxed);
        let mut all = Vec::with_capacity(n);
        let mut shape = Vec::with_capacity(subs.len());
        let mut rest = Vec::with_capacity(subs.len());
        for s in subs {
            let mut idx = Vec::with_capacity(s.ops.len());
            for (slot, op) in s.ops {
                idx.push(slot);
                all.push(op);
            }
            shape.push(idx);
            rest.push((s.admitted, s.slots, s.reply));
        }
        let mut verdicts = Vec::with_capacity(all.len());
        let mut it = all.into_iter().peekable();
        while it.peek().is_some() {
            let c: Vec<SignedOp> = it.by_ref().take(chunk).collect();
            verdicts.extend(verify_ops(c, &sh.cache));
        }
        let verified = Instant::now();
        let mut verdicts = verdicts.into_iter();
        for (idx, (admitted, slots, reply)) in shape.into_iter().zip(rest) {
            let ops = idx
                .into_iter()
                .map(|slot| (slot, verdicts.next().expect("one verdict per op")))
                .collect();
            sh.stats.sequencer_queue.fetch_add(1, Ordering::Relaxed);
            let sub = VerifiedSubmission {
                admitted,
                verified,
                slots,
                ops,
                reply,
            };
            if tx.send(sub).is_err() {
                return;
            }
        }
    }
}

struct OpenBlockReplies {
    replies: Vec<PendingReply>,
    started: Instant,
    ops: usize,
}

fn sequencer(
    mut state: State,
    rx: Receiver<VerifiedSubmission>,
    idle: Receiver<()>,
    tx: Sender<ToCommitter>,
    sh: Arc<Shared>,
) {
    let mut epoch = 1u64;
    let mut open: Option<OpenBlockReplies> = None;
    let max_wait = sh.cfg.max_block_wait;
    let min_gap = sh.cfg.min_block_interval;
    let mut last_seal = Instant::now();
    loop {
        let msg = match &open {
            // A block is open: take more operations until the committer
            // is free (it says so on `idle`), then seal. Sealing earlier
            // would only queue a small block behind the commit in flight,
            // and small blocks mean one fsync for few operations. Wake at
            // the end of the minimum interval too: the committer may have
            // gone idle before it.
            Some(o) => {
                let wait = max_wait
                    .saturating_sub(o.started.elapsed())
                    .min(gap_left(last_seal, min_gap).unwrap_or(Duration::MAX));
                crossbeam_channel::select! {
                    recv(rx) -> m => m.map_err(|_| RecvTimeoutError::Disconnected),
                    recv(idle) -> _ => Err(RecvTimeoutError::Timeout),
                    default(wait) => Err(RecvTimeoutError::Timeout),
                }
            }
            // Wake up when idle too: after a failed commit `submit` admits
            // nothing, and the sequencer must still notice and recover.
            None => rx.recv_timeout(IDLE_WAKE),
        };
        let disconnected = matches!(msg, Err(RecvTimeoutError::Disconnected));
        // The sink says the state is stale (leadership came here): reload
        // before a block opens on it, once the blocks in flight are done.
        // If that fails, it is a failed commit's recovery from here on.
        if open.is_none() && msg.is_ok() && sh.failed_epoch.load(Ordering::Acquire) < epoch && sh.sink.needs_reload() {
            wait_for_committer(&sh);
            match sh.sink.recover() {
                Ok(s) => {
                    tracing::info!(height = s.height(), "sequencing on the committed head, reloaded");
                    state = s;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reload the committed head; not accepting operations");
                    sh.failed_epoch.store(epoch, Ordering::Release);
                }
            }
        }
        // A failed commit means our in-memory state is ahead of the disk:
        // drop the open block (answer Unavailable) and reload the truth.
        if sh.failed_epoch.load(Ordering::Acquire) >= epoch {
            if let Some(o) = open.take() {
                abort_open(&mut state, &sh, o);
            }
            if let Ok(sub) = msg {
                sh.stats.sequencer_queue.fetch_sub(1, Ordering::Relaxed);
                answer_rest(&sh, sub.slots, sub.reply, Reason::Unavailable);
            }
            wait_for_committer(&sh);
            match recover_storage(&rx, &sh) {
                Some(s) => state = s,
                None => return, // shut down while the store was failing
            }
            epoch = sh.failed_epoch.load(Ordering::Acquire) + 1;
            if disconnected {
                return;
            }
            continue;
        }
        if let Ok(sub) = msg {
            sh.stats.sequencer_queue.fetch_sub(1, Ordering::Relaxed);
            if open.is_none() {
                state.begin_block(sh.clock.now_ms().max(state.timestamp_ms()));
                open = Some(OpenBlockReplies {
                    replies: Vec::new(),
                    started: Instant::now(),
                    ops: 0,
                });
            }
            let o = open.as_mut().expect("opened above");
            let mut applied = Vec::with_capacity(sub.ops.len());
            for (slot, v) in sub.ops {
                let r = match v {
                    Ok(op) => {
                        let tx = op.tx_id;
                        state.apply(op).map(|a| a.index).map_err(|r| (r, tx))
                    }
                    Err((op, reason)) => Err((reason, op.tx_id)),
                };
                applied.push((slot, r));
            }
            o.ops += applied.len();
            o.replies.push(PendingReply {
                admitted: sub.admitted,
                verified: sub.verified,
                applied_at: Instant::now(),
                slots: sub.slots,
                applied,
                reply: sub.reply,
            });
        }
        let seal = match &open {
            Some(o) => {
                disconnected
                    || o.ops >= sh.cfg.max_block_ops
                    || o.started.elapsed() >= max_wait
                    || (sh.blocks_in_flight.load(Ordering::Acquire) == 0 && gap_left(last_seal, min_gap).is_none())
            }
            None => false,
        };
        if seal {
            last_seal = Instant::now();
            let o = open.take().expect("checked");
            let msg = if state.open_block_len() == 0 {
                state.abort_empty_block();
                ToCommitter::RepliesOnly { replies: o.replies }
            } else {
                sh.blocks_in_flight.fetch_add(1, Ordering::AcqRel);
                let t = Instant::now();
                let block = Box::new(state.seal_block());
                let took = t.elapsed();
                if took >= SLOW_STAGE {
                    tracing::warn!(
                        height = block.header.height,
                        ops = block.ops.len(),
                        seal_ms = took.as_millis() as u64,
                        "slow block seal"
                    );
                }
                ToCommitter::Block {
                    block,
                    replies: o.replies,
                    epoch,
                    sealed: Instant::now(),
                }
            };
            // Blocks while the committer holds one block in its queue: this is
            // the backpressure that keeps at most two blocks in flight.
            if tx.send(msg).is_err() {
                return;
            }
        }
        if disconnected && open.is_none() {
            return;
        }
    }
}

/// What is left of the minimum interval since `last_seal`, if anything.
fn gap_left(last_seal: Instant, min_gap: Duration) -> Option<Duration> {
    let left = min_gap.saturating_sub(last_seal.elapsed());
    (!left.is_zero()).then_some(left)
}

/// Until every sealed block handed to the committer is done with, so that
/// a state loaded now is not overtaken by a commit still in flight.
fn wait_for_committer(sh: &Shared) {
    while sh.blocks_in_flight.load(Ordering::Acquire) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// After a failed commit: every `STORAGE_RETRY`, ask the sink for the durable
/// state (the local sink reopens the store and reloads it), answering whatever
/// arrives meanwhile `Unavailable`.
/// Returns the reloaded state, or `None` if the pipeline shut down first.
fn recover_storage(rx: &Receiver<VerifiedSubmission>, sh: &Shared) -> Option<State> {
    let mut attempts = 0u64;
    loop {
        let until = Instant::now() + STORAGE_RETRY;
        loop {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(sub) => {
                    sh.stats.sequencer_queue.fetch_sub(1, Ordering::Relaxed);
                    answer_rest(sh, sub.slots, sub.reply, Reason::Unavailable);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
        attempts += 1;
        match sh.sink.recover() {
            Ok(state) => {
                tracing::warn!(
                    attempts,
                    height = state.height(),
                    "store writable again; accepting operations"
                );
                *sh.storage_error.lock() = None;
                return Some(state);
            }
            Err(e) => {
                if attempts == 1 || attempts.is_multiple_of(30) {
                    tracing::error!(error = %e, attempts, "store still failing; not accepting operations");
                }
            }
        }
    }
}

fn abort_open(state: &mut State, sh: &Shared, o: OpenBlockReplies) {
    if state.open_block_len() == 0 {
        state.abort_empty_block();
    } else {
        // Partially applied: seal to close it; the reload replaces this state.
        let _ = state.seal_block();
    }
    for p in o.replies {
        answer_rest(sh, p.slots, p.reply, Reason::Unavailable);
    }
}

/// Answers every slot not resolved yet with `reason` (slots already holding a
/// duplicate's receipt keep it), releases the submission's in-flight count
/// (one per slot) and replies.
fn answer_rest(sh: &Shared, slots: Vec<Option<Outcome>>, reply: Reply, reason: Reason) {
    sh.stats.inflight_ops.fetch_sub(slots.len(), Ordering::AcqRel);
    reply(
        slots
            .into_iter()
            .map(|s| s.unwrap_or(Outcome::Rejected(reason)))
            .collect(),
    );
}

impl PendingReply {
    fn stages(&self, sealed: Instant, durable: Instant) -> StageTimes {
        StageTimes {
            verify: self.verified - self.admitted,
            sequence: self.applied_at - self.verified,
            block: sealed - self.applied_at,
            commit: durable - sealed,
        }
    }
}

fn resolve(sh: &Shared, p: PendingReply, receipts: &[Receipt]) {
    let mut slots = p.slots;
    for (slot, r) in p.applied {
        slots[slot] = Some(match r {
            Ok(i) => {
                sh.stats.committed_ops.fetch_add(1, Ordering::Relaxed);
                Outcome::Committed(receipts[i as usize].clone())
            }
            // A retry gets its original receipt: one the replay set refused
            // (DUPLICATE), or one past its validity that may have been
            // committed long ago (rare, so the index lookup is affordable).
            Err((reason @ (Reason::Duplicate | Reason::Expired), tx)) => match sh.store.receipt(&tx) {
                Ok(Some(r)) => Outcome::Duplicate(r),
                _ => {
                    if reason == Reason::Expired {
                        sh.stats.rejected_ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Rejected(reason)
                }
            },
            Err((reason, _)) => {
                sh.stats.rejected_ops.fetch_add(1, Ordering::Relaxed);
                Outcome::Rejected(reason)
            }
        });
    }
    sh.stats.inflight_ops.fetch_sub(slots.len(), Ordering::AcqRel);
    (p.reply)(slots.into_iter().map(|s| s.expect("every slot resolved")).collect());
}

fn committer(rx: Receiver<ToCommitter>, idle: Sender<()>, sh: Arc<Shared>, on_commit: CommitHook) {
    let set_idle = || {
        sh.blocks_in_flight.fetch_sub(1, Ordering::AcqRel);
        let _ = idle.try_send(());
    };
    while let Ok(msg) = rx.recv() {
        match msg {
            ToCommitter::RepliesOnly { replies } => {
                for p in replies {
                    resolve(&sh, p, &[]);
                }
            }
            ToCommitter::Block {
                block,
                replies,
                epoch,
                sealed,
            } => {
                if epoch <= sh.failed_epoch.load(Ordering::Acquire) {
                    for p in replies {
                        answer_rest(&sh, p.slots, p.reply, Reason::Unavailable);
                    }
                    set_idle();
                    continue;
                }
                let receipts = crate::engine::receipts_of(&block);
                if sh.cfg.unsafe_ack_before_commit {
                    // Deliberately wrong (test-only): acknowledge, then write.
                    for p in replies {
                        resolve(&sh, p, &receipts);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = sh.sink.commit(&block);
                    set_idle();
                    continue;
                }
                let t0 = Instant::now();
                match sh.sink.commit(&block) {
                    Ok(()) => {
                        let durable = Instant::now();
                        let times = CommitTimes {
                            write: durable - t0,
                            submissions: replies.iter().map(|p| p.stages(sealed, durable)).collect(),
                        };
                        {
                            let mut v = sh.view.write();
                            v.height = block.header.height;
                            v.head_hash = block.hash;
                            v.state_hash = block.header.state_hash;
                            v.timestamp_ms = block.header.timestamp_ms;
                            v.params = block.params.clone();
                            v.totals = block.totals;
                        }
                        // Free the sequencer to seal the next block before we
                        // spend time on replies.
                        set_idle();
                        let t = Instant::now();
                        let height = block.header.height;
                        for p in replies {
                            resolve(&sh, p, &receipts);
                        }
                        on_commit(&Arc::new(*block), &times);
                        let took = t.elapsed();
                        if took >= SLOW_STAGE {
                            tracing::warn!(height, replies_ms = took.as_millis() as u64, "slow replies");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, height = block.header.height, "commit failed; answering UNAVAILABLE");
                        *sh.storage_error.lock() = Some(format!("storage write failed: {e}"));
                        sh.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                        sh.failed_epoch.store(epoch, Ordering::Release);
                        for p in replies {
                            answer_rest(&sh, p.slots, p.reply, Reason::Unavailable);
                        }
                        set_idle();
                    }
                }
            }
        }
    }
}
