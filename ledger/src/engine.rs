//! [`Ledger`]: the state machine and the store wired together synchronously.
//!
//! One call to [`Ledger::execute`] verifies a batch, applies it as one block,
//! commits the block durably, and only then returns receipts. The node's
//! pipeline ([`crate::pipeline`]) runs the same steps on separate threads so
//! that verification, apply and commit overlap; this type is the simple,
//! obviously-correct reference used by tools, tests and benchmarks.

use std::path::Path;
use std::sync::Arc;

use crate::codec::SignedOp;
use crate::crypto::{verify_ops_parallel, KeyCache};
use crate::exec::{execute_block, Executed, Refusal, VerifiedOp};
use crate::reason::Reason;
use crate::state::{Genesis, SealedBlock, State};
use crate::store::{Receipt, Store, StoreError, StoreOptions};

/// What happened to one submitted operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and durably committed.
    Committed(Receipt),
    /// It was already committed earlier; this is the original receipt.
    Duplicate(Receipt),
    /// Refused; nothing changed.
    Rejected(Reason),
}

impl Outcome {
    pub fn receipt(&self) -> Option<&Receipt> {
        match self {
            Outcome::Committed(r) | Outcome::Duplicate(r) => Some(r),
            Outcome::Rejected(_) => None,
        }
    }
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Outcome::Rejected(r) => Some(*r),
            _ => None,
        }
    }
}

/// Receipts of a sealed block, for the operations that applied.
pub fn receipts_of(block: &SealedBlock) -> Vec<Receipt> {
    block
        .ops
        .iter()
        .enumerate()
        .map(|(i, a)| Receipt {
            tx_id: a.op.tx_id,
            height: block.header.height,
            index: i as u32,
            timestamp_ms: block.header.timestamp_ms,
            block_hash: block.hash,
            large: a.large,
            effect: a.effect,
        })
        .collect()
}

/// A ledger opened on a data directory.
pub struct Ledger {
    state: State,
    store: Arc<Store>,
    cache: Arc<KeyCache>,
}

impl Ledger {
    /// Opens the store; initialises it from `genesis` if it is empty.
    pub fn open(path: &Path, genesis: Option<&Genesis>) -> Result<Ledger, StoreError> {
        Ledger::open_with(path, genesis, &StoreOptions::default())
    }

    /// [`Ledger::open`] with the store tuned by `opts` (tests and tools that
    /// want frequent checkpoints or small memtables).
    pub fn open_with(path: &Path, genesis: Option<&Genesis>, opts: &StoreOptions) -> Result<Ledger, StoreError> {
        let store = Store::open_with(path, opts)?;
        Ledger::from_store(Arc::new(store), genesis)
    }

    pub fn from_store(store: Arc<Store>, genesis: Option<&Genesis>) -> Result<Ledger, StoreError> {
        let state = if store.is_initialised()? {
            if let Some(g) = genesis {
                if store.genesis()? != *g {
                    return Err(StoreError::Genesis("data directory holds a different genesis".into()));
                }
            }
            store.load()?
        } else {
            let g = genesis.ok_or(StoreError::NotInitialised)?;
            store.init(g)?
        };
        Ok(Ledger {
            state,
            store,
            cache: Arc::new(KeyCache::default()),
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
    pub fn key_cache(&self) -> &Arc<KeyCache> {
        &self.cache
    }
    /// Gives up the parts (for the pipeline, which owns them on its threads).
    pub fn into_parts(self) -> (State, Arc<Store>, Arc<KeyCache>) {
        (self.state, self.store, self.cache)
    }

    /// Verifies, applies as one block at `timestamp_ms` (clamped so time never
    /// goes backwards), commits durably, and returns one outcome per input.
    pub fn execute(&mut self, timestamp_ms: u64, ops: Vec<SignedOp>) -> Result<Vec<Outcome>, StoreError> {
        let verified = verify_ops_parallel(ops, &self.cache, 256);
        self.execute_verified(timestamp_ms, verified)
    }

    /// As [`Ledger::execute`] for operations whose signatures were already checked.
    pub fn execute_verified(&mut self, timestamp_ms: u64, ops: Vec<VerifiedOp>) -> Result<Vec<Outcome>, StoreError> {
        let ts = timestamp_ms.max(self.state.timestamp_ms());
        let Executed { block, outcomes } = execute_block(&mut self.state, ts, ops);
        if let Err(e) = self.store.commit(&block) {
            // The in-memory state ran ahead of the disk: go back to the truth.
            self.state = self.store.load()?;
            return Err(e);
        }
        let receipts = receipts_of(&block);
        outcomes
            .into_iter()
            .map(|o| match o {
                Ok(a) => Ok(Outcome::Committed(receipts[a.index as usize].clone())),
                // A retry gets its original receipt, as from the pipeline: one
                // the replay set refused (DUPLICATE), or one past its validity
                // that may have been committed long ago (EXPIRED).
                Err(Refusal {
                    reason: reason @ (Reason::Duplicate | Reason::Expired),
                    tx_id,
                }) => Ok(match self.store.receipt(&tx_id)? {
                    Some(r) => Outcome::Duplicate(r),
                    None => Outcome::Rejected(reason),
                }),
                Err(r) => Ok(Outcome::Rejected(r.reason)),
            })
            .collect()
    }
}
