//! `txgen`: load generator and reporter for a ruble node.
//!
//! `txgen --dev-dir DIR [--duration 30s | --transfers N] [--rate N] [--accounts N]
//!  [--dist zipf|uniform] [--report FILE] [--receipts FILE] [--plot FILE.svg] [--calibrate]`
//!
//! 1. Sets up its own world through the central-bank and bank services:
//!    opens `--accounts` business accounts (alternating between the banks)
//!    and funds them.
//! 2. Pre-signs the transfers before the clock starts.
//! 3. With `--calibrate`, measures raw batch signature verification on all
//!    cores over those same operations (the node's ceiling on this machine).
//! 4. Drives the node through the banks' `SubmitClientOperations`, in
//!    batches of at most `--batch`: closed loop (as fast as it accepts,
//!    `--window` transfers in flight per bank) or open loop (`--rate` per
//!    second, Poisson arrivals, sent in the millisecond they arrive; latency
//!    counted from the scheduled arrival, so a slow node cannot hide its
//!    queueing).
//! 5. Prints a summary, writes the JSON report, the receipts file (one
//!    committed tx id per line, for `ruble-node audit --expect-committed`)
//!    and an SVG chart of throughput and latency per second.
//!
//! Against replicas (dev.json's `replicas`), only the leader takes writes:
//! set-up and driving follow it. A stream that fails, answers `NOT_LEADER`,
//! or answers nothing for `--stall-timeout` while batches wait (a killed or
//! stopped leader) is dropped; txgen finds the leader again and resends
//! every unanswered batch, the same signed bytes (a resubmitted operation
//! that had committed is answered with its original receipt), so a leader
//! change costs a gap in commits, reported as `stalls`, and no transfer is
//! lost or counted twice. A leader that takes batches but cannot commit
//! them (no quorum, its Raft gone) and answers them `UNAVAILABLE` is left
//! the same way. A transfer whose fate is still open when the run ends
//! (never answered, or only ever `UNAVAILABLE`) is reported as
//! `unresolved`, and txgen then exits non-zero.
//!
//! `txgen calibrate --accounts N --transfers N` runs step 3 alone, offline.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ed25519_dalek::SigningKey;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;
use rayon::prelude::*;
use ruble_domain::codec::{Op, OpBody, SignedOp};
use ruble_domain::crypto::{verify_ops_parallel, KeyCache};
use ruble_domain::types::{AccountId, AccountKind, TxId};
use ruble_proto::v1 as pb;
use ruble_proto::v1::bank_service_client::BankServiceClient;
use ruble_proto::v1::central_bank_service_client::CentralBankServiceClient;
use ruble_wallet::{ClientBuilder, Error as SdkError, Reason};
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

