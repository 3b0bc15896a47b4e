//! The storage boundary: RocksDB, one column family per kind of record.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `genesis`, `format`, `state` | genesis JSON; layout version ([`FORMAT_VERSION`]); params + totals + head JSON |
//! | `blocks` | height (u64 BE) | header (116 B) ‖ block hash (32 B) |
//! | `ops` | cursor (u64 BE) | stored op (`u16 len ‖ body ‖ sig`) ‖ large flag ‖ effect (none, or tag ‖ u64: `Effect::encode`) |
//! | `txs` | tx id | cursor (written at checkpoints) |
//! | `history` | account ‖ height | cursors (u64 BE) of the account's ops up to that height since its previous record (written at checkpoints) |
//! | `large` | cursor | empty (large-payment reports) |
//! | `accounts` | account id | account record (written at checkpoints) |
//! | `banks` | bank id | bank record |
//! | `controls` | control record key | control record value (`state::Controls`; written at checkpoints) |
//! | `recent` | latest valid_until (u64 BE) ‖ height | the block's `(valid_until ‖ tx id)` list (the replay window) |
//!
//! A block is written by [`Store::commit`] as one `WriteBatch` with
//! `sync = true` holding what a restart needs to replay it (header,
//! operations, replay-window record): after it returns, the block survives a
//! crash or power loss; before it returns, none of it is visible after a
//! restart. What derives from the blocks (`accounts`, `history`, `txs`) is
//! kept in memory and written behind, at checkpoints, by a background thread
//! (see `Pendings`). [`Store::load`] rebuilds the in-memory state from the
//! last checkpoint and the blocks after it, and refuses to start when a
//! recomputed state or block hash differs from the stored one, so a
//! corrupted record is never served as a balance.

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rocksdb::{
    ColumnFamilyDescriptor, DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::block::BlockHeader;
use crate::codec::SignedOp;
use crate::crypto::{verify_ops_parallel, KeyCache};
use crate::state::{Account, Bank, Controls, Effect, Genesis, Params, SealedBlock, State, StateParts, Totals};
use crate::types::{cursor_of, cursor_parts, AccountId, Hash32, TxId};
use std::collections::BTreeMap;

const CF_META: &str = "meta";
const CF_BLOCKS: &str = "blocks";
const CF_OPS: &str = "ops";
const CF_TXS: &str = "txs";
const CF_HISTORY: &str = "history";
const CF_LARGE: &str = "large";
const CF_ACCOUNTS: &str = "accounts";
const CF_BANKS: &str = "banks";
const CF_RECENT: &str = "recent";
const CF_CONTROLS: &str = "controls";
/// `valid_until_ms` (8) ‖ tx id (32), one per operation in a `recent` record.
const RECENT_ENTRY_BYTES: usize = 40;

/// A block commit slower than this is logged with where its time went (one
/// such commit is a latency spike for every operation in the block).
const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// Stale replay-window records are range-deleted once every this many blocks.
const RECENT_PRUNE_EVERY: u64 = 64;
/// Version of the on-disk layout, stored as `meta/format` at genesis.
/// 2: per-block history and replay-window records (1 had one per operation).
/// 3: the `txs` index is written at checkpoints, not with each block.
/// 4: the state accumulator's lanes are two SHA-256 digests, not SHA-512
///    (every block's state hash differs from version 3's).
pub const FORMAT_VERSION: u32 = 5;
/// Prefix of the `meta` records written by the replicated state machine
/// ([`Store::commit_with_meta`], [`Store::put_meta`]).
pub const RAFT_META_PREFIX: &[u8] = b"raft/";

/// Column families whose keys arrive in random order (tx ids, account ids).
/// An account and the cursors of its operations (oldest first).
type AccountCursors = (AccountId, Vec<u64>);

const RANDOM_KEY_CFS: [&str; 3] = [CF_TXS, CF_HISTORY, CF_ACCOUNTS];
const ALL_CFS: [&str; 10] = [
    CF_META,
    CF_BLOCKS,
    CF_OPS,
    CF_TXS,
    CF_HISTORY,
    CF_LARGE,
    CF_ACCOUNTS,
    CF_BANKS,
    CF_RECENT,
    CF_CONTROLS,
];

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("data directory is corrupt: {0}")]
    Corrupt(String),
    #[error("data directory is not initialised (no genesis)")]
    NotInitialised,
    #[error("data directory already holds a chain")]
    AlreadyInitialised,
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("the store is closed (reopening after a failed write)")]
    Closed,
    #[error("checkpoint write failed: {0}")]
    Checkpoint(String),
    #[error(
        "data directory layout version {found}, this node reads version {expected}: \
         create a new data directory (there is no migration between development versions)"
    )]
    Format { found: u32, expected: u32 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Mutable head-of-chain metadata, rewritten with every block.
#[derive(Serialize, Deserialize)]
struct MetaState {
    params: Params,
    totals: Totals,
    height: u64,
    #[serde(with = "hex::serde")]
    head_hash: Hash32,
    timestamp_ms: u64,
}

/// An operation as stored in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOp {
    pub cursor: u64,
    pub op: SignedOp,
    pub large: bool,
    pub effect: Effect,
}

impl StoredOp {
    pub fn height(&self) -> u64 {
        cursor_parts(self.cursor).0
    }
    pub fn index(&self) -> u32 {
        cursor_parts(self.cursor).1
    }
}

/// Proof of commitment handed to a submitter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_id: TxId,
    pub height: u64,
    pub index: u32,
    pub timestamp_ms: u64,
    #[serde(with = "hex::serde")]
    pub block_hash: Hash32,
    pub large: bool,
    /// Held, swept, collected, settled...
    #[serde(default)]
    pub effect: Effect,
}

impl Receipt {
    pub fn cursor(&self) -> u64 {
        cursor_of(self.height, self.index)
    }
}

/// Tuning knobs for the RocksDB instance.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Memtable size per column family. Small on purpose: when every block
    /// wrote its random keys (accounts, history), a small skiplist stayed in
    /// cache. Measured with the `apply_commit` bench at 10k accounts,
    /// 4096-transfer blocks (pipelined tx/s): 64 MiB 87k, 16 MiB 150k,
    /// 8 MiB 152k, 4 MiB 199k, 2 MiB 191k, 1 MiB 169k.
    pub write_buffer_bytes: usize,
    /// Memtable size of the two families written in bulk (`ops` by every
    /// block, `txs` by every checkpoint, 65k keys at a time). With 4 MiB
    /// they flushed ~2 small files a second each under a sustained 45k/s;
    /// compaction (niced, on a busy machine) fell behind, level 0 reached
    /// RocksDB's stop trigger and commits stalled for seconds. Both are
    /// written in key order, so a large memtable costs inserts nothing.
    pub bulk_write_buffer_bytes: usize,
    /// Block cache for reads.
    pub block_cache_bytes: usize,
    /// A checkpoint is written once this many operations were committed
    /// since the last one. Bounds the replay at start-up (re-verifying and
    /// re-applying them takes about a second per 100k on two cores, so up
    /// to ~2.6 s) and the memory of the two generations in the overlay.
    ///
    /// Longer generations write fewer records: an account touched again
    /// within one is written once. At 1M accounts with 20k payers
    /// (`apply_commit`, 4M transfers), 262,144 rather than 65,536 cut the
    /// account records flushed from 0.505 to 0.355 GB (history from 0.288
    /// to 0.215) and raised the pipelined rate from 247k to 267k-288k tx/s.
    /// The generation's `txs` entries go ahead on their own, every
    /// [`StoreOptions::txs_handover_ops`]: written all at the checkpoint,
    /// 262,144 of them (160-420 ms of writing) stalled the node's commits
    /// for up to 64-128 ms, and the open loop's p99 at 44k/s rose to
    /// 53-70 ms in four runs of five. Measured against 65,536 for all
    /// (stop 18, alternating runs): `apply_commit` at 4M transfers 249k and
    /// 254k tx/s against 201k and 226k; the node's open-loop p99 at half
    /// its peak 27.1, 21.4 and 26.2 ms against 18.0, 19.4 and 30.2 ms
    /// (stop 17's two runs of this split: 41.8 and 64.0 ms, the second's
    /// worst second during a 92 MiB compaction of `txs`).
    pub checkpoint_ops: usize,
    /// Once this many `txs` entries are pending and the writer is idle,
    /// they are handed to it on their own, ahead of their checkpoint (a
    /// `txs` entry may be written before its checkpoint record: see
    /// `hand_over`). Keeps each burst of the writer as small as 65,536-op
    /// checkpoints made it.
    pub txs_handover_ops: usize,
    /// `txs` index entries per write when a checkpoint is written behind.
    /// RocksDB applies writes one group after another, so a block commit
    /// that arrives during a write waits for all of it: a checkpoint's
    /// 65,536 entries in one batch held every block commit for the
    /// 50-280 ms of their memtable inserts (the open loop's p99 at 42k/s:
    /// 98-152 ms). In slices of 2048 a block waits a few milliseconds.
    pub checkpoint_txs_per_write: usize,
    /// ... or once this many accounts changed since the last one (bounds the
    /// memory of the pending account values).
    pub checkpoint_accounts: usize,
    /// Write table files with direct IO where the file system allows it
    /// (probed at open: tmpfs before Linux 6.6, for one, does not).
    pub direct_io: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            write_buffer_bytes: 4 << 20,
            bulk_write_buffer_bytes: 32 << 20,
            block_cache_bytes: 256 << 20,
            checkpoint_ops: 262_144,
            txs_handover_ops: 65_536,
            checkpoint_txs_per_write: 2048,
            checkpoint_accounts: 262_144,
            direct_io: true,
        }
    }
}

