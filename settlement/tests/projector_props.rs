//! Property test of the sans-IO projector over random engine command streams (every
//! command and option, `workload::Chaos`): after every command the projected balances equal
//! the engine's, no balance is negative, every command's legs sum to zero per asset (the
//! projector refuses the batch otherwise), the running sum of all legs per asset is zero, and
//! each flush lists the orders accepted inside it first (`Flush::new_orders`).

use std::collections::BTreeMap;

use castle_engine::workload::Chaos;
use castle_engine::{Engine, EventKind, FastEngine, Limits};
use castle_settlement::testkit::apply;
use castle_settlement::Projector;
use proptest::prelude::*;

fn check_stream(seed: u64, len: usize, flush_every: u64) {
    let mut engine: FastEngine = Engine::new(Limits::small());
    let mut proj = Projector::new(Default::default());
    let mut chaos = Chaos::new(seed);
    let mut sums: BTreeMap<u32, i128> = BTreeMap::new();
    let mut touched = std::collections::BTreeSet::new();
    let mut ts = 1;
    let mut since_flush = 0;
    let setup = Chaos::setup();
    for i in 0..setup.len() + len {
        let b = if i < setup.len() {
            ts += 1;
            apply(&mut engine, ts, &setup[i])
        } else {
            let c = chaos.next_command();
            ts = chaos.next_ts();
            apply(&mut engine, ts, &c)
        };
        chaos.observe(&b.events);
        assert!(proj.project(&b).unwrap_or_else(|e| panic!("seed {seed}: {e}")));
        for e in &b.events {
            if let EventKind::BalanceChanged { account, asset, .. } = e.kind {
                touched.insert((account, asset));
            }
        }
        for &(account, asset) in &touched {
            let eb = engine.balance(account, asset).unwrap();
            let pb = proj.balance(account, asset).copied().unwrap_or_default();
            assert_eq!((pb.available, pb.locked), (eb.available, eb.locked), "seed {seed} seq {}", b.seq);
            assert!(pb.available >= 0 && pb.locked >= 0);
        }
        since_flush += 1;
        if since_flush == flush_every {
            since_flush = 0;
            if let Some(f) = proj.take_flush() {
                for e in &f.entries {
                    *sums.entry(e.asset).or_default() += (e.available + e.locked + e.external) as i128;
                }
                assert!(sums.values().all(|s| *s == 0), "seed {seed}: running sums {sums:?}");
                // Every touched order row is consistent.
                for o in &f.orders {
                    assert!(o.filled >= 0 && o.leaves >= 0, "{o:?}");
                }
                // The first `new_orders` rows were accepted inside this flush (PostgreSQL
                // inserts them without a conflict check), the others before it; each order
                // appears once.
                assert!(f.new_orders <= f.orders.len());
                for (k, o) in f.orders.iter().enumerate() {
                    let new = o.created_seq > f.prev_seq;
                    assert_eq!(new, k < f.new_orders, "seed {seed}: order {} at {k} of {:?}", o.order_id, f.new_orders);
                }
                let ids: std::collections::BTreeSet<_> = f.orders.iter().map(|o| o.order_id).collect();
                assert_eq!(ids.len(), f.orders.len(), "seed {seed}: an order twice in one flush");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn projection_matches_the_engine(seed in any::<u64>(), len in 50usize..400, flush_every in 1u64..40) {
        check_stream(seed, len, flush_every);
    }
}
