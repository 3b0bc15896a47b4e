//! `ruble-node dev`: a self-contained development network in one directory.
//!
//! On first start it writes a dev genesis (central bank, two banks), a dev PKI
//! (CA, server certificate, a client certificate per participant), wallet key
//! files for every participant and four funded business accounts, and a
//! manifest (`dev.json`) that tools (`txgen --dev-dir`, `ruble-wallet`) read.
//! Later starts reuse all of it.
//!
//! ```text
//! DIR/dev.json            manifest: chain id, endpoint, paths below, ids
//! DIR/genesis.json
//! DIR/db/                 RocksDB
//! DIR/pki/                ca.pem, server.pem, <who>.pem and <who>-key.pem
//! DIR/keys/<who>.json     wallet key files (ruble-wallet-key/v1, unencrypted: dev only)
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use ruble_ledger::codec::{Op, OpBody, SignedOp};
use ruble_ledger::state::{Genesis, GenesisBank};
use ruble_ledger::types::{AccountId, AccountKind, Limits, Phase};
use ruble_ledger::Ledger;
use serde::{Deserialize, Serialize};

use crate::auth::Participant;
use crate::ctx::now_ms;
use crate::init::{DEFAULT_HOSTS, DEFAULT_MAX_VALIDITY, DEFAULT_REPORTING_THRESHOLD, DEFAULT_RETAIL_LIMITS};
use crate::pki;

pub const DEV_CHAIN_ID: &str = "ruble-dev";

/// One participant's files, relative to the dev directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevParticipant {
    pub name: String,
    /// Account id (hex public key).
    pub id: String,
    /// Wallet key file.
    pub key: String,
    /// mTLS client certificate and key (central bank and banks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_key: Option<String>,
    /// Servicing bank (businesses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<String>,
}

/// `dev.json`: everything a tool needs to talk to the dev node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevManifest {
    pub chain_id: String,
    /// `https://HOST:PORT`, rewritten at every start with the bound address.
    pub endpoint: String,
    /// With `--replicas N`: every replica's client endpoint (the SDK follows
    /// the leader among them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    pub ca: String,
    pub central_bank: DevParticipant,
    pub banks: Vec<DevParticipant>,
    pub businesses: Vec<DevParticipant>,
}

