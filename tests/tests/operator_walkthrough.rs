//! The README's operator walk-through, run exactly as written: the shell block
//! after `<!-- walkthrough -->` in README.md, on an empty directory, with the
//! workspace's binaries first on PATH and the passphrases in the variables the
//! README names. From `ruble-node init` to a node, a bank admitted and funded,
//! a business account opened and paid, the retail phase opened and a retail
//! wallet paid, then the node stopped and the chain audited.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The shell block that follows the walk-through marker in the README.
fn walkthrough() -> String {
    let readme = include_str!("../../README.md");
    let after = readme
        .split_once("<!-- walkthrough -->")
        .expect("README has a walk-through marker")
        .1;
    let body = after.split_once("```sh\n").expect("a sh block after the marker").1;
    body.split_once("```").expect("the block ends").0.to_string()
}

/// Ends the script's whole process group (the node it started in the
/// background included), whatever happened to the script.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created; no memory is involved.
        unsafe {
            libc::kill(-self.0, libc::SIGTERM);
        }
    }
}

#[test]
fn the_readme_walkthrough_runs_from_init_to_a_retail_payment() {
    let script = walkthrough();
    assert!(script.contains("ruble-node init"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("walkthrough.sh"), &script).unwrap();
    let bin_dir = ruble_e2e::bin("ruble-node").parent().unwrap().to_path_buf();
    for b in ["ruble-admin", "ruble-bank", "ruble-wallet"] {
        ruble_e2e::bin(b);
    }
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "walkthrough.sh"])
        .current_dir(dir.path())
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, _) in std::env::vars() {
        if k.starts_with("RUBLE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUBLE_CB_PASSPHRASE", "walkthrough central bank")
        .env("RUBLE_BANK_PASSPHRASE", "walkthrough")
        .env("RUBLE_WALLET_PASSPHRASE", "walkthrough");
    let mut child = cmd.spawn().unwrap();
    let _group = Group(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the walk-through did not finish in 180 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let node_log = std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
    assert!(
        status.success(),
        "walk-through failed ({status})\n--- stdout\n{out}\n--- stderr\n{err}\n--- node.log\n{node_log}"
    );

    // Each step did what the README says, as the tools report it.
    for want in [
        "admitted Alfa Bank",
        "issued 1000000.00 ₽ to Alfa Bank",
        "opened a business wallet",
        "paid 25000.00 ₽",
        "phase is now retail",
        "opened a retail wallet",
        "paid 1250.50 ₽",
        // The retail wallet's balance, as its holder sees it.
        "1250.50 ₽  (retail account, full tier, active)",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // The audit, the block's last command: the whole chain replays and checks.
    let audit = &out[out.rfind("{\n").expect("the audit's JSON")..];
    let report: serde_json::Value = serde_json::from_str(audit).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["chain_id"], "ruble-pilot");
    assert_eq!(report["issued"], 1_000_000_00u64);
    assert_eq!(report["sum_balances"], report["in_circulation"]);
    assert_eq!(
        report["accounts"], 4,
        "central bank, the bank, the business, the retail wallet"
    );
    // Everything init wrote is private to its owner.
    for f in [
        "genesis.json",
        "central-bank-key.json",
        "node.toml",
        "pki/ca-key.pem",
        "pki/banks/alfa-key.pem",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("net").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}
