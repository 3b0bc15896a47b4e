//! A hostile client for the node's gRPC API, driven by server reflection.
//!
//! [`run`] asks the node's `grpc.reflection.v1.ServerReflection` for every
//! service and the files that define them, builds a
//! [`prost_reflect::DescriptorPool`] from them, and sends every method (the
//! reflection services excepted) a bounded, seeded set of malformed and edge
//! inputs, as anonymous, as bank 0 and as the central bank. Requests are raw
//! HTTP/2 over a [`tonic::transport::Channel`]: the 5-byte gRPC frames are
//! built here, so frame-level corruption is possible too.
//!
//! Four kinds of case (see [`CaseKind`]):
//! - `message`: [`DynamicMessage`]s built from the input descriptor: the empty
//!   message, a "shaped" message (every field set to a plausible value), and
//!   the shaped message with one field (to depth 2) at one of its edge values.
//! - `wire`: hand-written protobuf: garbage, truncations, unknown fields, wrong
//!   and invalid wire types, over-long varints, lengths that overrun, deep
//!   groups, non-UTF-8 strings.
//! - `frame`: the gRPC framing and headers: compressed flag without an
//!   encoding, invalid flags, lengths that lie, cut frames, no frame, two frames
//!   on a unary method, gzip (garbage, valid, a bomb), unsupported encodings,
//!   wrong content types, odd `grpc-timeout`s, big metadata, 1-byte DATA frames,
//!   a message over the node's size limit.
//! - `stream` (client- and bidi-streaming methods): a bad frame before good
//!   ones and after them, many tiny frames, idle and half-sent streams.
//!
//! No case carries a valid signature, so none may change the ledger: the
//! central bank's `GetSupply` (state hash and supply figures) is read before,
//! during and after the run and compared.
//!
//! Findings ([`FuzzReport::failures`]): INTERNAL/UNKNOWN answers, messages
//! that look like leaked internals, streams reset by the server (what a
//! panicking handler looks like), input every decoder must refuse answered OK
//! or left waiting, a changed state, a node that stops serving. Every case is
//! on a connection of its own at the time (each worker holds one per role),
//! and a transport failure is retried once on a fresh one, so a broken
//! connection is not blamed on the next case.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use ruble_gateway::devnet::{DevManifest, DevParticipant};
use ruble_ledger::codec::{Op, OpBody, MAX_RULE_LIST};
use ruble_ledger::types::{AccountId, AccountKind, Limits, Phase, Tier, TxId};
use serde::Serialize;
use tonic::client::GrpcService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

// ---------------------------------------------------------------------------
// Target, roles, options

/// Where the node is and the credentials an attacker might hold: the CA (public),
/// bank 0's and the central bank's client certificates (the mTLS roles), and
/// public facts (account ids, chain id) that make inputs reach deeper.
#[derive(Clone, Debug)]
pub struct FuzzTarget {
    pub endpoint: String,
    pub ca_pem: String,
    /// (certificate PEM, key PEM) of bank 0.
    pub bank_identity: (String, String),
    /// (certificate PEM, key PEM) of the central bank.
    pub cb_identity: (String, String),
    /// Public account ids (32 bytes each), offered as values of bytes fields.
    pub known_ids: Vec<Vec<u8>>,
    pub chain_id: String,
}

impl FuzzTarget {
    /// From a dev directory (`dev.json`, `pki/`), as `ruble-node dev` writes it.
    pub fn from_dev_dir(dir: &Path) -> Result<FuzzTarget> {
        let m = DevManifest::load(dir)?;
        let read = |rel: &str| {
            std::fs::read_to_string(dir.join(rel)).with_context(|| format!("reading {}", dir.join(rel).display()))
        };
        let ident = |p: &DevParticipant| -> Result<(String, String)> {
            let cert = p
                .cert
                .as_deref()
                .ok_or_else(|| anyhow!("{} has no client certificate", p.name))?;
            let key = p
                .cert_key
                .as_deref()
                .ok_or_else(|| anyhow!("{} has no certificate key", p.name))?;
            Ok((read(cert)?, read(key)?))
        };
        let bank0 = m
            .banks
            .first()
            .ok_or_else(|| anyhow!("the dev manifest lists no bank"))?;
        let mut known_ids = Vec::new();
        for p in std::iter::once(&m.central_bank).chain(&m.banks).chain(&m.businesses) {
            if let Ok(id) = hex::decode(&p.id) {
                known_ids.push(id);
            }
        }
        Ok(FuzzTarget {
            endpoint: m.endpoint.clone(),
            ca_pem: read(&m.ca)?,
            bank_identity: ident(bank0)?,
            cb_identity: ident(&m.central_bank)?,
            known_ids,
            chain_id: m.chain_id.clone(),
        })
    }

    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> FuzzTarget {
        self.endpoint = endpoint.into();
        self
    }

    /// A fresh connection (its own TCP and TLS session) as `role`.
    pub async fn connect(&self, role: FuzzRole) -> Result<Channel> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match role {
            FuzzRole::Anonymous => {}
            FuzzRole::Bank => tls = tls.identity(Identity::from_pem(&self.bank_identity.0, &self.bank_identity.1)),
            FuzzRole::CentralBank => tls = tls.identity(Identity::from_pem(&self.cb_identity.0, &self.cb_identity.1)),
        }
        let ep = Endpoint::from_shared(self.endpoint.clone())
            .with_context(|| format!("endpoint {}", self.endpoint))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        ep.connect()
            .await
            .map_err(|e| anyhow!("connecting to {} as {role}: {}", self.endpoint, error_chain(&e)))
    }
}

/// Who a request presents itself as (its TLS client certificate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FuzzRole {
    #[serde(rename = "anonymous")]
    Anonymous,
    #[serde(rename = "bank0")]
    Bank,
    #[serde(rename = "central-bank")]
    CentralBank,
}

pub const ROLES: [FuzzRole; 3] = [FuzzRole::Anonymous, FuzzRole::Bank, FuzzRole::CentralBank];

impl FuzzRole {
    fn index(self) -> usize {
        match self {
            FuzzRole::Anonymous => 0,
            FuzzRole::Bank => 1,
            FuzzRole::CentralBank => 2,
        }
    }
}

impl std::fmt::Display for FuzzRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FuzzRole::Anonymous => "anonymous",
            FuzzRole::Bank => "bank0",
            FuzzRole::CentralBank => "central-bank",
        })
    }
}

#[derive(Clone, Debug)]
pub struct FuzzOptions {
    /// Everything generated (values, garbage, the choice and order of cases) follows from it.
    pub seed: u64,
    /// Requests per method, all roles together. Each (method, role) pair gets
    /// about a third; below 30 some pairs get fewer than 10.
    pub max_cases_per_method: usize,
    /// How long a case may take; a stream still open then is recorded as `OPEN`.
    pub case_timeout: Duration,
    /// Requests in flight at once (each worker has its own connections).
    pub concurrency: usize,
    /// Read the central bank's state after about every N cases, besides before and after.
    pub state_check_every: Option<usize>,
    /// Only methods whose `package.Service/Method` contains this.
    pub method_filter: Option<String>,
    /// Put every case's result in the report, not only the findings.
    pub keep_all_results: bool,
    /// A progress line on stderr now and then.
    pub progress: bool,
}

