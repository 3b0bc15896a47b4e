//! [`BankClient`]: a participant bank's client for `BankService`, over mutual
//! TLS with the bank's certificate. The node acts as the bank the certificate
//! names and shows it only its own clients.
//!
//! Operations are signed with the bank's key by the same code as payments
//! ([`Client::sign`]) and submitted like [`Client::submit`]: signed once, the
//! same bytes resent on every retry.

use std::sync::{Arc, Mutex};

use futures::Stream;
use ruble_domain::codec::{Op, SignedOp};
use ruble_domain::types::{AccountId, AccountKind, Kopecks, Tier, TxId};
use ruble_proto::v1 as pb;
use ruble_proto::v1::bank_service_client::BankServiceClient;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

use crate::client::{
    account_from, block_from, held_from, purpose_from, record_from, result_from, submit_request, AccountInfo, Block,
    Client, ClientBuilder, HeldPayment, HistoryPage, Payment, Purpose,
};
use crate::error::{Error, Result};
use crate::keys::{Address, WalletKey};

/// Whether a bank signs `op` (through `BankService`).
pub fn is_bank_op(op: &Op) -> bool {
    match op {
        Op::OpenAccount { .. }
        | Op::CloseAccount { .. }
        | Op::Freeze { .. }
        | Op::Unfreeze { .. }
        | Op::FreezeReceiveOnly { .. }
        | Op::FlagFraud { .. }
        | Op::ReleasePayment { .. }
        | Op::VoidPayment { .. }
        | Op::Collect { .. }
        | Op::SetCategory { .. }
        | Op::SetSweep { .. }
        | Op::SetTier { .. }
        | Op::RotateKey { .. }
        | Op::SetSignatories { .. } => true,
        Op::Issue { .. }
        | Op::Redeem { .. }
        | Op::Transfer { .. }
        | Op::AdmitBank { .. }
        | Op::SuspendBank { .. }
        | Op::SetPhase { .. }
        | Op::SetLimits { .. }
        | Op::SetReportingThreshold { .. }
        | Op::SetControls { .. }
        | Op::ConfirmPayment { .. }
        | Op::DefinePurpose { .. }
        | Op::PayTagged { .. }
        | Op::SetTierLimits { .. } => false,
    }
}

/// A bank's client. Cheap to clone; clones share the connection.
///
/// ```no_run
/// # async fn f() -> ruble_wallet::Result<()> {
/// use ruble_wallet::{BankClient, Credentials, WalletKey, AccountKind};
/// let creds = Credentials::dev_bank("dev-data", Some("alfa-dev-bank"))?;
/// let bank = BankClient::connect(creds.client_builder()?).await?;
/// let key = WalletKey::load(creds.key.as_deref().unwrap(), None)?;
/// let client = WalletKey::generate();
/// bank.open_account(&key, client.account_id(), AccountKind::Business).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BankClient {
    client: Client,
    /// The bank the certificate names (its settlement account), once asked.
    id: Arc<OnceCell<AccountId>>,
}

impl BankClient {
    /// Over a connection made with the bank's certificate
    /// ([`ClientBuilder::identity_files`]).
    pub fn new(client: Client) -> BankClient {
        BankClient {
            client,
            id: Arc::new(OnceCell::new()),
        }
    }

    /// The bank service on the node the client talks to now (taken per call:
    /// the client may have followed the leader elsewhere).
    fn bank(&self) -> BankServiceClient<Channel> {
        BankServiceClient::new(self.client.channel()).max_decoding_message_size(64 << 20)
    }

    /// Connects `builder` (which must present a bank certificate).
    pub async fn connect(builder: ClientBuilder) -> Result<BankClient> {
        Ok(BankClient::new(builder.connect().await?))
    }

    /// The underlying connection (chain parameters, the wallet service).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bank's own settlement account (`GetSelf`).
    pub async fn settlement(&self) -> Result<AccountInfo> {
        self.client
            .with_retries(|| {
                let mut b = self.bank();
                let r = self.client.request(pb::GetSelfRequest {});
                async move { Ok(account_from(b.get_self(r).await?.into_inner())) }
            })
            .await
    }

    /// The id of the bank the certificate names.
    pub async fn bank_id(&self) -> Result<AccountId> {
        self.id
            .get_or_try_init(|| async { Ok(self.settlement().await?.id) })
            .await
            .copied()
    }

