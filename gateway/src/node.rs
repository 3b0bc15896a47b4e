//! Starting and stopping a node: the ledger pipeline, the gRPC server (TLS,
//! health, reflection, the three services and the cluster's), the metrics
//! endpoint, and a graceful shutdown that finishes the block in flight.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ruble_ledger::pipeline::{CommitTimes, Pipeline, PipelineConfig};
use ruble_ledger::state::Genesis;
use ruble_ledger::Ledger;
use ruble_proto::v1::bank_service_server::BankServiceServer;
use ruble_proto::v1::central_bank_service_server::CentralBankServiceServer;
use ruble_proto::v1::cluster_service_server::ClusterServiceServer;
use ruble_proto::v1::wallet_service_server::WalletServiceServer;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::transport::Server;

use crate::backend::LedgerBackend;
use crate::budget::{BudgetedConn, ConnectionBudget, ConnectionCaps, StreamBudget, StreamCaps};
use crate::ctx::{ClientLimits, Ctx};
use crate::metrics::Metrics;
use crate::services::cluster::{ClusterSvc, Replicated};
use crate::services::{bank::BankSvc, central_bank::CentralBankSvc, wallet::Wallet};

/// PEM files for the server side of TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Heartbeat and election timeouts of the replicas (ms). An election
/// starts 300 to 600 ms after the last heartbeat: well above a loaded
/// machine's scheduling hiccups, and a failover in about a second.
const RAFT_HEARTBEAT_MS: u64 = 50;
const RAFT_ELECTION_MIN_MS: u64 = 300;
const RAFT_ELECTION_MAX_MS: u64 = 600;
/// How long the leader waits for each chunk of a snapshot it sends to a
/// replica (a new one, or one whose log it has purged): the last chunk's
/// answer comes once the replica has swapped its store for the snapshot and
/// loaded it, far longer than openraft's default 200 ms on a real chain (a
/// timed-out transfer is sent again whole).
const RAFT_INSTALL_SNAPSHOT_MS: u64 = 60_000;

/// One replica of a cluster, as every member knows it.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its replication service, `host:port`.
    pub raft_addr: String,
    /// Its client endpoint, `https://host:port` (named in `NOT_LEADER`).
    pub client_endpoint: String,
}

/// A node as one replica of a Raft group.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub node_id: u64,
    /// Where this replica's replication service listens.
    pub raft_listen: SocketAddr,
    /// Every replica, this one included.
    pub members: std::collections::BTreeMap<u64, Member>,
    /// The CA and this replica's node certificate (`CaBundle::issue_peer`);
    /// `None` is plaintext replication, for loopback tests only.
    pub tls: Option<TlsFiles>,
    /// Initialise the membership with `members` when this replica's log is
    /// empty (one replica of a new cluster does it).
    pub bootstrap: bool,
    /// Where this replica reaches a peer instead of the address the
    /// membership advertises for it (another route, e.g. through a proxy).
    pub peer_addrs: std::collections::BTreeMap<u64, String>,
    /// FAULT INJECTION for the cluster fault test only: acknowledge a block
    /// before a quorum holds it (`RaftSink::unsafe_ack_before_quorum`).
    pub unsafe_ack_before_quorum: bool,
    /// This replica's id was a member before and its data was lost: it
    /// stands for no election until its log shows it added back as a
    /// learner. Catching up, it replays the configurations in which it was a
    /// voter, and a campaign from it would depose the leader.
    pub rejoining: bool,
}

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// RocksDB directory.
    pub db_dir: PathBuf,
    /// Used to initialise an empty store (and checked against an existing one).
    pub genesis: Option<Genesis>,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    /// `None` means plaintext, allowed on loopback only.
    pub tls: Option<TlsFiles>,
    pub limits: ClientLimits,
    pub pipeline: PipelineConfig,
    /// How long in-flight RPCs get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// `Some`: this node is one replica of a cluster.
    pub cluster: Option<ClusterOptions>,
}

/// A started node.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
    /// The node's Raft, when it is a replica.
    raft: Option<ruble_ledger::raft::LedgerRaft>,
}

