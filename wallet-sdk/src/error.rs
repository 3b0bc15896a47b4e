//! Errors a caller can match on: a ledger rejection (with its [`Reason`]) is
//! kept apart from transport trouble and from local problems.

use ruble_domain::Reason;
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
    /// The node is a replica that does not lead; `leader` is the leader's
    /// client endpoint (`https://host:port`), absent during an election.
    /// Safe to retry there: resubmission returns the original receipt.
    #[error("not the leader{}", leader.as_deref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader { leader: Option<String> },
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
                | Error::NotLeader { .. }
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

/// The alerts by which a TLS peer refuses a certificate. `decrypt_error` is
/// among them: a signature in the handshake did not verify, which is how a
/// certificate from another CA with the same name (or a key that does not
/// match its certificate) is refused.
const CERTIFICATE_ALERTS: [rustls::AlertDescription; 10] = {
    use rustls::AlertDescription as A;
    [
        A::BadCertificate,
        A::UnsupportedCertificate,
        A::CertificateRevoked,
        A::CertificateExpired,
        A::CertificateUnknown,
        A::UnknownCA,
        A::CertificateRequired,
        A::NoCertificate,
        A::DecryptError,
        A::AccessDenied,
    ]
};

/// What a rustls error says about a certificate, if anything.
fn certificate_problem(tls: &rustls::Error) -> Option<String> {
    match tls {
        rustls::Error::InvalidCertificate(c) => Some(format!("the node's certificate is not accepted ({c:?})")),
        rustls::Error::NoCertificatesPresented => Some("the node presented no certificate".into()),
        rustls::Error::AlertReceived(a) if CERTIFICATE_ALERTS.contains(a) => Some(format!(
            "the node refused our client certificate (TLS alert {a:?}): is it issued by the network's CA, and does its key match it?"
        )),
        _ => None,
    }
}

/// The TLS certificate problem somewhere in `e`'s source chain, if any: a
/// certificate rustls refused here (the node's, not from the trusted CA), or
/// an alert by which the node refused ours (`bad_certificate`,
/// `unknown_ca`, `certificate_required`, ...). In TLS 1.3 the node's refusal
/// of a client certificate arrives after the client's side of the handshake
/// is done, so it surfaces on the first call rather than at connect.
pub(crate) fn tls_certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return certificate_problem(tls);
        }
        // rustls' errors reach us inside an `io::Error`, whose `source()`
        // skips the error it holds: look inside.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return certificate_problem(tls);
            }
            // On an HTTP/2 connection the IO error has been through h2,
            // which keeps only its kind and text: an alert is recognised by
            // rustls' own wording of it.
            let text = inner.to_string();
            if let Some(a) = CERTIFICATE_ALERTS
                .iter()
                .find(|a| rustls::Error::AlertReceived(**a).to_string() == text)
            {
                return certificate_problem(&rustls::Error::AlertReceived(*a));
            }
        }
        next = err.source();
    }
    None
}

impl From<tonic::Status> for Error {
    fn from(st: tonic::Status) -> Self {
        if let Some(problem) = tls_certificate_problem(&st) {
            return Error::Certificate(format!("TLS: {problem}"));
        }
        if let Some(code) = status_reason(&st) {
            if code == "NOT_LEADER" {
                let leader = st
                    .get_details_error_info()
                    .and_then(|i| i.metadata.get("leader").cloned());
                return Error::NotLeader { leader };
            }
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
        if let Some(problem) = tls_certificate_problem(&e) {
            return Error::Certificate(format!("TLS: {problem}"));
        }
        Error::Transport(format!(
            "{e}: {}",
            std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
        ))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_refusals_are_found_in_the_error_chain() {
        use rustls::AlertDescription as A;
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        // As tokio-rustls hands it over, and as it comes out of h2 (text only).
        let direct = io(rustls::Error::AlertReceived(A::UnknownCA));
        assert!(tls_certificate_problem(&direct).is_some_and(|p| p.contains("refused our client certificate")));
        let through_h2 = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        assert!(tls_certificate_problem(&through_h2).is_some());
        let st = tonic::Status::from_error(Box::new(through_h2));
        assert!(matches!(Error::from(st), Error::Certificate(_)));
        let bad = io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert!(tls_certificate_problem(&bad).is_some_and(|p| p.contains("node's certificate")));
        // Other TLS and IO failures are not certificate problems.
        for other in [
            io(rustls::Error::AlertReceived(A::HandshakeFailure)),
            io(rustls::Error::DecryptError),
            io(rustls::Error::AlertReceived(A::ProtocolVersion)),
            std::io::Error::new(std::io::ErrorKind::InvalidData, "certificate of deposit"),
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"),
        ] {
            assert_eq!(tls_certificate_problem(&other), None, "{other:?}");
        }
        assert!(matches!(
            Error::from(tonic::Status::unavailable("node down")),
            Error::Transport(_)
        ));
    }

    /// A follower's NOT_LEADER (as `ruble-node`'s gateway sends it) becomes
    /// `NotLeader` with the leader's endpoint, and is retryable.
    #[test]
    fn not_leader_carries_the_leaders_endpoint() {
        use std::collections::HashMap;
        use tonic_types::ErrorDetails;
        let st = |meta: &[(&str, &str)]| {
            let md: HashMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            tonic::Status::with_error_details(
                Code::Unavailable,
                "not the leader",
                ErrorDetails::with_error_info("NOT_LEADER", "ruble.v1", md),
            )
        };
        let e = Error::from(st(&[("leader", "https://127.0.0.1:50472")]));
        assert!(
            matches!(&e, Error::NotLeader { leader: Some(l) } if l == "https://127.0.0.1:50472"),
            "{e:?}"
        );
        assert!(e.is_retryable());
        assert!(matches!(Error::from(st(&[])), Error::NotLeader { leader: None }));
    }
}
