//! [`Client`] and its [`ClientBuilder`].

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use rand::Rng;
use ruble_domain::codec::{Op, OpBody, SignedOp, MAX_NAME_BYTES, MAX_PURPOSE_BYTES, MAX_RULE_LIST};
use ruble_domain::query::{self, method, Query};
use ruble_domain::state::{Effect, HoldKind};
use ruble_domain::types::{AccountId, AccountKind, AccountStatus, Kopecks, Limits, Tier, TxId};
use ruble_proto::v1 as pb;
use ruble_proto::v1::wallet_service_client::WalletServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{tls_certificate_problem, Error, Result};
use crate::keys::WalletKey;

/// Proof that a payment is durably committed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    pub tx_id: TxId,
    pub height: u64,
    pub index: u32,
    pub timestamp_ms: u64,
    pub block_hash: String,
    /// At or above the reporting threshold.
    pub large: bool,
    /// Position in the chain (resume history/watch after it).
    pub cursor: u64,
    /// What the operation did beyond its plain meaning: a payment held
    /// (until when; its payment id is `tx_id`), part of a credit swept to
    /// the payee's bank, a collection's amount, a held payment settled, a
    /// signatory's approval recorded. [`Effect::None`] for the rest.
    pub effect: Effect,
}

/// The result of a successful submission.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Payment {
    pub receipt: Receipt,
    /// The payment had already been committed (a retry); this is the original receipt.
    pub duplicate: bool,
}

impl Payment {
    /// What the operation did beyond its plain meaning.
    pub fn effect(&self) -> Effect {
        self.receipt.effect
    }

    /// The deadline (block timestamp, Unix ms) of a payment the anti-fraud
    /// rules or the payer's signatories hold: it executes only once
    /// confirmed ([`Client::confirm_payment`]), released by the bank or the
    /// central bank, or approved by enough signatories; else it is voided
    /// after this. `None` if the payment was not held.
    pub fn held_until_ms(&self) -> Option<u64> {
        match self.receipt.effect {
            Effect::Held { until_ms } => Some(until_ms),
            _ => None,
        }
    }

    /// The id that confirm, release and void name: the transfer's tx id.
    pub fn payment_id(&self) -> TxId {
        self.receipt.tx_id
    }

    /// Kopecks of the credit that the payee's holding limit sent on to its
    /// bank's settlement account (a swept transfer, or a held one settled).
    pub fn swept(&self) -> Kopecks {
        match self.receipt.effect {
            Effect::Swept { amount } | Effect::Settled { swept: amount } => amount,
            _ => 0,
        }
    }

    /// Kopecks a court-ordered collection moved.
    pub fn collected(&self) -> Option<Kopecks> {
        match self.receipt.effect {
            Effect::Collected { amount } => Some(amount),
            _ => None,
        }
    }
}

/// An account as of the last committed block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccountInfo {
    pub id: AccountId,
    pub kind: Option<AccountKind>,
    pub bank: AccountId,
    pub status: Option<AccountStatus>,
    pub balance: Kopecks,
    pub outflow_today: Kopecks,
    pub limits: Limits,
    /// Block in which the account was opened.
    pub opened_height: u64,
    /// `balance = free + tagged + reserved free funds`: what any payment
    /// may spend (free funds not reserved by held payments).
    pub free: Kopecks,
    /// Purpose-bound funds ([`AccountInfo::lots`]); part may be reserved.
    pub tagged: Kopecks,
    /// Funds (free and tagged) reserved by held payments.
    pub reserved: Kopecks,
    /// A retail wallet's identification tier; `None` for other kinds.
    pub tier: Option<Tier>,
    /// Payee category the bank set (0 = none), matched by purposes.
    pub category: u16,
    /// Holding-limit waterfall on: credits past the balance cap go to the bank.
    pub sweep: bool,
    /// The key that signs for the account now: the id itself unless the
    /// bank rotated it.
    pub controller: AccountId,
    /// A business account's k-of-n rule, if set.
    pub signatories: Option<SignatoryRule>,
    /// Purpose-bound holdings, by purpose.
    pub lots: Vec<Lot>,
    /// Who put the account on the fraud registry, if it is on it.
    pub fraud_flagged_by: Option<AccountId>,
}

impl AccountInfo {
    /// Whether the controlling key is no longer the account's own (rotated).
    pub fn key_rotated(&self) -> bool {
        self.controller != self.id
    }
}

/// A wallet's holding of one purpose's money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Lot {
    pub purpose: u32,
    pub amount: Kopecks,
    /// Part reserved by held payments.
    pub reserved: Kopecks,
    /// Not spendable before this (Unix ms).
    pub unlock_at_ms: u64,
    /// What is left then returns to the purpose's issuer (Unix ms).
    pub expires_at_ms: u64,
}

/// Payments of at least `min_amount` need `required` approvals of `keys`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SignatoryRule {
    pub min_amount: Kopecks,
    pub required: u32,
    pub keys: Vec<AccountId>,
}

/// A payment waiting for confirmation, release or signatures; its funds
/// are reserved in the payer's balance.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeldPayment {
    /// The transfer's tx id: what confirm, release and void name.
    pub payment_id: TxId,
    pub payer: AccountId,
    pub payee: AccountId,
    pub amount: Kopecks,
    /// Why it is held (`None`: a kind this SDK does not know).
    pub kind: Option<HoldKind>,
    /// Voided by the first block after this (Unix ms).
    pub deadline_ms: u64,
    /// Signatory keys that approved so far (kind `signatures`).
    pub approvals: Vec<AccountId>,
    /// Approvals needed (kind `signatures`).
    pub required: u32,
    /// Kopecks reserved from purpose-bound lots (the rest from free funds).
    pub tagged_part: Kopecks,
}

/// What purpose-bound ("tagged") money may pay.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Purpose {
    pub id: u32,
    /// Where unspent funds return at expiry (the central bank: destroyed),
    /// and who may pay them out ([`AdminClient::issue_tagged`](crate::AdminClient::issue_tagged)).
    pub issuer: AccountId,
    /// Not spendable before this (Unix ms; 0 = at once).
    pub unlock_at_ms: u64,
    /// Unix ms.
    pub expires_at_ms: u64,
    /// Payees the funds may pay...
    pub payees: Vec<AccountId>,
    /// ...or payees of these categories (set by their banks).
    pub categories: Vec<u16>,
}