impl RunningNode {
    /// Stops accepting, lets in-flight requests finish, commits the block in
    /// flight and closes the store.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("node task")?
    }

    /// Waits until the node stops (after [`RunningNode::shutdown`] or a fatal error).
    pub async fn wait(self) -> Result<()> {
        self.task.await.context("node task")?
    }

    /// For a replica: waits until its cluster has a leader, so that writes
    /// are served (`NOT_LEADER` until then). Immediate for a single node.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<()> {
        if let Some(raft) = &self.raft {
            raft.wait(Some(timeout))
                .metrics(|m| m.current_leader.is_some(), "a leader")
                .await
                .context("no leader elected")?;
        }
        Ok(())
    }

    /// The node's Raft, when it is a replica (for tests and tools: openraft's
    /// metrics and triggers, e.g. `trigger().snapshot()`).
    pub fn raft(&self) -> Option<&ruble_ledger::raft::LedgerRaft> {
        self.raft.as_ref()
    }

    /// A handle that triggers shutdown (for signal handlers).
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the ledger and starts serving.
pub async fn start(opts: NodeOptions) -> Result<RunningNode> {
    if opts.tls.is_none() && !opts.listen.ip().is_loopback() {
        bail!(
            "refusing plaintext on {}: plaintext is allowed on loopback only",
            opts.listen
        );
    }
    let (db_dir, genesis) = (opts.db_dir.clone(), opts.genesis.clone());
    let ledger = tokio::task::spawn_blocking(move || -> Result<Ledger> {
        let ledger = Ledger::open(&db_dir, genesis.as_ref())?;
        // Read every record once with checksums: a damaged file must stop the
        // node here, not surface later as a failed (or wrong) read.
        let t0 = std::time::Instant::now();
        let records = ledger.store().verify_integrity()?;
        tracing::info!(records, ms = t0.elapsed().as_millis() as u64, "data directory verified");
        Ok(ledger)
    })
    .await?
    .with_context(|| format!("opening the ledger in {}", opts.db_dir.display()))?;
    let store = ledger.store().clone();
    let metrics = Metrics::new();
    metrics.set_height(ledger.state().height());
    let (commits, _) = broadcast::channel(1024);
    let hook = {
        let (metrics, commits) = (metrics.clone(), commits.clone());
        Box::new(
            move |block: &Arc<ruble_ledger::state::SealedBlock>, times: &CommitTimes| {
                metrics.observe_commit(times.write.as_secs_f64(), block.ops.len() as u64);
                metrics.observe_stages(&times.submissions);
                metrics.set_height(block.header.height);
                let _ = commits.send(block.clone());
            },
        )
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (pipeline, backend, raft, cluster): (Arc<Pipeline>, Arc<dyn LedgerBackend>, _, _) = match &opts.cluster {
        None => {
            let p = Arc::new(Pipeline::start(ledger, opts.pipeline.clone(), hook));
            (p.clone(), p, None, ClusterSvc::single())
        }
        Some(c) => {
            let (p, backend, replicated) = start_replica(c, &opts, ledger, hook, shutdown_rx.clone()).await?;
            let raft = replicated.raft.clone();
            (p, backend, Some(raft), ClusterSvc::replicated(replicated))
        }
    };
    let ctx = Arc::new(Ctx {
        ledger: backend,
        store: store.clone(),
        commits,
        metrics: metrics.clone(),
        streams: StreamBudget::new(StreamCaps {
            anonymous: opts.limits.max_anonymous_streams,
            per_ip: opts.limits.max_streams_per_ip,
            per_participant: opts.limits.max_streams_per_participant,
        }),
        queries: parking_lot::Mutex::new(ruble_ledger::query::QueryGuard::new(30_000, 1_000_000)),
        servicing: crate::ctx::ServicingCache::new(1 << 20),
        controls: crate::ctx::ControlsCache::new(),
        limits: opts.limits.clone(),
        shutdown: shutdown_rx.clone(),
    });

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<WalletServiceServer<Wallet>>().await;
    health_reporter.set_serving::<BankServiceServer<BankSvc>>().await;
    health_reporter
        .set_serving::<CentralBankServiceServer<CentralBankSvc>>()
        .await;
    health_reporter.set_serving::<ClusterServiceServer<ClusterSvc>>().await;

    let connections = ConnectionBudget::new(ConnectionCaps {
        total: opts.limits.max_connections,
        per_ip: opts.limits.max_connections_per_ip,
    });

    // Queue depths, open streams and connections, and storage health for the
    // metrics endpoint; the health service says NOT_SERVING while the store
    // cannot be written.
    {
        let (pipeline, metrics, mut stop) = (pipeline.clone(), metrics.clone(), shutdown_rx.clone());
        let (streams, connections) = (ctx.streams.clone(), connections.clone());
        let health = health_reporter.clone();
        tokio::spawn(async move {
            let mut was_ok = true;
            loop {
                let s = pipeline.stats();
                use std::sync::atomic::Ordering::Relaxed;
                metrics.set_queue_depth("inflight_ops", s.inflight_ops.load(Relaxed) as i64);
                metrics.set_queue_depth("verify", s.verify_queue.load(Relaxed) as i64);
                metrics.set_queue_depth("sequencer", s.sequencer_queue.load(Relaxed) as i64);
                let (anonymous, participants) = streams.open();
                metrics.set_queue_depth("streams_anonymous", anonymous as i64);
                metrics.set_queue_depth("streams_participants", participants as i64);
                metrics.set_queue_depth("connections", connections.open() as i64);
                let error = pipeline.storage_error();
                metrics.set_storage(error.is_none(), s.commit_failures.load(Relaxed));
                if let Ok((cache, memtables)) = pipeline.store().rocksdb_memory() {
                    metrics.set_store_memory(cache, memtables);
                }
                if error.is_none() != was_ok {
                    was_ok = error.is_none();
                    set_health(&health, was_ok).await;
                    match error {
                        Some(e) => tracing::error!(error = %e, "health: NOT_SERVING (cannot commit)"),
                        None => tracing::warn!("health: SERVING again (store writable)"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    let metrics_addr = match opts.metrics_listen {
        Some(addr) => {
            let mut stop = shutdown_rx.clone();
            Some(
                crate::metrics::serve(metrics.clone(), addr, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await?,
            )
        }
        None => None,
    };

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ruble_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ruble_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let max = opts.limits.max_message_bytes;
    let wallet = WalletServiceServer::new(Wallet { ctx: ctx.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let bank = BankServiceServer::new(BankSvc { ctx: ctx.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let cb = CentralBankServiceServer::new(CentralBankSvc { ctx: ctx.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let cluster = ClusterServiceServer::new(cluster)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let mut builder = Server::builder()
        .max_concurrent_streams(Some(opts.limits.max_streams_per_connection))
        .concurrency_limit_per_connection(1024)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(t) = &opts.tls {
        let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        builder = builder.tls_config(
            crate::auth::server_tls_config(&read(&t.ca)?, &read(&t.cert)?, &read(&t.key)?)
                .timeout(opts.limits.tls_handshake_timeout),
        )?;
    }
    // Every trailers-only refusal tonic writes itself (a malformed message, a
    // bad frame) gets a precise code and a reason (`wire`).
    let router = builder
        .layer(tower::util::MapResponseLayer::new(
            crate::wire::tag_refusal::<tonic::body::Body>,
        ))
        .layer(tower::util::MapRequestLayer::new(crate::wire::check_framing))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(wallet)
        .add_service(bank)
        .add_service(cb)
        .add_service(cluster);

    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let grace = opts.shutdown_grace;
    let accept_metrics = metrics.clone();
    // The committed head as the services see it: on a follower the
    // pipeline's own view is not advanced (the state machine applies).
    let head = ctx.ledger.clone();
    let raft_handle = raft.clone();
    let mut stop = shutdown_rx.clone();
    let raft_fatal = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fatal_seen = raft_fatal.clone();
    let task = tokio::spawn(async move {
        let mut stop2 = stop.clone();
        // A connection over the budget is closed as soon as it is accepted.
        let incoming = TcpListenerStream::new(listener).filter_map(move |conn| match conn {
            Ok(io) => {
                let ip = io.peer_addr().map(|a| a.ip()).ok()?;
                match connections.try_acquire(ip) {
                    Some(slot) => Some(Ok(BudgetedConn::new(io, slot))),
                    None => {
                        accept_metrics.inc_refused("TOO_MANY_CONNECTIONS");
                        tracing::debug!(%ip, "connection refused: over the connection budget");
                        None
                    }
                }
            }
            Err(e) => Some(Err(e)),
        });
        let serve = router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop2.wait_for(|s| *s).await;
        });
        tokio::pin!(serve);
        let served = tokio::select! {
            r = &mut serve => r,
            _ = async {
                let _ = stop.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("in-flight requests did not finish within the grace period");
                Ok(())
            }
        };
        health_reporter.set_not_serving::<WalletServiceServer<Wallet>>().await;
        // Finish and commit everything admitted, then close the store.
        let p = pipeline.clone();
        tokio::task::spawn_blocking(move || p.shutdown()).await?;
        if let Some(raft) = raft_handle {
            let _ = raft.shutdown().await;
        }
        store.flush().ok();
        tracing::info!(height = head.view().height, "node stopped");
        if fatal_seen.load(std::sync::atomic::Ordering::Acquire) {
            bail!("the replica's Raft stopped on a fatal error (see the log above)");
        }
        served.map_err(Into::into)
    });
    tracing::info!(%addr, tls = opts.tls.is_some(), "node serving");
    if let Some(raft) = &raft {
        // openraft closes its metrics channel only when its core stops: at
        // shutdown, or after a fatal error (a panic, a failed log write).
        // A replica without its Raft would keep claiming its last role, so
        // the node stops (a supervisor restarts it from its synced log).
        let mut metrics = raft.metrics();
        let (stop, fatal) = (shutdown_tx.clone(), raft_fatal.clone());
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {}
            if !*stop.borrow() {
                tracing::error!("replication stopped on a fatal error; stopping the node");
                fatal.store(true, std::sync::atomic::Ordering::Release);
                let _ = stop.send(true);
            }
        });
    }
    Ok(RunningNode {
        addr,
        metrics_addr,
        shutdown: shutdown_tx,
        task,
        raft,
    })
}

/// Marks the node's services (and the whole server, `""`) serving or not.
async fn set_health(h: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    h.set_service_status("", status).await;
    h.set_service_status(
        <WalletServiceServer<Wallet> as tonic::server::NamedService>::NAME,
        status,
    )
    .await;
    h.set_service_status(
        <BankServiceServer<BankSvc> as tonic::server::NamedService>::NAME,
        status,
    )
    .await;
    h.set_service_status(
        <CentralBankServiceServer<CentralBankSvc> as tonic::server::NamedService>::NAME,
        status,
    )
    .await;
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Starts this node's Raft, its replication service and a pipeline that
/// commits through the replicas; what the cluster service needs comes back
/// with them.
async fn start_replica(
    c: &ClusterOptions,
    opts: &NodeOptions,
    ledger: Ledger,
    hook: ruble_ledger::pipeline::CommitHook,
    mut stop: watch::Receiver<bool>,
) -> Result<(Arc<Pipeline>, Arc<dyn LedgerBackend>, Replicated)> {
    use crate::raft_net::{RaftNet, RaftRpc, MAX_RAFT_MESSAGE_BYTES};
    use crate::replica::{RaftSink, ReplicaBackend};
    use ruble_ledger::pipeline::SystemClock;
    use ruble_ledger::raft::TypeConfig;
    use ruble_proto::raft::raft_service_server::RaftServiceServer;
    use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

    let store = ledger.store().clone();
    let data_dir = opts
        .db_dir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (s, state) = (store.clone(), ledger.state().clone());
    let (log, sm) = tokio::task::spawn_blocking(move || ruble_ledger::raft::open_storage(&data_dir, s, state))
        .await?
        .context("opening the replication log")?;
    let config = openraft::Config {
        cluster_name: ledger.state().params().chain_id.clone(),
        heartbeat_interval: RAFT_HEARTBEAT_MS,
        election_timeout_min: RAFT_ELECTION_MIN_MS,
        election_timeout_max: RAFT_ELECTION_MAX_MS,
        enable_elect: !c.rejoining,
        install_snapshot_timeout: RAFT_INSTALL_SNAPSHOT_MS,
        ..Default::default()
    }
    .validate()
    .context("raft configuration")?;
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (client_tls, server_tls) = match &c.tls {
        Some(t) => {
            let (ca, cert, key) = (read(&t.ca)?, read(&t.cert)?, read(&t.key)?);
            (
                Some(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&ca))
                        .identity(Identity::from_pem(&cert, &key)),
                ),
                Some(
                    ServerTlsConfig::new()
                        .identity(Identity::from_pem(&cert, &key))
                        .client_ca_root(Certificate::from_pem(&ca)),
                ),
            )
        }
        None => {
            if !c.raft_listen.ip().is_loopback() {
                bail!("refusing plaintext replication on {}: loopback only", c.raft_listen);
            }
            (None, None)
        }
    };
    let raft = openraft::Raft::new(
        c.node_id,
        Arc::new(config),
        RaftNet::<TypeConfig>::new(client_tls).with_peer_addrs(c.peer_addrs.clone()),
        log,
        sm.clone(),
    )
    .await
    .context("starting raft")?;

    if c.rejoining {
        let r = raft.clone();
        let me = c.node_id;
        tokio::spawn(async move {
            let added = r
                .wait(None)
                .metrics(
                    |m| m.membership_config.membership().learner_ids().any(|id| id == me),
                    "added back as a learner",
                )
                .await;
            if added.is_ok() {
                tracing::info!(node = me, "added back as a learner; standing for elections again");
                r.runtime_config().elect(true);
            }
        });
    }
    let listener = TcpListener::bind(c.raft_listen)
        .await
        .with_context(|| format!("binding the replication port {}", c.raft_listen))?;
    let svc = RaftServiceServer::new(RaftRpc::new(raft.clone(), server_tls.is_some()))
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
    let mut server = Server::builder();
    if let Some(tls) = server_tls {
        server = server.tls_config(tls)?;
    }
    let router = server.add_service(svc);
    tokio::spawn(async move {
        let r = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "replication service stopped");
        }
    });

    if c.bootstrap && !raft.is_initialized().await? {
        let members: std::collections::BTreeMap<u64, ruble_ledger::raft::ReplicaNode> = c
            .members
            .iter()
            .map(|(id, m)| {
                (
                    *id,
                    ruble_ledger::raft::ReplicaNode::new(m.raft_addr.clone(), m.client_endpoint.clone()),
                )
            })
            .collect();
        // Another start of this replica may have initialised it already.
        if let Err(e) = raft.initialize(members).await {
            tracing::warn!(error = %e, "cluster membership not initialised");
        }
    }
    let mut sink = RaftSink::new(raft.clone(), store, tokio::runtime::Handle::current());
    if c.unsafe_ack_before_quorum {
        tracing::warn!("FAULT INJECTION: acknowledging blocks before a quorum holds them");
        sink = sink.unsafe_ack_before_quorum();
    }
    let pipeline = Arc::new(Pipeline::start_with(
        ledger,
        opts.pipeline.clone(),
        hook,
        Arc::new(sink),
        Arc::new(SystemClock),
    ));
    let endpoints: std::collections::BTreeMap<u64, String> = c
        .members
        .iter()
        .map(|(id, m)| (*id, m.client_endpoint.clone()))
        .collect();
    let backend = Arc::new(ReplicaBackend::new(
        pipeline.clone(),
        raft.clone(),
        sm.clone(),
        endpoints.clone(),
    ));
    tracing::info!(node = c.node_id, raft = %c.raft_listen, members = c.members.len(), "replica started");
    Ok((pipeline, backend, Replicated { raft, sm, endpoints }))
}
