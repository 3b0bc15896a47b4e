//! Conversions between ledger types and the `ruble.v1` protobuf messages, and
//! the mapping of rejection reasons to gRPC status codes.

use std::collections::HashMap;
use std::sync::Arc;

use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::state::{Account, ControlParams, Controls, Effect, HoldKind, Params, Pending, Purpose};
use ruble_ledger::store::{Receipt, Store, StoredOp};
use ruble_ledger::types::{cursor_of, AccountId, AccountKind, AccountStatus, Limits, Phase, TxId};
use ruble_ledger::{Outcome, Reason};
use ruble_proto::v1 as pb;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::ctx::Ctx;

/// Status-detail domain of every reason code.
pub const REASON_DOMAIN: &str = "ruble.v1";
/// Metadata key carrying the reason code (mirrors the ErrorInfo detail).
pub const REASON_METADATA: &str = "x-ruble-reason";

/// The gRPC code for a ledger reason.
pub fn reason_code(r: Reason) -> Code {
    use Reason::*;
    match r {
        Malformed | WrongChain | Expired | ValidityTooLong | ZeroAmount | SelfTransfer | UnsafeKey | InvalidKind => {
            Code::InvalidArgument
        }
        // A rule whose parameters are out of range is a bad request, like a zero amount.
        InvalidRule => Code::InvalidArgument,
        BadSignature => Code::Unauthenticated,
        // A rotated-away key signs validly but may no longer act for its account.
        NotAuthorised | KeyRevoked => Code::PermissionDenied,
        UnknownAccount | UnknownBank | UnknownPurpose | UnknownPayment => Code::NotFound,
        Duplicate | AccountExists | BankAlreadyAdmitted | PurposeExists | KeyInUse | AlreadyApproved => {
            Code::AlreadyExists
        }
        Overloaded | CapacityReached => Code::ResourceExhausted,
        Unavailable => Code::Unavailable,
        // The state the operation needs is not there (as for freezing a frozen account).
        AccountFrozen | AccountNotFrozen | AccountClosed | InsufficientFunds | BalanceLimitExceeded
        | PaymentLimitExceeded | DailyLimitExceeded | PhaseNotOpen | PhaseNotForward | BankSuspended
        | BankAlreadySuspended | Overflow | BalanceNotZero | AccountReceiveOnly | FundsReserved | PurposeRestricted
        | PaymentExpired | NothingCollectable | AlreadyFlagged | NotFlagged => Code::FailedPrecondition,
    }
}

/// A status with a machine-readable reason: `google.rpc.ErrorInfo` in the
/// details (reason, domain `ruble.v1`) and the `x-ruble-reason` header.
pub fn coded_status(code: Code, reason: &str, message: impl Into<String>) -> Status {
    coded_status_with(code, reason, message, &[])
}

/// [`coded_status`] with ErrorInfo metadata (e.g. which limit was reached).
pub fn coded_status_with(code: Code, reason: &str, message: impl Into<String>, metadata: &[(&str, &str)]) -> Status {
    let metadata: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let details = ErrorDetails::with_error_info(reason, REASON_DOMAIN, metadata);
    let mut st = Status::with_error_details(code, message, details);
    if let Ok(v) = reason.parse() {
        st.metadata_mut().insert(REASON_METADATA, v);
    }
    st
}

pub fn reason_status(r: Reason, message: impl Into<String>) -> Status {
    coded_status(reason_code(r), r.code(), message)
}

/// Decodes a wire operation (cheap; no signature work).
pub fn decode_op(op: Option<&pb::SignedOperation>) -> Result<SignedOp, Reason> {
    let op = op.ok_or(Reason::Malformed)?;
    SignedOp::decode(&op.body, &op.signature)
}

pub fn receipt_pb(r: &Receipt) -> pb::Receipt {
    pb::Receipt {
        tx_id: r.tx_id.0.to_vec(),
        height: r.height,
        index: r.index,
        timestamp_ms: r.timestamp_ms,
        block_hash: r.block_hash.to_vec(),
        large: r.large,
        cursor: r.cursor(),
        effect: Some(effect_pb(&r.effect)),
    }
}