impl Default for FuzzOptions {
    fn default() -> FuzzOptions {
        FuzzOptions {
            seed: 1,
            max_cases_per_method: 60,
            case_timeout: Duration::from_secs(2),
            concurrency: 16,
            state_check_every: Some(500),
            method_filter: None,
            keep_all_results: false,
            progress: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Report

/// What one case got back.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A gRPC status (in the response headers if `trailers_only`, else in the trailers).
    Status {
        code: String,
        message: String,
        /// The `google.rpc.ErrorInfo` reason, else the `x-ruble-reason` metadata.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        http_status: u16,
        trailers_only: bool,
        /// Response messages before the status.
        messages: usize,
        /// Something odd about the status itself (undecodable details, reason mismatch).
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Still open at the case timeout (a stream waiting for more): dropped.
    Open { headers_received: bool, messages: usize },
    /// The connection or the stream failed (reset, GOAWAY, refused, ...).
    Transport { error: String },
    /// The case's own `grpc-timeout` ran out on the client side first (tonic's
    /// channel enforces it): neither an answer nor a fault of the server.
    ClientDeadline { error: String },
    /// The response ended without any `grpc-status`.
    NoStatus {
        http_status: u16,
        content_type: String,
        body_bytes: usize,
    },
}

impl Outcome {
    /// The histogram key: the gRPC code name, `OPEN`, `TRANSPORT` or `NO_STATUS(http N)`.
    pub fn code(&self) -> String {
        match self {
            Outcome::Status { code, .. } => code.clone(),
            Outcome::Open { .. } => "OPEN".into(),
            Outcome::Transport { .. } => "TRANSPORT".into(),
            Outcome::ClientDeadline { .. } => "CLIENT_DEADLINE".into(),
            Outcome::NoStatus { http_status, .. } => format!("NO_STATUS(http {http_status})"),
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Status { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Outcome::Status { message, .. } => message,
            Outcome::Transport { error } | Outcome::ClientDeadline { error } => error,
            _ => "",
        }
    }

    /// INTERNAL, UNKNOWN, or a `grpc-status` that is not a code at all.
    pub fn is_internal_or_unknown(&self) -> bool {
        match self {
            Outcome::Status { code, .. } => {
                code == "INTERNAL" || code == "UNKNOWN" || code.starts_with("INVALID_STATUS")
            }
            _ => false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// Position in the run's plan (stable for a seed and budget).
    pub index: usize,
    /// `package.Service/Method`.
    pub method: String,
    pub role: FuzzRole,
    pub kind: CaseKind,
    /// The case's generator, without its parameters (e.g. `truncated`).
    pub family: String,
    /// The case in full (e.g. `wire:truncated@12/70`).
    pub case: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub millis: u64,
    /// The first attempt failed in transport and the case was sent again on a
    /// fresh connection (this is the second attempt's outcome).
    pub retried: bool,
    /// The input breaks the protobuf or gRPC rules in a way every conforming
    /// decoder refuses (an OK answer or a stream left waiting on it is a finding).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub must_fail: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StateSnapshot {
    pub state_hash: String,
    pub height: u64,
    pub issued: u64,
    pub redeemed: u64,
    pub in_circulation: u64,
    pub sum_balances: u64,
    pub accounts: u64,
}

impl StateSnapshot {
    /// Same ledger state (the height may move on empty blocks; the state may not).
    pub fn same_state(&self, other: &StateSnapshot) -> bool {
        self.state_hash == other.state_hash
            && self.issued == other.issued
            && self.redeemed == other.redeemed
            && self.in_circulation == other.in_circulation
            && self.sum_balances == other.sum_balances
            && self.accounts == other.accounts
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StateCheck {
    pub after_cases: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    pub method: String,
    pub role: FuzzRole,
    pub cases: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct FuzzReport {
    pub endpoint: String,
    pub seed: u64,
    pub max_cases_per_method: usize,
    pub case_timeout_ms: u64,
    pub concurrency: usize,
    pub total_cases: usize,
    pub services: Vec<String>,
    pub methods_discovered: usize,
    /// `package.Service/Method`, with `[client-stream]`/`[server-stream]` marks in `method_shapes`.
    pub methods: Vec<String>,
    pub method_shapes: BTreeMap<String, String>,
    pub by_code: BTreeMap<String, usize>,
    /// `CODE/REASON` (`CODE/-` without a reason).
    pub by_code_reason: BTreeMap<String, usize>,
    /// Case kind, then code.
    pub by_kind_code: BTreeMap<String, BTreeMap<String, usize>>,
    pub coverage: Vec<Coverage>,
    pub open_cases: usize,
    pub internal_or_unknown: Vec<CaseResult>,
    pub leak_suspects: Vec<CaseResult>,
    /// Every transport failure (also those below in `server_resets`).
    pub transport_errors: Vec<CaseResult>,
    /// A single stream reset by the server (HTTP/2 RST_STREAM with an error),
    /// on a fresh connection too: what a panicking handler looks like.
    pub server_resets: Vec<CaseResult>,
    /// Input every decoder must refuse (`must_fail`) answered OK, or
    /// left waiting until the timeout.
    pub silent_accepts: Vec<CaseResult>,
    pub state_before: StateSnapshot,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_after: Option<StateSnapshot>,
    pub state_checks: Vec<StateCheck>,
    pub state_unchanged: bool,
    /// `GetChainInfo` answered after the run.
    pub serving_after: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving_after_error: Option<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<CaseResult>,
}

impl FuzzReport {
    /// Why this run fails (empty: it passes): INTERNAL/UNKNOWN answers, leak
    /// suspects, streams reset by the server, undecodable input accepted, a
    /// changed state, a node that no longer serves. Other transport errors
    /// (e.g. a GOAWAY for oversized headers) and streams open at the timeout
    /// are reported only.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if !self.internal_or_unknown.is_empty() {
            f.push(format!("{} INTERNAL/UNKNOWN answers", self.internal_or_unknown.len()));
        }
        if !self.leak_suspects.is_empty() {
            f.push(format!(
                "{} messages look like leaked internals",
                self.leak_suspects.len()
            ));
        }
        if !self.server_resets.is_empty() {
            f.push(format!(
                "{} streams reset by the server (a panicking handler looks like this)",
                self.server_resets.len()
            ));
        }
        if !self.silent_accepts.is_empty() {
            f.push(format!(
                "{} undecodable inputs answered OK or left waiting",
                self.silent_accepts.len()
            ));
        }
        if !self.state_unchanged {
            f.push("the ledger state changed (or could not be read back)".into());
        }
        if !self.serving_after {
            f.push("the node does not serve GetChainInfo after the run".into());
        }
        f
    }

    /// The human-readable summary.
    pub fn render_table(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        use std::fmt::Write as _;
        let _ = writeln!(
            w,
            "grpc-fuzz {}: {} cases, {} methods in {} services, seed {}, {:.1} s",
            self.endpoint,
            self.total_cases,
            self.methods_discovered,
            self.services.len(),
            self.seed,
            self.seconds
        );
        let _ = writeln!(w, "\nmethods:");
        for m in &self.methods {
            let shape = self.method_shapes.get(m).map(String::as_str).unwrap_or("");
            let _ = writeln!(w, "  {m} {shape}");
        }
        let _ = writeln!(w, "\nby code:");
        for (k, v) in &self.by_code {
            let _ = writeln!(w, "  {k:<34} {v:>6}");
        }
        let _ = writeln!(w, "\nby code/reason:");
        for (k, v) in &self.by_code_reason {
            let _ = writeln!(w, "  {k:<48} {v:>6}");
        }
        let _ = writeln!(w, "\nby kind:");
        for (kind, codes) in &self.by_kind_code {
            let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = writeln!(w, "  {kind:<8} {}", list.join(", "));
        }
        let min = self.coverage.iter().map(|c| c.cases).min().unwrap_or(0);
        let _ = writeln!(
            w,
            "\ncoverage: {} (method, role) pairs, the fewest cases for one pair: {min}",
            self.coverage.len()
        );
        let _ = writeln!(w, "open at the timeout: {}", self.open_cases);

        let _ = writeln!(
            w,
            "\nINTERNAL/UNKNOWN answers: {} in {} methods",
            self.internal_or_unknown.len(),
            self.internal_or_unknown
                .iter()
                .map(|r| &r.method)
                .collect::<BTreeSet<_>>()
                .len()
        );
        if !self.internal_or_unknown.is_empty() {
            let _ = writeln!(
                w,
                "  by case family (answers, methods; the commonest messages, digits as N):"
            );
            for (fam, g) in by_family(&self.internal_or_unknown) {
                let _ = writeln!(w, "    {fam:<28} {:>5} in {} methods", g.answers, g.methods);
                for (m, k) in g.messages.iter().take(4) {
                    let _ = writeln!(w, "      {k:>5}x {}", truncate(m, 160));
                }
                if g.messages.len() > 4 {
                    let _ = writeln!(w, "        ... {} more distinct messages", g.messages.len() - 4);
                }
            }
            let _ = writeln!(w, "  by method:");
            let mut per: BTreeMap<&str, (usize, BTreeSet<String>)> = BTreeMap::new();
            for r in &self.internal_or_unknown {
                let e = per.entry(&r.method).or_default();
                e.0 += 1;
                e.1.insert(format!("{}:{}", r.kind.as_str(), r.family));
            }
            for (m, (n, fams)) in per {
                let fams: Vec<String> = fams.into_iter().collect();
                let _ = writeln!(w, "    {m:<48} {n:>4}  {}", fams.join(" "));
            }
        }
        for (title, list) in [
            ("leak suspects", &self.leak_suspects),
            ("streams reset by the server", &self.server_resets),
            ("undecodable input answered OK or left waiting", &self.silent_accepts),
            ("transport errors (all)", &self.transport_errors),
        ] {
            let _ = writeln!(w, "\n{title}: {}", list.len());
            for (k, (n, roles, example)) in group(list) {
                let _ = writeln!(w, "  {:>4}x {}  [{}]  e.g. {}\n        {}", n, k.0, roles, example, k.1);
            }
        }
        let after = self
            .state_after
            .as_ref()
            .map(|a| format!("{} (height {})", a.state_hash, a.height))
            .unwrap_or_else(|| "unreadable".into());
        let _ = writeln!(
            w,
            "\nstate hash before {} (height {}), after {}: {}",
            self.state_before.state_hash,
            self.state_before.height,
            after,
            if self.state_unchanged { "unchanged" } else { "CHANGED" }
        );
        let _ = writeln!(
            w,
            "serving after the run: {}",
            if self.serving_after { "yes" } else { "NO" }
        );
        let failures = self.failures();
        if failures.is_empty() {
            let _ = writeln!(w, "\nverdict: PASS");
        } else {
            let _ = writeln!(w, "\nverdict: FAIL: {}", failures.join("; "));
        }
        s
    }
}

type GroupKey = (String, String);

/// One case family's INTERNAL answers: how many, in how many methods, and
/// the distinct messages (digits as N) by count.
struct FamilyGroup {
    answers: usize,
    methods: usize,
    messages: Vec<(String, usize)>,
}

#[derive(Default)]
struct FamilyAcc<'a> {
    answers: usize,
    methods: BTreeSet<&'a str>,
    messages: BTreeMap<String, usize>,
}

/// kind:family → its group.
fn by_family(list: &[CaseResult]) -> BTreeMap<String, FamilyGroup> {
    let mut g: BTreeMap<String, FamilyAcc> = BTreeMap::new();
    for r in list {
        let e = g.entry(format!("{}:{}", r.kind.as_str(), r.family)).or_default();
        e.answers += 1;
        e.methods.insert(&r.method);
        let mut m = String::new();
        let mut last_digit = false;
        for ch in r.outcome.message().chars() {
            if ch.is_ascii_digit() {
                if !last_digit {
                    m.push('N');
                }
                last_digit = true;
            } else {
                m.push(ch);
                last_digit = false;
            }
        }
        *e.messages.entry(m).or_insert(0) += 1;
    }
    g.into_iter()
        .map(|(k, a)| {
            let mut messages: Vec<(String, usize)> = a.messages.into_iter().collect();
            messages.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            let group = FamilyGroup {
                answers: a.answers,
                methods: a.methods.len(),
                messages,
            };
            (k, group)
        })
        .collect()
}

/// (method, kind:family, code; message) → (count, roles, an example case).
fn group(list: &[CaseResult]) -> BTreeMap<GroupKey, (usize, String, String)> {
    let mut g: BTreeMap<GroupKey, (usize, BTreeSet<String>, String)> = BTreeMap::new();
    for r in list {
        let key = (
            format!("{} {}:{} {}", r.method, r.kind.as_str(), r.family, r.outcome.code()),
            truncate(r.outcome.message(), 300),
        );
        let e = g.entry(key).or_insert_with(|| (0, BTreeSet::new(), r.case.clone()));
        e.0 += 1;
        e.1.insert(r.role.to_string());
    }
    g.into_iter()
        .map(|(k, (n, roles, ex))| (k, (n, roles.into_iter().collect::<Vec<_>>().join(","), ex)))
        .collect()
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Text that should never reach a client: panics, source paths, file system
/// paths, storage-engine internals, backtraces.
pub fn looks_like_leak(message: &str) -> bool {
    const NEEDLES: &[&str] = &[
        "panicked",
        ".rs:",
        "/home",
        "/tmp",
        "/work",
        "/root",
        "/usr/",
        "/.cargo",
        "src/",
        "rocksdb",
        "backtrace",
        "thread '",
        "0: std::",
        "core::result::unwrap_failed",
    ];
    let m = message.to_lowercase();
    NEEDLES.iter().any(|n| m.contains(n))
}

/// The peer reset this one stream with an error (not the whole connection,
/// not RST_STREAM(NO_ERROR) after a complete answer).
pub fn is_server_reset(transport_error: &str) -> bool {
    transport_error.contains("stream error received") && !transport_error.contains("not a result of an error")
}

// ---------------------------------------------------------------------------
// Discovery

/// One method found by reflection.
#[derive(Clone, Debug)]
pub struct MethodInfo {
    /// `package.Service/Method`.
    pub name: String,
    /// `/package.Service/Method`.
    pub path: String,
    pub service: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
    pub input: MessageDescriptor,
}

pub struct Discovered {
    pub pool: DescriptorPool,
    pub services: Vec<String>,
    pub methods: Vec<MethodInfo>,
}

type Files = BTreeMap<String, prost_types::FileDescriptorProto>;

fn add(raw: Vec<Vec<u8>>, files: &mut Files) -> Result<()> {
    for b in raw {
        let fd =
            prost_types::FileDescriptorProto::decode(b.as_slice()).context("a FileDescriptorProto from reflection")?;
        files.insert(fd.name().to_string(), fd);
    }
    Ok(())
}

/// One reflection request on its own stream.
async fn ask(client: &mut ServerReflectionClient<Channel>, req: MessageRequest) -> Result<MessageResponse> {
    let reqs = tokio_stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(req),
    }]);
    let mut resp = client.server_reflection_info(reqs).await?.into_inner();
    let msg = resp
        .message()
        .await?
        .ok_or_else(|| anyhow!("reflection answered nothing"))?;
    match msg.message_response {
        Some(MessageResponse::ErrorResponse(e)) => bail!("reflection error {}: {}", e.error_code, e.error_message),
        Some(r) => Ok(r),
        None => bail!("reflection answered an empty response"),
    }
}

/// Every service and method the node's reflection (v1) lists, reflection itself excepted.
pub async fn discover(ch: Channel) -> Result<Discovered> {
    let mut client = ServerReflectionClient::new(ch);
    let client = &mut client;
    let MessageResponse::ListServicesResponse(list) = ask(client, MessageRequest::ListServices(String::new())).await?
    else {
        bail!("reflection did not answer ListServices with a service list");
    };
    let services: Vec<String> = list
        .service
        .into_iter()
        .map(|s| s.name)
        .filter(|n| !n.starts_with("grpc.reflection."))
        .collect();

    let mut files: Files = BTreeMap::new();
    for s in &services {
        match ask(client, MessageRequest::FileContainingSymbol(s.clone())).await? {
            MessageResponse::FileDescriptorResponse(f) => add(f.file_descriptor_proto, &mut files)?,
            _ => bail!("reflection did not answer FileContainingSymbol({s}) with files"),
        }
    }
    // Dependencies the server did not send with them.
    for _ in 0..64 {
        let missing: BTreeSet<String> = files
            .values()
            .flat_map(|f| f.dependency.iter().cloned())
            .filter(|d| !files.contains_key(d))
            .collect();
        if missing.is_empty() {
            break;
        }
        for d in missing {
            match ask(client, MessageRequest::FileByFilename(d.clone())).await? {
                MessageResponse::FileDescriptorResponse(f) => add(f.file_descriptor_proto, &mut files)?,
                _ => bail!("reflection did not answer FileByFilename({d}) with files"),
            }
        }
    }
    let pool = DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet {
        file: files.into_values().collect(),
    })
    .context("building a descriptor pool from the reflected files")?;

    let mut methods = Vec::new();
    for s in &services {
        let sd = pool
            .get_service_by_name(s)
            .ok_or_else(|| anyhow!("reflection listed {s} but its files do not define it"))?;
        for m in sd.methods() {
            methods.push(MethodInfo {
                name: format!("{}/{}", sd.full_name(), m.name()),
                path: format!("/{}/{}", sd.full_name(), m.name()),
                service: sd.full_name().to_string(),
                client_streaming: m.is_client_streaming(),
                server_streaming: m.is_server_streaming(),
                input: m.input(),
            });
        }
    }
    Ok(Discovered {
        pool,
        services,
        methods,
    })
}

// ---------------------------------------------------------------------------
// Cases

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseKind {
    Message,
    Wire,
    Frame,
    Stream,
}

impl CaseKind {
    fn as_str(self) -> &'static str {
        match self {
            CaseKind::Message => "message",
            CaseKind::Wire => "wire",
            CaseKind::Frame => "frame",
            CaseKind::Stream => "stream",
        }
    }
}

/// One request, fully built.
#[derive(Clone, Debug)]
pub struct Case {
    pub kind: CaseKind,
    pub family: &'static str,
    pub name: String,
    /// `None`: no content-type header at all.
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
    /// The request body, one HTTP/2 DATA frame (at most) per chunk.
    pub chunks: Vec<Bytes>,
    /// Keep the request body open after the chunks (until the timeout).
    pub idle: bool,
}

/// A generated case and whether it breaks the protobuf or gRPC rules in a way
/// every conforming decoder refuses (not merely odd, or over a configurable
/// limit): such an input answered OK, or a stream left waiting on it, was
/// silently accepted.
#[derive(Clone, Debug)]
struct Planned {
    case: Case,
    must_fail: bool,
}

impl From<Case> for Planned {
    fn from(case: Case) -> Planned {
        Planned { case, must_fail: false }
    }
}

impl Case {
    fn new(kind: CaseKind, family: &'static str, name: impl Into<String>, chunks: Vec<Bytes>) -> Case {
        Case {
            kind,
            family,
            name: format!("{}:{}", kind.as_str(), name.into()),
            content_type: Some("application/grpc"),
            headers: Vec::new(),
            chunks,
            idle: false,
        }
    }
    /// One well-formed frame around `payload`.
    fn one(kind: CaseKind, family: &'static str, name: impl Into<String>, payload: &[u8]) -> Case {
        Case::new(kind, family, name, vec![frame(0, payload)])
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Case {
        self.headers.push((k, v.into()));
        self
    }
    fn idle(mut self) -> Case {
        self.idle = true;
        self
    }
    fn must_fail(self) -> Planned {
        Planned {
            case: self,
            must_fail: true,
        }
    }
}

/// A gRPC length-prefixed message: flag byte, u32 big-endian length, payload.
pub fn frame(flag: u8, payload: &[u8]) -> Bytes {
    frame_claiming(flag, payload.len() as u32, payload)
}

/// A frame whose header claims `len` whatever the payload's length.
pub fn frame_claiming(flag: u8, len: u32, payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(5 + payload.len());
    b.push(flag);
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(payload);
    b.into()
}

/// A frame as two chunks, its header and the (shared, not copied) payload.
fn split_frame(flag: u8, payload: &Bytes) -> Vec<Bytes> {
    vec![frame_claiming(flag, payload.len() as u32, &[]), payload.clone()]
}

// Protobuf wire writing, by hand.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn put_tag(b: &mut Vec<u8>, field: u64, wt: u8) {
    put_varint(b, (field << 3) | wt as u64);
}

fn len_field(field: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(payload.len() + 6);
    put_tag(&mut b, field as u64, LEN);
    put_varint(&mut b, payload.len() as u64);
    b.extend_from_slice(payload);
    b
}

/// `leaf` placed inside the (message) fields `ancestors`, outermost first.
fn wrap(ancestors: &[u32], leaf: Vec<u8>) -> Vec<u8> {
    ancestors.iter().rev().fold(leaf, |inner, f| len_field(*f, &inner))
}

fn wire_type(kind: &Kind) -> u8 {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => I64,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => I32,
        Kind::String | Kind::Bytes | Kind::Message(_) => LEN,
        _ => VARINT,
    }
}

/// A value of wire type `wt` (with its tag for `field`).
fn wire_value(field: u32, wt: u8) -> Vec<u8> {
    let mut b = Vec::new();
    put_tag(&mut b, field as u64, wt);
    match wt {
        VARINT => put_varint(&mut b, 7),
        I64 => b.extend_from_slice(&[1; 8]),
        I32 => b.extend_from_slice(&[1; 4]),
        LEN => {
            put_varint(&mut b, 3);
            b.extend_from_slice(b"abc");
        }
        SGROUP => put_tag(&mut b, field as u64, EGROUP),
        _ => {}
    }
    b
}

fn random_bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// Shared, big payloads (built once per run).
struct Big {
    /// A valid-protobuf message (unknown field 15) a little over 4 MiB, the node's default limit.
    oversize: Bytes,
    /// gzip of 64 MiB of zeros (about 64 KiB).
    gzip_bomb: Bytes,
}

impl Big {
    fn new() -> Big {
        let n = (4 << 20) + 1024;
        let mut over = Vec::with_capacity(n + 8);
        put_tag(&mut over, 15, LEN);
        put_varint(&mut over, n as u64);
        over.resize(over.len() + n, 0);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).expect("gzip into memory");
        }
        Big {
            oversize: over.into(),
            gzip_bomb: enc.finish().expect("gzip into memory").into(),
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Values that make message-level cases reach past decoding: public ids and,
/// for `ruble.v1.SignedOperation.body`, canonical operation bodies (each op,
/// well-formed or at an edge). Their signatures are always garbage.
fn byte_seeds(target: &FuzzTarget, rng: &mut StdRng) -> HashMap<String, Vec<(String, Bytes)>> {
    let mut seeds: HashMap<String, Vec<(String, Bytes)>> = HashMap::new();
    let id = |i: usize| -> AccountId {
        let mut a = [0u8; 32];
        if let Some(k) = target.known_ids.get(i) {
            if k.len() == 32 {
                a.copy_from_slice(k);
            }
        }
        AccountId(a)
    };
    let (cb, bank0, biz) = (id(0), id(1), id(target.known_ids.len().saturating_sub(1)));
    let mut random_id = || {
        let mut a = [0u8; 32];
        rng.fill_bytes(&mut a);
        AccountId(a)
    };
    let stranger = random_id();
    let payment = TxId(random_id().0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let ops: Vec<(&str, AccountId, Op)> = vec![
        (
            "issue",
            cb,
            Op::Issue {
                bank: bank0,
                amount: 100,
            },
        ),
        (
            "issue-max",
            cb,
            Op::Issue {
                bank: bank0,
                amount: u64::MAX,
            },
        ),
        ("redeem", cb, Op::Redeem { bank: bank0, amount: 1 }),
        (
            "open-account",
            bank0,
            Op::OpenAccount {
                account: stranger,
                kind: AccountKind::Business,
            },
        ),
        ("close-account", bank0, Op::CloseAccount { account: biz }),
        (
            "transfer",
            biz,
            Op::Transfer {
                payee: bank0,
                amount: 1,
                purpose: "fuzz".into(),
            },
        ),
        (
            "transfer-zero",
            biz,
            Op::Transfer {
                payee: biz,
                amount: 0,
                purpose: String::new(),
            },
        ),
        ("freeze", bank0, Op::Freeze { account: biz }),
        ("unfreeze", cb, Op::Unfreeze { account: biz }),
        (
            "admit-bank",
            cb,
            Op::AdmitBank {
                bank: stranger,
                name: "fuzz bank".into(),
            },
        ),
        ("suspend-bank", cb, Op::SuspendBank { bank: bank0 }),
        ("set-phase", cb, Op::SetPhase { phase: Phase::Retail }),
        (
            "set-limits",
            cb,
            Op::SetLimits {
                kind: AccountKind::Retail,
                limits: Limits {
                    balance_cap: u64::MAX,
                    payment_cap: 0,
                    daily_outflow_cap: 1,
                },
            },
        ),
        ("set-reporting-threshold", cb, Op::SetReportingThreshold { amount: 0 }),
        ("freeze-receive-only", bank0, Op::FreezeReceiveOnly { account: biz }),
        (
            "set-controls",
            cb,
            Op::SetControls {
                hold_threshold: 1,
                hold_window_ms: u64::MAX,
                protected_minimum: u64::MAX,
            },
        ),
        (
            "flag-fraud",
            bank0,
            Op::FlagFraud {
                account: biz,
                flagged: true,
            },
        ),
        ("confirm-payment", biz, Op::ConfirmPayment { payment }),
        ("release-payment", bank0, Op::ReleasePayment { payment }),
        ("void-payment", stranger, Op::VoidPayment { payment }),
        (
            "collect",
            bank0,
            Op::Collect {
                debtor: biz,
                claimant: bank0,
                amount: u64::MAX,
            },
        ),
        (
            "define-purpose-full",
            cb,
            Op::DefinePurpose {
                purpose: u32::MAX,
                issuer: cb,
                unlock_at_ms: 0,
                expires_at_ms: u64::MAX,
                payees: vec![biz; MAX_RULE_LIST],
                categories: vec![0; MAX_RULE_LIST],
            },
        ),
        (
            "define-purpose-empty",
            cb,
            Op::DefinePurpose {
                purpose: 0,
                issuer: stranger,
                unlock_at_ms: u64::MAX,
                expires_at_ms: 1,
                payees: Vec::new(),
                categories: Vec::new(),
            },
        ),
        (
            "pay-tagged",
            cb,
            Op::PayTagged {
                payee: biz,
                amount: 1,
                purpose: 0,
            },
        ),
        (
            "set-category",
            bank0,
            Op::SetCategory {
                account: biz,
                category: u16::MAX,
            },
        ),
        (
            "set-sweep",
            bank0,
            Op::SetSweep {
                account: biz,
                enabled: false,
            },
        ),
        (
            "set-tier",
            bank0,
            Op::SetTier {
                account: biz,
                tier: Tier::Anonymous,
            },
        ),
        (
            "set-tier-limits-full",
            cb,
            Op::SetTierLimits {
                tier: Tier::Full,
                limits: Limits {
                    balance_cap: 0,
                    payment_cap: u64::MAX,
                    daily_outflow_cap: 0,
                },
            },
        ),
        (
            "rotate-key",
            bank0,
            Op::RotateKey {
                account: biz,
                new_key: cb,
            },
        ),
        (
            "set-signatories",
            bank0,
            Op::SetSignatories {
                account: biz,
                min_amount: 0,
                required: u8::MAX,
                keys: vec![stranger; MAX_RULE_LIST],
            },
        ),
    ];
    let mut bodies = Vec::new();
    for (i, (name, signer, op)) in ops.into_iter().enumerate() {
        let (chain, valid_until) = match i % 4 {
            1 => ("ruble-other".to_string(), now + 60_000),
            2 => (target.chain_id.clone(), 1),
            3 => (target.chain_id.clone(), u64::MAX),
            _ => (target.chain_id.clone(), now + 60_000),
        };
        let body = OpBody {
            chain_id: chain,
            signer,
            nonce: i as u64,
            valid_until_ms: valid_until,
            op,
        };
        if let Ok(b) = body.try_encode() {
            let variant = ["", "+wrong-chain", "+expired", "+until-max"][i % 4];
            bodies.push((format!("opbody:{name}{variant}"), Bytes::from(b)));
        }
    }
    // Bodies one field away from canonical (the decoder must refuse them):
    // a boolean byte that is not 0/1, a list count over MAX_RULE_LIST with
    // its entries present, a tier byte out of range, a tag past the last op.
    let canonical = |signer: AccountId, op: Op| {
        OpBody {
            chain_id: target.chain_id.clone(),
            signer,
            nonce: 0,
            valid_until_ms: now + 60_000,
            op,
        }
        .try_encode()
        .ok()
    };
    let tag_at = 1 + 1 + target.chain_id.len();
    let payload_at = tag_at + 1 + 32 + 8 + 8;
    let mut mutated: Vec<(&str, Option<Vec<u8>>)> = Vec::new();
    let flag = canonical(
        bank0,
        Op::FlagFraud {
            account: biz,
            flagged: true,
        },
    );
    mutated.push((
        "flag-fraud-bool-2",
        flag.map(|mut b| {
            *b.last_mut().expect("a payload") = 2;
            b
        }),
    ));
    let tier = canonical(
        bank0,
        Op::SetTier {
            account: biz,
            tier: Tier::Full,
        },
    );
    for (name, t) in [("set-tier-0", 0u8), ("set-tier-4", 4), ("set-tier-ff", 0xff)] {
        mutated.push((
            name,
            tier.clone().map(|mut b| {
                *b.last_mut().expect("a payload") = t;
                b
            }),
        ));
    }
    let keys = canonical(
        bank0,
        Op::SetSignatories {
            account: biz,
            min_amount: 1,
            required: 1,
            keys: vec![stranger; MAX_RULE_LIST],
        },
    );
    mutated.push((
        "set-signatories-9-keys",
        keys.clone().map(|mut b| {
            b[payload_at + 32 + 8 + 1] += 1;
            b.extend_from_slice(&stranger.0);
            b
        }),
    ));
    mutated.push((
        "set-signatories-count-ff",
        keys.map(|mut b| {
            b[payload_at + 32 + 8 + 1] = 0xff;
            b
        }),
    ));
    let purpose = canonical(
        cb,
        Op::DefinePurpose {
            purpose: 1,
            issuer: cb,
            unlock_at_ms: 0,
            expires_at_ms: u64::MAX,
            payees: vec![biz; MAX_RULE_LIST],
            categories: vec![1],
        },
    );
    mutated.push((
        "define-purpose-9-payees",
        purpose.map(|mut b| {
            let count_at = payload_at + 4 + 32 + 8 + 8;
            b[count_at] += 1;
            let end = count_at + 1 + 32 * MAX_RULE_LIST;
            b.splice(end..end, biz.0);
            b
        }),
    ));
    mutated.push((
        "tag-past-last",
        canonical(cb, Op::ConfirmPayment { payment }).map(|mut b| {
            b[tag_at] = 28;
            b
        }),
    ));
    for (name, b) in mutated {
        if let Some(b) = b {
            debug_assert!(OpBody::decode(&b).is_err(), "{name}");
            bodies.push((format!("opbody:{name}"), Bytes::from(b)));
        }
    }
    seeds.insert("ruble.v1.SignedOperation.body".into(), bodies);
    seeds
}

/// Wire-level families every protobuf decoder refuses (truncations and
/// garbage may happen to decode; deep nesting depends on the decoder's limit).
const MUST_FAIL_WIRE: &[&str] = &[
    "bad-tag",
    "bad-wire-type",
    "non-utf8-string",
    "length-overrun",
    "overlong-varint",
    "bad-group",
];

/// Builds the cases of one method.
struct Gen<'a> {
    rng: StdRng,
    target: &'a FuzzTarget,
    seeds: &'a HashMap<String, Vec<(String, Bytes)>>,
    big: &'a Big,
}

impl Gen<'_> {
    /// Every field at a plausible value (oneofs: their first member), to depth 3.
    fn shaped(&mut self, desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
        let mut m = DynamicMessage::new(desc.clone());
        let mut oneofs = BTreeSet::new();
        for f in desc.fields() {
            if let Some(o) = f.containing_oneof() {
                if !oneofs.insert(o.full_name().to_string()) {
                    continue;
                }
            }
            if f.is_map() {
                continue;
            }
            let v = self.shaped_value(&f, depth);
            let v = if f.is_list() { Value::List(vec![v]) } else { v };
            let _ = m.try_set_field(&f, v);
        }
        m
    }

    fn shaped_value(&mut self, f: &FieldDescriptor, depth: usize) -> Value {
        match f.kind() {
            Kind::Bytes => {
                let n = if f.name().contains("signature") { 64 } else { 32 };
                Value::Bytes(random_bytes(&mut self.rng, n).into())
            }
            Kind::String => Value::String("fuzz".into()),
            Kind::Bool => Value::Bool(true),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(1),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(1),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(1),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(1),
            Kind::Float => Value::F32(1.0),
            Kind::Double => Value::F64(1.0),
            Kind::Enum(e) => Value::EnumNumber(
                e.values()
                    .nth(1)
                    .or_else(|| e.values().next())
                    .map_or(0, |v| v.number()),
            ),
            Kind::Message(md) => {
                if depth < 3 {
                    Value::Message(self.shaped(&md, depth + 1))
                } else {
                    Value::Message(DynamicMessage::new(md))
                }
            }
        }
    }

    /// Edge values of a singular field (or of one element of a repeated one).
    /// `None`: the field absent.
    fn scalar_edges(&mut self, f: &FieldDescriptor) -> Vec<(String, Option<Value>)> {
        let mut v: Vec<(String, Option<Value>)> = Vec::new();
        match f.kind() {
            Kind::Bytes => {
                for n in [0usize, 1, 31, 32, 33, 63, 64, 65] {
                    v.push((
                        format!("bytes[{n}]"),
                        Some(Value::Bytes(random_bytes(&mut self.rng, n).into())),
                    ));
                }
                v.push((
                    "bytes[4096]".into(),
                    Some(Value::Bytes(random_bytes(&mut self.rng, 4096).into())),
                ));
                v.push(("zeros[32]".into(), Some(Value::Bytes(vec![0u8; 32].into()))));
                v.push(("ff[32]".into(), Some(Value::Bytes(vec![0xffu8; 32].into()))));
                v.push(("zeros[64]".into(), Some(Value::Bytes(vec![0u8; 64].into()))));
                for (i, id) in self.target.known_ids.iter().take(2).enumerate() {
                    v.push((format!("known-id#{i}"), Some(Value::Bytes(Bytes::from(id.clone())))));
                }
                if let Some(seeds) = self.seeds.get(f.full_name()) {
                    for (name, b) in seeds {
                        v.push((name.clone(), Some(Value::Bytes(b.clone()))));
                    }
                }
            }
            Kind::String => {
                for (name, s) in [
                    ("empty", String::new()),
                    ("ascii[140]", "a".repeat(140)),
                    ("ascii[141]", "a".repeat(141)),
                    ("ascii[64KiB]", "a".repeat(64 << 10)),
                    ("cyrillic[71 chars,142 bytes]", "ж".repeat(71)),
                    ("nul", "a\0b".to_string()),
                    ("rtl-override", "\u{202e}fuzz".to_string()),
                    ("emoji", "💸".repeat(36)),
                    ("format", "%s%n%x{}".to_string()),
                    ("chain-id", self.target.chain_id.clone()),
                ] {
                    v.push((format!("string:{name}"), Some(Value::String(s))));
                }
            }
            Kind::Bool => {
                v.push(("false".into(), Some(Value::Bool(false))));
                v.push(("true".into(), Some(Value::Bool(true))));
            }
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                for x in [0, 1, -1, i32::MIN, i32::MAX] {
                    v.push((format!("{x}"), Some(Value::I32(x))));
                }
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                for x in [0, 1, -1, i64::MIN, i64::MAX] {
                    v.push((format!("{x}"), Some(Value::I64(x))));
                }
            }
            Kind::Uint32 | Kind::Fixed32 => {
                for x in [0, 1, u32::MAX] {
                    v.push((format!("{x}"), Some(Value::U32(x))));
                }
            }
            Kind::Uint64 | Kind::Fixed64 => {
                for x in [0, 1, u32::MAX as u64, 1u64 << 53, 1u64 << 63, u64::MAX] {
                    v.push((format!("{x}"), Some(Value::U64(x))));
                }
            }
            Kind::Float => {
                for x in [0.0f32, -0.0, f32::NAN, f32::INFINITY, f32::MIN] {
                    v.push((format!("{x}"), Some(Value::F32(x))));
                }
            }
            Kind::Double => {
                for x in [0.0f64, -0.0, f64::NAN, f64::INFINITY, f64::MIN] {
                    v.push((format!("{x}"), Some(Value::F64(x))));
                }
            }
            Kind::Enum(e) => {
                for x in [0, 999, -1, i32::MAX] {
                    v.push((format!("enum:{x}"), Some(Value::EnumNumber(x))));
                }
                for val in e.values().take(8) {
                    if val.number() != 0 {
                        v.push((format!("enum:{}", val.name()), Some(Value::EnumNumber(val.number()))));
                    }
                }
            }
            Kind::Message(md) => {
                v.push(("empty-message".into(), Some(Value::Message(DynamicMessage::new(md)))));
            }
        }
        v
    }

