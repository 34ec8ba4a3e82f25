//! The fast engine against the reference engine on seeded random command
//! streams: identical events for every command, identical state hashes, and
//! every invariant holding after every command.

use castle_engine::check::differential;
use castle_engine::workload::Chaos;
use castle_engine::{Command, Event, FastEngine, Limits};
use proptest::prelude::*;

fn run(seed: u64, commands: usize) -> Result<(), TestCaseError> {
    // Chaos learns live order ids from the engine's output; a shadow engine
    // provides that feedback while the stream is generated.
    let mut chaos = Chaos::new(seed);
    let mut shadow = FastEngine::new(Limits::small());
    let mut out: Vec<Event> = Vec::new();
    let mut stream: Vec<(u64, Command)> = Chaos::setup().into_iter().map(|c| (1, c)).collect();
    for (ts, c) in &stream {
        shadow.apply(*ts, c, &mut out);
    }
    for _ in 0..commands {
        let (ts, c) = (chaos.next_ts(), chaos.next_command());
        out.clear();
        shadow.apply(ts, &c, &mut out);
        chaos.observe(&out);
        stream.push((ts, c));
    }
    let cov = differential(Limits::small(), stream).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}")))?;
    // The stream must actually exercise matching, or the test proves little.
    prop_assert!(cov.trades > 0, "seed {} produced no trades", seed);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn fast_engine_matches_reference(seed in any::<u64>()) {
        run(seed, 3_000)?;
    }
}

#[test]
fn long_stream_fixed_seeds() {
    for seed in [1, 2, 3] {
        run(seed, 20_000).unwrap();
    }
}

#[test]
fn replay_is_deterministic() {
    let mut chaos = Chaos::new(99);
    let cmds: Vec<(u64, Command)> = Chaos::setup()
        .into_iter()
        .map(|c| (1, c))
        .chain((0..5_000).map(|_| (chaos.next_ts(), chaos.next_command())))
        .collect();
    let run_once = || {
        let mut e = FastEngine::new(Limits::small());
        let mut out = Vec::new();
        let mut all = Vec::new();
        for (ts, c) in &cmds {
            out.clear();
            e.apply(*ts, c, &mut out);
            all.extend_from_slice(&out);
        }
        (all, e.state_hash())
    };
    let (events1, hash1) = run_once();
    let (events2, hash2) = run_once();
    assert_eq!(events1, events2);
    assert_eq!(hash1, hash2);
    assert!(events1.len() > 5_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]
    /// The fuzz target's entry point on random bytes (the same function `cargo fuzz` drives).
    #[test]
    fn fuzz_entry_point_holds_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4_096)) {
        castle_engine::check::fuzz_bytes(&data).map_err(TestCaseError::fail)?;
    }
}
