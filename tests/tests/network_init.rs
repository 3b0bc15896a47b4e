//! `ruble-node init` and `ruble-node pki issue-bank`, end to end with the real
//! binaries: the files and their modes, never overwriting, the exit codes (1
//! for a usage error, a refused argument or an existing file, 4 for a CA
//! that cannot be loaded), and a node started from them (`ruble-node run
//! --config DIR/node.toml`) serving the central bank and an issued bank
//! certificate over real mutual TLS, also on a wildcard listen address
//! reached on loopback.
//!
//! Needs `cargo build --workspace --bins` first.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use ruble_e2e::{bin, reason};
use ruble_gateway::auth::{participant_from_cert_der, Participant};
use ruble_gateway::config::NodeConfig;
use ruble_gateway::pki::pem_cert_der;
use ruble_ledger::state::Genesis;
use ruble_ledger::types::{Limits, Phase};
use ruble_proto::v1 as pb;
use ruble_proto::v1::bank_service_client::BankServiceClient;
use ruble_proto::v1::central_bank_service_client::CentralBankServiceClient;
use ruble_proto::v1::wallet_service_client::WalletServiceClient;
use ruble_wallet::{Address, WalletKey};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

const PASS: &str = "correct horse battery staple";

/// `ruble-node ARGS` with no RUBLE_* variable from the test's environment
/// (they would override flags and the config), no terminal on stdin, and
/// the passphrase variable only when given.
fn ruble_node(args: &[&str], passphrase: Option<&str>) -> Command {
    let mut c = Command::new(bin("ruble-node"));
    c.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RUBLE_") {
            c.env_remove(k);
        }
    }
    if let Some(p) = passphrase {
        c.env("RUBLE_CB_PASSPHRASE", p);
    }
    c
}

