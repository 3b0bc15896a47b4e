//! Wallet keys: generate, save, load; optional passphrase encryption.
//!
//! Key file (`ruble-wallet-key/v1`, JSON, written with mode 0600):
//! - plain: `{format, public_key, secret_key}` (hex);
//! - encrypted: `{format, public_key, kdf: "argon2id", m_cost, t_cost, p_cost,
//!   salt, nonce, ciphertext}`: the 32-byte secret sealed with
//!   ChaCha20-Poly1305 under an Argon2id key derived from the passphrase, the
//!   public key bound as associated data.
//!
//! An account's id *is* its public key; [`Address`] is its copyable text form.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::SigningKey;
use rand::RngCore;
use ruble_domain::types::AccountId;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub const KEY_FORMAT: &str = "ruble-wallet-key/v1";

/// An account address: `rub1` followed by base58check of the public key.
/// Also parses 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Address(pub AccountId);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rub1{}", bs58::encode(self.0 .0).with_check().into_string())
    }
}

impl FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Address> {
        let s = s.trim();
        if let Some(b) = s.strip_prefix("rub1") {
            let bytes = bs58::decode(b)
                .with_check(None)
                .into_vec()
                .map_err(|e| Error::Config(format!("bad address {s:?}: {e}")))?;
            return AccountId::from_slice(&bytes)
                .map(Address)
                .ok_or_else(|| Error::Config(format!("bad address {s:?}: wrong length")));
        }
        AccountId::from_hex(s)
            .map(Address)
            .map_err(|_| Error::Config(format!("bad address {s:?}: expected rub1… or 64 hex characters")))
    }
}

/// A wallet's signing key.
#[derive(Clone)]
pub struct WalletKey {
    key: SigningKey,
}

impl fmt::Debug for WalletKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletKey({})", self.address())
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m_cost: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t_cost: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p_cost: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
}

fn derive(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|e| Error::Key(e.to_string()))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .map_err(|e| Error::Key(e.to_string()))?;
    Ok(out)
}

