//! Damaged files in the data directory are found at start-up and refused,
//! never served: a flipped block in a table file (SST) and a flipped record
//! in the write-ahead log. Real RocksDB in a temp dir; the damage is done to
//! the bytes on disk, as a failing disk would.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ruble_ledger::codec::Op;
use ruble_ledger::engine::{Ledger, Outcome};
use ruble_ledger::store::Store;

/// A chain of a few thousand transfers in `dir`.
fn build_chain(dir: &Path) -> Ledger {
    let mut w = World::new();
    let mut ledger = Ledger::open(dir, Some(&w.genesis())).unwrap();
    let payers: Vec<_> = (0..8).map(|i| key(700 + i)).collect();
    let setup = w.fund_payers(&payers);
    let out = ledger.execute(T0, setup).unwrap();
    assert!(out.iter().all(|o| matches!(o, Outcome::Committed(_))));
    for block in 0..20u64 {
        let ops = (0..200usize)
            .map(|i| {
                let from = &payers[i % payers.len()];
                let to = &payers[(i + 1) % payers.len()];
                w.sign(
                    from,
                    Op::Transfer {
                        payee: id(to),
                        amount: 1 + i as u64,
                        purpose: format!("invoice {block}-{i}"),
                    },
                )
            })
            .collect();
        let out = ledger.execute(T0 + 1 + block, ops).unwrap();
        assert!(out.iter().all(|o| matches!(o, Outcome::Committed(_))));
    }
    ledger
}

/// The largest file in `dir` whose name ends with `ext`.
fn largest(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()))
}

/// Inverts 32 bytes in the middle of a file.
fn damage(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    assert!(
        b.len() > 100_000,
        "{} ({} bytes) is too small to hold the chain",
        path.display(),
        b.len()
    );
    let mid = b.len() / 2;
    for x in &mut b[mid..mid + 32] {
        *x = !*x;
    }
    std::fs::write(path, b).unwrap();
}

/// What the node does at start-up: open, rebuild the state, verify every record.
fn start_up(dir: &Path) -> Result<u64, String> {
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    store.load().map_err(|e| e.to_string())?;
    store.verify_integrity().map_err(|e| e.to_string())
}

#[test]
fn a_damaged_table_file_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    // Control: the undamaged directory passes, so the check below can fail
    // only because of the damage.
    flush_and_start_up(dir.path());

    damage(&largest(dir.path(), "sst"));
    let err = start_up(dir.path()).expect_err("a damaged table file must stop the start-up");
    assert!(err.to_lowercase().contains("corrupt"), "unclear refusal: {err}");
}

#[test]
fn a_damaged_log_record_is_refused_not_silently_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = build_chain(dir.path());
    let height = ledger.state().height();
    drop(ledger); // no flush: the blocks live only in the write-ahead log
                  // (Opening would replay the log into a table file, so damage it as the
                  // crash left it; `damage` checks that the log holds the blocks' bytes.)
    damage(&largest(dir.path(), "log"));
    // RocksDB's default recovery would stop replaying at the damaged record and
    // open at an earlier height, silently dropping acknowledged blocks.
    match start_up(dir.path()) {
        Err(e) => assert!(e.to_lowercase().contains("corrupt"), "unclear refusal: {e}"),
        Ok(_) => panic!(
            "opened a store with a damaged log (height now {:?}, was {height})",
            Store::open(dir.path()).and_then(|s| s.head_height()).ok()
        ),
    }
}

#[test]
fn a_reopened_store_serves_the_same_chain_and_accepts_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = build_chain(dir.path());
    let before = ledger.state().state_hash();
    ledger.store().reopen().unwrap();
    assert_eq!(ledger.store().load().unwrap().state_hash(), before);
    // Still writable after the reopen: one more block commits and reloads.
    let mut w = World::new();
    w.nonce = 1 << 40;
    let (p, q) = (key(700), key(701));
    let op = w.sign(
        &p,
        Op::Transfer {
            payee: id(&q),
            amount: 5,
            purpose: String::new(),
        },
    );
    let out = ledger.execute(T0 + 100, vec![op]).unwrap();
    assert!(matches!(out[0], Outcome::Committed(_)));
    assert_eq!(ledger.store().load().unwrap().state_hash(), ledger.state().state_hash());
}

/// The RocksDB options file the store was opened with (the newest one).
fn rocksdb_options(dir: &Path) -> String {
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
        .max()
        .expect("RocksDB writes an OPTIONS file");
    std::fs::read_to_string(newest).unwrap()
}

/// Builds a chain in `dir`, flushes it into table files, and starts up from
/// them again: what a file system that refused the table writes would fail.
fn flush_and_start_up(dir: &Path) {
    let ledger = build_chain(dir);
    let height = ledger.state().height();
    ledger.store().flush().unwrap();
    drop(ledger);
    largest(dir, "sst"); // (panics if the flush wrote no table file)
    let records = start_up(dir).expect("the flushed store starts");
    assert!(records > 4000, "verified only {records} records");
    assert_eq!(Store::open(dir).unwrap().head_height().unwrap(), height);
}

/// Opens a store in `dir` and checks that it writes table files with direct
/// IO exactly when the probe says the file system takes it, and that they
/// are written and read back either way (had the probe said yes wrongly,
/// the flush would fail).
fn direct_io_follows_the_probe(dir: &Path) {
    let supported = ruble_ledger::store::direct_io_supported(dir);
    flush_and_start_up(dir);
    let opts = rocksdb_options(dir);
    assert!(
        opts.contains(&format!("use_direct_io_for_flush_and_compaction={supported}")),
        "direct IO probed {supported}, but the store was opened with other options"
    );
    assert!(!dir.join("DIRECT_IO_PROBE").exists(), "the probe file is left behind");
}

#[test]
fn table_files_are_written_with_direct_io_where_the_file_system_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    direct_io_follows_the_probe(dir.path());
}

#[test]
fn a_store_on_tmpfs_flushes_with_or_without_direct_io() {
    // tmpfs refused O_DIRECT before Linux 6.6, and RocksDB then fails every
    // flush; on a newer kernel it takes it.
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("no /dev/shm here: nothing to check");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    direct_io_follows_the_probe(dir.path());
}

#[test]
fn direct_io_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ruble_ledger::store::StoreOptions {
        direct_io: false,
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), &opts).unwrap();
    drop(store);
    assert!(rocksdb_options(dir.path()).contains("use_direct_io_for_flush_and_compaction=false"));
}
