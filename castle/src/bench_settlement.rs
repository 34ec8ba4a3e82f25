//! `castle bench settlement`: fills settled per second into PostgreSQL with fsync on
//! (binary COPY vs multi-row unnest vs one transaction per command, same run), SQLite for
//! reference, and settlement lag p50/p99/p99.9 at a steady fill rate.
//!
//! Without `--database-url` a throwaway PostgreSQL cluster is started (initdb + pg_ctl,
//! default settings: fsync on, synchronous_commit on).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use castle_link::EngineBatch;
use castle_settlement::testkit::{pg, FillStream, VecSource};
use castle_settlement::{consumer, ConsumerConfig, Metrics, PgConfig, PgStore, SqliteStore, Store, WriteMode};
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct SettlementBenchArgs {
    /// PostgreSQL server to create benchmark databases on (a throwaway cluster when absent).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Fills per batched throughput run.
    #[arg(long, default_value_t = 300_000)]
    pub fills: u64,
    /// Fills for the one-transaction-per-command baseline (slow).
    #[arg(long, default_value_t = 3_000)]
    pub baseline_fills: u64,
    /// Steady rate (fills/s) of the lag measurement.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// Seconds of the lag measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Flushes in flight (1-4) for the batched COPY run and the lag measurement.
    #[arg(long, default_value_t = ConsumerConfig::default().pipeline)]
    pub pipeline: usize,
    /// The consumer's flush interval in milliseconds (0: eager) for `copy` and `lag`.
    #[arg(long, default_value_t = ConsumerConfig::default().flush_interval.as_millis() as u64)]
    pub flush_interval_ms: u64,
    /// Entries + fills at which a flush stops growing (the consumer's `max_flush_rows`).
    #[arg(long, default_value_t = ConsumerConfig::default().max_flush_rows)]
    pub max_flush_rows: usize,
    /// Runs to do, in this order (comma-separated; default all, in the order of [`RUNS`]):
    /// reference, copy, copy-eager, copy-interval, copy-unprepared, copy-before, copy1, v3-pglz,
    /// v2-indexes, unnest, copy-v4, single, sqlite, lag, lag-eager, lag-interval, lag-unprepared,
    /// lag-before, lag-v4 (-eager: flush interval 0 and 2 in flight, the rule before settle9;
    /// -interval: 10 ms and 4 in flight; -unprepared: COPY statements parsed on every flush,
    /// as before settle9; copy-before: the write path before session settle5; copy-v4 / lag-v4:
    /// the version 4 history schema, account btrees instead of maps).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Start the throwaway cluster with PostgreSQL's default settings instead of the
    /// ledger's (testkit::pg::SERVER_SETTINGS), for comparison.
    #[arg(long)]
    pub pg_defaults: bool,
    /// Print, for every second of a lag run, the fills handed over and settled in it and the
    /// largest backlog seen (fills handed over but not yet committed, sampled every 10 ms):
    /// shows whether the tail is one stall or a stretch of too little throughput.
    #[arg(long)]
    pub timeline: bool,
    /// Seconds of traffic at the steady rate before a lag run's measurement starts (their
    /// lags are printed on their own line, not mixed into the steady-state percentiles): the
    /// consumer's first flushes connect, prepare statements and fault in caches.
    #[arg(long, default_value_t = 5)]
    pub warmup_seconds: u64,
    /// Keep the throwaway cluster's WAL as initdb leaves it (one segment) instead of filling
    /// its segment pool first (see [`preallocate_wal`]): measures a cold server, where
    /// every 16 MB of WAL first creates, zero-fills and fsyncs a new segment file.
    #[arg(long)]
    pub cold_wal: bool,
    /// A server setting of the throwaway cluster replaced (NAME=VALUE, repeatable), e.g. the
    /// settings before settle10: `--pg-set backend_flush_after=0 --pg-set min_wal_size=80MB`.
    #[arg(long = "pg-set", value_parser = parse_setting)]
    pub pg_set: Vec<(String, String)>,
    /// Stop the consumer of a lag run halfway through its measured seconds for this many
    /// seconds while fills keep arriving, then start a new one (it resumes from the stored
    /// seq), as after a crash or a deploy; prints how long it took to catch up. The lags of
    /// the outage are in the run's percentiles.
    #[arg(long, default_value_t = 0)]
    pub outage_seconds: u64,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || v.contains(char::is_whitespace) {
        return Err(format!("{s:?}: NAME is letters, digits and _, VALUE has no spaces"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The version 2 history indexes, recreated on a version 3 database: the same run's
/// measure of what version 3's index changes saved (a unique index on order_id stands for
/// the old primary key; the client order id lookup did not exist).
/// Since version 5 it starts from the version 4 history indexes ([`V4_HISTORY`]).
const V2_INDEXES: &str = "CREATE INDEX fills_maker_account ON fills (maker_account, trade_id); \
    CREATE INDEX fills_taker_account ON fills (taker_account, trade_id); \
    ALTER TABLE orders DROP CONSTRAINT orders_pkey, ADD CONSTRAINT orders_pkey PRIMARY KEY (account, order_id); \
    CREATE UNIQUE INDEX bench_orders_id ON orders (order_id); \
    CREATE INDEX bench_orders_instrument_ts ON orders (instrument, created_ts); \
    CREATE INDEX bench_fills_instrument_ts ON fills (instrument, ts); \
    DROP INDEX orders_client_order_id; DROP INDEX orders_created_ts; DROP INDEX fills_ts";

/// The version 3 journal compression (pglz) on a version 4 database: the same run's measure
/// of what LZ4 saved (everything else is the current write path).
const PGLZ_JOURNAL: &str = "ALTER TABLE ledger_journal ALTER COLUMN seq SET COMPRESSION pglz, \
    ALTER COLUMN idx SET COMPRESSION pglz, ALTER COLUMN ts SET COMPRESSION pglz, \
    ALTER COLUMN account SET COMPRESSION pglz, ALTER COLUMN asset SET COMPRESSION pglz, \
    ALTER COLUMN kind SET COMPRESSION pglz, ALTER COLUMN reference SET COMPRESSION pglz, \
    ALTER COLUMN available SET COMPRESSION pglz, ALTER COLUMN locked SET COMPRESSION pglz, \
    ALTER COLUMN external SET COMPRESSION pglz";

/// The version 4 history indexes on a version 5 database (written without history maps):
/// the same run's measure of what the version 5 maps saved.
const V4_HISTORY: &str = "CREATE INDEX fills_maker_account ON fills (maker_account, trade_id); \
    CREATE INDEX fills_taker_account ON fills (taker_account, trade_id); \
    ALTER TABLE orders DROP CONSTRAINT orders_pkey, ADD CONSTRAINT orders_pkey PRIMARY KEY (account, order_id)";

/// Every run, in the default order.
const RUNS: [&str; 19] = [
    "reference",
    "copy",
    "copy-eager",
    "copy-interval",
    "copy-unprepared",
    "copy-before",
    "copy1",
    "v3-pglz",
    "v2-indexes",
    "unnest",
    "copy-v4",
    "single",
    "sqlite",
    "lag",
    "lag-eager",
    "lag-interval",
    "lag-unprepared",
    "lag-before",
    "lag-v4",
];

/// Flush timing of a run: (pipeline depth, flush interval).
type Timing = (usize, Duration);

/// The rule before settle9: start a flush as soon as one of 2 slots is free.
const EAGER: Timing = (2, Duration::ZERO);
/// Gather for up to 10 ms, 4 in flight.
const INTERVAL: Timing = (4, Duration::from_millis(10));

/// Which write path a run measures (same-run comparisons).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Current,
    /// Before session settle5: orders written in order id order.
    Settle5,
    /// The version 4 history schema: account btrees on fills and orders, no history maps.
    V4,
    /// Before settle9: every COPY statement parsed again on every flush.
    Unprepared,
}

fn stream(seed: u64, fills: u64) -> (Vec<EngineBatch>, u64) {
    let (mut s, mut batches) = FillStream::new(seed);
    let before = s.fills;
    while s.fills - before < fills {
        batches.extend(s.round());
    }
    (batches, s.fills)
}

/// The stream of the throughput rows (built once, by the first row that needs it).
fn throughput_stream(a: &SettlementBenchArgs) -> (Vec<EngineBatch>, u64) {
    let s = stream(a.seed, a.fills);
    println!("stream: {} commands, {} fills", s.0.len(), s.1);
    s
}

async fn throughput<S: Store + Clone>(
    store: S,
    batches: &[EngineBatch],
    max_flush_rows: usize,
    (pipeline, flush_interval): Timing,
) -> Result<(f64, Arc<Metrics>, f64)> {
    let src = VecSource::default();
    for b in batches {
        src.push(b.clone());
    }
    let last = src.last_seq();
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = ConsumerConfig { max_flush_rows, pipeline, flush_interval, ..ConsumerConfig::default() };
    let (start, cpu0) = (Instant::now(), client_cpu());
    let task = tokio::spawn(consumer::run(store, src, cfg, metrics.clone(), stop_rx));
    while metrics.applied_seq.load(Relaxed) < last {
        anyhow::ensure!(!task.is_finished(), "the consumer stopped early");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (secs, cpu) = (start.elapsed().as_secs_f64(), client_cpu() - cpu0);
    let _ = stop_tx.send(true);
    task.await?.context("consumer")?;
    Ok((secs, metrics, cpu))
}

/// One line of where the flushes' time went: per stage p50/p99/p99.9 in ms.
fn stage_line(m: &Metrics) -> String {
    match m.stage_us.lock() {
        Ok(h) => format!("  flush stages p50/p99/p99.9 ms: {}", h.summary()),
        Err(_) => String::new(),
    }
}

/// `before`: an earlier write path (see [`Path`]), for same-run comparisons.
async fn pg_store(admin: &str, name: &str, mode: WriteMode, extra_sql: &str, before: Path) -> Result<PgStore> {
    let url = pg::create_database(admin, name).await.map_err(anyhow::Error::msg)?;
    let mut cfg = PgConfig::new(url.clone());
    cfg.mode = mode;
    let mut store = PgStore::connect(&cfg).await?;
    match before {
        Path::Current => {}
        Path::Settle5 => store = store.with_sorted_orders(false),
        Path::V4 => store = store.with_history_maps(false),
        Path::Unprepared => store = store.with_prepared_copies(false),
    }
    if !extra_sql.is_empty() {
        let (client, conn) = tokio_postgres_connect(&url).await?;
        client.batch_execute(extra_sql).await?;
        drop(client);
        let _ = conn.await;
    }
    Ok(store)
}

/// Bytes of WAL the server has written so far.
async fn wal_lsn(admin: &str) -> Result<i64> {
    let (client, conn) = tokio_postgres_connect(admin).await?;
    let r = client.query_one("SELECT (pg_current_wal_lsn() - '0/0')::int8", &[]).await?;
    drop(client);
    let _ = conn.await;
    Ok(r.get(0))
}

/// CPU seconds (user + system) of one process from `/proc/PID/stat`, with those of its
/// reaped children when `children` is set. `None` when it cannot be read.
fn proc_cpu(pid: u32, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), which ends at the last ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let mut ticks = field(14)? + field(15)?;
    if children {
        ticks += field(16)? + field(17)?;
    }
    Some(ticks as f64 / 100.0)
}

/// This process's CPU seconds (all threads): the consumer's side of a run.
fn client_cpu() -> f64 {
    proc_cpu(std::process::id(), false).unwrap_or(0.0)
}

/// CPU seconds of the PostgreSQL server when it runs on this machine: the postmaster, its
/// live children (backends, WAL writer, checkpointer...) and its exited ones. `None` for a
/// remote server or one whose data directory is not readable here.
async fn server_cpu(admin: &str) -> Option<f64> {
    let (client, conn) = tokio_postgres_connect(admin).await.ok()?;
    let dir: String = client.query_one("SHOW data_directory", &[]).await.ok()?.get(0);
    drop(client);
    let _ = conn.await;
    let pid: u32 =
        std::fs::read_to_string(format!("{dir}/postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()?;
    let mut total = proc_cpu(pid, true)?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += proc_cpu(child, false).unwrap_or(0.0);
        }
    }
    Some(total)
}

pub fn run(a: SettlementBenchArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let _cluster;
    let admin = match &a.database_url {
        Some(u) => u.clone(),
        None => {
            anyhow::ensure!(!a.pg_defaults || a.pg_set.is_empty(), "--pg-defaults and --pg-set exclude each other");
            let c = if a.pg_defaults {
                pg::PgCluster::start_with_defaults()
            } else {
                pg::PgCluster::start_with_overrides(&a.pg_set)
            }
            .map_err(anyhow::Error::msg)?;
            let u = c.url("postgres");
            _cluster = c;
            u
        }
    };
    rt.block_on(async move {
        let (client, conn) = tokio_postgres_connect(&admin).await?;
        let settings = {
            let mut out = Vec::new();
            for name in ["fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "wal_buffers", "min_wal_size", "max_wal_size", "checkpoint_timeout", "wal_compression", "backend_flush_after"] {
                let r = client.query_one("SELECT current_setting($1)", &[&name]).await?;
                out.push(format!("{name}={}", r.get::<_, String>(0)));
            }
            let v: String = client.query_one("SELECT version()", &[]).await?.get(0);
            format!("{} ({})", out.join(" "), v.split(" on ").next().unwrap_or(&v))
        };
        let pool = if a.database_url.is_none() && !a.cold_wal {
            let segments = preallocate_wal(&client).await?;
            format!("WAL pool preallocated ({segments} segments)")
        } else if a.database_url.is_none() {
            "cold WAL (--cold-wal)".to_string()
        } else {
            "WAL as the server has it".to_string()
        };
        drop(client);
        conn.abort();
        println!("settlement bench: {settings}; {pool}; machine shared with other builds, numbers are noisy");

        let order: Vec<&str> = if a.only.is_empty() { RUNS.to_vec() } else { a.only.iter().map(String::as_str).collect() };
        let mut copy_stream: Option<(Vec<EngineBatch>, u64)> = None;
        let mut results = Vec::new();
        let configured: Timing = (a.pipeline, Duration::from_millis(a.flush_interval_ms));
        for (run, name) in order.into_iter().enumerate() {
            let copy_row = match name {
                "copy" => Some(("postgres batched, binary COPY", WriteMode::Copy, configured, "", Path::Current)),
                "copy-eager" => Some(("postgres COPY, eager (0 ms, 2 in flight)", WriteMode::Copy, EAGER, "", Path::Current)),
                "copy-interval" => Some(("postgres COPY, 10 ms interval, 4 in flight", WriteMode::Copy, INTERVAL, "", Path::Current)),
                "copy-unprepared" => Some(("postgres COPY, statements parsed per flush", WriteMode::Copy, configured, "", Path::Unprepared)),
                "copy-before" => Some(("postgres COPY, write path before settle5", WriteMode::Copy, configured, "", Path::Settle5)),
                "copy1" => Some(("postgres batched, COPY, 1 in flight", WriteMode::Copy, (1, configured.1), "", Path::Current)),
                "v3-pglz" => Some(("postgres COPY, version 3 pglz journal", WriteMode::Copy, configured, PGLZ_JOURNAL, Path::Current)),
                "v2-indexes" => Some(("postgres COPY, version 2 indexes", WriteMode::Copy, configured, V2_INDEXES, Path::V4)),
                "unnest" => Some(("postgres batched, unnest", WriteMode::Unnest, configured, "", Path::Current)),
                "copy-v4" => Some(("postgres COPY, version 4 history btrees", WriteMode::Copy, configured, V4_HISTORY, Path::V4)),
                _ => None,
            };
            let lag_row = match name {
                "lag" => Some((Path::Current, "", configured)),
                "lag-eager" => Some((Path::Current, "", EAGER)),
                "lag-interval" => Some((Path::Current, "", INTERVAL)),
                "lag-unprepared" => Some((Path::Unprepared, "", configured)),
                "lag-before" => Some((Path::Settle5, "", configured)),
                "lag-v4" => Some((Path::V4, V4_HISTORY, configured)),
                _ => None,
            };
            if name == "reference" {
                let ceiling_url = pg::create_database(&admin, "castle_bench_ceiling").await.map_err(anyhow::Error::msg)?;
                let ceiling = castle_settlement::postgres::copy_ceiling(&ceiling_url, 1_000_000).await?;
                println!("{:<40} {ceiling:>10.0} rows/s  (binary COPY, 10 BIGINT columns, no index: this server now)", "reference");
            } else if let Some((label, mode, timing, extra, before)) = copy_row {
                let (batches, fills) = copy_stream.get_or_insert_with(|| throughput_stream(&a));
                let fills = *fills;
                let db = format!("castle_bench_run{run}");
                let s = pg_store(&admin, &db, mode, extra, before).await?;
                let wal0 = wal_lsn(&admin).await?;
                let srv0 = server_cpu(&admin).await;
                let (secs, metrics, cpu) = throughput(s, batches, a.max_flush_rows, timing).await?;
                let per_fill = |s: f64| s * 1e6 / fills as f64;
                let client = per_fill(cpu);
                let server = match (srv0, server_cpu(&admin).await) {
                    (Some(a), Some(b)) => format!("{:.1}", per_fill(b - a)),
                    _ => "?".into(),
                };
                let wal = (wal_lsn(&admin).await? - wal0) as f64 / fills as f64;
                let rate = fills as f64 / secs;
                println!(
                    "{label:<40} {rate:>10.0} fills/s  ({fills} fills in {secs:.2} s, {} transactions, {wal:.0} WAL bytes/fill, CPU us/fill: consumer {client:.1}, server {server})",
                    metrics.flushes.load(Relaxed)
                );
                println!("{}", stage_line(&metrics));
                results.push((label, rate));
            } else if name == "single" {
                let (base, base_fills) = stream(a.seed, a.baseline_fills);
                let s = pg_store(&admin, "castle_bench_single", WriteMode::Copy, "", Path::Current).await?;
                let (secs, metrics, _) = throughput(s, &base, 1, (1, Duration::ZERO)).await?;
                let base_rate = base_fills as f64 / secs;
                println!(
                    "{:<40} {base_rate:>10.0} fills/s  ({base_fills} fills in {secs:.2} s, {} transactions)",
                    "postgres one transaction per command",
                    metrics.flushes.load(Relaxed)
                );
                for (label, rate) in &results {
                    println!("  {label}: {:.0}x the one-transaction-per-command baseline", rate / base_rate);
                }
            } else if name == "sqlite" {
                let (batches, fills) = copy_stream.get_or_insert_with(|| throughput_stream(&a));
                let fills = *fills;
                let dir = tempfile::tempdir()?;
                let s = SqliteStore::open(dir.path().join("bench.sqlite"))?;
                let (secs, metrics, _) = throughput(s, batches, a.max_flush_rows, (1, configured.1)).await?;
                println!(
                    "{:<40} {:>10.0} fills/s  ({fills} fills in {secs:.2} s, {} transactions, synchronous=FULL)",
                    "sqlite batched",
                    fills as f64 / secs,
                    metrics.flushes.load(Relaxed)
                );
            } else if let Some((before, extra, (pipeline, flush_interval))) = lag_row {
                lag(&a, &admin, name, before, extra, pipeline, flush_interval).await?;
            } else {
                anyhow::bail!("unknown run {name:?} (runs: {})", RUNS.join(", "));
            }
        }
        anyhow::Ok(())
    })
}

/// Lag at a steady rate: batches stamped with the wall clock when handed over.
async fn lag(
    a: &SettlementBenchArgs,
    admin: &str,
    name: &str,
    before: Path,
    extra: &str,
    pipeline: usize,
    flush_interval: Duration,
) -> Result<()> {
    let s =
        pg_store(admin, &format!("castle_bench_{}", name.replace('-', "_")), WriteMode::Copy, extra, before).await?;
    let warmup = a.rate * a.warmup_seconds;
    let need = a.rate * a.seconds + warmup;
    let (lag_batches, _) = stream(a.seed + 1, need + 1_000);
    let src = VecSource::default();
    let metrics = Arc::new(Metrics::default());
    let (mut stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg =
        ConsumerConfig { pipeline, flush_interval, max_flush_rows: a.max_flush_rows, ..ConsumerConfig::default() };
    let mut task = tokio::spawn(consumer::run(s.clone(), src.clone(), cfg.clone(), metrics.clone(), stop_rx));
    let handed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = a.timeline.then(|| tokio::spawn(timeline(handed.clone(), metrics.clone(), a.rate)));
    let pacer = {
        let src = src.clone();
        let rate = a.rate;
        let handed = handed.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut sent = 0u64;
            let mut it = lag_batches.into_iter();
            while sent < need {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due.min(need) {
                    let Some(mut b) = it.next() else { return sent };
                    let now = castle_now();
                    b.ts = now;
                    for e in &mut b.events {
                        e.ts = now;
                    }
                    sent += b.events.iter().filter(|e| matches!(e.kind, castle_engine::EventKind::Trade { .. })).count()
                        as u64;
                    src.push(b);
                    handed.store(sent, Relaxed);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            sent
        })
    };
    // The warm-up's lags are reported apart: the histograms are taken and reset once the
    // pacer has handed over the warm-up's fills (fills handed over before and committed after
    // count in the measurement, with their whole lag).
    let warm = if warmup > 0 {
        while handed.load(Relaxed) < warmup && !pacer.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let lag = std::mem::replace(
            &mut *metrics.lag_us.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
            castle_settlement::metrics::micros_histogram(),
        );
        *metrics.stage_us.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Default::default();
        Some(lag)
    } else {
        None
    };
    let outage = if a.outage_seconds > 0 {
        let at = warmup + a.rate * a.seconds / 2;
        while handed.load(Relaxed) < at && !pacer.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = stop_tx.send(true);
        task.await?.context("consumer (stopped for the outage)")?;
        tokio::time::sleep(Duration::from_secs(a.outage_seconds)).await;
        let restarted = Instant::now();
        let owed = handed.load(Relaxed);
        let backlog = owed.saturating_sub(metrics.fills.load(Relaxed));
        let (tx, rx) = tokio::sync::watch::channel(false);
        stop_tx = tx;
        task = tokio::spawn(consumer::run(s.clone(), src.clone(), cfg, metrics.clone(), rx));
        // Caught up: everything handed over before the restart is settled, and the backlog
        // is back under what 20 ms of the rate brings (the steady state's p50 is ~8 ms).
        let steady = (a.rate / 50).max(1);
        while metrics.fills.load(Relaxed) < owed
            || handed.load(Relaxed).saturating_sub(metrics.fills.load(Relaxed)) >= steady
        {
            anyhow::ensure!(!task.is_finished(), "the restarted consumer stopped early");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Some((backlog, restarted.elapsed(), steady))
    } else {
        None
    };
    let sent =
        tokio::task::spawn_blocking(move || pacer.join()).await?.map_err(|_| anyhow::anyhow!("pacer panicked"))?;
    let last = src.last_seq();
    while metrics.applied_seq.load(Relaxed) < last {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = stop_tx.send(true);
    task.await?.context("consumer")?;
    if let Some(t) = sampler {
        t.abort();
    }
    if let Some(w) = warm {
        println!(
            "{name:<12} warm-up, first {} s at {} fills/s (not in the line below): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            a.warmup_seconds,
            a.rate,
            w.value_at_quantile(0.5) as f64 / 1e3,
            w.value_at_quantile(0.99) as f64 / 1e3,
            w.max() as f64 / 1e3
        );
    }
    if let Some((backlog, caught_up, steady)) = outage {
        println!(
            "{name:<12} outage: consumer stopped for {} s halfway; {backlog} fills waiting at the restart, caught up (all of them settled and the backlog under {steady} fills) {:.2} s after it: {:.0} fills/s settled meanwhile",
            a.outage_seconds,
            caught_up.as_secs_f64(),
            (backlog as f64 + a.rate as f64 * caught_up.as_secs_f64()) / caught_up.as_secs_f64().max(1e-9)
        );
    }
    let h = metrics.lag_us.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    println!(
        "{name:<12} at {} fills/s for {} s ({sent} fills incl. warm-up, {} transactions, {pipeline} in flight, interval {} ms): p50 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms",
        a.rate,
        a.seconds,
        metrics.flushes.load(Relaxed),
        flush_interval.as_millis(),
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3,
        h.max() as f64 / 1e3
    );
    println!("{}", stage_line(&metrics));
    Ok(())
}

/// Fills the throwaway cluster's WAL segment pool, as a server that has run through a
/// checkpoint cycle has it: a fresh cluster has one segment, and until the first checkpoints
/// recycle old ones, every 16 MB of WAL creates a new file, writes 16 MB of zeros into it and
/// fsyncs it while holding the WAL write lock. At 50k fills/s that is one new segment every
/// 0.35 s, which doubled the disk writes and kept the lag near 90 ms for the first ~45 s of
/// a run (measured, BENCHMARKS.md settle10). Switching segments on a tiny table creates them;
/// the checkpoint then keeps them for reuse (up to `max_wal_size`, at least `min_wal_size`).
/// Returns the number of segments in pg_wal afterwards.
async fn preallocate_wal(client: &tokio_postgres::Client) -> Result<i64> {
    let max: String = client.query_one("SELECT current_setting('max_wal_size')", &[]).await?.get(0);
    let target: i64 =
        client.query_one("SELECT pg_size_bytes($1) / pg_size_bytes('16MB')", &[&max]).await?.get::<_, i64>(0) + 8;
    client.batch_execute("CREATE TABLE IF NOT EXISTS castle_bench_wal_fill (x int)").await?;
    for _ in 0..target {
        client.batch_execute("INSERT INTO castle_bench_wal_fill VALUES (1); SELECT pg_switch_wal()").await?;
    }
    client.batch_execute("DROP TABLE castle_bench_wal_fill; CHECKPOINT").await?;
    Ok(client.query_one("SELECT count(*) FROM pg_ls_waldir()", &[]).await?.get(0))
}

/// `--timeline`: one line per second of a lag run (see [`SettlementBenchArgs::timeline`]).
/// The backlog is also shown as the time it represents at the steady rate.
async fn timeline(handed: Arc<std::sync::atomic::AtomicU64>, metrics: Arc<Metrics>, rate: u64) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut second, mut worst, mut handed0, mut settled0) = (1u64, 0u64, 0u64, 0u64);
    loop {
        tick.tick().await;
        let (h, s) = (handed.load(Relaxed), metrics.fills.load(Relaxed));
        worst = worst.max(h.saturating_sub(s));
        if start.elapsed() >= Duration::from_secs(second) {
            println!(
                "  t={second:>3}s handed {:>6} settled {:>6} max backlog {worst:>6} fills ({:>5.1} ms)",
                h - handed0,
                s - settled0,
                worst as f64 * 1e3 / rate.max(1) as f64
            );
            (second, worst, handed0, settled0) = (second + 1, 0, h, s);
        }
    }
}

fn castle_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

async fn tokio_postgres_connect(
    url: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>)> {
    let (client, conn) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.with_context(|| format!("connecting to {url}"))?;
    Ok((client, tokio::spawn(conn)))
}
