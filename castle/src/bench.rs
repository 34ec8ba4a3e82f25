//! `castle bench engine`: the engine latency harness.
//!
//! Replays a seeded exchange-core style mix (see `castle_engine::workload`)
//! into the engine on one thread, first flat out (throughput), then paced at
//! fixed target rates. Latency of each command is measured from the moment
//! it was *due* (its slot in the fixed-rate schedule), not from when the
//! loop got round to it, so a stall is charged to every command queued
//! behind it (no coordinated omission). The reference engine runs the same
//! commands in the same process as the baseline, and the same pacing loop
//! with no work at all ("no-op") shows what the machine alone contributes to
//! the tail.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use castle_engine::workload::{Workload, WorkloadConfig};
use castle_engine::{Command, Engine, Event, LadderBook, OrderBook, ReferenceBook};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Engine throughput and latency percentiles, fast vs reference engine.
    Engine(EngineArgs),
    /// Durable path: journaled commands/s and ack latency per writer, replay speed, restart time.
    Durable(crate::bench_durable::DurableArgs),
    /// Settlement: fills/s into PostgreSQL (COPY vs unnest vs one transaction per command) and lag at a steady rate.
    Settlement(crate::bench_settlement::SettlementBenchArgs),
}

#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Measured commands per run.
    #[arg(long, default_value_t = 3_000_000)]
    commands: usize,
    /// Resting orders built before measuring.
    #[arg(long, default_value_t = 100_000)]
    depth: usize,
    /// Paced target rates in commands per second (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    rates: Vec<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Commands given to the (slow) reference engine; 0 skips it.
    #[arg(long, default_value_t = 20_000)]
    reference_commands: usize,
    /// Repeat the whole measurement and report each run (quote the median).
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Engine(a) => engine(a),
        BenchCmd::Durable(a) => crate::bench_durable::run(a),
        BenchCmd::Settlement(a) => crate::bench_settlement::run(a),
    }
}

struct Prepared {
    setup: Vec<Command>,
    mix: Vec<Command>,
}

fn prepare(a: &EngineArgs) -> Prepared {
    let cfg = WorkloadConfig { seed: a.seed, book_depth: a.depth, ..WorkloadConfig::default() };
    let mut w = Workload::new(cfg);
    let mut setup = w.setup();
    setup.extend(w.fill_book());
    let mix = (0..a.commands.max(a.reference_commands)).map(|_| w.next_command()).collect();
    Prepared { setup, mix }
}

fn fresh<B: OrderBook>(a: &EngineArgs, p: &Prepared, out: &mut Vec<Event>) -> Engine<B> {
    let cfg = WorkloadConfig { seed: a.seed, book_depth: a.depth, ..WorkloadConfig::default() };
    let mut e = Engine::<B>::new(Workload::limits(&cfg));
    for (i, c) in p.setup.iter().enumerate() {
        out.clear();
        e.apply(i as u64 + 1, c, out);
    }
    e
}

/// Flat out: commands per second.
fn throughput<B: OrderBook>(a: &EngineArgs, p: &Prepared, n: usize) -> f64 {
    let mut out = Vec::with_capacity(4_096);
    let mut e = fresh::<B>(a, p, &mut out);
    let base = p.setup.len() as u64 + 1;
    let start = Instant::now();
    for (i, c) in p.mix[..n].iter().enumerate() {
        out.clear();
        e.apply(base + i as u64, c, &mut out);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Paced at `rate`/s; latency from each command's scheduled time to its completion.
fn paced<B: OrderBook>(a: &EngineArgs, p: &Prepared, n: usize, rate: u64) -> Result<Histogram<u64>> {
    let mut out = Vec::with_capacity(4_096);
    let mut e = fresh::<B>(a, p, &mut out);
    let base = p.setup.len() as u64 + 1;
    schedule(n, rate, |i| {
        out.clear();
        e.apply(base + i as u64, &p.mix[i], &mut out);
    })
}

/// The pacing loop with `work` per slot, recording lateness at completion.
/// With an empty `work` it measures what the machine alone adds (timer
/// ticks, hypervisor exits, clock reads): the floor under any engine tail.
fn schedule(n: usize, rate: u64, mut work: impl FnMut(usize)) -> Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let interval = 1e9 / rate as f64;
    let start = Instant::now();
    for i in 0..n {
        let due = Duration::from_nanos((i as f64 * interval) as u64);
        let mut now = start.elapsed();
        while now < due {
            std::hint::spin_loop();
            now = start.elapsed();
        }
        work(i);
        let done = start.elapsed();
        h.record((done - due).as_nanos().max(1) as u64)?;
    }
    Ok(h)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

fn report(name: &str, rate: u64, h: &Histogram<u64>) {
    println!(
        "{name:<10} rate {rate:>9}/s  p50 {:>8.3} us  p99 {:>8.3} us  p99.9 {:>8.3} us  p99.99 {:>9.3} us  max {:>10.3} us  (n={})",
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.value_at_quantile(0.9999)),
        us(h.max()),
        h.len()
    );
}

fn engine(a: EngineArgs) -> Result<()> {
    ensure!(a.commands > 0, "--commands must be positive");
    eprintln!("preparing {} commands on a book of {} resting orders (seed {})", a.commands, a.depth, a.seed);
    let p = prepare(&a);
    println!("castle bench engine: depth {} commands {} seed {}", a.depth, a.commands, a.seed);
    for run in 1..=a.runs {
        println!("-- run {run}");
        let fast = throughput::<LadderBook>(&a, &p, a.commands);
        println!("fast       throughput {:>12.0} commands/s", fast);
        let mut reference_tp = 0.0;
        if a.reference_commands > 0 {
            reference_tp = throughput::<ReferenceBook>(&a, &p, a.reference_commands);
            println!(
                "reference  throughput {:>12.0} commands/s  (fast/reference = {:.1}x)",
                reference_tp,
                fast / reference_tp
            );
        }
        for &rate in &a.rates {
            report(
                "no-op",
                rate,
                &schedule(a.commands, rate, |i| {
                    std::hint::black_box(i);
                })?,
            );
            report("fast", rate, &paced::<LadderBook>(&a, &p, a.commands, rate)?);
            if a.reference_commands > 0 {
                // The reference cannot keep up with high rates: pace it at
                // half of what it sustains so its percentiles mean something.
                let r = rate.min((reference_tp / 2.0) as u64).max(1);
                report("reference", r, &paced::<ReferenceBook>(&a, &p, a.reference_commands, r)?);
            }
        }
    }
    Ok(())
}
