//! `castle gateway-fix`, `castle gateway-rest`, `castle marketdata`: one component as its own
//! process against a `castle engine` reached over TCP ([`RemoteLink`]). The component wiring is
//! the one `castle serve` runs (serve_rest.rs, serve_marketdata.rs, gateway-fix's `serve`); only
//! the engine link differs. Every flag also reads a `CASTLE_*` variable (deploy/k8s passes the
//! configuration as environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use castle_engine_server::{RemoteConfig, RemoteLink};
use castle_link::EngineLink;
use clap::Args;

use crate::metrics::{Metrics, MetricsArgs};

/// Where the engine is, and this process's identity at it.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Address of `castle engine` (host:port).
    #[arg(long, env = "CASTLE_ENGINE", default_value = "127.0.0.1:7400")]
    pub engine: String,
    /// Gateway id at the engine (requests are deduplicated per id: every running gateway needs
    /// its own). Default: the component's own (FIX: GatewayId of the session file; REST: 3).
    #[arg(long, env = "CASTLE_GATEWAY_ID")]
    pub gateway_id: Option<u32>,
    /// Commands queued towards the engine before new requests are refused as busy.
    #[arg(long, env = "CASTLE_ENGINE_QUEUE", default_value_t = 65_536)]
    pub engine_queue: usize,
}

/// Metrics, /live and /ready (the Kubernetes probes).
#[derive(Args, Debug, Clone)]
pub struct ProbeArgs {
    /// Address of GET /metrics, /live, /ready. Port 0 picks a free port.
    #[arg(long, env = "CASTLE_METRICS_LISTEN", default_value = "127.0.0.1:0")]
    pub metrics_listen: SocketAddr,
}

#[derive(Args)]
pub struct GatewayFixArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// FIX session configuration file (gateway-fix/README.md); the demo sessions of `castle serve` when absent.
    #[arg(long, env = "CASTLE_FIX_CONFIG")]
    pub fix_config: Option<PathBuf>,
    /// Address of the demo FIX listener (ignored with --fix-config).
    #[arg(long, env = "CASTLE_FIX_LISTEN", default_value = "127.0.0.1:9878")]
    pub fix_listen: String,
    /// Local state (the demo sessions' stores under DIR/fix).
    #[arg(long, env = "CASTLE_DATA_DIR", default_value = "var")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub fix_placement: crate::fix_placement::FixPlacementArgs,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Args)]
pub struct GatewayRestArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Local state (API keys, TLS certificate).
    #[arg(long, env = "CASTLE_DATA_DIR", default_value = "var")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub rest: crate::serve_rest::RestArgs,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Args)]
pub struct MarketDataCmdArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub md: crate::serve_marketdata::MarketDataArgs,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

/// The REST gateway's built-in gateway id (serve_rest.rs).
const REST_GATEWAY_ID: u32 = 3;

pub(crate) fn link(e: &EngineArgs, local: u32) -> Result<Arc<RemoteLink>> {
    let mut cfg = RemoteConfig::new(e.engine.clone(), e.gateway_id.unwrap_or(local));
    if local != 0 && cfg.gateway != local {
        cfg.local_gateway = Some(local);
    }
    cfg.queue = e.engine_queue;
    let link = RemoteLink::connect(cfg).with_context(|| format!("connecting to the engine at {}", e.engine))?;
    tracing::info!(engine = %e.engine, instruments = link.instruments().len(), "engine link up");
    Ok(link)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("castle-io")
        .build()
        .context("starting the tokio runtime")
}

pub(crate) async fn probes(p: &ProbeArgs, metrics: &Metrics) -> Result<crate::metrics::MetricsServer> {
    crate::metrics::serve(&MetricsArgs { metrics_listen: p.metrics_listen }, metrics.clone()).await
}

/// Waits for SIGINT or SIGTERM (the handler is installed before the caller prints "is up").
pub(crate) async fn until_stopped(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub(crate) fn term() -> Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?)
}

pub fn run_fix(a: GatewayFixArgs) -> Result<()> {
    // Before the shared runtime, from this unplaced thread (fix_placement.rs).
    let fix = a.fix_placement.start()?;
    let fix_runtime = fix.as_ref();
    runtime()?.block_on(async move {
        let config = match &a.fix_config {
            Some(path) => {
                castle_gateway_fix::Config::load(path).with_context(|| format!("loading {}", path.display()))?
            }
            None => {
                let store = a.data_dir.join("fix");
                std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
                castle_gateway_fix::Config::parse(&crate::serve::demo_fix_config(&a.fix_listen, &store))
                    .context("demo FIX configuration")?
            }
        };
        let link: Arc<dyn EngineLink> = link(&a.engine, config.gateway_id)?;
        let metrics = Metrics::default();
        let probe = probes(&a.probes, &metrics).await?;
        let server = crate::fix_placement::serve(fix_runtime, config, link).await?;
        metrics.set_ready(true);
        let term = term()?;
        let fix = server.local_addr().map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        let tls = server.tls_local_addr().map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "castle gateway-fix is up: FIX 4.4 on {fix} (TLS {tls}), engine {}, metrics on http://{}/metrics",
            a.engine.engine, probe.addr
        );
        until_stopped(term).await;
        metrics.set_ready(false);
        server.shutdown().await;
        probe.shutdown().await;
        println!("castle gateway-fix stopped");
        Ok(())
    })
}

pub fn run_rest(a: GatewayRestArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let link: Arc<dyn EngineLink> = link(&a.engine, REST_GATEWAY_ID)?;
        let metrics = Metrics::default();
        let probe = probes(&a.probes, &metrics).await?;
        let (server, lines) = crate::serve_rest::start(&a.rest, link, &a.data_dir).await?;
        metrics.set_ready(true);
        let term = term()?;
        println!(
            "castle gateway-rest is up: REST on {}, engine {}, metrics on http://{}/metrics",
            server.url(),
            a.engine.engine,
            probe.addr
        );
        lines.iter().for_each(|l| println!("{l}"));
        until_stopped(term).await;
        metrics.set_ready(false);
        server.shutdown().await;
        probe.shutdown().await;
        println!("castle gateway-rest stopped");
        Ok(())
    })
}

pub fn run_marketdata(a: MarketDataCmdArgs) -> Result<()> {
    runtime()?.block_on(async move {
        // Market data only reads the stream: no gateway session at the engine.
        let mut e = a.engine.clone();
        e.gateway_id = Some(0);
        let link: Arc<dyn EngineLink> = link(&e, 0)?;
        let metrics = Metrics::default();
        let probe = probes(&a.probes, &metrics).await?;
        let md = crate::serve_marketdata::start(&a.md, link, &metrics)?;
        metrics.set_ready(true);
        let term = term()?;
        println!("castle marketdata is up: {md}, engine {}, metrics on http://{}/metrics", e.engine, probe.addr);
        until_stopped(term).await;
        metrics.set_ready(false);
        md.shutdown().await;
        probe.shutdown().await;
        println!("castle marketdata stopped");
        Ok(())
    })
}
