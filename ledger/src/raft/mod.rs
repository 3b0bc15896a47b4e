//! Storage for replicating the ledger with openraft (0.9, storage v2).
//!
//! One Raft entry per block ([`BlockEntry`]): the leader proposes each block
//! it seals; every replica applies committed entries with the deterministic
//! state machine and commits them to its own ledger store. The pieces:
//!
//! - [`TypeConfig`]: openraft's type configuration (node ids `u64`, nodes
//!   [`ReplicaNode`]: replication address and client endpoint, payload
//!   [`BlockEntry`], answer [`BlockResponse`], snapshots as files).
//! - [`LogStore`]: the Raft log and vote on a RocksDB of its own
//!   (`<data>/raft`), every write synced.
//! - [`LedgerStateMachine`]: applies committed entries to the ledger
//!   [`Store`](crate::Store); snapshots are RocksDB checkpoints of it.
//!
//! A node opens both with [`open_storage`] and builds its `Raft` with
//! `openraft::Raft::new(id, config, network, log_store, state_machine)`.

pub mod log_store;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use log_store::LogStore;
pub use state_machine::{LedgerSnapshotBuilder, LedgerStateMachine, META_APPLIED, META_MEMBERSHIP};
pub use types::{
    BlockEntry, BlockOutcome, BlockResponse, Entry, LedgerRaft, Node, NodeId, ReplicaNode, StorageError, TypeConfig,
};

use std::path::Path;
use std::sync::Arc;

use crate::state::State;
use crate::store::{Store, StoreError};

/// Where the Raft log lives in a node's data directory (beside the store's
/// `db`, never inside it: installing a snapshot replaces `db` whole).
pub const LOG_DIR: &str = "raft";
/// Where snapshot files live in a node's data directory.
pub const SNAPSHOT_DIR: &str = "raft-snapshots";

/// Opens a node's Raft storage under `data_dir` ([`LOG_DIR`],
/// [`SNAPSHOT_DIR`]) over its initialised ledger `store` (which must not
/// live in either): the log store and the state machine, starting from
/// `state`, the store's head as the caller already loaded it (`Store::load`
/// replays every block since the last checkpoint, re-verifying them: a node
/// that opened its ledger need not pay for that twice).
pub fn open_storage(
    data_dir: &Path,
    store: Arc<Store>,
    state: State,
) -> Result<(LogStore, LedgerStateMachine), StoreError> {
    let log = LogStore::open(&data_dir.join(LOG_DIR))?;
    let sm = LedgerStateMachine::with_state(store, state, &data_dir.join(SNAPSHOT_DIR))?;
    Ok((log, sm))
}