/// What an applied operation did beyond its plain meaning.
pub fn effect_pb(e: &Effect) -> pb::Effect {
    let none = pb::Effect::default();
    match *e {
        Effect::None => pb::Effect {
            kind: "none".into(),
            ..none
        },
        Effect::Held { until_ms } => pb::Effect {
            kind: "held".into(),
            held_until_ms: until_ms,
            ..none
        },
        Effect::Swept { amount } => pb::Effect {
            kind: "swept".into(),
            swept: amount,
            ..none
        },
        Effect::Collected { amount } => pb::Effect {
            kind: "collected".into(),
            collected: amount,
            ..none
        },
        Effect::Settled { swept } => pb::Effect {
            kind: "settled".into(),
            swept,
            ..none
        },
        Effect::Approved => pb::Effect {
            kind: "approved".into(),
            ..none
        },
    }
}

pub fn outcome_pb(tx_id: &[u8], o: &Outcome) -> pb::SubmitResult {
    use pb::submit_result::Outcome as O;
    match o {
        Outcome::Committed(r) => pb::SubmitResult {
            tx_id: r.tx_id.0.to_vec(),
            outcome: Some(O::Committed(receipt_pb(r))),
            duplicate: false,
        },
        Outcome::Duplicate(r) => pb::SubmitResult {
            tx_id: r.tx_id.0.to_vec(),
            outcome: Some(O::Committed(receipt_pb(r))),
            duplicate: true,
        },
        Outcome::Rejected(reason) => pb::SubmitResult {
            tx_id: tx_id.to_vec(),
            outcome: Some(O::Rejected(pb::Rejection {
                reason: reason.code().to_string(),
                message: reason.describe().to_string(),
            })),
            duplicate: false,
        },
    }
}

/// The single-operation RPC form: a rejection becomes an error status.
pub fn single_result(tx_id: &[u8], o: Outcome) -> Result<pb::SubmitResult, Status> {
    match o {
        Outcome::Rejected(r) => Err(reason_status(r, r.describe())),
        other => Ok(outcome_pb(tx_id, &other)),
    }
}

pub fn kind_pb(k: AccountKind) -> pb::AccountKind {
    match k {
        AccountKind::CentralBank => pb::AccountKind::CentralBank,
        AccountKind::Settlement => pb::AccountKind::Settlement,
        AccountKind::Business => pb::AccountKind::Business,
        AccountKind::Retail => pb::AccountKind::Retail,
    }
}

pub fn status_pb(s: AccountStatus) -> pb::AccountStatus {
    match s {
        AccountStatus::Active => pb::AccountStatus::Active,
        AccountStatus::Frozen => pb::AccountStatus::Frozen,
        AccountStatus::Closed => pb::AccountStatus::Closed,
        AccountStatus::ReceiveOnly => pb::AccountStatus::ReceiveOnly,
    }
}

pub fn phase_pb(p: Phase) -> pb::Phase {
    match p {
        Phase::Business => pb::Phase::Business,
        Phase::Retail => pb::Phase::Retail,
    }
}

pub fn limits_pb(l: Limits) -> pb::Limits {
    pb::Limits {
        balance_cap: l.balance_cap,
        payment_cap: l.payment_cap,
        daily_outflow_cap: l.daily_outflow_cap,
    }
}

/// The limits that bind `a`, as `State::limits_of` computes them, from the
/// committed params and control records.
pub fn limits_of(a: &Account, params: &Params, controls: &Controls) -> Limits {
    controls.limits_for(&a.id, a.kind, params.limits(a.kind))
}

