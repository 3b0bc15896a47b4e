//! `WalletService`: for account holders. No client certificate: operations
//! authorise themselves by signature, reads by a fresh signed query.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use ruble_ledger::codec::Op;
use ruble_ledger::query::{method, Query, QueryError};
use ruble_ledger::types::{AccountId, TxId};
use ruble_ledger::Reason;
use ruble_proto::v1 as pb;
use ruble_proto::v1::wallet_service_server::WalletService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::stream::{deliver, run_submit_stream, ResultStream};
use crate::budget::Caller;
use crate::convert::*;
use crate::ctx::{now_ms, Ctx};

pub struct Wallet {
    pub ctx: Arc<Ctx>,
}

/// Method name bound into a `ListHeldPayments` query (no params).
pub const LIST_HELD_PAYMENTS: &str = "ListHeldPayments";

/// The wallet service takes what account holders sign: payments
/// (transfers, and tagged payments of a business budget payer) and the
/// confirmation or voiding of a held payment (by its payer or, for one
/// waiting for signatures, a signatory key). The signer may be a key a
/// rotation put in control of an account; the ledger resolves it.
/// Administrative operations go through the bank and central-bank
/// services, behind mTLS; so does the central bank's issuing of
/// purpose-bound money.
fn wallet_check(central_bank: &AccountId, op: &ruble_ledger::SignedOp) -> Result<(), Reason> {
    match op.body.op {
        Op::Transfer { .. } | Op::ConfirmPayment { .. } | Op::VoidPayment { .. } => Ok(()),
        Op::PayTagged { .. } if op.body.signer != *central_bank => Ok(()),
        _ => Err(Reason::NotAuthorised),
    }
}

impl Wallet {
    fn check(&self) -> impl Fn(&ruble_ledger::SignedOp) -> Result<(), Reason> + Send + Sync + 'static {
        let cb = self.ctx.ledger.view().params.central_bank;
        move |op| wallet_check(&cb, op)
    }

    /// Verifies a signed query for `method` with `params`; returns the account.
    ///
    /// The query names the account (its id, also after a rotation) and is
    /// signed by the key that controls it now: its own key, or the one its
    /// bank rotated in (`docs/signing.md`). Signed by the key a rotation
    /// retired, it is refused PERMISSION_DENIED, KEY_REVOKED.
    fn check_query(&self, q: Option<&pb::SignedQuery>, method: &str, params: Vec<u8>) -> Result<AccountId, Status> {
        let q = q.ok_or_else(|| coded_status(Code::Unauthenticated, "MISSING_QUERY", "a signed query is required"))?;
        let account = account_id(&q.account, "query.account")?;
        let controls = self.ctx.controls()?;
        let key = controls.controller(&account);
        let query = Query {
            chain_id: self.ctx.ledger.view().params.chain_id,
            method: method.to_string(),
            account,
            issued_at_ms: q.issued_at_ms,
            nonce: q.nonce,
            params,
        };
        let revoked = || {
            reason_status(
                Reason::KeyRevoked,
                "the query is signed by a key that no longer controls the account (rotated); sign with the new key",
            )
        };
        let checked = self.ctx.queries.lock().check_by(now_ms(), &query, &key, &q.signature);
        match checked {
            Ok(()) => {}
            // The account's own key, rotated away.
            Err(QueryError::BadSignature) if key != account && query.verify_by(&account, &q.signature) => {
                return Err(revoked())
            }
            Err(e) => {
                let code = match e {
                    QueryError::BadSignature | QueryError::Stale | QueryError::Reused => Code::Unauthenticated,
                    QueryError::Overloaded => Code::ResourceExhausted,
                };
                return Err(coded_status(code, e.code(), e.to_string()));
            }
        }
        Ok(account)
    }
}

type IncomingStream = Pin<Box<dyn Stream<Item = Result<pb::IncomingPayment, Status>> + Send>>;

