//! `CentralBankService`: the issuer and operator, over mutual TLS with the
//! central-bank certificate.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use ruble_ledger::codec::Op;
use ruble_ledger::types::{cursor_of, cursor_parts, AccountId, AccountKind, AccountStatus};
use ruble_ledger::Reason;
use ruble_proto::v1 as pb;
use ruble_proto::v1::central_bank_service_server::CentralBankService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use super::stream::deliver;
use crate::auth::{participant_from_request, require_central_bank, Participant};
use crate::budget::Caller;
use crate::convert::*;
use crate::ctx::{now_ms, Ctx};

pub struct CentralBankSvc {
    pub ctx: Arc<Ctx>,
}

impl CentralBankSvc {
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let p = participant_from_request(req)?;
        require_central_bank(&p)
    }

    async fn cb_op(
        &self,
        req: Request<pb::SubmitRequest>,
        name: &'static str,
        expect: fn(&Op) -> bool,
    ) -> Result<Response<pb::SubmitResult>, Status> {
        self.check(&req)?;
        let op = decode_op(req.get_ref().operation.as_ref()).map_err(|r| reason_status(r, r.describe()))?;
        if !expect(&op.body.op) {
            return Err(coded_status(
                Code::InvalidArgument,
                "WRONG_OPERATION",
                format!("this RPC takes a {name} operation"),
            ));
        }
        if op.body.signer != self.ctx.ledger.view().params.central_bank {
            return Err(reason_status(
                Reason::NotAuthorised,
                "the operation must be signed by the central bank key",
            ));
        }
        let id = op.tx_id.0.to_vec();
        let mut outs = self.ctx.submit(vec![op]).await?;
        Ok(Response::new(single_result(&id, outs.remove(0))?))
    }
}

type LargeStream = Pin<Box<dyn Stream<Item = Result<pb::LargePaymentReport, Status>> + Send>>;

