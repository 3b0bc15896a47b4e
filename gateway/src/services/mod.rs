//! The gRPC services (the three of the participants, and the cluster's)
//! and what they share.

pub mod bank;
pub mod central_bank;
pub mod cluster;
pub mod stream;
pub mod wallet;
