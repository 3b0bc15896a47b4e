//! A node as one replica of a Raft group: the pipeline's sink that proposes
//! each sealed block ([`RaftSink`]) and the services' backend that refuses
//! writes unless this replica leads ([`ReplicaBackend`]).
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

/// The pipeline's sink on a replica: proposes each sealed block to Raft.
pub struct RaftSink {
    raft: LedgerRaft,
    store: Arc<Store>,
    rt: tokio::runtime::Handle,
}

impl RaftSink {
    /// `rt`: the runtime the Raft runs on (the sink is called on the
    /// pipeline's committer thread, which is not one of its threads).
    pub fn new(raft: LedgerRaft, store: Arc<Store>, rt: tokio::runtime::Handle) -> RaftSink {
        RaftSink { raft, store, rt }
    }
}

impl BlockSink for RaftSink {
    fn commit(&self, block: &SealedBlock) -> Result<(), String> {
        let entry = BlockEntry::from_sealed(block);
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
        let raft = self.raft.clone();
        self.rt
            .block_on(async move { tokio::time::timeout(LEAD_WAIT, raft.ensure_linearizable()).await })
            .map_err(|_| "not leading yet".to_string())?
            .map_err(|e| format!("not leading: {e}"))?;
        self.store.load().map_err(|e| e.to_string())
    }
}

/// The services' backend on a replica.
pub struct ReplicaBackend {
    pipeline: Arc<Pipeline>,
    raft: LedgerRaft,
    sm: LedgerStateMachine,
    /// Client endpoint (`https://host:port`) of each replica, for `NOT_LEADER`.
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
        let (me, leader) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.id, m.current_leader)
        };
        if leader != Some(me) {
            return Err(Refusal::NotLeader {
                leader: leader.and_then(|l| self.endpoints.get(&l).cloned()),
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