fn run(args: &[&str], passphrase: Option<&str>) -> Output {
    ruble_node(args, passphrase).output().expect("spawning ruble-node")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{:?}: {}", o.status, stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// `init --json` in `dir` with a passphrase and the given extra flags.
fn init(dir: &Path, chain: &str, extra: &[&str]) -> serde_json::Value {
    let d = dir.to_str().unwrap();
    let mut args = vec!["init", "--dir", d, "--chain-id", chain, "--json"];
    args.extend_from_slice(extra);
    json(&run(&args, Some(PASS)))
}

/// Every path under `dir` (relative) with its mode and, for files, bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, (u32, Option<Vec<u8>>)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let mode = m.permissions().mode() & 0o777;
            if m.is_dir() {
                out.insert(rel, (mode, None));
                walk(root, &p, out);
            } else {
                out.insert(rel, (mode, Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn path(v: &serde_json::Value) -> PathBuf {
    PathBuf::from(v.as_str().unwrap_or_else(|| panic!("not a path: {v}")))
}

/// The DER of a PEM certificate.
fn pem_der(pem: &str) -> Vec<u8> {
    pem_cert_der(pem).unwrap()
}

/// The exit code of everything but a CA problem (`ruble-admin`'s "usage or
/// local error"): 2 and 3 mean a refusal by the ledger and an unreachable
/// node in this project.
const FAILED: i32 = 1;
/// A key or certificate problem: the CA cannot be loaded.
const KEY: i32 = 4;

#[test]
fn init_writes_a_complete_network_once_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let out = init(
        &dir,
        "ruble-pilot",
        &[
            "--reporting-threshold",
            "1000000.50",
            "--business-limits",
            "balance=5000000,payment=1000000.01,daily=unlimited",
            "--retail-limits",
            "balance=200000,payment=50000,daily=100000",
            "--max-validity",
            "2m",
        ],
    );

    // Every file and directory, and nothing else, owner-only.
    let files = &out["files"];
    let names = [
        ("genesis", "genesis.json"),
        ("central_bank_key", "central-bank-key.json"),
        ("ca", "pki/ca.pem"),
        ("ca_key", "pki/ca-key.pem"),
        ("node_cert", "pki/node.pem"),
        ("node_key", "pki/node-key.pem"),
        ("central_bank_cert", "pki/central-bank.pem"),
        ("central_bank_cert_key", "pki/central-bank-key.pem"),
        ("config", "node.toml"),
    ];
    for (field, rel) in names {
        assert_eq!(path(&files[field]), dir.join(rel), "files.{field}");
    }
    let snap = snapshot(&dir);
    let mut expected: Vec<PathBuf> = names.iter().map(|(_, r)| PathBuf::from(r)).collect();
    expected.extend([PathBuf::from("pki"), PathBuf::from("data")]);
    expected.sort();
    assert_eq!(snap.keys().cloned().collect::<Vec<_>>(), expected);
    for (p, (mode, data)) in &snap {
        let want = if data.is_some() { 0o600 } else { 0o700 };
        assert_eq!(*mode, want, "{} has mode {mode:o}", p.display());
    }
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700,
        "the directory init made"
    );

    // The genesis: as asked, valid, no banks.
    let g: Genesis = serde_json::from_slice(&std::fs::read(dir.join("genesis.json")).unwrap()).unwrap();
    g.validate().unwrap();
    assert_eq!(g.chain_id, "ruble-pilot");
    assert_eq!(g.phase, Phase::Business);
    assert_eq!(g.reporting_threshold, 1_000_000_50);
    assert_eq!(g.max_validity_ms, 120_000);
    assert_eq!(
        g.business_limits,
        Limits {
            balance_cap: 5_000_000_00,
            payment_cap: 1_000_000_01,
            daily_outflow_cap: u64::MAX,
        }
    );
    assert_eq!(
        g.retail_limits,
        Limits {
            balance_cap: 200_000_00,
            payment_cap: 50_000_00,
            daily_outflow_cap: 100_000_00,
        }
    );
    assert_eq!(g.settlement_limits, Limits::UNLIMITED);
    assert!(g.banks.is_empty());
    let age = ruble_e2e::now_ms().abs_diff(g.timestamp_ms);
    assert!(age < 60_000, "genesis timestamp {} is not now", g.timestamp_ms);
    assert_eq!(out["chain_id"], "ruble-pilot");
    assert_eq!(out["node_hosts"], serde_json::json!(["localhost", "127.0.0.1", "::1"]));
    assert_eq!(out["central_bank_hex"].as_str().unwrap(), hex::encode(g.central_bank.0));
    assert_eq!(
        out["central_bank"].as_str().unwrap().parse::<Address>().unwrap(),
        Address(g.central_bank)
    );

    // The central bank's key: encrypted, opens with the passphrase only.
    let key_file = dir.join("central-bank-key.json");
    assert!(WalletKey::is_encrypted(&key_file).unwrap());
    let key = WalletKey::load(&key_file, Some(PASS)).unwrap();
    assert_eq!(key.account_id(), g.central_bank);
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !text.contains(&hex::encode(key.signing_key().to_bytes())),
        "the secret is in clear"
    );
    assert!(matches!(
        WalletKey::load(&key_file, Some("wrong")),
        Err(ruble_wallet::Error::WrongPassphrase)
    ));

    // The central bank's client certificate names it.
    let cb_cert = std::fs::read_to_string(dir.join("pki/central-bank.pem")).unwrap();
    assert_eq!(
        participant_from_cert_der(&pem_der(&cb_cert)).unwrap(),
        Participant::CentralBank
    );

    // node.toml is a configuration `ruble-node run` accepts, with absolute paths.
    let cfg = NodeConfig::load(&dir.join("node.toml")).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.data_dir, dir.join("data"));
    assert_eq!(cfg.genesis, Some(dir.join("genesis.json")));
    assert_eq!(cfg.listen, "127.0.0.1:50051".parse().unwrap());
    assert_eq!(
        cfg.metrics_listen,
        NodeConfig::default().metrics_listen,
        "kept the default"
    );
    let tls = cfg.tls.unwrap();
    assert_eq!(
        (tls.ca, tls.cert, tls.key),
        (
            dir.join("pki/ca.pem"),
            dir.join("pki/node.pem"),
            dir.join("pki/node-key.pem")
        )
    );

    // A second init changes nothing and names the file it would overwrite.
    let d = dir.to_str().unwrap();
    let again = run(&["init", "--dir", d, "--chain-id", "ruble-other"], Some(PASS));
    assert_eq!(again.status.code(), Some(FAILED), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(&dir.join("genesis.json").display().to_string()),
        "{}",
        stderr(&again)
    );
    assert_eq!(snapshot(&dir), snap, "a refused init changed files");

    // One foreign file among the targets (the last one init would write)
    // stops it before its first write.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("node.toml"), "listen = \"127.0.0.1:1\"\n").unwrap();
    let before = snapshot(&other);
    let o = run(
        &["init", "--dir", other.to_str().unwrap(), "--chain-id", "ruble-x"],
        Some(PASS),
    );
    assert_eq!(o.status.code(), Some(FAILED), "{}", stderr(&o));
    assert!(stderr(&o).contains("node.toml"), "{}", stderr(&o));
    assert_eq!(snapshot(&other), before);

    // Bad arguments and a missing passphrase are refused before anything is written.
    let fresh = tmp.path().join("fresh");
    let f = fresh.to_str().unwrap();
    for (args, needle) in [
        (vec!["--chain-id", "Ruble_Main"], "chain id"),
        (vec!["--chain-id", &"a".repeat(33)], "chain id"),
        (
            vec!["--chain-id", "ok", "--retail-limits", "balance=1,payment=2"],
            "daily",
        ),
        (
            vec![
                "--chain-id",
                "ok",
                "--business-limits",
                "balance=1,payment=2,daily=0.001",
            ],
            "bad amount",
        ),
        (
            vec!["--chain-id", "ok", "--reporting-threshold", "12.345"],
            "bad amount",
        ),
        (vec!["--chain-id", "ok", "--max-validity", "2d"], "24 h"),
        (vec!["--chain-id", "ok", "--host", "bad host"], "DNS name"),
        // What clap refuses is a usage error like any other.
        (vec!["--chain-id", "ok", "--no-such-flag"], "--no-such-flag"),
        (vec!["--chain-id"], "a value is required"),
        (vec![], "--chain-id"),
    ] {
        let mut a = vec!["init", "--dir", f];
        a.extend(args.iter().copied());
        let o = run(&a, Some(PASS));
        assert_eq!(o.status.code(), Some(FAILED), "{a:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{a:?}: {}", stderr(&o));
        assert!(!fresh.exists(), "{a:?} wrote something");
    }
    let o = run(&["init", "--dir", f, "--chain-id", "ok"], None);
    assert_eq!(o.status.code(), Some(FAILED), "{}", stderr(&o));
    assert!(stderr(&o).contains("RUBLE_CB_PASSPHRASE"), "{}", stderr(&o));
    let o = run(&["init", "--dir", f, "--chain-id", "ok"], Some(""));
    assert_eq!(o.status.code(), Some(FAILED), "{}", stderr(&o));
    assert!(!fresh.exists(), "a refused init wrote something");
    // Help and version are no failure, and write nothing either.
    for args in [
        vec!["init", "--help"],
        vec!["pki", "issue-bank", "--help"],
        vec!["--version"],
    ] {
        let o = run(&args, None);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(!o.stdout.is_empty(), "{args:?}");
    }
    // The defaults --help shows are the ones init writes.
    let help = String::from_utf8(run(&["init", "--help"], None).stdout).unwrap();
    for default in [
        "[default: 10m]",
        "[default: 600000.00]",
        "[default: balance=300000.00,payment=100000.00,daily=150000.00]",
        "[default: localhost 127.0.0.1 ::1]",
        "[default: 127.0.0.1:50051]",
    ] {
        assert!(help.contains(default), "{default} not in\n{help}");
    }
    assert!(!fresh.exists(), "--help wrote something");
}

