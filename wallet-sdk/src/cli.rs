//! What the command lines (`ruble-admin`, `ruble-bank`, `ruble-wallet`)
//! share: the connection flags, exit codes and failures, confirmation
//! prompts, passphrases and key loading, tables and CSV, amounts, caps and
//! times. Support for those binaries rather than a stable API.
//!
//! Exit codes: 0 success, 1 usage or local error (a drastic step not
//! confirmed included), 2 refused by the ledger or the node (the reason, e.g.
//! `INSUFFICIENT_FUNDS`, is in the output), 3 node unreachable (transport
//! failure, timeout, `UNAVAILABLE`), 4 key or certificate problem (unreadable
//! or invalid key file, wrong passphrase, bad PEM, wrong key for the role, a
//! certificate the node refuses or of the wrong role, a node certificate
//! our CA does not vouch for).
//!
//! Text for people escapes control characters ([`printable`]), and CSV
//! defuses fields a spreadsheet would run as a formula ([`csv_field`]): a
//! payment's purpose and a bank's name are chosen by others.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use ruble_domain::types::AccountId;
use serde_json::{json, Value};

use crate::amount::{format_rubles, parse_rubles};
use crate::client::{AccountInfo, Payment, Record};
use crate::error::Error;
use crate::keys::{Address, WalletKey};
use crate::operator::Credentials;

pub const EXIT_USAGE: u8 = 1;
pub const EXIT_REFUSED: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;
pub const EXIT_KEY: u8 = 4;

/// The connection and credential flags of both operator CLIs (each but
/// `--yes` also a `RUBLE_*` environment variable).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Connection and output")]
pub struct Conn {
    /// Node endpoint, e.g. https://127.0.0.1:50051.
    #[arg(long, global = true, env = "RUBLE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// CA certificate (PEM) the node's certificate chains to.
    #[arg(long, global = true, env = "RUBLE_CA")]
    pub ca: Option<PathBuf>,
    /// The participant's mTLS client certificate (PEM).
    #[arg(long, global = true, env = "RUBLE_CERT")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, global = true, env = "RUBLE_CERT_KEY")]
    pub cert_key: Option<PathBuf>,
    /// The participant's signing key file (ruble-wallet-key/v1, maybe encrypted).
    #[arg(long, global = true, env = "RUBLE_KEY")]
    pub key: Option<PathBuf>,
    /// A `ruble-node dev` directory: endpoint, CA, certificate and key from its dev.json.
    #[arg(long, global = true, env = "RUBLE_DEV_DIR")]
    pub dev_dir: Option<PathBuf>,
    /// Machine-readable JSON output (one object; one per line when following).
    #[arg(long, global = true, env = "RUBLE_JSON")]
    pub json: bool,
    /// Do not ask for confirmation of drastic steps (needed without a
    /// terminal). Only on the command line, never from the environment.
    // No `env`: a stray export would answer every question, at a terminal too.
    #[arg(long, global = true)]
    pub yes: bool,
    /// Deadline of each call, e.g. 5s.
    #[arg(long, global = true, env = "RUBLE_TIMEOUT", default_value = "10s")]
    pub timeout: humantime::Duration,
}

impl Conn {
    /// The settings given explicitly, to lay over a directory's.
    pub fn explicit(&self) -> Credentials {
        Credentials {
            endpoint: self.endpoint.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            cert_key: self.cert_key.clone(),
            key: self.key.clone(),
            replicas: Vec::new(),
        }
    }

    /// A builder for `creds` with this timeout (connecting within it too).
    pub fn builder(&self, creds: &Credentials) -> Result<crate::ClientBuilder, Failure> {
        let t: Duration = *self.timeout;
        Ok(creds
            .client_builder()?
            .timeout(t)
            .connect_timeout(t.min(Duration::from_secs(5)))
            .retries(2))
    }
}

/// Why a command failed, and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    /// Machine-readable: the ledger's or the node's reason (`INSUFFICIENT_FUNDS`,
    /// `WRONG_ROLE`), or `UNREACHABLE`, `WRONG_PASSPHRASE`, `KEY_FILE`,
    /// `CERTIFICATE`, `USAGE`, `NOT_CONFIRMED`.
    pub reason: String,
    pub message: String,
}

