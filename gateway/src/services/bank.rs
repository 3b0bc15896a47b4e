//! `BankService`: for participant banks over mutual TLS. The client
//! certificate names the bank; every call acts as that bank and sees only its
//! own clients.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::state::Effect;
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
    FreezeReceiveOnly,
    FlagFraud,
    Release,
    Void,
    Collect,
    SetCategory,
    SetSweep,
    SetTier,
    RotateKey,
    SetSignatories,
}

impl Expect {
    fn matches(self, op: &Op) -> bool {
        matches!(
            (self, op),
            (Expect::Open, Op::OpenAccount { .. })
                | (Expect::Close, Op::CloseAccount { .. })
                | (Expect::Freeze, Op::Freeze { .. })
                | (Expect::Unfreeze, Op::Unfreeze { .. })
                | (Expect::FreezeReceiveOnly, Op::FreezeReceiveOnly { .. })
                | (Expect::FlagFraud, Op::FlagFraud { .. })
                | (Expect::Release, Op::ReleasePayment { .. })
                | (Expect::Void, Op::VoidPayment { .. })
                | (Expect::Collect, Op::Collect { .. })
                | (Expect::SetCategory, Op::SetCategory { .. })
                | (Expect::SetSweep, Op::SetSweep { .. })
                | (Expect::SetTier, Op::SetTier { .. })
                | (Expect::RotateKey, Op::RotateKey { .. })
                | (Expect::SetSignatories, Op::SetSignatories { .. })
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

/// A client operation a bank may relay: a payment (transfer, or tagged
/// payment of a budget payer) paid by one of its clients, or a client's
/// confirmation or voiding of a held payment whose payer is its client.
fn client_check(ctx: &Ctx, bank: &AccountId, op: &SignedOp) -> Result<(), Reason> {
    let mine = |a: &AccountId| match served_by(ctx, a, bank) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Reason::NotAuthorised),
        Err(_) => Err(Reason::Unavailable),
    };
    match &op.body.op {
        Op::Transfer { .. } | Op::PayTagged { .. } => {
            // The hot path: the signer names the paying account (a key
            // rotated away still names its account; the ledger refuses it
            // as KEY_REVOKED).
            let signer = op.body.signer;
            match ctx.servicing.get(&ctx.store, &signer) {
                Ok(Some((b, kind))) if b == *bank && kind != AccountKind::CentralBank => return Ok(()),
                Ok(Some(_)) => return Err(Reason::NotAuthorised),
                Ok(None) => {}
                Err(_) => return Err(Reason::Unavailable),
            }
            // Not an account: a key a rotation put in control of one.
            let controls = ctx.controls().map_err(|_| Reason::Unavailable)?;
            match controls.resolve(&signer) {
                Ok(payer) if payer != signer => mine(&payer),
                Ok(_) => Err(Reason::NotAuthorised),
                Err(_) => Err(Reason::KeyRevoked),
            }
        }
        Op::ConfirmPayment { payment } | Op::VoidPayment { payment } => {
            let controls = ctx.controls().map_err(|_| Reason::Unavailable)?;
            match controls.pending(payment) {
                Some(p) => mine(&p.payer),
                // Settled, voided or never held: the ledger answers (the
                // receipt of a resubmitted one, or UNKNOWN_PAYMENT).
                None => Ok(()),
            }
        }
        _ => Err(Reason::NotAuthorised),
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
        self.scope_check(&bank, &op.body.op)?;
        let id = op.tx_id.0.to_vec();
        let mut outs = self.ctx.submit(vec![op]).await?;
        Ok(Response::new(single_result(&id, outs.remove(0))?))
    }

    /// What a bank-signed operation may name: its own clients (the debtor of
    /// a collection; any client account may be put on the fraud registry),
    /// and held payments of its clients. NOT_FOUND for an account that does
    /// not exist, PERMISSION_DENIED for another bank's. The ledger checks
    /// again; this answers precisely and shows a bank nothing of other
    /// banks' clients' payments.
    fn scope_check(&self, bank: &AccountId, op: &Op) -> Result<(), Status> {
        match op {
            Op::FreezeReceiveOnly { account }
            | Op::Collect { debtor: account, .. }
            | Op::SetCategory { account, .. }
            | Op::SetSweep { account, .. }
            | Op::SetTier { account, .. }
            | Op::RotateKey { account, .. }
            | Op::SetSignatories { account, .. } => {
                match self.ctx.servicing.get(&self.ctx.store, account).map_err(internal)? {
                    None => Err(reason_status(Reason::UnknownAccount, "no such account")),
                    Some((b, kind)) if b == *bank && kind != AccountKind::CentralBank => Ok(()),
                    Some(_) => Err(reason_status(
                        Reason::NotAuthorised,
                        "the account is not served by this bank",
                    )),
                }
            }
            Op::ReleasePayment { payment } | Op::VoidPayment { payment } => {
                // A payment no longer held goes on to the ledger: a
                // resubmission gets its receipt, anything else
                // UNKNOWN_PAYMENT or PAYMENT_EXPIRED.
                let controls = self.ctx.controls()?;
                match controls.pending(payment) {
                    Some(p) if !served_by(&self.ctx, &p.payer, bank)? => Err(reason_status(
                        Reason::NotAuthorised,
                        "the held payment's payer is not served by this bank",
                    )),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
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
        Expect::FreezeReceiveOnly => "freeze_receive_only",
        Expect::FlagFraud => "flag_fraud",
        Expect::Release => "release_payment",
        Expect::Void => "void_payment",
        Expect::Collect => "collect",
        Expect::SetCategory => "set_category",
        Expect::SetSweep => "set_sweep",
        Expect::SetTier => "set_tier",
        Expect::RotateKey => "rotate_key",
        Expect::SetSignatories => "set_signatories",
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
    async fn freeze_receive_only(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::FreezeReceiveOnly).await
    }
    async fn flag_fraud(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::FlagFraud).await
    }
    async fn release_payment(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::Release).await
    }
    async fn void_payment(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::Void).await
    }
    async fn collect(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::Collect).await
    }
    async fn set_category(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::SetCategory).await
    }
    async fn set_sweep(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::SetSweep).await
    }
    async fn set_tier(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::SetTier).await
    }
    async fn rotate_key(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::RotateKey).await
    }
    async fn set_signatories(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.bank_op(req, Expect::SetSignatories).await
    }

    async fn list_held_payments(
        &self,
        req: Request<pb::ListHeldPaymentsRequest>,
    ) -> Result<Response<pb::HeldPaymentList>, Status> {
        let bank = self.bank(&req)?;
        let r = req.get_ref();
        let controls = self.ctx.controls()?;
        if !r.account.is_empty() {
            let account = account_id(&r.account, "account")?;
            self.own_account(&bank, &account)?;
            return Ok(Response::new(held_list(&controls, |p| {
                p.payer == account || p.payee == account
            })));
        }
        // Every held payment with a client of this bank on either side.
        let ctx = self.ctx.clone();
        let list = tokio::task::spawn_blocking(move || -> Result<pb::HeldPaymentList, Status> {
            let mut payments = Vec::new();
            for (id, p) in controls.all_pending() {
                if payments.len() >= MAX_LISTED {
                    break;
                }
                if served_by(&ctx, &p.payer, &bank)? || served_by(&ctx, &p.payee, &bank)? {
                    payments.push(held_pb(id, p, &controls));
                }
            }
            Ok(pb::HeldPaymentList { payments })
        })
        .await
        .map_err(internal)??;
        Ok(Response::new(list))
    }

    async fn list_sweeps(&self, req: Request<pb::ListSweepsRequest>) -> Result<Response<pb::HistoryPage>, Status> {
        let bank = self.bank(&req)?;
        let r = req.get_ref();
        let (cursor, limit) = (r.cursor, page_limit(&self.ctx, r.limit));
        let ctx = self.ctx.clone();
        let page = tokio::task::spawn_blocking(move || sweeps_page(&ctx, &bank, cursor, limit))
            .await
            .map_err(internal)??;
        Ok(Response::new(page))
    }

    async fn list_purposes(&self, req: Request<pb::ListPurposesRequest>) -> Result<Response<pb::PurposeList>, Status> {
        self.bank(&req)?;
        Ok(Response::new(purpose_list(&*self.ctx.controls()?)))
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
        let controls = self.ctx.controls()?;
        Ok(Response::new(account_pb(
            &a,
            &self.ctx.ledger.view().params,
            &controls,
            now_ms(),
        )))
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
        let controls = self.ctx.controls()?;
        Ok(Response::new(account_pb(
            &a,
            &self.ctx.ledger.view().params,
            &controls,
            now_ms(),
        )))
    }
}

