//! [`Credentials`]: where an operator (the central bank or a bank) finds its
//! node, the CA, its mTLS client certificate and its signing key, from flags
//! or from the directories `ruble-node dev` and `ruble-node init` write.

use std::path::{Path, PathBuf};

use crate::client::ClientBuilder;
use crate::error::{Error, Result};

/// A participant's connection settings and files. Every field is optional
/// so that explicit settings can be laid over a directory's
/// ([`Credentials::or`]); [`Credentials::client_builder`] says what is missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `https://host:port`.
    pub endpoint: Option<String>,
    /// The CA certificate (PEM) the node's certificate chains to.
    pub ca: Option<PathBuf>,
    /// The participant's mTLS client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub cert_key: Option<PathBuf>,
    /// The participant's signing key file (`ruble-wallet-key/v1`, maybe encrypted).
    pub key: Option<PathBuf>,
    /// The other replicas of a cluster (`dev.json`'s `replicas`): the client
    /// follows the leader among them.
    pub replicas: Vec<String>,
}

fn read_manifest(dir: &Path) -> Result<serde_json::Value> {
    let raw = std::fs::read(dir.join("dev.json"))
        .map_err(|e| Error::Config(format!("{}/dev.json: {e} (is the dev node set up?)", dir.display())))?;
    serde_json::from_slice(&raw).map_err(|e| Error::Config(format!("{}/dev.json: {e}", dir.display())))
}

