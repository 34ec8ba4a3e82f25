//! `castle bench durable`: the engine server's durable path.
//!
//! 1. Durable commands/s and acknowledgement latency through the real sequencer (in-process
//!    gateway: channels, no TCP), group commit, once per journal writer (io_uring, portable) in
//!    the same run: a flat-out run (throughput) and a paced run (latency from each command's
//!    *scheduled* send time to its durable acknowledgement, so stalls are not hidden).
//! 2. Replay: a journal of `--replay-commands` commands (with one snapshot near the end) is
//!    built, then replayed from scratch (records/s, as `castle replay` does) and recovered the
//!    way `castle engine` starts (snapshot + tail): the restart time.
//! 3. Codec: encode + decode rate of the journal payloads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use castle_engine::codec::{decode_command, encode_command};
use castle_engine::workload::{Workload, WorkloadConfig};
use castle_engine::{Command, Limits};
use castle_engine_server::payload::Payload;
use castle_engine_server::proto::AckStatus;
use castle_engine_server::state::ReplayMode;
use castle_engine_server::{Config, Replica, Server};
use castle_journal::{write_snapshot, Journal, JournalError, JournalOptions, WriterChoice};
use clap::Args;
use hdrhistogram::Histogram;

#[derive(Args, Clone)]
pub struct DurableArgs {
    /// Scratch directory on the disk under test (its contents are replaced).
    #[arg(long, default_value = "bench-durable")]
    dir: PathBuf,
    /// Measured commands per sequencer run.
    #[arg(long, default_value_t = 1_000_000)]
    commands: usize,
    /// Rate of the paced latency run, commands/s (0 skips it).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Journal size for the replay / restart measurement (0 skips it).
    #[arg(long, default_value_t = 10_000_000)]
    replay_commands: usize,
    /// Resting orders of the workload's book.
    #[arg(long, default_value_t = 10_000)]
    depth: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Repeat the sequencer runs and report each (quote the median).
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

fn fresh_dir(p: &Path) -> Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p).with_context(|| format!("clearing {}", p.display()))?;
    }
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))
}

fn workload(a: &DurableArgs) -> (Vec<Command>, Vec<Command>) {
    let cfg = WorkloadConfig { seed: a.seed, book_depth: a.depth, ..WorkloadConfig::default() };
    let mut w = Workload::new(cfg);
    let mut setup = w.setup();
    setup.extend(w.fill_book());
    let mix = (0..a.commands).map(|_| w.next_command()).collect();
    (setup, mix)
}