    /// A field's edges: absent, the scalar edges, and for repeated fields
    /// 0, 1 and 5000 elements.
    fn field_edges(&mut self, f: &FieldDescriptor) -> Vec<(String, Option<Value>)> {
        let mut v = vec![("absent".to_string(), None)];
        if f.is_map() {
            return v;
        }
        if f.is_list() {
            let small = match f.kind() {
                Kind::Message(md) => Value::Message(DynamicMessage::new(md)),
                Kind::Bytes => Value::Bytes(Bytes::new()),
                Kind::String => Value::String(String::new()),
                _ => f.kind().default_value(),
            };
            let one = self.shaped_value(f, 1);
            v.push(("[0 elements]".into(), Some(Value::List(Vec::new()))));
            v.push(("[1 element]".into(), Some(Value::List(vec![one]))));
            v.push(("[5000 small elements]".into(), Some(Value::List(vec![small; 5000]))));
            if !matches!(f.kind(), Kind::Message(_)) {
                for (name, e) in self.scalar_edges(f) {
                    if let Some(e) = e {
                        v.push((format!("[{name}]"), Some(Value::List(vec![e]))));
                    }
                }
            }
        } else {
            v.extend(self.scalar_edges(f));
        }
        v
    }

    /// Field paths to depth 2: top-level fields, and the fields of message-typed ones.
    fn paths(desc: &MessageDescriptor) -> Vec<Vec<FieldDescriptor>> {
        let mut out = Vec::new();
        for f in desc.fields() {
            out.push(vec![f.clone()]);
            if let Kind::Message(md) = f.kind() {
                if !f.is_map() {
                    for g in md.fields() {
                        out.push(vec![f.clone(), g]);
                    }
                }
            }
        }
        out
    }

