//! Support for the end-to-end tests: a real node (the `ruble-gateway`
//! library, the same code `ruble-node` runs) on 127.0.0.1:0 with the dev PKI
//! and real TLS, over a RocksDB in a temp dir, and clients for every role.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rand::Rng;
use ruble_gateway::ctx::ClientLimits;
use ruble_gateway::devnet::{self, DevManifest};
use ruble_gateway::node::{self, NodeOptions, RunningNode, TlsFiles};
use ruble_ledger::codec::{Op, OpBody, SignedOp};
use ruble_ledger::pipeline::PipelineConfig;
use ruble_ledger::types::AccountId;
use ruble_proto::v1 as pb;
use ruble_proto::v1::bank_service_client::BankServiceClient;
use ruble_proto::v1::central_bank_service_client::CentralBankServiceClient;
use ruble_proto::v1::wallet_service_client::WalletServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub mod fuzz;

pub use ruble_ledger;
pub use ruble_proto;

/// Who a client presents itself as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Anonymous,
    CentralBank,
    Bank(usize),
}

pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub manifest: DevManifest,
    node: Option<RunningNode>,
    limits: ClientLimits,
    pipeline: PipelineConfig,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

impl TestNode {
    pub async fn start() -> TestNode {
        TestNode::start_with(ClientLimits::default(), PipelineConfig::default()).await
    }

    pub async fn start_with(limits: ClientLimits, pipeline: PipelineConfig) -> TestNode {
        TestNode::start_in(tempfile::tempdir().unwrap(), limits, pipeline).await
    }

    /// A dev node whose whole directory (PKI, keys, RocksDB) is `dir`, for
    /// tests that need the data on a particular filesystem.
    pub async fn start_in(dir: tempfile::TempDir, limits: ClientLimits, pipeline: PipelineConfig) -> TestNode {
        let d = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || devnet::ensure(&d))
            .await
            .unwrap()
            .unwrap();
        let manifest = DevManifest::load(dir.path()).unwrap();
        let mut t = TestNode {
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            manifest,
            node: None,
            limits,
            pipeline,
        };
        t.boot("127.0.0.1:0".parse().unwrap()).await;
        t
    }

    fn node_options(&self, listen: SocketAddr) -> NodeOptions {
        let genesis = serde_json::from_slice(&std::fs::read(self.dir.path().join("genesis.json")).unwrap()).unwrap();
        let p = self.dir.path();
        NodeOptions {
            db_dir: p.join("db"),
            genesis: Some(genesis),
            listen,
            metrics_listen: None,
            tls: Some(TlsFiles {
                ca: p.join("pki/ca.pem"),
                cert: p.join("pki/server.pem"),
                key: p.join("pki/server-key.pem"),
            }),
            limits: self.limits.clone(),
            pipeline: self.pipeline.clone(),
            shutdown_grace: Duration::from_secs(2),
            cluster: None,
        }
    }

    async fn boot(&mut self, listen: SocketAddr) {
        let opts = self.node_options(listen);
        let p = self.dir.path();
        // The port of a restarted node may take a moment to be free again.
        let mut tries = 0;
        let node = loop {
            match node::start(opts.clone()).await {
                Ok(n) => break n,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("node did not start: {e:#}"),
            }
        };
        self.addr = node.addr;
        let mut m = DevManifest::load(p).unwrap();
        m.endpoint = self.endpoint();
        m.save(p).unwrap();
        self.manifest = m;
        self.node = Some(node);
    }

    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Graceful stop (commits the block in flight).
    pub async fn stop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown().await.unwrap();
        }
    }

    /// The options this node starts with (to start one by hand in a test).
    pub fn options(&self) -> NodeOptions {
        self.node_options(self.addr)
    }

    /// Stops and starts again on the same address and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let addr = self.addr;
        self.boot(addr).await;
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.path().join("pki/ca.pem")).unwrap()
    }

    fn pem(&self, rel: &Option<String>) -> String {
        std::fs::read_to_string(self.path().join(rel.as_ref().unwrap())).unwrap()
    }

    pub async fn channel(&self, role: Role) -> Channel {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.ca_pem()));
        match role {
            Role::Anonymous => {}
            Role::CentralBank => {
                let p = &self.manifest.central_bank;
                tls = tls.identity(Identity::from_pem(self.pem(&p.cert), self.pem(&p.cert_key)));
            }
            Role::Bank(i) => {
                let p = &self.manifest.banks[i];
                tls = tls.identity(Identity::from_pem(self.pem(&p.cert), self.pem(&p.cert_key)));
            }
        }
        Endpoint::from_shared(self.endpoint())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn wallet(&self, role: Role) -> WalletServiceClient<Channel> {
        WalletServiceClient::new(self.channel(role).await)
    }
    pub async fn bank(&self, role: Role) -> BankServiceClient<Channel> {
        BankServiceClient::new(self.channel(role).await)
    }
    pub async fn cb(&self, role: Role) -> CentralBankServiceClient<Channel> {
        CentralBankServiceClient::new(self.channel(role).await)
    }

    /// An SDK client for the wallet service.
    pub async fn sdk(&self) -> ruble_wallet::Client {
        ruble_wallet::ClientBuilder::new(self.endpoint())
            .ca_pem(self.ca_pem())
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .unwrap()
    }

    pub fn key_file(&self, name: &str) -> PathBuf {
        self.path().join(format!("keys/{name}.json"))
    }

    pub fn key(&self, name: &str) -> SigningKey {
        devnet::read_plain_key(&self.key_file(name)).unwrap()
    }
    pub fn cb_key(&self) -> SigningKey {
        self.key("central-bank")
    }
    pub fn bank_key(&self, i: usize) -> SigningKey {
        let name = self.manifest.banks[i].name.clone();
        self.key(&name)
    }
    pub fn business_key(&self, i: usize) -> SigningKey {
        self.key(&format!("business-{}", i + 1))
    }

    /// The central bank's view of the whole state (for "nothing changed" checks).
    pub async fn state_hash(&self) -> Vec<u8> {
        let mut cb = self.cb(Role::CentralBank).await;
        cb.get_supply(pb::GetSupplyRequest {})
            .await
            .unwrap()
            .into_inner()
            .state_hash
    }

    pub async fn supply(&self) -> pb::SupplyReport {
        let mut cb = self.cb(Role::CentralBank).await;
        cb.get_supply(pb::GetSupplyRequest {}).await.unwrap().into_inner()
    }

    /// A balance as the central bank sees it.
    pub async fn balance(&self, id: AccountId) -> u64 {
        let mut cb = self.cb(Role::CentralBank).await;
        cb.get_any_account(pb::GetClientAccountRequest { account: id.0.to_vec() })
            .await
            .unwrap()
            .into_inner()
            .balance
    }
}

