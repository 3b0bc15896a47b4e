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
use ruble_domain::types::{AccountId, TxId};
use ruble_wallet::cli::{self, Failure};
use ruble_wallet::{format_rubles, parse_rubles, Address, Client, Credentials, Effect, Payment, WalletKey};
use serde_json::{json, Value};

const EXAMPLES: &str = "\
Examples:
  ruble-wallet --dev-dir dev-data --key me.json balance
  ruble-wallet --dev-dir dev-data --key me.json pay --to rub1… --amount 1250.50 --purpose \"Invoice 42\"
  ruble-wallet --dev-dir dev-data --key me.json held
  ruble-wallet --dev-dir dev-data --key me.json confirm PAYMENT_ID
  ruble-wallet --dev-dir dev-data --key new.json --account rub1…(the account) balance

A payment the anti-fraud rules hold is committed with its funds reserved: it
executes once confirmed (`confirm`), or released by the bank or the central
bank, and is voided at its deadline otherwise (or by `void`).
After the bank rotated the account's key (`ruble-bank rotate-key`), sign with
the new key file and name the account with --account (or RUBLE_WALLET_ACCOUNT).
An encrypted key's passphrase: --passphrase-file FILE, else RUBLE_WALLET_PASSPHRASE,
else asked for on the terminal.
Exit codes: 0 ok, 1 usage, 2 refused (reason in the output), 3 node unreachable,
4 key or certificate problem.";

