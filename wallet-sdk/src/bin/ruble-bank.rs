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
    format_rubles, AccountId, AccountKind, Address, BankClient, Block, Credentials, Effect, Payment, Record, Tier,
    WalletKey,
};
use serde_json::{json, Value};

const EXAMPLES: &str = "\
Examples:
  ruble-bank --dev-dir dev-data open-account --account rub1… --kind business
  ruble-bank --dev-dir dev-data --bank-name beta-dev-bank account --account rub1…
  ruble-bank --dev-dir dev-data statement --account rub1… --all --csv
  ruble-bank --dev-dir dev-data blocks --follow --json
  ruble-bank --dev-dir dev-data held list
  ruble-bank --dev-dir dev-data held release PAYMENT_ID
  ruble-bank --dev-dir dev-data set-tier --account rub1… --tier simplified
  ruble-bank --dev-dir dev-data rotate-key --account rub1… --new-key HEX --yes

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
    about = "Bank operations: client wallets (open, close, freeze, tiers, categories, sweeps, key rotation, signatories), held payments, fraud registry, collection; accounts, statements, blocks",
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
    /// Freeze a client's wallet for payments only: it may still receive (asks first). `unfreeze` lifts it.
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data freeze-receive-only --account rub1… --yes")]
    FreezeReceiveOnly {
        #[arg(long)]
        account: String,
    },
    /// The fraud registry: flag any business or retail account (payments to it are held), unflag own entries.
    #[command(
        after_help = "Examples:\n  ruble-bank --dev-dir dev-data fraud flag --account rub1…\n  ruble-bank --dev-dir dev-data fraud unflag --account rub1…"
    )]
    Fraud {
        #[command(subcommand)]
        cmd: FraudCmd,
    },
    /// Clients' held payments: list them, release one (it executes) or void one.
    #[command(
        after_help = "Examples:\n  ruble-bank --dev-dir dev-data held list --csv\n  ruble-bank --dev-dir dev-data held list --account rub1…\n  ruble-bank --dev-dir dev-data held release 3f9a…(64 hex)\n  ruble-bank --dev-dir dev-data held void 3f9a…(64 hex)\n\nA payment waiting for signatures (kind signatures) cannot be released: its\nsignatories approve it with `ruble-wallet confirm`."
    )]
    Held {
        #[command(subcommand)]
        cmd: HeldCmd,
    },
    /// Court-ordered collection from a client: up to AMOUNT of its free funds
    /// above the protected minimum go to the claimant (asks first).
    #[command(
        after_help = "Example:\n  ruble-bank --dev-dir dev-data collect --debtor rub1… --claimant rub1… --amount 15000 --yes\n\nWorks on frozen wallets too; purpose-bound funds are never collected. The\nreceipt says how much was collected (NOTHING_COLLECTABLE if nothing)."
    )]
    Collect {
        /// The client who owes: rub1… or 64 hex characters.
        #[arg(long)]
        debtor: String,
        /// Who receives the funds: rub1… or 64 hex characters.
        #[arg(long)]
        claimant: String,
        /// Rubles, at most this much.
        #[arg(long)]
        amount: String,
    },
    /// Set a client's payee category (merchant category, e.g. 5411; 0 = none), which purposes may allow.
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data set-category --account rub1… --category 5411")]
    SetCategory {
        #[arg(long)]
        account: String,
        #[arg(long)]
        category: u16,
    },
    /// Turn a client's holding-limit waterfall on or off: with it, a credit
    /// past the balance cap sends the excess to this bank's settlement account.
    #[command(
        after_help = "Examples:\n  ruble-bank --dev-dir dev-data sweep on --account rub1…\n  ruble-bank --dev-dir dev-data sweep off --account rub1…\n\n`sweeps` lists what was swept, to credit to each client's deposit."
    )]
    Sweep {
        /// on or off.
        #[arg(value_enum)]
        state: OnOff,
        #[arg(long)]
        account: String,
    },
    /// Move a retail client to another identification tier (each with its own caps).
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data set-tier --account rub1… --tier simplified")]
    SetTier {
        #[arg(long)]
        account: String,
        #[arg(long, value_enum)]
        tier: TierArg,
    },
    /// Rotate the key that controls a client's account (a lost device); the
    /// account keeps its id, balance and history; the old key is revoked (asks first).
    #[command(
        after_help = "Example:\n  ruble-wallet keygen --out new-key.json        # the client makes a new key, prints its public key\n  ruble-bank --dev-dir dev-data rotate-key --account rub1… --new-key 5c1e…(64 hex) --yes\n\nThe client then signs with the new key and names its account:\n  ruble-wallet --key new-key.json --account rub1… balance"
    )]
    RotateKey {
        /// The client's account: rub1… or 64 hex characters.
        #[arg(long)]
        account: String,
        /// The new controlling key's public key: rub1… or 64 hex characters.
        #[arg(long)]
        new_key: String,
    },
    /// Set (or --clear) a business client's signatories: its payments of at
    /// least --min-amount wait until --required of the --signatory keys approve.
    #[command(
        after_help = "Examples:\n  ruble-bank --dev-dir dev-data signatories --account rub1… --min-amount 100000 --required 2 --signatory HEX1 --signatory HEX2 --signatory HEX3\n  ruble-bank --dev-dir dev-data signatories --account rub1… --clear\n\nSignatories approve with `ruble-wallet --key SIGNATORY.json confirm PAYMENT_ID`."
    )]
    Signatories {
        #[arg(long)]
        account: String,
        /// Rubles: payments of at least this need the signatories.
        #[arg(long, required_unless_present = "clear")]
        min_amount: Option<String>,
        /// How many of the keys must approve.
        #[arg(long, required_unless_present = "clear")]
        required: Option<u8>,
        /// A signatory's public key (rub1… or 64 hex characters); repeat, at most 8.
        #[arg(long = "signatory", value_name = "KEY", required_unless_present = "clear")]
        keys: Vec<String>,
        /// Remove the rule.
        #[arg(long, conflicts_with_all = ["min_amount", "required", "keys"])]
        clear: bool,
    },
    /// Operations whose holding-limit sweep credited this bank's settlement
    /// account, oldest first: what to credit to each client's deposit.
    #[command(
        after_help = "Examples:\n  ruble-bank --dev-dir dev-data sweeps\n  ruble-bank --dev-dir dev-data sweeps --cursor 4294967297 --all --csv"
    )]
    Sweeps {
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
    /// Every purpose defined for tagged money: issuer, time window, payees, categories.
    #[command(after_help = "Example:\n  ruble-bank --dev-dir dev-data purposes --json")]
    Purposes {
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
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

#[derive(Subcommand, Debug)]
enum FraudCmd {
    /// Put an account on the fraud registry: payments to it are held.
    Flag {
        #[arg(long)]
        account: String,
    },
    /// Take an account this bank reported off the registry.
    Unflag {
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand, Debug)]
enum HeldCmd {
    /// Held payments of this bank's clients (as payer or payee), or of one client.
    List {
        /// Only this client's: rub1… or 64 hex characters.
        #[arg(long)]
        account: Option<String>,
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Release a client's payment held by the anti-fraud rules: it executes.
    Release {
        /// The payment id (64 hex characters).
        payment_id: String,
    },
    /// Void a client's held payment: its funds are spendable again.
    Void {
        /// The payment id (64 hex characters).
        payment_id: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OnOff {
    On,
    Off,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TierArg {
    Anonymous,
    Simplified,
    Full,
}

impl TierArg {
    fn tier(self) -> Tier {
        match self {
            TierArg::Anonymous => Tier::Anonymous,
            TierArg::Simplified => Tier::Simplified,
            TierArg::Full => Tier::Full,
        }
    }
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

    fn done(&self, command: &str, account: AccountId, p: &Payment, human: String, fields: Value) {
        let mut all = json!({"account": account.to_hex(), "address": Address(account).to_string()});
        all.as_object_mut()
            .unwrap()
            .extend(fields.as_object().cloned().unwrap_or_default());
        self.done_op(command, p, human, all);
    }

    /// [`Ctx::done`] for an operation that names no account (a held payment's).
    fn done_op(&self, command: &str, p: &Payment, human: String, mut fields: Value) {
        if self.json {
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
        "EFFECT",
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
            cli::effect_cell(&r.effect),
        ]);
    }
    t
}

/// The swept amount of an operation, if its effect swept any.
fn swept_of(r: &Record) -> u64 {
    match r.effect {
        Effect::Swept { amount } | Effect::Settled { swept: amount } => amount,
        _ => 0,
    }
}

/// Sweeps: who paid whom, how much, and how much of it came to the bank.
fn sweeps_table(entries: &[Record]) -> Table {
    let mut t = Table::new(&[
        ">CURSOR",
        ">HEIGHT",
        "TIME",
        "KIND",
        "FROM",
        "CLIENT",
        ">AMOUNT_RUB",
        ">SWEPT_RUB",
        ">SWEPT_KOPECKS",
        "TX_ID",
    ]);
    for r in entries {
        let swept = swept_of(r);
        t.push(vec![
            r.cursor.to_string(),
            r.height.to_string(),
            cli::time_text(r.timestamp_ms),
            r.kind.clone(),
            cli::addr(r.from),
            cli::addr(r.to),
            format_rubles(r.amount),
            format_rubles(swept),
            swept.to_string(),
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
        Cmd::FreezeReceiveOnly { account } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key().await?;
            cli::confirm(
                ctx.yes,
                &format!(
                    "Freeze the wallet {} for payments? It will receive but not pay until unfrozen.",
                    Address(account)
                ),
            )?;
            let p = ctx.bank.freeze_receive_only(&key, account).await?;
            ctx.done(
                "freeze-receive-only",
                account,
                &p,
                format!("froze {} for payments (it still receives)", Address(account)),
                json!({}),
            );
        }
        Cmd::Fraud { cmd } => {
            let (account, flag) = match cmd {
                FraudCmd::Flag { account } => (account, true),
                FraudCmd::Unflag { account } => (account, false),
            };
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key().await?;
            let p = if flag {
                ctx.bank.flag_fraud(&key, account).await?
            } else {
                ctx.bank.unflag_fraud(&key, account).await?
            };
            ctx.done(
                if flag { "fraud flag" } else { "fraud unflag" },
                account,
                &p,
                if flag {
                    format!(
                        "put {} on the fraud registry: payments to it are held",
                        Address(account)
                    )
                } else {
                    format!("took {} off the fraud registry", Address(account))
                },
                json!({"flagged": flag}),
            );
        }
        Cmd::Held {
            cmd: HeldCmd::List { account, csv },
        } => {
            let account = account
                .as_deref()
                .map(|a| cli::parse_account(a, "--account"))
                .transpose()?;
            let list = ctx.bank.held_payments(account).await?;
            cli::print_held(&list, ctx.json, *csv);
        }
        Cmd::Held {
            cmd: HeldCmd::Release { payment_id },
        } => {
            let payment = cli::parse_tx_id(payment_id, "PAYMENT_ID")?;
            let key = ctx.key().await?;
            let p = ctx.bank.release_payment(&key, payment).await?;
            ctx.done_op(
                "held release",
                &p,
                format!("released payment {payment}"),
                json!({"payment_id": payment.to_hex()}),
            );
        }
        Cmd::Held {
            cmd: HeldCmd::Void { payment_id },
        } => {
            let payment = cli::parse_tx_id(payment_id, "PAYMENT_ID")?;
            let key = ctx.key().await?;
            let p = ctx.bank.void_payment(&key, payment).await?;
            ctx.done_op(
                "held void",
                &p,
                format!("voided payment {payment}; its funds are spendable again"),
                json!({"payment_id": payment.to_hex()}),
            );
        }
        Cmd::Collect {
            debtor,
            claimant,
            amount,
        } => {
            let debtor = cli::parse_account(debtor, "--debtor")?;
            let claimant = cli::parse_account(claimant, "--claimant")?;
            let kopecks = cli::parse_amount(amount, "--amount")?;
            let key = ctx.key().await?;
            cli::confirm(
                ctx.yes,
                &format!(
                    "Collect up to {} ₽ from {} for {}?",
                    format_rubles(kopecks),
                    Address(debtor),
                    Address(claimant)
                ),
            )?;
            let p = ctx.bank.collect(&key, debtor, claimant, kopecks).await?;
            let got = p.collected().unwrap_or(0);
            ctx.done(
                "collect",
                debtor,
                &p,
                format!(
                    "collected {} ₽ of {} ₽ from {} for {}",
                    format_rubles(got),
                    format_rubles(kopecks),
                    Address(debtor),
                    Address(claimant)
                ),
                json!({"claimant": claimant.to_hex(), "amount": format_rubles(kopecks), "amount_kopecks": kopecks,
                       "collected": format_rubles(got), "collected_kopecks": got}),
            );
        }
        Cmd::SetCategory { account, category } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key().await?;
            let p = ctx.bank.set_category(&key, account, *category).await?;
            ctx.done(
                "set-category",
                account,
                &p,
                if *category == 0 {
                    format!("{} has no payee category now", Address(account))
                } else {
                    format!("{} is in payee category {category}", Address(account))
                },
                json!({"category": category}),
            );
        }
        Cmd::Sweep { state, account } => {
            let account = cli::parse_account(account, "--account")?;
            let on = *state == OnOff::On;
            let key = ctx.key().await?;
            let p = ctx.bank.set_sweep(&key, account, on).await?;
            ctx.done(
                "sweep",
                account,
                &p,
                if on {
                    format!(
                        "sweep on for {}: credits past its balance cap go to this bank's settlement account",
                        Address(account)
                    )
                } else {
                    format!(
                        "sweep off for {}: credits past its balance cap are refused",
                        Address(account)
                    )
                },
                json!({"sweep": on}),
            );
        }
        Cmd::SetTier { account, tier } => {
            let account = cli::parse_account(account, "--account")?;
            let tier = tier.tier();
            let key = ctx.key().await?;
            let p = ctx.bank.set_tier(&key, account, tier).await?;
            ctx.done(
                "set-tier",
                account,
                &p,
                format!("{} is in the {} tier now", Address(account), tier.as_str()),
                json!({"tier": tier.as_str()}),
            );
        }
        Cmd::RotateKey { account, new_key } => {
            let account = cli::parse_account(account, "--account")?;
            let new_key = cli::parse_account(new_key, "--new-key")?;
            let key = ctx.key().await?;
            cli::confirm(
                ctx.yes,
                &format!(
                    "Rotate the key of {} to {}? The current key will no longer sign for it.",
                    Address(account),
                    new_key.to_hex()
                ),
            )?;
            let p = ctx.bank.rotate_key(&key, account, new_key).await?;
            ctx.done(
                "rotate-key",
                account,
                &p,
                format!(
                    "{} is controlled by {} now; the client signs with it and names the account (ruble-wallet --account {})",
                    Address(account),
                    new_key.to_hex(),
                    Address(account)
                ),
                json!({"new_key": new_key.to_hex()}),
            );
        }
        Cmd::Signatories {
            account,
            min_amount,
            required,
            keys,
            clear,
        } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key().await?;
            if *clear {
                let p = ctx.bank.clear_signatories(&key, account).await?;
                ctx.done(
                    "signatories",
                    account,
                    &p,
                    format!("{} has no signatories now", Address(account)),
                    json!({"cleared": true}),
                );
            } else {
                let min = cli::parse_amount(min_amount.as_deref().unwrap_or_default(), "--min-amount")?;
                let required = required.unwrap_or_default();
                let keys = keys
                    .iter()
                    .map(|k| cli::parse_account(k, "--signatory"))
                    .collect::<Result<Vec<_>, _>>()?;
                if keys.len() > ruble_domain::codec::MAX_RULE_LIST {
                    return Err(cli::usage(format!(
                        "{} signatory keys; at most {}",
                        keys.len(),
                        ruble_domain::codec::MAX_RULE_LIST
                    )));
                }
                let n = keys.len();
                let p = ctx
                    .bank
                    .set_signatories(&key, account, min, required, keys.clone())
                    .await?;
                ctx.done(
                    "signatories",
                    account,
                    &p,
                    format!(
                        "payments of {} ₽ or more from {} need {required} of {n} signatories",
                        format_rubles(min),
                        Address(account)
                    ),
                    json!({"min_amount": format_rubles(min), "min_amount_kopecks": min, "required": required,
                           "keys": keys.iter().map(|k| k.to_hex()).collect::<Vec<_>>()}),
                );
            }
        }
        Cmd::Sweeps {
            cursor,
            limit,
            all,
            csv,
        } => {
            let page = if *all {
                ctx.bank.sweeps_all(*cursor).await?
            } else {
                ctx.bank.sweeps(*cursor, *limit).await?
            };
            if ctx.json {
                let entries: Vec<Value> = page.entries.iter().map(cli::record_json).collect();
                println!(
                    "{}",
                    json!({"ok": true, "entries": entries, "next_cursor": page.next_cursor, "more": page.more})
                );
            } else {
                let t = sweeps_table(&page.entries);
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
        Cmd::Purposes { csv } => {
            let list = ctx.bank.purposes().await?;
            if ctx.json {
                let purposes: Vec<Value> = list.iter().map(cli::purpose_json).collect();
                println!("{}", json!({"ok": true, "count": purposes.len(), "purposes": purposes}));
            } else {
                let t = cli::purposes_table(&list, ctx.bank.client().central_bank());
                print!("{}", if *csv { t.csv() } else { t.text() });
            }
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ruble-bank").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn control_commands_parse() {
        let id = "ab".repeat(32);
        assert!(matches!(
            parse(&["held", "list"]).unwrap().cmd,
            Cmd::Held {
                cmd: HeldCmd::List { account: None, .. }
            }
        ));
        assert!(matches!(
            parse(&["held", "release", &id]).unwrap().cmd,
            Cmd::Held {
                cmd: HeldCmd::Release { .. }
            }
        ));
        assert!(matches!(
            parse(&["sweep", "on", "--account", "x"]).unwrap().cmd,
            Cmd::Sweep { state: OnOff::On, .. }
        ));
        assert!(parse(&["sweep", "maybe", "--account", "x"]).is_err());
        assert!(matches!(
            parse(&["set-tier", "--account", "x", "--tier", "anonymous"])
                .unwrap()
                .cmd,
            Cmd::SetTier {
                tier: TierArg::Anonymous,
                ..
            }
        ));
        assert!(parse(&["set-category", "--account", "x", "--category", "70000"]).is_err());
        assert!(matches!(
            parse(&["fraud", "unflag", "--account", "x"]).unwrap().cmd,
            Cmd::Fraud {
                cmd: FraudCmd::Unflag { .. }
            }
        ));
        let c = parse(&[
            "signatories",
            "--account",
            "x",
            "--min-amount",
            "1000",
            "--required",
            "2",
            "--signatory",
            "a",
            "--signatory",
            "b",
        ])
        .unwrap();
        assert!(matches!(c.cmd, Cmd::Signatories { ref keys, required: Some(2), clear: false, .. } if keys.len() == 2));
        assert!(matches!(
            parse(&["signatories", "--account", "x", "--clear"]).unwrap().cmd,
            Cmd::Signatories { clear: true, .. }
        ));
        // A rule needs all its parts; --clear takes none of them.
        assert!(parse(&["signatories", "--account", "x", "--required", "2"]).is_err());
        assert!(parse(&["signatories", "--account", "x", "--clear", "--required", "2"]).is_err());
        assert!(parse(&["rotate-key", "--account", "x", "--new-key", "y"]).is_ok());
        assert!(parse(&["sweeps", "--cursor", "5", "--all", "--csv"]).is_ok());
        assert!(parse(&["collect", "--debtor", "x", "--claimant", "y", "--amount", "1"]).is_ok());
    }
}
