//! `ruble-node init` and `ruble-node pki issue-bank|issue-node`: the files a
//! deployment starts from, made by the central bank.
//!
//! ```text
//! DIR/genesis.json              the chain's genesis (no banks: they are admitted by AdmitBank)
//! DIR/central-bank-key.json     the central bank's ed25519 key (ruble-wallet-key/v1, encrypted)
//! DIR/node.toml                 `ruble-node run --config DIR/node.toml`
//! DIR/data/                     the node's data directory (RocksDB in data/db)
//! DIR/pki/ca.pem, ca-key.pem    the network's CA (its key issues every bank certificate)
//! DIR/pki/node.pem, node-key.pem                 the node's server certificate
//! DIR/pki/central-bank.pem, central-bank-key.pem the central bank's mTLS client certificate
//! DIR/pki/banks/NAME.pem, NAME-key.pem           bank certificates (`pki issue-bank`)
//! DIR/pki/nodes/NAME.pem, NAME-key.pem           more node certificates (`pki issue-node`)
//! ```
//!
//! Every file is written with mode 0600 and every directory made with 0700.
//! Nothing is ever overwritten: all targets are checked before the first
//! write, each file is created exclusively, and a failure part-way removes
//! what this run wrote.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ruble_ledger::codec::valid_chain_id;
use ruble_ledger::state::{Genesis, MAX_VALIDITY_LIMIT_MS};
use ruble_ledger::types::{AccountId, Kopecks, Limits, Phase};
use ruble_wallet::{Address, WalletKey};
use serde::Serialize;

use crate::auth::Participant;
use crate::config::NodeConfig;
use crate::ctx::now_ms;
use crate::pki::{self, CaBundle, CertPair};

/// The environment variable `init` reads the central bank key's passphrase from.
pub const PASSPHRASE_ENV: &str = "RUBLE_CB_PASSPHRASE";

// The defaults of `ruble-node init`, which are also those of the dev genesis
// and the dev node's certificate (`devnet`).

/// The node certificate's names unless `--host` is given.
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Retail limits unless given: 300 000 ₽ balance, 100 000 ₽ a payment,
/// 150 000 ₽ a day.
pub const DEFAULT_RETAIL_LIMITS: Limits = Limits {
    balance_cap: 300_000_00,
    payment_cap: 100_000_00,
    daily_outflow_cap: 150_000_00,
};

/// 600 000 ₽: the classic mandatory-control threshold.
pub const DEFAULT_REPORTING_THRESHOLD: Kopecks = 600_000_00;

/// How far ahead an operation's validity may end.
pub const DEFAULT_MAX_VALIDITY: Duration = Duration::from_secs(10 * 60);

/// The gRPC listen address written to `node.toml` unless given.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50051));

/// Exit code of a bad argument, a missing passphrase, a file that exists or
/// a failed read or write: 1, as for the operator CLIs, whose 2 and 3 mean a
/// refusal by the ledger and an unreachable node (`ruble_wallet::cli`).
pub const EXIT_FAILED: i32 = ruble_wallet::cli::EXIT_USAGE as i32;
/// Exit code of a CA that cannot be loaded or whose key is not its own: 4,
/// a key or certificate problem, as for the operator CLIs.
pub const EXIT_KEY: i32 = ruble_wallet::cli::EXIT_KEY as i32;

