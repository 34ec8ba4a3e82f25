//! `--fix-threads`, `--fix-cpus`, `--fix-sched` of `castle serve` and `castle gateway-fix`:
//! the FIX gateway on its own runtime with pinned and/or SCHED_FIFO threads
//! (castle_gateway_fix::placement). Without any of them the gateway shares the process's
//! runtime, as before.

use std::sync::Arc;

use anyhow::{Context, Result};
use castle_gateway_fix::placement::{parse_threads, CpuList, Sched};
use castle_gateway_fix::{Config, EngineLink, FixRuntime, Placement, Server};
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct FixPlacementArgs {
    /// Run the FIX gateway (listeners, sessions, router) on its own runtime with N worker
    /// threads named castle-fix-0.. (default: on the process's shared runtime; 1 when only
    /// --fix-cpus or --fix-sched is given).
    #[arg(long, env = "CASTLE_FIX_THREADS", value_name = "N", value_parser = parse_threads)]
    pub fix_threads: Option<usize>,
    /// CPU affinity of the FIX threads, e.g. 1 or 2-3,5 (CPUs must be online). Implies a
    /// runtime of their own. Store and engine-link threads are not pinned.
    #[arg(long, env = "CASTLE_FIX_CPUS", value_name = "LIST", value_parser = CpuList::parse)]
    pub fix_cpus: Option<CpuList>,
    /// Scheduling policy of the FIX threads: other (default) or fifo[:PRIORITY] (SCHED_FIFO,
    /// priority 1-99, default 10; needs root or CAP_SYS_NICE). A FIFO thread runs before
    /// every normal thread on its CPU until it blocks, which keeps other programs from
    /// preempting the gateway (the `fifo` rows of BENCHMARKS.md). The kernel's RT throttle
    /// (sched_rt_runtime_us, 0.95 s of every 1 s) suspends FIFO threads that use more than 95%
    /// of the CPU time, so a saturated gateway stalls for up to 50 ms at a time, and FIFO on
    /// every CPU leaves the engine and everything else 5% (warned at start): pin it with
    /// --fix-cpus to fewer CPUs than the machine has. Implies a runtime of its own.
    #[arg(long, env = "CASTLE_FIX_SCHED", value_name = "other|fifo[:PRIORITY]", value_parser = Sched::parse)]
    pub fix_sched: Option<Sched>,
}

impl FixPlacementArgs {
    /// The placement asked for; None keeps the gateway on the shared runtime.
    pub fn placement(&self) -> Option<Placement> {
        if self.fix_threads.is_none() && self.fix_cpus.is_none() && self.fix_sched.is_none() {
            return None;
        }
        Some(Placement { threads: self.fix_threads.unwrap_or(1), cpus: self.fix_cpus.clone(), sched: self.fix_sched })
    }

    /// Starts the FIX runtime when a placement is asked for. Call from the main thread,
    /// before the shared runtime starts: its state is what the gateway's helper threads get.
    pub fn start(&self) -> Result<Option<FixRuntime>> {
        let Some(p) = self.placement() else { return Ok(None) };
        let describe = format!(
            "--fix-threads {} --fix-cpus {} --fix-sched {}",
            p.threads,
            p.cpus.as_ref().map_or("(inherited)".into(), |c| c.to_string()),
            p.sched.map_or("(inherited)".into(), |s| s.to_string())
        );
        match FixRuntime::start(p) {
            Ok(rt) => Ok(Some(rt)),
            Err(e) => {
                Err(anyhow::anyhow!("{}: {e}", e.option())).context(format!("placing the FIX gateway ({describe})"))
            }
        }
    }
}

/// The FIX gateway on its own runtime when there is one, else on the caller's.
pub async fn serve(fix: Option<&FixRuntime>, config: Config, link: Arc<dyn EngineLink>) -> Result<Server> {
    let server = match fix {
        Some(rt) => rt.serve(config, link).await,
        None => castle_gateway_fix::serve(config, link).await,
    };
    server.context("starting the FIX gateway")
}