/// A `ruble-node run` child: SIGTERM and reaped when dropped.
struct NodeProcess {
    child: Option<Child>,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl NodeProcess {
    fn start(config: &Path) -> NodeProcess {
        let mut child = ruble_node(&["run", "--config", config.to_str().unwrap()], None)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ruble-node run");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                l.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("RUBLE_NODE_READY addr=") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
        let mut node = NodeProcess {
            child: Some(child),
            addr: String::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => node.addr = addr,
            Err(_) => panic!("the node did not get ready; its log:\n{}", node.log()),
        }
        node
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then wait (SIGKILL after 20 s).
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn channel(node: &NodeProcess, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://{}", node.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_from_the_init_files_and_accepts_the_certificates_of_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    // The passphrase from a file this time (its line break is not part of it).
    let pass_file = tmp.path().join("pass.txt");
    std::fs::write(&pass_file, "from a file\n").unwrap();
    let d = dir.to_str().unwrap();
    let out = json(&run(
        &[
            "init",
            "--dir",
            d,
            "--chain-id",
            "ruble-live",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--passphrase-file",
            pass_file.to_str().unwrap(),
            "--json",
        ],
        None,
    ));
    let cb_key = WalletKey::load(&dir.join("central-bank-key.json"), Some("from a file")).unwrap();
    assert_eq!(cb_key.public_key_hex(), out["central_bank_hex"].as_str().unwrap());

    let mut node = NodeProcess::start(&dir.join("node.toml"));
    let pki = dir.join("pki");
    let ca = pki.join("ca.pem");

    // The central bank, with its certificate from init: the chain is there, empty.
    let cb = channel(
        &node,
        &ca,
        Some((&pki.join("central-bank.pem"), &pki.join("central-bank-key.pem"))),
    )
    .await
    .unwrap();
    let supply = CentralBankServiceClient::new(cb)
        .get_supply(pb::GetSupplyRequest {})
        .await
        .unwrap()
        .into_inner();
    // One account: the central bank's own.
    assert_eq!(
        (supply.issued, supply.in_circulation, supply.accounts),
        (0, 0, 1),
        "{supply:?}"
    );
    assert!(supply.banks.is_empty(), "{supply:?}");
    assert_eq!(supply.height, 0, "{supply:?}");
    let info = WalletServiceClient::new(channel(&node, &ca, None).await.unwrap())
        .get_chain_info(pb::GetChainInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.chain_id, "ruble-live");
    assert_eq!(hex::encode(&info.central_bank), cb_key.public_key_hex());

    // A bank certificate issued afterwards by the loaded CA.
    let bank = WalletKey::generate();
    let issued = json(&run(
        &[
            "pki",
            "issue-bank",
            "--dir",
            d,
            "--bank",
            &bank.address().to_string(),
            "--name",
            "alfa-bank",
            "--json",
        ],
        None,
    ));
    let subject = format!("bank:{}", bank.public_key_hex());
    assert_eq!(issued["subject"].as_str().unwrap(), subject);
    let (cert, key) = (path(&issued["files"]["cert"]), path(&issued["files"]["key"]));
    assert_eq!(
        (cert.clone(), key.clone()),
        (pki.join("banks/alfa-bank.pem"), pki.join("banks/alfa-bank-key.pem"))
    );
    for p in [&cert, &key] {
        assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::metadata(pki.join("banks")).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        participant_from_cert_der(&pem_der(&std::fs::read_to_string(&cert).unwrap())).unwrap(),
        Participant::Bank(bank.account_id().0)
    );

    // The node accepts it and knows the bank by it: not admitted yet, so
    // UNKNOWN_BANK, where no certificate is UNAUTHENTICATED.
    let st = BankServiceClient::new(channel(&node, &ca, Some((&cert, &key))).await.unwrap())
        .get_self(pb::GetSelfRequest {})
        .await
        .unwrap_err();
    assert_ne!(st.code(), Code::Unauthenticated, "{st:?}");
    assert_eq!(reason(&st), "UNKNOWN_BANK", "{st:?}");
    let st = BankServiceClient::new(channel(&node, &ca, None).await.unwrap())
        .get_self(pb::GetSelfRequest {})
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated, "{st:?}");
    // ... as a bank, not as the central bank.
    let st = CentralBankServiceClient::new(channel(&node, &ca, Some((&cert, &key))).await.unwrap())
        .get_supply(pb::GetSupplyRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::PermissionDenied, "WRONG_ROLE"),
        "{st:?}"
    );

    // A certificate from another CA (same chain id, same names, claiming the
    // central bank) does not get in.
    let other = tmp.path().join("impostor");
    init(&other, "ruble-live", &[]);
    let oc = other.join("pki");
    let refused = match channel(
        &node,
        &ca,
        Some((&oc.join("central-bank.pem"), &oc.join("central-bank-key.pem"))),
    )
    .await
    {
        Err(_) => true,
        Ok(ch) => match CentralBankServiceClient::new(ch)
            .get_supply(pb::GetSupplyRequest {})
            .await
        {
            Ok(r) => panic!("a foreign CA's certificate was served: {:?}", r.into_inner()),
            // Refused in the handshake: a transport error, not a status from a service.
            Err(st) => !matches!(
                st.code(),
                Code::Unauthenticated | Code::PermissionDenied | Code::NotFound
            ),
        },
    };
    assert!(refused, "a foreign CA's certificate reached a service");

    let status = node.stop().expect("the node ran");
    assert!(
        status.success(),
        "the node did not stop cleanly: {status:?}\n{}",
        node.log()
    );
}

/// The wallet service's chain id at `url`, trusting `ca`, verifying the
/// node's certificate for `domain` (else the URL's host).
async fn chain_id_at(url: &str, ca: &Path, domain: Option<&str>) -> Result<String, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some(d) = domain {
        tls = tls.domain_name(d);
    }
    let ch = Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    WalletServiceClient::new(ch)
        .get_chain_info(pb::GetChainInfoRequest {})
        .await
        .map(|r| r.into_inner().chain_id)
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_wildcard_address_is_verified_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    // Only a DNS name is asked for; the operator CLIs' --network-dir reach a
    // wildcard listen address on 127.0.0.1, so the certificate names it too.
    let out = init(
        &dir,
        "ruble-wild",
        &[
            "--listen",
            "0.0.0.0:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--host",
            "node.example",
        ],
    );
    assert_eq!(
        out["node_hosts"],
        serde_json::json!(["node.example", "127.0.0.1", "::1"])
    );
    let node = NodeProcess::start(&dir.join("node.toml"));
    let port = node.addr.rsplit(':').next().unwrap().to_string();
    let ca = dir.join("pki/ca.pem");
    let loopback = format!("https://127.0.0.1:{port}");
    assert_eq!(
        chain_id_at(&loopback, &ca, None).await.as_deref(),
        Ok("ruble-wild"),
        "{}",
        node.log()
    );
    // The name asked for is in it too, and a name that is not is refused:
    // the certificate is verified.
    assert_eq!(
        chain_id_at(&loopback, &ca, Some("node.example")).await.as_deref(),
        Ok("ruble-wild")
    );
    assert!(chain_id_at(&loopback, &ca, Some("other.example")).await.is_err());
}

