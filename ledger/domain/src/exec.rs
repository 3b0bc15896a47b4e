//! Executing one block: the single "begin the block, apply each verified
//! operation, seal" loop behind the synchronous engine, the start-up replay
//! (`Store::load`) and the auditor.
//!
//! Two entry points share that loop:
//! - [`execute_block`] makes a new block: an operation that is refused is left
//!   out of it, and its [`Refusal`] is handed back for the caller to answer.
//! - [`replay_block`] re-executes a stored block and holds it to the rule for
//!   stored blocks (see there): every operation must apply again, and the
//!   block must come out with the stored header and hash.
//!
//! Both are pure, like the state machine: no IO, no clock. The caller picks
//! the timestamp of a new block (the node: `max(now, previous)`); a replayed
//! block's is its stored header's.

use std::fmt;
use std::ops::ControlFlow;

use crate::block::BlockHeader;
use crate::codec::SignedOp;
use crate::crypto::Verified;
use crate::reason::Reason;
use crate::state::{Applied, SealedBlock, State};
use crate::types::{Hash32, TxId};

/// One operation handed to a block, as the verifier returns it
/// (`crypto::verify_ops_parallel`): verified, or refused with its reason.
pub type VerifiedOp = Result<Verified<SignedOp>, (SignedOp, Reason)>;

/// An operation left out of a block, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub tx_id: TxId,
    /// `BadSignature` when the verifier refused it (the state machine never
    /// returns that reason), otherwise what [`State::apply`] returned.
    pub reason: Reason,
}

/// What happened to one operation: its place in the block, or its refusal.
pub type OpOutcome = Result<Applied, Refusal>;

/// A new block and the outcome of each operation, in input order.
#[derive(Debug)]
pub struct Executed {
    pub block: SealedBlock,
    pub outcomes: Vec<OpOutcome>,
}

/// The one loop. `each` sees every outcome in order and may stop the block
/// (the operations not reached are dropped, not applied). The block is always
/// sealed, so the state is never left with a block open.
#[inline]
fn run<I, F>(state: &mut State, timestamp_ms: u64, ops: I, mut each: F) -> SealedBlock
where
    I: IntoIterator<Item = VerifiedOp>,
    F: FnMut(OpOutcome) -> ControlFlow<()>,
{
    state.begin_block(timestamp_ms);
    for v in ops {
        let outcome = match v {
            Ok(op) => {
                let tx_id = op.tx_id;
                state.apply(op).map_err(|reason| Refusal { tx_id, reason })
            }
            Err((op, reason)) => Err(Refusal {
                tx_id: op.tx_id,
                reason,
            }),
        };
        if each(outcome).is_break() {
            break;
        }
    }
    state.seal_block()
}

/// Makes a new block at `timestamp_ms` from `ops`: applies each one (a
/// refused one is left out and changes nothing) and seals the block, empty
/// if nothing applied. One outcome per input operation, in order.
///
/// Panics if `timestamp_ms` is before the state's last block (see
/// [`State::begin_block`]); the node passes `max(now, previous)`.
pub fn execute_block<I>(state: &mut State, timestamp_ms: u64, ops: I) -> Executed
where
    I: IntoIterator<Item = VerifiedOp>,
{
    let ops = ops.into_iter();
    let mut outcomes = Vec::with_capacity(ops.size_hint().0);
    let block = run(state, timestamp_ms, ops, |o| {
        outcomes.push(o);
        ControlFlow::Continue(())
    });
    Executed { block, outcomes }
}

/// Why a stored block does not replay.
#[derive(Debug)]
pub enum ReplayError {
    /// The block is timed before the state's last block. Nothing was applied
    /// and no block was opened.
    TimestampBackwards { stored: u64, state: u64 },
    /// Operation `index` of the block was refused (a bad signature, or the
    /// state machine's reason: `EXPIRED`, `DUPLICATE`, …). The state holds the
    /// block's operations before it, sealed: a state that matches no stored
    /// block, to be reported, never served.
    Refused { index: u32, refusal: Refusal },
    /// Every operation applied, but the replayed header or hash differs from
    /// the stored one. The state holds the replayed block.
    Differs {
        stored: BlockHeader,
        stored_hash: Hash32,
        sealed: Box<SealedBlock>,
    },
}

