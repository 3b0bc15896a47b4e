//! Print incoming payments as they commit. The stream survives dropped
//! connections and node restarts, resuming after the last payment it showed.
//!
//! ```sh
//! cargo run -p ruble-wallet-sdk --example watch_incoming -- dev-data dev-data/keys/business-2.json
//! ```

use futures::StreamExt;
use ruble_wallet::{format_rubles, Address, ClientBuilder, WalletKey};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dev_dir, key_file] = args.as_slice() else {
        eprintln!("usage: watch_incoming DEV_DIR KEY_FILE");
        std::process::exit(1);
    };
    let client = ClientBuilder::from_dev_dir(dev_dir)?.connect().await?;
    let key = WalletKey::load(key_file.as_ref(), None)?;
    println!("watching {}", key.address());
    // Persist `cursor` to resume from there after a restart of this program.
    let mut payments = Box::pin(client.watch_incoming(&key, 0));
    while let Some(p) = payments.next().await {
        let p = p?;
        let from = p.from.map(|a| Address(a).to_string()).unwrap_or_default();
        println!(
            "+{} ₽ from {from} \"{}\" (cursor {})",
            format_rubles(p.amount),
            p.purpose,
            p.cursor
        );
    }
    Ok(())
}