/// The chain-wide control settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Controls {
    /// Payments of at least this to a new payee are held; 0 = off.
    pub hold_threshold: Kopecks,
    /// How long a held payment waits.
    pub hold_window_ms: u64,
    /// Court-ordered collection leaves at least this in a wallet.
    pub protected_minimum: Kopecks,
    pub anonymous_limits: Limits,
    pub simplified_limits: Limits,
    /// The full tier's (the retail kind's).
    pub full_limits: Limits,
}

impl Controls {
    /// The limits of a tier.
    pub fn tier_limits(&self, tier: Tier) -> Limits {
        match tier {
            Tier::Anonymous => self.anonymous_limits,
            Tier::Simplified => self.simplified_limits,
            Tier::Full => self.full_limits,
        }
    }
}

/// One fraud-registry entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FraudEntry {
    pub account: AccountId,
    /// The bank or the central bank that reported it.
    pub flagged_by: AccountId,
}

/// One committed operation in a history or a watch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    pub tx_id: TxId,
    pub cursor: u64,
    pub height: u64,
    pub timestamp_ms: u64,
    /// "transfer", "issue", ...
    pub kind: String,
    /// Who signed the operation (the payer of a transfer, else the bank or the central bank).
    pub signer: Option<AccountId>,
    pub from: Option<AccountId>,
    pub to: Option<AccountId>,
    pub amount: Kopecks,
    pub purpose: String,
    pub large: bool,
    /// What the operation did beyond its plain meaning (held, swept, ...).
    pub effect: Effect,
}

/// One page of history, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HistoryPage {
    pub entries: Vec<Record>,
    pub next_cursor: u64,
    pub more: bool,
}

/// A committed block with (a view of) its operations.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Block {
    pub height: u64,
    /// Hex.
    pub hash: String,
    pub prev_hash: String,
    /// Commitment to the whole state after the block.
    pub state_hash: String,
    pub timestamp_ms: u64,
    /// Operations in the whole block (`operations` may be a filtered view).
    pub op_count: u32,
    pub operations: Vec<Record>,
}

/// Converts an API block.
pub fn block_from(b: pb::BlockEvent) -> Block {
    let h = b.header.unwrap_or_default();
    Block {
        height: h.height,
        hash: hex::encode(&h.hash),
        prev_hash: hex::encode(&h.prev_hash),
        state_hash: hex::encode(&h.state_hash),
        timestamp_ms: h.timestamp_ms,
        op_count: h.op_count,
        operations: b.operations.into_iter().map(record_from).collect(),
    }
}

fn receipt_from(r: pb::Receipt) -> Result<Receipt> {
    Ok(Receipt {
        tx_id: TxId::from_slice(&r.tx_id).ok_or_else(|| Error::Transport("bad tx_id in receipt".into()))?,
        height: r.height,
        index: r.index,
        timestamp_ms: r.timestamp_ms,
        block_hash: hex::encode(&r.block_hash),
        large: r.large,
        cursor: r.cursor,
        effect: effect_from(r.effect),
    })
}

/// Converts an API effect (absent, or a kind this SDK does not know: `None`).
pub fn effect_from(e: Option<pb::Effect>) -> Effect {
    let Some(e) = e else { return Effect::None };
    match e.kind.as_str() {
        "held" => Effect::Held {
            until_ms: e.held_until_ms,
        },
        "swept" => Effect::Swept { amount: e.swept },
        "collected" => Effect::Collected { amount: e.collected },
        "settled" => Effect::Settled { swept: e.swept },
        "approved" => Effect::Approved,
        _ => Effect::None,
    }
}

/// The API name of a hold kind (`"new_payee"`, ...).
pub fn hold_kind_from(s: &str) -> Option<HoldKind> {
    [HoldKind::NewPayee, HoldKind::FraudRegistry, HoldKind::Signatures]
        .into_iter()
        .find(|k| k.as_str() == s)
}

/// Converts an API held payment.
pub fn held_from(h: pb::HeldPayment) -> HeldPayment {
    HeldPayment {
        payment_id: TxId::from_slice(&h.payment_id).unwrap_or_default(),
        payer: AccountId::from_slice(&h.payer).unwrap_or_default(),
        payee: AccountId::from_slice(&h.payee).unwrap_or_default(),
        amount: h.amount,
        kind: hold_kind_from(&h.kind),
        deadline_ms: h.deadline_ms,
        approvals: h.approvals.iter().filter_map(|k| AccountId::from_slice(k)).collect(),
        required: h.required,
        tagged_part: h.tagged_part,
    }
}

/// Converts an API purpose. A category out of range (not from a node of
/// this chain) is dropped.
pub fn purpose_from(p: pb::Purpose) -> Purpose {
    Purpose {
        id: p.id,
        issuer: AccountId::from_slice(&p.issuer).unwrap_or_default(),
        unlock_at_ms: p.unlock_at_ms,
        expires_at_ms: p.expires_at_ms,
        payees: p.payees.iter().filter_map(|k| AccountId::from_slice(k)).collect(),
        categories: p.categories.iter().filter_map(|c| u16::try_from(*c).ok()).collect(),
    }
}

/// Converts the API control settings.
pub fn controls_from(c: pb::ControlSettings) -> Controls {
    Controls {
        hold_threshold: c.hold_threshold,
        hold_window_ms: c.hold_window_ms,
        protected_minimum: c.protected_minimum,
        anonymous_limits: limits_from(c.anonymous_limits),
        simplified_limits: limits_from(c.simplified_limits),
        full_limits: limits_from(c.full_limits),
    }
}

