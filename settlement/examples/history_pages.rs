//! Times the history reads (newest page, a deep page, an instrument-filtered page) of a
//! PostgreSQL ledger through the read-only `History` API, for BENCHMARKS.md (settle7).
//!
//! `cargo run --release -p castle-settlement --example history_pages -- URL ACCOUNT...`

use std::time::Instant;

use castle_settlement::history::History;
use castle_settlement::LedgerUrl;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: history_pages URL ACCOUNT...")?;
    let h = History::open(&LedgerUrl::Postgres(url), None).await?;
    for account in args {
        let account: u32 = account.parse()?;
        // Warm the connection's prepared statements and the cache once, then time.
        h.fills(account, None, None, 100).await?;
        let t = Instant::now();
        let newest = h.fills(account, None, None, 100).await?;
        let t_newest = t.elapsed();
        let mut cursor = newest.next;
        for _ in 0..20 {
            cursor = match h.fills(account, None, cursor, 100).await?.next {
                Some(c) => Some(c),
                None => break,
            };
        }
        let t = Instant::now();
        let deep = h.fills(account, None, cursor, 100).await?;
        let t_deep = t.elapsed();
        let t = Instant::now();
        let filtered = h.fills(account, Some(2), None, 100).await?;
        let t_filtered = t.elapsed();
        let t = Instant::now();
        let orders = h.orders(account, None, None, 100).await?;
        let t_orders = t.elapsed();
        println!(
            "account {account}: fills newest page {} rows {:.2} ms; 22nd page {} rows {:.2} ms; instrument 2 {} rows {:.2} ms; orders newest page {} rows {:.2} ms",
            newest.rows.len(),
            t_newest.as_secs_f64() * 1e3,
            deep.rows.len(),
            t_deep.as_secs_f64() * 1e3,
            filtered.rows.len(),
            t_filtered.as_secs_f64() * 1e3,
            orders.rows.len(),
            t_orders.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
