//! `ruble-wallet`: a digital-ruble wallet from the shell.
//!
//! Human output by default, `--json` for scripts. Exit codes: 0 success,
//! 1 usage or local error, 2 rejected by the ledger, 3 node unreachable or
//! transport failure, 4 key file problem (wrong passphrase included).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures::StreamExt;
use ruble_ledger::types::TxId;
use ruble_wallet::{format_rubles, parse_rubles, Address, Client, ClientBuilder, Error, WalletKey};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "ruble-wallet",
    version,
    about = "Digital ruble wallet: keys, balance, payments, history"
)]
struct Cli {
    /// Node endpoint, e.g. https://127.0.0.1:50051.
    #[arg(long, global = true, env = "RUBLE_ENDPOINT")]
    endpoint: Option<String>,
    /// CA certificate (PEM) the node's certificate chains to.
    #[arg(long, global = true, env = "RUBLE_CA")]
    ca: Option<PathBuf>,
    /// A `ruble-node dev` directory: endpoint and CA are read from its dev.json.
    #[arg(long, global = true, env = "RUBLE_DEV_DIR")]
    dev_dir: Option<PathBuf>,
    /// Wallet key file.
    #[arg(long, global = true, env = "RUBLE_WALLET_KEY")]
    key: Option<PathBuf>,
    /// Passphrase of an encrypted key file (otherwise asked for on the terminal).
    #[arg(long, global = true, env = "RUBLE_WALLET_PASSPHRASE", hide_env_values = true)]
    passphrase: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// Per-call timeout, e.g. 5s.
    #[arg(long, global = true, default_value = "10s")]
    timeout: humantime::Duration,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a new wallet key file (never overwrites).
    Keygen {
        /// Where to write the key file.
        #[arg(long)]
        out: PathBuf,
        /// Encrypt the key with a passphrase (from --passphrase or asked twice).
        #[arg(long)]
        encrypt: bool,
    },
    /// Print the wallet's address and public key.
    Address {
        /// Print only the rub1… address (for scripts).
        #[arg(long)]
        plain: bool,
    },
    /// Balance, status, today's outflow and limits.
    Balance,
    /// Pay someone and wait for the durable receipt.
    Pay {
        /// Payee address (rub1… or 64 hex characters).
        #[arg(long)]
        to: String,
        /// Amount in rubles, e.g. 1250.50 (exact; no rounding).
        #[arg(long)]
        amount: String,
        /// Payment purpose (up to 140 bytes).
        #[arg(long, default_value = "")]
        purpose: String,
    },
    /// Operations on the account, oldest first.
    History {
        /// Show entries after this cursor.
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// Page size (1..1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A committed operation by its transaction id.
    Receipt {
        /// 64 hex characters.
        tx_id: String,
    },
    /// Print incoming payments as they commit (resumes after reconnects).
    Watch {
        /// Start after this cursor (0: from the beginning).
        #[arg(long, default_value_t = 0)]
        from_cursor: u64,
        /// Stop after this many payments.
        #[arg(long)]
        count: Option<usize>,
    },
}

struct Failure {
    code: u8,
    reason: String,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let (code, reason) = match &e {
            Error::Rejected { reason, .. } => (2, reason.code().to_string()),
            Error::Refused { code, .. } => (2, code.clone()),
            Error::Transport(_) | Error::Timeout => (3, "UNREACHABLE".to_string()),
            Error::WrongPassphrase => (4, "WRONG_PASSPHRASE".to_string()),
            Error::Key(_) => (4, "KEY_FILE".to_string()),
            Error::Certificate(_) => (4, "CERTIFICATE".to_string()),
            Error::Config(_) => (1, "USAGE".to_string()),
        };
        let message = match &e {
            Error::Rejected { reason, .. } => reason.describe().to_string(),
            Error::Transport(m) => format!("cannot reach the node: {m}"),
            other => other.to_string(),
        };
        Failure { code, reason, message }
    }
}

fn fail(code: u8, reason: &str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        reason: reason.into(),
        message: message.into(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json {
                println!("{}", json!({"ok": false, "error": f.reason, "message": f.message}));
            } else {
                eprintln!("error: {} ({})", f.message, f.reason);
            }
            ExitCode::from(f.code)
        }
    }
}