/// One operation of a block, as the bank stream filters it.
struct BlockOp {
    cursor: u64,
    op: SignedOp,
    large: bool,
    effect: Effect,
    /// Accounts it moved money of without naming them (live blocks only;
    /// for stored ones they are derived again below).
    also: Vec<AccountId>,
}

/// A block's operations filtered to those touching the bank's clients:
/// those naming one, signed by a key that controls one, or executing a
/// held payment with one on either side.
fn filtered_event(
    ctx: &Ctx,
    bank: &AccountId,
    header: &ruble_ledger::block::BlockHeader,
    hash: &[u8; 32],
    ops: impl Iterator<Item = BlockOp>,
) -> Result<pb::BlockEvent, Status> {
    let recorder = Recorder::new(ctx)?;
    let mut operations = Vec::new();
    for o in ops {
        let mut mine = false;
        let signer_account = recorder.account_of(&o.op.body.signer);
        for a in touched_by(&o.op).chain(o.also.iter().copied()).chain([signer_account]) {
            if served_by(ctx, &a, bank)? {
                mine = true;
                break;
            }
        }
        let rec = || recorder.record(&o.op, o.cursor, header.timestamp_ms, o.large, o.effect);
        if mine {
            operations.push(rec());
        } else if matches!(o.effect, Effect::Settled { .. }) {
            // The payer and payee of the payment it executed.
            let r = rec();
            let parties: Vec<AccountId> = [&r.from, &r.to]
                .into_iter()
                .filter_map(|b| AccountId::from_slice(b))
                .collect();
            let mut theirs = false;
            for a in &parties {
                if served_by(ctx, a, bank)? {
                    theirs = true;
                    break;
                }
            }
            if theirs {
                operations.push(r);
            }
        }
    }
    Ok(pb::BlockEvent {
        header: Some(block_header_pb(header, hash)),
        operations,
    })
}

