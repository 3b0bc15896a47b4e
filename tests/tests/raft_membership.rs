//! Membership changes on a running cluster (`ruble.v1.ClusterService`):
//! three `ruble-node` replicas (`node::start`, real TLS for clients, mutual
//! TLS with node certificates for replication, a RocksDB store and log
//! each) commit transfers through the SDK; the leader takes a snapshot and
//! purges its log, so a fourth replica, started from the initial dev chain
//! with an empty log, can only catch up by installing the snapshot (the
//! packed RocksDB checkpoint); it is added through the SDK (learner, then
//! voter) and reaches the leader's height and state hash; a replica is
//! removed and writes go on committing. Refusals: a bank's certificate, a
//! follower, an id already a member, an unknown id, malformed addresses;
//! with a voter down, the removal of a live one (no live majority left).
//! And `ruble-admin cluster status --json` against one given replica.
//!
//! The CLI part needs `cargo build --workspace --bins` first.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::ruble_proto::v1::cluster_service_client::ClusterServiceClient;
use ruble_e2e::ruble_proto::v1::wallet_service_client::WalletServiceClient;
use ruble_e2e::{bin, free_port, reason, wire};
use ruble_gateway::devnet::{DevManifest, DevTls};
use ruble_gateway::node::{self, ClusterOptions, Member, NodeOptions, RunningNode, TlsFiles};
use ruble_wallet::{AdminClient, Client, ClientBuilder, ClusterStatus, Error, ReplicaRole, WalletKey};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

/// The dev network in a tempdir and its replicas' data.
struct Net {
    dir: tempfile::TempDir,
    genesis: ruble_e2e::ruble_ledger::state::Genesis,
    tls: DevTls,
    manifest: DevManifest,
    ca_pem: String,
    /// Every replica's addresses (the fourth's too), by id.
    members: BTreeMap<u64, Member>,
    nodes: BTreeMap<u64, RunningNode>,
}

