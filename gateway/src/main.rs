//! `ruble-node`: the digital ruble ledger node.
//!
//! - `ruble-node dev --data-dir DIR`: a self-contained dev node (genesis, PKI,
//!   keys and funded accounts created on first start) on 127.0.0.1.
//! - `ruble-node run --config FILE`: a deployment; every setting is also a
//!   flag and an environment variable (`ruble-node run --help`).
//! - `ruble-node audit --data-dir DIR [--expect-committed FILE]`: replay and
//!   check the chain offline; prints JSON, exits 0 only if all is well.
//! - `ruble-node init --dir DIR --chain-id ID`: a new network's genesis,
//!   central-bank key, CA, certificates and `node.toml` (never overwrites).
//! - `ruble-node pki issue-bank|issue-node|issue-peer --dir DIR ...`: certificates from
//!   the network's CA.
//!
//! `init` and `pki` exit 0 on success (and for `--help`, `--version`), 4
//! when the network's CA (`DIR/pki/ca.pem`, `ca-key.pem`) cannot be loaded
//! or its key is not the certificate's (a key or certificate problem), and 1
//! otherwise: a bad argument or usage, a missing passphrase, a file they
//! would write that exists, a failed read or write. In every failure nothing
//! is left written. These are the operator CLIs' codes, whose 2 (a refusal
//! by the ledger) and 3 (the node unreachable) these offline commands never
//! meet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ruble_gateway::ctx::ClientLimits;
use ruble_gateway::devnet;
use ruble_gateway::init::{self as netinit, InitOptions};
use ruble_gateway::node::{self, NodeOptions, TlsFiles};
use ruble_ledger::pipeline::PipelineConfig;
use ruble_ledger::store::Store;
use ruble_ledger::types::{Limits, TxId};

// Operations are allocated on one thread and freed on another (gRPC workers,
// verifiers, the committer); mimalloc handles that without glibc's arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "ruble-node", version, about = "Digital ruble ledger node", long_about = None)]
struct Cli {
    /// Log format: `human` or `json` (filter with RUST_LOG, default `info`).
    #[arg(long, global = true, default_value = "human", env = "RUBLE_LOG_FORMAT")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a dev node on an embedded RocksDB with a dev genesis, PKI and keys
    /// (created on first start, reused later).
    Dev(DevArgs),
    /// Run a node from a configuration file (TOML); flags and RUBLE_* variables override it.
    Run(Box<ruble_gateway::config::RunArgs>),
    /// Replay the chain from genesis and check every signature, link, state
    /// hash and balance; prints a JSON summary; exit 0 only if all checks pass.
    Audit(AuditArgs),
    /// Create a new network's files in DIR: genesis, the central bank's
    /// encrypted key, a CA, the node's and the central bank's certificates
    /// and node.toml (all 0600). Refuses to overwrite any file.
    Init(InitArgs),
    /// Issue certificates with the network's CA (DIR/pki/ca.pem, ca-key.pem).
    #[command(subcommand)]
    Pki(PkiCmd),
}

