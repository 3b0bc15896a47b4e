//! `ruble-wallet`: a digital-ruble wallet from the shell.
//!
//! Human output by default, `--json` for scripts. Exit codes, failures and
//! passphrases as the operator CLIs' ([`ruble_wallet::cli`]): 0 success,
//! 1 usage or local error, 2 refused by the ledger or the node, 3 node
//! unreachable (transport failure, timeout, `UNAVAILABLE`), 4 key file or
//! certificate problem (wrong passphrase included).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures::StreamExt;
use ruble_domain::types::TxId;
use ruble_wallet::cli::{self, Failure};
use ruble_wallet::{format_rubles, parse_rubles, Address, Client, Credentials, WalletKey};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "ruble-wallet",
    version,
    about = "Digital ruble wallet: keys, balance, payments, history",
    after_help = "An encrypted key's passphrase: --passphrase-file FILE, else RUBLE_WALLET_PASSPHRASE,\nelse asked for on the terminal.\nExit codes: 0 ok, 1 usage, 2 refused (reason in the output), 3 node unreachable,\n4 key or certificate problem."
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
    #[command(flatten)]
    pass: cli::PassphraseArgs,
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = cli::parse_args();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => cli::report(&f, json),
    }
}

fn passphrase(cli: &Cli) -> cli::Passphrase {
    cli.pass.with_env("RUBLE_WALLET_PASSPHRASE")
}

fn load_key(cli: &Cli) -> Result<WalletKey, Failure> {
    cli::load_key(
        cli.key.as_deref(),
        "--key FILE is required (or RUBLE_WALLET_KEY)",
        &passphrase(cli),
    )
}

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    let explicit = Credentials {
        endpoint: cli.endpoint.clone(),
        ca: cli.ca.clone(),
        ..Credentials::default()
    };
    let creds = match &cli.dev_dir {
        Some(d) => explicit.or(Credentials::dev_network(d)?),
        None => explicit,
    };
    if creds.endpoint.is_none() {
        return Err(cli::usage("give --endpoint (and --ca) or --dev-dir"));
    }
    Ok(creds.node_builder()?.timeout(*cli.timeout).retries(2).connect().await?)
}

fn kind_name(k: Option<ruble_domain::AccountKind>) -> &'static str {
    k.map_or("unknown", |k| k.as_str())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.cmd {
        Cmd::Keygen { out, encrypt } => {
            let key = WalletKey::generate();
            let pass = if *encrypt {
                Some(passphrase(&cli).get("the new key", true)?)
            } else {
                None
            };
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
                    cli::cap_text(a.limits.payment_cap),
                    cli::cap_text(a.limits.daily_outflow_cap),
                    cli::cap_text(a.limits.balance_cap)
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
                        cli::printable(&r.kind),
                        other.map(|a| Address(a).to_string()).unwrap_or_default(),
                        cli::printable(&r.purpose)
                    );
                }
                if page.more {
                    println!("… more: --cursor {}", page.next_cursor);
                }
            }
        }
        Cmd::Receipt { tx_id } => {
            let tx = TxId::from_hex(tx_id).map_err(|_| cli::usage("tx id must be 64 hex characters"))?;
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
                    cli::printable(&r.kind),
                    format_rubles(r.amount),
                    r.height,
                    r.cursor
                );
                if let (Some(f), Some(t)) = (r.from, r.to) {
                    println!("from {}\nto   {}", Address(f), Address(t));
                }
                if !r.purpose.is_empty() {
                    println!("purpose: {}", cli::printable(&r.purpose));
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
                        cli::printable(&r.purpose),
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