/// Turns a batch/stream result into a payment or a typed error.
pub fn result_from(r: pb::SubmitResult) -> Result<Payment> {
    match r.outcome {
        Some(pb::submit_result::Outcome::Committed(rc)) => Ok(Payment {
            receipt: receipt_from(rc)?,
            duplicate: r.duplicate,
        }),
        Some(pb::submit_result::Outcome::Rejected(rj)) => Err(match ruble_domain::Reason::from_code(&rj.reason) {
            Some(reason) => Error::Rejected {
                reason,
                message: rj.message,
            },
            None => Error::Refused {
                code: rj.reason,
                message: rj.message,
            },
        }),
        None => Err(Error::Transport("empty result".into())),
    }
}

/// A signed operation as the API carries it: its body bytes, as signed, and the signature.
pub(crate) fn signed_operation(op: &SignedOp) -> pb::SignedOperation {
    pb::SignedOperation {
        body: op.body_bytes.clone(),
        signature: op.signature.to_vec(),
    }
}

/// The request of every single-operation RPC (`Submit`, `Issue`, `OpenAccount`, ...).
pub(crate) fn submit_request(op: &SignedOp) -> pb::SubmitRequest {
    pb::SubmitRequest {
        operation: Some(signed_operation(op)),
    }
}

/// Converts an API record.
pub fn record_from(r: pb::OperationRecord) -> Record {
    Record {
        tx_id: TxId::from_slice(&r.tx_id).unwrap_or_default(),
        cursor: r.cursor,
        height: r.height,
        timestamp_ms: r.timestamp_ms,
        kind: r.kind,
        signer: AccountId::from_slice(&r.signer),
        from: AccountId::from_slice(&r.from),
        to: AccountId::from_slice(&r.to),
        amount: r.amount,
        purpose: r.purpose,
        large: r.large,
        effect: effect_from(r.effect),
    }
}

/// Converts an API account.
pub fn account_from(a: pb::Account) -> AccountInfo {
    let id = AccountId::from_slice(&a.id).unwrap_or_default();
    AccountInfo {
        id,
        kind: u8::try_from(a.kind).ok().and_then(AccountKind::from_u8),
        bank: AccountId::from_slice(&a.bank).unwrap_or_default(),
        status: u8::try_from(a.status).ok().and_then(AccountStatus::from_u8),
        balance: a.balance,
        outflow_today: a.outflow_today,
        limits: limits_from(a.limits),
        opened_height: a.opened_height,
        free: a.free,
        tagged: a.tagged,
        reserved: a.reserved,
        tier: Tier::parse(&a.tier),
        category: u16::try_from(a.category).unwrap_or_default(),
        sweep: a.sweep,
        controller: AccountId::from_slice(&a.controller).unwrap_or(id),
        signatories: a.signatories.map(|s| SignatoryRule {
            min_amount: s.min_amount,
            required: s.required,
            keys: s.keys.iter().filter_map(|k| AccountId::from_slice(k)).collect(),
        }),
        lots: a
            .lots
            .into_iter()
            .map(|l| Lot {
                purpose: l.purpose,
                amount: l.amount,
                reserved: l.reserved,
                unlock_at_ms: l.unlock_at_ms,
                expires_at_ms: l.expires_at_ms,
            })
            .collect(),
        fraud_flagged_by: AccountId::from_slice(&a.fraud_flagged_by),
    }
}

/// Converts API limits (absent = unlimited).
pub fn limits_from(l: Option<pb::Limits>) -> Limits {
    l.map(|l| Limits {
        balance_cap: l.balance_cap,
        payment_cap: l.payment_cap,
        daily_outflow_cap: l.daily_outflow_cap,
    })
    .unwrap_or_default()
}

/// Configures and connects a [`Client`].
///
/// ```no_run
/// # async fn f() -> ruble_wallet::Result<()> {
/// use std::time::Duration;
/// let client = ruble_wallet::ClientBuilder::new("https://127.0.0.1:50051")
///     .ca_file("dev-data/pki/ca.pem")?
///     .timeout(Duration::from_secs(5))
///     .retries(5)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    endpoint: String,
    /// The other replicas of a cluster, tried when `endpoint` is down or
    /// does not know the leader.
    others: Vec<String>,
    ca_pem: Option<String>,
    identity: Option<(String, String)>,
    domain: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    backoff: Duration,
    validity: Duration,
}

impl ClientBuilder {
    /// `https://host:port` (or `http://` for a plaintext loopback node).
    pub fn new(endpoint: impl Into<String>) -> Self {
        ClientBuilder {
            endpoint: endpoint.into(),
            others: Vec::new(),
            ca_pem: None,
            identity: None,
            domain: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_millis(200),
            validity: Duration::from_secs(300),
        }
    }

    /// Endpoint and CA of a `ruble-node dev --data-dir DIR` node (its `dev.json`).
    pub fn from_dev_dir(dir: impl AsRef<Path>) -> Result<Self> {
        crate::operator::Credentials::dev_network(dir)?.node_builder()
    }

