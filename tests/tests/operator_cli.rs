//! The operator command lines, `ruble-admin` (the central bank) and
//! `ruble-bank` (a bank), as real binaries against a real dev node, every
//! effect checked through the node; and the central bank's `ListAccounts`.
//!
//! Needs `cargo build --workspace --bins` first.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ruble_e2e::ruble_ledger::codec::Op;
use ruble_e2e::ruble_ledger::pipeline::PipelineConfig;
use ruble_e2e::ruble_ledger::types::{AccountId, AccountKind};
use ruble_e2e::ruble_proto::v1 as pb;
use ruble_e2e::*;
use ruble_gateway::ctx::ClientLimits;
use ruble_wallet::{Address, Reason, WalletKey};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tonic::Code;

/// What a run of a CLI gave.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// The last stdout line as JSON.
    fn json(&self) -> Value {
        let last = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// stdout as CSV rows (header first).
    fn csv(&self) -> Vec<Vec<String>> {
        parse_csv(&self.stdout)
    }

    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A strict RFC 4180 reader: every row must have as many fields as the header.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "CSV must end with a line end: {text:?}"
    );
    let n = rows.first().map_or(0, Vec::len);
    assert!(rows.iter().all(|r| r.len() == n), "ragged CSV: {text}");
    rows
}

/// A CLI with none of the test's RUBLE_* variables and no terminal.
fn command(name: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin(name));
    c.stdin(Stdio::null()).kill_on_drop(true);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RUBLE_") {
            c.env_remove(k);
        }
    }
    c
}

async fn run_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = command(name)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn dev(t: &TestNode) -> String {
    t.path().to_str().unwrap().to_string()
}

/// `ruble-admin --dev-dir <t> ARGS`.
async fn admin(t: &TestNode, args: &[&str]) -> Out {
    let d = dev(t);
    let mut all = vec!["--dev-dir", d.as_str()];
    all.extend_from_slice(args);
    run_with("ruble-admin", &all, &[]).await
}

/// `ruble-bank --dev-dir <t> ARGS` (the first dev bank unless ARGS pick one).
async fn bank(t: &TestNode, args: &[&str]) -> Out {
    let d = dev(t);
    let mut all = vec!["--dev-dir", d.as_str()];
    all.extend_from_slice(args);
    run_with("ruble-bank", &all, &[]).await
}

fn ok(o: &Out) -> Value {
    assert_eq!(o.code, 0, "{o:?}");
    o.json()
}

/// A refusal: exit 2 with the reason in the JSON error and the output.
fn refused(o: &Out, reason: &str) {
    assert_eq!(o.code, 2, "{o:?}");
    assert_eq!(o.json()["error"], reason, "{o:?}");
}

fn addr(id: AccountId) -> String {
    Address(id).to_string()
}

fn wallet(t: &TestNode, i: usize) -> WalletKey {
    WalletKey::from_signing_key(t.business_key(i))
}