    /// [`Error::Key`] unless `key` is the key of the bank the certificate names.
    pub async fn check_key(&self, key: &WalletKey) -> Result<()> {
        let bank = self.bank_id().await?;
        if key.account_id() != bank {
            return Err(Error::Key(format!(
                "the key {} is not the key of the bank the certificate names ({})",
                key.address(),
                Address(bank)
            )));
        }
        Ok(())
    }

    /// Signs a bank operation with `key` (checked to be this bank's). Keep the
    /// result to retry it safely with [`BankClient::submit`].
    pub async fn sign(&self, key: &WalletKey, op: Op) -> Result<SignedOp> {
        if !is_bank_op(&op) {
            return Err(Error::Config(format!("{} is not a bank operation", op.name())));
        }
        self.check_key(key).await?;
        self.client.try_sign(key, op)
    }

    /// Submits a signed bank operation through the RPC of its kind and waits
    /// for its durable receipt; retries resend the same bytes.
    pub async fn submit(&self, op: &SignedOp) -> Result<Payment> {
        let req = submit_request(op);
        self.client
            .with_retries(|| {
                let mut b = self.bank();
                let r = self.client.request(req.clone());
                async move {
                    let resp = match &op.body.op {
                        Op::OpenAccount { .. } => b.open_account(r).await,
                        Op::CloseAccount { .. } => b.close_account(r).await,
                        Op::Freeze { .. } => b.freeze_account(r).await,
                        Op::Unfreeze { .. } => b.unfreeze_account(r).await,
                        Op::FreezeReceiveOnly { .. } => b.freeze_receive_only(r).await,
                        Op::FlagFraud { .. } => b.flag_fraud(r).await,
                        Op::ReleasePayment { .. } => b.release_payment(r).await,
                        Op::VoidPayment { .. } => b.void_payment(r).await,
                        Op::Collect { .. } => b.collect(r).await,
                        Op::SetCategory { .. } => b.set_category(r).await,
                        Op::SetSweep { .. } => b.set_sweep(r).await,
                        Op::SetTier { .. } => b.set_tier(r).await,
                        Op::RotateKey { .. } => b.rotate_key(r).await,
                        Op::SetSignatories { .. } => b.set_signatories(r).await,
                        other @ (Op::Issue { .. }
                        | Op::Redeem { .. }
                        | Op::Transfer { .. }
                        | Op::AdmitBank { .. }
                        | Op::SuspendBank { .. }
                        | Op::SetPhase { .. }
                        | Op::SetLimits { .. }
                        | Op::SetReportingThreshold { .. }
                        | Op::SetControls { .. }
                        | Op::ConfirmPayment { .. }
                        | Op::DefinePurpose { .. }
                        | Op::PayTagged { .. }
                        | Op::SetTierLimits { .. }) => {
                            return Err(Error::Config(format!("{} is not a bank operation", other.name())))
                        }
                    };
                    result_from(resp?.into_inner())
                }
            })
            .await
    }

    async fn sign_submit(&self, key: &WalletKey, op: Op) -> Result<Payment> {
        let op = self.sign(key, op).await?;
        self.submit(&op).await
    }

    /// Opens a client wallet for `account` (the holder's public key).
    /// Retail wallets need the retail phase (`PHASE_NOT_OPEN` before).
    pub async fn open_account(&self, key: &WalletKey, account: AccountId, kind: AccountKind) -> Result<Payment> {
        self.sign_submit(key, Op::OpenAccount { account, kind }).await
    }