pub fn fail(code: u8, reason: &str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        reason: reason.into(),
        message: message.into(),
    }
}

pub fn usage(message: impl Into<String>) -> Failure {
    fail(EXIT_USAGE, "USAGE", message)
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Rejected {
                reason: ruble_domain::Reason::Unavailable,
                message,
            } => fail(
                EXIT_UNREACHABLE,
                "UNAVAILABLE",
                format!("the node cannot commit: {message}"),
            ),
            Error::Rejected { reason, message } => {
                let message = if message.is_empty() {
                    reason.describe().to_string()
                } else {
                    message
                };
                fail(EXIT_REFUSED, reason.code(), format!("refused: {message}"))
            }
            Error::Refused { code, message } if code == "UNAVAILABLE" => fail(
                EXIT_UNREACHABLE,
                "UNAVAILABLE",
                format!("the node is unavailable: {message}"),
            ),
            // The certificate presented is not one for this service: a
            // certificate problem, not a refusal of what was asked.
            Error::Refused { code, message } if code == "WRONG_ROLE" || code == "CLIENT_CERTIFICATE_REQUIRED" => fail(
                EXIT_KEY,
                &code,
                format!("the node refused the client certificate for this service: {message}"),
            ),
            Error::Refused { code, message } => fail(EXIT_REFUSED, &code, format!("refused by the node: {message}")),
            Error::Transport(m) => fail(EXIT_UNREACHABLE, "UNREACHABLE", format!("cannot reach the node: {m}")),
            e @ Error::NotLeader { .. } => fail(
                EXIT_UNREACHABLE,
                "NOT_LEADER",
                format!("{e}: send it there (--endpoint)"),
            ),
            Error::Timeout => fail(
                EXIT_UNREACHABLE,
                "UNREACHABLE",
                "the node did not answer in time (see --timeout)",
            ),
            Error::WrongPassphrase => fail(EXIT_KEY, "WRONG_PASSPHRASE", "wrong passphrase for the key file"),
            Error::Key(m) => fail(EXIT_KEY, "KEY_FILE", m),
            Error::Certificate(m) => fail(EXIT_KEY, "CERTIFICATE", m),
            Error::Config(m) => usage(m),
        }
    }
}

/// Parses the command line; a usage error exits 1 (clap's own code, 2,
/// means a refusal here), `--help` and `--version` exit 0.
pub fn parse_args<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(t) => t,
        Err(e) => {
            let code = if e.use_stderr() { i32::from(EXIT_USAGE) } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    }
}

/// Prints a failure (JSON on stdout with `--json`, else on stderr) and
/// returns its exit code.
pub fn report(f: &Failure, json: bool) -> std::process::ExitCode {
    if json {
        println!(
            "{}",
            json!({"ok": false, "error": f.reason, "message": f.message, "exit_code": f.code})
        );
    } else {
        eprintln!("error: {} ({})", printable(&f.message), printable(&f.reason));
    }
    std::process::ExitCode::from(f.code)
}

/// Whether a person can answer on this terminal (standard input is one).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks to confirm a drastic step on the terminal. `--yes` skips the
/// question; without a terminal and without `--yes` the step is refused.
pub fn confirm(yes: bool, question: &str) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    if !interactive() {
        return Err(fail(
            EXIT_USAGE,
            "NOT_CONFIRMED",
            format!(
                "{question} This needs confirmation: pass --yes (there is no terminal to ask on); nothing was done"
            ),
        ));
    }
    eprint!("{question} Type yes to go ahead: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| usage(format!("reading the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(fail(EXIT_USAGE, "NOT_CONFIRMED", "not confirmed; nothing was done")),
    }
}

/// The passphrase flags, the same in every CLI. Each CLI also reads its own
/// environment variable (`RUBLE_CB_PASSPHRASE`, `RUBLE_BANK_PASSPHRASE`,
/// `RUBLE_WALLET_PASSPHRASE`), after these.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PassphraseArgs {
    /// A file holding the passphrase of an encrypted key file (a final line
    /// end is not part of it). Without it: the CLI's passphrase variable, else
    /// asked for on the terminal.
    #[arg(long, global = true, value_name = "FILE", help_heading = "Connection and output")]
    pub passphrase_file: Option<PathBuf>,
    /// The passphrase itself. Kept for compatibility: other users see it in
    /// `ps` and it stays in the shell history, so prefer --passphrase-file or
    /// the CLI's passphrase variable.
    #[arg(
        long,
        global = true,
        conflicts_with = "passphrase_file",
        help_heading = "Connection and output"
    )]
    pub passphrase: Option<String>,
}

