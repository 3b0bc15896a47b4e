//! `ruble-admin`: the central bank's command line.
//!
//! Every command signs with the central bank's key and talks to
//! `CentralBankService` over mutual TLS with the central-bank certificate.
//! Tables for people, `--json` for scripts, `--csv` for tabular commands.
//! Exit codes: 0 success, 1 usage or local error (an unconfirmed drastic step
//! included), 2 refused by the ledger or the node (the reason is in the
//! output), 3 node unreachable, 4 key or certificate problem.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use ruble_wallet::cli::{self, Bound, Conn, Failure, Table};
use ruble_wallet::{
    format_rubles, AccountFilter, AccountId, AccountKind, AccountStatus, Address, AdminClient, ClusterStatus,
    Credentials, Limits, Payment, Phase, Purpose, Supply, Tier, WalletKey,
};
use serde_json::{json, Value};

const EXAMPLES: &str = "\
Examples:
  ruble-admin --dev-dir dev-data supply
  ruble-admin --dev-dir dev-data issue --bank alfa-dev-bank --amount 1000000
  ruble-admin --network-dir /srv/ruble freeze --account rub1… --yes
  ruble-admin --dev-dir dev-data report --since 2026-03-01T00:00:00Z --json
  ruble-admin --dev-dir dev-data --endpoint https://127.0.0.1:50052 cluster status --json
  ruble-admin --dev-dir dev-data controls set --hold-threshold 100000 --hold-window 48h --yes
  ruble-admin --dev-dir dev-data purpose define --id 7 --category 5411 --expires-at +30d
  ruble-admin --dev-dir dev-data issue-tagged --to rub1… --amount 5000 --purpose 7
  ruble-admin --dev-dir dev-data held list

Connection: --dev-dir DIR (a `ruble-node dev` directory), --network-dir DIR (a
`ruble-node init` directory), or --endpoint, --ca, --cert, --cert-key and --key.
An encrypted key's passphrase: --passphrase-file FILE, else RUBLE_CB_PASSPHRASE,
else asked for on the terminal.
Exit codes: 0 ok, 1 usage, 2 refused (reason in the output), 3 node unreachable,
4 key or certificate problem.";

#[derive(Parser, Debug)]
#[command(
    name = "ruble-admin",
    version,
    about = "Central bank operations: issue and redeem, banks, phase, limits, freezes, controls (holds, fraud registry, collection, tiers, purpose-bound money), supply and reports",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    /// A `ruble-node init --dir DIR` directory: node.toml, pki/, central-bank-key.json.
    #[arg(
        long,
        global = true,
        env = "RUBLE_NETWORK_DIR",
        help_heading = "Connection and output"
    )]
    network_dir: Option<PathBuf>,
    #[command(flatten)]
    pass: cli::PassphraseArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Mint rubles into a bank's settlement account.
    #[command(
        after_help = "Example:\n  ruble-admin --dev-dir dev-data issue --bank alfa-dev-bank --amount 1000000.00"
    )]
    Issue {
        /// The bank: rub1…, 64 hex characters, or its name.
        #[arg(long)]
        bank: String,
        /// Rubles, exact to the kopeck (e.g. 1000000 or 1250.50).
        #[arg(long)]
        amount: String,
    },
    /// Take rubles out of a bank's settlement account and out of circulation (asks first).
    #[command(
        after_help = "Example:\n  ruble-admin --dev-dir dev-data redeem --bank alfa-dev-bank --amount 5000 --yes"
    )]
    Redeem {
        /// The bank: rub1…, 64 hex characters, or its name.
        #[arg(long)]
        bank: String,
        /// Rubles, exact to the kopeck.
        #[arg(long)]
        amount: String,
    },
    /// Admit a new bank (opening its settlement account) or reinstate a suspended one.
    #[command(
        after_help = "Example:\n  ruble-admin --dev-dir dev-data admit-bank --bank rub1… --name gamma-bank\n\nThe bank also needs a client certificate from the node's CA (ruble-node pki issue-bank)."
    )]
    AdmitBank {
        /// The bank's public key: rub1… or 64 hex characters.
        #[arg(long)]
        bank: String,
        /// Its name (at most 64 bytes).
        #[arg(long)]
        name: String,
    },
    /// Suspend a bank: it can no longer act until admitted again (asks first).
    #[command(after_help = "Example:\n  ruble-admin --dev-dir dev-data suspend-bank --bank beta-dev-bank --yes")]
    SuspendBank {
        /// The bank: rub1…, 64 hex characters, or its name.
        #[arg(long)]
        bank: String,
    },
    /// Show the rollout phase, or move it forward (`phase retail`, asks first; it never goes back).
    #[command(
        after_help = "Examples:\n  ruble-admin --dev-dir dev-data phase\n  ruble-admin --dev-dir dev-data phase retail --yes"
    )]
    Phase {
        /// The phase to move to.
        phase: Option<PhaseArg>,
    },
    /// Show or set the balance, payment and daily caps of an account kind.
    #[command(
        after_help = "Examples:\n  ruble-admin --dev-dir dev-data limits show --csv\n  ruble-admin --dev-dir dev-data limits set --kind retail --payment-cap 50000 --yes"
    )]
    Limits {
        #[command(subcommand)]
        cmd: LimitsCmd,
    },
    /// Show or set the large-payment reporting threshold (0 turns flagging off).
    #[command(
        after_help = "Examples:\n  ruble-admin --dev-dir dev-data threshold\n  ruble-admin --dev-dir dev-data threshold --amount 600000"
    )]
    Threshold {
        /// Rubles; payments of at least this much are flagged large.
        #[arg(long)]
        amount: Option<String>,
    },
    /// Freeze any account: it neither pays nor receives until unfrozen (asks first).
    #[command(after_help = "Example:\n  ruble-admin --dev-dir dev-data freeze --account rub1… --yes")]
    Freeze {
        /// rub1… or 64 hex characters.
        #[arg(long)]
        account: String,
    },
    /// Unfreeze an account.
    #[command(after_help = "Example:\n  ruble-admin --dev-dir dev-data unfreeze --account rub1…")]
    Unfreeze {
        /// rub1… or 64 hex characters.
        #[arg(long)]
        account: String,
    },
    /// Freeze any account for payments only: it may still receive (asks first). `unfreeze` lifts it.
    #[command(after_help = "Example:\n  ruble-admin --dev-dir dev-data freeze-receive-only --account rub1… --yes")]
    FreezeReceiveOnly {
        /// rub1… or 64 hex characters.
        #[arg(long)]
        account: String,
    },
    /// Show or set the anti-fraud hold rule and the collection floor (and see the tier limits).
    #[command(
        after_help = "Examples:\n  ruble-admin --dev-dir dev-data controls show\n  ruble-admin --dev-dir dev-data controls set --hold-threshold 100000 --hold-window 48h --protected-minimum 1000 --yes\n  ruble-admin --dev-dir dev-data controls set --hold-threshold 0 --yes   # the new-payee rule off"
    )]
    Controls {
        #[command(subcommand)]
        cmd: ControlsCmd,
    },
    /// Set the caps of an identification tier below full (asks first); caps not given keep their value.
    #[command(
        after_help = "Example:\n  ruble-admin --dev-dir dev-data tier-limits --tier anonymous --balance-cap 15000 --payment-cap 15000 --daily-cap 15000 --yes\n\nThe full tier has the retail kind's limits: `limits set --kind retail`.\n`controls show` lists every tier's."
    )]
    TierLimits {
        #[arg(long, value_enum)]
        tier: TierLimitArg,
        /// Largest balance after a credit: rubles or `unlimited`.
        #[arg(long)]
        balance_cap: Option<String>,
        /// Largest single outgoing payment: rubles or `unlimited`.
        #[arg(long)]
        payment_cap: Option<String>,
        /// Largest sum of outgoing payments per UTC day: rubles or `unlimited`.
        #[arg(long)]
        daily_cap: Option<String>,
    },
    /// Purposes for tagged money: define one, list them.
    #[command(after_help = PURPOSE_HELP)]
    Purpose {
        #[command(subcommand)]
        cmd: PurposeCmd,
    },
    /// Issue purpose-bound money (new money) to a business or retail wallet.
    #[command(
        after_help = "Example:\n  ruble-admin --dev-dir dev-data issue-tagged --to rub1… --amount 5000 --purpose 7\n\nThe purpose's issuer must be the central bank (`purpose define --issuer cb`)."
    )]
    IssueTagged {
        /// The payee: rub1… or 64 hex characters.
        #[arg(long)]
        to: String,
        /// Rubles, exact to the kopeck.
        #[arg(long)]
        amount: String,
        /// The purpose id.
        #[arg(long)]
        purpose: u32,
    },
    /// The fraud registry: flag or unflag an account (payments to it are held), list it.
    #[command(
        after_help = "Examples:\n  ruble-admin --dev-dir dev-data fraud flag --account rub1…\n  ruble-admin --dev-dir dev-data fraud unflag --account rub1…\n  ruble-admin --dev-dir dev-data fraud list --csv"
    )]
    Fraud {
        #[command(subcommand)]
        cmd: FraudCmd,
    },
    /// Held payments: list them, release one (it executes) or void one.
    #[command(
        after_help = "Examples:\n  ruble-admin --dev-dir dev-data held list\n  ruble-admin --dev-dir dev-data held list --account rub1… --json\n  ruble-admin --dev-dir dev-data held release 3f9a…(64 hex)\n  ruble-admin --dev-dir dev-data held void 3f9a…(64 hex)\n\nA payment waiting for signatures (kind signatures) cannot be released: its\nsignatories approve it (`ruble-wallet confirm`)."
    )]
    Held {
        #[command(subcommand)]
        cmd: HeldCmd,
    },
    /// Court-ordered collection from any client account: up to AMOUNT of its
    /// free funds above the protected minimum go to the claimant (asks first).
    #[command(
        after_help = "Example:\n  ruble-admin --dev-dir dev-data collect --debtor rub1… --claimant rub1… --amount 15000 --yes\n\nWorks on frozen accounts too; purpose-bound funds are never collected. The\nreceipt says how much was collected (NOTHING_COLLECTABLE if nothing)."
    )]
    Collect {
        /// The account that owes: rub1… or 64 hex characters.
        #[arg(long)]
        debtor: String,
        /// Who receives the funds: rub1… or 64 hex characters.
        #[arg(long)]
        claimant: String,
        /// Rubles, at most this much.
        #[arg(long)]
        amount: String,
    },
    /// Any account: balance, status, bank, limits.
    #[command(after_help = "Example:\n  ruble-admin --dev-dir dev-data account --account rub1…")]
    Account {
        /// rub1… or 64 hex characters.
        #[arg(long)]
        account: String,
    },
    /// List accounts in id order, optionally by status and bank (ListAccounts).
    #[command(after_help = "Example:\n  ruble-admin --dev-dir dev-data accounts --status frozen --csv")]
    Accounts {
        /// Only accounts with this status.
        #[arg(long)]
        status: Option<StatusArg>,
        /// Only accounts this bank services: rub1…, hex, or its name.
        #[arg(long)]
        bank: Option<String>,
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Issued, redeemed, in circulation, and each bank's settlement and client balances.
    #[command(after_help = "Example:\n  ruble-admin --dev-dir dev-data supply --csv")]
    Supply {
        /// Print the per-bank table as CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Payments at or above the reporting threshold, oldest first; --follow for live ones.
    #[command(
        after_help = "Examples:\n  ruble-admin --dev-dir dev-data large-payments --from-height 100 --csv\n  ruble-admin --dev-dir dev-data large-payments --follow --json\n\nWithout --follow it lists what is committed up to the current head (read first)\nand exits when the node has sent all of it."
    )]
    LargePayments {
        /// Start at this block height.
        #[arg(long, default_value_t = 1)]
        from_height: u64,
        /// Keep printing new large payments as they commit.
        #[arg(long)]
        follow: bool,
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// A report for a period: supply per bank, large payments, frozen accounts.
    #[command(
        after_help = "Examples:\n  ruble-admin --dev-dir dev-data report --since 2026-03-01T00:00:00+03:00 --until 2026-03-31T23:59:59+03:00\n  ruble-admin --dev-dir dev-data report --since 100 --until 200 --json\n  ruble-admin --dev-dir dev-data report --csv --section large-payments\n\nThe period (both ends included) selects the large payments; supply and frozen\naccounts are as of the current head."
    )]
    Report {
        /// Start: a block height or an RFC 3339 time (default: the first block).
        #[arg(long)]
        since: Option<String>,
        /// End: a block height or an RFC 3339 time (default: the head).
        #[arg(long)]
        until: Option<String>,
        /// Only these sections (repeatable; default all three).
        #[arg(long, value_enum)]
        section: Vec<Section>,
        /// Print CSV: each section as its own CSV after a `# section` line.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// The replicas of a replicated ledger: their status, adding and removing one.
    #[command(after_help = CLUSTER_HELP)]
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
}

