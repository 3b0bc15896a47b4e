//! [`AdminClient`]: the central bank's client for `CentralBankService`, over
//! mutual TLS with the central-bank certificate.
//!
//! Operations are signed with the central bank's key by the same code as
//! payments ([`Client::sign`]) and submitted like [`Client::submit`]: signed
//! once, the same bytes resent on every retry, so a retry after a lost answer
//! gets the original receipt (`duplicate`) and never acts twice.

use std::time::Duration;

use futures::Stream;
use ruble_ledger::codec::{Op, SignedOp, MAX_NAME_BYTES};
use ruble_ledger::types::{AccountId, AccountKind, AccountStatus, Kopecks, Limits, Phase};
use ruble_proto::v1 as pb;
use ruble_proto::v1::central_bank_service_client::CentralBankServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::client::{
    account_from, block_from, limits_from, record_from, result_from, AccountInfo, Block, Client, ClientBuilder,
    Payment, Record,
};
use crate::error::{Error, Result};
use crate::keys::{Address, WalletKey};

/// The supply figures and their per-bank breakdown (`GetSupply`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Supply {
    pub issued: Kopecks,
    pub redeemed: Kopecks,
    /// `issued - redeemed`.
    pub in_circulation: Kopecks,
    /// The sum of all balances; equals `in_circulation`.
    pub sum_balances: Kopecks,
    /// The block these figures are as of.
    pub height: u64,
    /// Hex.
    pub state_hash: String,
    pub phase: Option<Phase>,
    /// Number of accounts.
    pub accounts: u64,
    pub banks: Vec<BankSupply>,
}

/// One bank's part of the supply.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BankSupply {
    pub bank: AccountId,
    pub name: String,
    pub suspended: bool,
    pub settlement_balance: Kopecks,
    pub clients_balance: Kopecks,
    /// Number of client accounts.
    pub clients: u64,
}

/// Which accounts [`AdminClient::list_accounts`] returns; the default is all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only accounts with this status.
    pub status: Option<AccountStatus>,
    /// Only accounts this bank services (its clients and its settlement account).
    pub bank: Option<AccountId>,
}

/// One page of [`AdminClient::list_accounts`], in ascending id order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccountPage {
    pub accounts: Vec<AccountInfo>,
    /// Pass as `after` for the next page (the last id on this one).
    pub next: Option<AccountId>,
    /// More matching accounts exist after this page.
    pub more: bool,
}

/// The limits of each account kind ([`AdminClient::limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KindLimits {
    pub business: Limits,
    pub retail: Limits,
    /// Read from a settlement account; `None` if there is no bank.
    pub settlement: Option<Limits>,
}

impl KindLimits {
    /// The limits of `kind`, where known.
    pub fn of(&self, kind: AccountKind) -> Option<Limits> {
        match kind {
            AccountKind::Business => Some(self.business),
            AccountKind::Retail => Some(self.retail),
            AccountKind::Settlement => self.settlement,
            AccountKind::CentralBank => None,
        }
    }
}

/// What [`AdminClient::large_payments_until`] found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LargePayments {
    /// The committed head when the listing began; nothing above it is listed.
    pub head_height: u64,
    /// The last height covered (the head, or the requested end if lower).
    pub to_height: u64,
    /// Oldest first.
    pub records: Vec<Record>,
}

pub(crate) fn submit_request(op: &SignedOp) -> pb::SubmitRequest {
    pb::SubmitRequest {
        operation: Some(pb::SignedOperation {
            body: op.body_bytes.clone(),
            signature: op.signature.to_vec(),
        }),
    }
}

/// The central bank's client. Cheap to clone; clones share the connection.
///
/// ```no_run
/// # async fn f() -> ruble_wallet::Result<()> {
/// use ruble_wallet::{AdminClient, Credentials, WalletKey};
/// let creds = Credentials::dev_central_bank("dev-data")?;
/// let admin = AdminClient::connect(creds.client_builder()?).await?;
/// let key = WalletKey::load(creds.key.as_deref().unwrap(), None)?;
/// let bank = admin.supply().await?.banks[0].bank;
/// let receipt = admin.issue(&key, bank, 1_000_000_00).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AdminClient {
    client: Client,
    cb: CentralBankServiceClient<Channel>,
}

impl AdminClient {
    /// Over a connection made with the central-bank certificate
    /// ([`ClientBuilder::identity_files`]).
    pub fn new(client: Client) -> AdminClient {
        let cb = CentralBankServiceClient::new(client.channel()).max_decoding_message_size(64 << 20);
        AdminClient { client, cb }
    }