/// The RocksDB-backed store. `Send + Sync`: readers and the committer share it.
///
/// The database sits behind a lock so that it can be closed and opened again
/// ([`Store::reopen`]): after a failed write (a full disk) RocksDB stays in an
/// error state that only a reopen clears.
pub struct Store {
    /// Shared with the checkpoint writer thread.
    db: Arc<RwLock<Option<Arc<DB>>>>,
    path: PathBuf,
    opts: StoreOptions,
    /// Account values, history and tx index entries committed since the
    /// last written checkpoint (see the module docs); readers look here
    /// first. Shared with the checkpoint writer thread.
    pending: Arc<RwLock<Pendings>>,
    /// Serialises writers (`commit`, `checkpoint`, `load`): each decides
    /// from `pending` what its batch must hold.
    write_lock: parking_lot::Mutex<()>,
    /// The background checkpoint writer's status.
    writer: Arc<CheckpointWriter>,
    /// Upper bound of the last range delete in `recent` (0 after an open).
    /// The next one starts there, so a tombstone covers only records that
    /// just expired and compaction rewrites only the files holding them; one
    /// starting at 0 overlapped every file and had each rewritten whole.
    recent_pruned: AtomicU64,
    /// Bumped after every commit that changed a control record and after
    /// every load: a reader's copy of the controls tagged with the version
    /// it read before its scan is current while the version stays.
    controls_version: AtomicU64,
}

/// What is committed but not yet in the derived column families: the
/// generation still accumulating, and the one the background writer is
/// writing (at most one: a commit that would start a second waits).
#[derive(Default)]
struct Pendings {
    active: Pending,
    frozen: Option<Arc<Frozen>>,
    /// Bumped whenever `active` is handed over; a reader that scans a column
    /// family and then overlays what is pending uses it to notice that a
    /// generation moved meanwhile (and reads again).
    handovers: u64,
}

impl Pendings {
    /// Generations from newest to oldest.
    fn newest_first(&self) -> impl Iterator<Item = &Pending> {
        std::iter::once(&self.active).chain(self.frozen.as_deref().map(|f| &f.pending))
    }
}

/// The pending generations, oldest first: the one being written (if any),
/// then the one accumulating.
fn oldest_first<'a>(frozen: Option<&'a Frozen>, active: &'a Pending) -> Vec<&'a Pending> {
    frozen.map(|f| &f.pending).into_iter().chain([active]).collect()
}

/// A generation handed to the writer: its records and the checkpoint record
/// (the head record of block `height`) written with them. Without a record
/// (`meta: None`), only `txs` entries, handed over ahead of their checkpoint.
struct Frozen {
    pending: Pending,
    height: u64,
    meta: Option<Vec<u8>>,
}

/// Status of the background checkpoint writer (one write at a time).
#[derive(Default)]
struct CheckpointWriter {
    state: parking_lot::Mutex<WriterState>,
    idle: parking_lot::Condvar,
}

#[derive(Default)]
struct WriterState {
    running: bool,
    /// The last write failed: the store is failing (a full disk); commits
    /// refuse until `load` (after a reopen) starts over from what is durable.
    error: Option<String>,
}

impl CheckpointWriter {
    /// Waits until no checkpoint is being written; returns the last failure.
    fn wait_idle(&self) -> Option<String> {
        let mut st = self.state.lock();
        while st.running {
            self.idle.wait(&mut st);
        }
        st.error.clone()
    }
}

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Derived records of the blocks committed since the last checkpoint: the
/// blocks themselves are durable, these are rebuilt from them at start-up.
#[derive(Default)]
struct Pending {
    /// Latest value of every account changed since the checkpoint.
    accounts: FastMap<AccountId, Account>,
    /// Cursors of the operations that touched each account since the
    /// checkpoint, ascending.
    history: FastMap<AccountId, Vec<u64>>,
    /// Where each operation committed since the checkpoint sits (the `txs`
    /// index entries still to write).
    txs: FastMap<TxId, u64>,
    /// Operations committed since the checkpoint.
    ops: usize,
    /// Latest value of every control record changed since the checkpoint
    /// (`None`: deleted).
    controls: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Pending {
    fn add_block(&mut self, block: &SealedBlock, history: Vec<AccountCursors>) {
        for a in &block.accounts {
            self.accounts.insert(a.id, a.clone());
        }
        for (acct, cursors) in history {
            // Moved in when new (most accounts, with random payees over a
            // large ledger), not copied into a fresh vector.
            match self.history.entry(acct) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().extend(cursors),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(cursors);
                }
            }
        }
        self.txs.extend(block_tx_cursors(block));
        self.ops += block.ops.len();
        for (k, v) in &block.controls {
            self.controls.insert(k.clone(), v.clone());
        }
    }

    fn is_empty(&self) -> bool {
        self.ops == 0 && self.accounts.is_empty() && self.controls.is_empty()
    }

    /// A generation of `txs` entries alone, handed over ahead of their
    /// checkpoint (see [`StoreOptions::txs_handover_ops`]).
    fn txs_only(txs: FastMap<TxId, u64>) -> Pending {
        Pending {
            txs,
            ..Pending::default()
        }
    }

    /// An empty generation with room for as many records as `like` holds:
    /// the next generation is about as large as the last, and growing its
    /// maps by doubling rehashed up to ~100k entries inside one block's
    /// commit, under the lock that readers wait on.
    fn sized_like(like: &Pending) -> Pending {
        Pending {
            accounts: FastMap::with_capacity_and_hasher(like.accounts.len(), Default::default()),
            history: FastMap::with_capacity_and_hasher(like.history.len(), Default::default()),
            txs: FastMap::with_capacity_and_hasher(like.txs.len(), Default::default()),
            ops: 0,
            controls: BTreeMap::new(),
        }
    }
}

/// Where each operation of `block` sits: its `txs` index entries.
fn block_tx_cursors(block: &SealedBlock) -> impl ExactSizeIterator<Item = (TxId, u64)> + '_ {
    let h = block.header.height;
    block
        .ops
        .iter()
        .enumerate()
        .map(move |(i, a)| (a.op.tx_id, cursor_of(h, i as u32)))
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

/// Read options for a scan of a whole column family: with a prefix extractor
/// (hash-indexed memtables) an iterator otherwise stays within one prefix.
fn total_order() -> ReadOptions {
    let mut ro = ReadOptions::default();
    ro.set_total_order_seek(true);
    ro
}

fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

