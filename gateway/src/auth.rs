//! Who is calling: mutual TLS identities and the role checks every
//! bank/central-bank RPC makes.
//!
//! The server asks for a client certificate but does not require one (the
//! wallet service authorises by signature). A certificate that does not chain
//! to the node's CA fails the TLS handshake. Bank and central-bank RPCs then
//! map the verified certificate's subject CN to a [`Participant`].

use std::fmt;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Code, Request, Status};

use crate::convert::coded_status;

/// A participant authenticated by its client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Participant {
    CentralBank,
    /// A bank, by its ed25519 public key (its settlement account id).
    Bank([u8; 32]),
}

impl fmt::Display for Participant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Participant::CentralBank => f.write_str("central-bank"),
            Participant::Bank(k) => write!(f, "bank:{}", hex::encode(k)),
        }
    }
}

/// Why a certificate names no participant.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the client certificate cannot be parsed")]
    BadCertificate,
    #[error("the client certificate has no subject common name")]
    NoCommonName,
    #[error("the client certificate names no participant: {0:?}")]
    UnknownSubject(String),
}

/// Parses `central-bank` or `bank:<hex>` from a certificate's subject CN.
pub fn participant_from_cert_der(der: &[u8]) -> Result<Participant, AuthError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| AuthError::BadCertificate)?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or(AuthError::NoCommonName)?;
    parse_subject(cn)
}

fn parse_subject(cn: &str) -> Result<Participant, AuthError> {
    if cn == "central-bank" {
        return Ok(Participant::CentralBank);
    }
    if let Some(h) = cn.strip_prefix("bank:") {
        let mut k = [0u8; 32];
        if hex::decode_to_slice(h, &mut k).is_ok() {
            return Ok(Participant::Bank(k));
        }
    }
    Err(AuthError::UnknownSubject(cn.to_string()))
}

/// The participant behind a request's (already CA-verified) client certificate.
/// `UNAUTHENTICATED` with reason `CLIENT_CERTIFICATE_REQUIRED` (none
/// presented) or `UNKNOWN_PARTICIPANT` (one that names nobody).
pub fn participant_from_request<T>(req: &Request<T>) -> Result<Participant, Status> {
    let leaf = req
        .peer_certs()
        .and_then(|certs| certs.first().cloned())
        .ok_or_else(|| {
            coded_status(
                Code::Unauthenticated,
                "CLIENT_CERTIFICATE_REQUIRED",
                "a client certificate is required for this service",
            )
        })?;
    participant_from_cert_der(leaf.as_ref())
        .map_err(|e| coded_status(Code::Unauthenticated, "UNKNOWN_PARTICIPANT", e.to_string()))
}

/// `PERMISSION_DENIED` with reason `WRONG_ROLE` for anyone but the central bank.
pub fn require_central_bank(p: &Participant) -> Result<(), Status> {
    match p {
        Participant::CentralBank => Ok(()),
        other => Err(wrong_role(other, "central-bank")),
    }
}

/// `PERMISSION_DENIED` with reason `WRONG_ROLE` for anyone but a bank.
pub fn require_bank(p: &Participant) -> Result<[u8; 32], Status> {
    match p {
        Participant::Bank(k) => Ok(*k),
        other => Err(wrong_role(other, "bank")),
    }
}

fn wrong_role(who: &Participant, service: &str) -> Status {
    coded_status(
        Code::PermissionDenied,
        "WRONG_ROLE",
        format!("{who} may not call the {service} service"),
    )
}

/// Server TLS: our certificate, client certificates optional but verified
/// against `ca_pem` when presented.
pub fn server_tls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(Identity::from_pem(cert_pem, key_pem))
        .client_ca_root(Certificate::from_pem(ca_pem))
        .client_auth_optional(true)
}

/// Client TLS trusting `ca_pem`, optionally presenting a client certificate.
pub fn client_tls_config(ca_pem: &str, identity: Option<(&str, &str)>) -> ClientTlsConfig {
    let mut c = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        c = c.identity(Identity::from_pem(cert, key));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::pem_cert_der;

    #[test]
    fn subjects_map_to_participants() {
        let ca = crate::pki::generate_ca().unwrap();
        let k = [7u8; 32];
        for who in [Participant::CentralBank, Participant::Bank(k)] {
            let pair = ca.issue_client(&who).unwrap();
            let der = pem_cert_der(&pair.cert_pem).unwrap();
            assert_eq!(participant_from_cert_der(&der).unwrap(), who);
        }
        let server = ca.issue_server(&["localhost"]).unwrap();
        assert!(matches!(
            participant_from_cert_der(&pem_cert_der(&server.cert_pem).unwrap()),
            Err(AuthError::UnknownSubject(_))
        ));
        assert!(parse_subject("bank:zz").is_err());
        assert!(require_bank(&Participant::CentralBank).is_err());
        assert!(require_central_bank(&Participant::Bank(k)).is_err());
    }
}