#[derive(clap::Args, Debug)]
struct InitArgs {
    /// Directory for the network's files (created if missing; must not hold any of them).
    #[arg(long)]
    dir: PathBuf,
    /// The chain id (1 to 32 characters of a-z, 0-9, -), signed into every operation.
    #[arg(long, value_parser = netinit::parse_chain_id)]
    chain_id: String,
    /// How far ahead an operation's validity may end (e.g. 10m, 90s; at most 24h).
    #[arg(long, value_parser = netinit::parse_duration,
          default_value_t = netinit::DEFAULT_MAX_VALIDITY.into())]
    max_validity: humantime::Duration,
    /// Transfers of at least this many rubles (exact to the kopeck) are
    /// reported to the central bank; 0 turns reporting off.
    #[arg(long, default_value_t = netinit::Rubles(netinit::DEFAULT_REPORTING_THRESHOLD))]
    reporting_threshold: netinit::Rubles,
    /// Limits of business accounts: `unlimited` or
    /// `balance=RUBLES,payment=RUBLES,daily=RUBLES` (each may be `unlimited`).
    #[arg(long, default_value_t = netinit::LimitsArg(Limits::UNLIMITED))]
    business_limits: netinit::LimitsArg,
    /// Limits of retail accounts, as --business-limits.
    #[arg(long, default_value_t = netinit::LimitsArg(netinit::DEFAULT_RETAIL_LIMITS))]
    retail_limits: netinit::LimitsArg,
    /// Limits of banks' settlement accounts, as --business-limits.
    #[arg(long, default_value_t = netinit::LimitsArg(Limits::UNLIMITED))]
    settlement_limits: netinit::LimitsArg,
    /// A DNS name or IP address clients reach the node by (repeat for more);
    /// the node certificate's names. The --listen IP address is always
    /// added, and for 0.0.0.0 or :: the loopback addresses 127.0.0.1 and ::1
    /// (where the operator CLIs' --network-dir reach a wildcard listen).
    #[arg(long = "host", value_name = "NAME", value_parser = netinit::parse_host,
          default_values_t = netinit::DEFAULT_HOSTS.map(String::from))]
    hosts: Vec<String>,
    /// gRPC listen address written to node.toml.
    #[arg(long, default_value_t = netinit::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Metrics listen address written to node.toml (else the node's default, 127.0.0.1:9100).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// File holding the central bank key's passphrase (else $RUBLE_CB_PASSPHRASE,
    /// else asked twice on the terminal).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
// The variants are the subcommands' names (`issue-bank`, `issue-node`, `issue-peer`).
#[allow(clippy::enum_variant_names)]
enum PkiCmd {
    /// Issue a bank's mTLS client certificate (subject `bank:<hex>`):
    /// OUT/NAME.pem and OUT/NAME-key.pem.
    IssueBank(IssueBankArgs),
    /// Issue another node's server certificate: OUT/NAME.pem and OUT/NAME-key.pem.
    IssueNode(IssueNodeArgs),
    /// Issue a replica's node certificate for replication (CN `ruble-node`,
    /// server and client): OUT/NAME.pem and OUT/NAME-key.pem.
    #[command(after_help = ISSUE_PEER_HELP)]
    IssuePeer(IssuePeerArgs),
}