/// An account as the API shows it: the limits that bind it, its outflow
/// counter as of `now_ms` (yesterday's outflow reads as 0), its balance
/// parts and its control settings.
pub fn account_pb(a: &Account, params: &Params, controls: &Controls, now_ms: u64) -> pb::Account {
    let day = now_ms / ruble_ledger::types::MS_PER_DAY;
    let (free, tagged, reserved) = controls.balance_parts(&a.id, a.balance);
    let c = controls.account(&a.id);
    let lots = controls
        .lots_of(&a.id)
        .map(|(purpose, l)| {
            let p = controls.purpose(purpose);
            pb::Lot {
                purpose,
                amount: l.amount,
                reserved: l.reserved,
                unlock_at_ms: p.map_or(0, |p| p.unlock_at_ms),
                expires_at_ms: p.map_or(0, |p| p.expires_at_ms),
            }
        })
        .collect();
    pb::Account {
        id: a.id.0.to_vec(),
        kind: kind_pb(a.kind) as i32,
        bank: a.bank.0.to_vec(),
        status: status_pb(a.status) as i32,
        balance: a.balance,
        outflow_today: a.outflow_on(day),
        outflow_day: day,
        opened_height: a.opened_height,
        limits: Some(limits_pb(limits_of(a, params, controls))),
        free,
        tagged,
        reserved,
        tier: if a.kind == AccountKind::Retail {
            c.tier.as_str().to_string()
        } else {
            String::new()
        },
        category: c.category as u32,
        sweep: c.sweep,
        controller: controls.controller(&a.id).0.to_vec(),
        signatories: c.signatories.map(|s| pb::SignatoryRule {
            min_amount: s.min_amount,
            required: s.required as u32,
            keys: s.keys.iter().map(|k| k.0.to_vec()).collect(),
        }),
        lots,
        fraud_flagged_by: controls.flagged_by(&a.id).map(|b| b.0.to_vec()).unwrap_or_default(),
    }
}

/// A held payment as the API shows it; `required` is the payer's signatory
/// count for a payment waiting for signatures (0 otherwise).
pub fn held_pb(id: &TxId, p: &Pending, controls: &Controls) -> pb::HeldPayment {
    let required = match p.kind {
        HoldKind::Signatures => controls.account(&p.payer).signatories.map_or(0, |s| s.required as u32),
        HoldKind::NewPayee | HoldKind::FraudRegistry => 0,
    };
    pb::HeldPayment {
        payment_id: id.0.to_vec(),
        payer: p.payer.0.to_vec(),
        payee: p.payee.0.to_vec(),
        amount: p.amount,
        kind: p.kind.as_str().to_string(),
        deadline_ms: p.deadline_ms,
        approvals: p.approvals.iter().map(|k| k.0.to_vec()).collect(),
        required,
        tagged_part: p.lot_parts.iter().fold(0u64, |s, &(_, a)| s.saturating_add(a)),
    }
}

/// Held payments `keep` accepts, by payment id.
pub fn held_list(controls: &Controls, keep: impl Fn(&Pending) -> bool) -> pb::HeldPaymentList {
    pb::HeldPaymentList {
        payments: controls
            .all_pending()
            .filter(|(_, p)| keep(p))
            .take(MAX_LISTED)
            .map(|(id, p)| held_pb(id, p, controls))
            .collect(),
    }
}

/// Most entries one held-payment or fraud-registry listing holds (those
/// lists are not paged; the first ones by id are listed).
pub const MAX_LISTED: usize = 10_000;

pub fn purpose_pb(id: u32, p: &Purpose) -> pb::Purpose {
    pb::Purpose {
        id,
        issuer: p.issuer.0.to_vec(),
        unlock_at_ms: p.unlock_at_ms,
        expires_at_ms: p.expires_at_ms,
        payees: p.payees.iter().map(|a| a.0.to_vec()).collect(),
        categories: p.categories.iter().map(|&c| c as u32).collect(),
    }
}

/// Every defined purpose, by id.
pub fn purpose_list(controls: &Controls) -> pb::PurposeList {
    pb::PurposeList {
        purposes: controls.purposes().map(|(&id, p)| purpose_pb(id, p)).collect(),
    }
}