impl Store {
    /// Opens (creating if needed) the store in `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, &StoreOptions::default())
    }

    /// Opens an existing store read-only (no lock taken: works beside a
    /// running node, seeing the data as of the moment it opens).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let db = Self::open_db_read_only(path)?;
        Ok(Store::with_db(db, path, StoreOptions::default()))
    }

    pub fn open_with(path: &Path, o: &StoreOptions) -> Result<Store> {
        let db = Self::open_db(path, o)?;
        Ok(Store::with_db(db, path, o.clone()))
    }

    fn with_db(db: DB, path: &Path, opts: StoreOptions) -> Store {
        Store {
            db: Arc::new(RwLock::new(Some(Arc::new(db)))),
            path: path.to_path_buf(),
            opts,
            pending: Arc::default(),
            write_lock: parking_lot::Mutex::new(()),
            writer: Arc::default(),
            recent_pruned: Default::default(),
            controls_version: Default::default(),
        }
    }

    fn db_options() -> Options {
        let mut opts = Options::default();
        // Verify checksums aggressively: corruption must stop the node, not be served.
        opts.set_paranoid_checks(true);
        // Every WAL record was synced before its block was acknowledged, so a
        // record that fails its checksum is corruption, not a torn write:
        // refuse to open rather than stop replay there (the default
        // point-in-time mode would silently drop every later block).
        // Only an incomplete record at the very end (a write that never
        // returned) is tolerated.
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        opts
    }

    fn open_db_read_only(path: &Path) -> Result<DB> {
        // Beside a running node, a compaction may delete a table file
        // between the moment the open reads the file list and the moment it
        // opens the file. Once open, every table file is held open
        // (`max_open_files` is unlimited), so only the open itself races:
        // try again on a vanished file, a bounded number of times.
        const ATTEMPTS: u32 = 20;
        let mut attempt = 1;
        loop {
            match DB::open_cf_for_read_only(&Self::db_options(), path, ALL_CFS, false) {
                Ok(db) => return Ok(db),
                Err(e) if attempt < ATTEMPTS && e.as_ref().contains("No such file or directory") => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn open_db(path: &Path, o: &StoreOptions) -> Result<DB> {
        let mut opts = Self::db_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // One flush and up to three compactions at a time: a long merge of
        // a big sorted run must not keep level 0 from being compacted.
        opts.set_max_background_jobs(4);
        // Two writers: the committer (a block, synced) and the checkpoint
        // writer (derived records, not synced). Pipelined writes let a
        // block's WAL write and fsync overlap the memtable inserts of the
        // write before it; its own inserts still wait for those (RocksDB
        // applies memtable writes in order), which is why the checkpoint
        // writer writes in slices (`StoreOptions::checkpoint_txs_per_write`).
        opts.set_enable_pipelined_write(true);
        opts.set_allow_concurrent_memtable_write(true);
        // Write back table files and the log a MiB at a time as they are
        // written, rather than leaving tens of MiB dirty until their final
        // sync: on ext4 a block's fdatasync commits the journal, which waits
        // for whatever other dirty data it orders, so a flush's or a
        // checkpoint's backlog would land on some block's commit.
        opts.set_bytes_per_sync(1 << 20);
        opts.set_wal_bytes_per_sync(1 << 20);
        // Table files (flushes, compactions) bypass the page cache. Buffered,
        // copying them into it took a quarter of the flush thread's CPU and
        // an eighth of the whole machine at 1M accounts (the pages of this
        // VM are slow to touch the first time); the `apply_commit` bench at
        // 1M accounts went from 185k and 203k to 212k and 228k tx/s. Reads
        // stay buffered, and the WAL too (its records are small and synced).
        if o.direct_io {
            if direct_io_supported(path) {
                opts.set_use_direct_io_for_flush_and_compaction(true);
            } else {
                tracing::info!(path = %path.display(), "the file system refuses direct IO: table files are written through the page cache");
            }
        }
        // Compaction is background work: on a machine whose cores verify
        // signatures and answer clients, it must not take the CPU from them
        // (compaction bursts showed up as p99 latency spikes). Nice'd, it
        // still gets every idle cycle; flushes keep normal priority so that
        // memtables never pile up into a write stall.
        if let Ok(mut env) = rocksdb::Env::new() {
            env.lower_thread_pool_cpu_priority();
            opts.set_env(&env);
        }
        let cache = rocksdb::Cache::new_lru_cache(o.block_cache_bytes);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf = Options::default();
            let bulk = *name == CF_OPS || *name == CF_TXS;
            cf.set_write_buffer_size(if bulk {
                o.bulk_write_buffer_bytes
            } else {
                o.write_buffer_bytes
            });
            // Small memtables fill fast: keep a few so that a flush that lags
            // never stalls the committer.
            cf.set_max_write_buffer_number(4);
            // Bloom filters only where point reads miss: the tx index (the
            // dedupe lookup of every submitted operation) and the small
            // families. `history`, `recent` and `large` are only scanned;
            // `ops` is read by cursor, which ascends, so its level-0 files do
            // not overlap and a read finds its one file by key range. There
            // a filter would be built on every insert, flush and compaction
            // (for `ops`, with every block) and never consulted.
            let point_reads = matches!(*name, CF_META | CF_BLOCKS | CF_TXS | CF_ACCOUNTS | CF_BANKS);
            if point_reads {
                // A bloom filter over the memtable's whole keys: most point
                // reads miss (the dedupe lookup of every submitted tx id
                // before it is verified), and without it each miss is a full
                // skiplist search.
                cf.set_memtable_prefix_bloom_ratio(0.02);
                cf.set_memtable_whole_key_filtering(true);
            }
            let mut bbo = rocksdb::BlockBasedOptions::default();
            bbo.set_block_cache(&cache);
            if point_reads {
                bbo.set_bloom_filter(10.0, false);
            }
            // Index and filter blocks live in the block cache, so the store's
            // memory is bounded by that cache and does not grow with the
            // chain (by default every open table keeps its own in memory:
            // ~10 bits per key, hundreds of MiB for tens of millions of
            // transfers). Level-0 ones are pinned: every lookup reads them.
            // Partitioned, so that a large file's index and filter are cached
            // a few KiB at a time rather than as one block of tens of MiB.
            bbo.set_cache_index_and_filter_blocks(true);
            bbo.set_pin_l0_filter_and_index_blocks_in_cache(true);
            bbo.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
            bbo.set_partition_filters(true);
            bbo.set_pin_top_level_index_and_filter(true);
            cf.set_block_based_table_factory(&bbo);
            if RANDOM_KEY_CFS.contains(name) {
                // Every key starts with a 32-byte hash (tx id, account id),
                // and every read is a point lookup or a scan within one such
                // prefix. Whole-CF scans (audit, start-up) use `total_order()`.
                // The memtable stays the default skiplist: these families are
                // written only by checkpoints, tens of thousands of keys in
                // one sorted batch, which a skiplist takes at little cost (it
                // resumes each insert from the previous one) and flushes
                // without sorting. (Hash memtables were better when every
                // block wrote its tx ids, but their flush sorted ~400k keys
                // in one burst and showed in the latency tail.)
                cf.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(32));
            }
            if RANDOM_KEY_CFS.contains(name) {
                // Keys are hashes or start with one: every flushed file
                // overlaps the whole key range, so leveled compaction would
                // rewrite all of L1 for each few MiB flushed (it took a third
                // of the node's CPU once the chain held ~10M transfers).
                // Universal (tiered) compaction rewrites each byte a few
                // times instead; point reads stay cheap behind bloom filters.
                cf.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
            }
            if bulk || RANDOM_KEY_CFS.contains(name) {
                // Level-0 files are merged in bursts by niced threads; leave
                // room for a burst before slowing (default 20) or stopping
                // (36) the committer's writes. Reads stay cheap: every file
                // has a bloom filter (`history` is only scanned per account).
                cf.set_level_zero_slowdown_writes_trigger(40);
                cf.set_level_zero_stop_writes_trigger(64);
            }
            // What the chain stores is mostly hashes, public keys and
            // signatures, which do not compress: LZ4 cost a few percent of
            // the committer's CPU on flush for little space.
            cf.set_compression_type(rocksdb::DBCompressionType::None);
            ColumnFamilyDescriptor::new(*name, cf)
        });
        Ok(DB::open_cf_descriptors(&opts, path, cfs)?)
    }

    /// The open database (a cheap handle; hold it only for one call).
    fn db(&self) -> Result<Arc<DB>> {
        self.db.read().clone().ok_or(StoreError::Closed)
    }

    /// Closes and opens the database again, read-write. This is how the node
    /// recovers from a failed write (a full disk): RocksDB refuses all writes
    /// after one failed, until it is reopened. If the read-write open fails
    /// (still no space), the store falls back to read-only so reads go on,
    /// and returns the error; call again later.
    pub fn reopen(&self) -> Result<()> {
        let mut slot = self.db.write();
        if let Some(old) = slot.take() {
            close_when_unused(old);
        }
        match Self::open_db(&self.path, &self.opts) {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                Ok(())
            }
            Err(e) => {
                *slot = Self::open_db_read_only(&self.path).ok().map(Arc::new);
                Err(e)
            }
        }
    }

    /// Reads every record of every column family with checksum verification,
    /// so that a corrupted file is found at start-up rather than when a
    /// client first asks for the data in it. Returns the number of records.
    /// (RocksDB checks table checksums only on the blocks it reads; without
    /// this, a damaged block of old operations would go unnoticed until a
    /// receipt or statement touched it.)
    pub fn verify_integrity(&self) -> Result<u64> {
        let db = self.db()?;
        let mut records = 0u64;
        for name in ALL_CFS {
            let mut ro = ReadOptions::default();
            ro.set_verify_checksums(true);
            ro.fill_cache(false);
            ro.set_total_order_seek(true);
            let mut it = db.raw_iterator_cf_opt(cf(&db, name), ro);
            it.seek_to_first();
            while it.valid() {
                records += 1;
                it.next();
            }
            it.status()
                .map_err(|e| StoreError::Corrupt(format!("column family {name}: {e}")))?;
        }
        Ok(records)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a genesis has been written.
    pub fn is_initialised(&self) -> Result<bool> {
        let db = self.db()?;
        Ok(db.get_cf(cf(&db, CF_META), b"genesis")?.is_some())
    }

    /// Refuses a data directory written in another layout: its records would
    /// not decode (or, worse, decode as something else).
    fn check_format(&self) -> Result<()> {
        let db = self.db()?;
        let found = db
            .get_cf(cf(&db, CF_META), b"format")?
            .and_then(|v| Some(u32::from_be_bytes(v.as_slice().try_into().ok()?)))
            .unwrap_or(1);
        if found != FORMAT_VERSION {
            return Err(StoreError::Format {
                found,
                expected: FORMAT_VERSION,
            });
        }
        Ok(())
    }

    /// Writes the genesis block and state. Refuses if a chain exists.
    pub fn init(&self, genesis: &Genesis) -> Result<State> {
        let db = self.db()?;
        if self.is_initialised()? {
            return Err(StoreError::AlreadyInitialised);
        }
        let (state, header) = State::genesis(genesis).map_err(StoreError::Genesis)?;
        let mut wb = WriteBatch::default();
        wb.put_cf(
            cf(&db, CF_META),
            b"genesis",
            serde_json::to_vec(genesis).expect("genesis serialises"),
        );
        wb.put_cf(cf(&db, CF_META), b"format", FORMAT_VERSION.to_be_bytes());
        for a in state.accounts() {
            wb.put_cf(cf(&db, CF_ACCOUNTS), a.id.0, a.encode());
        }
        for b in state.banks() {
            wb.put_cf(cf(&db, CF_BANKS), b.id.0, b.encode());
        }
        let meta = Self::put_head(
            &db,
            &mut wb,
            &header,
            &state.head_hash(),
            state.params(),
            state.totals(),
        );
        // The genesis state is the first checkpoint.
        wb.put_cf(cf(&db, CF_META), b"checkpoint", meta);
        Self::write_synced(&db, wb)?;
        *self.pending.write() = Pendings::default();
        Ok(state)
    }

    /// Puts the block header and the head record; returns the head record.
    fn put_head(
        db: &DB,
        wb: &mut WriteBatch,
        header: &BlockHeader,
        hash: &Hash32,
        params: &Params,
        totals: Totals,
    ) -> Vec<u8> {
        let mut v = header.encode().to_vec();
        v.extend_from_slice(hash);
        wb.put_cf(cf(db, CF_BLOCKS), header.height.to_be_bytes(), v);
        let meta = MetaState {
            params: params.clone(),
            totals,
            height: header.height,
            head_hash: *hash,
            timestamp_ms: header.timestamp_ms,
        };
        let meta = serde_json::to_vec(&meta).expect("meta serialises");
        wb.put_cf(cf(db, CF_META), b"state", &meta);
        meta
    }

    /// `db` must be the handle whose column families built `wb`.
    fn write_synced(db: &DB, wb: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// Durably commits one block as a single synced batch: its header, its
    /// operations and its replay-window record, which is all a restart
    /// needs. What derives from them (account values, history, the `txs`
    /// index) joins `pending` and is written behind, at a checkpoint.
    ///
    /// Keys are put in sorted order per column family: RocksDB's memtable
    /// skiplist then reuses its insertion point from one key to the next
    /// instead of searching from the top.
    pub fn commit(&self, block: &SealedBlock) -> Result<()> {
        self.commit_with_meta(block, &[])
    }

    /// [`Store::commit`], with extra `meta` records (key, value) written in
    /// the same synced batch: the replicated state machine keeps its last
    /// applied log id and membership there, durable atomically with the
    /// block (`raft::state_machine`). Keys must not collide with the store's
    /// own (`genesis`, `format`, `state`, `checkpoint`): use a prefix such
    /// as [`RAFT_META_PREFIX`].
    pub fn commit_with_meta(&self, block: &SealedBlock, meta: &[(&[u8], &[u8])]) -> Result<()> {
        let t_start = Instant::now();
        // (Includes waiting for this lock: `prepare_ms` below.)
        let _w = self.write_lock.lock();
        // A failed checkpoint write means the disk is failing: refuse before
        // writing anything (the pipeline then reopens and reloads).
        if let Some(e) = self.writer.state.lock().error.clone() {
            return Err(StoreError::Checkpoint(e));
        }
        let db = self.db()?;
        let height = block.header.height;
        // Sized for the block up front (~230 bytes an operation with its
        // key and RocksDB's framing): grown by doubling, its buffer was
        // copied over again as it filled.
        let mut wb = WriteBatch::with_capacity_bytes(4096 + block.ops.len() * 256);
        let (ops, large) = (cf(&db, CF_OPS), cf(&db, CF_LARGE));
        // One buffer for every record (an allocation per operation showed
        // in the committer's profile).
        let mut v = Vec::with_capacity(256);
        for (i, a) in block.ops.iter().enumerate() {
            let ck = cursor_of(height, i as u32).to_be_bytes();
            v.clear();
            a.op.write_stored(&mut v);
            v.push(a.large as u8);
            if let Some(e) = a.effect.encode() {
                v.extend_from_slice(&e);
            }
            // Cursors ascend: already in order.
            wb.put_cf(ops, ck, &v);
            if a.large {
                wb.put_cf(large, ck, []);
            }
        }
        let block_history = block_history(block);
        let recent = cf(&db, CF_RECENT);
        // The block's replay entries as one record, keyed by the latest
        // validity end among them: once that has passed, the whole record is
        // stale and a range delete drops it. One put per block rather than
        // one per operation; entries of a record that expired individually
        // are skipped when the state is loaded (as `State::seal_block`
        // dropped them in memory).
        if let Some(max_until) = block.recent_added.iter().map(|(until, _)| *until).max() {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&max_until.to_be_bytes());
            k[8..].copy_from_slice(&height.to_be_bytes());
            let mut v = Vec::with_capacity(block.recent_added.len() * RECENT_ENTRY_BYTES);
            for (until, tx) in &block.recent_added {
                v.extend_from_slice(&until.to_be_bytes());
                v.extend_from_slice(&tx.0);
            }
            wb.put_cf(recent, k, v);
        }
        // Pruning is lazy (every `RECENT_PRUNE_EVERY` blocks) so that range
        // tombstones stay few.
        let pruned = self.recent_pruned.load(Ordering::Relaxed);
        let prune = height.is_multiple_of(RECENT_PRUNE_EVERY) && block.prune_below > pruned;
        if prune {
            let from = [pruned.to_be_bytes(), [0u8; 8]].concat();
            wb.delete_range_cf(recent, &from[..], &block.prune_below.to_be_bytes()[..]);
        }
        // (Only once the batch is written: a failed write prunes nothing.)
        let pruned_now = || {
            if prune {
                self.recent_pruned.store(block.prune_below, Ordering::Relaxed);
            }
        };
        for (k, v) in meta {
            debug_assert!(
                k.starts_with(RAFT_META_PREFIX),
                "extra meta keys are the state machine's"
            );
            wb.put_cf(cf(&db, CF_META), k, v);
        }
        let meta = Self::put_head(&db, &mut wb, &block.header, &block.hash, &block.params, block.totals);

        if !block.banks.is_empty() {
            // A block that changes the banks is a checkpoint, written inline
            // with the block: `load` reads the banks column family as of the
            // checkpoint. Rare (admitting or suspending a bank), so it may
            // wait for the writer.
            if let Some(e) = self.writer.wait_idle() {
                return Err(StoreError::Checkpoint(e));
            }
            for b in &block.banks {
                wb.put_cf(cf(&db, CF_BANKS), b.id.0, b.encode());
            }
            let mut p = self.pending.write();
            debug_assert!(p.frozen.is_none(), "an idle writer has no generation");
            Self::put_checkpoint(&db, &mut wb, &p.active, Some((block, &block_history)), height, &meta);
            Self::write_synced(&db, wb)?;
            pruned_now();
            p.active = Pending::default();
            p.handovers += 1;
            drop(p);
            if !block.controls.is_empty() {
                self.controls_version.fetch_add(1, Ordering::Release);
            }
            let total = t_start.elapsed();
            if total >= SLOW_COMMIT {
                tracing::warn!(
                    height,
                    ops = block.ops.len(),
                    total_ms = total.as_millis() as u64,
                    "slow block commit (with an inline checkpoint: the banks changed)"
                );
            }
            return Ok(());
        }

        let t_write = Instant::now();
        Self::write_synced(&db, wb)?;
        pruned_now();
        let t_written = Instant::now();
        let (due, txs_due) = {
            let mut p = self.pending.write();
            p.active.add_block(block, block_history);
            if !block.controls.is_empty() {
                self.controls_version.fetch_add(1, Ordering::Release);
            }
            (
                p.active.ops >= self.opts.checkpoint_ops || p.active.accounts.len() >= self.opts.checkpoint_accounts,
                p.active.txs.len() >= self.opts.txs_handover_ops.max(1),
            )
        };
        let t_pending = Instant::now();
        if due {
            self.hand_over(height, Some(meta));
        } else if txs_due {
            self.hand_over(height, None);
        }
        let t_end = Instant::now();
        if t_end - t_start >= SLOW_COMMIT {
            // Names the part that was slow, for placing a latency spike:
            // the disk (write_ms: WAL append + fsync), readers holding the
            // pending generations (pending_ms), or a checkpoint writer still
            // busy with the previous generation (handover_ms).
            let ms = |d: Duration| d.as_millis() as u64;
            tracing::warn!(
                height,
                ops = block.ops.len(),
                total_ms = ms(t_end - t_start),
                prepare_ms = ms(t_write - t_start),
                write_ms = ms(t_written - t_write),
                pending_ms = ms(t_pending - t_written),
                handover_ms = ms(t_end - t_pending),
                "slow block commit"
            );
        }
        Ok(())
    }

    /// Hands the active generation to a background writer as the checkpoint
    /// at block `height`. The block is already durable, so the checkpoint is
    /// off the commit's path; if the previous one is still being written,
    /// this waits for it (at most two generations in memory).
    ///
    /// With `meta: None`, hands over only the pending `txs` entries, and
    /// only if the writer is idle (otherwise the next block tries again).
    /// Written before their checkpoint record, they are harmless if a crash
    /// leaves them without it (as the slices of a checkpoint are).
    fn hand_over(&self, height: u64, meta: Option<Vec<u8>>) {
        if meta.is_none() {
            let st = self.writer.state.lock();
            if st.running || st.error.is_some() {
                return;
            }
        } else if self.writer.wait_idle().is_some() {
            // The store is failing: keep accumulating; the next commit
            // refuses and the pipeline reloads from what is durable.
            return;
        }
        // Allocated before taking the lock (readers wait on it).
        let fresh = {
            let p = self.pending.read();
            if meta.is_some() {
                Pending::sized_like(&p.active)
            } else {
                Pending::txs_only(FastMap::with_capacity_and_hasher(
                    p.active.txs.len(),
                    Default::default(),
                ))
            }
        };
        let frozen = {
            let mut p = self.pending.write();
            let pending = if meta.is_some() {
                std::mem::replace(&mut p.active, fresh)
            } else {
                Pending::txs_only(std::mem::replace(&mut p.active.txs, fresh.txs))
            };
            let f = Arc::new(Frozen { pending, height, meta });
            p.frozen = Some(f.clone());
            p.handovers += 1;
            f
        };
        self.writer.state.lock().running = true;
        let (slot, pending, writer) = (self.db.clone(), self.pending.clone(), self.writer.clone());
        let per_write = self.opts.checkpoint_txs_per_write.max(1);
        let spawned = std::thread::Builder::new()
            .name("ruble-checkpoint".into())
            .spawn(move || {
                let written = (|| -> Result<()> {
                    let t0 = Instant::now();
                    let db = slot.read().clone().ok_or(StoreError::Closed)?;
                    // The `txs` index entries first, a slice per write, so
                    // that block commits go ahead between slices (see
                    // `StoreOptions::checkpoint_txs_per_write`). An entry
                    // written before its checkpoint record, even one that a
                    // crash then leaves without it, is harmless: it only
                    // says where an operation of a durable block sits, and
                    // `load` does not read this family.
                    let txs = Self::checkpoint_txs(&frozen.pending, None);
                    for slice in txs.chunks(per_write) {
                        let mut wb = WriteBatch::default();
                        Self::put_txs(&db, &mut wb, slice);
                        db.write(wb)?;
                    }
                    let t_txs = Instant::now();
                    let Some(meta) = &frozen.meta else {
                        // `txs` entries ahead of their checkpoint: no record.
                        return Ok(());
                    };
                    let mut wb = WriteBatch::default();
                    Self::put_checkpoint_state(&db, &mut wb, &frozen.pending, None, frozen.height, meta);
                    let t_built = Instant::now();
                    // Not synced: if it is lost in a crash, `load` starts
                    // from the previous checkpoint and replays more blocks.
                    // The next synced block commit makes it durable anyway.
                    // (Written outside the log, with atomic flushes, it did
                    // not burden that fsync; but a reopen after a failed
                    // write, in the same process, then lost it while the
                    // overlay had already dropped it: `disk_trouble.rs`.)
                    db.write(wb)?;
                    tracing::debug!(
                        height = frozen.height,
                        ops = frozen.pending.ops,
                        txs_ms = (t_txs - t0).as_millis() as u64,
                        build_ms = (t_built - t_txs).as_millis() as u64,
                        write_ms = t_built.elapsed().as_millis() as u64,
                        "checkpoint written"
                    );
                    Ok(())
                })();
                // Let go of the database before saying idle: `Store::drop`
                // waits for idle, and the directory must be unlocked then.
                drop(slot);
                let mut st = writer.state.lock();
                match written {
                    Ok(()) => {
                        // Readers now find it in the column families.
                        let mut p = pending.write();
                        if p.frozen.as_ref().is_some_and(|f| Arc::ptr_eq(f, &frozen)) {
                            p.frozen = None;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, height = frozen.height, "checkpoint write failed");
                        st.error = Some(e.to_string());
                    }
                }
                st.running = false;
                writer.idle.notify_all();
            });
        if let Err(e) = spawned {
            let mut st = self.writer.state.lock();
            st.running = false;
            st.error = Some(format!("cannot start the checkpoint writer: {e}"));
        }
    }

    /// Writes `pending`, and the block being committed with it if any, as
    /// of block `height` (whose head record is `meta`): the `txs` index
    /// entries and [`Store::put_checkpoint_state`], in one batch.
    fn put_checkpoint(
        db: &DB,
        wb: &mut WriteBatch,
        pending: &Pending,
        block: Option<(&SealedBlock, &[AccountCursors])>,
        height: u64,
        meta: &[u8],
    ) {
        Self::put_txs(db, wb, &Self::checkpoint_txs(pending, block.map(|(b, _)| b)));
        Self::put_checkpoint_state(db, wb, pending, block, height, meta);
    }

    /// The `txs` index entries of `pending` and `block`, sorted by tx id.
    fn checkpoint_txs(pending: &Pending, block: Option<&SealedBlock>) -> Vec<(TxId, u64)> {
        let mut txs: Vec<(TxId, u64)> = pending.txs.iter().map(|(t, c)| (*t, *c)).collect();
        if let Some(b) = block {
            txs.extend(block_tx_cursors(b));
        }
        txs.sort_unstable();
        txs
    }

    fn put_txs(db: &DB, wb: &mut WriteBatch, txs: &[(TxId, u64)]) {
        let txs_cf = cf(db, CF_TXS);
        for (t, c) in txs {
            wb.put_cf(txs_cf, t.0, c.to_be_bytes());
        }
    }

    /// The part of a checkpoint that `load` reads as the state at `height`
    /// and so must be written in one batch with the `meta/checkpoint`
    /// record: every account's latest value, and one history record per
    /// account keyed by `height`, the latest its cursors reach.
    fn put_checkpoint_state(
        db: &DB,
        wb: &mut WriteBatch,
        pending: &Pending,
        block: Option<(&SealedBlock, &[AccountCursors])>,
        height: u64,
        meta: &[u8],
    ) {
        let accounts = cf(db, CF_ACCOUNTS);
        // Sorted with the ids inline, not behind references: comparing
        // through a reference into the map missed the cache on every
        // comparison (~80k accounts at 1M, in the checkpoint's profile).
        let mut values: Vec<(AccountId, &Account)> = pending.accounts.iter().map(|(id, a)| (*id, a)).collect();
        if let Some((b, _)) = block {
            // The block's values are the latest.
            values.retain(|(id, _)| b.accounts.binary_search_by(|x| x.id.cmp(id)).is_err());
            values.extend(b.accounts.iter().map(|a| (a.id, a)));
        }
        values.sort_unstable_by_key(|(id, _)| *id);
        for (id, a) in values {
            wb.put_cf(accounts, id.0, a.encode());
        }
        let history = cf(db, CF_HISTORY);
        let from_block: FastMap<&AccountId, &Vec<u64>> = block
            .map(|(_, h)| h.iter().map(|(a, c)| (a, c)).collect())
            .unwrap_or_default();
        // (account, its cursors in `pending`, those in `block`), taken in one
        // pass over the map and sorted with the ids inline: looking each
        // sorted id up in the map again missed the cache ~80k times.
        let none: &[u64] = &[];
        let mut records: Vec<(AccountId, &[u64], &[u64])> = pending
            .history
            .iter()
            .map(|(id, c)| (*id, &c[..], from_block.get(id).map_or(none, |b| &b[..])))
            .collect();
        records.extend(
            from_block
                .iter()
                .filter(|(a, _)| !pending.history.contains_key(**a))
                .map(|(a, c)| (**a, none, &c[..])),
        );
        records.sort_unstable_by_key(|(id, _, _)| *id);
        let mut v: Vec<u8> = Vec::new();
        for (id, earlier, later) in &records {
            let mut k = [0u8; 40];
            k[..32].copy_from_slice(&id.0);
            k[32..].copy_from_slice(&height.to_be_bytes());
            v.clear();
            for c in earlier.iter().chain(later.iter()) {
                v.extend_from_slice(&c.to_be_bytes());
            }
            wb.put_cf(history, k, &v);
        }
        let controls = cf(db, CF_CONTROLS);
        let mut changes: BTreeMap<&[u8], Option<&[u8]>> =
            pending.controls.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
        if let Some((b, _)) = block {
            changes.extend(b.controls.iter().map(|(k, v)| (&k[..], v.as_deref())));
        }
        for (k, v) in changes {
            match v {
                Some(v) => wb.put_cf(controls, k, v),
                None => wb.delete_cf(controls, k),
            }
        }
        wb.put_cf(cf(db, CF_META), b"checkpoint", meta);
    }

    /// Writes what is pending as a checkpoint at the head (a clean shutdown
    /// does, so that the next start-up replays nothing).
    pub fn checkpoint(&self) -> Result<()> {
        let _w = self.write_lock.lock();
        if let Some(e) = self.writer.wait_idle() {
            return Err(StoreError::Checkpoint(e));
        }
        let db = self.db()?;
        let mut p = self.pending.write();
        if p.active.is_empty() {
            return Ok(());
        }
        let meta = db
            .get_cf(cf(&db, CF_META), b"state")?
            .ok_or(StoreError::NotInitialised)?;
        let height = self.meta_state()?.height;
        let mut wb = WriteBatch::default();
        Self::put_checkpoint(&db, &mut wb, &p.active, None, height, &meta);
        Self::write_synced(&db, wb)?;
        p.active = Pending::default();
        p.handovers += 1;
        Ok(())
    }

    /// Height of the last checkpoint written (the `txs`, `accounts` and
    /// `history` column families are complete up to it).
    pub fn checkpoint_height(&self) -> Result<u64> {
        Ok(self.meta_record(b"checkpoint")?.height)
    }

    /// Memory held by RocksDB, in bytes: the block cache (bounded by
    /// `StoreOptions::block_cache_bytes`) and the memtables of every column
    /// family (bounded by their sizes and counts). Both fill up over the
    /// first minutes of load; reported so that growth elsewhere stands out.
    pub fn rocksdb_memory(&self) -> Result<(u64, u64)> {
        let db = self.db()?;
        let mut memtables = 0;
        for name in ALL_CFS {
            memtables += db
                .property_int_value_cf(cf(&db, name), "rocksdb.cur-size-all-mem-tables")?
                .unwrap_or(0);
        }
        // One cache shared by all families: asked of one of them.
        let block_cache = db
            .property_int_value_cf(cf(&db, CF_META), "rocksdb.block-cache-usage")?
            .unwrap_or(0);
        Ok((block_cache, memtables))
    }

    /// The genesis this store was initialised with.
    pub fn genesis(&self) -> Result<Genesis> {
        let db = self.db()?;
        let raw = db
            .get_cf(cf(&db, CF_META), b"genesis")?
            .ok_or(StoreError::NotInitialised)?;
        serde_json::from_slice(&raw).map_err(|e| StoreError::Corrupt(format!("genesis record: {e}")))
    }

    fn meta_state(&self) -> Result<MetaState> {
        let db = self.db()?;
        let raw = db
            .get_cf(cf(&db, CF_META), b"state")?
            .ok_or(StoreError::NotInitialised)?;
        serde_json::from_slice(&raw).map_err(|e| StoreError::Corrupt(format!("state record: {e}")))
    }

    /// Height of the last committed block.
    pub fn head_height(&self) -> Result<u64> {
        Ok(self.meta_state()?.height)
    }

    fn meta_record(&self, key: &[u8]) -> Result<MetaState> {
        let db = self.db()?;
        let raw = db.get_cf(cf(&db, CF_META), key)?.ok_or(StoreError::NotInitialised)?;
        serde_json::from_slice(&raw)
            .map_err(|e| StoreError::Corrupt(format!("{} record: {e}", String::from_utf8_lossy(key))))
    }

    /// Rebuilds the in-memory state: the checkpoint (checked against its
    /// block's state hash), then every block committed after it, re-verified
    /// and re-applied, each of which must reproduce its stored block hash
    /// (which commits to the state hash). Refills what is pending.
    pub fn load(&self) -> Result<State> {
        let _w = self.write_lock.lock();
        // Start over from what is durable: wait out a checkpoint being
        // written, and forget its failure (the caller reopened the store).
        self.writer.wait_idle();
        self.writer.state.lock().error = None;
        let db = self.db()?;
        self.check_format()?;
        let head = self.meta_state()?;
        let (head_header, head_hash) = self
            .header(head.height)?
            .ok_or_else(|| StoreError::Corrupt(format!("head block {} missing", head.height)))?;
        if head_hash != head.head_hash || head_header.hash() != head_hash {
            return Err(StoreError::Corrupt("head block hash mismatch".into()));
        }
        let ckpt = self.meta_record(b"checkpoint")?;
        if ckpt.height > head.height {
            return Err(StoreError::Corrupt("checkpoint is ahead of the head block".into()));
        }
        let (header, _) = self
            .header(ckpt.height)?
            .ok_or_else(|| StoreError::Corrupt(format!("checkpoint block {} missing", ckpt.height)))?;
        let mut accounts = Vec::new();
        for item in db.iterator_cf_opt(cf(&db, CF_ACCOUNTS), total_order(), IteratorMode::Start) {
            let (k, v) = item?;
            let id = AccountId::from_slice(&k).ok_or_else(|| StoreError::Corrupt("account key".into()))?;
            accounts.push(Account::decode(id, &v).ok_or_else(|| StoreError::Corrupt(format!("account {id}")))?);
        }
        let mut banks = Vec::new();
        for item in db.iterator_cf_opt(cf(&db, CF_BANKS), total_order(), IteratorMode::Start) {
            let (k, v) = item?;
            let id = AccountId::from_slice(&k).ok_or_else(|| StoreError::Corrupt("bank key".into()))?;
            banks.push(Bank::decode(id, &v).ok_or_else(|| StoreError::Corrupt(format!("bank {id}")))?);
        }
        let mut recent = Vec::new();
        for item in db.iterator_cf_opt(cf(&db, CF_RECENT), total_order(), IteratorMode::Start) {
            let (k, v) = item?;
            if k.len() != 16 || v.len() % RECENT_ENTRY_BYTES != 0 {
                return Err(StoreError::Corrupt("replay-window record".into()));
            }
            // Blocks after the checkpoint put theirs back as they replay.
            if be64(&k[8..]).expect("8 bytes") > ckpt.height {
                continue;
            }
            for e in v.chunks_exact(RECENT_ENTRY_BYTES) {
                let until = be64(&e[..8]).expect("8 bytes");
                // Expired before the checkpoint block: inert, so not loaded
                // (the running state drops them too, a bounded number per
                // block: `state::RECENT_PRUNE_MAX_PER_BLOCK`).
                if until >= ckpt.timestamp_ms {
                    recent.push((until, TxId::from_slice(&e[8..]).expect("32 bytes")));
                }
            }
        }
        let mut records = Vec::new();
        for item in db.iterator_cf_opt(cf(&db, CF_CONTROLS), total_order(), IteratorMode::Start) {
            let (k, v) = item?;
            records.push((k.to_vec(), v.to_vec()));
        }
        let controls = Controls::from_records(records).map_err(StoreError::Corrupt)?;
        let mut state = State::from_parts(StateParts {
            params: ckpt.params,
            totals: ckpt.totals,
            accounts,
            banks,
            recent,
            height: ckpt.height,
            head_hash: ckpt.head_hash,
            timestamp_ms: ckpt.timestamp_ms,
            controls,
        });
        if state.state_hash() != header.state_hash {
            return Err(StoreError::Corrupt(format!(
                "state at height {} does not match its block's state hash",
                ckpt.height
            )));
        }
        let mut pending = Pending::default();
        let cache = KeyCache::default();
        for height in ckpt.height + 1..=head.height {
            let (header, hash) = self
                .header(height)?
                .ok_or_else(|| StoreError::Corrupt(format!("block {height} missing")))?;
            let stored = self.block_ops(height)?;
            let bad =
                |what: &dyn std::fmt::Display| StoreError::Corrupt(format!("block {height} does not replay: {what}"));
            // Each operation at its own position: receipts and history point there.
            let misplaced = stored
                .iter()
                .enumerate()
                .find(|(i, s)| s.cursor != cursor_of(height, *i as u32));
            if let Some((i, s)) = misplaced {
                return Err(bad(&format_args!("operation {i} stored at {:#x}", s.cursor)));
            }
            let flags: Vec<(bool, Effect)> = stored.iter().map(|s| (s.large, s.effect)).collect();
            let verified = verify_ops_parallel(stored.into_iter().map(|s| s.op).collect(), &cache, 256);
            // The rule for a stored block (every operation applies again, same
            // header and hash, or the start is refused): `exec::replay_block`.
            let sealed = crate::exec::replay_block(&mut state, &header, &hash, verified).map_err(|e| bad(&e))?;
            if let Some(a) = sealed
                .ops
                .iter()
                .zip(&flags)
                .find_map(|(a, &f)| ((a.large, a.effect) != f).then_some(a))
            {
                return Err(bad(&format_args!("large-payment flag or effect of {}", a.op.tx_id)));
            }
            pending.add_block(&sealed, block_history(&sealed));
        }
        let mut p = self.pending.write();
        *p = Pendings {
            active: pending,
            frozen: None,
            handovers: p.handovers + 1,
        };
        self.controls_version.fetch_add(1, Ordering::Release);
        Ok(state)
    }

    /// A `meta` record written by [`Store::commit_with_meta`] or
    /// [`Store::put_meta`] (`None` if absent).
    pub fn meta_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db()?;
        Ok(db.get_cf(cf(&db, CF_META), key)?)
    }

    /// Writes `meta` records (keys under [`RAFT_META_PREFIX`]) in one synced
    /// batch, without a block: a replicated entry that carries none (blank,
    /// membership, a skipped block) still moves the last applied log id.
    pub fn put_meta(&self, meta: &[(&[u8], &[u8])]) -> Result<()> {
        let _w = self.write_lock.lock();
        let db = self.db()?;
        let mut wb = WriteBatch::default();
        for (k, v) in meta {
            debug_assert!(
                k.starts_with(RAFT_META_PREFIX),
                "extra meta keys are the state machine's"
            );
            wb.put_cf(cf(&db, CF_META), k, v);
        }
        Self::write_synced(&db, wb)
    }

    /// Writes a RocksDB checkpoint of the store into `dir` (which must not
    /// exist): hard links to the table files plus a consistent copy of the
    /// rest, a store directory of its own that `load` rebuilds the same
    /// state from (the blocks after the last written checkpoint replay).
    /// Taken under the write lock, so it holds whole blocks with their
    /// `meta` records. The replicated state machine's snapshots.
    pub fn checkpoint_into(&self, dir: &Path) -> Result<()> {
        let _w = self.write_lock.lock();
        let db = self.db()?;
        let cp = rocksdb::checkpoint::Checkpoint::new(&db)?;
        cp.create_checkpoint(dir)?;
        Ok(())
    }

    /// Replaces the whole store with the store directory `dir` (a
    /// checkpoint received from another replica; on the same file system as
    /// the store), then the caller runs [`Store::load`]. Closes the
    /// database, exchanges the two directories in one atomic rename (Linux
    /// `renameat2(RENAME_EXCHANGE)`; a crash leaves one whole store in
    /// place) and opens the new one; the old one, now at `dir`, is deleted.
    /// If the new one does not open, the old one is put back.
    pub fn replace_with(&self, dir: &Path) -> Result<()> {
        let _w = self.write_lock.lock();
        if let Some(e) = self.writer.wait_idle() {
            tracing::warn!(error = %e, "replacing a store whose last checkpoint write failed");
        }
        let mut slot = self.db.write();
        if let Some(old) = slot.take() {
            close_when_unused(old);
        }
        let io = |e: std::io::Error| StoreError::Corrupt(format!("replacing the store: {e}"));
        // One atomic exchange of the two directories (`renameat2`): a crash
        // at any point leaves either the old store or the new one in place,
        // never none. The old one is then in `dir`, deleted after.
        let swapped = exchange_dirs(dir, &self.path);
        let reopen_old = |slot: &mut Option<Arc<DB>>| {
            *slot = Self::open_db(&self.path, &self.opts).ok().map(Arc::new);
        };
        if let Err(e) = swapped {
            reopen_old(&mut slot);
            return Err(io(e));
        }
        match Self::open_db(&self.path, &self.opts) {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                self.recent_pruned.store(0, Ordering::Relaxed);
                let mut p = self.pending.write();
                *p = Pendings {
                    handovers: p.handovers + 1,
                    ..Pendings::default()
                };
                drop(p);
                self.controls_version.fetch_add(1, Ordering::Release);
                let _ = std::fs::remove_dir_all(dir);
                Ok(())
            }
            Err(e) => {
                // Put the old store back.
                if exchange_dirs(dir, &self.path).is_ok() {
                    reopen_old(&mut slot);
                }
                Err(e)
            }
        }
    }

    /// Header and hash of block `height`.
    pub fn header(&self, height: u64) -> Result<Option<(BlockHeader, Hash32)>> {
        let db = self.db()?;
        let Some(v) = db.get_cf(cf(&db, CF_BLOCKS), height.to_be_bytes())? else {
            return Ok(None);
        };
        if v.len() != crate::block::HEADER_BYTES + 32 {
            return Err(StoreError::Corrupt(format!("block {height} record")));
        }
        let header = BlockHeader::decode(&v[..crate::block::HEADER_BYTES])
            .ok_or_else(|| StoreError::Corrupt(format!("block {height} header")))?;
        Ok(Some((header, v[crate::block::HEADER_BYTES..].try_into().unwrap())))
    }

    fn decode_op(cursor: u64, v: &[u8]) -> Result<StoredOp> {
        let (op, rest) = SignedOp::from_stored(v).map_err(|_| StoreError::Corrupt(format!("op at {cursor:#x}")))?;
        let effect = rest.get(1..).and_then(Effect::decode);
        let (Some(&flag @ (0 | 1)), Some(effect)) = (rest.first(), effect) else {
            return Err(StoreError::Corrupt(format!("op flags at {cursor:#x}")));
        };
        Ok(StoredOp {
            cursor,
            op,
            large: flag == 1,
            effect,
        })
    }

    /// The operation at a chain position.
    pub fn op_at(&self, cursor: u64) -> Result<Option<StoredOp>> {
        let db = self.db()?;
        match db.get_cf(cf(&db, CF_OPS), cursor.to_be_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(Self::decode_op(cursor, &v)?)),
        }
    }

    /// All operations of block `height`, in order.
    pub fn block_ops(&self, height: u64) -> Result<Vec<StoredOp>> {
        let db = self.db()?;
        let start = cursor_of(height, 0);
        let end = cursor_of(height + 1, 0);
        let mut out = Vec::new();
        for item in db.iterator_cf(
            cf(&db, CF_OPS),
            IteratorMode::From(&start.to_be_bytes(), Direction::Forward),
        ) {
            let (k, v) = item?;
            let c = be64(&k).ok_or_else(|| StoreError::Corrupt("op key".into()))?;
            if c >= end {
                break;
            }
            out.push(Self::decode_op(c, &v)?);
        }
        Ok(out)
    }

    /// Where each of `txs` sits if it was committed since the last
    /// checkpoint written (the generations still in memory): no RocksDB
    /// read. This is where a client's retry of a just-acknowledged
    /// operation is found; an older one is answered by the state's replay
    /// set or, once expired, by [`Store::receipt`] (see `pipeline.rs`).
    pub fn recent_tx_cursors(&self, txs: &[TxId]) -> Vec<Option<u64>> {
        let p = self.pending.read();
        txs.iter()
            .map(|tx| p.newest_first().find_map(|g| g.txs.get(tx)).copied())
            .collect()
    }

    /// Where a committed operation sits, if it is committed.
    pub fn tx_cursor(&self, tx: &TxId) -> Result<Option<u64>> {
        Ok(self.tx_cursors(std::slice::from_ref(tx))?[0])
    }

    /// Where each of `txs` sits, in one batched lookup (sorted internally:
    /// RocksDB then walks each file's index once for the whole batch, which
    /// is what lets the auditor check tens of millions of ids).
    pub fn tx_cursors(&self, txs: &[TxId]) -> Result<Vec<Option<u64>>> {
        // Recent ones are still pending (a retry of a just-committed
        // operation is found here without touching RocksDB). One that is not
        // pending was written before the generations now pending were
        // handed over, so the column family has it.
        let mut out = self.recent_tx_cursors(txs);
        let rest: Vec<usize> = (0..txs.len()).filter(|&i| out[i].is_none()).collect();
        if rest.is_empty() {
            return Ok(out);
        }
        let db = self.db()?;
        let mut order = rest;
        order.sort_unstable_by_key(|&i| txs[i].0);
        let keys: Vec<&[u8]> = order.iter().map(|&i| &txs[i].0[..]).collect();
        let found = db.batched_multi_get_cf(cf(&db, CF_TXS), keys, true);
        for (&i, r) in order.iter().zip(found) {
            out[i] = r?.and_then(|v| be64(&v));
        }
        Ok(out)
    }

    /// The receipt of a committed operation.
    pub fn receipt(&self, tx: &TxId) -> Result<Option<Receipt>> {
        match self.tx_cursor(tx)? {
            Some(cursor) => self.receipt_at(tx, cursor).map(Some),
            None => Ok(None),
        }
    }

    /// The receipt of operation `tx`, committed at `cursor` (as found by
    /// [`Store::tx_cursors`] or [`Store::recent_tx_cursors`]).
    pub fn receipt_at(&self, tx: &TxId, cursor: u64) -> Result<Receipt> {
        let (height, index) = cursor_parts(cursor);
        let (header, hash) = self
            .header(height)?
            .ok_or_else(|| StoreError::Corrupt(format!("block {height} missing")))?;
        let op = self
            .op_at(cursor)?
            .ok_or_else(|| StoreError::Corrupt(format!("op {cursor:#x} missing")))?;
        Ok(Receipt {
            tx_id: *tx,
            height,
            index,
            timestamp_ms: header.timestamp_ms,
            block_hash: hash,
            large: op.large,
            effect: op.effect,
        })
    }

    /// Scans the column families with `scan`, then lays the pending
    /// generations over the result with `overlay` (oldest first), such that
    /// no generation was handed over in between: the scan then saw the
    /// column families either before or after the one generation that may
    /// have been written meanwhile, and overlaying that generation gives the
    /// same result either way.
    fn scan_then_overlay<T>(
        &self,
        scan: impl Fn(&DB) -> Result<T>,
        overlay: impl Fn(&mut T, &[&Pending]),
    ) -> Result<T> {
        for _ in 0..16 {
            let (frozen, handovers) = {
                let p = self.pending.read();
                (p.frozen.clone(), p.handovers)
            };
            let mut t = scan(&*self.db()?)?;
            let p = self.pending.read();
            if p.handovers == handovers {
                overlay(&mut t, &oldest_first(frozen.as_deref(), &p.active));
                return Ok(t);
            }
        }
        // Commits hand over faster than this scan runs: hold them off once.
        let p = self.pending.read();
        let mut t = scan(&*self.db()?)?;
        overlay(&mut t, &oldest_first(p.frozen.as_deref(), &p.active));
        Ok(t)
    }

    /// Cursors of operations touching `account` strictly after `after`, oldest first.
    pub fn history(&self, account: &AccountId, after: u64, limit: usize) -> Result<Vec<u64>> {
        let scan = |db: &DB| -> Result<Vec<u64>> {
            let mut from = [0u8; 40];
            from[..32].copy_from_slice(&account.0);
            // Records are keyed by the latest height they reach.
            from[32..].copy_from_slice(&cursor_parts(after).0.to_be_bytes());
            let mut out: Vec<u64> = Vec::new();
            'records: for item in db.iterator_cf(cf(db, CF_HISTORY), IteratorMode::From(&from, Direction::Forward)) {
                let (k, v) = item?;
                if k.len() != 40 || k[..32] != account.0 {
                    break;
                }
                if v.is_empty() || v.len() % 8 != 0 {
                    return Err(StoreError::Corrupt(format!("history record of {account}")));
                }
                for c in v.chunks_exact(8) {
                    let cursor = be64(c).expect("8 bytes");
                    if cursor <= after {
                        continue;
                    }
                    if out.len() >= limit {
                        break 'records;
                    }
                    out.push(cursor);
                }
            }
            Ok(out)
        };
        // Then what is not checkpointed yet, oldest generation first (each
        // later than the records, except a generation being written, which
        // both may hold: skip what was already listed).
        self.scan_then_overlay(scan, |out, gens| {
            for g in gens {
                if out.len() >= limit {
                    break;
                }
                let floor = out.last().copied().unwrap_or(after);
                if let Some(cursors) = g.history.get(account) {
                    let start = cursors.partition_point(|&c| c <= floor);
                    let room = limit - out.len();
                    out.extend(cursors[start..].iter().take(room));
                }
            }
        })
    }

    /// Cursors of large payments strictly after `after`.
    pub fn large_payments(&self, after: u64, limit: usize) -> Result<Vec<u64>> {
        let db = self.db()?;
        let mut out = Vec::new();
        let from = after.saturating_add(1).to_be_bytes();
        for item in db.iterator_cf(cf(&db, CF_LARGE), IteratorMode::From(&from, Direction::Forward)) {
            let (k, _) = item?;
            if out.len() >= limit {
                break;
            }
            out.push(be64(&k).ok_or_else(|| StoreError::Corrupt("large key".into()))?);
        }
        Ok(out)
    }

    /// One stored account record.
    pub fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        if let Some(a) = self.pending.read().newest_first().find_map(|g| g.accounts.get(id)) {
            return Ok(Some(a.clone()));
        }
        let db = self.db()?;
        match db.get_cf(cf(&db, CF_ACCOUNTS), id.0)? {
            None => Ok(None),
            Some(v) => Ok(Some(
                Account::decode(*id, &v).ok_or_else(|| StoreError::Corrupt(format!("account {id}")))?,
            )),
        }
    }

    /// Every account as of the last committed block, in id order.
    pub fn all_accounts(&self) -> Result<Vec<Account>> {
        let scan = |db: &DB| -> Result<Vec<Account>> {
            let mut out = Vec::new();
            for item in db.iterator_cf_opt(cf(db, CF_ACCOUNTS), total_order(), IteratorMode::Start) {
                let (k, v) = item?;
                let id = AccountId::from_slice(&k).ok_or_else(|| StoreError::Corrupt("account key".into()))?;
                out.push(Account::decode(id, &v).ok_or_else(|| StoreError::Corrupt(format!("account {id}")))?);
            }
            Ok(out)
        };
        self.scan_then_overlay(scan, |out, gens| {
            // Newest value of each pending account.
            let mut latest: FastMap<&AccountId, &Account> = FastMap::default();
            for g in gens {
                latest.extend(g.accounts.iter());
            }
            let mut created = Vec::new();
            for (id, a) in latest {
                match out.binary_search_by(|o| o.id.cmp(id)) {
                    Ok(i) => out[i] = a.clone(),
                    Err(_) => created.push(a.clone()),
                }
            }
            if !created.is_empty() {
                out.append(&mut created);
                out.sort_unstable_by_key(|a| a.id);
            }
        })
    }

    /// Changes whenever the control records may have (see the field). Read
    /// it before [`Store::control_records`] to tag the copy made from them.
    pub fn controls_version(&self) -> u64 {
        self.controls_version.load(Ordering::Acquire)
    }

    /// Every control record (holds, purposes, lots, tiers, keys, registry)
    /// as of the last committed block, in key order: the family as of the
    /// checkpoint with the pending changes laid over it (for the auditor).
    pub fn control_records(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let scan = |db: &DB| -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
            let mut out = BTreeMap::new();
            for item in db.iterator_cf_opt(cf(db, CF_CONTROLS), total_order(), IteratorMode::Start) {
                let (k, v) = item?;
                out.insert(k.to_vec(), v.to_vec());
            }
            Ok(out)
        };
        let merged = self.scan_then_overlay(scan, |out, gens| {
            for g in gens {
                for (k, v) in &g.controls {
                    match v {
                        Some(v) => out.insert(k.clone(), v.clone()),
                        None => out.remove(k),
                    };
                }
            }
        })?;
        Ok(merged.into_iter().collect())
    }

    /// One page of accounts as of the last committed block: those `filter`
    /// accepts, in id order, strictly after `after` (from the first when
    /// `None`), at most `limit` of them, and whether more match beyond.
    ///
    /// Reads the `accounts` family forward from `after` and stops at the
    /// `limit + 1`-th match, so that walking every page reads the family
    /// about once, not once a page. The pending generations are merged in as
    /// [`Store::all_accounts`] overlays them: a pending value replaces the
    /// family's, whether or not it matches, and accounts opened since the
    /// checkpoint are listed in their place. The pending values are taken
    /// at one instant before the scan, and the scan is read again if a
    /// generation was handed over meanwhile (as in `scan_then_overlay`), so
    /// the page is the state of one committed block, never older than the
    /// head when the call began.
    pub fn accounts_after(
        &self,
        after: Option<&AccountId>,
        limit: usize,
        filter: impl Fn(&Account) -> bool,
    ) -> Result<(Vec<Account>, bool)> {
        // Enough to tell whether more match.
        let want = limit.saturating_add(1);
        let past = |id: &AccountId| after.is_none_or(|a| id > a);
        // The pending accounts past `after`: every id (the family's value
        // under it is older) and the newest values that match, only the
        // first `want` by id (no other can be on the page), sorted.
        let overlay = |p: &Pendings| -> (FastSet<AccountId>, Vec<Account>) {
            let mut ids = FastSet::default();
            let mut matching: Vec<&Account> = Vec::new();
            for g in p.newest_first() {
                for (id, a) in &g.accounts {
                    if past(id) && ids.insert(*id) && filter(a) {
                        matching.push(a);
                    }
                }
            }
            if matching.len() > want {
                matching.select_nth_unstable_by_key(want - 1, |a| a.id);
                matching.truncate(want);
            }
            matching.sort_unstable_by_key(|a| a.id);
            (ids, matching.into_iter().cloned().collect())
        };
        let scan = |db: &DB, (ids, pending): &(FastSet<AccountId>, Vec<Account>)| -> Result<Vec<Account>> {
            let mut out: Vec<Account> = Vec::new();
            let mut pending = pending.iter().peekable();
            let mode = match after {
                Some(a) => IteratorMode::From(&a.0, Direction::Forward),
                None => IteratorMode::Start,
            };
            for item in db.iterator_cf_opt(cf(db, CF_ACCOUNTS), total_order(), mode) {
                let (k, v) = item?;
                let id = AccountId::from_slice(&k).ok_or_else(|| StoreError::Corrupt("account key".into()))?;
                if !past(&id) {
                    continue;
                }
                while out.len() < want {
                    match pending.next_if(|a| a.id < id) {
                        Some(a) => out.push(a.clone()),
                        None => break,
                    }
                }
                if out.len() >= want {
                    break;
                }
                if ids.contains(&id) {
                    // Pending: listed in its place above if it matches.
                    continue;
                }
                let a = Account::decode(id, &v).ok_or_else(|| StoreError::Corrupt(format!("account {id}")))?;
                if filter(&a) {
                    out.push(a);
                }
            }
            let room = want.saturating_sub(out.len());
            out.extend(pending.take(room).cloned());
            Ok(out)
        };
        let page = |mut out: Vec<Account>| {
            let more = out.len() > limit;
            out.truncate(limit);
            (out, more)
        };
        for _ in 0..16 {
            let (pending, handovers) = {
                let p = self.pending.read();
                (overlay(&p), p.handovers)
            };
            let out = scan(&*self.db()?, &pending)?;
            // No generation was handed over during the scan: the family held
            // at most the one being written besides what it held before, and
            // `pending` has that one's values or newer ones.
            if self.pending.read().handovers == handovers {
                return Ok(page(out));
            }
        }
        // Commits hand over faster than this scan runs: hold them off once.
        let p = self.pending.read();
        let out = scan(&*self.db()?, &overlay(&p))?;
        Ok(page(out))
    }

    /// Every bank record, in id order.
    pub fn all_banks(&self) -> Result<Vec<Bank>> {
        let db = self.db()?;
        let mut out = Vec::new();
        for item in db.iterator_cf_opt(cf(&db, CF_BANKS), total_order(), IteratorMode::Start) {
            let (k, v) = item?;
            let id = AccountId::from_slice(&k).ok_or_else(|| StoreError::Corrupt("bank key".into()))?;
            out.push(Bank::decode(id, &v).ok_or_else(|| StoreError::Corrupt(format!("bank {id}")))?);
        }
        Ok(out)
    }

    /// Test and tooling hook: overwrite a raw account record (used to prove
    /// that the auditor and start-up checks catch tampering).
    #[doc(hidden)]
    pub fn tamper_account(&self, account: &Account) -> Result<()> {
        let db = self.db()?;
        db.put_cf(cf(&db, CF_ACCOUNTS), account.id.0, account.encode())?;
        Ok(())
    }

    /// Test and tooling hook: overwrite a raw stored operation.
    #[doc(hidden)]
    pub fn tamper_op(&self, cursor: u64, stored: &[u8]) -> Result<()> {
        let db = self.db()?;
        db.put_cf(cf(&db, CF_OPS), cursor.to_be_bytes(), stored)?;
        Ok(())
    }

    /// RocksDB's per-column-family statistics (flush and compaction volumes
    /// and times), as text: for benchmarks and operators.
    pub fn cf_stats(&self) -> Result<String> {
        let db = self.db()?;
        let mut out = String::new();
        for name in ALL_CFS {
            let stats = db
                .property_value_cf(cf(&db, name), "rocksdb.cfstats")?
                .unwrap_or_default();
            out.push_str(&format!("== {name}\n{stats}\n"));
        }
        Ok(out)
    }

    /// [`Store::flush`], then compacts every column family fully and waits
    /// for it: the store as it settles after a quiet period. For benchmarks
    /// that must not charge the timed phase with the set-up's compaction.
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        let db = self.db()?;
        for name in ALL_CFS {
            db.compact_range_cf(cf(&db, name), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Writes a checkpoint and flushes memtables (for a clean shutdown, so
    /// that the next start-up has nothing to replay; durability never
    /// depends on it).
    pub fn flush(&self) -> Result<()> {
        self.checkpoint()?;
        let db = self.db()?;
        for name in ALL_CFS {
            db.flush_cf(cf(&db, name))?;
        }
        Ok(())
    }
}

/// The block's history, per account (sorted by account): the cursors of the
/// operations that touched it. `touches` is (account, index in block).
fn group_history(height: u64, mut touches: Vec<(AccountId, u32)>) -> Vec<AccountCursors> {
    touches.sort_unstable();
    touches
        .chunk_by(|a, b| a.0 == b.0)
        .map(|g| (g[0].0, g.iter().map(|(_, i)| cursor_of(height, *i)).collect()))
        .collect()
}

fn block_history(block: &SealedBlock) -> Vec<AccountCursors> {
    let mut touches = Vec::with_capacity(2 * block.ops.len());
    for (i, a) in block.ops.iter().enumerate() {
        for acct in touched_by(&a.op).chain(a.also.iter().copied()) {
            touches.push((acct, i as u32));
        }
    }
    group_history(block.header.height, touches)
}

/// Atomically exchanges two directories (Linux `renameat2(RENAME_EXCHANGE)`),
/// then syncs their parent.
fn exchange_dirs(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in a path"))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two valid NUL-terminated paths; no memory is handed over.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let parent = b
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

/// Whether files in `dir` (created if missing) can be written with
/// `O_DIRECT`. RocksDB does not fall back by itself: on a file system that
/// Drops the last handle of a database being closed. Readers hold a handle
/// only for one call: wait them out (5 s at most), so that RocksDB's lock
/// is released when `old` drops and the directory can be opened again.
fn close_when_unused<T>(old: Arc<T>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(old);
}

/// refuses it (tmpfs before Linux 6.6), every flush would fail.
pub fn direct_io_supported(dir: &Path) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 4096;
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join("DIRECT_IO_PROBE");
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)?;
        // A direct write needs a buffer aligned to the device's block.
        let buf = vec![0u8; 2 * BLOCK];
        let at = buf.as_ptr().align_offset(BLOCK);
        f.write_all(&buf[at..at + BLOCK])
    })();
    let _ = std::fs::remove_file(&probe);
    written.is_ok()
}

