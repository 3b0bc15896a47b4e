//! # ruble-ledger
//!
//! The digital ruble ledger's node side: the RocksDB store, the hot path,
//! the auditor, over the domain crate `ruble-domain`.
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
//! The domain (`block`, `codec`, `crypto`, `exec`, `query`, `reason`,
//! `state`, `types`) is the crate `ruble-domain` (`ledger/domain`), which has no
//! RocksDB: the wallet SDK and the fuzz targets depend on it alone. This
//! crate re-exports its modules under the same names, so `ruble_ledger::codec`
//! and `ruble_domain::codec` are one module.

// The verifier hands a refused operation back in `Err` (as big as the `Ok`
// side), so callers can report its id without cloning it.
#![allow(clippy::result_large_err)]

pub use ruble_domain::{block, codec, crypto, exec, query, reason, state, types};

pub mod audit;
pub mod engine;
pub mod pipeline;
pub mod raft;
pub mod store;

pub use codec::{Op, OpBody, SignedOp};
pub use crypto::{KeyCache, Verified};
pub use engine::{Ledger, Outcome};
pub use reason::Reason;
pub use state::{Account, Bank, Genesis, GenesisBank, Params, State, Totals};
pub use store::{Receipt, Store, StoreError};
pub use types::{AccountId, AccountKind, AccountStatus, Kopecks, Limits, Phase, TxId};