impl DevManifest {
    pub fn load(dir: &Path) -> Result<DevManifest> {
        let raw = std::fs::read(dir.join("dev.json")).with_context(|| format!("reading {}/dev.json", dir.display()))?;
        Ok(serde_json::from_slice(&raw)?)
    }
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::write(dir.join("dev.json"), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// Writes a wallet key file in the `ruble-wallet-key/v1` plain format (the
/// format `ruble-wallet` reads; it can also write passphrase-encrypted ones).
pub fn write_plain_key(path: &Path, key: &SigningKey) -> Result<()> {
    let doc = serde_json::json!({
        "format": "ruble-wallet-key/v1",
        "public_key": hex::encode(key.verifying_key().to_bytes()),
        "secret_key": hex::encode(key.to_bytes()),
    });
    write_private(path, serde_json::to_string_pretty(&doc)?.as_bytes())
}

/// Reads a plain key file.
pub fn read_plain_key(path: &Path) -> Result<SigningKey> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let hexkey = v["secret_key"]
        .as_str()
        .context("not a plain ruble-wallet-key/v1 file (encrypted keys are read by ruble-wallet)")?;
    let bytes: [u8; 32] = hex::decode(hexkey)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("secret key must be 32 bytes"))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

/// Paths of the dev node's TLS material.
pub struct DevTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates the dev network in `dir` unless it exists. Returns the genesis
/// and the server TLS files.
pub fn ensure(dir: &Path) -> Result<(Genesis, DevTls)> {
    std::fs::create_dir_all(dir)?;
    let tls = DevTls {
        ca: dir.join("pki/ca.pem"),
        cert: dir.join("pki/server.pem"),
        key: dir.join("pki/server-key.pem"),
    };
    if dir.join("dev.json").exists() {
        let g: Genesis = serde_json::from_slice(&std::fs::read(dir.join("genesis.json"))?)?;
        return Ok((g, tls));
    }
    std::fs::create_dir_all(dir.join("pki"))?;
    std::fs::create_dir_all(dir.join("keys"))?;
    let mut rng = rand::rngs::OsRng;
    let cb = SigningKey::generate(&mut rng);
    let banks: Vec<(String, SigningKey)> = ["alfa-dev-bank", "beta-dev-bank"]
        .iter()
        .map(|n| (n.to_string(), SigningKey::generate(&mut rng)))
        .collect();
    let businesses: Vec<(String, SigningKey, usize)> = (0..4)
        .map(|i| (format!("business-{}", i + 1), SigningKey::generate(&mut rng), i % 2))
        .collect();
    let id = |k: &SigningKey| AccountId(k.verifying_key().to_bytes());

    // PKI: a CA, the server, one client certificate per participant.
    let ca = pki::generate_ca()?;
    ca.save(&dir.join("pki"))?;
    ca.issue_server(&DEFAULT_HOSTS)?.write(&dir.join("pki"), "server")?;
    ca.issue_client(&Participant::CentralBank)?
        .write(&dir.join("pki"), "central-bank")?;
    for (name, k) in &banks {
        ca.issue_client(&Participant::Bank(k.verifying_key().to_bytes()))?
            .write(&dir.join("pki"), name)?;
    }

    write_plain_key(&dir.join("keys/central-bank.json"), &cb)?;
    for (name, k) in &banks {
        write_plain_key(&dir.join(format!("keys/{name}.json")), k)?;
    }
    for (name, k, _) in &businesses {
        write_plain_key(&dir.join(format!("keys/{name}.json")), k)?;
    }

    let t0 = now_ms();
    let genesis = Genesis {
        chain_id: DEV_CHAIN_ID.into(),
        central_bank: id(&cb),
        timestamp_ms: t0,
        // The defaults of `ruble-node init`.
        max_validity_ms: DEFAULT_MAX_VALIDITY.as_millis() as u64,
        phase: Phase::Business,
        reporting_threshold: DEFAULT_REPORTING_THRESHOLD,
        settlement_limits: Limits::UNLIMITED,
        business_limits: Limits::UNLIMITED,
        retail_limits: DEFAULT_RETAIL_LIMITS,
        banks: banks
            .iter()
            .map(|(n, k)| GenesisBank {
                id: id(k),
                name: n.clone(),
            })
            .collect(),
    };
    std::fs::write(dir.join("genesis.json"), serde_json::to_vec_pretty(&genesis)?)?;

    // Block 1: issue to both banks, open and fund the businesses.
    let mut ledger = Ledger::open(&dir.join("db"), Some(&genesis))?;
    let mut nonce = 0;
    let mut sign = |k: &SigningKey, op: Op| {
        nonce += 1;
        SignedOp::sign(
            OpBody {
                chain_id: DEV_CHAIN_ID.into(),
                signer: id(k),
                nonce,
                valid_until_ms: t0 + 60_000,
                op,
            },
            k,
        )
    };
    let mut ops = Vec::new();
    for (_, b) in &banks {
        ops.push(sign(
            &cb,
            Op::Issue {
                bank: id(b),
                amount: 100_000_000_00,
            },
        ));
    }
    for (name, k, bank) in &businesses {
        let b = &banks[*bank].1;
        ops.push(sign(
            b,
            Op::OpenAccount {
                account: id(k),
                kind: AccountKind::Business,
            },
        ));
        ops.push(sign(
            b,
            Op::Transfer {
                payee: id(k),
                amount: 1_000_000_00,
                purpose: format!("dev funding for {name}"),
            },
        ));
    }
    let outs = ledger.execute(t0, ops)?;
    if let Some(bad) = outs.iter().find(|o| o.receipt().is_none()) {
        anyhow::bail!("dev bootstrap failed: {bad:?}");
    }
    drop(ledger);

    let part = |name: &str, k: &SigningKey, cert: bool, bank: Option<String>| DevParticipant {
        name: name.to_string(),
        id: hex::encode(k.verifying_key().to_bytes()),
        key: format!("keys/{name}.json"),
        cert: cert.then(|| format!("pki/{name}.pem")),
        cert_key: cert.then(|| format!("pki/{name}-key.pem")),
        bank,
    };
    let manifest = DevManifest {
        chain_id: DEV_CHAIN_ID.into(),
        endpoint: "https://127.0.0.1:50051".into(),
        replicas: Vec::new(),
        ca: "pki/ca.pem".into(),
        central_bank: part("central-bank", &cb, true, None),
        banks: banks.iter().map(|(n, k)| part(n, k, true, None)).collect(),
        businesses: businesses
            .iter()
            .map(|(n, k, b)| part(n, k, false, Some(banks[*b].0.clone())))
            .collect(),
    };
    manifest.save(dir)?;
    Ok((genesis, tls))
}

/// The text printed at start: where things are and how to use them.
pub fn usage(dir: &Path, endpoint: &str, metrics: Option<std::net::SocketAddr>) -> String {
    let d = dir.display();
    let host = endpoint.trim_start_matches("https://");
    let m = metrics
        .map(|a| format!("http://{a}/metrics"))
        .unwrap_or_else(|| "off".into());
    format!(
        "ruble-node dev: serving chain `{DEV_CHAIN_ID}` at {endpoint} (TLS)\n\
         \x20 data, keys and certificates: {d}  (manifest: {d}/dev.json)\n\
         \x20 metrics: {m}\n\
         \x20 try:\n\
         \x20   grpcurl -cacert {d}/pki/ca.pem {host} list\n\
         \x20   grpcurl -cacert {d}/pki/ca.pem {host} grpc.health.v1.Health/Check\n\
         \x20   grpcurl -cacert {d}/pki/ca.pem -cert {d}/pki/central-bank.pem -key {d}/pki/central-bank-key.pem {host} ruble.v1.CentralBankService/GetSupply\n\
         \x20   ruble-wallet --dev-dir {d} --key {d}/keys/business-1.json balance\n\
         \x20   txgen --dev-dir {d} --duration 10s\n\
         \x20   ruble-node audit --data-dir {d}\n"
    )
}

/// The replicas of `ruble-node dev --replicas N`: `DIR/node<i>/db`, a copy
/// of the dev chain made once (every replica starts from the same state,
/// and replication carries every block after it), and a node certificate
/// per replica from a replication CA of its own (`DIR/pki/peer-ca.pem`).
pub fn ensure_replicas(dir: &Path, n: u64, host: &str) -> Result<()> {
    let ca_dir = dir.join("pki/peer-ca");
    let ca = if ca_dir.join("ca.pem").exists() {
        pki::CaBundle::load(&ca_dir)?
    } else {
        let ca = pki::generate_ca()?;
        ca.save(&ca_dir)?;
        ca
    };
    std::fs::write(dir.join("pki/peer-ca.pem"), ca.cert_pem())?;
    for i in 1..=n {
        let nd = dir.join(format!("node{i}"));
        if !nd.join("db").exists() {
            copy_dir(&dir.join("db"), &nd.join("db"))
                .with_context(|| format!("copying the dev chain to {}", nd.display()))?;
        }
        if !nd.join("peer.pem").exists() {
            let cert = ca.issue_peer(&[host, "127.0.0.1", "localhost"])?;
            cert.write(&nd, "peer")?;
        }
    }
    Ok(())
}

/// Gives replica `i` the dev chain again if its `node<i>/db` was deleted
/// (the replica then catches up from the others); returns whether it did.
/// Refuses a replication log left without its ledger: both go together.
pub fn seed_replica(dir: &Path, i: u64) -> Result<bool> {
    let nd = dir.join(format!("node{i}"));
    if !nd.join("peer.pem").exists() {
        anyhow::bail!(
            "{} has no replica certificate: prepare the directory first",
            nd.display()
        );
    }
    if nd.join("db").exists() {
        return Ok(false);
    }
    // The replication log and the snapshots describe the deleted ledger.
    for part in [ruble_ledger::raft::LOG_DIR, ruble_ledger::raft::SNAPSHOT_DIR] {
        if nd.join(part).exists() {
            anyhow::bail!(
                "{} holds {part}/ but no ledger: delete db/, {}/ and {}/ together to re-seed the replica",
                nd.display(),
                ruble_ledger::raft::LOG_DIR,
                ruble_ledger::raft::SNAPSHOT_DIR
            );
        }
    }
    copy_dir(&dir.join("db"), &nd.join("db")).with_context(|| format!("copying the dev chain to {}", nd.display()))?;
    Ok(true)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}