/// Why `init` or `pki` failed; each kind has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A target file exists (exit 1). Nothing was written.
    #[error("{} already exists; refusing to overwrite it (nothing was written)", .0.display())]
    Exists(PathBuf),
    /// A bad argument or a missing passphrase (exit 1). Nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// The CA (`ca.pem`, `ca-key.pem`) cannot be read or parsed, or the key
    /// is not the certificate's (exit 4). Nothing was written.
    #[error(transparent)]
    Ca(anyhow::Error),
    /// Reading, writing or generating failed (exit 1); what was written is removed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Ca(_) => EXIT_KEY,
            Error::Failed(_) | Error::Invalid(_) | Error::Exists(_) => EXIT_FAILED,
        }
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Argument parsing (also the CLI's value parsers).

/// A chain id: 1..=32 bytes of `[a-z0-9-]`.
pub fn parse_chain_id(s: &str) -> Result<String, String> {
    if valid_chain_id(s) {
        Ok(s.to_string())
    } else {
        Err(format!("chain id {s:?} must be 1 to 32 characters of a-z, 0-9 and -"))
    }
}

/// Rubles, exact to the kopeck (`600000`, `1250.50`), into kopecks.
pub fn parse_amount(s: &str) -> Result<Kopecks, String> {
    ruble_wallet::parse_rubles(s).map_err(|e| e.to_string())
}

/// `unlimited`, or `balance=R,payment=R,daily=R` with each R a cap as the
/// operator CLIs take it ([`ruble_wallet::cli::parse_cap`]: rubles exact to
/// the kopeck, or `unlimited`). All three keys are required.
pub fn parse_limits(s: &str) -> Result<Limits, String> {
    use ruble_wallet::cli::parse_cap;
    let s = s.trim();
    let usage = "expected `unlimited` or `balance=RUBLES,payment=RUBLES,daily=RUBLES` (each may be `unlimited`)";
    if !s.contains('=') {
        return match parse_cap(s, "limits") {
            Ok(u64::MAX) => Ok(Limits::UNLIMITED),
            _ => Err(format!("bad limits {s:?}: {usage}")),
        };
    }
    let mut vals: [Option<Kopecks>; 3] = [None; 3];
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("bad limits {s:?}: {part:?} is not KEY=VALUE; {usage}"))?;
        let k = k.trim();
        let slot = match k {
            "balance" => 0,
            "payment" => 1,
            "daily" => 2,
            other => return Err(format!("bad limits {s:?}: unknown key {other:?}; {usage}")),
        };
        if vals[slot].is_some() {
            return Err(format!("bad limits {s:?}: {k} is given twice"));
        }
        vals[slot] = Some(parse_cap(v.trim(), k).map_err(|e| format!("bad limits {s:?}: {}", e.message))?);
    }
    match vals {
        [Some(balance_cap), Some(payment_cap), Some(daily_outflow_cap)] => Ok(Limits {
            balance_cap,
            payment_cap,
            daily_outflow_cap,
        }),
        _ => Err(format!(
            "bad limits {s:?}: balance, payment and daily are all required; {usage}"
        )),
    }
}

/// A duration like `10m` or `90s` (humantime).
pub fn parse_duration(s: &str) -> Result<humantime::Duration, String> {
    humantime::parse_duration(s)
        .map(Into::into)
        .map_err(|e| format!("bad duration {s:?}: {e}"))
}

/// An amount of rubles as the `init` flags take it ([`parse_amount`]) and
/// show it (`600000.00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rubles(pub Kopecks);

impl std::fmt::Display for Rubles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&ruble_wallet::format_rubles(self.0))
    }
}

impl std::str::FromStr for Rubles {
    type Err = String;
    fn from_str(s: &str) -> Result<Rubles, String> {
        parse_amount(s).map(Rubles)
    }
}

/// Limits as the `init` flags take them ([`parse_limits`]) and show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitsArg(pub Limits);

impl std::fmt::Display for LimitsArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = self.0;
        if l == Limits::UNLIMITED {
            return f.write_str("unlimited");
        }
        let cap = ruble_wallet::cli::cap_text;
        write!(
            f,
            "balance={},payment={},daily={}",
            cap(l.balance_cap),
            cap(l.payment_cap),
            cap(l.daily_outflow_cap)
        )
    }
}

impl std::str::FromStr for LimitsArg {
    type Err = String;
    fn from_str(s: &str) -> Result<LimitsArg, String> {
        parse_limits(s).map(LimitsArg)
    }
}

/// A name for a node certificate (a subject alternative name): an IP
/// address or a DNS name (labels of letters, digits and `-`; `*.` first allowed).
pub fn parse_host(s: &str) -> Result<String, String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let body = s.strip_prefix("*.").unwrap_or(s);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if s.len() <= 253 && body.split('.').all(label_ok) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("{s:?} is neither an IP address nor a DNS name"))
    }
}

/// A bank's account id: a `rub1…` address or 64 hex characters, and a
/// usable ed25519 public key.
pub fn parse_bank(s: &str) -> Result<AccountId, String> {
    let a: Address = s.parse().map_err(|e: ruble_wallet::Error| e.to_string())?;
    ruble_ledger::crypto::check_account_key(&a.0 .0)
        .map_err(|_| format!("{s:?} is not a usable ed25519 public key (the bank's account id)"))?;
    Ok(a.0)
}

/// A certificate's file name: 1 to 64 characters of `[a-z0-9-]`.
pub fn parse_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(s.to_string())
    } else {
        Err(format!("name {s:?} must be 1 to 64 characters of a-z, 0-9 and -"))
    }
}

// ---------------------------------------------------------------------------
// Passphrase.

