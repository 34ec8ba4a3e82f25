//! Market data as a running service over an [`EngineLink`]: what `castle
//! serve` starts.
//!
//! - the **feed consumer** keeps the in-process derived data ([`LiveData`]:
//!   books, trades, ticker, candles, exchange statistics; this is what the
//!   gateways read when no Redis is configured) and drives the feed
//!   [`Publisher`] (MoldUDP64/ITCH, re-request server, TCP snapshots);
//! - the **Redis consumer** (only with a Redis URL) runs the [`RedisFanout`].
//!
//! Each is its own [`Consumer`] with its own queue and resume point, so a
//! stalled Redis delays neither the feed nor, ever, the engine.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use castle_engine::{EventKind, InstrumentId};
use castle_link::{EngineBatch, EngineLink};
use rustc_hash::FxHashSet;

use crate::consumer::{Consumer, ConsumerConfig, ConsumerStats, StreamSink};
use crate::derived::MarketData;
use crate::publisher::{InlinePublisher, PublishError, PublisherConfig};
use crate::redis_fanout::{FanoutConfig, FanoutStats, RedisFanout, RedisFanoutError};
use crate::stats::ExchangeStats;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("feed publisher: {0}")]
    Publisher(#[from] PublishError),
    #[error("redis fan-out: {0}")]
    Redis(#[from] RedisFanoutError),
    #[error("starting a consumer thread: {0}")]
    Io(#[from] std::io::Error),
}

/// The derived data served in process.
#[derive(Debug, Default)]
pub struct LiveData {
    pub md: MarketData,
    pub stats: ExchangeStats,
    /// Engine events the derived data could not apply (a bug upstream or a lost event).
    pub apply_errors: u64,
}

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub feed: PublisherConfig,
    pub redis: Option<FanoutConfig>,
    pub consumer: ConsumerConfig,
}

/// Addresses a client needs to join the feed.
#[derive(Clone, Copy, Debug)]
pub struct FeedAddrs {
    pub destination: std::net::SocketAddr,
    pub destination_b: Option<std::net::SocketAddr>,
    pub rerequest: Option<std::net::SocketAddr>,
    pub snapshot: Option<std::net::SocketAddr>,
}

pub struct MarketDataService {
    pub live: Arc<RwLock<LiveData>>,
    pub feed: FeedAddrs,
    link: Arc<dyn EngineLink>,
    feed_stats: Arc<ConsumerStats>,
    redis_stats: Option<Arc<ConsumerStats>>,
    redis_health: Option<Arc<std::sync::Mutex<RedisHealth>>>,
    /// Redis first, then the feed: the order they are stopped in.
    consumers: std::sync::Mutex<Vec<Consumer>>,
    feed_shared: Arc<std::sync::Mutex<crate::publisher::Shared>>,
}

struct FeedSink {
    live: Arc<RwLock<LiveData>>,
    publisher: Option<InlinePublisher>,
    link: Arc<dyn EngineLink>,
    registered: FxHashSet<InstrumentId>,
}

fn on_feed(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::InstrumentAdded { .. }
            | EventKind::TradingStatusChanged { .. }
            | EventKind::BookAdd { .. }
            | EventKind::BookReduce { .. }
            | EventKind::BookRemove { .. }
            | EventKind::Trade { .. }
    )
}

impl StreamSink for FeedSink {
    fn on_batch(&mut self, batch: &EngineBatch) {
        {
            let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
            for e in &batch.events {
                if let Err(err) = live.md.apply_one(e) {
                    live.apply_errors += 1;
                    tracing::error!(error = %err, "derived market data rejected an engine event");
                }
            }
            live.stats.on_events(&batch.events);
        }
        let Some(publisher) = &mut self.publisher else { return };
        for e in &batch.events {
            if let EventKind::InstrumentAdded { instrument } = e.kind {
                if self.registered.insert(instrument) {
                    match self.link.instruments().into_iter().find(|s| s.id == instrument) {
                        Some(spec) => publisher.register(spec),
                        None => tracing::error!(instrument, "instrument added but not listed by the engine link"),
                    }
                }
            }
        }
        if batch.events.iter().any(|e| on_feed(&e.kind)) {
            // Sent from this thread: decoupled from the engine by the consumer queue.
            if let Err(err) = publisher.publish(&batch.events) {
                tracing::error!(error = %err, seq = batch.seq, "event not representable on the feed");
            }
        }
        publisher.tick();
    }

    fn on_idle(&mut self) {
        if let Some(p) = &mut self.publisher {
            p.tick();
        }
    }

    fn on_stop(&mut self) {
        if let Some(p) = self.publisher.take() {
            // End of messages and End of Session: receivers know nothing more will come.
            p.shutdown();
        }
    }
}

/// The fan-out's counters as last seen by its worker, for /metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedisHealth {
    pub stats: FanoutStats,
    pub connected: bool,
}

struct RedisSink {
    fanout: RedisFanout,
    health: Arc<std::sync::Mutex<RedisHealth>>,
}

impl RedisSink {
    fn publish_health(&self) {
        let h = RedisHealth { stats: self.fanout.stats, connected: self.fanout.connected() };
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = h;
    }
}

impl StreamSink for RedisSink {
    fn on_batch(&mut self, batch: &EngineBatch) {
        if let Err(e) = self.fanout.on_events(&batch.events) {
            tracing::error!(error = %e, seq = batch.seq, "redis fan-out rejected an engine batch");
        }
        self.publish_health();
    }
    fn on_idle(&mut self) {
        // Entries queued below a full pipeline, and due snapshots, go out when the stream is quiet.
        self.fanout.flush();
        self.publish_health();
    }
    fn on_stop(&mut self) {
        self.fanout.flush();
        self.publish_health();
    }
}

