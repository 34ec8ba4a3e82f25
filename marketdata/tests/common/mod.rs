#![allow(dead_code)]
//! Shared test helpers: seeded engine runs and book comparison.

use castle_engine::workload::{Chaos, Workload, WorkloadConfig};
use castle_engine::{Command, Event, EventKind, FastEngine, InstrumentId, InstrumentSpec, Limits, Side};
use castle_marketdata::L3Book;

/// The engine's book of one instrument as (id, price, shown qty) per side, in priority order.
pub fn engine_book(e: &FastEngine, inst: InstrumentId) -> [Vec<(u64, i64, i64)>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for (i, s) in [Side::Buy, Side::Sell].into_iter().enumerate() {
        e.visit_book(inst, s, &mut |o| {
            out[i].push((o.id, o.price, o.visible));
            true
        });
    }
    out
}

pub fn our_book(b: &L3Book) -> [Vec<(u64, i64, i64)>; 2] {
    let f = |s| b.orders(s).map(|o| (o.id, o.price, o.qty)).collect();
    [f(Side::Buy), f(Side::Sell)]
}

/// A seeded run: each element is one command's events plus the specs of instruments it added.
pub struct Run {
    pub engine: FastEngine,
    pub chaos: Option<Chaos>,
    pub workload: Option<Workload>,
    pub setup: std::vec::IntoIter<Command>,
    pub ts: u64,
}

impl Run {
    pub fn chaos(seed: u64) -> Run {
        Run {
            engine: FastEngine::new(Limits::small()),
            chaos: Some(Chaos::new(seed)),
            workload: None,
            setup: Chaos::setup().into_iter(),
            ts: 1_700_000_000_000_000_000,
        }
    }

    pub fn workload(seed: u64, depth: usize) -> Run {
        let cfg = WorkloadConfig { seed, book_depth: depth, accounts: 200, ..WorkloadConfig::default() };
        let mut w = Workload::new(cfg);
        let mut setup = w.setup();
        setup.extend(w.fill_book());
        Run {
            engine: FastEngine::new(Workload::limits(&cfg)),
            chaos: None,
            workload: Some(w),
            setup: setup.into_iter(),
            ts: 1_700_000_000_000_000_000,
        }
    }

    /// Applies the next command; returns its events and the specs it added.
    pub fn step(&mut self) -> (Vec<Event>, Vec<InstrumentSpec>) {
        let cmd = match self.setup.next() {
            Some(c) => c,
            None => match (&mut self.chaos, &mut self.workload) {
                (Some(c), _) => c.next_command(),
                (_, Some(w)) => w.next_command(),
                _ => Command::Tick,
            },
        };
        self.ts += match &mut self.chaos {
            Some(c) => c.next_ts() % 1_000_000 + 1,
            None => 1_000,
        };
        let mut out = Vec::new();
        self.engine.apply(self.ts, &cmd, &mut out);
        if let Some(c) = &mut self.chaos {
            c.observe(&out);
        }
        let specs = out
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::InstrumentAdded { instrument } => self.engine.instrument(instrument).copied(),
                _ => None,
            })
            .collect();
        (out, specs)
    }
}