pub fn id(k: &SigningKey) -> AccountId {
    AccountId(k.verifying_key().to_bytes())
}

/// Signs `op` for the dev chain, valid for five minutes, random nonce.
pub fn sign(k: &SigningKey, op: Op) -> SignedOp {
    SignedOp::sign(
        OpBody {
            chain_id: devnet::DEV_CHAIN_ID.into(),
            signer: id(k),
            nonce: rand::thread_rng().gen(),
            valid_until_ms: now_ms() + 300_000,
            op,
        },
        k,
    )
}

pub fn req(op: &SignedOp) -> pb::SubmitRequest {
    pb::SubmitRequest {
        operation: Some(wire(op)),
    }
}

pub fn wire(op: &SignedOp) -> pb::SignedOperation {
    pb::SignedOperation {
        body: op.body_bytes.clone(),
        signature: op.signature.to_vec(),
    }
}

/// The machine-readable reason of an error status.
pub fn reason(st: &tonic::Status) -> String {
    ruble_wallet::error::status_reason(st).unwrap_or_default()
}

/// Path of a workspace binary built next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A port free on 127.0.0.1 now (for a node whose addresses must be known
/// before it starts, as a replica's are to its peers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a README walk-through printed, and the directory it ran in.
pub struct Walkthrough {
    pub out: String,
    pub err: String,
    pub dir: tempfile::TempDir,
}

/// Runs the README's shell block after `marker` exactly as written: with
/// `bash -euo pipefail` on an empty directory, the workspace's binaries
/// first on PATH, no inherited `RUBLE_*` variables and the passphrases in
/// the variables the README names. Fails the test if the script fails or
/// takes over 180 s; the script's process group (the node it started in
/// the background included) is ended whatever happens.
pub fn run_readme_walkthrough(marker: &str) -> Walkthrough {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    /// Ends the script's whole process group.
    struct Group(i32);
    impl Drop for Group {
        fn drop(&mut self) {
            // SAFETY: kill(2) on the process group this test created; no memory is involved.
            unsafe {
                libc::kill(-self.0, libc::SIGTERM);
            }
        }
    }

    let readme = include_str!("../../README.md");
    let after = readme
        .split_once(marker)
        .unwrap_or_else(|| panic!("README has no {marker} marker"))
        .1;
    let body = after.split_once("```sh\n").expect("a sh block after the marker").1;
    let script = body.split_once("```").expect("the block ends").0;
    assert!(script.contains("ruble-node init"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("walkthrough.sh"), script).unwrap();
    let bin_dir = bin("ruble-node").parent().unwrap().to_path_buf();
    for b in ["ruble-admin", "ruble-bank", "ruble-wallet"] {
        bin(b);
    }
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "walkthrough.sh"])
        .current_dir(dir.path())
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, _) in std::env::vars() {
        if k.starts_with("RUBLE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUBLE_CB_PASSPHRASE", "walkthrough central bank")
        .env("RUBLE_BANK_PASSPHRASE", "walkthrough")
        .env("RUBLE_WALLET_PASSPHRASE", "walkthrough");
    let mut child = cmd.spawn().unwrap();
    let _group = Group(child.id() as i32);
    // Both pipes are read while the script runs: its output may outgrow a pipe's buffer.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the walk-through did not finish in 180 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out_reader.join().unwrap().unwrap();
    let err = err_reader.join().unwrap().unwrap();
    let node_log = std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
    assert!(
        status.success(),
        "walk-through failed ({status})\n--- stdout\n{out}\n--- stderr\n{err}\n--- node.log\n{node_log}"
    );
    Walkthrough { out, err, dir }
}
