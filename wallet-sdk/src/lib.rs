//! # ruble-wallet: the digital ruble wallet SDK
//!
//! Accept and make digital-ruble payments from Rust, and run the central
//! bank's and a bank's side of the ledger.
//!
//! Main types:
//! - [`WalletKey`]: an ed25519 signing key (a wallet's, a bank's or the
//!   central bank's); [`WalletKey::generate`], [`WalletKey::save`]
//!   (optionally passphrase-encrypted), [`WalletKey::load`].
//!   [`Address`] is an account's copyable text form (`rub1…`).
//! - [`ClientBuilder`] → [`Client`]: a TLS connection to a node with timeouts
//!   and retries. [`Client::pay`], [`Client::submit_batch`],
//!   [`Client::account`], [`Client::history`], [`Client::receipt`],
//!   [`Client::watch_incoming`]; held payments: [`Client::held_payments`],
//!   [`Client::confirm_payment`] (also a signatory's approval),
//!   [`Client::void_payment`]; [`Client::pay_tagged`] (a budget payer's
//!   purpose-bound payment); [`Client::for_account`] for an account whose
//!   key the bank rotated. A receipt's [`Effect`] says whether a payment
//!   was held ([`Payment::held_until_ms`]), swept to the payee's bank,
//!   collected, settled or approved.
//! - [`AdminClient`]: the central bank (`CentralBankService`, mutual TLS with
//!   the central-bank certificate): [`AdminClient::issue`],
//!   [`AdminClient::redeem`], [`AdminClient::admit_bank`],
//!   [`AdminClient::suspend_bank`], [`AdminClient::set_phase`],
//!   [`AdminClient::set_limits`], [`AdminClient::set_reporting_threshold`],
//!   [`AdminClient::freeze`] / [`AdminClient::unfreeze`],
//!   [`AdminClient::freeze_receive_only`], the controls
//!   ([`AdminClient::set_controls`], [`AdminClient::set_tier_limits`],
//!   [`AdminClient::define_purpose`], [`AdminClient::issue_tagged`],
//!   [`AdminClient::flag_fraud`] / [`AdminClient::unflag_fraud`],
//!   [`AdminClient::release_payment`], [`AdminClient::void_payment`],
//!   [`AdminClient::collect`]; reads [`AdminClient::controls`]
//!   ([`Controls`]), [`AdminClient::held_payments`] ([`HeldPayment`]),
//!   [`AdminClient::purposes`] ([`Purpose`]),
//!   [`AdminClient::fraud_registry`] ([`FraudEntry`])), and the reads
//!   [`AdminClient::supply`] ([`Supply`]), [`AdminClient::list_accounts`]
//!   ([`AccountFilter`], [`AccountPage`]), [`AdminClient::limits`]
//!   ([`KindLimits`]), [`AdminClient::large_payments`] (live) and
//!   [`AdminClient::large_payments_until`] ([`LargePayments`]); on a
//!   replicated ledger the membership (`ClusterService`):
//!   [`AdminClient::cluster_status`] ([`ClusterStatus`]),
//!   [`AdminClient::add_replica`], [`AdminClient::remove_replica`].
//! - [`BankClient`]: a bank (`BankService`, mutual TLS with the bank's
//!   certificate): [`BankClient::open_account`], [`BankClient::close_account`],
//!   [`BankClient::freeze`] / [`BankClient::unfreeze`],
//!   [`BankClient::freeze_receive_only`], [`BankClient::flag_fraud`] /
//!   [`BankClient::unflag_fraud`], [`BankClient::release_payment`],
//!   [`BankClient::void_payment`], [`BankClient::collect`],
//!   [`BankClient::set_category`], [`BankClient::set_sweep`],
//!   [`BankClient::set_tier`], [`BankClient::rotate_key`],
//!   [`BankClient::set_signatories`] / [`BankClient::clear_signatories`],
//!   [`BankClient::held_payments`], [`BankClient::sweeps`],
//!   [`BankClient::purposes`], [`BankClient::account`],
//!   [`BankClient::statement`], [`BankClient::blocks`] (live) and
//!   [`BankClient::blocks_until`] ([`Block`]).
//! - [`Credentials`]: where an operator's endpoint, CA, client certificate
//!   and signing key are: flags, a `ruble-node dev` directory
//!   ([`Credentials::dev_central_bank`], [`Credentials::dev_bank`]) or a
//!   `ruble-node init` directory ([`Credentials::network_central_bank`]).
//! - [`Error`]: ledger rejections ([`Error::Rejected`] with a
//!   [`ruble_domain::Reason`]) apart from transport failures and from local
//!   key ([`Error::Key`], [`Error::WrongPassphrase`]) and certificate
//!   ([`Error::Certificate`]) problems.
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
//! The central bank issuing to a bank of the dev network:
//!
//! ```no_run
//! # async fn f() -> ruble_wallet::Result<()> {
//! use ruble_wallet::{AdminClient, Credentials, WalletKey};
//! let creds = Credentials::dev_central_bank("dev-data")?;
//! let admin = AdminClient::connect(creds.client_builder()?).await?;
//! let key = WalletKey::load(creds.key.as_deref().unwrap(), None)?;
//! let supply = admin.supply().await?;
//! admin.issue(&key, supply.banks[0].bank, 1_000_000_00).await?;
//! # Ok(()) }
//! ```
//!
//! Safe retries: a payment (or any operation) is signed once
//! ([`Client::transfer`], [`Client::sign`], [`AdminClient::sign`],
//! [`BankClient::sign`]) and the same bytes are resent on every retry; the
//! ledger applies an operation at most once and answers a resubmission with
//! the original receipt.

pub mod admin;
pub mod amount;
pub mod bank;
pub mod cli;
pub mod client;
pub mod error;
pub mod keys;
pub mod operator;
mod pem;

pub use admin::{
    AccountFilter, AccountPage, AdminClient, BankSupply, ClusterMember, ClusterStatus, KindLimits, LargePayments,
    ReplicaRole, Supply,
};
pub use amount::{format_rubles, parse_rubles};
pub use bank::BankClient;
pub use client::{
    AccountInfo, Block, Client, ClientBuilder, Controls, FraudEntry, HeldPayment, HistoryPage, Lot, Payment, Purpose,
    Receipt, Record, SignatoryRule,
};
pub use error::{Error, Result};
pub use keys::{Address, WalletKey};
pub use operator::Credentials;
pub use ruble_domain::state::{Effect, HoldKind};
pub use ruble_domain::types::{AccountId, AccountKind, AccountStatus, Limits, Phase, Tier, TxId};
pub use ruble_domain::Reason;
