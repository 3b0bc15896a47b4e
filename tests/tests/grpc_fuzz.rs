//! The reflection-driven hostile client (`ruble_e2e::fuzz`) against a real
//! node: every method of every service, as anonymous, bank 0 and the central
//! bank, must answer malformed input with a precise code (never INTERNAL or
//! UNKNOWN, never a reset stream, never OK for undecodable input), leak
//! nothing, change nothing, and the node must still serve.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use prost::Message as _;
use ruble_e2e::fuzz::{self, FuzzOptions, FuzzTarget, ROLES};
use ruble_e2e::*;

/// `package.Service/Method` of every method the node is built to serve
/// (the compiled descriptors, not reflection), reflection excepted.
fn expected_methods() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for raw in [ruble_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        let set = prost_types_set(raw);
        for f in set.file {
            for s in &f.service {
                for m in &s.method {
                    out.insert(format!("{}.{}/{}", f.package(), s.name(), m.name()));
                }
            }
        }
    }
    out
}

fn prost_types_set(raw: &[u8]) -> prost_types::FileDescriptorSet {
    prost_types::FileDescriptorSet::decode(raw).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_fuzz_of_every_method_and_role() {
    let started = Instant::now();
    let t = TestNode::start().await;
    let target = FuzzTarget::from_dev_dir(t.path()).unwrap();
    assert_eq!(target.endpoint, t.endpoint());
    let opts = FuzzOptions {
        seed: 7,
        max_cases_per_method: 48,
        case_timeout: Duration::from_millis(1500),
        concurrency: 16,
        state_check_every: None,
        ..FuzzOptions::default()
    };
    let report = fuzz::run(&target, &opts).await.unwrap();
    println!("{}", report.render_table());

    // Discovery: every method of the four services, and nothing missing.
    let found: BTreeSet<String> = report.methods.iter().cloned().collect();
    let expected = expected_methods();
    assert!(
        expected.len() >= 34 && report.methods_discovered >= expected.len(),
        "only {} methods discovered: {found:?}",
        report.methods_discovered
    );
    let missing: Vec<_> = expected.difference(&found).collect();
    assert!(missing.is_empty(), "reflection does not list {missing:?}");
    for s in [
        "ruble.v1.WalletService",
        "ruble.v1.BankService",
        "ruble.v1.CentralBankService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            report.services.iter().any(|x| x == s),
            "{s} not discovered: {:?}",
            report.services
        );
    }

    // Every (method, role) pair was tried, and not just once.
    assert_eq!(report.coverage.len(), report.methods_discovered * ROLES.len());
    let thin: Vec<_> = report
        .coverage
        .iter()
        .filter(|c| c.cases < 10)
        .map(|c| format!("{} as {}: {}", c.method, c.role, c.cases))
        .collect();
    assert!(
        thin.is_empty(),
        "(method, role) pairs with fewer than 10 cases: {thin:#?}"
    );

    // No INTERNAL or UNKNOWN answer, no leak, no state change.
    let offending: Vec<String> = report
        .internal_or_unknown
        .iter()
        .map(|r| {
            format!(
                "{} as {} {}: {} {:?}",
                r.method,
                r.role,
                r.case,
                r.outcome.code(),
                r.outcome.message()
            )
        })
        .collect();
    assert!(
        offending.is_empty(),
        "{} INTERNAL/UNKNOWN answers:\n{}",
        offending.len(),
        offending.join("\n")
    );
    let leaks: Vec<String> = report
        .leak_suspects
        .iter()
        .map(|r| format!("{} as {} {}: {:?}", r.method, r.role, r.case, r.outcome.message()))
        .collect();
    assert!(leaks.is_empty(), "messages that leak internals:\n{}", leaks.join("\n"));
    let resets: Vec<String> = report
        .server_resets
        .iter()
        .map(|r| format!("{} as {} {}: {}", r.method, r.role, r.case, r.outcome.message()))
        .collect();
    assert!(
        resets.is_empty(),
        "streams reset by the server (a handler panic looks like this):\n{}",
        resets.join("\n")
    );
    let silent: Vec<String> = report
        .silent_accepts
        .iter()
        .map(|r| format!("{} as {} {}: {}", r.method, r.role, r.case, r.outcome.code()))
        .collect();
    assert!(
        silent.is_empty(),
        "undecodable input answered OK or left waiting:\n{}",
        silent.join("\n")
    );
    assert!(
        report.state_unchanged,
        "the state changed: before {:?}, after {:?}",
        report.state_before, report.state_after
    );
    assert_eq!(report.state_before.state_hash, hex::encode(t.state_hash().await));

    // The node still serves.
    assert!(report.serving_after, "{:?}", report.serving_after_error);
    let info = t
        .wallet(Role::Anonymous)
        .await
        .get_chain_info(ruble_proto::v1::GetChainInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.chain_id, "ruble-dev");
    println!("grpc_fuzz test: {:.1} s", started.elapsed().as_secs_f64());
}