impl MarketDataService {
    /// Starts the feed consumer (and the Redis consumer when configured),
    /// both from the beginning of the link's stream (set-up commands included).
    pub fn start(
        link: Arc<dyn EngineLink>,
        cfg: ServiceConfig,
        rt: &tokio::runtime::Handle,
    ) -> Result<MarketDataService, ServiceError> {
        let publisher = InlinePublisher::start(cfg.feed.clone())?;
        let feed = FeedAddrs {
            destination: cfg.feed.destination,
            destination_b: cfg.feed.destination_b,
            rerequest: publisher.rerequest_addr,
            snapshot: publisher.snapshot_addr,
        };
        let feed_shared = publisher.shared();
        let live = Arc::new(RwLock::new(LiveData::default()));
        let sink = FeedSink {
            live: live.clone(),
            publisher: Some(publisher),
            link: link.clone(),
            registered: FxHashSet::default(),
        };
        let feed_consumer = Consumer::start("feed", link.clone(), 0, cfg.consumer, sink, rt)?;
        let feed_stats = feed_consumer.stats.clone();
        let mut consumers = vec![feed_consumer];
        let (mut redis_stats, mut redis_health) = (None, None);
        if let Some(rc) = cfg.redis {
            let health = Arc::new(std::sync::Mutex::new(RedisHealth::default()));
            let sink = RedisSink { fanout: RedisFanout::new(rc)?, health: health.clone() };
            let c = Consumer::start("redis", link.clone(), 0, cfg.consumer, sink, rt)?;
            redis_stats = Some(c.stats.clone());
            redis_health = Some(health);
            consumers.insert(0, c);
        }
        let consumers = std::sync::Mutex::new(consumers);
        Ok(MarketDataService { live, feed, link, feed_stats, redis_stats, redis_health, consumers, feed_shared })
    }

    pub fn feed_stats(&self) -> &ConsumerStats {
        &self.feed_stats
    }

    pub fn redis_stats(&self) -> Option<&ConsumerStats> {
        self.redis_stats.as_deref()
    }

    /// The Redis fan-out's counters and connection state (None without Redis).
    pub fn redis_health(&self) -> Option<RedisHealth> {
        self.redis_health.as_ref().map(|h| *h.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Exchange statistics and the consumers' health in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let specs = self.link.instruments();
        {
            let live = self.live.read().unwrap_or_else(|p| p.into_inner());
            live.stats.render(&live.md, &specs, out);
            let _ = writeln!(
                out,
                "# HELP castle_marketdata_apply_errors_total Engine events the derived data could not apply.\n\
                 # TYPE castle_marketdata_apply_errors_total counter\ncastle_marketdata_apply_errors_total {}",
                live.apply_errors
            );
        }
        let next_feed_seq = self.feed_shared.lock().map(|s| s.next_seq).unwrap_or_else(|p| p.into_inner().next_seq);
        let _ = writeln!(
            out,
            "# HELP castle_feed_next_seq Next MoldUDP64 sequence number of the feed.\n# TYPE castle_feed_next_seq gauge\n\
             castle_feed_next_seq {next_feed_seq}"
        );
        let consumers: Vec<_> =
            std::iter::once(("feed", self.feed_stats())).chain(self.redis_stats().map(|s| ("redis", s))).collect();
        for (name, help, kind, get) in [
            ("castle_marketdata_processed_seq", "Engine seq the consumer has processed.", "gauge", 0),
            ("castle_marketdata_resubscribes_total", "Queue overflows resumed with subscribe_after.", "counter", 1),
            ("castle_marketdata_lost", "1 when the engine could not replay what the consumer missed.", "gauge", 2),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (c, s) in &consumers {
                let v = match get {
                    0 => s.processed.load(Ordering::Relaxed),
                    1 => s.resubscribes.load(Ordering::Relaxed),
                    _ => u64::from(s.lost.load(Ordering::Relaxed)),
                };
                let _ = writeln!(out, "{name}{{consumer=\"{c}\"}} {v}");
            }
        }
        if let Some(h) = self.redis_health() {
            let s = h.stats;
            for (name, help, kind, v) in [
                (
                    "castle_redis_connected",
                    "1 while the fan-out has a Redis connection.",
                    "gauge",
                    u64::from(h.connected),
                ),
                ("castle_redis_entries_total", "Stream entries produced.", "counter", s.entries),
                (
                    "castle_redis_dropped_total",
                    "Stream entries dropped while Redis was unreachable.",
                    "counter",
                    s.dropped,
                ),
                ("castle_redis_snapshots_total", "Depth and ticker snapshots written.", "counter", s.snapshots),
                ("castle_redis_connects_total", "Connections made (first one included).", "counter", s.reconnects),
                (
                    "castle_redis_errors_total",
                    "Redis errors (each followed by a reconnect with backoff).",
                    "counter",
                    s.errors,
                ),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
            }
        }
    }

    /// Stops the consumers (blocking until their threads end); the feed
    /// ends with End of Session. Later calls do nothing.
    pub fn shutdown(&self) {
        let consumers = std::mem::take(&mut *self.consumers.lock().unwrap_or_else(|p| p.into_inner()));
        for c in consumers {
            c.shutdown();
        }
    }
}
