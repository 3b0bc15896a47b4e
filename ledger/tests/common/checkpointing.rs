//! A store that checkpoints every 40 operations, so that a few blocks of a
//! test cross several checkpoints and leave some blocks pending, and hands the
//! tx index entries over on their own in between, every 12.

use std::path::Path;

use ruble_ledger::engine::Ledger;
use ruble_ledger::store::StoreOptions;

use super::World;

pub fn options() -> StoreOptions {
    StoreOptions {
        checkpoint_ops: 40,
        txs_handover_ops: 12,
        // Several `txs` slices per checkpoint written behind.
        checkpoint_txs_per_write: 8,
        ..StoreOptions::default()
    }
}

/// `w`'s ledger in `dir`, opened with [`options`].
pub fn open(dir: &Path, w: &World) -> Ledger {
    Ledger::open_with(dir, Some(&w.genesis()), &options()).unwrap()
}
