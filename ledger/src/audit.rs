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

use serde::Serialize;

use crate::crypto::{verify_ops_parallel, KeyCache};
use crate::state::State;
use crate::store::{Store, StoreError};
use crate::types::{cursor_of, TxId};

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
    /// Hashes that were expected committed but are not in the chain.
    pub missing: Vec<String>,
    /// Every discrepancy, in the order found (replay stops at the first broken block).
    pub errors: Vec<String>,
}

const MAX_REPORTED_ERRORS: usize = 100;

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
    'replay: for height in 1..=head {
        let Some((header, hash)) = store.header(height)? else {
            errors.push(format!("block {height} is missing"));
            break;
        };
        if header.hash() != hash {
            errors.push(format!("block {height}: stored hash does not match its header"));
        }
        if header.prev_hash != state.head_hash() {
            errors.push(format!(
                "block {height}: prev_hash does not link to block {}",
                height - 1
            ));
        }
        if header.timestamp_ms < state.timestamp_ms() {
            errors.push(format!("block {height}: timestamp goes backwards"));
            break;
        }
        let stored = store.block_ops(height)?;
        if stored.len() != header.op_count as usize {
            errors.push(format!(
                "block {height}: header says {} operations, store holds {}",
                header.op_count,
                stored.len()
            ));
        }
        let flags: Vec<(u64, bool)> = stored.iter().map(|s| (s.cursor, s.large)).collect();
        let ids: Vec<TxId> = stored.iter().map(|s| s.op.tx_id).collect();
        let indexed = store.tx_cursors(&ids)?;
        let verdicts = verify_ops_parallel(stored.into_iter().map(|s| s.op).collect(), &cache, 256);
        state.begin_block(header.timestamp_ms);
        for (i, ((v, (cursor, large)), indexed)) in verdicts.into_iter().zip(flags).zip(indexed).enumerate() {
            if cursor != cursor_of(height, i as u32) {
                errors.push(format!("block {height}: operation {i} stored out of place"));
            }
            let op = match v {
                Ok(op) => op,
                Err((op, _)) => {
                    errors.push(format!("block {height} op {i} ({}): bad signature", op.tx_id));
                    break 'replay;
                }
            };
            let tx = op.tx_id;
            match indexed {
                // Not loaded: only the written index can be checked.
                _ if !loaded && height > checkpoint => {}
                Some(c) if c == cursor => {}
                Some(c) => errors.push(format!("tx {tx}: index points at {c:#x}, op sits at {cursor:#x}")),
                None => errors.push(format!("tx {tx}: missing from the transaction index")),
            }
            match state.apply(op) {
                Ok(applied) if applied.large == large => {}
                Ok(_) => errors.push(format!("block {height} op {i}: large-payment flag differs")),
                Err(reason) => {
                    errors.push(format!(
                        "block {height} op {i} ({tx}): does not re-apply: {}",
                        reason.code()
                    ));
                    break 'replay;
                }
            }
            operations += 1;
        }
        let sealed = state.seal_block();
        if sealed.header.ops_root != header.ops_root {
            errors.push(format!("block {height}: operations root differs"));
        }
        if sealed.header.state_hash != header.state_hash {
            errors.push(format!("block {height}: state hash differs from the replayed state"));
        }
        if sealed.hash != hash {
            errors.push(format!("block {height}: block hash differs from the replayed block"));
        }
        blocks += 1;
        if errors.len() >= MAX_REPORTED_ERRORS {
            break;
        }
    }

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
    let stored_sum: u128 = stored_accounts.iter().map(|a| a.balance as u128).sum();
    let totals = state.totals();
    if stored_sum != totals.circulation() as u128 {
        errors.push(format!(
            "stored balances sum to {stored_sum}, issued - redeemed is {}",
            totals.circulation()
        ));
    }
    let mut missing = Vec::new();
    for chunk in expect_committed.chunks(65_536) {
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
        missing,
        errors,
    })
}