impl ReplayError {
    /// The header fields that differ between the stored and replayed block,
    /// for a [`ReplayError::Differs`] (empty for the other variants).
    pub fn differing_fields(&self) -> Vec<&'static str> {
        let ReplayError::Differs {
            stored,
            stored_hash,
            sealed,
        } = self
        else {
            return Vec::new();
        };
        let s = &sealed.header;
        [
            ("height", s.height != stored.height),
            ("prev_hash", s.prev_hash != stored.prev_hash),
            ("ops_root", s.ops_root != stored.ops_root),
            ("state_hash", s.state_hash != stored.state_hash),
            ("timestamp_ms", s.timestamp_ms != stored.timestamp_ms),
            ("op_count", s.op_count != stored.op_count),
            ("hash", sealed.hash != *stored_hash),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::TimestampBackwards { stored, state } => {
                write!(f, "its timestamp {stored} is before the previous block's {state}")
            }
            ReplayError::Refused { index, refusal } => write!(
                f,
                "operation {index} ({}) refused: {}",
                refusal.tx_id,
                refusal.reason.code()
            ),
            ReplayError::Differs { .. } => write!(
                f,
                "the replayed block differs from the stored one ({})",
                self.differing_fields().join(", ")
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Re-executes a stored block (`stored` header, `stored_hash`, its operations
/// as verified again) on the state before it, and returns the sealed block.
///
/// **The rule: a stored block replays whole, or it is not this chain's
/// block.** A block only ever holds operations that applied, on exactly this
/// state at exactly its timestamp, and apply is a function of the two. So an
/// operation that is refused on replay, whatever the reason, including an
/// `EXPIRED` or `DUPLICATE` that looks like a harmless client retry, means
/// the block is corrupt, tampered with or foreign. Skipping that operation
/// would make a state that no other replica computes. It would also silently
/// drop the effects of an operation that was acknowledged, while the header
/// still counts it. So the replay stops at the first refusal, with
/// [`ReplayError::Refused`], and the caller does not go on from there: start-up
/// refuses to serve (the blocks stay on disk for an operator) and the auditor
/// reports the block. In the same way a block whose replayed header or hash
/// differs from the stored one is refused ([`ReplayError::Differs`]). The
/// whole header is compared, not the hash alone, because the stored header is
/// what readers are served.
///
/// Costs nothing per operation beyond [`State::apply`]: no outcome list, no
/// clone.
pub fn replay_block<I>(
    state: &mut State,
    stored: &BlockHeader,
    stored_hash: &Hash32,
    ops: I,
) -> Result<SealedBlock, ReplayError>
where
    I: IntoIterator<Item = VerifiedOp>,
{
    if stored.timestamp_ms < state.timestamp_ms() {
        // `begin_block` would panic: a stored block must not crash the node.
        return Err(ReplayError::TimestampBackwards {
            stored: stored.timestamp_ms,
            state: state.timestamp_ms(),
        });
    }
    let mut index = 0u32;
    let mut refused = None;
    let sealed = run(state, stored.timestamp_ms, ops, |o| match o {
        Ok(_) => {
            index += 1;
            ControlFlow::Continue(())
        }
        Err(refusal) => {
            refused = Some(refusal);
            ControlFlow::Break(())
        }
    });
    if let Some(refusal) = refused {
        return Err(ReplayError::Refused { index, refusal });
    }
    if sealed.header != *stored || sealed.hash != *stored_hash {
        return Err(ReplayError::Differs {
            stored: stored.clone(),
            stored_hash: *stored_hash,
            sealed: Box::new(sealed),
        });
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Op, OpBody};
    use crate::crypto::{verify_op, KeyCache};
    use crate::state::{Genesis, GenesisBank};
    use crate::types::{AccountId, Limits, Phase};
    use ed25519_dalek::SigningKey;

    const T0: u64 = 1_800_000_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }
    fn id(k: &SigningKey) -> AccountId {
        AccountId(k.verifying_key().to_bytes())
    }

    struct World {
        cb: SigningKey,
        bank: SigningKey,
        cache: KeyCache,
        nonce: u64,
    }

    impl World {
        fn new() -> World {
            World {
                cb: key(1),
                bank: key(2),
                cache: KeyCache::default(),
                nonce: 0,
            }
        }
        fn genesis(&self) -> State {
            let g = Genesis {
                chain_id: "exec-test".into(),
                central_bank: id(&self.cb),
                timestamp_ms: T0,
                max_validity_ms: 60_000,
                phase: Phase::Business,
                reporting_threshold: 0,
                settlement_limits: Limits::UNLIMITED,
                business_limits: Limits::UNLIMITED,
                retail_limits: Limits::UNLIMITED,
                banks: vec![GenesisBank {
                    id: id(&self.bank),
                    name: "Bank".into(),
                }],
            };
            State::genesis(&g).unwrap().0
        }
        fn issue(&mut self, amount: u64, valid_until_ms: u64) -> VerifiedOp {
            self.nonce += 1;
            let op = SignedOp::sign(
                OpBody {
                    chain_id: "exec-test".into(),
                    signer: id(&self.cb),
                    nonce: self.nonce,
                    valid_until_ms,
                    op: Op::Issue {
                        bank: id(&self.bank),
                        amount,
                    },
                },
                &self.cb,
            );
            verify_op(op, &self.cache)
        }
    }

    fn same(v: &VerifiedOp) -> VerifiedOp {
        match v {
            Ok(op) => verify_op((**op).clone(), &KeyCache::default()),
            Err(e) => Err(e.clone()),
        }
    }

    #[test]
    fn a_new_block_leaves_refused_operations_out_and_replays_to_the_same_block() {
        let mut w = World::new();
        let mut state = w.genesis();
        let before = state.clone();
        let a = w.issue(100, T0 + 30_000);
        let expired = w.issue(5, T0);
        let mut forged = w.issue(7, T0 + 30_000);
        if let Ok(op) = &forged {
            let mut op = (**op).clone();
            op.signature[0] ^= 1;
            forged = verify_op(op, &w.cache);
        }
        let ops = vec![same(&a), same(&a), expired, forged, w.issue(1, T0 + 30_000)];
        let Executed { block, outcomes } = execute_block(&mut state, T0 + 10, ops);
        let reasons: Vec<_> = outcomes
            .iter()
            .map(|o| o.map(|a| a.index).map_err(|r| r.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                Ok(0),
                Err(Reason::Duplicate),
                Err(Reason::Expired),
                Err(Reason::BadSignature),
                Ok(1)
            ]
        );
        assert_eq!(block.ops.len(), 2);
        assert!(!state.block_open());
        state.check_invariants().unwrap();

        // The stored form of the block replays on the state before it.
        let mut replay = before.clone();
        let stored: Vec<VerifiedOp> = block.ops.iter().map(|a| verify_op(a.op.clone(), &w.cache)).collect();
        let sealed = replay_block(&mut replay, &block.header, &block.hash, stored).unwrap();
        assert_eq!((sealed.hash, replay.state_hash()), (block.hash, state.state_hash()));
    }

    #[test]
    fn a_stored_block_with_an_operation_that_no_longer_applies_is_refused_and_the_state_is_left_sealed() {
        let mut w = World::new();
        let mut state = w.genesis();
        let first = w.issue(100, T0 + 30_000);
        let b1 = execute_block(&mut state, T0 + 1, vec![same(&first)]).block;
        let after_b1 = state.clone();
        let b2 = execute_block(
            &mut state,
            T0 + 2,
            vec![w.issue(1, T0 + 30_000), w.issue(2, T0 + 30_000)],
        )
        .block;

        // Block 2 as stored, but its second operation swapped for a copy of
        // block 1's (a duplicate), then for an expired one.
        for (swapped, reason) in [(same(&first), Reason::Duplicate), (w.issue(3, T0 + 1), Reason::Expired)] {
            let mut replay = after_b1.clone();
            let ops = vec![
                verify_op(b2.ops[0].op.clone(), &w.cache),
                swapped,
                w.issue(9, T0 + 30_000),
            ];
            match replay_block(&mut replay, &b2.header, &b2.hash, ops) {
                Err(ReplayError::Refused { index: 1, refusal }) => assert_eq!(refusal.reason, reason),
                other => panic!("{other:?}"),
            }
            // Closed, with the one operation before the refusal: never open.
            assert!(!replay.block_open());
            assert_eq!(replay.height(), 2);
            assert_eq!(replay.totals().issued, 101);
            replay.check_invariants().unwrap();
        }

        // Timed before the state: refused before anything is opened.
        let mut replay = state.clone();
        let err = replay_block(&mut replay, &b1.header, &b1.hash, Vec::new()).unwrap_err();
        assert!(matches!(err, ReplayError::TimestampBackwards { .. }), "{err}");
        assert_eq!(
            (replay.height(), replay.state_hash()),
            (state.height(), state.state_hash())
        );

        // A stored header that differs from the replayed one, even with the
        // replayed hash, is refused.
        let mut header = b2.header.clone();
        header.state_hash[0] ^= 1;
        let mut replay = after_b1.clone();
        let ops: Vec<VerifiedOp> = b2.ops.iter().map(|a| verify_op(a.op.clone(), &w.cache)).collect();
        let err = replay_block(&mut replay, &header, &b2.hash, ops).unwrap_err();
        assert_eq!(err.differing_fields(), vec!["state_hash"], "{err}");
        assert!(err.to_string().contains("state_hash"), "{err}");
    }
}
