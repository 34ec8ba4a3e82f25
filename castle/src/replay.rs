//! `castle replay DIR`: rebuild the state from the journal alone, no snapshot used (snapshots
//! met on the way are checked against the replayed state).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use castle_engine::Limits;
use clap::Args;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Journal directory.
    pub dir: PathBuf,
}

pub fn run(a: ReplayArgs) -> Result<()> {
    let start = Instant::now();
    let mut progress = |n: u64, seq: u64| {
        let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
        eprint!("\rreplayed {n:>12} records, seq {seq:>12}, {rate:>10.0} records/s");
        let _ = std::io::stderr().flush();
    };
    // The engine server runs with the default limits; snapshots and replays must agree on them.
    let r = castle_engine_server::replay_dir(&a.dir, Limits::default(), &mut progress)
        .with_context(|| format!("replaying {}", a.dir.display()))?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "\rreplayed {} records in {:.3} s ({:.0} records/s), {} snapshot(s) checked",
        r.records,
        secs,
        r.records as f64 / secs.max(1e-9),
        r.snapshots_checked
    );
    println!("seq {} hash {}", r.seq, castle_engine_server::hex(&r.hash));
    Ok(())
}