impl WalletKey {
    /// A fresh key from the OS random generator.
    pub fn generate() -> WalletKey {
        WalletKey {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    pub fn from_signing_key(key: SigningKey) -> WalletKey {
        WalletKey { key }
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn account_id(&self) -> AccountId {
        AccountId(self.key.verifying_key().to_bytes())
    }

    pub fn address(&self) -> Address {
        Address(self.account_id())
    }

    /// Public key, 64 hex characters.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Writes the key file (mode 0600). With a passphrase the secret is encrypted.
    pub fn save(&self, path: &Path, passphrase: Option<&str>) -> Result<()> {
        let public_key = self.public_key_hex();
        let file = match passphrase {
            None => KeyFile {
                format: KEY_FORMAT.into(),
                public_key,
                secret_key: Some(hex::encode(self.key.to_bytes())),
                kdf: None,
                m_cost: None,
                t_cost: None,
                p_cost: None,
                salt: None,
                nonce: None,
                ciphertext: None,
            },
            Some(pass) => {
                let (m, t, p) = (19_456, 2, 1); // OWASP's Argon2id baseline
                let mut salt = [0u8; 16];
                let mut nonce = [0u8; 12];
                rand::rngs::OsRng.fill_bytes(&mut salt);
                rand::rngs::OsRng.fill_bytes(&mut nonce);
                let k = derive(pass, &salt, m, t, p)?;
                let cipher = ChaCha20Poly1305::new(k.as_ref().into());
                let secret = Zeroizing::new(self.key.to_bytes());
                let ct = cipher
                    .encrypt(
                        Nonce::from_slice(&nonce),
                        Payload {
                            msg: secret.as_ref(),
                            aad: &self.key.verifying_key().to_bytes(),
                        },
                    )
                    .map_err(|_| Error::Key("encryption failed".into()))?;
                KeyFile {
                    format: KEY_FORMAT.into(),
                    public_key,
                    secret_key: None,
                    kdf: Some("argon2id".into()),
                    m_cost: Some(m),
                    t_cost: Some(t),
                    p_cost: Some(p),
                    salt: Some(hex::encode(salt)),
                    nonce: Some(hex::encode(nonce)),
                    ciphertext: Some(hex::encode(ct)),
                }
            }
        };
        let json = serde_json::to_string_pretty(&file).map_err(|e| Error::Key(e.to_string()))?;
        write_private(path, json.as_bytes())
    }

    /// Whether the key file at `path` needs a passphrase.
    pub fn is_encrypted(path: &Path) -> Result<bool> {
        Ok(read_file(path)?.ciphertext.is_some())
    }

    /// Loads a key file; `passphrase` is needed for an encrypted one.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<WalletKey> {
        let f = read_file(path)?;
        if f.format != KEY_FORMAT {
            return Err(Error::Key(format!("{}: unknown format {:?}", path.display(), f.format)));
        }
        let secret: Zeroizing<Vec<u8>> = match (&f.secret_key, &f.ciphertext) {
            (Some(s), None) => Zeroizing::new(hex::decode(s).map_err(|e| Error::Key(e.to_string()))?),
            (None, Some(ct)) => {
                let pass =
                    passphrase.ok_or_else(|| Error::Key("the key file is encrypted: a passphrase is needed".into()))?;
                if f.kdf.as_deref() != Some("argon2id") {
                    return Err(Error::Key("unsupported kdf".into()));
                }
                let hx = |o: &Option<String>| -> Result<Vec<u8>> {
                    hex::decode(o.as_deref().unwrap_or_default()).map_err(|e| Error::Key(e.to_string()))
                };
                let (salt, nonce, ct) = (
                    hx(&f.salt)?,
                    hx(&f.nonce)?,
                    hex::decode(ct).map_err(|e| Error::Key(e.to_string()))?,
                );
                if nonce.len() != 12 {
                    return Err(Error::Key("bad nonce".into()));
                }
                let k = derive(
                    pass,
                    &salt,
                    f.m_cost.unwrap_or(19_456),
                    f.t_cost.unwrap_or(2),
                    f.p_cost.unwrap_or(1),
                )?;
                let pk = hex::decode(&f.public_key).map_err(|e| Error::Key(e.to_string()))?;
                let cipher = ChaCha20Poly1305::new(k.as_ref().into());
                Zeroizing::new(
                    cipher
                        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad: &pk })
                        .map_err(|_| Error::WrongPassphrase)?,
                )
            }
            _ => return Err(Error::Key(format!("{}: neither plain nor encrypted", path.display()))),
        };
        let bytes: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| Error::Key("secret key must be 32 bytes".into()))?;
        let key = WalletKey {
            key: SigningKey::from_bytes(&bytes),
        };
        if key.public_key_hex() != f.public_key {
            return Err(Error::Key("the public key does not match the secret key".into()));
        }
        Ok(key)
    }
}

fn read_file(path: &Path) -> Result<KeyFile> {
    let raw = std::fs::read(path).map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&raw).map_err(|e| Error::Key(format!("{}: {e}", path.display())))
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
    f.write_all(data).map_err(|e| Error::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_encrypted_roundtrip_with_owner_only_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let k = WalletKey::generate();
        let plain = dir.path().join("plain.json");
        k.save(&plain, None).unwrap();
        assert_eq!(WalletKey::load(&plain, None).unwrap().account_id(), k.account_id());
        assert_eq!(std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777, 0o600);
        let enc = dir.path().join("enc.json");
        k.save(&enc, Some("correct horse")).unwrap();
        assert!(WalletKey::is_encrypted(&enc).unwrap());
        assert!(!std::fs::read_to_string(&enc)
            .unwrap()
            .contains(&hex::encode(k.signing_key().to_bytes())));
        assert_eq!(
            WalletKey::load(&enc, Some("correct horse")).unwrap().account_id(),
            k.account_id()
        );
        assert!(matches!(
            WalletKey::load(&enc, Some("wrong")),
            Err(Error::WrongPassphrase)
        ));
        assert!(matches!(WalletKey::load(&enc, None), Err(Error::Key(_))));
        // Never overwrites an existing key.
        assert!(k.save(&plain, None).is_err());
    }

    #[test]
    fn address_text_form_roundtrips_and_detects_typos() {
        let k = WalletKey::generate();
        let a = k.address().to_string();
        assert!(a.starts_with("rub1"));
        assert_eq!(a.parse::<Address>().unwrap(), k.address());
        assert_eq!(k.public_key_hex().parse::<Address>().unwrap(), k.address());
        let mut typo = a.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'2' { b'3' } else { b'2' };
        assert!(String::from_utf8(typo).unwrap().parse::<Address>().is_err());
    }
}
