//! `ruble-node run` configuration: a TOML file, every setting overridable by a
//! flag and a `RUBLE_*` environment variable (flags and variables win).
//!
//! ```toml
//! data_dir = "/var/lib/ruble"          # RocksDB in data_dir/db
//! genesis = "/etc/ruble/genesis.json"   # needed for the first start only
//! listen = "0.0.0.0:50051"
//! metrics_listen = "127.0.0.1:9100"
//! [tls]
//! ca = "/etc/ruble/ca.pem"              # verifies bank / central-bank client certificates
//! cert = "/etc/ruble/server.pem"
//! key = "/etc/ruble/server-key.pem"
//! [limits]
//! max_message_bytes = 4194304
//! max_batch_len = 4096
//! max_anonymous_streams = 512          # streams without a client certificate, node-wide
//! max_streams_per_ip = 32               # ... from one IP address
//! max_streams_per_participant = 64      # each bank's and the central bank's own budget
//! anonymous_stream_idle_ms = 30000      # idle or stalled streams end after this
//! participant_stream_idle_ms = 600000
//! max_connections = 4096
//! max_connections_per_ip = 256
//! max_stream_ops_per_sec = 200000
//! max_inflight_ops = 65536
//! [block]
//! max_ops = 8192
//! max_wait_ms = 20
//! min_interval_ms = 2
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ctx::ClientLimits;
use crate::node::{ClusterOptions, Member, NodeOptions, TlsFiles};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_message_bytes: usize,
    pub max_batch_len: usize,
    /// Was `max_concurrent_streams`, when all streams shared one budget.
    #[serde(alias = "max_concurrent_streams")]
    pub max_anonymous_streams: usize,
    pub max_streams_per_ip: usize,
    pub max_streams_per_participant: usize,
    pub anonymous_stream_idle_ms: u64,
    pub participant_stream_idle_ms: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_stream_ops_per_sec: u64,
    pub max_inflight_ops: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let c = ClientLimits::default();
        LimitsConfig {
            max_message_bytes: c.max_message_bytes,
            max_batch_len: c.max_batch_len,
            max_anonymous_streams: c.max_anonymous_streams,
            max_streams_per_ip: c.max_streams_per_ip,
            max_streams_per_participant: c.max_streams_per_participant,
            anonymous_stream_idle_ms: c.anonymous_stream_idle.as_millis() as u64,
            participant_stream_idle_ms: c.participant_stream_idle.as_millis() as u64,
            max_connections: c.max_connections,
            max_connections_per_ip: c.max_connections_per_ip,
            max_stream_ops_per_sec: c.max_stream_ops_per_sec,
            max_inflight_ops: 65_536,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockConfig {
    pub max_ops: usize,
    pub max_wait_ms: u64,
    /// Shortest time between two blocks that are not full.
    pub min_interval_ms: u64,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            max_ops: 8192,
            max_wait_ms: 20,
            min_interval_ms: 2,
        }
    }
}

/// `[cluster]`: this node is one replica of a Raft group.
///
/// ```toml
/// [cluster]
/// node_id = 1
/// raft_listen = "10.0.0.1:50061"
/// bootstrap = true          # one replica of a new cluster
/// tls = { ca = "pki/ca.pem", cert = "pki/peer.pem", key = "pki/peer-key.pem" }
/// [[cluster.members]]
/// id = 1
/// raft = "10.0.0.1:50061"
/// client = "https://10.0.0.1:50051"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub node_id: u64,
    pub raft_listen: SocketAddr,
    #[serde(default)]
    pub bootstrap: bool,
    /// The CA and this replica's node certificate (`ruble-node pki`'s
    /// peer certificate); without it, replication is plaintext, loopback only.
    pub tls: Option<TlsConfig>,
    pub members: Vec<MemberConfig>,
}

/// One replica, as `[[cluster.members]]` names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: u64,
    /// Its replication address, `host:port`.
    pub raft: String,
    /// Its client endpoint, `https://host:port`.
    pub client: String,
}

