//! Settlement inside `castle serve`: the consumer runs in process on the in-process engine
//! link, into `<data-dir>/settlement.sqlite` (or the ledger named by `CASTLE_SETTLEMENT_DB`,
//! e.g. a `postgres://` URL). Its metrics (lag, counters, flush stages) are part of
//! `castle serve`'s `/metrics`; `CASTLE_SETTLEMENT_METRICS=ADDR` also serves them alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use castle_link::{EngineLink, LinkError};
use castle_settlement::{consumer, AnyStore, ConsumerConfig, LedgerUrl, LinkSource, Metrics, PgConfig, Store};
use tokio::sync::watch;

/// The ledger `castle serve` uses (also what a gateway reading history should open).
pub fn ledger_url(data_dir: &Path) -> LedgerUrl {
    match std::env::var("CASTLE_SETTLEMENT_DB") {
        Ok(u) if !u.is_empty() => LedgerUrl::parse(&u),
        _ => LedgerUrl::Sqlite(data_dir.join("settlement.sqlite")),
    }
}

pub struct Settlement {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), castle_settlement::ConsumerError>>,
}

async fn open(url: &LedgerUrl) -> Result<AnyStore> {
    AnyStore::open(url, PgConfig::new).await.context("opening the settlement ledger")
}

/// The in-process engine is not journaled yet: after a restart it begins again at seq 0 and
/// cannot resume a ledger from an earlier run. Such a ledger file is set aside (renamed,
/// never deleted) and a new one started.
async fn open_resumable(url: &LedgerUrl, link: &Arc<dyn EngineLink>) -> Result<AnyStore> {
    let store = open(url).await?;
    let applied = store.applied_seq().await?;
    match link.subscribe_after(applied, 1) {
        Ok(_) => Ok(store),
        Err(LinkError::CannotResume(_)) => {
            let LedgerUrl::Sqlite(path) = url else {
                anyhow::bail!("the settlement ledger is at seq {applied}, which this engine cannot resume from")
            };
            drop(store);
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            for suffix in ["", "-wal", "-shm"] {
                let from = PathBuf::from(format!("{}{suffix}", path.display()));
                if from.exists() {
                    let to = PathBuf::from(format!("{}.stale-{stamp}{suffix}", path.display()));
                    std::fs::rename(&from, &to).with_context(|| format!("moving {}", from.display()))?;
                }
            }
            tracing::warn!(
                ledger = %path.display(),
                applied,
                "the in-process engine restarted from seq 0; the old ledger was renamed *.stale-{stamp} and a new one started"
            );
            open(url).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts the consumer on `link`. Call [`Settlement::stop`] at shutdown.
pub async fn start(
    data_dir: &Path,
    link: Arc<dyn EngineLink>,
    registry: &crate::metrics::Metrics,
) -> Result<Settlement> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let url = ledger_url(data_dir);
    let store = open_resumable(&url, &link).await?;
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    registry.register(move |out: &mut String| out.push_str(&m.render()));
    if let Ok(addr) = std::env::var("CASTLE_SETTLEMENT_METRICS") {
        let l = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
        println!("settlement metrics on http://{}/metrics", l.local_addr()?);
        tokio::spawn(castle_settlement::metrics::serve_metrics(l, metrics.clone()));
    }
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(consumer::run(store, LinkSource(link), ConsumerConfig::default(), metrics.clone(), rx));
    let at = match &url {
        LedgerUrl::Sqlite(p) => p.display().to_string(),
        LedgerUrl::Postgres(_) => "PostgreSQL (CASTLE_SETTLEMENT_DB)".to_string(),
    };
    println!("settlement ledger: {at}");
    Ok(Settlement { stop, task })
}

impl Settlement {
    /// Commits what is in flight and stops.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("settlement task")?.context("settlement")?;
        Ok(())
    }
}