async fn chain_info(t: &TestNode) -> pb::ChainInfo {
    t.wallet(Role::Anonymous)
        .await
        .get_chain_info(pb::GetChainInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn account(t: &TestNode, a: AccountId) -> pb::Account {
    t.cb(Role::CentralBank)
        .await
        .get_any_account(pb::GetClientAccountRequest { account: a.0.to_vec() })
        .await
        .unwrap()
        .into_inner()
}

fn bank_id(t: &TestNode, i: usize) -> AccountId {
    id(&t.bank_key(i))
}

/// A drastic step without --yes and without a terminal: exit 1, says to
/// pass --yes, and nothing changed.
async fn unconfirmed(t: &TestNode, o: Out, before: &[u8]) {
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.json()["error"], "NOT_CONFIRMED");
    assert!(o.all().contains("--yes"), "{o:?}");
    assert_eq!(t.state_hash().await, before, "an unconfirmed step changed the state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_issues_and_redeems_and_reports_supply_as_json_and_csv() {
    let t = TestNode::start().await;
    let b0 = bank_id(&t, 0);
    let name0 = t.manifest.banks[0].name.clone();
    let s0 = t.supply().await;
    let settlement0 = t.balance(b0).await;

    // issue, the bank named by its name; the exact kopecks land.
    let v = ok(&admin(&t, &["--json", "issue", "--bank", &name0, "--amount", "1000.55"]).await);
    assert_eq!(
        (v["amount_kopecks"].as_u64(), v["bank"].as_str()),
        (Some(1000_55), Some(b0.to_hex().as_str()))
    );
    let s1 = t.supply().await;
    assert_eq!(s1.issued, s0.issued + 1000_55);
    assert_eq!(t.balance(b0).await, settlement0 + 1000_55);
    assert!(s1.height > s0.height && v["height"].as_u64() == Some(s1.height));

    // redeem asks first: refused without a terminal, nothing changes.
    let before = t.state_hash().await;
    let o = admin(&t, &["--json", "redeem", "--bank", &addr(b0), "--amount", "0.55"]).await;
    unconfirmed(&t, o, &before).await;
    let v = ok(&admin(
        &t,
        &["--json", "--yes", "redeem", "--bank", &b0.to_hex(), "--amount", "0.55"],
    )
    .await);
    assert_eq!(v["amount_kopecks"], 55);
    let s2 = t.supply().await;
    assert_eq!(
        (s2.redeemed, s2.in_circulation),
        (s0.redeemed + 55, s1.in_circulation - 55)
    );
    assert_eq!(t.balance(b0).await, settlement0 + 1000_00);

    // A refusal: exit 2, the ledger's reason in the JSON and in the human message.
    let before = t.state_hash().await;
    let o = admin(
        &t,
        &[
            "--json",
            "--yes",
            "redeem",
            "--bank",
            &name0,
            "--amount",
            "999999999999",
        ],
    )
    .await;
    refused(&o, "INSUFFICIENT_FUNDS");
    let o = admin(&t, &["--yes", "redeem", "--bank", &name0, "--amount", "999999999999"]).await;
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("INSUFFICIENT_FUNDS"), "{o:?}");
    assert_eq!(t.state_hash().await, before);

    // supply as JSON, CSV and a table agree with the node.
    let s = t.supply().await;
    let v = ok(&admin(&t, &["--json", "supply"]).await);
    let sup = &v["supply"];
    assert_eq!(sup["issued_kopecks"].as_u64(), Some(s.issued));
    assert_eq!(sup["in_circulation"], ruble_wallet::format_rubles(s.in_circulation));
    assert_eq!(sup["banks"].as_array().unwrap().len(), s.banks.len());
    let o = admin(&t, &["supply", "--csv"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let rows = o.csv();
    let col = |h: &str| rows[0].iter().position(|x| x == h).unwrap();
    assert_eq!(rows.len(), 1 + s.banks.len());
    for b in &s.banks {
        let row = rows
            .iter()
            .find(|r| r[col("BANK")] == addr(AccountId::from_slice(&b.bank).unwrap()))
            .expect("every bank has a row");
        assert_eq!(row[col("NAME")], b.name);
        assert_eq!(row[col("SETTLEMENT_KOPECKS")], b.settlement_balance.to_string());
        assert_eq!(
            row[col("SETTLEMENT_RUB")],
            ruble_wallet::format_rubles(b.settlement_balance)
        );
        assert_eq!(row[col("CLIENTS")], b.clients.to_string());
    }
    let o = admin(&t, &["supply"]).await;
    assert!(
        o.code == 0 && o.stdout.contains(&name0) && o.stdout.contains("in circulation"),
        "{o:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_runs_banks_phase_limits_and_threshold() {
    let t = TestNode::start().await;

    // admit-bank: the new bank appears in the supply under its name.
    let newbank = WalletKey::generate();
    let v = ok(&admin(
        &t,
        &[
            "--json",
            "admit-bank",
            "--bank",
            &newbank.address().to_string(),
            "--name",
            "gamma-bank",
        ],
    )
    .await);
    assert_eq!(v["name"], "gamma-bank");
    let find = |s: &pb::SupplyReport| {
        s.banks
            .iter()
            .find(|b| b.bank == newbank.account_id().0.to_vec())
            .cloned()
    };
    let gamma = find(&t.supply().await).expect("admitted");
    assert_eq!((gamma.name.as_str(), gamma.suspended), ("gamma-bank", false));

    // suspend-bank asks first; then the bank is suspended.
    let before = t.state_hash().await;
    unconfirmed(
        &t,
        admin(&t, &["--json", "suspend-bank", "--bank", "gamma-bank"]).await,
        &before,
    )
    .await;
    ok(&admin(&t, &["--json", "--yes", "suspend-bank", "--bank", "gamma-bank"]).await);
    assert!(find(&t.supply().await).unwrap().suspended);
    refused(
        &admin(&t, &["--json", "--yes", "suspend-bank", "--bank", "gamma-bank"]).await,
        "BANK_ALREADY_SUSPENDED",
    );

    // Retail wallets: refused before the retail phase, opened after it.
    let retail = WalletKey::generate();
    let ra = retail.address().to_string();
    let o = bank(&t, &["open-account", "--account", &ra, "--kind", "retail"]).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.all().contains("PHASE_NOT_OPEN"), "{o:?}");
    let v = ok(&admin(&t, &["--json", "phase"]).await);
    assert_eq!(v["phase"], "business");
    let before = t.state_hash().await;
    unconfirmed(&t, admin(&t, &["--json", "phase", "retail"]).await, &before).await;
    // Each phase's question says what that phase means.
    let o = admin(&t, &["--json", "phase", "business"]).await;
    let question = o.json()["message"].as_str().unwrap_or_default().to_string();
    unconfirmed(&t, o, &before).await;
    assert!(
        question.contains("business wallets only") && !question.contains("retail wallets for the public"),
        "{question}"
    );
    ok(&admin(&t, &["--json", "--yes", "phase", "retail"]).await);
    assert_eq!(chain_info(&t).await.phase, pb::Phase::Retail as i32);
    let v = ok(&bank(&t, &["--json", "open-account", "--account", &ra, "--kind", "retail"]).await);
    assert_eq!(v["kind"], "retail");
    let a = account(&t, retail.account_id()).await;
    assert_eq!(
        (a.kind, a.bank),
        (pb::AccountKind::Retail as i32, bank_id(&t, 0).0.to_vec())
    );
    refused(
        &admin(&t, &["--json", "--yes", "phase", "business"]).await,
        "PHASE_NOT_FORWARD",
    );

    // limits show: JSON and CSV agree with the chain parameters.
    let info = chain_info(&t).await;
    let rl = info.retail_limits.unwrap();
    let v = ok(&admin(&t, &["--json", "limits", "show"]).await);
    assert_eq!(
        v["limits"]["retail"]["payment_cap_kopecks"].as_u64(),
        Some(rl.payment_cap)
    );
    assert_eq!(
        v["limits"]["retail"]["payment_cap"],
        ruble_wallet::format_rubles(rl.payment_cap)
    );
    assert_eq!(v["limits"]["business"]["payment_cap"], "unlimited");
    assert!(v["limits"]["settlement"].is_object(), "{v}");
    let o = admin(&t, &["limits", "show", "--csv"]).await;
    let rows = o.csv();
    assert_eq!(rows.len(), 4, "{o:?}");
    let retail_row = rows.iter().find(|r| r[0] == "retail").unwrap();
    assert_eq!(retail_row[2], ruble_wallet::format_rubles(rl.payment_cap));

    // limits set changes only the caps given (after asking).
    let before = t.state_hash().await;
    let o = admin(
        &t,
        &["--json", "limits", "set", "--kind", "retail", "--payment-cap", "50000"],
    )
    .await;
    unconfirmed(&t, o, &before).await;
    let v = ok(&admin(
        &t,
        &[
            "--json",
            "--yes",
            "limits",
            "set",
            "--kind",
            "retail",
            "--payment-cap",
            "50000.01",
        ],
    )
    .await);
    assert_eq!(v["previous"]["payment_cap_kopecks"].as_u64(), Some(rl.payment_cap));
    let now = chain_info(&t).await.retail_limits.unwrap();
    assert_eq!(
        (now.balance_cap, now.payment_cap, now.daily_outflow_cap),
        (rl.balance_cap, 50_000_01, rl.daily_outflow_cap)
    );
    ok(&admin(
        &t,
        &[
            "--json",
            "--yes",
            "limits",
            "set",
            "--kind",
            "business",
            "--daily-cap",
            "123",
            "--balance-cap",
            "unlimited",
        ],
    )
    .await);
    let bl = chain_info(&t).await.business_limits.unwrap();
    assert_eq!(
        (bl.daily_outflow_cap, bl.balance_cap, bl.payment_cap),
        (123_00, u64::MAX, u64::MAX)
    );
    // The business wallet of business-1 now may pay at most 123 ₽ a day.
    let c = t.sdk().await;
    let err = c
        .pay(&wallet(&t, 0), wallet(&t, 2).account_id(), 123_01, "over the new cap")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(Reason::DailyLimitExceeded));

    // threshold: shown, then set exactly.
    let v = ok(&admin(&t, &["--json", "threshold"]).await);
    assert_eq!(v["threshold_kopecks"].as_u64(), Some(info.reporting_threshold));
    ok(&admin(&t, &["--json", "threshold", "--amount", "1000.10"]).await);
    assert_eq!(chain_info(&t).await.reporting_threshold, 1000_10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezes_by_the_central_bank_and_by_the_bank_stop_payments() {
    let t = TestNode::start().await;
    let c = t.sdk().await;
    let (payer, payee) = (wallet(&t, 0), wallet(&t, 2)); // both bank 0's clients
    let pa = payer.address().to_string();

    // The central bank freezes (after --yes): frozen, and a payment is refused.
    let before = t.state_hash().await;
    unconfirmed(&t, admin(&t, &["--json", "freeze", "--account", &pa]).await, &before).await;
    ok(&admin(&t, &["--json", "--yes", "freeze", "--account", &pa]).await);
    assert_eq!(
        account(&t, payer.account_id()).await.status,
        pb::AccountStatus::Frozen as i32
    );
    let err = c
        .pay(&payer, payee.account_id(), 1_00, "while frozen")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(Reason::AccountFrozen));
    let v = ok(&bank(&t, &["--json", "account", "--account", &pa]).await);
    assert_eq!(v["status"], "frozen");
    // The bank may not lift the central bank's freeze; the central bank may.
    refused(
        &bank(&t, &["--json", "unfreeze", "--account", &pa]).await,
        "NOT_AUTHORISED",
    );
    ok(&admin(&t, &["--json", "unfreeze", "--account", &pa]).await);
    assert_eq!(
        account(&t, payer.account_id()).await.status,
        pb::AccountStatus::Active as i32
    );
    c.pay(&payer, payee.account_id(), 1_00, "after unfreeze").await.unwrap();

    // The bank freezes its client (after --yes) and unfreezes it.
    let before = t.state_hash().await;
    unconfirmed(&t, bank(&t, &["--json", "freeze", "--account", &pa]).await, &before).await;
    ok(&bank(&t, &["--json", "--yes", "freeze", "--account", &pa]).await);
    assert_eq!(
        account(&t, payer.account_id()).await.status,
        pb::AccountStatus::Frozen as i32
    );
    let err = c
        .pay(&payer, payee.account_id(), 1_00, "while frozen")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(Reason::AccountFrozen));
    refused(
        &bank(&t, &["--json", "--yes", "freeze", "--account", &pa]).await,
        "ACCOUNT_FROZEN",
    );
    ok(&bank(&t, &["--json", "unfreeze", "--account", &pa]).await);
    c.pay(&payer, payee.account_id(), 1_00, "after the bank's unfreeze")
        .await
        .unwrap();

    // Another bank's client: refused, unchanged.
    let other = wallet(&t, 1).address().to_string(); // bank 1's
    let before = t.state_hash().await;
    refused(
        &bank(&t, &["--json", "--yes", "freeze", "--account", &other]).await,
        "NOT_AUTHORISED",
    );
    refused(
        &bank(&t, &["--json", "account", "--account", &other]).await,
        "NOT_AUTHORISED",
    );
    assert_eq!(t.state_hash().await, before);
    // ... which bank 1 (picked by name) does serve.
    let name1 = t.manifest.banks[1].name.clone();
    let v = ok(&bank(&t, &["--json", "--bank-name", &name1, "account", "--account", &other]).await);
    assert_eq!(v["bank"], bank_id(&t, 1).to_hex());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_opens_lists_and_closes_a_wallet_with_statement_and_blocks() {
    let t = TestNode::start().await;
    let c = t.sdk().await;
    let client = WalletKey::generate();
    let ca = client.address().to_string();
    let start_height = chain_info(&t).await.height + 1;

    let v = ok(&bank(&t, &["--json", "open-account", "--account", &ca, "--kind", "business"]).await);
    let opened_at = v["height"].as_u64().unwrap();
    let a = account(&t, client.account_id()).await;
    assert_eq!(
        (a.kind, a.status),
        (pb::AccountKind::Business as i32, pb::AccountStatus::Active as i32)
    );
    refused(
        &bank(&t, &["--json", "open-account", "--account", &ca, "--kind", "business"]).await,
        "ACCOUNT_EXISTS",
    );

    // Two payments in, then the account and its statement.
    let p1 = c
        .pay(&wallet(&t, 0), client.account_id(), 250_75, "first")
        .await
        .unwrap();
    let p2 = c
        .pay(&wallet(&t, 2), client.account_id(), 100_00, "second")
        .await
        .unwrap();
    let v = ok(&bank(&t, &["--json", "account", "--account", &ca]).await);
    assert_eq!(
        (v["balance_kopecks"].as_u64(), v["balance"].as_str()),
        (Some(350_75), Some("350.75"))
    );
    assert_eq!(
        (v["kind"].as_str(), v["status"].as_str()),
        (Some("business"), Some("active"))
    );
    assert!(v["limits"]["payment_cap"].is_string() && v["outflow_today_kopecks"] == 0);
    let o = bank(&t, &["account", "--account", &ca]).await;
    assert!(o.code == 0 && o.stdout.contains("350.75 ₽"), "{o:?}");

    let v = ok(&bank(&t, &["--json", "statement", "--account", &ca]).await);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "open, two payments: {v}");
    assert_eq!(entries[0]["kind"], "open_account");
    assert_eq!(entries[1]["tx_id"], p1.receipt.tx_id.to_hex());
    assert_eq!(
        (entries[1]["direction"].as_str(), entries[1]["amount_kopecks"].as_u64()),
        (Some("in"), Some(250_75))
    );
    assert_eq!(entries[2]["purpose"], "second");
    assert_eq!(v["more"], false);
    // Paged: one entry a page, `more` and `next_cursor` walk the same entries.
    let v = ok(&bank(&t, &["--json", "statement", "--account", &ca, "--limit", "1"]).await);
    assert_eq!(
        (v["entries"].as_array().unwrap().len(), v["more"].as_bool()),
        (1, Some(true))
    );
    let next = v["next_cursor"].as_u64().unwrap().to_string();
    let v = ok(&bank(
        &t,
        &[
            "--json",
            "statement",
            "--account",
            &ca,
            "--cursor",
            &next,
            "--limit",
            "1",
        ],
    )
    .await);
    assert_eq!(v["entries"][0]["tx_id"], p1.receipt.tx_id.to_hex());
    let v = ok(&bank(
        &t,
        &[
            "--json",
            "statement",
            "--account",
            &ca,
            "--cursor",
            &next,
            "--limit",
            "1",
            "--all",
        ],
    )
    .await);
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    assert_eq!(v["more"], false);
    let o = bank(&t, &["statement", "--account", &ca, "--csv"]).await;
    let rows = o.csv();
    assert_eq!(rows.len(), 4, "{o:?}");
    let amount = rows[0].iter().position(|h| h == "AMOUNT_KOPECKS").unwrap();
    assert_eq!(rows[3][amount], "10000");

    // blocks without --follow ends at the head and holds this bank's operations.
    let from = start_height.to_string();
    let v = ok(&bank(&t, &["--json", "blocks", "--from-height", &from]).await);
    let blocks = v["blocks"].as_array().unwrap();
    let head = chain_info(&t).await.height;
    assert_eq!(blocks.last().unwrap()["height"].as_u64(), Some(head));
    assert_eq!(blocks.first().unwrap()["height"].as_u64(), Some(start_height));
    let ops: Vec<&Value> = blocks
        .iter()
        .flat_map(|b| b["operations"].as_array().unwrap())
        .collect();
    assert!(ops
        .iter()
        .any(|o| o["kind"] == "open_account" && o["height"] == opened_at));
    assert!(ops.iter().any(|o| o["tx_id"] == p2.receipt.tx_id.to_hex()));
    let o = bank(&t, &["blocks", "--from-height", &from, "--csv"]).await;
    assert_eq!(o.csv().len(), 1 + ops.len(), "{o:?}");
    // Bank 1 sees only what touches its clients: not this bank-0 wallet's opening.
    let v = ok(&bank(&t, &["--json", "--bank-name", "1", "blocks", "--from-height", &from]).await);
    let theirs: Vec<&Value> = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["operations"].as_array().unwrap())
        .collect();
    assert!(theirs.iter().all(|o| o["kind"] != "open_account"), "{v}");

    // blocks --follow prints new blocks as they commit.
    let d = dev(&t);
    let next_h = (head + 1).to_string();
    let mut child = command("ruble-bank")
        .args([
            "--dev-dir",
            &d,
            "--json",
            "blocks",
            "--follow",
            "--from-height",
            &next_h,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let p3 = c.pay(&wallet(&t, 0), client.account_id(), 1_00, "live").await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a live block")
        .unwrap()
        .unwrap();
    let live: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(live["height"].as_u64(), Some(p3.receipt.height));
    assert_eq!(live["operations"][0]["tx_id"], p3.receipt.tx_id.to_hex());
    child.kill().await.unwrap();

    // close-account: asks first; refused while the balance is not zero; then closed.
    let before = t.state_hash().await;
    unconfirmed(
        &t,
        bank(&t, &["--json", "close-account", "--account", &ca]).await,
        &before,
    )
    .await;
    refused(
        &bank(&t, &["--json", "--yes", "close-account", "--account", &ca]).await,
        "BALANCE_NOT_ZERO",
    );
    c.pay(&client, wallet(&t, 0).account_id(), 351_75, "empty it")
        .await
        .unwrap();
    // Both amount columns are signed from the account's side: in and out.
    let o = bank(&t, &["statement", "--account", &ca, "--csv"]).await;
    let rows = o.csv();
    let col = |h: &str| rows[0].iter().position(|x| x == h).unwrap();
    let (dir, rub, kop) = (col("DIRECTION"), col("AMOUNT_RUB"), col("AMOUNT_KOPECKS"));
    let out = rows.last().unwrap();
    assert_eq!(
        (out[dir].as_str(), out[rub].as_str(), out[kop].as_str()),
        ("out", "-351.75", "-35175"),
        "{o:?}"
    );
    let first_in = &rows[2];
    assert_eq!(
        (first_in[dir].as_str(), first_in[rub].as_str(), first_in[kop].as_str()),
        ("in", "+250.75", "25075"),
        "{o:?}"
    );
    let total: i64 = rows[1..].iter().map(|r| r[kop].parse::<i64>().unwrap()).sum();
    assert_eq!(total, 0, "the signed kopecks add up to the balance: {o:?}");
    ok(&bank(&t, &["--json", "--yes", "close-account", "--account", &ca]).await);
    assert_eq!(
        account(&t, client.account_id()).await.status,
        pb::AccountStatus::Closed as i32
    );

    // settlement: the bank's own account.
    let v = ok(&bank(&t, &["--json", "settlement"]).await);
    assert_eq!(v["balance_kopecks"].as_u64(), Some(t.balance(bank_id(&t, 0)).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payments_and_the_report() {
    let t = TestNode::start().await;
    let c = t.sdk().await;
    let threshold = chain_info(&t).await.reporting_threshold;
    // The dev funding (block 1) is four large payments.
    let v = ok(&admin(&t, &["--json", "large-payments"]).await);
    let dev_large = v["large_payments"].as_array().unwrap().len();
    assert_eq!(dev_large, 4, "{v}");
    assert!(v["large_payments"].as_array().unwrap().iter().all(|r| r["height"] == 1));

    let big = c
        .pay(
            &wallet(&t, 0),
            wallet(&t, 1).account_id(),
            threshold,
            "at the threshold",
        )
        .await
        .unwrap();
    assert!(big.receipt.large);
    c.pay(&wallet(&t, 2), wallet(&t, 1).account_id(), threshold - 1, "just below")
        .await
        .unwrap();
    let frozen = wallet(&t, 3);
    ok(&admin(
        &t,
        &["--json", "--yes", "freeze", "--account", &frozen.address().to_string()],
    )
    .await);

    // Without --follow: what exists, then exit.
    let started = std::time::Instant::now();
    let o = admin(&t, &["--json", "large-payments"]).await;
    assert!(started.elapsed() < Duration::from_secs(30), "large-payments must end");
    let v = ok(&o);
    let list = v["large_payments"].as_array().unwrap();
    assert_eq!(list.len(), dev_large + 1, "{v}");
    let last = list.last().unwrap();
    assert_eq!(last["tx_id"], big.receipt.tx_id.to_hex());
    assert_eq!(
        (last["amount_kopecks"].as_u64(), last["purpose"].as_str()),
        (Some(threshold), Some("at the threshold"))
    );
    let h = big.receipt.height.to_string();
    let v = ok(&admin(&t, &["--json", "large-payments", "--from-height", &h]).await);
    assert_eq!(v["large_payments"].as_array().unwrap().len(), 1);
    let o = admin(&t, &["large-payments", "--csv"]).await;
    let rows = o.csv();
    assert_eq!(rows.len(), 1 + dev_large + 1, "{o:?}");
    let tx = rows[0].iter().position(|h| h == "TX_ID").unwrap();
    assert_eq!(rows.last().unwrap()[tx], big.receipt.tx_id.to_hex());

    // --follow prints a new large payment as it commits.
    let d = dev(&t);
    let next_h = (chain_info(&t).await.height + 1).to_string();
    let mut child = command("ruble-admin")
        .args([
            "--dev-dir",
            &d,
            "--json",
            "large-payments",
            "--follow",
            "--from-height",
            &next_h,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let live = c
        .pay(&wallet(&t, 1), wallet(&t, 0).account_id(), threshold + 1, "live large")
        .await
        .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a live large payment")
        .unwrap()
        .unwrap();
    let r: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(r["tx_id"], live.receipt.tx_id.to_hex());
    child.kill().await.unwrap();

    // The report has the three sections.
    let s = t.supply().await;
    let v = ok(&admin(&t, &["--json", "report"]).await);
    assert_eq!(v["supply"]["banks"].as_array().unwrap().len(), s.banks.len());
    assert_eq!(v["supply"]["issued_kopecks"].as_u64(), Some(s.issued));
    assert_eq!(v["large_payments"].as_array().unwrap().len(), dev_large + 2);
    let frozen_list = v["frozen_accounts"].as_array().unwrap();
    assert_eq!(frozen_list.len(), 1, "{v}");
    assert_eq!(frozen_list[0]["account"], frozen.account_id().to_hex());
    // By heights: from the big payment's block up to it.
    let v = ok(&admin(&t, &["--json", "report", "--since", &h, "--until", &h]).await);
    let l = v["large_payments"].as_array().unwrap();
    assert_eq!((l.len(), &l[0]["tx_id"]), (1, &Value::from(big.receipt.tx_id.to_hex())));
    assert_eq!(
        (v["period"]["from_height"].as_u64(), v["period"]["to_height"].as_u64()),
        (Some(big.receipt.height), Some(big.receipt.height))
    );
    // By times: RFC 3339, both ends included.
    let at = ruble_wallet::cli::time_text(big.receipt.timestamp_ms);
    let after = ruble_wallet::cli::time_text(big.receipt.timestamp_ms + 1);
    let v = ok(&admin(&t, &["--json", "report", "--since", &at, "--until", &at]).await);
    assert_eq!(v["large_payments"].as_array().unwrap().len(), 1, "{v}");
    let v = ok(&admin(
        &t,
        &["--json", "report", "--since", &after, "--section", "large-payments"],
    )
    .await);
    let l = v["large_payments"].as_array().unwrap();
    assert_eq!(
        (l.len(), &l[0]["tx_id"]),
        (1, &Value::from(live.receipt.tx_id.to_hex())),
        "{v}"
    );
    assert!(v.get("supply").is_none() && v.get("frozen_accounts").is_none());
    // CSV of one section, and of all three.
    let o = admin(&t, &["report", "--csv", "--section", "frozen"]).await;
    let rows = o.csv();
    assert_eq!(
        (rows.len(), rows[1][0].as_str()),
        (2, frozen.address().to_string().as_str()),
        "{o:?}"
    );
    let o = admin(&t, &["report", "--csv"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let sections: Vec<&str> = o.stdout.split("\n\n").filter(|s| !s.trim().is_empty()).collect();
    assert_eq!(sections.len(), 3, "{}", o.stdout);
    for (sec, name) in sections
        .iter()
        .zip(["# supply", "# large-payments", "# frozen-accounts"])
    {
        let (title, body) = sec.split_once('\n').unwrap();
        assert_eq!(title, name);
        parse_csv(&format!("{body}\n"));
    }
    let o = admin(&t, &["report"]).await;
    assert!(
        o.code == 0 && o.stdout.contains("Large payments") && o.stdout.contains("Frozen accounts"),
        "{o:?}"
    );
}

/// A `ruble-node init` layout made from the dev network: node.toml with a
/// wildcard listen address, pki/, and an encrypted central-bank key.
fn network_dir(t: &TestNode, dir: &Path, passphrase: &str) {
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    std::fs::write(
        dir.join("node.toml"),
        format!("listen = \"0.0.0.0:{}\"\n\n[limits]\nmax_page = 1000\n", t.addr.port()),
    )
    .unwrap();
    for f in ["ca.pem", "central-bank.pem", "central-bank-key.pem"] {
        std::fs::copy(t.path().join("pki").join(f), dir.join("pki").join(f)).unwrap();
    }
    WalletKey::from_signing_key(t.cb_key())
        .save(&dir.join("central-bank-key.json"), Some(passphrase))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_for_unreachable_nodes_key_and_certificate_problems() {
    let t = TestNode::start().await;
    let d = dev(&t);
    let b0 = bank_id(&t, 0).to_hex();
    let before = t.state_hash().await;

    // 3: an endpoint with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("https://127.0.0.1:{port}");
    for (name, command) in [("ruble-admin", "supply"), ("ruble-bank", "settlement")] {
        let o = run_with(
            name,
            &[
                "--dev-dir",
                &d,
                "--endpoint",
                &nowhere,
                "--timeout",
                "3s",
                "--json",
                command,
            ],
            &[],
        )
        .await;
        assert_eq!((o.code, o.json()["error"].as_str()), (3, Some("UNREACHABLE")), "{o:?}");
    }

    // 4: a garbage certificate file, for both CLIs; nothing is sent.
    let garbage = t.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let g = garbage.to_str().unwrap();
    let o = admin(&t, &["--json", "--cert", g, "issue", "--bank", &b0, "--amount", "1"]).await;
    assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("CERTIFICATE")), "{o:?}");
    let o = bank(&t, &["--json", "--cert-key", g, "settlement"]).await;
    assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("CERTIFICATE")), "{o:?}");
    // A certificate whose key is another participant's.
    let other_key = t.path().join("pki/central-bank-key.pem");
    let o = bank(&t, &["--json", "--cert-key", other_key.to_str().unwrap(), "settlement"]).await;
    assert_eq!(o.code, 4, "{o:?}");
    // A client certificate from another CA, which the node refuses in the TLS
    // handshake (in TLS 1.3 its alert comes with the first call, not at
    // connect); and a CA the node's certificate does not chain to.
    let other_ca = ruble_gateway::pki::generate_ca().unwrap();
    other_ca
        .issue_client(&ruble_gateway::auth::Participant::CentralBank)
        .unwrap()
        .write(t.path(), "foreign")
        .unwrap();
    let foreign_ca = t.path().join("foreign-ca.pem");
    std::fs::write(&foreign_ca, other_ca.cert_pem()).unwrap();
    let (fc, fk) = (t.path().join("foreign.pem"), t.path().join("foreign-key.pem"));
    let (fc, fk, fca) = (fc.to_str().unwrap(), fk.to_str().unwrap(), foreign_ca.to_str().unwrap());
    for (name, command) in [("ruble-admin", "supply"), ("ruble-bank", "settlement")] {
        // The node's alert follows its side of the handshake; on a loaded
        // machine the client's first request can cross the node's close, and
        // the client then reads a reset instead of the alert (exit 3). Up to
        // three runs; any answer but 3 or 4 fails at once, and never seeing 4
        // fails too.
        let mut o = None;
        for _ in 0..3 {
            let run = run_with(
                name,
                &["--dev-dir", &d, "--cert", fc, "--cert-key", fk, "--json", command],
                &[],
            )
            .await;
            assert!(run.code == 3 || run.code == 4, "{run:?}");
            let done = run.code == 4;
            o = Some(run);
            if done {
                break;
            }
        }
        let o = o.expect("ran");
        assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("CERTIFICATE")), "{o:?}");
        assert!(
            o.json()["message"]
                .as_str()
                .unwrap()
                .contains("refused our client certificate"),
            "{o:?}"
        );
        let o = run_with(name, &["--dev-dir", &d, "--ca", fca, "--json", command], &[]).await;
        assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("CERTIFICATE")), "{o:?}");
    }
    // A certificate of the wrong role: the central bank's on the bank service.
    let cb_cert = t.path().join("pki/central-bank.pem");
    let o = bank(
        &t,
        &[
            "--json",
            "--cert",
            cb_cert.to_str().unwrap(),
            "--cert-key",
            other_key.to_str().unwrap(),
            "settlement",
        ],
    )
    .await;
    assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("WRONG_ROLE")), "{o:?}");

    // 4: a wrong passphrase on an encrypted key; the right one (flag or
    // variable) works; none without a terminal is a key problem too.
    let enc = t.path().join("cb-encrypted.json");
    WalletKey::from_signing_key(t.cb_key())
        .save(&enc, Some("right"))
        .unwrap();
    let e = enc.to_str().unwrap();
    let issue = ["--json", "--key", e, "issue", "--bank", &b0, "--amount", "1"];
    // Passphrases from files (its line end is not part of it), not on the command line.
    let pass_file = |name: &str, text: &str| {
        let p = t.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (wrong, right) = (pass_file("wrong.pass", "wrong\n"), pass_file("right.pass", "right\n"));
    let o = admin(&t, &[&["--passphrase-file", wrong.as_str()], &issue[..]].concat()).await;
    assert_eq!(
        (o.code, o.json()["error"].as_str()),
        (4, Some("WRONG_PASSPHRASE")),
        "{o:?}"
    );
    let o = admin(&t, &issue).await;
    assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("KEY_FILE")), "{o:?}");
    assert!(
        o.all().contains("RUBLE_CB_PASSPHRASE") && o.all().contains("--passphrase-file"),
        "{o:?}"
    );
    // A passphrase file that cannot be read is a key problem; a file and
    // --passphrase together are a usage error.
    let nope = t.path().join("no-such.pass");
    let o = admin(
        &t,
        &[&["--passphrase-file", nope.to_str().unwrap()], &issue[..]].concat(),
    )
    .await;
    assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("KEY_FILE")), "{o:?}");
    let o = admin(
        &t,
        &[
            &["--passphrase-file", right.as_str(), "--passphrase", "right"],
            &issue[..],
        ]
        .concat(),
    )
    .await;
    assert_eq!(o.code, 1, "{o:?}");
    // A key that is not the central bank's.
    let k1 = t.key_file("business-1");
    let o = admin(
        &t,
        &[
            "--json",
            "--key",
            k1.to_str().unwrap(),
            "issue",
            "--bank",
            &b0,
            "--amount",
            "1",
        ],
    )
    .await;
    assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("KEY_FILE")), "{o:?}");
    // A damaged key file.
    let bad = t.path().join("bad-key.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let o = bank(
        &t,
        &[
            "--json",
            "--key",
            bad.to_str().unwrap(),
            "freeze",
            "--yes",
            "--account",
            &b0,
        ],
    )
    .await;
    assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("KEY_FILE")), "{o:?}");
    assert_eq!(t.state_hash().await, before, "no failure above changed anything");

    let s0 = t.supply().await.issued;
    ok(&admin(&t, &[&["--passphrase-file", right.as_str()], &issue[..]].concat()).await);
    let o = run_with(
        "ruble-admin",
        &[&["--dev-dir", d.as_str()], &issue[..]].concat(),
        &[("RUBLE_CB_PASSPHRASE", "right")],
    )
    .await;
    ok(&o);
    // The file goes before the variable; --passphrase still works (visible in `ps`).
    let o = run_with(
        "ruble-admin",
        &[
            &["--dev-dir", d.as_str(), "--passphrase-file", right.as_str()],
            &issue[..],
        ]
        .concat(),
        &[("RUBLE_CB_PASSPHRASE", "wrong")],
    )
    .await;
    ok(&o);
    ok(&admin(&t, &[&["--passphrase", "right"], &issue[..]].concat()).await);
    assert_eq!(t.supply().await.issued, s0 + 4_00);

    // A bank's encrypted key: the wrong passphrase is 4.
    let benc = t.path().join("bank-encrypted.json");
    WalletKey::from_signing_key(t.bank_key(0))
        .save(&benc, Some("bank pass"))
        .unwrap();
    let fresh = WalletKey::generate().address().to_string();
    let open = [
        "--json",
        "--key",
        benc.to_str().unwrap(),
        "open-account",
        "--account",
        &fresh,
        "--kind",
        "business",
    ];
    let nope = pass_file("nope.pass", "nope");
    let o = bank(&t, &[&["--passphrase-file", nope.as_str()], &open[..]].concat()).await;
    assert_eq!(
        (o.code, o.json()["error"].as_str()),
        (4, Some("WRONG_PASSPHRASE")),
        "{o:?}"
    );
    let o = run_with(
        "ruble-bank",
        &[&["--dev-dir", d.as_str()], &open[..]].concat(),
        &[("RUBLE_BANK_PASSPHRASE", "bank pass")],
    )
    .await;
    ok(&o);
    let bank_pass = pass_file("bank.pass", "bank pass\n");
    let fresh = WalletKey::generate().address().to_string();
    let open = [
        "--json",
        "--key",
        benc.to_str().unwrap(),
        "open-account",
        "--account",
        &fresh,
        "--kind",
        "business",
    ];
    ok(&bank(&t, &[&["--passphrase-file", bank_pass.as_str()], &open[..]].concat()).await);

    // The `ruble-node init` layout: --network-dir, passphrase from the variable.
    let net = tempfile::tempdir().unwrap();
    network_dir(&t, net.path(), "network pass");
    let n = net.path().to_str().unwrap();
    let v = ok(&run_with("ruble-admin", &["--network-dir", n, "--json", "supply"], &[]).await);
    assert_eq!(v["supply"]["issued_kopecks"].as_u64(), Some(s0 + 4_00));
    let o = run_with(
        "ruble-admin",
        &["--network-dir", n, "--json", "issue", "--bank", &b0, "--amount", "3"],
        &[("RUBLE_CB_PASSPHRASE", "network pass")],
    )
    .await;
    ok(&o);
    assert_eq!(t.supply().await.issued, s0 + 7_00);
    let o = run_with(
        "ruble-admin",
        &[
            "--network-dir",
            n,
            "--passphrase-file",
            &wrong,
            "--json",
            "threshold",
            "--amount",
            "1",
        ],
        &[],
    )
    .await;
    assert_eq!(o.code, 4, "{o:?}");

    // 1: usage. Clap's errors are 1 here (2 means a refusal); help is 0.
    for name in ["ruble-admin", "ruble-bank"] {
        let o = run_with(name, &["no-such-command"], &[]).await;
        assert_eq!(o.code, 1, "{o:?}");
        let o = run_with(name, &["--help"], &[]).await;
        assert!(
            o.code == 0 && o.stdout.contains("Examples") && o.stdout.contains("Exit codes"),
            "{o:?}"
        );
    }
    let o = admin(&t, &["issue", "--help"]).await;
    assert!(
        o.code == 0 && o.stdout.contains("Example:") && o.stdout.contains("--amount"),
        "{o:?}"
    );
    let o = admin(&t, &["--json", "issue", "--bank", &b0, "--amount", "1.005"]).await;
    assert_eq!((o.code, o.json()["error"].as_str()), (1, Some("USAGE")), "{o:?}");
    let o = admin(&t, &["supply", "--json", "--csv"]).await;
    assert_eq!(o.code, 1, "{o:?}");
}

