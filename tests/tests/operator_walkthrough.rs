//! The README's operator walk-through, run exactly as written: the shell block
//! after `<!-- walkthrough -->` in README.md, on an empty directory, with the
//! workspace's binaries first on PATH and the passphrases in the variables the
//! README names. From `ruble-node init` to a node, a bank admitted and funded,
//! a business account opened and paid, the retail phase opened and a retail
//! wallet paid, then the node stopped and the chain audited.

#[test]
fn the_readme_walkthrough_runs_from_init_to_a_retail_payment() {
    let ruble_e2e::Walkthrough { out, dir, .. } = ruble_e2e::run_readme_walkthrough("<!-- walkthrough -->");

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
