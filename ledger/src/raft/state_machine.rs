//! The replicated state machine: committed entries applied to the ledger
//! `Store` with the deterministic `State` (openraft's `RaftStateMachine` and
//! `RaftSnapshotBuilder`).
//!
//! A block entry ([`BlockEntry`]) is committed only if it executes on this
//! replica's state to exactly the block the leader sealed:
//!
//! 1. its height is the head's + 1 and its timestamp is not before the
//!    head's (otherwise `State::begin_block` would refuse it);
//! 2. its operations decode and every signature holds (the ledger's rule,
//!    `crypto::verify_ops_parallel` with this machine's `KeyCache`);
//! 3. `begin_block(timestamp)`, every operation applies, `seal_block`, and
//!    the sealed block's hash equals the entry's `block_hash` (which commits
//!    to the previous hash, the operations and the state hash).
//!
//! Then it is committed with `Store::commit_with_meta`, the last applied log
//! id and the last membership in the same synced batch, so a crash never
//! leaves a block without its log position or the reverse. An entry that
//! fails a check is **skipped** and logged: every replica holds the same
//! state at that log position, so every replica skips it alike, and the log
//! position moves on (`BlockOutcome::Skipped`). If the failure came after
//! the state was touched (3), the state is rebuilt from the store
//! (`Store::load`), which holds exactly the blocks committed before.
//!
//! Blank and membership entries move the last applied log id (and the
//! membership) without a block (`Store::put_meta`, once per `apply` call).
//!
//! Snapshots are RocksDB checkpoints of the store, packed into one file
//! (`raft::snapshot`): `<snapshot_dir>/current.snap`. Installing one
//! replaces the whole store directory (`Store::replace_with`) and reloads.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::snapshot;
use super::types::{BlockEntry, BlockOutcome, BlockResponse, Entry, Node, NodeId, StorageError, TypeConfig};
use crate::crypto::{verify_ops_parallel, KeyCache};
use crate::state::State;
use crate::store::{Store, StoreError};

/// `meta` record of the last applied log id (JSON `Option<LogId>`).
pub const META_APPLIED: &[u8] = b"raft/applied";
/// `meta` record of the last applied membership (JSON `StoredMembership`).
pub const META_MEMBERSHIP: &[u8] = b"raft/membership";
/// Signatures per verification batch.
const VERIFY_CHUNK: usize = 256;
const CURRENT_SNAPSHOT: &str = "current.snap";

type Meta = SnapshotMeta<NodeId, Node>;
type Membership = StoredMembership<NodeId, Node>;

fn any(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

/// The durable Raft position stored with the blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
}

impl Applied {
    fn read(store: &Store) -> Result<Applied, AnyError> {
        let last_applied = match store.meta_value(META_APPLIED).map_err(any)? {
            None => None,
            Some(v) => serde_json::from_slice(&v).map_err(any)?,
        };
        let membership = match store.meta_value(META_MEMBERSHIP).map_err(any)? {
            None => Membership::default(),
            Some(v) => serde_json::from_slice(&v).map_err(any)?,
        };
        Ok(Applied {
            last_applied,
            membership,
        })
    }

    fn records(&self) -> [(Vec<u8>, Vec<u8>); 2] {
        [
            (
                META_APPLIED.to_vec(),
                serde_json::to_vec(&self.last_applied).expect("log id serialises"),
            ),
            (
                META_MEMBERSHIP.to_vec(),
                serde_json::to_vec(&self.membership).expect("membership serialises"),
            ),
        ]
    }
}

fn as_refs(r: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    r.iter().map(|(k, v)| (&k[..], &v[..])).collect()
}

struct Inner {
    store: Arc<Store>,
    state: State,
    cache: KeyCache,
    applied: Applied,
}

/// What the state machine and its snapshot builders share.
struct Shared {
    store: Arc<Store>,
    snapshot_dir: PathBuf,
    /// Serialises writers of `snapshot_dir` (builds and installs).
    snapshot_lock: Mutex<()>,
    next_snapshot: AtomicU64,
}

/// The ledger's replicated state machine. Cheap to clone (shared).
#[derive(Clone)]
pub struct LedgerStateMachine {
    inner: Arc<Mutex<Inner>>,
    shared: Arc<Shared>,
}

/// Builds snapshots beside the running state machine (openraft runs it on
/// its own task, while entries keep being applied).
pub struct LedgerSnapshotBuilder {
    shared: Arc<Shared>,
}

async fn blocking<T, F>(f: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::from(StorageIOError::write_state_machine(any(e))))?
}