#[test]
fn issue_bank_refuses_to_overwrite_and_malformed_bank_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = dir.to_str().unwrap();
    let out = init(&dir, "ruble-pki", &[]);
    let bank = WalletKey::generate();
    let addr = bank.address().to_string();
    let issue = |bank: &str, name: &str, extra: &[&str]| {
        let mut a = vec!["pki", "issue-bank", "--dir", d, "--bank", bank, "--name", name];
        a.extend_from_slice(extra);
        run(&a, None)
    };
    // By hex too, and into another directory.
    let elsewhere = tmp.path().join("for-beta");
    let o = issue(&bank.public_key_hex(), "beta", &["--out", elsewhere.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(elsewhere.join("beta.pem").exists() && elsewhere.join("beta-key.pem").exists());

    let o = issue(&addr, "alfa", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("bank:{}", bank.public_key_hex())));
    let banks = dir.join("pki/banks");
    let snap = snapshot(&banks);
    assert_eq!(snap.len(), 2);

    // The same name again, for this bank or another: refused, nothing changes.
    for who in [addr.clone(), WalletKey::generate().address().to_string()] {
        let o = issue(&who, "alfa", &[]);
        assert_eq!(o.status.code(), Some(FAILED), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&banks.join("alfa.pem").display().to_string()),
            "{}",
            stderr(&o)
        );
        assert_eq!(snapshot(&banks), snap);
    }
    // Only the key file there is enough to refuse.
    std::fs::write(banks.join("gamma-key.pem"), "mine").unwrap();
    let o = issue(&addr, "gamma", &[]);
    assert_eq!(o.status.code(), Some(FAILED), "{}", stderr(&o));
    assert!(!banks.join("gamma.pem").exists());
    std::fs::remove_file(banks.join("gamma-key.pem")).unwrap();

    // Malformed bank ids and names.
    let typo = {
        let mut t = addr.clone().into_bytes();
        let last = t.len() - 1;
        t[last] = if t[last] == b'2' { b'3' } else { b'2' };
        String::from_utf8(t).unwrap()
    };
    let cb_hex = out["central_bank_hex"].as_str().unwrap().to_string();
    for (bank, name, needle) in [
        (typo.as_str(), "delta", "bad address"),
        ("rub1", "delta", "bad address"),
        (&bank.public_key_hex()[..63], "delta", "bad address"),
        (&"zz".repeat(32), "delta", "bad address"),
        (&"00".repeat(32), "delta", "not a usable ed25519 public key"),
        (&cb_hex, "delta", "central bank"),
        (&addr, "Delta", "name"),
        (&addr, "../delta", "name"),
        (&addr, "", "name"),
    ] {
        let o = issue(bank, name, &[]);
        assert_eq!(o.status.code(), Some(FAILED), "{bank} {name}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{bank} {name}: {}", stderr(&o));
        assert_eq!(snapshot(&banks), snap, "{bank} {name}");
    }

    // Another node's server certificate, by the same rules.
    let node = |name: &str| {
        run(
            &[
                "pki",
                "issue-node",
                "--dir",
                d,
                "--host",
                "node-2.example",
                "--name",
                name,
            ],
            None,
        )
    };
    let o = node("node-2");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("pki/nodes/node-2.pem").exists() && dir.join("pki/nodes/node-2-key.pem").exists());
    assert_eq!(node("node-2").status.code(), Some(FAILED));

    // A replica's certificate for replication (CN ruble-node, server and
    // client), by the same rules.
    let peer = |name: &str| {
        run(
            &[
                "pki",
                "issue-peer",
                "--dir",
                d,
                "--host",
                "node-4.example",
                "--host",
                "10.0.0.4",
                "--name",
                name,
                "--json",
            ],
            None,
        )
    };
    let o = peer("node-4");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["subject"], "ruble-node");
    assert_eq!(v["hosts"], serde_json::json!(["node-4.example", "10.0.0.4"]));
    assert_eq!(path(&v["files"]["cert"]), dir.join("pki/peers/node-4.pem"));
    assert!(dir.join("pki/peers/node-4-key.pem").exists());
    assert_eq!(peer("node-4").status.code(), Some(FAILED));

    // Without the CA there is nothing to issue with.
    let o = run(
        &[
            "pki",
            "issue-bank",
            "--dir",
            tmp.path().to_str().unwrap(),
            "--bank",
            &addr,
            "--name",
            "x",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(KEY), "{}", stderr(&o));
    assert!(stderr(&o).contains("ca.pem"), "{}", stderr(&o));
    assert!(!tmp.path().join("pki").exists());

    // A CA key that is not the CA certificate's: a key problem too, and
    // nothing is issued.
    let other = tmp.path().join("other");
    init(&other, "ruble-pki", &[]);
    std::fs::copy(other.join("pki/ca-key.pem"), dir.join("pki/ca-key.pem")).unwrap();
    let o = issue(&addr, "epsilon", &[]);
    assert_eq!(o.status.code(), Some(KEY), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not the key of"), "{}", stderr(&o));
    assert_eq!(snapshot(&banks), snap);
    let o = node("node-3");
    assert_eq!(o.status.code(), Some(KEY), "{}", stderr(&o));
    assert!(!dir.join("pki/nodes/node-3.pem").exists());
}
