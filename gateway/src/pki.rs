//! Certificates: the network CA, node (server) certificates, and one client
//! certificate per participant. A participant's identity is the client
//! certificate's subject common name: `central-bank`, or `bank:<64-hex ed25519
//! key>`.
//!
//! Two CAs come from here: the dev CA of `ruble-node dev` ([`generate_ca`],
//! fixed validity 2024–2036) and a deployment's CA made by `ruble-node init`
//! ([`generate_network_ca`], valid for ten years from its creation), which
//! `ruble-node pki issue-bank` loads again ([`CaBundle::load`]) to issue bank
//! certificates. A certificate is valid for exactly as long as its CA.
//! Deployments may bring their own CA instead, with the same subject naming.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::auth::Participant;
use crate::devnet::write_private;

/// How long a network CA made by `ruble-node init` is valid.
pub const NETWORK_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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

/// A certificate authority (in memory, with its key).
pub struct CaBundle {
    /// The CA certificate as rcgen signs with it (for a loaded CA, rebuilt
    /// from `ca.pem`: same subject, key and key identifier).
    cert: rcgen::Certificate,
    key: KeyPair,
    /// `ca.pem` as it is distributed (for a loaded CA, the file's text).
    pem: String,
    /// The organisation named in every certificate this CA issues.
    org: String,
}

fn dev_validity(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
}

fn ca_params(common_name: &str, org: &str) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, org);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn self_signed(p: CertificateParams, org: &str) -> Result<CaBundle> {
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok(CaBundle {
        pem: cert.pem(),
        cert,
        key,
        org: org.to_string(),
    })
}

/// A fresh dev CA (`ruble dev CA`, valid 2024–2036).
pub fn generate_ca() -> Result<CaBundle> {
    let mut p = ca_params("ruble dev CA", "ruble-dev")?;
    dev_validity(&mut p);
    self_signed(p, "ruble-dev")
}

/// A fresh CA for the network `chain_id` (`<chain_id> CA`, organisation
/// `<chain_id>`), valid from an hour ago (clock skew) for
/// [`NETWORK_CA_VALIDITY`].
pub fn generate_network_ca(chain_id: &str) -> Result<CaBundle> {
    let mut p = ca_params(&format!("{chain_id} CA"), chain_id)?;
    let now = SystemTime::now();
    p.not_before = (now - Duration::from_secs(3600)).into();
    p.not_after = (now + NETWORK_CA_VALIDITY).into();
    self_signed(p, chain_id)
}

fn dn_text(v: &DnValue) -> Option<String> {
    match v {
        DnValue::Utf8String(s) => Some(s.clone()),
        DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

impl CaBundle {
    /// Loads `dir/ca.pem` and `dir/ca-key.pem` (as [`CaBundle::save`] wrote
    /// them). The key must be the certificate's. Certificates issued by the
    /// loaded CA chain to the original `ca.pem`.
    pub fn load(dir: &Path) -> Result<CaBundle> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
        let pem = std::fs::read_to_string(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let key =
            KeyPair::from_pem(&key_pem).with_context(|| format!("{}: not a PEM private key", key_path.display()))?;
        let params = CertificateParams::from_ca_cert_pem(&pem)
            .with_context(|| format!("{}: not a PEM CA certificate", cert_path.display()))?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            bail!("{} is not a CA certificate", cert_path.display());
        }
        let der = pem_cert_der(&pem).with_context(|| format!("{}: not a PEM certificate", cert_path.display()))?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            bail!(
                "{} is not the key of {}: certificates it signed would not verify",
                key_path.display(),
                cert_path.display()
            );
        }
        let org = params
            .distinguished_name
            .get(&DnType::OrganizationName)
            .and_then(dn_text)
            .unwrap_or_else(|| "ruble".to_string());
        // Re-signing the parsed parameters with the same key gives a
        // certificate with the original subject and key identifier: what an
        // issued certificate's issuer name and authority key id must match.
        let cert = params.self_signed(&key).context("rebuilding the CA certificate")?;
        Ok(CaBundle { cert, key, pem, org })
    }

    pub fn cert_pem(&self) -> String {
        self.pem.clone()
    }

    /// The CA's private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Writes `ca.pem` and `ca-key.pem`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.pem"), &self.pem)?;
        write_private(&dir.join("ca-key.pem"), self.key.serialize_pem().as_bytes())
    }

    /// A server certificate for the given DNS names / IP addresses.
    pub fn issue_server(&self, sans: &[&str]) -> Result<CertPair> {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ruble-node");
        dn.push(DnType::OrganizationName, self.org.as_str());
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        self.sign(p)
    }

    /// A replica's certificate for replication: CN `ruble-node`, valid for
    /// both ends of a node-to-node connection (server and client), so the
    /// replication service can tell a node from a bank or the central bank.
    pub fn issue_peer(&self, sans: &[&str]) -> Result<CertPair> {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, crate::raft_net::NODE_CN);
        dn.push(DnType::OrganizationName, self.org.as_str());
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        self.sign(p)
    }

    /// A client certificate naming `who`.
    pub fn issue_client(&self, who: &Participant) -> Result<CertPair> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, who.to_string());
        dn.push(DnType::OrganizationName, self.org.as_str());
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(p)
    }

    /// Signs `p` with a fresh key pair, valid as long as the CA.
    fn sign(&self, mut p: CertificateParams) -> Result<CertPair> {
        p.not_before = self.cert.params().not_before;
        p.not_after = self.cert.params().not_after;
        let key = KeyPair::generate().context("generating a key pair")?;
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The DER of the first certificate in a PEM text.
pub fn pem_cert_der(pem: &str) -> Result<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if p.label != "CERTIFICATE" {
        bail!("expected a CERTIFICATE, found {}", p.label);
    }
    Ok(p.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        pem_cert_der(pem).unwrap()
    }

    #[test]
    fn a_loaded_ca_issues_certificates_that_chain_to_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_network_ca("ruble-test").unwrap();
        ca.save(dir.path()).unwrap();
        let loaded = CaBundle::load(dir.path()).unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        let ca_der = der(&ca.cert_pem());
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let bank = Participant::Bank([9; 32]);
        let pair = loaded.issue_client(&bank).unwrap();
        let leaf_der = der(&pair.cert_pem);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        // Path building compares the issuer name's bytes with the CA's subject.
        assert_eq!(leaf.issuer().as_raw(), ca_x509.subject().as_raw());
        leaf.verify_signature(Some(ca_x509.public_key())).unwrap();
        assert_eq!(
            crate::auth::participant_from_cert_der(&leaf_der).unwrap(),
            bank,
            "the subject names the bank"
        );
        assert_eq!(leaf.validity().not_after, ca_x509.validity().not_after);
        // Another CA's signature does not verify.
        let other = generate_network_ca("ruble-test").unwrap();
        let other_der = der(&other.cert_pem());
        let (_, other_x509) = x509_parser::parse_x509_certificate(&other_der).unwrap();
        assert!(leaf.verify_signature(Some(other_x509.public_key())).is_err());
    }

    #[test]
    fn a_ca_with_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        generate_network_ca("a").unwrap().save(dir.path()).unwrap();
        let other = generate_network_ca("a").unwrap();
        std::fs::write(dir.path().join("ca-key.pem"), other.key_pem()).unwrap();
        let err = CaBundle::load(dir.path()).err().expect("mismatched key accepted");
        assert!(err.to_string().contains("is not the key of"), "{err:#}");
        std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
        let err = CaBundle::load(dir.path()).err().expect("missing ca.pem accepted");
        assert!(format!("{err:#}").contains("ca.pem"), "{err:#}");
    }
}
