//! The auditor: rebuild the whole chain from genesis in a fresh state and
//! compare it with the store.
//!
//! It re-verifies every signature (same rule as the hot path), re-applies every
//! operation (each must succeed: a block never holds a rejected operation),
//! re-derives every header (ops root, state hash, link to the previous block),
//! checks the transaction index, then loads the store as a node would (its
//! checkpoint plus the blocks after it), compares every replayed account with
//! the stored one and checks the supply invariant. This is what
//! `ruble-node audit` runs.

use crate::state::Effect;
use serde::Serialize;

use crate::block::BlockHeader;
use crate::crypto::{verify_ops_parallel, KeyCache};
use crate::exec::{replay_block, ReplayError, VerifiedOp};
use crate::reason::Reason;
use crate::state::State;
use crate::store::{Store, StoreError};
use crate::types::{cursor_of, Hash32, TxId};

/// What the audit found; `ok` is true only when nothing is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub ok: bool,
    pub chain_id: String,
    pub height: u64,
    pub blocks: u64,
    pub operations: u64,
    pub accounts: usize,
    pub issued: u64,
    pub redeemed: u64,
    pub in_circulation: u64,
    pub sum_balances: u128,
    pub state_hash: String,
    pub head_hash: String,
    pub expected_committed: usize,
    /// Payments held (anti-fraud or signatories) at the head, and their sum in kopecks.
    pub held_payments: usize,
    pub held_amount: u128,
    /// Purpose-bound money at the head (part of `in_circulation`).
    pub tagged: u128,
    /// Control records replayed and found as stored.
    pub control_records: usize,
    /// Hashes that were expected committed but are not in the chain, in id order.
    pub missing: Vec<String>,
    /// Every discrepancy, in the order found (replay stops at the first broken block).
    pub errors: Vec<String>,
}

const MAX_REPORTED_ERRORS: usize = 100;

/// Operations whose signatures a window verifies at once: enough for every
/// core, in batches of 256, while the replay applies the previous window.
const WINDOW_OPS: usize = 16_384;
/// Most blocks in a window (a window of small blocks).
const WINDOW_BLOCKS: usize = 1_024;

/// Blocks read ahead of the replay, their signatures verified.
struct Window {
    blocks: Vec<ReadBlock>,
    /// The first height in range whose header is missing (the replay stops there).
    missing: Option<u64>,
}

struct ReadBlock {
    height: u64,
    header: BlockHeader,
    hash: Hash32,
    /// Each operation's verdict, stored cursor and large-payment flag, and
    /// where the transaction index says it sits.
    verdicts: Vec<VerifiedOp>,
    flags: Vec<(u64, bool, Effect)>,
    indexed: Vec<Option<u64>>,
}

/// Reads blocks from `from` (at most to `head`) until the window holds
/// [`WINDOW_OPS`] operations or [`WINDOW_BLOCKS`] blocks, looks their ids up
/// in the index in one sorted batch, and verifies all their signatures.
fn read_window(store: &Store, cache: &KeyCache, from: u64, head: u64) -> Result<Window, StoreError> {
    let mut blocks = Vec::new();
    let mut ops = Vec::new();
    let mut missing = None;
    let mut height = from;
    while height <= head && ops.len() < WINDOW_OPS && blocks.len() < WINDOW_BLOCKS {
        let Some((header, hash)) = store.header(height)? else {
            missing = Some(height);
            break;
        };
        let stored = store.block_ops(height)?;
        let flags: Vec<(u64, bool, Effect)> = stored.iter().map(|s| (s.cursor, s.large, s.effect)).collect();
        ops.extend(stored.into_iter().map(|s| s.op));
        blocks.push((height, header, hash, flags));
        height += 1;
    }
    // The index lookups (one thread, reading table blocks) beside the
    // verification (the other cores): one after the other, the lookups of a
    // 55M-operation chain left a core idle for half the replay.
    let ids: Vec<TxId> = ops.iter().map(|op| op.tx_id).collect();
    let (indexed, verdicts) = rayon::join(|| store.tx_cursors(&ids), || verify_ops_parallel(ops, cache, 256));
    let (mut indexed, mut verdicts) = (indexed?.into_iter(), verdicts.into_iter());
    let blocks = blocks
        .into_iter()
        .map(|(height, header, hash, flags)| ReadBlock {
            height,
            header,
            hash,
            verdicts: verdicts.by_ref().take(flags.len()).collect(),
            indexed: indexed.by_ref().take(flags.len()).collect(),
            flags,
        })
        .collect();
    Ok(Window { blocks, missing })
}

