//! [`AdminClient`]: the central bank's client for `CentralBankService`, over
//! mutual TLS with the central-bank certificate.
//!
//! Operations are signed with the central bank's key by the same code as
//! payments ([`Client::sign`]) and submitted like [`Client::submit`]: signed
//! once, the same bytes resent on every retry, so a retry after a lost answer
//! gets the original receipt (`duplicate`) and never acts twice.
//!
//! On a replicated ledger it also reads and changes the membership
//! (`ClusterService`): [`AdminClient::cluster_status`] asks the node the
//! client talks to, [`AdminClient::add_replica`] and
//! [`AdminClient::remove_replica`] go to the leader.

use std::sync::Mutex;

use futures::Stream;
use ruble_domain::codec::{Op, SignedOp};
use ruble_domain::types::{AccountId, AccountKind, AccountStatus, Kopecks, Limits, Phase, Tier, TxId};
use ruble_proto::v1 as pb;
use ruble_proto::v1::central_bank_service_client::CentralBankServiceClient;
use ruble_proto::v1::cluster_service_client::ClusterServiceClient;
use tonic::transport::Channel;

use crate::client::{
    account_from, block_from, controls_from, held_from, limits_from, purpose_from, record_from, result_from,
    submit_request, AccountInfo, Block, Client, ClientBuilder, Controls, FraudEntry, HeldPayment, Payment, Purpose,
    Record,
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

/// A replica's role in the membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaRole {
    /// Votes in elections and counts for the commit quorum.
    Voter,
    /// Receives every block, neither votes nor counts for the quorum.
    Learner,
}

impl ReplicaRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaRole::Voter => "voter",
            ReplicaRole::Learner => "learner",
        }
    }
}

/// One member of the cluster ([`ClusterStatus::members`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterMember {
    pub id: u64,
    /// Its replication service, `host:port`.
    pub raft_addr: String,
    /// Its client endpoint, `https://host:port`.
    pub client_endpoint: String,
    /// `None` for a role this SDK does not know.
    pub role: Option<ReplicaRole>,
    /// On the leader: the last log index the member is known to hold.
    pub matched_index: Option<u64>,
}

/// One replica's own view of the cluster (`GetCluster`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatus {
    /// The replica that answered.
    pub node_id: u64,
    /// The leader it knows; 0 = none.
    pub leader_id: u64,
    pub term: u64,
    pub is_leader: bool,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// The head of the blocks it has applied.
    pub applied_height: u64,
    /// Hex.
    pub head_hash: String,
    /// Hex: equal on two replicas at the same `applied_height`.
    pub state_hash: String,
    /// Ascending by id.
    pub members: Vec<ClusterMember>,
    pub last_log_index: u64,
    pub applied_log_index: u64,
    pub snapshot_log_index: u64,
    pub purged_log_index: u64,
    /// The log index of the membership shown.
    pub membership_log_index: u64,
    /// A membership change is half done (joint configuration).
    pub joint: bool,
}

impl ClusterStatus {
    /// The member `id`, if it is one.
    pub fn member(&self, id: u64) -> Option<&ClusterMember> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The leader this replica knows, as a member.
    pub fn leader(&self) -> Option<&ClusterMember> {
        self.member(self.leader_id)
    }
}

fn cluster_status_from(s: pb::ClusterStatus) -> ClusterStatus {
    ClusterStatus {
        node_id: s.node_id,
        leader_id: s.leader_id,
        term: s.term,
        is_leader: s.is_leader,
        millis_since_quorum_ack: s.millis_since_quorum_ack,
        applied_height: s.applied_height,
        head_hash: hex::encode(&s.head_hash),
        state_hash: hex::encode(&s.state_hash),
        members: s
            .members
            .into_iter()
            .map(|m| ClusterMember {
                role: match pb::ReplicaRole::try_from(m.role) {
                    Ok(pb::ReplicaRole::Voter) => Some(ReplicaRole::Voter),
                    Ok(pb::ReplicaRole::Learner) => Some(ReplicaRole::Learner),
                    _ => None,
                },
                id: m.id,
                raft_addr: m.raft_addr,
                client_endpoint: m.client_endpoint,
                matched_index: m.matched_index,
            })
            .collect(),
        last_log_index: s.last_log_index,
        applied_log_index: s.applied_log_index,
        snapshot_log_index: s.snapshot_log_index,
        purged_log_index: s.purged_log_index,
        membership_log_index: s.membership_log_index,
        joint: s.joint,
    }
}

