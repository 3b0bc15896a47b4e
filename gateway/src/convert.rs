//! Conversions between ledger types and the `ruble.v1` protobuf messages, and
//! the mapping of rejection reasons to gRPC status codes.

use std::collections::HashMap;

use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::state::{Account, Params};
use ruble_ledger::store::{Receipt, Store, StoredOp};
use ruble_ledger::types::{cursor_of, AccountId, AccountKind, AccountStatus, Limits, Phase};
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
        BadSignature => Code::Unauthenticated,
        NotAuthorised => Code::PermissionDenied,
        UnknownAccount | UnknownBank => Code::NotFound,
        Duplicate | AccountExists | BankAlreadyAdmitted => Code::AlreadyExists,
        Overloaded => Code::ResourceExhausted,
        Unavailable => Code::Unavailable,
        AccountFrozen | AccountNotFrozen | AccountClosed | InsufficientFunds | BalanceLimitExceeded
        | PaymentLimitExceeded | DailyLimitExceeded | PhaseNotOpen | PhaseNotForward | BankSuspended
        | BankAlreadySuspended | Overflow | BalanceNotZero => Code::FailedPrecondition,
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

/// An account as the API shows it, with the limits of its kind and its
/// outflow counter as of `now_ms` (yesterday's outflow reads as 0).
pub fn account_pb(a: &Account, params: &Params, now_ms: u64) -> pb::Account {
    let day = now_ms / ruble_ledger::types::MS_PER_DAY;
    pb::Account {
        id: a.id.0.to_vec(),
        kind: kind_pb(a.kind) as i32,
        bank: a.bank.0.to_vec(),
        status: status_pb(a.status) as i32,
        balance: a.balance,
        outflow_today: a.outflow_on(day),
        outflow_day: day,
        opened_height: a.opened_height,
        limits: Some(limits_pb(params.limits(a.kind))),
    }
}

/// A committed operation as the API shows it.
pub fn record_pb(
    op: &SignedOp,
    cursor: u64,
    timestamp_ms: u64,
    large: bool,
    central_bank: &AccountId,
) -> pb::OperationRecord {
    let signer = op.body.signer;
    let (from, to, amount, purpose): (Option<AccountId>, Option<AccountId>, u64, String) = match &op.body.op {
        Op::Transfer { payee, amount, purpose } => (Some(signer), Some(*payee), *amount, purpose.clone()),
        Op::Issue { bank, amount } => (Some(*central_bank), Some(*bank), *amount, String::new()),
        Op::Redeem { bank, amount } => (Some(*bank), Some(*central_bank), *amount, String::new()),
        Op::OpenAccount { account, .. }
        | Op::CloseAccount { account }
        | Op::Freeze { account }
        | Op::Unfreeze { account } => (None, Some(*account), 0, String::new()),
        Op::AdmitBank { bank, name } => (None, Some(*bank), 0, name.clone()),
        Op::SuspendBank { bank } => (None, Some(*bank), 0, String::new()),
        Op::SetPhase { .. } | Op::SetLimits { .. } | Op::SetReportingThreshold { .. } => (None, None, 0, String::new()),
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
    }
}

/// Loads the records at `cursors`, reading each block header once.
pub fn records_at(
    store: &Store,
    cursors: &[u64],
    central_bank: &AccountId,
) -> Result<Vec<pb::OperationRecord>, Status> {
    let mut ts_cache: HashMap<u64, u64> = HashMap::new();
    let mut out = Vec::with_capacity(cursors.len());
    for &c in cursors {
        let s: StoredOp = store
            .op_at(c)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("operation at cursor {c:#x} is indexed but missing")))?;
        let h = s.height();
        let ts = match ts_cache.get(&h) {
            Some(t) => *t,
            None => {
                let t = store
                    .header(h)
                    .map_err(internal)?
                    .map(|(hd, _)| hd.timestamp_ms)
                    .unwrap_or_default();
                ts_cache.insert(h, t);
                t
            }
        };
        out.push(record_pb(&s.op, c, ts, s.large, central_bank));
    }
    Ok(out)
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
