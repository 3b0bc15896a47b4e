//! `ruble-bank`: a participant bank's command line.
//!
//! Every command talks to `BankService` over mutual TLS with the bank's
//! certificate; operations are signed with the bank's key. The node acts as
//! the bank the certificate names and shows it only its own clients.
//! Tables for people, `--json` for scripts, `--csv` for tabular commands.
//! Exit codes: 0 success, 1 usage or local error (an unconfirmed drastic step
//! included), 2 refused by the ledger or the node (the reason is in the
//! output), 3 node unreachable, 4 key or certificate problem.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use ruble_wallet::cli::{self, Conn, Failure, Table};
use ruble_wallet::{
    format_rubles, AccountId, AccountKind, Address, BankClient, Block, Credentials, Payment, Record, WalletKey,
};
use serde_json::{json, Value};

const EXAMPLES: &str = "\
Examples:
  ruble-bank --dev-dir dev-data open-account --account rub1… --kind business
  ruble-bank --dev-dir dev-data --bank-name beta-dev-bank account --account rub1…
  ruble-bank --dev-dir dev-data statement --account rub1… --all --csv
  ruble-bank --dev-dir dev-data blocks --follow --json

Connection: --dev-dir DIR (a `ruble-node dev` directory; --bank-name picks the
bank), or --endpoint, --ca, --cert, --cert-key and --key.
An encrypted key's passphrase: --passphrase-file FILE, else RUBLE_BANK_PASSPHRASE,
else asked for on the terminal.
Exit codes: 0 ok, 1 usage, 2 refused (reason in the output), 3 node unreachable,
4 key or certificate problem.";

#[derive(Parser, Debug)]
#[command(
    name = "ruble-bank",
    version,
    about = "Bank operations: open, close, freeze and unfreeze client wallets; accounts, statements, blocks",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    /// With --dev-dir: which dev bank, by name or index (default: the first).
    #[arg(long, global = true, env = "RUBLE_BANK_NAME", help_heading = "Connection and output")]
    bank_name: Option<String>,
    #[command(flatten)]
    pass: cli::PassphraseArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Open a wallet for a client (its public key); retail wallets need the retail phase.
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data open-account --account rub1… --kind business")]
    OpenAccount {
        /// The client's key: rub1… or 64 hex characters.
        #[arg(long)]
        account: String,
        #[arg(long, value_enum)]
        kind: KindArg,
    },
    /// Close a client's empty wallet; final (asks first).
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data close-account --account rub1… --yes")]
    CloseAccount {
        #[arg(long)]
        account: String,
    },
    /// Freeze a client's wallet: it neither pays nor receives until unfrozen (asks first).
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data freeze --account rub1… --yes")]
    Freeze {
        #[arg(long)]
        account: String,
    },
    /// Unfreeze a client's wallet (not one the central bank froze).
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data unfreeze --account rub1…")]
    Unfreeze {
        #[arg(long)]
        account: String,
    },
    /// A client's account: balance, status, limits, today's outflow.
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data account --account rub1… --json")]
    Account {
        #[arg(long)]
        account: String,
    },
    /// The bank's own settlement account.
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data settlement")]
    Settlement,
    /// A client's statement, oldest first, one page (or --all).
    #[command(
        after_help = "Examples:\n  ruble-bank --dev-dir dev-data statement --account rub1… --limit 20\n  ruble-bank --dev-dir dev-data statement --account rub1… --cursor 4294967297 --all --csv"
    )]
    Statement {
        #[arg(long)]
        account: String,
        /// Entries after this cursor (0: from the start).
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// Page size (the node caps it).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Every page from --cursor on.
        #[arg(long)]
        all: bool,
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Committed blocks, filtered to this bank's clients' operations; --follow for live ones.
    #[command(
        after_help = "Examples:\n  ruble-bank --dev-dir dev-data blocks --from-height 100\n  ruble-bank --dev-dir dev-data blocks --follow --json\n\nWithout --follow it lists the blocks up to the current head and exits. Tables and\nCSV have one row per operation; --json lists every block, with or without any."
    )]
    Blocks {
        /// Start at this block height.
        #[arg(long, default_value_t = 1)]
        from_height: u64,
        /// Keep printing new blocks as they commit.
        #[arg(long)]
        follow: bool,
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum KindArg {
    Business,
    Retail,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli: Cli = cli::parse_args();
    let json = cli.conn.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => cli::report(&f, json),
    }
}

