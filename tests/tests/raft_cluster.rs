//! Three replicas of the ledger on openraft, in one process, each with its
//! own RocksDB log and ledger store, talking over real gRPC sockets on
//! 127.0.0.1 (`ruble_gateway::raft_net`): blocks proposed on the leader are
//! applied by every replica to the same state; when the leader is stopped,
//! the other two elect a new one, keep every committed block, and commit new
//! ones; a replica that was down catches up from the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use openraft::{Config, Raft};
use ruble_e2e::ruble_proto::raft::raft_service_server::RaftServiceServer;
use ruble_e2e::{free_port, ruble_ledger};
use ruble_gateway::raft_net::{RaftNet, RaftRpc};
use ruble_ledger::codec::{Op, OpBody, SignedOp};
use ruble_ledger::crypto::{verify_ops_parallel, KeyCache};
use ruble_ledger::exec::execute_block;
use ruble_ledger::raft::{BlockEntry, LedgerStateMachine, LogStore, ReplicaNode, TypeConfig};
use ruble_ledger::state::{Genesis, GenesisBank, State};
use ruble_ledger::store::{Store, StoreOptions};
use ruble_ledger::types::{AccountId, Phase};
use tokio::net::TcpListener;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The cluster's PKI: a CA and one node certificate per replica (CN
/// `ruble-node`, server and client), as `ruble-node` issues them.
struct Pki {
    ca: ruble_gateway::pki::CaBundle,
}

impl Pki {
    fn client(&self, who: &ruble_gateway::pki::CertPair) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.cert_pem()))
            .identity(Identity::from_pem(&who.cert_pem, &who.key_pem))
            .domain_name("127.0.0.1")
    }
    fn server(&self, who: &ruble_gateway::pki::CertPair) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&who.cert_pem, &who.key_pem))
            .client_ca_root(Certificate::from_pem(self.ca.cert_pem()))
    }
}

const CHAIN: &str = "ruble-raft";
const T0: u64 = 1_800_000_000_000;

fn key(seed: u8) -> SigningKey {
    let mut b = [seed; 32];
    b[31] = 0x42;
    SigningKey::from_bytes(&b)
}

fn id(k: &SigningKey) -> AccountId {
    AccountId(k.verifying_key().to_bytes())
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        central_bank: id(&key(1)),
        timestamp_ms: T0,
        max_validity_ms: 600_000,
        phase: Phase::Business,
        reporting_threshold: 0,
        settlement_limits: Default::default(),
        business_limits: Default::default(),
        retail_limits: Default::default(),
        banks: vec![GenesisBank {
            id: id(&key(2)),
            name: "bank".into(),
        }],
    }
}