    fn message_cases(&mut self, desc: &MessageDescriptor, base: &DynamicMessage) -> Vec<Case> {
        let mut cases = Vec::new();
        for path in Gen::paths(desc) {
            let label = path.iter().map(|f| f.name()).collect::<Vec<_>>().join(".");
            let leaf = path.last().expect("a path has a field").clone();
            for (edge, value) in self.field_edges(&leaf) {
                let mut m = base.clone();
                if set_at(&mut m, &path, value) {
                    cases.push(Case::one(
                        CaseKind::Message,
                        "field-edge",
                        format!("{label}={edge}"),
                        &m.encode_to_vec(),
                    ));
                }
            }
            // The field alone, everything else absent.
            if let Some((edge, Some(value))) = self.field_edges(&leaf).into_iter().nth(1) {
                let mut m = DynamicMessage::new(desc.clone());
                if set_at(&mut m, &path, Some(value)) {
                    cases.push(Case::one(
                        CaseKind::Message,
                        "field-alone",
                        format!("only {label}={edge}"),
                        &m.encode_to_vec(),
                    ));
                }
            }
        }
        cases
    }

    fn wire_cases(&mut self, desc: &MessageDescriptor, base: &[u8]) -> Vec<Planned> {
        let mut c: Vec<Planned> = Vec::new();
        let w = |family, name: String, payload: Vec<u8>| -> Planned {
            Case::one(CaseKind::Wire, family, name, &payload).into()
        };
        for n in [1usize, 2, 5, 17, 64, 1000, 65536] {
            c.push(w("garbage", format!("garbage[{n}]"), random_bytes(&mut self.rng, n)));
        }
        let n = base.len();
        if n > 1 {
            let step = (n / 8).max(1);
            let mut k = 1;
            while k < n {
                c.push(w("truncated", format!("truncated@{k}/{n}"), base[..k].to_vec()));
                k += step;
            }
            c.push(w(
                "truncated",
                format!("truncated@{}/{n}", n - 1),
                base[..n - 1].to_vec(),
            ));
        }
        let with = |extra: Vec<u8>| -> Vec<u8> {
            let mut b = base.to_vec();
            b.extend_from_slice(&extra);
            b
        };
        c.push(w(
            "unknown-field",
            "unknown-varint#99".into(),
            with(wire_value(99, VARINT)),
        ));
        c.push(w(
            "unknown-field",
            "unknown-len#99[100]".into(),
            with(len_field(99, &[7u8; 100])),
        ));
        c.push(w(
            "unknown-field",
            "unknown-fixed32#99".into(),
            with(wire_value(99, I32)),
        ));
        c.push(w(
            "unknown-field",
            "unknown-fixed64#99".into(),
            with(wire_value(99, I64)),
        ));
        c.push(w(
            "unknown-field",
            "unknown-group#99".into(),
            with(wire_value(99, SGROUP)),
        ));
        c.push(w(
            "unknown-field",
            "field-number-max#536870911".into(),
            with(wire_value(536_870_911, VARINT)),
        ));
        c.push(w(
            "unknown-field",
            "reserved-field#19000".into(),
            with(wire_value(19_000, VARINT)),
        ));
        let mut many = base.to_vec();
        for i in 0..2000u32 {
            many.extend(wire_value(1000 + i, VARINT));
        }
        c.push(w("unknown-field", "2000-unknown-fields".into(), many));
        let mut overflow = Vec::new();
        put_varint(&mut overflow, 1u64 << 32);
        put_varint(&mut overflow, 1);
        c.push(w("bad-tag", "field-number-overflow".into(), with(overflow)));
        c.push(w("bad-tag", "field-number-0".into(), with(vec![0x00, 0x01])));
        c.push(w("bad-tag", "overlong-tag-11xff".into(), with(vec![0xff; 11])));
        for wt in [6u8, 7] {
            let mut b = Vec::new();
            put_tag(&mut b, 1, wt);
            b.push(1);
            c.push(w("bad-wire-type", format!("wire-type-{wt}#1"), with(b)));
        }

        // Wrong wire types and non-UTF-8 strings for every known field to depth 2.
        for path in Gen::paths(desc) {
            let label = path.iter().map(|f| f.name()).collect::<Vec<_>>().join(".");
            let nums: Vec<u32> = path.iter().map(|f| f.number()).collect();
            let (ancestors, leaf) = nums.split_at(nums.len() - 1);
            let leaf_field = path.last().expect("a path has a field");
            let expected = if leaf_field.is_list() && leaf_field.is_packed() {
                LEN
            } else {
                wire_type(&leaf_field.kind())
            };
            let wrong = match expected {
                LEN => VARINT,
                VARINT => LEN,
                _ => VARINT,
            };
            let mut case = w(
                "wrong-wire-type",
                format!("{label}:wire-type-{wrong}-not-{expected}"),
                with(wrap(ancestors, wire_value(leaf[0], wrong))),
            );
            // A repeated number field takes both its packed and unpacked forms.
            let certain = !leaf_field.is_list() || expected == LEN && wire_type(&leaf_field.kind()) == LEN;
            case.must_fail = certain;
            c.push(case);
            if matches!(leaf_field.kind(), Kind::String) {
                let bad = len_field(leaf[0], &[0xff, 0xfe, 0xc3, 0x28, b'a']);
                c.push(w(
                    "non-utf8-string",
                    format!("{label}:non-utf8"),
                    with(wrap(ancestors, bad)),
                ));
            }
            if expected == LEN {
                // A length that overruns its (correctly sized) parent.
                let mut b = Vec::new();
                put_tag(&mut b, leaf[0] as u64, LEN);
                put_varint(&mut b, 1000);
                b.extend_from_slice(&[1u8; 10]);
                c.push(w(
                    "length-overrun",
                    format!("{label}:len-1000-of-10"),
                    with(wrap(ancestors, b)),
                ));
            }
        }
        // Over-long varints and lengths, on the first varint / length-delimited field (else #15).
        let first = |want: u8| {
            desc.fields()
                .find(|f| wire_type(&f.kind()) == want && !f.is_list())
                .map_or(15, |f| f.number())
        };
        let fv = first(VARINT);
        let fl = first(LEN);
        let mut b = Vec::new();
        put_tag(&mut b, fv as u64, VARINT);
        b.extend_from_slice(&[0xff; 11]);
        c.push(w("overlong-varint", format!("#{fv}:varint-11xff"), with(b)));
        let mut b = Vec::new();
        put_tag(&mut b, fv as u64, VARINT);
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        c.push(w("overlong-varint", format!("#{fv}:varint-overflows-u64"), with(b)));
        let mut b = Vec::new();
        put_tag(&mut b, fl as u64, LEN);
        b.extend_from_slice(&[0xff; 11]);
        c.push(w("overlong-varint", format!("#{fl}:length-11xff"), with(b)));
        let mut b = Vec::new();
        put_tag(&mut b, fl as u64, LEN);
        put_varint(&mut b, u64::MAX);
        b.push(1);
        c.push(w("length-overrun", format!("#{fl}:length-u64-max"), with(b)));
        let mut b = Vec::new();
        put_tag(&mut b, fl as u64, LEN);
        put_varint(&mut b, 1 << 31);
        b.extend_from_slice(&[1u8; 16]);
        c.push(w("length-overrun", format!("#{fl}:length-2GiB-of-16"), with(b)));
        let mut b = Vec::new();
        put_tag(&mut b, 15, I64);
        b.extend_from_slice(&[1, 2, 3]);
        c.push(w("truncated", "fixed64-cut".into(), with(b)));

        // Nesting: deep groups (prost recurses to skip them), deep unknown
        // length-delimited fields, and the same inside the first message field.
        for depth in [100usize, 101, 200, 5000] {
            let mut b = Vec::new();
            for _ in 0..depth {
                put_tag(&mut b, 15, SGROUP);
            }
            for _ in 0..depth {
                put_tag(&mut b, 15, EGROUP);
            }
            c.push(w("deep-nesting", format!("groups-depth-{depth}"), with(b)));
        }
        let mut inner = Vec::new();
        for _ in 0..200 {
            inner = len_field(15, &inner);
        }
        c.push(w("deep-nesting", "unknown-len-depth-200".into(), with(inner)));
        if let Some(mf) = desc.fields().find(|f| matches!(f.kind(), Kind::Message(_))) {
            let mut b = Vec::new();
            for _ in 0..200 {
                put_tag(&mut b, 15, SGROUP);
            }
            for _ in 0..200 {
                put_tag(&mut b, 15, EGROUP);
            }
            c.push(w(
                "deep-nesting",
                format!("{}:groups-depth-200-inside", mf.name()),
                with(len_field(mf.number(), &b)),
            ));
        }
        let mut b = Vec::new();
        put_tag(&mut b, 15, SGROUP);
        put_tag(&mut b, 16, EGROUP);
        c.push(w("bad-group", "group-end-mismatch".into(), with(b)));
        let mut b = Vec::new();
        put_tag(&mut b, 15, EGROUP);
        c.push(w("bad-group", "group-end-alone".into(), with(b)));
        let mut b = Vec::new();
        put_tag(&mut b, 15, SGROUP);
        c.push(w("bad-group", "group-unterminated".into(), with(b)));
        c.push(w("duplicate", "message-twice".into(), with(base.to_vec())));
        for p in c.iter_mut() {
            if MUST_FAIL_WIRE.contains(&p.case.family) || p.case.name.ends_with(":fixed64-cut") {
                p.must_fail = true;
            }
        }
        c
    }