/// The chain-wide control settings; the full tier's limits are the retail kind's.
pub fn control_settings_pb(c: &ControlParams, params: &Params) -> pb::ControlSettings {
    pb::ControlSettings {
        hold_threshold: c.hold_threshold,
        hold_window_ms: c.hold_window_ms,
        protected_minimum: c.protected_minimum,
        anonymous_limits: Some(limits_pb(c.anonymous)),
        simplified_limits: Some(limits_pb(c.simplified)),
        full_limits: Some(limits_pb(params.limits(AccountKind::Retail))),
    }
}

/// The fraud registry, by account.
pub fn fraud_registry_pb(controls: &Controls) -> pb::FraudRegistry {
    pb::FraudRegistry {
        entries: controls
            .fraud_registry()
            .take(MAX_LISTED)
            .map(|(a, by)| pb::FraudEntry {
                account: a.0.to_vec(),
                flagged_by: by.0.to_vec(),
            })
            .collect(),
    }
}

/// Turns committed operations into records: what that needs besides the
/// operations is the central bank (the other side of issue and redeem), the
/// control records (the account a rotated-in key pays for) and the store
/// (the payment a settling confirm or release executes).
pub struct Recorder<'a> {
    pub store: &'a Store,
    pub central_bank: AccountId,
    pub controls: Arc<Controls>,
}

