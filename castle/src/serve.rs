//! `castle serve`: the whole venue in one process on embedded defaults.
//!
//! Today that is the durable engine (journal under `--data-dir/journal`,
//! recovered at start; see serve_engine.rs) and the FIX 4.4 gateway (tokio)
//! in front of it (on the shared runtime, or on its own with placed threads:
//! `--fix-threads/--fix-cpus/--fix-sched`, fix_placement.rs). Without `--fix-config` a demo
//! configuration is used: plain TCP on `--fix-listen`, sessions
//! `DEMO1 -> CASTLE` (account 1) and `DEMO2 -> CASTLE` (account 2), both with
//! password `demo`, session stores under `--data-dir`. The demo instruments
//! and funded accounts are journaled on the first start (empty journal) and
//! listed at every start. Market data, settlement and the REST gateway join
//! this process as they are wired in (see README).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use castle_engine::{Command, InstrumentSpec};
use castle_gateway_fix::{Config, EngineLink};
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Start, print the addresses and exit (for scripts and tests).
    #[arg(long)]
    pub check: bool,
    /// FIX session configuration file (gateway-fix/README.md); a demo configuration when absent.
    #[arg(long)]
    pub fix_config: Option<PathBuf>,
    /// Address of the demo FIX listener (ignored with --fix-config). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9878")]
    pub fix_listen: String,
    /// Where local state lives (engine journal and snapshots, FIX session stores, ...).
    #[arg(long, default_value = "var")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub fix_placement: crate::fix_placement::FixPlacementArgs,
    #[command(flatten)]
    pub md: Box<crate::serve_marketdata::MarketDataArgs>,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
    #[command(flatten)]
    pub rest: crate::serve_rest::RestArgs,
    #[command(flatten)]
    pub archive: Box<crate::serve_archive::ArchiveArgs>,
}

/// Demo instruments: BTC-USDT and ETH-USDT (assets 1 = BTC, 2 = USDT, 3 = ETH),
/// accounts 1 and 2 funded with 10 BTC, 1,000,000 USDT and 100 ETH each.
pub fn demo_commands() -> Vec<Command> {
    let mut cmds = vec![
        Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)),
        Command::AddInstrument(InstrumentSpec::demo(1, "ETH-USDT", 3, 2, 300_000)),
    ];
    for account in [1, 2] {
        for (asset, amount) in [(1, 10 * 100_000_000), (2, 1_000_000 * 100_000_000), (3, 100 * 100_000_000)] {
            cmds.push(Command::Deposit { account, asset, amount });
        }
    }
    cmds
}

pub(crate) fn demo_fix_config(listen: &str, store: &Path) -> String {
    format!(
        "[DEFAULT]\nGatewayId=1\nListenAddress={listen}\nSenderCompID=CASTLE\nStoreDir={}\nMaxMessagesPerSecond=1000\n\
         MaxOpenOrders=10000\n\n[SESSION]\nTargetCompID=DEMO1\nAccount=1\nUsername=demo1\nPassword=demo\n\n\
         [SESSION]\nTargetCompID=DEMO2\nAccount=2\nUsername=demo2\nPassword=demo\n",
        store.display()
    )
}

pub fn run(args: ServeArgs) -> Result<()> {
    // Before the shared runtime: the FIX runtime's helper threads take the state of the
    // thread that starts it, which must be unplaced.
    let fix = args.fix_placement.start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("castle-io")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(args, fix.as_ref()))
}

async fn serve(args: ServeArgs, fix_runtime: Option<&castle_gateway_fix::FixRuntime>) -> Result<()> {
    let setup = demo_commands();
    let (engine, setup_sent) = crate::serve_engine::start(&args.data_dir, &setup)?;
    let instruments = engine.instruments();
    for spec in &instruments {
        tracing::info!(
            instrument = spec.id,
            symbol = spec.symbol.as_str(),
            tick = %spec.scaling.tick_size,
            lot = %spec.scaling.lot_size,
            "instrument listed"
        );
    }
    tracing::info!("demo accounts 1 and 2 funded (10 BTC, 1,000,000 USDT, 100 ETH each)");
    let config = match &args.fix_config {
        Some(path) => Config::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => {
            let store = args.data_dir.join("fix");
            std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
            Config::parse(&demo_fix_config(&args.fix_listen, &store)).context("demo FIX configuration")?
        }
    };
    let link: Arc<dyn EngineLink> = engine.clone();
    let metrics = crate::metrics::Metrics::default();
    let md = crate::serve_marketdata::start(&args.md, link.clone(), &metrics)?;
    let metrics_server = crate::metrics::serve(&args.metrics, metrics.clone()).await?;
    let settlement = crate::serve_settlement::start(&args.data_dir, link.clone(), &metrics).await?;
    let archive = crate::serve_archive::start(&args.archive, &args.data_dir, link.clone(), &metrics).await?;
    let server = crate::fix_placement::serve(fix_runtime, config, link.clone()).await?;
    let (rest, rest_lines) = crate::serve_rest::start(&args.rest, link, &args.data_dir).await?;
    let fix = server.local_addr().map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    let fix_tls = server.tls_local_addr().map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    // Ready before the line that tells scripts and tests the venue is up.
    metrics.set_ready(true);
    // Before "castle is up": a SIGTERM right after it must find the handler (a test that
    // stops castle quickly on a loaded machine otherwise kills it by the default action).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!(
        "castle is up: {} instruments, {} set-up commands, FIX 4.4 on {fix} (TLS {fix_tls}), {md}, metrics on http://{}/metrics",
        instruments.len(),
        setup_sent,
        metrics_server.addr
    );
    rest_lines.iter().for_each(|l| println!("{l}"));
    if args.check {
        rest.shutdown().await;
        server.shutdown().await;
        settlement.stop().await?;
        archive.stop().await?;
        md.shutdown().await;
        metrics_server.shutdown().await;
        return crate::serve_engine::stop(&engine);
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    metrics.set_ready(false);
    rest.shutdown().await;
    server.shutdown().await;
    settlement.stop().await?;
    archive.stop().await?;
    md.shutdown().await;
    metrics_server.shutdown().await;
    crate::serve_engine::stop(&engine)?;
    println!("castle stopped");
    Ok(())
}
