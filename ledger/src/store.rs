//! The storage boundary: RocksDB, one column family per kind of record.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `genesis`, `state` | genesis JSON; params + totals + head JSON |
//! | `blocks` | height (u64 BE) | header (116 B) ‖ block hash (32 B) |
//! | `ops` | cursor (u64 BE) | stored op (`u16 len ‖ body ‖ sig`) ‖ large flag |
//! | `txs` | tx id | cursor |
//! | `history` | account ‖ cursor | empty (every op that touched the account) |
//! | `large` | cursor | empty (large-payment reports) |
//! | `accounts` | account id | account record |
//! | `banks` | bank id | bank record |
//! | `recent` | valid_until (u64 BE) ‖ tx id | empty (the replay window) |
//!
//! A block and all its effects are written by [`Store::commit`] as one
//! `WriteBatch` with `sync = true`: after it returns, the block survives a
//! crash or power loss; before it returns, none of it is visible after a
//! restart. [`Store::load`] rebuilds the in-memory state and refuses to start
//! when the recomputed state hash differs from the head block's, so a corrupted
//! record is never served as a balance.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rocksdb::{
    ColumnFamilyDescriptor, DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::block::BlockHeader;
use crate::codec::SignedOp;
use crate::state::{Account, Bank, Genesis, Params, SealedBlock, State, StateParts, Totals};
use crate::types::{cursor_of, cursor_parts, AccountId, Hash32, TxId};

const CF_META: &str = "meta";
const CF_BLOCKS: &str = "blocks";
const CF_OPS: &str = "ops";
const CF_TXS: &str = "txs";
const CF_HISTORY: &str = "history";
const CF_LARGE: &str = "large";
const CF_ACCOUNTS: &str = "accounts";
const CF_BANKS: &str = "banks";
const CF_RECENT: &str = "recent";
/// Column families whose keys arrive in random order (tx ids, account ids).
const RANDOM_KEY_CFS: [&str; 3] = [CF_TXS, CF_HISTORY, CF_ACCOUNTS];
const ALL_CFS: [&str; 9] = [
    CF_META,
    CF_BLOCKS,
    CF_OPS,
    CF_TXS,
    CF_HISTORY,
    CF_LARGE,
    CF_ACCOUNTS,
    CF_BANKS,
    CF_RECENT,
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
}

impl Receipt {
    pub fn cursor(&self) -> u64 {
        cursor_of(self.height, self.index)
    }
}

/// Tuning knobs for the RocksDB instance.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Memtable size per column family. Small on purpose: the block's
    /// random keys (tx ids, accounts, history) are inserted into a skiplist,
    /// and a small one stays in cache. Measured with the `apply_commit`
    /// bench at 10k accounts, 4096-transfer blocks (pipelined tx/s): 64 MiB
    /// 87k, 16 MiB 150k, 8 MiB 152k, 4 MiB 199k, 2 MiB 191k, 1 MiB 169k.
    pub write_buffer_bytes: usize,
    /// Block cache for reads.
    pub block_cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            write_buffer_bytes: 4 << 20,
            block_cache_bytes: 256 << 20,
        }
    }
}