/// The endpoint and CA of a dev network, with `p`'s files (if any).
fn participant(dir: &Path, m: &serde_json::Value, p: Option<&serde_json::Value>) -> Credentials {
    let path = |field: &str| p.and_then(|p| p[field].as_str()).map(|rel| dir.join(rel));
    Credentials {
        endpoint: m["endpoint"].as_str().map(str::to_string),
        ca: Some(dir.join(m["ca"].as_str().unwrap_or("pki/ca.pem"))),
        cert: path("cert"),
        cert_key: path("cert_key"),
        key: path("key"),
        replicas: m["replicas"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
    }
}

impl Credentials {
    /// The central bank of a `ruble-node dev --data-dir DIR` network (its `dev.json`).
    pub fn dev_central_bank(dir: impl AsRef<Path>) -> Result<Credentials> {
        let dir = dir.as_ref();
        let m = read_manifest(dir)?;
        Ok(participant(dir, &m, Some(&m["central_bank"])))
    }

    /// The endpoint and CA of a `ruble-node dev --data-dir DIR` network
    /// (its `dev.json`), without a participant's files: a wallet's view.
    pub fn dev_network(dir: impl AsRef<Path>) -> Result<Credentials> {
        let dir = dir.as_ref();
        Ok(participant(dir, &read_manifest(dir)?, None))
    }

    /// A bank of a dev network: `which` is its name or its index in
    /// `dev.json` (0 = the first); `None` is the first bank.
    pub fn dev_bank(dir: impl AsRef<Path>, which: Option<&str>) -> Result<Credentials> {
        let dir = dir.as_ref();
        let m = read_manifest(dir)?;
        let banks = m["banks"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = banks.iter().filter_map(|b| b["name"].as_str()).collect();
        let found = match which {
            None => banks.first(),
            Some(w) => banks
                .iter()
                .find(|b| b["name"].as_str() == Some(w))
                .or_else(|| w.parse::<usize>().ok().and_then(|i| banks.get(i))),
        };
        let b = found.ok_or_else(|| {
            Error::Config(format!(
                "no bank {:?} in {}/dev.json (banks: {})",
                which.unwrap_or("0"),
                dir.display(),
                names.join(", ")
            ))
        })?;
        Ok(participant(dir, &m, Some(b)))
    }

    /// The central bank of a network set up by `ruble-node init --dir DIR`:
    /// the endpoint from `DIR/node.toml`'s `listen` (a wildcard address is
    /// reached on loopback), `DIR/pki/ca.pem`, `DIR/pki/central-bank.pem`
    /// and `-key.pem`, and the (encrypted) `DIR/central-bank-key.json`.
    pub fn network_central_bank(dir: impl AsRef<Path>) -> Result<Credentials> {
        let dir = dir.as_ref();
        let path = dir.join("node.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let listen = table
            .get("listen")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Config(format!("{}: no `listen = \"HOST:PORT\"`", path.display())))?;
        Ok(Credentials {
            endpoint: Some(endpoint_for_listen(listen)?),
            ca: Some(dir.join("pki/ca.pem")),
            cert: Some(dir.join("pki/central-bank.pem")),
            cert_key: Some(dir.join("pki/central-bank-key.pem")),
            key: Some(dir.join("central-bank-key.json")),
            replicas: Vec::new(),
        })
    }

    /// These settings, with every one left unset taken from `fallback`.
    pub fn or(self, fallback: Credentials) -> Credentials {
        Credentials {
            endpoint: self.endpoint.or(fallback.endpoint),
            ca: self.ca.or(fallback.ca),
            cert: self.cert.or(fallback.cert),
            cert_key: self.cert_key.or(fallback.cert_key),
            key: self.key.or(fallback.key),
            replicas: if self.replicas.is_empty() {
                fallback.replicas
            } else {
                self.replicas
            },
        }
    }

    /// A [`ClientBuilder`] for the endpoint, trusting the CA (for an
    /// `https://` endpoint), presenting no client certificate: a wallet's
    /// connection. The CA file is read and checked now ([`Error::Certificate`]);
    /// a missing setting is [`Error::Config`].
    pub fn node_builder(&self) -> Result<ClientBuilder> {
        let endpoint = self
            .endpoint
            .clone()
            .ok_or_else(|| Error::Config("no endpoint: give --endpoint or --dev-dir (or --network-dir)".into()))?;
        let b = ClientBuilder::new(endpoint.clone()).replicas(self.replicas.clone());
        if !endpoint.starts_with("https://") {
            return Ok(b);
        }
        let ca = self
            .ca
            .as_ref()
            .ok_or_else(|| Error::Config("no CA certificate: give --ca".into()))?;
        b.ca_file(ca)
    }

    /// [`Credentials::node_builder`], presenting the client certificate too
    /// (also read and checked now).
    pub fn client_builder(&self) -> Result<ClientBuilder> {
        let b = self.node_builder()?;
        match (&self.cert, &self.cert_key) {
            (Some(c), Some(k)) => b.identity_files(c, k),
            _ => Err(Error::Config(
                "no client certificate: give --cert and --cert-key (the participant's mTLS certificate and its key)"
                    .into(),
            )),
        }
    }
}

/// `https://` for a `listen` address; `0.0.0.0` and `[::]` become loopback.
pub fn endpoint_for_listen(listen: &str) -> Result<String> {
    let bad = || Error::Config(format!("listen address {listen:?}: expected HOST:PORT"));
    let (host, port) = listen.trim().rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    let host = match host {
        "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        h => h,
    };
    Ok(format!("https://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_become_endpoints() {
        assert_eq!(endpoint_for_listen("0.0.0.0:50051").unwrap(), "https://127.0.0.1:50051");
        assert_eq!(endpoint_for_listen("[::]:7000").unwrap(), "https://[::1]:7000");
        assert_eq!(endpoint_for_listen("10.1.2.3:443").unwrap(), "https://10.1.2.3:443");
        assert!(endpoint_for_listen("nohost").is_err());
        assert!(endpoint_for_listen("1.2.3.4:port").is_err());
    }

    #[test]
    fn network_dir_layout_and_explicit_settings_win() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("node.toml"),
            "listen = \"0.0.0.0:50061\"\n[limits]\nmax_page = 10\n",
        )
        .unwrap();
        let c = Credentials::network_central_bank(d.path()).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("https://127.0.0.1:50061"));
        assert_eq!(c.ca, Some(d.path().join("pki/ca.pem")));
        assert_eq!(c.cert, Some(d.path().join("pki/central-bank.pem")));
        assert_eq!(c.cert_key, Some(d.path().join("pki/central-bank-key.pem")));
        assert_eq!(c.key, Some(d.path().join("central-bank-key.json")));
        let explicit = Credentials {
            endpoint: Some("https://node:1".into()),
            ..Default::default()
        };
        let merged = explicit.or(c.clone());
        assert_eq!(merged.endpoint.as_deref(), Some("https://node:1"));
        assert_eq!(merged.cert, c.cert);
    }
}
