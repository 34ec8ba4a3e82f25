//! `castle serve`: the whole venue in one process on embedded defaults.
//!
//! At this stage the venue is the engine: it lists the demo instruments,
//! funds the demo accounts, and runs the sequencer loop on its own thread
//! until interrupted. Gateways, settlement, market data and the archive join
//! this process as their issues land.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use castle_engine::{Command, EventKind, FastEngine, InstrumentSpec, Limits};
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Exit after start-up checks instead of running until interrupted (for scripts and tests).
    #[arg(long)]
    pub check: bool,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Demo instruments: BTC-USDT and ETH-USDT (assets 1 = BTC, 2 = USDT, 3 = ETH).
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

pub fn run(args: ServeArgs) -> Result<()> {
    let mut engine = FastEngine::new(Limits::default());
    let mut out = Vec::with_capacity(4_096);
    for c in demo_commands() {
        out.clear();
        engine.apply(now_ns(), &c, &mut out);
        if let Some(e) = out.iter().find(|e| matches!(e.kind, EventKind::Rejected { .. })) {
            anyhow::bail!("demo set-up command {c:?} was rejected: {e:?}");
        }
    }
    for id in 0..engine.limits().max_instruments {
        if let Some(spec) = engine.instrument(id) {
            tracing::info!(
                instrument = id,
                symbol = spec.symbol.as_str(),
                tick = %spec.scaling.tick_size,
                lot = %spec.scaling.lot_size,
                "instrument listed"
            );
        }
    }
    tracing::info!(accounts = "1, 2", "demo accounts funded (10 BTC, 1,000,000 USDT, 100 ETH each)");
    let hash = engine.state_hash();
    println!("castle is up: engine at sequence {} state {}", engine.seq(), hex(&hash[..8]));
    if args.check {
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)).context("installing the interrupt handler")?;
    // The sequencer thread: advances time so GTD orders expire while idle.
    let handle = std::thread::Builder::new().name("engine".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            out.clear();
            engine.apply(now_ns(), &Command::Tick, &mut out);
            std::thread::sleep(Duration::from_millis(100));
        }
        engine
    })?;
    let engine = handle.join().map_err(|_| anyhow::anyhow!("engine thread panicked"))?;
    println!("castle stopped at sequence {}", engine.seq());
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