    /// Closes a client's empty wallet (`BALANCE_NOT_ZERO` otherwise); final.
    pub async fn close_account(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::CloseAccount { account }).await
    }

    /// Freezes a client's wallet: it neither pays nor receives until unfrozen.
    pub async fn freeze(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::Freeze { account }).await
    }

    /// Unfreezes a client's wallet (not one the central bank froze).
    pub async fn unfreeze(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::Unfreeze { account }).await
    }

    /// A receive-only freeze of a client's wallet: it may receive, not pay,
    /// until [`BankClient::unfreeze`].
    pub async fn freeze_receive_only(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::FreezeReceiveOnly { account }).await
    }

    /// Puts any business or retail account on the fraud registry (payments
    /// to it are held).
    pub async fn flag_fraud(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::FlagFraud { account, flagged: true }).await
    }

    /// Takes an account this bank reported off the fraud registry.
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

    /// Releases a client's payment held by the anti-fraud rules: it
    /// executes (effect `settled`). Not for one waiting for signatures.
    pub async fn release_payment(&self, key: &WalletKey, payment: TxId) -> Result<Payment> {
        self.sign_submit(key, Op::ReleasePayment { payment }).await
    }

    /// Voids a client's held payment: its reserved funds become spendable again.
    pub async fn void_payment(&self, key: &WalletKey, payment: TxId) -> Result<Payment> {
        self.sign_submit(key, Op::VoidPayment { payment }).await
    }

    /// Court-ordered collection from one of this bank's clients (frozen ones
    /// too): moves `min(amount, free − protected minimum)` to `claimant`
    /// (effect `collected`).
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

    /// A client's payee category (merchant category, 0 = none), which
    /// purposes may allow.
    pub async fn set_category(&self, key: &WalletKey, account: AccountId, category: u16) -> Result<Payment> {
        self.sign_submit(key, Op::SetCategory { account, category }).await
    }

    /// Turns a client's holding-limit waterfall on or off: with it, a
    /// credit past the balance cap sends the excess to this bank's
    /// settlement account ([`BankClient::sweeps`]) instead of being refused.
    pub async fn set_sweep(&self, key: &WalletKey, account: AccountId, enabled: bool) -> Result<Payment> {
        self.sign_submit(key, Op::SetSweep { account, enabled }).await
    }

    /// Moves a retail client to another identification tier.
    pub async fn set_tier(&self, key: &WalletKey, account: AccountId, tier: Tier) -> Result<Payment> {
        self.sign_submit(key, Op::SetTier { account, tier }).await
    }

    /// Rotates the key that controls a client's account (a lost device):
    /// the account keeps its id, balance and history; `new_key` signs for
    /// it from now on and the old key is refused (`KEY_REVOKED`).
    pub async fn rotate_key(&self, key: &WalletKey, account: AccountId, new_key: AccountId) -> Result<Payment> {
        self.sign_submit(key, Op::RotateKey { account, new_key }).await
    }

    /// A business client's signatories: its payments of at least
    /// `min_amount` wait until `required` of `keys` (at most 8) approve.
    pub async fn set_signatories(
        &self,
        key: &WalletKey,
        account: AccountId,
        min_amount: Kopecks,
        required: u8,
        keys: Vec<AccountId>,
    ) -> Result<Payment> {
        self.sign_submit(
            key,
            Op::SetSignatories {
                account,
                min_amount,
                required,
                keys,
            },
        )
        .await
    }

    /// Removes a business client's signatory rule.
    pub async fn clear_signatories(&self, key: &WalletKey, account: AccountId) -> Result<Payment> {
        self.set_signatories(key, account, 0, 0, Vec::new()).await
    }

    /// Held payments of this bank's clients (as payer or payee), or of one.
    pub async fn held_payments(&self, account: Option<AccountId>) -> Result<Vec<HeldPayment>> {
        let req = pb::ListHeldPaymentsRequest {
            account: account.map(|a| a.0.to_vec()).unwrap_or_default(),
        };
        self.client
            .with_retries(|| {
                let mut b = self.bank();
                let r = self.client.request(req.clone());
                async move {
                    let list = b.list_held_payments(r).await?.into_inner();
                    Ok(list.payments.into_iter().map(held_from).collect())
                }
            })
            .await
    }

    /// One page of the operations whose holding-limit sweep credited this
    /// bank's settlement account (entries after `cursor`, oldest first):
    /// each record's `to` is the client, its effect the swept amount, to
    /// credit to the client's deposit.
    pub async fn sweeps(&self, cursor: u64, limit: u32) -> Result<HistoryPage> {
        self.client
            .with_retries(|| {
                let mut b = self.bank();
                let r = self.client.request(pb::ListSweepsRequest { cursor, limit });
                async move {
                    let p = b.list_sweeps(r).await?.into_inner();
                    Ok(HistoryPage {
                        entries: p.entries.into_iter().map(record_from).collect(),
                        next_cursor: p.next_cursor,
                        more: p.more,
                    })
                }
            })
            .await
    }

    /// Every sweep after `cursor`, walking the pages.
    pub async fn sweeps_all(&self, cursor: u64) -> Result<HistoryPage> {
        let mut out = HistoryPage {
            entries: Vec::new(),
            next_cursor: cursor,
            more: false,
        };
        loop {
            let page = self.sweeps(out.next_cursor, 1000).await?;
            let progressed = page.next_cursor != out.next_cursor;
            out.entries.extend(page.entries);
            out.next_cursor = page.next_cursor;
            if !page.more || !progressed {
                return Ok(out);
            }
        }
    }

    /// Every defined purpose (what clients' tagged money may pay).
    pub async fn purposes(&self) -> Result<Vec<Purpose>> {
        self.client
            .with_retries(|| {
                let mut b = self.bank();
                let r = self.client.request(pb::ListPurposesRequest {});
                async move {
                    let list = b.list_purposes(r).await?.into_inner();
                    Ok(list.purposes.into_iter().map(purpose_from).collect())
                }
            })
            .await
    }

    /// One of this bank's clients' accounts.
    pub async fn account(&self, account: AccountId) -> Result<AccountInfo> {
        self.client
            .with_retries(|| {
                let mut b = self.bank();
                let r = self.client.request(pb::GetClientAccountRequest {
                    account: account.0.to_vec(),
                });
                async move { Ok(account_from(b.get_client_account(r).await?.into_inner())) }
            })
            .await
    }

    /// One page of a client's statement: entries after `cursor`, oldest first.
    pub async fn statement(&self, account: AccountId, cursor: u64, limit: u32) -> Result<HistoryPage> {
        self.client
            .with_retries(|| {
                let mut b = self.bank();
                let r = self.client.request(pb::GetStatementRequest {
                    account: account.0.to_vec(),
                    cursor,
                    limit,
                });
                async move {
                    let p = b.get_statement(r).await?.into_inner();
                    Ok(HistoryPage {
                        entries: p.entries.into_iter().map(record_from).collect(),
                        next_cursor: p.next_cursor,
                        more: p.more,
                    })
                }
            })
            .await
    }

    /// The whole statement after `cursor`, walking the pages.
    pub async fn statement_all(&self, account: AccountId, cursor: u64) -> Result<HistoryPage> {
        let mut out = HistoryPage {
            entries: Vec::new(),
            next_cursor: cursor,
            more: false,
        };
        loop {
            let page = self.statement(account, out.next_cursor, 1000).await?;
            out.entries.extend(page.entries);
            out.next_cursor = page.next_cursor;
            if !page.more {
                return Ok(out);
            }
        }
    }

    /// Committed blocks from `from_height` up to `until_height` (inclusive) or
    /// the head, whichever is lower, each filtered to the operations that
    /// touch this bank's clients (every block is listed, maybe empty).
    pub async fn blocks_until(&self, from_height: u64, until_height: Option<u64>) -> Result<Vec<Block>> {
        let head = self.client.chain_info().await?.height;
        let last = until_height.map_or(head, |u| u.min(head));
        let got = Mutex::new(Vec::new());
        if from_height.max(1) <= last {
            self.client
                .retrying(|| self.collect_blocks(from_height.max(1), last, &got))
                .await?;
        }
        Ok(got.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// One attempt of [`BankClient::blocks_until`], appending to `out` and
    /// resuming after what it already holds.
    async fn collect_blocks(&self, from: u64, last: u64, out: &Mutex<Vec<Block>>) -> Result<()> {
        let next = |out: &Mutex<Vec<Block>>| {
            let out = out.lock().unwrap_or_else(|e| e.into_inner());
            out.last().map_or(from, |b| b.height + 1)
        };
        let from = next(out);
        if from > last {
            return Ok(());
        }
        let mut b = self.bank();
        // No deadline on the request (it would cut a long catch-up); one per message instead.
        let call = b.stream_blocks(pb::StreamBlocksRequest { from_height: from });
        let t = self.client.timeout();
        let mut s = match tokio::time::timeout(t, call).await {
            Ok(r) => r?.into_inner(),
            Err(_) => return Err(Error::Timeout),
        };
        loop {
            let msg = match tokio::time::timeout(t, s.message()).await {
                Err(_) => return Err(Error::Timeout),
                Ok(m) => m?,
            };
            let Some(ev) = msg else {
                return Err(Error::Transport("the block stream ended".into()));
            };
            let block = block_from(ev);
            if block.height < next(out) {
                continue;
            }
            let h = block.height;
            out.lock().unwrap_or_else(|e| e.into_inner()).push(block);
            if h >= last {
                return Ok(());
            }
        }
    }

    /// Every block from `from_height` on, then live ones, each filtered to
    /// this bank's clients, for as long as the stream is polled. Reconnects
    /// by itself, resuming after the last block it delivered.
    pub fn blocks(&self, from_height: u64) -> impl Stream<Item = Result<Block>> + Send + 'static {
        let bank = self.bank();
        self.client.follow(
            from_height.max(1),
            64,
            move |next: &u64| {
                let mut b = bank.clone();
                let req = pb::StreamBlocksRequest { from_height: *next };
                async move { b.stream_blocks(req).await }
            },
            |next: &mut u64, ev: pb::BlockEvent| {
                let block = block_from(ev);
                if block.height < *next {
                    return None;
                }
                *next = block.height + 1;
                Some(block)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use ruble_domain::codec::Op;
    use ruble_domain::types::{AccountId, AccountKind, Limits, Phase, Tier, TxId};

    use super::is_bank_op;
    use crate::admin::is_central_bank_op;

    /// Every operation goes to exactly one service, but PayTagged, which the
    /// central bank sends (IssueTagged) and a budget payer's wallet too;
    /// the wallet service takes what neither operator signs.
    #[test]
    fn every_operation_has_its_service() {
        let a = AccountId([1; 32]);
        let t = TxId([2; 32]);
        let l = Limits::UNLIMITED;
        let ops = vec![
            (Op::Issue { bank: a, amount: 1 }, "cb"),
            (Op::Redeem { bank: a, amount: 1 }, "cb"),
            (
                Op::OpenAccount {
                    account: a,
                    kind: AccountKind::Retail,
                },
                "bank",
            ),
            (Op::CloseAccount { account: a }, "bank"),
            (
                Op::Transfer {
                    payee: a,
                    amount: 1,
                    purpose: String::new(),
                },
                "wallet",
            ),
            (Op::Freeze { account: a }, "both"),
            (Op::Unfreeze { account: a }, "both"),
            (
                Op::AdmitBank {
                    bank: a,
                    name: "b".into(),
                },
                "cb",
            ),
            (Op::SuspendBank { bank: a }, "cb"),
            (Op::SetPhase { phase: Phase::Retail }, "cb"),
            (
                Op::SetLimits {
                    kind: AccountKind::Retail,
                    limits: l,
                },
                "cb",
            ),
            (Op::SetReportingThreshold { amount: 1 }, "cb"),
            (Op::FreezeReceiveOnly { account: a }, "both"),
            (
                Op::SetControls {
                    hold_threshold: 1,
                    hold_window_ms: 1,
                    protected_minimum: 1,
                },
                "cb",
            ),
            (
                Op::FlagFraud {
                    account: a,
                    flagged: true,
                },
                "both",
            ),
            (Op::ConfirmPayment { payment: t }, "wallet"),
            (Op::ReleasePayment { payment: t }, "both"),
            (Op::VoidPayment { payment: t }, "both+wallet"),
            (
                Op::Collect {
                    debtor: a,
                    claimant: a,
                    amount: 1,
                },
                "both",
            ),
            (
                Op::DefinePurpose {
                    purpose: 1,
                    issuer: a,
                    unlock_at_ms: 0,
                    expires_at_ms: 1,
                    payees: vec![],
                    categories: vec![1],
                },
                "cb",
            ),
            (
                Op::PayTagged {
                    payee: a,
                    amount: 1,
                    purpose: 1,
                },
                "cb+wallet",
            ),
            (
                Op::SetCategory {
                    account: a,
                    category: 1,
                },
                "bank",
            ),
            (
                Op::SetSweep {
                    account: a,
                    enabled: true,
                },
                "bank",
            ),
            (
                Op::SetTier {
                    account: a,
                    tier: Tier::Simplified,
                },
                "bank",
            ),
            (
                Op::SetTierLimits {
                    tier: Tier::Anonymous,
                    limits: l,
                },
                "cb",
            ),
            (Op::RotateKey { account: a, new_key: a }, "bank"),
            (
                Op::SetSignatories {
                    account: a,
                    min_amount: 1,
                    required: 1,
                    keys: vec![a],
                },
                "bank",
            ),
        ];
        // One of each tag.
        let mut tags: Vec<u8> = ops.iter().map(|(op, _)| op.tag()).collect();
        tags.sort_unstable();
        assert_eq!(tags, (1..=27).collect::<Vec<u8>>());
        for (op, who) in &ops {
            let cb = who.starts_with("cb") || who.starts_with("both");
            let bank = who.starts_with("bank") || who.starts_with("both");
            assert_eq!(is_central_bank_op(op), cb, "{}", op.name());
            assert_eq!(is_bank_op(op), bank, "{}", op.name());
        }
    }
}
