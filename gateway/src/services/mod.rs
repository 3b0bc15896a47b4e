//! The three gRPC services and what they share.

pub mod bank;
pub mod central_bank;
pub mod stream;
pub mod wallet;
