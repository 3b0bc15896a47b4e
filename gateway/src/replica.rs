//! A node as one replica of a Raft group: the pipeline's sink that proposes
//! each sealed block ([`RaftSink`]) and the services' backend that refuses
//! writes unless this replica leads ([`ReplicaBackend`]), naming the
//! leader by the client endpoint the membership records
//! ([`client_endpoint_of`]).
//!
//! Only the leader sequences. Its pipeline executes blocks on a speculative
//! state and proposes them; every replica (the leader included) applies a
//! committed block through the state machine (`ruble_ledger::raft`), which
//! writes the store. A receipt goes out when `client_write` returns, that is
//! once a quorum holds the block in its synced log and the leader applied it.
//! A block the replicas skip (it was sealed on a state that is not the
//! committed head, e.g. after leadership moved) fails the sink: its
//! submissions are answered `UNAVAILABLE` and the pipeline reloads from the
//! store, so a stale leader heals with one lost (never acknowledged) block.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ruble_ledger::codec::SignedOp;
use ruble_ledger::pipeline::{BlockSink, CommittedView, Pipeline, PipelineStats, Reply};
use ruble_ledger::raft::{BlockEntry, BlockOutcome, LedgerRaft, LedgerStateMachine, NodeId};
use ruble_ledger::state::{SealedBlock, State};
use ruble_ledger::store::Store;

use crate::backend::{LedgerBackend, Refusal};

/// Longest wait for a quorum before a block's submissions are answered
/// `UNAVAILABLE` (their operations may still commit; a retry then gets the
/// original receipt).
pub const QUORUM_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait, per recovery attempt, for this replica to lead with every
/// earlier entry applied.
const LEAD_WAIT: Duration = Duration::from_millis(500);

/// A leader that has heard from no quorum for this long stops taking
/// writes (`NOT_LEADER` with no leader named): cut off, it would otherwise
/// hold every client until `QUORUM_TIMEOUT` while the others elect a new
/// leader (their election timeout is well below this).
pub const LEADER_QUORUM_STALE: Duration = Duration::from_millis(1000);

/// Blocks proposed but not yet committed in the fault-injection mode.
const EARLY_ACK_QUEUE_BLOCKS: usize = 64;

/// The pipeline's sink on a replica: proposes each sealed block to Raft.
pub struct RaftSink {
    raft: LedgerRaft,
    store: Arc<Store>,
    rt: tokio::runtime::Handle,
    /// Fault injection: blocks go to a background proposer and the sink
    /// answers at once.
    early_ack: Option<tokio::sync::mpsc::Sender<BlockEntry>>,
    /// The term in which the pipeline's state was last loaded as the
    /// leader's (`NEVER_LOADED` before): in any other term it may be stale.
    loaded_term: AtomicU64,
}

const NEVER_LOADED: u64 = u64::MAX;

impl RaftSink {
    /// `rt`: the runtime the Raft runs on (the sink is called on the
    /// pipeline's committer thread, which is not one of its threads).
    pub fn new(raft: LedgerRaft, store: Arc<Store>, rt: tokio::runtime::Handle) -> RaftSink {
        RaftSink {
            raft,
            store,
            rt,
            early_ack: None,
            loaded_term: AtomicU64::new(NEVER_LOADED),
        }
    }

    /// FAULT INJECTION for the cluster fault test only: report a block
    /// committed as soon as it is handed to Raft, before any quorum (and
    /// before even the leader's own log) holds it. A leader crash then loses
    /// acknowledged transfers, which the test must detect.
    pub fn unsafe_ack_before_quorum(mut self) -> RaftSink {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<BlockEntry>(EARLY_ACK_QUEUE_BLOCKS);
        let raft = self.raft.clone();
        self.rt.spawn(async move {
            while let Some(entry) = rx.recv().await {
                if let Err(e) = raft.client_write(entry).await {
                    tracing::warn!(error = %e, "unsafe early-acknowledged block not committed");
                }
            }
        });
        self.early_ack = Some(tx);
        self
    }
}

