//! # ruble-domain
//!
//! The digital ruble's domain, with no storage and no IO: what every party
//! (node, replica, auditor, wallet SDK) must agree on byte for byte.
//!
//! Main types, in the order data flows through them:
//! - [`codec::OpBody`] / [`codec::SignedOp`]: the canonical signed operation
//!   (byte layout in `docs/signing.md`).
//! - [`crypto`]: the ZIP-215 signature rule; [`crypto::Verified`] is the only
//!   way to hand an operation to the state machine.
//! - [`state::State`]: the pure state machine (`begin_block`, `apply`,
//!   `seal_block`); no IO, no clock, no randomness.
//! - [`exec`]: one block executed on a state, new ([`exec::execute_block`])
//!   or replayed from storage ([`exec::replay_block`]).
//! - [`query`]: signed, fresh read requests (wallets reading their own account).
//!
//! The storage, the hot path and the auditor are in `ruble-ledger`, which
//! re-exports these modules under the same names.

// The verifier hands a refused operation back in `Err` (as big as the `Ok`
// side), so callers can report its id without cloning it.
#![allow(clippy::result_large_err)]

pub mod block;
pub mod codec;
pub mod crypto;
pub mod exec;
pub mod query;
pub mod reason;
pub mod state;
pub mod types;

pub use codec::{Op, OpBody, SignedOp};
pub use crypto::{KeyCache, Verified};
pub use reason::Reason;
pub use state::{Account, Bank, Genesis, GenesisBank, Params, State, Totals};
pub use types::{AccountId, AccountKind, AccountStatus, Kopecks, Limits, Phase, TxId};