/// The whole node configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub genesis: Option<PathBuf>,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    /// Serve without TLS: allowed on a loopback address only, and only when set.
    pub plaintext: bool,
    pub tls: Option<TlsConfig>,
    pub limits: LimitsConfig,
    pub block: BlockConfig,
    pub cluster: Option<ClusterConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("ruble-data"),
            genesis: None,
            listen: "127.0.0.1:50051".parse().expect("literal"),
            metrics_listen: Some("127.0.0.1:9100".parse().expect("literal")),
            plaintext: false,
            tls: None,
            limits: LimitsConfig::default(),
            block: BlockConfig::default(),
            cluster: None,
        }
    }
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The node listens in plaintext only on loopback and only when asked.
    pub fn validate(&self) -> Result<()> {
        match (&self.tls, self.plaintext) {
            (Some(_), true) => bail!("both `tls` and `plaintext` are set; choose one"),
            (None, false) => bail!("no TLS configured: set [tls] (or `plaintext = true` on a loopback address)"),
            (None, true) if !self.listen.ip().is_loopback() => {
                bail!("plaintext is allowed on a loopback address only, not {}", self.listen)
            }
            _ => {}
        }
        let l = &self.limits;
        if [
            l.max_batch_len,
            l.max_inflight_ops,
            self.block.max_ops,
            l.max_anonymous_streams,
            l.max_streams_per_ip,
            l.max_streams_per_participant,
            l.max_connections,
            l.max_connections_per_ip,
        ]
        .contains(&0)
            || l.anonymous_stream_idle_ms == 0
            || l.participant_stream_idle_ms == 0
        {
            bail!("limits must be positive");
        }
        if let Some(c) = &self.cluster {
            let ids: std::collections::BTreeSet<u64> = c.members.iter().map(|m| m.id).collect();
            if ids.len() != c.members.len() {
                bail!("cluster.members: a node id appears twice");
            }
            if !ids.contains(&c.node_id) {
                bail!("cluster.node_id {} is not among cluster.members", c.node_id);
            }
            if c.tls.is_none() && !c.raft_listen.ip().is_loopback() {
                bail!("cluster.tls is required off loopback (replication carries every operation)");
            }
        }
        if self.block.min_interval_ms > self.block.max_wait_ms {
            bail!(
                "block.min_interval_ms ({}) exceeds block.max_wait_ms ({})",
                self.block.min_interval_ms,
                self.block.max_wait_ms
            );
        }
        Ok(())
    }
}

/// Flags of `ruble-node run`; each overrides the file and has a `RUBLE_*` variable.
#[derive(clap::Args, Debug, Default)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long, env = "RUBLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (RocksDB lives in DATA_DIR/db).
    #[arg(long, env = "RUBLE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Genesis JSON, used to initialise an empty data directory.
    #[arg(long, env = "RUBLE_GENESIS")]
    pub genesis: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "RUBLE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Prometheus metrics listen address (`/metrics`).
    #[arg(long, env = "RUBLE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve without TLS (loopback addresses only).
    #[arg(long, env = "RUBLE_PLAINTEXT")]
    pub plaintext: bool,
    /// CA certificate (PEM) that client certificates must chain to.
    #[arg(long, env = "RUBLE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Server certificate (PEM).
    #[arg(long, env = "RUBLE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "RUBLE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "RUBLE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most operations in one batch request.
    #[arg(long, env = "RUBLE_MAX_BATCH_LEN")]
    pub max_batch_len: Option<usize>,
    /// Most concurrent streaming calls without a client certificate, node-wide
    /// (each bank and the central bank have budgets of their own).
    #[arg(long, env = "RUBLE_MAX_ANONYMOUS_STREAMS")]
    pub max_anonymous_streams: Option<usize>,
    /// Most concurrent streaming calls without a client certificate from one IP address.
    #[arg(long, env = "RUBLE_MAX_STREAMS_PER_IP")]
    pub max_streams_per_ip: Option<usize>,
    /// Most concurrent streaming calls of one bank (or the central bank).
    #[arg(long, env = "RUBLE_MAX_STREAMS_PER_PARTICIPANT")]
    pub max_streams_per_participant: Option<usize>,
    /// A stream without a client certificate that sends nothing (or reads
    /// none of its results) for this long is ended, in milliseconds.
    #[arg(long, env = "RUBLE_ANONYMOUS_STREAM_IDLE_MS")]
    pub anonymous_stream_idle_ms: Option<u64>,
    /// The same for banks' and the central bank's streams, in milliseconds.
    #[arg(long, env = "RUBLE_PARTICIPANT_STREAM_IDLE_MS")]
    pub participant_stream_idle_ms: Option<u64>,
    /// Most open TCP connections, node-wide.
    #[arg(long, env = "RUBLE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most open TCP connections from one IP address.
    #[arg(long, env = "RUBLE_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Most operations per second on one submission stream.
    #[arg(long, env = "RUBLE_MAX_STREAM_OPS_PER_SEC")]
    pub max_stream_ops_per_sec: Option<u64>,
    /// Operations admitted and not yet answered before RESOURCE_EXHAUSTED.
    #[arg(long, env = "RUBLE_MAX_INFLIGHT_OPS")]
    pub max_inflight_ops: Option<usize>,
    /// Largest block, in operations.
    #[arg(long, env = "RUBLE_MAX_BLOCK_OPS")]
    pub max_block_ops: Option<usize>,
    /// Longest a block gathers operations while the previous one is being
    /// committed, in milliseconds (a block is sealed as soon as the committer
    /// is free, so this only bounds a slow commit's effect).
    #[arg(long, env = "RUBLE_MAX_BLOCK_WAIT_MS")]
    pub max_block_wait_ms: Option<u64>,
    /// Shortest time between two blocks that are not full, in milliseconds
    /// (fewer, larger blocks under a moderate load; 0 seals whenever the
    /// committer is free).
    #[arg(long, env = "RUBLE_MIN_BLOCK_INTERVAL_MS")]
    pub min_block_interval_ms: Option<u64>,
}

