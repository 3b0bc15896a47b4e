//! The gateway's one view of the ledger: [`LedgerBackend`], what the services
//! submit to and read the committed head from.
//!
//! The services do not know whether the node commits alone or as one
//! replica of a cluster. A single node's backend is its [`Pipeline`]. A
//! replica that is not the leader refuses writes with
//! [`Refusal::NotLeader`], naming the leader's client endpoint when it knows
//! it, so that the SDK can go there (a write is idempotent by its tx id, so
//! sending it again to the leader is safe).

use ruble_ledger::codec::SignedOp;
use ruble_ledger::pipeline::{CommittedView, Pipeline, PipelineStats, Reply};
use ruble_ledger::Reason;

/// Why a submission was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A ledger reason: `Overloaded`, `Unavailable`.
    Ledger(Reason),
    /// This node does not sequence writes; `leader` is the client endpoint
    /// (`https://host:port`) of the one that does, if known.
    NotLeader { leader: Option<String> },
}

impl From<Reason> for Refusal {
    fn from(r: Reason) -> Self {
        Refusal::Ledger(r)
    }
}

/// What the services need of the ledger.
pub trait LedgerBackend: Send + Sync + 'static {
    /// Admits decoded operations; `reply` is called once, after their block
    /// is durable (committed by a quorum, on a replicated node).
    fn submit(&self, ops: Vec<SignedOp>, reply: Reply) -> Result<(), Refusal>;

    /// The committed head this node serves reads at. Never older than what
    /// this node has acknowledged: a receipt goes out after the head moved.
    fn view(&self) -> CommittedView;

    /// Why the node cannot commit right now, if it cannot.
    fn storage_error(&self) -> Option<String>;

    /// Pipeline counters, for metrics.
    fn stats(&self) -> &PipelineStats;
}

impl LedgerBackend for Pipeline {
    fn submit(&self, ops: Vec<SignedOp>, reply: Reply) -> Result<(), Refusal> {
        Pipeline::submit(self, ops, reply).map_err(Refusal::Ledger)
    }

    fn view(&self) -> CommittedView {
        Pipeline::view(self)
    }

    fn storage_error(&self) -> Option<String> {
        Pipeline::storage_error(self)
    }

    fn stats(&self) -> &PipelineStats {
        Pipeline::stats(self)
    }
}