/// The central bank key's passphrase: from `file` (its text, one trailing
/// line break removed), else [`PASSPHRASE_ENV`], else asked twice on the
/// terminal. An empty one is refused, and so is asking without a terminal.
pub fn read_passphrase(file: Option<&Path>) -> Result<String> {
    let p = if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| invalid(format!("reading the passphrase file {}: {e}", f.display())))?;
        let p = text.strip_suffix('\n').unwrap_or(&text);
        let p = p.strip_suffix('\r').unwrap_or(p).to_string();
        if p.is_empty() {
            return Err(invalid(format!("the passphrase file {} is empty", f.display())));
        }
        p
    } else if let Some(v) = std::env::var_os(PASSPHRASE_ENV) {
        let p = v
            .into_string()
            .map_err(|_| invalid(format!("{PASSPHRASE_ENV} is not valid UTF-8")))?;
        if p.is_empty() {
            return Err(invalid(format!("{PASSPHRASE_ENV} is empty")));
        }
        p
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(invalid(format!(
                "the central bank key needs a passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV} \
                 (there is no terminal to ask on)"
            )));
        }
        let p = rpassword::prompt_password("passphrase for the central bank key: ")
            .map_err(|e| invalid(format!("reading the passphrase: {e}")))?;
        if p.is_empty() {
            return Err(invalid("an empty passphrase is refused"));
        }
        let again = rpassword::prompt_password("the same passphrase again: ")
            .map_err(|e| invalid(format!("reading the passphrase: {e}")))?;
        if again != p {
            return Err(invalid("the passphrases differ"));
        }
        p
    };
    Ok(p)
}

// ---------------------------------------------------------------------------
// Writing without overwriting.

/// Creates files and directories exclusively, and removes them all again
/// unless [`Writer::keep`] is called.
#[derive(Default)]
struct Writer {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    keep: bool,
}

impl Writer {
    /// Makes `dir` and its missing parents, each 0700.
    fn dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.exists() {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(p) if !p.as_os_str().is_empty() => d = p,
                _ => break,
            }
        }
        for d in missing.into_iter().rev() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&d)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", d.display()))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
            self.dirs.push(d);
        }
        if !dir.is_dir() {
            anyhow::bail!("{} is not a directory", dir.display());
        }
        Ok(())
    }

    /// Creates `path` (0600), failing if it exists.
    fn file(&mut self, path: &Path, data: &[u8]) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::Exists(path.to_path_buf()),
                _ => Error::Failed(anyhow::anyhow!("creating {}: {e}", path.display())),
            })?;
        self.files.push(path.to_path_buf());
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|_| f.write_all(data))
            .and_then(|_| f.sync_all())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        Ok(())
    }

    /// The central bank's key, encrypted, in the SDK's key-file format, at
    /// `path`. `WalletKey::save` creates it exclusively (0600), so it never
    /// replaces a file; one already there is `Exists`. Removed again, as
    /// every file here, if a later step fails.
    fn key(&mut self, path: &Path, key: &WalletKey, passphrase: &str) -> Result<()> {
        refuse_existing([path])?;
        key.save(path, Some(passphrase))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for f in self.files.iter().rev() {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// `Exists` for the first of `paths` that is there (a dangling link counts).
fn refuse_existing<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    for p in paths {
        if p.symlink_metadata().is_ok() {
            return Err(Error::Exists(p.to_path_buf()));
        }
    }
    Ok(())
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(dir).map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
    if abs.to_str().is_none() {
        return Err(invalid(format!("{} is not valid UTF-8", abs.display())));
    }
    Ok(abs)
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("checked by absolute()")
}

// ---------------------------------------------------------------------------
// init

/// What `ruble-node init` makes.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub chain_id: String,
    pub max_validity: Duration,
    pub reporting_threshold: Kopecks,
    pub business_limits: Limits,
    pub retail_limits: Limits,
    pub settlement_limits: Limits,
    /// The node certificate's subject alternative names.
    pub hosts: Vec<String>,
    pub listen: SocketAddr,
    /// Written to node.toml only when given (the node's default is 127.0.0.1:9100).
    pub metrics_listen: Option<SocketAddr>,
}

impl InitOptions {
    /// The defaults of `ruble-node init`.
    pub fn new(dir: impl Into<PathBuf>, chain_id: impl Into<String>) -> InitOptions {
        InitOptions {
            dir: dir.into(),
            chain_id: chain_id.into(),
            max_validity: DEFAULT_MAX_VALIDITY,
            reporting_threshold: DEFAULT_REPORTING_THRESHOLD,
            business_limits: Limits::UNLIMITED,
            retail_limits: DEFAULT_RETAIL_LIMITS,
            settlement_limits: Limits::UNLIMITED,
            hosts: DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect(),
            listen: DEFAULT_LISTEN,
            metrics_listen: None,
        }
    }
}

/// The files `init` writes (absolute paths).
#[derive(Clone, Debug, Serialize)]
pub struct InitFiles {
    pub genesis: PathBuf,
    pub central_bank_key: PathBuf,
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    pub central_bank_cert: PathBuf,
    pub central_bank_cert_key: PathBuf,
    pub config: PathBuf,
}