const ISSUE_PEER_HELP: &str = "\
Replicas replicate to each other over mutual TLS with these certificates; the
replication service refuses every other certificate of the CA (a bank's, the
central bank's, a server certificate from issue-node). Give each replica its
own, with --host the names and addresses the other replicas dial it by (the
host of its `raft` address in [[cluster.members]]), and point its node.toml at
it:

  [cluster]
  node_id = 4
  raft_listen = \"10.0.0.4:50061\"
  bootstrap = false            # joining a running cluster: an empty log
  tls = { ca = \"DIR/pki/ca.pem\", cert = \"OUT/NAME.pem\", key = \"OUT/NAME-key.pem\" }
  [[cluster.members]]          # one table per replica, this one included
  id = 4
  raft = \"10.0.0.4:50061\"
  client = \"https://10.0.0.4:50051\"

Then, with the replica running, add it from the central bank:
  ruble-admin --network-dir DIR cluster add --id 4 --raft 10.0.0.4:50061 --client https://10.0.0.4:50051

Example:
  ruble-node pki issue-peer --dir /srv/ruble --host node-4.cbr.example --host 10.0.0.4 --name node-4";

#[derive(clap::Args, Debug)]
struct IssueBankArgs {
    /// The network directory made by `ruble-node init` (its CA is DIR/pki).
    #[arg(long)]
    dir: PathBuf,
    /// The bank's account id (its ed25519 public key): rub1… address or 64 hex characters.
    #[arg(long, value_parser = netinit::parse_bank)]
    bank: ruble_ledger::types::AccountId,
    /// File name of the certificate (1 to 64 characters of a-z, 0-9, -).
    #[arg(long, value_parser = netinit::parse_name)]
    name: String,
    /// Directory to write to [default: DIR/pki/banks].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct IssueNodeArgs {
    /// The network directory made by `ruble-node init` (its CA is DIR/pki).
    #[arg(long)]
    dir: PathBuf,
    /// A DNS name or IP address of the node (repeat for more; at least one).
    #[arg(long = "host", value_name = "NAME", required = true, value_parser = netinit::parse_host)]
    hosts: Vec<String>,
    /// File name of the certificate (1 to 64 characters of a-z, 0-9, -).
    #[arg(long, value_parser = netinit::parse_name)]
    name: String,
    /// Directory to write to [default: DIR/pki/nodes].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct IssuePeerArgs {
    /// The network directory made by `ruble-node init` (its CA is DIR/pki).
    #[arg(long)]
    dir: PathBuf,
    /// A DNS name or IP address the other replicas reach this replica's
    /// replication service by (repeat for more; at least one).
    #[arg(long = "host", value_name = "NAME", required = true, value_parser = netinit::parse_host)]
    hosts: Vec<String>,
    /// File name of the certificate (1 to 64 characters of a-z, 0-9, -).
    #[arg(long, value_parser = netinit::parse_name)]
    name: String,
    /// Directory to write to [default: DIR/pki/peers].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct DevArgs {
    /// Directory for the chain, keys and certificates.
    #[arg(long, default_value = "dev-data", env = "RUBLE_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to serve gRPC on (loopback only in dev mode; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:50051", env = "RUBLE_LISTEN")]
    listen: SocketAddr,
    /// Address for Prometheus metrics (`/metrics`); off unless given.
    #[arg(long, env = "RUBLE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Operations admitted and not yet answered before RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 65_536, env = "RUBLE_MAX_INFLIGHT_OPS")]
    max_inflight_ops: usize,
    /// Largest block, in operations.
    #[arg(long, default_value_t = 8192, env = "RUBLE_MAX_BLOCK_OPS")]
    max_block_ops: usize,
    /// Longest a block gathers operations while the previous one is being
    /// committed, in milliseconds (a block is sealed as soon as the committer
    /// is free, so this only bounds a slow commit's effect).
    #[arg(long, default_value_t = 20, env = "RUBLE_MAX_BLOCK_WAIT_MS")]
    max_block_wait_ms: u64,
    /// Shortest time between two blocks that are not full, in milliseconds
    /// (fewer, larger blocks under a moderate load; 0 seals whenever the
    /// committer is free).
    #[arg(long, default_value_t = 2, env = "RUBLE_MIN_BLOCK_INTERVAL_MS")]
    min_block_interval_ms: u64,
    /// Nice value of the signature-verifier threads (0 = normal priority).
    /// Niced, verification takes the cycles the latency-critical threads
    /// (gRPC, sequencer, committer) leave, instead of delaying them.
    #[arg(long, env = "RUBLE_VERIFY_NICE")]
    verify_nice: Option<i32>,
    /// FAULT INJECTION for the crash harness only: acknowledge before the
    /// commit is durable. Never use it otherwise.
    #[arg(long, hide = true)]
    unsafe_ack_before_commit: bool,
    /// Run a local cluster of this many replicas (1 = a single node). Replica
    /// i serves clients on the `--listen` port + i - 1 and replicates on that
    /// port + 100 + i - 1, over mutual TLS with dev node certificates; every
    /// replica starts from the same dev data (`DIR/node<i>/`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=7))]
    replicas: u64,
    /// With --replicas: create the replicas' data, certificates and dev.json,
    /// then exit (before starting them one process each with --replica).
    #[arg(long, requires = "replicas")]
    prepare: bool,
    /// With --replicas: run only replica I of the cluster in this process
    /// (the others run in processes of their own, on the same --data-dir,
    /// --listen and --replicas, after one --prepare). A replica whose
    /// `node<I>/db`, `raft` and `raft-snapshots` were deleted starts again from the dev
    /// chain, outside the membership: remove it first and add it back
    /// (`ruble-admin cluster remove`, `cluster add`), and it catches up.
    #[arg(long, value_name = "I", conflicts_with = "prepare",
          value_parser = clap::value_parser!(u64).range(1..=7))]
    replica: Option<u64>,
    /// Reach replica ID's replication service at ADDR instead of its own
    /// port (for the fault test's proxies). Repeatable.
    #[arg(long = "peer", value_name = "ID=ADDR", hide = true, value_parser = parse_peer)]
    peers: Vec<(u64, String)>,
    /// FAULT INJECTION for the cluster fault test only: acknowledge a block
    /// before a quorum of replicas holds it. Never use it otherwise.
    #[arg(long, hide = true)]
    unsafe_ack_before_quorum: bool,
}

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s.split_once('=').ok_or("expected ID=HOST:PORT")?;
    let id = id.parse().map_err(|e| format!("replica id {id:?}: {e}"))?;
    addr.parse::<SocketAddr>()
        .map_err(|e| format!("address {addr:?}: {e}"))?;
    Ok((id, addr.to_string()))
}

