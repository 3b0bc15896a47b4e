//! A light check of PEM files before they reach TLS, so that a wrong or
//! damaged file is reported as a certificate problem naming the file, not as
//! a failed connection.

use std::path::Path;

use base64::Engine;

use crate::error::{Error, Result};

/// The `(label, DER)` blocks of a PEM text. A block that does not end or
/// whose body is not base64 is an error.
fn blocks(text: &str) -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut ended = false;
        for l in lines.by_ref() {
            if l.trim() == end {
                ended = true;
                break;
            }
            body.extend(l.chars().filter(|c| !c.is_whitespace()));
        }
        if !ended {
            return Err(format!("the {label} block does not end"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("the {label} block is not base64: {e}"))?;
        // Every DER structure here is an ASN.1 SEQUENCE.
        if der.first() != Some(&0x30) {
            return Err(format!("the {label} block is not DER"));
        }
        out.push((label.to_string(), der));
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
    let b = blocks(text)?;
    if !b.iter().any(|(l, _)| l == "CERTIFICATE") {
        return Err("no PEM certificate in it".into());
    }
    Ok(())
}

fn check_private_key(text: &str) -> std::result::Result<(), String> {
    let b = blocks(text)?;
    if !b.iter().any(|(l, _)| l.ends_with("PRIVATE KEY")) {
        return Err("no PEM private key in it".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pem_and_refuses_garbage() {
        let der = base64::engine::general_purpose::STANDARD.encode([0x30, 0x03, 0x02, 0x01, 0x01]);
        let cert = format!("-----BEGIN CERTIFICATE-----\n{der}\n-----END CERTIFICATE-----\n");
        let key = format!("-----BEGIN PRIVATE KEY-----\n{der}\n-----END PRIVATE KEY-----\n");
        assert!(check_certificates(&cert).is_ok());
        assert!(check_private_key(&key).is_ok());
        assert!(check_certificates(&key).is_err(), "a key is not a certificate");
        assert!(check_private_key(&cert).is_err(), "a certificate is not a key");
        assert!(check_certificates("garbage").is_err());
        assert!(check_certificates("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err());
        assert!(check_certificates("-----BEGIN CERTIFICATE-----\nMAMCAQE=\n").is_err());
        assert!(check_certificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
