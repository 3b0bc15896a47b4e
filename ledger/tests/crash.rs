//! Crash consistency: a child process commits blocks and reports each
//! acknowledged block on stdout; the parent kills it with SIGKILL at a random
//! moment (no clean shutdown, no flush), reopens the store and checks that
//! every acknowledged operation is there, nothing is half-applied, and the
//! auditor passes. Several cycles continue the same chain.
//!
//! The child checkpoints every few blocks and flushes small memtables, so
//! the kills also land while a checkpoint is being written behind and while
//! memtables are being flushed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use rand::{Rng, SeedableRng};
use ruble_ledger::codec::Op;
use ruble_ledger::engine::{Ledger, Outcome};
use ruble_ledger::store::StoreOptions;
use ruble_ledger::types::TxId;

const PAYERS: u64 = 8;

/// A checkpoint every 6 blocks of 50 transfers, and memtables that flush
/// every few hundred KiB: both happen many times in each cycle.
fn small_options() -> StoreOptions {
    StoreOptions {
        checkpoint_ops: 300,
        // Kills then land between a checkpoint's `txs` slices too.
        checkpoint_txs_per_write: 16,
        write_buffer_bytes: 256 << 10,
        bulk_write_buffer_bytes: 256 << 10,
        ..StoreOptions::default()
    }
}

/// Runs in the child: commit blocks forever, print `ACK <height> <tx>...` after each commit.
fn child_main(dir: &Path) {
    let mut w = World::new();
    let g = w.genesis();
    let mut ledger = Ledger::open_with(dir, Some(&g), &small_options()).unwrap();
    let payers: Vec<_> = (0..PAYERS).map(|i| key(500 + i)).collect();
    if ledger.state().account(&id(&payers[0])).is_none() {
        let setup = w.fund_payers(&payers);
        let out = ledger.execute(T0, setup).unwrap();
        assert!(out.iter().all(|o| matches!(o, Outcome::Committed(_))));
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    w.nonce = rng.gen();
    let stdout = std::io::stdout();
    loop {
        let ops: Vec<_> = (0..50)
            .map(|_| {
                let from = &payers[rng.gen_range(0..PAYERS as usize)];
                let mut to = &payers[rng.gen_range(0..PAYERS as usize)];
                if to == from {
                    to = &payers[(payers.iter().position(|p| p == from).unwrap() + 1) % PAYERS as usize];
                }
                w.sign(
                    from,
                    Op::Transfer {
                        payee: id(to),
                        amount: rng.gen_range(1..100),
                        purpose: "crash".into(),
                    },
                )
            })
            .collect();
        let out = ledger.execute(T0, ops).unwrap();
        let mut line = format!("ACK {}", ledger.state().height());
        for o in out {
            if let Outcome::Committed(r) = o {
                line.push(' ');
                line.push_str(&r.tx_id.to_hex());
            }
        }
        let mut lock = stdout.lock();
        writeln!(lock, "{line}").unwrap();
        lock.flush().unwrap();
    }
}

#[test]
fn crash_child() {
    // Only does something when spawned by `sigkill_at_random_moments_loses_nothing`.
    if let Ok(dir) = std::env::var("RUBLE_CRASH_CHILD_DIR") {
        child_main(Path::new(&dir));
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut acked: Vec<TxId> = Vec::new();
    let mut last_acked_height = 0;
    for cycle in 0..4 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("RUBLE_CRASH_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = rng.gen_range(3..40);
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        let mut line = String::new();
        while seen < kill_after {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("child exited early");
            }
            if let Some(rest) = line.trim().strip_prefix("ACK ") {
                let mut parts = rest.split(' ');
                last_acked_height = parts.next().unwrap().parse().unwrap();
                acked.extend(parts.map(|h| TxId::from_hex(h).unwrap()));
                seen += 1;
            }
        }
        // SIGKILL mid-flight: the child is busy building/committing the next block.
        child.kill().unwrap();
        child.wait().unwrap();
        let ledger = Ledger::open_with(dir.path(), None, &small_options()).expect("reopens after a crash");
        let h = ledger.state().height();
        assert!(
            h >= last_acked_height,
            "cycle {cycle}: height {h} < acknowledged {last_acked_height}"
        );
        ledger.state().check_invariants().unwrap();
        let report = ruble_ledger::audit::audit(ledger.store(), &acked).unwrap();
        assert!(
            report.ok,
            "cycle {cycle}: {:?} missing {:?}",
            report.errors,
            report.missing.len()
        );
        assert_eq!(report.missing.len(), 0);
    }
    assert!(acked.len() > 100);
}
