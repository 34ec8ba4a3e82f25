//! The engine's self-check, shared by property tests and fuzz targets: runs
//! a command stream through the fast and the reference engine side by side
//! and demands identical events, identical state hashes and every invariant
//! after every command.

use crate::command::Command;
use crate::engine::Limits;
use crate::event::Event;
use crate::types::Timestamp;
use crate::{FastEngine, ReferenceEngine};

/// What a checked stream did, so callers can tell a trivial stream from a rich one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub commands: usize,
    pub events: usize,
    pub trades: usize,
}

/// Applies `stream` to both engines; the first disagreement or broken invariant is the error.
pub fn differential(
    limits: Limits,
    stream: impl IntoIterator<Item = (Timestamp, Command)>,
) -> Result<Coverage, String> {
    let mut fast = FastEngine::new(limits);
    let mut reference = ReferenceEngine::new(limits);
    let (mut a, mut b): (Vec<Event>, Vec<Event>) = (Vec::new(), Vec::new());
    let mut cov = Coverage::default();
    for (i, (ts, cmd)) in stream.into_iter().enumerate() {
        a.clear();
        b.clear();
        let sa = fast.apply(ts, &cmd, &mut a);
        let sb = reference.apply(ts, &cmd, &mut b);
        if sa != sb || a != b {
            return Err(format!("command {i} {cmd:?}: engines disagree\nfast: {a:?}\nreference: {b:?}"));
        }
        fast.check_invariants().map_err(|e| format!("command {i} {cmd:?}: {e}"))?;
        cov.commands += 1;
        cov.events += a.len();
        cov.trades += a.iter().filter(|e| matches!(e.kind, crate::EventKind::Trade { .. })).count();
    }
    reference.check_invariants().map_err(|e| format!("reference at end: {e}"))?;
    if fast.state_hash() != reference.state_hash() {
        return Err("state hashes differ at the end".into());
    }
    Ok(cov)
}

/// Fuzz entry point: decodes arbitrary bytes into a command stream (after a
/// fixed set-up of two instruments and funded accounts) and checks it.
/// Never panics on any input; returns the first problem found.
pub fn fuzz_bytes(data: &[u8]) -> Result<Coverage, String> {
    use arbitrary::{Arbitrary, Unstructured};
    let mut u = Unstructured::new(data);
    let mut stream: Vec<(Timestamp, Command)> = crate::workload::Chaos::setup().into_iter().map(|c| (1, c)).collect();
    let mut ts: Timestamp = 1;
    while !u.is_empty() && stream.len() < 256 {
        let Ok(step) = u16::arbitrary(&mut u) else { break };
        let Ok(cmd) = Command::arbitrary(&mut u) else { break };
        ts += step as Timestamp;
        stream.push((ts, cmd));
    }
    differential(Limits::small(), stream)
}
