//! Why the ledger refused an operation: one machine-readable code per cause.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A rejection reason. Every refusal carries exactly one; a rejected operation
/// changes nothing. [`Reason::code`] is the stable wire form
/// (`INSUFFICIENT_FUNDS`, ...), shared with the gRPC status details.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The bytes do not decode as a canonical operation body.
    Malformed,
    /// The body names another chain.
    WrongChain,
    /// The signature does not verify under the signer's key (ZIP-215 rule).
    BadSignature,
    /// `valid_until_ms` is before the block timestamp.
    Expired,
    /// `valid_until_ms` is further ahead than the chain's `max_validity_ms`.
    ValidityTooLong,
    /// This exact operation was already applied (replay).
    Duplicate,
    UnknownAccount,
    AccountExists,
    AccountFrozen,
    AccountNotFrozen,
    AccountClosed,
    InsufficientFunds,
    BalanceLimitExceeded,
    PaymentLimitExceeded,
    DailyLimitExceeded,
    /// The operation needs a later rollout phase (retail before retail opens).
    PhaseNotOpen,
    /// Phase changes only move forward.
    PhaseNotForward,
    /// The signer's role may not do this (or not to this account).
    NotAuthorised,
    BankSuspended,
    BankAlreadyAdmitted,
    BankAlreadySuspended,
    UnknownBank,
    /// Checked arithmetic would overflow a u64.
    Overflow,
    ZeroAmount,
    SelfTransfer,
    /// The public key is small-order, mixed-order or non-canonical.
    UnsafeKey,
    /// An account must be empty to close.
    BalanceNotZero,
    /// The account kind is not allowed here.
    InvalidKind,
    /// The account is under a receive-only freeze: it may receive, not pay.
    AccountReceiveOnly,
    /// The balance would cover it, but part is reserved by held payments.
    FundsReserved,
    /// The balance would cover it, but part is purpose-bound money this payee may not receive (or still time-locked).
    PurposeRestricted,
    /// No such purpose, or it has expired.
    UnknownPurpose,
    /// A purpose with this id is already defined.
    PurposeExists,
    /// No held payment with this id (never held, or already settled or voided).
    UnknownPayment,
    /// The held payment's deadline has passed; it is voided.
    PaymentExpired,
    /// This signatory already approved the held payment.
    AlreadyApproved,
    /// Nothing above the protected minimum can be collected.
    NothingCollectable,
    /// The key was rotated away: it no longer controls its account.
    KeyRevoked,
    /// The new key already names or controls an account, or was retired.
    KeyInUse,
    /// The account is already on the fraud registry.
    AlreadyFlagged,
    /// The account is not on the fraud registry.
    NotFlagged,
    /// A control rule's parameters are out of range (see `docs/errors.md`).
    InvalidRule,
    /// A bound on held payments, purposes or purpose-bound lots is reached.
    CapacityReached,
    /// A queue is full; try again later.
    Overloaded,
    /// The node cannot commit (for example, the disk is full); nothing was applied.
    Unavailable,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::Malformed,
        Reason::WrongChain,
        Reason::BadSignature,
        Reason::Expired,
        Reason::ValidityTooLong,
        Reason::Duplicate,
        Reason::UnknownAccount,
        Reason::AccountExists,
        Reason::AccountFrozen,
        Reason::AccountNotFrozen,
        Reason::AccountClosed,
        Reason::InsufficientFunds,
        Reason::BalanceLimitExceeded,
        Reason::PaymentLimitExceeded,
        Reason::DailyLimitExceeded,
        Reason::PhaseNotOpen,
        Reason::PhaseNotForward,
        Reason::NotAuthorised,
        Reason::BankSuspended,
        Reason::BankAlreadyAdmitted,
        Reason::BankAlreadySuspended,
        Reason::UnknownBank,
        Reason::Overflow,
        Reason::ZeroAmount,
        Reason::SelfTransfer,
        Reason::UnsafeKey,
        Reason::BalanceNotZero,
        Reason::InvalidKind,
        Reason::AccountReceiveOnly,
        Reason::FundsReserved,
        Reason::PurposeRestricted,
        Reason::UnknownPurpose,
        Reason::PurposeExists,
        Reason::UnknownPayment,
        Reason::PaymentExpired,
        Reason::AlreadyApproved,
        Reason::NothingCollectable,
        Reason::KeyRevoked,
        Reason::KeyInUse,
        Reason::AlreadyFlagged,
        Reason::NotFlagged,
        Reason::InvalidRule,
        Reason::CapacityReached,
        Reason::Overloaded,
        Reason::Unavailable,
    ];

    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Malformed => "MALFORMED",
            Reason::WrongChain => "WRONG_CHAIN",
            Reason::BadSignature => "BAD_SIGNATURE",
            Reason::Expired => "EXPIRED",
            Reason::ValidityTooLong => "VALIDITY_TOO_LONG",
            Reason::Duplicate => "DUPLICATE",
            Reason::UnknownAccount => "UNKNOWN_ACCOUNT",
            Reason::AccountExists => "ACCOUNT_EXISTS",
            Reason::AccountFrozen => "ACCOUNT_FROZEN",
            Reason::AccountNotFrozen => "ACCOUNT_NOT_FROZEN",
            Reason::AccountClosed => "ACCOUNT_CLOSED",
            Reason::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Reason::BalanceLimitExceeded => "BALANCE_LIMIT_EXCEEDED",
            Reason::PaymentLimitExceeded => "PAYMENT_LIMIT_EXCEEDED",
            Reason::DailyLimitExceeded => "DAILY_LIMIT_EXCEEDED",
            Reason::PhaseNotOpen => "PHASE_NOT_OPEN",
            Reason::PhaseNotForward => "PHASE_NOT_FORWARD",
            Reason::NotAuthorised => "NOT_AUTHORISED",
            Reason::BankSuspended => "BANK_SUSPENDED",
            Reason::BankAlreadyAdmitted => "BANK_ALREADY_ADMITTED",
            Reason::BankAlreadySuspended => "BANK_ALREADY_SUSPENDED",
            Reason::UnknownBank => "UNKNOWN_BANK",
            Reason::Overflow => "OVERFLOW",
            Reason::ZeroAmount => "ZERO_AMOUNT",
            Reason::SelfTransfer => "SELF_TRANSFER",
            Reason::UnsafeKey => "UNSAFE_KEY",
            Reason::BalanceNotZero => "BALANCE_NOT_ZERO",
            Reason::InvalidKind => "INVALID_KIND",
            Reason::AccountReceiveOnly => "ACCOUNT_RECEIVE_ONLY",
            Reason::FundsReserved => "FUNDS_RESERVED",
            Reason::PurposeRestricted => "PURPOSE_RESTRICTED",
            Reason::UnknownPurpose => "UNKNOWN_PURPOSE",
            Reason::PurposeExists => "PURPOSE_EXISTS",
            Reason::UnknownPayment => "UNKNOWN_PAYMENT",
            Reason::PaymentExpired => "PAYMENT_EXPIRED",
            Reason::AlreadyApproved => "ALREADY_APPROVED",
            Reason::NothingCollectable => "NOTHING_COLLECTABLE",
            Reason::KeyRevoked => "KEY_REVOKED",
            Reason::KeyInUse => "KEY_IN_USE",
            Reason::AlreadyFlagged => "ALREADY_FLAGGED",
            Reason::NotFlagged => "NOT_FLAGGED",
            Reason::InvalidRule => "INVALID_RULE",
            Reason::CapacityReached => "CAPACITY_REACHED",
            Reason::Overloaded => "OVERLOADED",
            Reason::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// A short human explanation.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Malformed => "the operation bytes are not a canonical operation body",
            Reason::WrongChain => "the operation is for another chain",
            Reason::BadSignature => "the signature does not verify under the signer's key",
            Reason::Expired => "the operation's validity window has passed",
            Reason::ValidityTooLong => "valid_until_ms is too far in the future",
            Reason::Duplicate => "this operation was already applied",
            Reason::UnknownAccount => "no such account",
            Reason::AccountExists => "an account with this key already exists",
            Reason::AccountFrozen => "the account is frozen",
            Reason::AccountNotFrozen => "the account is not frozen",
            Reason::AccountClosed => "the account is closed",
            Reason::InsufficientFunds => "insufficient funds",
            Reason::BalanceLimitExceeded => "the payee's balance cap would be exceeded",
            Reason::PaymentLimitExceeded => "the amount exceeds the single-payment cap",
            Reason::DailyLimitExceeded => "the daily outflow cap would be exceeded",
            Reason::PhaseNotOpen => "the rollout phase for this is not open yet",
            Reason::PhaseNotForward => "the rollout phase only moves forward",
            Reason::NotAuthorised => "the signer is not authorised for this operation",
            Reason::BankSuspended => "the bank is suspended",
            Reason::BankAlreadyAdmitted => "the bank is already admitted",
            Reason::BankAlreadySuspended => "the bank is already suspended",
            Reason::UnknownBank => "no such bank",
            Reason::Overflow => "the amount would overflow",
            Reason::ZeroAmount => "the amount must be positive",
            Reason::SelfTransfer => "payer and payee are the same account",
            Reason::UnsafeKey => "the public key is small-order, mixed-order or non-canonical",
            Reason::BalanceNotZero => "the account balance must be zero",
            Reason::InvalidKind => "this account kind is not allowed here",
            Reason::AccountReceiveOnly => "the account is frozen for payments: it may receive but not pay",
            Reason::FundsReserved => "the balance is enough, but part of it is reserved by held payments",
            Reason::PurposeRestricted => {
                "the balance is enough, but part of it is purpose-bound money this payee may not receive"
            }
            Reason::UnknownPurpose => "no such purpose (or it has expired)",
            Reason::PurposeExists => "a purpose with this id is already defined",
            Reason::UnknownPayment => "no held payment with this id",
            Reason::PaymentExpired => "the held payment's deadline has passed",
            Reason::AlreadyApproved => "this signatory already approved the payment",
            Reason::NothingCollectable => "nothing above the protected minimum can be collected",
            Reason::KeyRevoked => "this key no longer controls its account (rotated)",
            Reason::KeyInUse => "the key already names or controls an account, or was retired",
            Reason::AlreadyFlagged => "the account is already on the fraud registry",
            Reason::NotFlagged => "the account is not on the fraud registry",
            Reason::InvalidRule => "a rule's parameters are out of range",
            Reason::CapacityReached => "a bound on held payments, purposes or purpose-bound lots is reached",
            Reason::Overloaded => "the node is overloaded; retry later",
            Reason::Unavailable => "the node cannot commit right now",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.describe())
    }
}

impl std::error::Error for Reason {}