impl InitFiles {
    /// The layout under an absolute `dir`.
    pub fn under(dir: &Path) -> InitFiles {
        let pki = dir.join("pki");
        InitFiles {
            genesis: dir.join("genesis.json"),
            central_bank_key: dir.join("central-bank-key.json"),
            ca: pki.join("ca.pem"),
            ca_key: pki.join("ca-key.pem"),
            node_cert: pki.join("node.pem"),
            node_key: pki.join("node-key.pem"),
            central_bank_cert: pki.join("central-bank.pem"),
            central_bank_cert_key: pki.join("central-bank-key.pem"),
            config: dir.join("node.toml"),
        }
    }

    fn all(&self) -> [&Path; 9] {
        [
            &self.genesis,
            &self.central_bank_key,
            &self.ca,
            &self.ca_key,
            &self.node_cert,
            &self.node_key,
            &self.central_bank_cert,
            &self.central_bank_cert_key,
            &self.config,
        ]
    }
}

/// What `init` did: printed as text or JSON.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    pub chain_id: String,
    /// The central bank's address (`rub1…`).
    pub central_bank: String,
    /// Its public key (= account id), hex.
    pub central_bank_hex: String,
    pub data_dir: PathBuf,
    /// The node certificate's names (DNS names and IP addresses).
    pub node_hosts: Vec<String>,
    pub files: InitFiles,
    pub next_steps: Vec<String>,
}

impl InitReport {
    /// The text summary.
    pub fn human(&self) -> String {
        let f = &self.files;
        let mut s = format!(
            "ruble-node init: created network `{}`\n\
             \x20 central bank: {}\n\
             \x20   public key: {}\n\
             \x20 files (mode 0600, directories 0700):\n",
            self.chain_id, self.central_bank, self.central_bank_hex
        );
        for (what, p) in [
            ("genesis", &f.genesis),
            ("central bank key (encrypted)", &f.central_bank_key),
            ("CA certificate", &f.ca),
            ("CA key (keep offline)", &f.ca_key),
            ("node certificate", &f.node_cert),
            ("node key", &f.node_key),
            ("central bank TLS certificate", &f.central_bank_cert),
            ("central bank TLS key", &f.central_bank_cert_key),
            ("node configuration", &f.config),
        ] {
            s += &format!("    {what:<30} {}\n", p.display());
        }
        s += &format!(
            "  node certificate names: {}\n  data directory: {}\n  next steps:\n",
            self.node_hosts.join(", "),
            self.data_dir.display()
        );
        for (i, step) in self.next_steps.iter().enumerate() {
            s += &format!("    {}. {step}\n", i + 1);
        }
        s
    }
}

/// Refuses (`Exists`) when any file `init` would write is already in
/// `opts.dir`, or its `data` directory is not empty. Nothing is written.
pub fn check_targets(dir: &Path) -> Result<()> {
    let dir = absolute(dir)?;
    if dir.exists() && !dir.is_dir() {
        return Err(invalid(format!("{} is not a directory", dir.display())));
    }
    let files = InitFiles::under(&dir);
    refuse_existing(files.all())?;
    let data = dir.join("data");
    if data.symlink_metadata().is_ok() {
        let empty = data.is_dir() && std::fs::read_dir(&data).is_ok_and(|mut d| d.next().is_none());
        if !empty {
            return Err(Error::Exists(data));
        }
    }
    Ok(())
}

/// Everything `init` checks before it asks for a passphrase: the options,
/// and that no target exists ([`check_targets`]).
pub fn check(o: &InitOptions) -> Result<()> {
    check_options(o)?;
    check_targets(&o.dir)
}

