//! The Raft storage layer (`ruble_ledger::raft`): openraft's storage test
//! suite against the RocksDB log and the ledger state machine, and the
//! ledger's own properties (replicas agree, restarts recover, a bad block is
//! skipped alike everywhere, snapshots carry the state).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::*;
use ed25519_dalek::SigningKey;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder, Vote};
use ruble_ledger::codec::Op;
use ruble_ledger::crypto::{verify_ops_parallel, KeyCache};
use ruble_ledger::exec::execute_block;
use ruble_ledger::raft::{
    BlockEntry, BlockOutcome, Entry, LedgerStateMachine, LogStore, ReplicaNode, StorageError, TypeConfig,
};
use ruble_ledger::state::{Genesis, State};
use ruble_ledger::store::{Store, StoreOptions};
use tempfile::TempDir;

fn store_options() -> StoreOptions {
    StoreOptions {
        // Tempdirs may be on tmpfs.
        direct_io: false,
        block_cache_bytes: 8 << 20,
        ..StoreOptions::default()
    }
}

/// A replica's storage in a tempdir: `<dir>/raft` (the log), `<dir>/ledger`
/// (the store), `<dir>/snapshots`.
struct Replica {
    dir: TempDir,
    log: LogStore,
    sm: LedgerStateMachine,
}

fn open_replica(dir: TempDir, genesis: &Genesis) -> Replica {
    let store = Arc::new(Store::open_with(&dir.path().join("ledger"), &store_options()).unwrap());
    if !store.is_initialised().unwrap() {
        store.init(genesis).unwrap();
    }
    let sm = LedgerStateMachine::open(store, &dir.path().join("snapshots")).unwrap();
    let log = LogStore::open(&dir.path().join("raft")).unwrap();
    Replica { dir, log, sm }
}

fn fresh_replica(genesis: &Genesis) -> Replica {
    open_replica(tempfile::tempdir().unwrap(), genesis)
}

/// Drops the replica's databases and opens them again from disk.
fn restart(r: Replica, genesis: &Genesis) -> Replica {
    let Replica { dir, log, sm } = r;
    drop(log);
    drop(sm);
    open_replica(dir, genesis)
}

struct Builder {
    genesis: Genesis,
}

impl StoreBuilder<TypeConfig, LogStore, LedgerStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, LedgerStateMachine), StorageError> {
        let r = fresh_replica(&self.genesis);
        Ok((r.dir, r.log, r.sm))
    }
}

