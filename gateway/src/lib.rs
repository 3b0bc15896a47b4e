//! # ruble-gateway
//!
//! The `ruble-node` binary's library: gRPC services over the ledger pipeline.
//!
//! - [`node::start`]: opens the ledger, starts the pipeline and serves
//!   [`services::wallet`], [`services::bank`], [`services::central_bank`],
//!   health and reflection over TLS; [`node::RunningNode::shutdown`] finishes
//!   the block in flight.
//! - [`backend`]: [`backend::LedgerBackend`], the submit/read interface the
//!   services use (a single node's pipeline, or a replica that may not lead).
//! - [`auth`]: mutual-TLS identities and role checks; [`pki`]: the CA and the certificates it issues.
//! - [`budget`]: stream and connection budgets (per participant, per peer,
//!   node-wide); [`wire`]: precise answers to request bytes tonic refuses.
//! - [`devnet`]: `ruble-node dev` (genesis, keys, certificates, funded accounts).
//! - [`init`]: `ruble-node init` and `ruble-node pki` (a deployment's genesis, keys, CA and certificates).
//! - [`config`]: `ruble-node run` configuration; [`metrics`]: Prometheus.

pub mod auth;
pub mod backend;
pub mod budget;
pub mod config;
pub mod convert;
pub mod ctx;
pub mod devnet;
pub mod init;
pub mod metrics;
pub mod node;
pub mod pki;
pub mod raft_net;
pub mod replica;
pub mod services;
pub mod telemetry;
pub mod wire;