/// The shortest deadline of an [`AdminClient::add_replica`] call (the
/// leader waits up to it, less half a second, for the new replica to catch
/// up): the configured timeout if longer.
pub const ADD_REPLICA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the central bank signs `op` (through `CentralBankService`).
/// `PayTagged` is the central bank's `IssueTagged`.
pub fn is_central_bank_op(op: &Op) -> bool {
    match op {
        Op::Issue { .. }
        | Op::Redeem { .. }
        | Op::AdmitBank { .. }
        | Op::SuspendBank { .. }
        | Op::SetPhase { .. }
        | Op::SetLimits { .. }
        | Op::SetReportingThreshold { .. }
        | Op::Freeze { .. }
        | Op::Unfreeze { .. }
        | Op::FreezeReceiveOnly { .. }
        | Op::SetControls { .. }
        | Op::SetTierLimits { .. }
        | Op::DefinePurpose { .. }
        | Op::PayTagged { .. }
        | Op::FlagFraud { .. }
        | Op::ReleasePayment { .. }
        | Op::VoidPayment { .. }
        | Op::Collect { .. } => true,
        Op::Transfer { .. }
        | Op::OpenAccount { .. }
        | Op::CloseAccount { .. }
        | Op::ConfirmPayment { .. }
        | Op::SetCategory { .. }
        | Op::SetSweep { .. }
        | Op::SetTier { .. }
        | Op::RotateKey { .. }
        | Op::SetSignatories { .. } => false,
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
}

impl AdminClient {
    /// Over a connection made with the central-bank certificate
    /// ([`ClientBuilder::identity_files`]).
    pub fn new(client: Client) -> AdminClient {
        AdminClient { client }
    }

    /// The central-bank service on the node the client talks to now (taken
    /// per call: the client may have followed the leader elsewhere).
    fn cb(&self) -> CentralBankServiceClient<Channel> {
        CentralBankServiceClient::new(self.client.channel()).max_decoding_message_size(64 << 20)
    }

    /// The cluster service on the node the client talks to now.
    fn cluster(&self) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.client.channel())
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
        if !is_central_bank_op(&op) {
            return Err(Error::Config(format!("{} is not a central-bank operation", op.name())));
        }
        self.client.try_sign(key, op)
    }

    /// Submits a signed central-bank operation through the RPC of its kind
    /// and waits for its durable receipt. Retries resend the same bytes: an
    /// operation that had committed comes back with its original receipt.
    pub async fn submit(&self, op: &SignedOp) -> Result<Payment> {
        let req = submit_request(op);
        self.client
            .with_retries(|| {
                let mut cb = self.cb();
                let r = self.client.request(req.clone());
                async move {
                    let resp = match &op.body.op {
                        Op::Issue { .. } => cb.issue(r).await,
                        Op::Redeem { .. } => cb.redeem(r).await,
                        Op::AdmitBank { .. } => cb.admit_bank(r).await,
                        Op::SuspendBank { .. } => cb.suspend_bank(r).await,
                        Op::SetPhase { .. } => cb.set_phase(r).await,
                        Op::SetLimits { .. } => cb.set_limits(r).await,
                        Op::SetReportingThreshold { .. } => cb.set_reporting_threshold(r).await,
                        Op::Freeze { .. } => cb.freeze_account(r).await,
                        Op::Unfreeze { .. } => cb.unfreeze_account(r).await,
                        Op::FreezeReceiveOnly { .. } => cb.freeze_receive_only(r).await,
                        Op::SetControls { .. } => cb.set_controls(r).await,
                        Op::SetTierLimits { .. } => cb.set_tier_limits(r).await,
                        Op::DefinePurpose { .. } => cb.define_purpose(r).await,
                        Op::PayTagged { .. } => cb.issue_tagged(r).await,
                        Op::FlagFraud { .. } => cb.flag_fraud(r).await,
                        Op::ReleasePayment { .. } => cb.release_payment(r).await,
                        Op::VoidPayment { .. } => cb.void_payment(r).await,
                        Op::Collect { .. } => cb.collect(r).await,
                        other @ (Op::Transfer { .. }
                        | Op::OpenAccount { .. }
                        | Op::CloseAccount { .. }
                        | Op::ConfirmPayment { .. }
                        | Op::SetCategory { .. }
                        | Op::SetSweep { .. }
                        | Op::SetTier { .. }
                        | Op::RotateKey { .. }
                        | Op::SetSignatories { .. }) => {
                            return Err(Error::Config(format!(
                                "{} is not a central-bank operation",
                                other.name()
                            )))
                        }
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

    /// A receive-only freeze of any account but the central bank's: it may
    /// receive, not pay (`ACCOUNT_RECEIVE_ONLY`), until
    /// [`AdminClient::unfreeze`]. Tagged funds and collection still work.
    pub async fn freeze_receive_only(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::FreezeReceiveOnly { account }).await
    }

    /// The anti-fraud hold rule and the collection floor: a payment of at
    /// least `hold_threshold` (0 = off) to a payee the payer never paid that
    /// much is held for `hold_window_ms` (1 ms..=7 days, else
    /// `INVALID_RULE`); collection leaves `protected_minimum` in a wallet.
    pub async fn set_controls(
        &self,
        key: &WalletKey,
        hold_threshold: Kopecks,
        hold_window_ms: u64,
        protected_minimum: Kopecks,
    ) -> Result<Payment> {
        self.sign_submit(
            key,
            Op::SetControls {
                hold_threshold,
                hold_window_ms,
                protected_minimum,
            },
        )
        .await
    }

    /// The caps of an identification tier below `Full` (the full tier's are
    /// the retail kind's: [`AdminClient::set_limits`]).
    pub async fn set_tier_limits(&self, key: &WalletKey, tier: Tier, limits: Limits) -> Result<Payment> {
        self.sign_submit(key, Op::SetTierLimits { tier, limits }).await
    }

    /// Defines a purpose for tagged money (`PURPOSE_EXISTS` if its id is
    /// taken): at most 8 payees and 8 non-zero categories.
    pub async fn define_purpose(&self, key: &WalletKey, purpose: &Purpose) -> Result<Payment> {
        self.sign_submit(
            key,
            Op::DefinePurpose {
                purpose: purpose.id,
                issuer: purpose.issuer,
                unlock_at_ms: purpose.unlock_at_ms,
                expires_at_ms: purpose.expires_at_ms,
                payees: purpose.payees.clone(),
                categories: purpose.categories.clone(),
            },
        )
        .await
    }

    /// Issues purpose-bound money to `payee` (a business or retail wallet):
    /// new money (issued grows by `amount`) for a purpose whose issuer is
    /// the central bank.
    pub async fn issue_tagged(
        &self,
        key: &WalletKey,
        payee: AccountId,
        amount: Kopecks,
        purpose: u32,
    ) -> Result<Payment> {
        self.sign_submit(key, Op::PayTagged { payee, amount, purpose }).await
    }

    /// Puts a client account on the fraud registry: payments to it are held.
    pub async fn flag_fraud(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::FlagFraud { account, flagged: true }).await
    }

    /// Takes an account off the fraud registry (whoever reported it).
    pub async fn unflag_fraud(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(
            key,
            Op::FlagFraud {
                account,
                flagged: false,
            },
        )
        .await
    }

    /// Releases a payment held by the anti-fraud rules: it executes
    /// (effect `settled`). Not for one waiting for signatures.
    pub async fn release_payment(&self, key: &WalletKey, payment: TxId) -> Result<Payment> {
        self.sign_submit(key, Op::ReleasePayment { payment }).await
    }

    /// Voids a held payment: the reserved funds become spendable again.
    pub async fn void_payment(&self, key: &WalletKey, payment: TxId) -> Result<Payment> {
        self.sign_submit(key, Op::VoidPayment { payment }).await
    }

    /// Court-ordered collection from any client account (frozen ones too):
    /// moves `min(amount, free − protected minimum)` to `claimant` (effect
    /// `collected`); tagged funds are never collected.
    pub async fn collect(
        &self,
        key: &WalletKey,
        debtor: AccountId,
        claimant: AccountId,
        amount: Kopecks,
    ) -> Result<Payment> {
        self.sign_submit(
            key,
            Op::Collect {
                debtor,
                claimant,
                amount,
            },
        )
        .await
    }

    /// Held payments: all of them, or those of `account` (as payer or payee).
    pub async fn held_payments(&self, account: Option<AccountId>) -> Result<Vec<HeldPayment>> {
        let req = pb::ListHeldPaymentsRequest {
            account: account.map(|a| a.0.to_vec()).unwrap_or_default(),
        };
        self.client
            .with_retries(|| {
                let mut cb = self.cb();
                let r = self.client.request(req.clone());
                async move {
                    let list = cb.list_held_payments(r).await?.into_inner();
                    Ok(list.payments.into_iter().map(held_from).collect())
                }
            })
            .await
    }

    /// Every defined purpose.
    pub async fn purposes(&self) -> Result<Vec<Purpose>> {
        self.client
            .with_retries(|| {
                let mut cb = self.cb();
                let r = self.client.request(pb::ListPurposesRequest {});
                async move {
                    let list = cb.list_purposes(r).await?.into_inner();
                    Ok(list.purposes.into_iter().map(purpose_from).collect())
                }
            })
            .await
    }

    /// The chain-wide control settings: hold rule, protected minimum, tier limits.
    pub async fn controls(&self) -> Result<Controls> {
        self.client
            .with_retries(|| {
                let mut cb = self.cb();
                let r = self.client.request(pb::GetControlsRequest {});
                async move { Ok(controls_from(cb.get_controls(r).await?.into_inner())) }
            })
            .await
    }

    /// The fraud registry: each account on it and who reported it.
    pub async fn fraud_registry(&self) -> Result<Vec<FraudEntry>> {
        self.client
            .with_retries(|| {
                let mut cb = self.cb();
                let r = self.client.request(pb::ListFraudRegistryRequest {});
                async move {
                    let list = cb.list_fraud_registry(r).await?.into_inner();
                    Ok(list
                        .entries
                        .into_iter()
                        .filter_map(|e| {
                            Some(FraudEntry {
                                account: AccountId::from_slice(&e.account)?,
                                flagged_by: AccountId::from_slice(&e.flagged_by).unwrap_or_default(),
                            })
                        })
                        .collect())
                }
            })
            .await
    }

    /// Issued, redeemed, in circulation, the sum of balances, per bank.
    pub async fn supply(&self) -> Result<Supply> {
        let s = self
            .client
            .with_retries(|| {
                let mut cb = self.cb();
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
                let mut cb = self.cb();
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
                let mut cb = self.cb();
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
                let mut cb = self.cb();
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
    /// (inclusive) or the head, whichever is lower, oldest first.
    ///
    /// The head is read first and the stream is asked to end there
    /// (`StreamLargePaymentsRequest.until_height`), so the node ends it once
    /// every payment up to that height has been sent: the listing is exact,
    /// and a node that goes quiet fails it ([`Error::Timeout`], after the
    /// retries) rather than cutting it short. A transport failure resumes
    /// after the last record received.
    pub async fn large_payments_until(&self, from_height: u64, until_height: Option<u64>) -> Result<LargePayments> {
        let head = self.client.chain_info().await?.height;
        let last = until_height.map_or(head, |u| u.min(head));
        let from = from_height.max(1);
        let got = Mutex::new(Vec::new());
        if from <= last {
            self.client.retrying(|| self.collect_large(from, last, &got)).await?;
        }
        Ok(LargePayments {
            head_height: head,
            to_height: last,
            records: got.into_inner().unwrap_or_else(|e| e.into_inner()),
        })
    }

    /// One attempt of [`AdminClient::large_payments_until`], appending to
    /// `out` and resuming after what it already holds.
    async fn collect_large(&self, from: u64, last: u64, out: &Mutex<Vec<Record>>) -> Result<()> {
        let (resume, mut after) = {
            let out = out.lock().unwrap_or_else(|e| e.into_inner());
            (out.last().map_or(from, |r| r.height), out.last().map(|r| r.cursor))
        };
        let mut cb = self.cb();
        // No deadline on the request: it would cut a long catch-up. One per message instead.
        let t = self.client.timeout();
        let call = cb.stream_large_payments(pb::StreamLargePaymentsRequest {
            from_height: resume,
            until_height: last,
        });
        let mut s = match tokio::time::timeout(t, call).await {
            Ok(r) => r?.into_inner(),
            Err(_) => return Err(Error::Timeout),
        };
        loop {
            let msg = match tokio::time::timeout(t, s.message()).await {
                Err(_) => return Err(Error::Timeout),
                Ok(m) => m?,
            };
            // The node ends the stream once everything up to `last` is sent.
            let Some(m) = msg else { return Ok(()) };
            let Some(rec) = m.record else { continue };
            let r = record_from(rec);
            if after.is_some_and(|a| r.cursor <= a) {
                continue;
            }
            if r.height > last {
                // Only from a node that does not know `until_height`: past the end.
                return Ok(());
            }
            after = Some(r.cursor);
            out.lock().unwrap_or_else(|e| e.into_inner()).push(r);
        }
    }

    /// The cluster as the node this client talks to sees it (`GetCluster`):
    /// its id, the leader it knows, its applied head and the membership.
    /// Never follows the leader nor moves to another replica, even on a
    /// client built with [`ClientBuilder::replicas`]: to compare replicas,
    /// connect to each ([`ClientBuilder::new`] with its endpoint, no
    /// replicas). A single node answers `NOT_REPLICATED` ([`Error::Refused`]).
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        self.client
            .with_retries_for(self.client.timeout(), false, || {
                let mut c = self.cluster();
                let r = self.client.request(pb::GetClusterRequest {});
                async move { Ok(cluster_status_from(c.get_cluster(r).await?.into_inner())) }
            })
            .await
    }

    /// Adds replica `id` (its replication address `host:port` and client
    /// endpoint `https://host:port`) as a learner, waits until the leader has
    /// brought it up to date, and with `promote` makes it a voter. The
    /// replica must be running already, started with bootstrap off and the
    /// chain's genesis. Goes to the leader. The call's deadline is the
    /// configured timeout, at least [`ADD_REPLICA_TIMEOUT`]; a replica still
    /// catching up then is [`Error::Refused`] `REPLICA_CATCH_UP_TIMEOUT`
    /// (it stays a learner; the same call again promotes it once it caught
    /// up). Asking again for what the membership already holds is answered
    /// with the status, so a retry is harmless.
    pub async fn add_replica(
        &self,
        id: u64,
        raft_addr: &str,
        client_endpoint: &str,
        promote: bool,
    ) -> Result<ClusterStatus> {
        let req = pb::AddReplicaRequest {
            id,
            raft_addr: raft_addr.to_string(),
            client_endpoint: client_endpoint.to_string(),
            promote,
        };
        let timeout = self.client.timeout().max(ADD_REPLICA_TIMEOUT);
        self.client
            .with_retries_for(timeout, true, || {
                let mut c = self.cluster();
                let r = self.client.request_for(req.clone(), timeout);
                async move { Ok(cluster_status_from(c.add_replica(r).await?.into_inner())) }
            })
            .await
    }

    /// Removes replica `id` (a voter or a learner) from the membership.
    /// Goes to the leader. The last voter is refused (`LAST_VOTER`), an id
    /// that is no member `UNKNOWN_REPLICA` (also what a retry gets after a
    /// lost answer to a removal that was made). Stop the removed replica's
    /// process afterwards.
    pub async fn remove_replica(&self, id: u64) -> Result<ClusterStatus> {
        self.client
            .with_retries(|| {
                let mut c = self.cluster();
                let r = self.client.request(pb::RemoveReplicaRequest { id });
                async move { Ok(cluster_status_from(c.remove_replica(r).await?.into_inner())) }
            })
            .await
    }

    /// Every large payment from `from_height` on, then live ones, for as
    /// long as the stream is polled. Reconnects by itself after a dropped
    /// connection or a restart of the node, resuming after the last record it
    /// delivered: nothing is missed or repeated.
    pub fn large_payments(&self, from_height: u64) -> impl Stream<Item = Result<Record>> + Send + 'static {
        let cb = self.cb();
        // (the height to ask from, the cursor of the last record delivered)
        let start: (u64, Option<u64>) = (from_height.max(1), None);
        self.client.follow(
            start,
            256,
            move |(height, _): &(u64, Option<u64>)| {
                let mut cb = cb.clone();
                let req = pb::StreamLargePaymentsRequest {
                    from_height: *height,
                    until_height: 0,
                };
                async move { cb.stream_large_payments(req).await }
            },
            |(height, after): &mut (u64, Option<u64>), m: pb::LargePaymentReport| {
                let r = record_from(m.record?);
                if after.is_some_and(|a| r.cursor <= a) {
                    return None;
                }
                *after = Some(r.cursor);
                *height = r.height;
                Some(r)
            },
        )
    }
}
