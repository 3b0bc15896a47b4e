//! [`Client`] and its [`ClientBuilder`].

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use rand::Rng;
use ruble_domain::codec::{Op, OpBody, SignedOp};
use ruble_domain::query::{self, method, Query};
use ruble_domain::types::{AccountId, AccountKind, AccountStatus, Kopecks, Limits, TxId};
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
}

/// The result of a successful submission.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Payment {
    pub receipt: Receipt,
    /// The payment had already been committed (a retry); this is the original receipt.
    pub duplicate: bool,
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
    })
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
    }
}

/// Converts an API account.
pub fn account_from(a: pb::Account) -> AccountInfo {
    AccountInfo {
        id: AccountId::from_slice(&a.id).unwrap_or_default(),
        kind: u8::try_from(a.kind).ok().and_then(AccountKind::from_u8),
        bank: AccountId::from_slice(&a.bank).unwrap_or_default(),
        status: u8::try_from(a.status).ok().and_then(AccountStatus::from_u8),
        balance: a.balance,
        outflow_today: a.outflow_today,
        limits: limits_from(a.limits),
        opened_height: a.opened_height,
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
    cfg: ClientBuilder,
}

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

    fn signed_query(&self, key: &WalletKey, method: &str, params: Vec<u8>) -> pb::SignedQuery {
        let q = Query {
            chain_id: self.chain_id.clone(),
            method: method.to_string(),
            account: key.account_id(),
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

    /// The key's own account: balance, status, today's outflow, limits.
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

/// Whether a long-lived stream should reconnect after `err`.
pub(crate) fn reconnect_after(err: &Error) -> bool {
    err.is_retryable() || matches!(err, Error::Refused { code, .. } if code == "TOO_MANY_STREAMS")
}