    fn frame_cases(&mut self, m: &MethodInfo, base: &[u8]) -> Vec<Planned> {
        let f = CaseKind::Frame;
        let n = base.len() as u32;
        let garbage = random_bytes(&mut self.rng, 64);
        let mut c = vec![
            Case::new(f, "compressed-flag", "flag-1-no-encoding", vec![frame(1, base)]).must_fail(),
            Case::new(f, "bad-flag", "flag-2", vec![frame(2, base)]).must_fail(),
            Case::new(f, "bad-flag", "flag-0x80", vec![frame(0x80, base)]).must_fail(),
            Case::new(f, "bad-flag", "flag-0xff", vec![frame(0xff, base)]).must_fail(),
            Case::new(
                f,
                "length-lies",
                "length-0xffffffff",
                vec![frame_claiming(0, u32::MAX, base)],
            )
            .must_fail(),
            Case::new(f, "length-lies", "length+1", vec![frame_claiming(0, n + 1, base)]).must_fail(),
            Case::new(
                f,
                "length-lies",
                "length-1",
                vec![frame_claiming(0, n.saturating_sub(1), base)],
            )
            .into(),
            Case::new(
                f,
                "cut-frame",
                "header-only-3-bytes",
                vec![Bytes::from_static(&[0, 0, 0])],
            )
            .must_fail(),
            Case::new(
                f,
                "cut-frame",
                "header-only-5-bytes",
                vec![frame_claiming(0, n.max(1), &[])],
            )
            .must_fail(),
            Case::new(f, "gzip", "gzip-garbage", vec![frame(1, &garbage)])
                .header("grpc-encoding", "gzip")
                .must_fail(),
            Case::new(f, "gzip", "gzip-valid", vec![frame(1, &gzip(base))])
                .header("grpc-encoding", "gzip")
                .into(),
            Case::new(f, "gzip", "gzip-flag-0", vec![frame(0, base)])
                .header("grpc-encoding", "gzip")
                .into(),
            Case::new(f, "gzip", "gzip-bomb-64MiB", split_frame(1, &self.big.gzip_bomb))
                .header("grpc-encoding", "gzip")
                .into(),
            Case::new(f, "bad-encoding", "encoding-br", vec![frame(1, &garbage)])
                .header("grpc-encoding", "br")
                .into(),
            Case::new(f, "bad-encoding", "encoding-snappy", vec![frame(1, base)])
                .header("grpc-encoding", "snappy")
                .into(),
            Case::new(f, "bad-encoding", "encoding-identity-flag-1", vec![frame(1, base)])
                .header("grpc-encoding", "identity")
                .must_fail(),
            Case::new(f, "bad-timeout", "grpc-timeout-garbage", vec![frame(0, base)])
                .header("grpc-timeout", "soon")
                .into(),
            Case::new(f, "bad-timeout", "grpc-timeout-1n", vec![frame(0, base)])
                .header("grpc-timeout", "1n")
                .into(),
            Case::new(f, "bad-timeout", "grpc-timeout-99999999H", vec![frame(0, base)])
                .header("grpc-timeout", "99999999H")
                .into(),
            Case::new(f, "metadata", "metadata-15KiB", vec![frame(0, base)])
                .header("x-fuzz", "a".repeat(15 << 10))
                .into(),
            Case::new(f, "metadata", "metadata-64KiB", vec![frame(0, base)])
                .header("x-fuzz", "a".repeat(64 << 10))
                .into(),
            Case::new(f, "metadata", "bin-metadata-not-base64", vec![frame(0, base)])
                .header("x-fuzz-bin", "!!!*")
                .into(),
            Case::new(f, "metadata", "x-ruble-reason-from-client", vec![frame(0, base)])
                .header("x-ruble-reason", "INTERNAL")
                .into(),
            Case::new(f, "chunking", "one-byte-data-frames", {
                let fr = frame(0, base);
                if fr.len() <= 400 {
                    (0..fr.len()).map(|i| fr.slice(i..i + 1)).collect()
                } else {
                    fr.chunks(fr.len() / 200 + 1).map(Bytes::copy_from_slice).collect()
                }
            })
            .into(),
            Case::new(f, "oversize", "message-4MiB+1KiB", split_frame(0, &self.big.oversize)).into(),
            Case::new(
                f,
                "oversize",
                "length-claims-4MiB+1KiB-sends-16",
                vec![frame_claiming(
                    0,
                    self.big.oversize.len() as u32,
                    &base[..base.len().min(16)],
                )],
            )
            .must_fail(),
        ];
        let half = Case::new(
            f,
            "cut-frame",
            "body-cut-in-half",
            vec![frame_claiming(0, n, &base[..base.len() / 2])],
        );
        // Half of nothing is a whole empty message.
        c.push(if n > 0 { half.must_fail() } else { half.into() });
        // No message at all: wrong for a unary request, an empty stream otherwise.
        let empty = Case::new(f, "no-frame", "empty-body", Vec::new());
        c.push(if m.client_streaming {
            empty.into()
        } else {
            empty.must_fail()
        });
        let mut json = Case::new(f, "content-type", "content-type-json", vec![frame(0, base)]);
        json.content_type = Some("application/json");
        c.push(json.into());
        let mut none = Case::new(f, "content-type", "no-content-type", vec![frame(0, base)]);
        none.content_type = None;
        c.push(none.into());
        let mut plus = Case::new(f, "content-type", "content-type-grpc+json", vec![frame(0, base)]);
        plus.content_type = Some("application/grpc+json");
        c.push(plus.into());
        if !m.client_streaming {
            c.push(
                Case::new(
                    f,
                    "two-messages",
                    "two-frames-on-unary",
                    vec![frame(0, base), frame(0, base)],
                )
                .into(),
            );
            c.push(
                Case::new(
                    f,
                    "two-messages",
                    "two-frames-one-data",
                    vec![[frame(0, base), frame(0, &[])].concat().into()],
                )
                .into(),
            );
        }
        c
    }