const CLUSTER_HELP: &str = "\
Examples:
  ruble-admin --dev-dir dev-data cluster status
  ruble-admin --dev-dir dev-data --endpoint https://127.0.0.1:50052 cluster status --json
  ruble-admin --dev-dir dev-data cluster add --id 4 --raft 127.0.0.1:50164 --client https://127.0.0.1:50054
  ruble-admin --dev-dir dev-data cluster remove --id 4 --yes

`status` asks the node --endpoint names (else the directory's endpoint) and
shows its own view; it never goes to another replica. `add` and `remove` go to
the leader. A single node answers NOT_REPLICATED (exit 2).";

const PURPOSE_HELP: &str = "\
Examples:
  ruble-admin --dev-dir dev-data purpose define --id 7 --payee rub1… --category 5411 --expires-at 2026-12-31T23:59:59Z
  ruble-admin --dev-dir dev-data purpose define --id 8 --issuer rub1…(a budget payer) --category 8211 --unlock-at +1d --expires-at +90d
  ruble-admin --dev-dir dev-data purpose list --csv

Times: RFC 3339 (2026-03-01T00:00:00Z), a date (2026-03-01), Unix ms, or +DURATION
from now (+2d, +12h). Tagged funds may pay only the listed payees or payees of the
listed categories (set by their banks), from --unlock-at until --expires-at; what
is left then returns to the issuer (the central bank's is destroyed).";

#[derive(Subcommand, Debug)]
enum ControlsCmd {
    /// The hold rule, hold window, protected minimum and every tier's limits.
    Show,
    /// Set the hold rule and the collection floor; values not given keep theirs (asks first).
    Set {
        /// Rubles: payments of at least this to a new payee are held (0 turns the rule off).
        #[arg(long)]
        hold_threshold: Option<String>,
        /// How long a held payment waits: 48h, 2d, 90min, or milliseconds (at most 7 days).
        #[arg(long, value_name = "DURATION|MS")]
        hold_window: Option<String>,
        /// Rubles collection leaves in a wallet.
        #[arg(long)]
        protected_minimum: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum PurposeCmd {
    /// Define a purpose (its id must be new).
    Define {
        /// The purpose id (a number).
        #[arg(long)]
        id: u32,
        /// Who pays it out and gets unspent funds back: `cb` (the central
        /// bank: new money, destroyed at expiry) or a business or settlement
        /// account, rub1… or 64 hex characters.
        #[arg(long, default_value = "cb")]
        issuer: String,
        /// An allowed payee, rub1… or 64 hex characters; repeat, at most 8.
        #[arg(long = "payee", value_name = "ACCOUNT")]
        payees: Vec<String>,
        /// An allowed payee category (1..65535, set by banks); repeat, at most 8.
        #[arg(long = "category", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        categories: Vec<u16>,
        /// Not spendable before this time (default: at once).
        #[arg(long, value_name = "TIME")]
        unlock_at: Option<String>,
        /// Unspent funds return to the issuer at this time.
        #[arg(long, value_name = "TIME")]
        expires_at: String,
    },
    /// Every defined purpose.
    List {
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FraudCmd {
    /// Put a business or retail account on the registry: payments to it are held.
    Flag {
        #[arg(long)]
        account: String,
    },
    /// Take an account off the registry (whoever reported it).
    Unflag {
        #[arg(long)]
        account: String,
    },
    /// The registry: each account and who reported it.
    List {
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
}

#[derive(Subcommand, Debug)]
enum HeldCmd {
    /// Held payments: all, or those of one account (as payer or payee).
    List {
        /// Only this account's: rub1… or 64 hex characters.
        #[arg(long)]
        account: Option<String>,
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Release a payment held by the anti-fraud rules: it executes.
    Release {
        /// The payment id (64 hex characters).
        payment_id: String,
    },
    /// Void a held payment: its funds are spendable again.
    Void {
        /// The payment id (64 hex characters).
        payment_id: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TierLimitArg {
    Anonymous,
    Simplified,
}

impl TierLimitArg {
    fn tier(self) -> Tier {
        match self {
            TierLimitArg::Anonymous => Tier::Anonymous,
            TierLimitArg::Simplified => Tier::Simplified,
        }
    }
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// This node's view of the cluster: its id, the leader, term, applied
    /// height and hashes, and every member with its role.
    Status,
    /// Add a replica: a learner first, brought up to date by the leader,
    /// then a voter (unless --learner-only).
    #[command(
        after_help = "The new replica must be running already: `ruble-node run` with a [cluster]\nsection of its own (node_id = ID, bootstrap = false, a node certificate from\n`ruble-node pki issue-peer`) and the chain's genesis; it starts with an empty\nreplication log. The call waits until it has caught up, at least 60 s or\n--timeout if longer: a replica still catching up then is refused\nREPLICA_CATCH_UP_TIMEOUT (exit 2) and stays a learner; the same command again\npromotes it once it caught up."
    )]
    Add {
        /// The new replica's node id (not 0, not a member's).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Its replication address, HOST:PORT (its [cluster] raft_listen as
        /// the other replicas reach it).
        #[arg(long, value_name = "HOST:PORT")]
        raft: String,
        /// Its client endpoint, https://HOST:PORT.
        #[arg(long, value_name = "https://HOST:PORT")]
        client: String,
        /// Leave it a learner: it receives every block but neither votes nor
        /// counts for the quorum.
        #[arg(long)]
        learner_only: bool,
    },
    /// Remove a replica, voter or learner, from the membership (asks first);
    /// then stop its process.
    Remove {
        /// The member's node id.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
enum LimitsCmd {
    /// The caps of each account kind.
    Show {
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Set the caps of one kind; caps not given keep their current value (asks first).
    Set {
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Largest balance after a credit: rubles or `unlimited`.
        #[arg(long)]
        balance_cap: Option<String>,
        /// Largest single outgoing payment: rubles or `unlimited`.
        #[arg(long)]
        payment_cap: Option<String>,
        /// Largest sum of outgoing payments per UTC day: rubles or `unlimited`.
        #[arg(long)]
        daily_cap: Option<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PhaseArg {
    Business,
    Retail,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum KindArg {
    Business,
    Retail,
    Settlement,
}

impl KindArg {
    fn kind(self) -> AccountKind {
        match self {
            KindArg::Business => AccountKind::Business,
            KindArg::Retail => AccountKind::Retail,
            KindArg::Settlement => AccountKind::Settlement,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum StatusArg {
    Active,
    Frozen,
    Closed,
    /// Under a receive-only freeze.
    ReceiveOnly,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Supply,
    LargePayments,
    Frozen,
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
    let base = match (&cli.conn.dev_dir, &cli.network_dir) {
        (Some(_), Some(_)) => return Err(cli::usage("give --dev-dir or --network-dir, not both")),
        (Some(d), None) => Credentials::dev_central_bank(d)?,
        (None, Some(d)) => Credentials::network_central_bank(d)?,
        (None, None) => Credentials::default(),
    };
    Ok(cli.conn.explicit().or(base))
}

struct Ctx {
    admin: AdminClient,
    creds: Credentials,
    pass: cli::Passphrase,
    json: bool,
    yes: bool,
}

impl Ctx {
    /// The central bank's signing key, checked against the chain.
    fn key(&self) -> Result<WalletKey, Failure> {
        let key = cli::load_key(
            self.creds.key.as_deref(),
            "no signing key: give --key FILE (or --dev-dir / --network-dir)",
            &self.pass,
        )?;
        self.admin.check_key(&key)?;
        Ok(key)
    }

    fn confirm(&self, question: &str) -> Result<(), Failure> {
        cli::confirm(self.yes, question)
    }

    /// A bank by address or by name. Names are not unique in the ledger: a
    /// name that more than one bank has is refused, listing their addresses.
    async fn bank(&self, s: &str) -> Result<(AccountId, String), Failure> {
        let supply = self.admin.supply().await?;
        if let Ok(a) = s.parse::<Address>() {
            let name = supply
                .banks
                .iter()
                .find(|b| b.bank == a.0)
                .map(|b| b.name.clone())
                .unwrap_or_default();
            return Ok((a.0, name));
        }
        let named: Vec<_> = supply.banks.iter().filter(|b| b.name == s).collect();
        match named.as_slice() {
            [b] => Ok((b.bank, b.name.clone())),
            [] => Err(cli::usage(format!(
                "--bank {s:?}: not an address (rub1… or 64 hex characters) nor a bank's name ({})",
                supply
                    .banks
                    .iter()
                    .map(|b| format!("{:?}", b.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            many => Err(cli::fail(
                cli::EXIT_USAGE,
                "AMBIGUOUS_BANK",
                format!(
                    "--bank {s:?}: {} banks have that name ({}); give the bank's address instead; nothing was done",
                    many.len(),
                    many.iter()
                        .map(|b| Address(b.bank).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// Prints the outcome of an operation.
    fn done(&self, command: &str, p: &Payment, human: String, mut fields: Value) {
        if self.json {
            let mut v = json!({"ok": true, "command": command});
            v.as_object_mut().unwrap().append(fields.as_object_mut().unwrap());
            v.as_object_mut()
                .unwrap()
                .append(cli::payment_json(p).as_object_mut().unwrap());
            println!("{v}");
        } else {
            println!("{human}");
            println!("{}", cli::committed_text(p));
        }
    }
}

fn bank_label(id: AccountId, name: &str) -> String {
    if name.is_empty() {
        Address(id).to_string()
    } else {
        format!("{} ({})", cli::printable(name), Address(id))
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let creds = credentials(&cli)?;
    let mut builder = cli.conn.builder(&creds)?;
    if matches!(
        cli.cmd,
        Cmd::Cluster {
            cmd: ClusterCmd::Status
        }
    ) {
        // The status is the named node's own view: never another replica's.
        builder = builder.replicas(Vec::<String>::new());
    }
    let admin = AdminClient::connect(builder).await?;
    let ctx = Ctx {
        admin,
        creds,
        pass: cli.pass.with_env("RUBLE_CB_PASSPHRASE"),
        json: cli.conn.json,
        yes: cli.conn.yes,
    };
    match &cli.cmd {
        Cmd::Issue { bank, amount } => {
            let kopecks = cli::parse_amount(amount, "--amount")?;
            let (bank, name) = ctx.bank(bank).await?;
            let key = ctx.key()?;
            let p = ctx.admin.issue(&key, bank, kopecks).await?;
            ctx.done(
                "issue",
                &p,
                format!("issued {} ₽ to {}", format_rubles(kopecks), bank_label(bank, &name)),
                json!({"bank": bank.to_hex(), "bank_address": Address(bank).to_string(), "amount": format_rubles(kopecks), "amount_kopecks": kopecks}),
            );
        }
        Cmd::Redeem { bank, amount } => {
            let kopecks = cli::parse_amount(amount, "--amount")?;
            let (bank, name) = ctx.bank(bank).await?;
            let key = ctx.key()?;
            ctx.confirm(&format!(
                "Redeem {} ₽ from {}? The money leaves circulation.",
                format_rubles(kopecks),
                bank_label(bank, &name)
            ))?;
            let p = ctx.admin.redeem(&key, bank, kopecks).await?;
            ctx.done(
                "redeem",
                &p,
                format!("redeemed {} ₽ from {}", format_rubles(kopecks), bank_label(bank, &name)),
                json!({"bank": bank.to_hex(), "bank_address": Address(bank).to_string(), "amount": format_rubles(kopecks), "amount_kopecks": kopecks}),
            );
        }
        Cmd::AdmitBank { bank, name } => {
            let bank = cli::parse_account(bank, "--bank")?;
            let key = ctx.key()?;
            let p = ctx.admin.admit_bank(&key, bank, name).await?;
            ctx.done(
                "admit-bank",
                &p,
                format!("admitted {}", bank_label(bank, name)),
                json!({"bank": bank.to_hex(), "bank_address": Address(bank).to_string(), "name": name}),
            );
        }
        Cmd::SuspendBank { bank } => {
            let (bank, name) = ctx.bank(bank).await?;
            let key = ctx.key()?;
            ctx.confirm(&format!(
                "Suspend {}? It can no longer act until admitted again.",
                bank_label(bank, &name)
            ))?;
            let p = ctx.admin.suspend_bank(&key, bank).await?;
            ctx.done(
                "suspend-bank",
                &p,
                format!("suspended {}", bank_label(bank, &name)),
                json!({"bank": bank.to_hex(), "bank_address": Address(bank).to_string(), "name": name}),
            );
        }
        Cmd::Phase { phase: None } => {
            let info = ctx.admin.client().chain_info().await?;
            let phase = u8::try_from(info.phase)
                .ok()
                .and_then(Phase::from_u8)
                .map_or("unknown", |p| p.as_str());
            if ctx.json {
                println!("{}", json!({"ok": true, "phase": phase, "height": info.height}));
            } else {
                println!("phase: {phase}");
            }
        }
        Cmd::Phase { phase: Some(p) } => {
            let phase = match p {
                PhaseArg::Business => Phase::Business,
                PhaseArg::Retail => Phase::Retail,
            };
            let key = ctx.key()?;
            let effect = match phase {
                Phase::Business => "Banks may open business wallets only, no retail ones",
                Phase::Retail => "Banks may then open retail wallets for the public",
            };
            ctx.confirm(&format!(
                "Move the rollout phase to {}? {effect}; the phase never goes back.",
                phase.as_str()
            ))?;
            let p = ctx.admin.set_phase(&key, phase).await?;
            ctx.done(
                "phase",
                &p,
                format!("phase is now {}", phase.as_str()),
                json!({"phase": phase.as_str()}),
            );
        }
        Cmd::Limits {
            cmd: LimitsCmd::Show { csv },
        } => {
            let l = ctx.admin.limits().await?;
            let kinds = [AccountKind::Settlement, AccountKind::Business, AccountKind::Retail];
            if ctx.json {
                let mut m = serde_json::Map::new();
                for k in kinds {
                    m.insert(k.as_str().into(), l.of(k).map_or(Value::Null, |l| cli::limits_json(&l)));
                }
                println!("{}", json!({"ok": true, "limits": m}));
            } else {
                let mut t = Table::new(&[
                    "KIND",
                    ">BALANCE_CAP_RUB",
                    ">PAYMENT_CAP_RUB",
                    ">DAILY_CAP_RUB",
                    ">BALANCE_CAP_KOPECKS",
                    ">PAYMENT_CAP_KOPECKS",
                    ">DAILY_CAP_KOPECKS",
                ]);
                for k in kinds {
                    let Some(x) = l.of(k) else { continue };
                    t.push(vec![
                        k.as_str().into(),
                        cli::cap_text(x.balance_cap),
                        cli::cap_text(x.payment_cap),
                        cli::cap_text(x.daily_outflow_cap),
                        x.balance_cap.to_string(),
                        x.payment_cap.to_string(),
                        x.daily_outflow_cap.to_string(),
                    ]);
                }
                print!("{}", if *csv { t.csv() } else { t.text() });
            }
        }
        Cmd::Limits {
            cmd:
                LimitsCmd::Set {
                    kind,
                    balance_cap,
                    payment_cap,
                    daily_cap,
                },
        } => {
            let kind = kind.kind();
            let parse = |v: &Option<String>, flag: &str| v.as_deref().map(|s| cli::parse_cap(s, flag)).transpose();
            let (b, p, d) = (
                parse(balance_cap, "--balance-cap")?,
                parse(payment_cap, "--payment-cap")?,
                parse(daily_cap, "--daily-cap")?,
            );
            if b.is_none() && p.is_none() && d.is_none() {
                return Err(cli::usage(
                    "give at least one of --balance-cap, --payment-cap, --daily-cap",
                ));
            }
            let current = if let (Some(b), Some(p), Some(d)) = (b, p, d) {
                ctx.admin.limits().await?.of(kind).unwrap_or(Limits {
                    balance_cap: b,
                    payment_cap: p,
                    daily_outflow_cap: d,
                })
            } else {
                ctx.admin.limits().await?.of(kind).ok_or_else(|| {
                    cli::usage(format!(
                        "the current {} limits are unknown (no account of that kind): give all three caps",
                        kind.as_str()
                    ))
                })?
            };
            let new = Limits {
                balance_cap: b.unwrap_or(current.balance_cap),
                payment_cap: p.unwrap_or(current.payment_cap),
                daily_outflow_cap: d.unwrap_or(current.daily_outflow_cap),
            };
            let key = ctx.key()?;
            ctx.confirm(&format!(
                "Set the {} limits: {}; {}; {}?",
                kind.as_str(),
                change("balance cap", current.balance_cap, new.balance_cap),
                change("payment cap", current.payment_cap, new.payment_cap),
                change("daily cap", current.daily_outflow_cap, new.daily_outflow_cap)
            ))?;
            let p = ctx.admin.set_limits(&key, kind, new).await?;
            ctx.done(
                "limits set",
                &p,
                format!(
                    "{} limits: balance {} / payment {} / daily {}",
                    kind.as_str(),
                    cli::cap_text(new.balance_cap),
                    cli::cap_text(new.payment_cap),
                    cli::cap_text(new.daily_outflow_cap)
                ),
                json!({"kind": kind.as_str(), "limits": cli::limits_json(&new), "previous": cli::limits_json(&current)}),
            );
        }
        Cmd::Threshold { amount: None } => {
            let info = ctx.admin.client().chain_info().await?;
            let t = info.reporting_threshold;
            if ctx.json {
                println!(
                    "{}",
                    json!({"ok": true, "threshold": format_rubles(t), "threshold_kopecks": t, "off": t == 0})
                );
            } else if t == 0 {
                println!("reporting threshold: off");
            } else {
                println!("reporting threshold: {} ₽", format_rubles(t));
            }
        }
        Cmd::Threshold { amount: Some(a) } => {
            let kopecks = cli::parse_amount(a, "--amount")?;
            let key = ctx.key()?;
            let p = ctx.admin.set_reporting_threshold(&key, kopecks).await?;
            ctx.done(
                "threshold",
                &p,
                if kopecks == 0 {
                    "large-payment flagging is off".to_string()
                } else {
                    format!("payments of {} ₽ or more are flagged large", format_rubles(kopecks))
                },
                json!({"threshold": format_rubles(kopecks), "threshold_kopecks": kopecks}),
            );
        }
        Cmd::Freeze { account } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key()?;
            ctx.confirm(&format!(
                "Freeze account {}? It will neither pay nor receive until unfrozen.",
                Address(account)
            ))?;
            let p = ctx.admin.freeze(&key, account).await?;
            ctx.done(
                "freeze",
                &p,
                format!("froze {}", Address(account)),
                json!({"account": account.to_hex(), "address": Address(account).to_string()}),
            );
        }
        Cmd::Unfreeze { account } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key()?;
            let p = ctx.admin.unfreeze(&key, account).await?;
            ctx.done(
                "unfreeze",
                &p,
                format!("unfroze {}", Address(account)),
                json!({"account": account.to_hex(), "address": Address(account).to_string()}),
            );
        }
        Cmd::FreezeReceiveOnly { account } => {
            let account = cli::parse_account(account, "--account")?;
            let key = ctx.key()?;
            ctx.confirm(&format!(
                "Freeze account {} for payments? It will receive but not pay until unfrozen.",
                Address(account)
            ))?;
            let p = ctx.admin.freeze_receive_only(&key, account).await?;
            ctx.done(
                "freeze-receive-only",
                &p,
                format!("froze {} for payments (it still receives)", Address(account)),
                json!({"account": account.to_hex(), "address": Address(account).to_string()}),
            );
        }
        Cmd::Controls { cmd } => controls(&ctx, cmd).await?,
        Cmd::TierLimits {
            tier,
            balance_cap,
            payment_cap,
            daily_cap,
        } => {
            let tier = tier.tier();
            let parse = |v: &Option<String>, flag: &str| v.as_deref().map(|s| cli::parse_cap(s, flag)).transpose();
            let (b, p, d) = (
                parse(balance_cap, "--balance-cap")?,
                parse(payment_cap, "--payment-cap")?,
                parse(daily_cap, "--daily-cap")?,
            );
            if b.is_none() && p.is_none() && d.is_none() {
                return Err(cli::usage(
                    "give at least one of --balance-cap, --payment-cap, --daily-cap",
                ));
            }
            let current = ctx.admin.controls().await?.tier_limits(tier);
            let new = Limits {
                balance_cap: b.unwrap_or(current.balance_cap),
                payment_cap: p.unwrap_or(current.payment_cap),
                daily_outflow_cap: d.unwrap_or(current.daily_outflow_cap),
            };
            let key = ctx.key()?;
            ctx.confirm(&format!(
                "Set the {} tier's limits: {}; {}; {}?",
                tier.as_str(),
                change("balance cap", current.balance_cap, new.balance_cap),
                change("payment cap", current.payment_cap, new.payment_cap),
                change("daily cap", current.daily_outflow_cap, new.daily_outflow_cap)
            ))?;
            let p = ctx.admin.set_tier_limits(&key, tier, new).await?;
            ctx.done(
                "tier-limits",
                &p,
                format!(
                    "{} tier limits: balance {} / payment {} / daily {}",
                    tier.as_str(),
                    cli::cap_text(new.balance_cap),
                    cli::cap_text(new.payment_cap),
                    cli::cap_text(new.daily_outflow_cap)
                ),
                json!({"tier": tier.as_str(), "limits": cli::limits_json(&new), "previous": cli::limits_json(&current)}),
            );
        }
        Cmd::Purpose { cmd } => purpose(&ctx, cmd).await?,
        Cmd::IssueTagged { to, amount, purpose } => {
            let payee = cli::parse_account(to, "--to")?;
            let kopecks = cli::parse_amount(amount, "--amount")?;
            let key = ctx.key()?;
            let p = ctx.admin.issue_tagged(&key, payee, kopecks, *purpose).await?;
            ctx.done(
                "issue-tagged",
                &p,
                format!(
                    "issued {} ₽ of purpose {purpose} to {}",
                    format_rubles(kopecks),
                    Address(payee)
                ),
                json!({"payee": payee.to_hex(), "payee_address": Address(payee).to_string(), "purpose": purpose,
                       "amount": format_rubles(kopecks), "amount_kopecks": kopecks}),
            );
        }
        Cmd::Fraud { cmd } => fraud(&ctx, cmd).await?,
        Cmd::Held { cmd } => held(&ctx, cmd).await?,
        Cmd::Collect {
            debtor,
            claimant,
            amount,
        } => {
            let debtor = cli::parse_account(debtor, "--debtor")?;
            let claimant = cli::parse_account(claimant, "--claimant")?;
            let kopecks = cli::parse_amount(amount, "--amount")?;
            let key = ctx.key()?;
            ctx.confirm(&format!(
                "Collect up to {} ₽ from {} for {}?",
                format_rubles(kopecks),
                Address(debtor),
                Address(claimant)
            ))?;
            let p = ctx.admin.collect(&key, debtor, claimant, kopecks).await?;
            let got = p.collected().unwrap_or(0);
            ctx.done(
                "collect",
                &p,
                format!(
                    "collected {} ₽ of {} ₽ from {} for {}",
                    format_rubles(got),
                    format_rubles(kopecks),
                    Address(debtor),
                    Address(claimant)
                ),
                json!({"debtor": debtor.to_hex(), "claimant": claimant.to_hex(), "amount": format_rubles(kopecks),
                       "amount_kopecks": kopecks, "collected": format_rubles(got), "collected_kopecks": got}),
            );
        }
        Cmd::Account { account } => {
            let account = cli::parse_account(account, "--account")?;
            let a = ctx.admin.account(account).await?;
            if ctx.json {
                let mut v = json!({"ok": true});
                v.as_object_mut()
                    .unwrap()
                    .append(cli::account_json(&a).as_object_mut().unwrap());
                println!("{v}");
            } else {
                print!("{}", cli::account_text(&a));
            }
        }
        Cmd::Accounts { status, bank, csv } => {
            let bank = match bank {
                Some(b) => Some(ctx.bank(b).await?.0),
                None => None,
            };
            let filter = AccountFilter {
                status: status.map(|s| match s {
                    StatusArg::Active => AccountStatus::Active,
                    StatusArg::Frozen => AccountStatus::Frozen,
                    StatusArg::Closed => AccountStatus::Closed,
                    StatusArg::ReceiveOnly => AccountStatus::ReceiveOnly,
                }),
                bank,
            };
            let accounts = ctx.admin.accounts(&filter).await?;
            if ctx.json {
                let list: Vec<Value> = accounts.iter().map(cli::account_json).collect();
                println!("{}", json!({"ok": true, "count": list.len(), "accounts": list}));
            } else {
                let t = cli::accounts_table(&accounts);
                print!("{}", if *csv { t.csv() } else { t.text() });
            }
        }
        Cmd::Supply { csv } => {
            let s = ctx.admin.supply().await?;
            if ctx.json {
                println!("{}", json!({"ok": true, "supply": supply_json(&s)}));
            } else if *csv {
                print!("{}", supply_table(&s).csv());
            } else {
                print!("{}", supply_text(&s));
            }
        }
        Cmd::LargePayments {
            from_height,
            follow: false,
            csv,
        } => {
            let l = ctx.admin.large_payments_until(*from_height, None).await?;
            if ctx.json {
                let list: Vec<Value> = l.records.iter().map(cli::record_json).collect();
                println!(
                    "{}",
                    json!({"ok": true, "from_height": from_height, "to_height": l.to_height, "head_height": l.head_height, "count": list.len(), "large_payments": list})
                );
            } else {
                let t = cli::records_table(&l.records);
                print!("{}", if *csv { t.csv() } else { t.text() });
            }
        }
        Cmd::LargePayments {
            from_height,
            follow: true,
            csv,
        } => {
            let mut s = Box::pin(ctx.admin.large_payments(*from_height));
            let header = cli::records_table(&[]);
            if *csv {
                print!("{}", header.csv());
            } else if !ctx.json {
                println!("{}", header.headers.join("  "));
            }
            while let Some(item) = s.next().await {
                let r = item?;
                if ctx.json {
                    println!("{}", cli::record_json(&r));
                } else if *csv {
                    print!("{}", cli::csv_row(&cli::record_row(&r)));
                } else {
                    println!("{}", cli::text_row(&cli::record_row(&r)));
                }
            }
        }
        Cmd::Report {
            since,
            until,
            section,
            csv,
        } => report(&ctx, since, until, section, *csv).await?,
        Cmd::Cluster { cmd } => cluster(&ctx, cmd).await?,
    }
    Ok(())
}

/// `NAME OLD → NEW` of a cap, or `NAME VALUE (unchanged)`.
fn change(name: &str, old: u64, new: u64) -> String {
    if old == new {
        format!("{name} {} (unchanged)", cli::cap_text(new))
    } else {
        format!("{name} {} → {}", cli::cap_text(old), cli::cap_text(new))
    }
}

/// [`change`] for an amount in rubles (0 shown as `off` when `zero_off`).
fn change_rub(name: &str, old: u64, new: u64, zero_off: bool) -> String {
    let show = |v: u64| {
        if zero_off && v == 0 {
            "off".to_string()
        } else {
            format!("{} ₽", format_rubles(v))
        }
    };
    if old == new {
        format!("{name} {} (unchanged)", show(new))
    } else {
        format!("{name} {} → {}", show(old), show(new))
    }
}

async fn controls(ctx: &Ctx, cmd: &ControlsCmd) -> Result<(), Failure> {
    match cmd {
        ControlsCmd::Show => {
            let c = ctx.admin.controls().await?;
            if ctx.json {
                let mut v = json!({"ok": true});
                v.as_object_mut()
                    .unwrap()
                    .append(cli::controls_json(&c).as_object_mut().unwrap());
                println!("{v}");
            } else {
                print!("{}", cli::controls_text(&c));
            }
        }
        ControlsCmd::Set {
            hold_threshold,
            hold_window,
            protected_minimum,
        } => {
            let threshold = hold_threshold
                .as_deref()
                .map(|s| cli::parse_amount(s, "--hold-threshold"))
                .transpose()?;
            let window = hold_window
                .as_deref()
                .map(|s| cli::parse_duration_ms(s, "--hold-window"))
                .transpose()?;
            let minimum = protected_minimum
                .as_deref()
                .map(|s| cli::parse_amount(s, "--protected-minimum"))
                .transpose()?;
            if threshold.is_none() && window.is_none() && minimum.is_none() {
                return Err(cli::usage(
                    "give at least one of --hold-threshold, --hold-window, --protected-minimum",
                ));
            }
            let current = ctx.admin.controls().await?;
            let (t, w, m) = (
                threshold.unwrap_or(current.hold_threshold),
                window.unwrap_or(current.hold_window_ms),
                minimum.unwrap_or(current.protected_minimum),
            );
            let window_change = if w == current.hold_window_ms {
                format!("hold window {} (unchanged)", cli::duration_text(w))
            } else {
                format!(
                    "hold window {} → {}",
                    cli::duration_text(current.hold_window_ms),
                    cli::duration_text(w)
                )
            };
            let key = ctx.key()?;
            ctx.confirm(&format!(
                "Set the controls: {}; {window_change}; {}?",
                change_rub("hold threshold", current.hold_threshold, t, true),
                change_rub("protected minimum", current.protected_minimum, m, false),
            ))?;
            let p = ctx.admin.set_controls(&key, t, w, m).await?;
            ctx.done(
                "controls set",
                &p,
                format!(
                    "hold threshold {}, hold window {}, protected minimum {} ₽",
                    if t == 0 {
                        "off".to_string()
                    } else {
                        format!("{} ₽", format_rubles(t))
                    },
                    cli::duration_text(w),
                    format_rubles(m)
                ),
                json!({"hold_threshold": format_rubles(t), "hold_threshold_kopecks": t, "hold_window_ms": w,
                       "protected_minimum": format_rubles(m), "protected_minimum_kopecks": m}),
            );
        }
    }
    Ok(())
}

async fn purpose(ctx: &Ctx, cmd: &PurposeCmd) -> Result<(), Failure> {
    match cmd {
        PurposeCmd::Define {
            id,
            issuer,
            payees,
            categories,
            unlock_at,
            expires_at,
        } => {
            let cb = ctx.admin.client().central_bank();
            let issuer = match issuer.trim() {
                "cb" | "central-bank" => cb,
                other => cli::parse_account(other, "--issuer")?,
            };
            let payees = payees
                .iter()
                .map(|p| cli::parse_account(p, "--payee"))
                .collect::<Result<Vec<_>, _>>()?;
            if payees.is_empty() && categories.is_empty() {
                return Err(cli::usage(
                    "give at least one --payee or --category: the funds could pay nobody",
                ));
            }
            let now = ctx.admin.client().node_now_ms();
            let unlock_at_ms = unlock_at
                .as_deref()
                .map(|s| cli::parse_when_ms(s, "--unlock-at", now))
                .transpose()?
                .unwrap_or(0);
            let expires_at_ms = cli::parse_when_ms(expires_at, "--expires-at", now)?;
            let p = Purpose {
                id: *id,
                issuer,
                unlock_at_ms,
                expires_at_ms,
                payees,
                categories: categories.clone(),
            };
            let key = ctx.key()?;
            let r = ctx.admin.define_purpose(&key, &p).await?;
            ctx.done(
                "purpose define",
                &r,
                format!(
                    "purpose {} (issuer {}): {} payees, categories [{}], {}expires {}",
                    p.id,
                    if issuer == cb {
                        "the central bank".to_string()
                    } else {
                        Address(issuer).to_string()
                    },
                    p.payees.len(),
                    p.categories.iter().map(u16::to_string).collect::<Vec<_>>().join(" "),
                    if unlock_at_ms > 0 {
                        format!("unlocks {}, ", cli::time_text(unlock_at_ms))
                    } else {
                        String::new()
                    },
                    cli::time_text(expires_at_ms)
                ),
                json!({"purpose": cli::purpose_json(&p)}),
            );
        }
        PurposeCmd::List { csv } => {
            let list = ctx.admin.purposes().await?;
            if ctx.json {
                let purposes: Vec<Value> = list.iter().map(cli::purpose_json).collect();
                println!("{}", json!({"ok": true, "count": purposes.len(), "purposes": purposes}));
            } else {
                let t = cli::purposes_table(&list, ctx.admin.client().central_bank());
                print!("{}", if *csv { t.csv() } else { t.text() });
            }
        }
    }
    Ok(())
}

async fn fraud(ctx: &Ctx, cmd: &FraudCmd) -> Result<(), Failure> {
    let (account, flag) = match cmd {
        FraudCmd::Flag { account } => (account, true),
        FraudCmd::Unflag { account } => (account, false),
        FraudCmd::List { csv } => {
            let list = ctx.admin.fraud_registry().await?;
            let cb = ctx.admin.client().central_bank();
            let supply = ctx.admin.supply().await?;
            let reporter = |r: AccountId| {
                if r == cb {
                    "central-bank".to_string()
                } else {
                    supply
                        .banks
                        .iter()
                        .find(|b| b.bank == r)
                        .map_or_else(String::new, |b| b.name.clone())
                }
            };
            if ctx.json {
                let entries: Vec<Value> = list
                    .iter()
                    .map(|e| {
                        json!({"account": e.account.to_hex(), "address": Address(e.account).to_string(),
                               "flagged_by": e.flagged_by.to_hex(), "flagged_by_name": reporter(e.flagged_by)})
                    })
                    .collect();
                println!("{}", json!({"ok": true, "count": entries.len(), "entries": entries}));
            } else {
                let mut t = Table::new(&["ACCOUNT", "FLAGGED_BY", "REPORTER"]);
                for e in &list {
                    t.push(vec![
                        Address(e.account).to_string(),
                        Address(e.flagged_by).to_string(),
                        reporter(e.flagged_by),
                    ]);
                }
                print!("{}", if *csv { t.csv() } else { t.text() });
            }
            return Ok(());
        }
    };
    let account = cli::parse_account(account, "--account")?;
    let key = ctx.key()?;
    let p = if flag {
        ctx.admin.flag_fraud(&key, account).await?
    } else {
        ctx.admin.unflag_fraud(&key, account).await?
    };
    ctx.done(
        if flag { "fraud flag" } else { "fraud unflag" },
        &p,
        if flag {
            format!(
                "put {} on the fraud registry: payments to it are held",
                Address(account)
            )
        } else {
            format!("took {} off the fraud registry", Address(account))
        },
        json!({"account": account.to_hex(), "address": Address(account).to_string(), "flagged": flag}),
    );
    Ok(())
}

async fn held(ctx: &Ctx, cmd: &HeldCmd) -> Result<(), Failure> {
    let (payment_id, release) = match cmd {
        HeldCmd::List { account, csv } => {
            let account = account
                .as_deref()
                .map(|a| cli::parse_account(a, "--account"))
                .transpose()?;
            let list = ctx.admin.held_payments(account).await?;
            cli::print_held(&list, ctx.json, *csv);
            return Ok(());
        }
        HeldCmd::Release { payment_id } => (payment_id, true),
        HeldCmd::Void { payment_id } => (payment_id, false),
    };
    let payment = cli::parse_tx_id(payment_id, "PAYMENT_ID")?;
    let key = ctx.key()?;
    let (p, command, human) = if release {
        (
            ctx.admin.release_payment(&key, payment).await?,
            "held release",
            format!("released payment {payment}"),
        )
    } else {
        (
            ctx.admin.void_payment(&key, payment).await?,
            "held void",
            format!("voided payment {payment}; its funds are spendable again"),
        )
    };
    ctx.done(command, &p, human, json!({"payment_id": payment.to_hex()}));
    Ok(())
}

async fn cluster(ctx: &Ctx, cmd: &ClusterCmd) -> Result<(), Failure> {
    match cmd {
        ClusterCmd::Status => {
            let s = ctx.admin.cluster_status().await?;
            if ctx.json {
                println!("{}", cluster_json(&s, json!({})));
            } else {
                print!("{}", cluster_text(&s));
            }
        }
        ClusterCmd::Add {
            id,
            raft,
            client,
            learner_only,
        } => {
            let s = ctx.admin.add_replica(*id, raft, client, !learner_only).await?;
            let role = s.member(*id).and_then(|m| m.role).map_or("unknown", |r| r.as_str());
            if ctx.json {
                println!(
                    "{}",
                    cluster_json(
                        &s,
                        json!({"command": "cluster-add", "replica": id, "replica_role": role})
                    )
                );
            } else {
                println!(
                    "added replica {id} as a {role}: replication at {}, clients at {}",
                    cli::printable(raft),
                    cli::printable(client)
                );
                print!("{}", cluster_text(&s));
            }
        }
        ClusterCmd::Remove { id } => {
            ctx.confirm(&format!(
                "Remove replica {id} from the cluster? It no longer receives blocks (a voter no longer counts for the quorum)."
            ))?;
            let s = ctx.admin.remove_replica(*id).await?;
            if ctx.json {
                println!(
                    "{}",
                    cluster_json(&s, json!({"command": "cluster-remove", "replica": id}))
                );
            } else {
                println!("removed replica {id}; stop its process now");
                print!("{}", cluster_text(&s));
            }
        }
    }
    Ok(())
}

/// A cluster status as one JSON object (`ok` and `extra`'s fields beside it).
fn cluster_json(s: &ClusterStatus, mut extra: Value) -> Value {
    let mut v = json!({"ok": true});
    v.as_object_mut().unwrap().append(extra.as_object_mut().unwrap());
    let mut status = serde_json::to_value(s).unwrap_or_default();
    if let Some(fields) = status.as_object_mut() {
        v.as_object_mut().unwrap().append(fields);
    }
    v
}

fn cluster_text(s: &ClusterStatus) -> String {
    let role = if s.is_leader {
        "the leader".to_string()
    } else if s.leader_id == 0 {
        "no leader known".to_string()
    } else {
        format!("leader {}", s.leader_id)
    };
    let mut out = format!(
        "node {} ({role}), term {}\napplied height {}\n  state hash {}\n  head hash  {}\nlog: last {}, applied {}, snapshot {}, purged {}{}\n",
        s.node_id,
        s.term,
        s.applied_height,
        s.state_hash,
        s.head_hash,
        s.last_log_index,
        s.applied_log_index,
        s.snapshot_log_index,
        s.purged_log_index,
        if s.joint { " (membership change in progress)" } else { "" }
    );
    if let Some(ms) = s.millis_since_quorum_ack {
        out += &format!("last quorum acknowledgement {ms} ms ago\n");
    }
    let mut t = Table::new(&["ID", "ROLE", "RAFT", "CLIENT", ">MATCHED"]);
    for m in &s.members {
        t.push(vec![
            format!("{}{}", m.id, if m.id == s.leader_id { "*" } else { "" }),
            m.role.map_or("unknown", |r| r.as_str()).to_string(),
            m.raft_addr.clone(),
            m.client_endpoint.clone(),
            m.matched_index.map_or(String::new(), |i| i.to_string()),
        ]);
    }
    out += &t.text();
    out
}

fn supply_json(s: &Supply) -> Value {
    let banks: Vec<Value> = s
        .banks
        .iter()
        .map(|b| {
            json!({"bank": b.bank.to_hex(), "address": Address(b.bank).to_string(), "name": b.name, "suspended": b.suspended,
                   "settlement_balance": format_rubles(b.settlement_balance), "settlement_balance_kopecks": b.settlement_balance,
                   "clients_balance": format_rubles(b.clients_balance), "clients_balance_kopecks": b.clients_balance,
                   "clients": b.clients})
        })
        .collect();
    json!({
        "height": s.height, "state_hash": s.state_hash, "phase": s.phase.map(|p| p.as_str()), "accounts": s.accounts,
        "issued": format_rubles(s.issued), "issued_kopecks": s.issued,
        "redeemed": format_rubles(s.redeemed), "redeemed_kopecks": s.redeemed,
        "in_circulation": format_rubles(s.in_circulation), "in_circulation_kopecks": s.in_circulation,
        "sum_balances": format_rubles(s.sum_balances), "sum_balances_kopecks": s.sum_balances,
        "banks": banks,
    })
}

fn supply_table(s: &Supply) -> Table {
    let mut t = Table::new(&[
        "BANK",
        "NAME",
        "STATUS",
        ">SETTLEMENT_RUB",
        ">CLIENTS_RUB",
        ">CLIENTS",
        ">SETTLEMENT_KOPECKS",
        ">CLIENTS_KOPECKS",
    ]);
    for b in &s.banks {
        t.push(vec![
            Address(b.bank).to_string(),
            b.name.clone(),
            if b.suspended { "suspended" } else { "active" }.into(),
            format_rubles(b.settlement_balance),
            format_rubles(b.clients_balance),
            b.clients.to_string(),
            b.settlement_balance.to_string(),
            b.clients_balance.to_string(),
        ]);
    }
    t
}

fn supply_text(s: &Supply) -> String {
    format!(
        "as of block {} (phase {}, {} accounts, state {})\nissued           {:>20} ₽\nredeemed         {:>20} ₽\nin circulation   {:>20} ₽\nsum of balances  {:>20} ₽\n\n{}",
        s.height,
        s.phase.map_or("unknown", |p| p.as_str()),
        s.accounts,
        &s.state_hash[..16.min(s.state_hash.len())],
        format_rubles(s.issued),
        format_rubles(s.redeemed),
        format_rubles(s.in_circulation),
        format_rubles(s.sum_balances),
        supply_table(s).text()
    )
}

/// A period's end as a height: `since` → the first block at or after it,
/// `until` → the last block at or before it.
async fn height_of(admin: &AdminClient, b: Bound, is_end: bool) -> Result<u64, Failure> {
    Ok(match (b, is_end) {
        (Bound::Height(h), _) => h,
        (Bound::Time(t), false) => admin.first_height_at(t).await?,
        (Bound::Time(t), true) => admin.first_height_at(t.saturating_add(1)).await?.saturating_sub(1),
    })
}

async fn report(
    ctx: &Ctx,
    since: &Option<String>,
    until: &Option<String>,
    sections: &[Section],
    csv: bool,
) -> Result<(), Failure> {
    let want = |s: Section| sections.is_empty() || sections.contains(&s);
    let since_b = since.as_deref().map(|s| cli::parse_bound(s, "--since")).transpose()?;
    let until_b = until.as_deref().map(|s| cli::parse_bound(s, "--until")).transpose()?;
    let supply = ctx.admin.supply().await?;
    let from = match since_b {
        Some(b) => height_of(&ctx.admin, b, false).await?.max(1),
        None => 1,
    };
    let to = match until_b {
        Some(b) => Some(height_of(&ctx.admin, b, true).await?),
        None => None,
    };
    let large = if want(Section::LargePayments) && to.is_none_or(|t| t >= from) {
        let l = ctx.admin.large_payments_until(from, to).await?;
        Some((l.to_height, l.records))
    } else {
        None
    };
    let to_height = large
        .as_ref()
        .map_or(to.unwrap_or(supply.height).min(supply.height), |l| l.0);
    let large = large.map(|l| l.1).unwrap_or_default();
    let frozen = if want(Section::Frozen) {
        ctx.admin
            .accounts(&AccountFilter {
                status: Some(AccountStatus::Frozen),
                bank: None,
            })
            .await?
    } else {
        Vec::new()
    };
    if ctx.json {
        let mut v = json!({
            "ok": true,
            "period": {"since": since, "until": until, "from_height": from, "to_height": to_height, "head_height": supply.height},
        });
        let o = v.as_object_mut().unwrap();
        if want(Section::Supply) {
            o.insert("supply".into(), supply_json(&supply));
        }
        if want(Section::LargePayments) {
            o.insert(
                "large_payments".into(),
                large.iter().map(cli::record_json).collect::<Vec<_>>().into(),
            );
        }
        if want(Section::Frozen) {
            o.insert(
                "frozen_accounts".into(),
                frozen.iter().map(cli::account_json).collect::<Vec<_>>().into(),
            );
        }
        println!("{v}");
        return Ok(());
    }
    let single = sections.len() == 1;
    let mut out = String::new();
    let mut section = |name: &str, title: String, t: Table| {
        if csv {
            if !single {
                out.push_str(&format!("# {name}\n"));
            }
            out.push_str(&t.csv());
            if !single {
                out.push('\n');
            }
        } else {
            out.push_str(&format!("{title}\n{}\n", t.text()));
        }
    };
    if !csv {
        println!(
            "report: blocks {from}..={to_height}{}{} (head {})\n",
            since.as_ref().map(|s| format!(", since {s}")).unwrap_or_default(),
            until.as_ref().map(|s| format!(", until {s}")).unwrap_or_default(),
            supply.height
        );
    }
    if want(Section::Supply) {
        section(
            "supply",
            format!(
                "Supply per bank, as of block {} (issued {} ₽, redeemed {} ₽, in circulation {} ₽):",
                supply.height,
                format_rubles(supply.issued),
                format_rubles(supply.redeemed),
                format_rubles(supply.in_circulation)
            ),
            supply_table(&supply),
        );
    }
    if want(Section::LargePayments) {
        let total: u128 = large.iter().map(|r| u128::from(r.amount)).sum();
        section(
            "large-payments",
            format!(
                "Large payments in blocks {from}..={to_height}: {} ({} ₽):",
                large.len(),
                u64::try_from(total).map_or_else(|_| format!("{total} kopecks"), format_rubles)
            ),
            cli::records_table(&large),
        );
    }
    if want(Section::Frozen) {
        section(
            "frozen-accounts",
            format!("Frozen accounts, as of block {}: {}", supply.height, frozen.len()),
            cli::accounts_table(&frozen),
        );
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ruble-admin").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn control_commands_parse() {
        let id = "ab".repeat(32);
        assert!(matches!(
            parse(&["controls", "show"]).unwrap().cmd,
            Cmd::Controls { cmd: ControlsCmd::Show }
        ));
        assert!(matches!(
            parse(&["controls", "set", "--hold-threshold", "100000", "--hold-window", "48h"])
                .unwrap()
                .cmd,
            Cmd::Controls {
                cmd: ControlsCmd::Set {
                    protected_minimum: None,
                    ..
                }
            }
        ));
        assert!(matches!(
            parse(&["tier-limits", "--tier", "simplified", "--balance-cap", "600000"])
                .unwrap()
                .cmd,
            Cmd::TierLimits {
                tier: TierLimitArg::Simplified,
                ..
            }
        ));
        // The full tier's limits are the retail kind's.
        assert!(parse(&["tier-limits", "--tier", "full", "--balance-cap", "1"]).is_err());
        let c = parse(&[
            "purpose",
            "define",
            "--id",
            "7",
            "--payee",
            "a",
            "--payee",
            "b",
            "--category",
            "5411",
            "--expires-at",
            "+30d",
        ])
        .unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Purpose { cmd: PurposeCmd::Define { id: 7, ref issuer, ref payees, ref categories, unlock_at: None, .. } }
                if issuer == "cb" && payees.len() == 2 && categories == &[5411]
        ));
        assert!(parse(&["purpose", "define", "--id", "7", "--category", "0", "--expires-at", "1"]).is_err());
        assert!(parse(&["purpose", "define", "--id", "7", "--category", "1"]).is_err());
        assert!(parse(&["purpose", "list", "--csv"]).is_ok());
        assert!(parse(&["issue-tagged", "--to", "x", "--amount", "5000", "--purpose", "7"]).is_ok());
        assert!(matches!(
            parse(&["fraud", "list"]).unwrap().cmd,
            Cmd::Fraud {
                cmd: FraudCmd::List { .. }
            }
        ));
        assert!(matches!(
            parse(&["held", "list", "--account", "x"]).unwrap().cmd,
            Cmd::Held {
                cmd: HeldCmd::List { account: Some(_), .. }
            }
        ));
        assert!(matches!(
            parse(&["held", "void", &id]).unwrap().cmd,
            Cmd::Held {
                cmd: HeldCmd::Void { .. }
            }
        ));
        assert!(parse(&["collect", "--debtor", "x", "--claimant", "y", "--amount", "1"]).is_ok());
        assert!(parse(&["freeze-receive-only", "--account", "x"]).is_ok());
        assert!(matches!(
            parse(&["accounts", "--status", "receive-only"]).unwrap().cmd,
            Cmd::Accounts {
                status: Some(StatusArg::ReceiveOnly),
                ..
            }
        ));
    }

    #[test]
    fn changes_read_well() {
        assert_eq!(
            change_rub("hold threshold", 0, 100_000_00, true),
            "hold threshold off → 100000.00 ₽"
        );
        assert_eq!(
            change_rub("protected minimum", 5, 5, false),
            "protected minimum 0.05 ₽ (unchanged)"
        );
        assert_eq!(change("balance cap", u64::MAX, 100), "balance cap unlimited → 1.00");
    }
}