    /// Connects `builder` (which must present the central-bank certificate).
    pub async fn connect(builder: ClientBuilder) -> Result<AdminClient> {
        Ok(AdminClient::new(builder.connect().await?))
    }

    /// The underlying connection (chain parameters, the wallet service).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// [`Error::Key`] unless `key` is the central bank's key of this chain.
    pub fn check_key(&self, key: &WalletKey) -> Result<()> {
        let cb = self.client.central_bank();
        if key.account_id() != cb {
            return Err(Error::Key(format!(
                "the key {} is not the central bank's key of this chain ({})",
                key.address(),
                Address(cb)
            )));
        }
        Ok(())
    }

    /// Signs a central-bank operation with `key` (checked to be the central
    /// bank's). Keep the result to retry it safely with [`AdminClient::submit`].
    pub fn sign(&self, key: &WalletKey, op: Op) -> Result<SignedOp> {
        self.check_key(key)?;
        if let Op::AdmitBank { name, .. } = &op {
            if name.len() > MAX_NAME_BYTES {
                return Err(Error::Config(format!(
                    "bank name is {} bytes; at most {MAX_NAME_BYTES}",
                    name.len()
                )));
            }
        }
        if matches!(
            op,
            Op::Transfer { .. } | Op::OpenAccount { .. } | Op::CloseAccount { .. }
        ) {
            return Err(Error::Config(format!("{} is not a central-bank operation", op.name())));
        }
        Ok(self.client.sign(key, op))
    }

    /// Submits a signed central-bank operation through the RPC of its kind
    /// and waits for its durable receipt. Retries resend the same bytes: an
    /// operation that had committed comes back with its original receipt.
    pub async fn submit(&self, op: &SignedOp) -> Result<Payment> {
        let req = submit_request(op);
        let which = match &op.body.op {
            Op::Issue { .. } => 0,
            Op::Redeem { .. } => 1,
            Op::AdmitBank { .. } => 2,
            Op::SuspendBank { .. } => 3,
            Op::SetPhase { .. } => 4,
            Op::SetLimits { .. } => 5,
            Op::SetReportingThreshold { .. } => 6,
            Op::Freeze { .. } => 7,
            Op::Unfreeze { .. } => 8,
            other => {
                return Err(Error::Config(format!(
                    "{} is not a central-bank operation",
                    other.name()
                )))
            }
        };
        self.client
            .with_retries(|| {
                let mut cb = self.cb.clone();
                let r = self.client.request(req.clone());
                async move {
                    let resp = match which {
                        0 => cb.issue(r).await,
                        1 => cb.redeem(r).await,
                        2 => cb.admit_bank(r).await,
                        3 => cb.suspend_bank(r).await,
                        4 => cb.set_phase(r).await,
                        5 => cb.set_limits(r).await,
                        6 => cb.set_reporting_threshold(r).await,
                        7 => cb.freeze_account(r).await,
                        _ => cb.unfreeze_account(r).await,
                    };
                    result_from(resp?.into_inner())
                }
            })
            .await
    }

    async fn sign_submit(&self, key: &WalletKey, op: Op) -> Result<Payment> {
        let op = self.sign(key, op)?;
        self.submit(&op).await
    }

    /// Mints `amount` into `bank`'s settlement account.
    pub async fn issue(&self, key: &WalletKey, bank: AccountId, amount: Kopecks) -> Result<Payment> {
        self.sign_submit(key, Op::Issue { bank, amount }).await
    }

    /// Takes `amount` out of `bank`'s settlement account and out of circulation.
    pub async fn redeem(&self, key: &WalletKey, bank: AccountId, amount: Kopecks) -> Result<Payment> {
        self.sign_submit(key, Op::Redeem { bank, amount }).await
    }

    /// Admits a bank (opening its settlement account) or reinstates a suspended one.
    pub async fn admit_bank(&self, key: &WalletKey, bank: AccountId, name: &str) -> Result<Payment> {
        self.sign_submit(
            key,
            Op::AdmitBank {
                bank,
                name: name.to_string(),
            },
        )
        .await
    }

