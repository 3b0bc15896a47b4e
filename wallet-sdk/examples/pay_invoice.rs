//! Pay an invoice from a business wallet and print the durable receipt.
//!
//! ```sh
//! ./scripts/dev.sh &            # a dev node in ./dev-data
//! cargo run -p ruble-wallet-sdk --example pay_invoice -- dev-data dev-data/keys/business-1.json <payee address> 1250.50 "Invoice 2026-001"
//! ```

use ruble_wallet::{format_rubles, parse_rubles, Address, ClientBuilder, Error, Reason, WalletKey};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dev_dir, key_file, payee, amount, purpose] = args.as_slice() else {
        eprintln!("usage: pay_invoice DEV_DIR KEY_FILE PAYEE_ADDRESS RUBLES PURPOSE");
        std::process::exit(1);
    };
    let client = ClientBuilder::from_dev_dir(dev_dir)?.connect().await?;
    let key = WalletKey::load(key_file.as_ref(), None)?;
    let payee: Address = payee.parse()?;
    let kopecks = parse_rubles(amount)?;

    // Sign once, keep the signed operation: resubmitting the same bytes can
    // never pay twice, so it is safe to retry after any failure.
    let op = client.transfer(&key, payee.0, kopecks, purpose)?;
    match client.submit(&op).await {
        Ok(p) => println!(
            "paid {} ₽: tx {} in block {}{}",
            format_rubles(kopecks),
            p.receipt.tx_id,
            p.receipt.height,
            if p.duplicate { " (already paid earlier)" } else { "" }
        ),
        Err(Error::Rejected {
            reason: Reason::InsufficientFunds,
            ..
        }) => eprintln!("not enough money on the account"),
        Err(e) if e.is_retryable() => eprintln!("node unavailable, retry later with the same operation: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
