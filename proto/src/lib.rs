//! # ruble-proto
//!
//! The gRPC API of the digital ruble ledger (`proto/ruble/v1/*.proto`) and the
//! Rust code generated from it.
//!
//! Services, in [`v1`]:
//! - `WalletService` ([`v1::wallet_service_server`], [`v1::wallet_service_client`]):
//!   account holders; operations authorise themselves by signature.
//! - `BankService` ([`v1::bank_service_server`], [`v1::bank_service_client`]):
//!   participant banks over mutual TLS.
//! - `CentralBankService` ([`v1::central_bank_service_server`],
//!   [`v1::central_bank_service_client`]): the issuer, over mutual TLS.
//! - `ClusterService` ([`v1::cluster_service_server`],
//!   [`v1::cluster_service_client`]): the replicas of a replicated ledger and
//!   changes to their membership, for the central bank's certificate.
//!
//! - `ruble.raft.v1.RaftService` ([`raft`]): replication between the
//!   replicas of one ledger, on the nodes' replication port only.
//!
//! The bytes inside `SignedOperation.body` are specified in `docs/signing.md`.

pub use prost;
pub use tonic;

/// Generated messages and services of package `ruble.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ruble.v1");
}

/// Node-to-node replication (`ruble.raft.v1.RaftService`): not a client API.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod raft {
    tonic::include_proto!("ruble.raft.v1");
}

/// Encoded `FileDescriptorSet` of `ruble.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ruble_v1_descriptor");
