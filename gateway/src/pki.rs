//! A development PKI: one CA, a server certificate, and one client certificate
//! per participant. A participant's identity is the client certificate's
//! subject common name: `central-bank`, or `bank:<64-hex ed25519 key>`.
//! Production deployments bring their own CA and certificates with the same
//! naming.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::auth::Participant;
use crate::devnet::write_private;

/// A certificate and its private key, PEM-encoded.
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertPair {
    /// Writes `<stem>.pem` and `<stem>-key.pem` (the key readable by the owner only).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<()> {
        std::fs::write(dir.join(format!("{stem}.pem")), &self.cert_pem)?;
        write_private(&dir.join(format!("{stem}-key.pem")), self.key_pem.as_bytes())
    }
}

/// The dev certificate authority (in memory, with its key).
pub struct CaBundle {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn validity(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
}

/// A fresh CA.
pub fn generate_ca() -> Result<CaBundle> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ruble dev CA");
    dn.push(DnType::OrganizationName, "ruble-dev");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p);
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok(CaBundle { cert, key })
}

impl CaBundle {
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes `ca.pem` and `ca-key.pem`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.pem"), self.cert.pem())?;
        write_private(&dir.join("ca-key.pem"), self.key.serialize_pem().as_bytes())
    }

    /// A server certificate for the given DNS names / IP addresses.
    pub fn issue_server(&self, sans: &[&str]) -> Result<CertPair> {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ruble-node");
        dn.push(DnType::OrganizationName, "ruble-dev");
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut p);
        self.sign(p)
    }

    /// A client certificate naming `who`.
    pub fn issue_client(&self, who: &Participant) -> Result<CertPair> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, who.to_string());
        dn.push(DnType::OrganizationName, "ruble-dev");
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p);
        self.sign(p)
    }

    fn sign(&self, p: CertificateParams) -> Result<CertPair> {
        let key = KeyPair::generate().context("generating a key pair")?;
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