impl RunArgs {
    /// The file (if any), then flags and variables on top; validated.
    pub fn resolve(self) -> Result<NodeConfig> {
        let mut c = match &self.config {
            Some(p) => NodeConfig::load(p)?,
            None => NodeConfig::default(),
        };
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.genesis {
            c.genesis = Some(v);
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.metrics_listen {
            c.metrics_listen = Some(v);
        }
        if self.plaintext {
            c.plaintext = true;
        }
        match (self.tls_ca, self.tls_cert, self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => c.tls = Some(TlsConfig { ca, cert, key }),
            (None, None, None) => {}
            _ => bail!("--tls-ca, --tls-cert and --tls-key go together"),
        }
        if let Some(v) = self.max_message_bytes {
            c.limits.max_message_bytes = v;
        }
        if let Some(v) = self.max_batch_len {
            c.limits.max_batch_len = v;
        }
        let l = &mut c.limits;
        for (flag, field) in [
            (self.max_anonymous_streams, &mut l.max_anonymous_streams),
            (self.max_streams_per_ip, &mut l.max_streams_per_ip),
            (self.max_streams_per_participant, &mut l.max_streams_per_participant),
            (self.max_connections, &mut l.max_connections),
            (self.max_connections_per_ip, &mut l.max_connections_per_ip),
        ] {
            if let Some(v) = flag {
                *field = v;
            }
        }
        for (flag, field) in [
            (self.anonymous_stream_idle_ms, &mut l.anonymous_stream_idle_ms),
            (self.participant_stream_idle_ms, &mut l.participant_stream_idle_ms),
        ] {
            if let Some(v) = flag {
                *field = v;
            }
        }
        if let Some(v) = self.max_stream_ops_per_sec {
            c.limits.max_stream_ops_per_sec = v;
        }
        if let Some(v) = self.max_inflight_ops {
            c.limits.max_inflight_ops = v;
        }
        if let Some(v) = self.max_block_ops {
            c.block.max_ops = v;
        }
        if let Some(v) = self.max_block_wait_ms {
            c.block.max_wait_ms = v;
        }
        if let Some(v) = self.min_block_interval_ms {
            c.block.min_interval_ms = v;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Turns a configuration into node options (reading the genesis file if given).
pub fn node_options(c: &NodeConfig) -> Result<NodeOptions> {
    let genesis_path = c.genesis.clone().or_else(|| {
        let p = c.data_dir.join("genesis.json");
        p.exists().then_some(p)
    });
    let genesis = match genesis_path {
        Some(p) => Some(serde_json::from_slice(
            &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        )?),
        None => None,
    };
    Ok(NodeOptions {
        db_dir: c.data_dir.join("db"),
        genesis,
        listen: c.listen,
        metrics_listen: c.metrics_listen,
        tls: c.tls.as_ref().map(|t| TlsFiles {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
        }),
        limits: ClientLimits {
            max_message_bytes: c.limits.max_message_bytes,
            max_batch_len: c.limits.max_batch_len,
            max_anonymous_streams: c.limits.max_anonymous_streams,
            max_streams_per_ip: c.limits.max_streams_per_ip,
            max_streams_per_participant: c.limits.max_streams_per_participant,
            anonymous_stream_idle: Duration::from_millis(c.limits.anonymous_stream_idle_ms),
            participant_stream_idle: Duration::from_millis(c.limits.participant_stream_idle_ms),
            max_connections: c.limits.max_connections,
            max_connections_per_ip: c.limits.max_connections_per_ip,
            max_stream_ops_per_sec: c.limits.max_stream_ops_per_sec,
            ..ClientLimits::default()
        },
        pipeline: ruble_ledger::pipeline::PipelineConfig {
            max_inflight_ops: c.limits.max_inflight_ops,
            max_block_ops: c.block.max_ops,
            max_block_wait: Duration::from_millis(c.block.max_wait_ms),
            min_block_interval: Duration::from_millis(c.block.min_interval_ms),
            ..Default::default()
        },
        shutdown_grace: Duration::from_secs(10),
        cluster: c.cluster.as_ref().map(|k| ClusterOptions {
            node_id: k.node_id,
            raft_listen: k.raft_listen,
            members: k
                .members
                .iter()
                .map(|m| {
                    (
                        m.id,
                        Member {
                            raft_addr: m.raft.clone(),
                            client_endpoint: m.client.clone(),
                        },
                    )
                })
                .collect(),
            tls: k.tls.as_ref().map(|t| TlsFiles {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
            }),
            bootstrap: k.bootstrap,
            peer_addrs: Default::default(),
            unsafe_ack_before_quorum: false,
            rejoining: false,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_then_flags_override() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(
            &p,
            "data_dir = \"/x\"\nlisten = \"127.0.0.1:7000\"\nplaintext = true\n[limits]\nmax_batch_len = 10\n",
        )
        .unwrap();
        let c = RunArgs {
            config: Some(p.clone()),
            max_batch_len: Some(20),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.limits.max_batch_len, 20);
        assert_eq!(c.limits.max_inflight_ops, 65_536);
        // The block timing: from the file, a flag on top, and validated.
        std::fs::write(&p, "plaintext = true\n[block]\nmax_wait_ms = 30\nmin_interval_ms = 5\n").unwrap();
        let c = RunArgs {
            config: Some(p.clone()),
            min_block_interval_ms: Some(7),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!((c.block.max_wait_ms, c.block.min_interval_ms), (30, 7));
        let err = RunArgs {
            config: Some(p.clone()),
            min_block_interval_ms: Some(31),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("min_interval_ms"), "{err}");
        // Stream budgets: the old name still reads, flags win, zero is refused.
        std::fs::write(
            &p,
            "plaintext = true\n[limits]\nmax_concurrent_streams = 9\nmax_streams_per_ip = 4\n",
        )
        .unwrap();
        let c = RunArgs {
            config: Some(p.clone()),
            max_streams_per_participant: Some(5),
            anonymous_stream_idle_ms: Some(1500),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let o = node_options(&c).unwrap().limits;
        assert_eq!(
            (
                o.max_anonymous_streams,
                o.max_streams_per_ip,
                o.max_streams_per_participant
            ),
            (9, 4, 5)
        );
        assert_eq!(o.anonymous_stream_idle, Duration::from_millis(1500));
        assert!(RunArgs {
            config: Some(p.clone()),
            max_connections_per_ip: Some(0),
            ..Default::default()
        }
        .resolve()
        .is_err());
        // Unknown keys are an error, not silently ignored.
        std::fs::write(&p, "data_dirr = \"/x\"\n").unwrap();
        assert!(NodeConfig::load(&p).is_err());
    }

    #[test]
    fn plaintext_only_on_loopback_and_only_when_asked() {
        let mut c = NodeConfig {
            plaintext: true,
            ..Default::default()
        };
        c.validate().unwrap();
        c.listen = "0.0.0.0:50051".parse().unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("loopback"));
        c.plaintext = false;
        assert!(c.validate().unwrap_err().to_string().contains("no TLS"));
    }

    /// `[cluster]` becomes the node's cluster options; a node id missing
    /// from the members, a repeated id, and plaintext replication off
    /// loopback are refused.
    #[test]
    fn a_cluster_section_names_this_replica_and_its_members() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        let text = |node_id: u64, raft_listen: &str, second_id: u64| {
            format!(
                "plaintext = true\n[cluster]\nnode_id = {node_id}\nraft_listen = \"{raft_listen}\"\nbootstrap = true\n\
                 [[cluster.members]]\nid = 1\nraft = \"127.0.0.1:50061\"\nclient = \"https://127.0.0.1:50051\"\n\
                 [[cluster.members]]\nid = {second_id}\nraft = \"127.0.0.1:50062\"\nclient = \"https://127.0.0.1:50052\"\n"
            )
        };
        std::fs::write(&p, text(2, "127.0.0.1:50062", 2)).unwrap();
        let c = NodeConfig::load(&p).unwrap();
        c.validate().unwrap();
        let o = node_options(&c).unwrap().cluster.expect("cluster options");
        assert_eq!((o.node_id, o.bootstrap, o.members.len()), (2, true, 2));
        assert_eq!(o.members[&1].client_endpoint, "https://127.0.0.1:50051");
        assert_eq!(o.members[&2].raft_addr, "127.0.0.1:50062");

        for (bad, why) in [
            (text(3, "127.0.0.1:50062", 2), "not among"),
            (text(1, "127.0.0.1:50062", 1), "twice"),
            (text(2, "0.0.0.0:50062", 2), "cluster.tls"),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = NodeConfig::load(&p).unwrap().validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