fn credentials(cli: &Cli) -> Result<Credentials, Failure> {
    let base = match &cli.conn.dev_dir {
        Some(d) => Credentials::dev_bank(d, cli.bank_name.as_deref())?,
        None if cli.bank_name.is_some() => return Err(cli::usage("--bank-name picks a bank of --dev-dir")),
        None => Credentials::default(),
    };
    Ok(cli.conn.explicit().or(base))
}

struct Ctx {
    bank: BankClient,
    creds: Credentials,
    pass: cli::Passphrase,
    json: bool,
    yes: bool,
}

impl Ctx {
    /// The bank's signing key, checked against the certificate's bank.
    async fn key(&self) -> Result<WalletKey, Failure> {
        let key = cli::load_key(
            self.creds.key.as_deref(),
            "no signing key: give --key FILE (or --dev-dir)",
            &self.pass,
        )?;
        self.bank.check_key(&key).await?;
        Ok(key)
    }

    fn done(&self, command: &str, account: AccountId, p: &Payment, human: String, mut fields: Value) {
        if self.json {
            let mut v = json!({"ok": true, "command": command, "account": account.to_hex(), "address": Address(account).to_string()});
            let o = v.as_object_mut().unwrap();
            o.append(fields.as_object_mut().unwrap());
            o.append(cli::payment_json(p).as_object_mut().unwrap());
            println!("{v}");
        } else {
            println!("{human}");
            println!("{}", cli::committed_text(p));
        }
    }
}

/// +/- and the other side of an entry, from `account`'s point of view.
fn direction(r: &Record, account: AccountId) -> (&'static str, Option<AccountId>) {
    if r.amount == 0 {
        ("", None)
    } else if r.to == Some(account) {
        ("in", r.from)
    } else if r.from == Some(account) {
        ("out", r.to)
    } else {
        ("", None)
    }
}

/// A statement: AMOUNT_RUB and AMOUNT_KOPECKS both signed from `account`'s
/// side (`+250.75` and `25075` in, `-351.75` and `-35175` out), beside the
/// DIRECTION column.
fn statement_table(entries: &[Record], account: AccountId) -> Table {
    let mut t = Table::new(&[
        ">CURSOR",
        ">HEIGHT",
        "TIME",
        "KIND",
        "DIRECTION",
        ">AMOUNT_RUB",
        ">AMOUNT_KOPECKS",
        "COUNTERPARTY",
        "PURPOSE",
        "TX_ID",
    ]);
    for r in entries {
        let (dir, other) = direction(r, account);
        let (sign, kopecks_sign) = match dir {
            "in" => ("+", ""),
            "out" => ("-", "-"),
            _ => ("", ""),
        };
        t.push(vec![
            r.cursor.to_string(),
            r.height.to_string(),
            cli::time_text(r.timestamp_ms),
            r.kind.clone(),
            dir.into(),
            format!("{sign}{}", format_rubles(r.amount)),
            format!("{kopecks_sign}{}", r.amount),
            cli::addr(other),
            r.purpose.clone(),
            r.tx_id.to_hex(),
        ]);
    }
    t
}