fn check_options(o: &InitOptions) -> Result<()> {
    parse_chain_id(&o.chain_id).map_err(invalid)?;
    let ms = o.max_validity.as_millis();
    if ms == 0 || ms > u128::from(MAX_VALIDITY_LIMIT_MS) {
        return Err(invalid(format!(
            "--max-validity {} must be from 1 ms to 24 h",
            humantime::format_duration(o.max_validity)
        )));
    }
    if o.hosts.is_empty() {
        return Err(invalid("the node certificate needs at least one --host"));
    }
    for h in &o.hosts {
        parse_host(h).map_err(invalid)?;
    }
    Ok(())
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The text of `node.toml`.
fn node_toml(o: &InitOptions, dir: &Path, files: &InitFiles) -> String {
    let metrics = match o.metrics_listen {
        Some(m) => format!("metrics_listen = {}\n", toml_str(&m.to_string())),
        None => format!(
            "# metrics_listen = {}   # the default (Prometheus text at /metrics)\n",
            toml_str(
                &NodeConfig::default()
                    .metrics_listen
                    .map(|m| m.to_string())
                    .unwrap_or_default()
            )
        ),
    };
    format!(
        "# ruble-node configuration for the chain `{chain}`, written by `ruble-node init`.\n\
         # Start the node with: ruble-node run --config {config}\n\
         # Every setting is also a flag and a RUBLE_* variable (`ruble-node run --help`);\n\
         # [limits] and [block] keep their defaults unless set here.\n\
         data_dir = {data}\n\
         genesis = {genesis}\n\
         listen = {listen}\n\
         {metrics}\
         \n\
         [tls]\n\
         ca = {ca}\n\
         cert = {cert}\n\
         key = {key}\n",
        chain = o.chain_id,
        config = files.config.display(),
        data = toml_str(utf8(&dir.join("data"))),
        genesis = toml_str(utf8(&files.genesis)),
        listen = toml_str(&o.listen.to_string()),
        ca = toml_str(utf8(&files.ca)),
        cert = toml_str(utf8(&files.node_cert)),
        key = toml_str(utf8(&files.node_key)),
    )
}

/// The node certificate's names: `opts.hosts`, and the address a client
/// reaching the node at its listen address connects to (as the operator
/// CLIs' `--network-dir` do): the listen address when it is a particular
/// one, and for a wildcard (`0.0.0.0` / `::`) the loopback addresses
/// 127.0.0.1 and ::1, which those CLIs then use; each unless already named.
fn node_hosts(opts: &InitOptions) -> Vec<String> {
    let mut hosts = opts.hosts.clone();
    let ip = opts.listen.ip();
    let reached: Vec<IpAddr> = if ip.is_unspecified() {
        vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
    } else {
        vec![ip]
    };
    for ip in reached {
        if !hosts.iter().any(|h| h.parse::<IpAddr>() == Ok(ip)) {
            hosts.push(ip.to_string());
        }
    }
    hosts
}

/// Creates the network's files in `opts.dir` (see the module docs), the
/// central bank's key encrypted with `passphrase`.
pub fn init(opts: &InitOptions, passphrase: &str) -> Result<InitReport> {
    check(opts)?;
    if passphrase.is_empty() {
        return Err(invalid("an empty passphrase is refused"));
    }
    let dir = absolute(&opts.dir)?;
    let files = InitFiles::under(&dir);

    // Everything is made in memory first.
    let cb = WalletKey::generate();
    let genesis = Genesis {
        chain_id: opts.chain_id.clone(),
        central_bank: cb.account_id(),
        timestamp_ms: now_ms(),
        max_validity_ms: opts.max_validity.as_millis() as u64,
        phase: Phase::Business,
        reporting_threshold: opts.reporting_threshold,
        settlement_limits: opts.settlement_limits,
        business_limits: opts.business_limits,
        retail_limits: opts.retail_limits,
        banks: Vec::new(),
    };
    genesis.validate().map_err(invalid)?;
    let mut genesis_json = serde_json::to_vec_pretty(&genesis).map_err(anyhow::Error::from)?;
    genesis_json.push(b'\n');
    let ca = pki::generate_network_ca(&opts.chain_id)?;
    let node_hosts = node_hosts(opts);
    let hosts: Vec<&str> = node_hosts.iter().map(String::as_str).collect();
    let node = ca.issue_server(&hosts)?;
    let cb_tls = ca.issue_client(&Participant::CentralBank)?;
    let config = node_toml(opts, &dir, &files);
    // The configuration must be one `ruble-node run` accepts.
    let parsed: NodeConfig =
        toml::from_str(&config).map_err(|e| anyhow::anyhow!("internal error: node.toml does not parse: {e}"))?;
    parsed
        .validate()
        .map_err(|e| anyhow::anyhow!("internal error: node.toml is not valid: {e}"))?;

    let mut w = Writer::default();
    w.dir(&dir)?;
    w.dir(&dir.join("pki"))?;
    w.dir(&dir.join("data"))?;
    w.file(&files.genesis, &genesis_json)?;
    w.key(&files.central_bank_key, &cb, passphrase)?;
    w.file(&files.ca, ca.cert_pem().as_bytes())?;
    w.file(&files.ca_key, ca.key_pem().as_bytes())?;
    w.file(&files.node_cert, node.cert_pem.as_bytes())?;
    w.file(&files.node_key, node.key_pem.as_bytes())?;
    w.file(&files.central_bank_cert, cb_tls.cert_pem.as_bytes())?;
    w.file(&files.central_bank_cert_key, cb_tls.key_pem.as_bytes())?;
    w.file(&files.config, config.as_bytes())?;
    w.keep();

    let d = dir.display();
    let next_steps = vec![
        format!("start the node: ruble-node run --config {}", files.config.display()),
        format!(
            "for each bank, with its public key (rub1… address or hex): \
             ruble-node pki issue-bank --dir {d} --bank BANK_KEY --name BANK_NAME, \
             then give the bank {d}/pki/banks/BANK_NAME.pem, BANK_NAME-key.pem and {d}/pki/ca.pem"
        ),
        format!(
            "admit each bank, then issue rubles to it (signed with {}, sent with {}): \
             ruble-admin --network-dir {d} admit-bank --bank BANK_KEY --name BANK_NAME; \
             ruble-admin --network-dir {d} issue --bank BANK_NAME --amount RUBLES",
            files.central_bank_key.display(),
            files.central_bank_cert.display(),
        ),
        format!(
            "keep {} and {} (with its passphrase) offline and backed up",
            files.ca_key.display(),
            files.central_bank_key.display()
        ),
    ];
    Ok(InitReport {
        chain_id: opts.chain_id.clone(),
        central_bank: cb.address().to_string(),
        central_bank_hex: cb.public_key_hex(),
        data_dir: dir.join("data"),
        node_hosts,
        files,
        next_steps,
    })
}

// ---------------------------------------------------------------------------
// pki issue-bank / issue-node

/// A certificate issued by `pki issue-bank` or `pki issue-node`.
#[derive(Clone, Debug, Serialize)]
pub struct IssueReport {
    /// The certificate's subject common name (`bank:<hex>`, `ruble-node`).
    pub subject: String,
    /// The bank's address (`rub1…`), for a bank certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank: Option<String>,
    /// The node certificate's names, for a node certificate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    pub files: IssuedFiles,
}

#[derive(Clone, Debug, Serialize)]
pub struct IssuedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA certificate the holder needs too.
    pub ca: PathBuf,
}