#[tonic::async_trait]
impl WalletService for Wallet {
    async fn get_chain_info(&self, _: Request<pb::GetChainInfoRequest>) -> Result<Response<pb::ChainInfo>, Status> {
        let v = self.ctx.ledger.view();
        Ok(Response::new(pb::ChainInfo {
            chain_id: v.params.chain_id.clone(),
            height: v.height,
            head_hash: v.head_hash.to_vec(),
            phase: phase_pb(v.params.phase) as i32,
            reporting_threshold: v.params.reporting_threshold,
            max_validity_ms: v.params.max_validity_ms,
            timestamp_ms: now_ms().max(v.timestamp_ms),
            business_limits: Some(limits_pb(v.params.limits(ruble_ledger::AccountKind::Business))),
            retail_limits: Some(limits_pb(v.params.limits(ruble_ledger::AccountKind::Retail))),
            central_bank: v.params.central_bank.0.to_vec(),
        }))
    }

    async fn submit(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        let op = decode_op(req.get_ref().operation.as_ref()).map_err(|r| reason_status(r, r.describe()))?;
        self.check()(&op).map_err(|r| {
            reason_status(
                r,
                "the wallet service accepts transfers, tagged payments (not the central bank's: it issues them through \
                 its own service) and the confirmation or voiding of held payments only",
            )
        })?;
        let id = op.tx_id.0.to_vec();
        let mut outs = self.ctx.submit(vec![op]).await?;
        Ok(Response::new(single_result(&id, outs.remove(0))?))
    }

    async fn submit_batch(
        &self,
        req: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        Ok(Response::new(
            self.ctx.submit_batch(&req.get_ref().operations, self.check()).await?,
        ))
    }

    type SubmitStreamStream = ResultStream;

    async fn submit_stream(
        &self,
        req: Request<Streaming<pb::SubmitRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let caller = Caller::of(&req);
        Ok(Response::new(run_submit_stream(
            self.ctx.clone(),
            caller,
            req.into_inner(),
            self.check(),
        )?))
    }

    async fn get_receipt(&self, req: Request<pb::GetReceiptRequest>) -> Result<Response<pb::OperationRecord>, Status> {
        let tx = TxId::from_slice(&req.get_ref().tx_id)
            .ok_or_else(|| coded_status(Code::InvalidArgument, "MALFORMED", "tx_id must be 32 bytes"))?;
        let store = &self.ctx.store;
        let cursor = store
            .tx_cursor(&tx)
            .map_err(internal)?
            .ok_or_else(|| coded_status(Code::NotFound, "UNKNOWN_TX", "no committed operation with this id"))?;
        let mut recs = Recorder::new(&self.ctx)?.records_at(&[cursor])?;
        Ok(Response::new(recs.remove(0)))
    }

    async fn get_account(&self, req: Request<pb::GetAccountRequest>) -> Result<Response<pb::Account>, Status> {
        let account = self.check_query(req.get_ref().query.as_ref(), method::GET_ACCOUNT, Vec::new())?;
        let a = self
            .ctx
            .store
            .account(&account)
            .map_err(internal)?
            .ok_or_else(|| reason_status(Reason::UnknownAccount, "no such account"))?;
        let controls = self.ctx.controls()?;
        Ok(Response::new(account_pb(
            &a,
            &self.ctx.ledger.view().params,
            &controls,
            now_ms(),
        )))
    }