fn passphrase(cli: &Cli, confirm: bool) -> Result<String, Failure> {
    if let Some(p) = &cli.passphrase {
        return Ok(p.clone());
    }
    let p = rpassword::prompt_password("passphrase: ")
        .map_err(|e| fail(4, "KEY_FILE", format!("reading passphrase: {e}")))?;
    if confirm {
        let again = rpassword::prompt_password("again: ").map_err(|e| fail(4, "KEY_FILE", e.to_string()))?;
        if again != p {
            return Err(fail(4, "KEY_FILE", "the passphrases differ"));
        }
    }
    Ok(p)
}

fn load_key(cli: &Cli) -> Result<WalletKey, Failure> {
    let path = cli
        .key
        .as_ref()
        .ok_or_else(|| fail(1, "USAGE", "--key FILE is required (or RUBLE_WALLET_KEY)"))?;
    let pass = if WalletKey::is_encrypted(path)? {
        Some(passphrase(cli, false)?)
    } else {
        None
    };
    Ok(WalletKey::load(path, pass.as_deref())?)
}

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    let mut b = match (&cli.dev_dir, &cli.endpoint) {
        (_, Some(ep)) => {
            let b = ClientBuilder::new(ep.clone());
            match (&cli.ca, &cli.dev_dir) {
                (Some(ca), _) => b.ca_file(ca)?,
                (None, Some(d)) => b.ca_file(d.join("pki/ca.pem"))?,
                (None, None) => b,
            }
        }
        (Some(d), None) => ClientBuilder::from_dev_dir(d)?,
        (None, None) => return Err(fail(1, "USAGE", "give --endpoint (and --ca) or --dev-dir")),
    };
    b = b.timeout(*cli.timeout).retries(2);
    Ok(b.connect().await?)
}

fn kind_name(k: Option<ruble_ledger::AccountKind>) -> &'static str {
    k.map_or("unknown", |k| k.as_str())
}

