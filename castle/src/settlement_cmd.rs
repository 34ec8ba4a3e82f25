//! `castle settlement` (the ledger consumer as its own process) and `castle reconcile`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use castle_engine::Limits;
use castle_settlement::{
    consumer, reconcile, AnyStore, ConsumerConfig, EngineView, LedgerUrl, Metrics, PgConfig, Store, TcpSource,
    WriteMode,
};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// Binary COPY for entries and fills (faster; see BENCHMARKS.md).
    Copy,
    /// Multi-row INSERT ... SELECT FROM unnest(...).
    Unnest,
}

/// Where the ledger is: shared by `settlement` and `reconcile`.
#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// `postgres://user@host:port/db?sslmode=require` for PostgreSQL/Aurora, else an SQLite file path.
    #[arg(long, env = "DATABASE_URL", default_value = "var/settlement.sqlite")]
    pub database_url: String,
    /// Extra CA certificate (PEM) for TLS to PostgreSQL (e.g. the RDS bundle); used when sslmode is not disable.
    #[arg(long)]
    pub database_ca: Option<PathBuf>,
    /// PostgreSQL connection pool size.
    #[arg(long, default_value_t = 4)]
    pub pool: usize,
    #[arg(long, value_enum, default_value = "copy")]
    pub write_mode: Mode,
}

impl LedgerArgs {
    pub async fn open(&self) -> Result<AnyStore> {
        let url = LedgerUrl::parse(&self.database_url);
        if let LedgerUrl::Sqlite(p) = &url {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        AnyStore::open(&url, |u| PgConfig {
            url: u,
            ca_file: self.database_ca.clone(),
            pool_size: self.pool,
            mode: match self.write_mode {
                Mode::Copy => WriteMode::Copy,
                Mode::Unnest => WriteMode::Unnest,
            },
        })
        .await
        .context("opening the ledger")
    }
}

#[derive(Args, Debug)]
pub struct SettlementArgs {
    /// Engine server (`castle engine`) to subscribe to.
    #[arg(long, env = "CASTLE_ENGINE")]
    pub engine: String,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Serve Prometheus metrics (lag, counters) on this address at /metrics (any GET path
    /// answers, so it is also the Kubernetes probe).
    #[arg(long, env = "CASTLE_METRICS_LISTEN")]
    pub metrics: Option<String>,
    /// Largest flush (entries + fills) per database transaction.
    #[arg(long, default_value_t = 100_000)]
    pub max_flush_rows: usize,
    /// Flushes in flight at once (1-4; each needs a pooled connection, see --pool-size).
    #[arg(long, default_value_t = ConsumerConfig::default().pipeline)]
    pub pipeline: usize,
    /// How long a flush may gather batches before it starts, in ms (0: start as soon as a
    /// pipeline slot is free).
    #[arg(long, default_value_t = ConsumerConfig::default().flush_interval.as_millis() as u64)]
    pub flush_interval_ms: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("castle-settlement")
        .build()
        .context("starting the tokio runtime")
}

pub fn run_settlement(a: SettlementArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let store = a.ledger.open().await?;
        let metrics = Arc::new(Metrics::default());
        if let Some(addr) = &a.metrics {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            println!("castle settlement metrics on http://{}/metrics", l.local_addr()?);
            tokio::spawn(castle_settlement::metrics::serve_metrics(l, metrics.clone()));
        }
        let applied = store.applied_seq().await?;
        // Tests and scripts read this line.
        println!("castle settlement running: {} ledger at seq {applied}, engine {}", store.backend(), a.engine);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let cfg = ConsumerConfig {
            max_flush_rows: a.max_flush_rows,
            pipeline: a.pipeline,
            flush_interval: std::time::Duration::from_millis(a.flush_interval_ms),
            ..ConsumerConfig::default()
        };
        let task =
            tokio::spawn(consumer::run(store, TcpSource { addr: a.engine.clone() }, cfg, metrics.clone(), stop_rx));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop_tx.send(true);
        task.await.context("settlement task")?.context("settlement consumer")?;
        println!("castle settlement stopped at seq {}", metrics.applied_seq.load(std::sync::atomic::Ordering::Relaxed));
        Ok(())
    })
}

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The engine's journal directory; it is replayed up to the ledger's applied seq (stop the
    /// engine or point at a copy: the journal must not be written meanwhile).
    #[arg(long, required_unless_present = "engine", conflicts_with = "engine")]
    pub journal: Option<PathBuf>,
    /// Or a running engine server: its event stream is folded from seq 1 to the ledger's seq.
    #[arg(long)]
    pub engine: Option<String>,
}

/// Exit code 0 when clean, 1 on any difference (each printed).
pub fn run_reconcile(a: ReconcileArgs) -> Result<()> {
    let report = runtime()?.block_on(async move {
        let store = a.ledger.open().await?;
        let seq = store.applied_seq().await?;
        let view = match (a.journal.clone(), a.engine.clone()) {
            (Some(dir), _) => {
                let shown = dir.display().to_string();
                // The engine server runs with the default limits; the replay must use the same.
                tokio::task::spawn_blocking(move || EngineView::from_journal(&dir, Limits::default(), seq))
                    .await?
                    .with_context(|| format!("replaying {shown} to seq {seq}"))?
            }
            (None, Some(addr)) => tokio::task::spawn_blocking(move || EngineView::from_engine_stream(&addr, seq))
                .await?
                .context("reading the engine's stream")?,
            (None, None) => anyhow::bail!("give --journal DIR or --engine ADDR"),
        };
        anyhow::Ok(reconcile(&store, &view).await?)
    })?;
    for d in &report.differences {
        println!("DIFF {d}");
    }
    println!(
        "reconcile: ledger seq {}, {} balances, {} fills: {}",
        report.ledger_seq,
        report.pairs_checked,
        report.fills,
        if report.clean() { "clean".to_string() } else { format!("{} difference(s)", report.differences.len()) }
    );
    if !report.clean() {
        std::process::exit(1);
    }
    Ok(())
}
