//! Prints what a Chaos stream exercises: counts of event kinds and reject reasons.
use castle_engine::workload::Chaos;
use castle_engine::{EventKind, FastEngine, Limits};
use std::collections::BTreeMap;

fn main() {
    let seed = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut e = FastEngine::new(Limits::small());
    let mut out = Vec::new();
    let mut chaos = Chaos::new(seed);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in Chaos::setup() {
        e.apply(1, &c, &mut out);
    }
    for _ in 0..20_000 {
        let ts = chaos.next_ts();
        let c = chaos.next_command();
        out.clear();
        e.apply(ts, &c, &mut out);
        chaos.observe(&out);
        for ev in &out {
            let key = match ev.kind {
                EventKind::Rejected { reason, .. } => format!("Rejected::{reason:?}"),
                EventKind::OrderCancelled { reason, .. } => format!("Cancelled::{reason:?}"),
                EventKind::OrderAccepted { kind, .. } => format!("Accepted::{kind:?}"),
                EventKind::OrderReplaced { priority_kept, .. } => {
                    format!("Replaced::kept={priority_kept}")
                }
                k => format!("{k:?}").split([' ', '{']).next().unwrap().to_string(),
            };
            *counts.entry(key).or_default() += 1;
        }
    }
    for (k, v) in counts {
        println!("{v:>8} {k}");
    }
    println!("open orders at end: {}", e.open_orders());
}
