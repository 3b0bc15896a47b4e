//! Errors a caller can match on: a ledger rejection (with its [`Reason`]) is
//! kept apart from transport trouble and from local problems.

use ruble_ledger::Reason;
use tonic::Code;
use tonic_types::StatusExt;

/// Everything the SDK can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ledger refused the operation; nothing changed. Match on `reason`.
    #[error("rejected: {reason}")]
    Rejected { reason: Reason, message: String },
    /// The node refused the request for a reason outside the ledger's set
    /// (`STALE_QUERY`, `QUERY_REUSED`, `BATCH_TOO_LARGE`, `TOO_MANY_STREAMS`, ...).
    #[error("refused by the node ({code}): {message}")]
    Refused { code: String, message: String },
    /// The node could not be reached or the call failed in transit. Safe to
    /// retry a payment: resubmission returns the original receipt.
    #[error("transport: {0}")]
    Transport(String),
    /// The call did not complete within the configured timeout.
    #[error("timed out")]
    Timeout,
    /// A key file could not be read, written or decrypted.
    #[error("key file: {0}")]
    Key(String),
    /// The key file is encrypted and the passphrase is wrong.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// A TLS certificate or its private key (PEM) could not be read, is not
    /// valid, or the key does not match the certificate; or the TLS handshake
    /// failed over a certificate (the node's is not from the given CA, or the
    /// node refused ours).
    #[error("certificate: {0}")]
    Certificate(String),
    /// Bad configuration or argument (endpoint, CA file, amount...).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The ledger reason, if this is a rejection.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Error::Rejected { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// True for failures where retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Transport(_)
                | Error::Timeout
                | Error::Rejected {
                    reason: Reason::Overloaded | Reason::Unavailable,
                    ..
                }
        )
    }
}

/// The machine-readable reason of a status: `google.rpc.ErrorInfo.reason`
/// from the details, else the `x-ruble-reason` header.
pub fn status_reason(st: &tonic::Status) -> Option<String> {
    if let Some(info) = st.get_details_error_info() {
        return Some(info.reason);
    }
    st.metadata()
        .get("x-ruble-reason")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl From<tonic::Status> for Error {
    fn from(st: tonic::Status) -> Self {
        if let Some(code) = status_reason(&st) {
            return match Reason::from_code(&code) {
                Some(reason) => Error::Rejected {
                    reason,
                    message: st.message().to_string(),
                },
                None => Error::Refused {
                    code,
                    message: st.message().to_string(),
                },
            };
        }
        match st.code() {
            Code::DeadlineExceeded => Error::Timeout,
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::Aborted => {
                Error::Transport(format!("{}: {}", st.code(), st.message()))
            }
            other => Error::Refused {
                code: format!("{other:?}"),
                message: st.message().to_string(),
            },
        }
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(e: tonic::transport::Error) -> Self {
        Error::Transport(format!(
            "{e}: {}",
            std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
        ))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