/// One replica: its Raft, the state machine (shared with the Raft, for
/// looking at the applied head) and its replication server.
struct Replica {
    raft: Raft<TypeConfig>,
    sm: LedgerStateMachine,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

fn config() -> Arc<Config> {
    Arc::new(
        Config {
            cluster_name: CHAIN.into(),
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

async fn start(node: u64, dir: &std::path::Path, listener: TcpListener, pki: &Pki) -> Replica {
    let cert = pki.ca.issue_peer(&["127.0.0.1"]).unwrap();
    let opts = StoreOptions {
        direct_io: false,
        block_cache_bytes: 8 << 20,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open_with(&dir.join("ledger"), &opts).unwrap());
    if !store.is_initialised().unwrap() {
        store.init(&genesis()).unwrap();
    }
    let sm = LedgerStateMachine::open(store, &dir.join("snapshots")).unwrap();
    let log = LogStore::open(&dir.join("raft")).unwrap();
    let raft = Raft::new(
        node,
        config(),
        RaftNet::<TypeConfig>::new(Some(pki.client(&cert))),
        log,
        sm.clone(),
    )
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let svc = RaftServiceServer::new(RaftRpc::new(raft.clone(), true)).max_decoding_message_size(64 << 20);
    let tls = pki.server(&cert);
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(svc)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    Replica {
        raft,
        sm,
        stop: Some(stop),
        server,
    }
}

impl Replica {
    async fn kill(mut self) {
        let _ = self.raft.shutdown().await;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.server.await;
    }
}

/// The leader's side of the test: the chain as the leader executes it.
struct Proposer {
    state: State,
    cache: KeyCache,
    nonce: u64,
}

impl Proposer {
    /// The next block: one issuance of `amount`, executed on the chain so far.
    fn next(&mut self, amount: u64) -> BlockEntry {
        self.nonce += 1;
        let body = OpBody {
            chain_id: CHAIN.into(),
            signer: id(&key(1)),
            nonce: self.nonce,
            valid_until_ms: T0 + 500_000,
            op: Op::Issue {
                bank: id(&key(2)),
                amount,
            },
        };
        let op = SignedOp::sign(body, &key(1));
        let ts = T0 + self.nonce * 1_000;
        let verified = verify_ops_parallel(vec![op], &self.cache, 1);
        let executed = execute_block(&mut self.state, ts, verified);
        assert!(executed.outcomes.iter().all(Result::is_ok), "{:?}", executed.outcomes);
        BlockEntry::from_sealed(&executed.block)
    }
}

async fn leader_of(rafts: &[&Raft<TypeConfig>], not: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for r in rafts {
            let m = r.metrics().borrow().clone();
            if let Some(l) = m.current_leader {
                if Some(l) != not && m.id == l && m.state.is_leader() {
                    return l;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_height(sm: &LedgerStateMachine, height: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sm.head().0 < height {
        assert!(
            Instant::now() < deadline,
            "replica stuck at {} (want {height})",
            sm.head().0
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Three replicas in tempdirs, on sockets of 127.0.0.1, with a leader.
struct Cluster {
    pki: Pki,
    dirs: Vec<tempfile::TempDir>,
    members: BTreeMap<u64, ReplicaNode>,
    replicas: BTreeMap<u64, Replica>,
    leader: u64,
}

impl Cluster {
    async fn start() -> Cluster {
        let pki = Pki {
            ca: ruble_gateway::pki::generate_ca().unwrap(),
        };
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for n in 1..=3u64 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            // No client services in these replicas: the endpoint the
            // membership names them by.
            let endpoint = format!("https://node{n}.test:443");
            members.insert(n, ReplicaNode::new(l.local_addr().unwrap().to_string(), endpoint));
            listeners.push(l);
        }
        let mut replicas: BTreeMap<u64, Replica> = BTreeMap::new();
        for (n, l) in (1..=3u64).zip(listeners) {
            replicas.insert(n, start(n, dirs[n as usize - 1].path(), l, &pki).await);
        }
        replicas[&1].raft.initialize(members.clone()).await.unwrap();
        let rafts: Vec<&Raft<TypeConfig>> = replicas.values().map(|r| &r.raft).collect();
        let leader = leader_of(&rafts, None).await;
        Cluster {
            pki,
            dirs,
            members,
            replicas,
            leader,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_agree_and_survive_the_leaders_loss() {
    let Cluster {
        pki,
        dirs,
        members,
        mut replicas,
        leader,
    } = Cluster::start().await;

    // Replication admits node certificates only: a bank's certificate from
    // the same CA is refused before its message is read.
    {
        use ruble_e2e::ruble_proto::raft::raft_service_client::RaftServiceClient;
        use ruble_e2e::ruble_proto::raft::RaftRequest;
        let bank = pki
            .ca
            .issue_client(&ruble_gateway::auth::Participant::Bank(id(&key(2)).0))
            .unwrap();
        let ch = tonic::transport::Endpoint::from_shared(format!("https://{}", members[&leader].raft_addr))
            .unwrap()
            .tls_config(pki.client(&bank))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let st = RaftServiceClient::new(ch)
            .vote(RaftRequest { body: vec![0; 8] })
            .await
            .unwrap_err();
        assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st:?}");
    }

    let mut p = Proposer {
        state: State::genesis(&genesis()).unwrap().0,
        cache: KeyCache::default(),
        nonce: 0,
    };
    for _ in 0..5 {
        let e = p.next(1_000_00);
        replicas[&leader].raft.client_write(e).await.unwrap();
    }
    for r in replicas.values() {
        wait_height(&r.sm, 5).await;
        assert_eq!(
            r.sm.head(),
            (p.state.height(), p.state.head_hash()),
            "same chain on every replica"
        );
    }

    // The leader goes away; the two others elect one and go on.
    let killed_at = Instant::now();
    replicas.remove(&leader).unwrap().kill().await;
    let rest: Vec<&Raft<TypeConfig>> = replicas.values().map(|r| &r.raft).collect();
    let new_leader = leader_of(&rest, Some(leader)).await;
    let e = p.next(2_000_00);
    replicas[&new_leader].raft.client_write(e).await.unwrap();
    let failover = killed_at.elapsed();
    println!("failover: leader stopped to the first block committed on the new leader: {failover:?}");
    for r in replicas.values() {
        wait_height(&r.sm, 6).await;
        assert_eq!(r.sm.head(), (p.state.height(), p.state.head_hash()));
        let totals = r.sm.with_state_ref(|s| s.totals());
        assert_eq!(
            totals.issued,
            5 * 1_000_00 + 2_000_00,
            "no block lost, none applied twice"
        );
        r.sm.with_state_ref(|s| s.check_invariants()).unwrap();
    }

    // The old leader comes back (same data) and catches up from the log.
    let l = TcpListener::bind(members[&leader].raft_addr.as_str()).await.unwrap();
    let back = start(leader, dirs[leader as usize - 1].path(), l, &pki).await;
    wait_height(&back.sm, 6).await;
    assert_eq!(back.sm.head(), (p.state.height(), p.state.head_hash()));
    back.kill().await;
    for (_, r) in std::mem::take(&mut replicas) {
        r.kill().await;
    }
}

/// Signs an issuance (the central bank's), not executed anywhere yet.
fn issuance(nonce: u64, amount: u64) -> SignedOp {
    let body = OpBody {
        chain_id: CHAIN.into(),
        signer: id(&key(1)),
        nonce,
        valid_until_ms: T0 + 500_000,
        op: Op::Issue {
            bank: id(&key(2)),
            amount,
        },
    };
    SignedOp::sign(body, &key(1))
}

/// A pipeline that commits through the replicas (`RaftSink`).
fn replicated_pipeline(r: &Replica) -> Arc<ruble_ledger::pipeline::Pipeline> {
    use ruble_gateway::replica::RaftSink;
    use ruble_ledger::pipeline::{Pipeline, PipelineConfig, SystemClock};
    let store = r.sm.store().clone();
    let ledger = ruble_ledger::Ledger::from_store(store.clone(), None).unwrap();
    let sink = RaftSink::new(r.raft.clone(), store, tokio::runtime::Handle::current());
    Arc::new(Pipeline::start_with(
        ledger,
        PipelineConfig::default(),
        Box::new(|_, _| {}),
        Arc::new(sink),
        Arc::new(SystemClock),
    ))
}

async fn submit(p: &ruble_ledger::pipeline::Pipeline, ops: Vec<SignedOp>) -> Vec<ruble_ledger::Outcome> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    p.submit(
        ops,
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .unwrap()
        .unwrap()
}

/// The node's pipeline on the leader, committing through Raft: a receipt
/// comes back once the block is applied by the replicas, and every replica
/// then holds it; a replica that does not lead refuses writes with the
/// leader's endpoint; after the leader is lost, the new leader's pipeline
/// goes on from the committed head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_pipeline_commits_through_the_replicas() {
    use ruble_gateway::backend::{LedgerBackend, Refusal};
    use ruble_gateway::replica::ReplicaBackend;
    use ruble_ledger::Outcome;

    // The tempdirs must outlive the replicas: `_dirs`, not `_`.
    let Cluster {
        dirs: _dirs,
        mut replicas,
        leader,
        ..
    } = Cluster::start().await;
    // The configured endpoints, stale: the membership's (`node<n>.test`) win.
    let configured: BTreeMap<u64, String> = (1..=3).map(|n| (n, format!("https://stale{n}.test:443"))).collect();

    // Every replica's pipeline starts with its node, on the state it loaded
    // then; a follower's never executes what the leader seals.
    let mut standby: BTreeMap<u64, Arc<ruble_ledger::pipeline::Pipeline>> = replicas
        .iter()
        .filter(|(&n, _)| n != leader)
        .map(|(&n, r)| (n, replicated_pipeline(r)))
        .collect();
    let p = replicated_pipeline(&replicas[&leader]);
    let outs = submit(&p, (1..=3).map(|n| issuance(n, 1_000_00)).collect()).await;
    let height = match &outs[2] {
        Outcome::Committed(r) => r.height,
        other => panic!("{other:?}"),
    };
    assert!(outs.iter().all(|o| matches!(o, Outcome::Committed(_))), "{outs:?}");
    let head = replicas[&leader].sm.head();
    for r in replicas.values() {
        wait_height(&r.sm, height).await;
        assert_eq!(r.sm.head(), head, "every replica holds the acknowledged block");
        assert_eq!(r.sm.with_state_ref(|s| s.totals().issued), 3 * 1_000_00);
    }

    // A follower's backend refuses writes and names the leader, by the
    // endpoint the membership records for it.
    let follower = *replicas.keys().find(|&&n| n != leader).unwrap();
    let fp = replicated_pipeline(&replicas[&follower]);
    let backend = ReplicaBackend::new(
        fp.clone(),
        replicas[&follower].raft.clone(),
        replicas[&follower].sm.clone(),
        configured.clone(),
    );
    let refused = backend.submit(vec![issuance(99, 1)], Box::new(|_| {})).unwrap_err();
    assert_eq!(
        refused,
        Refusal::NotLeader {
            leader: Some(format!("https://node{leader}.test:443"))
        }
    );
    assert_eq!(backend.view().height, replicas[&follower].sm.head().0);
    fp.shutdown();

    // The leader goes; the new leader's pipeline, started before any of
    // this, goes on from the committed head (it reloads once it leads), not
    // from the stale state it started with.
    p.shutdown();
    replicas.remove(&leader).unwrap().kill().await;
    let rest: Vec<&Raft<TypeConfig>> = replicas.values().map(|r| &r.raft).collect();
    let new_leader = leader_of(&rest, Some(leader)).await;
    let p2 = standby.remove(&new_leader).unwrap();
    for (_, other) in standby {
        other.shutdown();
    }
    // A retry of an acknowledged issuance gets its original receipt, not a second issuance.
    let outs = submit(&p2, vec![issuance(3, 1_000_00), issuance(4, 2_000_00)]).await;
    assert!(matches!(outs[0], Outcome::Duplicate(_)), "{outs:?}");
    assert!(matches!(outs[1], Outcome::Committed(_)), "{outs:?}");
    for r in replicas.values() {
        wait_height(&r.sm, height + 1).await;
        assert_eq!(r.sm.with_state_ref(|s| s.totals().issued), 3 * 1_000_00 + 2_000_00);
    }
    p2.shutdown();
    for (_, r) in std::mem::take(&mut replicas) {
        r.kill().await;
    }
}

/// Three `ruble-node` replicas (`node::start` with cluster options), each
/// serving clients over TLS and replicating over mutual TLS with node
/// certificates, started from the same dev data: the SDK, given the
/// replicas, finds the leader and pays; every replica serves the payment;
/// the leader is shut down and the same client's next payment lands on the
/// new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_clients_and_fail_over() {
    use ruble_gateway::node::{self, ClusterOptions, Member, NodeOptions, TlsFiles};
    use ruble_wallet::{ClientBuilder, WalletKey};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (genesis, tls) = tokio::task::spawn_blocking(move || ruble_gateway::devnet::ensure(&d))
        .await
        .unwrap()
        .unwrap();
    let manifest = ruble_gateway::devnet::DevManifest::load(dir.path()).unwrap();
    // Each replica's copy of the dev chain and its node certificate, as
    // `ruble-node dev --replicas 3` makes them.
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || ruble_gateway::devnet::ensure_replicas(&d, 3, "127.0.0.1"))
        .await
        .unwrap()
        .unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let members: BTreeMap<u64, Member> = (1..=3u64)
        .map(|n| {
            let (client, raft) = ports[n as usize - 1];
            (
                n,
                Member {
                    raft_addr: format!("127.0.0.1:{raft}"),
                    client_endpoint: format!("https://127.0.0.1:{client}"),
                },
            )
        })
        .collect();
    let mut nodes = BTreeMap::new();
    for n in 1..=3u64 {
        let nd = dir.path().join(format!("node{n}"));
        let (client, raft) = ports[n as usize - 1];
        let opts = NodeOptions {
            db_dir: nd.join("db"),
            genesis: Some(genesis.clone()),
            listen: format!("127.0.0.1:{client}").parse().unwrap(),
            metrics_listen: None,
            tls: Some(TlsFiles {
                ca: tls.ca.clone(),
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            }),
            limits: Default::default(),
            pipeline: Default::default(),
            shutdown_grace: Duration::from_secs(2),
            cluster: Some(ClusterOptions {
                node_id: n,
                raft_listen: format!("127.0.0.1:{raft}").parse().unwrap(),
                members: members.clone(),
                tls: Some(TlsFiles {
                    ca: dir.path().join("pki/peer-ca.pem"),
                    cert: nd.join("peer.pem"),
                    key: nd.join("peer-key.pem"),
                }),
                bootstrap: n == 1,
                peer_addrs: Default::default(),
                unsafe_ack_before_quorum: false,
                rejoining: false,
            }),
        };
        nodes.insert(members[&n].client_endpoint.clone(), node::start(opts).await.unwrap());
    }
    let ca_pem = std::fs::read_to_string(&tls.ca).unwrap();
    let endpoints: Vec<String> = members.values().map(|m| m.client_endpoint.clone()).collect();
    let client = ClientBuilder::new(endpoints[0].clone())
        .replicas(endpoints.clone())
        .ca_pem(ca_pem.clone())
        .retries(20)
        .backoff(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let key = |i: usize| WalletKey::load(&dir.path().join(&manifest.businesses[i].key), None).unwrap();
    let (a, b) = (key(0), key(1));
    let b0 = client.account(&b).await.unwrap().balance;
    // The first write may meet an election: the client follows until it lands.
    let p1 = client.pay(&a, b.account_id(), 1_00, "replicated").await.unwrap();
    assert!(!p1.duplicate);
    let leader = client.endpoint();

    // Every replica serves the payment (reads are local to each replica).
    let balance_on = |e: String, key: WalletKey| {
        let ca_pem = ca_pem.clone();
        async move {
            let c = ClientBuilder::new(e).ca_pem(ca_pem).connect().await.unwrap();
            c.account(&key).await.unwrap().balance
        }
    };
    let converged = |want: u64, on: Vec<String>| {
        let b = key(1);
        let balance_on = &balance_on;
        async move {
            for e in on {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let got = balance_on(e.clone(), WalletKey::from_signing_key(b.signing_key().clone())).await;
                    if got == want {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{e} has {got}, want {want}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    converged(b0 + 1_00, endpoints.clone()).await;

    // The leader shuts down; the same client pays again, on the new leader.
    nodes.remove(&leader).unwrap().shutdown().await.unwrap();
    let t = Instant::now();
    let p2 = client.pay(&a, b.account_id(), 2_00, "after failover").await.unwrap();
    println!(
        "failover through the SDK: {:?} to the next committed payment",
        t.elapsed()
    );
    assert!(!p2.duplicate);
    assert_ne!(client.endpoint(), leader);
    let rest: Vec<String> = endpoints.iter().filter(|e| **e != leader).cloned().collect();
    converged(b0 + 3_00, rest).await;
    for (_, n) in nodes {
        n.shutdown().await.unwrap();
    }
}
