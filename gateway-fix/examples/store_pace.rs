//! The file store alone, paced like a busy session: `store_outbound` of an
//! ExecutionReport-sized record at a fixed rate for a while, timing every
//! call. Shows stalls of the store itself (file growth, page faults, the
//! kernel writing the file back ~30 s after it was first dirtied) without
//! sockets, engine or other threads of the gateway.
//!
//! cargo run --release -p castle-gateway-fix --example store_pace -- [seconds] [rate/s] [dir]
//!
//! Prints the call latency percentiles, the worst calls with the time since
//! the start at which they began, how often the writer had to grow the
//! file itself because the background grower was behind, and the message
//! file's dirty pages (sampled every 100 ms with cachestat(2), Linux 6.5+:
//! the largest and the last sample) next to the machine's (`Dirty:` of
//! /proc/meminfo, largest sample). `CASTLE_FIX_STORE_WRITEBACK=0` turns the
//! store's writeback behind the writer off (the baseline).

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
    // Our own descriptor of the message file, for cachestat.
    let body = std::fs::File::open(dir.join("PACE.body")).unwrap();
    let mut dirty = DirtySamples::default();
    let mut next_sample = Instant::now();
    // About the size of an ExecutionReport(new) with its record header.
    let msg = vec![b'x'; 250];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut worst: Vec<(u64, f64)> = Vec::new();
    let n = secs * rate;
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let faults0 = thread_minor_faults();
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
        if t0 >= next_sample {
            dirty.sample(&body);
            next_sample = t0 + Duration::from_millis(100);
        }
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
    let faults = thread_minor_faults() - faults0;
    let written_back = store.growth_stats().written_back;
    println!(
        "minor page faults of the writing thread: {faults} ({:.1} per 1k records)",
        faults as f64 * 1000.0 / n as f64
    );
    println!(
        "message file dirty pages: max {:.1} MB, last {:.1} MB, under writeback max {:.1} MB ({} samples); \
         machine Dirty: max {:.1} MB; writeback started up to {:.1} MB of {:.1} MB written{}",
        dirty.max_dirty as f64 * 4096.0 / 1e6,
        dirty.last_dirty as f64 * 4096.0 / 1e6,
        dirty.max_writeback as f64 * 4096.0 / 1e6,
        dirty.samples,
        dirty.max_machine_kb as f64 / 1e3,
        written_back as f64 / 1e6,
        (n * 262) as f64 / 1e6,
        if dirty.unsupported { " (cachestat not available)" } else { "" },
    );
    for (ns, at) in worst.iter().take(10) {
        println!("  {:.2} ms at {:.3} s", *ns as f64 / 1e6, at);
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Samples of the message file's page cache state and the machine's dirty memory.
#[derive(Default)]
struct DirtySamples {
    samples: u64,
    max_dirty: u64,
    last_dirty: u64,
    max_writeback: u64,
    max_machine_kb: u64,
    unsupported: bool,
}

impl DirtySamples {
    fn sample(&mut self, file: &std::fs::File) {
        // len 0: to the end of the file.
        match castle_gateway_fix::store::page_cache(file, 0) {
            None => self.unsupported = true,
            Some(st) => {
                self.max_dirty = self.max_dirty.max(st.dirty);
                self.last_dirty = st.dirty;
                self.max_writeback = self.max_writeback.max(st.writeback);
            }
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kb = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("Dirty:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        self.max_machine_kb = self.max_machine_kb.max(kb);
        self.samples += 1;
    }
}

/// Minor page faults of the calling thread so far.
fn thread_minor_faults() -> u64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage into a local.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    u.ru_minflt as u64
}
