//! Load generator: appends 64-byte records at a fixed rate for a few seconds and records, for
//! every record, the time from its scheduled append time to the moment it became durable
//! (open-loop schedule, so a stall is charged to every record that was due during it).
//!
//! The sequencer loop is the one the engine would run: append everything that is due, and
//! whenever no batch is in flight submit the pending batch (group commit sized by the disk).
//!
//! ```text
//! cargo run --release -p castle-journal --example loadgen -- \
//!     [--rate 1000000] [--secs 5] [--payload 64] [--writer both|io_uring|portable] [--dir DIR]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use castle_journal::{Journal, JournalError, JournalOptions, WriterChoice};
use hdrhistogram::Histogram;

struct Args {
    rate: u64,
    secs: u64,
    payload: usize,
    writers: Vec<WriterChoice>,
    dir: PathBuf,
}

fn parse() -> Args {
    let mut a = Args {
        rate: 1_000_000,
        secs: 5,
        payload: 64,
        writers: vec![WriterChoice::IoUring, WriterChoice::Portable],
        dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/journal-loadgen")),
    };
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        a.dir = PathBuf::from(t).join("journal-loadgen");
    }
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--rate" => a.rate = v.parse().expect("rate"),
            "--secs" => a.secs = v.parse().expect("secs"),
            "--payload" => a.payload = v.parse().expect("payload"),
            "--dir" => a.dir = v.into(),
            "--writer" => {
                a.writers = match v.as_str() {
                    "both" => vec![WriterChoice::IoUring, WriterChoice::Portable],
                    "io_uring" => vec![WriterChoice::IoUring],
                    "portable" => vec![WriterChoice::Portable],
                    _ => panic!("--writer both|io_uring|portable"),
                }
            }
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

fn run(a: &Args, w: WriterChoice) -> Result<(), JournalError> {
    std::fs::create_dir_all(&a.dir).expect("dir");
    let dir = tempfile::tempdir_in(&a.dir).expect("tempdir");
    let mut o = JournalOptions::new(dir.path());
    o.writer = w;
    o.batch_capacity = 8 << 20;
    let (mut j, rep) = Journal::open(o)?;
    let payload = vec![0x5Au8; a.payload];
    let first = rep.next_seq;
    let ns_per = 1e9 / a.rate as f64;
    let total = a.rate * a.secs;
    let mut hist = Histogram::<u64>::new_with_bounds(100, 60_000_000_000, 3).unwrap();
    let mut appended = 0u64; // records appended so far
    let mut acked = 0u64; // records durable so far
    let mut batches = 0u64;
    let start = Instant::now();
    let sched = |i: u64| (i as f64 * ns_per) as u64;
    while acked < total {
        let now = start.elapsed().as_nanos() as u64;
        // Append everything that is due.
        while appended < total && sched(appended) <= now {
            match j.append(sched(appended), &payload) {
                Ok(_) => appended += 1,
                Err(JournalError::BatchFull { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        // Completion.
        let durable = j.poll()?;
        let done = durable + 1 - first;
        if done > acked {
            let t = start.elapsed().as_nanos() as u64;
            for i in acked..done {
                hist.saturating_record(t.saturating_sub(sched(i)).max(100));
            }
            acked = done;
        }
        if !j.in_flight() && j.pending_records() > 0 {
            j.submit()?;
            batches += 1;
        } else {
            // Nothing to do: let the I/O threads (io-wq, jbd2, journal-io) have the core.
            std::thread::yield_now();
        }
    }
    let el = start.elapsed();
    let kind = j.writer_kind();
    let direct = j.direct_io();
    j.close()?;
    let us = |v: u64| v as f64 / 1000.0;
    println!(
        "{kind:<30} target {:>9}/s  durable {:>10.0}/s  batches {:>7} (avg {:>6.0} rec)  O_DIRECT {}  ack latency us: p50 {:>8.1}  p99 {:>8.1}  p99.9 {:>8.1}  max {:>8.1}",
        a.rate,
        total as f64 / el.as_secs_f64(),
        batches,
        total as f64 / batches.max(1) as f64,
        direct,
        us(hist.value_at_quantile(0.5)),
        us(hist.value_at_quantile(0.99)),
        us(hist.value_at_quantile(0.999)),
        us(hist.max()),
    );
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,castle_journal=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = parse();
    for &w in &a.writers {
        if let Err(e) = run(&a, w) {
            eprintln!("{w:?}: {e}");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