#[derive(clap::Args, Debug)]
struct AuditArgs {
    /// A dev directory (containing `db/`) or a RocksDB directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// File of transfer hashes (one hex tx id per line) that must be committed.
    #[arg(long)]
    expect_committed: Option<PathBuf>,
}

/// Parses the command line. For `init` and `pki` a usage error exits 1, as
/// every other failure of theirs but a CA problem (clap's own 2 would read
/// as a refusal by the ledger); `--help` and `--version` exit 0.
fn parse_cli() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if e.use_stderr() && matches!(subcommand_name().as_deref(), Some("init" | "pki")) {
                let _ = e.print();
                std::process::exit(netinit::EXIT_FAILED);
            }
            e.exit()
        }
    }
}

/// The subcommand named on the command line, however malformed the rest.
fn subcommand_name() -> Option<String> {
    use clap::CommandFactory;
    Cli::command()
        .ignore_errors(true)
        .try_get_matches()
        .ok()?
        .subcommand_name()
        .map(String::from)
}

fn main() -> Result<()> {
    let cli = parse_cli();
    ruble_gateway::telemetry::init_tracing(&cli.log_format);
    match cli.cmd {
        Cmd::Init(a) => std::process::exit(report(a.json, init(a))),
        Cmd::Pki(p) => {
            let json = match &p {
                PkiCmd::IssueBank(a) => a.json,
                PkiCmd::IssueNode(a) => a.json,
                PkiCmd::IssuePeer(a) => a.json,
            };
            std::process::exit(report(json, pki(p)))
        }
        Cmd::Audit(a) => std::process::exit(audit(a)?),
        Cmd::Dev(d) => runtime()?.block_on(dev(d)),
        Cmd::Run(r) => {
            let cfg = r.resolve()?;
            runtime()?.block_on(run(cfg))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn serve_until_signal(opts: NodeOptions, on_ready: impl FnOnce(&node::RunningNode) -> Result<()>) -> Result<()> {
    let running = node::start(opts).await?;
    on_ready(&running)?;
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        node::shutdown_signal().await;
        tracing::info!("shutdown requested; finishing the block in flight");
        let _ = stop.send(true);
    });
    running.wait().await
}

async fn dev(a: DevArgs) -> Result<()> {
    if !a.listen.ip().is_loopback() {
        bail!(
            "dev mode serves on loopback only (its keys are unencrypted); use `ruble-node run` for {}",
            a.listen
        );
    }
    if a.replica.is_some() && !a.data_dir.join("dev.json").exists() {
        bail!(
            "--replica needs a prepared directory: run `ruble-node dev --data-dir {} --replicas {} --prepare` first",
            a.data_dir.display(),
            a.replicas
        );
    }
    let dir = a.data_dir.clone();
    let (genesis, tls) = tokio::task::spawn_blocking(move || devnet::ensure(&dir)).await??;
    if a.replicas > 1 {
        return dev_cluster(a, genesis, tls).await;
    }
    let opts = NodeOptions {
        db_dir: a.data_dir.join("db"),
        genesis: Some(genesis),
        listen: a.listen,
        metrics_listen: a.metrics_listen,
        tls: Some(TlsFiles {
            ca: tls.ca,
            cert: tls.cert,
            key: tls.key,
        }),
        limits: ClientLimits::default(),
        pipeline: PipelineConfig {
            unsafe_ack_before_commit: a.unsafe_ack_before_commit,
            ..dev_pipeline(&a)
        },
        shutdown_grace: Duration::from_secs(5),
        cluster: None,
    };
    let dir = a.data_dir.clone();
    serve_until_signal(opts, move |n| {
        let endpoint = format!("https://{}", n.addr);
        let mut m = devnet::DevManifest::load(&dir)?;
        m.endpoint = endpoint.clone();
        m.save(&dir)?;
        println!("{}", devnet::usage(&dir, &endpoint, n.metrics_addr));
        // A stable line for scripts and tests.
        println!(
            "RUBLE_NODE_READY addr={} metrics={}",
            n.addr,
            n.metrics_addr.map(|m| m.to_string()).unwrap_or_default()
        );
        Ok(())
    })
    .await
}

/// The pipeline settings `dev`'s flags give (the fault injection aside).
fn dev_pipeline(a: &DevArgs) -> PipelineConfig {
    PipelineConfig {
        max_inflight_ops: a.max_inflight_ops,
        max_block_ops: a.max_block_ops,
        max_block_wait: Duration::from_millis(a.max_block_wait_ms),
        min_block_interval: Duration::from_millis(a.min_block_interval_ms),
        verify_nice: a.verify_nice.unwrap_or(PipelineConfig::default().verify_nice),
        ..PipelineConfig::default()
    }
}

/// `ruble-node dev --replicas N`: N replicas in this process, or with
/// `--replica I` only replica I (after a `--prepare`).
async fn dev_cluster(a: DevArgs, genesis: ruble_ledger::state::Genesis, tls: devnet::DevTls) -> Result<()> {
    use ruble_gateway::node::{ClusterOptions, Member};
    let base = a.listen.port();
    if base == 0 || u32::from(base) + 100 + a.replicas as u32 > u32::from(u16::MAX) {
        bail!("--replicas needs a fixed --listen port (replica i uses port + i - 1 and port + 100 + i - 1)");
    }
    if a.replica.is_some_and(|i| i > a.replicas) {
        bail!("--replica must be one of 1..={}", a.replicas);
    }
    let host = a.listen.ip();
    let port = |off: u64| base + off as u16;
    let members: std::collections::BTreeMap<u64, Member> = (1..=a.replicas)
        .map(|n| {
            (
                n,
                Member {
                    raft_addr: std::net::SocketAddr::new(host, port(100 + n - 1)).to_string(),
                    client_endpoint: format!("https://{}", std::net::SocketAddr::new(host, port(n - 1))),
                },
            )
        })
        .collect();
    let endpoints: Vec<String> = members.values().map(|m| m.client_endpoint.clone()).collect();
    // Preparing writes shared files: done once, never by a single replica's
    // process (its siblings start beside it).
    if a.replica.is_none() {
        let dir = a.data_dir.clone();
        let n = a.replicas;
        tokio::task::spawn_blocking(move || devnet::ensure_replicas(&dir, n, &host.to_string())).await??;
        let mut m = devnet::DevManifest::load(&a.data_dir)?;
        m.endpoint = endpoints[0].clone();
        m.replicas = endpoints.clone();
        m.save(&a.data_dir)?;
    }
    if a.prepare {
        println!(
            "RUBLE_NODE_PREPARED dir={} replicas={}",
            a.data_dir.display(),
            endpoints.join(",")
        );
        return Ok(());
    }
    let ids: Vec<u64> = match a.replica {
        Some(i) => vec![i],
        None => (1..=a.replicas).collect(),
    };
    let mut running = Vec::new();
    for &n in &ids {
        let nd = a.data_dir.join(format!("node{n}"));
        let reseeded = match a.replica {
            Some(_) => {
                let dir = a.data_dir.clone();
                tokio::task::spawn_blocking(move || devnet::seed_replica(&dir, n)).await??
            }
            None => false,
        };
        let opts = NodeOptions {
            db_dir: nd.join("db"),
            genesis: Some(genesis.clone()),
            listen: std::net::SocketAddr::new(host, port(n - 1)),
            metrics_listen: a
                .metrics_listen
                .map(|m| std::net::SocketAddr::new(m.ip(), m.port() + (n - 1) as u16)),
            tls: Some(TlsFiles {
                ca: tls.ca.clone(),
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            }),
            limits: ClientLimits::default(),
            pipeline: dev_pipeline(&a),
            shutdown_grace: Duration::from_secs(5),
            cluster: Some(ClusterOptions {
                node_id: n,
                raft_listen: members[&n].raft_addr.parse()?,
                members: members.clone(),
                tls: Some(TlsFiles {
                    ca: a.data_dir.join("pki/peer-ca.pem"),
                    cert: nd.join("peer.pem"),
                    key: nd.join("peer-key.pem"),
                }),
                // A re-seeded replica 1 joins the cluster that exists.
                bootstrap: n == 1 && !reseeded,
                peer_addrs: a.peers.iter().cloned().collect(),
                unsafe_ack_before_quorum: a.unsafe_ack_before_quorum,
                rejoining: reseeded,
            }),
        };
        running.push(node::start(opts).await?);
    }
    // Ready means writes are served: not before the replicas elected a leader.
    running[0].wait_for_leader(Duration::from_secs(30)).await?;
    println!("{}", devnet::usage(&a.data_dir, &endpoints[0], running[0].metrics_addr));
    println!("replicas: {}", endpoints.join(" "));
    println!(
        "RUBLE_NODE_READY addr={} replicas={}",
        running[0].addr,
        endpoints.join(",")
    );
    node::shutdown_signal().await;
    tracing::info!("shutdown requested; stopping every replica");
    for r in running {
        r.shutdown().await?;
    }
    Ok(())
}

async fn run(cfg: ruble_gateway::config::NodeConfig) -> Result<()> {
    let opts = ruble_gateway::config::node_options(&cfg)?;
    serve_until_signal(opts, |n| {
        println!(
            "RUBLE_NODE_READY addr={} metrics={}",
            n.addr,
            n.metrics_addr.map(|m| m.to_string()).unwrap_or_default()
        );
        Ok(())
    })
    .await
}

/// What `init` and `pki` print: text or JSON on stdout, or the error on stderr.
trait Summary: serde::Serialize {
    fn human(&self) -> String;
}
impl Summary for netinit::InitReport {
    fn human(&self) -> String {
        netinit::InitReport::human(self)
    }
}
impl Summary for netinit::IssueReport {
    fn human(&self) -> String {
        netinit::IssueReport::human(self)
    }
}

fn report(json: bool, r: netinit::Result<impl Summary>) -> i32 {
    match r {
        Ok(s) if json => match serde_json::to_string_pretty(&s) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Ok(s) => {
            print!("{}", s.human());
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            e.exit_code()
        }
    }
}

fn init(a: InitArgs) -> netinit::Result<netinit::InitReport> {
    let mut o = InitOptions::new(&a.dir, a.chain_id);
    o.max_validity = a.max_validity.into();
    o.reporting_threshold = a.reporting_threshold.0;
    o.business_limits = a.business_limits.0;
    o.retail_limits = a.retail_limits.0;
    o.settlement_limits = a.settlement_limits.0;
    o.hosts = a.hosts;
    o.listen = a.listen;
    o.metrics_listen = a.metrics_listen;
    // Refuse bad options and existing files before asking for a passphrase.
    netinit::check(&o)?;
    let pass = netinit::read_passphrase(a.passphrase_file.as_deref())?;
    netinit::init(&o, &pass)
}

fn pki(p: PkiCmd) -> netinit::Result<netinit::IssueReport> {
    match p {
        PkiCmd::IssueBank(a) => netinit::issue_bank(&a.dir, a.bank, &a.name, a.out.as_deref()),
        PkiCmd::IssueNode(a) => netinit::issue_node(&a.dir, &a.hosts, &a.name, a.out.as_deref()),
        PkiCmd::IssuePeer(a) => netinit::issue_peer(&a.dir, &a.hosts, &a.name, a.out.as_deref()),
    }
}

fn read_expected(path: &Path) -> Result<Vec<TxId>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| TxId::from_hex(l).with_context(|| format!("bad hash {l:?}")))
        .collect()
}

fn audit(a: AuditArgs) -> Result<i32> {
    let db = if a.data_dir.join("db").is_dir() {
        a.data_dir.join("db")
    } else {
        a.data_dir.clone()
    };
    let expected = match &a.expect_committed {
        Some(p) => read_expected(p)?,
        None => Vec::new(),
    };
    // Read-only: works on a stopped node and beside a running one.
    let store = Store::open_read_only(&db).with_context(|| format!("opening {}", db.display()))?;
    let report = ruble_ledger::audit::audit(&store, &expected)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if report.ok { 0 } else { 1 })
}