    async fn list_held_payments(
        &self,
        req: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::HeldPaymentList>, Status> {
        let account = self.check_query(req.get_ref().query.as_ref(), LIST_HELD_PAYMENTS, Vec::new())?;
        if self.ctx.store.account(&account).map_err(internal)?.is_none() {
            return Err(reason_status(Reason::UnknownAccount, "no such account"));
        }
        let controls = self.ctx.controls()?;
        Ok(Response::new(held_list(&controls, |p| {
            p.payer == account || p.payee == account
        })))
    }

    async fn get_history(&self, req: Request<pb::GetHistoryRequest>) -> Result<Response<pb::HistoryPage>, Status> {
        let r = req.get_ref();
        let account = self.check_query(
            r.query.as_ref(),
            method::GET_HISTORY,
            ruble_ledger::query::history_params(r.cursor, r.limit),
        )?;
        if self.ctx.store.account(&account).map_err(internal)?.is_none() {
            return Err(reason_status(Reason::UnknownAccount, "no such account"));
        }
        history_page(&self.ctx, &account, r.cursor, r.limit)
    }

    type WatchIncomingStream = IncomingStream;

    async fn watch_incoming(
        &self,
        req: Request<pb::WatchIncomingRequest>,
    ) -> Result<Response<Self::WatchIncomingStream>, Status> {
        let r = req.get_ref();
        let account = self.check_query(
            r.query.as_ref(),
            method::WATCH_INCOMING,
            ruble_ledger::query::watch_params(r.from_cursor),
        )?;
        if self.ctx.store.account(&account).map_err(internal)?.is_none() {
            return Err(reason_status(Reason::UnknownAccount, "no such account"));
        }
        let caller = Caller::of(&req);
        let permit = self.ctx.stream_permit(caller)?;
        let ctx = self.ctx.clone();
        let from = r.from_cursor;
        let stall = ctx.limits.stream_idle(&caller);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let _permit = permit;
            watch_loop(ctx, account, from, tx, stall).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One page of an account's history (all operations touching it).
pub fn history_page(
    ctx: &Ctx,
    account: &AccountId,
    cursor: u64,
    limit: u32,
) -> Result<Response<pb::HistoryPage>, Status> {
    let limit = page_limit(ctx, limit);
    let mut cursors = ctx.store.history(account, cursor, limit + 1).map_err(internal)?;
    let more = cursors.len() > limit;
    cursors.truncate(limit);
    let entries = Recorder::new(ctx)?.records_at(&cursors)?;
    Ok(Response::new(pb::HistoryPage {
        next_cursor: cursors.last().copied().unwrap_or(cursor),
        entries,
        more,
    }))
}

fn is_incoming(op: &ruble_ledger::SignedOp, account: &AccountId) -> bool {
    matches!(&op.body.op, Op::Transfer { payee, .. } if payee == account)
}

/// Streams every incoming payment with cursor > `from`: first from the store,
/// then live from the commit feed. Subscribing before the catch-up and
/// skipping cursors already sent means nothing is missed or repeated; a
/// lagging subscriber falls back to the store. A watcher that stops reading
/// for `stall` is dropped.
async fn watch_loop(
    ctx: Arc<Ctx>,
    account: AccountId,
    mut from: u64,
    tx: mpsc::Sender<Result<pb::IncomingPayment, Status>>,
    stall: std::time::Duration,
) {
    loop {
        let mut live = ctx.commits.subscribe();
        // Catch up from the store.
        loop {
            let cursors = match ctx.store.history(&account, from, 512) {
                Ok(c) => c,
                Err(e) => {
                    deliver(&tx, Err(internal(e)), stall).await;
                    return;
                }
            };
            if cursors.is_empty() {
                break;
            }
            let recs = match Recorder::new(&ctx).and_then(|r| r.records_at(&cursors)) {
                Ok(r) => r,
                Err(e) => {
                    deliver(&tx, Err(e), stall).await;
                    return;
                }
            };
            for (c, rec) in cursors.iter().zip(recs) {
                from = *c;
                if rec.kind == "transfer"
                    && rec.to == account.0
                    && !deliver(&tx, Ok(pb::IncomingPayment { record: Some(rec) }), stall).await
                {
                    return;
                }
            }
        }
        // Live.
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = ctx.shutting_down() => return,
                ev = live.recv() => match ev {
                    Ok(block) => {
                        let recorder = match Recorder::new(&ctx) {
                            Ok(r) => r,
                            Err(e) => {
                                deliver(&tx, Err(e), stall).await;
                                return;
                            }
                        };
                        for (i, a) in block.ops.iter().enumerate() {
                            let c = ruble_ledger::types::cursor_of(block.header.height, i as u32);
                            if c <= from || !is_incoming(&a.op, &account) {
                                continue;
                            }
                            from = c;
                            let rec = recorder.record(&a.op, c, block.header.timestamp_ms, a.large, a.effect);
                            if !deliver(&tx, Ok(pb::IncomingPayment { record: Some(rec) }), stall).await {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}