impl LedgerStateMachine {
    /// Opens the state machine over an initialised store (it holds the
    /// genesis): loads the state (`Store::load`) and the last applied log
    /// id and membership. Snapshots live in `snapshot_dir` (created).
    pub fn open(store: Arc<Store>, snapshot_dir: &Path) -> Result<LedgerStateMachine, StoreError> {
        let state = store.load()?;
        LedgerStateMachine::with_state(store, state, snapshot_dir)
    }

    /// [`LedgerStateMachine::open`] with the state the caller already loaded.
    pub fn with_state(store: Arc<Store>, state: State, snapshot_dir: &Path) -> Result<LedgerStateMachine, StoreError> {
        std::fs::create_dir_all(snapshot_dir)
            .map_err(|e| StoreError::Corrupt(format!("snapshot directory {}: {e}", snapshot_dir.display())))?;
        let applied = Applied::read(&store).map_err(|e| StoreError::Corrupt(format!("raft records: {e}")))?;
        Ok(LedgerStateMachine {
            inner: Arc::new(Mutex::new(Inner {
                store: store.clone(),
                state,
                cache: KeyCache::default(),
                applied,
            })),
            shared: Arc::new(Shared {
                store,
                snapshot_dir: snapshot_dir.to_path_buf(),
                snapshot_lock: Mutex::new(()),
                next_snapshot: AtomicU64::new(0),
            }),
        })
    }

    /// The store the state machine commits to (for reads).
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// Runs `f` on the current state (the head of the applied blocks).
    pub fn with_state_ref<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.inner.lock().state)
    }

    /// Height and hash of the applied head.
    pub fn head(&self) -> (u64, crate::types::Hash32) {
        let i = self.inner.lock();
        (i.state.height(), i.state.head_hash())
    }

    /// The last applied log id (as durable in the store).
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.inner.lock().applied.last_applied
    }
}

impl Inner {
    fn response(&self, outcome: BlockOutcome) -> BlockResponse {
        BlockResponse {
            height: self.state.height(),
            block_hash: self.state.head_hash(),
            outcome,
        }
    }

    fn apply_all(&mut self, entries: Vec<Entry>) -> Result<Vec<BlockResponse>, StorageError> {
        let mut out = Vec::with_capacity(entries.len());
        // The position moved without a block since the last durable write.
        let mut dirty = false;
        for e in entries {
            let log_id = e.log_id;
            match e.payload {
                EntryPayload::Blank => {
                    self.applied.last_applied = Some(log_id);
                    dirty = true;
                    out.push(self.response(BlockOutcome::NoBlock));
                }
                EntryPayload::Membership(m) => {
                    self.applied.last_applied = Some(log_id);
                    self.applied.membership = StoredMembership::new(Some(log_id), m);
                    dirty = true;
                    out.push(self.response(BlockOutcome::NoBlock));
                }
                EntryPayload::Normal(block) => {
                    let r = self.apply_block(log_id, &block)?;
                    dirty = !matches!(r.outcome, BlockOutcome::Committed);
                    out.push(r);
                }
            }
        }
        if dirty {
            let records = self.applied.records();
            self.store
                .put_meta(&as_refs(&records))
                .map_err(|e| StorageIOError::write_state_machine(any(e)))?;
        }
        Ok(out)
    }

    /// Why `block` cannot be executed on the current state, checked before
    /// the state is touched.
    fn precheck(&self, block: &BlockEntry) -> Result<Vec<crate::codec::SignedOp>, String> {
        let head = self.state.height();
        if block.height != head + 1 {
            return Err(format!(
                "it does not chain: height {}, the head is {head}",
                block.height
            ));
        }
        if block.timestamp_ms < self.state.timestamp_ms() {
            return Err(format!(
                "its timestamp {} is before the head's {}",
                block.timestamp_ms,
                self.state.timestamp_ms()
            ));
        }
        block
            .ops()
            .map_err(|r| format!("its operations do not decode ({})", r.code()))
    }