impl BlockSink for RaftSink {
    fn commit(&self, block: &SealedBlock) -> Result<(), String> {
        let entry = BlockEntry::from_sealed(block);
        if let Some(tx) = &self.early_ack {
            return tx
                .blocking_send(entry)
                .map_err(|_| "the early-acknowledging proposer stopped".to_string());
        }
        let raft = self.raft.clone();
        let written = self
            .rt
            .block_on(async move { tokio::time::timeout(QUORUM_TIMEOUT, raft.client_write(entry)).await });
        let resp = match written {
            Ok(Ok(r)) => r.data,
            Ok(Err(e)) => return Err(format!("block {} not committed: {e}", block.header.height)),
            Err(_) => {
                return Err(format!(
                    "block {}: no quorum within {QUORUM_TIMEOUT:?}",
                    block.header.height
                ))
            }
        };
        match resp.outcome {
            BlockOutcome::Committed if resp.block_hash == block.hash => Ok(()),
            other => Err(format!(
                "block {} was not applied by the replicas ({other:?}); reloading",
                block.header.height
            )),
        }
    }

    fn recover(&self) -> Result<State, String> {
        // Sequence again only as the leader, with everything committed
        // before this term applied: then the store is the committed head.
        // The term read before: if it moves on meanwhile, `needs_reload`
        // sees the difference and the state is loaded once more.
        let term = self.raft.metrics().borrow().current_term;
        let raft = self.raft.clone();
        self.rt
            .block_on(async move { tokio::time::timeout(LEAD_WAIT, raft.ensure_linearizable()).await })
            .map_err(|_| "not leading yet".to_string())?
            .map_err(|e| format!("not leading: {e}"))?;
        let state = self.store.load().map_err(|e| e.to_string())?;
        self.loaded_term.store(term, Ordering::Release);
        Ok(state)
    }

    /// A leader sequences only on a state loaded in its current term: the
    /// blocks committed before it led were applied by the state machine,
    /// not by this pipeline.
    fn needs_reload(&self) -> bool {
        self.raft.metrics().borrow().current_term != self.loaded_term.load(Ordering::Acquire)
    }
}

/// The client endpoint of replica `id`: the one the current membership
/// records (it names every replica, one added since this one started too),
/// else the configured one.
pub fn client_endpoint_of(raft: &LedgerRaft, configured: &BTreeMap<NodeId, String>, id: NodeId) -> Option<String> {
    let from_membership = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .map(|n| n.client_endpoint.clone())
        .filter(|e| !e.is_empty());
    from_membership.or_else(|| configured.get(&id).cloned())
}

/// The services' backend on a replica.
pub struct ReplicaBackend {
    pipeline: Arc<Pipeline>,
    raft: LedgerRaft,
    sm: LedgerStateMachine,
    /// Client endpoint (`https://host:port`) of each configured replica,
    /// for `NOT_LEADER` when the membership does not name the leader's.
    endpoints: BTreeMap<NodeId, String>,
}

impl ReplicaBackend {
    pub fn new(
        pipeline: Arc<Pipeline>,
        raft: LedgerRaft,
        sm: LedgerStateMachine,
        endpoints: BTreeMap<NodeId, String>,
    ) -> ReplicaBackend {
        ReplicaBackend {
            pipeline,
            raft,
            sm,
            endpoints,
        }
    }
}

impl LedgerBackend for ReplicaBackend {
    fn submit(&self, ops: Vec<SignedOp>, reply: Reply) -> Result<(), Refusal> {
        let (me, leader, quorum_ack_ms) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.id, m.current_leader, m.millis_since_quorum_ack)
        };
        if leader == Some(me) && quorum_ack_ms.is_some_and(|ms| ms > LEADER_QUORUM_STALE.as_millis() as u64) {
            return Err(Refusal::NotLeader { leader: None });
        }
        if leader != Some(me) {
            return Err(Refusal::NotLeader {
                leader: leader.and_then(|l| client_endpoint_of(&self.raft, &self.endpoints, l)),
            });
        }
        self.pipeline.submit(ops, reply).map_err(Refusal::Ledger)
    }

    /// The applied head: on the leader at least every acknowledged block
    /// (the state machine applies a block before `client_write` returns).
    fn view(&self) -> CommittedView {
        self.sm.with_state_ref(|s| CommittedView {
            height: s.height(),
            head_hash: s.head_hash(),
            state_hash: s.state_hash(),
            timestamp_ms: s.timestamp_ms(),
            params: s.params().clone(),
            totals: s.totals(),
        })
    }

    fn storage_error(&self) -> Option<String> {
        self.pipeline.storage_error()
    }

    fn stats(&self) -> &PipelineStats {
        self.pipeline.stats()
    }
}
