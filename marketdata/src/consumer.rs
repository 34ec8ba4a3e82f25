//! A resumable consumer of the engine stream that can never slow matching.
//!
//! The in-process engine hands batches to its subscribers with a blocking
//! send (so a subscriber never loses an event), which means a subscriber
//! whose channel is full stalls the engine. Market data must never do that.
//! So a consumer is split in two:
//!
//! - a *forwarder* task on the tokio runtime whose only work per batch is a
//!   `try_send` of an `Arc` into a bounded queue: it drains the link's
//!   channel as fast as the engine fills it;
//! - a *worker* thread that does the real work ([`StreamSink`]) from that
//!   queue, as slowly as it must.
//!
//! When the queue is full the forwarder drops its subscription (the engine
//! stops sending to it and carries on), waits until the worker has processed
//! everything it was given, and subscribes again with
//! `subscribe_after(last forwarded seq)`: the engine's history (or journal)
//! fills the hole, so the worker still sees every batch exactly once and in
//! order, only later. Only if the link can no longer resume (its history was
//! overwritten while the worker was behind) is anything lost; that is
//! reported loudly ([`ConsumerStats::lost`], an error log), never papered over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use castle_engine::Seq;
use castle_link::{EngineBatch, EngineLink, LinkError};

/// What a consumer does with the stream.
pub trait StreamSink: Send + 'static {
    /// One engine command's events; called for every batch after the start
    /// sequence, exactly once each, in sequence order.
    fn on_batch(&mut self, batch: &EngineBatch);
    /// Called when no batch arrived for [`ConsumerConfig::idle`] (timers, flushes).
    fn on_idle(&mut self) {}
    /// Called once when the consumer stops.
    fn on_stop(&mut self) {}
}

#[derive(Clone, Copy, Debug)]
pub struct ConsumerConfig {
    /// Bound of the queue between the forwarder and the worker, in batches.
    pub queue: usize,
    /// Capacity asked of the link for its channel (the forwarder keeps it near empty).
    pub link_capacity: usize,
    /// How long the worker waits for a batch before calling `on_idle`.
    pub idle: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig { queue: 8_192, link_capacity: 1_024, idle: Duration::from_millis(50) }
    }
}

/// Counters shared with whoever reports on the consumer (metrics, tests).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Engine seq of the last batch the worker finished.
    pub processed: AtomicU64,
    /// Engine seq of the last batch put into the queue.
    pub forwarded: AtomicU64,
    /// Times the queue overflowed and the consumer resubscribed.
    pub resubscribes: AtomicU64,
    /// Set when the link could not resume: the derived state missed events.
    pub lost: AtomicBool,
    /// Set when the stream ended (engine stopped or consumer shut down).
    pub stopped: AtomicBool,
}

/// A running consumer; [`Consumer::shutdown`] stops it after the batches already queued.
pub struct Consumer {
    stop: Arc<tokio::sync::Notify>,
    worker: Option<JoinHandle<()>>,
    pub stats: Arc<ConsumerStats>,
}

