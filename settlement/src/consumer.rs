//! The settlement consumer: engine batches in, ledger transactions out, exactly once.
//!
//! Resume point: the applied seq stored in the ledger. The consumer loads it with the
//! balances and open orders, opens the stream after it, projects batches and commits them
//! in flushes (each one transaction with a compare-and-set on the applied seq). Up to
//! `pipeline` flushes are in flight while the next is being projected; each one's
//! compare-and-set waits for the commit of the one before ([`Store::apply_after`]), so they
//! commit in order. A flush grows while the previous ones commit (up to `max_flush_rows`),
//! so throughput is not bound by one commit per fill.
//! On any transient failure (database down, stream lost, compare-and-set conflict) the
//! in-flight flushes are awaited, the in-memory state is dropped and rebuilt from the
//! database: a batch is never applied twice (the compare-and-set refuses it) and never
//! skipped (the stream reopens after the stored seq).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::ledger::Flush;
use crate::metrics::Metrics;
use crate::projector::{ProjectError, Projector};
use crate::source::{Source, SourceError};
use crate::store::{FlushStages, Store, StoreError};

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Entries + fills at which a flush stops growing (bounds memory and transaction size).
    pub max_flush_rows: usize,
    /// Capacity (batches) of the stream channel.
    pub channel: usize,
    /// Wait before reloading after a transient failure.
    pub retry: Duration,
    /// Flushes in flight at once (1 to 4). With 2, the next flush writes its own rows while
    /// the previous one settles and commits; their compare-and-sets stay in order.
    pub pipeline: usize,
    /// How long a flush may gather batches before it starts: a flush starts once a pipeline
    /// slot is free and its first batch has waited this long (or it is full, or the stream
    /// ended). Zero: start as soon as a slot is free (eager). Fewer, larger transactions
    /// lower the fixed cost per fill; a flush never waits longer than this for the timer.
    pub flush_interval: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_flush_rows: 100_000,
            channel: 65_536,
            retry: Duration::from_millis(200),
            pipeline: 2,
            flush_interval: Duration::ZERO,
        }
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

/// A flush's outcome: the flush, the time its first batch was queued before it started,
/// and the backend's stages.
type Done = (Arc<Flush>, Duration, FlushStages);
type Inflight = tokio::task::JoinHandle<Result<Done, StoreError>>;

/// The flushes in flight, oldest first; each one's commit gates the next one's.
struct Pipeline {
    tasks: VecDeque<Inflight>,
    /// Resolves with whether the newest in-flight flush committed.
    newest: Option<oneshot::Receiver<bool>>,
}

impl Pipeline {
    fn start<S: Store + Clone>(&mut self, store: &S, f: Flush, queued: Duration) {
        let f = Arc::new(f);
        let s = store.clone();
        let (done_tx, done_rx) = oneshot::channel();
        let before = self.newest.replace(done_rx);
        self.tasks.push_back(tokio::spawn(async move {
            let previous = async move {
                match before {
                    None => Ok(()),
                    Some(rx) => match rx.await {
                        Ok(true) => Ok(()),
                        _ => Err(StoreError::PreviousFailed),
                    },
                }
            };
            let r = s.apply_after(f.clone(), previous).await;
            let _ = done_tx.send(r.is_ok());
            r.map(|stages| (f, queued, stages))
        }));
    }

    /// The oldest flush's outcome, once it is done.
    fn done(
        &mut self,
        r: Result<Result<Done, StoreError>, tokio::task::JoinError>,
        metrics: &Metrics,
    ) -> Result<(), ConsumerError> {
        self.tasks.pop_front();
        if self.tasks.is_empty() {
            self.newest = None;
        }
        let (f, queued, stages) = r.map_err(|e| StoreError::Config(format!("flush task: {e}")))??;
        metrics.committed(&f);
        metrics.stages(queued, &stages);
        Ok(())
    }

    /// Waits for every flush in flight, in order; the first error is returned after all ended
    /// (none can commit after a failed one: each waits for the one before).
    async fn drain(&mut self, metrics: &Metrics) -> Result<(), ConsumerError> {
        let mut first = Ok(());
        while let Some(h) = self.tasks.front_mut() {
            let r = h.await;
            let r = self.done(r, metrics);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
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
    let mut inflight = Pipeline { tasks: VecDeque::new(), newest: None };
    let depth = cfg.pipeline.clamp(1, 4);
    let mut ended = false;
    // When the first batch of the pending flush arrived (None: nothing pending).
    let mut pending_since: Option<Instant> = None;
    loop {
        let room = proj.pending_rows() < cfg.max_flush_rows;
        // The pending flush waits for the interval only while a slot is free for it.
        let deadline = match pending_since {
            Some(t) if inflight.tasks.len() < depth && room && !ended => Some(t + cfg.flush_interval),
            _ => None,
        };
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                // Commit what is in flight; the rest is re-read from the stream next time.
                return inflight.drain(metrics).await;
            }
            r = async { inflight.tasks.front_mut().expect("guarded").await }, if !inflight.tasks.is_empty() => {
                if let Err(e) = inflight.done(r, metrics) {
                    let _ = inflight.drain(metrics).await;
                    return Err(e);
                }
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some_and(|d| d > Instant::now()) => {}
            b = rx.recv(), if !ended && room => match b {
                Some(b) => {
                    pending_since.get_or_insert_with(Instant::now);
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
        if inflight.tasks.len() < depth {
            let now = Instant::now();
            let due = match pending_since {
                Some(t) => ended || proj.pending_rows() >= cfg.max_flush_rows || now >= t + cfg.flush_interval,
                None => false,
            };
            if due {
                if let Some(f) = proj.take_flush() {
                    let queued = pending_since.take().map(|t| now - t).unwrap_or_default();
                    inflight.start(store, f, queued);
                } else {
                    pending_since = None;
                }
            } else if ended && pending_since.is_none() && inflight.tasks.is_empty() {
                return Err(ConsumerError::StreamEnded);
            }
        }
    }
}