#[test]
fn openraft_storage_suite() {
    let genesis = World::new().genesis();
    Suite::test_all(Builder { genesis }).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn membership() -> Membership<u64, ReplicaNode> {
    let nodes: BTreeMap<u64, ReplicaNode> = (1..=3)
        .map(|i| {
            (
                i,
                ReplicaNode::new(
                    format!("127.0.0.1:{}", 7000 + i),
                    format!("https://127.0.0.1:{}", 6000 + i),
                ),
            )
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

/// The leader's side: executes `ops` on its own state, as the node will,
/// and proposes the sealed block.
fn propose(leader: &mut State, timestamp_ms: u64, ops: Vec<ruble_ledger::SignedOp>) -> BlockEntry {
    let verified = verify_ops_parallel(ops, &KeyCache::default(), 256);
    let executed = execute_block(leader, timestamp_ms, verified);
    assert!(
        executed.outcomes.iter().all(|o| o.is_ok()),
        "the test's operations apply"
    );
    BlockEntry::from_sealed(&executed.block)
}

/// Genesis, a leader's state, and two proposed blocks: funding payers, then
/// payments among them.
fn two_blocks() -> (Genesis, State, BlockEntry, BlockEntry) {
    let mut w = World::new();
    let genesis = w.genesis();
    let (mut leader, _) = State::genesis(&genesis).unwrap();
    let payers: Vec<SigningKey> = (100..104).map(key).collect();
    let b1 = propose(&mut leader, T0 + 1_000, w.fund_payers(&payers));
    let pays = (0..payers.len())
        .map(|i| {
            let to = &payers[(i + 1) % payers.len()];
            w.sign(
                &payers[i],
                Op::Transfer {
                    payee: id(to),
                    amount: 1_00 + i as u64,
                    purpose: String::new(),
                },
            )
        })
        .collect();
    let b2 = propose(&mut leader, T0 + 2_000, pays);
    (genesis, leader, b1, b2)
}

async fn state_hash(r: &Replica) -> ([u8; 32], u64) {
    r.sm.with_state_ref(|s| (s.state_hash(), s.height()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_applied_on_two_fresh_replicas_gives_the_same_state() {
    let (genesis, leader, b1, b2) = two_blocks();
    let entries = vec![
        entry(1, 1, EntryPayload::Blank),
        entry(1, 2, EntryPayload::Membership(membership())),
        entry(1, 3, EntryPayload::Normal(b1.clone())),
        entry(1, 4, EntryPayload::Normal(b2.clone())),
    ];
    let mut replicas = [fresh_replica(&genesis), fresh_replica(&genesis)];
    for r in &mut replicas {
        r.log.blocking_append(entries.clone()).await.unwrap();
        let replies = r.sm.apply(entries.clone()).await.unwrap();
        let outcomes: Vec<_> = replies.iter().map(|x| x.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                BlockOutcome::NoBlock,
                BlockOutcome::NoBlock,
                BlockOutcome::Committed,
                BlockOutcome::Committed
            ]
        );
        assert_eq!((replies[3].height, replies[3].block_hash), (2, b2.block_hash));
        assert_eq!(r.sm.store().head_height().unwrap(), 2);
        assert_eq!(r.sm.store().header(2).unwrap().unwrap().1, b2.block_hash);
        let (applied, m) = r.sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 4)));
        assert_eq!(m.log_id(), &Some(log_id(1, 2)));
    }
    let (a, b) = (state_hash(&replicas[0]).await, state_hash(&replicas[1]).await);
    assert_eq!(a, b);
    assert_eq!(a, (leader.state_hash(), 2));
    // What the store loads is that state too.
    assert_eq!(replicas[0].sm.store().load().unwrap().state_hash(), leader.state_hash());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_recovers_the_vote_the_log_and_the_applied_position() {
    let (genesis, leader, b1, b2) = two_blocks();
    let entries = vec![
        entry(1, 1, EntryPayload::Membership(membership())),
        entry(1, 2, EntryPayload::Normal(b1)),
        entry(2, 3, EntryPayload::Blank),
        entry(2, 4, EntryPayload::Normal(b2)),
    ];
    let mut r = fresh_replica(&genesis);
    let vote = Vote::new_committed(2, 1);
    r.log.save_vote(&vote).await.unwrap();
    r.log.blocking_append(entries.clone()).await.unwrap();
    r.log.save_committed(Some(log_id(2, 4))).await.unwrap();
    // Applied up to the block at index 2 only: 3 and 4 are in the log.
    r.sm.apply(entries[..2].to_vec()).await.unwrap();
    r.log.purge(log_id(1, 1)).await.unwrap();

    let mut r = restart(r, &genesis);
    assert_eq!(r.log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(r.log.read_committed().await.unwrap(), Some(log_id(2, 4)));
    let st = r.log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 1)));
    assert_eq!(st.last_log_id, Some(log_id(2, 4)));
    let got = r.log.try_get_log_entries(2..5).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.log_id).collect::<Vec<_>>(),
        entries[1..].iter().map(|e| e.log_id).collect::<Vec<_>>()
    );
    assert!(matches!(&got[2].payload, EntryPayload::Normal(b) if b.height == 2));
    let (applied, m) = r.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 2)));
    assert_eq!(m.log_id(), &Some(log_id(1, 1)));
    assert_eq!(r.sm.head().0, 1);

    // openraft re-applies the committed rest after the restart.
    let replies = r.sm.apply(got[1..].to_vec()).await.unwrap();
    assert_eq!(replies[1].outcome, BlockOutcome::Committed);
    let mut r = restart(r, &genesis);
    assert_eq!(r.sm.applied_state().await.unwrap().0, Some(log_id(2, 4)));
    assert_eq!(state_hash(&r).await, (leader.state_hash(), 2));

    // A truncation survives a restart too.
    r.log.truncate(log_id(2, 3)).await.unwrap();
    let mut r = restart(r, &genesis);
    assert_eq!(r.log.get_log_state().await.unwrap().last_log_id, Some(log_id(1, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_does_not_chain_or_seal_is_skipped_alike_on_every_replica() {
    let (genesis, leader, b1, b2) = two_blocks();
    let mut wrong_hash = b1.clone();
    wrong_hash.block_hash[0] ^= 1;
    let mut late = b1.clone();
    late.timestamp_ms += 1;
    let entries = vec![
        // Height 2 on a head at 0.
        entry(1, 1, EntryPayload::Normal(b2.clone())),
        // Executes, but to another hash (the state must be rolled back).
        entry(1, 2, EntryPayload::Normal(wrong_hash)),
        // Another timestamp: another block.
        entry(1, 3, EntryPayload::Normal(late)),
        entry(1, 4, EntryPayload::Normal(b1.clone())),
        // Again: no longer chains.
        entry(1, 5, EntryPayload::Normal(b1.clone())),
        entry(1, 6, EntryPayload::Normal(b2.clone())),
    ];
    let mut hashes = Vec::new();
    let mut all_outcomes = Vec::new();
    for _ in 0..2 {
        let mut r = fresh_replica(&genesis);
        let replies = r.sm.apply(entries.clone()).await.unwrap();
        let outcomes: Vec<_> = replies.iter().map(|x| x.outcome.clone()).collect();
        let committed: Vec<bool> = outcomes.iter().map(|o| *o == BlockOutcome::Committed).collect();
        assert_eq!(committed, [false, false, false, true, false, true], "{outcomes:?}");
        assert_eq!(r.sm.applied_state().await.unwrap().0, Some(log_id(1, 6)));
        hashes.push(state_hash(&r).await);
        all_outcomes.push(outcomes);
        // The skips are durable as positions, not as blocks.
        let r = restart(r, &genesis);
        assert_eq!(r.sm.last_applied(), Some(log_id(1, 6)));
        assert_eq!(r.sm.store().head_height().unwrap(), 2);
    }
    assert_eq!(all_outcomes[0], all_outcomes[1]);
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(hashes[0], (leader.state_hash(), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_carries_the_ledger_to_a_fresh_replica() {
    let (genesis, leader, b1, b2) = two_blocks();
    let mut a = fresh_replica(&genesis);
    a.sm.apply(vec![
        entry(1, 1, EntryPayload::Membership(membership())),
        entry(1, 2, EntryPayload::Normal(b1)),
    ])
    .await
    .unwrap();
    let snap = a.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 2)));

    let mut b = fresh_replica(&genesis);
    let mut recv = b.sm.begin_receiving_snapshot().await.unwrap();
    let mut src = a.sm.get_current_snapshot().await.unwrap().unwrap();
    tokio::io::copy(&mut src.snapshot, &mut *recv).await.unwrap();
    b.sm.install_snapshot(&src.meta, recv).await.unwrap();
    assert_eq!(b.sm.applied_state().await.unwrap().0, Some(log_id(1, 2)));
    assert_eq!(state_hash(&b).await, state_hash(&a).await);
    assert_eq!(b.sm.get_current_snapshot().await.unwrap().unwrap().meta, snap.meta);

    // Both go on from there alike, and B's installed store survives a restart.
    for r in [&mut a, &mut b] {
        let replies =
            r.sm.apply(vec![entry(1, 3, EntryPayload::Normal(b2.clone()))])
                .await
                .unwrap();
        assert_eq!(replies[0].outcome, BlockOutcome::Committed);
    }
    let b = restart(b, &genesis);
    assert_eq!(state_hash(&b).await, (leader.state_hash(), 2));
    assert_eq!(state_hash(&a).await, (leader.state_hash(), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_chain_is_refused() {
    let (genesis, _, b1, _) = two_blocks();
    let mut a = fresh_replica(&genesis);
    a.sm.apply(vec![entry(1, 1, EntryPayload::Normal(b1))]).await.unwrap();
    a.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut other = genesis.clone();
    other.timestamp_ms += 1;
    let mut b = fresh_replica(&other);
    let before = state_hash(&b).await;
    let mut recv = b.sm.begin_receiving_snapshot().await.unwrap();
    let mut src = a.sm.get_current_snapshot().await.unwrap().unwrap();
    tokio::io::copy(&mut src.snapshot, &mut *recv).await.unwrap();
    assert!(b.sm.install_snapshot(&src.meta, recv).await.is_err());
    // Nothing changed: same state, same store, no current snapshot.
    assert_eq!(state_hash(&b).await, before);
    assert_eq!(b.sm.store().load().unwrap().state_hash(), before.0);
    assert!(b.sm.get_current_snapshot().await.unwrap().is_none());
}
