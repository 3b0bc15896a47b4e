//! A light check of PEM files before they reach TLS, so that a wrong or
//! damaged file is reported as a certificate problem naming the file, not as
//! a failed connection. The PEM parsing is rustls' own (`rustls-pki-types`).

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject, SectionKind};

use crate::error::{Error, Result};

/// The recognised sections of a PEM text. A section that does not end or
/// whose body is not base64 is an error; one whose body is not DER too.
fn sections(text: &str) -> std::result::Result<Vec<SectionKind>, String> {
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        let (kind, der) = item.map_err(|e| match e {
            pem::Error::MissingSectionEnd { .. } => "a PEM block does not end".to_string(),
            pem::Error::Base64Decode(e) => format!("a PEM block is not base64: {e}"),
            other => format!("not PEM: {other}"),
        })?;
        // Every DER structure here (certificate, key) is an ASN.1 SEQUENCE.
        if der.first() != Some(&0x30) {
            return Err(format!("the {kind:?} block is not DER"));
        }
        out.push(kind);
    }
    Ok(out)
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Certificate(format!("{what} {}: {e}", path.display())))
}

/// Reads a PEM file that must hold at least one certificate.
pub(crate) fn read_certificates(path: &Path, what: &str) -> Result<String> {
    let text = read(path, what)?;
    check_certificates(&text).map_err(|e| Error::Certificate(format!("{what} {}: {e}", path.display())))?;
    Ok(text)
}

/// Reads a PEM file that must hold a private key.
pub(crate) fn read_private_key(path: &Path) -> Result<String> {
    let what = "certificate key";
    let text = read(path, what)?;
    check_private_key(&text).map_err(|e| Error::Certificate(format!("{what} {}: {e}", path.display())))?;
    Ok(text)
}

fn check_certificates(text: &str) -> std::result::Result<(), String> {
    if !sections(text)?.contains(&SectionKind::Certificate) {
        return Err("no PEM certificate in it".into());
    }
    Ok(())
}

fn check_private_key(text: &str) -> std::result::Result<(), String> {
    let keys = [
        SectionKind::PrivateKey,
        SectionKind::RsaPrivateKey,
        SectionKind::EcPrivateKey,
    ];
    if !sections(text)?.iter().any(|k| keys.contains(k)) {
        return Err("no PEM private key in it".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pem_and_refuses_garbage() {
        // base64 of the DER SEQUENCE 30 03 02 01 01.
        let der = "MAMCAQE=";
        let cert = format!("-----BEGIN CERTIFICATE-----\n{der}\n-----END CERTIFICATE-----\n");
        let key = format!("-----BEGIN PRIVATE KEY-----\n{der}\n-----END PRIVATE KEY-----\n");
        let ec = format!("-----BEGIN EC PRIVATE KEY-----\n{der}\n-----END EC PRIVATE KEY-----\n");
        assert!(check_certificates(&cert).is_ok());
        assert!(check_private_key(&key).is_ok());
        assert!(check_private_key(&ec).is_ok());
        assert!(
            check_certificates(&format!("{key}{cert}")).is_ok(),
            "a bundle with a certificate"
        );
        assert!(check_certificates(&key).is_err(), "a key is not a certificate");
        assert!(check_private_key(&cert).is_err(), "a certificate is not a key");
        assert!(check_certificates("garbage").is_err());
        assert!(check_certificates("").is_err());
        assert!(check_certificates("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err());
        assert!(check_certificates("-----BEGIN CERTIFICATE-----\nMAMCAQE=\n").is_err());
        assert!(check_certificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