/// The accounts whose history an operation belongs to.
pub fn touched_by(op: &SignedOp) -> impl Iterator<Item = AccountId> {
    use crate::codec::Op;
    let signer = op.body.signer;
    let (other, third) = match &op.body.op {
        Op::Transfer { payee, .. } | Op::PayTagged { payee, .. } => (Some(*payee), None),
        Op::Issue { bank, .. } | Op::Redeem { bank, .. } => (Some(*bank), None),
        Op::OpenAccount { account, .. }
        | Op::CloseAccount { account }
        | Op::Freeze { account }
        | Op::Unfreeze { account }
        | Op::FreezeReceiveOnly { account }
        | Op::FlagFraud { account, .. }
        | Op::SetCategory { account, .. }
        | Op::SetSweep { account, .. }
        | Op::SetTier { account, .. }
        | Op::RotateKey { account, .. }
        | Op::SetSignatories { account, .. } => (Some(*account), None),
        Op::Collect { debtor, claimant, .. } => (Some(*debtor), Some(*claimant)),
        Op::AdmitBank { bank, .. } | Op::SuspendBank { bank } => (Some(*bank), None),
        Op::SetPhase { .. }
        | Op::SetLimits { .. }
        | Op::SetReportingThreshold { .. }
        | Op::SetControls { .. }
        | Op::SetTierLimits { .. }
        | Op::DefinePurpose { .. }
        | Op::ConfirmPayment { .. }
        | Op::ReleasePayment { .. }
        | Op::VoidPayment { .. } => (None, None),
    };
    // An iterator, not a vector: the committer calls this for every
    // operation of every block.
    let other = other.filter(|o| *o != signer);
    let third = third.filter(|o| *o != signer);
    std::iter::once(signer).chain(other).chain(third)
}

impl Drop for Store {
    /// A checkpoint being written holds the database open: let it finish,
    /// so that the data directory is unlocked when the store is gone.
    fn drop(&mut self) {
        self.writer.wait_idle();
    }
}
