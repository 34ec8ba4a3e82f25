//! Market data in `castle serve`: the feed (MoldUDP64/ITCH over multicast or
//! unicast, re-request server, TCP snapshot service), the in-process derived
//! data and exchange statistics, and the Redis fan-out when `--redis-url` is
//! given. Everything consumes the engine stream through `EngineLink` and
//! never slows matching (see castle_marketdata::consumer).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use castle_gateway_fix::EngineLink;
use castle_marketdata::consumer::ConsumerConfig;
use castle_marketdata::mold;
use castle_marketdata::publisher::PublisherConfig;
use castle_marketdata::redis_fanout::FanoutConfig;
use castle_marketdata::service::{MarketDataService, ServiceConfig};
use clap::Args;

use crate::metrics::Metrics;

#[derive(Args, Clone, Debug)]
pub struct MarketDataArgs {
    /// Feed destination: a multicast group and port (or, for networks without multicast, a unicast host and port).
    #[arg(long, default_value = "239.255.67.1:31001")]
    pub feed_dest: SocketAddr,
    /// Optional duplicate "B" destination carrying identical packets.
    #[arg(long)]
    pub feed_dest_b: Option<SocketAddr>,
    /// Interface the feed is sent from (IP_MULTICAST_IF and source address).
    #[arg(long, default_value = "127.0.0.1")]
    pub feed_interface: Ipv4Addr,
    /// Multicast TTL: 0 keeps the feed on this host.
    #[arg(long, default_value_t = 0)]
    pub feed_ttl: u32,
    /// MoldUDP64 session name (up to 10 characters).
    #[arg(long, default_value = "CASTLE0001")]
    pub feed_session: String,
    /// UDP address of the re-request server. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub feed_rerequest: SocketAddr,
    /// TCP address of the snapshot service. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub feed_snapshot: SocketAddr,
    /// Redis for the fan-out to services (e.g. redis://127.0.0.1:6379); without it market data is served in process.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys.
    #[arg(long, default_value = "castle")]
    pub redis_prefix: String,
}

pub struct MarketData {
    pub service: Arc<MarketDataService>,
    redis: Option<String>,
}

impl std::fmt::Display for MarketData {
    /// The part of the startup line that says where market data is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.service.feed;
        let opt = |x: Option<SocketAddr>| x.map_or_else(|| "-".to_string(), |a| a.to_string());
        write!(f, "market data feed on {}", a.destination)?;
        if let Some(b) = a.destination_b {
            write!(f, " and {b}")?;
        }
        write!(f, " (re-request {}, snapshot {})", opt(a.rerequest), opt(a.snapshot))?;
        match &self.redis {
            Some(url) => write!(f, ", Redis fan-out to {url}"),
            None => write!(f, ", Redis off (served in process)"),
        }
    }
}

/// Starts market data on the engine stream and registers its metrics.
pub fn start(args: &MarketDataArgs, link: Arc<dyn EngineLink>, metrics: &Metrics) -> Result<MarketData> {
    let mut feed = PublisherConfig::loopback(args.feed_dest);
    feed.session = mold::session(&args.feed_session);
    feed.destination_b = args.feed_dest_b;
    feed.interface = args.feed_interface;
    feed.ttl = args.feed_ttl;
    feed.rerequest = Some(args.feed_rerequest);
    feed.snapshot = Some(args.feed_snapshot);
    let redis = args.redis_url.as_ref().map(|url| {
        let mut c = FanoutConfig::new(url);
        c.prefix = args.redis_prefix.clone();
        c
    });
    let cfg = ServiceConfig { feed, redis, consumer: ConsumerConfig::default() };
    let rt = tokio::runtime::Handle::current();
    let service = Arc::new(MarketDataService::start(link, cfg, &rt).context("starting market data")?);
    let s = service.clone();
    metrics.register(move |out: &mut String| s.render_metrics(out));
    let md = MarketData { service, redis: args.redis_url.clone() };
    tracing::info!("{md}");
    Ok(md)
}

impl MarketData {
    /// Stops the consumers; the feed ends with End of Session.
    pub async fn shutdown(self) {
        let service = self.service;
        // Joins threads: off the async workers.
        if let Err(e) = tokio::task::spawn_blocking(move || service.shutdown()).await {
            tracing::error!(error = %e, "market data shutdown");
        }
    }
}