impl IssueReport {
    pub fn human(&self) -> String {
        let mut s = format!("issued a certificate for `{}`\n", self.subject);
        if let Some(b) = &self.bank {
            s += &format!("  bank:        {b}\n");
        }
        if !self.hosts.is_empty() {
            s += &format!("  names:       {}\n", self.hosts.join(", "));
        }
        s += &format!(
            "  certificate: {}\n  key:         {}\n  CA:          {}\n",
            self.files.cert.display(),
            self.files.key.display(),
            self.files.ca.display()
        );
        s
    }
}

fn issue(
    dir: &Path,
    out: PathBuf,
    name: &str,
    make: impl FnOnce(&CaBundle) -> anyhow::Result<CertPair>,
) -> Result<IssuedFiles> {
    parse_name(name).map_err(invalid)?;
    let dir = absolute(dir)?;
    let out = absolute(&out)?;
    let (cert, key) = (out.join(format!("{name}.pem")), out.join(format!("{name}-key.pem")));
    refuse_existing([cert.as_path(), key.as_path()])?;
    let ca = CaBundle::load(&dir.join("pki")).map_err(Error::Ca)?;
    let pair = make(&ca)?;
    let mut w = Writer::default();
    w.dir(&out)?;
    w.file(&cert, pair.cert_pem.as_bytes())?;
    w.file(&key, pair.key_pem.as_bytes())?;
    w.keep();
    Ok(IssuedFiles {
        cert,
        key,
        ca: dir.join("pki/ca.pem"),
    })
}

/// Issues the mTLS client certificate of the bank `bank` with the CA in
/// `dir/pki`: `out/NAME.pem` and `out/NAME-key.pem` (out defaults to
/// `dir/pki/banks`).
pub fn issue_bank(dir: &Path, bank: AccountId, name: &str, out: Option<&Path>) -> Result<IssueReport> {
    ruble_ledger::crypto::check_account_key(&bank.0)
        .map_err(|_| invalid("the bank id is not a usable ed25519 public key"))?;
    // The central bank's key names no bank (and AdmitBank would refuse it).
    if let Ok(raw) = std::fs::read(dir.join("genesis.json")) {
        if let Ok(g) = serde_json::from_slice::<Genesis>(&raw) {
            if g.central_bank == bank {
                return Err(invalid(format!(
                    "{} is the central bank's key, not a bank's",
                    Address(bank)
                )));
            }
        }
    }
    let who = Participant::Bank(bank.0);
    let out = out.map_or_else(|| dir.join("pki/banks"), Path::to_path_buf);
    let files = issue(dir, out, name, |ca| ca.issue_client(&who))?;
    Ok(IssueReport {
        subject: who.to_string(),
        bank: Some(Address(bank).to_string()),
        hosts: Vec::new(),
        files,
    })
}

/// Issues a node's server certificate for `hosts` with the CA in `dir/pki`:
/// `out/NAME.pem` and `out/NAME-key.pem` (out defaults to `dir/pki/nodes`).
pub fn issue_node(dir: &Path, hosts: &[String], name: &str, out: Option<&Path>) -> Result<IssueReport> {
    if hosts.is_empty() {
        return Err(invalid("the node certificate needs at least one --host"));
    }
    for h in hosts {
        parse_host(h).map_err(invalid)?;
    }
    let out = out.map_or_else(|| dir.join("pki/nodes"), Path::to_path_buf);
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let files = issue(dir, out, name, |ca| ca.issue_server(&names))?;
    Ok(IssueReport {
        subject: "ruble-node".into(),
        bank: None,
        hosts: hosts.to_vec(),
        files,
    })
}

