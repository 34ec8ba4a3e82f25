//! `castle`: one binary, one subcommand per component.

mod bench;
mod bench_durable;
mod bench_settlement;
mod engine_cmd;
mod engine_demo;
mod fix_placement;
mod gateway_cmd;
mod metrics;
mod referee_cmd;
mod replay;
mod serve;
mod serve_archive;
mod serve_engine;
mod serve_marketdata;
mod serve_rest;
mod serve_settlement;
mod settlement_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "castle", version, about = "Castle trading venue")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole venue in one process on embedded defaults.
    Serve(serve::ServeArgs),
    /// Run the engine server: sequencer, journal, event stream over TCP (or a hot standby with --follow).
    Engine(engine_cmd::EngineArgs),
    /// The fencing referee of the engine nodes: epoch and lease holder (see `castle engine --referee`).
    Referee(referee_cmd::RefereeArgs),
    /// Rebuild the state from a journal directory from scratch; prints the final seq and state hash.
    Replay(replay::ReplayArgs),
    /// Join the MoldUDP64/ITCH market data feed, recover gaps, print the book (see marketdata/FEED.md).
    Feed {
        /// --listen ADDR [--group IP] [--interface IP] [--rerequest ADDR] [--snapshot ADDR] [--depth N] [--seconds N]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The settlement ledger consumer: engine stream -> PostgreSQL or SQLite, exactly once.
    Settlement(settlement_cmd::SettlementArgs),
    /// Compare the ledger with the engine (journal replay or live stream) at the ledger's seq; exit 1 on any difference.
    Reconcile(settlement_cmd::ReconcileArgs),
    /// The FIX gateway as its own process, against `castle engine` (--engine ADDR).
    GatewayFix(gateway_cmd::GatewayFixArgs),
    /// The REST/WebSocket gateway as its own process, against `castle engine` (--engine ADDR).
    GatewayRest(gateway_cmd::GatewayRestArgs),
    /// Market data (feed, statistics, Redis fan-out) as its own process, against `castle engine`.
    Marketdata(gateway_cmd::MarketDataCmdArgs),
    /// The event archive against `castle engine` (--engine ADDR): a local folder, or Kinesis.
    Archive(serve_archive::ArchiveCmdArgs),
    /// Benchmarks and load generators.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::Serve(args) => serve::run(args),
        Cmd::Engine(args) => engine_cmd::run(args),
        Cmd::Referee(args) => referee_cmd::run(args),
        Cmd::Replay(args) => replay::run(args),
        Cmd::Feed { args } => castle_marketdata::cli::feed_cli(&args).map_err(anyhow::Error::from),
        Cmd::Settlement(args) => settlement_cmd::run_settlement(args),
        Cmd::Reconcile(args) => settlement_cmd::run_reconcile(args),
        Cmd::Bench(cmd) => bench::run(cmd),
        Cmd::GatewayFix(a) => gateway_cmd::run_fix(a),
        Cmd::GatewayRest(a) => gateway_cmd::run_rest(a),
        Cmd::Marketdata(a) => gateway_cmd::run_marketdata(a),
        Cmd::Archive(a) => serve_archive::run(a),
    }
}
