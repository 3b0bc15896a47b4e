//! # ruble-ledger
//!
//! The digital ruble ledger core: domain model, the deterministic state
//! machine, the one signature rule, and the RocksDB store.
//!
//! Main types, in the order data flows through them:
//! - [`codec::OpBody`] / [`codec::SignedOp`]: the canonical signed operation
//!   (byte layout in `docs/signing.md`).
//! - [`crypto`]: the ZIP-215 signature rule; [`crypto::Verified`] is the only
//!   way to hand an operation to the state machine.
//! - [`state::State`]: the pure state machine (`begin_block`, `apply`,
//!   `seal_block`); no IO, no clock, no randomness.
//! - [`store::Store`]: RocksDB; one synced `WriteBatch` per block.
//! - [`engine::Ledger`]: the synchronous reference engine (verify, apply,
//!   commit, receipts); [`pipeline`] is the overlapped version the node runs.
//! - [`audit::audit`]: replay from genesis and compare with the store.
//! - [`query`]: signed, fresh read requests (wallets reading their own account).
//!
//! The IO layer (`store`, `engine`, `pipeline`, `audit`) is behind the default
//! cargo feature `store`. Without it (`default-features = false`) the crate
//! is the pure domain and state machine, with no RocksDB to build: the fuzz
//! targets in `ledger/fuzz` use it that way.

// The verifier hands a refused operation back in `Err` (as big as the `Ok`
// side), so callers can report its id without cloning it.
#![allow(clippy::result_large_err)]

#[cfg(feature = "store")]
pub mod audit;
pub mod block;
pub mod codec;
pub mod crypto;
#[cfg(feature = "store")]
pub mod engine;
#[cfg(feature = "store")]
pub mod pipeline;
pub mod query;
pub mod reason;
pub mod state;
#[cfg(feature = "store")]
pub mod store;
pub mod types;

pub use codec::{Op, OpBody, SignedOp};
pub use crypto::{KeyCache, Verified};
#[cfg(feature = "store")]
pub use engine::{Ledger, Outcome};
pub use reason::Reason;
pub use state::{Account, Bank, Genesis, GenesisBank, Params, State, Totals};
#[cfg(feature = "store")]
pub use store::{Receipt, Store, StoreError};
pub use types::{AccountId, AccountKind, AccountStatus, Kopecks, Limits, Phase, TxId};