/// Issues a replica's node certificate for replication (`ruble-node pki
/// issue-peer`): CN `ruble-node`, valid as the server and as the client of
/// a node-to-node connection ([`CaBundle::issue_peer`]), for `hosts`, with
/// the CA in `dir/pki`: `out/NAME.pem` and `out/NAME-key.pem` (out defaults
/// to `dir/pki/peers`). The replication service admits only such
/// certificates; a node's server certificate (`issue-node`) is not one (it
/// cannot be a client's).
pub fn issue_peer(dir: &Path, hosts: &[String], name: &str, out: Option<&Path>) -> Result<IssueReport> {
    if hosts.is_empty() {
        return Err(invalid("the replica certificate needs at least one --host"));
    }
    for h in hosts {
        parse_host(h).map_err(invalid)?;
    }
    let out = out.map_or_else(|| dir.join("pki/peers"), Path::to_path_buf);
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let files = issue(dir, out, name, |ca| ca.issue_peer(&names))?;
    Ok(IssueReport {
        subject: crate::raft_net::NODE_CN.into(),
        bank: None,
        hosts: hosts.to_vec(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_exactly_or_not_at_all() {
        assert_eq!(parse_limits("unlimited").unwrap(), Limits::UNLIMITED);
        assert_eq!(
            parse_limits("balance=300000,payment=100000,daily=150000").unwrap(),
            DEFAULT_RETAIL_LIMITS
        );
        assert_eq!(
            parse_limits("daily=0.01, balance=unlimited, payment=1250.50").unwrap(),
            Limits {
                balance_cap: u64::MAX,
                payment_cap: 1_250_50,
                daily_outflow_cap: 1,
            }
        );
        // The caps are the operator CLIs' (`ruble-admin limits set`).
        assert_eq!(
            parse_limits("balance=None,payment=Unlimited,daily=1000.50").unwrap(),
            Limits {
                balance_cap: u64::MAX,
                payment_cap: u64::MAX,
                daily_outflow_cap: 1_000_50,
            }
        );
        assert_eq!(parse_limits("UNLIMITED").unwrap(), Limits::UNLIMITED);
        // What the flags show as their defaults parses back to them.
        for l in [
            Limits::UNLIMITED,
            DEFAULT_RETAIL_LIMITS,
            parse_limits("balance=1.5,payment=unlimited,daily=2").unwrap(),
        ] {
            assert_eq!(LimitsArg(l).to_string().parse::<LimitsArg>().unwrap(), LimitsArg(l));
        }
        let t = Rubles(DEFAULT_REPORTING_THRESHOLD);
        assert_eq!(t.to_string().parse::<Rubles>().unwrap(), t);
        for bad in [
            "",
            "none of them",
            "12",
            "balance=1,payment=2",
            "balance=1,payment=2,daily=3,balance=4",
            "balance=1,payment=2,dayly=3",
            "balance=1.001,payment=2,daily=3",
            "balance=-1,payment=2,daily=3",
            "balance,payment=2,daily=3",
        ] {
            assert!(parse_limits(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hosts_names_and_banks() {
        for ok in ["localhost", "127.0.0.1", "::1", "node-1.cbr.example", "*.example.org"] {
            assert!(parse_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", "-a.b", "a_b", "a b", "a.b-", "x/y"] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
        assert!(parse_name("alfa-bank-2").is_ok());
        for bad in ["", "Alfa", "a/b", "..", "a.b", &"a".repeat(65)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
        let k = WalletKey::generate();
        assert_eq!(parse_bank(&k.address().to_string()).unwrap(), k.account_id());
        assert_eq!(parse_bank(&k.public_key_hex()).unwrap(), k.account_id());
        assert!(parse_bank("rub1nope").is_err());
        assert!(parse_bank(&"00".repeat(32)).is_err(), "the identity point is no key");
    }

    #[test]
    fn the_node_certificate_names_the_address_clients_reach_it_at() {
        let mut o = InitOptions::new("/x", "a");
        assert_eq!(node_hosts(&o), DEFAULT_HOSTS);
        o.listen = "0.0.0.0:50051".parse().unwrap();
        assert_eq!(node_hosts(&o), DEFAULT_HOSTS);
        o.listen = "[::1]:50051".parse().unwrap();
        assert_eq!(node_hosts(&o), DEFAULT_HOSTS);
        o.listen = "10.0.0.5:50051".parse().unwrap();
        o.hosts = vec!["node.cbr.example".into()];
        assert_eq!(node_hosts(&o), ["node.cbr.example", "10.0.0.5"]);
        // A wildcard listen is reached on loopback by the CLIs' --network-dir.
        for wildcard in ["0.0.0.0:50051", "[::]:50051"] {
            o.listen = wildcard.parse().unwrap();
            assert_eq!(node_hosts(&o), ["node.cbr.example", "127.0.0.1", "::1"], "{wildcard}");
        }
        o.hosts = vec!["::1".into(), "node.cbr.example".into()];
        assert_eq!(node_hosts(&o), ["::1", "node.cbr.example", "127.0.0.1"]);
    }

    #[test]
    fn init_writes_everything_once_and_rolls_back_on_a_clash() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net");
        let mut o = InitOptions::new(&dir, "ruble-unit");
        o.listen = "127.0.0.1:0".parse().unwrap();
        let r = init(&o, "pass").unwrap();
        for p in r.files.all() {
            let m = std::fs::metadata(p).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
        let cfg = NodeConfig::load(&r.files.config).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.data_dir, dir.join("data"));
        assert_eq!(cfg.metrics_listen, NodeConfig::default().metrics_listen);
        assert!(matches!(init(&o, "pass"), Err(Error::Exists(p)) if p == r.files.genesis));

        // A clash found only while writing removes what this run wrote,
        // directories included, and nothing else.
        let dir2 = tmp.path().join("net2/pki");
        let mut w = Writer::default();
        w.dir(&dir2).unwrap();
        w.file(&dir2.join("a.pem"), b"a").unwrap();
        std::fs::write(dir2.join("b.pem"), "theirs").unwrap();
        assert!(matches!(w.file(&dir2.join("b.pem"), b"b"), Err(Error::Exists(_))));
        let k = WalletKey::generate();
        assert!(matches!(w.key(&dir2.join("b.pem"), &k, "p"), Err(Error::Exists(_))));
        // A key written, then a later clash: the key goes too.
        w.key(&dir2.join("key.json"), &k, "p").unwrap();
        let mode = std::fs::metadata(dir2.join("key.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            WalletKey::load(&dir2.join("key.json"), Some("p")).unwrap().account_id(),
            k.account_id()
        );
        drop(w);
        assert!(!dir2.join("a.pem").exists());
        assert_eq!(std::fs::read(dir2.join("b.pem")).unwrap(), b"theirs");
        let left: Vec<_> = std::fs::read_dir(&dir2)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["b.pem"], "only their file is left");
        let dir3 = tmp.path().join("net3/pki");
        let mut w = Writer::default();
        w.dir(&dir3).unwrap();
        w.file(&dir3.join("a.pem"), b"a").unwrap();
        drop(w);
        assert!(!tmp.path().join("net3").exists());
    }

    /// A replica's certificate from the network's CA: CN `ruble-node`, for
    /// its hosts, good for both ends of replication; written once.
    #[test]
    fn a_replica_certificate_serves_and_dials_replication() {
        use x509_parser::extensions::ParsedExtension;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net");
        let mut o = InitOptions::new(&dir, "ruble-unit");
        o.listen = "127.0.0.1:0".parse().unwrap();
        init(&o, "pass").unwrap();
        let hosts = vec!["node-4.example".to_string(), "10.0.0.4".to_string()];
        let r = issue_peer(&dir, &hosts, "node-4", None).unwrap();
        assert_eq!(r.subject, crate::raft_net::NODE_CN);
        assert_eq!(r.files.cert, dir.join("pki/peers/node-4.pem"));
        assert_eq!(r.files.ca, dir.join("pki/ca.pem"));
        let der = crate::pki::pem_cert_der(&std::fs::read_to_string(&r.files.cert).unwrap()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, crate::raft_net::NODE_CN);
        let mut eku = None;
        let mut sans = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::ExtendedKeyUsage(e) => eku = Some((e.server_auth, e.client_auth)),
                ParsedExtension::SubjectAlternativeName(san) => {
                    sans = san.general_names.iter().map(|n| format!("{n:?}")).collect()
                }
                _ => {}
            }
        }
        assert_eq!(eku, Some((true, true)), "server and client");
        assert!(sans.iter().any(|n| n.contains("node-4.example")), "{sans:?}");
        assert_eq!(sans.len(), 2, "{sans:?}");
        assert!(matches!(
            issue_peer(&dir, &hosts, "node-4", None),
            Err(Error::Exists(_))
        ));
        assert!(issue_peer(&dir, &[], "node-5", None).is_err());
        assert!(issue_peer(&dir, &["bad host".into()], "node-5", None).is_err());
        assert!(!dir.join("pki/peers/node-5.pem").exists());
    }
}
