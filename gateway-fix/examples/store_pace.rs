//! The file store alone, paced like a busy session: `store_outbound` of an
//! ExecutionReport-sized record at a fixed rate for a while, timing every
//! call. Shows stalls of the store itself (file growth, page faults, the
//! kernel writing the file back ~30 s after it was first dirtied) without
//! sockets, engine or other threads of the gateway.
//!
//! cargo run --release -p castle-gateway-fix --example store_pace -- [seconds] [rate/s] [dir]
//!
//! Prints the call latency percentiles, the worst calls with the time since
//! the start at which they began, and how often the writer had to grow the
//! file itself because the background grower was behind.

use castle_gateway_fix::store::{FileStore, FsyncPolicy, MessageStore};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(45);
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let base = args.get(3).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("castle-store-pace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut store = FileStore::open(&dir, "PACE", FsyncPolicy::OsBuffered).unwrap();
    // About the size of an ExecutionReport(new) with its record header.
    let msg = vec![b'x'; 250];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut worst: Vec<(u64, f64)> = Vec::new();
    let n = secs * rate;
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    for i in 0..n {
        let due = start + gap * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let t0 = Instant::now();
        store.store_outbound(i + 1, &msg).unwrap();
        let ns = t0.elapsed().as_nanos() as u64;
        hist.record(ns.max(1)).unwrap();
        if ns > 1_000_000 {
            worst.push((ns, (t0 - start).as_secs_f64()));
        }
    }
    let took = start.elapsed().as_secs_f64();
    worst.sort_by_key(|w| std::cmp::Reverse(w.0));
    println!(
        "store_pace {secs} s at {rate}/s ({n} records, {:.1} s): call p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, \
         max {:.1} us; calls over 1 ms: {}; writer grew the file itself {} times, the grower {} times",
        took,
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.value_at_quantile(0.999) as f64 / 1e3,
        hist.max() as f64 / 1e3,
        worst.len(),
        store.growth_stats().writer_grew,
        store.growth_stats().grower_grew,
    );
    for (ns, at) in worst.iter().take(10) {
        println!("  {:.2} ms at {:.3} s", *ns as f64 / 1e6, at);
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