    /// The other replicas of a cluster (`https://host:port` each). The client
    /// follows the leader by itself: a replica that does not lead answers a
    /// write `NOT_LEADER` with the leader's endpoint, and the client goes
    /// there and sends the same signed bytes again (idempotent); a replica
    /// that cannot be reached, or knows no leader, sends it to the next one.
    pub fn replicas<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.others = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// Trust this CA (PEM) for the node's certificate.
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Trust the CA certificate in this PEM file for the node's certificate.
    /// A file that cannot be read or holds no PEM certificate is
    /// [`Error::Certificate`].
    pub fn ca_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let pem = crate::pem::read_certificates(path.as_ref(), "CA certificate")?;
        Ok(self.ca_pem(pem))
    }

    /// Present a client certificate (banks and the central bank).
    pub fn identity(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Present the client certificate and key in these PEM files. A file
    /// that cannot be read or holds no certificate (no private key) is
    /// [`Error::Certificate`]; so is a key that does not match the
    /// certificate, found when connecting.
    pub fn identity_files(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let cert_pem = crate::pem::read_certificates(cert.as_ref(), "client certificate")?;
        let key_pem = crate::pem::read_private_key(key.as_ref())?;
        Ok(self.identity(cert_pem, key_pem))
    }

    /// TLS server name to verify, if not the endpoint's host.
    pub fn tls_domain(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    /// Deadline of each call.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Extra attempts after a transport failure, timeout or overload
    /// (exponential backoff from `backoff`).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    pub fn backoff(mut self, b: Duration) -> Self {
        self.backoff = b;
        self
    }

    /// How long a signed payment stays valid (capped by the chain's `max_validity_ms`).
    pub fn validity(mut self, v: Duration) -> Self {
        self.validity = v;
        self
    }

    /// Connects (failing fast if the node is unreachable) and reads the chain parameters.
    pub async fn connect(self) -> Result<Client> {
        let mut last = None;
        for endpoint in self.all_endpoints() {
            match self.try_connect(&endpoint).await {
                Ok(c) => return Ok(c),
                // A certificate or configuration problem is the same everywhere.
                Err(e @ (Error::Certificate(_) | Error::Config(_))) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    /// `endpoint` first, then the other replicas, each once.
    fn all_endpoints(&self) -> Vec<String> {
        let mut all = vec![self.endpoint.clone()];
        for e in &self.others {
            if !all.contains(e) {
                all.push(e.clone());
            }
        }
        all
    }

    /// A channel to `endpoint` with this builder's TLS and timeouts.
    async fn channel_to(&self, endpoint: &str) -> Result<Channel> {
        let mut ep = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| Error::Config(format!("endpoint {endpoint:?}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((c, k)) = &self.identity {
                tls = tls.identity(Identity::from_pem(c, k));
            }
            if let Some(d) = &self.domain {
                tls = tls.domain_name(d.clone());
            }
            // The certificates and the key are parsed here: a failure is theirs.
            ep = ep
                .tls_config(tls)
                .map_err(|e| Error::Certificate(format!("TLS configuration: {}", error_chain(&e))))?;
        }
        ep.connect().await.map_err(|e| {
            // A handshake refused over a certificate (the node's not trusted
            // by our CA, or ours refused by the node) is a certificate problem.
            match tls_certificate_problem(&e) {
                Some(problem) => Error::Certificate(format!("TLS handshake with {endpoint}: {problem}")),
                None => Error::Transport(error_chain(&e)),
            }
        })
    }

    async fn try_connect(&self, endpoint: &str) -> Result<Client> {
        let channel = self.channel_to(endpoint).await?;
        let mut client = Client {
            conn: Arc::new(RwLock::new(Conn::new(endpoint.to_string(), channel))),
            chain_id: String::new(),
            max_validity_ms: 0,
            clock_offset_ms: 0,
            central_bank: AccountId::default(),
            account: None,
            cfg: self.clone(),
        };
        let info = client.chain_info().await?;
        let local = local_ms() as i64;
        client.clock_offset_ms = info.timestamp_ms as i64 - local;
        client.chain_id = info.chain_id;
        client.max_validity_ms = info.max_validity_ms;
        client.central_bank = AccountId::from_slice(&info.central_bank).unwrap_or_default();
        Ok(client)
    }
}

/// An error and all its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        src = s.source();
    }
    text
}

fn local_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A connection to a node. Cheap to clone; clones share the connection and
/// may be used from many tasks at once (many payments in flight).
#[derive(Clone, Debug)]
pub struct Client {
    /// The node this client talks to now; replaced when it follows the leader.
    conn: Arc<RwLock<Conn>>,
    chain_id: String,
    max_validity_ms: u64,
    clock_offset_ms: i64,
    central_bank: AccountId,
    /// The account the wallet key controls when it is not the key's own
    /// (the bank rotated the account's key): signed queries name it.
    account: Option<AccountId>,
    cfg: ClientBuilder,
}

/// The method bound into the signed query of `WalletService.ListHeldPayments`.
pub const LIST_HELD_PAYMENTS: &str = "ListHeldPayments";

/// One node's connection.
#[derive(Debug)]
struct Conn {
    endpoint: String,
    channel: Channel,
    wallet: WalletServiceClient<Channel>,
}

impl Conn {
    fn new(endpoint: String, channel: Channel) -> Conn {
        Conn {
            endpoint,
            wallet: WalletServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            channel,
        }
    }
}

impl Client {
    /// The underlying channel, to the node the client talks to now (the bank
    /// and central-bank clients take it for every call, so they follow the
    /// leader too).
    pub fn channel(&self) -> Channel {
        self.conn.read().expect("conn lock").channel.clone()
    }

    /// The endpoint the client talks to now (the leader, once followed).
    pub fn endpoint(&self) -> String {
        self.conn.read().expect("conn lock").endpoint.clone()
    }

    fn wallet(&self) -> WalletServiceClient<Channel> {
        self.conn.read().expect("conn lock").wallet.clone()
    }

    /// After a failure that another replica may not have: go to the leader
    /// the node named, or else (unreachable, or no leader known) to the next
    /// replica. Returns whether the client moved.
    async fn follow_leader(&self, e: &Error) -> bool {
        if self.cfg.others.is_empty() && !matches!(e, Error::NotLeader { leader: Some(_) }) {
            return false;
        }
        let now = self.endpoint();
        let target = match e {
            // The replica names itself: it is coming to lead (or lost its
            // quorum a moment ago). Stay, and let the retry back off.
            Error::NotLeader { leader: Some(l) } if *l == now => return false,
            Error::NotLeader { leader: Some(l) } => l.clone(),
            Error::NotLeader { .. } | Error::Transport(_) | Error::Timeout => {
                let all = self.cfg.all_endpoints();
                let at = all.iter().position(|x| *x == now).unwrap_or(0);
                match all.get((at + 1) % all.len()) {
                    Some(next) if *next != now => next.clone(),
                    _ => return false,
                }
            }
            _ => return false,
        };
        match self.cfg.channel_to(&target).await {
            Ok(channel) => {
                tracing::info!(from = %now, to = %target, "following the leader");
                *self.conn.write().expect("conn lock") = Conn::new(target, channel);
                true
            }
            Err(err) => {
                tracing::debug!(error = %err, %target, "replica unreachable");
                false
            }
        }
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// This client (sharing its connection) acting for `account`, an
    /// account whose controlling key the bank rotated to the key you sign
    /// with: signed queries ([`Client::account`], [`Client::history`],
    /// [`Client::held_payments`], [`Client::watch_incoming`]) name
    /// `account` and are signed by the key. Operations need nothing more:
    /// the ledger finds the account the signing key controls.
    ///
    /// ```no_run
    /// # async fn f(client: ruble_wallet::Client, new_key: ruble_wallet::WalletKey, id: ruble_wallet::AccountId) -> ruble_wallet::Result<()> {
    /// let mine = client.for_account(id);
    /// println!("{} kopecks", mine.account(&new_key).await?.balance);
    /// # Ok(()) }
    /// ```
    pub fn for_account(&self, account: AccountId) -> Client {
        Client {
            account: Some(account),
            ..self.clone()
        }
    }

    /// The account that signed queries with `key` name: the one given to
    /// [`Client::for_account`], else the key's own.
    pub fn account_of(&self, key: &WalletKey) -> AccountId {
        self.account.unwrap_or_else(|| key.account_id())
    }

    /// The central bank's public key, as the node announced it at connect.
    pub fn central_bank(&self) -> AccountId {
        self.central_bank
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.cfg.timeout
    }

    /// The node's clock, estimated from the offset measured at connect.
    pub fn node_now_ms(&self) -> u64 {
        (local_ms() as i64 + self.clock_offset_ms).max(0) as u64
    }

    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        self.request_for(msg, self.cfg.timeout)
    }

    /// A request with its own deadline (a call that may take longer than
    /// the configured timeout).
    pub(crate) fn request_for<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        r
    }

    /// Runs `f` with the configured timeout and retries for retryable failures.
    pub(crate) async fn with_retries<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.with_retries_for(self.cfg.timeout, true, f).await
    }

    /// [`Client::with_retries`] with a deadline of `timeout` per attempt
    /// (the requests `f` makes must carry it too, [`Client::request_for`]);
    /// `follow`: go to the leader or another replica after a failure, or
    /// stay on this node.
    pub(crate) async fn with_retries_for<T, F, Fut>(&self, timeout: Duration, follow: bool, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let limit = timeout + Duration::from_millis(500);
        self.retrying_on(follow, || {
            let attempt = f();
            async move {
                tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or(Err(Error::Timeout))
            }
        })
        .await
    }

    /// Runs `f` again after a retryable failure, up to the configured number
    /// of retries with exponential backoff. No deadline on an attempt as a
    /// whole: `f` sets its own (a catch-up stream, one per message).
    pub(crate) async fn retrying<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retrying_on(true, f).await
    }

    async fn retrying_on<T, F, Fut>(&self, follow: bool, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                // Staying on this node: a replica that does not lead stays one.
                Err(e) if !follow && matches!(e, Error::NotLeader { .. }) => return Err(e),
                Err(e) if e.is_retryable() && attempt < self.cfg.retries => {
                    // Told where the leader is: go there at once.
                    if follow && self.follow_leader(&e).await && matches!(e, Error::NotLeader { leader: Some(_) }) {
                        attempt += 1;
                        continue;
                    }
                    let wait = self.cfg.backoff * 2u32.saturating_pow(attempt);
                    tracing::debug!(error = %e, attempt, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A server stream followed for as long as the result is polled.
    /// `open` starts the stream at the position `pos`; `accept` turns each
    /// message into an item and advances `pos`, or skips it (`None`: one
    /// already delivered before a reconnect). A dropped connection, a
    /// restarted node or an ended stream is reopened from `pos`, with
    /// backoff; a failure that retrying cannot mend ends the result with it.
    pub(crate) fn follow<P, M, T, O, Fut, A>(
        &self,
        mut pos: P,
        buffer: usize,
        mut open: O,
        mut accept: A,
    ) -> impl Stream<Item = Result<T>> + Send + 'static
    where
        P: Send + 'static,
        M: Send + 'static,
        T: Send + 'static,
        O: FnMut(&P) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>> + Send,
        A: FnMut(&mut P, M) -> Option<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(buffer);
        let backoff = self.cfg.backoff;
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let err = match open(&pos).await {
                    Ok(resp) => {
                        let mut s = resp.into_inner();
                        loop {
                            match s.message().await {
                                Ok(Some(m)) => {
                                    failures = 0;
                                    if let Some(item) = accept(&mut pos, m) {
                                        if tx.send(Ok(item)).await.is_err() {
                                            return;
                                        }
                                    }
                                }
                                Ok(None) => break Error::Transport("stream ended".into()),
                                Err(st) => break Error::from(st),
                            }
                        }
                    }
                    Err(st) => Error::from(st),
                };
                if !reconnect_after(&err) {
                    let _ = tx.send(Err(err)).await;
                    return;
                }
                if tx.is_closed() {
                    return;
                }
                failures += 1;
                let wait = backoff * 2u32.saturating_pow(failures.min(5));
                tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
            }
        });
        ReceiverStream::new(rx)
    }

    pub async fn chain_info(&self) -> Result<pb::ChainInfo> {
        self.with_retries(|| {
            let mut w = self.wallet();
            let req = self.request(pb::GetChainInfoRequest {});
            async move { Ok(w.get_chain_info(req).await?.into_inner()) }
        })
        .await
    }

    /// Signs an operation body for this chain with a fresh random nonce,
    /// valid for the configured validity.
    pub fn sign(&self, key: &WalletKey, op: Op) -> SignedOp {
        let validity = (self.cfg.validity.as_millis() as u64).min(self.max_validity_ms.max(1_000) - 500);
        SignedOp::sign(
            OpBody {
                chain_id: self.chain_id.clone(),
                signer: key.account_id(),
                nonce: rand::thread_rng().gen(),
                valid_until_ms: self.node_now_ms() + validity,
                op,
            },
            key.signing_key(),
        )
    }

    /// [`Client::sign`], refusing locally ([`Error::Config`]) an operation
    /// whose fields are out of their limits (a list of more than
    /// [`MAX_RULE_LIST`], a purpose or name too long) instead of panicking.
    pub fn try_sign(&self, key: &WalletKey, op: Op) -> Result<SignedOp> {
        check_op_limits(&op)?;
        Ok(self.sign(key, op))
    }

    /// Builds and signs a transfer. Keep the result to retry it safely.
    pub fn transfer(&self, key: &WalletKey, payee: AccountId, amount: Kopecks, purpose: &str) -> Result<SignedOp> {
        if purpose.len() > ruble_domain::codec::MAX_PURPOSE_BYTES {
            return Err(Error::Config(format!(
                "purpose is {} bytes; at most {}",
                purpose.len(),
                ruble_domain::codec::MAX_PURPOSE_BYTES
            )));
        }
        Ok(self.sign(
            key,
            Op::Transfer {
                payee,
                amount,
                purpose: purpose.to_string(),
            },
        ))
    }

    /// Submits a signed operation and waits for its durable receipt. Retries
    /// resend the same bytes, so a retry can never pay twice: if the first
    /// attempt had committed, the original receipt comes back (`duplicate`).
    pub async fn submit(&self, op: &SignedOp) -> Result<Payment> {
        let req = submit_request(op);
        self.with_retries(|| {
            let mut w = self.wallet();
            let r = self.request(req.clone());
            async move { result_from(w.submit(r).await?.into_inner()) }
        })
        .await
    }

    /// Signs, submits and waits: one payment.
    pub async fn pay(&self, key: &WalletKey, payee: AccountId, amount: Kopecks, purpose: &str) -> Result<Payment> {
        let op = self.transfer(key, payee, amount, purpose)?;
        self.submit(&op).await
    }

    /// Submits many signed operations (in batches of up to 4096); one result
    /// each, in order. A batch that fails in transit is resent whole: the
    /// operations that had committed come back as duplicates.
    pub async fn submit_batch(&self, ops: &[SignedOp]) -> Vec<Result<Payment>> {
        let mut out = Vec::with_capacity(ops.len());
        for chunk in ops.chunks(4096) {
            let req = pb::SubmitBatchRequest {
                operations: chunk.iter().map(signed_operation).collect(),
                request_id: 0,
            };
            let r = self
                .with_retries(|| {
                    let mut w = self.wallet();
                    let r = self.request(req.clone());
                    async move { Ok(w.submit_batch(r).await?.into_inner()) }
                })
                .await;
            match r {
                Ok(resp) => out.extend(resp.results.into_iter().map(result_from)),
                Err(e) => {
                    let msg = e.to_string();
                    out.extend(chunk.iter().map(|_| Err(Error::Transport(msg.clone()))));
                }
            }
        }
        out
    }

    /// A signed query naming [`Client::account_of`] `key`, signed by `key`.
    fn signed_query(&self, key: &WalletKey, method: &str, params: Vec<u8>) -> pb::SignedQuery {
        let q = Query {
            chain_id: self.chain_id.clone(),
            method: method.to_string(),
            account: self.account_of(key),
            issued_at_ms: self.node_now_ms(),
            nonce: rand::thread_rng().gen(),
            params,
        };
        pb::SignedQuery {
            account: q.account.0.to_vec(),
            issued_at_ms: q.issued_at_ms,
            nonce: q.nonce,
            signature: q.sign(key.signing_key()).to_vec(),
        }
    }

    /// The key's own account (or the one given to [`Client::for_account`]):
    /// balance and its free, tagged and reserved parts, status, today's
    /// outflow, limits, tier, lots.
    pub async fn account(&self, key: &WalletKey) -> Result<AccountInfo> {
        self.with_retries(|| {
            let mut w = self.wallet();
            // A fresh signed query per attempt (each nonce is single-use).
            let r = self.request(pb::GetAccountRequest {
                query: Some(self.signed_query(key, method::GET_ACCOUNT, Vec::new())),
            });
            async move { Ok(account_from(w.get_account(r).await?.into_inner())) }
        })
        .await
    }

    /// One page of the key's history (entries after `cursor`, oldest first).
    pub async fn history(&self, key: &WalletKey, cursor: u64, limit: u32) -> Result<HistoryPage> {
        self.with_retries(|| {
            let mut w = self.wallet();
            let r = self.request(pb::GetHistoryRequest {
                query: Some(self.signed_query(key, method::GET_HISTORY, query::history_params(cursor, limit))),
                cursor,
                limit,
            });
            async move {
                let p = w.get_history(r).await?.into_inner();
                Ok(HistoryPage {
                    entries: p.entries.into_iter().map(record_from).collect(),
                    next_cursor: p.next_cursor,
                    more: p.more,
                })
            }
        })
        .await
    }

    /// Held payments of the account (as payer or payee), by a signed query.
    pub async fn held_payments(&self, key: &WalletKey) -> Result<Vec<HeldPayment>> {
        self.with_retries(|| {
            let mut w = self.wallet();
            let r = self.request(pb::GetAccountRequest {
                query: Some(self.signed_query(key, LIST_HELD_PAYMENTS, Vec::new())),
            });
            async move {
                let list = w.list_held_payments(r).await?.into_inner();
                Ok(list.payments.into_iter().map(held_from).collect())
            }
        })
        .await
    }

    /// Confirms a payment of the account that the anti-fraud rules hold:
    /// it executes (effect `settled`). Signed by the account's controlling
    /// key. A business account's signatory approves one waiting for
    /// signatures the same way, with its own key: the approval is recorded
    /// (effect `approved`), or the payment executes once enough have.
    pub async fn confirm_payment(&self, key: &WalletKey, payment: TxId) -> Result<Payment> {
        let op = self.sign(key, Op::ConfirmPayment { payment });
        self.submit(&op).await
    }

    /// Voids a held payment of the account (or, by a signatory, one waiting
    /// for signatures): its reserved funds become spendable again.
    pub async fn void_payment(&self, key: &WalletKey, payment: TxId) -> Result<Payment> {
        let op = self.sign(key, Op::VoidPayment { payment });
        self.submit(&op).await
    }

    /// Pays `payee` purpose-bound money of `purpose` from the account's
    /// free funds: for a business or settlement account that the purpose
    /// names as its issuer (a "budget payer").
    pub async fn pay_tagged(
        &self,
        key: &WalletKey,
        payee: AccountId,
        amount: Kopecks,
        purpose: u32,
    ) -> Result<Payment> {
        let op = self.sign(key, Op::PayTagged { payee, amount, purpose });
        self.submit(&op).await
    }

    /// A committed operation by id.
    pub async fn receipt(&self, tx: TxId) -> Result<Record> {
        self.with_retries(|| {
            let mut w = self.wallet();
            let r = self.request(pb::GetReceiptRequest { tx_id: tx.0.to_vec() });
            async move { Ok(record_from(w.get_receipt(r).await?.into_inner())) }
        })
        .await
    }

    /// Every incoming payment after `from_cursor`, then live ones, for as long
    /// as the stream is polled. Reconnects on its own after a dropped
    /// connection or a node restart, resuming after the last cursor it
    /// delivered: nothing is missed or repeated. Ends with an error only for
    /// a non-retryable failure (unknown account, bad key).
    pub fn watch_incoming(
        &self,
        key: &WalletKey,
        from_cursor: u64,
    ) -> impl Stream<Item = Result<Record>> + Send + 'static {
        let client = self.clone();
        let key = key.clone();
        self.follow(
            from_cursor,
            256,
            move |cursor: &u64| {
                let mut w = client.wallet();
                let req = pb::WatchIncomingRequest {
                    query: Some(client.signed_query(&key, method::WATCH_INCOMING, query::watch_params(*cursor))),
                    from_cursor: *cursor,
                };
                async move { w.watch_incoming(req).await }
            },
            |cursor: &mut u64, p: pb::IncomingPayment| {
                let rec = record_from(p.record?);
                if rec.cursor <= *cursor {
                    return None;
                }
                *cursor = rec.cursor;
                Some(rec)
            },
        )
    }
}