impl PassphraseArgs {
    /// These flags, then the environment variable `env`.
    pub fn with_env(&self, env: &'static str) -> Passphrase {
        Passphrase {
            file: self.passphrase_file.clone(),
            value: self.passphrase.clone(),
            env,
        }
    }
}

/// Where an encrypted key's passphrase comes from, first found first:
/// `--passphrase-file`, `--passphrase`, the environment variable `env`, and
/// else the terminal.
#[derive(Clone, Debug)]
pub struct Passphrase {
    pub file: Option<PathBuf>,
    pub value: Option<String>,
    /// The variable's name (also named in messages).
    pub env: &'static str,
}

impl Passphrase {
    /// The passphrase given by file, flag or variable, if any. A passphrase
    /// file's line end is not part of it.
    pub fn given(&self) -> Result<Option<String>, Failure> {
        if let Some(f) = &self.file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| fail(EXIT_KEY, "KEY_FILE", format!("passphrase file {}: {e}", f.display())))?;
            let line = text.strip_suffix('\n').unwrap_or(&text);
            let line = line.strip_suffix('\r').unwrap_or(line);
            return Ok(Some(line.to_string()));
        }
        if let Some(v) = &self.value {
            return Ok(Some(v.clone()));
        }
        Ok(std::env::var(self.env).ok().filter(|v| !v.is_empty()))
    }

    /// The passphrase given, else asked for on the terminal (twice, to be
    /// compared, with `twice`). Without a terminal to ask on it is a key
    /// problem naming the ways to give it; `what` says what it is for.
    pub fn get(&self, what: &str, twice: bool) -> Result<String, Failure> {
        if let Some(p) = self.given()? {
            return Ok(p);
        }
        if !interactive() {
            return Err(fail(
                EXIT_KEY,
                "KEY_FILE",
                format!(
                    "{what} needs a passphrase: give --passphrase-file FILE or set {} (there is no terminal to ask on)",
                    self.env
                ),
            ));
        }
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map_err(|e| fail(EXIT_KEY, "KEY_FILE", format!("reading the passphrase: {e}")))
        };
        let p = ask(&format!("passphrase for {what}: "))?;
        if twice && ask("again: ")? != p {
            return Err(fail(EXIT_KEY, "KEY_FILE", "the passphrases differ"));
        }
        Ok(p)
    }
}

/// Loads the signing key at `path` (`missing` says how to name one). An
/// encrypted one takes its passphrase from `pass`.
pub fn load_key(path: Option<&Path>, missing: &str, pass: &Passphrase) -> Result<WalletKey, Failure> {
    let path = path.ok_or_else(|| usage(missing))?;
    if !WalletKey::is_encrypted(path)? {
        return Ok(WalletKey::load(path, None)?);
    }
    let p = pass.get(&path.display().to_string(), false)?;
    Ok(WalletKey::load(path, Some(&p))?)
}

/// An account or bank given as `rub1…` or 64 hex characters.
pub fn parse_account(s: &str, flag: &str) -> Result<AccountId, Failure> {
    s.parse::<Address>()
        .map(|a| a.0)
        .map_err(|e| usage(format!("{flag}: {e}")))
}

/// Rubles (`1250.50`) to kopecks, exactly.
pub fn parse_amount(s: &str, flag: &str) -> Result<u64, Failure> {
    parse_rubles(s).map_err(|e| usage(format!("{flag}: {e}")))
}

/// A cap: rubles, or `unlimited`.
pub fn parse_cap(s: &str, flag: &str) -> Result<u64, Failure> {
    match s.trim().to_ascii_lowercase().as_str() {
        "unlimited" | "none" => Ok(u64::MAX),
        _ => parse_amount(s, flag),
    }
}

/// A cap as text: rubles, or `unlimited`.
pub fn cap_text(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        format_rubles(v)
    }
}