    fn apply_block(&mut self, log_id: LogId<NodeId>, block: &BlockEntry) -> Result<BlockResponse, StorageError> {
        let skip = |this: &mut Inner, reason: String| {
            tracing::warn!(
                log_index = log_id.index,
                height = block.height,
                block_hash = %hex::encode(block.block_hash),
                %reason,
                "replicated block skipped"
            );
            this.applied.last_applied = Some(log_id);
            this.response(BlockOutcome::Skipped { reason })
        };
        let ops = match self.precheck(block) {
            Ok(ops) => ops,
            Err(reason) => return Ok(skip(self, reason)),
        };
        let verified = verify_ops_parallel(ops, &self.cache, VERIFY_CHUNK);
        if let Some((i, (op, _))) = verified
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.as_ref().err().map(|e| (i, e)))
        {
            let reason = format!("operation {i} ({}) has a bad signature", op.tx_id);
            return Ok(skip(self, reason));
        }
        let executed = crate::exec::execute_block(&mut self.state, block.timestamp_ms, verified);
        let failure = if let Some((i, r)) = executed
            .outcomes
            .iter()
            .enumerate()
            .find_map(|(i, o)| o.as_ref().err().map(|r| (i, r)))
        {
            Some(format!("operation {i} ({}) refused: {}", r.tx_id, r.reason.code()))
        } else if executed.block.hash != block.block_hash {
            Some(format!(
                "it seals with hash {}, not the expected one",
                hex::encode(executed.block.hash)
            ))
        } else {
            None
        };
        if let Some(reason) = failure {
            // The state holds a block no replica commits: start over from
            // what the store holds (the blocks committed before this one).
            self.state = self
                .store
                .load()
                .map_err(|e| StorageIOError::read_state_machine(any(e)))?;
            return Ok(skip(self, reason));
        }
        self.applied.last_applied = Some(log_id);
        let records = self.applied.records();
        self.store
            .commit_with_meta(&executed.block, &as_refs(&records))
            .map_err(|e| StorageIOError::write_state_machine(any(e)))?;
        Ok(self.response(BlockOutcome::Committed))
    }
}

impl Shared {
    fn current_path(&self) -> PathBuf {
        self.snapshot_dir.join(CURRENT_SNAPSHOT)
    }

    fn fresh_name(&self, what: &str) -> PathBuf {
        let n = self.next_snapshot.fetch_add(1, Ordering::Relaxed);
        self.snapshot_dir.join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Checkpoint → snapshot file → `current.snap`.
    fn build(&self) -> Result<Meta, AnyError> {
        let _g = self.snapshot_lock.lock();
        let work = self.fresh_name("building");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(any)?;
        let result = (|| {
            let db_dir = work.join("db");
            self.store.checkpoint_into(&db_dir).map_err(any)?;
            // The position of the checkpoint itself (entries go on being
            // applied meanwhile): read from the copy.
            let applied = {
                let copy = Store::open_read_only(&db_dir).map_err(any)?;
                Applied::read(&copy)?
            };
            let snapshot_id = match &applied.last_applied {
                Some(l) => format!(
                    "{}-{}-{}-{}",
                    l.leader_id.term,
                    l.leader_id.node_id,
                    l.index,
                    self.next_snapshot.fetch_add(1, Ordering::Relaxed)
                ),
                None => format!("none-{}", self.next_snapshot.fetch_add(1, Ordering::Relaxed)),
            };
            // Unique across restarts too (the counter starts over).
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let snapshot_id = format!("{snapshot_id}-{millis}");
            let meta = Meta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership,
                snapshot_id,
            };
            let file = work.join("snapshot");
            snapshot::pack(&db_dir, &serde_json::to_vec(&meta).map_err(any)?, &file).map_err(any)?;
            std::fs::rename(&file, self.current_path()).map_err(any)?;
            sync_dir(&self.snapshot_dir)?;
            Ok(meta)
        })();
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn current(&self) -> Result<Option<(Meta, std::fs::File)>, AnyError> {
        let _g = self.snapshot_lock.lock();
        let mut f = match std::fs::File::open(self.current_path()) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(any(e)),
        };
        let meta: Meta = serde_json::from_slice(&snapshot::read_meta(&mut f).map_err(any)?).map_err(any)?;
        f.rewind().map_err(any)?;
        Ok(Some((meta, f)))
    }
}

fn sync_dir(dir: &Path) -> Result<(), AnyError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(any)
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let shared = self.shared.clone();
        blocking(move || {
            let meta = shared.build().map_err(|e| StorageIOError::write_snapshot(None, e))?;
            let (_, f) = shared
                .current()
                .map_err(|e| StorageIOError::read_snapshot(None, e))?
                .ok_or_else(|| StorageIOError::read_snapshot(None, AnyError::error("snapshot vanished")))?;
            Ok(Snapshot {
                meta,
                snapshot: Box::new(tokio::fs::File::from_std(f)),
            })
        })
        .await
    }
}