    fn stream_cases(&mut self, base: &[u8]) -> Vec<Planned> {
        let s = CaseKind::Stream;
        let good = frame(0, base);
        // Undecodable whatever the message: a tag that is an over-long varint.
        let bad = frame(0, &[0xff; 11]);
        let mut tiny_empty = Vec::with_capacity(20);
        for _ in 0..20 {
            tiny_empty.push(Bytes::from(frame(0, &[]).repeat(100)));
        }
        let one_byte = frame(0, &[0x08]);
        vec![
            Case::new(
                s,
                "bad-then-good",
                "undecodable-then-3-good",
                vec![bad.clone(), good.clone(), good.clone(), good.clone()],
            )
            .must_fail(),
            Case::new(
                s,
                "good-then-bad",
                "3-good-then-undecodable",
                vec![good.clone(), good.clone(), good.clone(), bad.clone()],
            )
            .must_fail(),
            Case::new(
                s,
                "good-then-bad",
                "2-good-then-flag-2",
                vec![good.clone(), good.clone(), frame(2, base)],
            )
            .must_fail(),
            Case::new(
                s,
                "good-then-bad",
                "good-then-cut-frame",
                vec![good.clone(), frame_claiming(0, 100, &[1, 2])],
            )
            .must_fail(),
            Case::new(
                s,
                "good-then-bad",
                "good-then-length-0xffffffff",
                vec![good.clone(), frame_claiming(0, u32::MAX, &[1])],
            )
            .must_fail(),
            Case::new(s, "many-tiny", "2000-empty-frames", tiny_empty).into(),
            Case::new(
                s,
                "many-tiny",
                "1000-undecodable-1-byte-frames",
                vec![one_byte.repeat(1000).into()],
            )
            .must_fail(),
            Case::new(s, "many-tiny", "500-good-frames", vec![good.repeat(500).into()]).into(),
            Case::new(s, "idle", "open-no-frames", Vec::new()).idle().into(),
            Case::new(s, "idle", "half-header-then-idle", vec![Bytes::from_static(&[0, 0])])
                .idle()
                .into(),
            Case::new(s, "idle", "good-then-idle", vec![good.clone()]).idle().into(),
            Case::new(s, "idle", "undecodable-then-idle", vec![bad])
                .idle()
                .must_fail(),
        ]
    }

