//! `castle engine`: the engine server as its own process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use castle_engine_server::{Config, Server};
use castle_journal::{JournalError, RecoveryMode, WriterChoice};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Writer {
    /// io_uring when available, else portable (logged).
    Auto,
    IoUring,
    /// pwrite + fdatasync.
    Portable,
}

impl From<Writer> for WriterChoice {
    fn from(w: Writer) -> Self {
        match w {
            Writer::Auto => WriterChoice::Auto,
            Writer::IoUring => WriterChoice::IoUring,
            Writer::Portable => WriterChoice::Portable,
        }
    }
}

#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Journal directory (snapshots go to DIR/snapshots).
    #[arg(long)]
    pub journal: PathBuf,
    /// Address to accept gateways, subscribers and standbys on (port 0: any; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: String,
    /// Run as a hot standby of the primary at this address.
    #[arg(long)]
    pub follow: Option<String>,
    /// Discard a corrupt journal from the first bad byte on instead of refusing to start.
    #[arg(long)]
    pub truncate_corrupt: bool,
    #[arg(long, value_enum, default_value = "auto")]
    pub writer: Writer,
    /// Commands between snapshots (0: never).
    #[arg(long, default_value_t = 1_000_000)]
    pub snapshot_every: u64,
    /// Sequence numbers of events kept in memory for subscribers.
    #[arg(long, default_value_t = 1 << 16)]
    pub ring: usize,
}

pub fn run(a: EngineArgs) -> Result<()> {
    let mut cfg = Config::new(&a.journal, a.listen.clone());
    cfg.follow = a.follow.clone();
    cfg.writer = a.writer.into();
    cfg.recovery = if a.truncate_corrupt { RecoveryMode::Truncate } else { RecoveryMode::Strict };
    cfg.snapshot_every = a.snapshot_every;
    cfg.ring_capacity = a.ring;
    let server = match Server::start(cfg) {
        Ok(s) => s,
        Err(castle_engine_server::ServerError::Journal(e @ JournalError::Corrupt { .. })) => {
            anyhow::bail!(
                "refusing to start: {e}\n(run with --truncate-corrupt to discard the journal from that offset on)"
            )
        }
        Err(e) => return Err(e).with_context(|| format!("starting the engine on {}", a.journal.display())),
    };
    // Tests and scripts read the bound address from this line.
    let addr = server.local_addr().context("the engine server has no TCP listener")?;
    println!("castle engine listening on {addr}");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the signal handler")?;
    while !stop.load(Ordering::SeqCst) && !server.stopped() {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("engine stopping");
    server.shutdown().context("engine server")?;
    Ok(())
}
