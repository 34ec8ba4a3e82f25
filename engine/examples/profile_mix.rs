//! Applies the benchmark mix once, for profilers (callgrind counts instructions repeatably):
//! `valgrind --tool=callgrind target/release/examples/profile_mix 100000 200000`
use castle_engine::workload::{Workload, WorkloadConfig};
use castle_engine::FastEngine;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("number"));
    let depth = args.next().unwrap_or(100_000);
    let n = args.next().unwrap_or(200_000);
    let cfg = WorkloadConfig { book_depth: depth, ..WorkloadConfig::default() };
    let mut w = Workload::new(cfg);
    let mut cmds = w.setup();
    cmds.extend(w.fill_book());
    let setup = cmds.len();
    cmds.extend((0..n).map(|_| w.next_command()));
    let mut e = FastEngine::new(Workload::limits(&cfg));
    let mut out = Vec::with_capacity(4_096);
    for (i, c) in cmds.iter().enumerate() {
        out.clear();
        e.apply(i as u64 + 1, c, &mut out);
    }
    println!("applied {} setup + {} mix commands; {} resting", setup, n, e.resting_orders(0));
}