/// Replays and checks the chain in `store`. `expect_committed` lists
/// operations that were acknowledged to someone and must be in the chain.
pub fn audit(store: &Store, expect_committed: &[TxId]) -> Result<AuditReport, StoreError> {
    let genesis = store.genesis()?;
    let (mut state, g_header) = State::genesis(&genesis).map_err(StoreError::Genesis)?;
    let mut errors = Vec::new();
    match store.header(0)? {
        Some((h, hash)) if h == g_header && hash == g_header.hash() => {}
        _ => errors.push("block 0 does not match the genesis configuration".to_string()),
    }
    let head = store.head_height()?;
    // The node's own start-up path first: the checkpoint, then every later
    // block replayed onto it. Besides being checked, this brings what the
    // store writes behind (the tx index, account values and history of the
    // blocks after the checkpoint) into view for the checks below.
    let checkpoint = store.checkpoint_height()?;
    let loaded = match store.load() {
        Ok(_) => true,
        Err(e) => {
            errors.push(format!("start-up check: {e}"));
            false
        }
    };
    let cache = KeyCache::default();
    let mut operations = 0u64;
    let mut blocks = 0u64;
    // Blocks are read and their signatures verified a window ahead, on
    // another thread (and all cores), while this one applies the previous
    // window: block by block, a soak's 53M operations in blocks of ~512
    // took 35 minutes, one core busy and the other mostly idle.
    std::thread::scope(|scope| -> Result<(), StoreError> {
        let mut window = (head >= 1).then(|| read_window(store, &cache, 1, head)).transpose()?;
        'replay: while let Some(w) = window.take() {
            let after = w.blocks.last().map_or(head + 1, |b| b.height + 1);
            let ahead = (w.missing.is_none() && after <= head).then(|| {
                let cache = &cache;
                scope.spawn(move || read_window(store, cache, after, head))
            });
            for b in w.blocks {
                let height = b.height;
                let (header, hash) = (b.header, b.hash);
                if header.hash() != hash {
                    errors.push(format!("block {height}: stored hash does not match its header"));
                }
                if header.prev_hash != state.head_hash() {
                    errors.push(format!(
                        "block {height}: prev_hash does not link to block {}",
                        height - 1
                    ));
                }
                if b.verdicts.len() != header.op_count as usize {
                    errors.push(format!(
                        "block {height}: header says {} operations, store holds {}",
                        header.op_count,
                        b.verdicts.len()
                    ));
                }
                // Where each operation sits, and where the index says it does.
                for (i, ((v, &(cursor, _, _)), indexed)) in b.verdicts.iter().zip(&b.flags).zip(&b.indexed).enumerate()
                {
                    if cursor != cursor_of(height, i as u32) {
                        errors.push(format!("block {height}: operation {i} stored out of place"));
                    }
                    // A forged operation (bad signature) is reported by the replay.
                    let Ok(op) = v else { continue };
                    let tx = op.tx_id;
                    match *indexed {
                        // Not loaded: only the written index can be checked.
                        _ if !loaded && height > checkpoint => {}
                        Some(c) if c == cursor => {}
                        Some(c) => errors.push(format!("tx {tx}: index points at {c:#x}, op sits at {cursor:#x}")),
                        None => errors.push(format!("tx {tx}: missing from the transaction index")),
                    }
                }
                // The rule for a stored block, as at start-up: `exec::replay_block`.
                let sealed = match replay_block(&mut state, &header, &hash, b.verdicts) {
                    Ok(sealed) => sealed,
                    Err(ReplayError::TimestampBackwards { .. }) => {
                        errors.push(format!("block {height}: timestamp goes backwards"));
                        break 'replay;
                    }
                    Err(ReplayError::Refused { index, refusal }) => {
                        operations += u64::from(index);
                        let tx = refusal.tx_id;
                        errors.push(match refusal.reason {
                            Reason::BadSignature => format!("block {height} op {index} ({tx}): bad signature"),
                            r => format!("block {height} op {index} ({tx}): does not re-apply: {}", r.code()),
                        });
                        break 'replay;
                    }
                    Err(ReplayError::Differs { sealed, .. }) => {
                        let s = &sealed.header;
                        if s.height != header.height {
                            errors.push(format!("block {height}: header says height {}", header.height));
                        }
                        if s.ops_root != header.ops_root {
                            errors.push(format!("block {height}: operations root differs"));
                        }
                        if s.state_hash != header.state_hash {
                            errors.push(format!("block {height}: state hash differs from the replayed state"));
                        }
                        if sealed.hash != hash {
                            errors.push(format!("block {height}: block hash differs from the replayed block"));
                        }
                        *sealed
                    }
                };
                operations += sealed.ops.len() as u64;
                for (i, (a, &(_, large, effect))) in sealed.ops.iter().zip(&b.flags).enumerate() {
                    if a.large != large {
                        errors.push(format!("block {height} op {i}: large-payment flag differs"));
                    }
                    if a.effect != effect {
                        errors.push(format!(
                            "block {height} op {i}: stored effect {effect:?}, the replay gives {:?}",
                            a.effect
                        ));
                    }
                }
                blocks += 1;
                if errors.len() >= MAX_REPORTED_ERRORS {
                    break 'replay;
                }
            }
            if let Some(height) = w.missing {
                errors.push(format!("block {height} is missing"));
                break;
            }
            window = match ahead {
                Some(reader) => Some(reader.join().expect("the audit's block reader panicked")?),
                None => None,
            };
        }
        // (A replay that stopped early leaves the reader to finish its
        // window; the scope waits for it.)
        Ok(())
    })?;

    // Compare every account the replay produced with the stored records.
    let stored_accounts = store.all_accounts()?;
    let mut seen = 0usize;
    for a in &stored_accounts {
        match state.account(&a.id) {
            Some(r) if r == a => seen += 1,
            Some(r) => errors.push(format!(
                "account {}: stored balance {} / status {:?}, replay gives {} / {:?}",
                a.id, a.balance, a.status, r.balance, r.status
            )),
            None => errors.push(format!("account {}: stored but never created by the chain", a.id)),
        }
        if errors.len() >= MAX_REPORTED_ERRORS {
            break;
        }
    }
    if seen != state.account_count() && errors.is_empty() {
        errors.push(format!(
            "the chain creates {} accounts, the store holds {}",
            state.account_count(),
            stored_accounts.len()
        ));
    }
    if let Err(e) = state.check_invariants() {
        errors.push(format!("invariant: {e}"));
    }
    // The control records (holds, lots, keys, ...) as stored, against the replay.
    let records = state.controls().records();
    let stored_records = store.control_records()?;
    if stored_records != records {
        let differ = records
            .iter()
            .map(|(k, _)| k)
            .chain(stored_records.iter().map(|(k, _)| k))
            .find(|k| records.iter().find(|(x, _)| x == *k) != stored_records.iter().find(|(x, _)| x == *k))
            .map(hex::encode)
            .unwrap_or_default();
        errors.push(format!(
            "control records: the store holds {}, the replay gives {} (first difference at key {differ})",
            stored_records.len(),
            records.len()
        ));
    }
    let controls = state.controls();
    let stored_sum: u128 = stored_accounts.iter().map(|a| a.balance as u128).sum();
    let totals = state.totals();
    if stored_sum != totals.circulation() as u128 {
        errors.push(format!(
            "stored balances sum to {stored_sum}, issued - redeemed is {}",
            totals.circulation()
        ));
    }
    // Sorted first, so that each batch is a narrow range of the index and
    // every block of it is read once over the whole list: in the order
    // acknowledged (random ids), each batch of a soak's 38.8M receipts read
    // blocks from every table file again. `missing` comes out in id order.
    let mut expected = expect_committed.to_vec();
    expected.sort_unstable_by_key(|tx| tx.0);
    let mut missing = Vec::new();
    for chunk in expected.chunks(65_536) {
        for (tx, at) in chunk.iter().zip(store.tx_cursors(chunk)?) {
            match at {
                Some(c) if (c >> 32) <= head => {}
                _ => missing.push(tx.to_hex()),
            }
        }
    }
    Ok(AuditReport {
        ok: errors.is_empty() && missing.is_empty(),
        chain_id: genesis.chain_id,
        height: head,
        blocks,
        operations,
        accounts: stored_accounts.len(),
        issued: totals.issued,
        redeemed: totals.redeemed,
        in_circulation: totals.circulation(),
        sum_balances: stored_sum,
        state_hash: hex::encode(state.state_hash()),
        head_hash: hex::encode(state.head_hash()),
        expected_committed: expect_committed.len(),
        held_payments: controls.all_pending().count(),
        held_amount: controls.held_total(),
        tagged: controls.tagged_total(),
        control_records: records.len(),
        missing,
        errors,
    })
}
