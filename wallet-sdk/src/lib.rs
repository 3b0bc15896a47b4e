//! # ruble-wallet: the digital ruble wallet SDK
//!
//! Accept and make digital-ruble payments from Rust.
//!
//! Main types:
//! - [`WalletKey`]: an ed25519 wallet key; [`WalletKey::generate`],
//!   [`WalletKey::save`] (optionally passphrase-encrypted), [`WalletKey::load`].
//!   [`Address`] is an account's copyable text form (`rub1…`).
//! - [`ClientBuilder`] → [`Client`]: a TLS connection to a node with timeouts
//!   and retries. [`Client::pay`], [`Client::submit_batch`],
//!   [`Client::account`], [`Client::history`], [`Client::receipt`],
//!   [`Client::watch_incoming`].
//! - [`Error`]: ledger rejections ([`Error::Rejected`] with a
//!   [`ruble_ledger::Reason`]) apart from transport failures.
//!
//! ```no_run
//! # async fn f() -> ruble_wallet::Result<()> {
//! use ruble_wallet::{ClientBuilder, WalletKey, Address};
//! let client = ClientBuilder::from_dev_dir("dev-data")?.connect().await?;
//! let key = WalletKey::load("dev-data/keys/business-1.json".as_ref(), None)?;
//! let payee: Address = "rub1…".parse()?;
//! let payment = client.pay(&key, payee.0, 1_250_50, "Invoice 2026-001").await?;
//! println!("committed in block {}", payment.receipt.height);
//! # Ok(()) }
//! ```
//!
//! Safe retries: a payment is signed once ([`Client::transfer`]) and the same
//! bytes are resent on every retry; the ledger applies an operation at most
//! once and answers a resubmission with the original receipt.

pub mod amount;
pub mod client;
pub mod error;
pub mod keys;

pub use amount::{format_rubles, parse_rubles};
pub use client::{AccountInfo, Client, ClientBuilder, HistoryPage, Payment, Receipt, Record};
pub use error::{Error, Result};
pub use keys::{Address, WalletKey};
pub use ruble_ledger::Reason;