/// Unix ms as RFC 3339 UTC with milliseconds.
pub fn time_text(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an RFC 3339 time (`2026-03-01T12:00:00Z`, `2026-03-01T15:00:00.5+03:00`)
/// or a date (`2026-03-01`, midnight UTC) into Unix ms.
pub fn parse_time_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let num = |t: &str| -> Option<u32> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let (y, m, d) = (dp.next()?, dp.next()?, dp.next()?);
    if dp.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (i64::from(num(y)?), num(m)?, num(d)?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || y < 1970 {
        return None;
    }
    let mut ms: i64 = days_from_civil(y, m, d) * 86_400_000;
    if let Some(rest) = rest {
        // The offset: Z, or ±HH:MM.
        let (clock, offset_min): (&str, i64) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else {
            let i = rest.rfind(['+', '-'])?;
            let (c, off) = (&rest[..i], &rest[i..]);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            let (oh, om) = (num(oh)?, num(om)?);
            if oh > 23 || om > 59 {
                return None;
            }
            (c, sign * (i64::from(oh) * 60 + i64::from(om)))
        };
        let (hms, frac) = match clock.split_once('.') {
            Some((a, f)) => (a, Some(f)),
            None => (clock, None),
        };
        let mut tp = hms.split(':');
        let (h, mi, sec) = (tp.next()?, tp.next()?, tp.next()?);
        if tp.next().is_some() || h.len() != 2 || mi.len() != 2 || sec.len() != 2 {
            return None;
        }
        let (h, mi, sec) = (num(h)?, num(mi)?, num(sec)?);
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let frac_ms = match frac {
            None => 0,
            Some(f) => {
                num(f)?;
                // Milliseconds: the first three digits (finer is truncated).
                let mut digits: String = f.chars().take(3).collect();
                while digits.len() < 3 {
                    digits.push('0');
                }
                i64::from(num(&digits)?)
            }
        };
        ms += (i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec)) * 1000 + frac_ms;
        ms -= offset_min * 60_000;
    }
    u64::try_from(ms).ok()
}

/// One end of a period: a block height or a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Height(u64),
    /// Unix ms.
    Time(u64),
}

/// A height (digits) or an RFC 3339 time.
pub fn parse_bound(s: &str, flag: &str) -> Result<Bound, Failure> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Bound::Height)
            .map_err(|_| usage(format!("{flag}: height {t:?} is too large")));
    }
    parse_time_ms(t).map(Bound::Time).ok_or_else(|| {
        usage(format!(
            "{flag}: {s:?} is neither a block height nor an RFC 3339 time (e.g. 2026-03-01T00:00:00Z)"
        ))
    })
}

/// A table for people (aligned columns) or for programs (CSV).
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub headers: Vec<String>,
    /// Right-aligned columns (amounts, counts).
    pub right: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named `headers`; a name starting with `>` is right-aligned
    /// (the `>` is not shown).
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.trim_start_matches('>').to_string()).collect(),
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Aligned columns, two spaces apart, headers first; control
    /// characters escaped ([`printable`]).
    pub fn text(&self) -> String {
        let n = self.headers.len();
        let shown = |cells: &[String]| -> Vec<String> { cells.iter().map(|c| printable(c).into_owned()).collect() };
        let headers = shown(&self.headers);
        let rows: Vec<Vec<String>> = self.rows.iter().map(|r| shown(r)).collect();
        let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, c) in cells.iter().enumerate().take(n) {
                let pad = width[i] - c.chars().count();
                let last = i + 1 == n;
                if self.right[i] {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(c);
                } else {
                    out.push_str(c);
                    if !last {
                        out.push_str(&" ".repeat(pad));
                    }
                }
                if !last {
                    out.push_str("  ");
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&headers);
        out.push('\n');
        for r in &rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    /// RFC 4180 CSV: a header row, then the rows; `\n` line ends.
    pub fn csv(&self) -> String {
        let mut out = csv_row(&self.headers);
        for r in &self.rows {
            out.push_str(&csv_row(r));
        }
        out
    }
}

/// One CSV line (with its `\n`).
pub fn csv_row(cells: &[String]) -> String {
    let mut out = cells.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",");
    out.push('\n');
    out
}