#[tonic::async_trait]
impl CentralBankService for CentralBankSvc {
    async fn issue(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "issue", |o| matches!(o, Op::Issue { .. })).await
    }
    async fn redeem(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "redeem", |o| matches!(o, Op::Redeem { .. })).await
    }
    async fn admit_bank(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "admit_bank", |o| matches!(o, Op::AdmitBank { .. })).await
    }
    async fn suspend_bank(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "suspend_bank", |o| matches!(o, Op::SuspendBank { .. }))
            .await
    }
    async fn set_phase(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "set_phase", |o| matches!(o, Op::SetPhase { .. })).await
    }
    async fn set_limits(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "set_limits", |o| matches!(o, Op::SetLimits { .. })).await
    }
    async fn set_reporting_threshold(
        &self,
        r: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "set_reporting_threshold", |o| {
            matches!(o, Op::SetReportingThreshold { .. })
        })
        .await
    }
    async fn freeze_account(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "freeze", |o| matches!(o, Op::Freeze { .. })).await
    }
    async fn unfreeze_account(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "unfreeze", |o| matches!(o, Op::Unfreeze { .. })).await
    }
    async fn freeze_receive_only(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "freeze_receive_only", |o| matches!(o, Op::FreezeReceiveOnly { .. }))
            .await
    }
    async fn set_controls(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "set_controls", |o| matches!(o, Op::SetControls { .. }))
            .await
    }
    async fn set_tier_limits(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "set_tier_limits", |o| matches!(o, Op::SetTierLimits { .. }))
            .await
    }
    async fn define_purpose(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "define_purpose", |o| matches!(o, Op::DefinePurpose { .. }))
            .await
    }
    async fn issue_tagged(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "pay_tagged", |o| matches!(o, Op::PayTagged { .. })).await
    }
    async fn flag_fraud(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "flag_fraud", |o| matches!(o, Op::FlagFraud { .. })).await
    }
    async fn release_payment(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "release_payment", |o| matches!(o, Op::ReleasePayment { .. }))
            .await
    }
    async fn void_payment(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "void_payment", |o| matches!(o, Op::VoidPayment { .. }))
            .await
    }
    async fn collect(&self, r: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResult>, Status> {
        self.cb_op(r, "collect", |o| matches!(o, Op::Collect { .. })).await
    }

    async fn list_held_payments(
        &self,
        req: Request<pb::ListHeldPaymentsRequest>,
    ) -> Result<Response<pb::HeldPaymentList>, Status> {
        self.check(&req)?;
        let r = req.get_ref();
        let account = if r.account.is_empty() {
            None
        } else {
            Some(account_id(&r.account, "account")?)
        };
        let controls = self.ctx.controls()?;
        Ok(Response::new(held_list(&controls, |p| {
            account.is_none_or(|a| p.payer == a || p.payee == a)
        })))
    }

    async fn list_purposes(&self, req: Request<pb::ListPurposesRequest>) -> Result<Response<pb::PurposeList>, Status> {
        self.check(&req)?;
        Ok(Response::new(purpose_list(&*self.ctx.controls()?)))
    }

    async fn get_controls(
        &self,
        req: Request<pb::GetControlsRequest>,
    ) -> Result<Response<pb::ControlSettings>, Status> {
        self.check(&req)?;
        let controls = self.ctx.controls()?;
        Ok(Response::new(control_settings_pb(
            controls.params(),
            &self.ctx.ledger.view().params,
        )))
    }

    async fn list_fraud_registry(
        &self,
        req: Request<pb::ListFraudRegistryRequest>,
    ) -> Result<Response<pb::FraudRegistry>, Status> {
        self.check(&req)?;
        Ok(Response::new(fraud_registry_pb(&*self.ctx.controls()?)))
    }

    async fn get_supply(&self, req: Request<pb::GetSupplyRequest>) -> Result<Response<pb::SupplyReport>, Status> {
        self.check(&req)?;
        let ctx = self.ctx.clone();
        // A full scan of the accounts: run it off the async threads.
        let report = tokio::task::spawn_blocking(move || supply_report(&ctx))
            .await
            .map_err(internal)??;
        Ok(Response::new(report))
    }

    async fn get_any_account(
        &self,
        req: Request<pb::GetClientAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        self.check(&req)?;
        let account = account_id(&req.get_ref().account, "account")?;
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

    type StreamLargePaymentsStream = LargeStream;

    async fn stream_large_payments(
        &self,
        req: Request<pb::StreamLargePaymentsRequest>,
    ) -> Result<Response<Self::StreamLargePaymentsStream>, Status> {
        self.check(&req)?;
        let caller = Caller::Participant(Participant::CentralBank);
        let permit = self.ctx.stream_permit(caller)?;
        let ctx = self.ctx.clone();
        let r = req.get_ref();
        let from_height = height_arg(r.from_height, "from_height")?.max(1);
        // Strictly after the last operation of the block before `from_height`.
        let from = cursor_of(from_height, 0).saturating_sub(1);
        let until = match height_arg(r.until_height, "until_height")? {
            0 => None,
            h => Some(h),
        };
        let stall = ctx.limits.stream_idle(&caller);
        let (tx, rx) = mpsc::channel(256);
        // A range that ends before it starts holds nothing: the stream ends at once.
        if until.is_none_or(|u| u >= from_height) {
            tokio::spawn(async move {
                let _permit = permit;
                large_loop(ctx, from, until, tx, stall).await;
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_block(&self, req: Request<pb::GetBlockRequest>) -> Result<Response<pb::BlockEvent>, Status> {
        self.check(&req)?;
        let h = req.get_ref().height;
        let (header, hash) = self
            .ctx
            .store
            .header(h)
            .map_err(internal)?
            .ok_or_else(|| coded_status(Code::NotFound, "UNKNOWN_BLOCK", format!("no block {h}")))?;
        let recorder = Recorder::new(&self.ctx)?;
        let operations = self
            .ctx
            .store
            .block_ops(h)
            .map_err(internal)?
            .iter()
            .map(|s| recorder.stored(s, header.timestamp_ms))
            .collect();
        Ok(Response::new(pb::BlockEvent {
            header: Some(block_header_pb(&header, &hash)),
            operations,
        }))
    }

    async fn list_accounts(&self, req: Request<pb::ListAccountsRequest>) -> Result<Response<pb::AccountPage>, Status> {
        self.check(&req)?;
        let r = req.into_inner();
        let status =
            match r.status {
                0 => None,
                s => Some(u8::try_from(s).ok().and_then(AccountStatus::from_u8).ok_or_else(|| {
                    coded_status(Code::InvalidArgument, "MALFORMED", format!("no account status {s}"))
                })?),
            };
        let bank = if r.bank.is_empty() {
            None
        } else {
            Some(account_id(&r.bank, "bank")?)
        };
        let after = if r.after.is_empty() {
            None
        } else {
            Some(account_id(&r.after, "after")?)
        };
        let limit = page_limit(&self.ctx, r.limit);
        let ctx = self.ctx.clone();
        // A scan of the accounts family from `after` on (through all of it
        // for a filter few match): off the async threads.
        let page = tokio::task::spawn_blocking(move || account_page(&ctx, status, bank, after, limit))
            .await
            .map_err(internal)??;
        Ok(Response::new(page))
    }
}

/// Up to `limit` accounts after `after` in id order, of `status` and `bank`
/// where given, and whether more match beyond them.
fn account_page(
    ctx: &Ctx,
    status: Option<AccountStatus>,
    bank: Option<AccountId>,
    after: Option<AccountId>,
    limit: usize,
) -> Result<pb::AccountPage, Status> {
    let params = ctx.ledger.view().params.clone();
    let controls = ctx.controls()?;
    let (accounts, more) = ctx
        .store
        .accounts_after(after.as_ref(), limit, |a| {
            status.is_none_or(|s| a.status == s) && bank.is_none_or(|b| a.bank == b)
        })
        .map_err(internal)?;
    let now = now_ms();
    let page: Vec<pb::Account> = accounts
        .iter()
        .map(|a| account_pb(a, &params, &controls, now))
        .collect();
    Ok(pb::AccountPage {
        next: page.last().map(|a| a.id.clone()).unwrap_or_default(),
        accounts: page,
        more,
    })
}

/// Issued, redeemed, circulation, Σ balances and a per-bank breakdown.
pub fn supply_report(ctx: &Ctx) -> Result<pb::SupplyReport, Status> {
    let view = ctx.ledger.view();
    let accounts = ctx.store.all_accounts().map_err(internal)?;
    let mut per_bank: BTreeMap<AccountId, pb::BankSupply> = BTreeMap::new();
    let mut sum: u128 = 0;
    for a in &accounts {
        sum += a.balance as u128;
        if a.kind == AccountKind::CentralBank {
            continue;
        }
        let e = per_bank.entry(a.bank).or_insert_with(|| pb::BankSupply {
            bank: a.bank.0.to_vec(),
            ..Default::default()
        });
        if a.kind == AccountKind::Settlement {
            e.settlement_balance = a.balance;
        } else {
            e.clients_balance = e.clients_balance.saturating_add(a.balance);
            e.clients += 1;
        }
    }
    // Names and suspension come from the bank records in the store's state.
    for b in ctx.store.all_banks().map_err(internal)? {
        if let Some(e) = per_bank.get_mut(&b.id) {
            e.name = b.name;
            e.suspended = b.suspended;
        }
    }
    Ok(pb::SupplyReport {
        issued: view.totals.issued,
        redeemed: view.totals.redeemed,
        in_circulation: view.totals.circulation(),
        sum_balances: u64::try_from(sum).unwrap_or(u64::MAX),
        height: view.height,
        state_hash: view.state_hash.to_vec(),
        phase: phase_pb(view.params.phase) as i32,
        banks: per_bank.into_values().collect(),
        accounts: accounts.len() as u64,
    })
}

/// Streams large payments after `from`: first from the store, then live.
/// With `until`, only those in blocks up to that height, and the stream
/// ends (OK) once they are all sent: at once when the block is committed,
/// else when it is. A reader that stops reading for `stall` is dropped.
async fn large_loop(
    ctx: Arc<Ctx>,
    mut from: u64,
    until: Option<u64>,
    tx: mpsc::Sender<Result<pb::LargePaymentReport, Status>>,
    stall: std::time::Duration,
) {
    let in_range = |c: u64| until.is_none_or(|u| cursor_parts(c).0 <= u);
    // A bounded stream must not end as if complete when it is cut short.
    let cut_short = |why: &str| {
        reason_status(
            Reason::Unavailable,
            format!("{why} before every large payment up to until_height was sent; resume after the last one received"),
        )
    };
    loop {
        let mut live = ctx.commits.subscribe();
        // What is stored, up to the committed head (read first: every large
        // payment of the blocks up to it is in the store).
        let head = match ctx.store.head_height() {
            Ok(h) => h,
            Err(e) => {
                deliver(&tx, Err(internal(e)), stall).await;
                return;
            }
        };
        loop {
            let mut cursors = match ctx.store.large_payments(from, 512) {
                Ok(c) => c,
                Err(e) => {
                    deliver(&tx, Err(internal(e)), stall).await;
                    return;
                }
            };
            let full = cursors.len() == 512;
            let before = cursors.len();
            cursors.retain(|&c| in_range(c));
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
                if !deliver(&tx, Ok(pb::LargePaymentReport { record: Some(rec) }), stall).await {
                    return;
                }
            }
            if !full || cursors.len() < before {
                // The end of the store, or of the range.
                break;
            }
        }
        if until.is_some_and(|u| head >= u) {
            return;
        }
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = ctx.shutting_down() => {
                    if until.is_some() {
                        deliver(&tx, Err(cut_short("the node is shutting down")), stall).await;
                    }
                    return;
                }
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
                            let c = cursor_of(block.header.height, i as u32);
                            if !a.large || c <= from || !in_range(c) {
                                continue;
                            }
                            from = c;
                            let rec = recorder.record(&a.op, c, block.header.timestamp_ms, true, a.effect);
                            if !deliver(&tx, Ok(pb::LargePaymentReport { record: Some(rec) }), stall).await {
                                return;
                            }
                        }
                        if until.is_some_and(|u| block.header.height >= u) {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        if until.is_some() {
                            deliver(&tx, Err(cut_short("the node stopped committing")), stall).await;
                        }
                        return;
                    }
                }
            }
        }
    }
}
