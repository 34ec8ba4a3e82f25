//! `castle engine --demo`: the demo set-up of `castle serve` (instruments BTC-USDT and ETH-USDT,
//! accounts 1 and 2 funded) journaled by a stand-alone engine on its first start, so the venue
//! can run as separate processes (`castle gateway-fix` / `gateway-rest` / `marketdata` against
//! it) with the same demo sessions and keys as `castle serve`.

use anyhow::{bail, Context, Result};
use castle_engine_server::Server;

/// Journals the demo commands not yet in the journal and waits until they are durable; returns
/// how many were sent. An empty journal gets all of them; a journal shorter than the set-up can
/// only be a first start killed half-way (nothing else is accepted before the set-up is durable:
/// the caller runs this before printing the address gateways wait for), so it gets the rest.
pub fn setup(server: &Server) -> Result<usize> {
    let cmds = crate::serve::demo_commands();
    let done = usize::try_from(server.status().context("engine status")?.seq).unwrap_or(usize::MAX);
    if done >= cmds.len() {
        return Ok(0);
    }
    // Gateway 0: the venue's own commands (never deduplicated, no origin in the stream).
    let gw = server.local_gateway(0, cmds.len());
    for (i, c) in cmds.iter().enumerate().skip(done) {
        if let Err(e) = gw.submit(0, *c) {
            bail!("demo set-up command {i}: {e}");
        }
    }
    let st = server.status().context("making the demo set-up durable")?;
    tracing::info!(seq = st.seq, "demo set-up journaled");
    Ok(cmds.len() - done)
}

/// `castle engine --net`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Net {
    Auto,
    IoUring,
    Std,
}

impl From<Net> for castle_engine_server::net_uring::NetChoice {
    fn from(n: Net) -> Self {
        use castle_engine_server::net_uring::NetChoice;
        match n {
            Net::Auto => NetChoice::Auto,
            Net::IoUring => NetChoice::IoUring,
            Net::Std => NetChoice::Std,
        }
    }
}
