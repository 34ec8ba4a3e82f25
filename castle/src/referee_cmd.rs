//! `castle referee`: the fencing referee of the engine nodes (see
//! `castle_engine_server::referee`): it records the current epoch and which node holds its
//! lease, in a small state file made durable before every answer that changes it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct RefereeArgs {
    /// Address the engine nodes reach the referee on (port 0: any; the bound address is printed).
    #[arg(long, env = "CASTLE_REFEREE_LISTEN", default_value = "127.0.0.1:7500")]
    pub listen: String,
    /// The state file (epoch, holder, the epoch's first seq, holder address); created if absent.
    #[arg(long, env = "CASTLE_REFEREE_STATE")]
    pub state: PathBuf,
    /// Lease length in milliseconds: a primary that cannot renew stops accepting orders within
    /// three quarters of it, and a promotion waits at most this long for the old lease to end.
    #[arg(long, env = "CASTLE_LEASE_MS", default_value_t = 2_000)]
    pub lease_ms: u32,
}

pub fn run(a: RefereeArgs) -> Result<()> {
    anyhow::ensure!(a.lease_ms >= 10, "--lease-ms must be at least 10");
    let listener = std::net::TcpListener::bind(&a.listen).with_context(|| format!("binding {}", a.listen))?;
    // Tests and scripts read the bound address from this line.
    println!("castle referee listening on {}", listener.local_addr()?);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the signal handler")?;
    castle_engine_server::referee::serve(listener, &a.state, a.lease_ms, stop)
        .with_context(|| format!("referee with state {}", a.state.display()))
}
