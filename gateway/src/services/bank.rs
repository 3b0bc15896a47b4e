//! `BankService`: for participant banks over mutual TLS. The client
//! certificate names the bank; every call acts as that bank and sees only its
//! own clients.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::store::touched_by;
use ruble_ledger::types::{AccountId, AccountKind};
use ruble_ledger::Reason;
use ruble_proto::v1 as pb;
use ruble_proto::v1::bank_service_server::BankService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::stream::{deliver, run_batch_stream, run_submit_stream, BatchResultStream, ResultStream};
use super::wallet::history_page;
use crate::auth::Participant;
use crate::auth::{participant_from_request, require_bank};
use crate::budget::Caller;
use crate::convert::*;
use crate::ctx::{now_ms, Ctx};

pub struct BankSvc {
    pub ctx: Arc<Ctx>,
}

/// Which bank-signed operation each RPC takes.
#[derive(Clone, Copy)]
enum Expect {
    Open,
    Close,
    Freeze,
    Unfreeze,
}

impl Expect {
    fn matches(self, op: &Op) -> bool {
        matches!(
            (self, op),
            (Expect::Open, Op::OpenAccount { .. })
                | (Expect::Close, Op::CloseAccount { .. })
                | (Expect::Freeze, Op::Freeze { .. })
                | (Expect::Unfreeze, Op::Unfreeze { .. })
        )
    }
}

/// Whether `account` is served by `bank` (its clients and its own settlement account).
pub fn served_by(ctx: &Ctx, account: &AccountId, bank: &AccountId) -> Result<bool, Status> {
    Ok(match ctx.servicing.get(&ctx.store, account).map_err(internal)? {
        Some((b, kind)) => b == *bank && kind != AccountKind::CentralBank,
        None => false,
    })
}

/// A client operation a bank may relay: a transfer paid by one of its clients.
fn client_check(ctx: &Ctx, bank: &AccountId, op: &SignedOp) -> Result<(), Reason> {
    if !matches!(op.body.op, Op::Transfer { .. }) {
        return Err(Reason::NotAuthorised);
    }
    match served_by(ctx, &op.body.signer, bank) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Reason::NotAuthorised),
        Err(_) => Err(Reason::Unavailable),
    }
}

impl BankSvc {
    fn bank<T>(&self, req: &Request<T>) -> Result<AccountId, Status> {
        let p = participant_from_request(req)?;
        Ok(AccountId(require_bank(&p)?))
    }

    async fn bank_op(
        &self,
        req: Request<pb::SubmitRequest>,
        expect: Expect,
    ) -> Result<Response<pb::SubmitResult>, Status> {
        let bank = self.bank(&req)?;
        let op = decode_op(req.get_ref().operation.as_ref()).map_err(|r| reason_status(r, r.describe()))?;
        if !expect.matches(&op.body.op) {
            return Err(coded_status(
                Code::InvalidArgument,
                "WRONG_OPERATION",
                format!("this RPC takes a {} operation", op_name(expect)),
            ));
        }
        if op.body.signer != bank {
            return Err(reason_status(
                Reason::NotAuthorised,
                "the operation must be signed by the bank named in the client certificate",
            ));
        }
        let id = op.tx_id.0.to_vec();
        let mut outs = self.ctx.submit(vec![op]).await?;
        Ok(Response::new(single_result(&id, outs.remove(0))?))
    }

    /// Checks that `account` is this bank's; NOT_FOUND if it does not exist.
    fn own_account(&self, bank: &AccountId, account: &AccountId) -> Result<ruble_ledger::Account, Status> {
        let a = self
            .ctx
            .store
            .account(account)
            .map_err(internal)?
            .ok_or_else(|| reason_status(Reason::UnknownAccount, "no such account"))?;
        if a.bank != *bank || a.kind == AccountKind::CentralBank {
            return Err(reason_status(
                Reason::NotAuthorised,
                "the account is not served by this bank",
            ));
        }
        Ok(a)
    }
}

/// The stream budget a bank's calls are charged to.
fn as_caller(bank: &AccountId) -> Caller {
    Caller::Participant(Participant::Bank(bank.0))
}

fn op_name(e: Expect) -> &'static str {
    match e {
        Expect::Open => "open_account",
        Expect::Close => "close_account",
        Expect::Freeze => "freeze",
        Expect::Unfreeze => "unfreeze",
    }
}

type BlockStream = Pin<Box<dyn Stream<Item = Result<pb::BlockEvent, Status>> + Send>>;

