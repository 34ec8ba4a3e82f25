//! The archiver task: follows the engine stream from the sink's cursor,
//! encodes each command's events, and flushes when a flush is full or has
//! waited `linger`. It never slows matching: it is one more subscriber of a
//! bounded stream, and when the link drops it for being slow it subscribes
//! again after the last command it holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use castle_engine::Seq;
use castle_link::{EngineBatch, EngineLink};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::chunk::{Chunker, Flush, Limits};
use crate::dir::DirSink;
use crate::kinesis::KinesisSink;
use crate::record::{adds_instrument, encode_batch, Symbols};
use crate::ArchiveError;

#[derive(Clone, Debug)]
pub struct ArchiverConfig {
    /// The engine shard (instrument group) this stream belongs to: the `shard` column.
    pub shard: String,
    pub limits: Limits,
    /// How long the first command of a flush may wait for company.
    pub linger: Duration,
    /// Capacity of the subscription channel (batches).
    pub queue: usize,
}

impl Default for ArchiverConfig {
    fn default() -> Self {
        Self { shard: "a".into(), limits: Limits::KINESIS, linger: Duration::from_millis(200), queue: 8192 }
    }
}

pub enum Sink {
    Dir(Box<DirSink>),
    Kinesis(Box<KinesisSink>),
}

impl Sink {
    pub fn cursor_seq(&self) -> Seq {
        match self {
            Sink::Dir(s) => s.cursor().seq,
            Sink::Kinesis(s) => s.cursor().seq,
        }
    }

    /// Writes one flush; the local sink's blocking file I/O runs off the async workers.
    async fn put(self, flush: Arc<Flush>) -> (Self, Result<(), ArchiveError>) {
        match self {
            Sink::Dir(mut s) => {
                match tokio::task::spawn_blocking(move || {
                    let r = s.put(&flush);
                    (s, r)
                })
                .await
                {
                    Ok((s, r)) => (Sink::Dir(s), r),
                    Err(e) => panic!("archive writer thread: {e}"),
                }
            }
            Sink::Kinesis(mut s) => {
                let r = s.put(&flush).await;
                (Sink::Kinesis(s), r)
            }
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default, Debug)]
pub struct Stats {
    pub archived_seq: AtomicU64,
    pub seen_seq: AtomicU64,
    pub events: AtomicU64,
    pub flushes: AtomicU64,
    pub errors: AtomicU64,
}

impl Stats {
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let archived = self.archived_seq.load(Ordering::Relaxed);
        let seen = self.seen_seq.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP castle_archive_seq Last engine sequence number the archive holds durably.");
        let _ = writeln!(out, "# TYPE castle_archive_seq gauge\ncastle_archive_seq {archived}");
        let _ = writeln!(out, "# HELP castle_archive_lag Commands received from the engine but not yet archived.");
        let _ = writeln!(out, "# TYPE castle_archive_lag gauge\ncastle_archive_lag {}", seen.saturating_sub(archived));
        for (name, v, help) in [
            ("events", &self.events, "Events archived."),
            ("flushes", &self.flushes, "Flushes written to the sink."),
            ("errors", &self.errors, "Failed flush attempts (retried)."),
        ] {
            let _ = writeln!(out, "# HELP castle_archive_{name}_total {help}");
            let _ = writeln!(out, "# TYPE castle_archive_{name}_total counter");
            let _ = writeln!(out, "castle_archive_{name}_total {}", v.load(Ordering::Relaxed));
        }
    }
}

/// Writes a flush, retrying with capped backoff while the sink fails; gives up only when asked to stop.
async fn flush(
    sink: &mut Option<Sink>,
    chunker: &mut Chunker,
    stats: &Stats,
    stop: &watch::Receiver<bool>,
) -> Result<(), ArchiveError> {
    let Some(f) = chunker.take() else { return Ok(()) };
    let f = Arc::new(f);
    let mut backoff = Duration::from_millis(50);
    loop {
        let (s, r) = sink.take().expect("sink present between flushes").put(f.clone()).await;
        *sink = Some(s);
        match r {
            Ok(()) => {
                stats.archived_seq.store(f.last_seq, Ordering::Relaxed);
                stats.events.fetch_add(f.events as u64, Ordering::Relaxed);
                stats.flushes.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if *stop.borrow() {
                    return Err(e);
                }
                tracing::error!(error = %e, first = f.first_seq, last = f.last_seq, "archive flush failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Runs until `stop` turns true (then flushes what it holds) or the engine stops.
pub async fn run(
    link: Arc<dyn EngineLink>,
    sink: Sink,
    cfg: ArchiverConfig,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ArchiveError> {
    let mut last = sink.cursor_seq();
    stats.archived_seq.store(last, Ordering::Relaxed);
    stats.seen_seq.store(last, Ordering::Relaxed);
    let mut sink = Some(sink);
    let mut rx = link.subscribe_after(last, cfg.queue).map_err(ArchiveError::Link)?;
    let mut symbols = Symbols::from_specs(&link.instruments());
    let mut chunker = Chunker::new(cfg.limits);
    let mut lines = Vec::with_capacity(64 << 10);
    let mut deadline: Option<Instant> = None;
    tracing::info!(after = last, shard = %cfg.shard, "archive: following the engine stream");
    loop {
        let batch: Option<Arc<EngineBatch>> = tokio::select! {
            biased;
            _ = stop.changed() => {
                return flush(&mut sink, &mut chunker, &stats, &stop).await;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                deadline = None;
                flush(&mut sink, &mut chunker, &stats, &stop).await?;
                continue;
            }
            b = rx.recv() => b,
        };
        let Some(batch) = batch else {
            // Dropped by the link (too slow) or the engine stopped: keep what we hold, ask again after it.
            flush(&mut sink, &mut chunker, &stats, &stop).await?;
            deadline = None;
            match link.subscribe_after(last, cfg.queue) {
                Ok(r) => {
                    tracing::warn!(after = last, "archive: stream ended; subscribed again");
                    rx = r;
                    continue;
                }
                Err(castle_link::LinkError::Stopped) => return Ok(()),
                Err(e) => return Err(ArchiveError::Link(e)),
            }
        };
        if batch.seq <= last {
            continue; // already held (a resubscription may repeat the edge)
        }
        // Seqs rise but may skip: commands without events (time ticks) are not published.
        last = batch.seq;
        stats.seen_seq.store(last, Ordering::Relaxed);
        if adds_instrument(&batch, &symbols) {
            symbols.refresh(&link.instruments());
        }
        lines.clear();
        let events = encode_batch(&cfg.shard, &symbols, &batch, &mut lines);
        if !chunker.fits(&lines) {
            flush(&mut sink, &mut chunker, &stats, &stop).await?;
            deadline = None;
        }
        chunker.push(batch.seq, batch.ts, &lines, events);
        if deadline.is_none() {
            deadline = Some(Instant::now() + cfg.linger);
        }
    }
}