/// [`Error::Config`] if `op` could not be encoded: a field out of its limits.
pub(crate) fn check_op_limits(op: &Op) -> Result<()> {
    let list = |what: &str, n: usize| {
        if n > MAX_RULE_LIST {
            Err(Error::Config(format!("{n} {what}; at most {MAX_RULE_LIST}")))
        } else {
            Ok(())
        }
    };
    match op {
        Op::Transfer { purpose, .. } if purpose.len() > MAX_PURPOSE_BYTES => Err(Error::Config(format!(
            "purpose is {} bytes; at most {MAX_PURPOSE_BYTES}",
            purpose.len()
        ))),
        Op::AdmitBank { name, .. } if name.len() > MAX_NAME_BYTES => Err(Error::Config(format!(
            "bank name is {} bytes; at most {MAX_NAME_BYTES}",
            name.len()
        ))),
        Op::DefinePurpose { payees, categories, .. } => {
            list("payees", payees.len())?;
            list("categories", categories.len())
        }
        Op::SetSignatories { keys, .. } => list("signatory keys", keys.len()),
        _ => Ok(()),
    }
}

/// Whether a long-lived stream should reconnect after `err`.
pub(crate) fn reconnect_after(err: &Error) -> bool {
    err.is_retryable() || matches!(err, Error::Refused { code, .. } if code == "TOO_MANY_STREAMS")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> AccountId {
        AccountId([b; 32])
    }

    /// A client over a channel that never connects (enough to sign).
    fn offline_client() -> Client {
        let channel = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        Client {
            conn: Arc::new(RwLock::new(Conn::new("http://127.0.0.1:9".into(), channel))),
            chain_id: "ruble-test".into(),
            max_validity_ms: 600_000,
            clock_offset_ms: 0,
            central_bank: id(1),
            account: None,
            cfg: ClientBuilder::new("http://127.0.0.1:9"),
        }
    }

    #[test]
    fn effects_convert_from_the_api() {
        let e = |kind: &str, held_until_ms, swept, collected| {
            effect_from(Some(pb::Effect {
                kind: kind.into(),
                held_until_ms,
                swept,
                collected,
            }))
        };
        assert_eq!(effect_from(None), Effect::None);
        assert_eq!(e("none", 0, 0, 0), Effect::None);
        assert_eq!(e("held", 77, 0, 0), Effect::Held { until_ms: 77 });
        assert_eq!(e("swept", 0, 5, 0), Effect::Swept { amount: 5 });
        assert_eq!(e("collected", 0, 0, 9), Effect::Collected { amount: 9 });
        assert_eq!(e("settled", 0, 3, 0), Effect::Settled { swept: 3 });
        assert_eq!(e("approved", 0, 0, 0), Effect::Approved);
        assert_eq!(e("from-the-future", 1, 1, 1), Effect::None);

        let r = receipt_from(pb::Receipt {
            tx_id: vec![4; 32],
            height: 3,
            effect: Some(pb::Effect {
                kind: "held".into(),
                held_until_ms: 1_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let p = Payment {
            receipt: r,
            duplicate: false,
        };
        assert_eq!(p.held_until_ms(), Some(1_000));
        assert_eq!(p.payment_id(), TxId([4; 32]));
        assert_eq!((p.swept(), p.collected()), (0, None));
        let settled = Payment {
            receipt: Receipt {
                effect: Effect::Settled { swept: 12 },
                ..p.receipt.clone()
            },
            duplicate: false,
        };
        assert_eq!((settled.held_until_ms(), settled.swept()), (None, 12));
    }

    #[test]
    fn accounts_carry_the_control_fields() {
        let a = account_from(pb::Account {
            id: vec![2; 32],
            bank: vec![3; 32],
            kind: AccountKind::Retail as i32,
            status: AccountStatus::ReceiveOnly as i32,
            balance: 1_000,
            free: 600,
            tagged: 300,
            reserved: 150,
            tier: "simplified".into(),
            category: 5411,
            sweep: true,
            controller: vec![9; 32],
            signatories: Some(pb::SignatoryRule {
                min_amount: 50,
                required: 2,
                keys: vec![vec![5; 32], vec![6; 32], vec![1; 3]],
            }),
            lots: vec![pb::Lot {
                purpose: 7,
                amount: 300,
                reserved: 50,
                unlock_at_ms: 1,
                expires_at_ms: 2,
            }],
            fraud_flagged_by: vec![3; 32],
            ..Default::default()
        });
        assert_eq!(a.status, Some(AccountStatus::ReceiveOnly));
        assert_eq!((a.free, a.tagged, a.reserved), (600, 300, 150));
        assert_eq!(a.tier, Some(Tier::Simplified));
        assert_eq!((a.category, a.sweep), (5411, true));
        assert_eq!(a.controller, id(9));
        assert!(a.key_rotated());
        let s = a.signatories.as_ref().unwrap();
        assert_eq!((s.min_amount, s.required, s.keys.clone()), (50, 2, vec![id(5), id(6)]));
        assert_eq!(
            a.lots,
            vec![Lot {
                purpose: 7,
                amount: 300,
                reserved: 50,
                unlock_at_ms: 1,
                expires_at_ms: 2
            }]
        );
        assert_eq!(a.fraud_flagged_by, Some(id(3)));
        // A plain account: the controller is the id itself, no tier, nothing flagged.
        let plain = account_from(pb::Account {
            id: vec![2; 32],
            kind: AccountKind::Business as i32,
            ..Default::default()
        });
        assert_eq!(plain.controller, id(2));
        assert!(!plain.key_rotated());
        assert_eq!(
            (plain.tier, plain.signatories, plain.fraud_flagged_by),
            (None, None, None)
        );
    }

    #[test]
    fn held_payments_purposes_and_controls_convert() {
        let h = held_from(pb::HeldPayment {
            payment_id: vec![8; 32],
            payer: vec![1; 32],
            payee: vec![2; 32],
            amount: 500,
            kind: "signatures".into(),
            deadline_ms: 99,
            approvals: vec![vec![5; 32]],
            required: 2,
            tagged_part: 100,
        });
        assert_eq!(h.payment_id, TxId([8; 32]));
        assert_eq!(h.kind, Some(HoldKind::Signatures));
        assert_eq!((h.approvals.clone(), h.required, h.tagged_part), (vec![id(5)], 2, 100));
        for k in [HoldKind::NewPayee, HoldKind::FraudRegistry, HoldKind::Signatures] {
            assert_eq!(hold_kind_from(k.as_str()), Some(k));
        }
        assert_eq!(hold_kind_from("other"), None);
        let p = purpose_from(pb::Purpose {
            id: 7,
            issuer: vec![1; 32],
            unlock_at_ms: 10,
            expires_at_ms: 20,
            payees: vec![vec![2; 32]],
            categories: vec![5411, 70_000],
        });
        assert_eq!(
            p,
            Purpose {
                id: 7,
                issuer: id(1),
                unlock_at_ms: 10,
                expires_at_ms: 20,
                payees: vec![id(2)],
                categories: vec![5411],
            }
        );
        let lim = |c| pb::Limits {
            balance_cap: c,
            payment_cap: c,
            daily_outflow_cap: c,
        };
        let c = controls_from(pb::ControlSettings {
            hold_threshold: 1,
            hold_window_ms: 2,
            protected_minimum: 3,
            anonymous_limits: Some(lim(4)),
            simplified_limits: Some(lim(5)),
            full_limits: None,
        });
        assert_eq!(c.tier_limits(Tier::Anonymous).payment_cap, 4);
        assert_eq!(c.tier_limits(Tier::Simplified).balance_cap, 5);
        assert_eq!(c.tier_limits(Tier::Full), Limits::default());
    }

    #[test]
    fn oversized_rules_are_refused_before_signing() {
        let many = vec![id(4); MAX_RULE_LIST + 1];
        for op in [
            Op::SetSignatories {
                account: id(2),
                min_amount: 1,
                required: 1,
                keys: many.clone(),
            },
            Op::DefinePurpose {
                purpose: 1,
                issuer: id(1),
                unlock_at_ms: 0,
                expires_at_ms: 1,
                payees: many.clone(),
                categories: vec![],
            },
            Op::DefinePurpose {
                purpose: 1,
                issuer: id(1),
                unlock_at_ms: 0,
                expires_at_ms: 1,
                payees: vec![],
                categories: vec![1; MAX_RULE_LIST + 1],
            },
            Op::AdmitBank {
                bank: id(3),
                name: "n".repeat(MAX_NAME_BYTES + 1),
            },
        ] {
            assert!(matches!(check_op_limits(&op), Err(Error::Config(_))), "{op:?}");
        }
        assert!(check_op_limits(&Op::SetSignatories {
            account: id(2),
            min_amount: 1,
            required: 1,
            keys: vec![id(4); MAX_RULE_LIST],
        })
        .is_ok());
    }

    /// After a rotation the query names the account and verifies against
    /// the new (controlling) key, not against the account id.
    #[tokio::test]
    async fn queries_for_a_rotated_account_name_it_and_are_signed_by_the_key() {
        let key = WalletKey::generate();
        let c = offline_client();
        let own = c.signed_query(&key, method::GET_ACCOUNT, Vec::new());
        assert_eq!(own.account, key.account_id().0.to_vec());
        assert_eq!(c.account_of(&key), key.account_id());

        let account = id(42);
        let mine = c.for_account(account);
        assert_eq!(mine.account_of(&key), account);
        let q = mine.signed_query(&key, LIST_HELD_PAYMENTS, Vec::new());
        assert_eq!(q.account, account.0.to_vec());
        let query = Query {
            chain_id: "ruble-test".into(),
            method: LIST_HELD_PAYMENTS.into(),
            account,
            issued_at_ms: q.issued_at_ms,
            nonce: q.nonce,
            params: Vec::new(),
        };
        // Signed by the key over the message naming the account.
        use ed25519_dalek::Verifier;
        let sig = ed25519_dalek::Signature::from_slice(&q.signature).unwrap();
        assert!(key.signing_key().verifying_key().verify(&query.message(), &sig).is_ok());
        // Operations are signed by the key itself (the ledger resolves the account).
        let op = mine.sign(&key, Op::ConfirmPayment { payment: TxId([1; 32]) });
        assert_eq!(op.body.signer, key.account_id());
        // The original client is untouched.
        assert_eq!(c.account_of(&key), key.account_id());
    }
}