impl RaftStateMachine<TypeConfig> for LedgerStateMachine {
    type SnapshotBuilder = LedgerSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
        let i = self.inner.lock();
        Ok((i.applied.last_applied, i.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BlockResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let inner = self.inner.clone();
        blocking(move || inner.lock().apply_all(entries)).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        LedgerSnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let shared = self.shared.clone();
        blocking(move || {
            let path = shared.fresh_name("receiving");
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| StorageIOError::write_snapshot(None, any(e)))?;
            // Anonymous from here on: nothing to clean up if the transfer
            // is abandoned.
            std::fs::remove_file(&path).map_err(|e| StorageIOError::write_snapshot(None, any(e)))?;
            Ok(Box::new(tokio::fs::File::from_std(f)))
        })
        .await
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<tokio::fs::File>) -> Result<(), StorageError> {
        let mut f = snapshot.into_std().await;
        let meta = meta.clone();
        let inner = self.inner.clone();
        let shared = self.shared.clone();
        blocking(move || {
            let err = |e: AnyError| StorageError::from(StorageIOError::write_snapshot(None, e));
            let _g = shared.snapshot_lock.lock();
            // Keep the received bytes as a file of our own: it becomes the
            // current snapshot once installed.
            let received = shared.fresh_name("installing");
            (|| -> Result<(), AnyError> {
                f.rewind().map_err(any)?;
                let mut out = std::fs::File::create_new(&received).map_err(any)?;
                std::io::copy(&mut (&mut f as &mut dyn Read), &mut out).map_err(any)?;
                out.sync_all().map_err(any)?;
                Ok(())
            })()
            .map_err(err)?;
            let result = install(&inner, &shared, &meta, &received);
            if result.is_ok() {
                std::fs::rename(&received, shared.current_path()).map_err(|e| err(any(e)))?;
                sync_dir(&shared.snapshot_dir).map_err(err)?;
            } else {
                let _ = std::fs::remove_file(&received);
            }
            result.map_err(err)
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let shared = self.shared.clone();
        blocking(move || {
            let cur = shared.current().map_err(|e| StorageIOError::read_snapshot(None, e))?;
            Ok(cur.map(|(meta, f)| Snapshot {
                meta,
                snapshot: Box::new(tokio::fs::File::from_std(f)),
            }))
        })
        .await
    }
}

/// Unpacks the snapshot file `received` beside the store, checks it is a
/// store of the same chain at the snapshot's position, swaps it in and
/// reloads the state.
fn install(inner: &Mutex<Inner>, shared: &Shared, meta: &Meta, received: &Path) -> Result<(), AnyError> {
    let store_path = shared.store.path().to_path_buf();
    let incoming = store_path.with_extension("incoming");
    if incoming.exists() {
        std::fs::remove_dir_all(&incoming).map_err(any)?;
    }
    let packed_meta = snapshot::unpack(received, &incoming).map_err(any)?;
    let check = (|| -> Result<(), AnyError> {
        let packed: Meta = serde_json::from_slice(&packed_meta).map_err(any)?;
        if packed != *meta {
            return Err(AnyError::error(format!(
                "the snapshot file is {} but {} was announced",
                packed.snapshot_id, meta.snapshot_id
            )));
        }
        let copy = Store::open_read_only(&incoming).map_err(any)?;
        let ours = shared.store.genesis().map_err(any)?;
        let theirs = copy.genesis().map_err(any)?;
        if serde_json::to_vec(&ours).map_err(any)? != serde_json::to_vec(&theirs).map_err(any)? {
            return Err(AnyError::error(
                "the snapshot is of another chain (its genesis differs)",
            ));
        }
        let applied = Applied::read(&copy)?;
        if applied.last_applied != meta.last_log_id || applied.membership != meta.last_membership {
            return Err(AnyError::error("the snapshot's store is not at the announced position"));
        }
        Ok(())
    })();
    if let Err(e) = check {
        let _ = std::fs::remove_dir_all(&incoming);
        return Err(e);
    }
    let mut i = inner.lock();
    shared.store.replace_with(&incoming).map_err(any)?;
    // From here the store is the snapshot's: a failed load leaves the
    // machine unusable (openraft stops on the error) and the node refuses
    // to start until an operator looks, as for any store that does not load.
    i.state = shared.store.load().map_err(any)?;
    i.applied = Applied::read(&shared.store)?;
    tracing::info!(
        snapshot = %meta.snapshot_id,
        height = i.state.height(),
        "installed a snapshot from the leader"
    );
    Ok(())
}
