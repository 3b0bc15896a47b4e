//! The Raft log on its own RocksDB (`<data>/raft`, apart from the ledger
//! store): openraft's `RaftLogStorage` and `RaftLogReader`.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `entries` | log index (u64 BE) | the entry (bincode) |
//! | `meta` | `vote`, `committed`, `last_purged` | bincode of openraft's `Vote` / `LogId` |
//!
//! Every write is one `WriteBatch` with `sync = true`: an append is on disk
//! (its WAL record fsync'd) before openraft's callback is told it is
//! flushed, and a vote before `save_vote` returns, as Raft's safety
//! requires (a replica must not forget a vote or an acknowledged entry over
//! a crash). Truncating and purging are range deletes; the purge records
//! the last purged log id in the same batch. The blocking RocksDB calls run
//! on tokio's blocking pool, off the Raft core's task.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, RaftLogReader, StorageIOError, Vote};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{Entry, NodeId, StorageError, TypeConfig};

const CF_ENTRIES: &str = "entries";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log. Cheap to clone (one shared database); a clone is also the
/// log reader openraft's replication tasks use.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, AnyError> {
    bincode::serialize(v).map_err(|e| io_err(*e))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, AnyError> {
    bincode::deserialize(b).map_err(|e| io_err(*e))
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

/// Runs a blocking RocksDB call off the async worker threads.
async fn blocking<T, F>(f: F) -> Result<T, AnyError>
where
    F: FnOnce() -> Result<T, AnyError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(io_err)?
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir`.
    pub fn open(dir: &Path) -> Result<LogStore, rocksdb::Error> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        // Every record was synced before it was acknowledged: a bad
        // checksum in the middle is corruption, not a torn write (as for the
        // ledger store).
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        let cfs = [CF_ENTRIES, CF_META].map(|n| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::None);
            ColumnFamilyDescriptor::new(n, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(LogStore { db: Arc::new(db) })
    }

    fn write_synced(db: &DB, wb: WriteBatch) -> Result<(), AnyError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo).map_err(io_err)
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        match self.db.get_cf(cf(&self.db, CF_META), key).map_err(io_err)? {
            None => Ok(None),
            Some(v) => Ok(Some(decode(&v)?)),
        }
    }

    async fn put_meta<T: Serialize>(&self, key: &'static [u8], v: &T) -> Result<(), AnyError> {
        let v = encode(v)?;
        let db = self.db.clone();
        blocking(move || {
            let mut wb = WriteBatch::default();
            wb.put_cf(cf(&db, CF_META), key, v);
            Self::write_synced(&db, wb)
        })
        .await
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, AnyError> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_ENTRIES), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, v) = item.map_err(io_err)?;
                let e: Entry = decode(&v)?;
                Ok(Some(e.log_id))
            }
        }
    }

    /// Entries with index in `range`, in order (stops at the first gap).
    fn entries_in(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, AnyError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let mode = IteratorMode::From(&index_key(start)[..], Direction::Forward);
        for item in self.db.iterator_cf(cf(&self.db, CF_ENTRIES), mode) {
            let (k, v) = item.map_err(io_err)?;
            let idx = u64::from_be_bytes(k[..].try_into().map_err(|_| AnyError::error("raft log key"))?);
            if !range.contains(&idx) {
                break;
            }
            let e: Entry = decode(&v)?;
            if out.last().is_some_and(|p: &Entry| p.log_id.index + 1 != idx) {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let this = self.clone();
        let owned = (range.start_bound().cloned(), range.end_bound().cloned());
        Ok(blocking(move || this.entries_in(owned))
            .await
            .map_err(StorageIOError::read_logs)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(KEY_LAST_PURGED).map_err(StorageIOError::read_logs)?;
        let last = self.last_entry_log_id().map_err(StorageIOError::read_logs)?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        Ok(self
            .put_meta(KEY_VOTE, vote)
            .await
            .map_err(StorageIOError::write_vote)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.get_meta(KEY_VOTE).map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        Ok(self
            .put_meta(KEY_COMMITTED, &committed)
            .await
            .map_err(StorageIOError::write)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let c: Option<Option<LogId<NodeId>>> = self.get_meta(KEY_COMMITTED).map_err(StorageIOError::read)?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut wb = WriteBatch::default();
        {
            let entries_cf = cf(&self.db, CF_ENTRIES);
            for e in entries {
                let v = encode(&e).map_err(|err| StorageIOError::write_log_entry(e.log_id, err))?;
                wb.put_cf(entries_cf, index_key(e.log_id.index), v);
            }
        }
        let db = self.db.clone();
        // Synced before the callback: openraft counts the entries as
        // persisted (and acknowledges them to the leader) once it is called.
        let written = blocking(move || Self::write_synced(&db, wb)).await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let db = self.db.clone();
        Ok(blocking(move || {
            let mut wb = WriteBatch::default();
            wb.delete_range_cf(cf(&db, CF_ENTRIES), index_key(log_id.index), index_key(u64::MAX));
            wb.delete_cf(cf(&db, CF_ENTRIES), index_key(u64::MAX));
            Self::write_synced(&db, wb)
        })
        .await
        .map_err(StorageIOError::write_logs)?)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let v = encode(&log_id).map_err(StorageIOError::write_logs)?;
        let db = self.db.clone();
        Ok(blocking(move || {
            let mut wb = WriteBatch::default();
            // The purged id first (the same batch): a log state read after a
            // crash never sees the entries gone without it.
            wb.put_cf(cf(&db, CF_META), KEY_LAST_PURGED, v);
            wb.delete_range_cf(cf(&db, CF_ENTRIES), index_key(0), index_key(log_id.index + 1));
            Self::write_synced(&db, wb)
        })
        .await
        .map_err(StorageIOError::write_logs)?)
    }
}