/// The RocksDB-backed store. `Send + Sync`: readers and the committer share it.
///
/// The database sits behind a lock so that it can be closed and opened again
/// ([`Store::reopen`]): after a failed write (a full disk) RocksDB stays in an
/// error state that only a reopen clears.
pub struct Store {
    db: RwLock<Option<Arc<DB>>>,
    path: PathBuf,
    opts: StoreOptions,
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
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
        Ok(Store {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            opts: StoreOptions::default(),
        })
    }

    pub fn open_with(path: &Path, o: &StoreOptions) -> Result<Store> {
        let db = Self::open_db(path, o)?;
        Ok(Store {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            opts: o.clone(),
        })
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
        Ok(DB::open_cf_for_read_only(&Self::db_options(), path, ALL_CFS, false)?)
    }

    fn open_db(path: &Path, o: &StoreOptions) -> Result<DB> {
        let mut opts = Self::db_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        let cache = rocksdb::Cache::new_lru_cache(o.block_cache_bytes);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf = Options::default();
            cf.set_write_buffer_size(o.write_buffer_bytes);
            // Small memtables fill fast: keep a few so that a flush that lags
            // never stalls the committer.
            cf.set_max_write_buffer_number(4);
            // A bloom filter over the memtable's whole keys: most point reads
            // miss (the dedupe lookup of every submitted tx id before it is
            // verified), and without it each miss is a full skiplist search.
            cf.set_memtable_prefix_bloom_ratio(0.02);
            cf.set_memtable_whole_key_filtering(true);
            let mut bbo = rocksdb::BlockBasedOptions::default();
            bbo.set_block_cache(&cache);
            bbo.set_bloom_filter(10.0, false);
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
                // Keys are hashes or start with one: every flushed file
                // overlaps the whole key range, so leveled compaction would
                // rewrite all of L1 for each few MiB flushed (it took a third
                // of the node's CPU once the chain held ~10M transfers).
                // Universal (tiered) compaction rewrites each byte a few
                // times instead; point reads stay cheap behind bloom filters.
                cf.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
                // Hashes do not compress: LZ4 would only burn CPU.
                cf.set_compression_type(rocksdb::DBCompressionType::None);
            } else {
                cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            }
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
            // Readers hold the handle only for one call: wait them out, so
            // that RocksDB's lock is released when `old` drops.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(old);
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
        for a in state.accounts() {
            wb.put_cf(cf(&db, CF_ACCOUNTS), a.id.0, a.encode());
        }
        for b in state.banks() {
            wb.put_cf(cf(&db, CF_BANKS), b.id.0, b.encode());
        }
        Self::put_head(
            &db,
            &mut wb,
            &header,
            &state.head_hash(),
            state.params(),
            state.totals(),
        );
        Self::write_synced(&db, wb)?;
        Ok(state)
    }

    fn put_head(db: &DB, wb: &mut WriteBatch, header: &BlockHeader, hash: &Hash32, params: &Params, totals: Totals) {
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
        wb.put_cf(
            cf(db, CF_META),
            b"state",
            serde_json::to_vec(&meta).expect("meta serialises"),
        );
    }

    /// `db` must be the handle whose column families built `wb`.
    fn write_synced(db: &DB, wb: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// Durably commits one block and all its effects as a single synced batch.
    ///
    /// Keys are put in sorted order per column family: RocksDB's memtable
    /// skiplist then reuses its insertion point from one key to the next
    /// instead of searching from the top (profiling showed random-order
    /// inserts as the committer's main cost).
    pub fn commit(&self, block: &SealedBlock) -> Result<()> {
        let db = self.db()?;
        let height = block.header.height;
        let mut wb = WriteBatch::default();
        let (ops, txs, history, large) = (cf(&db, CF_OPS), cf(&db, CF_TXS), cf(&db, CF_HISTORY), cf(&db, CF_LARGE));
        let n = block.ops.len();
        let mut tx_keys: Vec<([u8; 32], [u8; 8])> = Vec::with_capacity(n);
        let mut history_keys: Vec<[u8; 40]> = Vec::with_capacity(2 * n);
        for (i, a) in block.ops.iter().enumerate() {
            let cursor = cursor_of(height, i as u32);
            let ck = cursor.to_be_bytes();
            let mut v = a.op.to_stored();
            v.push(a.large as u8);
            // Cursors ascend: already in order.
            wb.put_cf(ops, ck, v);
            tx_keys.push((a.op.tx_id.0, ck));
            for acct in touched_by(&a.op) {
                let mut k = [0u8; 40];
                k[..32].copy_from_slice(&acct.0);
                k[32..].copy_from_slice(&ck);
                history_keys.push(k);
            }
            if a.large {
                wb.put_cf(large, ck, []);
            }
        }
        tx_keys.sort_unstable();
        for (k, v) in &tx_keys {
            wb.put_cf(txs, k, v);
        }
        history_keys.sort_unstable();
        for k in &history_keys {
            wb.put_cf(history, k, []);
        }
        let accounts = cf(&db, CF_ACCOUNTS);
        // Sorted by id by seal_block.
        for a in &block.accounts {
            wb.put_cf(accounts, a.id.0, a.encode());
        }
        for b in &block.banks {
            wb.put_cf(cf(&db, CF_BANKS), b.id.0, b.encode());
        }
        let recent = cf(&db, CF_RECENT);
        // Drop replay entries that expired before this block, as
        // `State::seal_block` did in memory.
        wb.delete_range_cf(recent, [0u8; 8], block.prune_below.to_be_bytes());
        let mut recent_keys: Vec<[u8; 40]> = block
            .recent_added
            .iter()
            .map(|(until, tx)| {
                let mut k = [0u8; 40];
                k[..8].copy_from_slice(&until.to_be_bytes());
                k[8..].copy_from_slice(&tx.0);
                k
            })
            .collect();
        recent_keys.sort_unstable();
        for k in &recent_keys {
            wb.put_cf(recent, k, []);
        }
        Self::put_head(&db, &mut wb, &block.header, &block.hash, &block.params, block.totals);
        Self::write_synced(&db, wb)
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

    /// Rebuilds the in-memory state from the store and checks it against the
    /// head block's state hash.
    pub fn load(&self) -> Result<State> {
        let db = self.db()?;
        let meta = self.meta_state()?;
        let (header, hash) = self
            .header(meta.height)?
            .ok_or_else(|| StoreError::Corrupt(format!("head block {} missing", meta.height)))?;
        if hash != meta.head_hash || header.hash() != hash {
            return Err(StoreError::Corrupt("head block hash mismatch".into()));
        }
        let mut accounts = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_ACCOUNTS), IteratorMode::Start) {
            let (k, v) = item?;
            let id = AccountId::from_slice(&k).ok_or_else(|| StoreError::Corrupt("account key".into()))?;
            accounts.push(Account::decode(id, &v).ok_or_else(|| StoreError::Corrupt(format!("account {id}")))?);
        }
        let mut banks = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_BANKS), IteratorMode::Start) {
            let (k, v) = item?;
            let id = AccountId::from_slice(&k).ok_or_else(|| StoreError::Corrupt("bank key".into()))?;
            banks.push(Bank::decode(id, &v).ok_or_else(|| StoreError::Corrupt(format!("bank {id}")))?);
        }
        let mut recent = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_RECENT), IteratorMode::Start) {
            let (k, _) = item?;
            if k.len() != 40 {
                return Err(StoreError::Corrupt("replay-window key".into()));
            }
            recent.push((be64(&k[..8]).unwrap(), TxId::from_slice(&k[8..]).unwrap()));
        }
        let state = State::from_parts(StateParts {
            params: meta.params,
            totals: meta.totals,
            accounts,
            banks,
            recent,
            height: meta.height,
            head_hash: meta.head_hash,
            timestamp_ms: meta.timestamp_ms,
        });
        if state.state_hash() != header.state_hash {
            return Err(StoreError::Corrupt(format!(
                "state at height {} does not match its block's state hash",
                meta.height
            )));
        }
        Ok(state)
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
        if rest.len() != 1 || rest[0] > 1 {
            return Err(StoreError::Corrupt(format!("op flags at {cursor:#x}")));
        }
        Ok(StoredOp {
            cursor,
            op,
            large: rest[0] == 1,
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

    /// Where a committed operation sits, if it is committed.
    pub fn tx_cursor(&self, tx: &TxId) -> Result<Option<u64>> {
        let db = self.db()?;
        Ok(db.get_cf(cf(&db, CF_TXS), tx.0)?.and_then(|v| be64(&v)))
    }

    /// Where each of `txs` sits, in one batched lookup (sorted internally:
    /// RocksDB then walks each file's index once for the whole batch, which
    /// is what lets the auditor check tens of millions of ids).
    pub fn tx_cursors(&self, txs: &[TxId]) -> Result<Vec<Option<u64>>> {
        let db = self.db()?;
        let mut order: Vec<usize> = (0..txs.len()).collect();
        order.sort_unstable_by_key(|&i| txs[i].0);
        let keys: Vec<&[u8]> = order.iter().map(|&i| &txs[i].0[..]).collect();
        let found = db.batched_multi_get_cf(cf(&db, CF_TXS), keys, true);
        let mut out = vec![None; txs.len()];
        for (&i, r) in order.iter().zip(found) {
            out[i] = r?.and_then(|v| be64(&v));
        }
        Ok(out)
    }

    /// The receipt of a committed operation.
    pub fn receipt(&self, tx: &TxId) -> Result<Option<Receipt>> {
        let Some(cursor) = self.tx_cursor(tx)? else {
            return Ok(None);
        };
        let (height, index) = cursor_parts(cursor);
        let (header, hash) = self
            .header(height)?
            .ok_or_else(|| StoreError::Corrupt(format!("block {height} missing")))?;
        let op = self
            .op_at(cursor)?
            .ok_or_else(|| StoreError::Corrupt(format!("op {cursor:#x} missing")))?;
        Ok(Some(Receipt {
            tx_id: *tx,
            height,
            index,
            timestamp_ms: header.timestamp_ms,
            block_hash: hash,
            large: op.large,
        }))
    }

    /// Cursors of operations touching `account` strictly after `after`, oldest first.
    pub fn history(&self, account: &AccountId, after: u64, limit: usize) -> Result<Vec<u64>> {
        let db = self.db()?;
        let mut from = [0u8; 40];
        from[..32].copy_from_slice(&account.0);
        from[32..].copy_from_slice(&after.saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_HISTORY), IteratorMode::From(&from, Direction::Forward)) {
            let (k, _) = item?;
            if k.len() != 40 || k[..32] != account.0 || out.len() >= limit {
                break;
            }
            out.push(be64(&k[32..]).unwrap());
        }
        Ok(out)
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
        let db = self.db()?;
        match db.get_cf(cf(&db, CF_ACCOUNTS), id.0)? {
            None => Ok(None),
            Some(v) => Ok(Some(
                Account::decode(*id, &v).ok_or_else(|| StoreError::Corrupt(format!("account {id}")))?,
            )),
        }
    }

    /// Every stored account record, in id order.
    pub fn all_accounts(&self) -> Result<Vec<Account>> {
        let db = self.db()?;
        let mut out = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_ACCOUNTS), IteratorMode::Start) {
            let (k, v) = item?;
            let id = AccountId::from_slice(&k).ok_or_else(|| StoreError::Corrupt("account key".into()))?;
            out.push(Account::decode(id, &v).ok_or_else(|| StoreError::Corrupt(format!("account {id}")))?);
        }
        Ok(out)
    }

    /// Every bank record, in id order.
    pub fn all_banks(&self) -> Result<Vec<Bank>> {
        let db = self.db()?;
        let mut out = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_BANKS), IteratorMode::Start) {
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

    /// Flushes memtables (for clean shutdown; durability never depends on it).
    pub fn flush(&self) -> Result<()> {
        let db = self.db()?;
        for name in ALL_CFS {
            db.flush_cf(cf(&db, name))?;
        }
        Ok(())
    }
}

/// The accounts whose history an operation belongs to.
pub fn touched_by(op: &SignedOp) -> Vec<AccountId> {
    use crate::codec::Op;
    let signer = op.body.signer;
    let other = match &op.body.op {
        Op::Transfer { payee, .. } => Some(*payee),
        Op::Issue { bank, .. } | Op::Redeem { bank, .. } => Some(*bank),
        Op::OpenAccount { account, .. }
        | Op::CloseAccount { account }
        | Op::Freeze { account }
        | Op::Unfreeze { account } => Some(*account),
        Op::AdmitBank { bank, .. } | Op::SuspendBank { bank } => Some(*bank),
        Op::SetPhase { .. } | Op::SetLimits { .. } | Op::SetReportingThreshold { .. } => None,
    };
    match other {
        Some(o) if o != signer => vec![signer, o],
        _ => vec![signer],
    }
}
