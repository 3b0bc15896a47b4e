//! The replicated log's types: openraft's type configuration, the entry
//! payload (one block per entry) and the state machine's answer.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::SignedOp;
use crate::reason::Reason;
use crate::state::SealedBlock;
use crate::types::Hash32;

openraft::declare_raft_types!(
    /// The ledger's openraft configuration: node ids are `u64`, a node is
    /// its replication address and its client endpoint ([`ReplicaNode`]),
    /// an entry's application payload is one block ([`BlockEntry`]), and a
    /// snapshot is a file (a packed RocksDB checkpoint of the store, see
    /// `raft::snapshot`).
    pub TypeConfig:
        D = BlockEntry,
        R = BlockResponse,
        NodeId = u64,
        Node = ReplicaNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Node id of a replica.
pub type NodeId = u64;
/// A replica's addresses as the cluster knows them.
pub type Node = ReplicaNode;
/// A log entry of the ledger's Raft.
pub type Entry = openraft::Entry<TypeConfig>;
/// openraft's storage error, for our node id.
pub type StorageError = openraft::StorageError<NodeId>;
/// The `Raft` handle the node runs.
pub type LedgerRaft = openraft::Raft<TypeConfig>;

/// A member of the cluster as the membership (and so every replica's log
/// and state machine) records it: where its replication service listens and
/// where clients reach it. The client endpoint travels with the membership
/// so that a replica names the leader's endpoint in `NOT_LEADER` even for a
/// replica added after it started (its configuration does not list it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaNode {
    /// The replication service, `host:port`.
    pub raft_addr: String,
    /// The client services, `https://host:port`.
    pub client_endpoint: String,
}

impl ReplicaNode {
    pub fn new(raft_addr: impl Into<String>, client_endpoint: impl Into<String>) -> ReplicaNode {
        ReplicaNode {
            raft_addr: raft_addr.into(),
            client_endpoint: client_endpoint.into(),
        }
    }
}

impl fmt::Display for ReplicaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (clients at {})", self.raft_addr, self.client_endpoint)
    }
}

/// One block, as the leader proposes it: the timestamp it was executed at,
/// its height, the hash the leader's execution sealed it with, and its
/// signed operations in order.
///
/// The operations travel in the store's encoding (`SignedOp::to_stored`:
/// `u16 body_len ‖ body ‖ signature`, concatenated), the same bytes the
/// signature covers: a replica decodes them exactly as it decodes a stored
/// block. A replica never trusts the leader's execution: it verifies every
/// signature, executes the block itself and commits it only if it seals with
/// `block_hash` (see `raft::state_machine`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    pub timestamp_ms: u64,
    pub height: u64,
    pub block_hash: Hash32,
    ops: Vec<u8>,
    op_count: u32,
}

impl BlockEntry {
    pub fn new(timestamp_ms: u64, height: u64, block_hash: Hash32, ops: &[SignedOp]) -> BlockEntry {
        let mut bytes = Vec::with_capacity(ops.iter().map(|o| o.body_bytes.len() + 66).sum());
        for op in ops {
            op.write_stored(&mut bytes);
        }
        BlockEntry {
            timestamp_ms,
            height,
            block_hash,
            ops: bytes,
            op_count: ops.len() as u32,
        }
    }

    /// The entry for a block the leader sealed.
    pub fn from_sealed(block: &SealedBlock) -> BlockEntry {
        let ops: Vec<SignedOp> = block.ops.iter().map(|a| a.op.clone()).collect();
        BlockEntry::new(block.header.timestamp_ms, block.header.height, block.hash, &ops)
    }

    /// Number of operations, as the proposer counted them.
    pub fn op_count(&self) -> u32 {
        self.op_count
    }

    /// The operations, decoded. `Err` if the bytes do not decode as exactly
    /// `op_count` stored operations (a malformed entry, skipped by every
    /// replica alike).
    pub fn ops(&self) -> Result<Vec<SignedOp>, Reason> {
        let mut out = Vec::with_capacity(self.op_count as usize);
        let mut rest = &self.ops[..];
        while !rest.is_empty() {
            let (op, r) = SignedOp::from_stored(rest)?;
            out.push(op);
            rest = r;
        }
        if out.len() != self.op_count as usize {
            return Err(Reason::Malformed);
        }
        Ok(out)
    }
}

impl fmt::Debug for BlockEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockEntry")
            .field("height", &self.height)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("block_hash", &hex::encode(self.block_hash))
            .field("ops", &self.op_count)
            .field("bytes", &self.ops.len())
            .finish()
    }
}

impl fmt::Display for BlockEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {} ({} ops)", self.height, self.op_count)
    }
}

/// What applying one entry did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockOutcome {
    /// The block executed to its expected hash and is committed.
    Committed,
    /// The block was not committed (every replica skips it alike): it does
    /// not chain on the head, an operation was refused, or it sealed with
    /// another hash. The state is unchanged.
    Skipped { reason: String },
    /// A blank or membership entry: no block.
    NoBlock,
}

/// The state machine's answer to an entry: the head after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResponse {
    pub height: u64,
    pub block_hash: Hash32,
    pub outcome: BlockOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Op, OpBody};

    fn op(nonce: u64) -> SignedOp {
        let k = ed25519_dalek::SigningKey::from_bytes(&[nonce as u8 + 1; 32]);
        SignedOp::sign(
            OpBody {
                chain_id: "ruble-test".into(),
                signer: crate::types::AccountId(k.verifying_key().to_bytes()),
                nonce,
                valid_until_ms: 1_000,
                op: Op::CloseAccount {
                    account: crate::types::AccountId([9; 32]),
                },
            },
            &k,
        )
    }

    #[test]
    fn a_block_entry_round_trips_through_the_wire_encoding() {
        let ops = vec![op(1), op(2), op(3)];
        let e = BlockEntry::new(5, 7, [3; 32], &ops);
        let wire = bincode::serialize(&e).unwrap();
        let back: BlockEntry = bincode::deserialize(&wire).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.ops().unwrap(), ops);
        assert_eq!(BlockEntry::new(5, 8, [3; 32], &[]).ops().unwrap(), vec![]);
    }

    #[test]
    fn a_malformed_block_entry_does_not_decode() {
        let mut e = BlockEntry::new(5, 7, [3; 32], &[op(1), op(2)]);
        e.op_count = 3;
        assert!(e.ops().is_err());
        let mut e = BlockEntry::new(5, 7, [3; 32], &[op(1)]);
        e.ops.pop();
        assert!(e.ops().is_err());
    }
}