/// Most statement entries one `ListSweeps` call reads: a page with fewer
/// sweeps than asked for and `more` set continues from `next_cursor`.
const SWEEP_SCAN_MAX: usize = 8192;

/// Operations of the bank's settlement-account statement after `cursor`
/// whose holding-limit sweep credited this bank (the payee is its client),
/// at most `limit` of them.
fn sweeps_page(ctx: &Ctx, bank: &AccountId, cursor: u64, limit: usize) -> Result<pb::HistoryPage, Status> {
    let recorder = Recorder::new(ctx)?;
    let mut found = Vec::new();
    let (mut next, mut scanned, mut more) = (cursor, 0usize, false);
    'scan: loop {
        let chunk = ctx.store.history(bank, next, 512).map_err(internal)?;
        if chunk.is_empty() {
            break;
        }
        let full = chunk.len() == 512;
        for s in recorder.ops_at(&chunk)? {
            if found.len() >= limit || scanned >= SWEEP_SCAN_MAX {
                more = true;
                break 'scan;
            }
            next = s.cursor;
            scanned += 1;
            if s.effect.swept() == 0 {
                continue;
            }
            let rec = recorder.stored(&s, 0);
            if let Some(payee) = AccountId::from_slice(&rec.to) {
                if ctx
                    .servicing
                    .get(&ctx.store, &payee)
                    .map_err(internal)?
                    .is_some_and(|(b, _)| b == *bank)
                {
                    found.push(s);
                }
            }
        }
        if !full {
            break;
        }
    }
    Ok(pb::HistoryPage {
        entries: recorder.records_of(&found)?,
        next_cursor: next,
        more,
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
                filtered_event(
                    &ctx,
                    &bank,
                    &header,
                    &hash,
                    ops.into_iter().map(|s| BlockOp {
                        cursor: s.cursor,
                        op: s.op,
                        large: s.large,
                        effect: s.effect,
                        also: Vec::new(),
                    }),
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
                        let ops = block.ops.iter().enumerate().map(|(i, a)| BlockOp {
                            cursor: ruble_ledger::types::cursor_of(h, i as u32),
                            op: a.op.clone(),
                            large: a.large,
                            effect: a.effect,
                            also: a.also.clone(),
                        });
                        let ev = filtered_event(&ctx, &bank, &block.header, &block.hash, ops);
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