fn block_json(b: &Block) -> Value {
    json!({
        "height": b.height, "hash": b.hash, "prev_hash": b.prev_hash, "state_hash": b.state_hash,
        "timestamp_ms": b.timestamp_ms, "time": cli::time_text(b.timestamp_ms), "op_count": b.op_count,
        "operations": b.operations.iter().map(cli::record_json).collect::<Vec<_>>(),
    })
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let creds = credentials(&cli)?;
    let builder = cli.conn.builder(&creds)?;
    let bank = BankClient::connect(builder).await?;
    let ctx = Ctx {
        bank,
        creds,
        pass: cli.pass.with_env("RUBLE_BANK_PASSPHRASE"),
        json: cli.conn.json,
        yes: cli.conn.yes,
    };
    match &cli.cmd {
        Cmd::OpenAccount { account, kind } => {
            let account = cli::parse_account(account, "--account")?;
            let kind = match kind {
                KindArg::Business => AccountKind::Business,
                KindArg::Retail => AccountKind::Retail,
            };
            let key = ctx.key().await?;
            let p = ctx.bank.open_account(&key, account, kind).await?;
            ctx.done(
                "open-account",
                account,
                &p,
                format!("opened a {} wallet for {}", kind.as_str(), Address(account)),
                json!({"kind": kind.as_str()}),
            );
        }
        Cmd::CloseAccount { account } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key().await?;
            cli::confirm(
                ctx.yes,
                &format!(
                    "Close the wallet {}? Closing is final; the id is never reused.",
                    Address(account)
                ),
            )?;
            let p = ctx.bank.close_account(&key, account).await?;
            ctx.done(
                "close-account",
                account,
                &p,
                format!("closed {}", Address(account)),
                json!({}),
            );
        }
        Cmd::Freeze { account } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key().await?;
            cli::confirm(
                ctx.yes,
                &format!(
                    "Freeze the wallet {}? It will neither pay nor receive until unfrozen.",
                    Address(account)
                ),
            )?;
            let p = ctx.bank.freeze(&key, account).await?;
            ctx.done("freeze", account, &p, format!("froze {}", Address(account)), json!({}));
        }
        Cmd::Unfreeze { account } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key().await?;
            let p = ctx.bank.unfreeze(&key, account).await?;
            ctx.done(
                "unfreeze",
                account,
                &p,
                format!("unfroze {}", Address(account)),
                json!({}),
            );
        }
        Cmd::Account { account } => {
            let account = cli::parse_account(account, "--account")?;
            let a = ctx.bank.account(account).await?;
            print_account(&ctx, &a);
        }
        Cmd::Settlement => {
            let a = ctx.bank.settlement().await?;
            print_account(&ctx, &a);
        }
        Cmd::Statement {
            account,
            cursor,
            limit,
            all,
            csv,
        } => {
            let account = cli::parse_account(account, "--account")?;
            let page = if *all {
                ctx.bank.statement_all(account, *cursor).await?
            } else {
                ctx.bank.statement(account, *cursor, *limit).await?
            };
            if ctx.json {
                let entries: Vec<Value> = page
                    .entries
                    .iter()
                    .map(|r| {
                        let mut v = cli::record_json(r);
                        v["direction"] = direction(r, account).0.into();
                        v
                    })
                    .collect();
                println!(
                    "{}",
                    json!({"ok": true, "account": account.to_hex(), "address": Address(account).to_string(),
                           "entries": entries, "next_cursor": page.next_cursor, "more": page.more})
                );
            } else {
                let t = statement_table(&page.entries, account);
                if *csv {
                    print!("{}", t.csv());
                } else {
                    print!("{}", t.text());
                    if page.more {
                        println!("… more: --cursor {}", page.next_cursor);
                    }
                }
            }
        }
        Cmd::Blocks {
            from_height,
            follow: false,
            csv,
        } => {
            let blocks = ctx.bank.blocks_until(*from_height, None).await?;
            if ctx.json {
                let list: Vec<Value> = blocks.iter().map(block_json).collect();
                println!(
                    "{}",
                    json!({"ok": true, "from_height": from_height, "count": list.len(), "blocks": list})
                );
            } else {
                let ops: Vec<Record> = blocks.iter().flat_map(|b| b.operations.iter().cloned()).collect();
                let t = cli::records_table(&ops);
                if *csv {
                    print!("{}", t.csv());
                } else {
                    print!("{}", t.text());
                    let empty = blocks.iter().filter(|b| b.operations.is_empty()).count();
                    println!(
                        "{} blocks{}, {} operations of this bank's clients",
                        blocks.len(),
                        if empty > 0 {
                            format!(" ({empty} without any of them)")
                        } else {
                            String::new()
                        },
                        ops.len()
                    );
                }
            }
        }
        Cmd::Blocks {
            from_height,
            follow: true,
            csv,
        } => {
            let mut s = Box::pin(ctx.bank.blocks(*from_height));
            let header = cli::records_table(&[]);
            if *csv {
                print!("{}", header.csv());
            } else if !ctx.json {
                println!("{}", header.headers.join("  "));
            }
            while let Some(item) = s.next().await {
                let b = item?;
                if ctx.json {
                    println!("{}", block_json(&b));
                    continue;
                }
                for r in &b.operations {
                    if *csv {
                        print!("{}", cli::csv_row(&cli::record_row(r)));
                    } else {
                        println!("{}", cli::text_row(&cli::record_row(r)));
                    }
                }
            }
        }
    }
    Ok(())
}

fn print_account(ctx: &Ctx, a: &ruble_wallet::AccountInfo) {
    if ctx.json {
        let mut v = json!({"ok": true});
        v.as_object_mut()
            .unwrap()
            .append(cli::account_json(a).as_object_mut().unwrap());
        println!("{v}");
    } else {
        print!("{}", cli::account_text(a));
    }
}