/// Opens `n` fresh business wallets at bank `b` (directly over the API).
async fn open_wallets(t: &TestNode, b: usize, n: usize) -> Vec<AccountId> {
    let mut bank = t.bank(Role::Bank(b)).await;
    let mut out = Vec::new();
    for _ in 0..n {
        let k = WalletKey::generate();
        bank.open_account(req(&sign(
            &t.bank_key(b),
            Op::OpenAccount {
                account: k.account_id(),
                kind: AccountKind::Business,
            },
        )))
        .await
        .unwrap();
        out.push(k.account_id());
    }
    out
}

async fn list(t: &TestNode, r: pb::ListAccountsRequest) -> Result<pb::AccountPage, tonic::Status> {
    t.cb(Role::CentralBank)
        .await
        .list_accounts(r)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_accounts_pages_filters_and_is_for_the_central_bank_only() {
    let limits = ClientLimits {
        max_page: 4,
        ..ClientLimits::default()
    };
    let t = TestNode::start_with(limits, PipelineConfig::default()).await;
    let mine = open_wallets(&t, 1, 3).await;
    let mut cb = t.cb(Role::CentralBank).await;
    for a in &mine[..2] {
        cb.freeze_account(req(&sign(&t.cb_key(), Op::Freeze { account: *a })))
            .await
            .unwrap();
    }
    let total = t.supply().await.accounts as usize;

    // Every page is bounded (the node caps 1000 at max_page = 4); `next` and
    // `more` walk every account once, in ascending id order.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut after = Vec::new();
    let mut pages = 0;
    loop {
        let p = list(
            &t,
            pb::ListAccountsRequest {
                after: after.clone(),
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        pages += 1;
        assert!(p.accounts.len() <= 4, "a page over the cap");
        assert_eq!(p.next, p.accounts.last().map(|a| a.id.clone()).unwrap_or_default());
        seen.extend(p.accounts.iter().map(|a| a.id.clone()));
        if !p.more {
            break;
        }
        assert_eq!(p.accounts.len(), 4, "a page before the end is full");
        after = p.next;
    }
    assert_eq!(seen.len(), total);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ascending, no repeats");
    assert_eq!(pages, total.div_ceil(4));
    // The default page (limit 0) is capped too.
    let p = list(&t, pb::ListAccountsRequest::default()).await.unwrap();
    assert_eq!((p.accounts.len(), p.more), (4, true));
    // Smaller pages walk the same ids.
    let p = list(
        &t,
        pb::ListAccountsRequest {
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((p.accounts.len(), p.more), (2, true));
    assert_eq!(p.accounts.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), seen[..2]);
    // After the last id: empty, no more.
    let p = list(
        &t,
        pb::ListAccountsRequest {
            after: seen.last().unwrap().clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(p.accounts.is_empty() && !p.more && p.next.is_empty());

    // Filters: by status, by bank, both.
    let frozen = list(
        &t,
        pb::ListAccountsRequest {
            status: pb::AccountStatus::Frozen as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut want: Vec<Vec<u8>> = mine[..2].iter().map(|a| a.0.to_vec()).collect();
    want.sort();
    assert_eq!(frozen.accounts.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), want);
    assert!(!frozen.more);
    assert!(frozen
        .accounts
        .iter()
        .all(|a| a.status == pb::AccountStatus::Frozen as i32));
    let b1 = bank_id(&t, 1).0.to_vec();
    let supply_b1 = t.supply().await.banks.into_iter().find(|b| b.bank == b1).unwrap();
    let mut of_b1 = Vec::new();
    let mut after = Vec::new();
    loop {
        let p = list(
            &t,
            pb::ListAccountsRequest {
                bank: b1.clone(),
                after,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        of_b1.extend(p.accounts);
        if !p.more {
            break;
        }
        after = p.next;
    }
    assert_eq!(
        of_b1.len() as u64,
        supply_b1.clients + 1,
        "its clients and its settlement account"
    );
    assert!(of_b1.iter().all(|a| a.bank == b1));
    let active_b1 = list(
        &t,
        pb::ListAccountsRequest {
            bank: b1.clone(),
            status: pb::AccountStatus::Active as i32,
            limit: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(active_b1
        .accounts
        .iter()
        .all(|a| a.bank == b1 && a.status == pb::AccountStatus::Active as i32));
    assert_eq!((active_b1.accounts.len(), active_b1.more), (of_b1.len() - 2, false));
    let frozen_b0 = list(
        &t,
        pb::ListAccountsRequest {
            bank: bank_id(&t, 0).0.to_vec(),
            status: pb::AccountStatus::Frozen as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(frozen_b0.accounts.is_empty() && !frozen_b0.more);

    // Malformed filters are refused.
    for r in [
        pb::ListAccountsRequest {
            bank: vec![1, 2, 3],
            ..Default::default()
        },
        pb::ListAccountsRequest {
            after: vec![0; 31],
            ..Default::default()
        },
        pb::ListAccountsRequest {
            status: 9,
            ..Default::default()
        },
    ] {
        let st = list(&t, r).await.unwrap_err();
        assert_eq!(
            (st.code(), reason(&st).as_str()),
            (Code::InvalidArgument, "MALFORMED"),
            "{st:?}"
        );
    }

    // Only the central bank: a bank's certificate is the wrong role; none is unauthenticated.
    let st = t
        .cb(Role::Bank(0))
        .await
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::PermissionDenied, "WRONG_ROLE")
    );
    let st = t
        .cb(Role::Anonymous)
        .await
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
    );

    // The CLI over it: `accounts` walks the pages (4 at a time here).
    let v = ok(&admin(&t, &["--json", "accounts"]).await);
    assert_eq!(v["count"].as_u64(), Some(total as u64));
    let v = ok(&admin(&t, &["--json", "accounts", "--status", "frozen"]).await);
    let got: Vec<String> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want.iter().map(hex::encode).collect::<Vec<_>>());
    let name1 = t.manifest.banks[1].name.clone();
    let o = admin(&t, &["accounts", "--bank", &name1, "--csv"]).await;
    assert_eq!(o.csv().len(), 1 + of_b1.len(), "{o:?}");
    let b0 = &t.manifest.banks[0];
    let cert = t.path().join(b0.cert.as_ref().unwrap());
    let cert_key = t.path().join(b0.cert_key.as_ref().unwrap());
    let o = admin(
        &t,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--cert-key",
            cert_key.to_str().unwrap(),
            "--json",
            "accounts",
        ],
    )
    .await;
    // A certificate of the wrong role is a certificate problem (4), not a refusal.
    assert_eq!((o.code, o.json()["error"].as_str()), (4, Some("WRONG_ROLE")), "{o:?}");
}

/// Admits a bank named `name` (directly over the API); its key.
async fn admit(t: &TestNode, name: &str) -> WalletKey {
    let k = WalletKey::generate();
    t.cb(Role::CentralBank)
        .await
        .admit_bank(req(&sign(
            &t.cb_key(),
            Op::AdmitBank {
                bank: k.account_id(),
                name: name.into(),
            },
        )))
        .await
        .unwrap();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_name_two_banks_share_is_refused_with_both_addresses() {
    let t = TestNode::start().await;
    // The ledger does not make names unique.
    let (a, b) = (admit(&t, "Twin Bank").await, admit(&t, "Twin Bank").await);
    let before = t.state_hash().await;
    for args in [
        &["--json", "issue", "--bank", "Twin Bank", "--amount", "1"][..],
        &["--json", "--yes", "redeem", "--bank", "Twin Bank", "--amount", "1"],
        &["--json", "--yes", "suspend-bank", "--bank", "Twin Bank"],
        &["--json", "accounts", "--bank", "Twin Bank"],
    ] {
        let o = admin(&t, args).await;
        assert_eq!(
            (o.code, o.json()["error"].as_str()),
            (1, Some("AMBIGUOUS_BANK")),
            "{args:?}: {o:?}"
        );
        let m = o.json()["message"].as_str().unwrap().to_string();
        assert!(
            m.contains(&a.address().to_string()) && m.contains(&b.address().to_string()),
            "{o:?}"
        );
    }
    let o = admin(&t, &["issue", "--bank", "Twin Bank", "--amount", "1"]).await;
    assert!(o.code == 1 && o.stderr.contains(&b.address().to_string()), "{o:?}");
    assert_eq!(t.state_hash().await, before, "nothing was paid");
    // By address, exactly the bank named is paid.
    ok(&admin(
        &t,
        &[
            "--json",
            "issue",
            "--bank",
            &a.address().to_string(),
            "--amount",
            "2.50",
        ],
    )
    .await);
    assert_eq!(
        (t.balance(a.account_id()).await, t.balance(b.account_id()).await),
        (2_50, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ruble_yes_in_the_environment_confirms_nothing() {
    let t = TestNode::start().await;
    let pa = wallet(&t, 0).address().to_string();
    let d = dev(&t);
    let before = t.state_hash().await;
    for name in ["ruble-admin", "ruble-bank"] {
        for yes in ["true", "1"] {
            let o = run_with(
                name,
                &["--dev-dir", &d, "--json", "freeze", "--account", &pa],
                &[("RUBLE_YES", yes)],
            )
            .await;
            unconfirmed(&t, o, &before).await;
        }
    }
    // --yes itself answers.
    ok(&run_with(
        "ruble-bank",
        &["--dev-dir", &d, "--json", "--yes", "freeze", "--account", &pa],
        &[],
    )
    .await);
    assert_eq!(
        account(&t, wallet(&t, 0).account_id()).await.status,
        pb::AccountStatus::Frozen as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_chosen_by_others_is_neither_a_formula_in_csv_nor_a_terminal_escape() {
    let t = TestNode::start().await;
    let c = t.sdk().await;
    let payee = wallet(&t, 2); // bank 0's client, as is the payer
    let purposes = [
        "=HYPERLINK(\"http://x.example/\",\"invoice\")",
        "+7 495 123-45-67",
        "-1+2",
        "@SUM(A1:A9)",
        "\tindented",
        "\u{1b}]0;owned\u{7}\u{1b}[2Jpaid in full",
    ];
    for p in purposes {
        c.pay(&wallet(&t, 0), payee.account_id(), 1, p).await.unwrap();
    }
    let pa = payee.address().to_string();

    // CSV keeps the text but starts a would-be formula with '; amounts stay numbers.
    let o = bank(&t, &["statement", "--account", &pa, "--all", "--csv"]).await;
    let rows = o.csv();
    let col = |h: &str| rows[0].iter().position(|x| x == h).unwrap();
    let got: Vec<&str> = rows[1..].iter().map(|r| r[col("PURPOSE")].as_str()).collect();
    for p in &purposes[..5] {
        assert!(got.contains(&format!("'{p}").as_str()), "{p:?} in {got:?}");
    }
    assert!(got.contains(&purposes[5]), "{got:?}");
    assert!(
        rows[1..]
            .iter()
            .all(|r| r[col("AMOUNT_KOPECKS")].parse::<i64>().is_ok()),
        "{o:?}"
    );
    // A bank's name too, in the central bank's CSV.
    admit(&t, "=cmd|' /C calc'!A0\u{1b}[31m").await;
    let o = admin(&t, &["supply", "--csv"]).await;
    let rows = o.csv();
    assert!(rows.iter().any(|r| r[1] == "'=cmd|' /C calc'!A0\u{1b}[31m"), "{o:?}");

    // Tables for people carry no control character: ESC and BEL are shown escaped.
    let o = bank(&t, &["statement", "--account", &pa, "--all"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains('\u{1b}') && !o.stdout.contains('\u{7}'), "{o:?}");
    assert!(o.stdout.contains("\\u{1b}]0;owned\\u{7}"), "{o:?}");
    assert!(o.stdout.contains("\\tindented"), "{o:?}");
    for args in [&["supply"][..], &["report", "--section", "supply"]] {
        let o = admin(&t, args).await;
        assert!(o.code == 0 && !o.stdout.contains('\u{1b}'), "{o:?}");
        assert!(o.stdout.contains("\\u{1b}[31m"), "{o:?}");
    }
    let h = chain_info(&t).await.height.to_string();
    let o = bank(&t, &["blocks", "--from-height", "1", "--csv"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let o = bank(&t, &["blocks", "--from-height", &h]).await;
    assert!(o.code == 0 && !o.stdout.contains('\u{1b}'), "{o:?}");
}

/// A stand-in for a node behind a slow or stalled link: chain info and a
/// supply at `head`, and a large-payment stream that sends the records in
/// `first`, goes quiet for `gap` (for good with `None`), sends the rest, and
/// ends once it has sent everything up to the requested `until_height`.
#[derive(Clone)]
struct SlowNode {
    head: u64,
    first: Vec<pb::OperationRecord>,
    rest: Vec<pb::OperationRecord>,
    gap: Option<Duration>,
    /// (from_height, until_height) of every StreamLargePayments call.
    asked: std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
}

fn large_record(height: u64, cursor: u64) -> pb::OperationRecord {
    pb::OperationRecord {
        tx_id: vec![cursor as u8; 32],
        cursor,
        height,
        kind: "transfer".into(),
        amount: 600_000_00 + cursor,
        purpose: format!("large {cursor}"),
        large: true,
        ..Default::default()
    }
}

type Rpc<T> = Result<tonic::Response<T>, tonic::Status>;

/// `impl $trait for SlowNode` with `$body`, and the RPCs listed after
/// `unimplemented` answering UNIMPLEMENTED. (One macro: `async_trait` must
/// see every method.)
macro_rules! slow_node_service {
    ($trait:path { $($body:tt)* } unimplemented { $($name:ident($req:ident) -> $resp:ident;)* }) => {
        #[tonic::async_trait]
        impl $trait for SlowNode {
            $($body)*
            $(async fn $name(&self, _: tonic::Request<pb::$req>) -> Rpc<pb::$resp> {
                Err(tonic::Status::unimplemented(stringify!($name)))
            })*
        }
    };
}

type Unused<T> = futures::stream::Empty<Result<T, tonic::Status>>;

slow_node_service! {
    pb::wallet_service_server::WalletService {
        type SubmitStreamStream = Unused<pb::SubmitResult>;
        type WatchIncomingStream = Unused<pb::IncomingPayment>;
        async fn get_chain_info(&self, _: tonic::Request<pb::GetChainInfoRequest>) -> Rpc<pb::ChainInfo> {
            Ok(tonic::Response::new(pb::ChainInfo {
                chain_id: "slow".into(),
                height: self.head,
                max_validity_ms: 600_000,
                timestamp_ms: now_ms(),
                central_bank: vec![7; 32],
                ..Default::default()
            }))
        }
        async fn submit_stream(
            &self,
            _: tonic::Request<tonic::Streaming<pb::SubmitRequest>>,
        ) -> Rpc<Self::SubmitStreamStream> {
            Err(tonic::Status::unimplemented("submit_stream"))
        }
        async fn watch_incoming(&self, _: tonic::Request<pb::WatchIncomingRequest>) -> Rpc<Self::WatchIncomingStream> {
            Err(tonic::Status::unimplemented("watch_incoming"))
        }
    }
    unimplemented {
        submit(SubmitRequest) -> SubmitResult;
        submit_batch(SubmitBatchRequest) -> SubmitBatchResponse;
        get_receipt(GetReceiptRequest) -> OperationRecord;
        get_account(GetAccountRequest) -> Account;
        get_history(GetHistoryRequest) -> HistoryPage;
        list_held_payments(GetAccountRequest) -> HeldPaymentList;
    }
}

slow_node_service! {
    pb::central_bank_service_server::CentralBankService {
        type StreamLargePaymentsStream =
            tokio_stream::wrappers::ReceiverStream<Result<pb::LargePaymentReport, tonic::Status>>;
        async fn get_supply(&self, _: tonic::Request<pb::GetSupplyRequest>) -> Rpc<pb::SupplyReport> {
            Ok(tonic::Response::new(pb::SupplyReport {
                height: self.head,
                ..Default::default()
            }))
        }
        async fn stream_large_payments(
            &self,
            r: tonic::Request<pb::StreamLargePaymentsRequest>,
        ) -> Rpc<Self::StreamLargePaymentsStream> {
            let (from, until) = (r.get_ref().from_height, r.get_ref().until_height);
            self.asked.lock().unwrap().push((from, until));
            let wanted = move |rec: &pb::OperationRecord| rec.height >= from && (until == 0 || rec.height <= until);
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            let me = self.clone();
            tokio::spawn(async move {
                for rec in me.first.iter().filter(|x| wanted(x)) {
                    let _ = tx.send(Ok(pb::LargePaymentReport { record: Some(rec.clone()) })).await;
                }
                match me.gap {
                    Some(g) => tokio::time::sleep(g).await,
                    None => std::future::pending::<()>().await,
                }
                for rec in me.rest.iter().filter(|x| wanted(x)) {
                    let _ = tx.send(Ok(pb::LargePaymentReport { record: Some(rec.clone()) })).await;
                }
                if until == 0 {
                    // Following: live payments would come; none do.
                    tx.closed().await;
                }
            });
            Ok(tonic::Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
        }
    }
    unimplemented {
        issue(SubmitRequest) -> SubmitResult;
        redeem(SubmitRequest) -> SubmitResult;
        admit_bank(SubmitRequest) -> SubmitResult;
        suspend_bank(SubmitRequest) -> SubmitResult;
        set_phase(SubmitRequest) -> SubmitResult;
        set_limits(SubmitRequest) -> SubmitResult;
        set_reporting_threshold(SubmitRequest) -> SubmitResult;
        freeze_account(SubmitRequest) -> SubmitResult;
        unfreeze_account(SubmitRequest) -> SubmitResult;
        get_any_account(GetClientAccountRequest) -> Account;
        get_block(GetBlockRequest) -> BlockEvent;
        list_accounts(ListAccountsRequest) -> AccountPage;
        freeze_receive_only(SubmitRequest) -> SubmitResult;
        set_controls(SubmitRequest) -> SubmitResult;
        set_tier_limits(SubmitRequest) -> SubmitResult;
        define_purpose(SubmitRequest) -> SubmitResult;
        issue_tagged(SubmitRequest) -> SubmitResult;
        flag_fraud(SubmitRequest) -> SubmitResult;
        release_payment(SubmitRequest) -> SubmitResult;
        void_payment(SubmitRequest) -> SubmitResult;
        collect(SubmitRequest) -> SubmitResult;
        list_held_payments(ListHeldPaymentsRequest) -> HeldPaymentList;
        list_purposes(ListPurposesRequest) -> PurposeList;
        get_controls(GetControlsRequest) -> ControlSettings;
        list_fraud_registry(ListFraudRegistryRequest) -> FraudRegistry;
    }
}

/// Serves `node` with the dev PKI of `t` (mutual TLS); its endpoint.
async fn serve_slow_node(t: &TestNode, node: SlowNode) -> String {
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    let pki = |f: &str| std::fs::read_to_string(t.path().join("pki").join(f)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(pki("server.pem"), pki("server-key.pem")))
        .client_ca_root(Certificate::from_pem(pki("ca.pem")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(pb::wallet_service_server::WalletServiceServer::new(node.clone()))
        .add_service(pb::central_bank_service_server::CentralBankServiceServer::new(node))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    format!("https://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payments_is_complete_through_a_quiet_node_and_fails_on_a_stalled_one() {
    let t = TestNode::start().await;
    let d = dev(&t);
    // Head 3; the stream pauses for 3 s after the first two records (more
    // than the 2 s of silence once taken for the end of the stored part).
    let quiet = SlowNode {
        head: 3,
        first: vec![large_record(1, 11), large_record(1, 12)],
        rest: vec![large_record(2, 21), large_record(3, 31), large_record(4, 41)],
        gap: Some(Duration::from_secs(3)),
        asked: Default::default(),
    };
    let ep = serve_slow_node(&t, quiet.clone()).await;
    let v = ok(&run_with(
        "ruble-admin",
        &["--dev-dir", &d, "--endpoint", &ep, "--json", "large-payments"],
        &[],
    )
    .await);
    let cursors: Vec<u64> = v["large_payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cursor"].as_u64().unwrap())
        .collect();
    assert_eq!(
        cursors,
        [11, 12, 21, 31],
        "every payment up to the head, none above: {v}"
    );
    assert_eq!((v["to_height"].as_u64(), v["head_height"].as_u64()), (Some(3), Some(3)));
    // The head is read first and asked for as the stream's end.
    assert_eq!(quiet.asked.lock().unwrap().as_slice(), [(1, 3)]);
    // The report's period end likewise.
    let v = ok(&run_with(
        "ruble-admin",
        &[
            "--dev-dir",
            &d,
            "--endpoint",
            &ep,
            "--json",
            "report",
            "--section",
            "large-payments",
            "--since",
            "1",
            "--until",
            "2",
        ],
        &[],
    )
    .await);
    assert_eq!(v["large_payments"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(quiet.asked.lock().unwrap().last(), Some(&(1, 2)));

    // A node that stalls for good fails the listing (3), after its retries,
    // rather than printing what came before the stall.
    let stalled = SlowNode {
        gap: None,
        asked: Default::default(),
        ..quiet
    };
    let ep = serve_slow_node(&t, stalled.clone()).await;
    let o = run_with(
        "ruble-admin",
        &[
            "--dev-dir",
            &d,
            "--endpoint",
            &ep,
            "--timeout",
            "2s",
            "--json",
            "large-payments",
        ],
        &[],
    )
    .await;
    assert_eq!((o.code, o.json()["error"].as_str()), (3, Some("UNREACHABLE")), "{o:?}");
    assert!(o.json().get("large_payments").is_none(), "{o:?}");
    // Each retry resumed from the last record received.
    let asked = stalled.asked.lock().unwrap().clone();
    assert!(
        asked.len() > 1 && asked.iter().all(|&(from, until)| from == 1 && until == 3),
        "{asked:?}"
    );
}
