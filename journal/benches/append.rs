//! Durable append throughput and commit latency, io_uring writer vs portable writer in the same
//! run, 64-byte payloads, group commit at batch sizes 1, 64, 1024, 8192.
//!
//! * `durable_throughput/<writer>/<batch>`: pipelined — append `batch` records, `submit()` (which
//!   first waits for the previous batch to be durable), repeat; elements/s = durable records/s.
//! * `commit_latency/<writer>/<batch>`: append `batch` records then `commit()` (submit + wait);
//!   the time per iteration is the latency of one group commit.
//!
//! Files go to `JOURNAL_BENCH_DIR` if set, else the target dir's tmp folder (on /work here, a
//! real ext4 disk; never tmpfs).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use castle_journal::{Journal, JournalOptions, WriterChoice};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const BATCHES: [usize; 4] = [1, 64, 1024, 8192];
const PAYLOAD: [u8; 64] = [0xAB; 64];

fn base_dir() -> PathBuf {
    std::env::var_os("JOURNAL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("journal-bench"))
}

fn open(writer: WriterChoice) -> (tempfile::TempDir, Journal) {
    let base = base_dir();
    std::fs::create_dir_all(&base).unwrap();
    let d = tempfile::tempdir_in(&base).unwrap();
    let mut o = JournalOptions::new(d.path());
    o.writer = writer;
    o.batch_capacity = 1 << 20; // 8192 x 92 B fits
    let (j, _) = Journal::open(o).unwrap();
    (d, j)
}

fn writers() -> Vec<(&'static str, WriterChoice)> {
    vec![("io_uring", WriterChoice::IoUring), ("portable", WriterChoice::Portable)]
}

fn durable_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_throughput");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for (name, w) in writers() {
        let (_d, mut j) = open(w);
        for batch in BATCHES {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..batch {
                            j.append(0, &PAYLOAD).unwrap();
                        }
                        j.submit().unwrap();
                    }
                    j.wait().unwrap();
                    let el = t.elapsed();
                    j.delete_segments_before(j.durable_seq()).unwrap();
                    el
                })
            });
        }
    }
    g.finish();
}

fn commit_latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit_latency");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for (name, w) in writers() {
        let (_d, mut j) = open(w);
        for batch in BATCHES {
            g.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter_custom(|iters| {
                    let mut el = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        for _ in 0..batch {
                            j.append(0, &PAYLOAD).unwrap();
                        }
                        j.commit().unwrap();
                        el += t.elapsed();
                    }
                    j.delete_segments_before(j.durable_seq()).unwrap();
                    el
                })
            });
        }
    }
    g.finish();
}

/// Replay speed: read 1M journaled 64-byte records (CRC + continuity checked) from the page cache.
fn replay(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let (d, mut j) = open(WriterChoice::Auto);
    for i in 0..N {
        if let Err(castle_journal::JournalError::BatchFull { .. }) = j.append(i, &PAYLOAD) {
            j.submit().unwrap();
            j.append(i, &PAYLOAD).unwrap();
        }
    }
    j.close().unwrap();
    let mut g = c.benchmark_group("replay");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(N));
    g.bench_function("reader_1M_records", |b| {
        b.iter(|| {
            let mut r = castle_journal::JournalReader::open(d.path(), 1).unwrap();
            let mut n = 0u64;
            let mut x = 0u64;
            while let Some(rec) = r.next_record().unwrap() {
                n += 1;
                x ^= rec.seq ^ rec.payload.len() as u64;
            }
            assert_eq!(n, N);
            x
        })
    });
    g.finish();
}

criterion_group!(benches, durable_throughput, commit_latency, replay);
criterion_main!(benches);