/// A CSV field, quoted when it must be. A field that a spreadsheet would
/// take for a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) gets a leading `'`, unless it is a plain number (`-351.75`).
pub fn csv_field(s: &str) -> String {
    let s: Cow<str> = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(s) {
        format!("'{s}").into()
    } else {
        s.into()
    };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// `-123`, `+5`, `1250.50`: digits, maybe a sign and a fraction.
fn is_plain_number(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    match unsigned.split_once('.') {
        Some((whole, frac)) => digits(whole) && digits(frac),
        None => digits(unsigned),
    }
}

/// Whether `c` must not reach a terminal as it is: control characters (ESC
/// starts the terminal's escape sequences) and the bidirectional-text
/// controls that reorder what follows them on the line.
fn unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` for a terminal: `\n`, `\r`, `\t`, and every other control character
/// as `\u{1b}`; the rest as it is.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unprintable) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unprintable(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One line of text for people (a followed stream's row): the cells,
/// [`printable`], two spaces apart.
pub fn text_row(cells: &[String]) -> String {
    cells.iter().map(|c| printable(c)).collect::<Vec<_>>().join("  ")
}

/// `rub1…` of an id, or empty.
pub fn addr(a: Option<AccountId>) -> String {
    a.map(|a| Address(a).to_string()).unwrap_or_default()
}

/// JSON of a committed submission.
pub fn payment_json(p: &Payment) -> Value {
    json!({
        "tx_id": p.receipt.tx_id.to_hex(),
        "height": p.receipt.height,
        "index": p.receipt.index,
        "cursor": p.receipt.cursor,
        "timestamp_ms": p.receipt.timestamp_ms,
        "time": time_text(p.receipt.timestamp_ms),
        "block_hash": p.receipt.block_hash,
        "duplicate": p.duplicate,
    })
}

/// JSON of a committed operation.
pub fn record_json(r: &Record) -> Value {
    json!({
        "tx_id": r.tx_id.to_hex(),
        "cursor": r.cursor,
        "height": r.height,
        "timestamp_ms": r.timestamp_ms,
        "time": time_text(r.timestamp_ms),
        "kind": r.kind,
        "signer": r.signer.map(|a| a.to_hex()),
        "from": r.from.map(|a| a.to_hex()),
        "from_address": r.from.map(|a| Address(a).to_string()),
        "to": r.to.map(|a| a.to_hex()),
        "to_address": r.to.map(|a| Address(a).to_string()),
        "amount": format_rubles(r.amount),
        "amount_kopecks": r.amount,
        "purpose": r.purpose,
        "large": r.large,
    })
}

/// JSON of an account.
pub fn account_json(a: &AccountInfo) -> Value {
    json!({
        "account": a.id.to_hex(),
        "address": Address(a.id).to_string(),
        "kind": a.kind.map_or("unknown", |k| k.as_str()),
        "status": a.status.map_or("unknown", |s| s.as_str()),
        "bank": a.bank.to_hex(),
        "bank_address": Address(a.bank).to_string(),
        "balance": format_rubles(a.balance),
        "balance_kopecks": a.balance,
        "outflow_today": format_rubles(a.outflow_today),
        "outflow_today_kopecks": a.outflow_today,
        "opened_height": a.opened_height,
        "limits": limits_json(&a.limits),
    })
}

/// JSON of limits: rubles (or "unlimited") and kopecks.
pub fn limits_json(l: &ruble_domain::types::Limits) -> Value {
    json!({
        "balance_cap": cap_text(l.balance_cap),
        "balance_cap_kopecks": l.balance_cap,
        "payment_cap": cap_text(l.payment_cap),
        "payment_cap_kopecks": l.payment_cap,
        "daily_outflow_cap": cap_text(l.daily_outflow_cap),
        "daily_outflow_cap_kopecks": l.daily_outflow_cap,
    })
}

/// A table of operations: height, time, kind, from, to, amount, purpose, tx.
pub fn records_table(records: &[Record]) -> Table {
    let mut t = Table::new(&[
        ">HEIGHT",
        ">CURSOR",
        "TIME",
        "KIND",
        "FROM",
        "TO",
        ">AMOUNT_RUB",
        ">AMOUNT_KOPECKS",
        "PURPOSE",
        "TX_ID",
    ]);
    for r in records {
        t.push(record_row(r));
    }
    t
}

/// One row of [`records_table`].
pub fn record_row(r: &Record) -> Vec<String> {
    vec![
        r.height.to_string(),
        r.cursor.to_string(),
        time_text(r.timestamp_ms),
        r.kind.clone(),
        addr(r.from),
        addr(r.to),
        format_rubles(r.amount),
        r.amount.to_string(),
        r.purpose.clone(),
        r.tx_id.to_hex(),
    ]
}

/// A table of accounts.
pub fn accounts_table(accounts: &[AccountInfo]) -> Table {
    let mut t = Table::new(&[
        "ACCOUNT",
        "KIND",
        "STATUS",
        "BANK",
        ">BALANCE_RUB",
        ">BALANCE_KOPECKS",
        ">OPENED_HEIGHT",
    ]);
    for a in accounts {
        t.push(vec![
            Address(a.id).to_string(),
            a.kind.map_or("unknown", |k| k.as_str()).into(),
            a.status.map_or("unknown", |s| s.as_str()).into(),
            Address(a.bank).to_string(),
            format_rubles(a.balance),
            a.balance.to_string(),
            a.opened_height.to_string(),
        ]);
    }
    t
}

/// The people's view of one account.
pub fn account_text(a: &AccountInfo) -> String {
    format!(
        "account      {}\n             {}\nkind         {}\nstatus       {}\nbank         {}\nbalance      {} ₽\nspent today  {} ₽\nlimits       payment {} / daily {} / balance {}\nopened in    block {}\n",
        Address(a.id),
        a.id.to_hex(),
        a.kind.map_or("unknown", |k| k.as_str()),
        a.status.map_or("unknown", |s| s.as_str()),
        Address(a.bank),
        format_rubles(a.balance),
        format_rubles(a.outflow_today),
        cap_text(a.limits.payment_cap),
        cap_text(a.limits.daily_outflow_cap),
        cap_text(a.limits.balance_cap),
        a.opened_height,
    )
}

/// The people's line for a committed submission.
pub fn committed_text(p: &Payment) -> String {
    format!(
        "committed: tx {} in block {}{}",
        p.receipt.tx_id,
        p.receipt.height,
        if p.duplicate {
            " (already committed before: original receipt)"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_and_dates() {
        for s in [
            "2026-03-01T12:34:56Z",
            "2026-03-01T12:34:56.789Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59Z",
        ] {
            let want = humantime::parse_rfc3339(s)
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            assert_eq!(parse_time_ms(s), Some(want), "{s}");
        }
        assert_eq!(
            parse_time_ms("2026-03-01T15:34:56+03:00"),
            parse_time_ms("2026-03-01T12:34:56Z")
        );
        assert_eq!(
            parse_time_ms("2026-03-01T09:04:56.5-03:30"),
            parse_time_ms("2026-03-01T12:34:56.500Z")
        );
        assert_eq!(parse_time_ms("2026-03-01"), parse_time_ms("2026-03-01T00:00:00Z"));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-03-01T12:34:56",
            "2026-03-01T25:00:00Z",
            "yesterday",
            "2026-3-1",
            "",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
        assert_eq!(parse_bound("42", "--since").unwrap(), Bound::Height(42));
        assert!(matches!(parse_bound("2026-03-01", "--since").unwrap(), Bound::Time(_)));
        assert!(parse_bound("soon", "--since").is_err());
    }

    #[test]
    fn tables_align_and_csv_quotes() {
        let mut t = Table::new(&["NAME", ">AMOUNT"]);
        t.push(vec!["a".into(), "1.00".into()]);
        t.push(vec!["longer, with comma".into(), "100.50".into()]);
        let text = t.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME                AMOUNT");
        assert_eq!(lines[1], "a                     1.00");
        assert_eq!(lines[2], "longer, with comma  100.50");
        assert_eq!(t.csv(), "NAME,AMOUNT\na,1.00\n\"longer, with comma\",100.50\n");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn caps_and_failures() {
        assert_eq!(parse_cap("unlimited", "--x").unwrap(), u64::MAX);
        assert_eq!(parse_cap("100.5", "--x").unwrap(), 100_50);
        assert!(parse_cap("-1", "--x").is_err());
        assert_eq!(cap_text(u64::MAX), "unlimited");
        let f = Failure::from(Error::Rejected {
            reason: ruble_domain::Reason::InsufficientFunds,
            message: String::new(),
        });
        assert_eq!((f.code, f.reason.as_str()), (2, "INSUFFICIENT_FUNDS"));
        let f = Failure::from(Error::Rejected {
            reason: ruble_domain::Reason::Unavailable,
            message: "disk full".into(),
        });
        assert_eq!(f.code, 3);
        assert_eq!(Failure::from(Error::Transport("x".into())).code, 3);
        assert_eq!(Failure::from(Error::WrongPassphrase).code, 4);
        assert_eq!(Failure::from(Error::Certificate("x".into())).code, 4);
        assert_eq!(Failure::from(Error::Config("x".into())).code, 1);
        // A certificate of the wrong role, or none, is a certificate problem.
        for code in ["WRONG_ROLE", "CLIENT_CERTIFICATE_REQUIRED"] {
            let f = Failure::from(Error::Refused {
                code: code.into(),
                message: "x".into(),
            });
            assert_eq!((f.code, f.reason.as_str()), (4, code));
        }
        let f = Failure::from(Error::Refused {
            code: "UNAVAILABLE".into(),
            message: "x".into(),
        });
        assert_eq!(f.code, 3);
        let f = Failure::from(Error::Refused {
            code: "STALE_QUERY".into(),
            message: "x".into(),
        });
        assert_eq!(f.code, 2);
    }

    #[test]
    fn csv_defuses_formulas_and_keeps_numbers() {
        for (field, want) in [
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("+7 495 123", "'+7 495 123"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "\"'\rcmd\""),
            ("-351.75", "-351.75"),
            ("-35175", "-35175"),
            ("+250.75", "+250.75"),
            ("-", "'-"),
            ("-1.", "'-1."),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(csv_field(field), want, "{field:?}");
        }
    }

    #[test]
    fn text_escapes_control_characters() {
        assert!(matches!(printable("Счёт №42, plain"), Cow::Borrowed(_)));
        assert_eq!(printable("\u{1b}[2Jred\u{7}"), "\\u{1b}[2Jred\\u{7}");
        assert_eq!(printable("a\nb\tc\rd\u{0}"), "a\\nb\\tc\\rd\\u{0}");
        assert_eq!(printable("\u{9b}31m \u{7f}"), "\\u{9b}31m \\u{7f}");
        assert_eq!(printable("pay \u{202e}00.001"), "pay \\u{202e}00.001");
        let mut t = Table::new(&["PURPOSE", ">AMOUNT"]);
        t.push(vec!["\u{1b}]0;owned\u{7}".into(), "1.00".into()]);
        let text = t.text();
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
        assert!(text.contains("\\u{1b}]0;owned\\u{7}"), "{text:?}");
        // The columns align on what is shown.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].len(), lines[1].len(), "{text}");
        assert_eq!(text_row(&["x\u{1b}".into(), "y".into()]), "x\\u{1b}  y");
    }

    #[test]
    fn passphrases_come_from_the_file_the_flag_or_the_variable() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pass");
        std::fs::write(&f, "from file\r\n").unwrap();
        let none = Passphrase {
            file: None,
            value: None,
            env: "RUBLE_TEST_PASSPHRASE_UNSET_VARIABLE",
        };
        assert_eq!(none.given().unwrap(), None);
        let from_file = Passphrase {
            file: Some(f.clone()),
            ..none.clone()
        };
        assert_eq!(from_file.given().unwrap().as_deref(), Some("from file"));
        std::fs::write(&f, "two\nlines\n").unwrap();
        assert_eq!(
            from_file.given().unwrap().as_deref(),
            Some("two\nlines"),
            "only the last line end goes"
        );
        let flag = Passphrase {
            value: Some("flag".into()),
            ..none.clone()
        };
        assert_eq!(flag.given().unwrap().as_deref(), Some("flag"));
        let missing = Passphrase {
            file: Some(d.path().join("nope")),
            ..none.clone()
        };
        let e = missing.given().unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (4, "KEY_FILE"));
        // Without a terminal (the test's stdin is not one under cargo test
        // in CI; skip the check where it is).
        if !interactive() {
            let e = none.get("k.json", false).unwrap_err();
            assert_eq!(e.code, 4);
            assert!(e.message.contains("--passphrase-file") && e.message.contains(none.env));
        }
    }
}
