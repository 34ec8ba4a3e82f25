//! The engine of `castle serve`: the journal-backed engine server in process
//! ([`DurableLink`]), journal under `--data-dir/journal`. An order acknowledged
//! by a gateway of `castle serve` is on disk before the acknowledgement leaves.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use castle_engine::Command;
use castle_engine_server::{hex, Config, DurableLink, ServerError};
use castle_journal::JournalError;
use castle_link::{EngineLink, EngineRequest, LinkError, Origin};

/// Commands the in-process inbox holds before `submit` answers Busy.
const INBOX: usize = 65_536;

/// Recovers (snapshot + journal) and starts the engine. On the first start (empty journal)
/// the `setup` commands are journaled and made durable; on later starts they are already in
/// the state and are not sent again. Returns the link and how many set-up commands were sent.
pub fn start(data_dir: &Path, setup: &[Command]) -> Result<(Arc<DurableLink>, usize)> {
    let dir = data_dir.join("journal");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cfg = Config::new(&dir, "");
    cfg.inbox_capacity = INBOX;
    // The venue's first orders should not page-fault on the sequencer
    // (the instruments of the set-up are faulted in as they are listed).
    cfg.fault_in_orders = true;
    let link = match DurableLink::start(cfg) {
        Ok(l) => l,
        Err(ServerError::Journal(e @ JournalError::Corrupt { .. })) => {
            bail!("refusing to start: {e}\n(`castle engine --journal {} --truncate-corrupt` discards the journal from that offset on)", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("starting the engine on {}", dir.display())),
    };
    let rec = link.recovered();
    // Tests and operators read this line: what survived the last run.
    println!("engine recovered: seq {} state hash {} journal {}", rec.seq, hex(&rec.hash), dir.display());
    // The gateways open only once the set-up is durable, so a journal shorter than the set-up
    // can only be a first start killed half-way: it holds exactly the first `seq` set-up
    // commands, and the rest are sent now.
    let done = usize::try_from(rec.seq).unwrap_or(usize::MAX);
    if done >= setup.len() {
        return Ok((link, 0));
    }
    if done > 0 {
        tracing::warn!(journaled = done, of = setup.len(), "completing a set-up interrupted by a crash");
    }
    for (i, c) in setup.iter().enumerate().skip(done) {
        // Gateway 0: the venue's own commands (no origin in the stream).
        let req = EngineRequest { origin: Origin { gateway: 0, request: 0 }, command: *c };
        match link.submit(req) {
            Ok(()) => {}
            Err(LinkError::Busy) => bail!("set-up command {i}: engine inbox full"),
            Err(e) => bail!("set-up command {i}: {e}"),
        }
    }
    let st = link.status().context("making the set-up commands durable")?;
    tracing::info!(seq = st.seq, hash = %hex(&st.hash), "set-up commands journaled (first start)");
    Ok((link, setup.len() - done))
}

/// Commits what is pending, stops the engine and prints the final seq and state hash.
pub fn stop(link: &DurableLink) -> Result<()> {
    let st = link.status().context("final engine status")?;
    link.shutdown().context("stopping the engine")?;
    println!("engine stopped: seq {} state hash {}", st.seq, hex(&st.hash));
    Ok(())
}
