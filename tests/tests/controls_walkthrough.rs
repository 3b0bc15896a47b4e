//! The README's central-bank controls walk-through, run exactly as written:
//! the shell block after `<!-- controls-walkthrough -->` in README.md, on an
//! empty directory, with the workspace's binaries first on PATH and the
//! passphrases in the variables the README names. From `ruble-node init` to a
//! bank, businesses and retail wallets, then every control from the command
//! line: the hold rule and a payment the payer confirms, the fraud registry
//! and a release by the bank, a receive-only freeze, a court-ordered
//! collection above the protected minimum, purpose-bound money, tier limits
//! and a holding-limit sweep, a key rotation and business signatories; then
//! the node stopped and the chain audited.
//!
//! The script asserts its intended refusals itself (`if …; then exit 1; fi`);
//! this test checks what every step printed, the refusals' reasons included.

/// The first line of `out` holding every one of `parts`.
fn line_with<'a>(out: &'a str, parts: &[&str]) -> &'a str {
    out.lines()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in\n{out}"))
}

/// The payment id a held-payment listing's line starts with.
fn payment_id(line: &str) -> String {
    let id = line.split_whitespace().next().unwrap_or_default();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "no payment id at the start of {line:?}"
    );
    id.to_string()
}

#[test]
fn the_readme_controls_walkthrough_uses_every_control_from_the_command_line() {
    let ruble_e2e::Walkthrough { out, err, .. } = ruble_e2e::run_readme_walkthrough("<!-- controls-walkthrough -->");

    // Each step did what the README says, as the tools report it.
    for want in [
        // 1-2. The network, the bank, the businesses and the retail wallets.
        "admitted Alfa Bank",
        "issued 1000000.00 ₽ to Alfa Bank",
        "paid 200000.00 ₽",
        "phase is now retail",
        "opened a retail wallet",
        "paid 1250.50 ₽",
        // 3. The hold rule and the protected minimum.
        "hold threshold 50000.00 ₽",
        "protected minimum 1000.00 ₽",
        "payments of 50000.00 ₽ or more to a new payee are held",
        // 5. The fraud registry.
        "on the fraud registry: payments to it are held",
        // 6. The receive-only freeze and the collection.
        "for payments (it still receives)",
        "collected 4000.00 ₽ of 5000.00 ₽",
        "1000.00 ₽  (retail account, full tier, receive_only)",
        "receive-only: the account may receive but not pay",
        // 7. Purpose-bound money.
        "is in payee category 5912",
        "purpose 7 (issuer the central bank)",
        "issued 3000.00 ₽ of purpose 7",
        "4250.50 ₽  (retail account, full tier, active)",
        "free 1250.50 ₽ / tagged 3000.00 ₽ / reserved 0.00 ₽",
        "  purpose 7: 3000.00 ₽, expires",
        "paid 2000.00 ₽",
        // 8. Tier limits and the sweep.
        "simplified tier limits: balance 15000.00 / payment 15000.00 / daily 15000.00",
        "is in the simplified tier now",
        "sweep on for",
        "paid 20000.00 ₽",
        "7250.50 ₽ of it went past the payee's holding limit to its bank",
        // 9. The key rotation: the new key pays for the account.
        "is controlled by",
        "paid 500.00 ₽",
        "14500.00 ₽  (retail account, simplified tier, active)",
        "free 13500.00 ₽ / tagged 1000.00 ₽ / reserved 0.00 ₽",
        // 10. Signatories.
        "need 2 of 2 signatories",
        "approval recorded; the payment still waits for more signatures",
        // The pharmacy got 60 000 + 2 000 (tagged) + 12 000 ₽.
        "74000.00 ₽  (business account, active)",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert_eq!(
        out.matches("the held payment executed").count(),
        3,
        "the confirmed, the released and the co-signed payment\n{out}"
    );

    // 4. The new-payee hold: listed by the wallet and the bank, confirmed by the payer.
    let held = payment_id(line_with(&out, &["new_payee", "60000.00 ₽", "until "]));
    line_with(&out, &[&held, "new_payee", "60000.00", "6000000"]);
    assert!(out.contains(&format!("confirmed payment {held}")), "{out}");
    // 5. The fraud-registry hold, released by the bank; the registry names the reporter.
    line_with(&out, &["FLAGGED_BY", "REPORTER"]);
    line_with(&out, &["Alfa Bank"]);
    let fraud = payment_id(line_with(&out, &["fraud_registry", "5000.00", "500000"]));
    assert!(out.contains(&format!("released payment {fraud}")), "{out}");
    // 8. The bank's sweeps list the salary's excess.
    line_with(&out, &["transfer", "20000.00", "7250.50", "725050"]);
    // 10. The co-signed payment: held for signatures, approved, then executed.
    let signed = payment_id(line_with(&out, &["signatures", "12000.00 ₽", "(0/2 approvals)"]));
    assert!(out.contains(&format!("approved payment {signed}")), "{out}");
    assert!(out.contains(&format!("confirmed payment {signed}")), "{out}");
    assert_eq!(
        [held.as_str(), fraud.as_str(), signed.as_str()]
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );

    // The intended refusals failed for the reason the README gives.
    for reason in ["ACCOUNT_RECEIVE_ONLY", "PURPOSE_RESTRICTED", "KEY_REVOKED"] {
        assert!(err.contains(reason), "missing {reason} in stderr\n{err}");
    }
    assert_eq!(err.matches("error: refused:").count(), 3, "{err}");

    // The audit, the block's last command: the whole chain replays and checks.
    let audit = &out[out.rfind("{\n").expect("the audit's JSON")..];
    let report: serde_json::Value = serde_json::from_str(audit).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["chain_id"], "ruble-controls");
    assert_eq!(
        report["issued"], 1_003_000_00u64,
        "the bank's million and the 3000 ₽ of purpose 7"
    );
    assert_eq!(report["redeemed"], 0);
    assert_eq!(report["sum_balances"], report["in_circulation"]);
    assert_eq!(report["in_circulation"], 1_003_000_00u64);
    assert_eq!(
        report["accounts"], 6,
        "central bank, the bank, two businesses, two retail wallets"
    );
    assert_eq!(report["held_payments"], 0, "every held payment was settled");
    assert_eq!(report["held_amount"], 0);
    assert_eq!(report["tagged"], 1_000_00u64, "Anna's unspent 1000 ₽ of purpose 7");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
}