#[tonic::async_trait]
impl BankService for BankSvc {
    async fn open_account(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::Open).await
    }
    async fn close_account(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::Close).await
    }
    async fn freeze_account(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::Freeze).await
    }
    async fn unfreeze_account(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::Unfreeze).await
    }

    async fn submit_client_operations(
        &self,
        req: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let bank = self.bank(&req)?;
        let resp = self
            .ctx
            .submit_batch(&req.get_ref().operations, |op| client_check(&self.ctx, &bank, op))
            .await?;
        Ok(Response::new(resp))
    }

    type SubmitClientStreamStream = ResultStream;

    async fn submit_client_stream(
        &self,
        req: Request<Streaming<pb::SubmitRequest>>,
    ) -> Result<Response<Self::SubmitClientStreamStream>, Status> {
        let bank = self.bank(&req)?;
        let ctx = self.ctx.clone();
        let check_ctx = self.ctx.clone();
        Ok(Response::new(run_submit_stream(
            ctx,
            as_caller(&bank),
            req.into_inner(),
            move |op| client_check(&check_ctx, &bank, op),
        )?))
    }

    type SubmitClientBatchesStream = BatchResultStream;

    async fn submit_client_batches(
        &self,
        req: Request<Streaming<pb::SubmitBatchRequest>>,
    ) -> Result<Response<Self::SubmitClientBatchesStream>, Status> {
        let bank = self.bank(&req)?;
        let check_ctx = self.ctx.clone();
        Ok(Response::new(run_batch_stream(
            self.ctx.clone(),
            as_caller(&bank),
            req.into_inner(),
            move |op| client_check(&check_ctx, &bank, op),
        )?))
    }

    async fn get_client_account(
        &self,
        req: Request<pb::GetClientAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let bank = self.bank(&req)?;
        let account = account_id(&req.get_ref().account, "account")?;
        let a = self.own_account(&bank, &account)?;
        Ok(Response::new(account_pb(&a, &self.ctx.ledger.view().params, now_ms())))
    }

    async fn get_statement(&self, req: Request<pb::GetStatementRequest>) -> Result<Response<pb::HistoryPage>, Status> {
        let bank = self.bank(&req)?;
        let r = req.get_ref();
        let account = account_id(&r.account, "account")?;
        self.own_account(&bank, &account)?;
        history_page(&self.ctx, &account, r.cursor, r.limit)
    }

    type StreamBlocksStream = BlockStream;

    async fn stream_blocks(
        &self,
        req: Request<pb::StreamBlocksRequest>,
    ) -> Result<Response<Self::StreamBlocksStream>, Status> {
        let bank = self.bank(&req)?;
        let caller = as_caller(&bank);
        let permit = self.ctx.stream_permit(caller)?;
        let ctx = self.ctx.clone();
        let from = height_arg(req.get_ref().from_height, "from_height")?.max(1);
        let stall = ctx.limits.stream_idle(&caller);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let _permit = permit;
            stream_blocks_loop(ctx, bank, from, tx, stall).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_self(&self, req: Request<pb::GetSelfRequest>) -> Result<Response<pb::Account>, Status> {
        let bank = self.bank(&req)?;
        let a = self
            .ctx
            .store
            .account(&bank)
            .map_err(internal)?
            .ok_or_else(|| reason_status(Reason::UnknownBank, "this bank has no settlement account"))?;
        Ok(Response::new(account_pb(&a, &self.ctx.ledger.view().params, now_ms())))
    }
}

/// A block's operations filtered to those touching the bank's clients.
fn filtered_event(
    ctx: &Ctx,
    bank: &AccountId,
    header: &ruble_ledger::block::BlockHeader,
    hash: &[u8; 32],
    ops: impl Iterator<Item = (u64, SignedOp, bool)>,
    cb: &AccountId,
) -> Result<pb::BlockEvent, Status> {
    let mut operations = Vec::new();
    for (cursor, op, large) in ops {
        let mut mine = false;
        for a in touched_by(&op) {
            if served_by(ctx, &a, bank)? {
                mine = true;
                break;
            }
        }
        if mine {
            operations.push(record_pb(&op, cursor, header.timestamp_ms, large, cb));
        }
    }
    Ok(pb::BlockEvent {
        header: Some(block_header_pb(header, hash)),
        operations,
    })
}

/// Sends every block from `next` on, filtered to the bank's clients: first
/// from the store, then live. A bank that stops reading for `stall` is dropped.
async fn stream_blocks_loop(
    ctx: Arc<Ctx>,
    bank: AccountId,
    mut next: u64,
    tx: mpsc::Sender<Result<pb::BlockEvent, Status>>,
    stall: std::time::Duration,
) {
    loop {
        let mut live = ctx.commits.subscribe();
        // Catch up from the store up to the committed head.
        let head = ctx.ledger.view().height;
        while next <= head {
            let ev = (|| -> Result<pb::BlockEvent, Status> {
                let (header, hash) = ctx
                    .store
                    .header(next)
                    .map_err(internal)?
                    .ok_or_else(|| internal(format!("block {next} at or below the head is missing")))?;
                let ops = ctx.store.block_ops(next).map_err(internal)?;
                let cb = ctx.ledger.view().params.central_bank;
                filtered_event(
                    &ctx,
                    &bank,
                    &header,
                    &hash,
                    ops.into_iter().map(|s| (s.cursor, s.op, s.large)),
                    &cb,
                )
            })();
            let failed = ev.is_err();
            if !deliver(&tx, ev, stall).await || failed {
                return;
            }
            next += 1;
        }
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = ctx.shutting_down() => return,
                ev = live.recv() => match ev {
                    Ok(block) => {
                        let h = block.header.height;
                        if h < next {
                            continue;
                        }
                        if h > next {
                            break; // a gap: catch up from the store
                        }
                        let ops = block.ops.iter().enumerate().map(|(i, a)| {
                            (ruble_ledger::types::cursor_of(h, i as u32), a.op.clone(), a.large)
                        });
                        let ev = filtered_event(&ctx, &bank, &block.header, &block.hash, ops, &block.params.central_bank);
                        if !deliver(&tx, ev, stall).await {
                            return;
                        }
                        next += 1;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}