// Operations are allocated on one thread and freed on another (gRPC workers,
// verifiers, the committer); mimalloc handles that without glibc's arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "txgen",
    version,
    about = "Load generator for a ruble node",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Measure batch signature verification on all cores (offline), over
    /// `--transfers` pre-signed transfers from `--accounts` payers.
    Calibrate(RunArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Dist {
    Uniform,
    Zipf,
}

#[derive(clap::Args, Debug, Clone, Serialize)]
struct RunArgs {
    /// `ruble-node dev` directory (manifest, CA, bank and central-bank credentials).
    #[arg(long, default_value = "dev-data")]
    dev_dir: PathBuf,
    /// Node endpoint, tried first (default: DEV_DIR/dev.json's replicas in
    /// order, or its endpoint for a single node).
    #[arg(long)]
    endpoint: Option<String>,
    /// Run for this long (e.g. 30s, 2m).
    #[arg(long, default_value = "10s")]
    #[serde(serialize_with = "ser_duration")]
    duration: humantime::Duration,
    /// Stop after this many transfers instead of a duration.
    #[arg(long)]
    transfers: Option<u64>,
    /// Open loop at this many transfers per second (Poisson); closed loop if absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Accounts to create and pay between.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// How payers are chosen.
    #[arg(long, value_enum, default_value_t = Dist::Zipf)]
    dist: Dist,
    /// Zipf exponent.
    #[arg(long, default_value_t = 1.0)]
    zipf_s: f64,
    /// Most transfers per request on each bank's `SubmitClientBatches`
    /// stream (open loop sends what is due each millisecond, up to this).
    /// Batches cost the node and txgen one gRPC message per batch instead of
    /// one per transfer.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Transfers in flight per bank (closed loop and open loop alike).
    #[arg(long, default_value_t = 8192)]
    window: usize,
    /// Most transfers signed before the run (a longer run signs the rest
    /// while running). Each takes 80 bytes until the run ends, and 32 more
    /// for its receipt; txgen refuses a run that would need more than half of
    /// the machine's available memory.
    #[arg(long, default_value_t = 3_000_000)]
    presign_max: u64,
    /// Also measure the verification ceiling over the pre-signed transfers.
    #[arg(long)]
    calibrate: bool,
    /// JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Committed transfer ids, one hex hash per line.
    #[arg(long)]
    receipts: Option<PathBuf>,
    /// SVG chart of throughput and latency over the run.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Random seed for account keys and the payer schedule (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// How long each transfer stays valid after the moment it is expected to
    /// be sent. The node remembers every transfer until its validity ends
    /// (replay protection), so a long validity costs node memory.
    #[arg(long, default_value = "2m")]
    #[serde(serialize_with = "ser_duration")]
    validity: humantime::Duration,
    /// With replicas: a stream that answers nothing for this long while a
    /// batch has waited as long is taken for a dead or stopped leader, and
    /// txgen reconnects (also the longest wait for a replica to connect).
    #[arg(long, default_value = "2s")]
    #[serde(serialize_with = "ser_duration")]
    stall_timeout: humantime::Duration,
    /// With replicas: how long txgen looks for a leader, with nothing
    /// committed, before it ends the run; also how long it resends one
    /// transfer answered UNAVAILABLE (then counted as unresolved).
    #[arg(long, default_value = "60s")]
    #[serde(serialize_with = "ser_duration")]
    failover_timeout: humantime::Duration,
}

fn ser_duration<S: serde::Serializer>(d: &humantime::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

#[derive(serde::Deserialize)]
struct Manifest {
    chain_id: String,
    endpoint: String,
    /// Every replica's client endpoint (`dev --replicas N`); absent for a single node.
    #[serde(default)]
    replicas: Vec<String>,
    ca: String,
    central_bank: Part,
    banks: Vec<Part>,
}

#[derive(serde::Deserialize)]
struct Part {
    name: String,
    id: String,
    key: String,
    cert: Option<String>,
    cert_key: Option<String>,
}

fn read_key(path: &Path) -> Result<SigningKey> {
    Ok(ruble_wallet::WalletKey::load(path, None)?.signing_key().clone())
}

#[derive(Default, Serialize)]
struct Calibration {
    ops: usize,
    threads: usize,
    chunk: usize,
    verify_ops_per_s: f64,
    single_verify_ops_per_s_one_core: f64,
}

/// Most operations [`calibrate`] times.
const CALIBRATE_MAX: usize = 200_000;

/// Times verification over `sample` (at most [`CALIBRATE_MAX`] operations).
fn calibrate(sample: Vec<SignedOp>) -> Calibration {
    let n = sample.len();
    // Warm-up, then the timed pass (fresh key cache each, like a cold node).
    let _ = verify_ops_parallel(sample[..n.min(20_000)].to_vec(), &KeyCache::default(), 256);
    let cache = KeyCache::default();
    let t = Instant::now();
    let v = verify_ops_parallel(sample.clone(), &cache, 256);
    let secs = t.elapsed().as_secs_f64();
    assert!(v.iter().all(|r| r.is_ok()), "pre-signed operations must verify");
    let m = n.min(20_000);
    let t = Instant::now();
    for op in &sample[..m] {
        let ok = ruble_domain::crypto::verify_single(
            &op.body.signer.0,
            &ruble_domain::codec::signing_message(&op.body_bytes),
            &op.signature,
        );
        assert!(ok);
    }
    let single = m as f64 / t.elapsed().as_secs_f64();
    Calibration {
        ops: n,
        threads: rayon::current_num_threads(),
        chunk: 256,
        verify_ops_per_s: n as f64 / secs,
        single_verify_ops_per_s_one_core: single,
    }
}

/// Largest amount of one generated transfer, in kopecks.
const MAX_TRANSFER_KOPECKS: u64 = 100;

/// Transfers a run expects to send: `--transfers`, or the rate (open loop;
/// 80k/s closed loop) times the duration.
fn expected_transfers(args: &RunArgs) -> u64 {
    let secs = args.duration.as_secs_f64().max(1.0);
    match (args.transfers, args.rate) {
        (Some(n), _) => n,
        (None, Some(r)) => (r * secs * 1.05) as u64 + 1000,
        (None, None) => (80_000.0 * secs) as u64,
    }
}

/// Funding of each account, in kopecks: a floor of 1,000,000.00 ₽ plus twice
/// the most the account can pay out if it is chosen as payer in proportion to
/// its weight (Zipf's hottest payer sends ~13% of all transfers over 1000
/// accounts, so a flat funding runs it dry in a long soak and the run measures
/// `INSUFFICIENT_FUNDS` instead of the node).
fn funding_plan(args: &RunArgs) -> Vec<u64> {
    let n = args.accounts;
    let weights: Vec<f64> = match args.dist {
        Dist::Uniform => vec![1.0; n],
        Dist::Zipf => (1..=n).map(|k| (k as f64).powf(-args.zipf_s)).collect(),
    };
    let total: f64 = weights.iter().sum();
    let outflow = expected_transfers(args) as f64 * MAX_TRANSFER_KOPECKS as f64;
    weights
        .iter()
        .map(|w| 1_000_000_00u64.saturating_add((2.0 * outflow * w / total).ceil() as u64))
        .collect()
}

/// One transfer of the schedule: payer and payee (indices into the run's
/// accounts) and the amount in kopecks. Sixteen bytes, because a soak keeps
/// tens of millions of them.
#[derive(Clone, Copy, Debug)]
struct Planned {
    payer: u32,
    payee: u32,
    amount: u64,
}

/// The schedule of transfers.
fn plan(args: &RunArgs, n: u64, accounts: usize, rng: &mut rand::rngs::StdRng) -> Vec<Planned> {
    let zipf = rand_distr::Zipf::new(accounts as u64, args.zipf_s).expect("zipf parameters");
    (0..n)
        .map(|_| {
            let payer = match args.dist {
                Dist::Uniform => rng.gen_range(0..accounts),
                Dist::Zipf => (zipf.sample(rng) as usize - 1).min(accounts - 1),
            };
            let mut payee = rng.gen_range(0..accounts - 1);
            if payee >= payer {
                payee += 1;
            }
            // Small amounts (1 kopeck to 1 ruble); `funding_plan` gives each
            // payer enough for its share of the run.
            Planned {
                // `run` refuses more accounts than a u32 counts.
                payer: payer as u32,
                payee: payee as u32,
                amount: rng.gen_range(1..=MAX_TRANSFER_KOPECKS),
            }
        })
        .collect()
}

struct World {
    chain_id: String,
    keys: Vec<SigningKey>,
    /// Bank index serving each account.
    bank_of: Vec<usize>,
    banks: Vec<Arc<Link>>,
    /// The node's clock at a known instant, to date transfers in node time.
    node_ms_at: (u64, Instant),
}

impl World {
    /// The node's clock now (as read at set-up, advanced locally).
    fn node_now_ms(&self) -> u64 {
        self.node_ms_at.0 + self.node_ms_at.1.elapsed().as_millis() as u64
    }

    fn body(&self, p: Planned, nonce: u64, valid_until_ms: u64) -> OpBody {
        OpBody {
            chain_id: self.chain_id.clone(),
            signer: AccountId(self.keys[p.payer as usize].verifying_key().to_bytes()),
            nonce,
            valid_until_ms,
            op: Op::Transfer {
                payee: AccountId(self.keys[p.payee as usize].verifying_key().to_bytes()),
                amount: p.amount,
                purpose: "txgen".into(),
            },
        }
    }

    fn sign(&self, p: Planned, nonce: u64, valid_until_ms: u64) -> SignedOp {
        SignedOp::sign(self.body(p, nonce, valid_until_ms), &self.keys[p.payer as usize])
    }
}

/// The run's pre-signed transfers, kept compact: the plan and one signature
/// per transfer, 80 bytes. Decoded operations took over 530 bytes each, and a
/// 10-minute soak at 68k/s (43 million transfers) ran txgen out of memory.
/// Every other field of transfer `i` is a function of `i` (its nonce and
/// validity), and the body encoding is canonical, so [`PresignedRun::op`]
/// rebuilds, when the transfer is sent, exactly the bytes that were signed.
struct PresignedRun {
    plan: Vec<Planned>,
    signatures: Vec<[u8; 64]>,
    base_nonce: u64,
    /// Node time (ms) at which transfer 0 is expected to go out.
    first_send_ms: u64,
    /// Transfers per second the send times are spread at.
    rate: f64,
    validity_ms: u64,
}

impl PresignedRun {
    /// What txgen holds per pre-signed transfer, and per committed transfer
    /// for its receipt: the basis of [`check_memory`].
    const BYTES_PER_TRANSFER: u64 = (std::mem::size_of::<Planned>() + 64 + std::mem::size_of::<TxId>()) as u64;

    fn len(&self) -> usize {
        self.signatures.len()
    }

    /// Transfer `i`'s body. Each is valid until `validity` after the moment
    /// it is expected to go out, so a transfer sent late still has the margin.
    fn body(&self, world: &World, i: usize) -> OpBody {
        let send_at = self.first_send_ms + (i as f64 * 1000.0 / self.rate) as u64;
        world.body(
            self.plan[i],
            self.base_nonce.wrapping_add(i as u64),
            send_at + self.validity_ms,
        )
    }

    /// Signs every planned transfer, on all cores.
    fn sign_all(&mut self, world: &World) {
        let signatures = (0..self.plan.len())
            .into_par_iter()
            .map(|i| SignedOp::sign(self.body(world, i), &world.keys[self.plan[i].payer as usize]).signature)
            .collect();
        self.signatures = signatures;
    }

    /// Transfer `i` as signed.
    fn op(&self, world: &World, i: usize) -> SignedOp {
        let body = self.body(world, i);
        let body_bytes = body.encode();
        SignedOp {
            tx_id: ruble_domain::codec::tx_id(&body_bytes),
            body,
            body_bytes,
            signature: self.signatures[i],
        }
    }
}

/// Refuses a run whose pre-signed transfers (and their receipts) would take
/// more than half of the memory this machine has available: the node under
/// test runs beside txgen and needs the rest. Better a clear error now than
/// the kernel's OOM killer minutes into the signing. No-op where
/// `/proc/meminfo` is missing.
fn check_memory(presign_n: u64) -> Result<()> {
    let Some(available) = mem_available_bytes() else {
        return Ok(());
    };
    let need = presign_n.saturating_mul(PresignedRun::BYTES_PER_TRANSFER);
    if need > available / 2 {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        bail!(
            "pre-signing {presign_n} transfers needs about {:.1} GiB ({} bytes each, with its receipt), \
             more than half of the {:.1} GiB this machine has available (MemAvailable), which the node \
             beside txgen needs too: lower --presign-max (the rest is signed during the run), \
             --duration, --rate or --transfers",
            gib(need),
            PresignedRun::BYTES_PER_TRANSFER,
            gib(available)
        );
    }
    Ok(())
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn wire(op: &SignedOp) -> pb::SignedOperation {
    pb::SignedOperation {
        body: op.body_bytes.clone(),
        signature: op.signature.to_vec(),
    }
}

fn reason_of(r: &pb::SubmitResult) -> Option<String> {
    match &r.outcome {
        Some(pb::submit_result::Outcome::Rejected(rj)) => Some(rj.reason.clone()),
        Some(pb::submit_result::Outcome::Committed(_)) => None,
        None => Some("EMPTY".into()),
    }
}

/// How long set-up retries one operation through a leader change.
const SETUP_RETRY_FOR: Duration = Duration::from_secs(30);

/// Longest wait for one set-up call: a stopped leader answers nothing, and
/// the call is then retried on another replica.
const SETUP_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a replica found dead (unreachable, silent) is tried last.
const SUSPECT_FOR: Duration = Duration::from_secs(5);

/// The endpoints to try, best first: `--endpoint`, then dev.json's replicas
/// (or its endpoint, for a single node).
fn endpoints(args: &RunArgs, m: &Manifest) -> Vec<String> {
    let mut all: Vec<String> = args.endpoint.iter().cloned().collect();
    let listed = if m.replicas.is_empty() {
        std::slice::from_ref(&m.endpoint)
    } else {
        &m.replicas[..]
    };
    for e in listed {
        if !all.contains(e) {
            all.push(e.clone());
        }
    }
    all
}

/// Replicas recently found dead, with whether a replica's word that one
/// leads has already sent txgen back to it since.
#[derive(Default)]
struct Suspects(HashMap<String, (Instant, bool)>);

impl Suspects {
    fn mark(&mut self, endpoint: &str) {
        let now = Instant::now();
        let e = self.0.entry(endpoint.to_string()).or_insert((now, false));
        if now.duration_since(e.0) >= SUSPECT_FOR {
            *e = (now, false);
        } else {
            e.0 = now;
        }
    }

    /// `endpoint` answered (if only that it does not lead): it is alive.
    fn clear(&mut self, endpoint: &str) {
        self.0.remove(endpoint);
    }

    fn is(&self, endpoint: &str) -> bool {
        self.0.get(endpoint).is_some_and(|(t, _)| t.elapsed() < SUSPECT_FOR)
    }

    /// Whether to follow a replica that names `endpoint` as the leader.
    /// Followers name the old leader until they elect a new one, so a
    /// leader found dead is not believed again and again; but it gets one
    /// second chance, since a leader that was only slow (or stopped and
    /// resumed) may well still lead.
    fn follow(&mut self, endpoint: &str) -> bool {
        match self.0.get_mut(endpoint) {
            Some((t, chance_used)) if t.elapsed() < SUSPECT_FOR => !std::mem::replace(chance_used, true),
            _ => true,
        }
    }
}

/// What the replica being left did last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    /// Unreachable or silent.
    Dead,
    /// It answered, if only that it does not lead.
    Alive,
    /// It takes batches but answers them `UNAVAILABLE` (it leads without a
    /// quorum, or cannot write): tried last, like a dead one.
    CannotCommit,
    /// No news (it was not tried again).
    Unknown,
}

/// What an error says of the replica that answered it: one that could not
/// be reached or said nothing in time is dead; any answer (`NOT_LEADER`,
/// `UNAVAILABLE`: cannot commit now, a stream budget) shows it alive.
fn health_of(e: &SdkError) -> Health {
    match e {
        SdkError::Transport(_) | SdkError::Timeout => Health::Dead,
        _ => Health::Alive,
    }
}

/// The replica a [`Link`] talks to now; `generation` counts moves, so that
/// of many calls that fail on one replica at once only the first moves.
struct Current {
    generation: u64,
    endpoint: String,
    channel: Channel,
}

/// One participant's way to the node or the cluster, with its client
/// certificate: the replica it believes leads, and how to move on.
struct Link {
    name: String,
    ca: String,
    cert: String,
    key: String,
    endpoints: Vec<String>,
    /// Longest wait for a replica to connect and answer.
    patience: Duration,
    now: Mutex<Current>,
    /// Held while moving (serialises the moves of concurrent calls).
    moving: tokio::sync::Mutex<Suspects>,
}

impl Link {
    /// Connects to the first endpoint that answers, trying them all again
    /// with backoff for up to [`SETUP_RETRY_FOR`]. Also returns the SDK
    /// client of that connection (it holds the node's clock).
    async fn open(
        name: &str,
        ca: &str,
        (cert, key): (String, String),
        endpoints: Vec<String>,
        patience: Duration,
    ) -> Result<(Link, ruble_wallet::Client)> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut last = None;
            for e in &endpoints {
                match connect(ca, &cert, &key, e, patience).await {
                    Ok(client) => {
                        let link = Link {
                            name: name.to_string(),
                            ca: ca.to_string(),
                            cert,
                            key,
                            now: Mutex::new(Current {
                                generation: 0,
                                endpoint: e.clone(),
                                channel: client.channel(),
                            }),
                            endpoints,
                            patience,
                            moving: tokio::sync::Mutex::new(Suspects::default()),
                        };
                        return Ok((link, client));
                    }
                    // The same certificate everywhere: no replica will take it.
                    Err(err @ (SdkError::Certificate(_) | SdkError::Config(_))) => {
                        return Err(anyhow::Error::new(err).context(format!("{name}: connecting to {e}")));
                    }
                    Err(err) => last = Some(anyhow::Error::new(err).context(format!("{name}: connecting to {e}"))),
                }
            }
            if started.elapsed() > SETUP_RETRY_FOR {
                return Err(last.expect("at least one endpoint"));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// The replica now, and the generation to hand to [`Link::relocate`].
    fn current(&self) -> (u64, String, Channel) {
        let c = self.now.lock();
        (c.generation, c.endpoint.clone(), c.channel.clone())
    }

    /// Moves off the replica of `generation` (nothing to do if a concurrent
    /// caller has moved already): to `hint` (the leader a replica named),
    /// else to the next replica in turn, replicas found dead lately last.
    /// `health`: what the replica being left did. Fails when none
    /// connects; `false` when another caller had moved.
    async fn relocate(&self, generation: u64, hint: Option<&str>, health: Health) -> Result<bool> {
        let mut suspects = self.moving.lock().await;
        let (now_gen, from, _) = self.current();
        if now_gen != generation {
            return Ok(false);
        }
        match health {
            Health::Dead | Health::CannotCommit => suspects.mark(&from),
            Health::Alive => suspects.clear(&from),
            Health::Unknown => {}
        }
        let mut order: Vec<String> = Vec::new();
        if let Some(h) = hint.filter(|h| *h != from) {
            if suspects.follow(h) {
                order.push(h.to_string());
            }
        }
        let n = self.endpoints.len();
        let at = self.endpoints.iter().position(|e| *e == from).map_or(0, |i| i + 1);
        let ring: Vec<&String> = (0..n).map(|k| &self.endpoints[(at + k) % n]).collect();
        for e in ring
            .iter()
            .filter(|e| !suspects.is(e))
            .chain(ring.iter().filter(|e| suspects.is(e)))
        {
            if !order.contains(e) {
                order.push((*e).clone());
            }
        }
        let mut last = None;
        for e in order {
            match connect(&self.ca, &self.cert, &self.key, &e, self.patience).await {
                Ok(client) => {
                    *self.now.lock() = Current {
                        generation: generation + 1,
                        endpoint: e,
                        channel: client.channel(),
                    };
                    return Ok(true);
                }
                Err(err) => {
                    suspects.mark(&e);
                    last = Some(anyhow::Error::new(err).context(format!("connecting to {e}")));
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no replica to try")))
    }

    /// Runs a write on the leader: `f` sends it over a channel, the same
    /// signed bytes each time. A replica that names the leader is left for
    /// it at once; an unreachable or silent one, one that knows no leader
    /// (an election) or cannot commit (`UNAVAILABLE`), for the next;
    /// `OVERLOADED` is retried where it came from. Backoff, for up to
    /// [`SETUP_RETRY_FOR`]. A resubmission of an operation that had
    /// committed is answered with its original receipt, or `DUPLICATE`
    /// while the first copy is still being committed: retried too.
    async fn call<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut since: Option<Instant> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let (generation, _, channel) = self.current();
            let err = match tokio::time::timeout(SETUP_CALL_TIMEOUT, f(channel)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(st)) => SdkError::from(st),
                Err(_) => SdkError::Timeout,
            };
            let started = *since.get_or_insert_with(Instant::now);
            let transient = err.is_retryable() || err.reason() == Some(Reason::Duplicate);
            if !transient || started.elapsed() > SETUP_RETRY_FOR {
                return Err(anyhow::Error::new(err).context(format!("{}: {what}", self.name)));
            }
            let moved = match &err {
                SdkError::NotLeader { leader } => self.relocate(generation, leader.as_deref(), Health::Alive).await,
                SdkError::Transport(_)
                | SdkError::Timeout
                | SdkError::Rejected {
                    reason: Reason::Unavailable,
                    ..
                } => self.relocate(generation, None, health_of(&err)).await,
                _ => Ok(false),
            };
            if let Ok(true) = moved {
                let (_, to, _) = self.current();
                eprintln!("txgen: {}: {what}: {err}; moved to {to}", self.name);
            }
            // Told where the leader is and got there: no reason to wait.
            if moved.is_ok() && matches!(err, SdkError::NotLeader { leader: Some(_) }) {
                continue;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// A connection to `endpoint` that has answered (the chain's parameters),
/// within `patience`: a stopped node accepts TCP connections and then says
/// nothing.
async fn connect(
    ca: &str,
    cert: &str,
    key: &str,
    endpoint: &str,
    patience: Duration,
) -> Result<ruble_wallet::Client, SdkError> {
    let b = ClientBuilder::new(endpoint)
        .ca_pem(ca)
        .identity(cert, key)
        .timeout(patience)
        .connect_timeout(patience)
        .retries(0);
    tokio::time::timeout(patience + Duration::from_millis(500), b.connect())
        .await
        .unwrap_or(Err(SdkError::Timeout))
}

async fn setup(args: &RunArgs, rng: &mut rand::rngs::StdRng) -> Result<World> {
    let dir = &args.dev_dir;
    let m: Manifest = serde_json::from_slice(&std::fs::read(dir.join("dev.json")).context("reading dev.json")?)?;
    let endpoints = endpoints(args, &m);
    let ca = std::fs::read_to_string(dir.join(&m.ca))?;
    let patience = (*args.stall_timeout).max(Duration::from_secs(1));
    let identity = |cert: &Option<String>, key: &Option<String>| -> Result<(String, String)> {
        let (c, k) = (
            cert.as_ref().context("certificate")?,
            key.as_ref().context("certificate key")?,
        );
        Ok((
            std::fs::read_to_string(dir.join(c))?,
            std::fs::read_to_string(dir.join(k))?,
        ))
    };
    let (cb, cb_client) = Link::open(
        &m.central_bank.name,
        &ca,
        identity(&m.central_bank.cert, &m.central_bank.cert_key)?,
        endpoints.clone(),
        patience,
    )
    .await?;
    let node_ms_at = (cb_client.node_now_ms(), Instant::now());
    let valid_until_ms = node_ms_at.0 + 9 * 60 * 1000;
    let chain_id = m.chain_id.clone();
    let cb_key = read_key(&dir.join(&m.central_bank.key))?;
    let mut banks = Vec::new();
    let mut bank_keys = Vec::new();
    for b in &m.banks {
        let (link, _) = Link::open(
            &b.name,
            &ca,
            identity(&b.cert, &b.cert_key)?,
            endpoints.clone(),
            patience,
        )
        .await?;
        banks.push(Arc::new(link));
        bank_keys.push(read_key(&dir.join(&b.key))?);
        let _ = &b.id;
    }
    let mut nonce: u64 = rng.gen();
    let mut sign = |k: &SigningKey, op: Op| {
        nonce = nonce.wrapping_add(1);
        SignedOp::sign(
            OpBody {
                chain_id: chain_id.clone(),
                signer: AccountId(k.verifying_key().to_bytes()),
                nonce,
                valid_until_ms,
                op,
            },
            k,
        )
    };
    let funding = funding_plan(args);
    let keys: Vec<SigningKey> = (0..args.accounts).map(|_| SigningKey::generate(rng)).collect();
    let bank_of: Vec<usize> = (0..args.accounts).map(|i| i % banks.len()).collect();
    // Make sure each bank can fund its share.
    for (bi, bk) in bank_keys.iter().enumerate() {
        let need: u64 = (0..args.accounts)
            .filter(|&i| bank_of[i] == bi)
            .map(|i| funding[i])
            .sum();
        let op = sign(
            &cb_key,
            Op::Issue {
                bank: AccountId(bk.verifying_key().to_bytes()),
                amount: need.max(1),
            },
        );
        let req = pb::SubmitRequest {
            operation: Some(wire(&op)),
        };
        cb.call("issuing to a bank", |ch| {
            let req = req.clone();
            async move { CentralBankServiceClient::new(ch).issue(req).await.map(|_| ()) }
        })
        .await?;
    }
    // Open accounts (concurrently, per bank) and fund them in batches.
    let pb_ = ProgressBar::new(args.accounts as u64 * 2).with_message("setting up accounts");
    pb_.set_style(ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}").expect("template"));
    for chunk in (0..args.accounts).collect::<Vec<_>>().chunks(512) {
        let mut futs = Vec::new();
        for &i in chunk {
            let b = bank_of[i];
            let op = sign(
                &bank_keys[b],
                Op::OpenAccount {
                    account: AccountId(keys[i].verifying_key().to_bytes()),
                    kind: AccountKind::Business,
                },
            );
            let req = pb::SubmitRequest {
                operation: Some(wire(&op)),
            };
            let link = banks[b].clone();
            futs.push(async move {
                link.call("opening an account", |ch| {
                    let req = req.clone();
                    async move {
                        match BankServiceClient::new(ch).open_account(req).await {
                            // The key is fresh: only an earlier attempt of
                            // ours can have opened the account.
                            Err(st)
                                if ruble_wallet::error::status_reason(&st).as_deref()
                                    == Some(Reason::AccountExists.code()) =>
                            {
                                Ok(())
                            }
                            r => r.map(|_| ()),
                        }
                    }
                })
                .await
            });
        }
        for r in futures::future::join_all(futs).await {
            r?;
        }
        pb_.inc(chunk.len() as u64);
        let mut per_bank: Vec<Vec<pb::SignedOperation>> = vec![Vec::new(); banks.len()];
        for &i in chunk {
            let b = bank_of[i];
            let op = sign(
                &bank_keys[b],
                Op::Transfer {
                    payee: AccountId(keys[i].verifying_key().to_bytes()),
                    amount: funding[i],
                    purpose: "txgen funding".into(),
                },
            );
            per_bank[b].push(wire(&op));
        }
        for (b, ops) in per_bank.into_iter().enumerate() {
            if !ops.is_empty() {
                fund(&banks[b], ops).await?;
            }
        }
        pb_.inc(chunk.len() as u64);
    }
    pb_.finish_and_clear();
    Ok(World {
        chain_id,
        keys,
        bank_of,
        banks,
        node_ms_at,
    })
}

/// Submits one batch of funding transfers until every one is committed. A
/// whole batch is resent while some of it is answered `UNAVAILABLE` (its
/// block was dropped in a leader change), `OVERLOADED` or `DUPLICATE` (a copy
/// still being committed): those that had committed come back with their
/// receipts.
async fn fund(link: &Link, operations: Vec<pb::SignedOperation>) -> Result<()> {
    let req = pb::SubmitBatchRequest {
        operations,
        request_id: 0,
    };
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let transient = [Reason::Unavailable, Reason::Overloaded, Reason::Duplicate].map(Reason::code);
    loop {
        let r = link
            .call("funding accounts", |ch| {
                let req = req.clone();
                async move {
                    BankServiceClient::new(ch)
                        .max_decoding_message_size(64 << 20)
                        .submit_client_operations(req)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        let bad: Vec<String> = r.results.iter().filter_map(reason_of).collect();
        if let Some(b) = bad.iter().find(|b| !transient.contains(&b.as_str())) {
            bail!("funding failed: {b}");
        }
        let Some(b) = bad.first() else {
            return Ok(());
        };
        if started.elapsed() > SETUP_RETRY_FOR {
            bail!("funding failed: {b}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Per-second series for the chart.
#[derive(Default)]
struct Second {
    committed: u64,
    rejected: u64,
    lat: Option<Histogram<u64>>,
}

struct Stats {
    t0: Instant,
    inner: Mutex<StatsInner>,
    committed: AtomicU64,
    submitted: AtomicU64,
    /// Submission streams reopened after a failure or a stall.
    reconnects: AtomicU64,
    /// With failover: transfers whose fate the run leaves open (never
    /// answered, or answered only `UNAVAILABLE` or `DUPLICATE` until
    /// `--failover-timeout`); neither committed nor rejected.
    unresolved: AtomicU64,
}

/// Commit gaps longer than this are reported as stalls.
const STALL_GAP: Duration = Duration::from_millis(250);

/// Most stalls listed in the report (a slow open loop has a gap between
/// every two transfers; the count and the longest are kept regardless).
const STALLS_LISTED: usize = 10_000;

struct StatsInner {
    seconds: Vec<Second>,
    hist: Histogram<u64>,
    rejected: BTreeMap<String, u64>,
    receipts: Receipts,
    /// When the latest committed transfer was acknowledged, on any bank.
    last_commit: Option<Instant>,
    /// Gaps over [`STALL_GAP`] between consecutive commit acknowledgements.
    stalls: Vec<(Instant, Instant)>,
    stalls_total: u64,
    longest_stall: Option<(Instant, Instant)>,
}

impl StatsInner {
    fn new(hist: Histogram<u64>) -> StatsInner {
        StatsInner {
            seconds: Vec::new(),
            hist,
            rejected: BTreeMap::new(),
            receipts: Receipts::default(),
            last_commit: None,
            stalls: Vec::new(),
            stalls_total: 0,
            longest_stall: None,
        }
    }
}

/// The id of every committed transfer, in fixed-size chunks. One `Vec` of
/// tens of millions of ids doubled its capacity now and then, copying and
/// faulting in hundreds of MiB under the stats lock: every response reader
/// waited, and the run's worst latency seconds fell exactly on those
/// doublings (2^22 ids at 94 s, 2^24 at 376 s of a 44.6k/s soak).
#[derive(Default)]
struct Receipts(Vec<Vec<TxId>>);

impl Receipts {
    const CHUNK: usize = 1 << 16;

    fn push(&mut self, tx: TxId) {
        match self.0.last_mut() {
            Some(c) if c.len() < Self::CHUNK => c.push(tx),
            _ => {
                let mut c = Vec::with_capacity(Self::CHUNK);
                c.push(tx);
                self.0.push(c);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &TxId> {
        self.0.iter().flatten()
    }
}

impl Stats {
    /// `at` in milliseconds since `t0`.
    fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_millis() as u64
    }

    /// Records the results of one batch, answered at `at` (one lock per batch).
    fn record_batch(&self, at: Instant, results: impl Iterator<Item = (Duration, Option<String>, TxId)>) {
        let sec = at.duration_since(self.t0).as_secs() as usize;
        let mut g = self.inner.lock();
        let s = &mut *g;
        while s.seconds.len() <= sec {
            s.seconds.push(Second::default());
        }
        let second = &mut s.seconds[sec];
        let mut committed = 0;
        for (latency, reason, tx) in results {
            let us = latency.as_micros().max(1) as u64;
            match reason {
                None => {
                    committed += 1;
                    s.hist.saturating_record(us);
                    second.committed += 1;
                    second
                        .lat
                        .get_or_insert_with(|| Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram"))
                        .saturating_record(us);
                    s.receipts.push(tx);
                }
                Some(r) => {
                    second.rejected += 1;
                    *s.rejected.entry(r).or_default() += 1;
                }
            }
        }
        if committed > 0 {
            // Banks' readers take `at` before the lock, so it can run back a little.
            let prev = s.last_commit.unwrap_or(at);
            let gap = at.saturating_duration_since(prev);
            if gap > STALL_GAP {
                s.stalls_total += 1;
                if s.longest_stall.is_none_or(|(a, b)| b.duration_since(a) < gap) {
                    s.longest_stall = Some((prev, at));
                }
                if s.stalls.len() < STALLS_LISTED {
                    s.stalls.push((prev, at));
                }
            }
            s.last_commit = Some(prev.max(at));
        }
        self.committed.fetch_add(committed, Ordering::Relaxed);
    }
}

/// A signed transfer as sent: its id (to match the result) and its wire form.
struct Outgoing {
    tx_id: TxId,
    wire: pb::SignedOperation,
}

impl From<SignedOp> for Outgoing {
    fn from(op: SignedOp) -> Outgoing {
        Outgoing {
            tx_id: op.tx_id,
            wire: pb::SignedOperation {
                body: op.body_bytes,
                signature: op.signature.to_vec(),
            },
        }
    }
}

/// A transfer to send, with its scheduled arrival (open loop) or `None`
/// (closed loop: latency counts from the actual send).
type Job = (Outgoing, Option<Instant>);

/// Hands a batch to a bank's sender; false when the run must stop (the
/// sender ended, or, for a timed run, the deadline passed while waiting).
async fn send_batch(q: &mpsc::Sender<Vec<Job>>, jobs: Vec<Job>, deadline: Instant, timed: bool) -> bool {
    if timed {
        matches!(tokio::time::timeout_at(deadline.into(), q.send(jobs)).await, Ok(Ok(())))
    } else {
        q.send(jobs).await.is_ok()
    }
}

/// A batch in flight: each transfer's id and the instant its latency counts
/// from, and the window permits it holds until answered.
struct InFlight {
    ids: Vec<(TxId, Instant)>,
    /// The signed operations, to send again after a failover. Empty against
    /// a single node, where nothing is resent and the copy would be waste.
    ops: Vec<pb::SignedOperation>,
    /// When this copy went out (a stalled stream is one that leaves it unanswered).
    sent_at: Instant,
    /// Sent more than once: a `DUPLICATE` answer may be about the other copy.
    resent: bool,
    /// When a transfer of it was first answered `UNAVAILABLE` and put back.
    retry_since: Option<Instant>,
    _permit: OwnedSemaphorePermit,
}

/// Transfers to resend at the instant given (answered `UNAVAILABLE`, or
/// `DUPLICATE` while another copy is on its way).
type Retry = (Instant, InFlight);

/// Delay before a transfer answered `UNAVAILABLE` or `DUPLICATE` goes again.
const RESEND_DELAY: Duration = Duration::from_millis(200);

/// With failover: this many consecutive batches answered `UNAVAILABLE` in
/// full, with nothing committed or rejected in between, and the stream's
/// replica is taken for one that cannot commit (as is one that answers
/// `UNAVAILABLE`, and nothing else, for the stall time).
const UNAVAILABLE_RUN: u32 = 2;

/// Following the leader: for a run against replicas. Without it (a single
/// node) a failed stream ends the run, as a dead node should.
#[derive(Clone, Copy)]
struct Failover {
    /// No answer for this long while a batch has waited as long: a dead or
    /// stopped leader.
    stall: Duration,
    /// Longest search for a leader with nothing answered; longest a
    /// transfer is resent while answered `UNAVAILABLE` or `DUPLICATE`.
    give_up: Duration,
}

/// With failover: an answer that leaves a transfer's fate open, so it goes
/// again. `UNAVAILABLE`: its block was dropped (leadership moved, no quorum
/// in time); it may still have committed, and a resend then gets the
/// original receipt. `DUPLICATE` for a transfer sent more than once: the
/// other copy is still being committed (a committed one is answered with
/// its receipt), so a resend a little later learns how it ended.
fn unresolved(r: &pb::SubmitResult, resent: bool) -> bool {
    match &r.outcome {
        Some(pb::submit_result::Outcome::Rejected(rj)) => {
            rj.reason == Reason::Unavailable.code() || (resent && rj.reason == Reason::Duplicate.code())
        }
        _ => false,
    }
}

/// A result `UNAVAILABLE`: the node could not commit the transfer (yet).
fn is_unavailable(r: &pb::SubmitResult) -> bool {
    matches!(&r.outcome, Some(pb::submit_result::Outcome::Rejected(rj)) if rj.reason == Reason::Unavailable.code())
}

/// With failover: whether a stream that ended with `e` is worth opening
/// again (a transport failure, a replica going away or unavailable, a
/// stream budget still held by the streams just dropped).
fn worth_reconnecting(e: &SdkError) -> bool {
    e.is_retryable()
        || matches!(e, SdkError::Refused { code, .. }
            if ["TOO_MANY_STREAMS", "STREAM_STALLED", "STREAM_IDLE"].contains(&code.as_str()))
}

/// How a submission stream's reader ended.
enum StreamEnd {
    /// The node ended the stream without a status.
    Closed,
    Failed(tonic::Status),
    /// With failover: the node answers batches `UNAVAILABLE` and commits
    /// nothing (why, for the log); the reader stopped reading.
    CannotCommit(String),
}

/// Reads one submission stream's results and records them. A batch is
/// answered once: whoever takes it out of `inflight` records it, and a
/// stream's reader is stopped before its batches are resent elsewhere, so
/// a late answer cannot count a transfer twice.
struct Reader {
    inflight: Arc<Mutex<HashMap<u64, InFlight>>>,
    stats: Arc<Stats>,
    /// When the bank's latest answer came, in ms since `stats.t0`.
    last_answer_ms: Arc<AtomicU64>,
    /// When the bank's latest answer that settled a transfer (committed or
    /// rejected for good) came, in ms since `stats.t0`.
    last_progress_ms: Arc<AtomicU64>,
    /// With failover: where transfers to resend go, and how long to keep at
    /// it (and how long to take `UNAVAILABLE` answers on one stream).
    retry: Option<(mpsc::UnboundedSender<Retry>, Failover)>,
    /// The replica the stream goes to (for the log).
    endpoint: String,
}

impl Reader {
    /// Reads until the stream ends; with failover, also stops (and the
    /// stream is dropped) once the node answers [`UNAVAILABLE_RUN`] batches
    /// in a row `UNAVAILABLE` in full, or answers `UNAVAILABLE` for the stall
    /// time, with nothing settled meanwhile: a leader that cannot commit
    /// would otherwise be sent the same transfers until `--failover-timeout`.
    async fn run(self, mut responses: tonic::Streaming<pb::SubmitBatchResponse>) -> Result<StreamEnd> {
        // Batches answered `UNAVAILABLE` in full since the last answer that
        // settled anything, and when the first `UNAVAILABLE` of them came.
        let mut unavailable_run = 0u32;
        let mut unavailable_since: Option<Instant> = None;
        loop {
            let resp = match responses.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(StreamEnd::Closed),
                Err(s) => return Ok(StreamEnd::Failed(s)),
            };
            let now = Instant::now();
            self.last_answer_ms.store(self.stats.ms_at(now), Ordering::Relaxed);
            let Some(batch) = self.inflight.lock().remove(&resp.request_id) else {
                bail!("a response for unknown request {}", resp.request_id);
            };
            if resp.results.len() != batch.ids.len() {
                bail!("{} results for {} transfers", resp.results.len(), batch.ids.len());
            }
            if self.retry.is_none() || resp.results.iter().any(|r| !unresolved(r, batch.resent)) {
                self.last_progress_ms.store(self.stats.ms_at(now), Ordering::Relaxed);
            }
            match &self.retry {
                Some((queue, f)) if resp.results.iter().any(|r| unresolved(r, batch.resent)) => {
                    let unavailable = resp.results.iter().filter(|r| is_unavailable(r)).count();
                    if resp.results.iter().any(|r| !unresolved(r, batch.resent)) {
                        unavailable_run = 0;
                        unavailable_since = None;
                    } else if unavailable > 0 {
                        unavailable_since.get_or_insert(now);
                        if unavailable == resp.results.len() {
                            unavailable_run += 1;
                        }
                    }
                    // Resent for `--failover-timeout` already: the fate of
                    // what is still open stays unknown.
                    let expired = batch.retry_since.is_some_and(|t| now.duration_since(t) > f.give_up);
                    let InFlight {
                        ids,
                        ops,
                        resent,
                        retry_since,
                        _permit,
                        ..
                    } = batch;
                    let mut again = InFlight {
                        ids: Vec::new(),
                        ops: Vec::new(),
                        sent_at: now,
                        resent: true,
                        retry_since: Some(retry_since.unwrap_or(now)),
                        _permit,
                    };
                    let mut done = Vec::with_capacity(ids.len());
                    let mut open = 0u64;
                    for (((tx, t), op), r) in ids.into_iter().zip(ops).zip(&resp.results) {
                        if !unresolved(r, resent) {
                            done.push((now.duration_since(t), reason_of(r), tx));
                        } else if expired {
                            open += 1;
                        } else {
                            again.ids.push((tx, t));
                            again.ops.push(op);
                        }
                    }
                    self.stats.record_batch(now, done.into_iter());
                    self.stats.unresolved.fetch_add(open, Ordering::Relaxed);
                    if !again.ids.is_empty() {
                        let _ = queue.send((now + RESEND_DELAY, again));
                    }
                    let stalled_for = unavailable_since.map_or(Duration::ZERO, |t| now.duration_since(t));
                    if unavailable_run >= UNAVAILABLE_RUN || stalled_for >= f.stall {
                        return Ok(StreamEnd::CannotCommit(format!(
                            "{} answers UNAVAILABLE ({unavailable_run} batches in full, over {} ms) \
                             and commits nothing",
                            self.endpoint,
                            stalled_for.as_millis()
                        )));
                    }
                }
                _ => {
                    unavailable_run = 0;
                    unavailable_since = None;
                    self.stats.record_batch(
                        now,
                        batch
                            .ids
                            .iter()
                            .zip(&resp.results)
                            .map(|((tx, t), r)| (now.duration_since(*t), reason_of(r), *tx)),
                    )
                }
            }
        }
    }
}

/// One open submission stream.
struct Session {
    tx: mpsc::UnboundedSender<pb::SubmitBatchRequest>,
    reader: JoinHandle<Result<StreamEnd>>,
    /// The reader has ended (its handle must not be polled again).
    done: bool,
    opened: Instant,
    endpoint: String,
}

/// Why a stream is dropped, and where to look for the leader.
struct Trouble {
    why: String,
    /// The leader, as a replica named it.
    hint: Option<String>,
    health: Health,
}

/// One bank's sender over `SubmitClientBatches`: takes batches of jobs,
/// keeps at most `window` transfers in flight, and records every result.
/// Batches still queued at `stop_at` are dropped (not submitted, not
/// counted). One stream per bank: a message per batch, no per-call cost.
/// With failover, the stream is replaced whenever it fails or stalls.
struct Driver {
    link: Arc<Link>,
    stats: Arc<Stats>,
    bar: ProgressBar,
    failover: Option<Failover>,
    inflight: Arc<Mutex<HashMap<u64, InFlight>>>,
    last_answer_ms: Arc<AtomicU64>,
    last_progress_ms: Arc<AtomicU64>,
    retry_tx: mpsc::UnboundedSender<Retry>,
    next_id: u64,
    /// Since when (ms since `stats.t0`) the bank has been looking for a leader.
    outage_since_ms: Option<u64>,
    /// Wait before the next reconnect of the same outage.
    backoff: Duration,
}

impl Driver {
    async fn open(&self) -> Result<Session, tonic::Status> {
        let (_, endpoint, channel) = self.link.current();
        let (tx, rx) = mpsc::unbounded_channel();
        let responses = BankServiceClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .submit_client_batches(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        let reader = Reader {
            inflight: self.inflight.clone(),
            stats: self.stats.clone(),
            last_answer_ms: self.last_answer_ms.clone(),
            last_progress_ms: self.last_progress_ms.clone(),
            retry: self.failover.map(|f| (self.retry_tx.clone(), f)),
            endpoint: endpoint.clone(),
        };
        Ok(Session {
            tx,
            reader: tokio::spawn(reader.run(responses)),
            done: false,
            opened: Instant::now(),
            endpoint,
        })
    }

    /// Sends a new batch (its window already taken).
    fn submit(&mut self, s: &Session, batch: Vec<Job>, permit: OwnedSemaphorePermit) {
        self.stats.submitted.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let sent_at = Instant::now();
        let mut ids = Vec::with_capacity(batch.len());
        let mut operations = Vec::with_capacity(batch.len());
        for (op, scheduled) in batch {
            ids.push((op.tx_id, scheduled.unwrap_or(sent_at)));
            operations.push(op.wire);
        }
        let ops = if self.failover.is_some() {
            operations.clone()
        } else {
            Vec::new()
        };
        self.next_id += 1;
        self.inflight.lock().insert(
            self.next_id,
            InFlight {
                ids,
                ops,
                sent_at,
                resent: false,
                retry_since: None,
                _permit: permit,
            },
        );
        // A stream that is gone says why through its reader.
        let _ = s.tx.send(pb::SubmitBatchRequest {
            operations,
            request_id: self.next_id,
        });
    }

    /// Sends transfers put back by the reader again, under a new request id.
    fn resend(&mut self, s: &Session, mut b: InFlight) {
        b.sent_at = Instant::now();
        b.resent = true;
        let operations = b.ops.clone();
        self.next_id += 1;
        self.inflight.lock().insert(self.next_id, b);
        let _ = s.tx.send(pb::SubmitBatchRequest {
            operations,
            request_id: self.next_id,
        });
    }

    /// What a stream's end means: without failover, the run's end for this
    /// bank (`Ok(None)` when the node closed the stream cleanly, as
    /// before); with it, where to look for the leader.
    fn ended(&self, end: Result<Result<StreamEnd>, tokio::task::JoinError>) -> Result<Option<Trouble>> {
        let end = end??;
        let Some(_) = self.failover else {
            return match end {
                StreamEnd::Closed => Ok(None),
                StreamEnd::Failed(s) => bail!("submission stream failed: {s}"),
                StreamEnd::CannotCommit(why) => bail!("{why}"),
            };
        };
        let st = match end {
            StreamEnd::Closed => {
                return Ok(Some(Trouble {
                    why: "the node ended the stream".into(),
                    hint: None,
                    health: Health::Dead,
                }))
            }
            // Another replica may lead (or be about to); this one is tried
            // again last, unless it is the only one left.
            StreamEnd::CannotCommit(why) => {
                return Ok(Some(Trouble {
                    why,
                    hint: None,
                    health: Health::CannotCommit,
                }))
            }
            StreamEnd::Failed(st) => st,
        };
        let why = format!("stream failed: {}: {}", st.code(), st.message());
        let e = SdkError::from(st);
        match e {
            SdkError::NotLeader { leader } => Ok(Some(Trouble {
                why,
                hint: leader,
                health: Health::Alive,
            })),
            e if worth_reconnecting(&e) => Ok(Some(Trouble {
                why,
                hint: None,
                health: health_of(&e),
            })),
            e => Err(anyhow::Error::new(e).context("submission stream failed")),
        }
    }

    /// With failover: a stream that has answered nothing for the stall
    /// time while a batch has waited as long (a stopped or cut-off leader
    /// keeps the connection and says nothing).
    fn stalled(&self, s: &Session) -> Option<Trouble> {
        let stall = self.failover?.stall;
        let now = Instant::now();
        let last = self.stats.t0 + Duration::from_millis(self.last_answer_ms.load(Ordering::Relaxed));
        if now.duration_since(last.max(s.opened)) < stall {
            return None;
        }
        let waiting = self
            .inflight
            .lock()
            .values()
            .any(|b| now.duration_since(b.sent_at) >= stall);
        waiting.then(|| Trouble {
            why: format!("no answer from {} for {stall:?}", s.endpoint),
            hint: None,
            health: Health::Dead,
        })
    }

    /// Drops the stream, finds the leader (first the replica `t.hint`
    /// names), opens a stream there and resends every unanswered batch: the
    /// same signed operations, their latency still counted from the first
    /// send. Fails only when no leader has answered for `give_up` (answers
    /// that settle nothing, `UNAVAILABLE`, do not count).
    async fn reconnect(&mut self, old: Option<Session>, t: Trouble) -> Result<Session> {
        let f = self.failover.expect("reconnecting needs failover");
        if let Some(mut s) = old {
            if !s.done {
                s.reader.abort();
                let _ = (&mut s.reader).await;
            }
        }
        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        let now_ms = self.stats.ms_at(Instant::now());
        let last_progress = self.last_progress_ms.load(Ordering::Relaxed);
        let since = match self.outage_since_ms {
            Some(t) if last_progress <= t => {
                // Nothing settled since the last reconnect: the replicas
                // are electing (a follower opens a stream and then answers
                // NOT_LEADER at once) or the one left cannot commit, so
                // resending every batch at once again would only load them.
                self.backoff = (self.backoff * 2).clamp(Duration::from_millis(100), Duration::from_millis(500));
                tokio::time::sleep(self.backoff).await;
                t
            }
            _ => now_ms,
        };
        self.outage_since_ms = Some(since);
        let Trouble {
            why,
            mut hint,
            mut health,
        } = t;
        let mut last_err = why.clone();
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.stats.ms_at(Instant::now()).saturating_sub(since) > f.give_up.as_millis() as u64 {
                bail!(
                    "{}: no leader answered (or committed) for {:?} (last: {last_err})",
                    self.link.name,
                    f.give_up
                );
            }
            let (generation, _, _) = self.link.current();
            match self.link.relocate(generation, hint.take().as_deref(), health).await {
                Ok(_) => match tokio::time::timeout(f.stall, self.open()).await {
                    Ok(Ok(s)) => {
                        let n = self.resend_all(&s);
                        let msg = format!(
                            "txgen: {}: {why}; reconnected to {}, {n} batches resent",
                            self.link.name, s.endpoint
                        );
                        self.bar.suspend(|| eprintln!("{msg}"));
                        return Ok(s);
                    }
                    Ok(Err(st)) => {
                        last_err = format!("opening a stream: {st}");
                        let e = SdkError::from(st);
                        health = health_of(&e);
                        if let SdkError::NotLeader { leader } = e {
                            hint = leader;
                        }
                    }
                    Err(_) => {
                        last_err = "no answer opening a stream".into();
                        health = Health::Dead;
                    }
                },
                Err(e) => {
                    last_err = format!("{e:#}");
                    // Every replica tried is marked already.
                    health = Health::Unknown;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Sends every batch in flight again on `s`, oldest first; the count.
    fn resend_all(&self, s: &Session) -> usize {
        let now = Instant::now();
        let mut reqs: Vec<pb::SubmitBatchRequest> = self
            .inflight
            .lock()
            .iter_mut()
            .map(|(id, b)| {
                b.sent_at = now;
                b.resent = true;
                pb::SubmitBatchRequest {
                    operations: b.ops.clone(),
                    request_id: *id,
                }
            })
            .collect();
        reqs.sort_unstable_by_key(|r| r.request_id);
        let n = reqs.len();
        for r in reqs {
            let _ = s.tx.send(r);
        }
        n
    }

    /// Drives the bank's stream until every submitted transfer has its
    /// result (or, without failover, the stream ends). With failover,
    /// whatever is still open when it ends (it fails only when no leader is
    /// found: the reader has ended or been stopped by then) is counted as
    /// unresolved.
    async fn run(
        mut self,
        mut batches: mpsc::Receiver<Vec<Job>>,
        mut retries: mpsc::UnboundedReceiver<Retry>,
        window: usize,
        stop_at: Instant,
    ) -> Result<()> {
        let mut delayed: VecDeque<Retry> = VecDeque::new();
        let r = self
            .drive(&mut batches, &mut retries, &mut delayed, window, stop_at)
            .await;
        if self.failover.is_some() {
            while let Ok(b) = retries.try_recv() {
                delayed.push_back(b);
            }
            let unanswered: usize = self.inflight.lock().drain().map(|(_, b)| b.ids.len()).sum();
            let put_back: usize = delayed.iter().map(|(_, b)| b.ids.len()).sum();
            self.stats
                .unresolved
                .fetch_add((unanswered + put_back) as u64, Ordering::Relaxed);
        }
        r
    }

    async fn drive(
        &mut self,
        batches: &mut mpsc::Receiver<Vec<Job>>,
        retries: &mut mpsc::UnboundedReceiver<Retry>,
        delayed: &mut VecDeque<Retry>,
        window: usize,
        stop_at: Instant,
    ) -> Result<()> {
        let permits = Arc::new(Semaphore::new(window));
        let mut s = match self.open().await {
            Ok(s) => s,
            Err(st) if self.failover.is_some() => {
                let t = Trouble {
                    why: format!("opening a stream: {st}"),
                    hint: None,
                    health: Health::Dead,
                };
                self.reconnect(None, t).await?
            }
            Err(st) => return Err(st.into()),
        };
        let mut input = true;
        // A batch taken from the queue, waiting for its window.
        let mut waiting: Option<Vec<Job>> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let never = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let draining = !input && waiting.is_none();
            let want = waiting.as_ref().map_or(1, |b| b.len().clamp(1, window)) as u32;
            let due = delayed.front().map_or(never, |r| r.0);
            let trouble = tokio::select! {
                end = &mut s.reader, if !s.done => {
                    s.done = true;
                    match self.ended(end)? {
                        Some(t) => Some(t),
                        None => return Ok(()),
                    }
                }
                Some(r) = retries.recv() => {
                    delayed.push_back(r);
                    None
                }
                _ = tokio::time::sleep_until(due.into()), if !delayed.is_empty() => {
                    let now = Instant::now();
                    while delayed.front().is_some_and(|r| r.0 <= now) {
                        let (_, b) = delayed.pop_front().expect("checked");
                        self.resend(&s, b);
                    }
                    None
                }
                b = batches.recv(), if input && waiting.is_none() => {
                    match b {
                        Some(b) => waiting = Some(b),
                        None => input = false,
                    }
                    None
                }
                p = permits.clone().acquire_many_owned(want), if waiting.is_some() => {
                    let batch = waiting.take().expect("checked");
                    if Instant::now() < stop_at {
                        self.submit(&s, batch, p.expect("the window is never closed"));
                    }
                    None
                }
                _ = tokio::time::sleep_until(stop_at.into()), if input || waiting.is_some() => {
                    input = false;
                    waiting = None;
                    batches.close();
                    None
                }
                _ = tick.tick(), if self.failover.is_some() => self.stalled(&s),
                // Every submitted transfer has its result (nothing in
                // flight, nothing waiting to be resent).
                _ = permits.acquire_many(window as u32), if draining => break,
            };
            if let Some(t) = trouble {
                s = self.reconnect(Some(s), t).await?;
            }
        }
        // Closing the request stream lets the node end the stream.
        drop(s.tx);
        Ok(())
    }
}

#[derive(Serialize)]
struct Report {
    settings: RunArgs,
    mode: &'static str,
    submitted: u64,
    committed: u64,
    rejected: BTreeMap<String, u64>,
    rejected_total: u64,
    duration_s: f64,
    committed_tps: f64,
    latency_ms_p50: f64,
    latency_ms_p90: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    presigned: u64,
    presign_s: f64,
    /// Wall-clock time (Unix seconds) at which the timed phase started: the
    /// second `t` of `per_second` began at `started_unix_s + t`, which lines
    /// it up with the node's logs and the soak's samples.
    started_unix_s: f64,
    calibration: Option<Calibration>,
    ceiling_ratio: Option<f64>,
    per_second: Vec<serde_json::Value>,
    /// Submission streams dropped and opened again (a failed or stalled
    /// stream, a replica that does not lead), each resending its bank's
    /// unanswered batches.
    reconnects: u64,
    /// Gaps of more than 250 ms between consecutive acknowledgements of
    /// committed transfers (any bank) during the run, oldest first; at most
    /// 10,000 are listed. A leader killed at T: the stall spanning T ends at
    /// the first commit after it.
    stalls: Vec<Stall>,
    /// Stalls in all, listed or not.
    stalls_total: u64,
    /// The longest stall (0 without one).
    longest_stall_ms: u64,
    /// When the last committed transfer was acknowledged (0: none was).
    last_commit_unix_ms: u64,
    /// With replicas: transfers submitted whose fate the run leaves open
    /// (never answered, or answered only `UNAVAILABLE`, or `DUPLICATE` for a
    /// resent copy, until `--failover-timeout`); in neither `committed` nor
    /// `rejected`, and not in the receipts. Any makes txgen exit non-zero.
    unresolved: u64,
    /// Stream failures that ended the run early (empty for a clean run).
    errors: Vec<String>,
}

/// A gap between two consecutive commit acknowledgements.
#[derive(Serialize)]
struct Stall {
    start_unix_ms: u64,
    end_unix_ms: u64,
    gap_ms: u64,
}

fn plot(path: &Path, per_second: &[serde_json::Value]) -> Result<()> {
    use plotters::prelude::*;
    let tps: Vec<(f64, f64)> = per_second
        .iter()
        .map(|s| (s["t"].as_f64().unwrap_or(0.0), s["committed"].as_f64().unwrap_or(0.0)))
        .collect();
    let p99: Vec<(f64, f64)> = per_second
        .iter()
        .map(|s| {
            (
                s["t"].as_f64().unwrap_or(0.0),
                s["latency_ms_p99"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let p50: Vec<(f64, f64)> = per_second
        .iter()
        .map(|s| {
            (
                s["t"].as_f64().unwrap_or(0.0),
                s["latency_ms_p50"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let t_max = tps.last().map_or(1.0, |p| p.0 + 1.0);
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(320);
    let y_max = tps.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&top)
        .caption("committed transfers per second", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    c.configure_mesh().x_desc("s").y_desc("tx/s").draw()?;
    c.draw_series(LineSeries::new(tps, &BLUE))?;
    let l_max = p99.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&bottom)
        .caption("latency (ms)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..l_max)?;
    c.configure_mesh().x_desc("s").y_desc("ms").draw()?;
    c.draw_series(LineSeries::new(p99, &RED))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    c.draw_series(LineSeries::new(p50, &GREEN))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let mut rng = match args.seed {
        Some(s) => rand::rngs::StdRng::seed_from_u64(s),
        None => rand::rngs::StdRng::from_entropy(),
    };
    if args.accounts < 2 {
        bail!("--accounts must be at least 2");
    }
    if u32::try_from(args.accounts).is_err() {
        bail!("--accounts must fit in a u32");
    }
    let duration: Duration = *args.duration;
    let presign_n = expected_transfers(&args).min(args.presign_max);
    check_memory(presign_n)?;
    eprintln!("txgen: setting up {} accounts…", args.accounts);
    let world = Arc::new(setup(&args, &mut rng).await?);
    let mut presigned = PresignedRun {
        plan: plan(&args, presign_n, args.accounts, &mut rng),
        signatures: Vec::new(),
        base_nonce: rng.gen(),
        first_send_ms: 0,
        // The open-loop rate, or 80k/s for a closed loop.
        rate: args.rate.unwrap_or(80_000.0).max(1.0),
        validity_ms: args.validity.as_millis() as u64,
    };
    eprintln!("txgen: pre-signing {presign_n} transfers…");
    let t = Instant::now();
    // Send times count from the end of pre-signing, which for a long soak
    // takes minutes: time a sample, extrapolate (with a margin), and date
    // every transfer from there, or the first ones would expire unsent.
    let sample_n = presign_n.min(20_000) as usize;
    let t_sample = Instant::now();
    presigned.plan[..sample_n].par_iter().for_each(|p| {
        let _ = world.sign(*p, 0, 0);
    });
    let presign_est_ms =
        (t_sample.elapsed().as_secs_f64() * 1000.0 * presign_n as f64 / sample_n.max(1) as f64 * 1.2) as u64;
    presigned.first_send_ms = world.node_now_ms() + presign_est_ms;
    presigned.sign_all(&world);
    let presign_s = t.elapsed().as_secs_f64();
    let validity_ms = presigned.validity_ms;
    let calibration = args.calibrate.then(|| {
        eprintln!(
            "txgen: calibrating verification on {} threads…",
            rayon::current_num_threads()
        );
        let n = presigned.len().min(CALIBRATE_MAX);
        calibrate((0..n).into_par_iter().map(|i| presigned.op(&world, i)).collect())
    });

    let stats = Arc::new(Stats {
        t0: Instant::now(),
        inner: Mutex::new(StatsInner::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)),
        committed: AtomicU64::new(0),
        submitted: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        unresolved: AtomicU64::new(0),
    });
    // Arrivals stop at the deadline; what an open loop still has queued then
    // gets a grace period to be sent, after which it is dropped (not counted).
    let run_for = if args.transfers.is_some() {
        Duration::from_secs(24 * 3600)
    } else {
        duration
    };
    let stop_at = Instant::now()
        + run_for
        + if args.rate.is_some() {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
    let batch_max = args.batch.clamp(1, 4096);
    // One sender per bank. Closed loop: a short queue, so the generator waits
    // for the window. Open loop: deep, because arrivals do not wait for the node.
    let depth = if args.rate.is_some() { 1 << 16 } else { 4 };
    let limit = args.transfers.unwrap_or(u64::MAX);
    let bar = ProgressBar::new(if args.transfers.is_some() {
        limit
    } else {
        duration.as_secs()
    });
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {msg}").expect("template"));
    // A single node has nowhere to fail over to: its failed stream ends the run.
    let failover = world
        .banks
        .first()
        .is_some_and(|l| l.endpoints.len() > 1)
        .then(|| Failover {
            stall: *args.stall_timeout,
            give_up: *args.failover_timeout,
        });
    let mut senders: Vec<mpsc::Sender<Vec<Job>>> = Vec::new();
    let mut tasks = Vec::new();
    for b in &world.banks {
        let (tx, rx) = mpsc::channel::<Vec<Job>>(depth);
        senders.push(tx);
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            link: b.clone(),
            stats: stats.clone(),
            bar: bar.clone(),
            failover,
            inflight: Arc::new(Mutex::new(HashMap::new())),
            last_answer_ms: Arc::new(AtomicU64::new(0)),
            last_progress_ms: Arc::new(AtomicU64::new(0)),
            retry_tx,
            next_id: 0,
            outage_since_ms: None,
            backoff: Duration::ZERO,
        };
        tasks.push(tokio::spawn(driver.run(
            rx,
            retry_rx,
            args.window.max(batch_max),
            stop_at,
        )));
    }
    let t0 = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let started_unix_s = started_unix.as_secs_f64();
    eprintln!("txgen: running");
    let stats_t0 = stats.t0;
    let deadline = t0 + duration;
    let poisson = args.rate.map(|r| rand_distr::Exp::new(r).expect("rate > 0"));
    let mut next_at = t0;
    let mut i: u64 = 0;
    let mut extra_rng = rand::rngs::StdRng::seed_from_u64(rng.gen());
    let mut last_tick = Instant::now();
    // Transfers waiting to be sent, per bank (the payer's own bank submits:
    // a bank acts for its clients only).
    let mut pending: Vec<Vec<Job>> = (0..senders.len()).map(|_| Vec::new()).collect();
    // Open loop: wakes once a millisecond and sends what arrived meanwhile,
    // rather than sleeping once per transfer.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    'run: loop {
        if i >= limit || (args.transfers.is_none() && Instant::now() >= deadline) {
            break;
        }
        let now = if poisson.is_some() {
            tick.tick().await;
            Instant::now()
        } else {
            Instant::now()
        };
        // Closed loop: one batch's worth; open loop: every arrival due by now.
        let mut produced = 0;
        while i < limit && produced < batch_max * senders.len() {
            let scheduled = match &poisson {
                Some(exp) => {
                    if next_at > now {
                        break;
                    }
                    let at = next_at;
                    next_at += Duration::from_secs_f64(exp.sample(&mut extra_rng));
                    Some(at)
                }
                None => None,
            };
            let (op, payer) = if (i as usize) < presigned.len() {
                (
                    Outgoing::from(presigned.op(&world, i as usize)),
                    presigned.plan[i as usize].payer,
                )
            } else {
                let p = plan(&args, 1, args.accounts, &mut extra_rng)[0];
                (
                    world
                        .sign(
                            p,
                            presigned.base_nonce.wrapping_add(i),
                            world.node_now_ms() + validity_ms,
                        )
                        .into(),
                    p.payer,
                )
            };
            let bank = world.bank_of[payer as usize];
            pending[bank].push((op, scheduled));
            i += 1;
            produced += 1;
            if pending[bank].len() >= batch_max {
                let full = std::mem::take(&mut pending[bank]);
                if !send_batch(&senders[bank], full, deadline, args.transfers.is_none()).await {
                    break 'run;
                }
            }
        }
        // What is left goes now (open loop: these arrived; closed loop: the
        // run's tail, or a bank that got fewer than a batch this round).
        if poisson.is_some() || i >= limit {
            for (bank, jobs) in pending.iter_mut().enumerate() {
                if !jobs.is_empty()
                    && !send_batch(&senders[bank], std::mem::take(jobs), deadline, args.transfers.is_none()).await
                {
                    break 'run;
                }
            }
        }
        if last_tick.elapsed() > Duration::from_millis(250) {
            last_tick = Instant::now();
            let c = stats.committed.load(Ordering::Relaxed);
            bar.set_position(if args.transfers.is_some() {
                c
            } else {
                t0.elapsed().as_secs()
            });
            bar.set_message(format!(
                "committed {c}, {:.0} tx/s",
                c as f64 / t0.elapsed().as_secs_f64()
            ));
        }
    }
    drop(senders);
    // A stream that failed (the node died, say) ends the run; everything
    // acknowledged until then is still reported and written out.
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors.dedup();
    let elapsed = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let inner = std::mem::replace(&mut *stats.inner.lock(), StatsInner::new(Histogram::new(3)?));
    // Instants as Unix ms, on the clock `started_unix_s` was read from.
    let unix_ms = |at: Instant| {
        let since =
            at.saturating_duration_since(t0).as_millis() as i128 - t0.saturating_duration_since(at).as_millis() as i128;
        (started_unix.as_millis() as i128 + since) as u64
    };
    let stall = |(from, to): (Instant, Instant)| {
        let (start_unix_ms, end_unix_ms) = (unix_ms(from), unix_ms(to));
        Stall {
            start_unix_ms,
            end_unix_ms,
            gap_ms: end_unix_ms - start_unix_ms,
        }
    };
    let stalls: Vec<Stall> = inner.stalls.iter().copied().map(stall).collect();
    let hist = &inner.hist;
    let rejected = inner.rejected.clone();
    let committed = stats.committed.load(Ordering::Relaxed);
    let offset = t0.duration_since(stats_t0).as_secs_f64();
    let per_second: Vec<serde_json::Value> = inner
        .seconds
        .iter()
        .enumerate()
        .map(|(s, sec)| {
            let (p50, p99) = sec.lat.as_ref().map_or((0.0, 0.0), |h| (ms(h, 0.5), ms(h, 0.99)));
            serde_json::json!({"t": s as f64 - offset, "committed": sec.committed, "rejected": sec.rejected,
                               "latency_ms_p50": p50, "latency_ms_p99": p99})
        })
        .collect();
    let committed_tps = committed as f64 / elapsed;
    let report = Report {
        mode: if args.rate.is_some() {
            "open_loop"
        } else {
            "closed_loop"
        },
        submitted: stats.submitted.load(Ordering::Relaxed),
        committed,
        rejected_total: rejected.values().sum(),
        rejected,
        duration_s: elapsed,
        committed_tps,
        latency_ms_p50: ms(hist, 0.5),
        latency_ms_p90: ms(hist, 0.9),
        latency_ms_p99: ms(hist, 0.99),
        latency_ms_max: if hist.is_empty() {
            0.0
        } else {
            hist.max() as f64 / 1000.0
        },
        presigned: presign_n,
        presign_s,
        started_unix_s,
        ceiling_ratio: calibration.as_ref().map(|c| committed_tps / c.verify_ops_per_s),
        calibration,
        per_second,
        reconnects: stats.reconnects.load(Ordering::Relaxed),
        stalls,
        stalls_total: inner.stalls_total,
        longest_stall_ms: inner.longest_stall.map_or(0, |l| stall(l).gap_ms),
        last_commit_unix_ms: inner.last_commit.map_or(0, unix_ms),
        unresolved: stats.unresolved.load(Ordering::Relaxed),
        errors: errors.clone(),
        settings: args.clone(),
    };
    println!(
        "txgen {}: {} submitted, {} committed, {} rejected in {:.1}s",
        report.mode, report.submitted, report.committed, report.rejected_total, elapsed
    );
    println!("  committed_tps   {:.0}", report.committed_tps);
    println!(
        "  latency ms      p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        report.latency_ms_p50, report.latency_ms_p90, report.latency_ms_p99, report.latency_ms_max
    );
    if !report.rejected.is_empty() {
        println!("  rejected        {:?}", report.rejected);
    }
    if report.unresolved > 0 {
        println!(
            "  unresolved      {} (never answered, or only UNAVAILABLE: fate unknown, not in the receipts)",
            report.unresolved
        );
    }
    if report.reconnects > 0 || report.stalls_total > 0 {
        println!(
            "  failover        reconnects {}  stalls {} (over {} ms)  longest_stall_ms {}",
            report.reconnects,
            report.stalls_total,
            STALL_GAP.as_millis(),
            report.longest_stall_ms
        );
        for st in report.stalls.iter().take(10) {
            println!(
                "  stall           {} ms, unix ms {} to {}",
                st.gap_ms, st.start_unix_ms, st.end_unix_ms
            );
        }
        if report.stalls.len() > 10 {
            println!(
                "  stall           … {} more in the JSON report",
                report.stalls.len() - 10
            );
        }
    }
    if let Some(c) = &report.calibration {
        println!(
            "  ceiling         {:.0} verifications/s on {} threads; end-to-end / ceiling = {:.2}",
            c.verify_ops_per_s,
            c.threads,
            report.ceiling_ratio.unwrap_or(0.0)
        );
    }
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(p) = &args.receipts {
        let mut s = String::with_capacity(committed as usize * 65);
        for tx in inner.receipts.iter() {
            s.push_str(&tx.to_hex());
            s.push('\n');
        }
        std::fs::write(p, s)?;
    }
    if let Some(p) = &args.plot {
        plot(p, &report.per_second)?;
    }
    if !errors.is_empty() {
        bail!(
            "the run ended early ({} transfers unresolved): {}",
            report.unresolved,
            errors.join("; ")
        );
    }
    if report.unresolved > 0 {
        bail!(
            "{} transfers unresolved: never answered, or answered only UNAVAILABLE until --failover-timeout",
            report.unresolved
        );
    }
    Ok(())
}

fn calibrate_only(args: RunArgs) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed.unwrap_or(7));
    let n = args.transfers.unwrap_or(200_000);
    let keys: Vec<SigningKey> = (0..args.accounts.max(2))
        .map(|_| SigningKey::generate(&mut rng))
        .collect();
    let world = World {
        chain_id: "ruble-dev".into(),
        keys,
        bank_of: vec![],
        banks: vec![],
        node_ms_at: (0, Instant::now()),
    };
    let schedule = plan(&args, n.min(CALIBRATE_MAX as u64), args.accounts.max(2), &mut rng);
    let ops: Vec<SignedOp> = schedule
        .par_iter()
        .enumerate()
        .map(|(i, p)| world.sign(*p, i as u64, u64::MAX))
        .collect();
    let c = calibrate(ops);
    println!("{}", serde_json::to_string_pretty(&c)?);
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&c)?)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Calibrate(a)) => calibrate_only(a),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(cli.run)),
    }
}