    /// All of a method's cases in the order they are tried: the empty and the
    /// shaped message first, then the kinds in turn (each shuffled).
    fn plan(&mut self, m: &MethodInfo) -> Vec<Planned> {
        let base_msg = self.shaped(&m.input, 1);
        let base = base_msg.encode_to_vec();
        let mut first: Vec<Planned> = vec![
            Case::one(CaseKind::Message, "empty", "empty", &[]).into(),
            Case::one(CaseKind::Message, "shaped", "shaped", &base).into(),
        ];
        let mut kinds = vec![
            self.message_cases(&m.input, &base_msg)
                .into_iter()
                .map(Planned::from)
                .collect(),
            self.wire_cases(&m.input, &base),
            self.frame_cases(m, &base),
        ];
        if m.client_streaming {
            kinds.push(self.stream_cases(&base));
        }
        for k in kinds.iter_mut() {
            k.shuffle(&mut self.rng);
        }
        let mut iters: Vec<std::vec::IntoIter<Planned>> = kinds.into_iter().map(Vec::into_iter).collect();
        loop {
            let mut any = false;
            for it in iters.iter_mut() {
                if let Some(c) = it.next() {
                    first.push(c);
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        first
    }
}

/// Sets (or clears, with `None`) the field at `path` in `msg`; through a
/// repeated message field it goes into the first element.
fn set_at(msg: &mut DynamicMessage, path: &[FieldDescriptor], v: Option<Value>) -> bool {
    let Some((f, rest)) = path.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return match v {
            Some(v) => msg.try_set_field(f, v).is_ok(),
            None => {
                msg.clear_field(f);
                true
            }
        };
    }
    if f.is_list() && !msg.has_field(f) {
        if let Kind::Message(md) = f.kind() {
            msg.set_field(f, Value::List(vec![Value::Message(DynamicMessage::new(md))]));
        }
    }
    match msg.get_field_mut(f) {
        Value::Message(m) => set_at(m, rest, v),
        Value::List(l) => match l.first_mut() {
            Some(Value::Message(m)) => set_at(m, rest, v),
            _ => false,
        },
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Sending

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

pub fn code_name(n: i32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("INVALID_STATUS({n})"), |s| s.to_string())
}

/// The status in `map`, if it has a `grpc-status`.
fn status_in(map: &http::HeaderMap, http_status: u16, trailers_only: bool, messages: usize) -> Option<Outcome> {
    let raw = map.get("grpc-status")?;
    let code = match std::str::from_utf8(raw.as_bytes())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        Some(n) => code_name(n),
        None => format!("INVALID_STATUS({})", String::from_utf8_lossy(raw.as_bytes())),
    };
    let message = map
        .get("grpc-message")
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let mut note = None;
    let mut info_reason = None;
    if let Some(d) = map.get("grpc-status-details-bin") {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        match engine.decode(d.as_bytes()) {
            Ok(bin) => match tonic_types::pb::Status::decode(bin.as_slice()) {
                Ok(st) => {
                    for any in st.details {
                        if any.type_url.ends_with("/google.rpc.ErrorInfo") {
                            match tonic_types::pb::ErrorInfo::decode(any.value.as_slice()) {
                                Ok(info) => info_reason = Some(info.reason),
                                Err(e) => note = Some(format!("undecodable ErrorInfo: {e}")),
                            }
                        }
                    }
                }
                Err(e) => note = Some(format!("undecodable grpc-status-details-bin: {e}")),
            },
            Err(e) => note = Some(format!("grpc-status-details-bin is not base64: {e}")),
        }
    }
    let header_reason = map
        .get("x-ruble-reason")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let (Some(a), Some(b)) = (&info_reason, &header_reason) {
        if a != b {
            note = Some(format!("ErrorInfo reason {a} but x-ruble-reason {b}"));
        }
    }
    Some(Outcome::Status {
        code,
        message,
        reason: info_reason.or(header_reason),
        http_status,
        trailers_only,
        messages,
        note,
    })
}

/// Counts the gRPC messages in a response body without keeping them.
#[derive(Default)]
struct MessageCounter {
    header: Vec<u8>,
    left: usize,
    count: usize,
    bytes: usize,
}

impl MessageCounter {
    fn feed(&mut self, mut data: &[u8]) {
        self.bytes += data.len();
        while !data.is_empty() {
            if self.left > 0 {
                let k = self.left.min(data.len());
                self.left -= k;
                data = &data[k..];
                if self.left == 0 {
                    self.count += 1;
                }
                continue;
            }
            let need = 5 - self.header.len();
            let k = need.min(data.len());
            self.header.extend_from_slice(&data[..k]);
            data = &data[k..];
            if self.header.len() == 5 {
                let len = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]) as usize;
                self.header.clear();
                if len == 0 {
                    self.count += 1;
                } else {
                    self.left = len;
                }
            }
        }
    }
}

fn build_request(path: &str, case: &Case) -> Result<http::Request<tonic::body::Body>> {
    let mut b = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .version(http::Version::HTTP_2)
        .header("te", "trailers")
        .header("user-agent", "ruble-grpc-fuzz");
    if let Some(ct) = case.content_type {
        b = b.header("content-type", ct);
    }
    for (k, v) in &case.headers {
        b = b.header(*k, v.as_str());
    }
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        case.chunks.iter().cloned().map(|c| Ok(Frame::data(c))).collect();
    let body = if case.idle {
        tonic::body::Body::new(StreamBody::new(
            futures::stream::iter(frames).chain(futures::stream::pending()),
        ))
    } else if frames.is_empty() {
        tonic::body::Body::empty()
    } else {
        tonic::body::Body::new(StreamBody::new(futures::stream::iter(frames)))
    };
    Ok(b.body(body)?)
}

/// Sends one case and reads the whole answer (or gives up at `timeout`: `OPEN`).
pub async fn send_case(ch: &mut Channel, path: &str, case: &Case, timeout: Duration) -> Outcome {
    let req = match build_request(path, case) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Transport {
                error: format!("building the request: {e:#}"),
            }
        }
    };
    let mut headers_received = false;
    let mut counter = MessageCounter::default();
    let (hr, ct) = (&mut headers_received, &mut counter);
    let exchange = async move {
        if let Err(e) = futures::future::poll_fn(|cx| GrpcService::poll_ready(ch, cx)).await {
            return Outcome::Transport {
                error: format!("not ready: {}", error_chain(&e)),
            };
        }
        let resp = match GrpcService::call(ch, req).await {
            Ok(r) => r,
            Err(e) => return Outcome::Transport { error: error_chain(&e) },
        };
        *hr = true;
        let (parts, mut body) = resp.into_parts();
        let http_status = parts.status.as_u16();
        if let Some(st) = status_in(&parts.headers, http_status, true, 0) {
            return st;
        }
        loop {
            match body.frame().await {
                None => break,
                Some(Err(st)) => {
                    let src = std::error::Error::source(&st).map(error_chain).unwrap_or_default();
                    return Outcome::Transport {
                        error: format!("response body: {:?} {} {}", st.code(), st.message(), src)
                            .trim()
                            .to_string(),
                    };
                }
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => ct.feed(&d),
                    Err(f) => {
                        if let Ok(trailers) = f.into_trailers() {
                            if let Some(st) = status_in(&trailers, http_status, false, ct.count) {
                                return st;
                            }
                        }
                    }
                },
            }
        }
        Outcome::NoStatus {
            http_status,
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body_bytes: ct.bytes,
        }
    };
    let out = tokio::time::timeout(timeout, exchange).await;
    match out {
        Ok(o) => o,
        Err(_) => Outcome::Open {
            headers_received,
            messages: counter.count,
        },
    }
}

// ---------------------------------------------------------------------------
// The run

struct Job {
    index: usize,
    method: Arc<MethodInfo>,
    case: Arc<Case>,
    must_fail: bool,
    role: FuzzRole,
}

struct Shared {
    target: FuzzTarget,
    timeout: Duration,
    queue: Mutex<VecDeque<Job>>,
    results: Mutex<Vec<CaseResult>>,
    done: AtomicUsize,
}