#[derive(Parser, Debug)]
#[command(
    name = "ruble-wallet",
    version,
    about = "Digital ruble wallet: keys, balance, payments, held payments, history",
    after_help = EXAMPLES
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
    /// The account the key signs for, when the bank rotated the account's
    /// key to this one (rub1… or 64 hex characters; default: the key's own).
    #[arg(long, global = true, env = "RUBLE_WALLET_ACCOUNT")]
    account: Option<String>,
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
    /// Balance (free, tagged and reserved parts, purpose-bound lots), status, tier, today's outflow and limits.
    #[command(visible_alias = "account")]
    Balance,
    /// Pay someone and wait for the durable receipt (says so if the payment is held).
    #[command(
        after_help = "A payment may be held (a first large payment to a new payee, a payee on the fraud\nregistry, or a business payment that needs signatories): it is committed, its funds\nreserved, and it prints its payment id and deadline; `confirm PAYMENT_ID` executes it."
    )]
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
    /// Payments held for confirmation, release or signatures, from or to this account.
    Held,
    /// Confirm a held payment of this account: it executes. A business
    /// account's signatory approves one waiting for signatures the same way,
    /// with its own key.
    #[command(after_help = "Example:\n  ruble-wallet --dev-dir dev-data --key me.json confirm 3f9a…(64 hex)")]
    Confirm {
        /// The payment id (64 hex characters): the held transfer's tx id.
        payment_id: String,
    },
    /// Void a held payment of this account: its reserved funds become spendable again.
    #[command(after_help = "Example:\n  ruble-wallet --dev-dir dev-data --key me.json void 3f9a…(64 hex)")]
    Void {
        /// The payment id (64 hex characters).
        payment_id: String,
    },
    /// Pay purpose-bound money from this account's free funds (a budget payer
    /// the purpose names as its issuer).
    #[command(
        after_help = "Example:\n  ruble-wallet --dev-dir dev-data --key budget.json pay-tagged --to rub1… --amount 5000 --purpose 7"
    )]
    PayTagged {
        /// Payee address (rub1… or 64 hex characters).
        #[arg(long)]
        to: String,
        /// Amount in rubles, e.g. 1250.50.
        #[arg(long)]
        amount: String,
        /// The purpose id.
        #[arg(long)]
        purpose: u32,
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

/// The account given with --account, if any.
fn account_arg(cli: &Cli) -> Result<Option<AccountId>, Failure> {
    cli.account
        .as_deref()
        .map(|a| cli::parse_account(a, "--account"))
        .transpose()
}

/// The account the key signs for: --account, else the key's own.
fn account_of(cli: &Cli, key: &WalletKey) -> Result<AccountId, Failure> {
    Ok(account_arg(cli)?.unwrap_or_else(|| key.account_id()))
}

/// A connection acting for --account, if given.
async fn connect_for(cli: &Cli) -> Result<Client, Failure> {
    let c = connect(cli).await?;
    Ok(match account_arg(cli)? {
        Some(a) => c.for_account(a),
        None => c,
    })
}

/// Prints the outcome of a submitted operation: JSON (`ok`, `command`,
/// `fields`, the receipt and its effect), or `human` and what it did.
fn done(cli: &Cli, command: &str, p: &Payment, human: String, mut fields: Value) {
    if cli.json {
        let mut v = json!({"ok": true, "command": command});
        let o = v.as_object_mut().unwrap();
        o.append(fields.as_object_mut().unwrap());
        o.append(cli::payment_json(p).as_object_mut().unwrap());
        println!("{v}");
    } else {
        println!("{human}");
        println!("{}", cli::committed_text(p));
    }
}

/// The people's lines for a payment's receipt: paid, or held (with what to
/// do next), or part swept to the payee's bank.
fn paid_text(p: &Payment, kopecks: u64, payee: Address) -> String {
    let tx = p.receipt.tx_id;
    let dup = if p.duplicate {
        " (already committed before: original receipt)"
    } else {
        ""
    };
    match p.receipt.effect {
        Effect::Held { until_ms } => format!(
            "payment of {} ₽ to {payee} is held until {}, payment id {tx}{dup}\n\
             its funds are reserved; confirm with `ruble-wallet confirm {tx}` (or void it with\n\
             `ruble-wallet void {tx}`); unconfirmed, it is voided at the deadline",
            format_rubles(kopecks),
            cli::time_text(until_ms),
        ),
        Effect::Swept { amount } => format!(
            "paid {} ₽ to {payee}; {} ₽ of it went past the payee's holding limit to its bank\n\
             tx {tx} committed in block {}{dup}",
            format_rubles(kopecks),
            format_rubles(amount),
            p.receipt.height
        ),
        _ => format!(
            "paid {} ₽ to {payee}\ntx {tx} committed in block {}{dup}",
            format_rubles(kopecks),
            p.receipt.height
        ),
    }
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
            // Payments go to the account: after a rotation, not the key's own id.
            let account = Address(account_of(&cli, &key)?);
            if *plain {
                println!("{account}");
            } else if cli.json {
                println!(
                    "{}",
                    json!({"ok": true, "address": account.to_string(), "account": account.0.to_hex(),
                           "public_key": key.public_key_hex(), "key_address": key.address().to_string()})
                );
            } else {
                println!("address:    {account}");
                if account.0 != key.account_id() {
                    println!("account:    {}", account.0.to_hex());
                    println!("signing key {} (rotated)", key.public_key_hex());
                } else {
                    println!("public key: {}", key.public_key_hex());
                }
            }
        }
        Cmd::Balance => {
            let key = load_key(&cli)?;
            let c = connect_for(&cli).await?;
            let a = c.account(&key).await?;
            if cli.json {
                let mut v = json!({"ok": true, "address": Address(a.id).to_string(), "balance_kopecks": a.balance,
                           "balance": format_rubles(a.balance), "kind": kind_name(a.kind),
                           "status": a.status.map_or("unknown", |s| s.as_str()), "outflow_today_kopecks": a.outflow_today,
                           "limits": a.limits, "bank": a.bank.to_hex()});
                // Everything else of the account (free, tagged, reserved, tier, lots, ...).
                let o = v.as_object_mut().unwrap();
                for (k, val) in cli::account_json(&a).as_object_mut().unwrap() {
                    o.entry(k.clone()).or_insert(val.take());
                }
                println!("{v}");
            } else {
                println!(
                    "{} ₽  ({} account{}, {})",
                    format_rubles(a.balance),
                    kind_name(a.kind),
                    a.tier.map(|t| format!(", {} tier", t.as_str())).unwrap_or_default(),
                    a.status.map_or("unknown", |s| s.as_str())
                );
                print!("{}", cli::balance_parts_text(&a, ""));
                println!("spent today: {} ₽", format_rubles(a.outflow_today));
                println!(
                    "limits: payment {} / daily {} / balance {}",
                    cli::cap_text(a.limits.payment_cap),
                    cli::cap_text(a.limits.daily_outflow_cap),
                    cli::cap_text(a.limits.balance_cap)
                );
                if a.sweep {
                    println!("sweep: on (credits past the balance cap go to the bank)");
                }
                if let Some(s) = &a.signatories {
                    println!(
                        "signatories: {} of {} for payments of {} ₽ or more",
                        s.required,
                        s.keys.len(),
                        format_rubles(s.min_amount)
                    );
                }
                if a.status == Some(ruble_wallet::AccountStatus::ReceiveOnly) {
                    println!("receive-only: the account may receive but not pay");
                }
                if a.fraud_flagged_by.is_some() {
                    println!("on the fraud registry: payments to it are held");
                }
            }
        }
        Cmd::Pay { to, amount, purpose } => {
            let key = load_key(&cli)?;
            let payee: Address = to.parse()?;
            let kopecks = parse_rubles(amount)?;
            let c = connect(&cli).await?;
            let p = c.pay(&key, payee.0, kopecks, purpose).await?;
            if cli.json {
                let mut v = json!({"ok": true, "amount_kopecks": kopecks, "amount": format_rubles(kopecks),
                                   "payee": payee.0.to_hex()});
                v.as_object_mut()
                    .unwrap()
                    .append(cli::payment_json(&p).as_object_mut().unwrap());
                println!("{v}");
            } else {
                println!("{}", paid_text(&p, kopecks, payee));
            }
        }
        Cmd::PayTagged { to, amount, purpose } => {
            let key = load_key(&cli)?;
            let payee: Address = to.parse()?;
            let kopecks = parse_rubles(amount)?;
            let c = connect(&cli).await?;
            let p = c.pay_tagged(&key, payee.0, kopecks, *purpose).await?;
            done(
                &cli,
                "pay-tagged",
                &p,
                format!("paid {} ₽ of purpose {purpose} to {payee}", format_rubles(kopecks)),
                json!({"amount_kopecks": kopecks, "amount": format_rubles(kopecks), "payee": payee.0.to_hex(), "purpose": purpose}),
            );
        }
        Cmd::Held => {
            let key = load_key(&cli)?;
            let c = connect_for(&cli).await?;
            let me = c.account_of(&key);
            let list = c.held_payments(&key).await?;
            if cli.json {
                let payments: Vec<Value> = list
                    .iter()
                    .map(|h| {
                        let mut v = cli::held_json(h);
                        v["direction"] = if h.payer == me { "out" } else { "in" }.into();
                        v
                    })
                    .collect();
                println!("{}", json!({"ok": true, "count": payments.len(), "payments": payments}));
            } else if list.is_empty() {
                println!("no held payments");
            } else {
                for h in &list {
                    let (sign, other) = if h.payer == me { ("-", h.payee) } else { ("+", h.payer) };
                    println!(
                        "{}  {sign}{:>14} ₽  {:<14} {}  until {}{}",
                        h.payment_id,
                        format_rubles(h.amount),
                        h.kind.map_or("unknown", |k| k.as_str()),
                        Address(other),
                        cli::time_text(h.deadline_ms),
                        if h.required > 0 {
                            format!("  ({}/{} approvals)", h.approvals.len(), h.required)
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
        Cmd::Confirm { payment_id } => {
            let payment = cli::parse_tx_id(payment_id, "PAYMENT_ID")?;
            let key = load_key(&cli)?;
            let c = connect(&cli).await?;
            let p = c.confirm_payment(&key, payment).await?;
            let human = match p.receipt.effect {
                Effect::Approved => format!("approved payment {payment}"),
                _ => format!("confirmed payment {payment}"),
            };
            done(&cli, "confirm", &p, human, json!({"payment_id": payment.to_hex()}));
        }
        Cmd::Void { payment_id } => {
            let payment = cli::parse_tx_id(payment_id, "PAYMENT_ID")?;
            let key = load_key(&cli)?;
            let c = connect(&cli).await?;
            let p = c.void_payment(&key, payment).await?;
            done(
                &cli,
                "void",
                &p,
                format!("voided payment {payment}; its funds are spendable again"),
                json!({"payment_id": payment.to_hex()}),
            );
        }
        Cmd::History { cursor, limit } => {
            let key = load_key(&cli)?;
            let c = connect_for(&cli).await?;
            let page = c.history(&key, *cursor, *limit).await?;
            let me = c.account_of(&key);
            if cli.json {
                let entries: Vec<_> = page
                    .entries
                    .iter()
                    .map(|r| {
                        json!({"tx_id": r.tx_id.to_hex(), "cursor": r.cursor, "height": r.height, "timestamp_ms": r.timestamp_ms,
                               "kind": r.kind, "from": r.from.map(|a| a.to_hex()), "to": r.to.map(|a| a.to_hex()),
                               "amount_kopecks": r.amount, "purpose": r.purpose, "large": r.large,
                               "effect": cli::effect_json(&r.effect),
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
                    let effect = match r.effect {
                        Effect::None => String::new(),
                        e => format!("  [{}]", cli::effect_kind(&e)),
                    };
                    println!(
                        "{:>12}  {}{:>14} ₽  {:<12} {}  {}{effect}",
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
                           "amount_kopecks": r.amount, "purpose": r.purpose, "large": r.large,
                           "effect": cli::effect_json(&r.effect)})
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
                if let Some(e) = cli::effect_text(&r.effect, r.tx_id) {
                    println!("{e}");
                }
            }
        }
        Cmd::Watch { from_cursor, count } => {
            let key = load_key(&cli)?;
            let c = connect_for(&cli).await?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ruble-wallet").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn held_payment_commands_parse() {
        let id = "ab".repeat(32);
        assert!(matches!(parse(&["held"]).unwrap().cmd, Cmd::Held));
        assert!(matches!(parse(&["confirm", &id]).unwrap().cmd, Cmd::Confirm { payment_id } if payment_id == id));
        assert!(matches!(parse(&["void", &id]).unwrap().cmd, Cmd::Void { .. }));
        assert!(parse(&["confirm"]).is_err());
        let c = parse(&["pay-tagged", "--to", "x", "--amount", "10.50", "--purpose", "7"]).unwrap();
        assert!(matches!(c.cmd, Cmd::PayTagged { purpose: 7, .. }));
        assert!(parse(&["pay-tagged", "--to", "x", "--amount", "1", "--purpose", "seven"]).is_err());
        // `account` is `balance`; --account is global.
        let c = parse(&["account", "--account", &"cd".repeat(32)]).unwrap();
        assert!(matches!(c.cmd, Cmd::Balance));
        assert_eq!(account_arg(&c).unwrap(), Some(AccountId([0xcd; 32])));
        let c = parse(&["--account", "nonsense", "balance"]).unwrap();
        assert_eq!(account_arg(&c).unwrap_err().code, cli::EXIT_USAGE);
    }

    #[test]
    fn a_held_payment_says_what_to_do() {
        let tx = TxId([3; 32]);
        let p = Payment {
            receipt: ruble_wallet::Receipt {
                tx_id: tx,
                height: 9,
                index: 0,
                timestamp_ms: 0,
                block_hash: String::new(),
                large: false,
                cursor: 0,
                effect: Effect::Held { until_ms: 86_400_000 },
            },
            duplicate: false,
        };
        let text = paid_text(&p, 150_000_00, Address(AccountId([4; 32])));
        assert!(text.contains("is held until 1970-01-02T00:00:00.000Z"), "{text}");
        assert!(text.contains(&format!("payment id {tx}")), "{text}");
        assert!(text.contains(&format!("ruble-wallet confirm {tx}")), "{text}");
        let swept = Payment {
            receipt: ruble_wallet::Receipt {
                effect: Effect::Swept { amount: 500 },
                ..p.receipt.clone()
            },
            duplicate: false,
        };
        assert!(paid_text(&swept, 1_000, Address(AccountId([4; 32]))).contains("5.00 ₽ of it went past"));
    }
}