impl Net {
    async fn new(replicas: u64) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let (genesis, tls) = tokio::task::spawn_blocking(move || ruble_gateway::devnet::ensure(&d))
            .await
            .unwrap()
            .unwrap();
        // Every replica's copy of the initial dev chain and its node
        // certificate, as `ruble-node dev --replicas N` makes them: the
        // fourth's copy is made now, before any transfer.
        let d = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || ruble_gateway::devnet::ensure_replicas(&d, replicas, "127.0.0.1"))
            .await
            .unwrap()
            .unwrap();
        let members: BTreeMap<u64, Member> = (1..=replicas)
            .map(|n| {
                (
                    n,
                    Member {
                        raft_addr: format!("127.0.0.1:{}", free_port()),
                        client_endpoint: format!("https://127.0.0.1:{}", free_port()),
                    },
                )
            })
            .collect();
        let mut manifest = DevManifest::load(dir.path()).unwrap();
        // The operator CLIs' --dev-dir: the first three replicas.
        manifest.endpoint = members[&1].client_endpoint.clone();
        manifest.replicas = (1..=replicas.min(3))
            .map(|n| members[&n].client_endpoint.clone())
            .collect();
        manifest.save(dir.path()).unwrap();
        let ca_pem = std::fs::read_to_string(&tls.ca).unwrap();
        Net {
            dir,
            genesis,
            tls,
            manifest,
            ca_pem,
            members,
            nodes: BTreeMap::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn endpoint(&self, n: u64) -> String {
        self.members[&n].client_endpoint.clone()
    }

    /// Starts replica `n`, configured with `members` (its view of the
    /// cluster at start: where it reaches peers, whose endpoints it names).
    async fn start(&mut self, n: u64, members: BTreeMap<u64, Member>, bootstrap: bool) {
        let nd = self.path().join(format!("node{n}"));
        let port = |s: &str| s.rsplit_once(':').unwrap().1.to_string();
        let opts = NodeOptions {
            db_dir: nd.join("db"),
            genesis: Some(self.genesis.clone()),
            listen: format!("127.0.0.1:{}", port(&self.members[&n].client_endpoint))
                .parse()
                .unwrap(),
            metrics_listen: None,
            tls: Some(TlsFiles {
                ca: self.tls.ca.clone(),
                cert: self.tls.cert.clone(),
                key: self.tls.key.clone(),
            }),
            limits: Default::default(),
            pipeline: Default::default(),
            shutdown_grace: Duration::from_secs(2),
            cluster: Some(ClusterOptions {
                node_id: n,
                raft_listen: self.members[&n].raft_addr.parse().unwrap(),
                members,
                tls: Some(TlsFiles {
                    ca: self.path().join("pki/peer-ca.pem"),
                    cert: nd.join("peer.pem"),
                    key: nd.join("peer-key.pem"),
                }),
                bootstrap,
                peer_addrs: Default::default(),
                unsafe_ack_before_quorum: false,
                rejoining: false,
            }),
        };
        self.nodes.insert(n, node::start(opts).await.unwrap());
    }

    fn pem(&self, rel: &Option<String>) -> String {
        std::fs::read_to_string(self.path().join(rel.as_ref().unwrap())).unwrap()
    }

    /// A raw channel to replica `n`, with the central bank's certificate,
    /// the first bank's, or none.
    async fn channel(&self, n: u64, who: Who) -> Channel {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        let p = match who {
            Who::CentralBank => Some(&self.manifest.central_bank),
            Who::Bank => Some(&self.manifest.banks[0]),
            Who::Anonymous => None,
        };
        if let Some(p) = p {
            tls = tls.identity(Identity::from_pem(self.pem(&p.cert), self.pem(&p.cert_key)));
        }
        Endpoint::from_shared(self.endpoint(n))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn cluster(&self, n: u64, who: Who) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.channel(n, who).await)
    }

    /// The SDK's central-bank client of replica `n` alone (no replicas to
    /// follow: its status is `n`'s).
    async fn admin_of(&self, n: u64) -> AdminClient {
        let cb = &self.manifest.central_bank;
        AdminClient::connect(
            ClientBuilder::new(self.endpoint(n))
                .ca_pem(self.ca_pem.clone())
                .identity(self.pem(&cb.cert), self.pem(&cb.cert_key))
                .retries(10)
                .backoff(Duration::from_millis(100)),
        )
        .await
        .unwrap()
    }

    /// The SDK's central-bank client that follows the leader among the
    /// first three replicas.
    /// Replicas 1 to 3 as a new cluster (1 bootstraps it), once they have a
    /// leader.
    async fn start_first_three(&mut self) {
        let three: BTreeMap<u64, Member> = (1..=3).map(|n| (n, self.members[&n].clone())).collect();
        for n in 1..=3 {
            self.start(n, three.clone(), n == 1).await;
        }
        self.nodes[&1].wait_for_leader(Duration::from_secs(30)).await.unwrap();
    }

    /// An SDK client given replicas 1 to 3, which finds the leader among them.
    async fn wallet_of_first_three(&self) -> Client {
        ClientBuilder::new(self.endpoint(1))
            .replicas((1..=3).map(|n| self.endpoint(n)))
            .ca_pem(self.ca_pem.clone())
            .retries(20)
            .backoff(Duration::from_millis(100))
            .connect()
            .await
            .unwrap()
    }

    async fn admin(&self) -> AdminClient {
        let cb = &self.manifest.central_bank;
        AdminClient::connect(
            ClientBuilder::new(self.endpoint(1))
                .replicas((1..=3).map(|n| self.endpoint(n)))
                .ca_pem(self.ca_pem.clone())
                .identity(self.pem(&cb.cert), self.pem(&cb.cert_key))
                .retries(20)
                .backoff(Duration::from_millis(100)),
        )
        .await
        .unwrap()
    }

    fn key(&self, i: usize) -> WalletKey {
        WalletKey::load(&self.path().join(&self.manifest.businesses[i].key), None).unwrap()
    }

    async fn shutdown(&mut self, n: u64) {
        if let Some(node) = self.nodes.remove(&n) {
            node.shutdown().await.unwrap();
        }
    }

    async fn shutdown_all(&mut self) {
        for n in self.nodes.keys().copied().collect::<Vec<_>>() {
            self.shutdown(n).await;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Who {
    CentralBank,
    Bank,
    Anonymous,
}

/// Replica `n`'s own view, once it knows a leader.
async fn status_with_leader(admin: &AdminClient) -> ClusterStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = admin.cluster_status().await.unwrap();
        if s.leader_id != 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "no leader known: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every replica in `on` has applied the same head as `leader`
/// (height, head hash and state hash), as `GetCluster` on each reports it.
async fn converged(net: &Net, leader: u64, on: &[u64]) -> ClusterStatus {
    let lead = net.admin_of(leader).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    'again: loop {
        let want = lead.cluster_status().await.unwrap();
        for &n in on {
            let got = net.admin_of(n).await.cluster_status().await.unwrap();
            if (got.applied_height, &got.head_hash, &got.state_hash)
                != (want.applied_height, &want.head_hash, &want.state_hash)
            {
                assert!(
                    Instant::now() < deadline,
                    "replica {n} at {} ({}), the leader at {} ({})",
                    got.applied_height,
                    got.state_hash,
                    want.applied_height,
                    want.state_hash
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'again;
            }
        }
        return want;
    }
}

/// The reason and ErrorInfo metadata of a refusal.
fn info(st: &tonic::Status) -> (String, BTreeMap<String, String>) {
    let i = tonic_types::StatusExt::get_details_error_info(st).unwrap_or_else(|| panic!("no ErrorInfo: {st:?}"));
    (i.reason, i.metadata.into_iter().collect())
}

fn refused<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, why: &str) -> BTreeMap<String, String> {
    let st = r.expect_err(&format!("expected {code:?}/{why}"));
    assert_eq!((st.code(), reason(&st).as_str()), (code, why), "{st:?}");
    info(&st).1
}

fn add_req(id: u64, raft: &str, client: &str) -> pb::AddReplicaRequest {
    pb::AddReplicaRequest {
        id,
        raft_addr: raft.into(),
        client_endpoint: client.into(),
        promote: true,
    }
}

async fn pay(client: &Client, net: &Net, n: u64) {
    let (a, b) = (net.key(0), net.key(1));
    for i in 0..n {
        let p = client.pay(&a, b.account_id(), 1_00 + i, "membership").await.unwrap();
        assert!(!p.duplicate);
    }
}

async fn admin_cli(net: &Net, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut c = tokio::process::Command::new(bin("ruble-admin"));
    c.stdin(std::process::Stdio::null()).kill_on_drop(true);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RUBLE_") {
            c.env_remove(k);
        }
    }
    let out = c.arg("--dev-dir").arg(net.path()).args(args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let json = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_default();
    (out.status.code().unwrap_or(-1), json, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_joins_from_a_snapshot_and_another_leaves() {
    let mut net = Net::new(4).await;
    net.start_first_three().await;

    // Transfers commit through the SDK, which finds the leader.
    let wallet = net.wallet_of_first_three().await;
    pay(&wallet, &net, 5).await;
    let admin = net.admin().await;
    let s = status_with_leader(&net.admin_of(1).await).await;
    let leader = s.leader_id;
    assert_eq!(s.members.len(), 3, "{s:?}");
    assert!(s.members.iter().all(|m| m.role == Some(ReplicaRole::Voter)), "{s:?}");
    assert_eq!(s.member(leader).unwrap().client_endpoint, net.endpoint(leader));
    let followers: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();

    // Every replica answers from its own view; the leader shows how far
    // each member's log is matched.
    let ls = converged(&net, leader, &followers).await;
    assert!(
        ls.is_leader && ls.node_id == leader && ls.millis_since_quorum_ack.is_some(),
        "{ls:?}"
    );
    assert!(ls.members.iter().all(|m| m.matched_index.is_some()), "{ls:?}");
    let fs = net.admin_of(followers[0]).await.cluster_status().await.unwrap();
    assert!(
        !fs.is_leader && fs.leader_id == leader && fs.node_id == followers[0],
        "{fs:?}"
    );
    assert!(fs.members.iter().all(|m| m.matched_index.is_none()), "{fs:?}");

    // The leader snapshots (a RocksDB checkpoint of its store) and purges
    // its log up to it: what a new replica needs from the start of the log
    // is gone, so it can only be sent the snapshot.
    let raft = net.nodes[&leader].raft().unwrap().clone();
    let applied = raft.metrics().borrow().last_applied.unwrap().index;
    raft.trigger().snapshot().await.unwrap();
    let m = raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.snapshot.is_some_and(|l| l.index >= applied), "a snapshot")
        .await
        .unwrap();
    let snap = m.snapshot.unwrap().index;
    raft.trigger().purge_log(snap).await.unwrap();
    raft.wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.purged.is_some_and(|l| l.index >= snap), "the log purged")
        .await
        .unwrap();
    // More blocks after the snapshot: the new replica gets them from the log.
    pay(&wallet, &net, 3).await;
    let ls = net.admin_of(leader).await.cluster_status().await.unwrap();
    assert!(ls.purged_log_index >= snap && ls.snapshot_log_index >= snap, "{ls:?}");

    // The fourth replica: the initial dev chain, an empty log, no
    // bootstrap, and a configuration that knows only itself (the leader's
    // endpoint comes from the membership).
    let only_me: BTreeMap<u64, Member> = BTreeMap::from([(4, net.members[&4].clone())]);
    net.start(4, only_me, false).await;
    let new = net.admin_of(4).await;
    let s4 = new.cluster_status().await.unwrap();
    assert_eq!((s4.node_id, s4.leader_id, s4.members.len()), (4, 0, 0), "{s4:?}");
    assert!(s4.applied_height < ls.applied_height, "{s4:?}");
    let (raft4, client4) = (net.members[&4].raft_addr.clone(), net.endpoint(4));

    // Refusals, each with its code and reason, before anything changes.
    let lc = || net.cluster(leader, Who::CentralBank);
    let bank = |n| net.cluster(n, Who::Bank);
    refused(
        bank(leader).await.get_cluster(pb::GetClusterRequest {}).await,
        Code::PermissionDenied,
        "WRONG_ROLE",
    );
    refused(
        bank(leader).await.add_replica(add_req(4, &raft4, &client4)).await,
        Code::PermissionDenied,
        "WRONG_ROLE",
    );
    refused(
        bank(leader)
            .await
            .remove_replica(pb::RemoveReplicaRequest { id: followers[0] })
            .await,
        Code::PermissionDenied,
        "WRONG_ROLE",
    );
    refused(
        net.cluster(leader, Who::Anonymous)
            .await
            .get_cluster(pb::GetClusterRequest {})
            .await,
        Code::Unauthenticated,
        "CLIENT_CERTIFICATE_REQUIRED",
    );
    // On a follower: NOT_LEADER, naming the leader's client endpoint.
    let md = refused(
        net.cluster(followers[0], Who::CentralBank)
            .await
            .add_replica(add_req(4, &raft4, &client4))
            .await,
        Code::Unavailable,
        "NOT_LEADER",
    );
    assert_eq!(md.get("leader"), Some(&net.endpoint(leader)));
    let md = refused(
        net.cluster(followers[1], Who::CentralBank)
            .await
            .remove_replica(pb::RemoveReplicaRequest { id: followers[0] })
            .await,
        Code::Unavailable,
        "NOT_LEADER",
    );
    assert_eq!(md.get("leader"), Some(&net.endpoint(leader)));
    // An id already a member, with other addresses.
    let md = refused(
        lc().await.add_replica(add_req(followers[0], &raft4, &client4)).await,
        Code::AlreadyExists,
        "REPLICA_EXISTS",
    );
    assert_eq!(md.get("role").map(String::as_str), Some("voter"));
    // A new id at a member's address.
    let taken = net.members[&followers[1]].raft_addr.clone();
    refused(
        lc().await.add_replica(add_req(4, &taken, &client4)).await,
        Code::AlreadyExists,
        "REPLICA_ADDRESS_IN_USE",
    );
    // Malformed requests.
    for (r, why) in [
        (add_req(0, &raft4, &client4), "INVALID_REPLICA_ID"),
        (add_req(4, "127.0.0.1", &client4), "INVALID_RAFT_ADDRESS"),
        (
            add_req(4, &format!("https://{raft4}"), &client4),
            "INVALID_RAFT_ADDRESS",
        ),
        (
            add_req(4, &raft4, &client4.replace("https://", "http://")),
            "INVALID_CLIENT_ENDPOINT",
        ),
        (add_req(4, &raft4, &format!("{client4}/x")), "INVALID_CLIENT_ENDPOINT"),
    ] {
        refused(lc().await.add_replica(r).await, Code::InvalidArgument, why);
    }
    refused(
        lc().await.remove_replica(pb::RemoveReplicaRequest { id: 0 }).await,
        Code::InvalidArgument,
        "INVALID_REPLICA_ID",
    );
    // An unknown id.
    let md = refused(
        lc().await.remove_replica(pb::RemoveReplicaRequest { id: 9 }).await,
        Code::NotFound,
        "UNKNOWN_REPLICA",
    );
    assert_eq!(md.get("id").map(String::as_str), Some("9"));
    let unchanged = net.admin_of(leader).await.cluster_status().await.unwrap();
    let ids = |s: &ClusterStatus| s.members.iter().map(|m| (m.id, m.role)).collect::<Vec<_>>();
    assert_eq!(ids(&unchanged), ids(&ls), "a refused change changed the membership");

    // Added through the SDK (which goes to the leader) as a learner: it
    // catches up from the snapshot and the log after it.
    let t = Instant::now();
    let added = admin.add_replica(4, &raft4, &client4, false).await.unwrap();
    println!("AddReplica (snapshot install and catch-up): {:?}", t.elapsed());
    assert!(added.is_leader && added.node_id == leader, "{added:?}");
    let m4 = added.member(4).unwrap_or_else(|| panic!("no member 4: {added:?}"));
    assert_eq!(
        (m4.role, m4.raft_addr.as_str(), m4.client_endpoint.as_str()),
        (Some(ReplicaRole::Learner), raft4.as_str(), client4.as_str())
    );
    assert_eq!(added.members.len(), 4);
    // The new replica holds the leader's state, installed from the snapshot.
    let all: Vec<u64> = (1..=4).filter(|n| *n != leader).collect();
    let head = converged(&net, leader, &all).await;
    let s4 = new.cluster_status().await.unwrap();
    assert_eq!(
        (s4.applied_height, &s4.state_hash, &s4.head_hash),
        (head.applied_height, &head.state_hash, &head.head_hash)
    );
    assert!(
        s4.snapshot_log_index >= snap,
        "replica 4 did not install the leader's snapshot: {s4:?}"
    );
    assert_eq!((s4.leader_id, s4.members.len()), (leader, 4), "{s4:?}");
    // The same request again: the membership holds it already.
    let again = admin.add_replica(4, &raft4, &client4, false).await.unwrap();
    assert_eq!(again.member(4).unwrap().role, Some(ReplicaRole::Learner));
    // Now with promote: the learner becomes a voter.
    let promoted = admin.add_replica(4, &raft4, &client4, true).await.unwrap();
    assert_eq!(
        promoted.member(4).unwrap().role,
        Some(ReplicaRole::Voter),
        "{promoted:?}"
    );
    assert!(!promoted.joint, "{promoted:?}");
    let again = admin.add_replica(4, &raft4, &client4, true).await.unwrap();
    assert_eq!(again.member(4).unwrap().role, Some(ReplicaRole::Voter));
    // As a learner only, it is refused: it is a voter.
    let e = admin.add_replica(4, &raft4, &client4, false).await.unwrap_err();
    assert!(
        matches!(&e, Error::Refused { code, .. } if code == "REPLICA_EXISTS"),
        "{e:?}"
    );

    // A replica that is not running is added as a learner but cannot catch
    // up: past the call's deadline, DEADLINE_EXCEEDED with its reason; it
    // stays a learner (which the quorum does not need) until removed.
    let (raft5, client5) = (
        format!("127.0.0.1:{}", free_port()),
        format!("https://127.0.0.1:{}", free_port()),
    );
    let mut req = tonic::Request::new(add_req(5, &raft5, &client5));
    req.set_timeout(Duration::from_secs(3));
    let t = Instant::now();
    let md = refused(
        lc().await.add_replica(req).await,
        Code::DeadlineExceeded,
        "REPLICA_CATCH_UP_TIMEOUT",
    );
    assert!(t.elapsed() < Duration::from_secs(3), "answered before the deadline");
    assert_eq!(md.get("id").map(String::as_str), Some("5"));
    let s = net.admin_of(leader).await.cluster_status().await.unwrap();
    assert_eq!(s.member(5).and_then(|m| m.role), Some(ReplicaRole::Learner), "{s:?}");
    pay(&wallet, &net, 1).await;
    let s = admin.remove_replica(5).await.unwrap();
    assert!(s.member(5).is_none() && s.members.len() == 4, "{s:?}");
    // It names the leader for writes, from the membership (its own
    // configuration knows no other replica).
    let mut w4 = WalletServiceClient::new(net.channel(4, Who::Anonymous).await);
    let op = ruble_e2e::sign(
        &ruble_gateway::devnet::read_plain_key(&net.path().join(&net.manifest.businesses[0].key)).unwrap(),
        ruble_e2e::ruble_ledger::codec::Op::Transfer {
            payee: net.key(1).account_id(),
            amount: 1,
            purpose: String::new(),
        },
    );
    let md = refused(
        w4.submit(pb::SubmitRequest {
            operation: Some(wire(&op)),
        })
        .await,
        Code::Unavailable,
        "NOT_LEADER",
    );
    assert_eq!(md.get("leader"), Some(&net.endpoint(leader)));
    let md = refused(
        net.cluster(4, Who::CentralBank)
            .await
            .remove_replica(pb::RemoveReplicaRequest { id: 9 })
            .await,
        Code::Unavailable,
        "NOT_LEADER",
    );
    assert_eq!(md.get("leader"), Some(&net.endpoint(leader)));

    // Writes commit with four voters, on all four.
    pay(&wallet, &net, 2).await;
    converged(&net, leader, &all).await;

    // `ruble-admin cluster status --json` asks the replica it is given,
    // and never follows the leader.
    let e4 = net.endpoint(4);
    let (code, v, out) = admin_cli(&net, &["--endpoint", &e4, "cluster", "status", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        (v["ok"].as_bool(), v["node_id"].as_u64()),
        (Some(true), Some(4)),
        "{out}"
    );
    assert_eq!(v["leader_id"].as_u64(), Some(leader), "{out}");
    assert_eq!(v["is_leader"].as_bool(), Some(false), "{out}");
    assert!(v["term"].as_u64().is_some_and(|t| t >= 1), "{out}");
    let s4 = new.cluster_status().await.unwrap();
    assert_eq!(v["applied_height"].as_u64(), Some(s4.applied_height), "{out}");
    assert_eq!(v["state_hash"].as_str(), Some(s4.state_hash.as_str()), "{out}");
    assert_eq!(v["head_hash"].as_str(), Some(s4.head_hash.as_str()), "{out}");
    assert_eq!(s4.state_hash.len(), 64);
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 4, "{out}");
    for m in members {
        let id = m["id"].as_u64().unwrap();
        assert_eq!(
            m["raft_addr"].as_str(),
            Some(net.members[&id].raft_addr.as_str()),
            "{out}"
        );
        assert_eq!(m["client_endpoint"].as_str(), Some(net.endpoint(id).as_str()), "{out}");
        assert_eq!(m["role"].as_str(), Some("voter"), "{out}");
    }
    // Without --endpoint: the directory's endpoint, replica 1, even when
    // it is not the leader.
    let (code, v, out) = admin_cli(&net, &["cluster", "status", "--json"]).await;
    assert_eq!((code, v["node_id"].as_u64()), (0, Some(1)), "{out}");
    let (code, _, out) = admin_cli(&net, &["--endpoint", &e4, "cluster", "status"]).await;
    assert!(code == 0 && out.contains("node 4") && out.contains(&raft4), "{out}");
    // A change refused: exit 2 with the reason.
    let (code, v, out) = admin_cli(
        &net,
        &[
            "--json", "cluster", "add", "--id", "4", "--raft", &taken, "--client", &client4,
        ],
    )
    .await;
    assert_eq!((code, v["error"].as_str()), (2, Some("REPLICA_EXISTS")), "{out}");
    let (code, v, out) = admin_cli(&net, &["--json", "cluster", "remove", "--id", "9", "--yes"]).await;
    assert_eq!((code, v["error"].as_str()), (2, Some("UNKNOWN_REPLICA")), "{out}");
    // Removing asks first: without --yes and a terminal nothing is done.
    let (code, v, out) = admin_cli(&net, &["--json", "cluster", "remove", "--id", "4"]).await;
    assert_eq!((code, v["error"].as_str()), (1, Some("NOT_CONFIRMED")), "{out}");

    // One of the original followers is removed (through the SDK, which
    // goes to the leader) and stopped; writes go on committing on the rest.
    let gone = followers[0];
    let after = admin.remove_replica(gone).await.unwrap();
    assert!(after.member(gone).is_none(), "{after:?}");
    assert_eq!(after.members.len(), 3, "{after:?}");
    assert!(
        after.members.iter().all(|m| m.role == Some(ReplicaRole::Voter)),
        "{after:?}"
    );
    net.shutdown(gone).await;
    pay(&wallet, &net, 3).await;
    let rest: Vec<u64> = (1..=4).filter(|n| *n != leader && *n != gone).collect();
    converged(&net, leader, &rest).await;
    // Removing it again: no such member.
    let e = admin.remove_replica(gone).await.unwrap_err();
    assert!(
        matches!(&e, Error::Refused { code, .. } if code == "UNKNOWN_REPLICA"),
        "{e:?}"
    );
    // The new replica's view shows the removal too.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s4 = new.cluster_status().await.unwrap();
        if s4.member(gone).is_none() && s4.members.len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{s4:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    net.shutdown_all().await;
}

/// A cluster of one voter: it is never removed (`LAST_VOTER`); a change
/// being made holds the leader's change slot (`MEMBERSHIP_CHANGE_IN_PROGRESS`
/// for another meanwhile); and with a second voter down, a change cannot
/// commit (`MEMBERSHIP_CHANGE_TIMEOUT`, before the call's own deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_voter_stays_and_changes_wait_for_each_other_and_for_a_quorum() {
    let mut net = Net::new(2).await;
    let me = |n: u64| BTreeMap::from([(n, net.members[&n].clone())]);
    let (one, two) = (me(1), me(2));
    net.start(1, one, true).await;
    net.nodes[&1].wait_for_leader(Duration::from_secs(30)).await.unwrap();
    let lc = || net.cluster(1, Who::CentralBank);
    let md = refused(
        lc().await.remove_replica(pb::RemoveReplicaRequest { id: 1 }).await,
        Code::FailedPrecondition,
        "LAST_VOTER",
    );
    assert_eq!(md.get("id").map(String::as_str), Some("1"));

    // Replica 3 is not running: adding it waits out its call's deadline;
    // meanwhile another change is refused at once.
    let (raft3, client3) = (
        format!("127.0.0.1:{}", free_port()),
        format!("https://127.0.0.1:{}", free_port()),
    );
    let mut c = lc().await;
    let slow = tokio::spawn(async move {
        let mut req = tonic::Request::new(add_req(3, &raft3, &client3));
        req.set_timeout(Duration::from_secs(4));
        c.add_replica(req).await
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let s = net.admin_of(1).await.cluster_status().await.unwrap();
        if s.member(3).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "replica 3 never became a learner: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (raft2, client2) = (net.members[&2].raft_addr.clone(), net.endpoint(2));
    refused(
        lc().await.add_replica(add_req(2, &raft2, &client2)).await,
        Code::FailedPrecondition,
        "MEMBERSHIP_CHANGE_IN_PROGRESS",
    );
    refused(slow.await.unwrap(), Code::DeadlineExceeded, "REPLICA_CATCH_UP_TIMEOUT");
    let admin = net.admin_of(1).await;
    let s = admin.remove_replica(3).await.unwrap();
    assert_eq!(s.members.len(), 1, "{s:?}");

    // Replica 2 joins as a voter, then stops: no change can reach a quorum.
    net.start(2, two, false).await;
    let s = admin.add_replica(2, &raft2, &client2, true).await.unwrap();
    assert_eq!(s.member(2).and_then(|m| m.role), Some(ReplicaRole::Voter), "{s:?}");
    net.shutdown(2).await;
    let mut req = tonic::Request::new(pb::RemoveReplicaRequest { id: 2 });
    req.set_timeout(Duration::from_secs(3));
    let t = Instant::now();
    refused(
        net.cluster(1, Who::CentralBank).await.remove_replica(req).await,
        Code::DeadlineExceeded,
        "MEMBERSHIP_CHANGE_TIMEOUT",
    );
    assert!(t.elapsed() < Duration::from_secs(3), "answered before the deadline");
    net.shutdown_all().await;
}

/// Three voters, one of them down: removing a live voter is refused up front
/// (`QUORUM_AT_RISK`, naming the down one), since the voters left could not
/// form a live majority (the joint configuration would need the down voter
/// and stall every write); nothing changes and writes go on committing.
/// Removing the down voter is what gets rid of it, and is made. The cluster
/// is idle when the live voter's removal is asked for: the down voter's log
/// still matches the leader's last index, so only a fresh acknowledgement
/// tells it is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_leaves_no_live_majority_is_refused() {
    let mut net = Net::new(3).await;
    net.start_first_three().await;
    let wallet = net.wallet_of_first_three().await;
    pay(&wallet, &net, 3).await;
    let leader = status_with_leader(&net.admin_of(1).await).await.leader_id;
    let followers: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    let (live, down) = (followers[0], followers[1]);
    converged(&net, leader, &followers).await;
    // Idle: the leader's log is matched on every voter up to its end.
    let lead = net.admin_of(leader).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let s = lead.cluster_status().await.unwrap();
        if s.members.iter().all(|m| m.matched_index == Some(s.last_log_index)) {
            break s;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // One voter stops; at once (nothing written since) the live one's
    // removal is asked for. Without the check it would wait out the
    // deadline (`MEMBERSHIP_CHANGE_TIMEOUT`) with the cluster stalled.
    net.shutdown(down).await;
    let lc = || net.cluster(leader, Who::CentralBank);
    let mut req = tonic::Request::new(pb::RemoveReplicaRequest { id: live });
    req.set_timeout(Duration::from_secs(15));
    let t = Instant::now();
    let r = lc().await.remove_replica(req).await;
    println!("RemoveReplica refused in {:?}", t.elapsed());
    let md = refused(r, Code::FailedPrecondition, "QUORUM_AT_RISK");
    assert_eq!(md.get("id"), Some(&live.to_string()), "{md:?}");
    assert_eq!(md.get("unreachable"), Some(&down.to_string()), "{md:?}");

    // Nothing changed: the same voters, no joint configuration, and writes
    // commit (on the leader and the live follower).
    let ids = |s: &ClusterStatus| s.members.iter().map(|m| (m.id, m.role)).collect::<Vec<_>>();
    let s = lead.cluster_status().await.unwrap();
    assert_eq!(ids(&s), ids(&before), "a refused change changed the membership");
    assert!(!s.joint && s.is_leader, "{s:?}");
    tokio::time::timeout(Duration::from_secs(20), pay(&wallet, &net, 2))
        .await
        .expect("writes stalled after the refusal");
    converged(&net, leader, &[live]).await;

    // Removing the down voter: the leader and the live one are a majority
    // of what is left.
    let mut req = tonic::Request::new(pb::RemoveReplicaRequest { id: down });
    req.set_timeout(Duration::from_secs(15));
    let s = lc().await.remove_replica(req).await.unwrap().into_inner();
    let mut left: Vec<u64> = s.members.iter().map(|m| m.id).collect();
    left.sort_unstable();
    let mut want = vec![leader, live];
    want.sort_unstable();
    assert_eq!(left, want, "{s:?}");
    assert!(!s.joint, "{s:?}");
    tokio::time::timeout(Duration::from_secs(20), pay(&wallet, &net, 2))
        .await
        .expect("writes stalled after the removal");
    converged(&net, leader, &[live]).await;
    net.shutdown_all().await;
}