    pub async fn suspend_bank(&self, key: &WalletKey, bank: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::SuspendBank { bank }).await
    }

    /// Moves the rollout phase forward (it never goes back).
    pub async fn set_phase(&self, key: &WalletKey, phase: Phase) -> Result<Payment> {
        self.sign_submit(key, Op::SetPhase { phase }).await
    }

    /// The caps of one account kind (`u64::MAX` = unlimited).
    pub async fn set_limits(&self, key: &WalletKey, kind: AccountKind, limits: Limits) -> Result<Payment> {
        self.sign_submit(key, Op::SetLimits { kind, limits }).await
    }

    /// Payments of at least `amount` are flagged large (0 turns flagging off).
    pub async fn set_reporting_threshold(&self, key: &WalletKey, amount: Kopecks) -> Result<Payment> {
        self.sign_submit(key, Op::SetReportingThreshold { amount }).await
    }

    /// Freezes any account: it neither pays nor receives until unfrozen.
    pub async fn freeze(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::Freeze { account }).await
    }

    pub async fn unfreeze(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::Unfreeze { account }).await
    }

    /// Issued, redeemed, in circulation, the sum of balances, per bank.
    pub async fn supply(&self) -> Result<Supply> {
        let s = self
            .client
            .with_retries(|| {
                let mut cb = self.cb.clone();
                let r = self.client.request(pb::GetSupplyRequest {});
                async move { Ok(cb.get_supply(r).await?.into_inner()) }
            })
            .await?;
        Ok(Supply {
            issued: s.issued,
            redeemed: s.redeemed,
            in_circulation: s.in_circulation,
            sum_balances: s.sum_balances,
            height: s.height,
            state_hash: hex::encode(&s.state_hash),
            phase: u8::try_from(s.phase).ok().and_then(Phase::from_u8),
            accounts: s.accounts,
            banks: s
                .banks
                .into_iter()
                .map(|b| BankSupply {
                    bank: AccountId::from_slice(&b.bank).unwrap_or_default(),
                    name: b.name,
                    suspended: b.suspended,
                    settlement_balance: b.settlement_balance,
                    clients_balance: b.clients_balance,
                    clients: b.clients,
                })
                .collect(),
        })
    }

    /// Any account.
    pub async fn account(&self, id: AccountId) -> Result<AccountInfo> {
        self.client
            .with_retries(|| {
                let mut cb = self.cb.clone();
                let r = self
                    .client
                    .request(pb::GetClientAccountRequest { account: id.0.to_vec() });
                async move { Ok(account_from(cb.get_any_account(r).await?.into_inner())) }
            })
            .await
    }

    /// One page of accounts after `after` (ascending id order), `limit` at
    /// most (0 = the node's default; capped by the node).
    pub async fn list_accounts(
        &self,
        filter: &AccountFilter,
        after: Option<AccountId>,
        limit: u32,
    ) -> Result<AccountPage> {
        let req = pb::ListAccountsRequest {
            status: filter.status.map_or(0, |s| s as i32),
            bank: filter.bank.map(|b| b.0.to_vec()).unwrap_or_default(),
            after: after.map(|a| a.0.to_vec()).unwrap_or_default(),
            limit,
        };
        let page = self
            .client
            .with_retries(|| {
                let mut cb = self.cb.clone();
                let r = self.client.request(req.clone());
                async move { Ok(cb.list_accounts(r).await?.into_inner()) }
            })
            .await?;
        Ok(AccountPage {
            accounts: page.accounts.into_iter().map(account_from).collect(),
            next: AccountId::from_slice(&page.next),
            more: page.more,
        })
    }

    /// Every matching account, walking the pages.
    pub async fn accounts(&self, filter: &AccountFilter) -> Result<Vec<AccountInfo>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_accounts(filter, after, 0).await?;
            out.extend(page.accounts);
            match (page.more, page.next) {
                (true, Some(n)) => after = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// A whole block.
    pub async fn block(&self, height: u64) -> Result<Block> {
        self.client
            .with_retries(|| {
                let mut cb = self.cb.clone();
                let r = self.client.request(pb::GetBlockRequest { height });
                async move { Ok(block_from(cb.get_block(r).await?.into_inner())) }
            })
            .await
    }

    /// The current limits of every kind. Business and retail come from the
    /// chain parameters; settlement from a settlement account (the first bank's).
    pub async fn limits(&self) -> Result<KindLimits> {
        let info = self.client.chain_info().await?;
        let settlement = match self.supply().await?.banks.first() {
            Some(b) => Some(self.account(b.bank).await?.limits),
            None => None,
        };
        Ok(KindLimits {
            business: limits_from(info.business_limits),
            retail: limits_from(info.retail_limits),
            settlement,
        })
    }

    /// The first height whose block timestamp is at or after `time_ms`
    /// (block timestamps never go back), or the head + 1 if there is none.
    pub async fn first_height_at(&self, time_ms: u64) -> Result<u64> {
        let head = self.client.chain_info().await?.height;
        let (mut lo, mut hi) = (1u64, head + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.block(mid).await?.timestamp_ms >= time_ms {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// The large payments committed from `from_height` up to `until_height`
    /// (inclusive) or the head, whichever is lower, then stops.
    ///
    /// `StreamLargePayments` sends what is stored, then waits for new blocks;
    /// it does not say when the stored part ends. So the listing ends at the
    /// first record past its last height or, when nothing more comes, once
    /// the stream has been quiet for `idle` (the stored part arrives in one
    /// burst). A transport failure resumes after the last record received.
    pub async fn large_payments_until(
        &self,
        from_height: u64,
        until_height: Option<u64>,
        idle: Duration,
    ) -> Result<LargePayments> {
        let head = self.client.chain_info().await?.height;
        let last = until_height.map_or(head, |u| u.min(head));
        let from = from_height.max(1);
        let mut records: Vec<Record> = Vec::new();
        let mut attempt = 0u32;
        if from <= last {
            loop {
                match self.collect_large(from, last, idle, &mut records).await {
                    Err(e) if e.is_retryable() && attempt < self.client.cfg_retries() => {
                        tokio::time::sleep(self.client.cfg_backoff() * 2u32.saturating_pow(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                    Ok(()) => break,
                }
            }
        }
        Ok(LargePayments {
            head_height: head,
            to_height: last,
            records,
        })
    }

    /// One attempt of [`AdminClient::large_payments_until`], appending to `out`.
    async fn collect_large(&self, from: u64, last: u64, idle: Duration, out: &mut Vec<Record>) -> Result<()> {
        let resume = out.last().map_or(from, |r| r.height);
        let mut after = out.last().map(|r| r.cursor);
        let mut cb = self.cb.clone();
        // No deadline on the request: it would cut a long catch-up.
        let call = cb.stream_large_payments(pb::StreamLargePaymentsRequest {
            from_height: resume,
            until_height: 0,
        });
        let mut s = match tokio::time::timeout(self.client.timeout(), call).await {
            Ok(r) => r?.into_inner(),
            Err(_) => return Err(Error::Timeout),
        };
        loop {
            let msg = match tokio::time::timeout(idle, s.message()).await {
                Err(_) => return Ok(()), // quiet: the stored part is over
                Ok(m) => m?,
            };
            let Some(m) = msg else {
                return Err(Error::Transport("the large-payment stream ended".into()));
            };
            let Some(rec) = m.record else { continue };
            let r = record_from(rec);
            if after.is_some_and(|a| r.cursor <= a) {
                continue;
            }
            if r.height > last {
                return Ok(());
            }
            after = Some(r.cursor);
            out.push(r);
        }
    }

    /// Every large payment from `from_height` on, then live ones, for as
    /// long as the stream is polled. Reconnects by itself after a dropped
    /// connection or a restart of the node, resuming after the last record it
    /// delivered: nothing is missed or repeated.
    pub fn large_payments(&self, from_height: u64) -> impl Stream<Item = Result<Record>> + Send + 'static {
        let (tx, rx) = mpsc::channel(256);
        let me = self.clone();
        tokio::spawn(async move {
            let mut height = from_height.max(1);
            let mut after: Option<u64> = None;
            let mut failures = 0u32;
            loop {
                let mut cb = me.cb.clone();
                let err = match cb
                    .stream_large_payments(pb::StreamLargePaymentsRequest {
                        from_height: height,
                        until_height: 0,
                    })
                    .await
                {
                    Ok(resp) => {
                        let mut s = resp.into_inner();
                        loop {
                            match s.message().await {
                                Ok(Some(m)) => {
                                    failures = 0;
                                    let Some(rec) = m.record else { continue };
                                    let r = record_from(rec);
                                    if after.is_some_and(|a| r.cursor <= a) {
                                        continue;
                                    }
                                    after = Some(r.cursor);
                                    height = r.height;
                                    if tx.send(Ok(r)).await.is_err() {
                                        return;
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
                let wait = me.client.cfg_backoff() * 2u32.saturating_pow(failures.min(5));
                tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Whether a long-lived stream should reconnect after `err`.
pub(crate) fn reconnect_after(err: &Error) -> bool {
    err.is_retryable() || matches!(err, Error::Refused { code, .. } if code == "TOO_MANY_STREAMS")
}
