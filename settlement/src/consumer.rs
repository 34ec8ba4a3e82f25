//! The settlement consumer: engine batches in, ledger transactions out, exactly once.
//!
//! Resume point: the applied seq stored in the ledger. The consumer loads it with the
//! balances and open orders, opens the stream after it, projects batches and commits them
//! in flushes (each one transaction with a compare-and-set on the applied seq). One flush
//! is in flight while the next is being projected; a flush grows while the previous one
//! commits (up to `max_flush_rows`), so throughput is not bound by one commit per fill.
//! On any transient failure (database down, stream lost, compare-and-set conflict) the
//! in-memory state is dropped and rebuilt from the database: a batch is never applied twice
//! (the compare-and-set refuses it) and never skipped (the stream reopens after the stored seq).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::ledger::Flush;
use crate::metrics::Metrics;
use crate::projector::{ProjectError, Projector};
use crate::source::{Source, SourceError};
use crate::store::{Store, StoreError};

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Entries + fills at which a flush stops growing (bounds memory and transaction size).
    pub max_flush_rows: usize,
    /// Capacity (batches) of the stream channel.
    pub channel: usize,
    /// Wait before reloading after a transient failure.
    pub retry: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig { max_flush_rows: 100_000, channel: 65_536, retry: Duration::from_millis(200) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The engine stream broke the ledger's rules: stop and alert, never write it.
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("the engine stream ended")]
    StreamEnded,
}

impl ConsumerError {
    pub fn is_transient(&self) -> bool {
        match self {
            ConsumerError::Store(e) => e.is_transient(),
            ConsumerError::Source(SourceError::Connect { .. }) | ConsumerError::StreamEnded => true,
            ConsumerError::Source(SourceError::Link(castle_link::LinkError::Busy)) => true,
            _ => false,
        }
    }
}

/// Runs until `shutdown` turns true (Ok) or a non-transient error (Err). Transient errors
/// are logged, counted in `retries`, and followed by a reload.
pub async fn run<S: Store + Clone>(
    store: S,
    source: impl Source,
    cfg: ConsumerConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        match run_once(&store, &source, &cfg, &metrics, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => {
                metrics.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "settlement: reloading from the ledger");
                tokio::select! {
                    _ = tokio::time::sleep(cfg.retry) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "settlement stopped");
                return Err(e);
            }
        }
    }
}

type Inflight = tokio::task::JoinHandle<Result<Arc<Flush>, StoreError>>;

async fn finish(h: Inflight, metrics: &Metrics) -> Result<(), ConsumerError> {
    let f = h.await.map_err(|e| StoreError::Config(format!("flush task: {e}")))??;
    metrics.committed(&f);
    Ok(())
}

async fn run_once<S: Store + Clone>(
    store: &S,
    source: &impl Source,
    cfg: &ConsumerConfig,
    metrics: &Arc<Metrics>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let state = store.load().await?;
    let mut proj = Projector::new(state);
    metrics.applied_seq.store(proj.seq(), Ordering::Relaxed);
    tracing::info!(backend = store.backend(), applied_seq = proj.seq(), "settlement resuming");
    let mut rx = source.open(proj.seq(), cfg.channel, metrics)?;
    let mut inflight: Option<Inflight> = None;
    let mut ended = false;
    loop {
        let room = proj.pending_rows() < cfg.max_flush_rows;
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                // Commit what is in flight; the rest is re-read from the stream next time.
                if let Some(h) = inflight.take() {
                    finish(h, metrics).await?;
                }
                return Ok(());
            }
            r = async { inflight.as_mut().expect("guarded").await }, if inflight.is_some() => {
                inflight = None;
                let f = r.map_err(|e| StoreError::Config(format!("flush task: {e}")))??;
                metrics.committed(&f);
            }
            b = rx.recv(), if !ended && room => match b {
                Some(b) => {
                    metrics.saw_engine_seq(b.seq);
                    proj.project(&b)?;
                    // Take what is already queued, without waiting.
                    while proj.pending_rows() < cfg.max_flush_rows {
                        match rx.try_recv() {
                            Ok(b) => {
                                metrics.saw_engine_seq(b.seq);
                                proj.project(&b)?;
                            }
                            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                                ended = true;
                                break;
                            }
                        }
                    }
                }
                None => ended = true,
            },
        }
        if inflight.is_none() {
            if let Some(f) = proj.take_flush() {
                let f = Arc::new(f);
                let s = store.clone();
                inflight = Some(tokio::spawn(async move { s.apply(f.clone()).await.map(|()| f) }));
            } else if ended {
                return Err(ConsumerError::StreamEnded);
            }
        }
    }
}