/// One sequencer run: returns (commands/s, latency histogram in ns).
fn sequencer_run(
    a: &DurableArgs,
    writer: WriterChoice,
    setup: &[Command],
    mix: &[Command],
    rate: Option<u64>,
) -> Result<(f64, Histogram<u64>, String)> {
    let dir = a.dir.join("sequencer");
    fresh_dir(&dir)?;
    let mut cfg = Config::new(&dir, "127.0.0.1:0");
    cfg.writer = writer;
    cfg.snapshot_every = 0;
    let server = Server::start(cfg)?;
    // Acknowledgement messages, not commands: the sequencer sends one per connection per
    // release (a whole group commit's acks), so this bound is far above what can be in flight.
    let gw = server.local_gateway(1, 1 << 16);
    let mut request = 0u64;
    for c in setup {
        request += 1;
        gw.submit(request, *c)?;
    }
    let mut got = 0;
    let mut acks = Vec::with_capacity(1 << 16);
    while got < setup.len() {
        if !gw.recv_acks(Duration::from_secs(30), &mut acks) {
            bail!("set-up acknowledgements timed out");
        }
        for (req, _, st) in acks.drain(..) {
            if st != AckStatus::Applied {
                bail!("set-up request {req}: {st:?}");
            }
            got += 1;
        }
    }
    let base = request;
    let n = mix.len();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    // Copied before the clock starts (it is the sender's input, not part of the measured path).
    let (submitter, sent2, mix2) = (gw.submitter(), sent.clone(), mix.to_vec());
    let start = Instant::now();
    let sender = {
        let (gw, sent, mix) = (submitter, sent2, mix2);
        std::thread::spawn(move || -> Result<()> {
            let interval = rate.map(|r| 1e9 / r as f64);
            // Everything due goes over as one batch (at most 256), as a TCP gateway reader does.
            let mut batch = Vec::with_capacity(256);
            let mut i = 0;
            while i < mix.len() {
                let now = start.elapsed().as_nanos() as u64;
                while i < mix.len() && batch.len() < 256 {
                    let due = interval.map_or(now, |iv| (i as f64 * iv) as u64);
                    if due > now {
                        break;
                    }
                    sent[i].store(due, Ordering::Relaxed);
                    batch.push((base + i as u64 + 1, mix[i]));
                    i += 1;
                }
                if batch.is_empty() {
                    // Yield rather than spin: two shared cores, and the sequencer needs one.
                    std::thread::yield_now();
                    continue;
                }
                gw.submit_batch(std::mem::replace(&mut batch, Vec::with_capacity(256)))?;
            }
            Ok(())
        })
    };
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut done = 0;
    while done < n {
        if !gw.recv_acks(Duration::from_secs(60), &mut acks) {
            bail!("acknowledgements timed out after {done}");
        }
        let now = start.elapsed().as_nanos() as u64;
        for (req, _, status) in acks.drain(..) {
            if status != AckStatus::Applied {
                bail!("request {req}: {status:?}");
            }
            let t = sent[(req - base - 1) as usize].load(Ordering::Relaxed);
            h.record(now.saturating_sub(t).max(1))?;
            done += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    let st = server.status()?;
    server.shutdown()?;
    Ok((n as f64 / secs, h, format!("seq {}", st.seq)))
}

fn report(name: &str, tput: f64, h: &Histogram<u64>) {
    println!(
        "{name:<34} {tput:>11.0} commands/s   ack p50 {:>9.1} us  p99 {:>9.1} us  p99.9 {:>9.1} us  max {:>10.1} us",
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max())
    );
}

fn replay_bench(a: &DurableArgs) -> Result<()> {
    let dir = a.dir.join("replay");
    fresh_dir(&dir)?;
    let n = a.replay_commands;
    let limits = Limits::default();
    eprintln!("building a journal of {n} commands in {} ...", dir.display());
    let t = Instant::now();
    let (mut j, _) = Journal::open(JournalOptions::new(&dir))?;
    let mut rep = Replica::new(limits, 1 << 16);
    let cfg = WorkloadConfig { seed: a.seed, book_depth: a.depth, ..WorkloadConfig::default() };
    let mut w = Workload::new(cfg);
    let mut setup = w.setup();
    setup.extend(w.fill_book());
    let snapshot_at = n as u64 * 9 / 10;
    let mut payload = Vec::with_capacity(256);
    let mut out = Vec::with_capacity(1_024);
    let mut setup = setup.into_iter();
    for i in 0..n as u64 {
        let command = setup.next().unwrap_or_else(|| w.next_command());
        let p = Payload { epoch: 1, gateway: 1, request: i + 1, command };
        payload.clear();
        p.encode(&mut payload);
        let ts = w.now();
        match j.append(ts, &payload) {
            Ok(_) => {}
            Err(JournalError::BatchFull { .. }) => {
                j.submit()?;
                j.append(ts, &payload)?;
            }
            Err(e) => return Err(e.into()),
        }
        out.clear();
        rep.apply(ts, &p, &mut out);
        if i + 1 == snapshot_at {
            j.commit()?;
            let blob = rep.snapshot();
            write_snapshot(castle_engine_server::state::snapshot_dir(&dir), rep.seq(), &blob)?;
            eprintln!("snapshot at seq {} ({} bytes)", rep.seq(), blob.len());
        }
    }
    j.close()?;
    let bytes: u64 = std::fs::read_dir(&dir)?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    eprintln!("built in {:.1} s ({} MB of segments)", t.elapsed().as_secs_f64(), bytes >> 20);
    let expected = rep.engine.state_hash();

    // The earlier design (everything on one thread) and the pipelined one, alternating in the
    // same run so machine load hits both alike.
    for mode in [ReplayMode::Serial, ReplayMode::Pipelined, ReplayMode::Serial, ReplayMode::Pipelined] {
        let name = match mode {
            ReplayMode::Serial => "serial",
            ReplayMode::Pipelined => "pipelined",
        };
        let t = Instant::now();
        let r = castle_engine_server::replay_dir_with(mode, &dir, limits, &mut |_, _| {})?;
        let secs = t.elapsed().as_secs_f64();
        if r.hash != expected {
            bail!("replay hash differs from the builder's");
        }
        println!(
            "replay from scratch, {name:<12} {:>11.0} commands/s   ({} commands in {:.2} s, {} snapshot checked)",
            r.records as f64 / secs,
            r.records,
            secs,
            r.snapshots_checked
        );
    }
    for mode in [ReplayMode::Serial, ReplayMode::Pipelined, ReplayMode::Serial, ReplayMode::Pipelined] {
        let name = match mode {
            ReplayMode::Serial => "serial",
            ReplayMode::Pipelined => "pipelined",
        };
        let mut cfg = Config::new(&dir, "127.0.0.1:0");
        cfg.limits = limits;
        cfg.replay = mode;
        let t = Instant::now();
        let (rec, journal) = castle_engine_server::recover(&cfg)?;
        let secs = t.elapsed().as_secs_f64();
        if rec.engine.state_hash() != expected {
            bail!("recovered hash differs from the builder's");
        }
        drop(journal);
        println!(
            "restart (snapshot + tail), {name:<9} {:>8.3} s   ({n} journaled commands, snapshot at seq {snapshot_at}, tail {})",
            secs,
            n as u64 - snapshot_at
        );
    }
    Ok(())
}

fn codec_bench(mix: &[Command]) -> Result<()> {
    let mut buf = Vec::with_capacity(mix.len() * 64);
    let t = Instant::now();
    for c in mix {
        encode_command(c, &mut buf);
    }
    let enc = t.elapsed().as_secs_f64();
    let mut ends = Vec::with_capacity(mix.len());
    let mut one = Vec::with_capacity(128);
    let mut at = 0;
    for c in mix {
        one.clear();
        encode_command(c, &mut one);
        at += one.len();
        ends.push(at);
    }
    let t = Instant::now();
    let mut start = 0;
    let mut ok = 0usize;
    for &end in &ends {
        ok += decode_command(&buf[start..end]).is_ok() as usize;
        start = end;
    }
    let dec = t.elapsed().as_secs_f64();
    if ok != mix.len() {
        bail!("codec: {} of {} decoded", ok, mix.len());
    }
    println!(
        "codec                              encode {:>6.1} ns/command, decode {:>6.1} ns/command, {:.1} bytes/command",
        enc * 1e9 / mix.len() as f64,
        dec * 1e9 / mix.len() as f64,
        buf.len() as f64 / mix.len() as f64
    );
    Ok(())
}

pub fn run(a: DurableArgs) -> Result<()> {
    eprintln!("preparing {} commands (book depth {}, seed {})", a.commands, a.depth, a.seed);
    let (setup, mix) = workload(&a);
    println!("castle bench durable: commands {} depth {} rate {} dir {}", a.commands, a.depth, a.rate, a.dir.display());
    codec_bench(&mix)?;
    for run in 1..=a.runs {
        println!("-- run {run}");
        for (name, writer) in [("io_uring", WriterChoice::IoUring), ("portable", WriterChoice::Portable)] {
            match sequencer_run(&a, writer, &setup, &mix, None) {
                Ok((tput, h, _)) => report(&format!("{name} flat out"), tput, &h),
                Err(e) => println!("{name}: unavailable: {e:#}"),
            }
            if a.rate == 0 {
                continue;
            }
            if let Ok((tput, h, _)) = sequencer_run(&a, writer, &setup, &mix, Some(a.rate)) {
                report(&format!("{name} paced {}/s", a.rate), tput, &h);
            }
        }
    }
    if a.replay_commands > 0 {
        replay_bench(&a)?;
    }
    let _ = std::fs::remove_dir_all(a.dir.join("sequencer"));
    Ok(())
}
