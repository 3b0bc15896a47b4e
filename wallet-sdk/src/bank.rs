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
use ruble_domain::types::{AccountId, AccountKind};
use ruble_proto::v1 as pb;
use ruble_proto::v1::bank_service_client::BankServiceClient;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

use crate::client::{
    account_from, block_from, record_from, result_from, submit_request, AccountInfo, Block, Client, ClientBuilder,
    HistoryPage, Payment,
};
use crate::error::{Error, Result};
use crate::keys::{Address, WalletKey};

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
        if !matches!(
            op,
            Op::OpenAccount { .. } | Op::CloseAccount { .. } | Op::Freeze { .. } | Op::Unfreeze { .. }
        ) {
            return Err(Error::Config(format!("{} is not a bank operation", op.name())));
        }
        self.check_key(key).await?;
        Ok(self.client.sign(key, op))
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
                        other => return Err(Error::Config(format!("{} is not a bank operation", other.name()))),
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