impl Consumer {
    /// Starts consuming every batch after `after` (0: from the beginning of
    /// the link's history). The forwarder runs on `rt`; the worker gets its own thread.
    pub fn start(
        name: &str,
        link: Arc<dyn EngineLink>,
        after: Seq,
        cfg: ConsumerConfig,
        sink: impl StreamSink,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<Consumer> {
        let stats = Arc::new(ConsumerStats::default());
        stats.processed.store(after, Ordering::Relaxed);
        stats.forwarded.store(after, Ordering::Relaxed);
        let (qtx, qrx) = sync_channel::<Arc<EngineBatch>>(cfg.queue.max(1));
        let drained = Arc::new(tokio::sync::Notify::new());
        let stop = Arc::new(tokio::sync::Notify::new());
        let worker = {
            let (stats, drained) = (stats.clone(), drained.clone());
            std::thread::Builder::new()
                .name(format!("md-{name}"))
                .spawn(move || worker_loop(qrx, sink, cfg.idle, &stats, &drained))?
        };
        let (stats2, stop2, name) = (stats.clone(), stop.clone(), name.to_string());
        rt.spawn(async move {
            tokio::select! {
                _ = stop2.notified() => {}
                _ = forward(&name, link, cfg, qtx, &stats2, &drained) => {}
            }
            // Dropping the queue's sender here lets the worker finish what is queued and stop.
        });
        Ok(Consumer { stop, worker: Some(worker), stats })
    }

    /// Stops forwarding, lets the worker finish the queued batches, and waits for it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        // notify_one stores a permit, so this works even before the forwarder first waits.
        self.stop.notify_one();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

async fn forward(
    name: &str,
    link: Arc<dyn EngineLink>,
    cfg: ConsumerConfig,
    qtx: SyncSender<Arc<EngineBatch>>,
    stats: &ConsumerStats,
    drained: &tokio::sync::Notify,
) {
    loop {
        let after = stats.forwarded.load(Ordering::Relaxed);
        let mut rx = match link.subscribe_after(after, cfg.link_capacity) {
            Ok(rx) => rx,
            Err(LinkError::CannotResume(seq)) => {
                tracing::error!(
                    consumer = name,
                    seq,
                    "the engine can no longer replay the stream after this sequence: market data missed events and \
                     is stale until restart"
                );
                stats.lost.store(true, Ordering::Relaxed);
                stats.stopped.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::info!(consumer = name, error = %e, "engine stream ended");
                stats.stopped.store(true, Ordering::Relaxed);
                return;
            }
        };
        loop {
            let Some(batch) = rx.recv().await else {
                stats.stopped.store(true, Ordering::Relaxed);
                return;
            };
            let seq = batch.seq;
            if seq <= stats.forwarded.load(Ordering::Relaxed) {
                continue; // already queued before a resubscription
            }
            match qtx.try_send(batch) {
                Ok(()) => stats.forwarded.store(seq, Ordering::Relaxed),
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        // Overflow: unsubscribe at once (the engine prunes closed channels
        // and never waits for us), then resume where the queue ends once the
        // worker has caught up.
        drop(rx);
        stats.resubscribes.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            consumer = name,
            after = stats.forwarded.load(Ordering::Relaxed),
            "market data fell behind the engine; resubscribing once the queue drains"
        );
        while stats.processed.load(Ordering::Acquire) < stats.forwarded.load(Ordering::Relaxed) {
            drained.notified().await;
        }
    }
}

fn worker_loop(
    qrx: Receiver<Arc<EngineBatch>>,
    mut sink: impl StreamSink,
    idle: Duration,
    stats: &ConsumerStats,
    drained: &tokio::sync::Notify,
) {
    loop {
        match qrx.recv_timeout(idle) {
            Ok(batch) => {
                sink.on_batch(&batch);
                stats.processed.store(batch.seq, Ordering::Release);
                if stats.processed.load(Ordering::Relaxed) >= stats.forwarded.load(Ordering::Relaxed) {
                    drained.notify_one();
                }
            }
            Err(RecvTimeoutError::Timeout) => sink.on_idle(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    sink.on_stop();
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_engine::{Command, InstrumentSpec, Limits};
    use castle_link::{EngineRequest, InProcessEngine, Origin};
    use std::sync::{Condvar, Mutex};
    use std::time::Instant;

    /// A sink that blocks until the gate opens, then records every seq.
    struct Gated {
        gate: Arc<(Mutex<bool>, Condvar)>,
        seen: Arc<Mutex<Vec<Seq>>>,
    }

    impl StreamSink for Gated {
        fn on_batch(&mut self, batch: &EngineBatch) {
            let (m, cv) = &*self.gate;
            let mut open = m.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.seen.lock().unwrap().push(batch.seq);
        }
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_stalled_worker_never_blocks_the_engine_and_misses_nothing() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let setup = vec![
            Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)),
            Command::Deposit { account: 1, asset: 2, amount: 1_000_000_000 },
        ];
        let engine = InProcessEngine::start(Limits::default(), &setup, 4_096);
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cfg = ConsumerConfig { queue: 8, link_capacity: 4, idle: Duration::from_millis(10) };
        let sink = Gated { gate: gate.clone(), seen: seen.clone() };
        let link: Arc<dyn EngineLink> = engine.clone();
        let consumer = Consumer::start("test", link, 0, cfg, sink, rt.handle()).unwrap();
        // A second, fast subscriber tells us how far the engine got.
        let mut probe = engine.subscribe(100_000).unwrap();
        let n = 2_000u64;
        for request in 1..=n {
            let command = Command::Deposit { account: 2, asset: 2, amount: 1 };
            let req = EngineRequest { origin: Origin { gateway: 9, request }, command };
            wait_until("engine queue room", || engine.submit(req).is_ok());
        }
        // The engine applies all 2,000 commands while the worker is stalled on its first batch.
        let mut last = 0;
        while last < n + 2 {
            last = probe.blocking_recv().expect("engine running").seq;
        }
        assert!(seen.lock().unwrap().is_empty(), "the worker is still blocked");
        assert!(consumer.stats.resubscribes.load(Ordering::Relaxed) >= 1, "the queue overflowed");
        {
            let (m, cv) = &*gate;
            *m.lock().unwrap() = true;
            cv.notify_all();
        }
        wait_until("the worker to catch up", || consumer.stats.processed.load(Ordering::Relaxed) == n + 2);
        let got = seen.lock().unwrap().clone();
        let want: Vec<Seq> = (1..=n + 2).collect();
        assert_eq!(got, want, "every batch exactly once, in order");
        assert!(!consumer.stats.lost.load(Ordering::Relaxed));
        consumer.shutdown();
    }

    struct Stops(Arc<AtomicBool>);

    impl StreamSink for Stops {
        fn on_batch(&mut self, _: &EngineBatch) {
            panic!("nothing can be delivered");
        }
        fn on_stop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_stream_that_cannot_resume_is_reported_lost_and_stops_the_sink() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let engine = InProcessEngine::start(Limits::default(), &[], 16);
        let stopped = Arc::new(AtomicBool::new(false));
        // Seq 99 is in this engine's future: it cannot serve "after 99".
        let c = Consumer::start("lost", engine, 99, ConsumerConfig::default(), Stops(stopped.clone()), rt.handle())
            .unwrap();
        wait_until("the sink to stop", || stopped.load(Ordering::Relaxed));
        assert!(c.stats.lost.load(Ordering::Relaxed));
        assert!(c.stats.stopped.load(Ordering::Relaxed));
        c.shutdown();
    }
}