async fn worker(shared: Arc<Shared>) {
    let mut chans: [Option<Channel>; 3] = [None, None, None];
    loop {
        let job = shared.queue.lock().expect("queue lock").pop_front();
        let Some(job) = job else { break };
        let start = Instant::now();
        let mut retried = false;
        let mut outcome = attempt(&shared, &mut chans, &job).await;
        if matches!(outcome, Outcome::Transport { .. }) {
            // A fresh connection: a failure caused by an earlier case on the
            // same connection must not be pinned on this one.
            chans[job.role.index()] = None;
            retried = true;
            outcome = attempt(&shared, &mut chans, &job).await;
            if matches!(outcome, Outcome::Transport { .. }) {
                chans[job.role.index()] = None;
            }
        }
        let r = CaseResult {
            index: job.index,
            method: job.method.name.clone(),
            role: job.role,
            kind: job.case.kind,
            family: job.case.family.to_string(),
            case: job.case.name.clone(),
            outcome,
            millis: start.elapsed().as_millis() as u64,
            retried,
            must_fail: job.must_fail,
        };
        shared.results.lock().expect("results lock").push(r);
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn attempt(shared: &Shared, chans: &mut [Option<Channel>; 3], job: &Job) -> Outcome {
    let slot = &mut chans[job.role.index()];
    if slot.is_none() {
        match shared.target.connect(job.role).await {
            Ok(c) => *slot = Some(c),
            Err(e) => {
                return Outcome::Transport {
                    error: format!("{e:#}"),
                }
            }
        }
    }
    let ch = slot.as_mut().expect("just connected");
    match send_case(ch, &job.method.path, &job.case, shared.timeout).await {
        Outcome::Transport { error }
            if error.contains("Timeout expired") && job.case.headers.iter().any(|(k, _)| *k == "grpc-timeout") =>
        {
            Outcome::ClientDeadline { error }
        }
        o => o,
    }
}

/// The central bank's view of the ledger.
pub async fn read_state(target: &FuzzTarget) -> Result<StateSnapshot> {
    let ch = target.connect(FuzzRole::CentralBank).await?;
    let mut cb = ruble_proto::v1::central_bank_service_client::CentralBankServiceClient::new(ch);
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        cb.get_supply(ruble_proto::v1::GetSupplyRequest {}),
    )
    .await
    .context("GetSupply timed out")?
    .context("GetSupply as the central bank")?
    .into_inner();
    Ok(StateSnapshot {
        state_hash: hex::encode(&r.state_hash),
        height: r.height,
        issued: r.issued,
        redeemed: r.redeemed,
        in_circulation: r.in_circulation,
        sum_balances: r.sum_balances,
        accounts: r.accounts,
    })
}

/// `GetChainInfo`, anonymously, on a fresh connection.
pub async fn still_serving(target: &FuzzTarget) -> Result<()> {
    let ch = target.connect(FuzzRole::Anonymous).await?;
    let mut w = ruble_proto::v1::wallet_service_client::WalletServiceClient::new(ch);
    tokio::time::timeout(
        Duration::from_secs(20),
        w.get_chain_info(ruble_proto::v1::GetChainInfoRequest {}),
    )
    .await
    .context("GetChainInfo timed out")?
    .context("GetChainInfo")?;
    Ok(())
}

fn mix(seed: u64, s: &str) -> u64 {
    // FNV-1a of the method name, mixed with the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The requests for one method: its cases in order, each with a role,
/// rotating the roles; when the cases run out before the budget they are
/// sent again, each time as a different role (at most once per role).
pub fn assign_roles(n_cases: usize, budget: usize, offset: usize) -> Vec<(usize, FuzzRole)> {
    let mut out = Vec::new();
    if n_cases == 0 {
        return out;
    }
    'passes: for pass in 0..ROLES.len() {
        for i in 0..n_cases {
            if out.len() >= budget {
                break 'passes;
            }
            out.push((i, ROLES[(i + pass + offset) % ROLES.len()]));
        }
    }
    out
}

/// Discovers the API and fuzzes every method; see the module docs.
pub async fn run(target: &FuzzTarget, opts: &FuzzOptions) -> Result<FuzzReport> {
    let started = Instant::now();
    let discovered = discover(target.connect(FuzzRole::Anonymous).await?)
        .await
        .context("server reflection")?;
    let mut methods: Vec<MethodInfo> = discovered.methods.clone();
    if let Some(f) = &opts.method_filter {
        methods.retain(|m| m.name.contains(f.as_str()));
    }
    if methods.is_empty() {
        bail!("no method to fuzz (reflection listed {:?})", discovered.services);
    }
    let state_before = read_state(target).await.context("reading the state before the run")?;

    // The plan.
    let big = Big::new();
    let mut seed_rng = StdRng::seed_from_u64(opts.seed);
    let seeds = byte_seeds(target, &mut seed_rng);
    let mut jobs = VecDeque::new();
    let mut index = 0;
    for (mi, m) in methods.iter().enumerate() {
        let mut g = Gen {
            rng: StdRng::seed_from_u64(mix(opts.seed, &m.name)),
            target,
            seeds: &seeds,
            big: &big,
        };
        let cases: Vec<(Arc<Case>, bool)> = g.plan(m).into_iter().map(|p| (Arc::new(p.case), p.must_fail)).collect();
        let info = Arc::new(m.clone());
        for (ci, role) in assign_roles(cases.len(), opts.max_cases_per_method, mi) {
            jobs.push_back(Job {
                index,
                method: info.clone(),
                case: cases[ci].0.clone(),
                must_fail: cases[ci].1,
                role,
            });
            index += 1;
        }
    }
    let total = jobs.len();

    let shared = Arc::new(Shared {
        target: target.clone(),
        timeout: opts.case_timeout,
        queue: Mutex::new(jobs),
        results: Mutex::new(Vec::with_capacity(total)),
        done: AtomicUsize::new(0),
    });
    let workers: Vec<_> = (0..opts.concurrency.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();

    let mut state_checks = vec![StateCheck {
        after_cases: 0,
        state: Some(state_before.clone()),
        error: None,
    }];
    let mut next_check = opts.state_check_every.unwrap_or(usize::MAX);
    let mut next_progress = Instant::now() + Duration::from_secs(5);
    while shared.done.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = shared.done.load(Ordering::Relaxed);
        if done >= next_check && done < total {
            next_check = done + opts.state_check_every.unwrap_or(usize::MAX);
            let s = read_state(target).await;
            state_checks.push(StateCheck {
                after_cases: done,
                error: s.as_ref().err().map(|e| format!("{e:#}")),
                state: s.ok(),
            });
        }
        if opts.progress && Instant::now() >= next_progress {
            next_progress = Instant::now() + Duration::from_secs(5);
            eprintln!(
                "grpc-fuzz: {done}/{total} cases, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
    for w in workers {
        w.await.context("a fuzz worker panicked")?;
    }

    let after = read_state(target).await;
    state_checks.push(StateCheck {
        after_cases: total,
        error: after.as_ref().err().map(|e| format!("{e:#}")),
        state: after.as_ref().ok().cloned(),
    });
    let state_after = after.ok();
    let state_unchanged = state_checks
        .iter()
        .all(|c| c.state.as_ref().is_some_and(|s| s.same_state(&state_before)));
    let serving = still_serving(target).await;

    let mut results = std::mem::take(&mut *shared.results.lock().expect("results lock"));
    results.sort_by_key(|r| r.index);

    let mut by_code = BTreeMap::new();
    let mut by_code_reason = BTreeMap::new();
    let mut by_kind_code: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut cov: BTreeMap<(String, FuzzRole), usize> = BTreeMap::new();
    for m in &methods {
        for r in ROLES {
            cov.insert((m.name.clone(), r), 0);
        }
    }
    let mut internal = Vec::new();
    let mut leaks = Vec::new();
    let mut transport = Vec::new();
    let mut resets = Vec::new();
    let mut silent = Vec::new();
    let mut open = 0;
    for r in &results {
        let code = r.outcome.code();
        *by_code.entry(code.clone()).or_insert(0) += 1;
        *by_code_reason
            .entry(format!("{code}/{}", r.outcome.reason().unwrap_or("-")))
            .or_insert(0) += 1;
        *by_kind_code
            .entry(r.kind.as_str().to_string())
            .or_default()
            .entry(code)
            .or_insert(0) += 1;
        *cov.entry((r.method.clone(), r.role)).or_insert(0) += 1;
        match &r.outcome {
            Outcome::Open { .. } => open += 1,
            Outcome::Transport { error } => {
                if is_server_reset(error) {
                    resets.push(r.clone());
                }
                transport.push(r.clone());
            }
            Outcome::Status { message, .. } if looks_like_leak(message) => leaks.push(r.clone()),
            _ => {}
        }
        if r.must_fail
            && match &r.outcome {
                Outcome::Status { code, .. } => code == "OK",
                Outcome::Open { .. } => true,
                _ => false,
            }
        {
            silent.push(r.clone());
        }
        if r.outcome.is_internal_or_unknown() {
            internal.push(r.clone());
        }
    }
    let mut method_shapes = BTreeMap::new();
    for m in &methods {
        let shape = match (m.client_streaming, m.server_streaming) {
            (false, false) => "unary",
            (true, false) => "client-stream",
            (false, true) => "server-stream",
            (true, true) => "bidi-stream",
        };
        method_shapes.insert(m.name.clone(), shape.to_string());
    }
    Ok(FuzzReport {
        endpoint: target.endpoint.clone(),
        seed: opts.seed,
        max_cases_per_method: opts.max_cases_per_method,
        case_timeout_ms: opts.case_timeout.as_millis() as u64,
        concurrency: opts.concurrency,
        total_cases: results.len(),
        services: discovered.services.clone(),
        methods_discovered: discovered.methods.len(),
        methods: discovered.methods.iter().map(|m| m.name.clone()).collect(),
        method_shapes,
        by_code,
        by_code_reason,
        by_kind_code,
        coverage: cov
            .into_iter()
            .map(|((method, role), cases)| Coverage { method, role, cases })
            .collect(),
        open_cases: open,
        internal_or_unknown: internal,
        leak_suspects: leaks,
        transport_errors: transport,
        server_resets: resets,
        silent_accepts: silent,
        state_before,
        state_after,
        state_checks,
        state_unchanged,
        serving_after: serving.is_ok(),
        serving_after_error: serving.err().map(|e| format!("{e:#}")),
        seconds: started.elapsed().as_secs_f64(),
        cases: if opts.keep_all_results { results } else { Vec::new() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operation-body seeds cover every operation kind, and the
    /// mutated ones are all refused by the decoder.
    #[test]
    fn op_body_seeds_cover_every_kind() {
        let target = FuzzTarget {
            endpoint: "https://127.0.0.1:1".into(),
            ca_pem: String::new(),
            bank_identity: (String::new(), String::new()),
            cb_identity: (String::new(), String::new()),
            known_ids: (1..=3u8).map(|b| vec![b; 32]).collect(),
            chain_id: "ruble-dev".into(),
        };
        let seeds = byte_seeds(&target, &mut StdRng::seed_from_u64(7));
        let bodies = &seeds["ruble.v1.SignedOperation.body"];
        let mut tags = BTreeSet::new();
        let mut refused = BTreeSet::new();
        for (name, b) in bodies {
            match OpBody::decode(b) {
                Ok(body) => {
                    tags.insert(body.op.tag());
                }
                Err(_) => {
                    refused.insert(name.as_str());
                }
            }
        }
        assert_eq!(tags, (1..=27).collect::<BTreeSet<u8>>());
        let mutated: BTreeSet<&str> = [
            "opbody:flag-fraud-bool-2",
            "opbody:set-tier-0",
            "opbody:set-tier-4",
            "opbody:set-tier-ff",
            "opbody:set-signatories-9-keys",
            "opbody:set-signatories-count-ff",
            "opbody:define-purpose-9-payees",
            "opbody:tag-past-last",
        ]
        .into_iter()
        .collect();
        assert_eq!(refused, mutated);
    }

    #[test]
    fn frames_and_varints() {
        assert_eq!(&frame(0, b"ab")[..], &[0, 0, 0, 0, 2, b'a', b'b']);
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, vec![0xac, 0x02]);
        assert_eq!(wrap(&[1, 2], vec![9]), vec![0x0a, 3, 0x12, 1, 9]);
    }

    #[test]
    fn message_counter_counts_split_frames() {
        let mut c = MessageCounter::default();
        let two = [frame(0, b"hello"), frame(0, b""), frame(0, b"x")].concat();
        for ch in two.chunks(3) {
            c.feed(ch);
        }
        assert_eq!(c.count, 3);
    }

    #[test]
    fn roles_rotate_and_cover_every_role() {
        let a = assign_roles(5, 30, 0);
        assert_eq!(a.len(), 15);
        for r in ROLES {
            assert_eq!(a.iter().filter(|x| x.1 == r).count(), 5);
        }
        let b = assign_roles(100, 40, 1);
        assert_eq!(b.len(), 40);
        for r in ROLES {
            assert!(b.iter().filter(|x| x.1 == r).count() >= 13);
        }
    }

    #[test]
    fn statuses_are_parsed_with_reasons() {
        let st = tonic_types::pb::Status {
            code: 3,
            message: "x".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: tonic_types::pb::ErrorInfo {
                    reason: "MALFORMED".into(),
                    domain: "ruble.v1".into(),
                    metadata: Default::default(),
                }
                .encode_to_vec(),
            }],
        };
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", "3".parse().unwrap());
        h.insert("grpc-message", "bad%20input%0A".parse().unwrap());
        h.insert(
            "grpc-status-details-bin",
            base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(st.encode_to_vec())
                .parse()
                .unwrap(),
        );
        let o = status_in(&h, 200, true, 0).unwrap();
        assert_eq!(o.code(), "INVALID_ARGUMENT");
        assert_eq!(o.reason(), Some("MALFORMED"));
        assert_eq!(o.message(), "bad input\n");
        h.insert("grpc-status", "99".parse().unwrap());
        assert!(status_in(&h, 200, true, 0).unwrap().is_internal_or_unknown());
    }

    #[test]
    fn leaks_are_spotted() {
        assert!(looks_like_leak("thread 'tokio' panicked at gateway/src/x.rs:10:5"));
        assert!(looks_like_leak("IO error: /tmp/x/db/000012.sst: No space left"));
        assert!(looks_like_leak("RocksDB: Corruption"));
        assert!(!looks_like_leak("operation body is malformed"));
    }
}