fn cap(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        format_rubles(v)
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.cmd {
        Cmd::Keygen { out, encrypt } => {
            let key = WalletKey::generate();
            let pass = if *encrypt { Some(passphrase(&cli, true)?) } else { None };
            key.save(out, pass.as_deref())?;
            if cli.json {
                println!(
                    "{}",
                    json!({"ok": true, "key_file": out, "address": key.address().to_string(), "public_key": key.public_key_hex(), "encrypted": encrypt})
                );
            } else {
                println!(
                    "wrote {} ({})",
                    out.display(),
                    if *encrypt { "encrypted" } else { "unencrypted" }
                );
                println!("address:    {}", key.address());
                println!("public key: {}", key.public_key_hex());
            }
        }
        Cmd::Address { plain } => {
            let key = load_key(&cli)?;
            if *plain {
                println!("{}", key.address());
            } else if cli.json {
                println!(
                    "{}",
                    json!({"ok": true, "address": key.address().to_string(), "public_key": key.public_key_hex()})
                );
            } else {
                println!("address:    {}", key.address());
                println!("public key: {}", key.public_key_hex());
            }
        }
        Cmd::Balance => {
            let key = load_key(&cli)?;
            let c = connect(&cli).await?;
            let a = c.account(&key).await?;
            if cli.json {
                println!(
                    "{}",
                    json!({"ok": true, "address": key.address().to_string(), "balance_kopecks": a.balance,
                           "balance": format_rubles(a.balance), "kind": kind_name(a.kind),
                           "status": a.status.map_or("unknown", |s| s.as_str()), "outflow_today_kopecks": a.outflow_today,
                           "limits": a.limits, "bank": a.bank.to_hex()})
                );
            } else {
                println!(
                    "{} ₽  ({} account, {})",
                    format_rubles(a.balance),
                    kind_name(a.kind),
                    a.status.map_or("unknown", |s| s.as_str())
                );
                println!("spent today: {} ₽", format_rubles(a.outflow_today));
                println!(
                    "limits: payment {} / daily {} / balance {}",
                    cap(a.limits.payment_cap),
                    cap(a.limits.daily_outflow_cap),
                    cap(a.limits.balance_cap)
                );
            }
        }
        Cmd::Pay { to, amount, purpose } => {
            let key = load_key(&cli)?;
            let payee: Address = to.parse()?;
            let kopecks = parse_rubles(amount)?;
            let c = connect(&cli).await?;
            let p = c.pay(&key, payee.0, kopecks, purpose).await?;
            if cli.json {
                println!(
                    "{}",
                    json!({"ok": true, "tx_id": p.receipt.tx_id.to_hex(), "height": p.receipt.height, "index": p.receipt.index,
                           "cursor": p.receipt.cursor, "amount_kopecks": kopecks, "duplicate": p.duplicate, "large": p.receipt.large,
                           "timestamp_ms": p.receipt.timestamp_ms})
                );
            } else {
                println!("paid {} ₽ to {}", format_rubles(kopecks), payee);
                println!("tx {} committed in block {}", p.receipt.tx_id, p.receipt.height);
            }
        }
        Cmd::History { cursor, limit } => {
            let key = load_key(&cli)?;
            let c = connect(&cli).await?;
            let page = c.history(&key, *cursor, *limit).await?;
            let me = key.account_id();
            if cli.json {
                let entries: Vec<_> = page
                    .entries
                    .iter()
                    .map(|r| {
                        json!({"tx_id": r.tx_id.to_hex(), "cursor": r.cursor, "height": r.height, "timestamp_ms": r.timestamp_ms,
                               "kind": r.kind, "from": r.from.map(|a| a.to_hex()), "to": r.to.map(|a| a.to_hex()),
                               "amount_kopecks": r.amount, "purpose": r.purpose, "large": r.large,
                               "direction": if r.to == Some(me) { "in" } else { "out" }})
                    })
                    .collect();
                println!(
                    "{}",
                    json!({"ok": true, "entries": entries, "next_cursor": page.next_cursor, "more": page.more})
                );
            } else {
                for r in &page.entries {
                    let (sign, other) = if r.to == Some(me) { ("+", r.from) } else { ("-", r.to) };
                    println!(
                        "{:>12}  {}{:>14} ₽  {:<12} {}  {}",
                        r.cursor,
                        sign,
                        format_rubles(r.amount),
                        r.kind,
                        other.map(|a| Address(a).to_string()).unwrap_or_default(),
                        r.purpose
                    );
                }
                if page.more {
                    println!("… more: --cursor {}", page.next_cursor);
                }
            }
        }
        Cmd::Receipt { tx_id } => {
            let tx = TxId::from_hex(tx_id).map_err(|_| fail(1, "USAGE", "tx id must be 64 hex characters"))?;
            let c = connect(&cli).await?;
            let r = c.receipt(tx).await?;
            if cli.json {
                println!(
                    "{}",
                    json!({"ok": true, "tx_id": r.tx_id.to_hex(), "height": r.height, "cursor": r.cursor, "timestamp_ms": r.timestamp_ms,
                           "kind": r.kind, "from": r.from.map(|a| a.to_hex()), "to": r.to.map(|a| a.to_hex()),
                           "amount_kopecks": r.amount, "purpose": r.purpose, "large": r.large})
                );
            } else {
                println!(
                    "{} {} ₽ in block {} (cursor {})",
                    r.kind,
                    format_rubles(r.amount),
                    r.height,
                    r.cursor
                );
                if let (Some(f), Some(t)) = (r.from, r.to) {
                    println!("from {}\nto   {}", Address(f), Address(t));
                }
                if !r.purpose.is_empty() {
                    println!("purpose: {}", r.purpose);
                }
            }
        }
        Cmd::Watch { from_cursor, count } => {
            let key = load_key(&cli)?;
            let c = connect(&cli).await?;
            let mut s = Box::pin(c.watch_incoming(&key, *from_cursor));
            let mut seen = 0usize;
            while let Some(item) = s.next().await {
                let r = item?;
                if cli.json {
                    println!(
                        "{}",
                        json!({"tx_id": r.tx_id.to_hex(), "cursor": r.cursor, "from": r.from.map(|a| a.to_hex()),
                               "amount_kopecks": r.amount, "purpose": r.purpose, "timestamp_ms": r.timestamp_ms})
                    );
                } else {
                    println!(
                        "+{} ₽ from {}  {}  (cursor {})",
                        format_rubles(r.amount),
                        r.from.map(|a| Address(a).to_string()).unwrap_or_default(),
                        r.purpose,
                        r.cursor
                    );
                }
                seen += 1;
                if count.is_some_and(|n| seen >= n) {
                    break;
                }
            }
        }
    }
    Ok(())
}