impl<'a> Recorder<'a> {
    /// As of the committed head.
    pub fn new(ctx: &'a Ctx) -> Result<Recorder<'a>, Status> {
        Ok(Recorder {
            store: &ctx.store,
            central_bank: ctx.ledger.view().params.central_bank,
            controls: ctx.controls()?,
        })
    }

    /// The account `key` signs for (itself unless a rotation put it in control).
    pub fn account_of(&self, key: &AccountId) -> AccountId {
        self.controls.resolve(key).unwrap_or(*key)
    }

    /// Payer, payee and amount of the held transfer `payment` (its tx id).
    fn held_transfer(&self, payment: &TxId) -> Option<(AccountId, AccountId, u64)> {
        let cursor = self.store.tx_cursor(payment).ok()??;
        let s = self.store.op_at(cursor).ok()??;
        match &s.op.body.op {
            Op::Transfer { payee, amount, .. } => Some((self.account_of(&s.op.body.signer), *payee, *amount)),
            _ => None,
        }
    }

    /// A committed operation as the API shows it. A transfer (or tagged
    /// payment) is from the account its key signs for; a confirm or
    /// release that executed a held payment shows that payment's parties
    /// and amount; a collection shows the amount it moved.
    pub fn record(
        &self,
        op: &SignedOp,
        cursor: u64,
        timestamp_ms: u64,
        large: bool,
        effect: Effect,
    ) -> pb::OperationRecord {
        let signer = op.body.signer;
        let cb = self.central_bank;
        let none = (None, None, 0, String::new());
        let (from, to, amount, purpose): (Option<AccountId>, Option<AccountId>, u64, String) = match &op.body.op {
            Op::Transfer { payee, amount, purpose } => {
                (Some(self.account_of(&signer)), Some(*payee), *amount, purpose.clone())
            }
            Op::PayTagged { payee, amount, .. } => {
                (Some(self.account_of(&signer)), Some(*payee), *amount, String::new())
            }
            Op::Collect {
                debtor,
                claimant,
                amount,
            } => {
                let moved = match effect {
                    Effect::Collected { amount } => amount,
                    _ => *amount,
                };
                (Some(*debtor), Some(*claimant), moved, String::new())
            }
            Op::ConfirmPayment { payment } | Op::ReleasePayment { payment } => match effect {
                Effect::Settled { .. } => match self.held_transfer(payment) {
                    Some((payer, payee, amount)) => (Some(payer), Some(payee), amount, String::new()),
                    None => none,
                },
                _ => none,
            },
            Op::Issue { bank, amount } => (Some(cb), Some(*bank), *amount, String::new()),
            Op::Redeem { bank, amount } => (Some(*bank), Some(cb), *amount, String::new()),
            Op::OpenAccount { account, .. }
            | Op::CloseAccount { account }
            | Op::Freeze { account }
            | Op::Unfreeze { account }
            | Op::FreezeReceiveOnly { account }
            | Op::FlagFraud { account, .. }
            | Op::SetCategory { account, .. }
            | Op::SetSweep { account, .. }
            | Op::SetTier { account, .. }
            | Op::RotateKey { account, .. }
            | Op::SetSignatories { account, .. } => (None, Some(*account), 0, String::new()),
            Op::AdmitBank { bank, name } => (None, Some(*bank), 0, name.clone()),
            Op::SuspendBank { bank } => (None, Some(*bank), 0, String::new()),
            Op::SetPhase { .. }
            | Op::SetLimits { .. }
            | Op::SetReportingThreshold { .. }
            | Op::SetControls { .. }
            | Op::SetTierLimits { .. }
            | Op::DefinePurpose { .. }
            | Op::VoidPayment { .. } => none,
        };
        let (height, index) = ruble_ledger::types::cursor_parts(cursor);
        pb::OperationRecord {
            tx_id: op.tx_id.0.to_vec(),
            height,
            index,
            timestamp_ms,
            cursor,
            operation: Some(pb::SignedOperation {
                body: op.body_bytes.clone(),
                signature: op.signature.to_vec(),
            }),
            kind: op.body.op.name().to_string(),
            signer: signer.0.to_vec(),
            from: from.map(|a| a.0.to_vec()).unwrap_or_default(),
            to: to.map(|a| a.0.to_vec()).unwrap_or_default(),
            amount,
            purpose,
            large,
            effect: Some(effect_pb(&effect)),
        }
    }

    /// A stored operation's record.
    pub fn stored(&self, s: &StoredOp, timestamp_ms: u64) -> pb::OperationRecord {
        self.record(&s.op, s.cursor, timestamp_ms, s.large, s.effect)
    }

    /// The stored operations at `cursors`.
    pub fn ops_at(&self, cursors: &[u64]) -> Result<Vec<StoredOp>, Status> {
        cursors
            .iter()
            .map(|&c| {
                self.store
                    .op_at(c)
                    .map_err(internal)?
                    .ok_or_else(|| internal(format!("operation at cursor {c:#x} is indexed but missing")))
            })
            .collect()
    }

    /// Records of stored operations, reading each block header once.
    pub fn records_of(&self, ops: &[StoredOp]) -> Result<Vec<pb::OperationRecord>, Status> {
        let mut ts_cache: HashMap<u64, u64> = HashMap::new();
        let mut out = Vec::with_capacity(ops.len());
        for s in ops {
            let h = s.height();
            let ts = match ts_cache.get(&h) {
                Some(t) => *t,
                None => {
                    let t = self
                        .store
                        .header(h)
                        .map_err(internal)?
                        .map(|(hd, _)| hd.timestamp_ms)
                        .unwrap_or_default();
                    ts_cache.insert(h, t);
                    t
                }
            };
            out.push(self.stored(s, ts));
        }
        Ok(out)
    }

    /// Loads the records at `cursors`.
    pub fn records_at(&self, cursors: &[u64]) -> Result<Vec<pb::OperationRecord>, Status> {
        self.records_of(&self.ops_at(cursors)?)
    }
}

pub fn block_header_pb(h: &ruble_ledger::block::BlockHeader, hash: &[u8; 32]) -> pb::BlockHeader {
    pb::BlockHeader {
        height: h.height,
        prev_hash: h.prev_hash.to_vec(),
        ops_root: h.ops_root.to_vec(),
        state_hash: h.state_hash.to_vec(),
        timestamp_ms: h.timestamp_ms,
        op_count: h.op_count,
        hash: hash.to_vec(),
    }
}

/// A real server fault (a failed read, a broken index): `INTERNAL` with
/// reason `INTERNAL_ERROR` and a reference, never the error itself, whose
/// text may name paths and files; the node logs it under that reference.
pub fn internal(e: impl std::fmt::Display) -> Status {
    let reference = format!("{:016x}", rand::random::<u64>());
    tracing::error!(%reference, error = %e, "internal error answered to a client");
    coded_status(
        Code::Internal,
        "INTERNAL_ERROR",
        format!("internal error (reference {reference}); the node's log has the details"),
    )
}

/// A block height from a request: OUT_OF_RANGE (`HEIGHT_OUT_OF_RANGE`) above
/// the highest height a chain can have, which no block will ever reach.
pub fn height_arg(h: u64, field: &str) -> Result<u64, Status> {
    if h > ruble_ledger::types::MAX_HEIGHT {
        return Err(coded_status(
            Code::OutOfRange,
            "HEIGHT_OUT_OF_RANGE",
            format!(
                "{field} is above the highest height a chain can have ({})",
                ruble_ledger::types::MAX_HEIGHT
            ),
        ));
    }
    Ok(h)
}

/// A page's size when a request leaves it at 0.
pub const DEFAULT_PAGE: u32 = 100;

/// The size of a page a request asks for (`requested`, 0 for
/// [`DEFAULT_PAGE`]), capped by the node's `max_page`; at least 1, so that a
/// walk of the pages always moves on.
pub fn page_limit(ctx: &Ctx, requested: u32) -> usize {
    let wanted = if requested == 0 { DEFAULT_PAGE } else { requested };
    wanted.min(ctx.limits.max_page).max(1) as usize
}

/// Parses a 32-byte account id from a request field.
pub fn account_id(b: &[u8], field: &str) -> Result<AccountId, Status> {
    AccountId::from_slice(b)
        .ok_or_else(|| coded_status(Code::InvalidArgument, "MALFORMED", format!("{field} must be 32 bytes")))
}

pub fn first_cursor_of_height(h: u64) -> u64 {
    cursor_of(h, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal is a client-facing code, never INTERNAL; the control
    /// reasons map as `docs/errors.md` lists them.
    #[test]
    fn reasons_map_to_client_codes() {
        for &r in Reason::ALL {
            assert!(
                !matches!(reason_code(r), Code::Internal | Code::Unknown | Code::Ok),
                "{r:?}"
            );
        }
        use Reason::*;
        for (r, code) in [
            (AccountReceiveOnly, Code::FailedPrecondition),
            (FundsReserved, Code::FailedPrecondition),
            (PurposeRestricted, Code::FailedPrecondition),
            (UnknownPurpose, Code::NotFound),
            (PurposeExists, Code::AlreadyExists),
            (UnknownPayment, Code::NotFound),
            (PaymentExpired, Code::FailedPrecondition),
            (AlreadyApproved, Code::AlreadyExists),
            (NothingCollectable, Code::FailedPrecondition),
            (KeyRevoked, Code::PermissionDenied),
            (KeyInUse, Code::AlreadyExists),
            (AlreadyFlagged, Code::FailedPrecondition),
            (NotFlagged, Code::FailedPrecondition),
            (InvalidRule, Code::InvalidArgument),
            (CapacityReached, Code::ResourceExhausted),
        ] {
            assert_eq!(reason_code(r), code, "{r:?}");
        }
    }

    #[test]
    fn effects_have_their_kind_and_amounts() {
        let e = effect_pb(&Effect::Held { until_ms: 7 });
        assert_eq!((e.kind.as_str(), e.held_until_ms), ("held", 7));
        let e = effect_pb(&Effect::Settled { swept: 5 });
        assert_eq!((e.kind.as_str(), e.swept), ("settled", 5));
        let e = effect_pb(&Effect::Collected { amount: 3 });
        assert_eq!((e.kind.as_str(), e.collected), ("collected", 3));
        for (e, kind) in [
            (Effect::None, "none"),
            (Effect::Swept { amount: 1 }, "swept"),
            (Effect::Approved, "approved"),
        ] {
            assert_eq!(effect_pb(&e).kind, kind);
        }
    }
}
